//! Hostile input: a few hundred thousand random and mutated inputs go through every
//! decoder. Nothing may panic or hang, and whatever decodes must re-encode to exactly the
//! bytes it came from (`encode(decode(b)) == b`). Deterministic: a fixed seed.

mod strategies;

use bytes::Bytes;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use reload_wire::body::MessageBody;
use reload_wire::framing::FramedMessage;
use reload_wire::header::{ForwardingHeader, RELO_TOKEN};
use reload_wire::message::{Message, MessageCode, MessageContents};
use reload_wire::{DecodeOptions, Wire};
use strategies::*;

/// xorshift64*: a tiny deterministic generator, so the test needs no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn samples<S: Strategy>(s: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| s.new_tree(&mut runner).expect("strategy").current())
        .collect()
}

/// Seed messages: random headers and security blocks around every typed body.
fn seed_messages() -> Vec<Bytes> {
    let bodies = samples(message_body(), 400);
    let msgs = samples(message(), 400);
    msgs.into_iter()
        .zip(bodies)
        .map(|(mut m, b)| {
            m.contents = MessageContents::from_body(&b).unwrap();
            m.header.length = m.encoded_len() as u32;
            m.to_bytes().unwrap()
        })
        .collect()
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            4 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            5 if v.len() >= 2 => {
                // Interesting lengths: 0, 0xff.., small.
                let i = rng.below(v.len() - 1);
                let val: [u8; 2] = match rng.below(3) {
                    0 => [0, 0],
                    1 => [0xff, 0xff],
                    _ => [0, rng.below(16) as u8],
                };
                v[i..i + 2].copy_from_slice(&val);
            }
            _ => v.extend((0..rng.below(8)).map(|_| rng.next() as u8)),
        }
    }
    v
}

/// Every decoder that accepts the input must give back exactly the input when re-encoding.
fn check_all(input: &[u8], opts: &DecodeOptions) -> usize {
    let b = Bytes::copy_from_slice(input);
    let mut accepted = 0;
    if let Ok(m) = Message::decode(&b, opts) {
        accepted += 1;
        assert_eq!(m.to_bytes().unwrap(), b, "Message re-encoding differs");
        if let Ok(body) = m.contents.body(opts) {
            assert_eq!(
                body.to_bytes().unwrap(),
                m.contents.message_body,
                "body re-encoding differs"
            );
        }
    }
    if let Ok((h, len)) = ForwardingHeader::peek(&b, opts) {
        accepted += 1;
        assert_eq!(
            h.to_bytes().unwrap(),
            b.slice(..len),
            "header re-encoding differs"
        );
    }
    if let Ok(f) = FramedMessage::decode(&b, opts) {
        accepted += 1;
        assert_eq!(f.to_bytes().unwrap(), b);
    }
    let _ = FramedMessage::frame_len(&b, opts.max_message_size());
    accepted
}

/// Mutated message bodies through every body decoder, by message code.
fn check_body(code: u16, input: &[u8], opts: &DecodeOptions) -> bool {
    let b = Bytes::copy_from_slice(input);
    match MessageBody::decode(MessageCode(code), &b, opts) {
        Ok(body) => {
            assert_eq!(
                body.to_bytes().unwrap(),
                b,
                "body {code:#x} re-encoding differs"
            );
            true
        }
        Err(e) => {
            assert!(
                e.offset <= b.len(),
                "error offset {} beyond input {}",
                e.offset,
                b.len()
            );
            false
        }
    }
}

#[test]
fn mutated_messages_never_panic_and_round_trip() {
    let opts = opts();
    let seeds = seed_messages();
    let mut rng = Rng(0x5eed_0f2e_10ad);
    let mut accepted = 0;
    for s in &seeds {
        assert!(
            check_all(s, &opts) >= 2,
            "seed must decode as message and header"
        );
    }
    for _ in 0..200_000 {
        let s = &seeds[rng.below(seeds.len())];
        accepted += check_all(&mutate(&mut rng, s), &opts);
    }
    // Enough mutants stay valid for the re-encode check to mean something.
    assert!(accepted > 5_000, "only {accepted} mutants decoded");
}

#[test]
fn mutated_bodies_never_panic_and_round_trip() {
    let opts = opts();
    let bodies = samples(message_body(), 600);
    let mut rng = Rng(0x00b0_d1e5);
    let mut accepted = 0;
    for _ in 0..150_000 {
        let body = &bodies[rng.below(bodies.len())];
        let raw = body.to_bytes().unwrap();
        let m = mutate(&mut rng, &raw);
        // Mostly the body's own code; sometimes another one, to cross-feed decoders.
        let code = if rng.below(4) == 0 {
            1 + rng.below(0x28) as u16
        } else {
            body.code().0
        };
        accepted += check_body(code, &m, &opts) as usize;
    }
    assert!(accepted > 10_000, "only {accepted} mutated bodies decoded");
}

#[test]
fn random_bytes_never_panic() {
    let opts = DecodeOptions::default();
    let mut rng = Rng(0x0ddb_a110);
    for n in 0..100_000usize {
        let len = rng.below(if n % 10 == 0 { 6000 } else { 96 });
        let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if n % 2 == 0 && v.len() >= 4 {
            v[..4].copy_from_slice(&RELO_TOKEN.to_be_bytes());
        }
        check_all(&v, &opts);
        check_body(1 + (n % 0x28) as u16, &v, &opts);
    }
}

#[test]
fn oversized_message_is_refused_before_decoding() {
    let opts = DecodeOptions::default(); // max-message-size 5000 (RFC 6940 §11.1 default)
    let mut m = samples(message(), 1).remove(0);
    m.contents.message_body = Bytes::from(vec![0u8; 6000]);
    m.header.length = m.encoded_len() as u32;
    let b = m.to_bytes().unwrap();
    let e = Message::decode(&b, &opts).unwrap_err();
    assert!(
        matches!(e.kind, reload_wire::ErrorKind::TooLarge { max: 5000, .. }),
        "{e}"
    );
    assert_eq!(e.offset, 16, "the error points at the length field");
    assert_eq!(e.field, "ForwardingHeader.length");
    let e = ForwardingHeader::peek(&b, &opts).unwrap_err();
    assert!(
        matches!(e.kind, reload_wire::ErrorKind::TooLarge { .. }),
        "{e}"
    );
}
