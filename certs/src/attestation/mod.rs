//! Device attestation for ACME `device-attest-01` (draft-ietf-acme-device-attest): an
//! attestation object (WebAuthn §6.5.4 shape, CBOR `{fmt, attStmt, [authData]}`) in, typed
//! [`Evidence`] out, or an [`AttestError`] saying why not.
//!
//! Formats: [`apple`] (Apple Managed Device Attestation), [`android`] (`android-key`, Android
//! Key Attestation) and [`tpm`] (TPM 2.0 `certify`). Each chains to its vendor's roots
//! ([`TrustRoots::builtin`], replaced or extended per provisioner), checks freshness against the
//! challenge (Apple: freshness code = SHA-256(token); Android and TPM: the key authorization),
//! and matches the order's device identifier.
//!
//! **Architecture Invariant:** a verification never reads the clock or the network: the time
//! and the Android revocation list ([`android::RevocationList`]) come in as arguments.
//!
//! Built-in roots (`attestation/roots/`), SHA-256 of the DER:
//!
//! | root | source | SHA-256 |
//! |---|---|---|
//! | Apple Enterprise Attestation Root CA | <https://www.apple.com/certificateauthority/private/> | `ccf59ef8fcb3017d97f8b5fa6fa90e7a3f9283f76b55ac6cf6eda8b8b949f05b` |
//! | Google hardware attestation root (RSA-4096, 2022 certificate of the 2016 key) | <https://developer.android.com/privacy-and-security/security-key-attestation#root_certificate> | `cedb1cb6dc896ae5ec797348bce9286753c2b38ee71ce0fbe34a9a1248800dfc` |
//! | Google Key Attestation CA1 (ECDSA P-384, 2025) | same page | `6d9db4ce6c5c0b293166d08986e05774a8776ceb525d9e4329520de12ba4bcc0` |
//! | Microsoft TPM Root Certificate Authority 2014 | <http://www.microsoft.com/pkiops/certs/Microsoft%20TPM%20Root%20Certificate%20Authority%202014.crt> | `870c7a35ceab3d59979f2c6a524042d404cb71518004350925fb2ced79a999da` |

pub mod android;
pub mod apple;
pub mod chain;
pub mod tpm;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::collections::BTreeMap;
use std::fmt;

use ciborium::value::Value;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use chain::{ChainCache, TrustRoots};

/// The largest attestation object accepted (a chain of a few certificates fits many times).
pub const MAX_ATT_OBJ: usize = 64 * 1024;

/// An attestation statement format (the `fmt` of the attestation object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Format {
    /// `apple`: Apple Managed Device Attestation.
    #[serde(rename = "apple")]
    Apple,
    /// `android-key`: Android Key Attestation.
    #[serde(rename = "android-key")]
    AndroidKey,
    /// `tpm`: a TPM 2.0 key certified by an attestation key.
    #[serde(rename = "tpm")]
    Tpm,
}

impl Format {
    /// Every format, in a fixed order.
    pub const ALL: [Format; 3] = [Format::Apple, Format::AndroidKey, Format::Tpm];

    /// The `fmt` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Apple => "apple",
            Format::AndroidKey => "android-key",
            Format::Tpm => "tpm",
        }
    }

    /// The format named by a `fmt` string (case-sensitive, as WebAuthn registers them).
    pub fn from_fmt(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two identifier types of draft-ietf-acme-device-attest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IdentifierKind {
    /// `permanent-identifier` (RFC 4043): `value ["/" assigner-oid]`.
    #[serde(rename = "permanent-identifier")]
    PermanentIdentifier,
    /// `hardware-module` (RFC 4108): `serial "/" hw-type-oid`.
    #[serde(rename = "hardware-module")]
    HardwareModule,
}

impl IdentifierKind {
    /// The ACME identifier type string.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::PermanentIdentifier => "permanent-identifier",
            IdentifierKind::HardwareModule => "hardware-module",
        }
    }
}

/// An order's device identifier, already checked against the draft's grammar.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceIdentifier {
    /// Which type.
    pub kind: IdentifierKind,
    /// The device part: the permanent identifier without its assigner, or the hardware
    /// module's serial.
    pub value: String,
    /// The assigner OID (permanent identifier) or hardware type OID (hardware module).
    pub oid: Option<String>,
}

impl DeviceIdentifier {
    /// Parses an ACME identifier of type `kind` per the draft's ABNF.
    ///
    /// # Errors
    /// A message naming the defect when the value does not match the grammar (an ACME server
    /// answers `malformed`).
    pub fn parse(kind: IdentifierKind, value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err("the identifier value is empty".into());
        }
        if value.len() > 256 {
            return Err("the identifier value is longer than 256 bytes".into());
        }
        if value.chars().any(char::is_control) {
            return Err("the identifier value holds control characters".into());
        }
        let (device, oid) = match value.split_once('/') {
            Some((d, o)) => (d, Some(o)),
            None => (value, None),
        };
        if device.is_empty() {
            return Err("the device part of the identifier is empty".into());
        }
        if let Some(o) = oid
            && !is_dotted_oid(o)
        {
            return Err(format!("{o:?} is not a dotted OID"));
        }
        if kind == IdentifierKind::HardwareModule && oid.is_none() {
            return Err("a hardware-module identifier is serial \"/\" hardware type OID".into());
        }
        Ok(DeviceIdentifier {
            kind,
            value: device.to_owned(),
            oid: oid.map(str::to_owned),
        })
    }

    /// The identifier as the order carries it.
    pub fn to_order_value(&self) -> String {
        match &self.oid {
            Some(o) => format!("{}/{o}", self.value),
            None => self.value.clone(),
        }
    }
}

fn is_dotted_oid(s: &str) -> bool {
    let arcs: Vec<&str> = s.split('.').collect();
    arcs.len() >= 2
        && arcs
            .iter()
            .all(|a| !a.is_empty() && a.len() <= 20 && a.bytes().all(|b| b.is_ascii_digit()))
}

/// What the attestation must be checked against.
#[derive(Debug, Clone, Copy)]
pub struct Challenge<'a> {
    /// The challenge token (base64url, at least 128 bits).
    pub token: &'a str,
    /// The key authorization: `token "." base64url(JWK thumbprint of the account key)`.
    pub key_authorization: &'a str,
    /// The order's identifier that the device must prove.
    pub identifier: &'a DeviceIdentifier,
    /// The verification time.
    pub now: OffsetDateTime,
}

/// Where the attested key lives, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityLevel {
    /// Software keystore: not hardware-protected.
    Software,
    /// A trusted execution environment (Android TEE).
    TrustedEnvironment,
    /// A TPM.
    Tpm,
    /// A discrete secure element: Android StrongBox, Apple Secure Enclave.
    SecureElement,
}

/// Verified-boot state as the device reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifiedBoot {
    /// Booted an image signed by the vendor's key (Android Verified, Apple Full Security).
    Verified,
    /// Booted an image signed by a user-installed key (Android SelfSigned, Apple Reduced).
    SelfSigned,
    /// Boot integrity is not enforced (Android Unverified, Apple Permissive).
    Unverified,
    /// Verification failed.
    Failed,
}

/// The boot state of the attested device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootState {
    /// Verified-boot state.
    pub verified_boot: VerifiedBoot,
    /// Whether the bootloader is locked, when the format says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_locked: Option<bool>,
}

/// What a verified attestation proves. Stored with the device record; the posture engine reads
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The statement format.
    pub format: Format,
    /// Who vouches for the key: `Apple`, `Google`, or the TPM manufacturer.
    pub vendor: String,
    /// The identifier of the order that the statement matched.
    pub identifier: String,
    /// Device identifiers the statement carries (`serial`, `udid`, `imei`, `tpm-manufacturer`,
    /// ...).
    pub device_ids: BTreeMap<String, String>,
    /// Operating system version, as the vendor writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// Security patch level (`YYYY-MM` or `YYYY-MM-DD`), when the format has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_level: Option<String>,
    /// Firmware versions by component (`sep-os`, `llb`, `tpm-firmware`, `vendor-patch`, ...).
    pub firmware: BTreeMap<String, String>,
    /// Where the key lives.
    pub security_level: SecurityLevel,
    /// Boot state, when the format reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootState>,
    /// Further facts by name (Apple: `sip-enabled`, `third-party-kexts`; Android: the
    /// attestation application id, ...).
    pub properties: BTreeMap<String, serde_json::Value>,
    /// The attested public key, DER SubjectPublicKeyInfo.
    #[serde(with = "b64")]
    pub public_key: Vec<u8>,
    /// When the attestation was verified.
    #[serde(with = "time::serde::rfc3339")]
    pub verified_at: OffsetDateTime,
    /// The attestation certificate's validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// The attestation certificate's validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// SHA-256 of each certificate of the verified path, leaf first, hex.
    pub chain_sha256: Vec<String>,
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// Why an attestation was refused. Every variant is an ACME `badAttestationStatement`; the
/// messages name the defect and carry no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The attestation object or a structure inside it does not parse.
    #[error("malformed attestation: {0}")]
    Malformed(String),
    /// The `fmt` is not one postern knows, or not enabled.
    #[error("attestation format {0:?} is not accepted")]
    Format(String),
    /// The certificate chain does not lead to a trusted root.
    #[error("untrusted attestation chain: {0}")]
    Untrusted(String),
    /// A certificate of the chain is outside its validity at the verification time.
    #[error("attestation certificate {0}")]
    Expired(String),
    /// The freshness value (Apple nonce, Android challenge, TPM extraData) is missing or does
    /// not match the challenge.
    #[error("freshness: {0}")]
    Freshness(String),
    /// A signature in the statement does not verify.
    #[error("signature: {0}")]
    Signature(String),
    /// The statement's device identifier is not the order's.
    #[error("identifier: {0}")]
    Identifier(String),
    /// The attested key is not acceptable or does not match.
    #[error("attested key: {0}")]
    Key(String),
    /// A certificate of the chain is revoked (Android revocation list).
    #[error("revoked: {0}")]
    Revoked(String),
    /// A check could not be made (a configured revocation list is stale).
    #[error("cannot verify: {0}")]
    Unavailable(String),
}

impl AttestError {
    pub(crate) fn malformed(what: impl fmt::Display) -> Self {
        AttestError::Malformed(what.to_string())
    }
}

/// A decoded attestation object.
#[derive(Debug, Clone, PartialEq)]
pub struct AttestationObject {
    /// The raw `fmt` string.
    pub fmt: String,
    /// The statement, a CBOR map.
    pub att_stmt: Vec<(Value, Value)>,
    /// `authData`, which device-attest-01 clients should omit.
    pub auth_data: Option<Vec<u8>>,
}

impl AttestationObject {
    /// Decodes CBOR bytes strictly: one map with a text `fmt` and a map `attStmt`; no bytes after
    /// it; at most [`MAX_ATT_OBJ`] bytes.
    ///
    /// # Errors
    /// [`AttestError::Malformed`] naming the defect.
    pub fn decode(bytes: &[u8]) -> Result<Self, AttestError> {
        if bytes.is_empty() {
            return Err(AttestError::malformed("empty attestation object"));
        }
        if bytes.len() > MAX_ATT_OBJ {
            return Err(AttestError::malformed(format!(
                "attestation object of {} bytes is larger than {MAX_ATT_OBJ}",
                bytes.len()
            )));
        }
        let mut rest = bytes;
        let value: Value =
            ciborium::de::from_reader_with_recursion_limit(&mut rest, 16).map_err(|e| {
                use ciborium::de::Error as E;
                AttestError::malformed(match e {
                    E::Io(_) => "the CBOR ends early".to_owned(),
                    E::Syntax(at) => format!("CBOR syntax error at byte {at}"),
                    E::Semantic(at, m) => match at {
                        Some(at) => format!("CBOR error at byte {at}: {m}"),
                        None => format!("CBOR error: {m}"),
                    },
                    E::RecursionLimitExceeded => "the CBOR is nested too deeply".to_owned(),
                })
            })?;
        if !rest.is_empty() {
            return Err(AttestError::malformed(format!(
                "{} bytes after the attestation object",
                rest.len()
            )));
        }
        let Value::Map(entries) = value else {
            return Err(AttestError::malformed(
                "the attestation object is not a map",
            ));
        };
        let mut fmt = None;
        let mut att_stmt = None;
        let mut auth_data = None;
        for (k, v) in entries {
            let Value::Text(k) = k else {
                return Err(AttestError::malformed(
                    "a key of the attestation object is not text",
                ));
            };
            let dup = match (k.as_str(), v) {
                ("fmt", Value::Text(s)) => fmt.replace(s).is_some(),
                ("attStmt", Value::Map(m)) => att_stmt.replace(m).is_some(),
                ("authData", Value::Bytes(b)) => auth_data.replace(b).is_some(),
                ("fmt" | "attStmt" | "authData", _) => {
                    return Err(AttestError::malformed(format!(
                        "{k} has the wrong CBOR type"
                    )));
                }
                _ => false, // unknown members are ignored, as WebAuthn says
            };
            if dup {
                return Err(AttestError::malformed(format!("{k} appears twice")));
            }
        }
        Ok(AttestationObject {
            fmt: fmt.ok_or_else(|| AttestError::malformed("fmt is missing"))?,
            att_stmt: att_stmt.ok_or_else(|| AttestError::malformed("attStmt is missing"))?,
            auth_data,
        })
    }

    /// The statement member `name`, if present.
    pub fn member(&self, name: &str) -> Option<&Value> {
        self.att_stmt
            .iter()
            .find(|(k, _)| matches!(k, Value::Text(t) if t == name))
            .map(|(_, v)| v)
    }

    /// The `x5c` member: a non-empty array of DER certificates, leaf first (at most 8).
    ///
    /// # Errors
    /// [`AttestError::Malformed`] when absent, empty, too long or not byte strings.
    pub fn x5c(&self) -> Result<Vec<Vec<u8>>, AttestError> {
        let Some(Value::Array(items)) = self.member("x5c") else {
            return Err(AttestError::malformed("x5c is missing or not an array"));
        };
        if items.is_empty() || items.len() > 8 {
            return Err(AttestError::malformed(format!(
                "x5c has {} certificates; 1 to 8 are accepted",
                items.len()
            )));
        }
        items
            .iter()
            .map(|v| match v {
                Value::Bytes(b) if !b.is_empty() => Ok(b.clone()),
                _ => Err(AttestError::malformed("an x5c entry is not a byte string")),
            })
            .collect()
    }

    /// A byte-string member.
    ///
    /// # Errors
    /// [`AttestError::Malformed`] when absent or of another type.
    pub fn bytes(&self, name: &str) -> Result<&[u8], AttestError> {
        match self.member(name) {
            Some(Value::Bytes(b)) => Ok(b),
            Some(_) => Err(AttestError::malformed(format!(
                "{name} is not a byte string"
            ))),
            None => Err(AttestError::malformed(format!("{name} is missing"))),
        }
    }

    /// A text member.
    ///
    /// # Errors
    /// [`AttestError::Malformed`] when absent or of another type.
    pub fn text(&self, name: &str) -> Result<&str, AttestError> {
        match self.member(name) {
            Some(Value::Text(t)) => Ok(t),
            Some(_) => Err(AttestError::malformed(format!("{name} is not text"))),
            None => Err(AttestError::malformed(format!("{name} is missing"))),
        }
    }

    /// An integer member (COSE algorithm identifiers).
    ///
    /// # Errors
    /// [`AttestError::Malformed`] when absent, of another type, or out of `i64`.
    pub fn int(&self, name: &str) -> Result<i64, AttestError> {
        match self.member(name) {
            Some(Value::Integer(i)) => i64::try_from(i128::from(*i))
                .map_err(|_| AttestError::malformed(format!("{name} is out of range"))),
            Some(_) => Err(AttestError::malformed(format!("{name} is not an integer"))),
            None => Err(AttestError::malformed(format!("{name} is missing"))),
        }
    }
}

/// What a provisioner trusts and requires; one per provisioner, shared by its requests.
#[derive(Debug)]
pub struct Verifier {
    /// Enabled formats with their roots.
    roots: BTreeMap<Format, TrustRoots>,
    /// Verified signatures of intermediates (so repeat enrollments pay one verification).
    cache: ChainCache,
}

impl Verifier {
    /// A verifier for `formats`, each trusting its [built-in roots](TrustRoots::builtin).
    pub fn new(formats: &[Format]) -> Self {
        Verifier {
            roots: formats
                .iter()
                .map(|f| (*f, TrustRoots::builtin(*f)))
                .collect(),
            cache: ChainCache::default(),
        }
    }

    /// Replaces the roots of `format` (which is enabled if it was not).
    pub fn set_roots(&mut self, format: Format, roots: TrustRoots) {
        self.roots.insert(format, roots);
    }

    /// Adds roots to `format`'s (enabling it if it was not).
    pub fn add_roots(&mut self, format: Format, roots: TrustRoots) {
        self.roots.entry(format).or_default().extend(roots);
    }

    /// The enabled formats.
    pub fn formats(&self) -> impl Iterator<Item = Format> + '_ {
        self.roots.keys().copied()
    }

    /// The signature cache (for statistics and tests).
    pub fn cache(&self) -> &ChainCache {
        &self.cache
    }

    /// Verifies an attestation object (CBOR bytes) against `challenge`. `revocations` is the
    /// Android revocation list when one is configured (`None`: not checked).
    ///
    /// # Errors
    /// [`AttestError`] saying why the statement is refused.
    pub fn verify(
        &self,
        att_obj: &[u8],
        challenge: &Challenge<'_>,
        revocations: Option<&android::RevocationList>,
    ) -> Result<Evidence, AttestError> {
        let obj = AttestationObject::decode(att_obj)?;
        let format =
            Format::from_fmt(&obj.fmt).ok_or_else(|| AttestError::Format(obj.fmt.clone()))?;
        let roots = self
            .roots
            .get(&format)
            .ok_or_else(|| AttestError::Format(obj.fmt.clone()))?;
        match format {
            Format::Apple => apple::verify(&obj, challenge, roots, &self.cache),
            Format::AndroidKey => android::verify(&obj, challenge, roots, &self.cache, revocations),
            Format::Tpm => tpm::verify(&obj, challenge, roots, &self.cache),
        }
    }

    /// Verifies an Apple `DevicePropertiesAttestation` chain (DER certificates, leaf first, as
    /// an MDM's `DeviceInformation` response carries it) against this verifier's `apple` roots
    /// at `now`; see [`apple::verify_device_properties`] for what is and is not checked.
    ///
    /// # Errors
    /// [`AttestError::Format`] when `apple` is not enabled; otherwise as
    /// [`apple::verify_device_properties`].
    pub fn verify_apple_device_properties(
        &self,
        x5c: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> Result<Evidence, AttestError> {
        let roots = self
            .roots
            .get(&Format::Apple)
            .ok_or_else(|| AttestError::Format(Format::Apple.as_str().to_owned()))?;
        apple::verify_device_properties(x5c, roots, now, &self.cache)
    }
}

/// Hex SHA-256.
#[allow(dead_code)] // used by the formats
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex_lower(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// Lower-case hex.
#[allow(dead_code)] // used by the formats
pub(crate) fn hex_lower(data: &[u8]) -> String {
    use fmt::Write as _;
    data.iter()
        .fold(String::with_capacity(data.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests;
