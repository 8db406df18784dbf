//! Accounts, Node-IDs and issued certificates in one SQLite file (`enroll.sqlite`).
//!
//! - `users`: account name, argon2id PHC hash, disabled flag;
//! - `node_ids`: the user → Node-ID mapping (RFC 6940 §11.3: a returning user gets the
//!   same Node-IDs again), in allocation order; the configuration and kind signers'
//!   Node-IDs too, under owners `#configuration-signer` / `#kind-signer`;
//! - `certificates`: every certificate issued (serial, owner, purpose, Node-IDs, user name,
//!   validity, SHA-256 of the CSR, the DER), written in the same transaction that allocates
//!   the Node-IDs, so an enrollment either happened completely or not at all.
//!
//! The file is opened in WAL mode with `synchronous=FULL`: a committed enrollment survives
//! a crash or a `kill -9` of the server, and the CLI (`user add` …) can write while the
//! server runs.

use std::path::Path;

use reload_wire::NodeId;
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use crate::{Error, Result, hex, unix_now};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE users (
    name          TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created       INTEGER NOT NULL,
    updated       INTEGER NOT NULL
) STRICT;
CREATE TABLE node_ids (
    node_id   TEXT PRIMARY KEY NOT NULL,
    owner     TEXT NOT NULL,
    position  INTEGER NOT NULL,
    allocated INTEGER NOT NULL,
    UNIQUE (owner, position)
) STRICT;
CREATE TABLE certificates (
    serial     TEXT PRIMARY KEY NOT NULL,
    owner      TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    node_ids   TEXT NOT NULL,
    user_name  TEXT,
    not_before INTEGER NOT NULL,
    not_after  INTEGER NOT NULL,
    issued_at  INTEGER NOT NULL,
    csr_sha256 TEXT,
    peer       TEXT,
    der        BLOB NOT NULL
) STRICT;
CREATE INDEX certificates_owner ON certificates (owner);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
";

/// What a certificate is for (the `purpose` column).
pub const PURPOSE_NODE: &str = "node";
pub const PURPOSE_CONFIG_SIGNER: &str = "configuration-signer";
pub const PURPOSE_KIND_SIGNER: &str = "kind-signer";
pub const PURPOSE_HTTPS: &str = "https-server";
pub const PURPOSE_CA: &str = "root-ca";

/// An account as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    pub disabled: bool,
    pub created: i64,
    pub node_ids: Vec<String>,
    pub certificates: i64,
}

/// A certificate row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertRow {
    pub serial: String,
    pub owner: String,
    pub purpose: String,
    pub node_ids: Vec<String>,
    pub user_name: Option<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub issued_at: i64,
    pub csr_sha256: Option<String>,
    pub peer: Option<String>,
}

/// A certificate to record.
#[derive(Clone, Debug)]
pub struct NewCert<'a> {
    pub serial: &'a [u8],
    pub owner: &'a str,
    pub purpose: &'a str,
    pub node_ids: &'a [NodeId],
    pub user_name: Option<&'a str>,
    pub not_before: i64,
    pub not_after: i64,
    pub csr_sha256: Option<&'a str>,
    pub peer: Option<&'a str>,
    pub der: &'a [u8],
}

/// Why an issuance did not happen (nothing was written).
#[derive(Debug)]
pub enum IssueError {
    /// The account vanished or was disabled between authentication and issuance.
    NotAllowed(String),
    /// More Node-IDs than the per-user quota.
    Quota {
        requested: usize,
        held: usize,
        quota: usize,
    },
    /// Anything else (database, certificate generation).
    Other(Error),
}

impl From<Error> for IssueError {
    fn from(e: Error) -> Self {
        IssueError::Other(e)
    }
}

impl From<rusqlite::Error> for IssueError {
    fn from(e: rusqlite::Error) -> Self {
        IssueError::Other(e.into())
    }
}

/// The enrollment database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

fn ids_text(ids: &[NodeId]) -> String {
    ids.iter().map(|n| n.to_hex()).collect::<Vec<_>>().join(",")
}

fn split_ids(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn node_id_from_hex(s: &str) -> Result<NodeId> {
    let raw: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    raw.and_then(|r| NodeId::from_slice(&r))
        .ok_or_else(|| Error::new(format!("database holds a malformed Node-ID {s:?}")))
}

impl Store {
    /// Creates a new database (the file must not exist).
    pub fn create(path: &Path) -> Result<Store> {
        crate::datadir::create_private_empty(path)?;
        let conn = Connection::open(path)?;
        let store = Store::configure(conn)?;
        store.conn.execute_batch(SCHEMA)?;
        store
            .conn
            .pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(store)
    }

    /// Opens an existing database.
    pub fn open(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(Error::new(format!(
                "no enrollment database at {}: run `reload-enroll init` first",
                path.display()
            )));
        }
        let conn = Connection::open(path)?;
        let store = Store::configure(conn)?;
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version != SCHEMA_VERSION {
            return Err(Error::new(format!(
                "{} has schema version {version}; this reload-enroll expects {SCHEMA_VERSION}",
                path.display()
            )));
        }
        Ok(store)
    }

    fn configure(conn: Connection) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(Store { conn })
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Adds an account; refuses an existing name.
    pub fn add_user(&self, name: &str, password_hash: &str) -> Result<()> {
        let now = unix_now();
        match self.conn.execute(
            "INSERT INTO users (name, password_hash, disabled, created, updated) VALUES (?1, ?2, 0, ?3, ?3)",
            params![name, password_hash, now],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(Error::new(format!("user {name:?} already exists")))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn update_user(&self, name: &str, sql: &str, value: &dyn rusqlite::ToSql) -> Result<()> {
        let n = self.conn.execute(sql, params![value, unix_now(), name])?;
        if n == 0 {
            return Err(Error::new(format!("no user {name:?}")));
        }
        Ok(())
    }

    pub fn set_password(&self, name: &str, password_hash: &str) -> Result<()> {
        self.update_user(
            name,
            "UPDATE users SET password_hash = ?1, updated = ?2 WHERE name = ?3",
            &password_hash,
        )
    }

    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<()> {
        self.update_user(
            name,
            "UPDATE users SET disabled = ?1, updated = ?2 WHERE name = ?3",
            &disabled,
        )
    }

    /// The password hash and disabled flag of an account.
    pub fn user(&self, name: &str) -> Result<Option<(String, bool)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT password_hash, disabled FROM users WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    pub fn users(&self) -> Result<Vec<UserRow>> {
        let mut st = self.conn.prepare(
            "SELECT u.name, u.disabled, u.created,
                    (SELECT group_concat(node_id, ',') FROM (SELECT node_id FROM node_ids n WHERE n.owner = u.name ORDER BY position)),
                    (SELECT count(*) FROM certificates c WHERE c.owner = u.name)
             FROM users u ORDER BY u.name",
        )?;
        let rows = st.query_map([], |r| {
            Ok(UserRow {
                name: r.get(0)?,
                disabled: r.get(1)?,
                created: r.get(2)?,
                node_ids: split_ids(&r.get::<_, Option<String>>(3)?.unwrap_or_default()),
                certificates: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn certificates(&self) -> Result<Vec<CertRow>> {
        let mut st = self.conn.prepare(
            "SELECT serial, owner, purpose, node_ids, user_name, not_before, not_after, issued_at, csr_sha256, peer
             FROM certificates ORDER BY issued_at, serial",
        )?;
        let rows = st.query_map([], |r| {
            Ok(CertRow {
                serial: r.get(0)?,
                owner: r.get(1)?,
                purpose: r.get(2)?,
                node_ids: split_ids(&r.get::<_, String>(3)?),
                user_name: r.get(4)?,
                not_before: r.get(5)?,
                not_after: r.get(6)?,
                issued_at: r.get(7)?,
                csr_sha256: r.get(8)?,
                peer: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Row counts of (users, node_ids, certificates).
    pub fn counts(&self) -> Result<(i64, i64, i64)> {
        Ok(self.conn.query_row(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM node_ids), (SELECT count(*) FROM certificates)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?)
    }

    /// The Node-IDs an owner holds, in allocation order.
    pub fn node_ids_of(&self, owner: &str) -> Result<Vec<NodeId>> {
        let mut st = self
            .conn
            .prepare("SELECT node_id FROM node_ids WHERE owner = ?1 ORDER BY position")?;
        let ids = st
            .query_map(params![owner], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        ids.iter().map(|s| node_id_from_hex(s)).collect()
    }

    /// Records a certificate issued outside an enrollment (the CA, the signers, HTTPS),
    /// with the Node-IDs it carries, in one transaction.
    pub fn record_infrastructure(&mut self, cert: &NewCert<'_>) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (i, id) in cert.node_ids.iter().enumerate() {
            tx.execute(
                "INSERT INTO node_ids (node_id, owner, position, allocated) VALUES (?1, ?2, ?3, ?4)",
                params![id.to_hex(), cert.owner, i as i64, unix_now()],
            )?;
        }
        insert_cert(&tx, cert)?;
        tx.commit()?;
        Ok(())
    }

    /// An enrollment, all or nothing (RFC 6940 §11.3): in one IMMEDIATE transaction, checks
    /// the account is still enabled, takes the user's existing Node-IDs (the same ones again
    /// for a returning user) and draws new random ones up to `wanted` within `quota`, lets
    /// `make` issue the certificate for them, records it, and commits. Any error rolls back.
    pub fn enroll<F>(
        &mut self,
        account: &str,
        wanted: usize,
        quota: usize,
        make: F,
    ) -> std::result::Result<(Vec<NodeId>, Vec<u8>), IssueError>
    where
        F: FnOnce(&[NodeId]) -> std::result::Result<IssuedCert, IssueError>,
    {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let disabled: Option<bool> = tx
            .query_row(
                "SELECT disabled FROM users WHERE name = ?1",
                params![account],
                |r| r.get(0),
            )
            .optional()?;
        match disabled {
            None => {
                return Err(IssueError::NotAllowed(format!(
                    "user {account:?} no longer exists"
                )));
            }
            Some(true) => {
                return Err(IssueError::NotAllowed(format!(
                    "user {account:?} is disabled"
                )));
            }
            Some(false) => {}
        }
        let held: Vec<String> = {
            let mut st =
                tx.prepare("SELECT node_id FROM node_ids WHERE owner = ?1 ORDER BY position")?;
            st.query_map(params![account], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        if wanted > quota {
            return Err(IssueError::Quota {
                requested: wanted,
                held: held.len(),
                quota,
            });
        }
        let mut ids: Vec<NodeId> = held
            .iter()
            .take(wanted)
            .map(|s| node_id_from_hex(s))
            .collect::<Result<_>>()?;
        let mut position = held.len() as i64;
        while ids.len() < wanted {
            let id = crate::ca::random_node_id(16)?;
            let taken: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM node_ids WHERE node_id = ?1)",
                params![id.to_hex()],
                |r| r.get(0),
            )?;
            if taken {
                continue;
            }
            tx.execute(
                "INSERT INTO node_ids (node_id, owner, position, allocated) VALUES (?1, ?2, ?3, ?4)",
                params![id.to_hex(), account, position, unix_now()],
            )?;
            position += 1;
            ids.push(id);
        }
        let issued = make(&ids)?;
        insert_cert(
            &tx,
            &NewCert {
                serial: &issued.serial,
                owner: account,
                purpose: PURPOSE_NODE,
                node_ids: &ids,
                user_name: Some(&issued.user_name),
                not_before: issued.not_before,
                not_after: issued.not_after,
                csr_sha256: Some(&issued.csr_sha256),
                peer: issued.peer.as_deref(),
                der: &issued.der,
            },
        )?;
        tx.commit()?;
        Ok((ids, issued.der))
    }
}

/// A certificate made inside [`Store::enroll`].
#[derive(Clone, Debug)]
pub struct IssuedCert {
    pub serial: Vec<u8>,
    pub user_name: String,
    pub not_before: i64,
    pub not_after: i64,
    pub csr_sha256: String,
    pub peer: Option<String>,
    pub der: Vec<u8>,
}

fn insert_cert(tx: &rusqlite::Transaction<'_>, c: &NewCert<'_>) -> Result<()> {
    tx.execute(
        "INSERT INTO certificates (serial, owner, purpose, node_ids, user_name, not_before, not_after, issued_at, csr_sha256, peer, der)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            hex(c.serial),
            c.owner,
            c.purpose,
            ids_text(c.node_ids),
            c.user_name,
            c.not_before,
            c.not_after,
            unix_now(),
            c.csr_sha256,
            c.peer,
            c.der
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(ids: &[NodeId]) -> IssuedCert {
        IssuedCert {
            serial: crate::ca::random_serial().unwrap().to_vec(),
            user_name: "u@o".into(),
            not_before: 0,
            not_after: 1,
            csr_sha256: "00".into(),
            peer: None,
            der: ids.iter().flat_map(|i| i.as_bytes().to_vec()).collect(),
        }
    }

    #[test]
    fn returning_users_get_their_node_ids_and_failures_leave_nothing() {
        let dir = std::env::temp_dir().join(format!("reload-enroll-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Store::create(&dir.join("db.sqlite")).unwrap();
        s.add_user("alice", "hash").unwrap();
        assert!(
            s.add_user("alice", "hash")
                .unwrap_err()
                .0
                .contains("already exists")
        );
        let (a, _) = s.enroll("alice", 2, 4, |ids| Ok(issued(ids))).unwrap();
        let (b, _) = s.enroll("alice", 1, 4, |ids| Ok(issued(ids))).unwrap();
        assert_eq!(b, a[..1]);
        let (c, _) = s.enroll("alice", 3, 4, |ids| Ok(issued(ids))).unwrap();
        assert_eq!(c[..2], a[..]);
        assert_eq!(s.counts().unwrap(), (1, 3, 3));
        // Over quota, a failing issuer, a disabled user: nothing changes.
        assert!(matches!(
            s.enroll("alice", 5, 4, |ids| Ok(issued(ids))),
            Err(IssueError::Quota { .. })
        ));
        assert!(
            s.enroll("alice", 4, 4, |_| Err(IssueError::Other(Error::new("no"))))
                .is_err()
        );
        s.set_disabled("alice", true).unwrap();
        assert!(matches!(
            s.enroll("alice", 1, 4, |ids| Ok(issued(ids))),
            Err(IssueError::NotAllowed(_))
        ));
        assert!(matches!(
            s.enroll("bob", 1, 4, |ids| Ok(issued(ids))),
            Err(IssueError::NotAllowed(_))
        ));
        assert_eq!(s.counts().unwrap(), (1, 3, 3));
        assert_eq!(s.node_ids_of("alice").unwrap(), c);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
