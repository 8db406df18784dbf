//! A client nobody here wrote: `openssl req` makes the key and CSR, `curl` enrolls with
//! `Accept: application/pkix-cert`, `openssl verify -CAfile` accepts the certificate, whose
//! subjectAltName holds the `reload:` URI. (`.ci/run` installs openssl and curl.)

mod common;

use std::process::Command;

use common::*;
use reload_proto::identity::{ReloadCertificate, node_id_uri};

fn tool(name: &str) -> Command {
    assert!(
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {name}"))
            .status()
            .unwrap()
            .success(),
        "{name} is not installed (.ci/run installs it)"
    );
    Command::new(name)
}

fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn openssl_and_curl_enroll_and_openssl_verifies() {
    let o = Overlay::init("openssl", &[]);
    o.add_user("dave", PASSWORD);
    let server = o.start(&[]);
    let work = temp_dir("openssl");
    let key = work.join("key.pem");
    let csr = work.join("req.der");
    let cert_der = work.join("cert.der");
    let cert_pem = work.join("cert.pem");
    ok(tool("openssl")
        .args([
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/", "-keyout",
        ])
        .arg(&key)
        .args(["-outform", "DER", "-out"])
        .arg(&csr));

    let resolve = format!("{OVERLAY}:{}:127.0.0.1", o.port);
    let curl = |password: &str, out: &std::path::Path| {
        ok(tool("curl")
            .args(["--silent", "--show-error", "--max-time", "60", "--cacert"])
            .arg(o.ca_pem())
            .args(["--resolve", &resolve, "-H", "Accept: application/pkix-cert"])
            .args(["-F", "username=dave", "-F", &format!("password={password}")])
            .arg("-F")
            .arg(format!("csr=@{};type=application/pkcs10", csr.display()))
            .arg("-o")
            .arg(out)
            .args(["-w", "%{http_code} %{content_type}"])
            .arg(o.enroll_url()))
    };
    let status = curl(PASSWORD, &cert_der);
    assert_eq!(status, "200 application/pkix-cert");

    ok(tool("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(&cert_der)
        .arg("-out")
        .arg(&cert_pem));
    let verified = ok(tool("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(o.ca_pem())
        .arg(&cert_pem));
    assert!(verified.trim().ends_with(": OK"), "{verified}");
    // Purposes a node needs: TLS client and server.
    for purpose in ["sslclient", "sslserver"] {
        ok(tool("openssl")
            .arg("verify")
            .arg("-purpose")
            .arg(purpose)
            .arg("-CAfile")
            .arg(o.ca_pem())
            .arg(&cert_pem));
    }
    let text = ok(tool("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert_pem));
    let der = std::fs::read(&cert_der).unwrap();
    let cert = ReloadCertificate::parse(der, 16).unwrap();
    assert_eq!(cert.node_ids.len(), 1);
    let uri = node_id_uri(&cert.node_ids[0], OVERLAY);
    assert!(uri.starts_with("reload://0110"), "{uri}");
    assert!(text.contains(&format!("URI:{uri}")), "{text}");
    assert!(text.contains("email:dave@overlay.test"), "{text}");
    let subject = text
        .lines()
        .find(|l| l.trim_start().starts_with("Subject:"))
        .unwrap();
    assert_eq!(
        subject.trim(),
        "Subject:",
        "the subject is empty (RFC 6940 §11.3)"
    );
    // The certificate carries the key openssl made.
    let pubkey_cert = ok(tool("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(&cert_pem));
    let pubkey_key = ok(tool("openssl").args(["pkey", "-pubout", "-in"]).arg(&key));
    assert_eq!(pubkey_cert, pubkey_key);
    // The configuration is served to curl as well, with its media type.
    let ctype = ok(tool("curl")
        .args(["--silent", "--show-error", "--max-time", "60", "--cacert"])
        .arg(o.ca_pem())
        .args([
            "--resolve",
            &resolve,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{content_type}",
        ])
        .arg(o.config_url()));
    assert_eq!(ctype, "200 application/p2p-overlay+xml");
    // A wrong password gets the §11.3 token as a text/plain body.
    let refused = work.join("refused.txt");
    let status = curl("wrong password", &refused);
    assert_eq!(status, "403 text/plain; charset=utf-8");
    assert_eq!(
        std::fs::read_to_string(&refused).unwrap(),
        "failed_authentication"
    );
    drop(server);
}
