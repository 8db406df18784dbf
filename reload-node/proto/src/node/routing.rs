//! Message receipt and forwarding (RFC 6940 §6.1): every message that arrives on a link is
//! delivered here, forwarded towards its next destination, or dropped; our own messages go
//! out over the link the topology plug-in names (§6.2).

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use reload_wire::header::{VERSION, option_flags};
use reload_wire::message::{ErrorCode, MessageCode};
use reload_wire::{Destination, ForwardingHeader, NodeId, ResourceId, Wire};

use super::{LOOPBACK, LinkId, Node};
use crate::topology::NextHop;

/// A message that arrived on a link, its forwarding header parsed.
pub(super) struct Received {
    pub(super) link: LinkId,
    /// The peer on that link (the previous hop).
    pub(super) from: NodeId,
    pub(super) header: ForwardingHeader,
    pub(super) header_len: usize,
    pub(super) data: Bytes,
    /// Known only for a whole message or a first fragment (later fragments: false).
    pub(super) is_response: bool,
}

/// The message code, read without decoding the rest (it follows the header).
pub(super) fn header_code(data: &Bytes, header_len: usize) -> Option<MessageCode> {
    let b = data.get(header_len..header_len + 2)?;
    Some(MessageCode(u16::from_be_bytes([b[0], b[1]])))
}

/// Whether a destination list names an entry twice.
fn has_duplicates(list: &[Destination]) -> bool {
    list.iter()
        .enumerate()
        .any(|(i, d)| list[i + 1..].contains(d))
}

/// The destination list of an answer (§6.2.2, §6.1.2): the node we got the request from,
/// then the request's via list reversed.
pub(super) fn reply_destination(h: &ForwardingHeader, from: NodeId) -> Vec<Destination> {
    let mut d = vec![Destination::Node(from)];
    d.extend(h.via_list.iter().rev().cloned());
    d
}

impl Node {
    /// One whole RELOAD message from `link`.
    pub(super) fn on_message(&mut self, now: Instant, link: LinkId, data: Bytes) {
        self.stats.received += 1;
        let Some(from) = self.links.get(&link).and_then(|l| l.peer) else {
            self.stats.dropped_other += 1;
            return;
        };
        let overlay = self.overlay.clone();
        let (header, header_len) = match ForwardingHeader::peek(&data, overlay.decode()) {
            Ok(h) => h,
            Err(_) => {
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        if header.overlay != overlay.hash() {
            self.stats.dropped_wrong_overlay += 1;
            return;
        }
        if header.version != VERSION || !header.fragment.is_valid() {
            // §6.7: a message with the high fragment bit clear is discarded.
            self.stats.dropped_malformed += 1;
            return;
        }
        // Only a whole message or a first fragment shows its message code; later fragments
        // are routed like requests but never answered with an error (§6.7).
        let tail = header.fragment.offset() != 0;
        let is_response = !tail && header_code(&data, header_len).is_some_and(|c| c.is_response());
        if header.ttl > overlay.initial_ttl() {
            // §6.3.2: discard, and answer requests with Error_TTL_Exceeded.
            if !is_response && !tail {
                self.error_reply(
                    now,
                    link,
                    from,
                    &header,
                    ErrorCode::TTL_EXCEEDED,
                    "ttl above initial-ttl",
                );
            }
            self.stats.dropped_other += 1;
            return;
        }
        // §13.6.5: a request whose destination list (its originator's source route) names
        // a node twice is a loop in the making. An answer's list is the reversed path of its
        // request, which may have crossed a node twice while routes changed: not checked.
        if !is_response && !tail && has_duplicates(&header.destination_list) {
            self.error_reply(
                now,
                link,
                from,
                &header,
                ErrorCode::INVALID_MESSAGE,
                "duplicate entries in the destination list",
            );
            self.stats.dropped_malformed += 1;
            return;
        }
        // §6.1.2: a peer whose certificate holds several Node-IDs routes nothing but Ping
        // and Attach through us before it Attached.
        if !is_response && !tail && !self.may_route_through(link) {
            let code = header_code(&data, header_len);
            if !matches!(code, Some(MessageCode::PING_REQ | MessageCode::ATTACH_REQ)) {
                self.error_reply(
                    now,
                    link,
                    from,
                    &header,
                    ErrorCode::FORBIDDEN,
                    "Attach first: your certificate holds several Node-IDs (RFC 6940 §6.1.2)",
                );
                self.stats.dropped_other += 1;
                return;
            }
        }
        let m = Received {
            link,
            from,
            header,
            header_len,
            data,
            is_response,
        };
        self.process(now, m);
    }

    /// Destination-list processing (§6.1.1–§6.1.3): deliver, forward or drop.
    fn process(&mut self, now: Instant, m: Received) {
        enum Next {
            Deliver,
            Forward(Vec<Destination>),
            DropNoRoute,
            DropOther,
        }
        let me = self.creds.node_id;
        let mut dest = m.header.destination_list.clone();
        let next = loop {
            match dest.first() {
                None => break Next::DropOther,
                Some(Destination::Node(n)) if *n == me => {
                    dest.remove(0);
                    if dest.is_empty() {
                        break Next::Deliver;
                    }
                }
                Some(Destination::Node(n)) if n.is_wildcard() => break Next::Deliver,
                Some(Destination::Resource(r))
                    if self.topo.is_joined() && self.topo.is_responsible(r) =>
                {
                    // §6.1.1: a Resource-ID must be the only entry; else drop silently.
                    break if dest.len() == 1 {
                        Next::Deliver
                    } else {
                        Next::DropOther
                    };
                }
                Some(Destination::Node(n)) => {
                    let responsible =
                        self.topo.is_joined() && self.topo.is_responsible(&ResourceId::from(*n));
                    // §6.1.1: a Node-ID in our range that is not ours nor a connected
                    // client: drop silently.
                    break if responsible && !self.by_peer.contains_key(n) {
                        Next::DropNoRoute
                    } else {
                        Next::Forward(dest)
                    };
                }
                Some(Destination::Resource(_)) => break Next::Forward(dest),
                // Opaque IDs: we never compress, so none is ours (§6.1.3).
                Some(_) => break Next::DropOther,
            }
        };
        match next {
            Next::Deliver => self.deliver_or_reassemble(now, m),
            Next::Forward(dest) => self.forward(now, m, dest),
            Next::DropNoRoute => self.stats.dropped_no_route += 1,
            Next::DropOther => self.stats.dropped_other += 1,
        }
    }

    /// Answers a request that came from the peer `from` with an error, over its link.
    fn error_reply_to(
        &mut self,
        now: Instant,
        from: NodeId,
        header: &ForwardingHeader,
        code: ErrorCode,
        why: &str,
    ) {
        if let Some(link) = self.by_peer.get(&from).copied() {
            self.error_reply(now, link, from, header, code, why);
        }
    }

    /// Forwards towards `dest[0]` (§6.1.2): TTL decremented, the previous hop appended to
    /// the via list of requests, the contents untouched.
    fn forward(&mut self, now: Instant, m: Received, dest: Vec<Destination>) {
        let Received {
            from,
            header,
            header_len,
            data,
            is_response,
            ..
        } = m;
        let tail = header.fragment.offset() != 0;
        if header.ttl == 0 {
            if !is_response && !tail {
                self.error_reply_to(now, from, &header, ErrorCode::TTL_EXCEEDED, "ttl exhausted");
            }
            self.stats.dropped_other += 1;
            return;
        }
        // Unknown options marked forward-critical cannot be forwarded (§6.3.2.3).
        if header
            .options
            .iter()
            .any(|o| o.flags & option_flags::FORWARD_CRITICAL != 0)
            && !is_response
        {
            if tail {
                return;
            }
            self.error_reply_to(
                now,
                from,
                &header,
                ErrorCode::UNSUPPORTED_FORWARDING_OPTION,
                "forward-critical option",
            );
            return;
        }
        // A request that comes back to us with the same destination list — it passed
        // through us (our Node-ID is in its via list) and no hop since consumed an entry —
        // is in a loop (tables that disagree while peers join or fail): answer
        // Error_Loop_Detected (§6.3.3.1) instead of letting it bounce until its TTL runs
        // out (§13.6.5). A source route may legitimately bring a message back to us with
        // a shorter list.
        let key = (header.transaction_id, dest.len());
        let back = !is_response
            && !tail
            && header
                .via_list
                .iter()
                .any(|d| matches!(d, Destination::Node(n) if *n == self.creds.node_id))
            && self.forwarded.contains(&key);
        if back {
            self.error_reply_to(
                now,
                from,
                &header,
                ErrorCode::LOOP_DETECTED,
                "the request came back to a node it passed through",
            );
            self.stats.dropped_other += 1;
            return;
        }
        let Some(link) = self.next_link(&dest) else {
            self.stats.dropped_no_route += 1;
            return;
        };
        if !is_response && !tail {
            self.forwarded.insert(key);
        }
        let mut h = header;
        h.ttl -= 1;
        if !is_response {
            h.via_list.push(Destination::Node(from));
        }
        h.destination_list = dest;
        let payload = data.slice(header_len..);
        let total = h.encoded_len() + payload.len();
        if total > self.overlay.max_message_size() {
            self.stats.dropped_other += 1;
            return;
        }
        let mut b = BytesMut::with_capacity(total);
        if h.encode_with_length(&mut b, total as u32).is_err() {
            self.stats.dropped_other += 1;
            return;
        }
        b.extend_from_slice(&payload);
        self.stats.forwarded += 1;
        self.send_on(now, link, b.freeze());
    }

    /// A message for us: delivered whole, or first reassembled from its fragments (§6.7).
    fn deliver_or_reassemble(&mut self, now: Instant, m: Received) {
        if m.header.fragment.is_whole() {
            return self.deliver(now, m);
        }
        let overlay = self.overlay.clone();
        let Received {
            link,
            from,
            header,
            header_len,
            data,
            ..
        } = m;
        let max = overlay.max_message_size();
        match self
            .reassembly
            .insert(now, link.0, header, header_len, data, max)
        {
            Ok(None) => {}
            Ok(Some(whole)) => {
                self.stats.reassembled += 1;
                let Ok((header, header_len)) = ForwardingHeader::peek(&whole, overlay.decode())
                else {
                    self.stats.dropped_malformed += 1;
                    return;
                };
                let is_response = header_code(&whole, header_len).is_some_and(|c| c.is_response());
                self.deliver(
                    now,
                    Received {
                        link,
                        from,
                        header,
                        header_len,
                        data: whole,
                        is_response,
                    },
                );
            }
            Err(why) => tracing::debug!(?why, "fragmented message dropped (RFC 6940 §6.7)"),
        }
        self.stats.reassembly_dropped = self.reassembly.dropped;
    }

    /// Sends a message we originated (or an answer) towards its first destination: over
    /// the link when directly connected, else as the topology routes it (§6.2.1). Returns
    /// the link it left on ([`LOOPBACK`] for ourselves), if any.
    pub(super) fn route_out(&mut self, now: Instant, message: Bytes) -> Option<LinkId> {
        let Ok((h, _)) = ForwardingHeader::peek(&message, self.overlay.decode()) else {
            return None;
        };
        let mut dest = h.destination_list;
        // Our own Node-ID first (a source route through us): skip it.
        while matches!(dest.first(), Some(Destination::Node(n)) if *n == self.creds.node_id)
            && dest.len() > 1
        {
            dest.remove(0);
        }
        match self.next_link(&dest) {
            Some(link) => {
                self.send_on(now, link, message);
                Some(link)
            }
            None if self.is_local(&dest) => {
                self.loopback(now, message);
                Some(LOOPBACK)
            }
            None => {
                self.stats.dropped_no_route += 1;
                None
            }
        }
    }

    /// Whether the first destination is this node: our own Node-ID (alone), or a
    /// Resource-ID we are responsible for.
    fn is_local(&self, dest: &[Destination]) -> bool {
        match dest.first() {
            Some(Destination::Node(n)) => *n == self.creds.node_id && dest.len() == 1,
            Some(Destination::Resource(r)) => self.topo.is_joined() && self.topo.is_responsible(r),
            _ => false,
        }
    }

    /// A message we sent to ourselves (a request for a Resource-ID in our own range, and
    /// our answer to it): processed as received from ourselves, bounded in depth.
    pub(super) fn loopback(&mut self, now: Instant, message: Bytes) {
        if self.loopback_depth >= 4 {
            self.stats.dropped_other += 1;
            return;
        }
        self.loopback_depth += 1;
        let me = self.creds.node_id;
        if let Ok((header, header_len)) = ForwardingHeader::peek(&message, self.overlay.decode()) {
            let is_response = header_code(&message, header_len).is_some_and(|c| c.is_response());
            self.stats.received += 1;
            self.deliver(
                now,
                Received {
                    link: LOOPBACK,
                    from: me,
                    header,
                    header_len,
                    data: message,
                    is_response,
                },
            );
        }
        self.loopback_depth -= 1;
    }

    /// The link towards the first destination entry, if any.
    pub(super) fn next_link(&self, dest: &[Destination]) -> Option<LinkId> {
        let id: Vec<u8> = match dest.first()? {
            Destination::Node(n) => {
                if let Some(l) = self.by_peer.get(n) {
                    return Some(*l);
                }
                n.as_bytes().to_vec()
            }
            Destination::Resource(r) => r.as_bytes().to_vec(),
            _ => return None,
        };
        let connected = |n: &NodeId| self.by_peer.contains_key(n);
        match self.topo.next_hop(&id, &connected) {
            NextHop::Peer(p) => self.by_peer.get(&p).copied(),
            NextHop::Local | NextHop::None => None,
        }
    }
}

/// Requests this node forwarded lately, by transaction ID and the length of the
/// destination list they left with: the last [`RecentForwards::CAPACITY`] (a loop comes
/// back within a few hops; older entries are forgotten first).
#[derive(Debug, Default)]
pub(super) struct RecentForwards {
    set: std::collections::HashSet<(u64, usize)>,
    order: std::collections::VecDeque<(u64, usize)>,
}

impl RecentForwards {
    const CAPACITY: usize = 4096;

    fn contains(&self, key: &(u64, usize)) -> bool {
        self.set.contains(key)
    }

    fn insert(&mut self, key: (u64, usize)) {
        if !self.set.insert(key) {
            return;
        }
        self.order.push_back(key);
        if self.order.len() > Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
    }
}
