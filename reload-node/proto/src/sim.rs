//! A deterministic simulator: many [`Node`] cores in one process on a virtual clock, with
//! configurable latency, loss and node failure, reproducible from a seed.
//!
//! The simulator is the network and the shell of every node, nothing more: it carries
//! streams (TCP) and datagrams (UDP) between the addresses nodes listen on, after a latency
//! drawn from its seeded generator, and calls each core's `handle_timeout` when due. The
//! cores run exactly as on real sockets — their endpoints admit links, their links learn
//! their peers in-band (plain links, [`crate::link::plain`], or real (D)TLS) — so a test
//! here exercises the same code as a running peer. Nothing depends on the real clock or
//! on hash-map iteration order, so a seed reproduces a run exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::link::plain;
use crate::node::{Event, Node, StreamEvent, StreamId, Transport};
use crate::rand::Prng;
use reload_wire::NodeId;

/// Network behaviour of the simulation.
#[derive(Clone, Debug)]
pub struct SimNetwork {
    /// One-way latency range.
    pub latency: (Duration, Duration),
    /// Probability (0..=1) that a datagram, or a stream chunk after a stream's first one,
    /// is lost. Plain links send one message per chunk after their hello, so this loses
    /// whole messages, as a lossy hop would; (D)TLS streams do not survive it.
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

#[derive(Debug)]
enum Delivery {
    Stream {
        node: usize,
        stream: StreamId,
        event: StreamEvent,
    },
    Datagram {
        node: usize,
        local: SocketAddr,
        remote: SocketAddr,
        data: Bytes,
    },
    Timer {
        node: usize,
    },
}

/// How a simulated NAT maps and filters (RFC 4787 terms), for ICE in the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    /// Endpoint-independent mapping and filtering ("full cone"): one public port per
    /// private address, open to anyone.
    EndpointIndependent,
    /// Endpoint-independent mapping; only addresses the private side sent to may answer.
    PortRestricted,
    /// A new public port per destination, open only to that destination.
    Symmetric,
}

/// A simulated NAT: nodes put behind it ([`Sim::put_behind`]) are reached only through
/// the public ports their own datagrams opened.
#[derive(Debug)]
struct Nat {
    kind: NatKind,
    ip: IpAddr,
    next_port: u16,
    /// (private address, destination for a symmetric NAT) → public port.
    out: BTreeMap<(SocketAddr, Option<SocketAddr>), u16>,
    /// Public port → private address and the remote addresses it sent to.
    inbound: BTreeMap<u16, (SocketAddr, BTreeSet<SocketAddr>)>,
}

impl Nat {
    /// The public address a datagram from `private` to `remote` leaves with.
    fn outbound(&mut self, private: SocketAddr, remote: SocketAddr) -> SocketAddr {
        let key = match self.kind {
            NatKind::Symmetric => (private, Some(remote)),
            _ => (private, None),
        };
        let port = match self.out.get(&key) {
            Some(p) => *p,
            None => {
                let p = self.next_port;
                self.next_port = self.next_port.wrapping_add(1).max(1024);
                self.out.insert(key, p);
                self.inbound.insert(p, (private, BTreeSet::new()));
                p
            }
        };
        if let Some((_, sent_to)) = self.inbound.get_mut(&port) {
            sent_to.insert(remote);
        }
        SocketAddr::new(self.ip, port)
    }

    /// The private address a datagram from `from` to public `port` reaches, if any.
    fn inbound(&self, port: u16, from: SocketAddr) -> Option<SocketAddr> {
        let (private, sent_to) = self.inbound.get(&port)?;
        (self.kind == NatKind::EndpointIndependent || sent_to.contains(&from)).then_some(*private)
    }
}

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    pub node: Node,
    /// Where it listens (streams and datagrams).
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
    pub rng: Prng,
    pub net: SimNetwork,
    pub nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    /// (node, stream) → (peer node, peer stream).
    wires: BTreeMap<(usize, StreamId), (usize, StreamId)>,
    /// Streams whose first chunk was sent (loss spares the first).
    started: std::collections::BTreeSet<(usize, StreamId)>,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    pending: HashMap<usize, Delivery>,
    seq: u64,
    /// Scheduled timer per node, to avoid duplicates.
    timers: HashMap<usize, Instant>,
    /// Latest scheduled arrival per (node, stream): streams deliver in order.
    fifo: HashMap<(usize, StreamId), Instant>,
    /// Chunks and datagrams delivered and lost.
    pub delivered: u64,
    pub lost: u64,
    /// Watched transactions (see [`Sim::watch`]): deliveries of their request and of
    /// their answers.
    watched: HashMap<u64, (u32, u32)>,
    /// Captured transactions (see [`Sim::capture`]): every message delivered with them.
    captured: HashMap<u64, Vec<Bytes>>,
    nats: Vec<Nat>,
    /// Node → the NAT it is behind.
    behind: HashMap<usize, usize>,
    /// Datagrams a NAT dropped (no mapping, or filtered).
    pub nat_dropped: u64,
}

impl Sim {
    /// A simulation whose clock starts now (any instant would do: only differences count).
    pub fn new(seed: u64, net: SimNetwork) -> Self {
        let base = Instant::now();
        Sim {
            base,
            now: base,
            rng: Prng::new(seed),
            net,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            wires: BTreeMap::new(),
            started: Default::default(),
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            seq: 0,
            timers: HashMap::new(),
            fifo: HashMap::new(),
            delivered: 0,
            lost: 0,
            watched: HashMap::new(),
            captured: HashMap::new(),
            nats: Vec::new(),
            behind: HashMap::new(),
            nat_dropped: 0,
        }
    }

    /// A NAT of `kind` whose public address is `ip`; its index.
    pub fn add_nat(&mut self, kind: NatKind, ip: IpAddr) -> usize {
        self.nats.push(Nat {
            kind,
            ip,
            next_port: 40_000,
            out: BTreeMap::new(),
            inbound: BTreeMap::new(),
        });
        self.nats.len() - 1
    }

    /// Node `node` is behind NAT `nat` (its address is private from now on): datagrams
    /// it sends leave with the NAT's public address, and only those the NAT lets in
    /// reach it. Datagrams only; streams are not translated.
    pub fn put_behind(&mut self, node: usize, nat: usize) {
        self.behind.insert(node, nat);
    }

    /// Where a datagram from node `i`'s `local` to `remote` arrives: (node, its local
    /// address, the source it sees), through the NATs on the way.
    fn route_datagram(
        &mut self,
        i: usize,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<(usize, SocketAddr, SocketAddr)> {
        let from_nat = self.behind.get(&i).copied();
        let src = match from_nat {
            Some(n) => self.nats[n].outbound(local, remote),
            None => local,
        };
        if let Some(n) = self.nats.iter().position(|n| n.ip == remote.ip()) {
            let Some(private) = self.nats[n].inbound(remote.port(), src) else {
                self.nat_dropped += 1;
                return None;
            };
            let j = *self.by_addr.get(&private)?;
            return Some((j, private, src));
        }
        let j = *self.by_addr.get(&remote)?;
        // A private address is reachable only from behind the same NAT.
        match self.behind.get(&j) {
            Some(n) if Some(*n) != from_nat => {
                self.nat_dropped += 1;
                None
            }
            Some(_) => Some((j, remote, local)),
            None => Some((j, remote, src)),
        }
    }

    /// Simulated time elapsed.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Adds a node listening at `addr` (streams and datagrams).
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

    fn lose(&mut self) -> bool {
        if self.net.loss > 0.0 && self.rng.unit() < self.net.loss {
            self.lost += 1;
            return true;
        }
        false
    }

    /// Schedules a stream event in order with the data already on its way.
    fn schedule_stream(&mut self, node: usize, stream: StreamId, event: StreamEvent) {
        let mut at = self.now + self.latency();
        let last = self.fifo.entry((node, stream)).or_insert(at);
        at = at.max(*last);
        *last = at;
        self.schedule(
            at,
            Delivery::Stream {
                node,
                stream,
                event,
            },
        );
    }

    /// Collects what node `i` produced after an input, and reschedules its timer.
    pub fn after_input(&mut self, i: usize) {
        if !self.nodes[i].alive {
            return;
        }
        while let Some(t) = self.nodes[i].node.poll_transmit() {
            match t.transport {
                Transport::Stream(s) => {
                    let Some(&(j, peer)) = self.wires.get(&(i, s)) else {
                        continue;
                    };
                    if !self.started.insert((i, s)) && self.lose() {
                        continue;
                    }
                    self.schedule_stream(j, peer, StreamEvent::Data(t.data));
                }
                Transport::Datagram { local, remote } => {
                    let Some((j, to, from)) = self.route_datagram(i, local, remote) else {
                        continue;
                    };
                    if self.lose() {
                        continue;
                    }
                    let at = self.now + self.latency();
                    self.schedule(
                        at,
                        Delivery::Datagram {
                            node: j,
                            local: to,
                            remote: from,
                            data: t.data,
                        },
                    );
                }
            }
        }
        while let Some(e) = self.nodes[i].node.poll_event() {
            match e {
                Event::OpenStream { stream, remote } => {
                    // Recorded too: tests check who opened a transport.
                    self.nodes[i].events.push(e.clone());
                    self.open_stream(i, stream, remote);
                }
                Event::CloseStream { stream } => {
                    if let Some((j, peer)) = self.wires.remove(&(i, stream)) {
                        // The other end learns it after the bytes already on their way
                        // (a FIN follows the data), and forgets its end of the wire then.
                        self.schedule_stream(j, peer, StreamEvent::Closed { error: None });
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

    /// Node `i` connects `stream` to `remote`: the node listening there accepts (or its
    /// endpoint refuses); either way the answer comes back after a round trip.
    fn open_stream(&mut self, i: usize, stream: StreamId, remote: SocketAddr) {
        let target = self
            .by_addr
            .get(&remote)
            .copied()
            .filter(|&j| self.nodes[j].alive && j != i);
        let outcome = match target {
            Some(j) => {
                let (now, from) = (self.now, self.nodes[i].addr);
                match self.nodes[j].node.accept_stream(now, remote, from) {
                    Ok(peer) => {
                        self.wires.insert((i, stream), (j, peer));
                        self.wires.insert((j, peer), (i, stream));
                        self.after_input(j);
                        StreamEvent::Connected
                    }
                    Err(why) => StreamEvent::Closed {
                        error: Some(format!("refused: {why}")),
                    },
                }
            }
            None => StreamEvent::Closed {
                error: Some("connection refused".into()),
            },
        };
        let at = self.now + self.latency() * 2;
        self.schedule(
            at,
            Delivery::Stream {
                node: i,
                stream,
                event: outcome,
            },
        );
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
            Delivery::Stream {
                node,
                stream,
                event,
            } => {
                if !self.nodes[node].alive {
                    return true;
                }
                match &event {
                    StreamEvent::Data(data) => {
                        if !self.wires.contains_key(&(node, stream)) {
                            return true;
                        }
                        self.delivered += 1;
                        if !self.watched.is_empty() || !self.captured.is_empty() {
                            self.count_watched(node, data);
                        }
                    }
                    StreamEvent::Closed { .. } => {
                        self.wires.remove(&(node, stream));
                    }
                    _ => {}
                }
                self.nodes[node].node.handle_stream(now, stream, event);
                node
            }
            Delivery::Datagram {
                node,
                local,
                remote,
                data,
            } => {
                if !self.nodes[node].alive {
                    return true;
                }
                self.delivered += 1;
                self.nodes[node]
                    .node
                    .handle_datagram(now, local, remote, data);
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

    /// Node `i` fails: it stops, and every peer with a stream to it sees the stream end
    /// after a latency (as a TCP connection to a dead host eventually does). Datagram links
    /// to it notice by their own timeouts.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        let linked: Vec<((usize, StreamId), (usize, StreamId))> = self
            .wires
            .iter()
            .filter(|((n, _), _)| *n == i)
            .map(|(a, b)| (*a, *b))
            .collect();
        for (a, (j, peer)) in linked {
            self.wires.remove(&a);
            self.schedule_stream(
                j,
                peer,
                StreamEvent::Closed {
                    error: Some("connection lost".into()),
                },
            );
        }
    }

    /// Brings a killed node's address back (a peer that was not up yet, or came back):
    /// connections to it succeed again. Its core keeps its state.
    pub fn revive(&mut self, i: usize) {
        self.nodes[i].alive = true;
    }

    /// Node `i` opens a link to node `j` (as a completed Attach would), expecting `j`'s
    /// Node-ID.
    pub fn connect(&mut self, i: usize, j: usize) {
        let addr = self.nodes[j].addr;
        let protocol = self.nodes[j].node.settings().listen.first().map_or(
            reload_wire::link::OverlayLinkType::TLS_TCP_FH_NO_ICE,
            |(p, _)| *p,
        );
        let expected = self.nodes[j].node.node_id();
        let now = self.now;
        self.nodes[i]
            .node
            .open_link(now, addr, protocol, Some(expected));
        self.after_input(i);
    }

    /// Delivers one raw RELOAD message to node `to` as if it arrived on its plain link from
    /// `from` (for hostile-input tests). Returns whether such a stream exists.
    pub fn inject(&mut self, from: usize, to: usize, message: Bytes) -> bool {
        let Some(&(_, stream)) = self
            .wires
            .iter()
            .find(|((n, _), (m, _))| *n == from && *m == to)
            .map(|(_, b)| b)
        else {
            return false;
        };
        self.schedule_stream(to, stream, StreamEvent::Data(plain::frame(&message)));
        true
    }

    /// Counts, from now on, every delivery over a plain link of a message with
    /// transaction ID `tx`: the hops its request and its answers take (overlay links
    /// crossed; a retransmission counts again).
    pub fn watch(&mut self, tx: u64) {
        self.watched.entry(tx).or_insert((0, 0));
    }

    /// Stops counting `tx`: (request deliveries, answer deliveries) since [`Sim::watch`].
    pub fn unwatch(&mut self, tx: u64) -> Option<(u32, u32)> {
        self.watched.remove(&tx)
    }

    fn count_watched(&mut self, to: usize, chunk: &Bytes) {
        // A plain link's chunk: a 4-byte length, then one message.
        let Some(data) = chunk.get(4..).map(|d| chunk.slice_ref(d)) else {
            return;
        };
        let decode = self.nodes[to].node.overlay().decode().clone();
        let Ok((h, len)) = reload_wire::ForwardingHeader::peek(&data, &decode) else {
            return;
        };
        if let Some(c) = self.captured.get_mut(&h.transaction_id) {
            c.push(data.clone());
        }
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

    /// Keeps, from now on, every message with transaction ID `tx` delivered over a plain
    /// link (requests and answers, each time it crosses a link).
    pub fn capture(&mut self, tx: u64) {
        self.captured.entry(tx).or_default();
    }

    /// The messages captured for `tx` (see [`Sim::capture`]).
    pub fn captured(&self, tx: u64) -> &[Bytes] {
        self.captured.get(&tx).map_or(&[], Vec::as_slice)
    }

    /// Index of the node with this Node-ID.
    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.node.node_id() == *id)
    }
}
