//! The seed corpus of the `control_line` fuzz target (`fuzz/corpus/control_line/`, issue
//! 10) replayed as an ordinary test: every file goes through
//! `reload_node::fuzzing::control_line`, which must return without panicking.
//!
//! `write_seed_corpus` (ignored) wrote the seeds once:
//! `cargo test -p reload-node --test fuzz_corpora -- --ignored write_seed_corpus`.

#[path = "../../fuzz/replay.rs"]
mod replay;

use std::path::PathBuf;

use reload_node::fuzzing::control_line;

fn corpus_dir() -> PathBuf {
    replay::corpus_dir(env!("CARGO_MANIFEST_DIR"), "control_line")
}

#[test]
fn control_line_corpus() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "control_line", control_line);
}

#[test]
#[ignore = "writes the seed corpus under fuzz/corpus (run once, by hand)"]
fn write_seed_corpus() {
    use reload_proto::identity::node_id_uri;
    use reload_wire::{Destination, NodeId, ResourceId, Wire};
    let id = NodeId::from_u128(0x4000_0000_0000_0000_0000_0000_0000_0001);
    let list = [
        Destination::Node(id),
        Destination::Resource(ResourceId::new(bytes::Bytes::from_static(b"alice"))),
    ]
    .iter()
    .flat_map(|d| d.to_bytes().unwrap().to_vec())
    .collect::<Vec<u8>>();
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("ping-hex", format!("ping {}\n", id.to_hex()).into_bytes()),
        (
            "trace-uri",
            format!("trace {}\n", node_id_uri(&id, "fuzz.test")).into_bytes(),
        ),
        (
            "resource-and-commands",
            b"ping resource:alice@fuzz.test\nstatus\nhelp\n\n".to_vec(),
        ),
        (
            "hex-20-bytes",
            format!("ping 0x{}\n", "ab".repeat(20)).into_bytes(),
        ),
        (
            "uri-list-specifier",
            format!(
                "ping reload://{}@fuzz.test/0a0b\n",
                list.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
            .into_bytes(),
        ),
        (
            "zero-and-wildcard",
            format!("ping {}\ntrace {}\n", "0".repeat(32), "f".repeat(32)).into_bytes(),
        ),
        (
            "other-overlay-bare",
            format!("ping reload://{}@other.test/\n", id.to_hex()).into_bytes(),
        ),
        (
            "long-line",
            [b"ping ".to_vec(), vec![b'a'; 1100], b"\n".to_vec()].concat(),
        ),
        ("not-utf8", b"ping \xff\xfe\n\tping   x y\r\n".to_vec()),
    ];
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (label, data)) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}-{label}")), data).unwrap();
    }
}
