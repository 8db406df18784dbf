//! The framing layer of RFC 6940 §6.6.2–§6.6.3 over an already secure byte channel, sans-IO.
//!
//! A [`Framer`] wraps each RELOAD message in a `FramedMessage` data frame with the link's
//! sequence number, answers every data frame it receives with an ACK, and runs one of two
//! sender algorithms ([`Reliability`]):
//!
//! - **FH** (TLS/TCP, §6.6.5): no retransmission — TCP is reliable. ACKs give RTT samples
//!   for an RFC 6298 RTO estimate; a data frame unacknowledged for one RTO makes the link
//!   [`FramingEvent::Stalled`] ("likely failed", §6.6 L4488: remove it from the routing
//!   table), and after [`FramingConfig::failure_timeout`] more (RECOMMENDED 30 s, §6.6.5
//!   L4790) the link fails with [`LinkError::AckTimeout`].
//! - **SR** (DTLS/UDP, §6.6.3.1): stop-and-wait. One unacknowledged message at a time, the
//!   rest queued; retransmission after RTO with a new sequence number and a doubled timeout;
//!   after [`FramingConfig::max_transmissions`] (5) transmissions without an ACK the link fails
//!   with [`LinkError::RetransmissionsExhausted`]. The next message waits
//!   [`FramingConfig::ack_pacing`] (10 ms, "MUST wait 10 ms between receipt of an ACK and
//!   transmission of the next message", L4770) after the ACK.
//!
//! ## The `received` bitmask (§6.6.2, L4644–L4660)
//!
//! The RFC says: for each of the 32 previously received packets with sequence number M,
//! "if M is less than N but greater than N-32, the N-M bit of the received bitmask is set".
//! We read "the N-M bit" as bit index `N-M-1` counted from the least significant bit, so
//! **bit k ⇔ sequence `ack_sequence − 1 − k` was among the last 32 data frames received**
//! (the reading `reload_wire::FramedMessage` documents). Generating, we follow the RFC's
//! strict bound `N-32 < M < N`, so bit 31 is never set; reading an ACK we accept all 32 bits.
//! Sequence numbers compare in serial-number arithmetic (they wrap at 2^32).
//!
//! ## RTO (RFC 6298 §2 with §6.6.3.1 L4730–L4746)
//!
//! SRTT/RTTVAR with α = 1/8, β = 1/4, K = 4, clock granularity G = 1 ms; the RTO is rounded
//! **up to the millisecond** instead of to the second (RFC 6298 (2.4)'s 1 s floor is what
//! RELOAD replaces). We still clamp to [`FramingConfig::min_rto`] (default 200 ms, Linux's TCP
//! floor, so that a busy peer on a LAN is not declared dead after 31 × 2 ms; set it to 1 ms for
//! the literal reading) and [`FramingConfig::max_rto`] (60 s, RFC 6298 (2.5)). Because every
//! transmission has its own sequence number, every ACK whose `ack_sequence` names a recent
//! transmission is an unambiguous RTT sample (no Karn's rule needed, L4744). The first sample
//! uses formula (2.2) — or [`FramingConfig::initial_rtt`] (the ICE STUN RTT, L4737) does at
//! creation — later ones (2.3).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reload_wire::FramedMessage;
use reload_wire::Wire;
use reload_wire::codec::ErrorKind;
use reload_wire::framing::{ACK_FRAME_LEN, DATA_FRAME_OVERHEAD, FRAME_ACK, FRAME_DATA};

use super::LinkError;

/// Number of recent sequence numbers an ACK reports (§6.6.2).
pub const ACK_WINDOW: usize = 32;
/// Largest message a framed data frame can carry (`opaque message<0..2^24-1>`).
pub const MAX_FRAMED_MESSAGE: usize = (1 << 24) - 1;
/// Static SR RTO default (§6.6.3.1 L4725).
pub const DEFAULT_SR_RTO: Duration = Duration::from_millis(500);
/// RFC 6298 (2.1) initial RTO, used on FH links before the first RTT sample.
pub const DEFAULT_FH_RTO: Duration = Duration::from_secs(1);
/// Clock granularity G of RFC 6298; RELOAD rounds the RTO up to the millisecond.
pub const GRANULARITY: Duration = Duration::from_millis(1);

/// Transmissions of one frame the sender keeps for RTT samples.
const SENT_HISTORY: usize = 256;
/// Unacknowledged FH frames tracked for stall detection; beyond this new frames are not
/// tracked (the oldest, which drives the timers, still is).
const MAX_TRACKED_UNACKED: usize = 4096;

/// Which sender algorithm runs on top of the frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reliability {
    /// Framing header over a reliable stream (TLS/TCP, §6.6.5): RTO only as a failure timeout.
    FramingHeader,
    /// Simple Reliability with the stop-and-wait sender (DTLS/UDP, §6.6.3.1).
    SimpleReliability,
}

/// Tunables of the framing layer.
#[derive(Clone, Debug)]
pub struct FramingConfig {
    /// The overlay's max-message-size (§11.1): larger frames are refused in both directions.
    pub max_message_size: usize,
    /// The overlay's node-id-length (§11.1), to read the forwarding header of a message
    /// over max-message-size (for its Error_Message_Too_Large).
    pub node_id_len: usize,
    /// Messages waiting to be framed (before the link is up, or behind SR's one message in
    /// flight). [`Framer::send`] answers [`LinkError::QueueFull`] beyond.
    pub max_queued_messages: usize,
    /// Bytes waiting, same rule.
    pub max_queued_bytes: usize,
    /// RTO before the first RTT sample; `None` is the protocol default (SR 500 ms §6.6.3.1,
    /// FH 1 s RFC 6298 (2.1)).
    pub initial_rto: Option<Duration>,
    /// An RTT measured before the link was up (the ICE STUN transaction, §6.6.3.1 L4737),
    /// used as the first measurement of RFC 6298 (2.2).
    pub initial_rtt: Option<Duration>,
    /// `false`: a static RTO (`initial_rto`) as §6.6.3.1 allows; `true`: RFC 6298 estimate.
    pub dynamic_rto: bool,
    pub min_rto: Duration,
    pub max_rto: Duration,
    /// SR: total transmissions of one message before the link fails (§6.6.3.1: 5).
    pub max_transmissions: u32,
    /// SR: retransmissions without any ACK after which the link is reported stalled
    /// (§6.6.3.1 L4761: "by the time the third retransmission occurs").
    pub stall_after_retransmissions: u32,
    /// SR: wait between an ACK and the next new message (§6.6.3.1 L4770: 10 ms). Zero
    /// disables pacing.
    pub ack_pacing: Duration,
    /// FH: how long a stalled link is kept before it fails (§6.6.5 L4790: 30 s).
    pub failure_timeout: Duration,
}

impl FramingConfig {
    /// Defaults of RFC 6940 for an overlay with this max-message-size.
    pub fn new(max_message_size: usize) -> Self {
        FramingConfig {
            max_message_size: max_message_size.min(MAX_FRAMED_MESSAGE),
            node_id_len: 16,
            max_queued_messages: 256,
            max_queued_bytes: 4 << 20,
            initial_rto: None,
            initial_rtt: None,
            dynamic_rto: true,
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(60),
            max_transmissions: 5,
            stall_after_retransmissions: 3,
            ack_pacing: Duration::from_millis(10),
            failure_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for FramingConfig {
    fn default() -> Self {
        FramingConfig::new(crate::config::DEFAULT_MAX_MESSAGE_SIZE as usize)
    }
}

/// The RFC 6298 §2 estimator, in microseconds, rounding the RTO up to the millisecond.
#[derive(Clone, Debug)]
pub struct RtoEstimator {
    srtt: Option<u64>,
    rttvar: u64,
    rto: u64,
    min: u64,
    max: u64,
    dynamic: bool,
    samples: u64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl RtoEstimator {
    /// An estimator whose RTO is `initial` until the first sample.
    pub fn new(initial: Duration, min: Duration, max: Duration, dynamic: bool) -> Self {
        let (min, max) = (micros(min), micros(max).max(micros(min)));
        RtoEstimator {
            srtt: None,
            rttvar: 0,
            rto: micros(initial).clamp(min, max),
            min,
            max,
            dynamic,
            samples: 0,
        }
    }

    /// Feeds one RTT measurement: formula (2.2) for the first, (2.3) after.
    pub fn sample(&mut self, rtt: Duration) {
        self.samples += 1;
        if !self.dynamic {
            return;
        }
        let r = micros(rtt);
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                // RTTVAR <- (1 - beta) * RTTVAR + beta * |SRTT - R'|, then
                // SRTT <- (1 - alpha) * SRTT + alpha * R'.
                self.rttvar = (self.rttvar.saturating_mul(3)).saturating_add(srtt.abs_diff(r)) / 4;
                self.srtt = Some(srtt.saturating_mul(7).saturating_add(r) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        let g = micros(GRANULARITY);
        let rto = srtt.saturating_add(g.max(self.rttvar.saturating_mul(4)));
        // Round up to the millisecond (§6.6.3.1 L4733).
        let rto = rto.div_ceil(1000).saturating_mul(1000);
        self.rto = rto.clamp(self.min, self.max);
    }

    /// The current RTO.
    pub fn rto(&self) -> Duration {
        Duration::from_micros(self.rto)
    }

    /// The smoothed RTT, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt.map(Duration::from_micros)
    }

    /// The RTT variation.
    pub fn rttvar(&self) -> Duration {
        Duration::from_micros(self.rttvar)
    }

    /// Samples taken.
    pub fn samples(&self) -> u64 {
        self.samples
    }
}

/// What the framing layer reports besides messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FramingEvent {
    /// The link likely failed: no ACK within one RTO (FH) or by the third retransmission (SR).
    /// §6.6 L4488: remove it from the routing table; it may come back.
    Stalled,
    /// ACKs arrived again after [`FramingEvent::Stalled`].
    Resumed,
    /// The peer sent a message over max-message-size (§6.6): `prefix` is its start (at
    /// least its forwarding header), for an Error_Message_Too_Large answer; the framer
    /// reads nothing more from this link, and the link should close once it is answered.
    TooLarge { prefix: Bytes },
}

/// Counters, for tests and operators.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FramingStats {
    pub data_sent: u64,
    pub data_received: u64,
    pub acks_sent: u64,
    pub acks_received: u64,
    /// SR retransmissions (each one a new data frame).
    pub retransmissions: u64,
    pub rtt_samples: u64,
    /// ACKs that named no recent transmission of ours.
    pub unmatched_acks: u64,
}

#[derive(Clone, Copy, Debug)]
struct Sent {
    seq: u32,
    at: Instant,
    sampled: bool,
}

#[derive(Clone, Debug)]
struct InFlight {
    message: Bytes,
    /// Sequence numbers of its transmissions, oldest first.
    seqs: Vec<u32>,
    deadline: Instant,
    timeout: Duration,
    /// Whether any ACK arrived since its first transmission.
    acked_anything: bool,
}

/// `t + d`, or as far as an `Instant` goes (configured durations may be huge: "never").
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(1 << 32)))
        .unwrap_or(t)
}

/// `a < b` in serial-number arithmetic on `u32`.
fn seq_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 1 << 31
}

/// Whether an ACK `(ack_sequence, received)` acknowledges `seq` (bit k ⇔ ack_sequence−1−k).
pub fn ack_covers(ack_sequence: u32, received: u32, seq: u32) -> bool {
    if seq == ack_sequence {
        return true;
    }
    let d = ack_sequence.wrapping_sub(seq);
    (1..=32).contains(&d) && received & (1 << (d - 1)) != 0
}

/// The `received` bitmask for a data frame `n` given the sequence numbers received before it
/// (any order): bit `n-m-1` for each `m` with `n-32 < m < n` (§6.6.2).
pub fn received_mask(n: u32, previous: impl IntoIterator<Item = u32>) -> u32 {
    let mut mask = 0u32;
    for m in previous {
        let d = n.wrapping_sub(m);
        if (1..32).contains(&d) {
            mask |= 1 << (d - 1);
        }
    }
    mask
}

/// Decodes the first frame of `buf`: `Ok(None)` if incomplete.
fn parse_frame(buf: &[u8], max: usize) -> Result<Option<(usize, u8)>, LinkError> {
    match FramedMessage::frame_len(buf, max) {
        Ok(None) => Ok(None),
        Ok(Some(n)) => Ok(Some((n, buf[0]))),
        Err(ErrorKind::TooLarge { size, max }) => Err(LinkError::MessageTooLarge { size, max }),
        Err(e) => Err(LinkError::Framing(e.to_string())),
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The framing layer of one link.
#[derive(Debug)]
pub struct Framer {
    mode: Reliability,
    cfg: FramingConfig,
    open: bool,
    failed: bool,
    /// An oversized message arrived: input is ignored from now on (sending still works,
    /// for the error answer).
    refusing: bool,
    next_seq: u32,
    /// Receiver: the last 32 data sequence numbers received, most recent last.
    recent: VecDeque<u32>,
    /// FH stream reassembly.
    inbuf: BytesMut,
    /// Messages waiting to be framed.
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    /// Encoded frames for the secure channel.
    out: VecDeque<Bytes>,
    /// Recent transmissions, for RTT samples.
    sent: VecDeque<Sent>,
    /// FH: unacknowledged data frames (sequence, time), oldest first.
    unacked: VecDeque<(u32, Instant)>,
    /// SR: the one message in flight.
    in_flight: Option<InFlight>,
    /// SR: no new message before this (ACK pacing).
    pace_until: Option<Instant>,
    rto: RtoEstimator,
    stalled: bool,
    /// FH: when a stalled link fails.
    fail_at: Option<Instant>,
    delivered: VecDeque<Bytes>,
    events: VecDeque<FramingEvent>,
    stats: FramingStats,
}

impl Framer {
    /// A framer that queues messages until [`Framer::open`].
    pub fn new(mode: Reliability, cfg: FramingConfig) -> Self {
        let initial = cfg.initial_rto.unwrap_or(match mode {
            Reliability::FramingHeader => DEFAULT_FH_RTO,
            Reliability::SimpleReliability => DEFAULT_SR_RTO,
        });
        let mut rto = RtoEstimator::new(initial, cfg.min_rto, cfg.max_rto, cfg.dynamic_rto);
        if let Some(r) = cfg.initial_rtt {
            rto.sample(r);
        }
        Framer {
            mode,
            cfg,
            open: false,
            failed: false,
            refusing: false,
            next_seq: 0,
            recent: VecDeque::with_capacity(ACK_WINDOW),
            inbuf: BytesMut::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            out: VecDeque::new(),
            sent: VecDeque::new(),
            unacked: VecDeque::new(),
            in_flight: None,
            pace_until: None,
            rto,
            stalled: false,
            fail_at: None,
            delivered: VecDeque::new(),
            events: VecDeque::new(),
            stats: FramingStats::default(),
        }
    }

    /// Starts sending: the secure channel is up.
    pub fn open(&mut self, now: Instant) {
        if self.open {
            return;
        }
        self.open = true;
        self.pump(now);
    }

    pub fn reliability(&self) -> Reliability {
        self.mode
    }

    pub fn max_message_size(&self) -> usize {
        self.cfg.max_message_size
    }

    /// A new max-message-size (a ConfigUpdate changed it): applies to what is sent and
    /// received from now on.
    pub fn set_max_message_size(&mut self, max: usize) {
        self.cfg.max_message_size = max.min(MAX_FRAMED_MESSAGE);
    }

    /// Queues one RELOAD message. Refuses (without failing the link) messages over the
    /// max-message-size and messages beyond the queue bounds.
    pub fn send(&mut self, now: Instant, message: Bytes) -> Result<(), LinkError> {
        if self.failed {
            return Err(LinkError::Closed);
        }
        if message.len() > self.cfg.max_message_size {
            return Err(LinkError::MessageTooLarge {
                size: message.len(),
                max: self.cfg.max_message_size,
            });
        }
        if self.queue.len() >= self.cfg.max_queued_messages
            || self.queued_bytes + message.len() > self.cfg.max_queued_bytes
        {
            return Err(LinkError::QueueFull);
        }
        self.queued_bytes += message.len();
        self.queue.push_back(message);
        self.pump(now);
        Ok(())
    }

    /// Next encoded frame for the secure channel (one TLS record / one DTLS record).
    pub fn poll_frame(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }

    /// Next RELOAD message received.
    pub fn poll_message(&mut self) -> Option<Bytes> {
        self.delivered.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<FramingEvent> {
        self.events.pop_front()
    }

    /// Bytes from a stream (TLS/TCP plaintext): split with `FramedMessage::frame_len`, the
    /// buffer bounded by the max-message-size. Garbage fails the framer.
    pub fn handle_stream(&mut self, now: Instant, data: &[u8]) -> Result<(), LinkError> {
        if self.failed {
            return Err(LinkError::Closed);
        }
        if self.refusing {
            return Ok(());
        }
        self.inbuf.extend_from_slice(data);
        loop {
            match parse_frame(&self.inbuf, self.cfg.max_message_size) {
                Ok(None) => return Ok(()),
                Ok(Some((n, _))) => {
                    let frame = self.inbuf.split_to(n).freeze();
                    self.handle_frame(now, frame)?;
                }
                Err(e @ LinkError::MessageTooLarge { .. }) => return self.too_large(e, false),
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// §6.6: a message over max-message-size. Once its forwarding header is in (stream:
    /// wait for it, up to max-message-size bytes; `whole`: all there is), hand the start
    /// up for an Error_Message_Too_Large and refuse further input; a header that is
    /// itself too large fails the link silently.
    fn too_large(&mut self, e: LinkError, whole: bool) -> Result<(), LinkError> {
        let body = self
            .inbuf
            .get(reload_wire::framing::DATA_FRAME_OVERHEAD..)
            .unwrap_or(&[]);
        let prefix = Bytes::copy_from_slice(body);
        let opts = reload_wire::DecodeOptions::new(self.cfg.node_id_len, MAX_FRAMED_MESSAGE)
            .unwrap_or_default();
        if reload_wire::ForwardingHeader::peek_prefix(&prefix, &opts).is_ok() {
            self.refusing = true;
            self.inbuf = BytesMut::new();
            self.events.push_back(FramingEvent::TooLarge { prefix });
            return Ok(());
        }
        let not_reload =
            prefix.len() >= 4 && prefix[..4] != reload_wire::header::RELO_TOKEN.to_be_bytes();
        if whole || not_reload || prefix.len() >= self.cfg.max_message_size {
            return Err(self.fail(e));
        }
        Ok(())
    }

    /// One datagram record's plaintext (DTLS): whole frames, nothing left over.
    pub fn handle_record(&mut self, now: Instant, mut record: Bytes) -> Result<(), LinkError> {
        if self.failed {
            return Err(LinkError::Closed);
        }
        if self.refusing {
            return Ok(());
        }
        if record.is_empty() {
            return Err(self.fail(LinkError::Framing("empty record".into())));
        }
        while !record.is_empty() {
            match parse_frame(&record, self.cfg.max_message_size) {
                Ok(None) => {
                    return Err(self.fail(LinkError::Framing(format!(
                        "truncated frame: {} bytes",
                        record.len()
                    ))));
                }
                Ok(Some((n, _))) => {
                    let frame = record.split_to(n);
                    self.handle_frame(now, frame)?;
                }
                Err(e @ LinkError::MessageTooLarge { .. }) => {
                    self.inbuf = BytesMut::from(&record[..]);
                    return self.too_large(e, true);
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(())
    }

    /// Exactly one encoded frame.
    pub fn handle_frame(&mut self, now: Instant, frame: Bytes) -> Result<(), LinkError> {
        if self.failed {
            return Err(LinkError::Closed);
        }
        let (n, kind) = match parse_frame(&frame, self.cfg.max_message_size) {
            Ok(Some(x)) => x,
            Ok(None) => return Err(self.fail(LinkError::Framing("truncated frame".into()))),
            Err(e) => return Err(self.fail(e)),
        };
        if n != frame.len() {
            return Err(self.fail(LinkError::Framing(format!(
                "{} bytes after the frame",
                frame.len() - n
            ))));
        }
        match kind {
            FRAME_DATA => {
                let seq = be32(&frame[1..5]);
                let message = frame.slice(DATA_FRAME_OVERHEAD..);
                self.on_data(seq, message);
            }
            FRAME_ACK => {
                debug_assert_eq!(frame.len(), ACK_FRAME_LEN);
                let ack_sequence = be32(&frame[1..5]);
                let received = be32(&frame[5..9]);
                self.on_ack(now, ack_sequence, received);
            }
            _ => return Err(self.fail(LinkError::Framing("unknown frame type".into()))),
        }
        Ok(())
    }

    fn on_data(&mut self, seq: u32, message: Bytes) {
        self.stats.data_received += 1;
        let received = received_mask(seq, self.recent.iter().copied());
        if self.recent.len() == ACK_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(seq);
        // §6.6.2: the receiver SHOULD immediately send an ACK.
        self.push_frame(FramedMessage::Ack {
            ack_sequence: seq,
            received,
        });
        self.stats.acks_sent += 1;
        self.delivered.push_back(message);
    }

    fn on_ack(&mut self, now: Instant, ack_sequence: u32, received: u32) {
        self.stats.acks_received += 1;
        // An RTT sample from the transmission the ACK names (§6.6.3.1 L4740).
        match self.sent.iter_mut().find(|s| s.seq == ack_sequence) {
            Some(s) if !s.sampled => {
                s.sampled = true;
                let rtt = now.saturating_duration_since(s.at);
                self.rto.sample(rtt);
                self.stats.rtt_samples += 1;
            }
            Some(_) => {}
            None => self.stats.unmatched_acks += 1,
        }
        if self.stalled {
            self.stalled = false;
            self.fail_at = None;
            self.events.push_back(FramingEvent::Resumed);
        }
        match self.mode {
            Reliability::FramingHeader => {
                // TCP delivers in order: an ACK for s acknowledges everything up to s, as long
                // as s is something we sent.
                let sent_before = self.next_seq.wrapping_sub(1);
                if self.stats.data_sent == 0 || seq_lt(sent_before, ack_sequence) {
                    return;
                }
                while let Some(&(s, _)) = self.unacked.front() {
                    if s == ack_sequence || seq_lt(s, ack_sequence) {
                        self.unacked.pop_front();
                    } else {
                        break;
                    }
                }
            }
            Reliability::SimpleReliability => {
                let Some(f) = self.in_flight.as_mut() else {
                    return;
                };
                f.acked_anything = true;
                if f.seqs
                    .iter()
                    .any(|&s| ack_covers(ack_sequence, received, s))
                {
                    self.in_flight = None;
                    if !self.cfg.ack_pacing.is_zero() {
                        self.pace_until = Some(later(now, self.cfg.ack_pacing));
                    }
                    self.pump(now);
                }
            }
        }
    }

    fn push_frame(&mut self, f: FramedMessage) {
        // Encoding cannot fail: messages are bounded by MAX_FRAMED_MESSAGE.
        if let Ok(b) = f.to_bytes() {
            self.out.push_back(b);
        }
    }

    fn transmit(&mut self, now: Instant, message: Bytes) -> u32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.push_frame(FramedMessage::Data {
            sequence: seq,
            message,
        });
        self.stats.data_sent += 1;
        if self.sent.len() == SENT_HISTORY {
            self.sent.pop_front();
        }
        self.sent.push_back(Sent {
            seq,
            at: now,
            sampled: false,
        });
        seq
    }

    /// Moves queued messages to frames as the sender algorithm allows.
    fn pump(&mut self, now: Instant) {
        if !self.open || self.failed {
            return;
        }
        match self.mode {
            Reliability::FramingHeader => {
                while let Some(m) = self.queue.pop_front() {
                    self.queued_bytes -= m.len();
                    let seq = self.transmit(now, m);
                    if self.unacked.len() < MAX_TRACKED_UNACKED {
                        self.unacked.push_back((seq, now));
                    }
                }
            }
            Reliability::SimpleReliability => {
                if self.in_flight.is_some() {
                    return;
                }
                if let Some(t) = self.pace_until {
                    if now < t {
                        return;
                    }
                    self.pace_until = None;
                }
                let Some(m) = self.queue.pop_front() else {
                    return;
                };
                self.queued_bytes -= m.len();
                let seq = self.transmit(now, m.clone());
                let timeout = self.rto.rto();
                self.in_flight = Some(InFlight {
                    message: m,
                    seqs: vec![seq],
                    deadline: later(now, timeout),
                    timeout,
                    acked_anything: false,
                });
            }
        }
    }

    /// When [`Framer::handle_timeout`] is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.open || self.failed {
            return None;
        }
        match self.mode {
            Reliability::FramingHeader => {
                if self.stalled {
                    self.fail_at
                } else {
                    self.unacked
                        .front()
                        .map(|&(_, at)| later(at, self.rto.rto()))
                }
            }
            Reliability::SimpleReliability => match &self.in_flight {
                Some(f) => Some(f.deadline),
                None if !self.queue.is_empty() => self.pace_until,
                None => None,
            },
        }
    }

    /// Runs the timers: stall detection and failure (FH), retransmission and failure (SR),
    /// pacing (SR).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), LinkError> {
        if !self.open || self.failed {
            return Ok(());
        }
        match self.mode {
            Reliability::FramingHeader => {
                let Some(&(_, oldest)) = self.unacked.front() else {
                    return Ok(());
                };
                if !self.stalled && now >= later(oldest, self.rto.rto()) {
                    self.stalled = true;
                    self.fail_at = Some(later(now, self.cfg.failure_timeout));
                    self.events.push_back(FramingEvent::Stalled);
                }
                if let Some(t) = self.fail_at
                    && now >= t
                {
                    return Err(self.fail(LinkError::AckTimeout {
                        waited: now.saturating_duration_since(oldest),
                    }));
                }
            }
            Reliability::SimpleReliability => {
                if let Some(f) = &self.in_flight {
                    if now >= f.deadline {
                        let transmissions = f.seqs.len() as u32;
                        if transmissions >= self.cfg.max_transmissions {
                            return Err(
                                self.fail(LinkError::RetransmissionsExhausted { transmissions })
                            );
                        }
                        let message = f.message.clone();
                        let timeout = f.timeout.saturating_mul(2).min(self.cfg.max_rto);
                        let seq = self.transmit(now, message);
                        self.stats.retransmissions += 1;
                        let stall_now = {
                            let Some(f) = self.in_flight.as_mut() else {
                                return Ok(());
                            };
                            f.seqs.push(seq);
                            f.timeout = timeout;
                            f.deadline = later(now, timeout);
                            f.seqs.len() as u32 > self.cfg.stall_after_retransmissions
                                && !f.acked_anything
                        };
                        if stall_now && !self.stalled {
                            self.stalled = true;
                            self.events.push_back(FramingEvent::Stalled);
                        }
                    }
                } else {
                    self.pump(now);
                }
            }
        }
        Ok(())
    }

    fn fail(&mut self, e: LinkError) -> LinkError {
        self.failed = true;
        self.queue.clear();
        self.queued_bytes = 0;
        self.in_flight = None;
        self.inbuf = BytesMut::new();
        e
    }

    /// The current RTO (estimate or static).
    pub fn rto(&self) -> Duration {
        self.rto.rto()
    }

    pub fn estimator(&self) -> &RtoEstimator {
        &self.rto
    }

    pub fn stats(&self) -> &FramingStats {
        &self.stats
    }

    /// The sequence number the next data frame gets.
    pub fn next_sequence(&self) -> u32 {
        self.next_seq
    }

    /// Messages waiting (not yet framed, SR: not counting the one in flight).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether a data frame awaits its ACK (SR: the message in flight).
    pub fn awaiting_ack(&self) -> bool {
        match self.mode {
            Reliability::FramingHeader => !self.unacked.is_empty(),
            Reliability::SimpleReliability => self.in_flight.is_some(),
        }
    }

    pub fn is_stalled(&self) -> bool {
        self.stalled
    }
}
