//! The signed feed at scale: appends of device records in batches through `Appender` into a
//! real sled store (each batch one durable transaction), against the pure in-memory Merkle tree
//! on the same leaves in the same run; then checkpoint signing, inclusion and consistency
//! proofs, device proofs, the rebuild of the tree when the feed is opened again, resident
//! memory along the way, and `Keys::sign_jws` rates.
//!
//! `cargo bench -p postern-broker --bench feed` (env: `FEED_ENTRIES`, default 1000000;
//! `FEED_BATCH`, default 1000; `FEED_SAMPLES`, default 10000).

// A benchmark that cannot set itself up has nothing to report: failing loudly is right.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_broker::domain::feed::{Feed, leaf};
use postern_broker::domain::keys::{JwsAlg, Keys};
use postern_broker::model::{AuditDraft, Tenant};
use postern_broker::store::sled::SledStore;
use postern_broker::store::{DocTxn, Store};
use postern_certs::merkle::MerkleTree;
use serde_json::{Value, json};
use time::OffsetDateTime;

const TENANT: &str = "bench";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// VmRSS from /proc/self/status, in MiB (0 where there is no procfs).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn record(i: u64) -> Value {
    let level = ["registered", "managed", "attested"][(i % 3) as usize];
    json!({
        "level": level,
        "platform": "ios",
        "rcs_e2ee": i.is_multiple_of(2),
        "reasons": ["mdm-compliant", "attestation-fresh"],
    })
}

fn device(i: u64) -> String {
    format!("dev_{:08x}", i % 100_000)
}

/// A tiny deterministic generator for sample indexes.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn micros(d: Duration, n: u64) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let entries = env_or("FEED_ENTRIES", 1_000_000);
    let batch = env_or("FEED_BATCH", 1000).max(1);
    let samples = env_or("FEED_SAMPLES", 10_000).max(1);
    let at = OffsetDateTime::now_utc();
    println!("feed bench: {entries} entries, batches of {batch}, {samples} samples per proof kind");
    println!("rss at start: {:.0} MiB", rss_mib());

    // signing keys
    let t = Instant::now();
    let keys = Arc::new(Keys::ephemeral(at).unwrap());
    println!(
        "keys: generated (ES256, Ed25519, RS256-2048) in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let payload = br#"{"tenant":"bench","device_id":"dev_00000001","seq":1,"tree_size":2}"#;
    for (alg, n) in [(JwsAlg::Es256, 20_000u64), (JwsAlg::Rs256, 500)] {
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(keys.sign_jws(alg, "bench+jwt", payload).unwrap());
        }
        let d = t.elapsed();
        println!(
            "sign_jws {alg}: {:.0}/s ({:.1} us each, one thread)",
            per_sec(n, d),
            micros(d, n)
        );
    }

    // baseline: the same leaves into a pure in-memory tree
    let t = Instant::now();
    let mut tree = MerkleTree::new();
    for i in 0..entries {
        let bytes = leaf::encode(i, TENANT, &device(i), at, &record(i)).unwrap();
        tree.push(&bytes);
    }
    let d = t.elapsed();
    let baseline_root = tree.root();
    println!(
        "baseline in-memory tree: {entries} leaves (encode + hash + push) in {:.2} s = {:.0}/s; rss {:.0} MiB",
        d.as_secs_f64(),
        per_sec(entries, d),
        rss_mib()
    );
    let mut rng = Lcg(7);
    let t = Instant::now();
    for _ in 0..samples {
        let i = rng.below(entries);
        std::hint::black_box(tree.inclusion_proof(i, entries).unwrap());
    }
    println!(
        "baseline inclusion proof: {:.2} us",
        micros(t.elapsed(), samples)
    );
    drop(tree);

    // the feed on sled
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (root, size) = rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
        store
            .insert_tenant(
                &Tenant {
                    id: TENANT.into(),
                    name: "bench".into(),
                    created_at: at,
                },
                AuditDraft {
                    time: at,
                    tenant: TENANT.into(),
                    actor: "bench".into(),
                    action: "tenant.create".into(),
                    subject: TENANT.into(),
                    details: json!({}),
                },
            )
            .unwrap();
        let feed = Feed::open(Arc::clone(&store), Arc::clone(&keys), "bench.example".into()).unwrap();
        let t = Instant::now();
        let mut next = 0u64;
        let mut commit_time = Duration::ZERO;
        while next < entries {
            let mut appender = feed.appender(TENANT).await.unwrap();
            let mut txn = DocTxn::new();
            let end = (next + batch).min(entries);
            for i in next..end {
                let (t, _) = appender.stage(txn, &device(i), at, &record(i)).unwrap();
                txn = t;
            }
            let c = Instant::now();
            store.commit_async(txn).await.unwrap();
            commit_time += c.elapsed();
            appender.committed();
            next = end;
        }
        let d = t.elapsed();
        println!(
            "feed appends (sled, batches of {batch}): {entries} in {:.2} s = {:.0}/s; {:.0}% of it in the store's commit; rss {:.0} MiB",
            d.as_secs_f64(),
            per_sec(entries, d),
            100.0 * commit_time.as_secs_f64() / d.as_secs_f64(),
            rss_mib()
        );

        let t = Instant::now();
        let cp = feed.checkpoint(TENANT, at).unwrap();
        let first = t.elapsed();
        let t = Instant::now();
        for _ in 0..samples {
            std::hint::black_box(feed.checkpoint(TENANT, at).unwrap());
        }
        println!(
            "checkpoint: signed (note + JWS) in {:.0} us; cached {:.2} us",
            first.as_secs_f64() * 1e6,
            micros(t.elapsed(), samples)
        );
        assert_eq!(cp.checkpoint.root, baseline_root, "feed root differs from the baseline");

        let mut rng = Lcg(11);
        let t = Instant::now();
        for _ in 0..samples {
            let first = 1 + rng.below(entries);
            std::hint::black_box(feed.consistency(TENANT, first, entries).unwrap());
        }
        println!("consistency proof (random first .. {entries}): {:.2} us", micros(t.elapsed(), samples));
        let t = Instant::now();
        for _ in 0..samples {
            let i = rng.below(entries.min(100_000));
            std::hint::black_box(feed.device(TENANT, &device(i), at).unwrap());
        }
        println!(
            "device proof (index + entry read, inclusion proof, ES256 statement): {:.2} us",
            micros(t.elapsed(), samples)
        );
        let t = Instant::now();
        let mut read = 0u64;
        while read < entries.min(100_000) {
            let end = (read + 1000).min(entries);
            read += feed.entries(TENANT, read, end).unwrap().len() as u64;
        }
        println!("entries read (pages of 1000, leaf hash checked): {:.0}/s", per_sec(read, t.elapsed()));
        store.flush().unwrap();
        (cp.checkpoint.root, feed.size(TENANT))
    });
    drop(rt);
    println!("rss after the store is closed: {:.0} MiB", rss_mib());

    let t = Instant::now();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
    let opened = t.elapsed();
    let t = Instant::now();
    let feed = Feed::open(store, keys, "bench.example".into()).unwrap();
    let rebuilt = t.elapsed();
    assert_eq!(feed.size(TENANT), size);
    assert_eq!(feed.checkpoint(TENANT, at).unwrap().checkpoint.root, root);
    println!(
        "rebuild at open: sled open {:.2} s, Feed::open {:.2} s for {size} entries ({:.0}/s); same root; rss {:.0} MiB",
        opened.as_secs_f64(),
        rebuilt.as_secs_f64(),
        per_sec(size, rebuilt),
        rss_mib()
    );
    let du: u64 = walk_size(dir.path());
    println!(
        "sled on disk: {:.0} MiB ({:.0} bytes per entry)",
        du as f64 / 1048576.0,
        du as f64 / size.max(1) as f64
    );
}

fn walk_size(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => walk_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
