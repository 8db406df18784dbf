//! Peer authentication of a link, shared by TLS and DTLS: the certificate chains to the
//! overlay's root (or is an acceptable self-signed identity, §11.3.1) per
//! [`TrustPolicy::verify`], and carries the Node-ID expected from the Attach exchange
//! (§6.5.1.11 L4155, §6.5.1.13 L4171: "The nodes MUST verify that the certificate presented in
//! the handshake matches the identity of the other peer as found in the Attach message").

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use reload_wire::NodeId;

use crate::identity::{IdentityError, ReloadCertificate, TrustPolicy, node_ids_hex};

/// Why a peer's certificate was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// The peer presented no certificate (a client, to a server that requires one).
    NoCertificate,
    /// The certificate itself: unknown CA, expired, not yet valid, bad-node, malformed,
    /// self-signed where not permitted, …
    Certificate(IdentityError),
    /// The certificate is valid but does not carry the Node-ID the Attach named.
    WrongNodeId {
        expected: NodeId,
        found: Vec<NodeId>,
    },
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::NoCertificate => write!(f, "the peer presented no certificate"),
            AuthError::Certificate(e) => write!(f, "{e}"),
            AuthError::WrongNodeId { expected, found } => write!(
                f,
                "the peer's certificate is for Node-ID(s) {}, not {expected} from the Attach (RFC 6940 §6.5.1.13)",
                node_ids_hex(found)
            ),
        }
    }
}

impl std::error::Error for AuthError {}

pub(crate) type Verdict = Result<Arc<ReloadCertificate>, AuthError>;

/// The check one link runs on its peer's certificate, and where the outcome is kept so the
/// link can report the precise reason (TLS libraries only carry an alert code).
///
/// It also holds the link's wall-clock time, set by the link from the `now` of each call
/// (the (D)TLS libraries read it through their time hooks): certificate validity is judged
/// at the time the core was given, never by reading the system clock.
#[derive(Clone, Debug)]
pub(crate) struct PeerCheck {
    trust: Arc<TrustPolicy>,
    expected: Option<NodeId>,
    slot: Arc<Mutex<Option<Verdict>>>,
    /// The intermediates the peer sent with the certificate that passed.
    chain: Arc<Mutex<Vec<Bytes>>>,
    wall: Arc<Mutex<SystemTime>>,
}

impl PeerCheck {
    pub(crate) fn new(trust: Arc<TrustPolicy>, expected: Option<NodeId>, wall: SystemTime) -> Self {
        PeerCheck {
            trust,
            expected,
            slot: Arc::new(Mutex::new(None)),
            chain: Arc::new(Mutex::new(Vec::new())),
            wall: Arc::new(Mutex::new(wall)),
        }
    }

    /// The wall-clock time certificates are checked at.
    pub(crate) fn wall(&self) -> SystemTime {
        *self.wall.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_wall(&self, t: SystemTime) {
        *self.wall.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// Checks `end_entity` (with `intermediates`) at wall-clock `now` and records the outcome.
    pub(crate) fn check(
        &self,
        end_entity: &[u8],
        intermediates: &[Bytes],
        now: SystemTime,
    ) -> Verdict {
        let v = self.evaluate(end_entity, intermediates, now);
        if v.is_ok() {
            *self.chain.lock().unwrap_or_else(|e| e.into_inner()) = intermediates.to_vec();
        }
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(v.clone());
        v
    }

    /// The intermediates that came with the certificate that passed.
    pub(crate) fn chain(&self) -> Vec<Bytes> {
        self.chain.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records a refusal found elsewhere (e.g. no certificate at all).
    pub(crate) fn refuse(&self, e: AuthError) {
        let mut s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*s, Some(Err(_))) {
            *s = Some(Err(e));
        }
    }

    fn evaluate(&self, end_entity: &[u8], intermediates: &[Bytes], now: SystemTime) -> Verdict {
        let cert =
            ReloadCertificate::parse(Bytes::copy_from_slice(end_entity), self.trust.node_id_len)
                .map_err(AuthError::Certificate)?;
        self.trust
            .verify(&cert, intermediates, now)
            .map_err(AuthError::Certificate)?;
        if let Some(expected) = self.expected
            && !cert.has_node_id(&expected)
        {
            return Err(AuthError::WrongNodeId {
                expected,
                found: cert.node_ids.clone(),
            });
        }
        Ok(Arc::new(cert))
    }

    /// The recorded outcome, if the check ran.
    pub(crate) fn verdict(&self) -> Option<Verdict> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The recorded refusal, if any.
    pub(crate) fn refusal(&self) -> Option<AuthError> {
        match self.verdict() {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }
}
