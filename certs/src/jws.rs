//! Compact JWS (RFC 7515), JWK and JWK Sets (RFC 7517, RFC 7518, RFC 8037) and JWK
//! thumbprints (RFC 7638), on ring.
//!
//! Signing ([`sign_compact`]) works with any [`Signer`]: ECDSA P-256 (`ES256`), ECDSA P-384
//! (`ES384`), Ed25519 (`EdDSA`) and RSA PKCS#1 v1.5 with SHA-256 (`RS256`). The protected header
//! always carries `alg` and `kid`, the RFC 7638 thumbprint of the signer's public [`Jwk`], so a
//! [`Jwks`] built with [`Jwk::from_signer`] verifies the token as it is.
//!
//! Verification ([`verify_compact`], [`verify_compact_with_key`]) is strict:
//!
//! - exactly three `.`-separated parts, each base64url without padding and without
//!   non-canonical trailing bits;
//! - the header is a UTF-8 JSON object with no duplicate member names;
//! - `alg` must be one of the four algorithms above and must be the one the key is for:
//!   `none`, the HMAC algorithms and every other value are refused, and an ECDSA header never
//!   verifies with an Ed25519 or RSA key (nor the other way round);
//! - a `crit` member is refused unless it is an empty array, since no extension is understood;
//! - the key comes from the caller only: `jwk`, `jku`, `x5u` and `x5c` header members are never
//!   used to find a key.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::signer::{KeyAlgorithm, Signer};

/// A JWS signature algorithm postern signs and verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum JwsAlg {
    /// `ES256`: ECDSA on P-256 with SHA-256, signature `r || s` of 32 bytes each.
    #[serde(rename = "ES256")]
    Es256,
    /// `ES384`: ECDSA on P-384 with SHA-384, signature `r || s` of 48 bytes each.
    #[serde(rename = "ES384")]
    Es384,
    /// `EdDSA` with Ed25519 (RFC 8037).
    #[serde(rename = "EdDSA")]
    EdDsa,
    /// `RS256`: RSASSA-PKCS1-v1_5 with SHA-256 (keys of 2048 to 8192 bits).
    #[serde(rename = "RS256")]
    Rs256,
}

impl JwsAlg {
    /// The `alg` header value (`ES256`, `ES384`, `EdDSA`, `RS256`).
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlg::Es256 => "ES256",
            JwsAlg::Es384 => "ES384",
            JwsAlg::EdDsa => "EdDSA",
            JwsAlg::Rs256 => "RS256",
        }
    }

    /// The JWS algorithm for signatures made by a key of algorithm `alg`.
    ///
    /// # Errors
    /// None today: every [`KeyAlgorithm`] has a JWS algorithm. The `Result` leaves room for key
    /// algorithms that have none.
    pub fn for_key(alg: KeyAlgorithm) -> Result<JwsAlg> {
        match alg {
            KeyAlgorithm::EcdsaP256 => Ok(JwsAlg::Es256),
            KeyAlgorithm::EcdsaP384 => Ok(JwsAlg::Es384),
            KeyAlgorithm::Ed25519 => Ok(JwsAlg::EdDsa),
            KeyAlgorithm::RsaSha256 => Ok(JwsAlg::Rs256),
        }
    }

    /// Parses an `alg` header value.
    ///
    /// # Errors
    /// [`Error::Jws`] for `none`, the HMAC algorithms and anything not listed in [`JwsAlg`].
    pub fn from_header_value(s: &str) -> Result<JwsAlg> {
        match s {
            "ES256" => Ok(JwsAlg::Es256),
            "ES384" => Ok(JwsAlg::Es384),
            "EdDSA" => Ok(JwsAlg::EdDsa),
            "RS256" => Ok(JwsAlg::Rs256),
            "none" => Err(jws_err("alg \"none\" is refused")),
            s if s.starts_with("HS") => Err(jws_err(format!(
                "symmetric alg {s:?} is refused; only public-key signatures are accepted"
            ))),
            s => Err(jws_err(format!("unsupported alg {s:?}"))),
        }
    }

    /// Length of the fixed-size ECDSA coordinates and signature halves, for ECDSA algorithms.
    fn ecdsa_coordinate_len(self) -> Option<usize> {
        match self {
            JwsAlg::Es256 => Some(32),
            JwsAlg::Es384 => Some(48),
            JwsAlg::EdDsa | JwsAlg::Rs256 => None,
        }
    }
}

impl fmt::Display for JwsAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JwsAlg {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        JwsAlg::from_header_value(s)
    }
}

/// A public JSON Web Key: EC (`P-256`, `P-384`), OKP (`Ed25519`) or RSA.
///
/// Members postern does not use (`key_ops`, `x5c`, private members such as `d`, ...) are ignored
/// when reading and never written.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Jwk {
    /// Key type: `EC`, `OKP` or `RSA`.
    pub kty: String,
    /// Curve, for `EC` (`P-256`, `P-384`) and `OKP` (`Ed25519`) keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// The x coordinate (`EC`) or the public key (`OKP`), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// The y coordinate (`EC`), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// The modulus (`RSA`), base64url big-endian.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// The public exponent (`RSA`), base64url big-endian.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Key ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The one algorithm the key is for; when present, verification with another is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use (`sig`); when present and not `sig`, verification is refused.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl Jwk {
    /// The public JWK of `s`, with `kid` set to its RFC 7638 thumbprint, `alg` to its JWS
    /// algorithm and `use` to `sig`.
    ///
    /// # Errors
    /// [`Error::Jws`] when the signer's public key bits are not what its algorithm implies.
    pub fn from_signer(s: &dyn Signer) -> Result<Jwk> {
        let alg = JwsAlg::for_key(s.algorithm())?;
        let raw = s.public_key_raw();
        let mut jwk = Jwk {
            kty: String::new(),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            kid: None,
            alg: Some(alg.as_str().to_owned()),
            use_: Some("sig".to_owned()),
        };
        match alg {
            JwsAlg::Es256 | JwsAlg::Es384 => {
                let (len, crv) = match alg {
                    JwsAlg::Es256 => (32, "P-256"),
                    _ => (48, "P-384"),
                };
                jwk.set_ec_point(crv, len, raw)?;
            }
            JwsAlg::EdDsa => {
                if raw.len() != 32 {
                    return Err(jws_err("signer's ed25519 public key is not 32 bytes"));
                }
                jwk.kty = "OKP".to_owned();
                jwk.crv = Some("Ed25519".to_owned());
                jwk.x = Some(URL_SAFE_NO_PAD.encode(raw));
            }
            JwsAlg::Rs256 => {
                let (n, e) = parse_rsa_public_key(raw)?;
                jwk.kty = "RSA".to_owned();
                jwk.n = Some(URL_SAFE_NO_PAD.encode(n));
                jwk.e = Some(URL_SAFE_NO_PAD.encode(e));
            }
        }
        jwk.kid = Some(jwk.thumbprint());
        Ok(jwk)
    }

    /// Sets `kty`, `crv`, `x` and `y` from an uncompressed SEC1 point (`0x04 || x || y`).
    fn set_ec_point(&mut self, crv: &str, len: usize, point: &[u8]) -> Result<()> {
        match point.split_first() {
            Some((4, xy)) if xy.len() == 2 * len => {
                let (x, y) = xy.split_at(len);
                self.kty = "EC".to_owned();
                self.crv = Some(crv.to_owned());
                self.x = Some(URL_SAFE_NO_PAD.encode(x));
                self.y = Some(URL_SAFE_NO_PAD.encode(y));
                Ok(())
            }
            _ => Err(jws_err(format!(
                "{crv} public key is not an uncompressed point"
            ))),
        }
    }

    /// The public JWK of a DER SubjectPublicKeyInfo (EC P-256/P-384, Ed25519, RSA), with no
    /// `kid`, `alg` or `use`: for comparing a certificate's key with a JWS key by
    /// [thumbprint](Self::thumbprint).
    ///
    /// # Errors
    /// [`Error::Jws`] for other key types or malformed keys.
    pub fn from_spki_der(der: &[u8]) -> Result<Jwk> {
        use x509_parser::prelude::FromDer as _;
        let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| jws_err(format!("not a subjectPublicKeyInfo: {e}")))?;
        if !rest.is_empty() {
            return Err(jws_err("bytes after the subjectPublicKeyInfo"));
        }
        let raw: &[u8] = &spki.subject_public_key.data;
        let oid = spki.algorithm.algorithm.to_id_string();
        let mut jwk = Jwk {
            kty: String::new(),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            kid: None,
            alg: None,
            use_: None,
        };
        match oid.as_str() {
            "1.2.840.10045.2.1" => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string());
                let (len, crv) = match curve.as_deref() {
                    Some("1.2.840.10045.3.1.7") => (32, "P-256"),
                    Some("1.3.132.0.34") => (48, "P-384"),
                    other => return Err(jws_err(format!("unsupported ec curve {other:?}"))),
                };
                jwk.set_ec_point(crv, len, raw)?;
            }
            "1.3.101.112" => {
                if raw.len() != 32 {
                    return Err(jws_err("ed25519 key is not 32 bytes"));
                }
                jwk.kty = "OKP".to_owned();
                jwk.crv = Some("Ed25519".to_owned());
                jwk.x = Some(URL_SAFE_NO_PAD.encode(raw));
            }
            "1.2.840.113549.1.1.1" => {
                let (n, e) = parse_rsa_public_key(raw)?;
                jwk.kty = "RSA".to_owned();
                jwk.n = Some(URL_SAFE_NO_PAD.encode(n));
                jwk.e = Some(URL_SAFE_NO_PAD.encode(e));
            }
            other => return Err(jws_err(format!("unsupported key algorithm {other}"))),
        }
        Ok(jwk)
    }

    /// The RFC 7638 thumbprint: base64url (no padding) of the SHA-256 of the JSON object made of
    /// the key's required members only (`crv`, `kty`, `x`, `y` for EC; `crv`, `kty`, `x` for
    /// OKP; `e`, `kty`, `n` for RSA), in lexicographic order, without whitespace.
    ///
    /// A key missing a required member (which [`verify`](Self::verify) refuses) is hashed with
    /// an empty string in its place; a key of another type is hashed as `{"kty":...}` alone.
    pub fn thumbprint(&self) -> String {
        let mut members: BTreeMap<&str, &str> = BTreeMap::new();
        members.insert("kty", &self.kty);
        fn opt(v: &Option<String>) -> &str {
            v.as_deref().unwrap_or("")
        }
        match self.kty.as_str() {
            "EC" => {
                members.insert("crv", opt(&self.crv));
                members.insert("x", opt(&self.x));
                members.insert("y", opt(&self.y));
            }
            "OKP" => {
                members.insert("crv", opt(&self.crv));
                members.insert("x", opt(&self.x));
            }
            "RSA" => {
                members.insert("e", opt(&self.e));
                members.insert("n", opt(&self.n));
            }
            _ => {}
        }
        // A map of strings always serializes; the fallback is never taken.
        let canonical = serde_json::to_string(&members).unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// The JWS algorithm this key verifies: `ES256` for P-256, `ES384` for P-384, `EdDSA` for
    /// Ed25519, `RS256` for RSA.
    ///
    /// # Errors
    /// [`Error::Jws`] for other key types and curves, or when the key's `alg` member names
    /// another algorithm.
    pub fn jws_alg(&self) -> Result<JwsAlg> {
        let implied = match (self.kty.as_str(), self.crv.as_deref()) {
            ("EC", Some("P-256")) => JwsAlg::Es256,
            ("EC", Some("P-384")) => JwsAlg::Es384,
            ("OKP", Some("Ed25519")) => JwsAlg::EdDsa,
            ("RSA", _) => JwsAlg::Rs256,
            (kty, crv) => {
                return Err(jws_err(format!(
                    "unsupported key type {kty:?} with curve {crv:?}"
                )));
            }
        };
        if let Some(a) = &self.alg
            && a != implied.as_str()
        {
            return Err(jws_err(format!(
                "key's alg {a:?} does not match its type ({implied})"
            )));
        }
        Ok(implied)
    }

    /// Verifies `sig`, a JWS signature (ECDSA in the fixed `r || s` form), over `signing_input`.
    ///
    /// # Errors
    /// [`Error::Jws`] when `alg` is not the algorithm of this key, when the key's `use` is not
    /// `sig`, when the key is malformed, or when the signature does not verify.
    pub fn verify(&self, alg: JwsAlg, signing_input: &[u8], sig: &[u8]) -> Result<()> {
        let key_alg = self.jws_alg()?;
        if key_alg != alg {
            return Err(jws_err(format!(
                "alg {alg} does not match the key, which is for {key_alg}"
            )));
        }
        if let Some(u) = &self.use_
            && u != "sig"
        {
            return Err(jws_err(format!("key's use is {u:?}, not \"sig\"")));
        }
        let bad_sig = || jws_err("signature does not verify");
        match alg {
            JwsAlg::Es256 | JwsAlg::Es384 => {
                let len = alg.ecdsa_coordinate_len().unwrap_or(0);
                let x = b64_member("x", self.x.as_deref())?;
                let y = b64_member("y", self.y.as_deref())?;
                if x.len() != len || y.len() != len {
                    return Err(jws_err(format!(
                        "ec key coordinates must be {len} bytes each"
                    )));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let ring_alg = if alg == JwsAlg::Es256 {
                    &signature::ECDSA_P256_SHA256_FIXED
                } else {
                    &signature::ECDSA_P384_SHA384_FIXED
                };
                UnparsedPublicKey::new(ring_alg, &point)
                    .verify(signing_input, sig)
                    .map_err(|_| bad_sig())
            }
            JwsAlg::EdDsa => {
                let x = b64_member("x", self.x.as_deref())?;
                if x.len() != 32 {
                    return Err(jws_err("ed25519 key must be 32 bytes"));
                }
                UnparsedPublicKey::new(&signature::ED25519, &x)
                    .verify(signing_input, sig)
                    .map_err(|_| bad_sig())
            }
            JwsAlg::Rs256 => {
                let n = b64_member("n", self.n.as_deref())?;
                let e = b64_member("e", self.e.as_deref())?;
                let key = RsaPublicKeyComponents {
                    n: strip_leading_zeros(&n),
                    e: strip_leading_zeros(&e),
                };
                key.verify(&signature::RSA_PKCS1_2048_8192_SHA256, signing_input, sig)
                    .map_err(|_| bad_sig())
            }
        }
    }
}

/// A JWK Set (RFC 7517 §5).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The first key whose `kid` is `kid`.
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

/// A verified JWS: its protected header and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

/// Signs `payload` into a compact JWS.
///
/// The protected header holds `alg` (from the signer's key), `kid` (the RFC 7638 thumbprint of
/// the signer's public [`Jwk`]), `typ` when given, then the members of `extra_header`, which
/// replace `kid` and `typ` when they name them.
///
/// # Errors
/// [`Error::Jws`] when `extra_header` sets `alg` or `crit`, or when the signer returns a
/// malformed ECDSA signature; [`Error::Key`] when the signer fails.
pub fn sign_compact(
    signer: &dyn Signer,
    typ: Option<&str>,
    extra_header: Map<String, Value>,
    payload: &[u8],
) -> Result<String> {
    refuse_reserved(&extra_header)?;
    let alg = JwsAlg::for_key(signer.algorithm())?;
    let jwk = Jwk::from_signer(signer)?;
    let mut header = Map::new();
    header.insert("alg".into(), Value::String(alg.as_str().into()));
    header.insert("kid".into(), Value::String(jwk.thumbprint()));
    if let Some(t) = typ {
        header.insert("typ".into(), Value::String(t.into()));
    }
    header.extend(extra_header);
    let header_json = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| Error::Internal(format!("jws header: {e}")))?;
    sign_compact_with_header(signer, &header_json, payload)
}

/// Signs `payload` into a flattened JWS JSON object (RFC 7515 §7.2.2), as ACME requests are:
/// `{"protected", "payload", "signature"}`. The protected header holds `alg` (from the
/// signer's key) and the members of `header` (ACME: `nonce`, `url`, and `jwk` or `kid`).
///
/// # Errors
/// [`Error::Jws`] when `header` sets `alg` or `crit`; [`Error::Key`] when the signer fails.
pub fn sign_flattened(
    signer: &dyn Signer,
    header: Map<String, Value>,
    payload: &[u8],
) -> Result<Value> {
    refuse_reserved(&header)?;
    let alg = JwsAlg::for_key(signer.algorithm())?;
    let mut h = Map::new();
    h.insert("alg".into(), Value::String(alg.as_str().into()));
    h.extend(header);
    let header_json = serde_json::to_vec(&Value::Object(h))
        .map_err(|e| Error::Internal(format!("jws header: {e}")))?;
    let compact = sign_compact_with_header(signer, &header_json, payload)?;
    let mut parts = compact.splitn(3, '.');
    let (Some(p), Some(b), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Error::Internal("compact jws without three parts".into()));
    };
    Ok(serde_json::json!({ "protected": p, "payload": b, "signature": sig }))
}

/// Refuses caller header members that postern sets itself (`alg`) or never sets (`crit`).
fn refuse_reserved(header: &Map<String, Value>) -> Result<()> {
    for refused in ["alg", "crit"] {
        if header.contains_key(refused) {
            return Err(jws_err(format!("header must not set {refused:?}")));
        }
    }
    Ok(())
}

/// Signs `payload` under the protected header `header_json`, taken byte for byte.
///
/// The caller makes sure the header's `alg` is the signer's.
pub(crate) fn sign_compact_with_header(
    signer: &dyn Signer,
    header_json: &[u8],
    payload: &[u8],
) -> Result<String> {
    let alg = JwsAlg::for_key(signer.algorithm())?;
    let mut out = URL_SAFE_NO_PAD.encode(header_json);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut out);
    let sig = signer.sign(out.as_bytes())?;
    let sig = match alg.ecdsa_coordinate_len() {
        Some(len) => ecdsa_der_to_fixed(&sig, len)?,
        None => sig,
    };
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut out);
    Ok(out)
}

/// Verifies a compact JWS with the key of `jwks` named by the header's `kid`.
///
/// # Errors
/// [`Error::Jws`] when the token is malformed, has no `kid` or one `jwks` does not hold, uses
/// an algorithm that is refused or that is not the key's, has a non-empty `crit`, or does not
/// verify.
pub fn verify_compact(token: &str, jwks: &Jwks) -> Result<Verified> {
    let parsed = Parsed::new(token)?;
    let kid = match parsed.header.get("kid") {
        Some(Value::String(k)) => k,
        Some(_) => return Err(jws_err("kid is not a string")),
        None => return Err(jws_err("header has no kid")),
    };
    let key = jwks
        .find(kid)
        .ok_or_else(|| jws_err(format!("no key with kid {kid:?}")))?;
    parsed.verify_with(key)
}

/// Verifies a compact JWS with `key`, whatever the header's `kid` (which need not be present).
///
/// # Errors
/// [`Error::Jws`] when the token is malformed, uses an algorithm that is refused or that is not
/// the key's, has a non-empty `crit`, or does not verify.
pub fn verify_compact_with_key(token: &str, key: &Jwk) -> Result<Verified> {
    Parsed::new(token)?.verify_with(key)
}

/// A compact JWS split and decoded, not yet verified.
struct Parsed<'a> {
    header: Map<String, Value>,
    alg: JwsAlg,
    signing_input: &'a str,
    payload: Vec<u8>,
    sig: Vec<u8>,
}

impl<'a> Parsed<'a> {
    fn new(token: &'a str) -> Result<Self> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(jws_err("a compact jws has exactly three parts"));
        };
        let header_bytes = b64("header", h)?;
        let payload = b64("payload", p)?;
        let sig = b64("signature", s)?;
        let header = serde_json::from_slice::<StrictObject>(&header_bytes)
            .map_err(|e| jws_err(format!("header is not a json object: {e}")))?
            .0;
        let alg = match header.get("alg") {
            Some(Value::String(a)) => JwsAlg::from_header_value(a)?,
            Some(_) => return Err(jws_err("alg is not a string")),
            None => return Err(jws_err("header has no alg")),
        };
        match header.get("crit") {
            None => {}
            Some(Value::Array(names)) if names.is_empty() => {}
            Some(Value::Array(names)) => {
                return Err(jws_err(format!(
                    "critical header extensions are not supported: {}",
                    Value::Array(names.clone())
                )));
            }
            Some(_) => return Err(jws_err("crit is not an array")),
        }
        // the signing input is the first two parts as they appear in the token
        let signing_input = &token[..h.len() + 1 + p.len()];
        Ok(Parsed {
            header,
            alg,
            signing_input,
            payload,
            sig,
        })
    }

    fn verify_with(self, key: &Jwk) -> Result<Verified> {
        key.verify(self.alg, self.signing_input.as_bytes(), &self.sig)?;
        Ok(Verified {
            header: self.header,
            payload: self.payload,
        })
    }
}

/// A JSON object read with duplicate member names refused (RFC 7515 §5.2).
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D>(d: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StrictObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a json object")
            }

            fn visit_map<A>(self, mut access: A) -> std::result::Result<StrictObject, A::Error>
            where
                A: serde::de::MapAccess<'de>,
            {
                let mut out = Map::new();
                while let Some(k) = access.next_key::<String>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!("duplicate member {k:?}")));
                    }
                    let v: Value = access.next_value()?;
                    out.insert(k, v);
                }
                Ok(StrictObject(out))
            }
        }

        d.deserialize_map(Visitor)
    }
}

fn jws_err(msg: impl Into<String>) -> Error {
    Error::Jws(msg.into())
}

/// Strict base64url: no padding, no whitespace, no non-canonical trailing bits.
fn b64(what: &str, s: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| jws_err(format!("{what} is not base64url without padding: {e}")))
}

fn b64_member(name: &str, v: Option<&str>) -> Result<Vec<u8>> {
    let v = v.ok_or_else(|| jws_err(format!("key has no {name:?} member")))?;
    b64(&format!("key member {name:?}"), v)
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

/// Splits a DER `RSAPublicKey` into its modulus and exponent, without leading zeros.
fn parse_rsa_public_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let (n, e) = crate::der::parse_der(der, |r| {
        r.read_sequence(|r| {
            let n = r.next().read_bigint_bytes()?;
            let e = r.next().read_bigint_bytes()?;
            Ok((n, e))
        })
    })
    .map_err(|e| jws_err(format!("signer's rsa public key is malformed: {e}")))?;
    if !n.1 || !e.1 {
        return Err(jws_err("signer's rsa public key has a negative component"));
    }
    Ok((
        strip_leading_zeros(&n.0).to_vec(),
        strip_leading_zeros(&e.0).to_vec(),
    ))
}

/// Converts an ASN.1 DER `Ecdsa-Sig-Value` to the JWS form: `r || s`, each left-padded to `len`.
fn ecdsa_der_to_fixed(der: &[u8], len: usize) -> Result<Vec<u8>> {
    let ((r, r_nonneg), (s, s_nonneg)) = crate::der::parse_der(der, |rd| {
        rd.read_sequence(|rd| {
            let r = rd.next().read_bigint_bytes()?;
            let s = rd.next().read_bigint_bytes()?;
            Ok((r, s))
        })
    })
    .map_err(|e| jws_err(format!("signer returned a malformed ecdsa signature: {e}")))?;
    if !r_nonneg || !s_nonneg {
        return Err(jws_err(
            "signer returned a negative ecdsa signature component",
        ));
    }
    let mut out = Vec::with_capacity(2 * len);
    for v in [&r, &s] {
        let v = strip_leading_zeros(v);
        if v.len() > len {
            return Err(jws_err(
                "signer returned an oversized ecdsa signature component",
            ));
        }
        out.resize(out.len() + len - v.len(), 0);
        out.extend_from_slice(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
