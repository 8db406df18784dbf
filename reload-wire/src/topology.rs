//! Overlay topology methods (RFC 6940 §6.4.2): Join, Leave, Update, RouteQuery, Probe.
//! The topology-specific parts stay opaque here; CHORD-RELOAD's live in [`crate::chord`].

use bytes::{BufMut, Bytes};

use crate::codec::{
    Cx, EncodeError, ErrorKind, In, Len, PResult, Wire, boolean, code_point, fail, field,
    items_len, opaque, prefixed, put_opaque, put_vec, u32_, wire_vec,
};
use crate::common::{Destination, NodeId};

/// Implements [`Wire`] for a body that is empty on the wire (a trailing byte is refused
/// by the caller's exact-consumption check).
macro_rules! empty_body {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize))]
        pub struct $name;

        impl Wire for $name {
            fn decode_from<'a>(_cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
                Ok((i, $name))
            }
            fn encoded_len(&self) -> usize {
                0
            }
            fn encode<B: BufMut>(&self, _b: &mut B) -> Result<(), EncodeError> {
                Ok(())
            }
        }
    };
}
pub(crate) use empty_body;

/// Implements [`Wire`] for a body that is one topology-specific opaque blob filling the
/// whole message body.
macro_rules! raw_body {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Default)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize))]
        pub struct $name(
            #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
            pub Bytes,
        );

        impl Wire for $name {
            fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
                Ok((&i[i.len()..], $name(cx.bytes(i))))
            }
            fn encoded_len(&self) -> usize {
                self.0.len()
            }
            fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
                b.put_slice(&self.0);
                Ok(())
            }
        }
    };
}

/// `JoinReq` (RFC 6940 §6.4.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct JoinReq {
    pub joining_peer_id: NodeId,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub overlay_specific_data: Bytes,
}

impl Wire for JoinReq {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("JoinReq", i, |i| {
            let (i, joining_peer_id) = field("joining_peer_id", i, |i| NodeId::decode_from(cx, i))?;
            let (i, overlay_specific_data) =
                field("overlay_specific_data", i, |i| opaque(cx, Len::U16, i))?;
            Ok((
                i,
                JoinReq {
                    joining_peer_id,
                    overlay_specific_data,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        self.joining_peer_id.len() + 2 + self.overlay_specific_data.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.joining_peer_id.encode(b)?;
        put_opaque(
            b,
            Len::U16,
            &self.overlay_specific_data,
            "JoinReq.overlay_specific_data",
        )
    }
}

/// `JoinAns` (RFC 6940 §6.4.2.1).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct JoinAns {
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub overlay_specific_data: Bytes,
}

impl Wire for JoinAns {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("JoinAns", i, |i| {
            let (i, overlay_specific_data) =
                field("overlay_specific_data", i, |i| opaque(cx, Len::U16, i))?;
            Ok((
                i,
                JoinAns {
                    overlay_specific_data,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        2 + self.overlay_specific_data.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_opaque(
            b,
            Len::U16,
            &self.overlay_specific_data,
            "JoinAns.overlay_specific_data",
        )
    }
}

/// `LeaveReq` (RFC 6940 §6.4.2.2). For CHORD-RELOAD the data is a
/// [`crate::chord::ChordLeaveData`] (§10.9).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LeaveReq {
    pub leaving_peer_id: NodeId,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub overlay_specific_data: Bytes,
}

impl Wire for LeaveReq {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("LeaveReq", i, |i| {
            let (i, leaving_peer_id) = field("leaving_peer_id", i, |i| NodeId::decode_from(cx, i))?;
            let (i, overlay_specific_data) =
                field("overlay_specific_data", i, |i| opaque(cx, Len::U16, i))?;
            Ok((
                i,
                LeaveReq {
                    leaving_peer_id,
                    overlay_specific_data,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        self.leaving_peer_id.len() + 2 + self.overlay_specific_data.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.leaving_peer_id.encode(b)?;
        put_opaque(
            b,
            Len::U16,
            &self.overlay_specific_data,
            "LeaveReq.overlay_specific_data",
        )
    }
}

empty_body! {
    /// `LeaveAns` (RFC 6940 §6.4.2.2): empty.
    LeaveAns
}

raw_body! {
    /// `UpdateReq` (RFC 6940 §6.4.2.3): "completely overlay specific"; for CHORD-RELOAD a
    /// [`crate::chord::ChordUpdate`] (§10.7).
    UpdateReq
}

raw_body! {
    /// `UpdateAns` (RFC 6940 §6.4.2.3): success or an error; CHORD-RELOAD sends it empty.
    UpdateAns
}

/// `RouteQueryReq` (RFC 6940 §6.4.2.4).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RouteQueryReq {
    pub send_update: bool,
    pub destination: Destination,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub overlay_specific_data: Bytes,
}

impl Wire for RouteQueryReq {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("RouteQueryReq", i, |i| {
            let (i, send_update) = field("send_update", i, boolean)?;
            let (i, destination) = field("destination", i, |i| Destination::decode_from(cx, i))?;
            let (i, overlay_specific_data) =
                field("overlay_specific_data", i, |i| opaque(cx, Len::U16, i))?;
            Ok((
                i,
                RouteQueryReq {
                    send_update,
                    destination,
                    overlay_specific_data,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        1 + self.destination.encoded_len() + 2 + self.overlay_specific_data.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u8(self.send_update as u8);
        self.destination.encode(b)?;
        put_opaque(
            b,
            Len::U16,
            &self.overlay_specific_data,
            "RouteQueryReq.overlay_specific_data",
        )
    }
}

raw_body! {
    /// `RouteQueryAns` (RFC 6940 §6.4.2.4): topology specific; for CHORD-RELOAD a
    /// [`crate::chord::ChordRouteQueryAns`] (§10.8).
    RouteQueryAns
}

code_point! {
    /// `ProbeInformationType` (RFC 6940 §6.4.2.5.1, §14.13 "RELOAD Probe
    /// Information Types" registry).
    ProbeInformationType(u8) {
        INVALID = 0 => "invalidProbeInformationType",
        RESPONSIBLE_SET = 1 => "responsible_set",
        NUM_RESOURCES = 2 => "num_resources",
        UPTIME = 3 => "uptime",
        EXP_PROBE = 4 => "exp-probe",
    }
}

/// `ProbeReq` (RFC 6940 §6.4.2.5.1).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ProbeReq {
    pub requested_info: Vec<ProbeInformationType>,
}

impl Wire for ProbeReq {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("ProbeReq", i, |i| {
            let (i, requested_info) = field("requested_info", i, |i| wire_vec(cx, Len::U8, i))?;
            Ok((i, ProbeReq { requested_info }))
        })
    }
    fn encoded_len(&self) -> usize {
        1 + self.requested_info.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_vec(b, Len::U8, &self.requested_info, "ProbeReq.requested_info")
    }
}

/// `ProbeInformation` (RFC 6940 §6.4.2.5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum ProbeInformation {
    /// Share of the ID space this peer is responsible for, in parts per billion.
    ResponsibleSet(u32),
    NumResources(u32),
    /// Seconds since this peer joined.
    Uptime(u32),
    /// A type this codec does not know (or exp-probe), kept as it came.
    Unknown {
        info_type: ProbeInformationType,
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        value: Bytes,
    },
}

impl ProbeInformation {
    pub fn info_type(&self) -> ProbeInformationType {
        match self {
            ProbeInformation::ResponsibleSet(_) => ProbeInformationType::RESPONSIBLE_SET,
            ProbeInformation::NumResources(_) => ProbeInformationType::NUM_RESOURCES,
            ProbeInformation::Uptime(_) => ProbeInformationType::UPTIME,
            ProbeInformation::Unknown { info_type, .. } => *info_type,
        }
    }
}

impl Wire for ProbeInformation {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("ProbeInformation", i, |i| {
            let (r, t) = ProbeInformationType::decode_from(cx, i)?;
            let (r, v) = prefixed(Len::U8, r)?;
            let known = |v: In<'a>| -> PResult<'a, u32> {
                if v.len() != 4 {
                    return fail(
                        v,
                        ErrorKind::Invalid("probe information value must be 4 bytes"),
                    );
                }
                u32_(v)
            };
            let info = match t {
                ProbeInformationType::INVALID => {
                    return fail(i, ErrorKind::Invalid("probe information type 0 (invalid)"));
                }
                ProbeInformationType::RESPONSIBLE_SET => {
                    ProbeInformation::ResponsibleSet(known(v)?.1)
                }
                ProbeInformationType::NUM_RESOURCES => ProbeInformation::NumResources(known(v)?.1),
                ProbeInformationType::UPTIME => ProbeInformation::Uptime(known(v)?.1),
                info_type => ProbeInformation::Unknown {
                    info_type,
                    value: cx.bytes(v),
                },
            };
            Ok((r, info))
        })
    }
    fn encoded_len(&self) -> usize {
        2 + match self {
            ProbeInformation::Unknown { value, .. } => value.len(),
            _ => 4,
        }
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.info_type().encode(b)?;
        match self {
            ProbeInformation::ResponsibleSet(v)
            | ProbeInformation::NumResources(v)
            | ProbeInformation::Uptime(v) => {
                b.put_u8(4);
                b.put_u32(*v);
            }
            ProbeInformation::Unknown { value, .. } => {
                put_opaque(b, Len::U8, value, "ProbeInformation.value")?;
            }
        }
        Ok(())
    }
}

/// `ProbeAns` (RFC 6940 §6.4.2.5.2).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ProbeAns {
    pub probe_info: Vec<ProbeInformation>,
}

impl Wire for ProbeAns {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("ProbeAns", i, |i| {
            let (i, probe_info) = field("probe_info", i, |i| wire_vec(cx, Len::U16, i))?;
            Ok((i, ProbeAns { probe_info }))
        })
    }
    fn encoded_len(&self) -> usize {
        2 + items_len(&self.probe_info)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_vec(b, Len::U16, &self.probe_info, "ProbeAns.probe_info")
    }
}
