//! Stateless DTLS cookies (RFC 6347 §4.2.1): a ClientHello from an address we have no
//! association with is answered with a HelloVerifyRequest computed from the datagram alone,
//! and only a ClientHello that returns a valid cookie — proof that its sender receives at
//! its address — costs us a link. A flood of spoofed ClientHellos therefore allocates
//! nothing.
//!
//! The cookie is `HMAC-SHA256(secret, local ‖ remote ‖ client random)` truncated to 20
//! bytes. rtc-dtls's server cannot take a ClientHello it did not ask a cookie for, so the
//! endpoint hands a new server link the verified ClientHello twice: first rewritten as the
//! initial one (message_seq 0, no cookie), which makes rtc-dtls draw the cookie it will
//! expect — through a random source that yields our cookie for that one draw
//! ([`CookieRandom`]) — and ask for it (that HelloVerifyRequest is discarded: the client has
//! ours), then as it came. The handshake transcript starts at the ClientHello that carries
//! the cookie (RFC 6347 §4.2.1), so both ends hash the same bytes.

use std::net::SocketAddr;
use std::sync::Mutex;

use aws_lc_rs::hmac;
use bytes::{BufMut, Bytes, BytesMut};
use rtc_dtls::crypto_provider::{CryptoError, RTCCrypto, RTCCryptoProvider, RTCRandom};

/// The cookie's length: what rtc-dtls draws for its own (`COOKIE_LENGTH`).
pub const COOKIE_LEN: usize = 20;

const RECORD_HEADER: usize = 13;
const HANDSHAKE_HEADER: usize = 12;

/// Where the fields of an unfragmented ClientHello are in its datagram.
#[derive(Clone, Copy, Debug)]
pub struct ClientHello {
    /// Offset of the cookie length byte.
    cookie_at: usize,
    cookie_len: usize,
    /// The record's length (after the record header) and the handshake message's length.
    record_len: usize,
    message_len: usize,
}

impl ClientHello {
    /// Reads a datagram that is exactly one epoch-0 record holding one unfragmented
    /// ClientHello. `None` for anything else (a fragmented ClientHello is not taken).
    pub fn parse(d: &[u8]) -> Option<ClientHello> {
        let h = d.get(..RECORD_HEADER)?;
        if h[0] != 22 || h[1] != 0xfe || h[3] != 0 || h[4] != 0 {
            return None;
        }
        let record_len = usize::from(u16::from_be_bytes([h[11], h[12]]));
        if RECORD_HEADER + record_len != d.len() {
            return None;
        }
        let hs = d.get(RECORD_HEADER..RECORD_HEADER + HANDSHAKE_HEADER)?;
        if hs[0] != 1 {
            return None;
        }
        let len24 = |b: &[u8]| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
        let message_len = len24(&hs[1..4]);
        let (fragment_offset, fragment_len) = (len24(&hs[6..9]), len24(&hs[9..12]));
        if fragment_offset != 0
            || fragment_len != message_len
            || HANDSHAKE_HEADER + message_len != record_len
        {
            return None;
        }
        let body = RECORD_HEADER + HANDSHAKE_HEADER;
        // client_version (2), random (32), session_id <0..32>, cookie <0..255>.
        let sid_len = usize::from(*d.get(body + 34)?);
        let cookie_at = body + 35 + sid_len;
        let cookie_len = usize::from(*d.get(cookie_at)?);
        d.get(cookie_at + 1..cookie_at + 1 + cookie_len)?;
        Some(ClientHello {
            cookie_at,
            cookie_len,
            record_len,
            message_len,
        })
    }

    /// The client random (32 bytes).
    pub fn random<'a>(&self, d: &'a [u8]) -> &'a [u8] {
        let body = RECORD_HEADER + HANDSHAKE_HEADER;
        &d[body + 2..body + 34]
    }

    /// The cookie the client returned (empty in a first ClientHello).
    pub fn cookie<'a>(&self, d: &'a [u8]) -> &'a [u8] {
        &d[self.cookie_at + 1..self.cookie_at + 1 + self.cookie_len]
    }

    /// The HelloVerifyRequest asking for `cookie` (RFC 6347 §4.2.1: the record sequence
    /// number of the ClientHello, message_seq 0, server_version DTLS 1.2).
    pub fn hello_verify_request(&self, d: &[u8], cookie: &[u8; COOKIE_LEN]) -> Bytes {
        let body_len = 2 + 1 + COOKIE_LEN;
        let mut b = BytesMut::with_capacity(RECORD_HEADER + HANDSHAKE_HEADER + body_len);
        b.put_u8(22);
        b.put_slice(&[0xfe, 0xfd]);
        b.put_slice(&d[3..11]); // epoch 0 and the ClientHello's record sequence number
        b.put_u16((HANDSHAKE_HEADER + body_len) as u16);
        b.put_u8(3); // hello_verify_request
        b.put_slice(&(body_len as u32).to_be_bytes()[1..]);
        b.put_u16(0); // message_seq
        b.put_slice(&[0, 0, 0]);
        b.put_slice(&(body_len as u32).to_be_bytes()[1..]);
        b.put_slice(&[0xfe, 0xfd]);
        b.put_u8(COOKIE_LEN as u8);
        b.put_slice(cookie);
        b.freeze()
    }

    /// The same ClientHello as a first one: message_seq 0, no cookie, and a record
    /// sequence number one lower (else the link's replay window would take the real one,
    /// fed next, for a repeat).
    pub fn as_first(&self, d: &[u8]) -> Bytes {
        let record_len = self.record_len - self.cookie_len;
        let message_len = self.message_len - self.cookie_len;
        let mut seq = [0u8; 8];
        seq[2..].copy_from_slice(&d[5..11]);
        let earlier = u64::from_be_bytes(seq).saturating_sub(1).to_be_bytes();
        let mut b = BytesMut::with_capacity(d.len() - self.cookie_len);
        b.put_slice(&d[..5]);
        b.put_slice(&earlier[2..]);
        b.put_u16(record_len as u16);
        b.put_u8(1);
        b.put_slice(&(message_len as u32).to_be_bytes()[1..]);
        b.put_u16(0);
        b.put_slice(&[0, 0, 0]);
        b.put_slice(&(message_len as u32).to_be_bytes()[1..]);
        b.put_slice(&d[RECORD_HEADER + HANDSHAKE_HEADER..self.cookie_at]);
        b.put_u8(0);
        b.put_slice(&d[self.cookie_at + 1 + self.cookie_len..]);
        b.freeze()
    }
}

/// Makes and checks cookies with a secret of the node's.
pub struct CookieJar {
    key: hmac::Key,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieJar(..)")
    }
}

impl CookieJar {
    pub fn new(secret: &[u8; 32]) -> Self {
        CookieJar {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The cookie for a client at `remote` talking to our `local` with this random.
    pub fn cookie(&self, local: SocketAddr, remote: SocketAddr, random: &[u8]) -> [u8; COOKIE_LEN] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(local.to_string().as_bytes());
        ctx.update(b"|");
        ctx.update(remote.to_string().as_bytes());
        ctx.update(b"|");
        ctx.update(random);
        let tag = ctx.sign();
        let mut c = [0u8; COOKIE_LEN];
        c.copy_from_slice(&tag.as_ref()[..COOKIE_LEN]);
        c
    }

    /// Whether `cookie` is the one for this client (constant time).
    pub fn verify(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        random: &[u8],
        cookie: &[u8],
    ) -> bool {
        let want = self.cookie(local, remote, random);
        cookie.len() == COOKIE_LEN
            && aws_lc_rs::constant_time::verify_slices_are_equal(&want, cookie).is_ok()
    }
}

/// rtc-dtls's crypto provider with a random source that yields `cookie` for the first
/// draw of its length (the server's cookie, drawn once per handshake) and real randomness
/// otherwise.
pub(crate) struct CookieProvider {
    inner: std::sync::Arc<dyn RTCCryptoProvider>,
    random: CookieRandom,
}

pub(crate) struct CookieRandom {
    inner: std::sync::Arc<dyn RTCCryptoProvider>,
    cookie: Mutex<Option<[u8; COOKIE_LEN]>>,
}

impl CookieProvider {
    pub(crate) fn new(
        inner: std::sync::Arc<dyn RTCCryptoProvider>,
        cookie: [u8; COOKIE_LEN],
    ) -> Self {
        CookieProvider {
            random: CookieRandom {
                inner: inner.clone(),
                cookie: Mutex::new(Some(cookie)),
            },
            inner,
        }
    }
}

impl RTCRandom for CookieRandom {
    fn fill(&self, output: &mut [u8]) -> Result<(), CryptoError> {
        if output.len() == COOKIE_LEN {
            let mut slot = self.cookie.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = slot.take() {
                output.copy_from_slice(&c);
                return Ok(());
            }
        }
        self.inner.random().fill(output)
    }
}

impl RTCCryptoProvider for CookieProvider {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn crypto(&self) -> &dyn RTCCrypto {
        self.inner.crypto()
    }

    fn random(&self) -> &dyn RTCRandom {
        &self.random
    }
}
