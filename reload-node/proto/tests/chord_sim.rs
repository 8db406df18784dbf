//! Topology-level deterministic simulation of CHORD-RELOAD (RFC 6940 §10): many
//! [`Chord`] plug-ins on a virtual clock, the harness (`chord_sim/harness.rs`) playing
//! the node core. See the harness for the network model.
//!
//! Every test asserts the protocol invariants the harness counts (no Update before
//! Joined, no route through an unconnected peer, no refused Update) and that the ring is
//! exactly the sorted Node-IDs of the live members, with successor and predecessor lists
//! the correct prefixes and every key routed to its responsible node.

#[path = "chord_sim/harness.rs"]
mod harness;

use std::sync::OnceLock;
use std::time::Duration;

use harness::{Params, Role, Sim, XorShift, at, build_ring};
use reload_proto::topology::Topology;

const SEC: Duration = Duration::from_secs(1);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    // Heap's algorithm, iterative.
    let mut a: Vec<usize> = (0..n).collect();
    let mut out = vec![a.clone()];
    let mut c = vec![0usize; n];
    let mut i = 0;
    while i < n {
        if c[i] < i {
            if i % 2 == 0 {
                a.swap(0, i);
            } else {
                a.swap(c[i], i);
            }
            out.push(a.clone());
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    out
}

/// ID sets for the small rings: random ones, and ones packed around the wrap-around
/// point of the ring (2^128 - 1 → 0).
fn small_id_sets(n: usize) -> Vec<Vec<u128>> {
    let mut rng = XorShift::new(0x5eed_0000 + n as u64);
    let random: Vec<u128> = (0..n).map(|_| rng.node_id()).collect();
    let wrap: Vec<u128> = [u128::MAX - 9, u128::MAX - 3, 1, 5, 1 << 127, (1 << 127) + 2]
        .into_iter()
        .take(n)
        .collect();
    vec![random, wrap]
}

fn small_params() -> Params {
    Params {
        neighbors: 3,
        ..Params::default()
    }
}

/// Starts `order` (indices into `ids`): the first one alone, the others through it,
/// `gap` apart. Returns the sim and the node index of each ID.
fn small_ring(
    seed: u64,
    ids: &[u128],
    order: &[usize],
    gap: Duration,
    p: Params,
) -> (Sim, Vec<usize>) {
    let mut sim = Sim::new(seed, p);
    let idx: Vec<usize> = ids
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            sim.add(
                v,
                if k == order[0] {
                    Role::First
                } else {
                    Role::Peer
                },
            )
        })
        .collect();
    let first = idx[order[0]];
    sim.start_first(first, Duration::ZERO);
    for (k, &o) in order.iter().enumerate().skip(1) {
        sim.start_join(idx[o], &[first], gap * k as u32);
    }
    (sim, idx)
}

fn assert_ring(sim: &Sim, what: &str) {
    if let Some(e) = sim.ring_error() {
        panic!("{what}: ring wrong at {:?}: {e}", sim.now);
    }
    sim.check_edge_keys();
    sim.assert_no_violations();
}

#[test]
fn small_rings_every_join_order() {
    let mut runs = 0;
    for n in 1..=5usize {
        for (s, ids) in small_id_sets(n).iter().enumerate() {
            for order in permutations(n) {
                for (gap, label) in [(3 * SEC, "sequential"), (ms(7), "concurrent")] {
                    let seed = (n * 1000 + s * 100) as u64
                        + order.iter().fold(0, |h, &x| h * 7 + x as u64);
                    let (mut sim, _) = small_ring(seed, ids, &order, gap, small_params());
                    sim.run_for(gap * n as u32 + 30 * SEC);
                    assert_ring(&sim, &format!("n={n} ids#{s} order={order:?} {label}"));
                    runs += 1;
                }
            }
        }
    }
    // N = 6: a sample of the 720 orders.
    let mut rng = XorShift::new(6);
    for ids in small_id_sets(6) {
        for _ in 0..40 {
            let mut order: Vec<usize> = (0..6).collect();
            rng.shuffle(&mut order);
            let gap = if rng.chance(500) {
                3 * SEC
            } else {
                ms(rng.below(50))
            };
            let (mut sim, _) = small_ring(rng.next_u64(), &ids, &order, gap, small_params());
            sim.run_for(gap * 6 + 30 * SEC);
            assert_ring(&sim, &format!("n=6 order={order:?} gap={gap:?}"));
            runs += 1;
        }
    }
    println!("small rings: {runs} join orders converged");
}

#[test]
fn small_rings_every_failure_order() {
    let mut runs = 0;
    for n in 2..=6usize {
        for (s, ids) in small_id_sets(n).iter().enumerate() {
            let order: Vec<usize> = (0..n).collect();
            let (mut base, idx) = small_ring(
                n as u64 * 31 + s as u64,
                ids,
                &order,
                2 * SEC,
                small_params(),
            );
            base.run_for(2 * SEC * n as u32 + 20 * SEC);
            assert_ring(&base, &format!("n={n} before failures"));
            let mut plans: Vec<Vec<usize>> = (0..n).map(|a| vec![a]).collect();
            for a in 0..n {
                for b in 0..n {
                    if a != b && n >= 3 {
                        plans.push(vec![a, b]);
                    }
                }
            }
            for plan in plans {
                // Back to back (the second fails before the first is detected) and one
                // after the other has healed.
                for spacing in [ms(500), 20 * SEC] {
                    if plan.len() == 1 && spacing != ms(500) {
                        continue;
                    }
                    let mut sim = base.clone();
                    for &f in &plan {
                        sim.kill(idx[f]);
                        sim.run_for(spacing);
                    }
                    sim.run_for(40 * SEC);
                    let what = format!("n={n} ids#{s} failures {plan:?} spaced {spacing:?}");
                    let survivors = sim.members();
                    if survivors.len() == 1 {
                        // Alone: only the first node may hold the whole overlay (§6.4.2.1);
                        // an ordinary peer reports itself isolated and stops routing.
                        let i = survivors[0];
                        let node = &sim.nodes[i];
                        if node.role == Role::First {
                            assert!(node.chord.is_joined(), "{what}: first node left the ring");
                            assert!(
                                node.chord.successors().is_empty()
                                    && node.chord.predecessors().is_empty()
                            );
                            assert_eq!(node.chord.responsible_ppb(), 1_000_000_000);
                        } else {
                            assert!(
                                !node.chord.is_joined(),
                                "{what}: lone peer still claims the ring"
                            );
                            assert!(
                                node.isolated > 0,
                                "{what}: lone peer did not report isolation"
                            );
                        }
                        sim.assert_no_violations();
                    } else {
                        assert_ring(&sim, &what);
                    }
                    runs += 1;
                }
            }
        }
    }
    println!("small rings: {runs} failure orders healed");
}

fn big_params() -> Params {
    Params {
        neighbors: 5,
        max_fingers: 24,
        update_interval: 60 * SEC,
        ping_interval: 60 * SEC,
        ..Params::default()
    }
}

const BIG: usize = 500;
const BIG_SEED: u64 = 0xC40D_2014;

/// The 500-node ring built by sequential joins, shared by the tests that start from it.
fn big_ring() -> &'static (Sim, Vec<usize>) {
    static RING: OnceLock<(Sim, Vec<usize>)> = OnceLock::new();
    RING.get_or_init(|| {
        let mut sim = Sim::new(BIG_SEED, big_params());
        let ids: Vec<u128> = (0..BIG).map(|_| sim.rng.node_id()).collect();
        let idx = build_ring(&mut sim, &ids, SEC, 120 * SEC);
        (sim, idx)
    })
}

#[test]
fn five_hundred_sequential_joins() {
    let (sim, _) = big_ring();
    let mut sim = sim.clone();
    assert_ring_big(&sim, "500 sequential joins");
    let mean = sim.check_routing(10_000);
    let bound = 0.5 * (BIG as f64).log2() + 1.0;
    println!(
        "500 sequential joins: converged at t={:?}; 10000 keys routed, mean hops {mean:.3} (bound {bound:.3}); \
         {} events, {} attaches, {} updates, {} links",
        sim.now,
        sim.stats.events,
        sim.stats.attaches,
        sim.stats.updates,
        sim.link_count()
    );
    assert!(mean <= bound, "mean hop count {mean} above {bound}");
}

fn assert_ring_big(sim: &Sim, what: &str) {
    if let Some(e) = sim.ring_error() {
        panic!("{what}: ring wrong at {:?}: {e}", sim.now);
    }
    sim.assert_no_violations();
    let m = sim.members();
    let mut sorted: Vec<u128> = m.iter().map(|&i| at(&sim.nodes[i].id)).collect();
    sorted.sort();
    // Walk the ring along first successors: exactly the sorted IDs, once round.
    let mut cur = m[0];
    let mut walked = vec![at(&sim.nodes[cur].id)];
    for _ in 1..m.len() {
        let s = sim.nodes[cur].chord.successors()[0];
        cur = sim.index[&s];
        walked.push(at(&s));
    }
    walked.sort();
    assert_eq!(
        walked, sorted,
        "{what}: successor walk is not the sorted members"
    );
}

#[test]
fn five_hundred_concurrent_batch_joins() {
    let mut sim = Sim::new(0x0BA7_C4E5, big_params());
    let v = sim.rng.node_id();
    let first = sim.add(v, Role::First);
    sim.start_first(first, Duration::ZERO);
    sim.run_for(SEC);
    let mut joined = vec![first];
    let mut left = BIG - 1;
    let batch = 50;
    while left > 0 {
        let k = batch.min(left);
        let mut this = Vec::new();
        for _ in 0..k {
            let v = sim.rng.node_id();
            let i = sim.add(v, Role::Peer);
            let b = joined[sim.rng.below(joined.len() as u64) as usize];
            let after = ms(sim.rng.below(200));
            sim.start_join(i, &[b], after);
            this.push(i);
        }
        sim.run_for(15 * SEC);
        joined.extend(this);
        left -= k;
    }
    let took = sim.run_until_ok(SEC, 300 * SEC, |s| s.ring_ok());
    assert!(
        took.is_some(),
        "batch joins did not converge: {:?}",
        sim.ring_error()
    );
    assert_ring_big(&sim, "500 joins in batches of 50");
    let mean = sim.check_routing(10_000);
    let bound = 0.5 * (BIG as f64).log2() + 1.0;
    println!(
        "500 joins in batches of 50 (within 200 ms each): converged at t={:?}; mean hops {mean:.3} (bound {bound:.3}); {} events",
        sim.now, sim.stats.events
    );
    assert!(mean <= bound, "mean hop count {mean} above {bound}");
}

#[test]
fn thirty_percent_fail_at_once() {
    let (ring, idx) = big_ring();
    // Bound: the slowest failure detection, then one lost Attach (request timeout) and
    // its retry after the back-off (two more), and one more round: 6 s + 4 × 3 s.
    let bound = ring.p.detect.1 + ring.p.request_timeout * 4;
    let mut times = Vec::new();
    // Four different sets of victims.
    for seed in 0..4u64 {
        let mut sim = ring.clone();
        sim.rng = XorShift::new(seed);
        let mut victims = idx.clone();
        sim.rng.shuffle(&mut victims);
        victims.truncate(BIG * 3 / 10);
        for &v in &victims {
            sim.kill(v);
        }
        let took = sim.run_until_ok(ms(250), bound, |s| s.ring_ok());
        let Some(took) = took else {
            panic!(
                "victims #{seed}: not healed within {bound:?}: {:?}",
                sim.ring_error()
            );
        };
        assert_ring_big(&sim, "after 30% failures");
        let mean = sim.check_routing(if seed == 0 { 10_000 } else { 1_000 });
        println!(
            "30% of 500 failed at once (victims #{seed}, detection delay {:?}–{:?}): ring correct again after {took:?} \
             (bound {bound:?}); then keys routed correctly, mean hops {mean:.3} over {} nodes",
            sim.p.detect.0,
            sim.p.detect.1,
            sim.members().len()
        );
        times.push(took);
    }
    println!("30% failures: heal times {times:?}");
}

fn run_digest(seed: u64) -> u64 {
    let p = Params {
        loss_permille: 20,
        ..big_params()
    };
    let mut sim = Sim::new(seed, p);
    let ids: Vec<u128> = (0..80).map(|_| sim.rng.node_id()).collect();
    let idx = build_ring(&mut sim, &ids, ms(300), 30 * SEC);
    for k in 0..8 {
        let v = idx[sim.rng.below(idx.len() as u64) as usize];
        if k % 2 == 0 {
            sim.kill(v);
        } else if sim.nodes[v].alive {
            sim.leave(v);
        }
        sim.run_for(2 * SEC);
    }
    sim.run_for(60 * SEC);
    sim.assert_no_violations();
    sim.digest()
}

#[test]
fn same_seed_same_run() {
    let a = run_digest(42);
    let b = run_digest(42);
    let c = run_digest(43);
    println!("digests: seed 42 → {a:016x} twice, seed 43 → {c:016x}");
    assert_eq!(a, b, "the same seed must reproduce the run exactly");
    assert_ne!(a, c, "another seed must give another run");
}

#[test]
fn graceful_leave_heals_faster_than_failure() {
    let mut sim = Sim::new(77, big_params());
    let ids: Vec<u128> = (0..60).map(|_| sim.rng.node_id()).collect();
    let idx = build_ring(&mut sim, &ids, ms(500), 60 * SEC);
    assert_ring_big(&sim, "60-node ring");
    let mut leave_total = Duration::ZERO;
    let mut fail_total = Duration::ZERO;
    for k in 0..5 {
        let v = idx[7 + 11 * k];
        let mut a = sim.clone();
        a.leave(v);
        let tl = a
            .run_until_ok(ms(10), 60 * SEC, |s| s.ring_ok())
            .expect("leave healed");
        assert_ring_big(&a, "after a leave");
        let mut b = sim.clone();
        b.kill(v);
        let tf = b
            .run_until_ok(ms(10), 60 * SEC, |s| s.ring_ok())
            .expect("failure healed");
        assert_ring_big(&b, "after a failure");
        println!("node {k}: healed {tl:?} after Leave, {tf:?} after failure");
        assert!(tl < tf, "leave {tl:?} not faster than failure {tf:?}");
        leave_total += tl;
        fail_total += tf;
    }
    println!(
        "mean heal: {:?} after Leave, {:?} after failure",
        leave_total / 5,
        fail_total / 5
    );
}

#[test]
fn lossy_network_converges() {
    let p = Params {
        loss_permille: 50,
        ..big_params()
    };
    let mut sim = Sim::new(5, p);
    let ids: Vec<u128> = (0..100).map(|_| sim.rng.node_id()).collect();
    build_ring(&mut sim, &ids, SEC, 10 * SEC);
    let took = sim.run_until_ok(SEC, 600 * SEC, |s| s.ring_ok());
    assert!(
        took.is_some(),
        "5% loss: no convergence: {:?}",
        sim.ring_error()
    );
    assert_ring_big(&sim, "5% loss");
    let mean = sim.check_routing(2_000);
    println!(
        "100 nodes, 5% message loss: converged {:?} after the last join ({} messages lost), mean hops {mean:.3}",
        took.unwrap_or_default() + 10 * SEC,
        sim.stats.lost
    );
}

#[test]
fn periodic_recovery_without_reactive_updates() {
    let p = Params {
        reactive: false,
        update_interval: 10 * SEC,
        ..big_params()
    };
    let mut sim = Sim::new(9, p);
    let ids: Vec<u128> = (0..40).map(|_| sim.rng.node_id()).collect();
    let idx = build_ring(&mut sim, &ids, SEC, SEC);
    let took = sim.run_until_ok(SEC, 300 * SEC, |s| s.ring_ok());
    assert!(
        took.is_some(),
        "non-reactive: no convergence: {:?}",
        sim.ring_error()
    );
    for &v in idx.iter().skip(3).step_by(9) {
        sim.kill(v);
    }
    let healed = sim.run_until_ok(SEC, 300 * SEC, |s| s.ring_ok());
    assert!(
        healed.is_some(),
        "non-reactive: failures not healed: {:?}",
        sim.ring_error()
    );
    assert_ring_big(&sim, "non-reactive");
    sim.check_routing(2_000);
    println!("chord-reactive=false: joins converged, 4 failures healed in {healed:?}");
}

#[test]
fn clients_follow_their_responsible_peer() {
    let mut sim = Sim::new(11, big_params());
    let ids: Vec<u128> = (0..30).map(|_| sim.rng.node_id()).collect();
    let idx = build_ring(&mut sim, &ids, ms(500), 20 * SEC);
    let mut clients = Vec::new();
    for _ in 0..10 {
        let v = sim.rng.node_id();
        let c = sim.add(v, Role::Client);
        let b = idx[sim.rng.below(idx.len() as u64) as usize];
        sim.start_client(c, &[b], Duration::ZERO);
        clients.push(c);
    }
    sim.run_for(20 * SEC);
    let check = |sim: &Sim, what: &str| {
        assert_ring(sim, what);
        let m = sim.members();
        for &c in &clients {
            let node = &sim.nodes[c];
            let want = sim.responsible(&m, at(&node.id));
            assert_eq!(
                node.chord.client_peer(),
                Some(sim.nodes[want].id),
                "{what}: client {:?} peer",
                node.id
            );
            assert!(!node.chord.is_joined() && node.chord.is_client());
            // Never in anyone's routing table: clients do not route (§4.2).
            for &i in &m {
                assert!(
                    !sim.nodes[i].chord.routing_table().contains(&node.id),
                    "{what}: client in a routing table"
                );
            }
            // Resource-IDs next to the client's ID are the peer's; messages to the
            // client's Node-ID reach the client through it (§4.2.1, §6.1.1).
            assert!(sim.linked(want, c), "{what}: client not linked to its peer");
            let k = at(&node.id).wrapping_add(1).to_be_bytes();
            for &src in m.iter().step_by(3) {
                let (got, _) = sim.route(src, &k).expect("route next to the client");
                assert_eq!(got, want, "{what}: key after client {:?}", node.id);
                sim.route_node(src, c)
                    .unwrap_or_else(|e| panic!("{what}: to client {:?}: {e}", node.id));
            }
        }
    };
    check(&sim, "clients attached");
    // The responsible peers of half the clients fail (not a bootstrap peer: a client
    // with no link left needs its core to dial a bootstrap address again).
    let m = sim.members();
    let boots: Vec<usize> = clients
        .iter()
        .flat_map(|&c| sim.nodes[c].bootstrap.clone())
        .collect();
    let mut killed = 0;
    for &c in clients.iter().step_by(2) {
        let want = sim.responsible(&m, at(&sim.nodes[c].id));
        if !boots.contains(&want) {
            sim.kill(want);
            killed += 1;
        }
    }
    assert!(killed >= 3);
    sim.run_for(90 * SEC);
    check(&sim, "after their peers failed");
    // New peers join just in front of some clients: they must move to them.
    let mut newcomers = Vec::new();
    for &c in clients.iter().skip(1).step_by(3) {
        let v = at(&sim.nodes[c].id).wrapping_add(1);
        let m = sim.members();
        let b = m[sim.rng.below(m.len() as u64) as usize];
        let i = sim.add(v, Role::Peer);
        sim.start_join(i, &[b], Duration::ZERO);
        newcomers.push(i);
    }
    // Well before the clients' own periodic check (≥ 0.8 × update interval): the old
    // peer's range changed, so it Updated its whole connection table, clients included
    // (§10.7.3), and they moved.
    sim.run_for(10 * SEC);
    assert!(10 * SEC < sim.p.update_interval * 4 / 5);
    check(&sim, "after peers joined in front of clients");
}

#[test]
fn separately_started_rings_merge_through_bootstrap_links() {
    let p = Params {
        ping_interval: 20 * SEC,
        ..big_params()
    };
    let mut sim = Sim::new(21, p);
    // Ring A: 12 nodes.
    let a_ids: Vec<u128> = (0..12).map(|_| sim.rng.node_id()).collect();
    let a = build_ring(&mut sim, &a_ids, ms(300), 10 * SEC);
    // Ring B: its own first node, its members know A's first node as a second bootstrap.
    let v = sim.rng.node_id();
    let b0 = sim.add(v, Role::First);
    sim.start_first(b0, Duration::ZERO);
    sim.run_for(SEC);
    for _ in 0..11 {
        let v = sim.rng.node_id();
        let i = sim.add(v, Role::Peer);
        sim.start_join(i, &[b0, a[0]], Duration::ZERO);
        sim.run_for(ms(300));
    }
    let took = sim.run_until_ok(SEC, 600 * SEC, |s| s.ring_ok());
    assert!(
        took.is_some(),
        "partitions did not merge: {:?}",
        sim.ring_error()
    );
    assert_ring(&sim, "merged ring");
    sim.check_routing(2_000);
    println!(
        "two 12-node rings merged into one (§10.7.4.4) after {:?}",
        took.unwrap_or_default()
    );
}

#[test]
fn partition_heals_by_pinging_through_a_bootstrap_peer() {
    let p = Params {
        ping_interval: 20 * SEC,
        ..big_params()
    };
    let mut sim = Sim::new(31, p);
    let v = sim.rng.node_id();
    let first = sim.add(v, Role::First);
    sim.start_first(first, Duration::ZERO);
    sim.run_for(SEC);
    let mut all = vec![first];
    for _ in 0..29 {
        let v = sim.rng.node_id();
        let i = sim.add(v, Role::Peer);
        sim.start_join(i, &[first], Duration::ZERO);
        sim.run_for(ms(400));
        all.push(i);
    }
    sim.run_for(20 * SEC);
    assert_ring(&sim, "30-node ring");
    // Cut off half of the ring (not the bootstrap peer): two rings form.
    let mut b_side: Vec<usize> = all[1..].to_vec();
    sim.rng.shuffle(&mut b_side);
    b_side.truncate(15);
    sim.partition(&b_side);
    let side_of = |sim: &Sim, b: bool| -> Vec<usize> {
        sim.members()
            .into_iter()
            .filter(|i| b_side.contains(i) == b)
            .collect()
    };
    let split = sim.run_until_ok(SEC, 120 * SEC, |s| {
        s.ring_error_of(&side_of(s, true)).is_none()
            && s.ring_error_of(&side_of(s, false)).is_none()
    });
    assert!(
        split.is_some(),
        "the two sides did not form rings: {:?}",
        sim.ring_error_of(&side_of(&sim, true))
    );
    assert!(sim.ring_error().is_some());
    sim.check_edge_keys_of(&side_of(&sim, true));
    // The network heals: the cores reach their bootstrap peer again; pings for own-ID+1
    // through it are answered by a peer of the other side, which is not our successor.
    sim.heal();
    let pings_before = sim.stats.pings;
    let merged = sim.run_until_ok(SEC, 300 * SEC, |s| s.ring_ok());
    assert!(
        merged.is_some(),
        "partition not healed: {:?}",
        sim.ring_error()
    );
    assert_ring(&sim, "healed ring");
    assert!(sim.stats.pings > pings_before);
    sim.check_routing(2_000);
    println!(
        "partition: two rings of 15 after {:?}; merged into one {:?} after the network healed (ping interval {:?})",
        split.unwrap_or_default(),
        merged.unwrap_or_default(),
        sim.p.ping_interval
    );
}
