//! Every generated form checked against Apple's schemas (where the vectors have them) for a
//! matrix of target OS versions, and compared byte for byte with the golden files under
//! `tests/golden/` (rewritten with `UPDATE_GOLDEN=1`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod schema;

use std::path::Path;

use postern_profiles::android::{AndroidParams, managed_configuration};
use postern_profiles::apple::{
    ACME_ATTEST_MINIMUM, AcmeCredential, Credential, ProfileParams, SCEP_MINIMUM, ScepCredential,
    enrollment_profile,
};
use postern_profiles::declarative::{
    ACME_ASSET_MINIMUM, AssetAuthentication, DeclarativeParams, ManagedApp, declarations,
};
use postern_profiles::{Error, OsVersion, Platform, Target};
use schema::{V, check, load, schema_dir};

const APPLE: [Platform; 5] = [
    Platform::Ios,
    Platform::Macos,
    Platform::Tvos,
    Platform::Visionos,
    Platform::Watchos,
];

fn root_der() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/root.der")).unwrap()
}

fn acme_params(target: Target) -> ProfileParams {
    let mut acme = AcmeCredential::for_device(
        "https://postern.example/acme/devices/directory",
        "F2LZK0AAPLE1",
    );
    acme.subject.push(("O".into(), "Example Corp".into()));
    acme.subject_alt_name.uri = Some("urn:postern:device:default:dev_0123456789abcdef0123".into());
    ProfileParams {
        tenant: "default".into(),
        device_id: "dev_0123456789abcdef0123".into(),
        generation: 1,
        identifier_prefix: "io.postern".into(),
        organization: "Example Corp".into(),
        display_name: "Example Corp device identity".into(),
        target,
        root_ca_der: root_der(),
        credential: Credential::Acme(acme),
        removal_disallowed: true,
    }
}

fn scep_params(target: Target) -> ProfileParams {
    ProfileParams {
        credential: Credential::Scep(ScepCredential {
            url: "https://postern.example/scep/devices".into(),
            name: Some("postern".into()),
            challenge: "one-time-challenge-0123".into(),
            subject: vec![("CN".into(), "C02XL0AAMAC1".into())],
            key_size: 2048,
            key_usage: 5,
            retries: 3,
            retry_delay: 10,
            ca_fingerprint: Some(vec![0xAB; 32]),
        }),
        ..acme_params(target)
    }
}

fn declarative_params(target: Target, app: bool) -> DeclarativeParams {
    DeclarativeParams {
        tenant: "default".into(),
        device_id: "dev_0123456789abcdef0123".into(),
        generation: 1,
        identifier_prefix: "io.postern".into(),
        target,
        data_url: "https://postern.example/v1/profiles/default/devices/dev_0123456789abcdef0123/declarative/credential/pes_secret".into(),
        authentication: AssetAuthentication::None,
        acme: AcmeCredential::for_device(
            "https://postern.example/acme/devices/directory",
            "F2LZK0AAPLE1",
        ),
        app: app.then(|| ManagedApp {
            bundle_id: "io.postern.messenger".into(),
            identity_identifier: "postern-device-identity".into(),
        }),
    }
}

fn golden(name: &str, bytes: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, bytes).unwrap();
        return;
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert!(
        want == bytes,
        "{name} differs from its golden file; if the change is intended, run with UPDATE_GOLDEN=1\n--- got\n{}",
        String::from_utf8_lossy(bytes)
    );
}

fn v(major: u32, minor: u32) -> OsVersion {
    OsVersion::new(major, minor)
}

/// Versions around every boundary that matters.
fn versions(p: Platform) -> Vec<OsVersion> {
    match p {
        Platform::Ios => vec![
            v(15, 7),
            v(16, 0),
            v(17, 0),
            v(17, 2),
            v(18, 3),
            v(18, 4),
            v(26, 0),
        ],
        Platform::Macos => vec![v(12, 0), v(13, 1), v(13, 6), v(14, 0), v(15, 0), v(26, 0)],
        Platform::Tvos => vec![v(15, 0), v(16, 0), v(17, 0), v(26, 0)],
        Platform::Visionos => vec![v(1, 0), v(1, 1), v(2, 4), v(26, 0)],
        Platform::Watchos => vec![v(8, 0), v(9, 0), v(10, 0), v(26, 0)],
        Platform::Android => vec![],
    }
}

fn plist_value(xml: &[u8]) -> plist::Value {
    plist::Value::from_reader_xml(xml).unwrap()
}

#[test]
fn golden_files() {
    let ios = Target::new(Platform::Ios, v(18, 4));
    let mac = Target::new(Platform::Macos, v(15, 0));
    golden(
        "acme-ios.mobileconfig",
        &enrollment_profile(&acme_params(ios))
            .unwrap()
            .to_xml()
            .unwrap(),
    );
    golden(
        "acme-macos.mobileconfig",
        &enrollment_profile(&acme_params(mac))
            .unwrap()
            .to_xml()
            .unwrap(),
    );
    golden(
        "scep-ios.mobileconfig",
        &enrollment_profile(&scep_params(ios))
            .unwrap()
            .to_xml()
            .unwrap(),
    );
    let d = declarations(&declarative_params(ios, true)).unwrap();
    golden(
        "declarative-asset.json",
        &serde_json::to_vec_pretty(&d.asset).unwrap(),
    );
    golden(
        "declarative-configuration.json",
        &serde_json::to_vec_pretty(&d.configuration.unwrap()).unwrap(),
    );
    golden("credential.acme.json", &d.credential);
    let a = managed_configuration(&AndroidParams {
        package_name: "io.postern.messenger".into(),
        broker_url: "https://postern.example".into(),
        acme_directory_url: "https://postern.example/acme/devices/directory".into(),
        tenant: "default".into(),
        device_id: "dev_0123456789abcdef0123".into(),
        client_identifier: "PIXEL8SERIAL".into(),
        eab_kid: "eab_kid".into(),
        eab_hmac_key: "aG1hYy1rZXktMDEyMzQ1Njc4OWFiY2RlZg".into(),
        attestation_required: true,
    })
    .unwrap();
    golden("android.json", &serde_json::to_vec_pretty(&a).unwrap());
}

#[test]
fn regeneration_is_stable_and_a_new_generation_changes_the_uuids() {
    let t = Target::new(Platform::Ios, v(17, 0));
    let a = enrollment_profile(&acme_params(t))
        .unwrap()
        .to_xml()
        .unwrap();
    assert_eq!(
        a,
        enrollment_profile(&acme_params(t))
            .unwrap()
            .to_xml()
            .unwrap()
    );
    let mut p = acme_params(t);
    p.generation = 2;
    let b = enrollment_profile(&p).unwrap();
    let old = enrollment_profile(&acme_params(t)).unwrap();
    assert_ne!(old.dict["PayloadUUID"], b.dict["PayloadUUID"]);
    // the identifier stays: the device replaces the profile rather than adding one
    assert_eq!(old.dict["PayloadIdentifier"], b.dict["PayloadIdentifier"]);
}

#[test]
fn every_profile_the_builder_makes_passes_the_schema_and_refusals_match_it() {
    let Some(dir) = schema_dir() else { return };
    let top = load(&dir, "TopLevel.yaml");
    let common = load(&dir, "CommonPayloadKeys.yaml");
    let acme = load(&dir, "com.apple.security.acme.yaml");
    let scep = load(&dir, "com.apple.security.scep.yaml");
    let root = load(&dir, "com.apple.security.root.yaml");
    let schema_for = |t: &str| match t {
        "com.apple.security.acme" => &acme,
        "com.apple.security.scep" => &scep,
        "com.apple.security.root" => &root,
        other => panic!("no schema for {other}"),
    };
    let mut built = 0;
    let mut refused = 0;
    for platform in APPLE {
        for version in versions(platform) {
            let target = Target::new(platform, version);
            for params in [acme_params(target), scep_params(target)] {
                let m = match enrollment_profile(&params) {
                    Ok(m) => m,
                    Err(Error::Unsupported { .. }) => {
                        refused += 1;
                        continue;
                    }
                    Err(e) => panic!("{target}: {e}"),
                };
                built += 1;
                let value = plist_value(&m.to_xml().unwrap());
                let mut errors = check(&V::from_plist(&value), &[&top], &target);
                for payload in m.payloads() {
                    let t = payload["PayloadType"].as_string().unwrap();
                    let pv = V::from_plist(&plist::Value::Dictionary(payload.clone()));
                    errors.extend(check(&pv, &[schema_for(t), &common], &target));
                    if t == "com.apple.security.acme" {
                        // the schema's prose rules: a hardware-bound key is EC 256 or 384,
                        // Attest needs HardwareBound
                        assert_eq!(payload["KeyType"].as_string(), Some("ECSECPrimeRandom"));
                        assert!(matches!(
                            payload["KeySize"].as_signed_integer(),
                            Some(256 | 384)
                        ));
                        assert_eq!(payload["HardwareBound"].as_boolean(), Some(true));
                    }
                }
                assert!(errors.is_empty(), "{target}: {errors:#?}");
            }
        }
    }
    println!("{built} profiles built and checked, {refused} targets refused");
    assert!(built > 20 && refused > 3, "{built} {refused}");

    // the minimums the builder applies are at least what the schema says
    for (platform, min) in ACME_ATTEST_MINIMUM {
        let os = platform.schema_name();
        let payload: OsVersion = acme.supported[os]
            .introduced
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        assert!(min >= payload, "{os}: {min} < payload {payload}");
        let attest = acme.keys.iter().find(|k| k.key == "Attest").unwrap();
        if let Some(i) = attest
            .supported
            .get(os)
            .and_then(|s| s.introduced.as_deref())
        {
            assert!(min >= i.parse().unwrap(), "{os}: Attest from {i}");
        }
    }
    for (platform, min) in SCEP_MINIMUM {
        let os = platform.schema_name();
        let payload: OsVersion = scep.supported[os]
            .introduced
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(min, payload, "{os}");
    }
}

#[test]
fn every_declaration_passes_the_schema() {
    let Some(dir) = schema_dir() else { return };
    let asset = load(&dir, "credential.acme.yaml");
    let credential = load(&dir, "credentials.acme.json-schema.yaml");
    let mut built = 0;
    for platform in APPLE {
        for version in versions(platform) {
            let target = Target::new(platform, version);
            for app in [false, true] {
                let d = match declarations(&declarative_params(target, app)) {
                    Ok(d) => d,
                    Err(Error::Unsupported { .. }) => continue,
                    Err(e) => panic!("{target}: {e}"),
                };
                built += 1;
                assert_eq!(d.asset["Type"], "com.apple.asset.credential.acme");
                let keys: Vec<&String> = d.asset.as_object().unwrap().keys().collect();
                assert_eq!(keys, ["Identifier", "Payload", "ServerToken", "Type"]);
                let mut errors = check(&V::from_json(&d.asset["Payload"]), &[&asset], &target);
                let doc: serde_json::Value = serde_json::from_slice(&d.credential).unwrap();
                errors.extend(check(&V::from_json(&doc), &[&credential], &target));
                assert!(errors.is_empty(), "{target}: {errors:#?}");
                if let Some(c) = &d.configuration {
                    // app.managed's schema is not among the vectors: its shape is checked here
                    assert_eq!(c["Type"], "com.apple.configuration.app.managed");
                    assert!(c["Payload"]["BundleID"].is_string());
                    assert!(
                        platform == Platform::Ios && version >= v(18, 4)
                            || platform == Platform::Visionos && version >= v(2, 4)
                    );
                }
            }
        }
    }
    assert!(built >= 8, "{built}");
    for (platform, min) in ACME_ASSET_MINIMUM {
        let os = platform.schema_name();
        let i: OsVersion = asset.supported[os]
            .introduced
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(min, i, "{os}");
    }
    println!(
        "the com.apple.configuration.app.managed schema is not among the vectors: its keys are checked by shape only"
    );
}

#[test]
fn the_checker_finds_defects() {
    let Some(dir) = schema_dir() else { return };
    let acme = load(&dir, "com.apple.security.acme.yaml");
    let common = load(&dir, "CommonPayloadKeys.yaml");
    let target = Target::new(Platform::Ios, v(17, 0));
    let m = enrollment_profile(&acme_params(target)).unwrap();
    let good = m.payload("com.apple.security.acme").unwrap().clone();
    let run = |edit: &dyn Fn(&mut plist::Dictionary), t: &Target| {
        let mut d = good.clone();
        edit(&mut d);
        check(
            &V::from_plist(&plist::Value::Dictionary(d)),
            &[&acme, &common],
            t,
        )
    };
    assert!(run(&|_| {}, &target).is_empty());
    assert_eq!(
        run(
            &|d| {
                d.insert("Colour".into(), plist::Value::String("red".into()));
            },
            &target
        ),
        ["com.apple.security.acme.Colour: unknown key"]
    );
    assert_eq!(
        run(
            &|d| {
                d.insert("KeySize".into(), plist::Value::String("384".into()));
            },
            &target
        ),
        ["com.apple.security.acme.KeySize: type <string> where the schema says <integer>"]
    );
    assert_eq!(
        run(
            &|d| {
                d.remove("DirectoryURL");
            },
            &target
        ),
        ["com.apple.security.acme.DirectoryURL: required key missing"]
    );
    assert_eq!(
        run(
            &|d| {
                d.insert("KeyType".into(), plist::Value::String("DSA".into()));
            },
            &target
        )
        .len(),
        1
    );
    assert_eq!(
        run(
            &|d| {
                d.insert("AllowAllAppsAccess".into(), plist::Value::Boolean(true));
            },
            &target
        ),
        ["com.apple.security.acme.AllowAllAppsAccess: not available on iOS (n/a)"]
    );
    assert_eq!(
        run(&|_| {}, &Target::new(Platform::Watchos, v(9, 0))),
        ["com.apple.security.acme.Attest: introduced in watchOS 10.0, target watchOS 9.0"]
    );
    assert_eq!(
        run(
            &|d| {
                d.insert(
                    "Subject".into(),
                    plist::Value::Array(vec![plist::Value::Array(vec![plist::Value::Array(
                        vec![plist::Value::String("CN".into())],
                    )])]),
                );
            },
            &target
        ),
        ["com.apple.security.acme.Subject[0][0]: 1 items where the schema wants 2 to 2"]
    );
}
