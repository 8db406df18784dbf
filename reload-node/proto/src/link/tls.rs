//! TLS-TCP-FH-NO-ICE (RFC 6940 §6.6.5): rustls driven sans-IO.
//!
//! - TLS 1.2 and 1.3, the aws-lc-rs provider of the workspace.
//! - The Attach sender is the server and requires a client certificate (§6.5.1.13 L4169).
//! - No DNS names exist in RELOAD certificates: the verifiers below check the chain with
//!   [`TrustPolicy::verify`](crate::identity::TrustPolicy::verify) (overlay root or self-signed
//!   policy, validity, bad-node) and the Node-ID expected from the Attach; the handshake
//!   signatures are checked with rustls' provider helpers (`verify_tls12_signature`,
//!   `verify_tls13_signature`), so possession of the certificate's key is proven.
//! - No SNI (there is no name to send), no session resumption (every link authenticates its
//!   peer afresh), no TLS 1.3 tickets.
//! - Output: every framed message is written as its own TLS record(s) and handed out as its
//!   own transmit chunk, so a shell that writes each chunk separately with `TCP_NODELAY`
//!   produces one frame per TCP segment in captures.

use std::collections::VecDeque;
use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::client::Resumption;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::NoServerSessionStorage;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::time_provider::TimeProvider;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, Connection, DistinguishedName, ServerConfig,
    ServerConnection,
};

use super::auth::{AuthError, PeerCheck};
use super::keylog::NssKeyLog;
use super::{LinkContext, LinkError, SessionEvent};
use crate::identity::IdentityError;
use crate::sign::Credentials;

/// Our key and certificate, loaded once for every TLS link.
#[derive(Clone, Debug)]
pub(crate) struct TlsCredentials {
    provider: Arc<CryptoProvider>,
    key: Arc<CertifiedKey>,
}

impl TlsCredentials {
    pub(crate) fn new(creds: &Credentials, intermediates: &[Bytes]) -> Result<Self, LinkError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let pkcs8 = creds
            .key
            .to_pkcs8()
            .map_err(|e| LinkError::Config(e.to_string()))?;
        let key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)))
            .map_err(|e| LinkError::Config(format!("TLS key: {e}")))?;
        let chain: Vec<CertificateDer<'static>> = std::iter::once(creds.cert.der())
            .chain(intermediates.iter())
            .map(|c| CertificateDer::from(c.to_vec()))
            .collect();
        Ok(TlsCredentials {
            provider,
            key: Arc::new(CertifiedKey::new(chain, key)),
        })
    }
}

/// rustls' clock is the link's wall clock (certificate validity), not the system's.
struct Clock(PeerCheck);

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

impl TimeProvider for Clock {
    fn current_time(&self) -> Option<UnixTime> {
        self.0
            .wall()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(UnixTime::since_unix_epoch)
    }
}

fn system_time(t: UnixTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t.as_secs())
}

/// The alert a refusal sends (RFC 8446 §6.2 via rustls' mapping).
fn certificate_error(e: &AuthError) -> rustls::Error {
    let ce = match e {
        AuthError::NoCertificate => return rustls::Error::NoCertificatesPresented,
        AuthError::Certificate(IdentityError::UnknownCa) => CertificateError::UnknownIssuer,
        AuthError::Certificate(IdentityError::Expired) => CertificateError::Expired,
        AuthError::Certificate(IdentityError::NotYetValid) => CertificateError::NotValidYet,
        AuthError::Certificate(IdentityError::BadNode(_)) => CertificateError::Revoked,
        AuthError::Certificate(IdentityError::Malformed(_)) => CertificateError::BadEncoding,
        AuthError::WrongNodeId { .. } | AuthError::Certificate(_) => {
            CertificateError::ApplicationVerificationFailure
        }
    };
    rustls::Error::InvalidCertificate(ce)
}

/// The three handshake-signature methods that rustls's `ServerCertVerifier` and
/// `ClientCertVerifier` both require, checked with the algorithms at `self.<path>` (the
/// crypto provider's): certificate checks differ between verifiers, signatures do not.
/// Exported for the enrollment client's HTTPS verifier.
#[macro_export]
macro_rules! handshake_signatures_by {
    ($($algs:ident).+) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.$($algs).+)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.$($algs).+)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.$($algs).+.supported_schemes()
        }
    };
}

/// Both verifiers: the chain per the overlay's trust policy, the Node-ID per the Attach.
#[derive(Debug)]
struct ReloadVerifier {
    check: PeerCheck,
    algs: WebPkiSupportedAlgorithms,
}

impl ReloadVerifier {
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let inter: Vec<Bytes> = intermediates
            .iter()
            .map(|c| Bytes::copy_from_slice(c.as_ref()))
            .collect();
        self.check
            .check(end_entity.as_ref(), &inter, system_time(now))
            .map(|_| ())
            .map_err(|e| certificate_error(&e))
    }
}

impl ServerCertVerifier for ReloadVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now)
            .map(|_| ServerCertVerified::assertion())
    }

    handshake_signatures_by!(algs);
}

impl ClientCertVerifier for ReloadVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    /// §6.5.1.13 L4169: "The server MUST request TLS client authentication."
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No CA hints: the client has one certificate.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now)
            .map(|_| ClientCertVerified::assertion())
    }

    handshake_signatures_by!(algs);
}

fn versions(
    ctx: &LinkContext,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, LinkError> {
    let mut v = Vec::new();
    if ctx.config.tls13 {
        v.push(&rustls::version::TLS13);
    }
    if ctx.config.tls12 {
        v.push(&rustls::version::TLS12);
    }
    if v.is_empty() {
        return Err(LinkError::Config("no TLS version enabled".into()));
    }
    Ok(v)
}

fn verifier(ctx: &LinkContext, check: &PeerCheck) -> Arc<ReloadVerifier> {
    Arc::new(ReloadVerifier {
        check: check.clone(),
        algs: ctx.tls.provider.signature_verification_algorithms,
    })
}

fn config_error(e: rustls::Error) -> LinkError {
    LinkError::Config(format!("TLS configuration: {e}"))
}

/// The server side's configuration (an Attach or AppAttach sender): our certificate,
/// a client certificate required and checked by `check` (§6.5.1.13 L4169), no session
/// storage or tickets (every link authenticates its peer afresh).
fn server_config(ctx: &LinkContext, check: &PeerCheck) -> Result<ServerConfig, LinkError> {
    let mut cfg = ServerConfig::builder_with_details(
        ctx.tls.provider.clone(),
        Arc::new(Clock(check.clone())),
    )
    .with_protocol_versions(&versions(ctx)?)
    .map_err(config_error)?
    .with_client_cert_verifier(verifier(ctx, check))
    .with_cert_resolver(Arc::new(SingleCertAndKey::from(ctx.tls.key.clone())));
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    if let Some(sink) = &ctx.config.key_log {
        cfg.key_log = Arc::new(NssKeyLog::new(sink.clone()));
    }
    Ok(cfg)
}

/// The client side's configuration (an Attach or AppAttach answerer): the server's
/// certificate checked by `check`, ours presented, no SNI, no resumption.
fn client_config(ctx: &LinkContext, check: &PeerCheck) -> Result<ClientConfig, LinkError> {
    let mut cfg = ClientConfig::builder_with_details(
        ctx.tls.provider.clone(),
        Arc::new(Clock(check.clone())),
    )
    .with_protocol_versions(&versions(ctx)?)
    .map_err(config_error)?
    .dangerous()
    .with_custom_certificate_verifier(verifier(ctx, check))
    .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(ctx.tls.key.clone())));
    cfg.enable_sni = false;
    cfg.resumption = Resumption::disabled();
    if let Some(sink) = &ctx.config.key_log {
        cfg.key_log = Arc::new(NssKeyLog::new(sink.clone()));
    }
    Ok(cfg)
}

/// TLS for the application flows AppAttach sets up (RFC 6940 §6.5.2): the node's own
/// certificate and key, the overlay's trust policy, mutual authentication — what overlay
/// links use (§6.5.1.13) — and the Node-ID the AppAttach named, which the peer must prove
/// (RFC 7904 §5.1). Configurations for a tokio (or any) TLS stream: the IO is the shell's.
/// As for Attach, the node that sent the AppAttach is the TLS server (§6.5.1.13, by the
/// analogy §6.5.2 draws).
#[derive(Clone, Debug)]
pub struct AppFlowTls {
    ctx: Arc<LinkContext>,
}

impl AppFlowTls {
    pub(crate) fn new(ctx: Arc<LinkContext>) -> Self {
        AppFlowTls { ctx }
    }

    /// The AppAttach sender's side: requires a client certificate that names `expected`
    /// (any valid one when `None`), judged at wall-clock `wall`.
    pub fn server_config(
        &self,
        expected: Option<reload_wire::NodeId>,
        wall: SystemTime,
    ) -> Result<Arc<ServerConfig>, LinkError> {
        let check = PeerCheck::new(self.ctx.trust.clone(), expected, wall);
        server_config(&self.ctx, &check).map(Arc::new)
    }

    /// The AppAttach answerer's side: the server's certificate must name `expected`.
    pub fn client_config(
        &self,
        expected: Option<reload_wire::NodeId>,
        wall: SystemTime,
    ) -> Result<Arc<ClientConfig>, LinkError> {
        let check = PeerCheck::new(self.ctx.trust.clone(), expected, wall);
        client_config(&self.ctx, &check).map(Arc::new)
    }

    /// The server name a client connection is made with: never sent (no SNI; RELOAD
    /// certificates hold no DNS names), rustls' API wants one.
    pub fn server_name() -> ServerName<'static> {
        ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into())
    }

    /// The Node-IDs of a peer's end-entity certificate (as the TLS stream reports it).
    pub fn peer_node_ids(&self, end_entity: &[u8]) -> Vec<reload_wire::NodeId> {
        crate::identity::ReloadCertificate::parse(
            Bytes::copy_from_slice(end_entity),
            self.ctx.trust.node_id_len,
        )
        .map(|c| c.node_ids.clone())
        .unwrap_or_default()
    }
}

/// One TLS connection carrying frames.
pub(crate) struct TlsSession {
    conn: Connection,
    check: PeerCheck,
    transmits: VecDeque<Bytes>,
    pending: usize,
    handshaking: bool,
    /// rustls failed: it queued its alert, nothing more is written.
    broken: bool,
    peer_closed: bool,
    closed: bool,
}

impl fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSession")
            .field("server", &matches!(self.conn, Connection::Server(_)))
            .field("handshaking", &self.handshaking)
            .field("pending", &self.pending)
            .finish()
    }
}

impl TlsSession {
    /// The Attach sender's side.
    pub(crate) fn server(ctx: &LinkContext, check: PeerCheck) -> Result<Self, LinkError> {
        let cfg = server_config(ctx, &check)?;
        let conn = ServerConnection::new(Arc::new(cfg)).map_err(config_error)?;
        Ok(Self::with(Connection::Server(conn), check))
    }

    /// The Attach receiver's side.
    pub(crate) fn client(ctx: &LinkContext, check: PeerCheck) -> Result<Self, LinkError> {
        let cfg = client_config(ctx, &check)?;
        let conn = ClientConnection::new(Arc::new(cfg), AppFlowTls::server_name())
            .map_err(config_error)?;
        let mut s = Self::with(Connection::Client(conn), check);
        s.flush();
        Ok(s)
    }

    fn with(conn: Connection, check: PeerCheck) -> Self {
        TlsSession {
            conn,
            check,
            transmits: VecDeque::new(),
            pending: 0,
            handshaking: true,
            broken: false,
            peer_closed: false,
            closed: false,
        }
    }

    /// Moves everything rustls wants to send into one transmit chunk.
    fn flush(&mut self) {
        let mut chunk = Vec::new();
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if !chunk.is_empty() {
            self.pending += chunk.len();
            self.transmits.push_back(Bytes::from(chunk));
        }
    }

    /// The precise reason for a rustls failure: our verdict if we refused the peer.
    fn map_error(&self, e: rustls::Error) -> LinkError {
        if let Some(refusal) = self.check.refusal() {
            return LinkError::PeerAuth(refusal);
        }
        match e {
            rustls::Error::NoCertificatesPresented => {
                self.check.refuse(AuthError::NoCertificate);
                LinkError::PeerAuth(AuthError::NoCertificate)
            }
            rustls::Error::AlertReceived(a) => LinkError::PeerAlert(format!("{a:?}")),
            other => LinkError::Protocol(other.to_string()),
        }
    }

    /// Bytes from the TCP socket.
    pub(crate) fn handle_input(
        &mut self,
        mut data: &[u8],
        out: &mut Vec<SessionEvent>,
    ) -> Result<(), LinkError> {
        if self.broken || self.peer_closed {
            return Ok(());
        }
        let mut plain = [0u8; 16 * 1024];
        while !data.is_empty() {
            let n = match self.conn.read_tls(&mut data) {
                Ok(n) => n,
                Err(e) => return Err(LinkError::Protocol(e.to_string())),
            };
            let state = match self.conn.process_new_packets() {
                Ok(s) => s,
                Err(e) => {
                    self.broken = true;
                    // rustls queued an alert for the peer.
                    self.flush();
                    return Err(self.map_error(e));
                }
            };
            if self.handshaking && !self.conn.is_handshaking() {
                self.handshaking = false;
                out.push(SessionEvent::HandshakeComplete);
            }
            loop {
                match self.conn.reader().read(&mut plain) {
                    Ok(0) => break,
                    Ok(k) => out.push(SessionEvent::Data(Bytes::copy_from_slice(&plain[..k]))),
                    Err(_) => break,
                }
            }
            self.flush();
            if state.peer_has_closed() {
                self.peer_closed = true;
                if !self.closed {
                    self.closed = true;
                    self.conn.send_close_notify();
                    self.flush();
                }
                out.push(SessionEvent::PeerClosed);
                return Ok(());
            }
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    /// One framed message: its own TLS record(s), its own transmit chunk.
    pub(crate) fn write_frame(&mut self, mut frame: &[u8]) -> Result<(), LinkError> {
        if self.broken || self.closed {
            return Err(LinkError::Closed);
        }
        // Whatever rustls had pending goes out in a chunk of its own.
        self.flush();
        let mut chunk = Vec::with_capacity(frame.len() + 64);
        while !frame.is_empty() {
            let n = self
                .conn
                .writer()
                .write(frame)
                .map_err(|e| LinkError::Protocol(e.to_string()))?;
            while self.conn.wants_write() {
                match self.conn.write_tls(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            if n == 0 {
                return Err(LinkError::Protocol("TLS refused application data".into()));
            }
            frame = &frame[n..];
        }
        if !chunk.is_empty() {
            self.pending += chunk.len();
            self.transmits.push_back(Bytes::from(chunk));
        }
        Ok(())
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        let c = self.transmits.pop_front()?;
        self.pending -= c.len();
        Some(c)
    }

    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Sends close_notify (once).
    pub(crate) fn close(&mut self) {
        if self.closed || self.broken {
            return;
        }
        self.closed = true;
        self.conn.send_close_notify();
        self.flush();
    }

    /// TCP EOF: clean only after the peer's close_notify.
    pub(crate) fn handle_eof(&mut self) -> bool {
        self.peer_closed
    }

    /// The negotiated version and cipher suite, for logs.
    pub(crate) fn describe(&self) -> Option<String> {
        let v = self.conn.protocol_version()?;
        let s = self.conn.negotiated_cipher_suite()?;
        Some(format!("{v:?} {:?}", s.suite()))
    }

    /// The peer's end-entity certificate as the TLS layer saw it.
    pub(crate) fn peer_end_entity(&self) -> Option<Bytes> {
        self.conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Bytes::copy_from_slice(c.as_ref()))
    }
}
