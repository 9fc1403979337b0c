//! End-to-end: the SSF transmitter of a real broker (HTTPS, sled on disk) pushing to a receiver
//! this test runs on loopback, and polled over HTTPS. Every SET is checked against the JWKS the
//! broker publishes, with ring directly (not postern's JWS code).

// A failed unwrap in a test or a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use postern_broker::domain::ssf::{
    ComplianceStatus, InitiatingEntity, SsfEvent, SsfEventKind, SsfSubject,
};
use postern_e2e::{ADMIN_TOKEN, Broker};

const COMPLIANCE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change";
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";
const PUSH: &str = "urn:ietf:rfc:8935";
const POLL: &str = "urn:ietf:rfc:8936";
const RECEIVER_SECRET: &str = "Bearer receiver-secret-7f3a";

const CONFIG: &str = r#"
[ssf]
push_backoff_base_seconds = 0.05
push_backoff_max_seconds = 0.2
min_verification_interval_seconds = 0
poll_wait_seconds = 3
"#;

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
    answered: u16,
}

/// A push receiver: records every request and answers from its script (then 202).
#[derive(Debug, Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn start(self) -> String {
        let app = axum::Router::new()
            .route("/events", axum::routing::post(receive))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/events")
    }

    fn answer_next(&self, statuses: &[u16]) {
        self.script.lock().unwrap().extend(statuses);
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.answered == 202)
            .collect()
    }

    async fn wait_accepted(&self, n: usize) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let a = self.accepted();
            if a.len() >= n {
                return a;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "only {} of {n} SETs accepted; answers: {:?}",
                a.len(),
                self.received()
                    .iter()
                    .map(|r| r.answered)
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let status = r.script.lock().unwrap().pop_front().unwrap_or(202);
    let h = |k: &str| headers.get(k).map(|v| v.to_str().unwrap().to_owned());
    r.got.lock().unwrap().push(Received {
        authorization: h("authorization"),
        content_type: h("content-type"),
        body,
        answered: status,
    });
    let body = if status == 400 {
        json!({"err": "invalid_audience", "description": "not for us"}).to_string()
    } else {
        String::new()
    };
    (StatusCode::from_u16(status).unwrap(), body)
}

/// Checks a compact JWS against a JWKS with ring's RSA verifier; returns (header, claims).
fn verify_set(set: &str, jwks: &Value) -> (Value, Value) {
    let parts: Vec<&str> = set.split('.').collect();
    assert_eq!(parts.len(), 3, "{set}");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "secevent+jwt");
    let kid = header["kid"].as_str().unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS"));
    assert_eq!(jwk["kty"], "RSA");
    let key = ring::signature::RsaPublicKeyComponents {
        n: URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap(),
        e: URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap(),
    };
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    key.verify(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        signing_input.as_bytes(),
        &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
    )
    .expect("the SET's signature verifies");
    let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    (header, claims)
}

fn compliance(device: &str, seq: u64) -> SsfEvent {
    SsfEvent {
        kind: SsfEventKind::DeviceComplianceChange {
            previous: ComplianceStatus::Compliant,
            current: ComplianceStatus::NotCompliant,
        },
        subject: SsfSubject::Device(device.into()),
        feed_seq: Some(seq),
        occurred_at: time::OffsetDateTime::now_utc(),
        initiating_entity: Some(InitiatingEntity::Policy),
        reason_admin: None,
    }
}

fn feed_seq(claims: &Value) -> u64 {
    claims["events"][COMPLIANCE]["postern_feed_seq"]
        .as_u64()
        .unwrap()
}

/// An HTTPS session with the broker.
struct Api<'a> {
    broker: &'a Broker,
    client: reqwest::Client,
}

impl Api<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.broker.https)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A token for a new (or existing) tenant.
    async fn token(&self, tenant: &str, role: &str) -> String {
        let _ = self
            .send(
                self.client
                    .post(self.url("/v1/admin/tenants"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({"id": tenant})),
            )
            .await;
        let (status, v) = self
            .send(
                self.client
                    .post(self.url("/v1/admin/tokens"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({"tenant": tenant, "role": role})),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    async fn jwks(&self) -> Value {
        let (status, meta) = self
            .send(self.client.get(self.url("/.well-known/ssf-configuration")))
            .await;
        assert_eq!(status, 200);
        let r = self
            .client
            .get(meta["jwks_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn create(&self, token: &str, body: Value) -> Value {
        let (status, v) = self
            .send(
                self.client
                    .post(self.url("/ssf/streams"))
                    .bearer_auth(token)
                    .json(&body),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        v
    }

    async fn set_status(&self, token: &str, id: &str, status: &str) {
        let (code, v) = self
            .send(
                self.client
                    .post(self.url("/ssf/status"))
                    .bearer_auth(token)
                    .json(&json!({"stream_id": id, "status": status})),
            )
            .await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["status"], status);
    }

    async fn poll(&self, token: &str, id: &str, body: Value) -> (u16, Value) {
        self.send(
            self.client
                .post(self.url(&format!("/ssf/poll/{id}")))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }
}

#[test]
fn push_delivers_signed_sets_in_order_through_retries_refusals_pauses_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = Receiver::default();
    let endpoint = rt.block_on(receiver.clone().start());

    let broker = Broker::start_with(dir.path(), CONFIG).unwrap();
    let api = Api {
        broker: &broker,
        client: broker.client().unwrap(),
    };
    let ssf = broker.ssf().unwrap();
    let stream_id = rt.block_on(async {
        // the metadata, public
        let (status, meta) = api
            .send(api.client.get(api.url("/.well-known/ssf-configuration")))
            .await;
        assert_eq!(status, 200);
        assert_eq!(meta["issuer"], broker.https);
        assert_eq!(
            meta["jwks_uri"],
            format!("{}/.well-known/jwks.json", broker.https)
        );
        assert_eq!(
            meta["configuration_endpoint"],
            format!("{}/ssf/streams", broker.https)
        );
        assert_eq!(meta["delivery_methods_supported"], json!([PUSH, POLL]));
        let jwks = api.jwks().await;

        let gateway = api.token("acme", "gateway").await;
        let v = api
            .create(
                &gateway,
                json!({"events_requested": [COMPLIANCE, SESSION_REVOKED],
                    "delivery": {"method": PUSH, "endpoint_url": endpoint,
                        "authorization_header": RECEIVER_SECRET}}),
            )
            .await;
        assert_eq!(v["delivery"]["authorization_header"], "Bearer [redacted]");
        let id = v["stream_id"].as_str().unwrap().to_owned();

        // two 503s, then everything goes through, in order
        receiver.answer_next(&[503, 503]);
        for seq in 1..=5 {
            ssf.publish("acme", compliance("dev-1", seq)).await.unwrap();
        }
        let accepted = receiver.wait_accepted(5).await;
        let all = receiver.received();
        assert_eq!(all.len(), 7, "two refusals and five deliveries");
        assert_eq!(
            all.iter().map(|r| r.answered).collect::<Vec<_>>(),
            [503, 503, 202, 202, 202, 202, 202]
        );
        let first = verify_set(&all[0].body, &jwks).1;
        assert_eq!(feed_seq(&first), 1, "the retried SET is the first one");
        assert_eq!(all[0].body, all[2].body, "retries send the same SET");
        let seqs: Vec<u64> = accepted
            .iter()
            .map(|r| feed_seq(&verify_set(&r.body, &jwks).1))
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        for r in &all {
            assert_eq!(r.authorization.as_deref(), Some(RECEIVER_SECRET));
            assert_eq!(r.content_type.as_deref(), Some("application/secevent+jwt"));
            let (_, c) = verify_set(&r.body, &jwks);
            assert_eq!(c["iss"], broker.https);
            assert_eq!(c["aud"], endpoint);
            assert_eq!(
                c["sub_id"],
                json!({"format": "complex", "device": {"format": "opaque", "id": "dev-1"}})
            );
            assert_eq!(c["events"][COMPLIANCE]["current_status"], "not-compliant");
        }
        let jtis: std::collections::BTreeSet<String> = accepted
            .iter()
            .map(|r| {
                verify_set(&r.body, &jwks).1["jti"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(jtis.len(), 5);

        // a 400 refusal drops that SET and the next one still goes
        receiver.answer_next(&[400]);
        ssf.publish("acme", compliance("dev-1", 6)).await.unwrap();
        ssf.publish("acme", compliance("dev-1", 7)).await.unwrap();
        let accepted = receiver.wait_accepted(6).await;
        assert_eq!(feed_seq(&verify_set(&accepted[5].body, &jwks).1), 7);
        let (_, status) = api
            .send(
                api.client
                    .get(api.url(&format!("/ssf/status?stream_id={id}")))
                    .bearer_auth(&gateway),
            )
            .await;
        assert_eq!(status["status"], "enabled");
        assert_eq!(
            status["postern_delivery"],
            json!({"delivered": 6, "failed": 1, "retried": 2, "dropped": 0})
        );

        // paused: events are held, then delivered in order when enabled again
        api.set_status(&gateway, &id, "paused").await;
        let before = receiver.received().len();
        ssf.publish("acme", compliance("dev-1", 8)).await.unwrap();
        ssf.publish("acme", compliance("dev-1", 9)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            receiver.received().len(),
            before,
            "nothing pushed while paused"
        );
        api.set_status(&gateway, &id, "enabled").await;
        let accepted = receiver.wait_accepted(8).await;
        let seqs: Vec<u64> = accepted[6..]
            .iter()
            .map(|r| feed_seq(&verify_set(&r.body, &jwks).1))
            .collect();
        assert_eq!(seqs, [8, 9]);

        // an event type the stream did not ask for is not sent
        ssf.publish(
            "acme",
            SsfEvent {
                kind: SsfEventKind::CredentialChange {
                    credential_type: postern_broker::domain::ssf::CredentialType::X509,
                    change_type: postern_broker::domain::ssf::ChangeType::Revoke,
                    friendly_name: None,
                    x509_issuer: None,
                    x509_serial: Some("01".into()),
                },
                ..compliance("dev-1", 10)
            },
        )
        .await
        .unwrap();

        // the receiver goes away: the next events wait in the queue across a restart
        receiver.answer_next(&[503; 1000]);
        ssf.publish("acme", compliance("dev-1", 11)).await.unwrap();
        ssf.publish("acme", compliance("dev-1", 12)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(receiver.accepted().len(), 8);
        id
    });
    drop(ssf);
    broker.stop();

    receiver.script.lock().unwrap().clear();
    let broker = Broker::start_with(dir.path(), CONFIG).unwrap();
    let api = Api {
        broker: &broker,
        client: broker.client().unwrap(),
    };
    rt.block_on(async {
        let jwks = api.jwks().await;
        let accepted = receiver.wait_accepted(10).await;
        let seqs: Vec<u64> = accepted[8..]
            .iter()
            .map(|r| feed_seq(&verify_set(&r.body, &jwks).1))
            .collect();
        assert_eq!(
            seqs,
            [11, 12],
            "queued before the restart, delivered after it"
        );
        let admin = api.token("acme", "admin").await;
        let (status, v) = api
            .send(
                api.client
                    .get(api.url(&format!("/ssf/streams?stream_id={stream_id}")))
                    .bearer_auth(&admin),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(v["events_delivered"], json!([COMPLIANCE, SESSION_REVOKED]));
        assert!(!v.to_string().contains("receiver-secret"));
        // the audit log has the stream's changes, and no secret
        let (status, audit) = api
            .send(
                api.client
                    .get(api.url("/v1/admin/audit?limit=1000"))
                    .bearer_auth(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, 200);
        let actions: Vec<&str> = audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["subject"] == stream_id.as_str())
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            [
                "ssf.stream.create",
                "ssf.stream.status",
                "ssf.stream.status"
            ]
        );
        assert!(!audit.to_string().contains("receiver-secret"));
    });
    broker.stop();
}

#[test]
fn poll_with_verification_acks_and_a_long_poll() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = Broker::start_with(dir.path(), CONFIG).unwrap();
    let api = Api {
        broker: &broker,
        client: broker.client().unwrap(),
    };
    let ssf = broker.ssf().unwrap();
    rt.block_on(async {
        let jwks = api.jwks().await;
        let token = api.token("acme", "gateway").await;
        let v = api
            .create(
                &token,
                json!({"events_requested": [COMPLIANCE], "delivery": {"method": POLL}}),
            )
            .await;
        let id = v["stream_id"].as_str().unwrap().to_owned();
        let poll_url = format!("{}/ssf/poll/{id}", broker.https);
        assert_eq!(
            v["delivery"],
            json!({"method": POLL, "endpoint_url": poll_url})
        );

        // verification
        let r = api
            .client
            .post(api.url("/ssf/verify"))
            .bearer_auth(&token)
            .json(&json!({"stream_id": id, "state": "state-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let (status, got) = api
            .poll(&token, &id, json!({"returnImmediately": true}))
            .await;
        assert_eq!(status, 200);
        let sets = got["sets"].as_object().unwrap();
        assert_eq!(sets.len(), 1);
        let (jti, set) = sets.iter().next().unwrap();
        let (_, c) = verify_set(set.as_str().unwrap(), &jwks);
        assert_eq!(c["jti"], jti.as_str());
        assert_eq!(c["events"], json!({VERIFICATION: {"state": "state-1"}}));
        assert_eq!(c["aud"], poll_url);
        assert_eq!(got["moreAvailable"], false);

        // ack it and ask for more: nothing yet; a long poll is woken by the next event
        let waiting = {
            let (client, url, token, jti) = (
                api.client.clone(),
                poll_url.clone(),
                token.clone(),
                jti.clone(),
            );
            tokio::spawn(async move {
                let start = Instant::now();
                let r = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"ack": [jti], "maxEvents": 10}))
                    .send()
                    .await
                    .unwrap();
                (r.json::<Value>().await.unwrap(), start.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        ssf.publish("acme", compliance("dev-7", 70)).await.unwrap();
        let (got, took) = waiting.await.unwrap();
        assert!(took < Duration::from_millis(2500), "woken early: {took:?}");
        let sets = got["sets"].as_object().unwrap();
        assert_eq!(sets.len(), 1, "{got}");
        let (jti2, set) = sets.iter().next().unwrap();
        assert_eq!(feed_seq(&verify_set(set.as_str().unwrap(), &jwks).1), 70);

        // unacknowledged SETs come again; acknowledged ones do not
        let (_, again) = api
            .poll(&token, &id, json!({"returnImmediately": true}))
            .await;
        assert_eq!(
            again["sets"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            [jti2]
        );
        let (_, done) = api
            .poll(
                &token,
                &id,
                json!({"returnImmediately": true, "ack": [jti2]}),
            )
            .await;
        assert_eq!(done, json!({"sets": {}, "moreAvailable": false}));

        // a long poll with nothing to send ends after poll_wait_seconds
        let start = Instant::now();
        let (status, empty) = api.poll(&token, &id, json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(empty["sets"], json!({}));
        assert!(start.elapsed() >= Duration::from_millis(2900));
    });
    drop(ssf);
    broker.stop();
}

#[test]
fn tenants_are_isolated_and_bad_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = Broker::start_with(dir.path(), CONFIG).unwrap();
    let api = Api {
        broker: &broker,
        client: broker.client().unwrap(),
    };
    rt.block_on(async {
        let acme = api.token("acme", "admin").await;
        let globex = api.token("globex", "gateway").await;
        let mdm = api.token("acme", "mdm").await;
        let v = api.create(&acme, json!({"events_requested": [COMPLIANCE]})).await;
        let id = v["stream_id"].as_str().unwrap().to_owned();
        let c = &api.client;

        // another tenant's stream does not exist for globex
        let not_found = [
            c.get(api.url(&format!("/ssf/streams?stream_id={id}"))),
            c.patch(api.url("/ssf/streams"))
                .json(&json!({"stream_id": id, "description": "mine now"})),
            c.put(api.url("/ssf/streams")).json(&json!({"stream_id": id})),
            c.delete(api.url(&format!("/ssf/streams?stream_id={id}"))),
            c.get(api.url(&format!("/ssf/status?stream_id={id}"))),
            c.post(api.url("/ssf/status"))
                .json(&json!({"stream_id": id, "status": "disabled"})),
            c.post(api.url("/ssf/verify")).json(&json!({"stream_id": id})),
            c.post(api.url(&format!("/ssf/poll/{id}"))).json(&json!({})),
        ];
        for req in not_found {
            let (status, p) = api.send(req.bearer_auth(&globex)).await;
            assert_eq!(status, 404, "{p}");
            assert_eq!(p["type"], "urn:postern:problem:not-found");
            assert_eq!(p["detail"], "no such stream");
        }
        let (_, list) = api
            .send(c.get(api.url("/ssf/streams")).bearer_auth(&globex))
            .await;
        assert_eq!(list, json!([]));
        let (_, list) = api
            .send(c.get(api.url("/ssf/streams")).bearer_auth(&acme))
            .await;
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(list[0]["description"], Value::Null, "globex changed nothing");

        // roles and authentication
        let (status, p) = api
            .send(c.get(api.url("/ssf/streams")).bearer_auth(&mdm))
            .await;
        assert_eq!(status, 403);
        assert_eq!(p["type"], "urn:postern:problem:forbidden");
        let (status, p) = api.send(c.get(api.url("/ssf/streams"))).await;
        assert_eq!(status, 401);
        assert_eq!(p["type"], "urn:postern:problem:unauthorized");
        let (status, _) = api
            .send(c.post(api.url(&format!("/ssf/poll/{id}"))).json(&json!({})))
            .await;
        assert_eq!(status, 401);

        // bad bodies
        let bad = [
            (
                json!({"delivery": {"method": PUSH}}),
                "delivery.endpoint_url is required for push delivery",
            ),
            (
                json!({"delivery": {"method": PUSH, "endpoint_url": "gopher://x/"}}),
                "delivery.endpoint_url must be an https:// or http:// URL",
            ),
            (
                json!({"events_requested": {"a": 1}}),
                "events_requested must be an array of strings",
            ),
        ];
        for (body, detail) in bad {
            let (status, p) = api
                .send(c.post(api.url("/ssf/streams")).bearer_auth(&acme).json(&body))
                .await;
            assert_eq!(status, 400, "{p}");
            assert_eq!(p["type"], "urn:postern:problem:malformed");
            assert_eq!(p["detail"], detail);
        }
        let (status, p) = api
            .send(
                c.post(api.url("/ssf/streams"))
                    .bearer_auth(&acme)
                    .header("content-type", "application/json")
                    .body("{not json"),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(p["type"], "urn:postern:problem:malformed");
        let (status, p) = api
            .send(
                c.post(api.url("/ssf/streams"))
                    .bearer_auth(&acme)
                    .header("content-type", "text/plain")
                    .body("{}"),
            )
            .await;
        assert_eq!(status, 415);
        assert_eq!(p["type"], "urn:postern:problem:unsupported-media-type");
        let (status, p) = api
            .send(c.delete(api.url("/ssf/streams")).bearer_auth(&acme))
            .await;
        assert_eq!(status, 400);
        assert_eq!(p["detail"], "the stream_id query parameter is required");
        let (status, p) = api
            .send(
                c.post(api.url("/ssf/status"))
                    .bearer_auth(&acme)
                    .json(&json!({"stream_id": id, "status": "asleep"})),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(
            p["detail"],
            "status \"asleep\" is not \"enabled\", \"paused\" or \"disabled\""
        );
        // poll speaks RFC 8936's error format
        let (status, p) = api
            .poll(&acme, &id, json!({"maxEvents": "many"}))
            .await;
        assert_eq!(status, 400);
        assert_eq!(
            p,
            json!({"err": "invalid_request", "description": "maxEvents must be a non-negative integer"})
        );

        // the owner deletes it
        let (status, _) = api
            .send(
                c.delete(api.url(&format!("/ssf/streams?stream_id={id}")))
                    .bearer_auth(&acme),
            )
            .await;
        assert_eq!(status, 204);
        let (status, _) = api
            .send(
                c.get(api.url(&format!("/ssf/streams?stream_id={id}")))
                    .bearer_auth(&acme),
            )
            .await;
        assert_eq!(status, 404);
    });
    broker.stop();
}
