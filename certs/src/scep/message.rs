//! SCEP requests and answers: [`parse_request`] (server side), [`cert_rep`], and
//! [`open_cert_rep`] (client side).

use x509_parser::prelude::FromDer as _;

use super::der::{
    self, FAIL_INFO, MESSAGE_TYPE, PKI_STATUS, RECIPIENT_NONCE, SENDER_NONCE, TRANSACTION_ID, tlv,
};
use super::signed::{self, attribute, parse_signed_data, printable};
use super::{
    ContentEncryption, DigestAlgorithm, FailInfo, MessageType, PkiStatus, Ra, Rejection, RsaKey,
    ScepError, enveloped, verify_message,
};
use crate::error::Error;

pub use signed::certs_only;

/// The decrypted request inside a `pkiMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inner {
    /// PKCSReq and RenewalReq: a PKCS#10 request (DER; structure checked, not its signature:
    /// the CSR checks in [`crate::csr`] do that).
    Csr(Vec<u8>),
    /// CertPoll (GetCertInitial): `IssuerAndSubject`, both DER Names.
    IssuerAndSubject {
        /// the issuer's Name (DER)
        issuer: Vec<u8>,
        /// the requested subject's Name (DER)
        subject: Vec<u8>,
    },
    /// GetCert and GetCRL: `IssuerAndSerialNumber`.
    IssuerAndSerial {
        /// the issuer's Name (DER)
        issuer: Vec<u8>,
        /// the serial number, big-endian magnitude
        serial: Vec<u8>,
    },
}

/// Where an answer goes: the request's transaction, its senderNonce (echoed as
/// recipientNonce) and the certificate it was signed with (a SUCCESS is encrypted to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// transactionID, echoed
    pub transaction_id: String,
    /// the request's senderNonce, sent back as recipientNonce (empty when the request had none)
    pub recipient_nonce: Vec<u8>,
    /// the requester's signer certificate (DER)
    pub recipient_cert_der: Vec<u8>,
    /// the digest the request was signed with, when it is one postern knows
    pub request_digest: Option<DigestAlgorithm>,
}

/// A verified and decrypted SCEP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiMessage {
    /// PKCSReq, RenewalReq, CertPoll, GetCert or GetCRL
    pub message_type: MessageType,
    /// transactionID
    pub transaction_id: String,
    /// senderNonce
    pub sender_nonce: Vec<u8>,
    /// the certificate that signed the request (self-signed for a PKCSReq, the current
    /// certificate for a RenewalReq), DER
    pub signer_cert_der: Vec<u8>,
    /// every certificate the request included (DER)
    pub certificates: Vec<Vec<u8>>,
    /// the decrypted request
    pub inner: Inner,
    /// the content encryption the client chose
    pub content_encryption: ContentEncryption,
    /// the digest the client signed with
    pub digest: DigestAlgorithm,
    /// the signingTime attribute, when the client sent one (for a `badTime` check)
    pub signing_time: Option<time::OffsetDateTime>,
}

impl PkiMessage {
    /// Where the answer to this request goes.
    pub fn reply_to(&self) -> ReplyTo {
        ReplyTo {
            transaction_id: self.transaction_id.clone(),
            recipient_nonce: self.sender_nonce.clone(),
            recipient_cert_der: self.signer_cert_der.clone(),
            request_digest: Some(self.digest),
        }
    }
}

/// Parses, verifies and decrypts a SCEP request sent to `ra`.
///
/// # Errors
/// A [`Rejection`] with the [`ScepError`] (and so the failInfo) and, when the attributes and
/// signer could be read, the [`ReplyTo`] for a signed FAILURE answer.
pub fn parse_request(der: &[u8], ra: &Ra) -> Result<PkiMessage, Rejection> {
    let m = verify_message(der, &[])?;
    let reply_to = ReplyTo {
        transaction_id: m.transaction_id.clone(),
        recipient_nonce: m.sender_nonce.clone().unwrap_or_default(),
        recipient_cert_der: m.signer_cert_der.clone(),
        request_digest: Some(m.digest),
    };
    let reject = |error: ScepError| Rejection {
        error,
        reply_to: Some(reply_to.clone()),
    };
    if m.message_type == MessageType::CertRep {
        return Err(reject(ScepError::UnknownMessageType("3".into())));
    }
    let sender_nonce = m
        .sender_nonce
        .ok_or_else(|| reject(ScepError::MissingAttribute("senderNonce")))?;
    let content = m
        .content
        .ok_or_else(|| reject(ScepError::Malformed("pkiMessage without content")))?;
    let (plain, content_encryption) =
        enveloped::decrypt(&content, &ra.cert_der, &ra.key).map_err(reject)?;
    let inner = parse_inner(m.message_type, &plain).map_err(reject)?;
    Ok(PkiMessage {
        message_type: m.message_type,
        transaction_id: m.transaction_id,
        sender_nonce,
        signer_cert_der: m.signer_cert_der,
        certificates: m.certificates,
        inner,
        content_encryption,
        digest: m.digest,
        signing_time: m.signing_time,
    })
}

fn parse_inner(t: MessageType, der: &[u8]) -> Result<Inner, ScepError> {
    let bad = |what: &str| ScepError::InnerRequest(what.to_owned());
    match t {
        MessageType::PkcsReq | MessageType::RenewalReq => {
            let (rest, _) =
                x509_parser::certification_request::X509CertificationRequest::from_der(der)
                    .map_err(|_| bad("not a PKCS#10 certification request"))?;
            if !rest.is_empty() {
                return Err(bad("trailing data after the certification request"));
            }
            Ok(Inner::Csr(der.to_vec()))
        }
        MessageType::CertPoll => der::parse_ber(der, |r| {
            r.read_sequence(|r| {
                let issuer = r.next().read_der()?;
                let subject = r.next().read_der()?;
                Ok(Inner::IssuerAndSubject { issuer, subject })
            })
        })
        .ok_or_else(|| bad("not an IssuerAndSubject")),
        MessageType::GetCert | MessageType::GetCrl => der::parse_ber(der, |r| {
            r.read_sequence(|r| {
                let issuer = r.next().read_der()?;
                let (serial, _) = r.next().read_bigint_bytes()?;
                Ok(Inner::IssuerAndSerial { issuer, serial })
            })
        })
        .ok_or_else(|| bad("not an IssuerAndSerialNumber")),
        MessageType::CertRep => Err(ScepError::UnknownMessageType("3".into())),
    }
}

/// What a `CertRep` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// SUCCESS: the issued certificate first, then its chain (DER); CRLs (DER) for GetCRL.
    Success {
        /// certificates, the issued one first
        certificates: &'a [Vec<u8>],
        /// CRLs (GetCRL)
        crls: &'a [Vec<u8>],
    },
    /// FAILURE with a failInfo.
    Failure(FailInfo),
    /// PENDING: the client polls with CertPoll.
    Pending,
}

/// How an answer is signed and encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyOptions {
    /// SHA-256 by default; SHA-1 only for a client that knows nothing else.
    pub digest: DigestAlgorithm,
    /// AES-256-CBC by default; DES-EDE3-CBC for a client that cannot do AES. Single DES is
    /// refused.
    pub encryption: ContentEncryption,
}

impl Default for ReplyOptions {
    fn default() -> Self {
        ReplyOptions {
            digest: DigestAlgorithm::Sha256,
            encryption: ContentEncryption::Aes256Cbc,
        }
    }
}

/// Builds a `CertRep` (messageType 3) for `to`, signed by the RA with `options.digest`:
/// same transactionID, recipientNonce = the request's senderNonce, senderNonce =
/// `sender_nonce` (fresh, from the caller), pkiStatus and failInfo from `reply`; a SUCCESS
/// carries an `EnvelopedData` to the requester's certificate holding a degenerate `SignedData`
/// with the certificates and CRLs. The RA certificate is included.
///
/// # Errors
/// [`Error::Malformed`] when the requester's certificate is not RSA or does not parse (only
/// for SUCCESS), [`Error::Internal`] for single DES or when encryption fails,
/// [`Error::Key`] when signing fails.
pub fn cert_rep(
    to: &ReplyTo,
    reply: Reply<'_>,
    ra: &Ra,
    sender_nonce: &[u8],
    options: ReplyOptions,
) -> Result<Vec<u8>, Error> {
    if options.encryption == ContentEncryption::DesCbc {
        return Err(Error::Internal("single DES is not used for answers".into()));
    }
    let (status, content) = match reply {
        Reply::Success { certificates, crls } => {
            let inner = certs_only(certificates, crls);
            let env = enveloped::encrypt(&inner, &to.recipient_cert_der, options.encryption)?;
            (PkiStatus::Success, Some(env))
        }
        Reply::Failure(_) => (PkiStatus::Failure, None),
        Reply::Pending => (PkiStatus::Pending, None),
    };
    let mut attrs = vec![
        attribute(MESSAGE_TYPE, &printable(MessageType::CertRep.as_str())),
        attribute(TRANSACTION_ID, &printable(&to.transaction_id)),
        attribute(PKI_STATUS, &printable(status.as_str())),
        attribute(SENDER_NONCE, &tlv(0x04, sender_nonce)),
    ];
    if !to.recipient_nonce.is_empty() {
        attrs.push(attribute(RECIPIENT_NONCE, &tlv(0x04, &to.recipient_nonce)));
    }
    if let Reply::Failure(info) = reply {
        attrs.push(attribute(FAIL_INFO, &printable(info.as_str())));
    }
    signed::sign(
        content.as_deref(),
        &attrs,
        std::slice::from_ref(&ra.cert_der),
        &ra.key,
        &ra.cert_der,
        options.digest,
    )
}

/// A `CertRep` as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRep {
    /// transactionID
    pub transaction_id: String,
    /// pkiStatus
    pub pki_status: PkiStatus,
    /// failInfo (FAILURE)
    pub fail_info: Option<FailInfo>,
    /// senderNonce (the server's)
    pub sender_nonce: Option<Vec<u8>>,
    /// recipientNonce (the request's senderNonce)
    pub recipient_nonce: Option<Vec<u8>>,
    /// the RA certificate that signed it (DER)
    pub signer_cert_der: Vec<u8>,
    /// the signature's digest
    pub digest: DigestAlgorithm,
    /// SUCCESS: the content encryption the server chose
    pub content_encryption: Option<ContentEncryption>,
    /// SUCCESS: the certificates of the degenerate `SignedData` (DER)
    pub certificates: Vec<Vec<u8>>,
    /// SUCCESS: its CRLs (DER)
    pub crls: Vec<Vec<u8>>,
}

/// Reads a `CertRep` as the client that sent the request: verifies it (with the RA certificate
/// from `GetCACert` when the answer does not include its signer), and on SUCCESS decrypts the
/// content with the client's certificate and key.
///
/// # Errors
/// A [`Rejection`] naming the defect; a message that is not a `CertRep` or has no pkiStatus is
/// [`ScepError::BadAttribute`].
pub fn open_cert_rep(
    der: &[u8],
    ra_certs: &[Vec<u8>],
    client_cert_der: &[u8],
    client_key: &RsaKey,
) -> Result<CertRep, Rejection> {
    let m = verify_message(der, ra_certs)?;
    if m.message_type != MessageType::CertRep {
        return Err(ScepError::BadAttribute("messageType").into());
    }
    let pki_status = m
        .pki_status
        .ok_or(ScepError::MissingAttribute("pkiStatus"))?;
    let mut rep = CertRep {
        transaction_id: m.transaction_id,
        pki_status,
        fail_info: m.fail_info,
        sender_nonce: m.sender_nonce,
        recipient_nonce: m.recipient_nonce,
        signer_cert_der: m.signer_cert_der,
        digest: m.digest,
        content_encryption: None,
        certificates: Vec::new(),
        crls: Vec::new(),
    };
    if pki_status == PkiStatus::Success {
        let content = m
            .content
            .ok_or(ScepError::Malformed("SUCCESS without content"))?;
        let (plain, alg) = enveloped::decrypt(&content, client_cert_der, client_key)?;
        let sd = parse_signed_data(&plain)?;
        rep.content_encryption = Some(alg);
        rep.certificates = sd.certificates;
        rep.crls = sd.crls;
    }
    Ok(rep)
}
