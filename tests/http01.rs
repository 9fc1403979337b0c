//! ACME `http-01` end to end: a running broker's `servers` provisioner validates names by
//! fetching `http://{name}:{acme.http01_port}/.well-known/acme-challenge/{token}` from a small
//! HTTP/1.1 responder these tests run on loopback, then issues a `tls-server` certificate that
//! is checked against the broker's root with x509-parser. The failures a client can meet are
//! each asserted by their exact ACME problem type.

// A failed unwrap in a test or a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Notify;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use postern_certs::signer::generate;
use postern_certs::{KeyAlgorithm, KeySigner};
use postern_e2e::Broker;
use postern_e2e::acme::{Client, Reply, finalize_payload};

const ACME_ERROR: &str = "urn:ietf:params:acme:error:";

/// What the responder answers for one token.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: String,
    /// When set, the answer waits until this is notified.
    hold: Option<Arc<Notify>>,
}

/// One request the responder saw: path and `Host`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    path: String,
    host: String,
}

/// The validation target: answers `GET /.well-known/acme-challenge/{token}` from a table
/// (404 for a token it does not know) and records every request.
#[derive(Clone, Default)]
struct Responder {
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

const PREFIX: &str = "/.well-known/acme-challenge/";

impl Responder {
    fn answer(&self, token: &str, status: u16, body: &str, hold: Option<Arc<Notify>>) {
        self.answers.lock().unwrap().insert(
            token.to_owned(),
            Answer {
                status,
                body: body.to_owned(),
                hold,
            },
        );
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn serve(self, listener: tokio::net::TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move { this.connection(stream).await });
        }
    }

    async fn connection(self, mut stream: tokio::net::TcpStream) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let path = request_line
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let host = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        self.seen.lock().unwrap().push(Seen {
            path: path.clone(),
            host,
        });
        let answer = path
            .strip_prefix(PREFIX)
            .filter(|_| request_line.starts_with("GET "))
            .and_then(|t| self.answers.lock().unwrap().get(t).cloned())
            .unwrap_or(Answer {
                status: 404,
                body: "not found\n".into(),
                hold: None,
            });
        if let Some(h) = &answer.hold {
            h.notified().await;
        }
        let reason = match answer.status {
            200 => "OK",
            404 => "Not Found",
            _ => "Other",
        };
        let resp = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            answer.status,
            answer.body.len(),
            answer.body
        );
        let _ = stream.write_all(resp.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

/// A broker whose http-01 port is a loopback port these tests hold, with a responder on it
/// (or, with `listen == false`, nothing: the port is released before the broker starts).
struct Fixture {
    rt: tokio::runtime::Runtime,
    broker: Broker,
    responder: Responder,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new(listen: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let responder = Responder::default();
        if listen {
            listener.set_nonblocking(true).unwrap();
            let listener = {
                let _guard = rt.enter();
                tokio::net::TcpListener::from_std(listener).unwrap()
            };
            rt.spawn(responder.clone().serve(listener));
        } else {
            drop(listener);
        }
        let config = format!(
            "[acme]\nhttp01_port = {port}\nhttp01_timeout_seconds = 5\nhttp01_hosts = {{ \"gw.test\" = \"127.0.0.1\" }}\n"
        );
        let broker = Broker::start_with(&dir.path().join("data"), &config).unwrap();
        Fixture {
            rt,
            broker,
            responder,
            port,
            _dir: dir,
        }
    }

    /// A registered account on the `servers` provisioner.
    async fn account(&self) -> Client {
        let key: Arc<dyn postern_certs::Signer> = Arc::new(
            KeySigner::from_pkcs8(generate(KeyAlgorithm::EcdsaP256).unwrap().as_der()).unwrap(),
        );
        let mut c = Client::new(
            self.broker.client().unwrap(),
            &format!("{}/acme/servers/directory", self.broker.https),
            key,
        )
        .await
        .unwrap();
        let r = c
            .register(json!({ "contact": ["mailto:ops@example.test"] }))
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", text(&r));
        c
    }
}

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// An order for one DNS name: its URL, its body, its authorization URL, and the http-01
/// challenge's URL and token.
struct Ordered {
    url: String,
    order: Value,
    authz: String,
    challenge: String,
    token: String,
}

async fn order(c: &mut Client, name: &str) -> Ordered {
    let r = c
        .new_order(json!([{ "type": "dns", "value": name }]))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", text(&r));
    let order = r.json();
    assert_eq!(order["status"], "pending", "{order}");
    let authz = order["authorizations"][0].as_str().unwrap().to_owned();
    let a = c.post(&authz, None).await.unwrap().json();
    assert_eq!(a["status"], "pending", "{a}");
    assert_eq!(a["identifier"], json!({ "type": "dns", "value": name }));
    let challenges = a["challenges"].as_array().unwrap();
    assert_eq!(challenges.len(), 1, "{a}");
    let ch = &challenges[0];
    assert_eq!(ch["type"], "http-01", "{a}");
    assert_eq!(ch["status"], "pending", "{a}");
    Ordered {
        url: r.location.unwrap(),
        order,
        authz,
        challenge: ch["url"].as_str().unwrap().to_owned(),
        token: ch["token"].as_str().unwrap().to_owned(),
    }
}

/// Answers the challenge with `{}`: the server says `processing` and asks to come back.
async fn respond(c: &mut Client, o: &Ordered) {
    let r = c.post(&o.challenge, Some(&json!({}))).await.unwrap();
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.json()["status"], "processing", "{}", text(&r));
    assert_eq!(
        r.retry_after,
        Some(1),
        "Retry-After on a processing challenge"
    );
}

/// Polls the authorization (POST-as-GET) until it leaves `pending`.
async fn settle(c: &mut Client, authz: &str) -> Value {
    for _ in 0..100 {
        let r = c.post(authz, None).await.unwrap();
        let a = r.json();
        if a["status"] != "pending" {
            assert_eq!(r.retry_after, None, "Retry-After once settled: {a}");
            return a;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{authz} did not settle within 10 s")
}

/// A P-256 key and a CSR naming `names` (commonName = the first, subjectAltName = all).
fn csr(names: &[&str]) -> (rcgen::KeyPair, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let der = p.serialize_request(&key).unwrap().der().to_vec();
    (key, der)
}

fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .map(|g| match g {
            GeneralName::DNSName(d) => d.to_string(),
            other => panic!("unexpected subjectAltName {other:?}"),
        })
        .collect()
}

#[test]
fn http01_localhost_issues_a_tls_server_certificate_that_verifies_to_the_root() {
    let f = Fixture::new(true);
    f.rt.block_on(async {
        let mut c = f.account().await;
        let o = order(&mut c, "localhost").await;
        let ka = c.key_authorization(&o.token).unwrap();
        let gate = Arc::new(Notify::new());
        f.responder
            .answer(&o.token, 200, &ka, Some(Arc::clone(&gate)));
        respond(&mut c, &o).await;

        // while the responder holds its answer, the authorization is pending, its challenge
        // processing, and the server asks the client to come back
        let r = c.post(&o.authz, None).await.unwrap();
        let a = r.json();
        assert_eq!(a["status"], "pending", "{a}");
        assert_eq!(a["challenges"][0]["status"], "processing", "{a}");
        assert_eq!(r.retry_after, Some(1), "Retry-After while processing");
        // answering again is refused while it is processing
        let again = c.post(&o.challenge, Some(&json!({}))).await.unwrap();
        assert_eq!(
            again.problem().as_deref(),
            Some("malformed"),
            "{}",
            text(&again)
        );
        gate.notify_one();

        let a = settle(&mut c, &o.authz).await;
        assert_eq!(a["status"], "valid", "{a}");
        assert_eq!(a["challenges"][0]["status"], "valid", "{a}");
        assert!(a["challenges"][0]["validated"].is_string(), "{a}");
        assert_eq!(
            f.responder.seen(),
            vec![Seen {
                path: format!("{PREFIX}{}", o.token),
                host: format!("localhost:{}", f.port),
            }],
            "one GET for the token, with the name and port as Host"
        );
        let order_now = c.post(&o.url, None).await.unwrap().json();
        assert_eq!(order_now["status"], "ready", "{order_now}");

        let (key, der) = csr(&["localhost"]);
        let r = c
            .post(
                o.order["finalize"].as_str().unwrap(),
                Some(&finalize_payload(&der)),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", text(&r));
        let done = r.json();
        assert_eq!(done["status"], "valid", "{done}");
        let cert = c
            .post(done["certificate"].as_str().unwrap(), None)
            .await
            .unwrap();
        assert_eq!(cert.status, 200, "{}", text(&cert));
        assert_eq!(cert.content_type, "application/pem-certificate-chain");
        let blocks = postern_e2e::pem_der_blocks(&text(&cert));
        assert_eq!(blocks.len(), 2, "leaf and issuing CA");

        let (_, leaf) = X509Certificate::from_der(&blocks[0]).unwrap();
        let (_, issuing) = X509Certificate::from_der(&blocks[1]).unwrap();
        let root_der = postern_e2e::pem_der_blocks(&f.broker.root_pem().unwrap()).remove(0);
        let (_, root) = X509Certificate::from_der(&root_der).unwrap();
        assert_eq!(dns_names(&leaf), vec!["localhost".to_owned()]);
        assert_eq!(
            leaf.public_key().raw,
            rcgen::PublicKeyData::subject_public_key_info(&key).as_slice(),
            "the certificate certifies the CSR's key"
        );
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth, "{eku:?}");
        assert!(!leaf.is_ca());
        // leaf <- issuing CA <- root, each signature checked
        assert_eq!(leaf.issuer(), issuing.subject());
        assert_eq!(issuing.issuer(), root.subject());
        leaf.verify_signature(Some(issuing.public_key())).unwrap();
        issuing.verify_signature(Some(root.public_key())).unwrap();
        root.verify_signature(None).unwrap();
        assert!(leaf.validity().is_valid() && issuing.validity().is_valid());

        // a name of the provisioner's `*.test` that `acme.http01_hosts` resolves without DNS
        let o = order(&mut c, "gw.test").await;
        let ka = c.key_authorization(&o.token).unwrap();
        f.responder.answer(&o.token, 200, &ka, None);
        respond(&mut c, &o).await;
        assert_eq!(settle(&mut c, &o.authz).await["status"], "valid");
        let seen = f.responder.seen();
        assert_eq!(
            seen.last().map(|s| s.host.as_str()),
            Some(format!("gw.test:{}", f.port).as_str()),
            "{seen:?}"
        );
    });
}

/// Orders `name`, lets the responder do `serve` with the token and the key authorization,
/// answers, and checks that the challenge, its authorization and the order end invalid with
/// the ACME problem `want` (the name after `urn:ietf:params:acme:error:`).
async fn check_failure(
    f: &Fixture,
    name: &str,
    serve: impl FnOnce(&Responder, &str, &str),
    want: &str,
) {
    let mut c = f.account().await;
    let o = order(&mut c, name).await;
    let ka = c.key_authorization(&o.token).unwrap();
    serve(&f.responder, &o.token, &ka);
    respond(&mut c, &o).await;
    let a = settle(&mut c, &o.authz).await;
    assert_eq!(a["status"], "invalid", "{want}: {a}");
    let ch = &a["challenges"][0];
    assert_eq!(ch["status"], "invalid", "{want}: {a}");
    assert_eq!(ch["error"]["type"], format!("{ACME_ERROR}{want}"), "{a}");
    assert!(ch.get("validated").is_none(), "{a}");
    let order_now = c.post(&o.url, None).await.unwrap().json();
    assert_eq!(order_now["status"], "invalid", "{want}: {order_now}");
    assert_eq!(
        order_now["error"]["type"],
        format!("{ACME_ERROR}{want}"),
        "{order_now}"
    );
    // an invalid order cannot be finalized
    let (_, der) = csr(&[name]);
    let r = c
        .post(
            o.order["finalize"].as_str().unwrap(),
            Some(&finalize_payload(&der)),
        )
        .await
        .unwrap();
    assert_eq!(
        r.problem().as_deref(),
        Some("orderNotReady"),
        "{}",
        text(&r)
    );
}

#[test]
fn http01_failures_carry_the_problem_the_fetch_met() {
    let f = Fixture::new(true);
    f.rt.block_on(async {
        // the key authorization of another account key
        check_failure(
            &f,
            "localhost",
            |r, token, _| {
                let other = format!("{token}.{}", "A".repeat(43));
                r.answer(token, 200, &other, None)
            },
            "incorrectResponse",
        )
        .await;
        // the token alone, without the thumbprint
        check_failure(
            &f,
            "localhost",
            |r, token, _| r.answer(token, 200, token, None),
            "incorrectResponse",
        )
        .await;
        // nothing is served for the token
        check_failure(&f, "localhost", |_, _, _| {}, "unauthorized").await;
        // an error status with the right body is still not an answer
        check_failure(
            &f,
            "gw.test",
            |r, token, ka| r.answer(token, 500, ka, None),
            "unauthorized",
        )
        .await;
    });
}

#[test]
fn http01_with_nothing_listening_is_a_connection_problem() {
    let f = Fixture::new(false);
    f.rt.block_on(async {
        check_failure(&f, "localhost", |_, _, _| {}, "connection").await;
    });
}

#[test]
fn names_the_provisioner_does_not_serve_are_rejected_at_new_order() {
    let f = Fixture::new(true);
    f.rt.block_on(async {
        let mut c = f.account().await;
        for (names, kind, want, subproblems) in [
            (
                vec!["example.com"],
                "dns",
                "rejectedIdentifier",
                vec!["example.com"],
            ),
            (vec!["*.test"], "dns", "rejectedIdentifier", vec!["*.test"]),
            (
                vec!["*.localhost"],
                "dns",
                "rejectedIdentifier",
                vec!["*.localhost"],
            ),
            (vec!["test"], "dns", "rejectedIdentifier", vec!["test"]),
            // one refused name refuses the order, and only that name is named
            (
                vec!["localhost", "example.com"],
                "dns",
                "rejectedIdentifier",
                vec!["example.com"],
            ),
            (vec!["127.0.0.1"], "ip", "unsupportedIdentifier", vec![]),
        ] {
            let ids: Vec<Value> = names
                .iter()
                .map(|n| json!({ "type": kind, "value": n }))
                .collect();
            let r = c.new_order(json!(ids)).await.unwrap();
            assert_eq!(r.status, 400, "{names:?}: {}", text(&r));
            assert_eq!(r.content_type, "application/problem+json");
            assert_eq!(
                r.problem().as_deref(),
                Some(want),
                "{names:?}: {}",
                text(&r)
            );
            let sub: Vec<(String, String)> = r.json()["subproblems"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| {
                            (
                                s["type"].as_str().unwrap().to_owned(),
                                s["identifier"]["value"].as_str().unwrap().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let expected: Vec<(String, String)> = subproblems
                .iter()
                .map(|v| (format!("{ACME_ERROR}{want}"), (*v).to_owned()))
                .collect();
            assert_eq!(sub, expected, "{names:?}: {}", text(&r));
        }
        assert!(f.responder.seen().is_empty(), "nothing was fetched");
    });
}

#[test]
fn a_csr_that_does_not_name_exactly_the_order_is_a_bad_csr() {
    let f = Fixture::new(true);
    f.rt.block_on(async {
        let mut c = f.account().await;
        let o = order(&mut c, "localhost").await;
        let ka = c.key_authorization(&o.token).unwrap();
        f.responder.answer(&o.token, 200, &ka, None);
        respond(&mut c, &o).await;
        assert_eq!(settle(&mut c, &o.authz).await["status"], "valid");
        let finalize = o.order["finalize"].as_str().unwrap();
        for names in [
            vec!["other.test"],
            vec!["localhost", "other.test"],
            vec!["example.com"],
        ] {
            let (_, der) = csr(&names);
            let r = c
                .post(finalize, Some(&finalize_payload(&der)))
                .await
                .unwrap();
            assert_eq!(r.status, 400, "{names:?}: {}", text(&r));
            assert_eq!(
                r.problem().as_deref(),
                Some("badCSR"),
                "{names:?}: {}",
                text(&r)
            );
        }
        // a refused CSR leaves the order ready; the right one is then accepted
        let order_now = c.post(&o.url, None).await.unwrap().json();
        assert_eq!(order_now["status"], "ready", "{order_now}");
        let (_, der) = csr(&["localhost"]);
        let r = c
            .post(finalize, Some(&finalize_payload(&der)))
            .await
            .unwrap();
        assert_eq!(r.json()["status"], "valid", "{}", text(&r));
    });
}
