//! Certificate revocation lists (RFC 5280 §5).
//!
//! [`build_crl`] signs a v2 CRL for an issuing CA with the CA's [`Signer`]. The CRL carries the
//! extensions RFC 5280 §5.2 requires of conforming issuers (Authority Key Identifier equal to
//! the issuer's Subject Key Identifier, and a CRL number) and a reason code on each entry
//! whose reason is not [`RevocationReason::Unspecified`] (§5.3.1: the extension "SHOULD be
//! absent instead of using the unspecified (0) reasonCode value").
//!
//! Times are taken as arguments, converted to UTC and truncated to whole seconds.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::{OffsetDateTime, UtcOffset};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Error, Result};
use crate::signer::{RcgenKey, Signer};

/// Why a certificate was revoked: the RFC 5280 `CRLReason` (§5.3.1).
///
/// Serialized (serde) and displayed as the camelCase name of the variant, for instance
/// `keyCompromise` or `caCompromise`; see [`RevocationReason::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RevocationReason {
    /// `unspecified (0)`.
    Unspecified,
    /// `keyCompromise (1)`.
    KeyCompromise,
    /// `cACompromise (2)`.
    CaCompromise,
    /// `affiliationChanged (3)`.
    AffiliationChanged,
    /// `superseded (4)`.
    Superseded,
    /// `cessationOfOperation (5)`.
    CessationOfOperation,
    /// `certificateHold (6)`.
    CertificateHold,
    /// `removeFromCRL (8)`; used only in delta CRLs, so [`build_crl`] refuses it.
    RemoveFromCrl,
    /// `privilegeWithdrawn (9)`.
    PrivilegeWithdrawn,
    /// `aACompromise (10)`.
    AaCompromise,
}

impl RevocationReason {
    /// Every reason, in code order.
    const ALL: [RevocationReason; 10] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
        RevocationReason::RemoveFromCrl,
        RevocationReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise,
    ];

    /// The `CRLReason` code (`0..=10`, 7 is unused).
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::RemoveFromCrl => 8,
            RevocationReason::PrivilegeWithdrawn => 9,
            RevocationReason::AaCompromise => 10,
        }
    }

    /// The camelCase name, identical to the serde form: `unspecified`, `keyCompromise`,
    /// `caCompromise`, `affiliationChanged`, `superseded`, `cessationOfOperation`,
    /// `certificateHold`, `removeFromCrl`, `privilegeWithdrawn`, `aaCompromise`.
    ///
    /// These are the RFC 5280 names, except that the RFC spells three of them with capital
    /// acronyms (`cACompromise`, `removeFromCRL`, `aACompromise`); [`FromStr`] accepts both.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keyCompromise",
            RevocationReason::CaCompromise => "caCompromise",
            RevocationReason::AffiliationChanged => "affiliationChanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationOfOperation",
            RevocationReason::CertificateHold => "certificateHold",
            RevocationReason::RemoveFromCrl => "removeFromCrl",
            RevocationReason::PrivilegeWithdrawn => "privilegeWithdrawn",
            RevocationReason::AaCompromise => "aaCompromise",
        }
    }

    /// The reason with this `CRLReason` code, or `None` for 7 and codes above 10.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    fn to_rcgen(self) -> rcgen::RevocationReason {
        match self {
            RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
            RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            RevocationReason::CaCompromise => rcgen::RevocationReason::CaCompromise,
            RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
            RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
            RevocationReason::CertificateHold => rcgen::RevocationReason::CertificateHold,
            RevocationReason::RemoveFromCrl => rcgen::RevocationReason::RemoveFromCrl,
            RevocationReason::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
            RevocationReason::AaCompromise => rcgen::RevocationReason::AaCompromise,
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevocationReason {
    type Err = Error;

    /// Accepts the camelCase names in any case (`keyCompromise`, `KEYCOMPROMISE`,
    /// `cACompromise`) and the kebab-case and snake_case forms (`key-compromise`,
    /// `key_compromise`).
    fn from_str(s: &str) -> Result<Self> {
        let wanted: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if !wanted.is_empty() {
            for reason in Self::ALL {
                if reason.as_str().eq_ignore_ascii_case(&wanted) {
                    return Ok(reason);
                }
            }
        }
        Err(Error::malformed(
            "revocation reason",
            format!(
                "unknown revocation reason {s:?} (expected one of {})",
                Self::ALL.map(Self::as_str).join(", ")
            ),
        ))
    }
}

/// One revoked certificate, as listed in a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The certificate's serial number: big-endian unsigned bytes, without a leading sign
    /// byte. Leading zero bytes are ignored.
    pub serial: Vec<u8>,
    /// When the CA processed the revocation.
    pub revoked_at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// What goes into a CRL besides the issuer.
#[derive(Debug, Clone, Copy)]
pub struct CrlParams<'a> {
    /// The CRL number: monotonically increasing for the issuer.
    pub crl_number: u64,
    /// The issue date of this CRL.
    pub this_update: OffsetDateTime,
    /// The date by which the next CRL will be issued; must be after `this_update`.
    pub next_update: OffsetDateTime,
    /// The revoked certificates (may be empty).
    pub entries: &'a [RevokedEntry],
}

/// Builds and signs a v2 CRL for the issuer whose DER certificate is `issuer_cert_der`.
///
/// The CRL's issuer name is the issuer certificate's subject, its Authority Key Identifier
/// is the issuer's Subject Key Identifier (or, when the issuer certificate has none, the
/// SHA-1 hash of its public key as in RFC 5280 §4.2.1.2 method 1), and the signature is
/// checked against the issuer certificate's key before the CRL is returned.
///
/// # Errors
/// - [`Error::Malformed`] when `issuer_cert_der` is not a single DER certificate;
/// - [`Error::Ca`] when `next_update` is not after `this_update`, a time cannot be expressed
///   in a CRL (beyond year 9999 in UTC), an entry has an empty, zero or repeated serial
///   number or the reason [`RevocationReason::RemoveFromCrl`] (delta CRLs only),
///   `issuer_key` does not match the issuer certificate, the issuer's key usage does not
///   allow `cRLSign`, or the issuer's subject name cannot be reproduced exactly;
/// - [`Error::Internal`] when the encoder or the signer fails, or the signature does not
///   verify.
pub fn build_crl(
    issuer_cert_der: &[u8],
    issuer_key: &dyn Signer,
    params: &CrlParams<'_>,
) -> Result<Vec<u8>> {
    let (rest, issuer) = X509Certificate::from_der(issuer_cert_der)
        .map_err(|e| Error::malformed("issuer certificate", e))?;
    if !rest.is_empty() {
        return Err(Error::malformed("issuer certificate", "trailing data"));
    }
    let issuer_key_bits: &[u8] = &issuer.public_key().subject_public_key.data;
    if issuer_key_bits != issuer_key.public_key_raw() {
        return Err(Error::Ca(
            "the crl signing key does not match the issuer certificate".into(),
        ));
    }
    if let Some(ku) = issuer
        .key_usage()
        .map_err(|e| Error::malformed("issuer certificate", e))?
        && !ku.value.crl_sign()
    {
        return Err(Error::Ca(
            "the issuer certificate's key usage does not allow crl signing".into(),
        ));
    }

    let this_update = crl_time(params.this_update, "thisUpdate")?;
    let next_update = crl_time(params.next_update, "nextUpdate")?;
    if next_update <= this_update {
        return Err(Error::Ca(format!(
            "crl nextUpdate ({next_update}) must be after thisUpdate ({this_update})"
        )));
    }

    let mut seen = HashSet::with_capacity(params.entries.len());
    let mut revoked_certs = Vec::with_capacity(params.entries.len());
    for entry in params.entries {
        let serial = strip_leading_zeros(&entry.serial);
        if serial.is_empty() {
            return Err(Error::Ca(
                "a revoked entry has an empty or zero serial number".into(),
            ));
        }
        if entry.reason == RevocationReason::RemoveFromCrl {
            return Err(Error::Ca(format!(
                "serial number {}: removeFromCRL is only used in delta crls (rfc 5280 §5.3.1)",
                hex(serial)
            )));
        }
        if !seen.insert(serial) {
            return Err(Error::Ca(format!(
                "serial number {} is listed twice",
                hex(serial)
            )));
        }
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(serial),
            revocation_time: crl_time(entry.revoked_at, "revocationDate")?,
            // rcgen leaves out the reasonCode extension for `Unspecified` (RFC 5280 §5.3.1)
            reason_code: Some(entry.reason.to_rcgen()),
            invalidity_date: None,
        });
    }

    let key_id = match issuer
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0.to_vec()),
            _ => None,
        }) {
        Some(ski) => ski,
        None => ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, issuer_key_bits)
            .as_ref()
            .to_vec(),
    };

    let crl_params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(params.crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::PreSpecified(key_id),
    };
    let rcgen_issuer =
        rcgen::Issuer::from_ca_cert_der(&issuer_cert_der.into(), RcgenKey(issuer_key)).map_err(
            |e| match e {
                rcgen::Error::CouldNotParseCertificate => Error::Ca(
                    "the issuer's subject name uses attributes that cannot be reproduced \
                     (multi-valued or unsupported string types)"
                        .into(),
                ),
                other => other.into(),
            },
        )?;
    let crl = crl_params.signed_by(&rcgen_issuer)?;
    let der = crl.der().to_vec();

    // The name is re-encoded from its parsed form, which merges repeated attribute types;
    // a CRL whose issuer differs from the certificate's subject would match no certificate.
    let (_, parsed) = x509_parser::parse_x509_crl(&der)
        .map_err(|e| Error::Internal(format!("the built crl does not parse: {e}")))?;
    if parsed.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(Error::Ca(
            "the issuer's subject name cannot be reproduced exactly in a crl \
             (repeated attribute types)"
                .into(),
        ));
    }
    parsed
        .verify_signature(issuer.public_key())
        .map_err(|e| Error::Internal(format!("the crl signature does not verify: {e}")))?;
    Ok(der)
}

/// Converts to UTC and truncates to whole seconds; refuses times a CRL cannot carry.
fn crl_time(t: OffsetDateTime, field: &str) -> Result<OffsetDateTime> {
    let utc = t
        .checked_to_offset(UtcOffset::UTC)
        .filter(|u| (0..=9999).contains(&u.year()))
        .ok_or_else(|| Error::Ca(format!("crl {field} {t} is out of range")))?;
    utc.replace_nanosecond(0)
        .map_err(|e| Error::Internal(format!("time: {e}")))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
// a failed unwrap is a failed test
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyUsagePurpose,
    };
    use time::macros::datetime;
    use x509_parser::prelude::{X509Version, parse_x509_crl};

    use super::*;
    use crate::signer::{KeyAlgorithm, KeySigner, generate};

    fn key() -> KeySigner {
        KeySigner::from_pkcs8(generate(KeyAlgorithm::EcdsaP256).unwrap().as_der()).unwrap()
    }

    fn ca_params(key_usages: Vec<KeyUsagePurpose>, is_ca: IsCa) -> CertificateParams {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Postern Test");
        dn.push(DnType::CommonName, "Postern Test Issuing CA");
        p.distinguished_name = dn;
        p.is_ca = is_ca;
        p.key_usages = key_usages;
        p.not_before = datetime!(2024-01-01 0:00 UTC);
        p.not_after = datetime!(2040-01-01 0:00 UTC);
        p
    }

    fn ca(key: &KeySigner) -> Vec<u8> {
        ca_params(
            vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ],
            IsCa::Ca(BasicConstraints::Constrained(0)),
        )
        .self_signed(&RcgenKey(key))
        .unwrap()
        .der()
        .to_vec()
    }

    fn entries() -> Vec<RevokedEntry> {
        vec![
            RevokedEntry {
                serial: vec![0x01, 0x02, 0x03],
                revoked_at: datetime!(2025-03-01 10:00:00.75 UTC),
                reason: RevocationReason::KeyCompromise,
            },
            RevokedEntry {
                // high bit set: encoded with a leading 0x00
                serial: vec![0x00, 0x80, 0xff, 0x10],
                revoked_at: datetime!(2025-03-02 12:30 +02:00),
                reason: RevocationReason::Unspecified,
            },
        ]
    }

    fn params(entries: &[RevokedEntry]) -> CrlParams<'_> {
        CrlParams {
            crl_number: 42,
            this_update: datetime!(2025-03-03 0:00 UTC),
            next_update: datetime!(2025-03-10 0:00 UTC),
            entries,
        }
    }

    fn ski(cert: &X509Certificate<'_>) -> Vec<u8> {
        cert.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .unwrap()
    }

    fn aki(crl: &x509_parser::revocation_list::CertificateRevocationList<'_>) -> Vec<u8> {
        crl.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    Some(a.key_identifier.as_ref().unwrap().0.to_vec())
                }
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn crl_parses_back_and_verifies() {
        let key = key();
        let ca_der = ca(&key);
        let entries = entries();
        let der = build_crl(&ca_der, &key, &params(&entries)).unwrap();

        let (rest, crl) = parse_x509_crl(&der).unwrap();
        assert!(rest.is_empty());
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        crl.verify_signature(ca_cert.public_key()).unwrap();
        assert_eq!(crl.version(), Some(X509Version::V2));
        assert_eq!(crl.issuer().as_raw(), ca_cert.subject().as_raw());
        assert_eq!(crl.crl_number().unwrap(), &42u32.into());
        assert_eq!(aki(&crl), ski(&ca_cert));
        assert_eq!(
            crl.last_update().to_datetime(),
            datetime!(2025-03-03 0:00 UTC)
        );
        assert_eq!(
            crl.next_update().unwrap().to_datetime(),
            datetime!(2025-03-10 0:00 UTC)
        );

        let revoked: Vec<_> = crl.iter_revoked_certificates().collect();
        assert_eq!(revoked.len(), 2);
        assert_eq!(revoked[0].raw_serial(), [0x01, 0x02, 0x03]);
        assert_eq!(
            revoked[0].revocation_date.to_datetime(),
            datetime!(2025-03-01 10:00 UTC)
        );
        assert_eq!(revoked[0].reason_code().unwrap().1.0, 1);
        assert!(
            !revoked[0].reason_code().unwrap().0,
            "reasonCode is not critical"
        );
        assert_eq!(revoked[1].raw_serial(), [0x00, 0x80, 0xff, 0x10]);
        assert_eq!(
            revoked[1].revocation_date.to_datetime(),
            datetime!(2025-03-02 10:30 UTC)
        );
        assert!(
            revoked[1].reason_code().is_none(),
            "unspecified is left out"
        );
        assert!(revoked[1].extensions().is_empty());
    }

    #[test]
    fn empty_crl_has_no_revoked_list() {
        let key = key();
        let ca_der = ca(&key);
        let der = build_crl(&ca_der, &key, &params(&[])).unwrap();
        let (_, crl) = parse_x509_crl(&der).unwrap();
        assert_eq!(crl.iter_revoked_certificates().count(), 0);
        assert_eq!(crl.crl_number().unwrap(), &42u32.into());
    }

    #[test]
    fn issuer_without_ski_gets_sha1_key_id() {
        let key = key();
        let ca_der = ca_params(vec![KeyUsagePurpose::CrlSign], IsCa::NoCa)
            .self_signed(&RcgenKey(&key))
            .unwrap()
            .der()
            .to_vec();
        let der = build_crl(&ca_der, &key, &params(&[])).unwrap();
        let (_, crl) = parse_x509_crl(&der).unwrap();
        let want = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            key.public_key_raw(),
        );
        assert_eq!(aki(&crl), want.as_ref());
    }

    #[test]
    fn refusals() {
        let key = key();
        let ca_der = ca(&key);
        let entries = entries();

        let mut p = params(&entries);
        p.next_update = p.this_update;
        assert!(matches!(build_crl(&ca_der, &key, &p), Err(Error::Ca(_))));
        p.next_update = p.this_update - time::Duration::SECOND;
        assert!(matches!(build_crl(&ca_der, &key, &p), Err(Error::Ca(_))));
        // equal once truncated to seconds
        p.next_update = p.this_update + time::Duration::milliseconds(500);
        assert!(matches!(build_crl(&ca_der, &key, &p), Err(Error::Ca(_))));

        // beyond year 9999 once in UTC: refused, not a panic
        let mut p = params(&[]);
        p.next_update = datetime!(9999-12-31 23:00 -05:00);
        assert!(matches!(build_crl(&ca_der, &key, &p), Err(Error::Ca(_))));

        let other = super::tests::key();
        assert!(matches!(
            build_crl(&ca_der, &other, &params(&entries)),
            Err(Error::Ca(_))
        ));

        let dup = vec![entries[0].clone(), entries[0].clone()];
        assert!(matches!(
            build_crl(&ca_der, &key, &params(&dup)),
            Err(Error::Ca(_))
        ));
        let mut remove = entries[0].clone();
        remove.reason = RevocationReason::RemoveFromCrl;
        assert!(matches!(
            build_crl(&ca_der, &key, &params(&[remove])),
            Err(Error::Ca(_))
        ));
        let mut zero = entries[0].clone();
        zero.serial = vec![0, 0];
        assert!(matches!(
            build_crl(&ca_der, &key, &params(&[zero])),
            Err(Error::Ca(_))
        ));

        let no_crl_sign = ca_params(
            vec![KeyUsagePurpose::KeyCertSign],
            IsCa::Ca(BasicConstraints::Unconstrained),
        )
        .self_signed(&RcgenKey(&key))
        .unwrap()
        .der()
        .to_vec();
        assert!(matches!(
            build_crl(&no_crl_sign, &key, &params(&entries)),
            Err(Error::Ca(_))
        ));

        assert!(matches!(
            build_crl(b"", &key, &params(&entries)),
            Err(Error::Malformed { .. })
        ));
        let mut trailing = ca_der.clone();
        trailing.push(0);
        assert!(matches!(
            build_crl(&trailing, &key, &params(&entries)),
            Err(Error::Malformed { .. })
        ));
        for len in 0..ca_der.len() {
            assert!(build_crl(&ca_der[..len], &key, &params(&entries)).is_err());
        }
    }

    #[test]
    fn repeated_name_attributes_are_refused_not_mangled() {
        // DC=example, DC=com, CN=Repeated: rcgen keeps one attribute per type
        let key = key();
        let name = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                for (oid, value) in [
                    (&[0, 9, 2342, 19200300, 100, 1, 25][..], "example"),
                    (&[0, 9, 2342, 19200300, 100, 1, 25][..], "com"),
                    (&[2, 5, 4, 3][..], "Repeated"),
                ] {
                    w.next().write_set(|w| {
                        w.next().write_sequence(|w| {
                            w.next()
                                .write_oid(&yasna::models::ObjectIdentifier::from_slice(oid));
                            w.next().write_utf8_string(value);
                        })
                    });
                }
            })
        });
        // rcgen cannot hold this name, so sign a certificate for a placeholder name and
        // splice the raw name in (subject and issuer, as it is self-signed)
        let mut p = ca_params(
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
            IsCa::Ca(BasicConstraints::Unconstrained),
        );
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "X");
        let placeholder = p.self_signed(&RcgenKey(&key)).unwrap().der().to_vec();
        let (_, cert) = X509Certificate::from_der(&placeholder).unwrap();
        let tbs = replace_all(
            cert.tbs_certificate.as_ref(),
            cert.subject().as_raw(),
            &name,
        );
        let tbs = rewrap_sequence(&tbs);
        let sig = key.sign(&tbs).unwrap();
        let cert_der = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_der(&tbs);
                w.next()
                    .write_der(&KeyAlgorithm::EcdsaP256.signature_algorithm_der());
                w.next().write_bitvec_bytes(&sig, sig.len() * 8);
            })
        });
        let (_, spliced) = X509Certificate::from_der(&cert_der).unwrap();
        assert_eq!(spliced.subject().as_raw(), name.as_slice());
        spliced.verify_signature(None).unwrap();
        match build_crl(&cert_der, &key, &params(&[])) {
            Err(Error::Ca(msg)) => assert!(msg.contains("repeated attribute types"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    fn replace_all(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < hay.len() {
            if hay[i..].starts_with(needle) {
                out.extend_from_slice(with);
                i += needle.len();
            } else {
                out.push(hay[i]);
                i += 1;
            }
        }
        out
    }

    /// Re-encodes the outer SEQUENCE header after its contents changed length.
    fn rewrap_sequence(der: &[u8]) -> Vec<u8> {
        let header = if der[1] & 0x80 == 0 {
            2
        } else {
            2 + usize::from(der[1] & 0x7f)
        };
        let body = &der[header..];
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                let mut rest = body;
                while !rest.is_empty() {
                    let len = tlv_len(rest);
                    w.next().write_der(&rest[..len]);
                    rest = &rest[len..];
                }
            })
        })
    }

    fn tlv_len(der: &[u8]) -> usize {
        if der[1] & 0x80 == 0 {
            2 + usize::from(der[1])
        } else {
            let n = usize::from(der[1] & 0x7f);
            let len = der[2..2 + n]
                .iter()
                .fold(0usize, |a, b| (a << 8) | usize::from(*b));
            2 + n + len
        }
    }

    #[test]
    fn reason_names_and_codes() {
        for r in RevocationReason::ALL {
            assert_eq!(RevocationReason::from_code(r.code()), Some(r));
            assert_eq!(r.as_str().parse::<RevocationReason>().unwrap(), r);
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
            assert_eq!(r.to_string(), r.as_str());
            assert_eq!(r.to_rcgen() as u8, r.code());
        }
        assert_eq!(RevocationReason::from_code(7), None);
        assert_eq!(RevocationReason::from_code(11), None);
        assert_eq!(RevocationReason::from_code(255), None);
        for (s, want) in [
            ("keyCompromise", RevocationReason::KeyCompromise),
            ("KEYCOMPROMISE", RevocationReason::KeyCompromise),
            ("key-compromise", RevocationReason::KeyCompromise),
            ("key_compromise", RevocationReason::KeyCompromise),
            ("cACompromise", RevocationReason::CaCompromise),
            ("ca-compromise", RevocationReason::CaCompromise),
            ("removeFromCRL", RevocationReason::RemoveFromCrl),
            ("remove_from_crl", RevocationReason::RemoveFromCrl),
            ("aACompromise", RevocationReason::AaCompromise),
            (
                "cessation-of-operation",
                RevocationReason::CessationOfOperation,
            ),
            ("Superseded", RevocationReason::Superseded),
        ] {
            assert_eq!(s.parse::<RevocationReason>().unwrap(), want, "{s}");
        }
        for bad in [
            "",
            "-",
            "compromise",
            "key compromise",
            "1",
            "keyCompromised",
        ] {
            assert!(matches!(
                bad.parse::<RevocationReason>(),
                Err(Error::Malformed { .. })
            ));
        }
    }

    #[test]
    fn openssl_verifies_the_crl() {
        if Command::new("openssl").arg("version").output().is_err() {
            crate::peer_missing("openssl not found on PATH; skipping the openssl crl check");
            return;
        }
        let key = key();
        let ca_der = ca(&key);
        let entries = entries();
        let der = build_crl(&ca_der, &key, &params(&entries)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let crl_path = dir.path().join("ca.crl");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&crl_path, &der).unwrap();
        std::fs::write(&ca_path, pem::encode(&pem::Pem::new("CERTIFICATE", ca_der))).unwrap();
        let out = openssl(&[
            "crl",
            "-inform",
            "DER",
            "-in",
            path(&crl_path),
            "-CAfile",
            path(&ca_path),
            "-noout",
        ]);
        assert!(out.contains("verify OK"), "{out}");

        let text = openssl(&[
            "crl",
            "-inform",
            "DER",
            "-in",
            path(&crl_path),
            "-noout",
            "-text",
        ]);
        assert!(text.contains("Version 2"), "{text}");
        assert!(text.contains("X509v3 CRL Number"), "{text}");
        assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
        assert!(text.contains("Key Compromise"), "{text}");
        assert!(text.contains("Serial Number: 010203"), "{text}");
        // openssl prints the magnitude, without the 0x00 sign octet
        assert!(text.contains("Serial Number: 80FF10"), "{text}");
    }

    fn path(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    fn openssl(args: &[&str]) -> String {
        let out = Command::new("openssl").args(args).output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "openssl {args:?} failed: {all}");
        all
    }
}
