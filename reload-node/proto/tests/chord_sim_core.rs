//! CHORD-RELOAD inside real node cores: the same plug-in as `chord_sim.rs`, but driven by
//! [`reload_proto::node::Node`] in the core's own simulator (`reload_proto::sim`). Every
//! Attach, Update, Join, Leave and Ping is a signed RELOAD message routed by the cores,
//! so this checks that the plug-in's conventions match the core's: Join answered through
//! `answer_join`, Attach answers and `UpdateRequested`, links closed by `ReleaseLink`,
//! Pings answered by the responsible peer.

mod pki;
mod simnet;

use std::net::SocketAddr;
use std::time::Duration;

use reload_proto::node::Event;
use reload_proto::node::Start;
use reload_proto::sim::Sim;
use reload_proto::topology::chord::ChordSettings;
use reload_wire::body::MessageBody;
use reload_wire::link::PingReq;
use reload_wire::{Destination, NodeId, ResourceId};
use simnet::{Net, PROTOCOL, build, live, ring_error, ring_error_of};

/// Successor / predecessor list length of [`topo_settings`].
const NEIGHBORS: usize = 4;

fn topo_settings() -> ChordSettings {
    ChordSettings {
        node_id_len: 16,
        update_interval: Duration::from_secs(30),
        ping_interval: Duration::from_secs(60),
        reactive: true,
        neighbor_list_size: 4,
        max_fingers: 16,
        request_timeout: Duration::from_secs(3),
    }
}

/// `n` real cores with Chord; none started.
fn cores(n: usize, seed: u64) -> Net {
    let mut rng = seed | 1;
    let ids = (0..n)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            ((rng as u128) << 64) | (rng.rotate_left(17) as u128) | 1
        })
        .collect();
    let addr = |i: usize| -> SocketAddr { format!("127.0.0.1:{}", 20000 + i).parse().unwrap() };
    build(seed, ids, addr, Some(topo_settings()), Some(256))
}

fn start(r: &mut Net, i: usize, bootstrap: Option<usize>) {
    let now = r.sim.now;
    match bootstrap {
        None => r.sim.nodes[i].node.start(now, Start::FirstNode),
        Some(b) => {
            let addr = r.addrs[b];
            r.sim.nodes[i]
                .node
                .start(now, Start::Join(vec![(PROTOCOL, addr)]))
        }
    }
    r.sim.after_input(i);
}

/// Pings `dest` from `from` and waits (20 s at most) for the answer; the responder.
fn ping(r: &mut Net, from: usize, dest: Destination) -> NodeId {
    let now = r.sim.now;
    let what = format!("ping {dest:?} from node {from}");
    let tx = r.sim.nodes[from]
        .node
        .send_request(now, vec![dest], MessageBody::PingReq(PingReq::default()))
        .unwrap();
    r.sim.after_input(from);
    let answered = |s: &Sim| {
        s.nodes[from]
            .events
            .iter()
            .any(|e| matches!(e, Event::Response { transaction_id, .. } if *transaction_id == tx))
    };
    assert!(
        r.sim.run_until(Duration::from_secs(20), answered),
        "{what}: unanswered"
    );
    let res = r.sim.nodes[from].events.iter().find_map(|e| match e {
        Event::Response {
            transaction_id,
            result,
        } if *transaction_id == tx => Some(result.clone()),
        _ => None,
    });
    res.unwrap().unwrap_or_else(|e| panic!("{what}: {e:?}")).0
}

/// Pings `key` as a Resource-ID from `from`; the responder.
fn ping_resource(r: &mut Net, from: usize, key: u128) -> NodeId {
    let dest = Destination::Resource(ResourceId::new(key.to_be_bytes().to_vec()));
    ping(r, from, dest)
}

fn check_pings(r: &mut Net, count: usize, seed: u64) {
    let m = live(r);
    let mut x = seed | 1;
    for _ in 0..count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = ((x as u128) << 64) | x.rotate_left(29) as u128;
        let pos = m.partition_point(|&i| r.ids[i] < key);
        let want_i = m[pos % m.len()];
        let want = NodeId::from_u128(r.ids[want_i]);
        // From a node that is not responsible itself (the core does not deliver its own
        // requests for its own range locally).
        let mut from = m[(x % m.len() as u64) as usize];
        if from == want_i {
            from = m[(pos + 1) % m.len()];
        }
        assert_eq!(
            ping_resource(r, from, key),
            want,
            "key {key:032x} from node {from}"
        );
    }
}

#[test]
fn chord_in_real_cores_joins_routes_and_heals() {
    let n = 20;
    let mut r = cores(n, 7);
    start(&mut r, 0, None);
    r.sim.run_for(Duration::from_secs(1));
    for i in 1..n {
        // Each joins through a random earlier node.
        let b = (r.ids[i] % i as u128) as usize;
        start(&mut r, i, Some(b));
        r.sim.run_for(Duration::from_secs(1));
    }
    let mut waited = Duration::ZERO;
    while ring_error(&r, NEIGHBORS).is_some() && waited < Duration::from_secs(60) {
        r.sim.run_for(Duration::from_secs(1));
        waited += Duration::from_secs(1);
    }
    if let Some(e) = ring_error(&r, NEIGHBORS) {
        panic!("ring through real cores: {e}");
    }
    check_pings(&mut r, 60, 3);
    for i in 0..n {
        assert_eq!(r.sim.nodes[i].node.stats().dropped_bad_signature, 0);
    }
    println!(
        "real cores: {n} Chord peers joined; ring exact {waited:?} after the last join; 60 pings answered by the responsible peer"
    );

    // Three fail, one leaves gracefully.
    for &i in &[3usize, 11, 17] {
        r.sim.kill(i);
    }
    let now = r.sim.now;
    r.sim.nodes[8].node.leave(now);
    r.sim.after_input(8);
    r.sim.run_for(Duration::from_millis(500));
    r.sim.kill(8);
    let mut healed = Duration::ZERO;
    while ring_error(&r, NEIGHBORS).is_some() && healed < Duration::from_secs(60) {
        r.sim.run_for(Duration::from_secs(1));
        healed += Duration::from_secs(1);
    }
    if let Some(e) = ring_error(&r, NEIGHBORS) {
        panic!("after failures, through real cores: {e}");
    }
    check_pings(&mut r, 40, 5);
    println!("real cores: 3 failures and 1 leave healed within {healed:?}");
}

fn start_client(r: &mut Net, i: usize, bootstrap: usize) {
    let now = r.sim.now;
    let addr = r.addrs[bootstrap];
    r.sim.nodes[i]
        .node
        .start(now, Start::Client(vec![(PROTOCOL, addr)]));
    r.sim.after_input(i);
}

/// Pings the Node-ID of `target` from `from`; the responder.
fn ping_node(r: &mut Net, from: usize, target: usize) -> NodeId {
    let dest = Destination::Node(NodeId::from_u128(r.ids[target]));
    ping(r, from, dest)
}

#[test]
fn chord_in_real_cores_concurrent_joins_clients_and_failures() {
    let (peers, clients) = (40usize, 2usize);
    let mut r = cores(peers + clients, 11);
    start(&mut r, 0, None);
    r.sim.run_for(Duration::from_secs(1));
    // Batches of 10 joining within the same instant, each through a random earlier peer.
    for batch in 0..4 {
        for k in 0..10 {
            let i = 1 + batch * 10 + k;
            if i >= peers {
                break;
            }
            let b = (r.ids[i] % (batch * 10 + 1) as u128) as usize;
            start(&mut r, i, Some(b));
        }
        r.sim.run_for(Duration::from_secs(5));
    }
    let peer_ring = |r: &Net| {
        let m: Vec<usize> = live(r).into_iter().filter(|&i| i < peers).collect();
        (m.clone(), ring_error_of(r, &m, NEIGHBORS))
    };
    let mut waited = Duration::ZERO;
    while peer_ring(&r).1.is_some() && waited < Duration::from_secs(120) {
        r.sim.run_for(Duration::from_secs(1));
        waited += Duration::from_secs(1);
    }
    if let Some(e) = peer_ring(&r).1 {
        panic!("concurrent joins through real cores: {e}");
    }
    // Clients attach to the peer responsible for their Node-ID (§4.2.1).
    for c in peers..peers + clients {
        start_client(&mut r, c, 0);
    }
    r.sim.run_for(Duration::from_secs(10));
    let check_clients = |r: &mut Net| {
        let m = peer_ring(r).0;
        for c in peers..peers + clients {
            let pos = m.partition_point(|&i| r.ids[i] < r.ids[c]);
            let want = NodeId::from_u128(r.ids[m[pos % m.len()]]);
            let t = r.sim.nodes[c].node.topology();
            assert!(!t.is_joined());
            assert_eq!(t.neighbor_section("successors"), vec![want], "client {c}");
            // One link, to that peer: the bootstrap link it let go is not reconnected.
            assert_eq!(
                r.sim.nodes[c].node.connected_peers(),
                vec![want],
                "client {c}'s links"
            );
            // Its Node-ID is reachable through its peer.
            let from = m[(c * 7) % m.len()];
            assert_eq!(ping_node(r, from, c), NodeId::from_u128(r.ids[c]));
        }
    };
    check_clients(&mut r);
    // A quarter of the peers fail (never the bootstrap peer of the clients).
    for i in (1..peers).filter(|i| i % 4 == 1) {
        r.sim.kill(i);
    }
    let mut healed = Duration::ZERO;
    while peer_ring(&r).1.is_some() && healed < Duration::from_secs(120) {
        r.sim.run_for(Duration::from_secs(1));
        healed += Duration::from_secs(1);
    }
    if let Some(e) = peer_ring(&r).1 {
        panic!("after 25% failures, through real cores: {e}");
    }
    r.sim.run_for(Duration::from_secs(30));
    check_clients(&mut r);
    let m = peer_ring(&r).0;
    let mut x = 99u64;
    for _ in 0..40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = ((x as u128) << 64) | x.rotate_left(29) as u128;
        let pos = m.partition_point(|&i| r.ids[i] < key);
        let want_i = m[pos % m.len()];
        let from = m[(pos + 1 + (x % 3) as usize) % m.len()];
        assert_eq!(
            ping_resource(&mut r, from, key),
            NodeId::from_u128(r.ids[want_i])
        );
    }
    println!(
        "real cores: {peers} peers in concurrent batches converged {waited:?} after the last batch; \
         {clients} clients on their responsible peers; 25% failures healed within {healed:?}"
    );
}

#[test]
fn a_joining_peer_keeps_trying_its_bootstrap_peer_until_it_is_up() {
    // §11.4: node 1 starts while its bootstrap peer (node 0) is down; its connection
    // fails. Node 0 comes up 20 s later as the first node; node 1 connects again (backing
    // off from 1 s) and joins without being restarted.
    let mut r = cores(2, 9);
    r.sim.kill(0);
    start(&mut r, 1, Some(0));
    r.sim.run_for(Duration::from_secs(20));
    assert!(!r.sim.nodes[1].node.topology().is_joined());
    let failures = r.sim.nodes[1]
        .events
        .iter()
        .filter(|e| matches!(e, Event::LinkDown { .. }))
        .count();
    assert!(
        (3..=6).contains(&failures),
        "tried again with back-off: {failures} attempts in 20 s"
    );
    r.sim.revive(0);
    start(&mut r, 0, None);
    assert!(
        r.sim.run_until(Duration::from_secs(90), |s| {
            s.nodes[1].node.topology().is_joined()
        }),
        "joined once the bootstrap peer was up"
    );
    let mut waited = Duration::ZERO;
    while ring_error(&r, NEIGHBORS).is_some() && waited < Duration::from_secs(30) {
        r.sim.run_for(Duration::from_secs(1));
        waited += Duration::from_secs(1);
    }
    assert_eq!(ring_error(&r, NEIGHBORS), None);
}

#[test]
fn a_peer_that_left_does_not_reconnect_to_its_bootstrap_peer() {
    // §6.4.2.2: once a peer has sent its Leaves it is gone; its bootstrap peer stopping
    // after that must not make it connect again (found in a capture: a peer still
    // lingering connected to its stopped bootstrap peer and got a reset).
    let mut r = cores(3, 21);
    start(&mut r, 0, None);
    r.sim.run_for(Duration::from_secs(1));
    for i in 1..3 {
        start(&mut r, i, Some(0));
        r.sim.run_for(Duration::from_secs(5));
    }
    assert_eq!(ring_error(&r, NEIGHBORS), None);
    let now = r.sim.now;
    r.sim.nodes[1].node.leave(now);
    r.sim.after_input(1);
    r.sim.run_for(Duration::from_millis(500));
    r.sim.kill(0);
    r.sim.nodes[1].events.clear();
    r.sim.run_for(Duration::from_secs(30));
    let reopened: Vec<&Event> = r.sim.nodes[1]
        .events
        .iter()
        .filter(|e| matches!(e, Event::LinkUp { .. } | Event::OpenStream { .. }))
        .collect();
    assert!(reopened.is_empty(), "links after leaving: {reopened:?}");
    let downs = r.sim.nodes[1]
        .events
        .iter()
        .filter(|e| matches!(e, Event::LinkDown { .. }))
        .count();
    assert!(
        downs <= 1,
        "{downs} links went down: connection attempts after leaving"
    );
}
