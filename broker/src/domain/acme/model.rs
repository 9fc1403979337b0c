//! ACME resources as postern stores them (JSON documents, [`DocKind`](crate::store::DocKind)
//! `Acme*`). The wire shapes are built from these by the HTTP layer.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use postern_certs::attestation::Evidence;
use postern_certs::jws::Jwk;

use super::error::AcmeError;

/// An account's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    /// Usable.
    Valid,
    /// Deactivated by its holder.
    Deactivated,
    /// Revoked by the server.
    Revoked,
}

/// An ACME account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Random id (in the account URL).
    pub id: String,
    /// The provisioner it was created at.
    pub provisioner: String,
    /// The provisioner's tenant.
    pub tenant: String,
    /// State.
    pub status: AccountStatus,
    /// The account key.
    pub jwk: Jwk,
    /// Its RFC 7638 thumbprint.
    pub thumbprint: String,
    /// `mailto:` contacts.
    #[serde(default)]
    pub contact: Vec<String>,
    /// The external account binding key id, when bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eab_kid: Option<String>,
    /// The device (id) its binding key was made for: the account orders only for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// When created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An ACME identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identifier {
    /// `dns`, `permanent-identifier`, `hardware-module`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The value.
    pub value: String,
}

/// An order's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Authorizations pending.
    Pending,
    /// Every authorization valid; waiting for finalize.
    Ready,
    /// Being finalized.
    Processing,
    /// Certificate issued.
    Valid,
    /// Failed or expired.
    Invalid,
}

/// An ACME order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Random id.
    pub id: String,
    /// The provisioner.
    pub provisioner: String,
    /// The tenant.
    pub tenant: String,
    /// The account that owns it.
    pub account: String,
    /// State.
    pub status: OrderStatus,
    /// When it expires (pending and ready orders become invalid then).
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// What it is for.
    pub identifiers: Vec<Identifier>,
    /// Authorization ids, one per identifier.
    pub authorizations: Vec<String>,
    /// The issued certificate's serial (hex), once valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Why it is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AcmeError>,
    /// When created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An authorization's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthzStatus {
    /// Waiting for a challenge.
    Pending,
    /// A challenge succeeded.
    Valid,
    /// A challenge failed.
    Invalid,
    /// Deactivated by the client.
    Deactivated,
    /// Expired.
    Expired,
}

/// A challenge's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChallengeStatus {
    /// Waiting for the client.
    Pending,
    /// Being validated.
    Processing,
    /// Validated.
    Valid,
    /// Failed.
    Invalid,
}

/// A challenge inside an authorization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    /// `device-attest-01`, `http-01`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The token (128 random bits or more, base64url).
    pub token: String,
    /// State.
    pub status: ChallengeStatus,
    /// When validated.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub validated: Option<OffsetDateTime>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AcmeError>,
}

/// What a valid `device-attest-01` challenge proved; finalize checks the CSR against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attested {
    /// The device of the inventory.
    pub device: String,
    /// The attestation's evidence.
    pub evidence: Evidence,
    /// SHA-256 (hex) of the evidence JSON.
    pub evidence_sha256: String,
}

/// An ACME authorization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authz {
    /// Random id.
    pub id: String,
    /// The provisioner.
    pub provisioner: String,
    /// The tenant.
    pub tenant: String,
    /// The account that owns it.
    pub account: String,
    /// The order it belongs to.
    pub order: String,
    /// What it authorizes.
    pub identifier: Identifier,
    /// State.
    pub status: AuthzStatus,
    /// When it expires.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// Its challenges (one per type the provisioner offers).
    pub challenges: Vec<Challenge>,
    /// For `device-attest-01`: what the attestation proved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested: Option<Attested>,
}

/// An external account binding key (RFC 8555 §7.3.4), made by an admin, used once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EabKey {
    /// Key id.
    pub kid: String,
    /// The provisioner it binds accounts at.
    pub provisioner: String,
    /// The tenant.
    pub tenant: String,
    /// The HMAC key, base64url (kept: the MAC must be checked against it).
    pub hmac_key: String,
    /// The account it bound, once used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_to: Option<String>,
    /// The device (id) it was made for (an enrollment profile): the account it binds may
    /// order certificates only for that device's identifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// When created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}
