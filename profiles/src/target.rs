//! The device a profile is for: its platform and OS version.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// An Apple platform (the names of Apple's schema `supportedOS`), or Android.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    /// iOS and iPadOS.
    Ios,
    /// macOS.
    Macos,
    /// tvOS.
    Tvos,
    /// visionOS.
    Visionos,
    /// watchOS.
    Watchos,
    /// Android.
    Android,
}

impl Platform {
    /// The name in Apple's schema (`iOS`, `macOS`, ...).
    pub fn schema_name(self) -> &'static str {
        match self {
            Platform::Ios => "iOS",
            Platform::Macos => "macOS",
            Platform::Tvos => "tvOS",
            Platform::Visionos => "visionOS",
            Platform::Watchos => "watchOS",
            Platform::Android => "Android",
        }
    }

    /// The lower-case name postern's inventory uses (`ios`, `macos`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Macos => "macos",
            Platform::Tvos => "tvos",
            Platform::Visionos => "visionos",
            Platform::Watchos => "watchos",
            Platform::Android => "android",
        }
    }

    /// Whether it is one of Apple's.
    pub fn is_apple(self) -> bool {
        self != Platform::Android
    }

    /// The top-level `TargetDeviceType` value.
    pub(crate) fn target_device_type(self) -> Option<i64> {
        match self {
            Platform::Ios => Some(1),
            Platform::Watchos => Some(2),
            Platform::Tvos => Some(4),
            Platform::Macos => Some(5),
            Platform::Visionos => Some(6),
            Platform::Android => None,
        }
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "ios" | "ipados" => Platform::Ios,
            "macos" => Platform::Macos,
            "tvos" => Platform::Tvos,
            "visionos" => Platform::Visionos,
            "watchos" => Platform::Watchos,
            "android" => Platform::Android,
            _ => {
                return Err(Error::invalid(
                    "platform",
                    format!("{s:?} is not ios, macos, tvos, visionos, watchos or android"),
                ));
            }
        })
    }
}

/// An OS version, `major.minor.patch` (missing parts are 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OsVersion(pub u32, pub u32, pub u32);

impl OsVersion {
    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        OsVersion(major, minor, 0)
    }
}

impl FromStr for OsVersion {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid("os version", format!("{s:?} is not like 17.4 or 14.2.1"));
        let parts: Vec<&str> = s.trim().split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return Err(bad());
        }
        let mut n = [0u32; 3];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || p.len() > 6 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            n[i] = p.parse().map_err(|_| bad())?;
        }
        Ok(OsVersion(n[0], n[1], n[2]))
    }
}

impl fmt::Display for OsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.2 == 0 {
            write!(f, "{}.{}", self.0, self.1)
        } else {
            write!(f, "{}.{}.{}", self.0, self.1, self.2)
        }
    }
}

/// The device a profile is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Its platform.
    pub platform: Platform,
    /// Its OS version.
    pub version: OsVersion,
}

impl Target {
    /// A target.
    pub fn new(platform: Platform, version: OsVersion) -> Self {
        Target { platform, version }
    }

    /// `Unsupported` unless the target is `platform` at `min` or later for one of `mins`.
    pub(crate) fn require(&self, form: &'static str, mins: &[(Platform, OsVersion)]) -> Result<()> {
        match mins.iter().find(|(p, _)| *p == self.platform) {
            Some((_, min)) if self.version >= *min => Ok(()),
            found => Err(Error::Unsupported {
                form,
                needs: match found {
                    Some((p, min)) => format!("{} {min}", p.schema_name()),
                    None => mins
                        .iter()
                        .map(|(p, v)| format!("{} {v}", p.schema_name()))
                        .collect::<Vec<_>>()
                        .join(", "),
                },
                target: self.to_string(),
            }),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.platform.schema_name(), self.version)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        let v: OsVersion = "17.4".parse().unwrap();
        assert_eq!(v, OsVersion(17, 4, 0));
        assert!("14.2.1".parse::<OsVersion>().unwrap() > OsVersion::new(14, 2));
        assert!("13.10".parse::<OsVersion>().unwrap() > OsVersion::new(13, 9));
        for bad in ["", "17.", "a.b", "1.2.3.4", "-1", "17 .4"] {
            assert!(bad.parse::<OsVersion>().is_err(), "{bad:?}");
        }
        assert_eq!(OsVersion::new(13, 1).to_string(), "13.1");
    }

    #[test]
    fn require_names_the_minimum() {
        let t = Target::new(Platform::Macos, OsVersion::new(13, 6));
        let e = t
            .require(
                "x",
                &[
                    (Platform::Ios, OsVersion::new(16, 0)),
                    (Platform::Macos, OsVersion::new(14, 0)),
                ],
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "x needs macOS 14.0; the target is macOS 13.6"
        );
        let w = Target::new(Platform::Watchos, OsVersion::new(11, 0));
        assert_eq!(
            w.require("y", &[(Platform::Ios, OsVersion::new(16, 0))])
                .unwrap_err()
                .to_string(),
            "y needs iOS 16.0; the target is watchOS 11.0"
        );
    }
}
