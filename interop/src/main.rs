//! `reload-interop`: writes the corpus capture and decodes single messages, for checking
//! our RELOAD encoding against other software (Wireshark's dissector first).

use std::io::{Read, Write};
use std::process::ExitCode;

use reload_interop::pcap::{self, FrameKind};

const HELP: &str = "\
reload-interop: RELOAD (RFC 6940) messages for checking against other software

USAGE:
    reload-interop pcap FILE
    reload-interop decode [--hex]
    reload-interop --help

COMMANDS:
    pcap FILE    Write the built-in corpus (one realistic message for every message
                 code) as a classic libpcap file: one TCP connection from
                 127.0.0.1:49731 (peer Carol) to 127.0.0.2:6084 (peer Dave), SYN
                 handshake first, then one RELOAD framed message (RFC 6940 §6.6.2) per
                 TCP segment: data frames with per-direction sequence numbers and a few
                 ACK frames. Prints one tab-separated line per pcap frame:
                 frame number, frame type (tcp, data, ack), framing sequence (data and
                 ack frames), name (message code name, 'ack' or the TCP flags), length
                 (TCP payload bytes), and for data frames the corpus label.
                 Check it with: tshark -r FILE -V

    decode       Read one raw RELOAD message (forwarding header, contents, security
                 block; no framing header) from standard input, decode it and its body
                 with the default options (16-byte Node-IDs, max-message-size 5000,
                 registered Kinds) and print it as JSON. With --hex, standard input is
                 hex text (whitespace ignored). Exits 1 with the decoder's error (field
                 path and byte offset) when the message is malformed.

OPTIONS:
    -h, --help   Print this help.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => {
            eprint!("{HELP}");
            ExitCode::from(2)
        }
        ["-h" | "--help" | "help", ..]
        | ["pcap", "-h" | "--help"]
        | ["decode", "-h" | "--help", ..] => {
            // A closed stdout is not worth a panic.
            let _ = std::io::stdout().lock().write_all(HELP.as_bytes());
            ExitCode::SUCCESS
        }
        ["pcap", file] => report(write_pcap(file)),
        ["decode"] => report(decode(false)),
        ["decode", "--hex"] => report(decode(true)),
        _ => {
            eprintln!(
                "reload-interop: unrecognized arguments: {}\n\n{HELP}",
                args.join(" ")
            );
            ExitCode::from(2)
        }
    }
}

fn report(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reload-interop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_pcap(file: &str) -> Result<(), String> {
    let cap = pcap::corpus_capture().map_err(|e| format!("encoding the corpus: {e}"))?;
    std::fs::write(file, &cap.pcap).map_err(|e| format!("writing {file}: {e}"))?;
    let mut out = String::from("#frame\ttype\tsequence\tname\tlength\tlabel\n");
    for f in &cap.frames {
        let (kind, seq, label) = match &f.kind {
            FrameKind::Tcp(_) => ("tcp", String::new(), ""),
            FrameKind::Data {
                sequence, label, ..
            } => ("data", sequence.to_string(), label.as_str()),
            FrameKind::Ack { ack_sequence, .. } => ("ack", ack_sequence.to_string(), ""),
        };
        out.push_str(&format!(
            "{}\t{kind}\t{seq}\t{}\t{}\t{label}\n",
            f.number,
            f.name(),
            f.length
        ));
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing to standard output: {e}"))
}

fn decode(hex: bool) -> Result<(), String> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| format!("reading standard input: {e}"))?;
    let bytes = if hex { from_hex(&input)? } else { input };
    if bytes.is_empty() {
        return Err("no input: pipe one raw RELOAD message into standard input".to_string());
    }
    let json = reload_interop::decode_json(&bytes)?;
    let text = serde_json::to_string_pretty(&json).map_err(|e| format!("rendering JSON: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing to standard output: {e}"))
}

/// Hex text to bytes; white space anywhere is ignored.
fn from_hex(text: &[u8]) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!(
            "hex input has an odd number of digits ({})",
            digits.len()
        ));
    }
    hex::decode(&digits).map_err(|e| {
        // The error names the digit pair, counted from the first digit.
        let at = match e {
            hex::FromHexError::InvalidHexCharacter { index, .. } => index / 2 * 2,
            _ => 0,
        };
        match digits.get(at..at + 2).map(std::str::from_utf8) {
            Some(Ok(s)) => format!("non-hex input {s:?} at digit {at}"),
            _ => format!("non-hex input at digit {at}"),
        }
    })
}
