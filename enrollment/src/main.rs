//! `reload-enroll`: the RELOAD enrollment and configuration server (RFC 6940 §11.2–§11.3).

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use reload_enroll::ca::KeyType;
use reload_enroll::datadir::DataDir;
use reload_enroll::init::{InitOptions, init};
use reload_enroll::names::{check_account_name, user_name};
use reload_enroll::server::{ServeOptions, config_of, password_hash, serve};
use reload_enroll::store::Store;
use reload_enroll::throttle::ThrottleConfig;
use reload_enroll::{Error, Result, fmt_unix, sha256_hex};
use reload_proto::config::SelfSignedDigest;

const LONG_ABOUT: &str = "\
RELOAD (RFC 6940) enrollment and configuration server.

One data directory holds one overlay: its root CA, the configuration-signer and kind-signer
identities, the HTTPS server certificate, the signed configuration document and the account
database (SQLite). Start an overlay from nothing with:

  reload-enroll init --overlay overlay.example.org --data-dir /var/lib/reload-enroll
  reload-enroll user add alice --data-dir /var/lib/reload-enroll
  reload-enroll serve --data-dir /var/lib/reload-enroll --listen 0.0.0.0:6084

and give your users the overlay name plus, out of band, either ca.crt from the data directory
(`reload-node enroll --ca-cert ca.crt`) or the configuration-signer fingerprint printed by init
(`reload-node enroll --config-signer-sha256 HEX`).

Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more.";

#[derive(Parser, Debug)]
#[command(name = "reload-enroll", version, about = "RELOAD enrollment and configuration server (RFC 6940 §11.2-§11.3)", long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KeyTypeArg {
    /// RSA 2048 bits, SHA-256 (every RELOAD node verifies it, RFC 6940 §6.3.4).
    Rsa2048,
    /// ECDSA P-256, SHA-256.
    P256,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DigestArg {
    Sha1,
    Sha256,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create an overlay: root CA, configuration-signer and kind-signer identities, HTTPS
    /// certificate for the overlay name, signed configuration, empty account database.
    /// Refuses a data directory that already holds an overlay.
    #[command(long_about = "Create an overlay in DIR.\n\n\
        Makes the overlay's root CA (RSA-2048 unless --key-type p256), a configuration-signer and a \
        kind-signer identity (node certificates from that CA, each with a random Node-ID), the HTTPS \
        server certificate (issued by the CA for the overlay name: RFC 6940 §11.3 requires the \
        enrollment server's certificate to match it), and a configuration document signed by the \
        configuration-signer: CHORD-RELOAD, overlay-link-protocol TLS with no-ice (links \
        TLS-TCP-FH-NO-ICE and DTLS-UDP-SR-NO-ICE), the Kinds SIP-REGISTRATION, TURN-SERVICE, \
        CERTIFICATE_BY_NODE and CERTIFICATE_BY_USER signed by the kind-signer, the root-cert, the \
        enrollment URL https://NAME:PORT/enroll and the bootstrap nodes given.\n\n\
        Prints the SHA-256 fingerprints to hand to users out of band. Keys are written mode 0600.")]
    Init {
        /// The overlay name: a lower-case DNS name that resolves to this server (the HTTPS
        /// certificate is issued for it; clients look up _reload-config._tcp.NAME).
        #[arg(long, value_name = "NAME")]
        overlay: String,
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Key type of the CA, the signers and the HTTPS server.
        #[arg(long, value_enum, default_value = "rsa2048")]
        key_type: KeyTypeArg,
        /// The public HTTPS port, written into the enrollment URL (6084 is registered as
        /// reload-config, RFC 6940 §14.2).
        #[arg(long, default_value_t = reload_enroll::DEFAULT_PORT)]
        port: u16,
        /// Enrollment URL to publish instead of https://NAME:PORT/enroll (must be https:;
        /// its host's certificate must match the overlay name).
        #[arg(long, value_name = "URL")]
        enrollment_url: Option<String>,
        /// A bootstrap node, IP or IP:PORT (port 6084 by default); repeat for several.
        #[arg(long = "bootstrap", value_name = "ADDR")]
        bootstrap: Vec<String>,
        /// Also permit self-signed certificates (RFC 6940 §11.3.1) with this Node-ID digest.
        #[arg(long, value_enum, value_name = "DIGEST")]
        self_signed_permitted: Option<DigestArg>,
        /// Validity of the CA, signer and HTTPS certificates, days.
        #[arg(long, default_value_t = 3650)]
        validity_days: u32,
        /// Give the configuration an expiration this many days ahead (default: none).
        #[arg(long, value_name = "DAYS")]
        config_expires_days: Option<u32>,
        /// Define a Kind besides the default ones (repeatable), signed by the kind-signer:
        /// ID,MODEL,POLICY,MAX-COUNT,MAX-SIZE — a Kind-ID from the private range
        /// 0xF0000001-0xFFFFFFFE (RFC 6940 §14.6), single|array|dictionary (§7.2), an
        /// access control policy (USER-MATCH, NODE-MATCH, USER-NODE-MATCH, NODE-MULTIPLE,
        /// §7.3), max-count and max-size (§11.1). Example: 0xf0000001,single,USER-MATCH,1,4096.
        #[arg(long = "kind", value_name = "SPEC", value_parser = reload_enroll::init::parse_kind_spec)]
        kinds: Vec<reload_proto::config::KindDefinition>,
        /// Make an ICE overlay (no-ice false, RFC 6940 §6.5.1.3): its peers run
        /// `reload-node run --protocol ice` and reach each other through NATs. Default:
        /// a No-ICE overlay (TLS or DTLS links, peers reachable at their addresses).
        #[arg(long)]
        ice: bool,
    },
    /// Accounts (SQLite, passwords hashed with argon2id).
    #[command(subcommand)]
    User(UserCommand),
    /// Serve the configuration (GET /.well-known/reload-config) and enrollment over HTTPS.
    #[command(long_about = "Serve the overlay over HTTPS (rustls).\n\n\
        GET /.well-known/reload-config answers the signed configuration document \
        (application/p2p-overlay+xml, RFC 6940 §11.2). POST to the path of the configuration's \
        enrollment-server URL is the enrollment of §11.3: multipart/form-data with username, \
        password, optional nodeids and csr (application/pkcs10, DER or PEM), Accept: \
        application/pkix-cert; 200 with the DER certificate, or 403 with one of the tokens \
        failed_authentication, username_not_available, Node-IDs_not_available, bad_CSR (the \
        reason in the log, and in the reload-enroll-detail header for all but \
        failed_authentication, which is one answer whether the account is unknown or disabled \
        or the password wrong). Malformed requests get 400, 406, \
        413 or 415; too many failed logins 429; slow requests 408.\n\n\
        Prints one line `reload-enroll: serving OVERLAY on https://ADDR` on stdout once listening. \
        Stops on SIGINT or SIGTERM, finishing requests in progress.")]
    Serve {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Address to listen on (port 0 picks a free port, printed on the ready line).
        #[arg(long, value_name = "ADDR", default_value = "[::]:6084")]
        listen: SocketAddr,
        /// Largest request body, bytes (413 beyond).
        #[arg(long, default_value_t = 64 * 1024)]
        max_body_bytes: usize,
        /// Most Node-IDs one account may hold (Node-IDs_not_available beyond).
        #[arg(long, default_value_t = 4)]
        max_node_ids: usize,
        /// Validity of issued certificates, days (capped at the CA's).
        #[arg(long, default_value_t = 365)]
        cert_validity_days: u32,
        /// Seconds a request may take, header to answer (408 beyond).
        #[arg(long, default_value_t = 30)]
        request_timeout: u64,
        /// Seconds a TLS handshake may take.
        #[arg(long, default_value_t = 10)]
        handshake_timeout: u64,
        /// Failed logins for one account before it is locked out (4x that per address).
        #[arg(long, default_value_t = 5)]
        max_failed_logins: u32,
        /// First lockout, seconds; each further failure doubles it, up to 15 minutes.
        #[arg(long, default_value_t = 60)]
        lockout: u64,
        /// Password hashes computed at once (each argon2id hash takes 19 MiB of memory).
        #[arg(long, default_value_t = 4)]
        max_concurrent_hashes: usize,
    },
    /// Print the overlay, its configuration sequence, users and issued certificates.
    Status {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Add an account NAME; its user name is NAME@<overlay> (an rfc822Name, and the SIP AOR
    /// without sip:). The password is read from a prompt, or from stdin with
    /// --password-stdin; never from the command line.
    Add {
        name: String,
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Read the password from stdin (one line) instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts with their Node-IDs and certificate counts.
    List {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Disable an account: it can no longer enroll (its certificates stay valid until they
    /// expire; revoke Node-IDs with a bad-node entry in a new configuration).
    Disable {
        name: String,
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Enable a disabled account again.
    Enable {
        name: String,
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Set a new password (prompt, or stdin with --password-stdin).
    Passwd {
        name: String,
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        password_stdin: bool,
    },
}

/// Shortest password accepted.
const MIN_PASSWORD: usize = 8;
/// Longest password read.
const MAX_PASSWORD: usize = 1024;

fn read_password(name: &str, from_stdin: bool) -> Result<String> {
    let pw = if from_stdin {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(MAX_PASSWORD as u64 + 2)
            .read_to_end(&mut buf)
            .map_err(|e| Error::new(format!("cannot read the password from stdin: {e}")))?;
        let mut s = String::from_utf8(buf)
            .map_err(|_| Error::new("the password is not UTF-8 (RFC 6940 §11.3)"))?;
        if s.ends_with('\n') {
            s.pop();
            if s.ends_with('\r') {
                s.pop();
            }
        }
        if s.contains('\n') {
            return Err(Error::new(
                "--password-stdin reads one line; the input has several",
            ));
        }
        s
    } else {
        let a = rpassword::prompt_password(format!("New password for {name}: ")).map_err(|e| {
            Error::new(format!(
                "cannot prompt for a password ({e}); use --password-stdin"
            ))
        })?;
        let b = rpassword::prompt_password("Repeat it: ").map_err(|e| {
            Error::new(format!(
                "cannot prompt for a password ({e}); use --password-stdin"
            ))
        })?;
        if a != b {
            return Err(Error::new("the passwords differ"));
        }
        a
    };
    if pw.chars().count() < MIN_PASSWORD {
        return Err(Error::new(format!(
            "the password must have at least {MIN_PASSWORD} characters"
        )));
    }
    if pw.len() > MAX_PASSWORD {
        return Err(Error::new(format!(
            "the password must have at most {MAX_PASSWORD} bytes"
        )));
    }
    if pw.contains('\0') {
        return Err(Error::new("the password contains a NUL character"));
    }
    Ok(pw)
}

fn open_store(dir: &DataDir) -> Result<Store> {
    dir.require_initialized()?;
    Store::open(&dir.database())
}

fn parse_bootstrap(s: &str) -> Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, reload_proto::config::DEFAULT_BOOTSTRAP_PORT))
        .map_err(|_| Error::new(format!("--bootstrap {s:?}: not an IP address or IP:PORT")))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init {
            overlay,
            data_dir,
            key_type,
            port,
            enrollment_url,
            bootstrap,
            self_signed_permitted,
            validity_days,
            config_expires_days,
            kinds,
            ice,
        } => {
            let mut opts = InitOptions::new(overlay);
            opts.key_type = match key_type {
                KeyTypeArg::Rsa2048 => KeyType::Rsa2048,
                KeyTypeArg::P256 => KeyType::P256,
            };
            opts.port = port;
            opts.enrollment_url = enrollment_url;
            opts.bootstrap = bootstrap
                .iter()
                .map(|b| parse_bootstrap(b))
                .collect::<Result<_>>()?;
            opts.self_signed = self_signed_permitted.map(|d| match d {
                DigestArg::Sha1 => SelfSignedDigest::Sha1,
                DigestArg::Sha256 => SelfSignedDigest::Sha256,
            });
            opts.validity_days = validity_days;
            opts.config_expires_days = config_expires_days;
            opts.extra_kinds = kinds;
            opts.ice = ice;
            let dir = DataDir::new(&data_dir);
            let r = init(&dir, &opts)?;
            println!("created overlay {} in {}", r.overlay, data_dir.display());
            println!(
                "  configuration:        {} (sequence {})",
                dir.config().display(),
                r.sequence
            );
            println!("  enrollment URL:       {}", r.enrollment_url);
            println!("  root CA:              {}", dir.ca_cert().display());
            println!("  root CA SHA-256:      {}", r.ca_sha256);
            println!(
                "  configuration-signer: Node-ID {}",
                r.config_signer_node_id.to_hex()
            );
            println!("  config-signer SHA-256: {}", r.config_signer_sha256);
            println!(
                "  kind-signer:          Node-ID {}",
                r.kind_signer_node_id.to_hex()
            );
            println!();
            println!(
                "Give users the overlay name and, out of band, ca.crt (reload-node enroll --ca-cert)"
            );
            println!("or the config-signer SHA-256 (reload-node enroll --config-signer-sha256).");
            println!(
                "Next: reload-enroll user add NAME --data-dir {}",
                data_dir.display()
            );
            Ok(())
        }
        Command::User(u) => user_command(u),
        Command::Serve {
            data_dir,
            listen,
            max_body_bytes,
            max_node_ids,
            cert_validity_days,
            request_timeout,
            handshake_timeout,
            max_failed_logins,
            lockout,
            max_concurrent_hashes,
        } => {
            let mut opts = ServeOptions::new(listen);
            opts.max_body_bytes = max_body_bytes;
            opts.max_node_ids_per_user = max_node_ids.max(1);
            opts.cert_validity = time::Duration::days(cert_validity_days.max(1).into());
            opts.request_timeout = Duration::from_secs(request_timeout.max(1));
            opts.handshake_timeout = Duration::from_secs(handshake_timeout.max(1));
            opts.throttle = ThrottleConfig {
                max_failures: max_failed_logins.max(1),
                base_lockout: Duration::from_secs(lockout),
                ..ThrottleConfig::default()
            };
            opts.max_concurrent_hashes = max_concurrent_hashes.max(1);
            let dir = DataDir::new(&data_dir);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::new(format!("cannot start the runtime: {e}")))?;
            rt.block_on(serve(&dir, opts, |overlay, addr| {
                println!(
                    "reload-enroll: serving {} on https://{addr} (configuration {}, enrollment {})",
                    overlay.name,
                    reload_enroll::WELL_KNOWN_PATH,
                    overlay.enroll_paths.join(" ")
                );
                let _ = std::io::stdout().flush();
            }))
        }
        Command::Status { data_dir } => status(&DataDir::new(&data_dir)),
    }
}

fn user_command(u: UserCommand) -> Result<()> {
    match u {
        UserCommand::Add {
            name,
            data_dir,
            password_stdin,
        } => {
            check_account_name(&name)?;
            let dir = DataDir::new(&data_dir);
            let store = open_store(&dir)?;
            if store.user(&name)?.is_some() {
                return Err(Error::new(format!(
                    "user {name:?} already exists (reload-enroll user passwd to change its password)"
                )));
            }
            let overlay = config_of(&dir)?.instance_name;
            let pw = read_password(&name, password_stdin)?;
            store.add_user(&name, &password_hash(&pw)?)?;
            tracing::info!(user = %name, "account added");
            println!(
                "added user {name} (user name {})",
                user_name(&name, &overlay)
            );
            Ok(())
        }
        UserCommand::List { data_dir } => {
            let store = open_store(&DataDir::new(&data_dir))?;
            let users = store.users()?;
            if users.is_empty() {
                println!("no users");
            }
            for u in users {
                println!(
                    "{}\t{}\tcreated {}\tnode-ids {}\tcertificates {}",
                    u.name,
                    if u.disabled { "disabled" } else { "enabled" },
                    fmt_unix(u.created),
                    if u.node_ids.is_empty() {
                        "-".to_string()
                    } else {
                        u.node_ids.join(",")
                    },
                    u.certificates
                );
            }
            Ok(())
        }
        UserCommand::Disable { name, data_dir } => {
            open_store(&DataDir::new(&data_dir))?.set_disabled(&name, true)?;
            tracing::info!(user = %name, "account disabled");
            println!("disabled user {name}");
            Ok(())
        }
        UserCommand::Enable { name, data_dir } => {
            open_store(&DataDir::new(&data_dir))?.set_disabled(&name, false)?;
            tracing::info!(user = %name, "account enabled");
            println!("enabled user {name}");
            Ok(())
        }
        UserCommand::Passwd {
            name,
            data_dir,
            password_stdin,
        } => {
            let store = open_store(&DataDir::new(&data_dir))?;
            if store.user(&name)?.is_none() {
                return Err(Error::new(format!("no user {name:?}")));
            }
            let pw = read_password(&name, password_stdin)?;
            store.set_password(&name, &password_hash(&pw)?)?;
            tracing::info!(user = %name, "password changed");
            println!("changed the password of {name}");
            Ok(())
        }
    }
}

fn status(dir: &DataDir) -> Result<()> {
    let store = open_store(dir)?;
    let config = config_of(dir)?;
    let ca = reload_enroll::datadir::read_pem(&dir.ca_cert(), "CERTIFICATE")?;
    let signer = reload_enroll::datadir::read_pem(&dir.config_signer_cert(), "CERTIFICATE")?;
    println!("overlay:               {}", config.instance_name);
    println!("data directory:        {}", dir.root.display());
    println!("configuration:         sequence {}", config.sequence);
    println!(
        "  expiration:          {}",
        config
            .expiration
            .map_or("none".to_string(), reload_proto::config::format_datetime)
    );
    for e in &config.enrollment_servers {
        println!("  enrollment-server:   {e}");
    }
    for b in &config.bootstrap_nodes {
        println!("  bootstrap-node:      {b}");
    }
    println!("root CA SHA-256:       {}", sha256_hex(&ca));
    println!("config-signer SHA-256: {}", sha256_hex(&signer));
    let users = store.users()?;
    println!("users: {}", users.len());
    for u in &users {
        println!(
            "  {}\t{}\tnode-ids {}\tcertificates {}",
            u.name,
            if u.disabled { "disabled" } else { "enabled" },
            if u.node_ids.is_empty() {
                "-".to_string()
            } else {
                u.node_ids.join(",")
            },
            u.certificates
        );
    }
    let certs = store.certificates()?;
    println!("certificates: {}", certs.len());
    for c in &certs {
        println!(
            "  {}\t{}\t{}\t{}\tnode-ids {}\tvalid {} .. {}",
            c.serial,
            c.purpose,
            c.owner,
            c.user_name.as_deref().unwrap_or("-"),
            if c.node_ids.is_empty() {
                "-".to_string()
            } else {
                c.node_ids.join(",")
            },
            fmt_unix(c.not_before),
            fmt_unix(c.not_after)
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reload-enroll: {e}");
            ExitCode::from(2)
        }
    }
}
