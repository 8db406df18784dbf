//! The server's data directory: what lives where, and how it is written.
//!
//! | file | what | mode |
//! |---|---|---|
//! | `overlay.relo` | the signed configuration document served at `/.well-known/reload-config` | 0644 |
//! | `ca.crt`, `ca.key` | the overlay root CA (the configuration's `root-cert`) | 0644, 0600 |
//! | `config-signer.crt`, `config-signer.key` | the configuration-signer identity | 0644, 0600 |
//! | `kind-signer.crt`, `kind-signer.key` | the kind-signer identity | 0644, 0600 |
//! | `https.crt`, `https.key` | the HTTPS server certificate (DNS name = overlay name), issued by the CA | 0644, 0600 |
//! | `enroll.sqlite` (+ `-wal`, `-shm`) | accounts, Node-IDs, issued certificates | 0600 |

use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use reload_proto::identity::{from_pem, to_pem};

use crate::{Error, Result};

/// The files of one overlay's data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("overlay.relo")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }
    pub fn config_signer_cert(&self) -> PathBuf {
        self.root.join("config-signer.crt")
    }
    pub fn config_signer_key(&self) -> PathBuf {
        self.root.join("config-signer.key")
    }
    pub fn kind_signer_cert(&self) -> PathBuf {
        self.root.join("kind-signer.crt")
    }
    pub fn kind_signer_key(&self) -> PathBuf {
        self.root.join("kind-signer.key")
    }
    pub fn https_cert(&self) -> PathBuf {
        self.root.join("https.crt")
    }
    pub fn https_key(&self) -> PathBuf {
        self.root.join("https.key")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("enroll.sqlite")
    }

    /// Every file `init` creates.
    pub fn all_files(&self) -> Vec<PathBuf> {
        vec![
            self.config(),
            self.ca_cert(),
            self.ca_key(),
            self.config_signer_cert(),
            self.config_signer_key(),
            self.kind_signer_cert(),
            self.kind_signer_key(),
            self.https_cert(),
            self.https_key(),
            self.database(),
        ]
    }

    /// The first file of an overlay already present, if any.
    pub fn existing_overlay_file(&self) -> Option<PathBuf> {
        self.all_files().into_iter().find(|p| p.exists())
    }

    /// Creates the directory (mode 0700) if needed.
    pub fn create(&self) -> Result<()> {
        if self.root.is_dir() {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|e| {
                Error::new(format!(
                    "cannot create data directory {}: {e}",
                    self.root.display()
                ))
            })
    }

    /// Refuses to go on when the directory holds no overlay.
    pub fn require_initialized(&self) -> Result<()> {
        if !self.config().exists() || !self.database().exists() {
            return Err(Error::new(format!(
                "{} holds no overlay (no overlay.relo / enroll.sqlite): run `reload-enroll init --overlay NAME --data-dir {}` first",
                self.root.display(),
                self.root.display()
            )));
        }
        Ok(())
    }
}

pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))
}

/// Reads the DER of a PEM file with `label`.
pub fn read_pem(path: &Path, label: &str) -> Result<Vec<u8>> {
    let text = String::from_utf8(read(path)?)
        .map_err(|_| Error::new(format!("{} is not a PEM file", path.display())))?;
    from_pem(label, &text)
        .ok_or_else(|| Error::new(format!("{}: no {label} PEM block", path.display())))
}

/// Writes `contents` to `path` atomically (a temporary file, synced, renamed over it) with
/// file mode `mode`, whatever the umask.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::io::Write as _;
    let fail = |what: &str, e: std::io::Error| {
        Error::new(format!("cannot {what} {}: {e}", path.display()))
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail("create", e))?;
    f.write_all(contents).map_err(|e| fail("write", e))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail("set the permissions of", e))?;
    f.sync_all().map_err(|e| fail("sync", e))?;
    std::fs::rename(&tmp, path).map_err(|e| fail("replace", e))
}

/// Writes a private key (PKCS#8) as PEM, mode 0600, atomically.
pub fn write_key(path: &Path, pkcs8: &[u8]) -> Result<()> {
    write_atomic(path, to_pem("PRIVATE KEY", pkcs8).as_bytes(), 0o600)
}

/// Writes a public file (certificate, configuration) mode 0644, atomically.
pub fn write_public(path: &Path, contents: &[u8]) -> Result<()> {
    write_atomic(path, contents, 0o644)
}

/// Writes a certificate as PEM, mode 0644.
pub fn write_cert(path: &Path, der: &[u8]) -> Result<()> {
    write_public(path, to_pem("CERTIFICATE", der).as_bytes())
}

/// Creates an empty file with mode 0600 (before SQLite opens it, so the password hashes
/// are never world-readable).
pub fn create_private_empty(path: &Path) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(|_| ())
        .map_err(|e| Error::new(format!("cannot create {}: {e}", path.display())))
}
