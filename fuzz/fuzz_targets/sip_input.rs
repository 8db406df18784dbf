//! The SIP front end's handling of bytes from user agents and peers (RFC 7904 usage).
//! The function is `reload_usages::sip::fuzzing::sip_input`; its seed corpus is replayed by `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reload_usages::sip::fuzzing::sip_input(data));
