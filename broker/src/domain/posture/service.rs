//! The posture service: each device's [`PostureRecord`] kept in the store, the events that
//! change it, and each tenant's routing rules (policy and kill switches).
//!
//! **Architecture Invariant:** a posture record changes only in [`Posture::apply_event`] and
//! [`Posture::apply_device_events`] (and the seeding of a newly registered device), inside one transaction that also writes the
//! record's feed entry, the user and address indexes and the audit entry. The tenant's feed
//! appender is held across that commit, so the feed's order is the order of the changes.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::domain::feed::Feed;
use crate::domain::keys::Keys;
use crate::domain::ssf::Ssf;
use crate::domain::{Domain, DomainError, DomainResult, ErrorKind, Principal};
use crate::model::{Device, Role};
use crate::store::{DocKind, DocTxn, StoreError};

use super::event::{EventKind, PostureEvent, Subject, apply};
use super::policy::{KillSwitch, KillSwitches, Policy};
use super::record::{Address, Assessment, PostureRecord, assess};

/// How many times a change is retried when a concurrent write changed what it read.
const CONFLICT_RETRIES: usize = 4;

/// A tenant's routing rules as they are in force now.
#[derive(Debug)]
pub struct Rules {
    /// The policy (the built-in one until the tenant sets its own).
    pub policy: Policy,
    /// Whether the policy is the tenant's own (false: built-in).
    pub custom: bool,
    /// The policy's TOML text.
    pub policy_toml: String,
    /// The kill switches, in the order they were added.
    pub kill_entries: Vec<KillEntry>,
    /// The same, compiled for evaluation.
    pub kills: KillSwitches,
}

/// A kill switch as stored: the rule and who set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillEntry {
    /// `ks_` + 16 hex.
    pub id: String,
    /// The rule.
    #[serde(flatten)]
    pub switch: KillSwitch,
    /// Why, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was set.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Who set it.
    pub created_by: String,
}

/// A tenant's policy as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPolicy {
    toml: String,
    version: String,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    updated_by: String,
}

/// What happened to one device when an event was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceOutcome {
    /// The device.
    pub device_id: String,
    /// Whether its record changed (false: the event was old news or a repeat).
    pub changed: bool,
    /// The feed sequence number of the new record, when it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_seq: Option<u64>,
    /// Its assurance after the event.
    pub assurance: super::policy::Assurance,
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventOutcome {
    /// The event id as given.
    pub event_id: String,
    /// `applied` (at least one device matched) or `unknown_subject`.
    pub status: &'static str,
    /// Per device.
    pub devices: Vec<DeviceOutcome>,
}

/// The posture service.
#[derive(Debug)]
pub struct Posture {
    pub(super) domain: Arc<Domain>,
    pub(super) keys: Arc<Keys>,
    pub(super) feed: Arc<Feed>,
    ssf: OnceLock<Arc<Ssf>>,
    rules: RwLock<HashMap<String, Arc<Rules>>>,
    /// Bumped by every change of rules: a load that raced a change is not cached.
    rules_generation: AtomicU64,
    pub(super) route_count: AtomicU64,
    /// Decoded posture records with the stored bytes they were decoded from (route
    /// decisions): a read still goes to the store, and only a record whose bytes changed is
    /// decoded again, so the cache can never answer with a stale record.
    decoded: Mutex<HashMap<String, Decoded>>,
}

/// A posture record and the stored bytes it was decoded from.
type Decoded = (Vec<u8>, Arc<PostureRecord>);

/// At most this many decoded records are kept; a full cache starts again empty.
const DECODED_MAX: usize = 32_768;

pub(super) fn doc_id(tenant: &str, id: &str) -> String {
    format!("{tenant}/{id}")
}

fn user_index(tenant: &str, user: &str) -> String {
    format!("{tenant}/u/{user}")
}

fn address_index(tenant: &str, address: &Address) -> String {
    format!("{tenant}/a/{address}")
}

fn encode<T: Serialize>(v: &T) -> DomainResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(DomainError::internal)
}

pub(super) fn decode_record(bytes: &[u8]) -> DomainResult<PostureRecord> {
    serde_json::from_slice(bytes).map_err(|e| DomainError::internal(format!("posture record: {e}")))
}

/// The JSON the feed logs for a record: the record and what it was worth when logged.
pub fn feed_value(record: &PostureRecord, a: &Assessment) -> serde_json::Value {
    json!({
        "posture": record,
        "assessment": {
            "assurance": a.assurance,
            "rcs_e2ee": a.rcs_e2ee,
            "reasons": a.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
    })
}

impl Posture {
    /// The service over a domain, its signing keys and its feed.
    pub fn new(domain: Arc<Domain>, keys: Arc<Keys>, feed: Arc<Feed>) -> Self {
        Posture {
            domain,
            keys,
            feed,
            ssf: OnceLock::new(),
            rules: RwLock::new(HashMap::new()),
            rules_generation: AtomicU64::new(0),
            route_count: AtomicU64::new(0),
            decoded: Mutex::new(HashMap::new()),
        }
    }

    /// Connects the SSF transmitter: from then on each change is also published as SETs to
    /// the tenant's streams, before the request that made it is answered.
    pub fn set_ssf(&self, ssf: Arc<Ssf>) {
        let _ = self.ssf.set(ssf);
    }

    /// The domain.
    pub fn domain(&self) -> &Arc<Domain> {
        &self.domain
    }

    /// The signing keys.
    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    /// The feed.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    pub(super) fn now(&self) -> OffsetDateTime {
        self.domain.clock().now()
    }

    // ----- rules -------------------------------------------------------------------------

    /// The rules in force for `tenant` (cached; replaced at once when changed).
    ///
    /// # Errors
    /// Internal when a stored policy or kill switch list does not decode.
    pub fn rules(&self, tenant: &str) -> DomainResult<Arc<Rules>> {
        if let Ok(g) = self.rules.read()
            && let Some(r) = g.get(tenant)
        {
            return Ok(Arc::clone(r));
        }
        // a change committed while this load read the store must not be hidden by caching
        // what the load saw: cache only when no change happened meanwhile
        let generation = self.rules_generation.load(Ordering::Acquire);
        let r = Arc::new(self.load_rules(tenant)?);
        if let Ok(mut g) = self.rules.write()
            && self.rules_generation.load(Ordering::Acquire) == generation
        {
            g.insert(tenant.to_owned(), Arc::clone(&r));
        }
        Ok(r)
    }

    fn load_rules(&self, tenant: &str) -> DomainResult<Rules> {
        let store = self.domain.store();
        let (policy, custom, policy_toml) = match store.doc(DocKind::TenantPolicy, tenant)? {
            Some(b) => {
                let sp: StoredPolicy = serde_json::from_slice(&b)
                    .map_err(|e| DomainError::internal(format!("stored policy: {e}")))?;
                let p = Policy::from_toml(&sp.toml)
                    .map_err(|e| DomainError::internal(format!("stored policy: {e}")))?;
                (p, true, sp.toml)
            }
            None => (
                Policy::default(),
                false,
                super::policy::DEFAULT_POLICY_TOML.to_owned(),
            ),
        };
        let kill_entries = self.kill_entries(tenant)?.0;
        let mut kills = KillSwitches::new();
        for e in &kill_entries {
            kills
                .push(e.switch.clone())
                .map_err(|e| DomainError::internal(format!("stored kill switch: {e}")))?;
        }
        Ok(Rules {
            policy,
            custom,
            policy_toml,
            kill_entries,
            kills,
        })
    }

    fn kill_entries(&self, tenant: &str) -> DomainResult<(Vec<KillEntry>, Option<Vec<u8>>)> {
        let id = doc_id(tenant, "kill-switches");
        match self.domain.store().doc(DocKind::TenantPolicy, &id)? {
            Some(b) => {
                let v = serde_json::from_slice(&b)
                    .map_err(|e| DomainError::internal(format!("kill switches: {e}")))?;
                Ok((v, Some(b)))
            }
            None => Ok((Vec::new(), None)),
        }
    }

    /// After a committed change of the tenant's rules: drops the cached ones and returns the
    /// rules now in force.
    fn rules_changed(&self, tenant: &str) -> DomainResult<Arc<Rules>> {
        if let Ok(mut g) = self.rules.write() {
            self.rules_generation.fetch_add(1, Ordering::AcqRel);
            g.remove(tenant);
        }
        self.rules(tenant)
    }

    /// Replaces the tenant's policy (admin); in force for the next decision. The same text
    /// again changes nothing and is not audited twice.
    ///
    /// # Errors
    /// Forbidden, Malformed (the policy error names the key), store failures.
    pub async fn set_policy(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        toml_text: &str,
    ) -> DomainResult<Arc<Rules>> {
        who.require_admin()?;
        let tenant = who.scope(tenant)?;
        self.domain.require_tenant(&tenant)?;
        let policy = Policy::from_toml(toml_text)?;
        let old = self.rules(&tenant)?;
        if old.custom && old.policy.version() == policy.version() {
            return Ok(old);
        }
        let stored = StoredPolicy {
            toml: toml_text.to_owned(),
            version: policy.version().to_owned(),
            updated_at: self.now(),
            updated_by: who.actor(),
        };
        let prev = self.domain.store().doc(DocKind::TenantPolicy, &tenant)?;
        let mut txn = match prev {
            Some(b) => DocTxn::new().unchanged(DocKind::TenantPolicy, tenant.clone(), b),
            None => DocTxn::new().absent(DocKind::TenantPolicy, tenant.clone()),
        };
        txn = txn
            .put(DocKind::TenantPolicy, tenant.clone(), encode(&stored)?)
            .audit(self.domain.draft(
                who,
                &tenant,
                "policy.update",
                &tenant,
                json!({ "version": policy.version(), "previous": old.policy.version() }),
            ));
        self.domain.commit(txn).await.map_err(conflict)?;
        self.rules_changed(&tenant)
    }

    /// Goes back to the built-in policy (admin).
    ///
    /// # Errors
    /// Forbidden, store failures.
    pub async fn reset_policy(
        &self,
        who: &Principal,
        tenant: Option<&str>,
    ) -> DomainResult<Arc<Rules>> {
        who.require_admin()?;
        let tenant = who.scope(tenant)?;
        let Some(prev) = self.domain.store().doc(DocKind::TenantPolicy, &tenant)? else {
            return self.rules(&tenant);
        };
        let txn = DocTxn::new()
            .unchanged(DocKind::TenantPolicy, tenant.clone(), prev)
            .delete(DocKind::TenantPolicy, tenant.clone())
            .audit(self.domain.draft(
                who,
                &tenant,
                "policy.reset",
                &tenant,
                json!({ "version": Policy::default().version() }),
            ));
        self.domain.commit(txn).await.map_err(conflict)?;
        self.rules_changed(&tenant)
    }

    /// Adds a kill switch (admin); in force for the next decision.
    ///
    /// # Errors
    /// Forbidden, Malformed (a rule that cannot apply), store failures.
    pub async fn add_kill_switch(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        switch: KillSwitch,
        reason: Option<String>,
    ) -> DomainResult<KillEntry> {
        who.require_admin()?;
        let tenant = who.scope(tenant)?;
        self.domain.require_tenant(&tenant)?;
        if reason.as_ref().is_some_and(|r| r.len() > 512) {
            return Err(DomainError::new(
                ErrorKind::Malformed,
                "reason must be at most 512 characters",
            ));
        }
        let mut check = KillSwitches::new();
        check.push(switch.clone())?;
        let entry = KillEntry {
            id: format!(
                "ks_{}",
                hex::encode(crate::domain::tenancy::random_bytes::<8>()?)
            ),
            switch,
            reason,
            created_at: self.now(),
            created_by: who.actor(),
        };
        let e = entry.clone();
        self.change_kills(who, &tenant, "kill_switch.add", &entry.id, move |v| {
            v.push(e.clone());
            Ok(())
        })
        .await?;
        Ok(entry)
    }

    /// Removes a kill switch (admin).
    ///
    /// # Errors
    /// Forbidden, NotFound, store failures.
    pub async fn remove_kill_switch(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        id: &str,
    ) -> DomainResult<()> {
        who.require_admin()?;
        let tenant = who.scope(tenant)?;
        let id_owned = id.to_owned();
        self.change_kills(who, &tenant, "kill_switch.remove", id, move |v| {
            let before = v.len();
            v.retain(|e| e.id != id_owned);
            if v.len() == before {
                return Err(DomainError::new(
                    ErrorKind::NotFound,
                    format!("no kill switch {id_owned}"),
                ));
            }
            Ok(())
        })
        .await
    }

    async fn change_kills(
        &self,
        who: &Principal,
        tenant: &str,
        action: &str,
        subject: &str,
        change: impl Fn(&mut Vec<KillEntry>) -> DomainResult<()>,
    ) -> DomainResult<()> {
        let key = doc_id(tenant, "kill-switches");
        for _ in 0..CONFLICT_RETRIES {
            let (mut entries, prev) = self.kill_entries(tenant)?;
            change(&mut entries)?;
            let txn = match prev {
                Some(b) => DocTxn::new().unchanged(DocKind::TenantPolicy, key.clone(), b),
                None => DocTxn::new().absent(DocKind::TenantPolicy, key.clone()),
            };
            let details = json!({ "kill_switches": entries });
            let txn = txn
                .put(DocKind::TenantPolicy, key.clone(), encode(&entries)?)
                .audit(self.domain.draft(who, tenant, action, subject, details));
            match self.domain.commit(txn).await {
                Ok(_) => {
                    self.rules_changed(tenant)?;
                    return Ok(());
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DomainError::new(
            ErrorKind::Conflict,
            "kill switches changed concurrently; try again",
        ))
    }

    // ----- records -----------------------------------------------------------------------

    /// A device's stored posture record and its bytes.
    ///
    /// # Errors
    /// Internal when it does not decode.
    pub fn stored(&self, tenant: &str, device_id: &str) -> DomainResult<Option<PostureRecord>> {
        match self
            .domain
            .store()
            .doc(DocKind::Posture, &doc_id(tenant, device_id))?
        {
            Some(b) => Ok(Some(decode_record(&b)?)),
            None => Ok(None),
        }
    }

    /// A device's stored posture record, shared: decoded again only when its stored bytes
    /// differ from those it was last decoded from.
    ///
    /// # Errors
    /// Store failures; Internal for a record that does not decode.
    pub(super) fn stored_shared(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> DomainResult<Option<Arc<PostureRecord>>> {
        let key = doc_id(tenant, device_id);
        let Some(bytes) = self.domain.store().doc(DocKind::Posture, &key)? else {
            return Ok(None);
        };
        if let Ok(m) = self.decoded.lock()
            && let Some((b, r)) = m.get(&key)
            && *b == bytes
        {
            return Ok(Some(Arc::clone(r)));
        }
        let rec = Arc::new(decode_record(&bytes)?);
        if let Ok(mut m) = self.decoded.lock() {
            if m.len() >= DECODED_MAX && !m.contains_key(&key) {
                m.clear();
            }
            m.insert(key, (bytes, Arc::clone(&rec)));
        }
        Ok(Some(rec))
    }

    /// A device's posture record (admin, or a gateway of its tenant) and its assessment now.
    ///
    /// # Errors
    /// Forbidden, NotFound.
    pub fn device_posture(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        device_id: &str,
    ) -> DomainResult<(PostureRecord, Assessment)> {
        if !matches!(who.role, Role::Admin | Role::Gateway | Role::Mdm) {
            return Err(DomainError::new(
                ErrorKind::Forbidden,
                "admin, gateway or mdm role required",
            ));
        }
        let tenant = who.scope(tenant)?;
        let rec = self.stored(&tenant, device_id)?.ok_or_else(|| {
            DomainError::new(ErrorKind::NotFound, format!("no device {device_id}"))
        })?;
        let rules = self.rules(&tenant)?;
        let a = assess(&rec, &rules.policy.freshness(), self.now());
        Ok((rec, a))
    }

    /// Device ids an index document names.
    pub(super) fn index(&self, id: &str) -> DomainResult<(Vec<String>, Option<Vec<u8>>)> {
        match self.domain.store().doc(DocKind::PostureIndex, id)? {
            Some(b) => {
                let v = serde_json::from_slice(&b)
                    .map_err(|e| DomainError::internal(format!("posture index: {e}")))?;
                Ok((v, Some(b)))
            }
            None => Ok((Vec::new(), None)),
        }
    }

    /// The devices of a user.
    ///
    /// # Errors
    /// Internal on a broken index.
    pub fn user_devices(&self, tenant: &str, user: &str) -> DomainResult<Vec<String>> {
        Ok(self.index(&user_index(tenant, user))?.0)
    }

    /// The devices an address routes to.
    ///
    /// # Errors
    /// Internal on a broken index.
    pub fn address_devices(&self, tenant: &str, address: &Address) -> DomainResult<Vec<String>> {
        Ok(self.index(&address_index(tenant, address))?.0)
    }

    /// The device ids an event's subject names within `tenant`.
    fn resolve(&self, tenant: &str, subject: &Subject) -> DomainResult<Vec<String>> {
        match subject {
            Subject::Device {
                device_id: Some(id),
                ..
            } => {
                let known = self.stored(tenant, id)?.is_some()
                    || self.domain.device_record(tenant, id)?.is_some();
                Ok(if known { vec![id.clone()] } else { Vec::new() })
            }
            Subject::Device {
                device_id: None,
                identifiers,
            } => {
                let ids = identifiers
                    .serial
                    .iter()
                    .chain(&identifiers.udid)
                    .chain(&identifiers.imei)
                    .chain(&identifiers.hardware_ids);
                for v in ids {
                    if let Some(d) = self.domain.find_device(tenant, v)? {
                        return Ok(vec![d.id]);
                    }
                }
                Ok(Vec::new())
            }
            Subject::User { user } => self.user_devices(tenant, user),
            Subject::Address { address } => self.address_devices(tenant, address),
        }
    }

    // ----- changes -----------------------------------------------------------------------

    /// Ingests normalized events (admin or mdm role; the MDM and IdP adapters call this too).
    /// Events about devices postern does not know are reported, not stored.
    ///
    /// # Errors
    /// Forbidden, Malformed (too many events), store failures.
    pub async fn ingest(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        events: Vec<PostureEvent>,
    ) -> DomainResult<Vec<EventOutcome>> {
        if !matches!(who.role, Role::Admin | Role::Mdm | Role::Scim) {
            return Err(DomainError::new(
                ErrorKind::Forbidden,
                "admin, mdm or scim role required",
            ));
        }
        let tenant = who.scope(tenant)?;
        self.domain.require_tenant(&tenant)?;
        if events.len() > 500 {
            return Err(DomainError::new(
                ErrorKind::Malformed,
                "at most 500 events per request",
            ));
        }
        for e in &events {
            check_event(e)?;
        }
        let mut out = Vec::with_capacity(events.len());
        for e in &events {
            out.push(self.apply_event(who, &tenant, e).await?);
        }
        Ok(out)
    }

    /// Applies one event to every device its subject names in `tenant`: each changed record,
    /// its feed entry, indexes and audit entry are written in one transaction; then the SSF
    /// streams hear of it.
    ///
    /// # Errors
    /// Store failures; Conflict when the record kept changing under the write.
    pub async fn apply_event(
        &self,
        who: &Principal,
        tenant: &str,
        event: &PostureEvent,
    ) -> DomainResult<EventOutcome> {
        let ids = self.resolve(tenant, &event.subject)?;
        let mut devices = Vec::with_capacity(ids.len());
        for id in &ids {
            devices.push(
                self.change(who, tenant, id, std::slice::from_ref(event))
                    .await?,
            );
        }
        Ok(EventOutcome {
            event_id: event.event_id.clone(),
            status: if ids.is_empty() {
                "unknown_subject"
            } else {
                "applied"
            },
            devices,
        })
    }

    /// Applies events about one device (postern's own: enrollment, revocation) to its record
    /// in one transaction, in order.
    ///
    /// # Errors
    /// NotFound for an unknown device; store failures.
    pub async fn apply_device_events(
        &self,
        who: &Principal,
        tenant: &str,
        device_id: &str,
        events: &[PostureEvent],
    ) -> DomainResult<DeviceOutcome> {
        self.change(who, tenant, device_id, events).await
    }

    /// Applies `events` to one device's record (none: only writes the record of a device that
    /// has none yet).
    async fn change(
        &self,
        who: &Principal,
        tenant: &str,
        device_id: &str,
        events: &[PostureEvent],
    ) -> DomainResult<DeviceOutcome> {
        let key = doc_id(tenant, device_id);
        for _ in 0..CONFLICT_RETRIES {
            let mut appender = self.feed.appender(tenant).await?;
            let now = self.now();
            let rules = self.rules(tenant)?;
            let fresh = rules.policy.freshness();
            let prev = self.domain.store().doc(DocKind::Posture, &key)?;
            let (mut rec, seeded) = match &prev {
                Some(b) => (decode_record(b)?, false),
                None => match self.domain.device_record(tenant, device_id)? {
                    Some(d) => (PostureRecord::from_device(&d), true),
                    None => {
                        return Err(DomainError::new(
                            ErrorKind::NotFound,
                            format!("no device {device_id}"),
                        ));
                    }
                },
            };
            let before_rec = rec.clone();
            let before = assess(&rec, &fresh, now);
            let mut changed = false;
            for e in events {
                changed |= apply(&mut rec, e).changed;
            }
            let after = assess(&rec, &fresh, now);
            if !changed && !seeded {
                return Ok(DeviceOutcome {
                    device_id: device_id.to_owned(),
                    changed: false,
                    feed_seq: None,
                    assurance: after.assurance,
                });
            }
            let mut txn = match prev {
                Some(b) => DocTxn::new().unchanged(DocKind::Posture, key.clone(), b),
                None => DocTxn::new().absent(DocKind::Posture, key.clone()),
            };
            txn = txn.put(DocKind::Posture, key.clone(), encode(&rec)?);
            let old_keys = if seeded {
                BTreeSet::new()
            } else {
                index_keys(&before_rec)
            };
            txn = self.index_changes(txn, device_id, &old_keys, &index_keys(&rec))?;
            let (txn, seq) = appender.stage(txn, device_id, now, &feed_value(&rec, &after))?;
            let details = json!({
                "events": events.iter().map(|e| json!({
                    "source": e.source.as_str(),
                    "event_id": e.event_id,
                    "event": event_type(&e.event),
                })).collect::<Vec<_>>(),
                "feed_seq": seq,
                "assurance": { "before": before.assurance, "after": after.assurance },
            });
            let action = if seeded {
                "posture.create"
            } else {
                "posture.update"
            };
            let txn = txn.audit(self.domain.draft(who, tenant, action, device_id, details));
            match self.domain.commit(txn).await {
                Ok(_) => appender.committed(),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
            for e in events {
                self.publish(
                    tenant,
                    device_id,
                    e,
                    &before_rec,
                    &rec,
                    &before,
                    &after,
                    seq,
                )
                .await;
            }
            return Ok(DeviceOutcome {
                device_id: device_id.to_owned(),
                changed: true,
                feed_seq: Some(seq),
                assurance: after.assurance,
            });
        }
        Err(DomainError::new(
            ErrorKind::Conflict,
            format!("posture of {device_id} changed concurrently; try again"),
        ))
    }

    /// Writes the posture record of a newly registered device (and its feed entry); nothing
    /// when it has one already.
    ///
    /// # Errors
    /// Store failures.
    pub async fn device_registered(&self, who: &Principal, device: &Device) -> DomainResult<()> {
        self.change(who, &device.tenant, &device.id, &[])
            .await
            .map(|_| ())
    }

    fn index_changes(
        &self,
        mut txn: DocTxn,
        device_id: &str,
        old: &BTreeSet<String>,
        new: &BTreeSet<String>,
    ) -> DomainResult<DocTxn> {
        for k in old.symmetric_difference(new) {
            let (mut ids, prev) = self.index(k)?;
            if new.contains(k) {
                if !ids.iter().any(|i| i == device_id) {
                    ids.push(device_id.to_owned());
                    ids.sort();
                }
            } else {
                ids.retain(|i| i != device_id);
            }
            txn = match prev {
                Some(b) => txn.unchanged(DocKind::PostureIndex, k.clone(), b),
                None => txn.absent(DocKind::PostureIndex, k.clone()),
            };
            txn = if ids.is_empty() {
                txn.delete(DocKind::PostureIndex, k.clone())
            } else {
                txn.put(DocKind::PostureIndex, k.clone(), encode(&ids)?)
            };
        }
        Ok(txn)
    }

    /// Queues the Shared Signals events a change produces (when a transmitter is connected).
    /// A failure is logged: the change is stored and in the feed already.
    #[allow(clippy::too_many_arguments)]
    async fn publish(
        &self,
        tenant: &str,
        device_id: &str,
        event: &PostureEvent,
        before_rec: &PostureRecord,
        rec: &PostureRecord,
        before: &Assessment,
        after: &Assessment,
        seq: u64,
    ) {
        let Some(ssf) = self.ssf.get() else { return };
        let sets =
            super::signals::events_for(device_id, event, before_rec, rec, before, after, seq);
        for set in sets {
            if let Err(e) = ssf.publish(tenant, set).await {
                tracing::error!(tenant, device_id, error = %e, "ssf publish failed");
            }
        }
    }

    /// The next route decision's number (for audit sampling).
    pub(super) fn next_route_number(&self) -> u64 {
        self.route_count.fetch_add(1, Ordering::Relaxed)
    }
}

/// The index documents a record belongs in.
fn index_keys(rec: &PostureRecord) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    if let Some(u) = &rec.user {
        s.insert(user_index(&rec.tenant, u));
    }
    for a in &rec.addresses {
        s.insert(address_index(&rec.tenant, a));
    }
    s
}

fn conflict(e: StoreError) -> DomainError {
    match e {
        StoreError::Conflict(_) => DomainError::new(
            ErrorKind::Conflict,
            "changed concurrently; read it again and retry",
        ),
        other => other.into(),
    }
}

/// The event's `type` name.
pub fn event_type(e: &EventKind) -> &'static str {
    match e {
        EventKind::DeviceEnrolled { .. } => "device_enrolled",
        EventKind::DeviceUnenrolled => "device_unenrolled",
        EventKind::CheckedIn { .. } => "checked_in",
        EventKind::ComplianceChanged { .. } => "compliance_changed",
        EventKind::AttestationVerified { .. } => "attestation_verified",
        EventKind::CredentialIssued { .. } => "credential_issued",
        EventKind::CredentialRevoked { .. } => "credential_revoked",
        EventKind::DeviceLost => "device_lost",
        EventKind::UserDeactivated { .. } => "user_deactivated",
        EventKind::AddressesAssigned { .. } => "addresses_assigned",
        EventKind::CapabilityReported { .. } => "capability_reported",
        EventKind::CapabilityProved { .. } => "capability_proved",
    }
}

/// Limits on what an ingested event may carry.
fn check_event(e: &PostureEvent) -> DomainResult<()> {
    let bad = |m: &str| Err(DomainError::new(ErrorKind::Malformed, m.to_owned()));
    if e.event_id.is_empty() || e.event_id.len() > 256 || e.event_id.chars().any(char::is_control) {
        return bad("event_id must be 1 to 256 characters without control characters");
    }
    match &e.event {
        EventKind::AddressesAssigned { addresses } if addresses.len() > 32 => {
            return bad("at most 32 addresses per device");
        }
        // proofs of capability come only through the signed handshake
        EventKind::CapabilityProved { .. } => {
            return bad("capability_proved comes only from POST /v1/capabilities");
        }
        // credentials and attestations come only from postern's own enrollment
        EventKind::CredentialIssued { .. } | EventKind::AttestationVerified { .. } => {
            return bad("credentials and attestations are recorded by postern's enrollment");
        }
        _ => {}
    }
    if let Subject::User { user } = &e.subject
        && (user.is_empty() || user.len() > 256)
    {
        return bad("user must be 1 to 256 characters");
    }
    Ok(())
}
