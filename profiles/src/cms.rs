//! CMS (RFC 5652) `SignedData` over a profile: attached content, SHA-256, signed attributes
//! (content type, signing time, message digest), the signer's certificate and its chain
//! included. This is what a signed `.mobileconfig` is; `openssl cms -verify` and Apple's
//! profile installer read it.
//!
//! [`verify`] is the inverse, for checks: it returns the content after checking the digest and
//! the signature against the included signer certificate (not the chain: that is the relying
//! party's trust decision).

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use yasna::models::{ObjectIdentifier, UTCTime};
use yasna::{ASN1Error, ASN1ErrorKind, Tag};

use postern_certs::der::{parse_der, tlv};
use postern_certs::{KeyAlgorithm, Signer};

use crate::{Error, Result};

const SIGNED_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 2];
const DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];
const SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
const CONTENT_TYPE: &[u64] = &[1, 2, 840, 113549, 1, 9, 3];
const MESSAGE_DIGEST: &[u64] = &[1, 2, 840, 113549, 1, 9, 4];
const SIGNING_TIME: &[u64] = &[1, 2, 840, 113549, 1, 9, 5];

fn oid(o: &[u64]) -> ObjectIdentifier {
    ObjectIdentifier::from_slice(o)
}

/// `IssuerAndSerialNumber` of a certificate, DER.
fn issuer_and_serial(cert_der: &[u8]) -> Result<Vec<u8>> {
    postern_certs::der::issuer_and_serial(cert_der)
        .ok_or_else(|| Error::invalid("signer certificate", "does not parse"))
}

/// Signs `content` as CMS `SignedData` (DER).
///
/// `signer` must be an ECDSA P-256 or RSA (SHA-256) key, certified by `signer_cert_der`;
/// `chain` (DER, e.g. the issuing CA) is included after it.
///
/// # Errors
/// [`Error::Invalid`] for another key type, a certificate that does not parse or is not the
/// key's, a signing time outside UTCTime; [`Error::Internal`] when signing fails.
pub fn sign(
    content: &[u8],
    signer: &dyn Signer,
    signer_cert_der: &[u8],
    chain: &[Vec<u8>],
    signing_time: OffsetDateTime,
) -> Result<Vec<u8>> {
    if !matches!(
        signer.algorithm(),
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::RsaSha256
    ) {
        return Err(Error::invalid(
            "signer",
            format!(
                "{} keys are not used for profile signing (P-256 or RSA)",
                signer.algorithm()
            ),
        ));
    }
    let (_, cert) = X509Certificate::from_der(signer_cert_der)
        .map_err(|e| Error::invalid("signer certificate", e.to_string()))?;
    if cert.public_key().raw != signer.spki_der() {
        return Err(Error::invalid(
            "signer certificate",
            "it certifies another key",
        ));
    }
    let sid = issuer_and_serial(signer_cert_der)?;
    let whole = signing_time.replace_nanosecond(0).unwrap_or(signing_time);
    let time = UTCTime::from_datetime_opt(whole)
        .ok_or_else(|| Error::invalid("signing time", "outside 1950..2049"))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, content);
    let attrs = [
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_oid(&oid(CONTENT_TYPE));
                w.next().write_set(|w| w.next().write_oid(&oid(DATA)));
            })
        }),
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_oid(&oid(SIGNING_TIME));
                w.next().write_set(|w| w.next().write_utctime(&time));
            })
        }),
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_oid(&oid(MESSAGE_DIGEST));
                w.next()
                    .write_set(|w| w.next().write_bytes(digest.as_ref()));
            })
        }),
    ];
    // signed over the SET OF (tag 0x31); embedded as [0] IMPLICIT (tag 0xA0)
    let signed_attrs = yasna::construct_der(|w| {
        w.write_set_of(|w| {
            for a in &attrs {
                w.next().write_der(a);
            }
        })
    });
    let signature = signer
        .sign(&signed_attrs)
        .map_err(|e| Error::Internal(format!("signing the profile: {e}")))?;
    let mut embedded_attrs = signed_attrs.clone();
    embedded_attrs[0] = 0xA0;
    let sig_alg = signer.algorithm().signature_algorithm_der();
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&oid(SIGNED_DATA));
            w.next().write_tagged(Tag::context(0), |w| {
                w.write_sequence(|w| {
                    w.next().write_u8(1);
                    w.next().write_set(|w| {
                        w.next()
                            .write_sequence(|w| w.next().write_oid(&oid(SHA256)))
                    });
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(DATA));
                        w.next()
                            .write_tagged(Tag::context(0), |w| w.write_bytes(content));
                    });
                    w.next().write_tagged_implicit(Tag::context(0), |w| {
                        w.write_set_of(|w| {
                            w.next().write_der(signer_cert_der);
                            for c in chain {
                                w.next().write_der(c);
                            }
                        })
                    });
                    w.next().write_set(|w| {
                        w.next().write_sequence(|w| {
                            w.next().write_u8(1);
                            w.next().write_der(&sid);
                            w.next()
                                .write_sequence(|w| w.next().write_oid(&oid(SHA256)));
                            w.next().write_der(&embedded_attrs);
                            w.next().write_der(&sig_alg);
                            w.next().write_bytes(&signature);
                        })
                    });
                })
            });
        })
    }))
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed content.
    pub content: Vec<u8>,
    /// The signer's certificate (DER).
    pub signer_cert: Vec<u8>,
    /// Every certificate included (DER), signer's first as found.
    pub certificates: Vec<Vec<u8>>,
}

struct Parsed {
    content: Vec<u8>,
    certs: Vec<Vec<u8>>,
    sid: Vec<u8>,
    attrs: Vec<u8>,
    signature: Vec<u8>,
}

fn parse(der: &[u8]) -> Result<Parsed, ASN1Error> {
    parse_der(der, |r| {
        r.read_sequence(|r| {
            if r.next().read_oid()? != oid(SIGNED_DATA) {
                return Err(ASN1Error::new(ASN1ErrorKind::Invalid));
            }
            r.next().read_tagged(Tag::context(0), |r| {
                r.read_sequence(|r| {
                    let _version = r.next().read_u8()?;
                    let _digests = r.next().read_der()?;
                    let content = r.next().read_sequence(|r| {
                        if r.next().read_oid()? != oid(DATA) {
                            return Err(ASN1Error::new(ASN1ErrorKind::Invalid));
                        }
                        r.next().read_tagged(Tag::context(0), |r| r.read_bytes())
                    })?;
                    let mut certs = Vec::new();
                    r.read_optional(|r| {
                        r.read_tagged_implicit(Tag::context(0), |r| {
                            r.read_set_of(|r| {
                                certs.push(r.read_der()?);
                                Ok(())
                            })
                        })
                    })?;
                    let mut infos = Vec::new();
                    r.next().read_set_of(|r| {
                        infos.push(r.read_sequence(|r| {
                            let _v = r.next().read_u8()?;
                            let sid = r.next().read_der()?;
                            let _digest = r.next().read_der()?;
                            let attrs = r.next().read_tagged_der()?;
                            if attrs.tag() != Tag::context(0) {
                                return Err(ASN1Error::new(ASN1ErrorKind::Invalid));
                            }
                            let _alg = r.next().read_der()?;
                            let signature = r.next().read_bytes()?;
                            Ok((sid, attrs.value().to_vec(), signature))
                        })?);
                        Ok(())
                    })?;
                    let [(sid, attrs, signature)] = <[_; 1]>::try_from(infos)
                        .map_err(|_| ASN1Error::new(ASN1ErrorKind::Invalid))?;
                    Ok(Parsed {
                        content,
                        certs,
                        sid,
                        attrs,
                        signature,
                    })
                })
            })
        })
    })
}

/// Checks a `SignedData` made by [`sign`] (one signer, attached content, SHA-256, signed
/// attributes) and returns its content and certificates.
///
/// # Errors
/// [`Error::Invalid`] naming the defect.
pub fn verify(der: &[u8]) -> Result<Verified> {
    let bad = |m: &str| Error::invalid("signed profile", m.to_owned());
    let p = parse(der).map_err(|e| Error::invalid("signed profile", e.to_string()))?;
    let signed_attrs = tlv(0x31, &p.attrs);
    let mut digest = None;
    parse_der(&signed_attrs, |r| {
        r.read_set_of(|r| {
            r.read_sequence(|r| {
                let id = r.next().read_oid()?;
                let value = r.next().read_der()?;
                if id == oid(MESSAGE_DIGEST) {
                    digest = Some(parse_der(&value, |r| {
                        let mut v = None;
                        r.read_set_of(|r| {
                            v = Some(r.read_bytes()?);
                            Ok(())
                        })?;
                        v.ok_or_else(|| ASN1Error::new(ASN1ErrorKind::Invalid))
                    })?);
                }
                Ok(())
            })
        })
    })
    .map_err(|_| bad("signed attributes do not parse"))?;
    let want = ring::digest::digest(&ring::digest::SHA256, &p.content);
    if digest.as_deref() != Some(want.as_ref()) {
        return Err(bad("the message digest is not the content's"));
    }
    let signer_cert = p
        .certs
        .iter()
        .find(|c| issuer_and_serial(c).ok().as_deref() == Some(p.sid.as_slice()))
        .ok_or_else(|| bad("the signer's certificate is not included"))?
        .clone();
    let (_, cert) = X509Certificate::from_der(&signer_cert).map_err(|_| bad("bad certificate"))?;
    let key = cert.public_key();
    let alg: &dyn ring::signature::VerificationAlgorithm =
        match key.algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.10045.2.1" => &ring::signature::ECDSA_P256_SHA256_ASN1,
            "1.2.840.113549.1.1.1" => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            _ => return Err(bad("unsupported signer key")),
        };
    ring::signature::UnparsedPublicKey::new(alg, key.subject_public_key.data.as_ref())
        .verify(&signed_attrs, &p.signature)
        .map_err(|_| bad("the signature does not verify"))?;
    Ok(Verified {
        content: p.content,
        signer_cert,
        certificates: p.certs,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use postern_certs::KeySigner;
    use postern_certs::signer::generate;

    fn signer_and_cert(alg: KeyAlgorithm) -> (KeySigner, Vec<u8>) {
        let pkcs8 = generate(alg).unwrap();
        let signer = KeySigner::from_pkcs8(pkcs8.as_der()).unwrap();
        let kp = rcgen::KeyPair::try_from(pkcs8.as_der()).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "profile signer");
        let cert = params.self_signed(&kp).unwrap();
        (signer, cert.der().to_vec())
    }

    #[test]
    fn signs_and_verifies_and_catches_tampering() {
        let (signer, cert) = signer_and_cert(KeyAlgorithm::EcdsaP256);
        let content = b"<?xml version=\"1.0\"?><plist/>".repeat(20);
        let t = time::macros::datetime!(2026-11-23 12:00 UTC);
        let der = sign(&content, &signer, &cert, &[], t).unwrap();
        let v = verify(&der).unwrap();
        assert_eq!(v.content, content);
        assert_eq!(v.signer_cert, cert);
        // flip one content byte: the digest no longer matches
        let pos = der
            .windows(content.len())
            .position(|w| w == content.as_slice())
            .unwrap();
        let mut bad = der.clone();
        bad[pos + 3] ^= 1;
        assert_eq!(
            verify(&bad).unwrap_err().to_string(),
            "invalid signed profile: the message digest is not the content's"
        );
        // flip the last signature byte
        let mut bad = der.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(verify(&bad).is_err());
    }

    #[test]
    fn wrong_key_or_algorithm_is_refused() {
        let (signer, _) = signer_and_cert(KeyAlgorithm::EcdsaP256);
        let (_, other_cert) = signer_and_cert(KeyAlgorithm::EcdsaP256);
        let t = time::macros::datetime!(2026-11-23 12:00 UTC);
        assert!(matches!(
            sign(b"x", &signer, &other_cert, &[], t),
            Err(Error::Invalid {
                what: "signer certificate",
                ..
            })
        ));
        let (ed, ed_cert) = signer_and_cert(KeyAlgorithm::Ed25519);
        assert!(matches!(
            sign(b"x", &ed, &ed_cert, &[], t),
            Err(Error::Invalid { what: "signer", .. })
        ));
    }

    #[test]
    fn openssl_accepts_it() {
        let Ok(out) = std::process::Command::new("openssl")
            .arg("version")
            .output()
        else {
            // CI sets POSTERN_REQUIRE_PEERS: there a missing peer is a failure
            assert!(
                std::env::var_os("POSTERN_REQUIRE_PEERS").is_none(),
                "POSTERN_REQUIRE_PEERS is set but openssl is missing"
            );
            println!("skipped: openssl is not installed");
            return;
        };
        assert!(out.status.success());
        let (signer, cert) = signer_and_cert(KeyAlgorithm::EcdsaP256);
        let content = b"profile bytes\n".to_vec();
        let der = sign(&content, &signer, &cert, &[], OffsetDateTime::now_utc()).unwrap();
        let dir = std::env::temp_dir().join(format!("postern-cms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("p.der"), &der).unwrap();
        std::fs::write(
            dir.join("ca.pem"),
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &cert)
            ),
        )
        .unwrap();
        let out = std::process::Command::new("openssl")
            .args(["cms", "-verify", "-inform", "DER", "-purpose", "any", "-in"])
            .arg(dir.join("p.der"))
            .arg("-CAfile")
            .arg(dir.join("ca.pem"))
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, content);
    }
}
