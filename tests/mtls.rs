//! Gateways over mutual TLS, end to end: a tenant's admin issues a `gateway-client`
//! certificate from a CSR, the gateway presents it in the TLS handshake and is the tenant's
//! gateway on `GET /v1/whoami`, until the certificate is revoked: then the very next request
//! on the same connection is refused. Certificates of other profiles and of other CAs are not
//! gateways, and one tenant's gateway is never another's.

// A failed unwrap in a test or a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::sync::Arc;

use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate};

use postern_e2e::{ADMIN_TOKEN, Broker, client_config, client_with_identity};

/// A key pair (PKCS#8 PEM) and a CSR (PEM) for it, without names: the API call names them.
fn key_and_csr() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    (key.serialize_pem(), csr)
}

/// What an HTTP answer was: status, content type and JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = r.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        body,
    }
}

fn assert_problem(a: &Answer, status: u16, kind: &str, detail: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.content_type, "application/problem+json", "{a:?}");
    assert_eq!(
        a.body["type"],
        format!("urn:postern:problem:{kind}"),
        "{a:?}"
    );
    assert_eq!(a.body["status"], status, "{a:?}");
    assert_eq!(a.body["detail"], detail, "{a:?}");
}

struct Setup {
    broker: Broker,
    admin: reqwest::Client,
    /// tenant id -> that tenant's admin token
    tenant_admins: Vec<(String, String)>,
}

impl Setup {
    async fn new(broker: Broker, tenants: &[&str]) -> Setup {
        let admin = broker.client().unwrap();
        let mut tenant_admins = Vec::new();
        for t in tenants {
            let r = send(
                admin
                    .post(format!("{}/v1/admin/tenants", broker.https))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({"id": t})),
            )
            .await;
            assert_eq!(r.status, 201, "{r:?}");
            let r = send(
                admin
                    .post(format!("{}/v1/admin/tokens", broker.https))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({"tenant": t, "role": "admin", "label": "tenant admin"})),
            )
            .await;
            assert_eq!(r.status, 201, "{r:?}");
            tenant_admins.push((
                (*t).to_owned(),
                r.body["token"].as_str().unwrap().to_owned(),
            ));
        }
        Setup {
            broker,
            admin,
            tenant_admins,
        }
    }

    fn token(&self, tenant: &str) -> &str {
        self.tenant_admins
            .iter()
            .find(|(t, _)| t == tenant)
            .map(|(_, tok)| tok.as_str())
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.broker.https)
    }

    /// `POST /v1/admin/certificates` with `token`.
    async fn issue(&self, token: &str, body: Value) -> Answer {
        send(
            self.admin
                .post(self.url("/v1/admin/certificates"))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    /// Issues a certificate that must be granted; returns (record, key PEM, chain PEM).
    async fn issued(&self, token: &str, profile: &str, names: &[&str]) -> (Value, String, String) {
        let (key, csr) = key_and_csr();
        let r = self
            .issue(
                token,
                json!({"csr": csr, "profile": profile, "names": names}),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        let chain = r.body["chain_pem"].as_str().unwrap().to_owned();
        (r.body, key, chain)
    }

    fn client_for(&self, chain_pem: &str, key_pem: &str) -> reqwest::Client {
        client_with_identity(&self.broker.root_pem().unwrap(), chain_pem, key_pem).unwrap()
    }

    async fn revoke(&self, token: &str, serial: &str) {
        let r = send(
            self.admin
                .post(self.url(&format!("/v1/admin/certificates/{serial}/revoke")))
                .bearer_auth(token)
                .json(&json!({"reason": "keyCompromise"})),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["status"], "revoked", "{r:?}");
    }
}

/// The TLS alert the server sent, when a request failed on one.
fn alert_received(err: &reqwest::Error) -> Option<rustls::AlertDescription> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(rustls::Error::AlertReceived(a)) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(*a);
        }
        cur = e.source();
    }
    None
}

/// One HTTP/1.1 keep-alive connection over rustls, to show that a check holds for requests on
/// a connection opened before a revocation.
struct Connection {
    tls: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    requests: usize,
}

impl Connection {
    fn open(broker: &Broker, cfg: rustls::ClientConfig) -> Connection {
        let port: u16 = broker.https.rsplit(':').next().unwrap().parse().unwrap();
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let conn =
            rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
        Connection {
            tls: rustls::StreamOwned::new(conn, tcp),
            requests: 0,
        }
    }

    /// `GET path` on this connection; (status, body).
    fn get(&mut self, path: &str) -> (u16, Value) {
        write!(
            self.tls,
            "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: keep-alive\r\n\r\n"
        )
        .unwrap();
        self.tls.flush().unwrap();
        self.requests += 1;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = self.tls.read(&mut chunk).unwrap();
            assert!(n > 0, "the connection closed before the response");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .expect("a content-length");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
        while buf.len() < head_end + length {
            let n = self.tls.read(&mut chunk).unwrap();
            assert!(n > 0, "the connection closed inside the body");
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap();
        (status, body)
    }
}

#[test]
fn gateway_certificate_is_the_tenants_gateway_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(Setup::new(Broker::start(dir.path()).unwrap(), &["a", "b"]));
    let root_pem = s.broker.root_pem().unwrap();
    rt.block_on(async {
        // each tenant's admin issues its gateway's certificate from a CSR
        let (a_rec, a_key, a_chain) = s
            .issued(
                s.token("a"),
                "gateway-client",
                &["uri:urn:postern:gateway:a:gw-1"],
            )
            .await;
        assert_eq!(a_rec["tenant"], "a");
        assert_eq!(a_rec["profile"], "gateway-client");
        assert_eq!(a_rec["names"], json!(["uri:urn:postern:gateway:a:gw-1"]));
        let (b_rec, b_key, b_chain) = s
            .issued(
                s.token("b"),
                "gateway-client",
                &["uri:urn:postern:gateway:b:gw-1", "dns:gw.b.example"],
            )
            .await;
        assert_eq!(b_rec["tenant"], "b");
        let a_serial = a_rec["serial"].as_str().unwrap().to_owned();
        let b_serial = b_rec["serial"].as_str().unwrap().to_owned();

        // the stored record keeps the tenant
        let r = send(
            s.admin
                .get(s.url(&format!("/v1/admin/certificates/{a_serial}")))
                .bearer_auth(s.token("a")),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["tenant"], "a");
        // another tenant's admin does not see it
        let r = send(
            s.admin
                .get(s.url(&format!("/v1/admin/certificates/{a_serial}")))
                .bearer_auth(s.token("b")),
        )
        .await;
        assert_problem(&r, 404, "not-found", &format!("no certificate {a_serial}"));

        // a client certificate, no Authorization header: the tenant's gateway
        let gw_a = s.client_for(&a_chain, &a_key);
        let r = send(gw_a.get(s.url("/v1/whoami"))).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.body,
            json!({"tenant": "a", "role": "gateway", "actor": format!("cert:{a_serial}")})
        );
        let gw_b = s.client_for(&b_chain, &b_key);
        let r = send(gw_b.get(s.url("/v1/whoami"))).await;
        assert_eq!(
            r.body,
            json!({"tenant": "b", "role": "gateway", "actor": format!("cert:{b_serial}")})
        );

        // a gateway reads; it does not administer, and it cannot name another tenant
        let r = send(gw_a.get(s.url("/v1/admin/tenants"))).await;
        assert_problem(
            &r,
            403,
            "forbidden",
            "role gateway may not do this; admin required",
        );
        let r = send(gw_b.get(s.url("/v1/admin/devices?tenant=a"))).await;
        assert_eq!(r.status, 403, "{r:?}");
        let r = send(gw_a.post(s.url("/v1/admin/certificates")).json(&json!({
            "csr": key_and_csr().1, "profile": "gateway-client",
            "names": ["uri:urn:postern:gateway:a:gw-2"]
        })))
        .await;
        assert_eq!(r.status, 403, "{r:?}");

        // an Authorization header wins over the certificate
        let r = send(gw_a.get(s.url("/v1/whoami")).bearer_auth(ADMIN_TOKEN)).await;
        assert_eq!(r.body["role"], "admin", "{r:?}");
        assert_eq!(r.body["tenant"], "default", "{r:?}");
        let r = send(gw_a.get(s.url("/v1/whoami")).bearer_auth("wrong")).await;
        assert_problem(&r, 401, "unauthorized", "invalid or revoked token");

        // without a certificate or a token: 401
        let r = send(s.admin.get(s.url("/v1/whoami"))).await;
        assert_problem(
            &r,
            401,
            "unauthorized",
            "a bearer token or a gateway client certificate is required",
        );

        // a connection opened before the revocation ...
        let mut conn = Connection::open(
            &s.broker,
            client_config(&root_pem, Some((&a_chain, &a_key))).unwrap(),
        );
        let (status, body) = conn.get("/v1/whoami");
        assert_eq!((status, &body["tenant"]), (200, &json!("a")), "{body}");
        s.revoke(s.token("a"), &a_serial).await;
        // ... is refused on its very next request
        let (status, body) = conn.get("/v1/whoami");
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["type"], "urn:postern:problem:unauthorized");
        assert_eq!(
            body["detail"],
            format!("client certificate refused: certificate {a_serial} is revoked")
        );
        assert_eq!(conn.requests, 2);
        // and so is every new one
        let r = send(gw_a.get(s.url("/v1/whoami"))).await;
        assert_problem(
            &r,
            401,
            "unauthorized",
            &format!("client certificate refused: certificate {a_serial} is revoked"),
        );
        let fresh = s.client_for(&a_chain, &a_key);
        let r = send(fresh.get(s.url("/v1/whoami"))).await;
        assert_eq!(r.status, 401, "{r:?}");

        // tenant b's gateway is untouched
        let r = send(gw_b.get(s.url("/v1/whoami"))).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["tenant"], "b");
        // and a's admin cannot revoke b's certificate (it does not exist for a)
        let r = send(
            s.admin
                .post(s.url(&format!("/v1/admin/certificates/{b_serial}/revoke")))
                .bearer_auth(s.token("a"))
                .json(&json!({})),
        )
        .await;
        assert_problem(&r, 404, "not-found", &format!("no certificate {b_serial}"));
        let r = send(gw_b.get(s.url("/v1/whoami"))).await;
        assert_eq!(r.status, 200, "{r:?}");
    });
    s.broker.stop();
}

#[test]
fn other_certificates_are_not_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(Setup::new(Broker::start(dir.path()).unwrap(), &["a"]));
    rt.block_on(async {
        // a device-identity certificate of the same CA (clientAuth too): the handshake
        // succeeds, the request is refused
        let (dev, dev_key, dev_chain) = s
            .issued(
                s.token("a"),
                "device-identity",
                &["permanent-identifier:C02XK0AAJGH5"],
            )
            .await;
        let client = s.client_for(&dev_chain, &dev_key);
        let r = send(client.get(s.url("/v1/whoami"))).await;
        assert_problem(
            &r,
            401,
            "unauthorized",
            "client certificate refused: a device-identity certificate is not a gateway certificate",
        );
        // the same device with its certificate and a token is the token
        let r = send(client.get(s.url("/v1/whoami")).bearer_auth(s.token("a"))).await;
        assert_eq!(r.body["role"], "admin", "{r:?}");
        assert!(dev["serial"].is_string());

        // a tls-server certificate of the same CA has no clientAuth: the handshake fails with
        // unsupported_certificate
        let (_, srv_key, srv_chain) = s
            .issued(s.token("a"), "tls-server", &["dns:srv.a.example"])
            .await;
        let client = s.client_for(&srv_chain, &srv_key);
        let err = client.get(s.url("/v1/whoami")).send().await.unwrap_err();
        assert_eq!(
            alert_received(&err),
            Some(rustls::AlertDescription::UnsupportedCertificate),
            "{err:?}"
        );

        // a certificate from another CA, even with clientAuth and a gateway name: the handshake
        // fails with unknown_ca
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "not postern");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let ca_issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.subject_alt_names = vec![rcgen::SanType::URI(
            "urn:postern:gateway:a:gw-1".try_into().unwrap(),
        )];
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let leaf_cert = leaf.signed_by(&leaf_key, &ca_issuer).unwrap();
        let chain = format!("{}{}", leaf_cert.pem(), ca_cert.pem());
        let client = s.client_for(&chain, &leaf_key.serialize_pem());
        let err = client.get(s.url("/v1/whoami")).send().await.unwrap_err();
        assert_eq!(
            alert_received(&err),
            Some(rustls::AlertDescription::UnknownCA),
            "{err:?}"
        );

        // the broker serves on
        let r = send(s.admin.get(s.url("/healthz"))).await;
        assert_eq!(r.status, 200, "{r:?}");
    });
    s.broker.stop();
}

#[test]
fn gateway_certificates_name_their_own_tenants_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(Setup::new(Broker::start(dir.path()).unwrap(), &["a", "b"]));
    rt.block_on(async {
        let csr = || key_and_csr().1;
        let gw = |names: Value| json!({"csr": csr(), "profile": "gateway-client", "names": names});

        // the name must be a gateway URN of the certificate's tenant
        let r = s
            .issue(s.token("a"), gw(json!(["uri:urn:postern:gateway:b:gw-1"])))
            .await;
        assert_problem(
            &r,
            400,
            "bad-csr",
            "uri:urn:postern:gateway:b:gw-1 names tenant \"b\", but the certificate is for tenant \"a\"",
        );
        let r = s
            .issue(s.token("a"), gw(json!(["dns:gw.a.example"])))
            .await;
        assert_problem(
            &r,
            400,
            "bad-csr",
            "a gateway-client certificate names its gateway with exactly one URI \
             uri:urn:postern:gateway:a:<name>; found 0 URIs",
        );
        // names the profile does not allow at all
        let r = s
            .issue(
                s.token("a"),
                gw(json!(["uri:urn:postern:gateway:a:gw-1", "ip:127.0.0.1"])),
            )
            .await;
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(r.body["type"], "urn:postern:problem:bad-csr", "{r:?}");
        // a tenant admin may not issue for another tenant
        let mut body = gw(json!(["uri:urn:postern:gateway:b:gw-1"]));
        body["tenant"] = json!("b");
        let r = s.issue(s.token("a"), body.clone()).await;
        assert_problem(
            &r,
            403,
            "forbidden",
            "a token may act only for its own tenant",
        );
        // an operator may, and the certificate is b's
        let r = s.issue(ADMIN_TOKEN, body).await;
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.body["tenant"], "b");
        // longer than the profile's 90 days
        let mut body = gw(json!(["uri:urn:postern:gateway:a:gw-1"]));
        body["validity_seconds"] = json!(91 * 86_400);
        let r = s.issue(s.token("a"), body).await;
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(r.body["type"], "urn:postern:problem:bad-csr", "{r:?}");

        // what a gateway-client certificate is: digitalSignature, clientAuth only, the URN,
        // 30 days by default
        let (rec, _, _) = s
            .issued(
                s.token("a"),
                "gateway-client",
                &["uri:urn:postern:gateway:a:gw-1"],
            )
            .await;
        let der = postern_e2e::pem_der_blocks(rec["certificate_pem"].as_str().unwrap())
            .pop()
            .unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_encipherment() && !ku.key_cert_sign());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth && !eku.any && eku.other.is_empty());
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(
            san.general_names,
            vec![x509_parser::extensions::GeneralName::URI(
                "urn:postern:gateway:a:gw-1"
            )]
        );
        let v = cert.validity();
        let days = (v.not_after.timestamp() - v.not_before.timestamp()) / 86_400;
        assert_eq!(days, 30, "{v:?}");
    });
    s.broker.stop();
}
