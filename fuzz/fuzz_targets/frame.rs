//! Frame decode (RFC 6940 §6.6.2) as a TCP reader sees it: split a byte stream into
//! frames with `frame_len`, decode each, and check that it re-encodes to the same bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use reload_wire::{DecodeOptions, FramedMessage, Wire};

fuzz_target!(|data: &[u8]| {
    let opts = DecodeOptions::default();
    let mut rest = data;
    while let Ok(Some(n)) = FramedMessage::frame_len(rest, opts.max_message_size()) {
        let frame = Bytes::copy_from_slice(&rest[..n]);
        let f = FramedMessage::decode(&frame, &opts).expect("frame_len and decode agree");
        assert_eq!(f.to_bytes().unwrap(), frame);
        rest = &rest[n..];
    }
});
