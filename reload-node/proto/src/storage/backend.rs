//! Where stored data lives between restarts.
//!
//! The storage engine ([`super::Storage`]) keeps every value it holds in memory, indexed
//! for Fetch, Stat, Find, expiry and replication, and writes each change through a
//! [`Backend`] **before** the request that made it is answered: a Store is acknowledged
//! only once it is durable. At start the engine loads what the backend holds and drops
//! what expired meanwhile. The simulator and tests use [`MemoryBackend`]; a running peer
//! uses the SQLite backend of `reload-node`, in its data directory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reload_wire::ResourceId;
use reload_wire::storage::{KindId, StoredData};

use super::EntryKey;

/// One stored value as the backend keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistedEntry {
    pub resource: ResourceId,
    pub kind: KindId,
    pub key: EntryKey,
    /// The value as received (its `lifetime` is the one it was stored with).
    pub data: StoredData,
    /// When it expires, in milliseconds since the Unix epoch.
    pub expires_ms: u64,
    /// The DER certificate of its signer (§8: peers keep the certificates needed to
    /// verify what they hold).
    pub cert: Bytes,
}

/// A change, written atomically with the others of the same commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Insert or replace a value.
    Put(Box<PersistedEntry>),
    /// Remove a value.
    Remove {
        resource: ResourceId,
        kind: KindId,
        key: EntryKey,
    },
    /// The generation counter of a Kind at a Resource-ID (§7.4.1.1).
    Generation {
        resource: ResourceId,
        kind: KindId,
        generation: u64,
    },
    /// Nothing left of this Kind at this Resource-ID: forget its generation counter too.
    Drop { resource: ResourceId, kind: KindId },
}

/// What a backend holds, as loaded at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub entries: Vec<PersistedEntry>,
    /// Generation counters by (Resource-ID, Kind).
    pub generations: Vec<(ResourceId, KindId, u64)>,
}

/// Why a backend could not do what it was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendError(pub String);

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BackendError {}

/// Durable storage of values (see the module documentation).
pub trait Backend: Send {
    /// Everything stored, at start.
    fn load(&mut self) -> Result<Snapshot, BackendError>;

    /// Applies `changes` all or nothing; returns once they are durable.
    fn commit(&mut self, changes: &[Change]) -> Result<(), BackendError>;

    /// A short description for logs ("memory", "sqlite /var/lib/…").
    fn describe(&self) -> String;
}

type Key = (ResourceId, KindId, EntryKey);

#[derive(Debug, Default)]
struct MemoryState {
    entries: BTreeMap<Key, PersistedEntry>,
    generations: BTreeMap<(ResourceId, KindId), u64>,
    commits: u64,
    fail: Option<String>,
}

/// A backend in memory. Clones share their contents: a test keeps one clone, "restarts"
/// a node by building a new one on another clone, and can make commits fail.
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    state: Arc<Mutex<MemoryState>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Commits made.
    pub fn commits(&self) -> u64 {
        self.lock().commits
    }

    /// From now on every commit fails with `why` (`None`: they succeed again).
    pub fn set_failure(&self, why: Option<&str>) {
        self.lock().fail = why.map(str::to_string);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic elsewhere while holding the lock leaves consistent data (every
        // operation below completes or does nothing).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for MemoryBackend {
    fn load(&mut self) -> Result<Snapshot, BackendError> {
        let s = self.lock();
        Ok(Snapshot {
            entries: s.entries.values().cloned().collect(),
            generations: s
                .generations
                .iter()
                .map(|((r, k), g)| (r.clone(), *k, *g))
                .collect(),
        })
    }

    fn commit(&mut self, changes: &[Change]) -> Result<(), BackendError> {
        let mut s = self.lock();
        if let Some(why) = &s.fail {
            return Err(BackendError(why.clone()));
        }
        for c in changes {
            match c {
                Change::Put(e) => {
                    let key = (e.resource.clone(), e.kind, e.key.clone());
                    s.entries.insert(key, (**e).clone());
                }
                Change::Remove {
                    resource,
                    kind,
                    key,
                } => {
                    s.entries.remove(&(resource.clone(), *kind, key.clone()));
                }
                Change::Generation {
                    resource,
                    kind,
                    generation,
                } => {
                    s.generations.insert((resource.clone(), *kind), *generation);
                }
                Change::Drop { resource, kind } => {
                    s.generations.remove(&(resource.clone(), *kind));
                    let lo = (resource.clone(), *kind, EntryKey::Single);
                    let doomed: Vec<Key> = s
                        .entries
                        .range(lo..)
                        .take_while(|(k, _)| k.0 == *resource && k.1 == *kind)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in doomed {
                        s.entries.remove(&k);
                    }
                }
            }
        }
        s.commits += 1;
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }
}
