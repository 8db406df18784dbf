//! The codec machinery shared by every structure: the [`Wire`] trait, the decoding
//! context, errors that name the failing field and its byte offset, and the
//! length-prefixed vector helpers of the TLS presentation language (RFC 6940 §6.3.1).
//!
//! Decoding runs `nom` parsers over `&[u8]` slices of one [`Bytes`] buffer; opaque
//! fields come back as [`Bytes::slice_ref`] views of that buffer, so nothing is copied.
//! Encoding writes into any [`BufMut`]; every vector's length prefix is computed from
//! [`Wire::encoded_len`] first, so no back-patching is needed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use nom::IResult;
use nom::error::{ContextError, ErrorKind as NomErrorKind, ParseError};

use crate::storage::DataModel;

/// Input of every parser: a slice of the buffer held by the [`Cx`].
pub type In<'a> = &'a [u8];
/// Result of every parser.
pub type PResult<'a, T> = IResult<In<'a>, T, PError>;

/// Hard floor and ceiling of the Node-ID length (RFC 6940 §6.3.1.1: 16 to 20 bytes).
pub const NODE_ID_LEN_RANGE: std::ops::RangeInclusive<usize> = 16..=20;

/// What a decoder must know about the overlay: nothing on the wire says how long a
/// Node-ID is or which data model a Kind uses (RFC 6940 §6.3.1.1, §7.2).
#[derive(Clone, Debug)]
pub struct DecodeOptions {
    node_id_len: usize,
    max_message_size: usize,
    kind_models: Arc<BTreeMap<u32, DataModel>>,
}

impl Default for DecodeOptions {
    /// 16-byte Node-IDs (CHORD-RELOAD), the RFC's default max-message-size of 5000 bytes
    /// (§11.1) and the data models of the IANA-registered Kinds.
    fn default() -> Self {
        DecodeOptions {
            node_id_len: 16,
            max_message_size: 5000,
            kind_models: Arc::new(crate::storage::registered_kind_models()),
        }
    }
}

impl DecodeOptions {
    /// Options for an overlay with `node_id_len`-byte Node-IDs. Lengths outside 16–20
    /// are refused (RFC 6940 §6.3.1.1).
    pub fn new(node_id_len: usize, max_message_size: usize) -> Result<Self, InvalidOptions> {
        if !NODE_ID_LEN_RANGE.contains(&node_id_len) {
            return Err(InvalidOptions::NodeIdLength(node_id_len));
        }
        Ok(DecodeOptions {
            node_id_len,
            max_message_size,
            ..DecodeOptions::default()
        })
    }

    /// Adds (or overrides) the data model of a Kind, as the overlay configuration
    /// defines it (RFC 6940 §11.1 `kind` element).
    pub fn with_kind(mut self, kind: u32, model: DataModel) -> Self {
        Arc::make_mut(&mut self.kind_models).insert(kind, model);
        self
    }

    /// Largest message the decoder accepts, header included.
    pub fn with_max_message_size(mut self, max: usize) -> Self {
        self.max_message_size = max;
        self
    }

    pub fn node_id_len(&self) -> usize {
        self.node_id_len
    }

    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Data model of `kind`, if the overlay knows the Kind.
    pub fn data_model(&self, kind: u32) -> Option<DataModel> {
        self.kind_models.get(&kind).copied()
    }
}

/// A refused [`DecodeOptions`] value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidOptions {
    NodeIdLength(usize),
}

impl fmt::Display for InvalidOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidOptions::NodeIdLength(n) => write!(
                f,
                "node-id-length {n} is outside the 16..=20 bytes RFC 6940 §6.3.1.1 allows"
            ),
        }
    }
}

impl std::error::Error for InvalidOptions {}

/// Decoding context: the options plus the buffer the input slices come from.
#[derive(Debug, Clone, Copy)]
pub struct Cx<'a> {
    pub opts: &'a DecodeOptions,
    base: &'a Bytes,
}

impl<'a> Cx<'a> {
    pub fn new(opts: &'a DecodeOptions, base: &'a Bytes) -> Self {
        Cx { opts, base }
    }

    /// The whole buffer being decoded.
    pub fn base(&self) -> &'a Bytes {
        self.base
    }

    /// A zero-copy [`Bytes`] for a sub-slice of the buffer. A slice from elsewhere
    /// (never the case for our own parsers) is copied rather than panicking.
    pub fn bytes(&self, sub: &[u8]) -> Bytes {
        let base = self.base.as_ptr() as usize;
        let start = sub.as_ptr() as usize;
        if sub.is_empty() {
            Bytes::new()
        } else if start >= base && start + sub.len() <= base + self.base.len() {
            self.base.slice_ref(sub)
        } else {
            Bytes::copy_from_slice(sub)
        }
    }
}

/// Why a field could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ends before the field does.
    Truncated { needed: usize, available: usize },
    /// A length-delimited region holds bytes after its last element.
    TrailingBytes { left: usize },
    /// A value the RFC does not allow here.
    Invalid(&'static str),
    /// The message is larger than the overlay's max-message-size.
    TooLarge { size: usize, max: usize },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Truncated { needed, available } => {
                write!(f, "truncated: needs {needed} bytes, {available} left")
            }
            ErrorKind::TrailingBytes { left } => write!(f, "{left} unexpected trailing bytes"),
            ErrorKind::Invalid(why) => write!(f, "invalid: {why}"),
            ErrorKind::TooLarge { size, max } => {
                write!(f, "{size} bytes exceeds the maximum of {max}")
            }
        }
    }
}

/// Parser-internal error: where (as the number of input bytes left) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PError {
    remaining: usize,
    kind: ErrorKind,
    /// Field names, innermost first.
    path: Vec<&'static str>,
}

impl PError {
    pub fn new(at: In<'_>, kind: ErrorKind) -> Self {
        PError {
            remaining: at.len(),
            kind,
            path: Vec::new(),
        }
    }

    fn into_public(self, total: usize) -> DecodeError {
        let mut path = self.path;
        path.reverse();
        DecodeError {
            offset: total.saturating_sub(self.remaining),
            kind: self.kind,
            field: path.join("."),
        }
    }
}

impl<'a> ParseError<In<'a>> for PError {
    fn from_error_kind(input: In<'a>, _kind: NomErrorKind) -> Self {
        // Unreachable in practice: every primitive checks its length first (`need`).
        PError::new(input, ErrorKind::Invalid("nom primitive failed"))
    }

    fn append(_input: In<'a>, _kind: NomErrorKind, other: Self) -> Self {
        other
    }
}

impl<'a> ContextError<In<'a>> for PError {
    fn add_context(_input: In<'a>, ctx: &'static str, mut other: Self) -> Self {
        other.path.push(ctx);
        other
    }
}

/// A decoding failure: which field, at which byte offset of the decoded buffer, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub field: String,
    pub kind: ErrorKind,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = if self.field.is_empty() {
            "input"
        } else {
            &self.field
        };
        write!(f, "{field} at byte {}: {}", self.offset, self.kind)
    }
}

impl std::error::Error for DecodeError {}

/// An encoding failure: a vector or opaque value longer than its length prefix allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeError {
    pub field: &'static str,
    pub len: usize,
    pub max: usize,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} bytes do not fit a length prefix of at most {}",
            self.field, self.len, self.max
        )
    }
}

impl std::error::Error for EncodeError {}

/// One RFC structure: decoded from and encoded to its exact wire form.
pub trait Wire: Sized {
    /// Parses one value from the front of `i`.
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self>;

    /// Number of bytes [`Wire::encode`] writes.
    fn encoded_len(&self) -> usize;

    /// Writes the wire form. Fails only if a vector outgrows its length prefix.
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError>;

    /// Decodes a value that must occupy all of `buf`.
    fn decode(buf: &Bytes, opts: &DecodeOptions) -> Result<Self, DecodeError> {
        decode_all(buf, opts, Self::decode_from)
    }

    /// Encodes into a new buffer of exactly the right size.
    fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut b)?;
        Ok(b.freeze())
    }
}

/// Runs `parser` over all of `buf`, refusing trailing bytes, and converts the error.
pub fn decode_all<T>(
    buf: &Bytes,
    opts: &DecodeOptions,
    parser: impl for<'a> Fn(&Cx<'a>, In<'a>) -> PResult<'a, T>,
) -> Result<T, DecodeError> {
    let cx = Cx::new(opts, buf);
    let total = buf.len();
    match parser(&cx, buf) {
        Ok(([], v)) => Ok(v),
        Ok((rest, _)) => {
            Err(PError::new(rest, ErrorKind::TrailingBytes { left: rest.len() }).into_public(total))
        }
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e.into_public(total)),
        Err(nom::Err::Incomplete(_)) => Err(PError::new(
            &[],
            ErrorKind::Truncated {
                needed: 1,
                available: 0,
            },
        )
        .into_public(total)),
    }
}

/// Fails with `kind` at `at`.
pub fn fail<T>(at: In<'_>, kind: ErrorKind) -> PResult<'_, T> {
    Err(nom::Err::Error(PError::new(at, kind)))
}

/// Labels errors from `f` with a field name (outermost label last).
pub fn field<'a, T>(
    name: &'static str,
    i: In<'a>,
    f: impl FnOnce(In<'a>) -> PResult<'a, T>,
) -> PResult<'a, T> {
    f(i).map_err(|e| e.map(|e| PError::add_context(i, name, e)))
}

/// Width of a length prefix, from the range of `<0..2^n-1>` (RFC 6940 §6.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Len {
    U8,
    U16,
    U24,
    U32,
}

impl Len {
    pub const fn bytes(self) -> usize {
        match self {
            Len::U8 => 1,
            Len::U16 => 2,
            Len::U24 => 3,
            Len::U32 => 4,
        }
    }

    pub const fn max(self) -> usize {
        match self {
            Len::U8 => 0xff,
            Len::U16 => 0xffff,
            Len::U24 => 0xff_ffff,
            Len::U32 => 0xffff_ffff,
        }
    }

    /// Reads the prefix.
    pub fn read(self, i: In<'_>) -> PResult<'_, usize> {
        match self {
            Len::U8 => u8_(i).map(|(r, v)| (r, v as usize)),
            Len::U16 => u16_(i).map(|(r, v)| (r, v as usize)),
            Len::U24 => u24_(i).map(|(r, v)| (r, v as usize)),
            Len::U32 => u32_(i).map(|(r, v)| (r, v as usize)),
        }
    }

    /// Writes the prefix for `len` bytes, or says which field overflowed.
    pub fn write<B: BufMut>(
        self,
        b: &mut B,
        len: usize,
        field: &'static str,
    ) -> Result<(), EncodeError> {
        if len > self.max() {
            return Err(EncodeError {
                field,
                len,
                max: self.max(),
            });
        }
        match self {
            Len::U8 => b.put_u8(len as u8),
            Len::U16 => b.put_u16(len as u16),
            Len::U24 => b.put_uint(len as u64, 3),
            Len::U32 => b.put_u32(len as u32),
        }
        Ok(())
    }
}

/// Takes exactly `n` bytes, checked against what is left before anything is allocated.
pub fn take(i: In<'_>, n: usize) -> PResult<'_, In<'_>> {
    if n > i.len() {
        return fail(
            i,
            ErrorKind::Truncated {
                needed: n,
                available: i.len(),
            },
        );
    }
    Ok((&i[n..], &i[..n]))
}

/// Fails unless `n` bytes are left, reporting exactly how many were needed.
fn need(i: In<'_>, n: usize) -> Result<(), nom::Err<PError>> {
    if i.len() < n {
        return Err(nom::Err::Error(PError::new(
            i,
            ErrorKind::Truncated {
                needed: n,
                available: i.len(),
            },
        )));
    }
    Ok(())
}

pub fn u8_(i: In<'_>) -> PResult<'_, u8> {
    need(i, 1)?;
    nom::number::complete::be_u8(i)
}
pub fn u16_(i: In<'_>) -> PResult<'_, u16> {
    need(i, 2)?;
    nom::number::complete::be_u16(i)
}
pub fn u24_(i: In<'_>) -> PResult<'_, u32> {
    need(i, 3)?;
    nom::number::complete::be_u24(i)
}
pub fn u32_(i: In<'_>) -> PResult<'_, u32> {
    need(i, 4)?;
    nom::number::complete::be_u32(i)
}
pub fn u64_(i: In<'_>) -> PResult<'_, u64> {
    need(i, 8)?;
    nom::number::complete::be_u64(i)
}
pub fn i32_(i: In<'_>) -> PResult<'_, i32> {
    need(i, 4)?;
    nom::number::complete::be_i32(i)
}

/// `Boolean` (RFC 6940 §6.3.1.1): exactly 0 or 1, so that re-encoding is exact.
pub fn boolean(i: In<'_>) -> PResult<'_, bool> {
    match u8_(i)? {
        (r, 0) => Ok((r, false)),
        (r, 1) => Ok((r, true)),
        _ => fail(i, ErrorKind::Invalid("Boolean must be 0 or 1")),
    }
}

/// A length-prefixed region, returned as a raw slice.
pub fn prefixed(len: Len, i: In<'_>) -> PResult<'_, In<'_>> {
    let (i, n) = len.read(i)?;
    take(i, n)
}

/// `opaque x<0..2^n-1>` as a zero-copy [`Bytes`].
pub fn opaque<'a>(cx: &Cx<'a>, len: Len, i: In<'a>) -> PResult<'a, Bytes> {
    let (i, s) = prefixed(len, i)?;
    Ok((i, cx.bytes(s)))
}

/// Parses a region with `f` and requires that it consume the region entirely.
pub fn exact<'a, T>(region: In<'a>, f: impl FnOnce(In<'a>) -> PResult<'a, T>) -> PResult<'a, T> {
    let (rest, v) = f(region)?;
    if !rest.is_empty() {
        return fail(rest, ErrorKind::TrailingBytes { left: rest.len() });
    }
    Ok((rest, v))
}

/// `T items<0..2^n-1>`: a length prefix in bytes, then elements until the region ends.
/// Every element consumes at least one byte, so the loop is bounded by the region size.
pub fn vector<'a, T>(
    len: Len,
    i: In<'a>,
    mut f: impl FnMut(In<'a>) -> PResult<'a, T>,
) -> PResult<'a, Vec<T>> {
    let (rest, mut region) = prefixed(len, i)?;
    let mut out = Vec::new();
    while !region.is_empty() {
        let (r, v) = f(region)?;
        if r.len() >= region.len() {
            return fail(region, ErrorKind::Invalid("element consumed no input"));
        }
        out.push(v);
        region = r;
    }
    Ok((rest, out))
}

/// [`vector`] of [`Wire`] elements.
pub fn wire_vec<'a, T: Wire>(cx: &Cx<'a>, len: Len, i: In<'a>) -> PResult<'a, Vec<T>> {
    vector(len, i, |i| T::decode_from(cx, i))
}

/// Writes `opaque x<0..2^n-1>`.
pub fn put_opaque<B: BufMut>(
    b: &mut B,
    len: Len,
    data: &[u8],
    field: &'static str,
) -> Result<(), EncodeError> {
    len.write(b, data.len(), field)?;
    b.put_slice(data);
    Ok(())
}

/// Sum of the encoded lengths of `items`.
pub fn items_len<T: Wire>(items: &[T]) -> usize {
    items.iter().map(Wire::encoded_len).sum()
}

/// Writes `T items<0..2^n-1>`.
pub fn put_vec<B: BufMut, T: Wire>(
    b: &mut B,
    len: Len,
    items: &[T],
    field: &'static str,
) -> Result<(), EncodeError> {
    len.write(b, items_len(items), field)?;
    for it in items {
        it.encode(b)?;
    }
    Ok(())
}

/// Defines a one-byte or two-byte code point as a newtype that keeps unknown values, with
/// named constants and `name()` for the registered ones (so that a message carrying an
/// unregistered code round-trips unchanged).
macro_rules! code_point {
    (
        $(#[$meta:meta])*
        $name:ident($repr:ty) { $( $(#[$cmeta:meta])* $konst:ident = $val:expr => $text:expr ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize))]
        pub struct $name(pub $repr);

        impl $name {
            $( $(#[$cmeta])* pub const $konst: $name = $name($val); )*

            /// The registered name, if this value is registered.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $val => Some($text), )*
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}", n),
                    None => write!(f, "{}({:#x})", stringify!($name), self.0),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(self, f)
            }
        }

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self { $name(v) }
        }

        impl $crate::codec::Wire for $name {
            fn decode_from<'a>(_cx: &$crate::codec::Cx<'a>, i: $crate::codec::In<'a>) -> $crate::codec::PResult<'a, Self> {
                let (i, v) = <$repr as $crate::codec::Primitive>::read(i)?;
                Ok((i, $name(v)))
            }
            fn encoded_len(&self) -> usize { ::std::mem::size_of::<$repr>() }
            fn encode<B: ::bytes::BufMut>(&self, b: &mut B) -> Result<(), $crate::codec::EncodeError> {
                <$repr as $crate::codec::Primitive>::write(self.0, b);
                Ok(())
            }
        }
    };
}
pub(crate) use code_point;

/// Fixed-width big-endian integers.
pub trait Primitive: Sized + Copy {
    fn read(i: In<'_>) -> PResult<'_, Self>;
    fn write<B: BufMut>(self, b: &mut B);
}

impl Primitive for u8 {
    fn read(i: In<'_>) -> PResult<'_, Self> {
        u8_(i)
    }
    fn write<B: BufMut>(self, b: &mut B) {
        b.put_u8(self)
    }
}

impl Primitive for u16 {
    fn read(i: In<'_>) -> PResult<'_, Self> {
        u16_(i)
    }
    fn write<B: BufMut>(self, b: &mut B) {
        b.put_u16(self)
    }
}

impl Primitive for u32 {
    fn read(i: In<'_>) -> PResult<'_, Self> {
        u32_(i)
    }
    fn write<B: BufMut>(self, b: &mut B) {
        b.put_u32(self)
    }
}

/// Serializes opaque bytes as lower-case hex (for the `serde` feature).
#[cfg(feature = "serde")]
pub fn ser_hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&to_hex(v))
}

/// Serializes a list of opaque values as hex strings (for the `serde` feature).
#[cfg(feature = "serde")]
pub fn ser_hex_vec<S: serde::Serializer>(v: &[Bytes], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for b in v {
        seq.serialize_element(&to_hex(b))?;
    }
    seq.end()
}

/// Lower-case hex of `v` (the `hex` crate's encoder; kept for the crates that call it).
pub fn to_hex(v: &[u8]) -> String {
    hex::encode(v)
}
