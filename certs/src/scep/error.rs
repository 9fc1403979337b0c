//! Why a SCEP message was refused, and the failInfo that says so on the wire.

use super::{FailInfo, ReplyTo};

/// Why a SCEP message was refused. [`ScepError::fail_info`] is what a server answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScepError {
    /// The CMS structure does not parse (truncated, wrong tags, trailing bytes).
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A digest, signature, key-transport or content-encryption algorithm postern does not do.
    #[error("unsupported {what} algorithm {oid}")]
    UnsupportedAlgorithm {
        /// which algorithm slot
        what: &'static str,
        /// the OID found (dotted)
        oid: String,
    },
    /// The signed attributes lack a required SCEP attribute.
    #[error("missing {0} attribute")]
    MissingAttribute(&'static str),
    /// A SCEP attribute is present but its value is not acceptable.
    #[error("bad {0} attribute")]
    BadAttribute(&'static str),
    /// The messageType is not one this layer knows.
    #[error("unknown message type {0:?}")]
    UnknownMessageType(String),
    /// The message has no certificate matching the signer identifier (and none was supplied).
    #[error("the signer's certificate is not available")]
    SignerNotFound,
    /// The messageDigest attribute is not the digest of the content.
    #[error("the message digest is not the content's")]
    DigestMismatch,
    /// The contentType attribute is not the encapsulated content's type.
    #[error("the content type attribute does not match the content")]
    ContentTypeMismatch,
    /// The signature does not verify with the signer's certificate.
    #[error("the signature does not verify")]
    Signature,
    /// No recipient of the `EnvelopedData` is the decrypting certificate.
    #[error("the message is not encrypted to this recipient")]
    NotForRecipient,
    /// The content does not decrypt (bad length or PKCS#7 padding, wrong key size).
    #[error("the content does not decrypt")]
    Decrypt,
    /// The decrypted request (CSR, IssuerAndSubject, IssuerAndSerial) is malformed.
    #[error("malformed inner request: {0}")]
    InnerRequest(String),
}

impl ScepError {
    /// The failInfo a SCEP server answers for this refusal: `badAlg` for an algorithm it does
    /// not do, `badMessageCheck` for anything that breaks integrity (structure, digest,
    /// signature, decryption), `badRequest` for a well-formed message whose request is not
    /// acceptable (missing or bad attributes, unknown type, malformed inner request).
    pub fn fail_info(&self) -> FailInfo {
        match self {
            ScepError::UnsupportedAlgorithm { .. } => FailInfo::BadAlg,
            ScepError::Malformed(_)
            | ScepError::SignerNotFound
            | ScepError::DigestMismatch
            | ScepError::ContentTypeMismatch
            | ScepError::Signature
            | ScepError::NotForRecipient
            | ScepError::Decrypt => FailInfo::BadMessageCheck,
            ScepError::MissingAttribute(_)
            | ScepError::BadAttribute(_)
            | ScepError::UnknownMessageType(_)
            | ScepError::InnerRequest(_) => FailInfo::BadRequest,
        }
    }
}

/// A refused request: the error and, when the SCEP attributes and the signer certificate could
/// be read, where a signed FAILURE answer goes ([`ReplyTo`]). Without it, a server can only
/// answer with an HTTP error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Rejection {
    /// why
    pub error: ScepError,
    /// whom to answer, if known
    pub reply_to: Option<ReplyTo>,
}

impl Rejection {
    /// The failInfo to answer.
    pub fn fail_info(&self) -> FailInfo {
        self.error.fail_info()
    }
}

impl From<ScepError> for Rejection {
    fn from(error: ScepError) -> Self {
        Rejection {
            error,
            reply_to: None,
        }
    }
}
