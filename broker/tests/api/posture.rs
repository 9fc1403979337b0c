//! The posture service under a manual clock (memory store, no network): stale facts lower the
//! route answer as time passes, events are idempotent and reach the feed once, batches carry
//! per-request errors, the audit sample follows the policy, kill switches by OS version range.

use std::sync::Arc;

use serde_json::json;
use time::{Duration, OffsetDateTime};

use postern_api::route::RouteRequest;
use postern_broker::app;
use postern_broker::domain::devices::NewDevice;
use postern_broker::domain::posture::Posture;
use postern_broker::domain::posture::event::PostureEvent;
use postern_broker::domain::posture::policy::{KillScope, KillSwitch, OsVersion, Transport};
use postern_broker::domain::{Clock as _, Domain, ErrorKind, ManualClock, Principal};
use postern_broker::model::Role;
use postern_broker::store::Store;
use postern_broker::store::memory::MemoryStore;

const ADDRESS: &str = "tel:+4930123456";

struct World {
    domain: Arc<Domain>,
    posture: Arc<Posture>,
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    gateway: Principal,
    device: String,
}

async fn world() -> World {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let domain = app::ephemeral(Arc::clone(&store), clock.clone())
        .await
        .unwrap();
    let posture = app::ephemeral_posture(&domain).unwrap();
    let admin = Principal::cli();
    let d = domain
        .register_device(
            &admin,
            NewDevice {
                serial: Some("SERIAL-0001".into()),
                platform: Some("ios".into()),
                user: Some("bob".into()),
                ..NewDevice::default()
            },
        )
        .await
        .unwrap();
    posture.device_registered(&admin, &d).await.unwrap();
    World {
        gateway: Principal {
            tenant: "default".into(),
            role: Role::Gateway,
            actor_id: "token:gw".into(),
        },
        device: d.id,
        domain,
        posture,
        clock,
        store,
    }
}

fn event(w: &World, id: &str, body: serde_json::Value) -> PostureEvent {
    let at = w
        .clock
        .now()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    serde_json::from_value(json!({
        "source": "intune",
        "event_id": id,
        "occurred_at": at,
        "subject": { "kind": "device", "device_id": w.device },
        "event": body,
    }))
    .unwrap()
}

fn req(class: &str) -> RouteRequest {
    RouteRequest {
        recipient: ADDRESS.into(),
        message_class: class.into(),
        thread_id: None,
    }
}

async fn managed(w: &World) {
    let out = w
        .posture
        .ingest(
            &Principal::cli(),
            None,
            vec![
                event(
                    w,
                    "addr",
                    json!({ "type": "addresses_assigned", "addresses": [ADDRESS] }),
                ),
                event(
                    w,
                    "ci-1",
                    json!({ "type": "checked_in", "compliance": "compliant", "os_version": "17.2" }),
                ),
                event(
                    w,
                    "app",
                    json!({ "type": "capability_reported", "capability": { "capability": "in_app", "available": true } }),
                ),
            ],
        )
        .await
        .unwrap();
    assert!(out.iter().all(|o| o.status == "applied"), "{out:?}");
}

#[tokio::test]
async fn a_stale_check_in_lowers_the_answer_when_time_passes() {
    let w = world().await;
    managed(&w).await;
    let a = w
        .posture
        .route(&w.gateway, None, &req("confidential"))
        .await
        .unwrap();
    assert_eq!(
        (a.decision.assurance.as_str(), a.decision.transport.as_str()),
        ("managed", "in_app")
    );
    let decided = OffsetDateTime::parse(
        &a.decision.decided_at,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let until = OffsetDateTime::parse(
        &a.decision.valid_until,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(until - decided, Duration::seconds(300));

    w.clock.advance(Duration::hours(25));
    let a = w
        .posture
        .route(&w.gateway, None, &req("confidential"))
        .await
        .unwrap();
    assert_eq!(a.decision.assurance, "registered", "{:?}", a.decision);
    assert_eq!(a.decision.transport, "block", "{:?}", a.decision);
    assert!(
        a.decision.reasons.iter().any(|r| r.contains("check-in")),
        "{:?}",
        a.decision.reasons
    );
}

#[tokio::test]
async fn a_record_changed_after_a_decision_is_what_the_next_decision_reads() {
    // the first decisions decode the record and keep it; a change of the stored record must
    // reach the very next decision, in a single route and in a batch
    let w = world().await;
    managed(&w).await;
    for _ in 0..2 {
        let a = w
            .posture
            .route(&w.gateway, None, &req("confidential"))
            .await
            .unwrap();
        assert_eq!(a.decision.transport, "in_app");
    }
    w.posture
        .device_lost(&Principal::cli(), None, &w.device)
        .await
        .unwrap();
    let a = w
        .posture
        .route(&w.gateway, None, &req("confidential"))
        .await
        .unwrap();
    assert_eq!(
        (a.decision.assurance.as_str(), a.decision.transport.as_str()),
        ("unknown", "block"),
        "{:?}",
        a.decision
    );
    let b = w
        .posture
        .route_batch(&w.gateway, None, &[req("confidential")])
        .await
        .unwrap();
    assert_eq!(b.items[0].as_ref().unwrap().transport, "block");
}

#[tokio::test]
async fn repeated_events_change_nothing_and_reach_the_feed_once() {
    let w = world().await;
    let feed = w.domain.feed().unwrap();
    let before = feed.size("default");
    assert_eq!(before, 1, "registration writes the first record");
    let e = event(
        &w,
        "ci-1",
        json!({ "type": "checked_in", "compliance": "compliant" }),
    );
    let first = w
        .posture
        .ingest(&Principal::cli(), None, vec![e.clone()])
        .await
        .unwrap();
    let again = w
        .posture
        .ingest(&Principal::cli(), None, vec![e])
        .await
        .unwrap();
    assert!(first[0].devices[0].changed);
    assert_eq!(first[0].devices[0].feed_seq, Some(1));
    assert!(!again[0].devices[0].changed);
    assert_eq!(feed.size("default"), 2);
    // an event about nobody is reported, not stored
    let mut stray = event(&w, "x", json!({ "type": "device_lost" }));
    stray.subject =
        serde_json::from_value(json!({ "kind": "device", "device_id": "dev_nobody" })).unwrap();
    let out = w
        .posture
        .ingest(&Principal::cli(), None, vec![stray])
        .await
        .unwrap();
    assert_eq!(out[0].status, "unknown_subject");
    assert_eq!(feed.size("default"), 2);
    // proofs and credentials do not come through ingest
    let forged = event(
        &w,
        "p",
        json!({ "type": "capability_proved", "credential_serial": "01" }),
    );
    let err = w
        .posture
        .ingest(&Principal::cli(), None, vec![forged])
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Malformed);
    // gateways do not ingest
    let err = w
        .posture
        .ingest(&w.gateway, None, Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Forbidden);
}

#[tokio::test]
async fn a_batch_answers_each_request_and_bounds_its_size() {
    let w = world().await;
    managed(&w).await;
    let reqs = vec![req("public"), req("no-such-class"), req("restricted")];
    let out = w
        .posture
        .route_batch(&w.gateway, None, &reqs)
        .await
        .unwrap();
    assert_eq!(out.items.len(), 3);
    assert!(out.items[0].is_ok());
    assert_eq!(out.items[1].as_ref().unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(out.items[2].as_ref().unwrap().transport, "block");
    assert!(out.batch_id.starts_with("rb_"));
    // one signature over the decisions made, in order, with the batch's id
    let v = w
        .posture
        .keys()
        .verify_jws(&out.jws, w.clock.now())
        .unwrap();
    assert_eq!(v.header["typ"], "postern-route-batch+jwt");
    let signed: postern_api::route::SignedBatch = serde_json::from_slice(&v.payload).unwrap();
    assert_eq!(signed.batch_id, out.batch_id);
    assert_eq!(signed.tenant, "default");
    let made: Vec<_> = out
        .items
        .iter()
        .filter_map(|d| d.as_ref().ok().cloned())
        .collect();
    assert_eq!(signed.decisions, made);
    // one audit entry for the batch, listing both decisions and their devices
    tokio::task::yield_now().await;
    let entries = w.store.audit_entries(1, 10_000).unwrap();
    let batch: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "route.decide_batch")
        .collect();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].subject, out.batch_id);
    assert_eq!(batch[0].details["decisions"].as_array().unwrap().len(), 2);
    assert_eq!(
        batch[0].details["devices"],
        serde_json::json!(made[0].devices)
    );
    let too_many = vec![req("public"); 1001];
    let err = w
        .posture
        .route_batch(&w.gateway, None, &too_many)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Malformed);
    let err = w
        .posture
        .route_batch(&w.gateway, None, &[])
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Malformed);
}

async fn route_audits(w: &World) -> usize {
    // route audit entries are handed to the store without waiting; the memory store writes
    // them at once
    w.store
        .audit_entries(1, 10_000)
        .unwrap()
        .iter()
        .filter(|e| e.action == "route.decide")
        .count()
}

#[tokio::test]
async fn route_decisions_are_audited_as_the_policy_samples() {
    let w = world().await;
    for _ in 0..3 {
        w.posture
            .route(&w.gateway, None, &req("public"))
            .await
            .unwrap();
    }
    tokio::task::yield_now().await;
    assert_eq!(route_audits(&w).await, 3);
    let text = postern_broker::domain::posture::policy::DEFAULT_POLICY_TOML
        .replace("audit_sample_percent = 100", "audit_sample_percent = 0");
    w.posture
        .set_policy(&Principal::cli(), None, &text)
        .await
        .unwrap();
    for _ in 0..3 {
        w.posture
            .route(&w.gateway, None, &req("public"))
            .await
            .unwrap();
    }
    tokio::task::yield_now().await;
    assert_eq!(route_audits(&w).await, 3, "none of the later three");
    // the policy change itself is audited, and only admins may make it
    let entries = w.store.audit_entries(1, 10_000).unwrap();
    assert!(entries.iter().any(|e| e.action == "policy.update"));
    let err = w
        .posture
        .set_policy(&w.gateway, None, &text)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Forbidden);
}

#[tokio::test]
async fn a_kill_switch_on_an_os_range_applies_only_inside_it() {
    let w = world().await;
    managed(&w).await;
    let admin = Principal::cli();
    let ks = w
        .posture
        .add_kill_switch(
            &admin,
            None,
            KillSwitch {
                transport: Transport::InApp,
                scope: KillScope::OsVersion {
                    platform: "ios".into(),
                    min: OsVersion::from_reported("17.0"),
                    max: OsVersion::from_reported("17.3"),
                },
            },
            Some("app crash on 17.0-17.3".into()),
        )
        .await
        .unwrap();
    let a = w
        .posture
        .route(&w.gateway, None, &req("confidential"))
        .await
        .unwrap();
    assert_eq!(a.decision.transport, "block", "{:?}", a.decision.reasons);
    assert!(
        a.decision.reasons.iter().any(|r| r.contains("kill switch")),
        "{:?}",
        a.decision.reasons
    );
    // the device updates past the range: the app is back
    w.clock.advance(Duration::minutes(1));
    w.posture
        .ingest(
            &admin,
            None,
            vec![event(
                &w,
                "ci-2",
                json!({ "type": "checked_in", "compliance": "compliant", "os_version": "17.4" }),
            )],
        )
        .await
        .unwrap();
    let a = w
        .posture
        .route(&w.gateway, None, &req("confidential"))
        .await
        .unwrap();
    assert_eq!(a.decision.transport, "in_app", "{:?}", a.decision.reasons);
    w.posture
        .remove_kill_switch(&admin, None, &ks.id)
        .await
        .unwrap();
    let err = w
        .posture
        .remove_kill_switch(&admin, None, &ks.id)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
}
