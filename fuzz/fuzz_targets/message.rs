//! Message decode: header peek (whole message or prefix), whole message, and the typed body by message code.
//! Whatever decodes must re-encode to the same bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use reload_wire::header::ForwardingHeader;
use reload_wire::{DecodeOptions, Message, Wire};

fuzz_target!(|data: &[u8]| {
    let opts = DecodeOptions::default().with_max_message_size(1 << 16);
    let b = Bytes::copy_from_slice(data);
    if let Ok((h, len)) = ForwardingHeader::peek(&b, &opts) {
        assert_eq!(h.to_bytes().unwrap(), b.slice(..len));
    }
    // The header of a message that is not all there (RFC 6940 §6.6 Too_Large answers).
    if let Ok((h, len)) = ForwardingHeader::peek_prefix(&b, &opts) {
        assert_eq!(h.to_bytes().unwrap(), b.slice(..len));
    }
    if let Ok(m) = Message::decode(&b, &opts) {
        assert_eq!(m.to_bytes().unwrap(), b);
        if let Ok(body) = m.contents.body(&opts) {
            assert_eq!(body.to_bytes().unwrap(), m.contents.message_body);
        }
    }
    // The same bytes as a bare body of every message code.
    if let Some((&code, rest)) = data.split_first() {
        let body = Bytes::copy_from_slice(rest);
        let code = reload_wire::MessageCode(code as u16 % 0x29);
        if let Ok(v) = reload_wire::MessageBody::decode(code, &body, &opts) {
            assert_eq!(v.to_bytes().unwrap(), body);
        }
    }
});
