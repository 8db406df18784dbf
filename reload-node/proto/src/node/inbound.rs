//! Requests addressed to us (RFC 6940 §6.3): the checks at the destination (signature,
//! retransmission, configuration sequence, critical options and extensions), the methods
//! the core answers itself (Ping, Attach, Join, Leave, Update, RouteQuery, Probe,
//! ConfigUpdate), and the **usage seam**: every other request reaches the application as
//! one [`InboundRequest`] — the decoded body, the signer's verified certificate, the link
//! and the destination — and is answered through [`Node::respond`].
//!
//! The seam's guarantees: a method nobody serves ([`Node::serve`]) is answered with
//! Error_Forbidden at once; a request the application has not answered by its deadline is
//! answered Error_Request_Timeout by the core, in time for the requester to get it (the
//! deadline is one reliability timer before the end of the request lifetime); a
//! retransmission of a request still with the application is dropped (it is never
//! delivered twice), and one already answered gets the cached answer (§6.2.1).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use reload_wire::body::MessageBody;
use reload_wire::header::option_flags;
use reload_wire::link::{AttachReqAns, CandType, IceCandidate, PingAns, ROLE_ACTIVE};
use reload_wire::message::{ErrorCode, ErrorResponse, Message, MessageCode, MessageExtensionType};
use reload_wire::topology::{
    JoinAns, JoinReq, LeaveAns, LeaveReq, ProbeAns, ProbeInformation, ProbeInformationType,
    RouteQueryAns, RouteQueryReq, UpdateAns, UpdateReq,
};
use reload_wire::{
    Destination, ForwardingHeader, ForwardingOption, GenericCertificate, NodeId, Wire,
};

use super::routing::{Received, reply_destination};
use super::tx::Outstanding;
use super::{Event, LinkId, Node, Purpose, unix_ms};
use crate::config::{SequenceCheck, check_sequence};
use crate::sign::VerifiedSigner;
use crate::topology::TopologyInput;

/// A request handed to the application, to be answered with [`Node::respond`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboundId(pub u64);

/// A request for the application (see the module documentation).
#[derive(Clone, Debug)]
pub struct InboundRequest {
    pub id: InboundId,
    /// The decoded request body.
    pub body: MessageBody,
    /// Who signed it, with the certificate that proved it (user name, Node-IDs): what
    /// access control needs (§7.3).
    pub signer: VerifiedSigner,
    /// The previous hop, and the link it came on.
    pub from: NodeId,
    pub link: LinkId,
    /// What the request was addressed to: our Node-ID, or a Resource-ID we are
    /// responsible for (§6.1.1).
    pub destination: Destination,
    /// The path it took, its originator first (§6.3.2).
    pub via: Vec<Destination>,
    pub transaction_id: u64,
    /// Answer before this instant; afterwards the core answers Error_Request_Timeout.
    pub deadline: Instant,
}

/// Where the answer to a request goes.
#[derive(Debug, Clone)]
pub(super) struct ReplyRoute {
    link: LinkId,
    /// Who asked (the signer, or the claimed originator for errors sent before the
    /// signature was checked): half of the answer-cache key.
    requester: NodeId,
    destination: Vec<Destination>,
    transaction_id: u64,
    max_response_length: u32,
    /// The request's options flagged RESPONSE_COPY, flags cleared (§6.3.2.3).
    copied_options: Vec<ForwardingOption>,
}

/// The options an answer carries: the request's RESPONSE_COPY options, with the
/// RESPONSE_COPY, FORWARD_CRITICAL and DESTINATION_CRITICAL flags cleared (§6.3.2.3 MUST).
fn copied_options(h: &ForwardingHeader) -> Vec<ForwardingOption> {
    let clear = option_flags::RESPONSE_COPY
        | option_flags::FORWARD_CRITICAL
        | option_flags::DESTINATION_CRITICAL;
    h.options
        .iter()
        .filter(|o| o.flags & option_flags::RESPONSE_COPY != 0)
        .map(|o| ForwardingOption {
            flags: o.flags & !clear,
            ..o.clone()
        })
        .collect()
}

#[derive(Debug)]
struct Pending {
    route: ReplyRoute,
    deadline: Instant,
}

/// Requests with the application.
#[derive(Debug, Default)]
pub(super) struct Inbound {
    /// Request codes the application serves.
    pub(super) served: HashSet<MessageCode>,
    pending: HashMap<InboundId, Pending>,
    /// (transaction ID, signer) of every pending request: its retransmissions.
    by_key: HashMap<(u64, NodeId), InboundId>,
    deadlines: BTreeSet<(Instant, InboundId)>,
    next: u64,
}

impl Inbound {
    pub(super) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.iter().next().map(|(t, _)| *t)
    }

    fn take(&mut self, id: InboundId) -> Option<ReplyRoute> {
        let p = self.pending.remove(&id)?;
        self.deadlines.remove(&(p.deadline, id));
        self.by_key
            .remove(&(p.route.transaction_id, p.route.requester));
        Some(p.route)
    }
}

/// Whether an Attach candidate is an address we may connect to: a port, a unicast host
/// address; loopback only when we ourselves are on loopback (a test overlay). Anything
/// else would make us connect wherever a requester likes.
fn usable_candidate(addr: std::net::SocketAddr, on_loopback: bool) -> bool {
    use std::net::IpAddr;
    let ip = addr.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && !broadcast
        && (on_loopback || !ip.is_loopback())
}

/// Extensions this node understands.
fn known_extension(_t: MessageExtensionType) -> bool {
    false
}

impl Node {
    /// A message for us, whole: answers go to our transactions, requests are checked and
    /// answered.
    pub(super) fn deliver(&mut self, now: Instant, m: Received) {
        let overlay = self.overlay.clone();
        let msg = match Message::decode(&m.data, overlay.decode()) {
            Ok(msg) => msg,
            Err(_) => {
                self.stats.dropped_malformed += 1;
                if !m.is_response {
                    let why = "malformed message";
                    self.error_reply(
                        now,
                        m.link,
                        m.from,
                        &m.header,
                        ErrorCode::INVALID_MESSAGE,
                        why,
                    );
                }
                return;
            }
        };
        self.stats.delivered += 1;
        if m.is_response {
            return self.on_response(now, m.link, msg);
        }
        if let Some((signer, body)) = self.check_request(now, &m, &msg) {
            self.dispatch(now, m, signer, body, &msg.security.certificates);
        }
    }

    /// The checks at the destination, in the RFC's order: the signature (§6.3.4), a
    /// retransmission (§6.2.1), the configuration sequence (§6.3.2.1), critical options
    /// and extensions (§6.3.2.3, §6.3.3), the body. `None` when the request was dropped or
    /// already answered.
    fn check_request(
        &mut self,
        now: Instant,
        m: &Received,
        msg: &Message,
    ) -> Option<(VerifiedSigner, MessageBody)> {
        let (link, from, header) = (m.link, m.from, &m.header);
        // A bad signature is dropped, never processed.
        let Ok(signer) = self.verifier.verify_message(msg, self.wall(now)) else {
            self.stats.dropped_bad_signature += 1;
            return None;
        };
        let key = (header.transaction_id, signer.node_id);
        // A retransmitted request: the same answer again — or, while the application
        // still has it, nothing (it is never delivered twice).
        if let Some(answer) = self.answers.get(key, now).cloned() {
            self.stats.duplicate_requests += 1;
            self.send_on(now, link, answer);
            return None;
        }
        if self.inbound.by_key.contains_key(&key) {
            self.stats.duplicate_requests += 1;
            return None;
        }
        let is_config_update = msg.contents.message_code == MessageCode::CONFIG_UPDATE_REQ;
        let ours = self.overlay.sequence();
        let refusal = match check_sequence(header.configuration_sequence, ours, is_config_update) {
            SequenceCheck::Accept => None,
            SequenceCheck::TooOld => {
                Some((ErrorCode::CONFIG_TOO_OLD, "configuration sequence too old"))
            }
            SequenceCheck::TooNew => {
                Some((ErrorCode::CONFIG_TOO_NEW, "configuration sequence too new"))
            }
        };
        let refusal = refusal.or_else(|| {
            let critical_option = header
                .options
                .iter()
                .any(|o| o.flags & option_flags::DESTINATION_CRITICAL != 0);
            let critical_extension = msg
                .contents
                .extensions
                .iter()
                .any(|e| e.critical && !known_extension(e.extension_type));
            if critical_option {
                Some((
                    ErrorCode::UNSUPPORTED_FORWARDING_OPTION,
                    "destination-critical option",
                ))
            } else if critical_extension {
                Some((ErrorCode::UNKNOWN_EXTENSION, "critical extension"))
            } else {
                None
            }
        });
        let body = match refusal {
            Some(r) => Err(r),
            None => msg
                .contents
                .body(self.overlay.decode())
                .map_err(|_| (ErrorCode::INVALID_MESSAGE, "malformed body")),
        };
        match body {
            Ok(body) => Some((signer, body)),
            Err((code, why)) => {
                self.error_reply(now, link, from, header, code, why);
                if code == ErrorCode::CONFIG_TOO_OLD {
                    // The sender is behind: it gets our configuration too (§6.3.2.1).
                    // To the verified signer, never to an unverified via entry (a
                    // forged via list would make us reflect the document elsewhere).
                    self.send_configuration(now, signer.node_id);
                }
                None
            }
        }
    }

    /// A checked request: answered by the core, or handed to the usage that serves it.
    fn dispatch(
        &mut self,
        now: Instant,
        m: Received,
        signer: VerifiedSigner,
        body: MessageBody,
        certificates: &[GenericCertificate],
    ) {
        let Received {
            link, from, header, ..
        } = m;
        let route = ReplyRoute {
            link,
            requester: signer.node_id,
            destination: reply_destination(&header, from),
            transaction_id: header.transaction_id,
            max_response_length: header.max_response_length,
            copied_options: copied_options(&header),
        };
        // Join and Leave: the ID must be the signer's, on a link bound to it (§6.4.2.1-2).
        let direct = header.via_list.is_empty() && from == signer.node_id;
        // Addressed to our Node-ID rather than routed to a Resource-ID we hold.
        let to_us = matches!(
            header.destination_list.last(),
            Some(Destination::Node(n)) if *n == self.creds.node_id
        );
        let answer = match body {
            MessageBody::PingReq(_) => Ok(MessageBody::PingAns(PingAns {
                response_id: self.rng.next_u64(),
                time: unix_ms(self.wall(now)),
            })),
            MessageBody::AttachReq(req) => {
                if header.via_list.is_empty() {
                    // The previous hop Attached itself: its Node-ID on this link is settled.
                    self.attached_over(now, link, signer.node_id);
                }
                self.on_attach(now, signer.node_id, req)
            }
            MessageBody::JoinReq(req) => self.on_join(now, signer.node_id, direct, req),
            MessageBody::LeaveReq(req) => self.on_leave(now, signer.node_id, direct, req),
            MessageBody::UpdateReq(UpdateReq(body)) => {
                self.on_update(now, signer.node_id, direct, body)
            }
            MessageBody::RouteQueryReq(req) => self.on_route_query(now, signer.node_id, req),
            MessageBody::ProbeReq(req) => Ok(self.on_probe(now, &req.requested_info)),
            MessageBody::ConfigUpdateReq(body) => self
                .on_config_update(now, body)
                .map(|()| MessageBody::ConfigUpdateAns(reload_wire::link::ConfigUpdateAns)),
            MessageBody::StoreReq(req) => self.on_store(now, &signer, certificates, req),
            MessageBody::FetchReq(req) => match self.on_fetch(now, to_us, req) {
                Ok((body, certs)) => return self.reply_carrying(now, route, Ok(body), certs),
                Err(e) => Err(e),
            },
            MessageBody::StatReq(req) => self.on_stat(now, to_us, req),
            MessageBody::FindReq(req) => self.on_find(now, req),
            other => {
                return self.hand_to_application(now, route, other, signer, from, &header);
            }
        };
        self.reply(now, route, answer);
    }

    /// A request for a usage: handed up, or answered at once when nobody serves it.
    fn hand_to_application(
        &mut self,
        now: Instant,
        route: ReplyRoute,
        body: MessageBody,
        signer: VerifiedSigner,
        from: NodeId,
        header: &ForwardingHeader,
    ) {
        let code = body.code();
        if !self.inbound.served.contains(&code) {
            self.stats.unserved_requests += 1;
            // §6.5.2.1: an AppAttach for an application the node does not run is
            // answered Error_Not_Found.
            if let MessageBody::AppAttachReq(a) = &body {
                let why = format!("no application {} runs on this node", a.application);
                return self.reply(
                    now,
                    route,
                    Err(ErrorResponse::new(ErrorCode::NOT_FOUND, why)),
                );
            }
            let name = code.name().unwrap_or("this method");
            let why = format!("this node serves no usage that handles {name}");
            return self.reply(
                now,
                route,
                Err(ErrorResponse::new(ErrorCode::FORBIDDEN, why)),
            );
        }
        if self.inbound.pending.len() >= self.s.max_app_requests {
            let e = ErrorResponse::new(ErrorCode::IN_PROGRESS, "too many requests pending");
            return self.reply(now, route, Err(e));
        }
        let id = InboundId(self.inbound.next);
        self.inbound.next += 1;
        // The requester gives up at the end of the request lifetime (§6.2.1): answer one
        // reliability timer before, so that the error reaches it.
        let deadline = now + self.overlay.request_lifetime() - self.overlay.reliability_timer();
        self.inbound
            .by_key
            .insert((route.transaction_id, route.requester), id);
        self.inbound.deadlines.insert((deadline, id));
        self.inbound.pending.insert(
            id,
            Pending {
                route: route.clone(),
                deadline,
            },
        );
        let destination = header
            .destination_list
            .last()
            .cloned()
            .unwrap_or(Destination::Node(self.creds.node_id));
        self.events.push_back(Event::Request(InboundRequest {
            id,
            body,
            signer,
            from,
            link: route.link,
            destination,
            via: header.via_list.clone(),
            transaction_id: route.transaction_id,
            deadline,
        }));
    }

    /// Answers a request handed up as [`Event::Request`] (once; a late answer, after the
    /// core answered Error_Request_Timeout, is dropped).
    pub fn respond(
        &mut self,
        now: Instant,
        id: InboundId,
        answer: Result<MessageBody, ErrorResponse>,
    ) {
        if let Some(route) = self.inbound.take(id) {
            self.reply(now, route, answer);
            self.drain_topology(now);
        }
    }

    /// Requests the application did not answer in time get Error_Request_Timeout.
    pub(super) fn expire_app_requests(&mut self, now: Instant) {
        while let Some(&(t, id)) = self.inbound.deadlines.iter().next() {
            if t > now {
                break;
            }
            if let Some(route) = self.inbound.take(id) {
                self.stats.expired_requests += 1;
                tracing::debug!(?id, "the application did not answer in time");
                let e = ErrorResponse::new(
                    ErrorCode::REQUEST_TIMEOUT,
                    "the request was not answered in time",
                );
                self.reply(now, route, Err(e));
            } else {
                self.inbound.deadlines.remove(&(t, id));
            }
        }
    }

    /// Signs and sends an answer, and remembers it for retransmissions (§6.2.1).
    fn reply(
        &mut self,
        now: Instant,
        route: ReplyRoute,
        answer: Result<MessageBody, ErrorResponse>,
    ) {
        self.reply_carrying(now, route, answer, Vec::new())
    }

    /// [`Node::reply`] with `certificates` in the security block besides ours (those of
    /// the values a Fetch answer returns, §6.3.4).
    fn reply_carrying(
        &mut self,
        now: Instant,
        route: ReplyRoute,
        answer: Result<MessageBody, ErrorResponse>,
        certificates: Vec<GenericCertificate>,
    ) {
        let mut body = match answer {
            Ok(b) => b,
            Err(e) => MessageBody::Error(e),
        };
        let mut header = self.header(route.destination.clone(), route.transaction_id);
        header.options = route.copied_options;
        let Ok(mut bytes) = self.build_carrying(header.clone(), &body, certificates) else {
            return;
        };
        // §6.3.2 max_response_length: answer Error_Response_Too_Large instead (we emit
        // Response_Too_Large, §6.3.3.1; both codes are accepted on receipt). So too for
        // an answer larger than the overlay's max-message-size, which no node accepts.
        let limit = match route.max_response_length {
            0 => self.overlay.max_message_size(),
            n => (n as usize).min(self.overlay.max_message_size()),
        };
        if bytes.len() > limit {
            body = MessageBody::Error(ErrorResponse::new(
                ErrorCode::RESPONSE_TOO_LARGE,
                "response too large",
            ));
            let Ok(b) = self.build(header, &body) else {
                return;
            };
            bytes = b;
        }
        self.answers
            .insert((route.transaction_id, route.requester), now, bytes.clone());
        self.stats.answered += 1;
        self.send_on(now, route.link, bytes);
    }

    /// Answers a request with an error found before (or instead of) processing it.
    pub(super) fn error_reply(
        &mut self,
        now: Instant,
        link: LinkId,
        from: NodeId,
        header: &ForwardingHeader,
        code: ErrorCode,
        why: &str,
    ) {
        // Unverified traffic costs a signature each: bounded per link.
        if !self.error_budget(now, link) {
            self.stats.errors_suppressed += 1;
            return;
        }
        let requester = match header.via_list.first() {
            Some(Destination::Node(n)) => *n,
            _ => from,
        };
        let route = ReplyRoute {
            link,
            requester,
            destination: reply_destination(header, from),
            transaction_id: header.transaction_id,
            max_response_length: 0,
            copied_options: copied_options(header),
        };
        self.reply(now, route, Err(ErrorResponse::new(code, why.to_string())));
    }

    fn on_join(
        &mut self,
        now: Instant,
        signer: NodeId,
        direct: bool,
        req: JoinReq,
    ) -> Result<MessageBody, ErrorResponse> {
        if req.joining_peer_id != signer || !direct {
            return Err(ErrorResponse::new(
                ErrorCode::FORBIDDEN,
                "Join must come from the joining peer over its own link",
            ));
        }
        self.topo
            .answer_join(now, req.joining_peer_id)
            .map(|d| {
                MessageBody::JoinAns(JoinAns {
                    overlay_specific_data: d,
                })
            })
            .map_err(|c| ErrorResponse::new(c, "join refused"))
    }

    /// Update (§6.4.2.3, §10.7): only from a neighbour over its own link — a routed
    /// Update would make the plug-in take its signer for a linked, live neighbour.
    fn on_update(
        &mut self,
        now: Instant,
        signer: NodeId,
        direct: bool,
        body: bytes::Bytes,
    ) -> Result<MessageBody, ErrorResponse> {
        if !direct {
            return Err(ErrorResponse::new(
                ErrorCode::FORBIDDEN,
                "Update must come from the updating peer over its own link",
            ));
        }
        self.topo
            .handle(now, TopologyInput::Update { from: signer, body })
            .map(|()| MessageBody::UpdateAns(UpdateAns::default()))
            .map_err(|c| ErrorResponse::new(c, "update refused"))
    }

    fn on_leave(
        &mut self,
        now: Instant,
        signer: NodeId,
        direct: bool,
        req: LeaveReq,
    ) -> Result<MessageBody, ErrorResponse> {
        if req.leaving_peer_id != signer || !direct {
            return Err(ErrorResponse::new(
                ErrorCode::FORBIDDEN,
                "Leave must come from the leaving peer over its own link",
            ));
        }
        self.topo
            .handle(
                now,
                TopologyInput::Leave {
                    from: signer,
                    overlay_specific_data: req.overlay_specific_data,
                },
            )
            .map(|()| MessageBody::LeaveAns(LeaveAns))
            .map_err(|c| ErrorResponse::new(c, "leave refused"))
    }

    fn on_route_query(
        &mut self,
        now: Instant,
        signer: NodeId,
        req: RouteQueryReq,
    ) -> Result<MessageBody, ErrorResponse> {
        let by_peer = &self.by_peer;
        let connected = |n: &NodeId| by_peer.contains_key(n);
        let r = self
            .topo
            .route_query_answer(&req.destination, &connected)
            .map(|b| MessageBody::RouteQueryAns(RouteQueryAns(b)))
            .map_err(|c| ErrorResponse::new(c, "route query refused"));
        if req.send_update && r.is_ok() {
            let _ = self
                .topo
                .handle(now, TopologyInput::UpdateRequested { from: signer });
        }
        r
    }

    /// Probe (§6.4.2.5): the requested information, in the requested order.
    fn on_probe(&self, now: Instant, requested: &[ProbeInformationType]) -> MessageBody {
        let uptime = now.saturating_duration_since(self.started_at).as_secs() as u32;
        let probe_info = requested
            .iter()
            .filter_map(|t| match *t {
                ProbeInformationType::RESPONSIBLE_SET => Some(ProbeInformation::ResponsibleSet(
                    self.topo.responsible_ppb(),
                )),
                ProbeInformationType::UPTIME => Some(ProbeInformation::Uptime(uptime)),
                ProbeInformationType::NUM_RESOURCES => Some(ProbeInformation::NumResources(0)),
                _ => None,
            })
            .collect();
        MessageBody::ProbeAns(ProbeAns { probe_info })
    }

    /// Attach (§6.5.1): answer with our host candidates and open the link to the
    /// requester's candidate; the Attach sender is the (D)TLS server (§6.5.1.11).
    fn on_attach(
        &mut self,
        now: Instant,
        requester: NodeId,
        req: AttachReqAns,
    ) -> Result<MessageBody, ErrorResponse> {
        let ice = self.ice_mode();
        if requester == self.creds.node_id {
            // Our own Attach, routed back to us (we are responsible for its target): no
            // link to ourselves.
            return Err(ErrorResponse::new(
                ErrorCode::FORBIDDEN,
                "an Attach from this node to itself",
            ));
        }
        if !ice && req.candidates.iter().any(|c| c.cand_type != CandType::HOST) {
            // A No-ICE overlay uses host candidates only (§6.5.1.5).
            return Err(ErrorResponse::new(
                ErrorCode::INCOMPATIBLE_WITH_OVERLAY,
                "ICE candidates in a No-ICE overlay",
            ));
        }
        // Attach collisions (§6.5.1.2): one link per pair of nodes.
        let lifetime = self.overlay.request_lifetime();
        if self
            .awaiting_connect
            .get(&requester)
            .is_some_and(|t| now.saturating_duration_since(*t) < lifetime)
        {
            // Our Attach to it was answered: it is connecting to us.
            return Err(ErrorResponse::new(
                ErrorCode::IN_PROGRESS,
                "an Attach to you is already answered",
            ));
        }
        if let Some(tx) = self.tx.attach_to(&requester) {
            if self.creds.node_id < requester {
                // The smaller Node-ID cancels its own Attach and answers the other.
                if let Some(Outstanding {
                    purpose: Purpose::TopologyAttach { target, ice, .. },
                    ..
                }) = self.tx.remove(tx)
                {
                    if let Some(id) = ice {
                        self.ice_drop(id);
                    }
                    let _ = self.topo.handle(
                        now,
                        TopologyInput::AttachAnswered {
                            target,
                            peer: requester,
                        },
                    );
                }
            } else {
                return Err(ErrorResponse::new(
                    ErrorCode::IN_PROGRESS,
                    "my Attach to you is outstanding",
                ));
            }
        }
        let connecting = self
            .links
            .values()
            .any(|s| s.peer.is_none() && s.expected_peer == Some(requester));
        if ice {
            // §6.5.1.3: full ICE; the link follows the selected pair (`ice`).
            if !self.by_peer.contains_key(&requester) && connecting {
                // A link between us is being set up (an earlier Attach's DTLS): a
                // second session would only fail beside it. (Refusing while an earlier
                // session's checks run is worse: when the requester drops that session
                // because it got linked another way, ours waits out its 30 s.)
                return Err(ErrorResponse::new(
                    ErrorCode::IN_PROGRESS,
                    "a link to you is being set up",
                ));
            }
            if self.by_peer.contains_key(&requester) {
                if req.send_update {
                    let _ = self
                        .topo
                        .handle(now, TopologyInput::UpdateRequested { from: requester });
                }
                // Already linked: our credentials and candidates, but no session (the
                // requester, linked too, starts none either).
                return Ok(MessageBody::AttachAns(self.ice_linked_answer()));
            }
            let body = self
                .ice_answer(now, requester, &req)
                .map_err(|(code, why)| ErrorResponse::new(code, why))?;
            return Ok(MessageBody::AttachAns(body));
        }
        if !self.by_peer.contains_key(&requester) && !connecting {
            let on_loopback = self.s.listen.iter().any(|(_, a)| a.ip().is_loopback());
            let target = req.candidates.iter().find_map(|c| {
                let addr = c.addr_port.socket_addr()?;
                usable_candidate(addr, on_loopback).then_some((c.overlay_link, addr))
            });
            let Some((protocol, addr)) = target else {
                return Err(ErrorResponse::new(
                    ErrorCode::INVALID_MESSAGE,
                    "Attach without a usable candidate",
                ));
            };
            // Links we are setting up on others' behalf are bounded like incoming ones.
            let opening = self
                .links
                .values()
                .filter(|s| !s.inbound && !s.session.is_established())
                .count();
            if opening >= self.s.admission.max_handshakes {
                return Err(ErrorResponse::new(
                    ErrorCode::FORBIDDEN,
                    "too many links being set up: try again later",
                ));
            }
            if let Some(link) = self.open_link(now, addr, protocol, Some(requester))
                && let Some(slot) = self.links.get_mut(&link)
            {
                slot.send_update = req.send_update;
            }
        } else if req.send_update {
            // Already linked: the Update goes out now (§6.4.2.3).
            let _ = self
                .topo
                .handle(now, TopologyInput::UpdateRequested { from: requester });
        }
        Ok(MessageBody::AttachAns(AttachReqAns {
            ufrag: Bytes::new(),
            password: Bytes::new(),
            role: Bytes::from_static(ROLE_ACTIVE),
            candidates: self.candidates(),
            send_update: false,
        }))
    }

    /// Our host candidates (§6.5.1.5: a No-ICE overlay sends host candidates).
    pub(super) fn candidates(&self) -> Vec<IceCandidate> {
        self.s
            .listen
            .iter()
            .map(|(t, a)| IceCandidate::host((*a).into(), *t))
            .collect()
    }
}
