//! `reload-enroll serve`: the configuration and enrollment server over HTTPS (rustls).
//!
//! - `GET /.well-known/reload-config` answers the signed configuration document as
//!   `application/p2p-overlay+xml` (RFC 6940 §11.2, §14.1).
//! - `POST <path of the configuration's enrollment-server URL>` is the enrollment of §11.3:
//!   `multipart/form-data` with `username`, `password`, optional `nodeids` and `csr`
//!   (`application/pkcs10`, DER or PEM), `Accept: application/pkix-cert`. Success is `200`
//!   with the DER certificate as `application/pkix-cert`; a refusal of §11.3 is `403` with a
//!   `text/plain` body that is exactly one of the tokens `failed_authentication`,
//!   `username_not_available`, `Node-IDs_not_available`, `bad_CSR`. Requests that are not
//!   enrollment requests at all get a plain 4xx (415 wrong content type, 406 no
//!   `application/pkix-cert` in Accept, 400 malformed form, 413 body too large, 429 throttled,
//!   408 too slow). Every refusal is logged with its reason; every refusal but
//!   `failed_authentication` also carries the reason in a `reload-enroll-detail` header.
//!
//! `failed_authentication` is one answer, whatever the cause — no such account, a name that
//! cannot be an account, a wrong password, a disabled account (with or without the right
//! password), an account disabled or removed while its certificate was being made: the same
//! status, body and headers, so that a client learns nothing about which accounts exist or
//! are disabled. Only the server's log says which it was.
//!
//! Order of the checks: the HTTP envelope (content type, Accept, form), then the account
//! name (a name that cannot be an account is a failed authentication, throttled by address
//! only, without hashing anything: its length and characters are the client's own choice
//! and say nothing about the accounts), then the throttle, then the password (argon2id, on a
//! bounded pool of blocking threads; unknown accounts are hashed against a dummy so that
//! they take as long), then the CSR, the requested names and the Node-ID count, and finally
//! the issuance transaction. Nothing is written to the database before that transaction,
//! and it commits only if the certificate was made in time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest as _, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use reload_proto::config::ConfigDocument;
use reload_proto::identity::{CertRequest, IdentityError, ReloadCertificate, from_pem};
use reload_wire::NodeId;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::ca::{BACKDATE, Ca, NodeCertSpec, RequestedKey, random_serial, weak_key_reason};
use crate::datadir::{DataDir, read, read_pem};
use crate::names::{MAX_ACCOUNT_NAME, user_name};
use crate::store::{IssueError, IssuedCert, Store};
use crate::throttle::{AccountKey, Throttle, ThrottleConfig};
use crate::{
    CERT_MEDIA_TYPE, CONFIG_MEDIA_TYPE, CSR_MEDIA_TYPE, DETAIL_HEADER, Error, Result,
    WELL_KNOWN_PATH,
};

/// The §11.3 refusal tokens.
pub const FAILED_AUTHENTICATION: &str = "failed_authentication";
pub const USERNAME_NOT_AVAILABLE: &str = "username_not_available";
pub const NODE_IDS_NOT_AVAILABLE: &str = "Node-IDs_not_available";
pub const BAD_CSR: &str = "bad_CSR";

/// Most form fields read from one request.
const MAX_FORM_FIELDS: usize = 8;

/// The limits and knobs of `serve`.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Most Node-IDs one account may hold (`Node-IDs_not_available` beyond).
    pub max_node_ids_per_user: usize,
    /// Validity of issued certificates (capped at the CA's own).
    pub cert_validity: time::Duration,
    /// Time a request may take from its first byte to its answer (408 beyond); also the
    /// limit for reading the request header.
    pub request_timeout: Duration,
    /// Time a TLS handshake may take.
    pub handshake_timeout: Duration,
    pub throttle: ThrottleConfig,
    /// Password hashes computed at once (each argon2id hash takes 19 MiB).
    pub max_concurrent_hashes: usize,
}

impl ServeOptions {
    pub fn new(listen: SocketAddr) -> Self {
        ServeOptions {
            listen,
            max_body_bytes: 64 * 1024,
            max_node_ids_per_user: 4,
            cert_validity: time::Duration::days(365),
            request_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            throttle: ThrottleConfig::default(),
            max_concurrent_hashes: 4,
        }
    }
}

/// Everything `serve` loads from the data directory.
pub struct Overlay {
    pub name: String,
    pub document: Bytes,
    pub enroll_paths: Vec<String>,
    pub sequence: u16,
    pub ca: Ca,
    pub ca_not_after: i64,
    pub https_cert: Vec<u8>,
    https_key: Vec<u8>,
}

impl std::fmt::Debug for Overlay {
    /// Without the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("name", &self.name)
            .field("enroll_paths", &self.enroll_paths)
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

/// The path of an `https://host[:port]/path` URL ("/" when there is none).
pub fn url_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let path = match rest.find('/') {
        Some(i) => &rest[i..],
        None => "/",
    };
    let path = path.split(['?', '#']).next().unwrap_or("/");
    Some(if path.is_empty() {
        "/".into()
    } else {
        path.to_string()
    })
}

impl Overlay {
    /// Loads the overlay of a data directory made by `init`.
    pub fn load(dir: &DataDir) -> Result<Overlay> {
        dir.require_initialized()?;
        let document = read(&dir.config())?;
        let doc = ConfigDocument::parse_bytes(&document).map_err(|p| {
            Error::new(format!(
                "{} is not a valid configuration document: {}",
                dir.config().display(),
                p.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?;
        let config = doc
            .configurations
            .first()
            .map(|c| c.config.clone())
            .ok_or_else(|| {
                Error::new(format!("{} holds no configuration", dir.config().display()))
            })?;
        let mut enroll_paths: Vec<String> = config
            .enrollment_servers
            .iter()
            .filter_map(|u| url_path(u))
            .collect();
        enroll_paths.retain(|p| p != WELL_KNOWN_PATH);
        enroll_paths.dedup();
        if enroll_paths.is_empty() {
            return Err(Error::new(format!(
                "the configuration in {} names no https: enrollment-server",
                dir.config().display()
            )));
        }
        let ca_cert = read_pem(&dir.ca_cert(), "CERTIFICATE")?;
        let ca_key = read_pem(&dir.ca_key(), "PRIVATE KEY")?;
        let ca_not_after = ReloadCertificate::parse(ca_cert.clone(), 16)?.not_after;
        let ca = Ca::load(&config.instance_name, ca_cert, &ca_key)?;
        Ok(Overlay {
            name: config.instance_name.clone(),
            document: Bytes::from(document),
            enroll_paths,
            sequence: config.sequence,
            ca,
            ca_not_after,
            https_cert: read_pem(&dir.https_cert(), "CERTIFICATE")?,
            https_key: read_pem(&dir.https_key(), "PRIVATE KEY")?,
        })
    }

    /// The rustls configuration: the HTTPS certificate for the overlay name, aws-lc-rs,
    /// TLS 1.2 and 1.3, HTTP/1.1.
    pub fn tls_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::new(format!("TLS configuration: {e}")))?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.https_cert.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.https_key.clone())),
            )
            .map_err(|e| Error::new(format!("the HTTPS certificate or key is unusable: {e}")))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

#[derive(Debug)]
struct AppState {
    overlay: Overlay,
    store: Mutex<Store>,
    throttle: Throttle,
    hashes: Semaphore,
    dummy_hash: String,
    opts: ServeOptions,
}

/// A refusal: status, body, the reason for the log (and the detail header, if the client
/// may see it).
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    body: String,
    detail: String,
    /// Whether `detail` goes into the `reload-enroll-detail` header.
    detail_public: bool,
    retry_after: Option<u64>,
}

impl Refusal {
    /// A §11.3 refusal: 403, the bare token as body.
    fn token(token: &str, detail: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::FORBIDDEN,
            body: token.to_string(),
            detail: detail.into(),
            detail_public: true,
            retry_after: None,
        }
    }

    /// `failed_authentication`: the same answer whatever `why` is (see the module
    /// documentation); `why` is logged only.
    fn failed_authentication(why: impl Into<String>) -> Self {
        Refusal {
            detail_public: false,
            ..Refusal::token(FAILED_AUTHENTICATION, why)
        }
    }

    /// Any other refusal: the reason is the body too.
    fn plain(status: StatusCode, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Refusal {
            status,
            body: format!("{detail}\n"),
            detail,
            detail_public: true,
            retry_after: None,
        }
    }

    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.body,
        )
            .into_response();
        if self.detail_public {
            // The detail header must be a visible-ASCII field value.
            let detail: String = self
                .detail
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() || c == ' ' {
                        c
                    } else {
                        '?'
                    }
                })
                .collect();
            if let Ok(v) = HeaderValue::from_str(&detail) {
                r.headers_mut().insert(DETAIL_HEADER, v);
            }
        }
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

fn hash_password(password: &[u8]) -> Result<String> {
    use argon2::password_hash::PasswordHasher as _;
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt)
        .map_err(|_| Error::new("the system random generator failed"))?;
    argon2::Argon2::default()
        .hash_password_with_salt(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::new(format!("password hashing failed: {e}")))
}

/// An argon2id (RFC 9106) PHC hash of a password, default parameters (19 MiB, t=2, p=1).
pub fn password_hash(password: &str) -> Result<String> {
    hash_password(password.as_bytes())
}

/// Whether `password` matches a PHC hash (the hash's own parameters are used).
pub fn verify_password(hash: &str, password: &[u8]) -> bool {
    use argon2::password_hash::PasswordVerifier as _;
    argon2::Argon2::default()
        .verify_password(password, hash)
        .is_ok()
}

/// Whether the Accept header allows `application/pkix-cert` (§11.3: it MUST contain it;
/// `application/*` and `*/*` are read as containing it, RFC 9110 §12.5.1).
pub(crate) fn accepts_certificate(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|range| {
                let mut parts = range.split(';');
                let ty = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                let q_zero = parts.any(|p| {
                    let p = p.trim();
                    p.strip_prefix("q=")
                        .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
                });
                !q_zero && (ty == CERT_MEDIA_TYPE || ty == "application/*" || ty == "*/*")
            })
        })
    })
}

pub(crate) fn media_type(v: Option<&str>) -> String {
    v.unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The fields of an enrollment form.
#[derive(Default)]
pub(crate) struct Form {
    pub(crate) username: Option<Bytes>,
    pub(crate) password: Option<Bytes>,
    pub(crate) nodeids: Option<Bytes>,
    pub(crate) csr: Option<(Option<String>, Bytes)>,
}

fn multipart_refusal(e: axum::extract::multipart::MultipartError, limit: usize) -> Refusal {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Refusal::plain(
            status,
            format!("request body larger than the limit of {limit} bytes"),
        )
    } else {
        Refusal::plain(
            status,
            format!("malformed multipart/form-data body: {}", e.body_text()),
        )
    }
}

pub(crate) async fn read_form(req: Request, limit: usize) -> std::result::Result<Form, Refusal> {
    let mut mp = Multipart::from_request(req, &()).await.map_err(|e| {
        Refusal::plain(
            StatusCode::BAD_REQUEST,
            format!("malformed multipart/form-data request: {}", e.body_text()),
        )
    })?;
    let mut form = Form::default();
    let mut count = 0;
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| multipart_refusal(e, limit))?
    {
        count += 1;
        if count > MAX_FORM_FIELDS {
            return Err(Refusal::plain(
                StatusCode::BAD_REQUEST,
                format!("more than {MAX_FORM_FIELDS} form fields"),
            ));
        }
        let name = field.name().unwrap_or("").to_string();
        let ctype = field.content_type().map(str::to_string);
        let data = field
            .bytes()
            .await
            .map_err(|e| multipart_refusal(e, limit))?;
        let slot = match name.as_str() {
            "username" => &mut form.username,
            "password" => &mut form.password,
            "nodeids" => &mut form.nodeids,
            "csr" => {
                if form.csr.is_some() {
                    return Err(Refusal::plain(
                        StatusCode::BAD_REQUEST,
                        "form field csr given twice",
                    ));
                }
                form.csr = Some((ctype, data));
                continue;
            }
            other => {
                tracing::debug!(field = other, "ignoring unknown form field");
                continue;
            }
        };
        if slot.is_some() {
            return Err(Refusal::plain(
                StatusCode::BAD_REQUEST,
                format!("form field {name} given twice"),
            ));
        }
        *slot = Some(data);
    }
    Ok(form)
}

pub(crate) fn utf8_field(name: &str, v: Option<Bytes>) -> std::result::Result<String, Refusal> {
    let v = v.ok_or_else(|| {
        Refusal::plain(
            StatusCode::BAD_REQUEST,
            format!("missing form field {name} (RFC 6940 §11.3: username, password and csr are required)"),
        )
    })?;
    String::from_utf8(v.to_vec()).map_err(|_| {
        Refusal::plain(
            StatusCode::BAD_REQUEST,
            format!("form field {name} is not UTF-8 (RFC 6940 §11.3)"),
        )
    })
}

/// The DER of a CSR given as DER or PEM.
pub(crate) fn csr_der(raw: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let trimmed = raw.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(trimmed).map_err(|_| "PEM that is not ASCII".to_string())?;
        from_pem("CERTIFICATE REQUEST", text)
            .or_else(|| from_pem("NEW CERTIFICATE REQUEST", text))
            .ok_or_else(|| "PEM without a CERTIFICATE REQUEST block".to_string())
    } else {
        Ok(raw.to_vec())
    }
}

enum Auth {
    Ok,
    Unknown,
    Disabled { password_good: bool },
    Wrong,
}

/// How the log shows an account name a client sent: as it is if it can be an account name
/// (letters, digits, `. _ - +`, at most 64), else its length only — never the client's
/// bytes (up to the body limit, control characters included) in the log.
pub(crate) fn shown_name(account: &str) -> String {
    if AccountKey::of(account).is_some() {
        account.to_string()
    } else {
        format!(
            "<not an account name: {} bytes, at most {MAX_ACCOUNT_NAME} allowed>",
            account.len()
        )
    }
}

async fn enroll(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    match enroll_inner(&st, peer, req, started).await {
        Ok(r) => r,
        Err((user, refusal)) => {
            warn!(
                %peer,
                user = user.as_deref().unwrap_or("-"),
                status = refusal.status.as_u16(),
                token = if refusal.status == StatusCode::FORBIDDEN { refusal.body.as_str() } else { "-" },
                reason = %refusal.detail,
                "enrollment refused"
            );
            refusal.into_response()
        }
    }
}

type Refused = (Option<String>, Refusal);

async fn enroll_inner(
    st: &Arc<AppState>,
    peer: SocketAddr,
    req: Request,
    started: Instant,
) -> std::result::Result<Response, Refused> {
    let ctype = media_type(
        req.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    if ctype != "multipart/form-data" {
        return Err((
            None,
            Refusal::plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "an enrollment request is multipart/form-data (RFC 6940 §11.3), not {:?}",
                    if ctype.is_empty() {
                        "no content type"
                    } else {
                        ctype.as_str()
                    }
                ),
            ),
        ));
    }
    if !accepts_certificate(req.headers()) {
        return Err((
            None,
            Refusal::plain(
                StatusCode::NOT_ACCEPTABLE,
                "the Accept header must contain application/pkix-cert (RFC 6940 §11.3)",
            ),
        ));
    }
    let form = read_form(req, st.opts.max_body_bytes)
        .await
        .map_err(|r| (None, r))?;
    let account = utf8_field("username", form.username).map_err(|r| (None, r))?;
    let user = Some(shown_name(&account));
    let password = form.password.ok_or_else(|| {
        (
            user.clone(),
            Refusal::plain(
                StatusCode::BAD_REQUEST,
                "missing form field password (RFC 6940 §11.3: username, password and csr are required)",
            ),
        )
    })?;
    if std::str::from_utf8(&password).is_err() {
        return Err((
            user,
            Refusal::plain(
                StatusCode::BAD_REQUEST,
                "form field password is not UTF-8 (RFC 6940 §11.3)",
            ),
        ));
    }
    let (csr_type, csr_raw) = form.csr.ok_or_else(|| {
        (
            user.clone(),
            Refusal::plain(
                StatusCode::BAD_REQUEST,
                "missing form field csr (RFC 6940 §11.3: username, password and csr are required)",
            ),
        )
    })?;
    let csr_type = media_type(csr_type.as_deref());
    if csr_type != CSR_MEDIA_TYPE {
        return Err((
            user,
            Refusal::plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "the csr part must have content type application/pkcs10 (RFC 6940 §11.3), not {:?}",
                    if csr_type.is_empty() {
                        "none"
                    } else {
                        csr_type.as_str()
                    }
                ),
            ),
        ));
    }

    // The name, the throttle, then the password.
    let account_key = AccountKey::of(&account);
    if let Err(wait) = st
        .throttle
        .check(account_key.as_ref(), peer.ip(), Instant::now())
    {
        let secs = wait.as_secs().max(1);
        let mut r = Refusal::plain(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed logins for this account or address; retry in {secs} s"),
        );
        r.retry_after = Some(secs);
        return Err((user, r));
    }
    let why = match &account_key {
        None => Some("not an account name (RFC 6940 §11.3: legal characters only)"),
        Some(_) => match authenticate(st, &account, password)
            .await
            .map_err(|e| (user.clone(), internal(e)))?
        {
            Auth::Ok => None,
            Auth::Unknown => Some("unknown user"),
            Auth::Disabled {
                password_good: true,
            } => Some("account disabled (right password)"),
            Auth::Disabled {
                password_good: false,
            } => Some("account disabled (wrong password)"),
            Auth::Wrong => Some("wrong password"),
        },
    };
    if let Some(why) = why {
        if let Some(lock) = st
            .throttle
            .fail(account_key.as_ref(), peer.ip(), Instant::now())
        {
            warn!(%peer, user = user.as_deref().unwrap_or("-"), lockout_s = lock.as_secs(), "failed-login limit reached; locking out");
        }
        return Err((user, Refusal::failed_authentication(why)));
    }
    if let Some(k) = &account_key {
        st.throttle.succeed(k);
    }

    // The CSR.
    let der = csr_der(&csr_raw).map_err(|e| (user.clone(), Refusal::token(BAD_CSR, e)))?;
    if let Some(why) = weak_key_reason(&der) {
        return Err((user, Refusal::token(BAD_CSR, why)));
    }
    let request = CertRequest::parse(&der).map_err(|e| {
        let why = match e {
            IdentityError::Chain(s) => s,
            other => other.to_string(),
        };
        (user.clone(), Refusal::token(BAD_CSR, why))
    })?;
    let key = RequestedKey::from_request(&request)
        .map_err(|e| (user.clone(), Refusal::token(BAD_CSR, e)))?;

    // Names: the account's user name, or nothing (then the account's name is given).
    let name = user_name(&account, &st.overlay.name);
    if let Some(other) = request.requested_user_names.iter().find(|n| **n != name) {
        return Err((
            user,
            Refusal::token(
                USERNAME_NOT_AVAILABLE,
                format!("the CSR requests {other:?}; this account may use {name:?} only"),
            ),
        ));
    }
    if request.requested_user_names.len() > 1 {
        return Err((
            user,
            Refusal::token(
                USERNAME_NOT_AVAILABLE,
                "the CSR requests more than one rfc822Name; a certificate holds a single user name (RFC 6940 §11.3)",
            ),
        ));
    }
    if !request.other_requested_names.is_empty() {
        return Err((
            user,
            Refusal::token(
                USERNAME_NOT_AVAILABLE,
                format!(
                    "the CSR requests names other than the user name ({}); the server chooses the Node-IDs and the certificate holds nothing else (RFC 6940 §11.3)",
                    request.other_requested_names.join(", ")
                ),
            ),
        ));
    }

    // How many Node-IDs.
    let quota = st.opts.max_node_ids_per_user;
    let wanted = match &form.nodeids {
        None => 1,
        Some(raw) => {
            let text = std::str::from_utf8(raw).unwrap_or("").trim();
            match text.parse::<usize>() {
                Ok(n) if (1..=quota).contains(&n) && text.len() <= 4 => n,
                _ => {
                    return Err((
                        user,
                        Refusal::token(
                            NODE_IDS_NOT_AVAILABLE,
                            format!(
                                "nodeids {text:?}: a count from 1 to {quota} (the per-user quota) is accepted"
                            ),
                        ),
                    ));
                }
            }
        }
    };

    // Issue, all or nothing, before the request's deadline.
    let deadline = started + st.opts.request_timeout;
    let csr_sha256 = crate::sha256_hex(&der);
    let st2 = st.clone();
    let account2 = account.clone();
    let name2 = name.clone();
    let peer_text = peer.to_string();
    let result = tokio::task::spawn_blocking(move || {
        let mut store = st2.store.lock().unwrap_or_else(|e| e.into_inner());
        store.enroll(&account2, wanted, quota, |ids: &[NodeId]| {
            let now = OffsetDateTime::now_utc();
            let not_before = now - BACKDATE;
            let mut not_after = now + st2.opts.cert_validity;
            if let Ok(ca_end) = OffsetDateTime::from_unix_timestamp(st2.overlay.ca_not_after) {
                not_after = not_after.min(ca_end);
            }
            let serial = random_serial()?;
            let der = st2.overlay.ca.issue_for_request(
                &key,
                &NodeCertSpec {
                    node_ids: ids,
                    user_name: &name2,
                    serial,
                    not_before,
                    not_after,
                },
            )?;
            if Instant::now() >= deadline {
                return Err(IssueError::Other(Error::new(
                    "request deadline passed before the certificate was recorded",
                )));
            }
            Ok(IssuedCert {
                serial: serial.to_vec(),
                user_name: name2.clone(),
                not_before: not_before.unix_timestamp(),
                not_after: not_after.unix_timestamp(),
                csr_sha256,
                peer: Some(peer_text),
                der,
            })
        })
    })
    .await
    .map_err(|e| {
        (
            user.clone(),
            internal(Error::new(format!("issuing task failed: {e}"))),
        )
    })?;
    match result {
        Ok((ids, der)) => {
            let serial = crate::init::x509_serial(&der)
                .map(|s| crate::hex(&s))
                .unwrap_or_default();
            info!(
                %peer,
                user = %account,
                user_name = %name,
                serial = %serial,
                node_ids = %reload_proto::identity::node_ids_hex(&ids),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "issued certificate"
            );
            Ok(([(header::CONTENT_TYPE, CERT_MEDIA_TYPE)], der).into_response())
        }
        Err(IssueError::NotAllowed(why)) => Err((user, Refusal::failed_authentication(why))),
        Err(IssueError::Quota {
            requested,
            held,
            quota,
        }) => Err((
            user,
            Refusal::token(
                NODE_IDS_NOT_AVAILABLE,
                format!(
                    "{requested} Node-IDs requested; the per-user quota is {quota} (the account holds {held})"
                ),
            ),
        )),
        Err(IssueError::Other(e)) => Err((user, internal(e))),
    }
}

fn internal(e: Error) -> Refusal {
    tracing::error!(error = %e, "internal error");
    Refusal::plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see the server log",
    )
}

/// Checks the password of `account`, a valid account name.
async fn authenticate(st: &Arc<AppState>, account: &str, password: Bytes) -> Result<Auth> {
    let _permit = st
        .hashes
        .acquire()
        .await
        .map_err(|_| Error::new("server shutting down"))?;
    let st = st.clone();
    let account = account.to_string();
    tokio::task::spawn_blocking(move || {
        let row = st
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .user(&account)?;
        Ok(match row {
            None => {
                // As long as a real check, so that unknown accounts do not stand out.
                let _ = verify_password(&st.dummy_hash, &password);
                Auth::Unknown
            }
            Some((hash, disabled)) => {
                let good = verify_password(&hash, &password);
                if disabled {
                    Auth::Disabled {
                        password_good: good,
                    }
                } else if good {
                    Auth::Ok
                } else {
                    Auth::Wrong
                }
            }
        })
    })
    .await
    .map_err(|e| Error::new(format!("authentication task failed: {e}")))?
}

async fn get_config(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    tracing::debug!(%peer, "configuration fetched");
    (
        [
            (header::CONTENT_TYPE, CONFIG_MEDIA_TYPE),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        st.overlay.document.clone(),
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    Refusal::plain(
        StatusCode::NOT_FOUND,
        format!(
            "no resource {}: this server answers GET {WELL_KNOWN_PATH} and the enrollment POST",
            req.uri().path()
        ),
    )
    .into_response()
}

async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => Refusal::plain(
            StatusCode::REQUEST_TIMEOUT,
            format!("request not completed within {} s", limit.as_secs()),
        )
        .into_response(),
    }
}

fn router(st: Arc<AppState>) -> Router {
    let mut r = Router::new().route(WELL_KNOWN_PATH, get(get_config));
    for p in &st.overlay.enroll_paths {
        r = r.route(p, post(enroll));
    }
    let limit = st.opts.request_timeout;
    r.fallback(not_found)
        .layer(DefaultBodyLimit::max(st.opts.max_body_bytes))
        .layer(middleware::from_fn_with_state(limit, deadline))
        .with_state(st)
}

async fn shutdown_on_signal(handle: axum_server::Handle<SocketAddr>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("shutting down: finishing requests in progress (10 s at most)");
    handle.graceful_shutdown(Some(Duration::from_secs(10)));
}

/// Serves until SIGINT/SIGTERM. `ready` is called with the bound address once the socket
/// listens (the CLI prints it).
pub async fn serve(
    dir: &DataDir,
    opts: ServeOptions,
    ready: impl FnOnce(&Overlay, SocketAddr),
) -> Result<()> {
    let overlay = Overlay::load(dir)?;
    let tls = overlay.tls_config()?;
    let store = Store::open(&dir.database())?;
    let dummy_hash = hash_password(b"reload-enroll dummy password for unknown users")?;
    let listener = std::net::TcpListener::bind(opts.listen)
        .map_err(|e| Error::new(format!("cannot listen on {}: {e}", opts.listen)))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::new(format!("cannot configure the listening socket: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::new(format!("cannot read the listening address: {e}")))?;
    let st = Arc::new(AppState {
        throttle: Throttle::new(opts.throttle),
        hashes: Semaphore::new(opts.max_concurrent_hashes.max(1)),
        store: Mutex::new(store),
        dummy_hash,
        opts: opts.clone(),
        overlay,
    });
    let app = router(st.clone());
    let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(tls))
        .handshake_timeout(opts.handshake_timeout);
    let handle = axum_server::Handle::new();
    let mut server = axum_server::from_tcp(listener)
        .map_err(|e| Error::new(format!("cannot serve on {addr}: {e}")))?
        .acceptor(acceptor)
        .handle(handle.clone())
        .first_request_timeout(opts.request_timeout);
    server
        .http_builder()
        .http1()
        .header_read_timeout(Some(opts.request_timeout));
    info!(
        overlay = %st.overlay.name,
        %addr,
        sequence = st.overlay.sequence,
        enroll = ?st.overlay.enroll_paths,
        max_body_bytes = opts.max_body_bytes,
        max_node_ids_per_user = opts.max_node_ids_per_user,
        "serving"
    );
    ready(&st.overlay, addr);
    tokio::spawn(shutdown_on_signal(handle));
    server
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .map_err(|e| Error::new(format!("server failed: {e}")))
}

/// Reads the configuration document of a data directory (for `status`).
pub fn config_of(dir: &DataDir) -> Result<reload_proto::config::OverlayConfig> {
    let bytes = read(&dir.config())?;
    let doc = ConfigDocument::parse_bytes(&bytes).map_err(|_| {
        Error::new(format!(
            "{} is not a valid configuration document",
            dir.config().display()
        ))
    })?;
    doc.configurations
        .into_iter()
        .next()
        .map(|c| c.config)
        .ok_or_else(|| Error::new(format!("{} holds no configuration", dir.config().display())))
}
