//! The crate's error type: one `#[non_exhaustive]` enum with narrower causes inside.

use std::fmt;

/// Everything that can go wrong in `postern-certs`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A certificate signing request was refused.
    #[error("bad csr: {0}")]
    BadCsr(#[from] CsrError),
    /// A key could not be loaded, generated or used.
    #[error("key: {0}")]
    Key(#[from] KeyError),
    /// A certificate profile does not allow the request.
    #[error("profile {profile}: {reason}")]
    Profile {
        /// the profile's name
        profile: String,
        /// why the request does not fit it
        reason: String,
    },
    /// An input certificate, CRL or OCSP message could not be parsed.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// what was being parsed
        what: &'static str,
        /// why it failed
        reason: String,
    },
    /// The CA cannot do what was asked (validity beyond the issuer's, wrong chain, ...).
    #[error("ca: {0}")]
    Ca(String),
    /// A JWS could not be produced or did not verify.
    #[error("jws: {0}")]
    Jws(String),
    /// An underlying encoder or signer failed.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn malformed(what: &'static str, reason: impl fmt::Display) -> Self {
        Error::Malformed {
            what,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn profile(profile: &str, reason: impl fmt::Display) -> Self {
        Error::Profile {
            profile: profile.to_owned(),
            reason: reason.to_string(),
        }
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Internal(format!("rcgen: {e}"))
    }
}

/// Why a CSR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// Not DER or PEM, or not a PKCS#10 request.
    #[error("not a PKCS#10 certification request: {0}")]
    Parse(String),
    /// Bytes follow the request.
    #[error("trailing data after the request")]
    TrailingData,
    /// The request's self-signature does not verify with its own key.
    #[error("signature does not verify")]
    Signature,
    /// The request is signed with an algorithm postern does not accept.
    #[error("signature algorithm {0} not accepted")]
    SignatureAlgorithm(String),
    /// The key type or size is not accepted.
    #[error("key not accepted: {0}")]
    WeakKey(String),
}

/// Why a key could not be loaded or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The PEM or PKCS#8 bytes do not hold a supported key.
    #[error("unsupported or malformed key: {0}")]
    Malformed(String),
    /// The key is encrypted and no passphrase was given.
    #[error("key is encrypted and no passphrase was given")]
    PassphraseRequired,
    /// The passphrase is wrong or the encrypted key was altered.
    #[error("wrong passphrase or corrupted key")]
    Decrypt,
    /// The signing operation failed.
    #[error("signing failed")]
    Sign,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
