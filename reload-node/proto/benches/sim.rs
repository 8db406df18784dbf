//! Simulator scale and memory, reported, never asserted.
//!
//! `cargo bench -p reload-proto --bench sim -- [MODE …]`, modes (run in the order given;
//! without any: `topology 10000 100000`, `full 10000 100000`):
//!
//! - `full N L` — N full node cores ([`reload_proto::node::Node`]: signing, verification,
//!   Chord with a real peer's settings) in the deterministic simulator
//!   ([`reload_proto::sim`]): wall time to build them, for all to join one after the other
//!   (1 s of simulated time apart, each through a random earlier peer) until the ring is
//!   exactly the sorted Node-IDs, and for L RouteQueries (batches of 1,000 sent at the
//!   same instant) to random Resource-IDs — each checked to be answered by the
//!   responsible peer; RSS per core (VmRSS of this process before and after, over N);
//! - `topology N L` — the same join and L lookups at topology level (Chord plug-ins
//!   driven by `tests/chord_sim/harness.rs`, no cores, no messages encoded or signed;
//!   lookups are routed through the plug-ins' tables).
//!
//! The idle memory of real peer processes is the `peer_rss` bench of `reload-node-cli`.

#[path = "../tests/pki/mod.rs"]
mod pki;

#[path = "../tests/simnet/mod.rs"]
mod simnet;

#[path = "../tests/chord_sim/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use simnet::*;

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
    let mut last = Instant::now();
    join_sequentially(&mut net, SEC, |i, net| {
        if last.elapsed() > Duration::from_secs(30) {
            last = Instant::now();
            println!(
                "  … {i} joined after {:.0?} wall ({} messages, RSS {:.0} MiB)",
                t.elapsed(),
                net.sim.delivered,
                mib(rss_kib())
            );
        }
    });
    let limit = Duration::from_secs(300);
    let extra = converge(&mut net, 5, SEC, limit).unwrap_or(limit);
    let join_wall = t.elapsed();
    let joined_msgs = net.sim.delivered;
    if let Some(e) = ring_error(&net, 5) {
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
    let l = lookups(&mut net, count, 1000, SEED ^ 0x100c);
    let (done, hops) = (l.count, l.hops);
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

fn main() {
    // `cargo bench` passes `--bench`; anything else starting with `-` is ignored too.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut modes: Vec<&str> = args.iter().map(String::as_str).collect();
    if modes.is_empty() {
        modes = vec!["topology", "10000", "100000", "full", "10000", "100000"];
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
            other => {
                eprintln!("unknown mode {other:?} (full N L | topology N L)");
                i += 1;
            }
        }
    }
}
