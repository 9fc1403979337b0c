//! ACME housekeeping at the domain level (no network): expired orders and authorizations are
//! removed, pending ones at once and finished ones after a day of grace, under a manual clock.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use postern_broker::app;
use postern_broker::domain::ManualClock;
use postern_broker::domain::acme::model::{
    AuthzStatus, Challenge, ChallengeStatus, Identifier, OrderStatus,
};
use postern_broker::domain::acme::{Acme, AcmeSettings, Authz, Order};
use postern_broker::store::memory::MemoryStore;
use postern_broker::store::{DocKind, DocTxn, Store};

fn identifier() -> Identifier {
    Identifier {
        type_: "permanent-identifier".into(),
        value: "C02CLEANUP01".into(),
    }
}

fn order(id: &str, status: OrderStatus, created: OffsetDateTime, expires: OffsetDateTime) -> Order {
    Order {
        id: id.into(),
        provisioner: "devices".into(),
        tenant: "default".into(),
        account: "acct".into(),
        status,
        expires,
        identifiers: vec![identifier()],
        authorizations: vec![format!("{id}-authz")],
        certificate: None,
        error: None,
        created_at: created,
    }
}

fn authz(order: &str, status: AuthzStatus, expires: OffsetDateTime) -> Authz {
    Authz {
        id: format!("{order}-authz"),
        provisioner: "devices".into(),
        tenant: "default".into(),
        account: "acct".into(),
        order: order.into(),
        identifier: identifier(),
        status,
        expires,
        challenges: vec![Challenge {
            type_: "device-attest-01".into(),
            token: "dG9rZW4tdG9rZW4tdG9rZW4".into(),
            status: match status {
                AuthzStatus::Valid => ChallengeStatus::Valid,
                AuthzStatus::Invalid => ChallengeStatus::Invalid,
                _ => ChallengeStatus::Pending,
            },
            validated: None,
            error: None,
        }],
        attested: None,
    }
}

fn put(store: &dyn Store, kind: DocKind, id: &str, bytes: Vec<u8>) {
    store.commit(DocTxn::new().put(kind, id, bytes)).unwrap();
}

fn present(store: &dyn Store, kind: DocKind, ids: &[&str]) -> Vec<String> {
    ids.iter()
        .filter(|id| store.doc(kind, id).unwrap().is_some())
        .map(|id| (*id).to_owned())
        .collect()
}

#[tokio::test]
async fn cleanup_removes_expired_orders_and_keeps_finished_ones_for_a_day() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let start = OffsetDateTime::now_utc();
    let clock = Arc::new(ManualClock::new(start));
    let domain = app::ephemeral(Arc::clone(&store), clock.clone())
        .await
        .unwrap();
    let acme = Acme::new(domain, AcmeSettings::default()).unwrap();

    // (order id, order status, authz status, expires after)
    let cases = [
        ("stale", OrderStatus::Pending, AuthzStatus::Pending, 1),
        ("ready", OrderStatus::Ready, AuthzStatus::Valid, 1),
        ("fresh", OrderStatus::Pending, AuthzStatus::Pending, 3),
        ("done", OrderStatus::Valid, AuthzStatus::Valid, 1),
        ("failed", OrderStatus::Invalid, AuthzStatus::Invalid, 1),
    ];
    for (id, os, azs, hours) in cases {
        let expires = start + Duration::hours(hours);
        let o = order(id, os, start, expires);
        put(
            &*store,
            DocKind::AcmeOrder,
            id,
            serde_json::to_vec(&o).unwrap(),
        );
        let a = authz(id, azs, expires);
        put(
            &*store,
            DocKind::AcmeAuthz,
            &a.id,
            serde_json::to_vec(&a).unwrap(),
        );
    }
    // a record nothing can read, and an account (not ACME's to expire)
    put(&*store, DocKind::AcmeOrder, "junk", b"{not json".to_vec());
    put(&*store, DocKind::AcmeAccount, "acct", b"{}".to_vec());
    let orders = ["stale", "ready", "fresh", "done", "failed", "junk"];
    let authzs = [
        "stale-authz",
        "ready-authz",
        "fresh-authz",
        "done-authz",
        "failed-authz",
    ];

    // nothing has expired yet
    assert_eq!(
        acme.cleanup().await.unwrap(),
        1,
        "only the unreadable record"
    );
    assert_eq!(
        present(&*store, DocKind::AcmeOrder, &["junk"]),
        Vec::<String>::new()
    );

    // two hours on: the unfinished ones that expired go (the ready order's valid authz is
    // finished, and stays for its day); the fresh and finished ones stay
    clock.advance(Duration::hours(2));
    assert_eq!(acme.cleanup().await.unwrap(), 3);
    assert_eq!(
        present(&*store, DocKind::AcmeOrder, &orders),
        ["fresh", "done", "failed"]
    );
    assert_eq!(
        present(&*store, DocKind::AcmeAuthz, &authzs),
        ["ready-authz", "fresh-authz", "done-authz", "failed-authz"]
    );
    assert_eq!(
        acme.cleanup().await.unwrap(),
        0,
        "a second run finds nothing"
    );

    // a day after start: the fresh order expired too; the finished ones have an hour of grace
    clock.advance(Duration::hours(22));
    assert_eq!(acme.cleanup().await.unwrap(), 2);
    assert_eq!(
        present(&*store, DocKind::AcmeOrder, &orders),
        ["done", "failed"]
    );
    assert_eq!(
        present(&*store, DocKind::AcmeAuthz, &authzs),
        ["ready-authz", "done-authz", "failed-authz"]
    );

    // a day after they expired, the finished ones go as well
    clock.advance(Duration::hours(1) + Duration::minutes(1));
    assert_eq!(acme.cleanup().await.unwrap(), 5);
    assert!(present(&*store, DocKind::AcmeOrder, &orders).is_empty());
    assert!(present(&*store, DocKind::AcmeAuthz, &authzs).is_empty());
    assert!(store.doc(DocKind::AcmeAccount, "acct").unwrap().is_some());
}
