//! Failed-password throttling, per account and per client address.
//!
//! After `max_failures` consecutive failed authentications for an account (or
//! `4 × max_failures` from one address, across accounts), further attempts are refused with
//! 429 for a lockout that doubles with each further failure (from `base_lockout`, at most
//! `max_lockout`). A success clears the account's count. Failures older than `window` are
//! forgotten. The state is in memory: a restart forgives, which is fine for throttling and
//! keeps failed logins from writing to the database.
//!
//! What a client sends costs the table a fixed amount: an account is tracked by
//! [`AccountKey`], the SHA-256 of its name, and only a valid account name
//! ([`check_account_name`]: at most 64 characters) gets one — a name that cannot be an
//! account is a failed authentication counted against the address alone.
//!
//! The table is bounded: at most [`ThrottleConfig::max_entries`] entries (default
//! [`MAX_ENTRIES`], 100 000), each a fixed-size key (an address or a 32-byte hash) with its
//! counters — about 150 bytes with the map's and the age index's overhead, so some 15 MB at
//! most. Entries past the window (and not locked out) are dropped as new failures come in;
//! when the table is full, the entry touched least recently is dropped to make room
//! (evicting a lockout takes as many fresh failures as the table holds, each of them
//! throttled per address too).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::names::check_account_name;

/// Default bound of the table ([`ThrottleConfig::max_entries`]).
pub const MAX_ENTRIES: usize = 100_000;

/// An account as the throttle tracks it: the SHA-256 of its name (account names are
/// case-sensitive ASCII, so the checked name is its own normal form).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccountKey([u8; 32]);

impl AccountKey {
    /// The key of `name`, or `None` when `name` cannot be an account name (then only the
    /// address is throttled).
    pub fn of(name: &str) -> Option<AccountKey> {
        check_account_name(name).ok()?;
        Some(AccountKey(Sha256::digest(name.as_bytes()).into()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account(AccountKey),
    Addr(IpAddr),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
    /// Position in [`Table::order`].
    seq: u64,
}

impl Entry {
    fn stale(&self, now: Instant, window: Duration) -> bool {
        now.saturating_duration_since(self.last) >= window
            && self.locked_until.is_none_or(|u| u <= now)
    }
}

/// The entries, and their keys from the least to the most recently touched.
#[derive(Debug, Default)]
struct Table {
    map: HashMap<Key, Entry>,
    order: BTreeMap<u64, Key>,
    seq: u64,
}

impl Table {
    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.map.remove(key) {
            self.order.remove(&e.seq);
        }
    }

    /// Drops the least recently touched entries while they are stale.
    fn forget_stale(&mut self, now: Instant, window: Duration) {
        while let Some((&seq, key)) = self.order.first_key_value() {
            if !self.map.get(key).is_none_or(|e| e.stale(now, window)) {
                break;
            }
            let key = *key;
            self.order.remove(&seq);
            self.map.remove(&key);
        }
    }

    /// The entry of `key`, now the most recently touched; a new one (the least recently
    /// touched entries dropped to keep at most `max` entries) if there is none.
    fn touch(&mut self, key: Key, now: Instant, max: usize) -> &mut Entry {
        let seq = self.seq;
        self.seq += 1;
        if let Some(old) = self.map.get(&key).map(|e| e.seq) {
            self.order.remove(&old);
        } else {
            while self.map.len() >= max.max(1) {
                let Some((_, oldest)) = self.order.pop_first() else {
                    break;
                };
                self.map.remove(&oldest);
            }
        }
        self.order.insert(seq, key);
        let e = self.map.entry(key).or_insert(Entry {
            failures: 0,
            last: now,
            locked_until: None,
            seq,
        });
        e.seq = seq;
        e
    }
}

/// Throttling parameters.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleConfig {
    pub max_failures: u32,
    pub base_lockout: Duration,
    pub max_lockout: Duration,
    pub window: Duration,
    /// Most accounts and addresses tracked at once (see the module documentation).
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures: 5,
            base_lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(15 * 60),
            window: Duration::from_secs(15 * 60),
            max_entries: MAX_ENTRIES,
        }
    }
}

#[derive(Debug)]
pub struct Throttle {
    cfg: ThrottleConfig,
    table: Mutex<Table>,
}

impl Throttle {
    pub fn new(cfg: ThrottleConfig) -> Self {
        Throttle {
            cfg,
            table: Mutex::new(Table::default()),
        }
    }

    fn limit(&self, key: &Key) -> u32 {
        match key {
            Key::Account(_) => self.cfg.max_failures.max(1),
            Key::Addr(_) => self.cfg.max_failures.max(1).saturating_mul(4),
        }
    }

    fn keys(account: Option<&AccountKey>, addr: IpAddr) -> impl Iterator<Item = Key> {
        account
            .map(|a| Key::Account(*a))
            .into_iter()
            .chain(std::iter::once(Key::Addr(addr)))
    }

    /// `Err(retry_after)` while the account or the address is locked out.
    pub fn check(
        &self,
        account: Option<&AccountKey>,
        addr: IpAddr,
        now: Instant,
    ) -> Result<(), Duration> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = Duration::ZERO;
        for key in Self::keys(account, addr) {
            if let Some(until) = table.map.get(&key).and_then(|e| e.locked_until)
                && until > now
            {
                wait = wait.max(until - now);
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Counts a failed authentication against the account (`None`: the name was no
    /// account name) and the address; returns the lockout it starts, if any.
    pub fn fail(
        &self,
        account: Option<&AccountKey>,
        addr: IpAddr,
        now: Instant,
    ) -> Option<Duration> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.forget_stale(now, self.cfg.window);
        let mut started = None;
        for key in Self::keys(account, addr) {
            let limit = self.limit(&key);
            let e = table.touch(key, now, self.cfg.max_entries);
            if now.saturating_duration_since(e.last) >= self.cfg.window {
                e.failures = 0;
                e.locked_until = None;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            if e.failures >= limit {
                let doublings = (e.failures - limit).min(16);
                let lockout = self
                    .cfg
                    .base_lockout
                    .saturating_mul(1u32 << doublings)
                    .min(self.cfg.max_lockout);
                e.locked_until = Some(now + lockout);
                started = Some(started.map_or(lockout, |s: Duration| s.max(lockout)));
            }
        }
        started
    }

    /// A successful authentication clears the account's failures.
    pub fn succeed(&self, account: &AccountKey) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.remove(&Key::Account(*account));
    }

    /// How many accounts and addresses are tracked.
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(name: &str) -> AccountKey {
        AccountKey::of(name).unwrap()
    }

    #[test]
    fn locks_after_max_failures_and_doubles() {
        let t = Throttle::new(ThrottleConfig {
            max_failures: 3,
            base_lockout: Duration::from_secs(10),
            max_lockout: Duration::from_secs(25),
            window: Duration::from_secs(100),
            ..ThrottleConfig::default()
        });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (a, b) = (acct("a"), acct("b"));
        let t0 = Instant::now();
        assert_eq!(t.fail(Some(&a), ip, t0), None);
        assert_eq!(t.fail(Some(&a), ip, t0), None);
        assert!(t.check(Some(&a), ip, t0).is_ok());
        assert_eq!(t.fail(Some(&a), ip, t0), Some(Duration::from_secs(10)));
        assert_eq!(t.check(Some(&a), ip, t0), Err(Duration::from_secs(10)));
        assert!(
            t.check(Some(&b), ip, t0).is_ok(),
            "another account from the same address"
        );
        assert!(t.check(Some(&a), ip, t0 + Duration::from_secs(11)).is_ok());
        assert_eq!(
            t.fail(Some(&a), ip, t0 + Duration::from_secs(11)),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            t.fail(Some(&a), ip, t0 + Duration::from_secs(12)),
            Some(Duration::from_secs(25)),
            "capped"
        );
        t.succeed(&a);
        assert!(t.check(Some(&a), ip, t0 + Duration::from_secs(12)).is_ok());
        // The address limit is 4 × max_failures across accounts.
        for i in 0..7 {
            t.fail(
                Some(&acct(&format!("u{i}"))),
                ip,
                t0 + Duration::from_secs(12),
            );
        }
        let fresh = acct("fresh");
        assert!(
            t.check(Some(&fresh), ip, t0 + Duration::from_secs(12))
                .is_err()
        );
        assert!(
            t.check(None, ip, t0 + Duration::from_secs(12)).is_err(),
            "no account name: the address alone"
        );
        // Old failures are forgotten after the window.
        assert!(
            t.check(Some(&fresh), ip, t0 + Duration::from_secs(300))
                .is_ok()
        );
    }

    #[test]
    fn only_valid_account_names_are_tracked_and_by_their_hash() {
        assert_eq!(AccountKey::of("alice"), AccountKey::of("alice"));
        assert_ne!(AccountKey::of("alice"), AccountKey::of("Alice"));
        for bogus in [
            "",
            "a b",
            "a\0",
            "é",
            &"x".repeat(65),
            &"y".repeat(64 * 1024),
        ] {
            assert_eq!(AccountKey::of(bogus), None, "{bogus:?}");
        }
        // Whatever the name's length, the key is 32 bytes.
        assert_eq!(std::mem::size_of::<AccountKey>(), 32);
    }

    /// A flood of distinct, long bogus user names from one address costs one entry (the
    /// address), and locks the address out.
    #[test]
    fn a_flood_of_long_bogus_names_keeps_the_table_at_one_entry() {
        let t = Throttle::new(ThrottleConfig {
            max_failures: 5,
            ..ThrottleConfig::default()
        });
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        let long = "z".repeat(64 * 1024);
        for i in 0..2_000 {
            let name = format!("{i}{long}");
            let key = AccountKey::of(&name);
            assert_eq!(key, None);
            t.fail(key.as_ref(), ip, t0);
            assert_eq!(t.len(), 1, "after {} names", i + 1);
        }
        assert!(t.check(None, ip, t0).is_err(), "the address is locked out");
        assert!(t.check(Some(&acct("alice")), ip, t0).is_err());
        assert!(
            t.check(Some(&acct("alice")), "192.0.2.8".parse().unwrap(), t0)
                .is_ok(),
            "the accounts were not touched"
        );
    }

    /// Distinct valid names from distinct addresses: the table never holds more than its
    /// bound, the oldest entries go first, the newest lockouts stay.
    #[test]
    fn the_table_is_bounded_and_evicts_the_oldest() {
        let t = Throttle::new(ThrottleConfig {
            max_failures: 1,
            max_entries: 64,
            ..ThrottleConfig::default()
        });
        let t0 = Instant::now();
        let ip =
            |i: u32| IpAddr::from(std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | i as u128));
        for i in 0..10_000u32 {
            let name = format!("bogus{i}-{}", "n".repeat(50));
            t.fail(AccountKey::of(&name).as_ref(), ip(i), t0);
            assert!(
                t.len() <= 64,
                "{} entries after {} failures",
                t.len(),
                i + 1
            );
        }
        assert_eq!(t.len(), 64);
        let last = format!("bogus9999-{}", "n".repeat(50));
        assert!(
            t.check(AccountKey::of(&last).as_ref(), ip(0), t0).is_err(),
            "the newest lockout is kept"
        );
        let first = format!("bogus0-{}", "n".repeat(50));
        assert!(
            t.check(AccountKey::of(&first).as_ref(), ip(0), t0).is_ok(),
            "the oldest entries were dropped"
        );
    }

    #[test]
    fn stale_entries_are_forgotten_as_failures_come_in() {
        let t = Throttle::new(ThrottleConfig {
            max_failures: 100,
            window: Duration::from_secs(60),
            ..ThrottleConfig::default()
        });
        let t0 = Instant::now();
        for i in 0..100u8 {
            t.fail(
                Some(&acct(&format!("u{i}"))),
                IpAddr::from([10, 0, 0, i]),
                t0,
            );
        }
        assert_eq!(t.len(), 200);
        t.fail(
            Some(&acct("late")),
            IpAddr::from([10, 0, 1, 1]),
            t0 + Duration::from_secs(61),
        );
        assert_eq!(t.len(), 2, "only the new failure's entries are left");
    }
}
