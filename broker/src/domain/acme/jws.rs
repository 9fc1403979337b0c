//! ACME request authentication (RFC 8555 §6.2-6.4): a flattened JWS JSON object whose
//! protected header carries `alg`, `nonce`, `url` and exactly one of `jwk` (new accounts,
//! revocation by certificate key) or `kid` (the account URL).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use postern_certs::jws::{Jwk, JwsAlg};

use super::error::{AcmeError, AcmeProblem, AcmeResult};

/// The algorithms an account key may sign with.
pub const ALGORITHMS: [&str; 4] = ["ES256", "ES384", "EdDSA", "RS256"];

/// The flattened JWS as it arrives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Flattened {
    protected: String,
    payload: String,
    signature: String,
}

/// The protected header members ACME uses.
#[derive(Debug, Clone, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    jwk: Option<Jwk>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// Who signed: a key (for `newAccount`, `revokeCert` by certificate key) or an account URL.
#[derive(Debug, Clone)]
pub enum Signer {
    /// The header's `jwk`.
    Key(Jwk),
    /// The header's `kid`.
    Account(String),
}

/// A parsed, not yet verified, ACME request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The algorithm.
    pub alg: JwsAlg,
    /// The nonce.
    pub nonce: String,
    /// The URL the client meant.
    pub url: String,
    /// Who signed.
    pub signer: Signer,
    signing_input: String,
    signature: Vec<u8>,
    /// The decoded payload; empty for POST-as-GET.
    pub payload: Vec<u8>,
}

fn b64(what: &str, s: &str) -> AcmeResult<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .map_err(|_| AcmeError::malformed(format!("{what} is not base64url without padding")))
}

impl Request {
    /// Parses a request body.
    ///
    /// # Errors
    /// `malformed` (not a flattened JWS, bad base64, header not JSON, both or neither of `jwk`
    /// and `kid`, `crit`), `badSignatureAlgorithm` (`none`, HMAC, others), `badNonce` (no nonce),
    /// `unauthorized` (no url).
    pub fn parse(body: &[u8]) -> AcmeResult<Self> {
        let f: Flattened = serde_json::from_slice(body).map_err(|e| {
            AcmeError::malformed(format!("the body is not a flattened JWS JSON object: {e}"))
        })?;
        let header_bytes = b64("protected", &f.protected)?;
        let header: Header = serde_json::from_slice(&header_bytes)
            .map_err(|e| AcmeError::malformed(format!("the protected header: {e}")))?;
        if header.crit.is_some() {
            return Err(AcmeError::malformed("crit is not supported"));
        }
        let alg = match JwsAlg::from_header_value(&header.alg) {
            Ok(a) if ALGORITHMS.contains(&a.as_str()) => a,
            _ => {
                return Err(AcmeError::new(
                    AcmeProblem::BadSignatureAlgorithm,
                    format!(
                        "alg {:?} is not accepted; use one of {}",
                        header.alg,
                        ALGORITHMS.join(", ")
                    ),
                ));
            }
        };
        let signer = match (header.jwk, header.kid) {
            (Some(j), None) => Signer::Key(j),
            (None, Some(k)) => Signer::Account(k),
            _ => {
                return Err(AcmeError::malformed(
                    "the protected header must hold exactly one of jwk and kid",
                ));
            }
        };
        let nonce = header.nonce.filter(|n| !n.is_empty()).ok_or_else(|| {
            AcmeError::new(AcmeProblem::BadNonce, "the protected header has no nonce")
        })?;
        let url = header
            .url
            .ok_or_else(|| AcmeError::unauthorized("the protected header has no url"))?;
        let payload = b64("payload", &f.payload)?;
        let signature = b64("signature", &f.signature)?;
        Ok(Request {
            alg,
            nonce,
            url,
            signer,
            signing_input: format!("{}.{}", f.protected, f.payload),
            signature,
            payload,
        })
    }

    /// Verifies the signature with `key`.
    ///
    /// # Errors
    /// `badPublicKey` when the key is not usable with the algorithm, `malformed` when the
    /// signature does not verify.
    pub fn verify(&self, key: &Jwk) -> AcmeResult<()> {
        match key.jws_alg() {
            Ok(a) if a == self.alg => {}
            Ok(a) => {
                return Err(AcmeError::malformed(format!(
                    "alg {} does not match the key, which signs with {a}",
                    self.alg
                )));
            }
            Err(e) => return Err(AcmeError::new(AcmeProblem::BadPublicKey, e.to_string())),
        }
        key.verify(self.alg, self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| AcmeError::malformed("the JWS signature does not verify"))
    }

    /// The payload as JSON of type `T`; POST-as-GET (empty payload) is refused.
    ///
    /// # Errors
    /// `malformed`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> AcmeResult<T> {
        if self.payload.is_empty() {
            return Err(AcmeError::malformed("this request needs a JSON payload"));
        }
        serde_json::from_slice(&self.payload)
            .map_err(|e| AcmeError::malformed(format!("the payload: {e}")))
    }

    /// Whether this is a POST-as-GET (empty payload).
    pub fn is_post_as_get(&self) -> bool {
        self.payload.is_empty()
    }
}

/// Verifies a JWS that is itself a payload (keyChange's inner JWS, EAB's MAC) and returns its
/// protected header and payload; the caller checks the key.
///
/// # Errors
/// `malformed`.
pub fn parse_inner(
    value: &serde_json::Value,
) -> AcmeResult<(serde_json::Value, Vec<u8>, String, Vec<u8>)> {
    let f: Flattened = serde_json::from_value(value.clone())
        .map_err(|e| AcmeError::malformed(format!("the inner JWS: {e}")))?;
    let header: serde_json::Value = serde_json::from_slice(&b64("inner protected", &f.protected)?)
        .map_err(|e| AcmeError::malformed(format!("the inner protected header: {e}")))?;
    let payload = b64("inner payload", &f.payload)?;
    let sig = b64("inner signature", &f.signature)?;
    Ok((
        header,
        payload,
        format!("{}.{}", f.protected, f.payload),
        sig,
    ))
}
