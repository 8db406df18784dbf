//! DTLS cookies (RFC 6347 §4.2.1) and (D)TLS server links fed datagrams and streams.
//! The function is `reload_proto::fuzzing::dtls_demux`; its seed corpus is replayed by `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reload_proto::fuzzing::dtls_demux(data));
