//! The revocation cascade and the audit query.
//!
//! Revoking a credential, marking a device lost or deactivating a user changes, before the
//! request is answered: the device's posture record (so the next route decision sees it), its
//! feed entry, the certificates' status (OCSP answers from the store at once) and a new CRL,
//! and the SSF streams' queues. Each step is durable before the next; a failure part way
//! leaves what was done done (the operation can be repeated: every step is idempotent).

use serde::Serialize;
use time::OffsetDateTime;

use crate::domain::{DomainError, DomainResult, ErrorKind, Principal};
use crate::model::{AuditEntry, CertificateRecord, CertificateStatus, RevocationReason, Role};

use super::event::{EventKind, PostureEvent, Source, Subject};
use super::record::DeviceIdentifiers;
use super::service::Posture;

/// What a cascade did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CascadeReport {
    /// The devices whose records changed.
    pub devices: Vec<String>,
    /// The certificates revoked now.
    pub revoked: Vec<String>,
    /// The feed entries written.
    pub feed_seqs: Vec<u64>,
}

fn source_of(who: &Principal) -> Source {
    match who.role {
        Role::Scim => Source::Scim,
        Role::Mdm => Source::Jamf,
        _ => Source::Admin,
    }
}

impl Posture {
    /// Revokes a certificate (admin), then records it on the device's posture (feed, SSF).
    ///
    /// # Errors
    /// As [`crate::domain::Domain::revoke`].
    pub async fn revoke_credential(
        &self,
        who: &Principal,
        serial: &str,
        reason: RevocationReason,
    ) -> DomainResult<CertificateRecord> {
        let rec = self.domain.revoke(who, serial, reason).await?;
        self.credential_revoked(who, &rec).await?;
        Ok(rec)
    }

    /// Records a revocation already stored (ACME `revokeCert`, the cascade) on the device's
    /// posture record.
    ///
    /// # Errors
    /// Store failures.
    pub async fn credential_revoked(
        &self,
        who: &Principal,
        rec: &CertificateRecord,
    ) -> DomainResult<Option<u64>> {
        let Some(device_id) = rec.enrollment.as_ref().and_then(|e| e.device.clone()) else {
            return Ok(None);
        };
        let at = match rec.status {
            CertificateStatus::Revoked { revoked_at, .. } => revoked_at,
            CertificateStatus::Good => return Ok(None),
        };
        let e = PostureEvent {
            source: source_of(who),
            event_id: format!("revoke:{}", rec.serial),
            occurred_at: at,
            subject: Subject::Device {
                device_id: Some(device_id),
                identifiers: DeviceIdentifiers::default(),
            },
            event: EventKind::CredentialRevoked {
                serial: rec.serial.clone(),
            },
        };
        let out = self.apply_event(who, &rec.tenant, &e).await?;
        Ok(out.devices.first().and_then(|d| d.feed_seq))
    }

    /// Marks a device lost (admin or mdm) and revokes its certificates (keyCompromise).
    ///
    /// # Errors
    /// Forbidden, NotFound, store failures.
    pub async fn device_lost(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        device_id: &str,
    ) -> DomainResult<CascadeReport> {
        if !matches!(who.role, Role::Admin | Role::Mdm) {
            return Err(DomainError::new(
                ErrorKind::Forbidden,
                "admin or mdm role required",
            ));
        }
        let tenant = who.scope(tenant)?;
        if self.domain.device_record(&tenant, device_id)?.is_none() {
            return Err(DomainError::new(
                ErrorKind::NotFound,
                format!("no device {device_id}"),
            ));
        }
        let now = self.now();
        let e = PostureEvent {
            source: source_of(who),
            event_id: format!("lost:{device_id}"),
            occurred_at: now,
            subject: Subject::Device {
                device_id: Some(device_id.to_owned()),
                identifiers: DeviceIdentifiers::default(),
            },
            event: EventKind::DeviceLost,
        };
        let mut report = CascadeReport::default();
        self.cascade(
            who,
            &tenant,
            &e,
            RevocationReason::KeyCompromise,
            &mut report,
        )
        .await?;
        Ok(report)
    }

    /// Deactivates a user (admin or scim): each of their devices is marked and its
    /// certificates revoked (affiliationChanged).
    ///
    /// # Errors
    /// Forbidden, Malformed user, store failures.
    pub async fn deactivate_user(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        user: &str,
    ) -> DomainResult<CascadeReport> {
        if !matches!(who.role, Role::Admin | Role::Scim) {
            return Err(DomainError::new(
                ErrorKind::Forbidden,
                "admin or scim role required",
            ));
        }
        if user.is_empty() || user.len() > 256 || user.chars().any(char::is_control) {
            return Err(DomainError::new(
                ErrorKind::Malformed,
                "user must be 1 to 256 characters",
            ));
        }
        let tenant = who.scope(tenant)?;
        self.domain.require_tenant(&tenant)?;
        let now = self.now();
        let e = PostureEvent {
            source: source_of(who),
            event_id: format!("deactivate:{user}:{}", now.unix_timestamp_nanos()),
            occurred_at: now,
            subject: Subject::User {
                user: user.to_owned(),
            },
            event: EventKind::UserDeactivated {
                user: user.to_owned(),
            },
        };
        let mut report = CascadeReport::default();
        self.cascade(
            who,
            &tenant,
            &e,
            RevocationReason::AffiliationChanged,
            &mut report,
        )
        .await?;
        Ok(report)
    }

    async fn cascade(
        &self,
        who: &Principal,
        tenant: &str,
        e: &PostureEvent,
        reason: RevocationReason,
        report: &mut CascadeReport,
    ) -> DomainResult<()> {
        let out = self.apply_event(who, tenant, e).await?;
        for d in &out.devices {
            report.devices.push(d.device_id.clone());
            report.feed_seqs.extend(d.feed_seq);
        }
        for d in &out.devices {
            let Some(dev) = self.domain.device_record(tenant, &d.device_id)? else {
                continue;
            };
            for serial in &dev.certificates {
                let Some(cert) = self.domain.store().certificate(serial)? else {
                    continue;
                };
                if cert.status != CertificateStatus::Good {
                    continue;
                }
                let rec = match self.domain.revoke_record(who, cert, reason).await {
                    Ok(r) => r,
                    Err(err) if err.kind == ErrorKind::AlreadyRevoked => continue,
                    Err(err) => return Err(err),
                };
                report.revoked.push(rec.serial.clone());
                if let Some(seq) = self.credential_revoked(who, &rec).await? {
                    report.feed_seqs.push(seq);
                }
            }
        }
        Ok(())
    }

    /// Audit entries of the caller's tenant (operators: any, or the one named), optionally
    /// only those about `device` and at or after `since`. Gateways see route decisions and
    /// posture changes only.
    ///
    /// # Errors
    /// Forbidden for other roles.
    pub fn audit_query(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        device: Option<&str>,
        since: Option<OffsetDateTime>,
        limit: usize,
    ) -> DomainResult<Vec<AuditEntry>> {
        if !matches!(who.role, Role::Admin | Role::Gateway) {
            return Err(DomainError::new(
                ErrorKind::Forbidden,
                "admin or gateway role required",
            ));
        }
        let scope = match (tenant, who.is_operator()) {
            (None, true) => None,
            (t, _) => Some(who.scope(t)?),
        };
        let limit = limit.clamp(1, 1000);
        let store = self.domain.store();
        let from = match since {
            Some(t) => first_at_or_after(&**store, t)?,
            None => 1,
        };
        let mut out = Vec::new();
        let mut cursor = from;
        loop {
            let page = store.audit_entries(cursor, 1000)?;
            let Some(last) = page.last() else { break };
            cursor = last.seq + 1;
            for e in page {
                if scope.as_ref().is_some_and(|t| e.tenant != *t) {
                    continue;
                }
                if since.is_some_and(|s| e.time < s) {
                    continue;
                }
                if who.role == Role::Gateway
                    && !(e.action.starts_with("route.") || e.action.starts_with("posture."))
                {
                    continue;
                }
                if let Some(d) = device
                    && !mentions(&e, d)
                {
                    continue;
                }
                out.push(e);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}

/// Whether an entry is about `device`: its subject, or a `device`/`devices` detail.
fn mentions(e: &AuditEntry, device: &str) -> bool {
    if e.subject == device {
        return true;
    }
    let d = &e.details;
    d.get("device").and_then(|v| v.as_str()) == Some(device)
        || d.get("devices")
            .and_then(|v| v.as_array())
            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(device)))
}

/// The first audit sequence number whose entry is at or after `t` (entries are appended in
/// time order), by binary search.
fn first_at_or_after(store: &dyn crate::store::Store, t: OffsetDateTime) -> DomainResult<u64> {
    let at = |seq: u64| -> DomainResult<Option<OffsetDateTime>> {
        Ok(store.audit_entries(seq, 1)?.first().map(|e| e.time))
    };
    // find an upper bound
    let mut hi = 1u64;
    while at(hi)?.is_some_and(|x| x < t) {
        hi = hi.saturating_mul(2);
        if hi > (1 << 62) {
            break;
        }
    }
    let mut lo = hi / 2;
    lo = lo.max(1);
    // invariant: entries before lo are < t; entry hi is >= t or absent
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match at(mid)? {
            Some(x) if x < t => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}
