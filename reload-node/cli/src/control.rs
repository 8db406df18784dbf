//! `reload-node status`, `ping` and `trace`: clients of a running peer's control socket
//! (the protocol is documented in `reload_node::control`).

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use reload_node::control::default_path;

// ---- the client commands ------------------------------------------------------------

/// Where the running peer is.
#[derive(Args, Debug, Clone)]
pub struct PeerArgs {
    /// Data directory of the running peer (the one given to `reload-node run`).
    #[arg(long, value_name = "DIR", required_unless_present = "control")]
    pub data_dir: Option<PathBuf>,
    /// The peer's control socket (as given to `reload-node run --control`); default
    /// DIR/control.sock.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
}

/// Arguments of `reload-node status`.
#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    pub peer: PeerArgs,
}

/// Arguments of `reload-node ping`.
#[derive(Args, Debug, Clone)]
pub struct PingArgs {
    #[command(flatten)]
    pub peer: PeerArgs,
    /// Whom to ping: a Node-ID in hex, a reload:// URI (RFC 6940 §14.15), or
    /// resource:NAME (the peer responsible for the Resource-ID of NAME answers).
    #[arg(value_name = "DEST")]
    pub dest: String,
    /// Number of Pings.
    #[arg(long, short = 'c', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: u32,
    /// Milliseconds between Pings.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub interval_ms: u64,
}

/// Arguments of `reload-node trace`.
#[derive(Args, Debug, Clone)]
pub struct TraceArgs {
    #[command(flatten)]
    pub peer: PeerArgs,
    /// The target: a Node-ID in hex, a reload:// URI (RFC 6940 §14.15), or resource:NAME.
    #[arg(value_name = "DEST")]
    pub dest: String,
}

/// Arguments of `reload-node appattach`.
#[derive(Args, Debug, Clone)]
pub struct AppAttachArgs {
    #[command(flatten)]
    pub peer: PeerArgs,
    /// The node to reach: a Node-ID in hex, a reload:// URI (RFC 6940 §14.15), or
    /// resource:NAME (the peer responsible for that Resource-ID).
    #[arg(value_name = "DEST")]
    pub dest: String,
}

pub const APPATTACH_ABOUT: &str = "\
Check that applications reach a node: the running peer sends an AppAttach (RFC 6940 \
§6.5.2) to DEST for the echo application every peer answers, sets up the flow, and \
times one message there and back. In an ICE overlay the flow is DTLS over the ICE pair \
the two nodes' checks selected, printed with its candidate types (host, srflx, prflx, \
relay: whether a NAT was crossed directly, by hole punching, or through a TURN relay); \
in a No-ICE overlay it is TLS over TCP.

DEST is as for `reload-node ping`.

Exit status: 0 when the echo came back, 1 when no flow could be set up (the error names \
the candidate pairs tried), 2 when the peer cannot be reached or DEST is not understood.";

pub const STATUS_ABOUT: &str = "\
Show a running peer's state: its Node-ID, whether it joined, its successors and \
predecessors on the ring, its routing table (successors, predecessors, fingers) and the \
peers it has a link to.

The peer is found by its control socket: DIR/control.sock for `reload-node run \
--data-dir DIR`, or the --control PATH it was started with.";

pub const PING_ABOUT: &str = "\
Ping a node of the overlay through a running peer (RFC 6940 §6.5.3): the Ping is routed \
hop by hop to DEST; prints who answered and the round-trip time.

DEST is a Node-ID in hex (32 digits for 16-byte IDs), a reload:// URI (§14.15) naming a \
Node-ID of this overlay, or resource:NAME: the Resource-ID of the resource name NAME \
(overlay hash, §10.2); the peer responsible for it answers.

Exit status: 0 when at least one Ping was answered, 1 when none was, 2 when the peer \
cannot be reached or DEST is not understood.";

pub const TRACE_ABOUT: &str = "\
Trace the path a message to DEST takes through the overlay: Pings with TTL 0, 1, 2, … \
are sent through a running peer; the hop where the TTL runs out answers \
Error_TTL_Exceeded (RFC 6940 §6.3.2), the target answers the Ping. Prints each hop with \
its round-trip time, ending with the target; at most initial-ttl hops.

DEST is as for `reload-node ping`: a Node-ID in hex, a reload:// URI, or resource:NAME \
(the path ends at the peer responsible for that Resource-ID).

Exit status: 0 when the target answered, 1 when the trace did not get there, 2 when the \
peer cannot be reached or DEST is not understood.";

/// One line of an answer.
#[derive(Debug)]
enum Reply {
    Data(String),
    Ok,
    Error { kind: String, message: String },
}

struct Client {
    reader: std::io::BufReader<std::os::unix::net::UnixStream>,
    writer: std::os::unix::net::UnixStream,
    path: PathBuf,
}

impl Client {
    fn connect(peer: &PeerArgs) -> Result<Client, String> {
        let path = match (&peer.control, &peer.data_dir) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) => default_path(d),
            (None, None) => return Err("give --data-dir DIR or --control PATH".into()),
        };
        let whose = match (&peer.control, &peer.data_dir) {
            (None, Some(d)) => format!("in {}", d.display()),
            _ => format!("at {}", path.display()),
        };
        let stream = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
            use std::io::ErrorKind::*;
            match e.kind() {
                NotFound => format!(
                    "no peer is running {whose} (no control socket at {})",
                    path.display()
                ),
                ConnectionRefused => format!(
                    "no peer is running {whose} (the control socket {} is stale: the peer that \
                     made it is gone)",
                    path.display()
                ),
                PermissionDenied => format!(
                    "cannot use the control socket {}: permission denied (it is mode 0600: \
                     run as the peer's user)",
                    path.display()
                ),
                _ => format!(
                    "cannot connect to the control socket {}: {e}",
                    path.display()
                ),
            }
        })?;
        let writer = stream
            .try_clone()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Client {
            reader: std::io::BufReader::new(stream),
            writer,
            path,
        })
    }

    fn send(&mut self, command: &str, wait: Duration) -> Result<(), String> {
        let _ = self.reader.get_ref().set_read_timeout(Some(wait));
        self.writer
            .write_all(format!("{command}\n").as_bytes())
            .map_err(|e| {
                format!(
                    "the peer closed the control socket {}: {e}",
                    self.path.display()
                )
            })
    }

    fn next(&mut self) -> Result<Reply, String> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(64 * 1024)
            .read_until(b'\n', &mut buf)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    "the peer did not answer in time".to_string()
                }
                _ => format!("reading from {}: {e}", self.path.display()),
            })?;
        if n == 0 {
            return Err(format!(
                "the peer closed the control socket {} (it is shutting down?)",
                self.path.display()
            ));
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
        if line == "ok" {
            return Ok(Reply::Ok);
        }
        if let Some(rest) = line.strip_prefix("error ") {
            let (kind, message) = rest.split_once(": ").unwrap_or(("error", rest));
            return Ok(Reply::Error {
                kind: kind.to_string(),
                message: message.to_string(),
            });
        }
        Ok(Reply::Data(line))
    }
}

/// How long the client waits for one line of a ping or trace answer.
const ANSWER_WAIT: Duration = Duration::from_secs(120);

/// `reload-node status`.
pub fn status_main(args: StatusArgs) -> Result<bool, String> {
    let mut c = Client::connect(&args.peer)?;
    c.send("status", Duration::from_secs(10))?;
    loop {
        match c.next()? {
            Reply::Data(l) => {
                let (key, rest) = l.split_once(' ').unwrap_or((l.as_str(), ""));
                println!("{:<14} {rest}", format!("{key}:"));
            }
            Reply::Ok => return Ok(true),
            Reply::Error { message, .. } => return Err(message),
        }
    }
}

/// `reload-node ping`.
pub fn ping_main(args: PingArgs) -> Result<bool, String> {
    let mut c = Client::connect(&args.peer)?;
    let mut rtts: Vec<f64> = Vec::new();
    let mut lost = 0u32;
    for i in 0..args.count {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(args.interval_ms));
        }
        c.send(&format!("ping {}", args.dest), ANSWER_WAIT)?;
        let mut answered = None;
        loop {
            match c.next()? {
                Reply::Data(l) => {
                    let f: Vec<&str> = l.split_ascii_whitespace().collect();
                    if let ["reply", who, rtt] = f.as_slice() {
                        answered = Some((who.to_string(), rtt.parse::<f64>().unwrap_or(0.0)));
                    }
                }
                Reply::Ok => break,
                Reply::Error { kind, message } => match kind.as_str() {
                    "timeout" | "refused" | "unexpected" => {
                        println!("ping {}: {message}", args.dest);
                        break;
                    }
                    "destination" => return Err(format!("bad DEST: {message}")),
                    _ => return Err(message),
                },
            }
        }
        match answered {
            Some((who, rtt)) => {
                println!("reply from {who}: time={rtt:.3} ms");
                rtts.push(rtt);
            }
            None => lost += 1,
        }
    }
    let sent = args.count;
    print!(
        "--- {}: {sent} sent, {} answered, {lost} lost",
        args.dest,
        rtts.len()
    );
    if !rtts.is_empty() {
        let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rtts.iter().copied().fold(0.0, f64::max);
        let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
        print!(", rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms");
    }
    println!();
    Ok(!rtts.is_empty())
}

/// `reload-node trace`.
/// `reload-node appattach`.
pub fn appattach_main(args: AppAttachArgs) -> Result<bool, String> {
    let mut c = Client::connect(&args.peer)?;
    c.send(&format!("appattach {}", args.dest), ANSWER_WAIT)?;
    let mut ok = false;
    loop {
        match c.next()? {
            Reply::Data(l) => {
                let f: Vec<&str> = l.split_ascii_whitespace().collect();
                match f.as_slice() {
                    ["flow", who, transport, setup, rtt, pair @ ..] => {
                        let pair = match pair {
                            [lk, la, "->", rk, ra] => format!(" over {lk} {la} -> {rk} {ra}"),
                            _ => String::new(),
                        };
                        println!(
                            "appattach {who}: {transport}{pair}; set up in {setup} ms, echo in {rtt} ms"
                        );
                        ok = true;
                    }
                    _ => println!("{l}"),
                }
            }
            Reply::Ok => return Ok(ok),
            Reply::Error { kind, message } => match kind.as_str() {
                "flow" | "timeout" | "refused" => {
                    println!("appattach {}: {message}", args.dest);
                    return Ok(false);
                }
                "destination" => return Err(format!("bad DEST: {message}")),
                _ => return Err(message),
            },
        }
    }
}

pub fn trace_main(args: TraceArgs) -> Result<bool, String> {
    let mut c = Client::connect(&args.peer)?;
    c.send(&format!("trace {}", args.dest), ANSWER_WAIT)?;
    println!("trace to {}:", args.dest);
    let _ = std::io::stdout().flush();
    loop {
        match c.next()? {
            Reply::Data(l) => {
                let f: Vec<&str> = l.split_ascii_whitespace().collect();
                match f.as_slice() {
                    [what @ ("hop" | "target"), n, who, rtt] => {
                        let mark = if *what == "target" { "  (target)" } else { "" };
                        println!("{n:>3}  {who}  {rtt} ms{mark}");
                    }
                    _ => println!("{l}"),
                }
                let _ = std::io::stdout().flush();
            }
            Reply::Ok => return Ok(true),
            Reply::Error { kind, message } => match kind.as_str() {
                "timeout" | "refused" | "unexpected" | "ttl" => {
                    println!("trace incomplete: {message}");
                    return Ok(false);
                }
                "destination" => return Err(format!("bad DEST: {message}")),
                _ => return Err(message),
            },
        }
    }
}
