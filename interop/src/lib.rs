//! # reload-interop
//!
//! RELOAD messages checked by software nobody here wrote. This crate holds:
//!
//! - [`corpus()`]: one realistic, fully populated message for every RELOAD message code
//!   (RFC 6940 §14.8 and RFC 7851 §9.3), as they cross one overlay link ([`mod@corpus`]);
//! - a dependency-free classic libpcap writer and the capture of the corpus as one TCP
//!   connection with RELOAD framing, one frame per segment ([`pcap`]);
//! - [`decode_json`]: our decoder's view of one raw message, as JSON, for comparing with
//!   other tools (`reload-interop decode`).
//!
//! The `reload-interop` binary wraps these (`pcap FILE`, `decode`); `tests/tshark.rs`
//! runs Wireshark's RELOAD dissector over the capture.

pub mod corpus;
pub mod pcap;

pub use corpus::{corpus, try_corpus};

use bytes::Bytes;
use reload_wire::{DecodeError, DecodeOptions, Message, MessageBody, MessageCode, Wire};
use serde_json::Value;

/// Decodes one RELOAD message (raw bytes, no framing header) with
/// [`DecodeOptions::default()`] and renders it as JSON: the [`Message`] structure
/// (`header`, `contents`, `security`), plus
/// - `"body"`: the message body decoded by message code ([`MessageBody`]);
/// - `"message_code_name"`: the registered name of the code, when it has one;
/// - `"chord"`: the CHORD-RELOAD view of an Update request, RouteQuery answer or Leave
///   request body (RFC 6940 §10.7–§10.9), or `"chord_error"` when that data is not
///   CHORD-RELOAD's;
/// - `"error_info"`: the UnknownKinds list of an Error_Unknown_Kind (§7.4.1.2).
///
/// Errors are the decoder's [`DecodeError`] display: field path and byte offset. Offsets
/// of errors inside the body count from the start of the message, like the others.
pub fn decode_json(bytes: &[u8]) -> Result<Value, String> {
    let opts = DecodeOptions::default();
    let buf = Bytes::copy_from_slice(bytes);
    let msg = Message::decode(&buf, &opts).map_err(|e| e.to_string())?;
    let body = msg.contents.body(&opts).map_err(|e| {
        // The body is decoded from its own buffer: re-base the offset on the message.
        let body_start = msg.header.encoded_len() + 2 + 4;
        let field = if e.field.is_empty() {
            "MessageContents.message_body".to_string()
        } else {
            format!("MessageContents.message_body.{}", e.field)
        };
        DecodeError {
            offset: body_start + e.offset,
            field,
            kind: e.kind,
        }
        .to_string()
    })?;

    let mut out = serde_json::to_value(&msg).map_err(|e| format!("JSON: {e}"))?;
    let Value::Object(map) = &mut out else {
        return Err("JSON: a message did not serialize as an object".to_string());
    };
    map.insert(
        "body".to_string(),
        serde_json::to_value(&body).map_err(|e| format!("JSON: {e}"))?,
    );
    if let Some(name) = msg.contents.message_code.name() {
        map.insert("message_code_name".to_string(), Value::from(name));
    }
    let chord = match &body {
        MessageBody::UpdateReq(_) => body
            .chord_update(&opts)
            .map(|r| r.map(serde_json::to_value)),
        MessageBody::RouteQueryAns(_) => body
            .chord_route_query_ans(&opts)
            .map(|r| r.map(serde_json::to_value)),
        MessageBody::LeaveReq(l) => Some(
            reload_wire::chord::ChordLeaveData::decode(&l.overlay_specific_data, &opts)
                .map(serde_json::to_value),
        ),
        _ => None,
    };
    match chord {
        Some(Ok(v)) => {
            map.insert("chord".to_string(), v.map_err(|e| format!("JSON: {e}"))?);
        }
        Some(Err(e)) => {
            map.insert("chord_error".to_string(), Value::from(e.to_string()));
        }
        None => {}
    }
    if let MessageBody::Error(err) = &body
        && err.error_code == reload_wire::ErrorCode::UNKNOWN_KIND
        && let Ok(kinds) = reload_wire::storage::UnknownKinds::decode(&err.error_info, &opts)
    {
        map.insert(
            "error_info".to_string(),
            serde_json::to_value(&kinds).map_err(|e| format!("JSON: {e}"))?,
        );
    }
    Ok(out)
}

/// The message code of a JSON rendering made by [`decode_json`].
pub fn json_message_code(v: &Value) -> Option<MessageCode> {
    let n = v.get("contents")?.get("message_code")?.as_u64()?;
    u16::try_from(n).ok().map(MessageCode)
}
