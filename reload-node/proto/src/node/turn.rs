//! TURN relays for ICE (RFC 6940 §9, RFC 5766): relayed candidates for the peers that no
//! direct or reflexive path reaches (a symmetric NAT facing a restricted one).
//!
//! For each configured TURN server ([`TurnServer`], e.g. coturn beside a public peer) and
//! each UDP socket of its address family, the node allocates a relayed address with
//! `rtc-turn`'s client (long-term credentials; the allocation and its permissions are
//! refreshed by the client). The relayed address then behaves like one of our sockets:
//! - ICE sessions offer it as a `relay` candidate; checks from it and DTLS over it are
//!   ordinary transmits whose local address is the relayed one — [`Node::poll_transmit`]
//!   hands them to the TURN client, which sends them to the server (Send indications,
//!   then ChannelData once bound);
//! - what the server relays to us (Data indications, ChannelData) is demultiplexed again
//!   as if it had arrived on the relayed address from the peer: STUN to the ICE sessions,
//!   DTLS to the link of that (relayed, peer) pair.
//!
//! Permissions are asked for every remote candidate of a session and for every peer data
//! comes from. An allocation that fails is tried again after [`RETRY`].

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc_shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc_turn::client::{Client, ClientConfig, Event as TurnEvent};
use sansio::Protocol as _;

use super::endpoint::Transport;
use super::{Node, Transmit};
use crate::link::TransportKind;

/// A TURN server a node may allocate relayed addresses on, with its long-term
/// credentials (RFC 5389 §10.2; RFC 6940 leaves TURN authentication to the deployment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnServer {
    pub addr: SocketAddr,
    pub username: String,
    pub password: String,
}

/// Peer addresses one allocation holds permissions for at most: a permitted host sending
/// from ever new ports cannot grow them without bound (the relay itself permits by IP).
const MAX_PERMISSIONS: usize = 1024;

/// How long after a failed allocation it is tried again.
pub const RETRY: Duration = Duration::from_secs(30);

/// Longest silence towards a TURN server we hold an allocation on: then a STUN Binding
/// indication goes to it. An allocation lives as long as the NAT binding of its 5-tuple
/// (RFC 8656 §22.2 "brittle", RFC 5766 §8 note), and NATs forget idle UDP bindings in
/// as little as 30 s (Linux's connection tracking); RFC 8445 §11 keeps candidates alive
/// every 15 s.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// CreatePermission refusals in a row, with an error that means the server no longer
/// knows the allocation (400 or 437: our 5-tuple changed, e.g. a NAT rebinding), after
/// which the allocation is made again.
const LOST_AFTER: u32 = 3;

/// One allocation: a TURN client for (our socket, the server).
struct Allocation {
    local: SocketAddr,
    server: SocketAddr,
    client: Client,
    relayed: Option<SocketAddr>,
    /// When to allocate (again), if not allocated and not in progress.
    retry_at: Option<Instant>,
    in_progress: bool,
    /// Peer addresses we asked permissions for (bounded: [`MAX_PERMISSIONS`]).
    permitted: HashSet<SocketAddr>,
    /// What happened on it, for the report of a flow that failed ([`Turn::report`]).
    counts: Counts,
    /// When we last sent the server anything from `local` (keepalives, [`KEEPALIVE`]).
    last_sent: Option<Instant>,
    /// CreatePermission refusals in a row that say the allocation is gone ([`LOST_AFTER`]).
    lost_signs: u32,
    /// The client's next timer as of the last call (it is read through `&mut`).
    timer: Option<Instant>,
}

impl std::fmt::Debug for Allocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allocation")
            .field("local", &self.local)
            .field("server", &self.server)
            .field("relayed", &self.relayed)
            .finish_non_exhaustive()
    }
}

/// What one allocation did (diagnostics: an ICE session that fails over a relay says
/// why the relay did not help).
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// Permissions the server granted.
    granted: u64,
    /// CreatePermission requests refused.
    refused: u64,
    /// Requests on the allocation (permissions, refreshes, channel bindings) the server
    /// never answered.
    unanswered: u64,
    /// Datagrams sent through the relay.
    sent: u64,
    /// Datagrams dropped for want of a permission (a permission was asked instead).
    unpermitted: u64,
    /// Datagrams the relay passed on to us.
    received: u64,
    /// Keepalives sent (Binding indications).
    keepalives: u64,
    /// Times the allocation was made again after the server had lost it.
    reallocated: u64,
}

/// The node's TURN allocations.
#[derive(Debug, Default)]
pub(super) struct Turn {
    allocations: Vec<Allocation>,
    /// Datagrams the TURN clients produced, for [`Node::poll_transmit`].
    out: VecDeque<Transmit>,
    /// The last time the node was given (relayed transmits are wrapped when polled).
    pub(super) now: Option<Instant>,
}

impl Turn {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.allocations
            .iter()
            .filter_map(|a| {
                let keepalive = a.relayed.and(a.last_sent).map(|t| t + KEEPALIVE);
                [a.timer, a.retry_at, keepalive].into_iter().flatten().min()
            })
            .min()
    }

    /// Our relayed addresses.
    pub(super) fn relayed(&self) -> Vec<SocketAddr> {
        self.allocations.iter().filter_map(|a| a.relayed).collect()
    }

    /// The relayed addresses allocated for our sockets `locals`.
    pub(super) fn relayed_for(&self, locals: &[SocketAddr]) -> Vec<SocketAddr> {
        self.allocations
            .iter()
            .filter(|a| locals.contains(&a.local))
            .filter_map(|a| a.relayed)
            .collect()
    }

    /// The sockets that have allocations.
    pub(super) fn bases(&self) -> Vec<SocketAddr> {
        self.allocations.iter().map(|a| a.local).collect()
    }

    /// The socket a relayed address was allocated for.
    pub(super) fn base_of(&self, relayed: SocketAddr) -> Option<SocketAddr> {
        self.allocations
            .iter()
            .find(|a| a.relayed == Some(relayed))
            .map(|a| a.local)
    }

    /// Whether an allocation is in progress (an Attach may wait for its relayed address).
    pub(super) fn allocating(&self) -> bool {
        self.allocations.iter().any(|a| a.in_progress)
    }

    pub(super) fn is_relayed(&self, addr: SocketAddr) -> bool {
        self.allocations.iter().any(|a| a.relayed == Some(addr))
    }

    /// What the allocations for our sockets `locals` did, for a failure report: e.g.
    /// "relay 198.51.100.3:50000 of 10.5.0.2:4000: 4 permissions asked, 4 granted,
    /// 0 refused, 0 requests unanswered; 40 datagrams sent, 2 dropped for want of a
    /// permission, 0 received; 1 keepalives, 0 times allocated again". Empty when none
    /// was allocated.
    pub(super) fn report(&self, locals: &[SocketAddr]) -> String {
        self.allocations
            .iter()
            .filter(|a| locals.contains(&a.local))
            .map(|a| {
                let c = a.counts;
                let relayed = a
                    .relayed
                    .map_or("not allocated".to_string(), |r| r.to_string());
                format!(
                    "relay {relayed} of {}: {} permissions asked, {} granted, {} refused, \
                     {} requests unanswered; {} datagrams sent, {} dropped for want of a \
                     permission, {} received; {} keepalives, {} times allocated again",
                    a.local,
                    a.permitted.len(),
                    c.granted,
                    c.refused,
                    c.unanswered,
                    c.sent,
                    c.unpermitted,
                    c.received,
                    c.keepalives,
                    c.reallocated
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn provider() -> Arc<dyn rtc_turn::crypto::RTCCryptoProvider> {
    Arc::new(rtc_turn::crypto::providers::AwsLcRsProvider::new())
}

impl Node {
    /// Makes the allocations of the configured TURN servers (ICE overlays only).
    pub(super) fn turn_start(&mut self, now: Instant) {
        if !self.ice_mode() || !self.turn.allocations.is_empty() {
            return;
        }
        for server in self.s.turn_servers.clone() {
            self.turn_allocate_on(now, &server);
        }
        self.turn_timers(now);
    }

    /// A TURN server to use from now on (found in TURN-SERVICE, §9, or configured
    /// late): relayed addresses are allocated on it for every UDP socket, and offered in
    /// the Attaches that follow. A server in use already is ignored.
    pub fn add_turn_server(&mut self, now: Instant, server: TurnServer) {
        if self.s.turn_servers.iter().any(|s| s.addr == server.addr) {
            return;
        }
        tracing::info!(server = %server.addr, "TURN server added (RFC 6940 §9)");
        self.s.turn_servers.push(server.clone());
        if self.ice_mode() && self.start.is_some() {
            self.turn_allocate_on(now, &server);
            self.turn_timers(now);
        }
    }

    /// The TURN servers in use.
    pub fn turn_servers(&self) -> &[TurnServer] {
        &self.s.turn_servers
    }

    /// One allocation on `server` for each of our UDP sockets of its address family.
    fn turn_allocate_on(&mut self, now: Instant, server: &TurnServer) {
        let sockets: Vec<SocketAddr> = self
            .s
            .listen
            .iter()
            .filter(|(t, a)| {
                TransportKind::of(*t) == Some(TransportKind::Datagram) && !a.ip().is_unspecified()
            })
            .map(|(_, a)| *a)
            .chain(self.s.app_sockets.iter().copied())
            .collect();
        for local in sockets
            .iter()
            .filter(|l| l.is_ipv4() == server.addr.is_ipv4())
        {
            match new_client(*local, server) {
                Ok(client) => self.turn.allocations.push(Allocation {
                    local: *local,
                    server: server.addr,
                    client,
                    relayed: None,
                    retry_at: Some(now),
                    in_progress: false,
                    permitted: HashSet::new(),
                    counts: Counts::default(),
                    last_sent: None,
                    lost_signs: 0,
                    timer: None,
                }),
                Err(e) => tracing::warn!(server = %server.addr, "TURN client: {e}"),
            }
        }
    }

    /// The server lost allocation `i` (our 5-tuple changed, say): it is released, if the
    /// server still knows it, and made again with a new client.
    fn turn_reallocate(&mut self, now: Instant, i: usize) {
        let Some(server) = self
            .s
            .turn_servers
            .iter()
            .find(|s| s.addr == self.turn.allocations[i].server)
            .cloned()
        else {
            return;
        };
        let a = &mut self.turn.allocations[i];
        let Ok(client) = new_client(a.local, &server) else {
            return;
        };
        if let Some(relayed) = a.relayed
            && let Ok(mut r) = a.client.relay(relayed)
        {
            let _ = r.close(now);
        }
        self.turn_pump_writes(i);
        let a = &mut self.turn.allocations[i];
        tracing::warn!(
            server = %a.server,
            relayed = ?a.relayed,
            "the TURN server no longer knows our allocation (a NAT rebinding?): allocating again"
        );
        a.client = client;
        a.relayed = None;
        a.retry_at = Some(now);
        a.in_progress = false;
        a.permitted.clear();
        a.lost_signs = 0;
        a.counts.reallocated += 1;
    }

    pub(super) fn turn_timers(&mut self, now: Instant) {
        self.turn.now = Some(now);
        for i in 0..self.turn.allocations.len() {
            let a = &mut self.turn.allocations[i];
            if a.relayed.is_some() && a.last_sent.is_some_and(|t| t + KEEPALIVE <= now) {
                let id = self.stun_transaction_id();
                let a = &mut self.turn.allocations[i];
                a.last_sent = Some(now);
                a.counts.keepalives += 1;
                self.turn.out.push_back(Transmit {
                    transport: Transport::Datagram {
                        local: a.local,
                        remote: a.server,
                    },
                    data: Bytes::from(reload_nat::stun::binding_indication(id)),
                });
            }
            let a = &mut self.turn.allocations[i];
            if a.retry_at.is_some_and(|t| t <= now) && !a.in_progress {
                a.retry_at = None;
                match a.client.allocate(now) {
                    Ok(_) => a.in_progress = true,
                    Err(e) => {
                        tracing::warn!(server = %a.server, "TURN Allocate: {e}");
                        a.retry_at = Some(now + RETRY);
                    }
                }
            }
            if a.client.poll_timeout().is_some_and(|t| t <= now) {
                let _ = a.client.handle_timeout(now);
            }
            self.turn_pump(now, i);
        }
    }

    /// A datagram from a TURN server we allocated on from `local`: whether it was one.
    pub(super) fn turn_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &Bytes,
    ) -> bool {
        let Some(i) = self
            .turn
            .allocations
            .iter()
            .position(|a| a.local == local && a.server == remote)
        else {
            return false;
        };
        self.turn.now = Some(now);
        let a = &mut self.turn.allocations[i];
        let _ = a.client.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: remote,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(&data[..]),
        });
        self.turn_pump(now, i);
        true
    }

    /// Sends what allocation `i`'s client has to send, and acts on what it reports.
    fn turn_pump(&mut self, now: Instant, i: usize) {
        self.turn_pump_writes(i);
        let a = &mut self.turn.allocations[i];
        let mut relayed_data = Vec::new();
        let mut allocated = false;
        while let Some(e) = a.client.poll_event() {
            match e {
                TurnEvent::AllocateResponse(_, relayed) => {
                    a.in_progress = false;
                    a.relayed = Some(relayed);
                    allocated = true;
                    tracing::info!(server = %a.server, %relayed, "TURN relayed address allocated (RFC 6940 §9)");
                }
                TurnEvent::AllocateError(_, err) => {
                    a.in_progress = false;
                    a.retry_at = Some(now + RETRY);
                    tracing::warn!(server = %a.server, "TURN Allocate refused: {err}; again in {RETRY:?}");
                }
                TurnEvent::TransactionTimeout(_) if a.in_progress && a.relayed.is_none() => {
                    a.in_progress = false;
                    a.retry_at = Some(now + RETRY);
                    tracing::warn!(server = %a.server, "TURN server does not answer; again in {RETRY:?}");
                }
                TurnEvent::CreatePermissionResponse(_, peer) => {
                    a.counts.granted += 1;
                    a.lost_signs = 0;
                    tracing::debug!(server = %a.server, %peer, "TURN permission granted");
                }
                TurnEvent::CreatePermissionError(_, err) => {
                    a.counts.refused += 1;
                    // 400 (coturn, no allocation for the 5-tuple) or 437 (Allocation
                    // Mismatch, RFC 5766 §9.2 via §6.2): the allocation is gone.
                    let text = err.to_string();
                    if text.contains("error 400") || text.contains("error 437") {
                        a.lost_signs += 1;
                    }
                    tracing::warn!(server = %a.server, "TURN CreatePermission refused: {err}");
                }
                TurnEvent::TransactionTimeout(_) => {
                    a.counts.unanswered += 1;
                    tracing::warn!(
                        server = %a.server,
                        "TURN server did not answer a request on the allocation (permission, refresh or channel binding)"
                    );
                }
                TurnEvent::DataIndicationOrChannelData(_, peer, data) => {
                    if let Some(relayed) = a.relayed {
                        a.counts.received += 1;
                        relayed_data.push((relayed, peer, data.freeze()));
                    }
                }
                _ => {}
            }
        }
        if self.turn.allocations[i].lost_signs >= LOST_AFTER {
            self.turn_reallocate(now, i);
        }
        if !self.turn.allocating() {
            self.ice_release_deferred(now);
            if allocated {
                // A relay found late (TURN-SERVICE, §9): peers ICE failed with may be
                // reachable through it now.
                self.ice_retry_failed(now);
            }
        }
        for (relayed, peer, data) in relayed_data {
            // A peer data comes from may be sent to (a prflx address, say).
            self.turn_permit(now, relayed, &[peer]);
            self.handle_datagram(now, relayed, peer, data);
        }
    }

    /// Asks the relay at `relayed` to let `peers` through (RFC 5766 §9).
    pub(super) fn turn_permit(&mut self, now: Instant, relayed: SocketAddr, peers: &[SocketAddr]) {
        let Some(i) = self
            .turn
            .allocations
            .iter()
            .position(|a| a.relayed == Some(relayed))
        else {
            return;
        };
        let a = &mut self.turn.allocations[i];
        for p in peers.iter().filter(|p| p.is_ipv4() == relayed.is_ipv4()) {
            if !a.permitted.contains(p) {
                if a.permitted.len() >= MAX_PERMISSIONS {
                    tracing::debug!(peer = %p, "TURN: {MAX_PERMISSIONS} permissions already");
                    continue;
                }
                a.permitted.insert(*p);
            }
            if let Ok(mut r) = a.client.relay(relayed) {
                let _ = r.create_permission(now, *p);
            }
        }
        self.turn_pump_writes(i);
    }

    fn turn_pump_writes(&mut self, i: usize) {
        let now = self.turn.now;
        let a = &mut self.turn.allocations[i];
        a.timer = a.client.poll_timeout();
        while let Some(t) = a.client.poll_write() {
            if t.transport.peer_addr == a.server {
                a.last_sent = now.or(a.last_sent);
            }
            self.turn.out.push_back(Transmit {
                transport: Transport::Datagram {
                    local: t.transport.local_addr,
                    remote: t.transport.peer_addr,
                },
                data: t.message.freeze(),
            });
        }
    }

    /// The next datagram for the shell: TURN's own first, then ours — those from a relayed
    /// address go through its TURN client (dropped until the relay permits the peer).
    pub(super) fn next_transmit(&mut self) -> Option<Transmit> {
        loop {
            if let Some(t) = self.turn.out.pop_front() {
                return Some(t);
            }
            let t = self.transmits.pop_front()?;
            let Transport::Datagram { local, remote } = t.transport else {
                return Some(t);
            };
            if !self.turn.is_relayed(local) {
                return Some(t);
            }
            let now = self.turn.now.unwrap_or(self.started_at);
            let Some(i) = self
                .turn
                .allocations
                .iter()
                .position(|a| a.relayed == Some(local))
            else {
                continue;
            };
            let a = &mut self.turn.allocations[i];
            if let Ok(mut r) = a.client.relay(local) {
                if r.send_to(now, &t.data, remote).is_ok() {
                    a.counts.sent += 1;
                } else {
                    // No permission yet: ask (checks are retransmitted).
                    a.counts.unpermitted += 1;
                    let _ = r.create_permission(now, remote);
                }
            }
            self.turn_pump_writes(i);
        }
    }
}

/// A TURN client for our socket `local` and `server` (long-term credentials).
fn new_client(local: SocketAddr, server: &TurnServer) -> Result<Client, rtc_shared::error::Error> {
    let config = ClientConfig {
        stun_serv_addr: String::new(),
        // A literal address: the client resolves names, which a sans-IO core must not do.
        turn_serv_addr: server.addr.to_string(),
        local_addr: local,
        transport_protocol: TransportProtocol::UDP,
        username: server.username.clone(),
        password: server.password.clone(),
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        allocation_refresh_interval_cap: None,
    };
    Client::new(config, provider())
}
