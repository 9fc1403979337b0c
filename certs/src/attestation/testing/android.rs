//! Test `android-key` attestations: a test root (ECDSA P-384; rcgen cannot generate RSA) and a
//! P-256 intermediate, made once by [`AndroidTestAuthority::new`], and per call a leaf that
//! certifies the device's key with a KeyDescription extension, plus the device's `sig`.
//!
//! Every field of [`AndroidStatement`] can be set to produce a forgery: another challenge, a
//! `sig` over other data, another serial or none, an expired leaf, an imported key, a software
//! keystore, an unknown `alg`, no KeyDescription. A chain to an untrusted root is an attestation
//! by another authority.
//!
//! The statement's properties all go into `hardwareEnforced` (as a TEE or StrongBox writes
//! them), whatever the security level; `softwareEnforced` carries the creation time and the
//! attestation application id, as on real devices.

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber, SigningKey,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;
use yasna::Tag;

use crate::attestation::android::{COSE_EDDSA, COSE_ES256, COSE_RS256};
use crate::attestation::{SecurityLevel, TrustRoots, VerifiedBoot};

/// The KeyDescription extension's OID, as rcgen wants it.
const KEY_DESCRIPTION_OID: [u64; 10] = [1, 3, 6, 1, 4, 1, 11129, 2, 1, 17];

/// The attestation version written (KeyMint 3).
const ATTESTATION_VERSION: i64 = 300;

/// A test Android attestation authority: root and intermediate.
pub struct AndroidTestAuthority {
    root_der: Vec<u8>,
    root_pem: String,
    intermediate_der: Vec<u8>,
    intermediate_serial: Vec<u8>,
    intermediate: Issuer<'static, KeyPair>,
    rng: SystemRandom,
}

impl std::fmt::Debug for AndroidTestAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AndroidTestAuthority")
            .field("root", &crate::attestation::sha256_hex(&self.root_der))
            .finish_non_exhaustive()
    }
}

/// What one attestation states. Start from [`AndroidStatement::new`] and change fields.
#[derive(Debug, Clone)]
pub struct AndroidStatement {
    /// The device's key, PKCS#8 DER (P-256, Ed25519 or RSA; ring cannot sign ES256 with a
    /// P-384 key). The leaf certifies its public key and it signs `sig`.
    pub device_key_pkcs8: Vec<u8>,
    /// `attestationChallenge`, normally the key authorization.
    pub challenge: Vec<u8>,
    /// What `sig` signs, normally the key authorization.
    pub signed_data: Vec<u8>,
    /// `attestationIdSerial`, or none.
    pub serial: Option<String>,
    /// `attestationIdImei`, or none.
    pub imei: Option<String>,
    /// `attestationIdBrand`, or none.
    pub brand: Option<String>,
    /// `attestationIdManufacturer`, or none.
    pub manufacturer: Option<String>,
    /// `attestationIdModel`, or none.
    pub model: Option<String>,
    /// The attestation and KeyMint security level: `Software`, `TrustedEnvironment` or
    /// `SecureElement` (StrongBox); `Tpm` is written as a TEE.
    pub security_level: SecurityLevel,
    /// `verifiedBootState`.
    pub verified_boot: VerifiedBoot,
    /// `deviceLocked`.
    pub device_locked: bool,
    /// `osVersion` (`MMmmss`).
    pub os_version: u32,
    /// `osPatchLevel` (`YYYYMM`).
    pub os_patch_level: u32,
    /// `origin` GENERATED (0) when true, IMPORTED (2) when false.
    pub origin_generated: bool,
    /// The attestation application id's package name.
    pub package: String,
    /// The leaf's validity.
    pub not_before: OffsetDateTime,
    /// The leaf's validity.
    pub not_after: OffsetDateTime,
    /// The statement's `alg`; `None`: the one that fits the device key.
    pub alg: Option<i64>,
    /// Whether the leaf carries the KeyDescription extension.
    pub key_description: bool,
}

impl AndroidStatement {
    /// A statement that verifies: challenge and `sig` over `key_authorization`, the serial as
    /// hardware-attested identifier, a TEE, verified boot, locked bootloader, a generated key,
    /// and a leaf valid from five minutes before `now` for a year.
    pub fn new(
        device_key_pkcs8: &[u8],
        serial: &str,
        key_authorization: &str,
        now: OffsetDateTime,
    ) -> Self {
        AndroidStatement {
            device_key_pkcs8: device_key_pkcs8.to_vec(),
            challenge: key_authorization.as_bytes().to_vec(),
            signed_data: key_authorization.as_bytes().to_vec(),
            serial: Some(serial.to_owned()),
            imei: None,
            brand: Some("google".to_owned()),
            manufacturer: Some("Google".to_owned()),
            model: Some("Pixel 8".to_owned()),
            security_level: SecurityLevel::TrustedEnvironment,
            verified_boot: VerifiedBoot::Verified,
            device_locked: true,
            os_version: 140_000,
            os_patch_level: 202_406,
            origin_generated: true,
            package: "com.example.postern".to_owned(),
            not_before: now - time::Duration::minutes(5),
            not_after: now + time::Duration::days(365),
            alg: None,
            key_description: true,
        }
    }
}

impl Default for AndroidTestAuthority {
    fn default() -> Self {
        AndroidTestAuthority::new()
    }
}

impl AndroidTestAuthority {
    /// A new root and intermediate, valid 2000-2099.
    ///
    /// # Panics
    /// When rcgen cannot generate a key or a certificate (not on a working system).
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let root_key = or_panic(
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            "root key",
        );
        let mut root = ca_params("Postern Test Android Attestation Root", &rng);
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root_cert = or_panic(root.self_signed(&root_key), "root certificate");
        let root_issuer = Issuer::new(root, root_key);

        let int_key = or_panic(
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            "intermediate key",
        );
        let mut int = ca_params("Postern Test Android Attestation Intermediate", &rng);
        int.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        int.use_authority_key_identifier_extension = true;
        let intermediate_serial = int
            .serial_number
            .as_ref()
            .map(SerialNumber::to_bytes)
            .unwrap_or_default();
        let int_cert = or_panic(
            int.signed_by(&int_key, &root_issuer),
            "intermediate certificate",
        );
        AndroidTestAuthority {
            root_der: root_cert.der().to_vec(),
            root_pem: root_cert.pem(),
            intermediate_der: int_cert.der().to_vec(),
            intermediate_serial,
            intermediate: Issuer::new(int, int_key),
            rng,
        }
    }

    /// The root certificate, PEM (what a provisioner configures as its roots).
    pub fn root_pem(&self) -> String {
        self.root_pem.clone()
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The intermediate certificate, DER.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// The intermediate's serial number as the revocation list writes it (lower-case hex, no
    /// leading zeros).
    pub fn intermediate_serial_hex(&self) -> String {
        let hex = crate::attestation::hex_lower(&self.intermediate_serial);
        match hex.trim_start_matches('0') {
            "" => "0".to_owned(),
            t => t.to_owned(),
        }
    }

    /// The root as trust roots.
    pub fn roots(&self) -> TrustRoots {
        let mut roots = TrustRoots::default();
        // rcgen's own output always parses
        let _ = roots.add_der(&self.root_der);
        roots
    }

    /// An attestation object (CBOR), `x5c` = [leaf, intermediate, root].
    ///
    /// # Panics
    /// When `s.device_key_pkcs8` is not a PKCS#8 key rcgen and ring can use.
    pub fn attest(&self, s: &AndroidStatement) -> Vec<u8> {
        let device = or_panic(
            KeyPair::try_from(s.device_key_pkcs8.as_slice()),
            "device key (PKCS#8)",
        );
        let key_alg = device.algorithm();
        let fitting_alg = if key_alg == &rcgen::PKCS_ED25519 {
            COSE_EDDSA
        } else if key_alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            COSE_ES256
        } else if key_alg == &rcgen::PKCS_RSA_SHA256 {
            COSE_RS256
        } else {
            panic!("android test authority: the device key must be P-256, Ed25519 or RSA")
        };
        let sig = or_panic(device.sign(&s.signed_data), "sig");

        let mut leaf = CertificateParams::default();
        leaf.distinguished_name = rcgen::DistinguishedName::new();
        leaf.distinguished_name
            .push(DnType::CommonName, "Android Keystore Key");
        leaf.serial_number = Some(SerialNumber::from_slice(&random_serial(&self.rng)));
        leaf.not_before = s.not_before;
        leaf.not_after = s.not_after;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.use_authority_key_identifier_extension = true;
        if s.key_description {
            leaf.custom_extensions = vec![CustomExtension::from_oid_content(
                &KEY_DESCRIPTION_OID,
                key_description_der(s, &device.subject_public_key_info()),
            )];
        }
        let leaf_cert = or_panic(leaf.signed_by(&device, &self.intermediate), "leaf");

        let stmt = vec![
            (
                text("alg"),
                ciborium::Value::Integer(s.alg.unwrap_or(fitting_alg).into()),
            ),
            (text("sig"), ciborium::Value::Bytes(sig)),
            (
                text("x5c"),
                ciborium::Value::Array(vec![
                    ciborium::Value::Bytes(leaf_cert.der().to_vec()),
                    ciborium::Value::Bytes(self.intermediate_der.clone()),
                    ciborium::Value::Bytes(self.root_der.clone()),
                ]),
            ),
        ];
        let obj = ciborium::Value::Map(vec![
            (text("fmt"), text("android-key")),
            (text("attStmt"), ciborium::Value::Map(stmt)),
        ]);
        let mut out = Vec::new();
        // writing to a Vec cannot fail
        let _ = ciborium::ser::into_writer(&obj, &mut out);
        out
    }
}

fn text(s: &str) -> ciborium::Value {
    ciborium::Value::Text(s.to_owned())
}

fn or_panic<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("android test authority: {what}: {e}"),
    }
}

fn random_serial(rng: &SystemRandom) -> [u8; 16] {
    let mut serial = [0u8; 16];
    // the system RNG does not fail on supported platforms; a zero serial would still work
    let _ = rng.fill(&mut serial);
    serial[0] = (serial[0] & 0x7f) | 0x01;
    serial
}

fn ca_params(cn: &str, rng: &SystemRandom) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "Postern Test");
    p.serial_number = Some(SerialNumber::from_slice(&random_serial(rng)));
    p.not_before = rcgen::date_time_ymd(2000, 1, 1);
    p.not_after = rcgen::date_time_ymd(2099, 12, 31);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn security_level_value(l: SecurityLevel) -> i64 {
    match l {
        SecurityLevel::Software => 0,
        SecurityLevel::TrustedEnvironment | SecurityLevel::Tpm => 1,
        SecurityLevel::SecureElement => 2,
    }
}

/// The KeyDescription DER for `s`; `spki` seeds a stable verified-boot key.
fn key_description_der(s: &AndroidStatement, spki: &[u8]) -> Vec<u8> {
    let level = security_level_value(s.security_level);
    let boot_state = match s.verified_boot {
        VerifiedBoot::Verified => 0,
        VerifiedBoot::SelfSigned => 1,
        VerifiedBoot::Unverified => 2,
        VerifiedBoot::Failed => 3,
    };
    let boot_key = ring::digest::digest(&ring::digest::SHA256, b"postern test verified boot key");
    let boot_hash = ring::digest::digest(&ring::digest::SHA256, spki);
    let app_id = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_set_of(|w| {
                w.next().write_sequence(|w| {
                    w.next().write_bytes(s.package.as_bytes());
                    w.next().write_i64(1);
                });
            });
            w.next().write_set_of(|w| {
                w.next().write_bytes(
                    ring::digest::digest(&ring::digest::SHA256, s.package.as_bytes()).as_ref(),
                );
            });
        });
    });
    let ids: [(u64, &Option<String>); 5] = [
        (710, &s.brand),
        (713, &s.serial),
        (714, &s.imei),
        (716, &s.manufacturer),
        (717, &s.model),
    ];
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_i64(ATTESTATION_VERSION);
            w.next().write_enum(level);
            w.next().write_i64(ATTESTATION_VERSION);
            w.next().write_enum(level);
            w.next().write_bytes(&s.challenge);
            w.next().write_bytes(&[]);
            // softwareEnforced
            w.next().write_sequence(|w| {
                let created = s.not_before.unix_timestamp() * 1000;
                w.next()
                    .write_tagged(Tag::context(701), |w| w.write_i64(created));
                w.next()
                    .write_tagged(Tag::context(709), |w| w.write_bytes(&app_id));
            });
            // hardwareEnforced
            w.next().write_sequence(|w| {
                w.next().write_tagged(Tag::context(1), |w| {
                    w.write_set_of(|w| w.next().write_i64(2)) // SIGN
                });
                w.next().write_tagged(Tag::context(2), |w| w.write_i64(3)); // EC
                w.next().write_tagged(Tag::context(3), |w| w.write_i64(256));
                w.next().write_tagged(Tag::context(5), |w| {
                    w.write_set_of(|w| w.next().write_i64(4)) // SHA-256
                });
                w.next().write_tagged(Tag::context(10), |w| w.write_i64(1)); // P-256
                w.next().write_tagged(Tag::context(503), |w| w.write_null());
                w.next().write_tagged(Tag::context(702), |w| {
                    w.write_i64(if s.origin_generated { 0 } else { 2 })
                });
                w.next().write_tagged(Tag::context(704), |w| {
                    w.write_sequence(|w| {
                        w.next().write_bytes(boot_key.as_ref());
                        w.next().write_bool(s.device_locked);
                        w.next().write_enum(boot_state);
                        w.next().write_bytes(boot_hash.as_ref());
                    });
                });
                w.next()
                    .write_tagged(Tag::context(705), |w| w.write_i64(i64::from(s.os_version)));
                w.next().write_tagged(Tag::context(706), |w| {
                    w.write_i64(i64::from(s.os_patch_level))
                });
                for (tag, value) in ids {
                    if let Some(v) = value {
                        w.next()
                            .write_tagged(Tag::context(tag), |w| w.write_bytes(v.as_bytes()));
                    }
                }
                let vendor = i64::from(s.os_patch_level) * 100 + 1;
                w.next()
                    .write_tagged(Tag::context(718), |w| w.write_i64(vendor));
                w.next()
                    .write_tagged(Tag::context(719), |w| w.write_i64(vendor));
            });
        });
    })
}
