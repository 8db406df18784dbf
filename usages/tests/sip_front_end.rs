//! The SIP front end between real peers in this process (RFC 7904): user agents are plain
//! UDP sockets speaking SIP written out here, so every header the peers add or remove is
//! visible. The same scenarios with SIP software nobody here wrote are in
//! `interop/tests/sip_*.rs`.

#[path = "../../reload-node/tests/inproc/mod.rs"]
mod inproc;

use std::net::SocketAddr;
use std::time::Duration;

use reload_usages::sip::registry;
use reload_usages::sip::{SipFrontEnd, SipOptions};
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Header, Method, Request, Response, SipMessage, StatusCode};
use tokio::net::UdpSocket;

/// A user agent: one UDP socket.
struct Ua {
    sock: UdpSocket,
    name: &'static str,
}

impl Ua {
    async fn new(name: &'static str) -> Ua {
        Ua {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            name,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    async fn send(&self, to: SocketAddr, text: &str) {
        let text = text.replace('\n', "\r\n");
        self.sock.send_to(text.as_bytes(), to).await.unwrap();
    }

    async fn send_msg(&self, to: SocketAddr, msg: SipMessage) {
        self.sock.send_to(&msg.to_bytes(), to).await.unwrap();
    }

    /// The next message (bounded wait: a missing message fails the test, not hangs it).
    async fn recv(&self) -> SipMessage {
        let mut buf = vec![0u8; 65535];
        let (n, _) = tokio::time::timeout(Duration::from_secs(30), self.sock.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{}: nothing received in 30 s", self.name))
            .unwrap();
        SipMessage::try_from(&buf[..n]).expect("SIP")
    }

    async fn recv_request(&self) -> Request {
        match self.recv().await {
            SipMessage::Request(r) => r,
            SipMessage::Response(r) => {
                panic!("{}: unexpected response {}", self.name, r.status_code)
            }
        }
    }

    /// The next final (or the given provisional) response, skipping 100 Trying.
    async fn recv_response(&self) -> Response {
        loop {
            match self.recv().await {
                SipMessage::Response(r) if r.status_code == StatusCode::Trying => continue,
                SipMessage::Response(r) => return r,
                SipMessage::Request(r) => panic!("{}: unexpected request {}", self.name, r.method),
            }
        }
    }
}

/// A UAS's response to `req`: Via, Record-Route, From, To (with `tag`), Call-ID, CSeq
/// copied (RFC 3261 §8.2.6, §12.1.1).
fn response(req: &Request, code: StatusCode, tag: &str, contact: Option<SocketAddr>) -> SipMessage {
    let mut headers = rsipstack::sip::Headers::default();
    for h in req.headers.iter() {
        match h {
            Header::Via(_)
            | Header::RecordRoute(_)
            | Header::From(_)
            | Header::CallId(_)
            | Header::CSeq(_) => headers.push(h.clone()),
            Header::To(t) => {
                let mut v = t.value().to_string();
                if !v.contains("tag=") {
                    v.push_str(&format!(";tag={tag}"));
                }
                headers.push(Header::To(v.into()));
            }
            _ => {}
        }
    }
    if let Some(c) = contact {
        headers.push(Header::Contact(format!("<sip:bob@{c}>").into()));
    }
    headers.push(Header::ContentLength(0u32.into()));
    SipMessage::Response(Response {
        status_code: code,
        wire_reason: None,
        version: rsipstack::sip::Version::V2,
        headers,
        body: vec![],
    })
}

fn register(ua: &Ua, user: &str, expires: u32, cseq: u32) -> String {
    let a = ua.addr();
    format!(
        "REGISTER sip:test.example.org SIP/2.0
Via: SIP/2.0/UDP {a};branch=z9hG4bKreg{cseq}{expires}
Max-Forwards: 70
From: <sip:{user}>;tag=r{cseq}
To: <sip:{user}>
Call-ID: reg-{a}
CSeq: {cseq} REGISTER
Contact: <sip:ua@{a}>
Expires: {expires}
Content-Length: 0

"
    )
}

fn invite(ua: &Ua, from: &str, to: &str, call: &str) -> String {
    let a = ua.addr();
    format!(
        "INVITE sip:{to} SIP/2.0
Via: SIP/2.0/UDP {a};branch=z9hG4bK{call}
Max-Forwards: 70
From: <sip:{from}>;tag=a-{call}
To: <sip:{to}>
Call-ID: {call}@test
CSeq: 1 INVITE
Contact: <sip:alice@{a}>
Content-Length: 0

"
    )
}

/// A response's Warning text (empty when it has none).
fn warning(r: &Response) -> String {
    r.headers
        .iter()
        .find_map(|h| match h {
            Header::Warning(w) => Some(w.value().to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The callee answers `inv` 486 through `front` (its peer's front end); the caller gets
/// that 486.
async fn busy(callee: &Ua, front: &SipFrontEnd, inv: &Request, tag: &str, caller: &Ua) {
    callee
        .send_msg(
            front.local_addr(),
            response(inv, StatusCode::BusyHere, tag, None),
        )
        .await;
    assert_eq!(
        caller.recv_response().await.status_code,
        StatusCode::BusyHere
    );
}

/// Alice's UA `caller` calls `to` through peer A; the INVITE reaches `callee`, retargeted
/// to its contact (RFC 3261 §16.5).
async fn invite_reaches(t: &Two, caller: &Ua, to: &str, call: &str, callee: &Ua) -> Request {
    caller
        .send(t.a.local_addr(), &invite(caller, &t.alice, to, call))
        .await;
    let inv = callee.recv_request().await;
    assert_eq!(inv.method, Method::Invite);
    assert_eq!(
        inv.uri.to_string(),
        format!("sip:ua@{}", callee.addr()),
        "retargeted to the contact"
    );
    inv
}

/// The route set of a UAC: the 2xx's Record-Route in reverse (RFC 3261 §12.1.2).
fn route_set(resp: &Response, reverse: bool) -> Vec<String> {
    let mut v: Vec<String> = resp
        .typed_record_route_headers()
        .unwrap()
        .iter()
        .map(|r| r.uri.to_string())
        .collect();
    if reverse {
        v.reverse();
    }
    v
}

/// One side's view of a dialog: its From, To and Call-ID.
struct Dialog<'a> {
    from: &'a str,
    to: &'a str,
    call: &'a str,
}

fn in_dialog(
    method: &str,
    target: &str,
    routes: &[String],
    via: SocketAddr,
    branch: &str,
    d: &Dialog<'_>,
    cseq: u32,
) -> String {
    let route: String = routes.iter().map(|r| format!("Route: <{r}>\n")).collect();
    let (from, to, call) = (d.from, d.to, d.call);
    format!(
        "{method} {target} SIP/2.0
Via: SIP/2.0/UDP {via};branch=z9hG4bK{branch}
Max-Forwards: 70
{route}From: {from}
To: {to}
Call-ID: {call}
CSeq: {cseq} {method}
Content-Length: 0

"
    )
}

struct Two {
    nodes: Vec<inproc::Member>,
    a: SipFrontEnd,
    b: SipFrontEnd,
    bob: String,
    alice: String,
}

/// Five peers; SIP front ends on peers 1 (alice = user1) and 3 (bob = user3).
async fn two_front_ends() -> Two {
    two_front_ends_over(reload_wire::link::OverlayLinkType::TLS_TCP_FH_NO_ICE).await
}

/// A SIP front end on `m` with the default options (loopback, ports the system picks).
async fn front_end(m: &inproc::Member) -> SipFrontEnd {
    SipFrontEnd::start(&m.handle, m.node_id, &m.user, SipOptions::default())
        .await
        .unwrap()
}

/// [`two_front_ends`] in an overlay whose nodes listen with `link` (DTLS-UDP-SR: an ICE
/// overlay, whose AppAttach flows are DTLS over ICE pairs).
async fn two_front_ends_over(link: reload_wire::link::OverlayLinkType) -> Two {
    let nodes = inproc::overlay_over(link, 5, 0, None).await;
    let a = front_end(&nodes[1]).await;
    let b = front_end(&nodes[3]).await;
    Two {
        alice: nodes[1].user.clone(),
        bob: nodes[3].user.clone(),
        nodes,
        a,
        b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_goes_through_two_peers_and_in_dialog_requests_follow_it() {
    call_through_two_peers(&two_front_ends().await).await;
}

/// The same call in an ICE overlay: the peers' SIP flow is DTLS over an ICE pair of their
/// application sockets (RFC 6940 §6.5.2), one SIP message per record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_goes_through_two_peers_over_an_ice_flow() {
    let t = two_front_ends_over(reload_wire::link::OverlayLinkType::DTLS_UDP_SR).await;
    call_through_two_peers(&t).await;
    for i in [1, 3] {
        let s = t.nodes[i].handle.snapshot().await.unwrap();
        assert!(s.ice);
        let flow = s
            .app_flows
            .iter()
            .find(|f| f.open && f.application == 5060)
            .unwrap_or_else(|| panic!("no SIP flow on peer {i}: {:?}", s.app_flows));
        assert!(flow.pair.is_some(), "{flow:?}");
    }
}

async fn call_through_two_peers(t: &Two) {
    let (alice, bob) = (Ua::new("alice").await, Ua::new("bob").await);
    // Bob registers at peer B.
    bob.send(t.b.local_addr(), &register(&bob, &t.bob, 300, 1))
        .await;
    let ok = bob.recv_response().await;
    assert_eq!(ok.status_code, StatusCode::OK);
    assert!(
        ok.contact_header()
            .unwrap()
            .value()
            .contains(&bob.addr().to_string())
    );
    assert_eq!(t.b.contacts().len(), 1);

    // Alice (not registered: a UAC needs no registration) calls bob's AOR at peer A.
    let inv = invite_reaches(t, &alice, &t.bob, "c1", &bob).await;
    // Alice's Via and one Via from each peer; one Record-Route from each peer.
    assert_eq!(
        inv.headers
            .iter()
            .filter(|h| matches!(h, Header::Via(_)))
            .count(),
        3
    );
    assert_eq!(inv.typed_record_route_headers().unwrap().len(), 2);
    bob.send_msg(
        t.b.local_addr(),
        response(&inv, StatusCode::Ringing, "b1", Some(bob.addr())),
    )
    .await;
    let ringing = alice.recv_response().await;
    assert_eq!(ringing.status_code, StatusCode::Ringing);
    bob.send_msg(
        t.b.local_addr(),
        response(&inv, StatusCode::OK, "b1", Some(bob.addr())),
    )
    .await;
    let ok = alice.recv_response().await;
    assert_eq!(ok.status_code, StatusCode::OK);
    assert_eq!(
        ok.headers
            .iter()
            .filter(|h| matches!(h, Header::Via(_)))
            .count(),
        1,
        "the peers' Vias are gone"
    );

    // ACK along the route set, to bob's contact.
    let from = ok.from_header().unwrap().value().to_string();
    let to = ok.to_header().unwrap().value().to_string();
    let routes = route_set(&ok, true);
    let first_hop = t.a.local_addr();
    let target = format!("sip:bob@{}", bob.addr());
    alice
        .send(
            first_hop,
            &in_dialog(
                "ACK",
                &target,
                &routes,
                alice.addr(),
                "ack1",
                &Dialog {
                    from: &from,
                    to: &to,
                    call: "c1@test",
                },
                1,
            ),
        )
        .await;
    let ack = bob.recv_request().await;
    assert_eq!(ack.method, Method::Ack);
    assert!(
        ack.route_headers().is_empty(),
        "both peers took their Route entries off"
    );

    // A re-INVITE in the dialog (RFC 3261 §14.1) follows the route set too; so does its
    // ACK.
    let dialog = Dialog {
        from: &from,
        to: &to,
        call: "c1@test",
    };
    alice
        .send(
            first_hop,
            &in_dialog(
                "INVITE",
                &target,
                &routes,
                alice.addr(),
                "reinv1",
                &dialog,
                2,
            ),
        )
        .await;
    let reinvite = bob.recv_request().await;
    assert_eq!(reinvite.method, Method::Invite);
    assert!(
        reinvite.to_header().unwrap().value().contains("tag=b1"),
        "in the dialog"
    );
    assert!(reinvite.route_headers().is_empty());
    bob.send_msg(
        t.b.local_addr(),
        response(&reinvite, StatusCode::OK, "b1", Some(bob.addr())),
    )
    .await;
    let ok2 = alice.recv_response().await;
    assert_eq!(ok2.status_code, StatusCode::OK);
    assert_eq!(ok2.cseq_header().unwrap().typed().unwrap().seq, 2);
    alice
        .send(
            first_hop,
            &in_dialog("ACK", &target, &routes, alice.addr(), "ack2", &dialog, 2),
        )
        .await;
    let ack2 = bob.recv_request().await;
    assert_eq!(ack2.method, Method::Ack);
    assert_eq!(ack2.cseq_header().unwrap().typed().unwrap().seq, 2);

    // Bob hangs up: BYE along his route set (the Record-Route in order) to alice's contact.
    let routes = route_set(&ok, false);
    let target = format!("sip:alice@{}", alice.addr());
    bob.send(
        t.b.local_addr(),
        &in_dialog(
            "BYE",
            &target,
            &routes,
            bob.addr(),
            "bye1",
            &Dialog {
                from: &to,
                to: &from,
                call: "c1@test",
            },
            2,
        ),
    )
    .await;
    let bye = alice.recv_request().await;
    assert_eq!(bye.method, Method::Bye);
    alice
        .send_msg(t.a.local_addr(), response(&bye, StatusCode::OK, "x", None))
        .await;
    let ok = bob.recv_response().await;
    assert_eq!(ok.status_code, StatusCode::OK);
    assert_eq!(
        ok.cseq_header().unwrap().typed().unwrap().method,
        Method::Bye
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrar_errors_follow_rfc_7904_and_3261() {
    let t = two_front_ends().await;
    let ua = Ua::new("ua").await;
    // A foreign AOR: this peer registers only its user's (USER-NODE-MATCH, RFC 7904 §3.3).
    ua.send(t.b.local_addr(), &register(&ua, &t.alice, 300, 1))
        .await;
    assert_eq!(ua.recv_response().await.status_code, StatusCode::Forbidden);
    // An AOR nobody registered.
    ua.send(
        t.a.local_addr(),
        &invite(&ua, &t.alice, "nobody@test.example.org", "c2"),
    )
    .await;
    let r = ua.recv_response().await;
    assert_eq!(r.status_code, StatusCode::NotFound);
    // Registered in the overlay, then the registration expires: the AOR is gone.
    let bob = Ua::new("bob").await;
    bob.send(t.b.local_addr(), &register(&bob, &t.bob, 2, 1))
        .await;
    assert_eq!(bob.recv_response().await.status_code, StatusCode::OK);
    let opts = reload_wire::DecodeOptions::default();
    let node_b = &t.nodes[3];
    let found = registry::resolve(&t.nodes[0].handle, &t.bob, &opts)
        .await
        .unwrap();
    assert_eq!(
        found[0].destinations,
        vec![reload_wire::Destination::Node(node_b.node_id)]
    );
    // Await the expiry (bounded): the lookup turns to NotFound.
    let mut gone = false;
    for _ in 0..100 {
        match registry::resolve(&t.nodes[0].handle, &t.bob, &opts).await {
            Err(registry::LookupError::NotFound(_)) => {
                gone = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert!(gone, "the expired registration is still found");
    ua.send(t.a.local_addr(), &invite(&ua, &t.alice, &t.bob, "c3"))
        .await;
    assert_eq!(ua.recv_response().await.status_code, StatusCode::NotFound);
    // Garbage, then a request missing its Call-ID: dropped, then 400; the peer serves on.
    ua.send(t.a.local_addr(), "\u{1}\u{2}garbage that is not SIP\n\n")
        .await;
    let a = ua.addr();
    ua.send(
        t.a.local_addr(),
        &format!("OPTIONS sip:x@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKbad\nFrom: <sip:x@y>;tag=1\nTo: <sip:x@test.example.org>\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n"),
    )
    .await;
    assert_eq!(ua.recv_response().await.status_code, StatusCode::BadRequest);
    // Over TCP: garbage closes that connection; a new one is served.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(t.a.local_addr())
            .await
            .unwrap();
        c.write_all(b"INVITE x\r\nContent-Length: nope\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut buf))
            .await
            .expect("the connection is closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
        let mut c = tokio::net::TcpStream::connect(t.a.local_addr())
            .await
            .unwrap();
        let a = c.local_addr().unwrap();
        let opts = format!(
            "OPTIONS sip:nobody@test.example.org SIP/2.0\r\nVia: SIP/2.0/TCP {a};branch=z9hG4bKtcp1\r\nMax-Forwards: 70\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:nobody@test.example.org>\r\nCall-ID: tcp1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        c.write_all(opts.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut b = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut b))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed before answering");
            got.extend_from_slice(&b[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("SIP/2.0 404"), "{text}");
    }
    // Registration removed with Expires: 0.
    bob.send(t.b.local_addr(), &register(&bob, &t.bob, 300, 2))
        .await;
    assert_eq!(bob.recv_response().await.status_code, StatusCode::OK);
    bob.send(t.b.local_addr(), &register(&bob, &t.bob, 0, 3))
        .await;
    assert_eq!(bob.recv_response().await.status_code, StatusCode::OK);
    assert!(t.b.contacts().is_empty());
    // The deletion (exists = false) lives at least as long as the entry had left (RFC
    // 6940 §7.4.1.3 SHOULD): the entry was stored for 300 s and slack (150 s).
    let rid = t.nodes[0]
        .handle
        .resource_id(t.bob.as_bytes())
        .await
        .unwrap();
    let fetched = t.nodes[0]
        .handle
        .fetch(rid, vec![registry::lookup_specifier()])
        .await
        .unwrap();
    let tombstone = fetched
        .kinds
        .iter()
        .flat_map(|k| k.values.as_slice())
        .find(|d| match &d.value {
            reload_wire::storage::StoredDataValue::Dictionary(e) => {
                e.key.as_ref() == node_b.node_id.as_bytes()
            }
            _ => false,
        })
        .expect("peer B's entry");
    assert!(!tombstone.value.data_value().exists, "{tombstone:?}");
    assert!(
        tombstone.lifetime >= 440,
        "the deletion must outlive the entry it replaces: {} s",
        tombstone.lifetime
    );
    assert!(matches!(
        registry::resolve(&t.nodes[0].handle, &t.bob, &opts).await,
        Err(registry::LookupError::NotFound(_))
    ));
}

/// RFC 7904 §3.1, §4.2: an AOR registered as another AOR (`sip_registration_uri`) resolves
/// to that AOR's route; indirections that loop end; a GRUU stored as the URI is a route
/// without a Fetch (§6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aor_indirections_are_followed_and_loops_end() {
    use reload_usages::sip::aor;
    use reload_wire::Destination;
    let nodes = inproc::overlay(5, 0, None).await;
    let opts = reload_wire::DecodeOptions::default();
    let (n1, n2, n3, n4) = (&nodes[1], &nodes[2], &nodes[3], &nodes[4]);
    // user3 is reachable at its peer; user2 forwards to user3; user1 to user2.
    registry::register(&n3.handle, &n3.user, n3.node_id, "", 300)
        .await
        .unwrap();
    registry::register_uri(
        &n2.handle,
        &n2.user,
        n2.node_id,
        &format!("sip:{}", n3.user),
        300,
    )
    .await
    .unwrap();
    registry::register_uri(&n1.handle, &n1.user, n1.node_id, &n2.user, 300)
        .await
        .unwrap();
    let t = registry::resolve(&n4.handle, &n1.user, &opts)
        .await
        .unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].destinations, vec![Destination::Node(n3.node_id)]);
    assert_eq!(t[0].aor, n3.user, "found through two indirections");
    // A loop: user4 -> user1 -> user2 -> user3 is fine; make user3 point back instead.
    registry::register_uri(&n3.handle, &n3.user, n3.node_id, &n1.user, 300)
        .await
        .unwrap();
    match registry::resolve(&n4.handle, &n1.user, &opts).await {
        Err(registry::LookupError::NotFound(_)) => {}
        other => panic!("a loop of indirections must end with nothing found: {other:?}"),
    }
    // A GRUU as the URI: its destination list is the route, whoever it names.
    let gruu = aor::gruu(&n4.user, &[Destination::Node(n4.node_id)]);
    registry::register_uri(&n3.handle, &n3.user, n3.node_id, &gruu, 300)
        .await
        .unwrap();
    let t = registry::resolve(&n1.handle, &n3.user, &opts)
        .await
        .unwrap();
    assert_eq!(t[0].destinations, vec![Destination::Node(n4.node_id)]);
}

/// RFC 7904 §4.1, §6: a request for a GRUU goes to the peer its destination list names,
/// with no lookup, and that peer hands it to its registered UA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gruu_reaches_its_peer_without_a_lookup() {
    use reload_usages::sip::aor;
    let t = two_front_ends().await;
    let node_b = &t.nodes[3];
    let (alice, bob) = (Ua::new("alice").await, Ua::new("bob").await);
    // Bob's UA supports GRUU and names its instance (RFC 5627 §4.1): the 200 gives it
    // its GRUU (pub-gruu) — the AOR with `gr` = the destination list to peer B (RFC 7904
    // §6) and a tag of the instance.
    let instance = "\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\"";
    let with_instance = |ua: &Ua, instance: &str, cseq: u32| -> String {
        register(ua, &t.bob, 300, cseq).replace(
            &format!("Contact: <sip:ua@{}>", ua.addr()),
            &format!(
                "Supported: gruu\nContact: <sip:ua@{}>;+sip.instance={instance}",
                ua.addr()
            ),
        )
    };
    bob.send(t.b.local_addr(), &with_instance(&bob, instance, 1))
        .await;
    let ok = bob.recv_response().await;
    assert_eq!(ok.status_code, StatusCode::OK);
    let to_b = [reload_wire::Destination::Node(node_b.node_id)];
    let gruu = aor::instance_gruu(&t.bob, &to_b, instance);
    assert!(gruu.starts_with(&aor::gruu(&t.bob, &to_b)), "{gruu}");
    let contact = ok.contact_header().unwrap().value().to_string();
    assert!(
        contact.contains(&format!("pub-gruu=\"{gruu}\"")),
        "{contact}"
    );
    assert!(
        contact.contains(&format!("+sip.instance={instance}")),
        "{contact}"
    );
    // A second instance of bob registers after it: its own GRUU (RFC 5627 §5.4), and
    // calls to the AOR now go to it — but the first GRUU still reaches the first UA.
    let bob2 = Ua::new("bob2").await;
    let instance2 = "\"<urn:uuid:00000000-0000-0000-0000-000000000002>\"";
    bob2.send(t.b.local_addr(), &with_instance(&bob2, instance2, 1))
        .await;
    let ok2 = bob2.recv_response().await;
    assert_eq!(ok2.status_code, StatusCode::OK);
    let gruu2 = aor::instance_gruu(&t.bob, &to_b, instance2);
    assert_ne!(gruu, gruu2);
    assert!(
        ok2.to_string().contains(&format!("pub-gruu=\"{gruu2}\"")),
        "{ok2}"
    );
    let target = gruu.trim_start_matches("sip:");
    let inv = invite_reaches(&t, &alice, target, "g1", &bob).await;
    busy(&bob, &t.b, &inv, "b", &alice).await;
    // The AOR itself: the newest binding, the second instance.
    let inv = invite_reaches(&t, &alice, &t.bob, "g2", &bob2).await;
    busy(&bob2, &t.b, &inv, "b2", &alice).await;
}

/// RFC 7904 §3.2 with RFC 3261 §10.3: several user agents of the peer's one user register
/// at it; the overlay holds one entry (the route to this peer) for all of them, the 200
/// lists every binding, calls go to the newest, and removing one binding keeps the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_user_agents_of_one_user_share_one_overlay_entry() {
    let t = two_front_ends().await;
    let node_b = &t.nodes[3];
    let (alice, desk, mobile) = (
        Ua::new("alice").await,
        Ua::new("desk").await,
        Ua::new("mobile").await,
    );
    desk.send(t.b.local_addr(), &register(&desk, &t.bob, 300, 1))
        .await;
    assert_eq!(desk.recv_response().await.status_code, StatusCode::OK);
    mobile
        .send(t.b.local_addr(), &register(&mobile, &t.bob, 300, 1))
        .await;
    let ok = mobile.recv_response().await;
    assert_eq!(ok.status_code, StatusCode::OK);
    let listed: Vec<String> = ok
        .headers
        .iter()
        .filter_map(|h| match h {
            Header::Contact(c) => Some(c.value().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(listed.len(), 2, "every binding in the 200: {listed:?}");
    assert!(listed.iter().any(|c| c.contains(&desk.addr().to_string())));
    assert!(
        listed
            .iter()
            .any(|c| c.contains(&mobile.addr().to_string()))
    );
    assert_eq!(t.b.contacts().len(), 2);
    let opts = reload_wire::DecodeOptions::default();
    let found = registry::resolve(&t.nodes[0].handle, &t.bob, &opts)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "one overlay entry for the user: {found:?}");
    assert_eq!(
        found[0].destinations,
        vec![reload_wire::Destination::Node(node_b.node_id)]
    );
    // A call goes to the newest binding (no forking yet).
    let inv = invite_reaches(&t, &alice, &t.bob, "m1", &mobile).await;
    busy(&mobile, &t.b, &inv, "m", &alice).await;
    // The mobile's binding goes; the desk phone still gets calls, the entry stays.
    mobile
        .send(t.b.local_addr(), &register(&mobile, &t.bob, 0, 2))
        .await;
    assert_eq!(mobile.recv_response().await.status_code, StatusCode::OK);
    assert_eq!(t.b.contacts().len(), 1);
    invite_reaches(&t, &alice, &t.bob, "m2", &desk).await;
    assert!(
        registry::resolve(&t.nodes[0].handle, &t.bob, &opts)
            .await
            .is_ok()
    );
}

/// A registered AOR whose peer has left: the caller's peer cannot AppAttach to it and
/// answers 503 with a Warning that says why (not a hang, not a 404); the same once every
/// other peer is gone too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_peer_that_cannot_be_reached_gets_503_with_the_reason() {
    let t = two_front_ends().await;
    let (alice, bob) = (Ua::new("alice").await, Ua::new("bob").await);
    bob.send(t.b.local_addr(), &register(&bob, &t.bob, 300, 1))
        .await;
    assert_eq!(bob.recv_response().await.status_code, StatusCode::OK);
    t.nodes[3].handle.shutdown().await;
    alice
        .send(t.a.local_addr(), &invite(&alice, &t.alice, &t.bob, "u1"))
        .await;
    let r = alice.recv_response().await;
    assert_eq!(r.status_code, StatusCode::ServiceUnavailable, "{r}");
    assert!(
        warning(&r).contains("could be reached"),
        "the reason in a Warning: {r}"
    );
    for i in [0, 2, 4] {
        t.nodes[i].handle.shutdown().await;
    }
    alice
        .send(t.a.local_addr(), &invite(&alice, &t.alice, &t.bob, "u2"))
        .await;
    let r = alice.recv_response().await;
    assert_eq!(r.status_code, StatusCode::ServiceUnavailable, "{r}");
    assert!(!warning(&r).is_empty(), "the reason in a Warning: {r}");
}

/// RFC 7904 §3.3 (the registrant checks the domain before storing) and §4.1 (a caller
/// looks up only AORs of a domain the overlay hosts): an overlay whose
/// `sip:domain-restriction` admits `other.example` only. The peers' own domain is not
/// admitted: their REGISTERs get 403 saying why (nothing is stored); a call to an AOR of
/// a domain the overlay does not host gets 404 without a lookup, one to an admitted domain
/// is looked up (and not found).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_domain_restriction_is_checked_before_registering_and_before_looking_up() {
    let ca = inproc::pki::TestCa::new(false);
    let mut config = ca.storage_config();
    config.sip_domain_restriction = Some(reload_proto::config::NamePatterns {
        enable: true,
        patterns: vec![r"other\.example".into()],
    });
    let nodes = inproc::overlay(3, 0, Some((ca, config))).await;
    let front = front_end(&nodes[1]).await;
    let ua = Ua::new("ua").await;
    ua.send(front.local_addr(), &register(&ua, &nodes[1].user, 300, 1))
        .await;
    let r = ua.recv_response().await;
    assert_eq!(r.status_code, StatusCode::Forbidden, "{r}");
    assert!(r.to_string().contains("sip:domain-restriction"), "{r}");
    assert!(front.contacts().is_empty());
    ua.send(
        front.local_addr(),
        &invite(&ua, &nodes[1].user, "bob@elsewhere.example", "d1"),
    )
    .await;
    let r = ua.recv_response().await;
    assert_eq!(r.status_code, StatusCode::NotFound);
    assert!(warning(&r).contains("not a domain of this overlay"), "{r}");
    ua.send(
        front.local_addr(),
        &invite(&ua, &nodes[1].user, "bob@other.example", "d2"),
    )
    .await;
    let r = ua.recv_response().await;
    assert_eq!(r.status_code, StatusCode::NotFound);
    assert!(warning(&r).contains("not registered in the overlay"), "{r}");
}

/// User agents that know only their proxy's address use it as their domain (SIPp's
/// built-in scenarios send `INVITE sip:bob@PROXY-IP:PORT`): a URI whose host is the front
/// end's own address names that user in the overlay's domain (RFC 3261 §16.4) — for
/// REGISTER and for calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_ends_address_stands_for_the_overlay_domain() {
    let t = two_front_ends().await;
    let (alice, bob) = (Ua::new("alice").await, Ua::new("bob").await);
    let user = |aor: &str| aor.split('@').next().unwrap().to_string();
    let bob_at_b = format!("{}@{}", user(&t.bob), t.b.local_addr());
    bob.send(t.b.local_addr(), &register(&bob, &bob_at_b, 300, 1))
        .await;
    let ok = bob.recv_response().await;
    assert_eq!(ok.status_code, StatusCode::OK, "{ok}");
    assert_eq!(t.b.contacts().len(), 1);
    // Another user at B's address is still someone else: 403.
    let other = format!("{}@{}", user(&t.alice), t.b.local_addr());
    bob.send(t.b.local_addr(), &register(&bob, &other, 300, 2))
        .await;
    assert_eq!(bob.recv_response().await.status_code, StatusCode::Forbidden);
    // Alice calls bob "at her proxy": looked up in the overlay as bob's AOR.
    let bob_at_a = format!("{}@{}", user(&t.bob), t.a.local_addr());
    let inv = invite_reaches(&t, &alice, &bob_at_a, "p1", &bob).await;
    busy(&bob, &t.b, &inv, "p", &alice).await;
}

/// What comes back within 2 s, 100 Trying skipped, if anything.
async fn answer_text(ua: &Ua) -> Option<String> {
    let mut buf = vec![0u8; 65535];
    loop {
        let got = tokio::time::timeout(Duration::from_secs(2), ua.sock.recv_from(&mut buf)).await;
        let (n, _) = got.ok()?.ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if !text.starts_with("SIP/2.0 100") {
            return Some(text);
        }
    }
}

/// Tortuous and invalid requests in the manner of RFC 4475 (written here): valid ones are
/// handled (compact and case-varied header names, folding, LWS around separators, escapes,
/// a missing Max-Forwards, a 60 kB header); invalid ones get the answer RFC 3261 gives
/// them — 400 for a body shorter than its Content-Length or a negative or doubled one
/// (§18.3: bytes beyond it are discarded), a CSeq method other than the request's
/// (§8.1.1.5), a malformed Via, an unterminated quoted string in From or To; 416 for
/// an unknown URI scheme, 483 for Max-Forwards 0, 420 with Unsupported for Proxy-Require
/// (§16.3); 505 for another SIP version; 501 with Allow for an extension method (the SIP
/// parser has no type for one, so it cannot be proxied); nothing for a stray response or
/// a broken request line. The front end serves on after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tortuous_and_invalid_requests_get_the_answers_of_rfc_3261() {
    let t = two_front_ends().await;
    let ua = Ua::new("tortured").await;
    let a = ua.addr();
    let to = t.a.local_addr();
    let alice = t.alice.clone();
    let cases: Vec<(&str, Option<u16>, String)> = vec![
        (
            "compact forms",
            Some(200),
            format!(
                "REGISTER sip:test.example.org SIP/2.0\nv: SIP/2.0/UDP {a};branch=z9hG4bKc1\nf: <sip:{alice}>;tag=1\nt: <sip:{alice}>\ni: c1\nCSeq: 1 REGISTER\nm: <sip:x@{a}>\nMax-Forwards: 70\nExpires: 60\nl: 0\n\n"
            ),
        ),
        (
            "header case",
            Some(404),
            format!(
                "OPTIONS sip:nobody@test.example.org SIP/2.0\nvIa: SIP/2.0/UDP {a};branch=z9hG4bKc2\nFROM: <sip:x@y>;tag=1\nto: <sip:nobody@test.example.org>\ncall-id: c2\ncseq: 1 OPTIONS\nMax-Forwards: 70\ncontent-length: 0\n\n"
            ),
        ),
        (
            "folded header",
            Some(404),
            format!(
                "OPTIONS sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc3\nFrom: <sip:x@y>;tag=1\nTo:\n  <sip:nobody@test.example.org>\nCall-ID: c3\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"
            ),
        ),
        (
            "escaped user",
            Some(404),
            format!(
                "OPTIONS sip:n%6fbody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc4\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c4\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"
            ),
        ),
        (
            "unknown scheme",
            Some(416),
            format!(
                "OPTIONS foo:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc5\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c5\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"
            ),
        ),
        (
            "max-forwards 0",
            Some(483),
            format!(
                "INVITE sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc6\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c6\nCSeq: 1 INVITE\nMax-Forwards: 0\nContact: <sip:x@{a}>\nContent-Length: 0\n\n"
            ),
        ),
        (
            "content-length too big",
            Some(400),
            format!(
                "OPTIONS sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc7\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c7\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 500\n\nshort"
            ),
        ),
        (
            "bytes beyond the body",
            Some(404),
            format!(
                "OPTIONS sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc21\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c21\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\ntrailing bytes, discarded"
            ),
        ),
        (
            "content-length negative",
            Some(400),
            format!(
                "OPTIONS sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc8\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c8\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: -999\n\n"
            ),
        ),
        (
            "unterminated quote",
            Some(400),
            format!(
                "OPTIONS sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc11\nFrom: \"Bob <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c11\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"
            ),
        ),
        (
            "quoted escapes",
            Some(404),
            format!(
                "OPTIONS sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc22\nFrom: \"B\\\"o\\\\b\" <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c22\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"
            ),
        ),
        (
            "cseq method mismatch",
            Some(400),
            format!(
                "OPTIONS sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc9\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c9\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n"
            ),
        ),
        (
            "version 7.0",
            Some(505),
            format!(
                "OPTIONS sip:nobody@test.example.org SIP/7.0\nVia: SIP/7.0/UDP {a};branch=z9hG4bKc10\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c10\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"
            ),
        ),
        (
            "unknown method",
            Some(501),
            format!(
                "NEWMETHOD sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc12\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c12\nCSeq: 1 NEWMETHOD\nMax-Forwards: 70\nContent-Length: 0\n\n"
            ),
        ),
        (
            "stray response",
            None,
            format!(
                "SIP/2.0 200 OK\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc13\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>;tag=2\nCall-ID: c13\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n"
            ),
        ),
        (
            "huge header",
            Some(404),
            format!(
                "OPTIONS sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc14\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c14\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nSubject: {}\nContent-Length: 0\n\n",
                "x".repeat(60000)
            ),
        ),
        (
            "no max-forwards",
            Some(404),
            format!(
                "OPTIONS sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc15\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c15\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n"
            ),
        ),
        (
            "two content-lengths",
            Some(400),
            format!(
                "OPTIONS sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc16\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c16\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\nContent-Length: 10\n\n"
            ),
        ),
        (
            "bad via",
            Some(400),
            "OPTIONS sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c17\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n".to_string(),
        ),
        (
            "proxy-require",
            Some(420),
            format!(
                "OPTIONS sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKc19\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: c19\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nProxy-Require: foo, bar\nContent-Length: 0\n\n"
            ),
        ),
        (
            "lws headers",
            Some(404),
            format!(
                "OPTIONS sip:nobody@test.example.org SIP/2.0\nVia :  SIP/2.0/UDP   {a} ; branch = z9hG4bKc20\nFrom  :  <sip:x@y> ; tag = 1\nTo : <sip:nobody@test.example.org>\nCall-ID : c20\nCSeq :  1   OPTIONS\nMax-Forwards : 70\nContent-Length : 0\n\n"
            ),
        ),
        (
            "lws everywhere",
            None,
            format!(
                "OPTIONS  sip:nobody@test.example.org  SIP/2.0\nVia :  SIP/2.0/UDP   {a} ; branch = z9hG4bKc18\nFrom  :  <sip:x@y> ; tag = 1\nTo : <sip:nobody@test.example.org>\nCall-ID : c18\nCSeq :  1   OPTIONS\nMax-Forwards : 70\nContent-Length : 0\n\n"
            ),
        ),
    ];
    for (i, (name, want, msg)) in cases.iter().enumerate() {
        ua.send(to, msg).await;
        let got = answer_text(&ua).await;
        let line = got
            .as_deref()
            .map(|t| t.lines().next().unwrap_or("").to_string());
        match want {
            Some(code) => {
                let text = got.unwrap_or_else(|| panic!("{name}: no answer"));
                assert!(
                    text.starts_with(&format!("SIP/2.0 {code} ")),
                    "{name}: {text}"
                );
                let call_id = |t: &str| {
                    t.lines().find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        let name = name.trim().to_ascii_lowercase();
                        (name == "call-id" || name == "i").then(|| value.trim().to_string())
                    })
                };
                assert!(
                    call_id(&text).is_some() && call_id(&text) == call_id(msg),
                    "{name}: the answer carries the request's Call-ID: {text}"
                );
                if *code == 501 {
                    assert!(text.contains("Allow: INVITE"), "{name}: {text}");
                    assert!(text.contains("CSeq: 1 NEWMETHOD"), "{name}: {text}");
                }
                if *code == 420 {
                    assert!(text.contains("Unsupported: foo, bar"), "{name}: {text}");
                }
            }
            None => assert_eq!(line, None, "{name}"),
        }
        // Still serving.
        let probe = format!(
            "OPTIONS sip:nobody@test.example.org SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKp{i}\nFrom: <sip:x@y>;tag=1\nTo: <sip:nobody@test.example.org>\nCall-ID: p{i}\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"
        );
        ua.send(to, &probe).await;
        let text = answer_text(&ua).await.unwrap_or_default();
        assert!(text.starts_with("SIP/2.0 404 "), "after {name}: {text}");
    }
}
