//! The Android KeyDescription extension (OID 1.3.6.1.4.1.11129.2.1.17) of an attestation leaf,
//! as specified at <https://source.android.com/docs/security/features/keystore/attestation#schema>
//! (attestation versions 1 to 4, 100, 200, 300 and 400 share the outer shape).
//!
//! The parser is a small DER reader of its own so that it can be lenient where the schema grows:
//! AuthorizationList members with tags it does not know are skipped (their numbers are kept in
//! [`AuthorizationList::unknown_tags`]), members after the eighth of the KeyDescription sequence
//! are ignored, and RootOfTrust may lack `verifiedBootHash` (versions 1 and 2). What it reads it
//! reads strictly: a known member of the wrong type, or twice, is [`AttestError::Malformed`].

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::attestation::{AttestError, SecurityLevel, VerifiedBoot};

/// OID of the KeyDescription extension.
pub const KEY_DESCRIPTION_OID: &str = "1.3.6.1.4.1.11129.2.1.17";

/// `origin` value of a key generated inside the keystore.
pub const ORIGIN_GENERATED: i64 = 0;

/// Where the keystore that attested runs (`SecurityLevel` in the schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySecurityLevel {
    /// 0: the Android system's software keystore.
    Software,
    /// 1: a trusted execution environment.
    TrustedEnvironment,
    /// 2: StrongBox, a discrete secure element.
    StrongBox,
}

impl KeySecurityLevel {
    fn from_value(v: i64) -> Result<Self, AttestError> {
        match v {
            0 => Ok(KeySecurityLevel::Software),
            1 => Ok(KeySecurityLevel::TrustedEnvironment),
            2 => Ok(KeySecurityLevel::StrongBox),
            _ => Err(malformed(format!("unknown security level {v}"))),
        }
    }

    /// The level's name: `software`, `trusted-environment` or `strongbox`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySecurityLevel::Software => "software",
            KeySecurityLevel::TrustedEnvironment => "trusted-environment",
            KeySecurityLevel::StrongBox => "strongbox",
        }
    }

    /// The format-independent level (StrongBox is a [`SecurityLevel::SecureElement`]).
    pub fn to_security_level(self) -> SecurityLevel {
        match self {
            KeySecurityLevel::Software => SecurityLevel::Software,
            KeySecurityLevel::TrustedEnvironment => SecurityLevel::TrustedEnvironment,
            KeySecurityLevel::StrongBox => SecurityLevel::SecureElement,
        }
    }
}

/// The parsed KeyDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDescription {
    /// `attestationVersion` (1-4 Keymaster, 100, 200, 300, 400 KeyMint).
    pub attestation_version: i64,
    /// `attestationSecurityLevel`: where the attestation was made.
    pub attestation_security_level: KeySecurityLevel,
    /// `keyMintVersion` (`keymasterVersion` before version 100).
    pub keymint_version: i64,
    /// `keyMintSecurityLevel`: where the key lives.
    pub keymint_security_level: KeySecurityLevel,
    /// `attestationChallenge`: what the app asked to be attested.
    pub attestation_challenge: Vec<u8>,
    /// `uniqueId` (empty unless requested by a system app).
    pub unique_id: Vec<u8>,
    /// `softwareEnforced`: properties the Android system vouches for.
    pub software_enforced: AuthorizationList,
    /// `hardwareEnforced` (`teeEnforced`): properties the secure hardware vouches for.
    pub hardware_enforced: AuthorizationList,
}

/// An AuthorizationList: the members postern reads. Byte-string identifiers are kept as bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizationList {
    /// `[1] purpose`.
    pub purpose: Vec<i64>,
    /// `[2] algorithm` (1 RSA, 3 EC, 32 AES, 128 HMAC).
    pub algorithm: Option<i64>,
    /// `[3] keySize`.
    pub key_size: Option<i64>,
    /// `[5] digest`.
    pub digest: Vec<i64>,
    /// `[6] padding`.
    pub padding: Vec<i64>,
    /// `[10] ecCurve`.
    pub ec_curve: Option<i64>,
    /// `[200] rsaPublicExponent`.
    pub rsa_public_exponent: Option<i64>,
    /// `[303] rollbackResistance`.
    pub rollback_resistance: bool,
    /// `[503] noAuthRequired`.
    pub no_auth_required: bool,
    /// `[504] userAuthType`.
    pub user_auth_type: Option<i64>,
    /// `[505] authTimeout` (seconds).
    pub auth_timeout: Option<i64>,
    /// `[701] creationDateTime` (milliseconds since the epoch).
    pub creation_date_time: Option<i64>,
    /// `[702] origin` (0 generated, 1 derived, 2 imported, 4 securely imported).
    pub origin: Option<i64>,
    /// `[704] rootOfTrust`.
    pub root_of_trust: Option<RootOfTrust>,
    /// `[705] osVersion` (`MMmmss`, 130000 = 13.0.0; 0 when unknown).
    pub os_version: Option<i64>,
    /// `[706] osPatchLevel` (`YYYYMM`).
    pub os_patch_level: Option<i64>,
    /// `[709] attestationApplicationId`.
    pub attestation_application_id: Option<AttestationApplicationId>,
    /// `[710] attestationIdBrand`.
    pub attestation_id_brand: Option<Vec<u8>>,
    /// `[711] attestationIdDevice`.
    pub attestation_id_device: Option<Vec<u8>>,
    /// `[712] attestationIdProduct`.
    pub attestation_id_product: Option<Vec<u8>>,
    /// `[713] attestationIdSerial`.
    pub attestation_id_serial: Option<Vec<u8>>,
    /// `[714] attestationIdImei`.
    pub attestation_id_imei: Option<Vec<u8>>,
    /// `[715] attestationIdMeid`.
    pub attestation_id_meid: Option<Vec<u8>>,
    /// `[716] attestationIdManufacturer`.
    pub attestation_id_manufacturer: Option<Vec<u8>>,
    /// `[717] attestationIdModel`.
    pub attestation_id_model: Option<Vec<u8>>,
    /// `[718] vendorPatchLevel` (`YYYYMMDD`, some devices `YYYYMM`).
    pub vendor_patch_level: Option<i64>,
    /// `[719] bootPatchLevel` (`YYYYMMDD`, some devices `YYYYMM`).
    pub boot_patch_level: Option<i64>,
    /// `[720] deviceUniqueAttestation`.
    pub device_unique_attestation: bool,
    /// `[723] attestationIdSecondImei`.
    pub attestation_id_second_imei: Option<Vec<u8>>,
    /// `[724] moduleHash`.
    pub module_hash: Option<Vec<u8>>,
    /// Tags present but not read, in order of appearance.
    pub unknown_tags: Vec<u32>,
}

/// `RootOfTrust`: the verified-boot state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootOfTrust {
    /// `verifiedBootKey`: digest of the key that verified the boot image.
    pub verified_boot_key: Vec<u8>,
    /// `deviceLocked`: whether the bootloader is locked.
    pub device_locked: bool,
    /// `verifiedBootState`.
    pub verified_boot_state: VerifiedBoot,
    /// `verifiedBootHash` (attestation version 3 and later).
    pub verified_boot_hash: Option<Vec<u8>>,
}

/// `AttestationApplicationId`: the app(s) that own the key and their signing certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttestationApplicationId {
    /// `package_infos`.
    pub packages: Vec<PackageInfo>,
    /// `signature_digests`: SHA-256 of each signing certificate.
    pub signature_digests: Vec<Vec<u8>>,
}

/// One `AttestationPackageInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInfo {
    /// The package name (bytes that are not UTF-8 are replaced).
    pub name: String,
    /// The version code.
    pub version: i64,
}

/// Parses the KeyDescription of an attestation leaf certificate, DER.
///
/// # Errors
/// [`AttestError::Malformed`] when the certificate does not parse, the extension is absent or
/// present twice, or it does not parse.
pub fn key_description(leaf_der: &[u8]) -> Result<KeyDescription, AttestError> {
    let (_, cert) = X509Certificate::from_der(leaf_der)
        .map_err(|e| malformed(format!("the leaf does not parse: {e}")))?;
    KeyDescription::from_certificate(&cert)
}

impl KeyDescription {
    /// The KeyDescription extension of `cert`.
    ///
    /// # Errors
    /// [`AttestError::Malformed`] when it is absent, present twice, or does not parse.
    pub(crate) fn from_certificate(cert: &X509Certificate<'_>) -> Result<Self, AttestError> {
        let mut found = cert
            .extensions()
            .iter()
            .filter(|e| e.oid.to_id_string() == KEY_DESCRIPTION_OID);
        let ext = found
            .next()
            .ok_or_else(|| malformed("the leaf has no key description extension"))?;
        if found.next().is_some() {
            return Err(malformed("the leaf has two key description extensions"));
        }
        KeyDescription::from_der(ext.value)
    }

    /// Parses the extension's value (the DER `KeyDescription` sequence).
    ///
    /// # Errors
    /// [`AttestError::Malformed`] naming the defect.
    pub fn from_der(der: &[u8]) -> Result<Self, AttestError> {
        let (seq, rest) = read_tlv(der)?;
        if !rest.is_empty() {
            return Err(malformed("bytes after the key description"));
        }
        let mut r = Reader(seq.expect(UNIVERSAL, SEQUENCE, "key description")?);
        let attestation_version = int(&r.required("attestationVersion")?, "attestationVersion")?;
        let attestation_security_level =
            KeySecurityLevel::from_value(enumerated(&r.required("attestationSecurityLevel")?)?)?;
        let keymint_version = int(&r.required("keyMintVersion")?, "keyMintVersion")?;
        let keymint_security_level =
            KeySecurityLevel::from_value(enumerated(&r.required("keyMintSecurityLevel")?)?)?;
        let attestation_challenge =
            octets(&r.required("attestationChallenge")?, "attestationChallenge")?.to_vec();
        let unique_id = octets(&r.required("uniqueId")?, "uniqueId")?.to_vec();
        let software_enforced = AuthorizationList::parse(&r.required("softwareEnforced")?)?;
        let hardware_enforced = AuthorizationList::parse(&r.required("hardwareEnforced")?)?;
        // later members, if a future version adds any, are ignored
        Ok(KeyDescription {
            attestation_version,
            attestation_security_level,
            keymint_version,
            keymint_security_level,
            attestation_challenge,
            unique_id,
            software_enforced,
            hardware_enforced,
        })
    }
}

impl AuthorizationList {
    fn parse(tlv: &Tlv<'_>) -> Result<Self, AttestError> {
        let mut r = Reader(tlv.expect(UNIVERSAL, SEQUENCE, "authorization list")?);
        let mut list = AuthorizationList::default();
        let mut seen: Vec<u32> = Vec::new();
        while let Some(member) = r.next()? {
            let tag = member.tag;
            let name = tag_name(tag);
            let what = name.unwrap_or("unknown");
            if member.class != CONTEXT || (name.is_some() && !member.constructed) {
                return Err(malformed(format!(
                    "authorization list member with tag {tag} is not explicitly context-tagged"
                )));
            }
            if name.is_some() {
                if seen.contains(&tag) {
                    return Err(malformed(format!(
                        "authorization list tag {tag} appears twice"
                    )));
                }
                seen.push(tag);
            }
            let inner = || -> Result<Tlv<'_>, AttestError> {
                let (v, rest) = read_tlv(member.content)?;
                if rest.is_empty() {
                    Ok(v)
                } else {
                    Err(malformed(format!(
                        "bytes after authorization list tag {tag}"
                    )))
                }
            };
            match tag {
                1 => list.purpose = int_set(&inner()?, what)?,
                2 => list.algorithm = Some(int(&inner()?, what)?),
                3 => list.key_size = Some(int(&inner()?, what)?),
                5 => list.digest = int_set(&inner()?, what)?,
                6 => list.padding = int_set(&inner()?, what)?,
                10 => list.ec_curve = Some(int(&inner()?, what)?),
                200 => list.rsa_public_exponent = Some(int(&inner()?, what)?),
                303 => list.rollback_resistance = null(&inner()?, what)?,
                503 => list.no_auth_required = null(&inner()?, what)?,
                504 => list.user_auth_type = Some(int(&inner()?, what)?),
                505 => list.auth_timeout = Some(int(&inner()?, what)?),
                701 => list.creation_date_time = Some(int(&inner()?, what)?),
                702 => list.origin = Some(int(&inner()?, what)?),
                704 => list.root_of_trust = Some(RootOfTrust::parse(&inner()?)?),
                705 => list.os_version = Some(int(&inner()?, what)?),
                706 => list.os_patch_level = Some(int(&inner()?, what)?),
                709 => {
                    let der = octets(&inner()?, what)?;
                    list.attestation_application_id = Some(AttestationApplicationId::parse(der)?);
                }
                710 => list.attestation_id_brand = Some(octets(&inner()?, what)?.to_vec()),
                711 => list.attestation_id_device = Some(octets(&inner()?, what)?.to_vec()),
                712 => list.attestation_id_product = Some(octets(&inner()?, what)?.to_vec()),
                713 => list.attestation_id_serial = Some(octets(&inner()?, what)?.to_vec()),
                714 => list.attestation_id_imei = Some(octets(&inner()?, what)?.to_vec()),
                715 => list.attestation_id_meid = Some(octets(&inner()?, what)?.to_vec()),
                716 => {
                    list.attestation_id_manufacturer = Some(octets(&inner()?, what)?.to_vec());
                }
                717 => list.attestation_id_model = Some(octets(&inner()?, what)?.to_vec()),
                718 => list.vendor_patch_level = Some(int(&inner()?, what)?),
                719 => list.boot_patch_level = Some(int(&inner()?, what)?),
                720 => list.device_unique_attestation = null(&inner()?, what)?,
                723 => list.attestation_id_second_imei = Some(octets(&inner()?, what)?.to_vec()),
                724 => list.module_hash = Some(octets(&inner()?, what)?.to_vec()),
                _ => list.unknown_tags.push(tag),
            }
        }
        Ok(list)
    }
}

/// The schema name of a tag postern reads.
fn tag_name(tag: u32) -> Option<&'static str> {
    Some(match tag {
        1 => "purpose",
        2 => "algorithm",
        3 => "keySize",
        5 => "digest",
        6 => "padding",
        10 => "ecCurve",
        200 => "rsaPublicExponent",
        303 => "rollbackResistance",
        503 => "noAuthRequired",
        504 => "userAuthType",
        505 => "authTimeout",
        701 => "creationDateTime",
        702 => "origin",
        704 => "rootOfTrust",
        705 => "osVersion",
        706 => "osPatchLevel",
        709 => "attestationApplicationId",
        710 => "attestationIdBrand",
        711 => "attestationIdDevice",
        712 => "attestationIdProduct",
        713 => "attestationIdSerial",
        714 => "attestationIdImei",
        715 => "attestationIdMeid",
        716 => "attestationIdManufacturer",
        717 => "attestationIdModel",
        718 => "vendorPatchLevel",
        719 => "bootPatchLevel",
        720 => "deviceUniqueAttestation",
        723 => "attestationIdSecondImei",
        724 => "moduleHash",
        _ => return None,
    })
}

impl RootOfTrust {
    fn parse(tlv: &Tlv<'_>) -> Result<Self, AttestError> {
        let mut r = Reader(tlv.expect(UNIVERSAL, SEQUENCE, "rootOfTrust")?);
        let verified_boot_key =
            octets(&r.required("verifiedBootKey")?, "verifiedBootKey")?.to_vec();
        let device_locked = boolean(&r.required("deviceLocked")?)?;
        let verified_boot_state = match enumerated(&r.required("verifiedBootState")?)? {
            0 => VerifiedBoot::Verified,
            1 => VerifiedBoot::SelfSigned,
            2 => VerifiedBoot::Unverified,
            3 => VerifiedBoot::Failed,
            v => return Err(malformed(format!("unknown verifiedBootState {v}"))),
        };
        let verified_boot_hash = match r.next()? {
            Some(t) => Some(octets(&t, "verifiedBootHash")?.to_vec()),
            None => None,
        };
        Ok(RootOfTrust {
            verified_boot_key,
            device_locked,
            verified_boot_state,
            verified_boot_hash,
        })
    }
}

impl AttestationApplicationId {
    fn parse(der: &[u8]) -> Result<Self, AttestError> {
        let (seq, rest) = read_tlv(der)?;
        if !rest.is_empty() {
            return Err(malformed("bytes after attestationApplicationId"));
        }
        let mut r = Reader(seq.expect(UNIVERSAL, SEQUENCE, "attestationApplicationId")?);
        let infos = r.required("package_infos")?;
        let mut infos = Reader(infos.expect(UNIVERSAL, SET, "package_infos")?);
        let mut packages = Vec::new();
        while let Some(info) = infos.next()? {
            let mut p = Reader(info.expect(UNIVERSAL, SEQUENCE, "package info")?);
            let name = octets(&p.required("package_name")?, "package_name")?;
            let version = int(&p.required("version")?, "package version")?;
            packages.push(PackageInfo {
                name: String::from_utf8_lossy(name).into_owned(),
                version,
            });
        }
        let digests = r.required("signature_digests")?;
        let mut digests = Reader(digests.expect(UNIVERSAL, SET, "signature_digests")?);
        let mut signature_digests = Vec::new();
        while let Some(d) = digests.next()? {
            signature_digests.push(octets(&d, "signature digest")?.to_vec());
        }
        Ok(AttestationApplicationId {
            packages,
            signature_digests,
        })
    }
}

fn malformed(what: impl std::fmt::Display) -> AttestError {
    AttestError::Malformed(format!("key description: {what}"))
}

// ---- a minimal DER reader ----

const UNIVERSAL: u8 = 0;
const CONTEXT: u8 = 2;
const BOOLEAN: u32 = 1;
const INTEGER: u32 = 2;
const OCTET_STRING: u32 = 4;
const NULL: u32 = 5;
const ENUMERATED: u32 = 10;
const SEQUENCE: u32 = 16;
const SET: u32 = 17;

/// One tag-length-value.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    /// 0 universal, 1 application, 2 context-specific, 3 private.
    class: u8,
    constructed: bool,
    tag: u32,
    content: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// The content, if the class, tag and form are the ones expected.
    fn expect(&self, class: u8, tag: u32, what: &str) -> Result<&'a [u8], AttestError> {
        let constructed = matches!(tag, SEQUENCE | SET);
        if self.class != class || self.tag != tag || self.constructed != constructed {
            return Err(malformed(format!("{what} has the wrong type")));
        }
        Ok(self.content)
    }
}

/// Reads one TLV from the start of `input`; returns it and what follows.
fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), AttestError> {
    let truncated = || malformed("truncated DER");
    let (&first, mut rest) = input.split_first().ok_or_else(truncated)?;
    let class = first >> 6;
    let constructed = first & 0x20 != 0;
    let mut tag = u32::from(first & 0x1f);
    if tag == 0x1f {
        tag = 0;
        loop {
            let (&b, r) = rest.split_first().ok_or_else(truncated)?;
            rest = r;
            if tag == 0 && b == 0x80 {
                return Err(malformed("non-minimal tag number"));
            }
            if tag > (u32::MAX >> 7) {
                return Err(malformed("tag number too large"));
            }
            tag = (tag << 7) | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    let (&len0, r) = rest.split_first().ok_or_else(truncated)?;
    rest = r;
    let len = if len0 < 0x80 {
        usize::from(len0)
    } else if len0 == 0x80 {
        return Err(malformed("indefinite length"));
    } else {
        let n = usize::from(len0 & 0x7f);
        if n > 4 || n > rest.len() {
            return Err(malformed("bad length"));
        }
        let (bytes, r) = rest.split_at(n);
        rest = r;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if len > rest.len() {
        return Err(truncated());
    }
    let (content, rest) = rest.split_at(len);
    Ok((
        Tlv {
            class,
            constructed,
            tag,
            content,
        },
        rest,
    ))
}

/// Reads the members of a constructed value one by one.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<Option<Tlv<'a>>, AttestError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let (t, rest) = read_tlv(self.0)?;
        self.0 = rest;
        Ok(Some(t))
    }

    fn required(&mut self, what: &str) -> Result<Tlv<'a>, AttestError> {
        self.next()?
            .ok_or_else(|| malformed(format!("{what} is missing")))
    }
}

/// A two's-complement integer content that fits `i64` (redundant leading bytes tolerated).
fn signed(content: &[u8], what: &str) -> Result<i64, AttestError> {
    let mut c = content;
    while let [a, b, ..] = c {
        if (*a == 0 && b & 0x80 == 0) || (*a == 0xff && b & 0x80 != 0) {
            c = &c[1..];
        } else {
            break;
        }
    }
    let Some(&first) = c.first() else {
        return Err(malformed(format!("{what} is an empty integer")));
    };
    if c.len() > 8 {
        return Err(malformed(format!("{what} is out of range")));
    }
    let init: i64 = if first & 0x80 != 0 { -1 } else { 0 };
    Ok(c.iter().fold(init, |acc, b| (acc << 8) | i64::from(*b)))
}

fn int(t: &Tlv<'_>, what: &str) -> Result<i64, AttestError> {
    signed(t.expect(UNIVERSAL, INTEGER, what)?, what)
}

fn enumerated(t: &Tlv<'_>) -> Result<i64, AttestError> {
    signed(
        t.expect(UNIVERSAL, ENUMERATED, "an enumerated value")?,
        "an enumerated value",
    )
}

fn boolean(t: &Tlv<'_>) -> Result<bool, AttestError> {
    match t.expect(UNIVERSAL, BOOLEAN, "deviceLocked")? {
        [0] => Ok(false),
        [_] => Ok(true),
        _ => Err(malformed("a boolean is not one byte")),
    }
}

fn octets<'a>(t: &Tlv<'a>, what: &str) -> Result<&'a [u8], AttestError> {
    t.expect(UNIVERSAL, OCTET_STRING, what)
}

fn null(t: &Tlv<'_>, what: &str) -> Result<bool, AttestError> {
    if t.expect(UNIVERSAL, NULL, what)?.is_empty() {
        Ok(true)
    } else {
        Err(malformed(format!("{what} is a non-empty null")))
    }
}

fn int_set(t: &Tlv<'_>, what: &str) -> Result<Vec<i64>, AttestError> {
    let mut r = Reader(t.expect(UNIVERSAL, SET, what)?);
    let mut out = Vec::new();
    while let Some(v) = r.next()? {
        out.push(int(&v, what)?);
    }
    Ok(out)
}
