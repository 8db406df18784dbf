//! NSS key log (the `SSLKEYLOGFILE` format) for decrypting captures of TLS and DTLS links
//! with Wireshark / tshark. Off unless the caller asks for it: the secrets it writes break the
//! confidentiality of every logged session.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where key log lines go.
#[derive(Clone)]
pub enum KeyLogSink {
    /// Each line (without newline) is handed to the callback.
    Lines(Arc<dyn Fn(&str) + Send + Sync>),
    /// Lines are appended to this file (created mode 0600), like `SSLKEYLOGFILE`.
    File(PathBuf),
}

impl fmt::Debug for KeyLogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyLogSink::Lines(_) => f.write_str("KeyLogSink::Lines(..)"),
            KeyLogSink::File(p) => write!(f, "KeyLogSink::File({})", p.display()),
        }
    }
}

impl KeyLogSink {
    /// The file named by the `SSLKEYLOGFILE` environment variable, if set and non-empty.
    pub fn from_env() -> Option<Self> {
        std::env::var_os("SSLKEYLOGFILE")
            .filter(|v| !v.is_empty())
            .map(|v| KeyLogSink::File(PathBuf::from(v)))
    }

    /// A sink that collects lines into a shared vector (handy in tests).
    pub fn collect() -> (Self, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        let sink = KeyLogSink::Lines(Arc::new(move |line: &str| {
            l.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.to_string());
        }));
        (sink, lines)
    }

    pub(crate) fn write_line(&self, line: &str) {
        match self {
            KeyLogSink::Lines(f) => f(line),
            KeyLogSink::File(path) => {
                let mut o = OpenOptions::new();
                o.create(true).append(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    o.mode(0o600);
                }
                // A debugging aid: failing to write the log must not fail the link.
                if let Ok(mut f) = o.open(path) {
                    let _ = writeln!(f, "{line}");
                }
            }
        }
    }
}

/// The rustls [`rustls::KeyLog`] writing NSS key log lines
/// (`LABEL <client_random hex> <secret hex>`) to a [`KeyLogSink`].
#[derive(Debug)]
pub struct NssKeyLog {
    sink: KeyLogSink,
}

impl NssKeyLog {
    pub fn new(sink: KeyLogSink) -> Self {
        NssKeyLog { sink }
    }

    /// One NSS key log line.
    pub fn line(label: &str, client_random: &[u8], secret: &[u8]) -> String {
        format!("{label} {} {}", hex(client_random), hex(secret))
    }
}

fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(H[usize::from(x >> 4)] as char);
        s.push(H[usize::from(x & 15)] as char);
    }
    s
}

impl rustls::KeyLog for NssKeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        self.sink
            .write_line(&NssKeyLog::line(label, client_random, secret));
    }
}
