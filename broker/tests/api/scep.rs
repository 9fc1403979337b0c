//! SCEP dynamic challenges through the router and the domain under a manual clock: who may
//! ask, for which device, how long a challenge lives, one-time redemption (also when two race),
//! expiry, binding to a device; Jamf Pro's `SCEPChallenge` webhook answered with one; and the
//! Intune SCEP validation client against a local HTTPS server answering Intune's shapes.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use tower::ServiceExt as _;

use postern_broker::app;
use postern_broker::connectors::client::{FailureKind, Sleeper};
use postern_broker::domain::acme::{Acme, AcmeSettings};
use postern_broker::domain::devices::NewDevice;
use postern_broker::domain::scep::intune::{
    GRAPH_SCOPE, INTUNE_APP_ID, INTUNE_SCOPE, IssuedCertificate,
};
use postern_broker::domain::scep::{
    ChallengeError, IntuneError, IntuneScepSettings, IntuneValidator, Scep, ScepSettings,
};
use postern_broker::domain::{Clock as _, Domain, ManualClock, Principal};
use postern_broker::http::{AppState, router};
use postern_broker::model::Role;
use postern_broker::store::memory::MemoryStore;
use postern_broker::store::{DocKind, Store};

const ADMIN: &str = "test-admin-token-0123456789";
const T0: OffsetDateTime = time::macros::datetime!(2025-09-10 12:00:00 UTC);

struct Harness {
    domain: Arc<Domain>,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    scep: Arc<Scep>,
    app: axum::Router,
}

async fn harness(scep_toml: &str) -> Harness {
    harness_on(Arc::new(MemoryStore::new()), scep_toml).await
}

async fn harness_on(store: Arc<dyn Store>, scep_toml: &str) -> Harness {
    let clock = Arc::new(ManualClock::new(T0));
    let domain = app::ephemeral(Arc::clone(&store), clock.clone())
        .await
        .unwrap();
    domain.ensure_bootstrap_token(Some(ADMIN)).await.unwrap();
    domain
        .create_tenant(&Principal::cli(), "other", "Other")
        .await
        .unwrap();
    let settings: ScepSettings = toml::from_str(scep_toml).unwrap();
    let scep = Arc::new(Scep::new(Arc::clone(&domain), &settings).unwrap());
    let acme = Arc::new(Acme::new(Arc::clone(&domain), AcmeSettings::default()).unwrap());
    let posture = app::ephemeral_posture(&domain).unwrap();
    let app = router(
        AppState::new(Arc::clone(&domain), acme, posture).with_scep(Arc::clone(&scep)),
        64 * 1024,
    );
    Harness {
        domain,
        store,
        clock,
        scep,
        app,
    }
}

type Reply = (StatusCode, String, Value, String);

impl Harness {
    async fn call(&self, uri: &str, headers: &[(&str, String)], body: Vec<u8>) -> Reply {
        let mut req = Request::builder()
            .method("POST")
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
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    async fn post(&self, uri: &str, token: &str, body: Value) -> Reply {
        self.call(
            uri,
            &[("authorization", format!("Bearer {token}"))],
            serde_json::to_vec(&body).unwrap(),
        )
        .await
    }

    async fn token(&self, tenant: &str, role: Role) -> String {
        self.domain
            .create_token(&Principal::cli(), Some(tenant), role, "t")
            .await
            .unwrap()
            .token
    }

    async fn device(&self, tenant: &str, serial: &str, udid: &str) -> String {
        let who = Principal {
            tenant: tenant.into(),
            role: Role::Admin,
            actor_id: "test".into(),
        };
        self.domain
            .register_device(
                &who,
                NewDevice {
                    tenant: None,
                    serial: Some(serial.into()),
                    udid: Some(udid.into()),
                    imei: None,
                    hardware_ids: Vec::new(),
                    platform: Some("macos".into()),
                    model: None,
                    user: None,
                },
            )
            .await
            .unwrap()
            .id
    }

    async fn challenge(&self, device: &str) -> String {
        let r = self
            .post(
                "/v1/scep/scep/challenges",
                ADMIN,
                json!({ "device": device }),
            )
            .await;
        assert_eq!(r.0, StatusCode::CREATED, "{}", r.3);
        r.2["challenge"].as_str().unwrap().to_owned()
    }

    fn challenges(&self) -> Vec<(String, Vec<u8>)> {
        self.store
            .docs(DocKind::ScepChallenge, "", usize::MAX)
            .unwrap()
    }
}

fn assert_problem(r: &Reply, status: StatusCode, kind: &str, detail: &str) {
    assert_eq!(r.0, status, "body: {}", r.3);
    assert_eq!(r.1, "application/problem+json");
    assert_eq!(
        r.2["type"],
        format!("urn:postern:problem:{kind}"),
        "{}",
        r.3
    );
    assert_eq!(
        r.2["detail"].as_str().unwrap_or_default(),
        detail,
        "{}",
        r.3
    );
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn challenges_are_for_admins_and_mdms_of_the_provisioners_tenant_and_known_devices() {
    let h = harness("").await;
    let dev = h.device("default", "C02XK1ZZJGH5", "UDID-1").await;
    let other_dev = h.device("other", "OTHER-SERIAL", "UDID-2").await;

    // by serial, by UDID, by device id; admin and mdm tokens
    let mdm = h.token("default", Role::Mdm).await;
    for (who, device) in [
        (ADMIN, "C02XK1ZZJGH5"),
        (mdm.as_str(), "UDID-1"),
        (ADMIN, &dev),
    ] {
        let r = h
            .post("/v1/scep/scep/challenges", who, json!({ "device": device }))
            .await;
        assert_eq!(r.0, StatusCode::CREATED, "{}", r.3);
        assert_eq!(r.2["device"], json!(dev));
        let c = r.2["challenge"].as_str().unwrap();
        assert_eq!(c.len(), 40);
        assert!(
            c.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // the default lifetime: one hour
        assert_eq!(r.2["expires_at"], "2025-09-10T13:00:00Z");
    }
    assert_eq!(h.challenges().len(), 3);

    // other roles
    for role in [Role::Gateway, Role::Scim, Role::Device] {
        let t = h.token("default", role).await;
        let r = h
            .post("/v1/scep/scep/challenges", &t, json!({ "device": dev }))
            .await;
        assert_problem(
            &r,
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!(
                "role {} may not request SCEP challenges; admin or mdm required",
                role.as_str()
            ),
        );
    }
    // another tenant's admin and mdm
    for role in [Role::Admin, Role::Mdm] {
        let t = h.token("other", role).await;
        let r = h
            .post(
                "/v1/scep/scep/challenges",
                &t,
                json!({ "device": other_dev }),
            )
            .await;
        assert_problem(
            &r,
            StatusCode::FORBIDDEN,
            "forbidden",
            "a token may act only for its own tenant",
        );
    }
    // unknown devices (another tenant's device is unknown here), unknown provisioner
    for device in ["NOPE", "OTHER-SERIAL", other_dev.as_str()] {
        let r = h
            .post(
                "/v1/scep/scep/challenges",
                ADMIN,
                json!({ "device": device }),
            )
            .await;
        assert_problem(
            &r,
            StatusCode::NOT_FOUND,
            "not-found",
            &format!("no device {device:?} in tenant default"),
        );
    }
    let r = h
        .post("/v1/scep/wifi/challenges", ADMIN, json!({ "device": dev }))
        .await;
    assert_problem(
        &r,
        StatusCode::NOT_FOUND,
        "not-found",
        "no SCEP provisioner \"wifi\"",
    );
    // bad bodies and no token
    let r = h
        .post("/v1/scep/scep/challenges", ADMIN, json!({ "device": "  " }))
        .await;
    assert_problem(
        &r,
        StatusCode::BAD_REQUEST,
        "malformed",
        "device must be 1 to 256 characters",
    );
    let r = h
        .post("/v1/scep/scep/challenges", ADMIN, json!({ "serial": "x" }))
        .await;
    assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.3);
    assert_eq!(r.2["type"], "urn:postern:problem:malformed");
    let r = h
        .call(
            "/v1/scep/scep/challenges",
            &[],
            serde_json::to_vec(&json!({ "device": dev })).unwrap(),
        )
        .await;
    assert_eq!(r.0, StatusCode::UNAUTHORIZED, "{}", r.3);
    assert_eq!(h.challenges().len(), 3);
}

#[tokio::test]
async fn only_the_hash_is_stored_and_the_audit_names_no_secret() {
    let h = harness("").await;
    let dev = h.device("default", "SERIAL-1", "UDID-1").await;
    let c = h.challenge(&dev).await;
    let hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, c.as_bytes()));
    let docs = h.challenges();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].0, hash);
    assert!(!String::from_utf8_lossy(&docs[0].1).contains(&c));
    let audit = h.store.audit_entries(1, 1_000_000).unwrap();
    let entry = audit
        .iter()
        .find(|e| e.action == "scep.challenge.create")
        .unwrap();
    assert_eq!(entry.subject, dev);
    let text = serde_json::to_string(&audit).unwrap();
    assert!(!text.contains(&c));
    assert!(
        !text.contains(&hash),
        "only a prefix of the hash is audited"
    );
    assert!(text.contains(&hash[..16]));
}

#[tokio::test]
async fn a_configured_lifetime_and_a_provisioner_without_challenges() {
    let h = harness(
        "[[provisioners]]\nname = \"scep\"\nchallenge_lifetime_seconds = 600\n\
         [[provisioners]]\nname = \"intune-only\"\nchallenge = \"none\"\n\
         [[provisioners]]\nname = \"b\"\ntenant = \"other\"\n",
    )
    .await;
    let dev = h.device("default", "SERIAL-1", "UDID-1").await;
    let r = h
        .post("/v1/scep/scep/challenges", ADMIN, json!({ "device": dev }))
        .await;
    assert_eq!(r.2["expires_at"], "2025-09-10T12:10:00Z");
    let r = h
        .post(
            "/v1/scep/intune-only/challenges",
            ADMIN,
            json!({ "device": dev }),
        )
        .await;
    assert_problem(
        &r,
        StatusCode::CONFLICT,
        "conflict",
        "SCEP provisioner \"intune-only\" does not use dynamic challenges",
    );
    // a default-tenant admin is an operator: it may ask on another tenant's provisioner,
    // for that tenant's devices only
    let b_dev = h.device("other", "B-1", "B-UDID").await;
    let r = h
        .post("/v1/scep/b/challenges", ADMIN, json!({ "device": "B-1" }))
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.3);
    assert_eq!(r.2["device"], json!(b_dev));
    let r = h
        .post(
            "/v1/scep/b/challenges",
            ADMIN,
            json!({ "device": "SERIAL-1" }),
        )
        .await;
    assert_problem(
        &r,
        StatusCode::NOT_FOUND,
        "not-found",
        "no device \"SERIAL-1\" in tenant other",
    );
}

#[tokio::test]
async fn a_challenge_is_redeemed_once_for_its_device_before_it_expires() {
    let h = harness("").await;
    let dev = h.device("default", "SERIAL-1", "UDID-1").await;
    let _other = h.device("default", "SERIAL-2", "UDID-2").await;
    let now = h.clock.now();

    // unknown: never made, or made on another provisioner
    let err = h
        .scep
        .redeem("scep", "00ff", &ids(&["SERIAL-1"]), now)
        .await
        .unwrap_err();
    assert_eq!(err, ChallengeError::Unknown);
    assert_eq!(err.fail_info(), Some("badRequest"));
    let c = h.challenge(&dev).await;
    assert_eq!(
        h.scep
            .redeem("wifi", &c, &ids(&["SERIAL-1"]), now)
            .await
            .unwrap_err(),
        ChallengeError::Unknown
    );

    // another device's identifiers, none, or one of ours beside another device's
    for presented in [
        ids(&["SERIAL-2"]),
        ids(&[]),
        ids(&["someone else"]),
        ids(&["SERIAL-1", "UDID-2"]),
    ] {
        let err = h
            .scep
            .redeem("scep", &c, &presented, now)
            .await
            .unwrap_err();
        assert_eq!(err, ChallengeError::OtherDevice, "{presented:?}");
        assert_eq!(err.fail_info(), Some("badRequest"));
    }
    // ... which does not use it up: the device itself still can (case ignored)
    let r = h
        .scep
        .redeem("scep", &c, &ids(&["serial-1", "CN=whatever"]), now)
        .await
        .unwrap();
    assert_eq!(r.device.as_ref().unwrap().id, dev);
    assert_eq!(r.profile, "device-identity");
    assert_eq!(r.tenant, "default");
    assert!(r.bound);
    // once
    let err = h
        .scep
        .redeem("scep", &c, &ids(&["SERIAL-1"]), now)
        .await
        .unwrap_err();
    assert_eq!(err, ChallengeError::Used);
    assert_eq!(err.fail_info(), Some("badRequest"));

    // expired: at the expiry instant and after; it is removed when presented
    let c2 = h.challenge(&dev).await;
    assert_eq!(h.challenges().len(), 2);
    h.clock.advance(Duration::seconds(3600));
    let err = h
        .scep
        .redeem("scep", &c2, &ids(&["UDID-1"]), h.clock.now())
        .await
        .unwrap_err();
    assert_eq!(err, ChallengeError::Expired);
    assert_eq!(err.fail_info(), Some("badRequest"));
    assert_eq!(h.challenges().len(), 1);
    assert_eq!(
        h.scep
            .redeem("scep", &c2, &ids(&["UDID-1"]), h.clock.now())
            .await
            .unwrap_err(),
        ChallengeError::Unknown
    );
    // the used one stays a day past its expiry (a replay is told Used), then the sweep
    // removes it
    assert_eq!(h.scep.sweep().await.unwrap(), 0);
    h.clock.advance(Duration::days(1) + Duration::seconds(1));
    assert_eq!(h.scep.sweep().await.unwrap(), 1);
    assert!(h.challenges().is_empty());
    assert_eq!(
        h.scep
            .redeem("scep", &c, &ids(&["SERIAL-1"]), h.clock.now())
            .await
            .unwrap_err(),
        ChallengeError::Unknown
    );
    let actions: Vec<String> = h
        .store
        .audit_entries(1, 1_000_000)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .filter(|a| a.starts_with("scep."))
        .collect();
    assert_eq!(
        actions,
        [
            "scep.challenge.create",
            "scep.challenge.refuse",
            "scep.challenge.refuse",
            "scep.challenge.refuse",
            "scep.challenge.refuse",
            "scep.challenge.redeem",
            "scep.challenge.create",
        ]
    );
}

/// On sled files, whose commits wait for the disk off the runtime's workers, so concurrent
/// redemptions interleave and the loser is stopped by the transaction's check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_redemptions_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(postern_broker::store::sled::SledStore::open(&dir.path().join("db")).unwrap());
    let h = harness_on(store, "").await;
    let dev = h.device("default", "SERIAL-1", "UDID-1").await;
    for _ in 0..10 {
        let c = h.challenge(&dev).await;
        let now = h.clock.now();
        let presented = ids(&["SERIAL-1"]);
        let (a, b) = tokio::join!(
            h.scep.redeem("scep", &c, &presented, now),
            h.scep.redeem("scep", &c, &presented, now)
        );
        let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{a:?} {b:?}");
        let loser = if a.is_ok() { b } else { a };
        assert_eq!(loser.unwrap_err(), ChallengeError::Used);
    }
    // threads, on a multi-threaded runtime through the store's transactions
    let c = h.challenge(&dev).await;
    let now = h.clock.now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let scep = Arc::clone(&h.scep);
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            scep.redeem("scep", &c, &ids(&["UDID-1"]), now).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(e) => assert_eq!(e, ChallengeError::Used),
        }
    }
    assert_eq!(wins, 1);
}

#[test]
fn settings_errors_name_the_key() {
    let check = |toml_text: &str, key: &str, msg: &str| {
        let s = postern_broker::config::Settings::from_toml(toml_text)
            .and_then(|s| s.validate().map(|()| s));
        let e = s.unwrap_err();
        assert_eq!(e.key, key, "{toml_text}: {}", e.message);
        assert!(e.message.contains(msg), "{}", e.message);
    };
    let p = "[[scep.provisioners]]\n";
    check(
        &format!("{p}name = \"Bad Name\""),
        "scep.provisioners[0].name",
        "is not [a-z0-9-]{1,63}",
    );
    check(
        &format!("{p}name = \"a\"\nprofile = \"tls-server\""),
        "scep.provisioners[0].profile",
        "\"tls-server\" is not one of device-identity, messaging-identity",
    );
    check(
        &format!("{p}name = \"a\"\nchallenge_lifetime_seconds = 0"),
        "scep.provisioners[0].challenge_lifetime_seconds",
        "must be between 1 and 604800",
    );
    check(
        &format!("{p}name = \"a\"\n{p}name = \"a\""),
        "scep.provisioners[1].name",
        "\"a\" appears twice",
    );
    check(
        &format!("{p}name = \"a\"\ntenant = \"Not A Tenant\""),
        "scep.provisioners[0].tenant",
        "is not a tenant id",
    );
    check(
        &format!(
            "{p}name = \"a\"\n[scep.provisioners.intune]\ntenant_id = \"t\"\nclient_id = \"c\"\n\
             client_secret_file = \"/nonexistent/secret\"\n"
        ),
        "scep.provisioners[0].intune.client_secret_file",
        "",
    );
    check(
        &format!(
            "{p}name = \"a\"\n[scep.provisioners.intune]\ntenant_id = \"t\"\nclient_id = \"c\"\n\
             client_secret_file = \"/x\"\nservice_url = \"http://plain\"\n"
        ),
        "scep.provisioners[0].intune.service_url",
        "must be an https:// URL",
    );
    // toml type errors name the key too
    let e = postern_broker::config::Settings::from_toml(&format!(
        "{p}name = \"a\"\nchallenge = \"static\""
    ))
    .unwrap_err();
    assert_eq!(e.key, "scep.provisioners.challenge");
    // without configuration: the `scep` provisioner, dynamic, device-identity
    let s = postern_broker::config::Settings::from_toml("").unwrap();
    assert_eq!(s.scep.provisioners.len(), 1);
    let p = &s.scep.provisioners[0];
    assert_eq!(
        (p.name.as_str(), p.tenant.as_str(), p.profile.as_str()),
        ("scep", "default", "device-identity")
    );
    assert_eq!(
        p.challenge,
        postern_broker::domain::scep::ChallengeMode::Dynamic
    );
    assert_eq!(p.challenge_lifetime_seconds, 3600);
}

// ----- Jamf Pro SCEPChallenge ----------------------------------------------------------------

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

fn basic(secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("jamf:{secret}")))
}

impl Harness {
    async fn jamf_webhook(&self, scep: Option<&str>) -> (String, String) {
        let mut body = json!({"kind": "jamf", "name": "Jamf"});
        if let Some(p) = scep {
            body["scep_provisioner"] = json!(p);
        }
        let r = self.post("/v1/admin/webhooks", ADMIN, body).await;
        assert_eq!(r.0, StatusCode::CREATED, "{}", r.3);
        (
            r.2["id"].as_str().unwrap().to_owned(),
            r.2["secret"].as_str().unwrap().to_owned(),
        )
    }

    async fn deliver(&self, id: &str, secret: &str, body: &[u8]) -> Reply {
        self.call(
            &format!("/webhooks/{id}"),
            &[("authorization", basic(secret))],
            body.to_vec(),
        )
        .await
    }
}

fn scep_challenge_event(device: Option<Value>) -> Vec<u8> {
    let mut v = json!({
        "webhook": {"webhookEvent": "SCEPChallenge", "id": 1, "eventTimestamp": 1757435578, "name": ""},
        "event": {"scepServerUrl": "https://broker.test/scep/scep",
                  "payloadIdentifier": "CDB0BC64-F3EB-4B1A-AA5E-9A5D994CA593",
                  "payloadTypes": ["com.apple.security.scep"]}
    });
    if let Some(d) = device {
        v["event"]["device"] = d;
    }
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn jamf_scep_challenge_is_answered_with_a_one_time_challenge() {
    let h = harness("").await;
    let dev = h.device("default", "C02XK1ZZJGH5", "UDID-1").await;
    let (id, secret) = h.jamf_webhook(Some("scep")).await;

    // Jamf's own shape (the vector, when present): no device named, so the challenge is bound
    // to the provisioner only
    let body = match vectors() {
        Some(d) => std::fs::read(d.join("mdm/jamf/webhook-SCEPChallenge.json")).unwrap(),
        None => scep_challenge_event(None),
    };
    let r = h.deliver(&id, &secret, &body).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.3);
    assert_eq!(r.1, "text/plain; charset=utf-8");
    let c = r.3.clone();
    assert_eq!(c.len(), 40);
    assert!(c.bytes().all(|b| b.is_ascii_hexdigit()));
    let now = h.clock.now();
    let redeemed = h
        .scep
        .redeem("scep", &c, &ids(&["C02XK1ZZJGH5"]), now)
        .await
        .unwrap();
    assert!(!redeemed.bound);
    assert_eq!(redeemed.device.unwrap().id, dev);
    assert_eq!(
        h.scep
            .redeem("scep", &c, &ids(&["C02XK1ZZJGH5"]), now)
            .await
            .unwrap_err(),
        ChallengeError::Used
    );
    // an unbound challenge redeemed by a device postern does not know names none
    let r = h.deliver(&id, &secret, &body).await;
    let redeemed = h
        .scep
        .redeem("scep", &r.3, &ids(&["UNKNOWN"]), now)
        .await
        .unwrap();
    assert_eq!(redeemed.device, None);

    // a sender that names the device gets a challenge bound to it
    let bound = scep_challenge_event(Some(json!({"serialNumber": "C02XK1ZZJGH5"})));
    let r = h.deliver(&id, &secret, &bound).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.3);
    let _other = h.device("default", "SERIAL-2", "UDID-2").await;
    assert_eq!(
        h.scep
            .redeem("scep", &r.3, &ids(&["SERIAL-2"]), now)
            .await
            .unwrap_err(),
        ChallengeError::OtherDevice
    );
    assert!(
        h.scep
            .redeem("scep", &r.3, &ids(&["UDID-1"]), now)
            .await
            .unwrap()
            .bound
    );
    // ... and an unknown device is 404, with nothing stored
    let before = h.challenges().len();
    let r = h
        .deliver(
            &id,
            &secret,
            &scep_challenge_event(Some(json!({"serialNumber": "NOPE"}))),
        )
        .await;
    assert_problem(
        &r,
        StatusCode::NOT_FOUND,
        "not-found",
        "no device of tenant default has these identifiers",
    );
    assert_eq!(h.challenges().len(), before);

    // the secret is still required
    let r = h.deliver(&id, "whsec_wrong", &body).await;
    assert_problem(
        &r,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the webhook secret does not match",
    );
    // a Jamf webhook without scep_provisioner refuses the event
    let (plain, plain_secret) = h.jamf_webhook(None).await;
    let r = h.deliver(&plain, &plain_secret, &body).await;
    assert_problem(
        &r,
        StatusCode::CONFLICT,
        "conflict",
        "this webhook answers no SCEPChallenge: register it with scep_provisioner",
    );
    // other Jamf events still get their receipt
    let r = h
        .deliver(
            &id,
            &secret,
            br#"{"webhook":{"webhookEvent":"PushSent","eventTimestamp":1757435578},"event":{}}"#,
        )
        .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.3);
    assert_eq!(r.2["status"], "ignored");
    assert_eq!(h.challenges().len(), before);
}

#[tokio::test]
async fn scep_provisioner_is_checked_when_a_webhook_is_registered() {
    let h = harness(
        "[[provisioners]]\nname = \"scep\"\n[[provisioners]]\nname = \"b\"\ntenant = \"other\"\n",
    )
    .await;
    for (body, detail) in [
        (
            json!({"kind": "nanomdm", "name": "n", "scep_provisioner": "scep"}),
            "scep_provisioner is only for jamf webhooks",
        ),
        (
            json!({"kind": "jamf", "name": "j", "scep_provisioner": "wifi"}),
            "scep_provisioner: no SCEP provisioner \"wifi\" in tenant default",
        ),
        (
            json!({"kind": "jamf", "name": "j", "scep_provisioner": "b"}),
            "scep_provisioner: no SCEP provisioner \"b\" in tenant default",
        ),
    ] {
        let r = h.post("/v1/admin/webhooks", ADMIN, body).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "malformed", detail);
    }
    let r = h
        .post(
            "/v1/admin/webhooks",
            ADMIN,
            json!({"kind": "jamf", "name": "j", "scep_provisioner": "scep"}),
        )
        .await;
    assert_eq!(r.0, StatusCode::CREATED);
    assert_eq!(r.2["scep_provisioner"], "scep");
}

// ----- Intune ----------------------------------------------------------------------------------

/// What the fake Intune answers to the next SCEP action call.
#[derive(Debug, Clone)]
enum Next {
    Success,
    Refuse(&'static str),
    Unauthorized,
    RetryAfter(u64),
    Garbage,
}

#[derive(Debug, Default)]
struct Script {
    base: String,
    /// Tokens handed out, with their scope.
    tokens: Vec<String>,
    answers: Vec<Next>,
    /// (action, headers that must be there, body) of every call.
    calls: Vec<(String, Value)>,
    discovery: usize,
}

type Shared = Arc<Mutex<Script>>;

async fn fake_intune(
    axum::extract::State(s): axum::extract::State<Shared>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut g = s.lock().unwrap();
    let path = uri.path().to_owned();
    if method == axum::http::Method::POST && path == "/contoso.example/oauth2/v2.0/token" {
        let form = String::from_utf8(body.to_vec()).unwrap();
        assert!(form.contains("grant_type=client_credentials"));
        assert!(form.contains("client_secret=s3cret"));
        let scope = form
            .split('&')
            .find_map(|p| p.strip_prefix("scope="))
            .unwrap()
            .to_owned();
        g.tokens.push(scope);
        let n = g.tokens.len();
        return axum::Json(json!({"access_token": format!("tok-{n}"), "expires_in": 3600}))
            .into_response();
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if method == axum::http::Method::GET
        && path == format!("/v1.0/servicePrincipals(appId='{INTUNE_APP_ID}')/endpoints")
    {
        assert!(bearer.starts_with("Bearer tok-"));
        g.discovery += 1;
        let base = g.base.clone();
        return axum::Json(json!({"value": [
            {"providerName": "PkiConnectorFEService", "uri": format!("{base}/pki")},
            {"providerName": "ScepRequestValidationFEService",
             "uri": format!("{base}/TrafficGateway/ScepRequestValidationFEService")},
        ]}))
        .into_response();
    }
    let Some(action) =
        path.strip_prefix("/TrafficGateway/ScepRequestValidationFEService/ScepActions/")
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Intune's headers
    assert_eq!(headers["api-version"], "2018-02-20");
    assert_eq!(headers["useragent"], "postern-test/1.0");
    assert_eq!(headers["client-request-id"].len(), 36);
    let current = format!("Bearer tok-{}", g.tokens.len());
    g.calls
        .push((action.to_owned(), serde_json::from_slice(&body).unwrap()));
    if bearer != current {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let next = if g.answers.is_empty() {
        Next::Success
    } else {
        g.answers.remove(0)
    };
    match next {
        Next::Success => {
            axum::Json(json!({"code": "Success", "errorDescription": ""})).into_response()
        }
        Next::Refuse(code) => {
            axum::Json(json!({"code": code, "errorDescription": "challenge\u{0007} has expired"}))
                .into_response()
        }
        Next::Unauthorized => StatusCode::UNAUTHORIZED.into_response(),
        Next::RetryAfter(s) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, s.to_string())],
        )
            .into_response(),
        Next::Garbage => (
            [(header::CONTENT_TYPE, "application/json")],
            "<html>gateway</html>",
        )
            .into_response(),
    }
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<StdDuration>>);

impl Sleeper for Recorder {
    fn sleep(&self, d: StdDuration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.0.lock().unwrap().push(d);
        Box::pin(std::future::ready(()))
    }
}

struct Intune {
    script: Shared,
    sleeper: Arc<Recorder>,
    validator: IntuneValidator,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn intune(discover: bool) -> Intune {
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
    let script: Shared = Arc::new(Mutex::new(Script {
        base: base.clone(),
        ..Script::default()
    }));
    let app = axum::Router::new()
        .fallback(fake_intune)
        .with_state(Arc::clone(&script));
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(postern_broker::server::serve_tls(
        listener,
        Arc::new(tls),
        app,
        rx,
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
    let d = dir.path().display();
    let service = if discover {
        String::new()
    } else {
        format!("service_url = \"{base}/TrafficGateway/ScepRequestValidationFEService\"\n")
    };
    let settings: IntuneScepSettings = toml::from_str(&format!(
        "tenant_id = \"contoso.example\"\nclient_id = \"app-1\"\n\
         client_secret_file = \"{d}/secret\"\nca_file = \"{d}/ca.pem\"\n\
         login_url = \"{base}\"\ngraph_url = \"{base}\"\ncaller_info = \"postern-test/1.0\"\n\
         {service}"
    ))
    .unwrap();
    let sleeper = Arc::new(Recorder::default());
    let validator = IntuneValidator::open(
        &settings,
        Arc::new(ManualClock::new(OffsetDateTime::now_utc())),
        sleeper.clone(),
    )
    .unwrap();
    Intune {
        script,
        sleeper,
        validator,
        _dir: dir,
        _stop: stop,
    }
}

fn csr() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(vec!["device.example".into()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec()
}

/// The keys of an object, nested ones as `outer.inner`, sorted.
fn shape(v: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Object(m) = v {
        for (k, inner) in m {
            let name = format!("{prefix}{k}");
            out.push(name.clone());
            shape(inner, &format!("{name}."), out);
        }
    }
    out.sort();
}

fn keys(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    shape(v, "", &mut out);
    out
}

#[tokio::test]
async fn intune_validates_and_is_notified_in_its_own_shapes() {
    let f = intune(true).await;
    let csr = csr();
    f.validator.validate(&csr, "tx-1").await.unwrap();
    // discovery once, with a Graph token; the SCEP action with an Intune token
    {
        let s = f.script.lock().unwrap();
        assert_eq!(s.discovery, 1);
        let enc = |s: &str| s.replace(':', "%3A").replace('/', "%2F");
        assert_eq!(s.tokens, [enc(GRAPH_SCOPE), enc(INTUNE_SCOPE)]);
        let (action, body) = &s.calls[0];
        assert_eq!(action, "validateRequest");
        assert_eq!(body["request"]["transactionId"], "tx-1");
        assert_eq!(
            STANDARD
                .decode(body["request"]["certificateRequest"].as_str().unwrap())
                .unwrap(),
            csr
        );
        assert_eq!(body["request"]["callerInfo"], "postern-test/1.0");
    }
    // a certificate to report
    let ca = rcgen::generate_simple_self_signed(vec!["device.example".into()]).unwrap();
    let issued = IssuedCertificate::from_der(ca.cert.der()).unwrap();
    assert_eq!(issued.thumbprint_sha1.len(), 40);
    f.validator
        .notify_success(&csr, "tx-1", &issued)
        .await
        .unwrap();
    f.validator
        .notify_failure(&csr, "tx-2", 0x8000_4005, &"x".repeat(300))
        .await
        .unwrap();
    let s = f.script.lock().unwrap();
    assert_eq!(s.discovery, 1, "the endpoint is kept");
    let (action, success) = &s.calls[1];
    assert_eq!(action, "successNotification");
    assert_eq!(
        success["notification"]["certificateThumbprint"],
        json!(issued.thumbprint_sha1)
    );
    let expiry = success["notification"]["certificateExpirationDateUtc"]
        .as_str()
        .unwrap();
    assert!(expiry.ends_with('Z'), "{expiry}");
    let (action, failure) = &s.calls[2];
    assert_eq!(action, "failureNotification");
    assert_eq!(failure["notification"]["hResult"], 2_147_500_037_i64);
    assert_eq!(
        failure["notification"]["errorDescription"]
            .as_str()
            .unwrap()
            .len(),
        255
    );
    // the same fields as Microsoft's reference library sends
    if let Some(d) = vectors() {
        let read = |n: &str| -> Value {
            serde_json::from_slice(&std::fs::read(d.join("mdm/intune").join(n)).unwrap()).unwrap()
        };
        assert_eq!(
            keys(&s.calls[0].1),
            keys(&read("scep-validateRequest.body.json"))
        );
        assert_eq!(
            keys(success),
            keys(&read("scep-successNotification.body.json"))
        );
        assert_eq!(
            keys(failure),
            keys(&read("scep-failureNotification.body.json"))
        );
    }
}

#[tokio::test]
async fn intune_refusals_token_refresh_throttling_and_bad_answers() {
    let f = intune(false).await;
    let csr = csr();
    let set = |n: Vec<Next>| f.script.lock().unwrap().answers = n;

    // refused: Intune's code, its description without control characters
    set(vec![Next::Refuse("ChallengeExpired")]);
    let e = f.validator.validate(&csr, "tx").await.unwrap_err();
    assert_eq!(
        e,
        IntuneError::Refused {
            code: "ChallengeExpired".into(),
            description: "challenge has expired".into()
        }
    );
    assert_eq!(e.fail_info(), "badRequest");
    assert_eq!(
        f.script.lock().unwrap().discovery,
        0,
        "service_url skips Graph"
    );

    // a 401 gets one fresh token and one more try
    set(vec![Next::Unauthorized, Next::Success]);
    let before = f.script.lock().unwrap().tokens.len();
    f.validator.validate(&csr, "tx").await.unwrap();
    assert_eq!(f.script.lock().unwrap().tokens.len(), before + 1);
    // two in a row: unauthorized
    set(vec![Next::Unauthorized, Next::Unauthorized]);
    let e = f.validator.validate(&csr, "tx").await.unwrap_err();
    assert_eq!(e.failure_kind(), Some(FailureKind::Unauthorized));
    assert_eq!(
        e.to_string(),
        "intune is unavailable: unauthorized: \
         /TrafficGateway/ScepRequestValidationFEService/ScepActions/validateRequest answered 401"
    );

    // a short Retry-After is waited out; a long one fails with the wait
    set(vec![Next::RetryAfter(2), Next::Success]);
    f.validator.validate(&csr, "tx").await.unwrap();
    assert_eq!(*f.sleeper.0.lock().unwrap(), [StdDuration::from_secs(2)]);
    set(vec![Next::RetryAfter(3600)]);
    let e = f.validator.validate(&csr, "tx").await.unwrap_err();
    match &e {
        IntuneError::Unavailable(c) => {
            assert_eq!(c.kind, FailureKind::Throttled);
            assert_eq!(c.retry_after, Some(StdDuration::from_secs(3600)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.fail_info(), "badRequest");

    // an answer that is not Intune's JSON
    set(vec![Next::Garbage]);
    let e = f.validator.validate(&csr, "tx").await.unwrap_err();
    assert_eq!(e.failure_kind(), Some(FailureKind::Malformed));
    assert!(
        e.to_string().contains("answered JSON that does not fit"),
        "{e}"
    );
    // nothing was logged or returned with the secret or a token in it
    assert!(!e.to_string().contains("s3cret") && !e.to_string().contains("tok-"));
}
