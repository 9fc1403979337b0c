//! A test Apple attestation authority: a P-384 root and a P-384 "Sub CA" made once, and a leaf
//! per statement shaped like Apple's (subject CN = hex SHA-256 of the key's point, OU
//! `AAA Certification`, O `Apple Inc.`, ST `California`; critical key usage and basic
//! constraints; the device facts as raw extensions), so that tests can mint every genuine and
//! forged `apple` statement.
//!
//! Every field of [`AppleStatement`] is public: set `freshness` to another token's hash or to
//! `None`, the dates to the past or the future, `serial`/`udid` to another device's or `None`
//! (User Enrollment), or the key to one the CSR does not hold. A chain to an untrusted root is
//! another [`AppleTestAuthority`].

use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P384_SHA384, SerialNumber, SubjectPublicKeyInfo,
};
use time::{Duration, OffsetDateTime};

use crate::attestation::TrustRoots;
use crate::attestation::apple::{
    OID_FRESHNESS, OID_LLB_VERSION, OID_OS_VERSION, OID_SECURE_BOOT, OID_SEP_OS_VERSION,
    OID_SERIAL_NUMBER, OID_SIP_STATUS, OID_SOFTWARE_UPDATE_DEVICE_ID, OID_THIRD_PARTY_KEXTS,
    OID_UDID,
};

const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];

/// A test root and Sub CA that issue Apple-shaped attestation leaves.
#[derive(Debug)]
pub struct AppleTestAuthority {
    root_der: Vec<u8>,
    root_pem: String,
    sub_ca_der: Vec<u8>,
    sub_ca: Issuer<'static, KeyPair>,
    serial: AtomicU64,
}

/// What one device attests; every field can be forged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppleStatement {
    /// The device key's SubjectPublicKeyInfo, DER (what the CSR will carry): P-256 or P-384
    /// for a genuine statement, RSA or Ed25519 for a forged one (rcgen on ring cannot certify
    /// other keys).
    pub public_key_der: Vec<u8>,
    /// Serial number (`None`: omitted, as under User Enrollment).
    pub serial: Option<String>,
    /// UDID (`None`: omitted).
    pub udid: Option<String>,
    /// Software Update device id.
    pub software_update_device_id: Option<String>,
    /// Freshness code (`None`: the extension is omitted).
    pub freshness: Option<Vec<u8>>,
    /// OS version.
    pub os_version: Option<String>,
    /// sepOS version.
    pub sep_os_version: Option<String>,
    /// LLB version.
    pub llb_version: Option<String>,
    /// SIP enabled (encoded as INTEGER 0) or disabled (1).
    pub sip_enabled: Option<bool>,
    /// Secure boot mode, as Apple writes it.
    pub secure_boot: Option<String>,
    /// Third-party kernel extensions allowed (INTEGER 1) or not (0).
    pub kexts_allowed: Option<bool>,
    /// Start of the leaf's validity.
    pub not_before: OffsetDateTime,
    /// End of the leaf's validity.
    pub not_after: OffsetDateTime,
}

impl AppleStatement {
    /// Typical values of an Apple-silicon Mac on 15.5 (which also cover an iPhone's): the
    /// serial, a UDID derived from it, SIP enabled, Full Security, no third-party kexts,
    /// freshness = SHA-256(`token`), valid from `now` - 1 hour to `now` + 90 days.
    pub fn new(public_key_der: &[u8], serial: &str, token: &str, now: OffsetDateTime) -> Self {
        let h = ring::digest::digest(&ring::digest::SHA256, serial.as_bytes());
        let udid = format!(
            "00006030-{}",
            crate::attestation::hex_lower(&h.as_ref()[..8]).to_uppercase()
        );
        AppleStatement {
            public_key_der: public_key_der.to_vec(),
            serial: Some(serial.to_owned()),
            udid: Some(udid),
            software_update_device_id: Some("J514sAP".to_owned()),
            freshness: Some(freshness_for(token)),
            os_version: Some("15.5".to_owned()),
            sep_os_version: Some("15.5".to_owned()),
            llb_version: Some("15.5".to_owned()),
            sip_enabled: Some(true),
            secure_boot: Some("Full Security".to_owned()),
            kexts_allowed: Some(false),
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(90),
        }
    }
}

/// The freshness code an Apple device puts in the leaf for the challenge `token`:
/// SHA-256(token).
pub fn freshness_for(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

// The generator is test tooling: a failure to make a key or a certificate from constant
// parameters is a bug here, and a panic is the right report.
#[allow(clippy::expect_used)]
impl AppleTestAuthority {
    /// A new root (valid 2020 to 2060) and Sub CA, both P-384.
    pub fn new() -> Self {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("p-384 key");
        let mut root = ca_params("Postern Test Enterprise Attestation Root CA");
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root_cert = root.self_signed(&root_key).expect("test root");
        let root_issuer = Issuer::new(root, root_key);

        let sub_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("p-384 key");
        let mut sub = ca_params("Postern Test Enterprise Attestation Sub CA 1");
        sub.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let sub_cert = sub.signed_by(&sub_key, &root_issuer).expect("test sub ca");
        AppleTestAuthority {
            root_der: root_cert.der().to_vec(),
            root_pem: root_cert.pem(),
            sub_ca_der: sub_cert.der().to_vec(),
            sub_ca: Issuer::new(sub, sub_key),
            serial: AtomicU64::new(1),
        }
    }

    /// The root, PEM: what a provisioner configures as its `apple` roots.
    pub fn root_pem(&self) -> String {
        self.root_pem.clone()
    }

    /// The root as trust anchors.
    pub fn roots(&self) -> TrustRoots {
        let mut roots = TrustRoots::default();
        roots.add_der(&self.root_der).expect("the test root parses");
        roots
    }

    /// An attestation object (CBOR), as the device sends it: `fmt` `apple` and `x5c` = [leaf,
    /// Sub CA].
    ///
    /// # Panics
    /// As [`leaf_der`](Self::leaf_der).
    pub fn attest(&self, s: &AppleStatement) -> Vec<u8> {
        att_obj("apple", &[self.leaf_der(s), self.sub_ca_der.clone()])
    }

    /// The attestation leaf alone, DER.
    ///
    /// # Panics
    /// When the statement's key is not a SubjectPublicKeyInfo of a key rcgen knows (EC P-256 or
    /// P-384, Ed25519, RSA).
    pub fn leaf_der(&self, s: &AppleStatement) -> Vec<u8> {
        self.leaf_der_with(s, |_| {})
    }

    /// The leaf, with `tweak` applied to its parameters before signing (to forge what a
    /// statement cannot express).
    pub(crate) fn leaf_der_with(
        &self,
        s: &AppleStatement,
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> Vec<u8> {
        let key = SubjectPublicKeyInfo::from_der(&s.public_key_der)
            .expect("the statement's key is a SubjectPublicKeyInfo rcgen knows");
        let point = rcgen::PublicKeyData::der_bytes(&key);
        let mut p = CertificateParams::default();
        p.not_before = s.not_before;
        p.not_after = s.not_after;
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        p.serial_number = Some(SerialNumber::from_slice(&n.to_be_bytes()));
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, crate::attestation::sha256_hex(point));
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "AAA Certification");
        p.distinguished_name
            .push(DnType::OrganizationName, "Apple Inc.");
        p.distinguished_name
            .push(DnType::StateOrProvinceName, "California");
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::DataEncipherment,
        ];
        // basic constraints CA:FALSE, critical, without the subject key identifier rcgen adds
        // with `IsCa::ExplicitNoCa` (Apple's leaves have none)
        let mut bc = CustomExtension::from_oid_content(OID_BASIC_CONSTRAINTS, vec![0x30, 0x00]);
        bc.set_criticality(true);
        p.custom_extensions.push(bc);
        let text = |v: &Option<String>| v.as_ref().map(|t| t.as_bytes().to_vec());
        let int = |v: Option<bool>| v.map(|b| vec![0x02, 0x01, u8::from(b)]);
        for (oid, value) in [
            (OID_SERIAL_NUMBER, text(&s.serial)),
            (OID_UDID, text(&s.udid)),
            (
                OID_SOFTWARE_UPDATE_DEVICE_ID,
                text(&s.software_update_device_id),
            ),
            (OID_OS_VERSION, text(&s.os_version)),
            (OID_SEP_OS_VERSION, text(&s.sep_os_version)),
            (OID_LLB_VERSION, text(&s.llb_version)),
            (OID_FRESHNESS, s.freshness.clone()),
            (OID_SIP_STATUS, int(s.sip_enabled.map(|on| !on))),
            (OID_SECURE_BOOT, text(&s.secure_boot)),
            (OID_THIRD_PARTY_KEXTS, int(s.kexts_allowed)),
        ] {
            if let Some(v) = value {
                p.custom_extensions
                    .push(CustomExtension::from_oid_content(oid, v));
            }
        }
        tweak(&mut p);
        p.signed_by(&key, &self.sub_ca)
            .expect("a leaf signed by the test sub ca")
            .der()
            .to_vec()
    }
}

impl Default for AppleTestAuthority {
    fn default() -> Self {
        AppleTestAuthority::new()
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2060, 1, 1);
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "Postern Test");
    p.distinguished_name.push(DnType::CountryName, "US");
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// `{"fmt": fmt, "attStmt": {"x5c": [certificates]}}`, CBOR.
pub(crate) fn att_obj(fmt: &str, x5c: &[Vec<u8>]) -> Vec<u8> {
    use ciborium::value::Value;
    let v = Value::Map(vec![
        (Value::Text("fmt".into()), Value::Text(fmt.into())),
        (
            Value::Text("attStmt".into()),
            Value::Map(vec![(
                Value::Text("x5c".into()),
                Value::Array(x5c.iter().map(|c| Value::Bytes(c.clone())).collect()),
            )]),
        ),
    ]);
    let mut out = Vec::new();
    // writing CBOR into a Vec cannot fail
    #[allow(clippy::expect_used)]
    ciborium::ser::into_writer(&v, &mut out).expect("cbor into a vec");
    out
}
