//! The link table: every link's state machine and transport, the peer its certificate
//! proved (§6.5.1.13: a link is bound to a Node-ID of its peer's certificate), link events
//! turned into the core's actions, §6.7 fragmentation on the way out, DTLS keepalives,
//! and the certificate of every peer kept valid under the trust policy in force.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use reload_wire::link::{OverlayLinkType, PingReq};
use reload_wire::message::ErrorCode;
use reload_wire::{Destination, ForwardingHeader, MessageBody, NodeId};

use super::endpoint::Transport;
use super::routing::header_code;
use super::{Event, LOOPBACK, LinkId, Node, Purpose, Transmit, fragment};
use crate::identity::ReloadCertificate;
use crate::link::{LinkEvent, LinkSession};
use crate::overlay::Overlay;
use crate::topology::{StartMode, TopologyInput};

/// Error answers to unverified or failing requests one link may cause in a burst, and per
/// second after it: each costs a signature, so a peer sending garbage cannot make us sign
/// without bound.
pub(super) const ERROR_BURST: f64 = 20.0;
pub(super) const ERROR_RATE: f64 = 10.0;

/// One link.
#[derive(Debug)]
pub(super) struct LinkSlot {
    pub(super) session: Box<dyn LinkSession>,
    pub(super) transport: Transport,
    pub(super) remote: SocketAddr,
    /// Its stream is connected (datagram links always are): transmits may flow.
    pub(super) connected: bool,
    /// Accepted (admission counts it), not opened by us.
    pub(super) inbound: bool,
    /// The Node-ID the link is bound to, once established.
    pub(super) peer: Option<NodeId>,
    pub(super) cert: Option<Arc<ReloadCertificate>>,
    chain: Vec<Bytes>,
    /// The Node-ID the link must prove (from the Attach), if known.
    pub(super) expected_peer: Option<NodeId>,
    /// Opened for an Attach we answered: send an Update once up (§6.4.2.3).
    pub(super) send_update: bool,
    /// The Node-ID it is bound to was learnt through an Attach (or its certificate holds
    /// only one): a peer with several Node-IDs may route nothing but Ping and Attach
    /// through us before that (§6.1.2).
    pub(super) attached: bool,
    /// Last time the link carried a message either way.
    last_activity: Option<Instant>,
    /// Error answers this link may still cause now, and when that was computed (a token
    /// bucket: [`ERROR_BURST`], refilled at [`ERROR_RATE`] per second).
    error_tokens: (f64, Instant),
    /// The overlay in force when the link was made (its peer check used that trust).
    overlay: Arc<Overlay>,
    /// The ICE session under the link (ICE overlays), and its selected pair.
    pub(super) ice: Option<u64>,
    pub(super) ice_info: Option<super::IceInfo>,
}

impl LinkSlot {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        session: Box<dyn LinkSession>,
        transport: Transport,
        remote: SocketAddr,
        connected: bool,
        inbound: bool,
        expected_peer: Option<NodeId>,
        overlay: Arc<Overlay>,
        now: Instant,
    ) -> Self {
        LinkSlot {
            session,
            transport,
            remote,
            connected,
            inbound,
            peer: None,
            cert: None,
            chain: Vec::new(),
            expected_peer,
            send_update: false,
            attached: false,
            last_activity: None,
            error_tokens: (ERROR_BURST, now),
            overlay,
            ice: None,
            ice_info: None,
        }
    }
}

/// A link as status displays show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub link: LinkId,
    pub peer: Option<NodeId>,
    pub link_type: OverlayLinkType,
    pub remote: SocketAddr,
    pub inbound: bool,
    pub established: bool,
    /// Protocol version and cipher suite, once known.
    pub security: Option<String>,
    /// The ICE pair the link runs over (ICE overlays): candidate types and addresses.
    pub ice: Option<super::IceInfo>,
}

impl Node {
    /// Every link, for status displays.
    pub fn links(&self) -> Vec<LinkInfo> {
        let mut v: Vec<LinkInfo> = self
            .links
            .iter()
            .map(|(id, s)| LinkInfo {
                link: *id,
                peer: s.peer,
                link_type: match s.ice_info {
                    Some(_) => OverlayLinkType::DTLS_UDP_SR,
                    None => s.session.link_type(),
                },
                remote: s.remote,
                inbound: s.inbound,
                established: s.session.is_established(),
                security: s.session.describe(),
                ice: s.ice_info.clone(),
            })
            .collect();
        v.sort_by_key(|l| l.link);
        v
    }

    /// Moves a link's output and events into the core.
    pub(super) fn pump_link(&mut self, now: Instant, id: LinkId) {
        // Bounded: a link cannot make the core loop forever.
        for _ in 0..4096 {
            self.flush_link(id);
            let Some(slot) = self.links.get_mut(&id) else {
                return;
            };
            let Some(ev) = slot.session.poll_event() else {
                return;
            };
            match ev {
                LinkEvent::Established {
                    peer_node_ids,
                    peer_cert,
                    peer_chain,
                } => self.on_established(now, id, peer_node_ids, peer_cert, peer_chain),
                LinkEvent::Message(m) => {
                    slot.last_activity = Some(now);
                    self.on_message(now, id, m)
                }
                LinkEvent::Stalled | LinkEvent::Resumed => {}
                LinkEvent::TooLarge { prefix } => return self.refuse_too_large(now, id, prefix),
                LinkEvent::Failed(e) => {
                    self.flush_link(id);
                    return self.link_down_because(now, id, Some(e.to_string()));
                }
                LinkEvent::Closed => {
                    self.flush_link(id);
                    return self.link_down_because(now, id, Some("closed by the peer".into()));
                }
            }
        }
    }

    /// Hands what the link wants to send to the shell (once its stream is connected).
    fn flush_link(&mut self, id: LinkId) {
        let Some(slot) = self.links.get_mut(&id) else {
            return;
        };
        if !slot.connected {
            return;
        }
        while let Some(data) = slot.session.poll_transmit() {
            self.transmits.push_back(Transmit {
                transport: slot.transport,
                data,
            });
        }
    }

    /// The handshake finished: the link is bound to the Node-ID from the Attach when the
    /// certificate carries it, else to its first one.
    fn on_established(
        &mut self,
        now: Instant,
        id: LinkId,
        node_ids: Vec<NodeId>,
        cert: Arc<ReloadCertificate>,
        chain: Vec<Bytes>,
    ) {
        let Some(slot) = self.links.get_mut(&id) else {
            return;
        };
        // The peer was checked against the trust in force when the link was made; a
        // ConfigUpdate since then may have changed it.
        if !Arc::ptr_eq(&slot.overlay, &self.overlay)
            && let Err(e) = self
                .overlay
                .trust()
                .verify(&cert, &chain, self.anchor.at(now))
        {
            let why = format!("peer certificate refused under the new configuration: {e}");
            return self.close_link(now, id, &why);
        }
        // Which of its Node-IDs (§6.1.2): the one the Attach named, or for a link the peer
        // opened to us, the one whose answer to our Attach came back; else the first, and
        // a peer with several may then route only Ping and Attach through us until it
        // Attaches.
        let awaiting = &self.awaiting_connect;
        let attached_id = slot
            .expected_peer
            .filter(|e| node_ids.contains(e))
            .or_else(|| node_ids.iter().copied().find(|n| awaiting.contains_key(n)));
        let Some(peer) = attached_id.or_else(|| node_ids.first().copied()) else {
            return self.close_link(now, id, "peer certificate has no Node-ID");
        };
        slot.attached = attached_id.is_some() || node_ids.len() == 1;
        slot.cert = Some(cert);
        slot.chain = chain;
        let transport = slot.transport;
        // A new DTLS association from the address of an established one replaces it.
        if let Some(old) = self.endpoint.established(id, transport) {
            tracing::info!(new = ?id, ?old, "DTLS association replaced (RFC 6347 §4.2.8)");
            self.close_link(
                now,
                old,
                "replaced by a new association from the same address",
            );
        }
        self.link_up(now, id, peer);
    }

    /// The link is up and bound to `peer`.
    fn link_up(&mut self, now: Instant, link: LinkId, peer: NodeId) {
        let Some(slot) = self.links.get_mut(&link) else {
            return;
        };
        slot.peer = Some(peer);
        slot.last_activity = Some(now);
        let send_update = std::mem::take(&mut slot.send_update);
        if let Some(old) = self.by_peer.insert(peer, link)
            && old != link
        {
            // A second link to the same peer: keep the newest, close the old one.
            self.close_link(now, old, "a newer link to the same peer");
        }
        self.awaiting_connect.remove(&peer);
        self.events.push_back(Event::LinkUp { link, peer });
        self.reflexive_link_up(now, link);
        self.ice_link_up(now, link, peer);
        let _ = self.topo.handle(now, TopologyInput::LinkUp { peer });
        if send_update {
            let _ = self
                .topo
                .handle(now, TopologyInput::UpdateRequested { from: peer });
        }
        // The first bootstrap link starts the join (§10.5).
        let bootstrap = vec![peer];
        let mode = match &self.start {
            Some(StartMode::Join { bootstrap: b }) if b.is_empty() => {
                Some(StartMode::Join { bootstrap })
            }
            Some(StartMode::Client { bootstrap: b }) if b.is_empty() => {
                Some(StartMode::Client { bootstrap })
            }
            _ => None,
        };
        if let Some(mode) = mode {
            self.start = Some(mode.clone());
            self.topo.start(now, mode);
        }
        self.drain_topology(now);
    }

    /// Whether `link` may cause one more error answer now (see [`ERROR_BURST`]).
    pub(super) fn error_budget(&mut self, now: Instant, link: LinkId) -> bool {
        let Some(slot) = self.links.get_mut(&link) else {
            return link == super::LOOPBACK;
        };
        let (tokens, at) = slot.error_tokens;
        let refill = now.saturating_duration_since(at).as_secs_f64() * ERROR_RATE;
        let tokens = (tokens + refill).min(ERROR_BURST);
        if tokens < 1.0 {
            slot.error_tokens = (tokens, now);
            return false;
        }
        slot.error_tokens = (tokens - 1.0, now);
        true
    }

    /// Whether requests other than Ping and Attach may come over `link`: not before a peer
    /// whose certificate holds several Node-IDs has Attached (§6.1.2).
    pub(super) fn may_route_through(&self, link: LinkId) -> bool {
        self.links.get(&link).is_none_or(|s| s.attached)
    }

    /// The peer on `link` sent us an Attach signed as `signer`, one of its certificate's
    /// Node-IDs: the link is bound to that Node-ID from now on (§6.1.2).
    pub(super) fn attached_over(&mut self, now: Instant, link: LinkId, signer: NodeId) {
        let Some(slot) = self.links.get_mut(&link) else {
            return;
        };
        if !slot.cert.as_ref().is_some_and(|c| c.has_node_id(&signer)) {
            return;
        }
        slot.attached = true;
        let old = slot.peer.replace(signer);
        if old == Some(signer) {
            return;
        }
        if let Some(old) = old
            && self.by_peer.get(&old) == Some(&link)
        {
            self.by_peer.remove(&old);
            let _ = self.topo.handle(now, TopologyInput::LinkDown { peer: old });
        }
        if let Some(prev) = self.by_peer.insert(signer, link)
            && prev != link
        {
            self.close_link(now, prev, "a newer link to the same peer");
        }
        let _ = self
            .topo
            .handle(now, TopologyInput::LinkUp { peer: signer });
    }

    /// The link is gone (failed, closed by either side, transport lost): forget it, tell
    /// the topology plug-in, fail the requests source-routed through its peer, and have
    /// the shell close its transport.
    pub(super) fn link_down_because(&mut self, now: Instant, link: LinkId, reason: Option<String>) {
        let Some(slot) = self.links.remove(&link) else {
            return;
        };
        self.endpoint.remove(link, slot.transport);
        self.reflexive_link_down(link, slot.peer);
        // The ICE session under the link ends with it.
        if let Some(id) = slot.ice {
            self.ice_drop(id);
        }
        if let Some(peer) = slot.peer
            && self.by_peer.get(&peer) == Some(&link)
        {
            self.by_peer.remove(&peer);
            let _ = self.topo.handle(now, TopologyInput::LinkDown { peer });
            for tx in self.tx.routed_through(&peer) {
                if let Some(o) = self.tx.remove(tx) {
                    self.request_failed(now, tx, o.purpose, super::RequestError::Timeout);
                }
            }
        }
        if self.bootstrap.iter().any(|b| b.2 == Some(link)) {
            let waiting = self.bootstrap_retry.is_some();
            self.schedule_bootstrap_retry(now);
            // Not in the overlay, and its way in is gone: the operator must hear why.
            if !waiting && let Some(at) = self.bootstrap_retry {
                tracing::warn!(
                    bootstrap = %slot.remote,
                    "cannot join through the bootstrap peer at {}: {}; trying again in {:?}",
                    slot.remote,
                    reason.as_deref().unwrap_or("the link closed"),
                    at.saturating_duration_since(now)
                );
            }
        }
        self.events.push_back(Event::LinkDown {
            link,
            peer: slot.peer,
            remote: Some(slot.remote),
            reason,
        });
        // The transport goes too (a link refused after its handshake would otherwise
        // keep its connection).
        if let Transport::Stream(stream) = slot.transport {
            self.events.push_back(Event::CloseStream { stream });
        }
        self.drain_topology(now);
    }

    /// Closes a link we no longer want: a (D)TLS link first sends its close_notify alert
    /// (transmitted before [`Event::CloseStream`], so the shell writes it first).
    pub(super) fn close_link(&mut self, now: Instant, id: LinkId, why: &str) {
        if let Some(slot) = self.links.get_mut(&id) {
            slot.session.close(now);
            self.flush_link(id);
        }
        self.link_down_because(now, id, Some(why.to_string()));
    }

    /// Closes every link (the node stops): close_notify on each (D)TLS link.
    pub fn close_all_links(&mut self, now: Instant) {
        let mut ids: Vec<LinkId> = self.links.keys().copied().collect();
        ids.sort();
        for id in ids {
            self.close_link(now, id, "the node stops");
        }
        self.app_close_all(now);
    }

    /// The peer on `id` sent a message over max-message-size (§6.6): a request gets
    /// Error_Message_Too_Large (from its forwarding header, all we read of it), then the
    /// link is closed.
    fn refuse_too_large(&mut self, now: Instant, id: LinkId, prefix: Bytes) {
        let from = self.links.get(&id).and_then(|s| s.peer);
        let overlay = self.overlay.clone();
        if let (Some(from), Ok((header, header_len))) = (
            from,
            ForwardingHeader::peek_prefix(&prefix, overlay.decode()),
        ) {
            let is_response = header_code(&prefix, header_len).is_some_and(|c| c.is_response());
            tracing::warn!(peer = %from, size = header.length, "message over max-message-size: closing the link (RFC 6940 §6.6)");
            if !is_response && header.fragment.offset() == 0 {
                self.error_reply(
                    now,
                    id,
                    from,
                    &header,
                    ErrorCode::MESSAGE_TOO_LARGE,
                    "message larger than max-message-size",
                );
            }
        }
        self.stats.dropped_other += 1;
        self.close_link(now, id, "message over max-message-size");
    }

    /// Sends one message on a link, fragmented if it does not fit the link in one piece
    /// (§6.7).
    pub(super) fn send_on(&mut self, now: Instant, id: LinkId, message: Bytes) {
        if id == LOOPBACK {
            return self.loopback(now, message);
        }
        let Some(slot) = self.links.get_mut(&id) else {
            self.stats.dropped_other += 1;
            return;
        };
        slot.last_activity = Some(now);
        let mut pieces = vec![message];
        if let Some(mtu) = slot.session.mtu()
            && pieces[0].len() > mtu
        {
            let fragments = fragment::split(pieces[0].clone(), mtu, self.overlay.decode());
            if fragments.len() > 1 {
                self.stats.fragmented += 1;
                self.stats.fragments_sent += fragments.len() as u64;
                pieces = fragments;
            }
        }
        for piece in pieces {
            let Some(slot) = self.links.get_mut(&id) else {
                return;
            };
            if slot.session.send(now, piece).is_err() {
                self.stats.dropped_other += 1;
            }
        }
        self.pump_link(now, id);
    }

    /// Established DTLS links, with the time their keepalive is due.
    fn keepalives(&self) -> impl Iterator<Item = (NodeId, Instant)> + '_ {
        self.links.values().filter_map(|s| {
            let dtls = matches!(s.transport, Transport::Datagram { .. });
            match (dtls && s.session.is_established(), s.peer, s.last_activity) {
                (true, Some(p), Some(t)) => Some((p, t + self.s.dtls_keepalive)),
                _ => None,
            }
        })
    }

    pub(super) fn next_keepalive(&self) -> Option<Instant> {
        self.keepalives().map(|(_, t)| t).min()
    }

    /// Pings the peers of idle DTLS links (see [`super::NodeSettings::dtls_keepalive`]).
    pub(super) fn send_keepalives(&mut self, now: Instant) {
        let due: Vec<NodeId> = self
            .keepalives()
            .filter(|(_, t)| *t <= now)
            .map(|(p, _)| p)
            .collect();
        for peer in due {
            if let Some(slot) = self.by_peer.get(&peer).and_then(|l| self.links.get_mut(l)) {
                slot.last_activity = Some(now);
            }
            let body = MessageBody::PingReq(PingReq::default());
            let _ = self.request(
                now,
                vec![Destination::Node(peer)],
                body,
                Purpose::Notification,
            );
        }
    }

    /// When a peer certificate expires, as an instant.
    fn cert_expiry(&self, cert: &ReloadCertificate) -> Instant {
        let not_after = UNIX_EPOCH + Duration::from_secs(cert.not_after.max(0) as u64);
        match not_after.duration_since(self.anchor.wall) {
            Ok(d) => self.anchor.instant + d,
            Err(_) => self.anchor.instant,
        }
    }

    /// The next time a link needs its timer run or its peer's certificate expires.
    pub(super) fn next_link_timeout(&self) -> Option<Instant> {
        self.links
            .values()
            .flat_map(|s| {
                [
                    s.session.poll_timeout(),
                    s.cert
                        .as_ref()
                        .map(|c| self.cert_expiry(c) + Duration::from_secs(1)),
                ]
            })
            .flatten()
            .min()
    }

    /// Runs due link timers; closes links whose peer certificate expired.
    pub(super) fn link_timeouts(&mut self, now: Instant) {
        let mut due: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, s)| s.session.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        due.sort();
        for id in due {
            if let Some(slot) = self.links.get_mut(&id) {
                slot.session.handle_timeout(now);
            }
            self.pump_link(now, id);
        }
        let mut expired: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, s)| s.cert.as_ref().is_some_and(|c| self.cert_expiry(c) < now))
            .map(|(id, _)| *id)
            .collect();
        expired.sort();
        for id in expired {
            tracing::info!(link = ?id, "the peer's certificate expired: closing the link");
            self.close_link(now, id, "the peer's certificate expired");
        }
    }

    /// A new overlay configuration is in force: every link applies its limits, and a link
    /// whose peer's certificate it no longer accepts (bad-node, other roots) is closed.
    pub(super) fn recheck_links(&mut self, now: Instant) {
        let wall = self.anchor.at(now);
        let max = self.overlay.max_message_size();
        let mut refused = Vec::new();
        for (id, slot) in self.links.iter_mut() {
            slot.session.set_max_message_size(max);
            if let Some(cert) = &slot.cert
                && let Err(e) = self.overlay.trust().verify(cert, &slot.chain, wall)
            {
                refused.push((*id, e));
            }
        }
        refused.sort_by_key(|(id, _)| *id);
        for (id, e) in refused {
            let peer = self.links.get(&id).and_then(|s| s.peer);
            tracing::warn!(
                ?peer,
                "closing the link: its peer is refused by the new configuration: {e}"
            );
            self.close_link(now, id, &format!("refused by the new configuration: {e}"));
        }
    }
}
