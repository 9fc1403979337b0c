//! MDM webhooks through the router under a manual clock: registrations, the real NanoMDM and
//! MicroMDM bodies (read from the shared vectors), Jamf Pro and Workspace ONE events, every
//! refusal (credentials, body, ids, size), replays and reordering, secret rotation, and
//! `DevicePropertiesAttestation` verified with the same Apple roots ACME uses.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use tower::ServiceExt as _;

use postern_broker::app;
use postern_broker::domain::acme::provisioner::RootsMode;
use postern_broker::domain::acme::{Acme, AcmeSettings, ProvisionerSettings};
use postern_broker::domain::posture::Posture;
use postern_broker::domain::{Domain, ManualClock, Principal};
use postern_broker::http::{AppState, router};
use postern_broker::model::Role;
use postern_broker::store::memory::MemoryStore;
use postern_broker::store::{DocKind, Store};
use postern_certs::attestation::testing::apple::{AppleStatement, AppleTestAuthority};
use postern_certs::attestation::{AttestationObject, Format};

const ADMIN: &str = "test-admin-token-0123456789";
const MAX_BODY: usize = 64 * 1024;

struct Harness {
    domain: Arc<Domain>,
    posture: Arc<Posture>,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    app: axum::Router,
    apple: AppleTestAuthority,
    _dir: tempfile::TempDir,
}

fn vectors() -> Option<PathBuf> {
    let dir = match std::env::var_os("POSTERN_VECTORS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: the test vectors are not at {} (set POSTERN_VECTORS)",
            dir.display()
        );
        None
    }
}

fn vector(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

async fn harness() -> Harness {
    harness_at(OffsetDateTime::now_utc()).await
}

async fn harness_at(now: OffsetDateTime) -> Harness {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(now));
    let domain = app::ephemeral(Arc::clone(&store), clock.clone())
        .await
        .unwrap();
    domain.ensure_bootstrap_token(Some(ADMIN)).await.unwrap();
    // the `devices` provisioner trusts the test Apple root besides Apple's: the webhook
    // verifies with the same roots
    let apple = AppleTestAuthority::new();
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("apple.pem");
    std::fs::write(&roots, apple.root_pem()).unwrap();
    let mut provisioners = ProvisionerSettings::defaults();
    provisioners[0].roots.insert(Format::Apple, roots);
    provisioners[0].roots_mode = RootsMode::Extend;
    let acme = Arc::new(
        Acme::new(
            Arc::clone(&domain),
            AcmeSettings {
                provisioners,
                ..AcmeSettings::default()
            },
        )
        .unwrap(),
    );
    let posture = app::ephemeral_posture(&domain).unwrap();
    let app = router(
        AppState::new(Arc::clone(&domain), acme, Arc::clone(&posture)),
        MAX_BODY,
    );
    Harness {
        domain,
        posture,
        store,
        clock,
        app,
        apple,
        _dir: dir,
    }
}

type Reply = (StatusCode, String, Value);

fn sign(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    STANDARD.encode(ring::hmac::sign(&key, body).as_ref())
}

fn basic(secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("postern:{secret}")))
}

impl Harness {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "broker.test")
            .header(header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            ct,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn admin(&self, method: &str, uri: &str, token: &str, body: Value) -> Reply {
        let body = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        self.call(
            method,
            uri,
            &[("authorization", format!("Bearer {token}"))],
            body,
        )
        .await
    }

    /// Registers a webhook; its id and secret.
    async fn webhook(&self, kind: &str) -> (String, String) {
        let r = self
            .admin(
                "POST",
                "/v1/admin/webhooks",
                ADMIN,
                json!({"kind": kind, "name": format!("{kind} fleet")}),
            )
            .await;
        assert_eq!(r.0, StatusCode::CREATED, "{}", r.2);
        (
            r.2["id"].as_str().unwrap().to_owned(),
            r.2["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// A NanoMDM delivery, signed with `secret`.
    async fn nano(&self, id: &str, secret: &str, body: &[u8]) -> Reply {
        self.call(
            "POST",
            &format!("/webhooks/{id}"),
            &[("x-hmac-signature", sign(secret, body))],
            body.to_vec(),
        )
        .await
    }

    /// A delivery with the secret as the Basic password.
    async fn basic(&self, id: &str, secret: &str, body: &[u8]) -> Reply {
        self.call(
            "POST",
            &format!("/webhooks/{id}"),
            &[("authorization", basic(secret))],
            body.to_vec(),
        )
        .await
    }

    fn audit_len(&self) -> usize {
        self.store.audit_entries(1, 1_000_000).unwrap().len()
    }

    fn devices(&self) -> usize {
        self.store
            .docs(DocKind::Device, "", usize::MAX)
            .unwrap()
            .len()
    }

    fn record(&self, device: &str) -> postern_broker::domain::posture::record::PostureRecord {
        self.posture.stored("default", device).unwrap().unwrap()
    }

    fn device_by(&self, identifier: &str) -> postern_broker::model::Device {
        self.domain
            .find_device("default", identifier)
            .unwrap()
            .unwrap()
    }
}

fn assert_problem(r: &Reply, status: StatusCode, kind: &str, detail: &str) {
    assert_eq!(r.0, status, "body: {}", r.2);
    assert_eq!(r.1, "application/problem+json");
    assert_eq!(
        r.2["type"],
        format!("urn:postern:problem:{kind}"),
        "{}",
        r.2
    );
    let d = r.2["detail"].as_str().unwrap_or_default();
    assert!(
        d.contains(detail),
        "detail {d:?} does not contain {detail:?}"
    );
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A NanoMDM-shaped body around a property list of `entries`.
fn apple_body(topic: &str, entries: &str, at: OffsetDateTime) -> Vec<u8> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST \
         1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist \
         version=\"1.0\"><dict>{entries}</dict></plist>"
    );
    let inner = if topic == "mdm.Connect" {
        "acknowledge_event"
    } else {
        "checkin_event"
    };
    serde_json::to_vec(&json!({
        "topic": topic,
        "created_at": rfc3339(at),
        inner: { "raw_payload": STANDARD.encode(xml), "status": "Acknowledged" },
    }))
    .unwrap()
}

fn authenticate(serial: &str, udid: &str, at: OffsetDateTime) -> Vec<u8> {
    apple_body(
        "mdm.Authenticate",
        &format!(
            "<key>MessageType</key><string>Authenticate</string><key>UDID</key>\
             <string>{udid}</string><key>SerialNumber</key><string>{serial}</string>\
             <key>ProductName</key><string>Mac14,2</string><key>OSVersion</key>\
             <string>15.5</string>"
        ),
        at,
    )
}

fn device_information(udid: &str, chain: &[Vec<u8>], at: OffsetDateTime) -> Vec<u8> {
    let certs: String = chain
        .iter()
        .map(|c| format!("<data>{}</data>", STANDARD.encode(c)))
        .collect();
    apple_body(
        "mdm.Connect",
        &format!(
            "<key>UDID</key><string>{udid}</string><key>Status</key><string>Acknowledged</string>\
             <key>CommandUUID</key><string>c-1</string><key>QueryResponses</key><dict>\
             <key>OSVersion</key><string>15.5</string><key>IsSupervised</key><true/>\
             <key>DevicePropertiesAttestation</key><array>{certs}</array></dict>"
        ),
        at,
    )
}

#[tokio::test]
async fn registrations_are_admin_only_shown_once_and_per_tenant() {
    let h = harness().await;
    let r = h
        .admin(
            "POST",
            "/v1/admin/webhooks",
            ADMIN,
            json!({"kind": "jamf", "name": "Jamf", "register_devices": false}),
        )
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.2);
    let id = r.2["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wh_"));
    assert!(r.2["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(r.2["url"], format!("https://broker.test/webhooks/{id}"));
    assert_eq!(r.2["register_devices"], false);
    // the list holds no secret
    let l = h
        .admin("GET", "/v1/admin/webhooks", ADMIN, Value::Null)
        .await;
    assert_eq!(l.0, StatusCode::OK);
    assert_eq!(l.2.as_array().unwrap().len(), 1);
    assert!(!l.2.to_string().contains("whsec_"), "{}", l.2);
    // the secret is nowhere in the audit log
    let audit = serde_json::to_string(&h.store.audit_entries(1, 1000).unwrap()).unwrap();
    assert!(!audit.contains(r.2["secret"].as_str().unwrap()));
    assert!(audit.contains("webhook.create"));

    // an unknown kind, a missing name
    let bad = h
        .admin(
            "POST",
            "/v1/admin/webhooks",
            ADMIN,
            json!({"kind": "intune", "name": "x"}),
        )
        .await;
    assert_eq!(bad.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.2);
    let bad = h
        .admin(
            "POST",
            "/v1/admin/webhooks",
            ADMIN,
            json!({"kind": "jamf", "name": " "}),
        )
        .await;
    assert_problem(&bad, StatusCode::BAD_REQUEST, "malformed", "name must be");

    // an mdm token may not manage webhooks
    let mdm = h
        .domain
        .create_token(&Principal::cli(), None, Role::Mdm, "mdm")
        .await
        .unwrap()
        .token;
    let r = h
        .admin("GET", "/v1/admin/webhooks", &mdm, Value::Null)
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden", "admin required");

    // another tenant's admin sees none of them and cannot touch them
    h.domain
        .create_tenant(&Principal::cli(), "other", "Other")
        .await
        .unwrap();
    let other = h
        .domain
        .create_token(&Principal::cli(), Some("other"), Role::Admin, "admin")
        .await
        .unwrap()
        .token;
    let l = h
        .admin("GET", "/v1/admin/webhooks", &other, Value::Null)
        .await;
    assert_eq!(l.2, json!([]));
    for (m, uri) in [
        ("DELETE", format!("/v1/admin/webhooks/{id}")),
        ("POST", format!("/v1/admin/webhooks/{id}/rotate")),
    ] {
        let r = h.admin(m, &uri, &other, Value::Null).await;
        assert_problem(&r, StatusCode::NOT_FOUND, "not-found", "no webhook");
    }

    // deleted: deliveries are 404
    let r = h
        .admin(
            "DELETE",
            &format!("/v1/admin/webhooks/{id}"),
            ADMIN,
            Value::Null,
        )
        .await;
    assert_eq!(r.0, StatusCode::NO_CONTENT);
    let r = h
        .basic(&id, "whatever", br#"{"event":{},"webhook":{}}"#)
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not-found", "no webhook");
}

#[tokio::test]
async fn nanomdm_vectors_register_and_check_in_and_replays_change_nothing() {
    let Some(v) = vectors() else { return };
    let h = harness().await;
    let (id, secret) = h.webhook("nanomdm").await;
    let auth = vector(&v, "mdm/nanomdm/webhook-Authenticate.2.json");
    let r = h.nano(&id, &secret, &auth).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.2);
    assert_eq!(r.2["status"], "applied");
    assert_eq!(r.2["registered"], true);
    let dev = h.device_by("C02MT66KFLHH");
    assert_eq!(
        dev.udid.as_deref(),
        Some("66ADE930-5FDF-5EC4-8429-15640684C489")
    );
    assert_eq!(dev.platform.as_deref(), Some("macos"));
    assert_eq!(dev.model.as_deref(), Some("iMac14,2"));
    assert_eq!(r.2["device_id"], dev.id.as_str());

    // the DeviceInformation report is a check-in (its created_at is NanoMDM's zero time)
    let info = vector(&v, "mdm/nanomdm/webhook-DeviceInformation.1.json");
    let r = h.nano(&id, &secret, &info).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.2);
    assert_eq!(r.2["changed"], true);
    let rec = h.record(&dev.id);
    assert!(rec.mdm.enrolled);
    assert_eq!(rec.mdm.last_check_in.unwrap().year(), 1);

    // replays: 200, nothing stored
    let (audit, devices) = (h.audit_len(), h.devices());
    for body in [&auth, &info] {
        let r = h.nano(&id, &secret, body).await;
        assert_eq!(r.0, StatusCode::OK, "{}", r.2);
        assert_eq!(r.2["changed"], false);
        assert_eq!(r.2["registered"], false);
    }
    assert_eq!((h.audit_len(), h.devices()), (audit, devices));
}

#[tokio::test]
async fn micromdm_vectors_enroll_check_in_and_check_out_in_event_time_order() {
    let Some(v) = vectors() else { return };
    let h = harness().await;
    let (id, secret) = h.webhook("micromdm").await;
    let read = |n: &str| vector(&v, &format!("mdm/micromdm/webhook-mdm.{n}.json"));
    let r = h.basic(&id, &secret, &read("Authenticate")).await;
    assert_eq!(r.2["registered"], true, "{}", r.2);
    let dev = h.device_by("C04W00D3HTD0");
    assert_eq!(dev.platform.as_deref(), Some("macos"));
    // TokenUpdate with the secret as a bearer token
    let r = h
        .call(
            "POST",
            &format!("/webhooks/{id}"),
            &[("authorization", format!("Bearer {secret}"))],
            read("TokenUpdate"),
        )
        .await;
    assert_eq!(r.2["changed"], true, "{}", r.2);
    assert!(h.record(&dev.id).mdm.enrolled);
    // Connect, with the secret in its own header
    let r = h
        .call(
            "POST",
            &format!("/webhooks/{id}"),
            &[("x-postern-webhook-secret", secret.clone())],
            read("Connect"),
        )
        .await;
    assert_eq!(r.2["changed"], true, "{}", r.2);
    let r = h.basic(&id, &secret, &read("CheckOut")).await;
    assert_eq!(r.2["changed"], true, "{}", r.2);
    assert!(!h.record(&dev.id).mdm.enrolled);
    // the TokenUpdate again, now older than the CheckOut: nothing changes
    let audit = h.audit_len();
    let r = h.basic(&id, &secret, &read("TokenUpdate")).await;
    assert_eq!(r.0, StatusCode::OK);
    assert_eq!(r.2["changed"], false, "{}", r.2);
    assert!(!h.record(&dev.id).mdm.enrolled);
    assert_eq!(h.audit_len(), audit);
}

#[tokio::test]
async fn bad_credentials_are_401_and_store_nothing() {
    let Some(v) = vectors() else { return };
    let h = harness().await;
    let (nano, nano_secret) = h.webhook("nanomdm").await;
    let (micro, micro_secret) = h.webhook("micromdm").await;
    let body = vector(&v, "mdm/nanomdm/webhook-Authenticate.2.json");
    let before = (h.audit_len(), h.devices());
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (nano.as_str(), vec![], "X-Hmac-Signature is required"),
        // the secret itself is not enough for NanoMDM
        (
            nano.as_str(),
            vec![("authorization", basic(&nano_secret))],
            "X-Hmac-Signature is required",
        ),
        (
            nano.as_str(),
            vec![("x-hmac-signature", sign("another-key", &body))],
            "X-Hmac-Signature does not verify",
        ),
        (
            nano.as_str(),
            vec![("x-hmac-signature", sign(&nano_secret, b"another body"))],
            "X-Hmac-Signature does not verify",
        ),
        (
            nano.as_str(),
            vec![("x-hmac-signature", "not base64!".into())],
            "X-Hmac-Signature is not base64",
        ),
        (micro.as_str(), vec![], "the webhook secret is required"),
        (
            micro.as_str(),
            vec![("authorization", basic("wrong"))],
            "the webhook secret does not match",
        ),
        (
            micro.as_str(),
            vec![("authorization", format!("Bearer {nano_secret}"))],
            "the webhook secret does not match",
        ),
        (
            micro.as_str(),
            vec![("authorization", format!("Digest {micro_secret}"))],
            "Authorization must be Bearer or Basic",
        ),
    ];
    for (id, headers, detail) in cases {
        let r = h
            .call("POST", &format!("/webhooks/{id}"), &headers, body.clone())
            .await;
        assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized", detail);
    }
    assert_eq!((h.audit_len(), h.devices()), before);
}

#[tokio::test]
async fn malformed_bodies_are_400_with_the_reason() {
    let Some(v) = vectors() else { return };
    let h = harness().await;
    let (id, secret) = h.webhook("nanomdm").await;
    let good: Value =
        serde_json::from_slice(&vector(&v, "mdm/nanomdm/webhook-Authenticate.2.json")).unwrap();
    let with_payload = |raw: &str| {
        let mut b = good.clone();
        b["checkin_event"]["raw_payload"] = json!(raw);
        serde_json::to_vec(&b).unwrap()
    };
    let raw = good["checkin_event"]["raw_payload"].as_str().unwrap();
    let truncated = &raw[..raw.len() / 4 * 4 - 3];
    let mut future = good.clone();
    future["created_at"] = json!(rfc3339(h.clock_now() + Duration::hours(1)));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (with_payload(truncated), "raw_payload is not base64"),
        (
            with_payload(&STANDARD.encode("<plist><dict><key>UDID</key>")),
            "raw_payload is not a property list",
        ),
        (
            with_payload(&STANDARD.encode("<plist version=\"1.0\"><string>x</string></plist>")),
            "raw_payload is not a property list dictionary",
        ),
        (b"{not json".to_vec(), "not a webhook event"),
        (serde_json::to_vec(&future).unwrap(), "is in the future"),
    ];
    let before = (h.audit_len(), h.devices());
    for (body, detail) in cases {
        let r = h.nano(&id, &secret, &body).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "malformed", detail);
    }
    assert_eq!((h.audit_len(), h.devices()), before);
}

impl Harness {
    fn clock_now(&self) -> OffsetDateTime {
        use postern_broker::domain::Clock as _;
        self.clock.now()
    }
}

#[tokio::test]
async fn unknown_and_foreign_webhook_ids_and_oversized_bodies_are_refused() {
    let h = harness().await;
    let r = h.basic("wh_00000000000000000000", "x", b"{}").await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not-found", "no webhook");
    // a webhook of another tenant: its secret, not the caller's, decides
    h.domain
        .create_tenant(&Principal::cli(), "other", "Other")
        .await
        .unwrap();
    let r = h
        .admin(
            "POST",
            "/v1/admin/webhooks",
            ADMIN,
            json!({"kind": "jamf", "name": "theirs", "tenant": "other"}),
        )
        .await;
    assert_eq!(r.2["tenant"], "other", "{}", r.2);
    let theirs = r.2["id"].as_str().unwrap().to_owned();
    let (_, mine_secret) = h.webhook("jamf").await;
    let body = br#"{"event":{"serialNumber":"S1","udid":"U1","osVersion":"18.1"},
        "webhook":{"eventTimestamp":1730000000000,"id":1,"name":"x","webhookEvent":"MobileDeviceEnrolled"}}"#;
    let r = h.basic(&theirs, &mine_secret, body).await;
    assert_problem(
        &r,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the webhook secret does not match",
    );
    assert!(h.domain.find_device("other", "S1").unwrap().is_none());
    assert!(h.domain.find_device("default", "S1").unwrap().is_none());

    // 1 MiB is the limit for deliveries (the API's own limit is 64 KiB)
    let (id, secret) = h.webhook("micromdm").await;
    let big = vec![b' '; 1024 * 1024 + 1];
    let r = h.basic(&id, &secret, &big).await;
    assert_problem(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        "larger than 1048576 bytes",
    );
    // a body above the API's limit but within the webhook's is read (and is not an event)
    let mut padded = b"{\"topic\":\"mdm.Connect\"".to_vec();
    padded.extend(vec![b' '; 100 * 1024]);
    padded.extend(b"}");
    let r = h.basic(&id, &secret, &padded).await;
    assert_problem(
        &r,
        StatusCode::BAD_REQUEST,
        "malformed",
        "not a webhook event",
    );
}

#[tokio::test]
async fn jamf_events_enroll_and_an_older_check_in_changes_nothing() {
    let h = harness().await;
    let (id, secret) = h.webhook("jamf").await;
    let t0 = h.clock_now() - Duration::hours(3);
    let ms = |t: OffsetDateTime| t.unix_timestamp() * 1000;
    let enrolled = match vectors() {
        Some(v) => {
            let mut b: Value =
                serde_json::from_slice(&vector(&v, "mdm/jamf/webhook-MobileDeviceEnrolled.json"))
                    .unwrap();
            b["webhook"]["eventTimestamp"] = json!(ms(t0));
            b
        }
        None => {
            json!({"event": {"serialNumber": "F2LXXXXXXXXX", "udid": "00008110-000A1B2C3D4E5F60",
                "imei": "35 000000 000000 0", "jssID": 42, "model": "iPhone 15", "osVersion": "18.1",
                "username": "alice"},
            "webhook": {"eventTimestamp": ms(t0), "id": 7, "name": "x",
                "webhookEvent": "MobileDeviceEnrolled"}})
        }
    };
    let r = h
        .basic(&id, &secret, &serde_json::to_vec(&enrolled).unwrap())
        .await;
    assert_eq!(r.2["registered"], true, "{}", r.2);
    let dev = h.device_by("F2LXXXXXXXXX");
    assert_eq!(dev.imei.as_deref(), Some("350000000000000"));
    assert_eq!(dev.user.as_deref(), Some("alice"));
    assert_eq!(dev.platform.as_deref(), Some("ios"));
    let rec = h.record(&dev.id);
    assert!(rec.mdm.enrolled);
    assert_eq!(rec.identifiers.mdm_id.as_deref(), Some("42"));

    let check_in = |at: OffsetDateTime, os: &str| {
        serde_json::to_vec(
            &json!({"event": {"serialNumber": "F2LXXXXXXXXX", "osVersion": os},
            "webhook": {"eventTimestamp": ms(at), "id": 9, "name": "x",
                "webhookEvent": "MobileDeviceCheckIn"}}),
        )
        .unwrap()
    };
    let r = h
        .basic(&id, &secret, &check_in(t0 + Duration::hours(2), "18.2"))
        .await;
    assert_eq!(r.2["changed"], true, "{}", r.2);
    let r = h
        .basic(&id, &secret, &check_in(t0 + Duration::hours(1), "18.0"))
        .await;
    assert_eq!(r.0, StatusCode::OK);
    assert_eq!(r.2["changed"], false, "{}", r.2);
    assert_eq!(h.record(&dev.id).mdm.os_version.as_deref(), Some("18.2"));

    // a check-in of a device nobody enrolled registers nothing
    let r = h
        .basic(
            &id,
            &secret,
            br#"{"event":{"computer":{"serialNumber":"NOBODY","osVersion":"15.1"}},
            "webhook":{"eventTimestamp":1730000000000,"id":8,"name":"x","webhookEvent":"ComputerCheckIn"}}"#,
        )
        .await;
    assert_eq!(r.2["status"], "unknown_device", "{}", r.2);
    // an event that carries no posture
    let r = h
        .basic(
            &id,
            &secret,
            br#"{"event":{},"webhook":{"eventTimestamp":1,"id":1,"name":"x","webhookEvent":"JSSStartup"}}"#,
        )
        .await;
    assert_eq!(r.2["status"], "ignored", "{}", r.2);
    let r = h.basic(&id, &secret, br#"{"event":{}}"#).await;
    assert_problem(
        &r,
        StatusCode::BAD_REQUEST,
        "malformed",
        "not a Jamf Pro webhook event",
    );
}

#[tokio::test]
async fn workspace_one_enrollment_then_compliance() {
    let h = harness().await;
    let (id, secret) = h.webhook("workspace_one").await;
    let base = match vectors() {
        Some(v) => serde_json::from_slice(&vector(
            &v,
            "mdm/workspaceone/event-notification.example.json",
        ))
        .unwrap(),
        None => json!({"EventId": 178, "EventType": "Compliance Status Changed", "DeviceId": 10000,
            "EnrollmentUserName": "yolo", "EventTime": "2022-01-16T09:13:59.5720125Z",
            "EnrollmentStatus": "Enrolled", "CompromisedStatus": "", "ComplianceStatus": "Compliant",
            "Udid": "D20E0F3D66AF4B92B31E1DA394DF1E88", "SerialNumber": "ZL6LTO7H27AB",
            "Platform": "AppleOsX", "OperatingSystem": "11.6.1"}),
    };
    // the compliance change of an unknown device: reported, not stored
    let r = h
        .basic(&id, &secret, &serde_json::to_vec(&base).unwrap())
        .await;
    assert_eq!(r.2["status"], "unknown_device", "{}", r.2);
    let mut enroll = base.clone();
    enroll["EventType"] = json!("MDM Enrollment Complete");
    enroll["EventTime"] = json!("2022-01-16T09:10:00Z");
    let r = h
        .basic(&id, &secret, &serde_json::to_vec(&enroll).unwrap())
        .await;
    assert_eq!(r.2["registered"], true, "{}", r.2);
    let dev = h.device_by("ZL6LTO7H27AB");
    assert_eq!(dev.platform.as_deref(), Some("macos"));
    let r = h
        .basic(&id, &secret, &serde_json::to_vec(&base).unwrap())
        .await;
    assert_eq!(r.2["changed"], true, "{}", r.2);
    let rec = h.record(&dev.id);
    assert_eq!(rec.mdm.compliance.as_str(), "compliant");
    assert_eq!(rec.mdm.os_version.as_deref(), Some("11.6.1"));
}

#[tokio::test]
async fn a_rotated_secret_stays_valid_for_a_day() {
    let h = harness().await;
    let (id, old) = h.webhook("nanomdm").await;
    let r = h
        .admin(
            "POST",
            &format!("/v1/admin/webhooks/{id}/rotate"),
            ADMIN,
            Value::Null,
        )
        .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.2);
    let new = r.2["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(r.2["previous_secret_valid_until"].is_string());
    let body = authenticate("SER-ROT", "UDID-ROT", h.clock_now());
    for s in [&old, &new] {
        let r = h.nano(&id, s, &body).await;
        assert_eq!(r.0, StatusCode::OK, "{}", r.2);
    }
    h.clock.advance(Duration::hours(25));
    let r = h.nano(&id, &old, &body).await;
    assert_problem(
        &r,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "X-Hmac-Signature does not verify",
    );
    let r = h.nano(&id, &new, &body).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.2);
}

fn p256() -> Vec<u8> {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    rcgen::PublicKeyData::subject_public_key_info(&kp)
}

fn chain(authority: &AppleTestAuthority, s: &AppleStatement) -> Vec<Vec<u8>> {
    AttestationObject::decode(&authority.attest(s))
        .unwrap()
        .x5c()
        .unwrap()
}

#[tokio::test]
async fn device_properties_attestation_counts_only_when_postern_verifies_it() {
    let h = harness().await;
    let (id, secret) = h.webhook("nanomdm").await;
    let now = h.clock_now();
    let mut s = AppleStatement::new(&p256(), "C02ATTEST01", "unused", now);
    s.freshness = Some(vec![7; 32]); // the MDM's nonce, which postern does not know
    let udid = s.udid.clone().unwrap();
    let r = h
        .nano(
            &id,
            &secret,
            &authenticate("C02ATTEST01", &udid, now - Duration::minutes(10)),
        )
        .await;
    let device = r.2["device_id"].as_str().unwrap().to_owned();

    // another authority's chain: refused, audited, nothing recorded
    let other = AppleTestAuthority::new();
    let audit = h.audit_len();
    let r = h
        .nano(
            &id,
            &secret,
            &device_information(&udid, &chain(&other, &s), now - Duration::minutes(9)),
        )
        .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.2);
    assert_eq!(r.2["attestation"]["status"], "refused", "{}", r.2);
    assert!(
        r.2["attestation"]["detail"]
            .as_str()
            .unwrap()
            .contains("untrusted attestation chain")
    );
    assert!(h.record(&device).attestation.is_none());
    let entries = h.store.audit_entries(audit as u64 + 1, 100).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.action == "webhook.attestation.reject" && e.subject == device)
    );

    // a trusted chain for another device: refused
    let stranger = AppleStatement::new(&p256(), "C02STRANGER", "unused", now);
    let r = h
        .nano(
            &id,
            &secret,
            &device_information(
                &udid,
                &chain(&h.apple, &stranger),
                now - Duration::minutes(8),
            ),
        )
        .await;
    assert_eq!(r.2["attestation"]["status"], "refused", "{}", r.2);
    assert_eq!(
        r.2["attestation"]["detail"],
        "the attested serial number and udid are not this device's"
    );
    assert!(h.record(&device).attestation.is_none());

    // the device's own chain to the provisioner's root: recorded, dated by the leaf
    let body = device_information(&udid, &chain(&h.apple, &s), now - Duration::minutes(7));
    let r = h.nano(&id, &secret, &body).await;
    assert_eq!(r.2["attestation"]["status"], "verified", "{}", r.2);
    let a = h.record(&device).attestation.unwrap();
    assert_eq!(a.format, Format::Apple);
    // certificates hold whole seconds
    assert_eq!(
        a.verified_at.unix_timestamp(),
        s.not_before.unix_timestamp()
    );
    let accepted = h.audit_len();
    // a replay changes nothing and is not audited again
    let r = h.nano(&id, &secret, &body).await;
    assert_eq!(r.2["attestation"]["status"], "verified", "{}", r.2);
    assert_eq!(r.2["changed"], false);
    assert_eq!(h.audit_len(), accepted);
}

#[tokio::test]
async fn the_real_mda_leaf_is_read_but_not_trusted_without_its_sub_ca() {
    let Some(v) = vectors() else { return };
    let leaf = vector(&v, "attest/apple/mda_leaf_mac_nanoca.der");
    let facts = postern_certs::attestation::apple::leaf_facts(&leaf).unwrap();
    // at a time inside the leaf's validity (it has expired since)
    let h = harness_at(facts.not_before + Duration::hours(1)).await;
    let serial = facts.serial.clone().unwrap();
    let udid = facts.udid.clone().unwrap();
    let (id, secret) = h.webhook("nanomdm").await;
    let at = h.clock_now() - Duration::minutes(5);
    let r = h
        .nano(&id, &secret, &authenticate(&serial, &udid, at))
        .await;
    assert_eq!(r.2["registered"], true, "{}", r.2);
    // delivered alone (Apple's Sub CA 1 is not in the vector): no path to Apple's root
    let r = h
        .nano(&id, &secret, &device_information(&udid, &[leaf], at))
        .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.2);
    assert_eq!(r.2["attestation"]["status"], "refused", "{}", r.2);
    let detail = r.2["attestation"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("untrusted attestation chain: no trusted issuer for the leaf"),
        "{detail}"
    );
    let device = r.2["device_id"].as_str().unwrap();
    assert!(h.record(device).attestation.is_none());
}

#[tokio::test]
async fn a_device_a_webhook_registers_gets_its_scim_users_addresses() {
    let h = harness().await;
    let r = h
        .admin(
            "POST",
            "/scim/v2/Users",
            ADMIN,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "dana@example.com", "phoneNumbers": [{"value": "+1 (415) 555-0199"}]}),
        )
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.2);
    let (id, secret) = h.webhook("jamf").await;
    let body = serde_json::to_vec(&json!({
        "event": {"serialNumber": "F2LSCIMUSER1", "udid": "00008110-0000SCIMUSER001",
            "model": "iPhone 16", "osVersion": "18.3", "username": "dana@example.com"},
        "webhook": {"eventTimestamp": h.clock_now().unix_timestamp() * 1000, "id": 7,
            "name": "x", "webhookEvent": "MobileDeviceEnrolled"}}))
    .unwrap();
    let r = h.basic(&id, &secret, &body).await;
    assert_eq!(
        (r.0, &r.2["registered"]),
        (StatusCode::OK, &json!(true)),
        "{}",
        r.2
    );
    let rec = h.record(&h.device_by("F2LSCIMUSER1").id);
    assert_eq!(rec.user.as_deref(), Some("dana@example.com"));
    let addresses: Vec<String> = rec.addresses.iter().map(ToString::to_string).collect();
    assert_eq!(addresses, ["tel:+14155550199"]);
    assert!(rec.mdm.enrolled);
}
