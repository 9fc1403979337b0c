//! The CA hierarchy: a root (ECDSA P-384 by default) and an issuing intermediate (P-256 by
//! default, pathLen 0, optional name constraints), created here or imported from an operator's
//! PEM files.
//!
//! The root key is needed only to create or renew the intermediate; an operator can keep it
//! offline. Issuance needs only the [`Issuer`]: the intermediate's certificate, its chain and
//! its [`Signer`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Error, Result};
use crate::signer::{RcgenKey, SharedKey, Signer};

/// A CA certificate, parsed once.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCertificate {
    der: Vec<u8>,
    subject: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    spki: Vec<u8>,
    path_len: Option<u32>,
}

impl fmt::Debug for CaCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCertificate")
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CaCertificate {
    /// Parses a DER certificate and checks that it is a CA certificate that may sign
    /// certificates (basicConstraints cA, keyCertSign).
    ///
    /// # Errors
    /// [`Error::Malformed`] or [`Error::Ca`] naming the defect.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| Error::malformed("certificate", e))?;
        if !rest.is_empty() {
            return Err(Error::malformed("certificate", "trailing data"));
        }
        let bc = cert
            .basic_constraints()
            .map_err(|e| Error::malformed("certificate", e))?
            .ok_or_else(|| Error::Ca("certificate has no basicConstraints".into()))?;
        if !bc.value.ca {
            return Err(Error::Ca("certificate is not a CA (cA is false)".into()));
        }
        let ku = cert
            .key_usage()
            .map_err(|e| Error::malformed("certificate", e))?
            .ok_or_else(|| Error::Ca("CA certificate has no keyUsage".into()))?;
        if !ku.value.key_cert_sign() {
            return Err(Error::Ca("CA certificate lacks keyCertSign".into()));
        }
        Ok(CaCertificate {
            der: der.to_vec(),
            subject: cert.subject().to_string(),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            spki: cert.public_key().raw.to_vec(),
            path_len: bc.value.path_len_constraint,
        })
    }

    /// Parses every `CERTIFICATE` block of a PEM text, in order.
    ///
    /// # Errors
    /// As [`CaCertificate::from_der`]; also when the text holds no certificate.
    pub fn from_pem_chain(text: &str) -> Result<Vec<Self>> {
        let blocks = pem::parse_many(text).map_err(|e| Error::malformed("pem", e))?;
        let certs: Vec<_> = blocks
            .iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| Self::from_der(p.contents()))
            .collect::<Result<_>>()?;
        if certs.is_empty() {
            return Err(Error::malformed("pem", "no CERTIFICATE block"));
        }
        Ok(certs)
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM text.
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.der.clone()))
    }

    /// The subject as an RFC 4514 string.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// notBefore
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// notAfter
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The SHA-256 fingerprint of the DER certificate, lower-case hex.
    pub fn fingerprint_sha256(&self) -> String {
        hex_lower(ring::digest::digest(&ring::digest::SHA256, &self.der).as_ref())
    }

    /// Whether `issuer` signed this certificate.
    pub fn is_signed_by(&self, issuer: &CaCertificate) -> bool {
        let Ok((_, cert)) = X509Certificate::from_der(&self.der) else {
            return false;
        };
        let Ok((_, iss)) = X509Certificate::from_der(&issuer.der) else {
            return false;
        };
        cert.issuer() == iss.subject() && cert.verify_signature(Some(iss.public_key())).is_ok()
    }
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Name constraints for the issuing CA (RFC 5280 §4.2.1.10).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NameConstraints {
    /// DNS subtrees leaf names must fall under.
    pub permitted_dns: Vec<String>,
    /// DNS subtrees leaf names must not fall under.
    pub excluded_dns: Vec<String>,
    /// Email domains or addresses leaf email names must fall under.
    pub permitted_email: Vec<String>,
}

impl NameConstraints {
    fn to_rcgen(&self) -> Option<rcgen::NameConstraints> {
        if self.permitted_dns.is_empty()
            && self.excluded_dns.is_empty()
            && self.permitted_email.is_empty()
        {
            return None;
        }
        let permitted = self
            .permitted_dns
            .iter()
            .map(|d| rcgen::GeneralSubtree::DnsName(d.clone()))
            .chain(
                self.permitted_email
                    .iter()
                    .map(|e| rcgen::GeneralSubtree::Rfc822Name(e.clone())),
            )
            .collect();
        let excluded = self
            .excluded_dns
            .iter()
            .map(|d| rcgen::GeneralSubtree::DnsName(d.clone()))
            .collect();
        Some(rcgen::NameConstraints {
            permitted_subtrees: permitted,
            excluded_subtrees: excluded,
        })
    }
}

/// What a new CA certificate should say.
#[derive(Debug, Clone)]
pub struct CaParams {
    /// commonName
    pub common_name: String,
    /// organizationName, if any
    pub organization: Option<String>,
    /// How long it is valid from `now`.
    pub validity: Duration,
    /// The current time.
    pub now: OffsetDateTime,
    /// Name constraints (intermediates only).
    pub name_constraints: NameConstraints,
}

fn ca_params(p: &CaParams, path_len: u8) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(o) = &p.organization {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    dn.push(DnType::CommonName, p.common_name.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let not_before = truncate(p.now);
    params.not_before = not_before;
    params.not_after = not_before + p.validity;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(
        &crate::issue::random_serial()?,
    ));
    params.name_constraints = p.name_constraints.to_rcgen();
    Ok(params)
}

pub(crate) fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Creates a self-signed root CA certificate (pathLen 1: it signs intermediates only).
///
/// # Errors
/// [`Error::Internal`] when signing fails.
pub fn create_root(key: &dyn Signer, params: &CaParams) -> Result<CaCertificate> {
    let p = ca_params(params, 1)?;
    let cert = p.self_signed(&RcgenKey(key))?;
    CaCertificate::from_der(cert.der())
}

/// Creates an issuing intermediate (pathLen 0) for `subject_key`, signed by the root.
/// Its validity is cut to the root's.
///
/// # Errors
/// [`Error::Ca`] when the root key does not match the root certificate or the root has
/// expired; [`Error::Internal`] when signing fails.
pub fn create_intermediate(
    root: &CaCertificate,
    root_key: &dyn Signer,
    subject_key: &dyn Signer,
    params: &CaParams,
) -> Result<CaCertificate> {
    if root.spki_der() != root_key.spki_der() {
        return Err(Error::Ca(
            "root key does not match the root certificate".into(),
        ));
    }
    let mut p = ca_params(params, 0)?;
    p.use_authority_key_identifier_extension = true;
    if p.not_after > root.not_after {
        p.not_after = root.not_after;
    }
    if p.not_after <= p.not_before {
        return Err(Error::Ca("the root has expired".into()));
    }
    let issuer = rcgen::Issuer::from_ca_cert_der(&root.der().to_vec().into(), RcgenKey(root_key))?;
    let cert = p.signed_by(&RcgenKey(subject_key), &issuer)?;
    CaCertificate::from_der(cert.der())
}

/// The issuing CA: the certificate that signs leaves, its chain up to the root, and its key.
pub struct Issuer {
    cert: CaCertificate,
    chain: Vec<CaCertificate>,
    signer: Arc<dyn Signer>,
    rcgen: rcgen::Issuer<'static, SharedKey>,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("cert", &self.cert)
            .field("chain", &self.chain)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Puts an issuing CA together and checks it: the key matches the certificate, each
    /// certificate of `chain` (ordered up to the root) signed the one before, and the last one
    /// is self-signed.
    ///
    /// # Errors
    /// [`Error::Ca`] naming the broken link.
    pub fn new(
        cert: CaCertificate,
        chain: Vec<CaCertificate>,
        signer: Arc<dyn Signer>,
    ) -> Result<Self> {
        if cert.spki_der() != signer.spki_der() {
            return Err(Error::Ca(
                "the issuing key does not match the issuing certificate".into(),
            ));
        }
        let mut child = &cert;
        for parent in &chain {
            if !child.is_signed_by(parent) {
                return Err(Error::Ca(format!(
                    "{} is not signed by {}",
                    child.subject(),
                    parent.subject()
                )));
            }
            child = parent;
        }
        if !child.is_signed_by(child) {
            return Err(Error::Ca(format!(
                "the chain does not end at a self-signed root ({})",
                child.subject()
            )));
        }
        let rcgen = rcgen::Issuer::from_ca_cert_der(
            &cert.der().to_vec().into(),
            SharedKey(Arc::clone(&signer)),
        )?;
        // one probe leaf proves that rcgen writes this issuer's name byte for byte
        let mut probe = CertificateParams::default();
        probe
            .distinguished_name
            .push(DnType::CommonName, "postern issuer probe");
        let probe = probe.signed_by(&RcgenKey(&*signer), &rcgen)?;
        crate::issue::check_issuer_name(probe.der(), cert.der())?;
        Ok(Issuer {
            cert,
            chain,
            signer,
            rcgen,
        })
    }

    /// The issuing certificate.
    pub fn certificate(&self) -> &CaCertificate {
        &self.cert
    }

    /// The certificates above the issuing one, ending with the root.
    pub fn chain(&self) -> &[CaCertificate] {
        &self.chain
    }

    /// The root certificate.
    pub fn root(&self) -> &CaCertificate {
        self.chain.last().unwrap_or(&self.cert)
    }

    /// The issuing key.
    pub fn signer(&self) -> &dyn Signer {
        &*self.signer
    }

    /// The issuing certificate followed by its chain, as PEM.
    pub fn chain_pem(&self) -> String {
        std::iter::once(&self.cert)
            .chain(&self.chain)
            .map(CaCertificate::to_pem)
            .collect()
    }

    pub(crate) fn rcgen(&self) -> &rcgen::Issuer<'static, SharedKey> {
        &self.rcgen
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::signer::{KeyAlgorithm, KeySigner, generate};

    pub(crate) fn params(cn: &str, days: u64) -> CaParams {
        CaParams {
            common_name: cn.into(),
            organization: Some("postern test".into()),
            validity: Duration::from_secs(days * 86_400),
            now: OffsetDateTime::now_utc(),
            name_constraints: NameConstraints::default(),
        }
    }

    /// A root (P-384) and an intermediate (P-256) for tests.
    pub(crate) fn test_issuer() -> (Issuer, Arc<KeySigner>) {
        let root_key =
            KeySigner::from_pkcs8(generate(KeyAlgorithm::EcdsaP384).unwrap().as_der()).unwrap();
        let int_key = Arc::new(
            KeySigner::from_pkcs8(generate(KeyAlgorithm::EcdsaP256).unwrap().as_der()).unwrap(),
        );
        let root = create_root(&root_key, &params("Test Root", 3650)).unwrap();
        let int = create_intermediate(&root, &root_key, &*int_key, &params("Test Issuing", 1825))
            .unwrap();
        let signer: Arc<dyn Signer> = int_key.clone();
        (Issuer::new(int, vec![root], signer).unwrap(), int_key)
    }

    #[test]
    fn hierarchy_has_the_right_constraints() {
        let (issuer, _) = test_issuer();
        let (_, int) = X509Certificate::from_der(issuer.certificate().der()).unwrap();
        let bc = int.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        let (_, root) = X509Certificate::from_der(issuer.root().der()).unwrap();
        assert_eq!(
            root.basic_constraints()
                .unwrap()
                .unwrap()
                .value
                .path_len_constraint,
            Some(1)
        );
        assert!(int.validity().not_after <= root.validity().not_after);
        assert!(issuer.certificate().is_signed_by(issuer.root()));
        assert_eq!(issuer.chain_pem().matches("BEGIN CERTIFICATE").count(), 2);
    }

    #[test]
    fn intermediate_validity_is_cut_to_the_root() {
        let root_key =
            KeySigner::from_pkcs8(generate(KeyAlgorithm::EcdsaP256).unwrap().as_der()).unwrap();
        let int_key =
            KeySigner::from_pkcs8(generate(KeyAlgorithm::EcdsaP256).unwrap().as_der()).unwrap();
        let root = create_root(&root_key, &params("Short Root", 10)).unwrap();
        let int = create_intermediate(&root, &root_key, &int_key, &params("Long", 1000)).unwrap();
        assert_eq!(int.not_after(), root.not_after());
    }

    #[test]
    fn mismatched_keys_and_broken_chains_are_refused() {
        let (issuer, key) = test_issuer();
        let other =
            KeySigner::from_pkcs8(generate(KeyAlgorithm::EcdsaP256).unwrap().as_der()).unwrap();
        let signer: Arc<dyn Signer> = Arc::new(other);
        assert!(
            Issuer::new(
                issuer.certificate().clone(),
                issuer.chain().to_vec(),
                signer
            )
            .is_err()
        );
        // a chain whose root did not sign the intermediate
        let (issuer2, _) = test_issuer();
        let signer: Arc<dyn Signer> = key;
        assert!(
            Issuer::new(
                issuer.certificate().clone(),
                issuer2.chain().to_vec(),
                signer
            )
            .is_err()
        );
    }

    #[test]
    fn name_constraints_are_written() {
        let root_key =
            KeySigner::from_pkcs8(generate(KeyAlgorithm::EcdsaP256).unwrap().as_der()).unwrap();
        let int_key =
            KeySigner::from_pkcs8(generate(KeyAlgorithm::EcdsaP256).unwrap().as_der()).unwrap();
        let root = create_root(&root_key, &params("R", 100)).unwrap();
        let mut p = params("I", 50);
        p.name_constraints.permitted_dns = vec!["example.com".into()];
        let int = create_intermediate(&root, &root_key, &int_key, &p).unwrap();
        let (_, c) = X509Certificate::from_der(int.der()).unwrap();
        assert!(c.name_constraints().unwrap().is_some());
    }

    #[test]
    fn a_leaf_is_not_a_ca() {
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["a.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(CaCertificate::from_der(leaf.der()).is_err());
        assert!(CaCertificate::from_der(b"junk").is_err());
    }
}
