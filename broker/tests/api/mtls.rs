//! Gateway client certificates without a socket: `Domain::authenticate_certificate` under a
//! manual clock (good, revoked, expired, not yet valid, other profiles, forgeries, garbage),
//! and the `Caller` extractor reading the certificate the TLS listener puts into a request.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use postern_broker::app;
use postern_broker::domain::pki::IssueCommand;
use postern_broker::domain::{Domain, ErrorKind, ManualClock, Principal};
use postern_broker::http::auth::ClientCertificate;
use postern_broker::http::{AppState, router};
use postern_broker::model::{RevocationReason, Role};
use postern_broker::store::memory::MemoryStore;

fn csr() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
        .into_bytes()
}

struct Harness {
    domain: Arc<Domain>,
    clock: Arc<ManualClock>,
}

async fn harness() -> Harness {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let domain = app::ephemeral(Arc::new(MemoryStore::new()), clock.clone())
        .await
        .unwrap();
    domain
        .create_tenant(&Principal::cli(), "acme", "Acme")
        .await
        .unwrap();
    Harness { domain, clock }
}

impl Harness {
    /// Issues for tenant `acme`; (serial, DER).
    async fn issue(&self, profile: &str, names: &[&str]) -> (String, Vec<u8>) {
        let names = names
            .iter()
            .map(|n| postern_certs::names::SubjectName::parse_tagged(n).unwrap())
            .collect();
        let issued = self
            .domain
            .issue_from_csr(
                &Principal::cli(),
                IssueCommand {
                    tenant: Some("acme".into()),
                    csr: csr(),
                    profile: profile.into(),
                    names: Some(names),
                    ..IssueCommand::default()
                },
            )
            .await
            .unwrap();
        let der = pem::parse(&issued.certificate_pem).unwrap().into_contents();
        (issued.record.serial, der)
    }

    async fn gateway(&self) -> (String, Vec<u8>) {
        self.issue("gateway-client", &["uri:urn:postern:gateway:acme:gw-1"])
            .await
    }

    fn refused(&self, der: &[u8], detail: &str) {
        let e = self.domain.authenticate_certificate(der).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
        assert_eq!(e.detail, format!("client certificate refused: {detail}"));
    }
}

#[tokio::test]
async fn a_gateway_certificate_is_its_tenants_gateway_while_good_and_valid() {
    let h = harness().await;
    let (serial, der) = h.gateway().await;
    let p = h.domain.authenticate_certificate(&der).unwrap();
    assert_eq!(
        p,
        Principal {
            tenant: "acme".into(),
            role: Role::Gateway,
            actor_id: format!("cert:{serial}"),
        }
    );
    // a gateway is not an admin
    assert_eq!(p.require_admin().unwrap_err().kind, ErrorKind::Forbidden);

    // notBefore is a minute before issuance
    h.clock.advance(time::Duration::minutes(-2));
    h.refused(&der, &format!("certificate {serial} is not valid yet"));
    h.clock.advance(time::Duration::minutes(2));
    // 30 days by default: good on day 29, expired on day 31
    h.clock.advance(time::Duration::days(29));
    assert!(h.domain.authenticate_certificate(&der).is_ok());
    h.clock.advance(time::Duration::days(2));
    h.refused(&der, &format!("certificate {serial} has expired"));
}

#[tokio::test]
async fn revoked_other_profiles_forgeries_and_garbage_are_refused() {
    let h = harness().await;
    let (serial, der) = h.gateway().await;
    h.domain
        .revoke(&Principal::cli(), &serial, RevocationReason::KeyCompromise)
        .await
        .unwrap();
    h.refused(&der, &format!("certificate {serial} is revoked"));

    let (_, device) = h
        .issue("device-identity", &["permanent-identifier:C02XK0AAJGH5"])
        .await;
    h.refused(
        &device,
        "a device-identity certificate is not a gateway certificate",
    );
    let (_, server) = h.issue("tls-server", &["dns:gw.acme.example"]).await;
    h.refused(
        &server,
        "a tls-server certificate is not a gateway certificate",
    );

    // another CA's certificate with the serial of a live gateway certificate
    let (live_serial, _) = h.gateway().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(
        &hex::decode(&live_serial).unwrap(),
    ));
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "urn:postern:gateway:acme:gw-1".try_into().unwrap(),
    )];
    let forged = params.self_signed(&key).unwrap().der().to_vec();
    h.refused(&forged, "not issued by this postern");
    // and one with a serial postern never issued
    let other = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec();
    h.refused(&other, "not issued by this postern");

    h.refused(b"", "not a DER X.509 certificate");
    h.refused(b"not a certificate", "not a DER X.509 certificate");
    let (_, good) = h.gateway().await;
    let mut trailing = good.clone();
    trailing.push(0);
    h.refused(&trailing, "not a DER X.509 certificate");
    assert!(h.domain.authenticate_certificate(&good).is_ok());
}

async fn whoami(
    app: &axum::Router,
    cert: Option<&[u8]>,
    bearer: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().uri("/v1/whoami");
    if let Some(c) = cert {
        req = req.extension(ClientCertificate(Arc::from(c)));
    }
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn the_caller_is_the_bearer_token_or_else_the_client_certificate() {
    let h = harness().await;
    h.domain
        .ensure_bootstrap_token(Some("test-admin-token-0123456789"))
        .await
        .unwrap();
    let acme = Arc::new(
        postern_broker::domain::acme::Acme::new(Arc::clone(&h.domain), Default::default()).unwrap(),
    );
    let posture = postern_broker::app::ephemeral_posture(&h.domain).unwrap();
    let app = router(
        AppState::new(Arc::clone(&h.domain), acme, posture),
        64 * 1024,
    );
    let (serial, der) = h.gateway().await;

    let r = whoami(&app, Some(&der), None).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    assert_eq!(
        r.1,
        json!({"tenant": "acme", "role": "gateway", "actor": format!("cert:{serial}")})
    );
    let r = whoami(&app, Some(&der), Some("test-admin-token-0123456789")).await;
    assert_eq!(
        r.1,
        json!({"tenant": "default", "role": "admin", "actor": "token:bootstrap"})
    );
    let r = whoami(&app, Some(&der), Some("wrong")).await;
    assert_eq!(r.0, StatusCode::UNAUTHORIZED);
    assert_eq!(r.1["detail"], "invalid or revoked token");
    let r = whoami(&app, None, None).await;
    assert_eq!(r.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.1["detail"],
        "a bearer token or a gateway client certificate is required"
    );
    let r = whoami(&app, Some(b"junk"), None).await;
    assert_eq!(r.0, StatusCode::UNAUTHORIZED);
    assert_eq!(r.1["type"], "urn:postern:problem:unauthorized");
    assert_eq!(
        r.1["detail"],
        "client certificate refused: not a DER X.509 certificate"
    );
    // the gateway may not administer
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/v1/admin/tokens")
                .extension(ClientCertificate(Arc::from(der.as_slice())))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}
