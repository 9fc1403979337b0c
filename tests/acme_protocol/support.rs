//! The harness of the ACME conformance tests: a broker with three provisioners, a response
//! type that keeps every header, problem document checks, request forgery helpers, and a full
//! `device-attest-01` enrollment.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use postern_certs::attestation::testing::apple::{AppleStatement, AppleTestAuthority};
use postern_certs::jws;
use postern_certs::signer::generate;
use postern_certs::{KeyAlgorithm, KeySigner, Signer};
use postern_e2e::acme::{Client, attestation_payload, finalize_payload};
use postern_e2e::{ADMIN_TOKEN, Broker};

pub(crate) const SERIAL: &str = "C02PROTOCOL1";
pub(crate) const URN: &str = "urn:ietf:params:acme:error:";

/// A broker with three provisioners: `devices` (device-attest-01, `apple` from a test
/// authority), `servers` (http-01) and `closed` (http-01, external account binding required).
pub(crate) struct Env {
    // declared first: stopped before the directory goes
    pub(crate) broker: Broker,
    pub(crate) apple: AppleTestAuthority,
    pub(crate) http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// A response as the wire carried it.
#[derive(Debug)]
pub(crate) struct Wire {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Wire {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    pub(crate) fn headers_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    pub(crate) fn nonce(&self) -> String {
        self.header("replay-nonce")
            .unwrap_or_else(|| panic!("no Replay-Nonce on {} {}", self.status, self.text()))
    }

    pub(crate) fn location(&self) -> String {
        self.header("location").expect("a Location")
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Asserts a problem document: status, media type, the exact ACME type, the `status` member,
/// and a fresh nonce (errors carry one too, RFC 8555 §6.5).
#[track_caller]
pub(crate) fn problem(w: &Wire, status: u16, kind: &str) {
    assert_eq!(w.status, status, "{}", w.text());
    assert_eq!(
        w.header("content-type").as_deref(),
        Some("application/problem+json"),
        "{}",
        w.text()
    );
    let v = w.json();
    assert_eq!(v["type"], format!("{URN}{kind}"), "{v}");
    assert_eq!(v["status"], status, "{v}");
    assert!(!v["detail"].as_str().unwrap_or("").is_empty(), "{v}");
    assert!(!w.nonce().is_empty());
}

#[track_caller]
pub(crate) fn ok(w: &Wire, status: u16) -> Value {
    assert_eq!(w.status, status, "{}", w.text());
    w.json()
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn key(alg: KeyAlgorithm) -> Arc<KeySigner> {
    Arc::new(KeySigner::from_pkcs8(generate(alg).unwrap().as_der()).unwrap())
}

/// An RSA-2048 key from `openssl genpkey`, or `None` (with a line saying so) when openssl is
/// missing and `POSTERN_REQUIRE_PEERS` is not set.
pub(crate) fn rsa_key() -> Option<Arc<KeySigner>> {
    // PEM, which is PKCS#8 (OpenSSL 3.0 writes DER output as PKCS#1)
    let run = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output();
    match run {
        Ok(o) if o.status.success() => {
            let pem = String::from_utf8(o.stdout).unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
            let der = postern_e2e::pem_der_blocks(&pem).remove(0);
            Some(Arc::new(KeySigner::from_pkcs8(&der).unwrap()))
        }
        Ok(o) => panic!(
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            assert!(
                std::env::var_os("POSTERN_REQUIRE_PEERS").is_none(),
                "POSTERN_REQUIRE_PEERS is set and openssl cannot run: {e}"
            );
            println!("skipped: RS256 account (openssl not found: {e})");
            None
        }
    }
}

/// The public JWK as a client puts it in a header: without `kid`, `alg`, `use`.
pub(crate) fn public_jwk(key: &dyn Signer) -> Value {
    let mut j = serde_json::to_value(jws::Jwk::from_signer(key).unwrap()).unwrap();
    let o = j.as_object_mut().unwrap();
    for m in ["kid", "alg", "use"] {
        o.remove(m);
    }
    j
}

/// A flattened JWS with a header and signature of our choosing (for what a signer would not
/// produce).
pub(crate) fn forged_jws(header: &Value, payload: &[u8], signature: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "protected": b64(&serde_json::to_vec(header).unwrap()),
        "payload": b64(payload),
        "signature": b64(signature),
    }))
    .unwrap()
}

/// A JWS signed by `key` under exactly `header` (plus `alg`).
pub(crate) fn signed_with(key: &dyn Signer, header: Value, payload: &[u8]) -> Value {
    let Value::Object(h) = header else {
        panic!("header is an object")
    };
    jws::sign_flattened(key, h, payload).unwrap()
}

/// An external account binding (RFC 8555 §7.3.4): HS256 by the EAB key over the account key.
pub(crate) fn eab(kid: &str, hmac_key_b64: &str, account_key: &dyn Signer, url: &str) -> Value {
    let protected =
        b64(&serde_json::to_vec(&json!({ "alg": "HS256", "kid": kid, "url": url })).unwrap());
    let payload = b64(&serde_json::to_vec(&public_jwk(account_key)).unwrap());
    let secret = URL_SAFE_NO_PAD.decode(hmac_key_b64).unwrap();
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
        format!("{protected}.{payload}").as_bytes(),
    );
    json!({ "protected": protected, "payload": payload, "signature": b64(mac.as_ref()) })
}

/// A device's key: the CSR and the attestation certify it; it can also sign a revocation.
pub(crate) struct DeviceKey {
    pkcs8: Vec<u8>,
    pub(crate) rcgen: rcgen::KeyPair,
}

impl DeviceKey {
    pub(crate) fn new() -> Self {
        let pkcs8 = generate(KeyAlgorithm::EcdsaP256).unwrap().as_der().to_vec();
        let rcgen = rcgen::KeyPair::try_from(pkcs8.as_slice()).unwrap();
        DeviceKey { pkcs8, rcgen }
    }

    pub(crate) fn spki(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.rcgen)
    }

    pub(crate) fn csr(&self) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, SERIAL);
        p.serialize_request(&self.rcgen).unwrap().der().to_vec()
    }

    pub(crate) fn signer(&self) -> Arc<KeySigner> {
        Arc::new(KeySigner::from_pkcs8(&self.pkcs8).unwrap())
    }
}

/// A device order: its URL, body, authorization URL, challenge URL and token.
pub(crate) struct DeviceOrder {
    pub(crate) url: String,
    pub(crate) body: Value,
    pub(crate) authz: String,
    pub(crate) chall: String,
    pub(crate) token: String,
}

/// An issued certificate: serial (hex, as in the certificate URL), DER, and the device key.
pub(crate) struct Issued {
    pub(crate) serial: String,
    pub(crate) der: Vec<u8>,
    pub(crate) key: DeviceKey,
}

pub(crate) fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let apple = AppleTestAuthority::new();
    let root = dir.path().join("apple-root.pem");
    std::fs::write(&root, apple.root_pem()).unwrap();
    let cfg = format!(
        r#"
[[acme.provisioners]]
name = "devices"
challenge = "device-attest-01"
profile = "device-identity"
formats = ["apple"]
roots = {{ apple = {root:?} }}

[[acme.provisioners]]
name = "servers"
challenge = "http-01"
profile = "tls-server"
dns_names = ["localhost", "*.test"]

[[acme.provisioners]]
name = "closed"
challenge = "http-01"
profile = "tls-server"
dns_names = ["*.test"]
require_eab = true
"#,
        root = root.display().to_string()
    );
    let broker = Broker::start_with(&dir.path().join("data"), &cfg).unwrap();
    let http = broker.client().unwrap();
    Env {
        broker,
        apple,
        http,
        _dir: dir,
    }
}

pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

impl Env {
    pub(crate) fn url(&self, provisioner: &str, rest: &str) -> String {
        format!("{}/acme/{provisioner}/{rest}", self.broker.https)
    }

    pub(crate) async fn wire(&self, r: reqwest::RequestBuilder) -> Wire {
        let r = r.send().await.unwrap();
        Wire {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.bytes().await.unwrap().to_vec(),
        }
    }

    pub(crate) async fn get(&self, url: &str) -> Wire {
        self.wire(self.http.get(url)).await
    }

    pub(crate) async fn send(&self, url: &str, content_type: &str, body: Vec<u8>) -> Wire {
        self.wire(
            self.http
                .post(url)
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    pub(crate) async fn nonce(&self, provisioner: &str) -> String {
        let w = self
            .wire(self.http.head(self.url(provisioner, "new-nonce")))
            .await;
        assert_eq!(w.status, 200);
        w.nonce()
    }

    pub(crate) async fn client(&self, provisioner: &str, key: Arc<dyn Signer>) -> Client {
        Client::new(self.http.clone(), &self.url(provisioner, "directory"), key)
            .await
            .unwrap()
    }

    pub(crate) fn provisioner_of(url: &str) -> &str {
        url.split("/acme/")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap()
    }

    /// A request signed by `c` (kid when registered, else jwk) with a fresh nonce.
    pub(crate) async fn post(&self, c: &Client, url: &str, payload: Option<&Value>) -> Wire {
        let nonce = self.nonce(Self::provisioner_of(url)).await;
        let body = c.sign(url, &nonce, payload, false).unwrap();
        self.send(
            url,
            "application/jose+json",
            serde_json::to_vec(&body).unwrap(),
        )
        .await
    }

    /// `newAccount` signed with the client's jwk.
    pub(crate) async fn new_account(&self, c: &Client, payload: Value) -> Wire {
        let url = c.url("newAccount").unwrap();
        let nonce = self.nonce(Self::provisioner_of(&url)).await;
        let body = c.sign(&url, &nonce, Some(&payload), true).unwrap();
        self.send(
            &url,
            "application/jose+json",
            serde_json::to_vec(&body).unwrap(),
        )
        .await
    }

    /// A registered account with a new key of `alg`.
    pub(crate) async fn account(
        &self,
        provisioner: &str,
        alg: KeyAlgorithm,
    ) -> (Client, Arc<KeySigner>) {
        let k = key(alg);
        (self.account_with(provisioner, k.clone()).await, k)
    }

    pub(crate) async fn account_with(&self, provisioner: &str, key: Arc<KeySigner>) -> Client {
        let mut c = self.client(provisioner, key).await;
        let w = self
            .new_account(
                &c,
                json!({ "termsOfServiceAgreed": true, "contact": ["mailto:it@example.test"] }),
            )
            .await;
        let v = ok(&w, 201);
        assert_eq!(v["status"], "valid", "{v}");
        assert_eq!(v["contact"], json!(["mailto:it@example.test"]));
        let loc = w.location();
        assert!(loc.starts_with(&self.url(provisioner, "account/")), "{loc}");
        c.kid = Some(loc);
        c
    }

    pub(crate) async fn admin(&self, r: reqwest::RequestBuilder) -> Wire {
        self.wire(r.bearer_auth(ADMIN_TOKEN)).await
    }

    /// A new external account binding key of `provisioner` from the admin API: (kid, HMAC key).
    pub(crate) async fn eab_key(&self, provisioner: &str) -> (String, String) {
        let w = self
            .admin(self.http.post(format!(
                "{}/v1/admin/acme/{provisioner}/eab",
                self.broker.https
            )))
            .await;
        let v = ok(&w, 201);
        (
            v["kid"].as_str().unwrap().to_owned(),
            v["hmac_key"].as_str().unwrap().to_owned(),
        )
    }

    /// How many audit entries there are: a refusal that changed nothing adds none.
    pub(crate) async fn audit_len(&self) -> u64 {
        let w = self
            .admin(
                self.http
                    .get(format!("{}/v1/admin/audit/verify", self.broker.https)),
            )
            .await;
        ok(&w, 200)["entries"].as_u64().unwrap()
    }

    pub(crate) async fn register_device(&self, serial: &str) {
        let w = self
            .admin(
                self.http
                    .post(format!("{}/v1/admin/devices", self.broker.https))
                    .json(&json!({ "serial": serial, "platform": "macos" })),
            )
            .await;
        ok(&w, 201);
    }

    /// The certificate as the admin API shows it.
    pub(crate) async fn certificate(&self, serial: &str) -> Value {
        let w = self
            .admin(self.http.get(format!(
                "{}/v1/admin/certificates/{serial}",
                self.broker.https
            )))
            .await;
        ok(&w, 200)
    }

    /// The serials (hex) the CRL on the plain listener lists.
    pub(crate) async fn crl_serials(&self) -> Vec<String> {
        let w = self.get(&format!("{}/pki/crl", self.broker.http)).await;
        assert_eq!(w.status, 200);
        let (rest, crl) = x509_parser::parse_x509_crl(&w.body).unwrap();
        assert!(rest.is_empty());
        crl.iter_revoked_certificates()
            .map(|r| hex(r.raw_serial()))
            .collect()
    }

    pub(crate) async fn order_device(&self, c: &Client, kind: &str, value: &str) -> DeviceOrder {
        let w = self
            .post(
                c,
                &c.url("newOrder").unwrap(),
                Some(&json!({ "identifiers": [{ "type": kind, "value": value }] })),
            )
            .await;
        let body = ok(&w, 201);
        assert_eq!(body["status"], "pending", "{body}");
        let authz = body["authorizations"][0].as_str().unwrap().to_owned();
        let a = ok(&self.post(c, &authz, None).await, 200);
        let ch = &a["challenges"][0];
        assert_eq!(ch["type"], "device-attest-01");
        DeviceOrder {
            url: w.location(),
            body,
            authz,
            chall: ch["url"].as_str().unwrap().to_owned(),
            token: ch["token"].as_str().unwrap().to_owned(),
        }
    }

    pub(crate) fn statement(&self, key: &DeviceKey, token: &str) -> AppleStatement {
        AppleStatement::new(&key.spki(), SERIAL, token, OffsetDateTime::now_utc())
    }

    /// A full device-attest-01 enrollment of [`SERIAL`] by `c`.
    pub(crate) async fn enroll(&self, c: &Client) -> Issued {
        let key = DeviceKey::new();
        let o = self.order_device(c, "permanent-identifier", SERIAL).await;
        let att = self.apple.attest(&self.statement(&key, &o.token));
        let ch = ok(
            &self
                .post(c, &o.chall, Some(&attestation_payload(&att)))
                .await,
            200,
        );
        assert_eq!(ch["status"], "valid", "{ch}");
        let order = ok(&self.post(c, &o.url, None).await, 200);
        assert_eq!(order["status"], "ready", "{order}");
        let w = self
            .post(
                c,
                o.body["finalize"].as_str().unwrap(),
                Some(&finalize_payload(&key.csr())),
            )
            .await;
        let order = ok(&w, 200);
        assert_eq!(order["status"], "valid", "{order}");
        let cert_url = order["certificate"].as_str().unwrap();
        let w = self.post(c, cert_url, None).await;
        assert_eq!(w.status, 200, "{}", w.text());
        assert_eq!(
            w.header("content-type").as_deref(),
            Some("application/pem-certificate-chain")
        );
        let der = postern_e2e::pem_der_blocks(&w.text()).remove(0);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let serial = cert_url.rsplit('/').next().unwrap().to_owned();
        assert_eq!(serial, hex(cert.raw_serial()));
        Issued { serial, der, key }
    }
}
