//! The signed feed: per tenant, an append-only log of device posture records that gateways
//! follow and check offline.
//!
//! Each tenant's log is an RFC 9162 Merkle tree ([`postern_certs::merkle`]) whose leaves are
//! the canonical JSON of `{seq, tenant, device_id, at, record}` ([`leaf`]); a leaf's sequence
//! number is its index. Stored as documents: [`DocKind::FeedEntry`] `tenant/{seq:020}` holds
//! the leaf bytes, [`DocKind::FeedIndex`] `tenant/device_id` the device's newest sequence
//! number. The tree itself lives in memory, rebuilt from the stored entries at [`Feed::open`].
//!
//! Appending is for whoever writes posture records: [`Feed::appender`] takes the tenant's
//! append lock and hands out sequence numbers; [`Appender::stage`] adds a leaf's documents to
//! the caller's own [`DocTxn`] (so the posture record, the feed entry and the audit entry
//! commit together); once the caller's commit succeeded, [`Appender::committed`] adds the
//! leaves to the tree. An appender dropped without it adds nothing. Before it hands out a
//! number, an appender reads the store for entries the tree lacks (a commit whose caller never
//! said so) and adds them, so the tree never falls behind the store for long, and every entry
//! put is checked absent first, so no sequence number is ever written twice.
//!
//! Checkpoints ([`Feed::checkpoint`]) are signed twice, as a C2SP signed note (Ed25519, key
//! name and origin `<origin>/feed/<tenant>`) and as an ES256 JWS, both with the broker's active
//! [`Keys`]; they are re-signed when the size changes, when the signing keys rotate, or when the
//! one at hand is older than the refresh age (5 minutes by default), so a follower can demand
//! freshness.
//!
//! **Architecture Invariant:** a feed entry is on disk before it is in a tree, and a tree
//! holds exactly the entries `0..size` on disk.

pub mod access;
pub mod leaf;

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use postern_certs::checkpoint::{self, Checkpoint};
use postern_certs::merkle::{Hash, MerkleTree, leaf_hash};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use tokio::sync::OwnedMutexGuard;

use super::error::{DomainError, DomainResult, ErrorKind};
use super::keys::{JwsAlg, KeyKind, Keys};
use crate::store::{DocKind, DocTxn, Store};

/// The most entries one [`Feed::entries`] call returns.
pub const MAX_ENTRIES: u64 = 1000;

/// A checkpoint older than this is signed again when asked for.
pub const CHECKPOINT_REFRESH: Duration = Duration::minutes(5);

/// How long a per-device statement is valid.
pub const STATEMENT_LIFETIME: Duration = Duration::minutes(10);

/// The `typ` of a per-device statement JWS.
pub const STATEMENT_TYP: &str = "postern-device-statement+jwt";

/// Entries read per store call while rebuilding a tree (ids sharing all but their last four
/// digits).
const REBUILD_PAGE: usize = 10_000;

/// The feeds of every tenant.
pub struct Feed {
    store: Arc<dyn Store>,
    keys: Arc<Keys>,
    origin: String,
    refresh: Duration,
    logs: RwLock<HashMap<String, Arc<TenantLog>>>,
}

impl fmt::Debug for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("origin", &self.origin)
            .field("tenants", &self.read_logs().len())
            .finish_non_exhaustive()
    }
}

/// One tenant's log.
struct TenantLog {
    tenant: String,
    /// Held by the one [`Appender`] of the tenant.
    append: Arc<tokio::sync::Mutex<()>>,
    tree: RwLock<MerkleTree>,
    /// The last checkpoint signed.
    signed: Mutex<Option<SignedCheckpoint>>,
}

/// A checkpoint with its two signed forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// What is signed.
    pub checkpoint: Checkpoint,
    /// The C2SP signed note (Ed25519).
    pub note: String,
    /// The compact JWS (ES256).
    pub jws: String,
    /// The kid of the Ed25519 key that signed the note.
    pub note_kid: String,
    /// The kid of the ES256 key that signed the JWS.
    pub jws_kid: String,
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number (leaf index).
    pub seq: u64,
    /// The leaf bytes (canonical JSON).
    pub leaf: Vec<u8>,
}

impl Entry {
    /// The leaf as JSON.
    ///
    /// # Errors
    /// Internal when the stored bytes are not JSON.
    pub fn value(&self) -> DomainResult<Value> {
        serde_json::from_slice(&self.leaf)
            .map_err(|e| DomainError::internal(format!("feed entry {}: {e}", self.seq)))
    }
}

/// A device's newest entry, proven included in a checkpoint, with a signed statement.
#[derive(Debug, Clone)]
pub struct DeviceProof {
    /// The entry.
    pub entry: Entry,
    /// Its RFC 9162 leaf hash.
    pub leaf_hash: Hash,
    /// The record it carries.
    pub record: Value,
    /// The checkpoint the proof is for.
    pub checkpoint: SignedCheckpoint,
    /// The inclusion proof of `entry.seq` in the tree of `checkpoint.checkpoint.size`.
    pub inclusion: Vec<Hash>,
    /// ES256 JWS (`typ` [`STATEMENT_TYP`]) of `{iss, tenant, device_id, seq, leaf_hash,
    /// tree_size, iat, exp, record}`, valid for [`STATEMENT_LIFETIME`].
    pub statement: String,
}

impl Feed {
    /// The feeds kept in `store`, signed with `keys`, for the log origins
    /// `<origin>/feed/<tenant>`. Rebuilds every tenant's tree from its stored entries.
    ///
    /// # Errors
    /// Malformed when `origin` is empty or holds whitespace, `+` or control characters;
    /// internal when the store cannot be read or its entries are not a gapless sequence.
    pub fn open(store: Arc<dyn Store>, keys: Arc<Keys>, origin: String) -> DomainResult<Feed> {
        check_origin(&origin)?;
        let feed = Feed {
            store,
            keys,
            origin,
            refresh: CHECKPOINT_REFRESH,
            logs: RwLock::new(HashMap::new()),
        };
        let mut logs = HashMap::new();
        for t in feed.store.tenants()? {
            let tree = feed.rebuild(&t.id)?;
            logs.insert(t.id.clone(), Arc::new(TenantLog::new(&t.id, tree)));
        }
        *feed.logs.write().unwrap_or_else(|p| p.into_inner()) = logs;
        Ok(feed)
    }

    /// Sets the age after which a checkpoint is signed anew (default [`CHECKPOINT_REFRESH`]).
    #[must_use]
    pub fn with_checkpoint_refresh(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// The origin given at open (`<origin>/feed/<tenant>` names each log).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The log origin of `tenant`: `<origin>/feed/<tenant>`.
    pub fn log_origin(&self, tenant: &str) -> String {
        format!("{}/feed/{tenant}", self.origin)
    }

    /// The signing keys.
    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    /// Takes `tenant`'s append lock (waiting for the appender that holds it) and returns an
    /// appender that hands out the next sequence numbers. Hold it across your commit.
    ///
    /// # Errors
    /// Malformed for a tenant id that is not one; NotFound when the tenant does not exist;
    /// internal when the store cannot be read.
    pub async fn appender(&self, tenant: &str) -> DomainResult<Appender<'_>> {
        super::tenancy::check_tenant_id(tenant)?;
        let log = match self.log(tenant) {
            Some(l) => l,
            None => {
                if self.store.tenant(tenant)?.is_none() {
                    return Err(DomainError::new(
                        ErrorKind::NotFound,
                        format!("no tenant {tenant}"),
                    ));
                }
                let mut logs = self.logs.write().unwrap_or_else(|p| p.into_inner());
                Arc::clone(
                    logs.entry(tenant.to_owned())
                        .or_insert_with(|| Arc::new(TenantLog::new(tenant, MerkleTree::new()))),
                )
            }
        };
        let guard = Arc::clone(&log.append).lock_owned().await;
        self.catch_up(&log)?;
        let base = log.read_tree().len();
        Ok(Appender {
            _feed: PhantomData,
            log,
            _guard: guard,
            base,
            staged: Vec::new(),
        })
    }

    /// Appends `items` (device id, time, record) in one transaction of their own: for tools,
    /// tests and benchmarks; posture writes stage into their own transaction instead.
    ///
    /// # Errors
    /// As [`Feed::appender`] and [`Appender::stage`]; the store's commit error.
    pub async fn append(
        &self,
        tenant: &str,
        items: &[(String, OffsetDateTime, Value)],
    ) -> DomainResult<Vec<u64>> {
        let mut appender = self.appender(tenant).await?;
        let mut txn = DocTxn::new();
        let mut seqs = Vec::with_capacity(items.len());
        for (device, at, record) in items {
            let (t, seq) = appender.stage(txn, device, *at, record)?;
            txn = t;
            seqs.push(seq);
        }
        if self.store.writes_wait() {
            self.store.commit_async(txn).await?;
        } else {
            self.store.commit(txn)?;
        }
        appender.committed();
        Ok(seqs)
    }

    /// The number of entries in `tenant`'s tree (0 for a tenant without a log).
    pub fn size(&self, tenant: &str) -> u64 {
        self.log(tenant).map_or(0, |l| l.read_tree().len())
    }

    /// The signed checkpoint of `tenant`'s tree as it is: the one signed before while the size
    /// and the keys are the same and it is younger than the refresh age, otherwise a new one
    /// timestamped `now`.
    ///
    /// # Errors
    /// Malformed for a tenant id that is not one; internal when signing fails.
    pub fn checkpoint(&self, tenant: &str, now: OffsetDateTime) -> DomainResult<SignedCheckpoint> {
        super::tenancy::check_tenant_id(tenant)?;
        let log = self.log_or_empty(tenant);
        let (size, root) = {
            let tree = log.read_tree();
            (tree.len(), tree.root())
        };
        let note_key = self.keys.note_key();
        let jws_kid = self.keys.active_kid(KeyKind::Es256);
        let mut signed = log.signed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = signed.as_ref() {
            let age = now - c.checkpoint.timestamp;
            let reusable = c.checkpoint.size == size
                && !age.is_negative()
                && age < self.refresh
                && c.note_kid == note_key.kid
                && c.jws_kid == jws_kid;
            if reusable {
                return Ok(c.clone());
            }
        }
        let cp = Checkpoint {
            origin: self.log_origin(tenant),
            size,
            root,
            timestamp: now,
        };
        let sign_err =
            |e: checkpoint::CheckpointError| DomainError::internal(format!("checkpoint: {e}"));
        let note = checkpoint::sign_note(&cp, &cp.origin, &*note_key.signer).map_err(sign_err)?;
        let jws = checkpoint::to_jws(&cp, &*self.keys.signer(JwsAlg::Es256)).map_err(sign_err)?;
        let fresh = SignedCheckpoint {
            checkpoint: cp,
            note,
            jws,
            note_kid: note_key.kid,
            jws_kid,
        };
        *signed = Some(fresh.clone());
        Ok(fresh)
    }

    /// Entries `start..end` (end excluded) of `tenant`'s log.
    ///
    /// # Errors
    /// Malformed when `start >= end`, `end` is beyond the tree or the range holds more than
    /// [`MAX_ENTRIES`]; internal when a stored entry is missing or does not hash to the tree's
    /// leaf.
    pub fn entries(&self, tenant: &str, start: u64, end: u64) -> DomainResult<Vec<Entry>> {
        super::tenancy::check_tenant_id(tenant)?;
        let size = self.size(tenant);
        if start >= end {
            return Err(malformed(format!(
                "start ({start}) must be below end ({end})"
            )));
        }
        if end > size {
            return Err(malformed(format!(
                "end ({end}) is beyond the tree size ({size})"
            )));
        }
        if end - start > MAX_ENTRIES {
            return Err(malformed(format!(
                "at most {MAX_ENTRIES} entries per request"
            )));
        }
        let log = self.log_or_empty(tenant);
        (start..end)
            .map(|seq| self.stored_entry(&log, seq))
            .collect()
    }

    /// The RFC 9162 consistency proof from the tree at `first` entries to the tree at
    /// `second`.
    ///
    /// # Errors
    /// Malformed unless `1 <= first <= second <= size`.
    pub fn consistency(&self, tenant: &str, first: u64, second: u64) -> DomainResult<Vec<Hash>> {
        super::tenancy::check_tenant_id(tenant)?;
        if first == 0 {
            return Err(malformed("first must be at least 1"));
        }
        if first > second {
            return Err(malformed(format!(
                "first ({first}) must not be greater than second ({second})"
            )));
        }
        let log = self.log_or_empty(tenant);
        let tree = log.read_tree();
        if second > tree.len() {
            return Err(malformed(format!(
                "second ({second}) is beyond the tree size ({})",
                tree.len()
            )));
        }
        tree.consistency_proof(first, second)
            .map_err(|e| malformed(e.to_string()))
    }

    /// `device_id`'s newest entry with its inclusion proof in the current checkpoint and a
    /// statement about it signed now; `None` when the device has no entry.
    ///
    /// # Errors
    /// Malformed for a bad device id; Unavailable while the newest entry is committed but not
    /// yet in the tree (a moment; retry); internal when stored documents are inconsistent.
    pub fn device(
        &self,
        tenant: &str,
        device_id: &str,
        now: OffsetDateTime,
    ) -> DomainResult<Option<DeviceProof>> {
        super::tenancy::check_tenant_id(tenant)?;
        leaf::check_device_id(device_id)?;
        let Some(index) = self
            .store
            .doc(DocKind::FeedIndex, &leaf::index_id(tenant, device_id))?
        else {
            return Ok(None);
        };
        let seq: u64 = std::str::from_utf8(&index)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| DomainError::internal(format!("feed index of {tenant}/{device_id}")))?;
        let checkpoint = self.checkpoint(tenant, now)?;
        let size = checkpoint.checkpoint.size;
        if seq >= size {
            return Err(DomainError::new(
                ErrorKind::Unavailable,
                "the device's newest entry is being appended; retry",
            ));
        }
        let log = self.log_or_empty(tenant);
        let entry = self.stored_entry(&log, seq)?;
        let inclusion = log
            .read_tree()
            .inclusion_proof(seq, size)
            .map_err(DomainError::internal)?;
        let value = entry.value()?;
        let record = value.get("record").cloned().unwrap_or(Value::Null);
        let hash = leaf_hash(&entry.leaf);
        let iat = now.unix_timestamp();
        let payload = json!({
            "iss": self.log_origin(tenant),
            "tenant": tenant,
            "device_id": device_id,
            "seq": seq,
            "leaf_hash": URL_SAFE_NO_PAD.encode(hash),
            "tree_size": size,
            "iat": iat,
            "exp": iat + STATEMENT_LIFETIME.whole_seconds(),
            "record": record,
        });
        let payload = serde_json::to_vec(&payload).map_err(DomainError::internal)?;
        let statement = self.keys.sign_jws(JwsAlg::Es256, STATEMENT_TYP, &payload)?;
        Ok(Some(DeviceProof {
            entry,
            leaf_hash: hash,
            record,
            checkpoint,
            inclusion,
            statement,
        }))
    }

    /// Entry `seq` as stored, checked against the tree's leaf hash.
    fn stored_entry(&self, log: &TenantLog, seq: u64) -> DomainResult<Entry> {
        let leaf = self
            .store
            .doc(DocKind::FeedEntry, &leaf::entry_id(&log.tenant, seq))?
            .ok_or_else(|| {
                DomainError::internal(format!("feed entry {}/{seq} is missing", log.tenant))
            })?;
        if log.read_tree().leaf_hash(seq) != Some(leaf_hash(&leaf)) {
            return Err(DomainError::internal(format!(
                "feed entry {}/{seq} does not match the tree",
                log.tenant
            )));
        }
        Ok(Entry { seq, leaf })
    }

    /// Reads `tenant`'s stored entries in order into a tree.
    fn rebuild(&self, tenant: &str) -> DomainResult<MerkleTree> {
        let mut hashes: Vec<Hash> = Vec::new();
        let mut page: u64 = 0;
        loop {
            let prefix = format!("{tenant}/{page:016}");
            let docs = self.store.docs(DocKind::FeedEntry, &prefix, REBUILD_PAGE)?;
            let full = docs.len() == REBUILD_PAGE;
            for (id, leaf) in docs {
                let want = leaf::entry_id(tenant, hashes.len() as u64);
                if id != want {
                    return Err(DomainError::internal(format!(
                        "feed of {tenant}: found {id} where {want} should be"
                    )));
                }
                hashes.push(leaf_hash(&leaf));
            }
            if !full {
                break;
            }
            page += 1;
        }
        Ok(MerkleTree::from_leaf_hashes(hashes))
    }

    /// Adds to the tree the entries the store holds beyond it. Called with the append lock.
    fn catch_up(&self, log: &TenantLog) -> DomainResult<()> {
        let mut next = log.read_tree().len();
        let mut found = Vec::new();
        while let Some(leaf) = self
            .store
            .doc(DocKind::FeedEntry, &leaf::entry_id(&log.tenant, next))?
        {
            found.push(leaf_hash(&leaf));
            next += 1;
        }
        if !found.is_empty() {
            tracing::warn!(tenant = %log.tenant, entries = found.len(), "feed entries committed without their appender saying so; added now");
            let mut tree = log.write_tree();
            for h in found {
                tree.push_leaf_hash(h);
            }
        }
        Ok(())
    }

    fn read_logs(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<TenantLog>>> {
        self.logs.read().unwrap_or_else(|p| p.into_inner())
    }

    fn log(&self, tenant: &str) -> Option<Arc<TenantLog>> {
        self.read_logs().get(tenant).cloned()
    }

    /// The tenant's log, or an empty one that is not kept (for reads of a tenant that never
    /// appended).
    fn log_or_empty(&self, tenant: &str) -> Arc<TenantLog> {
        self.log(tenant)
            .unwrap_or_else(|| Arc::new(TenantLog::new(tenant, MerkleTree::new())))
    }
}

impl TenantLog {
    fn new(tenant: &str, tree: MerkleTree) -> Self {
        TenantLog {
            tenant: tenant.to_owned(),
            append: Arc::new(tokio::sync::Mutex::new(())),
            tree: RwLock::new(tree),
            signed: Mutex::new(None),
        }
    }

    fn read_tree(&self) -> std::sync::RwLockReadGuard<'_, MerkleTree> {
        self.tree.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_tree(&self) -> std::sync::RwLockWriteGuard<'_, MerkleTree> {
        self.tree.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The right to append to one tenant's log, held until dropped or [`committed`](Self::committed).
pub struct Appender<'a> {
    _feed: PhantomData<&'a Feed>,
    log: Arc<TenantLog>,
    _guard: OwnedMutexGuard<()>,
    /// The tree size when the appender was made.
    base: u64,
    /// Leaf hashes staged, in sequence order from `base`.
    staged: Vec<Hash>,
}

impl fmt::Debug for Appender<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Appender")
            .field("tenant", &self.log.tenant)
            .field("base", &self.base)
            .field("staged", &self.staged.len())
            .finish()
    }
}

impl Appender<'_> {
    /// The sequence number the next [`stage`](Self::stage) gives.
    pub fn next_seq(&self) -> u64 {
        self.base + self.staged.len() as u64
    }

    /// The tenant appended to.
    pub fn tenant(&self) -> &str {
        &self.log.tenant
    }

    /// Adds one entry to `txn`: its [`DocKind::FeedEntry`] (checked absent, then put) and the
    /// device's [`DocKind::FeedIndex`]. Returns the transaction and the sequence number given.
    ///
    /// # Errors
    /// Malformed for a bad device id, a time that is not writable in RFC 3339 or an entry
    /// larger than [`leaf::MAX_LEAF_BYTES`]; nothing is staged then.
    pub fn stage(
        &mut self,
        txn: DocTxn,
        device_id: &str,
        at: OffsetDateTime,
        record: &Value,
    ) -> DomainResult<(DocTxn, u64)> {
        leaf::check_device_id(device_id)?;
        let seq = self.next_seq();
        let tenant = &self.log.tenant;
        let bytes = leaf::encode(seq, tenant, device_id, at, record)?;
        self.staged.push(leaf_hash(&bytes));
        let id = leaf::entry_id(tenant, seq);
        let txn = txn
            .absent(DocKind::FeedEntry, id.clone())
            .put(DocKind::FeedEntry, id, bytes)
            .put(
                DocKind::FeedIndex,
                leaf::index_id(tenant, device_id),
                seq.to_string().into_bytes(),
            );
        Ok((txn, seq))
    }

    /// Call once the transaction holding the staged entries has committed: they join the tree
    /// (and the next checkpoint).
    pub fn committed(self) {
        let mut tree = self.log.write_tree();
        if tree.len() != self.base {
            // not reached: the append lock is held from the appender's creation to here
            tracing::error!(tenant = %self.log.tenant, "feed tree moved under an appender");
            return;
        }
        for h in &self.staged {
            tree.push_leaf_hash(*h);
        }
    }
}

fn check_origin(origin: &str) -> DomainResult<()> {
    if origin.is_empty()
        || origin
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
    {
        return Err(malformed(
            "feed origin must be non-empty, without whitespace, '+' or control characters",
        ));
    }
    Ok(())
}

fn malformed(detail: impl Into<String>) -> DomainError {
    DomainError::new(ErrorKind::Malformed, detail)
}

#[cfg(test)]
mod tests;
