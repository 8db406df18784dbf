//! Server-reflexive addresses (RFC 6940 §6.5.1.4): "peers ... use the peers they are
//! connected to as STUN servers". When a link over UDP comes up, the node sends a STUN
//! Binding request from the same local port to the peer's port (which answers it, see the
//! endpoint) and records the address the answer reveals, grouped by that address — the
//! material for server-reflexive ICE candidates, and how a node learns whether (and how)
//! a NAT maps it. Probes are repeated every [`REPROBE`]; unanswered ones are forgotten
//! after [`PROBE_TIMEOUT`]. Bounded: at most [`MAX_PENDING`] probes in flight and one
//! address per (local port, peer).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reload_nat::stun;
use reload_wire::NodeId;

use super::endpoint::Transport;
use super::{LinkId, Node, Transmit};

/// How often each UDP link's peer is asked again (a NAT's mapping can change).
pub const REPROBE: Duration = Duration::from_secs(300);
/// An unanswered probe is forgotten after this.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Probes in flight at most.
pub const MAX_PENDING: usize = 256;

#[derive(Debug)]
struct Probe {
    local: SocketAddr,
    remote: SocketAddr,
    peer: NodeId,
    sent: Instant,
}

/// One address a node's local port is seen at, and by whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReflexiveAddress {
    /// The node's own socket.
    pub local: SocketAddr,
    /// The address the peers saw the requests come from.
    pub mapped: SocketAddr,
    /// The peers that saw it.
    pub seen_by: Vec<NodeId>,
}

#[derive(Debug, Default)]
pub(super) struct Reflexive {
    pending: HashMap<[u8; stun::TRANSACTION_ID_LEN], Probe>,
    /// (local, peer) → the mapped address the peer reported.
    seen: BTreeMap<(SocketAddr, NodeId), SocketAddr>,
    /// When each UDP link's peer is to be asked again.
    next: BTreeMap<LinkId, Instant>,
}

impl Reflexive {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let probe = self.next.values().min().copied();
        let expiry = self.pending.values().map(|p| p.sent + PROBE_TIMEOUT).min();
        probe.into_iter().chain(expiry).min()
    }
}

impl Node {
    /// A fresh STUN transaction ID (RFC 5389 §6: 96 random bits) from the node's random
    /// source.
    pub(super) fn stun_transaction_id(&mut self) -> [u8; stun::TRANSACTION_ID_LEN] {
        let mut id = [0u8; stun::TRANSACTION_ID_LEN];
        id[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&self.rng.next_u64().to_be_bytes()[..4]);
        id
    }

    /// A link came up: a UDP one gets its peer asked at once (before the topology hears
    /// of the link and Attaches through it, so that the Attach can wait for the answer).
    pub(super) fn reflexive_link_up(&mut self, now: Instant, link: LinkId) {
        if let Some(slot) = self.links.get(&link)
            && let Transport::Datagram { local, .. } = slot.transport
            && !self.turn.is_relayed(local)
        {
            self.reflexive.next.insert(link, now + REPROBE);
            self.reflexive_probe(now, link);
        }
    }

    /// When the oldest probe still awaited within `wait` was sent (`None`: none is).
    pub(super) fn reflexive_awaited_since(&self, now: Instant, wait: Duration) -> Option<Instant> {
        self.reflexive
            .pending
            .values()
            .map(|p| p.sent)
            .filter(|t| now.saturating_duration_since(*t) < wait)
            .min()
    }

    /// A link went down: its probes and what its peer saw go.
    pub(super) fn reflexive_link_down(&mut self, link: LinkId, peer: Option<NodeId>) {
        self.reflexive.next.remove(&link);
        if let Some(peer) = peer {
            self.reflexive.seen.retain(|(_, p), _| *p != peer);
        }
    }

    pub(super) fn reflexive_timers(&mut self, now: Instant) {
        self.reflexive
            .pending
            .retain(|_, p| now.saturating_duration_since(p.sent) < PROBE_TIMEOUT);
        let due: Vec<LinkId> = self
            .reflexive
            .next
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(l, _)| *l)
            .collect();
        for link in due {
            self.reflexive.next.insert(link, now + REPROBE);
            self.reflexive_probe(now, link);
        }
    }

    /// Asks the peer of UDP link `link` where it sees us (a STUN Binding request from the
    /// link's local port), and where it sees each of our application sockets (§6.5.2:
    /// their reflexive candidates).
    fn reflexive_probe(&mut self, now: Instant, link: LinkId) {
        let Some(slot) = self.links.get(&link) else {
            return;
        };
        let (Transport::Datagram { local, remote }, Some(peer)) = (slot.transport, slot.peer)
        else {
            return;
        };
        self.reflexive_probe_from(now, local, remote, peer);
        let apps: Vec<SocketAddr> = self
            .s
            .app_sockets
            .iter()
            .filter(|a| a.is_ipv4() == remote.is_ipv4() && !a.ip().is_unspecified())
            .copied()
            .collect();
        for app in apps {
            self.reflexive_probe_from(now, app, remote, peer);
        }
    }

    fn reflexive_probe_from(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        peer: NodeId,
    ) {
        if self.reflexive.pending.len() >= MAX_PENDING {
            return;
        }
        let id = self.stun_transaction_id();
        self.reflexive.pending.insert(
            id,
            Probe {
                local,
                remote,
                peer,
                sent: now,
            },
        );
        self.transmits.push_back(Transmit {
            transport: Transport::Datagram { local, remote },
            data: Bytes::from(stun::binding_request(id)),
        });
    }

    /// A STUN Binding success response arrived on `local` from `remote`: if it answers
    /// one of our probes, what it reveals is recorded. Whether it was ours.
    pub(super) fn reflexive_response(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        id: [u8; stun::TRANSACTION_ID_LEN],
    ) -> bool {
        let Some(p) = self.reflexive.pending.get(&id) else {
            return false;
        };
        if p.local != local || p.remote != remote {
            return false;
        }
        let Some(mapped) = stun::mapped_address(data, id) else {
            return false;
        };
        let p = self.reflexive.pending.remove(&id).expect("present");
        let before = self.reflexive.seen.insert((local, p.peer), mapped);
        if before != Some(mapped) {
            tracing::info!(%local, %mapped, peer = %p.peer, "server-reflexive address (RFC 6940 §6.5.1.4)");
        }
        true
    }

    /// The addresses this node's UDP ports are seen at by the peers it has links with
    /// (RFC 6940 §6.5.1.4), grouped by address; most witnesses first.
    pub fn reflexive_addresses(&self) -> Vec<ReflexiveAddress> {
        let mut by: BTreeMap<(SocketAddr, SocketAddr), Vec<NodeId>> = BTreeMap::new();
        for ((local, peer), mapped) in &self.reflexive.seen {
            by.entry((*local, *mapped)).or_default().push(*peer);
        }
        let mut out: Vec<ReflexiveAddress> = by
            .into_iter()
            .map(|((local, mapped), seen_by)| ReflexiveAddress {
                local,
                mapped,
                seen_by,
            })
            .collect();
        out.sort_by_key(|a| std::cmp::Reverse(a.seen_by.len()));
        out
    }
}
