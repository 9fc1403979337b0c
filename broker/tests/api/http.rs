//! The HTTP API through the router (no socket): issuance, revocation, tenancy, and every bad
//! input answered with a 4xx problem document while the store stays unchanged.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use postern_broker::app;
use postern_broker::domain::{Domain, SystemClock};
use postern_broker::http::{AppState, router};
use postern_broker::store::Store;
use postern_broker::store::memory::MemoryStore;

const ADMIN: &str = "test-admin-token-0123456789";
const MAX_BODY: usize = 64 * 1024;

struct Harness {
    domain: Arc<Domain>,
    store: Arc<dyn Store>,
    app: axum::Router,
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
    let app = router(AppState::new(Arc::clone(&domain), acme, posture), MAX_BODY);
    Harness { domain, store, app }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn csr(sans: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

impl Harness {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, String, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b)),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, ct, v)
    }

    async fn post(
        &self,
        uri: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, String, Value) {
        self.call("POST", uri, token, Some(serde_json::to_vec(&body).unwrap()))
            .await
    }

    fn counts(&self) -> (u64, usize) {
        (
            self.store.certificate_count().unwrap(),
            self.store.audit_entries(1, 100_000).unwrap().len(),
        )
    }
}

fn assert_problem(r: &(StatusCode, String, Value), status: StatusCode, kind: &str) {
    assert_eq!(r.0, status, "body: {}", r.2);
    assert_eq!(r.1, "application/problem+json");
    assert_eq!(
        r.2["type"],
        format!("urn:postern:problem:{kind}"),
        "body: {}",
        r.2
    );
    assert_eq!(r.2["status"], status.as_u16());
    assert!(r.2["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

#[tokio::test]
async fn issue_fetch_and_revoke() {
    let h = harness().await;
    let r = h
        .post(
            "/v1/admin/certificates",
            Some(ADMIN),
            json!({"csr": csr(&["gw.example.com"]), "profile": "tls-server"}),
        )
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.2);
    let serial = r.2["serial"].as_str().unwrap().to_owned();
    assert_eq!(r.2["names"], json!(["dns:gw.example.com"]));
    assert_eq!(
        r.2["chain_pem"]
            .as_str()
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );

    let got = h
        .call(
            "GET",
            &format!("/v1/admin/certificates/{serial}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(got.2["status"], "good");

    let rev = h
        .post(
            &format!("/v1/admin/certificates/{serial}/revoke"),
            Some(ADMIN),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(rev.0, StatusCode::OK, "{}", rev.2);
    assert_eq!(rev.2["status"], "revoked");
    assert_eq!(rev.2["revocation_reason"], "keyCompromise");

    let before = h.counts();
    let again = h
        .post(
            &format!("/v1/admin/certificates/{serial}/revoke"),
            Some(ADMIN),
            json!({"reason": "superseded"}),
        )
        .await;
    assert_problem(&again, StatusCode::CONFLICT, "already-revoked");
    assert_eq!(h.counts(), before);
    let still = h
        .call(
            "GET",
            &format!("/v1/admin/certificates/{serial}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(still.2["revocation_reason"], "keyCompromise");
}

#[tokio::test]
async fn real_world_csrs_are_accepted() {
    let h = harness().await;
    for f in [
        "p256.csr.pem",
        "rsa2048_ski_request.csr.pem",
        "rsa_pss_signed.csr.pem",
    ] {
        let r = h
            .post(
                "/v1/admin/certificates",
                Some(ADMIN),
                json!({"csr": fixture(f), "profile": "tls-server"}),
            )
            .await;
        assert_eq!(r.0, StatusCode::CREATED, "{f}: {}", r.2);
    }
}

#[tokio::test]
async fn bad_input_is_a_problem_and_changes_nothing() {
    let h = harness().await;
    let before = h.counts();
    let issue = |csr: String, profile: &str| json!({"csr": csr, "profile": profile});
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "garbage csr",
            issue("not a csr".into(), "tls-server"),
            StatusCode::BAD_REQUEST,
            "bad-csr",
        ),
        (
            "truncated csr",
            issue(fixture("truncated.csr.pem"), "tls-server"),
            StatusCode::BAD_REQUEST,
            "bad-csr",
        ),
        (
            "bad signature",
            issue(fixture("bad_signature.csr.pem"), "tls-server"),
            StatusCode::BAD_REQUEST,
            "bad-csr",
        ),
        (
            "rsa-1024",
            issue(fixture("rsa1024.csr.pem"), "tls-server"),
            StatusCode::BAD_REQUEST,
            "bad-csr",
        ),
        (
            "p-521",
            issue(fixture("p521_curve.csr.pem"), "tls-server"),
            StatusCode::BAD_REQUEST,
            "bad-csr",
        ),
        (
            "sha-1",
            issue(fixture("sha1_signed.csr.pem"), "tls-server"),
            StatusCode::BAD_REQUEST,
            "bad-csr",
        ),
        (
            "unknown profile",
            issue(csr(&["a.example"]), "no-such-profile"),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "forbidden san",
            json!({"csr": csr(&["a.example"]), "profile": "tls-server", "names": ["uri:tel:+15551234567"]}),
            StatusCode::BAD_REQUEST,
            "bad-csr",
        ),
        (
            "forbidden san in csr",
            issue(csr(&["a.example"]), "messaging-identity"),
            StatusCode::BAD_REQUEST,
            "bad-csr",
        ),
        (
            "malformed name",
            json!({"csr": csr(&["a.example"]), "profile": "tls-server", "names": ["dns:-bad-"]}),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "validity over the profile's maximum",
            json!({"csr": csr(&["a.example"]), "profile": "tls-server", "validity_seconds": 400 * 86400}),
            StatusCode::BAD_REQUEST,
            "bad-csr",
        ),
        (
            "unknown field",
            json!({"csr": "x", "profile": "tls-server", "evil": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "malformed",
        ),
        (
            "missing field",
            json!({"profile": "tls-server"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "malformed",
        ),
    ];
    for (name, body, status, kind) in cases {
        let r = h.post("/v1/admin/certificates", Some(ADMIN), body).await;
        assert_eq!(r.0, status, "{name}: {}", r.2);
        assert_problem(&r, status, kind);
    }
    // not JSON at all
    let r = h
        .call(
            "POST",
            "/v1/admin/certificates",
            Some(ADMIN),
            Some(b"{".to_vec()),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "malformed");
    // oversized
    let big = json!({"csr": "A".repeat(MAX_BODY + 1), "profile": "tls-server"});
    let r = h.post("/v1/admin/certificates", Some(ADMIN), big).await;
    assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");
    // authentication
    let body = json!({"csr": csr(&["a.example"]), "profile": "tls-server"});
    let r = h.post("/v1/admin/certificates", None, body.clone()).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    let r = h
        .post(
            "/v1/admin/certificates",
            Some("wrong-token-0123456789"),
            body.clone(),
        )
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    let r = h
        .post("/v1/admin/certificates", Some("pst_0000_nope"), body)
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    // unknown serials and bad serials
    let r = h
        .post("/v1/admin/certificates/0abc/revoke", Some(ADMIN), json!({}))
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not-found");
    let r = h
        .post("/v1/admin/certificates/zz/revoke", Some(ADMIN), json!({}))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "malformed");
    let r = h
        .call("GET", "/v1/admin/certificates/0abc", Some(ADMIN), None)
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not-found");
    // bad reason
    let r = h
        .post(
            "/v1/admin/certificates/0abc/revoke",
            Some(ADMIN),
            json!({"reason": "boredom"}),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "malformed");
    // routing
    let r = h.call("GET", "/v1/nothing-here", Some(ADMIN), None).await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not-found");
    let r = h
        .call("DELETE", "/v1/admin/certificates", Some(ADMIN), None)
        .await;
    assert_problem(&r, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");

    assert_eq!(h.counts(), before, "a refused request changed the store");
}

#[tokio::test]
async fn tokens_are_scoped_to_tenant_and_role_and_revocable() {
    let h = harness().await;
    let r = h
        .post(
            "/v1/admin/tenants",
            Some(ADMIN),
            json!({"id": "acme", "name": "Acme"}),
        )
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.2);
    let dup = h
        .post("/v1/admin/tenants", Some(ADMIN), json!({"id": "acme"}))
        .await;
    assert_problem(&dup, StatusCode::CONFLICT, "conflict");
    let bad = h
        .post("/v1/admin/tenants", Some(ADMIN), json!({"id": "Not Valid"}))
        .await;
    assert_problem(&bad, StatusCode::BAD_REQUEST, "malformed");

    let mk = |tenant: &str, role: &str| json!({"tenant": tenant, "role": role, "label": "t"});
    let acme_admin = h
        .post("/v1/admin/tokens", Some(ADMIN), mk("acme", "admin"))
        .await;
    assert_eq!(acme_admin.0, StatusCode::CREATED);
    let acme_admin_token = acme_admin.2["token"].as_str().unwrap().to_owned();
    let acme_gw = h
        .post("/v1/admin/tokens", Some(ADMIN), mk("acme", "gateway"))
        .await;
    let acme_gw_token = acme_gw.2["token"].as_str().unwrap().to_owned();
    let no_tenant = h
        .post("/v1/admin/tokens", Some(ADMIN), mk("nope", "admin"))
        .await;
    assert_problem(&no_tenant, StatusCode::NOT_FOUND, "not-found");
    let bad_role = h
        .post("/v1/admin/tokens", Some(ADMIN), mk("acme", "root"))
        .await;
    assert_problem(&bad_role, StatusCode::BAD_REQUEST, "malformed");

    // the listing never shows a secret
    let list = h
        .call("GET", "/v1/admin/tokens?tenant=acme", Some(ADMIN), None)
        .await;
    assert_eq!(list.2.as_array().unwrap().len(), 2);
    assert!(
        list.2
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none())
    );

    // a default-tenant certificate is invisible to acme
    let issued = h
        .post(
            "/v1/admin/certificates",
            Some(ADMIN),
            json!({"csr": csr(&["a.example"]), "profile": "tls-server"}),
        )
        .await;
    let serial = issued.2["serial"].as_str().unwrap().to_owned();
    let r = h
        .call(
            "GET",
            &format!("/v1/admin/certificates/{serial}"),
            Some(&acme_admin_token),
            None,
        )
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not-found");
    let r = h
        .post(
            &format!("/v1/admin/certificates/{serial}/revoke"),
            Some(&acme_admin_token),
            json!({}),
        )
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not-found");

    // acme's admin issues for acme, not for another tenant
    let r = h
        .post(
            "/v1/admin/certificates",
            Some(&acme_admin_token),
            json!({"csr": csr(&["b.example"]), "profile": "tls-server"}),
        )
        .await;
    assert_eq!(r.0, StatusCode::CREATED);
    assert_eq!(r.2["tenant"], "acme");
    let r = h
        .post(
            "/v1/admin/certificates",
            Some(&acme_admin_token),
            json!({"csr": csr(&["b.example"]), "profile": "tls-server", "tenant": "default"}),
        )
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = h
        .post(
            "/v1/admin/tenants",
            Some(&acme_admin_token),
            json!({"id": "other"}),
        )
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");

    // a gateway token may not issue
    let r = h
        .post(
            "/v1/admin/certificates",
            Some(&acme_gw_token),
            json!({"csr": csr(&["c.example"]), "profile": "tls-server"}),
        )
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");

    // revocation takes effect at once
    let id = acme_admin.2["id"].as_str().unwrap();
    let r = h
        .post(
            &format!("/v1/admin/tokens/{id}/revoke"),
            Some(ADMIN),
            json!({}),
        )
        .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.2);
    let r = h
        .call("GET", "/v1/admin/tenants", Some(&acme_admin_token), None)
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn pki_endpoints_serve_what_relying_parties_need() {
    let h = harness().await;
    let r = h.call("GET", "/pki/ca", None, None).await;
    assert_eq!(r.0, StatusCode::OK);
    assert_eq!(r.1, "application/pem-certificate-chain");
    let r = h.call("GET", "/pki/crl", None, None).await;
    assert_eq!(r.0, StatusCode::OK);
    assert_eq!(r.1, "application/pkix-crl");
    let r = h.call("GET", "/healthz", None, None).await;
    assert_eq!(r.2["status"], "ok");
    let r = h.call("GET", "/readyz", None, None).await;
    assert_eq!(r.0, StatusCode::OK);
    // a garbage OCSP request is answered with an OCSP malformedRequest, not an HTTP error
    let req = Request::builder()
        .method("POST")
        .uri("/pki/ocsp")
        .header(header::CONTENT_TYPE, "application/ocsp-request")
        .body(Body::from(vec![0x30, 0x03, 0x02, 0x01]))
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], &[0x30, 0x03, 0x0a, 0x01, 0x01]);
    let _ = &h.domain;
}
