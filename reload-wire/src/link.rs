//! Forwarding and link management methods (RFC 6940 §6.5): Attach with its ICE
//! candidates (§6.5.1), AppAttach (§6.5.2), Ping (§6.5.3) and ConfigUpdate (§6.5.4).

use bytes::{BufMut, Bytes};

use crate::codec::{
    Cx, EncodeError, ErrorKind, In, Len, PResult, Wire, boolean, code_point, exact, fail, field,
    items_len, opaque, prefixed, put_opaque, put_vec, u16_, u32_, u64_, vector, wire_vec,
};
use crate::common::IpAddressPort;

code_point! {
    /// `OverlayLinkType` (RFC 6940 §6.5.1.1, §14.10).
    OverlayLinkType(u8) {
        INVALID = 0 => "invalidOverlayLinkType",
        DTLS_UDP_SR = 1 => "DTLS-UDP-SR",
        DTLS_UDP_SR_NO_ICE = 3 => "DTLS-UDP-SR-NO-ICE",
        TLS_TCP_FH_NO_ICE = 4 => "TLS-TCP-FH-NO-ICE",
        EXP_LINK = 5 => "EXP-LINK",
        RESERVED = 255 => "reserved",
    }
}

code_point! {
    /// `CandType` (RFC 6940 §6.5.1.1).
    CandType(u8) {
        INVALID = 0 => "invalidCandType",
        HOST = 1 => "host",
        SRFLX = 2 => "srflx",
        RELAY = 4 => "relay",
    }
}

/// `IceExtension` (RFC 6940 §6.5.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct IceExtension {
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub name: Bytes,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub value: Bytes,
}

impl Wire for IceExtension {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("IceExtension", i, |i| {
            let (i, name) = field("name", i, |i| opaque(cx, Len::U16, i))?;
            let (i, value) = field("value", i, |i| opaque(cx, Len::U16, i))?;
            Ok((i, IceExtension { name, value }))
        })
    }
    fn encoded_len(&self) -> usize {
        4 + self.name.len() + self.value.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_opaque(b, Len::U16, &self.name, "IceExtension.name")?;
        put_opaque(b, Len::U16, &self.value, "IceExtension.value")
    }
}

/// `IceCandidate` (RFC 6940 §6.5.1.1). The component ID is always 1 and not on the
/// wire; `rel_addr_port` is present exactly for srflx and relay candidates.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct IceCandidate {
    pub addr_port: IpAddressPort,
    pub overlay_link: OverlayLinkType,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub foundation: Bytes,
    pub priority: u32,
    pub cand_type: CandType,
    pub rel_addr_port: Option<IpAddressPort>,
    pub extensions: Vec<IceExtension>,
}

impl IceCandidate {
    /// A No-ICE host candidate (RFC 6940 §6.5.1.5 / §6.6.1): what a No-ICE overlay sends.
    pub fn host(addr_port: IpAddressPort, overlay_link: OverlayLinkType) -> Self {
        IceCandidate {
            addr_port,
            overlay_link,
            foundation: Bytes::new(),
            priority: 0,
            cand_type: CandType::HOST,
            rel_addr_port: None,
            extensions: Vec::new(),
        }
    }
}

impl Wire for IceCandidate {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("IceCandidate", i, |i| {
            let (i, addr_port) = field("addr_port", i, |i| IpAddressPort::decode_from(cx, i))?;
            let (i, overlay_link) =
                field("overlay_link", i, |i| OverlayLinkType::decode_from(cx, i))?;
            let (i, foundation) = field("foundation", i, |i| opaque(cx, Len::U8, i))?;
            let (i, priority) = field("priority", i, u32_)?;
            let (r, cand_type) = field("type", i, |i| CandType::decode_from(cx, i))?;
            let (r, rel_addr_port) = match cand_type {
                CandType::HOST => (r, None),
                CandType::SRFLX | CandType::RELAY => {
                    let (r, a) = field("rel_addr_port", r, |r| IpAddressPort::decode_from(cx, r))?;
                    (r, Some(a))
                }
                _ => {
                    // The select has no case for it, so nothing says whether a related
                    // address follows: the rest cannot be parsed.
                    return fail(i, ErrorKind::Invalid("unknown ICE candidate type"));
                }
            };
            let (r, extensions) = field("extensions", r, |r| wire_vec(cx, Len::U16, r))?;
            Ok((
                r,
                IceCandidate {
                    addr_port,
                    overlay_link,
                    foundation,
                    priority,
                    cand_type,
                    rel_addr_port,
                    extensions,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        self.addr_port.encoded_len()
            + 1
            + 1
            + self.foundation.len()
            + 4
            + 1
            + self.rel_addr_port.as_ref().map_or(0, Wire::encoded_len)
            + 2
            + items_len(&self.extensions)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.addr_port.encode(b)?;
        self.overlay_link.encode(b)?;
        put_opaque(b, Len::U8, &self.foundation, "IceCandidate.foundation")?;
        b.put_u32(self.priority);
        self.cand_type.encode(b)?;
        if let Some(a) = &self.rel_addr_port {
            a.encode(b)?;
        }
        put_vec(b, Len::U16, &self.extensions, "IceCandidate.extensions")
    }
}

/// `AttachReqAns` (RFC 6940 §6.5.1.1): both the Attach request and its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct AttachReqAns {
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub ufrag: Bytes,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub password: Bytes,
    /// "passive" from the Attach sender (the offerer), "active" from the answerer.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub role: Bytes,
    pub candidates: Vec<IceCandidate>,
    pub send_update: bool,
}

/// Role string of the Attach sender (RFC 6940 §6.5.1.1).
pub const ROLE_PASSIVE: &[u8] = b"passive";
/// Role string of the Attach answerer.
pub const ROLE_ACTIVE: &[u8] = b"active";

impl Wire for AttachReqAns {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("AttachReqAns", i, |i| {
            let (i, ufrag) = field("ufrag", i, |i| opaque(cx, Len::U8, i))?;
            let (i, password) = field("password", i, |i| opaque(cx, Len::U8, i))?;
            let (i, role) = field("role", i, |i| opaque(cx, Len::U8, i))?;
            let (i, candidates) = field("candidates", i, |i| wire_vec(cx, Len::U16, i))?;
            let (i, send_update) = field("send_update", i, boolean)?;
            Ok((
                i,
                AttachReqAns {
                    ufrag,
                    password,
                    role,
                    candidates,
                    send_update,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        3 + self.ufrag.len()
            + self.password.len()
            + self.role.len()
            + 2
            + items_len(&self.candidates)
            + 1
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_opaque(b, Len::U8, &self.ufrag, "AttachReqAns.ufrag")?;
        put_opaque(b, Len::U8, &self.password, "AttachReqAns.password")?;
        put_opaque(b, Len::U8, &self.role, "AttachReqAns.role")?;
        put_vec(b, Len::U16, &self.candidates, "AttachReqAns.candidates")?;
        b.put_u8(self.send_update as u8);
        Ok(())
    }
}

/// `AppAttachReq` and `AppAttachAns` (RFC 6940 §6.5.2.1, §6.5.2.2) share one layout.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct AppAttach {
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub ufrag: Bytes,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub password: Bytes,
    /// Application-ID (RFC 6940 §14.5): 5060 SIP, 5061 SIPS, …
    pub application: u16,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub role: Bytes,
    pub candidates: Vec<IceCandidate>,
}

/// `AppAttachReq` (RFC 6940 §6.5.2.1).
pub type AppAttachReq = AppAttach;
/// `AppAttachAns` (RFC 6940 §6.5.2.2).
pub type AppAttachAns = AppAttach;

impl Wire for AppAttach {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("AppAttach", i, |i| {
            let (i, ufrag) = field("ufrag", i, |i| opaque(cx, Len::U8, i))?;
            let (i, password) = field("password", i, |i| opaque(cx, Len::U8, i))?;
            let (i, application) = field("application", i, u16_)?;
            let (i, role) = field("role", i, |i| opaque(cx, Len::U8, i))?;
            let (i, candidates) = field("candidates", i, |i| wire_vec(cx, Len::U16, i))?;
            Ok((
                i,
                AppAttach {
                    ufrag,
                    password,
                    application,
                    role,
                    candidates,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        3 + self.ufrag.len()
            + self.password.len()
            + 2
            + self.role.len()
            + 2
            + items_len(&self.candidates)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_opaque(b, Len::U8, &self.ufrag, "AppAttach.ufrag")?;
        put_opaque(b, Len::U8, &self.password, "AppAttach.password")?;
        b.put_u16(self.application);
        put_opaque(b, Len::U8, &self.role, "AppAttach.role")?;
        put_vec(b, Len::U16, &self.candidates, "AppAttach.candidates")
    }
}

/// `PingReq` (RFC 6940 §6.5.3.1): padding to probe path MTU.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PingReq {
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub padding: Bytes,
}

impl Wire for PingReq {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("PingReq", i, |i| {
            let (i, padding) = field("padding", i, |i| opaque(cx, Len::U16, i))?;
            Ok((i, PingReq { padding }))
        })
    }
    fn encoded_len(&self) -> usize {
        2 + self.padding.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_opaque(b, Len::U16, &self.padding, "PingReq.padding")
    }
}

/// `PingAns` (RFC 6940 §6.5.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PingAns {
    pub response_id: u64,
    /// Milliseconds since the Unix epoch when the answer was made.
    pub time: u64,
}

impl Wire for PingAns {
    fn decode_from<'a>(_cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("PingAns", i, |i| {
            let (i, response_id) = field("response_id", i, u64_)?;
            let (i, time) = field("time", i, u64_)?;
            Ok((i, PingAns { response_id, time }))
        })
    }
    fn encoded_len(&self) -> usize {
        16
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u64(self.response_id);
        b.put_u64(self.time);
        Ok(())
    }
}

code_point! {
    /// `ConfigUpdateType` (RFC 6940 §6.5.4.1).
    ConfigUpdateType(u8) {
        INVALID = 0 => "invalidConfigUpdateType",
        CONFIG = 1 => "config",
        KIND = 2 => "kind",
    }
}

/// `ConfigUpdateReq` (RFC 6940 §6.5.4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum ConfigUpdateReq {
    /// A whole configuration document (the XML, §11.1).
    Config(#[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))] Bytes),
    /// Kind descriptions: each the XML of one `kind` element with its signature.
    Kinds(
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex_vec"))]
        Vec<Bytes>,
    ),
    /// A type this codec does not know, kept as it came.
    Unknown {
        update_type: ConfigUpdateType,
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        data: Bytes,
    },
}

impl ConfigUpdateReq {
    pub fn update_type(&self) -> ConfigUpdateType {
        match self {
            ConfigUpdateReq::Config(_) => ConfigUpdateType::CONFIG,
            ConfigUpdateReq::Kinds(_) => ConfigUpdateType::KIND,
            ConfigUpdateReq::Unknown { update_type, .. } => *update_type,
        }
    }

    fn data_len(&self) -> usize {
        match self {
            ConfigUpdateReq::Config(c) => 3 + c.len(),
            ConfigUpdateReq::Kinds(k) => 3 + k.iter().map(|k| 2 + k.len()).sum::<usize>(),
            ConfigUpdateReq::Unknown { data, .. } => data.len(),
        }
    }
}

impl Wire for ConfigUpdateReq {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("ConfigUpdateReq", i, |i| {
            let (r, t) = ConfigUpdateType::decode_from(cx, i)?;
            let (r, data) = field("length", r, |r| prefixed(Len::U32, r))?;
            let v = match t {
                ConfigUpdateType::INVALID => {
                    return fail(i, ErrorKind::Invalid("config update type 0 (invalid)"));
                }
                ConfigUpdateType::CONFIG => {
                    let (_, c) = field("config_data", data, |d| {
                        exact(d, |d| opaque(cx, Len::U24, d))
                    })?;
                    ConfigUpdateReq::Config(c)
                }
                ConfigUpdateType::KIND => {
                    let (_, k) = field("kinds", data, |d| {
                        exact(d, |d| {
                            vector(Len::U24, d, |e| {
                                field("KindDescription", e, |e| opaque(cx, Len::U16, e))
                            })
                        })
                    })?;
                    ConfigUpdateReq::Kinds(k)
                }
                update_type => ConfigUpdateReq::Unknown {
                    update_type,
                    data: cx.bytes(data),
                },
            };
            Ok((r, v))
        })
    }
    fn encoded_len(&self) -> usize {
        1 + 4 + self.data_len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.update_type().encode(b)?;
        Len::U32.write(b, self.data_len(), "ConfigUpdateReq.length")?;
        match self {
            ConfigUpdateReq::Config(c) => put_opaque(b, Len::U24, c, "ConfigUpdateReq.config_data"),
            ConfigUpdateReq::Kinds(kinds) => {
                let n = kinds.iter().map(|k| 2 + k.len()).sum();
                Len::U24.write(b, n, "ConfigUpdateReq.kinds")?;
                for k in kinds {
                    put_opaque(b, Len::U16, k, "ConfigUpdateReq.KindDescription")?;
                }
                Ok(())
            }
            ConfigUpdateReq::Unknown { data, .. } => {
                b.put_slice(data);
                Ok(())
            }
        }
    }
}

crate::topology::empty_body! {
    /// `ConfigUpdateAns` (RFC 6940 §6.5.4.1): empty.
    ConfigUpdateAns
}
