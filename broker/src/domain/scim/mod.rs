//! SCIM 2.0 (RFC 7643, RFC 7644) service provider: the users and groups an IdP (Okta,
//! Microsoft Entra ID) provisions into a tenant, and what they mean to the posture engine.
//!
//! A SCIM client authenticates with a token of role `scim` (or `admin`); the token's tenant is
//! the one it provisions, so an IdP application sees only its tenant. Users and groups are
//! documents (`DocKind::ScimUser`, `DocKind::ScimGroup`, with `DocKind::ScimIndex` for the
//! lower-cased `userName` and each `externalId`); every write is one transaction with its
//! audit entry.
//!
//! Lifecycle: the user postern's devices name (`NewDevice::user`) is the SCIM `userName`,
//! exactly. A user's phone numbers and email addresses become the messaging addresses of their
//! devices ([`lifecycle`]); `active` turning false (PATCH, PUT, created inactive) or a DELETE
//! runs [`Posture::deactivate_user`] before the answer, so their credentials are revoked when
//! the IdP hears back. Reactivation is recorded only: revoked credentials stay revoked and the
//! devices enroll again.
//!
//! **Architecture Invariant:** within a tenant a lower-cased `userName` names at most one
//! user (an index document written in the same transaction as the user).

pub mod filter;
pub mod lifecycle;
pub mod patch;
pub mod resource;
pub mod schema;
mod service;

use crate::domain::{DomainError, ErrorKind};
use crate::store::StoreError;

pub use service::{ListQuery, Scim};

/// The `scimType` of an error (RFC 7644 §3.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScimType {
    /// The filter syntax was invalid or the filter names an unknown attribute.
    InvalidFilter,
    /// The filter yields more results than the server returns.
    TooMany,
    /// A `userName` that another user has.
    Uniqueness,
    /// An attempt to change a read-only or immutable attribute.
    Mutability,
    /// The request body is not a valid SCIM message.
    InvalidSyntax,
    /// A PATCH path that is malformed or names an unknown attribute.
    InvalidPath,
    /// A PATCH path that matched nothing to operate on.
    NoTarget,
    /// A missing required value or one of the wrong type.
    InvalidValue,
    /// A SCIM protocol version the server does not support.
    InvalidVers,
    /// The request cannot be completed as given (secrets in a URL).
    Sensitive,
}

impl ScimType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }
}

/// Why a SCIM request failed, as a domain value; only `http/scim.rs` turns it into a status
/// code and the SCIM error schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScimStatus {
    /// 400
    BadRequest,
    /// 401
    Unauthorized,
    /// 403
    Forbidden,
    /// 404
    NotFound,
    /// 409
    Conflict,
    /// 412: `If-Match` names another version.
    PreconditionFailed,
    /// 413
    PayloadTooLarge,
    /// 501
    NotImplemented,
    /// 503
    Unavailable,
    /// 500 (the detail is generic on the wire)
    Internal,
}

/// A SCIM error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    /// What kind of failure.
    pub status: ScimStatus,
    /// The `scimType`, where RFC 7644 defines one.
    pub scim_type: Option<ScimType>,
    /// Human-readable detail (never an internal cause).
    pub detail: String,
}

impl ScimError {
    /// A 400 (409 for `uniqueness`) with a `scimType`.
    pub fn bad(t: ScimType, detail: impl Into<String>) -> Self {
        ScimError {
            status: if t == ScimType::Uniqueness {
                ScimStatus::Conflict
            } else {
                ScimStatus::BadRequest
            },
            scim_type: Some(t),
            detail: detail.into(),
        }
    }

    /// An error without a `scimType`.
    pub fn new(status: ScimStatus, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// 404 for a resource id.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(ScimStatus::NotFound, format!("{what} {id} not found"))
    }
}

impl std::fmt::Display for ScimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl From<DomainError> for ScimError {
    fn from(e: DomainError) -> Self {
        let status = match e.kind {
            ErrorKind::Malformed => ScimStatus::BadRequest,
            ErrorKind::Unauthorized => ScimStatus::Unauthorized,
            ErrorKind::Forbidden => ScimStatus::Forbidden,
            ErrorKind::NotFound => ScimStatus::NotFound,
            ErrorKind::Conflict | ErrorKind::AlreadyRevoked => ScimStatus::Conflict,
            ErrorKind::Unavailable | ErrorKind::RateLimited => ScimStatus::Unavailable,
            _ => {
                tracing::error!(error = %e, "scim: internal error");
                return ScimError::new(ScimStatus::Internal, "internal error");
            }
        };
        let scim_type = (status == ScimStatus::BadRequest).then_some(ScimType::InvalidValue);
        ScimError {
            status,
            scim_type,
            detail: e.detail,
        }
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        DomainError::from(e).into()
    }
}
