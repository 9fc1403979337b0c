//! Interim signing keys for the transmitter, with exactly the surface of the broker's key
//! module (`domain::keys`): [`Keys::ephemeral`], [`Keys::sign_jws`] and [`Keys::jwks`]. When
//! that module is present this file goes and `ssf/mod.rs` imports `crate::domain::keys`
//! instead; nothing else changes.
//!
//! The keys live in memory only: one RSA 2048 key (generated with the `rsa` crate, signing with
//! ring) and one P-256 key, both made at start-up, so the JWKS changes on every restart.

use std::fmt;

use postern_certs::jws::{Jwk, Jwks, sign_compact};
use postern_certs::signer::generate;
use postern_certs::{KeyAlgorithm, KeySigner};
use time::OffsetDateTime;

use crate::domain::{DomainError, DomainResult};

/// A JWS algorithm the broker signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlg {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
}

/// The broker's JWS signing keys.
pub struct Keys {
    es256: KeySigner,
    rs256: KeySigner,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

impl Keys {
    /// Fresh keys held only in memory.
    ///
    /// # Errors
    /// Internal when key generation fails.
    pub fn ephemeral(_now: OffsetDateTime) -> DomainResult<Keys> {
        use rsa::pkcs8::EncodePrivateKey as _;
        let es = generate(KeyAlgorithm::EcdsaP256).map_err(DomainError::internal)?;
        let es256 = KeySigner::from_pkcs8(es.as_der()).map_err(DomainError::internal)?;
        let mut rng = rsa::rand_core::OsRng;
        let rsa_key = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(DomainError::internal)?;
        let der = rsa_key
            .to_pkcs8_der()
            .map_err(|e| DomainError::internal(format!("rsa key: {e}")))?;
        let rs256 = KeySigner::from_pkcs8(der.as_bytes()).map_err(DomainError::internal)?;
        Ok(Keys { es256, rs256 })
    }

    /// A compact JWS with the protected header `{alg, kid, typ}`.
    ///
    /// # Errors
    /// Internal when signing fails.
    pub fn sign_jws(&self, alg: JwsAlg, typ: &str, payload: &[u8]) -> DomainResult<String> {
        let signer = match alg {
            JwsAlg::Es256 => &self.es256,
            JwsAlg::Rs256 => &self.rs256,
        };
        sign_compact(signer, Some(typ), serde_json::Map::new(), payload)
            .map_err(DomainError::internal)
    }

    /// The public keys as a JWK Set (RFC 7517).
    pub fn jwks(&self, _now: OffsetDateTime) -> serde_json::Value {
        let keys = [&self.es256, &self.rs256]
            .into_iter()
            .filter_map(|s| Jwk::from_signer(s).ok())
            .collect();
        serde_json::to_value(Jwks { keys }).unwrap_or_else(|_| serde_json::json!({"keys": []}))
    }
}
