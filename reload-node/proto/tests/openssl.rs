//! Certificates, keys and CSRs made by `openssl` (software nobody here wrote) are accepted
//! and verified (issue #3), in the RFC 6940 §11.3 profile: empty subject, `reload:` URI
//! and rfc822Name subjectAltNames.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use bytes::Bytes;
use reload_proto::identity::{
    CertRequest, KeyKind, ReloadCertificate, TrustPolicy, from_pem, node_id_uri,
};
use reload_proto::sign::{Credentials, SigningKey, Verifier};
use reload_wire::body::MessageBody;
use reload_wire::link::PingReq;
use reload_wire::{
    ForwardingHeader, Message, MessageContents, NodeId, SecurityBlock, Signature, Wire,
};

const OVERLAY: &str = "openssl.example.org";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (it is part of the base system and of .ci/run)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(dir: &Path, f: &str) -> Vec<u8> {
    std::fs::read(dir.join(f)).unwrap()
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("reload-openssl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An openssl root CA in `dir` (ca.key, ca.pem) with the given key algorithm arguments.
fn make_ca(dir: &Path, keyargs: &[&str]) {
    let mut a = vec![
        "req",
        "-x509",
        "-new",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=openssl overlay root",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ];
    a.extend_from_slice(keyargs);
    a.extend_from_slice(&[
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ]);
    openssl(dir, &a);
}

/// A node key + CSR + certificate issued by the CA in `dir`.
fn make_node(dir: &Path, node: &NodeId, keyargs: &[&str]) -> (Vec<u8>, Bytes, Vec<u8>) {
    let mut a = vec![
        "req",
        "-new",
        "-nodes",
        "-subj",
        "/",
        "-keyout",
        "node.key",
        "-out",
        "node.csr.der",
        "-outform",
        "DER",
    ];
    a.extend_from_slice(keyargs);
    openssl(dir, &a);
    let ext = format!(
        "subjectAltName=URI:{},email:alice@{OVERLAY}\nextendedKeyUsage=clientAuth,serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n",
        node_id_uri(node, OVERLAY)
    );
    std::fs::write(dir.join("node.ext"), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-inform",
            "DER",
            "-in",
            "node.csr.der",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "10",
            "-extfile",
            "node.ext",
            "-outform",
            "DER",
            "-out",
            "node.der",
        ],
    );
    let key_pem = String::from_utf8(read(dir, "node.key")).unwrap();
    let key = from_pem("PRIVATE KEY", &key_pem).expect("openssl writes PKCS#8 keys");
    (
        key,
        Bytes::from(read(dir, "node.der")),
        read(dir, "node.csr.der"),
    )
}

fn ping() -> Message {
    let body = MessageBody::PingReq(PingReq {
        padding: Bytes::new(),
    });
    let mut m = Message {
        header: ForwardingHeader::new(reload_proto::identity::overlay_hash(OVERLAY), 1, 100, 77),
        contents: MessageContents::from_body(&body).unwrap(),
        security: SecurityBlock {
            certificates: vec![],
            signature: Signature::none(),
        },
    };
    m.header.length = m.encoded_len() as u32;
    m
}

fn check(name: &str, ca_keyargs: &[&str], node_keyargs: &[&str], kind: KeyKind, bits: usize) {
    let dir = tempdir(name);
    make_ca(&dir, ca_keyargs);
    let node = NodeId::from_u128(0x0bad_cafe_0000_0000_0000_0000_0000_0001);
    let (key, der, csr) = make_node(&dir, &node, node_keyargs);

    // The CSR: parsed, self-signature verified, and refused once tampered.
    let req = CertRequest::parse(&csr).unwrap();
    assert_eq!(req.key_kind, kind);
    assert_eq!(req.key_bits, Some(bits));
    let mut bad = csr.clone();
    let n = bad.len();
    bad[n - 5] ^= 0x40; // inside the signature value
    assert!(
        CertRequest::parse(&bad).is_err(),
        "a CSR with a broken self-signature is refused"
    );

    // The certificate chains to the openssl root and carries our Node-ID and user name.
    let ca_der = from_pem(
        "CERTIFICATE",
        &String::from_utf8(read(&dir, "ca.pem")).unwrap(),
    )
    .unwrap();
    let cert = ReloadCertificate::parse(der.clone(), 16).unwrap();
    assert_eq!(cert.node_ids, vec![node]);
    assert_eq!(cert.user_name.as_deref(), Some("alice@openssl.example.org"));
    assert_eq!(cert.key_kind, kind);
    let trust = TrustPolicy {
        overlay: OVERLAY.into(),
        node_id_len: 16,
        roots: vec![Bytes::from(ca_der)],
        bad_nodes: vec![],
        self_signed: None,
    };
    trust.verify(&cert, &[], SystemTime::now()).unwrap();

    // The openssl key signs a message we verify.
    let creds = Credentials::new(SigningKey::from_pkcs8(&key).unwrap(), cert, node).unwrap();
    let mut m = ping();
    creds.sign_message(&mut m, vec![]).unwrap();
    let mut v = Verifier::new(trust, 8);
    assert_eq!(
        v.verify_message(&m, SystemTime::now()).unwrap().node_id,
        node
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn openssl_rsa_pki() {
    check(
        "rsa",
        &["-newkey", "rsa:2048"],
        &["-newkey", "rsa:2048"],
        KeyKind::Rsa,
        2048,
    );
}

#[test]
fn openssl_ecdsa_pki() {
    check(
        "ec",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        KeyKind::EcdsaP256,
        256,
    );
}
