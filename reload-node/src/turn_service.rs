//! The TURN server usage (RFC 6940 §9): peers that can offer a TURN server advertise it
//! in the TURN-SERVICE Kind; peers that need one find it with Find.
//!
//! - **Advertising** ([`advertise`]): a peer is a TURN server candidate unless its
//!   address is private (RFC 1918 and the other non-global ranges) or a peer it is linked
//!   to sees it at another address (it is behind a NAT, learnt from the reflexive probes
//!   of §6.5.1.4). A candidate stores a TurnServer record — the d value and the server's
//!   address — at the Resource-ID of its Node-ID ‖ d for each d from 1 to the overlay's
//!   turn-density (NODE-MULTIPLE), for [`LIFETIME`], and stores them again every half
//!   lifetime. The server is a TURN server beside the peer (e.g. coturn on the same
//!   host, any port) that the operator names.
//! - **Finding** ([`discover`]): a Find for TURN-SERVICE at a random Resource-ID reaches
//!   a random peer, which names the closest Resource-ID it holds TURN-SERVICE data for
//!   (§7.4.4) or none; a Fetch of that Resource-ID gives the records, their signatures
//!   verified (§7.4.2.2). The first server found is used: relayed candidates are
//!   allocated on it for every UDP socket. [`PARALLEL_FINDS`] Finds go out at once;
//!   without a find, the search goes on every [`RETRY_FAST`] for [`FAST_TRIES`] rounds,
//!   then every [`RETRY_SLOW`].
//! - **Credentials**: RFC 6940 says nothing of how a peer authenticates to a TURN server
//!   it found; the operator gives the deployment's TURN user name and password (e.g.
//!   one long-term credential of the overlay's coturn servers).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reload_proto::node::{ReflexiveAddress, TurnServer};
use reload_wire::storage::{
    KindId, KindValues, ModelSpecifier, StoredDataSpecifier, StoredDataValue,
};
use reload_wire::{ResourceId, Wire};

use crate::client::NodeHandle;

/// How long a TURN-SERVICE record lives (stored again every half of it).
pub const LIFETIME: u32 = 3600;
/// How often a peer that is not (yet) a candidate checks again.
pub const RECHECK: Duration = Duration::from_secs(2);
/// Finds sent at once, each at its own random Resource-ID (each reaches the peer
/// responsible for one record with probability turn-density × servers / peers).
pub const PARALLEL_FINDS: usize = 4;
/// Searches at this interval first ...
pub const RETRY_FAST: Duration = Duration::from_secs(2);
/// ... this many times ...
pub const FAST_TRIES: u32 = 30;
/// ... then at this one.
pub const RETRY_SLOW: Duration = Duration::from_secs(60);

/// Whether `ip` is an address other peers cannot reach from the Internet (§9 names RFC
/// 1918; shared address space, link-local and unique-local addresses are as private).
/// Loopback is not: an overlay on one host has nothing behind a NAT.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_unspecified() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Whether a peer listening on `ip` may be a TURN server (§9): `Ok`, or why not. Peers
/// seen at `reflexive` addresses; none yet is "not known yet" (an error to retry).
pub fn candidacy(ip: IpAddr, reflexive: &[ReflexiveAddress]) -> Result<(), String> {
    if is_private(ip) {
        return Err(format!("its address {ip} is private (RFC 1918)"));
    }
    let ours: Vec<&ReflexiveAddress> = reflexive.iter().filter(|r| r.local.ip() == ip).collect();
    if ours.is_empty() {
        return Err("no peer has said yet where it sees this peer (§6.5.1.4)".into());
    }
    if let Some(r) = ours.iter().find(|r| r.mapped.ip() != ip) {
        return Err(format!(
            "it is behind a NAT: {} peer(s) see {} as {}",
            r.seen_by.len(),
            r.local,
            r.mapped
        ));
    }
    Ok(())
}

/// Advertises `server` (a TURN server beside this peer) in TURN-SERVICE while the peer
/// runs, if the peer listening on `ip` is a candidate (§9). Runs until the node stops.
pub async fn advertise(node: NodeHandle, ip: IpAddr, server: SocketAddr) {
    let mut said = String::new();
    loop {
        let Ok(s) = node.snapshot().await else {
            return;
        };
        let verdict = if s.joined {
            candidacy(ip, &s.reflexive)
        } else {
            Err("not joined yet".to_string())
        };
        let wait = match verdict {
            Err(why) => {
                if why != said {
                    tracing::info!(%server, "not advertising the TURN server (yet): {why}");
                    said = why;
                }
                RECHECK
            }
            Ok(()) => match node.advertise_turn(server, LIFETIME).await {
                Err(_) => return,
                Ok(answers) if answers.is_empty() => {
                    tracing::warn!(
                        "the overlay defines no TURN-SERVICE Kind or its turn-density is 0: \
                         the TURN server is not advertised"
                    );
                    return;
                }
                Ok(answers) => {
                    let stored = answers.iter().filter(|a| a.is_ok()).count();
                    if stored == answers.len() {
                        tracing::info!(
                            %server,
                            records = stored,
                            "TURN server advertised in TURN-SERVICE (RFC 6940 §9)"
                        );
                        said.clear();
                        Duration::from_secs(u64::from(LIFETIME) / 2)
                    } else {
                        let e = answers.iter().find_map(|a| a.as_ref().err());
                        tracing::warn!(%server, "TURN-SERVICE records not all stored ({stored} of {}): {e:?}", answers.len());
                        RECHECK
                    }
                }
            },
        };
        tokio::time::sleep(wait).await;
    }
}

/// Looks for a TURN server in TURN-SERVICE until one is found, and uses it with
/// `username` and `password` (§9). Returns the server, or `None` if the node stopped.
pub async fn discover(node: NodeHandle, username: String, password: String) -> Option<SocketAddr> {
    let mut tries = 0u32;
    let mut last_error: Option<String> = None;
    loop {
        let s = node.snapshot().await.ok()?;
        // Not "joined": a peer behind a symmetric NAT may not join before it has a
        // relay (its neighbours are behind restricted NATs); its bootstrap link carries
        // the Finds.
        if s.joined || !s.connected.is_empty() {
            tries += 1;
            let mut finds = tokio::task::JoinSet::new();
            for _ in 0..PARALLEL_FINDS {
                let h = node.clone();
                finds.spawn(async move { find_one(&h).await });
            }
            let mut found = None;
            while let Some(r) = finds.join_next().await {
                match r {
                    Ok(Ok(Some(addr))) => {
                        found = Some(addr);
                        break;
                    }
                    Ok(Err(e)) => last_error = Some(e),
                    _ => {}
                }
            }
            finds.abort_all();
            if let Some(addr) = found {
                tracing::info!(server = %addr, "TURN server found in TURN-SERVICE (RFC 6940 §9)");
                let server = TurnServer {
                    addr,
                    username: username.clone(),
                    password: password.clone(),
                };
                node.add_turn_server(server).await.ok()?;
                return Some(addr);
            }
            if tries == FAST_TRIES {
                let last = last_error
                    .as_deref()
                    .unwrap_or("every Find answered: none here");
                tracing::warn!(
                    "no TURN server found in TURN-SERVICE after {} Finds (last: {last}): \
                     looking every {RETRY_SLOW:?}",
                    tries as usize * PARALLEL_FINDS
                );
            }
        }
        let wait = if tries < FAST_TRIES {
            RETRY_FAST
        } else {
            RETRY_SLOW
        };
        tokio::time::sleep(wait).await;
    }
}

/// One Find at a random Resource-ID, and the Fetch of what it names.
async fn find_one(node: &NodeHandle) -> Result<Option<SocketAddr>, String> {
    let mut key = [0u8; 16];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| "no random source".to_string())?;
    let at = ResourceId::new(key.to_vec());
    let (_, ans) = node
        .find(at, vec![KindId::TURN_SERVICE])
        .await
        .map_err(|e| e.to_string())?;
    let Some(closest) = ans
        .results
        .iter()
        .find(|r| r.kind == KindId::TURN_SERVICE && !r.closest.as_bytes().is_empty())
        .map(|r| r.closest.clone())
    else {
        return Ok(None);
    };
    let fetched = node
        .fetch(
            closest,
            vec![StoredDataSpecifier {
                kind: KindId::TURN_SERVICE,
                generation: 0,
                model_specifier: ModelSpecifier::Single,
            }],
        )
        .await
        .map_err(|e| e.to_string())?;
    let opts = node.snapshot().await.map_err(|e| e.to_string())?.decode;
    for k in &fetched.kinds {
        let KindValues::Decoded(values) = &k.values else {
            continue;
        };
        for v in values {
            let StoredDataValue::Single(d) = &v.value else {
                continue;
            };
            if !d.exists {
                continue;
            }
            let Ok(ts) = reload_wire::storage::TurnServer::decode(&d.value, &opts) else {
                continue;
            };
            if let Some(addr) = ts.server_address.socket_addr()
                && !addr.ip().is_unspecified()
                && addr.port() != 0
            {
                return Ok(Some(addr));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reload_wire::NodeId;

    fn seen(local: &str, mapped: &str) -> ReflexiveAddress {
        ReflexiveAddress {
            local: local.parse().unwrap(),
            mapped: mapped.parse().unwrap(),
            seen_by: vec![NodeId::from_u128(1)],
        }
    }

    #[test]
    fn only_public_peers_not_behind_a_nat_are_candidates() {
        let ip: IpAddr = "198.51.100.2".parse().unwrap();
        assert!(candidacy(ip, &[]).is_err(), "not known yet");
        let ok = [seen("198.51.100.2:6084", "198.51.100.2:6084")];
        assert_eq!(candidacy(ip, &ok), Ok(()));
        let natted = [seen("198.51.100.2:6084", "203.0.113.9:40000")];
        assert!(candidacy(ip, &natted).unwrap_err().contains("NAT"));
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(is_private(ip), "{private}");
            assert!(candidacy(ip, &[]).unwrap_err().contains("private"));
        }
        for public in ["198.51.100.2", "127.0.0.1", "2001:db8::1", "8.8.8.8"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }
}
