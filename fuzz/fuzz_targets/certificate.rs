//! Certificates, PKCS#10 requests, reload: URIs and PEM (§11.3, §14.15).
//! The function is `reload_proto::fuzzing::certificate`; its seed corpus is replayed by `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reload_proto::fuzzing::certificate(data));
