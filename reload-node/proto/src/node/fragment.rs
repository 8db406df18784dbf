//! Fragmentation and reassembly (RFC 6940 §6.7).
//!
//! Any node on the path may split a message that does not fit the next link; only the
//! final destination reassembles. Each fragment carries a full copy of the forwarding
//! header (via list, destination list, options) with `fragment` set to the offset of its
//! chunk in the data after the header and the last-fragment bit on the final chunk; its
//! `length` is the fragment's own size.
//!
//! Splitting follows the SHOULDs: equal-sized chunks (sizes differ by at most one byte)
//! no larger than the link's MTU minus 32 bytes, so that the via list can grow on later
//! hops; each chunk at least 256 bytes, else the message goes unfragmented (the RFC's
//! "RELOAD fragmentation is not performed"). A fragment that must be split again keeps
//! its offsets relative to the original message.
//!
//! Reassembly is bounded: at most `max_messages` partial messages and `max_bytes` bytes in
//! total — each chunk charged [`CHUNK_OVERHEAD`] bytes more than its data, each message its
//! header — and at most [`MAX_CHUNKS`] chunks per message; chunks are copied out of the
//! buffer they arrived in (holding a small chunk never pins a large read buffer). A
//! partial message expires after the maximum request lifetime (15 s by default, §6.7
//! SHOULD). When the buffer is full a message is dropped (§6.7 MUST): the oldest
//! incomplete one of the link that holds the most, so that a flood of fragments that never
//! complete — from one neighbour, or through it — pushes out its own, not real messages
//! arriving over other links; a single message larger than the whole buffer is itself
//! dropped. Overlapping and repeated chunks (a retransmission split differently on another
//! path) are accepted; an empty chunk that is not the last, a chunk beyond the end
//! announced by the last fragment, or a message that would exceed max-message-size, drops
//! the message.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use reload_wire::header::Fragment;
use reload_wire::{DecodeOptions, ForwardingHeader, Wire};

/// Room left in every fragment for the via list to grow on later hops (§6.7).
pub const VIA_GROWTH_ROOM: usize = 32;
/// The least message body a fragment may carry (§6.7).
pub const MIN_FRAGMENT_BODY: usize = 256;
/// The largest offset the 24-bit fragment field can express.
const MAX_OFFSET: usize = 0x00ff_ffff;
/// What holding one chunk costs beyond its bytes (its map entry), charged to the buffer.
pub const CHUNK_OVERHEAD: usize = 64;
/// Chunks one message may be made of, at most (re-fragmented paths and retransmissions
/// split differently included; a 64 KiB message in 1 KiB fragments needs 64).
pub const MAX_CHUNKS: usize = 256;

/// Splits `message` (whole, or itself a fragment) into fragments of at most `mtu` bytes.
/// Returns the message unchanged when it fits, or when the header leaves no room for
/// chunks of at least [`MIN_FRAGMENT_BODY`] bytes.
pub fn split(message: Bytes, mtu: usize, decode: &DecodeOptions) -> Vec<Bytes> {
    if message.len() <= mtu {
        return vec![message];
    }
    let Ok((header, header_len)) = ForwardingHeader::peek(&message, decode) else {
        return vec![message];
    };
    let payload = message.slice(header_len..);
    let budget = mtu.saturating_sub(VIA_GROWTH_ROOM + header_len);
    if budget < MIN_FRAGMENT_BODY {
        return vec![message];
    }
    let count = payload.len().div_ceil(budget);
    let small = payload.len() / count;
    let base = header.fragment.offset() as usize;
    if small < MIN_FRAGMENT_BODY || base + payload.len() > MAX_OFFSET + 1 {
        return vec![message];
    }
    // The first `payload.len() % count` chunks are one byte larger.
    let larger = payload.len() % count;
    let last = header.fragment.is_last();
    let mut out = Vec::with_capacity(count);
    let mut start = 0;
    for i in 0..count {
        let size = small + usize::from(i < larger);
        let chunk = payload.slice(start..start + size);
        let mut h = header.clone();
        h.fragment = Fragment::new((base + start) as u32, last && i + 1 == count);
        let total = header_len + size;
        let mut b = BytesMut::with_capacity(total);
        if h.encode_with_length(&mut b, total as u32).is_err() {
            return vec![message];
        }
        b.extend_from_slice(&chunk);
        out.push(b.freeze());
        start += size;
    }
    out
}

/// Why a fragment was not (or no longer) kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The buffer is full (§6.7: the message is dropped).
    BufferFull,
    /// Inconsistent with the other fragments or larger than max-message-size.
    Inconsistent,
}

#[derive(Debug)]
struct Partial {
    /// The link its fragments come over (the previous hop, authenticated).
    source: u64,
    /// The first fragment's header (offset 0): the reassembled message's header.
    first: Option<ForwardingHeader>,
    /// Chunks by offset.
    chunks: BTreeMap<usize, Bytes>,
    /// The end of the data, once the last fragment arrived.
    end: Option<usize>,
    bytes: usize,
    deadline: Instant,
}

/// The reassembly buffer of the final destination (§6.7).
#[derive(Debug)]
pub struct Reassembly {
    partial: HashMap<u64, Partial>,
    bytes: usize,
    max_bytes: usize,
    max_messages: usize,
    lifetime: std::time::Duration,
    /// Messages dropped: expired, buffer full, or inconsistent.
    pub dropped: u64,
}

impl Reassembly {
    pub fn new(max_bytes: usize, max_messages: usize, lifetime: std::time::Duration) -> Self {
        Reassembly {
            partial: HashMap::new(),
            bytes: 0,
            max_bytes,
            max_messages,
            lifetime,
            dropped: 0,
        }
    }

    /// A new maximum request lifetime (ConfigUpdate): messages started from now on
    /// expire after it.
    pub fn set_lifetime(&mut self, lifetime: std::time::Duration) {
        self.lifetime = lifetime;
    }

    /// Bytes held for partial messages.
    pub fn buffered(&self) -> usize {
        self.bytes
    }

    /// Partial messages held.
    pub fn len(&self) -> usize {
        self.partial.len()
    }

    pub fn is_empty(&self) -> bool {
        self.partial.is_empty()
    }

    /// Takes one fragment (`header` parsed from `data`, whose header is `header_len`
    /// bytes) that came over link `source`. Returns the whole message once every byte
    /// arrived.
    pub fn insert(
        &mut self,
        now: Instant,
        source: u64,
        header: ForwardingHeader,
        header_len: usize,
        data: Bytes,
        max_message_size: usize,
    ) -> Result<Option<Bytes>, Refused> {
        let txid = header.transaction_id;
        let offset = header.fragment.offset() as usize;
        // A copy: the chunk must not pin the whole buffer it was read into.
        let chunk = Bytes::copy_from_slice(&data[header_len.min(data.len())..]);
        let end = offset + chunk.len();
        let last = header.fragment.is_last();
        if end + header_len > max_message_size || (chunk.is_empty() && !last) {
            self.drop_message(txid);
            return Err(Refused::Inconsistent);
        }
        let cost = chunk.len() + CHUNK_OVERHEAD;
        if !self.partial.contains_key(&txid) {
            if self.partial.len() >= self.max_messages {
                self.evict(txid);
            }
            self.partial.insert(
                txid,
                Partial {
                    source,
                    first: None,
                    chunks: BTreeMap::new(),
                    end: None,
                    bytes: header_len,
                    deadline: now + self.lifetime,
                },
            );
            self.bytes += header_len;
        }
        while self.bytes + cost > self.max_bytes {
            if !self.evict(txid) {
                self.drop_message(txid);
                return Err(Refused::BufferFull);
            }
        }
        let Some(p) = self.partial.get_mut(&txid) else {
            return Ok(None);
        };
        let beyond = p.end.is_some_and(|e| end > e)
            || (last && p.chunks.iter().any(|(o, c)| o + c.len() > end))
            || (last && p.end.is_some_and(|e| e != end))
            || (p.chunks.len() >= MAX_CHUNKS && !p.chunks.contains_key(&offset));
        if beyond {
            self.drop_message(txid);
            return Err(Refused::Inconsistent);
        }
        if last {
            p.end = Some(end);
        }
        if offset == 0 && p.first.is_none() {
            p.first = Some(header);
        }
        if let Some(old) = p.chunks.insert(offset, chunk) {
            p.bytes -= old.len() + CHUNK_OVERHEAD;
            self.bytes -= old.len() + CHUNK_OVERHEAD;
        }
        p.bytes += cost;
        self.bytes += cost;
        let Some(total) = p.end else {
            return Ok(None);
        };
        // Complete when the chunks cover 0..total without a gap.
        let mut covered = 0;
        for (o, c) in &p.chunks {
            if *o > covered {
                return Ok(None);
            }
            covered = covered.max(o + c.len());
        }
        if covered < total || p.first.is_none() {
            return Ok(None);
        }
        let Some(p) = self.partial.remove(&txid) else {
            return Ok(None);
        };
        self.bytes -= p.bytes;
        let Some(mut h) = p.first else {
            return Ok(None);
        };
        h.fragment = Fragment::UNFRAGMENTED;
        let mut data = vec![0u8; total];
        for (o, c) in &p.chunks {
            data[*o..o + c.len()].copy_from_slice(c);
        }
        let len = h.encoded_len() + total;
        let mut b = BytesMut::with_capacity(len);
        if len > max_message_size || h.encode_with_length(&mut b, len as u32).is_err() {
            self.dropped += 1;
            return Err(Refused::Inconsistent);
        }
        b.extend_from_slice(&data);
        Ok(Some(b.freeze()))
    }

    /// Makes room by dropping a partial message other than `keep`: the oldest of the link
    /// that holds the most (a flood of incomplete fragments then pushes out its own, while
    /// real messages over other links complete). False if there is none.
    fn evict(&mut self, keep: u64) -> bool {
        let mut per_source: HashMap<u64, usize> = HashMap::new();
        for (t, p) in &self.partial {
            if *t != keep {
                *per_source.entry(p.source).or_default() += 1;
            }
        }
        let Some((&source, _)) = per_source
            .iter()
            .max_by_key(|(s, n)| (**n, std::cmp::Reverse(**s)))
        else {
            return false;
        };
        let oldest = self
            .partial
            .iter()
            .filter(|(t, p)| **t != keep && p.source == source)
            .min_by_key(|(t, p)| (p.deadline, **t))
            .map(|(t, _)| *t);
        match oldest {
            Some(t) => {
                self.drop_message(t);
                true
            }
            None => false,
        }
    }

    fn drop_message(&mut self, txid: u64) {
        if let Some(p) = self.partial.remove(&txid) {
            self.bytes -= p.bytes;
        }
        self.dropped += 1;
    }

    /// Drops partial messages older than the maximum request lifetime.
    pub fn expire(&mut self, now: Instant) {
        let before = self.partial.len();
        let mut freed = 0;
        self.partial.retain(|_, p| {
            let keep = p.deadline > now;
            if !keep {
                freed += p.bytes;
            }
            keep
        });
        self.bytes -= freed;
        self.dropped += (before - self.partial.len()) as u64;
    }

    /// When the oldest partial message expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.partial.values().map(|p| p.deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reload_wire::{Destination, NodeId};
    use std::time::Duration;

    fn message(body_len: usize) -> Bytes {
        let mut h = ForwardingHeader::new(0x1234_5678, 1, 100, 0xfeed);
        h.destination_list = vec![Destination::Node(NodeId::from_u128(7))];
        h.via_list = vec![Destination::Node(NodeId::from_u128(9))];
        let body: Vec<u8> = (0..body_len).map(|i| (i * 31 % 251) as u8).collect();
        let total = h.encoded_len() + body_len;
        let mut b = BytesMut::new();
        h.encode_with_length(&mut b, total as u32).unwrap();
        b.extend_from_slice(&body);
        b.freeze()
    }

    fn opts() -> DecodeOptions {
        DecodeOptions::default().with_max_message_size(100_000)
    }

    fn reassemble(frags: &[Bytes]) -> Option<Bytes> {
        let mut r = Reassembly::new(1 << 20, 16, Duration::from_secs(15));
        let now = Instant::now();
        let mut out = None;
        for f in frags {
            let (h, hl) = ForwardingHeader::peek(f, &opts()).unwrap();
            if let Some(m) = r.insert(now, 1, h, hl, f.clone(), 100_000).unwrap() {
                out = Some(m);
            }
        }
        assert!(out.is_none() || r.is_empty());
        out
    }

    #[test]
    fn a_message_that_fits_is_untouched() {
        let m = message(500);
        assert_eq!(split(m.clone(), m.len(), &opts()), vec![m]);
    }

    #[test]
    fn fragments_are_equal_sized_fit_the_mtu_and_reassemble() {
        let m = message(10_000);
        let frags = split(m.clone(), 1200, &opts());
        assert_eq!(frags.len(), 10);
        let sizes: Vec<usize> = frags.iter().map(|f| f.len()).collect();
        assert!(
            sizes.iter().all(|s| *s <= 1200 - VIA_GROWTH_ROOM),
            "{sizes:?}"
        );
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        for (i, f) in frags.iter().enumerate() {
            let (h, _) = ForwardingHeader::peek(f, &opts()).unwrap();
            assert_eq!(
                h.length as usize,
                f.len(),
                "§6.7: length is the fragment's size"
            );
            assert_eq!(h.fragment.is_last(), i + 1 == frags.len());
            assert!(h.fragment.is_valid());
        }
        assert_eq!(reassemble(&frags), Some(m.clone()));
        // Any order.
        let mut rev = frags.clone();
        rev.reverse();
        assert_eq!(reassemble(&rev), Some(m));
    }

    #[test]
    fn refragmenting_a_fragment_keeps_offsets_relative_to_the_original() {
        let m = message(9_000);
        let first = split(m.clone(), 4000, &opts());
        let again: Vec<Bytes> = first
            .iter()
            .flat_map(|f| split(f.clone(), 1000, &opts()))
            .collect();
        assert!(again.len() > first.len());
        assert_eq!(reassemble(&again), Some(m.clone()));
        // Mixed granularities of the same message (a retransmission on another path).
        let mut mixed = vec![first[0].clone()];
        mixed.extend(again.iter().skip(3).cloned());
        assert_eq!(reassemble(&mixed), Some(m));
    }

    #[test]
    fn no_fragmentation_when_chunks_would_be_under_256_bytes() {
        let m = message(2000);
        let (_, hl) = ForwardingHeader::peek(&m, &opts()).unwrap();
        let frags = split(m.clone(), hl + VIA_GROWTH_ROOM + 200, &opts());
        assert_eq!(frags, vec![m]);
    }

    #[test]
    fn gaps_wait_and_expire_and_limits_drop() {
        let m = message(5000);
        let frags = split(m, 1200, &opts());
        let mut r = Reassembly::new(3000, 16, Duration::from_secs(15));
        let now = Instant::now();
        let (h, hl) = ForwardingHeader::peek(&frags[0], &opts()).unwrap();
        assert_eq!(
            r.insert(now, 1, h, hl, frags[0].clone(), 100_000).unwrap(),
            None
        );
        let last = frags.last().unwrap();
        let (h, hl) = ForwardingHeader::peek(last, &opts()).unwrap();
        assert_eq!(
            r.insert(now, 1, h, hl, last.clone(), 100_000).unwrap(),
            None
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r.next_deadline(), Some(now + Duration::from_secs(15)));
        r.expire(now + Duration::from_secs(16));
        assert!(r.is_empty());
        assert_eq!(r.buffered(), 0);
        assert_eq!(r.dropped, 1);
        // 3000 bytes of buffer cannot hold 5000 bytes of chunks: the message is dropped.
        let mut refused = false;
        for f in &frags {
            let (h, hl) = ForwardingHeader::peek(f, &opts()).unwrap();
            if r.insert(now, 1, h, hl, f.clone(), 100_000) == Err(Refused::BufferFull) {
                refused = true;
            }
        }
        assert!(refused);
        assert!(r.buffered() <= 3000);
        // Larger than max-message-size: refused.
        let (h, hl) = ForwardingHeader::peek(last, &opts()).unwrap();
        assert_eq!(
            r.insert(now, 1, h, hl, last.clone(), 1000),
            Err(Refused::Inconsistent)
        );
    }

    #[test]
    fn a_chunk_beyond_the_announced_end_drops_the_message() {
        let m = message(5000);
        let frags = split(m, 1200, &opts());
        let mut r = Reassembly::new(1 << 20, 16, Duration::from_secs(15));
        let now = Instant::now();
        // The second-to-last fragment marked as last: a shorter end than chunks seen.
        let (h, hl) = ForwardingHeader::peek(&frags[3], &opts()).unwrap();
        r.insert(now, 1, h, hl, frags[3].clone(), 100_000).unwrap();
        let (mut h, hl) = ForwardingHeader::peek(&frags[1], &opts()).unwrap();
        h.fragment = Fragment::new(h.fragment.offset(), true);
        assert_eq!(
            r.insert(now, 1, h, hl, frags[1].clone(), 100_000),
            Err(Refused::Inconsistent)
        );
        assert!(r.is_empty());
    }

    proptest::proptest! {
        /// Hostile fragments (any offsets, sizes, last flags, transaction IDs, times):
        /// never a panic, the buffer within its bounds, everything gone after expiry.
        #[test]
        fn hostile_fragments_stay_within_bounds(
            frags in proptest::collection::vec(
                (0u64..4, 0u32..20_000, 0usize..3000, proptest::bool::ANY, 0u64..20),
                0..200,
            ),
        ) {
            let mut r = Reassembly::new(16_384, 3, Duration::from_secs(15));
            let t0 = Instant::now();
            for (txid, offset, len, last, secs) in frags {
                let mut h = ForwardingHeader::new(1, 1, 100, txid);
                h.fragment = Fragment::new(offset, last);
                let total = h.encoded_len() + len;
                let mut b = BytesMut::new();
                h.encode_with_length(&mut b, total as u32).unwrap();
                b.extend_from_slice(&vec![7u8; len]);
                let data = b.freeze();
                let (h, hl) = ForwardingHeader::peek(&data, &opts()).unwrap();
                let now = t0 + Duration::from_secs(secs);
                r.expire(now);
                let _ = r.insert(now, 1, h, hl, data, 40_000);
                proptest::prop_assert!(r.buffered() <= 16_384);
                proptest::prop_assert!(r.len() <= 3);
            }
            r.expire(t0 + Duration::from_secs(60));
            proptest::prop_assert_eq!((r.len(), r.buffered()), (0, 0));
        }
    }

    proptest::proptest! {
        /// Any size, any MTU chain, any arrival order with repeats: the destination gets
        /// back exactly the original message, and nothing stays buffered.
        #[test]
        fn split_then_reassemble_is_the_identity(
            body_len in 0usize..30_000,
            mtus in proptest::collection::vec(400usize..5000, 1..4),
            order in proptest::collection::vec(proptest::num::usize::ANY, 0..40),
        ) {
            let m = message(body_len);
            let mut frags = vec![m.clone()];
            for mtu in mtus {
                frags = frags.into_iter().flat_map(|f| split(f, mtu, &opts())).collect();
            }
            for f in &frags {
                let (h, _) = ForwardingHeader::peek(f, &opts()).unwrap();
                proptest::prop_assert_eq!(h.length as usize, f.len());
            }
            // A shuffled copy with some fragments repeated.
            let mut arrival = frags.clone();
            for (i, k) in order.iter().enumerate() {
                let n = arrival.len();
                arrival.swap(i % n, k % n);
                if k % 5 == 0 {
                    arrival.push(frags[k % frags.len()].clone());
                }
            }
            let mut r = Reassembly::new(1 << 20, 16, Duration::from_secs(15));
            let now = Instant::now();
            let mut got = None;
            for f in &arrival {
                let (h, hl) = ForwardingHeader::peek(f, &opts()).unwrap();
                if let Some(whole) = r.insert(now, 1, h, hl, f.clone(), 100_000).unwrap() {
                    got = Some(whole);
                }
            }
            if frags.len() == 1 {
                // Unfragmented: the node delivers it without the buffer.
                proptest::prop_assert!(frags[0] == m);
            } else {
                proptest::prop_assert_eq!(got, Some(m));
            }
        }
    }

    /// A fragment of message `txid` (a copy of `frag` under another transaction ID).
    fn with_txid(frag: &Bytes, txid: u64) -> (ForwardingHeader, usize, Bytes) {
        let (mut h, hl) = ForwardingHeader::peek(frag, &opts()).unwrap();
        h.transaction_id = txid;
        let mut b = BytesMut::new();
        h.encode_with_length(&mut b, frag.len() as u32).unwrap();
        b.extend_from_slice(&frag[hl..]);
        (h, hl, b.freeze())
    }

    #[test]
    fn a_flood_over_one_link_evicts_its_own_partials_not_another_links_message() {
        let frags = split(message(3000), 1200, &opts());
        assert!(frags.len() >= 3);
        let mut r = Reassembly::new(1 << 20, 16, Duration::from_secs(15));
        let now = Instant::now();
        // The real message's first fragment arrives over link 2…
        let (h, hl, f) = with_txid(&frags[0], 7);
        assert_eq!(r.insert(now, 2, h, hl, f, 100_000), Ok(None));
        // …then link 1 floods first fragments of 500 messages that never complete…
        for t in 1000..1500 {
            let (h, hl, f) = with_txid(&frags[0], t);
            let _ = r.insert(now, 1, h, hl, f, 100_000);
            assert!(r.len() <= 16);
        }
        // …and the real message still completes.
        let mut whole = None;
        for frag in &frags[1..] {
            let (h, hl, f) = with_txid(frag, 7);
            whole = r.insert(now, 2, h, hl, f, 100_000).unwrap();
        }
        assert!(whole.is_some(), "the message over the other link completed");
    }

    #[test]
    fn a_long_first_header_cannot_make_the_message_exceed_max_message_size() {
        // Found writing the reassembly fuzz target's invariants (issue 10): each fragment is
        // checked against
        // max-message-size with its own header, but the whole message gets the first
        // fragment's. A first fragment with a long via list and a last one with a short
        // header, each within the limit, must not reassemble into a message over it.
        let max = 3000;
        let fragment = |via: u128, offset: u32, last: bool, len: usize| {
            let mut h = ForwardingHeader::new(1, 1, 100, 5);
            h.via_list = (0..via)
                .map(|i| Destination::Node(NodeId::from_u128(i + 1)))
                .collect();
            h.fragment = Fragment::new(offset, last);
            let mut b = BytesMut::new();
            h.encode_with_length(&mut b, (h.encoded_len() + len) as u32)
                .unwrap();
            b.extend_from_slice(&vec![3u8; len]);
            let b = b.freeze();
            let (h, hl) = ForwardingHeader::peek(&b, &opts()).unwrap();
            (h, hl, b)
        };
        let mut r = Reassembly::new(1 << 20, 16, Duration::from_secs(15));
        let now = Instant::now();
        let (h, hl, first) = fragment(60, 0, false, 10);
        assert!(hl > 1000);
        assert_eq!(r.insert(now, 1, h, hl, first, max), Ok(None));
        let (_, short, _) = fragment(0, 10, true, 0);
        let (h, hl, last) = fragment(0, 10, true, max - short - 10);
        assert_eq!(
            last.len() + 10,
            max,
            "the last fragment is within the limit"
        );
        assert_eq!(
            r.insert(now, 1, h, hl, last, max),
            Err(Refused::Inconsistent)
        );
        assert!(r.is_empty());
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn empty_non_final_chunks_and_too_many_chunks_drop_the_message() {
        let frags = split(message(3000), 1200, &opts());
        let mut r = Reassembly::new(1 << 20, 16, Duration::from_secs(15));
        let now = Instant::now();
        let (h, hl, f) = with_txid(&frags[0], 9);
        let empty = f.slice(..hl);
        let mut h0 = h.clone();
        h0.fragment = Fragment::new(10, false);
        assert_eq!(
            r.insert(now, 1, h0, hl, empty, 100_000),
            Err(Refused::Inconsistent)
        );
        assert!(r.is_empty());
        // Chunks of one byte at new offsets: at most MAX_CHUNKS kept, then dropped.
        let mut refused = false;
        for k in 0..(MAX_CHUNKS + 10) {
            let mut hk = h.clone();
            hk.fragment = Fragment::new(1 + 2 * k as u32, false);
            let one = Bytes::from([f.slice(..hl).to_vec(), vec![1]].concat());
            if r.insert(now, 1, hk, hl, one, 100_000) == Err(Refused::Inconsistent) {
                refused = true;
                break;
            }
        }
        assert!(refused);
        assert!(r.is_empty());
        assert_eq!(r.buffered(), 0);
    }
}
