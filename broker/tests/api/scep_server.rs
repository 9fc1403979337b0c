//! The SCEP protocol endpoints through the router, with `postern_certs::scep::testing` as the
//! client: the RA (made once, reused from the data directory), GetCACaps, GetCACert, and the
//! PKIOperation refusals (400 for what does not parse, a signed FAILURE with the failInfo
//! otherwise).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use postern_certs::scep::testing::{self, Client};
use postern_certs::scep::{
    ContentEncryption, DigestAlgorithm, FailInfo, MessageType, PkiStatus, Ra, open_cert_rep,
};
use tower::ServiceExt as _;
use x509_parser::prelude::{FromDer, X509Certificate};

use postern_broker::app;
use postern_broker::domain::acme::{Acme, AcmeSettings};
use postern_broker::domain::devices::NewDevice;
use postern_broker::domain::scep::Scep;
use postern_broker::domain::{Domain, Principal, SystemClock};
use postern_broker::http::scep::CA_CAPS;
use postern_broker::http::{AppState, plain_router, router};
use postern_broker::keystore::{FileKeyStore, KeyName};
use postern_broker::model::{DEFAULT_TENANT, Role};
use postern_broker::store::memory::MemoryStore;

struct Harness {
    posture: Arc<postern_broker::domain::posture::Posture>,
    domain: Arc<Domain>,
    scep: Arc<Scep>,
    ra: Arc<Ra>,
    app: axum::Router,
    plain: axum::Router,
}

async fn harness() -> Harness {
    let domain = app::ephemeral(Arc::new(MemoryStore::new()), Arc::new(SystemClock))
        .await
        .unwrap();
    let ra = Arc::new(
        postern_broker::scep_ra::ephemeral_ra(&domain)
            .await
            .unwrap(),
    );
    let scep = Arc::new(Scep::defaults(Arc::clone(&domain)).with_ra(Arc::clone(&ra)));
    let acme = Arc::new(Acme::new(Arc::clone(&domain), AcmeSettings::default()).unwrap());
    let posture = app::ephemeral_posture(&domain).unwrap();
    let state =
        AppState::new(Arc::clone(&domain), acme, Arc::clone(&posture)).with_scep(Arc::clone(&scep));
    Harness {
        posture,
        domain,
        scep,
        ra,
        app: router(state.clone(), 64 * 1024),
        plain: plain_router(state, 64 * 1024),
    }
}

async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Vec<u8>,
) -> (StatusCode, String, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "broker.test")
        .header(header::CONTENT_TYPE, "application/x-pki-message")
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ct = resp
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
    (status, ct, body)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn pkcs_req(client: &Client, ra: &Ra, encryption: ContentEncryption) -> Vec<u8> {
    let csr = client.csr("device-1", Some("not-a-challenge"));
    testing::client_request(
        client,
        ra.cert_der(),
        &testing::Request {
            message_type: MessageType::PkcsReq,
            transaction_id: "tx-1",
            sender_nonce: b"0123456789abcdef",
            inner: &csr,
            encryption,
            digest: DigestAlgorithm::Sha256,
        },
    )
}

#[tokio::test]
async fn ra_certificate_is_issued_by_the_issuing_ca_for_rsa_key_transport() {
    let h = harness().await;
    let (_, cert) = X509Certificate::from_der(h.ra.cert_der()).unwrap();
    let issuer = h.domain.pki().issuer();
    let (_, ca) = X509Certificate::from_der(issuer.certificate().der()).unwrap();
    cert.verify_signature(Some(ca.public_key())).unwrap();
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment());
    assert!(!ku.key_cert_sign());
    assert_eq!(
        cert.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.113549.1.1.1"
    );
    assert_eq!(h.ra.chain()[0], issuer.certificate().der());
    assert_eq!(h.ra.chain().last().unwrap(), issuer.root().der());
}

#[tokio::test]
async fn ra_is_made_once_in_the_data_directory_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let domain = app::ephemeral(Arc::new(MemoryStore::new()), Arc::new(SystemClock))
        .await
        .unwrap();
    let keys = FileKeyStore::new(dir.path(), None);
    let first = postern_broker::scep_ra::ensure_ra(&domain, &keys)
        .await
        .unwrap();
    assert!(keys.has_key(KeyName::ScepRa) && keys.has_cert(KeyName::ScepRa));
    let second = postern_broker::scep_ra::ensure_ra(&domain, &keys)
        .await
        .unwrap();
    assert_eq!(first.cert_der(), second.cert_der());
    // a file from another CA is not reused
    let other = app::ephemeral(Arc::new(MemoryStore::new()), Arc::new(SystemClock))
        .await
        .unwrap();
    let third = postern_broker::scep_ra::ensure_ra(&other, &keys)
        .await
        .unwrap();
    assert_ne!(first.cert_der(), third.cert_der());
}

#[tokio::test]
async fn get_ca_caps_and_get_ca_cert() {
    let h = harness().await;
    for app in [&h.app, &h.plain] {
        for path in ["/scep/scep", "/scep/scep/pkiclient.exe"] {
            let (status, ct, body) =
                send(app, "GET", &format!("{path}?operation=GetCACaps"), vec![]).await;
            assert_eq!(status, StatusCode::OK);
            assert!(ct.starts_with("text/plain"), "{ct}");
            let caps: Vec<&str> = std::str::from_utf8(&body).unwrap().lines().collect();
            assert_eq!(
                caps,
                [
                    "POSTPKIOperation",
                    "SHA-256",
                    "SHA-512",
                    "AES",
                    "DES3",
                    "Renewal",
                    "SCEPStandard"
                ]
            );
            assert_eq!(body, CA_CAPS.as_bytes());

            let (status, ct, body) =
                send(app, "GET", &format!("{path}?operation=GetCACert"), vec![]).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(ct, "application/x-x509-ca-ra-cert");
            assert_eq!(body, h.ra.ca_certs());
            let issuer = h.domain.pki().issuer();
            assert!(contains(&body, h.ra.cert_der()));
            assert!(contains(&body, issuer.certificate().der()));
            assert!(contains(&body, issuer.root().der()));
        }
    }
}

#[tokio::test]
async fn unknown_provisioner_and_operation() {
    let h = harness().await;
    let (status, _, _) = send(&h.app, "GET", "/scep/nobody?operation=GetCACaps", vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, body) = send(&h.app, "GET", "/scep/scep?operation=Nope", vec![]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, b"unknown operation\n");
    let (status, _, body) = send(&h.app, "GET", "/scep/scep", vec![]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, b"missing operation\n");
}

#[tokio::test]
async fn garbage_is_400_and_oversized_is_413() {
    let h = harness().await;
    let (status, ct, body) = send(
        &h.app,
        "POST",
        "/scep/scep?operation=PKIOperation",
        b"not a pkiMessage".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(ct.starts_with("text/plain"));
    assert_eq!(body, b"not a SCEP message\n");
    let (status, _, body) = send(
        &h.app,
        "GET",
        "/scep/scep?operation=PKIOperation&message=%%%",
        vec![],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _, _) = send(
        &h.app,
        "POST",
        "/scep/scep?operation=PKIOperation",
        vec![0x30; 65 * 1024],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn wrongly_signed_request_gets_a_signed_bad_message_check() {
    let h = harness().await;
    let client = Client::generate("scep client");
    let mut msg = pkcs_req(&client, &h.ra, ContentEncryption::Aes256Cbc);
    // the signature is the last element of the SignerInfo, at the end of the message
    let last = msg.len() - 1;
    msg[last] ^= 0x01;
    let (status, ct, body) = send(&h.app, "POST", "/scep/scep?operation=PKIOperation", msg).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "application/x-pki-message");
    let rep = open_cert_rep(&body, &[], &client.cert_der, &client.key).unwrap();
    assert_eq!(rep.pki_status, PkiStatus::Failure);
    assert_eq!(rep.fail_info, Some(FailInfo::BadMessageCheck));
    assert_eq!(rep.transaction_id, "tx-1");
    assert_eq!(
        rep.recipient_nonce.as_deref(),
        Some(&b"0123456789abcdef"[..])
    );
    assert_eq!(rep.signer_cert_der, h.ra.cert_der());
    assert_eq!(rep.digest, DigestAlgorithm::Sha256);
}

#[tokio::test]
async fn verified_requests_are_refused_with_bad_request_by_post_and_get() {
    let h = harness().await;
    let client = Client::generate("scep client");
    let msg = pkcs_req(&client, &h.ra, ContentEncryption::DesEde3Cbc);
    let (status, _, body) = send(
        &h.plain,
        "POST",
        "/scep/scep/pkiclient.exe?operation=PKIOperation",
        msg.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rep = open_cert_rep(&body, &[], &client.cert_der, &client.key).unwrap();
    assert_eq!(rep.pki_status, PkiStatus::Failure);
    assert_eq!(rep.fail_info, Some(FailInfo::BadRequest));

    let b64 = base64::engine::general_purpose::STANDARD.encode(&msg);
    let q = url_escape(&b64);
    let (status, _, body) = send(
        &h.app,
        "GET",
        &format!("/scep/scep?operation=PKIOperation&message={q}"),
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rep = open_cert_rep(&body, &[], &client.cert_der, &client.key).unwrap();
    assert_eq!(rep.fail_info, Some(FailInfo::BadRequest));
}

fn url_escape(s: &str) -> String {
    s.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

fn admin() -> Principal {
    Principal {
        tenant: DEFAULT_TENANT.into(),
        role: Role::Admin,
        actor_id: "test".into(),
    }
}

async fn device(h: &Harness, serial: &str) -> String {
    h.domain
        .register_device(
            &admin(),
            NewDevice {
                tenant: None,
                serial: Some(serial.into()),
                udid: None,
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

fn enroll_req(client: &Client, ra: &Ra, cn: &str, challenge: &str) -> Vec<u8> {
    let csr = client.csr(cn, Some(challenge));
    testing::client_request(
        client,
        ra.cert_der(),
        &testing::Request {
            message_type: MessageType::PkcsReq,
            transaction_id: "tx-enroll",
            sender_nonce: b"fedcba9876543210",
            inner: &csr,
            encryption: ContentEncryption::Aes256Cbc,
            digest: DigestAlgorithm::Sha256,
        },
    )
}

#[tokio::test]
async fn pkcs_req_with_a_fresh_challenge_is_issued_once() {
    let h = harness().await;
    let id = device(&h, "C02SCEP0001").await;
    let ch = h
        .scep
        .create_challenge(&admin(), "scep", &id)
        .await
        .unwrap();
    let client = Client::generate("scep client");
    let msg = enroll_req(&client, &h.ra, "C02SCEP0001", &ch.challenge);
    let (status, _, body) = send(
        &h.app,
        "POST",
        "/scep/scep?operation=PKIOperation",
        msg.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rep = open_cert_rep(&body, &[], &client.cert_der, &client.key).unwrap();
    assert_eq!(rep.pki_status, PkiStatus::Success, "{:?}", rep.fail_info);
    assert_eq!(rep.content_encryption, Some(ContentEncryption::Aes256Cbc));
    let (_, leaf) = X509Certificate::from_der(&rep.certificates[0]).unwrap();
    let issuer = h.domain.pki().issuer();
    let (_, ca) = X509Certificate::from_der(issuer.certificate().der()).unwrap();
    leaf.verify_signature(Some(ca.public_key())).unwrap();
    assert_eq!(
        leaf.public_key().raw,
        X509Certificate::from_der(&client.cert_der)
            .unwrap()
            .1
            .public_key()
            .raw
    );
    assert!(
        rep.certificates
            .iter()
            .any(|c| c == issuer.certificate().der())
    );

    // the posture record holds the credential, not hardware-attested
    let (record, assessment) = h.posture.device_posture(&admin(), None, &id).unwrap();
    assert_eq!(record.credentials.len(), 1);
    assert_eq!(record.credentials[0].protocol, "scep");
    assert_eq!(
        record.credentials[0].key,
        postern_broker::domain::posture::record::CredentialKey::Unattested
    );
    assert!(record.attestation.is_none());
    assert_ne!(
        assessment.assurance,
        postern_broker::domain::posture::policy::Assurance::Attested
    );

    // a renewal signed by the issued certificate, without a challenge
    let renewing = Client {
        pkcs8: client.pkcs8.clone(),
        key: postern_certs::scep::RsaKey::from_pkcs8(&client.pkcs8).unwrap(),
        cert_der: rep.certificates[0].clone(),
    };
    let renew = |signer: &Client| {
        let csr = signer.csr("C02SCEP0001", None);
        testing::client_request(
            signer,
            h.ra.cert_der(),
            &testing::Request {
                message_type: MessageType::RenewalReq,
                transaction_id: "tx-renew",
                sender_nonce: b"renewal-nonce-01",
                inner: &csr,
                encryption: ContentEncryption::Aes256Cbc,
                digest: DigestAlgorithm::Sha256,
            },
        )
    };
    let (_, _, body) = send(
        &h.app,
        "POST",
        "/scep/scep?operation=PKIOperation",
        renew(&renewing),
    )
    .await;
    let renewed = open_cert_rep(&body, &[], &renewing.cert_der, &renewing.key).unwrap();
    assert_eq!(
        renewed.pki_status,
        PkiStatus::Success,
        "{:?}",
        renewed.fail_info
    );
    assert_ne!(renewed.certificates[0], rep.certificates[0]);
    let (record, _) = h.posture.device_posture(&admin(), None, &id).unwrap();
    assert_eq!(record.credentials.len(), 2);
    // a renewal signed by a certificate postern did not issue: refused
    let (_, _, body) = send(
        &h.app,
        "POST",
        "/scep/scep?operation=PKIOperation",
        renew(&client),
    )
    .await;
    let refused = open_cert_rep(&body, &[], &client.cert_der, &client.key).unwrap();
    assert_eq!(refused.pki_status, PkiStatus::Failure);
    assert_eq!(refused.fail_info, Some(FailInfo::BadRequest));

    // the same challenge again: refused
    let client2 = Client::generate("scep client 2");
    let msg = enroll_req(&client2, &h.ra, "C02SCEP0001", &ch.challenge);
    let (_, _, body) = send(&h.app, "POST", "/scep/scep?operation=PKIOperation", msg).await;
    let rep = open_cert_rep(&body, &[], &client2.cert_der, &client2.key).unwrap();
    assert_eq!(rep.pki_status, PkiStatus::Failure);
    assert_eq!(rep.fail_info, Some(FailInfo::BadRequest));
}

#[tokio::test]
async fn another_devices_challenge_is_refused() {
    let h = harness().await;
    let id = device(&h, "C02SCEP0002").await;
    device(&h, "C02SCEP0003").await;
    let ch = h
        .scep
        .create_challenge(&admin(), "scep", &id)
        .await
        .unwrap();
    let client = Client::generate("scep client");
    let msg = enroll_req(&client, &h.ra, "C02SCEP0003", &ch.challenge);
    let (_, _, body) = send(&h.app, "POST", "/scep/scep?operation=PKIOperation", msg).await;
    let rep = open_cert_rep(&body, &[], &client.cert_der, &client.key).unwrap();
    assert_eq!(rep.pki_status, PkiStatus::Failure);
    assert_eq!(rep.fail_info, Some(FailInfo::BadRequest));
}

#[tokio::test]
async fn a_des_client_gets_its_answer_in_3des() {
    let h = harness().await;
    let id = device(&h, "C02SCEP0004").await;
    let ch = h
        .scep
        .create_challenge(&admin(), "scep", &id)
        .await
        .unwrap();
    let client = Client::generate("scep client");
    let csr = client.csr("C02SCEP0004", Some(&ch.challenge));
    let msg = testing::client_request(
        &client,
        h.ra.cert_der(),
        &testing::Request {
            message_type: MessageType::PkcsReq,
            transaction_id: "tx-des",
            sender_nonce: b"12345678",
            inner: &csr,
            encryption: ContentEncryption::DesCbc,
            digest: DigestAlgorithm::Sha1,
        },
    );
    let (_, _, body) = send(
        &h.plain,
        "POST",
        "/scep/scep/pkiclient.exe?operation=PKIOperation",
        msg,
    )
    .await;
    let rep = open_cert_rep(&body, &[], &client.cert_der, &client.key).unwrap();
    assert_eq!(rep.pki_status, PkiStatus::Success, "{:?}", rep.fail_info);
    assert_eq!(rep.content_encryption, Some(ContentEncryption::DesEde3Cbc));
    assert_eq!(rep.digest, DigestAlgorithm::Sha1);
}
