//! A deterministic simulator: many [`Node`] cores in one process on a virtual clock, with
//! configurable latency, loss and node failure, reproducible from a seed.
//!
//! The simulator plays the shell of every node: it carries transmits between linked nodes
//! after a latency drawn from its seeded generator, answers `Connect` events by linking the
//! two cores directly (it vouches for both identities, standing in for the (D)TLS
//! handshake), and calls each core's `handle_timeout` when due. Nothing depends on the real
//! clock or on hash-map iteration order, so a seed reproduces a run exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::node::{Event, LinkId, Node};
use reload_wire::NodeId;

/// Network behaviour of the simulation.
#[derive(Clone, Debug)]
pub struct SimNetwork {
    /// One-way latency range.
    pub latency: (Duration, Duration),
    /// Probability (0..=1) that a message is lost.
    pub loss: f64,
}

impl Default for SimNetwork {
    fn default() -> Self {
        SimNetwork {
            latency: (Duration::from_millis(5), Duration::from_millis(40)),
            loss: 0.0,
        }
    }
}

/// xorshift64*.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// Every seed gives its own stream (a plain `seed | 1` made seeds 2k and 2k+1 the
    /// same run).
    pub fn new(seed: u64) -> Self {
        SimRng(crate::node::seed_state(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug)]
enum Delivery {
    Message {
        to: usize,
        link: LinkId,
        data: Bytes,
    },
    LinkUp {
        node: usize,
        link: LinkId,
        peer: NodeId,
    },
    LinkDown {
        node: usize,
        link: LinkId,
    },
    /// A real-link transport came up: the connecting side starts its (D)TLS handshake.
    TransportUp {
        node: usize,
        link: LinkId,
    },
    Timer {
        node: usize,
    },
}

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    pub node: Node,
    pub addr: SocketAddr,
    pub alive: bool,
    /// Events the simulator did not consume (for the test to inspect).
    pub events: Vec<Event>,
}

/// The simulation.
#[derive(Debug)]
pub struct Sim {
    pub base: Instant,
    pub now: Instant,
    pub rng: SimRng,
    pub net: SimNetwork,
    pub nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    /// (node, link) → (peer node, peer link).
    wires: BTreeMap<(usize, LinkId), (usize, LinkId)>,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    pending: HashMap<usize, Delivery>,
    seq: u64,
    /// Scheduled timer per node, to avoid duplicates.
    timers: HashMap<usize, Instant>,
    /// Latest scheduled arrival per (node, link): links deliver in order, as TCP does.
    fifo: HashMap<(usize, LinkId), Instant>,
    /// Messages delivered and lost.
    pub delivered: u64,
    pub lost: u64,
    /// Watched transactions (see [`Sim::watch`]): deliveries of their request and of
    /// their answers.
    watched: HashMap<u64, (u32, u32)>,
}

impl Sim {
    pub fn new(seed: u64, net: SimNetwork) -> Self {
        let base = Instant::now();
        Sim {
            base,
            now: base,
            rng: SimRng::new(seed),
            net,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            wires: BTreeMap::new(),
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            seq: 0,
            timers: HashMap::new(),
            fifo: HashMap::new(),
            delivered: 0,
            lost: 0,
            watched: HashMap::new(),
        }
    }

    /// Simulated time elapsed.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Adds a node listening at `addr` (its host candidate).
    pub fn add(&mut self, node: Node, addr: SocketAddr) -> usize {
        let i = self.nodes.len();
        self.nodes.push(SimNode {
            node,
            addr,
            alive: true,
            events: Vec::new(),
        });
        self.by_addr.insert(addr, i);
        self.after_input(i);
        i
    }

    fn schedule(&mut self, at: Instant, d: Delivery) {
        self.seq += 1;
        let key = self.seq as usize;
        self.pending.insert(key, d);
        self.queue.push(Reverse((at, self.seq, key)));
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = self.net.latency;
        let span = hi.saturating_sub(lo).as_micros() as u64;
        lo + Duration::from_micros(self.rng.below(span + 1))
    }

    /// Collects what node `i` produced after an input, and reschedules its timer.
    pub fn after_input(&mut self, i: usize) {
        if !self.nodes[i].alive {
            return;
        }
        while let Some(t) = self.nodes[i].node.poll_transmit() {
            let Some(&(to, link)) = self.wires.get(&(i, t.link)) else {
                continue;
            };
            if self.net.loss > 0.0 && self.rng.unit() < self.net.loss {
                self.lost += 1;
                continue;
            }
            let mut at = self.now + self.latency();
            // In order per link (a stream never reorders; datagrams rarely do).
            let last = self.fifo.entry((to, link)).or_insert(at);
            at = at.max(*last);
            *last = at;
            self.schedule(
                at,
                Delivery::Message {
                    to,
                    link,
                    data: t.data,
                },
            );
        }
        while let Some(e) = self.nodes[i].node.poll_event() {
            if matches!(e, Event::Connect { .. }) {
                // Recorded too: tests check who opened a transport.
                self.nodes[i].events.push(e.clone());
            }
            match e {
                Event::Connect {
                    link,
                    addr,
                    protocol,
                    ..
                } => {
                    let at = self.now + self.latency() * 2;
                    let target = self
                        .by_addr
                        .get(&addr)
                        .copied()
                        .filter(|&j| self.nodes[j].alive && j != i);
                    if let Some(j) = target.filter(|&j| self.nodes[j].node.has_real_links()) {
                        // Real (D)TLS links: carry the handshake bytes; identities come
                        // from the certificates.
                        let now = self.now;
                        match self.nodes[j].node.accept_transport(now, protocol) {
                            Some(peer_link) => {
                                self.wires.insert((i, link), (j, peer_link));
                                self.wires.insert((j, peer_link), (i, link));
                                self.schedule(at, Delivery::TransportUp { node: i, link });
                                self.after_input(j);
                            }
                            None => self.schedule(at, Delivery::LinkDown { node: i, link }),
                        }
                        continue;
                    }
                    match target {
                        Some(j) => {
                            let peer_link = self.nodes[j].node.accept();
                            self.wires.insert((i, link), (j, peer_link));
                            self.wires.insert((j, peer_link), (i, link));
                            let (a, b) =
                                (self.nodes[i].node.node_id(), self.nodes[j].node.node_id());
                            self.schedule(
                                at,
                                Delivery::LinkUp {
                                    node: i,
                                    link,
                                    peer: b,
                                },
                            );
                            self.schedule(
                                at,
                                Delivery::LinkUp {
                                    node: j,
                                    link: peer_link,
                                    peer: a,
                                },
                            );
                        }
                        None => self.schedule(at, Delivery::LinkDown { node: i, link }),
                    }
                }
                Event::Close { link } => {
                    if let Some((j, pl)) = self.wires.remove(&(i, link)) {
                        // The other end learns it after the bytes already on their way
                        // (a FIN follows the data), and forgets its end of the wire then.
                        let at = (self.now + self.latency())
                            .max(self.fifo.get(&(j, pl)).copied().unwrap_or(self.now));
                        self.schedule(at, Delivery::LinkDown { node: j, link: pl });
                    }
                }
                other => self.nodes[i].events.push(other),
            }
        }
        if let Some(t) = self.nodes[i].node.poll_timeout() {
            let t = t.max(self.now);
            if self
                .timers
                .get(&i)
                .is_none_or(|&old| t < old || old < self.now)
            {
                self.timers.insert(i, t);
                self.schedule(t, Delivery::Timer { node: i });
            }
        }
    }

    /// Processes the next scheduled delivery; `false` when nothing is left before
    /// `deadline`.
    pub fn step(&mut self, deadline: Instant) -> bool {
        let Some(Reverse((at, _, key))) = self.queue.peek().copied() else {
            return false;
        };
        if at > deadline {
            return false;
        }
        self.queue.pop();
        let Some(d) = self.pending.remove(&key) else {
            return true;
        };
        self.now = self.now.max(at);
        let now = self.now;
        let i = match d {
            Delivery::Message { to, link, data } => {
                if !self.nodes[to].alive || !self.wires.contains_key(&(to, link)) {
                    return true;
                }
                self.delivered += 1;
                if !self.watched.is_empty() {
                    self.count_watched(to, &data);
                }
                self.nodes[to].node.handle_input(now, link, data);
                to
            }
            Delivery::LinkUp { node, link, peer } => {
                if !self.nodes[node].alive {
                    return true;
                }
                self.nodes[node].node.link_up(now, link, peer);
                node
            }
            Delivery::LinkDown { node, link } => {
                if !self.nodes[node].alive {
                    return true;
                }
                self.wires.remove(&(node, link));
                if self.nodes[node].node.has_real_links() {
                    self.nodes[node].node.transport_closed(now, link);
                } else {
                    self.nodes[node].node.link_down(now, link);
                }
                node
            }
            Delivery::TransportUp { node, link } => {
                if !self.nodes[node].alive {
                    return true;
                }
                self.nodes[node].node.transport_connected(now, link);
                node
            }
            Delivery::Timer { node } => {
                if self.timers.get(&node) != Some(&at) || !self.nodes[node].alive {
                    return true;
                }
                self.timers.remove(&node);
                self.nodes[node].node.handle_timeout(now);
                node
            }
        };
        self.after_input(i);
        true
    }

    /// Runs until `d` of simulated time has passed (or nothing is left to do).
    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        while self.step(deadline) {}
        self.now = self.now.max(deadline);
    }

    /// Runs until `done` holds, checking after every delivery, for at most `limit` of
    /// simulated time. Returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(deadline) {
                self.now = self.now.max(deadline);
                return done(self);
            }
        }
    }

    /// Node `i` fails: it stops, and every peer linked to it sees its link go down after
    /// a latency (as a TLS/TCP or DTLS link would time out).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        let linked: Vec<((usize, LinkId), (usize, LinkId))> = self
            .wires
            .iter()
            .filter(|((n, _), _)| *n == i)
            .map(|(a, b)| (*a, *b))
            .collect();
        for (a, (j, pl)) in linked {
            self.wires.remove(&a);
            self.wires.remove(&(j, pl));
            let at = self.now + self.latency();
            self.schedule(at, Delivery::LinkDown { node: j, link: pl });
        }
    }

    /// Brings a killed node's address back (a peer that was not up yet, or came back):
    /// connections to it succeed again. Its core keeps its state.
    pub fn revive(&mut self, i: usize) {
        self.nodes[i].alive = true;
    }

    /// Links nodes `i` and `j` directly (as a completed Attach would), after a latency.
    pub fn connect(&mut self, i: usize, j: usize) {
        if self.nodes[i].node.has_real_links() {
            let addr = self.nodes[j].addr;
            let protocol = self.nodes[j].node.settings().listen.first().map_or(
                reload_wire::link::OverlayLinkType::TLS_TCP_FH_NO_ICE,
                |(p, _)| *p,
            );
            let expected = self.nodes[j].node.node_id();
            self.nodes[i].node.open_link(addr, protocol, Some(expected));
            self.after_input(i);
            return;
        }
        let li = self.nodes[i].node.accept();
        let lj = self.nodes[j].node.accept();
        self.wires.insert((i, li), (j, lj));
        self.wires.insert((j, lj), (i, li));
        let at = self.now + self.latency();
        let (a, b) = (self.nodes[i].node.node_id(), self.nodes[j].node.node_id());
        self.schedule(
            at,
            Delivery::LinkUp {
                node: i,
                link: li,
                peer: b,
            },
        );
        self.schedule(
            at,
            Delivery::LinkUp {
                node: j,
                link: lj,
                peer: a,
            },
        );
    }

    /// Delivers raw bytes to node `to` as if they arrived on its link from `from`
    /// (for hostile-input tests). Returns whether such a link exists.
    pub fn inject(&mut self, from: usize, to: usize, data: Bytes) -> bool {
        let Some(link) = self
            .wires
            .iter()
            .find(|((n, _), (m, _))| *n == from && *m == to)
            .map(|(_, (_, l))| *l)
        else {
            return false;
        };
        let at = self.now + self.latency();
        self.schedule(at, Delivery::Message { to, link, data });
        true
    }

    /// Counts, from now on, every delivery over a link of a message with transaction ID
    /// `tx`: the hops its request and its answers take (overlay links crossed; a
    /// retransmission counts again). For message links only.
    pub fn watch(&mut self, tx: u64) {
        self.watched.entry(tx).or_insert((0, 0));
    }

    /// Stops counting `tx`: (request deliveries, answer deliveries) since [`Sim::watch`].
    pub fn unwatch(&mut self, tx: u64) -> Option<(u32, u32)> {
        self.watched.remove(&tx)
    }

    fn count_watched(&mut self, to: usize, data: &Bytes) {
        let decode = &self.nodes[to].node.settings().decode;
        let Ok((h, len)) = reload_wire::ForwardingHeader::peek(data, decode) else {
            return;
        };
        let Some(c) = self.watched.get_mut(&h.transaction_id) else {
            return;
        };
        let code = data
            .get(len..len + 2)
            .map(|b| reload_wire::message::MessageCode(u16::from_be_bytes([b[0], b[1]])));
        if code.is_some_and(|c| c.is_response()) {
            c.1 += 1;
        } else {
            c.0 += 1;
        }
    }

    /// Index of the node with this Node-ID.
    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.node.node_id() == *id)
    }
}
