//! Issue 5, CHORD-RELOAD (RFC 6940 §10) at 500 peers in FULL node cores: every peer is a
//! [`reload_proto::node::Node`] with its own certificate and key, driven by the core's
//! deterministic simulator ([`reload_proto::sim`]). Every Attach, Join, Update, Leave,
//! Ping and RouteQuery is a signed RELOAD message, routed hop by hop by the cores and
//! verified at its destination. (`chord_sim.rs` checks the same properties at topology
//! level, without cores.)
//!
//! What is asserted:
//! - 500 peers joining one after the other (1 s apart, each through a random earlier
//!   peer) converge to exactly the sorted ring: every peer's successor and predecessor
//!   lists are the next/previous 5 Node-IDs;
//! - 10,000 RouteQuery requests (§6.4.2.4, §10.8) sent as application requests to random
//!   Resource-IDs from random peers are all answered by the responsible peer (the
//!   verified signer of the answer), whose RouteQueryAns names itself as next peer;
//! - their mean hop count is at most ½·log2 N + 1. A hop is one overlay link crossed by
//!   the request, counted by the simulator at delivery ([`Sim::watch`]): the sender's
//!   first transmission counts 1, each forwarding peer 1 more (= via-list length at the
//!   target + 1; 0 when the sender is itself responsible);
//! - 30 % of the peers (150, chosen by the seed) fail at once; the ring of the survivors
//!   is exact again within [`HEAL_BOUND`] of simulated time, and 10,000 lookups again all
//!   reach the responsible peer within the same hop bound for N = 350;
//! - no signature was ever refused, no message was malformed;
//! - the run is a function of its seed: a digest of every peer's tables and counters,
//!   the simulator's message count, the clock and every lookup's hop count is the same
//!   for two 500-core runs with the same seed (each with its own CA and keys), and two
//!   other seeds give two other digests (at 100 peers, to keep the test short).
//!
//! The peers run exactly the plug-in settings a real peer gets from its configuration
//! (`ChordSettings::from_config`: RFC defaults). Answers that did not come back along
//! the request's path (a link on it was released in between, so the answer was routed to
//! the next via entry) are counted and printed, not asserted.

mod pki;
mod simnet;

use std::time::{Duration, Instant};

use simnet::*;

/// Successor / predecessor list length (what `ChordSettings::from_config` gives a
/// real peer).
const NEIGHBORS: usize = 5;

fn hop_bound(n: usize) -> f64 {
    0.5 * (n as f64).log2() + 1.0
}

/// Kills a random 30 % of the nodes at once; the victims.
fn fail_30_percent(net: &mut Net) -> Vec<usize> {
    let mut v: Vec<usize> = (0..net.ids.len()).collect();
    for i in (1..v.len()).rev() {
        let j = net.sim.rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v.truncate(net.ids.len() * 3 / 10);
    for &i in &v {
        net.sim.kill(i);
    }
    v
}

/// FNV-1a over everything a run determines.
fn digest(net: &Net, lookups: &[&Lookups]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for x in b {
            h ^= *x as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&(net.sim.elapsed().as_nanos() as u64).to_be_bytes());
    eat(&net.sim.delivered.to_be_bytes());
    eat(&net.sim.lost.to_be_bytes());
    for n in &net.sim.nodes {
        let t = n.node.topology();
        eat(n.node.node_id().as_bytes());
        eat(&[n.alive as u8, t.is_joined() as u8]);
        for list in [
            t.neighbor_section("successors"),
            t.neighbor_section("predecessors"),
            t.routing_table(),
        ] {
            eat(&(list.len() as u32).to_be_bytes());
            for x in list {
                eat(x.as_bytes());
            }
        }
        let s = n.node.stats();
        for c in [
            s.received,
            s.forwarded,
            s.delivered,
            s.answered,
            s.dropped_no_route,
            s.dropped_other,
            s.retransmissions,
            s.duplicate_requests,
            s.wrong_responder,
        ] {
            eat(&c.to_be_bytes());
        }
    }
    for l in lookups {
        eat(&l.trace);
    }
    h
}

fn assert_signatures_clean(net: &Net) {
    for (i, n) in net.sim.nodes.iter().enumerate() {
        let s = n.node.stats();
        assert_eq!(s.dropped_bad_signature, 0, "node {i}: signatures refused");
        assert_eq!(s.dropped_malformed, 0, "node {i}: malformed messages");
        assert_eq!(s.dropped_wrong_overlay, 0, "node {i}: wrong overlay");
    }
}

/// Bound on healing after the mass failure, in simulated time: four maximum request
/// lifetimes (4 × 5 × 3 s). A link to a dead peer goes down within one latency (≤ 40 ms)
/// in this simulator, so detection is immediate; what takes time is an Attach that
/// cannot succeed — to a dead node that a stale report still listed, dropped silently by
/// the peer now responsible for its ID (§6.1.1) — which only fails after the full
/// lifetime (15 s); the live candidate it kept out of the neighbour table is attached to
/// at once then. Measured: 15.25 s (see spec-notes/performance.md).
const HEAL_BOUND: Duration = Duration::from_secs(60);
/// Bound on convergence after the last join.
const CONVERGE_BOUND: Duration = Duration::from_secs(120);

const N: usize = 500;
const SEED: u64 = 0x0500_C0DE;
const LOOKUPS: usize = 10_000;
/// RouteQueries sent at the same instant (from different random peers).
const BATCH: usize = 100;

#[derive(Debug)]
struct Run {
    converged: Duration,
    before: Lookups,
    healed: Duration,
    after: Lookups,
    digest: u64,
    messages: u64,
}

/// The whole scenario: `n` cores join one after the other; `count` lookups; 30 % fail at
/// once; the survivors' ring heals; `count` lookups again. Asserts every property of the
/// module documentation except reproducibility.
fn scenario(n: usize, seed: u64, count: usize, verbose: bool) -> Run {
    let t = Instant::now();
    let mut net = cores(n, seed);
    let built = t.elapsed();
    join_sequentially(&mut net, SEC, |_, _| {});
    let joined_wall = t.elapsed();
    let converged = converge(&mut net, NEIGHBORS, SEC, CONVERGE_BOUND).unwrap_or_else(|| {
        panic!(
            "{n} cores: ring not exact {CONVERGE_BOUND:?} after the last join: {}",
            ring_error(&net, NEIGHBORS).unwrap()
        )
    });
    let joined_at = net.sim.elapsed();
    let t_lookups = Instant::now();
    let before = lookups(&mut net, count, BATCH, seed ^ 0x100c);
    let lookups_wall = t_lookups.elapsed();
    let bound = hop_bound(n);
    assert!(
        before.mean() <= bound,
        "{n} cores: mean hop count {} above ½·log2 N + 1 = {bound:.3}",
        before.mean()
    );
    if verbose {
        println!(
            "{n} full cores: built in {built:?}, joined 1 s apart in {joined_wall:?} wall; ring exact \
             {converged:?} after the last join (t = {joined_at:?}); {} RouteQueries in {lookups_wall:?} \
             wall, all answered by the responsible peer; mean hops {:.3} (bound {bound:.3}), max {}, \
             {} answers rerouted",
            before.count,
            before.mean(),
            before.max_hops,
            before.asymmetric
        );
    }
    let victims = fail_30_percent(&mut net);
    let t_heal = Instant::now();
    let healed = converge(&mut net, NEIGHBORS, Duration::from_millis(250), HEAL_BOUND)
        .unwrap_or_else(|| {
            panic!(
                "{n} cores: {} failed at once, ring not exact within {HEAL_BOUND:?}: {}",
                victims.len(),
                ring_error(&net, NEIGHBORS).unwrap()
            )
        });
    let heal_wall = t_heal.elapsed();
    let survivors = n - victims.len();
    let t_after = Instant::now();
    let after = lookups(&mut net, count, BATCH, seed ^ 0x200c);
    let bound_after = hop_bound(survivors);
    assert!(
        after.mean() <= bound_after,
        "{survivors} survivors: mean hop count {} above {bound_after:.3}",
        after.mean()
    );
    assert_signatures_clean(&net);
    assert_eq!(net.sim.lost, 0);
    if verbose {
        println!(
            "{n} full cores: {} failed at once; ring of the {survivors} survivors exact after {healed:?} \
             (bound {HEAL_BOUND:?}; {heal_wall:?} wall); {} RouteQueries in {:?} wall, all answered by \
             the responsible peer; mean hops {:.3} (bound {bound_after:.3}), max {}, {} answers \
             rerouted; {} messages delivered; simulated {:?}, total wall {:?}",
            victims.len(),
            after.count,
            t_after.elapsed(),
            after.mean(),
            after.max_hops,
            after.asymmetric,
            net.sim.delivered,
            net.sim.elapsed(),
            t.elapsed()
        );
    }
    Run {
        converged,
        digest: digest(&net, &[&before, &after]),
        before,
        healed,
        after,
        messages: net.sim.delivered,
    }
}

/// The 500-core run, shared by the tests.
fn base_run() -> &'static Run {
    static RUN: std::sync::OnceLock<Run> = std::sync::OnceLock::new();
    RUN.get_or_init(|| scenario(N, SEED, LOOKUPS, true))
}

#[test]
fn five_hundred_full_cores_join_route_fail_and_heal() {
    let r = base_run();
    assert_eq!(
        (r.before.count, r.after.count),
        (LOOKUPS as u64, LOOKUPS as u64)
    );
    println!(
        "{N} full cores, seed {SEED:#x}: ring exact {:?} after the last join; healed {:?} after 30 % \
         failed; mean hops {:.3} / {:.3}; {} messages; digest {:016x}",
        r.converged,
        r.healed,
        r.before.mean(),
        r.after.mean(),
        r.messages,
        r.digest
    );
}

#[test]
fn a_seed_reproduces_a_full_core_run() {
    // A second 500-core run with the same seed (new CA, new keys: only the seed is
    // shared) …
    let again = scenario(N, SEED, LOOKUPS, false);
    let base = base_run();
    assert_eq!(
        again.digest, base.digest,
        "the same seed must reproduce the run exactly"
    );
    // … and, smaller, two other seeds give two other runs.
    let a = scenario(100, 42, 1_000, false);
    let b = scenario(100, 4242, 1_000, false);
    println!(
        "seed {SEED:#x}, {N} cores: digest {:016x} twice ({} messages); 100 cores: seed 42 → {:016x}, \
         seed 4242 → {:016x}",
        base.digest, base.messages, a.digest, b.digest
    );
    assert_ne!(a.digest, b.digest, "another seed must give another run");
}
