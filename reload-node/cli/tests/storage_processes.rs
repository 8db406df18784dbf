//! Storage on real processes (RFC 6940 §7, §10.4): five `reload-node run` peers over
//! TLS-TCP-FH-NO-ICE keep their values in SQLite (DATA_DIR/storage.sqlite3); the `reload`
//! tool joins as a client with its own credentials and
//! - stores a single value (argument), an array element (file, then standard input) and a
//!   dictionary entry, and fetches them back — from another client, by user name — with
//!   their signer; stat and find answer; the replica holders are the responsible peer's
//!   successors;
//! - gets the RFC's error names and exit status 1 for a value stored at another user's
//!   resource (Error_Forbidden, §7.3.1), a value over the Kind's max-size
//!   (Error_Data_Too_Large, §7.4.1.1) and a Kind the overlay does not define (refused
//!   locally, exit 2);
//! - after `kill -9` of the peer responsible, fetches every value from the peer that took
//!   over (§10.4);
//! - after `kill -9` of every peer and a restart of all of them, fetches every value again
//!   (what a peer answered a Store for was on disk), while a value whose lifetime ended
//!   meanwhile is not served.
//!
//! Every wait is bounded; child processes are killed on drop.

mod procs;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procs::{
    Proc, enroll_peers_with, free_port, peer_dir, scratch_dir, start_peers, status_file, wait_ring,
};
use serde_json::Value;

const RELOAD: &str = env!("CARGO_BIN_EXE_reload");

const SINGLE: &str = "0xf0000001";
const ARRAY: &str = "0xf0000002";
const DICT: &str = "0xf0000003";

/// What a `reload` run printed.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// `reload --data-dir DIR --bootstrap BOOT ARGS`, with `stdin`, killed after 60 s.
fn reload(dir: &Path, boot: SocketAddr, args: &[&str], stdin: Option<&[u8]>) -> Out {
    let mut child = Command::new(RELOAD)
        .arg("--data-dir")
        .arg(dir)
        .args(["--bootstrap", &boot.to_string(), "--timeout", "40"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(b) = stdin {
            input.write_all(b).unwrap();
        }
    }
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(out: Out) -> Out {
    assert_eq!(out.code, Some(0), "reload failed: {out:?}");
    out
}

/// The values of a fetch's JSON that exist, as text.
fn texts(fetched: &Value) -> Vec<String> {
    fetched["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["exists"] == true)
        .map(|v| v["value"].as_str().unwrap_or("<binary>").to_string())
        .collect()
}

#[test]
fn the_reload_tool_stores_fetches_and_the_values_survive_failures_and_restarts() {
    let dir = scratch_dir("reload-storage-procs");
    let overlay = "storage.procs.test";
    let port = free_port();
    let peers = 5;
    let addr =
        |i: usize| -> SocketAddr { format!("127.0.0.{}:{}", 40 + i, port + 1).parse().unwrap() };
    // Peers p0..p4, clients p5 and p6 (own credentials).
    enroll_peers_with(
        &dir,
        overlay,
        port,
        addr(0),
        peers + 2,
        &[
            "--kind",
            &format!("{SINGLE},single,USER-MATCH,1,64"),
            "--kind",
            &format!("{ARRAY},array,USER-MATCH,16,4096"),
            "--kind",
            &format!("{DICT},dictionary,USER-MATCH,16,256"),
        ],
    );
    let run_opts = |_: usize, cmd: &mut Command| {
        cmd.args(["--log", "info"]);
    };
    let mut running: Vec<Option<Proc>> =
        start_peers(&dir, peers, addr, Duration::from_secs(20), run_opts)
            .into_iter()
            .map(Some)
            .collect();
    let files: Vec<PathBuf> = (0..peers).map(|i| status_file(&dir, i)).collect();
    let ring = wait_ring(&files, Duration::from_secs(120));
    let (alice, bob) = (peer_dir(&dir, peers), peer_dir(&dir, peers + 1));
    let alice_name = format!("p{peers}@{overlay}");
    let first_boot = addr(1);

    // The overlay's Kinds, from the configuration alone.
    let kinds = ok(reload(&alice, first_boot, &["kinds"], None));
    for k in ["4026531841", "single", "array", "dictionary", "USER-MATCH"] {
        assert!(kinds.stdout.contains(k), "{k} in {}", kinds.stdout);
    }

    // No peer at the bootstrap address: the tool says why (the connection is refused)
    // after a few attempts, and fails.
    let closed = std::net::TcpListener::bind("127.0.0.4:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let refused = reload(&alice, closed, &["fetch", "--kind", SINGLE], None);
    assert!(
        refused.code.is_some_and(|c| c != 0)
            && refused.stderr.contains("could not reach the overlay")
            && refused.stderr.contains(&closed.to_string())
            && refused.stderr.contains("refused"),
        "{refused:?}"
    );

    // A single value, from an argument: stored by the peer responsible, copied to its two
    // successors (§10.4).
    let stored = ok(reload(
        &alice,
        first_boot,
        &["--json", "store", "--kind", SINGLE, "hello overlay"],
        None,
    ))
    .json();
    let responsible = stored["stored_by"].as_str().unwrap().to_string();
    let replicas: Vec<String> = stored["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    // From here on the tools bootstrap through a peer that is not the one killed below.
    let victim = ring.iter().position(|s| s.id == responsible).unwrap();
    let boot = addr(if victim == 1 { 2 } else { 1 });
    let mut ids: Vec<String> = ring.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    let at = ids.iter().position(|i| *i == responsible).expect("a peer");
    assert_eq!(
        replicas,
        vec![ids[(at + 1) % peers].clone(), ids[(at + 2) % peers].clone()],
        "the replicas are the responsible peer's two successors: {stored}"
    );
    // The human form says the same.
    let text = ok(reload(
        &bob,
        boot,
        &["fetch", "--kind", SINGLE, "--resource", &alice_name],
        None,
    ));
    assert!(
        text.stdout.contains("\"hello overlay\"") && text.stdout.contains(&alice_name),
        "{text:?}"
    );

    // Array elements from a file and from standard input (appended), a dictionary entry.
    let file = dir.join("value.bin");
    std::fs::write(&file, b"from a file").unwrap();
    ok(reload(
        &alice,
        boot,
        &["store", "--kind", ARRAY, "--file", file.to_str().unwrap()],
        None,
    ));
    ok(reload(
        &alice,
        boot,
        &["store", "--kind", ARRAY, "--stdin"],
        Some(b"from stdin"),
    ));
    ok(reload(
        &alice,
        boot,
        &["store", "--kind", DICT, "--key", "colour", "blue"],
        None,
    ));
    let fetch_all = |who: &Path| {
        let mut got = Vec::new();
        for kind in [SINGLE, ARRAY, DICT] {
            let f = ok(reload(
                who,
                boot,
                &["--json", "fetch", "--kind", kind, "--resource", &alice_name],
                None,
            ))
            .json();
            got.push(texts(&f));
        }
        got
    };
    let expected = vec![
        vec!["hello overlay".to_string()],
        vec!["from a file".to_string(), "from stdin".to_string()],
        vec!["blue".to_string()],
    ];
    assert_eq!(fetch_all(&bob), expected);
    // One element by index, raw.
    let raw = ok(reload(
        &bob,
        boot,
        &[
            "fetch",
            "--kind",
            ARRAY,
            "--resource",
            &alice_name,
            "--index",
            "1",
            "--raw",
        ],
        None,
    ));
    assert_eq!(raw.stdout, "from stdin");
    // Stat: lengths and hashes; Find: alice's Resource-ID holds values of the array Kind.
    let stat = ok(reload(
        &bob,
        boot,
        &["--json", "stat", "--kind", ARRAY, "--resource", &alice_name],
        None,
    ))
    .json();
    let lengths: Vec<u64> = stat["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value_length"].as_u64().unwrap())
        .collect();
    assert_eq!(lengths, vec![11, 10], "{stat}");
    let res_id = stored["resource_id"].as_str().unwrap().to_string();
    let found = ok(reload(
        &bob,
        boot,
        &["--json", "find", "--kind", ARRAY, "--resource-id", &res_id],
        None,
    ))
    .json();
    assert_eq!(
        found["results"][0]["resource_id"],
        res_id.as_str(),
        "{found}"
    );

    // Refusals, by their RFC names, exit status 1.
    let forbidden = reload(
        &bob,
        boot,
        &[
            "--json",
            "store",
            "--kind",
            SINGLE,
            "--resource",
            &alice_name,
            "mine",
        ],
        None,
    );
    assert_eq!(forbidden.code, Some(1), "{forbidden:?}");
    assert_eq!(forbidden.json()["error"]["name"], "Error_Forbidden");
    assert!(
        forbidden.stderr.contains("Error_Forbidden"),
        "{forbidden:?}"
    );
    let too_large = reload(
        &bob,
        boot,
        &["store", "--kind", SINGLE, &"x".repeat(65)],
        None,
    );
    assert_eq!(too_large.code, Some(1), "{too_large:?}");
    assert!(
        too_large.stderr.contains("Error_Data_Too_Large"),
        "{too_large:?}"
    );
    let unknown = reload(&bob, boot, &["store", "--kind", "0xf0000009", "v"], None);
    assert_eq!(unknown.code, Some(2), "{unknown:?}");
    assert!(unknown.stderr.contains("not defined"), "{unknown:?}");

    // kill -9 the responsible peer: its successor (a replica) answers, nothing lost.
    running[victim].take().unwrap().kill_9();
    let survivors: Vec<PathBuf> = (0..peers)
        .filter(|&i| i != victim)
        .map(|i| status_file(&dir, i))
        .collect();
    wait_ring(&survivors, Duration::from_secs(120));
    let after = ok(reload(
        &bob,
        boot,
        &[
            "--json",
            "fetch",
            "--kind",
            SINGLE,
            "--resource",
            &alice_name,
        ],
        None,
    ))
    .json();
    assert_eq!(after["responder"], replicas[0].as_str(), "{after}");
    assert_eq!(fetch_all(&bob), expected);

    // A value that lives one second.
    ok(reload(
        &alice,
        boot,
        &[
            "store",
            "--kind",
            DICT,
            "--key",
            "short",
            "--lifetime",
            "1",
            "gone soon",
        ],
        None,
    ));

    // Every peer killed -9, then all restarted (the victim too): everything answered
    // before was on disk; the short-lived value expired meanwhile and is not served.
    for p in running.iter_mut() {
        if let Some(p) = p.take() {
            p.kill_9();
        }
    }
    std::thread::sleep(Duration::from_millis(1100));
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    let _running: Vec<Proc> = start_peers(&dir, peers, addr, Duration::from_secs(20), run_opts);
    wait_ring(&files, Duration::from_secs(120));
    assert_eq!(fetch_all(&bob), expected, "after a restart of every peer");
    let short = ok(reload(
        &bob,
        boot,
        &[
            "--json",
            "fetch",
            "--kind",
            DICT,
            "--resource",
            &alice_name,
            "--key",
            "short",
        ],
        None,
    ))
    .json();
    assert!(texts(&short).is_empty(), "expired, not served: {short}");
    let logs: String = (0..peers)
        .map(|i| std::fs::read_to_string(dir.join(format!("p{i}.log"))).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("storage loaded"),
        "the peers logged what they loaded"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
