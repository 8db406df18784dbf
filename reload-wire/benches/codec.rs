//! Codec throughput (issue #2): decode and encode of a 1 KB StoreReq, a FetchAns with 20
//! dictionary entries and a forwarding-header peek, next to a memcpy of the same bytes.
//! `cargo bench -p reload-wire`; criterion reports bytes/s and messages/s.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use reload_wire::header::ForwardingHeader;
use reload_wire::security::{HashAlgorithm, SignatureAndHashAlgorithm};
use reload_wire::storage::{
    DataValue, DictionaryEntry, FetchAns, FetchKindResponse, KindId, KindValues, StoreKindData,
    StoreReq, StoredData, StoredDataValue,
};
use reload_wire::{
    DecodeOptions, Destination, GenericCertificate, Message, MessageBody, MessageContents, NodeId,
    ResourceId, SecurityBlock, Signature, SignerIdentity, Wire,
};

fn signature() -> Signature {
    Signature {
        algorithm: SignatureAndHashAlgorithm::RSA_SHA256,
        identity: SignerIdentity::CertHash {
            hash_alg: HashAlgorithm::SHA256,
            certificate_hash: Bytes::from(vec![0xab; 32]),
        },
        signature_value: Bytes::from(vec![0x5a; 256]),
    }
}

fn message(body: MessageBody) -> Message {
    let mut h = ForwardingHeader::new(0x1234_5678, 7, 100, 0xdead_beef_0000_0001);
    h.via_list = vec![
        Destination::Node(NodeId::from_u128(1)),
        Destination::Node(NodeId::from_u128(2)),
    ];
    h.destination_list = vec![Destination::Resource(ResourceId::new(vec![9u8; 16]))];
    let mut m = Message {
        header: h,
        contents: MessageContents::from_body(&body).unwrap(),
        security: SecurityBlock {
            certificates: vec![GenericCertificate::x509(vec![0x30; 300])],
            signature: signature(),
        },
    };
    m.header.length = m.encoded_len() as u32;
    m
}

/// A StoreReq of one SIP-REGISTRATION value whose whole message is about 1 KB.
fn store_req_1k() -> Message {
    let sd = StoredData {
        storage_time: 1_700_000_000_000,
        lifetime: 3600,
        value: StoredDataValue::Dictionary(DictionaryEntry {
            key: Bytes::from(vec![1u8; 16]),
            value: DataValue::new(vec![b'x'; 160]),
        }),
        signature: signature(),
    };
    message(MessageBody::StoreReq(StoreReq {
        resource: ResourceId::new(vec![7u8; 16]),
        replica_number: 0,
        kind_data: vec![StoreKindData {
            kind: KindId::SIP_REGISTRATION,
            generation_counter: 3,
            values: KindValues::Decoded(vec![sd]),
        }],
    }))
}

fn fetch_ans_20() -> Message {
    let values = (0..20u8)
        .map(|i| StoredData {
            storage_time: 1_700_000_000_000 + i as u64,
            lifetime: 3600,
            value: StoredDataValue::Dictionary(DictionaryEntry {
                key: Bytes::from(vec![i; 16]),
                value: DataValue::new(vec![b'v'; 64]),
            }),
            signature: signature(),
        })
        .collect();
    message(MessageBody::FetchAns(FetchAns {
        kind_responses: vec![FetchKindResponse {
            kind: KindId::SIP_REGISTRATION,
            generation: 9,
            values: KindValues::Decoded(values),
        }],
    }))
}

fn bench(c: &mut Criterion) {
    let opts = DecodeOptions::default().with_max_message_size(64 * 1024);
    for (name, m) in [
        ("store_req_1k", store_req_1k()),
        ("fetch_ans_20_dict", fetch_ans_20()),
    ] {
        let wire = m.to_bytes().unwrap();
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(BenchmarkId::new("memcpy", wire.len()), |b| {
            b.iter(|| black_box(Bytes::copy_from_slice(black_box(&wire))))
        });
        g.bench_function(BenchmarkId::new("decode_message", wire.len()), |b| {
            b.iter(|| black_box(Message::decode(black_box(&wire), &opts).unwrap()))
        });
        g.bench_function(
            BenchmarkId::new("decode_message_and_body", wire.len()),
            |b| {
                b.iter(|| {
                    let m = Message::decode(black_box(&wire), &opts).unwrap();
                    black_box(m.contents.body(&opts).unwrap())
                })
            },
        );
        g.bench_function(BenchmarkId::new("encode", wire.len()), |b| {
            let mut buf = BytesMut::with_capacity(wire.len());
            b.iter(|| {
                buf.clear();
                m.encode(&mut buf).unwrap();
                black_box(&buf);
            })
        });
        // What a forwarding peer does (RFC 6940 §6.1.2): peek the header, decrement the
        // TTL, append the previous hop to the via list, re-encode the header and copy the
        // untouched contents behind it.
        g.bench_function(BenchmarkId::new("forward", wire.len()), |b| {
            let prev = Destination::Node(NodeId::from_u128(0xabcd));
            let mut out = BytesMut::with_capacity(wire.len() + 64);
            b.iter(|| {
                let (mut h, hlen) = ForwardingHeader::peek(black_box(&wire), &opts).unwrap();
                h.ttl -= 1;
                h.via_list.push(prev.clone());
                let payload = &wire[hlen..];
                let total = h.encoded_len() + payload.len();
                out.clear();
                h.encode_with_length(&mut out, total as u32).unwrap();
                out.extend_from_slice(payload);
                black_box(&out);
            })
        });
        g.bench_function(BenchmarkId::new("peek_header", wire.len()), |b| {
            b.iter(|| black_box(ForwardingHeader::peek(black_box(&wire), &opts).unwrap()))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
