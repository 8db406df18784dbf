//! The values a peer stores for the overlay (RFC 6940 §7), on disk: a SQLite database,
//! `storage.sqlite3` in the peer's data directory, behind the storage engine's
//! [`Backend`] seam (the engine keeps everything in memory and writes every change here
//! before the Store that made it is answered).
//!
//! Schema (version [`SCHEMA_VERSION`], in `PRAGMA user_version`):
//!
//! | table | columns | what |
//! |---|---|---|
//! | `entries` | resource, kind, key_type, key, data, expires_ms, cert_hash | one stored value: the Resource-ID, the Kind-ID, where it sits in its data model (`key_type` 0 single, 1 array index — `key` the 4-byte big-endian index —, 2 dictionary key), the encoded `StoredData` (§7) as received, when it expires (ms since the Unix epoch), the SHA-256 of its signer's certificate |
//! | `certificates` | hash, der | a signer's DER certificate, shared by every value it signed; removed with the last of them (§8: a peer keeps the certificates that verify what it holds) |
//! | `generations` | resource, kind, generation | the generation counter of a Kind at a Resource-ID (§7.4.1.1) |
//!
//! Every [`Backend::commit`] is one SQLite transaction: all of it is applied or none, and it
//! returns only once committed. The database runs in WAL mode with `synchronous = FULL`:
//! the write-ahead log is synced to disk at every commit, so a Store that was answered
//! survives `kill -9` and a power failure alike (spec-notes/decisions.md, "Storage on
//! disk").
//!
//! Nothing read from the file is trusted: a row that does not decode is skipped (and
//! reported by [`SqliteBackend::skipped`]), never a panic; the engine checks certificates
//! again when it loads them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use reload_proto::storage::{Backend, BackendError, Change, EntryKey, PersistedEntry, Snapshot};
use reload_wire::codec::decode_all;
use reload_wire::storage::{DataModel, KindId, StoredData};
use reload_wire::{DecodeOptions, ResourceId, Wire};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};
use sha2::{Digest, Sha256};

/// The database's file name in the data directory.
pub const STORAGE_FILE: &str = "storage.sqlite3";

/// The schema this code reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// Largest encoded value read back (a Kind's max-size is bounded far below this; a row
/// larger than it is not a value this peer wrote).
const MAX_ROW_BYTES: usize = 64 << 20;

const SCHEMA: &str = "
CREATE TABLE certificates (
    hash BLOB PRIMARY KEY NOT NULL,
    der  BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE entries (
    resource   BLOB    NOT NULL,
    kind       INTEGER NOT NULL,
    key_type   INTEGER NOT NULL,
    key        BLOB    NOT NULL,
    data       BLOB    NOT NULL,
    expires_ms INTEGER NOT NULL,
    cert_hash  BLOB    NOT NULL REFERENCES certificates (hash),
    PRIMARY KEY (resource, kind, key_type, key)
) WITHOUT ROWID;
CREATE INDEX entries_by_cert ON entries (cert_hash);
CREATE TABLE generations (
    resource   BLOB    NOT NULL,
    kind       INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (resource, kind)
) WITHOUT ROWID;
";

/// The storage backend of a running peer (see the module documentation).
#[derive(Debug)]
pub struct SqliteBackend {
    conn: Connection,
    path: PathBuf,
    node_id_len: usize,
    skipped: usize,
}

/// `(key_type, key)` of an entry key.
fn key_columns(key: &EntryKey) -> (i64, Vec<u8>) {
    match key {
        EntryKey::Single => (0, Vec::new()),
        EntryKey::Index(i) => (1, i.to_be_bytes().to_vec()),
        EntryKey::Key(k) => (2, k.to_vec()),
    }
}

/// The entry key and data model of `(key_type, key)`, if they make sense.
fn key_of(key_type: i64, key: &[u8]) -> Option<(EntryKey, DataModel)> {
    match key_type {
        0 if key.is_empty() => Some((EntryKey::Single, DataModel::Single)),
        1 => {
            let b: [u8; 4] = key.try_into().ok()?;
            Some((EntryKey::Index(u32::from_be_bytes(b)), DataModel::Array))
        }
        2 => Some((
            EntryKey::Key(Bytes::copy_from_slice(key)),
            DataModel::Dictionary,
        )),
        _ => None,
    }
}

impl SqliteBackend {
    /// Opens (creating it, mode 0600, if it does not exist) the database `dir/storage.sqlite3`
    /// of a peer whose overlay uses `node_id_len`-byte Node-IDs.
    pub fn open_in(dir: &Path, node_id_len: usize) -> Result<SqliteBackend, BackendError> {
        SqliteBackend::open(&dir.join(STORAGE_FILE), node_id_len)
    }

    /// Opens (creating it, mode 0600, if it does not exist) the database at `path`.
    pub fn open(path: &Path, node_id_len: usize) -> Result<SqliteBackend, BackendError> {
        let shown = path.display().to_string();
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            BackendError(format!("storage database {shown}: {what}: {e}"))
        };
        // Created owner-only before SQLite opens it (its -wal and -shm files take the same
        // mode).
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| fail("cannot open or create it", &e))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| fail("cannot open", &e))?;
        let configure = || -> rusqlite::Result<String> {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            Ok(mode)
        };
        let mode = configure().map_err(|e| fail("not a usable SQLite database", &e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(BackendError(format!(
                "storage database {shown}: cannot switch it to WAL mode (journal mode {mode})"
            )));
        }
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| fail("not a usable SQLite database", &e))?;
        match version {
            0 => {
                // New (or empty): create the schema, unless something else lives there.
                let tables: i64 = conn
                    .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                    .map_err(|e| fail("cannot read its schema", &e))?;
                if tables != 0 {
                    return Err(BackendError(format!(
                        "storage database {shown}: it holds tables but no schema version; it \
                         was not made by reload-node (move it away to start with empty storage)"
                    )));
                }
                let tx = conn
                    .unchecked_transaction()
                    .map_err(|e| fail("cannot create the schema", &e))?;
                tx.execute_batch(SCHEMA)
                    .and_then(|()| tx.pragma_update(None, "user_version", SCHEMA_VERSION))
                    .and_then(|()| tx.commit())
                    .map_err(|e| fail("cannot create the schema", &e))?;
            }
            SCHEMA_VERSION => {}
            v if v > SCHEMA_VERSION => {
                return Err(BackendError(format!(
                    "storage database {shown}: schema version {v} was written by a newer \
                     reload-node (this one reads version {SCHEMA_VERSION})"
                )));
            }
            v => {
                return Err(BackendError(format!(
                    "storage database {shown}: unknown schema version {v} (this reload-node \
                     reads version {SCHEMA_VERSION})"
                )));
            }
        }
        Ok(SqliteBackend {
            conn,
            path: path.to_path_buf(),
            node_id_len,
            skipped: 0,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows the last [`Backend::load`] could not read (and left alone).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    fn error(&self, what: &str, e: rusqlite::Error) -> BackendError {
        BackendError(format!(
            "storage database {}: {what}: {e}",
            self.path.display()
        ))
    }

    fn apply(&self, changes: &[Change]) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        // Certificates whose last value may have gone.
        let mut touched: BTreeSet<Vec<u8>> = BTreeSet::new();
        for c in changes {
            match c {
                Change::Put(e) => {
                    let hash: [u8; 32] = Sha256::digest(&e.cert).into();
                    let (key_type, key) = key_columns(&e.key);
                    let encoded = e
                        .data
                        .to_bytes()
                        .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
                    let old: Option<Vec<u8>> = tx
                        .prepare_cached(
                            "SELECT cert_hash FROM entries WHERE resource = ?1 AND kind = ?2 \
                             AND key_type = ?3 AND key = ?4",
                        )?
                        .query_row(
                            params![e.resource.as_bytes(), e.kind.0, key_type, key],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if let Some(old) = old
                        && old != hash
                    {
                        touched.insert(old);
                    }
                    tx.prepare_cached(
                        "INSERT INTO certificates (hash, der) VALUES (?1, ?2) \
                         ON CONFLICT (hash) DO NOTHING",
                    )?
                    .execute(params![&hash[..], &e.cert[..]])?;
                    tx.prepare_cached(
                        "INSERT INTO entries (resource, kind, key_type, key, data, expires_ms, \
                         cert_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                         ON CONFLICT (resource, kind, key_type, key) DO UPDATE SET \
                         data = excluded.data, expires_ms = excluded.expires_ms, \
                         cert_hash = excluded.cert_hash",
                    )?
                    .execute(params![
                        e.resource.as_bytes(),
                        e.kind.0,
                        key_type,
                        key,
                        &encoded[..],
                        e.expires_ms as i64,
                        &hash[..]
                    ])?;
                }
                Change::Remove {
                    resource,
                    kind,
                    key,
                } => {
                    let (key_type, key) = key_columns(key);
                    let mut st = tx.prepare_cached(
                        "DELETE FROM entries WHERE resource = ?1 AND kind = ?2 AND key_type = ?3 \
                         AND key = ?4 RETURNING cert_hash",
                    )?;
                    let gone = st
                        .query_map(params![resource.as_bytes(), kind.0, key_type, key], |r| {
                            r.get::<_, Vec<u8>>(0)
                        })?;
                    for h in gone {
                        touched.insert(h?);
                    }
                }
                Change::Generation {
                    resource,
                    kind,
                    generation,
                } => {
                    tx.prepare_cached(
                        "INSERT INTO generations (resource, kind, generation) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (resource, kind) DO UPDATE SET generation = excluded.generation",
                    )?
                    .execute(params![resource.as_bytes(), kind.0, *generation as i64])?;
                }
                Change::Drop { resource, kind } => {
                    tx.prepare_cached("DELETE FROM generations WHERE resource = ?1 AND kind = ?2")?
                        .execute(params![resource.as_bytes(), kind.0])?;
                    let mut st = tx.prepare_cached(
                        "DELETE FROM entries WHERE resource = ?1 AND kind = ?2 RETURNING cert_hash",
                    )?;
                    let gone = st.query_map(params![resource.as_bytes(), kind.0], |r| {
                        r.get::<_, Vec<u8>>(0)
                    })?;
                    for h in gone {
                        touched.insert(h?);
                    }
                }
            }
        }
        for h in touched {
            tx.prepare_cached(
                "DELETE FROM certificates WHERE hash = ?1 AND NOT EXISTS \
                 (SELECT 1 FROM entries WHERE cert_hash = ?1)",
            )?
            .execute(params![h])?;
        }
        tx.commit()
    }

    /// Certificates held (for tests and diagnostics).
    pub fn certificate_count(&self) -> Result<usize, BackendError> {
        self.conn
            .query_row("SELECT count(*) FROM certificates", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as usize)
            .map_err(|e| self.error("cannot count certificates", e))
    }
}

impl Backend for SqliteBackend {
    fn load(&mut self) -> Result<Snapshot, BackendError> {
        let opts = DecodeOptions::new(self.node_id_len, MAX_ROW_BYTES)
            .unwrap_or_default()
            .with_max_message_size(MAX_ROW_BYTES);
        let mut snapshot = Snapshot::default();
        let mut skipped = 0usize;
        {
            let mut st = self
                .conn
                .prepare(
                    "SELECT e.resource, e.kind, e.key_type, e.key, e.data, e.expires_ms, c.der \
                     FROM entries e JOIN certificates c ON c.hash = e.cert_hash",
                )
                .map_err(|e| self.error("cannot read the stored values", e))?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, Vec<u8>>(6)?,
                    ))
                })
                .map_err(|e| self.error("cannot read the stored values", e))?;
            for row in rows {
                let (resource, kind, key_type, key, data, expires_ms, der) =
                    row.map_err(|e| self.error("cannot read the stored values", e))?;
                let entry = (|| {
                    let kind = u32::try_from(kind).ok()?;
                    let (key, model) = key_of(key_type, &key)?;
                    if data.len() > MAX_ROW_BYTES || resource.len() > 255 {
                        return None;
                    }
                    let data = Bytes::from(data);
                    let decoded =
                        decode_all(&data, &opts, |cx, i| StoredData::decode_model(cx, model, i))
                            .ok()?;
                    if EntryKey::of(&decoded.value) != key {
                        return None;
                    }
                    Some(PersistedEntry {
                        resource: ResourceId::new(Bytes::from(resource)),
                        kind: KindId(kind),
                        key,
                        data: decoded,
                        expires_ms: expires_ms.max(0) as u64,
                        cert: Bytes::from(der),
                    })
                })();
                match entry {
                    Some(e) => snapshot.entries.push(e),
                    None => skipped += 1,
                }
            }
            let mut st = self
                .conn
                .prepare("SELECT resource, kind, generation FROM generations")
                .map_err(|e| self.error("cannot read the generation counters", e))?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(|e| self.error("cannot read the generation counters", e))?;
            for row in rows {
                let (resource, kind, generation) =
                    row.map_err(|e| self.error("cannot read the generation counters", e))?;
                match u32::try_from(kind) {
                    Ok(kind) if resource.len() <= 255 => snapshot.generations.push((
                        ResourceId::new(Bytes::from(resource)),
                        KindId(kind),
                        generation as u64,
                    )),
                    _ => skipped += 1,
                }
            }
        }
        self.skipped = skipped;
        if skipped > 0 {
            tracing::warn!(
                "storage database {}: {skipped} rows could not be read and were left alone",
                self.path.display()
            );
        }
        Ok(snapshot)
    }

    fn commit(&mut self, changes: &[Change]) -> Result<(), BackendError> {
        if changes.is_empty() {
            return Ok(());
        }
        // A failed statement drops the transaction unfinished, which rolls it back.
        self.apply(changes)
            .map_err(|e| self.error("cannot write (nothing of this change was stored)", e))
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }
}
