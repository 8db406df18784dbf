//! A hostile peer cannot hurt a node. Full cores (CHORD-RELOAD, signatures, plain links
//! whose peers are bound by certificate) in the simulator; one of them — a member with a
//! valid certificate — turns adversary and sends its victim, over their link, messages it
//! crafts and signs itself: routed Updates, forged and tampered signatures, replays,
//! forged transit errors, Attach floods and candidates pointing anywhere, fragment bombs,
//! TTL games, stale configuration sequences with forged via lists, junk certificates,
//! garbage, duplicate destinations, critical options and extensions. A stranger without a
//! valid certificate and a peer with several Node-IDs try their luck too. After each
//! attack the victim still routes Pings, and its memory stays within the stated bounds
//! (asserted: links, partial messages, cached certificates, pending requests — never
//! timings).

mod pki;
mod simnet;
mod storage;

use std::time::Duration;

use bytes::Bytes;
use reload_proto::node::{Event, InboundRequest, RequestError, Start};
use reload_wire::body::MessageBody;
use reload_wire::chord::{ChordUpdate, ChordUpdateBody};
use reload_wire::header::{Fragment, option_flags};
use reload_wire::link::{AttachReqAns, CandType, IceCandidate, PingReq, ROLE_PASSIVE};
use reload_wire::message::{ErrorCode, MessageCode, MessageExtension, MessageExtensionType};
use reload_wire::topology::{
    LeaveReq, ProbeInformation, ProbeInformationType, ProbeReq, UpdateReq,
};
use reload_wire::{
    Destination, ForwardingHeader, ForwardingOption, GenericCertificate, Message, MessageContents,
    NodeId, ResourceId, SecurityBlock, Signature, Wire,
};
use simnet::*;

const N: usize = 40;

/// An overlay of `N` full cores, joined and converged.
fn lab(seed: u64) -> Net {
    let mut net = cores(N, seed);
    join_sequentially(&mut net, SEC, |_, _| {});
    converge(&mut net, 5, SEC, Duration::from_secs(120)).expect("the ring formed");
    clear_events(&mut net.sim);
    net
}

fn id(net: &Net, i: usize) -> NodeId {
    NodeId::from_u128(net.ids[i])
}

fn linked(net: &Net, a: usize, b: usize) -> bool {
    net.sim.nodes[a]
        .node
        .connected_peers()
        .contains(&id(net, b))
}

/// Some `(adversary, victim)` with a link between them.
fn pair(net: &Net) -> (usize, usize) {
    for v in 0..N {
        for a in 0..N {
            if a != v && linked(net, a, v) {
                return (a, v);
            }
        }
    }
    panic!("no link")
}

/// A node other than `a` and `v` linked to `v`.
fn other_neighbour(net: &Net, a: usize, v: usize) -> usize {
    (0..N)
        .find(|&b| b != a && b != v && linked(net, b, v))
        .expect("the victim has another neighbour")
}

/// A node `v` is not linked to.
fn stranger_to(net: &Net, v: usize) -> usize {
    (0..N)
        .find(|&t| t != v && !linked(net, v, t))
        .expect("not every node is linked to the victim")
}

/// A request `from` crafts: `body` to `dest`, `tweak`ed, signed with `from`'s key.
fn craft(
    net: &Net,
    from: usize,
    dest: Vec<Destination>,
    body: &MessageBody,
    tweak: impl FnOnce(&mut Message),
) -> Message {
    let node = &net.sim.nodes[from].node;
    let overlay = node.overlay();
    let mut h = ForwardingHeader::new(
        overlay.hash(),
        overlay.sequence(),
        overlay.initial_ttl(),
        0x00ad_0000_0000_0000 | net.sim.delivered,
    );
    h.destination_list = dest;
    let mut m = Message {
        header: h,
        contents: MessageContents::from_body(body).unwrap(),
        security: SecurityBlock {
            certificates: vec![],
            signature: Signature::none(),
        },
    };
    tweak(&mut m);
    node.credentials().sign_message(&mut m, vec![]).unwrap();
    m.header.length = m.encoded_len() as u32;
    m
}

/// Sends `m` over the `from` → `to` link and runs the simulation a little.
fn inject(net: &mut Net, from: usize, to: usize, m: &Message) {
    assert!(net.sim.inject(from, to, m.to_bytes().unwrap()), "no link");
    net.sim.run_for(Duration::from_millis(300));
}

/// The answers to `tx` that reached node `to` (captured by the simulator), decoded.
fn answers(net: &Net, tx: u64) -> Vec<MessageBody> {
    let opts = net.sim.nodes[0].node.overlay().decode().clone();
    net.sim
        .captured(tx)
        .iter()
        .filter_map(|b| Message::decode(b, &opts).ok())
        .filter(|m| m.contents.message_code.is_response())
        .filter_map(|m| m.contents.body(&opts).ok())
        .collect()
}

fn error_code(body: &MessageBody) -> Option<ErrorCode> {
    match body {
        MessageBody::Error(e) => Some(e.error_code),
        _ => None,
    }
}

/// Node `a` pings node `b` through the overlay: answered by `b`.
fn pings(net: &mut Net, a: usize, b: usize) -> bool {
    let now = net.sim.now;
    let body = MessageBody::PingReq(PingReq::default());
    let dest = vec![Destination::Node(id(net, b))];
    let Ok(tx) = net.sim.nodes[a].node.send_request(now, dest, body) else {
        return false;
    };
    net.sim.after_input(a);
    let answered = net.sim.run_until(Duration::from_secs(20), |s| {
        s.nodes[a]
            .events
            .iter()
            .any(|e| matches!(e, Event::Response { transaction_id, .. } if *transaction_id == tx))
    });
    answered
        && take_response(&mut net.sim, a, tx).is_some_and(|r| r.is_ok_and(|(w, _)| w == id(net, b)))
}

/// The victim still routes: it pings a far node and is pinged.
fn still_routes(net: &mut Net, v: usize) {
    let far = (v + N / 2) % N;
    assert!(pings(net, v, far), "the victim pings node {far}");
    assert!(pings(net, far, v), "node {far} pings the victim");
}

/// What the victim holds, against its stated bounds.
fn within_bounds(net: &Net, v: usize) {
    let node = &net.sim.nodes[v].node;
    let s = node.settings();
    let (partials, bytes) = node.reassembly_backlog();
    assert!(
        partials <= s.reassembly_messages,
        "{partials} partial messages"
    );
    assert!(
        bytes <= s.reassembly_buffer,
        "{bytes} bytes being reassembled"
    );
    assert!(node.links().len() <= s.admission.max_links);
    assert!(node.cached_certificates() <= s.cert_cache_size);
    assert!(node.pending_app_requests() <= s.max_app_requests);
    assert!(node.pending_requests() <= s.max_outstanding);
}

#[test]
fn a_routed_update_is_refused_and_makes_no_phantom_neighbour() {
    // §10.7: Join, Leave and Update come from a neighbour over its own link. A member
    // routing an Update to a node it has no link with, listing itself in its tables, must
    // not become that node's "linked, live" neighbour.
    let mut net = lab(0xad01);
    let v = 0;
    let a = stranger_to(&net, v);
    let via = (0..N)
        .find(|&b| linked(&net, a, b) && linked(&net, b, v))
        .expect("a path");
    let update = ChordUpdate {
        uptime: 1000,
        body: ChordUpdateBody::Neighbors {
            predecessors: vec![id(&net, a)],
            successors: vec![id(&net, a)],
        },
    };
    let body = MessageBody::UpdateReq(UpdateReq(update.to_bytes().unwrap()));
    let m = craft(&net, a, vec![Destination::Node(id(&net, v))], &body, |_| {});
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, a, via, &m);
    let got = answers(&net, m.header.transaction_id);
    assert_eq!(
        got.iter().filter_map(error_code).next(),
        Some(ErrorCode::FORBIDDEN),
        "{got:?}"
    );
    let t = net.sim.nodes[v].node.topology();
    assert!(!t.routing_table().contains(&id(&net, a)));
    assert!(!t.neighbor_section("successors").contains(&id(&net, a)));
    assert!(!t.neighbor_section("predecessors").contains(&id(&net, a)));
    still_routes(&mut net, v);
    within_bounds(&net, v);
}

#[test]
fn forged_and_tampered_signatures_are_dropped() {
    let mut net = lab(0xad02);
    let (a, v) = pair(&net);
    let b = other_neighbour(&net, a, v);
    let before = net.sim.nodes[v].node.stats().dropped_bad_signature;
    let ping = MessageBody::PingReq(PingReq::default());
    // Tampered after signing.
    let mut m = craft(&net, a, vec![Destination::Node(id(&net, v))], &ping, |_| {});
    m.contents = MessageContents::from_body(&MessageBody::PingReq(PingReq {
        padding: Bytes::from_static(b"changed"),
    }))
    .unwrap();
    m.header.length = m.encoded_len() as u32;
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, a, v, &m);
    assert!(answers(&net, m.header.transaction_id).is_empty());
    // Signed by the adversary, claiming another member's identity and certificate.
    let victim_of_forgery = net.sim.nodes[b].node.credentials();
    let identity = victim_of_forgery.identity();
    let cert = GenericCertificate::x509(victim_of_forgery.cert.der().clone());
    let mut f = craft(&net, a, vec![Destination::Node(id(&net, v))], &ping, |_| {});
    f.security.signature.identity = identity;
    f.security.certificates = vec![cert];
    f.header.length = f.encoded_len() as u32;
    net.sim.capture(f.header.transaction_id);
    inject(&mut net, a, v, &f);
    assert!(answers(&net, f.header.transaction_id).is_empty());
    assert_eq!(
        net.sim.nodes[v].node.stats().dropped_bad_signature - before,
        2
    );
    still_routes(&mut net, v);
}

#[test]
fn a_replayed_request_is_answered_from_the_cache_and_served_once() {
    let mut net = lab(0xad03);
    let (a, v) = pair(&net);
    net.sim.nodes[v].node.serve(MessageCode::EXP_A_REQ);
    let body = MessageBody::Unknown {
        code: MessageCode::EXP_A_REQ,
        body: Bytes::from_static(b"once"),
    };
    let m = craft(&net, a, vec![Destination::Node(id(&net, v))], &body, |_| {});
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, a, v, &m);
    let reqs: Vec<InboundRequest> = net.sim.nodes[v]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Request(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reqs.len(), 1);
    let now = net.sim.now;
    let answer = MessageBody::Unknown {
        code: MessageCode::EXP_A_ANS,
        body: Bytes::from_static(b"done"),
    };
    net.sim.nodes[v].node.respond(now, reqs[0].id, Ok(answer));
    net.sim.after_input(v);
    net.sim.run_for(Duration::from_millis(300));
    // The same bytes again, twice: the same answer, no new request for the usage.
    inject(&mut net, a, v, &m);
    inject(&mut net, a, v, &m);
    let requests = net.sim.nodes[v]
        .events
        .iter()
        .filter(|e| matches!(e, Event::Request(_)))
        .count();
    assert_eq!(requests, 1, "served once");
    let got = answers(&net, m.header.transaction_id);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.windows(2).all(|w| w[0] == w[1]));
    assert!(net.sim.nodes[v].node.stats().duplicate_requests >= 2);
}

#[test]
fn an_off_path_member_cannot_fail_a_request_with_a_forged_transit_error() {
    // §6.3.4: errors that arise in transit come from the hop that hit them; one from a
    // member the request never crossed is ignored (and the transaction ID it would need is
    // unpredictable, §6.3.2).
    let mut net = lab(0xad04);
    let (a, v) = pair(&net);
    let b = other_neighbour(&net, a, v);
    let now = net.sim.now;
    let body = MessageBody::PingReq(PingReq::default());
    // A Ping to a direct neighbour leaves over that neighbour's link, not the adversary's.
    let dest = vec![Destination::Node(id(&net, b))];
    let tx = net.sim.nodes[v].node.send_request(now, dest, body).unwrap();
    let forged = MessageBody::Error(reload_wire::ErrorResponse::new(
        ErrorCode::TTL_EXCEEDED,
        "forged",
    ));
    let mut e = craft(
        &net,
        a,
        vec![Destination::Node(id(&net, v))],
        &forged,
        |m| {
            m.header.transaction_id = tx;
        },
    );
    e.header.length = e.encoded_len() as u32;
    assert!(net.sim.inject(a, v, e.to_bytes().unwrap()));
    net.sim.after_input(v);
    assert!(net.sim.run_until(Duration::from_secs(10), |s| {
        s.nodes[v]
            .events
            .iter()
            .any(|e| matches!(e, Event::Response { transaction_id, .. } if *transaction_id == tx))
    }));
    match take_response(&mut net.sim, v, tx) {
        Some(Ok((who, MessageBody::PingAns(_)))) => assert_eq!(who, id(&net, b)),
        other => panic!("the forged error was taken: {other:?}"),
    }
}

fn attach(candidates: Vec<IceCandidate>) -> MessageBody {
    MessageBody::AttachReq(AttachReqAns {
        ufrag: Bytes::new(),
        password: Bytes::new(),
        role: Bytes::from_static(ROLE_PASSIVE),
        candidates,
        send_update: false,
    })
}

fn host(addr: &str) -> IceCandidate {
    let a: std::net::SocketAddr = addr.parse().unwrap();
    IceCandidate::host(
        a.into(),
        reload_wire::link::OverlayLinkType::TLS_TCP_FH_NO_ICE,
    )
}

#[test]
fn an_answer_from_a_node_that_may_not_give_it_is_ignored() {
    // §6.3.4: the answer for a Resource-ID must come from a node at least as close to it
    // as any node the requester knows; a member signing a valid answer for someone
    // else's Resource-ID is ignored and the request retransmitted until the real answer.
    let mut net = lab(0xad10);
    let (a, v) = pair(&net);
    let b = other_neighbour(&net, a, v);
    let key = ResourceId::from(id(&net, b));
    let now = net.sim.now;
    let body = MessageBody::PingReq(PingReq::default());
    let dest = vec![Destination::Resource(key)];
    let tx = net.sim.nodes[v].node.send_request(now, dest, body).unwrap();
    let fake = MessageBody::PingAns(reload_wire::link::PingAns {
        response_id: 1,
        time: 1,
    });
    let before = net.sim.nodes[v].node.stats().wrong_responder;
    let e = craft(&net, a, vec![Destination::Node(id(&net, v))], &fake, |m| {
        m.header.transaction_id = tx;
    });
    assert!(net.sim.inject(a, v, e.to_bytes().unwrap()));
    net.sim.after_input(v);
    assert!(net.sim.run_until(Duration::from_secs(20), |s| {
        s.nodes[v]
            .events
            .iter()
            .any(|e| matches!(e, Event::Response { transaction_id, .. } if *transaction_id == tx))
    }));
    assert_eq!(net.sim.nodes[v].node.stats().wrong_responder, before + 1);
    match take_response(&mut net.sim, v, tx) {
        Some(Ok((who, _))) => assert_eq!(who, id(&net, b), "the responsible node's answer"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn attach_candidates_pointing_anywhere_are_refused_and_a_flood_costs_little() {
    // The adversary has no link with the victim: an Attach makes the victim connect to the
    // candidate (§6.5.1) — only to an address a peer could listen on, and one attempt at a
    // time per requester.
    let mut net = lab(0xad05);
    let v = 0;
    let a = stranger_to(&net, v);
    let via = (0..N)
        .find(|&b| linked(&net, a, b) && linked(&net, b, v))
        .expect("a path");
    let links_before = net.sim.nodes[v].node.links().len();
    let to_v = vec![Destination::Node(id(&net, v))];
    // Addresses no peer listens on: unspecified, multicast, broadcast, port 0, and
    // loopback (this overlay is not on loopback).
    for bad in [
        "0.0.0.0:6084",
        "224.0.0.1:6084",
        "255.255.255.255:6084",
        "10.1.2.3:0",
        "127.0.0.1:6084",
        "[ff02::1]:6084",
    ] {
        let m = craft(&net, a, to_v.clone(), &attach(vec![host(bad)]), |_| {});
        net.sim.capture(m.header.transaction_id);
        inject(&mut net, a, via, &m);
        let got = answers(&net, m.header.transaction_id);
        assert_eq!(
            got.iter().filter_map(error_code).next(),
            Some(ErrorCode::INVALID_MESSAGE),
            "{bad}: {got:?}"
        );
    }
    assert_eq!(net.sim.nodes[v].node.links().len(), links_before);
    // 300 Attaches with reachable-looking candidates nobody answers at.
    for k in 0..300u32 {
        let addr = format!("10.200.{}.{}:6084", k / 250, k % 250 + 1);
        let m = craft(&net, a, to_v.clone(), &attach(vec![host(&addr)]), |_| {});
        assert!(net.sim.inject(a, via, m.to_bytes().unwrap()));
    }
    net.sim.run_for(Duration::from_millis(500));
    assert!(net.sim.nodes[v].node.links().len() <= links_before + 1);
    within_bounds(&net, v);
    still_routes(&mut net, v);
    // An ICE candidate in a No-ICE overlay: Error_Incompatible_with_Overlay (§6.5.1.5).
    let mut srflx = host("10.1.2.3:6084");
    srflx.cand_type = CandType::SRFLX;
    srflx.rel_addr_port = Some(
        "10.1.2.4:6084"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    );
    let m = craft(&net, a, to_v, &attach(vec![srflx]), |_| {});
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, a, via, &m);
    let got = answers(&net, m.header.transaction_id);
    assert_eq!(
        got.iter().filter_map(error_code).next(),
        Some(ErrorCode::INCOMPATIBLE_WITH_OVERLAY)
    );
    // A proper Attach (role passive, its host candidate) gets our host candidates and the
    // active role (§6.5.1: the Attach sender is the (D)TLS server, the answerer connects).
    let own = host(&net.sim.nodes[a].addr.to_string());
    let m = craft(
        &net,
        a,
        vec![Destination::Node(id(&net, v))],
        &attach(vec![own]),
        |_| {},
    );
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, a, via, &m);
    match answers(&net, m.header.transaction_id).first() {
        Some(MessageBody::AttachAns(ans)) => {
            assert_eq!(&ans.role[..], reload_wire::link::ROLE_ACTIVE);
            assert_eq!(ans.candidates.len(), 1);
            assert_eq!(ans.candidates[0].cand_type, CandType::HOST);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_fragment_bomb_stays_within_the_reassembly_bounds() {
    let mut net = lab(0xad06);
    let (a, v) = pair(&net);
    let ping = MessageBody::PingReq(PingReq {
        padding: Bytes::from(vec![7u8; 2000]),
    });
    for k in 0..3000u64 {
        // A first fragment of a message that never completes, under a fresh transaction ID…
        let m = craft(&net, a, vec![Destination::Node(id(&net, v))], &ping, |m| {
            m.header.transaction_id = 0xf00d_0000 + k;
        });
        let whole = m.to_bytes().unwrap();
        let (h, hl) =
            ForwardingHeader::peek(&whole, net.sim.nodes[v].node.overlay().decode()).unwrap();
        let mut h = h;
        h.fragment = Fragment::new(0, false);
        let chunk = &whole[hl..hl + 600];
        let mut b = bytes::BytesMut::new();
        h.encode_with_length(&mut b, (hl + chunk.len()) as u32)
            .unwrap();
        b.extend_from_slice(chunk);
        assert!(net.sim.inject(a, v, b.freeze()));
        // …and an empty fragment that is not the last.
        if k % 10 == 0 {
            h.fragment = Fragment::new(900, false);
            let mut e = bytes::BytesMut::new();
            h.encode_with_length(&mut e, hl as u32).unwrap();
            assert!(net.sim.inject(a, v, e.freeze()));
        }
    }
    net.sim.run_for(Duration::from_secs(1));
    within_bounds(&net, v);
    assert!(net.sim.nodes[v].node.stats().reassembly_dropped > 0);
    still_routes(&mut net, v);
}

#[test]
fn ttl_games_get_error_ttl_exceeded() {
    let mut net = lab(0xad07);
    let (a, v) = pair(&net);
    let far = stranger_to(&net, v);
    let ping = MessageBody::PingReq(PingReq::default());
    // A TTL above initial-ttl (§6.3.2): discarded, answered Error_TTL_Exceeded.
    let initial = net.sim.nodes[v].node.overlay().initial_ttl();
    assert!(initial < u8::MAX);
    let m = craft(&net, a, vec![Destination::Node(id(&net, v))], &ping, |m| {
        m.header.ttl = initial + 1;
    });
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, a, v, &m);
    let got = answers(&net, m.header.transaction_id);
    assert_eq!(
        got.iter().filter_map(error_code).next(),
        Some(ErrorCode::TTL_EXCEEDED),
        "{got:?}"
    );
    // TTL 0 for a node further away: the first hop answers Error_TTL_Exceeded.
    let m = craft(
        &net,
        a,
        vec![Destination::Node(id(&net, far))],
        &ping,
        |m| m.header.ttl = 0,
    );
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, a, v, &m);
    let got = answers(&net, m.header.transaction_id);
    assert_eq!(
        got.iter().filter_map(error_code).next(),
        Some(ErrorCode::TTL_EXCEEDED),
        "{got:?}"
    );
    still_routes(&mut net, v);
}

#[test]
fn a_request_that_comes_back_is_answered_error_loop_detected() {
    // §6.3.3.1, §13.6.5: a request that comes back to a node it passed through (its
    // Node-ID in the via list) with the destination list it left with is in a loop:
    // answered Error_Loop_Detected, not forwarded again (found in a capture: a Fetch
    // bounced ~80 times between two peers whose tables disagreed during a join).
    let mut net = lab(0xad0a);
    let (a, v) = pair(&net);
    let far = stranger_to(&net, v);
    let ping = MessageBody::PingReq(PingReq::default());
    let me = id(&net, v);
    let dest = vec![Destination::Node(id(&net, far))];
    // v forwards the Ping once (its target answers)…
    let first = craft(&net, a, dest.clone(), &ping, |_| {});
    let tx = first.header.transaction_id;
    net.sim.capture(tx);
    inject(&mut net, a, v, &first);
    let got = answers(&net, tx);
    assert!(
        matches!(got.first(), Some(MessageBody::PingAns(_))),
        "{got:?}"
    );
    // …then it comes back to v, v in its via list, its destination list unchanged.
    let back = craft(&net, a, dest.clone(), &ping, |m| {
        m.header.transaction_id = tx;
        m.header.via_list = vec![Destination::Node(me)];
    });
    inject(&mut net, a, v, &back);
    let got = answers(&net, tx);
    assert_eq!(
        got.iter().filter_map(error_code).next(),
        Some(ErrorCode::LOOP_DETECTED),
        "{got:?}"
    );
    // A source route that brings a message back to v with a shorter list is no loop.
    let routed = craft(
        &net,
        a,
        vec![
            Destination::Node(id(&net, a)),
            Destination::Node(id(&net, far)),
        ],
        &ping,
        |m| m.header.via_list = vec![Destination::Node(me)],
    );
    let tx2 = routed.header.transaction_id;
    net.sim.capture(tx2);
    inject(&mut net, a, v, &routed);
    let got = answers(&net, tx2);
    assert!(
        !got.iter()
            .filter_map(error_code)
            .any(|c| c == ErrorCode::LOOP_DETECTED),
        "{got:?}"
    );
    still_routes(&mut net, v);
}

#[test]
fn junk_certificates_never_enter_the_signature_cache() {
    let mut net = lab(0xad08);
    let (a, v) = pair(&net);
    let other_ca = pki::TestCa::named(false, "somebody else's root");
    let junk: Vec<GenericCertificate> = (0..8u128)
        .map(|k| {
            if k % 2 == 0 {
                GenericCertificate::x509(Bytes::from(vec![0x30; 300 + k as usize]))
            } else {
                let (_, der) = other_ca.issue(
                    false,
                    &[NodeId::from_u128(0x5000 + k)],
                    "x",
                    pki::OVERLAY,
                    pki::now_window(),
                );
                GenericCertificate::x509(der)
            }
        })
        .collect();
    let before = net.sim.nodes[v].node.cached_certificates();
    let ping = MessageBody::PingReq(PingReq::default());
    for _ in 0..100 {
        let mut m = craft(&net, a, vec![Destination::Node(id(&net, v))], &ping, |_| {});
        m.security.certificates.extend(junk.iter().cloned());
        m.header.length = m.encoded_len() as u32;
        assert!(net.sim.inject(a, v, m.to_bytes().unwrap()));
    }
    net.sim.run_for(Duration::from_secs(1));
    let after = net.sim.nodes[v].node.cached_certificates();
    assert!(
        after <= before + 1,
        "{before} → {after}: only verified signers are cached"
    );
    within_bounds(&net, v);
    still_routes(&mut net, v);
}

#[test]
fn garbage_gets_a_bounded_number_of_error_answers() {
    // Every error answer costs a signature: a link gets at most a burst of them, then a
    // trickle (per-link budget), whatever it sends.
    let mut net = lab(0xad09);
    let (a, v) = pair(&net);
    let before = net.sim.nodes[v].node.stats().clone();
    let ping = MessageBody::PingReq(PingReq::default());
    for k in 0..500u64 {
        // A well-formed header and a body that is no PingReq: Error_Invalid_Message.
        let m = craft(&net, a, vec![Destination::Node(id(&net, v))], &ping, |m| {
            m.header.transaction_id = 0xbad_0000 + k;
            m.contents.message_body = Bytes::from_static(b"\xff\xff\xff");
        });
        assert!(net.sim.inject(a, v, m.to_bytes().unwrap()));
    }
    net.sim.run_for(Duration::from_millis(200));
    let after = net.sim.nodes[v].node.stats().clone();
    let answered = after.answered - before.answered;
    assert!(
        answered <= 30,
        "{answered} error answers to 500 bad requests"
    );
    assert!(after.errors_suppressed - before.errors_suppressed >= 450);
    still_routes(&mut net, v);
}

#[test]
fn duplicate_destinations_critical_options_and_extensions_are_refused() {
    let mut net = lab(0xad0a);
    let (a, v) = pair(&net);
    let b = other_neighbour(&net, a, v);
    let ping = MessageBody::PingReq(PingReq::default());
    let refused = |net: &mut Net, m: Message, want: ErrorCode| {
        net.sim.capture(m.header.transaction_id);
        inject(net, a, v, &m);
        let got = answers(net, m.header.transaction_id);
        assert_eq!(
            got.iter().filter_map(error_code).next(),
            Some(want),
            "{got:?}"
        );
    };
    // §13.6.5: a destination list naming a node twice.
    let dup = vec![
        Destination::Node(id(&net, v)),
        Destination::Node(id(&net, b)),
        Destination::Node(id(&net, v)),
    ];
    let m = craft(&net, a, dup, &ping, |_| {});
    refused(&mut net, m, ErrorCode::INVALID_MESSAGE);
    // §6.3.2.3: an unknown destination-critical option at the destination…
    let opt = |flags| ForwardingOption {
        option_type: reload_wire::header::ForwardingOptionType(0x7e),
        flags,
        value: Bytes::new(),
    };
    let m = craft(&net, a, vec![Destination::Node(id(&net, v))], &ping, |m| {
        m.header.options = vec![opt(option_flags::DESTINATION_CRITICAL)]
    });
    refused(&mut net, m, ErrorCode::UNSUPPORTED_FORWARDING_OPTION);
    // …and an unknown forward-critical option at a node that would forward it.
    let m = craft(
        &net,
        a,
        vec![
            Destination::Node(id(&net, v)),
            Destination::Node(id(&net, b)),
        ],
        &ping,
        |m| m.header.options = vec![opt(option_flags::FORWARD_CRITICAL)],
    );
    refused(&mut net, m, ErrorCode::UNSUPPORTED_FORWARDING_OPTION);
    // §6.3.3: an unknown critical extension.
    let m = craft(&net, a, vec![Destination::Node(id(&net, v))], &ping, |m| {
        m.contents.extensions = vec![MessageExtension {
            extension_type: MessageExtensionType(0x7e7e),
            critical: true,
            extension_contents: Bytes::new(),
        }]
    });
    refused(&mut net, m, ErrorCode::UNKNOWN_EXTENSION);
    // A non-critical unknown option with RESPONSE_COPY comes back in the answer, its flags
    // cleared (§6.3.2.3).
    let m = craft(&net, a, vec![Destination::Node(id(&net, v))], &ping, |m| {
        m.header.options = vec![opt(option_flags::RESPONSE_COPY)]
    });
    let tx = m.header.transaction_id;
    net.sim.capture(tx);
    inject(&mut net, a, v, &m);
    let opts = net.sim.nodes[0].node.overlay().decode().clone();
    let answer = net
        .sim
        .captured(tx)
        .iter()
        .filter_map(|b| Message::decode(b, &opts).ok())
        .find(|m| m.contents.message_code.is_response())
        .expect("answered");
    assert_eq!(answer.header.options, vec![opt(0)]);
    still_routes(&mut net, v);
}

#[test]
fn routing_drops_what_it_must_and_answers_what_it_may() {
    let mut net = lab(0xad0b);
    let (a, v) = pair(&net);
    let ping = MessageBody::PingReq(PingReq::default());
    // §6.1.1: a Resource-ID the victim is responsible for, not the last entry: dropped
    // silently.
    let key = ResourceId::from(id(&net, v));
    assert!(net.sim.nodes[v].node.topology().is_responsible(&key));
    let before = net.sim.nodes[v].node.stats().clone();
    let m = craft(
        &net,
        a,
        vec![
            Destination::Resource(key.clone()),
            Destination::Node(id(&net, a)),
        ],
        &ping,
        |_| {},
    );
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, a, v, &m);
    assert!(answers(&net, m.header.transaction_id).is_empty());
    assert_eq!(
        net.sim.nodes[v].node.stats().dropped_other,
        before.dropped_other + 1
    );
    // §6.1.1: a Node-ID in the victim's range that is neither its own nor a linked
    // client's: dropped silently (no route).
    let in_range = NodeId::from_u128(net.ids[v] - 1);
    assert!(
        net.sim.nodes[v]
            .node
            .topology()
            .is_responsible(&ResourceId::from(in_range))
    );
    let before = net.sim.nodes[v].node.stats().clone();
    let m = craft(&net, a, vec![Destination::Node(in_range)], &ping, |_| {});
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, a, v, &m);
    assert!(answers(&net, m.header.transaction_id).is_empty());
    assert_eq!(
        net.sim.nodes[v].node.stats().dropped_no_route,
        before.dropped_no_route + 1
    );
    // §6.3.2 max_response_length: an answer that would be longer is replaced by
    // Error_Response_Too_Large.
    let m = craft(&net, a, vec![Destination::Node(id(&net, v))], &ping, |m| {
        m.header.max_response_length = 20
    });
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, a, v, &m);
    let got = answers(&net, m.header.transaction_id);
    assert_eq!(
        got.iter().filter_map(error_code).next(),
        Some(ErrorCode::RESPONSE_TOO_LARGE),
        "{got:?}"
    );
    // §6.4.2.5 Probe: the information in the order asked for.
    let probe = MessageBody::ProbeReq(ProbeReq {
        requested_info: vec![
            ProbeInformationType::UPTIME,
            ProbeInformationType::RESPONSIBLE_SET,
            ProbeInformationType::NUM_RESOURCES,
        ],
    });
    let m = craft(
        &net,
        a,
        vec![Destination::Node(id(&net, v))],
        &probe,
        |_| {},
    );
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, a, v, &m);
    match answers(&net, m.header.transaction_id).first() {
        Some(MessageBody::ProbeAns(p)) => {
            assert!(
                matches!(
                    p.probe_info.as_slice(),
                    [
                        ProbeInformation::Uptime(_),
                        ProbeInformation::ResponsibleSet(_),
                        ProbeInformation::NumResources(_)
                    ]
                ),
                "{p:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    // §6.5.3 PingAns: a response_id and the time.
    let m = craft(&net, a, vec![Destination::Node(id(&net, v))], &ping, |_| {});
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, a, v, &m);
    match answers(&net, m.header.transaction_id).first() {
        Some(MessageBody::PingAns(p)) => {
            assert!(p.time > 1_600_000_000_000 && p.response_id != 0, "{p:?}")
        }
        other => panic!("{other:?}"),
    }
    // §6.4.2.2: a Leave routed through a third node (not over the leaver's own link).
    let t = stranger_to(&net, v);
    let via = (0..N)
        .find(|&b| linked(&net, t, b) && linked(&net, b, v))
        .unwrap();
    let leave = MessageBody::LeaveReq(LeaveReq {
        leaving_peer_id: id(&net, t),
        overlay_specific_data: Bytes::new(),
    });
    let m = craft(
        &net,
        t,
        vec![Destination::Node(id(&net, v))],
        &leave,
        |_| {},
    );
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, t, via, &m);
    let got = answers(&net, m.header.transaction_id);
    assert_eq!(
        got.iter().filter_map(error_code).next(),
        Some(ErrorCode::FORBIDDEN),
        "{got:?}"
    );
    still_routes(&mut net, v);
}

#[test]
fn a_stale_configuration_sequence_is_answered_to_the_verified_signer_only() {
    // §6.3.2.1: the sender of a request with an older configuration gets ours — sent to the
    // signer we verified, not to a via-list entry the sender wrote (a reflector).
    use reload_proto::check::signed_document;
    use reload_proto::config::ConfigDocument;
    let mut net = lab(0xad0c);
    let (a, v) = pair(&net);
    // Every node with configuration 1, the victim with 2, both signed by one signer.
    let fx = pki::fixture();
    let mut c1 = fx.ca.config();
    c1.root_certs = vec![net.ca.der.clone(), fx.ca.der.clone()];
    c1.configuration_signers = vec![fx.config_signer.node_id.as_bytes().to_vec()];
    c1.sequence = 1;
    let mut c2 = c1.clone();
    c2.sequence = 2;
    let d1 = Bytes::from(signed_document(&mut c1, &fx.config_signer, &fx.kind_signer).unwrap());
    let d2 = Bytes::from(signed_document(&mut c2, &fx.config_signer, &fx.kind_signer).unwrap());
    let now = net.sim.now;
    for i in 0..N {
        let d = if i == v { &d2 } else { &d1 };
        let parsed = ConfigDocument::parse(std::str::from_utf8(d).unwrap()).unwrap();
        let c = parsed.configurations[0].config.clone();
        net.sim.nodes[i].node.set_configuration(now, c, d.clone());
    }
    // The adversary's request names, in its via list, a Node-ID nobody has.
    let x = NodeId::from_u128(net.ids[a] ^ 0x1234_5678);
    let ping = MessageBody::PingReq(PingReq::default());
    let m = craft(&net, a, vec![Destination::Node(id(&net, v))], &ping, |m| {
        m.header.configuration_sequence = 1;
        m.header.via_list = vec![Destination::Node(x)];
    });
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, a, v, &m);
    net.sim.run_for(Duration::from_secs(2));
    let got = answers(&net, m.header.transaction_id);
    assert_eq!(
        got.iter().filter_map(error_code).next(),
        Some(ErrorCode::CONFIG_TOO_OLD),
        "{got:?}"
    );
    assert_eq!(
        net.sim.nodes[a].node.overlay().sequence(),
        2,
        "the verified signer got the configuration, not the via entry"
    );
}

#[test]
fn a_stranger_without_a_valid_certificate_cannot_link() {
    use reload_proto::link::WallAnchor;
    use reload_proto::link::plain::PlainLinks;
    use reload_proto::node::{Node, NodeParts, NodeSettings};
    use reload_proto::rand::Seed;
    use reload_proto::topology::chord::{Chord, ChordSettings};
    let mut net = lab(0xad0d);
    let v = 0;
    let other = pki::TestCa::named(false, "not the overlay's root");
    let creds = other.node(false, 0x7777, "stranger");
    let overlay = net.sim.nodes[0].node.overlay().clone();
    let anchor = WallAnchor::new(net.sim.now, std::time::SystemTime::now());
    let addr: std::net::SocketAddr = "10.250.0.1:6084".parse().unwrap();
    let parts = NodeParts {
        settings: NodeSettings::new(vec![(PROTOCOL, addr)]),
        links: Box::new(PlainLinks::new(&creds.cert, &overlay, anchor)),
        topology: Box::new(Chord::new(
            creds.node_id,
            ChordSettings::from_overlay(&overlay),
        )),
        overlay,
        credentials: creds,
    };
    let node = Node::new(parts, net.sim.now, anchor.wall, Seed::from_u64(7));
    let s = net.sim.add(node, addr);
    let now = net.sim.now;
    let boot = net.sim.nodes[v].addr;
    net.sim.nodes[s]
        .node
        .start(now, Start::Join(vec![(PROTOCOL, boot)]));
    net.sim.after_input(s);
    net.sim.run_for(Duration::from_secs(5));
    assert!(net.sim.nodes[s].node.connected_peers().is_empty());
    assert!(
        !net.sim.nodes[v]
            .node
            .connected_peers()
            .contains(&NodeId::from_u128(0x7777))
    );
    let refused = net.sim.nodes[v].events.iter().any(|e| {
        matches!(e, Event::LinkDown { reason: Some(why), .. } if why.contains("authentication"))
    });
    assert!(refused, "{:?}", net.sim.nodes[v].events);
    still_routes(&mut net, v);
}

#[test]
fn a_peer_with_several_node_ids_routes_only_ping_and_attach_before_it_attaches() {
    use reload_proto::link::WallAnchor;
    use reload_proto::link::plain::PlainLinks;
    use reload_proto::node::{Node, NodeParts, NodeSettings};
    use reload_proto::rand::Seed;
    use reload_proto::topology::chord::{Chord, ChordSettings};
    let mut net = lab(0xad0e);
    let v = 0;
    let ids = [
        NodeId::from_u128(net.ids[v] ^ 0x55),
        NodeId::from_u128(net.ids[v] ^ 0x66),
    ];
    let (key, der) = net
        .ca
        .issue(false, &ids, "multi", pki::OVERLAY, pki::now_window());
    let creds = pki::creds(&key, der, ids[0]);
    let overlay = net.sim.nodes[0].node.overlay().clone();
    let anchor = WallAnchor::new(net.sim.now, std::time::SystemTime::now());
    let addr: std::net::SocketAddr = "10.250.0.2:6084".parse().unwrap();
    let parts = NodeParts {
        settings: NodeSettings::new(vec![(PROTOCOL, addr)]),
        links: Box::new(PlainLinks::new(&creds.cert, &overlay, anchor)),
        topology: Box::new(Chord::new(ids[0], ChordSettings::from_overlay(&overlay))),
        overlay,
        credentials: creds,
    };
    let node = Node::new(parts, net.sim.now, anchor.wall, Seed::from_u64(8));
    let m_idx = net.sim.add(node, addr);
    net.sim.connect(m_idx, v);
    net.sim.run_for(Duration::from_secs(1));
    assert!(net.sim.nodes[v].node.connected_peers().contains(&ids[0]));
    let far = (0..N).find(|&t| t != v && linked(&net, v, t)).unwrap();
    let exp = MessageBody::Unknown {
        code: MessageCode::EXP_A_REQ,
        body: Bytes::new(),
    };
    // Through the victim to another node, before any Attach: Error_Forbidden (§6.1.2).
    let m = craft(
        &net,
        m_idx,
        vec![Destination::Node(id(&net, far))],
        &exp,
        |_| {},
    );
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, m_idx, v, &m);
    let got = answers(&net, m.header.transaction_id);
    assert_eq!(
        got.iter().filter_map(error_code).next(),
        Some(ErrorCode::FORBIDDEN),
        "{got:?}"
    );
    // A Ping is fine.
    let ping = MessageBody::PingReq(PingReq::default());
    let m = craft(
        &net,
        m_idx,
        vec![Destination::Node(id(&net, far))],
        &ping,
        |_| {},
    );
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, m_idx, v, &m);
    assert!(matches!(
        answers(&net, m.header.transaction_id).first(),
        Some(MessageBody::PingAns(_))
    ));
    // Once it has Attached over the link, the same request goes through (and is refused
    // by its target only because nobody serves the method there).
    let att = attach(vec![host(&addr.to_string())]);
    let m = craft(
        &net,
        m_idx,
        vec![Destination::Node(id(&net, v))],
        &att,
        |_| {},
    );
    inject(&mut net, m_idx, v, &m);
    let m = craft(
        &net,
        m_idx,
        vec![Destination::Node(id(&net, far))],
        &exp,
        |_| {},
    );
    net.sim.capture(m.header.transaction_id);
    inject(&mut net, m_idx, v, &m);
    net.sim.run_for(Duration::from_millis(500));
    let got = answers(&net, m.header.transaction_id);
    let err = got.iter().find_map(|b| match b {
        MessageBody::Error(e) => Some(e.clone()),
        _ => None,
    });
    let err = err.expect("answered by the target");
    assert_eq!(err.error_code, ErrorCode::FORBIDDEN);
    assert!(
        String::from_utf8_lossy(&err.error_info).contains("serves no usage"),
        "{err:?}"
    );
}

#[test]
fn a_node_refuses_to_have_more_requests_outstanding_than_its_cap() {
    let mut net = lab(0xad0f);
    let v = 0;
    let far = stranger_to(&net, v);
    let mut refused = None;
    for _ in 0..5000 {
        let now = net.sim.now;
        let body = MessageBody::PingReq(PingReq::default());
        let dest = vec![Destination::Node(id(&net, far))];
        if let Err(e) = net.sim.nodes[v].node.send_request(now, dest, body) {
            refused = Some(e);
            break;
        }
    }
    assert!(
        matches!(refused, Some(RequestError::Unsendable(ref why)) if why.contains("max_outstanding")),
        "{refused:?}"
    );
    within_bounds(&net, v);
}

/// [`lab`] with the storage test Kinds (`pki::storage_kinds`).
fn storage_lab(seed: u64) -> Net {
    let ca = pki::TestCa::new(false);
    let overlay = ca.storage_overlay();
    let addr = |i: usize| std::net::SocketAddr::from(([10, 0, 1, i as u8 + 1], 6084));
    let mut net = build_in(ca, overlay, seed, random_ids(N, seed), addr, None, None);
    join_sequentially(&mut net, SEC, |_, _| {});
    converge(&mut net, 5, SEC, Duration::from_secs(120)).expect("the ring formed");
    clear_events(&mut net.sim);
    net
}

#[test]
fn a_responder_cannot_slip_a_value_past_the_fetcher() {
    // §7.4.2.2: the fetcher verifies every value — its signature, its certificate and the
    // Kind's access policy — whoever signed the answer. The responsible peer itself
    // answers with a value another member signed for someone else's Resource-ID, a
    // tampered copy of the real value, and an unsigned value that claims to exist: all
    // three are refused, and reported.
    use reload_wire::storage::{FetchAns, FetchKindResponse, KindId, KindValues};
    let mut net = storage_lab(0xad20);
    let writer = 3;
    let r = storage::user_resource(writer);
    storage::store(
        &mut net,
        writer,
        &r,
        pki::kinds::SINGLE,
        vec![storage::single("real")],
    )
    .unwrap();
    let resp = storage::responsible(&net, &r);
    let f = (0..N)
        .find(|&k| k != resp && k != writer && linked(&net, k, resp))
        .unwrap();
    let other = (0..N)
        .find(|&k| k != resp && k != writer && k != f)
        .unwrap();
    let kind = KindId(pki::kinds::SINGLE);
    let real = net.sim.nodes[resp]
        .node
        .storage()
        .record(&r, kind)
        .unwrap()
        .entries
        .values()
        .next()
        .unwrap()
        .data
        .clone();
    let forged = storage::sign(
        &mut net,
        other,
        &r,
        pki::kinds::SINGLE,
        vec![storage::single("forged")],
        60,
    )
    .remove(0);
    let mut tampered = real.clone();
    tampered.value = storage::single("tampered");
    let mut unsigned = real.clone();
    unsigned.signature = Signature::none();
    let now = net.sim.now;
    let tx = net.sim.nodes[f]
        .node
        .fetch(
            now,
            r.clone(),
            vec![reload_proto::node::everything(
                kind,
                reload_wire::storage::DataModel::Single,
            )],
        )
        .unwrap();
    let body = MessageBody::FetchAns(FetchAns {
        kind_responses: vec![FetchKindResponse {
            kind,
            generation: 7,
            values: KindValues::Decoded(vec![forged, tampered, unsigned]),
        }],
    });
    let mut m = craft(
        &net,
        resp,
        vec![Destination::Node(id(&net, f))],
        &body,
        |m| {
            m.header.transaction_id = tx;
        },
    );
    let other_cert = net.sim.nodes[other].node.credentials().cert.der().clone();
    m.security
        .certificates
        .push(GenericCertificate::x509(other_cert));
    m.header.length = m.encoded_len() as u32;
    // The forged answer arrives before the real one (which is then a late duplicate).
    assert!(net.sim.inject(resp, f, m.to_bytes().unwrap()));
    net.sim.after_input(f);
    assert!(net.sim.run_until(Duration::from_secs(20), |s| {
        s.nodes[f]
            .events
            .iter()
            .any(|e| matches!(e, Event::Fetched { transaction_id, .. } if *transaction_id == tx))
    }));
    let got = net.sim.nodes[f]
        .events
        .iter()
        .find_map(|e| match e {
            Event::Fetched {
                transaction_id,
                result,
            } if *transaction_id == tx => Some(result.clone()),
            _ => None,
        })
        .unwrap()
        .unwrap();
    assert_eq!(got.responder, id(&net, resp));
    assert!(
        got.kinds[0].values.as_slice().is_empty(),
        "{:?}",
        got.kinds[0].values
    );
    assert_eq!(got.rejected.len(), 3, "{:?}", got.rejected);
    // The same fetch, answered honestly, returns the real value.
    let honest = storage::fetch(
        &mut net,
        f,
        &r,
        vec![reload_proto::node::everything(
            kind,
            reload_wire::storage::DataModel::Single,
        )],
    )
    .unwrap();
    assert_eq!(
        storage::content(&honest.kinds[0].values.as_slice()[0]),
        Some(b"real".to_vec())
    );
    within_bounds(&net, f);
}
