//! The `tpm` statement format (WebAuthn §8.3, as draft-ietf-acme-device-attest adapts it): a
//! TPM 2.0 attestation key (AK), certified by the TPM vendor's or the platform's CA, signs a
//! `TPMS_ATTEST` of type `certify` over the device key's public area, with the hash of the ACME
//! key authorization as `extraData`.
//!
//! `attStmt = {"ver": "2.0", "alg": COSE alg, "x5c": [AK cert, intermediates...], "sig": bytes,
//! "certInfo": TPMS_ATTEST, "pubArea": TPMT_PUBLIC}`. Verification checks, in this order:
//!
//! 1. `ver` is `"2.0"`, `alg` is RS256, RS1, ES256 or PS256, and `pubArea` and `certInfo`
//!    parse strictly ([`parse_public`], [`parse_attest`]), `certInfo` being a `certify`
//!    ([`AttestError::Malformed`]);
//! 2. the AK certificate follows WebAuthn §8.3.1: version 3, an empty subject, not a CA, the
//!    `tcg-kp-AIKCertificate` extended key usage, and a subjectAltName naming the TPM
//!    manufacturer, model and version ([`AttestError::Untrusted`]);
//! 3. the chain leads to a trusted root ([`chain::verify_path`]; built in: Microsoft TPM Root
//!    Certificate Authority 2014, the root of Windows' AK certificates);
//! 4. `sig` verifies over `certInfo` with the AK certificate's key ([`AttestError::Signature`]);
//! 5. `certInfo` certifies this `pubArea`: its `name` is `nameAlg || H(pubArea)`
//!    ([`AttestError::Key`]);
//! 6. `extraData` is the hash of the key authorization with `alg`'s hash, compared in constant
//!    time ([`AttestError::Freshness`]);
//! 7. the AK certificate's subjectAltName carries the order's identifier as a
//!    `permanentIdentifier` or `hardwareModuleName` otherName ([`AttestError::Identifier`]).
//!    An AK certificate with neither is refused: step-ca skips the check then, postern does
//!    not, since the draft has the statement prove the order's identifier;
//! 8. the key is `fixedTPM`, `fixedParent` and `sensitiveDataOrigin`: made in this TPM and
//!    unable to leave it ([`AttestError::Key`]). Its SubjectPublicKeyInfo becomes
//!    [`Evidence::public_key`], which the broker compares with the CSR's key.
//!
//! `authData`, which device-attest-01 clients omit, is ignored: the signed data is `certInfo`
//! and its binding to the challenge is `extraData`.

mod structures;

pub use structures::{
    Attested, ClockInfo, ECC_NIST_P256, ECC_NIST_P384, ObjectAttributes, PcrSelection,
    TPM_GENERATED_VALUE, TpmAttest, TpmKey, TpmPublic, TpmSignature, alg, parse_attest,
    parse_public, parse_signature, st,
};

use std::collections::BTreeMap;

use ring::signature;
use x509_parser::prelude::{X509Certificate, X509Version};
use yasna::{ASN1Result, BERReader, Tag};

use super::chain::{self, ChainCache, TrustRoots};
use super::{
    AttestError, AttestationObject, Challenge, DeviceIdentifier, Evidence, Format, IdentifierKind,
    SecurityLevel, sha256_hex,
};

/// `tcg-kp-AIKCertificate`, the extended key usage of an AK certificate.
pub const OID_TCG_KP_AIK_CERTIFICATE: &str = "2.23.133.8.3";
/// `tcg-at-tpmManufacturer` (a `directoryName` attribute of the AK certificate's SAN).
pub const OID_TPM_MANUFACTURER: &str = "2.23.133.2.1";
/// `tcg-at-tpmModel`.
pub const OID_TPM_MODEL: &str = "2.23.133.2.2";
/// `tcg-at-tpmVersion`.
pub const OID_TPM_VERSION: &str = "2.23.133.2.3";
/// `id-on-permanentIdentifier` (RFC 4043), an otherName.
pub const OID_PERMANENT_IDENTIFIER: &str = "1.3.6.1.5.5.7.8.3";
/// `id-on-hardwareModuleName` (RFC 4108), an otherName.
pub const OID_HARDWARE_MODULE_NAME: &str = "1.3.6.1.5.5.7.8.4";

const OID_SUBJECT_ALT_NAME: &str = "2.5.29.17";

/// The COSE algorithms a `tpm` statement may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CoseAlg {
    /// -257: RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// -65535: RSASSA-PKCS1-v1_5 with SHA-1. WebAuthn keeps it because TPMs still use it, and
    /// every real Windows Hello attestation postern has seen signs with it. Accepting it means
    /// trusting SHA-1 against a chosen-prefix collision (practical since 2020, "SHA-1 is a
    /// Shambles"): an attacker who found data outside the `TPM_GENERATED_VALUE` magic whose
    /// SHA-1 equals that of a forged `TPMS_ATTEST` could have a restricted AK sign it. Such an
    /// attack costs far more than an enrollment is worth and needs a TPM that hashes and signs
    /// attacker-chosen data with the AK; refusing RS1 would refuse most Windows TPMs in the field.
    Rs1,
    /// -7: ECDSA P-256 with SHA-256 (DER signature).
    Es256,
    /// -37: RSASSA-PSS with SHA-256.
    Ps256,
}

impl CoseAlg {
    fn from_cose(alg: i64) -> Result<Self, AttestError> {
        match alg {
            -257 => Ok(CoseAlg::Rs256),
            -65535 => Ok(CoseAlg::Rs1),
            -7 => Ok(CoseAlg::Es256),
            -37 => Ok(CoseAlg::Ps256),
            a => Err(AttestError::malformed(format!(
                "alg {a} is not one of -257 (rs256), -65535 (rs1), -7 (es256), -37 (ps256)"
            ))),
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            CoseAlg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            CoseAlg::Rs1 => &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
            CoseAlg::Es256 => &signature::ECDSA_P256_SHA256_ASN1,
            CoseAlg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
        }
    }

    fn digest(self) -> &'static ring::digest::Algorithm {
        match self {
            CoseAlg::Rs1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            CoseAlg::Rs256 | CoseAlg::Es256 | CoseAlg::Ps256 => &ring::digest::SHA256,
        }
    }
}

/// Verifies a `tpm` statement (see the module documentation for the checks and their order).
///
/// # Errors
/// [`AttestError`] saying why the statement is refused.
pub(crate) fn verify(
    obj: &AttestationObject,
    challenge: &Challenge<'_>,
    roots: &TrustRoots,
    cache: &ChainCache,
) -> Result<Evidence, AttestError> {
    // 1. the statement and its TPM structures
    let ver = obj.text("ver")?;
    if ver != "2.0" {
        return Err(AttestError::malformed(format!(
            "ver {ver:?} is not \"2.0\""
        )));
    }
    let alg = CoseAlg::from_cose(obj.int("alg")?)?;
    let x5c = obj.x5c()?;
    let sig = obj.bytes("sig")?;
    let cert_info = obj.bytes("certInfo")?;
    let public = parse_public(obj.bytes("pubArea")?)?;
    let attest = parse_attest(cert_info)?;
    let Attested::Certify { name, .. } = &attest.attested else {
        return Err(AttestError::malformed(format!(
            "certInfo is of type {:#06x}, not TPM_ST_ATTEST_CERTIFY",
            attest.attest_type
        )));
    };

    // 2. the AK certificate's profile
    let certs = chain::parse_chain(&x5c)?;
    let ak = &certs[0];
    let san = check_ak_certificate(ak)?;

    // 3. the chain
    let path = chain::verify_path(&x5c, roots, challenge.now, cache)?;

    // 4. the AK signed certInfo
    signature::UnparsedPublicKey::new(alg.verification(), &ak.public_key().subject_public_key.data)
        .verify(cert_info, sig)
        .map_err(|_| {
            AttestError::Signature(
                "sig does not verify over certInfo with the AK certificate's key".into(),
            )
        })?;

    // 5. certInfo is about this pubArea
    let expected_name = public.name().ok_or_else(|| {
        AttestError::Key(format!(
            "pubArea nameAlg {:#06x} is not a supported hash",
            public.name_alg
        ))
    })?;
    if *name != expected_name {
        return Err(AttestError::Key("certInfo does not certify pubArea".into()));
    }

    // 6. freshness and account binding
    let expected = ring::digest::digest(alg.digest(), challenge.key_authorization.as_bytes());
    if !constant_time_eq(&attest.extra_data, expected.as_ref()) {
        return Err(AttestError::Freshness(
            "certInfo extraData is not the hash of the key authorization".into(),
        ));
    }

    // 7. the device identifier
    let matched = san
        .identifiers
        .iter()
        .find(|i| i.matches(challenge.identifier))
        .ok_or_else(|| identifier_error(&san, challenge.identifier))?;

    // 8. the key
    let attrs = public.object_attributes;
    for (bit, what) in [
        (ObjectAttributes::FIXED_TPM, "fixedTPM"),
        (ObjectAttributes::FIXED_PARENT, "fixedParent"),
        (
            ObjectAttributes::SENSITIVE_DATA_ORIGIN,
            "sensitiveDataOrigin",
        ),
    ] {
        if !attrs.has(bit) {
            return Err(AttestError::Key(format!(
                "the key is not {what}: it was not made in this tpm or can leave it"
            )));
        }
    }
    let public_key = public.to_spki_der()?;

    Ok(evidence(EvidenceParts {
        challenge,
        san: &san,
        matched,
        attest: &attest,
        public_key,
        ak,
        x5c: &x5c,
        path: &path,
    }))
}

struct EvidenceParts<'a> {
    challenge: &'a Challenge<'a>,
    san: &'a AkSan,
    matched: &'a SanIdentifier,
    attest: &'a TpmAttest,
    public_key: Vec<u8>,
    ak: &'a X509Certificate<'a>,
    x5c: &'a [Vec<u8>],
    path: &'a chain::VerifiedPath,
}

fn evidence(p: EvidenceParts<'_>) -> Evidence {
    let manufacturer = p.san.manufacturer.clone().unwrap_or_default();
    let mut device_ids = BTreeMap::new();
    device_ids.insert("tpm-manufacturer".to_owned(), manufacturer.clone());
    if let Some(m) = &p.san.model {
        device_ids.insert("tpm-model".to_owned(), m.clone());
    }
    let (kind, value) = p.matched.to_device_id();
    device_ids.insert(kind.as_str().to_owned(), value);
    let mut firmware = BTreeMap::new();
    let fw = p.attest.firmware_version;
    firmware.insert(
        "tpm-firmware".to_owned(),
        format!(
            "{}.{}.{}.{}",
            fw >> 48,
            (fw >> 32) & 0xffff,
            (fw >> 16) & 0xffff,
            fw & 0xffff
        ),
    );
    if let Some(v) = &p.san.version {
        firmware.insert("tpm-version".to_owned(), v.clone());
    }
    let clock = p.attest.clock_info;
    let properties = BTreeMap::from([
        ("clock".to_owned(), serde_json::Value::from(clock.clock)),
        (
            "reset-count".to_owned(),
            serde_json::Value::from(clock.reset_count),
        ),
        (
            "restart-count".to_owned(),
            serde_json::Value::from(clock.restart_count),
        ),
        ("safe".to_owned(), serde_json::Value::from(clock.safe)),
    ]);
    let mut chain_sha256: Vec<String> =
        p.path.used.iter().map(|i| sha256_hex(&p.x5c[*i])).collect();
    chain_sha256.push(sha256_hex(&p.path.anchor));
    let validity = p.ak.validity();
    Evidence {
        format: Format::Tpm,
        vendor: vendor_name(&manufacturer),
        identifier: p.challenge.identifier.to_order_value(),
        device_ids,
        os_version: None,
        patch_level: None,
        firmware,
        security_level: SecurityLevel::Tpm,
        boot: None,
        properties,
        public_key: p.public_key,
        verified_at: p.challenge.now,
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        chain_sha256,
    }
}

/// The TPM vendor for a `tcg-at-tpmManufacturer` value (`id:` and the 4-byte vendor id in hex,
/// TCG Vendor ID Registry), or the value itself for a vendor not listed.
pub fn vendor_name(manufacturer: &str) -> String {
    let id = manufacturer
        .strip_prefix("id:")
        .unwrap_or(manufacturer)
        .to_ascii_uppercase();
    let name = match id.as_str() {
        "414D4400" => "AMD (AMD)",
        "41544D4C" => "Atmel (ATML)",
        "4252434D" => "Broadcom (BRCM)",
        "4353434F" => "Cisco (CSCO)",
        "464C5953" => "Flyslice (FLYS)",
        "474F4F47" => "Google (GOOG)",
        "48504500" => "HPE (HPE)",
        "48495349" => "Huawei (HISI)",
        "49424D00" => "IBM (IBM)",
        "49465800" => "Infineon (IFX)",
        "494E5443" => "Intel (INTC)",
        "4C454E00" => "Lenovo (LEN)",
        "4D534654" => "Microsoft (MSFT)",
        "4E534D20" => "National Semiconductor (NSM)",
        "4E545A00" => "Nationz (NTZ)",
        "4E544300" => "Nuvoton (NTC)",
        "51434F4D" => "Qualcomm (QCOM)",
        "524F4343" => "Fuzhou Rockchip (ROCC)",
        "534D5343" => "SMSC (SMSC)",
        "534D534E" => "Samsung (SMSN)",
        "534E5300" => "Sinosun (SNS)",
        "53544D20" => "STMicroelectronics (STM)",
        "54584E00" => "Texas Instruments (TXN)",
        "57454300" => "Winbond (WEC)",
        "FFFFF1D0" => "FIDO Alliance test vendor",
        _ => return manufacturer.to_owned(),
    };
    name.to_owned()
}

/// What the AK certificate's subjectAltName says.
#[derive(Debug, Default)]
struct AkSan {
    manufacturer: Option<String>,
    model: Option<String>,
    version: Option<String>,
    identifiers: Vec<SanIdentifier>,
}

/// A device identifier otherName of the AK certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SanIdentifier {
    /// `PermanentIdentifier ::= SEQUENCE { identifierValue UTF8String OPTIONAL, assigner OID
    /// OPTIONAL }`.
    Permanent {
        value: Option<String>,
        assigner: Option<String>,
    },
    /// `HardwareModuleName ::= SEQUENCE { hwType OID, hwSerialNum OCTET STRING }`.
    HardwareModule { hw_type: String, serial: Vec<u8> },
}

impl SanIdentifier {
    /// Octet for octet, kind, value and OID (the draft allows no normalization).
    fn matches(&self, id: &DeviceIdentifier) -> bool {
        match (self, id.kind) {
            (SanIdentifier::Permanent { value, assigner }, IdentifierKind::PermanentIdentifier) => {
                value.as_deref() == Some(id.value.as_str()) && *assigner == id.oid
            }
            (SanIdentifier::HardwareModule { hw_type, serial }, IdentifierKind::HardwareModule) => {
                serial.as_slice() == id.value.as_bytes() && Some(hw_type) == id.oid.as_ref()
            }
            _ => false,
        }
    }

    /// The identifier as an order would carry it.
    fn to_device_id(&self) -> (IdentifierKind, String) {
        match self {
            SanIdentifier::Permanent { value, assigner } => {
                let v = value.clone().unwrap_or_default();
                let v = match assigner {
                    Some(a) => format!("{v}/{a}"),
                    None => v,
                };
                (IdentifierKind::PermanentIdentifier, v)
            }
            SanIdentifier::HardwareModule { hw_type, serial } => (
                IdentifierKind::HardwareModule,
                format!("{}/{hw_type}", String::from_utf8_lossy(serial)),
            ),
        }
    }
}

/// Step 7 failed. step-ca skips the identifier check when the AK certificate carries none;
/// postern refuses the statement instead, as the draft requires the statement to prove the
/// order's identifier.
fn identifier_error(san: &AkSan, wanted: &DeviceIdentifier) -> AttestError {
    if san.identifiers.is_empty() {
        return AttestError::Identifier(
            "the AK certificate carries no permanentIdentifier or hardwareModuleName".into(),
        );
    }
    let found: Vec<String> = san
        .identifiers
        .iter()
        .map(|i| {
            let (k, v) = i.to_device_id();
            format!("{} {v:?}", k.as_str())
        })
        .collect();
    AttestError::Identifier(format!(
        "the AK certificate names {}, not {} {:?}",
        found.join(", "),
        wanted.kind.as_str(),
        wanted.to_order_value()
    ))
}

/// Step 2: the AK certificate profile of WebAuthn §8.3.1 (TPM 2.0 AK certificates).
fn check_ak_certificate(ak: &X509Certificate<'_>) -> Result<AkSan, AttestError> {
    let untrusted = |m: &str| AttestError::Untrusted(format!("AK certificate: {m}"));
    if ak.version() != X509Version::V3 {
        return Err(untrusted("not version 3"));
    }
    if ak.subject().iter().next().is_some() {
        return Err(untrusted(&format!(
            "the subject must be empty, it is {}",
            ak.subject()
        )));
    }
    match ak.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => return Err(untrusted("it is a ca")),
        Ok(_) => {}
        Err(e) => return Err(untrusted(&format!("basic constraints: {e}"))),
    }
    let aik = match ak.extended_key_usage() {
        Ok(Some(eku)) => eku
            .value
            .other
            .iter()
            .any(|o| o.to_id_string() == OID_TCG_KP_AIK_CERTIFICATE),
        Ok(None) => false,
        Err(e) => return Err(untrusted(&format!("extended key usage: {e}"))),
    };
    if !aik {
        return Err(untrusted(
            "the extended key usage lacks tcg-kp-AIKCertificate (2.23.133.8.3)",
        ));
    }
    let ext = ak
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == OID_SUBJECT_ALT_NAME)
        .ok_or_else(|| untrusted("no subjectAltName"))?;
    let san = parse_san(ext.value)
        .map_err(|e| untrusted(&format!("the subjectAltName does not parse: {e}")))?;
    for (v, what) in [
        (&san.manufacturer, "manufacturer (2.23.133.2.1)"),
        (&san.model, "model (2.23.133.2.2)"),
        (&san.version, "version (2.23.133.2.3)"),
    ] {
        if v.is_none() {
            return Err(untrusted(&format!(
                "the subjectAltName does not name the tpm {what}"
            )));
        }
    }
    Ok(san)
}

/// Reads the SAN's `directoryName`s (TPM manufacturer, model, version attributes) and its
/// identifier otherNames; other names are skipped. BER is accepted: the certificate's
/// signature already covers these bytes, and real AK certificates put the three attributes in
/// one multi-valued RDN or in three.
fn parse_san(value: &[u8]) -> Result<AkSan, yasna::ASN1Error> {
    crate::der::parse_ber(value, |r| {
        let mut san = AkSan::default();
        r.read_sequence_of(|r| {
            let tag = r.lookahead_tag()?;
            if tag == Tag::context(4) {
                r.read_tagged(Tag::context(4), |r| read_name(r, &mut san))
            } else if tag == Tag::context(0) {
                let id = r.read_tagged_implicit(Tag::context(0), read_other_name)?;
                san.identifiers.extend(id);
                Ok(())
            } else {
                r.read_der().map(|_| ())
            }
        })?;
        Ok(san)
    })
}

/// `Name ::= SEQUENCE OF SET OF AttributeTypeAndValue`, keeping the TCG attributes.
fn read_name(r: BERReader<'_, '_>, san: &mut AkSan) -> ASN1Result<()> {
    r.read_sequence_of(|r| {
        r.read_set_of(|r| {
            r.read_sequence(|r| {
                let oid = r.next().read_oid()?.to_string();
                let v = r.next().read_tagged_der()?;
                let slot = match oid.as_str() {
                    OID_TPM_MANUFACTURER => &mut san.manufacturer,
                    OID_TPM_MODEL => &mut san.model,
                    OID_TPM_VERSION => &mut san.version,
                    _ => return Ok(()),
                };
                // UTF8String, PrintableString or IA5String
                let tag = v.tag();
                let text = (tag.tag_class == yasna::TagClass::Universal
                    && [12u64, 19, 22].contains(&tag.tag_number))
                .then(|| std::str::from_utf8(v.value()).ok())
                .flatten();
                match text {
                    Some(t) if slot.is_none() => *slot = Some(t.to_owned()),
                    _ => return Err(yasna::ASN1Error::new(yasna::ASN1ErrorKind::Invalid)),
                }
                Ok(())
            })
        })
    })
}

/// `OtherName ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY }`, decoded for the two
/// identifier types.
fn read_other_name(r: BERReader<'_, '_>) -> ASN1Result<Option<SanIdentifier>> {
    r.read_sequence(|r| {
        let oid = r.next().read_oid()?.to_string();
        r.next()
            .read_tagged(Tag::context(0), |r| match oid.as_str() {
                OID_PERMANENT_IDENTIFIER => r
                    .read_sequence(|r| {
                        let value = r.read_optional(|r| r.read_utf8string())?;
                        let assigner = r.read_optional(|r| r.read_oid())?;
                        Ok(SanIdentifier::Permanent {
                            value,
                            assigner: assigner.map(|a| a.to_string()),
                        })
                    })
                    .map(Some),
                OID_HARDWARE_MODULE_NAME => r
                    .read_sequence(|r| {
                        let hw_type = r.next().read_oid()?.to_string();
                        let serial = r.next().read_bytes()?;
                        Ok(SanIdentifier::HardwareModule { hw_type, serial })
                    })
                    .map(Some),
                _ => r.read_der().map(|_| None),
            })
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
