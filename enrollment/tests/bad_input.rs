//! Every refusal: its specific status, §11.3 token and reason, and the database unchanged.

mod common;

use std::io::Read as _;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_request_has_its_error_and_changes_nothing() {
    let o = Overlay::init("bad", &[]);
    o.add_user("alice", PASSWORD);
    o.add_user("mallory", PASSWORD);
    o.add_user("victim", PASSWORD);
    let (ok, _, err) = run(&["user", "disable", "mallory", "--data-dir", o.d()], "");
    assert!(ok, "{err}");
    let server = o.start(&[
        "--max-body-bytes",
        "8192",
        "--max-node-ids",
        "3",
        "--max-failed-logins",
        "3",
        "--lockout",
        "600",
        "--handshake-timeout",
        "1",
        "--request-timeout",
        "2",
    ]);
    let http = o.http();
    let url = o.enroll_url();
    let cert = Some("application/pkix-cert");
    let before = o.counts();
    let (good_csr, _) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, vec![]);

    // (what, answer, status, body, detail fragment). The three failed authentications say
    // nothing more than the token (no detail header: the reason is the body); the log says
    // which it was.
    let mut cases: Vec<(&str, Answer, u16, &str, &str)> = Vec::new();

    let a = post(
        &http,
        &url,
        Form::new("alice", "wrong password!", good_csr.clone()),
        cert,
    )
    .await;
    cases.push((
        "wrong password",
        a,
        403,
        "failed_authentication",
        "failed_authentication",
    ));
    let a = post(
        &http,
        &url,
        Form::new("nobody", PASSWORD, good_csr.clone()),
        cert,
    )
    .await;
    cases.push((
        "unknown user",
        a,
        403,
        "failed_authentication",
        "failed_authentication",
    ));
    let a = post(
        &http,
        &url,
        Form::new("mallory", PASSWORD, good_csr.clone()),
        cert,
    )
    .await;
    cases.push((
        "disabled user",
        a,
        403,
        "failed_authentication",
        "failed_authentication",
    ));

    let a = post(
        &http,
        &url,
        Form::new(
            "alice",
            PASSWORD,
            b"this is not a certificate request".to_vec(),
        ),
        cert,
    )
    .await;
    cases.push(("malformed CSR", a, 403, "bad_CSR", "PKCS#10"));
    let mut tampered = good_csr.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let a = post(&http, &url, Form::new("alice", PASSWORD, tampered), cert).await;
    cases.push((
        "CSR with a bad self-signature",
        a,
        403,
        "bad_CSR",
        "self-signature",
    ));

    // RSA-1024 from openssl (rcgen will not make one).
    let dir = temp_dir("bad");
    let small = dir.join("small.der");
    let st = std::process::Command::new("openssl")
        .args([
            "req", "-new", "-newkey", "rsa:1024", "-nodes", "-subj", "/", "-keyout",
        ])
        .arg(dir.join("small.key"))
        .args(["-outform", "DER", "-out"])
        .arg(&small)
        .output()
        .expect("openssl (installed by .ci/run)");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let a = post(
        &http,
        &url,
        Form::new("alice", PASSWORD, std::fs::read(&small).unwrap()),
        cert,
    )
    .await;
    cases.push((
        "RSA key too small",
        a,
        403,
        "bad_CSR",
        "1024 bits is too small",
    ));
    let (p384, _) = csr(&rcgen::PKCS_ECDSA_P384_SHA384, vec![]);
    let a = post(&http, &url, Form::new("alice", PASSWORD, p384), cert).await;
    cases.push(("P-384 key", a, 403, "bad_CSR", "unsupported key type"));

    for n in ["4", "0", "many", "-1"] {
        let mut f = Form::new("alice", PASSWORD, good_csr.clone());
        f.nodeids = Some(n);
        let a = post(&http, &url, f, cert).await;
        cases.push((
            "too many / bad nodeids",
            a,
            403,
            "Node-IDs_not_available",
            "per-user quota",
        ));
    }

    let (other_name, _) = csr(
        &rcgen::PKCS_ECDSA_P256_SHA256,
        vec![email("bob@overlay.test")],
    );
    let a = post(&http, &url, Form::new("alice", PASSWORD, other_name), cert).await;
    cases.push((
        "another user name",
        a,
        403,
        "username_not_available",
        "bob@overlay.test",
    ));
    let (dns_name, _) = csr(
        &rcgen::PKCS_ECDSA_P256_SHA256,
        vec![rcgen::SanType::DnsName("overlay.test".try_into().unwrap())],
    );
    let a = post(&http, &url, Form::new("alice", PASSWORD, dns_name), cert).await;
    cases.push((
        "a dNSName",
        a,
        403,
        "username_not_available",
        "other than the user name",
    ));

    let a = post(
        &http,
        &url,
        Form::new("alice", PASSWORD, vec![0x30; 20_000]),
        cert,
    )
    .await;
    cases.push((
        "oversized body",
        a,
        413,
        "",
        "larger than the limit of 8192 bytes",
    ));

    let a = answer(
        http.post(&url)
            .header("accept", "application/pkix-cert")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("username=alice&password=x&csr=y")
            .send()
            .await
            .unwrap(),
    )
    .await;
    cases.push(("urlencoded form", a, 415, "", "multipart/form-data"));
    let mut f = Form::new("alice", PASSWORD, good_csr.clone());
    f.csr = Some((good_csr.clone(), "text/plain"));
    let a = post(&http, &url, f, cert).await;
    cases.push((
        "csr part of the wrong type",
        a,
        415,
        "",
        "application/pkcs10",
    ));
    let a = post(
        &http,
        &url,
        Form::new("alice", PASSWORD, good_csr.clone()),
        Some("text/html"),
    )
    .await;
    cases.push(("no application/pkix-cert in Accept", a, 406, "", "Accept"));
    let mut f = Form::new("alice", PASSWORD, good_csr.clone());
    f.csr = None;
    let a = post(&http, &url, f, cert).await;
    cases.push(("no csr field", a, 400, "", "missing form field csr"));
    let mut f = Form::new("alice", PASSWORD, good_csr.clone());
    f.password = None;
    let a = post(&http, &url, f, cert).await;
    cases.push((
        "no password field",
        a,
        400,
        "",
        "missing form field password",
    ));

    // Failed-password throttling: after 3 failures the account is locked, even for the
    // right password, with Retry-After.
    for _ in 0..3 {
        let a = post(
            &http,
            &url,
            Form::new("victim", "guess guess", good_csr.clone()),
            cert,
        )
        .await;
        assert_eq!(
            (a.status, a.text().as_str()),
            (403, "failed_authentication")
        );
    }
    let a = post(
        &http,
        &url,
        Form::new("victim", PASSWORD, good_csr.clone()),
        cert,
    )
    .await;
    assert!(
        a.retry_after
            .as_deref()
            .is_some_and(|s| s.parse::<u64>().unwrap() > 500),
        "{a:?}"
    );
    cases.push(("locked-out account", a, 429, "", "too many failed logins"));

    for (what, a, status, token, detail) in &cases {
        assert_eq!(a.status, *status, "{what}: {a:?} {}", a.text());
        if !token.is_empty() {
            assert_eq!(
                a.text(),
                *token,
                "{what}: the 403 body is exactly the token (§11.3)"
            );
            assert!(
                a.content_type.starts_with("text/plain"),
                "{what}: {}",
                a.content_type
            );
        }
        let reason = if a.detail.is_empty() {
            a.text()
        } else {
            a.detail.clone()
        };
        assert!(
            reason.contains(detail),
            "{what}: reason {reason:?} lacks {detail:?}"
        );
    }
    assert_eq!(
        o.counts(),
        before,
        "no refused request changed the database"
    );

    // Not the enrollment resource at all.
    let a = answer(
        http.get(format!("https://{OVERLAY}:{}/nope", o.port))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 404);
    let a = answer(http.post(o.config_url()).send().await.unwrap()).await;
    assert_eq!(a.status, 405);

    // A connection that never starts TLS is closed after the handshake timeout (1 s).
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", o.port)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 16];
    let n = raw
        .read(&mut buf)
        .expect("the server closes the idle connection before 20 s");
    assert_eq!(n, 0);

    // A request whose body never comes is answered 408 after the request timeout (2 s).
    let slow = slow_request(&o);
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    assert_eq!(o.counts(), before);

    // The server said why, each time.
    let log = server.log();
    for reason in [
        "wrong password",
        "unknown user",
        "account disabled",
        "too small",
        "failed-login limit reached",
    ] {
        assert!(log.contains(reason), "log lacks {reason:?}:\n{log}");
    }

    // And a good request still works: PEM is accepted too.
    let (pem_csr, _) = csr(
        &rcgen::PKCS_ECDSA_P256_SHA256,
        vec![email("alice@overlay.test")],
    );
    let pem = reload_proto::identity::to_pem("CERTIFICATE REQUEST", &pem_csr).into_bytes();
    let mut f = Form::new("alice", PASSWORD, pem);
    f.nodeids = Some("3");
    let a = post(&http, &url, f, cert).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.content_type, "application/pkix-cert");
    let c = reload_proto::identity::ReloadCertificate::parse(a.body.clone(), 16).unwrap();
    assert_eq!(c.node_ids.len(), 3);
    assert_eq!(c.user_name.as_deref(), Some("alice@overlay.test"));
    let after = o.counts();
    assert_eq!(after, (before.0, before.1 + 3, before.2 + 1));
    drop(server);
}

/// Sends the header of an enrollment POST over TLS and then nothing; returns what the
/// server answers (read for at most 20 s).
fn slow_request(o: &Overlay) -> String {
    use std::io::Write as _;
    use std::sync::Arc;
    let pem = std::fs::read_to_string(o.ca_pem()).unwrap();
    let ca = reload_proto::identity::from_pem("CERTIFICATE", &pem).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.into()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), OVERLAY.try_into().unwrap()).unwrap();
    let sock = std::net::TcpStream::connect(("127.0.0.1", o.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(
        tls,
        "POST /enroll HTTP/1.1\r\nHost: {OVERLAY}\r\nAccept: application/pkix-cert\r\n\
         Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 5000\r\n\r\n--xyz\r\n"
    )
    .unwrap();
    tls.flush().unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match tls.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}
