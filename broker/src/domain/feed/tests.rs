#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use super::*;
use crate::model::{AuditDraft, Tenant};
use crate::store::memory::MemoryStore;
use postern_certs::merkle::{verify_consistency, verify_inclusion};
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const ORIGIN: &str = "broker.example";

fn add_tenant(store: &dyn Store, id: &str) {
    store
        .insert_tenant(
            &Tenant {
                id: id.into(),
                name: id.into(),
                created_at: T0,
            },
            AuditDraft {
                time: T0,
                tenant: id.into(),
                actor: "test".into(),
                action: "tenant.create".into(),
                subject: id.into(),
                details: json!({}),
            },
        )
        .unwrap();
}

fn memory_feed(tenants: &[&str]) -> (Arc<dyn Store>, Feed) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    for t in tenants {
        add_tenant(&*store, t);
    }
    let keys = Arc::new(Keys::ephemeral(T0).unwrap());
    let feed = Feed::open(Arc::clone(&store), keys, ORIGIN.into()).unwrap();
    (store, feed)
}

fn items(device: &str, n: usize) -> Vec<(String, OffsetDateTime, Value)> {
    (0..n)
        .map(|i| {
            (
                device.to_owned(),
                T0 + Duration::seconds(i as i64),
                json!({"level": "managed", "i": i}),
            )
        })
        .collect()
}

fn root_of(feed: &Feed, tenant: &str) -> Hash {
    feed.checkpoint(tenant, T0).unwrap().checkpoint.root
}

#[tokio::test]
async fn appended_entries_are_stored_as_canonical_leaves_with_proofs() {
    let (store, feed) = memory_feed(&["acme"]);
    let seqs = feed.append("acme", &items("dev_a", 5)).await.unwrap();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    assert_eq!(feed.size("acme"), 5);
    let entries = feed.entries("acme", 0, 5).unwrap();
    assert_eq!(
        String::from_utf8(entries[2].leaf.clone()).unwrap(),
        r#"{"at":"2026-03-01T12:00:02Z","device_id":"dev_a","record":{"i":2,"level":"managed"},"seq":2,"tenant":"acme"}"#
    );
    assert_eq!(
        store
            .doc(DocKind::FeedIndex, "acme/dev_a")
            .unwrap()
            .unwrap(),
        b"4"
    );
    let cp = feed.checkpoint("acme", T0).unwrap().checkpoint;
    let tree = MerkleTree::from_leaf_hashes(entries.iter().map(|e| leaf_hash(&e.leaf)).collect());
    assert_eq!(cp.root, tree.root());
    for e in &entries {
        let proof = feed
            .log("acme")
            .unwrap()
            .read_tree()
            .inclusion_proof(e.seq, 5)
            .unwrap();
        verify_inclusion(&leaf_hash(&e.leaf), e.seq, 5, &proof, &cp.root).unwrap();
    }
}

#[tokio::test]
async fn consistency_proofs_verify_between_every_pair_of_sizes() {
    let (_, feed) = memory_feed(&["acme"]);
    let mut roots = vec![];
    for i in 0..12 {
        feed.append("acme", &items(&format!("dev_{i}"), 1))
            .await
            .unwrap();
        roots.push(root_of(&feed, "acme"));
    }
    for first in 1..=12u64 {
        for second in first..=12u64 {
            let proof = feed.consistency("acme", first, second).unwrap();
            verify_consistency(
                first,
                second,
                &roots[first as usize - 1],
                &roots[second as usize - 1],
                &proof,
            )
            .unwrap();
        }
    }
}

#[tokio::test]
async fn a_batch_of_stages_commits_together_and_a_dropped_appender_adds_nothing() {
    let (store, feed) = memory_feed(&["acme"]);
    // staged, never committed: nothing happens
    {
        let mut a = feed.appender("acme").await.unwrap();
        let (txn, seq) = a.stage(DocTxn::new(), "dev_a", T0, &json!(1)).unwrap();
        assert_eq!(seq, 0);
        assert_eq!(a.next_seq(), 1);
        drop(txn);
    }
    assert_eq!(feed.size("acme"), 0);
    // a batch in one transaction, with other documents of the caller
    let mut a = feed.appender("acme").await.unwrap();
    assert_eq!(a.next_seq(), 0);
    let mut txn = DocTxn::new().put(DocKind::Posture, "acme/dev_a", b"{}".to_vec());
    for (i, d) in ["dev_a", "dev_b", "dev_a"].iter().enumerate() {
        let (t, seq) = a.stage(txn, d, T0, &json!({"n": i})).unwrap();
        assert_eq!(seq, i as u64);
        txn = t;
    }
    store.commit(txn).unwrap();
    // committed but not yet announced: not in the tree
    assert_eq!(feed.size("acme"), 0);
    a.committed();
    assert_eq!(feed.size("acme"), 3);
    assert_eq!(
        store
            .doc(DocKind::FeedIndex, "acme/dev_a")
            .unwrap()
            .unwrap(),
        b"2"
    );
    assert_eq!(
        store
            .doc(DocKind::FeedIndex, "acme/dev_b")
            .unwrap()
            .unwrap(),
        b"1"
    );
    assert!(store.doc(DocKind::Posture, "acme/dev_a").unwrap().is_some());
}

#[tokio::test]
async fn a_failed_commit_leaves_the_tree_and_the_next_number_as_they_were() {
    let (store, feed) = memory_feed(&["acme"]);
    feed.append("acme", &items("dev_a", 2)).await.unwrap();
    let mut a = feed.appender("acme").await.unwrap();
    let txn = DocTxn::new().absent(DocKind::Posture, "acme/x");
    let (txn, _) = a.stage(txn, "dev_a", T0, &json!(1)).unwrap();
    // the caller's own check fails
    store
        .commit(DocTxn::new().put(DocKind::Posture, "acme/x", b"1".to_vec()))
        .unwrap();
    assert!(matches!(
        store.commit(txn),
        Err(crate::store::StoreError::Conflict(_))
    ));
    drop(a);
    assert_eq!(feed.size("acme"), 2);
    let a = feed.appender("acme").await.unwrap();
    assert_eq!(a.next_seq(), 2);
}

#[tokio::test]
async fn entries_committed_without_committed_are_caught_up_and_never_overwritten() {
    let (store, feed) = memory_feed(&["acme"]);
    let mut a = feed.appender("acme").await.unwrap();
    let (txn, _) = a.stage(DocTxn::new(), "dev_a", T0, &json!(1)).unwrap();
    store.commit(txn).unwrap();
    drop(a); // the caller forgot committed()
    assert_eq!(feed.size("acme"), 0);
    let a = feed.appender("acme").await.unwrap();
    assert_eq!(a.next_seq(), 1);
    assert_eq!(feed.size("acme"), 1);
    drop(a);
    // a stale appender's entry is refused by the absent check
    let txn = DocTxn::new()
        .absent(DocKind::FeedEntry, leaf::entry_id("acme", 0))
        .put(DocKind::FeedEntry, leaf::entry_id("acme", 0), b"x".to_vec());
    assert!(matches!(
        store.commit(txn),
        Err(crate::store::StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn concurrent_appenders_serialise_per_tenant() {
    let (_, feed) = memory_feed(&["acme", "beta"]);
    let feed = Arc::new(feed);
    let mut tasks = vec![];
    for w in 0..4 {
        let feed = Arc::clone(&feed);
        tasks.push(tokio::spawn(async move {
            let tenant = if w % 2 == 0 { "acme" } else { "beta" };
            let mut seqs = vec![];
            for i in 0..25 {
                seqs.extend(
                    feed.append(tenant, &items(&format!("d{w}_{i}"), 2))
                        .await
                        .unwrap(),
                );
            }
            (tenant, seqs)
        }));
    }
    let mut acme = vec![];
    for t in tasks {
        let (tenant, seqs) = t.await.unwrap();
        if tenant == "acme" {
            acme.extend(seqs);
        }
    }
    acme.sort_unstable();
    assert_eq!(acme, (0..100).collect::<Vec<u64>>());
    assert_eq!(feed.size("acme"), 100);
    assert_eq!(feed.size("beta"), 100);
}

#[tokio::test]
async fn trees_rebuilt_at_open_have_the_same_roots() {
    let (store, feed) = memory_feed(&["acme", "beta"]);
    // more than a rebuild page for one tenant
    let batch = items("dev", 1000);
    for _ in 0..11 {
        feed.append("acme", &batch).await.unwrap();
    }
    feed.append("beta", &items("dev_b", 3)).await.unwrap();
    let again = Feed::open(store, Arc::clone(feed.keys()), ORIGIN.into()).unwrap();
    assert_eq!(again.size("acme"), 11_000);
    assert_eq!(again.size("beta"), 3);
    assert_eq!(root_of(&again, "acme"), root_of(&feed, "acme"));
    assert_eq!(root_of(&again, "beta"), root_of(&feed, "beta"));
    let a = again.appender("acme").await.unwrap();
    assert_eq!(a.next_seq(), 11_000);
}

#[tokio::test]
async fn a_gap_in_the_stored_entries_stops_the_open() {
    let (store, feed) = memory_feed(&["acme"]);
    feed.append("acme", &items("dev", 3)).await.unwrap();
    store
        .commit(DocTxn::new().delete(DocKind::FeedEntry, leaf::entry_id("acme", 1)))
        .unwrap();
    let err = Feed::open(store, Arc::clone(feed.keys()), ORIGIN.into()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal);
    assert_eq!(
        err.cause.unwrap(),
        "feed of acme: found acme/00000000000000000002 where acme/00000000000000000001 should be"
    );
}

#[tokio::test]
async fn checkpoints_are_signed_both_ways_and_resigned_when_they_must_be() {
    let (_, feed) = memory_feed(&["acme"]);
    let feed = feed.with_checkpoint_refresh(Duration::minutes(5));
    feed.append("acme", &items("dev", 3)).await.unwrap();
    let keys = Arc::clone(feed.keys());
    let c1 = feed.checkpoint("acme", T0).unwrap();
    assert_eq!(c1.checkpoint.origin, "broker.example/feed/acme");
    assert_eq!(c1.checkpoint.size, 3);
    let note_key = keys.note_key();
    let from_note = checkpoint::verify_note(
        &c1.note,
        "broker.example/feed/acme",
        &note_key.public_key,
        T0,
        Duration::minutes(10),
    )
    .unwrap();
    assert_eq!(from_note, c1.checkpoint);
    let from_jws =
        checkpoint::from_jws(&c1.jws, &keys.jwk_set(T0), T0, Duration::minutes(10)).unwrap();
    assert_eq!(from_jws, c1.checkpoint);

    // same size, young: the same signatures
    let c2 = feed.checkpoint("acme", T0 + Duration::minutes(4)).unwrap();
    assert_eq!(c2, c1);
    // old: signed anew
    let c3 = feed.checkpoint("acme", T0 + Duration::minutes(5)).unwrap();
    assert_eq!(c3.checkpoint.timestamp, T0 + Duration::minutes(5));
    assert_eq!(c3.checkpoint.root, c1.checkpoint.root);
    // new size: signed anew
    feed.append("acme", &items("dev", 1)).await.unwrap();
    let c4 = feed.checkpoint("acme", T0 + Duration::minutes(6)).unwrap();
    assert_eq!(c4.checkpoint.size, 4);
    // new keys: signed anew with them
    keys.rotate(T0 + Duration::minutes(6), Duration::hours(1))
        .unwrap();
    let c5 = feed.checkpoint("acme", T0 + Duration::minutes(6)).unwrap();
    assert_ne!(c5.note_kid, c4.note_kid);
    assert_eq!(c5.jws_kid, keys.active_kid(KeyKind::Es256));
    // a tenant without entries has the empty tree's checkpoint
    let empty = feed.checkpoint("nobody", T0).unwrap();
    assert_eq!(empty.checkpoint.size, 0);
    assert_eq!(empty.checkpoint.root, postern_certs::merkle::empty_root());
}

#[tokio::test]
async fn device_proofs_carry_the_newest_entry_proof_and_statement() {
    let (_, feed) = memory_feed(&["acme"]);
    feed.append("acme", &items("dev_a", 2)).await.unwrap();
    feed.append("acme", &items("dev_b", 3)).await.unwrap();
    feed.append(
        "acme",
        &[("dev_a".into(), T0, json!({"level": "attested"}))],
    )
    .await
    .unwrap();
    let now = T0 + Duration::minutes(1);
    let p = feed.device("acme", "dev_a", now).unwrap().unwrap();
    assert_eq!(p.entry.seq, 5);
    assert_eq!(p.record, json!({"level": "attested"}));
    let cp = &p.checkpoint.checkpoint;
    assert_eq!(cp.size, 6);
    verify_inclusion(&p.leaf_hash, 5, cp.size, &p.inclusion, &cp.root).unwrap();
    let v = jws::verify_compact(&p.statement, &feed.keys().jwk_set(now)).unwrap();
    assert_eq!(v.header["typ"], STATEMENT_TYP);
    assert_eq!(v.header["alg"], "ES256");
    let claims: Value = serde_json::from_slice(&v.payload).unwrap();
    assert_eq!(
        claims,
        json!({
            "iss": "broker.example/feed/acme",
            "tenant": "acme",
            "device_id": "dev_a",
            "seq": 5,
            "leaf_hash": URL_SAFE_NO_PAD.encode(p.leaf_hash),
            "tree_size": 6,
            "iat": now.unix_timestamp(),
            "exp": now.unix_timestamp() + 600,
            "record": {"level": "attested"},
        })
    );
    assert!(feed.device("acme", "dev_none", now).unwrap().is_none());
    use postern_certs::jws;
}

#[tokio::test]
async fn bad_ranges_and_inputs_are_refused_with_their_reason() {
    let (_, feed) = memory_feed(&["acme"]);
    feed.append("acme", &items("dev", 5)).await.unwrap();
    let detail = |r: DomainResult<Vec<Entry>>| {
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        e.detail
    };
    assert_eq!(
        detail(feed.entries("acme", 3, 3)),
        "start (3) must be below end (3)"
    );
    assert_eq!(
        detail(feed.entries("acme", 4, 2)),
        "start (4) must be below end (2)"
    );
    assert_eq!(
        detail(feed.entries("acme", 0, 6)),
        "end (6) is beyond the tree size (5)"
    );
    assert_eq!(feed.entries("acme", 4, 5).unwrap().len(), 1);
    let detail = |r: DomainResult<Vec<Hash>>| {
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        e.detail
    };
    assert_eq!(
        detail(feed.consistency("acme", 0, 3)),
        "first must be at least 1"
    );
    assert_eq!(
        detail(feed.consistency("acme", 4, 3)),
        "first (4) must not be greater than second (3)"
    );
    assert_eq!(
        detail(feed.consistency("acme", 1, 6)),
        "second (6) is beyond the tree size (5)"
    );
    assert!(feed.consistency("acme", 5, 5).unwrap().is_empty());

    let e = feed.appender("nope").await.unwrap_err();
    assert_eq!(
        (e.kind, e.detail.as_str()),
        (ErrorKind::NotFound, "no tenant nope")
    );
    let e = feed.appender("Bad/Tenant").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Malformed);
    let mut a = feed.appender("acme").await.unwrap();
    let e = a.stage(DocTxn::new(), "a/b", T0, &json!(1)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Malformed);
    assert_eq!(a.next_seq(), 5);
    let e = Feed::open(
        Arc::new(MemoryStore::new()),
        Arc::clone(feed.keys()),
        "a b".into(),
    )
    .unwrap_err();
    assert_eq!(
        e.detail,
        "feed origin must be non-empty, without whitespace, '+' or control characters"
    );
}

#[tokio::test]
async fn a_thousand_entries_per_read_at_most() {
    let (_, feed) = memory_feed(&["acme"]);
    feed.append("acme", &items("dev", 1001)).await.unwrap();
    assert_eq!(feed.entries("acme", 1, 1001).unwrap().len(), 1000);
    let e = feed.entries("acme", 0, 1001).unwrap_err();
    assert_eq!(e.detail, "at most 1000 entries per request");
}

#[test]
fn feeds_and_appenders_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Feed>();
    send::<Appender<'static>>();
}
