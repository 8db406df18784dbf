//! Fragment reassembly (§6.7) with small limits, its bounds checked after every insert.
//! The function is `reload_proto::fuzzing::reassembly`; its seed corpus is replayed by `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reload_proto::fuzzing::reassembly(data));
