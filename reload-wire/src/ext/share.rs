//! Shared resources in RELOAD (ShaRe, RFC 8076): the `AccessControlListItem` (§4.2) stored
//! as the value of the ACCESS-CONTROL-LIST Kind (0x4, array, §7), and the
//! `ResourceNameExtension` for variable resource names (§5.2).
//!
//! Reading notes:
//! - **Presence of `res_name_ext`.** RFC 8076 §4.2 marks it "optional, see documentation";
//!   §3 ("Resource Name Extension") and §4.2 say it is present exactly when the overlay
//!   configuration enables variable resource names for the Kind — a
//!   `<share:variable-resource-names enable="true">` element in the kind-block (§5.3) —
//!   and "SHALL NOT be present" otherwise. Nothing on the wire signals it, and the first
//!   byte cannot tell the two forms apart (it is either a `ResourceNameType` or the high
//!   byte of `to_user`'s length). Decision: the caller says which form to expect.
//!   The [`Wire`] impl decodes the configuration default — `enable` is false when the
//!   element is absent (§5.3) — so it reads *no* `res_name_ext` and
//!   [`AccessControlListItem::decode_from`] yields `res_name_ext: None`;
//!   [`AccessControlListItem::decode_with`] / [`AccessControlListItem::decode_from_with`]
//!   take the flag from the configuration (the ACCESS-CONTROL-LIST kind-block, since the
//!   field comes before `kind` and so cannot depend on the shared Kind). Encoding writes
//!   the extension exactly when it is `Some`.
//! - `ResourceNameExtension.length` is "the length of the remaining data structure" (§5.2):
//!   for `pattern` it covers `resource_name` *with* its own two-byte prefix, and must be
//!   used up exactly (bytes left over are refused). Other types — "Types can be
//!   extended" — keep the `length`-delimited bytes raw. Type 0 is not named by the enum and
//!   is treated as one more unknown type.
//! - `allow_delegation` is a `Boolean`: only 0 and 1 are accepted.

use bytes::{BufMut, Bytes};

use crate::codec::{
    Cx, DecodeError, DecodeOptions, EncodeError, In, Len, PResult, Wire, boolean, code_point,
    decode_all, exact, field, opaque, prefixed, put_opaque,
};
use crate::storage::KindId;

code_point! {
    /// `ResourceNameType` (RFC 8076 §5.2).
    ResourceNameType(u8) {
        /// The Resource Name must match one of the Kind's variable-resource-name patterns.
        PATTERN = 1 => "pattern",
    }
}

/// `ResourceNameExtension` (RFC 8076 §5.2), by type.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum ResourceNameExtension {
    /// `pattern`: `opaque resource_name<0..2^16-1>`, the Resource Name the Resource-ID
    /// was hashed from.
    Pattern {
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        resource_name: Bytes,
    },
    /// A type this codec does not know: the `length`-delimited data as it came.
    Unknown {
        name_type: ResourceNameType,
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        data: Bytes,
    },
}

impl ResourceNameExtension {
    /// The RFC's `type` field.
    pub fn name_type(&self) -> ResourceNameType {
        match self {
            ResourceNameExtension::Pattern { .. } => ResourceNameType::PATTERN,
            ResourceNameExtension::Unknown { name_type, .. } => *name_type,
        }
    }

    /// The value of `length`.
    fn data_len(&self) -> usize {
        match self {
            ResourceNameExtension::Pattern { resource_name } => 2 + resource_name.len(),
            ResourceNameExtension::Unknown { data, .. } => data.len(),
        }
    }
}

impl Wire for ResourceNameExtension {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("ResourceNameExtension", i, |i| {
            let (r, t) = field("type", i, |i| ResourceNameType::decode_from(cx, i))?;
            let (r, data) = field("length", r, |r| prefixed(Len::U16, r))?;
            let v = match t {
                ResourceNameType::PATTERN => {
                    let (_, resource_name) = field("resource_name", data, |d| {
                        exact(d, |d| opaque(cx, Len::U16, d))
                    })?;
                    ResourceNameExtension::Pattern { resource_name }
                }
                name_type => ResourceNameExtension::Unknown {
                    name_type,
                    data: cx.bytes(data),
                },
            };
            Ok((r, v))
        })
    }
    fn encoded_len(&self) -> usize {
        1 + 2 + self.data_len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.name_type().encode(b)?;
        Len::U16.write(b, self.data_len(), "ResourceNameExtension.length")?;
        match self {
            ResourceNameExtension::Pattern { resource_name } => put_opaque(
                b,
                Len::U16,
                resource_name,
                "ResourceNameExtension.resource_name",
            ),
            ResourceNameExtension::Unknown { data, .. } => {
                b.put_slice(data);
                Ok(())
            }
        }
    }
}

/// `AccessControlListItem` (RFC 8076 §4.2): one write grant of a Shared Resource.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct AccessControlListItem {
    /// Present only in overlays that enable variable resource names (see the module
    /// notes): decode with [`AccessControlListItem::decode_with`] then.
    pub res_name_ext: Option<ResourceNameExtension>,
    /// User name of the peer granted write access.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub to_user: Bytes,
    /// The Kind of the Shared Resource.
    pub kind: KindId,
    /// Whether `to_user` may add further entries for `kind`.
    pub allow_delegation: bool,
}

impl AccessControlListItem {
    /// Parses one item, reading a leading `res_name_ext` exactly when
    /// `variable_resource_names` is set (the `enable` attribute of the kind-block's
    /// `<share:variable-resource-names>`, RFC 8076 §5.3).
    pub fn decode_from_with<'a>(
        cx: &Cx<'a>,
        i: In<'a>,
        variable_resource_names: bool,
    ) -> PResult<'a, Self> {
        field("AccessControlListItem", i, |i| {
            let (i, res_name_ext) = if variable_resource_names {
                let (i, e) = field("res_name_ext", i, |i| {
                    ResourceNameExtension::decode_from(cx, i)
                })?;
                (i, Some(e))
            } else {
                (i, None)
            };
            let (i, to_user) = field("to_user", i, |i| opaque(cx, Len::U16, i))?;
            let (i, kind) = field("kind", i, |i| KindId::decode_from(cx, i))?;
            let (i, allow_delegation) = field("allow_delegation", i, boolean)?;
            Ok((
                i,
                AccessControlListItem {
                    res_name_ext,
                    to_user,
                    kind,
                    allow_delegation,
                },
            ))
        })
    }

    /// Decodes an item that must occupy all of `buf`, with or without `res_name_ext`
    /// as the configuration says (see [`Self::decode_from_with`]).
    pub fn decode_with(
        buf: &Bytes,
        opts: &DecodeOptions,
        variable_resource_names: bool,
    ) -> Result<Self, DecodeError> {
        decode_all(buf, opts, |cx, i| {
            Self::decode_from_with(cx, i, variable_resource_names)
        })
    }
}

impl Wire for AccessControlListItem {
    /// The configuration default: no `res_name_ext` (RFC 8076 §5.3, `enable` false).
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        Self::decode_from_with(cx, i, false)
    }
    fn encoded_len(&self) -> usize {
        self.res_name_ext.as_ref().map_or(0, Wire::encoded_len) + 2 + self.to_user.len() + 4 + 1
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        if let Some(e) = &self.res_name_ext {
            e.encode(b)?;
        }
        put_opaque(b, Len::U16, &self.to_user, "AccessControlListItem.to_user")?;
        self.kind.encode(b)?;
        b.put_u8(self.allow_delegation as u8);
        Ok(())
    }
}
