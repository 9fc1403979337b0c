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
//! | `doc/` + kind + `/` + id             | the caller's bytes ([`DocKind`]) |
//!
//! # Atomicity and durability (group commit)
//!
//! Every write goes to one writer thread. It takes whatever writes are waiting (up to
//! [`MAX_GROUP`]), applies each against the tree plus what the group has staged so far, stages
//! the records of those that succeed (a certificate, its `revoked` entry, its audit entry and
//! the audit head, ...), applies the whole group as one sled batch (atomic), flushes it to disk
//! once, and only then answers every writer. So a write returns once it is durable; after a
//! crash either all of a write is there or none of it, and the audit chain never has a gap; and
//! under load one batch and one flush serve many writers. A write that fails (a conflict, a
//! missing record) stages nothing and does not affect the others. Readers read the tree
//! directly and never wait.
//!
//! sled holds an exclusive lock on the database directory: a second process (or a second
//! [`SledStore::open`] in the same process) gets a [`StoreError::Backend`] saying so.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    DocKind, DocTxn, Expect, PendingWrite, RevokedSerial, Store, StoreError, StoreResult,
    check_failed,
};
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

/// The most writes one group applies and flushes together.
pub const MAX_GROUP: usize = 512;

/// A [`Store`] backed by a sled database directory.
pub struct SledStore {
    /// Where the database lives (for messages).
    path: PathBuf,
    /// The database, for [`Store::flush`].
    db: sled::Db,
    tree: sled::Tree,
    /// To the writer thread.
    writes: Option<mpsc::Sender<Pending>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // closing the channel ends the writer; joining it releases its handle on the database
        drop(self.writes.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// A write on its way to the writer thread, with where to send its outcome.
struct Pending {
    op: Op,
    reply: Reply,
}

/// Where a writer waits: a blocked thread, or a task awaiting a future.
enum Reply {
    Blocking(mpsc::SyncSender<StoreResult<Done>>),
    Async(tokio::sync::oneshot::Sender<StoreResult<Done>>),
    /// Nobody waits: a failure is logged.
    Detached,
}

impl Reply {
    fn send(self, outcome: StoreResult<Done>) {
        // a writer that went away (a dropped future) no longer needs the answer
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(outcome);
            }
            Reply::Async(tx) => {
                let _ = tx.send(outcome);
            }
            Reply::Detached => {
                if let Err(e) = outcome {
                    tracing::error!(error = %e, "detached write failed");
                }
            }
        }
    }
}

/// The writes the store knows.
enum Op {
    Put {
        kind: &'static str,
        what: &'static str,
        id: String,
        value: Vec<u8>,
        replace: bool,
        audit: AuditDraft,
    },
    RevokeToken {
        id: String,
        at: OffsetDateTime,
        audit: AuditDraft,
    },
    InsertCertificate {
        serial: String,
        value: Vec<u8>,
        revoked: Option<Vec<u8>>,
        audit: AuditDraft,
    },
    RevokeCertificate {
        serial: String,
        at: OffsetDateTime,
        reason: RevocationReason,
        audit: AuditDraft,
    },
    Audit(AuditDraft),
    Docs(Box<DocWrite>),
    Counter(String),
    Meta(Vec<u8>, Vec<u8>),
}

/// A document transaction with its certificate already encoded (by the caller's thread, not
/// the writer's): serial, record, `revoked/` value.
struct DocWrite {
    txn: DocTxn,
    certificate: Option<(String, Vec<u8>, Option<Vec<u8>>)>,
}

impl DocWrite {
    fn new(mut txn: DocTxn) -> StoreResult<Box<Self>> {
        let certificate = match txn.certificate.take() {
            Some(c) => Some((
                c.serial.clone(),
                encode(&c)?,
                revoked_value(&c).map(|r| encode(&r)).transpose()?,
            )),
            None => None,
        };
        Ok(Box::new(DocWrite { txn, certificate }))
    }
}

/// What a write hands back.
enum Done {
    Audit(AuditEntry),
    Token(TokenRecord),
    Certificate(CertificateRecord),
    Counter(u64),
    MaybeAudit(Option<AuditEntry>),
    Unit,
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
    /// The last entry's time (absent in heads written before it was kept).
    #[serde(default, with = "time::serde::rfc3339::option")]
    time: Option<time::OffsetDateTime>,
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
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            tree: tree.clone(),
            head,
        };
        let handle = std::thread::Builder::new()
            .name("postern-sled-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Backend(format!("starting the writer thread: {e}")))?;
        Ok(SledStore {
            path: path.to_owned(),
            db,
            tree,
            writes: Some(tx),
            writer: Some(handle),
        })
    }

    /// Hands a write to the writer thread and waits until it is durable (or refused).
    fn write(&self, op: Op) -> StoreResult<Done> {
        let (reply, outcome) = mpsc::sync_channel(1);
        self.submit(op, Reply::Blocking(reply))?;
        outcome.recv().map_err(|_| writer_gone())?
    }

    /// Hands a write to the writer thread; the future resolves once it is durable.
    fn write_async(&self, op: Op) -> PendingWrite<Done> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let submitted = self.submit(op, Reply::Async(reply));
        Box::pin(async move {
            submitted?;
            outcome.await.map_err(|_| writer_gone())?
        })
    }

    fn submit(&self, op: Op, reply: Reply) -> StoreResult<()> {
        self.writes
            .as_ref()
            .ok_or_else(writer_gone)?
            .send(Pending { op, reply })
            .map_err(|_| writer_gone())
    }

    fn get<T: DeserializeOwned>(&self, kind: &str, id: &str) -> StoreResult<Option<T>> {
        match self.tree.get(key(kind, id.as_bytes())).map_err(backend)? {
            Some(bytes) => decode(kind, &label(id.as_bytes()), &bytes).map(Some),
            None => Ok(None),
        }
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

    fn put_with_audit<T: Serialize>(
        &self,
        kind: &'static str,
        what: &'static str,
        id: &str,
        value: &T,
        replace: bool,
        audit: AuditDraft,
    ) -> StoreResult<AuditEntry> {
        match self.write(Op::Put {
            kind,
            what,
            id: id.to_owned(),
            value: encode(value)?,
            replace,
            audit,
        })? {
            Done::Audit(e) => Ok(e),
            _ => Err(unexpected()),
        }
    }
}

fn writer_gone() -> StoreError {
    StoreError::Backend("the store's writer thread has stopped".into())
}

fn unexpected() -> StoreError {
    StoreError::Backend("the writer answered with the wrong kind of outcome".into())
}

/// The writer thread's state: the database and where the audit chain ends.
struct Writer {
    db: sled::Db,
    tree: sled::Tree,
    head: AuditHead,
}

/// One group: the batch being built, and what it has staged (so later writes of the same group
/// see earlier ones). Values are shared (`IVec`), not copied.
#[derive(Default)]
struct Group {
    batch: sled::Batch,
    /// `None` is a removal.
    staged: HashMap<Vec<u8>, Option<sled::IVec>>,
}

impl Group {
    /// Stages a value, or a removal (`None`).
    fn put(&mut self, k: Vec<u8>, v: Option<sled::IVec>) {
        match &v {
            Some(v) => self.batch.insert(k.clone(), v.clone()),
            None => self.batch.remove(k.clone()),
        }
        self.staged.insert(k, v);
    }
}

/// What one write stages; it joins the group only if the write succeeds.
type Staged = Vec<(Vec<u8>, Option<sled::IVec>)>;

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Pending>) {
        while let Ok(first) = rx.recv() {
            let mut pending = vec![first];
            while pending.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(p) => pending.push(p),
                    Err(_) => break,
                }
            }
            let start_head = self.head.clone();
            let mut group = Group::default();
            let mut outcomes: Vec<StoreResult<Done>> = Vec::with_capacity(pending.len());
            let mut replies = Vec::with_capacity(pending.len());
            for p in pending {
                // an op stages its records only when all of them are ready
                let mut staged = Staged::new();
                let head = self.head.clone();
                let outcome = self.apply(p.op, &group, &mut staged);
                match &outcome {
                    Ok(_) => {
                        for (k, v) in staged {
                            group.put(k, v);
                        }
                    }
                    Err(_) => self.head = head,
                }
                outcomes.push(outcome);
                replies.push(p.reply);
            }
            let committed = self
                .tree
                .apply_batch(group.batch)
                .and_then(|()| self.db.flush().map(drop));
            if let Err(e) = committed {
                self.head = start_head;
                let msg = format!("writing to disk: {e}");
                outcomes = replies
                    .iter()
                    .map(|_| Err(StoreError::Backend(msg.clone())))
                    .collect();
            }
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                reply.send(outcome);
            }
        }
    }

    fn read(&self, group: &Group, k: &[u8]) -> StoreResult<Option<sled::IVec>> {
        if let Some(v) = group.staged.get(k) {
            return Ok(v.clone());
        }
        self.tree.get(k).map_err(backend)
    }

    fn read_record<T: DeserializeOwned>(
        &self,
        group: &Group,
        kind: &str,
        id: &str,
    ) -> StoreResult<Option<T>> {
        match self.read(group, &key(kind, id.as_bytes()))? {
            Some(bytes) => decode(kind, &label(id.as_bytes()), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Stages the next audit entry sealed from `draft` and moves the head.
    fn seal(&mut self, staged: &mut Staged, mut draft: AuditDraft) -> StoreResult<AuditEntry> {
        // entries are in time order: a draft made before the last entry was sealed takes its time
        if let Some(t) = self.head.time {
            draft.time = draft.time.max(t);
        }
        let seq = self
            .head
            .seq
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("audit head seq at u64::MAX".into()))?;
        let (entry, json) = draft.seal_json(seq, &self.head.hash);
        let next = AuditHead {
            seq,
            hash: entry.hash.clone(),
            time: Some(entry.time),
        };
        staged.push((key(AUDIT, &seq.to_be_bytes()), Some(json.into())));
        staged.push((AUDIT_HEAD_KEY.to_vec(), Some(encode(&next)?.into())));
        self.head = next;
        Ok(entry)
    }

    fn apply(&mut self, op: Op, group: &Group, staged: &mut Staged) -> StoreResult<Done> {
        match op {
            Op::Put {
                kind,
                what,
                id,
                value,
                replace,
                audit,
            } => {
                let k = key(kind, id.as_bytes());
                if !replace && self.read(group, &k)?.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "{what} {id:?} exists already"
                    )));
                }
                staged.push((k, Some(value.into())));
                Ok(Done::Audit(self.seal(staged, audit)?))
            }
            Op::RevokeToken { id, at, audit } => {
                let mut token: TokenRecord = self
                    .read_record(group, TOKENS, &id)?
                    .ok_or(StoreError::NotFound)?;
                if token.revoked_at.is_some() {
                    return Err(StoreError::AlreadyRevoked);
                }
                token.revoked_at = Some(at);
                staged.push((key(TOKENS, id.as_bytes()), Some(encode(&token)?.into())));
                self.seal(staged, audit)?;
                Ok(Done::Token(token))
            }
            Op::InsertCertificate {
                serial,
                value,
                revoked,
                audit,
            } => {
                let k = key(CERTIFICATES, serial.as_bytes());
                if self.read(group, &k)?.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "certificate serial {serial} exists already"
                    )));
                }
                staged.push((k, Some(value.into())));
                if let Some(rv) = revoked {
                    // a record stored revoked is listed for the CRL like any other
                    staged.push((key(REVOKED, serial.as_bytes()), Some(rv.into())));
                }
                Ok(Done::Audit(self.seal(staged, audit)?))
            }
            Op::RevokeCertificate {
                serial,
                at,
                reason,
                audit,
            } => {
                let mut cert: CertificateRecord = self
                    .read_record(group, CERTIFICATES, &serial)?
                    .ok_or(StoreError::NotFound)?;
                if matches!(cert.status, CertificateStatus::Revoked { .. }) {
                    return Err(StoreError::AlreadyRevoked);
                }
                cert.status = CertificateStatus::Revoked {
                    revoked_at: at,
                    reason,
                };
                staged.push((
                    key(CERTIFICATES, serial.as_bytes()),
                    Some(encode(&cert)?.into()),
                ));
                staged.push((
                    key(REVOKED, serial.as_bytes()),
                    Some(
                        encode(&RevokedValue {
                            revoked_at: at,
                            reason,
                        })?
                        .into(),
                    ),
                ));
                self.seal(staged, audit)?;
                Ok(Done::Certificate(cert))
            }
            Op::Audit(draft) => Ok(Done::Audit(self.seal(staged, draft)?)),
            Op::Docs(write) => {
                let DocWrite { txn, certificate } = *write;
                for (kind, id, expect) in &txn.checks {
                    let current = self.read(group, &doc_key(*kind, id))?;
                    let holds = match (expect, current) {
                        (Expect::Absent, c) => c.is_none(),
                        (Expect::Bytes(b), Some(c)) => c.as_ref() == b.as_slice(),
                        (Expect::Bytes(_), None) => false,
                    };
                    if !holds {
                        return Err(check_failed(*kind, id, expect));
                    }
                }
                for (kind, id, value) in txn.writes {
                    let value = value.filter(|v| !v.is_empty()).map(sled::IVec::from);
                    staged.push((doc_key(kind, &id), value));
                }
                if let Some((serial, value, revoked)) = certificate {
                    let k = key(CERTIFICATES, serial.as_bytes());
                    if self.read(group, &k)?.is_some() {
                        return Err(StoreError::Conflict(format!(
                            "certificate serial {serial} exists already"
                        )));
                    }
                    staged.push((k, Some(value.into())));
                    if let Some(rv) = revoked {
                        staged.push((key(REVOKED, serial.as_bytes()), Some(rv.into())));
                    }
                }
                let entry = match txn.audit {
                    Some(a) => Some(self.seal(staged, a)?),
                    None => None,
                };
                Ok(Done::MaybeAudit(entry))
            }
            Op::Counter(name) => {
                let k = key(COUNTERS, name.as_bytes());
                let current = match self.read(group, &k)? {
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
                staged.push((k, Some(next.to_be_bytes().to_vec().into())));
                Ok(Done::Counter(next))
            }
            Op::Meta(k, v) => {
                staged.push((k, Some(v.into())));
                Ok(Done::Unit)
            }
        }
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
            time: None,
        }),
        (Some(h), Some(e)) if h.seq == e.seq && h.hash == e.hash => Ok(AuditHead {
            time: Some(e.time),
            ..h
        }),
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

/// The key of a document.
fn doc_key(kind: DocKind, id: &str) -> Vec<u8> {
    [
        b"doc/".as_slice(),
        kind.as_str().as_bytes(),
        b"/",
        id.as_bytes(),
    ]
    .concat()
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
        match self.write(Op::RevokeToken {
            id: id.to_owned(),
            at,
            audit,
        })? {
            Done::Token(t) => Ok(t),
            _ => Err(unexpected()),
        }
    }

    fn insert_certificate(
        &self,
        cert: &CertificateRecord,
        audit: AuditDraft,
    ) -> StoreResult<AuditEntry> {
        match self.write(Op::InsertCertificate {
            serial: cert.serial.clone(),
            value: encode(cert)?,
            revoked: revoked_value(cert).map(|r| encode(&r)).transpose()?,
            audit,
        })? {
            Done::Audit(e) => Ok(e),
            _ => Err(unexpected()),
        }
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
        match self.write(Op::RevokeCertificate {
            serial: serial.to_owned(),
            at,
            reason,
            audit,
        })? {
            Done::Certificate(c) => Ok(c),
            _ => Err(unexpected()),
        }
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
        match self.write(Op::Audit(audit))? {
            Done::Audit(e) => Ok(e),
            _ => Err(unexpected()),
        }
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
        match self.write(Op::Counter(name.to_owned()))? {
            Done::Counter(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    fn meta(&self, k: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .tree
            .get(user_meta_key(k))
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn set_meta(&self, k: &str, value: &[u8]) -> StoreResult<()> {
        match self.write(Op::Meta(user_meta_key(k), value.to_vec()))? {
            Done::Unit => Ok(()),
            _ => Err(unexpected()),
        }
    }

    fn flush(&self) -> StoreResult<()> {
        self.db.flush().map_err(backend)?;
        Ok(())
    }

    fn doc(&self, kind: DocKind, id: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .tree
            .get(doc_key(kind, id))
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn docs(
        &self,
        kind: DocKind,
        prefix: &str,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let base = doc_key(kind, "").len();
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(doc_key(kind, prefix)).take(limit) {
            let (k, v) = item.map_err(backend)?;
            let id = String::from_utf8(k[base..].to_vec()).map_err(|_| {
                StoreError::Corrupt(format!(
                    "{} document key {}: not UTF-8",
                    kind.as_str(),
                    label(&k[base..])
                ))
            })?;
            out.push((id, v.to_vec()));
        }
        Ok(out)
    }

    fn commit(&self, txn: DocTxn) -> StoreResult<Option<AuditEntry>> {
        match self.write(Op::Docs(DocWrite::new(txn)?))? {
            Done::MaybeAudit(e) => Ok(e),
            _ => Err(unexpected()),
        }
    }

    fn commit_detached(&self, txn: DocTxn) {
        let submitted = DocWrite::new(txn).and_then(|w| self.submit(Op::Docs(w), Reply::Detached));
        if let Err(e) = submitted {
            tracing::error!(error = %e, "detached write not submitted");
        }
    }

    fn commit_async(&self, txn: DocTxn) -> PendingWrite<Option<AuditEntry>> {
        let pending = match DocWrite::new(txn) {
            Ok(w) => self.write_async(Op::Docs(w)),
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        Box::pin(async move {
            match pending.await? {
                Done::MaybeAudit(e) => Ok(e),
                _ => Err(unexpected()),
            }
        })
    }
}
