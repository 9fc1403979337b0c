//! Posture and routing end to end, over HTTPS against a running broker: a device enrolls with
//! ACME `device-attest-01`, its MDM facts arrive as events, its messaging client proves RCS
//! E2EE with the certified key, a gateway asks for routes (signed), a thread that flips
//! between a strong and a weak client stays weak, losing the device revokes everything, and
//! another tenant's gateway sees none of it.

// A failed unwrap in a test or a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use time::OffsetDateTime;

use postern_certs::attestation::testing::apple::{AppleStatement, AppleTestAuthority};
use postern_certs::jws::{Jwks, verify_compact};
use postern_e2e::device::{
    DeviceKey, account, apple_provisioner, capability_statement, complete, order, register_device,
};
use postern_e2e::{ADMIN_TOKEN, Broker};

const ADDRESS: &str = "tel:+4915112345678";

struct Api<'a> {
    http: reqwest::Client,
    broker: &'a Broker,
}

impl Api<'_> {
    async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.broker.https))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.broker.https))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn events(&self, events: Value) -> Value {
        let (s, v) = self
            .post(
                ADMIN_TOKEN,
                "/v1/posture/events",
                json!({ "events": events }),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn route(&self, token: &str, class: &str, thread: Option<&str>) -> Value {
        let mut body = json!({ "recipient": ADDRESS, "message_class": class });
        if let Some(t) = thread {
            body["thread_id"] = json!(t);
        }
        let (s, v) = self.post(token, "/v1/route", body).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn token(&self, tenant: &str, role: &str) -> String {
        let (s, v) = self
            .post(
                ADMIN_TOKEN,
                "/v1/admin/tokens",
                json!({ "tenant": tenant, "role": role, "label": format!("{tenant} {role}") }),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }
}

fn event(id: &str, device: &str, body: Value) -> Value {
    let mut e = json!({
        "source": "jamf",
        "event_id": id,
        "occurred_at": OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        "subject": { "kind": "device", "device_id": device },
    });
    e["event"] = body;
    e
}

async fn handshake(api: &Api<'_>, jws: &str) -> (u16, Value) {
    let r = api
        .http
        .post(format!("{}/v1/capabilities", api.broker.https))
        .header("content-type", "application/jose")
        .body(jws.to_owned())
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

#[test]
fn posture_route_handshake_thread_memory_cascade_and_tenant_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let apple = AppleTestAuthority::new();
    let broker = Broker::start_with(
        &dir.path().join("data"),
        &apple_provisioner(dir.path(), &apple, ""),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let api = Api { http: broker.client().unwrap(), broker: &broker };
        let gw = api.token("default", "gateway").await;
        // a Shared Signals receiver polls the tenant's CAEP events
        let caep = "https://schemas.openid.net/secevent/caep/event-type/";
        let (s, stream) = api.post(&gw, "/ssf/streams", json!({
            "events_requested": [format!("{caep}device-compliance-change"), format!("{caep}credential-change"), format!("{caep}session-revoked")],
            "delivery": { "method": "urn:ietf:rfc:8936" },
        })).await;
        assert_eq!(s, 201, "{stream}");
        let stream_id = stream["stream_id"].as_str().unwrap().to_owned();

        // an unknown recipient is not an error: the policy's fallback, signed
        let d = api.route(&gw, "public", None).await;
        assert_eq!(d["transport"], "sms_notify_only", "{d}");
        assert_eq!(d["assurance"], "unknown");
        assert!(d["reasons"][0].as_str().unwrap().contains("unknown"), "{d}");
        let d = api.route(&gw, "restricted", None).await;
        assert_eq!(d["transport"], "block", "{d}");
        // an unknown class is a problem document, not a guess
        let (s, v) = api.post(&gw, "/v1/route", json!({ "recipient": ADDRESS, "message_class": "secret" })).await;
        assert_eq!((s, v["type"].as_str()), (404, Some("urn:postern:problem:not-found")), "{v}");
        let (s, v) = api.post(&gw, "/v1/route", json!({ "recipient": "tel:0800", "message_class": "public" })).await;
        assert_eq!((s, v["type"].as_str()), (400, Some("urn:postern:problem:malformed")), "{v}");
        // a gateway may not ingest
        let (s, _) = api.post(&gw, "/v1/posture/events", json!({ "events": [] })).await;
        assert_eq!(s, 403);

        // the strong device: registered, managed, attested, with the app
        let strong = register_device(&api.http, &broker, json!({ "serial": "F2LZK0STRONG", "platform": "ios", "user": "alice" })).await;
        let strong_id = strong["id"].as_str().unwrap().to_owned();
        api.events(json!([
            event("a1", &strong_id, json!({ "type": "addresses_assigned", "addresses": [ADDRESS] })),
            event("c1", &strong_id, json!({ "type": "checked_in", "compliance": "compliant", "os_version": "18.1" })),
            event("i1", &strong_id, json!({ "type": "capability_reported", "capability": { "capability": "in_app", "available": true } })),
        ])).await;
        let d = api.route(&gw, "confidential", None).await;
        assert_eq!(d["assurance"], "managed", "{d}");
        assert_eq!(d["transport"], "in_app", "{d}");
        assert_eq!(d["devices"], json!([strong_id]));

        // enroll with attestation: the credential and the attestation reach the posture
        let mut c = account(&broker, "devices", postern_certs::KeyAlgorithm::EcdsaP256).await;
        let key = DeviceKey::new();
        let (ourl, o, _, chall, token) = order(&mut c, "permanent-identifier", "F2LZK0STRONG").await;
        let att = apple.attest(&AppleStatement::new(&key.spki(), "F2LZK0STRONG", &token, OffsetDateTime::now_utc()));
        let chain = complete(&mut c, &ourl, &o, &chall, &att, &key, "F2LZK0STRONG").await;
        let leaf = postern_e2e::pem_der_blocks(&chain).remove(0);
        let d = api.route(&gw, "restricted", None).await;
        assert_eq!(d["assurance"], "attested", "{d}");
        // claimed by a gateway is not verified: restricted still goes in-app
        api.events(json!([event("r1", &strong_id, json!({ "type": "capability_reported", "capability": { "capability": "rcs_e2ee", "state": "verified" } }))])).await;
        let d = api.route(&gw, "restricted", None).await;
        assert_eq!(d["rcs_e2ee"], "claimed", "{d}");
        assert_eq!(d["transport"], "in_app", "{d}");

        // the handshake, signed with the certified key, makes it verified
        let jws = capability_statement(&key, &leaf, "handshake-0000000001");
        let (s, v) = handshake(&api, &jws).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["rcs_e2ee"], "verified", "{v}");
        assert_eq!(v["device_id"], strong_id.as_str());
        // replayed, signed by another key, or without a postern certificate: refused
        let (s, v) = handshake(&api, &jws).await;
        assert_eq!((s, v["type"].as_str()), (401, Some("urn:postern:problem:unauthorized")), "{v}");
        let (s, v) = handshake(&api, &capability_statement(&DeviceKey::new(), &leaf, "handshake-0000000002")).await;
        assert_eq!(s, 401, "{v}");
        assert!(v["detail"].as_str().unwrap().contains("signature"), "{v}");
        let (s, v) = handshake(&api, "not.a.jws").await;
        assert_eq!(s, 400, "{v}");

        // restricted now goes over RCS E2EE; the answer is signed with a key of the JWKS
        let d = api.route(&gw, "restricted", Some("thread-1")).await;
        assert_eq!((d["transport"].as_str(), d["rcs_e2ee"].as_str()), (Some("rcs_e2ee"), Some("verified")), "{d}");
        let jwks: Jwks = api.http.get(format!("{}/.well-known/jwks.json", broker.https)).send().await.unwrap().json().await.unwrap();
        let verified = verify_compact(d["jws"].as_str().unwrap(), &jwks).unwrap();
        let signed: Value = serde_json::from_slice(&verified.payload).unwrap();
        assert_eq!(signed["decision_id"], d["decision_id"]);
        assert_eq!(signed["transport"], "rcs_e2ee");
        assert_eq!(signed["policy_version"], d["policy_version"]);

        // the oscillation: the address moves to a weak client, then back
        let weak = register_device(&api.http, &broker, json!({ "serial": "WEAKPHONE001", "platform": "android" })).await;
        let weak_id = weak["id"].as_str().unwrap().to_owned();
        api.events(json!([
            event("a2", &strong_id, json!({ "type": "addresses_assigned", "addresses": [] })),
            event("a3", &weak_id, json!({ "type": "addresses_assigned", "addresses": [ADDRESS] })),
        ])).await;
        let d = api.route(&gw, "restricted", Some("thread-1")).await;
        assert_eq!(d["transport"], "block", "{d}");
        assert!(d["reasons"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().starts_with("thread lowered")), "{d}");
        api.events(json!([
            event("a4", &weak_id, json!({ "type": "addresses_assigned", "addresses": [] })),
            event("a5", &strong_id, json!({ "type": "addresses_assigned", "addresses": [ADDRESS] })),
        ])).await;
        let d = api.route(&gw, "restricted", Some("thread-1")).await;
        assert_eq!(d["transport"], "block", "the thread stays at the weak level: {d}");
        assert!(d["reasons"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().starts_with("thread held")), "{d}");
        // a thread that never saw the weak client is not held
        let d = api.route(&gw, "restricted", Some("thread-2")).await;
        assert_eq!(d["transport"], "rcs_e2ee", "{d}");
        // a fresh handshake after the downgrade raises thread-1 again
        let (s, v) = handshake(&api, &capability_statement(&key, &leaf, "handshake-0000000003")).await;
        assert_eq!(s, 200, "{v}");
        let d = api.route(&gw, "restricted", Some("thread-1")).await;
        assert_eq!(d["transport"], "rcs_e2ee", "{d}");
        assert!(d["reasons"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().starts_with("thread raised")), "{d}");

        // a kill switch takes effect on the next answer
        let (s, ks) = api.post(ADMIN_TOKEN, "/v1/admin/kill-switches", json!({ "transport": "rcs_e2ee", "scope": "tenant", "reason": "incident 42" })).await;
        assert_eq!(s, 201, "{ks}");
        let d = api.route(&gw, "restricted", None).await;
        assert_eq!(d["transport"], "in_app", "{d}");
        let r = api.http.delete(format!("{}/v1/admin/kill-switches/{}", broker.https, ks["id"].as_str().unwrap())).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(api.route(&gw, "restricted", None).await["transport"], "rcs_e2ee");

        // a policy change is in force at once and versioned
        let (_, before) = api.get(ADMIN_TOKEN, "/v1/policy").await;
        let r = api.http.put(format!("{}/v1/policy", broker.https)).bearer_auth(ADMIN_TOKEN)
            .body("[classes.restricted]\nmin_assurance = \"attested\"\nrcs_e2ee = \"verified\"\nladder = [\"in_app\", \"block\"]\n")
            .send().await.unwrap();
        assert_eq!(r.status(), 200);
        let after: Value = r.json().await.unwrap();
        assert_ne!(after["version"], before["version"]);
        let d = api.route(&gw, "restricted", None).await;
        assert_eq!((d["transport"].as_str(), &d["policy_version"]), (Some("in_app"), &after["version"]), "{d}");
        let r = api.http.put(format!("{}/v1/policy", broker.https)).bearer_auth(ADMIN_TOKEN).body("[classes.x]\nladder = [\"pigeon\"]\n").send().await.unwrap();
        assert_eq!(r.status(), 400);
        let r = api.http.delete(format!("{}/v1/policy", broker.https)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200);

        // tenant isolation: tenant b's gateway learns nothing of tenant a's devices
        let (s, _) = api.post(ADMIN_TOKEN, "/v1/admin/tenants", json!({ "id": "b", "name": "B" })).await;
        assert_eq!(s, 201);
        let gw_b = api.token("b", "gateway").await;
        let d = api.route(&gw_b, "restricted", None).await;
        assert_eq!((d["transport"].as_str(), d["assurance"].as_str()), (Some("block"), Some("unknown")), "{d}");
        assert_eq!(d["devices"], json!([]));
        assert_eq!(d["tenant"], "b");
        let (s, _) = api.get(&gw_b, &format!("/v1/posture/devices/{strong_id}")).await;
        assert_eq!(s, 404);
        let (s, _) = api.post(&gw_b, "/v1/route?tenant=default", json!({ "recipient": ADDRESS, "message_class": "public" })).await;
        assert_eq!(s, 403);
        let (s, v) = api.get(&gw_b, &format!("/v1/audit?device={strong_id}")).await;
        assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(0)), "{v}");
        let (s, _) = api.get(&gw_b, "/v1/audit?tenant=default").await;
        assert_eq!(s, 403);

        // losing the device: posture, certificate status, CRL and the next answer, at once
        let (s, rep) = api.post(ADMIN_TOKEN, &format!("/v1/admin/devices/{strong_id}/lost"), json!({})).await;
        assert_eq!(s, 200, "{rep}");
        assert_eq!(rep["revoked"].as_array().unwrap().len(), 1, "{rep}");
        let serial = rep["revoked"][0].as_str().unwrap();
        let (_, cert) = api.get(ADMIN_TOKEN, &format!("/v1/admin/certificates/{serial}")).await;
        assert_eq!(cert["status"], "revoked");
        let d = api.route(&gw, "restricted", Some("thread-2")).await;
        assert_eq!((d["transport"].as_str(), d["assurance"].as_str()), (Some("block"), Some("unknown")), "{d}");
        let (s, v) = handshake(&api, &capability_statement(&key, &leaf, "handshake-0000000004")).await;
        assert_eq!(s, 401, "a revoked credential proves nothing: {v}");
        // the feed: the gateway verifies the device's newest entry, signed and proven
        let opts = |token: &str| postern_broker::feed_verify::Options {
            url: broker.https.clone(),
            tenant: "default".into(),
            token: token.into(),
            ca_pem: broker.root_pem().unwrap(),
            state: Some(dir.path().join("gateway-state.json")),
            device: Some(strong_id.clone()),
            max_age: time::Duration::minutes(10),
            origin: None,
        };
        let summary = postern_broker::feed_verify::run(&opts(&gw), OffsetDateTime::now_utc()).await.unwrap();
        let dev = summary.device.unwrap();
        let posture = &dev.record["posture"];
        assert!(posture["lost"].is_object(), "{}", dev.record);
        assert!(posture["credentials"][0]["revoked_at"].is_string(), "{}", dev.record);
        assert_eq!(dev.record["assessment"]["assurance"], "unknown", "{}", dev.record);
        // tenant b's gateway cannot read tenant a's feed
        assert!(postern_broker::feed_verify::run(&opts(&gw_b), OffsetDateTime::now_utc()).await.is_err());

        // the SSF stream heard it all, each SET signed (RS256) and naming its feed entry
        let (s, got) = api.post(&gw, &format!("/ssf/poll/{stream_id}"), json!({ "returnImmediately": true, "maxEvents": 100 })).await;
        assert_eq!(s, 200, "{got}");
        let mut seen = Vec::new();
        for set in got["sets"].as_object().unwrap().values() {
            let v = verify_compact(set.as_str().unwrap(), &jwks).unwrap();
            assert_eq!(v.header["alg"], "RS256");
            let claims: Value = serde_json::from_slice(&v.payload).unwrap();
            if claims["sub_id"]["device"]["id"] != strong_id.as_str() {
                continue;
            }
            for (uri, body) in claims["events"].as_object().unwrap() {
                assert!(body["postern_feed_seq"].is_u64(), "{claims}");
                let change = body["change_type"].as_str().unwrap_or(body["current_status"].as_str().unwrap_or(""));
                seen.push(format!("{}:{change}", uri.trim_start_matches(caep)));
            }
        }
        for want in ["device-compliance-change:compliant", "credential-change:create", "credential-change:revoke", "session-revoked:", "device-compliance-change:not-compliant"] {
            assert!(seen.iter().any(|s| s == want), "{want} not in {seen:?}");
        }

        // the audit log tells the device's story, route decisions included
        let (s, v) = api.get(&gw, &format!("/v1/audit?device={strong_id}&limit=1000")).await;
        assert_eq!(s, 200);
        let actions: Vec<&str> = v.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert!(actions.contains(&"posture.create") && actions.contains(&"posture.update"), "{actions:?}");
        assert!(actions.contains(&"route.decide"), "{actions:?}");
        assert!(!actions.contains(&"certificate.revoke"), "gateways see routes and posture only");
        let (_, v) = api.get(ADMIN_TOKEN, &format!("/v1/audit?device={strong_id}&limit=1000")).await;
        let actions: Vec<&str> = v.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert!(actions.contains(&"certificate.revoke"), "{actions:?}");
        let (s, _) = api.get(ADMIN_TOKEN, "/v1/audit?since=yesterday").await;
        assert_eq!(s, 400);
    });
}
