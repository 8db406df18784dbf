//! Full ICE for Attach (RFC 6940 §6.5.1.3–§6.5.1.10) in an ICE overlay, one
//! [`IceSession`] per Attach.
//!
//! - **Sending an Attach** (we are controlling, §6.5.1.9, and the DTLS server,
//!   §6.5.1.13): a session with fresh credentials and our candidates — host candidates of
//!   our DTLS-UDP-SR sockets, server-reflexive ones learnt from our peers (§6.5.1.4,
//!   `reflexive`) — whose ufrag, password and candidates go in the AttachReq; checks start
//!   when the answer brings the other side's.
//! - **Receiving one** (controlled, DTLS client): a session started at once with the
//!   requester's credentials and candidates; ours go in the answer.
//! - **Checks**: STUN datagrams on the overlay UDP sockets reach the session whose local
//!   ufrag the check names (USERNAME `ours:theirs`), or — answers — the session that sent
//!   the request with that transaction ID.
//! - **Selected pair**: the controlled side opens its DTLS client link from the pair's
//!   local base to its remote address; the controlling side takes the ClientHello that
//!   arrives there like any other (cookie exchange, admission) and binds the link to the
//!   Node-ID it Attached to. Keepalives go on while the link lives (§6.5.1.10.3); DTLS
//!   records on the pair count as traffic too.
//! - **Failure**: when every pair has failed or the checks time out, the Attach ends with
//!   a log line listing the pairs tried and the topology plug-in hears the link is not
//!   coming ([`TopologyInput::LinkDown`]); no transaction waits for it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reload_nat::ice::{
    Candidate, CandidateKind, IceEvent, IceSession, IceState, LocalAddress, SelectedPair,
    local_candidates,
};
use reload_nat::stun;
use reload_wire::link::{AttachReqAns, IceCandidate, OverlayLinkType};
use reload_wire::{Destination, NodeId};

use super::endpoint::Transport;
use super::{LinkId, Node, Transmit};
use crate::topology::TopologyInput;

/// A session whose pair was selected but whose link never came up is dropped after this.
const LINK_WAIT: Duration = Duration::from_secs(30);

/// Transaction IDs of our checks remembered at most (answers beyond are dropped; checks
/// are retransmitted).
const MAX_TXIDS: usize = 16_384;

/// How long a check's transaction ID routes answers to its session.
const TXID_LIFETIME: Duration = Duration::from_secs(40);

/// One Attach's ICE.
#[derive(Debug)]
pub(super) struct Attempt {
    session: IceSession,
    /// The other node: the Attach's target once it answered, or its requester.
    pub(super) peer: Option<NodeId>,
    started: Instant,
    /// The link running over the selected pair.
    link: Option<LinkId>,
    /// The requester asked for an Update once linked (§6.4.2.3).
    send_update: bool,
    /// The application flow (AppAttach, §6.5.2) this session is for, not an overlay link.
    pub(super) app: Option<u64>,
    /// That flow's DTLS association exists.
    pub(super) app_linked: bool,
}

impl Attempt {
    fn has_link(&self) -> bool {
        self.link.is_some() || self.app_linked
    }

    pub(super) fn session(&self) -> &IceSession {
        &self.session
    }

    pub(super) fn session_mut(&mut self) -> &mut IceSession {
        &mut self.session
    }
}

/// What a link's status shows of its ICE (`reload-node status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceInfo {
    pub local: Candidate,
    pub remote: Candidate,
    pub controlling: bool,
}

impl IceInfo {
    pub(super) fn of(pair: &SelectedPair, controlling: bool) -> Self {
        IceInfo {
            local: pair.local.clone(),
            remote: pair.remote.clone(),
            controlling,
        }
    }
}

/// The node's ICE sessions and the routing of STUN to them.
#[derive(Debug, Default)]
pub(super) struct Ice {
    attempts: HashMap<u64, Attempt>,
    by_ufrag: HashMap<String, u64>,
    txids: HashMap<[u8; stun::TRANSACTION_ID_LEN], (u64, Instant)>,
    next: u64,
    /// Sessions that failed, in all (for stats).
    pub(super) failed: u64,
    /// Attaches waiting for our server-reflexive address (see [`REFLEXIVE_WAIT`]), with
    /// when they go anyway.
    deferred: Vec<(Instant, Destination, Option<NodeId>, bool)>,
    /// The origin of the keepalive grid (the first session's start).
    grid_base: Option<Instant>,
    /// Overlay sessions that failed in a row, per peer (for the log; bounded by
    /// [`MAX_FAILURE_RECORDS`]).
    failures: HashMap<NodeId, u32>,
}

/// Peers whose failures in a row are counted at most.
const MAX_FAILURE_RECORDS: usize = 1024;

/// How long an Attach waits for the answer to a STUN probe in flight (§6.5.1.4): without
/// our server-reflexive candidate, a peer behind a restricted NAT cannot be reached.
const REFLEXIVE_WAIT: Duration = Duration::from_secs(1);

/// Attaches waiting at most (more are sent at once).
const MAX_DEFERRED: usize = 64;

impl Ice {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let deferred = self.deferred.iter().map(|d| d.0).min();
        self.attempts
            .values()
            .filter_map(|a| {
                let wait = (!a.has_link() && a.session.state() == IceState::Connected)
                    .then_some(a.started + CHECKS_AND_LINK);
                let timer = a.session.poll_timeout();
                // Sessions under live links (keepalives, consent) wake together.
                let timer = if a.has_link() {
                    timer.map(|t| self.on_grid(t))
                } else {
                    timer
                };
                [timer, wait].into_iter().flatten().min()
            })
            .chain(deferred)
            .min()
    }

    /// One more failure in a row with `peer`: how many now.
    fn note_failure(&mut self, peer: NodeId) -> u32 {
        if self.failures.len() >= MAX_FAILURE_RECORDS && !self.failures.contains_key(&peer) {
            self.failures.clear();
        }
        let n = self.failures.entry(peer).or_default();
        *n = n.saturating_add(1);
        *n
    }

    /// `t` rounded up to the node's [`KEEPALIVE_GRID`]: the keepalive timers of many
    /// links fall due at one instant instead of spreading the node's wake-ups.
    fn on_grid(&self, t: Instant) -> Instant {
        let Some(base) = self.grid_base else {
            return t;
        };
        // In nanoseconds: rounding sub-millisecond parts away would put the wake-up
        // before `t`, and the node would wake again and again at the same instant.
        let grid = KEEPALIVE_GRID.as_nanos();
        let ticks = t.saturating_duration_since(base).as_nanos().div_ceil(grid);
        let at = base + Duration::from_nanos((ticks * grid).min(u64::MAX as u128) as u64);
        at.max(t)
    }

    /// Sessions whose link is not up (yet): what admission bounds (sessions under a
    /// live link or flow stay for its keepalives).
    pub(super) fn setting_up(&self) -> usize {
        self.attempts.values().filter(|a| !a.has_link()).count()
    }

    pub(super) fn attempt(&self, id: u64) -> Option<&Attempt> {
        self.attempts.get(&id)
    }
}

/// The grid the keepalive timers of sessions under live links are rounded up to.
const KEEPALIVE_GRID: Duration = Duration::from_secs(1);

/// How long from the start of checks until a link must be up.
const CHECKS_AND_LINK: Duration =
    Duration::from_secs(reload_nat::ice::CHECK_DEADLINE.as_secs() + LINK_WAIT.as_secs());

impl Node {
    /// Whether this node's overlay uses ICE: it listens with DTLS-UDP-SR (§6.5.1.5: an
    /// overlay is all ICE or all No-ICE).
    pub fn uses_ice(&self) -> bool {
        self.ice_mode()
    }

    pub(super) fn ice_mode(&self) -> bool {
        self.s
            .listen
            .iter()
            .any(|(t, _)| *t == OverlayLinkType::DTLS_UDP_SR)
    }

    /// The overlay's UDP sockets with a specific address (host candidates of Attach).
    pub(super) fn ice_overlay_sockets(&self) -> Vec<SocketAddr> {
        self.s
            .listen
            .iter()
            .filter(|(t, a)| *t == OverlayLinkType::DTLS_UDP_SR && !a.ip().is_unspecified())
            .map(|(_, a)| *a)
            .collect()
    }

    /// Our candidates on `sockets` now: a host candidate per socket, the relayed addresses
    /// allocated for them (§9), then the server-reflexive addresses our peers see them at
    /// (§6.5.1.4), the most witnessed first.
    fn ice_local_candidates(&self, sockets: &[SocketAddr]) -> Vec<Candidate> {
        let mut addrs: Vec<LocalAddress> = sockets
            .iter()
            .map(|a| LocalAddress {
                addr: *a,
                kind: CandidateKind::Host,
                base: *a,
            })
            .collect();
        // Relayed addresses (§9) before the reflexive ones: an address learnt through the
        // relay is the relay's own.
        for relayed in self.turn.relayed_for(sockets) {
            addrs.push(LocalAddress {
                addr: relayed,
                kind: CandidateKind::Relayed,
                base: relayed,
            });
        }
        for r in self.reflexive_addresses() {
            if r.mapped != r.local && addrs.iter().any(|a| a.base == r.local) {
                addrs.push(LocalAddress {
                    addr: r.mapped,
                    kind: CandidateKind::ServerReflexive,
                    base: r.local,
                });
            }
        }
        local_candidates(&addrs)
    }

    /// Fresh ICE credentials (RFC 5245 §15.4: ufrag ≥ 24 bits, password ≥ 128 bits of
    /// randomness) from the node's CSPRNG.
    fn ice_credentials(&mut self) -> (String, String) {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut text = |n: usize| -> String {
            (0..n)
                .map(|_| CHARS[(self.rng.next_u64() % 64) as usize] as char)
                .collect()
        };
        (text(8), text(24))
    }

    /// A new session on the overlay's sockets, or on one application socket (`app`:
    /// the flow and its socket); `None` (logged) when it cannot be made.
    pub(super) fn new_attempt(
        &mut self,
        now: Instant,
        controlling: bool,
        app: Option<(u64, SocketAddr)>,
    ) -> Option<u64> {
        let (ufrag, pwd) = loop {
            let c = self.ice_credentials();
            if !self.ice.by_ufrag.contains_key(&c.0) {
                break c;
            }
        };
        let sockets = match app {
            Some((_, socket)) => vec![socket],
            None => self.ice_overlay_sockets(),
        };
        let cands = self.ice_local_candidates(&sockets);
        if cands.is_empty() {
            tracing::warn!("no ICE candidate: no DTLS-UDP-SR socket with a specific address");
            return None;
        }
        let session = match IceSession::new(now, controlling, &ufrag, &pwd, &cands) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot start ICE: {e}");
                return None;
            }
        };
        self.ice.next += 1;
        let id = self.ice.next;
        self.ice.grid_base.get_or_insert(now);
        self.ice.by_ufrag.insert(ufrag, id);
        self.ice.attempts.insert(
            id,
            Attempt {
                session,
                peer: None,
                started: now,
                link: None,
                send_update: false,
                app: app.map(|(flow, _)| flow),
                app_linked: false,
            },
        );
        Some(id)
    }

    /// The Attach body of session `id`: its credentials and candidates.
    pub(super) fn ice_body(&self, id: u64, role: &'static [u8], send_update: bool) -> AttachReqAns {
        let a = &self.ice.attempts[&id];
        AttachReqAns {
            ufrag: Bytes::from(a.session.ufrag().to_string()),
            password: Bytes::from(a.session.pwd().to_string()),
            role: Bytes::from_static(role),
            candidates: a
                .session
                .local_candidates()
                .iter()
                .map(|c| c.to_wire(OverlayLinkType::DTLS_UDP_SR))
                .collect(),
            send_update,
        }
    }

    /// The answer to an Attach from a peer we are linked to already: credentials and
    /// candidates as always, but no session behind them (the requester starts none).
    pub(super) fn ice_linked_answer(&mut self) -> AttachReqAns {
        let (ufrag, pwd) = self.ice_credentials();
        AttachReqAns {
            ufrag: Bytes::from(ufrag),
            password: Bytes::from(pwd),
            role: Bytes::from_static(reload_wire::link::ROLE_ACTIVE),
            candidates: self
                .ice_local_candidates(&self.ice_overlay_sockets())
                .iter()
                .map(|c| c.to_wire(OverlayLinkType::DTLS_UDP_SR))
                .collect(),
            send_update: false,
        }
    }

    /// The topology asks for an Attach while a STUN probe is in flight: it waits (up to
    /// [`REFLEXIVE_WAIT`] from the probe) so that our server-reflexive candidate is in it.
    /// Whether it was deferred.
    pub(super) fn ice_defer_attach(
        &mut self,
        now: Instant,
        target: &Destination,
        via: Option<NodeId>,
        send_update: bool,
    ) -> bool {
        // A relayed address being allocated (§9) is worth the same wait.
        let allocating = self.turn.allocating().then_some(now);
        let Some(since) = self
            .reflexive_awaited_since(now, REFLEXIVE_WAIT)
            .or(allocating)
        else {
            return false;
        };
        if self.ice.deferred.len() >= MAX_DEFERRED {
            return false;
        }
        self.ice
            .deferred
            .push((since + REFLEXIVE_WAIT, target.clone(), via, send_update));
        true
    }

    /// Sends the deferred Attaches once no probe is awaited any more, or their time is up.
    pub(super) fn ice_release_deferred(&mut self, now: Instant) {
        if self.ice.deferred.is_empty() {
            return;
        }
        let waiting =
            self.reflexive_awaited_since(now, REFLEXIVE_WAIT).is_some() || self.turn.allocating();
        let (go, stay): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ice.deferred)
            .into_iter()
            .partition(|d| !waiting || d.0 <= now);
        self.ice.deferred = stay;
        for (_, target, via, send_update) in go {
            self.send_topology_attach(now, target, via, send_update);
        }
    }

    /// An AttachReq we send in an ICE overlay: a new controlling session and its body.
    pub(super) fn ice_offer(
        &mut self,
        now: Instant,
        send_update: bool,
    ) -> Option<(u64, AttachReqAns)> {
        let id = self.new_attempt(now, true, None)?;
        let body = self.ice_body(id, reload_wire::link::ROLE_PASSIVE, send_update);
        Some((id, body))
    }

    /// Our Attach `id` was answered by `peer` with `ans`: checks start, or — already
    /// linked to it — the session is not needed.
    pub(super) fn ice_answered(&mut self, now: Instant, id: u64, peer: NodeId, ans: &AttachReqAns) {
        if self.by_peer.contains_key(&peer) {
            self.ice_drop(id);
            return;
        }
        let remote = match ice_candidates(&ans.candidates) {
            Ok(r) => r,
            Err(why) => return self.ice_failed(now, id, Some(peer), why),
        };
        let (ufrag, pwd) = (text(&ans.ufrag), text(&ans.password));
        let Some(a) = self.ice.attempts.get_mut(&id) else {
            return;
        };
        a.peer = Some(peer);
        a.started = now;
        if let Err(e) = a.session.start(now, &ufrag, &pwd, &remote) {
            return self.ice_failed(now, id, Some(peer), e.to_string());
        }
        self.ice_permit(now, &remote);
        self.ice_pump(now, id);
    }

    /// Starts the checks of session `id` with `peer`'s credentials and candidates.
    pub(super) fn ice_start_checks(
        &mut self,
        now: Instant,
        id: u64,
        peer: NodeId,
        ufrag: &str,
        pwd: &str,
        remote: &[Candidate],
    ) -> Result<(), String> {
        let Some(a) = self.ice.attempts.get_mut(&id) else {
            return Err("the ICE session is gone".into());
        };
        a.peer = Some(peer);
        a.started = now;
        a.session
            .start(now, ufrag, pwd, remote)
            .map_err(|e| e.to_string())?;
        self.ice_permit(now, remote);
        self.ice_pump(now, id);
        Ok(())
    }

    /// New candidates (a relayed address): Attach again, at once, to the peers ICE
    /// failed with and that are still not linked (at most 32; the topology would come
    /// back to them only on its next round).
    pub(super) fn ice_retry_failed(&mut self, now: Instant) {
        let mut peers: Vec<NodeId> = self
            .ice
            .failures
            .keys()
            .copied()
            .filter(|p| !self.by_peer.contains_key(p) && self.tx.attach_to(p).is_none())
            .collect();
        peers.sort();
        peers.truncate(32);
        for p in peers {
            tracing::info!(peer = %p, "Attach again with the new relayed candidate");
            self.send_topology_attach(now, Destination::Node(p), None, false);
        }
    }

    /// Session `id`, if it lives.
    pub(super) fn ice_attempt(&mut self, id: u64) -> Option<&mut Attempt> {
        self.ice.attempts.get_mut(&id)
    }

    /// Our Attach `id` failed before an answer: its session goes.
    pub(super) fn ice_drop(&mut self, id: u64) {
        if let Some(mut a) = self.ice.attempts.remove(&id) {
            a.session.close();
            self.ice.by_ufrag.retain(|_, v| *v != id);
            self.ice.txids.retain(|_, (v, _)| *v != id);
        }
    }

    /// An AttachReq from `requester` in an ICE overlay (collisions already settled): a
    /// controlled session started with its candidates; the answer body, or the error.
    pub(super) fn ice_answer(
        &mut self,
        now: Instant,
        requester: NodeId,
        req: &AttachReqAns,
    ) -> Result<AttachReqAns, (reload_wire::message::ErrorCode, String)> {
        use reload_wire::message::ErrorCode;
        let remote =
            ice_candidates(&req.candidates).map_err(|why| (ErrorCode::INVALID_MESSAGE, why))?;
        let (ufrag, pwd) = (text(&req.ufrag), text(&req.password));
        if ufrag.is_empty() || pwd.is_empty() {
            return Err((
                ErrorCode::INVALID_MESSAGE,
                "an ICE Attach needs ufrag and password".into(),
            ));
        }
        if self.ice.setting_up() >= self.s.admission.max_handshakes {
            return Err((
                ErrorCode::FORBIDDEN,
                "too many ICE sessions in progress: try again later".into(),
            ));
        }
        let id = self.new_attempt(now, false, None).ok_or((
            ErrorCode::INCOMPATIBLE_WITH_OVERLAY,
            "no ICE candidates".to_string(),
        ))?;
        let body = self.ice_body(id, reload_wire::link::ROLE_ACTIVE, false);
        let a = self.ice.attempts.get_mut(&id).expect("just made");
        a.peer = Some(requester);
        a.send_update = req.send_update;
        if let Err(e) = a.session.start(now, &ufrag, &pwd, &remote) {
            self.ice_drop(id);
            return Err((ErrorCode::INVALID_MESSAGE, e.to_string()));
        }
        self.ice_permit(now, &remote);
        self.ice_pump(now, id);
        Ok(body)
    }

    /// Our relays let the remote candidates' addresses through (RFC 5766 §9), so that
    /// checks from our relayed candidates can reach them and theirs reach us.
    pub(super) fn ice_permit(&mut self, now: Instant, remote: &[Candidate]) {
        let addrs: Vec<SocketAddr> = remote.iter().map(|c| c.addr).collect();
        for relayed in self.turn.relayed() {
            self.turn_permit(now, relayed, &addrs);
        }
    }

    /// A STUN datagram that is not a plain Binding request: a check for one of our
    /// sessions, or an answer to one. Whether a session took it.
    pub(super) fn ice_stun(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        check_ufrag: Option<&str>,
    ) -> bool {
        let id = match check_ufrag {
            Some(u) => self.ice.by_ufrag.get(u).copied(),
            None => stun::transaction_id(data)
                .and_then(|t| self.ice.txids.remove(&t))
                .map(|(id, _)| id),
        };
        let Some(id) = id else {
            return false;
        };
        let Some(a) = self.ice.attempts.get_mut(&id) else {
            return false;
        };
        a.session.handle_stun(now, local, remote, data);
        self.ice_pump(now, id);
        true
    }

    /// DTLS arrived on `link`: the ICE pair under it is alive.
    pub(super) fn ice_traffic(&mut self, now: Instant, link: LinkId) {
        let Some(slot) = self.links.get(&link) else {
            return;
        };
        let (Some(id), Transport::Datagram { local, remote }) = (slot.ice, slot.transport) else {
            return;
        };
        if let Some(a) = self.ice.attempts.get_mut(&id) {
            a.session.saw_traffic(now, local, remote);
        }
    }

    pub(super) fn ice_timers(&mut self, now: Instant) {
        self.ice_release_deferred(now);
        let due: Vec<u64> = self
            .ice
            .attempts
            .iter_mut()
            .filter(|(_, a)| {
                !a.has_link()
                    && a.session.state() == IceState::Connected
                    && now >= a.started + CHECKS_AND_LINK
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let peer = self.ice.attempts.get(&id).and_then(|a| a.peer);
            self.ice_failed(
                now,
                id,
                peer,
                "the pair was selected but no DTLS link came up".into(),
            );
        }
        let mut ids: Vec<u64> = self
            .ice
            .attempts
            .iter()
            .filter(|(_, a)| a.session.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(a) = self.ice.attempts.get_mut(&id) {
                a.session.handle_timeout(now);
            }
            self.ice_pump(now, id);
        }
        self.ice
            .txids
            .retain(|_, (_, t)| now.saturating_duration_since(*t) < TXID_LIFETIME);
    }

    /// Sends what session `id` has to send and acts on what it reports.
    pub(super) fn ice_pump(&mut self, now: Instant, id: u64) {
        let Some(a) = self.ice.attempts.get_mut(&id) else {
            return;
        };
        while let Some((local, remote, data)) = a.session.poll_transmit() {
            if let Some(t) = stun::request_transaction_id(&data)
                && self.ice.txids.len() < MAX_TXIDS
            {
                self.ice.txids.insert(t, (id, now));
            }
            self.transmits.push_back(Transmit {
                transport: Transport::Datagram { local, remote },
                data,
            });
        }
        let mut events = Vec::new();
        while let Some(e) = a.session.poll_event() {
            events.push(e);
        }
        for e in events {
            match e {
                IceEvent::Connected(pair) => self.ice_connected(now, id, *pair),
                IceEvent::Failed => {
                    let peer = self.ice.attempts.get(&id).and_then(|a| a.peer);
                    self.ice_failed(now, id, peer, "no candidate pair works".into());
                }
            }
        }
    }

    fn ice_connected(&mut self, now: Instant, id: u64, pair: SelectedPair) {
        let Some(a) = self.ice.attempts.get(&id) else {
            return;
        };
        if let Some(flow) = a.app {
            return self.app_ice_connected(now, flow, id, pair);
        }
        let (peer, controlling, send_update) = (a.peer, a.session.is_controlling(), a.send_update);
        tracing::info!(peer = ?peer, "ICE selected {pair} (RFC 6940 §6.5.1.10)");
        if let Some(p) = peer
            && let Some(n) = self.ice.failures.remove(&p)
        {
            tracing::info!(peer = %p, "ICE with {p} works again after {n} failures");
        }
        if controlling {
            // The DTLS client is the other side (§6.5.1.13): its ClientHello comes to the
            // pair's local address; a link already up for the peer takes the ICE info.
            if let Some(p) = peer
                && let Some(&link) = self.by_peer.get(&p)
            {
                self.ice_bind(id, link);
            }
            return;
        }
        let Some(peer) = peer else {
            return;
        };
        if self.by_peer.contains_key(&peer) {
            // Linked meanwhile (the other direction won): nothing to open.
            return self.ice_drop(id);
        }
        // A link to the peer being set up on this very address pair (its own DTLS to
        // our address, say): the session is that link's.
        if let Some(link) = self.link_on(pair.base, pair.remote.addr) {
            let same = self
                .links
                .get(&link)
                .is_some_and(|s| s.peer == Some(peer) || s.expected_peer == Some(peer));
            if same {
                return self.ice_bind(id, link);
            }
        }
        let link = self.open_link_from(now, pair.base, pair.remote.addr, Some(peer));
        match link {
            Some(link) => {
                if let Some(slot) = self.links.get_mut(&link) {
                    slot.send_update = send_update;
                }
                self.ice_bind(id, link);
            }
            None => self.ice_failed(now, id, Some(peer), "the DTLS link could not start".into()),
        }
    }

    /// `link` runs over session `id`'s selected pair.
    fn ice_bind(&mut self, id: u64, link: LinkId) {
        if self
            .links
            .get(&link)
            .and_then(|s| s.ice)
            .is_some_and(|other| other != id)
        {
            // The link has its session (its keepalives, its consent): this one is spare.
            return self.ice_drop(id);
        }
        let Some(a) = self.ice.attempts.get_mut(&id) else {
            return;
        };
        a.link = Some(link);
        let info = a
            .session
            .selected()
            .map(|p| IceInfo::of(p, a.session.is_controlling()));
        if let Some(slot) = self.links.get_mut(&link) {
            slot.ice = Some(id);
            slot.ice_info = info;
        }
    }

    /// A link came up with `peer`: if a controlling session of ours reached it, the link
    /// runs over that session's pair.
    pub(super) fn ice_link_up(&mut self, now: Instant, link: LinkId, peer: NodeId) {
        if self.links.get(&link).is_some_and(|s| s.ice.is_some()) {
            return;
        }
        let Some(Transport::Datagram { local, remote }) =
            self.links.get(&link).map(|s| s.transport)
        else {
            return;
        };
        let found = self
            .ice
            .attempts
            .iter()
            .filter(|(_, a)| a.peer == Some(peer) && a.link.is_none() && a.app.is_none())
            .filter(|(_, a)| match a.session.selected() {
                Some(p) => p.base == local && p.remote.addr == remote,
                // Not selected yet (the other side's ClientHello overtook our answer):
                // only a session checking that very remote address.
                None => a
                    .session
                    .pairs(now)
                    .iter()
                    .any(|p| p.remote.as_ref().is_some_and(|c| c.addr == remote)),
            })
            .map(|(id, _)| *id)
            .min();
        if let Some(id) = found {
            self.ice_bind(id, link);
        }
        // The peer is linked: other sessions with it that have no link are spare (an
        // Attach each way, one that lost a race); their checks would only fail.
        let spare: Vec<u64> = self
            .ice
            .attempts
            .iter()
            .filter(|(_, a)| a.peer == Some(peer) && a.link.is_none() && a.app.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in spare {
            tracing::debug!(%peer, "ICE session {id} not needed: linked");
            self.ice_drop(id);
        }
    }

    /// Session `id` failed: logged with the pairs tried; a link over it closes; the
    /// topology hears that no link to the peer is coming.
    fn ice_failed(&mut self, now: Instant, id: u64, peer: Option<NodeId>, why: String) {
        let Some(a) = self.ice.attempts.get(&id) else {
            return;
        };
        let link = a.link;
        let app = a.app;
        let spare = match link {
            // A session beside the one the link runs on, or one bound to a link that
            // came up before it selected a pair and never did: the link does not run on
            // it, nothing is lost.
            Some(link) => {
                self.links.get(&link).and_then(|s| s.ice) != Some(id)
                    || a.session.selected().is_none()
            }
            // Linked to the peer another way meanwhile.
            None => app.is_none() && peer.is_some_and(|p| self.by_peer.contains_key(&p)),
        };
        if spare {
            tracing::debug!(peer = ?peer, "spare ICE session {id} ended: {why}");
            return self.ice_drop(id);
        }
        let pairs: Vec<String> = a.session.pairs(now).iter().map(|p| p.to_string()).collect();
        let took = now.saturating_duration_since(a.started);
        self.ice.failed += 1;
        let who = peer.map_or("?".to_string(), |p| p.to_string());
        let tried = if pairs.is_empty() {
            "no candidate pair (no address family in common?)".to_string()
        } else {
            pairs.join("; ")
        };
        // What our relays did for the session (the flow's application socket, or the
        // overlay's sockets).
        let locals: Vec<SocketAddr> = match app {
            Some(flow) => self.app_socket_of(flow).into_iter().collect(),
            None => self
                .turn
                .bases()
                .into_iter()
                .filter(|b| !self.s.app_sockets.contains(b))
                .collect(),
        };
        let turn = self.turn.report(&locals);
        let tried = if turn.is_empty() {
            tried
        } else {
            format!("{tried}; TURN: {turn}")
        };
        if let Some(flow) = app {
            tracing::warn!(
                "ICE of application flow {flow} with {who} ended after {took:?}: {why}; pairs: {tried}"
            );
            self.ice_drop(id);
            return self.app_flow_failed(now, flow, format!("ICE: {why}; pairs tried: {tried}"));
        }
        match link {
            Some(link) => {
                tracing::warn!("ICE with {who} lost after {took:?}: {why}; pairs: {tried}");
                self.ice_drop(id);
                self.close_link(now, link, "ICE consent lost (RFC 6940 §6.5.1.10.3)");
            }
            None => {
                // The topology tries a peer it cannot reach again and again: the 1st,
                // 2nd, 4th, 8th, … failure in a row with one peer is a warning, the
                // others are logged at debug level.
                let n = peer.map_or(1, |p| self.ice.note_failure(p));
                if n.is_power_of_two() {
                    let again = if n > 1 {
                        format!(" ({n} failures in a row with this peer)")
                    } else {
                        String::new()
                    };
                    tracing::warn!(
                        "ICE with {who} failed after {took:?}: {why}; pairs tried: {tried}{again}"
                    );
                } else {
                    tracing::debug!(
                        "ICE with {who} failed again ({n} in a row) after {took:?}: {why}; pairs tried: {tried}"
                    );
                }
                self.ice_drop(id);
                if let Some(peer) = peer {
                    self.awaiting_connect.remove(&peer);
                    if !self.by_peer.contains_key(&peer) {
                        let _ = self.topo.handle(now, TopologyInput::LinkDown { peer });
                    }
                }
            }
        }
    }
}

pub(super) fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Remote candidates used at most per Attach, the highest priorities first: each one
/// makes us send checks to its address, so an Attach must not turn us into a STUN
/// cannon aimed at third parties (RFC 5245 §18.5.2). A host with a few interfaces, a
/// reflexive and a relayed address stays well below.
const MAX_REMOTE_CANDIDATES: usize = 8;

/// The candidates of an ICE Attach: at least one usable, none No-ICE (§6.5.1.5), at
/// most [`MAX_REMOTE_CANDIDATES`].
pub(super) fn ice_candidates(cands: &[IceCandidate]) -> Result<Vec<Candidate>, String> {
    if cands
        .iter()
        .any(|c| c.overlay_link != OverlayLinkType::DTLS_UDP_SR)
    {
        return Err("No-ICE or unknown link candidates in an ICE overlay (§6.5.1.5)".into());
    }
    let mut usable: Vec<Candidate> = cands.iter().filter_map(Candidate::from_wire).collect();
    if usable.is_empty() {
        return Err("no usable ICE candidate".into());
    }
    usable.sort_by_key(|c| std::cmp::Reverse(c.priority));
    usable.dedup_by_key(|c| c.addr);
    usable.truncate(MAX_REMOTE_CANDIDATES);
    Ok(usable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reload_nat::ice::{CandidateKind, LocalAddress};

    fn wire(n: usize) -> Vec<IceCandidate> {
        let addrs: Vec<LocalAddress> = (0..n)
            .map(|i| {
                let a = SocketAddr::from(([192, 0, 2, (i % 250) as u8], 1000 + i as u16));
                LocalAddress {
                    addr: a,
                    kind: CandidateKind::Host,
                    base: a,
                }
            })
            .collect();
        local_candidates(&addrs)
            .iter()
            .map(|c| c.to_wire(OverlayLinkType::DTLS_UDP_SR))
            .collect()
    }

    #[test]
    fn an_attach_cannot_aim_many_checks_at_others() {
        let got = ice_candidates(&wire(300)).unwrap();
        assert_eq!(got.len(), MAX_REMOTE_CANDIDATES);
        // The highest priorities are kept.
        assert!(got.windows(2).all(|w| w[0].priority >= w[1].priority));
        assert_eq!(got[0].addr, SocketAddr::from(([192, 0, 2, 0], 1000)));
    }

    #[test]
    fn no_ice_candidates_or_none_usable_are_refused() {
        let mut w = wire(1);
        w[0].overlay_link = OverlayLinkType::DTLS_UDP_SR_NO_ICE;
        assert!(ice_candidates(&w).is_err());
        let mut w = wire(1);
        w[0].priority = 0;
        assert!(ice_candidates(&w).is_err());
        assert!(ice_candidates(&[]).is_err());
    }
}
