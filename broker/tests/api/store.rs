//! The store conformance suite: every check runs against every backend.
//!
//! Each check is a function taking `&dyn Store`; [`conformance!`] turns the list into one
//! `#[test]` per backend and check (`store::memory::tokens`, `store::sled::tokens`, ...), so a
//! failure names the backend. Tests that only make sense for sled (reopening, locking,
//! corrupted bytes) follow in [`sled_only`].

use std::collections::BTreeSet;

use postern_broker::model::{
    AUDIT_GENESIS, AuditDraft, AuditEntry, CertificateRecord, CertificateStatus, RevocationReason,
    Role, Tenant, TokenRecord,
};
use postern_broker::store::memory::MemoryStore;
use postern_broker::store::sled::SledStore;
use postern_broker::store::{DocKind, DocTxn, Store, StoreError};
use postern_certs::names::SubjectName;
use serde_json::json;
use time::{Duration, OffsetDateTime};

/// A store under test and what keeps it alive.
struct Harness {
    store: Box<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

fn memory() -> Harness {
    Harness {
        store: Box::new(MemoryStore::new()),
        _dir: None,
    }
}

fn sled() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("db")).unwrap();
    Harness {
        store: Box::new(store),
        _dir: Some(dir),
    }
}

/// One `#[test]` per backend and check.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(
                #[test]
                fn $check() {
                    let h = super::memory();
                    super::$check(&*h.store);
                }
            )*
        }
        mod sled {
            $(
                #[test]
                fn $check() {
                    let h = super::sled();
                    super::$check(&*h.store);
                }
            )*
        }
    };
}

conformance!(
    tenants,
    tokens,
    put_token_replaces,
    certificates,
    certificate_conflict_leaves_first,
    revocation,
    audit_chain,
    audit_paging,
    counters,
    meta,
    times_round_trip,
    concurrent_inserts,
    documents,
    document_transactions,
    document_transaction_with_certificate,
    detached_writes,
    audit_times_never_go_back,
);

// ---------------------------------------------------------------------------------------------
// Records

/// Now, with its nanoseconds: the stores must keep them.
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn draft(action: &str, subject: &str) -> AuditDraft {
    AuditDraft {
        time: now(),
        tenant: "default".into(),
        actor: "cli".into(),
        action: action.into(),
        subject: subject.into(),
        details: json!({ "subject": subject, "nested": { "b": 2, "a": [1, "x"] } }),
    }
}

fn tenant(id: &str, name: &str) -> Tenant {
    Tenant {
        id: id.into(),
        name: name.into(),
        created_at: now(),
    }
}

fn token(id: &str, tenant: &str, role: Role) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        tenant: tenant.into(),
        role,
        secret_sha256: format!("{:0>64}", id),
        label: format!("label of {id}"),
        created_at: now(),
        revoked_at: None,
    }
}

fn cert(serial: &str) -> CertificateRecord {
    let issued = now();
    CertificateRecord {
        serial: serial.into(),
        tenant: "default".into(),
        profile: "device".into(),
        common_name: Some(format!("cn-{serial}")),
        names: vec![
            SubjectName::Dns(format!("{serial}.example.com")),
            SubjectName::PermanentIdentifier(format!("urn:dev:{serial}")),
        ],
        not_before: issued - Duration::minutes(5),
        not_after: issued + Duration::days(30),
        issued_at: issued,
        der_b64: "MIIBAAAA".into(),
        status: CertificateStatus::Good,
        enrollment: None,
    }
}

/// Every audit entry, after checking the chain: seqs 1..=n, each linked to the one before and
/// hashed right.
fn verify_chain(store: &dyn Store) -> Vec<AuditEntry> {
    let entries = store.audit_entries(1, usize::MAX).unwrap();
    let mut prev = AUDIT_GENESIS.to_owned();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "audit seqs are contiguous from 1");
        assert_eq!(e.prev_hash, prev, "entry {} links to the one before", e.seq);
        assert_eq!(e.hash, e.compute_hash(), "entry {} is hashed right", e.seq);
        prev = e.hash.clone();
    }
    entries
}

fn audit_len(store: &dyn Store) -> usize {
    verify_chain(store).len()
}

// ---------------------------------------------------------------------------------------------
// Checks for every backend

fn tenants(store: &dyn Store) {
    assert_eq!(store.tenants().unwrap(), vec![]);
    let beta = tenant("beta", "Beta Ltd");
    let alpha = tenant("alpha", "Alpha Inc");
    let e1 = store
        .insert_tenant(&beta, draft("tenant.create", "beta"))
        .unwrap();
    let e2 = store
        .insert_tenant(&alpha, draft("tenant.create", "alpha"))
        .unwrap();
    assert_eq!((e1.seq, e2.seq), (1, 2));
    assert_eq!(e2.prev_hash, e1.hash);

    assert_eq!(store.tenant("alpha").unwrap(), Some(alpha.clone()));
    assert_eq!(store.tenant("beta").unwrap(), Some(beta.clone()));
    assert_eq!(store.tenant("gamma").unwrap(), None);
    assert_eq!(store.tenants().unwrap(), vec![alpha.clone(), beta], "by id");

    let err = store
        .insert_tenant(&tenant("alpha", "Other"), draft("tenant.create", "alpha"))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.tenant("alpha").unwrap(), Some(alpha), "unchanged");
    assert_eq!(audit_len(store), 2, "no audit entry for the failed insert");
}

fn tokens(store: &dyn Store) {
    let t1 = token("tok1", "a", Role::Admin);
    let t2 = token("tok2", "a", Role::Gateway);
    let t3 = token("tok3", "b", Role::Device);
    for t in [&t2, &t3, &t1] {
        store.insert_token(t, draft("token.create", &t.id)).unwrap();
    }
    assert_eq!(store.token("tok1").unwrap(), Some(t1.clone()));
    assert_eq!(store.token("nope").unwrap(), None);
    assert_eq!(store.tokens("a").unwrap(), vec![t1.clone(), t2.clone()]);
    assert_eq!(store.tokens("b").unwrap(), vec![t3.clone()]);
    assert_eq!(store.tokens("c").unwrap(), vec![]);

    let err = store
        .insert_token(
            &token("tok1", "b", Role::Scim),
            draft("token.create", "tok1"),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.token("tok1").unwrap(), Some(t1.clone()), "unchanged");
    assert_eq!(audit_len(store), 3);

    let at = now();
    let revoked = store
        .revoke_token("tok1", at, draft("token.revoke", "tok1"))
        .unwrap();
    let mut expected = t1.clone();
    expected.revoked_at = Some(at);
    assert_eq!(revoked, expected);
    assert_eq!(store.token("tok1").unwrap(), Some(expected.clone()));
    assert_eq!(audit_len(store), 4);

    let err = store
        .revoke_token(
            "tok1",
            at + Duration::hours(1),
            draft("token.revoke", "tok1"),
        )
        .unwrap_err();
    assert_eq!(err, StoreError::AlreadyRevoked);
    assert_eq!(store.token("tok1").unwrap(), Some(expected), "unchanged");

    let err = store
        .revoke_token("nope", at, draft("token.revoke", "nope"))
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
    assert_eq!(audit_len(store), 4, "no audit entry for failed revocations");

    let entries = store.audit_entries(1, 10).unwrap();
    let actions: Vec<_> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.subject.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("token.create", "tok2"),
            ("token.create", "tok3"),
            ("token.create", "tok1"),
            ("token.revoke", "tok1"),
        ]
    );
}

fn put_token_replaces(store: &dyn Store) {
    let first = token("boot", "default", Role::Admin);
    let e1 = store
        .put_token(&first, draft("token.bootstrap", "boot"))
        .unwrap();
    assert_eq!(store.token("boot").unwrap(), Some(first));

    let mut second = token("boot", "default", Role::Admin);
    second.secret_sha256 = "f".repeat(64);
    let e2 = store
        .put_token(&second, draft("token.bootstrap", "boot"))
        .unwrap();
    assert_eq!(store.token("boot").unwrap(), Some(second.clone()));
    assert_eq!(store.tokens("default").unwrap(), vec![second]);
    assert_eq!((e1.seq, e2.seq), (1, 2));
    assert_eq!(verify_chain(store), vec![e1, e2]);
}

fn certificates(store: &dyn Store) {
    assert_eq!(store.certificate_count().unwrap(), 0);
    let a = cert("0a1b");
    let mut b = cert("ff00");
    b.common_name = None;
    b.names = vec![];
    let e = store
        .insert_certificate(&a, draft("certificate.issue", "0a1b"))
        .unwrap();
    store
        .insert_certificate(&b, draft("certificate.issue", "ff00"))
        .unwrap();
    assert_eq!(e.seq, 1);
    assert_eq!(e.action, "certificate.issue");
    assert_eq!(store.certificate("0a1b").unwrap(), Some(a));
    assert_eq!(store.certificate("ff00").unwrap(), Some(b));
    assert_eq!(store.certificate("0a1c").unwrap(), None);
    assert_eq!(store.certificate_count().unwrap(), 2);
    assert_eq!(store.revoked().unwrap(), vec![]);
    assert_eq!(audit_len(store), 2);
}

fn certificate_conflict_leaves_first(store: &dyn Store) {
    let first = cert("01");
    store
        .insert_certificate(&first, draft("certificate.issue", "01"))
        .unwrap();
    let mut other = cert("01");
    other.tenant = "other".into();
    other.der_b64 = "AAAA".into();
    let err = store
        .insert_certificate(&other, draft("certificate.issue", "01"))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.certificate("01").unwrap(), Some(first), "unchanged");
    assert_eq!(store.certificate_count().unwrap(), 1);
    assert_eq!(audit_len(store), 1, "no audit entry for the failed insert");
}

fn revocation(store: &dyn Store) {
    for s in ["01", "02", "03"] {
        store
            .insert_certificate(&cert(s), draft("certificate.issue", s))
            .unwrap();
    }
    let at = now();
    let revoked = store
        .revoke_certificate(
            "02",
            at,
            RevocationReason::KeyCompromise,
            draft("certificate.revoke", "02"),
        )
        .unwrap();
    let mut expected = cert("02");
    expected.not_before = revoked.not_before;
    expected.not_after = revoked.not_after;
    expected.issued_at = revoked.issued_at;
    expected.status = CertificateStatus::Revoked {
        revoked_at: at,
        reason: RevocationReason::KeyCompromise,
    };
    assert_eq!(revoked, expected);
    assert_eq!(store.certificate("02").unwrap(), Some(expected.clone()));
    assert_eq!(
        store.certificate("01").unwrap().unwrap().status,
        CertificateStatus::Good
    );

    let list = store.revoked().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].serial.as_str(), list[0].revoked_at, list[0].reason),
        ("02", at, RevocationReason::KeyCompromise)
    );

    let err = store
        .revoke_certificate(
            "02",
            at + Duration::hours(1),
            RevocationReason::Superseded,
            draft("certificate.revoke", "02"),
        )
        .unwrap_err();
    assert_eq!(err, StoreError::AlreadyRevoked);
    assert_eq!(
        store.certificate("02").unwrap(),
        Some(expected),
        "unchanged"
    );

    let err = store
        .revoke_certificate(
            "99",
            at,
            RevocationReason::Unspecified,
            draft("certificate.revoke", "99"),
        )
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);

    let at1 = now();
    store
        .revoke_certificate(
            "01",
            at1,
            RevocationReason::CessationOfOperation,
            draft("certificate.revoke", "01"),
        )
        .unwrap();
    let list = store.revoked().unwrap();
    let got: Vec<_> = list
        .iter()
        .map(|r| (r.serial.as_str(), r.revoked_at, r.reason))
        .collect();
    assert_eq!(
        got,
        [
            ("01", at1, RevocationReason::CessationOfOperation),
            ("02", at, RevocationReason::KeyCompromise),
        ],
        "by serial, unchanged by the failed second revocation"
    );
    assert_eq!(store.certificate_count().unwrap(), 3);

    let actions: Vec<_> = verify_chain(store)
        .into_iter()
        .map(|e| format!("{} {}", e.action, e.subject))
        .collect();
    assert_eq!(
        actions,
        [
            "certificate.issue 01",
            "certificate.issue 02",
            "certificate.issue 03",
            "certificate.revoke 02",
            "certificate.revoke 01",
        ],
        "one entry per successful write, none for the failures"
    );
}

fn audit_chain(store: &dyn Store) {
    let mut returned = vec![
        store
            .insert_tenant(&tenant("t", "T"), draft("tenant.create", "t"))
            .unwrap(),
        store.append_audit(draft("ca.init", "root")).unwrap(),
        store
            .insert_certificate(&cert("aa"), draft("certificate.issue", "aa"))
            .unwrap(),
        store
            .insert_token(&token("k", "t", Role::Mdm), draft("token.create", "k"))
            .unwrap(),
    ];
    for i in 0..6 {
        returned.push(store.append_audit(draft("note", &i.to_string())).unwrap());
    }

    let stored = verify_chain(store);
    assert_eq!(stored.len(), 10);
    assert_eq!(
        stored, returned,
        "what the writes returned is what is stored"
    );
    assert_eq!(stored[0].prev_hash, AUDIT_GENESIS);

    let d = draft("last", "x");
    let last = store.append_audit(d.clone()).unwrap();
    assert_eq!(last, d.seal(11, &stored[9].hash));
}

/// Writes nobody waits for still join the chain, in order with the others, once flushed.
fn detached_writes(store: &dyn Store) {
    store.append_audit(draft("first", "a")).unwrap();
    for i in 0..50 {
        store.commit_detached(DocTxn::new().audit(draft("route.decide", &i.to_string())));
    }
    let last = store.append_audit(draft("last", "z")).unwrap();
    store.flush().unwrap();
    let stored = verify_chain(store);
    assert_eq!(stored.len(), 52);
    assert_eq!(stored.last().unwrap(), &last);
    let subjects: Vec<String> = stored[1..51].iter().map(|e| e.subject.clone()).collect();
    let want: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(subjects, want, "submitted in order, stored in order");
}

/// Entries are in time order (the audit query's `since` searches by time): a draft made before
/// the last entry was sealed takes that entry's time.
fn audit_times_never_go_back(store: &dyn Store) {
    let first = store.append_audit(draft("first", "a")).unwrap();
    let mut early = draft("early", "b");
    early.time = first.time - Duration::hours(1);
    let second = store.append_audit(early).unwrap();
    assert_eq!(second.time, first.time);
    let mut late = draft("late", "c");
    late.time = first.time + Duration::seconds(1);
    let third = store.append_audit(late.clone()).unwrap();
    assert_eq!(third.time, late.time);
    let stored = verify_chain(store);
    assert_eq!(stored, vec![first, second, third]);
}

fn audit_paging(store: &dyn Store) {
    assert_eq!(store.audit_entries(1, 10).unwrap(), vec![]);
    for i in 1..=7 {
        store.append_audit(draft("note", &i.to_string())).unwrap();
    }
    let seqs = |from, limit| -> Vec<u64> {
        store
            .audit_entries(from, limit)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(1, 3), [1, 2, 3]);
    assert_eq!(seqs(4, 3), [4, 5, 6]);
    assert_eq!(seqs(7, 3), [7]);
    assert_eq!(seqs(8, 3), Vec::<u64>::new());
    assert_eq!(seqs(0, 2), [1, 2], "from 0 starts at the beginning");
    assert_eq!(seqs(3, 0), Vec::<u64>::new());
    assert_eq!(seqs(2, usize::MAX), [2, 3, 4, 5, 6, 7]);
    assert_eq!(seqs(u64::MAX, 5), Vec::<u64>::new());
    // Pages put together are the whole log.
    let mut all = Vec::new();
    let mut from = 1;
    loop {
        let page = store.audit_entries(from, 2).unwrap();
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        all.extend(page);
    }
    assert_eq!(all, verify_chain(store));
}

fn counters(store: &dyn Store) {
    assert_eq!(store.next_counter("crl").unwrap(), 1);
    assert_eq!(store.next_counter("crl").unwrap(), 2);
    assert_eq!(store.next_counter("other").unwrap(), 1);
    assert_eq!(store.next_counter("crl").unwrap(), 3);
    assert_eq!(store.next_counter("other").unwrap(), 2);
    assert_eq!(store.next_counter("").unwrap(), 1);
    assert_eq!(audit_len(store), 0, "counters are not audited");
}

fn meta(store: &dyn Store) {
    assert_eq!(store.meta("k").unwrap(), None);
    store.set_meta("k", b"one").unwrap();
    assert_eq!(store.meta("k").unwrap(), Some(b"one".to_vec()));
    store.set_meta("k", b"two!").unwrap();
    assert_eq!(store.meta("k").unwrap(), Some(b"two!".to_vec()));
    store.set_meta("empty", b"").unwrap();
    assert_eq!(store.meta("empty").unwrap(), Some(vec![]));
    assert_eq!(store.meta("k").unwrap(), Some(b"two!".to_vec()));
    assert_eq!(store.meta("K").unwrap(), None);
    // Keys that look like internal ones are the caller's like any other and break nothing.
    store.set_meta("sys:audit_head", b"garbage").unwrap();
    assert_eq!(
        store.meta("sys:audit_head").unwrap(),
        Some(b"garbage".to_vec())
    );
    store.append_audit(draft("note", "after meta")).unwrap();
    assert_eq!(audit_len(store), 1);
    store.flush().unwrap();
}

/// Times come back exactly, nanoseconds included.
fn times_round_trip(store: &dyn Store) {
    let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
    assert_eq!(t.nanosecond(), 123_456_789);
    let mut c = cert("abcdef");
    c.issued_at = t;
    c.not_before = t - Duration::nanoseconds(1);
    c.not_after = t + Duration::nanoseconds(10);
    let mut d = draft("certificate.issue", "abcdef");
    d.time = t;
    let e = store.insert_certificate(&c, d).unwrap();
    assert_eq!(store.certificate("abcdef").unwrap(), Some(c));
    assert_eq!(store.audit_entries(1, 1).unwrap(), vec![e]);
    let at = t + Duration::nanoseconds(7);
    store
        .revoke_certificate(
            "abcdef",
            at,
            RevocationReason::AaCompromise,
            draft("certificate.revoke", "abcdef"),
        )
        .unwrap();
    assert_eq!(store.revoked().unwrap()[0].revoked_at, at);
}

/// 8 threads × 50 certificate inserts with their audit entries: nothing lost, the chain intact.
fn concurrent_inserts(store: &dyn Store) {
    const THREADS: usize = 8;
    const EACH: usize = 50;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in 0..EACH {
                    let serial = format!("{t:02x}{i:04x}");
                    store
                        .insert_certificate(&cert(&serial), draft("certificate.issue", &serial))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(store.certificate_count().unwrap(), (THREADS * EACH) as u64);
    let entries = verify_chain(store);
    assert_eq!(entries.len(), THREADS * EACH);
    let subjects: BTreeSet<_> = entries.iter().map(|e| e.subject.clone()).collect();
    assert_eq!(subjects.len(), THREADS * EACH, "one entry per certificate");
    for serial in &subjects {
        assert!(store.certificate(serial).unwrap().is_some(), "{serial}");
    }
}

// ---------------------------------------------------------------------------------------------
// sled only

mod sled_only {
    use super::*;

    #[test]
    fn audit_times_never_go_back_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let last = {
            let store = SledStore::open(&path).unwrap();
            let mut d = draft("first", "a");
            d.time = now() + Duration::hours(2);
            store.append_audit(d).unwrap()
        };
        let store = SledStore::open(&path).unwrap();
        let next = store.append_audit(draft("after reopen", "b")).unwrap();
        assert_eq!(next.time, last.time);
        assert_eq!(verify_chain(&store).len(), 2);
    }

    #[test]
    fn reopen_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (a, b, at, chain) = {
            let store = SledStore::open(&path).unwrap();
            store
                .insert_tenant(&tenant("t", "T"), draft("tenant.create", "t"))
                .unwrap();
            store
                .insert_token(&token("k", "t", Role::Admin), draft("token.create", "k"))
                .unwrap();
            let a = cert("0a");
            let b = cert("0b");
            store
                .insert_certificate(&a, draft("certificate.issue", "0a"))
                .unwrap();
            store
                .insert_certificate(&b, draft("certificate.issue", "0b"))
                .unwrap();
            let at = now();
            let b = store
                .revoke_certificate(
                    "0b",
                    at,
                    RevocationReason::Superseded,
                    draft("certificate.revoke", "0b"),
                )
                .unwrap();
            assert_eq!(store.next_counter("crl").unwrap(), 1);
            assert_eq!(store.next_counter("crl").unwrap(), 2);
            store.set_meta("m", b"v").unwrap();
            let chain = verify_chain(&store);
            store.flush().unwrap();
            (a, b, at, chain)
        };

        let store = SledStore::open(&path).unwrap();
        assert_eq!(store.tenant("t").unwrap().unwrap().name, "T");
        assert_eq!(store.token("k").unwrap().unwrap().role, Role::Admin);
        assert_eq!(store.certificate("0a").unwrap(), Some(a));
        assert_eq!(store.certificate("0b").unwrap(), Some(b));
        assert_eq!(store.certificate_count().unwrap(), 2);
        let revoked = store.revoked().unwrap();
        assert_eq!(revoked.len(), 1);
        assert_eq!(
            (revoked[0].serial.as_str(), revoked[0].revoked_at),
            ("0b", at)
        );
        assert_eq!(store.meta("m").unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.next_counter("crl").unwrap(), 3, "counters continue");

        assert_eq!(verify_chain(&store), chain);
        let next = store.append_audit(draft("note", "after reopen")).unwrap();
        assert_eq!(next.seq, chain.len() as u64 + 1, "the chain continues");
        assert_eq!(next.prev_hash, chain.last().unwrap().hash);
        let c = store
            .insert_certificate(&cert("0c"), draft("certificate.issue", "0c"))
            .unwrap();
        assert_eq!(c.seq, chain.len() as u64 + 2);
        assert_eq!(verify_chain(&store).len(), chain.len() + 2);
    }

    #[test]
    fn second_open_fails_while_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let first = SledStore::open(&path).unwrap();
        let err = SledStore::open(&path).unwrap_err();
        match &err {
            StoreError::Backend(msg) => {
                assert!(msg.contains("another postern process"), "{msg}");
                assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
            other => panic!("expected a Backend error, got {other:?}"),
        }
        // The first handle is unharmed, and the directory opens again once it is closed.
        first.append_audit(draft("note", "still here")).unwrap();
        drop(first);
        let again = SledStore::open(&path).unwrap();
        assert_eq!(verify_chain(&again).len(), 1);
    }

    /// Writes `value` under `kind/key` of the closed database at `path` (the layout documented
    /// in `store/sled.rs`), behind the store's back.
    fn tamper(path: &std::path::Path, kind: &str, key: &[u8], value: &[u8]) {
        let db = ::sled::open(path).unwrap();
        let full = [kind.as_bytes(), b"/", key].concat();
        db.open_tree("postern")
            .unwrap()
            .insert(full, value)
            .unwrap();
        db.flush().unwrap();
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = SledStore::open(&path).unwrap();
            store
                .insert_certificate(&cert("0bad"), draft("certificate.issue", "0bad"))
                .unwrap();
            store
                .insert_certificate(&cert("0900d"), draft("certificate.issue", "0900d"))
                .unwrap();
            store
                .insert_tenant(&tenant("t", "T"), draft("tenant.create", "t"))
                .unwrap();
            store.next_counter("crl").unwrap();
            store.flush().unwrap();
        }
        tamper(&path, "certificates", b"0bad", b"\xff\x00garbage{");
        tamper(&path, "tenants", b"t", b"{\"id\":1}");
        tamper(&path, "tokens", b"k", b"[]");
        tamper(&path, "revoked", b"0900d", b"nope");
        tamper(&path, "counters", b"crl", b"abc");

        let store = SledStore::open(&path).unwrap();
        let corrupt = |r: Result<(), StoreError>, what: &[&str]| match r {
            Err(StoreError::Corrupt(msg)) => {
                for w in what {
                    assert!(msg.contains(w), "{msg:?} names {w:?}");
                }
            }
            other => panic!("expected Corrupt naming {what:?}, got {other:?}"),
        };
        corrupt(
            store.certificate("0bad").map(drop),
            &["certificates", "0bad"],
        );
        corrupt(
            store
                .revoke_certificate(
                    "0bad",
                    now(),
                    RevocationReason::KeyCompromise,
                    draft("certificate.revoke", "0bad"),
                )
                .map(drop),
            &["certificates", "0bad"],
        );
        corrupt(store.tenant("t").map(drop), &["tenants", "\"t\""]);
        corrupt(store.tenants().map(drop), &["tenants"]);
        corrupt(store.tokens("t").map(drop), &["tokens", "\"k\""]);
        corrupt(
            store
                .revoke_token("k", now(), draft("token.revoke", "k"))
                .map(drop),
            &["tokens"],
        );
        corrupt(store.revoked().map(drop), &["revoked", "0900d"]);
        corrupt(store.next_counter("crl").map(drop), &["counters", "crl"]);

        // The healthy records still read, and the failures appended nothing.
        assert!(store.certificate("0900d").unwrap().is_some());
        assert_eq!(verify_chain(&store).len(), 3);
        store.append_audit(draft("note", "still works")).unwrap();
        assert_eq!(verify_chain(&store).len(), 4);
    }

    #[test]
    fn corrupt_audit_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = SledStore::open(&path).unwrap();
            store.append_audit(draft("note", "1")).unwrap();
            store.append_audit(draft("note", "2")).unwrap();
            store.flush().unwrap();
        }
        // A garbage entry inside the log.
        tamper(&path, "audit", &1u64.to_be_bytes(), b"garbage");
        let store = SledStore::open(&path).unwrap();
        match store.audit_entries(1, 10) {
            Err(StoreError::Corrupt(msg)) => {
                assert!(msg.contains("audit") && msg.contains("seq 1"), "{msg}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        drop(store);

        // A garbage audit head refuses to open: appending would break the chain.
        tamper(&path, "meta", b"sys:audit_head", b"\x01\x02");
        match SledStore::open(&path) {
            Err(StoreError::Corrupt(msg)) => assert!(msg.contains("meta"), "{msg}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }

        // A head that disagrees with the log refuses to open too.
        tamper(
            &path,
            "meta",
            b"sys:audit_head",
            format!("{{\"seq\":1,\"hash\":\"{AUDIT_GENESIS}\"}}").as_bytes(),
        );
        match SledStore::open(&path) {
            Err(StoreError::Corrupt(msg)) => assert!(msg.contains("audit head"), "{msg}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

/// Documents: put, read, list by prefix, delete; kinds are separate key spaces.
fn documents(store: &dyn Store) {
    assert_eq!(store.doc(DocKind::AcmeOrder, "a").unwrap(), None);
    store
        .commit(
            DocTxn::new()
                .put(DocKind::AcmeOrder, "t1/a", b"{\"n\":1}".to_vec())
                .put(DocKind::AcmeOrder, "t1/b", b"{\"n\":2}".to_vec())
                .put(DocKind::AcmeOrder, "t2/a", b"{\"n\":3}".to_vec())
                .put(DocKind::AcmeAuthz, "t1/a", b"other".to_vec()),
        )
        .unwrap();
    assert_eq!(
        store.doc(DocKind::AcmeOrder, "t1/a").unwrap(),
        Some(b"{\"n\":1}".to_vec())
    );
    let t1: Vec<String> = store
        .docs(DocKind::AcmeOrder, "t1/", 10)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(t1, ["t1/a", "t1/b"]);
    assert_eq!(store.docs(DocKind::AcmeOrder, "", 2).unwrap().len(), 2);
    assert_eq!(store.docs(DocKind::AcmeOrder, "", 10).unwrap().len(), 3);
    assert_eq!(store.docs(DocKind::AcmeAuthz, "", 10).unwrap().len(), 1);
    assert_eq!(store.docs(DocKind::Device, "", 10).unwrap().len(), 0);
    store
        .commit(DocTxn::new().delete(DocKind::AcmeOrder, "t1/a"))
        .unwrap();
    assert_eq!(store.doc(DocKind::AcmeOrder, "t1/a").unwrap(), None);
    assert_eq!(
        store.doc(DocKind::AcmeAuthz, "t1/a").unwrap(),
        Some(b"other".to_vec())
    );
    assert_eq!(audit_len(store), 0);
}

/// Checks make a transaction all-or-nothing; the audit entry comes with it.
fn document_transactions(store: &dyn Store) {
    let e = store
        .commit(
            DocTxn::new()
                .absent(DocKind::Device, "t/d1")
                .put(DocKind::Device, "t/d1", b"v1".to_vec())
                .audit(draft("device.create", "d1")),
        )
        .unwrap();
    assert_eq!(e.unwrap().seq, 1);
    // absent fails: nothing of the transaction is written, no audit entry
    let err = store
        .commit(
            DocTxn::new()
                .absent(DocKind::Device, "t/d1")
                .put(DocKind::Device, "t/d1", b"v2".to_vec())
                .put(DocKind::DeviceIndex, "t/serial:X", b"d1".to_vec())
                .audit(draft("device.create", "d1")),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        store.doc(DocKind::Device, "t/d1").unwrap(),
        Some(b"v1".to_vec())
    );
    assert_eq!(store.doc(DocKind::DeviceIndex, "t/serial:X").unwrap(), None);
    assert_eq!(audit_len(store), 1);
    // compare-and-swap: the stale value loses, the current one wins
    let stale = DocTxn::new()
        .unchanged(DocKind::Device, "t/d1", b"v0".to_vec())
        .put(DocKind::Device, "t/d1", b"v2".to_vec());
    assert!(matches!(store.commit(stale), Err(StoreError::Conflict(_))));
    store
        .commit(
            DocTxn::new()
                .unchanged(DocKind::Device, "t/d1", b"v1".to_vec())
                .put(DocKind::Device, "t/d1", b"v2".to_vec()),
        )
        .unwrap();
    assert_eq!(
        store.doc(DocKind::Device, "t/d1").unwrap(),
        Some(b"v2".to_vec())
    );
    // a check on a missing document with bytes fails
    let missing = DocTxn::new().unchanged(DocKind::Device, "t/none", b"x".to_vec());
    assert!(matches!(
        store.commit(missing),
        Err(StoreError::Conflict(_))
    ));
    // concurrent compare-and-swap: exactly one of many wins
    let wins = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for i in 0..8 {
            let wins = &wins;
            s.spawn(move || {
                let t = DocTxn::new()
                    .unchanged(DocKind::Device, "t/d1", b"v2".to_vec())
                    .put(DocKind::Device, "t/d1", format!("v3-{i}").into_bytes());
                if store.commit(t).is_ok() {
                    wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(wins.into_inner(), 1);
    verify_chain(store);
    store.flush().unwrap();
}

/// A certificate stored in a document transaction: with the documents, or (serial taken)
/// nothing at all.
fn document_transaction_with_certificate(store: &dyn Store) {
    let e = store
        .commit(
            DocTxn::new()
                .put(DocKind::AcmeOrder, "o1", b"valid".to_vec())
                .certificate(cert("0a01"))
                .audit(draft("certificate.issue", "0a01")),
        )
        .unwrap();
    assert_eq!(e.unwrap().seq, 1);
    assert_eq!(store.certificate("0a01").unwrap().unwrap().serial, "0a01");
    assert_eq!(store.certificate_count().unwrap(), 1);
    let err = store
        .commit(
            DocTxn::new()
                .put(DocKind::AcmeOrder, "o2", b"valid".to_vec())
                .certificate(cert("0a01"))
                .audit(draft("certificate.issue", "0a01")),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.doc(DocKind::AcmeOrder, "o2").unwrap(), None);
    assert_eq!(audit_len(store), 1);
    verify_chain(store);
}
