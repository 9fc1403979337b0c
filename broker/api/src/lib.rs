//! `postern-api`: the wire types of postern's public HTTP API, shared by the broker, the
//! agent and any Rust gateway. Serde only: no HTTP stack, no storage.
//!
//! Times are RFC 3339 strings in UTC; serials are lower-case hex; names are written
//! `kind:value` (`dns:gw.example.com`, `ip:127.0.0.1`, `uri:tel:+4915112345678`,
//! `email:a@example.com`, `permanent-identifier:C02XK0AAJGH5`).

pub mod route;

use serde::{Deserialize, Serialize};

pub mod feed;

/// The media type of every error body (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Prefix of postern's problem `type` URIs; the rest is the error kind (`bad-csr`).
pub const PROBLEM_TYPE_PREFIX: &str = "urn:postern:problem:";

/// An error body (RFC 9457 problem details).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:postern:problem:<kind>`
    #[serde(rename = "type")]
    pub type_: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `POST /v1/admin/certificates`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueCertificateRequest {
    /// PKCS#10 request, PEM.
    pub csr: String,
    /// Profile name: `device-identity`, `messaging-identity`, `tls-server`, `gateway-client`,
    /// `ocsp-signer`, or one configured.
    pub profile: String,
    /// Names to certify instead of those in the CSR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    /// commonName instead of the CSR's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Validity in seconds instead of the profile's default (at most the profile's maximum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_seconds: Option<u64>,
    /// The tenant, for operators acting on another tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// A certificate as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// Serial, lower-case hex.
    pub serial: String,
    /// Owning tenant.
    pub tenant: String,
    /// Profile it was issued under.
    pub profile: String,
    /// `good` or `revoked`.
    pub status: String,
    /// When revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Why revoked (RFC 5280 name, e.g. `keyCompromise`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<String>,
    /// Subject commonName.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Subject alternative names, `kind:value`.
    pub names: Vec<String>,
    /// notBefore
    pub not_before: String,
    /// notAfter
    pub not_after: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The certificate followed by the issuing CA, PEM (only on issuance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_pem: Option<String>,
}

/// `POST /v1/admin/certificates/{serial}/revoke`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// RFC 5280 reason name (`keyCompromise`, `superseded`, `cessationOfOperation`, ...);
    /// `unspecified` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/admin/tenants`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// `[a-z0-9-]{1,63}`
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Identifier.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Creation time.
    pub created_at: String,
}

/// `POST /v1/admin/tokens`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Tenant; the caller's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `admin`, `gateway`, `mdm`, `scim` or `device`.
    pub role: String,
    /// Free text to recognise it by.
    #[serde(default)]
    pub label: String,
}

/// A token as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Identifier.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Role.
    pub role: String,
    /// Label.
    pub label: String,
    /// Creation time.
    pub created_at: String,
    /// Revocation time, if revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The bearer token: present only in the response that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `GET /healthz`, `GET /readyz`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position, from 1.
    pub seq: u64,
    /// Time.
    pub time: String,
    /// Tenant.
    pub tenant: String,
    /// Actor.
    pub actor: String,
    /// Action.
    pub action: String,
    /// Subject.
    pub subject: String,
    /// Details.
    pub details: serde_json::Value,
    /// Hash of the entry before.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// `GET /v1/whoami`: who the request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    /// The tenant the caller acts for.
    pub tenant: String,
    /// `admin`, `gateway`, `mdm`, `scim` or `device`.
    pub role: String,
    /// `token:<id>` for a bearer token, `cert:<serial>` for a gateway client certificate.
    pub actor: String,
}
