//! ACME's error conditions (RFC 8555 §6.7, draft-ietf-acme-device-attest §7) as domain values;
//! only the HTTP layer writes them as `urn:ietf:params:acme:error:*` problem documents.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::{DomainError, ErrorKind};

/// An ACME error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum AcmeProblem {
    /// The account does not exist (`onlyReturnExisting`, an unknown `kid`).
    AccountDoesNotExist,
    /// The certificate was revoked before.
    AlreadyRevoked,
    /// The attestation statement does not verify or does not match.
    BadAttestationStatement,
    /// The CSR is unacceptable.
    #[serde(rename = "badCSR")]
    BadCsr,
    /// A replayed, unknown or missing nonce.
    BadNonce,
    /// The key is not acceptable.
    BadPublicKey,
    /// The revocation reason is not allowed.
    BadRevocationReason,
    /// The JWS algorithm is not supported.
    BadSignatureAlgorithm,
    /// The server could not connect to the validation target.
    Connection,
    /// The provisioner requires external account binding.
    ExternalAccountRequired,
    /// The response to a challenge was wrong.
    IncorrectResponse,
    /// A contact URL of a supported scheme is not valid (RFC 8555 §7.3).
    InvalidContact,
    /// The request message was malformed (also: not found).
    Malformed,
    /// The order is not ready to be finalized.
    OrderNotReady,
    /// Too many requests.
    RateLimited,
    /// The server will not issue for the identifier.
    RejectedIdentifier,
    /// The server experienced an internal error.
    ServerInternal,
    /// The client lacks sufficient authorization.
    Unauthorized,
    /// A contact URL's scheme is not supported (RFC 8555 §7.3).
    UnsupportedContact,
    /// The identifier type is not supported.
    UnsupportedIdentifier,
}

impl AcmeProblem {
    /// The name after `urn:ietf:params:acme:error:`.
    pub fn as_str(self) -> &'static str {
        match self {
            AcmeProblem::AccountDoesNotExist => "accountDoesNotExist",
            AcmeProblem::AlreadyRevoked => "alreadyRevoked",
            AcmeProblem::BadAttestationStatement => "badAttestationStatement",
            AcmeProblem::BadCsr => "badCSR",
            AcmeProblem::BadNonce => "badNonce",
            AcmeProblem::BadPublicKey => "badPublicKey",
            AcmeProblem::BadRevocationReason => "badRevocationReason",
            AcmeProblem::BadSignatureAlgorithm => "badSignatureAlgorithm",
            AcmeProblem::Connection => "connection",
            AcmeProblem::ExternalAccountRequired => "externalAccountRequired",
            AcmeProblem::IncorrectResponse => "incorrectResponse",
            AcmeProblem::InvalidContact => "invalidContact",
            AcmeProblem::Malformed => "malformed",
            AcmeProblem::OrderNotReady => "orderNotReady",
            AcmeProblem::RateLimited => "rateLimited",
            AcmeProblem::RejectedIdentifier => "rejectedIdentifier",
            AcmeProblem::ServerInternal => "serverInternal",
            AcmeProblem::Unauthorized => "unauthorized",
            AcmeProblem::UnsupportedContact => "unsupportedContact",
            AcmeProblem::UnsupportedIdentifier => "unsupportedIdentifier",
        }
    }

    /// The full problem type URN.
    pub fn urn(self) -> String {
        format!("urn:ietf:params:acme:error:{}", self.as_str())
    }
}

/// A problem about one identifier (RFC 8555 §6.7.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subproblem {
    /// The problem.
    pub problem: AcmeProblem,
    /// What is wrong.
    pub detail: String,
    /// The identifier type.
    pub identifier_type: String,
    /// The identifier value.
    pub identifier_value: String,
}

/// An ACME error: a problem type, a detail safe to show, optional subproblems, and for
/// internal errors a cause that is only logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeError {
    /// The problem type.
    pub problem: AcmeProblem,
    /// The detail for the client.
    pub detail: String,
    /// Per-identifier problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subproblems: Vec<Subproblem>,
    /// `404` instead of the problem's usual status (unknown resources).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_found: bool,
    /// Another status than the problem's usual one: 401 for a deactivated account (RFC 8555
    /// §7.3.6), 409 for a new key that another account holds (§7.3.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Logged, never sent.
    #[serde(skip)]
    pub cause: Option<String>,
}

impl AcmeError {
    /// An error of `problem`.
    pub fn new(problem: AcmeProblem, detail: impl Into<String>) -> Self {
        AcmeError {
            problem,
            detail: detail.into(),
            subproblems: Vec::new(),
            not_found: false,
            status: None,
            cause: None,
        }
    }

    /// The same error answered with `status`.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// A `malformed` error.
    pub fn malformed(detail: impl Into<String>) -> Self {
        AcmeError::new(AcmeProblem::Malformed, detail)
    }

    /// An `unauthorized` error.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        AcmeError::new(AcmeProblem::Unauthorized, detail)
    }

    /// A `malformed` error answered with 404.
    pub fn not_found(what: impl fmt::Display) -> Self {
        let mut e = AcmeError::malformed(format!("no such {what}"));
        e.not_found = true;
        e
    }

    /// A `serverInternal` error whose cause is only logged.
    pub fn internal(cause: impl fmt::Display) -> Self {
        let mut e = AcmeError::new(AcmeProblem::ServerInternal, "internal error");
        e.cause = Some(cause.to_string());
        e
    }

    /// Adds a subproblem for an identifier.
    #[must_use]
    pub fn with_subproblem(
        mut self,
        problem: AcmeProblem,
        detail: impl Into<String>,
        id_type: &str,
        id_value: &str,
    ) -> Self {
        self.subproblems.push(Subproblem {
            problem,
            detail: detail.into(),
            identifier_type: id_type.to_owned(),
            identifier_value: id_value.to_owned(),
        });
        self
    }
}

impl fmt::Display for AcmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.problem.as_str(), self.detail)?;
        if let Some(c) = &self.cause {
            write!(f, " ({c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for AcmeError {}

impl From<DomainError> for AcmeError {
    fn from(e: DomainError) -> Self {
        let problem = match e.kind {
            ErrorKind::Malformed | ErrorKind::Conflict => AcmeProblem::Malformed,
            ErrorKind::Unauthorized | ErrorKind::Forbidden => AcmeProblem::Unauthorized,
            ErrorKind::NotFound => {
                let mut n = AcmeError::malformed(e.detail);
                n.not_found = true;
                return n;
            }
            ErrorKind::RateLimited => AcmeProblem::RateLimited,
            ErrorKind::BadCsr => AcmeProblem::BadCsr,
            ErrorKind::BadNonce => AcmeProblem::BadNonce,
            ErrorKind::BadAttestation => AcmeProblem::BadAttestationStatement,
            ErrorKind::AlreadyRevoked => AcmeProblem::AlreadyRevoked,
            ErrorKind::Unavailable | ErrorKind::Internal => {
                let mut i =
                    AcmeError::internal(e.cause.clone().unwrap_or_else(|| e.detail.clone()));
                if e.kind == ErrorKind::Unavailable {
                    i.detail = e.detail;
                }
                return i;
            }
        };
        AcmeError::new(problem, e.detail)
    }
}

impl From<crate::store::StoreError> for AcmeError {
    fn from(e: crate::store::StoreError) -> Self {
        AcmeError::from(DomainError::from(e))
    }
}

/// The ACME result type.
pub type AcmeResult<T> = Result<T, AcmeError>;
