//! Jamf Pro `SCEPChallenge`: Jamf asks the webhook for a one-time challenge to put in the
//! `com.apple.security.scep` payload it is about to send, and embeds the answer's body (the
//! challenge, as plain text) in it.
//!
//! The body is `{"webhook": {"webhookEvent": "SCEPChallenge", "eventTimestamp", "id",
//! "name"}, "event": {"scepServerUrl", "payloadIdentifier", "payloadTypes"}}`. Jamf's event
//! names no device; when a sender adds one (`event.device.serialNumber` / `udid`, or
//! `event.serialNumber` / `udid`), the challenge is bound to that device of the webhook's
//! tenant (unknown: 404). Otherwise it is bound to the provisioner only
//! (`domain::scep::challenge`).

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::scep::IssuedChallenge;
use crate::domain::{DomainError, DomainResult, ErrorKind, Principal};
use crate::model::Role;

use super::{Credentials, Receipt, WebhookKind, Webhooks, malformed};

/// What a delivery is answered with.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The receipt of an event (JSON).
    Receipt(Receipt),
    /// A one-time SCEP challenge for a Jamf `SCEPChallenge` event (plain text on the wire).
    ScepChallenge(IssuedChallenge),
}

#[derive(Debug, Deserialize)]
struct Body {
    #[serde(default)]
    event: Map<String, Value>,
    webhook: Meta,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    webhook_event: String,
}

fn is_scep_challenge(body: &[u8]) -> bool {
    serde_json::from_slice::<Body>(body).is_ok_and(|b| b.webhook.webhook_event == "SCEPChallenge")
}

fn text(o: &Map<String, Value>, key: &str) -> Option<String> {
    o.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The identifiers the event names, if any.
fn identifiers(body: &[u8]) -> DomainResult<Vec<String>> {
    let b: Body = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("not a Jamf Pro webhook event: {e}")))?;
    let device = match b.event.get("device") {
        Some(Value::Object(d)) => d,
        Some(_) => return Err(malformed("event.device is not an object")),
        None => &b.event,
    };
    Ok(["serialNumber", "udid"]
        .iter()
        .filter_map(|k| text(device, k))
        .collect())
}

impl Webhooks {
    /// Receives one delivery for webhook `id`: a Jamf `SCEPChallenge` event is answered with
    /// a challenge, anything else as [`Webhooks::receive`] does.
    ///
    /// # Errors
    /// As [`Webhooks::receive`]; for `SCEPChallenge` also Conflict (the webhook has no
    /// `scep_provisioner`, or it does not use dynamic challenges), NotFound (the provisioner
    /// is gone from the configuration, or the event names a device the tenant lacks).
    pub async fn deliver(
        &self,
        id: &str,
        creds: &Credentials,
        body: &[u8],
    ) -> DomainResult<Answer> {
        let Some((rec, _)) = self.load(id)? else {
            return Err(DomainError::new(
                ErrorKind::NotFound,
                format!("no webhook {id}"),
            ));
        };
        if rec.kind != WebhookKind::Jamf || !is_scep_challenge(body) {
            return self.receive(id, creds, body).await.map(Answer::Receipt);
        }
        if let Err(e) = self.authenticate(&rec, creds, body) {
            tracing::info!(webhook = id, reason = %e.detail, "webhook delivery refused");
            return Err(e);
        }
        let Some(provisioner) = &rec.scep_provisioner else {
            return Err(DomainError::new(
                ErrorKind::Conflict,
                "this webhook answers no SCEPChallenge: register it with scep_provisioner",
            ));
        };
        let scep = self.scep.as_ref().ok_or_else(|| {
            DomainError::new(ErrorKind::Unavailable, "SCEP provisioners are not loaded")
        })?;
        let p = scep.require(provisioner)?;
        if p.settings.tenant != rec.tenant {
            return Err(DomainError::new(
                ErrorKind::NotFound,
                format!(
                    "no SCEP provisioner {provisioner:?} in tenant {}",
                    rec.tenant
                ),
            ));
        }
        let ids = identifiers(body)?;
        let device = if ids.is_empty() {
            None
        } else {
            let mut found = None;
            for i in &ids {
                if let Some(d) = self.domain().find_device(&rec.tenant, i)? {
                    found = Some(d.id);
                    break;
                }
            }
            Some(found.ok_or_else(|| {
                DomainError::new(
                    ErrorKind::NotFound,
                    format!("no device of tenant {} has these identifiers", rec.tenant),
                )
            })?)
        };
        let who = Principal {
            tenant: rec.tenant.clone(),
            role: Role::Mdm,
            actor_id: format!("webhook:{}", rec.id),
        };
        let issued = scep.issue(&who, provisioner, device).await?;
        Ok(Answer::ScepChallenge(issued))
    }

    /// Checks a new webhook's `scep_provisioner`: Jamf only, a provisioner of its tenant.
    pub(super) fn check_scep_provisioner(
        &self,
        new: &super::NewWebhook,
        tenant: &str,
    ) -> DomainResult<Option<String>> {
        let Some(name) = &new.scep_provisioner else {
            return Ok(None);
        };
        if new.kind != WebhookKind::Jamf {
            return Err(malformed("scep_provisioner is only for jamf webhooks"));
        }
        let known = self
            .scep
            .as_ref()
            .and_then(|s| s.provisioner(name))
            .is_some_and(|p| p.settings.tenant == tenant);
        if !known {
            return Err(malformed(format!(
                "scep_provisioner: no SCEP provisioner {name:?} in tenant {tenant}"
            )));
        }
        Ok(Some(name.clone()))
    }
}
