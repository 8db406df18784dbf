//! The ICE agent this crate builds on (`rtc-ice` 0.21.1, webrtc-rs's sans-IO agent), driven
//! the way the core will drive it: no sockets, a virtual clock, datagrams handed between
//! two agents in memory (RFC 8445 §6–§8: checks, nomination, keepalives). What we rely on
//! is asserted here, so that an upgrade that changes it fails a test:
//! - candidates are ours (it gathers nothing), component 1;
//! - both sides reach Connected and select the same pair (one host candidate each; and
//!   with a server-reflexive candidate that leads nowhere, the host pair still wins);
//! - an agent with no working pair ends Failed within its timeouts (and the test bounds
//!   the virtual time).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc_ice::candidate::candidate_host::CandidateHostConfig;
use rtc_ice::candidate::candidate_server_reflexive::CandidateServerReflexiveConfig;
use rtc_ice::candidate::{Candidate, CandidateConfig};
use rtc_ice::mdns::MulticastDnsMode;
use rtc_ice::network_type::NetworkType;
use rtc_ice::state::ConnectionState;
use rtc_ice::{Agent, AgentConfig, Event};
use rtc_shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use sansio::Protocol as _;

fn provider() -> Arc<dyn rtc_ice::crypto::RTCCryptoProvider> {
    Arc::new(rtc_ice::crypto::providers::AwsLcRsProvider::new())
}

fn agent(now: Instant, controlling: bool) -> Agent {
    Agent::new(
        now,
        Arc::new(AgentConfig {
            multicast_dns_mode: MulticastDnsMode::Disabled,
            network_types: vec![NetworkType::Udp4, NetworkType::Udp6],
            is_controlling: controlling,
            max_binding_requests: Some(40),
            ..Default::default()
        }),
        provider(),
    )
    .expect("agent")
}

fn base(addr: SocketAddr) -> CandidateConfig {
    CandidateConfig {
        network: "udp".into(),
        address: addr.ip().to_string(),
        port: addr.port(),
        component: 1,
        ..Default::default()
    }
}

fn host(addr: SocketAddr) -> Candidate {
    CandidateHostConfig {
        base_config: base(addr),
        ..Default::default()
    }
    .new_candidate_host()
    .expect("host candidate")
}

fn srflx(mapped: SocketAddr, local: SocketAddr) -> Candidate {
    CandidateServerReflexiveConfig {
        base_config: base(mapped),
        rel_addr: local.ip().to_string(),
        rel_port: local.port(),
        url: None,
    }
    .new_candidate_server_reflexive()
    .expect("srflx candidate")
}

/// Runs both agents on a virtual clock, delivering each datagram whose destination is
/// one of `reachable` (an address the other agent owns); the rest is lost. Returns the
/// virtual time it took both to reach a final state, and their states.
fn run(
    a: &mut Agent,
    b: &mut Agent,
    a_addrs: &[SocketAddr],
    b_addrs: &[SocketAddr],
    start: Instant,
    limit: Duration,
) -> (Duration, ConnectionState, ConnectionState) {
    let mut now = start;
    let (mut sa, mut sb) = (ConnectionState::New, ConnectionState::New);
    let done =
        |s: ConnectionState| matches!(s, ConnectionState::Connected | ConnectionState::Failed);
    while now.duration_since(start) < limit && !(done(sa) && done(sb)) {
        // Deliver everything in flight (several rounds: answers beget answers).
        for _ in 0..16 {
            let mut moved = false;
            let out_a: Vec<_> = std::iter::from_fn(|| a.poll_write()).collect();
            let out_b: Vec<_> = std::iter::from_fn(|| b.poll_write()).collect();
            for (msgs, to, to_addrs) in [(out_a, &mut *b, b_addrs), (out_b, &mut *a, a_addrs)] {
                for m in msgs {
                    moved = true;
                    if to_addrs.contains(&m.transport.peer_addr) {
                        let _ = to.handle_read(TaggedBytesMut {
                            now,
                            transport: TransportContext {
                                local_addr: m.transport.peer_addr,
                                peer_addr: m.transport.local_addr,
                                ecn: None,
                                transport_protocol: TransportProtocol::UDP,
                            },
                            message: BytesMut::from(&m.message[..]),
                        });
                    }
                }
            }
            if !moved {
                break;
            }
        }
        for (ag, st) in [(&mut *a, &mut sa), (&mut *b, &mut sb)] {
            while let Some(e) = ag.poll_event() {
                if let Event::ConnectionStateChange(s) = e.event {
                    *st = s;
                }
            }
        }
        // The next timer of either (or 10 ms).
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_millis(10))
            .max(now + Duration::from_millis(1));
        now = next;
        let _ = a.handle_timeout(now);
        let _ = b.handle_timeout(now);
    }
    (now.duration_since(start), sa, sb)
}

fn start_pair(now: Instant, a_cands: Vec<Candidate>, b_cands: Vec<Candidate>) -> (Agent, Agent) {
    let (mut a, mut b) = (agent(now, true), agent(now, false));
    for c in &a_cands {
        a.add_local_candidate(c.clone()).unwrap();
        b.add_remote_candidate(c.clone()).unwrap();
    }
    for c in &b_cands {
        b.add_local_candidate(c.clone()).unwrap();
        a.add_remote_candidate(c.clone()).unwrap();
    }
    let ac = a.get_local_credentials().clone();
    let bc = b.get_local_credentials().clone();
    b.start_connectivity_checks(now, false, ac.ufrag.clone(), ac.pwd.clone())
        .unwrap();
    a.start_connectivity_checks(now, true, bc.ufrag, bc.pwd)
        .unwrap();
    (a, b)
}

#[test]
fn two_agents_connect_over_host_candidates_and_agree_on_the_pair() {
    let now = Instant::now();
    let (pa, pb): (SocketAddr, SocketAddr) = (
        "10.0.0.1:6084".parse().unwrap(),
        "10.0.0.2:6084".parse().unwrap(),
    );
    let (mut a, mut b) = start_pair(now, vec![host(pa)], vec![host(pb)]);
    let (took, sa, sb) = run(&mut a, &mut b, &[pa], &[pb], now, Duration::from_secs(60));
    assert_eq!(
        (sa, sb),
        (ConnectionState::Connected, ConnectionState::Connected),
        "after {took:?}"
    );
    let (la, ra) = a.get_selected_candidate_pair().expect("a selected a pair");
    let (lb, rb) = b.get_selected_candidate_pair().expect("b selected a pair");
    assert_eq!((la.addr(), ra.addr()), (pa, pb));
    assert_eq!((lb.addr(), rb.addr()), (pb, pa));
}

#[test]
fn an_unreachable_candidate_does_not_stop_the_reachable_pair() {
    let now = Instant::now();
    let (pa, pb): (SocketAddr, SocketAddr) = (
        "10.0.0.1:6084".parse().unwrap(),
        "10.0.0.2:6084".parse().unwrap(),
    );
    // A server-reflexive address of A's that no datagram reaches.
    let mapped: SocketAddr = "198.51.100.9:40000".parse().unwrap();
    let (mut a, mut b) = start_pair(now, vec![host(pa), srflx(mapped, pa)], vec![host(pb)]);
    let (_, sa, sb) = run(&mut a, &mut b, &[pa], &[pb], now, Duration::from_secs(60));
    assert_eq!(
        (sa, sb),
        (ConnectionState::Connected, ConnectionState::Connected)
    );
    let (la, ra) = a.get_selected_candidate_pair().unwrap();
    assert_eq!((la.addr(), ra.addr()), (pa, pb));
}

#[test]
fn with_no_path_both_agents_fail_within_their_timeouts() {
    let now = Instant::now();
    let (pa, pb): (SocketAddr, SocketAddr) = (
        "10.0.0.1:6084".parse().unwrap(),
        "10.0.0.2:6084".parse().unwrap(),
    );
    let (mut a, mut b) = start_pair(now, vec![host(pa)], vec![host(pb)]);
    // Nothing is delivered: neither owns the addresses the other sends to.
    let (took, sa, sb) = run(&mut a, &mut b, &[], &[], now, Duration::from_secs(120));
    assert_eq!(
        (sa, sb),
        (ConnectionState::Failed, ConnectionState::Failed),
        "after {took:?}"
    );
    assert!(
        took <= Duration::from_secs(60),
        "failed only after {took:?}"
    );
}
