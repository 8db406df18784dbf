//! A test PKI built with rcgen: an overlay root CA and node certificates in the RFC 6940
//! §11.3 profile (empty subject, `reload:` URIs, one rfc822Name).

#![allow(dead_code)]

use bytes::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SignatureAlgorithm,
};
use reload_proto::identity::{ReloadCertificate, node_id_uri};
use reload_proto::sign::{Credentials, SigningKey};
use reload_wire::NodeId;
use time::{Duration, OffsetDateTime};

pub const OVERLAY: &str = "test.example.org";

pub struct TestCa {
    pub der: Bytes,
    issuer: Issuer<'static, KeyPair>,
}

pub fn alg(rsa: bool) -> &'static SignatureAlgorithm {
    if rsa {
        &rcgen::PKCS_RSA_SHA256
    } else {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl TestCa {
    /// The trust policy of the test overlay: this CA as its only root, 16-byte Node-IDs.
    pub fn trust(&self) -> reload_proto::identity::TrustPolicy {
        reload_proto::identity::TrustPolicy {
            overlay: OVERLAY.into(),
            node_id_len: 16,
            roots: vec![self.der.clone()],
            bad_nodes: vec![],
            self_signed: None,
        }
    }

    pub fn new(rsa: bool) -> Self {
        Self::named(rsa, "test overlay root")
    }

    /// The test overlay's configuration: this CA as its only root (RFC defaults otherwise).
    pub fn config(&self) -> reload_proto::config::OverlayConfig {
        let mut c = reload_proto::config::OverlayConfig::new(OVERLAY);
        c.root_certs = vec![self.der.clone()];
        c
    }

    /// The test overlay, [`TestCa::config`] in force.
    pub fn overlay(&self) -> std::sync::Arc<reload_proto::overlay::Overlay> {
        reload_proto::overlay::Overlay::new(self.config(), None)
    }

    /// [`TestCa::config`] with the storage test Kinds ([`storage_kinds`]).
    pub fn storage_config(&self) -> reload_proto::config::OverlayConfig {
        let mut c = self.config();
        c.kinds = storage_kinds();
        c
    }

    /// The test overlay with the storage test Kinds.
    pub fn storage_overlay(&self) -> std::sync::Arc<reload_proto::overlay::Overlay> {
        reload_proto::overlay::Overlay::new(self.storage_config(), None)
    }

    pub fn named(rsa: bool, name: &str) -> Self {
        let key = KeyPair::generate_for(alg(rsa)).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).unwrap();
        TestCa {
            der: Bytes::copy_from_slice(cert.der()),
            issuer: Issuer::new(p, key),
        }
    }

    /// A node certificate; returns (PKCS#8 key, DER cert).
    pub fn issue(
        &self,
        rsa: bool,
        node_ids: &[NodeId],
        user: &str,
        overlay: &str,
        valid: (OffsetDateTime, OffsetDateTime),
    ) -> (Vec<u8>, Bytes) {
        let key = KeyPair::generate_for(alg(rsa)).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.subject_alt_names = node_ids
            .iter()
            .map(|n| SanType::URI(node_id_uri(n, overlay).try_into().unwrap()))
            .chain(std::iter::once(SanType::Rfc822Name(
                format!("{user}@{overlay}").try_into().unwrap(),
            )))
            .collect();
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = valid.0;
        p.not_after = valid.1;
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (key.serialize_der(), Bytes::copy_from_slice(cert.der()))
    }

    /// Credentials valid now for one Node-ID.
    pub fn node(&self, rsa: bool, id: u128, user: &str) -> Credentials {
        let n = NodeId::from_u128(id);
        let (key, der) = self.issue(rsa, &[n], user, OVERLAY, now_window());
        creds(&key, der, n)
    }
}

pub fn creds(key: &[u8], der: Bytes, n: NodeId) -> Credentials {
    Credentials::new(
        SigningKey::from_pkcs8(key).unwrap(),
        ReloadCertificate::parse(der, 16).unwrap(),
        n,
    )
    .unwrap()
}

pub fn now_window() -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - Duration::days(1), now + Duration::days(30))
}

/// A self-signed certificate for `count` Node-IDs derived with `digest` (§11.3.1), or with
/// the given wrong IDs.
pub fn self_signed(rsa: bool, ids: impl Fn(&[u8]) -> Vec<NodeId>) -> (Vec<u8>, Bytes, Vec<NodeId>) {
    let key = KeyPair::generate_for(alg(rsa)).unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let node_ids = ids(&spki);
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = node_ids
        .iter()
        .map(|n| SanType::URI(node_id_uri(n, OVERLAY).try_into().unwrap()))
        .chain(std::iter::once(SanType::Rfc822Name(
            format!("self@{OVERLAY}").try_into().unwrap(),
        )))
        .collect();
    let (nb, na) = now_window();
    p.not_before = nb;
    p.not_after = na;
    let cert = p.self_signed(&key).unwrap();
    (
        key.serialize_der(),
        Bytes::copy_from_slice(cert.der()),
        node_ids,
    )
}

/// A CA, a configuration-signer and a kind-signer (for signed configuration documents).
pub struct Fixture {
    pub ca: TestCa,
    pub config_signer: Credentials,
    pub kind_signer: Credentials,
}

pub fn fixture() -> Fixture {
    let ca = TestCa::new(true);
    let config_signer = ca.node(true, 0xc0f1_6000, "config-signer");
    let kind_signer = ca.node(false, 0x0c1d_5000, "kind-signer");
    Fixture {
        ca,
        config_signer,
        kind_signer,
    }
}

/// A configuration of the test overlay with `sequence`: the fixture's CA, signers, an
/// enrollment server and two Kinds (SIP-REGISTRATION and an array Kind).
pub fn config(f: &Fixture, sequence: u16) -> reload_proto::config::OverlayConfig {
    let mut c = reload_proto::config::OverlayConfig::new(OVERLAY);
    c.sequence = sequence;
    c.expiration =
        Some(OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::days(30));
    c.root_certs = vec![f.ca.der.clone()];
    c.configuration_signers = vec![f.config_signer.node_id.as_bytes().to_vec()];
    c.kind_signers = vec![f.kind_signer.node_id.as_bytes().to_vec()];
    c.enrollment_servers = vec![format!("https://{OVERLAY}/enroll")];
    c.kinds = vec![
        reload_proto::config::KindDefinition::new(
            reload_proto::config::KindRef::Name("SIP-REGISTRATION".into()),
            reload_proto::config::KindDataModel::Dictionary,
            reload_proto::config::AccessPolicy::UserNodeMatch,
            10,
            1000,
        ),
        reload_proto::config::KindDefinition::new(
            reload_proto::config::KindRef::Id(reload_wire::storage::KindId(0xf000_0001)),
            reload_proto::config::KindDataModel::Array,
            reload_proto::config::AccessPolicy::UserMatch,
            4,
            200,
        ),
    ];
    c
}

/// Private test Kinds, one per data model and policy, and the registered ones RFC 6940
/// defines (§8, §9) with RFC 7904's SIP-REGISTRATION.
pub mod kinds {
    /// SINGLE, USER-MATCH, max-count 1, max-size 1024.
    pub const SINGLE: u32 = 0xf000_0001;
    /// ARRAY, USER-MATCH, max-count 16, max-size 1024.
    pub const ARRAY: u32 = 0xf000_0002;
    /// DICTIONARY, USER-MATCH, max-count 16, max-size 1024.
    pub const DICT: u32 = 0xf000_0003;
    /// SINGLE, NODE-MULTIPLE with max-node-multiple 5, max-size 256.
    pub const MULTI: u32 = 0xf000_0004;
    /// SINGLE, NODE-MATCH, max-size 1024.
    pub const NODE: u32 = 0xf000_0005;
}

pub fn storage_kinds() -> Vec<reload_proto::config::KindDefinition> {
    use reload_proto::config::{AccessPolicy, KindDataModel as M, KindDefinition};
    use reload_wire::storage::KindId;
    let mut multi =
        KindDefinition::new(kinds::MULTI, M::Single, AccessPolicy::NodeMultiple, 1, 256);
    multi.max_node_multiple = Some(5);
    let mut turn = KindDefinition::new(
        KindId::TURN_SERVICE,
        M::Single,
        AccessPolicy::NodeMultiple,
        1,
        64,
    );
    turn.max_node_multiple = Some(20);
    vec![
        KindDefinition::new(kinds::SINGLE, M::Single, AccessPolicy::UserMatch, 1, 1024),
        KindDefinition::new(kinds::ARRAY, M::Array, AccessPolicy::UserMatch, 16, 1024),
        KindDefinition::new(
            kinds::DICT,
            M::Dictionary,
            AccessPolicy::UserMatch,
            16,
            1024,
        ),
        multi,
        KindDefinition::new(kinds::NODE, M::Single, AccessPolicy::NodeMatch, 1, 1024),
        turn,
        KindDefinition::new(
            KindId::CERTIFICATE_BY_NODE,
            M::Array,
            AccessPolicy::NodeMatch,
            4,
            4096,
        ),
        KindDefinition::new(
            KindId::CERTIFICATE_BY_USER,
            M::Array,
            AccessPolicy::UserMatch,
            4,
            4096,
        ),
        KindDefinition::new(
            KindId::SIP_REGISTRATION,
            M::Dictionary,
            AccessPolicy::UserNodeMatch,
            16,
            2048,
        ),
    ]
}
