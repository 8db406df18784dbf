//! DTLS-UDP-SR-NO-ICE (RFC 6940 §6.6.6): DTLS 1.2 (RFC 6347) with the sans-IO `rtc-dtls`
//! crate, Simple Reliability on top.
//!
//! Authentication as on TLS links: the Attach sender is the DTLS server and requires a client
//! certificate (`RequireAnyClientCert`); the chain, validity, bad-node and expected Node-ID
//! are checked by our own callback (`verify_peer_certificate`) with
//! [`TrustPolicy::verify`](crate::identity::TrustPolicy::verify), rtc-dtls' WebPKI name check
//! being off (`insecure_skip_verify` on the client; no `client_cas` on the server: RELOAD
//! certificates have no DNS names). rtc-dtls itself verifies the handshake signatures
//! (ServerKeyExchange, CertificateVerify) against the presented certificate before it calls
//! the callback, so the peer proves possession of the key.
//!
//! One rtc-dtls `Endpoint` per link with a fixed placeholder peer address: the shell owns the
//! socket and the real addresses. Datagrams that do not even parse as DTLS records are
//! discarded before rtc-dtls sees them (RFC 6347 §4.1.2.7: invalid records are silently
//! discarded) and counted; authenticated records that are not frames fail the link.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pki_types::CertificateDer;
use rtc_dtls::config::{
    ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig,
    VerifyPeerCertificateFn,
};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::crypto_provider::providers::AwsLcRsProvider;
use rtc_dtls::crypto_provider::{RTCCryptoProvider, SignatureScheme};
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_shared::TransportProtocol;
use rtc_shared::error::Error as DtlsError;

use super::auth::{AuthError, PeerCheck};
use super::{LinkContext, LinkError, SessionEvent};
use crate::sign::{Credentials, SigningKey};

/// The largest DTLS record plaintext (RFC 6347 §4.1 via RFC 5246 §6.2.1: 2^14).
pub const MAX_RECORD_PLAINTEXT: usize = 1 << 14;
/// The largest RELOAD message one DTLS record can carry in a data frame; larger messages
/// must be fragmented by the sender (§6.7).
pub const MAX_DTLS_MESSAGE: usize =
    MAX_RECORD_PLAINTEXT - reload_wire::framing::DATA_FRAME_OVERHEAD;

const RECORD_HEADER: usize = 13;
/// Records of a later epoch accepted while the handshake runs. rtc-dtls queues them until
/// its keys are ready, without a bound; a genuine peer sends a handful (its Finished and
/// retransmissions of it).
const MAX_EARLY_RECORDS: usize = 64;
const LOCAL: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(192, 0, 2, 1),
    1,
));
const REMOTE: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(192, 0, 2, 2),
    1,
));

/// Our key and certificate for rtc-dtls, loaded once.
#[derive(Clone)]
pub(crate) struct DtlsCredentials {
    provider: Arc<dyn RTCCryptoProvider>,
    cert: Certificate,
}

impl fmt::Debug for DtlsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DtlsCredentials")
    }
}

impl DtlsCredentials {
    pub(crate) fn new(creds: &Credentials, intermediates: &[Bytes]) -> Result<Self, LinkError> {
        let provider: Arc<dyn RTCCryptoProvider> = Arc::new(AwsLcRsProvider::new());
        let scheme = match creds.key {
            SigningKey::Rsa(_) => SignatureScheme::RsaPkcs1Sha256,
            SigningKey::Ecdsa(_) => SignatureScheme::EcdsaP256Sha256,
        };
        let pkcs8 = creds
            .key
            .to_pkcs8()
            .map_err(|e| LinkError::Config(e.to_string()))?;
        let key = provider
            .crypto()
            .import_signing_key(scheme, &pkcs8)
            .map_err(|e| LinkError::Config(format!("DTLS key: {e}")))?;
        let chain: Vec<CertificateDer<'static>> = std::iter::once(creds.cert.der())
            .chain(intermediates.iter())
            .map(|c| CertificateDer::from(c.to_vec()))
            .collect();
        Ok(DtlsCredentials {
            provider,
            cert: Certificate::from_signing_key(chain, key),
        })
    }
}

fn handshake_config(
    ctx: &LinkContext,
    check: &PeerCheck,
    is_client: bool,
    cookie: Option<[u8; super::cookie::COOKIE_LEN]>,
) -> Result<Arc<HandshakeConfig>, LinkError> {
    let check = check.clone();
    let verify: VerifyPeerCertificateFn = Arc::new(
        move |certs: &[Vec<u8>], _chains: &[CertificateDer<'static>]| {
            let Some((ee, rest)) = certs.split_first() else {
                check.refuse(AuthError::NoCertificate);
                return Err(DtlsError::ErrClientCertificateRequired);
            };
            let inter: Vec<Bytes> = rest.iter().map(|c| Bytes::copy_from_slice(c)).collect();
            check
                .check(ee, &inter, check.wall())
                .map(|_| ())
                .map_err(|e| DtlsError::Other(e.to_string()))
        },
    );
    // A server whose ClientHello's cookie the endpoint verified expects that same cookie
    // (see `link::cookie`).
    let provider: Arc<dyn RTCCryptoProvider> = match cookie {
        Some(c) => Arc::new(super::cookie::CookieProvider::new(
            ctx.dtls.provider.clone(),
            c,
        )),
        None => ctx.dtls.provider.clone(),
    };
    let mut b = ConfigBuilder::default()
        .with_crypto_provider(provider)
        .with_certificates(vec![ctx.dtls.cert.clone()])
        .with_extended_master_secret(ExtendedMasterSecretType::Require)
        .with_verify_peer_certificate(Some(verify))
        .with_mtu(ctx.config.dtls_mtu)
        .with_flight_interval(ctx.config.dtls_flight_interval)
        // rtc-dtls always sends SNI from a client; there is no host name in RELOAD, the
        // overlay name is the closest thing (§11.1 overlay instance name).
        .with_server_name(ctx.trust.overlay.clone());
    if is_client {
        // No WebPKI host name check: our callback checks the chain (RELOAD certificates
        // carry no DNS names).
        b = b.with_insecure_skip_verify(true);
    } else {
        // §6.5.1.13 L4169: the server MUST request client authentication — and we require
        // it; the chain is checked by our callback.
        b = b.with_client_auth(ClientAuthType::RequireAnyClientCert);
    }
    b.build(is_client, None)
        .map(Arc::new)
        .map_err(|e| LinkError::Config(format!("DTLS configuration: {e}")))
}

/// Whether a datagram is a sequence of well-formed DTLS records (content type 20–23,
/// version 0xFExx, non-empty body within the datagram).
fn well_formed(d: &[u8]) -> bool {
    let mut off = 0;
    if d.is_empty() {
        return false;
    }
    while off < d.len() {
        let Some(h) = d.get(off..off + RECORD_HEADER) else {
            return false;
        };
        if !(20..=23).contains(&h[0]) || h[1] != 0xfe {
            return false;
        }
        let len = usize::from(u16::from_be_bytes([h[11], h[12]]));
        if len == 0 {
            return false;
        }
        off += RECORD_HEADER + len;
        if off > d.len() {
            return false;
        }
    }
    true
}

/// Whether a datagram starts a new DTLS handshake: its first record is an epoch-0
/// handshake record holding a ClientHello (RFC 6347 §4.1, §4.2.2). Retransmitted later
/// flights of a running handshake never start with one once the server answered. For a
/// transport that tells associations apart by address (one UDP socket).
pub fn is_client_hello(d: &[u8]) -> bool {
    d.len() > RECORD_HEADER && d[0] == 22 && first_record_epoch_zero(d) && d[RECORD_HEADER] == 1
}

/// Whether a datagram's first DTLS record is of epoch 0 (handshake in the clear).
pub fn first_record_epoch_zero(d: &[u8]) -> bool {
    d.len() > RECORD_HEADER && d[1] == 0xfe && d[3] == 0 && d[4] == 0
}

/// Records of an epoch above 0 in a well-formed datagram.
fn later_epoch_records(d: &[u8]) -> usize {
    let (mut off, mut n) = (0, 0);
    while let Some(h) = d.get(off..off + RECORD_HEADER) {
        if h[3] != 0 || h[4] != 0 {
            n += 1;
        }
        off += RECORD_HEADER + usize::from(u16::from_be_bytes([h[11], h[12]]));
    }
    n
}

/// The description of a plaintext (epoch 0, handshake-time) fatal alert in a datagram.
fn plaintext_fatal_alert(d: &[u8]) -> Option<u8> {
    let mut off = 0;
    while let Some(h) = d.get(off..off + RECORD_HEADER) {
        let len = usize::from(u16::from_be_bytes([h[11], h[12]]));
        if h[0] == 21 && len == 2 {
            let body = d.get(off + RECORD_HEADER..off + RECORD_HEADER + 2)?;
            if body[0] == 2 {
                return Some(body[1]);
            }
        }
        off += RECORD_HEADER + len;
    }
    None
}

/// TLS alert names (RFC 5246 §7.2, RFC 8446 §6).
fn alert_name(d: u8) -> String {
    match d {
        0 => "CloseNotify",
        10 => "UnexpectedMessage",
        20 => "BadRecordMac",
        40 => "HandshakeFailure",
        41 => "NoCertificate",
        42 => "BadCertificate",
        43 => "UnsupportedCertificate",
        44 => "CertificateRevoked",
        45 => "CertificateExpired",
        46 => "CertificateUnknown",
        47 => "IllegalParameter",
        48 => "UnknownCA",
        49 => "AccessDenied",
        50 => "DecodeError",
        51 => "DecryptError",
        70 => "ProtocolVersion",
        71 => "InsufficientSecurity",
        80 => "InternalError",
        116 => "CertificateRequired",
        other => return format!("alert {other}"),
    }
    .to_string()
}

/// One DTLS association carrying frames.
pub(crate) struct DtlsSession {
    endpoint: Endpoint,
    check: PeerCheck,
    /// Where the session's secret goes once the handshake completes (debugging only).
    key_log: Option<super::KeyLogSink>,
    handshaking: bool,
    closed: bool,
    early_records: usize,
    /// Datagrams discarded before rtc-dtls: no DTLS records, or too many early ones.
    pub(crate) discarded: u64,
}

impl fmt::Debug for DtlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsSession")
            .field("handshaking", &self.handshaking)
            .field("closed", &self.closed)
            .field("discarded", &self.discarded)
            .finish()
    }
}

impl DtlsSession {
    /// The Attach sender's side: waits for the ClientHello (whose cookie, when given, the
    /// endpoint verified already).
    pub(crate) fn server(
        ctx: &LinkContext,
        check: PeerCheck,
        cookie: Option<[u8; super::cookie::COOKIE_LEN]>,
    ) -> Result<Self, LinkError> {
        let cfg = handshake_config(ctx, &check, false, cookie)?;
        Ok(DtlsSession {
            endpoint: Endpoint::new(LOCAL, TransportProtocol::UDP, Some(cfg)),
            check,
            key_log: ctx.config.key_log.clone(),
            handshaking: true,
            closed: false,
            early_records: 0,
            discarded: 0,
        })
    }

    /// The Attach receiver's side: sends the ClientHello.
    pub(crate) fn client(
        ctx: &LinkContext,
        check: PeerCheck,
        now: Instant,
    ) -> Result<Self, LinkError> {
        let cfg = handshake_config(ctx, &check, true, None)?;
        let mut endpoint = Endpoint::new(LOCAL, TransportProtocol::UDP, None);
        endpoint
            .connect(now, REMOTE, cfg, None)
            .map_err(|e| LinkError::Protocol(e.to_string()))?;
        Ok(DtlsSession {
            endpoint,
            check,
            key_log: ctx.config.key_log.clone(),
            handshaking: true,
            closed: false,
            early_records: 0,
            discarded: 0,
        })
    }

    fn map_error(&self, e: DtlsError, datagram: &[u8]) -> LinkError {
        if let Some(refusal) = self.check.refusal() {
            return LinkError::PeerAuth(refusal);
        }
        if matches!(e, DtlsError::ErrClientCertificateRequired) {
            self.check.refuse(AuthError::NoCertificate);
            return LinkError::PeerAuth(AuthError::NoCertificate);
        }
        if let Some(a) = plaintext_fatal_alert(datagram) {
            return LinkError::PeerAlert(alert_name(a));
        }
        if matches!(e, DtlsError::ErrAlertFatalOrClose) {
            return LinkError::PeerAlert("fatal alert".into());
        }
        LinkError::Protocol(e.to_string())
    }

    /// One datagram from the UDP socket.
    pub(crate) fn handle_input(
        &mut self,
        now: Instant,
        datagram: &[u8],
        out: &mut Vec<SessionEvent>,
    ) -> Result<(), LinkError> {
        if self.closed {
            return Ok(());
        }
        if !well_formed(datagram) {
            self.discarded += 1;
            return Ok(());
        }
        if self.handshaking {
            let early = later_epoch_records(datagram);
            if self.early_records + early > MAX_EARLY_RECORDS {
                self.discarded += 1;
                return Ok(());
            }
            self.early_records += early;
        }
        let events = match self
            .endpoint
            .read(now, REMOTE, None, BytesMut::from(datagram))
        {
            Ok(ev) => ev,
            Err(e) => return Err(self.map_error(e, datagram)),
        };
        for ev in events {
            match ev {
                EndpointEvent::HandshakeComplete => {
                    self.handshaking = false;
                    self.write_key_log();
                    out.push(SessionEvent::HandshakeComplete);
                }
                EndpointEvent::ApplicationData(d) => out.push(SessionEvent::Data(d.freeze())),
                EndpointEvent::PeerClosed => {
                    self.closed = true;
                    out.push(SessionEvent::PeerClosed);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// One framed message: one DTLS record.
    pub(crate) fn write_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), LinkError> {
        if self.closed {
            return Err(LinkError::Closed);
        }
        self.endpoint
            .write(now, REMOTE, frame)
            .map_err(|e| LinkError::Protocol(e.to_string()))
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        self.endpoint.poll_transmit().map(|t| t.message.freeze())
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.endpoint.poll_timeout(&REMOTE)
    }

    /// Handshake flight retransmission.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), LinkError> {
        if self.closed || self.endpoint.poll_timeout(&REMOTE).is_none() {
            return Ok(());
        }
        self.endpoint.handle_timeout(REMOTE, now).map_err(|e| {
            if self.handshaking {
                LinkError::HandshakeTimeout
            } else {
                LinkError::Protocol(e.to_string())
            }
        })
    }

    /// Sends close_notify (once).
    pub(crate) fn close(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.closed = true;
        let _ = self.endpoint.stop(now, REMOTE);
    }

    /// NSS key log line `CLIENT_RANDOM <client random> <master secret>` (DTLS 1.2), when
    /// asked for. rtc-dtls has no key log hook; its state export (for resuming a
    /// connection) carries both randoms and the master secret.
    fn write_key_log(&self) {
        let Some(sink) = &self.key_log else {
            return;
        };
        let Some(state) = self.endpoint.get_connection_state(REMOTE) else {
            return;
        };
        match state
            .marshal_binary()
            .map_err(|e| e.to_string())
            .and_then(|b| {
                exported_secret(&b).ok_or_else(|| "unexpected state export layout".to_string())
            }) {
            Ok((client_random, master_secret)) => sink.write_line(&super::keylog::NssKeyLog::line(
                "CLIENT_RANDOM",
                &client_random,
                &master_secret,
            )),
            Err(e) => tracing::warn!("DTLS key log not written: {e}"),
        }
    }

    /// The negotiated cipher suite, for logs.
    pub(crate) fn describe(&self) -> Option<String> {
        let st = self.endpoint.get_connection_state(REMOTE)?;
        st.cipher_suite().map(|c| format!("DTLSv1.2 {}", c.id()))
    }

    /// The peer's end-entity certificate as the DTLS layer saw it.
    pub(crate) fn peer_end_entity(&self) -> Option<Bytes> {
        let st = self.endpoint.get_connection_state(REMOTE)?;
        st.peer_certificates
            .first()
            .map(|c| Bytes::copy_from_slice(c))
    }
}

/// The layout of rtc-dtls 0.21's `SerializedState` (its `State::marshal_binary`, an rkyv
/// archive): field for field, so that the archive can be read back here. Checked by
/// `link.rs::dtls_key_log_decrypts_in_tshark` — a change in rtc-dtls shows there.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct ExportedState {
    local_epoch: u16,
    remote_epoch: u16,
    local_random: [u8; 32],
    remote_random: [u8; 32],
    cipher_suite_id: u16,
    master_secret: Vec<u8>,
    sequence_number: u64,
    srtp_protection_profile: u16,
    peer_certificates: Vec<Vec<u8>>,
    identity_hint: Vec<u8>,
    is_client: bool,
}

/// (client random, master secret) from a state export.
fn exported_secret(bytes: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(bytes);
    let st = rkyv::access::<ArchivedExportedState, rkyv::rancor::Error>(&aligned).ok()?;
    if st.master_secret.len() != 48 {
        return None;
    }
    let client = if st.is_client {
        &st.local_random
    } else {
        &st.remote_random
    };
    Some((client.to_vec(), st.master_secret.to_vec()))
}
