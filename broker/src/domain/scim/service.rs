//! The SCIM operations over the store, and their effect on the posture engine.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::posture::Posture;
use crate::domain::posture::event::{EventKind, PostureEvent, Source, Subject};
use crate::domain::posture::record::{Address, DeviceIdentifiers};
use crate::domain::{Domain, Principal};
use crate::model::{Device, Role};
use crate::store::{DocKind, DocTxn, StoreError};

use super::filter::{self, AttrRef, Filter, Scope};
use super::lifecycle;
use super::patch;
use super::resource::{self, attribute_list, project};
use super::schema::{self, ResourceKind};
use super::{ScimError, ScimStatus, ScimType};

/// How many times a write is retried when a concurrent write changed what it read.
const RETRIES: usize = 4;

/// A list or search request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    /// The filter.
    #[serde(default)]
    pub filter: Option<String>,
    /// 1-based index of the first result.
    #[serde(default, rename = "startIndex")]
    pub start_index: Option<i64>,
    /// Most results to return.
    #[serde(default)]
    pub count: Option<i64>,
    /// `attributes`, comma-separated.
    #[serde(default)]
    pub attributes: Option<String>,
    /// `excludedAttributes`, comma-separated.
    #[serde(default, rename = "excludedAttributes")]
    pub excluded_attributes: Option<String>,
}

/// The addresses last assigned to a user's devices, and the event that did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Grant {
    user: String,
    addresses: Vec<Address>,
    event_id: String,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

/// A stored user or group.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    /// The resource's attributes, `id` and `meta` (without `location`) included.
    resource: Map<String, Value>,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant: Option<Grant>,
}

impl Stored {
    fn id(&self) -> &str {
        self.resource
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    fn value(&self) -> Value {
        Value::Object(self.resource.clone())
    }

    fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

fn doc_kind(kind: ResourceKind) -> DocKind {
    match kind {
        ResourceKind::User => DocKind::ScimUser,
        ResourceKind::Group => DocKind::ScimGroup,
    }
}

fn doc_id(tenant: &str, id: &str) -> String {
    format!("{tenant}/{id}")
}

fn user_name_key(tenant: &str, user_name: &str) -> String {
    format!("{tenant}/user/{}", user_name.to_lowercase())
}

fn external_prefix(tenant: &str, external_id: &str) -> String {
    format!("{tenant}/uext/{}/", hex::encode(external_id))
}

fn encode(s: &Stored) -> Result<Vec<u8>, ScimError> {
    serde_json::to_vec(s).map_err(|e| crate::domain::DomainError::internal(e).into())
}

fn decode(b: &[u8]) -> Result<Stored, ScimError> {
    serde_json::from_slice(b)
        .map_err(|e| crate::domain::DomainError::internal(format!("scim record: {e}")).into())
}

fn new_id() -> Result<String, ScimError> {
    let mut b = crate::domain::tenancy::random_bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The validated, rendered pieces of a write before it is committed.
struct Write {
    stored: Stored,
    old: Option<(Stored, Vec<u8>)>,
}

/// The SCIM service provider of one request: the posture service it reaches the store and
/// the posture engine through.
#[derive(Debug, Clone, Copy)]
pub struct Scim<'a> {
    posture: &'a Posture,
}

impl<'a> Scim<'a> {
    /// The service over the posture engine.
    pub fn new(posture: &'a Posture) -> Self {
        Scim { posture }
    }

    fn domain(&self) -> &Domain {
        self.posture.domain()
    }

    /// The tenant a caller provisions.
    ///
    /// # Errors
    /// 403 for roles other than scim and admin.
    pub fn tenant(who: &Principal) -> Result<String, ScimError> {
        match who.role {
            Role::Scim | Role::Admin => Ok(who.tenant.clone()),
            other => Err(ScimError::new(
                ScimStatus::Forbidden,
                format!(
                    "role {} may not use SCIM; scim or admin required",
                    other.as_str()
                ),
            )),
        }
    }

    fn load(
        &self,
        kind: ResourceKind,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(Stored, Vec<u8>)>, ScimError> {
        match self
            .domain()
            .store()
            .doc(doc_kind(kind), &doc_id(tenant, id))?
        {
            Some(b) => Ok(Some((decode(&b)?, b))),
            None => Ok(None),
        }
    }

    fn render(stored: &Stored, base: &str, kind: ResourceKind) -> Value {
        let mut v = stored.value();
        if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
            meta.insert(
                "location".into(),
                Value::String(format!("{base}/{}/{}", kind.endpoint(), stored.id())),
            );
        }
        v
    }

    // ----- reads -------------------------------------------------------------------------

    /// One resource, projected; and its ETag.
    ///
    /// # Errors
    /// 403, 404.
    pub fn get(
        &self,
        who: &Principal,
        kind: ResourceKind,
        base: &str,
        id: &str,
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> Result<(Value, String), ScimError> {
        let tenant = Self::tenant(who)?;
        let (s, _) = self
            .load(kind, &tenant, id)?
            .ok_or_else(|| ScimError::not_found(kind.as_str(), id))?;
        let full = Self::render(&s, base, kind);
        Ok((
            project(
                &full,
                &attribute_list(kind, attributes),
                &attribute_list(kind, excluded),
            ),
            s.etag(),
        ))
    }

    fn candidates(
        &self,
        kind: ResourceKind,
        tenant: &str,
        f: Option<&Filter>,
    ) -> Result<Vec<Stored>, ScimError> {
        let store = self.domain().store();
        if kind == ResourceKind::User
            && let Some(f) = f
        {
            if let Some(name) = f.simple_eq("userName") {
                let Some(id) = store.doc(DocKind::ScimIndex, &user_name_key(tenant, name))? else {
                    return Ok(Vec::new());
                };
                let id = String::from_utf8_lossy(&id).into_owned();
                return Ok(self
                    .load(kind, tenant, &id)?
                    .map(|s| s.0)
                    .into_iter()
                    .collect());
            }
            if let Some(ext) = f.simple_eq("externalId") {
                let mut out = Vec::new();
                for (_, id) in store.docs(
                    DocKind::ScimIndex,
                    &external_prefix(tenant, ext),
                    usize::MAX,
                )? {
                    let id = String::from_utf8_lossy(&id).into_owned();
                    out.extend(self.load(kind, tenant, &id)?.map(|s| s.0));
                }
                return Ok(out);
            }
        }
        store
            .docs(doc_kind(kind), &format!("{tenant}/"), usize::MAX)?
            .iter()
            .map(|(_, b)| decode(b))
            .collect()
    }

    fn matching(
        &self,
        kind: ResourceKind,
        tenant: &str,
        f: Option<&Filter>,
        base: &str,
    ) -> Result<Vec<Value>, ScimError> {
        let scope = Scope::Resource(kind);
        Ok(self
            .candidates(kind, tenant, f)?
            .iter()
            .map(|s| Self::render(s, base, kind))
            .filter(|v| f.is_none_or(|f| f.matches(scope, v)))
            .collect())
    }

    /// A page of the resources that pass the filter, as a ListResponse. No match is an empty
    /// list, never 404.
    ///
    /// # Errors
    /// 403; 400 `invalidFilter`.
    pub fn list(
        &self,
        who: &Principal,
        kind: ResourceKind,
        base: &str,
        q: &ListQuery,
    ) -> Result<Value, ScimError> {
        let tenant = Self::tenant(who)?;
        let f = parse_filter(q.filter.as_deref(), Scope::Resource(kind))?;
        let all = self.matching(kind, &tenant, f.as_ref(), base)?;
        let attrs = attribute_list(kind, q.attributes.as_deref());
        let excl = attribute_list(kind, q.excluded_attributes.as_deref());
        Ok(page(all, q, |v| project(v, &attrs, &excl)))
    }

    /// `POST /.search` at the root: users and groups together.
    ///
    /// # Errors
    /// 403; 400 `invalidFilter` when the filter fits neither resource type.
    pub fn search_all(
        &self,
        who: &Principal,
        base: &str,
        q: &ListQuery,
    ) -> Result<Value, ScimError> {
        let tenant = Self::tenant(who)?;
        let mut all: Vec<(ResourceKind, Value)> = Vec::new();
        let mut last_err = None;
        let mut any_ok = false;
        for kind in [ResourceKind::User, ResourceKind::Group] {
            match parse_filter(q.filter.as_deref(), Scope::Resource(kind)) {
                Ok(f) => {
                    any_ok = true;
                    all.extend(
                        self.matching(kind, &tenant, f.as_ref(), base)?
                            .into_iter()
                            .map(|v| (kind, v)),
                    );
                }
                Err(e) => last_err = Some(e),
            }
        }
        if !any_ok && let Some(e) = last_err {
            return Err(e);
        }
        let lists: Vec<(Vec<AttrRef>, Vec<AttrRef>)> = [ResourceKind::User, ResourceKind::Group]
            .iter()
            .map(|k| {
                (
                    attribute_list(*k, q.attributes.as_deref()),
                    attribute_list(*k, q.excluded_attributes.as_deref()),
                )
            })
            .collect();
        Ok(page(all, q, |(k, v)| {
            let (a, e) = &lists[usize::from(*k == ResourceKind::Group)];
            project(v, a, e)
        }))
    }

    // ----- writes ------------------------------------------------------------------------

    /// Creates a resource (`POST`): 201 with the resource and its ETag.
    ///
    /// # Errors
    /// 400 (`invalidSyntax`, `invalidValue`), 409 `uniqueness`, 403.
    pub async fn create(
        &self,
        who: &Principal,
        kind: ResourceKind,
        base: &str,
        body: &Value,
    ) -> Result<(Value, String), ScimError> {
        let tenant = Self::tenant(who)?;
        self.domain().require_tenant(&tenant)?;
        let mut attrs = resource::normalize(kind, body)?;
        let id = new_id()?;
        let now = self.domain().clock().now();
        attrs.insert("id".into(), Value::String(id.clone()));
        attrs.insert(
            "meta".into(),
            json!({
                "resourceType": kind.as_str(),
                "created": rfc3339(now),
                "lastModified": rfc3339(now),
                "version": "W/\"1\"",
            }),
        );
        validate(kind, &attrs)?;
        let stored = Stored {
            resource: attrs,
            version: 1,
            grant: None,
        };
        let w = Write { stored, old: None };
        let s = self.commit(who, kind, &tenant, w, "create").await?;
        Ok((Self::render(&s, base, kind), s.etag()))
    }

    /// Replaces a resource (`PUT`). `active` absent from the body keeps the stored value.
    ///
    /// # Errors
    /// 400, 404, 409 `uniqueness`, 412.
    pub async fn replace(
        &self,
        who: &Principal,
        kind: ResourceKind,
        base: &str,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<(Value, String), ScimError> {
        let tenant = Self::tenant(who)?;
        let attrs = resource::normalize(kind, body)?;
        for _ in 0..RETRIES {
            let (old, bytes) = self
                .load(kind, &tenant, id)?
                .ok_or_else(|| ScimError::not_found(kind.as_str(), id))?;
            check_if_match(&old, if_match)?;
            let mut new = attrs.clone();
            for keep in ["id", "meta"] {
                if let Some(v) = old.resource.get(keep) {
                    new.insert(keep.into(), v.clone());
                }
            }
            // a PUT that leaves out `active` does not flip it (Okta's AIW apps)
            if kind == ResourceKind::User
                && !new.contains_key("active")
                && let Some(a) = old.resource.get("active")
            {
                new.insert("active".into(), a.clone());
            }
            resource::tidy(kind, &mut new);
            match self
                .update(who, kind, &tenant, old, bytes, new, "replace")
                .await
            {
                Err(e) if e.status == ScimStatus::Conflict && e.scim_type.is_none() => continue,
                Ok(s) => return Ok((Self::render(&s, base, kind), s.etag())),
                Err(e) => return Err(e),
            }
        }
        Err(concurrent())
    }

    /// Applies a PatchOp (`PATCH`): 200 with the resource.
    ///
    /// # Errors
    /// 400 (`invalidSyntax`, `invalidPath`, `invalidFilter`, `invalidValue`, `noTarget`,
    /// `mutability`), 404, 409 `uniqueness`, 412.
    pub async fn patch(
        &self,
        who: &Principal,
        kind: ResourceKind,
        base: &str,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<(Value, String), ScimError> {
        let tenant = Self::tenant(who)?;
        let ops = patch::parse_request(body)?;
        for _ in 0..RETRIES {
            let (old, bytes) = self
                .load(kind, &tenant, id)?
                .ok_or_else(|| ScimError::not_found(kind.as_str(), id))?;
            check_if_match(&old, if_match)?;
            let mut new = old.resource.clone();
            patch::apply(kind, &mut new, &ops)?;
            match self
                .update(who, kind, &tenant, old, bytes, new, "patch")
                .await
            {
                Err(e) if e.status == ScimStatus::Conflict && e.scim_type.is_none() => continue,
                Ok(s) => return Ok((Self::render(&s, base, kind), s.etag())),
                Err(e) => return Err(e),
            }
        }
        Err(concurrent())
    }

    /// Deletes a resource (`DELETE`). A user's deletion deactivates them first (the cascade),
    /// removes their addresses and takes them out of every group.
    ///
    /// # Errors
    /// 404, 412.
    pub async fn delete(
        &self,
        who: &Principal,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), ScimError> {
        let tenant = Self::tenant(who)?;
        for _ in 0..RETRIES {
            let (old, bytes) = self
                .load(kind, &tenant, id)?
                .ok_or_else(|| ScimError::not_found(kind.as_str(), id))?;
            check_if_match(&old, if_match)?;
            let key = doc_id(&tenant, id);
            let mut txn = DocTxn::new()
                .unchanged(doc_kind(kind), key.clone(), bytes)
                .delete(doc_kind(kind), key);
            if kind == ResourceKind::User {
                let user = lifecycle::user_name(&old.value())
                    .unwrap_or_default()
                    .to_owned();
                self.posture.deactivate_user(who, None, &user).await?;
                if let Some(g) = &old.grant
                    && !g.addresses.is_empty()
                {
                    self.assign(who, &tenant, &g.user, Vec::new(), id, old.version + 1)
                        .await?;
                }
                txn = index_changes(txn, &tenant, id, Some(&old), None);
                txn = self.leave_groups(txn, &tenant, id)?;
            }
            let draft = self.domain().draft(
                who,
                &tenant,
                &format!("scim.{}.delete", kind.as_str().to_lowercase()),
                id,
                json!({ "version": old.version }),
            );
            match self.domain().commit(txn.audit(draft)).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(concurrent())
    }

    fn leave_groups(
        &self,
        mut txn: DocTxn,
        tenant: &str,
        user_id: &str,
    ) -> Result<DocTxn, ScimError> {
        let store = self.domain().store();
        for (key, b) in store.docs(DocKind::ScimGroup, &format!("{tenant}/"), usize::MAX)? {
            let mut g = decode(&b)?;
            let Some(Value::Array(members)) = g.resource.get_mut("members") else {
                continue;
            };
            let before = members.len();
            members.retain(|m| m.get("value").and_then(Value::as_str) != Some(user_id));
            if members.len() == before {
                continue;
            }
            if members.is_empty() {
                g.resource.remove("members");
            }
            g.version += 1;
            let now = self.domain().clock().now();
            stamp_meta(&mut g, now);
            txn = txn.unchanged(DocKind::ScimGroup, key.clone(), b).put(
                DocKind::ScimGroup,
                key,
                encode(&g)?,
            );
        }
        Ok(txn)
    }

    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        who: &Principal,
        kind: ResourceKind,
        tenant: &str,
        old: Stored,
        bytes: Vec<u8>,
        new: Map<String, Value>,
        action: &str,
    ) -> Result<Stored, ScimError> {
        validate(kind, &new)?;
        if new == old.resource {
            return Ok(old);
        }
        let mut stored = Stored {
            resource: new,
            version: old.version + 1,
            grant: old.grant.clone(),
        };
        stamp_meta(&mut stored, self.domain().clock().now());
        let w = Write {
            stored,
            old: Some((old, bytes)),
        };
        self.commit(who, kind, tenant, w, action).await
    }

    /// The lifecycle effects of a user write, then the write itself in one transaction.
    async fn commit(
        &self,
        who: &Principal,
        kind: ResourceKind,
        tenant: &str,
        mut w: Write,
        action: &str,
    ) -> Result<Stored, ScimError> {
        let id = w.stored.id().to_owned();
        let store = self.domain().store();
        let old = w.old.as_ref().map(|(s, _)| s);
        let key = doc_id(tenant, &id);
        let mut txn = match &w.old {
            Some((_, b)) => DocTxn::new().unchanged(doc_kind(kind), key.clone(), b.clone()),
            None => DocTxn::new().absent(doc_kind(kind), key.clone()),
        };
        let mut details = json!({ "version": w.stored.version });
        if kind == ResourceKind::User {
            let new_v = w.stored.value();
            let name = lifecycle::user_name(&new_v).unwrap_or_default().to_owned();
            let old_name =
                old.and_then(|o| o.resource.get("userName")?.as_str().map(str::to_owned));
            // uniqueness first, so that a refused write has no effect
            let renamed = old_name.as_deref().map(str::to_lowercase) != Some(name.to_lowercase());
            if renamed
                && store
                    .doc(DocKind::ScimIndex, &user_name_key(tenant, &name))?
                    .is_some()
            {
                return Err(ScimError::bad(
                    ScimType::Uniqueness,
                    "userName is already taken in this tenant",
                ));
            }
            let was_active = old.map(|o| lifecycle::active(&o.value()));
            let active = lifecycle::active(&new_v);
            details["active"] = json!({ "before": was_active, "after": active });
            // the addresses this user now gives, to their devices
            let addresses = lifecycle::addresses(&new_v);
            let prev = old.and_then(|o| o.grant.clone());
            if let Some(g) = &prev
                && g.user != name
                && !g.addresses.is_empty()
            {
                self.assign(who, tenant, &g.user, Vec::new(), &id, w.stored.version)
                    .await?;
            }
            let unchanged = prev
                .as_ref()
                .is_some_and(|g| g.user == name && g.addresses == addresses);
            let nothing_to_give = prev.is_none() && addresses.is_empty();
            if !unchanged && !nothing_to_give {
                w.stored.grant = Some(
                    self.assign(who, tenant, &name, addresses, &id, w.stored.version)
                        .await?,
                );
                details["addresses_assigned"] = json!(true);
            }
            // active going false (or created inactive): the cascade, before the answer
            if !active && was_active != Some(false) {
                let r = self.posture.deactivate_user(who, None, &name).await?;
                details["deactivated"] =
                    json!({ "devices": r.devices.len(), "revoked": r.revoked.len() });
            }
            txn = index_changes(txn, tenant, &id, old, Some(&w.stored));
        }
        let audit_action = format!("scim.{}.{action}", kind.as_str().to_lowercase());
        let draft = self
            .domain()
            .draft(who, tenant, &audit_action, &id, details);
        let txn = txn
            .put(doc_kind(kind), key, encode(&w.stored)?)
            .audit(draft);
        match self.domain().commit(txn).await {
            Ok(_) => Ok(w.stored),
            Err(StoreError::Conflict(_)) if w.old.is_none() => Err(ScimError::bad(
                ScimType::Uniqueness,
                "userName is already taken in this tenant",
            )),
            Err(StoreError::Conflict(_)) => {
                Err(ScimError::new(ScimStatus::Conflict, "changed concurrently"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives `user`'s devices these addresses (an `AddressesAssigned` event from SCIM).
    async fn assign(
        &self,
        who: &Principal,
        tenant: &str,
        user: &str,
        addresses: Vec<Address>,
        id: &str,
        version: u64,
    ) -> Result<Grant, ScimError> {
        let at = self.domain().clock().now();
        let event_id = format!("scim:{id}:{version}:{}", at.unix_timestamp_nanos());
        let e = PostureEvent {
            source: Source::Scim,
            event_id: event_id.clone(),
            occurred_at: at,
            subject: Subject::User {
                user: user.to_owned(),
            },
            event: EventKind::AddressesAssigned {
                addresses: addresses.clone(),
            },
        };
        self.posture.apply_event(who, tenant, &e).await?;
        Ok(Grant {
            user: user.to_owned(),
            addresses,
            event_id,
            at,
        })
    }

    /// A device was registered: if its `user` is a SCIM user of the tenant (the `userName`,
    /// exactly), it gets the addresses the user gives, and is marked deactivated when the user
    /// is inactive.
    ///
    /// # Errors
    /// Store failures.
    pub async fn device_registered(
        &self,
        who: &Principal,
        device: &Device,
    ) -> Result<(), ScimError> {
        let Some(user) = &device.user else {
            return Ok(());
        };
        let store = self.domain().store();
        let Some(id) = store.doc(DocKind::ScimIndex, &user_name_key(&device.tenant, user))? else {
            return Ok(());
        };
        let id = String::from_utf8_lossy(&id).into_owned();
        let Some((s, _)) = self.load(ResourceKind::User, &device.tenant, &id)? else {
            return Ok(());
        };
        let v = s.value();
        if lifecycle::user_name(&v) != Some(user.as_str()) {
            return Ok(());
        }
        let subject = Subject::Device {
            device_id: Some(device.id.clone()),
            identifiers: DeviceIdentifiers::default(),
        };
        if let Some(g) = &s.grant
            && g.user == *user
        {
            let e = PostureEvent {
                source: Source::Scim,
                event_id: g.event_id.clone(),
                occurred_at: g.at,
                subject: subject.clone(),
                event: EventKind::AddressesAssigned {
                    addresses: g.addresses.clone(),
                },
            };
            self.posture.apply_event(who, &device.tenant, &e).await?;
        }
        if !lifecycle::active(&v) {
            let at = s
                .resource
                .get("meta")
                .and_then(|m| m.get("lastModified"))
                .and_then(Value::as_str)
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                .unwrap_or_else(|| self.domain().clock().now());
            let e = PostureEvent {
                source: Source::Scim,
                event_id: format!("scim-inactive:{id}:{}", s.version),
                occurred_at: at,
                subject,
                event: EventKind::UserDeactivated { user: user.clone() },
            };
            self.posture.apply_event(who, &device.tenant, &e).await?;
        }
        Ok(())
    }

    /// [`Scim::device_registered`] for every path that registers a device (the admin API, MDM
    /// webhooks, MDM connectors): the device is registered either way, so a failure here is
    /// logged rather than returned.
    pub async fn new_device(&self, who: &Principal, device: &Device) {
        if let Err(e) = self.device_registered(who, device).await {
            tracing::error!(device = %device.id, error = %e, "scim: applying the user to a new device failed");
        }
    }
}

fn concurrent() -> ScimError {
    ScimError::new(
        ScimStatus::Conflict,
        "the resource kept changing concurrently; read it again and retry",
    )
}

fn stamp_meta(s: &mut Stored, now: OffsetDateTime) {
    let version = s.etag();
    if let Some(meta) = s.resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.insert("lastModified".into(), Value::String(rfc3339(now)));
        meta.insert("version".into(), Value::String(version));
    }
}

fn check_if_match(s: &Stored, if_match: Option<&str>) -> Result<(), ScimError> {
    let Some(want) = if_match else { return Ok(()) };
    let etag = s.etag();
    let strong = etag.trim_start_matches("W/");
    let ok = want
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.trim_start_matches("W/") == strong);
    if ok {
        Ok(())
    } else {
        Err(ScimError::new(
            ScimStatus::PreconditionFailed,
            format!("the resource is at version {etag}"),
        ))
    }
}

fn parse_filter(f: Option<&str>, scope: Scope) -> Result<Option<Filter>, ScimError> {
    match f.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => {
            let f = filter::parse(s)?;
            f.check(scope)?;
            Ok(Some(f))
        }
    }
}

/// Required attributes and their limits.
fn validate(kind: ResourceKind, attrs: &Map<String, Value>) -> Result<(), ScimError> {
    let required = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    let Some(v) = attrs.get(required).and_then(Value::as_str) else {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            format!("{required} is required"),
        ));
    };
    if v.trim().is_empty() || v.len() > 256 || v.chars().any(char::is_control) {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            format!("{required} must be 1 to 256 characters without control characters"),
        ));
    }
    Ok(())
}

/// The index changes of a user write: the lower-cased `userName` and each `externalId`.
fn index_changes(
    mut txn: DocTxn,
    tenant: &str,
    id: &str,
    old: Option<&Stored>,
    new: Option<&Stored>,
) -> DocTxn {
    let name = |s: Option<&Stored>| {
        s.and_then(|s| s.resource.get("userName")?.as_str().map(str::to_lowercase))
    };
    let ext = |s: Option<&Stored>| {
        s.and_then(|s| s.resource.get("externalId")?.as_str().map(str::to_owned))
    };
    let (old_name, new_name) = (name(old), name(new));
    if old_name != new_name {
        if let Some(n) = &old_name {
            txn = txn
                .unchanged(
                    DocKind::ScimIndex,
                    user_name_key(tenant, n),
                    id.as_bytes().to_vec(),
                )
                .delete(DocKind::ScimIndex, user_name_key(tenant, n));
        }
        if let Some(n) = &new_name {
            txn = txn
                .absent(DocKind::ScimIndex, user_name_key(tenant, n))
                .put(
                    DocKind::ScimIndex,
                    user_name_key(tenant, n),
                    id.as_bytes().to_vec(),
                );
        }
    }
    let (old_ext, new_ext) = (ext(old), ext(new));
    if old_ext != new_ext {
        if let Some(e) = &old_ext {
            txn = txn.delete(
                DocKind::ScimIndex,
                format!("{}{id}", external_prefix(tenant, e)),
            );
        }
        if let Some(e) = &new_ext {
            txn = txn.put(
                DocKind::ScimIndex,
                format!("{}{id}", external_prefix(tenant, e)),
                id.as_bytes().to_vec(),
            );
        }
    }
    txn
}

/// A ListResponse page of `all` (RFC 7644 §3.4.2.4: `startIndex` below 1 is 1, a negative
/// `count` is 0, at most [`schema::MAX_RESULTS`]).
fn page<T>(all: Vec<T>, q: &ListQuery, render: impl Fn(&T) -> Value) -> Value {
    let total = all.len();
    let start = usize::try_from(q.start_index.unwrap_or(1).max(1)).unwrap_or(1);
    let count = usize::try_from(
        q.count
            .unwrap_or(schema::MAX_RESULTS as i64)
            .clamp(0, schema::MAX_RESULTS as i64),
    )
    .unwrap_or(0);
    let items: Vec<Value> = all.iter().skip(start - 1).take(count).map(render).collect();
    json!({
        "schemas": [schema::LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}
