//! Who a node is and who the others are: overlay hash (RFC 6940 §6.3.2), Resource-IDs
//! (§10.2), `reload:` URIs (§14.15), certificates with their Node-IDs and user name
//! (§11.3), self-signed identities (§11.3.1), revocation by `bad-node` (§11.1), and the
//! files that hold a node's key and certificate.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pki_types::{CertificateDer, UnixTime};
use reload_wire::{Destination, NodeId, ResourceId};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use x509_parser::extensions::{GeneralName, ParsedExtension};

/// Name of the mandatory topology plug-in (RFC 6940 §10).
pub const CHORD_RELOAD: &str = "CHORD-RELOAD";

/// Why an identity was refused. Every variant names the reason an operator needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityError {
    /// The DER does not parse as an X.509 certificate.
    Malformed(String),
    /// The chain does not lead to any root-cert of the overlay.
    UnknownCa,
    Expired,
    NotYetValid,
    /// Any other chain failure (bad signature, CA used as end entity, key usage, …).
    Chain(String),
    /// The certificate carries no `reload:` URI.
    NoNodeId,
    /// The Node-ID a message or link claims is not in the certificate.
    NodeIdNotInCertificate(NodeId),
    /// A `reload:` URI names another overlay.
    WrongOverlay {
        found: String,
        expected: String,
    },
    /// A self-signed certificate where the configuration does not permit them (§11.3.1).
    SelfSignedNotPermitted,
    /// A self-signed certificate whose Node-ID is not the digest of its key (§11.3.1).
    SelfSignedNodeIdMismatch(NodeId),
    /// A Node-ID listed as `bad-node` in the configuration (§11.1).
    BadNode(NodeId),
    /// A `reload:` URI that does not follow §14.15.
    BadUri(String),
    /// The topology plug-in cannot work with this Node-ID length (§10.2).
    UnsupportedNodeIdLength {
        topology: String,
        length: usize,
    },
    /// An IO failure reading or writing credentials.
    Io(String),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::Malformed(e) => write!(f, "not an X.509 certificate: {e}"),
            IdentityError::UnknownCa => write!(
                f,
                "certificate does not chain to a root-cert of this overlay"
            ),
            IdentityError::Expired => write!(f, "certificate has expired"),
            IdentityError::NotYetValid => write!(f, "certificate is not valid yet"),
            IdentityError::Chain(e) => write!(f, "certificate chain rejected: {e}"),
            IdentityError::NoNodeId => {
                write!(f, "certificate carries no reload: URI with a Node-ID")
            }
            IdentityError::NodeIdNotInCertificate(n) => {
                write!(f, "Node-ID {n} is not in the certificate")
            }
            IdentityError::WrongOverlay { found, expected } => {
                write!(f, "certificate is for overlay {found:?}, not {expected:?}")
            }
            IdentityError::SelfSignedNotPermitted => {
                write!(
                    f,
                    "self-signed certificate, and the configuration does not permit them (RFC 6940 §11.3.1)"
                )
            }
            IdentityError::SelfSignedNodeIdMismatch(n) => {
                write!(
                    f,
                    "self-signed Node-ID {n} is not the digest of the certificate's public key (RFC 6940 §11.3.1)"
                )
            }
            IdentityError::BadNode(n) => write!(
                f,
                "Node-ID {n} is revoked by a bad-node entry of the configuration"
            ),
            IdentityError::BadUri(e) => write!(f, "malformed reload: URI: {e}"),
            IdentityError::UnsupportedNodeIdLength { topology, length } => write!(
                f,
                "{topology} uses 16-byte Node-IDs (RFC 6940 §10.2); node-id-length {length} is not supported"
            ),
            IdentityError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for IdentityError {}

/// The forwarding header's `overlay` field: the low-order 32 bits of SHA-1 of the overlay
/// name (RFC 6940 §6.3.2).
pub fn overlay_hash(overlay_name: &str) -> u32 {
    let d = Sha1::digest(overlay_name.as_bytes());
    u32::from_be_bytes([d[16], d[17], d[18], d[19]])
}

/// CHORD-RELOAD's hash: SHA-1 truncated to its most significant 128 bits (RFC 6940 §10.2).
pub fn chord_hash(data: &[u8]) -> [u8; 16] {
    let d = Sha1::digest(data);
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// Resource-ID of a resource name under CHORD-RELOAD (RFC 6940 §10.2).
pub fn chord_resource_id(resource_name: &[u8]) -> ResourceId {
    ResourceId::new(Bytes::copy_from_slice(&chord_hash(resource_name)))
}

/// Resource-ID of a resource name for the overlay's topology plug-in and Node-ID length.
/// CHORD-RELOAD is defined for 16-byte IDs only; anything else is refused clearly.
pub fn resource_id_for(
    topology: &str,
    node_id_length: usize,
    resource_name: &[u8],
) -> Result<ResourceId, IdentityError> {
    check_topology(topology, node_id_length)?;
    Ok(chord_resource_id(resource_name))
}

/// Refuses a topology plug-in / Node-ID length pair this implementation cannot run.
pub fn check_topology(topology: &str, node_id_length: usize) -> Result<(), IdentityError> {
    if topology != CHORD_RELOAD || node_id_length != 16 {
        return Err(IdentityError::UnsupportedNodeIdLength {
            topology: topology.to_string(),
            length: node_id_length,
        });
    }
    Ok(())
}

/// The `reload:` URI of a Node-ID in the RFC 6940 §14.15 form: a hex-encoded Destination
/// list holding one `node` entry (`0110` + 32 hex digits for 16 bytes).
pub fn node_id_uri(node_id: &NodeId, overlay: &str) -> String {
    format!(
        "reload://{:02x}{:02x}{}@{}/",
        1,
        node_id.len(),
        node_id.to_hex(),
        overlay
    )
}

/// A parsed `reload:` URI (RFC 6940 §14.15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadUri {
    pub destinations: Vec<Destination>,
    pub overlay: String,
    /// Hex-decoded StoredDataSpecifier, if the URI addresses a data value.
    pub specifier: Option<Bytes>,
}

impl ReloadUri {
    /// The Node-ID of a URI that names exactly one peer.
    pub fn node_id(&self) -> Option<NodeId> {
        match self.destinations.as_slice() {
            [Destination::Node(n)] => Some(*n),
            _ => None,
        }
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

/// Parses a `reload:` URI. Besides the RFC form (a hex Destination list) it accepts a bare
/// hex Node-ID of the overlay's length, which another implementation emits.
pub fn parse_reload_uri(uri: &str, node_id_len: usize) -> Result<ReloadUri, IdentityError> {
    let bad = |why: &str| IdentityError::BadUri(format!("{why}: {uri:?}"));
    let rest = uri
        .strip_prefix("reload://")
        .ok_or_else(|| bad("does not start with reload://"))?;
    let (dest, rest) = rest
        .split_once('@')
        .ok_or_else(|| bad("no @ before the overlay name"))?;
    let (overlay, spec) = rest
        .split_once('/')
        .ok_or_else(|| bad("no / after the overlay name"))?;
    if overlay.is_empty() {
        return Err(bad("empty overlay name"));
    }
    let raw = unhex(dest).ok_or_else(|| bad("destination is not hex"))?;
    let destinations = if raw.len() == node_id_len {
        // The bare form: just the Node-ID.
        vec![Destination::Node(
            NodeId::from_slice(&raw).ok_or_else(|| bad("bad Node-ID length"))?,
        )]
    } else {
        let opts = reload_wire::DecodeOptions::new(node_id_len, usize::MAX)
            .map_err(|e| bad(&e.to_string()))?;
        let buf = Bytes::from(raw);
        reload_wire::codec::decode_all(&buf, &opts, |cx, mut i| {
            let mut out = Vec::new();
            while !i.is_empty() {
                let (r, d) = <Destination as reload_wire::Wire>::decode_from(cx, i)?;
                out.push(d);
                i = r;
            }
            Ok((i, out))
        })
        .map_err(|e| bad(&format!("destination list: {e}")))?
    };
    if destinations.is_empty() {
        return Err(bad("empty destination list"));
    }
    let specifier = if spec.is_empty() {
        None
    } else {
        Some(Bytes::from(
            unhex(spec).ok_or_else(|| bad("specifier is not hex"))?,
        ))
    };
    Ok(ReloadUri {
        destinations,
        overlay: overlay.to_string(),
        specifier,
    })
}

/// Public key algorithms this implementation signs and verifies with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// rsaEncryption.
    Rsa,
    /// id-ecPublicKey on P-256.
    EcdsaP256,
    /// Anything else (refused for signatures).
    Other,
}

/// Digest for self-signed Node-IDs (RFC 6940 §11.3.1; both MUST be supported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfSignedDigest {
    Sha1,
    Sha256,
}

/// Node-ID number `index` (1-based) of a self-signed certificate with `count` Node-IDs:
/// the high-order bits of digest(SPKI), or of digest(index ‖ SPKI) when there are several
/// (RFC 6940 §11.3.1).
pub fn self_signed_node_id(
    digest: SelfSignedDigest,
    spki_der: &[u8],
    index: u32,
    count: u32,
    len: usize,
) -> Option<NodeId> {
    let mut input = Vec::with_capacity(4 + spki_der.len());
    if count > 1 {
        input.extend_from_slice(&index.to_be_bytes());
    }
    input.extend_from_slice(spki_der);
    let d: Vec<u8> = match digest {
        SelfSignedDigest::Sha1 => Sha1::digest(&input).to_vec(),
        SelfSignedDigest::Sha256 => Sha256::digest(&input).to_vec(),
    };
    NodeId::from_slice(d.get(..len)?)
}

/// What a certificate says about its holder (RFC 6940 §11.3).
#[derive(Clone, Debug)]
pub struct ReloadCertificate {
    der: Bytes,
    /// SHA-256 of `der`, computed once (the signature checks key their caches by it).
    sha256: [u8; 32],
    /// Node-IDs from the `reload:` URIs of the subjectAltName, in order.
    pub node_ids: Vec<NodeId>,
    /// Overlay names of those URIs.
    pub overlays: Vec<String>,
    /// The rfc822Name user name (`user@overlay`), also the user's SIP AOR.
    pub user_name: Option<String>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// DER SubjectPublicKeyInfo.
    pub spki: Bytes,
    /// The subjectPublicKey bit string (what the signature primitives take).
    pub public_key: Bytes,
    pub key_kind: KeyKind,
    /// Key size in bits (RSA modulus or EC field size), when known.
    pub key_bits: Option<usize>,
    pub is_ca: bool,
    /// Issuer and subject are the same name.
    pub self_issued: bool,
    /// subjectAltName entries this profile does not allow (§11.3: nothing but the URIs
    /// and one rfc822Name), as text, for reports.
    pub unexpected_names: Vec<String>,
}

const OID_EC_P256: &str = "1.2.840.10045.3.1.7";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";

impl ReloadCertificate {
    /// Parses a DER certificate for an overlay with `node_id_len`-byte Node-IDs.
    pub fn parse(der: impl Into<Bytes>, node_id_len: usize) -> Result<Self, IdentityError> {
        let der = der.into();
        let (rest, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| IdentityError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(IdentityError::Malformed(format!(
                "{} bytes after the certificate",
                rest.len()
            )));
        }
        let mut node_ids = Vec::new();
        let mut overlays = Vec::new();
        let mut user_name = None;
        let mut unexpected_names = Vec::new();
        let mut is_ca = false;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::URI(u) if u.starts_with("reload:") => {
                                let uri = parse_reload_uri(u, node_id_len)?;
                                let id = uri.node_id().ok_or_else(|| {
                                    IdentityError::BadUri(format!(
                                        "{u:?} does not name a single node"
                                    ))
                                })?;
                                node_ids.push(id);
                                overlays.push(uri.overlay);
                            }
                            GeneralName::RFC822Name(n) if user_name.is_none() => {
                                user_name = Some(n.to_string())
                            }
                            other => unexpected_names.push(format!("{other:?}")),
                        }
                    }
                }
                ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
                _ => {}
            }
        }
        let spki_info = cert.public_key();
        let key_kind = key_kind(spki_info);
        let key_bits = key_bits(spki_info);
        let spki = Bytes::copy_from_slice(spki_info.raw);
        let public_key = Bytes::copy_from_slice(&spki_info.subject_public_key.data);
        let self_issued = cert.issuer().as_raw() == cert.subject().as_raw();
        let validity = cert.validity();
        let (not_before, not_after) = (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        );
        Ok(ReloadCertificate {
            node_ids,
            overlays,
            user_name,
            not_before,
            not_after,
            spki,
            public_key,
            key_kind,
            key_bits,
            is_ca,
            self_issued,
            unexpected_names,
            sha256: crate::sign::sha256(&der),
            der,
        })
    }

    /// The DER bytes.
    pub fn der(&self) -> &Bytes {
        &self.der
    }

    /// SHA-256 of the DER bytes.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// Whether `id` is one of this certificate's Node-IDs.
    pub fn has_node_id(&self, id: &NodeId) -> bool {
        self.node_ids.contains(id)
    }
}

/// The root of trust of one overlay: its root-certs, revoked Node-IDs, name and
/// self-signed policy, as the configuration gives them (RFC 6940 §11.1, §11.3).
#[derive(Clone, Debug)]
pub struct TrustPolicy {
    pub overlay: String,
    pub node_id_len: usize,
    pub roots: Vec<Bytes>,
    pub bad_nodes: Vec<NodeId>,
    pub self_signed: Option<SelfSignedDigest>,
}

fn unix_time(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(t.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn map_webpki(e: webpki::Error) -> IdentityError {
    match e {
        // An issuer whose name matches a root but whose key does not is no root of ours.
        webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
            IdentityError::UnknownCa
        }
        webpki::Error::CertExpired { .. } => IdentityError::Expired,
        webpki::Error::CertNotValidYet { .. } => IdentityError::NotYetValid,
        other => IdentityError::Chain(format!("{other:?}")),
    }
}

impl TrustPolicy {
    /// Checks a certificate completely: it chains to a root-cert (including
    /// BasicConstraints, via webpki) or is an acceptable self-signed identity; it is
    /// within its validity period; it carries Node-IDs for this overlay only; none of them
    /// is revoked. `intermediates` are other certificates that may complete the chain.
    pub fn verify(
        &self,
        cert: &ReloadCertificate,
        intermediates: &[Bytes],
        now: SystemTime,
    ) -> Result<(), IdentityError> {
        if cert.node_ids.is_empty() {
            return Err(IdentityError::NoNodeId);
        }
        if let Some(o) = cert.overlays.iter().find(|o| **o != self.overlay) {
            return Err(IdentityError::WrongOverlay {
                found: o.clone(),
                expected: self.overlay.clone(),
            });
        }
        if let Some(bad) = cert.node_ids.iter().find(|n| self.bad_nodes.contains(n)) {
            return Err(IdentityError::BadNode(*bad));
        }
        let ee_der = CertificateDer::from(cert.der.as_ref());
        let ee = webpki::EndEntityCert::try_from(&ee_der).map_err(map_webpki)?;
        let inter: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_ref()))
            .collect();
        let roots: Vec<CertificateDer<'_>> = self
            .roots
            .iter()
            .map(|c| CertificateDer::from(c.as_ref()))
            .collect();
        let anchors: Vec<_> = roots
            .iter()
            .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
            .collect();
        let chained = ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &inter,
            unix_time(now),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        );
        match chained {
            Ok(_) => Ok(()),
            Err(webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey)
                if cert.self_issued =>
            {
                self.verify_self_signed(cert, &ee_der, now)
            }
            Err(e) => Err(map_webpki(e)),
        }
    }

    fn verify_self_signed(
        &self,
        cert: &ReloadCertificate,
        der: &CertificateDer<'_>,
        now: SystemTime,
    ) -> Result<(), IdentityError> {
        let digest = self
            .self_signed
            .ok_or(IdentityError::SelfSignedNotPermitted)?;
        // The certificate must verify under its own key.
        let anchor = webpki::anchor_from_trusted_cert(der).map_err(map_webpki)?;
        let ee = webpki::EndEntityCert::try_from(der).map_err(map_webpki)?;
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &[],
            unix_time(now),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(map_webpki)?;
        let count = cert.node_ids.len() as u32;
        for (i, id) in cert.node_ids.iter().enumerate() {
            let expected =
                self_signed_node_id(digest, &cert.spki, i as u32 + 1, count, self.node_id_len);
            if expected.as_ref() != Some(id) {
                return Err(IdentityError::SelfSignedNodeIdMismatch(*id));
            }
        }
        Ok(())
    }
}

/// PEM armour of DER bytes (RFC 7468) with the given label.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// The DER inside the first PEM block with `label`, or `None`.
pub fn from_pem(label: &str, pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// Hex of a Node-ID list, for logs.
pub fn node_ids_hex(ids: &[NodeId]) -> String {
    ids.iter()
        .map(|n| hex::encode(n.as_bytes()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The signature key type of a SubjectPublicKeyInfo.
fn key_kind(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> KeyKind {
    match spki.algorithm.algorithm.to_id_string().as_str() {
        OID_RSA => KeyKind::Rsa,
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            if curve.as_deref() == Some(OID_EC_P256) {
                KeyKind::EcdsaP256
            } else {
                KeyKind::Other
            }
        }
        _ => KeyKind::Other,
    }
}

/// Size in bits of a public key (RSA modulus, EC field), if it can be told.
fn key_bits(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Option<usize> {
    match spki.parsed().ok()? {
        x509_parser::public_key::PublicKey::RSA(k) => Some(k.key_size()),
        x509_parser::public_key::PublicKey::EC(p) => Some(p.key_size()),
        _ => None,
    }
}

/// A PKCS#10 certificate request (as the enrollment POST of RFC 6940 §11.3 carries),
/// parsed and with its self-signature verified.
#[derive(Clone, Debug)]
pub struct CertRequest {
    /// DER SubjectPublicKeyInfo of the requested key.
    pub spki: Bytes,
    pub key_kind: KeyKind,
    /// Key size in bits (RSA modulus or EC field size), when known.
    pub key_bits: Option<usize>,
    /// rfc822Name entries of a requested subjectAltName.
    pub requested_user_names: Vec<String>,
    /// Other requested subjectAltName entries, as text.
    pub other_requested_names: Vec<String>,
}

impl CertRequest {
    /// Parses DER and verifies that the request is signed by the key it carries.
    pub fn parse(der: &[u8]) -> Result<Self, IdentityError> {
        use x509_parser::prelude::FromDer as _;
        let (rest, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der)
                .map_err(|e| IdentityError::Malformed(format!("not a PKCS#10 request: {e}")))?;
        if !rest.is_empty() {
            return Err(IdentityError::Malformed(format!(
                "{} bytes after the request",
                rest.len()
            )));
        }
        csr.verify_signature().map_err(|e| {
            IdentityError::Chain(format!("request self-signature does not verify: {e}"))
        })?;
        let info = &csr.certification_request_info;
        let spki = &info.subject_pki;
        let key_kind = key_kind(spki);
        let mut requested_user_names = Vec::new();
        let mut other_requested_names = Vec::new();
        if let Some(exts) = csr.requested_extensions() {
            for ext in exts {
                if let ParsedExtension::SubjectAlternativeName(san) = ext {
                    for name in &san.general_names {
                        match name {
                            GeneralName::RFC822Name(n) => requested_user_names.push(n.to_string()),
                            other => other_requested_names.push(format!("{other:?}")),
                        }
                    }
                }
            }
        }
        Ok(CertRequest {
            spki: Bytes::copy_from_slice(spki.raw),
            key_kind,
            key_bits: key_bits(spki),
            requested_user_names,
            other_requested_names,
        })
    }
}
