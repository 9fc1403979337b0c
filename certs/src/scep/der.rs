//! OIDs and small DER helpers shared by the SCEP CMS code.

use x509_parser::prelude::{FromDer, X509Certificate};
use yasna::models::ObjectIdentifier;

use super::ScepError;

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

/// How deep constructed BER may nest before it is refused.
const MAX_DEPTH: u32 = 64;

/// The end of the BER TLV starting at `pos`, when every length in it (and in everything nested,
/// definite or indefinite) stays inside `buf`.
fn tlv_end(buf: &[u8], mut pos: usize, depth: u32) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let id = *buf.get(pos)?;
    pos += 1;
    let constructed = id & 0x20 != 0;
    if id & 0x1f == 0x1f {
        // high tag number: base-128 continuation bytes
        for i in 0.. {
            let b = *buf.get(pos)?;
            pos += 1;
            if b & 0x80 == 0 {
                break;
            }
            if i >= 4 {
                return None;
            }
        }
    }
    let first = *buf.get(pos)?;
    pos += 1;
    if first == 0x80 {
        // indefinite: constructed only, children up to end-of-contents
        if !constructed {
            return None;
        }
        loop {
            if buf.get(pos..pos.checked_add(2)?)? == [0, 0] {
                return pos.checked_add(2);
            }
            pos = tlv_end(buf, pos, depth + 1)?;
        }
    }
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n > 8 {
            return None;
        }
        let bytes = buf.get(pos..pos.checked_add(n)?)?;
        pos += n;
        bytes.iter().try_fold(0usize, |acc, b| {
            acc.checked_mul(256)?.checked_add(usize::from(*b))
        })?
    };
    let end = pos.checked_add(len)?;
    if end > buf.len() {
        return None;
    }
    if constructed {
        let inner = &buf[..end];
        while pos < end {
            pos = tlv_end(inner, pos, depth + 1)?;
        }
    }
    Some(end)
}

/// `yasna::parse_ber` behind a guard: the input must be one BER TLV whose every length fits.
/// yasna 0.5 adds the length of an element it skips (`read_der`) to its position without a
/// check, which overflows on a length near `usize::MAX`; nothing unchecked reaches it.
pub(crate) fn parse_ber<T>(
    buf: &[u8],
    f: impl FnOnce(yasna::BERReader<'_, '_>) -> yasna::ASN1Result<T>,
) -> Option<T> {
    if tlv_end(buf, 0, 0) != Some(buf.len()) {
        return None;
    }
    yasna::parse_ber(buf, f).ok()
}

/// A DER TLV with a one-byte tag.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The content octets of one TLV whose tag is one of `tags` (short lengths and long lengths).
pub(crate) fn tlv_value(der: &[u8], tags: &[u8]) -> Option<Vec<u8>> {
    let (&tag, rest) = der.split_first()?;
    if !tags.contains(&tag) {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() == len).then(|| rest.to_vec())
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
