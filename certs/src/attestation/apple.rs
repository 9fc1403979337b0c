//! The `apple` format: Apple Managed Device Attestation (MDA).
//!
//! An Apple device enrolling through the `com.apple.security.acme` payload with `Attest` sends
//! `{"fmt": "apple", "attStmt": {"x5c": [leaf, Sub CA]}}`: no `sig` and no `authData`. The leaf
//! is issued by Apple's Enterprise Attestation Sub CA for the Secure Enclave key the device
//! will put in its CSR, and carries the device's facts as extensions under
//! `1.2.840.113635.100.8`:
//!
//! | OID | fact | extnValue |
//! |---|---|---|
//! | `8.9.1` | serial number (absent under User Enrollment) | raw UTF-8 |
//! | `8.9.2` | UDID (on a Mac the ProvisioningUDID; absent under User Enrollment) | raw UTF-8 |
//! | `8.9.4` | Software Update device id (`J514sAP`) | raw UTF-8 |
//! | `8.10.1` | OS version | raw UTF-8 |
//! | `8.10.2` | sepOS version | raw UTF-8 |
//! | `8.10.3` | LLB version | raw UTF-8 |
//! | `8.11.1` | freshness code: SHA-256(challenge token) for ACME, the nonce for MDM | raw bytes |
//! | `8.13.1` | SIP status, 0 = enabled (macOS) | DER INTEGER |
//! | `8.13.2` | secure boot: `Full Security`, `Reduced Security`, `Permissive Security` | raw UTF-8 |
//! | `8.13.3` | third-party kernel extensions, 0 = not allowed (macOS) | DER INTEGER |
//!
//! [`Verifier::verify`](super::Verifier::verify) checks an `apple` statement in this order:
//! 1. the path to the configured roots; the leaf is not a CA;
//! 2. the attested key: EC P-256 or P-384, as Secure Enclave keys are;
//! 3. the freshness code, which **must** be present and equal SHA-256(token) (stricter than
//!    step-ca, which skips the check when the extension is absent);
//! 4. the order's identifier, octet for octet: a `permanent-identifier` is the serial number or
//!    the UDID, and may not name an assigner (the statement proves none); a `hardware-module`
//!    is the UDID with hardware type [`UDID_HW_TYPE`] (the mapping nanoca uses);
//! 5. every other fact.
//!
//! The key binding is not a signature: the leaf's key *is* the device key, and the CSR must
//! carry the same key ([`Evidence::public_key`]).
//!
//! Apple signs the leaf before the ACME account key is known, so the statement proves
//! freshness (the token) but not the account: gate enrollment with EAB or the MDM inventory.
//!
//! [`leaf_facts`] reads the same leaf without a chain or freshness check, for the real vector
//! and for MDM `DevicePropertiesAttestation`, where the freshness code echoes the
//! `DeviceAttestationNonce` (compare it with [`AppleLeaf::freshness_is`]).

use std::collections::BTreeMap;

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::chain::{self, verify_path};
use super::{
    AttestError, AttestationObject, BootState, ChainCache, Challenge, Evidence, Format,
    IdentifierKind, SecurityLevel, TrustRoots, VerifiedBoot, sha256_hex,
};

/// `1.2.840.113635.100.8.9.1`: serial number.
pub const OID_SERIAL_NUMBER: &[u64] = &[1, 2, 840, 113635, 100, 8, 9, 1];
/// `1.2.840.113635.100.8.9.2`: UDID (Mac: ProvisioningUDID); also the hardware type OID of a
/// `hardware-module` identifier that names a UDID.
pub const OID_UDID: &[u64] = &[1, 2, 840, 113635, 100, 8, 9, 2];
/// `1.2.840.113635.100.8.9.4`: Software Update device id.
pub const OID_SOFTWARE_UPDATE_DEVICE_ID: &[u64] = &[1, 2, 840, 113635, 100, 8, 9, 4];
/// `1.2.840.113635.100.8.10.1`: OS version.
pub const OID_OS_VERSION: &[u64] = &[1, 2, 840, 113635, 100, 8, 10, 1];
/// `1.2.840.113635.100.8.10.2`: sepOS version.
pub const OID_SEP_OS_VERSION: &[u64] = &[1, 2, 840, 113635, 100, 8, 10, 2];
/// `1.2.840.113635.100.8.10.3`: LLB (low-level bootloader) version.
pub const OID_LLB_VERSION: &[u64] = &[1, 2, 840, 113635, 100, 8, 10, 3];
/// `1.2.840.113635.100.8.11.1`: freshness code.
pub const OID_FRESHNESS: &[u64] = &[1, 2, 840, 113635, 100, 8, 11, 1];
/// `1.2.840.113635.100.8.13.1`: SIP status (DER INTEGER, 0 = enabled).
pub const OID_SIP_STATUS: &[u64] = &[1, 2, 840, 113635, 100, 8, 13, 1];
/// `1.2.840.113635.100.8.13.2`: secure boot mode.
pub const OID_SECURE_BOOT: &[u64] = &[1, 2, 840, 113635, 100, 8, 13, 2];
/// `1.2.840.113635.100.8.13.3`: third-party kernel extensions (DER INTEGER, 0 = not allowed).
pub const OID_THIRD_PARTY_KEXTS: &[u64] = &[1, 2, 840, 113635, 100, 8, 13, 3];

/// The hardware type OID, dotted, of a `hardware-module` identifier whose serial is the UDID
/// (the mapping nanoca uses).
pub const UDID_HW_TYPE: &str = "1.2.840.113635.100.8.9.2";

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// Everything an Apple attestation leaf says, parsed; absent extensions are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppleLeaf {
    /// Serial number (`8.9.1`).
    pub serial: Option<String>,
    /// UDID (`8.9.2`); on a Mac the ProvisioningUDID.
    pub udid: Option<String>,
    /// Software Update device id (`8.9.4`), e.g. `J514sAP`.
    pub software_update_device_id: Option<String>,
    /// OS version (`8.10.1`).
    pub os_version: Option<String>,
    /// sepOS version (`8.10.2`).
    pub sep_os_version: Option<String>,
    /// LLB version (`8.10.3`).
    pub llb_version: Option<String>,
    /// Freshness code (`8.11.1`), raw.
    pub freshness: Option<Vec<u8>>,
    /// Whether System Integrity Protection is enabled (`8.13.1` is 0).
    pub sip_enabled: Option<bool>,
    /// Secure boot mode (`8.13.2`) as Apple writes it.
    pub secure_boot: Option<String>,
    /// Whether third-party kernel extensions are allowed (`8.13.3` is not 0).
    pub third_party_kexts_allowed: Option<bool>,
    /// The subject common name.
    pub common_name: Option<String>,
    /// Whether the common name is the lower-case hex SHA-256 of the key's public point, as on
    /// every leaf Apple issues.
    pub subject_key_hash_matches: bool,
    /// The attested key, DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// Start of the leaf's validity.
    pub not_before: OffsetDateTime,
    /// End of the leaf's validity.
    pub not_after: OffsetDateTime,
}

impl AppleLeaf {
    /// The verified-boot state the secure boot mode stands for; `None` when absent or a mode
    /// postern does not know.
    pub fn verified_boot(&self) -> Option<VerifiedBoot> {
        match self.secure_boot.as_deref()? {
            "Full Security" => Some(VerifiedBoot::Verified),
            "Reduced Security" => Some(VerifiedBoot::SelfSigned),
            "Permissive Security" => Some(VerifiedBoot::Unverified),
            _ => None,
        }
    }

    /// Whether the freshness code is present and equals `expected`, compared in constant time.
    pub fn freshness_is(&self, expected: &[u8]) -> bool {
        self.freshness
            .as_deref()
            .is_some_and(|f| constant_time_eq(f, expected))
    }
}

/// Reads every fact of an Apple attestation leaf (DER), without checking its chain, dates or
/// freshness.
///
/// # Errors
/// [`AttestError::Malformed`] when the certificate does not parse, an extension appears twice,
/// a string is not UTF-8 or an integer is not a DER INTEGER.
pub fn leaf_facts(der: &[u8]) -> Result<AppleLeaf, AttestError> {
    let cert = parse_leaf(der)?;
    facts(&cert)
}

/// Verifies an `apple` statement against `challenge`.
///
/// # Errors
/// [`AttestError::Malformed`] (no `x5c`, a certificate or fact that does not parse),
/// [`AttestError::Untrusted`] (no path to `roots`, the leaf is a CA), [`AttestError::Expired`],
/// [`AttestError::Key`] (not EC P-256 or P-384), [`AttestError::Freshness`] (freshness code
/// absent or not SHA-256(token)), [`AttestError::Identifier`] (neither the serial number nor
/// the UDID is the order's identifier).
pub(crate) fn verify(
    obj: &AttestationObject,
    challenge: &Challenge<'_>,
    roots: &TrustRoots,
    cache: &ChainCache,
) -> Result<Evidence, AttestError> {
    // 1. the path
    let x5c = obj.x5c()?;
    let path = verify_path(&x5c, roots, challenge.now, cache)?;
    let leaf = parse_leaf(&x5c[0])?;
    match leaf.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {
            return Err(AttestError::Untrusted(
                "the attestation leaf is a ca certificate".into(),
            ));
        }
        Ok(_) => {}
        Err(e) => return Err(AttestError::malformed(format!("leaf: {e}"))),
    }

    // 2. the attested key
    check_key(leaf.public_key())?;

    // 3. freshness
    let expected = ring::digest::digest(&ring::digest::SHA256, challenge.token.as_bytes());
    match extension(&leaf, OID_FRESHNESS, "freshness code")? {
        None => {
            return Err(AttestError::Freshness(
                "the leaf has no freshness code (1.2.840.113635.100.8.11.1)".into(),
            ));
        }
        Some(code) if !constant_time_eq(code, expected.as_ref()) => {
            return Err(AttestError::Freshness(
                "the freshness code is not sha-256 of the challenge token".into(),
            ));
        }
        Some(_) => {}
    }

    // 4. the identifier
    let serial = text(&leaf, OID_SERIAL_NUMBER, "serial number")?;
    let udid = text(&leaf, OID_UDID, "udid")?;
    match_identifier(challenge, serial.as_deref(), udid.as_deref())?;

    // 5. every other fact
    let facts = facts(&leaf)?;
    Ok(evidence(
        facts,
        challenge.identifier.to_order_value(),
        challenge.now,
        &x5c,
        &path,
    ))
}

/// Verifies a `DevicePropertiesAttestation`: the chain of DER certificates (leaf first) that
/// an MDM's `DeviceInformation` query returns, as it reaches postern through the MDM. The
/// checks are those of [`verify`] without the freshness code, which echoes the
/// `DeviceAttestationNonce` that the MDM chose, not a value postern issued: the path to
/// `roots` at `now`, a leaf that is not a CA, an EC P-256 or P-384 key, and facts that parse.
/// The leaf must name a serial number or a UDID; the caller compares them with the device it
/// expects, and judges the attestation's age by [`Evidence::not_before`] (a device returns a
/// cached attestation for up to 7 days). [`Evidence::identifier`] is the serial number, or the
/// UDID when the leaf has none.
///
/// # Errors
/// [`AttestError::Malformed`] (an empty chain, a certificate or fact that does not parse),
/// [`AttestError::Untrusted`], [`AttestError::Expired`], [`AttestError::Key`],
/// [`AttestError::Identifier`] (neither serial number nor UDID, as under User Enrollment).
pub(crate) fn verify_device_properties(
    x5c: &[Vec<u8>],
    roots: &TrustRoots,
    now: OffsetDateTime,
    cache: &ChainCache,
) -> Result<Evidence, AttestError> {
    if x5c.is_empty() {
        return Err(AttestError::malformed("the attestation chain is empty"));
    }
    let path = verify_path(x5c, roots, now, cache)?;
    let leaf = parse_leaf(&x5c[0])?;
    match leaf.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {
            return Err(AttestError::Untrusted(
                "the attestation leaf is a ca certificate".into(),
            ));
        }
        Ok(_) => {}
        Err(e) => return Err(AttestError::malformed(format!("leaf: {e}"))),
    }
    check_key(leaf.public_key())?;
    let facts = facts(&leaf)?;
    let Some(identifier) = facts.serial.clone().or_else(|| facts.udid.clone()) else {
        return Err(AttestError::Identifier(
            "the attestation carries neither a serial number nor a udid (user enrollment)".into(),
        ));
    };
    Ok(evidence(facts, identifier, now, x5c, &path))
}

fn match_identifier(
    challenge: &Challenge<'_>,
    serial: Option<&str>,
    udid: Option<&str>,
) -> Result<(), AttestError> {
    let id = challenge.identifier;
    if serial.is_none() && udid.is_none() {
        return Err(AttestError::Identifier(
            "the attestation carries neither a serial number nor a udid (user enrollment)".into(),
        ));
    }
    let wanted = id.value.as_str();
    let matches = match (id.kind, id.oid.as_deref()) {
        (IdentifierKind::PermanentIdentifier, None) => {
            serial == Some(wanted) || udid == Some(wanted)
        }
        // Apple's statement names no assigner, so nothing vouches for the one the order
        // carries; a certificate with it would claim more than the device proved.
        (IdentifierKind::PermanentIdentifier, Some(assigner)) => {
            return Err(AttestError::Identifier(format!(
                "an apple attestation proves no assigner, and the order names {assigner}"
            )));
        }
        (IdentifierKind::HardwareModule, Some(UDID_HW_TYPE)) => udid == Some(wanted),
        (IdentifierKind::HardwareModule, other) => {
            return Err(AttestError::Identifier(format!(
                "hardware type {} is not the apple udid type {UDID_HW_TYPE}",
                other.unwrap_or("(none)")
            )));
        }
    };
    if matches {
        Ok(())
    } else {
        Err(AttestError::Identifier(format!(
            "the attested {} is not the order's {}",
            match id.kind {
                IdentifierKind::PermanentIdentifier => "serial number or udid",
                IdentifierKind::HardwareModule => "udid",
            },
            id.kind.as_str()
        )))
    }
}

fn evidence(
    leaf: AppleLeaf,
    identifier: String,
    now: OffsetDateTime,
    x5c: &[Vec<u8>],
    path: &chain::VerifiedPath,
) -> Evidence {
    let verified_boot = leaf.verified_boot();
    let AppleLeaf {
        serial,
        udid,
        software_update_device_id,
        os_version,
        sep_os_version,
        llb_version,
        freshness: _,
        sip_enabled,
        secure_boot,
        third_party_kexts_allowed,
        common_name: _,
        subject_key_hash_matches,
        public_key,
        not_before,
        not_after,
    } = leaf;
    let device_ids = [
        ("serial", serial),
        ("udid", udid),
        ("software-update-device-id", software_update_device_id),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_owned(), v?)))
    .collect();
    let firmware = [("sep-os", sep_os_version), ("llb", llb_version)]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v?)))
        .collect();
    let mut properties = BTreeMap::new();
    properties.insert(
        "subject-key-hash-matches".to_owned(),
        serde_json::Value::Bool(subject_key_hash_matches),
    );
    if let Some(sip) = sip_enabled {
        properties.insert("sip-enabled".to_owned(), serde_json::Value::Bool(sip));
    }
    if let Some(kexts) = third_party_kexts_allowed {
        properties.insert(
            "third-party-kexts-allowed".to_owned(),
            serde_json::Value::Bool(kexts),
        );
    }
    if let (None, Some(mode)) = (verified_boot, secure_boot) {
        properties.insert("secure-boot".to_owned(), serde_json::Value::String(mode));
    }
    let chain_sha256 = path
        .used
        .iter()
        .filter_map(|&i| x5c.get(i))
        .map(|der| sha256_hex(der))
        .chain(std::iter::once(sha256_hex(&path.anchor)))
        .collect();
    Evidence {
        format: Format::Apple,
        vendor: "Apple".to_owned(),
        identifier,
        device_ids,
        os_version,
        patch_level: None,
        firmware,
        security_level: SecurityLevel::SecureElement,
        boot: verified_boot.map(|verified_boot| BootState {
            verified_boot,
            device_locked: None,
        }),
        properties,
        public_key,
        verified_at: now,
        not_before,
        not_after,
        chain_sha256,
    }
}

fn parse_leaf(der: &[u8]) -> Result<X509Certificate<'_>, AttestError> {
    match X509Certificate::from_der(der) {
        Ok((&[], cert)) => Ok(cert),
        Ok(_) => Err(AttestError::malformed("bytes after the attestation leaf")),
        Err(e) => Err(AttestError::malformed(format!("attestation leaf: {e}"))),
    }
}

fn facts(cert: &X509Certificate<'_>) -> Result<AppleLeaf, AttestError> {
    let spki = cert.public_key();
    let point: &[u8] = spki.subject_public_key.data.as_ref();
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let subject_key_hash_matches = common_name.as_deref() == Some(sha256_hex(point).as_str());
    let validity = cert.validity();
    Ok(AppleLeaf {
        serial: text(cert, OID_SERIAL_NUMBER, "serial number")?,
        udid: text(cert, OID_UDID, "udid")?,
        software_update_device_id: text(
            cert,
            OID_SOFTWARE_UPDATE_DEVICE_ID,
            "software update device id",
        )?,
        os_version: text(cert, OID_OS_VERSION, "os version")?,
        sep_os_version: text(cert, OID_SEP_OS_VERSION, "sepos version")?,
        llb_version: text(cert, OID_LLB_VERSION, "llb version")?,
        freshness: extension(cert, OID_FRESHNESS, "freshness code")?.map(<[u8]>::to_vec),
        sip_enabled: integer(cert, OID_SIP_STATUS, "sip status")?.map(|v| v == 0),
        secure_boot: text(cert, OID_SECURE_BOOT, "secure boot")?,
        third_party_kexts_allowed: integer(cert, OID_THIRD_PARTY_KEXTS, "third-party kexts")?
            .map(|v| v != 0),
        common_name,
        subject_key_hash_matches,
        public_key: spki.raw.to_vec(),
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
    })
}

/// The attested key must be what the Secure Enclave makes: EC P-256 or P-384, an uncompressed
/// point.
fn check_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<(), AttestError> {
    let alg = spki.algorithm.algorithm.to_id_string();
    if alg != OID_EC {
        return Err(AttestError::Key(format!(
            "key algorithm {alg} is not ec; hardware-bound apple keys are p-256 or p-384"
        )));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string())
        .unwrap_or_default();
    let point_len = match curve.as_str() {
        OID_P256 => 65,
        OID_P384 => 97,
        other => {
            return Err(AttestError::Key(format!(
                "ec curve {other:?} is not p-256 or p-384"
            )));
        }
    };
    let point: &[u8] = spki.subject_public_key.data.as_ref();
    if point.len() != point_len || point.first() != Some(&0x04) {
        return Err(AttestError::Key(
            "the attested key is not an uncompressed ec point".into(),
        ));
    }
    Ok(())
}

/// The extnValue of the extension `oid`, if present once.
fn extension<'a>(
    cert: &X509Certificate<'a>,
    oid: &[u64],
    name: &str,
) -> Result<Option<&'a [u8]>, AttestError> {
    let mut found = cert.extensions().iter().filter(|e| {
        e.oid
            .iter()
            .is_some_and(|arcs| arcs.eq(oid.iter().copied()))
    });
    let first = found.next().map(|e| e.value);
    if found.next().is_some() {
        return Err(AttestError::malformed(format!(
            "the {name} extension appears twice"
        )));
    }
    Ok(first)
}

/// A raw UTF-8 extension (no ASN.1 tag, as Apple encodes them).
fn text(
    cert: &X509Certificate<'_>,
    oid: &[u64],
    name: &str,
) -> Result<Option<String>, AttestError> {
    extension(cert, oid, name)?
        .map(|v| {
            std::str::from_utf8(v)
                .map(str::to_owned)
                .map_err(|_| AttestError::malformed(format!("the {name} is not utf-8")))
        })
        .transpose()
}

/// A DER INTEGER extension.
fn integer(
    cert: &X509Certificate<'_>,
    oid: &[u64],
    name: &str,
) -> Result<Option<i64>, AttestError> {
    extension(cert, oid, name)?
        .map(|v| {
            crate::der::parse_der(v, |r| r.read_i64())
                .map_err(|_| AttestError::malformed(format!("the {name} is not a der integer")))
        })
        .transpose()
}

/// Compares without an early exit, so the time taken does not say where the first difference
/// is. Lengths are public (a freshness code is 32 bytes).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
