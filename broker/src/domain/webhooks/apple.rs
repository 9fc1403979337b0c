//! NanoMDM and MicroMDM webhooks: the JSON envelope (`topic`, `event_id`, `created_at`,
//! `checkin_event` or `acknowledge_event` with the device's own request as base64
//! `raw_payload`), and the Apple MDM property lists inside it.
//!
//! What becomes of each (see `docs/integrations/nanomdm.md`):
//!
//! | topic / `MessageType` | report |
//! |---|---|
//! | `mdm.Authenticate` / `Authenticate` | the device identifies itself: [`Action::Identified`] |
//! | `mdm.TokenUpdate` / `TokenUpdate` | enrollment complete: [`Action::Enrolled`] |
//! | `mdm.CheckOut` / `CheckOut` | unenrolled: [`Action::Unenrolled`] |
//! | `mdm.Connect` (`acknowledge_event`) | a check-in, with what a `DeviceInformation` or `SecurityInfo` response says |
//! | others | ignored |
//!
//! Apple MDM has no compliance verdict of its own; postern reads one from a `SecurityInfo`
//! response ([`security_compliance`]). A report carries forward what it does not say.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use plist::{Dictionary, Value};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::posture::record::Compliance;

use crate::domain::DomainResult;

use super::{Action, DeviceFacts, Report, malformed};

/// The webhook body, as both NanoMDM and MicroMDM send it (unknown members are ignored).
#[derive(Debug, Deserialize)]
struct Envelope {
    topic: String,
    #[serde(default)]
    event_id: Option<String>,
    created_at: String,
    #[serde(default)]
    checkin_event: Option<Inner>,
    #[serde(default)]
    acknowledge_event: Option<Inner>,
}

#[derive(Debug, Deserialize)]
struct Inner {
    #[serde(default)]
    udid: Option<String>,
    raw_payload: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    ids: Option<Ids>,
}

/// NanoMDM's enrollment ids.
#[derive(Debug, Deserialize)]
struct Ids {
    #[serde(rename = "type", default)]
    type_: Option<String>,
}

/// Parses a NanoMDM or MicroMDM webhook body.
///
/// # Errors
/// Malformed naming the defect: not the envelope, a bad `created_at`,
/// neither or both of the events, a `raw_payload` that is not base64 or not a property list,
/// a `MessageType` other than the topic's.
pub(super) fn parse(body: &[u8]) -> DomainResult<Report> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| malformed(format!("not a webhook event: {e}")))?;
    let occurred_at = OffsetDateTime::parse(&env.created_at, &Rfc3339).map_err(|_| {
        malformed(format!(
            "created_at {:?} is not an RFC 3339 date-time",
            truncate(&env.created_at)
        ))
    })?;
    let (inner, acknowledge) = match (env.checkin_event, env.acknowledge_event) {
        (Some(c), None) => (c, false),
        (None, Some(a)) => (a, true),
        (None, None) => {
            return Err(malformed(
                "the event has neither checkin_event nor acknowledge_event",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(malformed(
                "the event has both checkin_event and acknowledge_event",
            ));
        }
    };
    let raw = STANDARD
        .decode(inner.raw_payload.trim().as_bytes())
        .map_err(|e| malformed(format!("raw_payload is not base64: {e}")))?;
    let dict = plist_dict(&raw)?;
    let mut report = Report {
        occurred_at,
        source_event_id: env.event_id.filter(|e| !e.is_empty()),
        topic: env.topic.clone(),
        device: DeviceFacts::default(),
        action: Action::Ignored(String::new()),
        attestation: None,
    };
    let udid = string(&dict, "UDID").or(inner.udid.filter(|u| !u.is_empty()));
    report.device.udid.clone_from(&udid);
    if acknowledge {
        if env.topic != "mdm.Connect" {
            return Err(malformed(format!(
                "an acknowledge_event comes with topic mdm.Connect, not {:?}",
                truncate(&env.topic)
            )));
        }
        acknowledged(&dict, inner.status.as_deref(), &mut report)?;
    } else {
        checked_in(&dict, &env.topic, inner.ids.as_ref(), &mut report)?;
    }
    if report.device.udid.is_none() && !matches!(report.action, Action::Ignored(_)) {
        report.action = Action::Ignored(
            "no UDID (a User Enrollment): postern keys Apple devices by UDID or serial".into(),
        );
    }
    Ok(report)
}

/// A check-in message (`checkin_event`).
fn checked_in(
    dict: &Dictionary,
    topic: &str,
    ids: Option<&Ids>,
    report: &mut Report,
) -> DomainResult<()> {
    let Some(message) = string(dict, "MessageType") else {
        return Err(malformed("the check-in has no MessageType"));
    };
    if topic != format!("mdm.{message}") {
        return Err(malformed(format!(
            "topic {:?} does not match MessageType {:?}",
            truncate(topic),
            truncate(&message)
        )));
    }
    // the user channel of a device speaks for a user, not for the device
    let user_channel = dict.contains_key("UserID")
        || ids
            .and_then(|i| i.type_.as_deref())
            .is_some_and(|t| t == "User" || t == "User Enrollment");
    let d = &mut report.device;
    match message.as_str() {
        "Authenticate" => {
            d.serial = string(dict, "SerialNumber");
            d.imei = string(dict, "IMEI");
            d.model = string(dict, "ProductName").or_else(|| string(dict, "Model"));
            d.platform = d.model.as_deref().and_then(platform);
            d.os_version = string(dict, "OSVersion");
            report.action = Action::Identified;
        }
        "TokenUpdate" if user_channel => {
            report.action = Action::Ignored("a user channel token update".into());
        }
        "TokenUpdate" => report.action = Action::Enrolled,
        "CheckOut" if user_channel => {
            report.action = Action::Ignored("a user channel check-out".into());
        }
        "CheckOut" => report.action = Action::Unenrolled,
        other => {
            report.action = Action::Ignored(format!("message type {other} carries no posture"));
        }
    }
    Ok(())
}

/// A command report (`acknowledge_event`): the device checked in; a `DeviceInformation` or
/// `SecurityInfo` response says more.
fn acknowledged(dict: &Dictionary, status: Option<&str>, report: &mut Report) -> DomainResult<()> {
    let status = string(dict, "Status").or_else(|| status.map(str::to_owned));
    let mut check_in = super::CheckIn::default();
    if status.as_deref() == Some("Acknowledged") {
        if let Some(q) = dict.get("QueryResponses") {
            let q = q
                .as_dictionary()
                .ok_or_else(|| malformed("QueryResponses is not a dictionary"))?;
            device_information(q, report, &mut check_in)?;
        }
        if let Some(si) = dict.get("SecurityInfo") {
            let si = si
                .as_dictionary()
                .ok_or_else(|| malformed("SecurityInfo is not a dictionary"))?;
            check_in.compliance = security_compliance(si);
            check_in.storage_encrypted = storage_encrypted(si);
        }
    }
    report.action = Action::CheckedIn(check_in);
    Ok(())
}

/// What a `DeviceInformation` response (`QueryResponses`) tells: identifiers, OS version,
/// supervision, Activation Lock, and the `DevicePropertiesAttestation` chain.
fn device_information(
    q: &Dictionary,
    report: &mut Report,
    check_in: &mut super::CheckIn,
) -> DomainResult<()> {
    let d = &mut report.device;
    if let Some(u) = string(q, "UDID") {
        d.udid = Some(u);
    }
    d.serial = string(q, "SerialNumber");
    d.imei = string(q, "IMEI");
    d.model = string(q, "ProductName").or_else(|| string(q, "Model"));
    d.platform = d.model.as_deref().and_then(platform);
    check_in.os_version = string(q, "OSVersion");
    check_in.supervised = boolean(q, "IsSupervised");
    check_in.activation_lock = boolean(q, "IsActivationLockEnabled");
    if let Some(v) = q.get("DevicePropertiesAttestation") {
        let arr = v
            .as_array()
            .ok_or_else(|| malformed("DevicePropertiesAttestation is not an array"))?;
        if arr.len() > 8 {
            return Err(malformed(
                "DevicePropertiesAttestation holds more than 8 certificates",
            ));
        }
        let chain = arr
            .iter()
            .map(|c| c.as_data().map(<[u8]>::to_vec))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                malformed("DevicePropertiesAttestation holds something other than data")
            })?;
        report.attestation = Some(chain);
    }
    Ok(())
}

/// The compliance a `SecurityInfo` response shows: non-compliant when any of
/// `PasscodePresent`, `PasscodeCompliant`, `PasscodeCompliantWithProfiles`, `FDE_Enabled`,
/// `SystemIntegrityProtectionEnabled` is false, compliant when those present are all true,
/// `None` (not said) when none is present.
pub fn security_compliance(si: &Dictionary) -> Option<Compliance> {
    let checks: Vec<bool> = [
        "PasscodePresent",
        "PasscodeCompliant",
        "PasscodeCompliantWithProfiles",
        "FDE_Enabled",
        "SystemIntegrityProtectionEnabled",
    ]
    .iter()
    .filter_map(|k| boolean(si, k))
    .collect();
    if checks.is_empty() {
        None
    } else if checks.iter().all(|c| *c) {
        Some(Compliance::Compliant)
    } else {
        Some(Compliance::NonCompliant)
    }
}

/// Storage encryption: `FDE_Enabled` (macOS), or data protection (iOS: hardware encryption
/// caps 3 and a passcode, as Apple defines it).
fn storage_encrypted(si: &Dictionary) -> Option<bool> {
    if let Some(fde) = boolean(si, "FDE_Enabled") {
        return Some(fde);
    }
    let caps = si
        .get("HardwareEncryptionCaps")
        .and_then(Value::as_signed_integer)?;
    Some(caps == 3 && boolean(si, "PasscodePresent") == Some(true))
}

/// The platform a product name (`iPhone15,2`, `iPad13,1`, `MacBookPro18,3`, `iMac14,2`)
/// stands for.
pub fn platform(product: &str) -> Option<String> {
    let p = if product.starts_with("iPhone") || product.starts_with("iPod") {
        "ios"
    } else if product.starts_with("iPad") {
        "ipados"
    } else if product.starts_with("Mac") || product.starts_with("iMac") {
        "macos"
    } else if product.starts_with("AppleTV") {
        "tvos"
    } else if product.starts_with("Watch") {
        "watchos"
    } else if product.starts_with("RealityDevice") {
        "visionos"
    } else {
        return None;
    };
    Some(p.to_owned())
}

/// Parses a property list (XML or binary) whose root is a dictionary.
///
/// # Errors
/// Malformed.
pub fn plist_dict(raw: &[u8]) -> DomainResult<Dictionary> {
    let v: Value = plist::from_bytes(raw)
        .map_err(|e| malformed(format!("raw_payload is not a property list: {e}")))?;
    v.into_dictionary()
        .ok_or_else(|| malformed("raw_payload is not a property list dictionary"))
}

fn string(d: &Dictionary, key: &str) -> Option<String> {
    d.get(key)
        .and_then(Value::as_string)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn boolean(d: &Dictionary, key: &str) -> Option<bool> {
    d.get(key).and_then(Value::as_boolean)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
