//! Posture events: the one normalized input that MDM, IdP, ACME and gateway adapters produce,
//! and [`apply`], which folds an event into a [`PostureRecord`].
//!
//! Rules, decided here:
//!
//! - Each group of fields (enrollment, compliance, inventory, attestation, each capability)
//!   remembers the [`Stamp`] (event time, event id) of the event that set it, and an event
//!   changes a group only when its stamp comes after the group's. So applying an event twice
//!   changes nothing, an older check-in never overwrites a newer one, and every order of
//!   arrival ends in the same record (at equal event times the greater event id wins).
//! - A check-in newer than the enrollment state also means the device is enrolled. The newest
//!   enrollment names the platform and user; an older one only fills what is missing.
//! - Credentials are keyed by serial: an issuance already known changes nothing; a revocation
//!   that arrives before its issuance is kept and applied when the issuance arrives.
//! - Lost and user deactivated stick (the earliest event is kept); nothing here undoes them.
//!   A deactivation names a user and changes only a record of that user.
//! - [`apply`] does not check that the event is about this record: the ingest that resolves
//!   [`PostureEvent::subject`] to records does (see [`PostureRecord::is_subject`]).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::policy::RcsE2ee;
use super::record::{
    Address, AttestationSummary, Availability, Compliance, Credential, DeviceIdentifiers,
    PostureRecord, RcsHandshake, RcsReport, Stamp,
};

/// Who reported an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Source {
    /// Jamf Pro (webhooks, API).
    Jamf,
    /// Microsoft Intune (Graph `managedDevices`).
    Intune,
    /// Workspace ONE UEM.
    WorkspaceOne,
    /// NanoMDM webhooks.
    #[serde(rename = "nanomdm")]
    NanoMdm,
    /// MicroMDM webhooks.
    #[serde(rename = "micromdm")]
    MicroMdm,
    /// Kandji.
    Kandji,
    /// Google Android Management API.
    AndroidManagement,
    /// An IdP's SCIM client.
    Scim,
    /// postern's ACME server.
    Acme,
    /// postern's SCEP server.
    Scep,
    /// A routing gateway.
    Gateway,
    /// The device itself (agent or messaging client).
    Device,
    /// An administrator.
    Admin,
}

impl Source {
    /// The wire name (`workspace-one`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Jamf => "jamf",
            Source::Intune => "intune",
            Source::WorkspaceOne => "workspace-one",
            Source::NanoMdm => "nanomdm",
            Source::MicroMdm => "micromdm",
            Source::Kandji => "kandji",
            Source::AndroidManagement => "android-management",
            Source::Scim => "scim",
            Source::Acme => "acme",
            Source::Scep => "scep",
            Source::Gateway => "gateway",
            Source::Device => "device",
            Source::Admin => "admin",
        }
    }
}

/// What an event is about, as the source names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// A device, by any identifiers the source knows (postern's id first).
    Device {
        /// postern's device id, when the source knows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_id: Option<String>,
        /// The identifiers the source reports.
        #[serde(default)]
        identifiers: DeviceIdentifiers,
    },
    /// A user, and so each of their devices.
    User {
        /// The IdP user id or userName.
        user: String,
    },
    /// A messaging address, and so the devices it routes to.
    Address {
        /// The address.
        address: Address,
    },
}

/// One normalized posture event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostureEvent {
    /// Who reported it.
    pub source: Source,
    /// Its id at the source (for idempotency; unique per source).
    pub event_id: String,
    /// When it happened (event time, not arrival time).
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// What it is about.
    pub subject: Subject,
    /// What happened.
    pub event: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The device enrolled in the MDM (MDM Enrollment Complete, TokenUpdate, ENROLLMENT).
    DeviceEnrolled {
        /// `ios`, `android`, `macos`, ...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        platform: Option<String>,
        /// The user the MDM assigns it to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// The device left the MDM (CheckOut, MobileDeviceUnEnrolled, Delete Device Requested).
    DeviceUnenrolled,
    /// The device checked in, with what the MDM then reported.
    CheckedIn {
        /// The compliance verdict.
        #[serde(default)]
        compliance: Compliance,
        /// The OS version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        os_version: Option<String>,
        /// Storage encryption, when reported.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        storage_encrypted: Option<bool>,
        /// Jailbreak or root detected, when reported.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jailbreak_detected: Option<bool>,
    },
    /// The MDM's compliance verdict changed.
    ComplianceChanged {
        /// The new verdict.
        compliance: Compliance,
    },
    /// An attestation was verified.
    AttestationVerified {
        /// What it proved, in short.
        attestation: AttestationSummary,
    },
    /// A credential was issued to the device.
    CredentialIssued {
        /// The credential.
        credential: Credential,
    },
    /// A credential was revoked.
    CredentialRevoked {
        /// Its serial.
        serial: String,
    },
    /// An administrator or the MDM reported the device lost.
    DeviceLost,
    /// The IdP deactivated the user (SCIM `active=false` or DELETE).
    UserDeactivated {
        /// The user.
        user: String,
    },
    /// A gateway reported a capability of the recipient; nothing proved it.
    /// The messaging addresses (`tel:`, `im:`, ...) that route to this device, as the source
    /// knows them now; replaces the set an older event gave.
    AddressesAssigned {
        /// The addresses.
        addresses: Vec<Address>,
    },
    CapabilityReported {
        /// The capability.
        capability: CapabilityReport,
    },
    /// The device proved its RCS E2EE with a handshake signed by its credential's key.
    CapabilityProved {
        /// The credential whose key signed the handshake.
        credential_serial: String,
        /// The MLS ciphersuites offered.
        #[serde(default)]
        mls_ciphersuites: Vec<u16>,
        /// The messaging client's version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_version: Option<String>,
    },
}

/// A capability as a gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "capability", rename_all = "snake_case")]
pub enum CapabilityReport {
    /// RCS E2EE.
    RcsE2ee {
        /// `claimed`, `unsupported` or `unknown`.
        state: RcsE2ee,
        /// The MLS ciphersuites seen.
        #[serde(default)]
        mls_ciphersuites: Vec<u16>,
        /// The messaging client's version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_version: Option<String>,
        /// The recipient's carrier.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        carrier: Option<String>,
    },
    /// The organisation's app.
    InApp {
        /// Reachable.
        available: bool,
    },
    /// Secure e-mail.
    SecureEmail {
        /// Reachable.
        available: bool,
    },
    /// The web portal.
    WebPortal {
        /// Reachable.
        available: bool,
    },
    /// SMS.
    Sms {
        /// Reachable.
        available: bool,
    },
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Whether the record changed (false for a repeated or superseded event).
    pub changed: bool,
}

impl PostureEvent {
    /// The event's stamp.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            at: self.occurred_at,
            event_id: format!("{}:{}", self.source.as_str(), self.event_id),
        }
    }
}

impl PostureRecord {
    /// Whether `subject` names this record: its device id or any shared identifier, its user,
    /// or one of its addresses.
    pub fn is_subject(&self, subject: &Subject) -> bool {
        match subject {
            Subject::Device {
                device_id,
                identifiers,
            } => {
                if let Some(id) = device_id {
                    return *id == self.device_id;
                }
                let mine = &self.identifiers;
                let same = |a: &Option<String>, b: &Option<String>| {
                    a.as_ref().is_some_and(|a| b.as_ref() == Some(a))
                };
                same(&identifiers.serial, &mine.serial)
                    || same(&identifiers.udid, &mine.udid)
                    || same(&identifiers.imei, &mine.imei)
                    || same(&identifiers.mdm_id, &mine.mdm_id)
                    || identifiers
                        .hardware_ids
                        .iter()
                        .any(|h| mine.hardware_ids.contains(h))
            }
            Subject::User { user } => self.user.as_ref() == Some(user),
            Subject::Address { address } => self.addresses.contains(address),
        }
    }
}

/// Folds `event` into `record` (see the module docs for the rules).
pub fn apply(record: &mut PostureRecord, event: &PostureEvent) -> Applied {
    let before = record.clone();
    let stamp = event.stamp();
    if let Subject::Device { identifiers, .. } = &event.subject {
        record.identifiers.fill_from(identifiers);
    }
    match &event.event {
        EventKind::DeviceEnrolled { platform, user } => {
            // the newest enrollment names platform and user; an older one only fills gaps
            let newest = set_enrolled(record, true, event.source, &stamp);
            if platform.is_some() && (newest || record.mdm.platform.is_none()) {
                record.mdm.platform.clone_from(platform);
            }
            if user.is_some() && (newest || record.user.is_none()) {
                record.user.clone_from(user);
            }
            if record.registered_at.is_none() {
                record.registered_at = Some(event.occurred_at);
            }
        }
        EventKind::DeviceUnenrolled => {
            set_enrolled(record, false, event.source, &stamp);
        }
        EventKind::CheckedIn {
            compliance,
            os_version,
            storage_encrypted,
            jailbreak_detected,
        } => {
            let mdm = &mut record.mdm;
            if mdm.last_check_in.is_none_or(|t| event.occurred_at > t) {
                mdm.last_check_in = Some(event.occurred_at);
            }
            set_enrolled(record, true, event.source, &stamp);
            set_compliance(record, *compliance, &stamp);
            let mdm = &mut record.mdm;
            if stamp.supersedes(mdm.inventory.as_ref()) {
                mdm.os_version.clone_from(os_version);
                mdm.storage_encrypted = *storage_encrypted;
                mdm.jailbreak_detected = *jailbreak_detected;
                mdm.inventory = Some(stamp);
            }
        }
        EventKind::ComplianceChanged { compliance } => {
            set_compliance(record, *compliance, &stamp);
        }
        EventKind::AttestationVerified { attestation } => {
            let newer = record
                .attestation
                .as_ref()
                .is_none_or(|a| attestation.verified_at > a.verified_at);
            if newer {
                record.attestation = Some(attestation.clone());
            }
        }
        EventKind::CredentialIssued { credential } => {
            if record.credential(&credential.serial).is_none() {
                let mut c = credential.clone();
                if let Some(i) = record
                    .early_revocations
                    .iter()
                    .position(|(s, _)| *s == c.serial)
                {
                    let (_, revoked) = record.early_revocations.remove(i);
                    c.revoked_at = Some(revoked.at);
                }
                record.credentials.push(c);
            }
        }
        EventKind::CredentialRevoked { serial } => {
            match record.credentials.iter_mut().find(|c| c.serial == *serial) {
                Some(c) => {
                    if c.revoked_at.is_none_or(|t| event.occurred_at < t) {
                        c.revoked_at = Some(event.occurred_at);
                    }
                }
                None => match record
                    .early_revocations
                    .iter_mut()
                    .find(|(s, _)| s == serial)
                {
                    Some((_, st)) => {
                        if st.is_after(&stamp) {
                            *st = stamp;
                        }
                    }
                    None => record.early_revocations.push((serial.clone(), stamp)),
                },
            }
        }
        EventKind::DeviceLost => keep_earliest(&mut record.lost, stamp),
        EventKind::UserDeactivated { user } => {
            if record.user.as_ref() == Some(user) {
                keep_earliest(&mut record.user_deactivated, stamp);
            }
        }
        EventKind::AddressesAssigned { addresses } => {
            if stamp.supersedes(record.addresses_stamp.as_ref()) {
                let mut a = addresses.clone();
                a.sort();
                a.dedup();
                record.addresses = a;
                record.addresses_stamp = Some(stamp);
            }
        }
        EventKind::CapabilityReported { capability } => report(record, capability, stamp),
        EventKind::CapabilityProved {
            credential_serial,
            mls_ciphersuites,
            client_version,
        } => {
            let caps = &mut record.capabilities;
            if stamp.supersedes(caps.rcs_e2ee_handshake.as_ref().map(|h| &h.stamp)) {
                caps.rcs_e2ee_handshake = Some(RcsHandshake {
                    credential_serial: credential_serial.clone(),
                    mls_ciphersuites: mls_ciphersuites.clone(),
                    client_version: client_version.clone(),
                    stamp,
                });
            }
        }
    }
    let changed = *record != before;
    if changed && event.occurred_at > record.updated_at {
        record.updated_at = event.occurred_at;
    }
    Applied { changed }
}

/// Sets the enrollment state if `stamp` is newer; whether it was.
fn set_enrolled(record: &mut PostureRecord, enrolled: bool, source: Source, stamp: &Stamp) -> bool {
    let mdm = &mut record.mdm;
    if !stamp.supersedes(mdm.enrollment.as_ref()) {
        return false;
    }
    mdm.enrolled = enrolled;
    mdm.source = Some(source);
    mdm.enrollment = Some(stamp.clone());
    true
}

fn set_compliance(record: &mut PostureRecord, compliance: Compliance, stamp: &Stamp) {
    let mdm = &mut record.mdm;
    if stamp.supersedes(mdm.compliance_stamp.as_ref()) {
        mdm.compliance = compliance;
        mdm.compliance_stamp = Some(stamp.clone());
    }
}

fn keep_earliest(slot: &mut Option<Stamp>, stamp: Stamp) {
    if slot.as_ref().is_none_or(|s| s.is_after(&stamp)) {
        *slot = Some(stamp);
    }
}

fn report(record: &mut PostureRecord, capability: &CapabilityReport, stamp: Stamp) {
    let caps = &mut record.capabilities;
    let (slot, available) = match capability {
        CapabilityReport::RcsE2ee {
            state,
            mls_ciphersuites,
            client_version,
            carrier,
        } => {
            if stamp.supersedes(caps.rcs_e2ee_report.as_ref().map(|r| &r.stamp)) {
                caps.rcs_e2ee_report = Some(RcsReport {
                    state: *state,
                    mls_ciphersuites: mls_ciphersuites.clone(),
                    client_version: client_version.clone(),
                    carrier: carrier.clone(),
                    stamp,
                });
            }
            return;
        }
        CapabilityReport::InApp { available } => (&mut caps.in_app, *available),
        CapabilityReport::SecureEmail { available } => (&mut caps.secure_email, *available),
        CapabilityReport::WebPortal { available } => (&mut caps.web_portal, *available),
        CapabilityReport::Sms { available } => (&mut caps.sms, *available),
    };
    if stamp.supersedes(slot.as_ref().map(|a| &a.stamp)) {
        *slot = Some(Availability { available, stamp });
    }
}

#[cfg(test)]
mod tests;
