//! Small DER/BER helpers shared by the CMS code (SCEP here, signed profiles in
//! `postern-profiles`): TLV encoding, `IssuerAndSerialNumber`, and yasna parsing behind a
//! length guard.
//!
//! yasna 0.5 adds the length of an element it skips (`read_der`, `read_tagged_der`, optional
//! fields) to its position without a check: a length near `usize::MAX` panics in a debug build
//! and wraps in a release build. [`parse_ber`] and [`parse_der`] first walk the input and refuse
//! any length that does not fit, so nothing unchecked reaches yasna.

use x509_parser::prelude::{FromDer, X509Certificate};
use yasna::{ASN1Error, ASN1ErrorKind, ASN1Result, BERReader};

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

/// Whether `buf` is one BER TLV whose every length, nested ones included, fits inside it.
pub fn well_formed(buf: &[u8]) -> bool {
    tlv_end(buf, 0, 0) == Some(buf.len())
}

/// `yasna::parse_ber` behind the length guard.
///
/// # Errors
/// yasna's error, or `Invalid` when a length does not fit.
pub fn parse_ber<T>(
    buf: &[u8],
    f: impl FnOnce(BERReader<'_, '_>) -> ASN1Result<T>,
) -> ASN1Result<T> {
    if !well_formed(buf) {
        return Err(ASN1Error::new(ASN1ErrorKind::Invalid));
    }
    yasna::parse_ber(buf, f)
}

/// `yasna::parse_der` behind the length guard.
///
/// # Errors
/// yasna's error, or `Invalid` when a length does not fit.
pub fn parse_der<T>(
    buf: &[u8],
    f: impl FnOnce(BERReader<'_, '_>) -> ASN1Result<T>,
) -> ASN1Result<T> {
    if !well_formed(buf) {
        return Err(ASN1Error::new(ASN1ErrorKind::Invalid));
    }
    yasna::parse_der(buf, f)
}

/// A DER TLV with a one-byte tag.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
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
pub fn tlv_value(der: &[u8], tags: &[u8]) -> Option<Vec<u8>> {
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

/// The DER `IssuerAndSerialNumber` (RFC 5652 §10.2.4) of a certificate; `None` when it does not
/// parse.
pub fn issuer_and_serial(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let mut content = cert.tbs_certificate.issuer.as_raw().to_vec();
    content.extend_from_slice(&tlv(0x02, cert.tbs_certificate.raw_serial()));
    Some(tlv(0x30, &content))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_guard_refuses_lengths_that_do_not_fit() {
        for (input, ok) in [
            (&b"\x04\x00"[..], true),
            (b"\x30\x03\x02\x01\x01", true),
            (b"\x30\x80\x04\x01\x41\x00\x00", true),
            (b"\x24\x80\x04\x01\x41\x04\x01\x42\x00\x00", true),
            (b"\x1f\x81\x01\x00", true),
            (b"", false),
            (b"\x30", false),
            (b"\x30\x04\x02\x01\x01", false),
            (b"\x30\x03\x02\x01\x01\x00", false),
            (b"\x30\x03\x02\x05\x01", false),
            (b"\x04\x80\x00\x00", false),
            (b"\x30\x80\x04\x01\x41", false),
            (b"\x30\x88\xff\xff\xff\xff\xff\xff\xff\xff", false),
            (b"\x30\x89\x01\x00\x00\x00\x00\x00\x00\x00\x00", false),
        ] {
            assert_eq!(well_formed(input), ok, "{input:02x?}");
        }
        let mut deep = Vec::new();
        for _ in 0..(MAX_DEPTH + 2) {
            deep.extend([0x30, 0x80]);
        }
        deep.extend(std::iter::repeat_n(0, 2 * (MAX_DEPTH as usize + 2)));
        assert!(!well_formed(&deep));
        let mut huge = vec![0x30, 0x0c, 0x30, 0x88];
        huge.extend([0xff; 8]);
        assert!(parse_der(&huge, |r| r.read_sequence(|r| r.next().read_der())).is_err());
    }

    #[test]
    fn tlv_round_trips() {
        for n in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let t = tlv(0x04, &vec![7; n]);
            assert!(well_formed(&t));
            assert_eq!(tlv_value(&t, &[0x04]).unwrap().len(), n);
            assert_eq!(tlv_value(&t, &[0x30]), None);
        }
    }
}
