#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use postern_certs::jws::{Jwks, verify_compact};
use serde_json::{Value, json};
use time::macros::datetime;

use super::push::backoff_delay;
use super::*;
use crate::domain::ManualClock;
use crate::store::memory::MemoryStore;

const ISS: &str = "https://broker.test";
const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

fn keys() -> Arc<Keys> {
    static KEYS: OnceLock<Arc<Keys>> = OnceLock::new();
    Arc::clone(KEYS.get_or_init(|| Arc::new(Keys::ephemeral(T0).unwrap())))
}

fn client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

fn settings() -> SsfSettings {
    SsfSettings {
        min_verification_interval_seconds: 0,
        poll_wait_seconds: 1,
        ..SsfSettings::default()
    }
}

fn transmitter_on(store: Arc<dyn Store>, s: SsfSettings) -> Ssf {
    Ssf::new(
        store,
        keys(),
        Arc::new(ManualClock::new(T0)),
        format!("{ISS}/"),
        client(),
    )
    .with_settings(s)
}

fn transmitter(s: SsfSettings) -> Ssf {
    transmitter_on(Arc::new(MemoryStore::new()), s)
}

fn who(tenant: &str, role: Role) -> Principal {
    Principal {
        tenant: tenant.into(),
        role,
        actor_id: format!("token:{tenant}-{}", role.as_str()),
    }
}

fn admin(tenant: &str) -> Principal {
    who(tenant, Role::Admin)
}

fn compliance(device: &str, seq: u64) -> SsfEvent {
    SsfEvent {
        kind: SsfEventKind::DeviceComplianceChange {
            previous: ComplianceStatus::Compliant,
            current: ComplianceStatus::NotCompliant,
        },
        subject: SsfSubject::Device(device.into()),
        feed_seq: Some(seq),
        occurred_at: T0 - time::Duration::seconds(5),
        initiating_entity: Some(InitiatingEntity::Policy),
        reason_admin: Some("attestation expired".into()),
    }
}

fn session_revoked(user: &str) -> SsfEvent {
    SsfEvent {
        kind: SsfEventKind::SessionRevoked,
        subject: SsfSubject::User(user.into()),
        feed_seq: None,
        occurred_at: T0,
        initiating_entity: None,
        reason_admin: None,
    }
}

async fn poll_stream(ssf: &Ssf) -> Value {
    ssf.create_stream(
        &admin("acme"),
        &json!({"events_requested": SUPPORTED, "delivery": {"method": POLL}}),
    )
    .await
    .unwrap()
}

fn id_of(v: &Value) -> String {
    v["stream_id"].as_str().unwrap().to_owned()
}

/// Verifies a SET against the keys' JWKS and returns (header, claims).
fn open(set: &str) -> (serde_json::Map<String, Value>, Value) {
    let jwks: Jwks = serde_json::from_value(keys().jwks(T0)).unwrap();
    let v = verify_compact(set, &jwks).unwrap();
    (v.header, serde_json::from_slice(&v.payload).unwrap())
}

async fn poll_now(ssf: &Ssf, p: &Principal, id: &str, body: Value) -> PollResponse {
    let req = PollRequest::parse(body.to_string().as_bytes()).unwrap();
    ssf.poll(p, id, req).await.unwrap()
}

fn refused(r: DomainResult<Value>) -> (ErrorKind, String) {
    let e = r.unwrap_err();
    (e.kind, e.detail)
}

#[test]
fn metadata_names_every_endpoint_under_the_issuer() {
    let ssf = transmitter(settings());
    let c = ssf.configuration();
    assert_eq!(c["issuer"], ISS);
    assert_eq!(c["spec_version"], "1_0");
    assert_eq!(c["jwks_uri"], format!("{ISS}/.well-known/jwks.json"));
    assert_eq!(
        c["delivery_methods_supported"],
        json!(["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"])
    );
    assert_eq!(c["configuration_endpoint"], format!("{ISS}/ssf/streams"));
    assert_eq!(c["status_endpoint"], format!("{ISS}/ssf/status"));
    assert_eq!(c["verification_endpoint"], format!("{ISS}/ssf/verify"));
    assert_eq!(
        c["authorization_schemes"],
        json!([{"spec_urn": "urn:ietf:rfc:6750"}])
    );
    assert_eq!(c["default_subjects"], "ALL");
}

#[tokio::test]
async fn create_checks_each_member() {
    let ssf = transmitter(settings());
    let p = admin("acme");
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "the request body must be a JSON object"),
        (
            json!({"events_requested": "x"}),
            "events_requested must be an array of strings",
        ),
        (
            json!({"events_requested": [1]}),
            "events_requested[0] must be a string",
        ),
        (
            json!({"events_requested": [""]}),
            "events_requested[0] must be a URI of 1 to 512 characters",
        ),
        (json!({"delivery": "push"}), "delivery must be an object"),
        (json!({"delivery": {}}), "delivery.method is required"),
        (
            json!({"delivery": {"method": "urn:example:smoke-signals"}}),
            "delivery.method \"urn:example:smoke-signals\" is not supported; use \"urn:ietf:rfc:8935\" or \"urn:ietf:rfc:8936\"",
        ),
        (
            json!({"delivery": {"method": PUSH}}),
            "delivery.endpoint_url is required for push delivery",
        ),
        (
            json!({"delivery": {"method": PUSH, "endpoint_url": "ftp://r.test/x"}}),
            "delivery.endpoint_url must be an https:// or http:// URL",
        ),
        (
            json!({"delivery": {"method": PUSH, "endpoint_url": "https://u:p@r.test/x"}}),
            "delivery.endpoint_url must not carry credentials; use authorization_header",
        ),
        (
            json!({"delivery": {"method": PUSH, "endpoint_url": "https://r.test/x#f"}}),
            "delivery.endpoint_url must not have a fragment",
        ),
        (
            json!({"delivery": {"method": PUSH, "endpoint_url": "https://r.test/x", "authorization_header": 5}}),
            "delivery.authorization_header must be a string",
        ),
        (
            json!({"delivery": {"method": PUSH, "endpoint_url": "https://r.test/x", "authorization_header": "Bearer a\r\nX-Evil: 1"}}),
            "delivery.authorization_header may hold only visible ASCII characters and spaces",
        ),
        (
            json!({"delivery": {"method": PUSH, "endpoint_url": "https://r.test/x", "authorization_header": "Bearer [redacted]"}}),
            "delivery.authorization_header is the redacted placeholder; send the real value",
        ),
        (json!({"description": 7}), "description must be a string"),
        (json!({"aud": ""}), "aud must not be empty"),
    ];
    for (body, want) in cases {
        let (kind, detail) = refused(ssf.create_stream(&p, &body).await);
        assert_eq!(
            (kind, detail.as_str()),
            (ErrorKind::Malformed, want),
            "{body}"
        );
    }
    let (kind, detail) = refused(
        ssf.create_stream(
            &p,
            &json!({"delivery": {"method": PUSH, "endpoint_url": "not a url"}}),
        )
        .await,
    );
    assert_eq!(kind, ErrorKind::Malformed);
    assert!(
        detail.starts_with("delivery.endpoint_url is not a URL"),
        "{detail}"
    );
    assert!(ssf.streams(&p).unwrap().is_empty(), "nothing was stored");
}

#[tokio::test]
async fn delivered_events_are_the_supported_ones_requested() {
    let ssf = transmitter(settings());
    let v = ssf
        .create_stream(
            &admin("acme"),
            &json!({
                "events_requested": [
                    SESSION_REVOKED,
                    "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
                    DEVICE_COMPLIANCE_CHANGE,
                    SESSION_REVOKED,
                ],
                "description": "gateway west",
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        v["events_delivered"],
        json!([DEVICE_COMPLIANCE_CHANGE, SESSION_REVOKED])
    );
    assert_eq!(v["events_requested"].as_array().unwrap().len(), 3);
    assert_eq!(v["events_supported"], json!(SUPPORTED));
    assert_eq!(v["iss"], ISS);
    assert_eq!(v["description"], "gateway west");
    // no delivery member means poll, at the transmitter's URL, which is also the audience
    let poll_url = format!("{ISS}/ssf/poll/{}", id_of(&v));
    assert_eq!(
        v["delivery"],
        json!({"method": POLL, "endpoint_url": poll_url})
    );
    assert_eq!(v["aud"], poll_url);
    assert!(is_stream_id(&id_of(&v)));
}

#[tokio::test]
async fn the_authorization_header_is_never_shown_and_survives_a_read_back() {
    let ssf = transmitter(settings());
    let p = admin("acme");
    let secret = "Bearer s3cr3t-receiver-token";
    let v = ssf
        .create_stream(
            &p,
            &json!({"delivery": {"method": PUSH, "endpoint_url": "https://r.test/events",
                "authorization_header": secret}}),
        )
        .await
        .unwrap();
    let id = id_of(&v);
    assert_eq!(v["delivery"]["authorization_header"], "Bearer [redacted]");
    assert_eq!(v["aud"], "https://r.test/events");
    assert!(!v.to_string().contains("s3cr3t"));
    // the configuration read and sent back as it is keeps the secret
    let mut back = ssf.stream(&p, &id).unwrap();
    back["description"] = json!("renamed");
    let v = ssf.replace_stream(&p, &back).await.unwrap();
    assert_eq!(v["description"], "renamed");
    let key = stream_key("acme", &id);
    let stored: StreamRecord =
        serde_json::from_slice(&ssf.store.doc(DocKind::SsfStream, &key).unwrap().unwrap()).unwrap();
    assert_eq!(
        stored.delivery,
        Delivery::Push {
            endpoint_url: "https://r.test/events".into(),
            authorization_header: Some(secret.into()),
        }
    );
    assert!(!format!("{stored:?}").contains("s3cr3t"), "Debug redacts");
    // a header without a scheme word shows nothing of itself
    assert_eq!(stream::redact("s3cr3t"), REDACTED);
    // neither the audit log nor the status shows it
    let audit = ssf.store.audit_entries(0, 100).unwrap();
    assert_eq!(audit.len(), 2);
    for e in &audit {
        assert!(!e.details.to_string().contains("s3cr3t"));
        assert!(!e.details.to_string().contains("r.test"));
    }
    assert!(!ssf.status(&p, &id).unwrap().to_string().contains("s3cr3t"));
}

#[tokio::test]
async fn patch_changes_only_what_it_names_and_put_replaces_everything() {
    let ssf = transmitter(settings());
    let p = who("acme", Role::Gateway);
    let v = ssf
        .create_stream(
            &p,
            &json!({"events_requested": [SESSION_REVOKED], "description": "one",
                "aud": "urn:receiver:one"}),
        )
        .await
        .unwrap();
    let id = id_of(&v);
    let v = ssf
        .update_stream(
            &p,
            &json!({"stream_id": id, "events_requested": [CREDENTIAL_CHANGE]}),
        )
        .await
        .unwrap();
    assert_eq!(v["events_delivered"], json!([CREDENTIAL_CHANGE]));
    assert_eq!(v["description"], "one");
    assert_eq!(v["aud"], "urn:receiver:one");
    let v = ssf
        .replace_stream(&p, &json!({"stream_id": id, "events_requested": []}))
        .await
        .unwrap();
    assert!(v.get("description").is_none());
    assert_eq!(v["events_delivered"], json!([]));
    assert_eq!(v["aud"], format!("{ISS}/ssf/poll/{id}"));
    let (kind, detail) = refused(ssf.update_stream(&p, &json!({"description": "x"})).await);
    assert_eq!(
        (kind, detail.as_str()),
        (ErrorKind::Malformed, "stream_id is required")
    );
    let (kind, _) = refused(
        ssf.update_stream(&p, &json!({"stream_id": "0".repeat(32)}))
            .await,
    );
    assert_eq!(kind, ErrorKind::NotFound);
    let (kind, detail) = refused(
        ssf.update_stream(&p, &json!({"stream_id": id, "aud": null}))
            .await,
    );
    assert_eq!(
        (kind, detail.as_str()),
        (ErrorKind::Malformed, "aud must be a non-empty string")
    );
}

#[tokio::test]
async fn tenants_see_only_their_own_streams_and_only_receivers_manage_them() {
    let ssf = transmitter(settings());
    let id = id_of(&poll_stream(&ssf).await);
    let other = admin("globex");
    assert_eq!(
        ssf.stream(&other, &id).unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert!(ssf.streams(&other).unwrap().is_empty());
    assert_eq!(
        ssf.status(&other, &id).unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        ssf.delete_stream(&other, &id).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        ssf.verify(&other, &json!({"stream_id": id}))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        ssf.poll(&other, &id, PollRequest::default())
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    // ids that are not ours are not found, whatever they hold
    let upper = id.to_uppercase();
    for bad in ["../acme", "acme/x", "", upper.as_str()] {
        assert_eq!(
            ssf.stream(&admin("acme"), bad).unwrap_err().kind,
            ErrorKind::NotFound
        );
    }
    for role in [Role::Mdm, Role::Scim, Role::Device] {
        let e = ssf.streams(&who("acme", role)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden);
        assert_eq!(
            e.detail,
            format!(
                "role {} may not manage SSF streams; admin or gateway required",
                role.as_str()
            )
        );
    }
    assert_eq!(ssf.streams(&admin("acme")).unwrap().len(), 1);
}

#[tokio::test]
async fn a_tenant_has_at_most_the_configured_streams() {
    let ssf = transmitter(SsfSettings {
        max_streams_per_tenant: 2,
        ..settings()
    });
    poll_stream(&ssf).await;
    poll_stream(&ssf).await;
    let e = ssf
        .create_stream(&admin("acme"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    ssf.create_stream(&admin("globex"), &json!({}))
        .await
        .unwrap();
}

#[tokio::test]
async fn published_events_become_signed_sets_for_the_streams_that_asked() {
    let ssf = transmitter(settings());
    let p = admin("acme");
    let all = id_of(&poll_stream(&ssf).await);
    let sessions = id_of(
        &ssf.create_stream(&p, &json!({"events_requested": [SESSION_REVOKED]}))
            .await
            .unwrap(),
    );
    let elsewhere = ssf
        .create_stream(&admin("globex"), &json!({"events_requested": SUPPORTED}))
        .await
        .unwrap();
    ssf.publish("acme", compliance("dev-1", 41)).await.unwrap();
    ssf.publish("acme", session_revoked("alice")).await.unwrap();
    assert_eq!(ssf.queued(&all).unwrap(), 2);
    assert_eq!(ssf.queued(&sessions).unwrap(), 1);
    assert_eq!(ssf.queued(&id_of(&elsewhere)).unwrap(), 0);

    let r = poll_now(&ssf, &p, &all, json!({"returnImmediately": true})).await;
    assert_eq!(r.sets.len(), 2);
    assert!(!r.more_available);
    let mut claims: Vec<Value> = r
        .sets
        .iter()
        .map(|(jti, set)| {
            let (header, c) = open(set);
            assert_eq!(header["alg"], "RS256");
            assert_eq!(header["typ"], "secevent+jwt");
            assert!(header["kid"].is_string());
            assert_eq!(c["jti"], jti.as_str());
            c
        })
        .collect();
    claims.sort_by_key(|c| {
        c["events"]
            .as_object()
            .unwrap()
            .contains_key(SESSION_REVOKED)
    });
    let c = &claims[0];
    assert_eq!(c["iss"], ISS);
    assert_eq!(c["aud"], format!("{ISS}/ssf/poll/{all}"));
    assert_eq!(c["iat"], T0.unix_timestamp());
    assert_eq!(
        c["sub_id"],
        json!({"format": "complex", "device": {"format": "opaque", "id": "dev-1"}})
    );
    assert_eq!(
        c["events"],
        json!({DEVICE_COMPLIANCE_CHANGE: {
            "event_timestamp": T0.unix_timestamp() - 5,
            "initiating_entity": "policy",
            "reason_admin": {"en": "attestation expired"},
            "previous_status": "compliant",
            "current_status": "not-compliant",
            "postern_feed_seq": 41,
        }})
    );
    assert_eq!(
        claims[1]["sub_id"],
        json!({"format": "complex", "user": {"format": "opaque", "id": "alice"}})
    );
    assert_eq!(
        claims[1]["events"],
        json!({SESSION_REVOKED: {"event_timestamp": T0.unix_timestamp()}})
    );
    // the other stream's SET for the same event is its own (own jti and audience)
    let r2 = poll_now(&ssf, &p, &sessions, json!({"returnImmediately": true})).await;
    let (jti2, set2) = r2.sets.iter().next().unwrap();
    assert!(!r.sets.contains_key(jti2));
    assert_eq!(open(set2).1["aud"], format!("{ISS}/ssf/poll/{sessions}"));
}

#[test]
fn credential_change_carries_its_members() {
    let e = SsfEvent {
        kind: SsfEventKind::CredentialChange {
            credential_type: CredentialType::X509,
            change_type: ChangeType::Revoke,
            friendly_name: Some("device identity".into()),
            x509_issuer: Some("CN=postern Issuing CA".into()),
            x509_serial: Some("0a1b".into()),
        },
        subject: SsfSubject::UserDevice {
            user: "alice".into(),
            device: "dev-9".into(),
        },
        feed_seq: None,
        occurred_at: T0,
        initiating_entity: Some(InitiatingEntity::Admin),
        reason_admin: None,
    };
    assert_eq!(e.kind.uri(), CREDENTIAL_CHANGE);
    assert_eq!(
        e.to_event_members(),
        json!({
            "event_timestamp": T0.unix_timestamp(),
            "initiating_entity": "admin",
            "credential_type": "x509",
            "change_type": "revoke",
            "friendly_name": "device identity",
            "x509_issuer": "CN=postern Issuing CA",
            "x509_serial": "0a1b",
        })
    );
    assert_eq!(
        e.subject.to_sub_id(),
        json!({"format": "complex",
            "user": {"format": "opaque", "id": "alice"},
            "device": {"format": "opaque", "id": "dev-9"}})
    );
}

#[tokio::test]
async fn poll_returns_in_order_until_acknowledged() {
    let ssf = transmitter(settings());
    let p = admin("acme");
    let id = id_of(&poll_stream(&ssf).await);
    for seq in 1..=5 {
        ssf.publish("acme", compliance("dev-1", seq)).await.unwrap();
    }
    let seq_of = |set: &str| {
        open(set).1["events"][DEVICE_COMPLIANCE_CHANGE]["postern_feed_seq"]
            .as_u64()
            .unwrap()
    };
    let r = poll_now(
        &ssf,
        &p,
        &id,
        json!({"maxEvents": 2, "returnImmediately": true}),
    )
    .await;
    assert_eq!(r.sets.len(), 2);
    assert!(r.more_available);
    let mut seqs: Vec<u64> = r.sets.values().map(|s| seq_of(s)).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2]);
    // not acknowledged: the same two again
    let again = poll_now(
        &ssf,
        &p,
        &id,
        json!({"maxEvents": 2, "returnImmediately": true}),
    )
    .await;
    assert_eq!(
        again.sets.keys().collect::<Vec<_>>(),
        r.sets.keys().collect::<Vec<_>>()
    );
    // acknowledge one, refuse the other, ask for the rest
    let jtis: Vec<&String> = r.sets.keys().collect();
    let next = poll_now(
        &ssf,
        &p,
        &id,
        json!({"ack": [jtis[0], "unknown-jti"],
            "setErrs": {jtis[1].as_str(): {"err": "invalid_key", "description": "no such kid"}},
            "returnImmediately": true}),
    )
    .await;
    let mut seqs: Vec<u64> = next.sets.values().map(|s| seq_of(s)).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [3, 4, 5]);
    assert!(!next.more_available);
    assert_eq!(ssf.queued(&id).unwrap(), 3);
    let stats = ssf.delivery_stats(&id);
    assert_eq!((stats.delivered, stats.failed), (1, 1));
    // maxEvents 0 only acknowledges
    let all: Vec<String> = next.sets.keys().cloned().collect();
    let r = poll_now(&ssf, &p, &id, json!({"maxEvents": 0, "ack": all})).await;
    assert!(r.sets.is_empty());
    assert!(!r.more_available);
    assert_eq!(ssf.queued(&id).unwrap(), 0);
    assert_eq!(
        ssf.status(&p, &id).unwrap()["postern_delivery"],
        json!({"delivered": 4, "failed": 1, "retried": 0, "dropped": 0})
    );
}

#[tokio::test]
async fn a_long_poll_wakes_on_publish_and_otherwise_times_out() {
    let ssf = Arc::new(transmitter(SsfSettings {
        poll_wait_seconds: 5,
        ..settings()
    }));
    let p = admin("acme");
    let id = id_of(&poll_stream(&ssf).await);
    let waiting = {
        let (ssf, p, id) = (Arc::clone(&ssf), p.clone(), id.clone());
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            let r = ssf.poll(&p, &id, PollRequest::default()).await.unwrap();
            (r, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    ssf.publish("acme", session_revoked("bob")).await.unwrap();
    let (r, took) = waiting.await.unwrap();
    assert_eq!(r.sets.len(), 1);
    assert!(
        took < Duration::from_secs(4),
        "woken, not timed out: {took:?}"
    );

    let ssf = transmitter(settings());
    let id = id_of(&poll_stream(&ssf).await);
    let start = std::time::Instant::now();
    let r = ssf.poll(&p, &id, PollRequest::default()).await.unwrap();
    assert!(r.sets.is_empty());
    assert!(start.elapsed() >= Duration::from_millis(900));
}

#[test]
fn poll_requests_are_checked() {
    let cases = [
        ("[]", "the body must be a JSON object"),
        (
            "{\"maxEvents\": -1}",
            "maxEvents must be a non-negative integer",
        ),
        (
            "{\"maxEvents\": \"5\"}",
            "maxEvents must be a non-negative integer",
        ),
        (
            "{\"returnImmediately\": 1}",
            "returnImmediately must be true or false",
        ),
        ("{\"ack\": \"a\"}", "ack must be an array of jti strings"),
        ("{\"ack\": [1]}", "ack[0] must be a string"),
        (
            "{\"setErrs\": []}",
            "setErrs must be an object keyed by jti",
        ),
        (
            "{\"setErrs\": {\"j\": 1}}",
            "setErrs[\"j\"] must be an object",
        ),
        (
            "{\"setErrs\": {\"j\": {}}}",
            "setErrs[\"j\"].err must be a string",
        ),
    ];
    for (body, want) in cases {
        let e = PollRequest::parse(body.as_bytes()).unwrap_err();
        assert_eq!(
            (e.kind, e.detail.as_str()),
            (ErrorKind::Malformed, want),
            "{body}"
        );
    }
    assert!(
        PollRequest::parse(b"{")
            .unwrap_err()
            .detail
            .starts_with("the body is not JSON")
    );
    assert_eq!(PollRequest::parse(b"").unwrap(), PollRequest::default());
    let r = PollRequest::parse(
        br#"{"maxEvents": 3, "returnImmediately": true, "ack": ["a"], "setErrs": {"b": {"err": "invalid_issuer"}}}"#,
    )
    .unwrap();
    assert_eq!(r.max_events, Some(3));
    assert!(r.return_immediately);
    assert_eq!(r.ack, ["a"]);
    assert_eq!(r.set_errs["b"], ("invalid_issuer".into(), String::new()));
}

#[tokio::test]
async fn a_push_stream_cannot_be_polled() {
    let ssf = transmitter(settings());
    let p = admin("acme");
    let v = ssf
        .create_stream(
            &p,
            &json!({"delivery": {"method": PUSH, "endpoint_url": "http://127.0.0.1:9/x"}}),
        )
        .await
        .unwrap();
    let e = ssf
        .poll(&p, &id_of(&v), PollRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Malformed);
    assert_eq!(
        e.detail,
        "the stream delivers by push (urn:ietf:rfc:8935); it cannot be polled"
    );
}

#[tokio::test]
async fn a_full_queue_drops_its_oldest() {
    let ssf = transmitter(SsfSettings {
        queue_bound: 3,
        ..settings()
    });
    let p = admin("acme");
    let id = id_of(&poll_stream(&ssf).await);
    for seq in 1..=5 {
        ssf.publish("acme", compliance("dev-1", seq)).await.unwrap();
    }
    assert_eq!(ssf.queued(&id).unwrap(), 3);
    assert_eq!(ssf.delivery_stats(&id).dropped, 2);
    let r = poll_now(&ssf, &p, &id, json!({"returnImmediately": true})).await;
    let mut seqs: Vec<u64> = r
        .sets
        .values()
        .map(|s| {
            open(s).1["events"][DEVICE_COMPLIANCE_CHANGE]["postern_feed_seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [3, 4, 5]);
}

#[tokio::test]
async fn paused_streams_hold_and_disabled_streams_drop() {
    let ssf = transmitter(settings());
    let p = admin("acme");
    let id = id_of(&poll_stream(&ssf).await);
    let v = ssf
        .set_status(
            &p,
            &json!({"stream_id": id, "status": "paused", "reason": "maintenance"}),
        )
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({"stream_id": id, "status": "paused", "reason": "maintenance"})
    );
    ssf.publish("acme", session_revoked("carol")).await.unwrap();
    assert_eq!(ssf.queued(&id).unwrap(), 1, "held");
    let r = poll_now(&ssf, &p, &id, json!({"returnImmediately": true})).await;
    assert!(r.sets.is_empty(), "a paused stream delivers nothing");
    ssf.set_status(&p, &json!({"stream_id": id, "status": "enabled"}))
        .await
        .unwrap();
    let r = poll_now(&ssf, &p, &id, json!({"returnImmediately": true})).await;
    assert_eq!(r.sets.len(), 1);

    ssf.set_status(&p, &json!({"stream_id": id, "status": "disabled"}))
        .await
        .unwrap();
    assert_eq!(ssf.queued(&id).unwrap(), 0, "disabling drops the queue");
    ssf.publish("acme", session_revoked("carol")).await.unwrap();
    assert_eq!(
        ssf.queued(&id).unwrap(),
        0,
        "nothing is queued while disabled"
    );
    assert_eq!(ssf.status(&p, &id).unwrap()["status"], "disabled");
    let e = ssf.verify(&p, &json!({"stream_id": id})).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);

    let e = refused(
        ssf.set_status(&p, &json!({"stream_id": id, "status": "off"}))
            .await,
    );
    assert_eq!(
        e,
        (
            ErrorKind::Malformed,
            "status \"off\" is not \"enabled\", \"paused\" or \"disabled\"".into()
        )
    );
    let e = refused(ssf.set_status(&p, &json!({"stream_id": id})).await);
    assert_eq!(e, (ErrorKind::Malformed, "status is required".into()));
}

#[tokio::test]
async fn verification_sends_the_state_and_is_rate_limited() {
    let ssf = transmitter(SsfSettings {
        min_verification_interval_seconds: 30,
        ..settings()
    });
    let p = admin("acme");
    let id = id_of(&poll_stream(&ssf).await);
    ssf.verify(&p, &json!({"stream_id": id, "state": "abc-123"}))
        .await
        .unwrap();
    let e = ssf.verify(&p, &json!({"stream_id": id})).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.detail, "at most one verification per 30 seconds");
    let r = poll_now(&ssf, &p, &id, json!({"returnImmediately": true})).await;
    let (_, c) = open(r.sets.values().next().unwrap());
    assert_eq!(c["events"], json!({VERIFICATION: {"state": "abc-123"}}));
    assert_eq!(c["sub_id"], json!({"format": "opaque", "id": id}));
    let e = ssf.verify(&p, &json!({"state": "x"})).await.unwrap_err();
    assert_eq!(
        (e.kind, e.detail.as_str()),
        (ErrorKind::Malformed, "stream_id is required")
    );
}

#[tokio::test]
async fn deleting_a_stream_drops_its_queue() {
    let ssf = transmitter(settings());
    let p = admin("acme");
    let id = id_of(&poll_stream(&ssf).await);
    ssf.publish("acme", session_revoked("dave")).await.unwrap();
    ssf.delete_stream(&p, &id).await.unwrap();
    assert_eq!(ssf.queued(&id).unwrap(), 0);
    assert_eq!(ssf.stream(&p, &id).unwrap_err().kind, ErrorKind::NotFound);
    let actions: Vec<String> = ssf
        .store
        .audit_entries(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["ssf.stream.create", "ssf.stream.delete"]);
}

#[tokio::test]
async fn queues_continue_after_a_restart() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let p = admin("acme");
    let id = {
        let ssf = transmitter_on(Arc::clone(&store), settings());
        let id = id_of(&poll_stream(&ssf).await);
        for seq in 1..=3 {
            ssf.publish("acme", compliance("dev-1", seq)).await.unwrap();
        }
        id
    };
    let ssf = transmitter_on(Arc::clone(&store), settings());
    ssf.publish("acme", compliance("dev-1", 4)).await.unwrap();
    let keys: Vec<String> = store
        .docs(DocKind::SsfEvent, &queue_prefix(&id), 10)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        (1..=4).map(|s| queue_key(&id, s)).collect::<Vec<_>>(),
        "the new SET goes after the old ones"
    );
    let r = poll_now(&ssf, &p, &id, json!({"returnImmediately": true})).await;
    assert_eq!(r.sets.len(), 4);
}

#[test]
fn backoff_doubles_up_to_the_cap_with_half_jitter() {
    let d = |n, r| backoff_delay(1.0, 60.0, n, r).as_secs_f64();
    assert_eq!(d(1, 1.0), 1.0);
    assert_eq!(d(1, 0.0), 0.5);
    assert_eq!(d(2, 1.0), 2.0);
    assert_eq!(d(4, 1.0), 8.0);
    assert_eq!(d(7, 1.0), 60.0);
    assert_eq!(d(7, 0.0), 30.0);
    assert_eq!(d(u32::MAX, 1.0), 60.0);
    assert_eq!(d(0, 1.0), 1.0);
}

#[test]
fn settings_are_checked() {
    let key = |s: SsfSettings| s.check().unwrap_err().0;
    assert!(SsfSettings::default().check().is_ok());
    assert_eq!(
        key(SsfSettings {
            push_backoff_base_seconds: 0.0,
            ..SsfSettings::default()
        }),
        "push_backoff_base_seconds"
    );
    assert_eq!(
        key(SsfSettings {
            push_backoff_base_seconds: f64::NAN,
            ..SsfSettings::default()
        }),
        "push_backoff_base_seconds"
    );
    assert_eq!(
        key(SsfSettings {
            queue_bound: 0,
            ..SsfSettings::default()
        }),
        "queue_bound"
    );
    assert_eq!(
        key(SsfSettings {
            issuer: Some("not a url".into()),
            ..SsfSettings::default()
        }),
        "issuer"
    );
}
