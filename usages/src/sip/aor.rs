//! Addresses of record and GRUUs (RFC 7904 §2, §6).
//!
//! The Resource Name of an AOR is the AOR without its scheme (§2: `alice@dht.example.com`
//! for `sip:alice@dht.example.com` and `sips:…`), because the storing peer compares its hash
//! with the hash of the certificate's user name (§3.3). The hash is byte-exact and RFC 7904
//! defines no canonical form, so this node writes AORs as the enrollment server issues user
//! names: the user part as given (RFC 3261 compares it with case), the host lowercased, no
//! port, no parameters, no password, no headers (spec-notes/decisions.md).
//!
//! A GRUU (§6) is `<AOR>;gr=<B>`: B is the base64 (RFC 4648 table 1, `+` and `/`) of a
//! destination list with `~` for `=`. It is resolved without storage: the list is the
//! route (§4.1).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};

/// The most entries a GRUU's destination list may have.
pub const MAX_GRUU_ENTRIES: usize = 16;
use reload_wire::{DecodeOptions, Destination, Wire};
use rsipstack::sip::{Host, Param, Scheme, Uri};

/// A SIP URI that is not an AOR this usage can hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AorError {
    #[error("not a SIP URI: {0}")]
    NotSip(String),
    #[error("no user part in {0} (an AOR is user@domain)")]
    NoUser(String),
}

/// The canonical AOR (`user@host`, RFC 7904 §2) of a SIP or SIPS URI.
pub fn aor_of_uri(uri: &Uri) -> Result<String, AorError> {
    match &uri.scheme {
        None | Some(Scheme::Sip) | Some(Scheme::Sips) => {}
        Some(other) => return Err(AorError::NotSip(format!("{other}:"))),
    }
    let user = uri
        .user()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| AorError::NoUser(uri.to_string()))?;
    let host = match &uri.host_with_port.host {
        Host::Domain(d) => d.to_string().to_ascii_lowercase(),
        Host::IpAddr(ip) => ip.to_string(),
    };
    Ok(format!("{user}@{host}"))
}

/// The canonical AOR of a URI written as text, with or without its scheme.
pub fn aor_of(text: &str) -> Result<String, AorError> {
    let t = text.trim().trim_start_matches('<').trim_end_matches('>');
    let with_scheme = if t.starts_with("sip:") || t.starts_with("sips:") {
        t.to_string()
    } else if t.contains(':') && !t.contains('@') {
        return Err(AorError::NotSip(t.to_string()));
    } else {
        format!("sip:{t}")
    };
    let uri = Uri::try_from(with_scheme.as_str()).map_err(|_| AorError::NotSip(t.to_string()))?;
    aor_of_uri(&uri)
}

/// The `gr` parameter of a URI, if it has one (RFC 5627: a GRUU is told by it).
pub fn gr_param(uri: &Uri) -> Option<String> {
    uri.params.iter().find_map(|p| match p {
        Param::Other(name, value) if name.to_string().eq_ignore_ascii_case("gr") => {
            Some(value.as_ref().map(|v| v.to_string()).unwrap_or_default())
        }
        _ => None,
    })
}

/// The `gr` value of a destination list (RFC 7904 §6): base64 of the entries (no length
/// prefix, as in a `reload:` URI), `~` for `=`.
pub fn gruu_value(destinations: &[Destination]) -> String {
    let mut b = BytesMut::new();
    for d in destinations {
        // A Destination always encodes (its lengths are bounded by its type).
        let _ = d.encode(&mut b);
    }
    STANDARD.encode(&b).replace('=', "~")
}

/// The GRUU of `aor` for `destinations`: `sip:<aor>;gr=<B>`.
pub fn gruu(aor: &str, destinations: &[Destination]) -> String {
    format!("sip:{aor};gr={}", gruu_value(destinations))
}

/// The URI parameter that tells one user agent instance's GRUU from another's on the
/// same peer (RFC 5627 §5.4): the `gr` list reaches the peer (RFC 7904 §6), this picks
/// the binding.
pub const INSTANCE_PARAM: &str = "reload-inst";

/// A short tag of a `+sip.instance` value (quotes ignored): 16 hex digits of its SHA-256.
pub fn instance_tag(instance: &str) -> String {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        instance.trim_matches('"').as_bytes(),
    );
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The GRUU of one user agent instance registered at the peer `destinations` lead to:
/// [`gruu`] with the instance's tag.
pub fn instance_gruu(aor: &str, destinations: &[Destination], instance: &str) -> String {
    format!(
        "{};{INSTANCE_PARAM}={}",
        gruu(aor, destinations),
        instance_tag(instance)
    )
}

/// The instance tag of a GRUU, when it names one.
pub fn instance_param(uri: &Uri) -> Option<String> {
    uri.params.iter().find_map(|p| match p {
        Param::Other(name, Some(value))
            if name.to_string().eq_ignore_ascii_case(INSTANCE_PARAM) =>
        {
            Some(value.to_string().to_ascii_lowercase())
        }
        _ => None,
    })
}

/// `text` with its `%XX` escapes (either case) decoded; `None` for a malformed escape or
/// a result that is not ASCII (a `gr` value is base64). SIP stacks may escape the `+` and
/// `/` of a GRUU (SIP-USAGE.md pitfall 10).
fn percent_decode(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out.is_ascii()
        .then(|| String::from_utf8(out).ok())
        .flatten()
}

/// The destination list of a `gr` value, or `None` when it is not one (bad base64, not a
/// list of destinations, or empty).
pub fn gruu_destinations(value: &str, opts: &DecodeOptions) -> Option<Vec<Destination>> {
    let raw = STANDARD
        .decode(percent_decode(value)?.replace('~', "="))
        .ok()?;
    let raw = Bytes::from(raw);
    let out = reload_wire::codec::decode_all(&raw, opts, |cx, mut i| {
        let mut out = Vec::new();
        while !i.is_empty() && out.len() < MAX_GRUU_ENTRIES {
            let (rest, d) = Destination::decode_from(cx, i)?;
            out.push(d);
            i = rest;
        }
        Ok((i, out))
    })
    .ok()?;
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reload_wire::NodeId;

    #[test]
    fn aors_drop_the_scheme_port_and_parameters_and_lowercase_the_host() {
        assert_eq!(
            aor_of("sip:alice@dht.example.com").unwrap(),
            "alice@dht.example.com"
        );
        assert_eq!(
            aor_of("sips:alice@DHT.Example.com:5061;transport=tcp").unwrap(),
            "alice@dht.example.com"
        );
        assert_eq!(
            aor_of("<sip:Alice@dht.example.com>").unwrap(),
            "Alice@dht.example.com"
        );
        assert_eq!(
            aor_of("alice@dht.example.com").unwrap(),
            "alice@dht.example.com"
        );
        assert!(matches!(
            aor_of("sip:dht.example.com"),
            Err(AorError::NoUser(_))
        ));
        assert!(matches!(aor_of("tel:+15551234"), Err(AorError::NotSip(_))));
    }

    /// RFC 7904 §6 layout; the vector is SIP-USAGE.md §3's (computed, not from the RFC).
    #[test]
    fn gruus_carry_the_destination_list_in_base64_with_tilde() {
        let n =
            NodeId::from_slice(&hex::decode("00112233445566778899aabbccddeeff").unwrap()).unwrap();
        let list = vec![Destination::Node(n)];
        assert_eq!(gruu_value(&list), "ARAAESIzRFVmd4iZqrvM3e7/");
        let opts = DecodeOptions::default();
        assert_eq!(
            gruu_destinations("ARAAESIzRFVmd4iZqrvM3e7/", &opts),
            Some(list.clone())
        );
        let g = gruu("alice@example.com", &list);
        let uri = Uri::try_from(g.as_str()).unwrap();
        assert_eq!(gr_param(&uri).as_deref(), Some("ARAAESIzRFVmd4iZqrvM3e7/"));
        assert_eq!(aor_of_uri(&uri).unwrap(), "alice@example.com");
        // The RFC's own example decodes to ASCII digits: not a destination list.
        assert_eq!(
            gruu_destinations("MDEyMzQ1Njc4OTAxMjM0NTY3ODk~", &opts),
            None
        );
        assert_eq!(gruu_destinations("%%%", &opts), None);
        // `+` and `/` escaped by a SIP stack, in either case.
        assert_eq!(
            gruu_destinations("ARAAESIzRFVmd4iZqrvM3e7%2F", &opts),
            Some(list.clone())
        );
        assert_eq!(
            gruu_destinations("ARAAESIzRFVmd4iZqrvM3e7%2f", &opts),
            Some(list.clone())
        );
        assert_eq!(gruu_destinations("ARAAESIzRFVmd4iZqrvM3e7%2", &opts), None);
        assert_eq!(gruu_destinations("ARAAESIzRFVmd4iZqrvM3e7%+F", &opts), None);
        assert_eq!(
            gruu_destinations("ARAAESIzRFVmd4iZqrvM3e7%C3%A9", &opts),
            None
        );
    }

    proptest::proptest! {
        /// Any destination list of Node-IDs and Resource-IDs survives a GRUU (§6).
        #[test]
        fn any_destination_list_round_trips_through_a_gruu(
            ids in proptest::collection::vec((proptest::bool::ANY, proptest::num::u128::ANY, proptest::collection::vec(proptest::num::u8::ANY, 1..40)), 1..8)
        ) {
            let list: Vec<Destination> = ids
                .into_iter()
                .map(|(node, id, rid)| if node {
                    Destination::Node(NodeId::from_u128(id))
                } else {
                    Destination::Resource(reload_wire::ResourceId::new(Bytes::from(rid)))
                })
                .collect();
            let v = gruu_value(&list);
            proptest::prop_assert!(v.chars().all(|c| c.is_ascii_alphanumeric() || "+/~".contains(c)));
            proptest::prop_assert_eq!(gruu_destinations(&v, &DecodeOptions::default()), Some(list));
        }

        /// Whatever the text, AOR and GRUU parsing return, never panic.
        #[test]
        fn aor_and_gruu_parsing_never_panic(text in "\\PC{0,200}") {
            let _ = aor_of(&text);
            let _ = gruu_destinations(&text, &DecodeOptions::default());
        }
    }
}
