//! Enrollment through a profile, end to end over HTTPS: an MDM fetches a device's
//! `.mobileconfig`, and the device runs ACME `device-attest-01` with exactly the profile's
//! `DirectoryURL` and `ClientIdentifier`; the provisioner requires enrollment grants, so the
//! profile is what lets the device enroll, once. The Android form's binding key enrolls its own
//! device only, once.

// A failed unwrap in a test or a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use time::OffsetDateTime;

use postern_certs::attestation::testing::android::{AndroidStatement, AndroidTestAuthority};
use postern_certs::attestation::testing::apple::{AppleStatement, AppleTestAuthority};
use postern_certs::signer::generate;
use postern_certs::{KeyAlgorithm, KeySigner};
use postern_e2e::acme::Client;
use postern_e2e::device::{DeviceKey, complete, order, register_device};
use postern_e2e::{ADMIN_TOKEN, Broker};

fn config(
    dir: &std::path::Path,
    apple: &AppleTestAuthority,
    android: &AndroidTestAuthority,
) -> String {
    let a = dir.join("apple-root.pem");
    let g = dir.join("android-root.pem");
    std::fs::write(&a, apple.root_pem()).unwrap();
    std::fs::write(&g, android.root_pem()).unwrap();
    format!(
        r#"
[[acme.provisioners]]
name = "devices"
challenge = "device-attest-01"
profile = "device-identity"
roots = {{ apple = {:?}, "android-key" = {:?} }}
require_enrollment_grant = true
enrollment_grant_hours = 2
"#,
        a.display().to_string(),
        g.display().to_string()
    )
}

async fn get(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.get(url).bearer_auth(ADMIN_TOKEN).send().await.unwrap()
}

fn acme_payload(xml: &[u8]) -> plist::Dictionary {
    let v = plist::Value::from_reader_xml(xml).unwrap();
    v.as_dictionary().unwrap()["PayloadContent"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(plist::Value::as_dictionary)
        .find(|p| p["PayloadType"].as_string() == Some("com.apple.security.acme"))
        .unwrap()
        .clone()
}

async fn new_client(broker: &Broker, directory_url: &str) -> Client {
    let key: Arc<dyn postern_certs::Signer> = Arc::new(
        KeySigner::from_pkcs8(generate(KeyAlgorithm::EcdsaP256).unwrap().as_der()).unwrap(),
    );
    Client::new(broker.client().unwrap(), directory_url, key)
        .await
        .unwrap()
}

/// The external account binding JWS (RFC 8555 §7.3.4) over the client's key.
fn eab(c: &Client, kid: &str, hmac_key: &str) -> Value {
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let url = c.url("newAccount").unwrap();
    let protected =
        b64(&serde_json::to_vec(&json!({ "alg": "HS256", "kid": kid, "url": url })).unwrap());
    let mut jwk = serde_json::to_value(c.jwk().unwrap()).unwrap();
    jwk.as_object_mut().unwrap().remove("kid");
    let payload = b64(&serde_json::to_vec(&jwk).unwrap());
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &URL_SAFE_NO_PAD.decode(hmac_key).unwrap(),
        ),
        format!("{protected}.{payload}").as_bytes(),
    );
    json!({ "protected": protected, "payload": payload, "signature": b64(mac.as_ref()) })
}

#[test]
fn a_device_enrolls_once_with_exactly_what_its_profile_says() {
    let dir = tempfile::tempdir().unwrap();
    let apple = AppleTestAuthority::new();
    let android = AndroidTestAuthority::new();
    let broker = Broker::start_with(
        &dir.path().join("data"),
        &config(dir.path(), &apple, &android),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = broker.client().unwrap();
        let iphone = register_device(&http, &broker, json!({ "serial": "F2LZK0AAPLE1", "udid": "00008110-000A1B2C3D4E5F60", "platform": "ios" })).await;
        let id = iphone["id"].as_str().unwrap();
        let profile_url = format!("{}/v1/profiles/default/devices/{id}/enrollment.mobileconfig?os_version=17.4", broker.https);

        // without a profile, the device may not enroll
        let mut early = new_client(&broker, &format!("{}/acme/devices/directory", broker.https)).await;
        assert_eq!(early.register(json!({})).await.unwrap().status, 201);
        let r = early.new_order(json!([{ "type": "permanent-identifier", "value": "F2LZK0AAPLE1" }])).await.unwrap();
        assert_eq!((r.status, r.problem().as_deref()), (403, Some("unauthorized")), "{}", r.json());
        assert_eq!(r.json()["detail"], "the device holds no unused enrollment grant; issue it a new profile");

        // the MDM fetches the profile; the device reads it
        let resp = get(&http, &profile_url).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/x-apple-aspen-config");
        let xml = resp.bytes().await.unwrap();
        let acme = acme_payload(&xml);
        let directory_url = acme["DirectoryURL"].as_string().unwrap().to_owned();
        let client_identifier = acme["ClientIdentifier"].as_string().unwrap().to_owned();
        assert_eq!(directory_url, format!("{}/acme/devices/directory", broker.https));
        assert_eq!(client_identifier, "F2LZK0AAPLE1");
        assert_eq!(acme["Attest"].as_boolean(), Some(true));

        // ACME device-attest-01 with exactly those values
        let mut c = new_client(&broker, &directory_url).await;
        assert_eq!(c.register(json!({})).await.unwrap().status, 201);
        let key = DeviceKey::new();
        let (ourl, o, _, chall, token) = order(&mut c, "permanent-identifier", &client_identifier).await;
        let att = apple.attest(&AppleStatement::new(&key.spki(), &client_identifier, &token, OffsetDateTime::now_utc()));
        let chain = complete(&mut c, &ourl, &o, &chall, &att, &key, &client_identifier).await;
        assert_eq!(postern_e2e::pem_der_blocks(&chain).len(), 2);

        // a second enrollment needs a new profile
        let r = c.new_order(json!([{ "type": "permanent-identifier", "value": client_identifier }])).await.unwrap();
        assert_eq!((r.status, r.problem().as_deref()), (403, Some("unauthorized")), "{}", r.json());
        // an order made while the grant was open cannot finalize after it was used
        assert_eq!(get(&http, &profile_url).await.status(), 200);
        let (ourl_a, o_a, _, chall_a, token_a) = order(&mut c, "permanent-identifier", &client_identifier).await;
        let (_, o_b, _, chall_b, token_b) = order(&mut c, "permanent-identifier", &client_identifier).await;
        let key_a = DeviceKey::new();
        let att_a = apple.attest(&AppleStatement::new(&key_a.spki(), &client_identifier, &token_a, OffsetDateTime::now_utc()));
        complete(&mut c, &ourl_a, &o_a, &chall_a, &att_a, &key_a, &client_identifier).await;
        let key_b = DeviceKey::new();
        let att_b = apple.attest(&AppleStatement::new(&key_b.spki(), &client_identifier, &token_b, OffsetDateTime::now_utc()));
        let r = c.post(&chall_b, Some(&postern_e2e::acme::attestation_payload(&att_b))).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.json());
        let r = c
            .post(o_b["finalize"].as_str().unwrap(), Some(&postern_e2e::acme::finalize_payload(&key_b.csr(&client_identifier))))
            .await
            .unwrap();
        assert_eq!((r.status, r.problem().as_deref()), (403, Some("unauthorized")), "{}", r.json());
        assert_eq!(r.json()["detail"], "the device's enrollment grant was used or has expired; issue it a new profile");

        // the signed form carries the same profile
        let resp = get(&http, &format!("{profile_url}&signed=true")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/pkcs7-mime");
        let signed = postern_profiles::cms::verify(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(acme_payload(&signed.content)["ClientIdentifier"].as_string(), Some("F2LZK0AAPLE1"));
    });
    broker.stop();
}

#[test]
fn the_android_binding_key_enrolls_its_own_device_once() {
    let dir = tempfile::tempdir().unwrap();
    let apple = AppleTestAuthority::new();
    let android = AndroidTestAuthority::new();
    let broker = Broker::start_with(
        &dir.path().join("data"),
        &config(dir.path(), &apple, &android),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = broker.client().unwrap();
        let pixel = register_device(
            &http,
            &broker,
            json!({ "serial": "PIXEL8SERIAL", "platform": "android" }),
        )
        .await;
        register_device(
            &http,
            &broker,
            json!({ "serial": "PIXEL9SERIAL", "platform": "android" }),
        )
        .await;
        let id = pixel["id"].as_str().unwrap();
        let resp = get(
            &http,
            &format!(
                "{}/v1/profiles/default/devices/{id}/android.json",
                broker.https
            ),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let cfg = resp.json::<Value>().await.unwrap()["managedConfiguration"].clone();
        let directory_url = cfg["acme_directory_url"].as_str().unwrap();
        let kid = cfg["enrollment_kid"].as_str().unwrap();
        let secret = cfg["enrollment_secret"].as_str().unwrap();

        let mut c = new_client(&broker, directory_url).await;
        let binding = eab(&c, kid, secret);
        let r = c
            .register(json!({ "externalAccountBinding": binding }))
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.json());

        // another device's identifier: refused
        let r = c
            .new_order(json!([{ "type": "permanent-identifier", "value": "PIXEL9SERIAL" }]))
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.problem().as_deref()),
            (400, Some("rejectedIdentifier")),
            "{}",
            r.json()
        );
        assert_eq!(
            r.json()["subproblems"][0]["detail"],
            "this account's binding key was made for another device"
        );

        // its own device: enrolls (the binding stands for the grant)
        let key = DeviceKey::new();
        let (ourl, o, _, chall, token) = order(
            &mut c,
            "permanent-identifier",
            cfg["client_identifier"].as_str().unwrap(),
        )
        .await;
        let ka = c.key_authorization(&token).unwrap();
        let att = android.attest(&AndroidStatement::new(
            &key.pkcs8,
            "PIXEL8SERIAL",
            &ka,
            OffsetDateTime::now_utc(),
        ));
        complete(&mut c, &ourl, &o, &chall, &att, &key, "PIXEL8SERIAL").await;

        // the binding key works once
        let mut again = new_client(&broker, directory_url).await;
        let binding = eab(&again, kid, secret);
        let r = again
            .register(json!({ "externalAccountBinding": binding }))
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.problem().as_deref()),
            (403, Some("unauthorized")),
            "{}",
            r.json()
        );
        assert_eq!(
            r.json()["detail"],
            "external account binding: the key was used already"
        );
    });
    broker.stop();
}
