//! One-time dynamic SCEP challenges (`DocKind::ScepChallenge`).
//!
//! An MDM asks for a challenge for one device ([`Scep::create_challenge`]); postern answers
//! 40 lowercase hex characters (160 random bits; hex because a CSR's `challengePassword` is
//! often a PrintableString, which has no `_`) and stores only their SHA-256, with the
//! provisioner, the tenant, the device and the expiry. The SCEP server redeems it
//! ([`Scep::redeem`]) with the identifiers the CSR carries: once, before expiry, for that
//! device. A challenge that expired is deleted when it is presented, and by
//! [`Scep::sweep`] (run with the other expiring documents) a day after it expired.
//!
//! A challenge made for a Jamf Pro `SCEPChallenge` event that names no device (Jamf's event
//! carries only the SCEP URL and the payload identifier) is bound to the provisioner and
//! tenant only: still one-time and short-lived, but any device may redeem it; the redeemed
//! challenge then names the device the CSR's identifiers find, if any.

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::domain::tenancy::random_bytes;
use crate::domain::{DomainError, DomainResult, ErrorKind, Principal};
use crate::model::{Device, Role};
use crate::store::{DocKind, DocTxn, StoreError};

use super::{ChallengeMode, Scep};

/// How long a used or expired challenge is kept (so a replay is told `Used`, not `Unknown`)
/// before [`Scep::sweep`] removes it.
pub const KEEP_AFTER_EXPIRY: Duration = Duration::days(1);

/// A challenge as answered to the MDM (the only place the secret appears).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedChallenge {
    /// The one-time challenge: 40 lowercase hex characters.
    pub challenge: String,
    /// When it stops being accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The device it is bound to (`None`: bound to the provisioner only, see the module docs).
    pub device: Option<String>,
}

/// A challenge the SCEP server redeemed: what it may issue, and for which device.
#[derive(Debug, Clone, PartialEq)]
pub struct RedeemedChallenge {
    /// The provisioner.
    pub provisioner: String,
    /// The tenant.
    pub tenant: String,
    /// The certificate profile to issue.
    pub profile: String,
    /// The device: the one the challenge is bound to, or for an unbound challenge the one
    /// the CSR's identifiers find (`None` when they find none).
    pub device: Option<Device>,
    /// Whether the challenge was bound to that device when it was made.
    pub bound: bool,
}

/// Why a challenge was refused. The SCEP server answers each of the first four with
/// `pkiStatus` FAILURE and `failInfo` **badRequest** (RFC 8894 §3.2.1.4.5), as
/// [`ChallengeError::fail_info`] says; [`ChallengeError::Unavailable`] is postern's own
/// failure, after which nothing may be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// No such challenge for this provisioner (never made, made for another provisioner,
    /// or removed by the sweep).
    #[error("unknown challenge")]
    Unknown,
    /// Already redeemed.
    #[error("the challenge was already used")]
    Used,
    /// Past its expiry.
    #[error("the challenge expired")]
    Expired,
    /// The CSR's identifiers are not those of the device the challenge is bound to.
    #[error("the challenge is bound to another device")]
    OtherDevice,
    /// postern could not read or write its store.
    #[error("challenge store: {0}")]
    Unavailable(String),
}

impl ChallengeError {
    /// The SCEP `failInfo` to answer with: `badRequest` for every refusal of the challenge
    /// itself, `None` for [`ChallengeError::Unavailable`].
    pub fn fail_info(&self) -> Option<&'static str> {
        match self {
            ChallengeError::Unavailable(_) => None,
            _ => Some("badRequest"),
        }
    }
}

impl From<DomainError> for ChallengeError {
    fn from(e: DomainError) -> Self {
        ChallengeError::Unavailable(e.detail)
    }
}

impl From<StoreError> for ChallengeError {
    fn from(e: StoreError) -> Self {
        ChallengeError::Unavailable(e.to_string())
    }
}

/// A challenge as stored, by the hex SHA-256 of the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChallengeRecord {
    provisioner: String,
    tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    created_by: String,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    used_at: Option<OffsetDateTime>,
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

/// The name of a challenge in the audit log: the first 16 hex characters of its SHA-256
/// (enough to correlate, useless to redeem).
fn audit_id(key: &str) -> &str {
    &key[..16.min(key.len())]
}

fn encode(r: &ChallengeRecord) -> DomainResult<Vec<u8>> {
    serde_json::to_vec(r).map_err(DomainError::internal)
}

fn decode(b: &[u8]) -> DomainResult<ChallengeRecord> {
    serde_json::from_slice(b)
        .map_err(|e| DomainError::internal(format!("SCEP challenge record: {e}")))
}

fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

impl Scep {
    /// Makes a one-time challenge on `provisioner` for the device `device` names (its id, or
    /// a serial, UDID, IMEI or hardware id of the provisioner's tenant). Admin or mdm tokens
    /// of the provisioner's tenant (and operators). Audited `scep.challenge.create` without
    /// the secret.
    ///
    /// # Errors
    /// Forbidden (role, tenant), NotFound (provisioner, device), Conflict (the provisioner
    /// does not use dynamic challenges), Malformed (`device` empty), store failures.
    pub async fn create_challenge(
        &self,
        who: &Principal,
        provisioner: &str,
        device: &str,
    ) -> DomainResult<IssuedChallenge> {
        if !matches!(who.role, Role::Admin | Role::Mdm) {
            return Err(DomainError::new(
                ErrorKind::Forbidden,
                format!(
                    "role {} may not request SCEP challenges; admin or mdm required",
                    who.role.as_str()
                ),
            ));
        }
        let p = self.require(provisioner)?;
        let tenant = who.scope(Some(&p.settings.tenant))?;
        let device = device.trim();
        if device.is_empty() || device.len() > 256 {
            return Err(DomainError::new(
                ErrorKind::Malformed,
                "device must be 1 to 256 characters",
            ));
        }
        let found = match self.domain().device_record(&tenant, device)? {
            Some(d) => Some(d),
            None => self.domain().find_device(&tenant, device)?,
        };
        let Some(found) = found else {
            return Err(DomainError::new(
                ErrorKind::NotFound,
                format!("no device {device:?} in tenant {tenant}"),
            ));
        };
        self.issue(who, provisioner, Some(found.id)).await
    }

    /// Makes a challenge on `provisioner` bound to `device_id` (or, `None`, to the provisioner
    /// only), for `who` already authorized for the provisioner's tenant (the Jamf webhook).
    pub(crate) async fn issue(
        &self,
        who: &Principal,
        provisioner: &str,
        device_id: Option<String>,
    ) -> DomainResult<IssuedChallenge> {
        let p = self.require(provisioner)?;
        if p.settings.challenge != ChallengeMode::Dynamic {
            return Err(DomainError::new(
                ErrorKind::Conflict,
                format!("SCEP provisioner {provisioner:?} does not use dynamic challenges"),
            ));
        }
        let now = self.domain().clock().now();
        let lifetime = i64::try_from(p.settings.challenge_lifetime_seconds).unwrap_or(i64::MAX);
        let expires_at = now + Duration::seconds(lifetime);
        let challenge = hex::encode(random_bytes::<20>()?);
        let key = sha256_hex(challenge.as_bytes());
        let rec = ChallengeRecord {
            provisioner: provisioner.to_owned(),
            tenant: p.settings.tenant.clone(),
            device_id: device_id.clone(),
            created_at: now,
            expires_at,
            created_by: who.actor(),
            used_at: None,
        };
        let txn = DocTxn::new()
            .absent(DocKind::ScepChallenge, key.clone())
            .put(DocKind::ScepChallenge, key.clone(), encode(&rec)?)
            .audit(self.domain().draft(
                who,
                &rec.tenant,
                "scep.challenge.create",
                device_id.as_deref().unwrap_or(provisioner),
                json!({ "provisioner": provisioner, "challenge_id": audit_id(&key),
                        "device": device_id, "expires_at": expires_at.unix_timestamp() }),
            ));
        self.domain().commit(txn).await?;
        Ok(IssuedChallenge {
            challenge,
            expires_at,
            device: device_id,
        })
    }

    /// Redeems a challenge presented to `provisioner` in a CSR whose identifiers (subject
    /// serialNumber, CN, SAN values: whatever names the device) are `identifiers`, at `now`.
    /// Checked in this order: known for this provisioner, unused, unexpired, and (for a
    /// challenge bound to a device) at least one identifier is the device's (id, serial,
    /// UDID, IMEI or hardware id, ASCII case ignored) and none names another device of the
    /// tenant. Success consumes it in one transaction: of two concurrent redemptions exactly
    /// one wins, the other is `Used`. Audited `scep.challenge.redeem`.
    ///
    /// # Errors
    /// See [`ChallengeError`]; every refusal maps to SCEP failInfo `badRequest`.
    pub async fn redeem(
        &self,
        provisioner: &str,
        challenge: &str,
        identifiers: &[String],
        now: OffsetDateTime,
    ) -> Result<RedeemedChallenge, ChallengeError> {
        let Some(p) = self.provisioner(provisioner) else {
            return Err(ChallengeError::Unknown);
        };
        let key = sha256_hex(challenge.trim().as_bytes());
        let store = self.domain().store();
        let Some(old) = store.doc(DocKind::ScepChallenge, &key)? else {
            return Err(ChallengeError::Unknown);
        };
        let mut rec = decode(&old)?;
        if rec.provisioner != provisioner || rec.tenant != p.settings.tenant {
            return Err(ChallengeError::Unknown);
        }
        if rec.used_at.is_some() {
            return Err(ChallengeError::Used);
        }
        if now >= rec.expires_at {
            // nobody can use it any more: remove it now (a concurrent change keeps it for
            // the sweep)
            let txn = DocTxn::new()
                .unchanged(DocKind::ScepChallenge, key.clone(), old)
                .delete(DocKind::ScepChallenge, key.clone());
            match self.domain().commit(txn).await {
                Ok(_) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
            return Err(ChallengeError::Expired);
        }
        let tenant = rec.tenant.clone();
        let mut named = Vec::new();
        for i in identifiers
            .iter()
            .map(|i| i.trim())
            .filter(|i| !i.is_empty())
        {
            if let Some(d) = self.domain().find_device(&tenant, i)?
                && !named.iter().any(|n: &Device| n.id == d.id)
            {
                named.push(d);
            }
        }
        let device = match &rec.device_id {
            Some(id) => {
                let Some(d) = self.domain().device_record(&tenant, id)? else {
                    return Err(ChallengeError::OtherDevice);
                };
                let mine = identifiers
                    .iter()
                    .any(|i| same(i, &d.id) || d.identifiers().iter().any(|own| same(i, own)));
                if !mine || named.iter().any(|n| n.id != d.id) {
                    let who = scep_principal(&tenant, provisioner);
                    self.domain()
                        .record(
                            &who,
                            &tenant,
                            "scep.challenge.refuse",
                            &d.id,
                            json!({ "provisioner": provisioner, "challenge_id": audit_id(&key),
                                    "reason": "other_device" }),
                        )
                        .await?;
                    return Err(ChallengeError::OtherDevice);
                }
                Some(d)
            }
            None if named.len() > 1 => return Err(ChallengeError::OtherDevice),
            None => named.into_iter().next(),
        };
        rec.used_at = Some(now);
        let who = scep_principal(&tenant, provisioner);
        let txn = DocTxn::new()
            .unchanged(DocKind::ScepChallenge, key.clone(), old)
            .put(DocKind::ScepChallenge, key.clone(), encode(&rec)?)
            .audit(self.domain().draft(
                &who,
                &tenant,
                "scep.challenge.redeem",
                device.as_ref().map_or(provisioner, |d| d.id.as_str()),
                json!({ "provisioner": provisioner, "challenge_id": audit_id(&key),
                        "bound": rec.device_id.is_some() }),
            ));
        match self.domain().commit(txn).await {
            Ok(_) => {}
            // redeemed (or swept) concurrently: the other one won
            Err(StoreError::Conflict(_)) => return Err(ChallengeError::Used),
            Err(e) => return Err(e.into()),
        }
        Ok(RedeemedChallenge {
            provisioner: provisioner.to_owned(),
            tenant,
            profile: p.settings.profile.clone(),
            device,
            bound: rec.device_id.is_some(),
        })
    }

    /// Removes challenges that expired more than [`KEEP_AFTER_EXPIRY`] ago (used or not).
    /// Returns how many.
    ///
    /// # Errors
    /// Store failures.
    pub async fn sweep(&self) -> DomainResult<usize> {
        let now = self.domain().clock().now();
        let mut removed = 0;
        for (key, bytes) in self
            .domain()
            .store()
            .docs(DocKind::ScepChallenge, "", usize::MAX)?
        {
            let gone = decode(&bytes).map_or(true, |r| r.expires_at + KEEP_AFTER_EXPIRY < now);
            if !gone {
                continue;
            }
            let txn = DocTxn::new()
                .unchanged(DocKind::ScepChallenge, key.clone(), bytes)
                .delete(DocKind::ScepChallenge, key);
            match self.domain().commit(txn).await {
                Ok(_) => removed += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if removed > 0 {
            tracing::info!(removed, "expired SCEP challenges removed");
        }
        Ok(removed)
    }
}

/// The SCEP server as an audit actor.
fn scep_principal(tenant: &str, provisioner: &str) -> Principal {
    Principal {
        tenant: tenant.to_owned(),
        role: Role::Device,
        actor_id: format!("scep:{provisioner}"),
    }
}
