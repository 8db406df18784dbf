//! `reload-node enroll`: getting a node's configuration and credentials (RFC 6940 §11.2,
//! §11.3, §11.3.1).
//!
//! 1. **Find the configuration server** (§11.2): `--config-url URL`, or from the overlay
//!    name a DNS SRV query for `_reload-config._tcp.<overlay>` whose target and port give the
//!    address of `https://<overlay>/.well-known/reload-config` (with no SRV record: the
//!    overlay name itself, port 443), or `--config-file FILE` for a document obtained out of
//!    band.
//! 2. **Fetch it over HTTPS** with the server certificate checked against the URL's host
//!    (`--config-url`) or the overlay name (§11.2, RFC 2818 name matching). Chain trust for
//!    this first contact, in order: the roots of a configuration already stored in the data
//!    directory and `--ca-cert FILE` (the overlay root the operator handed out); otherwise,
//!    with `--config-signer-sha256` (or a fingerprint recorded earlier), the name is checked
//!    during the handshake and the chain right after the document is verified, against the
//!    document's own root-cert; otherwise the system's roots.
//! 3. **Check the document** completely (`reload_proto::check::check_document`: grammar, the
//!    configuration signature by a configuration-signer, kind signatures, expiry, sequence
//!    against a stored configuration), require its instance-name to be the overlay name
//!    (§11.2), and **pin its signer**: the SHA-256 of the configuration-signer's certificate
//!    must equal `--config-signer-sha256`, or the fingerprint recorded in the data directory;
//!    when there is neither, it is recorded now (trust on first use) and a later different
//!    one is refused.
//! 4. **Get credentials**: generate the key pair (RSA-2048 by default), build a PKCS#10 CSR
//!    (empty subject, the user name as rfc822Name) and POST it to the configuration's
//!    enrollment-server with `Accept: application/pkix-cert`, over HTTPS whose certificate
//!    must match the overlay name (§11.3) and chain to the configuration's root-cert (or a
//!    system root); verify the certificate that comes back against the root-cert (webpki,
//!    BasicConstraints included), its key, its Node-IDs and its user name. Or, when the
//!    configuration permits it (§11.3.1) and `--self-signed` is given or there is no
//!    enrollment server, make a self-signed certificate whose Node-ID is the digest of the
//!    public key.
//! 5. **Store** key (`node.key`, PKCS#8 PEM, mode 0600), certificate (`node.crt`),
//!    configuration (`overlay.relo`, the exact bytes fetched) and signer pin
//!    (`config-signer.sha256`) in the data directory, each written atomically.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reload_wire::NodeId;
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest as _, Sha256};

use reload_proto::check::{CheckOptions, check_document, trust_policy};
use reload_proto::config::{MAX_DOCUMENT_BYTES, OverlayConfig};
use reload_proto::identity::{
    ReloadCertificate, from_pem, node_id_uri, self_signed_node_id, to_pem,
};
use reload_proto::sign::{Credentials, KeyAlgorithm, SigningKey, Verifier};

/// Path of the configuration document (RFC 6940 §11.2, §14.1).
pub const WELL_KNOWN_PATH: &str = "/.well-known/reload-config";
/// SRV service label (§11.2, §14.2).
pub const SRV_SERVICE: &str = "_reload-config._tcp";
const CONFIG_MEDIA_TYPE: &str = "application/p2p-overlay+xml";
const CERT_MEDIA_TYPE: &str = "application/pkix-cert";
const CSR_MEDIA_TYPE: &str = "application/pkcs10";
/// The server's reason header (reload-enroll sends it with every refusal).
const DETAIL_HEADER: &str = "reload-enroll-detail";
/// Largest certificate accepted from an enrollment server.
const MAX_CERT_BYTES: usize = 64 * 1024;

use crate::datadir::{CERT_FILE, CONFIG_FILE, KEY_FILE, PIN_FILE, write_private_file};

/// Key types a node can generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// RSA 2048 bits (mandatory to implement, RFC 6940 §6.3.4).
    Rsa2048,
    /// ECDSA P-256.
    P256,
}

/// What to enroll with (`reload-node enroll` fills it from its command line).
#[derive(Clone, Debug)]
pub struct EnrollOptions {
    /// The overlay name (required unless `config_url` or `config_file` give a document
    /// with a single configuration).
    pub overlay: Option<String>,
    /// URL of the configuration document (instead of DNS SRV discovery, §11.2).
    pub config_url: Option<String>,
    /// A configuration document obtained out of band.
    pub config_file: Option<PathBuf>,
    /// Account name at the enrollment server (the certificate's user name is
    /// NAME@overlay); for self-signed credentials, the user name to put in it.
    pub user: Option<String>,
    /// Read the password from stdin (one line) instead of prompting.
    pub password_stdin: bool,
    /// Where key, certificate and configuration are stored (default:
    /// $XDG_DATA_HOME/reload-node/OVERLAY, else ~/.local/share/reload-node/OVERLAY).
    pub data_dir: Option<PathBuf>,
    /// SHA-256 (hex; colons allowed) of the configuration-signer's certificate.
    pub config_signer_sha256: Option<String>,
    /// CA certificates (PEM or DER) trusted for the HTTPS servers.
    pub ca_cert: Vec<PathBuf>,
    /// `HOST=IP` overrides: connect to IP for HOST (the certificate is still checked for
    /// the name).
    pub resolve: Vec<String>,
    /// DNS server for SRV and address lookups, instead of the system's.
    pub dns_server: Option<SocketAddr>,
    pub key_type: KeyType,
    /// Number of Node-IDs to request (RFC 6940 §11.3 `nodeids`).
    pub nodeids: u32,
    /// Make a self-signed certificate (RFC 6940 §11.3.1; the configuration must permit it).
    pub self_signed: bool,
    /// Seconds each HTTPS or DNS exchange may take.
    pub timeout: u64,
}

impl EnrollOptions {
    /// Arguments for `overlay` with every default (for programs and tests).
    pub fn for_overlay(overlay: &str) -> Self {
        EnrollOptions {
            overlay: Some(overlay.to_string()),
            config_url: None,
            config_file: None,
            user: None,
            password_stdin: false,
            data_dir: None,
            config_signer_sha256: None,
            ca_cert: Vec::new(),
            resolve: Vec::new(),
            dns_server: None,
            key_type: KeyType::Rsa2048,
            nodeids: 1,
            self_signed: false,
            timeout: 30,
        }
    }
}

/// Where the enrollment password comes from.
#[derive(Clone)]
pub enum PasswordSource {
    /// Ask on the terminal.
    Prompt,
    /// One line of stdin.
    Stdin,
    /// Given by a program.
    Given(String),
}

impl std::fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordSource::Prompt => write!(f, "Prompt"),
            PasswordSource::Stdin => write!(f, "Stdin"),
            PasswordSource::Given(_) => write!(f, "Given(…)"),
        }
    }
}

/// What enrollment produced.
#[derive(Clone, Debug)]
pub struct EnrollOutcome {
    pub overlay: String,
    pub data_dir: PathBuf,
    pub node_ids: Vec<NodeId>,
    pub user_name: Option<String>,
    pub self_signed: bool,
    pub not_after: i64,
    /// SHA-256 of the configuration-signer's certificate.
    pub signer_sha256: String,
    /// The signer was trusted on first use (recorded now, no pin given).
    pub trusted_on_first_use: bool,
    pub key_path: PathBuf,
    pub cert_path: PathBuf,
    pub config_path: PathBuf,
    /// How the HTTPS certificate of the configuration server was trusted.
    pub https_trust: String,
}

type Res<T> = Result<T, String>;

/// Runs `reload-node enroll` (the password from a prompt or, with `--password-stdin`, stdin).
pub fn run(args: &EnrollOptions) -> Res<EnrollOutcome> {
    let pw = if args.password_stdin {
        PasswordSource::Stdin
    } else {
        PasswordSource::Prompt
    };
    run_with_password(args, pw)
}

/// Runs enrollment on a private tokio runtime.
pub fn run_with_password(args: &EnrollOptions, password: PasswordSource) -> Res<EnrollOutcome> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(enroll(args, password))
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(b: &[u8]) -> String {
    reload_wire::codec::to_hex(&Sha256::digest(b))
}

/// Normalises a fingerprint: hex digits only (colons and spaces dropped), lower case, 64 of
/// them.
pub fn normalize_fingerprint(s: &str) -> Res<String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{s:?} is not a SHA-256 fingerprint (64 hex digits)"
        ));
    }
    Ok(hex)
}

fn default_data_dir(overlay: &str) -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("reload-node").join(overlay)
}

fn read_file(path: &Path) -> Res<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Reads every certificate of a PEM or DER file.
fn read_certs(path: &Path) -> Res<Vec<Vec<u8>>> {
    let raw = read_file(path)?;
    match std::str::from_utf8(&raw) {
        Ok(text) if text.contains("-----BEGIN") => {
            let mut out = Vec::new();
            let mut rest = text;
            while let Some(i) = rest.find("-----BEGIN CERTIFICATE-----") {
                let block = &rest[i..];
                let der = from_pem("CERTIFICATE", block).ok_or_else(|| {
                    format!("{}: malformed CERTIFICATE PEM block", path.display())
                })?;
                out.push(der);
                let end = block
                    .find("-----END CERTIFICATE-----")
                    .map_or(block.len(), |e| e + 25);
                rest = &block[end..];
            }
            if out.is_empty() {
                return Err(format!("{}: no CERTIFICATE PEM block", path.display()));
            }
            Ok(out)
        }
        _ => Ok(vec![raw]),
    }
}

// ---------------------------------------------------------------------------------------
// TLS: who the HTTPS server must be.

/// How a server certificate is judged.
#[derive(Debug)]
struct ServerCheck {
    /// The name the certificate must match (RFC 2818), whatever host the URL names.
    name: ServerName<'static>,
    /// Chain to these roots…
    anchors: Option<Arc<WebPkiServerVerifier>>,
    /// …or to the system's roots.
    system: Option<Arc<rustls_platform_verifier::Verifier>>,
    /// Check the name only and record the certificate; the chain is checked later
    /// ([`check_deferred`]), once the configuration it must chain to is trusted.
    defer: bool,
    provider: Arc<CryptoProvider>,
    seen: Mutex<Option<Vec<u8>>>,
}

fn tls_err(e: webpki::Error) -> rustls::Error {
    use rustls::CertificateError as C;
    rustls::Error::InvalidCertificate(match e {
        webpki::Error::CertNotValidForName(_) => C::NotValidForName,
        webpki::Error::CertExpired { .. } => C::Expired,
        webpki::Error::CertNotValidYet { .. } => C::NotValidYet,
        webpki::Error::UnknownIssuer => C::UnknownIssuer,
        other => C::Other(rustls::OtherError(Arc::new(std::io::Error::other(
            format!("{other:?}"),
        )))),
    })
}

impl ServerCertVerifier for ServerCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(end_entity.to_vec());
        if self.defer {
            let ee = webpki::EndEntityCert::try_from(end_entity).map_err(tls_err)?;
            ee.verify_is_valid_for_subject_name(&self.name)
                .map_err(tls_err)?;
            return Ok(ServerCertVerified::assertion());
        }
        let mut first_err = None;
        if let Some(a) = &self.anchors {
            match a.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now) {
                Ok(v) => return Ok(v),
                Err(e) => first_err = Some(e),
            }
        }
        if let Some(s) = &self.system {
            return match s.verify_server_cert(
                end_entity,
                intermediates,
                &self.name,
                ocsp_response,
                now,
            ) {
                Ok(v) => Ok(v),
                Err(e) => Err(first_err.unwrap_or(e)),
            };
        }
        Err(first_err.unwrap_or_else(|| {
            rustls::Error::General("no trust anchors for the server certificate".into())
        }))
    }

    reload_proto::handshake_signatures_by!(provider.signature_verification_algorithms);
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Trust for one server: the name, and the roots (none = the system's, unless deferred).
#[derive(Clone, Debug)]
enum Trust {
    Roots(Vec<Vec<u8>>, bool),
    System,
    Deferred,
}

fn server_check(name: &str, trust: &Trust) -> Res<Arc<ServerCheck>> {
    let provider = provider();
    let name = ServerName::try_from(name.to_string())
        .map_err(|_| format!("{name:?} is not a valid server name"))?;
    let system = || {
        rustls_platform_verifier::Verifier::new(provider.clone())
            .map(Arc::new)
            .map_err(|e| format!("cannot load the system's trusted roots: {e}"))
    };
    let (anchors, system, defer) = match trust {
        Trust::Roots(roots, with_system) => {
            let mut store = RootCertStore::empty();
            for r in roots {
                store
                    .add(CertificateDer::from(r.clone()))
                    .map_err(|e| format!("unusable root certificate: {e}"))?;
            }
            let v = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .map_err(|e| format!("cannot build the certificate verifier: {e}"))?;
            (
                Some(v),
                if *with_system { Some(system()?) } else { None },
                false,
            )
        }
        Trust::System => (None, Some(system()?), false),
        Trust::Deferred => (None, None, true),
    };
    Ok(Arc::new(ServerCheck {
        name,
        anchors,
        system,
        defer,
        provider,
        seen: Mutex::new(None),
    }))
}

/// The deferred check: the recorded certificate chains to `roots` and matches `name`.
fn check_deferred(leaf: &[u8], roots: &[bytes::Bytes], name: &str) -> Res<()> {
    let name = ServerName::try_from(name.to_string())
        .map_err(|_| format!("{name:?} is not a valid server name"))?;
    let der = CertificateDer::from(leaf.to_vec());
    let ee = webpki::EndEntityCert::try_from(&der).map_err(|e| format!("{e:?}"))?;
    let root_ders: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|r| CertificateDer::from(r.as_ref()))
        .collect();
    let anchors: Vec<_> = root_ders
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    let now = UnixTime::since_unix_epoch(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &[],
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| format!("{e:?}"))?;
    ee.verify_is_valid_for_subject_name(&name)
        .map_err(|e| format!("{e:?}"))
}

fn http_client(
    check: Arc<ServerCheck>,
    resolve: &BTreeMap<String, IpAddr>,
    timeout: Duration,
) -> Res<reqwest::Client> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(check)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true)
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("reload-node/", env!("CARGO_PKG_VERSION")));
    for (host, ip) in resolve {
        b = b.resolve(host, SocketAddr::new(*ip, 0));
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTPS client: {e}"))
}

/// The whole cause chain of an error, for messages.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Reads a response body up to `limit` bytes.
async fn body_limited(mut resp: reqwest::Response, limit: usize, what: &str) -> Res<Vec<u8>> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!("{what} is larger than {limit} bytes"));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading {what}: {}", chain(&e)))?
    {
        if out.len() + chunk.len() > limit {
            return Err(format!("{what} is larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// DNS.

fn resolver(args: &EnrollOptions) -> Res<hickory_resolver::TokioResolver> {
    use hickory_resolver::config::{
        ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
    };
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut builder = match args.dns_server {
        Some(server) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
            hickory_resolver::Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => hickory_resolver::Resolver::builder_tokio()
            .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?,
    };
    let mut opts = ResolverOpts::default();
    opts.timeout = timeout;
    opts.attempts = 2;
    *builder.options_mut() = opts;
    builder
        .build()
        .map_err(|e| format!("cannot build the DNS resolver: {e}"))
}

/// Where the configuration server was found.
#[derive(Clone, Debug)]
struct Found {
    url: String,
    /// Address to connect to for the overlay name, when DNS SRV said so.
    address: Option<IpAddr>,
    how: String,
}

async fn lookup_ip(r: &hickory_resolver::TokioResolver, host: &str) -> Res<IpAddr> {
    let l = r
        .lookup_ip(format!("{}.", host.trim_end_matches('.')))
        .await
        .map_err(|e| format!("cannot resolve {host}: {}", chain(&e)))?;
    l.iter()
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// §11.2: the SRV query for `_reload-config._tcp.<overlay>`.
async fn discover(r: &hickory_resolver::TokioResolver, overlay: &str) -> Res<Found> {
    use hickory_resolver::proto::rr::RData;
    let qname = format!("{SRV_SERVICE}.{overlay}.");
    match r.srv_lookup(qname.clone()).await {
        Ok(lookup) => {
            let mut srvs: Vec<_> = lookup
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::SRV(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            // RFC 2782: lowest priority first; among equals, the heaviest first.
            srvs.sort_by_key(|s| (s.priority, std::cmp::Reverse(s.weight)));
            let Some(best) = srvs.first() else {
                return Err(format!("{qname} answered without SRV records"));
            };
            let target = best.target.to_utf8();
            let target = target.trim_end_matches('.');
            if target.is_empty() {
                return Err(format!(
                    "{qname}: the SRV target is \".\": the service is not offered (RFC 2782)"
                ));
            }
            // An address from the additional section, else a lookup.
            let extra = lookup.additionals().iter().find_map(|rec| {
                let same = rec
                    .name
                    .to_utf8()
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(target);
                match &rec.data {
                    RData::A(a) if same => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) if same => Some(IpAddr::V6(a.0)),
                    _ => None,
                }
            });
            let ip = match extra {
                Some(ip) => ip,
                None => lookup_ip(r, target).await?,
            };
            let port = best.port;
            let url = if port == 443 {
                format!("https://{overlay}{WELL_KNOWN_PATH}")
            } else {
                format!("https://{overlay}:{port}{WELL_KNOWN_PATH}")
            };
            Ok(Found {
                url,
                address: Some(ip),
                how: format!("DNS SRV {qname} -> {target}:{port} ({ip})"),
            })
        }
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Found {
            url: format!("https://{overlay}{WELL_KNOWN_PATH}"),
            address: None,
            how: format!("no SRV record for {qname}; using the overlay name itself"),
        }),
        Err(e) => Err(format!("DNS SRV lookup of {qname} failed: {}", chain(&e))),
    }
}

fn url_host(url: &str) -> Res<String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if u.scheme() != "https" {
        return Err(format!(
            "{url:?} is not an https: URL (RFC 6940 §11.2, §11.3 require HTTPS)"
        ));
    }
    u.host_str()
        .map(|h| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase()
        })
        .ok_or_else(|| format!("{url:?} has no host"))
}

/// `--resolve HOST=IP` entries.
fn resolve_overrides(args: &EnrollOptions) -> Res<BTreeMap<String, IpAddr>> {
    let mut m = BTreeMap::new();
    for r in &args.resolve {
        let (host, ip) = r
            .split_once('=')
            .ok_or_else(|| format!("--resolve {r:?}: expected HOST=IP"))?;
        let ip: IpAddr = ip
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("--resolve {r:?}: {ip:?} is not an IP address"))?;
        m.insert(host.to_ascii_lowercase(), ip);
    }
    Ok(m)
}

// ---------------------------------------------------------------------------------------
// The configuration.

/// The configuration as fetched and checked.
struct Fetched {
    bytes: Vec<u8>,
    config: OverlayConfig,
    signer_sha256: Vec<String>,
}

/// Full check of a document (§11.1 via `check_document`), the §11.2 instance-name rule,
/// and the fingerprints of the configuration-signer certificates whose signature verifies.
fn check_config(
    bytes: &[u8],
    overlay: Option<&str>,
    previous: Option<&(Vec<u8>, OverlayConfig)>,
) -> Res<Fetched> {
    let now = SystemTime::now();
    let prev = previous
        .filter(|(b, _)| b.as_slice() != bytes)
        .map(|(_, c)| c.clone());
    let report = check_document(
        bytes,
        &CheckOptions {
            verify: true,
            previous: prev.clone(),
            now,
        },
    );
    if !report.is_clean() {
        let list: Vec<String> = report.problems.iter().map(|p| format!("  {p}")).collect();
        return Err(format!(
            "the configuration document is not acceptable:\n{}",
            list.join("\n")
        ));
    }
    let doc = report
        .document
        .ok_or("the configuration document does not parse")?;
    let c = match overlay {
        Some(name) => doc.configuration(name).ok_or_else(|| {
            let names: Vec<&str> = doc.configurations.iter().map(|c| c.config.instance_name.as_str()).collect();
            format!("the configuration document is for {names:?}, not for overlay {name:?} (RFC 6940 §11.2: discarded)")
        })?,
        None => match doc.configurations.as_slice() {
            [one] => one,
            _ => return Err("the document holds several configurations: give --overlay NAME".into()),
        },
    };
    // Who signed it: the certificates whose signature verifies, by fingerprint.
    let trust_config = match &prev {
        Some(p) if p.instance_name == c.config.instance_name => p,
        _ => &c.config,
    };
    let signers: Vec<NodeId> = trust_config
        .configuration_signers
        .iter()
        .filter_map(|b| NodeId::from_slice(b))
        .collect();
    let mut verifier = Verifier::new(trust_policy(trust_config), 16);
    let mut fingerprints = Vec::new();
    for s in &c.signatures {
        if let Ok(sb) = &s.security_block
            && let Ok(v) = verifier.verify_blob(c.signed_bytes(&doc), sb, &signers, now)
        {
            fingerprints.push(sha256_hex(v.cert.der()));
        }
    }
    if fingerprints.is_empty() {
        return Err("no configuration signature verifies".into());
    }
    Ok(Fetched {
        bytes: bytes.to_vec(),
        config: c.config.clone(),
        signer_sha256: fingerprints,
    })
}

fn load_previous(dir: &Path) -> Res<Option<(Vec<u8>, OverlayConfig)>> {
    if !dir.join(CONFIG_FILE).exists() {
        return Ok(None);
    }
    crate::datadir::load_config(dir)
        .map(Some)
        .map_err(|e| format!("{e} (the stored configuration; remove it to start over)"))
}

// ---------------------------------------------------------------------------------------
// Enrollment.

fn read_password(src: PasswordSource, prompt: &str) -> Res<String> {
    let pw = match src {
        PasswordSource::Given(p) => p,
        PasswordSource::Stdin => {
            let mut buf = Vec::new();
            std::io::stdin()
                .take(4096)
                .read_to_end(&mut buf)
                .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
            let mut s = String::from_utf8(buf)
                .map_err(|_| "the password is not UTF-8 (RFC 6940 §11.3)".to_string())?;
            if s.ends_with('\n') {
                s.pop();
                if s.ends_with('\r') {
                    s.pop();
                }
            }
            s
        }
        PasswordSource::Prompt => rpassword::prompt_password(prompt)
            .map_err(|e| format!("cannot prompt for the password ({e}); use --password-stdin"))?,
    };
    if pw.is_empty() {
        return Err("empty password".into());
    }
    Ok(pw)
}

fn token_message(token: &str) -> String {
    match token {
        "failed_authentication" => "the account name and password were not accepted (failed_authentication)".into(),
        "username_not_available" => "the user name requested in the certificate request was not accepted (username_not_available)".into(),
        "Node-IDs_not_available" => "the number of Node-IDs requested was not accepted (Node-IDs_not_available)".into(),
        "bad_CSR" => "the certificate request was refused (bad_CSR)".into(),
        other => format!("enrollment failed for an unknown reason (token {other:?}, RFC 6940 §11.3)"),
    }
}

struct NewKey {
    signing: SigningKey,
    pkcs8: Vec<u8>,
    rcgen: rcgen::KeyPair,
}

fn new_key(kt: KeyType) -> Res<NewKey> {
    let (alg, sig) = match kt {
        KeyType::Rsa2048 => (KeyAlgorithm::Rsa2048, &rcgen::PKCS_RSA_SHA256),
        KeyType::P256 => (KeyAlgorithm::EcdsaP256, &rcgen::PKCS_ECDSA_P256_SHA256),
    };
    let signing = SigningKey::generate(alg).map_err(|e| e.to_string())?;
    let pkcs8 = signing.to_pkcs8().map_err(|e| e.to_string())?;
    let rcgen = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.clone()),
        sig,
    )
    .map_err(|e| format!("cannot use the generated key: {e}"))?;
    Ok(NewKey {
        signing,
        pkcs8,
        rcgen,
    })
}

/// The PKCS#10 request of §11.3: empty subject, the user name as the only (rfc822Name)
/// subjectAltName.
fn build_csr(key: &NewKey, user_name: &str) -> Res<Vec<u8>> {
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
        user_name
            .to_string()
            .try_into()
            .map_err(|_| format!("{user_name:?} cannot be an rfc822Name"))?,
    )];
    let csr = p
        .serialize_request(&key.rcgen)
        .map_err(|e| format!("cannot build the certificate request: {e}"))?;
    Ok(csr.der().to_vec())
}

/// §11.3.1: a self-signed certificate whose Node-ID is the digest of the public key.
fn self_signed_cert(key: &NewKey, config: &OverlayConfig, user_name: &str) -> Res<Vec<u8>> {
    use rcgen::PublicKeyData as _;
    let digest = config
        .self_signed_permitted
        .as_ref()
        .and_then(|d| d.identity_digest())
        .ok_or("the configuration does not permit self-signed certificates (RFC 6940 §11.3.1)")?;
    let spki = key.rcgen.subject_public_key_info();
    let id = self_signed_node_id(digest, &spki, 1, 1, config.node_id_length)
        .ok_or("cannot derive the Node-ID")?;
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    let uri = node_id_uri(&id, &config.instance_name);
    p.subject_alt_names = vec![
        rcgen::SanType::URI(
            uri.clone()
                .try_into()
                .map_err(|_| format!("{uri:?} cannot be a URI"))?,
        ),
        rcgen::SanType::Rfc822Name(
            user_name
                .to_string()
                .try_into()
                .map_err(|_| format!("{user_name:?} cannot be an rfc822Name"))?,
        ),
    ];
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(365);
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| "the system random generator failed")?;
    serial[0] = (serial[0] & 0x3f) | 0x40;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    Ok(p.self_signed(&key.rcgen)
        .map_err(|e| format!("cannot make the self-signed certificate: {e}"))?
        .der()
        .to_vec())
}

/// The account name and user name for `--user` (NAME or NAME@overlay).
fn account_and_user(user: &str, overlay: &str) -> (String, String) {
    let suffix = format!("@{overlay}");
    let account = user.strip_suffix(&suffix).unwrap_or(user).to_string();
    let name = format!("{account}@{overlay}");
    (account, name)
}

#[allow(clippy::too_many_arguments)]
async fn post_enrollment(
    url: &str,
    overlay: &str,
    roots: Vec<Vec<u8>>,
    resolve: &BTreeMap<String, IpAddr>,
    timeout: Duration,
    account: &str,
    password: &str,
    nodeids: u32,
    csr: Vec<u8>,
) -> Res<Vec<u8>> {
    // §11.3: the enrollment server's certificate MUST match the overlay name, whatever host
    // its URL names; it must chain to the configuration's root-cert (or a system root).
    let check = server_check(overlay, &Trust::Roots(roots, true))?;
    let client = http_client(check, resolve, timeout)?;
    let mut form = reqwest::multipart::Form::new()
        .text("username", account.to_string())
        .text("password", password.to_string());
    if nodeids > 1 {
        form = form.text("nodeids", nodeids.to_string());
    }
    let part = reqwest::multipart::Part::bytes(csr)
        .file_name("csr.der")
        .mime_str(CSR_MEDIA_TYPE)
        .map_err(|e| format!("multipart: {e}"))?;
    form = form.part("csr", part);
    let resp = client
        .post(url)
        .header(reqwest::header::ACCEPT, CERT_MEDIA_TYPE)
        .multipart(form)
        .send()
        .await
        .map_err(|e| format!("enrollment request to {url} failed: {}", chain(&e)))?;
    let status = resp.status();
    let detail = resp
        .headers()
        .get(DETAIL_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let body = body_limited(resp, MAX_CERT_BYTES, "the enrollment answer").await?;
    if status == reqwest::StatusCode::FORBIDDEN {
        let token = String::from_utf8_lossy(&body).trim().to_string();
        return Err(format!("{url}: {}{detail}", token_message(&token)));
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)])
            .trim()
            .to_string();
        return Err(format!(
            "{url}: HTTP {status}{detail}{}",
            if text.is_empty() {
                String::new()
            } else {
                format!(" ({text})")
            }
        ));
    }
    if status != reqwest::StatusCode::OK || ctype != CERT_MEDIA_TYPE {
        return Err(format!(
            "{url}: expected 200 with {CERT_MEDIA_TYPE} (RFC 6940 §11.3), got {status} with {ctype:?}"
        ));
    }
    Ok(body)
}

/// Enrolls (see the module documentation).
pub async fn enroll(args: &EnrollOptions, password: PasswordSource) -> Res<EnrollOutcome> {
    let mut setup = Setup::from_args(args)?;
    // The data directory, when the overlay name is already known.
    let early_dir = args
        .data_dir
        .clone()
        .or_else(|| args.overlay.as_deref().map(default_data_dir));
    let early = match &early_dir {
        Some(d) => Stored::load(d)?,
        None => Stored::default(),
    };

    // 1–2: find and fetch the configuration.
    let obtained = obtain_configuration(args, &setup, &early).await?;

    // 3: check and pin.
    let fetched = check_config(
        &obtained.bytes,
        args.overlay.as_deref(),
        early.previous.as_ref(),
    )?;
    let overlay = fetched.config.instance_name.clone();
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| default_data_dir(&overlay));
    let stored = if early_dir.as_ref() == Some(&dir) {
        early
    } else {
        Stored::load(&dir)?
    };
    let (pin, first_use) = pin_signer(&setup, &stored, &fetched, &dir)?;
    if obtained.deferred {
        check_deferred_server(&obtained, &fetched.config, &overlay)?;
    }

    // 4: credentials.
    let config = &fetched.config;
    let got = obtain_credentials(args, &mut setup, config, password).await?;
    let cert = verify_credentials(args, config, &got)?;

    // 5: store.
    create_dir(&dir)?;
    let key_path = dir.join(KEY_FILE);
    let cert_path = dir.join(CERT_FILE);
    let config_path = dir.join(CONFIG_FILE);
    write_private_file(&key_path, to_pem("PRIVATE KEY", &got.key.pkcs8).as_bytes())?;
    write_private_file(&cert_path, to_pem("CERTIFICATE", &got.cert_der).as_bytes())?;
    write_private_file(&config_path, &fetched.bytes)?;
    write_private_file(&dir.join(PIN_FILE), format!("{pin}\n").as_bytes())?;
    Ok(EnrollOutcome {
        overlay,
        data_dir: dir,
        node_ids: cert.node_ids,
        user_name: Some(got.user_name),
        self_signed: got.self_signed,
        not_after: cert.not_after,
        signer_sha256: pin,
        trusted_on_first_use: first_use,
        key_path,
        cert_path,
        config_path,
        https_trust: obtained.https_trust,
    })
}

/// What the arguments give before anything is fetched.
struct Setup {
    /// Per HTTPS or DNS exchange.
    timeout: Duration,
    /// `--config-signer-sha256`, normalised.
    explicit_pin: Option<String>,
    /// `--resolve`, and the addresses `--dns-server` gave for enrollment servers.
    resolve: BTreeMap<String, IpAddr>,
    /// `--ca-cert`.
    extra_roots: Vec<Vec<u8>>,
    /// A resolver, when DNS is asked (SRV discovery or `--dns-server`).
    dns: Option<hickory_resolver::TokioResolver>,
}

impl Setup {
    fn from_args(args: &EnrollOptions) -> Res<Setup> {
        let timeout = Duration::from_secs(args.timeout.max(1));
        if let Some(o) = &args.overlay
            && o.is_empty()
        {
            return Err("--overlay: empty overlay name".into());
        }
        if args.overlay.is_none() && args.config_url.is_none() && args.config_file.is_none() {
            return Err("give --overlay NAME, --config-url URL or --config-file FILE".into());
        }
        if args.nodeids == 0 {
            return Err("--nodeids: at least 1".into());
        }
        let explicit_pin = args
            .config_signer_sha256
            .as_deref()
            .map(normalize_fingerprint)
            .transpose()?;
        let resolve = resolve_overrides(args)?;
        let mut extra_roots = Vec::new();
        for f in &args.ca_cert {
            extra_roots.extend(read_certs(f)?);
        }
        let dns = if args.dns_server.is_some()
            || (args.config_url.is_none() && args.config_file.is_none())
        {
            Some(resolver(args)?)
        } else {
            None
        };
        Ok(Setup {
            timeout,
            explicit_pin,
            resolve,
            extra_roots,
            dns,
        })
    }
}

/// What a data directory already holds: a configuration and the signer's fingerprint.
#[derive(Default)]
struct Stored {
    previous: Option<(Vec<u8>, OverlayConfig)>,
    pin: Option<String>,
}

impl Stored {
    fn load(dir: &Path) -> Res<Stored> {
        let previous = load_previous(dir)?;
        let pin = match dir.join(PIN_FILE).exists() {
            true => Some(normalize_fingerprint(
                String::from_utf8_lossy(&read_file(&dir.join(PIN_FILE))?).trim(),
            )?),
            false => None,
        };
        Ok(Stored { previous, pin })
    }
}

/// The configuration document as obtained (steps 1–2), and how its server was trusted.
struct Obtained {
    bytes: Vec<u8>,
    /// The configuration server's certificate, recorded during the handshake.
    https_seen: Option<Vec<u8>>,
    /// How that certificate was trusted (for [`EnrollOutcome::https_trust`]).
    https_trust: String,
    /// The name the certificate was checked for.
    tls_name: Option<String>,
    /// The chain is still to be checked, against the document's root-cert
    /// ([`check_deferred_server`]).
    deferred: bool,
}

/// Steps 1–2: the document from `--config-file`, or found (§11.2) and fetched over HTTPS.
async fn obtain_configuration(
    args: &EnrollOptions,
    setup: &Setup,
    stored: &Stored,
) -> Res<Obtained> {
    let Some(f) = &args.config_file else {
        return fetch_configuration(args, setup, stored).await;
    };
    if setup.explicit_pin.is_none() && stored.pin.is_none() && stored.previous.is_none() {
        tracing_note(&format!(
            "{} came out of band: its signer is trusted on first use; compare the fingerprint printed below with the operator's",
            f.display()
        ));
    }
    Ok(Obtained {
        bytes: read_file(f)?,
        https_seen: None,
        https_trust: "none (configuration file given)".to_string(),
        tls_name: None,
        deferred: false,
    })
}

/// Steps 1–2 over the network: the URL (`--config-url` or DNS SRV discovery, §11.2), where
/// to connect, which certificate to trust, and the GET.
async fn fetch_configuration(
    args: &EnrollOptions,
    setup: &Setup,
    stored: &Stored,
) -> Res<Obtained> {
    let (url, how, srv_address) = match &args.config_url {
        Some(u) => (u.clone(), "given URL".to_string(), None),
        None => {
            let overlay = args.overlay.as_deref().unwrap_or_default();
            let found = discover(setup.dns.as_ref().ok_or("no resolver")?, overlay).await?;
            (found.url, found.how, found.address)
        }
    };
    let host = url_host(&url)?;
    // Where to connect for the configuration: --resolve, else the SRV target (for this
    // fetch only: the SRV record names the reload-config service, not every use of the
    // overlay name), else --dns-server, else the system's resolver (reqwest).
    let mut config_resolve = setup.resolve.clone();
    if !config_resolve.contains_key(&host) {
        if let Some(ip) = srv_address {
            config_resolve.insert(host.clone(), ip);
        } else if let Some(d) = &setup.dns
            && args.dns_server.is_some()
        {
            config_resolve.insert(host.clone(), lookup_ip(d, &host).await?);
        }
    }
    let (trust, trust_text) = config_server_trust(&host, setup, stored);
    let deferred = matches!(trust, Trust::Deferred);
    let check = server_check(&host, &trust)?;
    let client = http_client(check.clone(), &config_resolve, setup.timeout)?;
    let resp = client
        .get(&url)
        .header(reqwest::header::ACCEPT, CONFIG_MEDIA_TYPE)
        .send()
        .await
        .map_err(|e| {
            let mut m = format!("cannot fetch the configuration from {url} ({how}): {}", chain(&e));
            if matches!(trust, Trust::System) {
                m.push_str(
                    "\n  the server's certificate is not trusted by the system's roots; an overlay's own server \
                     usually has a certificate from the overlay CA: give --ca-cert FILE (the overlay root from \
                     the operator) or --config-signer-sha256 HEX (from the operator)",
                );
            }
            m
        })?;
    if !resp.status().is_success() {
        return Err(format!(
            "{url}: HTTP {} instead of the configuration document",
            resp.status()
        ));
    }
    let body = body_limited(resp, MAX_DOCUMENT_BYTES, "the configuration document").await?;
    let seen = check.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Obtained {
        bytes: body,
        https_seen: seen,
        https_trust: trust_text,
        tls_name: Some(host),
        deferred,
    })
}

/// Trust for the first contact with the configuration server (§11.2), and its description:
/// the overlay root (`--ca-cert`, a stored configuration's root-certs); else, with a pinned
/// signer, the name now and the chain once the document is verified; else the system's roots.
fn config_server_trust(host: &str, setup: &Setup, stored: &Stored) -> (Trust, String) {
    let mut roots = setup.extra_roots.clone();
    if let Some((_, c)) = &stored.previous {
        roots.extend(c.root_certs.iter().map(|r| r.to_vec()));
    }
    let pinned = setup.explicit_pin.is_some() || stored.pin.is_some();
    if !roots.is_empty() {
        (
            Trust::Roots(roots, false),
            format!(
                "certificate for {host} chains to the overlay root (--ca-cert / stored configuration)"
            ),
        )
    } else if pinned {
        (
            Trust::Deferred,
            format!(
                "certificate for {host} checked by name, then against the root-cert of the configuration signed by the pinned signer"
            ),
        )
    } else {
        (
            Trust::System,
            format!("certificate for {host} chains to a root of the system store"),
        )
    }
}

/// Step 3's pin: the data directory holds no other overlay, and the configuration-signer's
/// fingerprint is the one given or recorded, or (neither) is recorded now: trust on first
/// use. The pin, and whether it is new.
fn pin_signer(
    setup: &Setup,
    stored: &Stored,
    fetched: &Fetched,
    dir: &Path,
) -> Res<(String, bool)> {
    let overlay = &fetched.config.instance_name;
    if let Some((_, prev)) = &stored.previous
        && &prev.instance_name != overlay
    {
        return Err(format!(
            "{} holds the configuration of overlay {:?}, not {overlay:?}: use another --data-dir",
            dir.display(),
            prev.instance_name
        ));
    }
    let (pin, first_use) = match (&setup.explicit_pin, &stored.pin) {
        (Some(p), _) => (p.clone(), false),
        (None, Some(p)) => (p.clone(), false),
        (None, None) => (fetched.signer_sha256[0].clone(), true),
    };
    if !fetched.signer_sha256.contains(&pin) {
        let source = if setup.explicit_pin.is_some() {
            "--config-signer-sha256".to_string()
        } else {
            format!(
                "the fingerprint recorded in {} on first use",
                dir.join(PIN_FILE).display()
            )
        };
        return Err(format!(
            "the configuration is signed by a certificate with SHA-256 {}, but {source} is {pin}: refusing it. \
             If the operator changed the configuration-signer, confirm the new fingerprint with them and pass it with --config-signer-sha256.",
            fetched.signer_sha256.join(" / ")
        ));
    }
    Ok((pin, first_use))
}

/// The deferred chain check: the configuration server's certificate chains to the
/// root-cert of the configuration it served, now that its signer is trusted.
fn check_deferred_server(obtained: &Obtained, config: &OverlayConfig, overlay: &str) -> Res<()> {
    let leaf = obtained
        .https_seen
        .as_deref()
        .ok_or("no server certificate was seen")?;
    let name = obtained.tls_name.as_deref().unwrap_or(overlay);
    check_deferred(leaf, &config.root_certs, name).map_err(|e| {
        format!("the HTTPS certificate of {name} does not chain to the root-cert of the configuration it served: {e}")
    })
}

/// Step 4's result: a new key and the certificate for it.
struct Credential {
    key: NewKey,
    cert_der: Vec<u8>,
    user_name: String,
    self_signed: bool,
}

/// Step 4: a new key, and a certificate for it: self-signed when the configuration permits
/// it (§11.3.1) and `--self-signed` is given or there is no enrollment server, else from an
/// enrollment server (§11.3).
async fn obtain_credentials(
    args: &EnrollOptions,
    setup: &mut Setup,
    config: &OverlayConfig,
    password: PasswordSource,
) -> Res<Credential> {
    let overlay = &config.instance_name;
    let self_signed = args.self_signed || config.enrollment_servers.is_empty();
    if self_signed && config.self_signed_permitted.is_none() {
        return Err(if args.self_signed {
            "--self-signed: the configuration does not permit self-signed certificates (RFC 6940 §11.3.1)".into()
        } else {
            "the configuration names no enrollment-server and does not permit self-signed certificates: no credentials can be had".into()
        });
    }
    let key = new_key(args.key_type)?;
    let (cert_der, user_name) = if self_signed {
        let user = args.user.clone().unwrap_or_else(|| "anonymous".to_string());
        let (_, user_name) = account_and_user(&user, overlay);
        (self_signed_cert(&key, config, &user_name)?, user_name)
    } else {
        let user = args.user.as_deref().ok_or(
            "--user NAME: the configuration names an enrollment server, which needs an account",
        )?;
        let (account, user_name) = account_and_user(user, overlay);
        let password = read_password(password, &format!("Password for {user_name}: "))?;
        let csr = build_csr(&key, &user_name)?;
        let der = request_certificate(args, setup, config, &account, &password, csr).await?;
        (der, user_name)
    };
    Ok(Credential {
        key,
        cert_der,
        user_name,
        self_signed,
    })
}

/// §11.3: posts the CSR to each enrollment-server in turn until one answers; a refusal is
/// final. The certificate, DER (PEM accepted too, though §11.3 says DER).
async fn request_certificate(
    args: &EnrollOptions,
    setup: &mut Setup,
    config: &OverlayConfig,
    account: &str,
    password: &str,
    csr: Vec<u8>,
) -> Res<Vec<u8>> {
    let mut roots: Vec<Vec<u8>> = config.root_certs.iter().map(|r| r.to_vec()).collect();
    roots.extend(setup.extra_roots.iter().cloned());
    let mut errors = Vec::new();
    let mut got = None;
    for url in &config.enrollment_servers {
        let host = match url_host(url) {
            Ok(h) => h,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if !setup.resolve.contains_key(&host)
            && let Some(d) = &setup.dns
            && args.dns_server.is_some()
        {
            match lookup_ip(d, &host).await {
                Ok(ip) => {
                    setup.resolve.insert(host.clone(), ip);
                }
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
        }
        match post_enrollment(
            url,
            &config.instance_name,
            roots.clone(),
            &setup.resolve,
            setup.timeout,
            account,
            password,
            args.nodeids,
            csr.clone(),
        )
        .await
        {
            Ok(der) => {
                got = Some(der);
                break;
            }
            // A refusal is final; only an unreachable server sends us to the next.
            Err(e)
                if e.contains("(failed_authentication)")
                    || e.contains("_not_available)")
                    || e.contains("(bad_CSR)")
                    || e.contains("HTTP 4") =>
            {
                return Err(e);
            }
            Err(e) => errors.push(e),
        }
    }
    let der =
        got.ok_or_else(|| format!("no enrollment server answered:\n  {}", errors.join("\n  ")))?;
    // PEM accepted too, though §11.3 says DER.
    Ok(match std::str::from_utf8(&der) {
        Ok(t) if t.contains("-----BEGIN CERTIFICATE") => {
            from_pem("CERTIFICATE", t).ok_or("malformed PEM certificate")?
        }
        _ => der,
    })
}

/// Verifies what step 4 got: chain to the root-cert incl. BasicConstraints (or a valid
/// self-signed identity, §11.3.1), validity, overlay, Node-IDs; our key; our user name; and
/// that key and certificate sign together.
fn verify_credentials(
    args: &EnrollOptions,
    config: &OverlayConfig,
    got: &Credential,
) -> Res<ReloadCertificate> {
    let cert = ReloadCertificate::parse(got.cert_der.clone(), config.node_id_length)
        .map_err(|e| format!("the certificate received is unusable: {e}"))?;
    let mut policy = trust_policy(config);
    if !got.self_signed {
        // An enrolled certificate must chain to the root-cert, not pass as self-signed.
        policy.self_signed = None;
    }
    policy
        .verify(&cert, &[], SystemTime::now())
        .map_err(|e| format!("the certificate received is refused: {e}"))?;
    if cert.public_key.as_ref() != got.key.signing.public_key().as_slice() {
        return Err("the certificate received is not for the key this node generated".into());
    }
    let user_name = &got.user_name;
    if cert.user_name.as_deref() != Some(user_name.as_str()) {
        return Err(format!(
            "the certificate received names user {:?}, not {user_name:?}",
            cert.user_name.as_deref().unwrap_or("none")
        ));
    }
    if !got.self_signed && (cert.node_ids.len() as u32) < args.nodeids {
        return Err(format!(
            "{} Node-IDs requested, the certificate holds {}",
            args.nodeids,
            cert.node_ids.len()
        ));
    }
    // The credentials work: they can sign.
    Credentials::new(
        SigningKey::from_pkcs8(&got.key.pkcs8).map_err(|e| e.to_string())?,
        cert.clone(),
        cert.node_ids[0],
    )
    .map_err(|e| format!("the credentials do not fit together: {e}"))?;
    Ok(cert)
}

fn tracing_note(msg: &str) {
    eprintln!("note: {msg}");
}

fn create_dir(dir: &Path) -> Res<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// The stored credentials and configuration of a data directory, ready to sign with.
pub fn load_credentials(dir: &Path) -> Res<(OverlayConfig, Credentials)> {
    let (_, config) = crate::datadir::load_config(dir)?;
    let creds = crate::datadir::load_credentials(dir, config.node_id_length)?;
    Ok((config, creds))
}

/// Prints what enrollment did (the CLI's output).
pub fn print_outcome(o: &EnrollOutcome) {
    let fmt = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .map(reload_proto::config::format_datetime)
            .unwrap_or_else(|_| t.to_string())
    };
    println!(
        "enrolled in overlay {} ({} certificate)",
        o.overlay,
        if o.self_signed {
            "self-signed"
        } else {
            "CA-issued"
        }
    );
    for id in &o.node_ids {
        println!("  node-id:      {}", id.to_hex());
    }
    println!(
        "  user name:    {}",
        o.user_name.as_deref().unwrap_or("none")
    );
    println!("  valid until:  {}", fmt(o.not_after));
    println!("  key:          {}", o.key_path.display());
    println!("  certificate:  {}", o.cert_path.display());
    println!("  configuration: {}", o.config_path.display());
    println!("  HTTPS trust:  {}", o.https_trust);
    if o.trusted_on_first_use {
        println!(
            "  configuration-signer SHA-256 {} TRUSTED ON FIRST USE: compare it with the operator's; a different one will be refused",
            o.signer_sha256
        );
    } else {
        println!(
            "  configuration-signer SHA-256 {} (pinned)",
            o.signer_sha256
        );
    }
}
