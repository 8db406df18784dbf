//! Entry point of the `control_line` fuzz target (`fuzz/fuzz_targets/control_line.rs`,
//! issue 10): what the control socket reads from a client before it asks the node
//! anything. Must return, without panicking, in bounded time and memory, for any input.
//! The seed corpus `fuzz/corpus/control_line/` is replayed by `tests/fuzz_corpora.rs`.
//!
//! Not a stable API: hidden from the documentation, used by the fuzz crate and tests only.

use std::time::Duration;

use crate::control::{MAX_LINE, PeerInfo, parse_destination};

/// The control protocol's parsing: `data` cut into lines as the server cuts them (at
/// `\n`, at most [`MAX_LINE`] bytes, UTF-8, trimmed, words split at ASCII whitespace —
/// the server does this inline in its client loop, so the rules are restated here), and
/// every `ping DEST` / `trace DEST` argument, and the whole input as text, read by
/// `control::parse_destination` for a CHORD-RELOAD peer (16-byte Node-IDs) and for peers
/// with other settings (20-byte Node-IDs, another topology) which it must refuse cleanly.
pub fn control_line(data: &[u8]) {
    let infos = [
        info(16, reload_proto::config::DEFAULT_TOPOLOGY_PLUGIN),
        info(20, reload_proto::config::DEFAULT_TOPOLOGY_PLUGIN),
        info(16, "XOR-TEST"),
    ];
    let whole = String::from_utf8_lossy(data);
    for i in &infos {
        check(&whole, i);
    }
    for line in data.split(|&b| b == b'\n').take(64) {
        if line.len() > MAX_LINE {
            continue;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let words: Vec<&str> = line.trim().split_ascii_whitespace().collect();
        if let [command, dest] = words.as_slice()
            && matches!(*command, "ping" | "trace")
        {
            for i in &infos {
                check(dest, i);
            }
        }
    }
}

fn info(node_id_length: usize, topology: &str) -> PeerInfo {
    PeerInfo {
        overlay: "fuzz.test".into(),
        node_id_length,
        topology: topology.into(),
        request_lifetime: Duration::from_secs(15),
    }
}

/// A destination list read for `info` is never empty and names nodes of its length.
fn check(text: &str, info: &PeerInfo) {
    if let Ok(dests) = parse_destination(text, info) {
        assert!(!dests.is_empty(), "an empty destination list for {text:?}");
        for d in &dests {
            if let reload_wire::Destination::Node(n) = d {
                assert_eq!(n.len(), info.node_id_length, "a Node-ID of another length");
                assert!(!n.is_zero() && !n.is_wildcard(), "a non-peer Node-ID");
            }
        }
    }
}
