//! Jamf Pro webhooks (JSON): `{"event": {...}, "webhook": {"eventTimestamp", "id", "name",
//! "webhookEvent"}}`.
//!
//! | `webhookEvent` | report |
//! |---|---|
//! | `MobileDeviceEnrolled` | [`Action::Enrolled`] (platform from the model, user from `username`) |
//! | `MobileDeviceUnEnrolled` | [`Action::Unenrolled`] |
//! | `MobileDeviceCheckIn` | a check-in with `osVersion` |
//! | `ComputerCheckIn` | a check-in with `osVersion`, platform `macos` (`event.computer`, or flat as older Jamf sent it) |
//! | others | ignored |
//!
//! Jamf's webhooks carry no compliance verdict: a check-in carries forward the one the record
//! has. `eventTimestamp` is epoch milliseconds (values below 10^11 are taken as seconds, as
//! some events send them).

use serde::Deserialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::domain::DomainResult;

use super::{Action, CheckIn, DeviceFacts, Report, malformed};

#[derive(Debug, Deserialize)]
struct Body {
    event: Map<String, Value>,
    webhook: Meta,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    event_timestamp: i64,
    webhook_event: String,
    #[serde(default)]
    id: Option<Value>,
}

/// Parses a Jamf Pro webhook body.
///
/// # Errors
/// Malformed: not the Jamf shape, a timestamp out of range, a device object that is not one.
pub(super) fn parse(body: &[u8]) -> DomainResult<Report> {
    let b: Body = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("not a Jamf Pro webhook event: {e}")))?;
    let ts = b.webhook.event_timestamp;
    let occurred_at = if ts.unsigned_abs() < 100_000_000_000 {
        OffsetDateTime::from_unix_timestamp(ts).ok()
    } else {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts) * 1_000_000).ok()
    }
    .ok_or_else(|| malformed(format!("webhook.eventTimestamp {ts} is out of range")))?;
    let event = b.webhook.webhook_event;
    let mut report = Report {
        occurred_at,
        source_event_id: b.webhook.id.map(|i| format!("webhook {i}")),
        topic: event.clone(),
        device: DeviceFacts::default(),
        action: Action::Ignored(String::new()),
        attestation: None,
    };
    let mobile = |report: &mut Report| {
        report.device = facts(&b.event);
        report.device.platform = Some(mobile_platform(report.device.model.as_deref()).into());
    };
    match event.as_str() {
        "MobileDeviceEnrolled" => {
            mobile(&mut report);
            report.action = Action::Enrolled;
        }
        "MobileDeviceUnEnrolled" => {
            mobile(&mut report);
            report.action = Action::Unenrolled;
        }
        "MobileDeviceCheckIn" => {
            mobile(&mut report);
            report.action = Action::CheckedIn(CheckIn {
                os_version: report.device.os_version.clone(),
                ..CheckIn::default()
            });
        }
        "ComputerCheckIn" => {
            let computer = match b.event.get("computer") {
                Some(Value::Object(c)) => c,
                Some(_) => return Err(malformed("event.computer is not an object")),
                None => &b.event,
            };
            report.device = facts(computer);
            report.device.platform = Some("macos".into());
            report.action = Action::CheckedIn(CheckIn {
                os_version: report.device.os_version.clone(),
                ..CheckIn::default()
            });
        }
        other => {
            report.action = Action::Ignored(format!("Jamf event {other} carries no posture"));
        }
    }
    Ok(report)
}

fn facts(o: &Map<String, Value>) -> DeviceFacts {
    DeviceFacts {
        serial: text(o, "serialNumber"),
        udid: text(o, "udid"),
        // Jamf writes IMEIs in groups: "35 000000 000000 0"
        imei: text(o, "imei").map(|i| i.split_whitespace().collect()),
        mdm_id: match o.get("jssID") {
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        },
        model: text(o, "modelDisplay").or_else(|| text(o, "model")),
        user: text(o, "username"),
        os_version: text(o, "osVersion"),
        platform: None,
    }
}

fn mobile_platform(model: Option<&str>) -> &'static str {
    match model {
        Some(m) if m.contains("iPad") => "ipados",
        Some(m) if m.contains("Apple TV") || m.contains("AppleTV") => "tvos",
        _ => "ios",
    }
}

fn text(o: &Map<String, Value>, key: &str) -> Option<String> {
    o.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}
