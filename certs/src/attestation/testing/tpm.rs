//! A test TPM attestation authority: an ECDSA P-384 root ("Test TPM Root") and a P-256
//! intermediate made once, and one P-256 attestation key (AK). Per statement it issues an AK
//! certificate shaped like Windows' (empty subject, `tcg-kp-AIKCertificate` extended key
//! usage, not a CA, a critical subjectAltName with the TPM manufacturer `id:FFFFF1D0` (the
//! FIDO test vendor), model and version as a `directoryName`, and the device identifier as an
//! otherName), builds the device key's `TPMT_PUBLIC` and a `TPMS_ATTEST` certifying it, and
//! signs that with the AK (`alg` -7), so that tests can mint every genuine and forged `tpm`
//! statement. Per statement it costs two P-256 signatures.
//!
//! Every field of [`TpmStatement`] is public: set `extra_data` to another key authorization's
//! hash, `identifier` to another device's or `None`, `fixed_tpm`/`name_matches` to false, sign
//! with another key, move the AK certificate's dates, give it a subject or drop its extended
//! key usage, or change `ver` and `alg`. A chain to an untrusted root is another
//! [`TpmTestAuthority`].

use std::sync::atomic::{AtomicU64, Ordering};

use ciborium::value::Value;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PublicKeyData as _, SerialNumber, SigningKey as _,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;
use yasna::Tag;
use yasna::models::ObjectIdentifier;

use crate::attestation::tpm::{
    ECC_NIST_P256, ECC_NIST_P384, OID_HARDWARE_MODULE_NAME, OID_PERMANENT_IDENTIFIER,
    OID_TCG_KP_AIK_CERTIFICATE, OID_TPM_MANUFACTURER, OID_TPM_MODEL, OID_TPM_VERSION,
    ObjectAttributes, TPM_GENERATED_VALUE, alg, st,
};
use crate::attestation::{DeviceIdentifier, IdentifierKind, TrustRoots};

/// The TPM manufacturer the test AK certificates name (the FIDO Alliance's test vendor id).
pub const TEST_MANUFACTURER: &str = "id:FFFFF1D0";
/// The TPM model they name.
pub const TEST_MODEL: &str = "POSTERN-TEST-TPM";
/// The TPM version they name.
pub const TEST_VERSION: &str = "id:00020000";
/// The firmware version the attestations carry (`7.2.0.1` once split into 16-bit parts).
pub const TEST_FIRMWARE: u64 = 0x0007_0002_0000_0001;

/// A test root and intermediate that certify one attestation key.
#[derive(Debug)]
pub struct TpmTestAuthority {
    root_der: Vec<u8>,
    root_pem: String,
    intermediate_der: Vec<u8>,
    intermediate: Issuer<'static, KeyPair>,
    ak: KeyPair,
    other: KeyPair,
    serial: AtomicU64,
}

/// What one device attests; every field can be forged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmStatement {
    /// The device key's SubjectPublicKeyInfo, DER (EC P-256 or P-384): the `pubArea` key.
    pub device_key_der: Vec<u8>,
    /// `certInfo.extraData`; genuinely SHA-256 of the key authorization.
    pub extra_data: Vec<u8>,
    /// The identifier in the AK certificate's subjectAltName (`None`: no otherName).
    pub identifier: Option<DeviceIdentifier>,
    /// Whether the key is `fixedTPM` (with `fixedParent` and `sensitiveDataOrigin`, which are
    /// always set).
    pub fixed_tpm: bool,
    /// Whether `certInfo` names this `pubArea` (false: one byte of the name is changed).
    pub name_matches: bool,
    /// Sign `certInfo` with a key other than the AK's.
    pub sign_with_other_key: bool,
    /// Start of the AK certificate's validity.
    pub ak_not_before: OffsetDateTime,
    /// End of the AK certificate's validity.
    pub ak_not_after: OffsetDateTime,
    /// A common name for the AK certificate's subject (`None`: the empty subject AKs have).
    pub ak_subject: Option<String>,
    /// Whether the AK certificate has the `tcg-kp-AIKCertificate` extended key usage.
    pub ak_eku: bool,
    /// The statement's `ver` (genuinely `"2.0"`).
    pub ver: String,
    /// The statement's `alg` (genuinely -7; the signature is ES256 whatever this says).
    pub alg: i64,
}

impl TpmStatement {
    /// A genuine statement: `extraData` = SHA-256(`key_authorization`), `identifier` in the AK
    /// certificate, a `fixedTPM` key, the AK certificate valid from `now` - 1 day to `now` +
    /// 365 days.
    pub fn new(
        device_key_der: &[u8],
        identifier: DeviceIdentifier,
        key_authorization: &str,
        now: OffsetDateTime,
    ) -> Self {
        TpmStatement {
            device_key_der: device_key_der.to_vec(),
            extra_data: ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes())
                .as_ref()
                .to_vec(),
            identifier: Some(identifier),
            fixed_tpm: true,
            name_matches: true,
            sign_with_other_key: false,
            ak_not_before: now - Duration::days(1),
            ak_not_after: now + Duration::days(365),
            ak_subject: None,
            ak_eku: true,
            ver: "2.0".to_owned(),
            alg: -7,
        }
    }
}

impl Default for TpmTestAuthority {
    fn default() -> Self {
        Self::new()
    }
}

impl TpmTestAuthority {
    /// Generates the root, the intermediate and the AK.
    ///
    /// # Panics
    /// Only if rcgen cannot make a key or a certificate from fixed, valid parameters.
    // Fixed, valid parameters: a failure is a bug here, and a panic is the right report.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let not_before = time::macros::datetime!(2000-01-01 0:00 UTC);
        let not_after = time::macros::datetime!(2099-12-31 0:00 UTC);
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("p-384 key");
        let mut root = CertificateParams::default();
        root.distinguished_name = DistinguishedName::new();
        root.distinguished_name
            .push(DnType::CommonName, "Test TPM Root");
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root.not_before = not_before;
        root.not_after = not_after;
        let root_cert = root.self_signed(&root_key).expect("test root");
        let root_issuer = Issuer::new(root, root_key);

        let inter_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("p-256 key");
        let mut inter = CertificateParams::default();
        inter.distinguished_name = DistinguishedName::new();
        inter
            .distinguished_name
            .push(DnType::CommonName, "Test TPM Intermediate");
        inter.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        inter.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        inter.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(oid_arcs(
            OID_TCG_KP_AIK_CERTIFICATE,
        ))];
        inter.not_before = not_before;
        inter.not_after = not_after;
        inter.use_authority_key_identifier_extension = true;
        let inter_cert = inter
            .signed_by(&inter_key, &root_issuer)
            .expect("test intermediate");

        TpmTestAuthority {
            root_der: root_cert.der().to_vec(),
            root_pem: root_cert.pem(),
            intermediate_der: inter_cert.der().to_vec(),
            intermediate: Issuer::new(inter, inter_key),
            ak: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("p-256 key"),
            other: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("p-256 key"),
            serial: AtomicU64::new(1),
        }
    }

    /// The root, PEM (what a provisioner configures as its `tpm` roots).
    pub fn root_pem(&self) -> String {
        self.root_pem.clone()
    }

    /// The root, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The root as [`TrustRoots`].
    ///
    /// # Panics
    /// Never: the root was made by this authority and parses.
    #[allow(clippy::expect_used)] // the root was made here and parses
    pub fn roots(&self) -> TrustRoots {
        let mut roots = TrustRoots::default();
        roots.add_der(&self.root_der).expect("the test root parses");
        roots
    }

    /// The AK certificate for `s`, DER.
    ///
    /// # Panics
    /// If the identifier's OID is not a valid OID (its grammar is checked by
    /// [`DeviceIdentifier::parse`]) or rcgen cannot sign.
    #[allow(clippy::expect_used)] // test inputs: a panic is the right report
    pub fn ak_certificate(&self, s: &TpmStatement) -> Vec<u8> {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        if let Some(cn) = &s.ak_subject {
            p.distinguished_name.push(DnType::CommonName, cn.as_str());
        }
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if s.ak_eku {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(oid_arcs(
                OID_TCG_KP_AIK_CERTIFICATE,
            ))];
        }
        p.not_before = s.ak_not_before;
        p.not_after = s.ak_not_after;
        p.serial_number = Some(SerialNumber::from(
            self.serial.fetch_add(1, Ordering::Relaxed),
        ));
        p.use_authority_key_identifier_extension = true;
        let mut san = CustomExtension::from_oid_content(&[2, 5, 29, 17], san_der(s));
        san.set_criticality(true);
        p.custom_extensions.push(san);
        p.signed_by(&self.ak, &self.intermediate)
            .expect("an AK certificate signed by the test intermediate")
            .der()
            .to_vec()
    }

    /// The attestation object for `s`, CBOR (as a device sends it, base64url-encoded, in
    /// `attObj`): `alg` -7, `x5c` = [AK certificate, intermediate].
    ///
    /// # Panics
    /// If `s.device_key_der` is not an EC P-256 or P-384 SubjectPublicKeyInfo.
    #[allow(clippy::expect_used)] // test inputs: a panic is the right report
    pub fn attest(&self, s: &TpmStatement) -> Vec<u8> {
        let ak_cert = self.ak_certificate(s);
        let pub_area = ecc_pub_area(&s.device_key_der, s.fixed_tpm)
            .expect("device_key_der is an EC P-256 or P-384 SubjectPublicKeyInfo");
        let mut name = alg::SHA256.to_be_bytes().to_vec();
        name.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, &pub_area).as_ref());
        if !s.name_matches {
            let last = name.len() - 1;
            name[last] ^= 0x01;
        }
        let signer_name = {
            let mut n = alg::SHA256.to_be_bytes().to_vec();
            let spki = self.ak.subject_public_key_info();
            n.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, &spki).as_ref());
            n
        };
        let cert_info = cert_info(&signer_name, &s.extra_data, &name);
        let signer = if s.sign_with_other_key {
            &self.other
        } else {
            &self.ak
        };
        let sig = signer.sign(&cert_info).expect("an ecdsa p-256 signature");
        let stmt = Value::Map(vec![
            (text("ver"), text(&s.ver)),
            (text("alg"), Value::Integer(s.alg.into())),
            (
                text("x5c"),
                Value::Array(vec![
                    Value::Bytes(ak_cert),
                    Value::Bytes(self.intermediate_der.clone()),
                ]),
            ),
            (text("sig"), Value::Bytes(sig)),
            (text("certInfo"), Value::Bytes(cert_info)),
            (text("pubArea"), Value::Bytes(pub_area)),
        ]);
        let obj = Value::Map(vec![(text("fmt"), text("tpm")), (text("attStmt"), stmt)]);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&obj, &mut out).expect("cbor into a vec");
        out
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// The arcs of a dotted OID.
///
/// # Panics
/// If an arc is not a number (the callers pass checked OIDs).
#[allow(clippy::expect_used)] // checked OIDs only
fn oid_arcs(dotted: &str) -> Vec<u64> {
    dotted
        .split('.')
        .map(|a| a.parse().expect("a numeric arc"))
        .collect()
}

fn oid(dotted: &str) -> ObjectIdentifier {
    ObjectIdentifier::new(oid_arcs(dotted))
}

/// The AK certificate's subjectAltName: a `directoryName` with the TPM manufacturer, model
/// and version, one attribute per RDN, and the identifier as an otherName.
fn san_der(s: &TpmStatement) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_tagged(Tag::context(4), |w| {
                w.write_sequence(|w| {
                    for (o, v) in [
                        (OID_TPM_MANUFACTURER, TEST_MANUFACTURER),
                        (OID_TPM_MODEL, TEST_MODEL),
                        (OID_TPM_VERSION, TEST_VERSION),
                    ] {
                        w.next().write_set(|w| {
                            w.next().write_sequence(|w| {
                                w.next().write_oid(&oid(o));
                                w.next().write_utf8_string(v);
                            });
                        });
                    }
                });
            });
            if let Some(id) = &s.identifier {
                w.next().write_tagged_implicit(Tag::context(0), |w| {
                    w.write_sequence(|w| match id.kind {
                        IdentifierKind::PermanentIdentifier => {
                            w.next().write_oid(&oid(OID_PERMANENT_IDENTIFIER));
                            w.next().write_tagged(Tag::context(0), |w| {
                                w.write_sequence(|w| {
                                    w.next().write_utf8_string(&id.value);
                                    if let Some(a) = &id.oid {
                                        w.next().write_oid(&oid(a));
                                    }
                                });
                            });
                        }
                        IdentifierKind::HardwareModule => {
                            w.next().write_oid(&oid(OID_HARDWARE_MODULE_NAME));
                            w.next().write_tagged(Tag::context(0), |w| {
                                w.write_sequence(|w| {
                                    w.next().write_oid(&oid(id.oid.as_deref().unwrap_or("0.0")));
                                    w.next().write_bytes(id.value.as_bytes());
                                });
                            });
                        }
                    });
                });
            }
        });
    })
}

/// A `TPMT_PUBLIC` for an EC P-256 or P-384 SubjectPublicKeyInfo: a signing key, SHA-256
/// name, `fixedParent | sensitiveDataOrigin | userWithAuth | sign`, plus `fixedTPM` when
/// asked. `None` for another key.
fn ecc_pub_area(spki_der: &[u8], fixed_tpm: bool) -> Option<Vec<u8>> {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der).ok()?;
    if !rest.is_empty() || spki.algorithm.algorithm.to_id_string() != "1.2.840.10045.2.1" {
        return None;
    }
    let curve_oid = spki
        .algorithm
        .parameters
        .as_ref()?
        .as_oid()
        .ok()?
        .to_id_string();
    let (curve, size) = match curve_oid.as_str() {
        "1.2.840.10045.3.1.7" => (ECC_NIST_P256, 32),
        "1.3.132.0.34" => (ECC_NIST_P384, 48),
        _ => return None,
    };
    let point: &[u8] = &spki.subject_public_key.data;
    if point.len() != 1 + 2 * size || point[0] != 4 {
        return None;
    }
    let mut attrs = ObjectAttributes::FIXED_PARENT
        | ObjectAttributes::SENSITIVE_DATA_ORIGIN
        | ObjectAttributes::USER_WITH_AUTH
        | ObjectAttributes::SIGN;
    if fixed_tpm {
        attrs |= ObjectAttributes::FIXED_TPM;
    }
    let mut out = Vec::with_capacity(24 + 2 * size);
    out.extend_from_slice(&alg::ECC.to_be_bytes());
    out.extend_from_slice(&alg::SHA256.to_be_bytes());
    out.extend_from_slice(&attrs.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // authPolicy: empty
    out.extend_from_slice(&alg::NULL.to_be_bytes()); // symmetric
    out.extend_from_slice(&alg::NULL.to_be_bytes()); // scheme: any
    out.extend_from_slice(&curve.to_be_bytes());
    out.extend_from_slice(&alg::NULL.to_be_bytes()); // kdf
    for c in [&point[1..=size], &point[1 + size..]] {
        tpm2b(&mut out, c);
    }
    Some(out)
}

/// A `TPMS_ATTEST` of type certify.
fn cert_info(signer_name: &[u8], extra_data: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
    out.extend_from_slice(&st::ATTEST_CERTIFY.to_be_bytes());
    tpm2b(&mut out, signer_name);
    tpm2b(&mut out, extra_data);
    out.extend_from_slice(&86_400_000u64.to_be_bytes()); // clock: one day
    out.extend_from_slice(&3u32.to_be_bytes()); // resetCount
    out.extend_from_slice(&1u32.to_be_bytes()); // restartCount
    out.push(1); // safe
    out.extend_from_slice(&TEST_FIRMWARE.to_be_bytes());
    tpm2b(&mut out, name);
    let mut qualified = alg::SHA256.to_be_bytes().to_vec();
    qualified.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, name).as_ref());
    tpm2b(&mut out, &qualified);
    out
}

/// Appends a `TPM2B`: a 16-bit size and the bytes (the callers' values are far below 64 KiB).
fn tpm2b(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..usize::from(len)]);
}
