//! The operator control channel on real processes: six `reload-node run` peers over
//! TLS-TCP-FH-NO-ICE on 127.0.0.x (enrolled through `reload-enroll`); once their ring is
//! correct (status files), `reload-node status`, `ping` and `trace` talk to their control
//! sockets:
//! - `status` says what the status file says;
//! - `ping` to a distant peer (by hex Node-ID and by `reload://` URI) is answered by it, and
//!   `ping resource:NAME` by the peer responsible for the Resource-ID (the first Node-ID at
//!   or after it on the ring);
//! - `trace` lists hops that are peers of the overlay, each linked to the one before it,
//!   ending at the target — also along a source route (a `reload://` URI holding a
//!   destination list), which is how a six-peer overlay, where every peer links to every
//!   other (neighbour lists of 5, §10.3), gets a path of several hops;
//! - CLI errors are readable: no peer running, a stale socket, a bad DEST, a second peer on
//!   the same data directory; the socket is mode 0600, removed on a clean exit, and a
//!   stale one is replaced.
//!
//! Every wait is bounded; child processes are killed on drop.

mod procs;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procs::{
    NODE, Proc, Status, enroll_peers, peer_dir, read_status, scratch_dir, start_peer, start_peers,
    status_file, wait_ring,
};

/// What a CLI run printed.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `reload-node ARGS`, killed after `limit`.
fn cli(args: &[&str], limit: Duration) -> Out {
    let mut child = Command::new(NODE)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "reload-node {args:?} did not finish within {limit:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
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

/// `reload-node status` of the peer in `dir`, parsed.
fn cli_status(dir: &Path) -> Status {
    let out = cli(
        &["status", "--data-dir", dir.to_str().unwrap()],
        Duration::from_secs(20),
    );
    assert_eq!(out.code, Some(0), "status: {out:?}");
    let mut s = Status::default();
    for line in out.stdout.lines() {
        let (key, rest) = line.split_once(':').unwrap_or((line, ""));
        let words: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
        match key {
            "node-id" => s.id = words.concat(),
            "joined" => s.joined = rest.trim() == "true",
            "successors" => s.successors = words,
            "predecessors" => s.predecessors = words,
            "connected" => s.connected = words,
            "routing-table" => s.routing_table = words,
            _ => {}
        }
    }
    assert_eq!(s.id.len(), 32, "no node-id line: {out:?}");
    s
}

/// Who answered each Ping of `reload-node ping` output.
fn replies(out: &Out) -> Vec<String> {
    out.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("reply from "))
        .map(|r| r.split(':').next().unwrap().to_string())
        .collect()
}

/// The hops of `reload-node trace` output: (number, Node-ID, is the target).
fn hops(out: &Out) -> Vec<(u32, String, bool)> {
    out.stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [n, id, rtt, "ms", rest @ ..] if id.len() == 32 => {
                    assert!(rtt.parse::<f64>().is_ok(), "bad RTT in {l:?}");
                    Some((n.parse().ok()?, id.to_string(), rest == ["(target)"]))
                }
                _ => None,
            }
        })
        .collect()
}

/// The first Node-ID at or after `key` on the ring (the peer responsible for it).
fn responsible(sorted_ids: &[String], key: &str) -> String {
    sorted_ids
        .iter()
        .find(|id| id.as_str() >= key)
        .unwrap_or(&sorted_ids[0])
        .clone()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A `reload://` URI whose destination list is `ids` (RFC 6940 §14.15: each entry
/// `01` `10` and 16 bytes).
fn uri(ids: &[&str], overlay: &str) -> String {
    let list: String = ids.iter().map(|id| format!("0110{id}")).collect();
    format!("reload://{list}@{overlay}/")
}

/// Checks a trace against the overlay: hops are its peers, numbered 1, 2, …, each linked
/// to the one before it (its routing table or connected peers), the last is `target`
/// and marked so.
fn check_trace(
    out: &Out,
    origin: &str,
    target: &str,
    dirs: &std::collections::HashMap<String, PathBuf>,
) -> Vec<String> {
    assert_eq!(out.code, Some(0), "trace: {out:?}");
    let h = hops(out);
    assert!(!h.is_empty(), "no hops: {out:?}");
    for (i, (n, id, is_target)) in h.iter().enumerate() {
        assert_eq!(*n as usize, i + 1, "hop numbers: {out:?}");
        assert!(dirs.contains_key(id), "hop {id} is no peer of the overlay");
        assert_eq!(*is_target, i + 1 == h.len(), "target mark: {out:?}");
    }
    assert_eq!(
        h.last().unwrap().1,
        target,
        "the trace does not end at the target"
    );
    let mut prev = origin.to_string();
    for (_, id, _) in &h {
        let s = cli_status(&dirs[&prev]);
        assert!(
            s.connected.contains(id) || s.routing_table.contains(id),
            "hop {id} is not linked to the previous hop {prev}: {s:?}"
        );
        prev = id.clone();
    }
    h.into_iter().map(|(_, id, _)| id).collect()
}

#[test]
fn cli_errors_without_a_peer() {
    let dir = scratch_dir("reload-ping-noone");
    let d = dir.to_str().unwrap();
    let sock = dir.join("control.sock");

    for args in [
        vec!["ping", "--data-dir", d, &"ab".repeat(16)],
        vec!["trace", "--data-dir", d, "resource:alice"],
        vec!["status", "--data-dir", d],
    ] {
        let out = cli(&args, Duration::from_secs(10));
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        let want = format!(
            "reload-node: no peer is running in {d} (no control socket at {})",
            sock.display()
        );
        assert!(out.stderr.contains(&want), "{args:?}: {out:?}");
    }

    // A socket nobody listens on: a peer killed with -9 leaves one.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let out = cli(&["status", "--data-dir", d], Duration::from_secs(10));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("no peer is running"), "{out:?}");
    assert!(out.stderr.contains("stale"), "{out:?}");
    let other = dir.join("elsewhere.sock");
    let out = cli(
        &["ping", "--control", other.to_str().unwrap(), "resource:x"],
        Duration::from_secs(10),
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("no peer is running at {}", other.display())),
        "{out:?}"
    );

    // Usage errors (clap): no DEST, no peer given.
    let out = cli(&["ping", "--data-dir", d], Duration::from_secs(10));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("DEST"), "{out:?}");
    let out = cli(&["status"], Duration::from_secs(10));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--data-dir"), "{out:?}");

    // The help explains.
    let out = cli(&["trace", "--help"], Duration::from_secs(10));
    assert_eq!(out.code, Some(0), "{out:?}");
    for w in [
        "Error_TTL_Exceeded",
        "resource:NAME",
        "reload://",
        "--control",
    ] {
        assert!(out.stdout.contains(w), "{w}: {out:?}");
    }
    let out = cli(&["ping", "--help"], Duration::from_secs(10));
    assert!(out.stdout.contains("--count"), "{out:?}");
    let out = cli(&["run", "--help"], Duration::from_secs(10));
    assert!(out.stdout.contains("--control"), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn six_tls_processes_status_ping_trace() {
    let t0 = Instant::now();
    let peers = 6;
    let base_port: u16 = procs::free_port();
    let name = "ping";
    let dir = scratch_dir("reload-ping");
    let overlay = format!("{name}.procs.test");
    // Peer i listens on 127.0.0.(30+i).
    let addr = |i: usize| -> SocketAddr {
        format!("127.0.0.{}:{}", 30 + i, base_port + 1)
            .parse()
            .unwrap()
    };
    enroll_peers(&dir, &overlay, base_port, addr(0), peers);
    let enrolled = t0.elapsed();

    let status = |i: usize| status_file(&dir, i);
    let pdir = |i: usize| peer_dir(&dir, i);
    let mut running: Vec<Option<Proc>> =
        start_peers(&dir, peers, addr, Duration::from_secs(20), |_, cmd| {
            cmd.args(["--log", "warn"]);
        })
        .into_iter()
        .map(Some)
        .collect();
    let files: Vec<PathBuf> = (0..peers).map(status).collect();
    let ring = wait_ring(&files, Duration::from_secs(150));
    let ring_formed = t0.elapsed();

    let mut order: Vec<usize> = (0..peers).collect();
    order.sort_by_key(|&i| ring[i].id.clone());
    let sorted: Vec<String> = order.iter().map(|&i| ring[i].id.clone()).collect();
    let dirs: std::collections::HashMap<String, PathBuf> =
        (0..peers).map(|i| (ring[i].id.clone(), pdir(i))).collect();
    let arg = |p: &Path| p.to_str().unwrap().to_string();

    // The control sockets: mode 0600.
    for i in 0..peers {
        let sock = pdir(i).join("control.sock");
        let mode = std::fs::metadata(&sock)
            .unwrap_or_else(|e| panic!("{}: {e}", sock.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", sock.display());
    }

    // `status` says what the status file says (read again until both agree: the file is
    // rewritten on every link change).
    for i in 0..peers {
        let st = Instant::now();
        loop {
            let file = read_status(&status(i)).unwrap();
            let cli = cli_status(&pdir(i));
            let mut a = file.connected.clone();
            let mut b = cli.connected.clone();
            a.sort();
            b.sort();
            let same = file.id == cli.id
                && file.joined == cli.joined
                && file.successors == cli.successors
                && file.predecessors == cli.predecessors
                && a == b;
            if same {
                assert!(cli.joined);
                assert!(!cli.routing_table.is_empty());
                for s in cli.successors.iter().chain(&cli.predecessors) {
                    assert!(cli.routing_table.contains(s), "{cli:?}");
                }
                break;
            }
            assert!(
                st.elapsed() < Duration::from_secs(20),
                "status of p{i} does not match its status file:\n{file:?}\n{cli:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // Ping between distant peers: from the first on the ring to the one half-way round.
    let (a, b) = (order[0], order[peers / 2]);
    let (ida, idb) = (ring[a].id.clone(), ring[b].id.clone());
    let out = cli(
        &[
            "ping",
            "--data-dir",
            &arg(&pdir(a)),
            &idb,
            "--count",
            "3",
            "--interval-ms",
            "100",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(replies(&out), vec![idb.clone(); 3], "{out:?}");
    assert!(out.stdout.contains("3 sent, 3 answered, 0 lost"), "{out:?}");
    assert!(out.stdout.contains("rtt min/avg/max"), "{out:?}");
    // The same by its reload:// URI.
    let out = cli(
        &[
            "ping",
            "--data-dir",
            &arg(&pdir(a)),
            &uri(&[&idb], &overlay),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(replies(&out), vec![idb.clone()], "{out:?}");

    // Trace: the path ends at the target.
    let out = cli(
        &["trace", "--data-dir", &arg(&pdir(a)), &idb],
        Duration::from_secs(60),
    );
    let path = check_trace(&out, &ida, &idb, &dirs);
    println!("trace {ida} -> {idb}: {path:?}");

    // A source route (RFC 6940 §6.2: a destination list) round the ring: a path of three
    // hops, each one TTL further.
    let via = [&sorted[1], &sorted[2], &sorted[3]];
    let out = cli(
        &[
            "trace",
            "--data-dir",
            &arg(&pdir(order[0])),
            &uri(&[via[0], via[1], via[2]], &overlay),
        ],
        Duration::from_secs(60),
    );
    let path = check_trace(&out, &sorted[0], &sorted[3], &dirs);
    assert_eq!(path, vec![via[0].clone(), via[1].clone(), via[2].clone()]);
    let out = cli(
        &[
            "ping",
            "--data-dir",
            &arg(&pdir(order[0])),
            &uri(&[via[0], via[1], via[2]], &overlay),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(replies(&out), vec![sorted[3].clone()], "{out:?}");

    // A resource name whose responsible peer is neither the origin nor its successor.
    let (res, owner) = (0..1000)
        .map(|k| format!("resource-{k}@{overlay}"))
        .find_map(|n| {
            let rid = hex(reload_proto::identity::chord_resource_id(n.as_bytes()).as_bytes());
            let o = responsible(&sorted, &rid);
            (o != sorted[0] && o != sorted[1]).then_some((n, o))
        })
        .unwrap();
    let dest = format!("resource:{res}");
    let out = cli(
        &["ping", "--data-dir", &arg(&pdir(order[0])), &dest],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(replies(&out), vec![owner.clone()], "{res}: {out:?}");
    let out = cli(
        &["trace", "--data-dir", &arg(&pdir(order[0])), &dest],
        Duration::from_secs(60),
    );
    check_trace(&out, &sorted[0], &owner, &dirs);
    // From the peer responsible itself: it answers its own Ping.
    let out = cli(
        &["ping", "--data-dir", &arg(&dirs[&owner]), &dest],
        Duration::from_secs(30),
    );
    assert_eq!(replies(&out), vec![owner.clone()], "{out:?}");

    // Bad DESTs, with a peer running: readable, exit 2.
    for (bad, says) in [
        ("zz", "not a Node-ID"),
        ("resource:", "resource name"),
        (&*"0".repeat(32), "all-zero"),
        (&*uri(&[&idb], "other.test"), "other.test"),
        ("reload://nothex@x/", "not hex"),
    ] {
        let out = cli(
            &["ping", "--data-dir", &arg(&pdir(a)), bad],
            Duration::from_secs(20),
        );
        assert_eq!(out.code, Some(2), "{bad}: {out:?}");
        assert!(
            out.stderr.starts_with("reload-node: bad DEST: "),
            "{bad}: {out:?}"
        );
        assert!(out.stderr.contains(says), "{bad}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{bad}: {out:?}");
    }

    // A second peer on a data directory in use is refused (before it listens).
    let k = order[peers - 1];
    let spare = format!("127.0.0.{}:{}", 30 + k, base_port + 2);
    let mut second = Proc::spawn(
        Command::new(NODE)
            .args([
                "run",
                "--data-dir",
                &arg(&pdir(k)),
                "--listen",
                &spare,
                "--bootstrap",
                &addr(0).to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
        format!("a second peer on p{k}'s data directory"),
    );
    let st = second
        .exit_within(Duration::from_secs(20))
        .expect("the second peer exits");
    assert_eq!(st.code(), Some(2));
    let mut err = String::new();
    std::io::Read::read_to_string(second.child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("another peer is running with control socket"),
        "{err}"
    );
    assert!(cli_status(&pdir(k)).joined, "the first peer still answers");

    // A clean exit (SIGTERM) removes the socket.
    let mut p = running[k].take().unwrap();
    p.signal("TERM");
    assert!(
        p.exit_within(Duration::from_secs(20)).is_some(),
        "p{k} did not stop on SIGTERM"
    );
    assert!(!pdir(k).join("control.sock").exists());
    let out = cli(
        &["status", "--data-dir", &arg(&pdir(k))],
        Duration::from_secs(10),
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("no peer is running in"), "{out:?}");

    // kill -9 leaves a stale socket; the CLI says so; a restarted peer replaces it.
    let m = order[1];
    running[m].take().unwrap().kill_9();
    assert!(pdir(m).join("control.sock").exists());
    let out = cli(
        &["status", "--data-dir", &arg(&pdir(m))],
        Duration::from_secs(10),
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("stale"), "{out:?}");
    running[m] = Some(start_peer(&dir, m, addr(m), addr(0), |cmd| {
        cmd.args(["--log", "warn"]);
    }));
    let st = Instant::now();
    loop {
        let out = cli(
            &["status", "--data-dir", &arg(&pdir(m))],
            Duration::from_secs(10),
        );
        if out.code == Some(0) {
            assert!(out.stdout.contains(&ring[m].id), "{out:?}");
            break;
        }
        assert!(
            st.elapsed() < Duration::from_secs(20),
            "the restarted peer does not answer: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "enrolled in {enrolled:?}, ring in {ring_formed:?}, all in {:?}",
        t0.elapsed()
    );
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}
