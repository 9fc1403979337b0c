//! CMS `SignedData` as SCEP uses it: one signer, RSA PKCS#1 v1.5, signed attributes carrying
//! the SCEP attributes; and the degenerate (certificates-only) form.

use yasna::models::ObjectIdentifier;
use yasna::{ASN1Error, ASN1ErrorKind, BERReader, Tag};

use super::der::{
    self, CONTENT_TYPE, DATA, FAIL_INFO, MESSAGE_DIGEST, MESSAGE_TYPE, PKI_STATUS, RECIPIENT_NONCE,
    RSA_ENCRYPTION, SENDER_NONCE, SIGNED_DATA, SIGNING_TIME, TRANSACTION_ID, cert_ids, oid, tlv,
    tlv_value,
};
use super::{FailInfo, MessageType, PkiStatus, Rejection, ReplyTo, RsaKey, ScepError};
use crate::error::Error;

/// The digest of a SCEP signature (and its messageDigest attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DigestAlgorithm {
    /// SHA-1: old clients (macOS before 10.14, NDES defaults). Accepted; answered only when
    /// the caller says the client knows nothing else.
    Sha1,
    /// SHA-256, the default for answers.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl DigestAlgorithm {
    const SHA1: &[u64] = &[1, 3, 14, 3, 2, 26];
    const SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
    const SHA512: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 3];

    fn from_oid(o: &ObjectIdentifier) -> Option<Self> {
        match o.components().as_slice() {
            Self::SHA1 => Some(Self::Sha1),
            Self::SHA256 => Some(Self::Sha256),
            Self::SHA512 => Some(Self::Sha512),
            _ => None,
        }
    }

    fn oid(self) -> &'static [u64] {
        match self {
            Self::Sha1 => Self::SHA1,
            Self::Sha256 => Self::SHA256,
            Self::Sha512 => Self::SHA512,
        }
    }

    /// `shaXWithRSAEncryption`.
    fn rsa_signature_oid(self) -> &'static [u64] {
        match self {
            Self::Sha1 => &[1, 2, 840, 113549, 1, 1, 5],
            Self::Sha256 => &[1, 2, 840, 113549, 1, 1, 11],
            Self::Sha512 => &[1, 2, 840, 113549, 1, 1, 13],
        }
    }

    fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            Self::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &ring::digest::SHA256,
            Self::Sha512 => &ring::digest::SHA512,
        }
    }

    fn verification(self) -> &'static dyn ring::signature::VerificationAlgorithm {
        // SCEP clients sign with RSA-1024 keys (the real macOS request does): accept them
        match self {
            Self::Sha1 => &ring::signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &ring::signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            Self::Sha512 => &ring::signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
        }
    }

    /// The DER `DigestInfo` prefix of a PKCS#1 v1.5 signature (RFC 8017 §9.2 note 1).
    pub(crate) fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Self::Sha1 => &[
                0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
                0x14,
            ],
            Self::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Self::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        ring::digest::digest(self.ring(), data).as_ref().to_vec()
    }
}

/// A SCEP `pkiMessage` whose signature verified, before its content is decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedMessage {
    /// messageType
    pub message_type: MessageType,
    /// transactionID
    pub transaction_id: String,
    /// senderNonce, when present
    pub sender_nonce: Option<Vec<u8>>,
    /// recipientNonce, when present (answers)
    pub recipient_nonce: Option<Vec<u8>>,
    /// pkiStatus, when present (answers)
    pub pki_status: Option<PkiStatus>,
    /// failInfo, when present (FAILURE answers)
    pub fail_info: Option<FailInfo>,
    /// the signer's certificate (DER)
    pub signer_cert_der: Vec<u8>,
    /// every certificate included in the message (DER)
    pub certificates: Vec<Vec<u8>>,
    /// the signature's digest
    pub digest: DigestAlgorithm,
    /// the signingTime attribute, when present: the caller compares it with its clock and
    /// answers `badTime` when it is too far off
    pub signing_time: Option<time::OffsetDateTime>,
    /// the encapsulated content (an `EnvelopedData` in SCEP), when present
    pub content: Option<Vec<u8>>,
}

fn invalid() -> ASN1Error {
    ASN1Error::new(ASN1ErrorKind::Invalid)
}

/// Reads an `AlgorithmIdentifier`, returning its OID (parameters skipped).
fn read_algorithm(r: BERReader<'_, '_>) -> Result<ObjectIdentifier, ASN1Error> {
    r.read_sequence(|r| {
        let o = r.next().read_oid()?;
        r.read_optional(|r| r.read_der())?;
        Ok(o)
    })
}

/// The parts of a `SignedData` (RFC 5652 §5.1) this layer uses.
pub(crate) struct RawSignedData {
    pub(crate) content_type: ObjectIdentifier,
    pub(crate) content: Option<Vec<u8>>,
    pub(crate) certificates: Vec<Vec<u8>>,
    pub(crate) crls: Vec<Vec<u8>>,
    pub(crate) signer_infos: Vec<Vec<u8>>,
}

/// Parses a `ContentInfo` holding a `SignedData` (BER accepted).
pub(crate) fn parse_signed_data(der: &[u8]) -> Result<RawSignedData, ScepError> {
    der::parse_ber(der, |r| {
        r.read_sequence(|r| {
            if r.next().read_oid()? != oid(SIGNED_DATA) {
                return Err(invalid());
            }
            r.next().read_tagged(Tag::context(0), |r| {
                r.read_sequence(|r| {
                    let _version = r.next().read_u64()?;
                    r.next().read_set_of(|r| read_algorithm(r).map(drop))?;
                    let (content_type, content) = r.next().read_sequence(|r| {
                        let t = r.next().read_oid()?;
                        let c = r.read_optional(|r| {
                            r.read_tagged(Tag::context(0), |r| r.read_bytes())
                        })?;
                        Ok((t, c))
                    })?;
                    let mut certificates = Vec::new();
                    let mut crls = Vec::new();
                    r.read_optional(|r| {
                        r.read_tagged_implicit(Tag::context(0), |r| {
                            r.read_set_of(|r| {
                                certificates.push(r.read_der()?);
                                Ok(())
                            })
                        })
                    })?;
                    r.read_optional(|r| {
                        r.read_tagged_implicit(Tag::context(1), |r| {
                            r.read_set_of(|r| {
                                crls.push(r.read_der()?);
                                Ok(())
                            })
                        })
                    })?;
                    let mut signer_infos = Vec::new();
                    r.next().read_set_of(|r| {
                        signer_infos.push(r.read_der()?);
                        Ok(())
                    })?;
                    Ok(RawSignedData {
                        content_type,
                        content,
                        certificates,
                        crls,
                        signer_infos,
                    })
                })
            })
        })
    })
    .ok_or(ScepError::Malformed("signed data"))
}

struct RawSignerInfo {
    sid: Vec<u8>,
    digest: ObjectIdentifier,
    /// the signed attributes as received, retagged as the SET OF they are signed as
    signed_attrs: Vec<u8>,
    signature_algorithm: ObjectIdentifier,
    signature: Vec<u8>,
}

fn parse_signer_info(der: &[u8]) -> Result<RawSignerInfo, ScepError> {
    der::parse_ber(der, |r| {
        r.read_sequence(|r| {
            let _version = r.next().read_u64()?;
            let sid = r.next().read_der()?;
            let digest = read_algorithm(r.next())?;
            let mut signed_attrs = r.next().read_der()?;
            // [0] IMPLICIT SET OF: signed as the SET (RFC 5652 §5.4), in the order received
            match signed_attrs.first_mut() {
                Some(t) if *t == 0xA0 => *t = 0x31,
                _ => return Err(invalid()),
            }
            let signature_algorithm = read_algorithm(r.next())?;
            let signature = r.next().read_bytes()?;
            r.read_optional(|r| r.read_der())?;
            Ok(RawSignerInfo {
                sid,
                digest,
                signed_attrs,
                signature_algorithm,
                signature,
            })
        })
    })
    .ok_or(ScepError::Malformed("signer info"))
}

/// An attribute's OID and its values (raw TLVs).
type RawAttribute = (ObjectIdentifier, Vec<Vec<u8>>);

/// Each attribute of a signed-attributes SET.
fn parse_attributes(set: &[u8]) -> Result<Vec<RawAttribute>, ScepError> {
    der::parse_ber(set, |r| {
        let mut out = Vec::new();
        r.read_set_of(|r| {
            out.push(r.read_sequence(|r| {
                let id = r.next().read_oid()?;
                let mut values = Vec::new();
                r.next().read_set_of(|r| {
                    values.push(r.read_der()?);
                    Ok(())
                })?;
                Ok((id, values))
            })?);
            Ok(())
        })?;
        Ok(out)
    })
    .ok_or(ScepError::Malformed("signed attributes"))
}

struct Attributes(Vec<RawAttribute>);

impl Attributes {
    /// The single value of an attribute; `Ok(None)` when absent.
    fn single(&self, id: &[u64], name: &'static str) -> Result<Option<&[u8]>, ScepError> {
        let id = oid(id);
        let mut found = self.0.iter().filter(|(o, _)| *o == id);
        match (found.next(), found.next()) {
            (None, _) => Ok(None),
            (Some((_, values)), None) if values.len() == 1 => Ok(Some(&values[0])),
            _ => Err(ScepError::BadAttribute(name)),
        }
    }

    /// A PrintableString (or UTF8String, IA5String) attribute.
    fn string(&self, id: &[u64], name: &'static str) -> Result<Option<String>, ScepError> {
        let Some(v) = self.single(id, name)? else {
            return Ok(None);
        };
        let bytes = tlv_value(v, &[0x13, 0x0C, 0x16]).ok_or(ScepError::BadAttribute(name))?;
        let s = String::from_utf8(bytes).map_err(|_| ScepError::BadAttribute(name))?;
        if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) {
            return Err(ScepError::BadAttribute(name));
        }
        Ok(Some(s))
    }

    /// An OCTET STRING attribute.
    fn octets(&self, id: &[u64], name: &'static str) -> Result<Option<Vec<u8>>, ScepError> {
        let Some(v) = self.single(id, name)? else {
            return Ok(None);
        };
        tlv_value(v, &[0x04])
            .map(Some)
            .ok_or(ScepError::BadAttribute(name))
    }

    /// A signingTime (UTCTime or GeneralizedTime) attribute.
    fn time(
        &self,
        id: &[u64],
        name: &'static str,
    ) -> Result<Option<time::OffsetDateTime>, ScepError> {
        let Some(v) = self.single(id, name)? else {
            return Ok(None);
        };
        // BER: smallstep writes UTCTime with a zone offset
        der::parse_ber(v, |r| match r.lookahead_tag()? {
            yasna::tags::TAG_UTCTIME => Ok(*r.read_utctime()?.datetime()),
            _ => Ok(*r.read_generalized_time()?.datetime()),
        })
        .map(Some)
        .ok_or(ScepError::BadAttribute(name))
    }

    fn nonce(&self, id: &[u64], name: &'static str) -> Result<Option<Vec<u8>>, ScepError> {
        let n = self.octets(id, name)?;
        if n.as_ref().is_some_and(|n| n.is_empty() || n.len() > 64) {
            return Err(ScepError::BadAttribute(name));
        }
        Ok(n)
    }
}

/// Parses and verifies a SCEP `pkiMessage`: the `SignedData` structure, the SCEP attributes,
/// contentType and messageDigest, and the RSA signature with the signer certificate found in
/// the message or, for RAs that leave it out (NDES), in `extra_certs`.
///
/// # Errors
/// A [`Rejection`] naming the defect; once the attributes and the signer are known it carries
/// the [`ReplyTo`] for a signed FAILURE answer.
pub fn verify_message(der: &[u8], extra_certs: &[Vec<u8>]) -> Result<SignedMessage, Rejection> {
    let sd = parse_signed_data(der)?;
    let [info] = <[_; 1]>::try_from(sd.signer_infos)
        .map_err(|_| ScepError::Malformed("signed data: not exactly one signer"))?;
    let info = parse_signer_info(&info)?;
    let attrs = Attributes(parse_attributes(&info.signed_attrs)?);
    let type_str = attrs
        .string(MESSAGE_TYPE, "messageType")?
        .ok_or(ScepError::MissingAttribute("messageType"))?;
    let message_type =
        MessageType::from_attribute(&type_str).ok_or(ScepError::UnknownMessageType(type_str))?;
    let transaction_id = attrs
        .string(TRANSACTION_ID, "transactionID")?
        .ok_or(ScepError::MissingAttribute("transactionID"))?;
    let sender_nonce = attrs.nonce(SENDER_NONCE, "senderNonce")?;
    let recipient_nonce = attrs.nonce(RECIPIENT_NONCE, "recipientNonce")?;
    let pki_status = match attrs.string(PKI_STATUS, "pkiStatus")? {
        Some(s) => Some(PkiStatus::from_attribute(&s).ok_or(ScepError::BadAttribute("pkiStatus"))?),
        None => None,
    };
    let fail_info = match attrs.string(FAIL_INFO, "failInfo")? {
        Some(s) => Some(FailInfo::from_attribute(&s).ok_or(ScepError::BadAttribute("failInfo"))?),
        None => None,
    };
    let signing_time = attrs.time(SIGNING_TIME, "signingTime")?;
    let signer_cert_der = find_signer(&info.sid, &sd.certificates, extra_certs)?;
    let digest = DigestAlgorithm::from_oid(&info.digest);
    let reply_to = ReplyTo {
        transaction_id: transaction_id.clone(),
        recipient_nonce: sender_nonce.clone().unwrap_or_default(),
        recipient_cert_der: signer_cert_der.clone(),
        request_digest: digest,
    };
    let reject = |error: ScepError| Rejection {
        error,
        reply_to: Some(reply_to.clone()),
    };
    let digest = digest.ok_or_else(|| {
        reject(ScepError::UnsupportedAlgorithm {
            what: "digest",
            oid: der::dotted(&info.digest),
        })
    })?;
    let sig_ok = [RSA_ENCRYPTION, digest.rsa_signature_oid()]
        .iter()
        .any(|o| info.signature_algorithm == oid(o));
    if !sig_ok {
        return Err(reject(ScepError::UnsupportedAlgorithm {
            what: "signature",
            oid: der::dotted(&info.signature_algorithm),
        }));
    }
    let content_type = attrs
        .single(CONTENT_TYPE, "contentType")
        .map_err(reject)?
        .ok_or_else(|| reject(ScepError::MissingAttribute("contentType")))?;
    let want_type = yasna::construct_der(|w| w.write_oid(&sd.content_type));
    if content_type != want_type.as_slice() {
        return Err(reject(ScepError::ContentTypeMismatch));
    }
    let message_digest = attrs
        .octets(MESSAGE_DIGEST, "messageDigest")
        .map_err(reject)?
        .ok_or_else(|| reject(ScepError::MissingAttribute("messageDigest")))?;
    if message_digest != digest.digest(sd.content.as_deref().unwrap_or_default()) {
        return Err(reject(ScepError::DigestMismatch));
    }
    let ids = cert_ids(&signer_cert_der).map_err(reject)?;
    if ids.key_algorithm != "1.2.840.113549.1.1.1" {
        return Err(reject(ScepError::UnsupportedAlgorithm {
            what: "signer key",
            oid: ids.key_algorithm,
        }));
    }
    ring::signature::UnparsedPublicKey::new(digest.verification(), &ids.public_key)
        .verify(&info.signed_attrs, &info.signature)
        .map_err(|_| reject(ScepError::Signature))?;
    Ok(SignedMessage {
        message_type,
        transaction_id,
        sender_nonce,
        recipient_nonce,
        pki_status,
        fail_info,
        signer_cert_der,
        certificates: sd.certificates,
        digest,
        signing_time,
        content: sd.content,
    })
}

/// The certificate a `SignerIdentifier` names: `IssuerAndSerialNumber` or `[0]`
/// subjectKeyIdentifier.
fn find_signer(sid: &[u8], certs: &[Vec<u8>], extra: &[Vec<u8>]) -> Result<Vec<u8>, ScepError> {
    let ski = tlv_value(sid, &[0x80]);
    certs
        .iter()
        .chain(extra)
        .find(|c| {
            cert_ids(c).is_ok_and(|ids| match &ski {
                Some(k) => ids.ski.as_ref() == Some(k),
                None => ids.issuer_and_serial == sid,
            })
        })
        .cloned()
        .ok_or(ScepError::SignerNotFound)
}

/// One `Attribute` (SEQUENCE { OID, SET { value } }), DER; `value` is a complete TLV.
pub(crate) fn attribute(id: &[u64], value: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&oid(id));
            w.next().write_set(|w| w.next().write_der(value));
        })
    })
}

/// A PrintableString TLV.
pub(crate) fn printable(s: &str) -> Vec<u8> {
    tlv(0x13, s.as_bytes())
}

/// Signs `content` (type id-data; `None` for no content) as a SCEP `SignedData` with the
/// SCEP attributes `attrs` (each from [`attribute`]), contentType and messageDigest added;
/// `certificates` are included (the signer's first).
pub(crate) fn sign(
    content: Option<&[u8]>,
    attrs: &[Vec<u8>],
    certificates: &[Vec<u8>],
    key: &RsaKey,
    signer_cert_der: &[u8],
    digest: DigestAlgorithm,
) -> Result<Vec<u8>, Error> {
    let ids = cert_ids(signer_cert_der)
        .map_err(|_| Error::malformed("signer certificate", "does not parse"))?;
    let message_digest = digest.digest(content.unwrap_or_default());
    let mut all = attrs.to_vec();
    all.push(attribute(
        CONTENT_TYPE,
        &yasna::construct_der(|w| w.write_oid(&oid(DATA))),
    ));
    all.push(attribute(MESSAGE_DIGEST, &tlv(0x04, &message_digest)));
    // DER SET OF: yasna sorts the encodings
    let signed_attrs = yasna::construct_der(|w| {
        w.write_set_of(|w| {
            for a in &all {
                w.next().write_der(a);
            }
        })
    });
    let signature = key.sign(digest, &signed_attrs)?;
    let mut embedded = signed_attrs;
    embedded[0] = 0xA0;
    let digest_alg = der::algorithm_null(digest.oid());
    let sig_alg = der::algorithm_null(digest.rsa_signature_oid());
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&oid(SIGNED_DATA));
            w.next().write_tagged(Tag::context(0), |w| {
                w.write_sequence(|w| {
                    w.next().write_u8(1);
                    w.next().write_set(|w| w.next().write_der(&digest_alg));
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(DATA));
                        if let Some(c) = content {
                            w.next().write_tagged(Tag::context(0), |w| w.write_bytes(c));
                        }
                    });
                    w.next().write_tagged_implicit(Tag::context(0), |w| {
                        w.write_set_of(|w| {
                            for c in certificates {
                                w.next().write_der(c);
                            }
                        })
                    });
                    w.next().write_set(|w| {
                        w.next().write_sequence(|w| {
                            w.next().write_u8(1);
                            w.next().write_der(&ids.issuer_and_serial);
                            w.next().write_der(&digest_alg);
                            w.next().write_der(&embedded);
                            w.next().write_der(&sig_alg);
                            w.next().write_bytes(&signature);
                        })
                    });
                })
            });
        })
    }))
}

/// A degenerate ("certs-only") PKCS#7 `SignedData`: no content, no signers, the
/// certificates (DER) and CRLs (DER) given. What `GetCACert` with several certificates and
/// `GetCRL` answer, and what a SUCCESS `CertRep` encrypts.
pub fn certs_only(certificates: &[Vec<u8>], crls: &[Vec<u8>]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&oid(SIGNED_DATA));
            w.next().write_tagged(Tag::context(0), |w| {
                w.write_sequence(|w| {
                    w.next().write_u8(1);
                    w.next().write_set(|_| {});
                    w.next().write_sequence(|w| w.next().write_oid(&oid(DATA)));
                    // SET OF in the given order (the issued certificate first): readers take
                    // the first leaf; DER's sorting would lose that order
                    if !certificates.is_empty() {
                        w.next().write_tagged_implicit(Tag::context(0), |w| {
                            w.write_set(|w| {
                                for c in certificates {
                                    w.next().write_der(c);
                                }
                            })
                        });
                    }
                    if !crls.is_empty() {
                        w.next().write_tagged_implicit(Tag::context(1), |w| {
                            w.write_set(|w| {
                                for c in crls {
                                    w.next().write_der(c);
                                }
                            })
                        });
                    }
                    w.next().write_set(|_| {});
                })
            });
        })
    })
}
