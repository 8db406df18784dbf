//! The SQLite storage backend (`reload_node::store_db`): every change round-trips through
//! the file, a commit is all or nothing, a reopened database holds what was committed
//! (and the engine drops what expired meanwhile), certificates are shared and removed with
//! their last value, and a file that is not ours is refused with its name in the error.

#[path = "../proto/tests/pki/mod.rs"]
mod pki;

use std::path::PathBuf;

use bytes::Bytes;
use reload_node::store_db::{STORAGE_FILE, SqliteBackend};
use reload_proto::storage::{
    Backend, Change, EntryKey, PersistedEntry, Snapshot, Storage, StorageLimits,
};
use reload_wire::storage::{
    ArrayEntry, DataValue, DictionaryEntry, KindId, StoredData, StoredDataValue,
};
use reload_wire::{ResourceId, Signature};

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reload-store-db-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn resource(n: u8) -> ResourceId {
    ResourceId::new(Bytes::from(vec![n; 16]))
}

fn dv(s: &str) -> DataValue {
    DataValue {
        exists: true,
        value: Bytes::copy_from_slice(s.as_bytes()),
    }
}

fn data(value: StoredDataValue, t: u64) -> StoredData {
    StoredData {
        storage_time: t,
        lifetime: 60,
        value,
        signature: Signature::none(),
    }
}

fn put(r: u8, kind: u32, value: StoredDataValue, cert: &Bytes, expires_ms: u64) -> Change {
    Change::Put(Box::new(PersistedEntry {
        resource: resource(r),
        kind: KindId(kind),
        key: EntryKey::of(&value),
        data: data(value, 1000 + r as u64),
        expires_ms,
        cert: cert.clone(),
    }))
}

fn single(s: &str) -> StoredDataValue {
    StoredDataValue::Single(dv(s))
}

fn element(i: u32, s: &str) -> StoredDataValue {
    StoredDataValue::Array(ArrayEntry {
        index: i,
        value: dv(s),
    })
}

fn entry(k: &[u8], s: &str) -> StoredDataValue {
    StoredDataValue::Dictionary(DictionaryEntry {
        key: Bytes::copy_from_slice(k),
        value: dv(s),
    })
}

/// The snapshot in a fixed order.
fn sorted(mut s: Snapshot) -> Snapshot {
    s.entries
        .sort_by(|a, b| (&a.resource, a.kind, &a.key).cmp(&(&b.resource, b.kind, &b.key)));
    s.generations.sort();
    s
}

fn load(b: &mut SqliteBackend) -> Snapshot {
    sorted(b.load().unwrap())
}

#[test]
fn every_change_round_trips_and_certificates_go_with_their_last_value() {
    let dir = scratch("roundtrip");
    let mut b = SqliteBackend::open_in(&dir, 16).unwrap();
    assert!(b.describe().contains(STORAGE_FILE));
    assert_eq!(load(&mut b), Snapshot::default());
    let alice = Bytes::from_static(b"certificate of alice (the backend does not parse it)");
    let bob = Bytes::from_static(b"certificate of bob");
    let far = 4_000_000_000_000u64;
    // Every data model, two signers, generation counters.
    let changes = vec![
        put(1, 0xf000_0001, single("one"), &alice, far),
        put(1, 0xf000_0002, element(0, "a0"), &alice, far),
        put(1, 0xf000_0002, element(7, "a7"), &bob, far + 1),
        put(2, 0xf000_0003, entry(b"k1", "d1"), &bob, far + 2),
        put(
            2,
            0xf000_0003,
            entry(&[0, 255, 3], "binary key"),
            &alice,
            far,
        ),
        Change::Generation {
            resource: resource(1),
            kind: KindId(0xf000_0001),
            generation: 1,
        },
        Change::Generation {
            resource: resource(1),
            kind: KindId(0xf000_0002),
            generation: u64::MAX, // the whole range survives the INTEGER column
        },
        Change::Generation {
            resource: resource(2),
            kind: KindId(0xf000_0003),
            generation: 3,
        },
    ];
    b.commit(&changes).unwrap();
    let got = load(&mut b);
    let mut want = Snapshot::default();
    for c in &changes {
        match c {
            Change::Put(e) => want.entries.push((**e).clone()),
            Change::Generation {
                resource,
                kind,
                generation,
            } => want
                .generations
                .push((resource.clone(), *kind, *generation)),
            _ => {}
        }
    }
    assert_eq!(got, sorted(want.clone()));
    assert_eq!(b.certificate_count().unwrap(), 2, "one row per signer");

    // Put over an existing key replaces it (and its certificate reference).
    b.commit(&[put(1, 0xf000_0001, single("uno"), &bob, far + 9)])
        .unwrap();
    let got = load(&mut b);
    let e = got
        .entries
        .iter()
        .find(|e| e.kind == KindId(0xf000_0001))
        .unwrap();
    assert_eq!(e.data.value, single("uno"));
    assert_eq!((e.cert.clone(), e.expires_ms), (bob.clone(), far + 9));
    assert_eq!(got.entries.len(), 5);

    // Remove: alice's values go one by one; her certificate goes with the last.
    b.commit(&[Change::Remove {
        resource: resource(1),
        kind: KindId(0xf000_0002),
        key: EntryKey::Index(0),
    }])
    .unwrap();
    assert_eq!(
        b.certificate_count().unwrap(),
        2,
        "alice still signs one value"
    );
    b.commit(&[Change::Remove {
        resource: resource(2),
        kind: KindId(0xf000_0003),
        key: EntryKey::Key(Bytes::from_static(&[0, 255, 3])),
    }])
    .unwrap();
    assert_eq!(
        b.certificate_count().unwrap(),
        1,
        "alice's certificate is gone"
    );
    // Removing what is not there is no error.
    b.commit(&[Change::Remove {
        resource: resource(9),
        kind: KindId(1),
        key: EntryKey::Single,
    }])
    .unwrap();

    // Drop: every value of the Kind at the Resource-ID and its counter, nothing else.
    b.commit(&[Change::Drop {
        resource: resource(1),
        kind: KindId(0xf000_0002),
    }])
    .unwrap();
    let got = load(&mut b);
    assert!(
        got.entries
            .iter()
            .all(|e| !(e.resource == resource(1) && e.kind == KindId(0xf000_0002)))
    );
    assert_eq!(got.entries.len(), 2);
    assert_eq!(
        got.generations,
        vec![
            (resource(1), KindId(0xf000_0001), 1),
            (resource(2), KindId(0xf000_0003), 3)
        ]
    );
    b.commit(&[
        Change::Drop {
            resource: resource(1),
            kind: KindId(0xf000_0001),
        },
        Change::Drop {
            resource: resource(2),
            kind: KindId(0xf000_0003),
        },
    ])
    .unwrap();
    assert_eq!(load(&mut b), Snapshot::default());
    assert_eq!(b.certificate_count().unwrap(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_commit_leaves_nothing() {
    let dir = scratch("atomic");
    let mut b = SqliteBackend::open_in(&dir, 16).unwrap();
    let cert = Bytes::from_static(b"a certificate");
    b.commit(&[
        put(1, 0xf000_0001, single("before"), &cert, 4_000_000_000_000),
        Change::Generation {
            resource: resource(1),
            kind: KindId(0xf000_0001),
            generation: 1,
        },
    ])
    .unwrap();
    let before = load(&mut b);
    // A dictionary key longer than its 16-bit length prefix cannot be encoded: the commit
    // fails at its last change, after the others were written inside the transaction.
    let huge_key = vec![b'k'; 70_000];
    let other = Bytes::from_static(b"another certificate");
    let err = b
        .commit(&[
            put(1, 0xf000_0001, single("after"), &other, 4_000_000_000_000),
            Change::Generation {
                resource: resource(1),
                kind: KindId(0xf000_0001),
                generation: 2,
            },
            Change::Remove {
                resource: resource(1),
                kind: KindId(0xf000_0001),
                key: EntryKey::Single,
            },
            put(3, 0xf000_0003, entry(b"ok", "x"), &other, 4_000_000_000_000),
            put(
                3,
                0xf000_0003,
                entry(&huge_key, "x"),
                &other,
                4_000_000_000_000,
            ),
        ])
        .unwrap_err();
    assert!(
        err.0
            .contains(&dir.join(STORAGE_FILE).display().to_string()),
        "the error names the file: {err}"
    );
    assert_eq!(load(&mut b), before, "nothing of the failed commit stayed");
    assert_eq!(b.certificate_count().unwrap(), 1);
    // The backend still works afterwards.
    b.commit(&[put(
        1,
        0xf000_0001,
        single("later"),
        &cert,
        4_000_000_000_000,
    )])
    .unwrap();
    assert_eq!(load(&mut b).entries[0].data.value, single("later"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reopened_database_holds_what_was_committed_and_expired_values_are_dropped() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = scratch("reopen");
    let ca = pki::TestCa::new(false);
    let alice = ca.node(false, 0xa11c_e000, "alice");
    let der = alice.cert.der().clone();
    let now_ms = 1_900_000_000_000u64;
    {
        let mut b = SqliteBackend::open_in(&dir, 16).unwrap();
        b.commit(&[
            put(1, 0xf000_0001, single("lives"), &der, now_ms + 3_600_000),
            put(
                1,
                0xf000_0002,
                element(0, "lives too"),
                &der,
                now_ms + 60_000,
            ),
            put(2, 0xf000_0003, entry(b"k", "expired"), &der, now_ms - 1),
            put(
                3,
                0xf000_0001,
                single("bad certificate"),
                &Bytes::from_static(b"junk"),
                now_ms + 60_000,
            ),
            Change::Generation {
                resource: resource(1),
                kind: KindId(0xf000_0001),
                generation: 4,
            },
            Change::Generation {
                resource: resource(2),
                kind: KindId(0xf000_0003),
                generation: 2,
            },
        ])
        .unwrap();
    }
    let mode = std::fs::metadata(dir.join(STORAGE_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "owner-only");
    // Reopened as a peer does: through the engine.
    let b = SqliteBackend::open_in(&dir, 16).unwrap();
    let (storage, report) =
        Storage::open(Box::new(b), StorageLimits::default(), 16, now_ms).unwrap();
    assert_eq!(
        (report.values, report.expired, report.unreadable),
        (2, 1, 1),
        "{report:?}"
    );
    assert_eq!(storage.len(), 2);
    assert_eq!(
        storage
            .record(&resource(1), KindId(0xf000_0001))
            .unwrap()
            .generation,
        4
    );
    drop(storage);
    // What the engine removed at start is gone from the file too (the expired value, the
    // unreadable one, and the counter of the Kind left empty).
    let mut b = SqliteBackend::open_in(&dir, 16).unwrap();
    let s = load(&mut b);
    assert_eq!(s.entries.len(), 2);
    assert!(s.entries.iter().all(|e| e.cert == der));
    assert_eq!(s.generations, vec![(resource(1), KindId(0xf000_0001), 4)]);
    assert_eq!(b.certificate_count().unwrap(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_that_are_not_our_database_are_refused_by_name() {
    let dir = scratch("refused");
    let path = dir.join(STORAGE_FILE);
    let shown = path.display().to_string();

    std::fs::write(
        &path,
        b"this is not a database, just some text that is long enough",
    )
    .unwrap();
    let e = SqliteBackend::open(&path, 16).unwrap_err().0;
    assert!(e.contains(&shown), "{e}");

    std::fs::remove_file(&path).unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let e = SqliteBackend::open(&path, 16).unwrap_err().0;
    assert!(e.contains(&shown) && e.contains("newer"), "{e}");

    std::fs::remove_file(&path).unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE other (x)").unwrap();
    }
    let e = SqliteBackend::open(&path, 16).unwrap_err().0;
    assert!(
        e.contains(&shown) && e.contains("not made by reload-node"),
        "{e}"
    );

    let e = SqliteBackend::open(&dir.join("missing-dir").join(STORAGE_FILE), 16)
        .unwrap_err()
        .0;
    assert!(e.contains("missing-dir"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rows damaged on disk are skipped, never a panic; the rest loads.
#[test]
fn damaged_rows_are_skipped() {
    let dir = scratch("damaged");
    let cert = Bytes::from_static(b"cert");
    {
        let mut b = SqliteBackend::open_in(&dir, 16).unwrap();
        b.commit(&[
            put(1, 0xf000_0001, single("good"), &cert, 4_000_000_000_000),
            put(
                2,
                0xf000_0001,
                single("to damage"),
                &cert,
                4_000_000_000_000,
            ),
            put(
                3,
                0xf000_0002,
                element(3, "wrong key"),
                &cert,
                4_000_000_000_000,
            ),
        ])
        .unwrap();
    }
    {
        let c = rusqlite::Connection::open(dir.join(STORAGE_FILE)).unwrap();
        c.execute(
            "UPDATE entries SET data = x'00000003010203' WHERE resource = ?1",
            [resource(2).as_bytes()],
        )
        .unwrap();
        c.execute(
            "UPDATE entries SET key = x'00000004' WHERE resource = ?1",
            [resource(3).as_bytes()],
        )
        .unwrap();
        c.execute(
            "INSERT INTO entries VALUES (x'01', 5, 9, x'', x'', 0, ?1)",
            [&sha2_of(&cert)[..]],
        )
        .unwrap();
    }
    let mut b = SqliteBackend::open_in(&dir, 16).unwrap();
    let s = load(&mut b);
    assert_eq!(s.entries.len(), 1);
    assert_eq!(s.entries[0].data.value, single("good"));
    assert_eq!(b.skipped(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

fn sha2_of(b: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).to_vec()
}
