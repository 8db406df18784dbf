//! Test harness: overlays made by the real `reload-enroll` binary in temporary data
//! directories, servers on loopback ports, HTTPS clients that reach them by the overlay
//! name, and row counts read straight from the SQLite file.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reload_node::enroll::{EnrollOptions, EnrollOutcome, PasswordSource};

pub const OVERLAY: &str = "overlay.test";
pub const PASSWORD: &str = "correct horse battery";
/// Longest wait for a server to be ready (debug builds on a busy 2-core machine).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_reload-enroll")
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A fresh empty directory under the target's test temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("enroll-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `reload-enroll ARGS` with `stdin`; returns (status ok, stdout, stderr).
pub fn run(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn reload-enroll");
    // The child may exit before reading (a usage error): a broken pipe is not our failure.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An overlay made by `reload-enroll init`.
pub struct Overlay {
    pub dir: PathBuf,
    pub port: u16,
    pub init_stdout: String,
}

impl Overlay {
    pub fn init(tag: &str, extra: &[&str]) -> Overlay {
        let dir = temp_dir(tag).join("server");
        let port = free_port();
        let port_s = port.to_string();
        let mut args = vec![
            "init",
            "--overlay",
            OVERLAY,
            "--data-dir",
            dir.to_str().unwrap(),
            "--port",
            &port_s,
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = run(&args, "");
        assert!(ok, "init failed: {out}\n{err}");
        Overlay {
            dir,
            port,
            init_stdout: out,
        }
    }

    pub fn d(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn add_user(&self, name: &str, password: &str) {
        let (ok, out, err) = run(
            &[
                "user",
                "add",
                name,
                "--data-dir",
                self.d(),
                "--password-stdin",
            ],
            &format!("{password}\n"),
        );
        assert!(ok, "user add {name}: {out}\n{err}");
    }

    pub fn start(&self, extra: &[&str]) -> Server {
        Server::start(self, extra)
    }

    /// (users, node_ids, certificates) rows.
    pub fn counts(&self) -> (i64, i64, i64) {
        let c = rusqlite::Connection::open_with_flags(
            self.dir.join("enroll.sqlite"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        c.query_row(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM node_ids), (SELECT count(*) FROM certificates)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    }

    pub fn config_url(&self) -> String {
        format!("https://{OVERLAY}:{}/.well-known/reload-config", self.port)
    }

    pub fn enroll_url(&self) -> String {
        format!("https://{OVERLAY}:{}/enroll", self.port)
    }

    /// Client arguments that reach this server by the overlay name and trust its root.
    pub fn client_args(&self, data_dir: &Path, user: &str) -> EnrollOptions {
        let mut a = EnrollOptions::for_overlay(OVERLAY);
        a.config_url = Some(self.config_url());
        a.resolve = vec![format!("{OVERLAY}=127.0.0.1")];
        a.ca_cert = vec![self.ca_pem()];
        a.user = Some(user.to_string());
        a.data_dir = Some(data_dir.to_path_buf());
        a.timeout = 60;
        a
    }

    /// An HTTPS client for raw requests: the overlay name resolves to 127.0.0.1 and the
    /// overlay root is the only trusted root.
    pub fn http(&self) -> reqwest::Client {
        let pem = std::fs::read(self.ca_pem()).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .resolve(OVERLAY, SocketAddr::from(([127, 0, 0, 1], self.port)))
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }
}

/// A running `reload-enroll serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub ready_line: String,
    pub stderr_path: PathBuf,
}

impl Server {
    fn start(o: &Overlay, extra: &[&str]) -> Server {
        let listen = format!("127.0.0.1:{}", o.port);
        let stderr_path = o
            .dir
            .with_file_name(format!("serve-{}.log", SEQ.fetch_add(1, Ordering::Relaxed)));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut args = vec!["serve", "--data-dir", o.d(), "--listen", &listen];
        args.extend_from_slice(extra);
        let mut child = Command::new(bin())
            .args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn reload-enroll serve");
        // Readiness: the server prints one line once it listens; wait for it, bounded.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let ready_line = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => break l,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = child.try_wait().unwrap() {
                        panic!(
                            "server exited ({status}): {}",
                            std::fs::read_to_string(&stderr_path).unwrap_or_default()
                        );
                    }
                    assert!(
                        Instant::now() < deadline,
                        "server not ready within {READY_TIMEOUT:?}"
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!(
                        "server closed stdout: {}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    )
                }
            }
        };
        assert!(
            ready_line.contains(&format!("https://{listen}")),
            "{ready_line}"
        );
        Server {
            child,
            ready_line,
            stderr_path,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Kills the server (SIGKILL: nothing gets a chance to flush) and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Enrolls in-process with the client library (what `reload-node enroll` runs).
pub async fn enroll(args: &EnrollOptions, password: &str) -> Result<EnrollOutcome, String> {
    reload_node::enroll::enroll(args, PasswordSource::Given(password.to_string())).await
}

/// A PKCS#10 request for `user_name` with a new key of `alg` (rcgen), DER; and the key.
pub fn csr(
    alg: &'static rcgen::SignatureAlgorithm,
    names: Vec<rcgen::SanType>,
) -> (Vec<u8>, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.subject_alt_names = names;
    (p.serialize_request(&key).unwrap().der().to_vec(), key)
}

pub fn email(s: &str) -> rcgen::SanType {
    rcgen::SanType::Rfc822Name(s.to_string().try_into().unwrap())
}

/// The parts of an enrollment form.
pub struct Form<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub nodeids: Option<&'a str>,
    pub csr: Option<(Vec<u8>, &'a str)>,
}

impl<'a> Form<'a> {
    pub fn new(user: &'a str, password: &'a str, csr: Vec<u8>) -> Self {
        Form {
            username: Some(user),
            password: Some(password),
            nodeids: None,
            csr: Some((csr, "application/pkcs10")),
        }
    }

    pub fn build(self) -> reqwest::multipart::Form {
        let mut f = reqwest::multipart::Form::new();
        if let Some(u) = self.username {
            f = f.text("username", u.to_string());
        }
        if let Some(p) = self.password {
            f = f.text("password", p.to_string());
        }
        if let Some(n) = self.nodeids {
            f = f.text("nodeids", n.to_string());
        }
        if let Some((der, ty)) = self.csr {
            f = f.part(
                "csr",
                reqwest::multipart::Part::bytes(der)
                    .file_name("req.der")
                    .mime_str(ty)
                    .unwrap(),
            );
        }
        f
    }
}

/// The answer to a raw enrollment POST: status, body text, detail header.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    pub detail: String,
    pub retry_after: Option<String>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn post(
    http: &reqwest::Client,
    url: &str,
    form: Form<'_>,
    accept: Option<&str>,
) -> Answer {
    let mut rq = http.post(url).multipart(form.build());
    if let Some(a) = accept {
        rq = rq.header("accept", a);
    }
    answer(rq.send().await.unwrap()).await
}

pub async fn answer(r: reqwest::Response) -> Answer {
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = h("content-type").unwrap_or_default();
    let detail = h("reload-enroll-detail").unwrap_or_default();
    let retry_after = h("retry-after");
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap().to_vec();
    Answer {
        status,
        content_type,
        body,
        detail,
        retry_after,
    }
}
