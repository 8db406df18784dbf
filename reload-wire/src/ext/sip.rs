//! The SIP usage for RELOAD (RFC 7904): the `SipRegistration` record (§3.2) stored as the
//! value of the SIP-REGISTRATION Kind (0x1, dictionary keyed by the storing peer's
//! Node-ID, §7).
//!
//! Reading notes (RFC 7904 §3.2):
//! - The record is `SipRegistrationType type; uint16 length; SipRegistrationData data`,
//!   where `length` is "the length of the rest of the PDU", i.e. of `data`.
//! - `sip_registration_uri` data is `opaque uri<0..2^16-1>`: inside `length` the URI has
//!   its own two-byte prefix, so `length` = 2 + URI length.
//! - `sip_registration_route` data is `opaque contact_prefs<0..2^16-1>` followed by
//!   `Destination destination_list<3..2^16-1>`: a two-byte byte count that must be at
//!   least 3 (the RFC's bound; one Node-ID entry is 2 + NodeIdLength bytes, so a valid
//!   list is in practice always longer). A shorter list, an empty one included, is refused
//!   on decode and on encode.
//! - `data` must be exactly what `length` covers: bytes left over inside `length` after
//!   the known fields are refused (`TrailingBytes`).
//! - Other types ("This type can be extended") keep `data` raw via `length`. Type 0 is not
//!   named by the enum; it is treated as one more unknown type.

use bytes::{BufMut, Bytes};

use crate::codec::{
    Cx, EncodeError, In, Len, PResult, Wire, code_point, exact, field, items_len, opaque, prefixed,
    put_opaque, put_vec,
};
use crate::common::Destination;
use crate::ext::wire_vec_min;

code_point! {
    /// `SipRegistrationType` (RFC 7904 §3.2).
    SipRegistrationType(u8) {
        /// The record holds another URI (an AOR) to dereference.
        SIP_REGISTRATION_URI = 1 => "sip_registration_uri",
        /// The record holds contact preferences and a destination list to the peer.
        SIP_REGISTRATION_ROUTE = 2 => "sip_registration_route",
    }
}

/// `SipRegistration` (RFC 7904 §3.2), by registration type.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum SipRegistration {
    /// `sip_registration_uri`: `opaque uri<0..2^16-1>`, the AOR to contact instead.
    Uri(#[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))] Bytes),
    /// `sip_registration_route`: the registrant's contact predicate (RFC 3840, e.g.
    /// `(sip.schemes=SIPS)`) and a destination list to its peer (at least 3 bytes).
    Route {
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        contact_prefs: Bytes,
        destination_list: Vec<Destination>,
    },
    /// A registration type this codec does not know: the `length`-delimited data as it came.
    Unknown {
        registration_type: SipRegistrationType,
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        data: Bytes,
    },
}

impl SipRegistration {
    /// The RFC's `type` field.
    pub fn registration_type(&self) -> SipRegistrationType {
        match self {
            SipRegistration::Uri(_) => SipRegistrationType::SIP_REGISTRATION_URI,
            SipRegistration::Route { .. } => SipRegistrationType::SIP_REGISTRATION_ROUTE,
            SipRegistration::Unknown {
                registration_type, ..
            } => *registration_type,
        }
    }

    /// The value of `length`: the size of `data`.
    fn data_len(&self) -> usize {
        match self {
            SipRegistration::Uri(u) => 2 + u.len(),
            SipRegistration::Route {
                contact_prefs,
                destination_list,
            } => 2 + contact_prefs.len() + 2 + items_len(destination_list),
            SipRegistration::Unknown { data, .. } => data.len(),
        }
    }
}

const ROUTE_LIST_MIN: &str = "destination_list<3..2^16-1> is shorter than 3 bytes";

impl Wire for SipRegistration {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("SipRegistration", i, |i| {
            let (r, t) = field("type", i, |i| SipRegistrationType::decode_from(cx, i))?;
            let (r, data) = field("length", r, |r| prefixed(Len::U16, r))?;
            let v = match t {
                SipRegistrationType::SIP_REGISTRATION_URI => {
                    let (_, uri) = field("uri", data, |d| exact(d, |d| opaque(cx, Len::U16, d)))?;
                    SipRegistration::Uri(uri)
                }
                SipRegistrationType::SIP_REGISTRATION_ROUTE => {
                    let (_, (contact_prefs, destination_list)) = exact(data, |d| {
                        let (d, contact_prefs) =
                            field("contact_prefs", d, |d| opaque(cx, Len::U16, d))?;
                        let (d, destination_list) = field("destination_list", d, |d| {
                            wire_vec_min(cx, Len::U16, 3, ROUTE_LIST_MIN, d)
                        })?;
                        Ok((d, (contact_prefs, destination_list)))
                    })?;
                    SipRegistration::Route {
                        contact_prefs,
                        destination_list,
                    }
                }
                registration_type => SipRegistration::Unknown {
                    registration_type,
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
        if let SipRegistration::Route {
            destination_list, ..
        } = self
        {
            let n = items_len(destination_list);
            if n < 3 {
                return Err(EncodeError {
                    field: "SipRegistration.destination_list<3..2^16-1>",
                    len: n,
                    max: Len::U16.max(),
                });
            }
        }
        self.registration_type().encode(b)?;
        Len::U16.write(b, self.data_len(), "SipRegistration.length")?;
        match self {
            SipRegistration::Uri(u) => put_opaque(b, Len::U16, u, "SipRegistration.uri"),
            SipRegistration::Route {
                contact_prefs,
                destination_list,
            } => {
                put_opaque(b, Len::U16, contact_prefs, "SipRegistration.contact_prefs")?;
                put_vec(
                    b,
                    Len::U16,
                    destination_list,
                    "SipRegistration.destination_list",
                )
            }
            SipRegistration::Unknown { data, .. } => {
                b.put_slice(data);
                Ok(())
            }
        }
    }
}
