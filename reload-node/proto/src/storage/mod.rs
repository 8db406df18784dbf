//! The storage engine (RFC 6940 §7): the values a peer holds, by Resource-ID and Kind, in
//! the three data models of §7.2, with the rules of Store (§7.4.1.1: generation counters,
//! storage-time ordering, limits, atomicity), Fetch (§7.4.2), Stat (§7.4.3) and Find
//! (§7.4.4), lifetimes and expiry (§7.4.1.3), and the export of what it holds for
//! replication (§10.4, §10.7.3).
//!
//! The engine trusts its input: signatures, access control (see [`policy`]) and who may
//! send a replica are checked by the node core before a value gets here. It never reads a
//! clock — every call takes the wall time in milliseconds — and it writes every change
//! through its [`Backend`] before reporting success.
//!
//! Memory and disk are bounded by [`StorageLimits`]: values and bytes in all, and bytes per
//! owner (the user name of the signer's certificate, else its Node-ID), so that one user
//! cannot fill a peer.

pub mod backend;
pub mod policy;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use bytes::{BufMut, Bytes, BytesMut};
use reload_wire::security::HashAlgorithm;
use reload_wire::storage::{
    ArrayEntry, DataModel, DataValue, DictionaryEntry, FetchKindResponse, KindId, KindValues,
    MetaData, MetaDataValue, ModelSpecifier, StatKindResponse, StoredData, StoredDataSpecifier,
    StoredDataValue, StoredMetaData,
};
use reload_wire::{ResourceId, Signature, Wire};
use sha2::{Digest, Sha256};

use crate::identity::ReloadCertificate;

pub use backend::{Backend, BackendError, Change, MemoryBackend, PersistedEntry, Snapshot};

/// Where a value sits in its Kind's data model: the single value, an array index, or a
/// dictionary key (§7.2).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKey {
    Single,
    Index(u32),
    Key(Bytes),
}

impl EntryKey {
    /// The key of a value as stored (an array append, index 0xffffffff, is resolved by
    /// the engine).
    pub fn of(value: &StoredDataValue) -> EntryKey {
        match value {
            StoredDataValue::Single(_) => EntryKey::Single,
            StoredDataValue::Array(e) => EntryKey::Index(e.index),
            StoredDataValue::Dictionary(e) => EntryKey::Key(e.key.clone()),
        }
    }
}

/// The array index that means "at the end" in a Store (§7.4.1.1) and "the last element"
/// in a Fetch (§7.4.2.1).
pub const ARRAY_END: u32 = 0xffff_ffff;

/// Values synthesized for array gaps in one Fetch or Stat answer, at most: a sparse array
/// with one value at index 10^9 must not make us build a billion empty values (§7.2.2).
pub const MAX_SYNTHESIZED: usize = 1024;

/// This node's own storage limits (the configuration's `max-count` and `max-size` bound
/// each Kind at each Resource-ID; these bound the peer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageLimits {
    /// Values held, in all.
    pub max_values: usize,
    /// Bytes held (encoded StoredData), in all.
    pub max_bytes: u64,
    /// Bytes held for one owner.
    pub max_bytes_per_owner: u64,
}

impl Default for StorageLimits {
    fn default() -> Self {
        StorageLimits {
            max_values: 1_000_000,
            max_bytes: 256 << 20,
            max_bytes_per_owner: 16 << 20,
        }
    }
}

/// A signer's certificate, shared by the values it signed.
#[derive(Debug)]
pub struct StoredCert {
    pub hash: [u8; 32],
    pub der: Bytes,
    /// Whose quota its values count against.
    pub owner: Arc<str>,
}

/// One stored value.
#[derive(Clone, Debug)]
pub struct Entry {
    pub data: StoredData,
    pub expires_ms: u64,
    pub cert: Arc<StoredCert>,
    size: u64,
}

impl Entry {
    /// Whole seconds left before it expires (0 once expired).
    pub fn remaining_secs(&self, now_ms: u64) -> u32 {
        (self.expires_ms.saturating_sub(now_ms) / 1000).min(u32::MAX as u64) as u32
    }

    fn live(&self, now_ms: u64) -> bool {
        self.expires_ms > now_ms
    }
}

/// The values of one Kind at one Resource-ID.
#[derive(Clone, Debug)]
pub struct Record {
    pub model: DataModel,
    /// §7.4.1.1: ≥ 1 once anything was stored.
    pub generation: u64,
    pub entries: BTreeMap<EntryKey, Entry>,
}

impl Record {
    /// The length of the array: one past the largest index held (§7.2.2).
    fn array_len(&self) -> u64 {
        self.entries
            .keys()
            .rev()
            .find_map(|k| match k {
                EntryKey::Index(i) => Some(*i as u64 + 1),
                _ => None,
            })
            .unwrap_or(0)
    }
}

/// Whether two versions of a value are the same signed value. The lifetime is left out:
/// it is not signed (§7.1), and a value copied to a replica or handed over carries what
/// is left of it (§7.4.1.1), less than the copy held already.
fn same_value(a: &StoredData, b: &StoredData) -> bool {
    a.storage_time == b.storage_time && a.value == b.value && a.signature == b.signature
}

/// How a Store is applied (§7.4.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// `replica_number` 0: a non-zero generation counter must match; a change increases
    /// the counter.
    Original,
    /// A replica or a handover from the previous responsible peer: the counter is set to
    /// the one given (never 0) and not checked.
    Replica,
    /// Newer data fetched after our replica Store was refused (§7.4.1.1, partition
    /// merge): each value replaces ours only if its storage time is later; nothing fails
    /// for being old.
    Merge,
}

/// A value to store, checked by the core: signature verified, writer authorized.
#[derive(Clone, Debug)]
pub struct SignedValue {
    pub data: StoredData,
    /// The signer's DER certificate.
    pub cert: Bytes,
    /// Whose quota it counts against (the signer's user name, else its Node-ID).
    pub owner: String,
}

/// The values of one Kind in a Store.
#[derive(Clone, Debug)]
pub struct KindInput {
    pub kind: KindId,
    pub model: DataModel,
    /// `generation_counter` of the StoreKindData.
    pub generation: u64,
    /// The Kind's `max-count` and `max-size` (§11.1).
    pub max_count: u32,
    pub max_size: u32,
    pub values: Vec<SignedValue>,
}

/// Why a Store failed; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// Error_Generation_Counter_Too_Low, with the current counter of every Kind of the
    /// request (the StoreAns of the error_info, §7.4.1.2).
    GenerationTooLow(Vec<(KindId, u64)>),
    /// Error_Data_Too_Old (§7).
    DataTooOld(String),
    /// Error_Data_Too_Large (§7.4.1.2): the Kind's limits, or this peer's.
    TooLarge(String),
    /// Error_Invalid_Message.
    Invalid(String),
    /// The backend failed: nothing stored (answered Error_Request_Timeout, "try again
    /// later"; spec-notes/decisions.md).
    Unavailable(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::GenerationTooLow(g) => {
                write!(f, "generation counter mismatch (current: {g:?})")
            }
            StoreError::DataTooOld(s)
            | StoreError::TooLarge(s)
            | StoreError::Invalid(s)
            | StoreError::Unavailable(s) => f.write_str(s),
        }
    }
}

/// What a successful Store did to one Kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub kind: KindId,
    pub generation: u64,
    /// Whether any value changed (an identical re-store changes nothing).
    pub changed: bool,
}

/// The values of one Kind at a Resource-ID, for a replica Store (§10.4): lifetimes are
/// what is left of them (§7.4.1.1).
#[derive(Clone, Debug)]
pub struct Export {
    pub kind: KindId,
    pub model: DataModel,
    pub generation: u64,
    pub values: Vec<StoredData>,
    pub certs: Vec<Arc<StoredCert>>,
}

/// What [`Storage::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub values: usize,
    /// Values that expired while the node was down, removed.
    pub expired: usize,
    /// Values whose certificate no longer parses, removed.
    pub unreadable: usize,
}

type RecordKey = (ResourceId, KindId);
type ExpiryKey = (u64, ResourceId, KindId, EntryKey);

/// The storage engine. See the module documentation.
pub struct Storage {
    backend: Box<dyn Backend>,
    limits: StorageLimits,
    node_id_len: usize,
    records: BTreeMap<RecordKey, Record>,
    by_kind: BTreeSet<(KindId, ResourceId)>,
    expiry: BTreeSet<ExpiryKey>,
    certs: HashMap<[u8; 32], Weak<StoredCert>>,
    values: usize,
    bytes: u64,
    per_owner: HashMap<Arc<str>, u64>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.backend.describe())
            .field("values", &self.values)
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// The owner a certificate's values count against.
pub fn owner_of(cert: &ReloadCertificate) -> String {
    match (&cert.user_name, cert.node_ids.first()) {
        (Some(u), _) => u.clone(),
        (None, Some(n)) => n.to_hex(),
        (None, None) => "unknown".to_string(),
    }
}

fn encoded_size(d: &StoredData) -> u64 {
    d.encoded_len() as u64
}

/// The empty value of a data model, with `exists = false`, synthesized for what the node
/// does not hold (§7.4.2.2: storage time 0, lifetime 0, no signature).
fn synthetic(model: DataModel, key: &EntryKey) -> StoredData {
    let empty = DataValue {
        exists: false,
        value: Bytes::new(),
    };
    let value = match (model, key) {
        (DataModel::Array, EntryKey::Index(i)) => StoredDataValue::Array(ArrayEntry {
            index: *i,
            value: empty,
        }),
        (DataModel::Dictionary, EntryKey::Key(k)) => StoredDataValue::Dictionary(DictionaryEntry {
            key: k.clone(),
            value: empty,
        }),
        _ => StoredDataValue::Single(empty),
    };
    StoredData {
        storage_time: 0,
        lifetime: 0,
        value,
        signature: Signature::none(),
    }
}

fn data_value(v: &StoredDataValue) -> &DataValue {
    match v {
        StoredDataValue::Single(d) => d,
        StoredDataValue::Array(e) => &e.value,
        StoredDataValue::Dictionary(e) => &e.value,
    }
}

/// The metadata of a value (§7.4.3.2): its length and the SHA-256 of the `value` field
/// with its 4 length bytes.
fn metadata(d: &StoredData, lifetime: u32) -> StoredMetaData {
    let dv = data_value(&d.value);
    let meta = if d.signature.identity == reload_wire::SignerIdentity::None && !dv.exists {
        MetaData {
            exists: false,
            value_length: 0,
            hash_algorithm: HashAlgorithm::NONE,
            hash_value: Bytes::new(),
        }
    } else {
        let mut h = Sha256::new();
        h.update((dv.value.len() as u32).to_be_bytes());
        h.update(&dv.value);
        MetaData {
            exists: dv.exists,
            value_length: dv.value.len() as u32,
            hash_algorithm: HashAlgorithm::SHA256,
            hash_value: Bytes::copy_from_slice(&h.finalize()),
        }
    };
    let metadata = match &d.value {
        StoredDataValue::Single(_) => MetaDataValue::Single(meta),
        StoredDataValue::Array(e) => MetaDataValue::Array {
            index: e.index,
            value: meta,
        },
        StoredDataValue::Dictionary(e) => MetaDataValue::Dictionary {
            key: e.key.clone(),
            value: meta,
        },
    };
    StoredMetaData {
        // The StoredData's `length` field: its size without those 4 bytes.
        value_length: (d.encoded_len().saturating_sub(4)) as u32,
        storage_time: d.storage_time,
        lifetime,
        metadata,
    }
}

impl Storage {
    /// Opens the engine on `backend`: loads what it holds, and removes what expired or can
    /// no longer be read. `node_id_len` is the overlay's (to read certificates).
    pub fn open(
        mut backend: Box<dyn Backend>,
        limits: StorageLimits,
        node_id_len: usize,
        now_ms: u64,
    ) -> Result<(Storage, LoadReport), BackendError> {
        let snapshot = backend.load()?;
        let mut s = Storage {
            backend,
            limits,
            node_id_len,
            records: BTreeMap::new(),
            by_kind: BTreeSet::new(),
            expiry: BTreeSet::new(),
            certs: HashMap::new(),
            values: 0,
            bytes: 0,
            per_owner: HashMap::new(),
        };
        let mut report = LoadReport::default();
        let mut doomed = Vec::new();
        let generations: HashMap<RecordKey, u64> = snapshot
            .generations
            .into_iter()
            .map(|(r, k, g)| ((r, k), g))
            .collect();
        let mut parsed: HashMap<[u8; 32], Option<Arc<StoredCert>>> = HashMap::new();
        for e in snapshot.entries {
            let hash = crate::sign::sha256(&e.cert);
            let cert = parsed
                .entry(hash)
                .or_insert_with(|| s.intern_der(&e.cert).ok())
                .clone();
            let remove = Change::Remove {
                resource: e.resource.clone(),
                kind: e.kind,
                key: e.key.clone(),
            };
            let Some(cert) = cert else {
                report.unreadable += 1;
                doomed.push(remove);
                continue;
            };
            if e.expires_ms <= now_ms {
                report.expired += 1;
                doomed.push(remove);
                continue;
            }
            let model = match &e.data.value {
                StoredDataValue::Single(_) => DataModel::Single,
                StoredDataValue::Array(_) => DataModel::Array,
                StoredDataValue::Dictionary(_) => DataModel::Dictionary,
            };
            let rk = (e.resource.clone(), e.kind);
            let generation = generations.get(&rk).copied().unwrap_or(1).max(1);
            let entry = Entry {
                size: encoded_size(&e.data),
                data: e.data,
                expires_ms: e.expires_ms,
                cert,
            };
            s.insert_entry(rk, model, generation, e.key, entry);
            report.values += 1;
        }
        // Generation counters of Kinds with no value left.
        for (rk, _) in generations {
            if !s.records.contains_key(&rk) {
                doomed.push(Change::Drop {
                    resource: rk.0,
                    kind: rk.1,
                });
            }
        }
        if !doomed.is_empty() {
            s.backend.commit(&doomed)?;
        }
        Ok((s, report))
    }

    /// An engine with nothing stored, in memory only.
    pub fn in_memory(limits: StorageLimits, node_id_len: usize) -> Storage {
        let backend = Box::new(MemoryBackend::new());
        match Storage::open(backend, limits, node_id_len, 0) {
            Ok((s, _)) => s,
            Err(_) => unreachable!("an empty memory backend loads"),
        }
    }

    /// The backend, described.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    pub fn limits(&self) -> &StorageLimits {
        &self.limits
    }

    /// Values held (live or waiting for expiry).
    pub fn len(&self) -> usize {
        self.values
    }

    pub fn is_empty(&self) -> bool {
        self.values == 0
    }

    /// Bytes held (encoded StoredData).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The record of `kind` at `resource`.
    pub fn record(&self, resource: &ResourceId, kind: KindId) -> Option<&Record> {
        self.records.get(&(resource.clone(), kind))
    }

    /// The Resource-IDs held, in order.
    pub fn resources(&self) -> Vec<ResourceId> {
        let mut v: Vec<ResourceId> = Vec::new();
        for (r, _) in self.records.keys() {
            if v.last() != Some(r) {
                v.push(r.clone());
            }
        }
        v
    }

    /// The Kinds held, each once.
    pub fn kinds(&self) -> Vec<KindId> {
        let mut v: Vec<KindId> = Vec::new();
        for (k, _) in &self.by_kind {
            if v.last() != Some(k) {
                v.push(*k);
            }
        }
        v
    }

    /// The Kinds held at `resource`.
    pub fn kinds_at(&self, resource: &ResourceId) -> Vec<KindId> {
        self.records
            .range((resource.clone(), KindId(0))..)
            .take_while(|((r, _), _)| r == resource)
            .map(|((_, k), _)| *k)
            .collect()
    }

    fn intern_der(&mut self, der: &Bytes) -> Result<Arc<StoredCert>, String> {
        let hash = crate::sign::sha256(der);
        if let Some(c) = self.certs.get(&hash).and_then(Weak::upgrade) {
            return Ok(c);
        }
        let cert =
            ReloadCertificate::parse(der.clone(), self.node_id_len).map_err(|e| e.to_string())?;
        Ok(self.intern(hash, der.clone(), owner_of(&cert)))
    }

    fn intern(&mut self, hash: [u8; 32], der: Bytes, owner: String) -> Arc<StoredCert> {
        if let Some(c) = self.certs.get(&hash).and_then(Weak::upgrade) {
            return c;
        }
        if self.certs.len() >= 1024 && self.certs.len() >= 2 * self.values.max(1) {
            self.certs.retain(|_, w| w.strong_count() > 0);
        }
        let owner: Arc<str> = match self.per_owner.get_key_value(owner.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(owner.as_str()),
        };
        let c = Arc::new(StoredCert { hash, der, owner });
        self.certs.insert(hash, Arc::downgrade(&c));
        c
    }

    fn insert_entry(
        &mut self,
        rk: RecordKey,
        model: DataModel,
        generation: u64,
        key: EntryKey,
        entry: Entry,
    ) {
        self.values += 1;
        self.bytes += entry.size;
        *self.per_owner.entry(entry.cert.owner.clone()).or_default() += entry.size;
        self.expiry
            .insert((entry.expires_ms, rk.0.clone(), rk.1, key.clone()));
        self.by_kind.insert((rk.1, rk.0.clone()));
        let rec = self.records.entry(rk).or_insert_with(|| Record {
            model,
            generation,
            entries: BTreeMap::new(),
        });
        rec.generation = rec.generation.max(generation);
        if let Some(old) = rec.entries.insert(key, entry) {
            // Not reached: callers remove first. Keep the accounting right anyway.
            self.values -= 1;
            self.bytes -= old.size;
        }
    }

    fn remove_entry(&mut self, rk: &RecordKey, key: &EntryKey) -> Option<Entry> {
        let rec = self.records.get_mut(rk)?;
        let old = rec.entries.remove(key)?;
        self.values -= 1;
        self.bytes -= old.size;
        if let Some(b) = self.per_owner.get_mut(&old.cert.owner) {
            *b = b.saturating_sub(old.size);
            if *b == 0 {
                self.per_owner.remove(&old.cert.owner);
            }
        }
        self.expiry
            .remove(&(old.expires_ms, rk.0.clone(), rk.1, key.clone()));
        Some(old)
    }

    fn drop_if_empty(&mut self, rk: &RecordKey) -> bool {
        if self.records.get(rk).is_some_and(|r| r.entries.is_empty()) {
            self.records.remove(rk);
            self.by_kind.remove(&(rk.1, rk.0.clone()));
            true
        } else {
            false
        }
    }

    /// Stores values (§7.4.1.1) atomically: every Kind and value is checked first, the
    /// changes are committed to the backend, and only then applied in memory.
    pub fn store(
        &mut self,
        now_ms: u64,
        resource: &ResourceId,
        mode: StoreMode,
        kinds: Vec<KindInput>,
    ) -> Result<Vec<Stored>, StoreError> {
        // ---- checks (nothing changes) ----
        let mut seen = BTreeSet::new();
        let mut mismatch = false;
        for k in &kinds {
            if !seen.insert(k.kind) {
                return Err(StoreError::Invalid(format!(
                    "Kind {} appears twice in one Store (§7.4.1.1)",
                    k.kind
                )));
            }
            let current = self.record(resource, k.kind).map_or(0, |r| r.generation);
            match mode {
                StoreMode::Original => {
                    if k.generation != 0 && k.generation != current {
                        mismatch = true;
                    }
                }
                StoreMode::Replica | StoreMode::Merge => {
                    if k.generation == 0 {
                        return Err(StoreError::Invalid(
                            "a replica Store with generation counter 0 (§7.4.1.1)".to_string(),
                        ));
                    }
                }
            }
            if let Some(r) = self.record(resource, k.kind)
                && r.model != k.model
            {
                return Err(StoreError::Invalid(format!(
                    "Kind {} is held as {:?}, the Store says {:?}",
                    k.kind, r.model, k.model
                )));
            }
        }
        if mismatch {
            let current = kinds
                .iter()
                .map(|k| {
                    let g = self.record(resource, k.kind).map_or(0, |r| r.generation);
                    (k.kind, g)
                })
                .collect();
            return Err(StoreError::GenerationTooLow(current));
        }

        // Plan every Kind: the resulting entries, what changes.
        struct Planned {
            kind: KindId,
            model: DataModel,
            generation: u64,
            changed: bool,
            puts: Vec<(EntryKey, StoredData, Bytes, String, u64)>,
        }
        let mut plans: Vec<Planned> = Vec::with_capacity(kinds.len());
        let mut delta_bytes: i128 = 0;
        let mut delta_values: i64 = 0;
        let mut delta_owner: HashMap<String, i128> = HashMap::new();
        for k in kinds {
            let rk = (resource.clone(), k.kind);
            let rec = self.records.get(&rk);
            let current_gen = rec.map_or(0, |r| r.generation);
            // The keys and values after this Store (live ones only: an expired value is
            // as good as absent).
            let mut after: BTreeMap<EntryKey, (StoredData, u64)> = rec
                .map(|r| {
                    r.entries
                        .iter()
                        .filter(|(_, e)| e.live(now_ms))
                        .map(|(key, e)| (key.clone(), (e.data.clone(), e.expires_ms)))
                        .collect()
                })
                .unwrap_or_default();
            let mut next_index = rec.map_or(0, |r| r.array_len());
            let mut puts: Vec<(EntryKey, StoredData, Bytes, String, u64)> = Vec::new();
            for v in k.values {
                let mut data = v.data;
                let model_ok = matches!(
                    (&data.value, k.model),
                    (StoredDataValue::Single(_), DataModel::Single)
                        | (StoredDataValue::Array(_), DataModel::Array)
                        | (StoredDataValue::Dictionary(_), DataModel::Dictionary)
                );
                if !model_ok {
                    return Err(StoreError::Invalid(format!(
                        "a value of Kind {} is not of its data model {:?}",
                        k.kind, k.model
                    )));
                }
                // §7.4.1.1 append: the end of the array as it stands, this Store's
                // earlier values included.
                if let StoredDataValue::Array(e) = &mut data.value {
                    if e.index == ARRAY_END {
                        if next_index >= ARRAY_END as u64 {
                            return Err(StoreError::TooLarge(format!(
                                "the array of Kind {} is full",
                                k.kind
                            )));
                        }
                        e.index = next_index as u32;
                    }
                    next_index = next_index.max(e.index as u64 + 1);
                }
                let size = data_value(&data.value).value.len();
                if size > k.max_size as usize {
                    return Err(StoreError::TooLarge(format!(
                        "a value of {size} bytes is more than max-size {} of Kind {}",
                        k.max_size, k.kind
                    )));
                }
                let key = EntryKey::of(&data.value);
                if let Some((old, _)) = after.get(&key) {
                    if data.storage_time < old.storage_time
                        || (data.storage_time == old.storage_time && !same_value(&data, old))
                    {
                        if mode == StoreMode::Merge {
                            continue;
                        }
                        return Err(StoreError::DataTooOld(format!(
                            "storage_time {} is not after the stored value's {} (Kind {})",
                            data.storage_time, old.storage_time, k.kind
                        )));
                    }
                    if same_value(&data, old) {
                        continue; // the same value again: nothing to do
                    }
                }
                let expires_ms = now_ms.saturating_add(data.lifetime as u64 * 1000);
                after.insert(key.clone(), (data.clone(), expires_ms));
                puts.retain(|(k2, ..)| *k2 != key);
                puts.push((key, data, v.cert, v.owner, expires_ms));
            }
            if after.len() > k.max_count as usize {
                return Err(StoreError::TooLarge(format!(
                    "{} values is more than max-count {} of Kind {}",
                    after.len(),
                    k.max_count,
                    k.kind
                )));
            }
            let changed = !puts.is_empty();
            let generation = match mode {
                StoreMode::Original if changed => current_gen + 1,
                StoreMode::Original => current_gen.max(1),
                StoreMode::Replica => k.generation,
                StoreMode::Merge => k.generation.max(current_gen),
            };
            for (key, data, _, owner, _) in &puts {
                let new = encoded_size(data) as i128;
                let old = rec
                    .and_then(|r| r.entries.get(key))
                    .map(|e| (e.size as i128, e.cert.owner.to_string()));
                delta_bytes += new;
                *delta_owner.entry(owner.clone()).or_default() += new;
                match old {
                    Some((size, owner)) => {
                        delta_bytes -= size;
                        *delta_owner.entry(owner).or_default() -= size;
                    }
                    None => delta_values += 1,
                }
            }
            plans.push(Planned {
                kind: k.kind,
                model: k.model,
                generation,
                changed,
                puts,
            });
        }
        // This peer's limits (only growth is refused: replacing a value by a smaller one,
        // or deleting, always works).
        if delta_values > 0 && self.values as i64 + delta_values > self.limits.max_values as i64 {
            return Err(StoreError::TooLarge(format!(
                "this peer holds {} values, its limit",
                self.values
            )));
        }
        if delta_bytes > 0 && self.bytes as i128 + delta_bytes > self.limits.max_bytes as i128 {
            return Err(StoreError::TooLarge(format!(
                "this peer's storage is full ({} of {} bytes)",
                self.bytes, self.limits.max_bytes
            )));
        }
        for (owner, d) in &delta_owner {
            let held = self.per_owner.get(owner.as_str()).copied().unwrap_or(0) as i128;
            if *d > 0 && held + d > self.limits.max_bytes_per_owner as i128 {
                return Err(StoreError::TooLarge(format!(
                    "{owner} would hold more than {} bytes on this peer",
                    self.limits.max_bytes_per_owner
                )));
            }
        }

        // ---- commit, then apply ----
        let mut changes = Vec::new();
        for p in &plans {
            let current = self.record(resource, p.kind).map_or(0, |r| r.generation);
            if p.generation != current {
                changes.push(Change::Generation {
                    resource: resource.clone(),
                    kind: p.kind,
                    generation: p.generation,
                });
            }
            for (key, data, der, _, expires_ms) in &p.puts {
                changes.push(Change::Put(Box::new(PersistedEntry {
                    resource: resource.clone(),
                    kind: p.kind,
                    key: key.clone(),
                    data: data.clone(),
                    expires_ms: *expires_ms,
                    cert: der.clone(),
                })));
            }
        }
        if !changes.is_empty() {
            self.backend
                .commit(&changes)
                .map_err(|e| StoreError::Unavailable(format!("storage unavailable: {e}")))?;
        }
        let mut out = Vec::with_capacity(plans.len());
        for p in plans {
            let rk = (resource.clone(), p.kind);
            for (key, data, der, owner, expires_ms) in p.puts {
                let hash = crate::sign::sha256(&der);
                let cert = self.intern(hash, der, owner);
                self.remove_entry(&rk, &key);
                let entry = Entry {
                    size: encoded_size(&data),
                    data,
                    expires_ms,
                    cert,
                };
                self.insert_entry(rk.clone(), p.model, p.generation, key, entry);
            }
            if let Some(r) = self.records.get_mut(&rk) {
                r.generation = p.generation;
            }
            out.push(Stored {
                kind: p.kind,
                generation: p.generation,
                changed: p.changed,
            });
        }
        Ok(out)
    }

    /// The values of one Kind a Fetch asks for (§7.4.2), with the certificates of their
    /// signers. `model` is the Kind's. A matching generation gives no values; what the
    /// node does not hold is synthesized with `exists = false` (§7.4.2.2). Lifetimes are
    /// what is left of them.
    pub fn fetch(
        &self,
        now_ms: u64,
        resource: &ResourceId,
        spec: &StoredDataSpecifier,
        model: DataModel,
    ) -> Result<(FetchKindResponse, Vec<Arc<StoredCert>>), StoreError> {
        let rec = self.record(resource, spec.kind);
        let generation = rec.map_or(0, |r| r.generation);
        let mut values = Vec::new();
        let mut certs: Vec<Arc<StoredCert>> = Vec::new();
        if spec.generation == 0 || spec.generation != generation {
            for (key, entry) in self.select(now_ms, rec, spec, model)? {
                match entry {
                    Some(e) => {
                        let mut d = e.data.clone();
                        d.lifetime = e.remaining_secs(now_ms);
                        if !certs.iter().any(|c| c.hash == e.cert.hash) {
                            certs.push(e.cert.clone());
                        }
                        values.push(d);
                    }
                    None => values.push(synthetic(model, &key)),
                }
            }
        }
        Ok((
            FetchKindResponse {
                kind: spec.kind,
                generation,
                values: KindValues::Decoded(values),
            },
            certs,
        ))
    }

    /// The metadata a Stat asks for (§7.4.3): the same selection as [`Storage::fetch`].
    pub fn stat(
        &self,
        now_ms: u64,
        resource: &ResourceId,
        spec: &StoredDataSpecifier,
        model: DataModel,
    ) -> Result<StatKindResponse, StoreError> {
        let rec = self.record(resource, spec.kind);
        let generation = rec.map_or(0, |r| r.generation);
        let mut values = Vec::new();
        if spec.generation == 0 || spec.generation != generation {
            for (key, entry) in self.select(now_ms, rec, spec, model)? {
                values.push(match entry {
                    Some(e) => metadata(&e.data, e.remaining_secs(now_ms)),
                    None => metadata(&synthetic(model, &key), 0),
                });
            }
        }
        Ok(StatKindResponse {
            kind: spec.kind,
            generation,
            values: KindValues::Decoded(values),
        })
    }

    /// The entries a specifier selects, in order (`None`: not held).
    fn select<'a>(
        &'a self,
        now_ms: u64,
        rec: Option<&'a Record>,
        spec: &StoredDataSpecifier,
        model: DataModel,
    ) -> Result<Vec<(EntryKey, Option<&'a Entry>)>, StoreError> {
        let live = |key: &EntryKey| {
            rec.and_then(|r| r.entries.get(key))
                .filter(|e| e.live(now_ms))
        };
        let mut out = Vec::new();
        match (&spec.model_specifier, model) {
            (ModelSpecifier::Single, DataModel::Single) => {
                out.push((EntryKey::Single, live(&EntryKey::Single)));
            }
            (ModelSpecifier::Array(ranges), DataModel::Array) => {
                // §7.4.2.1: first ≤ last, ranges do not overlap.
                let mut sorted: Vec<(u32, u32)> =
                    ranges.iter().map(|r| (r.first, r.last)).collect();
                if sorted.iter().any(|(f, l)| f > l) {
                    return Err(StoreError::Invalid(
                        "an array range whose first index is after its last (§7.4.2.1)".to_string(),
                    ));
                }
                sorted.sort_unstable();
                if sorted.windows(2).any(|w| w[1].0 <= w[0].1) {
                    return Err(StoreError::Invalid(
                        "overlapping array ranges (§7.4.2.1)".to_string(),
                    ));
                }
                let len = rec.map_or(0, |r| r.array_len());
                let mut synthesized = 0usize;
                for (first, last) in ranges.iter().map(|r| (r.first, r.last)) {
                    if len == 0 || first as u64 >= len {
                        continue;
                    }
                    // 0xffffffff: the last element (§7.4.2.1).
                    let last = (last as u64).min(len - 1) as u32;
                    let mut i = first;
                    loop {
                        let key = EntryKey::Index(i);
                        match live(&key) {
                            Some(e) => out.push((key, Some(e))),
                            None if synthesized < MAX_SYNTHESIZED => {
                                synthesized += 1;
                                out.push((key, None));
                            }
                            None => {
                                // Past the cap: jump to the next value held.
                                let next = rec.and_then(|r| {
                                    r.entries
                                        .range(EntryKey::Index(i)..=EntryKey::Index(last))
                                        .find(|(_, e)| e.live(now_ms))
                                        .map(|(k, _)| k.clone())
                                });
                                match next {
                                    Some(EntryKey::Index(n)) => {
                                        i = n;
                                        continue;
                                    }
                                    _ => break,
                                }
                            }
                        }
                        if i >= last {
                            break;
                        }
                        i += 1;
                    }
                }
            }
            (ModelSpecifier::Dictionary(keys), DataModel::Dictionary) => {
                if keys.is_empty() {
                    // Wildcard: every entry (§7.4.2.1).
                    if let Some(r) = rec {
                        for (k, e) in &r.entries {
                            if e.live(now_ms) {
                                out.push((k.clone(), Some(e)));
                            }
                        }
                    }
                } else {
                    for k in keys {
                        let key = EntryKey::Key(k.clone());
                        let e = live(&key);
                        out.push((key, e));
                    }
                }
            }
            _ => {
                return Err(StoreError::Invalid(format!(
                    "the specifier of Kind {} does not fit its data model {model:?}",
                    spec.kind
                )));
            }
        }
        Ok(out)
    }

    /// Find (§7.4.4): the Resource-ID holding live values of `kind` that comes first
    /// going round the ring clockwise from `from` (`from` itself included) among those
    /// `accept` allows.
    pub fn find(
        &self,
        now_ms: u64,
        kind: KindId,
        from: &ResourceId,
        accept: &dyn Fn(&ResourceId) -> bool,
    ) -> Option<ResourceId> {
        let has_live = |r: &ResourceId| {
            self.record(r, kind)
                .is_some_and(|rec| rec.entries.values().any(|e| e.live(now_ms)))
        };
        let after = self
            .by_kind
            .range((kind, from.clone())..)
            .take_while(|(k, _)| *k == kind);
        let before = self
            .by_kind
            .range((kind, ResourceId::default())..(kind, from.clone()));
        after
            .chain(before)
            .map(|(_, r)| r)
            .find(|r| accept(r) && has_live(r))
            .cloned()
    }

    /// Everything held at `resource`, for a replica Store (§10.4): live values with the
    /// lifetime they have left (§7.4.1.1), and their signers' certificates.
    pub fn export(&self, now_ms: u64, resource: &ResourceId) -> Vec<Export> {
        let mut out = Vec::new();
        for ((_, kind), rec) in self
            .records
            .range((resource.clone(), KindId(0))..)
            .take_while(|((r, _), _)| r == resource)
        {
            let mut values = Vec::new();
            let mut certs: Vec<Arc<StoredCert>> = Vec::new();
            for e in rec.entries.values().filter(|e| e.live(now_ms)) {
                let left = e.remaining_secs(now_ms);
                if left == 0 {
                    continue;
                }
                let mut d = e.data.clone();
                d.lifetime = left;
                values.push(d);
                if !certs.iter().any(|c| c.hash == e.cert.hash) {
                    certs.push(e.cert.clone());
                }
            }
            if !values.is_empty() {
                out.push(Export {
                    kind: *kind,
                    model: rec.model,
                    generation: rec.generation.max(1),
                    values,
                    certs,
                });
            }
        }
        out
    }

    /// Forgets everything held at `resource` (§10.7.3: no longer in its replica set).
    pub fn remove_resource(&mut self, resource: &ResourceId) -> Result<usize, BackendError> {
        let kinds = self.kinds_at(resource);
        if kinds.is_empty() {
            return Ok(0);
        }
        let changes: Vec<Change> = kinds
            .iter()
            .map(|k| Change::Drop {
                resource: resource.clone(),
                kind: *k,
            })
            .collect();
        self.backend.commit(&changes)?;
        let mut n = 0;
        for k in kinds {
            let rk = (resource.clone(), k);
            let keys: Vec<EntryKey> = self
                .records
                .get(&rk)
                .map(|r| r.entries.keys().cloned().collect())
                .unwrap_or_default();
            for key in keys {
                if self.remove_entry(&rk, &key).is_some() {
                    n += 1;
                }
            }
            self.records.remove(&rk);
            self.by_kind.remove(&(k, resource.clone()));
        }
        Ok(n)
    }

    /// Forgets every value of `kind` (the Kind left the configuration).
    pub fn remove_kind(&mut self, kind: KindId) -> Result<usize, BackendError> {
        let resources: Vec<ResourceId> = self
            .by_kind
            .range((kind, ResourceId::default())..)
            .take_while(|(k, _)| *k == kind)
            .map(|(_, r)| r.clone())
            .collect();
        let changes: Vec<Change> = resources
            .iter()
            .map(|r| Change::Drop {
                resource: r.clone(),
                kind,
            })
            .collect();
        if changes.is_empty() {
            return Ok(0);
        }
        self.backend.commit(&changes)?;
        let mut n = 0;
        for r in resources {
            let rk = (r, kind);
            let keys: Vec<EntryKey> = self
                .records
                .get(&rk)
                .map(|rec| rec.entries.keys().cloned().collect())
                .unwrap_or_default();
            for key in keys {
                if self.remove_entry(&rk, &key).is_some() {
                    n += 1;
                }
            }
            self.records.remove(&rk);
            self.by_kind.remove(&(kind, rk.0.clone()));
        }
        Ok(n)
    }

    /// When the next value expires (wall milliseconds).
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiry.iter().next().map(|(t, ..)| *t)
    }

    /// Removes the values whose lifetime ended (§7.4.1.3), at most `budget` of them per
    /// call (the rest at the next). Returns how many went. Expired values are never
    /// served even before they are removed; when the backend fails they stay (and are
    /// tried again at the next call).
    pub fn expire(&mut self, now_ms: u64, budget: usize) -> Result<usize, BackendError> {
        let due: Vec<ExpiryKey> = self
            .expiry
            .iter()
            .take_while(|(t, ..)| *t <= now_ms)
            .take(budget)
            .cloned()
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let mut changes: Vec<Change> = due
            .iter()
            .map(|(_, r, k, key)| Change::Remove {
                resource: r.clone(),
                kind: *k,
                key: key.clone(),
            })
            .collect();
        // Kinds left empty lose their generation counter as well.
        let mut due_per_record: BTreeMap<RecordKey, usize> = BTreeMap::new();
        for (_, r, k, _) in &due {
            *due_per_record.entry((r.clone(), *k)).or_default() += 1;
        }
        let emptied: Vec<RecordKey> = due_per_record
            .into_iter()
            .filter(|(rk, n)| {
                self.records
                    .get(rk)
                    .is_some_and(|rec| rec.entries.len() == *n)
            })
            .map(|(rk, _)| rk)
            .collect();
        changes.extend(emptied.iter().map(|(r, k)| Change::Drop {
            resource: r.clone(),
            kind: *k,
        }));
        self.backend.commit(&changes)?;
        let n = due.len();
        for (_, r, k, key) in due {
            let rk = (r, k);
            self.remove_entry(&rk, &key);
            self.drop_if_empty(&rk);
        }
        Ok(n)
    }
}

/// The hash input of a stored value for Stat (§7.4.3.2), exposed for tests: the
/// `value` field of the DataValue with its 4 length bytes.
pub fn stat_hash_input(value: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + value.len());
    b.put_u32(value.len() as u32);
    b.put_slice(value);
    b.freeze()
}

#[cfg(test)]
mod tests;
