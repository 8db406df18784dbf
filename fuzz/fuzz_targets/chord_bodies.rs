//! CHORD-RELOAD bodies (§10) decoded, and a joined Chord fed Updates, Leaves and RouteQuery answers.
//! The function is `reload_proto::fuzzing::chord_bodies`; its seed corpus is replayed by `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reload_proto::fuzzing::chord_bodies(data));
