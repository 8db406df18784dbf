//! RELOAD overlay diagnostics (RFC 7851): the PathTrack method (§4.3), the
//! Diagnostic_Ping message extension (§4.2.1) and the `DiagnosticsRequest` /
//! `DiagnosticsResponse` structures (§5), and the code points of the Diagnostic Kind-ID
//! and dMFlags registries (§9.1, §9.2).

use bytes::{BufMut, Bytes};

use crate::codec::{
    Cx, EncodeError, In, Len, PResult, Wire, code_point, field, items_len, opaque, put_opaque,
    put_vec, u8_, u16_, u32_, u64_, wire_vec,
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

code_point! {
    /// `DiagnosticKindId` (RFC 7851 §5.1, registry of §9.2 Table 1). The `kind` fields of
    /// [`DiagnosticExtension`] and [`DiagnosticInfo`] stay plain `u16`s; this type names
    /// their values (`DiagnosticKindId::from(info.kind)`).
    ///
    /// 0x0011–0x003e are unassigned (to be assigned together with a dMFlags bit),
    /// 0xf000–0xfffe are for local use, 0x0000 and 0xffff are reserved.
    DiagnosticKindId(u16) {
        RESERVED = 0x0000 => "Reserved",
        /// 8 bits: congestion status 0x00–0x0f (RFC 7851 §5.3).
        STATUS_INFO = 0x0001 => "STATUS_INFO",
        /// uint32: peers in the routing table.
        ROUTING_TABLE_SIZE = 0x0002 => "ROUTING_TABLE_SIZE",
        /// uint64: MIPS.
        PROCESS_POWER = 0x0003 => "PROCESS_POWER",
        /// uint64: kbit/s.
        UPSTREAM_BANDWIDTH = 0x0004 => "UPSTREAM_BANDWIDTH",
        /// uint64: kbit/s.
        DOWNSTREAM_BANDWIDTH = 0x0005 => "DOWNSTREAM_BANDWIDTH",
        /// US-ASCII string terminated by `\0`.
        SOFTWARE_VERSION = 0x0006 => "SOFTWARE_VERSION",
        /// uint64: seconds.
        MACHINE_UPTIME = 0x0007 => "MACHINE_UPTIME",
        /// uint64: seconds.
        APP_UPTIME = 0x0008 => "APP_UPTIME",
        /// uint64: KiB.
        MEMORY_FOOTPRINT = 0x0009 => "MEMORY_FOOTPRINT",
        /// uint64: bytes.
        DATASIZE_STORED = 0x000a => "DATASIZE_STORED",
        /// Array of uint64 indexed by Kind-ID.
        INSTANCES_STORED = 0x000b => "INSTANCES_STORED",
        /// Array of (uint64 sent, uint64 received) indexed by method code.
        MESSAGES_SENT_RCVD = 0x000c => "MESSAGES_SENT_RCVD",
        /// uint32: EWMA of bytes sent per second.
        EWMA_BYTES_SENT = 0x000d => "EWMA_BYTES_SENT",
        /// uint32: EWMA of bytes received per second.
        EWMA_BYTES_RCVD = 0x000e => "EWMA_BYTES_RCVD",
        /// 8 bits: IP-layer hops to the next hop.
        UNDERLAY_HOP = 0x000f => "UNDERLAY_HOP",
        /// 8 bits: leftmost bit clear = on battery.
        BATTERY_STATUS = 0x0010 => "BATTERY_STATUS",
        RESERVED_ALL_ONES = 0xffff => "Reserved",
    }
}

/// The dMFlags bits of RFC 7851 §9.1 ("RELOAD Diagnostics Flag" registry).
///
/// Bit 0 (`0x1`) is the "Reserved First Bit", so STATUS_INFO — Diagnostic Kind 0x0001 —
/// is bit 1 (`0x2`), and in general Kind `k` is bit `k` (§9.1 table; §5.3: "the value of
/// the diagnostic Kind ID will correspond to the numeric field marked in the dMFlags").
pub mod dm_flags {
    /// "Reserved All 0s value": nothing requested.
    pub const NONE: u64 = 0x0000_0000_0000_0000;
    /// "Reserved First Bit": MUST be 0 when particular Kinds are requested (§5.3).
    pub const RESERVED_FIRST_BIT: u64 = 0x0000_0000_0000_0001;
    pub const STATUS_INFO: u64 = 0x0000_0000_0000_0002;
    pub const ROUTING_TABLE_SIZE: u64 = 0x0000_0000_0000_0004;
    pub const PROCESS_POWER: u64 = 0x0000_0000_0000_0008;
    pub const UPSTREAM_BANDWIDTH: u64 = 0x0000_0000_0000_0010;
    pub const DOWNSTREAM_BANDWIDTH: u64 = 0x0000_0000_0000_0020;
    pub const SOFTWARE_VERSION: u64 = 0x0000_0000_0000_0040;
    pub const MACHINE_UPTIME: u64 = 0x0000_0000_0000_0080;
    pub const APP_UPTIME: u64 = 0x0000_0000_0000_0100;
    pub const MEMORY_FOOTPRINT: u64 = 0x0000_0000_0000_0200;
    pub const DATASIZE_STORED: u64 = 0x0000_0000_0000_0400;
    pub const INSTANCES_STORED: u64 = 0x0000_0000_0000_0800;
    pub const MESSAGES_SENT_RCVD: u64 = 0x0000_0000_0000_1000;
    pub const EWMA_BYTES_SENT: u64 = 0x0000_0000_0000_2000;
    pub const EWMA_BYTES_RCVD: u64 = 0x0000_0000_0000_4000;
    pub const UNDERLAY_HOP: u64 = 0x0000_0000_0000_8000;
    pub const BATTERY_STATUS: u64 = 0x0000_0000_0001_0000;
    /// "Reserved Last Bit": MUST be 0 when particular Kinds are requested (§5.3).
    pub const RESERVED_LAST_BIT: u64 = 0x8000_0000_0000_0000;
    /// "Reserved All 1s value": every base diagnostic is requested (§5.1).
    pub const ALL: u64 = 0xffff_ffff_ffff_ffff;
}

/// Lowest and highest Diagnostic Kind-IDs that have a dMFlags bit (RFC 7851 §5.3: 62
/// items, the first and last bits being reserved; §9.2: 0x0001–0x003e are assigned
/// together with flags).
const FLAGGED_KINDS: std::ops::RangeInclusive<u16> = 0x0001..=0x003e;

/// The dMFlags bit that requests `kind` (RFC 7851 §9.1): `1 << kind` for Kinds
/// 0x0001–0x003e (STATUS_INFO → `0x2`, BATTERY_STATUS → `0x1_0000`), `None` for Kinds that
/// can only be requested through a [`DiagnosticExtension`]. Kinds 0x0011–0x003e are not
/// registered yet; their bit follows the same rule.
pub fn dm_flag(kind: DiagnosticKindId) -> Option<u64> {
    FLAGGED_KINDS.contains(&kind.0).then(|| 1u64 << kind.0)
}

impl DiagnosticKindId {
    /// See [`dm_flag`].
    pub fn dm_flag(self) -> Option<u64> {
        dm_flag(self)
    }

    /// The Kinds a dMFlags value requests, in ascending order. The all-ones value
    /// (RFC 7851 §5.1: "all base diagnostic information values are requested") yields
    /// every Kind 0x0001–0x003e; otherwise the reserved first and last bits are ignored.
    pub fn requested_by(dm_flags: u64) -> impl Iterator<Item = DiagnosticKindId> {
        FLAGGED_KINDS
            .filter(move |&k| dm_flags == dm_flags::ALL || dm_flags & (1u64 << k) != 0)
            .map(DiagnosticKindId)
    }
}
