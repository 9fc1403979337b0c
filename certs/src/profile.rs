//! Certificate profiles as data: which names, key usages, extended key usages and validity
//! a certificate of each kind gets.
//!
//! The built-in profiles are [`Profile::builtin`]; an operator can define more in configuration
//! with the same fields (the type is `serde`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::signer::KeyAlgorithm;

/// The names of the built-in profiles.
pub const BUILTIN_NAMES: [&str; 7] = [
    "device-identity",
    "messaging-identity",
    "tls-server",
    "gateway-client",
    "ocsp-signer",
    "profile-signing",
    "scep-ra",
];

/// A key usage bit (RFC 5280 §4.2.1.3) that a profile may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum KeyUsage {
    /// digitalSignature
    DigitalSignature,
    /// keyEncipherment (RSA key transport only)
    KeyEncipherment,
    /// keyAgreement (ECDH)
    KeyAgreement,
}

/// An extended key usage (RFC 5280 §4.2.1.12) that a profile may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum ExtendedKeyUsage {
    /// id-kp-serverAuth
    ServerAuth,
    /// id-kp-clientAuth
    ClientAuth,
    /// id-kp-OCSPSigning
    OcspSigning,
    /// id-kp-emailProtection (S/MIME, and so CMS-signed configuration profiles)
    EmailProtection,
}

/// Which subject alternative names a profile accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AllowedNames {
    /// dNSName
    pub dns: bool,
    /// iPAddress
    pub ip: bool,
    /// rfc822Name
    pub email: bool,
    /// uniformResourceIdentifier, by scheme (`tel`, `sip`, `im`, `urn`, `https`, ...)
    pub uri_schemes: Vec<String>,
    /// the RFC 4043 permanent-identifier otherName
    pub permanent_identifier: bool,
}

/// A certificate profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The profile's name, as callers select it.
    pub name: String,
    /// Key usage bits.
    pub key_usages: Vec<KeyUsage>,
    /// Extended key usages; empty means the extension is left out.
    #[serde(default)]
    pub extended_key_usages: Vec<ExtendedKeyUsage>,
    /// Validity when the request names none.
    #[serde(with = "secs")]
    pub default_validity: Duration,
    /// The longest validity a request may ask for.
    #[serde(with = "secs")]
    pub max_validity: Duration,
    /// Which names may appear.
    pub names: AllowedNames,
    /// At least one subject alternative name is required.
    #[serde(default)]
    pub require_name: bool,
    /// Add id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1); for delegated OCSP responders.
    #[serde(default)]
    pub ocsp_nocheck: bool,
    /// The key algorithms a subject key may use; empty means every algorithm postern accepts.
    #[serde(default)]
    pub key_algorithms: Vec<SubjectKeyKind>,
}

/// The kinds of subject key postern accepts in a CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SubjectKeyKind {
    /// ECDSA on P-256
    EcdsaP256,
    /// ECDSA on P-384
    EcdsaP384,
    /// Ed25519
    Ed25519,
    /// RSA of 2048 bits or more
    Rsa,
}

impl SubjectKeyKind {
    /// The matching signing algorithm, when postern's signer supports it.
    pub fn signing_algorithm(self) -> Option<KeyAlgorithm> {
        match self {
            SubjectKeyKind::EcdsaP256 => Some(KeyAlgorithm::EcdsaP256),
            SubjectKeyKind::EcdsaP384 => Some(KeyAlgorithm::EcdsaP384),
            SubjectKeyKind::Ed25519 => Some(KeyAlgorithm::Ed25519),
            SubjectKeyKind::Rsa => Some(KeyAlgorithm::RsaSha256),
        }
    }
}

const DAY: u64 = 24 * 60 * 60;

impl Profile {
    /// A built-in profile by name.
    pub fn builtin(name: &str) -> Option<Profile> {
        let p = match name {
            "device-identity" => Profile {
                name: name.into(),
                key_usages: vec![KeyUsage::DigitalSignature],
                extended_key_usages: vec![ExtendedKeyUsage::ClientAuth],
                default_validity: Duration::from_secs(90 * DAY),
                max_validity: Duration::from_secs(398 * DAY),
                names: AllowedNames {
                    permanent_identifier: true,
                    uri_schemes: vec!["urn".into()],
                    ..AllowedNames::default()
                },
                require_name: true,
                ocsp_nocheck: false,
                key_algorithms: vec![],
            },
            "messaging-identity" => Profile {
                name: name.into(),
                key_usages: vec![KeyUsage::DigitalSignature],
                extended_key_usages: vec![],
                default_validity: Duration::from_secs(7 * DAY),
                max_validity: Duration::from_secs(30 * DAY),
                names: AllowedNames {
                    uri_schemes: vec!["tel".into(), "sip".into(), "im".into(), "urn".into()],
                    ..AllowedNames::default()
                },
                require_name: true,
                ocsp_nocheck: false,
                key_algorithms: vec![
                    SubjectKeyKind::EcdsaP256,
                    SubjectKeyKind::EcdsaP384,
                    SubjectKeyKind::Ed25519,
                ],
            },
            "tls-server" => Profile {
                name: name.into(),
                key_usages: vec![KeyUsage::DigitalSignature],
                extended_key_usages: vec![ExtendedKeyUsage::ServerAuth],
                default_validity: Duration::from_secs(90 * DAY),
                max_validity: Duration::from_secs(397 * DAY),
                names: AllowedNames {
                    dns: true,
                    ip: true,
                    ..AllowedNames::default()
                },
                require_name: true,
                ocsp_nocheck: false,
                key_algorithms: vec![],
            },
            // a routing gateway's mTLS identity: `urn:postern:gateway:<tenant>:<name>` (the
            // broker checks the form and the tenant), optionally its host names; short-lived,
            // and checked against the store on every request it authenticates
            "gateway-client" => Profile {
                name: name.into(),
                key_usages: vec![KeyUsage::DigitalSignature],
                extended_key_usages: vec![ExtendedKeyUsage::ClientAuth],
                default_validity: Duration::from_secs(30 * DAY),
                max_validity: Duration::from_secs(90 * DAY),
                names: AllowedNames {
                    dns: true,
                    uri_schemes: vec!["urn".into()],
                    ..AllowedNames::default()
                },
                require_name: true,
                ocsp_nocheck: false,
                key_algorithms: vec![],
            },
            "ocsp-signer" => Profile {
                name: name.into(),
                key_usages: vec![KeyUsage::DigitalSignature],
                extended_key_usages: vec![ExtendedKeyUsage::OcspSigning],
                default_validity: Duration::from_secs(30 * DAY),
                max_validity: Duration::from_secs(90 * DAY),
                names: AllowedNames::default(),
                require_name: false,
                ocsp_nocheck: true,
                key_algorithms: vec![],
            },
            // the broker's own key for CMS-signed configuration profiles: a signature key
            // with emailProtection, which S/MIME verifiers (openssl cms, Apple's installer)
            // accept for SignedData; no names
            "profile-signing" => Profile {
                name: name.into(),
                key_usages: vec![KeyUsage::DigitalSignature],
                extended_key_usages: vec![ExtendedKeyUsage::EmailProtection],
                default_validity: Duration::from_secs(30 * DAY),
                max_validity: Duration::from_secs(397 * DAY),
                names: AllowedNames::default(),
                require_name: false,
                ocsp_nocheck: false,
                key_algorithms: vec![SubjectKeyKind::EcdsaP256, SubjectKeyKind::Rsa],
            },
            // the SCEP registration authority: an RSA key that signs CertRep answers and that
            // clients encrypt their requests to (RSA key transport); no names
            "scep-ra" => Profile {
                name: name.into(),
                key_usages: vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment],
                extended_key_usages: vec![],
                default_validity: Duration::from_secs(365 * DAY),
                max_validity: Duration::from_secs(397 * DAY),
                names: AllowedNames::default(),
                require_name: false,
                ocsp_nocheck: false,
                key_algorithms: vec![SubjectKeyKind::Rsa],
            },
            _ => return None,
        };
        Some(p)
    }

    /// Checks that the profile itself is coherent (used on operator-defined profiles).
    ///
    /// # Errors
    /// [`Error::Profile`] naming the problem.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::profile("", "a profile needs a name"));
        }
        if self.key_usages.is_empty() {
            return Err(Error::profile(&self.name, "key_usages must not be empty"));
        }
        if self.default_validity.is_zero() || self.default_validity > self.max_validity {
            return Err(Error::profile(
                &self.name,
                "default_validity must be positive and at most max_validity",
            ));
        }
        if self.require_name
            && !(self.names.dns
                || self.names.ip
                || self.names.email
                || self.names.permanent_identifier
                || !self.names.uri_schemes.is_empty())
        {
            return Err(Error::profile(
                &self.name,
                "require_name is set but no name type is allowed",
            ));
        }
        Ok(())
    }

    /// Whether a subject key of this kind is allowed.
    pub fn allows_key(&self, kind: SubjectKeyKind) -> bool {
        self.key_algorithms.is_empty() || self.key_algorithms.contains(&kind)
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_is_valid_and_named_as_listed() {
        for name in BUILTIN_NAMES {
            let p = Profile::builtin(name).unwrap();
            assert_eq!(p.name, name);
            p.validate().unwrap();
        }
        assert!(Profile::builtin("nope").is_none());
    }

    #[test]
    fn messaging_identity_is_signature_only_and_short_lived() {
        let p = Profile::builtin("messaging-identity").unwrap();
        assert_eq!(p.key_usages, vec![KeyUsage::DigitalSignature]);
        assert!(p.max_validity <= Duration::from_secs(30 * DAY));
        assert!(!p.allows_key(SubjectKeyKind::Rsa));
    }

    #[test]
    fn gateway_client_is_client_auth_only_and_short_lived() {
        let p = Profile::builtin("gateway-client").unwrap();
        assert_eq!(p.key_usages, vec![KeyUsage::DigitalSignature]);
        assert_eq!(p.extended_key_usages, vec![ExtendedKeyUsage::ClientAuth]);
        assert_eq!(p.default_validity, Duration::from_secs(30 * DAY));
        assert_eq!(p.max_validity, Duration::from_secs(90 * DAY));
        assert_eq!(p.names.uri_schemes, vec!["urn".to_owned()]);
        assert!(p.require_name && !p.names.ip && !p.names.email);
        assert!(!p.ocsp_nocheck);
    }

    #[test]
    fn profile_signing_is_signature_and_email_protection_only() {
        let p = Profile::builtin("profile-signing").unwrap();
        assert_eq!(p.key_usages, vec![KeyUsage::DigitalSignature]);
        assert_eq!(
            p.extended_key_usages,
            vec![ExtendedKeyUsage::EmailProtection]
        );
        assert!(!p.require_name && p.names == AllowedNames::default());
        assert!(!p.allows_key(SubjectKeyKind::Ed25519));
    }

    #[test]
    fn incoherent_profile_is_refused() {
        let mut p = Profile::builtin("tls-server").unwrap();
        p.default_validity = p.max_validity + Duration::from_secs(1);
        assert!(p.validate().is_err());
        let mut p = Profile::builtin("tls-server").unwrap();
        p.names = AllowedNames::default();
        assert!(p.validate().is_err());
    }
}
