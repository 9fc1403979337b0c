//! The posture record: everything postern knows of one device of one tenant, and [`assess`],
//! which turns it into an assurance level, an RCS E2EE state and the view that routing reads.
//!
//! A record only holds facts with the time they were true of (event time); it never holds a
//! level. Levels are computed at evaluation time from those facts and the tenant's
//! [`Freshness`], so a record that nobody touches loses assurance as its facts age.
//!
//! Rules, decided here:
//!
//! - `unknown`: the device is not in the inventory, is lost, or its user is deactivated.
//! - `registered`: the device is in the inventory.
//! - `managed`: registered, and the MDM says it is enrolled and compliant, it checked in within
//!   [`Freshness::mdm_checkin_hours`], and no jailbreak or root was detected. An MDM that does
//!   not report jailbreak detection (NanoMDM) does not hold a device back; one that reports it
//!   does.
//! - `attested`: managed, with a hardware attestation (TEE, TPM or secure element) verified
//!   within [`Freshness::attestation_days`], and a live attested credential: issued, not
//!   expired, not revoked, its key hardware-attested. SCEP credentials are not attested, so a
//!   device with only SCEP credentials is at most managed.
//! - `rcs_e2ee`: `verified` only from a device handshake made after the issuance of the
//!   credential it was made with, that credential being live and attested, and the handshake
//!   within the attestation window. A handshake that is only too old counts as `claimed`; one
//!   that no longer verifies otherwise counts for nothing. Otherwise the latest gateway report
//!   within the attestation window (`claimed` or `unsupported`; a gateway cannot make anything
//!   `verified`); a stale report is `unknown`. A lost device or deactivated user is `unknown`.
//! - A window is inclusive: a check-in exactly 24 h old is fresh, 24 h and 1 s is stale.

use std::fmt;

use postern_certs::attestation::{Format, SecurityLevel};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::event::Source;
use super::policy::{Assurance, Freshness, PostureView, RcsE2ee};
use crate::model::{Device, DeviceAttestation};

/// What postern knows of one device of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostureRecord {
    /// The tenant.
    pub tenant: String,
    /// The device's identifier within the tenant (`dev_` + 20 hex).
    pub device_id: String,
    /// The user it belongs to (an IdP user id or userName).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The user's messaging addresses that route to this device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// The event that set `addresses`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses_stamp: Option<Stamp>,
    /// Hardware and MDM identifiers.
    #[serde(default)]
    pub identifiers: DeviceIdentifiers,
    /// When the device entered the inventory; `None`: not known to the inventory.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub registered_at: Option<OffsetDateTime>,
    /// What the MDM reports.
    #[serde(default)]
    pub mdm: MdmState,
    /// The latest verified attestation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestationSummary>,
    /// Credentials issued to the device, in the order they became known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<Credential>,
    /// Revocations of credentials not (yet) known to the record, by serial; applied when the
    /// issuance arrives, so an issuance seen after its revocation does not bring it back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub early_revocations: Vec<(String, Stamp)>,
    /// Ways to reach the recipient, and what is known of their RCS E2EE.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// When the device was reported lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<Stamp>,
    /// When the user was deactivated in the IdP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_deactivated: Option<Stamp>,
    /// When the record was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The event time of the latest change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// The event that set a group of fields, and its event time; orders events of one group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// The event time.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The event's id at its source.
    pub event_id: String,
}

impl Stamp {
    /// Whether `self` comes after `other`: later event time, and at equal times the greater
    /// event id, so that every order of arrival ends in the same record.
    pub fn is_after(&self, other: &Stamp) -> bool {
        (self.at, &self.event_id) > (other.at, &other.event_id)
    }

    /// Whether `self` comes after `other`, or there is no `other`.
    pub fn supersedes(&self, other: Option<&Stamp>) -> bool {
        other.is_none_or(|o| self.is_after(o))
    }
}

/// A messaging address: `tel:` with an E.164 number, `im:` or `sip:`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address(String);

/// Why a string is not a messaging address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Not `tel:`, `im:` or `sip:`.
    #[error("address scheme must be tel:, im: or sip:")]
    Scheme,
    /// A `tel:` address that is not `+` and 2 to 15 digits, the first not 0.
    #[error("tel: address must be E.164 (+ and 2 to 15 digits)")]
    NotE164,
    /// Nothing after the scheme, or whitespace in it.
    #[error("address has an empty or blank part")]
    Empty,
}

impl Address {
    /// Parses `tel:+15551234567`, `im:alice@example.com` or `sip:alice@example.com`.
    ///
    /// # Errors
    /// [`AddressError`] naming the defect.
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        let (scheme, rest) = s.split_once(':').ok_or(AddressError::Scheme)?;
        if rest.is_empty() || rest.chars().any(char::is_whitespace) {
            return Err(AddressError::Empty);
        }
        match scheme {
            "tel" => {
                let digits = rest.strip_prefix('+').ok_or(AddressError::NotE164)?;
                let ok = (2..=15).contains(&digits.len())
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && !digits.starts_with('0');
                if !ok {
                    return Err(AddressError::NotE164);
                }
            }
            "im" | "sip" => {}
            _ => return Err(AddressError::Scheme),
        }
        Ok(Address(s.to_owned()))
    }

    /// The address as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Address {
    type Error = AddressError;

    fn try_from(s: String) -> Result<Self, AddressError> {
        Address::parse(&s)
    }
}

impl From<Address> for String {
    fn from(a: Address) -> String {
        a.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identifiers a device answers to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIdentifiers {
    /// Hardware serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Apple UDID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udid: Option<String>,
    /// IMEI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imei: Option<String>,
    /// The MDM's own id for the device (Jamf `jssID`, Intune `id`, AMAPI `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdm_id: Option<String>,
    /// Further permanent identifiers (a TPM's, an agent's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hardware_ids: Vec<String>,
}

impl DeviceIdentifiers {
    /// Fills the identifiers `self` lacks from `other`; an identifier already known is kept.
    pub fn fill_from(&mut self, other: &DeviceIdentifiers) {
        for (mine, theirs) in [
            (&mut self.serial, &other.serial),
            (&mut self.udid, &other.udid),
            (&mut self.imei, &other.imei),
            (&mut self.mdm_id, &other.mdm_id),
        ] {
            if mine.is_none() {
                mine.clone_from(theirs);
            }
        }
        for id in &other.hardware_ids {
            if !self.hardware_ids.contains(id) {
                self.hardware_ids.push(id.clone());
            }
        }
    }
}

/// The MDM's compliance verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compliance {
    /// Compliant with the MDM's policy.
    Compliant,
    /// Not compliant.
    NonCompliant,
    /// Not evaluated or not reported.
    #[default]
    Unknown,
}

impl Compliance {
    /// The wire name (`non_compliant`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compliance::Compliant => "compliant",
            Compliance::NonCompliant => "non_compliant",
            Compliance::Unknown => "unknown",
        }
    }
}

/// What the MDM reports of the device; each group of fields carries the event that set it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdmState {
    /// The MDM that reported last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Enrolled in the MDM.
    #[serde(default)]
    pub enrolled: bool,
    /// The event that set `enrolled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<Stamp>,
    /// The compliance verdict.
    #[serde(default)]
    pub compliance: Compliance,
    /// The event that set `compliance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance_stamp: Option<Stamp>,
    /// The latest check-in.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_check_in: Option<OffsetDateTime>,
    /// The OS version as reported (`17.4.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// `ios`, `android`, `macos`, `windows`, `linux`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Storage encryption (FileVault, data protection, `isEncrypted`), when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_encrypted: Option<bool>,
    /// Jailbreak or root detected, when the MDM reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jailbreak_detected: Option<bool>,
    /// The event that set the inventory fields (OS version, encryption, jailbreak).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Stamp>,
}

/// A verified attestation, as posture needs it (the evidence itself stays with the device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationSummary {
    /// The statement format.
    pub format: Format,
    /// Where the attested key lives.
    pub security_level: SecurityLevel,
    /// When the attestation was verified.
    #[serde(with = "time::serde::rfc3339")]
    pub verified_at: OffsetDateTime,
    /// SHA-256 (hex) of the evidence as stored with the device.
    pub evidence_sha256: String,
}

impl AttestationSummary {
    /// The summary of an attestation kept with a device.
    pub fn from_device_attestation(a: &DeviceAttestation) -> Self {
        AttestationSummary {
            format: a.evidence.format,
            security_level: a.evidence.security_level,
            verified_at: a.evidence.verified_at,
            evidence_sha256: a.sha256.clone(),
        }
    }

    /// Whether the key is hardware-protected (TEE, TPM or secure element).
    pub fn is_hardware(&self) -> bool {
        self.security_level > SecurityLevel::Software
    }
}

/// Whether a credential's key was hardware-attested.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "key", rename_all = "snake_case")]
pub enum CredentialKey {
    /// Attested (ACME `device-attest-01`).
    Attested {
        /// SHA-256 (hex) of the attestation evidence.
        evidence_sha256: String,
    },
    /// Not attested (SCEP, http-01).
    Unattested,
}

/// A certificate issued to the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Serial number, lower-case hex.
    pub serial: String,
    /// `acme`, `scep`.
    pub protocol: String,
    /// When it was issued (notBefore).
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// notAfter.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub revoked_at: Option<OffsetDateTime>,
    /// Whether its key was attested.
    #[serde(flatten)]
    pub key: CredentialKey,
}

impl Credential {
    /// What keeps it from counting at `now`, if anything.
    pub fn defect(&self, now: OffsetDateTime) -> Option<CredentialDefect> {
        if self.revoked_at.is_some_and(|t| t <= now) {
            Some(CredentialDefect::Revoked)
        } else if now >= self.not_after {
            Some(CredentialDefect::Expired)
        } else if now < self.issued_at {
            Some(CredentialDefect::NotYetValid)
        } else if self.key == CredentialKey::Unattested {
            Some(CredentialDefect::NotAttested)
        } else {
            None
        }
    }
}

/// Why a credential does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialDefect {
    /// Revoked.
    Revoked,
    /// Past its notAfter.
    Expired,
    /// Before its notBefore.
    NotYetValid,
    /// Its key is not hardware-attested (SCEP).
    NotAttested,
}

impl CredentialDefect {
    /// A name for reasons (`not attested`).
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialDefect::Revoked => "revoked",
            CredentialDefect::Expired => "expired",
            CredentialDefect::NotYetValid => "not yet valid",
            CredentialDefect::NotAttested => "not attested",
        }
    }
}

/// A device's proof of its RCS E2EE: an MLS handshake signed with its credential's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcsHandshake {
    /// The credential whose key signed the handshake.
    pub credential_serial: String,
    /// The MLS ciphersuites the client offered (RFC 9420 registry values).
    #[serde(default)]
    pub mls_ciphersuites: Vec<u16>,
    /// The messaging client's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// The handshake event.
    pub stamp: Stamp,
}

/// A gateway's report of a recipient's RCS E2EE: nothing proved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcsReport {
    /// `claimed`, `unsupported` or `unknown` (`verified` is taken as `claimed`).
    pub state: RcsE2ee,
    /// The MLS ciphersuites reported.
    #[serde(default)]
    pub mls_ciphersuites: Vec<u16>,
    /// The messaging client's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// The recipient's carrier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// The report event.
    pub stamp: Stamp,
}

/// Whether the recipient can be reached some way, as last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    /// Reachable that way.
    pub available: bool,
    /// The report event.
    pub stamp: Stamp,
}

/// Ways to reach the recipient; `None` means never reported (not available).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The latest device handshake proving RCS E2EE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcs_e2ee_handshake: Option<RcsHandshake>,
    /// The latest gateway report of RCS E2EE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcs_e2ee_report: Option<RcsReport>,
    /// The organisation's app is installed and reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_app: Option<Availability>,
    /// A secure e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_email: Option<Availability>,
    /// The web portal behind the IdP login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_portal: Option<Availability>,
    /// SMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<Availability>,
}

impl PostureRecord {
    /// A record for a device not (yet) in the inventory: assurance `unknown`.
    pub fn new(tenant: &str, device_id: &str, now: OffsetDateTime) -> Self {
        PostureRecord {
            tenant: tenant.to_owned(),
            device_id: device_id.to_owned(),
            user: None,
            addresses: Vec::new(),
            addresses_stamp: None,
            identifiers: DeviceIdentifiers::default(),
            registered_at: None,
            mdm: MdmState::default(),
            attestation: None,
            credentials: Vec::new(),
            early_revocations: Vec::new(),
            capabilities: Capabilities::default(),
            lost: None,
            user_deactivated: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// The record of an inventory device: registered at its creation, with its identifiers,
    /// platform, user and last attestation. Credentials come from their issuance events.
    pub fn from_device(device: &Device) -> Self {
        let mut r = PostureRecord::new(&device.tenant, &device.id, device.created_at);
        r.registered_at = Some(device.created_at);
        r.user.clone_from(&device.user);
        r.identifiers = DeviceIdentifiers {
            serial: device.serial.clone(),
            udid: device.udid.clone(),
            imei: device.imei.clone(),
            mdm_id: None,
            hardware_ids: device.hardware_ids.clone(),
        };
        r.mdm.platform.clone_from(&device.platform);
        r.attestation = device
            .attestation
            .as_ref()
            .map(AttestationSummary::from_device_attestation);
        r
    }

    /// The credential with this serial.
    pub fn credential(&self, serial: &str) -> Option<&Credential> {
        self.credentials.iter().find(|c| c.serial == serial)
    }

    /// Whether some credential counts at `now` (live and attested).
    pub fn has_live_attested_credential(&self, now: OffsetDateTime) -> bool {
        self.credentials.iter().any(|c| c.defect(now).is_none())
    }
}

/// One typed, explainable step of an assessment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum AssuranceReason {
    /// The device is not in the inventory.
    NotRegistered,
    /// The device was reported lost.
    DeviceLost {
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// The device's user was deactivated.
    UserDeactivated {
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// The device is in the inventory.
    Registered,
    /// Not enrolled in an MDM.
    NotEnrolled,
    /// The MDM does not say it is compliant.
    NotCompliant {
        /// What it says.
        compliance: Compliance,
    },
    /// The MDM never reported a check-in.
    NoCheckIn,
    /// The last check-in is older than the window.
    CheckInStale {
        /// The last check-in.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        /// The window, in hours.
        max_hours: u32,
    },
    /// Jailbreak or root detected.
    Jailbroken,
    /// Managed: enrolled, compliant, checked in within the window.
    Managed {
        /// The last check-in.
        #[serde(with = "time::serde::rfc3339")]
        checked_in_at: OffsetDateTime,
    },
    /// No verified attestation.
    NoAttestation,
    /// The attested key is not hardware-protected.
    AttestationNotHardware,
    /// The attestation is older than the window.
    AttestationStale {
        /// When it was verified.
        #[serde(with = "time::serde::rfc3339")]
        verified_at: OffsetDateTime,
        /// The window, in days.
        max_days: u32,
    },
    /// A credential that does not count.
    Credential {
        /// Its serial.
        serial: String,
        /// Why.
        defect: CredentialDefect,
    },
    /// No credential is live and attested.
    NoLiveAttestedCredential,
    /// Attested: a fresh hardware attestation and a live attested credential.
    Attested {
        /// The attestation format.
        format: Format,
        /// When it was verified.
        #[serde(with = "time::serde::rfc3339")]
        verified_at: OffsetDateTime,
    },
}

impl fmt::Display for AssuranceReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use AssuranceReason as R;
        match self {
            R::NotRegistered => f.write_str("device not in the inventory"),
            R::DeviceLost { at } => write!(f, "device reported lost at {at}"),
            R::UserDeactivated { at } => write!(f, "user deactivated at {at}"),
            R::Registered => f.write_str("device in the inventory"),
            R::NotEnrolled => f.write_str("not enrolled in an mdm"),
            R::NotCompliant { compliance } => {
                write!(f, "mdm compliance {}", compliance.as_str())
            }
            R::NoCheckIn => f.write_str("no mdm check-in"),
            R::CheckInStale { at, max_hours } => {
                write!(f, "last mdm check-in {at} older than {max_hours} h")
            }
            R::Jailbroken => f.write_str("jailbreak or root detected"),
            R::Managed { checked_in_at } => {
                write!(f, "managed, checked in at {checked_in_at}")
            }
            R::NoAttestation => f.write_str("no verified attestation"),
            R::AttestationNotHardware => f.write_str("attested key not hardware-protected"),
            R::AttestationStale {
                verified_at,
                max_days,
            } => write!(f, "attestation {verified_at} older than {max_days} days"),
            R::Credential { serial, defect } => {
                write!(f, "credential {serial} {}", defect.as_str())
            }
            R::NoLiveAttestedCredential => f.write_str("no live attested credential"),
            R::Attested {
                format,
                verified_at,
            } => write!(f, "attested ({}) at {verified_at}", format.as_str()),
        }
    }
}

/// [`PostureView`] with owned strings, as [`assess`] produces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedPostureView {
    /// The device's assurance.
    pub assurance: Assurance,
    /// What is known of its RCS E2EE.
    pub rcs_e2ee: RcsE2ee,
    /// The organisation's app is installed and reachable.
    pub in_app: bool,
    /// The recipient has a secure e-mail address.
    pub secure_email: bool,
    /// The recipient can log in to the web portal.
    pub web_portal: bool,
    /// The recipient can receive SMS.
    pub sms: bool,
    /// `ios`, `android`, `macos`, ... (empty when unknown).
    pub platform: String,
    /// The OS version as reported (empty when unknown).
    pub os_version: String,
    /// The carrier, when known.
    pub carrier: Option<String>,
    /// The messaging client's version, when known.
    pub client_version: Option<String>,
}

impl OwnedPostureView {
    /// The borrowed form that [`super::policy::evaluate`] takes.
    pub fn as_view(&self) -> PostureView<'_> {
        PostureView {
            assurance: self.assurance,
            rcs_e2ee: self.rcs_e2ee,
            in_app: self.in_app,
            secure_email: self.secure_email,
            web_portal: self.web_portal,
            sms: self.sms,
            platform: &self.platform,
            os_version: &self.os_version,
            carrier: self.carrier.as_deref(),
            client_version: self.client_version.as_deref(),
        }
    }
}

/// What a record is worth at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    /// The assurance level.
    pub assurance: Assurance,
    /// Why, in the order checked.
    pub reasons: Vec<AssuranceReason>,
    /// What is known of the RCS E2EE.
    pub rcs_e2ee: RcsE2ee,
    /// The view routing evaluates.
    pub view: OwnedPostureView,
}

/// Whether `t` is within `window` before `now` (inclusive; times after `now` count as fresh).
fn fresh(t: OffsetDateTime, window: Duration, now: OffsetDateTime) -> bool {
    now - t <= window
}

/// Assesses `record` at `now` under `freshness` (see the module docs for the rules).
pub fn assess(record: &PostureRecord, freshness: &Freshness, now: OffsetDateTime) -> Assessment {
    let mut reasons = Vec::new();
    let assurance = assurance(record, freshness, now, &mut reasons);
    let (rcs_e2ee, client_version) = rcs_e2ee(record, freshness, now);
    let available = |a: &Option<Availability>| a.as_ref().is_some_and(|a| a.available);
    let caps = &record.capabilities;
    let view = OwnedPostureView {
        assurance,
        rcs_e2ee,
        in_app: available(&caps.in_app),
        secure_email: available(&caps.secure_email),
        web_portal: available(&caps.web_portal),
        sms: available(&caps.sms),
        platform: record.mdm.platform.clone().unwrap_or_default(),
        os_version: record.mdm.os_version.clone().unwrap_or_default(),
        carrier: caps
            .rcs_e2ee_report
            .as_ref()
            .and_then(|r| r.carrier.clone()),
        client_version,
    };
    Assessment {
        assurance,
        reasons,
        rcs_e2ee,
        view,
    }
}

fn assurance(
    record: &PostureRecord,
    freshness: &Freshness,
    now: OffsetDateTime,
    reasons: &mut Vec<AssuranceReason>,
) -> Assurance {
    use AssuranceReason as R;
    if let Some(lost) = &record.lost {
        reasons.push(R::DeviceLost { at: lost.at });
    }
    if let Some(gone) = &record.user_deactivated {
        reasons.push(R::UserDeactivated { at: gone.at });
    }
    if record.registered_at.is_none() {
        reasons.push(R::NotRegistered);
    }
    if !reasons.is_empty() {
        return Assurance::Unknown;
    }
    reasons.push(R::Registered);

    // managed
    let mdm = &record.mdm;
    let mut managed = true;
    if !mdm.enrolled {
        reasons.push(R::NotEnrolled);
        managed = false;
    }
    if mdm.compliance != Compliance::Compliant {
        reasons.push(R::NotCompliant {
            compliance: mdm.compliance,
        });
        managed = false;
    }
    let checkin_window = Duration::hours(i64::from(freshness.mdm_checkin_hours));
    match mdm.last_check_in {
        None => {
            reasons.push(R::NoCheckIn);
            managed = false;
        }
        Some(at) if !fresh(at, checkin_window, now) => {
            reasons.push(R::CheckInStale {
                at,
                max_hours: freshness.mdm_checkin_hours,
            });
            managed = false;
        }
        Some(_) => {}
    }
    if mdm.jailbreak_detected == Some(true) {
        reasons.push(R::Jailbroken);
        managed = false;
    }
    let Some(checked_in_at) = mdm.last_check_in.filter(|_| managed) else {
        return Assurance::Registered;
    };
    reasons.push(R::Managed { checked_in_at });

    // attested
    let mut attested = true;
    let attestation_window = Duration::days(i64::from(freshness.attestation_days));
    match &record.attestation {
        None => {
            reasons.push(R::NoAttestation);
            attested = false;
        }
        Some(a) => {
            if !a.is_hardware() {
                reasons.push(R::AttestationNotHardware);
                attested = false;
            }
            if !fresh(a.verified_at, attestation_window, now) {
                reasons.push(R::AttestationStale {
                    verified_at: a.verified_at,
                    max_days: freshness.attestation_days,
                });
                attested = false;
            }
        }
    }
    if !record.has_live_attested_credential(now) {
        for c in &record.credentials {
            if let Some(defect) = c.defect(now) {
                reasons.push(R::Credential {
                    serial: c.serial.clone(),
                    defect,
                });
            }
        }
        reasons.push(R::NoLiveAttestedCredential);
        attested = false;
    }
    match record.attestation.as_ref().filter(|_| attested) {
        Some(a) => {
            reasons.push(R::Attested {
                format: a.format,
                verified_at: a.verified_at,
            });
            Assurance::Attested
        }
        None => Assurance::Managed,
    }
}

/// The RCS E2EE state and the client version that goes with it.
fn rcs_e2ee(
    record: &PostureRecord,
    freshness: &Freshness,
    now: OffsetDateTime,
) -> (RcsE2ee, Option<String>) {
    if record.lost.is_some() || record.user_deactivated.is_some() {
        return (RcsE2ee::Unknown, None);
    }
    let window = Duration::days(i64::from(freshness.attestation_days));
    let caps = &record.capabilities;
    let handshake = caps.rcs_e2ee_handshake.as_ref().and_then(|h| {
        let c = record.credential(&h.credential_serial)?;
        (c.defect(now).is_none() && h.stamp.at > c.issued_at).then_some(h)
    });
    if let Some(h) = handshake {
        let state = if fresh(h.stamp.at, window, now) {
            RcsE2ee::Verified
        } else {
            RcsE2ee::Claimed
        };
        return (state, h.client_version.clone());
    }
    match &caps.rcs_e2ee_report {
        Some(r) if fresh(r.stamp.at, window, now) => {
            let state = match r.state {
                RcsE2ee::Verified | RcsE2ee::Claimed => RcsE2ee::Claimed,
                other => other,
            };
            (state, r.client_version.clone())
        }
        _ => (RcsE2ee::Unknown, None),
    }
}

#[cfg(test)]
mod tests;
