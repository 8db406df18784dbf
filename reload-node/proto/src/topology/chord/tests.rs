//! Unit tests of CHORD-RELOAD: ring arithmetic, responsibility, routing decisions,
//! finger targets, Update/Leave handling edge cases, the join and admission sequences,
//! failure handling, partition detection, clients, timers, and bounded state under
//! hostile input.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reload_wire::chord::{
    ChordLeaveData, ChordRouteQueryAns, ChordUpdate, ChordUpdateBody, ChordUpdateType,
};
use reload_wire::{DecodeOptions, Destination, ErrorCode, NodeId, ResourceId, Wire};

use super::ring::*;
use super::*;
use crate::rand::Prng;

// ----- helpers -----

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn t(secs: f64) -> Instant {
    base() + Duration::from_secs_f64(secs)
}

fn nid(v: u128) -> NodeId {
    NodeId::from_u128(v)
}

fn res(v: u128) -> Destination {
    Destination::Resource(ResourceId::new(Bytes::copy_from_slice(&v.to_be_bytes())))
}

fn settings(r: usize) -> ChordSettings {
    ChordSettings {
        node_id_len: 16,
        update_interval: Duration::from_secs(60),
        ping_interval: Duration::from_secs(300),
        reactive: true,
        neighbor_list_size: r,
        max_fingers: 16,
        request_timeout: Duration::from_secs(3),
    }
}

fn drain(c: &mut Chord) -> Vec<TopologyAction> {
    let mut v = Vec::new();
    while let Some(a) = c.poll_action() {
        v.push(a);
        assert!(v.len() < 100_000, "action flood");
    }
    v
}

fn neighbors(preds: &[u128], succs: &[u128]) -> Bytes {
    ChordUpdate {
        uptime: 1,
        body: ChordUpdateBody::Neighbors {
            predecessors: preds.iter().map(|&v| nid(v)).collect(),
            successors: succs.iter().map(|&v| nid(v)).collect(),
        },
    }
    .to_bytes()
    .unwrap()
}

fn full(preds: &[u128], succs: &[u128], fingers: &[u128]) -> Bytes {
    ChordUpdate {
        uptime: 1,
        body: ChordUpdateBody::Full {
            predecessors: preds.iter().map(|&v| nid(v)).collect(),
            successors: succs.iter().map(|&v| nid(v)).collect(),
            fingers: fingers.iter().map(|&v| nid(v)).collect(),
        },
    }
    .to_bytes()
    .unwrap()
}

fn peer_ready() -> Bytes {
    ChordUpdate {
        uptime: 0,
        body: ChordUpdateBody::PeerReady,
    }
    .to_bytes()
    .unwrap()
}

fn decode(body: &Bytes) -> ChordUpdate {
    ChordUpdate::decode(body, &DecodeOptions::default()).unwrap()
}

/// A first node `me` whose live peers are `peers` (each linked and announced with
/// peer_ready). Returns the plug-in with its actions drained.
fn joined_with(me: u128, peers: &[u128], r: usize) -> Chord {
    let mut c = Chord::new(nid(me), settings(r));
    c.start(t(0.0), StartMode::FirstNode);
    for &p in peers {
        c.handle(t(0.1), TopologyInput::LinkUp { peer: nid(p) })
            .unwrap();
        c.handle(
            t(0.1),
            TopologyInput::Update {
                from: nid(p),
                body: peer_ready(),
            },
        )
        .unwrap();
    }
    drain(&mut c);
    c
}

fn all(_: &NodeId) -> bool {
    true
}

fn attaches(actions: &[TopologyAction]) -> Vec<(Destination, Option<NodeId>, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            TopologyAction::Attach {
                target,
                via,
                send_update,
            } => Some((target.clone(), *via, *send_update)),
            _ => None,
        })
        .collect()
}

fn updates_to(actions: &[TopologyAction]) -> Vec<(NodeId, ChordUpdate)> {
    actions
        .iter()
        .filter_map(|a| match a {
            TopologyAction::SendUpdate { to, body } => Some((*to, decode(body))),
            _ => None,
        })
        .collect()
}

const M: u128 = u128::MAX;

// ----- ring arithmetic -----

#[test]
fn positions_pad_and_truncate() {
    assert_eq!(pos(&[0x01]), 1u128 << 120);
    assert_eq!(pos(&7u128.to_be_bytes()), 7);
    let mut long = 5u128.to_be_bytes().to_vec();
    long.extend([0xff; 4]);
    assert_eq!(pos(&long), 5, "20-byte IDs use their top 128 bits");
    assert_eq!(pos(&[]), 0);
}

#[test]
fn distances_wrap_modulo_2_128() {
    assert_eq!(dist(10, 15), 5);
    assert_eq!(dist(15, 10), M - 4);
    assert_eq!(dist(M, 0), 1);
    assert_eq!(dist(0, M), M);
    assert_eq!(dist(42, 42), 0);
}

#[test]
fn half_open_intervals() {
    // (a, b]: a excluded, b included.
    assert!(!in_open_closed(10, 10, 20));
    assert!(in_open_closed(11, 10, 20));
    assert!(in_open_closed(20, 10, 20));
    assert!(!in_open_closed(21, 10, 20));
    // Wrapping: (M-5, 5].
    assert!(in_open_closed(M, M - 5, 5));
    assert!(in_open_closed(0, M - 5, 5));
    assert!(in_open_closed(5, M - 5, 5));
    assert!(!in_open_closed(6, M - 5, 5));
    assert!(!in_open_closed(M - 5, M - 5, 5));
    // (a, a] is everything: a lone node owns the ring.
    for x in [0, 1, 77, M] {
        assert!(in_open_closed(x, 77, 77));
    }
    // (a, b) open.
    assert!(!in_open(20, 10, 20));
    assert!(in_open(19, 10, 20));
    assert!(!in_open(10, 10, 20));
    assert!(in_open(0, M, 1) && !in_open(1, M, 1));
    assert!(in_open(3, 7, 7) && !in_open(7, 7, 7));
}

#[test]
fn finger_targets_and_intervals() {
    let me = 1000u128;
    assert_eq!(
        finger_start(me, 1),
        me + (1 << 127),
        "finger 1 is half-way round"
    );
    assert_eq!(finger_start(me, 2), me + (1 << 126));
    assert_eq!(finger_start(me, 128), me + 1);
    // Finger 1 ends just before us.
    assert_eq!(finger_interval(me, 1), (me + (1 << 127), me - 1));
    assert_eq!(
        finger_interval(me, 2),
        (me + (1 << 126), me + (1 << 127) - 1)
    );
    assert_eq!(finger_interval(me, 128), (me + 1, me + 1));
    // Wrapping near the top of the ring.
    let hi = M - 3;
    assert_eq!(finger_start(hi, 126), 0, "M - 3 + 4 wraps round to 0");
    // Slots invert intervals.
    for i in [1usize, 2, 17, 64, 127, 128] {
        let (lo, up) = finger_interval(me, i);
        assert_eq!(finger_slot(dist(me, lo)), Some(i));
        assert_eq!(finger_slot(dist(me, up)), Some(i));
    }
    assert_eq!(finger_slot(0), None);
    assert_eq!(finger_slot(1), Some(128));
    assert_eq!(finger_slot(1 << 127), Some(1));
    assert_eq!(finger_slot((1 << 127) - 1), Some(2));
    // Random points stay inside their interval (§10.7.4.2).
    let mut rng = Prng::new(9);
    for i in 1..=128usize {
        for _ in 0..20 {
            let x = random_in_finger(me, i, rng.next_u128());
            assert_eq!(finger_slot(dist(me, x)), Some(i), "finger {i}");
        }
    }
}

#[test]
fn lone_first_node_is_responsible_for_everything() {
    let mut c = Chord::new(nid(500), settings(3));
    assert!(!c.is_joined());
    assert_eq!(c.next_hop(nid(7).as_bytes(), &all), NextHop::None);
    c.start(t(0.0), StartMode::FirstNode);
    let acts = drain(&mut c);
    assert!(acts.contains(&TopologyAction::Joined));
    assert!(c.is_joined());
    for k in [0u128, 1, 499, 500, 501, M] {
        assert!(c.is_responsible(&ResourceId::new(Bytes::copy_from_slice(&k.to_be_bytes()))));
        assert_eq!(
            c.next_hop(&k.to_be_bytes(), &all),
            NextHop::Local,
            "key {k}"
        );
    }
    assert_eq!(c.responsible_ppb(), 1_000_000_000);
    assert!(c.successors().is_empty() && c.predecessors().is_empty());
    assert!(
        c.replica_set(&ResourceId::new(bytes::Bytes::from(vec![0u8; 16])))
            .is_empty()
    );
}

#[test]
fn responsibility_is_pred_exclusive_me_inclusive() {
    let c = joined_with(1000, &[400, 3000], 3);
    assert_eq!(c.predecessors()[0], nid(400));
    let is = |k: u128| c.is_responsible(&ResourceId::new(Bytes::copy_from_slice(&k.to_be_bytes())));
    assert!(!is(400));
    assert!(is(401));
    assert!(is(1000));
    assert!(!is(1001));
    assert!(!is(3000));
    // A quarter of the ring: 600 / 2^128 of it here, nearly nothing.
    assert_eq!(c.responsible_ppb(), 0);
    let half = joined_with(1u128 << 127, &[0x10], 3);
    let ppb = half.responsible_ppb();
    assert!((499_999_990..=500_000_000).contains(&ppb), "{ppb}");
}

#[test]
fn replica_stores_come_from_neighbours_or_a_peer_that_just_joined_next_to_us() {
    // §7.4.1.1, §10.4: predecessors 900 and 800 (and 700), successors 2000, 3000.
    let c = joined_with(1000, &[700, 800, 900, 2000, 3000], 3);
    assert_eq!(c.predecessors()[..2], [nid(900), nid(800)]);
    let r = |k: u128| ResourceId::new(Bytes::copy_from_slice(&k.to_be_bytes()));
    // R = 850 is 900's: we are its first replica.
    assert!(c.accepts_replica_from(&nid(900), &r(850)));
    assert!(
        c.accepts_replica_from(&nid(2000), &r(850)),
        "a successor handing back"
    );
    // 870 joined between 800 and 900; its Update has not reached us: it is plausible.
    assert!(c.accepts_replica_from(&nid(870), &r(850)));
    assert!(c.accepts_replica_from(&nid(950), &r(850)));
    // Further away, or for a Resource-ID we hold nothing of: refused.
    assert!(!c.accepts_replica_from(&nid(750), &r(850)));
    assert!(!c.accepts_replica_from(&nid(2500), &r(850)));
    assert!(!c.accepts_replica_from(&nid(900), &r(1500)));
}

#[test]
fn responsibility_wraps_around_zero() {
    // We are the lowest node: our range wraps from the highest one.
    let c = joined_with(5, &[M - 10, 1000], 3);
    assert_eq!(c.predecessors()[0], nid(M - 10));
    let is = |k: u128| c.is_responsible(&ResourceId::new(Bytes::copy_from_slice(&k.to_be_bytes())));
    assert!(is(M - 9) && is(M) && is(0) && is(5));
    assert!(!is(M - 10) && !is(6) && !is(1000));
}

// ----- routing -----

#[test]
fn routes_to_closest_preceding_peer() {
    // Peers at me+10, +20, +40, +80 and one behind us.
    let me = 1u128 << 100;
    let peers = [me + 10, me + 20, me + 40, me + 80, me - 50];
    let c = joined_with(me, &peers, 3);
    let linked = |n: &NodeId| peers.iter().any(|&p| nid(p) == *n);
    let hop = |k: u128| c.next_hop(&k.to_be_bytes(), &linked);
    // Between peers: the largest Node-ID in (me, k).
    assert_eq!(hop(me + 50), NextHop::Peer(nid(me + 40)));
    assert_eq!(hop(me + 79), NextHop::Peer(nid(me + 40)));
    assert_eq!(hop(me + 21), NextHop::Peer(nid(me + 20)));
    // In (me, succ]: nothing precedes k, so the smallest Node-ID after k: the successor.
    assert_eq!(hop(me + 5), NextHop::Peer(nid(me + 10)));
    // Exactly a peer's ID: it is directly connected (§10.3).
    assert_eq!(hop(me + 80), NextHop::Peer(nid(me + 80)));
    // Far away: the farthest table entry before k (here the predecessor, behind us).
    assert_eq!(hop(me - 60), NextHop::Peer(nid(me + 80)));
    // Ours: (pred, me].
    assert_eq!(hop(me - 49), NextHop::Local);
    assert_eq!(hop(me), NextHop::Local);
}

#[test]
fn routing_skips_unconnected_peers_and_prefers_direct_links() {
    let me = 1u128 << 100;
    let c = joined_with(me, &[me + 10, me + 20, me + 40, me - 50], 3);
    let not40 = |n: &NodeId| [me + 10, me + 20, me - 50].iter().any(|&p| nid(p) == *n);
    assert_eq!(
        c.next_hop(&(me + 50).to_be_bytes(), &not40),
        NextHop::Peer(nid(me + 20))
    );
    // A node not in the routing table but directly connected, with exactly the ID:
    // "directly connected to a node with Node-ID k → MUST route to that node".
    let stranger = me + 30;
    let only = |n: &NodeId| *n == nid(stranger) || *n == nid(me + 10);
    assert_eq!(
        c.next_hop(&stranger.to_be_bytes(), &only),
        NextHop::Peer(nid(stranger))
    );
    // Nothing connected: no route.
    assert_eq!(
        c.next_hop(&(me + 50).to_be_bytes(), &|_: &NodeId| false),
        NextHop::None
    );
    // Our own ID is always ours.
    assert_eq!(
        c.next_hop(nid(me).as_bytes(), &|_: &NodeId| false),
        NextHop::Local
    );
}

#[test]
fn route_query_answers() {
    let me = 1u128 << 100;
    let peers = [me + 10, me + 40, me - 50];
    let c = joined_with(me, &peers, 3);
    let linked = |n: &NodeId| peers.iter().any(|&p| nid(p) == *n);
    let ans = |d: &Destination| {
        c.route_query_answer(d, &linked).map(|b| {
            ChordRouteQueryAns::decode(&b, &DecodeOptions::default())
                .unwrap()
                .next_peer
        })
    };
    assert_eq!(ans(&res(me + 50)), Ok(nid(me + 40)));
    assert_eq!(
        ans(&res(me)),
        Ok(nid(me)),
        "responsible: we would take it ourselves"
    );
    assert_eq!(ans(&Destination::Node(nid(me + 10))), Ok(nid(me + 10)));
    assert_eq!(
        c.route_query_answer(&Destination::OpaqueId(Bytes::from_static(b"x")), &all),
        Err(ErrorCode::INVALID_MESSAGE)
    );
    let fresh = Chord::new(nid(3), settings(3));
    assert_eq!(
        fresh.route_query_answer(&res(1), &all),
        Err(ErrorCode::NOT_FOUND)
    );
}

// ----- Update handling -----

#[test]
fn bad_update_bodies_are_invalid_messages() {
    let mut c = joined_with(1000, &[400, 3000], 3);
    let before = (c.successors(), c.predecessors());
    let mut unknown = vec![0, 0, 0, 1, 9];
    unknown.extend([1, 2, 3]);
    let mut wrong_len = neighbors(&[1], &[2]).to_vec();
    wrong_len.push(0);
    let cases: Vec<Bytes> = vec![
        Bytes::new(),
        Bytes::from_static(&[0, 0, 0]),
        Bytes::from_static(&[0, 0, 0, 1, 0]), // type 0: invalid
        Bytes::from(unknown),                 // unknown type
        Bytes::from_static(&[0, 0, 0, 1, 2, 0, 16, 1, 2]), // truncated list
        Bytes::from(wrong_len),               // trailing byte
        Bytes::from_static(&[0, 0, 0, 1, 2, 0, 3, 1, 2, 3, 0, 0]), // list not whole IDs
    ];
    for body in cases {
        let r = c.handle(
            t(1.0),
            TopologyInput::Update {
                from: nid(3000),
                body: body.clone(),
            },
        );
        assert_eq!(r, Err(ErrorCode::INVALID_MESSAGE), "{body:?}");
    }
    assert_eq!((c.successors(), c.predecessors()), before);
    assert!(attaches(&drain(&mut c)).is_empty());
    // An Update that claims to come from ourselves.
    let r = c.handle(
        t(1.0),
        TopologyInput::Update {
            from: nid(1000),
            body: peer_ready(),
        },
    );
    assert_eq!(r, Err(ErrorCode::INVALID_MESSAGE));
}

#[test]
fn update_lists_ignore_self_zero_wildcard_and_known_peers() {
    let mut c = joined_with(1000, &[400, 3000], 3);
    let body = neighbors(&[1000, 0, 400], &[M, 1000, 3000]);
    c.handle(
        t(1.0),
        TopologyInput::Update {
            from: nid(3000),
            body,
        },
    )
    .unwrap();
    assert!(
        attaches(&drain(&mut c)).is_empty(),
        "nothing new in that list"
    );
}

#[test]
fn reported_nodes_join_the_table_only_when_live_peers() {
    let mut c = joined_with(1000, &[400, 3000], 3);
    // 3000 reports 2000, closer than it: Attach through 3000 (§10.6), send_update.
    c.handle(
        t(1.0),
        TopologyInput::Update {
            from: nid(3000),
            body: neighbors(&[1000, 2000], &[5000]),
        },
    )
    .unwrap();
    let a = attaches(&drain(&mut c));
    assert!(
        a.contains(&(Destination::Node(nid(2000)), Some(nid(3000)), true)),
        "{a:?}"
    );
    assert!(
        a.contains(&(Destination::Node(nid(5000)), Some(nid(3000)), true)),
        "{a:?}"
    );
    assert_eq!(
        c.successors(),
        vec![nid(3000), nid(400)],
        "not adopted on hearsay"
    );
    // The Attach is answered and the link comes up: still not a peer.
    c.handle(
        t(1.5),
        TopologyInput::AttachAnswered {
            target: Destination::Node(nid(2000)),
            peer: nid(2000),
        },
    )
    .unwrap();
    c.handle(t(1.5), TopologyInput::LinkUp { peer: nid(2000) })
        .unwrap();
    assert_eq!(c.successors()[0], nid(3000));
    // Its Update (send_update) makes it a live peer: it becomes our successor.
    c.handle(
        t(1.6),
        TopologyInput::Update {
            from: nid(2000),
            body: full(&[1000], &[3000, 5000], &[]),
        },
    )
    .unwrap();
    assert_eq!(c.successors()[..2], [nid(2000), nid(3000)]);
    let acts = drain(&mut c);
    assert!(acts.contains(&TopologyAction::NeighborsChanged));
    // Reactive: an Update to every neighbour, none listing ourselves.
    let ups = updates_to(&acts);
    for n in [2000u128, 3000, 400] {
        assert!(ups.iter().any(|(to, _)| *to == nid(n)), "no Update to {n}");
    }
    for (_, u) in &ups {
        if let ChordUpdateBody::Neighbors {
            predecessors,
            successors,
        } = &u.body
        {
            assert!(!predecessors.contains(&nid(1000)) && !successors.contains(&nid(1000)));
        }
    }
}

#[test]
fn failed_attach_never_becomes_a_successor() {
    let mut c = joined_with(1000, &[400, 3000], 3);
    c.handle(
        t(1.0),
        TopologyInput::Update {
            from: nid(3000),
            body: neighbors(&[2000], &[]),
        },
    )
    .unwrap();
    drain(&mut c);
    c.handle(
        t(4.0),
        TopologyInput::AttachFailed {
            target: Destination::Node(nid(2000)),
            error: None,
        },
    )
    .unwrap();
    assert_eq!(c.successors()[0], nid(3000));
    // Reported again right away: not retried during the back-off.
    c.handle(
        t(4.5),
        TopologyInput::Update {
            from: nid(3000),
            body: neighbors(&[2000], &[]),
        },
    )
    .unwrap();
    assert!(attaches(&drain(&mut c)).is_empty());
}

#[test]
fn a_failed_neighbour_attach_gives_its_place_to_the_next_candidate_at_once() {
    // 1200 reports 1300 and 1400. With r = 3, the pending Attach to 1300 counts as a
    // would-be successor, so 1400 (fourth) is not attached to yet.
    let mut c = joined_with(1000, &[700, 800, 900, 1100, 1200], 3);
    c.handle(
        t(1.0),
        TopologyInput::Update {
            from: nid(1200),
            body: neighbors(&[1100, 1000], &[1300, 1400]),
        },
    )
    .unwrap();
    let first = attaches(&drain(&mut c));
    assert!(
        first
            .iter()
            .any(|(d, _, _)| *d == Destination::Node(nid(1300))),
        "{first:?}"
    );
    assert!(
        !first
            .iter()
            .any(|(d, _, _)| *d == Destination::Node(nid(1400))),
        "{first:?}"
    );
    // 1300 never answers (it died; its reporter 1200 is still up): 1400 is attached to
    // right away, not only when the back-off from 1300 ends (2 · request timeout).
    c.handle(
        t(4.0),
        TopologyInput::AttachFailed {
            target: Destination::Node(nid(1300)),
            error: None,
        },
    )
    .unwrap();
    let next = attaches(&drain(&mut c));
    assert!(
        next.iter()
            .any(|(d, v, _)| *d == Destination::Node(nid(1400)) && *v == Some(nid(1200))),
        "{next:?}"
    );
    assert!(
        !next
            .iter()
            .any(|(d, _, _)| *d == Destination::Node(nid(1300))),
        "the failed candidate is backed off: {next:?}"
    );
}

#[test]
fn an_attach_refused_in_progress_is_retried_soon_and_one_lost_with_its_reporter_at_once() {
    let settings_rt = settings(3).request_timeout;
    // Error_In_Progress (§6.5.1.2): the other side is attaching to us, or its Attach is
    // lost and gives up within a request lifetime: look again after rt/5, not 2·rt.
    let mut c = joined_with(1000, &[400, 3000], 3);
    c.handle(
        t(1.0),
        TopologyInput::Update {
            from: nid(3000),
            body: neighbors(&[2000], &[]),
        },
    )
    .unwrap();
    drain(&mut c);
    c.handle(
        t(2.0),
        TopologyInput::AttachFailed {
            target: Destination::Node(nid(2000)),
            error: Some(ErrorCode::IN_PROGRESS),
        },
    )
    .unwrap();
    let soon = t(2.0) + settings_rt / 5 + Duration::from_millis(10);
    let mut now = t(2.0);
    let mut again = None;
    while now <= soon {
        let Some(next) = c.poll_timeout() else { break };
        if next > soon {
            break;
        }
        now = next.max(now);
        c.handle_timeout(now);
        if attaches(&drain(&mut c))
            .iter()
            .any(|(d, _, _)| *d == Destination::Node(nid(2000)))
        {
            again = Some(now);
            break;
        }
    }
    assert!(
        again.is_some(),
        "attached again within rt/5 of Error_In_Progress"
    );

    // An Attach sent through a reporter that has died since: retried at once, without it.
    let mut c = joined_with(1000, &[400, 3000], 3);
    c.handle(
        t(1.0),
        TopologyInput::Update {
            from: nid(3000),
            body: neighbors(&[2000], &[]),
        },
    )
    .unwrap();
    let first = attaches(&drain(&mut c));
    assert!(
        first
            .iter()
            .any(|(d, v, _)| *d == Destination::Node(nid(2000)) && *v == Some(nid(3000))),
        "{first:?}"
    );
    // 400 reports it too (later): the retry may go through 400 or be routed.
    c.handle(
        t(1.5),
        TopologyInput::Update {
            from: nid(400),
            body: neighbors(&[1000, 2000], &[]),
        },
    )
    .unwrap();
    drain(&mut c);
    c.handle(t(2.0), TopologyInput::LinkDown { peer: nid(3000) })
        .unwrap();
    drain(&mut c);
    c.handle(
        t(2.0),
        TopologyInput::AttachFailed {
            target: Destination::Node(nid(2000)),
            error: None,
        },
    )
    .unwrap();
    let retry = attaches(&drain(&mut c));
    assert!(
        retry
            .iter()
            .any(|(d, v, _)| *d == Destination::Node(nid(2000)) && *v != Some(nid(3000))),
        "{retry:?}"
    );
}

#[test]
fn predecessor_is_replaced_only_by_a_closer_live_node() {
    // Zave's rectify: the predecessor changes only for a live node between it and us.
    let mut c = joined_with(1000, &[800, 3000], 3);
    assert_eq!(c.predecessors()[0], nid(800));
    for (p, first) in [(500u128, 800u128), (900, 900), (850, 900)] {
        c.handle(t(1.0), TopologyInput::LinkUp { peer: nid(p) })
            .unwrap();
        c.handle(
            t(1.0),
            TopologyInput::Update {
                from: nid(p),
                body: neighbors(&[], &[1000]),
            },
        )
        .unwrap();
        assert_eq!(c.predecessors()[0], nid(first), "after {p}");
    }
    assert_eq!(c.predecessors(), vec![nid(900), nid(850), nid(800)]);
    // Confirmed dead: the next live one takes over.
    c.handle(t(2.0), TopologyInput::LinkDown { peer: nid(900) })
        .unwrap();
    assert_eq!(c.predecessors()[0], nid(850));
}

#[test]
fn long_lists_are_cut_and_attaches_bounded() {
    let mut c = joined_with(1u128 << 120, &[3u128 << 120], 3);
    let many: Vec<u128> = (1..=3000u128).map(|k| (1u128 << 120) + k).collect();
    let body = neighbors(&many[..1500], &many[1500..]);
    c.handle(
        t(1.0),
        TopologyInput::Update {
            from: nid(3 << 120),
            body,
        },
    )
    .unwrap();
    let a = attaches(&drain(&mut c));
    assert!(!a.is_empty());
    assert!(a.len() <= c.pending_cap(), "{} attaches", a.len());
    assert!(c.pending.len() <= c.pending_cap());
    // Only nodes among the first entries of each list were considered.
    let cap = c.list_cap() as u128;
    for (d, _, _) in &a {
        if let Destination::Node(n) = d {
            let k = n.as_u128().unwrap() - (1u128 << 120);
            assert!(k <= cap || (1500..=1500 + cap).contains(&k), "{k}");
        }
    }
}

#[test]
fn update_requested_gets_a_full_update() {
    let mut c = joined_with(1000, &[400, 3000], 3);
    c.handle(t(1.0), TopologyInput::UpdateRequested { from: nid(3000) })
        .unwrap();
    let ups = updates_to(&drain(&mut c));
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].0, nid(3000));
    assert_eq!(ups[0].1.update_type(), ChordUpdateType::FULL);
    assert_eq!(ups[0].1.uptime, 1);
    // Not linked: nothing sent.
    c.handle(t(1.0), TopologyInput::UpdateRequested { from: nid(77) })
        .unwrap();
    assert!(updates_to(&drain(&mut c)).is_empty());
}

// ----- joining (§10.5) -----

const ME: u128 = 1u128 << 100;

/// A joining node at ME with bootstrap peer B; the admitting peer AP = ME + 100
/// reports predecessors ME-10, -20, -30 and successors ME+200, +300, +400.
fn joining() -> (Chord, Vec<TopologyAction>) {
    let mut c = Chord::new(nid(ME), settings(3));
    c.start(
        t(0.0),
        StartMode::Join {
            bootstrap: vec![nid(7)],
        },
    );
    let acts = drain(&mut c);
    (c, acts)
}

#[test]
fn join_sequence_waits_for_every_neighbour_attach() {
    let (mut c, acts) = joining();
    let mut all_actions = acts.clone();
    // §10.5 step 2: Attach to own-ID+1 through the bootstrap peer, with send_update.
    assert_eq!(attaches(&acts), vec![(res(ME + 1), Some(nid(7)), true)]);
    assert!(!c.is_joined());
    let boot_only = |n: &NodeId| *n == nid(7);
    assert_eq!(
        c.next_hop(&(ME + 5).to_be_bytes(), &boot_only),
        NextHop::Peer(nid(7)),
        "through the bootstrap peer"
    );
    let ap = ME + 100;
    c.handle(
        t(0.5),
        TopologyInput::AttachAnswered {
            target: res(ME + 1),
            peer: nid(ap),
        },
    )
    .unwrap();
    c.handle(t(0.5), TopologyInput::LinkUp { peer: nid(ap) })
        .unwrap();
    c.handle(
        t(0.6),
        TopologyInput::Update {
            from: nid(ap),
            body: full(
                &[ME - 10, ME - 20, ME - 30],
                &[ME + 200, ME + 300, ME + 400],
                &[ME + (1 << 90)],
            ),
        },
    )
    .unwrap();
    let acts = drain(&mut c);
    all_actions.extend(acts.clone());
    let a = attaches(&acts);
    // §10.5 step 3 / §10.6: neighbours through the reporting peer.
    let nb: Vec<u128> = vec![ME - 10, ME - 20, ME - 30, ME + 200, ME + 300];
    for &n in &nb {
        assert!(
            a.contains(&(Destination::Node(nid(n)), Some(nid(ap)), true)),
            "{n}: {a:?}"
        );
    }
    // ME+400 is beyond our third successor (AP, +200, +300): not a neighbour.
    assert!(
        !a.iter()
            .any(|(d, _, _)| *d == Destination::Node(nid(ME + 400)))
    );
    // Fingers: exact targets ME + 2^(128-i) beyond the successor list, routed normally.
    let fingers: Vec<Destination> = a
        .iter()
        .filter(|(_, via, su)| via.is_none() && !su)
        .map(|(d, _, _)| d.clone())
        .collect();
    assert!(!fingers.is_empty());
    for (i, f) in fingers.iter().enumerate() {
        assert_eq!(*f, res(finger_start(ME, i + 1)));
    }
    let span = 300u128;
    let range = (1..=16).take_while(|&i| finger_span(i) > span).count();
    assert_eq!(
        fingers.len(),
        range.min(MAX_FINGER_SEARCHES),
        "a bounded number in flight"
    );
    // Nothing placing us in the ring yet.
    assert!(!acts.iter().any(|a| matches!(
        a,
        TopologyAction::SendJoin { .. } | TopologyAction::SendUpdate { .. }
    )));
    // All neighbour attaches but one complete...
    for &n in &nb[..4] {
        c.handle(
            t(1.0),
            TopologyInput::AttachAnswered {
                target: Destination::Node(nid(n)),
                peer: nid(n),
            },
        )
        .unwrap();
        c.handle(t(1.0), TopologyInput::LinkUp { peer: nid(n) })
            .unwrap();
        c.handle(
            t(1.0),
            TopologyInput::Update {
                from: nid(n),
                body: full(&[], &[], &[]),
            },
        )
        .unwrap();
    }
    let acts = drain(&mut c);
    all_actions.extend(acts.clone());
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, TopologyAction::SendJoin { .. }))
    );
    // ...the last one fails: it is no neighbour. Now the Join goes to AP.
    c.handle(
        t(3.0),
        TopologyInput::AttachFailed {
            target: Destination::Node(nid(ME + 300)),
            error: None,
        },
    )
    .unwrap();
    let acts = drain(&mut c);
    all_actions.extend(acts.clone());
    assert!(
        acts.iter()
            .any(|a| matches!(a, TopologyAction::SendJoin { to, .. } if *to == nid(ap))),
        "{acts:?}"
    );
    assert!(
        !all_actions
            .iter()
            .any(|a| matches!(a, TopologyAction::SendUpdate { .. })),
        "Update before JoinAns"
    );
    // UpdateRequested while joining is held back.
    c.handle(
        t(3.1),
        TopologyInput::UpdateRequested { from: nid(ME - 10) },
    )
    .unwrap();
    assert!(updates_to(&drain(&mut c)).is_empty());
    // JoinAns: joined; Updates to every neighbour (§10.5 step 9), the held full one.
    c.handle(
        t(3.2),
        TopologyInput::JoinAnswered {
            from: nid(ap),
            result: Ok(Bytes::new()),
        },
    )
    .unwrap();
    let acts = drain(&mut c);
    assert!(acts.contains(&TopologyAction::Joined));
    assert!(c.is_joined());
    let ups = updates_to(&acts);
    for n in [ap, ME + 200, ME - 10, ME - 20, ME - 30] {
        assert!(
            ups.iter().any(|(to, _)| *to == nid(n)),
            "no Update to {n}: {ups:?}"
        );
    }
    assert!(
        ups.iter()
            .any(|(to, u)| *to == nid(ME - 10) && u.update_type() == ChordUpdateType::FULL)
    );
    // Five peers known: the successor list wraps round to the farthest predecessor.
    assert_eq!(c.successors(), vec![nid(ap), nid(ME + 200), nid(ME - 30)]);
    assert_eq!(
        c.predecessors(),
        vec![nid(ME - 10), nid(ME - 20), nid(ME - 30)]
    );

    assert!(c.is_responsible(&ResourceId::from(nid(ME - 5))));
}

#[test]
fn join_refused_or_lost_starts_over() {
    let (mut c, _) = joining();
    let ap = ME + 100;
    c.handle(
        t(0.5),
        TopologyInput::AttachAnswered {
            target: res(ME + 1),
            peer: nid(ap),
        },
    )
    .unwrap();
    c.handle(t(0.5), TopologyInput::LinkUp { peer: nid(ap) })
        .unwrap();
    c.handle(
        t(0.6),
        TopologyInput::Update {
            from: nid(ap),
            body: full(&[], &[], &[]),
        },
    )
    .unwrap();
    let acts = drain(&mut c);
    assert!(
        acts.iter()
            .any(|a| matches!(a, TopologyAction::SendJoin { .. }))
    );
    c.handle(
        t(0.7),
        TopologyInput::JoinAnswered {
            from: nid(ap),
            result: Err(ErrorCode::NOT_FOUND),
        },
    )
    .unwrap();
    assert!(!c.is_joined());
    // After the back-off a new Attach to own-ID+1.
    let when = c.poll_timeout().unwrap();
    assert!(when > t(0.7));
    c.handle_timeout(when);
    let a = attaches(&drain(&mut c));
    assert!(a.iter().any(|(d, _, _)| *d == res(ME + 1)), "{a:?}");
}

#[test]
fn no_bootstrap_answer_means_isolated() {
    let (mut c, _) = joining();
    c.handle(
        t(3.0),
        TopologyInput::AttachFailed {
            target: res(ME + 1),
            error: None,
        },
    )
    .unwrap();
    let acts = drain(&mut c);
    // The only bootstrap link is still up: it is tried again... until it goes down.
    c.handle(t(3.0), TopologyInput::LinkDown { peer: nid(7) })
        .unwrap();
    c.handle(
        t(9.0),
        TopologyInput::AttachFailed {
            target: res(ME + 1),
            error: None,
        },
    )
    .unwrap();
    let mut acts2 = drain(&mut c);
    acts2.extend(acts);
    assert!(
        acts2
            .iter()
            .any(|a| matches!(a, TopologyAction::Isolated { .. })),
        "{acts2:?}"
    );
    assert!(!c.is_joined());
    assert!(c.poll_timeout().is_some(), "it keeps trying");
}

// ----- admitting (§10.5 steps 5–8) -----

#[test]
fn admitting_peer_labels_the_joining_node_as_predecessor() {
    let me = 1u128 << 100;
    let mut c = joined_with(me, &[me - 100, me - 200, me - 300, me + 100], 3);
    let jn = me - 50;
    assert_eq!(
        c.handle(
            t(1.0),
            TopologyInput::JoinRequest {
                from: nid(jn),
                overlay_specific_data: Bytes::new()
            }
        ),
        Err(ErrorCode::FORBIDDEN),
        "no link to it"
    );
    c.handle(t(1.0), TopologyInput::LinkUp { peer: nid(jn) })
        .unwrap();
    assert_eq!(
        c.handle(
            t(1.0),
            TopologyInput::JoinRequest {
                from: nid(jn),
                overlay_specific_data: Bytes::new()
            }
        ),
        Ok(())
    );
    assert!(drain(&mut c).is_empty(), "JoinRequest only checks");
    assert_eq!(c.answer_join(t(1.0), nid(jn)), Ok(Bytes::new()));
    assert_eq!(c.predecessors()[0], nid(jn));
    let acts = drain(&mut c);
    assert!(acts.contains(&TopologyAction::NeighborsChanged));
    let ups = updates_to(&acts);
    let to_jn = ups
        .iter()
        .find(|(to, _)| *to == nid(jn))
        .expect("Update to the joining node");
    match &to_jn.1.body {
        ChordUpdateBody::Neighbors { predecessors, .. } => assert_eq!(predecessors[0], nid(jn)),
        b => panic!("{b:?}"),
    }
    for n in [me - 100, me - 200, me + 100] {
        assert!(
            ups.iter().any(|(to, _)| *to == nid(n)),
            "neighbour {n} not updated"
        );
    }
    // Far outside our predecessors: refused.
    c.handle(t(2.0), TopologyInput::LinkUp { peer: nid(me + 50) })
        .unwrap();
    assert_eq!(
        c.answer_join(t(2.0), nid(me + 50)),
        Err(ErrorCode::NOT_FOUND)
    );
    // Not joined: refused.
    let mut j = Chord::new(nid(5), settings(3));
    assert!(j.answer_join(t(0.0), nid(4)).is_err());
}

// ----- failures and leaving -----

#[test]
fn neighbour_failure_updates_everyone_reactively() {
    let me = 1u128 << 100;
    let mut c = joined_with(me, &[me - 100, me + 100, me + 200, me + 300], 3);
    c.handle(
        t(1.0),
        TopologyInput::LinkDown {
            peer: nid(me + 100),
        },
    )
    .unwrap();
    assert_eq!(
        c.successors(),
        vec![nid(me + 200), nid(me + 300), nid(me - 100)]
    );
    let acts = drain(&mut c);
    assert!(acts.contains(&TopologyAction::NeighborsChanged));
    let ups = updates_to(&acts);
    for n in [me - 100, me + 200, me + 300] {
        assert!(ups.iter().any(|(to, _)| *to == nid(n)));
    }
    assert!(!ups.iter().any(|(to, _)| *to == nid(me + 100)));
    // The dead node reported by a stale neighbour is not attached to again.
    c.handle(
        t(1.5),
        TopologyInput::Update {
            from: nid(me + 200),
            body: neighbors(&[me + 100], &[]),
        },
    )
    .unwrap();
    assert!(attaches(&drain(&mut c)).is_empty());
}

#[test]
fn a_neighbour_change_updates_the_whole_connection_table() {
    // §10.7.3: with reactive recovery, "the peer MUST send an Update request to each
    // member of its Connection Table" — fingers and linked non-peers included, not only
    // the neighbour table.
    let me = 1u128 << 100;
    let far = me.wrapping_add(1u128 << 126);
    let mut c = joined_with(me, &[me - 100, me + 100, me + 200, me + 300, far], 3);
    let client = me + 50;
    c.handle(t(0.5), TopologyInput::LinkUp { peer: nid(client) })
        .unwrap();
    drain(&mut c);
    c.handle(
        t(1.0),
        TopologyInput::LinkDown {
            peer: nid(me + 100),
        },
    )
    .unwrap();
    let ups = updates_to(&drain(&mut c));
    for n in [me - 100, me + 200, me + 300, far, client] {
        assert!(
            ups.iter().any(|(to, _)| *to == nid(n)),
            "no Update to {n:x}: {ups:?}"
        );
    }
}

#[test]
fn losing_every_successor_searches_own_id_plus_one() {
    // Only successors close by and one far finger: kill the successors.
    let me = 1u128 << 100;
    let far = me + (1u128 << 126);
    let mut c = joined_with(me, &[me + 1, me + 2, me + 3, far], 3);
    for k in 1..=3 {
        c.handle(t(1.0), TopologyInput::LinkDown { peer: nid(me + k) })
            .unwrap();
    }
    let a = attaches(&drain(&mut c));
    assert!(a.contains(&(res(me + 1), None, true)), "{a:?}");
    assert_eq!(
        c.successors()[0],
        nid(far),
        "best remaining match meanwhile"
    );
    assert!(c.is_joined());
}

#[test]
fn a_lone_peer_stops_claiming_the_ring_but_a_first_node_does_not() {
    // First node alone again: still responsible for everything.
    let mut f = joined_with(100, &[200], 3);
    f.handle(t(1.0), TopologyInput::LinkDown { peer: nid(200) })
        .unwrap();
    assert!(f.is_joined());
    assert_eq!(f.next_hop(&5u128.to_be_bytes(), &all), NextHop::Local);
    // An ordinary peer that loses every peer re-joins (§6.4.2.1).
    let (mut c, _) = joining();
    let ap = ME + 100;
    c.handle(
        t(0.5),
        TopologyInput::AttachAnswered {
            target: res(ME + 1),
            peer: nid(ap),
        },
    )
    .unwrap();
    c.handle(t(0.5), TopologyInput::LinkUp { peer: nid(ap) })
        .unwrap();
    c.handle(
        t(0.6),
        TopologyInput::Update {
            from: nid(ap),
            body: full(&[], &[], &[]),
        },
    )
    .unwrap();
    drain(&mut c);
    c.handle(
        t(0.7),
        TopologyInput::JoinAnswered {
            from: nid(ap),
            result: Ok(Bytes::new()),
        },
    )
    .unwrap();
    assert!(c.is_joined());
    drain(&mut c);
    c.handle(t(5.0), TopologyInput::LinkDown { peer: nid(ap) })
        .unwrap();
    assert!(!c.is_joined());
    assert_ne!(c.next_hop(&5u128.to_be_bytes(), &all), NextHop::Local);
    let a = attaches(&drain(&mut c));
    assert_eq!(
        a,
        vec![(res(ME + 1), Some(nid(7)), true)],
        "joins again through its bootstrap peer"
    );
}

#[test]
fn leaving_sends_the_right_lists() {
    let me = 1u128 << 100;
    let mut c = joined_with(
        me,
        &[me - 100, me - 200, me - 300, me + 100, me + 200, me + 300],
        3,
    );
    c.leave(t(1.0));
    let acts = drain(&mut c);
    let leaves: Vec<(NodeId, ChordLeaveData)> = acts
        .iter()
        .filter_map(|a| match a {
            TopologyAction::SendLeave {
                to,
                overlay_specific_data,
            } => Some((
                *to,
                ChordLeaveData::decode(overlay_specific_data, &DecodeOptions::default()).unwrap(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(leaves.len(), 6);
    let succs: Vec<NodeId> = [me + 100, me + 200, me + 300]
        .iter()
        .map(|&v| nid(v))
        .collect();
    let preds: Vec<NodeId> = [me - 100, me - 200, me - 300]
        .iter()
        .map(|&v| nid(v))
        .collect();
    for (to, d) in leaves {
        if preds.contains(&to) {
            // We are its successor: from_succ with our successors.
            assert_eq!(
                d,
                ChordLeaveData::FromSucc {
                    successors: succs.clone()
                }
            );
        } else {
            assert!(succs.contains(&to));
            assert_eq!(
                d,
                ChordLeaveData::FromPred {
                    predecessors: preds.clone()
                }
            );
        }
    }
    assert!(!c.is_joined());
    assert_eq!(c.next_hop(&(me + 1).to_be_bytes(), &all), NextHop::None);
    assert!(c.poll_timeout().is_none());
}

#[test]
fn receiving_leave_is_a_failure_with_hints() {
    let me = 1u128 << 100;
    let mut c = joined_with(me, &[me - 100, me + 100, me + 200], 3);
    let data = ChordLeaveData::FromSucc {
        successors: vec![nid(me + 150), nid(me + 200)],
    }
    .to_bytes()
    .unwrap();
    c.handle(
        t(1.0),
        TopologyInput::Leave {
            from: nid(me + 100),
            overlay_specific_data: data,
        },
    )
    .unwrap();
    assert!(!c.successors().contains(&nid(me + 100)));
    let acts = drain(&mut c);
    assert!(acts.contains(&TopologyAction::ReleaseLink {
        peer: nid(me + 100)
    }));
    // Its successor we did not know: attached to, routed normally (the leaver is going).
    assert!(attaches(&acts).contains(&(Destination::Node(nid(me + 150)), None, true)));
    // Re-reported by a stale neighbour: not taken back.
    c.handle(
        t(1.1),
        TopologyInput::Update {
            from: nid(me + 200),
            body: neighbors(&[me + 100], &[]),
        },
    )
    .unwrap();
    assert!(!c.successors().contains(&nid(me + 100)));
    // Malformed leave data.
    for bad in [&[][..], &[0][..], &[1, 0, 5][..], &[7, 1, 2][..]] {
        let r = c.handle(
            t(2.0),
            TopologyInput::Leave {
                from: nid(me - 100),
                overlay_specific_data: Bytes::copy_from_slice(bad),
            },
        );
        assert_eq!(r, Err(ErrorCode::INVALID_MESSAGE), "{bad:?}");
    }
    assert!(c.predecessors().contains(&nid(me - 100)));
}

#[test]
fn finger_failure_starts_a_random_search_in_its_interval() {
    let me = 1u128 << 100;
    let far = me + (1u128 << 126) + 12345;
    let mut c = joined_with(me, &[me + 1, me + 2, me + 3, me - 1, far], 3);
    assert!(c.fingers().contains(&(2, nid(far))));
    // The initial searches of the empty slots end (nobody answers).
    let initial: Vec<Destination> = c.pending.iter().map(|p| p.target.clone()).collect();
    for d in initial {
        c.handle(
            t(0.5),
            TopologyInput::AttachFailed {
                target: d,
                error: None,
            },
        )
        .unwrap();
    }
    drain(&mut c);
    c.handle(t(1.0), TopologyInput::LinkDown { peer: nid(far) })
        .unwrap();
    let a = attaches(&drain(&mut c));
    let search: Vec<&Destination> = a
        .iter()
        .filter(|(_, via, su)| via.is_none() && !su)
        .map(|(d, _, _)| d)
        .collect();
    assert!(
        search.iter().any(|d| match d {
            Destination::Resource(r) =>
                finger_slot(dist(me, pos(r.as_bytes()))) == Some(2)
                    && pos(r.as_bytes()) != finger_start(me, 2),
            _ => false,
        }),
        "{a:?}"
    );
}

#[test]
fn fingers_are_the_closest_peer_of_each_interval() {
    let me = 1u128;
    let a = me + (1u128 << 127) + 500;
    let b = me + (1u128 << 127) + 5;
    let c2 = me + (1u128 << 126) + 9;
    let c = joined_with(me, &[a, b, c2, me + 1, me + 2, me + 3], 3);
    let f = c.fingers();
    assert!(f.contains(&(1, nid(b))), "{f:?}");
    assert!(f.contains(&(2, nid(c2))), "{f:?}");
    assert!(!f.iter().any(|(_, n)| *n == nid(a)));
    // The full Update lists fingers in ascending numeric order.
    let mut c = c;
    c.handle(t(1.0), TopologyInput::UpdateRequested { from: nid(me + 1) })
        .unwrap();
    let ups = updates_to(&drain(&mut c));
    match &ups[0].1.body {
        ChordUpdateBody::Full { fingers, .. } => {
            let mut sorted = fingers.clone();
            sorted.sort();
            assert_eq!(*fingers, sorted);
            assert!(fingers.contains(&nid(b)) && fingers.contains(&nid(c2)));
        }
        b => panic!("{b:?}"),
    }
}

// ----- partition detection (§10.7.4.4) -----

#[test]
fn partition_detection_pings_own_id_plus_one_and_attaches_to_strangers() {
    let (mut c, _) = joining();
    let ap = ME + 100;
    c.handle(
        t(0.5),
        TopologyInput::AttachAnswered {
            target: res(ME + 1),
            peer: nid(ap),
        },
    )
    .unwrap();
    c.handle(t(0.5), TopologyInput::LinkUp { peer: nid(ap) })
        .unwrap();
    c.handle(
        t(0.6),
        TopologyInput::Update {
            from: nid(ap),
            body: full(&[], &[], &[]),
        },
    )
    .unwrap();
    drain(&mut c);
    c.handle(
        t(0.7),
        TopologyInput::JoinAnswered {
            from: nid(ap),
            result: Ok(Bytes::new()),
        },
    )
    .unwrap();
    drain(&mut c);
    // Run the timers up to the first Ping.
    let mut ping = None;
    for _ in 0..100 {
        let when = c.poll_timeout().unwrap();
        assert!(when <= t(0.7) + Duration::from_secs(400));
        c.handle_timeout(when);
        for a in drain(&mut c) {
            if let TopologyAction::Ping { target, via } = a {
                ping = Some((target, via));
            }
        }
        if ping.is_some() {
            break;
        }
    }
    let (target, via) = ping.expect("a partition Ping within one ping interval");
    assert_eq!((target.clone(), via), (res(ME + 1), Some(nid(7))));
    // Answered by our successor: no partition.
    c.handle(
        t(400.0),
        TopologyInput::PingAnswered {
            target: target.clone(),
            responder: Some(nid(ap)),
        },
    )
    .unwrap();
    assert!(attaches(&drain(&mut c)).is_empty());
    // Answered by a stranger: Attach to it through the bootstrap peer, then Update it.
    let s = ME + 50;
    c.handle(
        t(401.0),
        TopologyInput::PingAnswered {
            target,
            responder: Some(nid(s)),
        },
    )
    .unwrap();
    let a = attaches(&drain(&mut c));
    assert_eq!(a, vec![(Destination::Node(nid(s)), Some(nid(7)), true)]);
    c.handle(
        t(401.5),
        TopologyInput::AttachAnswered {
            target: Destination::Node(nid(s)),
            peer: nid(s),
        },
    )
    .unwrap();
    assert!(updates_to(&drain(&mut c)).is_empty(), "no link yet");
    c.handle(t(401.5), TopologyInput::LinkUp { peer: nid(s) })
        .unwrap();
    let ups = updates_to(&drain(&mut c));
    assert!(ups.iter().any(|(to, _)| *to == nid(s)), "{ups:?}");
}

// ----- clients (§4.2) -----

#[test]
fn clients_attach_to_their_responsible_peer_and_never_route() {
    let mut c = Chord::new(nid(ME), settings(3));
    c.start(
        t(0.0),
        StartMode::Client {
            bootstrap: vec![nid(7)],
        },
    );
    let a = attaches(&drain(&mut c));
    assert_eq!(a, vec![(res(ME + 1), Some(nid(7)), true)]);
    let r = ME + 100;
    c.handle(
        t(0.5),
        TopologyInput::AttachAnswered {
            target: res(ME + 1),
            peer: nid(r),
        },
    )
    .unwrap();
    c.handle(t(0.5), TopologyInput::LinkUp { peer: nid(r) })
        .unwrap();
    // One link only (§4.2.1): the bootstrap link is released.
    assert!(drain(&mut c).contains(&TopologyAction::ReleaseLink { peer: nid(7) }));
    assert_eq!(c.client_peer(), Some(nid(r)));
    assert!(c.is_client() && !c.is_joined());
    assert_eq!(c.successors(), vec![nid(r)]);
    assert_eq!(c.routing_table(), vec![nid(r)]);
    let linked = |n: &NodeId| [nid(r), nid(7), nid(ME + 10)].contains(n);
    assert_eq!(
        c.next_hop(&(ME + 5000).to_be_bytes(), &linked),
        NextHop::Peer(nid(r))
    );
    assert_eq!(
        c.next_hop(&(ME - 5000).to_be_bytes(), &linked),
        NextHop::Peer(nid(r))
    );
    assert_eq!(c.next_hop(nid(ME).as_bytes(), &linked), NextHop::Local);
    assert!(!c.is_responsible(&ResourceId::from(nid(ME))));
    assert_eq!(
        c.route_query_answer(&res(1), &all),
        Err(ErrorCode::NOT_FOUND)
    );
    assert!(c.answer_join(t(1.0), nid(ME + 1)).is_err());
    c.handle(t(1.0), TopologyInput::UpdateRequested { from: nid(r) })
        .unwrap();
    assert!(
        updates_to(&drain(&mut c)).is_empty(),
        "clients send no Updates"
    );
    // Its peer's Update says someone now sits between us: attach again through it.
    c.handle(
        t(2.0),
        TopologyInput::Update {
            from: nid(r),
            body: neighbors(&[ME + 10], &[]),
        },
    )
    .unwrap();
    let a = attaches(&drain(&mut c));
    assert_eq!(a, vec![(res(ME + 1), Some(nid(r)), true)]);
    c.handle(
        t(2.5),
        TopologyInput::AttachAnswered {
            target: res(ME + 1),
            peer: nid(ME + 10),
        },
    )
    .unwrap();
    let acts = drain(&mut c);
    assert_eq!(c.client_peer(), Some(nid(ME + 10)));
    assert!(acts.contains(&TopologyAction::ReleaseLink { peer: nid(r) }));
    // Its peer fails: no link is left — isolated (the core then reconnects to the
    // bootstrap peers); once the bootstrap link is back, attach again through it.
    c.handle(t(3.0), TopologyInput::LinkDown { peer: nid(ME + 10) })
        .unwrap();
    let acts = drain(&mut c);
    assert!(
        acts.iter()
            .any(|a| matches!(a, TopologyAction::Isolated { .. })),
        "{acts:?}"
    );
    c.handle(t(4.0), TopologyInput::LinkUp { peer: nid(7) })
        .unwrap();
    let mut a = attaches(&drain(&mut c));
    let mut now = t(4.0);
    while a.is_empty() && now < t(60.0) {
        now = c.poll_timeout().unwrap().max(now);
        c.handle_timeout(now);
        a = attaches(&drain(&mut c));
    }
    assert_eq!(a, vec![(res(ME + 1), Some(nid(7)), true)]);
    assert_eq!(
        c.next_hop(&(ME + 5000).to_be_bytes(), &linked),
        NextHop::None
    );
}

// ----- timers and determinism -----

#[test]
fn periodic_updates_are_jittered_and_reach_every_neighbour() {
    let mut c = joined_with(1000, &[400, 3000, 5000], 3);
    let mut sent_at = Vec::new();
    let mut now = t(0.1);
    for _ in 0..200 {
        let Some(when) = c.poll_timeout() else { break };
        assert!(when >= now, "timers never go back");
        now = when;
        if now > t(400.0) {
            break;
        }
        c.handle_timeout(now);
        let ups = updates_to(&drain(&mut c));
        if ups.len() >= 3 {
            let to: Vec<NodeId> = ups.iter().map(|(n, _)| *n).collect();
            for n in [400u128, 3000, 5000] {
                assert!(to.contains(&nid(n)));
            }
            sent_at.push(now);
        }
    }
    assert!(sent_at.len() >= 5, "{sent_at:?}");
    for w in sent_at.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_secs(48) && gap <= Duration::from_secs(72),
            "{gap:?}"
        );
    }
}

#[test]
fn same_inputs_same_actions() {
    let run = |seed_id: u128| {
        let mut c = joined_with(
            seed_id,
            &[seed_id - 7, seed_id + 9, seed_id + (1 << 120)],
            3,
        );
        let mut log = Vec::new();
        for _ in 0..30 {
            let Some(w) = c.poll_timeout() else { break };
            c.handle_timeout(w);
            log.push(format!("{:?}", w.duration_since(base())));
            for a in drain(&mut c) {
                log.push(format!("{a:?}"));
            }
        }
        log
    };
    assert_eq!(run(1 << 110), run(1 << 110));
    assert_ne!(run(1 << 110), run((1 << 110) + 1));
}

// ----- robustness -----

#[test]
fn hostile_inputs_never_panic_and_state_stays_bounded() {
    let mut rng = Prng::new(0xdead);
    let me = 1u128 << 127;
    let mut c = Chord::new(nid(me), settings(4));
    c.start(
        t(0.0),
        StartMode::Join {
            bootstrap: vec![nid(1), nid(2)],
        },
    );
    let r = 4;
    let mut now = 0.0f64;
    let pick = |rng: &mut Prng| -> u128 {
        match rng.below(4) {
            0 => me.wrapping_add(rng.below(1000) as u128).wrapping_sub(500),
            1 => rng.below(64) as u128,
            _ => rng.next_u128(),
        }
    };
    for step in 0..20_000u32 {
        now += rng.below(500) as f64 / 1000.0;
        let peer = nid(pick(&mut rng).max(1));
        let input = match rng.below(12) {
            0 => TopologyInput::LinkUp { peer },
            1 => TopologyInput::LinkDown { peer },
            2 | 3 => {
                let n = rng.below(40) as usize;
                let l: Vec<u128> = (0..n).map(|_| pick(&mut rng)).collect();
                let (p, s) = l.split_at(n / 2);
                TopologyInput::Update {
                    from: peer,
                    body: if rng.coin() {
                        neighbors(p, s)
                    } else {
                        full(p, s, &l)
                    },
                }
            }
            4 => {
                let len = rng.below(60) as usize;
                let b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                TopologyInput::Update {
                    from: peer,
                    body: Bytes::from(b),
                }
            }
            5 => TopologyInput::AttachAnswered {
                target: if rng.coin() {
                    res(me + 1)
                } else {
                    Destination::Node(peer)
                },
                peer,
            },
            6 => TopologyInput::AttachFailed {
                target: Destination::Node(peer),
                error: None,
            },
            7 => {
                let len = rng.below(40) as usize;
                let b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8 % 4).collect();
                TopologyInput::Leave {
                    from: peer,
                    overlay_specific_data: Bytes::from(b),
                }
            }
            8 => TopologyInput::JoinAnswered {
                from: peer,
                result: if rng.coin() {
                    Ok(Bytes::new())
                } else {
                    Err(ErrorCode::NOT_FOUND)
                },
            },
            9 => TopologyInput::PingAnswered {
                target: res(me + 1),
                responder: Some(peer),
            },
            10 => TopologyInput::UpdateRequested { from: peer },
            _ => TopologyInput::JoinRequest {
                from: peer,
                overlay_specific_data: Bytes::new(),
            },
        };
        let _ = c.handle(t(now), input);
        if rng.below(5) == 0 {
            let _ = c.answer_join(t(now), peer);
        }
        if rng.below(3) == 0
            && let Some(w) = c.poll_timeout()
        {
            now = now.max(w.saturating_duration_since(base()).as_secs_f64());
            c.handle_timeout(t(now));
        }
        let k = rng.next_u128().to_be_bytes();
        let _ = c.next_hop(&k, &|n: &NodeId| n.as_bytes()[15].is_multiple_of(2));
        let _ = c.route_query_answer(&res(rng.next_u128()), &all);
        let acts = drain(&mut c);
        for a in &acts {
            if let TopologyAction::SendUpdate { body, .. } = a {
                let u = decode(body);
                if let ChordUpdateBody::Neighbors {
                    predecessors,
                    successors,
                }
                | ChordUpdateBody::Full {
                    predecessors,
                    successors,
                    ..
                } = &u.body
                {
                    assert!(
                        !predecessors.contains(&nid(me)) && !successors.contains(&nid(me)),
                        "listed itself"
                    );
                    assert!(predecessors.len() <= r && successors.len() <= r);
                }
            }
        }
        assert!(
            c.successors().len() <= r && c.predecessors().len() <= r,
            "step {step}"
        );
        assert!(c.pending.len() <= c.pending_cap(), "step {step}");
        assert!(
            c.dead.len() <= DEAD_BASE + 8 * r && c.retry.len() <= DEAD_BASE + 8 * r,
            "step {step}"
        );
        assert!(c.reports.len() <= 2 * r, "step {step}");
        assert!(c.deferred_full.len() <= MAX_DEFERRED);
        assert!(c.fingers.len() == 16);
    }
}

#[test]
fn settings_are_clamped() {
    let mut s = settings(1);
    s.max_fingers = 1000;
    s.update_interval = Duration::MAX;
    s.request_timeout = Duration::ZERO;
    let mut c = Chord::new(nid(9), s);
    assert_eq!(c.r(), 3, "at least three neighbours (§10.7)");
    assert_eq!(c.settings.max_fingers, 128);
    c.start(t(0.0), StartMode::FirstNode);
    assert!(c.poll_timeout().is_some());
    c.handle_timeout(t(1.0));
    // Node-IDs of another length are not ours: ignored in lists, refused as senders.
    let twenty = NodeId::from_slice(&[1u8; 20]).unwrap();
    assert_eq!(
        c.handle(
            t(1.0),
            TopologyInput::Update {
                from: twenty,
                body: peer_ready()
            }
        ),
        Err(ErrorCode::INVALID_MESSAGE)
    );
}
