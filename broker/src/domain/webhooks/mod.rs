//! MDM webhooks: registrations per tenant (`DocKind::Webhook`) and the receiver that turns
//! NanoMDM, MicroMDM, Jamf Pro and Workspace ONE events into posture events.
//!
//! A registration holds the tenant, the kind, whether the webhook may register devices, and
//! its secret. The secret is kept in the store document because an HMAC cannot be checked
//! against a hash; it is shown once, never logged or audited. Rotating it keeps the previous
//! one valid for [`ROTATION_GRACE`], so the MDM can be reconfigured without losing events.
//!
//! A delivery is checked in this order, and nothing is stored before the last step:
//! 1. the webhook exists (else NotFound: 404);
//! 2. its credential: NanoMDM's `X-Hmac-Signature` (base64 HMAC-SHA256 of the body under the
//!    secret); for the others that signature, or the secret as a bearer token, as the password
//!    of HTTP Basic authentication, or in `X-Postern-Webhook-Secret` (else Unauthorized: 401);
//! 3. the body parses (else Malformed: 400 naming the defect), and its event time is not more
//!    than [`MAX_CLOCK_SKEW`] ahead;
//! 4. the device is found by serial, UDID or IMEI in the tenant's inventory; an enrollment of
//!    an unknown device registers it when the webhook has `register_devices`; identifiers the
//!    inventory lacks are added;
//! 5. the report becomes [`PostureEvent`]s applied through [`Posture::apply_event`]; a
//!    `DevicePropertiesAttestation` becomes an `attestation_verified` event only when postern
//!    verified the chain to the tenant's Apple attestation roots (those its ACME provisioners
//!    use) and the attested serial or UDID is the device's.
//!
//! **Architecture Invariant:** replays and reordering change nothing: every posture event a
//! delivery makes is stamped with the event time the MDM reports and an id derived from the
//! body's SHA-256, so the posture engine's stamps make a repeated body a no-op and an older
//! event unable to overwrite a newer one.

mod apple;
mod jamf;
mod jamf_scep;
mod workspace_one;

pub use apple::{platform as apple_platform, plist_dict, security_compliance};
pub use jamf_scep::Answer;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use postern_certs::attestation::{Evidence, Format, SecurityLevel, Verifier};

use crate::domain::acme::Acme;
use crate::domain::devices::NewDevice;
use crate::domain::posture::Posture;
use crate::domain::posture::event::{EventKind, PostureEvent, Source, Subject};
use crate::domain::posture::policy::Assurance;
use crate::domain::posture::record::{AttestationSummary, Compliance, DeviceIdentifiers};
use crate::domain::tenancy::random_bytes;
use crate::domain::{Domain, DomainError, DomainResult, ErrorKind, Principal};
use crate::model::{Device, Role};
use crate::store::{DocKind, DocTxn};

/// How long a replaced secret stays valid after a rotation.
pub const ROTATION_GRACE: Duration = Duration::hours(24);
/// The largest webhook body accepted (a `DeviceInformation` report with its attestation chain
/// is a few kilobytes).
pub const MAX_BODY: usize = 1024 * 1024;
/// How far ahead of postern's clock an event time may be.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
/// The header that may carry the secret itself.
pub const SECRET_HEADER: &str = "x-postern-webhook-secret";
/// NanoMDM's signature header.
pub const HMAC_HEADER: &str = "x-hmac-signature";

/// The MDM a webhook receives from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookKind {
    /// NanoMDM (`-webhook-url`, `-webhook-hmac-key`).
    #[serde(rename = "nanomdm")]
    NanoMdm,
    /// MicroMDM (`-command-webhook-url`).
    #[serde(rename = "micromdm")]
    MicroMdm,
    /// Jamf Pro webhooks.
    #[serde(rename = "jamf")]
    Jamf,
    /// Workspace ONE UEM event notifications.
    #[serde(rename = "workspace_one")]
    WorkspaceOne,
}

impl WebhookKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::NanoMdm => "nanomdm",
            WebhookKind::MicroMdm => "micromdm",
            WebhookKind::Jamf => "jamf",
            WebhookKind::WorkspaceOne => "workspace_one",
        }
    }

    /// The posture source its events carry.
    pub fn source(self) -> Source {
        match self {
            WebhookKind::NanoMdm => Source::NanoMdm,
            WebhookKind::MicroMdm => Source::MicroMdm,
            WebhookKind::Jamf => Source::Jamf,
            WebhookKind::WorkspaceOne => Source::WorkspaceOne,
        }
    }
}

/// A webhook to register.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// The MDM.
    pub kind: WebhookKind,
    /// A name for people, 1 to 128 characters.
    pub name: String,
    /// Whether an enrollment of a device the inventory lacks registers it (default true: the
    /// MDM that owns the fleet knows its devices).
    #[serde(default)]
    pub register_devices: Option<bool>,
    /// The tenant (operators may name another).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Jamf Pro only: the SCEP provisioner (of the webhook's tenant) whose one-time challenge
    /// answers a `SCEPChallenge` event.
    #[serde(default)]
    pub scep_provisioner: Option<String>,
}

/// A registration as stored (with its secrets).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WebhookRecord {
    id: String,
    tenant: String,
    kind: WebhookKind,
    name: String,
    register_devices: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scep_provisioner: Option<String>,
    secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_secret: Option<String>,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    previous_valid_until: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    created_by: String,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    rotated_at: Option<OffsetDateTime>,
}

/// A registration as shown: everything but the secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookView {
    /// `wh_` + 20 hex.
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// The MDM.
    pub kind: WebhookKind,
    /// The name.
    pub name: String,
    /// The path the MDM posts to: `/webhooks/{id}`.
    pub path: String,
    /// Whether enrollments of unknown devices register them.
    pub register_devices: bool,
    /// The SCEP provisioner answering Jamf `SCEPChallenge` events, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scep_provisioner: Option<String>,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Who made it.
    pub created_by: String,
    /// When the secret was last rotated.
    #[serde(with = "time::serde::rfc3339::option")]
    pub rotated_at: Option<OffsetDateTime>,
    /// Until when the secret replaced by the last rotation is still accepted.
    #[serde(with = "time::serde::rfc3339::option")]
    pub previous_secret_valid_until: Option<OffsetDateTime>,
}

impl WebhookRecord {
    fn view(&self) -> WebhookView {
        WebhookView {
            id: self.id.clone(),
            tenant: self.tenant.clone(),
            kind: self.kind,
            name: self.name.clone(),
            path: format!("/webhooks/{}", self.id),
            register_devices: self.register_devices,
            scep_provisioner: self.scep_provisioner.clone(),
            created_at: self.created_at,
            created_by: self.created_by.clone(),
            rotated_at: self.rotated_at,
            previous_secret_valid_until: self.previous_valid_until,
        }
    }
}

/// What a delivery presented to authenticate itself (header values as received).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `X-Hmac-Signature`.
    pub hmac_signature: Option<String>,
    /// `Authorization` (`Bearer <secret>` or `Basic base64(user:secret)`).
    pub authorization: Option<String>,
    /// `X-Postern-Webhook-Secret`.
    pub secret_header: Option<String>,
}

/// What a delivery did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// `applied` (the device's record was reached), `ignored` (the event carries no posture)
    /// or `unknown_device` (no device of the tenant, and none registered).
    pub status: &'static str,
    /// Why, for `ignored` and `unknown_device`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The MDM's own id of the event, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_event_id: Option<String>,
    /// The device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Whether this delivery registered the device.
    pub registered: bool,
    /// Whether the device's posture record changed.
    pub changed: bool,
    /// Its assurance after the delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assurance: Option<Assurance>,
    /// The outcome of a `DevicePropertiesAttestation`, when the report carried one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestationOutcome>,
}

/// What became of a relayed attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttestationOutcome {
    /// `verified` or `refused`.
    pub status: &'static str,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One MDM event, normalized from any of the kinds (the parsers' output).
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) occurred_at: OffsetDateTime,
    /// The MDM's own event id, for the audit.
    pub(crate) source_event_id: Option<String>,
    /// The topic or event type as the MDM names it.
    pub(crate) topic: String,
    pub(crate) device: DeviceFacts,
    pub(crate) action: Action,
    /// A `DevicePropertiesAttestation` chain, DER, leaf first.
    pub(crate) attestation: Option<Vec<Vec<u8>>>,
}

/// What the MDM says about the device.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeviceFacts {
    pub(crate) serial: Option<String>,
    pub(crate) udid: Option<String>,
    pub(crate) imei: Option<String>,
    pub(crate) mdm_id: Option<String>,
    pub(crate) platform: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) os_version: Option<String>,
}

/// What happened, in the receiver's terms.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// The device named itself (Apple `Authenticate`): registered if unknown, nothing else.
    Identified,
    /// Enrollment complete.
    Enrolled,
    /// Unenrolled.
    Unenrolled,
    /// A check-in; `None` fields carry forward what the record has.
    CheckedIn(CheckIn),
    /// Nothing for posture, and why.
    Ignored(String),
}

/// A check-in's facts; `None`: not reported.
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckIn {
    pub(crate) compliance: Option<Compliance>,
    pub(crate) os_version: Option<String>,
    pub(crate) storage_encrypted: Option<bool>,
    pub(crate) jailbreak_detected: Option<bool>,
    /// Apple `IsSupervised` (read; the posture record has no field for it yet).
    pub(crate) supervised: Option<bool>,
    /// Apple `IsActivationLockEnabled` (read; no field for it yet).
    pub(crate) activation_lock: Option<bool>,
}

pub(crate) fn malformed(detail: impl Into<String>) -> DomainError {
    DomainError::new(ErrorKind::Malformed, detail.into())
}

fn decode(bytes: &[u8]) -> DomainResult<WebhookRecord> {
    serde_json::from_slice(bytes).map_err(|e| DomainError::internal(format!("webhook record: {e}")))
}

fn encode(r: &WebhookRecord) -> DomainResult<Vec<u8>> {
    serde_json::to_vec(r).map_err(DomainError::internal)
}

fn new_secret() -> DomainResult<String> {
    Ok(format!(
        "whsec_{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
    ))
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

/// The webhook service: registrations and deliveries. Cheap to make; holds no state of its own.
#[derive(Debug, Clone)]
pub struct Webhooks {
    posture: Arc<Posture>,
    acme: Arc<Acme>,
    scep: Option<Arc<crate::domain::scep::Scep>>,
}

impl Webhooks {
    /// The service over the posture engine (and its domain) and ACME (for the tenant's Apple
    /// attestation roots).
    pub fn new(posture: Arc<Posture>, acme: Arc<Acme>) -> Self {
        Webhooks {
            posture,
            acme,
            scep: None,
        }
    }

    /// The same service with the SCEP provisioners (for Jamf `SCEPChallenge` events).
    #[must_use]
    pub fn with_scep(mut self, scep: Arc<crate::domain::scep::Scep>) -> Self {
        self.scep = Some(scep);
        self
    }

    fn domain(&self) -> &Arc<Domain> {
        self.posture.domain()
    }

    fn load(&self, id: &str) -> DomainResult<Option<(WebhookRecord, Vec<u8>)>> {
        match self.domain().store().doc(DocKind::Webhook, id)? {
            Some(b) => Ok(Some((decode(&b)?, b))),
            None => Ok(None),
        }
    }

    /// The caller's webhook `id` (404 for another tenant's).
    fn own(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        id: &str,
    ) -> DomainResult<(WebhookRecord, Vec<u8>)> {
        who.require_admin()?;
        let tenant = who.scope(tenant)?;
        match self.load(id)? {
            Some((r, b)) if r.tenant == tenant => Ok((r, b)),
            _ => Err(DomainError::new(
                ErrorKind::NotFound,
                format!("no webhook {id}"),
            )),
        }
    }

    /// Registers a webhook (admin). Returns it and its secret, which is shown only now.
    ///
    /// # Errors
    /// Forbidden, NotFound (tenant), Malformed (name), store failures.
    pub async fn create(
        &self,
        who: &Principal,
        new: NewWebhook,
    ) -> DomainResult<(WebhookView, String)> {
        who.require_admin()?;
        let tenant = who.scope(new.tenant.as_deref())?;
        self.domain().require_tenant(&tenant)?;
        let name = new.name.trim();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(malformed(
                "name must be 1 to 128 characters without control characters",
            ));
        }
        let scep_provisioner = self.check_scep_provisioner(&new, &tenant)?;
        let secret = new_secret()?;
        let rec = WebhookRecord {
            id: format!("wh_{}", hex::encode(random_bytes::<10>()?)),
            tenant: tenant.clone(),
            kind: new.kind,
            name: name.to_owned(),
            register_devices: new.register_devices.unwrap_or(true),
            scep_provisioner,
            secret: secret.clone(),
            previous_secret: None,
            previous_valid_until: None,
            created_at: self.domain().clock().now(),
            created_by: who.actor(),
            rotated_at: None,
        };
        let txn = DocTxn::new()
            .absent(DocKind::Webhook, rec.id.clone())
            .put(DocKind::Webhook, rec.id.clone(), encode(&rec)?)
            .audit(self.domain().draft(
                who,
                &tenant,
                "webhook.create",
                &rec.id,
                json!({ "kind": rec.kind.as_str(), "name": rec.name,
                        "register_devices": rec.register_devices,
                        "scep_provisioner": rec.scep_provisioner }),
            ));
        self.domain().commit(txn).await?;
        Ok((rec.view(), secret))
    }

    /// The tenant's webhooks (admin), in id order, without secrets.
    ///
    /// # Errors
    /// Forbidden, store failures.
    pub fn list(&self, who: &Principal, tenant: Option<&str>) -> DomainResult<Vec<WebhookView>> {
        who.require_admin()?;
        let tenant = who.scope(tenant)?;
        let mut out = Vec::new();
        for (_, b) in self
            .domain()
            .store()
            .docs(DocKind::Webhook, "", usize::MAX)?
        {
            let r = decode(&b)?;
            if r.tenant == tenant {
                out.push(r.view());
            }
        }
        Ok(out)
    }

    /// Removes a webhook (admin): its deliveries are 404 from then on.
    ///
    /// # Errors
    /// Forbidden, NotFound, Conflict (changed meanwhile), store failures.
    pub async fn delete(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        id: &str,
    ) -> DomainResult<()> {
        let (rec, bytes) = self.own(who, tenant, id)?;
        let txn = DocTxn::new()
            .unchanged(DocKind::Webhook, id, bytes)
            .delete(DocKind::Webhook, id)
            .audit(self.domain().draft(
                who,
                &rec.tenant,
                "webhook.delete",
                id,
                json!({ "kind": rec.kind.as_str(), "name": rec.name }),
            ));
        self.domain().commit(txn).await.map_err(changed)?;
        Ok(())
    }

    /// Replaces a webhook's secret (admin); the one replaced stays valid for
    /// [`ROTATION_GRACE`] (a secret replaced earlier is dropped). Returns the new secret, shown
    /// only now.
    ///
    /// # Errors
    /// Forbidden, NotFound, Conflict (changed meanwhile), store failures.
    pub async fn rotate(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        id: &str,
    ) -> DomainResult<(WebhookView, String)> {
        let (mut rec, bytes) = self.own(who, tenant, id)?;
        let now = self.domain().clock().now();
        let secret = new_secret()?;
        rec.previous_secret = Some(std::mem::replace(&mut rec.secret, secret.clone()));
        rec.previous_valid_until = Some(now + ROTATION_GRACE);
        rec.rotated_at = Some(now);
        let txn = DocTxn::new()
            .unchanged(DocKind::Webhook, id, bytes)
            .put(DocKind::Webhook, id, encode(&rec)?)
            .audit(self.domain().draft(
                who,
                &rec.tenant,
                "webhook.rotate",
                id,
                json!({ "previous_valid_until": rec.previous_valid_until
                    .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()) }),
            ));
        self.domain().commit(txn).await.map_err(changed)?;
        Ok((rec.view(), secret))
    }

    /// Checks a delivery's credential against the webhook's secrets.
    fn authenticate(
        &self,
        rec: &WebhookRecord,
        creds: &Credentials,
        body: &[u8],
    ) -> DomainResult<()> {
        let now = self.domain().clock().now();
        let mut secrets = vec![rec.secret.as_str()];
        if let (Some(p), Some(until)) = (&rec.previous_secret, rec.previous_valid_until)
            && now < until
        {
            secrets.push(p);
        }
        let refuse = |m: &str| Err(DomainError::new(ErrorKind::Unauthorized, m.to_owned()));
        if let Some(sig) = &creds.hmac_signature {
            let Ok(sig) = STANDARD.decode(sig.trim().as_bytes()) else {
                return refuse("X-Hmac-Signature is not base64");
            };
            let ok = secrets.iter().any(|s| {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.as_bytes());
                ring::hmac::verify(&key, body, &sig).is_ok()
            });
            return if ok {
                Ok(())
            } else {
                refuse("X-Hmac-Signature does not verify")
            };
        }
        if rec.kind == WebhookKind::NanoMdm {
            return refuse(
                "X-Hmac-Signature is required: configure NanoMDM with -webhook-hmac-key <secret>",
            );
        }
        let presented = match (&creds.authorization, &creds.secret_header) {
            (_, Some(h)) => Some(h.trim().as_bytes().to_vec()),
            (Some(a), None) => {
                let (scheme, value) = a.trim().split_once(' ').unwrap_or((a.trim(), ""));
                if scheme.eq_ignore_ascii_case("bearer") {
                    Some(value.trim().as_bytes().to_vec())
                } else if scheme.eq_ignore_ascii_case("basic") {
                    let Ok(decoded) = STANDARD.decode(value.trim().as_bytes()) else {
                        return refuse("the Basic credentials are not base64");
                    };
                    match decoded.iter().position(|b| *b == b':') {
                        Some(i) => Some(decoded[i + 1..].to_vec()),
                        None => return refuse("the Basic credentials are not user:password"),
                    }
                } else {
                    return refuse("Authorization must be Bearer or Basic");
                }
            }
            (None, None) => None,
        };
        let Some(presented) = presented else {
            return refuse(
                "the webhook secret is required (Basic password, Bearer token, \
                 X-Postern-Webhook-Secret or X-Hmac-Signature)",
            );
        };
        if secrets.iter().any(|s| ct_eq(s.as_bytes(), &presented)) {
            Ok(())
        } else {
            refuse("the webhook secret does not match")
        }
    }

    /// Receives one delivery for webhook `id` (see the module docs for the order of checks).
    ///
    /// # Errors
    /// NotFound (no such webhook), Unauthorized (credential), Malformed (body, event time,
    /// identifiers), store failures.
    pub async fn receive(
        &self,
        id: &str,
        creds: &Credentials,
        body: &[u8],
    ) -> DomainResult<Receipt> {
        let Some((rec, _)) = self.load(id)? else {
            return Err(DomainError::new(
                ErrorKind::NotFound,
                format!("no webhook {id}"),
            ));
        };
        if let Err(e) = self.authenticate(&rec, creds, body) {
            tracing::info!(webhook = id, reason = %e.detail, "webhook delivery refused");
            return Err(e);
        }
        let report = match rec.kind {
            WebhookKind::NanoMdm | WebhookKind::MicroMdm => apple::parse(body)?,
            WebhookKind::Jamf => jamf::parse(body)?,
            WebhookKind::WorkspaceOne => workspace_one::parse(body)?,
        };
        let now = self.domain().clock().now();
        if report.occurred_at > now + MAX_CLOCK_SKEW {
            return Err(malformed(format!(
                "the event time {} is in the future",
                report.occurred_at
            )));
        }
        if let Action::Ignored(why) = &report.action {
            return Ok(Receipt {
                status: "ignored",
                detail: Some(why.clone()),
                source_event_id: report.source_event_id.clone(),
                device_id: None,
                registered: false,
                changed: false,
                assurance: None,
                attestation: None,
            });
        }
        let who = Principal {
            tenant: rec.tenant.clone(),
            role: Role::Mdm,
            actor_id: format!("webhook:{}", rec.id),
        };
        let (device, registered) = match self.device(&who, &rec, &report).await? {
            Some(d) => d,
            None => {
                return Ok(Receipt {
                    status: "unknown_device",
                    detail: Some(if self.identifiers(&report.device).is_empty() {
                        "the event names no serial, UDID or IMEI".into()
                    } else if rec.register_devices {
                        "no device of the tenant has these identifiers, and only an enrollment \
                         registers one"
                            .into()
                    } else {
                        "no device of the tenant has these identifiers (register_devices is off)"
                            .into()
                    }),
                    source_event_id: report.source_event_id.clone(),
                    device_id: None,
                    registered: false,
                    changed: false,
                    assurance: None,
                    attestation: None,
                });
            }
        };
        let body_id = &sha256_hex(body)[..32];
        let mut changed = false;
        let mut assurance = None;
        if let Some(event) = self.event(&rec, &report, &device, body_id)? {
            let out = self.posture.apply_event(&who, &rec.tenant, &event).await?;
            for d in out.devices {
                changed |= d.changed;
                assurance = Some(d.assurance);
            }
        }
        let mut attestation = None;
        if let Some(chain) = &report.attestation {
            let (outcome, out) = self
                .attestation(&who, &rec, &report, &device, chain)
                .await?;
            if let Some(d) = out {
                changed |= d.changed;
                assurance = Some(d.assurance);
            }
            attestation = Some(outcome);
        }
        if assurance.is_none() {
            assurance = self
                .posture
                .device_posture(&who, None, &device.id)
                .ok()
                .map(|(_, a)| a.assurance);
        }
        Ok(Receipt {
            status: "applied",
            detail: None,
            source_event_id: report.source_event_id.clone(),
            device_id: Some(device.id),
            registered,
            changed,
            assurance,
            attestation,
        })
    }

    fn identifiers<'a>(&self, d: &'a DeviceFacts) -> Vec<&'a str> {
        d.serial
            .iter()
            .chain(&d.udid)
            .chain(&d.imei)
            .map(String::as_str)
            .collect()
    }

    /// The device the report is about: found by serial, UDID or IMEI (identifiers it lacks are
    /// added), or registered when the report is an enrollment and the webhook may register.
    async fn device(
        &self,
        who: &Principal,
        rec: &WebhookRecord,
        report: &Report,
    ) -> DomainResult<Option<(Device, bool)>> {
        let ids = self.identifiers(&report.device);
        if ids.is_empty() {
            return Ok(None);
        }
        let tenant = &rec.tenant;
        for attempt in 0..2 {
            for i in &ids {
                if let Some(d) = self.domain().find_device(tenant, i)? {
                    let d = self.add_identifiers(who, d, &report.device).await?;
                    return Ok(Some((d, false)));
                }
            }
            let enrolling = matches!(report.action, Action::Identified | Action::Enrolled);
            if !(enrolling && rec.register_devices) || attempt > 0 {
                return Ok(None);
            }
            let f = &report.device;
            let new = NewDevice {
                tenant: None,
                serial: f.serial.clone(),
                udid: f.udid.clone(),
                imei: f.imei.clone(),
                hardware_ids: Vec::new(),
                platform: f.platform.clone(),
                model: f.model.clone(),
                user: f.user.clone(),
            };
            match self.domain().register_device(who, new).await {
                Ok(d) => {
                    self.posture.device_registered(who, &d).await?;
                    // a SCIM user of that name gives the device their addresses
                    crate::domain::scim::Scim::new(&self.posture)
                        .new_device(who, &d)
                        .await;
                    return Ok(Some((d, true)));
                }
                // registered concurrently (a replay racing the first delivery): find it
                Err(e) if e.kind == ErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Adds the identifiers the MDM reports that the inventory lacks (one the tenant uses for
    /// another device is left out).
    async fn add_identifiers(
        &self,
        who: &Principal,
        device: Device,
        facts: &DeviceFacts,
    ) -> DomainResult<Device> {
        let mut add = Vec::new();
        if device.serial.is_none()
            && let Some(s) = &facts.serial
        {
            add.push(("serial", s.clone()));
        }
        if device.udid.is_none()
            && let Some(u) = &facts.udid
        {
            add.push(("udid", u.clone()));
        }
        if device.imei.is_none()
            && let Some(i) = &facts.imei
        {
            add.push(("imei", i.clone()));
        }
        if add.is_empty() {
            return Ok(device);
        }
        self.domain()
            .add_device_identifiers(who, device, &add)
            .await
    }

    /// The posture event a report makes for `device`, if any.
    fn event(
        &self,
        rec: &WebhookRecord,
        report: &Report,
        device: &Device,
        body_id: &str,
    ) -> DomainResult<Option<PostureEvent>> {
        let kind = match &report.action {
            Action::Identified | Action::Ignored(_) => return Ok(None),
            Action::Enrolled => EventKind::DeviceEnrolled {
                platform: report.device.platform.clone(),
                user: report.device.user.clone(),
            },
            Action::Unenrolled => EventKind::DeviceUnenrolled,
            Action::CheckedIn(c) => {
                // what the report does not say, the record keeps
                let mdm = self
                    .posture
                    .stored(&rec.tenant, &device.id)?
                    .map(|r| r.mdm)
                    .unwrap_or_default();
                EventKind::CheckedIn {
                    compliance: c.compliance.unwrap_or(mdm.compliance),
                    os_version: c.os_version.clone().or(mdm.os_version),
                    storage_encrypted: c.storage_encrypted.or(mdm.storage_encrypted),
                    jailbreak_detected: c.jailbreak_detected.or(mdm.jailbreak_detected),
                }
            }
        };
        Ok(Some(PostureEvent {
            source: rec.kind.source(),
            event_id: format!("{}:{body_id}", report.topic),
            occurred_at: report.occurred_at,
            subject: self.subject(report, device),
            event: kind,
        }))
    }

    fn subject(&self, report: &Report, device: &Device) -> Subject {
        let f = &report.device;
        Subject::Device {
            device_id: Some(device.id.clone()),
            identifiers: DeviceIdentifiers {
                serial: f.serial.clone(),
                udid: f.udid.clone(),
                imei: f.imei.clone(),
                mdm_id: f.mdm_id.clone(),
                hardware_ids: Vec::new(),
            },
        }
    }

    /// Verifies a relayed `DevicePropertiesAttestation` with the tenant's Apple roots (those
    /// of its ACME provisioners that accept `apple`; Apple's built-in root when none does) and
    /// records it, or records the refusal in the audit log.
    async fn attestation(
        &self,
        who: &Principal,
        rec: &WebhookRecord,
        report: &Report,
        device: &Device,
        chain: &[Vec<u8>],
    ) -> DomainResult<(
        AttestationOutcome,
        Option<crate::domain::posture::service::DeviceOutcome>,
    )> {
        let now = self.domain().clock().now();
        let provisioners = self
            .acme
            .attestation_provisioners(&rec.tenant, Format::Apple);
        let chain_owned = chain.to_vec();
        let verified = tokio::task::spawn_blocking(move || {
            if provisioners.is_empty() {
                return Verifier::new(&[Format::Apple])
                    .verify_apple_device_properties(&chain_owned, now);
            }
            let mut last = None;
            for p in &provisioners {
                match p.verifier.verify_apple_device_properties(&chain_owned, now) {
                    Ok(e) => return Ok(e),
                    Err(e) => last = Some(e),
                }
            }
            Err(last
                .unwrap_or_else(|| postern_certs::attestation::AttestError::Format("apple".into())))
        })
        .await
        .map_err(|e| DomainError::internal(format!("attestation task: {e}")))?;
        let leaf_sha256 = chain.first().map(|c| sha256_hex(c)).unwrap_or_default();
        let evidence = verified.map_err(|e| e.to_string()).and_then(|e| {
            let serial = e.device_ids.get("serial");
            let udid = e.device_ids.get("udid");
            let mine = serial.is_some_and(|s| device.serial.as_ref() == Some(s))
                || udid.is_some_and(|u| {
                    device.udid.as_ref() == Some(u) || device.hardware_ids.contains(u)
                });
            if mine {
                Ok(e)
            } else {
                Err("the attested serial number and udid are not this device's".to_owned())
            }
        });
        let evidence: Evidence = match evidence {
            Ok(e) => e,
            Err(reason) => {
                self.domain()
                    .record(
                        who,
                        &rec.tenant,
                        "webhook.attestation.reject",
                        &device.id,
                        json!({ "webhook": rec.id, "kind": rec.kind.as_str(),
                                "leaf_sha256": leaf_sha256, "reason": reason }),
                    )
                    .await?;
                return Ok((
                    AttestationOutcome {
                        status: "refused",
                        detail: Some(reason),
                    },
                    None,
                ));
            }
        };
        let evidence_json = serde_json::to_vec(&evidence).map_err(DomainError::internal)?;
        let evidence_sha256 = sha256_hex(&evidence_json);
        // an attestation is as old as the leaf: a device returns a cached one for up to 7 days
        let event = PostureEvent {
            source: rec.kind.source(),
            event_id: format!("attestation:{}", &leaf_sha256[..32.min(leaf_sha256.len())]),
            occurred_at: report.occurred_at,
            subject: self.subject(report, device),
            event: EventKind::AttestationVerified {
                attestation: AttestationSummary {
                    format: Format::Apple,
                    security_level: SecurityLevel::SecureElement,
                    verified_at: evidence.not_before.min(now),
                    evidence_sha256: evidence_sha256.clone(),
                },
            },
        };
        let out = self.posture.apply_event(who, &rec.tenant, &event).await?;
        // a replayed attestation changes nothing and is not audited again
        if out.devices.iter().any(|d| d.changed) {
            self.domain()
                .record(
                    who,
                    &rec.tenant,
                    "webhook.attestation.accept",
                    &device.id,
                    json!({ "webhook": rec.id, "kind": rec.kind.as_str(),
                            "leaf_sha256": leaf_sha256, "evidence_sha256": evidence_sha256,
                            "identifier": evidence.identifier, "os_version": evidence.os_version,
                            "not_before": evidence.not_before.unix_timestamp() }),
                )
                .await?;
        }
        Ok((
            AttestationOutcome {
                status: "verified",
                detail: None,
            },
            out.devices.into_iter().next(),
        ))
    }
}

fn changed(e: crate::store::StoreError) -> DomainError {
    match e {
        crate::store::StoreError::Conflict(_) => DomainError::new(
            ErrorKind::Conflict,
            "the webhook changed concurrently; try again",
        ),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests;
