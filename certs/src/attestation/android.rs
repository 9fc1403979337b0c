//! `android-key`: Android Key Attestation for ACME `device-attest-01`.
//!
//! Statement: `{"alg": COSE alg, "sig": bytes, "x5c": [leaf, intermediates..., root?]}`, where
//! `sig` is the attested key's signature over the key authorization (draft-ietf-acme-device-
//! attest: attToBeSigned is the key authorization) and the leaf carries the KeyDescription
//! extension ([`KeyDescription`]). Verification, in order:
//!
//! 1. the path from the leaf to a Google root ([`chain::verify_path`]); the leaf is no CA;
//! 2. with a revocation list: not stale ([`AttestError::Unavailable`]), and no certificate of
//!    the path listed ([`AttestError::Revoked`]; an unknown status counts as listed);
//! 3. `sig` verifies with the leaf's key over the key authorization (ES256 with a P-256 or
//!    P-384 key, both hashed with SHA-256; RS256; EdDSA);
//! 4. the KeyDescription parses;
//! 5. `attestationChallenge` is the key authorization, byte for byte;
//! 6. the key was generated in the keystore (`origin` 0), not imported;
//! 7. `hardwareEnforced.attestationIdSerial` is the order's identifier value (device-ID
//!    attestation, available to fully managed devices).
//!
//! The security level is reported, not enforced: the broker's policy sets the minimum. The
//! evidence's device identifiers come from `hardwareEnforced` only; OS version, patch levels,
//! boot state and origin from `hardwareEnforced`, else `softwareEnforced`; `chain_sha256` lists
//! the path's certificates, leaf first, then the anchor it ended at.
//!
//! Known divergences, found with Google's own test chains (google/android-key-attestation):
//! - the StrongBox chains end at a pre-production root (`e35d38c6897d47e8`) and are refused as
//!   [`AttestError::Untrusted`] by the built-in roots;
//! - the EC StrongBox leaf encodes its ecdsa-with-SHA256 AlgorithmIdentifier with a NULL
//!   parameter. x509-parser accepts it and ring verifies the signature, so the NULL changes
//!   nothing; but that leaf names the second intermediate (`697bc64b6cd4c01e`) as issuer while
//!   the first (`ccce263fd08dac3a`) signed it, so even with the pre-production root trusted the
//!   path is refused as `Untrusted` ("no trusted issuer for the leaf"); OpenSSL refuses it too;
//! - `x5c` need not end with the root (step-ca requires it): a chain ending at an intermediate
//!   that an anchor signed is accepted.

mod key_description;
mod revocation;

use std::collections::BTreeMap;

use ring::signature;
use serde_json::{Value as Json, json};
use x509_parser::prelude::X509Certificate;

use super::chain::{self, parse_chain, verify_path};
use super::{
    AttestError, AttestationObject, BootState, ChainCache, Challenge, Evidence, Format, TrustRoots,
    hex_lower, sha256_hex,
};

pub use key_description::{
    AttestationApplicationId, AuthorizationList, KEY_DESCRIPTION_OID, KeyDescription,
    KeySecurityLevel, ORIGIN_GENERATED, PackageInfo, RootOfTrust, key_description,
};
pub use revocation::{MAX_REVOCATION_LIST, RevocationEntry, RevocationList, RevocationStatus};

/// COSE ES256: ECDSA with SHA-256.
pub const COSE_ES256: i64 = -7;
/// COSE EdDSA (Ed25519).
pub const COSE_EDDSA: i64 = -8;
/// COSE RS256: RSASSA-PKCS1-v1_5 with SHA-256.
pub const COSE_RS256: i64 = -257;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";

/// Verifies an `android-key` statement.
///
/// # Errors
/// [`AttestError`] saying why the statement is refused: `Malformed` (statement, certificates,
/// KeyDescription, an unknown `alg`), `Untrusted`/`Expired` (path), `Unavailable` (stale
/// revocation list), `Revoked`, `Signature`, `Freshness` (challenge), `Key` (an imported key),
/// `Identifier` (serial).
pub(crate) fn verify(
    obj: &AttestationObject,
    challenge: &Challenge<'_>,
    roots: &TrustRoots,
    cache: &ChainCache,
    revocations: Option<&RevocationList>,
) -> Result<Evidence, AttestError> {
    let alg = obj.int("alg")?;
    if ![COSE_ES256, COSE_EDDSA, COSE_RS256].contains(&alg) {
        return Err(AttestError::malformed(format!(
            "alg {alg} is not ES256 (-7), EdDSA (-8) or RS256 (-257)"
        )));
    }
    let sig = obj.bytes("sig")?;
    let x5c = obj.x5c()?;
    let now = challenge.now;
    let key_authorization = challenge.key_authorization.as_bytes();

    // 1. the path
    let path = verify_path(&x5c, roots, now, cache)?;
    let certs = parse_chain(&x5c)?;
    let leaf = certs
        .first()
        .ok_or_else(|| AttestError::malformed("empty certificate chain"))?;
    match leaf.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {
            return Err(AttestError::Untrusted("the leaf is a CA".into()));
        }
        Ok(_) => {}
        Err(e) => {
            return Err(AttestError::malformed(format!(
                "the leaf's basic constraints: {e}"
            )));
        }
    }

    // 2. revocation
    if let Some(list) = revocations {
        check_revocation(list, &path, &certs, now)?;
    }

    // 3. the signature over the key authorization
    verify_signature(leaf, alg, key_authorization, sig)?;

    // 4. the KeyDescription
    let kd = KeyDescription::from_certificate(leaf)?;

    // 5. freshness
    if kd.attestation_challenge != key_authorization {
        return Err(AttestError::Freshness(
            "the attestation challenge is not the key authorization".into(),
        ));
    }

    // 6. a generated key
    let hw = &kd.hardware_enforced;
    let sw = &kd.software_enforced;
    match hw.origin.or(sw.origin) {
        Some(ORIGIN_GENERATED) => {}
        Some(o) => {
            return Err(AttestError::Key(format!(
                "the key's origin is {} ({o}), not generated in the keystore",
                origin_name(o)
            )));
        }
        None => return Err(AttestError::Key("the key's origin is not attested".into())),
    }

    // 7. the identifier
    let expected = challenge.identifier.value.as_bytes();
    match hw.attestation_id_serial.as_deref() {
        Some(serial) if serial == expected => {}
        Some(serial) => {
            return Err(AttestError::Identifier(format!(
                "the attested serial {:?} is not the order's {:?}",
                String::from_utf8_lossy(serial),
                challenge.identifier.value
            )));
        }
        None => {
            return Err(AttestError::Identifier(
                "no hardware-attested serial (device-ID attestation needs a fully managed device)"
                    .into(),
            ));
        }
    }

    Ok(evidence(&kd, leaf, &path, &certs, challenge))
}

fn check_revocation(
    list: &RevocationList,
    path: &chain::VerifiedPath,
    certs: &[X509Certificate<'_>],
    now: time::OffsetDateTime,
) -> Result<(), AttestError> {
    if list.is_stale(now) {
        return Err(AttestError::Unavailable(format!(
            "the android revocation list fetched at {} is stale",
            list.fetched_at()
        )));
    }
    for cert in path.used.iter().filter_map(|&i| certs.get(i)) {
        let serial = revocation::serial_key(cert.raw_serial());
        if let Some(entry) = list.status(&serial) {
            return Err(AttestError::Revoked(format!(
                "certificate {serial} ({}) is {} ({})",
                cert.subject(),
                entry.status.as_str(),
                entry.reason.as_deref().unwrap_or("no reason given")
            )));
        }
    }
    Ok(())
}

/// Verifies `sig` over `message` with the leaf's public key and the COSE `alg`.
fn verify_signature(
    leaf: &X509Certificate<'_>,
    alg: i64,
    message: &[u8],
    sig: &[u8],
) -> Result<(), AttestError> {
    let spki = leaf.public_key();
    let key_alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let ring_alg: &'static dyn signature::VerificationAlgorithm =
        match (alg, key_alg.as_str(), curve.as_deref()) {
            (COSE_ES256, OID_EC_PUBLIC_KEY, Some(OID_P256)) => &signature::ECDSA_P256_SHA256_ASN1,
            (COSE_ES256, OID_EC_PUBLIC_KEY, Some(OID_P384)) => &signature::ECDSA_P384_SHA256_ASN1,
            (COSE_RS256, OID_RSA, _) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (COSE_EDDSA, OID_ED25519, _) => &signature::ED25519,
            _ => {
                return Err(AttestError::Signature(format!(
                    "alg {alg} does not fit the leaf's key ({key_alg}{})",
                    curve.map(|c| format!(" on {c}")).unwrap_or_default()
                )));
            }
        };
    signature::UnparsedPublicKey::new(ring_alg, &spki.subject_public_key.data)
        .verify(message, sig)
        .map_err(|_| {
            AttestError::Signature(
                "sig is not the attested key's signature over the key authorization".into(),
            )
        })
}

fn evidence(
    kd: &KeyDescription,
    leaf: &X509Certificate<'_>,
    path: &chain::VerifiedPath,
    certs: &[X509Certificate<'_>],
    challenge: &Challenge<'_>,
) -> Evidence {
    let hw = &kd.hardware_enforced;
    let sw = &kd.software_enforced;

    let mut device_ids = BTreeMap::new();
    for (name, value) in [
        ("serial", &hw.attestation_id_serial),
        ("imei", &hw.attestation_id_imei),
        ("second-imei", &hw.attestation_id_second_imei),
        ("meid", &hw.attestation_id_meid),
        ("brand", &hw.attestation_id_brand),
        ("manufacturer", &hw.attestation_id_manufacturer),
        ("model", &hw.attestation_id_model),
        ("device", &hw.attestation_id_device),
        ("product", &hw.attestation_id_product),
    ] {
        if let Some(v) = value {
            device_ids.insert(name.to_owned(), String::from_utf8_lossy(v).into_owned());
        }
    }

    let mut firmware = BTreeMap::new();
    if let Some(v) = hw.vendor_patch_level.or(sw.vendor_patch_level) {
        firmware.insert("vendor-patch".to_owned(), patch_level(v));
    }
    if let Some(v) = hw.boot_patch_level.or(sw.boot_patch_level) {
        firmware.insert("boot-patch".to_owned(), patch_level(v));
    }

    let root_of_trust = hw.root_of_trust.as_ref().or(sw.root_of_trust.as_ref());
    let mut properties = BTreeMap::new();
    properties.insert(
        "attestation-version".to_owned(),
        json!(kd.attestation_version),
    );
    properties.insert("keymint-version".to_owned(), json!(kd.keymint_version));
    properties.insert(
        "keymint-security-level".to_owned(),
        json!(kd.keymint_security_level.as_str()),
    );
    if let Some(app) = sw
        .attestation_application_id
        .as_ref()
        .or(hw.attestation_application_id.as_ref())
    {
        let packages: Vec<Json> = app
            .packages
            .iter()
            .map(|p| json!({"package": p.name, "version": p.version}))
            .collect();
        properties.insert(
            "attestation-application-id".to_owned(),
            Json::Array(packages),
        );
        let digests: Vec<Json> = app
            .signature_digests
            .iter()
            .map(|d| Json::String(hex_lower(d)))
            .collect();
        properties.insert("signature-digests".to_owned(), Json::Array(digests));
    }
    if let Some(rot) = root_of_trust {
        properties.insert(
            "verified-boot-key".to_owned(),
            json!(hex_lower(&rot.verified_boot_key)),
        );
        if let Some(h) = &rot.verified_boot_hash {
            properties.insert("verified-boot-hash".to_owned(), json!(hex_lower(h)));
        }
    }
    if hw.device_unique_attestation {
        properties.insert("device-unique-attestation".to_owned(), json!(true));
    }

    let mut chain_sha256: Vec<String> = path
        .used
        .iter()
        .filter_map(|&i| certs.get(i))
        .map(|c| sha256_hex(c.as_raw()))
        .collect();
    chain_sha256.push(sha256_hex(&path.anchor));

    Evidence {
        format: Format::AndroidKey,
        vendor: "Google".to_owned(),
        identifier: challenge.identifier.to_order_value(),
        device_ids,
        os_version: hw.os_version.or(sw.os_version).and_then(os_version),
        patch_level: hw.os_patch_level.or(sw.os_patch_level).map(patch_level),
        firmware,
        security_level: kd.attestation_security_level.to_security_level(),
        boot: root_of_trust.map(|r| BootState {
            verified_boot: r.verified_boot_state,
            device_locked: Some(r.device_locked),
        }),
        properties,
        public_key: leaf.public_key().raw.to_vec(),
        verified_at: challenge.now,
        not_before: leaf.validity().not_before.to_datetime(),
        not_after: leaf.validity().not_after.to_datetime(),
        chain_sha256,
    }
}

/// `MMmmss` as `M.m.s` (130000 -> `13.0.0`); `None` for 0 (unknown) and negative values.
fn os_version(v: i64) -> Option<String> {
    (v > 0).then(|| format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100))
}

/// `YYYYMM` as `YYYY-MM`, `YYYYMMDD` as `YYYY-MM-DD`; anything else as the number.
fn patch_level(v: i64) -> String {
    match v {
        100_000..=999_999 => format!("{}-{:02}", v / 100, v % 100),
        10_000_000..=99_999_999 => {
            format!("{}-{:02}-{:02}", v / 10000, (v / 100) % 100, v % 100)
        }
        _ => v.to_string(),
    }
}

fn origin_name(origin: i64) -> &'static str {
    match origin {
        0 => "generated",
        1 => "derived",
        2 => "imported",
        4 => "securely imported",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests;
