//! A device enrolling over ACME `device-attest-01`: its key, and the steps of the protocol as
//! one call each (the tests assert every answer on the way).

// These helpers assert like tests do: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::{Value, json};

use postern_certs::signer::generate;
use postern_certs::{KeyAlgorithm, KeySigner};

use crate::acme::{Client, attestation_payload, finalize_payload};
use crate::{ADMIN_TOKEN, Broker};

/// The device's key: a P-256 key pair (what a Secure Enclave or StrongBox would hold).
#[derive(Debug)]
pub struct DeviceKey {
    /// PKCS#8 DER.
    pub pkcs8: Vec<u8>,
    /// The same key for rcgen.
    pub rcgen: rcgen::KeyPair,
}

impl DeviceKey {
    /// A fresh key.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let pkcs8 = generate(KeyAlgorithm::EcdsaP256).unwrap().as_der().to_vec();
        let rcgen = rcgen::KeyPair::try_from(pkcs8.as_slice()).unwrap();
        DeviceKey { pkcs8, rcgen }
    }

    /// Its SubjectPublicKeyInfo (DER).
    pub fn spki(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.rcgen)
    }

    /// A CSR with commonName `cn`.
    pub fn csr(&self, cn: &str) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.serialize_request(&self.rcgen).unwrap().der().to_vec()
    }
}

/// Registers a device through the admin API; the device record.
pub async fn register_device(http: &reqwest::Client, broker: &Broker, body: Value) -> Value {
    let r = http
        .post(format!("{}/v1/admin/devices", broker.https))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

/// A registered ACME account on `provisioner`.
pub async fn account(broker: &Broker, provisioner: &str, alg: KeyAlgorithm) -> Client {
    let key: Arc<dyn postern_certs::Signer> =
        Arc::new(KeySigner::from_pkcs8(generate(alg).unwrap().as_der()).unwrap());
    let mut c = Client::new(
        broker.client().unwrap(),
        &format!("{}/acme/{provisioner}/directory", broker.https),
        key,
    )
    .await
    .unwrap();
    let r = c
        .register(json!({ "contact": ["mailto:it@example.test"] }))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    c
}

/// Orders `identifier`, returns (order URL, order, authz URL, challenge URL, token).
pub async fn order(
    c: &mut Client,
    kind: &str,
    value: &str,
) -> (String, Value, String, String, String) {
    let r = c
        .new_order(json!([{ "type": kind, "value": value }]))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let order = r.json();
    let authz_url = order["authorizations"][0].as_str().unwrap().to_owned();
    let authz = c.post(&authz_url, None).await.unwrap().json();
    let ch = authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "device-attest-01")
        .unwrap()
        .clone();
    (
        r.location.unwrap(),
        order,
        authz_url,
        ch["url"].as_str().unwrap().to_owned(),
        ch["token"].as_str().unwrap().to_owned(),
    )
}

/// Answers the challenge, finalizes with the device key's CSR and downloads the chain.
pub async fn complete(
    c: &mut Client,
    order_url: &str,
    order: &Value,
    chall: &str,
    att_obj: &[u8],
    key: &DeviceKey,
    cn: &str,
) -> String {
    let r = c
        .post(chall, Some(&attestation_payload(att_obj)))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["status"], "valid", "{}", r.json());
    let o = c.poll(order_url, 20).await.unwrap();
    assert_eq!(o["status"], "ready", "{o}");
    let r = c
        .post(
            order["finalize"].as_str().unwrap(),
            Some(&finalize_payload(&key.csr(cn))),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let o = r.json();
    assert_eq!(o["status"], "valid", "{o}");
    let cert = c
        .post(o["certificate"].as_str().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(cert.status, 200);
    assert_eq!(cert.content_type, "application/pem-certificate-chain");
    String::from_utf8(cert.body).unwrap()
}
