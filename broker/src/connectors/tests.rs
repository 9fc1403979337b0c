#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The connectors against local HTTPS fakes of Graph, Jamf Pro and the Android Management API
//! (axum on 127.0.0.1 behind rustls, a self-signed certificate given as `ca_file`), answering
//! with the vendors' documented JSON shapes.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use tokio::sync::watch;

use super::client::{FailureKind, Sleeper};
use super::settings::ConnectorSettings;
use super::{Connector, ConnectorStatus};
use crate::domain::posture::Posture;
use crate::domain::posture::policy::Assurance;
use crate::domain::posture::record::{AssuranceReason, Compliance};
use crate::domain::{ManualClock, Principal};

const T0: OffsetDateTime = datetime!(2024-10-27 09:00:00 UTC);
const SECRET: &str = "s3cret-value-never-logged";

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

// ----- the fake vendor ----------------------------------------------------------------------

#[derive(Default)]
struct Script {
    secret: String,
    issued: u32,
    token_requests: u32,
    valid: HashSet<String>,
    devices: Vec<Value>,
    mobiles: Vec<Value>,
    compliance: HashMap<String, &'static str>,
    page_size: usize,
    throttle: Option<(usize, String)>,
    expire_after_page: Option<usize>,
    reject_all: bool,
    malformed_page: Option<usize>,
    list_requests: u32,
    jwt_key: Option<Vec<u8>>,
    foreign_next: bool,
    base: String,
}

type Shared = Arc<Mutex<Script>>;

struct Fake {
    base: String,
    script: Shared,
    ca_pem: String,
    _stop: watch::Sender<bool>,
}

fn query(raw: Option<&str>) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{}", raw.unwrap_or("")))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": code, "error_description": "refused" })),
    )
        .into_response()
}

async fn token(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let mut s = s.lock().unwrap();
    s.token_requests += 1;
    let f = query(Some(&body));
    match f.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            if f.get("client_secret") != Some(&s.secret) {
                return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
            }
        }
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            let jwt = f.get("assertion").cloned().unwrap_or_default();
            let parts: Vec<&str> = jwt.split('.').collect();
            let key = s.jwt_key.clone().unwrap();
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let ok = parts.len() == 3
                && ring::signature::UnparsedPublicKey::new(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    &key,
                )
                .verify(
                    format!("{}.{}", parts[0], parts[1]).as_bytes(),
                    &b64.decode(parts[2]).unwrap_or_default(),
                )
                .is_ok();
            let claims: Value = serde_json::from_slice(
                &b64.decode(parts.get(1).unwrap_or(&"")).unwrap_or_default(),
            )
            .unwrap_or(Value::Null);
            if !ok
                || claims["aud"] != json!(format!("{}/token", s.base))
                || claims["scope"] != json!(super::token::ANDROID_SCOPE)
                || claims["iss"] != json!("postern@example.iam.gserviceaccount.com")
            {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
        }
        None if headers.get("authorization").is_some() => {
            // Jamf's basic → bearer flow
            use base64::Engine as _;
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("api:{}", s.secret))
            );
            if headers["authorization"] != want.as_str() {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            s.issued += 1;
            let t = format!("tok-{}", s.issued);
            s.valid.insert(t.clone());
            return axum::Json(
                json!({ "token": t, "expires": ts(T0 + time::Duration::minutes(30)) }),
            )
            .into_response();
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
    s.issued += 1;
    let t = format!("tok-{}", s.issued);
    s.valid.insert(t.clone());
    axum::Json(json!({ "token_type": "Bearer", "expires_in": 3599, "access_token": t }))
        .into_response()
}

/// The checks before a listing page: bearer, scripted throttling and broken pages.
fn gate(s: &mut Script, headers: &HeaderMap, page: usize) -> Option<Response> {
    s.list_requests += 1;
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if s.reject_all || !s.valid.contains(bearer) {
        return Some(StatusCode::UNAUTHORIZED.into_response());
    }
    if s.throttle.as_ref().is_some_and(|(p, _)| *p == page) {
        let (_, after) = s.throttle.take().unwrap();
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", after)],
                "slow down",
            )
                .into_response(),
        );
    }
    if s.malformed_page == Some(page) {
        return Some(
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                "{\"value\": [{\"id\": ",
            )
                .into_response(),
        );
    }
    None
}

fn after_page(s: &mut Script, page: usize) {
    if s.expire_after_page == Some(page) {
        s.expire_after_page = None;
        s.valid.clear();
    }
}

fn slice(list: &[Value], page: usize, size: usize) -> (Vec<Value>, bool) {
    let start = (page * size).min(list.len());
    let end = (start + size).min(list.len());
    (list[start..end].to_vec(), end < list.len())
}

async fn graph(State(s): State<Shared>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let mut s = s.lock().unwrap();
    let q = query(q.as_deref());
    assert!(q["$select"].contains("complianceState"), "{q:?}");
    let page: usize = q.get("$skiptoken").map_or(0, |p| p.parse().unwrap());
    if let Some(r) = gate(&mut s, &headers, page) {
        return r;
    }
    let (value, more) = slice(&s.devices, page, s.page_size);
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/managedDevices",
        "value": value,
    });
    if more {
        let base = if s.foreign_next {
            "https://graph.example"
        } else {
            s.base.as_str()
        };
        body["@odata.nextLink"] = json!(format!(
            "{}/v1.0/deviceManagement/managedDevices?$select={}&$skiptoken={}",
            base,
            q["$select"],
            page + 1
        ));
    }
    after_page(&mut s, page);
    axum::Json(body).into_response()
}

async fn jamf_list(s: Shared, headers: HeaderMap, q: Option<String>, mobile: bool) -> Response {
    let mut s = s.lock().unwrap();
    let q = query(q.as_deref());
    let page: usize = q["page"].parse().unwrap();
    let size: usize = q["page-size"].parse().unwrap();
    if let Some(r) = gate(&mut s, &headers, page) {
        return r;
    }
    let list = if mobile { &s.mobiles } else { &s.devices };
    let (results, _) = slice(list, page, size);
    let body = json!({ "totalCount": list.len(), "results": results });
    after_page(&mut s, page);
    axum::Json(body).into_response()
}

async fn jamf_computers(State(s): State<Shared>, h: HeaderMap, RawQuery(q): RawQuery) -> Response {
    jamf_list(s, h, q, false).await
}

async fn jamf_mobiles(State(s): State<Shared>, h: HeaderMap, RawQuery(q): RawQuery) -> Response {
    jamf_list(s, h, q, true).await
}

async fn jamf_compliance(
    State(s): State<Shared>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    let s = s.lock().unwrap();
    match s.compliance.get(&format!("{kind}/{id}")) {
        // the shape of the vector api-device-compliance-information.json
        Some(state) => axum::Json(json!([{
            "deviceId": id,
            "applicable": true,
            "complianceState": state,
            "complianceVendor": "Microsoft Intune",
            "complianceVendorDeviceInformation": [{ "deviceIds": ["8f2c1c55-0000-4000-8000-000000000001"] }]
        }]))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn android_devices(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(ent): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    assert_eq!(ent, "LC00abcd");
    let mut s = s.lock().unwrap();
    let q = query(q.as_deref());
    let size: usize = q["pageSize"].parse().unwrap();
    let page: usize = q
        .get("pageToken")
        .map_or(0, |t| t.trim_start_matches('p').parse().unwrap());
    if let Some(r) = gate(&mut s, &headers, page) {
        return r;
    }
    let (devices, more) = slice(&s.devices, page, size);
    let mut body = json!({ "devices": devices });
    if more {
        body["nextPageToken"] = json!(format!("p{}", page + 1));
    }
    after_page(&mut s, page);
    axum::Json(body).into_response()
}

async fn fake(script: Script) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let tls = crate::server::tls_config(
        vec![cert.cert.der().to_vec()],
        cert.signing_key.serialize_der(),
    )
    .unwrap();
    let script = Arc::new(Mutex::new(Script {
        base: base.clone(),
        ..script
    }));
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/api/v1/oauth/token", post(token))
        .route("/api/v1/auth/token", post(token))
        .route("/token", post(token))
        .route("/v1.0/deviceManagement/managedDevices", get(graph))
        .route("/api/v1/computers-inventory", get(jamf_computers))
        .route("/api/v2/mobile-devices/detail", get(jamf_mobiles))
        .route(
            "/api/v1/conditional-access/device-compliance-information/{kind}/{id}",
            get(jamf_compliance),
        )
        .route("/v1/enterprises/{ent}/devices", get(android_devices))
        .with_state(Arc::clone(&script));
    let (stop, rx) = watch::channel(false);
    tokio::spawn(crate::server::serve_tls(listener, Arc::new(tls), app, rx));
    Fake {
        base,
        script,
        ca_pem: cert.cert.pem(),
        _stop: stop,
    }
}

// ----- the broker side ----------------------------------------------------------------------

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Duration>>);

impl Sleeper for Recorder {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.0.lock().unwrap().push(d);
        Box::pin(std::future::ready(()))
    }
}

struct Env {
    posture: Arc<Posture>,
    clock: Arc<ManualClock>,
    sleeper: Arc<Recorder>,
    dir: tempfile::TempDir,
    fake: Fake,
}

async fn env(script: Script) -> Env {
    let clock = Arc::new(ManualClock::new(T0));
    let domain = crate::app::ephemeral(
        Arc::new(crate::store::memory::MemoryStore::new()),
        clock.clone(),
    )
    .await
    .unwrap();
    let posture = crate::app::ephemeral_posture(&domain).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fake = fake(Script {
        secret: SECRET.into(),
        page_size: 2,
        ..script
    })
    .await;
    std::fs::write(dir.path().join("ca.pem"), &fake.ca_pem).unwrap();
    std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
    Env {
        posture,
        clock,
        sleeper: Arc::new(Recorder::default()),
        dir,
        fake,
    }
}

impl Env {
    fn connector(&self, vendor_toml: &str) -> Connector {
        let d = self.dir.path().display();
        let text = format!(
            "name = \"c1\"\nca_file = \"{d}/ca.pem\"\ninterval_seconds = 600\n{vendor_toml}"
        )
        .replace("{base}", &self.fake.base)
        .replace("{dir}", &d.to_string());
        let s: ConnectorSettings = toml::from_str(&text).unwrap();
        Connector::open(s, Arc::clone(&self.posture), self.sleeper.clone()).unwrap()
    }

    fn intune(&self) -> Connector {
        self.connector(
            "kind = \"intune\"\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"app-1\"\n\
             client_secret_file = \"{dir}/secret\"\nlogin_url = \"{base}\"\ngraph_url = \"{base}\"\n",
        )
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.fake.script.lock().unwrap()
    }

    /// The assurance and reasons of the device with `serial`.
    fn assessed(&self, serial: &str) -> (Assurance, Vec<AssuranceReason>) {
        let d = self
            .posture
            .domain()
            .find_device("default", serial)
            .unwrap()
            .unwrap_or_else(|| panic!("{serial} not registered"));
        let (_, a) = self
            .posture
            .device_posture(&Principal::system(), None, &d.id)
            .unwrap();
        (a.assurance, a.reasons)
    }

    fn inventory(&self) -> usize {
        self.posture
            .domain()
            .devices(&Principal::system(), None, None, 1000)
            .unwrap()
            .len()
    }
}

/// A Graph managedDevice with the field names of the vector `managedDevice.example.json`.
fn managed_device(i: usize, compliance: &str, last_sync: OffsetDateTime) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.managedDevice",
        "id": format!("705c034c-0000-0000-0000-{i:012}"),
        "userPrincipalName": format!("user{i}@example.com"),
        "operatingSystem": "iOS",
        "osVersion": "18.1",
        "complianceState": compliance,
        "managementState": "managed",
        "lastSyncDateTime": ts(last_sync),
        "enrolledDateTime": "2024-10-01T12:00:00Z",
        "isEncrypted": true,
        "jailBroken": "False",
        "serialNumber": format!("SER{i:04}"),
        "imei": "",
        "model": "iPhone 15",
    })
}

fn intune_fleet(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| managed_device(i, "compliant", T0 - time::Duration::hours(1)))
        .collect()
}

fn ok(s: &ConnectorStatus) {
    assert!(s.state.last_error.is_none(), "{s:?}");
}

// ----- tests --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intune_follows_paging_registers_and_assesses() {
    let e = env(Script {
        devices: intune_fleet(7),
        ..Script::default()
    })
    .await;
    let c = e.intune();
    let s = c.run_once().await;
    ok(&s);
    assert_eq!(e.script().list_requests, 4, "7 devices in pages of 2");
    assert_eq!(s.state.devices_seen, 7);
    assert_eq!(s.state.devices_registered, 7);
    assert_eq!(s.state.last_success, Some(T0));
    let next = s.state.next_run.unwrap();
    assert!(next >= T0 + time::Duration::seconds(540) && next <= T0 + time::Duration::seconds(660));
    assert_eq!(e.inventory(), 7);
    for i in 0..7 {
        assert_eq!(e.assessed(&format!("SER{i:04}")).0, Assurance::Managed);
    }
    // a second sync of the same data applies nothing and registers nothing
    let feed_before = e.posture.feed().size("default");
    let s = c.run_once().await;
    ok(&s);
    assert_eq!(
        (s.state.devices_changed, s.state.devices_registered),
        (0, 0)
    );
    assert_eq!(e.posture.feed().size("default"), feed_before);
    assert_eq!(
        e.script().token_requests,
        1,
        "the token is reused until it expires"
    );

    // device 3 becomes non-compliant at its next check-in; device 6 leaves Intune
    e.clock.advance(time::Duration::minutes(10));
    {
        let mut s = e.script();
        s.devices[3] = managed_device(3, "noncompliant", T0 + time::Duration::minutes(5));
        s.devices.pop();
    }
    let s = c.run_once().await;
    ok(&s);
    assert_eq!((s.state.devices_changed, s.state.devices_gone), (1, 1));
    let (level, reasons) = e.assessed("SER0003");
    assert_eq!(level, Assurance::Registered);
    assert!(
        reasons.contains(&AssuranceReason::NotCompliant {
            compliance: Compliance::NonCompliant
        }),
        "{reasons:?}"
    );
    let (level, reasons) = e.assessed("SER0006");
    assert_eq!(level, Assurance::Registered);
    assert!(
        reasons.contains(&AssuranceReason::NotEnrolled),
        "{reasons:?}"
    );
    assert_eq!(e.assessed("SER0002").0, Assurance::Managed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_retry_after_is_waited_out_and_a_long_one_ends_the_sync() {
    let e = env(Script {
        devices: intune_fleet(5),
        throttle: Some((1, "7".into())),
        ..Script::default()
    })
    .await;
    let c = e.intune();
    let s = c.run_once().await;
    ok(&s);
    assert_eq!(s.state.devices_seen, 5);
    assert_eq!(*e.sleeper.0.lock().unwrap(), vec![Duration::from_secs(7)]);

    // an HTTP-date ten minutes ahead: longer than max_retry_after_seconds (120)
    e.script().throttle = Some((0, "Sun, 27 Oct 2024 09:10:00 GMT".into()));
    let s = c.run_once().await;
    let err = s.state.last_error.as_ref().unwrap();
    assert_eq!(err.kind, FailureKind::Throttled);
    assert!(
        err.message.contains("429 with Retry-After 600s"),
        "{}",
        err.message
    );
    assert_eq!(
        e.sleeper.0.lock().unwrap().len(),
        1,
        "no wait within the sync"
    );
    assert!(s.state.next_run.unwrap() >= T0 + time::Duration::seconds(600));
    assert_eq!(s.state.last_success, Some(T0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_mid_sync_is_refreshed_once() {
    let e = env(Script {
        devices: intune_fleet(6),
        expire_after_page: Some(0),
        ..Script::default()
    })
    .await;
    let c = e.intune();
    let s = c.run_once().await;
    ok(&s);
    assert_eq!(s.state.devices_seen, 6);
    assert_eq!(e.script().token_requests, 2);
    assert_eq!(e.script().list_requests, 4, "3 pages and the refused one");

    // a token the API keeps refusing: one refresh, then the sync fails
    e.script().reject_all = true;
    let s = c.run_once().await;
    let err = s.state.last_error.as_ref().unwrap();
    assert_eq!(err.kind, FailureKind::Unauthorized);
    assert_eq!(
        err.message,
        "/v1.0/deviceManagement/managedDevices answered 401"
    );
    assert_eq!(e.script().token_requests, 3);
    assert_eq!(s.state.consecutive_failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_secret_shows_in_the_status_and_stores_nothing() {
    let e = env(Script {
        devices: intune_fleet(3),
        ..Script::default()
    })
    .await;
    std::fs::write(e.dir.path().join("secret"), "wrong-secret").unwrap();
    let c = e.intune();
    let s = c.run_once().await;
    let err = s.state.last_error.clone().unwrap();
    assert_eq!(err.kind, FailureKind::Auth);
    assert_eq!(
        err.message,
        "token endpoint /contoso.onmicrosoft.com/oauth2/v2.0/token answered 401 (invalid_client)"
    );
    assert_eq!(s.state.last_success, None);
    assert_eq!(e.inventory(), 0);
    assert_eq!(e.script().list_requests, 0);
    // backoff: base 30 s, half of it random
    let wait = s.state.next_run.unwrap() - T0;
    assert!(
        wait >= time::Duration::seconds(15) && wait <= time::Duration::seconds(30),
        "{wait}"
    );
    let shown = serde_json::to_string(&s).unwrap();
    assert!(
        !shown.contains("wrong-secret") && !shown.contains("tok-"),
        "{shown}"
    );
    // the second failure waits longer
    let s = c.run_once().await;
    assert_eq!(s.state.consecutive_failures, 2);
    let wait = s.state.next_run.unwrap() - T0;
    assert!(
        wait >= time::Duration::seconds(30) && wait <= time::Duration::seconds(60),
        "{wait}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_recorded_and_loses_nothing() {
    let e = env(Script {
        devices: intune_fleet(6),
        ..Script::default()
    })
    .await;
    let c = e.intune();
    ok(&c.run_once().await);
    e.clock.advance(time::Duration::minutes(15));
    {
        let mut s = e.script();
        s.malformed_page = Some(1);
        s.devices.pop();
    }
    let s = c.run_once().await;
    let err = s.state.last_error.as_ref().unwrap();
    assert_eq!(err.kind, FailureKind::Malformed);
    assert!(
        err.message
            .starts_with("/v1.0/deviceManagement/managedDevices answered JSON that does not fit"),
        "{}",
        err.message
    );
    assert_eq!(s.state.last_success, Some(T0), "the last success is kept");
    assert_eq!(
        s.state.devices_seen, 6,
        "the last complete sync's count is kept"
    );
    // the device missing from the broken listing is not unenrolled
    assert_eq!(e.assessed("SER0005").0, Assurance::Managed);
    assert_eq!(e.inventory(), 6);
    // once the API is whole again the sync completes and the missing device leaves
    e.script().malformed_page = None;
    let s = c.run_once().await;
    ok(&s);
    assert_eq!(s.state.devices_gone, 1);
    assert_eq!(e.assessed("SER0005").0, Assurance::Registered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_registration_only_known_devices_are_updated() {
    let e = env(Script {
        devices: intune_fleet(3),
        ..Script::default()
    })
    .await;
    let d = e
        .posture
        .domain()
        .register_device(
            &Principal::system(),
            crate::domain::devices::NewDevice {
                serial: Some("SER0001".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    e.posture
        .device_registered(&Principal::system(), &d)
        .await
        .unwrap();
    let c = e.connector(
        "kind = \"intune\"\nregister_devices = false\ntenant_id = \"t\"\nclient_id = \"a\"\n\
         client_secret_file = \"{dir}/secret\"\nlogin_url = \"{base}\"\ngraph_url = \"{base}\"\n",
    );
    let s = c.run_once().await;
    ok(&s);
    assert_eq!(
        (
            s.state.devices_seen,
            s.state.devices_registered,
            s.state.devices_unmatched
        ),
        (3, 0, 2)
    );
    assert_eq!(e.inventory(), 1);
    assert_eq!(e.assessed("SER0001").0, Assurance::Managed);
    let (rec, _) = e
        .posture
        .device_posture(&Principal::system(), None, &d.id)
        .unwrap();
    assert_eq!(rec.user.as_deref(), Some("user1@example.com"));
    assert_eq!(
        rec.identifiers.mdm_id.as_deref(),
        Some("705c034c-0000-0000-0000-000000000001")
    );
}

fn computer(i: usize) -> Value {
    json!({
        "id": i.to_string(),
        "udid": format!("UDID-{i}"),
        "general": {
            "name": format!("mac-{i}"),
            "lastContactTime": ts(T0 - time::Duration::hours(2)),
            "lastEnrolledDate": "2024-09-01T10:00:00Z",
            "remoteManagement": { "managed": true }
        },
        "hardware": { "serialNumber": format!("C02{i:05}"), "model": "MacBook Pro" },
        "operatingSystem": { "name": "macOS", "version": "15.1", "fileVault2Status": "ALL_ENCRYPTED" },
        "userAndLocation": { "username": format!("u{i}"), "email": format!("u{i}@example.com") }
    })
}

fn mobile(i: usize, jailbroken: bool) -> Value {
    json!({
        "mobileDeviceId": i.to_string(),
        "deviceType": "iOS",
        "general": {
            "udid": format!("MUDID-{i}"),
            "osVersion": "18.1",
            "lastInventoryUpdateDate": ts(T0 - time::Duration::hours(3)),
            "lastEnrolledDate": "2024-09-01T10:00:00Z",
            "managed": true
        },
        "hardware": { "serialNumber": format!("DX{i:05}"), "model": "iPhone 15" },
        "security": { "dataProtected": true, "jailBreakDetected": jailbroken },
        "userAndLocation": { "username": format!("m{i}") }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jamf_reads_computers_mobile_devices_and_compliance() {
    let mut compliance = HashMap::new();
    for i in 1..=5 {
        compliance.insert(format!("computer/{i}"), "COMPLIANT");
    }
    compliance.insert("computer/4".into(), "NON_COMPLIANT");
    compliance.insert("mobile/1".into(), "COMPLIANT");
    compliance.insert("mobile/2".into(), "COMPLIANT");
    let e = env(Script {
        devices: (1..=5).map(computer).collect(),
        mobiles: vec![mobile(1, false), mobile(2, true)],
        compliance,
        expire_after_page: Some(1),
        ..Script::default()
    })
    .await;
    let c = e.connector(
        "kind = \"jamf\"\nurl = \"{base}\"\nclient_id = \"api-client\"\n\
         client_secret_file = \"{dir}/secret\"\npage_size = 2\n",
    );
    let s = c.run_once().await;
    ok(&s);
    assert_eq!(s.state.devices_seen, 7);
    assert_eq!(
        e.script().token_requests,
        2,
        "the token expired after a page"
    );
    assert_eq!(e.assessed("C0200001").0, Assurance::Managed);
    let (level, reasons) = e.assessed("C0200004");
    assert_eq!(level, Assurance::Registered);
    assert!(reasons.contains(&AssuranceReason::NotCompliant {
        compliance: Compliance::NonCompliant
    }));
    assert_eq!(e.assessed("DX00001").0, Assurance::Managed);
    let (level, reasons) = e.assessed("DX00002");
    assert_eq!(level, Assurance::Registered);
    assert!(
        reasons.contains(&AssuranceReason::Jailbroken),
        "{reasons:?}"
    );
    // matched by UDID too: the registered device carries it
    let d = e
        .posture
        .domain()
        .find_device("default", "UDID-3")
        .unwrap()
        .unwrap();
    assert_eq!(d.serial.as_deref(), Some("C0200003"));
    assert_eq!(d.platform.as_deref(), Some("macos"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jamf_basic_token_flow() {
    let e = env(Script {
        devices: vec![computer(1)],
        ..Script::default()
    })
    .await;
    let c = e.connector(
        "kind = \"jamf\"\nurl = \"{base}\"\nusername = \"api\"\npassword_file = \"{dir}/secret\"\n\
         mobile_devices = false\ncompliance = false\n",
    );
    let s = c.run_once().await;
    ok(&s);
    assert_eq!(s.state.devices_seen, 1);
    // compliance not read: enrolled and checked in, but not known compliant
    let (level, reasons) = e.assessed("C0200001");
    assert_eq!(level, Assurance::Registered);
    assert!(reasons.contains(&AssuranceReason::NotCompliant {
        compliance: Compliance::Unknown
    }));
}

fn service_account(dir: &std::path::Path, token_uri: &str) -> Vec<u8> {
    use rsa::pkcs8::EncodePrivateKey as _;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let der = key.to_pkcs8_der().unwrap();
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_bytes().to_vec()));
    let file = json!({
        "type": "service_account",
        "project_id": "example",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "postern@example.iam.gserviceaccount.com",
        "token_uri": token_uri,
    });
    std::fs::write(dir.join("sa.json"), file.to_string()).unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.as_bytes()).unwrap();
    use ring::signature::KeyPair as _;
    pair.public_key().as_ref().to_vec()
}

/// An AMAPI device with the field names of the vector's `_decoded_data_example`.
fn android_device(i: usize, compliant: bool, posture: &str) -> Value {
    json!({
        "name": format!("enterprises/LC00abcd/devices/3a1b2c3d{i:04}"),
        "managementMode": "DEVICE_OWNER",
        "state": "ACTIVE",
        "appliedState": "ACTIVE",
        "ownership": "COMPANY_OWNED",
        "policyCompliant": compliant,
        "nonComplianceDetails": if compliant { json!([]) } else { json!([{
            "settingName": "passwordPolicies",
            "nonComplianceReason": "USER_ACTION",
            "specificNonComplianceReason": "PASSWORD_POLICIES_PASSWORD_NOT_SUFFICIENT"
        }]) },
        "securityPosture": { "devicePosture": posture },
        "enrollmentTime": "2024-10-01T12:00:00Z",
        "lastStatusReportTime": ts(T0 - time::Duration::minutes(30)),
        "hardwareInfo": { "brand": "google", "model": "Pixel 8", "serialNumber": format!("3A1B{i:04}") },
        "softwareInfo": { "androidVersion": "15", "securityPatchLevel": "2024-10-05" },
        "deviceSettings": { "isEncrypted": true },
        "userName": format!("enterprises/LC00abcd/users/{i}")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn android_management_signs_a_jwt_and_follows_page_tokens() {
    let mut devices: Vec<Value> = (0..5).map(|i| android_device(i, true, "SECURE")).collect();
    devices[1] = android_device(1, false, "SECURE");
    devices[2] = android_device(2, true, "POTENTIALLY_COMPROMISED");
    let e = env(Script {
        devices,
        ..Script::default()
    })
    .await;
    let key = service_account(e.dir.path(), &format!("{}/token", e.fake.base));
    e.script().jwt_key = Some(key);
    let c = e.connector(
        "kind = \"android-management\"\nenterprise = \"enterprises/LC00abcd\"\n\
         key_file = \"{dir}/sa.json\"\napi_url = \"{base}\"\n\npage_size = 2\n",
    );
    let s = c.run_once().await;
    ok(&s);
    assert_eq!(s.state.devices_seen, 5);
    assert_eq!(e.script().list_requests, 3);
    assert_eq!(e.assessed("3A1B0000").0, Assurance::Managed);
    let (level, reasons) = e.assessed("3A1B0001");
    assert_eq!(level, Assurance::Registered);
    assert!(reasons.contains(&AssuranceReason::NotCompliant {
        compliance: Compliance::NonCompliant
    }));
    assert!(
        e.assessed("3A1B0002")
            .1
            .contains(&AssuranceReason::Jailbroken)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn android_with_a_key_the_token_endpoint_refuses() {
    let e = env(Script {
        devices: vec![android_device(0, true, "SECURE")],
        ..Script::default()
    })
    .await;
    let _ = service_account(e.dir.path(), &format!("{}/token", e.fake.base));
    // the endpoint knows another key
    let elsewhere = tempfile::tempdir().unwrap();
    let other = service_account(elsewhere.path(), "unused");
    e.script().jwt_key = Some(other);
    let c = e.connector(
        "kind = \"android-management\"\nenterprise = \"LC00abcd\"\n\
         key_file = \"{dir}/sa.json\"\napi_url = \"{base}\"\n",
    );
    let s = c.run_once().await;
    let err = s.state.last_error.as_ref().unwrap();
    assert_eq!(err.kind, FailureKind::Auth);
    assert_eq!(
        err.message,
        "token endpoint /token answered 400 (invalid_grant)"
    );
    assert_eq!(e.inventory(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_to_another_origin_is_refused() {
    let e = env(Script {
        devices: intune_fleet(3),
        foreign_next: true,
        ..Script::default()
    })
    .await;
    let s = e.intune().run_once().await;
    let err = s.state.last_error.as_ref().unwrap();
    assert_eq!(err.kind, FailureKind::Malformed);
    assert_eq!(
        err.message,
        "a link points to another origin (https://graph.example)"
    );
    assert_eq!(
        e.script().list_requests,
        1,
        "the token never left for the other origin"
    );
}

#[test]
fn settings_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "x").unwrap();
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    let d = dir.path().display();
    let check = |toml: &str, key: &str| {
        let text = format!("[[connectors]]\nname = \"c\"\n{toml}").replace("{dir}", &d.to_string());
        let e = crate::config::Settings::from_toml(&text)
            .and_then(|s| s.validate().map(|()| s))
            .unwrap_err();
        assert_eq!(e.key, key, "{toml}: {e}");
        e.message
    };
    let intune = "kind = \"intune\"\ntenant_id = \"t\"\nclient_id = \"a\"\n";
    check(
        &format!("{intune}client_secret_file = \"{{dir}}/missing\"\n"),
        "connectors[0].client_secret_file",
    );
    let m = check(
        &format!("{intune}client_secret_file = \"{{dir}}/empty\"\n"),
        "connectors[0].client_secret_file",
    );
    assert!(m.ends_with("is empty"), "{m}");
    check(
        &format!("{intune}client_secret_file = \"{{dir}}/secret\"\ninterval_seconds = 1\n"),
        "connectors[0].interval_seconds",
    );
    check(
        &format!("{intune}client_secret_file = \"{{dir}}/secret\"\ngraph_url = \"ftp://x\"\n"),
        "connectors[0].graph_url",
    );
    check(
        "kind = \"jamf\"\nurl = \"https://j\"\nclient_id = \"a\"\n",
        "connectors[0].client_id",
    );
    check(
        "kind = \"android-management\"\nenterprise = \"LC0\"\nkey_file = \"{dir}/secret\"\n",
        "connectors[0].key_file",
    );
    check(
        &format!("{intune}client_secret_file = \"{{dir}}/secret\"\ntenant = \"NO\"\n"),
        "connectors[0].tenant",
    );
    // a secret written in the TOML is refused, not read
    let text = format!("[[connectors]]\nname = \"c\"\n{intune}client_secret = \"inline\"\n");
    assert!(crate::config::Settings::from_toml(&text).is_err());
    // two connectors with one name
    let one =
        format!("[[connectors]]\nname = \"c\"\n{intune}client_secret_file = \"{d}/secret\"\n");
    let e = crate::config::Settings::from_toml(&format!("{one}{one}"))
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(e.key, "connectors[1].name");
}

/// The vendors' example payloads from the shared vectors, through the real mapping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_payloads_become_posture() {
    let root = std::env::var("POSTERN_VECTORS").map_or_else(
        |_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
        std::path::PathBuf::from,
    );
    let Ok(intune) = std::fs::read(root.join("mdm/intune/managedDevice.example.json")) else {
        println!(
            "skipped: no vectors at {} (set POSTERN_VECTORS)",
            root.display()
        );
        return;
    };
    let mut device: Value = serde_json::from_slice(&intune).unwrap();
    // the example last synced on 2024-10-27T08:15:00Z; T0 is 45 minutes later
    assert_eq!(device["lastSyncDateTime"], "2024-10-27T08:15:00Z");
    device
        .as_object_mut()
        .unwrap()
        .retain(|k, _| super::intune::SELECT.split(',').any(|f| f == k));
    let e = env(Script {
        devices: vec![device],
        ..Script::default()
    })
    .await;
    ok(&e.intune().run_once().await);
    assert_eq!(e.assessed("F2LXXXXXXXXX").0, Assurance::Managed);
    let d = e
        .posture
        .domain()
        .find_device("default", "F2LXXXXXXXXX")
        .unwrap()
        .unwrap();
    assert_eq!(d.user.as_deref(), Some("alice@example.com"));
    assert_eq!(d.imei, None, "an empty imei is no identifier");

    let amapi: Value = serde_json::from_slice(
        &std::fs::read(root.join("mdm/android/pubsub-STATUS_REPORT.example.json")).unwrap(),
    )
    .unwrap();
    let dev = amapi["_decoded_data_example"].clone();
    let e = env(Script {
        devices: vec![dev],
        ..Script::default()
    })
    .await;
    let key = service_account(e.dir.path(), &format!("{}/token", e.fake.base));
    e.script().jwt_key = Some(key);
    let c = e.connector(
        "kind = \"android-management\"\nenterprise = \"LC00abcd\"\nkey_file = \"{dir}/sa.json\"\napi_url = \"{base}\"\n",
    );
    ok(&c.run_once().await);
    let (level, reasons) = e.assessed("3A1B2C3D4E5F");
    assert_eq!(level, Assurance::Registered);
    assert!(reasons.contains(&AssuranceReason::NotCompliant {
        compliance: Compliance::NonCompliant
    }));
    assert!(
        reasons.contains(&AssuranceReason::Jailbroken),
        "AT_RISK: {reasons:?}"
    );
}
