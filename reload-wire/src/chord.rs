//! CHORD-RELOAD bodies (RFC 6940 §10): `ChordUpdate` (§10.7), `ChordRouteQueryAns`
//! (§10.8) and `ChordLeaveData` (§10.9). They travel inside the topology-specific parts
//! of Update, RouteQuery and Leave.

use bytes::{BufMut, Bytes};

use crate::codec::{
    Cx, EncodeError, ErrorKind, In, Len, PResult, Wire, code_point, fail, field, items_len,
    put_vec, u32_, wire_vec,
};
use crate::common::NodeId;

code_point! {
    /// `ChordUpdateType` (RFC 6940 §10.7).
    ChordUpdateType(u8) {
        INVALID = 0 => "invalidChordUpdateType",
        PEER_READY = 1 => "peer_ready",
        NEIGHBORS = 2 => "neighbors",
        FULL = 3 => "full",
    }
}

/// The body of a [`ChordUpdate`], by update type.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum ChordUpdateBody {
    /// `peer_ready`: the sender is ready to receive messages.
    PeerReady,
    /// `neighbors`: the sender's neighbor table.
    Neighbors {
        predecessors: Vec<NodeId>,
        successors: Vec<NodeId>,
    },
    /// `full`: neighbor table and finger table.
    Full {
        predecessors: Vec<NodeId>,
        successors: Vec<NodeId>,
        fingers: Vec<NodeId>,
    },
    /// An update type this codec does not know; the rest of the body, kept as it came.
    Unknown {
        update_type: ChordUpdateType,
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        data: Bytes,
    },
}

/// `ChordUpdate` (RFC 6940 §10.7), the UpdateReq body of CHORD-RELOAD.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ChordUpdate {
    /// Seconds the sender has been in the overlay.
    pub uptime: u32,
    pub body: ChordUpdateBody,
}

impl ChordUpdate {
    pub fn update_type(&self) -> ChordUpdateType {
        match &self.body {
            ChordUpdateBody::PeerReady => ChordUpdateType::PEER_READY,
            ChordUpdateBody::Neighbors { .. } => ChordUpdateType::NEIGHBORS,
            ChordUpdateBody::Full { .. } => ChordUpdateType::FULL,
            ChordUpdateBody::Unknown { update_type, .. } => *update_type,
        }
    }
}

fn node_list<'a>(cx: &Cx<'a>, name: &'static str, i: In<'a>) -> PResult<'a, Vec<NodeId>> {
    field(name, i, |i| wire_vec(cx, Len::U16, i))
}

impl Wire for ChordUpdate {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("ChordUpdate", i, |i| {
            let (r, uptime) = field("uptime", i, u32_)?;
            let (r, t) = field("type", r, |r| ChordUpdateType::decode_from(cx, r))?;
            let (r, body) = match t {
                ChordUpdateType::INVALID => {
                    return fail(&i[4..], ErrorKind::Invalid("Chord update type 0 (invalid)"));
                }
                ChordUpdateType::PEER_READY => (r, ChordUpdateBody::PeerReady),
                ChordUpdateType::NEIGHBORS => {
                    let (r, predecessors) = node_list(cx, "predecessors", r)?;
                    let (r, successors) = node_list(cx, "successors", r)?;
                    (
                        r,
                        ChordUpdateBody::Neighbors {
                            predecessors,
                            successors,
                        },
                    )
                }
                ChordUpdateType::FULL => {
                    let (r, predecessors) = node_list(cx, "predecessors", r)?;
                    let (r, successors) = node_list(cx, "successors", r)?;
                    let (r, fingers) = node_list(cx, "fingers", r)?;
                    (
                        r,
                        ChordUpdateBody::Full {
                            predecessors,
                            successors,
                            fingers,
                        },
                    )
                }
                update_type => (
                    &r[r.len()..],
                    ChordUpdateBody::Unknown {
                        update_type,
                        data: cx.bytes(r),
                    },
                ),
            };
            Ok((r, ChordUpdate { uptime, body }))
        })
    }

    fn encoded_len(&self) -> usize {
        5 + match &self.body {
            ChordUpdateBody::PeerReady => 0,
            ChordUpdateBody::Neighbors {
                predecessors,
                successors,
            } => 4 + items_len(predecessors) + items_len(successors),
            ChordUpdateBody::Full {
                predecessors,
                successors,
                fingers,
            } => 6 + items_len(predecessors) + items_len(successors) + items_len(fingers),
            ChordUpdateBody::Unknown { data, .. } => data.len(),
        }
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u32(self.uptime);
        self.update_type().encode(b)?;
        match &self.body {
            ChordUpdateBody::PeerReady => {}
            ChordUpdateBody::Neighbors {
                predecessors,
                successors,
            } => {
                put_vec(b, Len::U16, predecessors, "ChordUpdate.predecessors")?;
                put_vec(b, Len::U16, successors, "ChordUpdate.successors")?;
            }
            ChordUpdateBody::Full {
                predecessors,
                successors,
                fingers,
            } => {
                put_vec(b, Len::U16, predecessors, "ChordUpdate.predecessors")?;
                put_vec(b, Len::U16, successors, "ChordUpdate.successors")?;
                put_vec(b, Len::U16, fingers, "ChordUpdate.fingers")?;
            }
            ChordUpdateBody::Unknown { data, .. } => b.put_slice(data),
        }
        Ok(())
    }
}

/// `ChordRouteQueryAns` (RFC 6940 §10.8): the peer the responder would route to next.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ChordRouteQueryAns {
    pub next_peer: NodeId,
}

impl Wire for ChordRouteQueryAns {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("ChordRouteQueryAns", i, |i| {
            let (i, next_peer) = field("next_peer", i, |i| NodeId::decode_from(cx, i))?;
            Ok((i, ChordRouteQueryAns { next_peer }))
        })
    }
    fn encoded_len(&self) -> usize {
        self.next_peer.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.next_peer.encode(b)
    }
}

code_point! {
    /// `ChordLeaveType` (RFC 6940 §10.9).
    ChordLeaveType(u8) {
        INVALID = 0 => "invalidChordLeaveType",
        FROM_SUCC = 1 => "from_succ",
        FROM_PRED = 2 => "from_pred",
    }
}

/// `ChordLeaveData` (RFC 6940 §10.9), the overlay_specific_data of a CHORD-RELOAD LeaveReq.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum ChordLeaveData {
    /// Sent by a leaving peer to its predecessors: its successor list.
    FromSucc { successors: Vec<NodeId> },
    /// Sent by a leaving peer to its successors: its predecessor list.
    FromPred { predecessors: Vec<NodeId> },
    /// A leave type this codec does not know; the rest of the data, kept as it came.
    Unknown {
        leave_type: ChordLeaveType,
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        data: Bytes,
    },
}

impl ChordLeaveData {
    pub fn leave_type(&self) -> ChordLeaveType {
        match self {
            ChordLeaveData::FromSucc { .. } => ChordLeaveType::FROM_SUCC,
            ChordLeaveData::FromPred { .. } => ChordLeaveType::FROM_PRED,
            ChordLeaveData::Unknown { leave_type, .. } => *leave_type,
        }
    }
}

impl Wire for ChordLeaveData {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("ChordLeaveData", i, |i| {
            let (r, t) = ChordLeaveType::decode_from(cx, i)?;
            match t {
                ChordLeaveType::INVALID => {
                    fail(i, ErrorKind::Invalid("Chord leave type 0 (invalid)"))
                }
                ChordLeaveType::FROM_SUCC => {
                    let (r, successors) = node_list(cx, "successors", r)?;
                    Ok((r, ChordLeaveData::FromSucc { successors }))
                }
                ChordLeaveType::FROM_PRED => {
                    let (r, predecessors) = node_list(cx, "predecessors", r)?;
                    Ok((r, ChordLeaveData::FromPred { predecessors }))
                }
                leave_type => Ok((
                    &r[r.len()..],
                    ChordLeaveData::Unknown {
                        leave_type,
                        data: cx.bytes(r),
                    },
                )),
            }
        })
    }
    fn encoded_len(&self) -> usize {
        1 + match self {
            ChordLeaveData::FromSucc { successors: l }
            | ChordLeaveData::FromPred { predecessors: l } => 2 + items_len(l),
            ChordLeaveData::Unknown { data, .. } => data.len(),
        }
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.leave_type().encode(b)?;
        match self {
            ChordLeaveData::FromSucc { successors: l }
            | ChordLeaveData::FromPred { predecessors: l } => {
                put_vec(b, Len::U16, l, "ChordLeaveData.nodes")
            }
            ChordLeaveData::Unknown { data, .. } => {
                b.put_slice(data);
                Ok(())
            }
        }
    }
}
