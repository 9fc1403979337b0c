//! PKCS#10 certificate signing requests: parsed and checked with x509-parser.
//!
//! rcgen's own CSR parser refuses common real-world requests (a subjectKeyIdentifier in the
//! extension request, RSA-PSS signatures), so postern parses and verifies requests here and
//! only hands rcgen the checked public key and names.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::error::CsrError;
use crate::names::{self, SubjectName};
use crate::profile::SubjectKeyKind;

/// The largest CSR postern reads (DER bytes). Real requests are well under 4 KiB.
pub const MAX_CSR_LEN: usize = 16 * 1024;

/// A request whose signature verified and whose key is acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCsr {
    /// The subject public key as DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// The kind of key.
    pub key_kind: SubjectKeyKind,
    /// Key size in bits.
    pub key_bits: usize,
    /// The subject's commonName, if any.
    pub common_name: Option<String>,
    /// The subject alternative names the request asks for.
    pub names: Vec<SubjectName>,
    /// The CSR's challengePassword attribute, if any (SCEP).
    pub challenge_password: Option<String>,
}

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_CHALLENGE_PASSWORD: &str = "1.2.840.113549.1.9.7";

/// Signature algorithms a CSR may be signed with: SHA-2 RSA (PKCS#1 v1.5 and PSS), ECDSA with
/// SHA-256/384, Ed25519. SHA-1 is refused.
const ACCEPTED_SIGNATURES: [&str; 7] = [
    "1.2.840.113549.1.1.11", // sha256WithRSAEncryption
    "1.2.840.113549.1.1.12", // sha384WithRSAEncryption
    "1.2.840.113549.1.1.13", // sha512WithRSAEncryption
    "1.2.840.113549.1.1.10", // RSASSA-PSS
    "1.2.840.10045.4.3.2",   // ecdsa-with-SHA256
    "1.2.840.10045.4.3.3",   // ecdsa-with-SHA384
    "1.3.101.112",           // Ed25519
];

/// Reads a CSR given as DER or as PEM (`CERTIFICATE REQUEST` or `NEW CERTIFICATE REQUEST`).
///
/// # Errors
/// [`CsrError::Parse`] when it is neither.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, CsrError> {
    if input.len() > MAX_CSR_LEN * 2 {
        return Err(CsrError::Parse("request larger than 16 KiB".into()));
    }
    let trimmed = input.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let p = pem::parse(trimmed).map_err(|e| CsrError::Parse(format!("pem: {e}")))?;
        match p.tag() {
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => Ok(p.into_contents()),
            other => Err(CsrError::Parse(format!(
                "expected a CERTIFICATE REQUEST PEM, found {other:?}"
            ))),
        }
    } else {
        Ok(input.to_vec())
    }
}

/// Parses a DER CSR and checks its signature, key and names.
///
/// # Errors
/// A [`CsrError`] saying what is wrong: unparseable, trailing data, a signature that does not
/// verify, a refused signature algorithm, or a key that is not P-256, P-384, Ed25519 or
/// RSA of 2048 to 8192 bits.
pub fn check(der: &[u8]) -> Result<CheckedCsr, CsrError> {
    if der.len() > MAX_CSR_LEN {
        return Err(CsrError::Parse("request larger than 16 KiB".into()));
    }
    let (rest, csr) =
        X509CertificationRequest::from_der(der).map_err(|e| CsrError::Parse(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::TrailingData);
    }
    let sig_oid = csr.signature_algorithm.algorithm.to_id_string();
    if !ACCEPTED_SIGNATURES.contains(&sig_oid.as_str()) {
        return Err(CsrError::SignatureAlgorithm(sig_oid));
    }
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let alg_oid = spki.algorithm.algorithm.to_id_string();
    let (key_kind, key_bits) = match alg_oid.as_str() {
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => (SubjectKeyKind::EcdsaP256, 256),
                OID_P384 => (SubjectKeyKind::EcdsaP384, 384),
                other => {
                    return Err(CsrError::WeakKey(format!(
                        "EC curve {other} (P-256 or P-384 only)"
                    )));
                }
            }
        }
        OID_ED25519 => (SubjectKeyKind::Ed25519, 256),
        OID_RSA => {
            let bits = match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => rsa.key_size(),
                _ => return Err(CsrError::WeakKey("unreadable RSA key".into())),
            };
            if bits < 2048 {
                return Err(CsrError::WeakKey(format!(
                    "RSA-{bits} (at least 2048 bits)"
                )));
            }
            if bits > 8192 {
                return Err(CsrError::WeakKey(format!("RSA-{bits} (at most 8192 bits)")));
            }
            (SubjectKeyKind::Rsa, bits)
        }
        other => {
            return Err(CsrError::WeakKey(format!(
                "key algorithm {other} (P-256, P-384, Ed25519 or RSA >= 2048 only)"
            )));
        }
    };
    csr.verify_signature().map_err(|_| CsrError::Signature)?;

    let common_name = info
        .subject
        .iter_common_name()
        .next()
        .map(|cn| {
            cn.as_str()
                .map(str::to_owned)
                .map_err(|_| CsrError::Parse("commonName is not a string".into()))
        })
        .transpose()?;

    let mut names_out = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            match ext {
                ParsedExtension::SubjectAlternativeName(san) => {
                    names_out = names::from_x509_general_names(&san.general_names)
                        .map_err(|e| CsrError::Parse(e.to_string()))?;
                }
                ParsedExtension::ParseError { error } => {
                    return Err(CsrError::Parse(format!("requested extension: {error}")));
                }
                _ => {}
            }
        }
    }

    let challenge_password = info
        .iter_attributes()
        .find(|a| a.oid.to_id_string() == OID_CHALLENGE_PASSWORD)
        .and_then(|a| challenge_string(a.value));

    Ok(CheckedCsr {
        spki_der: spki.raw.to_vec(),
        key_kind,
        key_bits,
        common_name,
        names: names_out,
        challenge_password,
    })
}

/// The challengePassword attribute value is a SET OF DirectoryString.
fn challenge_string(set_contents: &[u8]) -> Option<String> {
    use x509_parser::der_parser::der::parse_der;
    let (_, obj) = parse_der(set_contents).ok()?;
    // the attribute value as the SET itself, or as its contents
    let obj = match obj.as_set() {
        Ok(items) => items.first()?.clone(),
        Err(_) => obj,
    };
    obj.as_str().ok().map(str::to_owned)
}

/// [`decode`] then [`check`].
///
/// # Errors
/// As [`decode`] and [`check`].
pub fn parse(input: &[u8]) -> Result<CheckedCsr, CsrError> {
    check(&decode(input)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::{KeyAlgorithm, KeySigner, Signer as _, generate};

    fn make_csr(alg: &'static rcgen::SignatureAlgorithm, sans: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test");
        params.serialize_request(&key).unwrap().der().to_vec()
    }

    #[test]
    fn accepts_the_supported_key_kinds() {
        for (alg, kind) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, SubjectKeyKind::EcdsaP256),
            (&rcgen::PKCS_ECDSA_P384_SHA384, SubjectKeyKind::EcdsaP384),
            (&rcgen::PKCS_ED25519, SubjectKeyKind::Ed25519),
        ] {
            let c = check(&make_csr(alg, &["gw.example.com"])).unwrap();
            assert_eq!(c.key_kind, kind);
            assert_eq!(c.common_name.as_deref(), Some("test"));
            assert_eq!(c.names, vec![SubjectName::Dns("gw.example.com".into())]);
        }
    }

    #[test]
    fn refuses_garbage_truncation_and_trailing_data() {
        let good = make_csr(&rcgen::PKCS_ECDSA_P256_SHA256, &["a.example"]);
        assert!(matches!(check(b""), Err(CsrError::Parse(_))));
        assert!(matches!(check(b"garbage"), Err(CsrError::Parse(_))));
        for len in 0..good.len() {
            assert!(check(&good[..len]).is_err(), "truncated at {len}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(check(&trailing), Err(CsrError::TrailingData));
    }

    #[test]
    fn refuses_a_signature_that_does_not_verify() {
        let mut der = make_csr(&rcgen::PKCS_ECDSA_P256_SHA256, &["a.example"]);
        // flip a bit inside the signed name (the SAN value near the end of the info)
        let pos = der.windows(9).position(|w| w == b"a.example").unwrap();
        der[pos] = b'b';
        assert_eq!(check(&der), Err(CsrError::Signature));
    }

    #[test]
    fn pem_and_der_both_decode() {
        let der = make_csr(&rcgen::PKCS_ED25519, &["a.example"]);
        let pem_text = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der.clone()));
        assert_eq!(decode(pem_text.as_bytes()).unwrap(), der);
        assert_eq!(decode(&der).unwrap(), der);
        let wrong = pem::encode(&pem::Pem::new("CERTIFICATE", der));
        assert!(decode(wrong.as_bytes()).is_err());
    }

    #[test]
    fn signer_generated_key_round_trip() {
        // a CSR signed by our own KeySigner via rcgen's remote-key path
        let key = generate(KeyAlgorithm::EcdsaP256).unwrap();
        let s = KeySigner::from_pkcs8(key.as_der()).unwrap();
        let params = rcgen::CertificateParams::new(vec!["x.example".to_string()]).unwrap();
        let der = params
            .serialize_request(&crate::signer::RcgenKey(&s))
            .unwrap()
            .der()
            .to_vec();
        let c = check(&der).unwrap();
        assert_eq!(c.spki_der, s.spki_der());
    }
}
