//! Simulator scale and memory (issue 5), reported, never asserted.
//!
//! `cargo bench -p reload-node --bench sim -- [MODE …]`, modes (run in the order given;
//! without any: `topology 10000 100000`, `full 10000 100000`, `process 5`):
//!
//! - `full N L` — N full node cores ([`reload_node::node::Node`]: signing, verification,
//!   Chord with a real peer's settings) in the deterministic simulator
//!   ([`reload_node::sim`]): wall time to build them, for all to join one after the other
//!   (1 s of simulated time apart, each through a random earlier peer) until the ring is
//!   exactly the sorted Node-IDs, and for L RouteQueries (batches of 1,000 sent at the
//!   same instant) to random Resource-IDs — each checked to be answered by the
//!   responsible peer; RSS per core (VmRSS of this process before and after, over N);
//! - `topology N L` — the same join and L lookups at topology level (Chord plug-ins
//!   driven by `tests/chord_sim/harness.rs`, no cores, no messages encoded or signed;
//!   lookups are routed through the plug-ins' tables);
//! - `process P` — P `reload-node run` processes (enrolled with `reload-enroll` as in
//!   `tests/processes.rs`, TLS over 127.0.0.x) form a ring; after 10 s idle, each
//!   process's VmRSS, VmHWM and thread count from `/proc/PID/status`.

#[path = "../tests/pki/mod.rs"]
mod pki;

#[path = "../tests/chord_sim/harness.rs"]
mod harness;

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use pki::*;
use reload_node::config::OverlayConfig;
use reload_node::identity::TrustPolicy;
use reload_node::node::{Event, Node, NodeSettings, RequestError};
use reload_node::sim::{Sim, SimNetwork, SimRng};
use reload_node::topology::TopologySettings;
use reload_node::topology::chord::Chord;
use reload_wire::body::MessageBody;
use reload_wire::link::OverlayLinkType;
use reload_wire::topology::RouteQueryReq;
use reload_wire::{DecodeOptions, Destination, NodeId, ResourceId};

const PROTOCOL: OverlayLinkType = OverlayLinkType::TLS_TCP_FH_NO_ICE;
const SEC: Duration = Duration::from_secs(1);
const SEED: u64 = 0x0BE7_C40D;

/// VmRSS (or another `/proc/PID/status` field) in KiB.
fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rss_kib() -> u64 {
    status_kib("self", "VmRSS:").unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---- full cores ------------------------------------------------------------------

struct Net {
    sim: Sim,
    ids: Vec<u128>,
    addrs: Vec<SocketAddr>,
}

fn cores(n: usize, seed: u64) -> Net {
    let ca = TestCa::new(false);
    let mut sim = Sim::new(seed, SimNetwork::default());
    let config = OverlayConfig::new(OVERLAY);
    let mut rng = SimRng::new(seed ^ 0x1d5);
    let mut ids: Vec<u128> = Vec::with_capacity(n);
    let mut seen = std::collections::BTreeSet::new();
    let mut addrs = Vec::with_capacity(n);
    let wall = SystemTime::now();
    while ids.len() < n {
        let id = ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128;
        if id == 0 || id == u128::MAX || !seen.insert(id) {
            continue;
        }
        let i = ids.len();
        let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6084));
        let settings = NodeSettings::from_config(&config, vec![(PROTOCOL, addr)]);
        let creds = ca.node(false, id, &format!("user{i}"));
        let trust = TrustPolicy {
            overlay: OVERLAY.into(),
            node_id_len: 16,
            roots: vec![ca.der.clone()],
            bad_nodes: vec![],
            self_signed: None,
        };
        let cache = settings.cert_cache_size;
        let topo = Box::new(Chord::new(
            NodeId::from_u128(id),
            TopologySettings::from_config(&config),
        ));
        let node = Node::new(
            settings,
            creds,
            reload_node::sign::Verifier::new(trust, cache),
            topo,
            sim.now,
            wall,
            seed ^ id as u64,
        );
        sim.add(node, addr);
        ids.push(id);
        addrs.push(addr);
    }
    Net { sim, ids, addrs }
}

fn clear_events(sim: &mut Sim) {
    for n in &mut sim.nodes {
        n.events.clear();
    }
}

fn live(net: &Net) -> Vec<usize> {
    let mut v: Vec<usize> = (0..net.ids.len())
        .filter(|&i| net.sim.nodes[i].alive)
        .collect();
    v.sort_by_key(|&i| net.ids[i]);
    v
}

fn ring_error(net: &Net) -> Option<String> {
    let m = live(net);
    let n = m.len();
    let len = 5.min(n - 1);
    for (k, &i) in m.iter().enumerate() {
        let t = net.sim.nodes[i].node.topology();
        if !t.is_joined() {
            return Some(format!("node {i} not joined"));
        }
        let want_s: Vec<NodeId> = (1..=len)
            .map(|d| NodeId::from_u128(net.ids[m[(k + d) % n]]))
            .collect();
        let want_p: Vec<NodeId> = (1..=len)
            .map(|d| NodeId::from_u128(net.ids[m[(k + n - d) % n]]))
            .collect();
        if t.successors() != want_s || t.predecessors() != want_p {
            return Some(format!("node {i}: successor/predecessor lists wrong"));
        }
    }
    None
}

fn take_response(
    sim: &mut Sim,
    from: usize,
    tx: u64,
) -> Option<Result<(NodeId, MessageBody), RequestError>> {
    let ev = &mut sim.nodes[from].events;
    let k = ev.iter().position(
        |e| matches!(e, Event::Response { transaction_id, .. } if *transaction_id == tx),
    )?;
    match ev.remove(k) {
        Event::Response { result, .. } => Some(result),
        _ => unreachable!(),
    }
}

/// `count` RouteQueries, `batch` at a time; every answer checked. (lookups, total hops).
fn lookups(net: &mut Net, count: usize, batch: usize, seed: u64) -> (u64, u64) {
    let m = live(net);
    let sorted: Vec<u128> = m.iter().map(|&i| net.ids[i]).collect();
    let mut rng = SimRng::new(seed);
    let opts = DecodeOptions::default();
    let (mut done, mut hops) = (0u64, 0u64);
    let mut sent = 0;
    while sent < count {
        clear_events(&mut net.sim);
        let mut pending = Vec::new();
        for _ in 0..batch.min(count - sent) {
            let key = ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128;
            let from = m[rng.below(m.len() as u64) as usize];
            let want = m[sorted.partition_point(|&v| v < key) % m.len()];
            let dest = Destination::Resource(ResourceId::new(key.to_be_bytes().to_vec()));
            let body = MessageBody::RouteQueryReq(RouteQueryReq {
                send_update: false,
                destination: dest.clone(),
                overlay_specific_data: Bytes::new(),
            });
            let now = net.sim.now;
            let tx = net.sim.nodes[from]
                .node
                .send_request(now, vec![dest], body)
                .expect("RouteQuery not sent");
            net.sim.watch(tx);
            net.sim.after_input(from);
            pending.push((from, tx, want));
            sent += 1;
        }
        let t0 = net.sim.now;
        while !pending.is_empty() {
            assert!(net.sim.now - t0 < 30 * SEC, "RouteQueries unanswered");
            net.sim.run_for(Duration::from_millis(50));
            let mut k = 0;
            while k < pending.len() {
                let (from, tx, want) = pending[k];
                let Some(result) = take_response(&mut net.sim, from, tx) else {
                    k += 1;
                    continue;
                };
                pending.swap_remove(k);
                let (signer, body) = result.expect("RouteQuery failed");
                let want_id = NodeId::from_u128(net.ids[want]);
                assert_eq!(signer, want_id, "answered by the wrong peer");
                let ans = body.chord_route_query_ans(&opts).unwrap().unwrap();
                assert_eq!(ans.next_peer, want_id);
                hops += net.sim.unwatch(tx).unwrap().0 as u64;
                done += 1;
            }
        }
    }
    (done, hops)
}

fn full(n: usize, count: usize) {
    println!("== full cores: {n} nodes, {count} RouteQueries (seed {SEED:#x})");
    let rss0 = rss_kib();
    let t = Instant::now();
    let mut net = cores(n, SEED);
    let built = t.elapsed();
    let rss_built = rss_kib();
    println!(
        "built {n} cores (P-256 key + certificate each) in {built:.2?}; RSS +{:.1} MiB ({:.1} KiB per core, not started)",
        mib(rss_built - rss0),
        (rss_built - rss0) as f64 / n as f64
    );
    let t = Instant::now();
    let now = net.sim.now;
    net.sim.nodes[0].node.start(now, true, &[], false);
    net.sim.after_input(0);
    net.sim.run_for(SEC);
    let mut last = Instant::now();
    for i in 1..n {
        let b = net.sim.rng.below(i as u64) as usize;
        let now = net.sim.now;
        let boot = [(PROTOCOL, net.addrs[b])];
        net.sim.nodes[i].node.start(now, false, &boot, false);
        net.sim.after_input(i);
        net.sim.run_for(SEC);
        if i % 64 == 0 {
            clear_events(&mut net.sim);
        }
        if last.elapsed() > Duration::from_secs(30) {
            last = Instant::now();
            println!(
                "  … {i} joined after {:.0?} wall ({} messages, RSS {:.0} MiB)",
                t.elapsed(),
                net.sim.delivered,
                mib(rss_kib())
            );
        }
    }
    let mut extra = Duration::ZERO;
    while ring_error(&net).is_some() && extra < Duration::from_secs(300) {
        net.sim.run_for(SEC);
        extra += SEC;
    }
    let join_wall = t.elapsed();
    let joined_msgs = net.sim.delivered;
    if let Some(e) = ring_error(&net) {
        println!("ring NOT exact 300 s after the last join: {e}");
    }
    clear_events(&mut net.sim);
    let rss_joined = rss_kib();
    println!(
        "{n} joined 1 s apart, ring exact {extra:?} after the last join (simulated {:.0?}): {join_wall:.2?} wall, \
         {joined_msgs} messages delivered ({:.0} messages/s wall); RSS {:.1} MiB = {:.1} KiB per core",
        net.sim.elapsed(),
        joined_msgs as f64 / join_wall.as_secs_f64(),
        mib(rss_joined),
        (rss_joined - rss0) as f64 / n as f64
    );
    let t = Instant::now();
    let (done, hops) = lookups(&mut net, count, 1000, SEED ^ 0x100c);
    let lw = t.elapsed();
    let msgs = net.sim.delivered - joined_msgs;
    println!(
        "{done} RouteQueries, all answered by the responsible peer: {lw:.2?} wall ({:.0} lookups/s), mean hops {:.3} \
         (½·log2 N + 1 = {:.3}); {msgs} messages delivered ({:.0} messages/s wall); RSS {:.1} MiB",
        done as f64 / lw.as_secs_f64(),
        hops as f64 / done as f64,
        0.5 * (n as f64).log2() + 1.0,
        msgs as f64 / lw.as_secs_f64(),
        mib(rss_kib())
    );
}

// ---- topology level --------------------------------------------------------------

fn topology(n: usize, count: usize) {
    use harness::{Params, build_ring};
    println!(
        "== topology level (tests/chord_sim/harness.rs, no cores): {n} nodes, {count} lookups"
    );
    let p = Params {
        neighbors: 5,
        max_fingers: 32,
        update_interval: Duration::from_secs(600),
        ping_interval: Duration::from_secs(3600),
        request_timeout: Duration::from_secs(15),
        max_events: u64::MAX,
        ..Params::default()
    };
    let rss0 = rss_kib();
    let t = Instant::now();
    let mut sim = harness::Sim::new(SEED, p);
    let ids: Vec<u128> = (0..n).map(|_| sim.rng.node_id()).collect();
    build_ring(&mut sim, &ids, SEC, Duration::ZERO);
    let mut extra = Duration::ZERO;
    while sim.ring_error().is_some() && extra < Duration::from_secs(300) {
        sim.run_for(SEC);
        extra += SEC;
    }
    let jw = t.elapsed();
    if let Some(e) = sim.ring_error() {
        println!("ring NOT exact 300 s after the last join: {e}");
    }
    println!(
        "{n} joined 1 s apart, ring exact {extra:?} after the last join: {jw:.2?} wall, {} events, {} links; \
         RSS +{:.1} MiB ({:.1} KiB per node)",
        sim.stats.events,
        sim.link_count(),
        mib(rss_kib() - rss0),
        (rss_kib() - rss0) as f64 / n as f64
    );
    let t = Instant::now();
    let mean = sim.check_routing(count);
    let lw = t.elapsed();
    println!(
        "{count} lookups routed through the plug-ins' tables, all to the responsible node: {lw:.2?} wall \
         ({:.0} lookups/s), mean hops {mean:.3}",
        count as f64 / lw.as_secs_f64()
    );
    // Keep the ring alive until measured.
    assert!(sim.members().len() == n);
}

// ---- real processes --------------------------------------------------------------

const NODE: &str = env!("CARGO_BIN_EXE_reload-node");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn enroll_bin() -> PathBuf {
    let dir = PathBuf::from(NODE).parent().unwrap().to_path_buf();
    let bin = dir.join("reload-enroll");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-q", "--release", "-p", "reload-enroll"])
            .args(["--bin", "reload-enroll"])
            .status()
            .unwrap();
        assert!(st.success(), "building reload-enroll failed");
    }
    bin
}

fn run(bin: &Path, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_for_port(addr: SocketAddr) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (joined, first successor, first predecessor, own id) from a `--status-file`.
fn status(path: &Path) -> Option<(bool, String, String, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let after = |name: &str| -> Option<&str> {
        Some(&text[text.find(&format!("\"{name}\":"))? + name.len() + 3..])
    };
    let first = |name: &str| -> String {
        after(name)
            .and_then(|r| r.strip_prefix('['))
            .and_then(|r| r.split([',', ']']).next())
            .map(|s| s.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    Some((
        after("joined")?.starts_with("true"),
        first("successors"),
        first("predecessors"),
        after("node_id")?.split('"').nth(1)?.to_string(),
    ))
}

fn ring_ok(files: &[PathBuf]) -> bool {
    let st: Vec<_> = files.iter().filter_map(|f| status(f)).collect();
    if st.len() != files.len() {
        return false;
    }
    let mut ids: Vec<&String> = st.iter().map(|s| &s.3).collect();
    ids.sort();
    let n = ids.len();
    st.iter().all(|(joined, succ, pred, id)| {
        let i = ids.iter().position(|x| *x == id).unwrap();
        *joined && *succ == *ids[(i + 1) % n] && *pred == *ids[(i + n - 1) % n]
    })
}

fn process(peers: usize) {
    println!("== real processes: {peers} `reload-node run` peers over TLS on 127.0.0.x");
    let base_port: u16 = 46084;
    let dir = std::env::temp_dir().join(format!("reload-bench-rss-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let eb = enroll_bin();
    let edir = dir.join("enroll");
    let overlay = "rss.bench.test";
    let eaddr: SocketAddr = format!("127.0.0.1:{base_port}").parse().unwrap();
    let addr = |i: usize| format!("127.0.0.{}:{}", 10 + i, base_port + 1);
    let e = edir.to_str().unwrap();
    run(
        &eb,
        &[
            "init",
            "--overlay",
            overlay,
            "--data-dir",
            e,
            "--port",
            &base_port.to_string(),
            "--bootstrap",
            &addr(0),
            "--key-type",
            "p256",
        ],
        None,
    );
    for i in 0..peers {
        let user = format!("p{i}");
        let args = ["user", "add", &user, "--data-dir", e, "--password-stdin"];
        run(&eb, &args, Some(&format!("password-of-p{i}\n")));
    }
    let server = Proc(
        Command::new(&eb)
            .args(["serve", "--data-dir", e, "--listen", &eaddr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(eaddr);
    let url = format!("https://{overlay}:{base_port}/.well-known/reload-config");
    let resolve = format!("{overlay}=127.0.0.1");
    let ca = edir.join("ca.crt");
    for i in 0..peers {
        let pdir = dir.join(format!("p{i}"));
        let user = format!("p{i}");
        let args = [
            "enroll",
            "--overlay",
            overlay,
            "--user",
            &user,
            "--password-stdin",
            "--config-url",
            &url,
            "--resolve",
            &resolve,
            "--ca-cert",
            ca.to_str().unwrap(),
            "--data-dir",
            pdir.to_str().unwrap(),
            "--key-type",
            "p256",
        ];
        run(Path::new(NODE), &args, Some(&format!("password-of-p{i}\n")));
    }
    drop(server);
    let file = |i: usize| dir.join(format!("p{i}.status"));
    let mut procs = Vec::new();
    for i in 0..peers {
        let pdir = dir.join(format!("p{i}"));
        let (a, s, boot) = (addr(i), file(i), addr(0));
        let mut args = vec![
            "run",
            "--data-dir",
            pdir.to_str().unwrap(),
            "--listen",
            &a,
            "--protocol",
            "tls",
            "--status-file",
            s.to_str().unwrap(),
            "--log",
            "warn",
        ];
        if i == 0 {
            args.push("--first");
        } else {
            args.extend(["--bootstrap", &boot]);
        }
        let child = Command::new(NODE)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        procs.push(Proc(child));
        if i == 0 {
            let st = Instant::now();
            while status(&file(0)).is_none_or(|s| !s.0) {
                assert!(st.elapsed() < Duration::from_secs(20), "first peer");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let files: Vec<PathBuf> = (0..peers).map(file).collect();
    let st = Instant::now();
    while !ring_ok(&files) {
        assert!(st.elapsed() < Duration::from_secs(150), "ring not formed");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("ring formed after {:.1?}; idle 10 s", st.elapsed());
    std::thread::sleep(Duration::from_secs(10));
    let mut rss = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        let pid = p.0.id().to_string();
        let (r, h, t) = (
            status_kib(&pid, "VmRSS:").unwrap_or(0),
            status_kib(&pid, "VmHWM:").unwrap_or(0),
            status_kib(&pid, "Threads:").unwrap_or(0),
        );
        println!(
            "peer {i} (pid {pid}): VmRSS {:.1} MiB, VmHWM {:.1} MiB, {t} threads",
            mib(r),
            mib(h)
        );
        rss.push(r);
    }
    rss.sort();
    println!(
        "idle RSS of one peer in a ring of {peers}: median {:.1} MiB (min {:.1}, max {:.1})",
        mib(rss[rss.len() / 2]),
        mib(rss[0]),
        mib(rss[rss.len() - 1])
    );
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo bench` passes `--bench`; anything else starting with `-` is ignored too.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut modes: Vec<&str> = args.iter().map(String::as_str).collect();
    if modes.is_empty() {
        modes = vec![
            "topology", "10000", "100000", "full", "10000", "100000", "process", "5",
        ];
    }
    let num = |s: Option<&&str>, default: usize| s.and_then(|v| v.parse().ok()).unwrap_or(default);
    let mut i = 0;
    while i < modes.len() {
        let (a, b) = (modes.get(i + 1), modes.get(i + 2));
        match modes[i] {
            "full" => {
                full(num(a, 10_000), num(b, 100_000));
                i += 3;
            }
            "topology" => {
                topology(num(a, 10_000), num(b, 100_000));
                i += 3;
            }
            "process" => {
                process(num(a, 5));
                i += 2;
            }
            other => {
                eprintln!("unknown mode {other:?} (full N L | topology N L | process P)");
                i += 1;
            }
        }
    }
}
