//! `postern-profiles`: what an MDM pushes to a device so that it enrolls with postern.
//!
//! - [`apple`]: configuration profiles (`.mobileconfig`, XML property lists) with a
//!   `com.apple.security.root` payload for postern's root CA and a `com.apple.security.acme`
//!   (hardware-bound, attested) or `com.apple.security.scep` credential payload;
//! - [`declarative`]: declarative device management — the `com.apple.asset.credential.acme`
//!   asset, the `com.apple.credential.acme` document served at its `DataURL`, and a
//!   `com.apple.configuration.app.managed` configuration that hands the identity to an app;
//! - [`android`]: the managed configuration of postern's messaging app on Android;
//! - [`cms`]: CMS `SignedData` over a profile (a signed `.mobileconfig`).
//!
//! Every builder takes a [`Target`] (platform and OS version) and refuses targets that cannot
//! enroll the way postern requires (ACME with attestation) or omits keys the OS does not know.
//!
//! **No I/O and no clock**: times, identifiers and generations are arguments, and payload
//! UUIDs are derived from them ([`payload_uuid`]), so the same inputs give the same bytes.

pub mod android;
pub mod apple;
pub mod cms;
pub mod declarative;
mod target;

pub use target::{OsVersion, Platform, Target};

/// Everything that can go wrong building a profile.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An argument is not acceptable (an `http:` directory URL, an empty identifier, ...).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// which argument
        what: &'static str,
        /// why
        reason: String,
    },
    /// The target OS cannot use this form.
    #[error("{form} needs {needs}; the target is {target}")]
    Unsupported {
        /// the form or key
        form: &'static str,
        /// the lowest platform version that supports it
        needs: String,
        /// the target asked for
        target: String,
    },
    /// Encoding or signing failed.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which payload a UUID is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadKind {
    /// The profile itself (top level).
    Profile,
    /// The root CA payload.
    Root,
    /// The ACME payload.
    Acme,
    /// The SCEP payload.
    Scep,
    /// The declarative ACME credential asset.
    AcmeAsset,
    /// The declarative managed-app configuration.
    AppConfiguration,
}

impl PayloadKind {
    /// The name used in identifiers and UUID derivation.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadKind::Profile => "profile",
            PayloadKind::Root => "root",
            PayloadKind::Acme => "acme",
            PayloadKind::Scep => "scep",
            PayloadKind::AcmeAsset => "asset.acme",
            PayloadKind::AppConfiguration => "app",
        }
    }
}

/// A stable UUID for a payload: the first 128 bits of SHA-256 over (tenant, device, kind,
/// generation), as an RFC 9562 version 8 UUID in Apple's upper-case form. Regenerating a
/// profile with the same generation gives the same UUIDs, so an MDM replaces it in place; a new
/// generation gives new ones.
pub fn payload_uuid(tenant: &str, device: &str, kind: PayloadKind, generation: u64) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [
        b"postern-profile".as_slice(),
        tenant.as_bytes(),
        device.as_bytes(),
        kind.as_str().as_bytes(),
        generation.to_string().as_bytes(),
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let d = ctx.finish();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Checks that a URL is `https://` with a host.
pub(crate) fn check_https(what: &'static str, url: &str) -> Result<()> {
    match url.strip_prefix("https://") {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(Error::invalid(what, format!("{url:?} is not an https URL"))),
    }
}

/// Checks a non-empty, printable value of at most `max` characters.
pub(crate) fn check_text(what: &'static str, v: &str, max: usize) -> Result<()> {
    if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(Error::invalid(
            what,
            format!("must be 1 to {max} characters without control characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn uuids_are_stable_and_distinct() {
        let a = payload_uuid("default", "dev_1", PayloadKind::Acme, 1);
        assert_eq!(a, payload_uuid("default", "dev_1", PayloadKind::Acme, 1));
        assert_ne!(a, payload_uuid("default", "dev_1", PayloadKind::Acme, 2));
        assert_ne!(a, payload_uuid("default", "dev_1", PayloadKind::Root, 1));
        assert_ne!(a, payload_uuid("other", "dev_1", PayloadKind::Acme, 1));
        // length-prefixed parts: moving a boundary changes the UUID
        assert_ne!(
            payload_uuid("ab", "c", PayloadKind::Acme, 1),
            payload_uuid("a", "bc", PayloadKind::Acme, 1)
        );
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8", "version 8: {a}");
        assert!(matches!(&a[19..20], "8" | "9" | "A" | "B"), "variant: {a}");
    }

    #[test]
    fn urls_must_be_https() {
        assert!(check_https("u", "https://postern.example/acme/devices/directory").is_ok());
        for bad in [
            "http://x/",
            "https://",
            "https:///x",
            "ftp://x",
            "https://a b",
        ] {
            assert!(check_https("u", bad).is_err(), "{bad}");
        }
    }
}
