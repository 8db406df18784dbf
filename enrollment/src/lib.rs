//! # reload-enroll
//!
//! The enrollment and configuration server of RFC 6940 §11.2–§11.3, for an operator who
//! starts an overlay from nothing:
//!
//! - [`init`]: the overlay's root CA, the configuration-signer and kind-signer identities,
//!   the HTTPS server certificate (issued by the overlay CA for the overlay name, §11.3) and a
//!   signed configuration document with sensible defaults;
//! - [`store`]: accounts (argon2id password hashes), the user → Node-ID mapping and every
//!   issued certificate, in one SQLite file under the data directory;
//! - [`server`]: HTTPS (rustls) serving `GET /.well-known/reload-config` (§11.2) and the
//!   enrollment POST (§11.3), with body-size, Node-ID-quota, failed-password and time limits;
//! - [`ca`]: the certificates themselves (RFC 6940 §11.3 profile: empty subject, random
//!   Node-IDs as `reload:` URIs, the user name as rfc822Name, client+server auth).
//!
//! The peer's side (`reload-node enroll`) lives in `reload_node::enroll`.

pub mod ca;
pub mod datadir;
#[doc(hidden)]
pub mod fuzzing;
pub mod init;
pub mod names;
pub mod server;
pub mod store;
pub mod throttle;

use std::fmt;

/// Path of the configuration document (RFC 6940 §11.2, §14.1).
pub const WELL_KNOWN_PATH: &str = "/.well-known/reload-config";
/// Default path of the enrollment POST (the configuration's `enrollment-server` names it).
pub const DEFAULT_ENROLL_PATH: &str = "/enroll";
/// The configuration document's media type (§11.1, §14.x).
pub const CONFIG_MEDIA_TYPE: &str = "application/p2p-overlay+xml";
/// The certificate's media type (§11.3, RFC 2585).
pub const CERT_MEDIA_TYPE: &str = "application/pkix-cert";
/// The certificate request's media type (§11.3, RFC 2311).
pub const CSR_MEDIA_TYPE: &str = "application/pkcs10";
/// TCP port registered as `reload-config` (RFC 6940 §14.2).
pub const DEFAULT_PORT: u16 = 6084;
/// Response header carrying the human-readable reason of a refusal. The §11.3 body stays the
/// bare token; this header tells the operator and the user why.
pub const DETAIL_HEADER: &str = "reload-enroll-detail";

/// An error of the enrollment server's commands: a sentence an operator can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error(format!("database error: {e}"))
    }
}

impl From<reload_proto::identity::IdentityError> for Error {
    fn from(e: reload_proto::identity::IdentityError) -> Self {
        Error(e.to_string())
    }
}

impl From<reload_proto::sign::SignError> for Error {
    fn from(e: reload_proto::sign::SignError) -> Self {
        Error(e.to_string())
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error(format!("certificate generation failed: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    ::hex::encode(b)
}

/// SHA-256 of `b`, in hex (the form `--config-signer-sha256` takes).
pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(b))
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// RFC 3339 form of a Unix time, for listings.
pub fn fmt_unix(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(reload_proto::config::format_datetime)
        .unwrap_or_else(|_| t.to_string())
}
