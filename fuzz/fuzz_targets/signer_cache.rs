//! Message signatures (§6.3.4) and the bounded certificate cache.
//! The function is `reload_proto::fuzzing::signer_cache`; its seed corpus is replayed by `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reload_proto::fuzzing::signer_cache(data));
