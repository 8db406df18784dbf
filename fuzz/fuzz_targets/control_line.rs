//! The control socket's lines and DEST parsing.
//! The function is `reload_node::fuzzing::control_line`; its seed corpus is replayed by `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reload_node::fuzzing::control_line(data));
