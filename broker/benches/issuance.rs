//! Issuance throughput: postern's full path (CSR → checks → signed certificate → durable
//! record + audit entry, group-committed to sled) from concurrent callers, against raw rcgen
//! (CSR parse + signature check + sign, nothing stored) on the same number of threads, in the
//! same run. Prints both rates and their ratio.
//!
//! `cargo bench -p postern-broker --bench issuance` (env: `BENCH_SECONDS`, default 5;
//! `BENCH_THREADS`, default the number of CPUs; `BENCH_CONCURRENCY`, default 64).

// A benchmark that cannot set itself up has nothing to report: failing loudly is right.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use postern_broker::app;
use postern_broker::domain::pki::IssueCommand;
use postern_broker::domain::{Principal, SystemClock};
use postern_broker::store::Store;
use postern_broker::store::memory::MemoryStore;
use postern_broker::store::sled::SledStore;

/// The allocator the `postern` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn csrs(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let key = rcgen::KeyPair::generate().expect("key");
            let params = rcgen::CertificateParams::new(vec![format!("host{i}.example.com")])
                .expect("params");
            params.serialize_request(&key).expect("csr").der().to_vec()
        })
        .collect()
}

/// Raw rcgen: parse and verify the CSR, sign a leaf with a P-256 CA; `threads` OS threads.
fn rcgen_baseline(csrs: &Arc<Vec<Vec<u8>>>, threads: usize, secs: u64) -> f64 {
    let ca_key = Arc::new(rcgen::KeyPair::generate().expect("ca key"));
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let ca_cert = ca_params.self_signed(&*ca_key).expect("ca cert");
    let ca_der = ca_cert.der().clone();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (csrs, done, stop, ca_key, ca_der) = (
                Arc::clone(csrs),
                Arc::clone(&done),
                Arc::clone(&stop),
                Arc::clone(&ca_key),
                ca_der.clone(),
            );
            std::thread::spawn(move || {
                let issuer = rcgen::Issuer::from_ca_cert_der(&ca_der, &*ca_key).expect("issuer");
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let der = &csrs[i % csrs.len()];
                    let req = rcgen::CertificateSigningRequestParams::from_der(&der.clone().into())
                        .expect("csr");
                    let cert = req.signed_by(&issuer).expect("sign");
                    std::hint::black_box(cert.der());
                    done.fetch_add(1, Ordering::Relaxed);
                    i += threads;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("thread");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// postern: `issue_from_csr` from `concurrency` tasks on a runtime with `threads` workers.
fn postern(
    store: Arc<dyn Store>,
    csrs: &Arc<Vec<Vec<u8>>>,
    threads: usize,
    concurrency: usize,
    secs: u64,
) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let domain = app::ephemeral(store, Arc::new(SystemClock))
            .await
            .expect("domain");
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|t| {
                let (domain, csrs, done, stop) = (
                    Arc::clone(&domain),
                    Arc::clone(csrs),
                    Arc::clone(&done),
                    Arc::clone(&stop),
                );
                tokio::spawn(async move {
                    let who = Principal::system();
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let cmd = IssueCommand {
                            csr: csrs[i % csrs.len()].clone(),
                            profile: "tls-server".into(),
                            ..IssueCommand::default()
                        };
                        domain.issue_from_csr(&who, cmd).await.expect("issue");
                        done.fetch_add(1, Ordering::Relaxed);
                        i += concurrency;
                    }
                })
            })
            .collect();
        // a plain thread keeps time: callers that never wait (a store with nothing to flush)
        // would starve the runtime's timer
        let stopper = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(secs));
                stop.store(true, Ordering::Relaxed);
            })
        };
        stopper.join().expect("stopper");
        for t in tasks {
            t.await.expect("task");
        }
        let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
        let report = postern_broker::domain::audit::verify(&**domain.store()).expect("audit chain");
        assert!(report.entries >= done.load(Ordering::Relaxed));
        rate
    })
}

/// The store alone: pre-issued certificate records (no crypto) inserted with their audit
/// entries from `threads` OS threads (each write returns once durable); the ceiling the store sets.
fn store_only(store: Arc<dyn Store>, threads: usize, n: usize) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let domain = rt
        .block_on(app::ephemeral(
            Arc::new(MemoryStore::new()),
            Arc::new(SystemClock),
        ))
        .expect("domain");
    let who = Principal::system();
    let csrs = csrs(1);
    let template = rt
        .block_on(domain.issue_from_csr(
            &who,
            IssueCommand {
                csr: csrs[0].clone(),
                profile: "tls-server".into(),
                ..IssueCommand::default()
            },
        ))
        .expect("issue")
        .record;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, template) = (Arc::clone(&store), template.clone());
            std::thread::spawn(move || {
                for i in 0..n / threads {
                    let mut rec = template.clone();
                    rec.serial = format!("{t:02x}{i:030x}");
                    let draft = postern_broker::model::AuditDraft {
                        time: rec.issued_at,
                        tenant: rec.tenant.clone(),
                        actor: "bench".into(),
                        action: "certificate.issue".into(),
                        subject: rec.serial.clone(),
                        details: serde_json::json!({"profile": rec.profile}),
                    };
                    // the same store operation issuance uses: a transaction with the record
                    let txn = postern_broker::store::DocTxn::new()
                        .certificate(rec)
                        .audit(draft);
                    store.commit(txn).expect("insert");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    store.flush().expect("flush");
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted
    let secs = env_or("BENCH_SECONDS", 5) as u64;
    let threads = env_or(
        "BENCH_THREADS",
        std::thread::available_parallelism().map_or(2, |n| n.get()),
    );
    let concurrency = env_or("BENCH_CONCURRENCY", 64);
    println!(
        "issuance benchmark: {threads} threads, {concurrency} concurrent callers, {secs}s per run"
    );
    let csrs = Arc::new(csrs(512));

    let baseline = rcgen_baseline(&csrs, threads, secs);
    println!("raw rcgen (parse + verify + sign, nothing stored): {baseline:>9.0} certs/s");

    let mem = postern(
        Arc::new(MemoryStore::new()),
        &csrs,
        threads,
        concurrency,
        secs,
    );
    println!(
        "postern, memory store (no disk):                  {mem:>9.0} certs/s  ratio {:.2}",
        mem / baseline
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let sled_alone: Arc<dyn Store> =
        Arc::new(SledStore::open(&dir.path().join("alone")).expect("sled"));
    let alone = store_only(sled_alone, concurrency, 40_000);
    println!("sled store alone (records + audit, no crypto):    {alone:>9.0} records/s");

    let sled: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("db")).expect("sled"));
    let durable = postern(sled, &csrs, threads, concurrency, secs);
    println!(
        "postern, sled, durable + audited (group commit):  {durable:>9.0} certs/s  ratio {:.2}",
        durable / baseline
    );
}
