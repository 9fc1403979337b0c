//! RSA keys for SCEP: the RA's (signs answers, decrypts requests) and, in tests, a client's.

use ring::signature::RsaKeyPair;
use rsa::pkcs8::DecodePrivateKey as _;

use super::DigestAlgorithm;
use super::der::cert_ids;
use crate::error::{Error, KeyError};

/// An RSA private key loaded twice from the same PKCS#8: ring signs (SHA-256, SHA-512), the
/// `rsa` crate decrypts key transport and signs the SHA-1 answers ring does not make.
pub struct RsaKey {
    ring: Option<RsaKeyPair>,
    rsa: rsa::RsaPrivateKey,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaKey(..)")
    }
}

impl RsaKey {
    /// Loads an RSA key from PKCS#8 DER. Keys under 2048 bits (which ring does not sign with)
    /// are signed with by the `rsa` crate.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] when the bytes are not an RSA PKCS#8 key.
    pub fn from_pkcs8(pkcs8_der: &[u8]) -> Result<Self, Error> {
        let rsa = rsa::RsaPrivateKey::from_pkcs8_der(pkcs8_der)
            .map_err(|e| KeyError::Malformed(format!("rsa pkcs#8: {e}")))?;
        let ring = RsaKeyPair::from_pkcs8(pkcs8_der).ok();
        Ok(RsaKey { ring, rsa })
    }

    /// The public key as DER SubjectPublicKeyInfo.
    ///
    /// # Errors
    /// [`Error::Internal`] when encoding fails.
    pub fn spki_der(&self) -> Result<Vec<u8>, Error> {
        use rsa::pkcs8::EncodePublicKey as _;
        self.rsa
            .to_public_key()
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|e| Error::Internal(format!("rsa spki: {e}")))
    }

    /// RSA PKCS#1 v1.5 signature over `message` with `digest`.
    pub(crate) fn sign(&self, digest: DigestAlgorithm, message: &[u8]) -> Result<Vec<u8>, Error> {
        let ring_alg: Option<&'static dyn ring::signature::RsaEncoding> = match digest {
            DigestAlgorithm::Sha1 => None,
            DigestAlgorithm::Sha256 => Some(&ring::signature::RSA_PKCS1_SHA256),
            DigestAlgorithm::Sha512 => Some(&ring::signature::RSA_PKCS1_SHA512),
        };
        if let (Some(pair), Some(alg)) = (&self.ring, ring_alg) {
            let mut sig = vec![0; pair.public().modulus_len()];
            pair.sign(alg, &ring::rand::SystemRandom::new(), message, &mut sig)
                .map_err(|_| Error::Key(KeyError::Sign))?;
            return Ok(sig);
        }
        let hashed = digest.digest(message);
        let scheme = rsa::Pkcs1v15Sign {
            hash_len: Some(hashed.len()),
            prefix: digest.digest_info_prefix().into(),
        };
        self.rsa
            .sign_with_rng(&mut rsa::rand_core::OsRng, scheme, &hashed)
            .map_err(|_| Error::Key(KeyError::Sign))
    }

    /// RSA PKCS#1 v1.5 decryption (key transport).
    pub(crate) fn decrypt(&self, ciphertext: &[u8]) -> Option<Vec<u8>> {
        self.rsa
            .decrypt_blinded(&mut rsa::rand_core::OsRng, rsa::Pkcs1v15Encrypt, ciphertext)
            .ok()
    }
}

/// The SCEP registration authority: its RSA key, its certificate (digitalSignature and
/// keyEncipherment), and the chain sent with it in `GetCACert` (the issuing CA, then up).
#[derive(Debug)]
pub struct Ra {
    pub(crate) key: RsaKey,
    pub(crate) cert_der: Vec<u8>,
    pub(crate) chain: Vec<Vec<u8>>,
}

impl Ra {
    /// An RA from its PKCS#8 key, its certificate (DER) and the CA chain above it (DER).
    ///
    /// # Errors
    /// [`KeyError::Malformed`] for a key that is not RSA or a certificate that does not
    /// certify it.
    pub fn new(pkcs8_der: &[u8], cert_der: Vec<u8>, chain: Vec<Vec<u8>>) -> Result<Self, Error> {
        let key = RsaKey::from_pkcs8(pkcs8_der)?;
        let ids = cert_ids(&cert_der)
            .map_err(|_| KeyError::Malformed("the RA certificate does not parse".into()))?;
        if ids.spki != key.spki_der()? {
            return Err(
                KeyError::Malformed("the RA certificate certifies another key".into()).into(),
            );
        }
        Ok(Ra {
            key,
            cert_der,
            chain,
        })
    }

    /// The RA certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The chain above the RA certificate (DER).
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The degenerate PKCS#7 a `GetCACert` answers: the RA certificate, then the chain.
    pub fn ca_certs(&self) -> Vec<u8> {
        let mut certs = vec![self.cert_der.clone()];
        certs.extend(self.chain.iter().cloned());
        super::certs_only(&certs, &[])
    }
}
