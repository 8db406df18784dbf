//! The SIP usage (RFC 7904) on real processes with SIP software nobody here wrote: twenty
//! `reload-node run --sip` peers; SIPp (Debian's `sip-tester`) user agents register at
//! one peer and call through another, chosen so that the two peers are not neighbours
//! (no link between them: the AppAttach crosses the overlay).
//!
//! - a SIPp UAS registered at B as B's user, a SIPp UAC at A calling that AOR: INVITE,
//!   180, 200, ACK, BYE, 200 — then 20 concurrent calls; then a call cancelled while it
//!   rings (CANCEL, 200, 487, ACK); SIPp's built-in uac and uas (`-sn`); then a call
//!   with both user agents on TCP;
//! - baresip (Debian's `baresip-core`) registered at B answers a SIPp call from A
//!   automatically;
//! - B is killed (SIGKILL) in the middle of a dialog: the caller's BYE is answered 503 by
//!   A, not left hanging.
//!
//! Skipped, loudly, where `sipp` is not installed — a failure under the README's test
//! command, which installs it (`RELOAD_TEST_TOOLS=required`).
//! Every wait is bounded; child processes are killed on drop.

mod procs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use procs::{Proc, enroll_peers, free_port, scratch_dir, start_peers, status_file, wait_ring};

const OVERLAY: &str = "sip.procs.test";
const PEERS: usize = 20;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../interop/sipp")
        .join(name)
}

/// A UDP port nobody uses right now (for a SIPp instance).
/// The loopback address the SIPp user agents listen on. Not 127.0.0.1: connections
/// between the peers (to 127.0.0.6x) take their ephemeral ports there, and one could hold
/// a port a SIPp is about to bind.
const SIPP_IP: &str = "127.0.0.58";

/// A UDP port free at `SIPP_IP`.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind(format!("{SIPP_IP}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (bounded) until something holds UDP `port` at `SIPP_IP` — a SIPp that started
/// listening — so that calls are not sent before their callee is there.
fn wait_udp_bound(port: &str) {
    let addr = format!("{SIPP_IP}:{port}");
    for _ in 0..500 {
        if std::net::UdpSocket::bind(&addr).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("nothing listens on udp {addr}");
}

/// `sipp ARGS` with a global timeout, its output in `log`.
fn sipp(dir: &Path, log: &str, args: &[String]) -> Proc {
    let out = std::fs::File::create(dir.join(log)).unwrap();
    Proc::spawn(
        Command::new("sipp")
            .args(args)
            .args(["-nostdin", "-timeout", "60s", "-trace_err", "-error_file"])
            .arg(dir.join(format!("{log}.errors")))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out),
        log.to_string(),
    )
}

fn tail(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let errors = std::fs::read_to_string(dir.join(format!("{name}.errors"))).unwrap_or_default();
    let t: String = text
        .chars()
        .rev()
        .take(3000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{t}\n-- errors:\n{errors}")
}

/// A 20 ms, 8 kHz, 16-bit mono WAV of silence (baresip's audio source).
fn silence_wav(path: &Path) {
    let samples = 160u32;
    let data = samples * 2;
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data.to_le_bytes());
    w.resize(w.len() + data as usize, 0);
    std::fs::write(path, w).unwrap();
}

/// The loopback address baresip listens on: one no peer, SIPp or outgoing connection of
/// this test uses, so that nothing else can hold its ports.
const BARESIP_IP: &str = "127.0.0.59";

/// A port at which baresip can listen: it binds UDP and TCP at `sip_listen`'s port and its
/// SIP/TLS transport (TCP) at the port after it.
fn free_baresip_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind(format!("{BARESIP_IP}:0")).unwrap();
        let port = udp.local_addr().unwrap().port();
        if port < 65000
            && std::net::TcpListener::bind(format!("{BARESIP_IP}:{port}")).is_ok()
            && std::net::TcpListener::bind(format!("{BARESIP_IP}:{}", port + 1)).is_ok()
        {
            return port;
        }
    }
}

/// baresip (headless) as `user`, registering through the front end at `proxy` and
/// answering calls at once; waits (bounded) until its registration got 200 OK. Its output
/// is in `dir/baresip.log`. A port taken between the choice and baresip's bind (it exits at
/// once, "Address already in use") makes it start again on another one.
fn start_baresip(dir: &Path, user: &str, proxy: SocketAddr) -> Proc {
    let log = dir.join("baresip.log");
    for _attempt in 0..5 {
        let mut baresip = spawn_baresip(dir, user, proxy, free_baresip_port());
        let mut text = String::new();
        for _ in 0..300 {
            std::thread::sleep(Duration::from_millis(100));
            text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("200 OK") {
                return baresip;
            }
            if text.contains("Address already in use") {
                break;
            }
        }
        baresip.signal("TERM");
        let _ = baresip.exit_within(Duration::from_secs(5));
        assert!(
            text.contains("Address already in use"),
            "baresip did not register: {text}"
        );
        eprintln!("baresip lost its port to another socket; starting it again: {text}");
    }
    panic!("baresip found no free port in 5 attempts");
}

fn spawn_baresip(dir: &Path, user: &str, proxy: SocketAddr, port: u16) -> Proc {
    let conf = dir.join("baresip");
    std::fs::create_dir_all(&conf).unwrap();
    silence_wav(&conf.join("silence.wav"));
    std::fs::write(
        conf.join("config"),
        format!(
            "poll_method epoll\nsip_listen {BARESIP_IP}:{port}\nmodule_path /usr/lib/baresip/modules\n\
             module g711.so\nmodule aufile.so\nmodule_app account.so\nmodule_app menu.so\n\
             audio_player aufile,{out}\naudio_source aufile,{inp}\naudio_alert aufile,{out}\n",
            out = conf.join("out.wav").display(),
            inp = conf.join("silence.wav").display(),
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("accounts"),
        format!(
            "<sip:{user}@{OVERLAY}>;outbound=\"sip:{proxy};transport=udp\";regint=600;answermode=auto;audio_codecs=PCMU\n"
        ),
    )
    .unwrap();
    std::fs::write(conf.join("contacts"), "").unwrap();
    let out = std::fs::File::create(dir.join("baresip.log")).unwrap();
    Proc::spawn(
        Command::new("baresip")
            .arg("-f")
            .arg(&conf)
            .args(["-t", "120"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out),
        "baresip",
    )
}

#[test]
fn sipp_user_agents_call_each_other_through_the_overlay() {
    if !have("sipp") {
        procs::skip_without_tool("sipp is not installed (apt-get install sip-tester)");
        return;
    }
    let dir = scratch_dir("reload-sip-procs");
    let port = free_port();
    let addr =
        |i: usize| -> SocketAddr { format!("127.0.0.{}:{}", 60 + i, port + 1).parse().unwrap() };
    let sip =
        |i: usize| -> SocketAddr { format!("127.0.0.{}:{}", 60 + i, port + 2).parse().unwrap() };
    enroll_peers(&dir, OVERLAY, port, addr(0), PEERS);
    let mut peers = start_peers(&dir, PEERS, addr, Duration::from_secs(20), |i, cmd| {
        cmd.args(["--log", "info", "--sip", &sip(i).to_string()]);
    });
    let files: Vec<PathBuf> = (0..PEERS).map(|i| status_file(&dir, i)).collect();
    wait_ring(&files, Duration::from_secs(120));
    // Two peers with no link between them (links made while joining close once the
    // neighbour and finger tables settle).
    let apart = |st: &[procs::Status]| -> Option<(usize, usize)> {
        (0..PEERS)
            .flat_map(|a| (0..PEERS).map(move |b| (a, b)))
            .find(|&(a, b)| {
                a != b
                    && !st[a].connected.contains(&st[b].id)
                    && !st[b].connected.contains(&st[a].id)
            })
    };
    let st = procs::wait_status(
        &files,
        Duration::from_secs(120),
        "two peers not linked",
        |st| procs::ring_ok(st) && apart(st).is_some(),
    );
    let (a, b) = apart(&st).unwrap();
    let (alice, bob) = (format!("p{a}"), format!("p{b}"));
    eprintln!("caller {alice} at {} -> callee {bob} at {}", sip(a), sip(b));

    // Bob's UA registers at B (its contact: the SIPp UAS port).
    let bob_port = free_udp_port().to_string();
    let register_args = |port: String| -> Vec<String> {
        vec![
            "-sf".into(),
            scenario("register.xml").display().to_string(),
            "-key".into(),
            "domain".into(),
            OVERLAY.into(),
            "-key".into(),
            "expires".into(),
            "600".into(),
            "-s".into(),
            bob.clone(),
            "-i".into(),
            SIPP_IP.into(),
            "-p".into(),
            port,
            "-m".into(),
            "1".into(),
            sip(b).to_string(),
        ]
    };
    let mut reg = sipp(&dir, "register.log", &register_args(bob_port.clone()));
    assert!(
        reg.wait_exit(Duration::from_secs(70)).success(),
        "REGISTER failed: {}",
        tail(&dir, "register.log")
    );

    // The caller's SIPp at A: `scenario`, `calls` calls, all started at once (`-r N -rp 1`:
    // N calls per millisecond), each held for `hold_ms` (`-d`) after its ACK, to bob's AOR.
    let caller_args = |scenario_file: &str, calls: usize, hold_ms: u32| -> Vec<String> {
        let n = calls.to_string();
        vec![
            "-sf".into(),
            scenario(scenario_file).display().to_string(),
            "-key".into(),
            "domain".into(),
            OVERLAY.into(),
            "-key".into(),
            "caller".into(),
            alice.clone(),
            "-s".into(),
            bob.clone(),
            "-i".into(),
            SIPP_IP.into(),
            "-p".into(),
            free_udp_port().to_string(),
            "-m".into(),
            n.clone(),
            "-l".into(),
            n.clone(),
            "-r".into(),
            n,
            "-rp".into(),
            "1".into(),
            "-d".into(),
            hold_ms.to_string(),
            sip(a).to_string(),
        ]
    };
    let call = |round: &str,
                uac: &str,
                uas: &str,
                calls: usize,
                hold_ms: u32|
     -> (Proc, Proc, String, String) {
        let uas_log = format!("{round}-uas.log");
        let uac_log = format!("{round}-uac.log");
        let uas = sipp(
            &dir,
            &uas_log,
            &[
                "-sf".into(),
                scenario(uas).display().to_string(),
                "-i".into(),
                SIPP_IP.into(),
                "-p".into(),
                bob_port.clone(),
                "-m".into(),
                calls.to_string(),
            ],
        );
        wait_udp_bound(&bob_port);
        let mut args = caller_args(uac, calls, hold_ms);
        // SIPp's last statistics screen (its peak of simultaneous calls).
        args.extend([
            "-trace_screen".into(),
            "-screen_file".into(),
            dir.join(format!("{uac_log}.screen")).display().to_string(),
        ]);
        let uac = sipp(&dir, &uac_log, &args);
        (uac, uas, uac_log, uas_log)
    };
    let both_succeed =
        |round: &str, (mut uac, mut uas, uac_log, uas_log): (Proc, Proc, String, String)| {
            assert!(
                uac.wait_exit(Duration::from_secs(70)).success(),
                "{round}: the caller's side failed: {}\n== callee: {}",
                tail(&dir, &uac_log),
                tail(&dir, &uas_log)
            );
            assert!(
                uas.wait_exit(Duration::from_secs(70)).success(),
                "{round}: the callee's side failed: {}",
                tail(&dir, &uas_log)
            );
        };
    // One call (INVITE, 180, 200, ACK, BYE, 200: every message required on both sides),
    // then 20 at once — each held 3 s, so all 20 are up together (SIPp's peak says so) —
    // then one cancelled while it rings.
    both_succeed("one call", call("one", "uac.xml", "uas.xml", 1, 200));
    // Still no overlay link between A and B after the call: its AppAttach was routed
    // through other peers (the SIP flow itself is not an overlay link). The status files
    // are rewritten at every link change, so one read is the state now.
    let (sa, sb) = (
        procs::read_status(&files[a]).unwrap(),
        procs::read_status(&files[b]).unwrap(),
    );
    assert!(
        !sa.connected.contains(&sb.id) && !sb.connected.contains(&sa.id),
        "A and B became neighbours during the call"
    );
    both_succeed("20 calls", call("twenty", "uac.xml", "uas.xml", 20, 3000));
    let screen = std::fs::read_to_string(dir.join("twenty-uac.log.screen")).unwrap_or_default();
    assert!(
        screen.contains("Peak was 20 calls"),
        "the 20 calls were not all up at once: {screen}"
    );
    both_succeed(
        "CANCEL",
        call("cancel", "uac_cancel.xml", "uas_cancel.xml", 1, 0),
    );

    // SIPp's built-in scenarios, as a tester would first run them: `-sn uac -s USER
    // PROXY` calls sip:USER@PROXY-ADDRESS (the front end's address stands for the overlay
    // domain) and the built-in uas answers without Record-Route (in-dialog requests come
    // back through A by their Request-URI).
    // One callee at bob's port: SIPp with `how` (`-sn uas` or `-sf FILE`) and `extra`.
    let callee = |log: &str, how: [String; 2], extra: &[&str]| -> Proc {
        let mut args: Vec<String> = how.into();
        args.extend(
            ["-i", SIPP_IP, "-p", bob_port.as_str(), "-m", "1"]
                .iter()
                .chain(extra)
                .map(|a| a.to_string()),
        );
        sipp(&dir, log, &args)
    };
    let uas = callee("builtin-uas.log", ["-sn".into(), "uas".into()], &[]);
    wait_udp_bound(&bob_port);
    let uac = sipp(
        &dir,
        "builtin-uac.log",
        &[
            "-sn".into(),
            "uac".into(),
            "-s".into(),
            bob.clone(),
            "-i".into(),
            SIPP_IP.into(),
            "-p".into(),
            free_udp_port().to_string(),
            "-m".into(),
            "1".into(),
            sip(a).to_string(),
        ],
    );
    both_succeed(
        "SIPp's built-in uac and uas",
        (uac, uas, "builtin-uac.log".into(), "builtin-uas.log".into()),
    );

    // Over TCP (RFC 3261 §18): bob's UA registers over a connection that closes when
    // that SIPp exits; the call reaches its contact over a new connection B opens to it,
    // and the caller's side is TCP too.
    let tcp = vec!["-t".to_string(), "t1".to_string()];
    let mut reg = sipp(
        &dir,
        "register-tcp.log",
        &[register_args(bob_port.clone()), tcp.clone()].concat(),
    );
    assert!(
        reg.wait_exit(Duration::from_secs(70)).success(),
        "REGISTER over TCP failed: {}",
        tail(&dir, "register-tcp.log")
    );
    let uas = callee(
        "tcp-uas.log",
        ["-sf".into(), scenario("uas.xml").display().to_string()],
        &["-t", "t1"],
    );
    let listening = (0..500).any(|_| {
        if std::net::TcpStream::connect(format!("{SIPP_IP}:{bob_port}")).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
        false
    });
    assert!(listening, "the TCP callee did not start");
    let uac = sipp(
        &dir,
        "tcp-uac.log",
        &[caller_args("uac.xml", 1, 200), tcp].concat(),
    );
    both_succeed(
        "a call over TCP",
        (uac, uas, "tcp-uac.log".into(), "tcp-uas.log".into()),
    );

    // baresip answering automatically, registered at B as the same user (its contact is
    // the newest, so calls go to it); then SIPp's registration again.
    if have("baresip") {
        let mut baresip = start_baresip(&dir, &bob, sip(b));
        let reg_log = dir.join("baresip.log");
        let mut uac = sipp(&dir, "baresip-uac.log", &caller_args("uac.xml", 1, 200));
        assert!(
            uac.wait_exit(Duration::from_secs(70)).success(),
            "the call to baresip failed: {}\n== baresip: {}",
            tail(&dir, "baresip-uac.log"),
            std::fs::read_to_string(&reg_log).unwrap_or_default()
        );
        baresip.signal("TERM");
        let _ = baresip.exit_within(Duration::from_secs(5));
        let mut reg = sipp(&dir, "register2.log", &register_args(bob_port.clone()));
        assert!(reg.wait_exit(Duration::from_secs(70)).success());
    } else {
        procs::skip_without_tool(
            "the baresip call: baresip is not installed (apt-get install baresip-core)",
        );
    }

    // The callee's peer dies in the middle of a dialog: the caller's BYE gets 503.
    let (mut uac, mut uas, uac_log, uas_log) =
        call("dies", "uac_peer_dies.xml", "uas_answer_only.xml", 1, 0);
    assert!(
        uas.wait_exit(Duration::from_secs(70)).success(),
        "the call was not set up: {}\n== caller: {}",
        tail(&dir, &uas_log),
        tail(&dir, &uac_log)
    );
    peers.remove(b).kill_9();
    assert!(
        uac.wait_exit(Duration::from_secs(70)).success(),
        "the caller did not get 503 for its BYE: {}",
        tail(&dir, &uac_log)
    );
}
