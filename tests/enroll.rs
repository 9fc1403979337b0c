//! Zero-touch enrollment end to end: a device of the tenant's inventory runs ACME
//! `device-attest-01` over HTTPS against a running broker, with `apple`, `android-key` and
//! `tpm` statements minted by test authorities whose roots the provisioner trusts.

// A failed unwrap in a test or a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use postern_certs::KeyAlgorithm;
use postern_certs::attestation::testing::android::{AndroidStatement, AndroidTestAuthority};
use postern_certs::attestation::testing::apple::{AppleStatement, AppleTestAuthority};
use postern_certs::attestation::testing::tpm::{TpmStatement, TpmTestAuthority};
use postern_certs::attestation::{DeviceIdentifier, IdentifierKind};
use postern_e2e::acme::{attestation_payload, finalize_payload};
use postern_e2e::device::{DeviceKey, account, complete, order, register_device};
use postern_e2e::{ADMIN_TOKEN, Broker};

struct Authorities {
    apple: AppleTestAuthority,
    android: AndroidTestAuthority,
    tpm: TpmTestAuthority,
}

fn config(dir: &std::path::Path, a: &Authorities) -> String {
    let mut roots = Vec::new();
    for (fmt, pem) in [
        ("apple", a.apple.root_pem()),
        ("android-key", a.android.root_pem()),
        ("tpm", a.tpm.root_pem()),
    ] {
        let path = dir.join(format!("{fmt}-root.pem"));
        std::fs::write(&path, pem).unwrap();
        roots.push(format!("\"{fmt}\" = {:?}", path.display().to_string()));
    }
    format!(
        r#"
[[acme.provisioners]]
name = "devices"
challenge = "device-attest-01"
profile = "device-identity"
roots = {{ {} }}

[[acme.provisioners]]
name = "strict"
challenge = "device-attest-01"
profile = "device-identity"
formats = ["apple"]
roots = {{ apple = {:?} }}
min_os_version = {{ apple = "99.0" }}
"#,
        roots.join(", "),
        dir.join("apple-root.pem").display().to_string()
    )
}

fn permanent_identifier_of(chain_pem: &str) -> (Vec<u8>, String) {
    let blocks = postern_e2e::pem_der_blocks(chain_pem);
    assert_eq!(blocks.len(), 2, "leaf and issuing CA");
    let (_, cert) = X509Certificate::from_der(&blocks[0]).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let other = san
        .value
        .general_names
        .iter()
        .find_map(|g| match g {
            GeneralName::OtherName(oid, value) if oid.to_id_string() == "1.3.6.1.5.5.7.8.3" => {
                Some(value.to_vec())
            }
            _ => None,
        })
        .expect("permanent-identifier otherName");
    let spki = cert.public_key().raw.to_vec();
    (spki, String::from_utf8_lossy(&other).into_owned())
}

#[test]
fn devices_enroll_with_apple_android_and_tpm_attestation_and_forgeries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let auth = Authorities {
        apple: AppleTestAuthority::new(),
        android: AndroidTestAuthority::new(),
        tpm: TpmTestAuthority::new(),
    };
    let cfg = config(dir.path(), &auth);
    let broker = Broker::start_with(&dir.path().join("data"), &cfg).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = broker.client().unwrap();
        let iphone = register_device(&http, &broker, json!({ "serial": "F2LZK0AAPLE1", "udid": "00008110-000A1B2C3D4E5F60", "platform": "ios" })).await;
        register_device(&http, &broker, json!({ "serial": "PIXEL8SERIAL", "platform": "android" })).await;
        register_device(&http, &broker, json!({ "hardware_ids": ["TPM-EK-0001"], "platform": "windows" })).await;

        // --- apple, ES256 account
        let mut c = account(&broker, "devices", KeyAlgorithm::EcdsaP256).await;
        let key = DeviceKey::new();
        let (ourl, o, _authz, chall, token) = order(&mut c, "permanent-identifier", "F2LZK0AAPLE1").await;
        let att = auth.apple.attest(&AppleStatement::new(&key.spki(), "F2LZK0AAPLE1", &token, OffsetDateTime::now_utc()));
        let chain = complete(&mut c, &ourl, &o, &chall, &att, &key, "F2LZK0AAPLE1").await;
        let (spki, pid) = permanent_identifier_of(&chain);
        assert_eq!(spki, key.spki(), "the certificate certifies the attested key");
        assert!(pid.contains("F2LZK0AAPLE1"));
        // the device record now holds the evidence, and the certificate links it
        let dev: Value = http
            .get(format!("{}/v1/admin/devices/{}", broker.https, iphone["id"].as_str().unwrap()))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(dev["attestation"]["evidence"]["format"], "apple");
        assert_eq!(dev["attestation"]["evidence"]["security_level"], "secure-element");
        assert_eq!(dev["certificates"].as_array().unwrap().len(), 1);

        // replayed attestation on a fresh order: refused
        let (_, _, _, chall2, _) = order(&mut c, "permanent-identifier", "F2LZK0AAPLE1").await;
        let r = c.post(&chall2, Some(&attestation_payload(&att))).await.unwrap();
        assert_eq!(r.json()["status"], "invalid");
        assert_eq!(r.json()["error"]["type"], "urn:ietf:params:acme:error:badAttestationStatement", "{}", r.json());
        // replayed token: the answered challenge is not answered again
        let r = c.post(&chall, Some(&attestation_payload(&att))).await.unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(r.problem().as_deref(), Some("malformed"));
        // an unknown device cannot even order
        let r = c.new_order(json!([{ "type": "permanent-identifier", "value": "NOT-IN-INVENTORY" }])).await.unwrap();
        assert_eq!(r.problem().as_deref(), Some("rejectedIdentifier"));
        // another device's attestation does not finalize this order
        let (_, _, _, chall3, token3) = order(&mut c, "permanent-identifier", "F2LZK0AAPLE1").await;
        let other = auth.apple.attest(&AppleStatement::new(&key.spki(), "SOMEONE-ELSE", &token3, OffsetDateTime::now_utc()));
        let r = c.post(&chall3, Some(&attestation_payload(&other))).await.unwrap();
        assert_eq!(r.json()["error"]["type"], "urn:ietf:params:acme:error:badAttestationStatement");
        // a CSR for another key than the attested one: badCSR
        let (ourl4, o4, _, chall4, token4) = order(&mut c, "permanent-identifier", "F2LZK0AAPLE1").await;
        let att4 = auth.apple.attest(&AppleStatement::new(&key.spki(), "F2LZK0AAPLE1", &token4, OffsetDateTime::now_utc()));
        let r = c.post(&chall4, Some(&attestation_payload(&att4))).await.unwrap();
        assert_eq!(r.json()["status"], "valid");
        assert_eq!(c.poll(&ourl4, 20).await.unwrap()["status"], "ready");
        let r = c.post(o4["finalize"].as_str().unwrap(), Some(&finalize_payload(&DeviceKey::new().csr("x")))).await.unwrap();
        assert_eq!(r.problem().as_deref(), Some("badCSR"), "{}", r.json());

        // --- android-key, EdDSA account
        let mut c = account(&broker, "devices", KeyAlgorithm::Ed25519).await;
        let key = DeviceKey::new();
        let (ourl, o, _, chall, token) = order(&mut c, "permanent-identifier", "PIXEL8SERIAL").await;
        let ka = c.key_authorization(&token).unwrap();
        let att = auth.android.attest(&AndroidStatement::new(&key.pkcs8, "PIXEL8SERIAL", &ka, OffsetDateTime::now_utc()));
        let chain = complete(&mut c, &ourl, &o, &chall, &att, &key, "PIXEL8SERIAL").await;
        assert_eq!(permanent_identifier_of(&chain).0, key.spki());

        // --- tpm, ES384 account
        let mut c = account(&broker, "devices", KeyAlgorithm::EcdsaP384).await;
        let key = DeviceKey::new();
        let (ourl, o, _, chall, token) = order(&mut c, "permanent-identifier", "TPM-EK-0001").await;
        let ka = c.key_authorization(&token).unwrap();
        let id = DeviceIdentifier::parse(IdentifierKind::PermanentIdentifier, "TPM-EK-0001").unwrap();
        let att = auth.tpm.attest(&TpmStatement::new(&key.spki(), id, &ka, OffsetDateTime::now_utc()));
        let chain = complete(&mut c, &ourl, &o, &chall, &att, &key, "TPM-EK-0001").await;
        assert_eq!(permanent_identifier_of(&chain).0, key.spki());

        // --- policy: the strict provisioner wants an OS this device does not run
        let mut c = account(&broker, "strict", KeyAlgorithm::EcdsaP256).await;
        let key = DeviceKey::new();
        let (_, _, _, chall, token) = order(&mut c, "permanent-identifier", "F2LZK0AAPLE1").await;
        let att = auth.apple.attest(&AppleStatement::new(&key.spki(), "F2LZK0AAPLE1", &token, OffsetDateTime::now_utc()));
        let r = c.post(&chall, Some(&attestation_payload(&att))).await.unwrap();
        assert_eq!(r.json()["error"]["type"], "urn:ietf:params:acme:error:badAttestationStatement");
        assert!(r.json()["error"]["detail"].as_str().unwrap().contains("OS version"), "{}", r.json());

        // the audit chain holds the decisions and still verifies
        let r = http
            .get(format!("{}/v1/admin/audit/verify", broker.https))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert!(v["entries"].as_u64().unwrap() >= 15, "{v}");
        let audit: Value = http
            .get(format!("{}/v1/admin/audit?limit=1000", broker.https))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let actions: Vec<&str> = audit.as_array().or(audit["entries"].as_array()).unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
        for a in ["device.register", "acme.account.create", "acme.attestation.accept", "acme.challenge.reject", "certificate.issue"] {
            assert!(actions.contains(&a), "{a} in {actions:?}");
        }
    });
    broker.stop();
}

/// Google's revocation list, read from a file the provisioner names: a revoked intermediate
/// refuses the statement; a provisioner whose list cannot be read refuses every android-key
/// statement (fail closed); one with a clean list accepts.
#[test]
fn android_revocation_list_is_enforced_and_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let android = AndroidTestAuthority::new();
    let root = dir.path().join("android-root.pem");
    std::fs::write(&root, android.root_pem()).unwrap();
    let revoked = dir.path().join("revoked.json");
    std::fs::write(
        &revoked,
        json!({ "entries": { android.intermediate_serial_hex(): { "status": "REVOKED", "reason": "KEY_COMPROMISE" } } }).to_string(),
    )
    .unwrap();
    let clean = dir.path().join("clean.json");
    std::fs::write(
        &clean,
        json!({ "entries": { "1a2b3c": { "status": "SUSPENDED" } } }).to_string(),
    )
    .unwrap();
    let provisioner = |name: &str, list: &std::path::Path| {
        format!(
            "[[acme.provisioners]]\nname = \"{name}\"\nchallenge = \"device-attest-01\"\nprofile = \"device-identity\"\nformats = [\"android-key\"]\nroots = {{ \"android-key\" = {:?} }}\nandroid_revocation = {{ file = {:?} }}\n",
            root.display().to_string(),
            list.display().to_string()
        )
    };
    let cfg = [
        provisioner("revoked", &revoked),
        provisioner("clean", &clean),
        provisioner("missing", &dir.path().join("no-such-file.json")),
    ]
    .join("\n");
    let broker = Broker::start_with(&dir.path().join("data"), &cfg).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = broker.client().unwrap();
        register_device(
            &http,
            &broker,
            json!({ "serial": "PIXEL-REV-1", "platform": "android" }),
        )
        .await;
        for (name, expect) in [
            ("revoked", Some("revoked")),
            ("missing", Some("could not be read")),
            ("clean", None),
        ] {
            let mut c = account(&broker, name, KeyAlgorithm::EcdsaP256).await;
            let key = DeviceKey::new();
            let (ourl, o, _, chall, token) =
                order(&mut c, "permanent-identifier", "PIXEL-REV-1").await;
            let ka = c.key_authorization(&token).unwrap();
            let att = android.attest(&AndroidStatement::new(
                &key.pkcs8,
                "PIXEL-REV-1",
                &ka,
                OffsetDateTime::now_utc(),
            ));
            match expect {
                Some(words) => {
                    let r = c
                        .post(&chall, Some(&attestation_payload(&att)))
                        .await
                        .unwrap();
                    let v = r.json();
                    assert_eq!(v["status"], "invalid", "{name}: {v}");
                    assert_eq!(
                        v["error"]["type"], "urn:ietf:params:acme:error:badAttestationStatement",
                        "{name}: {v}"
                    );
                    assert!(
                        v["error"]["detail"].as_str().unwrap().contains(words),
                        "{name}: {v}"
                    );
                }
                None => {
                    let chain =
                        complete(&mut c, &ourl, &o, &chall, &att, &key, "PIXEL-REV-1").await;
                    assert_eq!(permanent_identifier_of(&chain).0, key.spki());
                }
            }
        }
    });
    broker.stop();
}
