//! What every vendor's device becomes: [`VendorDevice`], the normalized shape, and
//! [`events`], the posture events it stands for.
//!
//! Rules, decided here:
//!
//! - An enrolled device gives `DeviceEnrolled` at its enrollment time (platform, user) and,
//!   when it ever checked in, `CheckedIn` at its last check-in with the vendor's compliance,
//!   OS version, encryption and jailbreak state. Event ids are derived from the vendor's id,
//!   the time and (for check-ins) a hash of what was reported, so a repeated sync changes
//!   nothing.
//! - A device the vendor says is leaving (Intune retire/wipe, Jamf unmanaged, AMAPI DELETED)
//!   gives `DeviceUnenrolled` at the time of the sync.
//! - The vendor's compliance verdict is the newest word on compliance: when the record ends
//!   up with another verdict (an equal or newer stamp from elsewhere won), the connector
//!   applies `ComplianceChanged` at the time of the sync.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::posture::event::{EventKind, PostureEvent, Source, Subject};
use crate::domain::posture::record::{Compliance, DeviceIdentifiers};

/// A device as a vendor reports it, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VendorDevice {
    /// The vendor's id (Intune `id`, Jamf `computer/{id}` or `mobile/{id}`, AMAPI `name`).
    pub vendor_id: String,
    /// Hardware serial.
    pub serial: Option<String>,
    /// Apple UDID.
    pub udid: Option<String>,
    /// IMEI.
    pub imei: Option<String>,
    /// `ios`, `macos`, `android`, `windows`, ...
    pub platform: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// The user the vendor assigns it to.
    pub user: Option<String>,
    /// Managed by the vendor (false: leaving).
    pub enrolled: bool,
    /// When it enrolled.
    #[serde(with = "time::serde::rfc3339::option")]
    pub enrolled_at: Option<OffsetDateTime>,
    /// Its last check-in.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    /// The vendor's verdict.
    pub compliance: Compliance,
    /// OS version.
    pub os_version: Option<String>,
    /// Storage encryption.
    pub storage_encrypted: Option<bool>,
    /// Jailbreak or root detected.
    pub jailbreak_detected: Option<bool>,
}

/// Where a sync is in a vendor's paging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// The first page.
    Start,
    /// A link or page token the vendor gave.
    Next(String),
    /// Jamf: which inventory and page.
    Jamf {
        /// Mobile devices (else computers).
        mobile: bool,
        /// Zero-based page.
        page: u32,
    },
}

/// One page of devices and where the next one is.
#[derive(Debug)]
pub struct Page {
    /// The devices.
    pub devices: Vec<VendorDevice>,
    /// The next page; `None`: this was the last.
    pub next: Option<Cursor>,
}

/// What the connector remembers of a vendor device it applied: postern's device and the
/// fingerprint of what it last applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceLink {
    /// postern's device id.
    pub device_id: String,
    /// SHA-256 (hex) of the [`VendorDevice`] last applied.
    pub fingerprint: String,
}

/// A trimmed value, `None` when empty.
pub fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// An RFC 3339 time; `None` for absent, unparsable, or placeholder dates before 1971 (Intune
/// reports `0001-01-01T00:00:00Z` for "never").
pub fn parse_time(v: Option<&str>) -> Option<OffsetDateTime> {
    let t = OffsetDateTime::parse(v?, &Rfc3339).ok()?;
    (t.year() > 1970).then_some(t)
}

impl VendorDevice {
    /// SHA-256 (hex) of the device as reported.
    pub fn fingerprint(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
    }

    fn identifiers(&self) -> DeviceIdentifiers {
        DeviceIdentifiers {
            serial: self.serial.clone(),
            udid: self.udid.clone(),
            imei: self.imei.clone(),
            mdm_id: Some(self.vendor_id.clone()),
            hardware_ids: Vec::new(),
        }
    }

    /// The identifiers postern's inventory is matched by, in order.
    pub fn lookup_ids(&self) -> impl Iterator<Item = &String> {
        self.serial.iter().chain(&self.udid).chain(&self.imei)
    }
}

fn stamp_text(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The events `d` stands for, about postern's device `device_id`, as seen at `now`.
pub fn events(
    d: &VendorDevice,
    source: Source,
    device_id: &str,
    now: OffsetDateTime,
) -> Vec<PostureEvent> {
    let subject = Subject::Device {
        device_id: Some(device_id.to_owned()),
        identifiers: d.identifiers(),
    };
    let event = |id: String, at: OffsetDateTime, kind: EventKind| PostureEvent {
        source,
        event_id: id,
        occurred_at: at,
        subject: subject.clone(),
        event: kind,
    };
    let mut out = Vec::new();
    if !d.enrolled {
        out.push(event(
            format!("{}/unenrolled/{}", d.vendor_id, stamp_text(now)),
            now,
            EventKind::DeviceUnenrolled,
        ));
        return out;
    }
    let enrolled_at = d.enrolled_at.or(d.last_seen).unwrap_or(now);
    out.push(event(
        format!("{}/enrolled/{}", d.vendor_id, stamp_text(enrolled_at)),
        enrolled_at,
        EventKind::DeviceEnrolled {
            platform: d.platform.clone(),
            user: d.user.clone(),
        },
    ));
    if let Some(seen) = d.last_seen {
        let fp = d.fingerprint();
        out.push(event(
            format!(
                "{}/checkin/{}/{}",
                d.vendor_id,
                stamp_text(seen),
                fp.get(..16).unwrap_or(&fp)
            ),
            seen,
            EventKind::CheckedIn {
                compliance: d.compliance,
                os_version: d.os_version.clone(),
                storage_encrypted: d.storage_encrypted,
                jailbreak_detected: d.jailbreak_detected,
            },
        ));
    }
    out
}

/// `ComplianceChanged` to `d`'s verdict at `now`.
pub fn compliance_now(
    d: &VendorDevice,
    source: Source,
    device_id: &str,
    now: OffsetDateTime,
) -> PostureEvent {
    PostureEvent {
        source,
        event_id: format!("{}/compliance/{}", d.vendor_id, stamp_text(now)),
        occurred_at: now,
        subject: Subject::Device {
            device_id: Some(device_id.to_owned()),
            identifiers: d.identifiers(),
        },
        event: EventKind::ComplianceChanged {
            compliance: d.compliance,
        },
    }
}

/// `DeviceUnenrolled` at `now` for a device the vendor no longer lists.
pub fn gone(vendor_id: &str, source: Source, device_id: &str, now: OffsetDateTime) -> PostureEvent {
    PostureEvent {
        source,
        event_id: format!("{vendor_id}/gone/{}", stamp_text(now)),
        occurred_at: now,
        subject: Subject::Device {
            device_id: Some(device_id.to_owned()),
            identifiers: DeviceIdentifiers::default(),
        },
        event: EventKind::DeviceUnenrolled,
    }
}
