//! The engine alone (RFC 6940 §7.4): no signatures here (the core checks them before a
//! value reaches the engine), so values carry placeholder signatures and certificates.

use super::*;
use reload_wire::security::SignatureAndHashAlgorithm;
use reload_wire::storage::ArrayRange;
use reload_wire::{NodeId, SignerIdentity};

const NOW: u64 = 1_800_000_000_000;

fn rid(n: u8) -> ResourceId {
    ResourceId::new(Bytes::from(vec![n; 16]))
}

fn signed() -> Signature {
    Signature {
        algorithm: SignatureAndHashAlgorithm::ECDSA_SHA256,
        identity: SignerIdentity::CertHash {
            hash_alg: HashAlgorithm::SHA256,
            certificate_hash: Bytes::from_static(&[1; 32]),
        },
        signature_value: Bytes::from_static(b"sig"),
    }
}

fn data(time: u64, lifetime: u32, v: StoredDataValue) -> StoredData {
    StoredData {
        storage_time: time,
        lifetime,
        value: v,
        signature: signed(),
    }
}

fn dv(s: &str) -> DataValue {
    DataValue {
        exists: true,
        value: Bytes::copy_from_slice(s.as_bytes()),
    }
}

fn single(time: u64, s: &str) -> StoredData {
    data(time, 60, StoredDataValue::Single(dv(s)))
}

fn elem(time: u64, index: u32, s: &str) -> StoredData {
    data(
        time,
        60,
        StoredDataValue::Array(ArrayEntry {
            index,
            value: dv(s),
        }),
    )
}

fn entry(time: u64, key: &str, s: &str) -> StoredData {
    data(
        time,
        60,
        StoredDataValue::Dictionary(DictionaryEntry {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: dv(s),
        }),
    )
}

fn by(owner: &str, d: StoredData) -> SignedValue {
    SignedValue {
        data: d,
        cert: Bytes::copy_from_slice(owner.as_bytes()),
        owner: owner.to_string(),
    }
}

fn kind(id: u32, model: DataModel, generation: u64, values: Vec<StoredData>) -> KindInput {
    KindInput {
        kind: KindId(id),
        model,
        generation,
        max_count: 10,
        max_size: 100,
        values: values.into_iter().map(|d| by("alice@x", d)).collect(),
    }
}

fn engine() -> (Storage, MemoryBackend) {
    let backend = MemoryBackend::new();
    let (s, _) =
        Storage::open(Box::new(backend.clone()), StorageLimits::default(), 16, NOW).unwrap();
    (s, backend)
}

fn spec(id: u32, generation: u64, m: ModelSpecifier) -> StoredDataSpecifier {
    StoredDataSpecifier {
        kind: KindId(id),
        generation,
        model_specifier: m,
    }
}

fn fetched(
    s: &Storage,
    now: u64,
    r: &ResourceId,
    sp: &StoredDataSpecifier,
    m: DataModel,
) -> Vec<StoredData> {
    let (a, _) = s.fetch(now, r, sp, m).unwrap();
    a.values.as_slice().to_vec()
}

#[test]
fn generation_counter_starts_at_one_and_grows_with_each_change() {
    // §7.4.1.1: a change increases the counter; all stored values have one ≥ 1.
    let (mut s, _) = engine();
    let r = rid(1);
    let out = s
        .store(
            NOW,
            &r,
            StoreMode::Original,
            vec![kind(1, DataModel::Single, 0, vec![single(1, "a")])],
        )
        .unwrap();
    assert_eq!(out[0].generation, 1);
    assert!(out[0].changed);
    let out = s
        .store(
            NOW,
            &r,
            StoreMode::Original,
            vec![kind(1, DataModel::Single, 1, vec![single(2, "b")])],
        )
        .unwrap();
    assert_eq!(out[0].generation, 2);
    // The same value again changes nothing, counter included.
    let out = s
        .store(
            NOW,
            &r,
            StoreMode::Original,
            vec![kind(1, DataModel::Single, 0, vec![single(2, "b")])],
        )
        .unwrap();
    assert_eq!(out[0].generation, 2);
    assert!(!out[0].changed);
}

#[test]
fn a_stale_generation_counter_fails_the_whole_store_and_reports_every_counter() {
    // §7.4.1.2: Error_Generation_Counter_Too_Low, error_info = the current counters.
    let (mut s, _) = engine();
    let r = rid(1);
    s.store(
        NOW,
        &r,
        StoreMode::Original,
        vec![kind(1, DataModel::Single, 0, vec![single(1, "a")])],
    )
    .unwrap();
    s.store(
        NOW,
        &r,
        StoreMode::Original,
        vec![kind(1, DataModel::Single, 0, vec![single(2, "b")])],
    )
    .unwrap();
    let err = s
        .store(
            NOW,
            &r,
            StoreMode::Original,
            vec![
                kind(2, DataModel::Single, 0, vec![single(3, "x")]),
                kind(1, DataModel::Single, 1, vec![single(3, "c")]),
            ],
        )
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::GenerationTooLow(vec![(KindId(2), 0), (KindId(1), 2)])
    );
    // Atomic: Kind 2 was not stored either.
    assert!(s.record(&r, KindId(2)).is_none());
}

#[test]
fn storage_time_must_move_forward() {
    // §7: a value older than the one it replaces is Error_Data_Too_Old; so is a
    // different value with the same time.
    let (mut s, _) = engine();
    let r = rid(1);
    s.store(
        NOW,
        &r,
        StoreMode::Original,
        vec![kind(1, DataModel::Single, 0, vec![single(10, "a")])],
    )
    .unwrap();
    for d in [single(9, "b"), single(10, "b")] {
        let e = s
            .store(
                NOW,
                &r,
                StoreMode::Original,
                vec![kind(1, DataModel::Single, 0, vec![d])],
            )
            .unwrap_err();
        assert!(matches!(e, StoreError::DataTooOld(_)), "{e:?}");
    }
    assert_eq!(
        fetched(
            &s,
            NOW,
            &r,
            &spec(1, 0, ModelSpecifier::Single),
            DataModel::Single
        )[0],
        single(10, "a")
    );
}

#[test]
fn a_copy_with_less_lifetime_left_is_the_same_value() {
    // §7.4.1.1, §10.4: a replica Store carries every value of the Kind with what is left
    // of its lifetime (not signed, §7.1): the values held already are not "older", and
    // the new element among them is stored.
    let (mut s, _) = engine();
    let r = rid(1);
    let a0 = elem(10, 0, "a0");
    s.store(
        NOW,
        &r,
        StoreMode::Replica,
        vec![kind(1, DataModel::Array, 1, vec![a0.clone()])],
    )
    .unwrap();
    let mut older_copy = a0.clone();
    older_copy.lifetime -= 5;
    let stored = s
        .store(
            NOW + 5_000,
            &r,
            StoreMode::Replica,
            vec![kind(
                1,
                DataModel::Array,
                2,
                vec![older_copy, elem(11, 1, "a1")],
            )],
        )
        .unwrap();
    assert!(stored[0].changed);
    let got = fetched(
        &s,
        NOW + 5_000,
        &r,
        &spec(
            1,
            0,
            ModelSpecifier::Array(vec![ArrayRange { first: 0, last: 1 }]),
        ),
        DataModel::Array,
    );
    assert_eq!(got.len(), 2, "{got:?}");
}

#[test]
fn limits_of_the_kind_refuse_with_data_too_large() {
    let (mut s, _) = engine();
    let r = rid(1);
    let big = "x".repeat(101);
    let e = s
        .store(
            NOW,
            &r,
            StoreMode::Original,
            vec![kind(1, DataModel::Single, 0, vec![single(1, &big)])],
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::TooLarge(_)));
    let many: Vec<StoredData> = (0..11).map(|i| elem(1, i, "v")).collect();
    let e = s
        .store(
            NOW,
            &r,
            StoreMode::Original,
            vec![kind(2, DataModel::Array, 0, many)],
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::TooLarge(_)));
    assert!(s.is_empty());
}

#[test]
fn array_append_goes_to_the_end_and_gaps_are_synthesized() {
    // §7.2.2 sparse arrays, §7.4.1.1 append at 0xffffffff.
    let (mut s, _) = engine();
    let r = rid(1);
    s.store(
        NOW,
        &r,
        StoreMode::Original,
        vec![kind(3, DataModel::Array, 0, vec![elem(1, 2, "x")])],
    )
    .unwrap();
    s.store(
        NOW,
        &r,
        StoreMode::Original,
        vec![kind(
            3,
            DataModel::Array,
            0,
            vec![elem(2, ARRAY_END, "y"), elem(2, ARRAY_END, "z")],
        )],
    )
    .unwrap();
    let all = ModelSpecifier::Array(vec![ArrayRange {
        first: 0,
        last: ARRAY_END,
    }]);
    let got = fetched(&s, NOW, &r, &spec(3, 0, all), DataModel::Array);
    let shown: Vec<(u32, bool, Vec<u8>)> = got
        .iter()
        .map(|d| match &d.value {
            StoredDataValue::Array(e) => (e.index, e.value.exists, e.value.value.to_vec()),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            (0, false, vec![]),
            (1, false, vec![]),
            (2, true, b"x".to_vec()),
            (3, true, b"y".to_vec()),
            (4, true, b"z".to_vec()),
        ]
    );
    // The synthesized values carry no signature (§7.4.2.2).
    assert_eq!(got[0].signature, Signature::none());
    // A range past the end returns nothing; one inside returns that part.
    let tail = ModelSpecifier::Array(vec![ArrayRange { first: 3, last: 3 }]);
    assert_eq!(
        fetched(&s, NOW, &r, &spec(3, 0, tail), DataModel::Array).len(),
        1
    );
    let past = ModelSpecifier::Array(vec![ArrayRange { first: 9, last: 20 }]);
    assert!(fetched(&s, NOW, &r, &spec(3, 0, past), DataModel::Array).is_empty());
}

#[test]
fn bad_array_ranges_are_invalid() {
    let (s, _) = engine();
    let r = rid(1);
    for ranges in [
        vec![ArrayRange { first: 5, last: 4 }],
        vec![
            ArrayRange { first: 0, last: 4 },
            ArrayRange { first: 4, last: 6 },
        ],
    ] {
        let e = s
            .fetch(
                NOW,
                &r,
                &spec(3, 0, ModelSpecifier::Array(ranges)),
                DataModel::Array,
            )
            .unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)));
    }
}

#[test]
fn a_sparse_array_does_not_make_a_billion_values() {
    let (mut s, _) = engine();
    let r = rid(1);
    s.store(
        NOW,
        &r,
        StoreMode::Original,
        vec![kind(
            3,
            DataModel::Array,
            0,
            vec![elem(1, 1_000_000_000, "far")],
        )],
    )
    .unwrap();
    let all = ModelSpecifier::Array(vec![ArrayRange {
        first: 0,
        last: ARRAY_END,
    }]);
    let got = fetched(&s, NOW, &r, &spec(3, 0, all), DataModel::Array);
    assert_eq!(got.len(), MAX_SYNTHESIZED + 1);
    assert!(
        matches!(&got.last().unwrap().value, StoredDataValue::Array(e) if e.index == 1_000_000_000)
    );
}

#[test]
fn dictionary_fetch_by_key_and_wildcard() {
    let (mut s, _) = engine();
    let r = rid(1);
    s.store(
        NOW,
        &r,
        StoreMode::Original,
        vec![kind(
            4,
            DataModel::Dictionary,
            0,
            vec![entry(1, "a", "1"), entry(1, "b", "2")],
        )],
    )
    .unwrap();
    let all = fetched(
        &s,
        NOW,
        &r,
        &spec(4, 0, ModelSpecifier::Dictionary(vec![])),
        DataModel::Dictionary,
    );
    assert_eq!(all.len(), 2);
    let some = fetched(
        &s,
        NOW,
        &r,
        &spec(
            4,
            0,
            ModelSpecifier::Dictionary(vec![Bytes::from_static(b"b"), Bytes::from_static(b"zz")]),
        ),
        DataModel::Dictionary,
    );
    assert_eq!(some[0], entry(1, "b", "2").with_lifetime(60));
    assert!(
        matches!(&some[1].value, StoredDataValue::Dictionary(e) if !e.value.exists && e.key == "zz")
    );
}

trait WithLifetime {
    fn with_lifetime(self, l: u32) -> Self;
}

impl WithLifetime for StoredData {
    fn with_lifetime(mut self, l: u32) -> Self {
        self.lifetime = l;
        self
    }
}

#[test]
fn matching_generation_returns_no_values() {
    // §7.4.2.1: the requester already has this version.
    let (mut s, _) = engine();
    let r = rid(1);
    s.store(
        NOW,
        &r,
        StoreMode::Original,
        vec![kind(1, DataModel::Single, 0, vec![single(1, "a")])],
    )
    .unwrap();
    let (a, _) = s
        .fetch(
            NOW,
            &r,
            &spec(1, 1, ModelSpecifier::Single),
            DataModel::Single,
        )
        .unwrap();
    assert_eq!(a.generation, 1);
    assert!(a.values.as_slice().is_empty());
    // An absent single value is synthesized.
    let (a, _) = s
        .fetch(
            NOW,
            &rid(2),
            &spec(1, 0, ModelSpecifier::Single),
            DataModel::Single,
        )
        .unwrap();
    assert_eq!(a.generation, 0);
    assert_eq!(a.values.as_slice().len(), 1);
}

#[test]
fn lifetimes_count_down_and_expired_values_are_never_served() {
    let (mut s, backend) = engine();
    let r = rid(1);
    s.store(
        NOW,
        &r,
        StoreMode::Original,
        vec![kind(1, DataModel::Single, 0, vec![single(1, "a")])],
    )
    .unwrap();
    let got = fetched(
        &s,
        NOW + 20_500,
        &r,
        &spec(1, 0, ModelSpecifier::Single),
        DataModel::Single,
    );
    assert_eq!(got[0].lifetime, 39);
    // Not yet removed, but not served.
    let got = fetched(
        &s,
        NOW + 60_000,
        &r,
        &spec(1, 0, ModelSpecifier::Single),
        DataModel::Single,
    );
    assert!(!data_value(&got[0].value).exists);
    assert_eq!(s.next_expiry(), Some(NOW + 60_000));
    assert_eq!(s.expire(NOW + 60_000, 100).unwrap(), 1);
    assert!(s.is_empty());
    assert!(s.record(&r, KindId(1)).is_none());
    assert!(backend.is_empty());
}

#[test]
fn a_failed_commit_changes_nothing() {
    // Atomic (§7.4.1.1) and durable before success: the backend refuses, nothing moves.
    let (mut s, backend) = engine();
    let r = rid(1);
    s.store(
        NOW,
        &r,
        StoreMode::Original,
        vec![kind(1, DataModel::Single, 0, vec![single(1, "a")])],
    )
    .unwrap();
    backend.set_failure(Some("disk full"));
    let e = s
        .store(
            NOW,
            &r,
            StoreMode::Original,
            vec![kind(1, DataModel::Single, 0, vec![single(2, "b")])],
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)));
    assert_eq!(s.record(&r, KindId(1)).unwrap().generation, 1);
    assert_eq!(
        fetched(
            &s,
            NOW,
            &r,
            &spec(1, 0, ModelSpecifier::Single),
            DataModel::Single
        )[0],
        single(1, "a")
    );
    backend.set_failure(None);
}

#[test]
fn replica_stores_take_the_given_counter_and_refuse_zero() {
    let (mut s, _) = engine();
    let r = rid(1);
    let out = s
        .store(
            NOW,
            &r,
            StoreMode::Replica,
            vec![kind(1, DataModel::Single, 7, vec![single(1, "a")])],
        )
        .unwrap();
    assert_eq!(out[0].generation, 7);
    let e = s
        .store(
            NOW,
            &r,
            StoreMode::Replica,
            vec![kind(1, DataModel::Single, 0, vec![single(2, "a")])],
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)));
    // Merge keeps the newer of each value and never fails for age.
    let out = s
        .store(
            NOW,
            &r,
            StoreMode::Merge,
            vec![kind(1, DataModel::Single, 3, vec![single(0, "old")])],
        )
        .unwrap();
    assert_eq!(out[0].generation, 7);
    assert!(!out[0].changed);
}

#[test]
fn per_owner_and_peer_limits() {
    let backend = MemoryBackend::new();
    let limits = StorageLimits {
        max_values: 3,
        max_bytes: 1 << 20,
        max_bytes_per_owner: 200,
    };
    let (mut s, _) = Storage::open(Box::new(backend), limits, 16, NOW).unwrap();
    let r = rid(1);
    let mut k = kind(
        4,
        DataModel::Dictionary,
        0,
        vec![entry(1, "a", &"x".repeat(90))],
    );
    s.store(NOW, &r, StoreMode::Original, vec![k.clone()])
        .unwrap();
    k.values = vec![by("alice@x", entry(1, "b", &"x".repeat(90)))];
    let e = s
        .store(NOW, &r, StoreMode::Original, vec![k.clone()])
        .unwrap_err();
    assert!(
        matches!(e, StoreError::TooLarge(ref m) if m.contains("alice@x")),
        "{e:?}"
    );
    // Someone else still fits, up to the peer's value count.
    k.values = vec![by("bob@x", entry(1, "b", "y"))];
    s.store(NOW, &r, StoreMode::Original, vec![k.clone()])
        .unwrap();
    k.values = vec![by("bob@x", entry(1, "c", "y"))];
    s.store(NOW, &r, StoreMode::Original, vec![k.clone()])
        .unwrap();
    k.values = vec![by("bob@x", entry(1, "d", "y"))];
    let e = s.store(NOW, &r, StoreMode::Original, vec![k]).unwrap_err();
    assert!(matches!(e, StoreError::TooLarge(_)));
    assert_eq!(s.len(), 3);
}

#[test]
fn find_goes_clockwise_and_wraps() {
    // §7.4.4: the closest Resource-ID holding the Kind.
    let (mut s, _) = engine();
    for n in [10u8, 20, 30] {
        s.store(
            NOW,
            &rid(n),
            StoreMode::Original,
            vec![kind(2, DataModel::Single, 0, vec![single(1, "t")])],
        )
        .unwrap();
    }
    let all = |_: &ResourceId| true;
    assert_eq!(s.find(NOW, KindId(2), &rid(15), &all), Some(rid(20)));
    assert_eq!(s.find(NOW, KindId(2), &rid(20), &all), Some(rid(20)));
    assert_eq!(s.find(NOW, KindId(2), &rid(31), &all), Some(rid(10)));
    assert_eq!(s.find(NOW, KindId(9), &rid(1), &all), None);
    let not_20 = |r: &ResourceId| *r != rid(20);
    assert_eq!(s.find(NOW, KindId(2), &rid(15), &not_20), Some(rid(30)));
}

#[test]
fn stat_reports_lengths_and_hashes() {
    let (mut s, _) = engine();
    let r = rid(1);
    s.store(
        NOW,
        &r,
        StoreMode::Original,
        vec![kind(1, DataModel::Single, 0, vec![single(5, "hello")])],
    )
    .unwrap();
    let a = s
        .stat(
            NOW,
            &r,
            &spec(1, 0, ModelSpecifier::Single),
            DataModel::Single,
        )
        .unwrap();
    let m = &a.values.as_slice()[0];
    assert_eq!(m.storage_time, 5);
    let MetaDataValue::Single(meta) = &m.metadata else {
        panic!()
    };
    assert!(meta.exists);
    assert_eq!(meta.value_length, 5);
    assert_eq!(meta.hash_algorithm, HashAlgorithm::SHA256);
    assert_eq!(
        meta.hash_value.as_ref(),
        Sha256::digest(stat_hash_input(b"hello")).as_slice()
    );
    assert_eq!(
        m.value_length as usize,
        single(5, "hello").encoded_len() - 4
    );
}

#[test]
fn export_gives_remaining_lifetimes_and_remove_resource_forgets() {
    let (mut s, backend) = engine();
    let r = rid(1);
    s.store(
        NOW,
        &r,
        StoreMode::Original,
        vec![kind(1, DataModel::Single, 0, vec![single(5, "a")])],
    )
    .unwrap();
    let ex = s.export(NOW + 10_000, &r);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].values[0].lifetime, 50);
    assert_eq!(ex[0].generation, 1);
    assert_eq!(s.resources(), vec![r.clone()]);
    assert_eq!(s.remove_resource(&r).unwrap(), 1);
    assert!(s.is_empty());
    assert!(backend.is_empty());
    let _ = NodeId::from_u128(1);
}

#[test]
fn reopening_keeps_values_and_drops_expired_ones() {
    // Persistence: what the backend holds comes back; what expired meanwhile does not.
    let backend = MemoryBackend::new();
    let (mut s, _) =
        Storage::open(Box::new(backend.clone()), StorageLimits::default(), 16, NOW).unwrap();
    let r = rid(1);
    s.store(
        NOW,
        &r,
        StoreMode::Original,
        vec![kind(1, DataModel::Single, 0, vec![single(5, "a")])],
    )
    .unwrap();
    assert_eq!(backend.len(), 1);
    // Placeholder certificates do not parse: a reload drops those values as unreadable.
    let (s2, report) =
        Storage::open(Box::new(backend.clone()), StorageLimits::default(), 16, NOW).unwrap();
    assert_eq!(report.unreadable, 1);
    assert!(s2.is_empty());
    assert!(backend.is_empty());
}
