//! `reload-node enroll`: the command line of the enrollment client
//! (`reload_node::enroll`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use reload_node::enroll::{EnrollOptions, KeyType};

pub const LONG_ABOUT: &str = "\
Get the overlay's configuration and this node's credentials (RFC 6940 §11.2, §11.3, §11.3.1),
and store key, certificate and configuration in the data directory.

Where the configuration comes from:
  --overlay NAME       DNS SRV _reload-config._tcp.NAME gives the server's address and port; the
                       URL is https://NAME/.well-known/reload-config and its certificate must
                       match NAME (no SRV record: NAME itself, port 443)
  --config-url URL     that URL; its certificate must match the URL's host
  --config-file FILE   a document obtained out of band (e-mail, USB stick)

Why the first configuration is trusted (there is no earlier one to vouch for it):
  --ca-cert FILE       the overlay's root certificate, from the operator (reload-enroll's
                       ca.crt): the HTTPS certificate must chain to it
  --config-signer-sha256 HEX
                       the SHA-256 of the configuration-signer's certificate, from the
                       operator (reload-enroll init prints it): the document must be signed by
                       that certificate, and the HTTPS certificate must then chain to the
                       document's root-cert
  neither              the HTTPS certificate must chain to a root of the system's store, and
                       the signer's fingerprint is recorded (trust on first use, printed); a
                       later configuration signed by another certificate is refused
A stored configuration (re-enrollment) adds its root-certs to the trusted roots, and a new
document must then be signed by one of its configuration-signers with a newer sequence.

Where the servers are: normal DNS, or --dns-server IP:PORT to ask that server (SRV, A, AAAA)
instead of /etc/resolv.conf, or --resolve HOST=IP to connect to IP for HOST (like curl
--resolve or an /etc/hosts line; the certificate is still checked against the name).

The password (only for an enrollment server) is prompted for, or read from stdin with
--password-stdin; it is never taken from the command line.";

/// Key types a node can generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyTypeArg {
    /// RSA 2048 bits (mandatory to implement, RFC 6940 §6.3.4).
    Rsa2048,
    /// ECDSA P-256.
    P256,
}

/// `reload-node enroll`.
#[derive(Args, Clone, Debug)]
#[command(long_about = LONG_ABOUT)]
pub struct EnrollArgs {
    /// The overlay name (required unless --config-url or --config-file give a document with
    /// a single configuration).
    #[arg(long, value_name = "NAME")]
    pub overlay: Option<String>,
    /// URL of the configuration document (instead of DNS SRV discovery).
    #[arg(long, value_name = "URL", conflicts_with = "config_file")]
    pub config_url: Option<String>,
    /// A configuration document obtained out of band.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Account name at the enrollment server (the certificate's user name is
    /// NAME@overlay). For self-signed credentials: the user name to put in the certificate.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Read the password from stdin (one line) instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
    /// Where key, certificate and configuration are stored (default:
    /// $XDG_DATA_HOME/reload-node/OVERLAY, else ~/.local/share/reload-node/OVERLAY).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// SHA-256 (hex; colons allowed) of the configuration-signer's certificate.
    #[arg(long, value_name = "HEX")]
    pub config_signer_sha256: Option<String>,
    /// Trust this CA certificate (PEM or DER) for the HTTPS servers; repeat for several.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Vec<PathBuf>,
    /// Connect to IP for HOST (repeatable); the certificate is still checked for the name.
    #[arg(long, value_name = "HOST=IP")]
    pub resolve: Vec<String>,
    /// DNS server for SRV and address lookups, instead of the system's.
    #[arg(long, value_name = "IP:PORT")]
    pub dns_server: Option<SocketAddr>,
    /// Key type to generate.
    #[arg(long, value_enum, default_value = "rsa2048")]
    pub key_type: KeyTypeArg,
    /// Number of Node-IDs to request (RFC 6940 §11.3 `nodeids`).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub nodeids: u32,
    /// Make a self-signed certificate (RFC 6940 §11.3.1; the configuration must permit it).
    #[arg(long)]
    pub self_signed: bool,
    /// Seconds each HTTPS or DNS exchange may take.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
}

impl From<KeyTypeArg> for KeyType {
    fn from(k: KeyTypeArg) -> Self {
        match k {
            KeyTypeArg::Rsa2048 => KeyType::Rsa2048,
            KeyTypeArg::P256 => KeyType::P256,
        }
    }
}

impl From<EnrollArgs> for EnrollOptions {
    fn from(a: EnrollArgs) -> Self {
        EnrollOptions {
            overlay: a.overlay,
            config_url: a.config_url,
            config_file: a.config_file,
            user: a.user,
            password_stdin: a.password_stdin,
            data_dir: a.data_dir,
            config_signer_sha256: a.config_signer_sha256,
            ca_cert: a.ca_cert,
            resolve: a.resolve,
            dns_server: a.dns_server,
            key_type: a.key_type.into(),
            nodeids: a.nodeids,
            self_signed: a.self_signed,
            timeout: a.timeout,
        }
    }
}
