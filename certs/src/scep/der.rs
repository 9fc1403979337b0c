//! OIDs and small DER helpers shared by the SCEP CMS code.

use x509_parser::prelude::{FromDer, X509Certificate};
use yasna::models::ObjectIdentifier;

use super::ScepError;
pub(crate) use crate::der::{tlv, tlv_value};

pub(crate) const DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];
pub(crate) const SIGNED_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 2];
pub(crate) const ENVELOPED_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 3];
pub(crate) const CONTENT_TYPE: &[u64] = &[1, 2, 840, 113549, 1, 9, 3];
pub(crate) const MESSAGE_DIGEST: &[u64] = &[1, 2, 840, 113549, 1, 9, 4];
pub(crate) const SIGNING_TIME: &[u64] = &[1, 2, 840, 113549, 1, 9, 5];
pub(crate) const RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];

// SCEP attributes, id-attributes 2.16.840.1.113733.1.9.x
pub(crate) const MESSAGE_TYPE: &[u64] = &[2, 16, 840, 1, 113733, 1, 9, 2];
pub(crate) const PKI_STATUS: &[u64] = &[2, 16, 840, 1, 113733, 1, 9, 3];
pub(crate) const FAIL_INFO: &[u64] = &[2, 16, 840, 1, 113733, 1, 9, 4];
pub(crate) const SENDER_NONCE: &[u64] = &[2, 16, 840, 1, 113733, 1, 9, 5];
pub(crate) const RECIPIENT_NONCE: &[u64] = &[2, 16, 840, 1, 113733, 1, 9, 6];
pub(crate) const TRANSACTION_ID: &[u64] = &[2, 16, 840, 1, 113733, 1, 9, 7];

pub(crate) fn oid(o: &[u64]) -> ObjectIdentifier {
    ObjectIdentifier::from_slice(o)
}

/// `crate::der::parse_ber`, for callers that only need to know whether it parsed.
pub(crate) fn parse_ber<T>(
    buf: &[u8],
    f: impl FnOnce(yasna::BERReader<'_, '_>) -> yasna::ASN1Result<T>,
) -> Option<T> {
    crate::der::parse_ber(buf, f).ok()
}

/// A parsed certificate's identifiers: DER `IssuerAndSerialNumber`, subject key identifier
/// (when the extension is present), SPKI (DER) and public key bits.
pub(crate) struct CertIds {
    pub(crate) issuer_and_serial: Vec<u8>,
    pub(crate) ski: Option<Vec<u8>>,
    pub(crate) spki: Vec<u8>,
    pub(crate) key_algorithm: String,
    pub(crate) public_key: Vec<u8>,
}

pub(crate) fn cert_ids(cert_der: &[u8]) -> Result<CertIds, ScepError> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|_| ScepError::Malformed("certificate"))?;
    let mut content = cert.tbs_certificate.issuer.as_raw().to_vec();
    content.extend_from_slice(&tlv(0x02, cert.tbs_certificate.raw_serial()));
    let ski = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        });
    let key = cert.public_key();
    Ok(CertIds {
        issuer_and_serial: tlv(0x30, &content),
        ski,
        spki: key.raw.to_vec(),
        key_algorithm: key.algorithm.algorithm.to_id_string(),
        public_key: key.subject_public_key.data.to_vec(),
    })
}

/// An `AlgorithmIdentifier` with NULL parameters, DER.
pub(crate) fn algorithm_null(o: &[u64]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&oid(o));
            w.next().write_null();
        })
    })
}

/// Dotted form of an OID, for error messages.
pub(crate) fn dotted(o: &ObjectIdentifier) -> String {
    o.components()
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}
