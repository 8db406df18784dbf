//! Transactions: end-to-end retransmission of our requests (RFC 6940 §6.2.1) and the
//! cache of answers that lets a retransmitted request get an equivalent answer within the
//! maximum request lifetime (§6.2.1, §3).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reload_wire::{Destination, NodeId};

/// Why we sent a request: who gets the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The application asked; the answer becomes an [`super::Event`].
    Application,
    /// The topology plug-in asked for an Attach to this target.
    TopologyAttach {
        target: Destination,
        send_update: bool,
        /// Our ICE session for it (ICE overlays, `node::ice`).
        ice: Option<u64>,
    },
    /// The topology plug-in's Join to this admitting peer.
    TopologyJoin,
    /// The topology plug-in's RouteQuery.
    TopologyRouteQuery { asked: reload_wire::NodeId },
    /// The topology plug-in's Ping.
    TopologyPing { target: Destination },
    /// An Update, Leave or ConfigUpdate whose answer only needs to arrive.
    Notification,
    /// The application's Fetch: the values are verified before it gets them.
    Fetch { resource: reload_wire::ResourceId },
    /// A replica or handover Store of what we hold at `resource` (§10.4, §10.7.3), to a
    /// peer or (`None`) routed to whoever is responsible; `version` is that of our data
    /// when it was sent.
    Replicate {
        resource: reload_wire::ResourceId,
        to: Option<NodeId>,
        version: u64,
    },
    /// A Fetch of newer data after a replica Store was refused (§7.4.1.1).
    FetchBack { resource: reload_wire::ResourceId },
    /// Looking for our certificate in the certificate Kind `kind` at `resource` (§8),
    /// to store it there if it is missing.
    PublishCert {
        kind: reload_wire::storage::KindId,
        resource: reload_wire::ResourceId,
    },
}

impl Purpose {
    /// Whether the storage code handles the answer.
    pub(super) fn is_storage(&self) -> bool {
        matches!(
            self,
            Purpose::Fetch { .. }
                | Purpose::Replicate { .. }
                | Purpose::FetchBack { .. }
                | Purpose::PublishCert { .. }
        )
    }
}

/// One outstanding request.
#[derive(Clone, Debug)]
pub struct Outstanding {
    pub purpose: Purpose,
    /// The signed message, sent again unchanged on each retransmission.
    pub message: Bytes,
    /// Where it was addressed (for the responder check of §6.3.4).
    pub destination: Vec<Destination>,
    pub transmissions: u32,
    pub next_retransmit: Instant,
    /// The links its transmissions left on: an error that arises in transit can only come
    /// back over one of them (§6.3.4).
    pub sent_on: Vec<super::LinkId>,
}

/// Our outstanding requests, by transaction ID.
#[derive(Debug, Default)]
pub struct Transactions {
    pending: HashMap<u64, Outstanding>,
    /// Retransmission deadlines, for `poll_timeout`.
    timers: BTreeMap<(Instant, u64), ()>,
}

impl Transactions {
    pub fn insert(&mut self, tx: u64, o: Outstanding) {
        self.timers.insert((o.next_retransmit, tx), ());
        if let Some(old) = self.pending.insert(tx, o) {
            self.timers.remove(&(old.next_retransmit, tx));
        }
    }

    pub fn remove(&mut self, tx: u64) -> Option<Outstanding> {
        let o = self.pending.remove(&tx)?;
        self.timers.remove(&(o.next_retransmit, tx));
        Some(o)
    }

    pub fn get(&self, tx: u64) -> Option<&Outstanding> {
        self.pending.get(&tx)
    }

    /// Records that a transmission of `tx` left on `link`.
    pub fn sent_on(&mut self, tx: u64, link: super::LinkId) {
        if let Some(o) = self.pending.get_mut(&tx)
            && !o.sent_on.contains(&link)
        {
            o.sent_on.push(link);
        }
    }

    /// Our outstanding Attach for the Node-ID `peer`, if any.
    pub fn attach_to(&self, peer: &reload_wire::NodeId) -> Option<u64> {
        self.pending
            .iter()
            .filter(|(_, o)| matches!(&o.purpose, Purpose::TopologyAttach { target: Destination::Node(n), .. } if n == peer))
            .map(|(tx, _)| *tx)
            .min()
    }

    /// Our outstanding requests source-routed through the Node-ID `peer` (it is the first
    /// of several destinations).
    pub fn routed_through(&self, peer: &NodeId) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, o)| {
                o.destination.len() > 1 && o.destination[0] == Destination::Node(*peer)
            })
            .map(|(tx, _)| *tx)
            .collect();
        v.sort_unstable();
        v
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(t, _)| *t)
    }

    /// Transactions whose timer fired: to retransmit (`Ok`) or that failed after the last
    /// transmission (`Err`).
    pub fn expire(
        &mut self,
        now: Instant,
        interval: Duration,
        max_transmissions: u32,
    ) -> Vec<Result<(u64, Bytes), (u64, Outstanding)>> {
        let mut out = Vec::new();
        while let Some((&(t, tx), _)) = self.timers.iter().next() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, tx));
            let Some(o) = self.pending.get_mut(&tx) else {
                continue;
            };
            if o.transmissions >= max_transmissions {
                if let Some(o) = self.pending.remove(&tx) {
                    out.push(Err((tx, o)));
                }
            } else {
                o.transmissions += 1;
                o.next_retransmit = now + interval;
                self.timers.insert((o.next_retransmit, tx), ());
                out.push(Ok((tx, o.message.clone())));
            }
        }
        out
    }
}

/// Answers we sent, by (transaction ID, requester), kept for the maximum request lifetime
/// so that a retransmitted request gets the same answer (§6.2.1) — the safe choice for
/// every method, Store included. Keyed by the requester too, so that nobody can obtain
/// another node's answer by reusing its transaction ID. Bounded in size.
#[derive(Debug)]
pub struct AnswerCache {
    lifetime: Duration,
    capacity: usize,
    answers: HashMap<(u64, NodeId), (Instant, Bytes)>,
    order: VecDeque<(Instant, (u64, NodeId))>,
}

impl AnswerCache {
    pub fn new(lifetime: Duration, capacity: usize) -> Self {
        AnswerCache {
            lifetime,
            capacity: capacity.max(1),
            answers: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// A new maximum request lifetime (ConfigUpdate).
    pub fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = lifetime;
    }

    pub fn get(&self, tx: (u64, NodeId), now: Instant) -> Option<&Bytes> {
        self.answers
            .get(&tx)
            .filter(|(t, _)| now.saturating_duration_since(*t) < self.lifetime)
            .map(|(_, b)| b)
    }

    pub fn insert(&mut self, tx: (u64, NodeId), now: Instant, answer: Bytes) {
        self.expire(now);
        while self.answers.len() >= self.capacity {
            match self.order.pop_front() {
                Some((_, old)) => {
                    self.answers.remove(&old);
                }
                None => break,
            }
        }
        self.answers.insert(tx, (now, answer));
        self.order.push_back((now, tx));
    }

    pub fn expire(&mut self, now: Instant) {
        while let Some(&(t, tx)) = self.order.front() {
            if now.saturating_duration_since(t) < self.lifetime {
                break;
            }
            self.order.pop_front();
            if self.answers.get(&tx).is_some_and(|(at, _)| *at == t) {
                self.answers.remove(&tx);
            }
        }
    }
}
