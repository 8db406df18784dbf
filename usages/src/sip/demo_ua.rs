//! A minimal SIP user agent over UDP for demonstrations (`reload-node sandbox --sip`) and
//! tests: it registers, calls (INVITE, ACK, BYE along the dialog's route set, RFC 3261
//! §12, §13, §15) and answers one call at once. No media, no retransmissions (it talks to
//! a front end on the same host); every wait is bounded.

use std::net::SocketAddr;
use std::time::Duration;

use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Header, Headers, Method, Request, Response, SipMessage, StatusCode, Version};
use tokio::net::UdpSocket;

/// How long one message is waited for.
pub const WAIT: Duration = Duration::from_secs(20);

/// A user agent on one UDP socket.
#[derive(Debug)]
pub struct DemoUa {
    sock: UdpSocket,
    /// The AOR it acts for (`user@domain`).
    pub aor: String,
    seq: std::sync::atomic::AtomicU32,
}

fn err(what: impl std::fmt::Display) -> String {
    what.to_string()
}

impl DemoUa {
    pub async fn bind(aor: &str) -> Result<DemoUa, String> {
        Ok(DemoUa {
            sock: UdpSocket::bind("127.0.0.1:0").await.map_err(err)?,
            aor: aor.to_string(),
            seq: 1.into(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("bound")
    }

    fn branch(&self) -> String {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("z9hG4bK-demo-{}-{n}", self.addr().port())
    }

    async fn send(&self, to: SocketAddr, text: String) -> Result<(), String> {
        let text = text.replace('\n', "\r\n");
        self.sock.send_to(text.as_bytes(), to).await.map_err(err)?;
        Ok(())
    }

    async fn send_msg(&self, to: SocketAddr, msg: SipMessage) -> Result<(), String> {
        self.sock.send_to(&msg.to_bytes(), to).await.map_err(err)?;
        Ok(())
    }

    /// The next SIP message (bounded wait).
    pub async fn recv(&self) -> Result<SipMessage, String> {
        let mut buf = vec![0u8; 65535];
        loop {
            let (n, _) = tokio::time::timeout(WAIT, self.sock.recv_from(&mut buf))
                .await
                .map_err(|_| format!("{}: nothing received in {WAIT:?}", self.aor))?
                .map_err(err)?;
            if let Ok(m) = SipMessage::try_from(&buf[..n]) {
                return Ok(m);
            }
        }
    }

    /// The next response other than 100 Trying.
    async fn response(&self) -> Result<Response, String> {
        loop {
            match self.recv().await? {
                SipMessage::Response(r) if r.status_code == StatusCode::Trying => {}
                SipMessage::Response(r) => return Ok(r),
                SipMessage::Request(r) => {
                    return Err(format!(
                        "{}: a {} instead of a response",
                        self.aor, r.method
                    ));
                }
            }
        }
    }

    /// REGISTERs this UA's address as the contact of its AOR at `proxy`; the status.
    pub async fn register(&self, proxy: SocketAddr, expires: u32) -> Result<StatusCode, String> {
        let (a, aor) = (self.addr(), &self.aor);
        let domain = aor.rsplit_once('@').map(|(_, d)| d).unwrap_or(aor);
        let branch = self.branch();
        self.send(
            proxy,
            format!(
                "REGISTER sip:{domain} SIP/2.0
Via: SIP/2.0/UDP {a};branch={branch}
Max-Forwards: 70
From: <sip:{aor}>;tag=reg{port}
To: <sip:{aor}>
Call-ID: reg-{port}@{ip}
CSeq: {seq} REGISTER
Contact: <sip:{user}@{a}>
Expires: {expires}
Content-Length: 0

",
                port = a.port(),
                ip = a.ip(),
                seq = self.seq.load(std::sync::atomic::Ordering::Relaxed),
                user = aor.split('@').next().unwrap_or("ua"),
            ),
        )
        .await?;
        Ok(self.response().await?.status_code)
    }

    /// Calls `callee` (an AOR) through `proxy`: INVITE until a final response; on 200,
    /// ACK and (after `talk`) BYE along the route set. Returns the status codes received,
    /// in order, 100 excepted (e.g. 180, 200, 200).
    pub async fn call(
        &self,
        proxy: SocketAddr,
        callee: &str,
        talk: Duration,
    ) -> Result<Vec<StatusCode>, String> {
        self.call_timed(proxy, callee, talk)
            .await
            .map(|(codes, _)| codes)
    }

    /// [`DemoUa::call`], with the time from sending the INVITE to receiving its final
    /// response.
    pub async fn call_timed(
        &self,
        proxy: SocketAddr,
        callee: &str,
        talk: Duration,
    ) -> Result<(Vec<StatusCode>, Duration), String> {
        let (a, aor) = (self.addr(), &self.aor);
        let call_id = format!("call-{}-{}@{}", a.port(), self.branch(), a.ip());
        let branch = self.branch();
        let from = format!("<sip:{aor}>;tag=c{}", a.port());
        self.send(
            proxy,
            format!(
                "INVITE sip:{callee} SIP/2.0
Via: SIP/2.0/UDP {a};branch={branch}
Max-Forwards: 70
From: {from}
To: <sip:{callee}>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:{user}@{a}>
Content-Length: 0

",
                user = aor.split('@').next().unwrap_or("ua"),
            ),
        )
        .await?;
        let t0 = std::time::Instant::now();
        let mut got = Vec::new();
        let ok = loop {
            let r = self.response().await?;
            got.push(r.status_code.clone());
            match r.status_code.kind() {
                rsipstack::sip::StatusCodeKind::Provisional => continue,
                _ if r.status_code == StatusCode::OK => break r,
                _ => return Ok((got, t0.elapsed())),
            }
        };
        let setup = t0.elapsed();
        let to = ok.to_header().map_err(err)?.value().to_string();
        let target = ok
            .typed_contact_headers()
            .map_err(err)?
            .first()
            .map(|c| c.uri.to_string())
            .ok_or("a 200 without Contact")?;
        // RFC 3261 §12.1.2: the route set is the Record-Route in reverse.
        let mut routes: Vec<String> = ok
            .typed_record_route_headers()
            .map_err(err)?
            .iter()
            .map(|r| format!("Route: <{}>\n", r.uri))
            .collect();
        routes.reverse();
        let routes = routes.concat();
        let in_dialog = |method: &str, cseq: u32, branch: String| {
            format!(
                "{method} {target} SIP/2.0
Via: SIP/2.0/UDP {a};branch={branch}
Max-Forwards: 70
{routes}From: {from}
To: {to}
Call-ID: {call_id}
CSeq: {cseq} {method}
Content-Length: 0

"
            )
        };
        self.send(proxy, in_dialog("ACK", 1, self.branch())).await?;
        tokio::time::sleep(talk).await;
        self.send(proxy, in_dialog("BYE", 2, self.branch())).await?;
        got.push(self.response().await?.status_code);
        Ok((got, setup))
    }

    /// Answers the next call (180 then 200, copying Via and Record-Route, RFC 3261
    /// §12.1.1), waits for its ACK and its BYE, answers the BYE 200. Returns the methods
    /// received, in order (INVITE, ACK, BYE).
    pub async fn answer_one(&self, proxy: SocketAddr) -> Result<Vec<Method>, String> {
        let mut got = Vec::new();
        loop {
            let req = match self.recv().await? {
                SipMessage::Request(r) => r,
                SipMessage::Response(_) => continue,
            };
            got.push(req.method);
            match req.method {
                Method::Invite => {
                    self.send_msg(proxy, self.reply(&req, StatusCode::Ringing))
                        .await?;
                    self.send_msg(proxy, self.reply(&req, StatusCode::OK))
                        .await?;
                }
                Method::Bye => {
                    self.send_msg(proxy, self.reply(&req, StatusCode::OK))
                        .await?;
                    return Ok(got);
                }
                Method::Ack => {}
                _ => {
                    self.send_msg(proxy, self.reply(&req, StatusCode::NotImplemented))
                        .await?;
                }
            }
        }
    }

    fn reply(&self, req: &Request, code: StatusCode) -> SipMessage {
        let mut headers = Headers::default();
        for h in req.headers.iter() {
            match h {
                Header::Via(_)
                | Header::RecordRoute(_)
                | Header::From(_)
                | Header::CallId(_)
                | Header::CSeq(_) => headers.push(h.clone()),
                Header::To(t) => {
                    let tagged = t.typed().map(|t| t.tag().is_some()).unwrap_or(true);
                    let mut v = t.value().to_string();
                    if !tagged {
                        v.push_str(&format!(";tag=a{}", self.addr().port()));
                    }
                    headers.push(Header::To(v.into()));
                }
                _ => {}
            }
        }
        if req.method == Method::Invite {
            let user = self.aor.split('@').next().unwrap_or("ua");
            headers.push(Header::Contact(
                format!("<sip:{user}@{}>", self.addr()).into(),
            ));
        }
        headers.push(Header::ContentLength(0u32.into()));
        SipMessage::Response(Response {
            status_code: code,
            wire_reason: None,
            version: Version::V2,
            headers,
            body: Vec::new(),
        })
    }
}
