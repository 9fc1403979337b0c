//! Declarative device management: the `com.apple.asset.credential.acme` asset, the
//! `com.apple.credential.acme` document the device downloads from the asset's `DataURL`, and
//! a `com.apple.configuration.app.managed` configuration that hands the resulting identity to
//! an app (`AppConfig.Identities`).
//!
//! Declarations are the JSON objects an MDM serves on the declarative channel:
//! `{"Type", "Identifier", "ServerToken", "Payload"}`.

use serde_json::{Value, json};

use crate::apple::AcmeCredential;
use crate::{Error, OsVersion, PayloadKind, Platform, Result, Target, check_https, check_text};

/// The content type of the credential document.
pub const CREDENTIAL_CONTENT_TYPE: &str = "application/json";

/// Where the attested ACME asset can be used: the asset exists from iOS 17, tvOS 17,
/// visionOS 1.1 and watchOS 10; on macOS the credential's `HardwareBound` must be false, so no
/// attestation, and postern refuses it there.
pub const ACME_ASSET_MINIMUM: [(Platform, OsVersion); 4] = [
    (Platform::Ios, OsVersion::new(17, 0)),
    (Platform::Tvos, OsVersion::new(17, 0)),
    (Platform::Visionos, OsVersion::new(1, 1)),
    (Platform::Watchos, OsVersion::new(10, 0)),
];

/// Where `com.apple.configuration.app.managed` can carry `AppConfig.Identities`: iOS 18.4 and
/// visionOS 2.4 (Apple's schema; macOS, tvOS and watchOS have no `AppConfig`).
pub const APP_CONFIG_MINIMUM: [(Platform, OsVersion); 2] = [
    (Platform::Ios, OsVersion::new(18, 4)),
    (Platform::Visionos, OsVersion::new(2, 4)),
];

/// How the device authenticates when it fetches the credential document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetAuthentication {
    /// `MDM`: the request carries the device's MDM identity (the MDM proxies it).
    Mdm,
    /// `None`: a plain GET (the `DataURL` itself carries a one-time secret).
    None,
}

/// The app that receives the identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedApp {
    /// `BundleID` of the app.
    pub bundle_id: String,
    /// The identifier the app looks the identity up by (`ManagedApp` framework).
    pub identity_identifier: String,
}

/// Everything the declarations are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclarativeParams {
    /// The tenant.
    pub tenant: String,
    /// postern's device id.
    pub device_id: String,
    /// The generation (in identifiers' server tokens).
    pub generation: u64,
    /// Reverse-DNS prefix of the declarations' identifiers.
    pub identifier_prefix: String,
    /// The device.
    pub target: Target,
    /// Where the credential document is served (https).
    pub data_url: String,
    /// How the device authenticates there.
    pub authentication: AssetAuthentication,
    /// The ACME credential.
    pub acme: AcmeCredential,
    /// The app that gets the identity; no configuration when `None`.
    pub app: Option<ManagedApp>,
}

/// The declarations and the document.
#[derive(Debug, Clone, PartialEq)]
pub struct Declarative {
    /// The `com.apple.asset.credential.acme` declaration.
    pub asset: Value,
    /// The `com.apple.configuration.app.managed` declaration, when an app was named.
    pub configuration: Option<Value>,
    /// The `com.apple.credential.acme` document (served at the `DataURL`), as JSON bytes.
    pub credential: Vec<u8>,
}

/// The `com.apple.credential.acme` document alone.
///
/// # Errors
/// [`Error::Invalid`] for a bad credential.
pub fn credential_document(acme: &AcmeCredential) -> Result<Vec<u8>> {
    acme.check()?;
    let mut doc = json!({
        "DirectoryURL": acme.directory_url,
        "ClientIdentifier": acme.client_identifier,
        "KeyType": "ECSECPrimeRandom",
        "KeySize": match acme.key { crate::apple::AcmeKey::P256 => 256, crate::apple::AcmeKey::P384 => 384 },
        "HardwareBound": true,
        "Attest": true,
        "Subject": acme.subject_json(),
    });
    if let Some(m) = doc.as_object_mut() {
        let san = acme.subject_alt_name.to_json();
        if san.as_object().is_some_and(|o| !o.is_empty()) {
            m.insert("SubjectAltName".into(), san);
        }
        if let Some(f) = acme.usage_flags {
            m.insert("UsageFlags".into(), json!(f));
        }
        if !acme.extended_key_usage.is_empty() {
            m.insert("ExtendedKeyUsage".into(), json!(acme.extended_key_usage));
        }
    }
    serde_json::to_vec_pretty(&doc).map_err(|e| Error::Internal(e.to_string()))
}

fn server_token(generation: u64, payload: &Value) -> String {
    let bytes = serde_json::to_vec(payload).unwrap_or_default();
    let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
    format!("{generation}-{}", hex::encode(&d.as_ref()[..8]))
}

/// Builds the asset, the configuration and the credential document.
///
/// # Errors
/// [`Error::Invalid`] for bad arguments; [`Error::Unsupported`] for a target that cannot
/// attest through the asset, or (with an app) cannot hand identities to apps.
pub fn declarations(p: &DeclarativeParams) -> Result<Declarative> {
    p.target
        .require("an attested ACME credential asset", &ACME_ASSET_MINIMUM)?;
    if p.app.is_some() {
        p.target
            .require("AppConfig identities of a managed app", &APP_CONFIG_MINIMUM)?;
    }
    check_https("DataURL", &p.data_url)?;
    for (what, v) in [
        ("tenant", &p.tenant),
        ("device id", &p.device_id),
        ("identifier prefix", &p.identifier_prefix),
    ] {
        check_text(what, v, 128)?;
    }
    let credential = credential_document(&p.acme)?;
    let base = format!("{}.{}.{}", p.identifier_prefix, p.tenant, p.device_id);
    let asset_id = format!("{base}.{}", PayloadKind::AcmeAsset.as_str());
    let mut payload = json!({
        "Reference": {
            "DataURL": p.data_url,
            "ContentType": CREDENTIAL_CONTENT_TYPE,
            "Size": credential.len(),
            "Hash-SHA-256": hex::encode(ring::digest::digest(&ring::digest::SHA256, &credential)),
        },
        // the messaging app signs in the background, after the first unlock
        "Accessible": "AfterFirstUnlock",
    });
    if let (Some(m), AssetAuthentication::Mdm) = (payload.as_object_mut(), p.authentication) {
        m.insert("Authentication".into(), json!({ "Type": "MDM" }));
    } else if let Some(m) = payload.as_object_mut() {
        m.insert("Authentication".into(), json!({ "Type": "None" }));
    }
    let asset = json!({
        "Type": "com.apple.asset.credential.acme",
        "Identifier": asset_id,
        "ServerToken": server_token(p.generation, &payload),
        "Payload": payload,
    });
    let configuration = match &p.app {
        None => None,
        Some(app) => {
            check_text("bundle id", &app.bundle_id, 255)?;
            check_text("identity identifier", &app.identity_identifier, 255)?;
            let payload = json!({
                "BundleID": app.bundle_id,
                "AppConfig": {
                    "Identities": [{
                        "Identifier": app.identity_identifier,
                        "AssetReference": asset_id,
                    }],
                },
            });
            Some(json!({
                "Type": "com.apple.configuration.app.managed",
                "Identifier": format!("{base}.{}", PayloadKind::AppConfiguration.as_str()),
                "ServerToken": server_token(p.generation, &payload),
                "Payload": payload,
            }))
        }
    };
    Ok(Declarative {
        asset,
        configuration,
        credential,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn params(t: Target) -> DeclarativeParams {
        DeclarativeParams {
            tenant: "default".into(),
            device_id: "dev_1".into(),
            generation: 3,
            identifier_prefix: "io.postern".into(),
            target: t,
            data_url:
                "https://postern.example/v1/profiles/default/devices/dev_1/declarative/credential"
                    .into(),
            authentication: AssetAuthentication::None,
            acme: AcmeCredential::for_device(
                "https://postern.example/acme/devices/directory",
                "SERIAL1",
            ),
            app: Some(ManagedApp {
                bundle_id: "io.postern.messenger".into(),
                identity_identifier: "postern-identity".into(),
            }),
        }
    }

    #[test]
    fn the_asset_pins_the_document_and_the_app_references_the_asset() {
        let d = declarations(&params(Target::new(Platform::Ios, OsVersion::new(18, 4)))).unwrap();
        let r = &d.asset["Payload"]["Reference"];
        assert_eq!(r["Size"], d.credential.len());
        assert_eq!(
            r["Hash-SHA-256"],
            hex::encode(ring::digest::digest(&ring::digest::SHA256, &d.credential))
        );
        let c = d.configuration.unwrap();
        assert_eq!(
            c["Payload"]["AppConfig"]["Identities"][0]["AssetReference"],
            d.asset["Identifier"]
        );
        let doc: Value = serde_json::from_slice(&d.credential).unwrap();
        assert_eq!(doc["ClientIdentifier"], "SERIAL1");
        assert_eq!(doc["Attest"], true);
    }

    #[test]
    fn availability() {
        let e =
            declarations(&params(Target::new(Platform::Ios, OsVersion::new(18, 3)))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "AppConfig identities of a managed app needs iOS 18.4; the target is iOS 18.3"
        );
        let e =
            declarations(&params(Target::new(Platform::Macos, OsVersion::new(15, 0)))).unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }));
        let mut p = params(Target::new(Platform::Tvos, OsVersion::new(17, 0)));
        p.app = None;
        assert!(declarations(&p).unwrap().configuration.is_none());
    }
}
