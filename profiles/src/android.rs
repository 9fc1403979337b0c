//! The managed configuration of postern's messaging app on Android (Android Management API
//! `ApplicationPolicy.managedConfiguration`, or any EMM's app restrictions with the same keys).
//!
//! The app speaks ACME itself, with external account binding: the key id and HMAC key here
//! bind its ACME account to one device, once.

use serde_json::{Value, json};

use crate::{Error, Result, check_https, check_text};

/// Everything the configuration is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AndroidParams {
    /// The app's package name.
    pub package_name: String,
    /// The broker's base URL (https).
    pub broker_url: String,
    /// The ACME directory URL (https).
    pub acme_directory_url: String,
    /// The tenant.
    pub tenant: String,
    /// postern's device id.
    pub device_id: String,
    /// The identifier the app orders (`permanent-identifier`): the device's serial.
    pub client_identifier: String,
    /// The external account binding key id.
    pub eab_kid: String,
    /// The external account binding HMAC key (base64url), the one-time enrollment secret.
    pub eab_hmac_key: String,
    /// Whether the app must answer with a key attestation (`android-key`).
    pub attestation_required: bool,
}

/// The keys of the managed configuration.
pub const KEYS: [&str; 8] = [
    "broker_url",
    "acme_directory_url",
    "tenant",
    "device_id",
    "client_identifier",
    "enrollment_kid",
    "enrollment_secret",
    "attestation_required",
];

/// `{"packageName", "managedConfiguration": {...}}`.
///
/// # Errors
/// [`Error::Invalid`] for bad arguments.
pub fn managed_configuration(p: &AndroidParams) -> Result<Value> {
    check_https("broker_url", &p.broker_url)?;
    check_https("acme_directory_url", &p.acme_directory_url)?;
    for (what, v) in [
        ("package name", &p.package_name),
        ("tenant", &p.tenant),
        ("device id", &p.device_id),
        ("client identifier", &p.client_identifier),
        ("enrollment kid", &p.eab_kid),
        ("enrollment secret", &p.eab_hmac_key),
    ] {
        check_text(what, v, 255)?;
    }
    if !p
        .package_name
        .split('.')
        .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        return Err(Error::invalid("package name", "not a Java package name"));
    }
    Ok(json!({
        "packageName": p.package_name,
        "managedConfiguration": {
            "broker_url": p.broker_url,
            "acme_directory_url": p.acme_directory_url,
            "tenant": p.tenant,
            "device_id": p.device_id,
            "client_identifier": p.client_identifier,
            "enrollment_kid": p.eab_kid,
            "enrollment_secret": p.eab_hmac_key,
            "attestation_required": p.attestation_required,
        }
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn every_key_is_there() {
        let v = managed_configuration(&AndroidParams {
            package_name: "io.postern.messenger".into(),
            broker_url: "https://postern.example".into(),
            acme_directory_url: "https://postern.example/acme/android/directory".into(),
            tenant: "default".into(),
            device_id: "dev_1".into(),
            client_identifier: "PIXEL8".into(),
            eab_kid: "eab_x".into(),
            eab_hmac_key: "c2VjcmV0".into(),
            attestation_required: true,
        })
        .unwrap();
        let m = v["managedConfiguration"].as_object().unwrap();
        let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = KEYS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want);
    }
}
