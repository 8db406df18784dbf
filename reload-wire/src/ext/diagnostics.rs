//! RELOAD overlay diagnostics (RFC 7851): the PathTrack method (§4.3), the
//! Diagnostic_Ping message extension (§4.2.1) and the `DiagnosticsRequest` /
//! `DiagnosticsResponse` structures (§5).

use bytes::{BufMut, Bytes};

use crate::codec::{
    Cx, EncodeError, In, Len, PResult, Wire, field, items_len, opaque, put_opaque, put_vec, u8_,
    u16_, u32_, u64_, wire_vec,
};
use crate::common::Destination;

/// `DiagnosticExtension` (RFC 7851 §5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DiagnosticExtension {
    /// `DiagnosticKindId` (RFC 7851 §9.2).
    pub kind: u16,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub diagnostic_extension_contents: Bytes,
}

impl Wire for DiagnosticExtension {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("DiagnosticExtension", i, |i| {
            let (i, kind) = field("kind", i, u16_)?;
            let (i, diagnostic_extension_contents) =
                field("diagnostic_extension_contents", i, |i| {
                    opaque(cx, Len::U32, i)
                })?;
            Ok((
                i,
                DiagnosticExtension {
                    kind,
                    diagnostic_extension_contents,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        2 + 4 + self.diagnostic_extension_contents.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u16(self.kind);
        put_opaque(
            b,
            Len::U32,
            &self.diagnostic_extension_contents,
            "DiagnosticExtension.diagnostic_extension_contents",
        )
    }
}

/// `DiagnosticsRequest` (RFC 7851 §5.1); also the contents of a Diagnostic_Ping extension.
///
/// `ext_length` repeats the size of the extension list. RFC 7851 §5.1 says it is "the
/// data making up the diagnostic_extensions_list"; we emit the byte size of the list's
/// elements (the same value as the vector's own length prefix) and keep whatever a peer
/// sent, so that a message round-trips unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DiagnosticsRequest {
    /// Milliseconds since the Unix epoch.
    pub expiration: u64,
    pub timestamp_initiated: u64,
    /// Bit map of the base diagnostics requested (RFC 7851 §9.1).
    pub dm_flags: u64,
    pub ext_length: u32,
    pub diagnostic_extensions_list: Vec<DiagnosticExtension>,
}

impl DiagnosticsRequest {
    /// A request with `ext_length` computed from the list.
    pub fn new(
        expiration: u64,
        timestamp_initiated: u64,
        dm_flags: u64,
        diagnostic_extensions_list: Vec<DiagnosticExtension>,
    ) -> Self {
        let ext_length = items_len(&diagnostic_extensions_list) as u32;
        DiagnosticsRequest {
            expiration,
            timestamp_initiated,
            dm_flags,
            ext_length,
            diagnostic_extensions_list,
        }
    }
}

impl Wire for DiagnosticsRequest {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("DiagnosticsRequest", i, |i| {
            let (i, expiration) = field("expiration", i, u64_)?;
            let (i, timestamp_initiated) = field("timestamp_initiated", i, u64_)?;
            let (i, dm_flags) = field("dMFlags", i, u64_)?;
            let (i, ext_length) = field("ext_length", i, u32_)?;
            let (i, diagnostic_extensions_list) = field("diagnostic_extensions_list", i, |i| {
                wire_vec(cx, Len::U32, i)
            })?;
            Ok((
                i,
                DiagnosticsRequest {
                    expiration,
                    timestamp_initiated,
                    dm_flags,
                    ext_length,
                    diagnostic_extensions_list,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        8 * 3 + 4 + 4 + items_len(&self.diagnostic_extensions_list)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u64(self.expiration);
        b.put_u64(self.timestamp_initiated);
        b.put_u64(self.dm_flags);
        b.put_u32(self.ext_length);
        put_vec(
            b,
            Len::U32,
            &self.diagnostic_extensions_list,
            "DiagnosticsRequest.diagnostic_extensions_list",
        )
    }
}

/// `DiagnosticInfo` (RFC 7851 §5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DiagnosticInfo {
    /// `DiagnosticKindId` (RFC 7851 §9.2), e.g. 0x0001 STATUS_INFO.
    pub kind: u16,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub diagnostic_info_contents: Bytes,
}

impl Wire for DiagnosticInfo {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("DiagnosticInfo", i, |i| {
            let (i, kind) = field("kind", i, u16_)?;
            let (i, diagnostic_info_contents) =
                field("diagnostic_info_contents", i, |i| opaque(cx, Len::U16, i))?;
            Ok((
                i,
                DiagnosticInfo {
                    kind,
                    diagnostic_info_contents,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        2 + 2 + self.diagnostic_info_contents.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u16(self.kind);
        put_opaque(
            b,
            Len::U16,
            &self.diagnostic_info_contents,
            "DiagnosticInfo.diagnostic_info_contents",
        )
    }
}

/// `DiagnosticsResponse` (RFC 7851 §5.2). `ext_length` as in [`DiagnosticsRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DiagnosticsResponse {
    pub expiration: u64,
    pub timestamp_initiated: u64,
    pub timestamp_received: u64,
    /// The TTL of the request as received.
    pub hop_counter: u8,
    pub ext_length: u32,
    pub diagnostic_info_list: Vec<DiagnosticInfo>,
}

impl DiagnosticsResponse {
    /// A response with `ext_length` computed from the list.
    pub fn new(
        expiration: u64,
        timestamp_initiated: u64,
        timestamp_received: u64,
        hop_counter: u8,
        diagnostic_info_list: Vec<DiagnosticInfo>,
    ) -> Self {
        let ext_length = items_len(&diagnostic_info_list) as u32;
        DiagnosticsResponse {
            expiration,
            timestamp_initiated,
            timestamp_received,
            hop_counter,
            ext_length,
            diagnostic_info_list,
        }
    }
}

impl Wire for DiagnosticsResponse {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("DiagnosticsResponse", i, |i| {
            let (i, expiration) = field("expiration", i, u64_)?;
            let (i, timestamp_initiated) = field("timestamp_initiated", i, u64_)?;
            let (i, timestamp_received) = field("timestamp_received", i, u64_)?;
            let (i, hop_counter) = field("hop_counter", i, u8_)?;
            let (i, ext_length) = field("ext_length", i, u32_)?;
            let (i, diagnostic_info_list) =
                field("diagnostic_info_list", i, |i| wire_vec(cx, Len::U32, i))?;
            Ok((
                i,
                DiagnosticsResponse {
                    expiration,
                    timestamp_initiated,
                    timestamp_received,
                    hop_counter,
                    ext_length,
                    diagnostic_info_list,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        8 * 3 + 1 + 4 + 4 + items_len(&self.diagnostic_info_list)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u64(self.expiration);
        b.put_u64(self.timestamp_initiated);
        b.put_u64(self.timestamp_received);
        b.put_u8(self.hop_counter);
        b.put_u32(self.ext_length);
        put_vec(
            b,
            Len::U32,
            &self.diagnostic_info_list,
            "DiagnosticsResponse.diagnostic_info_list",
        )
    }
}

/// `PathTrackReq` (RFC 7851 §4.3.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PathTrackReq {
    pub destination: Destination,
    pub request: DiagnosticsRequest,
}

impl Wire for PathTrackReq {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("PathTrackReq", i, |i| {
            let (i, destination) = field("destination", i, |i| Destination::decode_from(cx, i))?;
            let (i, request) = DiagnosticsRequest::decode_from(cx, i)?;
            Ok((
                i,
                PathTrackReq {
                    destination,
                    request,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        self.destination.encoded_len() + self.request.encoded_len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.destination.encode(b)?;
        self.request.encode(b)
    }
}

/// `PathTrackAns` (RFC 7851 §4.3.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PathTrackAns {
    pub next_hop: Destination,
    pub response: DiagnosticsResponse,
}

impl Wire for PathTrackAns {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("PathTrackAns", i, |i| {
            let (i, next_hop) = field("next_hop", i, |i| Destination::decode_from(cx, i))?;
            let (i, response) = DiagnosticsResponse::decode_from(cx, i)?;
            Ok((i, PathTrackAns { next_hop, response }))
        })
    }
    fn encoded_len(&self) -> usize {
        self.next_hop.encoded_len() + self.response.encoded_len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.next_hop.encode(b)?;
        self.response.encode(b)
    }
}
