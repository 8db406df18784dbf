//! `reload_nat::ice`: the RELOAD profile of ICE (RFC 6940 §6.5.1.3–§6.5.1.10) as the
//! core drives it — candidates through the Attach encoding and back, priorities of
//! RFC 5245 §4.1.2, two sessions on a virtual clock with datagrams handed over in memory
//! (and optionally through a simulated NAT), failure with a report of the pairs tried.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use reload_nat::ice::{
    Candidate, CandidateKind, IceEvent, IceSession, IceState, LocalAddress, local_candidates,
    priority,
};
use reload_wire::link::{CandType, IceCandidate, OverlayLinkType};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn host(a: SocketAddr) -> LocalAddress {
    LocalAddress {
        addr: a,
        kind: CandidateKind::Host,
        base: a,
    }
}

const LINK: OverlayLinkType = OverlayLinkType::DTLS_UDP_SR;

#[test]
fn priorities_follow_rfc5245_section_4_1_2_1() {
    // host, local preference 65535, component 1: the value RFC 5245's examples use.
    assert_eq!(priority(CandidateKind::Host, 65535), 2_130_706_431);
    assert_eq!(
        priority(CandidateKind::ServerReflexive, 65535),
        1_694_498_815
    );
    assert_eq!(priority(CandidateKind::Relayed, 0), 255);
    let cands = local_candidates(&[
        host(addr("10.0.0.1:6084")),
        host(addr("192.168.1.1:6084")),
        LocalAddress {
            addr: addr("198.51.100.7:40000"),
            kind: CandidateKind::ServerReflexive,
            base: addr("10.0.0.1:6084"),
        },
        // The same reflexive address learnt twice: one candidate.
        LocalAddress {
            addr: addr("198.51.100.7:40000"),
            kind: CandidateKind::ServerReflexive,
            base: addr("10.0.0.1:6084"),
        },
    ]);
    assert_eq!(cands.len(), 3);
    // Distinct priorities (RFC 8445 §5.1.2.1: local preferences must be unique).
    let mut p: Vec<u32> = cands.iter().map(|c| c.priority).collect();
    p.dedup();
    assert_eq!(p.len(), 3);
    assert!(cands[0].priority > cands[1].priority && cands[1].priority > cands[2].priority);
    // Different bases → different foundations; the reflexive one names its base.
    assert_ne!(cands[0].foundation, cands[1].foundation);
    assert_eq!(cands[2].related, Some(addr("10.0.0.1:6084")));
}

#[test]
fn candidates_survive_the_attach_encoding() {
    let cands = local_candidates(&[
        host(addr("10.0.0.1:6084")),
        LocalAddress {
            addr: addr("198.51.100.7:40000"),
            kind: CandidateKind::ServerReflexive,
            base: addr("10.0.0.1:6084"),
        },
        LocalAddress {
            addr: addr("[2001:db8::1]:6084"),
            kind: CandidateKind::Host,
            base: addr("[2001:db8::1]:6084"),
        },
    ]);
    for c in &cands {
        let w = c.to_wire(LINK);
        assert_eq!(w.overlay_link, LINK);
        assert_eq!(Candidate::from_wire(&w).as_ref(), Some(c));
    }
    assert_eq!(cands[1].to_wire(LINK).cand_type, CandType::SRFLX);
}

#[test]
fn unusable_wire_candidates_are_refused() {
    let good = local_candidates(&[host(addr("10.0.0.1:6084"))])[0].to_wire(LINK);
    let mut bad: Vec<IceCandidate> = Vec::new();
    let mut c = good.clone();
    c.priority = 0;
    bad.push(c);
    let mut c = good.clone();
    c.foundation = bytes::Bytes::from_static(b"");
    bad.push(c);
    let mut c = good.clone();
    c.foundation = bytes::Bytes::from_static(b"a b");
    bad.push(c);
    let mut c = good.clone();
    c.addr_port = addr("0.0.0.0:6084").into();
    bad.push(c);
    let mut c = good.clone();
    c.addr_port = addr("10.0.0.1:0").into();
    bad.push(c);
    let mut c = good;
    c.cand_type = CandType::INVALID;
    bad.push(c);
    for c in bad {
        assert_eq!(Candidate::from_wire(&c), None, "{c:?}");
    }
}

/// A network between the two sessions: `nat` rewrites the source of datagrams leaving
/// `inside` to a mapping (endpoint-independent), and admits datagrams to a mapping only
/// from where the inside host has sent (address- and port-restricted filtering) — or
/// from anyone when `open`.
struct Net {
    /// inside address → public mapping.
    nat: HashMap<SocketAddr, SocketAddr>,
    /// (mapping, remote) pairs the inside host has sent to.
    sent: std::collections::HashSet<(SocketAddr, SocketAddr)>,
    open: bool,
}

impl Net {
    fn plain() -> Net {
        Net {
            nat: HashMap::new(),
            sent: Default::default(),
            open: true,
        }
    }

    /// Returns the (from, to) the datagram arrives with, or `None` when it is lost.
    fn carry(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        owners: &[SocketAddr],
    ) -> Option<(SocketAddr, SocketAddr)> {
        let from = match self.nat.get(&from) {
            Some(m) => {
                self.sent.insert((*m, to));
                *m
            }
            None => from,
        };
        let to = match self.nat.iter().find(|(_, m)| **m == to) {
            Some((inside, m)) => {
                if !self.open && !self.sent.contains(&(*m, from)) {
                    return None;
                }
                *inside
            }
            None => to,
        };
        owners.contains(&to).then_some((from, to))
    }
}

/// Runs two sessions until both have an outcome (or `limit` of virtual time).
fn run(
    a: &mut IceSession,
    b: &mut IceSession,
    a_socks: &[SocketAddr],
    b_socks: &[SocketAddr],
    net: &mut Net,
    start: Instant,
    limit: Duration,
) -> (Option<IceEvent>, Option<IceEvent>, Instant) {
    let mut now = start;
    let (mut ea, mut eb) = (None, None);
    while now.duration_since(start) < limit && (ea.is_none() || eb.is_none()) {
        for _ in 0..32 {
            let mut moved = false;
            while let Some((from, to, d)) = a.poll_transmit() {
                moved = true;
                if let Some((f, t)) = net.carry(from, to, b_socks) {
                    b.handle_stun(now, t, f, &d);
                }
            }
            while let Some((from, to, d)) = b.poll_transmit() {
                moved = true;
                if let Some((f, t)) = net.carry(from, to, a_socks) {
                    a.handle_stun(now, t, f, &d);
                }
            }
            if !moved {
                break;
            }
        }
        while let Some(e) = a.poll_event() {
            ea.get_or_insert(e);
        }
        while let Some(e) = b.poll_event() {
            eb.get_or_insert(e);
        }
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_millis(50))
            .max(now + Duration::from_millis(1));
        now = next;
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    (ea, eb, now)
}

const UFRAG_A: &str = "ufragA1";
const PWD_A: &str = "passwordAAAAAAAAAAAAAAAA";
const UFRAG_B: &str = "ufragB2";
const PWD_B: &str = "passwordBBBBBBBBBBBBBBBB";

/// A (controlling, the Attach sender) and B, their candidates exchanged through the
/// Attach encoding, as the core does.
fn attach(
    now: Instant,
    a_addrs: &[LocalAddress],
    b_addrs: &[LocalAddress],
) -> (IceSession, IceSession) {
    let wire = |l: &[LocalAddress]| -> Vec<Candidate> {
        local_candidates(l)
            .iter()
            .map(|c| Candidate::from_wire(&c.to_wire(LINK)).unwrap())
            .collect()
    };
    let mut a = IceSession::new(now, true, UFRAG_A, PWD_A, &local_candidates(a_addrs)).unwrap();
    let mut b = IceSession::new(now, false, UFRAG_B, PWD_B, &local_candidates(b_addrs)).unwrap();
    // B receives the Attach, answers, and starts; A starts on the answer.
    b.start(now, UFRAG_A, PWD_A, &wire(a_addrs)).unwrap();
    a.start(now, UFRAG_B, PWD_B, &wire(b_addrs)).unwrap();
    (a, b)
}

#[test]
fn two_sessions_connect_on_host_candidates() {
    let now = Instant::now();
    let (pa, pb) = (addr("10.0.0.1:6084"), addr("10.0.0.2:6084"));
    let (mut a, mut b) = attach(now, &[host(pa)], &[host(pb)]);
    let (ea, eb, _) = run(
        &mut a,
        &mut b,
        &[pa],
        &[pb],
        &mut Net::plain(),
        now,
        Duration::from_secs(60),
    );
    let Some(IceEvent::Connected(sa)) = ea else {
        panic!("A: {ea:?}")
    };
    let Some(IceEvent::Connected(sb)) = eb else {
        panic!("B: {eb:?}")
    };
    assert_eq!((sa.base, sa.remote.addr), (pa, pb));
    assert_eq!((sb.base, sb.remote.addr), (pb, pa));
    assert_eq!(sa.local.kind, CandidateKind::Host);
    assert_eq!(a.state(), IceState::Connected);
    // Keepalives keep flowing on the selected pair (RFC 5245 §10) and nothing fails.
    let (ea, eb, _) = run(
        &mut a,
        &mut b,
        &[pa],
        &[pb],
        &mut Net::plain(),
        now,
        Duration::from_secs(120),
    );
    assert_eq!((ea, eb), (None, None));
    assert_eq!(a.state(), IceState::Connected);
}

#[test]
fn behind_a_restricted_nat_the_reflexive_candidate_is_selected() {
    // B sits behind a port-restricted NAT (198.51.100.1:50000 is its mapping, learnt
    // from a STUN server); A is public. Host-to-host cannot work (10.1.0.2 is private and
    // unreachable); A reaches B's mapping once B has sent to A.
    let now = Instant::now();
    let pa = addr("198.51.100.10:6084");
    let pb = addr("10.1.0.2:6084");
    let mapped = addr("198.51.100.1:50000");
    let mut net = Net {
        nat: HashMap::from([(pb, mapped)]),
        sent: Default::default(),
        open: false,
    };
    let b_addrs = [
        host(pb),
        LocalAddress {
            addr: mapped,
            kind: CandidateKind::ServerReflexive,
            base: pb,
        },
    ];
    let (mut a, mut b) = attach(now, &[host(pa)], &b_addrs);
    let (ea, eb, _) = run(
        &mut a,
        &mut b,
        &[pa],
        &[pb],
        &mut net,
        now,
        Duration::from_secs(60),
    );
    let Some(IceEvent::Connected(sa)) = ea else {
        panic!("A: {ea:?}")
    };
    assert!(matches!(eb, Some(IceEvent::Connected(_))), "B: {eb:?}");
    assert_eq!(sa.remote.addr, mapped, "A sends to B's mapping");
}

#[test]
fn with_no_path_the_session_fails_and_reports_the_pairs_tried() {
    let now = Instant::now();
    let (pa, pb) = (addr("10.0.0.1:6084"), addr("10.0.0.2:6084"));
    let (mut a, mut b) = attach(now, &[host(pa)], &[host(pb)]);
    // Nothing is delivered.
    let (ea, eb, at) = run(
        &mut a,
        &mut b,
        &[],
        &[],
        &mut Net::plain(),
        now,
        Duration::from_secs(120),
    );
    assert_eq!((ea, eb), (Some(IceEvent::Failed), Some(IceEvent::Failed)));
    assert!(at.duration_since(now) <= reload_nat::ice::CHECK_DEADLINE + Duration::from_secs(1));
    let report = a.pairs(at);
    assert_eq!(report.len(), 1);
    let line = report[0].to_string();
    assert!(
        line.starts_with("host 10.0.0.1:6084 → host 10.0.0.2:6084: failed"),
        "{line}"
    );
    assert!(report[0].checks_sent > 0 && report[0].answers_received == 0);
}

#[test]
fn bad_credentials_are_refused() {
    let now = Instant::now();
    let c = local_candidates(&[host(addr("10.0.0.1:6084"))]);
    assert!(IceSession::new(now, true, "ab", PWD_A, &c).is_err());
    assert!(IceSession::new(now, true, UFRAG_A, "short", &c).is_err());
    assert!(IceSession::new(now, true, "uf rag", PWD_A, &c).is_err());
    let mut s = IceSession::new(now, true, UFRAG_A, PWD_A, &c).unwrap();
    assert!(s.start(now, "", "", &[]).is_err());
}

proptest! {
    /// Whatever an Attach carries, reading its candidates never panics, and what is read
    /// encodes back to itself.
    #[test]
    fn any_wire_candidate_reads_without_panic(
        ip in any::<[u8; 4]>(), port in any::<u16>(), prio in any::<u32>(),
        foundation in proptest::collection::vec(any::<u8>(), 0..40), t in 0u8..6,
        rel in proptest::option::of((any::<[u8; 4]>(), any::<u16>())),
    ) {
        let w = IceCandidate {
            addr_port: SocketAddr::from((ip, port)).into(),
            overlay_link: LINK,
            foundation: bytes::Bytes::from(foundation),
            priority: prio,
            cand_type: CandType(t),
            rel_addr_port: rel.map(|(i, p)| SocketAddr::from((i, p)).into()),
            extensions: Vec::new(),
        };
        if let Some(c) = Candidate::from_wire(&w) {
            prop_assert_eq!(Candidate::from_wire(&c.to_wire(LINK)), Some(c));
        }
    }
}
