//! One realistic, fully populated RELOAD message for every message code (RFC 6940 §14.8,
//! RFC 7851 §9.3), as they would cross one overlay link.
//!
//! The scene: peer **Carol** (`127.0.0.1` in the capture) has a link to peer **Dave**
//! (`127.0.0.2:6084`) in the CHORD-RELOAD overlay `overlay.example.org`. Carol joins
//! through Dave, maintains the ring, and forwards the requests of her clients **Alice**
//! and **Bob**; Dave answers or forwards towards **Erin** and **Frank**. Every request is
//! followed by its answer (same transaction id) when that answer crosses the same link.
//!
//! What is real: every field's layout, lengths and code points; Resource-IDs are SHA-1 of
//! their Resource Names truncated to 128 bits (§10.2, §8, §9; RFC 7904 §3.1); the overlay
//! hash is the low 32 bits of SHA-1("overlay.example.org") (§6.3.2); `cert_hash` identities
//! are the SHA-256 of the DER certificate they name (§6.3.4); MetaData hashes are the
//! SHA-256 of the value with its length prefix (§7.4.3.2); ICE priorities follow RFC 5245
//! §4.1.2.1; every Resource-ID lies in Dave's range (Carol, Dave] of the ring, so storage
//! requests really travel this link. What is not: the certificates are DER-shaped but not
//! signed by anybody, and every signature value is a deterministic placeholder (signing is
//! not this crate's job).
//!
//! One deliberate inconsistency: the capture carries RELOAD framing over plain TCP (a
//! TLS-TCP-FH link with the TLS layer left out, so the dissector can see the messages),
//! while the Attach and AppAttach candidates are full-ICE DTLS-UDP-SR host, srflx and
//! relay candidates, to cover every candidate type. A real overlay is either all ICE or
//! all No-ICE (RFC 6940 §6.5.1.5).

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};
use reload_wire::chord::{ChordLeaveData, ChordRouteQueryAns, ChordUpdate, ChordUpdateBody};
use reload_wire::ext::diagnostics::{
    DiagnosticExtension, DiagnosticInfo, DiagnosticsRequest, DiagnosticsResponse, PathTrackAns,
    PathTrackReq,
};
use reload_wire::header::{ForwardingOptionType, option_flags};
use reload_wire::link::{
    AppAttach, AttachReqAns, CandType, ConfigUpdateAns, ConfigUpdateReq, IceCandidate,
    IceExtension, OverlayLinkType, PingAns, PingReq, ROLE_ACTIVE, ROLE_PASSIVE,
};
use reload_wire::security::{HashAlgorithm, SignatureAndHashAlgorithm};
use reload_wire::storage::{
    ArrayEntry, ArrayRange, DataValue, DictionaryEntry, FetchAns, FetchKindResponse, FetchReq,
    FindAns, FindKindData, FindReq, KindId, KindValues, MetaData, MetaDataValue, ModelSpecifier,
    StatAns, StatKindResponse, StatReq, StoreAns, StoreKindData, StoreKindResponse, StoreReq,
    StoredData, StoredDataSpecifier, StoredDataValue, StoredMetaData, TurnServer, UnknownKinds,
};
use reload_wire::topology::{
    JoinAns, JoinReq, LeaveAns, LeaveReq, ProbeAns, ProbeInformation, ProbeInformationType,
    ProbeReq, RouteQueryAns, RouteQueryReq, UpdateAns, UpdateReq,
};
use reload_wire::{
    Destination, EncodeError, ErrorCode, ErrorResponse, ForwardingHeader, ForwardingOption,
    Fragment, GenericCertificate, IpAddressPort, Message, MessageBody, MessageContents, NodeId,
    ResourceId, SecurityBlock, Signature, SignerIdentity, Wire,
};

use sha2::{Digest as _, Sha256};

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The overlay's name (RFC 6940 §11.1 `instance-name`).
pub const OVERLAY_NAME: &str = "overlay.example.org";
/// Low 32 bits of SHA-1("overlay.example.org") (RFC 6940 §6.3.2 `overlay`).
pub const OVERLAY_HASH: u32 = 0x9aa3_2b8d;
/// The configuration sequence every node but Alice runs (RFC 6940 §6.3.2.1).
pub const CONFIG_SEQUENCE: u16 = 17;
/// `initial-ttl` (RFC 6940 §11.1 default). Messages forwarded once before crossing the
/// captured link carry one less (§6.3.2: decremented at every hop).
pub const INITIAL_TTL: u8 = 100;
/// Milliseconds since the Unix epoch at which the scene starts (2023-11-14T22:13:20Z).
pub const T0_MS: u64 = 1_700_000_000_000;

/// Node-ID of Alice, a client attached to Carol.
pub const ALICE: u128 = 0x2f6c_1a0e_8b3d_4c5a_96e7_f1d2_a3b4_c5d6;
/// Node-ID of Bob, another client of Carol.
pub const BOB: u128 = 0x3366_9a1c_2b4d_5e6f_7081_92a3_b4c5_d6e7;
/// Node-ID of Carol, the peer on the client side of the captured TCP connection.
pub const CAROL: u128 = 0xe53a_9f7e_6d5c_4b3a_2918_0f1e_2d3c_4b5b;
/// Node-ID of Dave, the peer listening on port 6084.
pub const DAVE: u128 = 0x4f2e_2b9c_1d0f_3e5a_6b7c_8d9e_0fa1_b2c3;
/// Node-ID of Erin, Dave's successor.
pub const ERIN: u128 = 0x5e1f_2a3b_4c5d_6e7f_8091_a2b3_c4d5_e6f7;
/// Node-ID of Frank, a SIP user agent further round the ring.
pub const FRANK: u128 = 0x91d2_e3f4_0516_2738_495a_6b7c_8d9e_afb0;
/// Further ring members, for neighbor and finger tables.
const GINA: u128 = 0xd470_1c2d_3e4f_5061_7283_94a5_b6c7_d8e9;
const IVAN: u128 = 0xc1a2_b3c4_d5e6_f708_192a_3b4c_5d6e_7f80;
const JUDY: u128 = 0xb10b_1c2d_3e4f_5a6b_7c8d_9eaf_b0c1_d2e3;
const HANK: u128 = 0x6f00_1122_3344_5566_7788_99aa_bbcc_ddee;
const KATE: u128 = 0x7b12_cd34_ef56_0789_1a2b_3c4d_5e6f_7a8b;
/// Node-ID of Alice's desk phone, which has not registered.
const ALICE_DESK: u128 = 0x0a1b_2c3d_4e5f_6071_8293_a4b5_c6d7_e8f9;

/// SHA-1("alice@example.org"), truncated: Alice's AOR, which matches the rfc822Name of
/// her certificate (RFC 7904 §2, §7 USER-NODE-MATCH).
pub const RID_ALICE_AOR: u128 = 0x45a6_b241_a242_c97f_0492_d382_c390_dfa3;
/// SHA-1(Alice's Node-ID), truncated: where CERTIFICATE_BY_NODE keeps her certificates (§8).
pub const RID_ALICE_CERT: u128 = 0x01bd_68ee_22e3_f32d_b8b3_9a71_e36c_5d29;
/// SHA-1(Carol's Node-ID ‖ 0x01), truncated: her TURN-SERVICE record for d = 1 (§9).
pub const RID_CAROL_TURN: u128 = 0xfee6_7fef_09bd_1716_7c07_13e7_dcfc_5a90;
/// A random Resource-ID a node probes to discover TURN servers with Find (§9).
pub const RID_RANDOM: u128 = 0x3000_0000_0000_0000_0000_0000_0000_0001;

/// The opaque id Carol substitutes for Alice's via list (§4.3 "list compression"): the
/// short form, connection-table index 42 with generation 3 (§6.3.2.2).
pub const COMPRESSED_VIA: u16 = 0x8000 | (42 << 3) | 3;

/// Which way a message crosses the captured link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Carol (127.0.0.1, the TCP client) to Dave (127.0.0.2:6084).
    CarolToDave,
    /// Dave to Carol.
    DaveToCarol,
}

/// The direction a corpus message travels: towards Carol when Carol is the first entry of
/// its destination list (§6.1: the first entry says where it goes next), otherwise
/// towards Dave.
pub fn direction(msg: &Message) -> Direction {
    match msg.header.destination_list.first() {
        Some(Destination::Node(n)) if *n == NodeId::from_u128(CAROL) => Direction::DaveToCarol,
        _ => Direction::CarolToDave,
    }
}

/// The corpus, in capture order: `(label, message)`. The label starts with the message
/// code name (`probe_req`, `error`, …) and may add a variant after a `/`.
pub fn corpus() -> Vec<(String, Message)> {
    try_corpus().expect("the built-in corpus fits every length prefix")
}

/// [`corpus`] without the panic: fails only if a vector outgrew its length prefix.
pub fn try_corpus() -> Result<Vec<(String, Message)>, EncodeError> {
    Builder::new().build()
}

fn node(v: u128) -> NodeId {
    NodeId::from_u128(v)
}

fn dnode(v: u128) -> Destination {
    Destination::Node(node(v))
}

fn rid(v: u128) -> ResourceId {
    ResourceId::new(Bytes::copy_from_slice(&v.to_be_bytes()))
}

fn v4(a: [u8; 4], port: u16) -> IpAddressPort {
    IpAddressPort::V4 {
        addr: Ipv4Addr::from(a),
        port,
    }
}

fn v6(segments: [u16; 8], port: u16) -> IpAddressPort {
    IpAddressPort::V6 {
        addr: Ipv6Addr::from(segments),
        port,
    }
}

/// SplitMix64: deterministic "random" transaction ids, ufrags and placeholder bytes.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_be_bytes());
        }
        v.truncate(n);
        v
    }

    /// ICE ufrag/password characters (RFC 5245 §15.4 ice-char).
    fn ice_chars(&mut self, n: usize) -> Bytes {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let s: Vec<u8> = (0..n)
            .map(|_| CHARS[(self.next() % CHARS.len() as u64) as usize])
            .collect();
        Bytes::from(s)
    }
}

/// DER tag-length-value.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let n = content.len();
    if n < 0x80 {
        v.push(n as u8);
    } else if n < 0x100 {
        v.extend_from_slice(&[0x81, n as u8]);
    } else {
        v.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    v.extend_from_slice(content);
    v
}

fn der_seq(parts: &[Vec<u8>]) -> Vec<u8> {
    der(0x30, &parts.concat())
}

/// The key a principal signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyType {
    /// RSA-2048, RSASSA-PKCS1-v1_5 with SHA-256: mandatory to implement (§6.3.4).
    Rsa2048,
    /// ECDSA P-256 with SHA-256.
    EcdsaP256,
}

const RSA_ENCRYPTION: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const ECDSA_WITH_SHA256: [u8; 8] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const EC_PUBLIC_KEY: [u8; 7] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const PRIME256V1: [u8; 8] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A DER `Ecdsa-Sig-Value` (RFC 5480) with placeholder r and s derived from `seed`.
fn ecdsa_signature(seed: &[u8]) -> Vec<u8> {
    let r = sha256(seed);
    let s = sha256(&r);
    let int = |v: [u8; 32]| {
        let mut v = v;
        v[0] = (v[0] & 0x7f) | 0x10; // positive, no leading zero byte
        der(0x02, &v)
    };
    der_seq(&[int(r), int(s)])
}

/// A DER X.509 v3 certificate shaped like an enrollment server's (RFC 6940 §11.3): empty
/// subject, a SAN with the `reload:` URI of the Node-ID and the user's rfc822Name, and an
/// RSA-2048 or P-256 key; issued by an ECDSA CA. Key and signature bits are placeholders.
fn fake_certificate(
    rng: &mut Rng,
    key: KeyType,
    user: &str,
    node_id: NodeId,
    serial: u64,
) -> Bytes {
    let ca_alg = der_seq(&[der(0x06, &ECDSA_WITH_SHA256)]);
    let mut serial_bytes = vec![0x00];
    serial_bytes.extend_from_slice(&serial.to_be_bytes());
    let issuer = der_seq(&[der(
        0x31,
        &der_seq(&[
            der(0x06, &[0x55, 0x04, 0x03]),
            der(0x0c, b"overlay.example.org enrollment CA"),
        ]),
    )]);
    let validity = der_seq(&[der(0x17, b"231114221320Z"), der(0x17, b"251114221320Z")]);
    let spki = match key {
        KeyType::Rsa2048 => {
            let mut modulus = vec![0x00, 0xc3];
            modulus.extend(rng.bytes(255));
            let rsa_key = der_seq(&[der(0x02, &modulus), der(0x02, &[0x01, 0x00, 0x01])]);
            let mut bits = vec![0x00];
            bits.extend(rsa_key);
            der_seq(&[
                der_seq(&[der(0x06, &RSA_ENCRYPTION), der(0x05, &[])]),
                der(0x03, &bits),
            ])
        }
        KeyType::EcdsaP256 => {
            let mut bits = vec![0x00, 0x04];
            bits.extend(rng.bytes(64));
            der_seq(&[
                der_seq(&[der(0x06, &EC_PUBLIC_KEY), der(0x06, &PRIME256V1)]),
                der(0x03, &bits),
            ])
        }
    };
    let uri = format!("reload://0110{}@{OVERLAY_NAME}/", node_id.to_hex());
    let san = der_seq(&[der(0x86, uri.as_bytes()), der(0x81, user.as_bytes())]);
    let extensions = der(
        0xa3,
        &der_seq(&[der_seq(&[der(0x06, &[0x55, 0x1d, 0x11]), der(0x04, &san)])]),
    );
    let tbs = der_seq(&[
        der(0xa0, &der(0x02, &[0x02])),
        der(0x02, &serial_bytes),
        ca_alg.clone(),
        issuer,
        validity,
        der_seq(&[]),
        spki,
        extensions,
    ]);
    let mut sig_bits = vec![0x00];
    sig_bits.extend(ecdsa_signature(&tbs));
    Bytes::from(der_seq(&[tbs, ca_alg, der(0x03, &sig_bits)]))
}

/// A node with its (placeholder) credentials.
#[derive(Clone, Debug)]
struct Principal {
    id: NodeId,
    key: KeyType,
    cert: Bytes,
}

impl Principal {
    fn new(rng: &mut Rng, key: KeyType, user: &str, id: u128, serial: u64) -> Self {
        let id = node(id);
        Principal {
            id,
            key,
            cert: fake_certificate(rng, key, user, id, serial),
        }
    }

    /// `cert_hash` identity: SHA-256 of the DER certificate (RFC 6940 §6.3.4; a
    /// certificate with a single Node-ID).
    fn identity(&self) -> SignerIdentity {
        SignerIdentity::CertHash {
            hash_alg: HashAlgorithm::SHA256,
            certificate_hash: Bytes::copy_from_slice(&sha256(&self.cert)),
        }
    }

    fn certificate(&self) -> GenericCertificate {
        GenericCertificate::x509(self.cert.clone())
    }

    /// A signature with the principal's algorithm whose value is a placeholder derived
    /// from the signed input: 256 bytes for RSA-2048, an `Ecdsa-Sig-Value` for P-256.
    fn sign(&self, input: &[u8]) -> Signature {
        let (algorithm, value) = match self.key {
            KeyType::Rsa2048 => {
                let mut value = Vec::with_capacity(256);
                let mut block = sha256(input);
                while value.len() < 256 {
                    value.extend_from_slice(&block);
                    block = sha256(&block);
                }
                (SignatureAndHashAlgorithm::RSA_SHA256, value)
            }
            KeyType::EcdsaP256 => (
                SignatureAndHashAlgorithm::ECDSA_SHA256,
                ecdsa_signature(input),
            ),
        };
        Signature {
            algorithm,
            identity: self.identity(),
            signature_value: Bytes::from(value),
        }
    }

    /// A StoredData signed as §7.1 prescribes for its input (placeholder value).
    fn stored(
        &self,
        resource: &ResourceId,
        kind: KindId,
        storage_time: u64,
        lifetime: u32,
        value: StoredDataValue,
    ) -> Result<StoredData, EncodeError> {
        // §7.1: resource_id ‖ kind ‖ storage_time ‖ StoredDataValue ‖ SignerIdentity, with
        // an array index set to zero first (§7.4.2.2).
        let mut input = BytesMut::new();
        input.put_slice(resource.as_bytes());
        input.put_u32(kind.0);
        input.put_u64(storage_time);
        let signed_value = match &value {
            StoredDataValue::Array(e) => StoredDataValue::Array(ArrayEntry {
                index: 0,
                value: e.value.clone(),
            }),
            v => v.clone(),
        };
        signed_value.encode(&mut input)?;
        self.identity().encode(&mut input)?;
        Ok(StoredData {
            storage_time,
            lifetime,
            value,
            signature: self.sign(&input),
        })
    }
}

/// Forwarding-header parameters of one corpus message.
#[derive(Clone, Debug)]
struct Route {
    ttl: u8,
    configuration_sequence: u16,
    max_response_length: u32,
    via: Vec<Destination>,
    dst: Vec<Destination>,
    options: Vec<ForwardingOption>,
}

impl Route {
    /// Sent by one end of the link straight to the other.
    fn to(dst: Vec<Destination>) -> Self {
        Route {
            ttl: INITIAL_TTL,
            configuration_sequence: CONFIG_SEQUENCE,
            max_response_length: 0,
            via: Vec::new(),
            dst,
            options: Vec::new(),
        }
    }

    /// Forwarded once before reaching the link: the previous hop is in the via list.
    fn forwarded(via: Vec<Destination>, dst: Vec<Destination>) -> Self {
        Route {
            ttl: INITIAL_TTL - 1,
            via,
            ..Route::to(dst)
        }
    }

    fn max_response_length(mut self, n: u32) -> Self {
        self.max_response_length = n;
        self
    }
}

#[derive(Debug)]
struct Builder {
    rng: Rng,
    out: Vec<(String, Message)>,
    clock: u64,
    alice: Principal,
    alice_old: Principal,
    bob: Principal,
    carol: Principal,
    dave: Principal,
    frank: Principal,
}

impl Builder {
    fn new() -> Self {
        let mut rng = Rng(0x5245_4c4f_4144_0001);
        // The infrastructure peers use RSA (mandatory to implement), the user devices
        // P-256.
        let ec = KeyType::EcdsaP256;
        let alice = Principal::new(&mut rng, ec, "alice@example.org", ALICE, 0x1001);
        // Alice's previous certificate for the same Node-ID (§8: kept during renewal).
        let alice_old = Principal::new(&mut rng, ec, "alice@example.org", ALICE, 0x0f3e);
        let bob = Principal::new(&mut rng, ec, "bob@example.org", BOB, 0x1002);
        let rsa = KeyType::Rsa2048;
        let carol = Principal::new(&mut rng, rsa, "carol@example.org", CAROL, 0x1003);
        let dave = Principal::new(&mut rng, rsa, "dave@example.org", DAVE, 0x1004);
        let frank = Principal::new(&mut rng, ec, "frank@example.org", FRANK, 0x1006);
        Builder {
            rng,
            out: Vec::new(),
            clock: T0_MS,
            alice,
            alice_old,
            bob,
            carol,
            dave,
            frank,
        }
    }

    fn txid(&mut self) -> u64 {
        self.rng.next()
    }

    /// Milliseconds since the epoch, advancing a little for every call.
    fn now(&mut self) -> u64 {
        self.clock += 37;
        self.clock
    }

    fn push(
        &mut self,
        label: &str,
        transaction_id: u64,
        route: Route,
        body: MessageBody,
        signer: &Principal,
        extra_certs: &[&Principal],
    ) -> Result<(), EncodeError> {
        let contents = MessageContents::from_body(&body)?;
        let mut certificates = vec![signer.certificate()];
        certificates.extend(extra_certs.iter().map(|p| p.certificate()));
        let identity = signer.identity();
        let input = reload_wire::message::signature_input(
            OVERLAY_HASH,
            transaction_id,
            &contents,
            &identity,
        )?;
        let header = ForwardingHeader {
            overlay: OVERLAY_HASH,
            configuration_sequence: route.configuration_sequence,
            version: reload_wire::header::VERSION,
            ttl: route.ttl,
            fragment: Fragment::UNFRAGMENTED,
            length: 0,
            transaction_id,
            max_response_length: route.max_response_length,
            via_list: route.via,
            destination_list: route.dst,
            options: route.options,
        };
        let mut msg = Message {
            header,
            contents,
            security: SecurityBlock {
                certificates,
                signature: signer.sign(&input),
            },
        };
        msg.header.length = u32::try_from(msg.encoded_len()).map_err(|_| EncodeError {
            field: "ForwardingHeader.length",
            len: msg.encoded_len(),
            max: u32::MAX as usize,
        })?;
        self.out.push((label.to_string(), msg));
        Ok(())
    }

    /// Alice's ICE candidates: she is behind a NAT (host 192.168.1.20, server-reflexive
    /// 198.51.100.7) with a TURN relay at 203.0.113.5, and has a global IPv6 address.
    fn alice_candidates(&self) -> Vec<IceCandidate> {
        // RFC 5245 §4.1.2.1: (2^24)·type-pref + (2^8)·local-pref + (256 − component 1).
        let prio = |type_pref: u32, local_pref: u32| (type_pref << 24) | (local_pref << 8) | 255;
        let link = OverlayLinkType::DTLS_UDP_SR;
        let host4 = v4([192, 168, 1, 20], 49152);
        let srflx4 = v4([198, 51, 100, 7], 61000);
        vec![
            IceCandidate {
                addr_port: v6([0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x20], 49154),
                overlay_link: link,
                foundation: Bytes::from_static(b"1"),
                priority: prio(126, 65535),
                cand_type: CandType::HOST,
                rel_addr_port: None,
                extensions: Vec::new(),
            },
            IceCandidate {
                addr_port: host4.clone(),
                overlay_link: link,
                foundation: Bytes::from_static(b"2"),
                priority: prio(126, 65534),
                cand_type: CandType::HOST,
                rel_addr_port: None,
                extensions: vec![IceExtension {
                    name: Bytes::from_static(b"network-id"),
                    value: Bytes::from_static(b"1"),
                }],
            },
            IceCandidate {
                addr_port: srflx4.clone(),
                overlay_link: link,
                foundation: Bytes::from_static(b"3"),
                priority: prio(100, 65534),
                cand_type: CandType::SRFLX,
                rel_addr_port: Some(host4),
                extensions: Vec::new(),
            },
            IceCandidate {
                addr_port: v4([203, 0, 113, 5], 50000),
                overlay_link: link,
                foundation: Bytes::from_static(b"4"),
                priority: prio(0, 65534),
                cand_type: CandType::RELAY,
                rel_addr_port: Some(srflx4),
                extensions: Vec::new(),
            },
        ]
    }

    /// Dave's and Frank's candidates: public hosts, dual stack, plus a relayed IPv6 one.
    fn public_candidates(&self, last_octet: u8, port: u16) -> Vec<IceCandidate> {
        let link = OverlayLinkType::DTLS_UDP_SR;
        let host6 = v6([0x2001, 0xdb8, 0x77, 0, 0, 0, 0, last_octet as u16], port);
        vec![
            IceCandidate {
                addr_port: host6.clone(),
                overlay_link: link,
                foundation: Bytes::from_static(b"a1"),
                priority: (126 << 24) | (65535 << 8) | 255,
                cand_type: CandType::HOST,
                rel_addr_port: None,
                extensions: Vec::new(),
            },
            IceCandidate {
                addr_port: v4([192, 0, 2, last_octet], port),
                overlay_link: link,
                foundation: Bytes::from_static(b"a2"),
                priority: (126 << 24) | (65534 << 8) | 255,
                cand_type: CandType::HOST,
                rel_addr_port: None,
                extensions: Vec::new(),
            },
            IceCandidate {
                addr_port: v6([0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 5], 50002),
                overlay_link: link,
                foundation: Bytes::from_static(b"a3"),
                priority: (65535 << 8) | 255,
                cand_type: CandType::RELAY,
                rel_addr_port: Some(host6),
                extensions: Vec::new(),
            },
        ]
    }

    fn build(mut self) -> Result<Vec<(String, Message)>, EncodeError> {
        let (alice, alice_old, bob, carol, dave, frank) = (
            self.alice.clone(),
            self.alice_old.clone(),
            self.bob.clone(),
            self.carol.clone(),
            self.dave.clone(),
            self.frank.clone(),
        );
        let to_dave = || vec![dnode(DAVE)];
        let to_carol = || vec![dnode(CAROL)];

        // Ping: is the link alive (§6.5.3)?
        let tx = self.txid();
        let padding = Bytes::from(vec![0u8; 64]);
        self.push(
            "ping_req",
            tx,
            Route::to(to_dave()),
            MessageBody::PingReq(PingReq { padding }),
            &carol,
            &[],
        )?;
        let (response_id, time) = (self.rng.next(), self.now());
        self.push(
            "ping_ans",
            tx,
            Route::to(to_carol()),
            MessageBody::PingAns(PingAns { response_id, time }),
            &dave,
            &[],
        )?;

        // Attach (§6.5.1): Alice, a NATed client of Carol, connects to Dave.
        let tx = self.txid();
        let req = AttachReqAns {
            ufrag: self.rng.ice_chars(8),
            password: self.rng.ice_chars(24),
            role: Bytes::from_static(ROLE_PASSIVE),
            candidates: self.alice_candidates(),
            send_update: false,
        };
        self.push(
            "attach_req",
            tx,
            Route::forwarded(vec![dnode(ALICE)], to_dave()),
            MessageBody::AttachReq(req),
            &alice,
            &[],
        )?;
        let ans = AttachReqAns {
            ufrag: self.rng.ice_chars(8),
            password: self.rng.ice_chars(24),
            role: Bytes::from_static(ROLE_ACTIVE),
            candidates: self.public_candidates(77, 6084),
            send_update: false,
        };
        self.push(
            "attach_ans",
            tx,
            Route::to(vec![dnode(CAROL), dnode(ALICE)]),
            MessageBody::AttachAns(ans),
            &dave,
            &[],
        )?;

        // Join (§6.4.2.1, §10.5): Carol takes over (Gina, Carol] from Dave.
        let tx = self.txid();
        self.push(
            "join_req",
            tx,
            Route::to(to_dave()),
            MessageBody::JoinReq(JoinReq {
                joining_peer_id: carol.id,
                overlay_specific_data: Bytes::new(),
            }),
            &carol,
            &[],
        )?;
        self.push(
            "join_ans",
            tx,
            Route::to(to_carol()),
            MessageBody::JoinAns(JoinAns {
                overlay_specific_data: Bytes::new(),
            }),
            &dave,
            &[],
        )?;

        // Update (§10.7): Dave tells Carol his neighbors, Carol acknowledges.
        let predecessors = vec![node(CAROL), node(GINA), node(IVAN)];
        let successors = vec![node(ERIN), node(HANK), node(KATE)];
        let tx = self.txid();
        let update = ChordUpdate {
            uptime: 3 * 86_400 + 5_021,
            body: ChordUpdateBody::Neighbors {
                predecessors: predecessors.clone(),
                successors: successors.clone(),
            },
        };
        self.push(
            "update_req/neighbors",
            tx,
            Route::to(to_carol()),
            MessageBody::UpdateReq(UpdateReq(update.to_bytes()?)),
            &dave,
            &[],
        )?;
        self.push(
            "update_ans/neighbors",
            tx,
            Route::to(to_dave()),
            MessageBody::UpdateAns(UpdateAns(Bytes::new())),
            &carol,
            &[],
        )?;

        // RouteQuery (§6.4.2.4, §10.8) with send_update: Dave answers, then sends a full
        // Update.
        let tx = self.txid();
        self.push(
            "route_query_req",
            tx,
            Route::to(to_dave()),
            MessageBody::RouteQueryReq(RouteQueryReq {
                send_update: true,
                destination: dnode(FRANK),
                overlay_specific_data: Bytes::new(),
            }),
            &carol,
            &[],
        )?;
        // §10.3: the finger with the largest id in (Dave, Frank).
        let next = ChordRouteQueryAns {
            next_peer: node(KATE),
        };
        self.push(
            "route_query_ans",
            tx,
            Route::to(to_carol()),
            MessageBody::RouteQueryAns(RouteQueryAns(next.to_bytes()?)),
            &dave,
            &[],
        )?;
        let tx = self.txid();
        let full = ChordUpdate {
            uptime: 3 * 86_400 + 5_023,
            body: ChordUpdateBody::Full {
                predecessors,
                successors,
                // §10.7: in numerically ascending order.
                fingers: vec![node(ERIN), node(HANK), node(KATE), node(FRANK), node(GINA)],
            },
        };
        self.push(
            "update_req/full",
            tx,
            Route::to(to_carol()),
            MessageBody::UpdateReq(UpdateReq(full.to_bytes()?)),
            &dave,
            &[],
        )?;
        self.push(
            "update_ans/full",
            tx,
            Route::to(to_dave()),
            MessageBody::UpdateAns(UpdateAns(Bytes::new())),
            &carol,
            &[],
        )?;

        // Carol is ready to route (§10.7 peer_ready).
        let tx = self.txid();
        let ready = ChordUpdate {
            uptime: 4,
            body: ChordUpdateBody::PeerReady,
        };
        self.push(
            "update_req/peer_ready",
            tx,
            Route::to(to_dave()),
            MessageBody::UpdateReq(UpdateReq(ready.to_bytes()?)),
            &carol,
            &[],
        )?;
        self.push(
            "update_ans/peer_ready",
            tx,
            Route::to(to_carol()),
            MessageBody::UpdateAns(UpdateAns(Bytes::new())),
            &dave,
            &[],
        )?;

        // Probe (§6.4.2.5).
        let tx = self.txid();
        self.push(
            "probe_req",
            tx,
            Route::to(to_dave()),
            MessageBody::ProbeReq(ProbeReq {
                requested_info: vec![
                    ProbeInformationType::RESPONSIBLE_SET,
                    ProbeInformationType::NUM_RESOURCES,
                    ProbeInformationType::UPTIME,
                ],
            }),
            &carol,
            &[],
        )?;
        self.push(
            "probe_ans",
            tx,
            Route::to(to_carol()),
            MessageBody::ProbeAns(ProbeAns {
                probe_info: vec![
                    ProbeInformation::ResponsibleSet(71_830_114),
                    ProbeInformation::NumResources(1_204),
                    ProbeInformation::Uptime(3 * 86_400 + 5_031),
                ],
            }),
            &dave,
            &[],
        )?;

        // Store, dictionary (§7.2.3): Alice registers her AOR (RFC 7904 §3.2); Carol
        // compresses the via list into a 2-byte opaque id (§4.3).
        let aor = rid(RID_ALICE_AOR);
        let registration = sip_registration_route(b"(sip.schemes=SIP)", &[dnode(ALICE)]);
        let t = self.now();
        let sip_value = alice.stored(
            &aor,
            KindId::SIP_REGISTRATION,
            t,
            3_600,
            StoredDataValue::Dictionary(DictionaryEntry {
                key: Bytes::copy_from_slice(alice.id.as_bytes()),
                value: DataValue::new(registration),
            }),
        )?;
        let tx = self.txid();
        self.push(
            "store_req/dictionary",
            tx,
            Route::forwarded(
                vec![Destination::Compressed(COMPRESSED_VIA)],
                vec![Destination::Resource(aor.clone())],
            ),
            MessageBody::StoreReq(StoreReq {
                resource: aor.clone(),
                replica_number: 0,
                kind_data: vec![StoreKindData {
                    kind: KindId::SIP_REGISTRATION,
                    generation_counter: 0,
                    values: KindValues::Decoded(vec![sip_value.clone()]),
                }],
            }),
            &alice,
            &[],
        )?;
        self.push(
            "store_ans/dictionary",
            tx,
            Route::to(vec![dnode(CAROL), Destination::Compressed(COMPRESSED_VIA)]),
            MessageBody::StoreAns(StoreAns {
                kind_responses: vec![StoreKindResponse {
                    kind: KindId::SIP_REGISTRATION,
                    generation_counter: 1,
                    replicas: vec![node(ERIN), node(HANK)],
                }],
            }),
            &dave,
            &[],
        )?;

        // Store, single value (§7.2.1): Carol advertises herself as a TURN server (§9).
        let turn = rid(RID_CAROL_TURN);
        let t = self.now();
        let turn_value = carol.stored(
            &turn,
            KindId::TURN_SERVICE,
            t,
            86_400,
            StoredDataValue::Single(DataValue::new(
                TurnServer {
                    iteration: 1,
                    server_address: v4([192, 0, 2, 55], 3478),
                }
                .to_bytes()?,
            )),
        )?;
        let tx = self.txid();
        self.push(
            "store_req/single",
            tx,
            Route::to(vec![Destination::Resource(turn.clone())]),
            MessageBody::StoreReq(StoreReq {
                resource: turn.clone(),
                replica_number: 0,
                kind_data: vec![StoreKindData {
                    kind: KindId::TURN_SERVICE,
                    generation_counter: 0,
                    values: KindValues::Decoded(vec![turn_value.clone()]),
                }],
            }),
            &carol,
            &[],
        )?;
        self.push(
            "store_ans/single",
            tx,
            Route::to(to_carol()),
            MessageBody::StoreAns(StoreAns {
                kind_responses: vec![StoreKindResponse {
                    kind: KindId::TURN_SERVICE,
                    generation_counter: 1,
                    replicas: vec![node(ERIN), node(HANK)],
                }],
            }),
            &dave,
            &[],
        )?;

        // Store, array (§7.2.2): Alice appends her renewed certificate (§8).
        let cert_rid = rid(RID_ALICE_CERT);
        let t_old = T0_MS - 86_400_000 * 200;
        let old_cert_value = alice_old.stored(
            &cert_rid,
            KindId::CERTIFICATE_BY_NODE,
            t_old,
            86_400 * 365,
            StoredDataValue::Array(ArrayEntry {
                index: 0,
                value: DataValue::new(alice_old.cert.clone()),
            }),
        )?;
        let t = self.now();
        let appended = alice.stored(
            &cert_rid,
            KindId::CERTIFICATE_BY_NODE,
            t,
            86_400 * 365,
            StoredDataValue::Array(ArrayEntry {
                index: ArrayEntry::APPEND,
                value: DataValue::new(alice.cert.clone()),
            }),
        )?;
        let tx = self.txid();
        self.push(
            "store_req/array",
            tx,
            Route::forwarded(
                vec![dnode(ALICE)],
                vec![Destination::Resource(cert_rid.clone())],
            ),
            MessageBody::StoreReq(StoreReq {
                resource: cert_rid.clone(),
                replica_number: 0,
                kind_data: vec![StoreKindData {
                    kind: KindId::CERTIFICATE_BY_NODE,
                    generation_counter: 1,
                    values: KindValues::Decoded(vec![appended.clone()]),
                }],
            }),
            &alice,
            &[],
        )?;
        self.push(
            "store_ans/array",
            tx,
            Route::to(vec![dnode(CAROL), dnode(ALICE)]),
            MessageBody::StoreAns(StoreAns {
                kind_responses: vec![StoreKindResponse {
                    kind: KindId::CERTIFICATE_BY_NODE,
                    generation_counter: 2,
                    replicas: vec![node(ERIN), node(HANK)],
                }],
            }),
            &dave,
            &[],
        )?;

        // Fetch, dictionary (§7.4.2): Bob looks up two of Alice's registrations; one does
        // not exist and comes back synthesized with identity `none` (§7.4.2.2, the only
        // place the RFC allows it).
        let missing_key = Bytes::copy_from_slice(node(ALICE_DESK).as_bytes());
        let tx = self.txid();
        self.push(
            "fetch_req/dictionary",
            tx,
            Route::forwarded(vec![dnode(BOB)], vec![Destination::Resource(aor.clone())])
                .max_response_length(4_096),
            MessageBody::FetchReq(FetchReq {
                resource: aor.clone(),
                specifiers: vec![StoredDataSpecifier {
                    kind: KindId::SIP_REGISTRATION,
                    generation: 0,
                    model_specifier: ModelSpecifier::Dictionary(vec![
                        Bytes::copy_from_slice(alice.id.as_bytes()),
                        missing_key.clone(),
                    ]),
                }],
            }),
            &bob,
            &[],
        )?;
        let synthesized = StoredData {
            storage_time: 0,
            lifetime: 0,
            value: StoredDataValue::Dictionary(DictionaryEntry {
                key: missing_key,
                value: DataValue {
                    exists: false,
                    value: Bytes::new(),
                },
            }),
            signature: Signature::none(),
        };
        self.push(
            "fetch_ans/dictionary",
            tx,
            Route::to(vec![dnode(CAROL), dnode(BOB)]),
            MessageBody::FetchAns(FetchAns {
                kind_responses: vec![FetchKindResponse {
                    kind: KindId::SIP_REGISTRATION,
                    generation: 1,
                    values: KindValues::Decoded(vec![sip_value, synthesized]),
                }],
            }),
            &dave,
            &[&alice],
        )?;

        // Fetch, single value: Alice looks for a TURN server (§9).
        let tx = self.txid();
        self.push(
            "fetch_req/single",
            tx,
            Route::forwarded(
                vec![dnode(ALICE)],
                vec![Destination::Resource(turn.clone())],
            ),
            MessageBody::FetchReq(FetchReq {
                resource: turn.clone(),
                specifiers: vec![StoredDataSpecifier {
                    kind: KindId::TURN_SERVICE,
                    generation: 0,
                    model_specifier: ModelSpecifier::Single,
                }],
            }),
            &alice,
            &[],
        )?;
        self.push(
            "fetch_ans/single",
            tx,
            Route::to(vec![dnode(CAROL), dnode(ALICE)]),
            MessageBody::FetchAns(FetchAns {
                kind_responses: vec![FetchKindResponse {
                    kind: KindId::TURN_SERVICE,
                    generation: 1,
                    values: KindValues::Decoded(vec![turn_value]),
                }],
            }),
            &dave,
            &[&carol],
        )?;

        // Fetch, array: Bob fetches Alice's certificates to check her signatures.
        let both = vec![ArrayRange { first: 0, last: 1 }];
        let tx = self.txid();
        self.push(
            "fetch_req/array",
            tx,
            Route::forwarded(
                vec![dnode(BOB)],
                vec![Destination::Resource(cert_rid.clone())],
            ),
            MessageBody::FetchReq(FetchReq {
                resource: cert_rid.clone(),
                specifiers: vec![StoredDataSpecifier {
                    kind: KindId::CERTIFICATE_BY_NODE,
                    generation: 0,
                    model_specifier: ModelSpecifier::Array(both.clone()),
                }],
            }),
            &bob,
            &[],
        )?;
        let mut stored_new = appended;
        stored_new.value = StoredDataValue::Array(ArrayEntry {
            index: 1,
            value: DataValue::new(alice.cert.clone()),
        });
        self.push(
            "fetch_ans/array",
            tx,
            Route::to(vec![dnode(CAROL), dnode(BOB)]),
            MessageBody::FetchAns(FetchAns {
                kind_responses: vec![FetchKindResponse {
                    kind: KindId::CERTIFICATE_BY_NODE,
                    generation: 2,
                    values: KindValues::Decoded(vec![old_cert_value.clone(), stored_new.clone()]),
                }],
            }),
            &dave,
            &[&alice, &alice_old],
        )?;

        // Stat (§7.4.3): the same certificates, metadata only.
        let tx = self.txid();
        self.push(
            "stat_req",
            tx,
            Route::forwarded(
                vec![dnode(BOB)],
                vec![Destination::Resource(cert_rid.clone())],
            ),
            MessageBody::StatReq(StatReq {
                resource: cert_rid,
                specifiers: vec![StoredDataSpecifier {
                    kind: KindId::CERTIFICATE_BY_NODE,
                    generation: 0,
                    model_specifier: ModelSpecifier::Array(both),
                }],
            }),
            &bob,
            &[],
        )?;
        // StoredMetaData.value_length is "the same as the corresponding field in
        // StoredData" (§7.4.3.2), whose `length` is the size of the rest of the structure
        // (§7): here the size of the rest of the StoredMetaData. Wireshark and the Java
        // RELOAD implementation (com.github.reload) read it so; the RFC could also be
        // read as "the length of the described StoredData" — see the crate report.
        let meta = |d: &StoredData, e: &ArrayEntry| -> StoredMetaData {
            let mut prefixed = BytesMut::new();
            prefixed.put_u32(e.value.value.len() as u32);
            prefixed.put_slice(&e.value.value);
            let mut m = StoredMetaData {
                value_length: 0,
                storage_time: d.storage_time,
                lifetime: d.lifetime,
                metadata: MetaDataValue::Array {
                    index: e.index,
                    value: MetaData {
                        exists: e.value.exists,
                        value_length: e.value.value.len() as u32,
                        hash_algorithm: HashAlgorithm::SHA256,
                        // Over the value "including its 4 leading length bytes".
                        hash_value: Bytes::copy_from_slice(&sha256(&prefixed)),
                    },
                },
            };
            m.value_length = (m.encoded_len() - 4) as u32;
            m
        };
        let old_entry = ArrayEntry {
            index: 0,
            value: DataValue::new(alice_old.cert.clone()),
        };
        let new_entry = ArrayEntry {
            index: 1,
            value: DataValue::new(alice.cert.clone()),
        };
        let metas = vec![
            meta(&old_cert_value, &old_entry),
            meta(&stored_new, &new_entry),
        ];
        self.push(
            "stat_ans",
            tx,
            Route::to(vec![dnode(CAROL), dnode(BOB)]),
            MessageBody::StatAns(StatAns {
                kind_responses: vec![StatKindResponse {
                    kind: KindId::CERTIFICATE_BY_NODE,
                    generation: 2,
                    values: KindValues::Decoded(metas),
                }],
            }),
            &dave,
            &[],
        )?;

        // Find (§7.4.4): a random Resource-ID, to discover TURN servers (§9).
        let tx = self.txid();
        self.push(
            "find_req",
            tx,
            Route::forwarded(
                vec![dnode(ALICE)],
                vec![Destination::Resource(rid(RID_RANDOM))],
            ),
            MessageBody::FindReq(FindReq {
                resource: rid(RID_RANDOM),
                kinds: vec![KindId::TURN_SERVICE, KindId::SIP_REGISTRATION],
            }),
            &alice,
            &[],
        )?;
        self.push(
            "find_ans",
            tx,
            Route::to(vec![dnode(CAROL), dnode(ALICE)]),
            MessageBody::FindAns(FindAns {
                results: vec![
                    FindKindData {
                        kind: KindId::TURN_SERVICE,
                        closest: turn,
                    },
                    FindKindData {
                        kind: KindId::SIP_REGISTRATION,
                        closest: aor,
                    },
                ],
            }),
            &dave,
            &[],
        )?;

        // Find with Kinds Dave's configuration lacks → Error_Unknown_Kind with the
        // UnknownKinds error_info (§7.4.1.2).
        let unknown = vec![KindId::COAP_REGISTRATION, KindId(0xf000_0001)];
        let tx = self.txid();
        self.push(
            "find_req/unknown_kinds",
            tx,
            Route::forwarded(
                vec![dnode(ALICE)],
                vec![Destination::Resource(rid(RID_RANDOM))],
            ),
            MessageBody::FindReq(FindReq {
                resource: rid(RID_RANDOM),
                kinds: unknown.clone(),
            }),
            &alice,
            &[],
        )?;
        let info = UnknownKinds {
            unknown_kinds: unknown,
        };
        self.push(
            "error/unknown_kind",
            tx,
            Route::to(vec![dnode(CAROL), dnode(ALICE)]),
            MessageBody::Error(ErrorResponse::new(
                ErrorCode::UNKNOWN_KIND,
                info.to_bytes()?,
            )),
            &dave,
            &[],
        )?;

        // AppAttach (§6.5.2): Alice sets up a SIP connection to Frank (RFC 7904 §5). The
        // answer was forwarded by Dave: one hop, so TTL 99.
        let tx = self.txid();
        let sip = AppAttach {
            ufrag: self.rng.ice_chars(8),
            password: self.rng.ice_chars(24),
            application: 5060,
            role: Bytes::from_static(ROLE_PASSIVE),
            candidates: self.alice_candidates(),
        };
        self.push(
            "app_attach_req",
            tx,
            Route::forwarded(vec![dnode(ALICE)], vec![dnode(FRANK)]),
            MessageBody::AppAttachReq(sip),
            &alice,
            &[],
        )?;
        let sip_ans = AppAttach {
            ufrag: self.rng.ice_chars(8),
            password: self.rng.ice_chars(24),
            application: 5060,
            role: Bytes::from_static(ROLE_ACTIVE),
            candidates: self.public_candidates(81, 5060),
        };
        self.push(
            "app_attach_ans",
            tx,
            Route {
                ttl: INITIAL_TTL - 1,
                ..Route::to(vec![dnode(CAROL), dnode(ALICE)])
            },
            MessageBody::AppAttachAns(sip_ans),
            &frank,
            &[],
        )?;

        // AppAttach for SIPS, which Frank does not offer → Error_Not_Found (§6.5.2.2).
        let tx = self.txid();
        let sips = AppAttach {
            ufrag: self.rng.ice_chars(8),
            password: self.rng.ice_chars(24),
            application: 5061,
            role: Bytes::from_static(ROLE_PASSIVE),
            candidates: self.alice_candidates(),
        };
        self.push(
            "app_attach_req/sips",
            tx,
            Route::forwarded(vec![dnode(ALICE)], vec![dnode(FRANK)]),
            MessageBody::AppAttachReq(sips),
            &alice,
            &[],
        )?;
        self.push(
            "error/not_found",
            tx,
            Route {
                ttl: INITIAL_TTL - 1,
                ..Route::to(vec![dnode(CAROL), dnode(ALICE)])
            },
            MessageBody::Error(ErrorResponse::new(
                ErrorCode::NOT_FOUND,
                Bytes::from_static(b"application 5061 (SIPS) is not supported"),
            )),
            &frank,
            &[],
        )?;

        // A Ping that asks for Direct Response Routing (RFC 7263 §5.3.1): forwarding option
        // extensive_routing_mode with IGNORE-STATE-KEEPING. Frank answers Alice directly,
        // so no answer crosses this link.
        let mut drr = BytesMut::new();
        drr.put_u8(1); // RouteMode DRR
        OverlayLinkType::DTLS_UDP_SR.encode(&mut drr)?;
        v4([198, 51, 100, 7], 61000).encode(&mut drr)?;
        let sender = dnode(ALICE);
        drr.put_u8(sender.encoded_len() as u8);
        sender.encode(&mut drr)?;
        let tx = self.txid();
        let mut route = Route::forwarded(vec![dnode(ALICE)], vec![dnode(FRANK)]);
        route.options = vec![ForwardingOption {
            option_type: ForwardingOptionType::EXTENSIVE_ROUTING_MODE,
            flags: option_flags::IGNORE_STATE_KEEPING,
            value: drr.freeze(),
        }];
        self.push(
            "ping_req/direct_response",
            tx,
            route,
            MessageBody::PingReq(PingReq {
                padding: Bytes::new(),
            }),
            &alice,
            &[],
        )?;

        // Alice runs configuration 16 → Error_Config_Too_Old, and Dave MUST push the new
        // configuration to her (§6.3.2.1), source-routed through Carol.
        let tx = self.txid();
        let mut route = Route::forwarded(vec![dnode(ALICE)], to_dave());
        route.configuration_sequence = CONFIG_SEQUENCE - 1;
        self.push(
            "ping_req/old_config",
            tx,
            route,
            MessageBody::PingReq(PingReq {
                padding: Bytes::new(),
            }),
            &alice,
            &[],
        )?;
        self.push(
            "error/config_too_old",
            tx,
            Route::to(vec![dnode(CAROL), dnode(ALICE)]),
            MessageBody::Error(ErrorResponse::new(
                ErrorCode::CONFIG_TOO_OLD,
                Bytes::from_static(b"configuration sequence 16 is older than 17"),
            )),
            &dave,
            &[],
        )?;

        // ConfigUpdate (§6.5.4), both types.
        let tx = self.txid();
        self.push(
            "config_update_req/config",
            tx,
            Route::to(vec![dnode(CAROL), dnode(ALICE)]),
            MessageBody::ConfigUpdateReq(ConfigUpdateReq::Config(Bytes::from_static(
                CONFIG_DOCUMENT.as_bytes(),
            ))),
            &dave,
            &[],
        )?;
        self.push(
            "config_update_ans/config",
            tx,
            Route::forwarded(vec![dnode(ALICE)], to_dave()),
            MessageBody::ConfigUpdateAns(ConfigUpdateAns),
            &alice,
            &[],
        )?;
        let tx = self.txid();
        self.push(
            "config_update_req/kinds",
            tx,
            Route::to(vec![dnode(CAROL), dnode(ALICE)]),
            MessageBody::ConfigUpdateReq(ConfigUpdateReq::Kinds(vec![
                Bytes::from_static(KIND_BLOCK_COAP.as_bytes()),
                Bytes::from_static(KIND_BLOCK_PRIVATE.as_bytes()),
            ])),
            &dave,
            &[],
        )?;
        self.push(
            "config_update_ans/kinds",
            tx,
            Route::forwarded(vec![dnode(ALICE)], to_dave()),
            MessageBody::ConfigUpdateAns(ConfigUpdateAns),
            &alice,
            &[],
        )?;

        // PathTrack (RFC 7851 §4.3): Alice asks Dave how he would route towards Frank.
        let tx = self.txid();
        let initiated = self.now();
        let request = DiagnosticsRequest::new(
            initiated + 60_000,
            initiated,
            // STATUS_INFO | ROUTING_TABLE_SIZE | SOFTWARE_VERSION (RFC 7851 §9.1).
            0x0000_0000_0000_0046,
            vec![DiagnosticExtension {
                kind: 0xf001,
                diagnostic_extension_contents: Bytes::from_static(b"\x00\x00\x00\x3c"),
            }],
        );
        self.push(
            "path_track_req",
            tx,
            Route::forwarded(vec![dnode(ALICE)], to_dave()),
            MessageBody::PathTrackReq(PathTrackReq {
                destination: dnode(FRANK),
                request,
            }),
            &alice,
            &[],
        )?;
        let received = self.now();
        let response = DiagnosticsResponse::new(
            received + 60_000,
            initiated,
            received,
            INITIAL_TTL - 1,
            vec![
                DiagnosticInfo {
                    kind: 0x0001, // STATUS_INFO
                    diagnostic_info_contents: Bytes::from_static(&[0x03]),
                },
                DiagnosticInfo {
                    kind: 0x0002, // ROUTING_TABLE_SIZE
                    diagnostic_info_contents: Bytes::copy_from_slice(&24u32.to_be_bytes()),
                },
                DiagnosticInfo {
                    kind: 0x0006, // SOFTWARE_VERSION, NUL-terminated (RFC 7851 §5.3)
                    diagnostic_info_contents: Bytes::from_static(
                        b"reload-rs/0.1.0 (Unix; Linux x86_64)\0",
                    ),
                },
                DiagnosticInfo {
                    kind: 0xf001,
                    diagnostic_info_contents: Bytes::from_static(b"\x00\x00\x00\x07"),
                },
            ],
        );
        self.push(
            "path_track_ans",
            tx,
            Route::to(vec![dnode(CAROL), dnode(ALICE)]),
            MessageBody::PathTrackAns(PathTrackAns {
                next_hop: dnode(KATE),
                response,
            }),
            &dave,
            &[],
        )?;

        // Leave (§6.4.2.2, §10.9): Carol, Dave's predecessor, leaves.
        let tx = self.txid();
        let leave = ChordLeaveData::FromPred {
            predecessors: vec![node(GINA), node(IVAN), node(JUDY)],
        };
        self.push(
            "leave_req",
            tx,
            Route::to(to_dave()),
            MessageBody::LeaveReq(LeaveReq {
                leaving_peer_id: carol.id,
                overlay_specific_data: leave.to_bytes()?,
            }),
            &carol,
            &[],
        )?;
        self.push(
            "leave_ans",
            tx,
            Route::to(to_carol()),
            MessageBody::LeaveAns(LeaveAns),
            &dave,
            &[],
        )?;

        Ok(self.out)
    }
}

/// A `sip_registration_route` SipRegistration (RFC 7904 §3.2): contact preferences and
/// the destination list that reaches the registrant.
fn sip_registration_route(contact_prefs: &[u8], route: &[Destination]) -> Bytes {
    let list_len: usize = route.iter().map(Wire::encoded_len).sum();
    let mut data = BytesMut::new();
    data.put_u16(contact_prefs.len() as u16);
    data.put_slice(contact_prefs);
    data.put_u16(list_len as u16);
    for d in route {
        // A Destination encodes into a BytesMut without failing.
        let _ = d.encode(&mut data);
    }
    let mut out = BytesMut::new();
    out.put_u8(2); // sip_registration_route
    out.put_u16(data.len() as u16);
    out.put_slice(&data);
    out.freeze()
}

/// The configuration document pushed by `config_update_req/config` (RFC 6940 §11.1).
pub const CONFIG_DOCUMENT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<overlay xmlns="urn:ietf:params:xml:ns:p2p:config-base"
         xmlns:chord="urn:ietf:params:xml:ns:p2p:config-chord">
  <configuration instance-name="overlay.example.org" sequence="17"
                 expiration="2025-11-14T22:13:20Z">
    <topology-plugin>CHORD-RELOAD</topology-plugin>
    <node-id-length>16</node-id-length>
    <max-message-size>5000</max-message-size>
    <initial-ttl>100</initial-ttl>
    <overlay-reliability-timer>3000</overlay-reliability-timer>
    <turn-density>10</turn-density>
    <clients-permitted>true</clients-permitted>
    <enrollment-server>https://enroll.overlay.example.org/enroll</enrollment-server>
    <bootstrap-node address="192.0.2.77" port="6084"/>
    <chord:chord-update-interval>400</chord:chord-update-interval>
    <chord:chord-ping-interval>30</chord:chord-ping-interval>
    <chord:chord-reactive>true</chord:chord-reactive>
    <required-kinds>
      <kind-block>
        <kind name="SIP-REGISTRATION">
          <data-model>DICTIONARY</data-model>
          <access-control>USER-NODE-MATCH</access-control>
          <max-count>1</max-count>
          <max-size>1000</max-size>
        </kind>
      </kind-block>
    </required-kinds>
  </configuration>
</overlay>
"#;

/// A kind-block for CoAP-REGISTRATION (RFC 7650 §7), as a ConfigUpdate carries it.
pub const KIND_BLOCK_COAP: &str = r#"<kind-block><kind name="CoAP-REGISTRATION"><data-model>DICTIONARY</data-model><access-control>URI-NODE-MATCH</access-control><max-count>4</max-count><max-size>1024</max-size></kind><kind-signature>VGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZQ==</kind-signature></kind-block>"#;

/// A kind-block for a private Kind (RFC 6940 §14.6 private range).
pub const KIND_BLOCK_PRIVATE: &str = r#"<kind-block><kind id="4026531841"><data-model>ARRAY</data-model><access-control>NODE-MATCH</access-control><max-count>16</max-count><max-size>512</max-size></kind><kind-signature>VGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZQ==</kind-signature></kind-block>"#;

#[cfg(test)]
mod tests {
    use super::*;
    use reload_wire::DecodeOptions;

    #[test]
    fn every_message_round_trips() {
        let opts = DecodeOptions::default();
        for (label, msg) in corpus() {
            let bytes = msg.to_bytes().unwrap();
            assert!(bytes.len() <= opts.max_message_size(), "{label}: too large");
            let back = Message::decode(&bytes, &opts).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(back, msg, "{label}");
            let body = msg.contents.body(&opts).unwrap();
            assert_eq!(body.code(), msg.contents.message_code, "{label}");
            assert!(!matches!(body, MessageBody::Unknown { .. }), "{label}");
            assert!(
                label.starts_with(msg.contents.message_code.name().unwrap()),
                "{label}"
            );
        }
    }

    #[test]
    fn every_message_code_is_covered() {
        use reload_wire::MessageCode as C;
        let corpus = corpus();
        let codes = [
            C::PROBE_REQ,
            C::PROBE_ANS,
            C::ATTACH_REQ,
            C::ATTACH_ANS,
            C::STORE_REQ,
            C::STORE_ANS,
            C::FETCH_REQ,
            C::FETCH_ANS,
            C::FIND_REQ,
            C::FIND_ANS,
            C::JOIN_REQ,
            C::JOIN_ANS,
            C::LEAVE_REQ,
            C::LEAVE_ANS,
            C::UPDATE_REQ,
            C::UPDATE_ANS,
            C::ROUTE_QUERY_REQ,
            C::ROUTE_QUERY_ANS,
            C::PING_REQ,
            C::PING_ANS,
            C::STAT_REQ,
            C::STAT_ANS,
            C::APP_ATTACH_REQ,
            C::APP_ATTACH_ANS,
            C::CONFIG_UPDATE_REQ,
            C::CONFIG_UPDATE_ANS,
            C::PATH_TRACK_REQ,
            C::PATH_TRACK_ANS,
            C::ERROR,
        ];
        for code in codes {
            assert!(
                corpus.iter().any(|(_, m)| m.contents.message_code == code),
                "{code} missing"
            );
        }
    }

    #[test]
    fn answers_reuse_their_request_transaction_id() {
        let corpus = corpus();
        for (i, (label, msg)) in corpus.iter().enumerate() {
            if msg.contents.message_code.is_response() {
                let (req_label, req) = &corpus[i - 1];
                assert!(req.contents.message_code.is_request(), "{label}");
                assert_eq!(
                    req.header.transaction_id, msg.header.transaction_id,
                    "{req_label} / {label}"
                );
            }
        }
    }

    #[test]
    fn identities_name_the_first_certificate() {
        for (label, msg) in corpus() {
            let SignerIdentity::CertHash {
                hash_alg,
                certificate_hash,
            } = &msg.security.signature.identity
            else {
                panic!("{label}: not cert_hash");
            };
            assert_eq!(*hash_alg, HashAlgorithm::SHA256);
            let cert = &msg.security.certificates[0].certificate;
            assert_eq!(&certificate_hash[..], &sha256(cert)[..], "{label}");
        }
    }
}
