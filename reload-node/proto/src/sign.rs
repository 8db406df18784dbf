//! Signatures: of messages (RFC 6940 §6.3.4), of stored data (§7.1) and of configuration
//! documents and kind blocks (§11.1), with the signing keys, the signer identities and the
//! certificate cache that resolves them.
//!
//! Algorithms: RSASSA-PKCS1-v1_5 with SHA-256 (mandatory, §6.3.4) and ECDSA P-256 with
//! SHA-256. Anything else is refused with [`SignError::UnsupportedAlgorithm`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use bytes::{BufMut, Bytes, BytesMut};
use reload_wire::security::{HashAlgorithm, SignatureAndHashAlgorithm};
use reload_wire::storage::{KindId, StoredData, StoredDataValue};
use reload_wire::{
    GenericCertificate, Message, NodeId, ResourceId, SecurityBlock, Signature, SignerIdentity, Wire,
};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::identity::{IdentityError, KeyKind, ReloadCertificate, TrustPolicy};

/// Why signing or verification failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignError {
    /// Algorithm pair not supported, or not matching the signer's key type.
    UnsupportedAlgorithm(SignatureAndHashAlgorithm),
    /// The signature does not verify.
    BadSignature,
    /// No certificate for the signer identity (neither in the message nor cached).
    UnknownSigner,
    /// Identity `none` (only allowed on synthesized Fetch values, §7.4.2.2) or unknown type.
    UnacceptableIdentity(&'static str),
    /// The signer's certificate was refused.
    Identity(IdentityError),
    /// The signer is not among those allowed to sign this (configuration-signer,
    /// kind-signer, the Node-ID a request claims …).
    SignerNotAllowed(NodeId),
    /// A key could not be generated, parsed or used.
    Key(String),
    /// The data to sign does not encode.
    Encode(String),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::UnsupportedAlgorithm(a) => write!(
                f,
                "unsupported signature algorithm {}/{} (rsa/sha256 and ecdsa/sha256 are supported)",
                a.signature, a.hash
            ),
            SignError::BadSignature => write!(f, "signature does not verify"),
            SignError::UnknownSigner => write!(f, "no certificate for the signer identity"),
            SignError::UnacceptableIdentity(why) => {
                write!(f, "unacceptable signer identity: {why}")
            }
            SignError::Identity(e) => write!(f, "signer certificate refused: {e}"),
            SignError::SignerNotAllowed(n) => write!(f, "signer {n} is not allowed to sign this"),
            SignError::Key(e) => write!(f, "key error: {e}"),
            SignError::Encode(e) => write!(f, "cannot encode signature input: {e}"),
        }
    }
}

impl std::error::Error for SignError {}

impl From<IdentityError> for SignError {
    fn from(e: IdentityError) -> Self {
        SignError::Identity(e)
    }
}

/// Key types a node can generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rsa2048,
    EcdsaP256,
}

/// A private key that signs RELOAD objects.
pub enum SigningKey {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningKey::Rsa(k) => write!(f, "SigningKey::Rsa({} bits)", k.public_modulus_len() * 8),
            SigningKey::Ecdsa(_) => write!(f, "SigningKey::EcdsaP256"),
        }
    }
}

impl SigningKey {
    pub fn generate(alg: KeyAlgorithm) -> Result<Self, SignError> {
        match alg {
            KeyAlgorithm::Rsa2048 => RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map(SigningKey::Rsa)
                .map_err(|e| SignError::Key(e.to_string())),
            KeyAlgorithm::EcdsaP256 => {
                let doc = EcdsaKeyPair::generate_pkcs8(
                    &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|e| SignError::Key(e.to_string()))?;
                Self::from_pkcs8(doc.as_ref())
            }
        }
    }

    /// Reads a PKCS#8 private key (RSA or ECDSA P-256).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, SignError> {
        if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            return Ok(SigningKey::Rsa(k));
        }
        EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, der)
            .map(SigningKey::Ecdsa)
            .map_err(|e| SignError::Key(format!("not an RSA or ECDSA P-256 PKCS#8 key: {e}")))
    }

    /// The PKCS#8 DER of this key.
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, SignError> {
        match self {
            SigningKey::Rsa(k) => k
                .as_der()
                .map(|d| d.as_ref().to_vec())
                .map_err(|e| SignError::Key(e.to_string())),
            SigningKey::Ecdsa(k) => k
                .to_pkcs8v1()
                .map(|d| d.as_ref().to_vec())
                .map_err(|e| SignError::Key(e.to_string())),
        }
    }

    /// The public key as the subjectPublicKey bit string contents.
    pub fn public_key(&self) -> Vec<u8> {
        match self {
            SigningKey::Rsa(k) => k.public_key().as_ref().to_vec(),
            SigningKey::Ecdsa(k) => k.public_key().as_ref().to_vec(),
        }
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> SignatureAndHashAlgorithm {
        match self {
            SigningKey::Rsa(_) => SignatureAndHashAlgorithm::RSA_SHA256,
            SigningKey::Ecdsa(_) => SignatureAndHashAlgorithm::ECDSA_SHA256,
        }
    }

    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = SystemRandom::new();
        match self {
            SigningKey::Rsa(k) => {
                let mut out = vec![0u8; k.public_modulus_len()];
                k.sign(&sig::RSA_PKCS1_SHA256, &rng, data, &mut out)
                    .map_err(|e| SignError::Key(e.to_string()))?;
                Ok(out)
            }
            SigningKey::Ecdsa(k) => k
                .sign(&rng, data)
                .map(|s| s.as_ref().to_vec())
                .map_err(|e| SignError::Key(e.to_string())),
        }
    }
}

/// Verifies `signature` over `data` with the certificate's key and the announced algorithm.
pub fn verify_with_certificate(
    alg: SignatureAndHashAlgorithm,
    cert: &ReloadCertificate,
    data: &[u8],
    signature: &[u8],
) -> Result<(), SignError> {
    let algorithm: &dyn sig::VerificationAlgorithm = match (alg, cert.key_kind) {
        (SignatureAndHashAlgorithm::RSA_SHA256, KeyKind::Rsa) => &sig::RSA_PKCS1_2048_8192_SHA256,
        (SignatureAndHashAlgorithm::ECDSA_SHA256, KeyKind::EcdsaP256) => {
            &sig::ECDSA_P256_SHA256_ASN1
        }
        _ => return Err(SignError::UnsupportedAlgorithm(alg)),
    };
    sig::UnparsedPublicKey::new(algorithm, cert.public_key.as_ref())
        .verify(data, signature)
        .map_err(|_| SignError::BadSignature)
}

/// The signer identity for `cert` signing as `node_id` (RFC 6940 §6.3.4): `cert_hash`
/// for a certificate with one Node-ID, `cert_hash_node_id` = H(Node-ID ‖ cert) otherwise;
/// SHA-256 either way.
pub fn signer_identity(cert: &ReloadCertificate, node_id: &NodeId) -> SignerIdentity {
    if cert.node_ids.len() <= 1 {
        SignerIdentity::CertHash {
            hash_alg: HashAlgorithm::SHA256,
            certificate_hash: Bytes::copy_from_slice(cert.sha256()),
        }
    } else {
        SignerIdentity::CertHashNodeId {
            hash_alg: HashAlgorithm::SHA256,
            certificate_node_id_hash: Bytes::copy_from_slice(&cert_node_hash(
                HashAlgorithm::SHA256,
                node_id,
                cert.der(),
            )),
        }
    }
}

fn hash(alg: HashAlgorithm, parts: &[&[u8]]) -> Option<Vec<u8>> {
    match alg {
        HashAlgorithm::SHA256 => {
            let mut h = Sha256::new();
            parts.iter().for_each(|p| h.update(p));
            Some(h.finalize().to_vec())
        }
        HashAlgorithm::SHA1 => {
            let mut h = Sha1::new();
            parts.iter().for_each(|p| h.update(p));
            Some(h.finalize().to_vec())
        }
        _ => None,
    }
}

fn cert_node_hash(alg: HashAlgorithm, node_id: &NodeId, der: &[u8]) -> Vec<u8> {
    hash(alg, &[node_id.as_bytes(), der]).unwrap_or_default()
}

/// SHA-256 of `data` (aws-lc: the CPU's SHA instructions where it has them; the hot path
/// hashes a certificate per signature checked).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A node's own credentials: key, certificate, and the Node-ID it signs as.
#[derive(Debug)]
pub struct Credentials {
    pub key: SigningKey,
    pub cert: Arc<ReloadCertificate>,
    pub node_id: NodeId,
    /// Our signer identity (§6.3.4), computed once.
    identity: SignerIdentity,
}

impl Credentials {
    /// Credentials for `node_id`, which must be in the certificate, whose key must be this
    /// key.
    pub fn new(
        key: SigningKey,
        cert: ReloadCertificate,
        node_id: NodeId,
    ) -> Result<Self, SignError> {
        if !cert.has_node_id(&node_id) {
            return Err(IdentityError::NodeIdNotInCertificate(node_id).into());
        }
        if key.public_key() != cert.public_key.as_ref() {
            return Err(SignError::Key(
                "the private key does not belong to the certificate".into(),
            ));
        }
        let identity = signer_identity(&cert, &node_id);
        Ok(Credentials {
            key,
            cert: Arc::new(cert),
            node_id,
            identity,
        })
    }

    pub fn identity(&self) -> SignerIdentity {
        self.identity.clone()
    }

    /// The key (PKCS#8) and certificate as PEM texts, as a data directory stores them.
    pub fn to_pem(&self) -> Result<(String, String), SignError> {
        let key = crate::identity::to_pem("PRIVATE KEY", &self.key.to_pkcs8()?);
        let cert = crate::identity::to_pem("CERTIFICATE", self.cert.der());
        Ok((key, cert))
    }

    /// Credentials from a PEM private key (PKCS#8) and PEM certificate. Signs as `node_id`,
    /// or as the certificate's first Node-ID.
    pub fn from_pem(
        key_pem: &str,
        cert_pem: &str,
        node_id_len: usize,
        node_id: Option<NodeId>,
    ) -> Result<Self, SignError> {
        let key_der = crate::identity::from_pem("PRIVATE KEY", key_pem)
            .ok_or_else(|| SignError::Key("no PRIVATE KEY PEM block".into()))?;
        let cert_der = crate::identity::from_pem("CERTIFICATE", cert_pem)
            .ok_or_else(|| SignError::Key("no CERTIFICATE PEM block".into()))?;
        let cert = ReloadCertificate::parse(cert_der, node_id_len)?;
        let id = match node_id {
            Some(id) => id,
            None => *cert.node_ids.first().ok_or(IdentityError::NoNodeId)?,
        };
        Credentials::new(SigningKey::from_pkcs8(&key_der)?, cert, id)
    }

    /// A signature over `data ‖ SignerIdentity`, the shape every RELOAD signature input has.
    pub fn sign_with_identity(&self, data: &[u8]) -> Result<Signature, SignError> {
        let identity = self.identity();
        let mut input = BytesMut::with_capacity(data.len() + identity.encoded_len());
        input.put_slice(data);
        identity
            .encode(&mut input)
            .map_err(|e| SignError::Encode(e.to_string()))?;
        Ok(Signature {
            algorithm: self.key.algorithm(),
            signature_value: Bytes::from(self.key.sign(&input)?),
            identity,
        })
    }

    /// Signs a message (RFC 6940 §6.3.4): sets the security block to our certificate plus
    /// `extra_certificates` (those needed to verify data inside it) and the signature over
    /// `overlay ‖ transaction_id ‖ MessageContents ‖ SignerIdentity`.
    pub fn sign_message(
        &self,
        msg: &mut Message,
        extra_certificates: Vec<GenericCertificate>,
    ) -> Result<(), SignError> {
        let identity = self.identity();
        let input = reload_wire::message::signature_input(
            msg.header.overlay,
            msg.header.transaction_id,
            &msg.contents,
            &identity,
        )
        .map_err(|e| SignError::Encode(e.to_string()))?;
        let mut certificates = vec![GenericCertificate::x509(self.cert.der().clone())];
        certificates.extend(
            extra_certificates
                .into_iter()
                .filter(|c| c.certificate != *self.cert.der()),
        );
        msg.security = SecurityBlock {
            certificates,
            signature: Signature {
                algorithm: self.key.algorithm(),
                signature_value: Bytes::from(self.key.sign(&input)?),
                identity,
            },
        };
        Ok(())
    }

    /// Signs a value to be stored (RFC 6940 §7.1), replacing `data.signature`.
    pub fn sign_stored_data(
        &self,
        resource: &ResourceId,
        kind: KindId,
        data: &mut StoredData,
    ) -> Result<(), SignError> {
        let identity = self.identity();
        let input = stored_data_signature_input(resource, kind, data, &identity)?;
        data.signature = Signature {
            algorithm: self.key.algorithm(),
            signature_value: Bytes::from(self.key.sign(&input)?),
            identity,
        };
        Ok(())
    }
}

/// The stored-data signature input of RFC 6940 §7.1:
/// `resource_id ‖ kind ‖ storage_time ‖ StoredDataValue ‖ SignerIdentity`, with the
/// Resource-ID as raw bytes (no length prefix, like the Node-ID in §6.3.4) and an array
/// entry's index set to zero (§7.4.2.2, so that appends verify).
pub fn stored_data_signature_input(
    resource: &ResourceId,
    kind: KindId,
    data: &StoredData,
    identity: &SignerIdentity,
) -> Result<Bytes, SignError> {
    let value = match &data.value {
        StoredDataValue::Array(e) => {
            let mut e = e.clone();
            e.index = 0;
            StoredDataValue::Array(e)
        }
        v => v.clone(),
    };
    let mut b = BytesMut::with_capacity(
        resource.as_bytes().len() + 12 + value.encoded_len() + identity.encoded_len(),
    );
    b.put_slice(resource.as_bytes());
    b.put_u32(kind.0);
    b.put_u64(data.storage_time);
    value
        .encode(&mut b)
        .map_err(|e| SignError::Encode(e.to_string()))?;
    identity
        .encode(&mut b)
        .map_err(|e| SignError::Encode(e.to_string()))?;
    Ok(b.freeze())
}

/// Certificates in a message's security block that are looked at, at most: more are
/// ignored (a signer's certificate and a few intermediates fit).
pub const MAX_CERTS_PER_MESSAGE: usize = 8;

/// Certificates of a message looked at to verify the stored values it carries (a Fetch
/// answer holds those of every signer whose values it returns), at most.
pub const MAX_CERTS_FOR_VALUES: usize = 64;

/// Node-IDs in one certificate, at most: a certificate with more is not used (each costs
/// a hash per identity lookup index; enrollment servers issue a handful).
pub const MAX_NODE_IDS_PER_CERT: usize = 64;

/// The hash algorithms signer identities may use (§6.3.4); both are indexed.
const IDENTITY_HASHES: [HashAlgorithm; 2] = [HashAlgorithm::SHA256, HashAlgorithm::SHA1];

/// A signer identity's hash, as looked up: algorithm, with or without a Node-ID, value.
type IdentityKey = (u8, bool, Vec<u8>);

/// Certificates of signers whose signatures verified, bounded in size, indexed by every
/// identity hash that may name them (cert_hash, and cert_hash_node_id for each of their
/// Node-IDs, under SHA-256 and SHA-1), so that resolving an identity is one lookup. A
/// certificate enters only once a signature made with it verified: junk certificates in
/// security blocks cost their parsing, never cache space.
#[derive(Debug)]
pub struct CertCache {
    node_id_len: usize,
    capacity: usize,
    by_hash: HashMap<[u8; 32], Arc<ReloadCertificate>>,
    order: VecDeque<[u8; 32]>,
    identities: HashMap<IdentityKey, ([u8; 32], Option<NodeId>)>,
}

/// The identity keys of one certificate: (key, the Node-ID it designates, if any).
fn identity_keys(cert: &ReloadCertificate) -> Vec<(IdentityKey, Option<NodeId>)> {
    let mut keys = Vec::new();
    for alg in IDENTITY_HASHES {
        if let Some(h) = hash(alg, &[cert.der()]) {
            keys.push(((alg.0, false, h), None));
        }
        for id in cert.node_ids.iter().take(MAX_NODE_IDS_PER_CERT) {
            keys.push((
                (alg.0, true, cert_node_hash(alg, id, cert.der())),
                Some(*id),
            ));
        }
    }
    keys
}

/// What a signer identity asks for.
fn identity_key(identity: &SignerIdentity) -> Result<IdentityKey, SignError> {
    match identity {
        SignerIdentity::CertHash {
            hash_alg,
            certificate_hash,
        } => Ok((hash_alg.0, false, certificate_hash.to_vec())),
        SignerIdentity::CertHashNodeId {
            hash_alg,
            certificate_node_id_hash,
        } => Ok((hash_alg.0, true, certificate_node_id_hash.to_vec())),
        SignerIdentity::None => Err(SignError::UnacceptableIdentity("identity none")),
        SignerIdentity::Unknown { .. } => {
            Err(SignError::UnacceptableIdentity("unknown identity type"))
        }
    }
}

/// The certificate and Node-ID an identity key found, or why not.
fn designated(
    cert: Arc<ReloadCertificate>,
    node_id: Option<NodeId>,
) -> Result<(Arc<ReloadCertificate>, NodeId), SignError> {
    match (node_id, cert.node_ids.as_slice()) {
        (Some(id), _) => Ok((cert, id)),
        (None, [id]) => {
            let id = *id;
            Ok((cert, id))
        }
        (None, []) => Err(IdentityError::NoNodeId.into()),
        (None, _) => Err(SignError::UnacceptableIdentity(
            "cert_hash used with a certificate holding several Node-IDs (§6.3.4 requires cert_hash_node_id)",
        )),
    }
}

impl CertCache {
    pub fn new(node_id_len: usize, capacity: usize) -> Self {
        CertCache {
            node_id_len,
            capacity: capacity.max(1),
            by_hash: HashMap::new(),
            order: VecDeque::new(),
            identities: HashMap::new(),
        }
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Most certificates kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Parses a certificate (one with more than [`MAX_NODE_IDS_PER_CERT`] Node-IDs is
    /// refused).
    pub fn parse(&self, der: &Bytes) -> Result<Arc<ReloadCertificate>, IdentityError> {
        let cert = ReloadCertificate::parse(der.clone(), self.node_id_len)?;
        if cert.node_ids.len() > MAX_NODE_IDS_PER_CERT {
            return Err(IdentityError::Malformed(format!(
                "{} Node-IDs in one certificate (at most {MAX_NODE_IDS_PER_CERT})",
                cert.node_ids.len()
            )));
        }
        Ok(Arc::new(cert))
    }

    /// Parses and remembers a certificate (whose signature the caller verified); evicts
    /// the oldest when full.
    pub fn insert(&mut self, der: &Bytes) -> Result<Arc<ReloadCertificate>, IdentityError> {
        let key = sha256(der);
        if let Some(c) = self.by_hash.get(&key) {
            return Ok(c.clone());
        }
        let cert = self.parse(der)?;
        self.insert_parsed(key, cert.clone());
        Ok(cert)
    }

    fn insert_parsed(&mut self, key: [u8; 32], cert: Arc<ReloadCertificate>) {
        if self.by_hash.contains_key(&key) {
            return;
        }
        while self.by_hash.len() >= self.capacity {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(c) = self.by_hash.remove(&old) {
                for (k, _) in identity_keys(&c) {
                    if self.identities.get(&k).is_some_and(|(o, _)| *o == old) {
                        self.identities.remove(&k);
                    }
                }
            }
        }
        for (k, id) in identity_keys(&cert) {
            self.identities.insert(k, (key, id));
        }
        self.by_hash.insert(key, cert);
        self.order.push_back(key);
    }

    /// The certificate and Node-ID a signer identity designates, among the cached
    /// certificates and then `candidates` (those of the message at hand).
    pub fn resolve(
        &self,
        identity: &SignerIdentity,
        candidates: &[Arc<ReloadCertificate>],
    ) -> Result<(Arc<ReloadCertificate>, NodeId), SignError> {
        let want = identity_key(identity)?;
        if !IDENTITY_HASHES.iter().any(|a| a.0 == want.0) {
            return Err(SignError::UnacceptableIdentity(
                "unsupported identity hash algorithm",
            ));
        }
        if let Some((key, id)) = self.identities.get(&want)
            && let Some(cert) = self.by_hash.get(key)
        {
            return designated(cert.clone(), *id);
        }
        for cert in candidates {
            for (k, id) in identity_keys(cert) {
                if k == want {
                    return designated(cert.clone(), id);
                }
            }
        }
        Err(SignError::UnknownSigner)
    }
}

/// Who signed something, once verified.
#[derive(Clone, Debug)]
pub struct VerifiedSigner {
    pub node_id: NodeId,
    pub cert: Arc<ReloadCertificate>,
}

/// Verifies signatures against an overlay's trust policy, caching certificates.
#[derive(Debug)]
pub struct Verifier {
    trust: Arc<TrustPolicy>,
    pub cache: CertCache,
    /// Certificates whose chain passed the trust policy, by SHA-256 of their DER, with the
    /// Unix time until which that verdict is reused (at most [`CHAIN_VERDICT_TTL`], never
    /// past the certificate's notAfter).
    verified: HashMap<[u8; 32], i64>,
}

/// How long a passed chain check is reused before it is done again.
pub const CHAIN_VERDICT_TTL: std::time::Duration = std::time::Duration::from_secs(300);

impl Verifier {
    /// A verifier whose certificate cache holds at most `cache_capacity` certificates.
    pub fn new(trust: impl Into<Arc<TrustPolicy>>, cache_capacity: usize) -> Self {
        let trust = trust.into();
        let cache = CertCache::new(trust.node_id_len, cache_capacity);
        Verifier {
            trust,
            cache,
            verified: HashMap::new(),
        }
    }

    /// The X.509 certificates of a security block (at most [`MAX_CERTS_PER_MESSAGE`]): the
    /// DERs, as intermediates for chain checks.
    fn carried(certs: &[GenericCertificate]) -> Vec<Bytes> {
        certs
            .iter()
            .filter(|c| c.certificate_type == reload_wire::security::CertificateType::X509)
            .take(MAX_CERTS_PER_MESSAGE)
            .map(|c| c.certificate.clone())
            .collect()
    }

    fn check_signed(
        &mut self,
        signature: &Signature,
        data_without_identity: &[u8],
        intermediates: &[Bytes],
        now: SystemTime,
    ) -> Result<VerifiedSigner, SignError> {
        let mut parsed = None;
        self.check_signed_with(
            signature,
            data_without_identity,
            intermediates,
            &mut parsed,
            now,
        )
    }

    /// [`Verifier::check_signed`], with the carried certificates parsed at most once across
    /// calls that share `parsed`.
    fn check_signed_with(
        &mut self,
        signature: &Signature,
        data_without_identity: &[u8],
        intermediates: &[Bytes],
        parsed: &mut Option<Vec<Arc<ReloadCertificate>>>,
        now: SystemTime,
    ) -> Result<VerifiedSigner, SignError> {
        // The cache first; only on a miss are the message's certificates parsed (bounded).
        let (cert, node_id) = match self.cache.resolve(&signature.identity, &[]) {
            Ok(found) => found,
            Err(SignError::UnknownSigner) => {
                let cache = &self.cache;
                let candidates = parsed.get_or_insert_with(|| {
                    intermediates
                        .iter()
                        .filter_map(|der| cache.parse(der).ok())
                        .collect()
                });
                self.cache.resolve(&signature.identity, candidates)?
            }
            Err(e) => return Err(e),
        };
        // The certificate's hash keys both the chain verdict and the cache.
        let key = *cert.sha256();
        self.check_chain_keyed(&cert, key, intermediates, now)?;
        let mut input =
            BytesMut::with_capacity(data_without_identity.len() + signature.identity.encoded_len());
        input.put_slice(data_without_identity);
        signature
            .identity
            .encode(&mut input)
            .map_err(|e| SignError::Encode(e.to_string()))?;
        verify_with_certificate(
            signature.algorithm,
            &cert,
            &input,
            &signature.signature_value,
        )?;
        // Verified: now its certificate may be cached.
        self.cache.insert_parsed(key, cert.clone());
        Ok(VerifiedSigner { node_id, cert })
    }

    /// The trust policy's verdict on `cert`, reusing a recent pass (chain checks cost more
    /// than the signature itself). Failures are never cached.
    fn check_chain_keyed(
        &mut self,
        cert: &ReloadCertificate,
        key: [u8; 32],
        intermediates: &[Bytes],
        now: SystemTime,
    ) -> Result<(), SignError> {
        let secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if self
            .verified
            .get(&key)
            .is_some_and(|&until| secs < until && secs >= cert.not_before)
        {
            return Ok(());
        }
        self.trust.verify(cert, intermediates, now)?;
        if self.verified.len() >= self.cache.capacity() {
            self.verified.clear();
        }
        self.verified.insert(
            key,
            (secs + CHAIN_VERDICT_TTL.as_secs() as i64).min(cert.not_after),
        );
        Ok(())
    }

    /// The trust policy in force.
    pub fn trust(&self) -> &TrustPolicy {
        &self.trust
    }

    /// Replaces the trust policy (a new configuration: roots, bad-nodes …) and forgets
    /// every cached chain verdict.
    pub fn set_trust(&mut self, trust: impl Into<Arc<TrustPolicy>>) {
        self.trust = trust.into();
        self.verified.clear();
    }

    /// Verifies a message signature (RFC 6940 §6.3.4): the signer's certificate comes from
    /// the security block or the cache, must pass the trust policy, and its key must verify
    /// the signature over `overlay ‖ transaction_id ‖ MessageContents ‖ SignerIdentity`.
    pub fn verify_message(
        &mut self,
        msg: &Message,
        now: SystemTime,
    ) -> Result<VerifiedSigner, SignError> {
        let inter = Self::carried(&msg.security.certificates);
        let mut data = BytesMut::with_capacity(12 + msg.contents.encoded_len());
        data.put_u32(msg.header.overlay);
        data.put_u64(msg.header.transaction_id);
        msg.contents
            .encode(&mut data)
            .map_err(|e| SignError::Encode(e.to_string()))?;
        self.check_signed(&msg.security.signature, &data, &inter, now)
    }

    /// Verifies a stored value's signature (RFC 6940 §7.1). `certificates` are those of the
    /// message that carried it.
    pub fn verify_stored_data(
        &mut self,
        resource: &ResourceId,
        kind: KindId,
        data: &StoredData,
        certificates: &[GenericCertificate],
        now: SystemTime,
    ) -> Result<VerifiedSigner, SignError> {
        let inter = Self::carried(certificates);
        let full = stored_data_signature_input(resource, kind, data, &data.signature.identity)?;
        let ident_len = data.signature.identity.encoded_len();
        self.check_signed(
            &data.signature,
            &full[..full.len() - ident_len],
            &inter,
            now,
        )
    }

    /// Verifies the signatures of values of `kind` stored at `resource` (RFC 6940 §7.1), as
    /// a Store or a Fetch answer carries them: the carried certificates (at most
    /// [`MAX_CERTS_FOR_VALUES`]) are parsed once for all the values. A value with identity
    /// `none` or algorithm `{0,0}` never verifies (§7.4.1.1).
    pub fn verify_stored_values<'a>(
        &mut self,
        resource: &ResourceId,
        kind: KindId,
        values: impl IntoIterator<Item = &'a StoredData>,
        certificates: &[GenericCertificate],
        now: SystemTime,
    ) -> Vec<Result<VerifiedSigner, SignError>> {
        let inter: Vec<Bytes> = certificates
            .iter()
            .filter(|c| c.certificate_type == reload_wire::security::CertificateType::X509)
            .take(MAX_CERTS_FOR_VALUES)
            .map(|c| c.certificate.clone())
            .collect();
        let mut parsed = None;
        values
            .into_iter()
            .map(|data| {
                if data.signature.identity == SignerIdentity::None
                    || data.signature.algorithm
                        == reload_wire::security::SignatureAndHashAlgorithm::NONE
                {
                    return Err(SignError::UnacceptableIdentity(
                        "a stored value signed with identity none or algorithm {0,0}",
                    ));
                }
                let full =
                    stored_data_signature_input(resource, kind, data, &data.signature.identity)?;
                let ident_len = data.signature.identity.encoded_len();
                self.check_signed_with(
                    &data.signature,
                    &full[..full.len() - ident_len],
                    &inter,
                    &mut parsed,
                    now,
                )
            })
            .collect()
    }

    /// Verifies a signature over a configuration document or kind block (RFC 6940 §11.1):
    /// the signed blob followed by the SignerIdentity, made by one of `allowed` signers.
    pub fn verify_blob(
        &mut self,
        blob: &[u8],
        block: &SecurityBlock,
        allowed: &[NodeId],
        now: SystemTime,
    ) -> Result<VerifiedSigner, SignError> {
        let inter = Self::carried(&block.certificates);
        let signer = self.check_signed(&block.signature, blob, &inter, now)?;
        if !allowed.contains(&signer.node_id) {
            return Err(SignError::SignerNotAllowed(signer.node_id));
        }
        Ok(signer)
    }
}

/// Signs a configuration document or kind block (RFC 6940 §11.1): a SecurityBlock carrying
/// the signer's certificate and a signature over `blob ‖ SignerIdentity`.
pub fn sign_blob(creds: &Credentials, blob: &[u8]) -> Result<SecurityBlock, SignError> {
    Ok(SecurityBlock {
        certificates: vec![GenericCertificate::x509(creds.cert.der().clone())],
        signature: creds.sign_with_identity(blob)?,
    })
}
