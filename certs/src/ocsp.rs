//! OCSP (RFC 6960): reading requests and signing responses.
//!
//! [`parse_request`] reads a DER `OCSPRequest` strictly (definite lengths, minimal encodings,
//! no trailing data) and never panics, whatever the bytes. [`build_response`] signs a
//! `BasicOCSPResponse` with a responder's [`Signer`]: either the issuing CA itself or a
//! delegated responder certificate (id-kp-OCSPSigning) issued by that CA.
//! [`error_response`] gives the unsigned answers for requests that cannot be served.
//!
//! Times are taken as arguments and written as UTC `GeneralizedTime` in whole seconds.

use time::{OffsetDateTime, UtcOffset};
use x509_parser::prelude::{FromDer, X509Certificate};
use yasna::models::{GeneralizedTime, ObjectIdentifier};
use yasna::{DERWriter, Tag};

use crate::crl::RevocationReason;
use crate::error::{Error, Result};
use crate::signer::Signer;

/// The most certificate ids one request may ask about.
const MAX_CERT_IDS: usize = 16;

/// The longest nonce extension value accepted: a 128-octet nonce (RFC 9654 §2.1) inside its
/// two-octet OCTET STRING header.
const MAX_NONCE_EXTN_VALUE: usize = 130;

/// id-pkix-ocsp-nonce (1.3.6.1.5.5.7.48.1.2), DER contents.
const OID_NONCE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];
const ARCS_NONCE: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 2];
/// id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1).
const ARCS_BASIC: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 1];

const TAG_BOOLEAN: u8 = 0x01;
const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// Context-specific, constructed `[n]` (EXPLICIT tags and IMPLICIT constructed types).
const fn ctx(n: u8) -> u8 {
    0xa0 | n
}

/// The hash algorithm of a [`CertId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-1, still the default of most clients (OpenSSL included).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    const ALL: [HashAlg; 4] = [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ];

    /// The algorithm's OID as DER contents (what follows the tag and length).
    fn oid_der(self) -> &'static [u8] {
        match self {
            HashAlg::Sha1 => &[0x2b, 0x0e, 0x03, 0x02, 0x1a],
            HashAlg::Sha256 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01],
            HashAlg::Sha384 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02],
            HashAlg::Sha512 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03],
        }
    }

    fn oid_arcs(self) -> &'static [u64] {
        match self {
            HashAlg::Sha1 => &[1, 3, 14, 3, 2, 26],
            HashAlg::Sha256 => &[2, 16, 840, 1, 101, 3, 4, 2, 1],
            HashAlg::Sha384 => &[2, 16, 840, 1, 101, 3, 4, 2, 2],
            HashAlg::Sha512 => &[2, 16, 840, 1, 101, 3, 4, 2, 3],
        }
    }

    fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            HashAlg::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlg::Sha256 => &ring::digest::SHA256,
            HashAlg::Sha384 => &ring::digest::SHA384,
            HashAlg::Sha512 => &ring::digest::SHA512,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        ring::digest::digest(self.ring(), data).as_ref().to_vec()
    }

    fn from_oid_der(oid: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.oid_der() == oid)
    }
}

/// Identifies one certificate in a request or a response (RFC 6960 §4.1.1 `CertID`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertId {
    /// The hash algorithm of the two hashes.
    pub hash_alg: HashAlg,
    /// Hash of the issuer's subject name (its DER encoding).
    pub issuer_name_hash: Vec<u8>,
    /// Hash of the issuer's public key (the SPKI BIT STRING contents).
    pub issuer_key_hash: Vec<u8>,
    /// The certificate's serial number: unsigned big-endian bytes, leading zeros stripped
    /// (zero is `[0]`).
    pub serial: Vec<u8>,
}

impl CertId {
    /// Whether this id names a certificate issued by the CA whose DER certificate is
    /// `issuer_cert_der`: both hashes are recomputed with `self.hash_alg` and compared.
    /// Bytes that are not a certificate match nothing.
    pub fn matches_issuer(&self, issuer_cert_der: &[u8]) -> bool {
        let Ok((_, cert)) = X509Certificate::from_der(issuer_cert_der) else {
            return false;
        };
        self.hash_alg.digest(cert.subject().as_raw()) == self.issuer_name_hash
            && self
                .hash_alg
                .digest(&cert.public_key().subject_public_key.data)
                == self.issuer_key_hash
    }
}

/// What a client asked: the certificates and the nonce to echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspRequest {
    /// The certificates asked about (1 to 16).
    pub cert_ids: Vec<CertId>,
    /// The nonce extension's `extnValue` contents (normally a DER OCTET STRING holding the
    /// nonce), exactly what must be echoed in the response.
    pub nonce: Option<Vec<u8>>,
}

/// Reads a DER `OCSPRequest`.
///
/// A signed request is accepted and its signature ignored; the requestor name is ignored.
/// Only the nonce extension is understood; other non-critical extensions are ignored.
///
/// # Errors
/// [`Error::Malformed`] when the bytes are not exactly one DER `OCSPRequest`, when the
/// request lists no certificate or more than 16, names a hash algorithm other than SHA-1,
/// SHA-256, SHA-384 or SHA-512 (or gives it parameters other than NULL, or hashes of another
/// length), carries a negative serial number, an empty nonce, a nonce value longer than 130
/// octets, a repeated extension, or a critical extension other than the nonce.
pub fn parse_request(der: &[u8]) -> Result<OcspRequest> {
    read_request(der).map_err(|reason| Error::malformed("ocsp request", reason))
}

/// The status of one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Not revoked.
    Good,
    /// Revoked at `at`, for `reason` when known (an [`Unspecified`](RevocationReason::Unspecified)
    /// reason is written as no reason).
    Revoked {
        /// When the CA processed the revocation.
        at: OffsetDateTime,
        /// Why.
        reason: Option<RevocationReason>,
    },
    /// The responder knows nothing of this certificate.
    Unknown,
}

/// The answer about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleResponse {
    /// The certificate, as the request named it.
    pub cert_id: CertId,
    /// Its status.
    pub status: CertStatus,
    /// When the status was known to be correct.
    pub this_update: OffsetDateTime,
    /// When newer information will be available; after `this_update`.
    pub next_update: Option<OffsetDateTime>,
}

/// What goes into a signed OCSP response.
#[derive(Debug, Clone, Copy)]
pub struct ResponseParams<'a> {
    /// The responder's DER certificate: the issuing CA or a delegated OCSP signer.
    pub responder_cert_der: &'a [u8],
    /// The key of `responder_cert_der`.
    pub responder_key: &'a dyn Signer,
    /// When the response is signed.
    pub produced_at: OffsetDateTime,
    /// One answer per certificate asked about (at least one).
    pub responses: &'a [SingleResponse],
    /// The request's nonce, as [`OcspRequest::nonce`] holds it, to echo.
    pub nonce: Option<&'a [u8]>,
}

/// Builds and signs a successful `OCSPResponse` holding an id-pkix-ocsp-basic
/// `BasicOCSPResponse`.
///
/// The responder is identified by key (SHA-1 of its public key bits), the responder
/// certificate is included in `certs`, and the nonce, when given, is echoed as a
/// non-critical response extension.
///
/// # Errors
/// - [`Error::Malformed`] when `responder_cert_der` is not a single DER certificate;
/// - [`Error::Ca`] when there are no single responses, `responder_key` does not match the
///   responder certificate, a certificate id's hashes do not have its algorithm's length, a
///   `next_update` is not after its `this_update`, or a time is beyond year 9999 in UTC;
/// - [`Error::Key`] when the signer fails.
pub fn build_response(params: &ResponseParams<'_>) -> Result<Vec<u8>> {
    if params.responses.is_empty() {
        return Err(Error::Ca(
            "an ocsp response needs at least one single response".into(),
        ));
    }
    let (rest, responder) = X509Certificate::from_der(params.responder_cert_der)
        .map_err(|e| Error::malformed("responder certificate", e))?;
    if !rest.is_empty() {
        return Err(Error::malformed("responder certificate", "trailing data"));
    }
    let key_bits: &[u8] = &responder.public_key().subject_public_key.data;
    if key_bits != params.responder_key.public_key_raw() {
        return Err(Error::Ca(
            "the ocsp signing key does not match the responder certificate".into(),
        ));
    }
    let key_hash = HashAlg::Sha1.digest(key_bits);
    let produced_at = generalized_time(params.produced_at, "producedAt")?;
    let singles = params
        .responses
        .iter()
        .map(Prepared::new)
        .collect::<Result<Vec<_>>>()?;

    let tbs = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            // version v1 is the DEFAULT and so left out
            w.next()
                .write_tagged(Tag::context(2), |w| w.write_bytes(&key_hash));
            w.next().write_generalized_time(&produced_at);
            w.next().write_sequence(|w| {
                for single in &singles {
                    single.write(w.next());
                }
            });
            if let Some(nonce) = params.nonce {
                w.next().write_tagged(Tag::context(1), |w| {
                    w.write_sequence(|w| {
                        w.next().write_sequence(|w| {
                            w.next()
                                .write_oid(&ObjectIdentifier::from_slice(ARCS_NONCE));
                            w.next().write_bytes(nonce);
                        })
                    })
                });
            }
        })
    });
    let signature = params.responder_key.sign(&tbs)?;
    let algorithm = params.responder_key.algorithm().signature_algorithm_der();
    let basic = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(&tbs);
            w.next().write_der(&algorithm);
            w.next().write_bitvec_bytes(&signature, signature.len() * 8);
            w.next().write_tagged(Tag::context(0), |w| {
                w.write_sequence(|w| w.next().write_der(params.responder_cert_der))
            });
        })
    });
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_enum(0); // successful
            w.next().write_tagged(Tag::context(0), |w| {
                w.write_sequence(|w| {
                    w.next()
                        .write_oid(&ObjectIdentifier::from_slice(ARCS_BASIC));
                    w.next().write_bytes(&basic);
                })
            });
        })
    }))
}

/// The unsuccessful `OCSPResponseStatus` values (RFC 6960 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OcspResponseStatus {
    /// The request does not conform to the OCSP syntax.
    MalformedRequest = 1,
    /// The responder reached an inconsistent internal state.
    InternalError = 2,
    /// The responder cannot answer now; the client may try again later.
    TryLater = 3,
    /// The request must be signed.
    SigRequired = 5,
    /// The client may not query this responder.
    Unauthorized = 6,
}

/// An unsigned `OCSPResponse` carrying only an error status.
pub fn error_response(status: OcspResponseStatus) -> Vec<u8> {
    yasna::construct_der(|w| w.write_sequence(|w| w.next().write_enum(status as i64)))
}

/// A [`SingleResponse`] with its times converted and checked.
struct Prepared<'a> {
    cert_id: &'a CertId,
    status: PreparedStatus,
    this_update: GeneralizedTime,
    next_update: Option<GeneralizedTime>,
}

enum PreparedStatus {
    Good,
    Revoked {
        at: GeneralizedTime,
        reason: Option<RevocationReason>,
    },
    Unknown,
}

impl<'a> Prepared<'a> {
    fn new(single: &'a SingleResponse) -> Result<Self> {
        let id = &single.cert_id;
        let len = id.hash_alg.ring().output_len();
        if id.issuer_name_hash.len() != len || id.issuer_key_hash.len() != len {
            return Err(Error::Ca(
                "a certificate id's hashes do not match its hash algorithm".into(),
            ));
        }
        let this_update = generalized_time(single.this_update, "thisUpdate")?;
        let next_update = match single.next_update {
            Some(next) => {
                let converted = generalized_time(next, "nextUpdate")?;
                if converted.datetime() <= this_update.datetime() {
                    return Err(Error::Ca(format!(
                        "ocsp nextUpdate ({next}) must be after thisUpdate ({})",
                        single.this_update
                    )));
                }
                Some(converted)
            }
            None => None,
        };
        let status = match single.status {
            CertStatus::Good => PreparedStatus::Good,
            CertStatus::Revoked { at, reason } => PreparedStatus::Revoked {
                at: generalized_time(at, "revocationTime")?,
                reason: reason.filter(|r| *r != RevocationReason::Unspecified),
            },
            CertStatus::Unknown => PreparedStatus::Unknown,
        };
        Ok(Prepared {
            cert_id: id,
            status,
            this_update,
            next_update,
        })
    }

    fn write(&self, w: DERWriter<'_>) {
        w.write_sequence(|w| {
            write_cert_id(w.next(), self.cert_id);
            match &self.status {
                PreparedStatus::Good => w
                    .next()
                    .write_tagged_implicit(Tag::context(0), |w| w.write_null()),
                PreparedStatus::Revoked { at, reason } => {
                    w.next().write_tagged_implicit(Tag::context(1), |w| {
                        w.write_sequence(|w| {
                            w.next().write_generalized_time(at);
                            if let Some(reason) = reason {
                                w.next().write_tagged(Tag::context(0), |w| {
                                    w.write_enum(i64::from(reason.code()))
                                });
                            }
                        })
                    });
                }
                PreparedStatus::Unknown => w
                    .next()
                    .write_tagged_implicit(Tag::context(2), |w| w.write_null()),
            }
            w.next().write_generalized_time(&self.this_update);
            if let Some(next) = &self.next_update {
                w.next()
                    .write_tagged(Tag::context(0), |w| w.write_generalized_time(next));
            }
        });
    }
}

fn write_cert_id(w: DERWriter<'_>, id: &CertId) {
    w.write_sequence(|w| {
        w.next().write_sequence(|w| {
            w.next()
                .write_oid(&ObjectIdentifier::from_slice(id.hash_alg.oid_arcs()));
            w.next().write_null();
        });
        w.next().write_bytes(&id.issuer_name_hash);
        w.next().write_bytes(&id.issuer_key_hash);
        w.next().write_bigint_bytes(&id.serial, true);
    });
}

/// UTC, whole seconds, year 0 to 9999.
fn generalized_time(t: OffsetDateTime, field: &str) -> Result<GeneralizedTime> {
    t.checked_to_offset(UtcOffset::UTC)
        .and_then(|utc| utc.replace_nanosecond(0).ok())
        .and_then(GeneralizedTime::from_datetime_opt)
        .ok_or_else(|| Error::Ca(format!("ocsp {field} {t} is out of range")))
}

// ---------------------------------------------------------------------------------------------
// Reading DER

type Parsed<T> = std::result::Result<T, String>;

/// A cursor over DER elements; every read is bounds-checked.
#[derive(Debug, Clone, Copy)]
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads one element: its identifier octet and its contents.
    fn any(&mut self) -> Parsed<(u8, &'a [u8])> {
        let (&tag, rest) = self.rest.split_first().ok_or("unexpected end of data")?;
        if tag & 0x1f == 0x1f {
            return Err(format!("unsupported tag 0x{tag:02x}"));
        }
        let (&first, mut rest) = rest.split_first().ok_or("truncated length")?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err("indefinite length is not der".into());
            }
            if n > 4 {
                return Err("length too large".into());
            }
            let (bytes, after) = rest.split_at_checked(n).ok_or("truncated length")?;
            rest = after;
            if bytes.first() == Some(&0) {
                return Err("length is not minimally encoded".into());
            }
            // at most four octets: fits in u32
            let len = bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
            if len < 0x80 {
                return Err("length is not minimally encoded".into());
            }
            usize::try_from(len).map_err(|_| "length too large")?
        };
        let (contents, rest) = rest.split_at_checked(len).ok_or("truncated contents")?;
        self.rest = rest;
        Ok((tag, contents))
    }

    /// Reads an element that must have identifier `tag`.
    fn expect(&mut self, tag: u8, what: &str) -> Parsed<&'a [u8]> {
        match self.peek() {
            Some(t) if t == tag => Ok(self.any()?.1),
            Some(t) => Err(format!("{what}: unexpected tag 0x{t:02x}")),
            None => Err(format!("{what}: missing")),
        }
    }

    /// Reads an element with identifier `tag` if it comes next.
    fn optional(&mut self, tag: u8) -> Parsed<Option<&'a [u8]>> {
        if self.peek() == Some(tag) {
            Ok(Some(self.any()?.1))
        } else {
            Ok(None)
        }
    }

    fn finish(&self, what: &str) -> Parsed<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(format!("{what}: unexpected trailing data"))
        }
    }
}

/// The contents of the single element with identifier `tag` that `contents` must hold.
fn only<'a>(contents: &'a [u8], tag: u8, what: &str) -> Parsed<&'a [u8]> {
    let mut r = Reader::new(contents);
    let inner = r.expect(tag, what)?;
    r.finish(what)?;
    Ok(inner)
}

fn read_request(der: &[u8]) -> Parsed<OcspRequest> {
    let request = only(der, TAG_SEQUENCE, "ocsprequest")?;
    let mut request = Reader::new(request);
    let tbs = request.expect(TAG_SEQUENCE, "tbsrequest")?;
    if let Some(signature) = request.optional(ctx(0))? {
        // accepted and ignored, but it must still be one well-formed element
        only(signature, TAG_SEQUENCE, "signature")?;
    }
    request.finish("ocsprequest")?;

    let mut tbs = Reader::new(tbs);
    if let Some(version) = tbs.optional(ctx(0))?
        && only(version, TAG_INTEGER, "version")? != [0]
    {
        return Err("unsupported request version".into());
    }
    if let Some(name) = tbs.optional(ctx(1))? {
        let mut name = Reader::new(name);
        name.any()?;
        name.finish("requestorname")?;
    }
    let list = tbs.expect(TAG_SEQUENCE, "requestlist")?;
    let mut nonce = None;
    if let Some(exts) = tbs.optional(ctx(2))? {
        for ext in read_extensions(exts)? {
            if ext.oid == OID_NONCE {
                if ext.value.is_empty() {
                    return Err("empty nonce".into());
                }
                if ext.value.len() > MAX_NONCE_EXTN_VALUE {
                    return Err(format!(
                        "nonce extension value of {} octets is longer than {MAX_NONCE_EXTN_VALUE}",
                        ext.value.len()
                    ));
                }
                nonce = Some(ext.value.to_vec());
            } else if ext.critical {
                return Err(format!(
                    "unsupported critical request extension {}",
                    oid_string(ext.oid)
                ));
            }
        }
    }
    tbs.finish("tbsrequest")?;

    let mut list = Reader::new(list);
    let mut cert_ids = Vec::new();
    while !list.is_empty() {
        if cert_ids.len() == MAX_CERT_IDS {
            return Err(format!("more than {MAX_CERT_IDS} certificates requested"));
        }
        let mut single = Reader::new(list.expect(TAG_SEQUENCE, "request")?);
        cert_ids.push(read_cert_id(single.expect(TAG_SEQUENCE, "certid")?)?);
        if let Some(exts) = single.optional(ctx(0))?
            && let Some(ext) = read_extensions(exts)?.into_iter().find(|e| e.critical)
        {
            return Err(format!(
                "unsupported critical single request extension {}",
                oid_string(ext.oid)
            ));
        }
        single.finish("request")?;
    }
    if cert_ids.is_empty() {
        return Err("no certificate requested".into());
    }
    Ok(OcspRequest { cert_ids, nonce })
}

fn read_cert_id(contents: &[u8]) -> Parsed<CertId> {
    let mut r = Reader::new(contents);
    let mut alg = Reader::new(r.expect(TAG_SEQUENCE, "hashalgorithm")?);
    let oid = alg.expect(TAG_OID, "hashalgorithm")?;
    if let Some(params) = alg.optional(TAG_NULL)?
        && !params.is_empty()
    {
        return Err("hashalgorithm: invalid null".into());
    }
    alg.finish("hashalgorithm")?;
    let hash_alg = HashAlg::from_oid_der(oid)
        .ok_or_else(|| format!("unsupported hash algorithm {}", oid_string(oid)))?;
    let issuer_name_hash = r.expect(TAG_OCTET_STRING, "issuernamehash")?.to_vec();
    let issuer_key_hash = r.expect(TAG_OCTET_STRING, "issuerkeyhash")?.to_vec();
    let len = hash_alg.ring().output_len();
    if issuer_name_hash.len() != len || issuer_key_hash.len() != len {
        return Err("certid hashes do not match the hash algorithm's length".into());
    }
    let serial = read_serial(r.expect(TAG_INTEGER, "serialnumber")?)?;
    r.finish("certid")?;
    Ok(CertId {
        hash_alg,
        issuer_name_hash,
        issuer_key_hash,
        serial,
    })
}

/// An INTEGER's contents as unsigned bytes without leading zeros (zero is `[0]`).
fn read_serial(contents: &[u8]) -> Parsed<Vec<u8>> {
    match contents {
        [] => Err("serialnumber: empty integer".into()),
        [first, ..] if first & 0x80 != 0 => Err("negative serial number".into()),
        [0, second, ..] if second & 0x80 == 0 => {
            Err("serialnumber: integer is not minimally encoded".into())
        }
        _ => {
            let start = contents
                .iter()
                .position(|b| *b != 0)
                .unwrap_or(contents.len() - 1);
            Ok(contents[start..].to_vec())
        }
    }
}

struct Extension<'a> {
    oid: &'a [u8],
    critical: bool,
    value: &'a [u8],
}

/// Reads `Extensions` from the contents of its EXPLICIT tag.
fn read_extensions(tagged: &[u8]) -> Parsed<Vec<Extension<'_>>> {
    let mut list = Reader::new(only(tagged, TAG_SEQUENCE, "extensions")?);
    let mut out: Vec<Extension<'_>> = Vec::new();
    while !list.is_empty() {
        let mut ext = Reader::new(list.expect(TAG_SEQUENCE, "extension")?);
        let oid = ext.expect(TAG_OID, "extnid")?;
        if !valid_oid(oid) {
            return Err("extnid: invalid object identifier".into());
        }
        let critical = match ext.optional(TAG_BOOLEAN)? {
            None => false,
            Some([0x00]) => false,
            Some([0xff]) => true,
            Some(_) => return Err("critical: invalid boolean".into()),
        };
        let value = ext.expect(TAG_OCTET_STRING, "extnvalue")?;
        ext.finish("extension")?;
        if out.iter().any(|e| e.oid == oid) {
            return Err(format!("extension {} appears twice", oid_string(oid)));
        }
        out.push(Extension {
            oid,
            critical,
            value,
        });
    }
    if out.is_empty() {
        return Err("empty extensions".into());
    }
    Ok(out)
}

fn valid_oid(contents: &[u8]) -> bool {
    contents.last().is_some_and(|b| b & 0x80 == 0)
}

/// Dotted form of an OID's DER contents, for error messages.
fn oid_string(contents: &[u8]) -> String {
    if !valid_oid(contents) {
        return "(invalid oid)".into();
    }
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for b in contents {
        acc = match acc.checked_mul(128) {
            Some(v) => v | u64::from(b & 0x7f),
            None => return "(oversized oid)".into(),
        };
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests;
