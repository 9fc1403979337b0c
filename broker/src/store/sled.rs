//! The embedded default [`Store`]: a [sled](https://docs.rs/sled/0.34.7) database.
//!
//! # Layout
//!
//! Everything is in one sled tree, `postern`, under prefixed keys; values are `serde_json` bytes
//! unless said otherwise.
//!
//! | key                                  | value                     |
//! |--------------------------------------|---------------------------|
//! | `tenants/` + tenant id               | [`Tenant`]                |
//! | `tokens/` + token id                 | [`TokenRecord`]           |
//! | `certificates/` + serial (hex)       | [`CertificateRecord`]     |
//! | `revoked/` + serial (hex)            | `{revoked_at, reason}`    |
//! | `audit/` + `seq` as `u64` big-endian | [`AuditEntry`]            |
//! | `meta/user:` + key                   | raw bytes                 |
//! | `meta/sys:audit_head`                | `{seq, hash}`             |
//! | `counters/` + name                   | `u64` big-endian          |
//!
//! # Atomicity
//!
//! Writers take turns (one mutex): a writer reads what it needs, then applies all of its
//! records (a certificate, its `revoked` entry, its audit entry and the audit head, ...) as one
//! sled batch, which sled applies atomically. After a crash either all of a write is there or
//! none of it, and the audit chain never has a gap. One tree and batches rather than sled
//! transactions across trees: every audited write moves the same audit head, so transactions
//! would only conflict, and a batch costs a fraction of a transaction. Readers never wait.
//! Durability comes from [`Store::flush`].
//!
//! sled holds an exclusive lock on the database directory: a second process (or a second
//! [`SledStore::open`] in the same process) gets a [`StoreError::Backend`] saying so.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{RevokedSerial, Store, StoreError, StoreResult};
use crate::model::{
    AUDIT_GENESIS, AuditDraft, AuditEntry, CertificateRecord, CertificateStatus, RevocationReason,
    Tenant, TokenRecord,
};

/// The tree everything lives in.
const TREE: &str = "postern";
/// The key of the audit head.
const AUDIT_HEAD_KEY: &[u8] = b"meta/sys:audit_head";

/// The record kinds, as key prefixes (and names in messages).
const TENANTS: &str = "tenants";
const TOKENS: &str = "tokens";
const CERTIFICATES: &str = "certificates";
const REVOKED: &str = "revoked";
const AUDIT: &str = "audit";
const COUNTERS: &str = "counters";

fn key(kind: &str, id: &[u8]) -> Vec<u8> {
    [kind.as_bytes(), b"/", id].concat()
}

fn prefix(kind: &str) -> Vec<u8> {
    [kind.as_bytes(), b"/"].concat()
}

/// A [`Store`] backed by a sled database directory.
pub struct SledStore {
    /// Where the database lives (for messages).
    path: PathBuf,
    /// The database, for [`Store::flush`].
    db: sled::Db,
    tree: sled::Tree,
    /// The writers' turn, holding the audit head (where the chain ends).
    writer: Mutex<AuditHead>,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // sled's own Debug prints whole trees; the path is what identifies the store.
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The value of a `revoked/` key.
#[derive(Debug, Serialize, Deserialize)]
struct RevokedValue {
    #[serde(with = "time::serde::rfc3339")]
    revoked_at: OffsetDateTime,
    reason: RevocationReason,
}

/// The audit head: where the chain ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AuditHead {
    seq: u64,
    hash: String,
}

impl SledStore {
    /// Opens (creating if needed) the database at `path`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when sled cannot open it, in particular when another postern
    /// process holds the directory; [`StoreError::Corrupt`] when the audit head and the audit
    /// log disagree.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|e| open_error(path, e))?;
        let tree = db
            .open_tree(TREE)
            .map_err(|e| StoreError::Backend(format!("opening tree {TREE}: {e}")))?;
        let head = audit_head(&tree)?;
        Ok(SledStore {
            path: path.to_owned(),
            db,
            tree,
            writer: Mutex::new(head),
        })
    }

    fn write_turn(&self) -> StoreResult<MutexGuard<'_, AuditHead>> {
        self.writer.lock().map_err(|_| {
            StoreError::Backend("a writer panicked while holding the write lock".into())
        })
    }

    fn get<T: DeserializeOwned>(&self, kind: &str, id: &str) -> StoreResult<Option<T>> {
        match self.tree.get(key(kind, id.as_bytes())).map_err(backend)? {
            Some(bytes) => decode(kind, &label(id.as_bytes()), &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn exists(&self, kind: &str, id: &str) -> StoreResult<bool> {
        self.tree
            .contains_key(key(kind, id.as_bytes()))
            .map_err(backend)
    }

    /// Every value of a kind, decoded, in key order; `keep` filters before they are collected.
    fn all<T: DeserializeOwned>(
        &self,
        kind: &str,
        keep: impl Fn(&T) -> bool,
    ) -> StoreResult<Vec<T>> {
        let p = prefix(kind);
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&p) {
            let (k, bytes) = item.map_err(backend)?;
            let value: T = decode(kind, &label(&k[p.len()..]), &bytes)?;
            if keep(&value) {
                out.push(value);
            }
        }
        Ok(out)
    }

    /// Applies `batch` plus the next audit entry sealed from `draft`, atomically; moves the
    /// in-memory head only once sled has taken the batch.
    fn commit_with_audit(
        &self,
        head: &mut AuditHead,
        mut batch: sled::Batch,
        draft: AuditDraft,
    ) -> StoreResult<AuditEntry> {
        let seq = head
            .seq
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("audit head seq at u64::MAX".into()))?;
        let entry = draft.seal(seq, &head.hash);
        let next = AuditHead {
            seq,
            hash: entry.hash.clone(),
        };
        batch.insert(key(AUDIT, &seq.to_be_bytes()), encode(&entry)?);
        batch.insert(AUDIT_HEAD_KEY, encode(&next)?);
        self.tree.apply_batch(batch).map_err(backend)?;
        *head = next;
        Ok(entry)
    }

    /// Writes a keyed record with its audit entry; `replace` says whether an existing record
    /// may be overwritten (otherwise [`StoreError::Conflict`]).
    fn put_with_audit<T: Serialize>(
        &self,
        kind: &str,
        what: &str,
        id: &str,
        value: &T,
        replace: bool,
        audit: AuditDraft,
    ) -> StoreResult<AuditEntry> {
        let value = encode(value)?;
        let mut head = self.write_turn()?;
        if !replace && self.exists(kind, id)? {
            return Err(StoreError::Conflict(format!(
                "{what} {id:?} exists already"
            )));
        }
        let mut batch = sled::Batch::default();
        batch.insert(key(kind, id.as_bytes()), value);
        self.commit_with_audit(&mut head, batch, audit)
    }
}

/// Reads the audit head and checks that it names the last entry of the audit log.
fn audit_head(tree: &sled::Tree) -> StoreResult<AuditHead> {
    let head = match tree.get(AUDIT_HEAD_KEY).map_err(backend)? {
        Some(bytes) => Some(decode::<AuditHead>("meta", &label(AUDIT_HEAD_KEY), &bytes)?),
        None => None,
    };
    let last = match tree.scan_prefix(prefix(AUDIT)).next_back() {
        Some(item) => {
            let (k, bytes) = item.map_err(backend)?;
            Some(decode::<AuditEntry>(
                AUDIT,
                &seq_label(&k[AUDIT.len() + 1..]),
                &bytes,
            )?)
        }
        None => None,
    };
    match (head, last) {
        (None, None) => Ok(AuditHead {
            seq: 0,
            hash: AUDIT_GENESIS.to_owned(),
        }),
        (Some(h), Some(e)) if h.seq == e.seq && h.hash == e.hash => Ok(h),
        (h, e) => Err(StoreError::Corrupt(format!(
            "audit head {:?} does not match the last audit entry {:?}",
            h.map(|h| h.seq),
            e.map(|e| e.seq)
        ))),
    }
}

/// The error for a failed open; sled's lock failure says which directory is busy.
fn open_error(path: &Path, e: sled::Error) -> StoreError {
    match &e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Backend(format!(
                "the data directory {} is in use by another postern process (its lock is held): {io}",
                path.display()
            ))
        }
        _ => StoreError::Backend(format!("opening {}: {e}", path.display())),
    }
}

/// A sled failure.
fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A key for messages: the text if it is UTF-8, hex otherwise.
fn label(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("0x{}", hex::encode(key)),
    }
}

/// An audit key for messages: the sequence number if it is 8 bytes.
fn seq_label(key: &[u8]) -> String {
    match <[u8; 8]>::try_from(key) {
        Ok(b) => format!("seq {}", u64::from_be_bytes(b)),
        Err(_) => label(key),
    }
}

/// A record as stored.
fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(format!("encoding a record: {e}")))
}

/// A stored record; bytes that do not decode are [`StoreError::Corrupt`], naming kind and key.
fn decode<T: DeserializeOwned>(kind: &str, key: &str, bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("{kind} record, key {key}: {e}")))
}

/// The `revoked/` value for a certificate stored revoked, if it is.
fn revoked_value(cert: &CertificateRecord) -> Option<RevokedValue> {
    match cert.status {
        CertificateStatus::Good => None,
        CertificateStatus::Revoked { revoked_at, reason } => {
            Some(RevokedValue { revoked_at, reason })
        }
    }
}

/// The key for a caller's metadata key.
fn user_meta_key(k: &str) -> Vec<u8> {
    [b"meta/user:".as_slice(), k.as_bytes()].concat()
}

impl Store for SledStore {
    fn insert_tenant(&self, tenant: &Tenant, audit: AuditDraft) -> StoreResult<AuditEntry> {
        self.put_with_audit(TENANTS, "tenant", &tenant.id, tenant, false, audit)
    }

    fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        self.get(TENANTS, id)
    }

    fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.all(TENANTS, |_| true)
    }

    fn insert_token(&self, token: &TokenRecord, audit: AuditDraft) -> StoreResult<AuditEntry> {
        self.put_with_audit(TOKENS, "token", &token.id, token, false, audit)
    }

    fn put_token(&self, token: &TokenRecord, audit: AuditDraft) -> StoreResult<AuditEntry> {
        self.put_with_audit(TOKENS, "token", &token.id, token, true, audit)
    }

    fn token(&self, id: &str) -> StoreResult<Option<TokenRecord>> {
        self.get(TOKENS, id)
    }

    fn tokens(&self, tenant: &str) -> StoreResult<Vec<TokenRecord>> {
        self.all(TOKENS, |t: &TokenRecord| t.tenant == tenant)
    }

    fn revoke_token(
        &self,
        id: &str,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> StoreResult<TokenRecord> {
        let mut head = self.write_turn()?;
        let mut token: TokenRecord = self.get(TOKENS, id)?.ok_or(StoreError::NotFound)?;
        if token.revoked_at.is_some() {
            return Err(StoreError::AlreadyRevoked);
        }
        token.revoked_at = Some(at);
        let mut batch = sled::Batch::default();
        batch.insert(key(TOKENS, id.as_bytes()), encode(&token)?);
        self.commit_with_audit(&mut head, batch, audit)?;
        Ok(token)
    }

    fn insert_certificate(
        &self,
        cert: &CertificateRecord,
        audit: AuditDraft,
    ) -> StoreResult<AuditEntry> {
        let value = encode(cert)?;
        let revoked = revoked_value(cert).map(|r| encode(&r)).transpose()?;
        let id = cert.serial.as_bytes();
        let mut head = self.write_turn()?;
        if self.exists(CERTIFICATES, &cert.serial)? {
            return Err(StoreError::Conflict(format!(
                "certificate serial {} exists already",
                cert.serial
            )));
        }
        let mut batch = sled::Batch::default();
        batch.insert(key(CERTIFICATES, id), value);
        if let Some(rv) = revoked {
            // a record stored revoked is listed for the CRL like any other
            batch.insert(key(REVOKED, id), rv);
        }
        self.commit_with_audit(&mut head, batch, audit)
    }

    fn certificate(&self, serial: &str) -> StoreResult<Option<CertificateRecord>> {
        self.get(CERTIFICATES, serial)
    }

    fn revoke_certificate(
        &self,
        serial: &str,
        at: OffsetDateTime,
        reason: RevocationReason,
        audit: AuditDraft,
    ) -> StoreResult<CertificateRecord> {
        let rv = encode(&RevokedValue {
            revoked_at: at,
            reason,
        })?;
        let mut head = self.write_turn()?;
        let mut cert: CertificateRecord = self
            .get(CERTIFICATES, serial)?
            .ok_or(StoreError::NotFound)?;
        if matches!(cert.status, CertificateStatus::Revoked { .. }) {
            return Err(StoreError::AlreadyRevoked);
        }
        cert.status = CertificateStatus::Revoked {
            revoked_at: at,
            reason,
        };
        let mut batch = sled::Batch::default();
        batch.insert(key(CERTIFICATES, serial.as_bytes()), encode(&cert)?);
        batch.insert(key(REVOKED, serial.as_bytes()), rv);
        self.commit_with_audit(&mut head, batch, audit)?;
        Ok(cert)
    }

    fn revoked(&self) -> StoreResult<Vec<RevokedSerial>> {
        let p = prefix(REVOKED);
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&p) {
            let (k, bytes) = item.map_err(backend)?;
            let id = &k[p.len()..];
            let v: RevokedValue = decode(REVOKED, &label(id), &bytes)?;
            let serial = String::from_utf8(id.to_vec()).map_err(|_| {
                StoreError::Corrupt(format!("{REVOKED} record, key {}: not UTF-8", label(id)))
            })?;
            out.push(RevokedSerial {
                serial,
                revoked_at: v.revoked_at,
                reason: v.reason,
            });
        }
        Ok(out)
    }

    fn certificate_count(&self) -> StoreResult<u64> {
        let mut n = 0u64;
        for item in self.tree.scan_prefix(prefix(CERTIFICATES)).keys() {
            item.map_err(backend)?;
            n += 1;
        }
        Ok(n)
    }

    fn append_audit(&self, audit: AuditDraft) -> StoreResult<AuditEntry> {
        let mut head = self.write_turn()?;
        self.commit_with_audit(&mut head, sled::Batch::default(), audit)
    }

    fn audit_entries(&self, from: u64, limit: usize) -> StoreResult<Vec<AuditEntry>> {
        let start = key(AUDIT, &from.max(1).to_be_bytes());
        let p = prefix(AUDIT);
        let mut out = Vec::new();
        for item in self.tree.range(start..).take(limit) {
            let (k, bytes) = item.map_err(backend)?;
            if !k.starts_with(&p) {
                break;
            }
            out.push(decode(AUDIT, &seq_label(&k[p.len()..]), &bytes)?);
        }
        Ok(out)
    }

    fn next_counter(&self, name: &str) -> StoreResult<u64> {
        let _turn = self.write_turn()?;
        let k = key(COUNTERS, name.as_bytes());
        let current = match self.tree.get(&k).map_err(backend)? {
            None => 0,
            Some(bytes) => match <[u8; 8]>::try_from(bytes.as_ref()) {
                Ok(b) => u64::from_be_bytes(b),
                Err(_) => {
                    return Err(StoreError::Corrupt(format!(
                        "{COUNTERS} record, key {}: {} bytes, not a u64",
                        label(name.as_bytes()),
                        bytes.len()
                    )));
                }
            },
        };
        let next = current.checked_add(1).ok_or_else(|| {
            StoreError::Backend(format!("counter {} overflowed", label(name.as_bytes())))
        })?;
        self.tree
            .insert(k, &next.to_be_bytes()[..])
            .map_err(backend)?;
        Ok(next)
    }

    fn meta(&self, k: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .tree
            .get(user_meta_key(k))
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn set_meta(&self, k: &str, value: &[u8]) -> StoreResult<()> {
        let _turn = self.write_turn()?;
        self.tree.insert(user_meta_key(k), value).map_err(backend)?;
        Ok(())
    }

    fn flush(&self) -> StoreResult<()> {
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}
