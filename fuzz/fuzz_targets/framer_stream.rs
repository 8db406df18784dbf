//! Framing (RFC 6940 §6.6.2–§6.6.3): a Framer fed a byte stream in chunks (FH) and as records (SR).
//! The function is `reload_proto::fuzzing::framer_stream`; its seed corpus is replayed by `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reload_proto::fuzzing::framer_stream(data));
