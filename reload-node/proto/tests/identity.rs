//! Identities and signatures (RFC 6940 §6.3.4, §7.1, §10.2, §11.3, §11.3.1, §14.15):
//! hashing, `reload:` URIs, certificate checks with specific refusals, and tamper tests.

mod pki;

use std::time::{Duration as StdDuration, SystemTime};

use bytes::Bytes;
use pki::*;
use reload_proto::identity::*;
use reload_proto::sign::*;
use reload_wire::body::MessageBody;
use reload_wire::link::PingReq;
use reload_wire::security::{HashAlgorithm, SignatureAlgorithm, SignatureAndHashAlgorithm};
use reload_wire::storage::{
    ArrayEntry, DataValue, DictionaryEntry, KindId, StoredData, StoredDataValue,
};
use reload_wire::{
    DecodeOptions, Destination, ForwardingHeader, Message, MessageContents, NodeId, ResourceId,
    SecurityBlock, Signature, SignerIdentity, Wire,
};
use time::{Duration, OffsetDateTime};

fn trust(ca: &TestCa) -> TrustPolicy {
    ca.trust()
}

fn now() -> SystemTime {
    SystemTime::now()
}

// Values computed independently with Python's hashlib.
#[test]
fn overlay_hash_is_low_32_bits_of_sha1() {
    assert_eq!(overlay_hash("test.example.org"), 0xb716_bb76);
}

#[test]
fn chord_resource_id_is_sha1_truncated_to_128_bits() {
    let r = chord_resource_id(b"alice@test.example.org");
    assert_eq!(r.as_u128(), Some(0xfd69_ec2a_76ff_e521_e63e_1ff8_3cdc_3955));
    assert_eq!(
        chord_resource_id(b"").as_u128(),
        Some(0xda39_a3ee_5e6b_4b0d_3255_bfef_9560_1890)
    );
    let e = resource_id_for(CHORD_RELOAD, 20, b"x").unwrap_err();
    assert!(e.to_string().contains("node-id-length 20"), "{e}");
    assert!(resource_id_for(CHORD_RELOAD, 16, b"x").is_ok());
}

#[test]
fn special_node_ids() {
    assert!(NodeId::zero(16).unwrap().is_zero());
    assert!(NodeId::wildcard(16).unwrap().is_wildcard());
    assert!(!NodeId::from_u128(5).is_wildcard());
}

#[test]
fn reload_uris_in_both_forms() {
    let n = NodeId::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
    let uri = node_id_uri(&n, OVERLAY);
    assert_eq!(
        uri,
        "reload://01100102030405060708090a0b0c0d0e0f10@test.example.org/"
    );
    let parsed = parse_reload_uri(&uri, 16).unwrap();
    assert_eq!(parsed.node_id(), Some(n));
    assert_eq!(parsed.overlay, OVERLAY);
    // The bare 32-hex-digit form another implementation emits.
    let bare = format!("reload://{}@{OVERLAY}/", n.to_hex());
    assert_eq!(parse_reload_uri(&bare, 16).unwrap().node_id(), Some(n));
    // A resource destination list with a specifier.
    let with_spec = parse_reload_uri("reload://0203020aff@o/00000001", 16).unwrap();
    assert_eq!(
        with_spec.destinations,
        vec![Destination::Resource(ResourceId::new(vec![0x0a, 0xff]))]
    );
    assert_eq!(with_spec.specifier.as_deref(), Some(&[0, 0, 0, 1][..]));
    for bad in [
        "http://x@y/",
        "reload://zz@o/",
        "reload://0110@o/",
        "reload://0110aa",
        "reload://@o/",
        "reload://0110ff/",
    ] {
        assert!(
            matches!(parse_reload_uri(bad, 16), Err(IdentityError::BadUri(_))),
            "{bad}"
        );
    }
}

#[test]
fn certificate_contents() {
    let ca = TestCa::new(false);
    let ids = [NodeId::from_u128(7), NodeId::from_u128(8)];
    let (_, der) = ca.issue(false, &ids, "alice", OVERLAY, now_window());
    let c = ReloadCertificate::parse(der, 16).unwrap();
    assert_eq!(c.node_ids, ids);
    assert_eq!(c.user_name.as_deref(), Some("alice@test.example.org"));
    assert_eq!(c.key_kind, KeyKind::EcdsaP256);
    assert!(!c.is_ca && c.unexpected_names.is_empty());
    assert!(trust(&ca).verify(&c, &[], now()).is_ok());
}

#[test]
fn certificate_refusals_are_specific() {
    let ca = TestCa::new(true);
    let t = trust(&ca);
    let n = NodeId::from_u128(42);
    let check = |der: Bytes, t: &TrustPolicy| {
        t.verify(&ReloadCertificate::parse(der, 16).unwrap(), &[], now())
    };

    // Unknown CA, and an impostor CA with the same name as ours.
    let other = TestCa::named(true, "some other root");
    let (_, der) = other.issue(true, &[n], "bob", OVERLAY, now_window());
    assert_eq!(check(der, &t), Err(IdentityError::UnknownCa));
    let impostor = TestCa::new(true);
    let (_, der) = impostor.issue(true, &[n], "bob", OVERLAY, now_window());
    assert_eq!(check(der, &t), Err(IdentityError::UnknownCa));
    // Expired.
    let past = OffsetDateTime::now_utc() - Duration::days(10);
    let (_, der) = ca.issue(
        true,
        &[n],
        "bob",
        OVERLAY,
        (past - Duration::days(10), past),
    );
    assert_eq!(check(der, &t), Err(IdentityError::Expired));
    // Not yet valid.
    let future = OffsetDateTime::now_utc() + Duration::days(10);
    let (_, der) = ca.issue(
        true,
        &[n],
        "bob",
        OVERLAY,
        (future, future + Duration::days(10)),
    );
    assert_eq!(check(der, &t), Err(IdentityError::NotYetValid));
    // Wrong overlay.
    let (_, der) = ca.issue(true, &[n], "bob", "other.example.org", now_window());
    assert!(matches!(
        check(der, &t),
        Err(IdentityError::WrongOverlay { .. })
    ));
    // Revoked by bad-node.
    let (_, der) = ca.issue(true, &[n], "bob", OVERLAY, now_window());
    let mut revoking = t.clone();
    revoking.bad_nodes = vec![n];
    assert_eq!(
        check(der.clone(), &revoking),
        Err(IdentityError::BadNode(n))
    );
    assert_eq!(check(der.clone(), &t), Ok(()));
    // Node-ID not in the certificate.
    let (key, _) = ca.issue(true, &[n], "bob", OVERLAY, now_window());
    let c = ReloadCertificate::parse(der, 16).unwrap();
    assert!(matches!(
        Credentials::new(
            SigningKey::from_pkcs8(&key).unwrap(),
            c.clone(),
            NodeId::from_u128(43)
        ),
        Err(SignError::Identity(IdentityError::NodeIdNotInCertificate(
            _
        )))
    ));
    // A key that is not the certificate's.
    assert!(matches!(
        Credentials::new(SigningKey::from_pkcs8(&key).unwrap(), c, n),
        Err(SignError::Key(_))
    ));
    // Not a certificate at all.
    assert!(matches!(
        ReloadCertificate::parse(Bytes::from_static(b"bad cert\n"), 16),
        Err(IdentityError::Malformed(_))
    ));
    // A CA certificate cannot be a node identity.
    assert!(matches!(
        check(ca.der.clone(), &t),
        Err(IdentityError::NoNodeId)
    ));
}

#[test]
fn self_signed_identities() {
    for digest in [SelfSignedDigest::Sha1, SelfSignedDigest::Sha256] {
        for count in [1u32, 3] {
            let (key, der, ids) = self_signed(false, |spki| {
                (1..=count)
                    .map(|i| self_signed_node_id(digest, spki, i, count, 16).unwrap())
                    .collect()
            });
            let c = ReloadCertificate::parse(der.clone(), 16).unwrap();
            let mut t = TrustPolicy {
                overlay: OVERLAY.into(),
                node_id_len: 16,
                roots: vec![],
                bad_nodes: vec![],
                self_signed: None,
            };
            assert_eq!(
                t.verify(&c, &[], now()),
                Err(IdentityError::SelfSignedNotPermitted)
            );
            t.self_signed = Some(digest);
            assert_eq!(t.verify(&c, &[], now()), Ok(()), "{digest:?} x{count}");
            // And it can sign.
            let creds = creds(&key, der, ids[0]);
            let mut v = Verifier::new(t, 8);
            let m = signed_ping(&creds);
            assert_eq!(v.verify_message(&m, now()).unwrap().node_id, ids[0]);
        }
    }
    // A Node-ID that is not the key digest: Node-ID theft (§11.3.1).
    let stolen = NodeId::from_u128(99);
    let (_, der, _) = self_signed(true, |_| vec![stolen]);
    let t = TrustPolicy {
        overlay: OVERLAY.into(),
        node_id_len: 16,
        roots: vec![],
        bad_nodes: vec![],
        self_signed: Some(SelfSignedDigest::Sha256),
    };
    assert_eq!(
        t.verify(&ReloadCertificate::parse(der, 16).unwrap(), &[], now()),
        Err(IdentityError::SelfSignedNodeIdMismatch(stolen))
    );
}

fn ping(creds: &Credentials) -> Message {
    let mut h = ForwardingHeader::new(overlay_hash(OVERLAY), 3, 100, 0x1122_3344_5566_7788);
    h.destination_list = vec![Destination::Node(NodeId::from_u128(5))];
    h.via_list = vec![Destination::Node(NodeId::from_u128(6))];
    let body = MessageBody::PingReq(PingReq {
        padding: Bytes::from_static(b"padding"),
    });
    let mut m = Message {
        header: h,
        contents: MessageContents::from_body(&body).unwrap(),
        security: SecurityBlock {
            certificates: vec![],
            signature: Signature::none(),
        },
    };
    m.header.length = m.encoded_len() as u32;
    let _ = creds;
    m
}

fn signed_ping(creds: &Credentials) -> Message {
    let mut m = ping(creds);
    creds.sign_message(&mut m, vec![]).unwrap();
    m.header.length = m.encoded_len() as u32;
    m
}

/// Byte ranges of a message's encoding that the signature does not cover by design
/// (RFC 6940 §6.3.4 signs overlay, transaction id, contents and identity): the rest of
/// the forwarding header changes hop by hop.
fn unsigned_header_byte(m: &Message, i: usize) -> bool {
    let header_len = m.header.encoded_len();
    i < header_len && !(4..8).contains(&i) && !(20..28).contains(&i)
}

#[test]
fn message_signatures_detect_any_tampering() {
    let opts = DecodeOptions::default();
    for rsa in [true, false] {
        let ca = TestCa::new(rsa);
        let creds = ca.node(rsa, 0x1234, "alice");
        let m = signed_ping(&creds);
        let mut v = Verifier::new(trust(&ca), 16);
        let signer = v.verify_message(&m, now()).unwrap();
        assert_eq!(signer.node_id, NodeId::from_u128(0x1234));
        assert_eq!(
            signer.cert.user_name.as_deref(),
            Some("alice@test.example.org")
        );

        let wire = m.to_bytes().unwrap();
        let mut still_valid = 0;
        for i in 0..wire.len() {
            let mut t = wire.to_vec();
            t[i] ^= 0x01;
            let Ok(tm) = Message::decode(&Bytes::from(t), &opts) else {
                continue;
            };
            // Fresh verifier: no certificate remembered from the untampered message.
            let mut v = Verifier::new(trust(&ca), 16);
            let r = v.verify_message(&tm, now());
            if unsigned_header_byte(&m, i) {
                still_valid += r.is_ok() as usize;
            } else {
                assert!(r.is_err(), "flipping byte {i} went unnoticed (rsa={rsa})");
            }
        }
        assert!(
            still_valid > 0,
            "hop-by-hop header fields stay outside the signature"
        );
    }
}

#[test]
fn unknown_algorithms_and_identities_are_refused() {
    let ca = TestCa::new(true);
    let creds = ca.node(true, 1, "alice");
    let mut m = signed_ping(&creds);
    let mut v = Verifier::new(trust(&ca), 16);
    m.security.signature.algorithm = SignatureAndHashAlgorithm {
        hash: HashAlgorithm::SHA1,
        signature: SignatureAlgorithm::RSA,
    };
    assert!(matches!(
        v.verify_message(&m, now()),
        Err(SignError::UnsupportedAlgorithm(_))
    ));
    // ECDSA claimed for an RSA key.
    m.security.signature.algorithm = SignatureAndHashAlgorithm::ECDSA_SHA256;
    assert!(matches!(
        v.verify_message(&m, now()),
        Err(SignError::UnsupportedAlgorithm(_))
    ));
    let mut m = signed_ping(&creds);
    m.security.signature.identity = SignerIdentity::None;
    assert!(matches!(
        v.verify_message(&m, now()),
        Err(SignError::UnacceptableIdentity(_))
    ));
    // No certificate anywhere.
    let mut m = signed_ping(&creds);
    m.security.certificates.clear();
    let mut fresh = Verifier::new(trust(&ca), 16);
    assert_eq!(
        fresh.verify_message(&m, now()).unwrap_err(),
        SignError::UnknownSigner
    );
    // … but a cached one is enough (§6.3.4: certificates MAY be omitted when known).
    v.verify_message(&signed_ping(&creds), now()).unwrap();
    assert!(v.verify_message(&m, now()).is_ok());
}

#[test]
fn certificates_with_several_node_ids_use_cert_hash_node_id() {
    let ca = TestCa::new(false);
    let ids = [NodeId::from_u128(10), NodeId::from_u128(11)];
    let (key, der) = ca.issue(false, &ids, "multi", OVERLAY, now_window());
    let creds = creds(&key, der, ids[1]);
    assert!(matches!(
        creds.identity(),
        SignerIdentity::CertHashNodeId { .. }
    ));
    let m = signed_ping(&creds);
    let mut v = Verifier::new(trust(&ca), 16);
    assert_eq!(v.verify_message(&m, now()).unwrap().node_id, ids[1]);
}

#[test]
fn stored_data_signatures_detect_any_tampering() {
    let ca = TestCa::new(true);
    let creds = ca.node(true, 0x77, "alice");
    let resource = chord_resource_id(b"alice@test.example.org");
    let values = [
        (
            KindId::SIP_REGISTRATION,
            StoredDataValue::Dictionary(DictionaryEntry {
                key: Bytes::copy_from_slice(creds.node_id.as_bytes()),
                value: DataValue::new(&b"sip:alice@192.0.2.1"[..]),
            }),
        ),
        (
            KindId::CERTIFICATE_BY_USER,
            StoredDataValue::Array(ArrayEntry {
                index: ArrayEntry::APPEND,
                value: DataValue::new(creds.cert.der().clone()),
            }),
        ),
        (
            KindId::TURN_SERVICE,
            StoredDataValue::Single(DataValue::new(&b"\x01\x01\x06\xc0\x00\x02\x01\x0d\x96"[..])),
        ),
    ];
    let opts = DecodeOptions::default();
    for (kind, value) in values {
        let mut sd = StoredData {
            storage_time: 1_700_000_000_000,
            lifetime: 3600,
            value,
            signature: Signature::none(),
        };
        creds.sign_stored_data(&resource, kind, &mut sd).unwrap();
        let certs = vec![reload_wire::GenericCertificate::x509(
            creds.cert.der().clone(),
        )];
        let mut v = Verifier::new(trust(&ca), 16);
        assert_eq!(
            v.verify_stored_data(&resource, kind, &sd, &certs, now())
                .unwrap()
                .node_id,
            creds.node_id
        );
        // Array entries are signed with index 0 (§7.4.2.2), so the storing peer may renumber.
        if matches!(sd.value, StoredDataValue::Array(_)) {
            let mut moved = sd.clone();
            if let StoredDataValue::Array(me) = &mut moved.value {
                me.index = 5;
            }
            assert!(
                v.verify_stored_data(&resource, kind, &moved, &certs, now())
                    .is_ok()
            );
            if let StoredDataValue::Array(e) = &mut sd.value {
                e.index = 0;
            }
        }
        // Other Resource-ID or Kind: refused.
        assert!(
            v.verify_stored_data(&chord_resource_id(b"mallory"), kind, &sd, &certs, now())
                .is_err()
        );
        assert!(
            v.verify_stored_data(&resource, KindId(0xf000_0001), &sd, &certs, now())
                .is_err()
        );
        // Any byte of the encoded value.
        let wire = reload_wire::storage::StoreKindData {
            kind,
            generation_counter: 1,
            values: reload_wire::storage::KindValues::Decoded(vec![sd.clone()]),
        }
        .to_bytes()
        .unwrap();
        // Layout: kind 0..4, generation 4..12, values length 12..16, StoredData.length
        // 16..20, storage_time 20..28, lifetime 28..32, then the value (an array entry
        // starts with its index, 32..36) and the signature.
        for i in 20..wire.len() {
            let lifetime = (28..32).contains(&i);
            let array_index =
                matches!(sd.value, StoredDataValue::Array(_)) && (32..36).contains(&i);
            if lifetime || array_index {
                // Outside the §7.1 signature input by design.
                continue;
            }
            let mut t = wire.to_vec();
            t[i] ^= 0x80;
            let Ok(skd) = reload_wire::storage::StoreKindData::decode(&Bytes::from(t), &opts)
            else {
                continue;
            };
            let Some(tsd) = skd.values.as_slice().first() else {
                continue;
            };
            let mut fresh = Verifier::new(trust(&ca), 16);
            assert!(
                fresh
                    .verify_stored_data(&resource, kind, tsd, &certs, now())
                    .is_err(),
                "byte {i} of {kind:?}"
            );
        }
    }
}

#[test]
fn expired_signer_is_refused_even_for_old_data() {
    let ca = TestCa::new(false);
    let n = NodeId::from_u128(3);
    let past = OffsetDateTime::now_utc() - Duration::days(40);
    let (key, der) = ca.issue(
        false,
        &[n],
        "old",
        OVERLAY,
        (past, past + Duration::days(30)),
    );
    let creds = creds(&key, der, n);
    let m = signed_ping(&creds);
    let mut v = Verifier::new(trust(&ca), 16);
    assert_eq!(
        v.verify_message(&m, now()).unwrap_err(),
        SignError::Identity(IdentityError::Expired)
    );
    // It verified while the certificate was valid.
    assert!(
        v.verify_message(&m, now() - StdDuration::from_secs(35 * 86400))
            .is_ok()
    );
}

#[test]
fn blob_signatures_need_an_allowed_signer() {
    let ca = TestCa::new(true);
    let signer = ca.node(true, 0x5160, "config-signer");
    let blob = b"<configuration instance-name=\"test.example.org\">...</configuration>";
    let sb = sign_blob(&signer, blob).unwrap();
    let mut v = Verifier::new(trust(&ca), 16);
    assert!(v.verify_blob(blob, &sb, &[signer.node_id], now()).is_ok());
    assert_eq!(
        v.verify_blob(blob, &sb, &[NodeId::from_u128(1)], now())
            .unwrap_err(),
        SignError::SignerNotAllowed(signer.node_id)
    );
    let mut changed = blob.to_vec();
    changed[20] ^= 1;
    assert_eq!(
        v.verify_blob(&changed, &sb, &[signer.node_id], now())
            .unwrap_err(),
        SignError::BadSignature
    );
    // The security block survives base64 and the codec.
    let back = SecurityBlock::decode(&sb.to_bytes().unwrap(), &DecodeOptions::default()).unwrap();
    assert!(v.verify_blob(blob, &back, &[signer.node_id], now()).is_ok());
}

#[test]
fn cert_cache_is_bounded() {
    let ca = TestCa::new(false);
    let mut cache = CertCache::new(16, 3);
    for i in 0..10u128 {
        let (_, der) = ca.issue(
            false,
            &[NodeId::from_u128(i + 1)],
            "u",
            OVERLAY,
            now_window(),
        );
        cache.insert(&der).unwrap();
        assert!(cache.len() <= 3);
    }
}
