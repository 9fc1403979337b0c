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

/// Broker settings with a `device-attest-01` provisioner named `devices` that trusts `apple`'s
/// root (written to `dir/apple-root.pem`); `extra` is appended to the provisioner's table
/// (`tenant = "..."`, grant settings).
pub fn apple_provisioner(
    dir: &std::path::Path,
    apple: &postern_certs::attestation::testing::apple::AppleTestAuthority,
    extra: &str,
) -> String {
    let path = dir.join("apple-root.pem");
    std::fs::write(&path, apple.root_pem()).unwrap();
    format!(
        "\n[[acme.provisioners]]\nname = \"devices\"\nchallenge = \"device-attest-01\"\n\
         profile = \"device-identity\"\nroots = {{ apple = {:?} }}\n{extra}\n",
        path.display().to_string()
    )
}

/// The capability statement a messaging client signs with its certified key (`POST
/// /v1/capabilities`): `typ` postern-capabilities+jwt, the certificate in `x5c`, RCS E2EE with
/// MLS.
pub fn capability_statement(key: &DeviceKey, leaf_der: &[u8], jti: &str) -> String {
    use base64::Engine as _;
    let signer = KeySigner::from_pkcs8(&key.pkcs8).unwrap();
    let mut h = serde_json::Map::new();
    h.insert(
        "x5c".into(),
        json!([base64::engine::general_purpose::STANDARD.encode(leaf_der)]),
    );
    let payload = json!({
        "jti": jti,
        "iat": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        "rcs_e2ee": { "mls_ciphersuites": [1], "client_version": "Messages 2026.3" },
    });
    postern_certs::jws::sign_compact(
        &signer,
        Some("postern-capabilities+jwt"),
        h,
        &serde_json::to_vec(&payload).unwrap(),
    )
    .unwrap()
}

/// A certificate (DER) as PEM.
pub fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// Writes `leaf.pem` and `issuing.pem` (from an issued chain, PEM) and `root.pem` into `dir`
/// for [`openssl_ocsp`]; the leaf's DER.
pub fn write_ocsp_files(dir: &std::path::Path, broker: &Broker, chain_pem: &str) -> Vec<u8> {
    let blocks = crate::pem_der_blocks(chain_pem);
    assert_eq!(blocks.len(), 2, "leaf and issuing CA");
    std::fs::write(dir.join("leaf.pem"), certificate_pem(&blocks[0])).unwrap();
    std::fs::write(dir.join("issuing.pem"), certificate_pem(&blocks[1])).unwrap();
    std::fs::write(dir.join("root.pem"), broker.root_pem().unwrap()).unwrap();
    blocks[0].clone()
}

/// `openssl ocsp` against the broker's plain listener for the files [`write_ocsp_files`] wrote:
/// the status it prints for the leaf (`good`, `revoked`, ...).
pub fn openssl_ocsp(dir: &std::path::Path, broker: &Broker) -> String {
    let o = std::process::Command::new("openssl")
        .args(["ocsp", "-no_nonce", "-issuer"])
        .arg(dir.join("issuing.pem"))
        .arg("-cert")
        .arg(dir.join("leaf.pem"))
        .arg("-CAfile")
        .arg(dir.join("root.pem"))
        .args(["-url", &format!("{}/pki/ocsp", broker.http)])
        .output()
        .expect("openssl on PATH");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "openssl ocsp: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let prefix = format!("{}: ", dir.join("leaf.pem").display());
    out.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .unwrap_or_default()
        .to_owned()
}
