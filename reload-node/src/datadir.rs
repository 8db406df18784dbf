//! A node's data directory (written by `reload-node enroll`, read by `reload-node run`):
//! what lives where, and the file IO the sans-IO core never does.
//!
//! | file | what | mode |
//! |---|---|---|
//! | `node.key` | private key, PKCS#8 PEM | 0600 |
//! | `node.crt` | certificate, PEM | 0600 |
//! | `overlay.relo` | the signed configuration document in use (§11.1) | 0600 |
//! | `config-signer.sha256` | fingerprint of the configuration-signer trusted on enrollment | 0600 |
//! | `control.sock` | the running peer's control socket | 0600 |

use std::path::Path;

use reload_proto::config::OverlayConfig;
use reload_proto::link::KeyLogSink;
use reload_proto::sign::Credentials;

/// The private key.
pub const KEY_FILE: &str = "node.key";
/// The certificate.
pub const CERT_FILE: &str = "node.crt";
/// The configuration document.
pub const CONFIG_FILE: &str = "overlay.relo";
/// The configuration-signer's pinned fingerprint.
pub const PIN_FILE: &str = "config-signer.sha256";

/// Writes a file readable and writable by its owner only (mode 0600), replacing it
/// atomically (a temporary file, synced, renamed over it).
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail("create", e))?;
    f.write_all(contents).map_err(|e| fail("write", e))?;
    f.sync_all().map_err(|e| fail("sync", e))?;
    std::fs::rename(&tmp, path).map_err(|e| fail("replace", e))
}

fn read_text(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not a PEM file", path.display()))
}

/// Stores the key and certificate, owner-only.
pub fn save_credentials(dir: &Path, creds: &Credentials) -> Result<(), String> {
    let (key, cert) = creds.to_pem().map_err(|e| e.to_string())?;
    write_private_file(&dir.join(KEY_FILE), key.as_bytes())?;
    write_private_file(&dir.join(CERT_FILE), cert.as_bytes())
}

/// Loads the key and certificate; signs as the certificate's first Node-ID.
pub fn load_credentials(dir: &Path, node_id_len: usize) -> Result<Credentials, String> {
    let key = read_text(&dir.join(KEY_FILE))?;
    let cert = read_text(&dir.join(CERT_FILE))?;
    Credentials::from_pem(&key, &cert, node_id_len, None)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// The configuration document in use and what it says.
pub fn load_config(dir: &Path) -> Result<(Vec<u8>, OverlayConfig), String> {
    let path = dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{} holds no configuration: run reload-node enroll",
                dir.display()
            )
        } else {
            format!("cannot read {}: {e}", path.display())
        }
    })?;
    let doc = reload_proto::config::ConfigDocument::parse_bytes(&bytes).map_err(|p| {
        format!(
            "{}: {}",
            path.display(),
            p.first().map(|p| p.to_string()).unwrap_or_default()
        )
    })?;
    let config = doc
        .configurations
        .into_iter()
        .next()
        .map(|c| c.config)
        .ok_or_else(|| format!("{}: no configuration element", path.display()))?;
    Ok((bytes, config))
}

/// A key log sink appending lines to `path` (created mode 0600), as `SSLKEYLOGFILE` files
/// are written. A debugging aid: a failed write never fails a link.
pub fn key_log_file(path: &Path) -> KeyLogSink {
    let path = path.to_path_buf();
    KeyLogSink::new(move |line: &str| {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path);
        if let Ok(mut f) = f {
            let _ = writeln!(f, "{line}");
        }
    })
}
