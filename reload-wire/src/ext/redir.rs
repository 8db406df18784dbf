//! ReDiR service discovery (RFC 7374): the `RedirServiceProvider` record (§4.1) stored
//! as the value of the REDIR Kind (0x104, dictionary keyed by the provider's Node-ID, §6).
//!
//! Reading notes (RFC 7374 §4.1):
//! - `length` is not at the front: it sits after `node`, and is "the length of the rest
//!   of the Resource Record", that is of `extension` alone — the `select (type)` that
//!   follows it. The extension type itself is the record's first byte. So the wire form is
//!   `type ‖ destination_list<0..2^16-1> ‖ namespace<0..2^16-1> ‖ level ‖ node ‖
//!   uint16 length ‖ extension[length]`.
//! - `select (type)` has no case for `none(0)`: a `none` record has an empty extension,
//!   and a `none` record with `length` ≠ 0 is refused (on decode and on encode). Any other
//!   type is unknown to this codec ("Unknown types are allowed") and its extension is kept
//!   as raw bytes, so the record re-encodes unchanged.

use bytes::{BufMut, Bytes};

use crate::codec::{
    Cx, EncodeError, ErrorKind, In, Len, PResult, Wire, code_point, fail, field, items_len, opaque,
    prefixed, put_opaque, put_vec, u16_, wire_vec,
};
use crate::common::Destination;

code_point! {
    /// `RedirServiceProviderExtType` (RFC 7374 §4.1): `enum { none(0), (255) }`.
    RedirServiceProviderExtType(u8) {
        NONE = 0 => "none",
    }
}

/// `RedirServiceProvider` (RFC 7374 §4.1): one service provider registered at one node
/// of a ReDiR tree.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RedirServiceProvider {
    /// The RFC's `type`: which extension follows `length`.
    pub ext_type: RedirServiceProviderExtType,
    /// How to route a message to the service provider.
    pub destination_list: Vec<Destination>,
    /// UTF-8 service name, e.g. `turn-server`, `voice-mail` (§10.4).
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub namespace: Bytes,
    /// Level in the ReDiR tree.
    pub level: u16,
    /// Position of the tree node at `level`.
    pub node: u16,
    /// The extension (after `length`, which is its size): empty for `none`, raw bytes
    /// for other types.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub extension: Bytes,
}

impl RedirServiceProvider {
    /// A record with no extension (type `none`).
    pub fn new(
        destination_list: Vec<Destination>,
        namespace: Bytes,
        level: u16,
        node: u16,
    ) -> Self {
        RedirServiceProvider {
            ext_type: RedirServiceProviderExtType::NONE,
            destination_list,
            namespace,
            level,
            node,
            extension: Bytes::new(),
        }
    }
}

impl Wire for RedirServiceProvider {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("RedirServiceProvider", i, |i| {
            let (i, ext_type) = field("type", i, |i| {
                RedirServiceProviderExtType::decode_from(cx, i)
            })?;
            let (i, destination_list) =
                field("destination_list", i, |i| wire_vec(cx, Len::U16, i))?;
            let (i, namespace) = field("namespace", i, |i| opaque(cx, Len::U16, i))?;
            let (i, level) = field("level", i, u16_)?;
            let (i, node) = field("node", i, u16_)?;
            let (r, extension) = field("length", i, |i| prefixed(Len::U16, i))?;
            if ext_type == RedirServiceProviderExtType::NONE && !extension.is_empty() {
                return field("extension", i, |i| {
                    fail(
                        i,
                        ErrorKind::Invalid("extension of type none must be empty"),
                    )
                });
            }
            Ok((
                r,
                RedirServiceProvider {
                    ext_type,
                    destination_list,
                    namespace,
                    level,
                    node,
                    extension: cx.bytes(extension),
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        1 + 2
            + items_len(&self.destination_list)
            + 2
            + self.namespace.len()
            + 2
            + 2
            + 2
            + self.extension.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        if self.ext_type == RedirServiceProviderExtType::NONE && !self.extension.is_empty() {
            return Err(EncodeError {
                field: "RedirServiceProvider.extension (type none allows 0 bytes)",
                len: self.extension.len(),
                max: 0,
            });
        }
        self.ext_type.encode(b)?;
        put_vec(
            b,
            Len::U16,
            &self.destination_list,
            "RedirServiceProvider.destination_list",
        )?;
        put_opaque(
            b,
            Len::U16,
            &self.namespace,
            "RedirServiceProvider.namespace",
        )?;
        b.put_u16(self.level);
        b.put_u16(self.node);
        put_opaque(
            b,
            Len::U16,
            &self.extension,
            "RedirServiceProvider.extension",
        )
    }
}
