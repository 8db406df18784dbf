//! Failed-password throttling, per account name and per client address.
//!
//! After `max_failures` consecutive failed authentications for an account (or
//! `4 × max_failures` from one address, across accounts), further attempts are refused with
//! 429 for a lockout that doubles with each further failure (from `base_lockout`, at most
//! `max_lockout`). A success clears the account's count. Failures older than `window` are
//! forgotten. The state is in memory: a restart forgives, which is fine for throttling and
//! keeps failed logins from writing to the database. The table is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most entries kept; beyond that, stale ones are dropped, then the oldest.
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Addr(IpAddr),
}

/// Throttling parameters.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleConfig {
    pub max_failures: u32,
    pub base_lockout: Duration,
    pub max_lockout: Duration,
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures: 5,
            base_lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(15 * 60),
            window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug)]
pub struct Throttle {
    cfg: ThrottleConfig,
    table: Mutex<HashMap<Key, Entry>>,
}

impl Throttle {
    pub fn new(cfg: ThrottleConfig) -> Self {
        Throttle {
            cfg,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn limit(&self, key: &Key) -> u32 {
        match key {
            Key::User(_) => self.cfg.max_failures.max(1),
            Key::Addr(_) => self.cfg.max_failures.max(1).saturating_mul(4),
        }
    }

    /// `Err(retry_after)` while the account or the address is locked out.
    pub fn check(&self, user: &str, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = Duration::ZERO;
        for key in [Key::User(user.to_string()), Key::Addr(addr)] {
            if let Some(until) = table.get(&key).and_then(|e| e.locked_until)
                && until > now
            {
                wait = wait.max(until - now);
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Counts a failed authentication; returns the lockout it starts, if any.
    pub fn fail(&self, user: &str, addr: IpAddr, now: Instant) -> Option<Duration> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= MAX_ENTRIES {
            let window = self.cfg.window;
            table.retain(|_, e| {
                now.duration_since(e.last) < window || e.locked_until.is_some_and(|u| u > now)
            });
            if table.len() >= MAX_ENTRIES
                && let Some(oldest) = table
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone())
            {
                table.remove(&oldest);
            }
        }
        let mut started = None;
        for key in [Key::User(user.to_string()), Key::Addr(addr)] {
            let limit = self.limit(&key);
            let e = table.entry(key).or_insert(Entry {
                failures: 0,
                last: now,
                locked_until: None,
            });
            if now.duration_since(e.last) >= self.cfg.window {
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
    pub fn succeed(&self, user: &str) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.remove(&Key::User(user.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_doubles() {
        let t = Throttle::new(ThrottleConfig {
            max_failures: 3,
            base_lockout: Duration::from_secs(10),
            max_lockout: Duration::from_secs(25),
            window: Duration::from_secs(100),
        });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(t.fail("a", ip, t0), None);
        assert_eq!(t.fail("a", ip, t0), None);
        assert!(t.check("a", ip, t0).is_ok());
        assert_eq!(t.fail("a", ip, t0), Some(Duration::from_secs(10)));
        assert_eq!(t.check("a", ip, t0), Err(Duration::from_secs(10)));
        assert!(
            t.check("b", ip, t0).is_ok(),
            "another account from the same address"
        );
        assert!(t.check("a", ip, t0 + Duration::from_secs(11)).is_ok());
        assert_eq!(
            t.fail("a", ip, t0 + Duration::from_secs(11)),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            t.fail("a", ip, t0 + Duration::from_secs(12)),
            Some(Duration::from_secs(25)),
            "capped"
        );
        t.succeed("a");
        assert!(t.check("a", ip, t0 + Duration::from_secs(12)).is_ok());
        // The address limit is 4 × max_failures across accounts.
        for i in 0..7 {
            t.fail(&format!("u{i}"), ip, t0 + Duration::from_secs(12));
        }
        assert!(t.check("fresh", ip, t0 + Duration::from_secs(12)).is_err());
        // Old failures are forgotten after the window.
        assert!(t.check("fresh", ip, t0 + Duration::from_secs(300)).is_ok());
    }
}
