//! Provisioners: named ACME endpoints (`/acme/{name}/directory`), each bound to one tenant, one
//! challenge type and one certificate profile, with its own attestation roots and policy.
//!
//! Out of the box (no configuration) there are two: `devices` (`device-attest-01` with the
//! built-in Apple, Google and Microsoft roots, issuing `device-identity`) and `servers`
//! (`http-01` for `localhost` and names under `.test`, issuing `tls-server`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use postern_certs::attestation::android::RevocationList;
use postern_certs::attestation::{
    Evidence, Format, SecurityLevel, TrustRoots, VerifiedBoot, Verifier,
};

use crate::model::DEFAULT_TENANT;

/// `device-attest-01`.
pub const DEVICE_ATTEST_01: &str = "device-attest-01";
/// `http-01`.
pub const HTTP_01: &str = "http-01";

/// ACME settings (`[acme]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeSettings {
    /// The port http-01 validation connects to (80 in production; tests use a high port).
    pub http01_port: u16,
    /// How long one http-01 fetch may take, in seconds.
    pub http01_timeout_seconds: u64,
    /// Names that http-01 validation resolves to a fixed address instead of asking DNS (labs
    /// and tests).
    pub http01_hosts: BTreeMap<String, IpAddr>,
    /// How long an order and its authorizations stay usable, in minutes.
    pub order_lifetime_minutes: u32,
    /// How often expired orders and authorizations are removed, in seconds.
    pub cleanup_interval_seconds: u64,
    /// The provisioners; when empty, `devices` and `servers` as described above.
    pub provisioners: Vec<ProvisionerSettings>,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        AcmeSettings {
            http01_port: 80,
            http01_timeout_seconds: 10,
            http01_hosts: BTreeMap::new(),
            order_lifetime_minutes: 60,
            cleanup_interval_seconds: 300,
            provisioners: Vec::new(),
        }
    }
}

/// Whether configured roots replace or extend the built-in ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootsMode {
    /// Only the configured roots are trusted for that format.
    #[default]
    Replace,
    /// The configured roots are trusted besides the built-in ones.
    Extend,
}

/// Google's Android attestation revocation list.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AndroidRevocationSettings {
    /// Read the list from this file (Google's `status.json` format).
    pub file: Option<PathBuf>,
    /// Or fetch it from this URL (`https://android.googleapis.com/attestation/status`).
    pub url: Option<String>,
    /// A list older than this is stale, and attestations are refused, in hours.
    pub max_age_hours: u32,
    /// How often it is read again, in minutes.
    pub refresh_minutes: u32,
}

impl Default for AndroidRevocationSettings {
    fn default() -> Self {
        AndroidRevocationSettings {
            file: None,
            url: None,
            max_age_hours: 48,
            refresh_minutes: 60,
        }
    }
}

/// One provisioner (`[[acme.provisioners]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionerSettings {
    /// URL segment, `[a-z0-9-]{1,63}`.
    pub name: String,
    /// The tenant whose inventory and certificates it serves.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// `device-attest-01` or `http-01`.
    pub challenge: String,
    /// The certificate profile it issues.
    pub profile: String,
    /// Attestation formats accepted (`apple`, `android-key`, `tpm`); all when empty.
    #[serde(default)]
    pub formats: Vec<Format>,
    /// Roots per format (PEM files), replacing or extending the built-ins.
    #[serde(default)]
    pub roots: BTreeMap<Format, PathBuf>,
    /// Whether `roots` replace or extend the built-ins.
    #[serde(default)]
    pub roots_mode: RootsMode,
    /// Lowest OS version accepted per format (`apple = "17.0"`, `android-key = "13"`).
    #[serde(default)]
    pub min_os_version: BTreeMap<Format, String>,
    /// Weakest key storage accepted (`trusted-environment` by default: never `software`).
    #[serde(default = "default_security_level")]
    pub min_security_level: SecurityLevel,
    /// Whether the boot state, where the format reports one, must be verified (and an Android
    /// bootloader locked).
    #[serde(default = "yes")]
    pub require_verified_boot: bool,
    /// Whether new accounts need external account binding.
    #[serde(default)]
    pub require_eab: bool,
    /// The Android revocation list; when set, a stale or missing list refuses android-key.
    #[serde(default)]
    pub android_revocation: Option<AndroidRevocationSettings>,
    /// For http-01: the DNS names allowed (`name`, or `*.suffix` for any name under it).
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// Certificate validity in days instead of the profile's default.
    #[serde(default)]
    pub validity_days: Option<u32>,
    /// For device-attest-01: a device enrolls only while it holds an unused enrollment grant,
    /// which issuing it a profile creates and a successful finalize uses up (an account bound
    /// to the device by a profile's binding key counts as one).
    #[serde(default)]
    pub require_enrollment_grant: bool,
    /// How long an enrollment grant (and the profile's one-time secrets) stays usable, in hours.
    #[serde(default = "default_grant_hours")]
    pub enrollment_grant_hours: u32,
}

fn default_grant_hours() -> u32 {
    24
}

fn default_tenant() -> String {
    DEFAULT_TENANT.into()
}

fn default_security_level() -> SecurityLevel {
    SecurityLevel::TrustedEnvironment
}

fn yes() -> bool {
    true
}

impl ProvisionerSettings {
    /// The two provisioners of an installation without ACME configuration.
    pub fn defaults() -> Vec<ProvisionerSettings> {
        let base = ProvisionerSettings {
            name: String::new(),
            tenant: default_tenant(),
            challenge: String::new(),
            profile: String::new(),
            formats: Vec::new(),
            roots: BTreeMap::new(),
            roots_mode: RootsMode::Replace,
            min_os_version: BTreeMap::new(),
            min_security_level: default_security_level(),
            require_verified_boot: true,
            require_eab: false,
            android_revocation: None,
            dns_names: Vec::new(),
            validity_days: None,
            require_enrollment_grant: false,
            enrollment_grant_hours: default_grant_hours(),
        };
        vec![
            ProvisionerSettings {
                name: "devices".into(),
                challenge: DEVICE_ATTEST_01.into(),
                profile: "device-identity".into(),
                ..base.clone()
            },
            ProvisionerSettings {
                name: "servers".into(),
                challenge: HTTP_01.into(),
                profile: "tls-server".into(),
                dns_names: vec!["localhost".into(), "*.test".into()],
                ..base
            },
        ]
    }

    /// Checks the settings, naming the offending key (relative to the provisioner).
    ///
    /// # Errors
    /// `(key, message)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((k.to_owned(), m));
        if self.name.is_empty()
            || self.name.len() > 63
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("name", format!("{:?} is not [a-z0-9-]{{1,63}}", self.name));
        }
        if self.challenge != DEVICE_ATTEST_01 && self.challenge != HTTP_01 {
            return bad(
                "challenge",
                format!(
                    "{:?} is not \"device-attest-01\" or \"http-01\"",
                    self.challenge
                ),
            );
        }
        for (f, v) in &self.min_os_version {
            if parse_version(v).is_none() {
                return bad(
                    "min_os_version",
                    format!("{f}: {v:?} is not a dotted version"),
                );
            }
        }
        for n in &self.dns_names {
            let bare = n.strip_prefix("*.").unwrap_or(n);
            if bare.is_empty() || bare.contains('*') || bare.contains('/') {
                return bad("dns_names", format!("{n:?} is not a name or *.suffix"));
            }
        }
        if let Some(r) = &self.android_revocation {
            if r.file.is_none() && r.url.is_none() {
                return bad("android_revocation", "needs file or url".into());
            }
            if r.max_age_hours == 0 || r.refresh_minutes == 0 {
                return bad(
                    "android_revocation",
                    "max_age_hours and refresh_minutes must be > 0".into(),
                );
            }
        }
        if self.validity_days == Some(0) {
            return bad("validity_days", "must be > 0".into());
        }
        if self.require_enrollment_grant && self.challenge != DEVICE_ATTEST_01 {
            return bad(
                "require_enrollment_grant",
                "only a device-attest-01 provisioner enrolls devices".into(),
            );
        }
        if self.enrollment_grant_hours == 0 || self.enrollment_grant_hours > 24 * 30 {
            return bad("enrollment_grant_hours", "must be 1 to 720 hours".into());
        }
        Ok(())
    }

    /// The formats it accepts.
    pub fn enabled_formats(&self) -> Vec<Format> {
        if self.formats.is_empty() {
            Format::ALL.to_vec()
        } else {
            self.formats.clone()
        }
    }

    /// Whether http-01 may be used for `name`.
    pub fn allows_dns(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.dns_names.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => {
                name.len() > suffix.len() + 1
                    && name.ends_with(&suffix.to_ascii_lowercase())
                    && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
            }
            None => name == p.to_ascii_lowercase(),
        })
    }
}

/// A dotted version as numbers (`"17.2.1"` → `[17, 2, 1]`); Android's `130000` style is the
/// caller's to convert.
pub fn parse_version(v: &str) -> Option<Vec<u64>> {
    let parts: Option<Vec<u64>> = v.trim().split('.').map(|p| p.parse().ok()).collect();
    parts.filter(|p| !p.is_empty())
}

/// `a >= b` for dotted versions, missing parts counting as 0.
pub fn version_at_least(a: &[u64], b: &[u64]) -> bool {
    let n = a.len().max(b.len());
    for i in 0..n {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x > y;
        }
    }
    true
}

/// A provisioner ready to serve: its settings, its attestation verifier, its revocation list.
#[derive(Debug)]
pub struct Provisioner {
    /// The settings.
    pub settings: ProvisionerSettings,
    /// The attestation verifier (device-attest-01).
    pub verifier: Verifier,
    /// The Android revocation list, once loaded.
    revocations: RwLock<Option<Arc<RevocationList>>>,
}

impl Provisioner {
    /// Builds a provisioner, reading its root files.
    ///
    /// # Errors
    /// `(key, message)` naming the setting.
    pub fn new(settings: ProvisionerSettings) -> Result<Self, (String, String)> {
        settings.check()?;
        let formats = settings.enabled_formats();
        let mut verifier = Verifier::new(&formats);
        for (format, path) in &settings.roots {
            if !formats.contains(format) {
                return Err(("roots".into(), format!("{format} is not an enabled format")));
            }
            let text = std::fs::read_to_string(path).map_err(|e| {
                (
                    "roots".to_owned(),
                    format!("{format}: {}: {e}", path.display()),
                )
            })?;
            let roots = TrustRoots::from_pem(&text).map_err(|e| {
                (
                    "roots".to_owned(),
                    format!("{format}: {}: {e}", path.display()),
                )
            })?;
            match settings.roots_mode {
                RootsMode::Replace => verifier.set_roots(*format, roots),
                RootsMode::Extend => verifier.add_roots(*format, roots),
            }
        }
        Ok(Provisioner {
            settings,
            verifier,
            revocations: RwLock::new(None),
        })
    }

    /// Installs a freshly read revocation list.
    pub fn set_revocations(&self, list: RevocationList) {
        if let Ok(mut g) = self.revocations.write() {
            *g = Some(Arc::new(list));
        }
    }

    /// The revocation list, when configured: `Err` when configured but not loaded.
    ///
    /// # Errors
    /// A message saying the list is not available.
    pub fn revocations(&self) -> Result<Option<Arc<RevocationList>>, String> {
        if self.settings.android_revocation.is_none() {
            return Ok(None);
        }
        match self.revocations.read().ok().and_then(|g| g.clone()) {
            Some(l) => Ok(Some(l)),
            None => Err("the Android revocation list is configured but could not be read".into()),
        }
    }

    /// The provisioner's policy applied to verified evidence: `Err` says why not.
    ///
    /// # Errors
    /// A message naming the rule.
    pub fn check_policy(&self, e: &Evidence) -> Result<(), String> {
        if e.security_level < self.settings.min_security_level {
            return Err(format!(
                "key storage {:?} is below the required {:?}",
                e.security_level, self.settings.min_security_level
            ));
        }
        if let Some(min) = self.settings.min_os_version.get(&e.format) {
            let want = parse_version(min).unwrap_or_default();
            let have = e.os_version.as_deref().and_then(parse_version);
            match have {
                Some(h) if version_at_least(&h, &want) => {}
                Some(_) => {
                    return Err(format!(
                        "OS version {} is below the required {min}",
                        e.os_version.as_deref().unwrap_or("")
                    ));
                }
                None => {
                    return Err(format!(
                        "the attestation states no OS version; {min} is required"
                    ));
                }
            }
        }
        if self.settings.require_verified_boot
            && let Some(b) = &e.boot
        {
            if b.verified_boot != VerifiedBoot::Verified {
                return Err(format!("boot state is {:?}, not verified", b.verified_boot));
            }
            if b.device_locked == Some(false) {
                return Err("the bootloader is unlocked".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_patterns() {
        let p = &ProvisionerSettings::defaults()[1];
        assert!(p.allows_dns("localhost"));
        assert!(p.allows_dns("gw.test"));
        assert!(p.allows_dns("a.b.TEST"));
        assert!(!p.allows_dns("test"));
        assert!(!p.allows_dns(".test"));
        assert!(!p.allows_dns("evil-test"));
        assert!(!p.allows_dns("example.com"));
    }

    #[test]
    fn versions() {
        let v = |s| parse_version(s).unwrap();
        assert!(version_at_least(&v("17.2"), &v("17.0")));
        assert!(version_at_least(&v("17"), &v("17.0.0")));
        assert!(!version_at_least(&v("16.7.9"), &v("17")));
        assert!(parse_version("x.1").is_none());
    }

    #[test]
    fn enrollment_grants_are_for_device_provisioners_and_bounded() {
        let mut servers = ProvisionerSettings::defaults()[1].clone();
        servers.require_enrollment_grant = true;
        assert_eq!(
            servers.check().unwrap_err(),
            (
                "require_enrollment_grant".to_owned(),
                "only a device-attest-01 provisioner enrolls devices".to_owned()
            )
        );
        let mut devices = ProvisionerSettings::defaults()[0].clone();
        devices.require_enrollment_grant = true;
        devices.check().unwrap();
        for bad in [0, 721] {
            devices.enrollment_grant_hours = bad;
            assert_eq!(devices.check().unwrap_err().0, "enrollment_grant_hours");
        }
    }

    #[test]
    fn defaults_check() {
        for p in ProvisionerSettings::defaults() {
            p.check().unwrap();
            Provisioner::new(p).unwrap();
        }
    }
}
