//! The security block (RFC 6940 §6.3.4): certificates, signature and signer identity.
//! The same `Signature` structure signs stored data (§7.1).
//!
//! Only the wire form lives here; which algorithms are acceptable and how signatures are
//! checked is the node's policy.

use bytes::{BufMut, Bytes};

use crate::codec::{
    Cx, EncodeError, ErrorKind, In, Len, PResult, Wire, code_point, exact, fail, field, items_len,
    opaque, prefixed, put_opaque, put_vec, wire_vec,
};

code_point! {
    /// `CertificateType` (RFC 6091 §3.1, used by RFC 6940 §6.3.4).
    CertificateType(u8) {
        X509 = 0 => "X.509",
        OPENPGP = 1 => "OpenPGP",
    }
}

code_point! {
    /// TLS `HashAlgorithm` (RFC 5246 §7.4.1.4.1).
    HashAlgorithm(u8) {
        NONE = 0 => "none",
        MD5 = 1 => "md5",
        SHA1 = 2 => "sha1",
        SHA224 = 3 => "sha224",
        SHA256 = 4 => "sha256",
        SHA384 = 5 => "sha384",
        SHA512 = 6 => "sha512",
    }
}

code_point! {
    /// TLS `SignatureAlgorithm` (RFC 5246 §7.4.1.4.1).
    SignatureAlgorithm(u8) {
        ANONYMOUS = 0 => "anonymous",
        RSA = 1 => "rsa",
        DSA = 2 => "dsa",
        ECDSA = 3 => "ecdsa",
    }
}

/// TLS `SignatureAndHashAlgorithm` (RFC 5246 §7.4.1.4.1): hash byte, then signature byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SignatureAndHashAlgorithm {
    pub hash: HashAlgorithm,
    pub signature: SignatureAlgorithm,
}

impl SignatureAndHashAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, mandatory to implement (RFC 6940 §6.3.4).
    pub const RSA_SHA256: Self = SignatureAndHashAlgorithm {
        hash: HashAlgorithm::SHA256,
        signature: SignatureAlgorithm::RSA,
    };
    /// ECDSA with SHA-256.
    pub const ECDSA_SHA256: Self = SignatureAndHashAlgorithm {
        hash: HashAlgorithm::SHA256,
        signature: SignatureAlgorithm::ECDSA,
    };
    /// `{0, 0}`: the algorithm of a synthesized "does not exist" value (RFC 6940 §7.4.2.2).
    pub const NONE: Self = SignatureAndHashAlgorithm {
        hash: HashAlgorithm::NONE,
        signature: SignatureAlgorithm::ANONYMOUS,
    };
}

impl Wire for SignatureAndHashAlgorithm {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        let (i, hash) = HashAlgorithm::decode_from(cx, i)?;
        let (i, signature) = SignatureAlgorithm::decode_from(cx, i)?;
        Ok((i, SignatureAndHashAlgorithm { hash, signature }))
    }

    fn encoded_len(&self) -> usize {
        2
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.hash.encode(b)?;
        self.signature.encode(b)
    }
}

/// `GenericCertificate` (RFC 6940 §6.3.4): a DER X.509 certificate, typically.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GenericCertificate {
    pub certificate_type: CertificateType,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub certificate: Bytes,
}

impl GenericCertificate {
    pub fn x509(der: impl Into<Bytes>) -> Self {
        GenericCertificate {
            certificate_type: CertificateType::X509,
            certificate: der.into(),
        }
    }
}

impl Wire for GenericCertificate {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("GenericCertificate", i, |i| {
            let (i, certificate_type) = CertificateType::decode_from(cx, i)?;
            let (i, certificate) = field("certificate", i, |i| opaque(cx, Len::U16, i))?;
            Ok((
                i,
                GenericCertificate {
                    certificate_type,
                    certificate,
                },
            ))
        })
    }

    fn encoded_len(&self) -> usize {
        3 + self.certificate.len()
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.certificate_type.encode(b)?;
        put_opaque(
            b,
            Len::U16,
            &self.certificate,
            "GenericCertificate.certificate",
        )
    }
}

code_point! {
    /// `SignerIdentityType` (RFC 6940 §6.3.4).
    SignerIdentityType(u8) {
        INVALID = 0 => "invalidSignerIdentityType",
        CERT_HASH = 1 => "cert_hash",
        CERT_HASH_NODE_ID = 2 => "cert_hash_node_id",
        NONE = 3 => "none",
    }
}

/// `SignerIdentity` (RFC 6940 §6.3.4).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum SignerIdentity {
    /// `cert_hash(1)`: hash of the signer's DER certificate.
    CertHash {
        hash_alg: HashAlgorithm,
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        certificate_hash: Bytes,
    },
    /// `cert_hash_node_id(2)`: hash of Node-ID ‖ certificate, for certificates with
    /// several Node-IDs.
    CertHashNodeId {
        hash_alg: HashAlgorithm,
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        certificate_node_id_hash: Bytes,
    },
    /// `none(3)`: only on values synthesized by a storing peer (§7.4.2.2).
    None,
    /// An identity type this codec does not know, kept as it came.
    Unknown {
        identity_type: SignerIdentityType,
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        identity: Bytes,
    },
}

impl SignerIdentity {
    pub fn identity_type(&self) -> SignerIdentityType {
        match self {
            SignerIdentity::CertHash { .. } => SignerIdentityType::CERT_HASH,
            SignerIdentity::CertHashNodeId { .. } => SignerIdentityType::CERT_HASH_NODE_ID,
            SignerIdentity::None => SignerIdentityType::NONE,
            SignerIdentity::Unknown { identity_type, .. } => *identity_type,
        }
    }

    fn value_len(&self) -> usize {
        match self {
            SignerIdentity::CertHash {
                certificate_hash: h,
                ..
            }
            | SignerIdentity::CertHashNodeId {
                certificate_node_id_hash: h,
                ..
            } => 2 + h.len(),
            SignerIdentity::None => 0,
            SignerIdentity::Unknown { identity, .. } => identity.len(),
        }
    }
}

impl Wire for SignerIdentity {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("SignerIdentity", i, |i| {
            let (r, identity_type) = SignerIdentityType::decode_from(cx, i)?;
            let (r, value) = field("identity", r, |r| prefixed(Len::U16, r))?;
            let hashed = |v| {
                exact(v, |v| {
                    let (v, hash_alg) = HashAlgorithm::decode_from(cx, v)?;
                    let (v, h) = opaque(cx, Len::U8, v)?;
                    Ok((v, (hash_alg, h)))
                })
            };
            let id = match identity_type {
                SignerIdentityType::INVALID => {
                    return fail(i, ErrorKind::Invalid("signer identity type 0 (invalid)"));
                }
                SignerIdentityType::CERT_HASH => {
                    let (_, (hash_alg, certificate_hash)) = field("cert_hash", value, hashed)?;
                    SignerIdentity::CertHash {
                        hash_alg,
                        certificate_hash,
                    }
                }
                SignerIdentityType::CERT_HASH_NODE_ID => {
                    let (_, (hash_alg, certificate_node_id_hash)) =
                        field("cert_hash_node_id", value, hashed)?;
                    SignerIdentity::CertHashNodeId {
                        hash_alg,
                        certificate_node_id_hash,
                    }
                }
                SignerIdentityType::NONE => {
                    if !value.is_empty() {
                        return fail(value, ErrorKind::Invalid("identity none must be empty"));
                    }
                    SignerIdentity::None
                }
                identity_type => SignerIdentity::Unknown {
                    identity_type,
                    identity: cx.bytes(value),
                },
            };
            Ok((r, id))
        })
    }

    fn encoded_len(&self) -> usize {
        3 + self.value_len()
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.identity_type().encode(b)?;
        Len::U16.write(b, self.value_len(), "SignerIdentity.length")?;
        match self {
            SignerIdentity::CertHash {
                hash_alg,
                certificate_hash: h,
            }
            | SignerIdentity::CertHashNodeId {
                hash_alg,
                certificate_node_id_hash: h,
            } => {
                hash_alg.encode(b)?;
                put_opaque(b, Len::U8, h, "SignerIdentity.certificate_hash")?;
            }
            SignerIdentity::None => {}
            SignerIdentity::Unknown { identity, .. } => b.put_slice(identity),
        }
        Ok(())
    }
}

/// `Signature` (RFC 6940 §6.3.4).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Signature {
    pub algorithm: SignatureAndHashAlgorithm,
    pub identity: SignerIdentity,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub signature_value: Bytes,
}

impl Signature {
    /// The placeholder signature of a synthesized value: algorithm `{0,0}`, identity
    /// `none`, empty value (RFC 6940 §7.4.2.2).
    pub fn none() -> Self {
        Signature {
            algorithm: SignatureAndHashAlgorithm::NONE,
            identity: SignerIdentity::None,
            signature_value: Bytes::new(),
        }
    }
}

impl Wire for Signature {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("Signature", i, |i| {
            let (i, algorithm) = field("algorithm", i, |i| {
                SignatureAndHashAlgorithm::decode_from(cx, i)
            })?;
            let (i, identity) = SignerIdentity::decode_from(cx, i)?;
            let (i, signature_value) = field("signature_value", i, |i| opaque(cx, Len::U16, i))?;
            Ok((
                i,
                Signature {
                    algorithm,
                    identity,
                    signature_value,
                },
            ))
        })
    }

    fn encoded_len(&self) -> usize {
        2 + self.identity.encoded_len() + 2 + self.signature_value.len()
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.algorithm.encode(b)?;
        self.identity.encode(b)?;
        put_opaque(
            b,
            Len::U16,
            &self.signature_value,
            "Signature.signature_value",
        )
    }
}

/// `SecurityBlock` (RFC 6940 §6.3.4).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SecurityBlock {
    pub certificates: Vec<GenericCertificate>,
    pub signature: Signature,
}

impl Wire for SecurityBlock {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("SecurityBlock", i, |i| {
            let (i, certificates) = field("certificates", i, |i| wire_vec(cx, Len::U16, i))?;
            let (i, signature) = Signature::decode_from(cx, i)?;
            Ok((
                i,
                SecurityBlock {
                    certificates,
                    signature,
                },
            ))
        })
    }

    fn encoded_len(&self) -> usize {
        2 + items_len(&self.certificates) + self.signature.encoded_len()
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_vec(
            b,
            Len::U16,
            &self.certificates,
            "SecurityBlock.certificates",
        )?;
        self.signature.encode(b)
    }
}
