//! The forwarding header (RFC 6940 §6.3.2) and forwarding options (§6.3.2.3).
//!
//! Intermediate peers read only this part of a message: [`ForwardingHeader::peek`]
//! decodes it without touching the message contents.

use bytes::{BufMut, Bytes};

use nom::error::ContextError as _;

use crate::codec::{
    Cx, DecodeError, DecodeOptions, EncodeError, ErrorKind, In, Len, PError, PResult, Wire,
    code_point, fail, field, items_len, opaque, put_opaque, take, u8_, u16_, u32_, u64_,
};
use crate::common::Destination;

/// `relo_token`: "RELO" with the high bit of the first byte set (RFC 6940 §6.3.2).
pub const RELO_TOKEN: u32 = 0xd245_4c4f;
/// `version` 1.0 (RFC 6940 §6.3.2).
pub const VERSION: u8 = 0x0a;
/// Size of the fixed part of the forwarding header.
pub const FIXED_HEADER_LEN: usize = 38;
/// Byte offset of the `length` field in the forwarding header.
pub const LENGTH_OFFSET: usize = 16;

/// The `fragment` field (RFC 6940 §6.3.2, §6.7): bit 31 always 1, bit 30 = last
/// fragment, bits 29–24 reserved, low 24 bits = byte offset of this fragment.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Fragment(pub u32);

impl Fragment {
    /// An unfragmented message: `0xC0000000`.
    pub const UNFRAGMENTED: Fragment = Fragment(0xc000_0000);
    const ALWAYS: u32 = 0x8000_0000;
    const LAST: u32 = 0x4000_0000;
    const RESERVED: u32 = 0x3f00_0000;
    const OFFSET: u32 = 0x00ff_ffff;

    /// A fragment starting at `offset` (< 2^24) bytes into the original message body.
    pub fn new(offset: u32, last: bool) -> Fragment {
        Fragment(Self::ALWAYS | if last { Self::LAST } else { 0 } | (offset & Self::OFFSET))
    }

    /// Bit 31 is set, as every message MUST have it (§6.7: otherwise discard).
    pub fn is_valid(self) -> bool {
        self.0 & Self::ALWAYS != 0
    }
    pub fn is_last(self) -> bool {
        self.0 & Self::LAST != 0
    }
    pub fn offset(self) -> u32 {
        self.0 & Self::OFFSET
    }
    pub fn reserved_bits(self) -> u32 {
        (self.0 & Self::RESERVED) >> 24
    }
    /// Last fragment at offset 0: the whole message.
    pub fn is_whole(self) -> bool {
        self.is_valid() && self.is_last() && self.offset() == 0
    }
}

impl std::fmt::Debug for Fragment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Fragment({:#010x}: offset {}, last {})",
            self.0,
            self.offset(),
            self.is_last()
        )
    }
}

code_point! {
    /// `ForwardingOptionType` (RFC 6940 §6.3.2.3, §14.12; RFC 7263 §8).
    ForwardingOptionType(u8) {
        INVALID = 0 => "invalidForwardingOptionType",
        EXP_FORWARD = 1 => "exp-forward",
        EXTENSIVE_ROUTING_MODE = 2 => "extensive_routing_mode",
        RESERVED = 255 => "reserved",
    }
}

/// Forwarding option flags (RFC 6940 §6.3.2.3; RFC 7263 §5.3).
pub mod option_flags {
    pub const FORWARD_CRITICAL: u8 = 0x01;
    pub const DESTINATION_CRITICAL: u8 = 0x02;
    pub const RESPONSE_COPY: u8 = 0x04;
    /// RFC 7263 §5.3.
    pub const IGNORE_STATE_KEEPING: u8 = 0x08;
}

/// `ForwardingOption` (RFC 6940 §6.3.2.3). The value is kept raw: options are
/// processed by type, and unknown ones must be forwarded unchanged. The
/// extensive-routing-mode value decodes with [`crate::ext::routing::ExtensiveRoutingModeOption`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ForwardingOption {
    pub option_type: ForwardingOptionType,
    pub flags: u8,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub value: Bytes,
}

impl ForwardingOption {
    pub fn is_forward_critical(&self) -> bool {
        self.flags & option_flags::FORWARD_CRITICAL != 0
    }
    pub fn is_destination_critical(&self) -> bool {
        self.flags & option_flags::DESTINATION_CRITICAL != 0
    }
    pub fn is_response_copy(&self) -> bool {
        self.flags & option_flags::RESPONSE_COPY != 0
    }
}

impl Wire for ForwardingOption {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("ForwardingOption", i, |i| {
            let (i, option_type) = ForwardingOptionType::decode_from(cx, i)?;
            let (i, flags) = u8_(i)?;
            let (i, value) = field("value", i, |i| opaque(cx, Len::U16, i))?;
            Ok((
                i,
                ForwardingOption {
                    option_type,
                    flags,
                    value,
                },
            ))
        })
    }

    fn encoded_len(&self) -> usize {
        4 + self.value.len()
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.option_type.encode(b)?;
        b.put_u8(self.flags);
        put_opaque(b, Len::U16, &self.value, "ForwardingOption.value")
    }
}

/// `ForwardingHeader` (RFC 6940 §6.3.2). `via_list_length`, `destination_list_length`
/// and `options_length` are not stored: they are the encoded sizes of the lists.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ForwardingHeader {
    /// Low 32 bits of SHA-1 of the overlay name.
    pub overlay: u32,
    pub configuration_sequence: u16,
    pub version: u8,
    pub ttl: u8,
    pub fragment: Fragment,
    /// Size of the whole (possibly fragmented) message, this header included.
    pub length: u32,
    pub transaction_id: u64,
    pub max_response_length: u32,
    pub via_list: Vec<Destination>,
    pub destination_list: Vec<Destination>,
    pub options: Vec<ForwardingOption>,
}

impl ForwardingHeader {
    /// A header with version 1.0, unfragmented, and empty lists; `length` is filled in
    /// when a whole message is encoded.
    pub fn new(overlay: u32, configuration_sequence: u16, ttl: u8, transaction_id: u64) -> Self {
        ForwardingHeader {
            overlay,
            configuration_sequence,
            version: VERSION,
            ttl,
            fragment: Fragment::UNFRAGMENTED,
            length: 0,
            transaction_id,
            max_response_length: 0,
            via_list: Vec::new(),
            destination_list: Vec::new(),
            options: Vec::new(),
        }
    }

    /// Decodes only the forwarding header at the front of `msg`, checking the token and
    /// that `length` is consistent with both the buffer and the overlay's
    /// max-message-size. Returns the header and its encoded size (where the message
    /// contents start). This is what a forwarding peer reads (RFC 6940 §6.1).
    pub fn peek(
        msg: &Bytes,
        opts: &DecodeOptions,
    ) -> Result<(ForwardingHeader, usize), DecodeError> {
        crate::codec::decode_all(msg, opts, |cx, i| {
            let (rest, h) = ForwardingHeader::decode_from(cx, i)?;
            let header_len = i.len() - rest.len();
            check_length(i, h.length as usize, header_len, opts.max_message_size())?;
            // peek consumes nothing beyond the header: hand the remainder back empty.
            Ok((&rest[rest.len()..], (h, header_len)))
        })
    }

    /// Decodes the forwarding header at the start of `prefix`, the beginning of a message
    /// that may not all be there (or may be over any size limit): what a receiver needs to
    /// answer a message it will not read in full (RFC 6940 §6.6, Error_Message_Too_Large).
    /// The `length` field is returned as declared, unchecked.
    pub fn peek_prefix(
        prefix: &Bytes,
        opts: &DecodeOptions,
    ) -> Result<(ForwardingHeader, usize), DecodeError> {
        crate::codec::decode_all(prefix, opts, |cx, i| {
            let (rest, h) = ForwardingHeader::decode_from(cx, i)?;
            let header_len = i.len() - rest.len();
            Ok((&rest[rest.len()..], (h, header_len)))
        })
    }

    /// Encoded size of the via list, destination list and options.
    pub fn lists_len(&self) -> usize {
        items_len(&self.via_list) + items_len(&self.destination_list) + items_len(&self.options)
    }

    /// Encodes the header with `length` replaced by `total_length`.
    pub fn encode_with_length<B: BufMut>(
        &self,
        b: &mut B,
        total_length: u32,
    ) -> Result<(), EncodeError> {
        b.put_u32(RELO_TOKEN);
        b.put_u32(self.overlay);
        b.put_u16(self.configuration_sequence);
        b.put_u8(self.version);
        b.put_u8(self.ttl);
        b.put_u32(self.fragment.0);
        b.put_u32(total_length);
        b.put_u64(self.transaction_id);
        b.put_u32(self.max_response_length);
        let via = items_len(&self.via_list);
        let dst = items_len(&self.destination_list);
        let opt = items_len(&self.options);
        Len::U16.write(b, via, "ForwardingHeader.via_list_length")?;
        Len::U16.write(b, dst, "ForwardingHeader.destination_list_length")?;
        Len::U16.write(b, opt, "ForwardingHeader.options_length")?;
        for d in &self.via_list {
            d.encode(b)?;
        }
        for d in &self.destination_list {
            d.encode(b)?;
        }
        for o in &self.options {
            o.encode(b)?;
        }
        Ok(())
    }
}

/// `length` must cover at least the header, fit the buffer exactly or more (for a peek),
/// and stay within max-message-size (RFC 6940 §6.6: too large → Error_Message_Too_Large).
pub(crate) fn check_length(
    i: In<'_>,
    length: usize,
    header_len: usize,
    max: usize,
) -> Result<(), nom::Err<PError>> {
    let at = &i[LENGTH_OFFSET..];
    let err = |kind| {
        nom::Err::Error(PError::add_context(
            at,
            "ForwardingHeader.length",
            PError::new(at, kind),
        ))
    };
    if length > max {
        return Err(err(ErrorKind::TooLarge { size: length, max }));
    }
    if length < header_len {
        return Err(err(ErrorKind::Invalid(
            "length is smaller than the forwarding header",
        )));
    }
    if length > i.len() {
        return Err(err(ErrorKind::Truncated {
            needed: length,
            available: i.len(),
        }));
    }
    Ok(())
}

/// A list of destinations filling `n` bytes exactly.
fn destination_list<'a>(cx: &Cx<'a>, i: In<'a>, n: usize) -> PResult<'a, Vec<Destination>> {
    let (rest, mut region) = take(i, n)?;
    let mut out = Vec::new();
    while !region.is_empty() {
        let (r, d) = Destination::decode_from(cx, region)?;
        out.push(d);
        region = r;
    }
    Ok((rest, out))
}

impl Wire for ForwardingHeader {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("ForwardingHeader", i, |i| {
            let (r, token) = field("relo_token", i, u32_)?;
            if token != RELO_TOKEN {
                return fail(i, ErrorKind::Invalid("relo_token is not 0xd2454c4f"));
            }
            let (r, overlay) = field("overlay", r, u32_)?;
            let (r, configuration_sequence) = field("configuration_sequence", r, u16_)?;
            let (r, version) = field("version", r, u8_)?;
            let (r, ttl) = field("ttl", r, u8_)?;
            let (r, fragment) = field("fragment", r, u32_)?;
            let (r, length) = field("length", r, u32_)?;
            let (r, transaction_id) = field("transaction_id", r, u64_)?;
            let (r, max_response_length) = field("max_response_length", r, u32_)?;
            let (r, via_len) = field("via_list_length", r, u16_)?;
            let (r, dst_len) = field("destination_list_length", r, u16_)?;
            let (r, opt_len) = field("options_length", r, u16_)?;
            let (r, via_list) =
                field("via_list", r, |r| destination_list(cx, r, via_len as usize))?;
            let (r, destination_list) = field("destination_list", r, |r| {
                destination_list(cx, r, dst_len as usize)
            })?;
            let (r, options) = field("options", r, |r| {
                let (rest, mut region) = take(r, opt_len as usize)?;
                let mut out = Vec::new();
                while !region.is_empty() {
                    let (rr, o) = ForwardingOption::decode_from(cx, region)?;
                    out.push(o);
                    region = rr;
                }
                Ok((rest, out))
            })?;
            Ok((
                r,
                ForwardingHeader {
                    overlay,
                    configuration_sequence,
                    version,
                    ttl,
                    fragment: Fragment(fragment),
                    length,
                    transaction_id,
                    max_response_length,
                    via_list,
                    destination_list,
                    options,
                },
            ))
        })
    }

    fn encoded_len(&self) -> usize {
        FIXED_HEADER_LEN + self.lists_len()
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.encode_with_length(b, self.length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_prefix_reads_the_header_of_a_message_that_is_not_all_there() {
        let mut h = ForwardingHeader::new(7, 1, 100, 0x1234);
        h.destination_list = vec![Destination::Node(crate::NodeId::from_u128(9))];
        let mut b = bytes::BytesMut::new();
        h.encode_with_length(&mut b, 1_000_000).unwrap();
        let header_only = b.freeze();
        let opts = DecodeOptions::default();
        // `peek` wants the whole (and not oversized) message; `peek_prefix` does not.
        assert!(ForwardingHeader::peek(&header_only, &opts).is_err());
        let (got, len) = ForwardingHeader::peek_prefix(&header_only, &opts).unwrap();
        assert_eq!(len, header_only.len());
        assert_eq!(got.length, 1_000_000);
        assert_eq!(got.transaction_id, 0x1234);
        // A truncated header is still an error.
        let short = header_only.slice(..header_only.len() - 1);
        assert!(ForwardingHeader::peek_prefix(&short, &opts).is_err());
    }
}
