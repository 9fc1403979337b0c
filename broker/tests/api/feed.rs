//! The feed with the real store and the real start-up: trees rebuilt from sled files, signing
//! keys encrypted at rest with the key passphrase, the feed routes refusing callers without a
//! token.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tower::ServiceExt as _;
use zeroize::Zeroizing;

use postern_broker::app;
use postern_broker::config::Settings;
use postern_broker::domain::SystemClock;
use postern_broker::domain::feed::Feed;
use postern_broker::domain::keys::Keys;
use postern_broker::http::{AppState, router};
use postern_broker::model::{AuditDraft, Tenant};
use postern_broker::store::Store;
use postern_broker::store::memory::MemoryStore;
use postern_broker::store::sled::SledStore;

fn add_tenant(store: &dyn Store, id: &str) {
    let now = OffsetDateTime::now_utc();
    store
        .insert_tenant(
            &Tenant {
                id: id.into(),
                name: id.into(),
                created_at: now,
            },
            AuditDraft {
                time: now,
                tenant: id.into(),
                actor: "test".into(),
                action: "tenant.create".into(),
                subject: id.into(),
                details: json!({}),
            },
        )
        .unwrap();
}

#[tokio::test]
async fn trees_rebuilt_from_sled_have_the_same_roots() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let keys = Arc::new(Keys::ephemeral(now).unwrap());
    let items: Vec<(String, OffsetDateTime, Value)> = (0..1000)
        .map(|i| (format!("dev_{}", i % 7), now, json!({"i": i})))
        .collect();
    let (root, beta) = {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
        add_tenant(&*store, "acme");
        add_tenant(&*store, "beta");
        let feed = Feed::open(Arc::clone(&store), Arc::clone(&keys), "b.example".into()).unwrap();
        for _ in 0..11 {
            feed.append("acme", &items).await.unwrap();
        }
        feed.append("beta", &items[..3]).await.unwrap();
        store.flush().unwrap();
        (
            feed.checkpoint("acme", now).unwrap().checkpoint,
            feed.checkpoint("beta", now).unwrap().checkpoint,
        )
    };
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
    let feed = Feed::open(store, keys, "b.example".into()).unwrap();
    assert_eq!(feed.size("acme"), 11_000);
    let again = feed.checkpoint("acme", now).unwrap().checkpoint;
    assert_eq!((again.size, again.root), (root.size, root.root));
    assert_eq!(
        feed.checkpoint("beta", now).unwrap().checkpoint.root,
        beta.root
    );
    let d = feed.device("acme", "dev_3", now).unwrap().unwrap();
    assert_eq!(d.entry.seq, 10_997);
}

#[tokio::test]
async fn signing_keys_are_encrypted_with_the_key_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let settings = Settings {
        data_dir: data.clone(),
        ..Settings::default()
    };
    let pass = || Some(Zeroizing::new(b"correct horse".to_vec()));
    let a = app::open_with_passphrase(settings.clone(), Arc::new(SystemClock), pass())
        .await
        .unwrap();
    let kid = a
        .domain
        .keys()
        .unwrap()
        .active_kid(postern_broker::domain::keys::KeyKind::Ed25519);
    drop(a);
    let mut files = 0;
    for e in std::fs::read_dir(data.join("keys")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "key") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("-----BEGIN POSTERN ENCRYPTED PRIVATE KEY-----"));
            files += 1;
        }
    }
    assert_eq!(files, 3);
    // the CA key fails first without the passphrase; with it, the same signing keys come back
    let mut again = None;
    for _ in 0..40 {
        match app::open_with_passphrase(settings.clone(), Arc::new(SystemClock), pass()).await {
            Ok(a) => {
                again = Some(a);
                break;
            }
            Err(e) if format!("{e:#}").contains("in use") => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e:#}"),
        }
    }
    let again = again.unwrap();
    assert_eq!(
        again
            .domain
            .keys()
            .unwrap()
            .active_kid(postern_broker::domain::keys::KeyKind::Ed25519),
        kid
    );
}

#[tokio::test]
async fn feed_routes_need_a_token_and_the_jwks_does_not() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let domain = app::ephemeral(Arc::clone(&store), Arc::new(SystemClock))
        .await
        .unwrap();
    let acme = Arc::new(
        postern_broker::domain::acme::Acme::new(Arc::clone(&domain), Default::default()).unwrap(),
    );
    let posture = app::ephemeral_posture(&domain).unwrap();
    let app = router(AppState::new(domain, acme, posture), 64 * 1024);
    let call = |method: &str, uri: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap()
    };
    let r = app
        .clone()
        .oneshot(call("GET", "/.well-known/jwks.json"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for (m, uri) in [
        ("GET", "/feed/v1/default/checkpoint"),
        ("GET", "/feed/v1/default/entries?start=0&end=1"),
        ("GET", "/feed/v1/default/consistency?first=1&second=1"),
        ("GET", "/feed/v1/default/devices/d"),
        ("POST", "/v1/admin/keys/rotate"),
    ] {
        let r = app.clone().oneshot(call(m, uri)).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{uri}");
    }
}
