//! The configuration document (§11.1): parse, then the complete check.
//! The function is `reload_proto::fuzzing::config_xml`; its seed corpus is replayed by `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reload_proto::fuzzing::config_xml(data));
