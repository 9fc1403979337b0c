//! End-to-end: a real broker on loopback (HTTPS with its own CA, plain HTTP for CRL/OCSP, sled
//! on disk), driven over the network with reqwest, stopped and started again on the same data
//! directory.

// A failed unwrap in a test or a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate, parse_x509_crl};

use postern_e2e::{ADMIN_TOKEN, Broker, client_trusting};

fn csr(sans: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
}

fn der_blocks(pem_text: &str) -> Vec<Vec<u8>> {
    postern_e2e::pem_der_blocks(pem_text)
}

async fn issue(client: &reqwest::Client, broker: &Broker, sans: &[&str]) -> Value {
    let r = client
        .post(format!("{}/v1/admin/certificates", broker.https))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"csr": csr(sans), "profile": "tls-server"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn status_of(client: &reqwest::Client, broker: &Broker, serial: &str) -> String {
    let r: Value = client
        .get(format!("{}/v1/admin/certificates/{serial}", broker.https))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["status"].as_str().unwrap().to_owned()
}

#[test]
fn ca_service_over_https_keeps_everything_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();

    let broker = Broker::start(dir.path()).unwrap();
    let root_before = broker.root_pem().unwrap();
    let client = broker.client().unwrap();
    let (kept, revoked, crl_der) = rt.block_on(async {
        let health: Value = client
            .get(format!("{}/healthz", broker.https))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["status"], "ok");
        let ready = client
            .get(format!("{}/readyz", broker.https))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);

        let kept = issue(&client, &broker, &["kept.example.com"]).await;
        let revoked = issue(&client, &broker, &["gone.example.com"]).await;

        // the chain verifies: leaf ← issuing ← root
        let chain = der_blocks(kept["chain_pem"].as_str().unwrap());
        let root = der_blocks(&root_before).remove(0);
        let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
        let (_, issuing) = X509Certificate::from_der(&chain[1]).unwrap();
        let (_, root) = X509Certificate::from_der(&root).unwrap();
        leaf.verify_signature(Some(issuing.public_key())).unwrap();
        issuing.verify_signature(Some(root.public_key())).unwrap();
        root.verify_signature(None).unwrap();

        let serial = revoked["serial"].as_str().unwrap();
        let r = client
            .post(format!(
                "{}/v1/admin/certificates/{serial}/revoke",
                broker.https
            ))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"reason": "keyCompromise"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        // the CRL over plain HTTP, where the certificate's distribution point says
        let crl = reqwest::get(format!("{}/pki/crl", broker.http))
            .await
            .unwrap();
        assert_eq!(crl.headers()["content-type"], "application/pkix-crl");
        let crl_der = crl.bytes().await.unwrap().to_vec();
        (kept, revoked, crl_der)
    });
    let (_, crl) = parse_x509_crl(&crl_der).unwrap();
    let chain = der_blocks(kept["chain_pem"].as_str().unwrap());
    let (_, issuing) = X509Certificate::from_der(&chain[1]).unwrap();
    crl.verify_signature(issuing.public_key()).unwrap();
    let listed: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| hex(r.raw_serial()))
        .collect();
    assert_eq!(listed, vec![revoked["serial"].as_str().unwrap().to_owned()]);
    drop(client);
    broker.stop();

    // same data directory, new process state
    let broker = Broker::start(dir.path()).unwrap();
    assert_eq!(
        broker.root_pem().unwrap(),
        root_before,
        "the CA changed across a restart"
    );
    let client = broker.client().unwrap();
    rt.block_on(async {
        let served = client
            .get(format!("{}/pki/ca/root.pem", broker.https))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(served, root_before);
        assert_eq!(
            status_of(&client, &broker, kept["serial"].as_str().unwrap()).await,
            "good"
        );
        assert_eq!(
            status_of(&client, &broker, revoked["serial"].as_str().unwrap()).await,
            "revoked"
        );
        let again = issue(&client, &broker, &["after.example.com"]).await;
        assert_ne!(again["serial"], kept["serial"]);
        let audit: Value = client
            .get(format!("{}/v1/admin/audit/verify", broker.https))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // tenant, tokens, CA, OCSP and TLS leaves, three issuances, one revocation
        assert!(audit["entries"].as_u64().unwrap() >= 8, "{audit}");
    });
}

#[test]
fn a_client_that_does_not_trust_the_root_cannot_connect() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path()).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let stranger = client_trusting(&other.cert.pem()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(stranger.get(format!("{}/healthz", broker.https)).send());
    assert!(
        err.is_err(),
        "a client with another root must fail the TLS handshake"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
