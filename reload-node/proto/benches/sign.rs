//! Signing and verification rates (issue #3): our message signing and verification next
//! to the raw aws-lc-rs primitive on the same key and the same bytes, for RSA-2048 and
//! ECDSA P-256. `cargo bench -p reload-proto --bench sign`.

#[path = "../tests/pki/mod.rs"]
mod pki;

use std::hint::black_box;
use std::time::SystemTime;

use aws_lc_rs::signature as sig;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use reload_proto::identity::{TrustPolicy, overlay_hash};
use reload_proto::sign::{Verifier, verify_with_certificate};
use reload_wire::body::MessageBody;
use reload_wire::link::PingReq;
use reload_wire::{ForwardingHeader, Message, MessageContents, SecurityBlock, Signature, Wire};

fn ping() -> Message {
    let body = MessageBody::PingReq(PingReq {
        padding: Bytes::from(vec![0u8; 200]),
    });
    let mut m = Message {
        header: ForwardingHeader::new(overlay_hash(pki::OVERLAY), 1, 100, 42),
        contents: MessageContents::from_body(&body).unwrap(),
        security: SecurityBlock {
            certificates: vec![],
            signature: Signature::none(),
        },
    };
    m.header.length = m.encoded_len() as u32;
    m
}

fn bench(c: &mut Criterion) {
    for (name, rsa) in [("rsa2048", true), ("p256", false)] {
        let ca = pki::TestCa::new(rsa);
        let creds = ca.node(rsa, 0x42, "bench");
        let trust = TrustPolicy {
            overlay: pki::OVERLAY.into(),
            node_id_len: 16,
            roots: vec![ca.der.clone()],
            bad_nodes: vec![],
            self_signed: None,
        };
        let mut m = ping();
        creds.sign_message(&mut m, vec![]).unwrap();
        let input = m.signature_input().unwrap();
        let sig_value = m.security.signature.signature_value.clone();
        let alg: &dyn sig::VerificationAlgorithm = if rsa {
            &sig::RSA_PKCS1_2048_8192_SHA256
        } else {
            &sig::ECDSA_P256_SHA256_ASN1
        };
        let raw_key = sig::UnparsedPublicKey::new(alg, creds.cert.public_key.to_vec());

        let mut g = c.benchmark_group(name);
        g.bench_function("raw_sign", |b| {
            b.iter(|| black_box(creds.key.sign(black_box(&input)).unwrap()))
        });
        g.bench_function("sign_message", |b| {
            b.iter(|| {
                let mut mm = m.clone();
                creds.sign_message(&mut mm, vec![]).unwrap();
                black_box(mm)
            })
        });
        g.bench_function("raw_verify", |b| {
            b.iter(|| raw_key.verify(black_box(&input), &sig_value).unwrap())
        });
        // The key parsed once (what a certificate cache can keep): the verification alone.
        let parsed = sig::ParsedPublicKey::new(alg, &creds.cert.public_key).unwrap();
        g.bench_function("raw_verify_parsed_key", |b| {
            b.iter(|| parsed.verify_sig(black_box(&input), &sig_value).unwrap())
        });
        g.bench_function("verify_signature_only", |b| {
            b.iter(|| {
                verify_with_certificate(
                    m.security.signature.algorithm,
                    &creds.cert,
                    black_box(&input),
                    &sig_value,
                )
                .unwrap()
            })
        });
        let mut v = Verifier::new(trust, 64);
        let now = SystemTime::now();
        g.bench_function("verify_message_with_chain", |b| {
            b.iter(|| black_box(v.verify_message(black_box(&m), now).unwrap()))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
