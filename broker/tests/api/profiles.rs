//! The profile API through the router: who may ask for which device's profile, what each form
//! contains, and the one-time secrets (used once, replaced by the next profile, never audited).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use postern_broker::app;
use postern_broker::domain::{Domain, SystemClock};
use postern_broker::http::{AppState, router};
use postern_broker::store::memory::MemoryStore;
use postern_broker::store::{DocKind, Store};

const ADMIN: &str = "test-admin-token-0123456789";
const HOST: &str = "postern.test:8443";

struct Harness {
    domain: Arc<Domain>,
    store: Arc<dyn Store>,
    app: axum::Router,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn assert_problem(&self, status: StatusCode, kind: &str) {
        let v = self.json();
        assert_eq!(self.status, status, "{v}");
        assert_eq!(self.content_type, "application/problem+json");
        assert_eq!(v["type"], format!("urn:postern:problem:{kind}"), "{v}");
    }
}

async fn harness() -> Harness {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let domain = app::ephemeral(Arc::clone(&store), Arc::new(SystemClock))
        .await
        .unwrap();
    domain.ensure_bootstrap_token(Some(ADMIN)).await.unwrap();
    let acme = Arc::new(
        postern_broker::domain::acme::Acme::new(Arc::clone(&domain), Default::default()).unwrap(),
    );
    let posture = app::ephemeral_posture(&domain).unwrap();
    let app = router(AppState::new(Arc::clone(&domain), acme, posture), 64 * 1024);
    Harness { domain, store, app }
}

impl Harness {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, HOST);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&b).unwrap())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Reply {
            status,
            content_type,
            body,
        }
    }

    async fn get(&self, uri: &str, token: Option<&str>) -> Reply {
        self.call("GET", uri, token, None).await
    }

    async fn device(&self, body: Value) -> String {
        let r = self
            .call("POST", "/v1/admin/devices", Some(ADMIN), Some(body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
        r.json()["id"].as_str().unwrap().to_owned()
    }

    async fn token(&self, tenant: &str, role: &str) -> String {
        let r = self
            .call(
                "POST",
                "/v1/admin/tokens",
                Some(ADMIN),
                Some(json!({ "tenant": tenant, "role": role, "label": "t" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
        r.json()["token"].as_str().unwrap().to_owned()
    }

    fn audit_text(&self) -> String {
        let entries = self.store.audit_entries(1, 100_000).unwrap();
        serde_json::to_string(&entries).unwrap()
    }
}

fn path_of(url: &str) -> &str {
    url.strip_prefix(&format!("https://{HOST}")).unwrap()
}

#[tokio::test]
async fn roles_tenants_devices_and_targets() {
    let h = harness().await;
    let id = h
        .device(json!({ "serial": "F2LZK0AAPLE1", "udid": "00008110-000A1B2C3D4E5F60", "platform": "ios" }))
        .await;
    let bare = h.device(json!({ "serial": "NOPLATFORM1" })).await;
    let r = h
        .call(
            "POST",
            "/v1/admin/tenants",
            Some(ADMIN),
            Some(json!({ "id": "other", "name": "Other" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let mdm = h.token("default", "mdm").await;
    let gateway = h.token("default", "gateway").await;
    let other_admin = h.token("other", "admin").await;
    let url = format!("/v1/profiles/default/devices/{id}/enrollment.mobileconfig");

    h.get(&url, None)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    h.get(&url, Some(&gateway))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    h.get(&url, Some(&other_admin))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    h.get(
        &format!("/v1/profiles/other/devices/{id}/android.json"),
        Some(&other_admin),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not-found");
    h.get(
        "/v1/profiles/default/devices/dev_nope/enrollment.mobileconfig",
        Some(&mdm),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not-found");
    h.get(
        &format!("/v1/profiles/default/devices/{bare}/enrollment.mobileconfig"),
        Some(&mdm),
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "malformed");
    let old_mac = h
        .get(&format!("{url}?platform=macos&os_version=13.6"), Some(&mdm))
        .await;
    old_mac.assert_problem(StatusCode::BAD_REQUEST, "malformed");
    assert_eq!(
        old_mac.json()["detail"],
        "an attested ACME payload needs macOS 14.0; the target is macOS 13.6"
    );
    h.get(&format!("{url}?colour=red"), Some(&mdm))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "malformed");
    h.get(
        &format!("/v1/profiles/default/devices/{id}/android.json?signed=true"),
        Some(&mdm),
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "malformed");
    let wrong_form = h
        .get(
            &format!("/v1/profiles/default/devices/{id}/android.json"),
            Some(&mdm),
        )
        .await;
    wrong_form.assert_problem(StatusCode::BAD_REQUEST, "malformed");
    assert_eq!(
        wrong_form.json()["detail"],
        "the android form is for Android devices, and the device is ios"
    );
    h.get(&format!("{url}?provisioner=servers"), Some(&mdm))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");

    let ok = h.get(&url, Some(&mdm)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.content_type, "application/x-apple-aspen-config");
    let profile = plist::Value::from_reader_xml(ok.body.as_slice()).unwrap();
    let payloads = profile.as_dictionary().unwrap()["PayloadContent"]
        .as_array()
        .unwrap();
    let acme = payloads
        .iter()
        .filter_map(plist::Value::as_dictionary)
        .find(|p| p["PayloadType"].as_string() == Some("com.apple.security.acme"))
        .unwrap();
    assert_eq!(
        acme["DirectoryURL"].as_string(),
        Some("https://postern.test:8443/acme/devices/directory")
    );
    assert_eq!(acme["ClientIdentifier"].as_string(), Some("F2LZK0AAPLE1"));
    let root = payloads
        .iter()
        .filter_map(plist::Value::as_dictionary)
        .find(|p| p["PayloadType"].as_string() == Some("com.apple.security.root"))
        .unwrap();
    assert_eq!(
        root["PayloadContent"].as_data(),
        Some(h.domain.pki().issuer().root().der())
    );
    assert!(h.audit_text().contains("profile.issue"));
}

#[tokio::test]
async fn the_declarative_secret_works_once_and_a_new_profile_replaces_it() {
    let h = harness().await;
    let id = h
        .device(json!({ "serial": "F2LZK0AAPLE1", "platform": "ios" }))
        .await;
    let url = format!(
        "/v1/profiles/default/devices/{id}/declarative?os_version=18.4&app=io.postern.messenger"
    );
    let first = h.get(&url, Some(ADMIN)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json());
    let v = first.json();
    assert_eq!(v["generation"], 1);
    let asset = &v["declarations"][0];
    assert_eq!(asset["Type"], "com.apple.asset.credential.acme");
    assert_eq!(
        v["declarations"][1]["Payload"]["AppConfig"]["Identities"][0]["AssetReference"],
        asset["Identifier"]
    );
    let cred_url = v["credential_url"].as_str().unwrap().to_owned();
    assert_eq!(asset["Payload"]["Reference"]["DataURL"], cred_url);
    let secret = cred_url.rsplit('/').next().unwrap().to_owned();
    assert!(
        !h.audit_text().contains(&secret),
        "the secret is never audited"
    );

    // wrong secret, then the right one once
    h.get(
        &format!("/v1/profiles/default/devices/{id}/declarative/credential/pes_wrong"),
        None,
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not-found");
    let doc = h.get(path_of(&cred_url), None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.content_type, "application/json");
    assert_eq!(
        asset["Payload"]["Reference"]["Hash-SHA-256"],
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &doc.body))
    );
    assert_eq!(asset["Payload"]["Reference"]["Size"], doc.body.len());
    assert_eq!(doc.json()["ClientIdentifier"], "F2LZK0AAPLE1");
    let again = h.get(path_of(&cred_url), None).await;
    again.assert_problem(StatusCode::NOT_FOUND, "not-found");
    assert_eq!(
        again.json()["detail"],
        "no credential at this URL: unknown, used, replaced or expired"
    );

    // a second profile's secret is replaced, unused, by a third
    let second = h.get(&url, Some(ADMIN)).await.json();
    assert_eq!(second["generation"], 2);
    assert_ne!(second["declarations"][0]["ServerToken"], Value::Null);
    let third = h.get(&url, Some(ADMIN)).await.json();
    h.get(path_of(second["credential_url"].as_str().unwrap()), None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    assert_eq!(
        h.get(path_of(third["credential_url"].as_str().unwrap()), None)
            .await
            .status,
        StatusCode::OK
    );
    // the MDM can always read the current document
    let mdm = h
        .get(
            &format!("/v1/profiles/default/devices/{id}/declarative/credential"),
            Some(ADMIN),
        )
        .await;
    assert_eq!(mdm.status, StatusCode::OK);
    assert_eq!(mdm.body, doc.body);
}

#[tokio::test]
async fn an_android_profile_replaces_the_previous_unused_binding_key() {
    let h = harness().await;
    let id = h
        .device(json!({ "serial": "PIXEL8SERIAL", "platform": "android" }))
        .await;
    let url = format!("/v1/profiles/default/devices/{id}/android.json");
    let a = h.get(&url, Some(ADMIN)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json());
    let cfg = a.json()["managedConfiguration"].clone();
    assert_eq!(cfg["device_id"], id.as_str());
    assert_eq!(cfg["client_identifier"], "PIXEL8SERIAL");
    assert_eq!(cfg["attestation_required"], true);
    let kid1 = cfg["enrollment_kid"].as_str().unwrap().to_owned();
    let stored: Value =
        serde_json::from_slice(&h.store.doc(DocKind::AcmeEab, &kid1).unwrap().unwrap()).unwrap();
    assert_eq!(stored["device"], id.as_str());
    let secret = cfg["enrollment_secret"].as_str().unwrap().to_owned();
    assert!(!h.audit_text().contains(&secret));
    let b = h.get(&url, Some(ADMIN)).await.json();
    let kid2 = b["managedConfiguration"]["enrollment_kid"]
        .as_str()
        .unwrap();
    assert_ne!(kid1, kid2);
    assert!(
        h.store.doc(DocKind::AcmeEab, &kid1).unwrap().is_none(),
        "the unused key is gone"
    );
    assert!(h.store.doc(DocKind::AcmeEab, kid2).unwrap().is_some());
}

#[tokio::test]
async fn the_signed_profile_is_cms_over_the_profile_by_a_profile_signing_certificate() {
    let h = harness().await;
    let id = h
        .device(json!({ "serial": "F2LZK0AAPLE1", "platform": "ios" }))
        .await;
    let r = h
        .get(
            &format!("/v1/profiles/default/devices/{id}/enrollment.mobileconfig?signed=true"),
            Some(ADMIN),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.content_type, "application/pkcs7-mime");
    let v = postern_profiles::cms::verify(&r.body).unwrap();
    let profile = plist::Value::from_reader_xml(v.content.as_slice()).unwrap();
    assert_eq!(
        profile.as_dictionary().unwrap()["PayloadType"].as_string(),
        Some("Configuration")
    );
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, signer) = X509Certificate::from_der(&v.signer_cert).unwrap();
    let (_, issuing) =
        X509Certificate::from_der(h.domain.pki().issuer().certificate().der()).unwrap();
    signer.verify_signature(Some(issuing.public_key())).unwrap();
    let eku = signer.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.email_protection && !eku.client_auth && !eku.server_auth);
    assert!(
        v.certificates
            .iter()
            .any(|c| c == h.domain.pki().issuer().certificate().der())
    );
    // a second signed profile reuses the signing key
    let r2 = h
        .get(
            &format!("/v1/profiles/default/devices/{id}/enrollment.mobileconfig?signed=true"),
            Some(ADMIN),
        )
        .await;
    assert_eq!(
        postern_profiles::cms::verify(&r2.body).unwrap().signer_cert,
        v.signer_cert
    );
}
