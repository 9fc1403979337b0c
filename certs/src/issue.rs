//! Issuing end-entity certificates from a checked public key, a profile and names.

use std::time::Duration;

use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ca::{Issuer, truncate};
use crate::error::{Error, Result};
use crate::names::{SubjectName, encode_general_names};
use crate::profile::{ExtendedKeyUsage, KeyUsage, Profile, SubjectKeyKind};

/// How far notBefore is set back from the issuance time, for clients whose clocks run late.
pub const BACKDATE: Duration = Duration::from_secs(60);

/// Serial number length in octets: 128 random bits, minus the sign bit.
pub const SERIAL_LEN: usize = 16;

/// Where relying parties find revocation information; written into every leaf when set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributionUrls {
    /// CRL distribution point (HTTP).
    pub crl: Option<String>,
    /// OCSP responder (HTTP), written into authorityInfoAccess.
    pub ocsp: Option<String>,
    /// The issuing CA certificate (HTTP), written into authorityInfoAccess.
    pub ca_issuers: Option<String>,
}

/// One issuance.
#[derive(Debug, Clone)]
pub struct IssueRequest<'a> {
    /// The profile to apply.
    pub profile: &'a Profile,
    /// The subject's public key, DER SubjectPublicKeyInfo (from a checked CSR).
    pub spki_der: &'a [u8],
    /// The kind of that key.
    pub key_kind: SubjectKeyKind,
    /// The subject commonName, if any.
    pub common_name: Option<&'a str>,
    /// Subject alternative names.
    pub names: &'a [SubjectName],
    /// Requested validity; the profile's default when `None`.
    pub validity: Option<Duration>,
    /// The issuance time.
    pub now: OffsetDateTime,
    /// The serial number (see [`random_serial`]); unique per issuer, which the caller's store
    /// enforces.
    pub serial: &'a [u8],
    /// CRL and OCSP locations.
    pub urls: &'a DistributionUrls,
}

/// An issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// DER certificate.
    pub der: Vec<u8>,
    /// Serial number octets (positive, no sign octet).
    pub serial: Vec<u8>,
    /// notBefore
    pub not_before: OffsetDateTime,
    /// notAfter
    pub not_after: OffsetDateTime,
}

impl Issued {
    /// PEM text of the certificate.
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.der.clone()))
    }
}

/// A fresh random serial: [`SERIAL_LEN`] octets, positive, first octet non-zero so the
/// encoding length is fixed.
///
/// # Errors
/// [`Error::Internal`] when the system RNG fails.
pub fn random_serial() -> Result<Vec<u8>> {
    use ring::rand::SecureRandom as _;
    let rng = ring::rand::SystemRandom::new();
    let mut s = vec![0u8; SERIAL_LEN];
    rng.fill(&mut s)
        .map_err(|_| Error::Internal("system rng failed".into()))?;
    s[0] = (s[0] & 0x7f) | 0x01;
    Ok(s)
}

/// Checks that a profile allows these names and this key.
///
/// # Errors
/// [`Error::Profile`] naming the first name or key the profile does not allow.
pub fn check_request(
    profile: &Profile,
    key_kind: SubjectKeyKind,
    names: &[SubjectName],
) -> Result<()> {
    if !profile.allows_key(key_kind) {
        return Err(Error::profile(
            &profile.name,
            format!("key type {key_kind:?} is not allowed"),
        ));
    }
    if profile.require_name && names.is_empty() {
        return Err(Error::profile(
            &profile.name,
            "at least one subject alternative name is required",
        ));
    }
    for n in names {
        n.validate()?;
        let allowed = match n {
            SubjectName::Dns(_) => profile.names.dns,
            SubjectName::Ip(_) => profile.names.ip,
            SubjectName::Email(_) => profile.names.email,
            SubjectName::PermanentIdentifier(_) => profile.names.permanent_identifier,
            SubjectName::Uri(_) => n
                .uri_scheme()
                .is_some_and(|s| profile.names.uri_schemes.iter().any(|a| a == &s)),
        };
        if !allowed {
            return Err(Error::profile(
                &profile.name,
                format!("name {n} is not allowed by this profile"),
            ));
        }
    }
    Ok(())
}

const OID_SAN: [u64; 4] = [2, 5, 29, 17];
const OID_AIA: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 1, 1];
const OID_OCSP_NOCHECK: [u64; 10] = [1, 3, 6, 1, 5, 5, 7, 48, 1, 5];
const OID_AD_OCSP: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 48, 1];
const OID_AD_CA_ISSUERS: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 48, 2];

/// Issues a certificate.
///
/// # Errors
/// [`Error::Profile`] when the profile refuses the key, a name or the validity;
/// [`Error::Ca`] when the issuer has expired; [`Error::Internal`] when signing fails.
pub fn issue(issuer: &Issuer, req: &IssueRequest<'_>) -> Result<Issued> {
    let profile = req.profile;
    check_request(profile, req.key_kind, req.names)?;
    let validity = req.validity.unwrap_or(profile.default_validity);
    if validity.is_zero() || validity > profile.max_validity {
        return Err(Error::profile(
            &profile.name,
            format!(
                "validity of {}s is outside (0, {}s]",
                validity.as_secs(),
                profile.max_validity.as_secs()
            ),
        ));
    }
    if req.serial.is_empty() || req.serial.len() > 20 || req.serial[0] & 0x80 != 0 {
        return Err(Error::Internal(
            "serial must be 1..=20 positive octets".into(),
        ));
    }
    let ca = issuer.certificate();
    let mut not_before = truncate(req.now) - BACKDATE;
    if not_before < ca.not_before() {
        not_before = ca.not_before();
    }
    let mut not_after = not_before + validity;
    if not_after > ca.not_after() {
        not_after = ca.not_after();
    }
    if not_after <= truncate(req.now) {
        return Err(Error::Ca("the issuing CA has expired".into()));
    }

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(cn) = req.common_name.filter(|c| !c.is_empty()) {
        if cn.len() > 64 {
            return Err(Error::profile(
                &profile.name,
                "commonName longer than 64 characters",
            ));
        }
        dn.push(DnType::CommonName, cn);
    }
    let subject_empty = req.common_name.is_none_or(str::is_empty);
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(req.serial));
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = profile
        .key_usages
        .iter()
        .map(|k| match k {
            KeyUsage::DigitalSignature => KeyUsagePurpose::DigitalSignature,
            KeyUsage::KeyEncipherment => KeyUsagePurpose::KeyEncipherment,
            KeyUsage::KeyAgreement => KeyUsagePurpose::KeyAgreement,
        })
        .collect();
    params.extended_key_usages = profile
        .extended_key_usages
        .iter()
        .map(|e| match e {
            ExtendedKeyUsage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsage::OcspSigning => ExtendedKeyUsagePurpose::OcspSigning,
            ExtendedKeyUsage::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
        })
        .collect();
    if !req.names.is_empty() {
        let mut san = CustomExtension::from_oid_content(&OID_SAN, encode_general_names(req.names));
        // RFC 5280 §4.2.1.6: critical when the subject is empty
        san.set_criticality(subject_empty);
        params.custom_extensions.push(san);
    } else if subject_empty {
        return Err(Error::profile(
            &profile.name,
            "a certificate needs a commonName or a subject alternative name",
        ));
    }
    if let Some(crl) = &req.urls.crl {
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: vec![crl.clone()],
        }];
    }
    let ocsp = req.urls.ocsp.as_ref().filter(|_| !profile.ocsp_nocheck);
    if ocsp.is_some() || req.urls.ca_issuers.is_some() {
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &OID_AIA,
                encode_aia(ocsp.map(String::as_str), req.urls.ca_issuers.as_deref()),
            ));
    }
    if profile.ocsp_nocheck {
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &OID_OCSP_NOCHECK,
                vec![0x05, 0x00],
            ));
    }

    let subject_key = rcgen::SubjectPublicKeyInfo::from_der(req.spki_der)
        .map_err(|e| Error::profile(&profile.name, format!("subject key: {e}")))?;
    let cert = params.signed_by(&subject_key, issuer.rcgen())?;
    Ok(Issued {
        der: cert.der().to_vec(),
        serial: req.serial.to_vec(),
        not_before,
        not_after,
    })
}

/// rcgen rebuilds the issuer name from one value per attribute type; a CA whose subject
/// repeats a type would yield leaves whose issuer matches no CA. Refuse rather than emit them.
pub(crate) fn check_issuer_name(leaf_der: &[u8], ca_der: &[u8]) -> Result<()> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|e| Error::Internal(e.to_string()))?;
    let (_, ca) = X509Certificate::from_der(ca_der).map_err(|e| Error::Internal(e.to_string()))?;
    if leaf.issuer().as_raw() != ca.subject().as_raw() {
        return Err(Error::Ca(
            "the issuing CA's subject cannot be reproduced exactly (repeated or multi-valued attributes)".into(),
        ));
    }
    Ok(())
}

fn encode_aia(ocsp: Option<&str>, ca_issuers: Option<&str>) -> Vec<u8> {
    use yasna::models::ObjectIdentifier as Oid;
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            for (oid, url) in [
                (&OID_AD_OCSP[..], ocsp),
                (&OID_AD_CA_ISSUERS[..], ca_issuers),
            ] {
                if let Some(url) = url {
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&Oid::from_slice(oid));
                        w.next().write_tagged_implicit(yasna::Tag::context(6), |w| {
                            w.write_ia5_string(url)
                        });
                    });
                }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::tests::test_issuer;
    use crate::csr;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn csr_for(alg: &'static rcgen::SignatureAlgorithm, sans: &[&str]) -> csr::CheckedCsr {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        csr::check(params.serialize_request(&key).unwrap().der()).unwrap()
    }

    fn issue_with(
        issuer: &Issuer,
        profile: &str,
        names: &[SubjectName],
        c: &csr::CheckedCsr,
    ) -> Result<Issued> {
        let p = Profile::builtin(profile).unwrap();
        let serial = random_serial().unwrap();
        let urls = DistributionUrls {
            crl: Some("http://127.0.0.1:8080/pki/crl".into()),
            ocsp: Some("http://127.0.0.1:8080/pki/ocsp".into()),
            ca_issuers: None,
        };
        issue(
            issuer,
            &IssueRequest {
                profile: &p,
                spki_der: &c.spki_der,
                key_kind: c.key_kind,
                common_name: Some("subject"),
                names,
                validity: None,
                now: OffsetDateTime::now_utc(),
                serial: &serial,
                urls: &urls,
            },
        )
    }

    #[test]
    fn every_profile_issues_a_certificate_that_verifies() {
        let (issuer, _) = test_issuer();
        let cases: [(&str, Vec<SubjectName>); 6] = [
            (
                "device-identity",
                vec![SubjectName::PermanentIdentifier("C02XK0AAJGH5".into())],
            ),
            (
                "messaging-identity",
                vec![
                    SubjectName::Uri("tel:+4915112345678".into()),
                    SubjectName::Uri("urn:postern:device:abc".into()),
                ],
            ),
            ("tls-server", vec![SubjectName::Dns("localhost".into())]),
            (
                "gateway-client",
                vec![SubjectName::Uri("urn:postern:gateway:default:gw-1".into())],
            ),
            ("ocsp-signer", vec![]),
            ("profile-signing", vec![]),
        ];
        for (profile, names) in cases {
            let c = csr_for(&rcgen::PKCS_ECDSA_P256_SHA256, &[]);
            let issued = issue_with(&issuer, profile, &names, &c).unwrap();
            let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
            let (_, ca) = X509Certificate::from_der(issuer.certificate().der()).unwrap();
            cert.verify_signature(Some(ca.public_key())).unwrap();
            assert_eq!(cert.raw_serial(), issued.serial.as_slice());
            assert!(cert.validity().not_after <= ca.validity().not_after);
            let has = |oid: &str| {
                cert.extensions()
                    .iter()
                    .any(|e| e.oid.to_id_string() == oid)
            };
            assert!(has("2.5.29.14"), "{profile}: subjectKeyIdentifier");
            assert!(has("2.5.29.35"), "{profile}: authorityKeyIdentifier");
            assert!(has("2.5.29.31"), "{profile}: cRLDistributionPoints");
            assert_eq!(has("1.3.6.1.5.5.7.48.1.5"), profile == "ocsp-signer");
            let ku = cert.key_usage().unwrap().unwrap().value;
            assert!(ku.digital_signature());
            assert!(!ku.key_cert_sign());
            if profile == "messaging-identity" {
                assert!(cert.extended_key_usage().unwrap().is_none());
                assert!(!ku.key_encipherment() && !ku.non_repudiation());
            }
            if profile == "gateway-client" {
                let eku = cert.extended_key_usage().unwrap().unwrap().value;
                assert!(eku.client_auth && !eku.server_auth && !eku.any && eku.other.is_empty());
                assert!(!ku.key_encipherment() && !ku.key_agreement());
            }
            if profile == "profile-signing" {
                let eku = cert.extended_key_usage().unwrap().unwrap().value;
                assert!(eku.email_protection && !eku.client_auth && !eku.server_auth && !eku.any);
                assert!(!ku.key_encipherment() && !ku.key_agreement());
            }
            if profile == "ocsp-signer" {
                assert!(
                    cert.extended_key_usage()
                        .unwrap()
                        .unwrap()
                        .value
                        .ocsp_signing
                );
            }
        }
    }

    #[test]
    fn profiles_refuse_foreign_names_and_long_validity() {
        let (issuer, _) = test_issuer();
        let c = csr_for(&rcgen::PKCS_ECDSA_P256_SHA256, &[]);
        let err = issue_with(
            &issuer,
            "tls-server",
            &[SubjectName::Uri("tel:+1555".into())],
            &c,
        );
        assert!(matches!(err, Err(Error::Profile { .. })));
        let err = issue_with(
            &issuer,
            "messaging-identity",
            &[SubjectName::Dns("a.example".into())],
            &c,
        );
        assert!(matches!(err, Err(Error::Profile { .. })));
        let err = issue_with(&issuer, "device-identity", &[], &c);
        assert!(matches!(err, Err(Error::Profile { .. })));
        let p = Profile::builtin("messaging-identity").unwrap();
        let serial = random_serial().unwrap();
        let r = issue(
            &issuer,
            &IssueRequest {
                profile: &p,
                spki_der: &c.spki_der,
                key_kind: c.key_kind,
                common_name: None,
                names: &[SubjectName::Uri("tel:+4915112345678".into())],
                validity: Some(Duration::from_secs(31 * 86_400)),
                now: OffsetDateTime::now_utc(),
                serial: &serial,
                urls: &DistributionUrls::default(),
            },
        );
        assert!(matches!(r, Err(Error::Profile { .. })));
    }

    #[test]
    fn serials_are_positive_and_distinct() {
        let a = random_serial().unwrap();
        let b = random_serial().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), SERIAL_LEN);
        assert!(a[0] & 0x80 == 0 && a[0] != 0);
    }

    #[test]
    fn permanent_identifier_san_is_in_the_certificate() {
        let (issuer, _) = test_issuer();
        let c = csr_for(&rcgen::PKCS_ED25519, &[]);
        let names = [SubjectName::PermanentIdentifier(
            "00008030-001A2B3C4D5E6F70".into(),
        )];
        let issued = issue_with(&issuer, "device-identity", &names, &c).unwrap();
        let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let back = crate::names::from_x509_general_names(&san.value.general_names).unwrap();
        assert_eq!(back, names);
    }
}
