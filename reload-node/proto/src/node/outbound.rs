//! Our requests (RFC 6940 §6.2.1): built, signed, sent over the link the topology names,
//! retransmitted until answered (at most [`MAX_TRANSMISSIONS`] times), their answers
//! checked against who may give them (§6.3.4) and handed to whoever asked — the
//! application, or the topology plug-in whose actions are executed here.

use std::time::Instant;

use bytes::Bytes;
use reload_wire::body::MessageBody;
use reload_wire::link::{AttachReqAns, ConfigUpdateReq, PingReq, ROLE_PASSIVE};
use reload_wire::message::{ErrorCode, ErrorResponse, Message, MessageContents};
use reload_wire::topology::{JoinReq, LeaveReq, RouteQueryReq, UpdateReq};
use reload_wire::{
    Destination, ForwardingHeader, GenericCertificate, NodeId, SecurityBlock, Signature, Wire,
};

use super::tx::Outstanding;
use super::{BOOTSTRAP_RETRY_MIN, Event, MAX_TRANSMISSIONS, Node, Purpose, RequestError};
use crate::sign::SignError;
use crate::topology::{TopologyAction, TopologyInput};

/// Error codes a node on the path (not the destination) produces (RFC 6940 §6.3.3.1;
/// RFC 7851 §9.4).
fn is_transit_error(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::TTL_EXCEEDED
            | ErrorCode::UNSUPPORTED_FORWARDING_OPTION
            | ErrorCode::MESSAGE_TOO_LARGE
            | ErrorCode::UNDERLAY_DESTINATION_UNREACHABLE
            | ErrorCode::UNDERLAY_TIME_EXCEEDED
            | ErrorCode::MESSAGE_EXPIRED
            | ErrorCode::UPSTREAM_MISROUTING
            | ErrorCode::LOOP_DETECTED
            | ErrorCode::TTL_HOPS_EXCEEDED
    )
}

impl Node {
    pub(super) fn header(
        &self,
        destination_list: Vec<Destination>,
        transaction_id: u64,
    ) -> ForwardingHeader {
        let mut h = ForwardingHeader::new(
            self.overlay.hash(),
            self.overlay.sequence(),
            self.overlay.initial_ttl(),
            transaction_id,
        );
        h.destination_list = destination_list;
        h
    }

    /// Builds, signs and encodes a message.
    pub(super) fn build(
        &mut self,
        header: ForwardingHeader,
        body: &MessageBody,
    ) -> Result<Bytes, SignError> {
        self.build_carrying(header, body, vec![])
    }

    /// [`Node::build`], the security block carrying `certificates` besides ours (those
    /// that verify stored values inside, §6.3.4).
    pub(super) fn build_carrying(
        &mut self,
        header: ForwardingHeader,
        body: &MessageBody,
        certificates: Vec<GenericCertificate>,
    ) -> Result<Bytes, SignError> {
        let contents =
            MessageContents::from_body(body).map_err(|e| SignError::Encode(e.to_string()))?;
        let mut m = Message {
            header,
            contents,
            security: SecurityBlock {
                certificates: vec![],
                signature: Signature::none(),
            },
        };
        self.creds.sign_message(&mut m, certificates)?;
        m.to_bytes().map_err(|e| SignError::Encode(e.to_string()))
    }

    /// Sends a request to `destination` (a destination list, §6.2.1) and returns its
    /// transaction ID; the answer arrives as [`Event::Response`].
    pub fn send_request(
        &mut self,
        now: Instant,
        destination: Vec<Destination>,
        body: MessageBody,
    ) -> Result<u64, RequestError> {
        let tx = self.request(now, destination, body, Purpose::Application);
        self.drain_topology(now);
        tx
    }

    /// [`Node::send_request`] with a TTL of our choosing instead of `initial-ttl` (capped
    /// by it): with TTL k the request is answered by the target or, when more than k + 1
    /// hops away, with Error_TTL_Exceeded by the hop where it expired — a traceroute
    /// (§6.3.2).
    pub fn send_request_with_ttl(
        &mut self,
        now: Instant,
        destination: Vec<Destination>,
        body: MessageBody,
        ttl: u8,
    ) -> Result<u64, RequestError> {
        let sequence = self.overlay.sequence();
        let ttl = ttl.min(self.overlay.initial_ttl());
        let tx = self.request_with(now, destination, body, Purpose::Application, sequence, ttl);
        self.drain_topology(now);
        tx
    }

    pub(super) fn request(
        &mut self,
        now: Instant,
        destination: Vec<Destination>,
        body: MessageBody,
        purpose: Purpose,
    ) -> Result<u64, RequestError> {
        self.request_carrying(now, destination, body, purpose, vec![])
    }

    /// [`Node::request`] carrying `certificates` besides ours.
    pub(super) fn request_carrying(
        &mut self,
        now: Instant,
        destination: Vec<Destination>,
        body: MessageBody,
        purpose: Purpose,
        certificates: Vec<GenericCertificate>,
    ) -> Result<u64, RequestError> {
        let (sequence, ttl) = (self.overlay.sequence(), self.overlay.initial_ttl());
        self.request_full(now, destination, body, purpose, sequence, ttl, certificates)
    }

    fn request_with(
        &mut self,
        now: Instant,
        destination: Vec<Destination>,
        body: MessageBody,
        purpose: Purpose,
        configuration_sequence: u16,
        ttl: u8,
    ) -> Result<u64, RequestError> {
        let seq = configuration_sequence;
        self.request_full(now, destination, body, purpose, seq, ttl, vec![])
    }

    #[allow(clippy::too_many_arguments)]
    fn request_full(
        &mut self,
        now: Instant,
        destination: Vec<Destination>,
        body: MessageBody,
        purpose: Purpose,
        configuration_sequence: u16,
        ttl: u8,
        certificates: Vec<GenericCertificate>,
    ) -> Result<u64, RequestError> {
        if self.tx.len() >= self.s.max_outstanding {
            return Err(RequestError::Unsendable(format!(
                "{} requests are waiting for answers already (max_outstanding)",
                self.tx.len()
            )));
        }
        let transaction_id = self.rng.next_u64();
        let mut header = self.header(destination.clone(), transaction_id);
        header.configuration_sequence = configuration_sequence;
        header.ttl = ttl;
        let message = self
            .build_carrying(header, &body, certificates)
            .map_err(|e| RequestError::Unsendable(e.to_string()))?;
        let max = self.overlay.max_message_size();
        if message.len() > max {
            return Err(RequestError::Unsendable(format!(
                "{} bytes is more than max-message-size ({max})",
                message.len()
            )));
        }
        self.tx.insert(
            transaction_id,
            Outstanding {
                purpose,
                message: message.clone(),
                destination,
                transmissions: 1,
                next_retransmit: now + self.overlay.reliability_timer(),
                sent_on: Vec::new(),
            },
        );
        if let Some(link) = self.route_out(now, message) {
            self.tx.sent_on(transaction_id, link);
        }
        Ok(transaction_id)
    }

    /// §6.3.2.1: a node whose configuration is older than ours gets ours, with the
    /// reserved sequence 65535 that every node accepts on a ConfigUpdate.
    pub(super) fn send_configuration(&mut self, now: Instant, to: NodeId) {
        let Some(doc) = self.overlay.document().cloned() else {
            return;
        };
        let body = MessageBody::ConfigUpdateReq(ConfigUpdateReq::Config(doc));
        let ttl = self.overlay.initial_ttl();
        let _ = self.request_with(
            now,
            vec![Destination::Node(to)],
            body,
            Purpose::Notification,
            u16::MAX,
            ttl,
        );
    }

    /// Retransmits what is due; fails what was sent for the last time (§6.2.1).
    pub(super) fn retransmit(&mut self, now: Instant) {
        let interval = self.overlay.reliability_timer();
        for r in self.tx.expire(now, interval, MAX_TRANSMISSIONS) {
            match r {
                Ok((tx, message)) => {
                    self.stats.retransmissions += 1;
                    if let Some(link) = self.route_out(now, message) {
                        self.tx.sent_on(tx, link);
                    }
                }
                Err((tx, o)) => self.request_failed(now, tx, o.purpose, RequestError::Timeout),
            }
        }
    }

    /// An answer to one of our requests, arrived on `link`.
    pub(super) fn on_response(&mut self, now: Instant, link: super::LinkId, msg: Message) {
        let txid = msg.header.transaction_id;
        let Some(pending) = self.tx.get(txid) else {
            return; // late or duplicate answer
        };
        let expected = pending.destination.last().cloned();
        let on_path = pending.sent_on.contains(&link);
        let signer = match self.verifier.verify_message(&msg, self.wall(now)) {
            Ok(s) => s.node_id,
            Err(_) => {
                self.stats.dropped_bad_signature += 1;
                return;
            }
        };
        let body = msg.contents.body(self.overlay.decode());
        // Who may answer (§6.3.4): the target Node-ID itself, or for a Resource-ID a node
        // the topology plug-in accepts as responsible (at least as close as any node we
        // know). Errors that only arise in transit (TTL, forwarding options, size, RFC
        // 7851 underlay errors) come from the hop that hit them, so they are accepted from
        // any verified signer on the request's path — one that saw the (unpredictable)
        // transaction ID, whose answer comes back over a link the request left on — else
        // the RFC's own Error_TTL_Exceeded could never reach the requester.
        let in_transit =
            on_path && matches!(&body, Ok(MessageBody::Error(e)) if is_transit_error(e.error_code));
        let acceptable = in_transit
            || match &expected {
                Some(Destination::Node(n)) if !n.is_wildcard() => *n == signer,
                Some(Destination::Resource(r)) => self.topo.may_answer(&signer, r),
                _ => true,
            };
        if !acceptable {
            // Rejected; the request stays outstanding and is retransmitted (§6.3.4).
            self.stats.wrong_responder += 1;
            return;
        }
        let Some(o) = self.tx.remove(txid) else {
            return;
        };
        if let Ok(MessageBody::Error(e)) = &body
            && e.error_code == ErrorCode::UNKNOWN_KIND
        {
            self.offer_kinds(now, signer, &e.error_info);
        }
        let result = match body {
            Ok(MessageBody::Error(e)) => Err(RequestError::Error(signer, e)),
            Ok(b) => Ok((signer, b)),
            Err(_) => Err(RequestError::Error(
                signer,
                ErrorResponse::new(ErrorCode::INVALID_MESSAGE, "malformed answer"),
            )),
        };
        if o.purpose.is_storage() {
            let certificates = msg.security.certificates;
            return self.storage_answer(now, txid, o.purpose, result, &certificates);
        }
        match (o.purpose, result) {
            (Purpose::Application, result) => self.events.push_back(Event::Response {
                transaction_id: txid,
                result,
            }),
            (Purpose::TopologyAttach { target, ice, .. }, Ok((peer, body))) => {
                if !self.by_peer.contains_key(&peer) {
                    self.awaiting_connect.insert(peer, now);
                }
                let _ = self
                    .topo
                    .handle(now, TopologyInput::AttachAnswered { target, peer });
                if let Some(id) = ice {
                    match &body {
                        MessageBody::AttachAns(ans) => self.ice_answered(now, id, peer, ans),
                        _ => self.ice_drop(id),
                    }
                }
            }
            (purpose, Err(e)) => self.request_failed(now, txid, purpose, e),
            (Purpose::TopologyJoin, Ok((from, MessageBody::JoinAns(a)))) => {
                let _ = self.topo.handle(
                    now,
                    TopologyInput::JoinAnswered {
                        from,
                        result: Ok(a.overlay_specific_data),
                    },
                );
            }
            (Purpose::TopologyRouteQuery { asked }, Ok((_, MessageBody::RouteQueryAns(a)))) => {
                let _ = self.topo.handle(
                    now,
                    TopologyInput::RouteQueryAnswered {
                        asked,
                        body: Ok(a.0),
                    },
                );
            }
            (Purpose::TopologyPing { target }, Ok((responder, _))) => {
                let _ = self.topo.handle(
                    now,
                    TopologyInput::PingAnswered {
                        target,
                        responder: Some(responder),
                    },
                );
            }
            _ => {}
        }
    }

    pub(super) fn request_failed(
        &mut self,
        now: Instant,
        txid: u64,
        purpose: Purpose,
        e: RequestError,
    ) {
        let code = match &e {
            RequestError::Error(_, r) => Some(r.error_code),
            _ => None,
        };
        if let Purpose::TopologyAttach { ice: Some(id), .. } = &purpose {
            self.ice_drop(*id);
        }
        if purpose.is_storage() {
            return self.storage_answer(now, txid, purpose, Err(e), &[]);
        }
        let input = match purpose {
            Purpose::Fetch { .. }
            | Purpose::Replicate { .. }
            | Purpose::FetchBack { .. }
            | Purpose::PublishCert { .. } => return,
            Purpose::Application => {
                self.events.push_back(Event::Response {
                    transaction_id: txid,
                    result: Err(e),
                });
                return;
            }
            Purpose::Notification => return,
            Purpose::TopologyAttach { target, .. } => TopologyInput::AttachFailed {
                target,
                error: code,
            },
            Purpose::TopologyJoin => TopologyInput::JoinAnswered {
                from: self.creds.node_id,
                result: Err(code.unwrap_or(ErrorCode::REQUEST_TIMEOUT)),
            },
            Purpose::TopologyRouteQuery { asked } => TopologyInput::RouteQueryAnswered {
                asked,
                body: Err(code.unwrap_or(ErrorCode::REQUEST_TIMEOUT)),
            },
            Purpose::TopologyPing { target } => TopologyInput::PingAnswered {
                target,
                responder: None,
            },
        };
        let _ = self.topo.handle(now, input);
    }

    /// Executes what the topology plug-in asked for.
    pub(super) fn drain_topology(&mut self, now: Instant) {
        // Bounded: a plug-in cannot make the core loop forever.
        for _ in 0..10_000 {
            let Some(action) = self.topo.poll_action() else {
                return;
            };
            self.topology_action(now, action);
        }
    }

    fn topology_action(&mut self, now: Instant, action: TopologyAction) {
        let me = self.creds.node_id;
        let sent = match action {
            TopologyAction::Attach {
                target,
                via,
                send_update,
            } => {
                // ICE: our server-reflexive address may be a moment away (a UDP link just
                // came up and its peer was asked, §6.5.1.4); an Attach without it cannot
                // reach a peer behind a restricted NAT. It waits for the answer (bounded).
                if self.ice_mode() && self.ice_defer_attach(now, &target, via, send_update) {
                    return;
                }
                return self.send_topology_attach(now, target, via, send_update);
            }
            TopologyAction::SendUpdate { to, body } => self.request(
                now,
                vec![Destination::Node(to)],
                MessageBody::UpdateReq(UpdateReq(body)),
                Purpose::Notification,
            ),
            TopologyAction::SendJoin {
                to,
                overlay_specific_data,
            } => {
                let body = MessageBody::JoinReq(JoinReq {
                    joining_peer_id: me,
                    overlay_specific_data,
                });
                self.request(
                    now,
                    vec![Destination::Node(to)],
                    body,
                    Purpose::TopologyJoin,
                )
            }
            TopologyAction::SendLeave {
                to,
                overlay_specific_data,
            } => {
                let body = MessageBody::LeaveReq(LeaveReq {
                    leaving_peer_id: me,
                    overlay_specific_data,
                });
                self.request(
                    now,
                    vec![Destination::Node(to)],
                    body,
                    Purpose::Notification,
                )
            }
            TopologyAction::RouteQuery {
                to,
                destination,
                send_update,
            } => {
                let body = MessageBody::RouteQueryReq(RouteQueryReq {
                    send_update,
                    destination,
                    overlay_specific_data: Bytes::new(),
                });
                let purpose = Purpose::TopologyRouteQuery { asked: to };
                self.request(now, vec![Destination::Node(to)], body, purpose)
            }
            TopologyAction::Ping { target, via } => {
                let mut dest: Vec<Destination> = via.into_iter().map(Destination::Node).collect();
                dest.push(target.clone());
                let body = MessageBody::PingReq(PingReq::default());
                self.request(now, dest, body, Purpose::TopologyPing { target })
            }
            TopologyAction::ReleaseLink { peer } => {
                if let Some(link) = self.by_peer.remove(&peer) {
                    // A bootstrap link the topology lets go (a client attached to its
                    // responsible peer, §4.2.1) is not one to reconnect.
                    for b in self.bootstrap.iter_mut().filter(|b| b.2 == Some(link)) {
                        b.2 = None;
                    }
                    self.close_link(now, link, "no longer needed by the topology");
                }
                return;
            }
            TopologyAction::Joined => {
                self.bootstrap_backoff = BOOTSTRAP_RETRY_MIN;
                self.bootstrap_retry = None;
                self.events.push_back(Event::Joined);
                self.storage_topology_changed(now);
                self.publish_certificate(now);
                return;
            }
            TopologyAction::NeighborsChanged => {
                self.events.push_back(Event::NeighborsChanged);
                self.storage_topology_changed(now);
                return;
            }
            TopologyAction::Isolated { reason } => {
                self.schedule_bootstrap_retry(now);
                self.events.push_back(Event::Isolated { reason });
                return;
            }
        };
        if let Err(e) = sent {
            tracing::warn!("a topology request could not be sent: {e}");
        }
    }

    /// Sends the Attach the topology plug-in asked for (§6.5.1): in an ICE overlay with a
    /// new ICE session's credentials and candidates, else our No-ICE host candidates.
    pub(super) fn send_topology_attach(
        &mut self,
        now: Instant,
        target: Destination,
        via: Option<NodeId>,
        send_update: bool,
    ) {
        let mut dest: Vec<Destination> = via.into_iter().map(Destination::Node).collect();
        dest.push(target.clone());
        let (ice, body) = if self.ice_mode() {
            match self.ice_offer(now, send_update) {
                Some((id, body)) => (Some(id), body),
                None => {
                    let failed = TopologyInput::AttachFailed {
                        target,
                        error: None,
                    };
                    let _ = self.topo.handle(now, failed);
                    return;
                }
            }
        } else {
            let body = AttachReqAns {
                ufrag: Bytes::new(),
                password: Bytes::new(),
                role: Bytes::from_static(ROLE_PASSIVE),
                candidates: self.candidates(),
                send_update,
            };
            (None, body)
        };
        let purpose = Purpose::TopologyAttach {
            target: target.clone(),
            send_update,
            ice,
        };
        if self
            .request(now, dest, MessageBody::AttachReq(body), purpose)
            .is_err()
        {
            if let Some(id) = ice {
                self.ice_drop(id);
            }
            let failed = TopologyInput::AttachFailed {
                target,
                error: None,
            };
            let _ = self.topo.handle(now, failed);
        }
    }
}
