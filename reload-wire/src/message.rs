//! Message contents (RFC 6940 §6.3.3), error responses (§6.3.3.1) and whole messages
//! (§6.3: forwarding header ‖ message contents ‖ security block).

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{
    Cx, DecodeError, DecodeOptions, EncodeError, ErrorKind, In, Len, PResult, Wire, boolean,
    code_point, fail, field, items_len, opaque, put_opaque, put_vec, wire_vec,
};
use crate::header::{ForwardingHeader, check_length};
use crate::security::SecurityBlock;

code_point! {
    /// `message_code` (RFC 6940 §14.8; RFC 7851 §9.3). Requests are odd, the answer is
    /// the request's code plus one, 0xFFFF is an error.
    MessageCode(u16) {
        INVALID = 0x0000 => "invalid",
        PROBE_REQ = 0x0001 => "probe_req",
        PROBE_ANS = 0x0002 => "probe_ans",
        ATTACH_REQ = 0x0003 => "attach_req",
        ATTACH_ANS = 0x0004 => "attach_ans",
        STORE_REQ = 0x0007 => "store_req",
        STORE_ANS = 0x0008 => "store_ans",
        FETCH_REQ = 0x0009 => "fetch_req",
        FETCH_ANS = 0x000a => "fetch_ans",
        FIND_REQ = 0x000d => "find_req",
        FIND_ANS = 0x000e => "find_ans",
        JOIN_REQ = 0x000f => "join_req",
        JOIN_ANS = 0x0010 => "join_ans",
        LEAVE_REQ = 0x0011 => "leave_req",
        LEAVE_ANS = 0x0012 => "leave_ans",
        UPDATE_REQ = 0x0013 => "update_req",
        UPDATE_ANS = 0x0014 => "update_ans",
        ROUTE_QUERY_REQ = 0x0015 => "route_query_req",
        ROUTE_QUERY_ANS = 0x0016 => "route_query_ans",
        PING_REQ = 0x0017 => "ping_req",
        PING_ANS = 0x0018 => "ping_ans",
        STAT_REQ = 0x0019 => "stat_req",
        STAT_ANS = 0x001a => "stat_ans",
        APP_ATTACH_REQ = 0x001d => "app_attach_req",
        APP_ATTACH_ANS = 0x001e => "app_attach_ans",
        CONFIG_UPDATE_REQ = 0x0021 => "config_update_req",
        CONFIG_UPDATE_ANS = 0x0022 => "config_update_ans",
        EXP_A_REQ = 0x0023 => "exp_a_req",
        EXP_A_ANS = 0x0024 => "exp_a_ans",
        EXP_B_REQ = 0x0025 => "exp_b_req",
        EXP_B_ANS = 0x0026 => "exp_b_ans",
        /// RFC 7851 §9.3.
        PATH_TRACK_REQ = 0x0027 => "path_track_req",
        /// RFC 7851 §9.3.
        PATH_TRACK_ANS = 0x0028 => "path_track_ans",
        ERROR = 0xffff => "error",
    }
}

impl MessageCode {
    /// Odd codes below the reserved range are requests (RFC 6940 §6.3.3).
    pub fn is_request(self) -> bool {
        self.0 & 1 == 1 && self.0 < 0x8000
    }
    /// Even codes (and the error code) are responses.
    pub fn is_response(self) -> bool {
        self == MessageCode::ERROR || (self.0 & 1 == 0 && self.0 != 0 && self.0 < 0x8000)
    }
    /// The answer code for a request code.
    pub fn answer(self) -> MessageCode {
        MessageCode(self.0.wrapping_add(1))
    }
}

code_point! {
    /// `error_code` (RFC 6940 §14.9; RFC 7851 §9.4).
    ErrorCode(u16) {
        INVALID = 0x0000 => "invalid",
        FORBIDDEN = 0x0002 => "Error_Forbidden",
        NOT_FOUND = 0x0003 => "Error_Not_Found",
        REQUEST_TIMEOUT = 0x0004 => "Error_Request_Timeout",
        GENERATION_COUNTER_TOO_LOW = 0x0005 => "Error_Generation_Counter_Too_Low",
        INCOMPATIBLE_WITH_OVERLAY = 0x0006 => "Error_Incompatible_with_Overlay",
        UNSUPPORTED_FORWARDING_OPTION = 0x0007 => "Error_Unsupported_Forwarding_Option",
        DATA_TOO_LARGE = 0x0008 => "Error_Data_Too_Large",
        DATA_TOO_OLD = 0x0009 => "Error_Data_Too_Old",
        TTL_EXCEEDED = 0x000a => "Error_TTL_Exceeded",
        MESSAGE_TOO_LARGE = 0x000b => "Error_Message_Too_Large",
        UNKNOWN_KIND = 0x000c => "Error_Unknown_Kind",
        UNKNOWN_EXTENSION = 0x000d => "Error_Unknown_Extension",
        RESPONSE_TOO_LARGE = 0x000e => "Error_Response_Too_Large",
        CONFIG_TOO_OLD = 0x000f => "Error_Config_Too_Old",
        CONFIG_TOO_NEW = 0x0010 => "Error_Config_Too_New",
        IN_PROGRESS = 0x0011 => "Error_In_Progress",
        EXP_A = 0x0012 => "Error_Exp_A",
        EXP_B = 0x0013 => "Error_Exp_B",
        INVALID_MESSAGE = 0x0014 => "Error_Invalid_Message",
        /// RFC 7851 §9.4.
        UNDERLAY_DESTINATION_UNREACHABLE = 0x0015 => "Error_Underlay_Destination_Unreachable",
        UNDERLAY_TIME_EXCEEDED = 0x0016 => "Error_Underlay_Time_Exceeded",
        MESSAGE_EXPIRED = 0x0017 => "Error_Message_Expired",
        UPSTREAM_MISROUTING = 0x0018 => "Error_Upstream_Misrouting",
        LOOP_DETECTED = 0x0019 => "Error_Loop_Detected",
        TTL_HOPS_EXCEEDED = 0x001a => "Error_TTL_Hops_Exceeded",
    }
}

code_point! {
    /// `MessageExtensionType` (RFC 6940 §14.14; RFC 7851 §9.5; RFC 7363 §9.1).
    MessageExtensionType(u16) {
        INVALID = 0x0000 => "invalidMessageExtensionType",
        EXP_EXT = 0x0001 => "exp-ext",
        /// RFC 7851 §9.5.
        DIAGNOSTIC_PING = 0x0002 => "Diagnostic_Ping",
        /// RFC 7363 §9.1.
        SELF_TUNING_DATA = 0x0003 => "self_tuning_data",
        RESERVED = 0xffff => "reserved",
    }
}

/// `MessageExtension` (RFC 6940 §6.3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MessageExtension {
    pub extension_type: MessageExtensionType,
    pub critical: bool,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub extension_contents: Bytes,
}

impl Wire for MessageExtension {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("MessageExtension", i, |i| {
            let (i, extension_type) = MessageExtensionType::decode_from(cx, i)?;
            let (i, critical) = field("critical", i, boolean)?;
            let (i, extension_contents) =
                field("extension_contents", i, |i| opaque(cx, Len::U32, i))?;
            Ok((
                i,
                MessageExtension {
                    extension_type,
                    critical,
                    extension_contents,
                },
            ))
        })
    }

    fn encoded_len(&self) -> usize {
        7 + self.extension_contents.len()
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.extension_type.encode(b)?;
        b.put_u8(self.critical as u8);
        put_opaque(
            b,
            Len::U32,
            &self.extension_contents,
            "MessageExtension.extension_contents",
        )
    }
}

/// `MessageContents` (RFC 6940 §6.3.3). The body stays raw here; [`crate::body::MessageBody`]
/// decodes it by message code.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MessageContents {
    pub message_code: MessageCode,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub message_body: Bytes,
    pub extensions: Vec<MessageExtension>,
}

impl MessageContents {
    /// Contents with no extensions.
    pub fn new(message_code: MessageCode, message_body: Bytes) -> Self {
        MessageContents {
            message_code,
            message_body,
            extensions: Vec::new(),
        }
    }

    /// Contents holding an encoded typed body.
    pub fn from_body(body: &crate::body::MessageBody) -> Result<Self, EncodeError> {
        Ok(MessageContents::new(body.code(), body.to_bytes()?))
    }

    /// Decodes the body by message code.
    pub fn body(&self, opts: &DecodeOptions) -> Result<crate::body::MessageBody, DecodeError> {
        crate::body::MessageBody::decode(self.message_code, &self.message_body, opts)
    }
}

impl Wire for MessageContents {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("MessageContents", i, |i| {
            let (i, message_code) = field("message_code", i, |i| MessageCode::decode_from(cx, i))?;
            let (i, message_body) = field("message_body", i, |i| opaque(cx, Len::U32, i))?;
            let (i, extensions) = field("extensions", i, |i| wire_vec(cx, Len::U32, i))?;
            Ok((
                i,
                MessageContents {
                    message_code,
                    message_body,
                    extensions,
                },
            ))
        })
    }

    fn encoded_len(&self) -> usize {
        2 + 4 + self.message_body.len() + 4 + items_len(&self.extensions)
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.message_code.encode(b)?;
        put_opaque(
            b,
            Len::U32,
            &self.message_body,
            "MessageContents.message_body",
        )?;
        put_vec(b, Len::U32, &self.extensions, "MessageContents.extensions")
    }
}

/// `ErrorResponse` (RFC 6940 §6.3.3.1), the body of a message with code 0xFFFF.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ErrorResponse {
    pub error_code: ErrorCode,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub error_info: Bytes,
}

impl ErrorResponse {
    /// An error whose info is a human-readable reason (RFC 6940 §6.3.3.1 allows text).
    pub fn new(error_code: ErrorCode, info: impl Into<Bytes>) -> Self {
        ErrorResponse {
            error_code,
            error_info: info.into(),
        }
    }
}

impl Wire for ErrorResponse {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("ErrorResponse", i, |i| {
            let (i, error_code) = field("error_code", i, |i| ErrorCode::decode_from(cx, i))?;
            let (i, error_info) = field("error_info", i, |i| opaque(cx, Len::U16, i))?;
            Ok((
                i,
                ErrorResponse {
                    error_code,
                    error_info,
                },
            ))
        })
    }

    fn encoded_len(&self) -> usize {
        4 + self.error_info.len()
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.error_code.encode(b)?;
        put_opaque(b, Len::U16, &self.error_info, "ErrorResponse.error_info")
    }
}

/// A whole, unfragmented (or reassembled) message (RFC 6940 §6.3).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Message {
    pub header: ForwardingHeader,
    pub contents: MessageContents,
    pub security: SecurityBlock,
}

impl Message {
    /// The exact bytes signed by the message signature (RFC 6940 §6.3.4):
    /// `overlay ‖ transaction_id ‖ MessageContents ‖ SignerIdentity`.
    pub fn signature_input(&self) -> Result<Bytes, EncodeError> {
        signature_input(
            self.header.overlay,
            self.header.transaction_id,
            &self.contents,
            &self.security.signature.identity,
        )
    }
}

/// The message signature input of RFC 6940 §6.3.4 for the given parts.
pub fn signature_input(
    overlay: u32,
    transaction_id: u64,
    contents: &MessageContents,
    identity: &crate::security::SignerIdentity,
) -> Result<Bytes, EncodeError> {
    let mut b = BytesMut::with_capacity(12 + contents.encoded_len() + identity.encoded_len());
    b.put_u32(overlay);
    b.put_u64(transaction_id);
    contents.encode(&mut b)?;
    identity.encode(&mut b)?;
    Ok(b.freeze())
}

impl Wire for Message {
    /// Decodes a message that fills `i` exactly, as framing delivers it: `length` must
    /// equal the input size and stay within max-message-size.
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        let (r, header) = ForwardingHeader::decode_from(cx, i)?;
        let header_len = i.len() - r.len();
        check_length(
            i,
            header.length as usize,
            header_len,
            cx.opts.max_message_size(),
        )?;
        if (header.length as usize) < i.len() {
            return fail(
                &i[header.length as usize..],
                ErrorKind::TrailingBytes {
                    left: i.len() - header.length as usize,
                },
            );
        }
        let (r, contents) = MessageContents::decode_from(cx, r)?;
        let (r, security) = SecurityBlock::decode_from(cx, r)?;
        Ok((
            r,
            Message {
                header,
                contents,
                security,
            },
        ))
    }

    fn encoded_len(&self) -> usize {
        self.header.encoded_len() + self.contents.encoded_len() + self.security.encoded_len()
    }

    /// Encodes with the header's `length` set to the real size.
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        let total = self.encoded_len();
        if total > u32::MAX as usize {
            return Err(EncodeError {
                field: "ForwardingHeader.length",
                len: total,
                max: u32::MAX as usize,
            });
        }
        self.header.encode_with_length(b, total as u32)?;
        self.contents.encode(b)?;
        self.security.encode(b)
    }
}
