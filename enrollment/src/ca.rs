//! The overlay CA and the certificates it issues.
//!
//! Node certificates follow RFC 6940 §11.3: an empty subject, a subjectAltName holding one
//! `reload:` URI per Node-ID (the §14.15 form: a Destination list with one `node` entry) and
//! exactly one rfc822Name (the user name), nothing else; key usage digitalSignature
//! (+ keyEncipherment for RSA keys), extended key usage serverAuth + clientAuth (nodes are
//! both TLS/DTLS clients and servers, §6.6). They never carry a dNSName, so no node
//! certificate can pass for the HTTPS server, whose certificate (also issued by this CA)
//! carries the overlay name as its only dNSName.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
};
use reload_proto::identity::{CertRequest, KeyKind, ReloadCertificate, node_id_uri};
use reload_wire::NodeId;
use time::{Duration, OffsetDateTime};

use crate::{Error, Result};

/// Key algorithms for the CA, the signers and the HTTPS server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// RSA-2048 with SHA-256 (the algorithm every RELOAD node supports, §6.3.4).
    Rsa2048,
    /// ECDSA P-256 with SHA-256.
    P256,
}

impl KeyType {
    pub fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
            KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }

    pub fn generate(self) -> Result<KeyPair> {
        Ok(KeyPair::generate_for(self.algorithm())?)
    }
}

/// Smallest RSA modulus accepted in a CSR.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted (what RELOAD peers verify, `RSA_PKCS1_2048_8192_SHA256`).
pub const MAX_RSA_BITS: usize = 8192;

/// Clock skew allowance: certificates are valid from this long before issuance.
pub const BACKDATE: Duration = Duration::minutes(5);

/// A random, positive, 16-byte certificate serial number (RFC 5280 §4.1.2.2: at most 20
/// bytes, positive; the top bits are fixed so the DER is always 16 bytes).
pub fn random_serial() -> Result<[u8; 16]> {
    let mut s = [0u8; 16];
    aws_lc_rs::rand::fill(&mut s).map_err(|_| Error::new("the system random generator failed"))?;
    s[0] = (s[0] & 0x3f) | 0x40;
    Ok(s)
}

/// A cryptographically random Node-ID (RFC 6940 §11.3, RFC 4086), never the all-zero or
/// all-one value (§3).
pub fn random_node_id(len: usize) -> Result<NodeId> {
    for _ in 0..16 {
        let mut b = vec![0u8; len];
        aws_lc_rs::rand::fill(&mut b)
            .map_err(|_| Error::new("the system random generator failed"))?;
        if let Some(id) = NodeId::from_slice(&b)
            && !id.is_zero()
            && !id.is_wildcard()
        {
            return Ok(id);
        }
    }
    Err(Error::new("could not draw a valid random Node-ID"))
}

/// The key-size refusal of a CSR, read before its signature is checked (an RSA key below
/// 2048 bits cannot even be verified by the RELOAD signature algorithms, so without this
/// the reason given would be a misleading "signature does not verify").
pub fn weak_key_reason(csr_der: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer as _;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(csr_der).ok()?;
    match csr.certification_request_info.subject_pki.parsed().ok()? {
        x509_parser::public_key::PublicKey::RSA(k) if k.key_size() < MIN_RSA_BITS => Some(format!(
            "RSA key of {} bits is too small: at least {MIN_RSA_BITS} bits are required",
            k.key_size()
        )),
        _ => None,
    }
}

/// The public key of a CSR, handed to rcgen exactly as requested: the certificate's
/// SubjectPublicKeyInfo is the CSR's, byte for byte.
#[derive(Debug)]
pub struct RequestedKey {
    spki: Vec<u8>,
    bits: Vec<u8>,
    alg: &'static SignatureAlgorithm,
    pub kind: KeyKind,
}

impl RequestedKey {
    /// Takes the key of a verified CSR, refusing what RELOAD peers cannot verify: RSA below
    /// 2048 or above 8192 bits, any EC curve but P-256, any other algorithm. The error text
    /// is the reason given with `bad_CSR`.
    pub fn from_request(req: &CertRequest) -> std::result::Result<Self, String> {
        let alg: &'static SignatureAlgorithm = match (req.key_kind, req.key_bits) {
            (KeyKind::Rsa, Some(bits)) if bits < MIN_RSA_BITS => {
                return Err(format!(
                    "RSA key of {bits} bits is too small: at least {MIN_RSA_BITS} bits are required"
                ));
            }
            (KeyKind::Rsa, Some(bits)) if bits > MAX_RSA_BITS => {
                return Err(format!(
                    "RSA key of {bits} bits is too large: at most {MAX_RSA_BITS} bits are supported"
                ));
            }
            (KeyKind::Rsa, Some(_)) => &rcgen::PKCS_RSA_SHA256,
            (KeyKind::Rsa, None) => return Err("the RSA key cannot be read".into()),
            (KeyKind::EcdsaP256, _) => &rcgen::PKCS_ECDSA_P256_SHA256,
            (KeyKind::Other, _) => {
                return Err(
                    "unsupported key type: RSA (2048 to 8192 bits) or ECDSA P-256 are accepted"
                        .into(),
                );
            }
        };
        use x509_parser::prelude::FromDer as _;
        let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&req.spki)
            .map_err(|e| format!("the public key does not parse: {e}"))?;
        if !rest.is_empty() {
            return Err("bytes after the public key".into());
        }
        Ok(RequestedKey {
            spki: req.spki.to_vec(),
            bits: spki.subject_public_key.data.to_vec(),
            alg,
            kind: req.key_kind,
        })
    }
}

impl PublicKeyData for RequestedKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }

    fn subject_public_key_info(&self) -> Vec<u8> {
        self.spki.clone()
    }
}

/// The overlay's certificate authority.
pub struct Ca {
    pub overlay: String,
    pub cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    /// Without the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("overlay", &self.overlay)
            .finish_non_exhaustive()
    }
}

/// What a node certificate says.
#[derive(Clone, Debug)]
pub struct NodeCertSpec<'a> {
    pub node_ids: &'a [NodeId],
    pub user_name: &'a str,
    pub serial: [u8; 16],
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

fn node_params(overlay: &str, spec: &NodeCertSpec<'_>, rsa: bool) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    // RFC 6940 §11.3: "The subject distinguished name in the certificate MUST be empty"
    // (rcgen fills in a default CN unless told otherwise).
    p.distinguished_name = DistinguishedName::new();
    let mut sans = Vec::with_capacity(spec.node_ids.len() + 1);
    for id in spec.node_ids {
        let uri = node_id_uri(id, overlay);
        sans.push(SanType::URI(uri.clone().try_into().map_err(|_| {
            Error::new(format!("{uri:?} cannot be written as a URI"))
        })?));
    }
    sans.push(SanType::Rfc822Name(
        spec.user_name.to_string().try_into().map_err(|_| {
            Error::new(format!(
                "{:?} cannot be written as an rfc822Name",
                spec.user_name
            ))
        })?,
    ));
    p.subject_alt_names = sans;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if rsa {
        p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.serial_number = Some(SerialNumber::from_slice(&spec.serial));
    p.not_before = spec.not_before;
    p.not_after = spec.not_after;
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

impl Ca {
    /// A new root CA for `overlay`: subject `CN=<overlay> RELOAD root CA`, BasicConstraints
    /// cA with path length 0 (it signs end entities only), keyCertSign + cRLSign. Returns the
    /// CA and its PKCS#8 key.
    pub fn create(overlay: &str, key_type: KeyType, validity: Duration) -> Result<(Ca, Vec<u8>)> {
        let key = key_type.generate()?;
        let pkcs8 = key.serialize_der();
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, format!("{overlay} RELOAD root CA"));
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        p.not_before = now - BACKDATE;
        p.not_after = now + validity;
        p.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        let cert = p.self_signed(&key)?;
        Ok((
            Ca {
                overlay: overlay.to_string(),
                cert_der: cert.der().to_vec(),
                issuer: Issuer::new(p, key),
            },
            pkcs8,
        ))
    }

    /// The CA from its certificate and PKCS#8 key (as `init` stored them).
    pub fn load(overlay: &str, cert_der: Vec<u8>, key_pkcs8: &[u8]) -> Result<Ca> {
        let key = KeyPair::try_from(key_pkcs8)
            .map_err(|e| Error::new(format!("the CA key cannot be read: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), key)
            .map_err(|e| Error::new(format!("the CA certificate cannot be read: {e}")))?;
        Ok(Ca {
            overlay: overlay.to_string(),
            cert_der,
            issuer,
        })
    }

    /// Issues a node certificate for a CSR's key (RFC 6940 §11.3).
    pub fn issue_for_request(
        &self,
        key: &RequestedKey,
        spec: &NodeCertSpec<'_>,
    ) -> Result<Vec<u8>> {
        let p = node_params(&self.overlay, spec, key.kind == KeyKind::Rsa)?;
        let der = p.signed_by(key, &self.issuer)?.der().to_vec();
        // The certificate must carry exactly the requested key.
        let parsed =
            ReloadCertificate::parse(der.clone(), spec.node_ids.first().map_or(16, |n| n.len()))?;
        if parsed.spki.as_ref() != key.spki.as_slice() {
            return Err(Error::new(
                "issued certificate does not carry the requested public key",
            ));
        }
        Ok(der)
    }

    /// Issues a node certificate for a key pair of our own (the configuration and kind
    /// signers).
    pub fn issue_for_key(&self, key: &KeyPair, spec: &NodeCertSpec<'_>) -> Result<Vec<u8>> {
        let rsa = key.algorithm() == &rcgen::PKCS_RSA_SHA256;
        let p = node_params(&self.overlay, spec, rsa)?;
        Ok(p.signed_by(key, &self.issuer)?.der().to_vec())
    }

    /// Issues the HTTPS server certificate: subject CN = overlay name, one dNSName = the
    /// overlay name (RFC 6940 §11.2, §11.3: it MUST match the overlay name, RFC 2818),
    /// serverAuth only.
    pub fn issue_https(
        &self,
        key: &KeyPair,
        serial: [u8; 16],
        validity: Duration,
    ) -> Result<Vec<u8>> {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, self.overlay.clone());
        p.subject_alt_names =
            vec![SanType::DnsName(self.overlay.clone().try_into().map_err(
                |_| Error::new(format!("{:?} is not a DNS name", self.overlay)),
            )?)];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
            p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = OffsetDateTime::now_utc();
        p.not_before = now - BACKDATE;
        p.not_after = now + validity;
        p.use_authority_key_identifier_extension = true;
        Ok(p.signed_by(key, &self.issuer)?.der().to_vec())
    }
}
