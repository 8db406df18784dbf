//! The enrollment POST body (§11.3): multipart form, fields, CSR.
//! The function is `reload_enroll::fuzzing::enroll_form`; its seed corpus is replayed by `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reload_enroll::fuzzing::enroll_form(data));
