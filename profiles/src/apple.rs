//! Apple configuration profiles: a `Configuration` profile holding postern's root CA
//! (`com.apple.security.root`) and one credential payload, `com.apple.security.acme`
//! (hardware-bound, attested, `device-attest-01`) or `com.apple.security.scep`.
//!
//! Key names, types and availability follow Apple's schema (apple/device-management); the
//! crate's tests check every generated profile against those YAML files.

use plist::{Dictionary, Value};

use crate::{
    Error, OsVersion, PayloadKind, Platform, Result, Target, check_https, check_text, payload_uuid,
};

/// The content type of a `.mobileconfig`.
pub const MOBILECONFIG_CONTENT_TYPE: &str = "application/x-apple-aspen-config";

/// The lowest OS versions where an ACME payload can be hardware-bound *and* attested, which
/// postern's `device-attest-01` requires: the payload exists from iOS 16, macOS 13.1, tvOS 16,
/// visionOS 1.0 and watchOS 9, but `HardwareBound`/`Attest` must be false before macOS 14, and
/// `Attest` arrives on watchOS in 10.
pub const ACME_ATTEST_MINIMUM: [(Platform, OsVersion); 5] = [
    (Platform::Ios, OsVersion::new(16, 0)),
    (Platform::Macos, OsVersion::new(14, 0)),
    (Platform::Tvos, OsVersion::new(16, 0)),
    (Platform::Visionos, OsVersion::new(1, 0)),
    (Platform::Watchos, OsVersion::new(10, 0)),
];

/// Where the SCEP payload exists.
pub const SCEP_MINIMUM: [(Platform, OsVersion); 5] = [
    (Platform::Ios, OsVersion::new(4, 0)),
    (Platform::Macos, OsVersion::new(10, 7)),
    (Platform::Tvos, OsVersion::new(9, 0)),
    (Platform::Visionos, OsVersion::new(1, 0)),
    (Platform::Watchos, OsVersion::new(3, 0)),
];

/// The key an ACME payload asks the Secure Enclave for (hardware-bound keys are P-256 or P-384).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcmeKey {
    /// `ECSECPrimeRandom` 256.
    P256,
    /// `ECSECPrimeRandom` 384.
    #[default]
    P384,
}

impl AcmeKey {
    fn size(self) -> i64 {
        match self {
            AcmeKey::P256 => 256,
            AcmeKey::P384 => 384,
        }
    }
}

/// The subject alternative name a device asks for (the server may ignore it; postern does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectAltName {
    /// `rfc822Name`.
    pub rfc822_name: Option<String>,
    /// `dNSName`.
    pub dns_name: Option<String>,
    /// `uniformResourceIdentifier`.
    pub uri: Option<String>,
    /// `ntPrincipalName`.
    pub nt_principal_name: Option<String>,
}

impl SubjectAltName {
    fn is_empty(&self) -> bool {
        self.rfc822_name.is_none()
            && self.dns_name.is_none()
            && self.uri.is_none()
            && self.nt_principal_name.is_none()
    }

    fn to_dict(&self) -> Dictionary {
        let mut d = Dictionary::new();
        for (k, v) in [
            ("rfc822Name", &self.rfc822_name),
            ("dNSName", &self.dns_name),
            ("uniformResourceIdentifier", &self.uri),
            ("ntPrincipalName", &self.nt_principal_name),
        ] {
            if let Some(v) = v {
                d.insert(k.into(), Value::String(v.clone()));
            }
        }
        d
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (k, v) in self.to_dict() {
            if let Value::String(s) = v {
                m.insert(k, serde_json::Value::String(s));
            }
        }
        serde_json::Value::Object(m)
    }
}

/// The ACME credential: what the device asks which server for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeCredential {
    /// `DirectoryURL` (https).
    pub directory_url: String,
    /// `ClientIdentifier`: the device's serial number or UDID, which the device orders as a
    /// `permanent-identifier` and the attestation must carry.
    pub client_identifier: String,
    /// Key type and size.
    pub key: AcmeKey,
    /// `Subject`: RDNs of one `(type, value)` each, in order (`CN`, `O`, dotted OIDs).
    pub subject: Vec<(String, String)>,
    /// `SubjectAltName`.
    pub subject_alt_name: SubjectAltName,
    /// `UsageFlags` (0x01 digital signature, 0x04 encryption).
    pub usage_flags: Option<i64>,
    /// `ExtendedKeyUsage` (dotted OIDs).
    pub extended_key_usage: Vec<String>,
}

impl AcmeCredential {
    /// postern's defaults for a device: P-384, subject `CN=<identifier>`, digital signature,
    /// clientAuth.
    pub fn for_device(directory_url: &str, client_identifier: &str) -> Self {
        AcmeCredential {
            directory_url: directory_url.to_owned(),
            client_identifier: client_identifier.to_owned(),
            key: AcmeKey::P384,
            subject: vec![("CN".into(), client_identifier.to_owned())],
            subject_alt_name: SubjectAltName::default(),
            usage_flags: Some(1),
            extended_key_usage: vec!["1.3.6.1.5.5.7.3.2".into()],
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        check_https("DirectoryURL", &self.directory_url)?;
        check_text("ClientIdentifier", &self.client_identifier, 128)?;
        if self.subject.is_empty() {
            return Err(Error::invalid("Subject", "at least one RDN"));
        }
        for (t, v) in &self.subject {
            check_text("Subject", t, 64)?;
            check_text("Subject", v, 256)?;
        }
        if let Some(f) = self.usage_flags
            && (f & !0x05 != 0 || f == 0)
        {
            return Err(Error::invalid(
                "UsageFlags",
                "only 0x01 and 0x04 may be set",
            ));
        }
        for oid in &self.extended_key_usage {
            let ok = !oid.is_empty()
                && oid
                    .split('.')
                    .all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                return Err(Error::invalid(
                    "ExtendedKeyUsage",
                    format!("{oid:?} is not a dotted OID"),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn subject_plist(&self) -> Value {
        Value::Array(
            self.subject
                .iter()
                .map(|(t, v)| {
                    Value::Array(vec![Value::Array(vec![
                        Value::String(t.clone()),
                        Value::String(v.clone()),
                    ])])
                })
                .collect(),
        )
    }

    pub(crate) fn subject_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.subject
                .iter()
                .map(|(t, v)| serde_json::json!([[t, v]]))
                .collect(),
        )
    }
}

/// The SCEP credential, for devices that cannot attest (SCEP service itself is separate from
/// this crate: the challenge is an argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScepCredential {
    /// `URL`.
    pub url: String,
    /// `Name` (the CA instance name).
    pub name: Option<String>,
    /// `Challenge`: a one-time challenge password.
    pub challenge: String,
    /// `Subject`, as for ACME.
    pub subject: Vec<(String, String)>,
    /// `Keysize`: 1024, 2048 or 4096.
    pub key_size: i64,
    /// `Key Usage` (1 signing, 4 encryption, 5 both).
    pub key_usage: i64,
    /// `Retries`.
    pub retries: i64,
    /// `RetryDelay` in seconds.
    pub retry_delay: i64,
    /// `CAFingerprint` (SHA-256 of the CA certificate).
    pub ca_fingerprint: Option<Vec<u8>>,
}

/// Which credential payload the profile carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `com.apple.security.acme`.
    Acme(AcmeCredential),
    /// `com.apple.security.scep`.
    Scep(ScepCredential),
}

/// Everything a configuration profile is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileParams {
    /// The tenant (in identifiers and UUIDs).
    pub tenant: String,
    /// postern's device id (in identifiers and UUIDs).
    pub device_id: String,
    /// The profile's generation: a new one gives new payload UUIDs.
    pub generation: u64,
    /// Reverse-DNS prefix of every `PayloadIdentifier`.
    pub identifier_prefix: String,
    /// `PayloadOrganization`.
    pub organization: String,
    /// `PayloadDisplayName` of the profile.
    pub display_name: String,
    /// The device's platform and OS version.
    pub target: Target,
    /// postern's root CA certificate (DER).
    pub root_ca_der: Vec<u8>,
    /// The credential payload.
    pub credential: Credential,
    /// `PayloadRemovalDisallowed` (emitted only where the OS knows the key).
    pub removal_disallowed: bool,
}

/// A configuration profile, ready to serialize.
#[derive(Debug, Clone, PartialEq)]
pub struct MobileConfig {
    /// The top-level dictionary.
    pub dict: Dictionary,
}

impl MobileConfig {
    /// The XML property list (what is served as `.mobileconfig`).
    ///
    /// # Errors
    /// [`Error::Internal`] when the writer fails.
    pub fn to_xml(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        Value::Dictionary(self.dict.clone())
            .to_writer_xml(&mut out)
            .map_err(|e| Error::Internal(e.to_string()))?;
        out.push(b'\n');
        Ok(out)
    }

    /// The payload dictionaries.
    pub fn payloads(&self) -> Vec<&Dictionary> {
        self.dict
            .get("PayloadContent")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_dictionary).collect())
            .unwrap_or_default()
    }

    /// The payload of a `PayloadType`.
    pub fn payload(&self, payload_type: &str) -> Option<&Dictionary> {
        self.payloads()
            .into_iter()
            .find(|p| p.get("PayloadType").and_then(Value::as_string) == Some(payload_type))
    }
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn common(
    p: &ProfileParams,
    kind: PayloadKind,
    payload_type: &str,
    display_name: &str,
) -> Dictionary {
    let mut d = Dictionary::new();
    d.insert(
        "PayloadIdentifier".into(),
        s(&format!("{}.{}", identifier_base(p), kind.as_str())),
    );
    d.insert("PayloadType".into(), s(payload_type));
    d.insert(
        "PayloadUUID".into(),
        s(&payload_uuid(&p.tenant, &p.device_id, kind, p.generation)),
    );
    d.insert("PayloadVersion".into(), Value::Integer(1.into()));
    d.insert("PayloadDisplayName".into(), s(display_name));
    d.insert("PayloadOrganization".into(), s(&p.organization));
    d
}

fn identifier_base(p: &ProfileParams) -> String {
    format!(
        "{}.{}.{}.enrollment",
        p.identifier_prefix, p.tenant, p.device_id
    )
}

fn check_identifier_part(what: &'static str, v: &str) -> Result<()> {
    if v.is_empty()
        || v.len() > 128
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(Error::invalid(
            what,
            format!("{v:?} must be [A-Za-z0-9._-], 1 to 128 characters"),
        ));
    }
    Ok(())
}

fn acme_payload(p: &ProfileParams, a: &AcmeCredential) -> Result<Dictionary> {
    p.target
        .require("an attested ACME payload", &ACME_ATTEST_MINIMUM)?;
    a.check()?;
    let mut d = common(
        p,
        PayloadKind::Acme,
        "com.apple.security.acme",
        "Device identity (ACME)",
    );
    d.insert("DirectoryURL".into(), s(&a.directory_url));
    d.insert("ClientIdentifier".into(), s(&a.client_identifier));
    d.insert("KeyType".into(), s("ECSECPrimeRandom"));
    d.insert("KeySize".into(), Value::Integer(a.key.size().into()));
    d.insert("HardwareBound".into(), Value::Boolean(true));
    d.insert("Attest".into(), Value::Boolean(true));
    d.insert("Subject".into(), a.subject_plist());
    if !a.subject_alt_name.is_empty() {
        d.insert(
            "SubjectAltName".into(),
            Value::Dictionary(a.subject_alt_name.to_dict()),
        );
    }
    if let Some(f) = a.usage_flags {
        d.insert("UsageFlags".into(), Value::Integer(f.into()));
    }
    if !a.extended_key_usage.is_empty() {
        d.insert(
            "ExtendedKeyUsage".into(),
            Value::Array(a.extended_key_usage.iter().map(|o| s(o)).collect()),
        );
    }
    Ok(d)
}

fn scep_payload(p: &ProfileParams, c: &ScepCredential) -> Result<Dictionary> {
    p.target.require("a SCEP payload", &SCEP_MINIMUM)?;
    check_https("URL", &c.url).or_else(|_| {
        // SCEP runs over plain HTTP as often as not: the message itself is encrypted
        match c.url.strip_prefix("http://") {
            Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(()),
            _ => Err(Error::invalid(
                "URL",
                format!("{:?} is not an http(s) URL", c.url),
            )),
        }
    })?;
    check_text("Challenge", &c.challenge, 256)?;
    if ![1024, 2048, 4096].contains(&c.key_size) {
        return Err(Error::invalid("Keysize", "1024, 2048 or 4096"));
    }
    if ![1, 4, 5].contains(&c.key_usage) {
        return Err(Error::invalid("Key Usage", "1, 4 or 5"));
    }
    if c.retries < 0 || c.retry_delay < 0 {
        return Err(Error::invalid("Retries", "must not be negative"));
    }
    let mut inner = Dictionary::new();
    inner.insert("URL".into(), s(&c.url));
    if let Some(n) = &c.name {
        inner.insert("Name".into(), s(n));
    }
    if !c.subject.is_empty() {
        inner.insert(
            "Subject".into(),
            Value::Array(
                c.subject
                    .iter()
                    .map(|(t, v)| Value::Array(vec![Value::Array(vec![s(t), s(v)])]))
                    .collect(),
            ),
        );
    }
    inner.insert("Challenge".into(), s(&c.challenge));
    inner.insert("Keysize".into(), Value::Integer(c.key_size.into()));
    inner.insert("Key Type".into(), s("RSA"));
    inner.insert("Key Usage".into(), Value::Integer(c.key_usage.into()));
    inner.insert("Retries".into(), Value::Integer(c.retries.into()));
    inner.insert("RetryDelay".into(), Value::Integer(c.retry_delay.into()));
    if let Some(fp) = &c.ca_fingerprint {
        inner.insert("CAFingerprint".into(), Value::Data(fp.clone()));
    }
    let mut d = common(
        p,
        PayloadKind::Scep,
        "com.apple.security.scep",
        "Device identity (SCEP)",
    );
    d.insert("PayloadContent".into(), Value::Dictionary(inner));
    Ok(d)
}

/// Builds the enrollment profile.
///
/// # Errors
/// [`Error::Invalid`] for a bad argument; [`Error::Unsupported`] when the target OS cannot
/// use the credential payload (an attested ACME key needs iOS 16, macOS 14, tvOS 16,
/// visionOS 1.0 or watchOS 10).
pub fn enrollment_profile(p: &ProfileParams) -> Result<MobileConfig> {
    if !p.target.platform.is_apple() {
        return Err(Error::invalid(
            "target",
            "configuration profiles are for Apple platforms",
        ));
    }
    for part in p.identifier_prefix.split('.') {
        check_identifier_part("identifier prefix", part)?;
    }
    check_identifier_part("tenant", &p.tenant)?;
    check_identifier_part("device id", &p.device_id)?;
    check_text("organization", &p.organization, 256)?;
    check_text("display name", &p.display_name, 256)?;
    if p.root_ca_der.is_empty() {
        return Err(Error::invalid("root CA", "empty"));
    }
    let credential = match &p.credential {
        Credential::Acme(a) => acme_payload(p, a)?,
        Credential::Scep(c) => scep_payload(p, c)?,
    };
    let mut root = common(
        p,
        PayloadKind::Root,
        "com.apple.security.root",
        "postern root CA",
    );
    root.insert("PayloadCertificateFileName".into(), s("postern-root.cer"));
    root.insert("PayloadContent".into(), Value::Data(p.root_ca_der.clone()));

    let mut top = Dictionary::new();
    top.insert(
        "PayloadContent".into(),
        Value::Array(vec![Value::Dictionary(root), Value::Dictionary(credential)]),
    );
    top.insert(
        "PayloadDescription".into(),
        s("Installs the organization's root certificate and enrolls this device's hardware-bound identity."),
    );
    top.insert("PayloadDisplayName".into(), s(&p.display_name));
    top.insert("PayloadIdentifier".into(), s(&identifier_base(p)));
    top.insert("PayloadOrganization".into(), s(&p.organization));
    if p.removal_disallowed && !matches!(p.target.platform, Platform::Visionos | Platform::Watchos)
    {
        // iOS and tvOS honour it on supervised devices only; visionOS and watchOS lack it
        top.insert("PayloadRemovalDisallowed".into(), Value::Boolean(true));
    }
    if p.target.platform == Platform::Macos {
        // macOS only: the identity goes to the System keychain, where daemons find it
        top.insert("PayloadScope".into(), s("System"));
    }
    top.insert("PayloadType".into(), s("Configuration"));
    top.insert(
        "PayloadUUID".into(),
        s(&payload_uuid(
            &p.tenant,
            &p.device_id,
            PayloadKind::Profile,
            p.generation,
        )),
    );
    top.insert("PayloadVersion".into(), Value::Integer(1.into()));
    let tdt_since = match p.target.platform {
        Platform::Ios | Platform::Tvos => OsVersion::new(12, 2),
        Platform::Macos => OsVersion::new(10, 15),
        Platform::Visionos => OsVersion::new(1, 1),
        Platform::Watchos => OsVersion::new(5, 2),
        Platform::Android => OsVersion::new(u32::MAX, 0),
    };
    if let Some(t) = p.target.platform.target_device_type()
        && p.target.version >= tdt_since
    {
        top.insert("TargetDeviceType".into(), Value::Integer(t.into()));
    }
    Ok(MobileConfig { dict: top })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn params(platform: Platform, v: OsVersion) -> ProfileParams {
        ProfileParams {
            tenant: "default".into(),
            device_id: "dev_0123".into(),
            generation: 1,
            identifier_prefix: "io.postern".into(),
            organization: "Example".into(),
            display_name: "Example device identity".into(),
            target: Target::new(platform, v),
            root_ca_der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
            credential: Credential::Acme(AcmeCredential::for_device(
                "https://postern.example/acme/devices/directory",
                "F2LZK0AAPLE1",
            )),
            removal_disallowed: true,
        }
    }

    #[test]
    fn acme_profile_has_the_keys_postern_needs() {
        let m = enrollment_profile(&params(Platform::Ios, OsVersion::new(17, 4))).unwrap();
        let a = m.payload("com.apple.security.acme").unwrap();
        assert_eq!(a["ClientIdentifier"].as_string(), Some("F2LZK0AAPLE1"));
        assert_eq!(a["KeySize"].as_signed_integer(), Some(384));
        assert_eq!(a["HardwareBound"].as_boolean(), Some(true));
        assert_eq!(a["Attest"].as_boolean(), Some(true));
        assert!(m.payload("com.apple.security.root").is_some());
        assert_eq!(m.dict["PayloadType"].as_string(), Some("Configuration"));
        assert!(m.dict.get("PayloadScope").is_none(), "macOS only");
        assert_eq!(m.dict["PayloadRemovalDisallowed"].as_boolean(), Some(true));
        let xml = String::from_utf8(m.to_xml().unwrap()).unwrap();
        assert!(xml.starts_with("<?xml"), "{xml}");
        // round trip
        let back = Value::from_reader_xml(xml.as_bytes()).unwrap();
        assert_eq!(back.as_dictionary().unwrap(), &m.dict);
    }

    #[test]
    fn targets_that_cannot_attest_are_refused() {
        for (p, v, needs) in [
            (Platform::Macos, OsVersion::new(13, 6), "macOS 14.0"),
            (Platform::Ios, OsVersion::new(15, 7), "iOS 16.0"),
            (Platform::Watchos, OsVersion::new(9, 5), "watchOS 10.0"),
        ] {
            let e = enrollment_profile(&params(p, v)).unwrap_err();
            assert!(
                matches!(&e, Error::Unsupported { needs: n, .. } if n == needs),
                "{e}"
            );
        }
        let e = enrollment_profile(&params(Platform::Android, OsVersion::new(14, 0))).unwrap_err();
        assert!(matches!(e, Error::Invalid { what: "target", .. }));
    }

    #[test]
    fn macos_gets_system_scope_and_watchos_no_removal_key() {
        let m = enrollment_profile(&params(Platform::Macos, OsVersion::new(14, 0))).unwrap();
        assert_eq!(m.dict["PayloadScope"].as_string(), Some("System"));
        let w = enrollment_profile(&params(Platform::Watchos, OsVersion::new(10, 0))).unwrap();
        assert!(w.dict.get("PayloadRemovalDisallowed").is_none());
    }

    #[test]
    fn bad_arguments_are_refused() {
        let mut p = params(Platform::Ios, OsVersion::new(17, 0));
        p.credential = Credential::Acme(AcmeCredential::for_device("http://x/dir", "S"));
        assert!(matches!(
            enrollment_profile(&p).unwrap_err(),
            Error::Invalid {
                what: "DirectoryURL",
                ..
            }
        ));
        let mut p = params(Platform::Ios, OsVersion::new(17, 0));
        p.device_id = "a b".into();
        assert!(matches!(
            enrollment_profile(&p).unwrap_err(),
            Error::Invalid {
                what: "device id",
                ..
            }
        ));
        let mut p = params(Platform::Ios, OsVersion::new(17, 0));
        let mut a = AcmeCredential::for_device("https://x/dir", "S");
        a.usage_flags = Some(2);
        p.credential = Credential::Acme(a);
        assert!(matches!(
            enrollment_profile(&p).unwrap_err(),
            Error::Invalid {
                what: "UsageFlags",
                ..
            }
        ));
    }
}
