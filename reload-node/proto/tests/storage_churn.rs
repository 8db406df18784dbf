//! Issue 11: no stored value is lost while the overlay changes (RFC 6940 §10.4
//! replication, §10.7.1/§10.7.3 failures and replica-set changes, §10.5 step 6 and
//! §6.4.2.3 data handed to a joining peer), in 200 full node cores of the deterministic
//! simulator.
//!
//! - 200 peers form a ring; they store 1,000 values (each peer five, at H(Node-ID ‖ i),
//!   NODE-MULTIPLE), each then held by its responsible peer and that peer's two
//!   successors;
//! - peers fail one at a time, with [`SETTLE`] of simulated time between failures, until
//!   half the overlay is gone: after each, every value is again held by its responsible
//!   peer and both replicas;
//! - two adjacent peers fail at once: the same holds after [`SETTLE`];
//! - 100 new peers join: every value lives on its new responsible peer (and its
//!   replicas), and a Fetch from a random peer returns it, verified.

mod pki;
mod simnet;
mod storage;

use std::net::SocketAddr;
use std::time::Duration;

use pki::kinds::MULTI;
use reload_proto::identity::chord_resource_id;
use reload_proto::node::everything;
use reload_proto::storage::policy::node_multiple_name;
use reload_wire::NodeId;
use reload_wire::ResourceId;
use reload_wire::body::MessageBody;
use reload_wire::storage::{DataModel, KindId};
use simnet::*;
use storage::*;

const PEERS: usize = 200;
const PER_PEER: u32 = 5;
const NEIGHBORS: usize = 5;
/// Simulated time between failures: enough for the failure to be noticed (the simulator
/// closes the dead peer's streams) and the data to be copied again.
const SETTLE: Duration = Duration::from_secs(15);

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 6084))
}

/// Every value's Resource-ID and its writer.
fn values(net: &Net) -> Vec<(ResourceId, usize)> {
    let mut v = Vec::new();
    for w in 0..PEERS {
        let id = NodeId::from_u128(net.ids[w]);
        for i in 1..=PER_PEER {
            let name = node_multiple_name(&id, i);
            v.push((chord_resource_id(&name), w));
        }
    }
    v
}

/// Values not held by every live member of their replica group (responsible + 2).
fn misplaced(net: &Net, vals: &[(ResourceId, usize)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (r, w) in vals {
        for k in replica_group(net, r) {
            if !holds(net, k, r, MULTI) {
                bad.push(format!("value of {w} at {r:?} missing on node {k}"));
            }
        }
    }
    bad
}

/// Values held by nobody alive: lost.
fn lost(net: &Net, vals: &[(ResourceId, usize)]) -> usize {
    vals.iter()
        .filter(|(r, _)| !live(net).iter().any(|&k| holds(net, k, r, MULTI)))
        .count()
}

fn settle_and_check(net: &mut Net, vals: &[(ResourceId, usize)], what: &str) {
    net.sim.run_for(SETTLE);
    clear_events(&mut net.sim);
    assert_eq!(lost(net, vals), 0, "values lost after {what}");
    let bad = misplaced(net, vals);
    if !bad.is_empty() {
        let ring = ring_error(net, NEIGHBORS);
        net.sim.run_for(60 * SEC);
        let later = misplaced(net, vals);
        panic!(
            "after {what}: {} values not on their replica group, e.g. {:?}; ring: {ring:?}; \
             60 s later {} still",
            bad.len(),
            &bad[..bad.len().min(3)],
            later.len()
        );
    }
}

#[test]
fn no_value_is_lost_as_peers_fail_and_join() {
    let seed = 1111;
    let ca = pki::TestCa::new(false);
    let overlay = ca.storage_overlay();
    let mut net = build_in(ca, overlay, seed, random_ids(PEERS, seed), addr, None, None);
    join_sequentially(&mut net, SEC, |_, _| {});
    assert!(
        converge(&mut net, NEIGHBORS, SEC, 300 * SEC).is_some(),
        "{:?}",
        ring_error(&net, NEIGHBORS)
    );
    clear_events(&mut net.sim);

    // 1,000 values, sent by all peers at once.
    let vals = values(&net);
    let mut pending = Vec::new();
    for (r, w) in &vals {
        let signed = sign(&mut net, *w, r, MULTI, vec![single("value")], 7200);
        let kind_data = vec![reload_wire::storage::StoreKindData {
            kind: KindId(MULTI),
            generation_counter: 0,
            values: reload_wire::storage::KindValues::Decoded(signed),
        }];
        let now = net.sim.now;
        let tx = net.sim.nodes[*w]
            .node
            .store(now, r.clone(), kind_data)
            .unwrap();
        net.sim.after_input(*w);
        pending.push((*w, tx));
    }
    for (w, tx) in pending {
        let (_, body) = wait(&mut net, w, tx).unwrap_or_else(|e| panic!("store by {w}: {e}"));
        assert!(matches!(body, MessageBody::StoreAns(_)));
    }
    settle_and_check(&mut net, &vals, "storing");

    // Failures one at a time, down to half the overlay.
    for round in 0..PEERS / 2 {
        let alive = live(&net);
        let victim = alive[net.sim.rng.below(alive.len() as u64) as usize];
        net.sim.kill(victim);
        settle_and_check(&mut net, &vals, &format!("failure {round} (node {victim})"));
    }

    // Two adjacent peers at once.
    let alive = live(&net);
    let k = net.sim.rng.below(alive.len() as u64) as usize;
    let (a, b) = (alive[k], alive[(k + 1) % alive.len()]);
    net.sim.kill(a);
    net.sim.kill(b);
    settle_and_check(&mut net, &vals, "two adjacent failures");

    // 100 new peers join, one after the other.
    let fresh = random_ids(PEERS + 100, seed ^ 0xfeed);
    let mut added = 0;
    for id in fresh {
        if added == 100 {
            break;
        }
        if net.ids.contains(&id) {
            continue;
        }
        let i = add_node(&mut net, id, addr(PEERS + added));
        let alive: Vec<usize> = live(&net).into_iter().filter(|&k| k != i).collect();
        let via = alive[net.sim.rng.below(alive.len() as u64) as usize];
        let now = net.sim.now;
        let boot = vec![(PROTOCOL, net.addrs[via])];
        net.sim.nodes[i]
            .node
            .start(now, reload_proto::node::Start::Join(boot));
        net.sim.after_input(i);
        net.sim.run_for(SEC);
        added += 1;
    }
    // The responsible peers and replica sets are right (the first three successors and
    // predecessors of everyone).
    let mut waited = Duration::ZERO;
    while ring_prefix_error(&net, 3).is_some() && waited < 300 * SEC {
        net.sim.run_for(SEC);
        waited += SEC;
    }
    assert!(
        ring_prefix_error(&net, 3).is_none(),
        "{:?}",
        ring_prefix_error(&net, 3)
    );
    settle_and_check(&mut net, &vals, "100 joins");

    // Every value fetched through the overlay from a random peer, verified.
    let alive = live(&net);
    for (r, w) in &vals {
        let from = alive[net.sim.rng.below(alive.len() as u64) as usize];
        let f = fetch(
            &mut net,
            from,
            r,
            vec![everything(KindId(MULTI), DataModel::Single)],
        )
        .unwrap_or_else(|e| panic!("fetch of {w}'s value from {from}: {e}"));
        assert!(f.rejected.is_empty());
        assert_eq!(
            f.responder,
            NodeId::from_u128(net.ids[responsible(&net, r)])
        );
        assert_eq!(
            content(&f.kinds[0].values.as_slice()[0]),
            Some(b"value".to_vec()),
            "value of {w} at {r:?}"
        );
    }
}
