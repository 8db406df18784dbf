//! End to end over real HTTPS: `reload-enroll init`, `user add`, `serve`; the peer's
//! `reload-node enroll` (its library, parsed from a command line); the credentials then
//! sign a message that verifies under the overlay's trust policy.

mod common;

use std::time::SystemTime;

use bytes::Bytes;
use common::*;
use reload_node::enroll::{EnrollOptions, load_credentials, sha256_hex};
use reload_proto::check::{CheckOptions, check_document, trust_policy};
use reload_proto::config::ConfigDocument;
use reload_proto::identity::{ReloadCertificate, overlay_hash, self_signed_node_id};
use reload_proto::sign::Verifier;
use reload_wire::body::MessageBody;
use reload_wire::link::PingReq;
use reload_wire::{
    Destination, ForwardingHeader, Message, MessageContents, NodeId, SecurityBlock, Signature,
    Wire as _,
};

fn signed_ping(creds: &reload_proto::sign::Credentials) -> Message {
    let mut h = ForwardingHeader::new(overlay_hash(OVERLAY), 1, 100, 0x0102_0304_0506_0708);
    h.destination_list = vec![Destination::Node(NodeId::from_u128(5))];
    let body = MessageBody::PingReq(PingReq {
        padding: Bytes::from_static(b"hello"),
    });
    let mut m = Message {
        header: h,
        contents: MessageContents::from_body(&body).unwrap(),
        security: SecurityBlock {
            certificates: vec![],
            signature: Signature::none(),
        },
    };
    creds.sign_message(&mut m, vec![]).unwrap();
    m.header.length = m.encoded_len() as u32;
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_user_serve_enroll_then_sign_with_the_credentials() {
    let o = Overlay::init(
        "e2e",
        &["--bootstrap", "127.0.0.1:6084", "--bootstrap", "127.0.0.2"],
    );
    // init's configuration passes the full check: signatures, kinds, defaults.
    let doc_bytes = std::fs::read(o.dir.join("overlay.relo")).unwrap();
    let report = check_document(
        &doc_bytes,
        &CheckOptions {
            verify: true,
            previous: None,
            now: SystemTime::now(),
        },
    );
    assert!(report.is_clean(), "{:?}", report.problems);
    let doc = ConfigDocument::parse_bytes(&doc_bytes).unwrap();
    let c = &doc.configurations[0].config;
    assert_eq!(c.instance_name, OVERLAY);
    assert_eq!(c.topology_plugin, "CHORD-RELOAD");
    assert!(c.no_ice, "no-ice until ICE exists");
    assert_eq!(c.overlay_link_protocols, vec!["TLS".to_string()]);
    assert_eq!(c.enrollment_servers, vec![o.enroll_url()]);
    assert_eq!(c.bootstrap_nodes.len(), 2);
    assert_eq!(c.root_certs.len(), 1);
    assert_eq!(c.configuration_signers.len(), 1);
    assert_eq!(c.kind_signers.len(), 1);
    let kinds: Vec<_> = c.kinds.iter().map(|k| k.kind_id().unwrap().0).collect();
    assert_eq!(
        kinds,
        vec![0x1, 0x2, 0x3, 0x10],
        "SIP-REGISTRATION, TURN-SERVICE, CERTIFICATE_BY_NODE, CERTIFICATE_BY_USER"
    );
    assert!(c.kinds.iter().all(|k| k.signature.is_some()));
    // The fingerprint init printed is the configuration-signer's.
    let signer_pem = std::fs::read_to_string(o.dir.join("config-signer.crt")).unwrap();
    let signer_der = reload_proto::identity::from_pem("CERTIFICATE", &signer_pem).unwrap();
    let fp = sha256_hex(&signer_der);
    assert!(o.init_stdout.contains(&fp), "{}", o.init_stdout);
    // Keys are private.
    use std::os::unix::fs::PermissionsExt as _;
    for k in [
        "ca.key",
        "config-signer.key",
        "kind-signer.key",
        "https.key",
        "enroll.sqlite",
    ] {
        let mode = std::fs::metadata(o.dir.join(k))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{k}");
    }
    // init refuses to overwrite.
    let (ok, _, err) = run(&["init", "--overlay", OVERLAY, "--data-dir", o.d()], "");
    assert!(!ok && err.contains("refusing to overwrite"), "{err}");
    assert_eq!(
        std::fs::read(o.dir.join("overlay.relo")).unwrap(),
        doc_bytes
    );

    o.add_user("alice", PASSWORD);
    let (ok, _, err) = run(
        &[
            "user",
            "add",
            "alice",
            "--data-dir",
            o.d(),
            "--password-stdin",
        ],
        "another password\n",
    );
    assert!(!ok && err.contains("already exists"), "{err}");
    let server = o.start(&[]);

    // The configuration as served.
    let http = o.http();
    let r = answer(http.get(o.config_url()).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/p2p-overlay+xml");
    assert_eq!(r.body, doc_bytes);

    // Enroll as the CLI would (`reload-node enroll --overlay … --config-url … --resolve
    // overlay.test=127.0.0.1 --ca-cert … --user alice --data-dir … --timeout 60`; the
    // parsing itself is the CLI's, tested with the real binary): --ca-cert, first contact
    // trusts the overlay root.
    let node = temp_dir("e2e").join("alice");
    let mut args = EnrollOptions::for_overlay(OVERLAY);
    args.config_url = Some(o.config_url());
    args.resolve = vec!["overlay.test=127.0.0.1".into()];
    args.ca_cert = vec![o.ca_pem()];
    args.user = Some("alice".into());
    args.data_dir = Some(node.clone());
    args.timeout = 60;
    let out = enroll(&args, PASSWORD).await.unwrap();
    assert_eq!(out.overlay, OVERLAY);
    assert_eq!(out.node_ids.len(), 1);
    assert_eq!(out.user_name.as_deref(), Some("alice@overlay.test"));
    assert!(!out.self_signed);
    assert_eq!(out.signer_sha256, fp);
    assert!(
        out.trusted_on_first_use,
        "no pin was given: recorded on first use"
    );
    assert_eq!(
        std::fs::read_to_string(node.join("config-signer.sha256"))
            .unwrap()
            .trim(),
        fp
    );
    assert_eq!(std::fs::read(node.join("overlay.relo")).unwrap(), doc_bytes);
    let mode = std::fs::metadata(node.join("node.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // The certificate: RFC 6940 §11.3 profile, chains to the root (webpki incl. BasicConstraints).
    let (config, creds) = load_credentials(&node).unwrap();
    let cert = &creds.cert;
    assert_eq!(cert.node_ids, out.node_ids);
    assert_eq!(cert.user_name.as_deref(), Some("alice@overlay.test"));
    assert!(cert.unexpected_names.is_empty());
    assert!(!cert.is_ca);
    let (_, x) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
    assert!(
        x.subject().as_raw().len() <= 2,
        "empty subject, got {}",
        x.subject()
    );
    let eku = x.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && eku.server_auth);
    trust_policy(&config)
        .verify(cert, &[], SystemTime::now())
        .unwrap();

    // Start using the credentials: a signed Ping verifies under the overlay's trust policy.
    let m = signed_ping(&creds);
    let mut v = Verifier::new(trust_policy(&config), 8);
    let signer = v.verify_message(&m, SystemTime::now()).unwrap();
    assert_eq!(signer.node_id, out.node_ids[0]);
    assert_eq!(signer.cert.user_name.as_deref(), Some("alice@overlay.test"));

    // A returning user gets the same Node-IDs (§11.3); more on request, within the quota.
    let again = enroll(&args, PASSWORD).await.unwrap();
    assert_eq!(again.node_ids, out.node_ids);
    assert!(!again.trusted_on_first_use, "the recorded pin is used now");
    let mut two = args.clone();
    two.nodeids = 2;
    let two = enroll(&two, PASSWORD).await.unwrap();
    assert_eq!(two.node_ids.len(), 2);
    assert_eq!(two.node_ids[0], out.node_ids[0]);
    let (_, creds2) = load_credentials(&node).unwrap();
    let m = signed_ping(&creds2);
    Verifier::new(trust_policy(&config), 8)
        .verify_message(&m, SystemTime::now())
        .unwrap();

    // First contact with only the pinned configuration-signer: TLS is checked by name,
    // then the HTTPS certificate against the root of the pinned configuration.
    let pinned_dir = temp_dir("e2e").join("pinned");
    let mut pinned = args.clone();
    pinned.ca_cert.clear();
    pinned.config_signer_sha256 = Some(
        fp.to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":"),
    );
    pinned.data_dir = Some(pinned_dir.clone());
    let p = enroll(&pinned, PASSWORD).await.unwrap();
    assert_eq!(p.node_ids[0], out.node_ids[0]);
    assert!(!p.trusted_on_first_use);
    assert!(p.https_trust.contains("pinned"), "{}", p.https_trust);

    // A wrong pin is refused, and nothing is written.
    let wrong_dir = temp_dir("e2e").join("wrong-pin");
    let mut wrong = pinned.clone();
    wrong.config_signer_sha256 = Some("00".repeat(32));
    wrong.data_dir = Some(wrong_dir.clone());
    let e = enroll(&wrong, PASSWORD).await.unwrap_err();
    assert!(e.contains("refusing it") && e.contains(&fp), "{e}");
    assert!(!wrong_dir.join("node.key").exists());

    // Neither root nor pin: the system roots do not know the overlay CA; the error says what to do.
    let mut blind = pinned.clone();
    blind.config_signer_sha256 = None;
    blind.data_dir = Some(temp_dir("e2e").join("blind"));
    let e = enroll(&blind, PASSWORD).await.unwrap_err();
    assert!(
        e.contains("--ca-cert") && e.contains("--config-signer-sha256"),
        "{e}"
    );

    // Wrong password: the §11.3 token, and nothing about why (the server's log says).
    let e = enroll(&args, "not the password").await.unwrap_err();
    assert!(
        e.contains("failed_authentication") && !e.contains("wrong password"),
        "{e}"
    );

    // Self-signed is refused where the configuration does not permit it (§11.3.1).
    let mut ss = args.clone();
    ss.self_signed = true;
    let e = enroll(&ss, PASSWORD).await.unwrap_err();
    assert!(e.contains("does not permit self-signed"), "{e}");

    // status shows the user, the certificates and the sequence; the log tells what happened.
    let (ok, status, err) = run(&["status", "--data-dir", o.d()], "");
    assert!(ok, "{err}");
    assert!(status.contains("sequence 1"), "{status}");
    assert!(
        status.contains("alice") && status.contains(&out.node_ids[0].to_hex()),
        "{status}"
    );
    assert!(status.contains("certificates: "), "{status}");
    let (users, ids, certs) = o.counts();
    assert_eq!(users, 1);
    assert_eq!(ids, 2 + 2, "two signer Node-IDs and alice's two");
    assert_eq!(certs, 4 + 4, "CA, two signers, HTTPS, and four enrollments");
    let log = server.log();
    assert!(
        log.contains("issued certificate") && log.contains("alice@overlay.test"),
        "{log}"
    );
    assert!(
        log.contains("enrollment refused") && log.contains("wrong password"),
        "{log}"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_configuration_signer_is_refused_after_first_use() {
    // Two overlays of the same name with different signers, on different ports.
    let a = Overlay::init("tofu-a", &[]);
    let b = Overlay::init("tofu-b", &[]);
    a.add_user("bob", PASSWORD);
    b.add_user("bob", PASSWORD);
    let sa = a.start(&[]);
    let sb = b.start(&[]);
    let node = temp_dir("tofu").join("bob");
    let first = enroll(&a.client_args(&node, "bob"), PASSWORD)
        .await
        .unwrap();
    assert!(first.trusted_on_first_use);
    // The same data directory now meets another signer (and another root, trusted by
    // --ca-cert so that TLS is not what stops it).
    let mut args = b.client_args(&node, "bob");
    args.ca_cert.push(b.ca_pem());
    // With the first configuration stored, the RFC rule refuses it: a new configuration
    // must be signed by a configuration-signer of the one in use (§11.1).
    let e = enroll(&args, PASSWORD).await.unwrap_err();
    assert!(e.contains("configuration signature rejected"), "{e}");
    // Without the stored configuration, the recorded fingerprint still refuses it.
    std::fs::remove_file(node.join("overlay.relo")).unwrap();
    let e = enroll(&args, PASSWORD).await.unwrap_err();
    assert!(
        e.contains("recorded in") && e.contains(&first.signer_sha256),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(node.join("config-signer.sha256"))
            .unwrap()
            .trim(),
        first.signer_sha256,
        "the pin is unchanged"
    );
    drop((sa, sb));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_credentials_where_the_configuration_permits_them() {
    let o = Overlay::init(
        "self",
        &["--self-signed-permitted", "sha256", "--key-type", "p256"],
    );
    let server = o.start(&[]);
    let node = temp_dir("self").join("carol");
    let mut args = o.client_args(&node, "carol");
    args.self_signed = true;
    args.key_type = reload_node::enroll::KeyType::P256;
    let out = enroll(&args, "unused").await.unwrap();
    assert!(out.self_signed);
    let (config, creds) = load_credentials(&node).unwrap();
    assert!(config.self_signed_permitted.is_some());
    let cert: &ReloadCertificate = &creds.cert;
    assert!(cert.self_issued);
    // §11.3.1: the Node-ID is the digest of the SubjectPublicKeyInfo.
    let want = self_signed_node_id(
        reload_proto::identity::SelfSignedDigest::Sha256,
        &cert.spki,
        1,
        1,
        16,
    )
    .unwrap();
    assert_eq!(cert.node_ids, vec![want]);
    trust_policy(&config)
        .verify(cert, &[], SystemTime::now())
        .unwrap();
    let m = signed_ping(&creds);
    Verifier::new(trust_policy(&config), 8)
        .verify_message(&m, SystemTime::now())
        .unwrap();
    // Nothing was enrolled at the server.
    assert_eq!(o.counts().2, 4);
    drop(server);

    // Out of band (§11.2 last paragraph): the document as a file, trusted by the pinned
    // signer; no server is contacted.
    let signer_pem = std::fs::read_to_string(o.dir.join("config-signer.crt")).unwrap();
    let fp = sha256_hex(&reload_proto::identity::from_pem("CERTIFICATE", &signer_pem).unwrap());
    let mut file = reload_node::enroll::EnrollOptions::for_overlay(OVERLAY);
    file.config_file = Some(o.dir.join("overlay.relo"));
    file.config_signer_sha256 = Some(fp.clone());
    file.self_signed = true;
    file.user = Some("carol".into());
    file.data_dir = Some(temp_dir("self").join("file"));
    let out = enroll(&file, "unused").await.unwrap();
    assert!(out.self_signed && !out.trusted_on_first_use);
    assert_eq!(out.signer_sha256, fp);
    // A tampered file is refused with the reason.
    let tampered_path = temp_dir("self").join("tampered.relo");
    let text = std::fs::read_to_string(o.dir.join("overlay.relo")).unwrap();
    std::fs::write(
        &tampered_path,
        text.replace("<no-ice>true</no-ice>", "<no-ice>false</no-ice>"),
    )
    .unwrap();
    file.config_file = Some(tampered_path);
    file.data_dir = Some(temp_dir("self").join("tampered"));
    let e = enroll(&file, "unused").await.unwrap_err();
    assert!(e.contains("signature"), "{e}");
}

#[test]
fn user_commands_and_passwords_never_on_the_command_line() {
    let o = Overlay::init("users", &[]);
    o.add_user("frank", PASSWORD);
    // No way to give the password in argv.
    let (ok, _, err) = run(
        &[
            "user",
            "add",
            "grace",
            "--data-dir",
            o.d(),
            "--password",
            "secret123",
        ],
        "",
    );
    assert!(!ok && err.contains("unexpected argument"), "{err}");
    let (ok, _, err) = run(
        &["user", "add", "grace", "secret123", "--data-dir", o.d()],
        "",
    );
    assert!(!ok && err.contains("unexpected argument"), "{err}");
    // Without a terminal (setsid: no controlling tty to prompt on) and without
    // --password-stdin, a clear error.
    let out = std::process::Command::new("setsid")
        .args(["--wait", bin(), "user", "add", "grace", "--data-dir", o.d()])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("setsid (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--password-stdin"),
        "{err}"
    );
    // Too short, bad names, unknown users.
    let (ok, _, err) = run(
        &[
            "user",
            "add",
            "grace",
            "--data-dir",
            o.d(),
            "--password-stdin",
        ],
        "short\n",
    );
    assert!(!ok && err.contains("at least 8"), "{err}");
    let (ok, _, err) = run(
        &[
            "user",
            "add",
            "bad name",
            "--data-dir",
            o.d(),
            "--password-stdin",
        ],
        "long enough\n",
    );
    assert!(!ok && err.contains("invalid account name"), "{err}");
    let (ok, _, err) = run(&["user", "disable", "nobody", "--data-dir", o.d()], "");
    assert!(!ok && err.contains("no user"), "{err}");
    // passwd, disable, enable, list.
    let store = |pw: &str| {
        let s = reload_enroll::store::Store::open(&o.dir.join("enroll.sqlite")).unwrap();
        let (hash, disabled) = s.user("frank").unwrap().unwrap();
        (
            reload_enroll::server::verify_password(&hash, pw.as_bytes()),
            disabled,
        )
    };
    assert_eq!(store(PASSWORD), (true, false));
    let (ok, _, err) = run(
        &[
            "user",
            "passwd",
            "frank",
            "--data-dir",
            o.d(),
            "--password-stdin",
        ],
        "a new password\n",
    );
    assert!(ok, "{err}");
    assert_eq!(store(PASSWORD), (false, false));
    assert_eq!(store("a new password"), (true, false));
    let hash = reload_enroll::store::Store::open(&o.dir.join("enroll.sqlite"))
        .unwrap()
        .user("frank")
        .unwrap()
        .unwrap()
        .0;
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let (ok, _, _) = run(&["user", "disable", "frank", "--data-dir", o.d()], "");
    assert!(ok);
    let (_, list, _) = run(&["user", "list", "--data-dir", o.d()], "");
    assert!(list.contains("frank\tdisabled"), "{list}");
    let (ok, _, _) = run(&["user", "enable", "frank", "--data-dir", o.d()], "");
    assert!(ok);
    let (_, list, _) = run(&["user", "list", "--data-dir", o.d()], "");
    assert!(list.contains("frank\tenabled"), "{list}");
    // Commands on a directory without an overlay say so.
    let empty = temp_dir("users").join("none");
    let (ok, _, err) = run(&["user", "list", "--data-dir", empty.to_str().unwrap()], "");
    assert!(!ok && err.contains("reload-enroll init"), "{err}");
    // --help explains.
    let (_, help, _) = run(&["serve", "--help"], "");
    for w in [
        "/.well-known/reload-config",
        "failed_authentication",
        "--max-body-bytes",
        "--max-node-ids",
        "--max-failed-logins",
        "--request-timeout",
    ] {
        assert!(help.contains(w), "serve --help lacks {w}");
    }
}
