//! The topology seam admits a non-ring topology (RFC 6940 §5.3): full node cores running
//! the XOR-TEST plug-in (Kademlia-like XOR distance, `reload_proto::topology::xor`), picked
//! by the configuration's `topology-plugin` from a registry, route as the core's routing
//! tests expect — Pings reach their target Node-ID over several hops, a request for a
//! Resource-ID is answered by the node closest to it, answers come back along the via
//! list, and only a node the plug-in accepts may answer for a Resource-ID (§6.3.4).

mod pki;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use pki::TestCa;
use reload_proto::link::WallAnchor;
use reload_proto::link::plain::PlainLinks;
use reload_proto::node::{Event, Node, NodeParts, NodeSettings, RequestError, Start};
use reload_proto::overlay::Overlay;
use reload_proto::rand::{Prng, Seed};
use reload_proto::sim::{Sim, SimNetwork};
use reload_proto::topology::{Topologies, TopologyContext, TopologyError, xor};
use reload_wire::body::MessageBody;
use reload_wire::link::{OverlayLinkType, PingReq};
use reload_wire::{Destination, NodeId, ResourceId};

const PROTOCOL: OverlayLinkType = OverlayLinkType::TLS_TCP_FH_NO_ICE;

struct Net {
    sim: Sim,
    ids: Vec<u128>,
}

fn registry() -> Topologies {
    let mut t = Topologies::default();
    t.register(xor::NAME, xor::Xor::plugin);
    t
}

/// `n` XOR-TEST nodes joined one after another through node 0.
fn overlay(n: usize, seed: u64, net: SimNetwork) -> Net {
    let ca = TestCa::new(false);
    let mut config = ca.config();
    config.topology_plugin = xor::NAME.to_string();
    let overlay = Overlay::new(config, None);
    let mut sim = Sim::new(seed, net);
    let anchor = WallAnchor::new(sim.now, SystemTime::now());
    let mut rng = Prng::new(seed);
    let ids: Vec<u128> = (0..n).map(|_| rng.next_u128() | 1).collect();
    let topologies = registry();
    for (i, &id) in ids.iter().enumerate() {
        let addr = SocketAddr::from(([10, 1, 0, i as u8], 6084));
        let creds = ca.node(false, id, &format!("user{i}"));
        let topology = topologies
            .build(&TopologyContext {
                node_id: creds.node_id,
                overlay: &overlay,
            })
            .unwrap();
        let parts = NodeParts {
            settings: NodeSettings::new(vec![(PROTOCOL, addr)]),
            overlay: overlay.clone(),
            links: Box::new(PlainLinks::new(&creds.cert, &overlay, anchor)),
            credentials: creds,
            topology,
        };
        let node = Node::new(
            parts,
            sim.now,
            anchor.wall,
            Seed::from_u64(seed ^ id as u64),
        );
        sim.add(node, addr);
    }
    let first = sim.nodes[0].addr;
    for i in 0..n {
        let now = sim.now;
        let start = if i == 0 {
            Start::FirstNode
        } else {
            Start::Join(vec![(PROTOCOL, first)])
        };
        sim.nodes[i].node.start(now, start);
        sim.after_input(i);
        sim.run_for(Duration::from_millis(500));
    }
    sim.run_for(Duration::from_secs(5));
    Net { sim, ids }
}

/// The node whose ID is closest to `key` by XOR.
fn closest(net: &Net, key: u128) -> usize {
    (0..net.ids.len())
        .min_by_key(|&i| net.ids[i] ^ key)
        .unwrap()
}

/// Pings `to` from node `from`: who answered, and how many links the request crossed.
fn ping_hops(net: &mut Net, from: usize, to: Destination) -> (Result<NodeId, RequestError>, u32) {
    let now = net.sim.now;
    let body = MessageBody::PingReq(PingReq::default());
    let tx = net.sim.nodes[from]
        .node
        .send_request(now, vec![to], body)
        .unwrap();
    net.sim.watch(tx);
    net.sim.after_input(from);
    let answered = net.sim.run_until(Duration::from_secs(20), |s| {
        s.nodes[from]
            .events
            .iter()
            .any(|e| matches!(e, Event::Response { transaction_id, .. } if *transaction_id == tx))
    });
    assert!(answered, "no answer to the ping from node {from}");
    let k = net.sim.nodes[from]
        .events
        .iter()
        .position(|e| matches!(e, Event::Response { transaction_id, .. } if *transaction_id == tx))
        .unwrap();
    let hops = net.sim.unwatch(tx).map_or(0, |(req, _)| req);
    match net.sim.nodes[from].events.remove(k) {
        Event::Response { result, .. } => (result.map(|(who, _)| who), hops),
        _ => unreachable!(),
    }
}

fn ping(net: &mut Net, from: usize, to: Destination) -> Result<NodeId, RequestError> {
    ping_hops(net, from, to).0
}

#[test]
fn the_configuration_picks_the_plugin_and_an_unknown_one_is_refused_clearly() {
    let ca = TestCa::new(false);
    let mut config = ca.config();
    config.topology_plugin = xor::NAME.to_string();
    let overlay = Overlay::new(config, None);
    let cx = TopologyContext {
        node_id: NodeId::from_u128(7),
        overlay: &overlay,
    };
    assert!(registry().build(&cx).is_ok());
    match Topologies::default().build(&cx) {
        Err(e @ TopologyError::Unknown { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("XOR-TEST") && text.contains("CHORD-RELOAD"),
                "{text}"
            );
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("XOR-TEST is not a default plug-in"),
    }
}

#[test]
fn an_xor_overlay_routes_to_targets_and_to_the_closest_node() {
    let n = 24;
    let mut net = overlay(n, 0x0c0a, SimNetwork::default());
    assert!(
        net.sim.nodes.iter().all(|s| s.node.topology().is_joined()),
        "every node joined"
    );
    // Few links per node (one per bucket), so most paths take several hops.
    let links: usize = net
        .sim
        .nodes
        .iter()
        .map(|s| s.node.connected_peers().len())
        .sum();
    assert!(links < n * (n - 1), "not a full mesh ({links} link ends)");
    // Drops while the overlay formed are no concern; once formed, none.
    let before: Vec<_> = net
        .sim
        .nodes
        .iter()
        .map(|s| s.node.stats().clone())
        .collect();
    let mut rng = Prng::new(99);
    let mut multi_hop = 0;
    for k in 0..60 {
        let from = rng.below(n as u64) as usize;
        // A Node-ID target, then a Resource-ID one.
        let to = (from + 1 + rng.below(n as u64 - 1) as usize) % n;
        let target = NodeId::from_u128(net.ids[to]);
        let (who, hops) = ping_hops(&mut net, from, Destination::Node(target));
        assert_eq!(who, Ok(target));
        if hops >= 2 {
            multi_hop += 1;
        }
        let key = rng.next_u128();
        let want = NodeId::from_u128(net.ids[closest(&net, key)]);
        let dest = Destination::Resource(ResourceId::new(key.to_be_bytes().to_vec()));
        assert_eq!(
            ping(&mut net, from, dest),
            Ok(want),
            "lookup {k}: key {key:032x} from node {from}"
        );
    }
    assert!(
        multi_hop >= 10,
        "only {multi_hop} of 60 pings crossed more than one link"
    );
    for (i, s) in net.sim.nodes.iter().enumerate() {
        let (st, b) = (s.node.stats(), &before[i]);
        assert_eq!(
            (st.wrong_responder, st.dropped_no_route, st.retransmissions),
            (b.wrong_responder, b.dropped_no_route, b.retransmissions),
            "node {i}: {st:?}"
        );
    }
}

#[test]
fn an_xor_overlay_recovers_lost_messages_end_to_end() {
    let net_cfg = SimNetwork {
        loss: 0.1,
        ..SimNetwork::default()
    };
    let mut net = overlay(12, 0x0c0b, net_cfg);
    let mut ok = 0;
    for k in 0..20 {
        let (from, to) = (k % 12, (k * 5 + 3) % 12);
        if from == to {
            continue;
        }
        let target = NodeId::from_u128(net.ids[to]);
        if ping(&mut net, from, Destination::Node(target)) == Ok(target) {
            ok += 1;
        }
    }
    assert!(ok >= 16, "{ok} of the pings got through 10 % loss");
}
