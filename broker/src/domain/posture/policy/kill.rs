//! Kill switches: a tenant turns a transport off for everyone, for an OS version range of a
//! platform, for a carrier, or for client versions. Matching fails closed (see the parent
//! module's docs).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{KillKind, PolicyError, PostureView, Transport, TransportSet};

/// A dotted numeric OS version (`17.4.1`); up to four parts, missing parts are zero, so
/// `17` = `17.0` = `17.0.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OsVersion([u32; 4]);

impl OsVersion {
    /// Reads the version a device reports, leniently: the leading `digits(.digits)*` part
    /// (`14.4.1 (23E224)` → 14.4.1, `17.4b2` → 17.4); parts past the fourth are ignored.
    /// `None` when it does not start with a digit.
    pub fn from_reported(s: &str) -> Option<OsVersion> {
        let mut parts = [0u32; 4];
        let mut i = 0;
        let mut digits = 0;
        for b in s.trim_start().bytes() {
            match b {
                b'0'..=b'9' => {
                    if i < 4 {
                        parts[i] = parts[i].checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
                    }
                    digits += 1;
                }
                b'.' if digits > 0 => {
                    i += 1;
                    digits = 0;
                }
                _ => break,
            }
        }
        if i == 0 && digits == 0 {
            return None;
        }
        Some(OsVersion(parts))
    }
}

impl FromStr for OsVersion {
    type Err = String;

    /// Strict: one to four dot-separated decimal parts.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = [0u32; 4];
        for (n, p) in s.split('.').enumerate() {
            if n == 4 || p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "{s:?} is not a version (one to four dot-separated numbers)"
                ));
            }
            parts[n] = p
                .parse()
                .map_err(|_| format!("{s:?}: {p} is too large for a version part"))?;
        }
        Ok(OsVersion(parts))
    }
}

impl fmt::Display for OsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}")?;
        if d != 0 {
            write!(f, ".{d}")?;
        }
        Ok(())
    }
}

impl Serialize for OsVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OsVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which client versions a switch covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionMatch {
    /// Exactly this version string.
    Exact(String),
    /// Every version string starting with this (write `2.3.` to cover 2.3.x but not 2.30).
    Prefix(String),
}

impl VersionMatch {
    fn matches(&self, v: &str) -> bool {
        match self {
            VersionMatch::Exact(e) => v == e,
            VersionMatch::Prefix(p) => v.starts_with(p.as_str()),
        }
    }
}

/// Whom a switch covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KillScope {
    /// Every device of the tenant.
    Tenant,
    /// Devices of `platform` (ASCII case-insensitive) whose OS version is within
    /// `min..=max` (an absent bound is open).
    OsVersion {
        /// `ios`, `android`, ...
        platform: String,
        /// Lowest version covered.
        #[serde(default)]
        min: Option<OsVersion>,
        /// Highest version covered.
        #[serde(default)]
        max: Option<OsVersion>,
    },
    /// Devices on this carrier (ASCII case-insensitive).
    Carrier(String),
    /// Devices running these client versions.
    ClientVersion(VersionMatch),
}

/// One switch: `transport` off for `scope`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillSwitch {
    /// The transport turned off (never block).
    pub transport: Transport,
    /// Whom it covers.
    pub scope: KillScope,
}

impl KillSwitch {
    fn kind(&self) -> KillKind {
        match self.scope {
            KillScope::Tenant => KillKind::Tenant,
            KillScope::OsVersion { .. } => KillKind::OsVersion,
            KillScope::Carrier(_) => KillKind::Carrier,
            KillScope::ClientVersion(_) => KillKind::ClientVersion,
        }
    }

    /// Whether the switch covers this device; unknown facts count as covered.
    fn covers(&self, view: &PostureView<'_>) -> bool {
        match &self.scope {
            KillScope::Tenant => true,
            KillScope::OsVersion { platform, min, max } => {
                if !view.platform.eq_ignore_ascii_case(platform) {
                    return false;
                }
                match OsVersion::from_reported(view.os_version) {
                    None => true,
                    Some(v) => min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m),
                }
            }
            KillScope::Carrier(c) => view.carrier.is_none_or(|v| v.eq_ignore_ascii_case(c)),
            KillScope::ClientVersion(m) => view.client_version.is_none_or(|v| m.matches(v)),
        }
    }

    fn check(&self, key: &str) -> Result<(), PolicyError> {
        if self.transport == Transport::Block {
            return Err(PolicyError::new(
                format!("{key}.transport"),
                "block cannot be switched off",
            ));
        }
        let empty = |k: &str| PolicyError::new(format!("{key}.scope.{k}"), "must not be empty");
        match &self.scope {
            KillScope::Tenant => Ok(()),
            KillScope::OsVersion { platform, min, max } => {
                if platform.is_empty() {
                    return Err(empty("platform"));
                }
                if let (Some(lo), Some(hi)) = (min, max)
                    && lo > hi
                {
                    return Err(PolicyError::new(
                        format!("{key}.scope.max"),
                        format!("{hi} is below min {lo}"),
                    ));
                }
                Ok(())
            }
            KillScope::Carrier(c) if c.is_empty() => Err(empty("carrier")),
            KillScope::ClientVersion(VersionMatch::Exact(v) | VersionMatch::Prefix(v))
                if v.is_empty() =>
            {
                Err(empty("client_version"))
            }
            KillScope::Carrier(_) | KillScope::ClientVersion(_) => Ok(()),
        }
    }
}

/// A tenant's kill switches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<KillSwitch>", into = "Vec<KillSwitch>")]
pub struct KillSwitches {
    rules: Vec<KillSwitch>,
    /// Transports some switch names; evaluation looks no further for the others.
    named: TransportSet,
}

impl KillSwitches {
    /// No switches.
    pub fn new() -> Self {
        KillSwitches::default()
    }

    /// Adds a switch.
    ///
    /// # Errors
    /// A [`PolicyError`] naming `kill_switches[i]` and the field: block switched off, an empty
    /// platform, carrier or client version, a range whose max is below its min.
    pub fn push(&mut self, switch: KillSwitch) -> Result<&mut Self, PolicyError> {
        switch.check(&format!("kill_switches[{}]", self.rules.len()))?;
        self.named.insert(switch.transport);
        self.rules.push(switch);
        Ok(self)
    }

    /// Turns `transport` off for the whole tenant.
    ///
    /// # Errors
    /// As [`KillSwitches::push`].
    pub fn transport_off(&mut self, transport: Transport) -> Result<&mut Self, PolicyError> {
        self.push(KillSwitch {
            transport,
            scope: KillScope::Tenant,
        })
    }

    /// The switches, in the order added (a reason names its switch by this index).
    pub fn rules(&self) -> &[KillSwitch] {
        &self.rules
    }

    /// The first switch that turns `t` off for this device: its kind and index.
    pub(super) fn check(&self, t: Transport, view: &PostureView<'_>) -> Option<(KillKind, usize)> {
        if !self.named.contains(t) {
            return None;
        }
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.transport == t && r.covers(view))
            .map(|(i, r)| (r.kind(), i))
    }
}

impl TryFrom<Vec<KillSwitch>> for KillSwitches {
    type Error = PolicyError;

    fn try_from(rules: Vec<KillSwitch>) -> Result<Self, PolicyError> {
        let mut k = KillSwitches::new();
        for r in rules {
            k.push(r)?;
        }
        Ok(k)
    }
}

impl From<KillSwitches> for Vec<KillSwitch> {
    fn from(k: KillSwitches) -> Self {
        k.rules
    }
}
