//! Storage: the only layer that persists anything. [`Store`] is the interface;
//! [`sled`](self::sled) is the embedded default and [`memory`] serves tests and ephemeral
//! runs. Every backend passes the same conformance suite (`broker/tests/api/store.rs`).
//!
//! **Architecture Invariant:** a write that must go together (a certificate and its audit
//! entry, a revocation and its audit entry) is one atomic operation of the store: either both
//! are there after a crash or neither is; and a write returns only once it is durable (the sled
//! backend commits writers in groups: one batch and one flush serve every write waiting).

pub mod memory;
pub mod sled;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use time::OffsetDateTime;

use crate::model::{
    AuditDraft, AuditEntry, CertificateRecord, RevocationReason, Tenant, TokenRecord,
};

/// What can go wrong in a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record does not exist.
    #[error("not found")]
    NotFound,
    /// A record with that key exists already.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The certificate was revoked before.
    #[error("already revoked")]
    AlreadyRevoked,
    /// Stored bytes do not decode.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The backend failed (disk, lock).
    #[error("backend: {0}")]
    Backend(String),
}

/// The store's result type.
pub type StoreResult<T> = Result<T, StoreError>;

/// A revoked serial, for CRLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerial {
    /// Serial, lower-case hex.
    pub serial: String,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// The kinds of document that protocols keep through [`Store::commit`] (JSON bytes the store
/// does not interpret). Each kind is its own key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DocKind {
    /// ACME accounts, by account id.
    AcmeAccount,
    /// ACME account key thumbprints (`provisioner/thumbprint`) to account ids.
    AcmeAccountKey,
    /// ACME orders, by order id.
    AcmeOrder,
    /// ACME authorizations (with their challenges), by id.
    AcmeAuthz,
    /// ACME external account binding keys, by key id.
    AcmeEab,
    /// Attestation statements already used (`sha256`), so none is accepted twice.
    AttestationSeen,
    /// Devices of the inventory, by `tenant/device id`.
    Device,
    /// Device identifiers (`tenant/kind:value`) to device ids.
    DeviceIndex,
    /// Device posture records, by `tenant/device id`.
    Posture,
    /// Users and messaging addresses (`tenant/u/user`, `tenant/a/address`) to device ids.
    PostureIndex,
    /// Conversation threads' remembered lowest level, by `tenant/thread id`.
    Thread,
    /// Each tenant's routing policy and kill switches, by `tenant` and `tenant/kill-switches`.
    TenantPolicy,
    /// Feed log entries, by `tenant/sequence` (sequence zero-padded to 20 digits).
    FeedEntry,
    /// The newest feed entry of each device, by `tenant/device id`.
    FeedIndex,
    /// SSF streams, by `tenant/stream id`.
    SsfStream,
    /// SSF events queued for a stream, by `stream/sequence`.
    SsfEvent,
    /// MDM webhook registrations (with their secrets), by webhook id.
    Webhook,
    /// MDM connectors' state (last success, last error, next run), by connector name.
    ConnectorState,
    /// Vendor devices a connector applied (`connector/vendor id`) to postern's device and a
    /// fingerprint of what was applied.
    ConnectorDevice,
    /// SCIM users, by `tenant/id`.
    ScimUser,
    /// SCIM groups, by `tenant/id`.
    ScimGroup,
    /// SCIM lookups: `tenant/user/<lower-cased userName>` to a user id, and
    /// `tenant/uext/<hex externalId>/<id>` for each user's `externalId`.
    ScimIndex,
    /// The current enrollment grant of a device (from its newest profile), by
    /// `tenant/device id`.
    EnrollmentGrant,
    /// One-time SCEP challenges, by the hex SHA-256 of the challenge.
    ScepChallenge,
}

impl DocKind {
    /// Every kind.
    pub const ALL: [DocKind; 24] = [
        DocKind::AcmeAccount,
        DocKind::AcmeAccountKey,
        DocKind::AcmeOrder,
        DocKind::AcmeAuthz,
        DocKind::AcmeEab,
        DocKind::AttestationSeen,
        DocKind::Device,
        DocKind::DeviceIndex,
        DocKind::Posture,
        DocKind::PostureIndex,
        DocKind::Thread,
        DocKind::TenantPolicy,
        DocKind::FeedEntry,
        DocKind::FeedIndex,
        DocKind::SsfStream,
        DocKind::SsfEvent,
        DocKind::Webhook,
        DocKind::ConnectorState,
        DocKind::ConnectorDevice,
        DocKind::ScimUser,
        DocKind::ScimGroup,
        DocKind::ScimIndex,
        DocKind::EnrollmentGrant,
        DocKind::ScepChallenge,
    ];

    /// The key prefix and name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::AcmeAccount => "acme-accounts",
            DocKind::AcmeAccountKey => "acme-account-keys",
            DocKind::AcmeOrder => "acme-orders",
            DocKind::AcmeAuthz => "acme-authzs",
            DocKind::AcmeEab => "acme-eab",
            DocKind::AttestationSeen => "attestations-seen",
            DocKind::Device => "devices",
            DocKind::DeviceIndex => "device-index",
            DocKind::Posture => "posture",
            DocKind::PostureIndex => "posture-index",
            DocKind::Thread => "threads",
            DocKind::TenantPolicy => "tenant-policy",
            DocKind::FeedEntry => "feed-entries",
            DocKind::FeedIndex => "feed-index",
            DocKind::SsfStream => "ssf-streams",
            DocKind::SsfEvent => "ssf-events",
            DocKind::Webhook => "webhooks",
            DocKind::ConnectorState => "connector-state",
            DocKind::ConnectorDevice => "connector-devices",
            DocKind::ScimUser => "scim-users",
            DocKind::ScimGroup => "scim-groups",
            DocKind::ScimIndex => "scim-index",
            DocKind::EnrollmentGrant => "enrollment-grants",
            DocKind::ScepChallenge => "scep-challenges",
        }
    }
}

/// What a [`DocTxn`] requires of a document before it writes anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The document does not exist.
    Absent,
    /// The document exists with exactly these bytes (compare-and-swap).
    Bytes(Vec<u8>),
}

/// A write of documents that happens entirely or not at all: every check holds, then every
/// put or delete is applied, with the audit entry if any.
#[derive(Debug, Clone, Default)]
pub struct DocTxn {
    /// Conditions; the first that fails makes the commit a [`StoreError::Conflict`].
    pub checks: Vec<(DocKind, String, Expect)>,
    /// Writes: `Some(bytes)` puts, `None` deletes (a document is never empty: putting empty
    /// bytes deletes it too).
    pub writes: Vec<(DocKind, String, Option<Vec<u8>>)>,
    /// A certificate to insert with it ([`StoreError::Conflict`] when the serial exists).
    pub certificate: Option<CertificateRecord>,
    /// The audit entry that goes with it.
    pub audit: Option<AuditDraft>,
}

impl DocTxn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires the document to be absent.
    #[must_use]
    pub fn absent(mut self, kind: DocKind, id: impl Into<String>) -> Self {
        self.checks.push((kind, id.into(), Expect::Absent));
        self
    }

    /// Requires the document to hold `bytes`.
    #[must_use]
    pub fn unchanged(mut self, kind: DocKind, id: impl Into<String>, bytes: Vec<u8>) -> Self {
        self.checks.push((kind, id.into(), Expect::Bytes(bytes)));
        self
    }

    /// Puts a document.
    #[must_use]
    pub fn put(mut self, kind: DocKind, id: impl Into<String>, bytes: Vec<u8>) -> Self {
        self.writes.push((kind, id.into(), Some(bytes)));
        self
    }

    /// Deletes a document.
    #[must_use]
    pub fn delete(mut self, kind: DocKind, id: impl Into<String>) -> Self {
        self.writes.push((kind, id.into(), None));
        self
    }

    /// Inserts a certificate record with the rest.
    #[must_use]
    pub fn certificate(mut self, cert: CertificateRecord) -> Self {
        self.certificate = Some(cert);
        self
    }

    /// Adds the audit entry.
    #[must_use]
    pub fn audit(mut self, draft: AuditDraft) -> Self {
        self.audit = Some(draft);
        self
    }
}

/// The conflict message for a failed check.
pub(crate) fn check_failed(kind: DocKind, id: &str, expect: &Expect) -> StoreError {
    match expect {
        Expect::Absent => StoreError::Conflict(format!("{} {id:?} exists already", kind.as_str())),
        Expect::Bytes(_) => {
            StoreError::Conflict(format!("{} {id:?} changed concurrently", kind.as_str()))
        }
    }
}

/// A store write in flight: it resolves once the write is durable (or refused).
pub type PendingWrite<T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'static>>;

/// Persistence for everything postern keeps.
pub trait Store: Send + Sync + fmt::Debug {
    /// Adds a tenant and its audit entry. [`StoreError::Conflict`] when the id exists.
    fn insert_tenant(&self, tenant: &Tenant, audit: AuditDraft) -> StoreResult<AuditEntry>;
    /// A tenant by id.
    fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>>;
    /// Every tenant, by id.
    fn tenants(&self) -> StoreResult<Vec<Tenant>>;

    /// Adds a token and its audit entry. [`StoreError::Conflict`] when the id exists.
    fn insert_token(&self, token: &TokenRecord, audit: AuditDraft) -> StoreResult<AuditEntry>;
    /// Adds or replaces a token (the bootstrap admin token when `POSTERN_ADMIN_TOKEN` changes),
    /// with its audit entry, atomically.
    fn put_token(&self, token: &TokenRecord, audit: AuditDraft) -> StoreResult<AuditEntry>;
    /// A token by id.
    fn token(&self, id: &str) -> StoreResult<Option<TokenRecord>>;
    /// The tokens of a tenant.
    fn tokens(&self, tenant: &str) -> StoreResult<Vec<TokenRecord>>;
    /// Marks a token revoked, with its audit entry. [`StoreError::NotFound`] when unknown,
    /// [`StoreError::AlreadyRevoked`] when revoked before.
    fn revoke_token(
        &self,
        id: &str,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> StoreResult<TokenRecord>;

    /// Adds an issued certificate and its audit entry, atomically.
    /// [`StoreError::Conflict`] when the serial exists.
    fn insert_certificate(
        &self,
        cert: &CertificateRecord,
        audit: AuditDraft,
    ) -> StoreResult<AuditEntry>;
    /// A certificate by serial (lower-case hex).
    fn certificate(&self, serial: &str) -> StoreResult<Option<CertificateRecord>>;
    /// Revokes a certificate and appends its audit entry, atomically.
    /// [`StoreError::NotFound`], [`StoreError::AlreadyRevoked`].
    fn revoke_certificate(
        &self,
        serial: &str,
        at: OffsetDateTime,
        reason: RevocationReason,
        audit: AuditDraft,
    ) -> StoreResult<CertificateRecord>;
    /// Every revoked serial (for the CRL), by serial.
    fn revoked(&self) -> StoreResult<Vec<RevokedSerial>>;
    /// How many certificates are stored.
    fn certificate_count(&self) -> StoreResult<u64>;

    /// Appends an audit entry on its own.
    fn append_audit(&self, audit: AuditDraft) -> StoreResult<AuditEntry>;
    /// Audit entries with `seq >= from`, at most `limit`, in order.
    fn audit_entries(&self, from: u64, limit: usize) -> StoreResult<Vec<AuditEntry>>;

    /// The next value of a named counter, starting at 1; durable once flushed and never
    /// handed out twice (CRL numbers).
    fn next_counter(&self, name: &str) -> StoreResult<u64>;
    /// A small metadata value.
    fn meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Sets a small metadata value.
    fn set_meta(&self, key: &str, value: &[u8]) -> StoreResult<()>;

    /// A document.
    fn doc(&self, kind: DocKind, id: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Documents of a kind whose id starts with `prefix`, in id order, at most `limit`.
    fn docs(
        &self,
        kind: DocKind,
        prefix: &str,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>>;
    /// Applies a [`DocTxn`] atomically and durably. [`StoreError::Conflict`] when a check
    /// fails (nothing is written then).
    fn commit(&self, txn: DocTxn) -> StoreResult<Option<AuditEntry>>;
    /// [`Store::commit`] for async callers: the write is handed over at once and the future
    /// resolves once it is durable, without holding a thread while it waits. The default runs
    /// the synchronous commit immediately (for stores whose writes do not wait).
    fn commit_async(&self, txn: DocTxn) -> PendingWrite<Option<AuditEntry>> {
        let r = self.commit(txn);
        Box::pin(async move { r })
    }

    /// [`Store::commit`] for writes nobody waits for (route decisions' audit entries): the
    /// write is handed over at once and made durable with the next group; a failure is logged.
    /// The default commits synchronously (for stores whose writes do not wait).
    fn commit_detached(&self, txn: DocTxn) {
        if let Err(e) = self.commit(txn) {
            tracing::error!(error = %e, "detached write failed");
        }
    }

    /// Makes every completed write durable. Writes are durable when they return already; this
    /// is for shutdown and for callers that wrote behind the store's back. Blocking.
    fn flush(&self) -> StoreResult<()>;

    /// Whether a write may wait (for its group to reach the disk, milliseconds): async callers
    /// then run writes on a blocking thread, so that waiting does not hold a runtime worker.
    fn writes_wait(&self) -> bool {
        true
    }
}
