//! Records that postern keeps: the shapes shared by the domain and the store.
//!
//! Every record is tenant-scoped where it belongs to a tenant. Times are UTC.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use postern_certs::crl::RevocationReason;
use postern_certs::names::SubjectName;

/// The tenant every fresh installation has.
pub const DEFAULT_TENANT: &str = "default";

/// A tenant: an organisation whose devices, users and policy are kept apart from the others'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Short identifier (`[a-z0-9-]{1,63}`), used in URLs.
    pub id: String,
    /// Display name.
    pub name: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manage the tenant: certificates, tokens, policy. Admins of the default tenant are
    /// operators and may also create tenants and act on any tenant.
    Admin,
    /// A routing gateway: read-only posture and route decisions.
    Gateway,
    /// An MDM: device inventory, profiles, enrollment challenges.
    Mdm,
    /// An IdP's SCIM client.
    Scim,
    /// A device (agent) acting for itself.
    Device,
}

impl Role {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Gateway => "gateway",
            Role::Mdm => "mdm",
            Role::Scim => "scim",
            Role::Device => "device",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "gateway" => Ok(Role::Gateway),
            "mdm" => Ok(Role::Mdm),
            "scim" => Ok(Role::Scim),
            "device" => Ok(Role::Device),
            other => Err(format!(
                "unknown role {other:?} (admin, gateway, mdm, scim or device)"
            )),
        }
    }
}

/// An API token as stored: only the SHA-256 of its secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public identifier (the part of the token before the secret).
    pub id: String,
    /// The tenant it acts for.
    pub tenant: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the secret part, hex.
    pub secret_sha256: String,
    /// Free text to recognise it by.
    pub label: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was revoked; a revoked token authenticates nothing.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub revoked_at: Option<OffsetDateTime>,
}

/// Whether a certificate is still good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum CertificateStatus {
    /// Not revoked (it may still have expired; see `not_after`).
    Good,
    /// Revoked.
    Revoked {
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        revoked_at: OffsetDateTime,
        /// Why (RFC 5280 CRLReason).
        reason: RevocationReason,
    },
}

/// An issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRecord {
    /// Serial number, lower-case hex without separators.
    pub serial: String,
    /// The tenant it was issued for.
    pub tenant: String,
    /// The profile it was issued under.
    pub profile: String,
    /// Subject commonName, if any.
    pub common_name: Option<String>,
    /// Subject alternative names.
    pub names: Vec<SubjectName>,
    /// notBefore
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// notAfter
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// The DER certificate, base64 (standard alphabet).
    pub der_b64: String,
    /// Good or revoked.
    pub status: CertificateStatus,
    /// How the subject enrolled, when through a protocol (ACME, SCEP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<Enrollment>,
}

/// How a certificate's subject proved itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// `acme`, `scep`.
    pub protocol: String,
    /// The provisioner.
    pub provisioner: String,
    /// The ACME account, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The ACME order or SCEP transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The device of the inventory, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// SHA-256 (hex) of the attestation evidence stored with the device, when the key was
    /// attested; `None` means the key is not hardware-attested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_sha256: Option<String>,
}

/// A device of a tenant's inventory (registered by an admin, later filled by the MDM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Identifier within the tenant (`dev_` + 20 hex).
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// Hardware serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Apple UDID (on a Mac, the ProvisioningUDID that attestation carries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udid: Option<String>,
    /// IMEI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imei: Option<String>,
    /// Further permanent identifiers (a TPM's, an agent's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hardware_ids: Vec<String>,
    /// `ios`, `macos`, `android`, `windows`, `linux`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The user it belongs to (an IdP user id or userName).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Who registered it: `admin`, or the MDM.
    pub source: String,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The last verified attestation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<DeviceAttestation>,
    /// Serials of certificates issued to it, oldest first.
    #[serde(default)]
    pub certificates: Vec<String>,
}

impl Device {
    /// Every identifier the device answers to (serial, UDID, IMEI, hardware ids).
    pub fn identifiers(&self) -> Vec<&str> {
        self.serial
            .iter()
            .chain(&self.udid)
            .chain(&self.imei)
            .chain(&self.hardware_ids)
            .map(String::as_str)
            .collect()
    }
}

/// An attestation, verified, as kept with the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAttestation {
    /// SHA-256 (hex) of the evidence's JSON as stored here; certificate records link it.
    pub sha256: String,
    /// What the attestation proved.
    pub evidence: postern_certs::attestation::Evidence,
}

/// One audit entry, hash-chained to the one before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// The tenant it concerns.
    pub tenant: String,
    /// Who acted: `token:<id>`, `cert:<serial>`, `cli`, `system`.
    pub actor: String,
    /// What happened: `certificate.issue`, `certificate.revoke`, `tenant.create`, ...
    pub action: String,
    /// What it happened to (a serial, a token id, a tenant id).
    pub subject: String,
    /// Decision inputs and outcome; never secrets, never private keys, never message content.
    pub details: serde_json::Value,
    /// `hash` of the entry before (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and the canonical JSON of this entry without `hash`, hex.
    pub hash: String,
}

/// An audit entry before the store gives it its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    /// When.
    pub time: OffsetDateTime,
    /// Which tenant.
    pub tenant: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// To what.
    pub subject: String,
    /// Details (no secrets).
    pub details: serde_json::Value,
}

/// The hash of the first entry's predecessor.
pub const AUDIT_GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl AuditDraft {
    /// Gives the draft its place: sequence number and chain hash.
    pub fn seal(self, seq: u64, prev_hash: &str) -> AuditEntry {
        let mut e = AuditEntry {
            seq,
            time: self.time,
            tenant: self.tenant,
            actor: self.actor,
            action: self.action,
            subject: self.subject,
            details: self.details,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        e
    }
}

impl AuditDraft {
    /// [`AuditDraft::seal`], also returning the entry's JSON as stored, made from the same
    /// serialization the hash is computed over (the writer of the audit log is a hot path).
    pub fn seal_json(self, seq: u64, prev_hash: &str) -> (AuditEntry, Vec<u8>) {
        let mut e = AuditEntry {
            seq,
            time: self.time,
            tenant: self.tenant,
            actor: self.actor,
            action: self.action,
            subject: self.subject,
            details: self.details,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        let body = serde_json::to_vec(&e).unwrap_or_default();
        e.hash = hash_body(&e.prev_hash, &body);
        // `hash` is the last field, so the stored JSON is the hashed JSON with it filled in
        let empty: &[u8] = br#""hash":""}"#;
        let json = match body.strip_suffix(empty) {
            Some(head) => [head, br#""hash":""#, e.hash.as_bytes(), br#""}"#].concat(),
            None => serde_json::to_vec(&e).unwrap_or_default(),
        };
        (e, json)
    }
}

fn hash_body(prev_hash: &str, body: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev_hash.as_bytes());
    ctx.update(b"\n");
    ctx.update(body);
    hex::encode(ctx.finish().as_ref())
}

impl AuditEntry {
    /// SHA-256 over `prev_hash` and the JSON of the entry with an empty `hash`.
    pub fn compute_hash(&self) -> String {
        let mut copy = self.clone();
        copy.hash = String::new();
        // serde_json writes struct fields in declaration order and `details` maps sorted
        // (no `preserve_order` feature), so the bytes are canonical for this type.
        let body = serde_json::to_vec(&copy).unwrap_or_default();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(self.prev_hash.as_bytes());
        ctx.update(b"\n");
        ctx.update(&body);
        hex::encode(ctx.finish().as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn seal_json_is_the_stored_form_of_seal() {
        let draft = AuditDraft {
            time: OffsetDateTime::now_utc(),
            tenant: "t\"1".into(),
            actor: "token:x".into(),
            action: "certificate.issue".into(),
            subject: "0a".into(),
            details: serde_json::json!({ "hash": "", "z": [1, 2], "a": "\u{e9}" }),
        };
        let (e, json) = draft.clone().seal_json(7, AUDIT_GENESIS);
        assert_eq!(e, draft.seal(7, AUDIT_GENESIS));
        let back: AuditEntry = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.compute_hash(), e.hash);
    }
}
