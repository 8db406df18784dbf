//! STUN Binding (RFC 5389 §6, §7.3.1, §10): what a RELOAD peer needs before ICE —
//! answering Binding requests on its overlay ports, so that the nodes it talks to learn
//! their server-reflexive address from it (RFC 6940 §6.5.1.4), and asking the same of
//! another peer or a STUN server (§6.5.1.5 gathering).
//!
//! Pure functions over datagrams, built on `rtc-stun` (the webrtc-rs sans-IO STUN codec):
//! no socket, no clock; transaction IDs come from the caller (the core's own random
//! source). Requests that carry USERNAME are ICE connectivity checks (RFC 8445 §7.2.2),
//! not for this server: [`answer_binding`] leaves them to the ICE agent.

use std::net::SocketAddr;

use rtc_stun::attributes::ATTR_USERNAME;
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::message::{
    BINDING_REQUEST, BINDING_SUCCESS, CLASS_INDICATION, Getter, METHOD_BINDING, Message,
    MessageType, Setter, TransactionId,
};
use rtc_stun::xoraddr::XorMappedAddress;

/// Bytes of a STUN transaction ID.
pub const TRANSACTION_ID_LEN: usize = 12;

/// The largest STUN message this module reads: a Binding is a few dozen bytes; anything
/// longer than one datagram's usual payload is not one of ours.
pub const MAX_STUN: usize = 1500;

/// RFC 5389 §6: the magic cookie at bytes 4..8 of every STUN message.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// Whether `d` looks like a STUN message (RFC 5389 §6, RFC 7983 §7): first two bits 0,
/// the magic cookie, a length that fits and is a multiple of 4.
pub fn is_stun(d: &[u8]) -> bool {
    d.len() >= 20
        && d.len() <= MAX_STUN
        && d[0] & 0xc0 == 0
        && d[4..8] == MAGIC_COOKIE
        && usize::from(u16::from_be_bytes([d[2], d[3]])) == d.len() - 20
        && u16::from_be_bytes([d[2], d[3]]).is_multiple_of(4)
}

fn decode(d: &[u8]) -> Option<Message> {
    if !is_stun(d) {
        return None;
    }
    let mut m = Message {
        raw: d.to_vec(),
        ..Message::default()
    };
    m.decode().ok()?;
    Some(m)
}

/// What a Binding request is, for the node that received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// A plain Binding request (no USERNAME): answer it ([`answer_binding`]).
    Request,
    /// An ICE connectivity check: USERNAME `dst:src` (RFC 8445 §7.2.2); the agent whose
    /// local ufrag is `dst` takes it.
    Check { local_ufrag: String },
    /// A Binding success response with this transaction ID.
    Response {
        transaction_id: [u8; TRANSACTION_ID_LEN],
    },
    /// Some other STUN message (an error response, an indication, another method).
    Other,
}

/// The transaction ID of a STUN request we send (a Binding request or check), to route
/// its answer back to the sender; `None` for anything else. Reads the header only
/// (RFC 5389 §6): the message is our own.
pub fn request_transaction_id(d: &[u8]) -> Option<[u8; TRANSACTION_ID_LEN]> {
    // Class bits (0x0110 of the type) zero: a request; the magic cookie in place.
    if d.len() < 20 || d[0] & 0xC0 != 0 || (d[0] & 0x01) != 0 || (d[1] & 0x10) != 0 {
        return None;
    }
    if d[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    d[8..20].try_into().ok()
}

/// The transaction ID of any STUN message (responses, error responses included), from
/// its header; `None` when it is not STUN.
pub fn transaction_id(d: &[u8]) -> Option<[u8; TRANSACTION_ID_LEN]> {
    if d.len() < 20 || d[0] & 0xC0 != 0 || d[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    d[8..20].try_into().ok()
}

/// Classifies a STUN datagram; `None` when it is not STUN.
pub fn classify(d: &[u8]) -> Option<Binding> {
    let m = decode(d)?;
    Some(if m.typ == BINDING_REQUEST {
        match m.get(ATTR_USERNAME) {
            Ok(u) => Binding::Check {
                local_ufrag: String::from_utf8_lossy(&u)
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .to_string(),
            },
            Err(_) => Binding::Request,
        }
    } else if m.typ == BINDING_SUCCESS {
        Binding::Response {
            transaction_id: m.transaction_id.0,
        }
    } else {
        Binding::Other
    })
}

/// The answer to a plain Binding request `d` that came from `from`: a Binding success
/// response with the same transaction ID, `from` as XOR-MAPPED-ADDRESS, and FINGERPRINT.
/// `None` for anything else (ICE checks included).
pub fn answer_binding(d: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let m = decode(d)?;
    if m.typ != BINDING_REQUEST || m.contains(ATTR_USERNAME) {
        return None;
    }
    let mut r = Message::new();
    let setters: [Box<dyn Setter>; 4] = [
        Box::new(m.transaction_id),
        Box::new(BINDING_SUCCESS),
        Box::new(XorMappedAddress {
            ip: from.ip(),
            port: from.port(),
        }),
        Box::new(FINGERPRINT),
    ];
    r.build(&setters).ok()?;
    Some(r.raw)
}

/// A plain Binding request with transaction ID `id` (and FINGERPRINT), to learn one's
/// server-reflexive address from a peer or a STUN server.
pub fn binding_request(id: [u8; TRANSACTION_ID_LEN]) -> Vec<u8> {
    let mut m = Message::new();
    let setters: [Box<dyn Setter>; 3] = [
        Box::new(TransactionId(id)),
        Box::new(BINDING_REQUEST),
        Box::new(FINGERPRINT),
    ];
    // Building from fixed setters cannot fail.
    let _ = m.build(&setters);
    m.raw
}

/// A Binding indication with transaction ID `id` (and FINGERPRINT): no answer comes; it
/// keeps a NAT binding towards a STUN or TURN server alive (RFC 5389 §10, RFC 8445 §11,
/// RFC 5766 §8 note).
pub fn binding_indication(id: [u8; TRANSACTION_ID_LEN]) -> Vec<u8> {
    let mut m = Message::new();
    let setters: [Box<dyn Setter>; 3] = [
        Box::new(TransactionId(id)),
        Box::new(MessageType::new(METHOD_BINDING, CLASS_INDICATION)),
        Box::new(FINGERPRINT),
    ];
    // Building from fixed setters cannot fail.
    let _ = m.build(&setters);
    m.raw
}

/// The XOR-MAPPED-ADDRESS of a Binding success response to the request with transaction
/// ID `id`; `None` for anything else.
pub fn mapped_address(d: &[u8], id: [u8; TRANSACTION_ID_LEN]) -> Option<SocketAddr> {
    let m = decode(d)?;
    if m.typ != BINDING_SUCCESS || m.transaction_id.0 != id {
        return None;
    }
    let mut a = XorMappedAddress::default();
    a.get_from(&m).ok()?;
    Some(SocketAddr::new(a.ip, a.port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_indication_is_stun_and_asks_no_answer() {
        let ind = binding_indication(*b"0123456789ab");
        assert!(is_stun(&ind));
        // An indication is neither a request to answer nor a response to match.
        assert_eq!(classify(&ind), Some(Binding::Other));
        assert_eq!(
            answer_binding(&ind, "192.0.2.7:40000".parse().unwrap()),
            None
        );
        assert_eq!(request_transaction_id(&ind), None);
        assert_eq!(transaction_id(&ind), Some(*b"0123456789ab"));
    }

    #[test]
    fn a_binding_request_is_answered_with_the_source_address() {
        let id = *b"0123456789ab";
        let req = binding_request(id);
        assert!(is_stun(&req));
        assert_eq!(classify(&req), Some(Binding::Request));
        for from in ["192.0.2.7:40000", "[2001:db8::1]:5061"] {
            let from: SocketAddr = from.parse().unwrap();
            let ans = answer_binding(&req, from).expect("answered");
            assert_eq!(
                classify(&ans),
                Some(Binding::Response { transaction_id: id })
            );
            assert_eq!(mapped_address(&ans, id), Some(from));
            assert_eq!(mapped_address(&ans, *b"another-txid"), None);
            // A response is not a request: not answered.
            assert_eq!(answer_binding(&ans, from), None);
            // Transaction IDs route answers back to whoever asked.
            assert_eq!(request_transaction_id(&req), Some(id));
            assert_eq!(request_transaction_id(&ans), None);
            assert_eq!(transaction_id(&ans), Some(id));
        }
    }

    /// RFC 5389 §15.2's first test vector (a Binding request with USERNAME "evtj:h6vY",
    /// an ICE check): classified as a check for ufrag "evtj", never answered here.
    #[test]
    fn an_ice_check_is_left_to_the_agent() {
        let v = hex::decode(concat!(
            "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74",
            "002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020",
            "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf"
        ))
        .unwrap();
        assert_eq!(
            classify(&v),
            Some(Binding::Check {
                local_ufrag: "evtj".into()
            })
        );
        assert_eq!(answer_binding(&v, "192.0.2.1:1".parse().unwrap()), None);
    }

    #[test]
    fn what_is_not_stun_is_refused() {
        assert!(!is_stun(&[0u8; 19]));
        assert!(!is_stun(&[0x16; 40])); // a DTLS record's first byte
        let mut bad = binding_request(*b"0123456789ab");
        bad[5] ^= 1; // the magic cookie
        assert_eq!(classify(&bad), None);
        let mut short = binding_request(*b"0123456789ab");
        short.truncate(short.len() - 4);
        assert_eq!(classify(&short), None);
    }

    proptest::proptest! {
        #[test]
        fn no_datagram_makes_it_panic(d in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = classify(&d);
            let _ = answer_binding(&d, "127.0.0.1:9".parse().unwrap());
            let _ = mapped_address(&d, [0; 12]);
            let _ = request_transaction_id(&d);
            let _ = transaction_id(&d);
        }
    }
}
