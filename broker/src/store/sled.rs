//! The embedded default [`Store`]: a [sled](https://docs.rs/sled/0.34.7) database.
//!
//! # Layout
//!
//! One tree per kind of record; values are `serde_json` bytes unless said otherwise.
//!
//! | tree           | key                              | value                            |
//! |----------------|----------------------------------|----------------------------------|
//! | `tenants`      | tenant id                        | [`Tenant`]                       |
//! | `tokens`       | token id                         | [`TokenRecord`]                  |
//! | `certificates` | serial, lower-case hex           | [`CertificateRecord`]            |
//! | `revoked`      | serial, lower-case hex           | `{revoked_at, reason}`           |
//! | `audit`        | `seq` as `u64` big-endian        | [`AuditEntry`]                   |
//! | `meta`         | `user:` + key / `sys:audit_head` | raw bytes / `{seq, hash}`        |
//! | `counters`     | counter name                     | `u64` big-endian                 |
//!
//! The audit head (last `seq` and last `hash`) sits in `meta` under the reserved key
//! `sys:audit_head`; the keys given to [`Store::meta`] / [`Store::set_meta`] live under the
//! `user:` prefix, so no caller can overwrite it.
//!
//! # Atomicity
//!
//! Every write that touches more than one record (a certificate, its `revoked` entry, its audit
//! entry and the audit head, ...) is one sled transaction across the trees involved, so after a
//! crash either all of it is there or none of it, and the audit chain never has a gap. sled
//! serialises transactions and retries them on conflict. Durability comes from
//! [`Store::flush`].
//!
//! sled holds an exclusive lock on the database directory: a second process (or a second
//! [`SledStore::open`] in the same process) gets a [`StoreError::Backend`] saying so.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionResult, TransactionalTree,
};
use time::OffsetDateTime;

use super::{RevokedSerial, Store, StoreError, StoreResult};
use crate::model::{
    AUDIT_GENESIS, AuditDraft, AuditEntry, CertificateRecord, CertificateStatus, RevocationReason,
    Tenant, TokenRecord,
};

/// The reserved `meta` key of the audit head.
const AUDIT_HEAD_KEY: &[u8] = b"sys:audit_head";
/// The prefix of the `meta` keys callers set.
const USER_META_PREFIX: &[u8] = b"user:";

/// What a transaction closure returns: aborts carry a [`StoreError`].
type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// A [`Store`] backed by a sled database directory.
pub struct SledStore {
    /// Where the database lives (for messages).
    path: PathBuf,
    /// The database, for [`Store::flush`].
    db: sled::Db,
    tenants: sled::Tree,
    tokens: sled::Tree,
    certificates: sled::Tree,
    revoked: sled::Tree,
    audit: sled::Tree,
    meta: sled::Tree,
    counters: sled::Tree,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // sled's own Debug prints whole trees; the path is what identifies the store.
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The value of the `revoked` tree.
#[derive(Debug, Serialize, Deserialize)]
struct RevokedValue {
    #[serde(with = "time::serde::rfc3339")]
    revoked_at: OffsetDateTime,
    reason: RevocationReason,
}

/// The audit head: where the chain ends.
#[derive(Debug, Serialize, Deserialize)]
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
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| StoreError::Backend(format!("opening tree {name}: {e}")))
        };
        let store = SledStore {
            path: path.to_owned(),
            tenants: tree("tenants")?,
            tokens: tree("tokens")?,
            certificates: tree("certificates")?,
            revoked: tree("revoked")?,
            audit: tree("audit")?,
            meta: tree("meta")?,
            counters: tree("counters")?,
            db,
        };
        store.check_audit_head()?;
        Ok(store)
    }

    /// Checks that the audit head names the last entry of the audit log.
    fn check_audit_head(&self) -> StoreResult<()> {
        let head = match self.meta.get(AUDIT_HEAD_KEY).map_err(backend)? {
            Some(bytes) => Some(decode::<AuditHead>("meta", &label(AUDIT_HEAD_KEY), &bytes)?),
            None => None,
        };
        let last = match self.audit.last().map_err(backend)? {
            Some((key, bytes)) => {
                let entry = decode::<AuditEntry>("audit", &seq_label(&key), &bytes)?;
                Some(entry)
            }
            None => None,
        };
        match (head, last) {
            (None, None) => Ok(()),
            (Some(h), Some(e)) if h.seq == e.seq && h.hash == e.hash => Ok(()),
            (h, e) => Err(StoreError::Corrupt(format!(
                "audit head {:?} does not match the last audit entry {:?}",
                h.map(|h| h.seq),
                e.map(|e| e.seq)
            ))),
        }
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

/// A finished transaction's result.
fn finish<T>(r: TransactionResult<T, StoreError>) -> StoreResult<T> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    })
}

/// An abort inside a transaction.
fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
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

/// A stored record; bytes that do not decode are [`StoreError::Corrupt`], naming tree and key.
fn decode<T: DeserializeOwned>(tree: &str, key: &str, bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("{tree} tree, key {key}: {e}")))
}

/// A string key read back from a tree.
fn key_string(tree: &str, key: &[u8]) -> StoreResult<String> {
    String::from_utf8(key.to_vec())
        .map_err(|_| StoreError::Corrupt(format!("{tree} tree, key {}: not UTF-8", label(key))))
}

/// Every value of a tree, decoded, in key order; `keep` filters before they are collected.
fn all<T: DeserializeOwned>(
    tree: &sled::Tree,
    name: &str,
    keep: impl Fn(&T) -> bool,
) -> StoreResult<Vec<T>> {
    let mut out = Vec::new();
    for item in tree.iter() {
        let (key, bytes) = item.map_err(backend)?;
        let value: T = decode(name, &label(&key), &bytes)?;
        if keep(&value) {
            out.push(value);
        }
    }
    Ok(out)
}

/// Seals `draft` as the next audit entry, writes it and moves the head, inside a transaction.
fn append_tx(
    audit: &TransactionalTree,
    meta: &TransactionalTree,
    draft: &AuditDraft,
) -> TxResult<AuditEntry> {
    let head = match meta.get(AUDIT_HEAD_KEY)? {
        Some(bytes) => {
            decode::<AuditHead>("meta", &label(AUDIT_HEAD_KEY), &bytes).map_err(abort)?
        }
        None => AuditHead {
            seq: 0,
            hash: AUDIT_GENESIS.to_owned(),
        },
    };
    let seq = head
        .seq
        .checked_add(1)
        .ok_or_else(|| abort(StoreError::Corrupt("audit head seq at u64::MAX".into())))?;
    let key = seq.to_be_bytes();
    if audit.get(key)?.is_some() {
        return Err(abort(StoreError::Corrupt(format!(
            "audit head says seq {} but entry {seq} exists",
            head.seq
        ))));
    }
    let entry = draft.clone().seal(seq, &head.hash);
    audit.insert(&key[..], encode(&entry).map_err(abort)?)?;
    let head = AuditHead {
        seq,
        hash: entry.hash.clone(),
    };
    meta.insert(AUDIT_HEAD_KEY, encode(&head).map_err(abort)?)?;
    Ok(entry)
}

/// The `revoked` entry for a certificate stored revoked, if it is.
fn revoked_value(cert: &CertificateRecord) -> Option<RevokedValue> {
    match cert.status {
        CertificateStatus::Good => None,
        CertificateStatus::Revoked { revoked_at, reason } => {
            Some(RevokedValue { revoked_at, reason })
        }
    }
}

/// The `meta` key for a caller's key.
fn user_meta_key(key: &str) -> Vec<u8> {
    [USER_META_PREFIX, key.as_bytes()].concat()
}

impl SledStore {
    /// Writes a keyed record with its audit entry in one transaction; `replace` says whether an
    /// existing record may be overwritten (otherwise [`StoreError::Conflict`]).
    fn put_with_audit(
        &self,
        tree: &sled::Tree,
        what: &str,
        key: &str,
        value: Vec<u8>,
        replace: bool,
        audit: &AuditDraft,
    ) -> StoreResult<AuditEntry> {
        finish(
            (tree, &self.audit, &self.meta).transaction(|(t, a, m)| -> TxResult<AuditEntry> {
                if !replace && t.get(key.as_bytes())?.is_some() {
                    return Err(abort(StoreError::Conflict(format!(
                        "{what} {key:?} exists already"
                    ))));
                }
                t.insert(key.as_bytes(), value.as_slice())?;
                append_tx(a, m, audit)
            }),
        )
    }
}

impl Store for SledStore {
    fn insert_tenant(&self, tenant: &Tenant, audit: AuditDraft) -> StoreResult<AuditEntry> {
        let value = encode(tenant)?;
        self.put_with_audit(&self.tenants, "tenant", &tenant.id, value, false, &audit)
    }

    fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        match self.tenants.get(id).map_err(backend)? {
            Some(bytes) => decode("tenants", &label(id.as_bytes()), &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        all(&self.tenants, "tenants", |_| true)
    }

    fn insert_token(&self, token: &TokenRecord, audit: AuditDraft) -> StoreResult<AuditEntry> {
        let value = encode(token)?;
        self.put_with_audit(&self.tokens, "token", &token.id, value, false, &audit)
    }

    fn put_token(&self, token: &TokenRecord, audit: AuditDraft) -> StoreResult<AuditEntry> {
        let value = encode(token)?;
        self.put_with_audit(&self.tokens, "token", &token.id, value, true, &audit)
    }

    fn token(&self, id: &str) -> StoreResult<Option<TokenRecord>> {
        match self.tokens.get(id).map_err(backend)? {
            Some(bytes) => decode("tokens", &label(id.as_bytes()), &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn tokens(&self, tenant: &str) -> StoreResult<Vec<TokenRecord>> {
        all(&self.tokens, "tokens", |t: &TokenRecord| t.tenant == tenant)
    }

    fn revoke_token(
        &self,
        id: &str,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> StoreResult<TokenRecord> {
        finish((&self.tokens, &self.audit, &self.meta).transaction(
            |(t, a, m)| -> TxResult<TokenRecord> {
                let bytes = t
                    .get(id.as_bytes())?
                    .ok_or_else(|| abort(StoreError::NotFound))?;
                let mut token: TokenRecord =
                    decode("tokens", &label(id.as_bytes()), &bytes).map_err(abort)?;
                if token.revoked_at.is_some() {
                    return Err(abort(StoreError::AlreadyRevoked));
                }
                token.revoked_at = Some(at);
                t.insert(id.as_bytes(), encode(&token).map_err(abort)?)?;
                append_tx(a, m, &audit)?;
                Ok(token)
            },
        ))
    }

    fn insert_certificate(
        &self,
        cert: &CertificateRecord,
        audit: AuditDraft,
    ) -> StoreResult<AuditEntry> {
        let value = encode(cert)?;
        let revoked = revoked_value(cert).map(|r| encode(&r)).transpose()?;
        let key = cert.serial.as_bytes();
        finish(
            (&self.certificates, &self.revoked, &self.audit, &self.meta).transaction(
                |(c, r, a, m)| -> TxResult<AuditEntry> {
                    if c.get(key)?.is_some() {
                        return Err(abort(StoreError::Conflict(format!(
                            "certificate serial {} exists already",
                            cert.serial
                        ))));
                    }
                    c.insert(key, value.as_slice())?;
                    if let Some(rv) = &revoked {
                        // A record stored revoked is listed for the CRL like any other.
                        r.insert(key, rv.as_slice())?;
                    }
                    append_tx(a, m, &audit)
                },
            ),
        )
    }

    fn certificate(&self, serial: &str) -> StoreResult<Option<CertificateRecord>> {
        match self.certificates.get(serial).map_err(backend)? {
            Some(bytes) => decode("certificates", &label(serial.as_bytes()), &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn revoke_certificate(
        &self,
        serial: &str,
        at: OffsetDateTime,
        reason: RevocationReason,
        audit: AuditDraft,
    ) -> StoreResult<CertificateRecord> {
        let key = serial.as_bytes();
        let rv = encode(&RevokedValue {
            revoked_at: at,
            reason,
        })?;
        finish(
            (&self.certificates, &self.revoked, &self.audit, &self.meta).transaction(
                |(c, r, a, m)| -> TxResult<CertificateRecord> {
                    let bytes = c.get(key)?.ok_or_else(|| abort(StoreError::NotFound))?;
                    let mut cert: CertificateRecord =
                        decode("certificates", &label(key), &bytes).map_err(abort)?;
                    if matches!(cert.status, CertificateStatus::Revoked { .. }) {
                        return Err(abort(StoreError::AlreadyRevoked));
                    }
                    cert.status = CertificateStatus::Revoked {
                        revoked_at: at,
                        reason,
                    };
                    c.insert(key, encode(&cert).map_err(abort)?)?;
                    r.insert(key, rv.as_slice())?;
                    append_tx(a, m, &audit)?;
                    Ok(cert)
                },
            ),
        )
    }

    fn revoked(&self) -> StoreResult<Vec<RevokedSerial>> {
        let mut out = Vec::new();
        for item in self.revoked.iter() {
            let (key, bytes) = item.map_err(backend)?;
            let v: RevokedValue = decode("revoked", &label(&key), &bytes)?;
            out.push(RevokedSerial {
                serial: key_string("revoked", &key)?,
                revoked_at: v.revoked_at,
                reason: v.reason,
            });
        }
        Ok(out)
    }

    fn certificate_count(&self) -> StoreResult<u64> {
        Ok(self.certificates.len() as u64)
    }

    fn append_audit(&self, audit: AuditDraft) -> StoreResult<AuditEntry> {
        finish(
            (&self.audit, &self.meta)
                .transaction(|(a, m)| -> TxResult<AuditEntry> { append_tx(a, m, &audit) }),
        )
    }

    fn audit_entries(&self, from: u64, limit: usize) -> StoreResult<Vec<AuditEntry>> {
        let mut out = Vec::new();
        for item in self.audit.range(from.to_be_bytes()..).take(limit) {
            let (key, bytes) = item.map_err(backend)?;
            out.push(decode("audit", &seq_label(&key), &bytes)?);
        }
        Ok(out)
    }

    fn next_counter(&self, name: &str) -> StoreResult<u64> {
        let key = name.as_bytes();
        finish(self.counters.transaction(|c| -> TxResult<u64> {
            let current = match c.get(key)? {
                None => 0,
                Some(bytes) => match <[u8; 8]>::try_from(bytes.as_ref()) {
                    Ok(b) => u64::from_be_bytes(b),
                    Err(_) => {
                        return Err(abort(StoreError::Corrupt(format!(
                            "counters tree, key {}: {} bytes, not a u64",
                            label(key),
                            bytes.len()
                        ))));
                    }
                },
            };
            let next = current.checked_add(1).ok_or_else(|| {
                abort(StoreError::Backend(format!(
                    "counter {} overflowed",
                    label(key)
                )))
            })?;
            c.insert(key, &next.to_be_bytes()[..])?;
            Ok(next)
        }))
    }

    fn meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .meta
            .get(user_meta_key(key))
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn set_meta(&self, key: &str, value: &[u8]) -> StoreResult<()> {
        self.meta
            .insert(user_meta_key(key), value)
            .map_err(backend)?;
        Ok(())
    }

    fn flush(&self) -> StoreResult<()> {
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}
