//! Entry point of the `enroll_form` fuzz target (`fuzz/fuzz_targets/enroll_form.rs`, issue
//! 10): what a client's `POST /enroll` body goes through before any password is checked or
//! anything is issued. Must return, without panicking, in bounded time and memory, for any
//! input. The seed corpus `fuzz/corpus/enroll_form/` is replayed by
//! `tests/fuzz_corpora.rs`.
//!
//! Not a stable API: hidden from the documentation, used by the fuzz crate and tests only.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use reload_proto::identity::CertRequest;

use crate::ca::{RequestedKey, weak_key_reason};
use crate::names::user_name;
use crate::server::{accepts_certificate, csr_der, media_type, read_form, shown_name, utf8_field};
use crate::throttle::AccountKey;

/// The boundary the enroll_form target uses when the input does not give one.
pub const BOUNDARY: &str = "reload-fuzz-boundary";

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread tokio runtime");
}

/// The enrollment POST (RFC 6940 §11.3) as the server reads it: the `multipart/form-data`
/// body (axum's `Multipart`, the server's `read_form` with its field rules), then the
/// fields — the user name as UTF-8 and as an account name, the password as UTF-8, the CSR
/// part's media type, the CSR as DER or PEM (`csr_der`), its key strength, the PKCS#10
/// parse and the key the certificate would get. (The `nodeids` count is parsed inline in
/// the handler, a `str::parse`, and is not reached from here.)
///
/// Input: a first byte; if its low bit is set, the first line of the rest is the
/// multipart boundary (and the Accept header value), the remainder the body; otherwise
/// the boundary is [`BOUNDARY`] and the rest is the body.
pub fn enroll_form(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (line, body) = if mode & 1 == 1 {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        }
    } else {
        (BOUNDARY.as_bytes(), rest)
    };
    let mut accept = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(line) {
        accept.insert(header::ACCEPT, v);
    }
    let _ = accepts_certificate(&accept);
    let content_type = [b"multipart/form-data; boundary=".as_slice(), line].concat();
    let Ok(content_type) = HeaderValue::from_bytes(&content_type) else {
        return;
    };
    let _ = media_type(content_type.to_str().ok());
    let Ok(req) = Request::builder()
        .method("POST")
        .uri("/enroll")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_vec()))
    else {
        return;
    };
    let Ok(form) = RUNTIME.with(|rt| rt.block_on(read_form(req, 64 * 1024))) else {
        return;
    };
    if let Ok(account) = utf8_field("username", form.username) {
        let _ = AccountKey::of(&account);
        let _ = shown_name(&account);
        let _ = user_name(&account, "fuzz.test");
    }
    let _ = utf8_field("password", form.password);
    if let Some((ctype, raw)) = form.csr {
        let _ = media_type(ctype.as_deref());
        if let Ok(der) = csr_der(&raw) {
            let _ = weak_key_reason(&der);
            if let Ok(request) = CertRequest::parse(&der) {
                let _ = RequestedKey::from_request(&request);
            }
        }
    }
}
