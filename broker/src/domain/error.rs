//! The domain's error: a kind that the HTTP layer maps to the wire, a detail that is safe to
//! show, and for internal errors a cause that is only logged.

use std::fmt;

use crate::store::StoreError;

/// What kind of failure; only the HTTP layer turns this into status codes and problem types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is syntactically or semantically malformed.
    Malformed,
    /// No valid credentials.
    Unauthorized,
    /// Valid credentials that may not do this.
    Forbidden,
    /// No such thing (or not in the caller's tenant).
    NotFound,
    /// It exists already, or conflicts with what exists.
    Conflict,
    /// Too many requests.
    RateLimited,
    /// The CSR is refused.
    BadCsr,
    /// A replayed or unknown nonce.
    BadNonce,
    /// An attestation that does not verify.
    BadAttestation,
    /// The certificate was revoked before.
    AlreadyRevoked,
    /// A dependency is not available right now.
    Unavailable,
    /// A bug or an environment failure; the detail is generic on the wire.
    Internal,
}

impl ErrorKind {
    /// A stable kebab-case name (`bad-csr`), used in problem types and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Malformed => "malformed",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::RateLimited => "rate-limited",
            ErrorKind::BadCsr => "bad-csr",
            ErrorKind::BadNonce => "bad-nonce",
            ErrorKind::BadAttestation => "bad-attestation",
            ErrorKind::AlreadyRevoked => "already-revoked",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A domain error.
#[derive(Debug)]
pub struct DomainError {
    /// The kind.
    pub kind: ErrorKind,
    /// A message that is safe to send to the caller.
    pub detail: String,
    /// For internal errors: the cause, logged but never sent.
    pub cause: Option<String>,
}

impl DomainError {
    /// An error of `kind` with a detail for the caller.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        DomainError {
            kind,
            detail: detail.into(),
            cause: None,
        }
    }

    /// An internal error: the caller sees a generic message, the log sees `cause`.
    pub fn internal(cause: impl fmt::Display) -> Self {
        DomainError {
            kind: ErrorKind::Internal,
            detail: "internal error".into(),
            cause: Some(cause.to_string()),
        }
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)?;
        if let Some(c) = &self.cause {
            write!(f, " ({c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DomainError {}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => DomainError::new(ErrorKind::NotFound, "not found"),
            StoreError::Conflict(what) => DomainError::new(ErrorKind::Conflict, what),
            StoreError::AlreadyRevoked => {
                DomainError::new(ErrorKind::AlreadyRevoked, "already revoked")
            }
            other => DomainError::internal(format!("store: {other}")),
        }
    }
}

impl From<postern_certs::Error> for DomainError {
    fn from(e: postern_certs::Error) -> Self {
        use postern_certs::Error as E;
        match e {
            E::BadCsr(c) => DomainError::new(ErrorKind::BadCsr, c.to_string()),
            E::Profile { .. } => DomainError::new(ErrorKind::BadCsr, e.to_string()),
            E::Malformed { .. } => DomainError::new(ErrorKind::Malformed, e.to_string()),
            other => DomainError::internal(other),
        }
    }
}

/// The domain's result type.
pub type DomainResult<T> = Result<T, DomainError>;
