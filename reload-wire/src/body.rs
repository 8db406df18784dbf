//! Typed message bodies, selected by message code (RFC 6940 §6.3.3: "the message body
//! struct is named after the method with Req or Ans appended").

use bytes::{Bytes, BytesMut};

use crate::chord::{ChordRouteQueryAns, ChordUpdate};
use crate::codec::{DecodeError, DecodeOptions, EncodeError, Wire, decode_all};
use crate::ext::diagnostics::{PathTrackAns, PathTrackReq};
use crate::link::{AppAttach, AttachReqAns, ConfigUpdateAns, ConfigUpdateReq, PingAns, PingReq};
use crate::message::{ErrorResponse, MessageCode};
use crate::storage::{FetchAns, FetchReq, FindAns, FindReq, StatAns, StatReq, StoreAns, StoreReq};
use crate::topology::{
    JoinAns, JoinReq, LeaveAns, LeaveReq, ProbeAns, ProbeReq, RouteQueryAns, RouteQueryReq,
    UpdateAns, UpdateReq,
};

/// A decoded message body. Codes without a structure here (unassigned, experimental,
/// reserved) are kept raw as [`MessageBody::Unknown`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum MessageBody {
    ProbeReq(ProbeReq),
    ProbeAns(ProbeAns),
    AttachReq(AttachReqAns),
    AttachAns(AttachReqAns),
    StoreReq(StoreReq),
    StoreAns(StoreAns),
    FetchReq(FetchReq),
    FetchAns(FetchAns),
    FindReq(FindReq),
    FindAns(FindAns),
    JoinReq(JoinReq),
    JoinAns(JoinAns),
    LeaveReq(LeaveReq),
    LeaveAns(LeaveAns),
    UpdateReq(UpdateReq),
    UpdateAns(UpdateAns),
    RouteQueryReq(RouteQueryReq),
    RouteQueryAns(RouteQueryAns),
    PingReq(PingReq),
    PingAns(PingAns),
    StatReq(StatReq),
    StatAns(StatAns),
    AppAttachReq(AppAttach),
    AppAttachAns(AppAttach),
    ConfigUpdateReq(ConfigUpdateReq),
    ConfigUpdateAns(ConfigUpdateAns),
    /// RFC 7851 §5.1.
    PathTrackReq(PathTrackReq),
    /// RFC 7851 §5.2.
    PathTrackAns(PathTrackAns),
    Error(ErrorResponse),
    Unknown {
        code: MessageCode,
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        body: Bytes,
    },
}

macro_rules! bodies {
    ($( $code:ident => $variant:ident($ty:ty) ),* $(,)?) => {
        impl MessageBody {
            /// Decodes `body` as the structure for `code`; the structure must fill it.
            pub fn decode(code: MessageCode, body: &Bytes, opts: &DecodeOptions) -> Result<Self, DecodeError> {
                match code {
                    $( MessageCode::$code => decode_all(body, opts, |cx, i| <$ty>::decode_from(cx, i)).map(MessageBody::$variant), )*
                    MessageCode::ERROR => decode_all(body, opts, |cx, i| ErrorResponse::decode_from(cx, i)).map(MessageBody::Error),
                    code => Ok(MessageBody::Unknown { code, body: body.clone() }),
                }
            }

            /// The message code this body travels under.
            pub fn code(&self) -> MessageCode {
                match self {
                    $( MessageBody::$variant(_) => MessageCode::$code, )*
                    MessageBody::Error(_) => MessageCode::ERROR,
                    MessageBody::Unknown { code, .. } => *code,
                }
            }

            pub fn encoded_len(&self) -> usize {
                match self {
                    $( MessageBody::$variant(b) => b.encoded_len(), )*
                    MessageBody::Error(b) => b.encoded_len(),
                    MessageBody::Unknown { body, .. } => body.len(),
                }
            }

            pub fn encode<B: bytes::BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
                match self {
                    $( MessageBody::$variant(v) => v.encode(b), )*
                    MessageBody::Error(v) => v.encode(b),
                    MessageBody::Unknown { body, .. } => {
                        b.put_slice(body);
                        Ok(())
                    }
                }
            }
        }
    };
}

bodies! {
    PROBE_REQ => ProbeReq(ProbeReq),
    PROBE_ANS => ProbeAns(ProbeAns),
    ATTACH_REQ => AttachReq(AttachReqAns),
    ATTACH_ANS => AttachAns(AttachReqAns),
    STORE_REQ => StoreReq(StoreReq),
    STORE_ANS => StoreAns(StoreAns),
    FETCH_REQ => FetchReq(FetchReq),
    FETCH_ANS => FetchAns(FetchAns),
    FIND_REQ => FindReq(FindReq),
    FIND_ANS => FindAns(FindAns),
    JOIN_REQ => JoinReq(JoinReq),
    JOIN_ANS => JoinAns(JoinAns),
    LEAVE_REQ => LeaveReq(LeaveReq),
    LEAVE_ANS => LeaveAns(LeaveAns),
    UPDATE_REQ => UpdateReq(UpdateReq),
    UPDATE_ANS => UpdateAns(UpdateAns),
    ROUTE_QUERY_REQ => RouteQueryReq(RouteQueryReq),
    ROUTE_QUERY_ANS => RouteQueryAns(RouteQueryAns),
    PING_REQ => PingReq(PingReq),
    PING_ANS => PingAns(PingAns),
    STAT_REQ => StatReq(StatReq),
    STAT_ANS => StatAns(StatAns),
    APP_ATTACH_REQ => AppAttachReq(AppAttach),
    APP_ATTACH_ANS => AppAttachAns(AppAttach),
    CONFIG_UPDATE_REQ => ConfigUpdateReq(ConfigUpdateReq),
    CONFIG_UPDATE_ANS => ConfigUpdateAns(ConfigUpdateAns),
    PATH_TRACK_REQ => PathTrackReq(PathTrackReq),
    PATH_TRACK_ANS => PathTrackAns(PathTrackAns),
}

impl MessageBody {
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut b)?;
        Ok(b.freeze())
    }

    /// The CHORD-RELOAD view of an UpdateReq body (RFC 6940 §10.7).
    pub fn chord_update(&self, opts: &DecodeOptions) -> Option<Result<ChordUpdate, DecodeError>> {
        match self {
            MessageBody::UpdateReq(u) => Some(ChordUpdate::decode(&u.0, opts)),
            _ => None,
        }
    }

    /// The CHORD-RELOAD view of a RouteQueryAns body (RFC 6940 §10.8).
    pub fn chord_route_query_ans(
        &self,
        opts: &DecodeOptions,
    ) -> Option<Result<ChordRouteQueryAns, DecodeError>> {
        match self {
            MessageBody::RouteQueryAns(a) => Some(ChordRouteQueryAns::decode(&a.0, opts)),
            _ => None,
        }
    }
}
