//! Plain links: the simulator's stand-in for TLS, with **no security at all**.
//!
//! Thousands of simulated nodes cannot afford a TLS handshake per link, yet the core must
//! run exactly as it does over real links: a link learns its peer in-band and the core
//! binds it to the Node-ID the peer's certificate proves. A plain link therefore does what
//! the TLS handshake does for identity, minus the cryptography: each side first sends its
//! certificate in the clear, and the receiver checks it against the overlay's trust policy
//! and the Node-ID the Attach named, exactly like a (D)TLS link. Nobody proves possession
//! of the key, so a plain link must never carry a real overlay; the node uses one only when
//! the shell (the simulator) gives it [`PlainLinks`].
//!
//! Wire format, on any ordered byte stream: frames of a 4-byte big-endian length and that
//! many bytes. The first frame of each side is the hello (`RELOAD-PLAIN` and the DER
//! certificate); every later frame is one RELOAD message.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use reload_wire::NodeId;
use reload_wire::link::OverlayLinkType;

use super::auth::PeerCheck;
use super::{LinkError, LinkEvent, LinkFactory, LinkSession, Role, TransportKind, WallAnchor};
use crate::identity::{ReloadCertificate, TrustPolicy};
use crate::overlay::Overlay;

const HELLO: &[u8] = b"RELOAD-PLAIN";

/// One frame: a 4-byte length, then the payload.
pub fn frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + payload.len());
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

/// Makes plain links (streams only) for a node with certificate `cert`.
#[derive(Debug, Clone)]
pub struct PlainLinks {
    cert: Bytes,
    trust: Arc<TrustPolicy>,
    max_message_size: usize,
    anchor: WallAnchor,
    /// How long the peer has to send its hello.
    pub handshake_timeout: Duration,
    /// The largest message sent in one piece (`None`: no limit); larger ones are
    /// fragmented by the core (§6.7), as over DTLS.
    pub mtu: Option<usize>,
}

impl PlainLinks {
    pub fn new(cert: &ReloadCertificate, overlay: &Overlay, anchor: WallAnchor) -> Self {
        PlainLinks {
            cert: Bytes::copy_from_slice(cert.der()),
            trust: overlay.trust().clone(),
            max_message_size: overlay.max_message_size(),
            anchor,
            handshake_timeout: Duration::from_secs(10),
            mtu: None,
        }
    }
}

impl LinkFactory for PlainLinks {
    fn link(
        &self,
        kind: TransportKind,
        _role: Role,
        expected_peer: Option<NodeId>,
        now: Instant,
    ) -> Result<Box<dyn LinkSession>, LinkError> {
        if kind != TransportKind::Stream {
            return Err(LinkError::Config("plain links run on streams only".into()));
        }
        let check = PeerCheck::new(self.trust.clone(), expected_peer, self.anchor.at(now));
        let mut hello = HELLO.to_vec();
        hello.extend_from_slice(&self.cert);
        Ok(Box::new(PlainLink {
            check,
            anchor: self.anchor,
            max_message_size: self.max_message_size,
            mtu: self.mtu,
            inbuf: BytesMut::new(),
            transmits: VecDeque::from([frame(&hello)]),
            queued: VecDeque::new(),
            events: VecDeque::new(),
            state: State::Hello,
            deadline: now + self.handshake_timeout,
        }))
    }

    fn reconfigure(&mut self, overlay: &Overlay) {
        self.trust = overlay.trust().clone();
        self.max_message_size = overlay.max_message_size();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Hello,
    Established,
    Done,
}

/// One plain link (see the module documentation).
#[derive(Debug)]
pub struct PlainLink {
    check: PeerCheck,
    anchor: WallAnchor,
    max_message_size: usize,
    mtu: Option<usize>,
    inbuf: BytesMut,
    transmits: VecDeque<Bytes>,
    /// Messages sent before the peer's hello was accepted.
    queued: VecDeque<Bytes>,
    events: VecDeque<LinkEvent>,
    state: State,
    deadline: Instant,
}

impl PlainLink {
    fn fail(&mut self, e: LinkError) {
        if self.state != State::Done {
            self.state = State::Done;
            self.queued.clear();
            self.events.push_back(LinkEvent::Failed(e));
        }
    }

    fn on_hello(&mut self, now: Instant, payload: &[u8]) {
        let Some(der) = payload.strip_prefix(HELLO) else {
            return self.fail(LinkError::Protocol("no plain-link hello".into()));
        };
        match self.check.check(der, &[], self.anchor.at(now)) {
            Ok(cert) => {
                self.state = State::Established;
                self.events.push_back(LinkEvent::Established {
                    peer_node_ids: cert.node_ids.clone(),
                    peer_cert: cert,
                    peer_chain: Vec::new(),
                });
                while let Some(m) = self.queued.pop_front() {
                    self.transmits.push_back(frame(&m));
                }
            }
            Err(e) => self.fail(LinkError::PeerAuth(e)),
        }
    }
}

impl LinkSession for PlainLink {
    fn link_type(&self) -> OverlayLinkType {
        OverlayLinkType::TLS_TCP_FH_NO_ICE
    }

    fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.state == State::Done {
            return;
        }
        self.inbuf.extend_from_slice(data);
        while self.inbuf.len() >= 4 && self.state != State::Done {
            let len =
                u32::from_be_bytes([self.inbuf[0], self.inbuf[1], self.inbuf[2], self.inbuf[3]])
                    as usize;
            let limit = match self.state {
                // A certificate chain, generously.
                State::Hello => 64 * 1024,
                _ => self.max_message_size,
            };
            if len > limit {
                let size = len;
                return self.fail(LinkError::MessageTooLarge { size, max: limit });
            }
            if self.inbuf.len() < 4 + len {
                return;
            }
            self.inbuf.advance(4);
            let payload = self.inbuf.split_to(len).freeze();
            match self.state {
                State::Hello => self.on_hello(now, &payload),
                State::Established => self.events.push_back(LinkEvent::Message(payload)),
                State::Done => {}
            }
        }
    }

    fn handle_eof(&mut self, _now: Instant) {
        if self.state != State::Done {
            self.state = State::Done;
            self.events.push_back(LinkEvent::Closed);
        }
    }

    fn send(&mut self, _now: Instant, message: Bytes) -> Result<(), LinkError> {
        match self.state {
            State::Done => Err(LinkError::Closed),
            _ if message.len() > self.max_message_size => Err(LinkError::MessageTooLarge {
                size: message.len(),
                max: self.max_message_size,
            }),
            State::Hello => {
                self.queued.push_back(message);
                Ok(())
            }
            State::Established => {
                self.transmits.push_back(frame(&message));
                Ok(())
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (self.state == State::Hello).then_some(self.deadline)
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Hello && now >= self.deadline {
            self.fail(LinkError::HandshakeTimeout);
        }
    }

    fn close(&mut self, _now: Instant) {
        if self.state != State::Done {
            self.state = State::Done;
            self.queued.clear();
            self.events.push_back(LinkEvent::Closed);
        }
    }

    fn is_established(&self) -> bool {
        self.state == State::Established
    }

    fn mtu(&self) -> Option<usize> {
        self.mtu
    }

    fn set_max_message_size(&mut self, max: usize) {
        self.max_message_size = max;
    }

    fn describe(&self) -> Option<String> {
        Some("plain (simulator, no security)".into())
    }
}
