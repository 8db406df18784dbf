//! A node's data directory: credentials stored owner-only and loaded back.

#[path = "../proto/tests/pki/mod.rs"]
mod pki;

use pki::TestCa;

#[test]
fn credentials_are_stored_owner_only_and_load_back() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("reload-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = TestCa::new(false);
    let creds = ca.node(false, 0x0c1d_5000, "kind-signer");
    reload_node::datadir::save_credentials(&dir, &creds).unwrap();
    for file in [
        reload_node::datadir::KEY_FILE,
        reload_node::datadir::CERT_FILE,
    ] {
        let mode = std::fs::metadata(dir.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let back = reload_node::datadir::load_credentials(&dir, 16).unwrap();
    assert_eq!(back.node_id, creds.node_id);
    assert_eq!(back.cert.der(), creds.cert.der());
    // The key really is the same: what it signs verifies with the old certificate.
    let sig = back.sign_with_identity(b"x").unwrap();
    let input = [
        &b"x"[..],
        &reload_wire::Wire::to_bytes(&sig.identity).unwrap(),
    ]
    .concat();
    reload_proto::sign::verify_with_certificate(
        sig.algorithm,
        &creds.cert,
        &input,
        &sig.signature_value,
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn key_log_file_sink_appends_lines_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("reload-keylog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys.log");
    let _ = std::fs::remove_file(&path);
    let sink = reload_node::datadir::key_log_file(&path);
    let line = reload_proto::link::NssKeyLog::line("CLIENT_RANDOM", &[1, 2], &[0xab; 4]);
    let log = reload_proto::link::NssKeyLog::new(sink);
    rustls::KeyLog::log(&log, "CLIENT_RANDOM", &[1, 2], &[0xab; 4]);
    rustls::KeyLog::log(&log, "CLIENT_RANDOM", &[1, 2], &[0xab; 4]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, format!("{line}\n{line}\n"));
    assert_eq!(line, "CLIENT_RANDOM 0102 abababab");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let _ = std::fs::remove_dir_all(&dir);
}
