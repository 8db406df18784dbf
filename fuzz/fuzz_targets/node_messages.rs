//! Three full cores in the simulator; a hostile member injects messages into node 0.
//! The function is `reload_proto::fuzzing::node_messages`; its seed corpus is replayed by `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reload_proto::fuzzing::node_messages(data));
