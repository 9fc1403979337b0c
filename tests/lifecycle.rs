//! Hire to offboard, end to end over HTTPS against one running broker, with no manual step: the
//! IdP provisions a user over SCIM, Jamf Pro's webhook enrolls the user's iPhone, the MDM fetches
//! the device's `.mobileconfig` and the device enrolls with ACME `device-attest-01` at exactly the
//! profile's `DirectoryURL` and `ClientIdentifier` (the provisioner requires enrollment grants),
//! the messaging client proves RCS E2EE with the issued certificate, and a gateway routes a
//! restricted message over RCS E2EE. Then the IdP deactivates the user the way Entra ID sends it,
//! and the next route answer, OpenSSL's OCSP client, the device's verified feed entry and the
//! Shared Signals poll all say so.

// A failed unwrap in a test or a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use serde_json::{Value, json};
use time::OffsetDateTime;

use postern_certs::attestation::testing::apple::{AppleStatement, AppleTestAuthority};
use postern_certs::jws::{Jwks, verify_compact};
use postern_certs::{KeyAlgorithm, KeySigner};
use postern_e2e::acme::Client;
use postern_e2e::device::{
    DeviceKey, apple_provisioner, capability_statement, complete, openssl_ocsp, order,
    write_ocsp_files,
};
use postern_e2e::{ADMIN_TOKEN, Broker};

const TENANT: &str = "acme-corp";
const USER: &str = "alice@acme.example";
const PHONE: &str = "+1 (415) 555-0100";
const TEL: &str = "tel:+14155550100";
const SERIAL: &str = "F2LZK0ALICE1";
const UDID: &str = "00008120-001A2B3C4D5E6F01";
const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";

struct Api<'a> {
    http: reqwest::Client,
    broker: &'a Broker,
}

impl Api<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<(&str, Value)>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.broker.https))
            .bearer_auth(token);
        if let Some((content_type, b)) = body {
            r = r
                .header("content-type", content_type)
                .body(serde_json::to_vec(&b).unwrap());
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            token,
            path,
            Some(("application/json", body)),
        )
        .await
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, token, path, None).await
    }

    async fn token(&self, role: &str) -> String {
        let (s, v) = self
            .post(
                ADMIN_TOKEN,
                "/v1/admin/tokens",
                json!({ "tenant": TENANT, "role": role, "label": format!("{TENANT} {role}") }),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["tenant"], TENANT, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    async fn route(&self, gateway: &str) -> Value {
        let (s, d) = self
            .post(
                gateway,
                "/v1/route",
                json!({ "recipient": TEL, "message_class": "restricted", "thread_id": "hr-1" }),
            )
            .await;
        assert_eq!(s, 200, "{d}");
        d
    }

    async fn jwks(&self) -> Jwks {
        self.http
            .get(format!("{}/.well-known/jwks.json", self.broker.https))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Jamf Pro's `MobileDeviceEnrolled` webhook body (JSON form).
fn jamf_enrolled() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event": {
            "deviceName": "Alice's iPhone", "model": "iPhone 16 Pro", "modelDisplay": "iPhone 16 Pro",
            "product": "iPhone17,1", "osVersion": "18.3.1", "osBuild": "22D72",
            "serialNumber": SERIAL, "udid": UDID, "jssID": 1042,
            "username": USER, "realName": "Alice Example", "emailAddress": USER,
            "phoneNumber": "", "userDirectoryID": "-1", "managed": true, "version": "18.3.1",
        },
        "webhook": {
            "eventTimestamp": OffsetDateTime::now_utc().unix_timestamp() * 1000,
            "id": 7, "name": "postern MobileDeviceEnrolled", "webhookEvent": "MobileDeviceEnrolled",
        },
    }))
    .unwrap()
}

/// The ACME payload of a `.mobileconfig`.
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

#[test]
fn hire_to_offboard() {
    let dir = tempfile::tempdir().unwrap();
    let apple = AppleTestAuthority::new();
    let broker = Broker::start_with(
        &dir.path().join("data"),
        &apple_provisioner(
            dir.path(),
            &apple,
            &format!(
                "tenant = \"{TENANT}\"\nrequire_enrollment_grant = true\nenrollment_grant_hours = 2"
            ),
        ),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(scenario(dir.path(), &broker, &apple));
    broker.stop();
}

#[allow(clippy::too_many_lines)]
async fn scenario(dir: &std::path::Path, broker: &Broker, apple: &AppleTestAuthority) {
    let api = Api {
        http: broker.client().unwrap(),
        broker,
    };

    // 1. the tenant, its tokens, and its Shared Signals receiver's stream (poll)
    let (s, v) = api
        .post(
            ADMIN_TOKEN,
            "/v1/admin/tenants",
            json!({ "id": TENANT, "name": "ACME Corp" }),
        )
        .await;
    assert_eq!((s, v["id"].as_str()), (201, Some(TENANT)), "{v}");
    let scim = api.token("scim").await;
    let mdm = api.token("mdm").await;
    let gateway = api.token("gateway").await;
    let (s, stream) = api
        .post(
            &gateway,
            "/ssf/streams",
            json!({
                "events_requested": [format!("{CAEP}device-compliance-change"),
                    format!("{CAEP}credential-change"), format!("{CAEP}session-revoked")],
                "delivery": { "method": "urn:ietf:rfc:8936" },
            }),
        )
        .await;
    assert_eq!(s, 201, "{stream}");
    let stream_id = stream["stream_id"].as_str().unwrap().to_owned();
    println!("1. tenant {TENANT}: scim, mdm, gateway tokens; SSF poll stream {stream_id}");

    // 2. the IdP provisions alice
    let (s, user) = api
        .call(
            reqwest::Method::POST,
            &scim,
            "/scim/v2/Users",
            Some((
                "application/scim+json",
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": USER, "active": true,
                    "name": { "givenName": "Alice", "familyName": "Example" },
                    "emails": [{ "primary": true, "value": USER, "type": "work" }],
                    "phoneNumbers": [{ "value": PHONE, "type": "mobile" }],
                }),
            )),
        )
        .await;
    assert_eq!(s, 201, "{user}");
    assert_eq!(user["phoneNumbers"][0]["value"], PHONE, "{user}");
    let user_id = user["id"].as_str().unwrap().to_owned();
    println!("2. SCIM user {USER} = {user_id}, phone {PHONE:?}");

    // 3. Jamf Pro's webhook enrolls alice's iPhone (Basic authentication, the secret as password)
    let (s, hook) = api
        .post(
            ADMIN_TOKEN,
            "/v1/admin/webhooks",
            json!({ "kind": "jamf", "name": "Jamf Pro", "tenant": TENANT }),
        )
        .await;
    assert_eq!((s, hook["tenant"].as_str()), (201, Some(TENANT)), "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let r = api
        .http
        .post(format!(
            "{}{}",
            broker.https,
            hook["path"].as_str().unwrap()
        ))
        .basic_auth("postern", Some(&secret))
        .header("content-type", "application/json")
        .body(jamf_enrolled())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let delivered: Value = r.json().await.unwrap();
    assert_eq!(
        (
            delivered["status"].as_str(),
            &delivered["registered"],
            &delivered["changed"]
        ),
        (Some("applied"), &json!(true), &json!(true)),
        "{delivered}"
    );
    assert_eq!(delivered["assurance"], "registered", "{delivered}");
    let device = delivered["device_id"].as_str().unwrap().to_owned();
    // the inventory has it, bound to the user
    let (s, devices) = api
        .get(&mdm, &format!("/v1/admin/devices?tenant={TENANT}"))
        .await;
    assert_eq!(s, 200, "{devices}");
    let listed: Vec<&Value> = devices
        .as_array()
        .or_else(|| devices["devices"].as_array())
        .unwrap()
        .iter()
        .filter(|d| d["serial"] == SERIAL)
        .collect();
    assert_eq!(listed.len(), 1, "{devices}");
    assert_eq!(
        (listed[0]["id"].as_str(), listed[0]["udid"].as_str()),
        (Some(device.as_str()), Some(UDID)),
        "{devices}"
    );
    assert_eq!(listed[0]["user"], USER, "{devices}");
    // its posture record carries the user and the SCIM tel: address
    let (s, p) = api
        .get(&gateway, &format!("/v1/posture/devices/{device}"))
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["record"]["user"], USER, "{p}");
    assert_eq!(
        p["record"]["addresses"],
        json!([format!("im:{USER}"), TEL]),
        "{p}"
    );
    assert_eq!(p["record"]["mdm"]["enrolled"], true, "{p}");
    assert_eq!(p["record"]["mdm"]["source"], "jamf", "{p}");
    assert_eq!(p["record"]["mdm"]["platform"], "ios", "{p}");
    println!(
        "3. Jamf MobileDeviceEnrolled: device {device} registered for {USER}, addresses {}",
        p["record"]["addresses"]
    );
    // Jamf's webhooks carry no compliance verdict: the MDM reports it from its compliance API
    let (s, v) = api
        .post(
            &mdm,
            "/v1/posture/events",
            json!({ "events": [{
                "source": "jamf", "event_id": "jamf-compliance-1",
                "occurred_at": OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
                "subject": { "kind": "device", "identifiers": { "serial": SERIAL } },
                "event": { "type": "checked_in", "compliance": "compliant", "os_version": "18.3.1",
                           "storage_encrypted": true, "jailbreak_detected": false },
            }] }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["devices"][0]["assurance"], "managed", "{v}");
    println!("   compliance reported: managed");

    // 4. the MDM fetches the device's enrollment profile
    let r = api
        .http
        .get(format!(
            "{}/v1/profiles/{TENANT}/devices/{device}/enrollment.mobileconfig",
            broker.https
        ))
        .bearer_auth(&mdm)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/x-apple-aspen-config"
    );
    let acme = acme_payload(&r.bytes().await.unwrap());
    let directory_url = acme["DirectoryURL"].as_string().unwrap().to_owned();
    let client_identifier = acme["ClientIdentifier"].as_string().unwrap().to_owned();
    assert_eq!(
        directory_url,
        format!("{}/acme/devices/directory", broker.https)
    );
    assert_eq!(client_identifier, SERIAL);
    assert_eq!(acme["Attest"].as_boolean(), Some(true));
    println!("4. profile: DirectoryURL {directory_url}, ClientIdentifier {client_identifier}");

    // 5. the device enrolls with exactly those values
    let account_key: std::sync::Arc<dyn postern_certs::Signer> = std::sync::Arc::new(
        KeySigner::from_pkcs8(
            postern_certs::signer::generate(KeyAlgorithm::EcdsaP256)
                .unwrap()
                .as_der(),
        )
        .unwrap(),
    );
    let mut c = Client::new(broker.client().unwrap(), &directory_url, account_key)
        .await
        .unwrap();
    assert_eq!(c.register(json!({})).await.unwrap().status, 201);
    let key = DeviceKey::new();
    let started = Instant::now();
    let (ourl, o, _, chall, token) =
        order(&mut c, "permanent-identifier", &client_identifier).await;
    let mut st = AppleStatement::new(
        &key.spki(),
        &client_identifier,
        &token,
        OffsetDateTime::now_utc(),
    );
    st.udid = Some(UDID.into());
    st.os_version = Some("18.3.1".into());
    let att = apple.attest(&st);
    let chain = complete(&mut c, &ourl, &o, &chall, &att, &key, &client_identifier).await;
    let leaf = write_ocsp_files(dir, broker, &chain);
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let cert_serial = cert.tbs_certificate.raw_serial_as_string().replace(':', "");
    assert_eq!(openssl_ocsp(dir, broker), "good");
    println!(
        "5. device-attest-01: certificate {cert_serial} issued in {} ms; OCSP good",
        started.elapsed().as_millis()
    );

    // 6. posture: attested
    let (s, p) = api
        .get(&gateway, &format!("/v1/posture/devices/{device}"))
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["assurance"], "attested", "{p}");
    assert_eq!(
        p["record"]["credentials"].as_array().unwrap().len(),
        1,
        "{p}"
    );
    let credential = p["record"]["credentials"][0]["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        credential.to_ascii_lowercase().trim_start_matches('0'),
        cert_serial.to_ascii_lowercase().trim_start_matches('0'),
        "{p}"
    );
    println!("6. posture {device}: attested, credential {credential}");

    // 7. the messaging client's capability handshake with the issued certificate
    let r = api
        .http
        .post(format!("{}/v1/capabilities", broker.https))
        .header("content-type", "application/jose")
        .body(capability_statement(
            &key,
            &leaf,
            "lifecycle-handshake-0001",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (
            v["rcs_e2ee"].as_str(),
            v["device_id"].as_str(),
            v["tenant"].as_str()
        ),
        (Some("verified"), Some(device.as_str()), Some(TENANT)),
        "{v}"
    );
    println!("7. capability handshake: rcs_e2ee verified");

    // 8. the gateway routes a restricted message over RCS E2EE, signed
    let jwks = api.jwks().await;
    let d = api.route(&gateway).await;
    assert_eq!(
        (
            d["transport"].as_str(),
            d["assurance"].as_str(),
            d["rcs_e2ee"].as_str()
        ),
        (Some("rcs_e2ee"), Some("attested"), Some("verified")),
        "{d}"
    );
    assert_eq!(d["devices"], json!([device]), "{d}");
    let verified = verify_compact(d["jws"].as_str().unwrap(), &jwks).unwrap();
    assert_eq!(verified.header["typ"], "postern-route+jwt");
    let signed: Value = serde_json::from_slice(&verified.payload).unwrap();
    assert_eq!(
        (
            &signed["decision_id"],
            &signed["transport"],
            &signed["recipient"]
        ),
        (&d["decision_id"], &json!("rcs_e2ee"), &json!(TEL)),
        "{signed}"
    );
    println!(
        "8. route {TEL} restricted: rcs_e2ee ({}), JWS verifies with kid {}",
        d["decision_id"], verified.header["kid"]
    );

    // 9. the IdP deactivates alice, as Entra ID sends it
    let deactivated = Instant::now();
    let (s, v) = api
        .call(
            reqwest::Method::PATCH,
            &scim,
            &format!("/scim/v2/Users/{user_id}"),
            Some((
                "application/scim+json",
                json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{ "op": "Replace", "path": "active", "value": "False" }],
                }),
            )),
        )
        .await;
    let patched_ms = deactivated.elapsed().as_millis();
    assert_eq!((s, &v["active"]), (200, &json!(false)), "{v}");
    println!("9. SCIM PATCH active=\"False\": 200 in {patched_ms} ms");

    // 10. the next route answer falls back, OCSP says revoked, the feed and SSF tell it
    let d = api.route(&gateway).await;
    let routed_ms = deactivated.elapsed().as_millis();
    assert_eq!(
        (
            d["transport"].as_str(),
            d["assurance"].as_str(),
            d["rcs_e2ee"].as_str()
        ),
        (Some("block"), Some("unknown"), Some("unknown")),
        "{d}"
    );
    assert_eq!(d["devices"], json!([device]), "{d}");
    let reasons: Vec<&str> = d["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("user deactivated")),
        "{reasons:?}"
    );
    verify_compact(d["jws"].as_str().unwrap(), &jwks).unwrap();
    let status = openssl_ocsp(dir, broker);
    let ocsp_ms = deactivated.elapsed().as_millis();
    assert_eq!(status, "revoked");
    println!(
        "10. route restricted: {} ({reasons:?}) at +{routed_ms} ms; OCSP {status:?} at +{ocsp_ms} ms",
        d["transport"]
    );
    // a revoked credential proves nothing any more
    let r = api
        .http
        .post(format!("{}/v1/capabilities", broker.https))
        .header("content-type", "application/jose")
        .body(capability_statement(
            &key,
            &leaf,
            "lifecycle-handshake-0002",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // the device's feed entry, checked by the gateway's verifier (statement, proof, checkpoint)
    let opts = postern_broker::feed_verify::Options {
        url: broker.https.clone(),
        tenant: TENANT.into(),
        token: gateway.clone(),
        ca_pem: broker.root_pem().unwrap(),
        state: Some(dir.join("gateway-state.json")),
        device: Some(device.clone()),
        max_age: time::Duration::minutes(10),
        origin: None,
    };
    let summary = postern_broker::feed_verify::run(&opts, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let entry = summary.device.unwrap();
    let posture = &entry.record["posture"];
    assert_eq!(posture["user"], USER, "{}", entry.record);
    assert!(posture["user_deactivated"].is_object(), "{}", entry.record);
    assert_eq!(posture["credentials"][0]["serial"], credential.as_str());
    assert!(
        posture["credentials"][0]["revoked_at"].is_string(),
        "{}",
        entry.record
    );
    assert_eq!(
        entry.record["assessment"]["assurance"], "unknown",
        "{}",
        entry.record
    );
    println!(
        "    feed: entry {} verified, user deactivated, credential revoked",
        entry.seq
    );

    // the SSF poll: SETs for the device, signed with a key of the JWKS
    let (s, got) = api
        .post(
            &gateway,
            &format!("/ssf/poll/{stream_id}"),
            json!({ "returnImmediately": true, "maxEvents": 100 }),
        )
        .await;
    assert_eq!(s, 200, "{got}");
    let mut seen = Vec::new();
    for set in got["sets"].as_object().unwrap().values() {
        let v = verify_compact(set.as_str().unwrap(), &jwks).unwrap();
        assert_eq!(v.header["typ"], "secevent+jwt");
        let claims: Value = serde_json::from_slice(&v.payload).unwrap();
        if claims["sub_id"]["device"]["id"] != device.as_str() {
            continue;
        }
        for (uri, body) in claims["events"].as_object().unwrap() {
            let change = body["change_type"]
                .as_str()
                .or(body["current_status"].as_str())
                .unwrap_or("");
            seen.push(format!("{}:{change}", uri.trim_start_matches(CAEP)));
        }
    }
    for want in [
        "credential-change:create",
        "credential-change:revoke",
        "session-revoked:",
        "device-compliance-change:not-compliant",
    ] {
        assert!(seen.iter().any(|s| s == want), "{want} not in {seen:?}");
    }
    println!(
        "    SSF poll: {} SETs verified; for the device: {seen:?}",
        got["sets"].as_object().unwrap().len()
    );
}
