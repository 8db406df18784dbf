//! `reload-node`: the RELOAD overlay peer's command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

mod control;
mod enroll;
mod run;
mod sandbox;

use clap::{Parser, Subcommand};
use reload_proto::check::{CheckOptions, check_document, trust_policy};
use reload_proto::config::{ConfigDocument, OverlayConfig};
use reload_proto::identity::{ReloadCertificate, from_pem};

#[derive(Parser, Debug)]
#[command(
    name = "reload-node",
    version,
    about = "RELOAD (RFC 6940) overlay peer",
    long_about = "RELOAD (RFC 6940) overlay peer.\n\nCheck an overlay configuration document before \
                  deploying it, inspect node certificates, and enroll: get an overlay's configuration \
                  and this node's certificate (`enroll`), run a peer (`run`), or a whole overlay on \
                  loopback (`sandbox`). A running peer answers `status`, `ping`, `trace` and `appattach` on its \
                  control socket (DATA_DIR/control.sock)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Overlay configuration documents (RFC 6940 §11.1).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Node certificates (RFC 6940 §11.3).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Get the overlay's configuration and this node's certificate from its configuration
    /// and enrollment servers (RFC 6940 §11.2, §11.3), or make a self-signed one (§11.3.1).
    #[command(long_about = enroll::LONG_ABOUT)]
    Enroll(enroll::EnrollArgs),
    /// Run a peer with the credentials and configuration in its data directory: listen,
    /// join through a bootstrap peer (or start a new overlay with --first), keep the
    /// CHORD-RELOAD ring, route messages; leave the overlay cleanly on SIGINT/SIGTERM.
    Run(Box<run::RunArgs>),
    /// A whole overlay on loopback from nothing: an enrollment server, N enrolled peers
    /// over TLS (or DTLS), the ring checked and printed, the path between two distant peers
    /// traced (TTL-limited Pings) and a Ping timed, a single value, an array and a
    /// dictionary stored, fetched back and shown with the peers holding their replicas;
    /// keeps running until Ctrl-C (--check: exit 0 after the checks).
    Sandbox(sandbox::SandboxArgs),
    /// Show a running peer's Node-ID, ring neighbours, routing table and connected peers
    /// (through its control socket).
    #[command(long_about = control::STATUS_ABOUT)]
    Status(control::StatusArgs),
    /// Ping a Node-ID or Resource-ID through a running peer: who answered, round-trip
    /// time.
    #[command(long_about = control::PING_ABOUT)]
    Ping(control::PingArgs),
    /// Trace the overlay path to a Node-ID or Resource-ID through a running peer
    /// (TTL-limited Pings): each hop with its round-trip time.
    #[command(long_about = control::TRACE_ABOUT)]
    Trace(control::TraceArgs),
    /// AppAttach to a node through a running peer (RFC 6940 §6.5.2) for the echo
    /// application: whether applications reach it, and over which ICE pair.
    #[command(long_about = control::APPATTACH_ABOUT)]
    Appattach(control::AppAttachArgs),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Report every problem of a configuration document: grammar, configuration and
    /// kind signatures, expiration, sequence, unsupported mandatory extensions, and every
    /// other defect of §11.1. Exits 0 only when there is none.
    Check {
        /// The document (`.relo`, application/p2p-overlay+xml).
        file: PathBuf,
        /// Check the grammar only: no signatures, expiry or semantic checks.
        #[arg(long)]
        no_verify: bool,
        /// The configuration currently in use: its configuration-signers must have signed
        /// FILE, and FILE's sequence must be newer. Without it, FILE is checked against its
        /// own signer list (as for a first document fetched over HTTPS).
        #[arg(long, value_name = "FILE")]
        previous: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum CertCommand {
    /// Print a certificate's Node-IDs, user name, validity and — with --config — whether it
    /// is acceptable in that overlay (chain to a root-cert, overlay name, bad-node,
    /// self-signed policy).
    Show {
        /// Certificate, PEM or DER.
        file: PathBuf,
        /// Overlay configuration to judge the certificate against.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Node-ID length when no configuration is given.
        #[arg(long, default_value_t = 16)]
        node_id_length: usize,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn load_config(path: &Path) -> Result<OverlayConfig, String> {
    let doc = ConfigDocument::parse_bytes(&read(path)?).map_err(|problems| {
        let list: Vec<String> = problems
            .iter()
            .map(|p| format!("  {}: {p}", path.display()))
            .collect();
        format!(
            "{} is not a valid configuration document:\n{}",
            path.display(),
            list.join("\n")
        )
    })?;
    doc.configurations
        .into_iter()
        .next()
        .map(|c| c.config)
        .ok_or_else(|| format!("{} holds no configuration element", path.display()))
}

fn config_check(file: &Path, no_verify: bool, previous: Option<&Path>) -> Result<bool, String> {
    let xml = read(file)?;
    let previous = previous.map(load_config).transpose()?;
    let report = check_document(
        &xml,
        &CheckOptions {
            verify: !no_verify,
            previous,
            now: SystemTime::now(),
        },
    );
    for p in &report.problems {
        println!("{}: {p}", file.display());
    }
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    if report.is_clean() {
        let n = report
            .document
            .as_ref()
            .map_or(0, |d| d.configurations.len());
        println!(
            "{}: OK ({n} configuration{})",
            file.display(),
            if n == 1 { "" } else { "s" }
        );
    } else {
        println!("{}: {} problem(s)", file.display(), report.problems.len());
    }
    Ok(report.is_clean())
}

fn fmt_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(reload_proto::config::format_datetime)
        .unwrap_or_else(|_| unix.to_string())
}

fn cert_show(file: &Path, config: Option<&Path>, node_id_length: usize) -> Result<bool, String> {
    let raw = read(file)?;
    let der = match std::str::from_utf8(&raw) {
        Ok(text) if text.contains("-----BEGIN") => from_pem("CERTIFICATE", text)
            .ok_or_else(|| format!("{}: no CERTIFICATE block in the PEM file", file.display()))?,
        _ => raw,
    };
    let config = config.map(load_config).transpose()?;
    let len = config.as_ref().map_or(node_id_length, |c| c.node_id_length);
    let cert =
        ReloadCertificate::parse(der, len).map_err(|e| format!("{}: {e}", file.display()))?;
    println!("certificate: {}", file.display());
    for (id, overlay) in cert.node_ids.iter().zip(&cert.overlays) {
        println!("  node-id:    {id} (overlay {overlay})");
    }
    if cert.node_ids.is_empty() {
        println!("  node-id:    none (no reload: URI)");
    }
    println!(
        "  user name:  {}",
        cert.user_name.as_deref().unwrap_or("none")
    );
    println!(
        "  key:        {:?}{}",
        cert.key_kind,
        cert.key_bits
            .map(|b| format!(" {b} bits"))
            .unwrap_or_default()
    );
    println!(
        "  valid:      {} .. {}",
        fmt_time(cert.not_before),
        fmt_time(cert.not_after)
    );
    if cert.is_ca {
        println!("  CA:         yes");
    }
    for n in &cert.unexpected_names {
        println!("  warning:    subjectAltName entry not allowed by RFC 6940 §11.3: {n}");
    }
    let Some(config) = config else {
        println!("  verdict:    not judged (give --config to check it against an overlay)");
        return Ok(true);
    };
    let now = SystemTime::now();
    match trust_policy(&config).verify(&cert, &[], now) {
        Ok(()) => {
            println!(
                "  verdict:    acceptable in overlay {}",
                config.instance_name
            );
            Ok(true)
        }
        Err(e) => {
            println!(
                "  verdict:    REFUSED in overlay {}: {e}",
                config.instance_name
            );
            Ok(false)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config(ConfigCommand::Check {
            file,
            no_verify,
            previous,
        }) => config_check(&file, no_verify, previous.as_deref()),
        Command::Cert(CertCommand::Show {
            file,
            config,
            node_id_length,
        }) => cert_show(&file, config.as_deref(), node_id_length),
        Command::Run(args) => run::main(*args),
        Command::Sandbox(args) => sandbox::main(args),
        Command::Status(args) => control::status_main(args),
        Command::Ping(args) => control::ping_main(args),
        Command::Trace(args) => control::trace_main(args),
        Command::Appattach(args) => control::appattach_main(args),
        Command::Enroll(args) => reload_node::enroll::run(&args.into()).map(|o| {
            reload_node::enroll::print_outcome(&o);
            true
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("reload-node: {e}");
            ExitCode::from(2)
        }
    }
}
