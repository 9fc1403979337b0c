//! The Shared Signals (SSF 1.0) transmitter: CAEP events about a tenant's devices and users,
//! as Security Event Tokens (RFC 8417) signed RS256, delivered by push (RFC 8935) or poll
//! (RFC 8936) to the streams the tenant's receivers created.
//!
//! - [`Ssf::publish`] is what the rest of the broker calls: it queues the event durably for
//!   every enabled or paused stream of the tenant that asked for its type and returns; it does
//!   not wait for delivery.
//! - [`Ssf::run_push`] delivers queued events of push streams in order, one worker per stream,
//!   retrying with capped exponential backoff and jitter.
//! - Stream management (`/ssf/streams`, `/ssf/status`, `/ssf/verify`) and the poll endpoint are
//!   methods here; `http/ssf.rs` only translates.
//!
//! Queues are documents (`DocKind::SsfEvent`, key `stream/sequence` with the sequence
//! zero-padded to 20 digits), so they survive restarts. Each queued entry holds the SET's claims
//! as the bytes that get signed; the signature is made when the SET is sent, with the key that
//! is current then.
//!
//! **Architecture Invariant:** a stream belongs to one tenant; every lookup goes through the
//! caller's tenant, so another tenant's stream answers 404. The push authorization header is
//! stored but never logged and never returned (only its scheme word).

mod event;
mod poll;
mod push;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::domain::{Clock, DomainError, DomainResult, ErrorKind, Principal};
use crate::model::{AuditDraft, Role};
use crate::store::{DocKind, DocTxn, Store, StoreError};

pub use crate::domain::keys::{JwsAlg, Keys};
pub use event::{
    CREDENTIAL_CHANGE, ChangeType, ComplianceStatus, CredentialType, DEVICE_COMPLIANCE_CHANGE,
    FEED_SEQ_MEMBER, InitiatingEntity, SESSION_REVOKED, SUPPORTED, SsfEvent, SsfEventKind,
    SsfSubject, VERIFICATION,
};
pub use poll::{DEFAULT_POLL_EVENTS, MAX_POLL_EVENTS, PollRequest, PollResponse};
pub use stream::{Delivery, POLL, PUSH, REDACTED, StreamRecord, StreamStatus};

/// The JWS `typ` of a SET (RFC 8417 §2.3).
pub const SET_TYP: &str = "secevent+jwt";
/// `spec_version` in the transmitter metadata.
pub const SPEC_VERSION: &str = "1_0";

/// The `[ssf]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsfSettings {
    /// The transmitter's issuer URL (`iss` of every SET, base of every endpoint). Defaults to
    /// `https://<first tls name>:<listen port>`.
    pub issuer: Option<String>,
    /// The first retry of a push waits about this long (seconds; doubled per failure).
    pub push_backoff_base_seconds: f64,
    /// The longest wait between push retries (seconds).
    pub push_backoff_max_seconds: f64,
    /// How long one push request may take (seconds).
    pub push_timeout_seconds: u64,
    /// The most SETs queued per stream; when full the oldest is dropped (and counted).
    pub queue_bound: usize,
    /// How long a poll without `returnImmediately` waits for an event (seconds).
    pub poll_wait_seconds: u64,
    /// `min_verification_interval`: verification requests closer together are refused (429).
    pub min_verification_interval_seconds: u64,
    /// The most streams one tenant may have.
    pub max_streams_per_tenant: usize,
}

impl Default for SsfSettings {
    fn default() -> Self {
        SsfSettings {
            issuer: None,
            push_backoff_base_seconds: 1.0,
            push_backoff_max_seconds: 300.0,
            push_timeout_seconds: 10,
            queue_bound: 10_000,
            poll_wait_seconds: 30,
            min_verification_interval_seconds: 10,
            max_streams_per_tenant: 16,
        }
    }
}

impl SsfSettings {
    /// Checks the values.
    ///
    /// # Errors
    /// `(key, message)` for the first bad value.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: &str| Err((k.to_owned(), m.to_owned()));
        if let Some(i) = &self.issuer {
            match reqwest::Url::parse(i) {
                Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
                _ => return bad("issuer", "must be an https:// URL"),
            }
        }
        let base = self.push_backoff_base_seconds;
        let max = self.push_backoff_max_seconds;
        if !(base.is_finite() && base > 0.0) {
            return bad("push_backoff_base_seconds", "must be a positive number");
        }
        if !(max.is_finite() && max >= base && max <= 86_400.0) {
            return bad(
                "push_backoff_max_seconds",
                "must be at least push_backoff_base_seconds and at most 86400",
            );
        }
        if self.push_timeout_seconds == 0 {
            return bad("push_timeout_seconds", "must be positive");
        }
        if !(1..=1_000_000).contains(&self.queue_bound) {
            return bad("queue_bound", "must be between 1 and 1000000");
        }
        if self.poll_wait_seconds > 300 {
            return bad("poll_wait_seconds", "must be at most 300");
        }
        if self.max_streams_per_tenant == 0 {
            return bad("max_streams_per_tenant", "must be positive");
        }
        Ok(())
    }
}

/// Delivery counters of one stream since the broker started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryStats {
    /// SETs the receiver accepted (push: 2xx; poll: acknowledged).
    pub delivered: u64,
    /// SETs the receiver refused for good (push: 400; poll: `setErrs`), dropped.
    pub failed: u64,
    /// Push attempts that will be retried (5xx, other statuses, network errors).
    pub retried: u64,
    /// SETs dropped because the queue was full (the oldest goes).
    pub dropped: u64,
}

/// In-memory view of one stream's queue.
#[derive(Debug, Clone, Copy)]
struct QueueState {
    /// The sequence number the next SET gets.
    next_seq: u64,
    /// About how many SETs are queued (exact count taken before dropping one).
    len: usize,
}

/// A queued SET (`DocKind::SsfEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct QueuedSet {
    /// The SET's `jti`.
    jti: String,
    /// The claims, exactly as they are signed.
    claims: String,
}

/// The transmitter.
#[derive(Debug)]
pub struct Ssf {
    store: Arc<dyn Store>,
    keys: Arc<Keys>,
    clock: Arc<dyn Clock>,
    issuer: String,
    http: reqwest::Client,
    settings: SsfSettings,
    queues: Mutex<HashMap<String, QueueState>>,
    tenant_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    streams_changed: Notify,
    stats: Mutex<HashMap<String, DeliveryStats>>,
    last_verification: Mutex<HashMap<String, OffsetDateTime>>,
}

/// Locks a mutex; a poisoned one is still usable (every update here is a single assignment).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn stream_key(tenant: &str, stream_id: &str) -> String {
    format!("{tenant}/{stream_id}")
}

fn queue_prefix(stream_id: &str) -> String {
    format!("{stream_id}/")
}

fn queue_key(stream_id: &str, seq: u64) -> String {
    format!("{stream_id}/{seq:020}")
}

/// A stream id as postern makes them: 32 lower-case hex digits.
fn is_stream_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn random_hex() -> DomainResult<String> {
    Ok(hex::encode(crate::domain::tenancy::random_bytes::<16>()?))
}

fn not_found() -> DomainError {
    DomainError::new(ErrorKind::NotFound, "no such stream")
}

fn encode<T: Serialize>(v: &T) -> DomainResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(DomainError::internal)
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> DomainResult<T> {
    serde_json::from_slice(b).map_err(|e| DomainError::internal(format!("stored {what}: {e}")))
}

/// Receivers are the tenant's admins and gateways.
fn require_receiver(p: &Principal) -> DomainResult<()> {
    match p.role {
        Role::Admin | Role::Gateway => Ok(()),
        other => Err(DomainError::new(
            ErrorKind::Forbidden,
            format!(
                "role {} may not manage SSF streams; admin or gateway required",
                other.as_str()
            ),
        )),
    }
}

impl Ssf {
    /// The transmitter with default settings. `issuer` is the base URL of every endpoint and
    /// the `iss` of every SET; `http` sends pushes.
    pub fn new(
        store: Arc<dyn Store>,
        keys: Arc<Keys>,
        clock: Arc<dyn Clock>,
        issuer: String,
        http: reqwest::Client,
    ) -> Self {
        Ssf {
            store,
            keys,
            clock,
            issuer: issuer.trim_end_matches('/').to_owned(),
            http,
            settings: SsfSettings::default(),
            queues: Mutex::default(),
            tenant_locks: Mutex::default(),
            wakers: Mutex::default(),
            streams_changed: Notify::new(),
            stats: Mutex::default(),
            last_verification: Mutex::default(),
        }
    }

    /// The same transmitter with these settings (their `issuer` is not used here: the caller
    /// passes the issuer to [`Ssf::new`]).
    #[must_use]
    pub fn with_settings(mut self, settings: SsfSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The signing keys.
    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    /// The transmitter configuration metadata (SSF 1.0 §7.1), served at
    /// `/.well-known/ssf-configuration`.
    pub fn configuration(&self) -> Value {
        let iss = &self.issuer;
        json!({
            "spec_version": SPEC_VERSION,
            "issuer": iss,
            "jwks_uri": format!("{iss}/.well-known/jwks.json"),
            "delivery_methods_supported": [PUSH, POLL],
            "configuration_endpoint": format!("{iss}/ssf/streams"),
            "status_endpoint": format!("{iss}/ssf/status"),
            "verification_endpoint": format!("{iss}/ssf/verify"),
            "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6750"}],
            "default_subjects": "ALL",
        })
    }

    // ---- streams --------------------------------------------------------------------------

    fn record(&self, tenant: &str, stream_id: &str) -> DomainResult<(StreamRecord, Vec<u8>)> {
        if !is_stream_id(stream_id) {
            return Err(not_found());
        }
        let bytes = self
            .store
            .doc(DocKind::SsfStream, &stream_key(tenant, stream_id))?
            .ok_or_else(not_found)?;
        let rec: StreamRecord = decode("stream", &bytes)?;
        Ok((rec, bytes))
    }

    /// Every stream of a tenant.
    fn tenant_streams(&self, tenant: &str) -> DomainResult<Vec<StreamRecord>> {
        self.store
            .docs(DocKind::SsfStream, &format!("{tenant}/"), usize::MAX)?
            .iter()
            .map(|(_, b)| decode("stream", b))
            .collect()
    }

    /// Every stream of every tenant (for the push supervisor).
    fn all_streams(&self) -> DomainResult<Vec<StreamRecord>> {
        self.store
            .docs(DocKind::SsfStream, "", usize::MAX)?
            .iter()
            .map(|(_, b)| decode("stream", b))
            .collect()
    }

    async fn commit(&self, txn: DocTxn) -> Result<(), StoreError> {
        if self.store.writes_wait() {
            self.store.commit_async(txn).await.map(|_| ())
        } else {
            self.store.commit(txn).map(|_| ())
        }
    }

    fn audit(&self, p: &Principal, action: &str, stream_id: &str, details: Value) -> AuditDraft {
        AuditDraft {
            time: self.clock.now(),
            tenant: p.tenant.clone(),
            actor: p.actor(),
            action: action.to_owned(),
            subject: stream_id.to_owned(),
            details,
        }
    }

    fn default_aud(&self, stream_id: &str, delivery: &Delivery) -> String {
        match delivery {
            Delivery::Push { endpoint_url, .. } => endpoint_url.clone(),
            Delivery::Poll => format!("{}/ssf/poll/{stream_id}", self.issuer),
        }
    }

    fn view(&self, rec: &StreamRecord) -> Value {
        stream::configuration_view(
            rec,
            &self.issuer,
            self.settings.min_verification_interval_seconds,
        )
    }

    /// Creates a stream for the caller's tenant (SSF 1.0 §8.1.1.1) and returns its
    /// configuration.
    ///
    /// # Errors
    /// Forbidden for roles other than admin and gateway; Malformed for a bad body (each
    /// member named); Conflict when the tenant has `max_streams_per_tenant` streams.
    pub async fn create_stream(&self, p: &Principal, body: &Value) -> DomainResult<Value> {
        require_receiver(p)?;
        let spec = stream::spec(body, None)?;
        let existing = self
            .store
            .docs(
                DocKind::SsfStream,
                &format!("{}/", p.tenant),
                self.settings.max_streams_per_tenant,
            )?
            .len();
        if existing >= self.settings.max_streams_per_tenant {
            return Err(DomainError::new(
                ErrorKind::Conflict,
                format!(
                    "the tenant has {existing} streams, the most it may have; delete one first"
                ),
            ));
        }
        let now = self.clock.now();
        let stream_id = random_hex()?;
        let aud = spec
            .aud
            .clone()
            .unwrap_or_else(|| self.default_aud(&stream_id, &spec.delivery));
        let rec = StreamRecord {
            stream_id: stream_id.clone(),
            tenant: p.tenant.clone(),
            aud,
            events_delivered: stream::delivered(&spec.events_requested),
            events_requested: spec.events_requested,
            delivery: spec.delivery,
            description: spec.description,
            status: StreamStatus::Enabled,
            status_reason: None,
            created_by: p.actor(),
            created_at: now,
            updated_at: now,
        };
        let key = stream_key(&p.tenant, &stream_id);
        let txn = DocTxn::new()
            .absent(DocKind::SsfStream, key.clone())
            .put(DocKind::SsfStream, key, encode(&rec)?)
            .audit(self.audit(p, "ssf.stream.create", &stream_id, audit_details(&rec)));
        self.commit(txn).await?;
        lock(&self.queues).insert(
            stream_id.clone(),
            QueueState {
                next_seq: 1,
                len: 0,
            },
        );
        self.streams_changed.notify_waiters();
        tracing::info!(tenant = %p.tenant, stream = %stream_id, "ssf stream created");
        Ok(self.view(&rec))
    }

    /// One stream's configuration.
    ///
    /// # Errors
    /// Forbidden for other roles; NotFound when the tenant has no such stream.
    pub fn stream(&self, p: &Principal, stream_id: &str) -> DomainResult<Value> {
        require_receiver(p)?;
        let (rec, _) = self.record(&p.tenant, stream_id)?;
        Ok(self.view(&rec))
    }

    /// Every stream of the caller's tenant.
    ///
    /// # Errors
    /// Forbidden for other roles.
    pub fn streams(&self, p: &Principal) -> DomainResult<Vec<Value>> {
        require_receiver(p)?;
        Ok(self
            .tenant_streams(&p.tenant)?
            .iter()
            .map(|r| self.view(r))
            .collect())
    }

    /// PATCH (SSF 1.0 §8.1.1.3): members present are changed, others kept.
    ///
    /// # Errors
    /// Forbidden, Malformed, NotFound; Conflict when the stream changed meanwhile.
    pub async fn update_stream(&self, p: &Principal, body: &Value) -> DomainResult<Value> {
        require_receiver(p)?;
        let id = stream::stream_id_of(stream::object(body)?)?;
        let (rec, old) = self.record(&p.tenant, &id)?;
        let spec = stream::patch(&rec, body)?;
        self.store_spec(p, rec, old, spec, "ssf.stream.update")
            .await
    }

    /// PUT (SSF 1.0 §8.1.1.4): the receiver-supplied members are replaced; absent ones are
    /// removed (no `delivery` means poll, no `events_requested` means none).
    ///
    /// # Errors
    /// Forbidden, Malformed, NotFound; Conflict when the stream changed meanwhile.
    pub async fn replace_stream(&self, p: &Principal, body: &Value) -> DomainResult<Value> {
        require_receiver(p)?;
        let id = stream::stream_id_of(stream::object(body)?)?;
        let (rec, old) = self.record(&p.tenant, &id)?;
        let spec = stream::spec(body, Some(&rec.delivery))?;
        self.store_spec(p, rec, old, spec, "ssf.stream.replace")
            .await
    }

    async fn store_spec(
        &self,
        p: &Principal,
        mut rec: StreamRecord,
        old: Vec<u8>,
        spec: stream::StreamSpec,
        action: &str,
    ) -> DomainResult<Value> {
        rec.aud = spec
            .aud
            .clone()
            .unwrap_or_else(|| self.default_aud(&rec.stream_id, &spec.delivery));
        rec.events_delivered = stream::delivered(&spec.events_requested);
        rec.events_requested = spec.events_requested;
        rec.delivery = spec.delivery;
        rec.description = spec.description;
        rec.updated_at = self.clock.now();
        let key = stream_key(&p.tenant, &rec.stream_id);
        let txn = DocTxn::new()
            .unchanged(DocKind::SsfStream, key.clone(), old)
            .put(DocKind::SsfStream, key, encode(&rec)?)
            .audit(self.audit(p, action, &rec.stream_id, audit_details(&rec)));
        self.commit(txn).await?;
        self.streams_changed.notify_waiters();
        self.wake(&rec.stream_id);
        Ok(self.view(&rec))
    }

    /// Deletes a stream and everything queued for it.
    ///
    /// # Errors
    /// Forbidden, NotFound.
    pub async fn delete_stream(&self, p: &Principal, stream_id: &str) -> DomainResult<()> {
        require_receiver(p)?;
        let tenant_lock = self.tenant_lock(&p.tenant);
        let _guard = tenant_lock.lock().await;
        let (rec, old) = self.record(&p.tenant, stream_id)?;
        let key = stream_key(&p.tenant, stream_id);
        let mut txn = DocTxn::new()
            .unchanged(DocKind::SsfStream, key.clone(), old)
            .delete(DocKind::SsfStream, key)
            .audit(self.audit(p, "ssf.stream.delete", stream_id, json!({})));
        for (k, _) in self
            .store
            .docs(DocKind::SsfEvent, &queue_prefix(stream_id), usize::MAX)?
        {
            txn = txn.delete(DocKind::SsfEvent, k);
        }
        self.commit(txn).await?;
        lock(&self.queues).remove(stream_id);
        lock(&self.stats).remove(stream_id);
        lock(&self.last_verification).remove(stream_id);
        self.streams_changed.notify_waiters();
        self.wake(&rec.stream_id);
        lock(&self.wakers).remove(stream_id);
        tracing::info!(tenant = %p.tenant, stream = %stream_id, "ssf stream deleted");
        Ok(())
    }

    /// A stream's status (SSF 1.0 §8.1.2.1), with postern's delivery counters under
    /// `postern_delivery`.
    ///
    /// # Errors
    /// Forbidden, NotFound.
    pub fn status(&self, p: &Principal, stream_id: &str) -> DomainResult<Value> {
        require_receiver(p)?;
        let (rec, _) = self.record(&p.tenant, stream_id)?;
        let mut v = stream::status_view(&rec);
        if let Some(m) = v.as_object_mut() {
            m.insert(
                "postern_delivery".into(),
                serde_json::to_value(self.delivery_stats(stream_id)).unwrap_or(Value::Null),
            );
        }
        Ok(v)
    }

    /// Sets a stream's status (SSF 1.0 §8.1.2.2). Disabling drops what is queued.
    ///
    /// # Errors
    /// Forbidden, Malformed, NotFound; Conflict when the stream changed meanwhile.
    pub async fn set_status(&self, p: &Principal, body: &Value) -> DomainResult<Value> {
        require_receiver(p)?;
        let (id, status, reason) = stream::status_update(body)?;
        let (mut rec, old) = self.record(&p.tenant, &id)?;
        let was = rec.status;
        rec.status = status;
        rec.status_reason = reason;
        rec.updated_at = self.clock.now();
        let key = stream_key(&p.tenant, &id);
        let mut txn = DocTxn::new()
            .unchanged(DocKind::SsfStream, key.clone(), old)
            .put(DocKind::SsfStream, key, encode(&rec)?)
            .audit(self.audit(
                p,
                "ssf.stream.status",
                &id,
                json!({"from": was.as_str(), "to": status.as_str()}),
            ));
        let mut dropped = 0usize;
        // no event is queued for the tenant while the status changes
        let tenant_lock = self.tenant_lock(&p.tenant);
        let _guard = tenant_lock.lock().await;
        if status == StreamStatus::Disabled {
            // a disabled stream holds nothing (SSF 1.0 §8.1.2)
            for (k, _) in self
                .store
                .docs(DocKind::SsfEvent, &queue_prefix(&id), usize::MAX)?
            {
                txn = txn.delete(DocKind::SsfEvent, k);
                dropped += 1;
            }
        }
        self.commit(txn).await?;
        if status == StreamStatus::Disabled
            && let Some(q) = lock(&self.queues).get_mut(&id)
        {
            q.len = 0;
        }
        if dropped > 0 {
            tracing::info!(stream = %id, dropped, "ssf stream disabled; queued events dropped");
        }
        self.streams_changed.notify_waiters();
        self.wake(&id);
        Ok(stream::status_view(&rec))
    }

    /// Queues a verification event (SSF 1.0 §8.1.4) for the stream.
    ///
    /// # Errors
    /// Forbidden, Malformed, NotFound; Conflict for a disabled stream; RateLimited when the
    /// last verification was less than `min_verification_interval` seconds ago.
    pub async fn verify(&self, p: &Principal, body: &Value) -> DomainResult<()> {
        require_receiver(p)?;
        let (id, state) = stream::verification_request(body)?;
        let tenant_lock = self.tenant_lock(&p.tenant);
        let _guard = tenant_lock.lock().await;
        let (rec, _) = self.record(&p.tenant, &id)?;
        if rec.status == StreamStatus::Disabled {
            return Err(DomainError::new(
                ErrorKind::Conflict,
                "the stream is disabled; enable it first",
            ));
        }
        let now = self.clock.now();
        let interval = self.settings.min_verification_interval_seconds;
        {
            let mut last = lock(&self.last_verification);
            if let Some(t) = last.get(&id)
                && now - *t < time::Duration::seconds(interval as i64)
            {
                return Err(DomainError::new(
                    ErrorKind::RateLimited,
                    format!("at most one verification per {interval} seconds"),
                ));
            }
            last.insert(id.clone(), now);
        }
        let mut members = serde_json::Map::new();
        if let Some(s) = state {
            members.insert("state".into(), Value::String(s));
        }
        let jti = random_hex()?;
        let claims = event::set_claims(
            &self.issuer,
            &rec.aud,
            now,
            &jti,
            json!({"format": "opaque", "id": rec.stream_id}),
            VERIFICATION,
            Value::Object(members),
        );
        self.enqueue_locked(vec![(
            rec.stream_id.clone(),
            QueuedSet {
                jti,
                claims: claims.to_string(),
            },
        )])
        .await
    }

    // ---- publishing -----------------------------------------------------------------------

    /// Queues the event durably for every enabled (or paused: it is held) stream of the
    /// tenant that asked for its type, then wakes the pushers; returns once queued, not
    /// delivered. A tenant without such streams costs one read.
    ///
    /// # Errors
    /// Store failures (internal).
    pub async fn publish(&self, tenant: &str, event: SsfEvent) -> DomainResult<()> {
        let uri = event.kind.uri();
        // the streams are read under the tenant's lock, so a stream disabled or deleted
        // meanwhile gets nothing
        let tenant_lock = self.tenant_lock(tenant);
        let _guard = tenant_lock.lock().await;
        let targets: Vec<StreamRecord> = self
            .tenant_streams(tenant)?
            .into_iter()
            .filter(|s| s.status != StreamStatus::Disabled)
            .filter(|s| s.events_delivered.iter().any(|e| e == uri))
            .collect();
        if targets.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let sub_id = event.subject.to_sub_id();
        let members = event.to_event_members();
        let mut items = Vec::with_capacity(targets.len());
        for s in targets {
            let jti = random_hex()?;
            let claims = event::set_claims(
                &self.issuer,
                &s.aud,
                now,
                &jti,
                sub_id.clone(),
                uri,
                members.clone(),
            );
            items.push((
                s.stream_id,
                QueuedSet {
                    jti,
                    claims: claims.to_string(),
                },
            ));
        }
        self.enqueue_locked(items).await
    }

    fn tenant_lock(&self, tenant: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(
            lock(&self.tenant_locks)
                .entry(tenant.to_owned())
                .or_default(),
        )
    }

    /// The queue state of a stream, read from the store the first time.
    fn queue_state(&self, stream_id: &str) -> DomainResult<QueueState> {
        if let Some(q) = lock(&self.queues).get(stream_id) {
            return Ok(*q);
        }
        let docs = self
            .store
            .docs(DocKind::SsfEvent, &queue_prefix(stream_id), usize::MAX)?;
        let last = docs
            .last()
            .and_then(|(k, _)| k.rsplit('/').next())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let q = QueueState {
            next_seq: last + 1,
            len: docs.len(),
        };
        Ok(*lock(&self.queues).entry(stream_id.to_owned()).or_insert(q))
    }

    /// Appends SETs to streams' queues in one durable write, dropping each full queue's
    /// oldest entry. The caller holds the tenant's lock, so sequence numbers are handed out
    /// in the order the writes happen.
    async fn enqueue_locked(&self, items: Vec<(String, QueuedSet)>) -> DomainResult<()> {
        let bound = self.settings.queue_bound;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut txn = DocTxn::new();
            let mut plan = Vec::with_capacity(items.len());
            for (stream_id, set) in &items {
                let q = self.queue_state(stream_id)?;
                let mut dropped = false;
                if q.len >= bound {
                    // the count is a hint; take the real one before dropping anything
                    let docs =
                        self.store
                            .docs(DocKind::SsfEvent, &queue_prefix(stream_id), bound)?;
                    if docs.len() >= bound
                        && let Some((k, b)) = docs.into_iter().next()
                    {
                        txn = txn
                            .unchanged(DocKind::SsfEvent, k.clone(), b)
                            .delete(DocKind::SsfEvent, k);
                        dropped = true;
                    }
                }
                txn = txn.put(
                    DocKind::SsfEvent,
                    queue_key(stream_id, q.next_seq),
                    encode(set)?,
                );
                plan.push((stream_id.clone(), q.next_seq, dropped));
            }
            match self.commit(txn).await {
                Ok(()) => {
                    let mut queues = lock(&self.queues);
                    for (stream_id, seq, dropped) in &plan {
                        let q = queues.entry(stream_id.clone()).or_insert(QueueState {
                            next_seq: 1,
                            len: 0,
                        });
                        q.next_seq = seq + 1;
                        if *dropped {
                            q.len = bound;
                        } else {
                            q.len += 1;
                        }
                    }
                    drop(queues);
                    for (stream_id, _, dropped) in &plan {
                        if *dropped {
                            self.count(stream_id, |s| s.dropped += 1);
                            tracing::warn!(stream = %stream_id, bound, "ssf queue full; the oldest event was dropped");
                        }
                        self.wake(stream_id);
                    }
                    return Ok(());
                }
                // a pusher or poller removed the entry we meant to drop: look again
                Err(StoreError::Conflict(_)) if attempt < 5 => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The first `n` queued SETs of a stream, in order, with their keys.
    fn head(&self, stream_id: &str, n: usize) -> DomainResult<Vec<(String, QueuedSet)>> {
        self.store
            .docs(DocKind::SsfEvent, &queue_prefix(stream_id), n)?
            .into_iter()
            .map(|(k, b)| Ok((k, decode("queued SET", &b)?)))
            .collect()
    }

    /// Removes delivered (or refused) SETs from a queue.
    async fn remove(&self, stream_id: &str, keys: Vec<String>) -> DomainResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let n = keys.len();
        let mut txn = DocTxn::new();
        for k in keys {
            txn = txn.delete(DocKind::SsfEvent, k);
        }
        self.commit(txn).await?;
        if let Some(q) = lock(&self.queues).get_mut(stream_id) {
            q.len = q.len.saturating_sub(n);
        }
        Ok(())
    }

    /// Signs queued claims as a SET.
    fn sign(&self, set: &QueuedSet) -> DomainResult<String> {
        self.keys
            .sign_jws(JwsAlg::Rs256, SET_TYP, set.claims.as_bytes())
    }

    fn waker(&self, stream_id: &str) -> Arc<Notify> {
        Arc::clone(lock(&self.wakers).entry(stream_id.to_owned()).or_default())
    }

    fn wake(&self, stream_id: &str) {
        if let Some(n) = lock(&self.wakers).get(stream_id) {
            n.notify_waiters();
        }
    }

    fn count(&self, stream_id: &str, f: impl FnOnce(&mut DeliveryStats)) {
        f(lock(&self.stats).entry(stream_id.to_owned()).or_default());
    }

    /// A stream's delivery counters since start.
    pub fn delivery_stats(&self, stream_id: &str) -> DeliveryStats {
        lock(&self.stats)
            .get(stream_id)
            .copied()
            .unwrap_or_default()
    }

    /// How many SETs are queued for a stream (read from the store).
    ///
    /// # Errors
    /// Store failures.
    pub fn queued(&self, stream_id: &str) -> DomainResult<usize> {
        Ok(self
            .store
            .docs(DocKind::SsfEvent, &queue_prefix(stream_id), usize::MAX)?
            .len())
    }
}

/// What the audit log keeps of a stream: never the authorization header or endpoint URL (it
/// may carry a secret in its query).
fn audit_details(rec: &StreamRecord) -> Value {
    let method = match rec.delivery {
        Delivery::Push { .. } => PUSH,
        Delivery::Poll => POLL,
    };
    json!({
        "delivery": method,
        "events_delivered": rec.events_delivered,
    })
}

#[cfg(test)]
mod tests;
