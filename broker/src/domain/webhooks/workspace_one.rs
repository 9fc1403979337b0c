//! Workspace ONE UEM event notifications (JSON format): one flat object per event with
//! `EventId`, `EventType`, `EventTime`, the device's identifiers and its current
//! `ComplianceStatus`, `CompromisedStatus` and `OperatingSystem`.
//!
//! | `EventType` | report |
//! |---|---|
//! | `MDM Enrollment Complete` | [`Action::Enrolled`] (platform from `Platform`, user `EnrollmentUserName`) |
//! | `Delete Device Requested`, or any event with `EnrollmentStatus` `Unenrolled` | [`Action::Unenrolled`] |
//! | `Compliance Status Changed`, `Compromised Status Changed`, `Device Operating System Changed` | a check-in with compliance, compromised state and OS version |
//! | others | ignored |

use serde::Deserialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::domain::DomainResult;
use crate::domain::posture::record::Compliance;

use super::{Action, CheckIn, DeviceFacts, Report, malformed};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Notification {
    event_type: String,
    event_time: String,
    #[serde(default)]
    event_id: Option<Value>,
    #[serde(default)]
    device_id: Option<Value>,
    #[serde(default)]
    udid: Option<String>,
    #[serde(default)]
    serial_number: Option<String>,
    #[serde(default, rename = "DeviceIMEI")]
    device_imei: Option<String>,
    #[serde(default)]
    enrollment_user_name: Option<String>,
    #[serde(default)]
    enrollment_status: Option<String>,
    #[serde(default)]
    compliance_status: Option<String>,
    #[serde(default)]
    compromised_status: Option<String>,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    operating_system: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

/// Parses a Workspace ONE event notification.
///
/// # Errors
/// Malformed: not the notification shape, an `EventTime` that is neither RFC 3339 nor
/// `/Date(ms)/`.
pub(super) fn parse(body: &[u8]) -> DomainResult<Report> {
    let n: Notification = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("not a Workspace ONE event notification: {e}")))?;
    let occurred_at = event_time(&n.event_time)?;
    let clean = |v: Option<String>| {
        v.map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && s != "0")
    };
    let device = DeviceFacts {
        serial: clean(n.serial_number),
        udid: clean(n.udid),
        imei: clean(n.device_imei),
        mdm_id: match n.device_id {
            Some(Value::Number(d)) => Some(d.to_string()),
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        },
        platform: n.platform.as_deref().and_then(platform),
        model: clean(n.model),
        user: clean(n.enrollment_user_name),
        os_version: clean(n.operating_system),
    };
    let unenrolled = n
        .enrollment_status
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("Unenrolled"));
    let action = match n.event_type.as_str() {
        "MDM Enrollment Complete" => Action::Enrolled,
        "Delete Device Requested" => Action::Unenrolled,
        _ if unenrolled => Action::Unenrolled,
        "Compliance Status Changed"
        | "Compromised Status Changed"
        | "Device Operating System Changed" => Action::CheckedIn(CheckIn {
            compliance: n.compliance_status.as_deref().and_then(compliance),
            os_version: device.os_version.clone(),
            jailbreak_detected: n.compromised_status.as_deref().and_then(compromised),
            ..CheckIn::default()
        }),
        other => Action::Ignored(format!("Workspace ONE event {other:?} carries no posture")),
    };
    Ok(Report {
        occurred_at,
        source_event_id: n.event_id.map(|e| match e {
            Value::String(s) => s,
            other => other.to_string(),
        }),
        topic: n.event_type,
        device,
        action,
        attestation: None,
    })
}

/// `EventTime`: RFC 3339, the same without an offset (taken as UTC), or `/Date(ms)/` (older
/// tenants).
fn event_time(s: &str) -> DomainResult<OffsetDateTime> {
    let bad = || malformed(format!("EventTime {:?} is not a date-time", truncate(s)));
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    if let Some(ms) = s.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        let ms: i64 = ms.parse().map_err(|_| bad())?;
        return OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .map_err(|_| bad());
    }
    let naive = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(s, naive)
        .map(PrimitiveDateTime::assume_utc)
        .map_err(|_| bad())
}

fn compliance(s: &str) -> Option<Compliance> {
    match s.trim() {
        "" => None,
        "Compliant" => Some(Compliance::Compliant),
        "NonCompliant" | "Non-Compliant" | "NotCompliant" | "Non Compliant" => {
            Some(Compliance::NonCompliant)
        }
        _ => Some(Compliance::Unknown),
    }
}

fn compromised(s: &str) -> Option<bool> {
    match s.trim() {
        "Compromised" | "true" | "True" => Some(true),
        "NotCompromised" | "Not Compromised" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn platform(p: &str) -> Option<String> {
    let p = match p {
        "Apple" => "ios",
        "AppleOsX" | "AppleMacOs" => "macos",
        "AppleTv" => "tvos",
        "Android" => "android",
        "WinRT" | "WindowsPc" | "Windows" => "windows",
        "Linux" => "linux",
        _ => return None,
    };
    Some(p.to_owned())
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
