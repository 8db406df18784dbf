//! NSS key log (the `SSLKEYLOGFILE` format) for decrypting captures of TLS and DTLS links
//! with Wireshark / tshark. Off unless the caller asks for it: the secrets it writes break the
//! confidentiality of every logged session.

use std::fmt;
use std::sync::{Arc, Mutex};

/// Where key log lines go: each line (without newline) is handed to the callback. Writing
/// them to a file (`SSLKEYLOGFILE`) is the shell's business.
#[derive(Clone)]
pub struct KeyLogSink(Arc<dyn Fn(&str) + Send + Sync>);

impl fmt::Debug for KeyLogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyLogSink(..)")
    }
}

impl KeyLogSink {
    /// A sink calling `f` with every line.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        KeyLogSink(Arc::new(f))
    }

    /// A sink that collects lines into a shared vector (handy in tests).
    pub fn collect() -> (Self, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        let sink = KeyLogSink::new(move |line: &str| {
            l.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.to_string());
        });
        (sink, lines)
    }

    pub(crate) fn write_line(&self, line: &str) {
        (self.0)(line)
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
        format!(
            "{label} {} {}",
            hex::encode(client_random),
            hex::encode(secret)
        )
    }
}

impl rustls::KeyLog for NssKeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        self.sink
            .write_line(&NssKeyLog::line(label, client_random, secret));
    }
}
