//! An MDM connector end to end: a real broker started with a `[[connectors]]` table pointing at
//! a fake Microsoft Graph on loopback (HTTPS, its certificate given as `ca_file`) syncs at
//! start, registers the device, and its posture from Intune's data shows over the public API;
//! the device turning non-compliant in Intune lowers it after a sync on demand; another
//! tenant's admin sees no connector.

// A failed unwrap in a test or a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use postern_e2e::{ADMIN_TOKEN, Broker};

const SECRET: &str = "graph-client-secret-value";

#[derive(Debug)]
struct Graph {
    compliance: &'static str,
    last_sync: OffsetDateTime,
}

type Shared = Arc<Mutex<Graph>>;

async fn token(body: String) -> Response {
    if !body.contains(&format!("client_secret={SECRET}"))
        || !body.contains("grant_type=client_credentials")
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "error": "invalid_client" })),
        )
            .into_response();
    }
    axum::Json(json!({ "token_type": "Bearer", "expires_in": 3599, "access_token": "graph-token" }))
        .into_response()
}

async fn managed_devices(State(g): State<Shared>, headers: HeaderMap) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer graph-token") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let g = g.lock().unwrap();
    axum::Json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/managedDevices",
        "value": [{
            "id": "705c034c-034c-705c-4c03-5c704c035c70",
            "userPrincipalName": "alice@example.com",
            "operatingSystem": "iOS",
            "osVersion": "18.1",
            "complianceState": g.compliance,
            "managementState": "managed",
            "lastSyncDateTime": g.last_sync.format(&Rfc3339).unwrap(),
            "enrolledDateTime": "2024-10-01T12:00:00Z",
            "isEncrypted": true,
            "jailBroken": "False",
            "serialNumber": "F2LE2EINTUNE",
            "imei": "",
            "model": "iPhone 15"
        }]
    }))
    .into_response()
}

async fn get_json(c: &reqwest::Client, token: &str, url: &str) -> (u16, Value) {
    let r = c.get(url).bearer_auth(token).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[test]
fn intune_data_reaches_the_posture_api() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let graph = Arc::new(Mutex::new(Graph {
        compliance: "compliant",
        last_sync: OffsetDateTime::now_utc() - time::Duration::minutes(20),
    }));
    let (base, ca_pem, _stop) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let tls = postern_broker::server::tls_config(
            vec![cert.cert.der().to_vec()],
            cert.signing_key.serialize_der(),
        )
        .unwrap();
        let app = Router::new()
            .route("/contoso.onmicrosoft.com/oauth2/v2.0/token", post(token))
            .route(
                "/v1.0/deviceManagement/managedDevices",
                get(managed_devices),
            )
            .with_state(Arc::clone(&graph));
        let (stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(postern_broker::server::serve_tls(
            listener,
            Arc::new(tls),
            app,
            rx,
        ));
        (base, cert.cert.pem(), stop)
    });
    std::fs::write(dir.path().join("graph-ca.pem"), ca_pem).unwrap();
    std::fs::write(dir.path().join("intune.secret"), format!("{SECRET}\n")).unwrap();
    let d = dir.path().display();
    let config = format!(
        r#"
[[connectors]]
name = "intune"
kind = "intune"
tenant_id = "contoso.onmicrosoft.com"
client_id = "00000000-0000-0000-0000-00000000c11e"
client_secret_file = "{d}/intune.secret"
login_url = "{base}"
graph_url = "{base}"
ca_file = "{d}/graph-ca.pem"
interval_seconds = 3600
"#
    );
    let broker = Broker::start_with(&dir.path().join("data"), &config).unwrap();
    let http = broker.client().unwrap();
    rt.block_on(async {
        // the first sync runs at start
        let mut status = Value::Null;
        for _ in 0..100 {
            let (s, v) = get_json(
                &http,
                ADMIN_TOKEN,
                &format!("{}/v1/admin/connectors", broker.https),
            )
            .await;
            assert_eq!(s, 200, "{v}");
            status = v[0].clone();
            if !status["last_success"].is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status["name"], "intune", "{status}");
        assert_eq!(status["kind"], "intune");
        assert_eq!(status["devices_seen"], 1, "{status}");
        assert_eq!(status["devices_registered"], 1, "{status}");
        assert!(status["last_error"].is_null(), "{status}");
        assert!(
            !status.to_string().contains(SECRET) && !status.to_string().contains("graph-token")
        );

        let (s, devices) = get_json(
            &http,
            ADMIN_TOKEN,
            &format!("{}/v1/admin/devices", broker.https),
        )
        .await;
        assert_eq!(s, 200);
        let device = devices
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["serial"] == "F2LE2EINTUNE")
            .unwrap_or_else(|| panic!("{devices}"));
        assert_eq!(device["platform"], "ios");
        assert_eq!(device["user"], "alice@example.com");
        let id = device["id"].as_str().unwrap().to_owned();
        let posture_url = format!("{}/v1/posture/devices/{id}", broker.https);
        let (s, p) = get_json(&http, ADMIN_TOKEN, &posture_url).await;
        assert_eq!(s, 200, "{p}");
        assert_eq!(p["assurance"], "managed", "{p}");
        assert_eq!(p["record"]["mdm"]["source"], "intune", "{p}");
        assert_eq!(p["record"]["mdm"]["storage_encrypted"], true, "{p}");

        // Intune finds the device non-compliant; a sync on demand carries it over
        {
            let mut g = graph.lock().unwrap();
            g.compliance = "noncompliant";
            g.last_sync = OffsetDateTime::now_utc() - time::Duration::minutes(1);
        }
        let r = http
            .post(format!("{}/v1/admin/connectors/intune/sync", broker.https))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (
                v["devices_changed"].as_u64(),
                v["devices_registered"].as_u64()
            ),
            (Some(1), Some(0)),
            "{v}"
        );
        let (_, p) = get_json(&http, ADMIN_TOKEN, &posture_url).await;
        assert_eq!(p["assurance"], "registered", "{p}");
        assert!(
            p["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == "mdm compliance non_compliant"),
            "{p}"
        );

        // another tenant's admin sees no connector and cannot run this one
        let r = http
            .post(format!("{}/v1/admin/tenants", broker.https))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "id": "other", "name": "Other" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = http
            .post(format!("{}/v1/admin/tokens", broker.https))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "tenant": "other", "role": "admin", "label": "other admin" }))
            .send()
            .await
            .unwrap();
        let other = r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let (s, v) = get_json(
            &http,
            &other,
            &format!("{}/v1/admin/connectors", broker.https),
        )
        .await;
        assert_eq!((s, v), (200, json!([])));
        let r = http
            .post(format!("{}/v1/admin/connectors/intune/sync", broker.https))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
    });
    broker.stop();
}
