//! Signing keys behind a trait, so that the CA private key never leaves its [`Signer`].
//!
//! [`KeySigner`] holds a PKCS#8 key in memory (loaded from a file by the broker); an HSM or KMS
//! backend implements the same trait. Keys at rest are PKCS#8 PEM, optionally encrypted with a
//! passphrase (see [`keyfile`](crate::keyfile)).

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};

use crate::error::{KeyError, Result};

/// The algorithm of a signing key, and so of the signatures it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256.
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA PKCS#1 v1.5 with SHA-256 (imported keys only; postern does not generate RSA CA keys).
    RsaSha256,
}

impl KeyAlgorithm {
    /// The name used in configuration and on the wire (`ecdsa-p256`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::RsaSha256 => "rsa-sha256",
        }
    }

    /// The matching rcgen signature algorithm.
    pub fn to_rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            KeyAlgorithm::RsaSha256 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// DER of the X.509 `AlgorithmIdentifier` for signatures made by this key
    /// (for structures rcgen does not build, such as OCSP responses).
    pub fn signature_algorithm_der(self) -> Vec<u8> {
        yasna::construct_der(|w| {
            w.write_sequence(|w| match self {
                KeyAlgorithm::EcdsaP256 => {
                    w.next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                            1, 2, 840, 10045, 4, 3, 2,
                        ]))
                }
                KeyAlgorithm::EcdsaP384 => {
                    w.next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                            1, 2, 840, 10045, 4, 3, 3,
                        ]))
                }
                KeyAlgorithm::Ed25519 => {
                    w.next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                            1, 3, 101, 112,
                        ]))
                }
                KeyAlgorithm::RsaSha256 => {
                    w.next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                            1, 2, 840, 113549, 1, 1, 11,
                        ]));
                    w.next().write_null();
                }
            })
        })
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "ecdsa-p256" | "p256" | "P-256" => Ok(KeyAlgorithm::EcdsaP256),
            "ecdsa-p384" | "p384" | "P-384" => Ok(KeyAlgorithm::EcdsaP384),
            "ed25519" | "Ed25519" => Ok(KeyAlgorithm::Ed25519),
            other => Err(KeyError::Malformed(format!(
                "unknown key algorithm {other:?} (expected ecdsa-p256, ecdsa-p384 or ed25519)"
            ))),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that signs with a private key it never reveals.
///
/// Signatures come back in the X.509 form: ASN.1 DER `Ecdsa-Sig-Value` for ECDSA, raw for
/// Ed25519, PKCS#1 v1.5 for RSA. JWS converts ECDSA to the fixed form itself.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The key's algorithm.
    fn algorithm(&self) -> KeyAlgorithm;

    /// The public key as a DER `SubjectPublicKeyInfo`.
    fn spki_der(&self) -> &[u8];

    /// The raw public key bits (the BIT STRING contents of the SPKI).
    fn public_key_raw(&self) -> &[u8];

    /// Signs `msg`.
    ///
    /// # Errors
    /// [`KeyError::Sign`] when the backend fails.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError>;
}

enum Inner {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A [`Signer`] over a PKCS#8 key held in process memory (ring).
pub struct KeySigner {
    alg: KeyAlgorithm,
    inner: Inner,
    spki: Vec<u8>,
    raw: Vec<u8>,
    rng: SystemRandom,
}

impl fmt::Debug for KeySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySigner")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A freshly generated private key as PKCS#8 DER; zeroed on drop.
pub struct Pkcs8Key(zeroize::Zeroizing<Vec<u8>>);

impl fmt::Debug for Pkcs8Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pkcs8Key(..)")
    }
}

impl Pkcs8Key {
    /// Wraps PKCS#8 DER bytes.
    pub fn from_der(der: Vec<u8>) -> Self {
        Pkcs8Key(zeroize::Zeroizing::new(der))
    }

    /// The PKCS#8 DER bytes.
    pub fn as_der(&self) -> &[u8] {
        &self.0
    }

    /// Unencrypted PKCS#8 PEM (`PRIVATE KEY`).
    pub fn to_pem(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", self.0.to_vec())))
    }
}

/// Generates a new private key.
///
/// # Errors
/// [`KeyError::Malformed`] for RSA (not generated by postern) or when the RNG fails.
pub fn generate(alg: KeyAlgorithm) -> Result<Pkcs8Key, KeyError> {
    let rng = SystemRandom::new();
    let doc = match alg {
        KeyAlgorithm::EcdsaP256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        }
        KeyAlgorithm::EcdsaP384 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, &rng)
        }
        KeyAlgorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng),
        KeyAlgorithm::RsaSha256 => {
            return Err(KeyError::Malformed(
                "postern does not generate RSA keys; import one".into(),
            ));
        }
    }
    .map_err(|_| KeyError::Malformed("key generation failed".into()))?;
    Ok(Pkcs8Key::from_der(doc.as_ref().to_vec()))
}

impl KeySigner {
    /// Loads a PKCS#8 DER private key (ECDSA P-256/P-384, Ed25519 v1 or v2, RSA >= 2048).
    ///
    /// # Errors
    /// [`KeyError::Malformed`] when the bytes hold no supported key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let (alg, inner) = if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
        {
            (KeyAlgorithm::EcdsaP256, Inner::Ecdsa(k))
        } else if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, der, &rng)
        {
            (KeyAlgorithm::EcdsaP384, Inner::Ecdsa(k))
        } else if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            (KeyAlgorithm::Ed25519, Inner::Ed25519(k))
        } else if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            if k.public().modulus_len() < 256 {
                return Err(KeyError::Malformed(
                    "RSA keys below 2048 bits are refused".into(),
                ));
            }
            (KeyAlgorithm::RsaSha256, Inner::Rsa(k))
        } else {
            return Err(KeyError::Malformed(
                "not a PKCS#8 ECDSA P-256/P-384, Ed25519 or RSA key".into(),
            ));
        };
        let raw = match &inner {
            Inner::Ecdsa(k) => k.public_key().as_ref().to_vec(),
            Inner::Ed25519(k) => k.public_key().as_ref().to_vec(),
            Inner::Rsa(k) => k.public_key().as_ref().to_vec(),
        };
        let spki = spki_from_raw(alg, &raw);
        Ok(KeySigner {
            alg,
            inner,
            spki,
            raw,
            rng,
        })
    }

    /// Loads a `PRIVATE KEY` PEM (unencrypted PKCS#8) or an `EC PRIVATE KEY`-free PKCS#8 PEM.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] on anything else; encrypted keys go through
    /// [`keyfile::decode`](crate::keyfile::decode).
    pub fn from_pem(pem_text: &str) -> Result<Self, KeyError> {
        let p = pem::parse(pem_text).map_err(|e| KeyError::Malformed(e.to_string()))?;
        if p.tag() != "PRIVATE KEY" {
            return Err(KeyError::Malformed(format!(
                "expected a PKCS#8 \"PRIVATE KEY\" PEM, found {:?}",
                p.tag()
            )));
        }
        Self::from_pkcs8(p.contents())
    }
}

impl Signer for KeySigner {
    fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    fn public_key_raw(&self) -> &[u8] {
        &self.raw
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.inner {
            Inner::Ecdsa(k) => k
                .sign(&self.rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
            Inner::Ed25519(k) => Ok(k.sign(msg).as_ref().to_vec()),
            Inner::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &self.rng, msg, &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
        }
    }
}

/// Builds a DER SubjectPublicKeyInfo from the raw public key bits.
pub(crate) fn spki_from_raw(alg: KeyAlgorithm, raw: &[u8]) -> Vec<u8> {
    use yasna::models::ObjectIdentifier as Oid;
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| match alg {
                KeyAlgorithm::EcdsaP256 => {
                    w.next()
                        .write_oid(&Oid::from_slice(&[1, 2, 840, 10045, 2, 1]));
                    w.next()
                        .write_oid(&Oid::from_slice(&[1, 2, 840, 10045, 3, 1, 7]));
                }
                KeyAlgorithm::EcdsaP384 => {
                    w.next()
                        .write_oid(&Oid::from_slice(&[1, 2, 840, 10045, 2, 1]));
                    w.next().write_oid(&Oid::from_slice(&[1, 3, 132, 0, 34]));
                }
                KeyAlgorithm::Ed25519 => {
                    w.next().write_oid(&Oid::from_slice(&[1, 3, 101, 112]));
                }
                KeyAlgorithm::RsaSha256 => {
                    w.next()
                        .write_oid(&Oid::from_slice(&[1, 2, 840, 113549, 1, 1, 1]));
                    w.next().write_null();
                }
            });
            w.next().write_bitvec_bytes(raw, raw.len() * 8);
        })
    })
}

/// Adapts a borrowed [`Signer`] to rcgen's `SigningKey`, so rcgen builds and our signer signs.
pub(crate) struct RcgenKey<'a>(pub(crate) &'a dyn Signer);

impl rcgen::PublicKeyData for RcgenKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key_raw()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.algorithm().to_rcgen()
    }
}

impl rcgen::SigningKey for RcgenKey<'_> {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// Adapts a shared [`Signer`] to rcgen's `SigningKey` (for issuers kept for the process's life).
pub(crate) struct SharedKey(pub(crate) std::sync::Arc<dyn Signer>);

impl rcgen::PublicKeyData for SharedKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key_raw()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.algorithm().to_rcgen()
    }
}

impl rcgen::SigningKey for SharedKey {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        RcgenKey(&*self.0).sign(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_sign_verifiably() {
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
        ] {
            let key = generate(alg).unwrap();
            let s = KeySigner::from_pkcs8(key.as_der()).unwrap();
            assert_eq!(s.algorithm(), alg);
            let sig = s.sign(b"hello").unwrap();
            let verify_alg: &dyn signature::VerificationAlgorithm = match alg {
                KeyAlgorithm::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
                KeyAlgorithm::EcdsaP384 => &signature::ECDSA_P384_SHA384_ASN1,
                _ => &signature::ED25519,
            };
            signature::UnparsedPublicKey::new(verify_alg, s.public_key_raw())
                .verify(b"hello", &sig)
                .unwrap();
            // the SPKI we build parses and carries the same key bits
            use x509_parser::prelude::FromDer as _;
            let (_, spki) =
                x509_parser::x509::SubjectPublicKeyInfo::from_der(s.spki_der()).unwrap();
            assert_eq!(&*spki.subject_public_key.data, s.public_key_raw());
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(KeySigner::from_pkcs8(b"not a key").is_err());
        assert!(
            KeySigner::from_pem(
                "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"
            )
            .is_err()
        );
        assert!(generate(KeyAlgorithm::RsaSha256).is_err());
    }
}
