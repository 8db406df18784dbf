//! Issue 13: an ICE overlay (RFC 6940 §6.5.1.3–§6.5.1.10) of 200 full node cores in the
//! core's simulator, half of them behind simulated NATs ([`reload_proto::sim::NatKind`]).
//!
//! Every node listens with DTLS-UDP-SR over real DTLS links (its own P-256 key), so each
//! Attach carries ICE credentials and candidates; the simulator carries the datagrams
//! through the NATs: a quarter of the nodes sit behind endpoint-independent NATs, a
//! quarter behind port-restricted ones (each node its own NAT, its own public address).
//! The NAT'd nodes learn their server-reflexive addresses from their peers' STUN answers
//! (§6.5.1.4), offer them, and the checks punch through.
//!
//! Asserted: the 200 peers, joining one after the other through public peers, converge
//! to exactly the sorted ring; no ICE session failed; links between NAT'd peers run over
//! ICE pairs with a reflexive remote candidate (a path the NATs opened), printed as a
//! table of candidate types; the NATs did drop unsolicited datagrams (they filter); and
//! 1,000 RouteQuery lookups from random peers are all answered by the responsible peer.
//! Symmetric NATs need a TURN relay, which the simulator has none of: the real NAT lab
//! (`reload-node/cli/tests/nat_lab.rs`, coturn) covers them.

mod pki;
mod simnet;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use reload_nat::ice::CandidateKind;
use reload_proto::node::Start;
use reload_proto::sim::NatKind;
use simnet::*;

const PEERS: usize = 200;
const NEIGHBORS: usize = 5;

fn nat_of(i: usize) -> Option<NatKind> {
    match i % 4 {
        2 => Some(NatKind::EndpointIndependent),
        3 => Some(NatKind::PortRestricted),
        _ => None,
    }
}

fn addr_of(i: usize) -> SocketAddr {
    match nat_of(i) {
        // Public: 198.51.100.0/24 and on (documentation ranges, RFC 5737).
        None => SocketAddr::from(([198, 51, 100 + (i / 250) as u8, (i % 250 + 1) as u8], 6084)),
        // Private, each behind its own NAT.
        Some(_) => SocketAddr::from(([10, (i >> 8) as u8, i as u8, 2], 6084)),
    }
}

#[test]
fn an_ice_overlay_of_200_peers_half_behind_nats_forms_and_routes() {
    // RUST_LOG=warn shows why an ICE session failed.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let seed = 13;
    let mut net = build_ice(seed, random_ids(PEERS, seed), addr_of);
    for i in 0..PEERS {
        if let Some(kind) = nat_of(i) {
            let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, i as u8));
            let nat = net.sim.add_nat(kind, ip);
            net.sim.put_behind(i, nat);
        }
    }
    // Node 0 starts the overlay; every other joins 1 s after the previous, through a
    // random earlier public peer (§11.4: bootstrap peers have public addresses).
    let wall = std::time::Instant::now();
    let now = net.sim.now;
    net.sim.nodes[0].node.start(now, Start::FirstNode);
    net.sim.after_input(0);
    net.sim.run_for(SEC);
    for i in 1..PEERS {
        let public: Vec<usize> = (0..i).filter(|&j| nat_of(j).is_none()).collect();
        let b = public[net.sim.rng.below(public.len() as u64) as usize];
        let now = net.sim.now;
        let boot = vec![(ICE, net.addrs[b])];
        net.sim.nodes[i].node.start(now, Start::Join(boot));
        net.sim.after_input(i);
        net.sim.run_for(SEC);
        if i % 64 == 0 {
            clear_events(&mut net.sim);
        }
        if i % 50 == 0 {
            println!(
                "{i} joined: simulated {:?}, wall {:?}",
                net.sim.elapsed(),
                wall.elapsed()
            );
        }
    }
    let took = converge(&mut net, NEIGHBORS, SEC, 900 * SEC);
    assert!(
        took.is_some(),
        "the ring did not converge: {:?}",
        ring_error(&net, NEIGHBORS)
    );
    println!(
        "200 ICE peers (50 behind EIM NATs, 50 behind port-restricted NATs): ring exact \
         {:?} after the last join",
        took.unwrap()
    );

    // Links over ICE pairs, by candidate types (local → remote), and whether both ends
    // are behind NATs.
    let mut table: BTreeMap<(bool, String), usize> = BTreeMap::new();
    let mut failed = 0;
    let by_id: BTreeMap<_, _> = (0..PEERS)
        .map(|i| (net.sim.nodes[i].node.node_id(), i))
        .collect();
    for i in 0..PEERS {
        let node = &net.sim.nodes[i].node;
        failed += node.stats().ice_failed;
        for l in node.links().iter().filter(|l| l.established) {
            let (Some(ice), Some(peer)) = (&l.ice, l.peer) else {
                continue;
            };
            let j = by_id[&peer];
            let both = nat_of(i).is_some() && nat_of(j).is_some();
            *table
                .entry((both, format!("{}→{}", ice.local.kind, ice.remote.kind)))
                .or_default() += 1;
            if both && nat_of(i) == Some(NatKind::PortRestricted) {
                assert!(
                    matches!(
                        ice.remote.kind,
                        CandidateKind::ServerReflexive | CandidateKind::PeerReflexive
                    ),
                    "node {i} (behind a port-restricted NAT) reaches NAT'd node {j} over \
                     {ice:?}: only a reflexive address crosses its NAT"
                );
            }
        }
    }
    println!("links over ICE pairs (link ends, local→remote candidate types):");
    for ((both, types), n) in &table {
        let who = if *both {
            "NAT'd ↔ NAT'd"
        } else {
            "with a public peer"
        };
        println!("   {who:<20} {types:<14} {n}");
    }
    let natted_pairs: usize = table
        .iter()
        .filter(|((both, _), _)| *both)
        .map(|(_, n)| n)
        .sum();
    assert!(
        natted_pairs >= 50,
        "only {natted_pairs} link ends between NAT'd peers"
    );
    assert_eq!(failed, 0, "ICE sessions failed");
    assert!(net.sim.nat_dropped > 0, "the NATs never filtered anything");
    println!(
        "NATs dropped {} unsolicited datagrams; simulated time {:?}",
        net.sim.nat_dropped,
        net.sim.elapsed()
    );

    // Routing works from everywhere: lookups from random peers (NAT'd ones included).
    let l = lookups(&mut net, 1000, 50, seed ^ 0x1ce);
    assert_eq!(l.count, 1000);
}
