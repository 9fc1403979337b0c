//! The events the transmitter sends and the Security Event Token claims (RFC 8417, profiled by
//! SSF 1.0 §4) they become.
//!
//! A SET carries `iss`, `aud`, `iat`, `jti`, the subject as a top-level `sub_id` (RFC 9493) and
//! one event in `events`. The subject is always the `complex` format with `opaque` members named
//! `device` and/or `user`, so a receiver can tell which kind of identifier it holds. CAEP events
//! carry `event_timestamp`, `initiating_entity` and `reason_admin` where known, their own
//! members, and postern's extension member `postern_feed_seq`: the sequence number of the
//! tenant's posture feed entry that caused the event, when there is one.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

/// CAEP 1.0 §3.5: a device's compliance status changed.
pub const DEVICE_COMPLIANCE_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change";
/// CAEP 1.0 §3.2: a credential was created, changed, revoked or deleted.
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// CAEP 1.0 §3.1: a session was revoked.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// SSF 1.0 §8.1.4: the verification event.
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// The event types a stream can ask for (the verification event is always delivered).
pub const SUPPORTED: [&str; 3] = [DEVICE_COMPLIANCE_CHANGE, CREDENTIAL_CHANGE, SESSION_REVOKED];

/// The name of postern's extension member inside each event: the feed sequence number.
pub const FEED_SEQ_MEMBER: &str = "postern_feed_seq";

/// An event to publish to a tenant's receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsfEvent {
    /// What happened, with the members of that event type.
    pub kind: SsfEventKind,
    /// Whom it is about.
    pub subject: SsfSubject,
    /// The sequence number of the feed entry that caused it, if any.
    pub feed_seq: Option<u64>,
    /// When it happened (`event_timestamp`).
    pub occurred_at: OffsetDateTime,
    /// Who or what caused it (`initiating_entity`).
    pub initiating_entity: Option<InitiatingEntity>,
    /// A reason for administrators (`reason_admin`, sent as `{"en": ...}`).
    pub reason_admin: Option<String>,
}

/// The event type and its own members.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SsfEventKind {
    /// The device became compliant or stopped being so.
    DeviceComplianceChange {
        /// `previous_status`.
        previous: ComplianceStatus,
        /// `current_status`.
        current: ComplianceStatus,
    },
    /// A credential changed (for postern: a device certificate issued or revoked).
    CredentialChange {
        /// `credential_type`.
        credential_type: CredentialType,
        /// `change_type`.
        change_type: ChangeType,
        /// `friendly_name`.
        friendly_name: Option<String>,
        /// `x509_issuer` (the issuer's distinguished name).
        x509_issuer: Option<String>,
        /// `x509_serial` (the serial, lower-case hex).
        x509_serial: Option<String>,
    },
    /// The subject's sessions were revoked.
    SessionRevoked,
}

impl SsfEventKind {
    /// The event type URI.
    pub fn uri(&self) -> &'static str {
        match self {
            SsfEventKind::DeviceComplianceChange { .. } => DEVICE_COMPLIANCE_CHANGE,
            SsfEventKind::CredentialChange { .. } => CREDENTIAL_CHANGE,
            SsfEventKind::SessionRevoked => SESSION_REVOKED,
        }
    }
}

/// CAEP device compliance status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComplianceStatus {
    /// `compliant`
    Compliant,
    /// `not-compliant`
    NotCompliant,
}

impl ComplianceStatus {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            ComplianceStatus::Compliant => "compliant",
            ComplianceStatus::NotCompliant => "not-compliant",
        }
    }
}

/// CAEP credential types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialType {
    /// `password`
    Password,
    /// `pin`
    Pin,
    /// `x509` (device certificates)
    X509,
    /// `fido2-platform`
    Fido2Platform,
    /// `fido2-roaming`
    Fido2Roaming,
    /// `fido-u2f`
    FidoU2f,
    /// `verifiable-credential`
    VerifiableCredential,
    /// `phone-voice`
    PhoneVoice,
    /// `phone-sms`
    PhoneSms,
    /// `app`
    App,
}

impl CredentialType {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialType::Password => "password",
            CredentialType::Pin => "pin",
            CredentialType::X509 => "x509",
            CredentialType::Fido2Platform => "fido2-platform",
            CredentialType::Fido2Roaming => "fido2-roaming",
            CredentialType::FidoU2f => "fido-u2f",
            CredentialType::VerifiableCredential => "verifiable-credential",
            CredentialType::PhoneVoice => "phone-voice",
            CredentialType::PhoneSms => "phone-sms",
            CredentialType::App => "app",
        }
    }
}

/// CAEP credential change types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeType {
    /// `create`
    Create,
    /// `revoke`
    Revoke,
    /// `update`
    Update,
    /// `delete`
    Delete,
}

impl ChangeType {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Create => "create",
            ChangeType::Revoke => "revoke",
            ChangeType::Update => "update",
            ChangeType::Delete => "delete",
        }
    }
}

/// CAEP `initiating_entity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InitiatingEntity {
    /// `admin`
    Admin,
    /// `user`
    User,
    /// `policy`
    Policy,
    /// `system`
    System,
}

impl InitiatingEntity {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            InitiatingEntity::Admin => "admin",
            InitiatingEntity::User => "user",
            InitiatingEntity::Policy => "policy",
            InitiatingEntity::System => "system",
        }
    }
}

/// Whom an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SsfSubject {
    /// A device, by its postern device id.
    Device(String),
    /// A user, by the tenant's user identifier.
    User(String),
    /// A user on a device.
    UserDevice {
        /// The user.
        user: String,
        /// The device.
        device: String,
    },
}

impl SsfSubject {
    /// The RFC 9493 subject identifier: `complex`, with `opaque` members.
    pub fn to_sub_id(&self) -> Value {
        let opaque = |id: &str| json!({"format": "opaque", "id": id});
        let mut m = Map::new();
        m.insert("format".into(), json!("complex"));
        match self {
            SsfSubject::Device(d) => {
                m.insert("device".into(), opaque(d));
            }
            SsfSubject::User(u) => {
                m.insert("user".into(), opaque(u));
            }
            SsfSubject::UserDevice { user, device } => {
                m.insert("user".into(), opaque(user));
                m.insert("device".into(), opaque(device));
            }
        }
        Value::Object(m)
    }
}

impl SsfEvent {
    /// The members of the event object (the value under its type URI in `events`).
    pub fn to_event_members(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "event_timestamp".into(),
            json!(self.occurred_at.unix_timestamp()),
        );
        if let Some(e) = self.initiating_entity {
            m.insert("initiating_entity".into(), json!(e.as_str()));
        }
        if let Some(r) = &self.reason_admin {
            m.insert("reason_admin".into(), json!({ "en": r }));
        }
        match &self.kind {
            SsfEventKind::DeviceComplianceChange { previous, current } => {
                m.insert("previous_status".into(), json!(previous.as_str()));
                m.insert("current_status".into(), json!(current.as_str()));
            }
            SsfEventKind::CredentialChange {
                credential_type,
                change_type,
                friendly_name,
                x509_issuer,
                x509_serial,
            } => {
                m.insert("credential_type".into(), json!(credential_type.as_str()));
                m.insert("change_type".into(), json!(change_type.as_str()));
                for (k, v) in [
                    ("friendly_name", friendly_name),
                    ("x509_issuer", x509_issuer),
                    ("x509_serial", x509_serial),
                ] {
                    if let Some(v) = v {
                        m.insert(k.into(), json!(v));
                    }
                }
            }
            SsfEventKind::SessionRevoked => {}
        }
        if let Some(seq) = self.feed_seq {
            m.insert(FEED_SEQ_MEMBER.into(), json!(seq));
        }
        Value::Object(m)
    }
}

/// The claims of a SET: `iss`, `aud`, `iat`, `jti`, `sub_id` and one event.
pub(crate) fn set_claims(
    iss: &str,
    aud: &str,
    iat: OffsetDateTime,
    jti: &str,
    sub_id: Value,
    event_type: &str,
    members: Value,
) -> Value {
    let mut events = Map::new();
    events.insert(event_type.to_owned(), members);
    json!({
        "iss": iss,
        "aud": aud,
        "iat": iat.unix_timestamp(),
        "jti": jti,
        "sub_id": sub_id,
        "events": events,
    })
}
