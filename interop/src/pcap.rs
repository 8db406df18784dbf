//! A classic libpcap writer (no dependency) and the capture of the corpus as one TCP
//! connection carrying RELOAD framing (RFC 6940 §6.6.2).
//!
//! File format: the libpcap global header (magic `0xa1b2c3d4` written little-endian,
//! version 2.4, snaplen 65535, link type 1 = Ethernet, as `tcpdump -i lo` writes it), then
//! one record per packet. Each packet is Ethernet (all-zero MACs, like Linux loopback) +
//! IPv4 (correct header checksum, DF, TTL 64) + TCP (correct checksum over the
//! pseudo-header, no options) + payload.
//!
//! The connection goes from `127.0.0.1:<CLIENT_PORT>` (Carol) to `127.0.0.2:6084` (Dave):
//! SYN, SYN-ACK, ACK, then one RELOAD frame per PSH|ACK segment — data frames with the
//! sender's framing sequence number and, now and then, an ACK frame from the receiver —
//! and a FIN handshake. One frame per segment matters: Wireshark 4.0's framing dissector
//! mis-splits several frames in one segment (external-tools.md defect 1).

use reload_wire::framing::FramedMessage;
use reload_wire::{EncodeError, Message, MessageCode, Wire};

use crate::corpus::Direction;

/// Link type 1: Ethernet.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Client (Carol) address.
pub const CLIENT_ADDR: [u8; 4] = [127, 0, 0, 1];
/// Server (Dave) address.
pub const SERVER_ADDR: [u8; 4] = [127, 0, 0, 2];
/// Carol's ephemeral port.
pub const CLIENT_PORT: u16 = 49_731;
/// The RELOAD port (RFC 6940 §14.2, `reload-config` / framing on TCP 6084).
pub const SERVER_PORT: u16 = 6084;
/// Seconds since the epoch of the first packet (the corpus's `T0_MS`).
pub const START_SECONDS: u32 = 1_700_000_000;
/// The receiver of a data frame sends an ACK frame after every `ACK_EVERY`-th data frame
/// it receives, and after the first.
pub const ACK_EVERY: u32 = 8;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

/// Writes a classic libpcap file into memory.
#[derive(Debug)]
pub struct PcapWriter {
    buf: Vec<u8>,
    records: usize,
}

impl PcapWriter {
    /// A file with the global header for `linktype`.
    pub fn new(linktype: u32) -> Self {
        let mut buf = Vec::new();
        buf.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        buf.extend_from_slice(&2u16.to_le_bytes());
        buf.extend_from_slice(&4u16.to_le_bytes());
        buf.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        buf.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        buf.extend_from_slice(&65_535u32.to_le_bytes()); // snaplen
        buf.extend_from_slice(&linktype.to_le_bytes());
        PcapWriter { buf, records: 0 }
    }

    /// Appends one packet captured at `seconds` + `micros`. Returns its frame number
    /// (1-based, as Wireshark counts).
    pub fn record(&mut self, seconds: u32, micros: u32, packet: &[u8]) -> usize {
        let len = packet.len() as u32;
        self.buf.extend_from_slice(&seconds.to_le_bytes());
        self.buf.extend_from_slice(&micros.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes()); // incl_len
        self.buf.extend_from_slice(&len.to_le_bytes()); // orig_len
        self.buf.extend_from_slice(packet);
        self.records += 1;
        self.records
    }

    pub fn records(&self) -> usize {
        self.records
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// The Internet checksum (RFC 1071) of `data`, continuing from `sum`.
fn ones_complement_sum(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 header checksum.
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    fold(ones_complement_sum(0, header))
}

/// TCP checksum over the IPv4 pseudo-header and `segment` (header with a zero checksum
/// field, then payload).
pub fn tcp_checksum(src: [u8; 4], dst: [u8; 4], segment: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.push(0);
    pseudo.push(6);
    pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    fold(ones_complement_sum(
        ones_complement_sum(0, &pseudo),
        segment,
    ))
}

/// One side of the TCP connection.
#[derive(Clone, Copy, Debug)]
struct Endpoint {
    addr: [u8; 4],
    port: u16,
    /// Next sequence number this side sends.
    seq: u32,
    /// Next IPv4 identification.
    ip_id: u16,
}

/// A TCP connection between Carol and Dave, written into a pcap.
#[derive(Debug)]
pub struct TcpConnection {
    client: Endpoint,
    server: Endpoint,
    pcap: PcapWriter,
    micros: u64,
}

impl Default for TcpConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl TcpConnection {
    pub fn new() -> Self {
        TcpConnection {
            client: Endpoint {
                addr: CLIENT_ADDR,
                port: CLIENT_PORT,
                seq: 0x1f3a_6c01,
                ip_id: 0x4c21,
            },
            server: Endpoint {
                addr: SERVER_ADDR,
                port: SERVER_PORT,
                seq: 0x8e07_d4b2,
                ip_id: 0x0913,
            },
            pcap: PcapWriter::new(LINKTYPE_ETHERNET),
            micros: 0,
        }
    }

    /// Writes one segment from `from` with `flags` and `payload`; returns its frame number.
    fn segment(&mut self, from: Direction, flags: u8, payload: &[u8]) -> usize {
        let (src, dst) = match from {
            Direction::CarolToDave => (&mut self.client, &mut self.server),
            Direction::DaveToCarol => (&mut self.server, &mut self.client),
        };
        let ack = if flags & TCP_ACK != 0 { dst.seq } else { 0 };

        let mut tcp = Vec::with_capacity(20 + payload.len());
        tcp.extend_from_slice(&src.port.to_be_bytes());
        tcp.extend_from_slice(&dst.port.to_be_bytes());
        tcp.extend_from_slice(&src.seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.push(5 << 4); // data offset: 5 words, no options
        tcp.push(flags);
        tcp.extend_from_slice(&65_535u16.to_be_bytes()); // window
        tcp.extend_from_slice(&[0, 0]); // checksum, filled below
        tcp.extend_from_slice(&[0, 0]); // urgent pointer
        tcp.extend_from_slice(payload);
        let sum = tcp_checksum(src.addr, dst.addr, &tcp);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());

        let total = 20 + tcp.len();
        let mut ip = Vec::with_capacity(total);
        ip.push(0x45); // IPv4, IHL 5
        ip.push(0); // DSCP/ECN
        ip.extend_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&src.ip_id.to_be_bytes());
        ip.extend_from_slice(&0x4000u16.to_be_bytes()); // DF, offset 0
        ip.push(64); // TTL
        ip.push(6); // TCP
        ip.extend_from_slice(&[0, 0]); // checksum, filled below
        ip.extend_from_slice(&src.addr);
        ip.extend_from_slice(&dst.addr);
        let sum = ipv4_checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        ip.extend_from_slice(&tcp);

        src.ip_id = src.ip_id.wrapping_add(1);
        let consumed = payload.len() as u32
            + u32::from(flags & TCP_SYN != 0)
            + u32::from(flags & TCP_FIN != 0);
        src.seq = src.seq.wrapping_add(consumed);

        let mut frame = Vec::with_capacity(14 + ip.len());
        frame.extend_from_slice(&[0; 12]); // loopback: zero destination and source MACs
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        frame.extend_from_slice(&ip);

        // 200 µs apart; the sender of a data frame "waits" a little longer.
        self.micros += if payload.is_empty() { 60 } else { 200 };
        let seconds = START_SECONDS + (self.micros / 1_000_000) as u32;
        let micros = (self.micros % 1_000_000) as u32;
        self.pcap.record(seconds, micros, &frame)
    }

    /// SYN, SYN-ACK, ACK. Returns the three frame numbers.
    pub fn handshake(&mut self) -> [usize; 3] {
        [
            self.segment(Direction::CarolToDave, TCP_SYN, &[]),
            self.segment(Direction::DaveToCarol, TCP_SYN | TCP_ACK, &[]),
            self.segment(Direction::CarolToDave, TCP_ACK, &[]),
        ]
    }

    /// One PSH|ACK segment carrying `payload`.
    pub fn send(&mut self, from: Direction, payload: &[u8]) -> usize {
        self.segment(from, TCP_PSH | TCP_ACK, payload)
    }

    /// FIN|ACK from Carol, FIN|ACK from Dave, final ACK.
    pub fn close(&mut self) -> [usize; 3] {
        [
            self.segment(Direction::CarolToDave, TCP_FIN | TCP_ACK, &[]),
            self.segment(Direction::DaveToCarol, TCP_FIN | TCP_ACK, &[]),
            self.segment(Direction::CarolToDave, TCP_ACK, &[]),
        ]
    }

    pub fn into_pcap(self) -> Vec<u8> {
        self.pcap.into_bytes()
    }
}

/// What one pcap record carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A segment without payload: `SYN`, `SYN-ACK`, `ACK`, `FIN-ACK`.
    Tcp(&'static str),
    /// A framed RELOAD message: corpus index and label, framing sequence, message code.
    Data {
        corpus_index: usize,
        label: String,
        sequence: u32,
        code: MessageCode,
    },
    /// A framing ACK.
    Ack { ack_sequence: u32, received: u32 },
}

/// One pcap record of the capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Wireshark's `frame.number`.
    pub number: usize,
    pub direction: Direction,
    pub kind: FrameKind,
    /// TCP payload bytes: the whole framed message (8 + message for data, 9 for an ACK).
    pub length: usize,
}

impl Frame {
    /// The message code's registered name, `ack` or the TCP flags.
    pub fn name(&self) -> String {
        match &self.kind {
            FrameKind::Tcp(flags) => (*flags).to_string(),
            FrameKind::Data { code, .. } => {
                code.name().map_or_else(|| code.to_string(), str::to_string)
            }
            FrameKind::Ack { .. } => "ack".to_string(),
        }
    }
}

/// A capture: the pcap bytes and what each record is.
#[derive(Clone, Debug)]
pub struct Capture {
    pub pcap: Vec<u8>,
    pub frames: Vec<Frame>,
}

/// Receiver-side framing state of one direction (RFC 6940 §6.6.2).
#[derive(Debug, Default)]
struct FramingState {
    next_sequence: u32,
    received: Vec<u32>,
}

impl FramingState {
    /// The `received` bitmask for an ACK of `n`, in the reading `reload-wire` documents
    /// for [`FramedMessage::Ack`]: bit k (LSB = 0) is set when sequence `n - k - 1` is
    /// among the 32 most recently received frames. (RFC 6940 §6.6.2 says "the N-M bit";
    /// whether that counts from 0 or 1 is not stated — external-tools.md defect 7.)
    fn received_mask(&self, n: u32) -> u32 {
        let recent = &self.received[self.received.len().saturating_sub(32)..];
        recent
            .iter()
            .filter(|&&m| m < n && n - m <= 32)
            .fold(0, |mask, &m| mask | 1 << (n - m - 1))
    }
}

/// Frames `messages` (each with the direction it crosses the link) onto one TCP
/// connection. Each direction numbers its data frames from 0 (§6.6.2 "each connection has
/// its own sequence number space"); the receiver ACKs the first data frame and every
/// [`ACK_EVERY`]-th.
pub fn capture(messages: &[(String, Message, Direction)]) -> Result<Capture, EncodeError> {
    let mut tcp = TcpConnection::new();
    let mut frames = Vec::new();
    let mut to_dave = FramingState::default();
    let mut to_carol = FramingState::default();

    let opening = [
        ("SYN", Direction::CarolToDave),
        ("SYN-ACK", Direction::DaveToCarol),
        ("ACK", Direction::CarolToDave),
    ];
    for (number, (flags, direction)) in tcp.handshake().into_iter().zip(opening) {
        frames.push(Frame {
            number,
            direction,
            kind: FrameKind::Tcp(flags),
            length: 0,
        });
    }

    for (corpus_index, (label, msg, direction)) in messages.iter().enumerate() {
        let (state, reverse) = match direction {
            Direction::CarolToDave => (&mut to_dave, Direction::DaveToCarol),
            Direction::DaveToCarol => (&mut to_carol, Direction::CarolToDave),
        };
        let sequence = state.next_sequence;
        state.next_sequence += 1;
        let frame = FramedMessage::Data {
            sequence,
            message: msg.to_bytes()?,
        }
        .to_bytes()?;
        let number = tcp.send(*direction, &frame);
        frames.push(Frame {
            number,
            direction: *direction,
            kind: FrameKind::Data {
                corpus_index,
                label: label.clone(),
                sequence,
                code: msg.contents.message_code,
            },
            length: frame.len(),
        });

        let received = state.received_mask(sequence);
        state.received.push(sequence);
        if sequence == 0 || (sequence + 1) % ACK_EVERY == 0 {
            let ack = FramedMessage::Ack {
                ack_sequence: sequence,
                received,
            }
            .to_bytes()?;
            let number = tcp.send(reverse, &ack);
            frames.push(Frame {
                number,
                direction: reverse,
                kind: FrameKind::Ack {
                    ack_sequence: sequence,
                    received,
                },
                length: ack.len(),
            });
        }
    }

    let closing = [
        ("FIN-ACK", Direction::CarolToDave),
        ("FIN-ACK", Direction::DaveToCarol),
        ("ACK", Direction::CarolToDave),
    ];
    for (number, (flags, direction)) in tcp.close().into_iter().zip(closing) {
        frames.push(Frame {
            number,
            direction,
            kind: FrameKind::Tcp(flags),
            length: 0,
        });
    }

    Ok(Capture {
        pcap: tcp.into_pcap(),
        frames,
    })
}

/// [`capture`] of [`crate::corpus()`], each message in its [`crate::corpus::direction`].
pub fn corpus_capture() -> Result<Capture, EncodeError> {
    let messages: Vec<_> = crate::corpus::try_corpus()?
        .into_iter()
        .map(|(label, msg)| {
            let d = crate::corpus::direction(&msg);
            (label, msg, d)
        })
        .collect();
    capture(&messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_checksum_of_a_known_header() {
        // The example of RFC 1071-style computation from Wikipedia's IPv4 article.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&h), 0xb861);
    }

    #[test]
    fn checksums_verify_to_zero() {
        let cap = corpus_capture().unwrap();
        let bytes = &cap.pcap;
        let mut at = 24;
        let mut n = 0;
        while at < bytes.len() {
            let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
            let pkt = &bytes[at + 16..at + 16 + len];
            let ip = &pkt[14..34];
            assert_eq!(fold(ones_complement_sum(0, ip)), 0);
            let src: [u8; 4] = ip[12..16].try_into().unwrap();
            let dst: [u8; 4] = ip[16..20].try_into().unwrap();
            assert_eq!(tcp_checksum(src, dst, &pkt[34..]), 0);
            at += 16 + len;
            n += 1;
        }
        assert_eq!(n, cap.frames.len());
    }

    #[test]
    fn received_mask_reading() {
        let mut s = FramingState::default();
        for i in 0..40 {
            s.received.push(i);
        }
        assert_eq!(s.received_mask(40), u32::MAX);
        let s = FramingState {
            next_sequence: 8,
            received: (0..7).collect(),
        };
        assert_eq!(s.received_mask(7), 0x7f);
    }
}
