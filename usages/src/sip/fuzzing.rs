//! Entry point of the `sip_input` fuzz target (`fuzz/fuzz_targets/sip_input.rs`): what the
//! SIP front end does with bytes from a user agent or a peer before any IO — stream
//! framing (`SipCodec`), parsing, the header work of forwarding (Via popping, Route and
//! Record-Route, Contact and Expires of a REGISTER, AORs of the Request-URI, To and From,
//! GRUUs) and the flow tokens of this peer's own headers. None of it may panic. The seed
//! corpus `fuzz/corpus/sip_input/` is replayed by `usages/tests/fuzz_corpora.rs`.

use bytes::BytesMut;
use rsipstack::sip::SipMessage;
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::transport::stream::{SipCodec, SipCodecType};
use tokio_util::codec::Decoder;

use super::{aor, proxy};

pub fn sip_input(data: &[u8]) {
    // Stream framing: as many messages as the bytes hold.
    let mut buf = BytesMut::from(data);
    let mut codec = SipCodec::new();
    for _ in 0..64 {
        match codec.decode(&mut buf) {
            Ok(Some(SipCodecType::Message(m))) => message(m),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    // A datagram: parsed, framed (§18.3), an extension method recognised, the §16.3
    // checks of a request.
    if let Ok(m) = SipMessage::try_from(data) {
        message(m);
    }
    proxy::fuzz_datagram(data);
    // Text in the places the front end reads tokens and AORs from.
    let text = String::from_utf8_lossy(data);
    let _ = aor::aor_of(&text);
    let _ = aor::gruu_destinations(&text, &reload_wire::DecodeOptions::default());
    let _ = proxy::fuzz_flow_token(&text);
}

fn message(mut m: SipMessage) {
    let _ = proxy::fuzz_describe(&m);
    let _ = m.typed_route_headers();
    let _ = m.typed_record_route_headers();
    if let Ok(contacts) = m.typed_contact_headers() {
        for c in contacts {
            let _ = c.expires();
            let _ = aor::aor_of_uri(&c.uri);
        }
    }
    let _ = m.expires_header();
    if let Ok(t) = m.to_header().and_then(|t| t.typed()) {
        let _ = aor::aor_of_uri(&t.uri);
        let _ = t.tag();
    }
    if let Ok(f) = m.from_header().and_then(|f| f.typed()) {
        let _ = aor::aor_of_uri(&f.uri);
    }
    if let Ok(c) = m.cseq_header().and_then(|c| c.typed()) {
        let _ = c.method;
    }
    if let SipMessage::Request(r) = &m {
        let _ = aor::aor_of_uri(&r.uri);
        if let Some(gr) = aor::gr_param(&r.uri) {
            let _ = aor::gruu_destinations(&gr, &reload_wire::DecodeOptions::default());
        }
        let _ = r
            .max_forwards_header()
            .map(|x| x.value().trim().parse::<u32>());
    }
    // Every Via, one after the other, as responses are retraced.
    let headers = match &mut m {
        SipMessage::Request(r) => &mut r.headers,
        SipMessage::Response(r) => &mut r.headers,
    };
    for _ in 0..64 {
        match proxy::fuzz_pop_top_via(headers) {
            Some(v) => {
                let _ = v.typed().map(|v| (v.branch().cloned(), v.params.len()));
            }
            None => break,
        }
    }
    let _ = m.to_bytes();
}
