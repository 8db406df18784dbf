//! The seed corpus of the `sip_input` fuzz target (`fuzz/corpus/sip_input/`, issue 12)
//! replayed as an ordinary test: every file goes through
//! `reload_usages::sip::fuzzing::sip_input`, which must return without panicking.
//!
//! `write_seed_corpus` (ignored) wrote the seeds once:
//! `cargo test -p reload-usages --test fuzz_corpora -- --ignored write_seed_corpus`.

#[path = "../../fuzz/replay.rs"]
mod replay;

use std::path::PathBuf;

use reload_usages::sip::fuzzing::sip_input;

fn corpus_dir() -> PathBuf {
    replay::corpus_dir(env!("CARGO_MANIFEST_DIR"), "sip_input")
}

#[test]
fn sip_input_corpus() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "sip_input", sip_input);
}

#[test]
#[ignore = "writes the seed corpus under fuzz/corpus (run once, by hand)"]
fn write_seed_corpus() {
    let crlf = |s: &str| s.replace('\n', "\r\n").into_bytes();
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        (
            "register",
            crlf(
                "REGISTER sip:overlay.example SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\nMax-Forwards: 70\nFrom: <sip:alice@overlay.example>;tag=1\nTo: <sip:alice@overlay.example>\nCall-ID: r1\nCSeq: 1 REGISTER\nContact: <sip:alice@127.0.0.1:5062>;expires=60, *\nExpires: 600\nContent-Length: 0\n\n",
            ),
        ),
        (
            "invite-routed",
            crlf(
                "INVITE sip:bob@overlay.example;gr=ARAAESIzRFVmd4iZqrvM3e7/ SIP/2.0\nVia: SIP/2.0/TLS 127.0.0.1:5070;branch=z9hG4bKa;rl=7531.00, SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK2\nRoute: <sip:127.0.0.1:5070;lr;nid=00112233445566778899aabbccddeeff;ua=7531.0011>, <sip:10.0.0.1;lr>\nRecord-Route: <sip:127.0.0.1:5070;lr>\nMax-Forwards: 69\nFrom: \"Alice\" <sip:alice@overlay.example>;tag=a\nTo: <sip:bob@overlay.example>\nCall-ID: c1@x\nCSeq: 1 INVITE\nContact: <sip:alice@127.0.0.1:5062>\nContent-Type: application/sdp\nContent-Length: 4\n\nv=0\n",
            ),
        ),
        (
            "response-two-in-a-stream",
            crlf(
                "SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP a:1;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 1 INVITE\nContent-Length: 0\n\nSIP/2.0 200 OK\nVia: SIP/2.0/UDP a:1;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 1 INVITE\nl: 0\n\n",
            ),
        ),
        ("keepalives", b"\r\n\r\n\r\n".to_vec()),
        (
            "flow-token",
            b"7531323\x37.2e302e302e313a35303632.abcdef0123456789".to_vec(),
        ),
        (
            "aor",
            b"sips:Alice@DHT.Example.com:5061;transport=tcp?subject=x".to_vec(),
        ),
        (
            "bad-content-length",
            crlf("OPTIONS sip:x SIP/2.0\nContent-Length: 99999999999\n\n"),
        ),
    ];
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in seeds {
        std::fs::write(dir.join(name), data).unwrap();
    }
}
