//! SCEP (RFC 8894) messages: the CMS (RFC 5652) layer a SCEP server reads and writes.
//!
//! A request (`pkiMessage`) is a CMS `SignedData`, signed by the client's (often self-signed)
//! certificate with RSA PKCS#1 v1.5 over SHA-1, SHA-256 or SHA-512, carrying the SCEP
//! authenticated attributes (messageType, transactionID, senderNonce, ...) and, as content, an
//! `EnvelopedData` encrypted to the RA certificate (RSA key transport; AES-CBC, DES-EDE3-CBC or
//! DES-CBC content encryption). [`parse_request`] checks all of it and returns a typed
//! [`PkiMessage`]; every refusal is a [`Rejection`] whose [`ScepError`] names the SCEP
//! [`FailInfo`] to answer, and which carries what is needed to answer it when the attributes
//! could be read.
//!
//! The answers: [`cert_rep`] builds a `CertRep` signed by the RA (SUCCESS with the issued
//! certificate or CRL in an `EnvelopedData` to the requester, FAILURE with a failInfo, or
//! PENDING), [`certs_only`] the degenerate PKCS#7 of `GetCACert` and `GetCRL`.
//! [`open_cert_rep`] is the client's side, used by tests and by anything that talks to another
//! SCEP server.
//!
//! Pure: no I/O, no clock. Randomness (content-encryption keys, IVs, RSA blinding) comes from the
//! operating system. Crypto: ring signs and verifies and digests; the `rsa` crate only decrypts
//! and encrypts RSA key transport (and signs SHA-1 answers, which ring does not do); RustCrypto
//! `aes`/`des`/`cbc` do the CBC content encryption (ring has no CBC).

mod der;
mod enveloped;
mod error;
mod key;
mod message;
mod signed;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use enveloped::ContentEncryption;
pub use error::{Rejection, ScepError};
pub use key::{Ra, RsaKey};
pub use message::{
    CertRep, Inner, PkiMessage, Reply, ReplyOptions, ReplyTo, cert_rep, certs_only, open_cert_rep,
    parse_request,
};
pub use signed::{DigestAlgorithm, SignedMessage, verify_message};

/// SCEP `messageType` (RFC 8894 §3.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageType {
    /// 3: the server's answer.
    CertRep,
    /// 17: renewal, signed with the certificate being renewed.
    RenewalReq,
    /// 19: a certificate request.
    PkcsReq,
    /// 20: polling for a pending request (`GetCertInitial` in older drafts).
    CertPoll,
    /// 21: fetch a certificate by issuer and serial.
    GetCert,
    /// 22: fetch a CRL by issuer and serial.
    GetCrl,
}

impl MessageType {
    /// The decimal string carried in the attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::CertRep => "3",
            MessageType::RenewalReq => "17",
            MessageType::PkcsReq => "19",
            MessageType::CertPoll => "20",
            MessageType::GetCert => "21",
            MessageType::GetCrl => "22",
        }
    }

    /// Parses the attribute's decimal string.
    pub fn from_attribute(s: &str) -> Option<Self> {
        Some(match s {
            "3" => MessageType::CertRep,
            "17" => MessageType::RenewalReq,
            "19" => MessageType::PkcsReq,
            "20" => MessageType::CertPoll,
            "21" => MessageType::GetCert,
            "22" => MessageType::GetCrl,
            _ => return None,
        })
    }
}

/// SCEP `pkiStatus` (RFC 8894 §3.2.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PkiStatus {
    /// "0": granted.
    Success,
    /// "2": rejected, see the failInfo.
    Failure,
    /// "3": waiting for manual approval; the client polls.
    Pending,
}

impl PkiStatus {
    /// The decimal string carried in the attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            PkiStatus::Success => "0",
            PkiStatus::Failure => "2",
            PkiStatus::Pending => "3",
        }
    }

    /// Parses the attribute's decimal string.
    pub fn from_attribute(s: &str) -> Option<Self> {
        Some(match s {
            "0" => PkiStatus::Success,
            "2" => PkiStatus::Failure,
            "3" => PkiStatus::Pending,
            _ => return None,
        })
    }
}

/// SCEP `failInfo` (RFC 8894 §3.2.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailInfo {
    /// "0": unrecognized or unsupported algorithm.
    BadAlg,
    /// "1": integrity check (signature, digest, decryption) failed.
    BadMessageCheck,
    /// "2": transaction not permitted or supported (a malformed or refused request).
    BadRequest,
    /// "3": the signingTime attribute was not close enough to the system time.
    BadTime,
    /// "4": no certificate could be identified matching the provided criteria.
    BadCertId,
}

impl FailInfo {
    /// The decimal string carried in the attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            FailInfo::BadAlg => "0",
            FailInfo::BadMessageCheck => "1",
            FailInfo::BadRequest => "2",
            FailInfo::BadTime => "3",
            FailInfo::BadCertId => "4",
        }
    }

    /// Parses the attribute's decimal string.
    pub fn from_attribute(s: &str) -> Option<Self> {
        Some(match s {
            "0" => FailInfo::BadAlg,
            "1" => FailInfo::BadMessageCheck,
            "2" => FailInfo::BadRequest,
            "3" => FailInfo::BadTime,
            "4" => FailInfo::BadCertId,
            _ => return None,
        })
    }
}
