//! SCIM end to end, over HTTPS against a running broker: an IdP provisions a user with a phone
//! number, the user's device enrolls with ACME `device-attest-01`, a gateway's route for the
//! user's `tel:` address finds that device, and the IdP's deactivation (Okta's path-less PATCH)
//! revokes the device's certificate before it is answered: OpenSSL's OCSP client then hears
//! `revoked`. Another tenant's SCIM token sees none of it.

// A failed unwrap in a test or a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use time::OffsetDateTime;

use postern_certs::attestation::testing::apple::{AppleStatement, AppleTestAuthority};
use postern_e2e::device::{
    DeviceKey, account, apple_provisioner, complete, openssl_ocsp, order, register_device,
    write_ocsp_files,
};
use postern_e2e::{ADMIN_TOKEN, Broker};

const PHONE: &str = "+49 (151) 2345-6789";
const TEL: &str = "tel:+4915123456789";
const SERIAL: &str = "F2LZK0SCIM01";

async fn call(
    http: &reqwest::Client,
    broker: &Broker,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http
        .request(method, format!("{}{path}", broker.https))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r
            .header("content-type", "application/scim+json")
            .body(serde_json::to_vec(&b).unwrap());
    }
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn token(http: &reqwest::Client, broker: &Broker, tenant: &str, role: &str) -> String {
    let (s, v) = call(
        http,
        broker,
        reqwest::Method::POST,
        "/v1/admin/tokens",
        ADMIN_TOKEN,
        Some(json!({ "tenant": tenant, "role": role, "label": format!("{tenant} {role}") })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

#[test]
fn scim_user_routes_by_tel_and_deactivation_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let apple = AppleTestAuthority::new();
    let broker = Broker::start_with(
        &dir.path().join("data"),
        &apple_provisioner(dir.path(), &apple, ""),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = broker.client().unwrap();
        let scim = token(&http, &broker, "default", "scim").await;
        let gw = token(&http, &broker, "default", "gateway").await;

        // the IdP provisions the user (Okta's create body)
        let (s, user) = call(&http, &broker, reqwest::Method::POST, "/scim/v2/Users", &scim, Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "erin@example.com",
            "name": { "givenName": "Erin", "familyName": "Example" },
            "emails": [{ "primary": true, "value": "erin@example.com", "type": "work" }],
            "phoneNumbers": [{ "value": PHONE, "type": "mobile" }],
            "active": true, "password": "not-kept", "groups": [],
        }))).await;
        assert_eq!(s, 201, "{user}");
        let id = user["id"].as_str().unwrap().to_owned();
        assert_eq!(user["meta"]["location"], format!("{}/scim/v2/Users/{id}", broker.https));
        assert!(user.get("password").is_none());

        // the user's device, registered by the MDM under the userName, enrolls with attestation
        let dev = register_device(&http, &broker, json!({ "serial": SERIAL, "platform": "ios", "user": "erin@example.com" })).await;
        let device_id = dev["id"].as_str().unwrap().to_owned();
        let mut c = account(&broker, "devices", postern_certs::KeyAlgorithm::EcdsaP256).await;
        let key = DeviceKey::new();
        let (ourl, o, _, chall, tok) = order(&mut c, "permanent-identifier", SERIAL).await;
        let att = apple.attest(&AppleStatement::new(&key.spki(), SERIAL, &tok, OffsetDateTime::now_utc()));
        let chain = complete(&mut c, &ourl, &o, &chall, &att, &key, SERIAL).await;
        write_ocsp_files(dir.path(), &broker, &chain);
        assert_eq!(openssl_ocsp(dir.path(), &broker), "good", "before deactivation");

        // the MDM reports the device compliant
        let at = OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
        let (s, v) = call(&http, &broker, reqwest::Method::POST, "/v1/posture/events", ADMIN_TOKEN, Some(json!({ "events": [{
            "source": "intune", "event_id": "ci-1", "occurred_at": at,
            "subject": { "kind": "device", "device_id": device_id },
            "event": { "type": "checked_in", "compliance": "compliant", "os_version": "18.1" },
        }] }))).await;
        assert_eq!(s, 200, "{v}");

        // the gateway routes by the tel: address SCIM gave: the device, attested
        let (s, d) = call(&http, &broker, reqwest::Method::POST, "/v1/route", &gw,
            Some(json!({ "recipient": TEL, "message_class": "public" }))).await;
        assert_eq!(s, 200, "{d}");
        assert_eq!(d["devices"], json!([device_id]), "{d}");
        assert_eq!(d["assurance"], "attested", "{d}");
        // and by the im: address the email gave
        let (_, d) = call(&http, &broker, reqwest::Method::POST, "/v1/route", &gw,
            Some(json!({ "recipient": "im:erin@example.com", "message_class": "public" }))).await;
        assert_eq!(d["devices"], json!([device_id]), "{d}");

        // another tenant's SCIM client sees nothing of it
        let (s, _) = call(&http, &broker, reqwest::Method::POST, "/v1/admin/tenants", ADMIN_TOKEN,
            Some(json!({ "id": "other", "name": "Other" }))).await;
        assert_eq!(s, 201);
        let scim_b = token(&http, &broker, "other", "scim").await;
        let (s, v) = call(&http, &broker, reqwest::Method::GET, &format!("/scim/v2/Users/{id}"), &scim_b, None).await;
        assert_eq!((s, v["status"].as_str()), (404, Some("404")), "{v}");
        let (s, v) = call(&http, &broker, reqwest::Method::GET, "/scim/v2/Users?filter=userName%20eq%20%22erin%40example.com%22", &scim_b, None).await;
        assert_eq!((s, &v["totalResults"]), (200, &json!(0)), "{v}");
        let (s, v) = call(&http, &broker, reqwest::Method::PATCH, &format!("/scim/v2/Users/{id}"), &scim_b,
            Some(json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{ "op": "replace", "value": { "active": false } }] }))).await;
        assert_eq!(s, 404, "{v}");
        assert_eq!(openssl_ocsp(dir.path(), &broker), "good", "tenant b changed nothing");

        // Okta's deactivation: when the IdP hears 200, the certificate is revoked
        let (s, v) = call(&http, &broker, reqwest::Method::PATCH, &format!("/scim/v2/Users/{id}"), &scim,
            Some(json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{ "op": "replace", "value": { "active": false } }] }))).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["active"], false);
        let status = openssl_ocsp(dir.path(), &broker);
        assert_eq!(status, "revoked");
        let (_, d) = call(&http, &broker, reqwest::Method::POST, "/v1/route", &gw,
            Some(json!({ "recipient": TEL, "message_class": "restricted" }))).await;
        assert_ne!(d["assurance"], "attested", "{d}");
        assert_ne!(d["transport"], "rcs_e2ee", "{d}");
        // the user stays readable, inactive
        let (s, v) = call(&http, &broker, reqwest::Method::GET, &format!("/scim/v2/Users/{id}"), &scim, None).await;
        assert_eq!((s, &v["active"]), (200, &json!(false)));
    });
    broker.stop();
}
