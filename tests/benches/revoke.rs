//! Deactivate-to-revoked latency against a real broker (HTTPS and plain HTTP on loopback, sled
//! in a temporary directory under `TMPDIR`): how long after `POST
//! /v1/admin/users/{user}/deactivate` is sent the user is gone everywhere a relying party looks.
//!
//! `cargo bench -p postern-e2e --bench revoke` (needs `openssl` on `PATH`). Environment:
//! `BENCH_USERS` (default 200); `BENCH_LOAD` (default 0): that many connections keep asking
//! `POST /v1/route` for random recipients, audited, while the users are deactivated, so the
//! latencies are measured under load (in this process: it shares the CPUs with the broker).
//!
//! Set-up: K users, each with one device registered to them, given a `tel:` address, a
//! compliant MDM check-in and the in-app capability (`/v1/posture/events`), and enrolled over
//! ACME `device-attest-01` with an Apple statement from a test authority, so that a
//! `restricted` route to the address answers `attested` / `in_app`. The OCSP request for each
//! device certificate is made by `openssl ocsp -reqout`, and its answer is `good` before.
//!
//! Then, one user at a time, with nothing else running, the clock starts when the deactivation
//! request is sent, and stops when:
//! - `deactivate`: its answer arrived (it names one device and one revoked certificate);
//! - (a) `route`: the next `POST /v1/route` (restricted) for the user's address, sent after
//!   that answer, answers assurance `unknown` and transport `block`;
//! - (b) `ocsp`: the next OCSP request (`POST /pki/ocsp` on the plain listener) for the
//!   device's certificate answers `revoked`;
//! - (c) `feed`: `GET /feed/v1/default/devices/{id}` shows a newer entry whose record carries
//!   the deactivation; when the broker has no feed endpoints this is reported as not measured.
//!
//! A check that still sees the old state is repeated until it sees the new one (the count is
//! printed; any repeat means the answer came before the change was visible). Prints p50, p99
//! and max over the K users for each; the target is p99 < 100 ms. The first revoked answer is
//! also checked by `openssl ocsp` (signature and status).

// A benchmark that cannot set itself up, or whose flow fails, has nothing to report: failing
// loudly is right.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

/// The broker runs in this process: the allocator the `postern` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

use common::{address, call, device_events, env_or, ingest, ms, percentile, serial, user};
use postern_certs::OffsetDateTime;
use postern_certs::attestation::testing::apple::{AppleStatement, AppleTestAuthority};
use postern_e2e::device::{DeviceKey, account, complete, order};
use postern_e2e::{ADMIN_TOKEN, Broker};

/// How long a check may keep seeing the old state before the run fails.
const DEADLINE: Duration = Duration::from_secs(5);

/// One user's device, enrolled.
struct Enrolled {
    index: usize,
    device_id: String,
    /// The DER `OCSPRequest` for its certificate.
    ocsp_request: Vec<u8>,
    leaf_pem: PathBuf,
}

fn config(dir: &Path, apple: &AppleTestAuthority) -> anyhow::Result<String> {
    let root = dir.join("apple-root.pem");
    std::fs::write(&root, apple.root_pem())?;
    Ok(format!(
        r#"
[[acme.provisioners]]
name = "devices"
challenge = "device-attest-01"
profile = "device-identity"
roots = {{ apple = {:?} }}
"#,
        root.display().to_string()
    ))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let body: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        body.join("\n")
    )
}

/// Enrolls the devices `ids` (device `i` of user `i`) from `clients` concurrent ACME accounts;
/// writes each leaf and the issuing CA to `dir` and makes the OCSP requests with openssl.
async fn enroll_all(
    broker: &Broker,
    apple: Arc<AppleTestAuthority>,
    ids: &[String],
    clients: usize,
    dir: &Path,
) -> anyhow::Result<Vec<Enrolled>> {
    let next = Arc::new(AtomicUsize::new(0));
    let n = ids.len();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut c = account(broker, "devices", postern_certs::KeyAlgorithm::EcdsaP256).await;
        let (apple, next) = (Arc::clone(&apple), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let key = DeviceKey::new();
                let (ourl, o, _, chall, token) =
                    order(&mut c, "permanent-identifier", &serial(i)).await;
                let att = apple.attest(&AppleStatement::new(
                    &key.spki(),
                    &serial(i),
                    &token,
                    OffsetDateTime::now_utc(),
                ));
                let chain = complete(&mut c, &ourl, &o, &chall, &att, &key, &serial(i)).await;
                out.push((i, chain));
            }
            out
        }));
    }
    let mut chains = Vec::with_capacity(n);
    for t in tasks {
        chains.extend(t.await?);
    }
    chains.sort_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(n);
    let issuer = dir.join("issuing.pem");
    for (i, chain) in chains {
        let blocks = postern_e2e::pem_der_blocks(&chain);
        ensure!(blocks.len() == 2, "chain of {} certificates", blocks.len());
        if i == 0 {
            std::fs::write(&issuer, pem("CERTIFICATE", &blocks[1]))?;
        }
        let leaf_pem = dir.join(format!("leaf-{i}.pem"));
        std::fs::write(&leaf_pem, pem("CERTIFICATE", &blocks[0]))?;
        let req = dir.join(format!("ocsp-{i}.req"));
        let o = Command::new("openssl")
            .args(["ocsp", "-no_nonce", "-issuer"])
            .arg(&issuer)
            .arg("-cert")
            .arg(&leaf_pem)
            .arg("-reqout")
            .arg(&req)
            .output()
            .context("openssl ocsp -reqout (is openssl on PATH?)")?;
        ensure!(
            o.status.success(),
            "openssl ocsp -reqout: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out.push(Enrolled {
            index: i,
            device_id: ids[i].clone(),
            ocsp_request: std::fs::read(&req)?,
            leaf_pem,
        });
    }
    Ok(out)
}

/// A certificate's status in an OCSP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OcspStatus {
    Good,
    Revoked,
    Unknown,
}

/// One DER TLV: tag, contents, what follows. Short and long definite lengths only.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let k = usize::from(len0 & 0x7f);
        if k == 0 || k > 4 || rest.len() < k {
            return None;
        }
        let len = rest[..k]
            .iter()
            .fold(0usize, |a, &x| (a << 8) | usize::from(x));
        (len, &rest[k..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The status of the first `SingleResponse` of a successful `OCSPResponse`: just enough DER
/// to follow RFC 6960's structure; `openssl ocsp` checks one answer in full.
fn ocsp_status(der: &[u8]) -> anyhow::Result<OcspStatus> {
    let walk = || -> Option<u8> {
        let (_, resp, _) = tlv(der)?; // OCSPResponse
        let (t, status, rest) = tlv(resp)?; // responseStatus
        if t != 0x0a || status != [0] {
            return None;
        }
        let (_, bytes, _) = tlv(rest)?; // [0] EXPLICIT ResponseBytes
        let (_, bytes, _) = tlv(bytes)?; // ResponseBytes
        let (_, _, rest) = tlv(bytes)?; // responseType
        let (_, basic, _) = tlv(rest)?; // OCTET STRING
        let (_, basic, _) = tlv(basic)?; // BasicOCSPResponse
        let (_, tbs, _) = tlv(basic)?; // ResponseData
        let (mut t, _, mut rest) = tlv(tbs)?;
        if t == 0xa0 {
            (t, _, rest) = tlv(rest)?; // version was there: responderID
        }
        if t != 0xa1 && t != 0xa2 {
            return None;
        }
        let (_, _, rest) = tlv(rest)?; // producedAt
        let (_, responses, _) = tlv(rest)?;
        let (_, single, _) = tlv(responses)?;
        let (_, _, rest) = tlv(single)?; // CertID
        let (t, _, _) = tlv(rest)?;
        Some(t)
    };
    match walk() {
        Some(0x80) => Ok(OcspStatus::Good),
        Some(0xa1) => Ok(OcspStatus::Revoked),
        Some(0x82) => Ok(OcspStatus::Unknown),
        _ => bail!("not a successful OCSP response: {}", hex(der)),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn ocsp(http: &reqwest::Client, broker: &Broker, req: &[u8]) -> anyhow::Result<Vec<u8>> {
    let r = http
        .post(format!("{}/pki/ocsp", broker.http))
        .header("content-type", "application/ocsp-request")
        .body(req.to_vec())
        .send()
        .await?;
    ensure!(r.status() == 200, "ocsp: HTTP {}", r.status());
    Ok(r.bytes().await?.to_vec())
}

async fn route(
    http: &reqwest::Client,
    broker: &Broker,
    gw: &str,
    i: usize,
) -> anyhow::Result<Value> {
    let (s, v) = call(
        http,
        broker,
        reqwest::Method::POST,
        "/v1/route",
        gw,
        Some(json!({ "recipient": address(i), "message_class": "restricted" })),
    )
    .await?;
    ensure!(s == 200, "route: HTTP {s}: {v}");
    Ok(v)
}

/// The feed's newest entry for a device: `Some(seq, record)`, or `None` when the broker has no
/// feed endpoints (the router's own 404).
async fn feed_entry(
    http: &reqwest::Client,
    broker: &Broker,
    device: &str,
) -> anyhow::Result<Option<(u64, Value)>> {
    let (s, v) = call(
        http,
        broker,
        reqwest::Method::GET,
        &format!("/feed/v1/default/devices/{device}"),
        ADMIN_TOKEN,
        None,
    )
    .await?;
    if s == 404 && v["detail"] == "no such resource" {
        return Ok(None);
    }
    ensure!(s == 200, "feed: HTTP {s}: {v}");
    Ok(Some((
        v["seq"].as_u64().context("feed seq")?,
        v["record"].clone(),
    )))
}

/// Whether a JSON value has a non-null `user_deactivated` member anywhere.
fn deactivated(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, x)| (k == "user_deactivated" && !x.is_null()) || deactivated(x)),
        Value::Array(a) => a.iter().any(deactivated),
        _ => false,
    }
}

/// `connections` tasks ask for route decisions (random recipients among `0..n`, any class)
/// until `stop`; how many they got.
fn background_load(
    broker: &Broker,
    gw: &str,
    n: usize,
    connections: usize,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<anyhow::Result<u64>>>> {
    let classes = ["public", "internal", "confidential", "restricted"];
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (http, stop, gw) = (broker.client()?, Arc::clone(stop), gw.to_owned());
        let url = format!("{}/v1/route", broker.https);
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut x = c as u64 * 7919 + 1;
            while !stop.load(Ordering::Relaxed) {
                // a small LCG: any spread over the recipients will do
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let i = (x >> 33) as usize % n;
                let r = http
                    .post(&url)
                    .bearer_auth(&gw)
                    .json(&json!({ "recipient": address(i), "message_class": classes[i % 4] }))
                    .send()
                    .await?;
                ensure!(r.status() == 200, "background route: HTTP {}", r.status());
                r.bytes().await?;
                done += 1;
            }
            Ok(done)
        }));
    }
    Ok(tasks)
}

/// Latencies of one check over the users, and how many repeats it needed.
#[derive(Default)]
struct Series {
    times: Vec<Duration>,
    repeats: usize,
}

impl Series {
    fn report(&mut self, name: &str) {
        self.times.sort();
        let t = &self.times;
        println!(
            "{name:<34} p50 {:>6} ms  p99 {:>6} ms  max {:>6} ms  (n = {}, repeats {})",
            ms(percentile(t, 50.0)),
            ms(percentile(t, 99.0)),
            ms(*t.last().unwrap_or(&Duration::ZERO)),
            t.len(),
            self.repeats
        );
    }
}

fn main() -> anyhow::Result<()> {
    let k = env_or("BENCH_USERS", 200).max(1);
    let load = env_or("BENCH_LOAD", 0);
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "deactivate-to-revoked benchmark: {k} users with one attested device each, deactivated \
         one at a time; {}; broker: 2 runtime workers; {cpus} CPUs shared with the client",
        if load == 0 {
            "no other load".to_owned()
        } else {
            format!("{load} connections asking for route decisions meanwhile")
        }
    );
    let dir = tempfile::tempdir()?;
    let apple = Arc::new(AppleTestAuthority::new());
    let broker = Broker::start_with(&dir.path().join("data"), &config(dir.path(), &apple)?)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let http = broker.client()?;
    let plain = reqwest::Client::new();

    let t = Instant::now();
    let ids = rt.block_on(common::register_devices(&broker, k, 8))?;
    let events: Vec<Value> = ids
        .iter()
        .enumerate()
        .flat_map(|(i, id)| device_events(i, id))
        .collect();
    rt.block_on(ingest(&broker, events, 100, 8))?;
    let enrolled = rt.block_on(enroll_all(&broker, apple, &ids, 8, dir.path()))?;
    println!(
        "set-up: {k} devices registered, posture ingested, enrolled over ACME and OCSP requests \
         made in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let gw = rt.block_on(common::token(&http, &broker, "gateway"))?;

    let (mut dea, mut a, mut b, mut c) = (
        Series::default(),
        Series::default(),
        Series::default(),
        Series::default(),
    );
    let mut feed_present = true;
    let mut openssl_checked = false;
    let stop = Arc::new(AtomicBool::new(false));
    let background = rt.block_on(async { background_load(&broker, &gw, k, load, &stop) })?;
    let started = Instant::now();
    rt.block_on(async {
        for e in &enrolled {
            let i = e.index;
            // before: attested, in-app, good
            let d = route(&http, &broker, &gw, i).await?;
            ensure!(
                (d["assurance"].as_str(), d["transport"].as_str())
                    == (Some("attested"), Some("in_app")),
                "user {i} before: {d}"
            );
            let st = ocsp_status(&ocsp(&plain, &broker, &e.ocsp_request).await?)?;
            ensure!(st == OcspStatus::Good, "user {i} before: OCSP {st:?}");
            let feed_before = if feed_present {
                feed_entry(&http, &broker, &e.device_id).await?
            } else {
                None
            };
            feed_present = feed_before.is_some();

            let start = Instant::now();
            let (s, rep) = call(
                &http,
                &broker,
                reqwest::Method::POST,
                &format!("/v1/admin/users/{}/deactivate", user(i)),
                ADMIN_TOKEN,
                Some(json!({})),
            )
            .await?;
            dea.times.push(start.elapsed());
            ensure!(s == 200, "deactivate {}: HTTP {s}: {rep}", user(i));
            ensure!(
                rep["devices"] == json!([e.device_id])
                    && rep["revoked"].as_array().map(Vec::len) == Some(1),
                "deactivate {}: {rep}",
                user(i)
            );

            // (a) the next route decision
            loop {
                let d = route(&http, &broker, &gw, i).await?;
                if (d["assurance"].as_str(), d["transport"].as_str())
                    == (Some("unknown"), Some("block"))
                {
                    a.times.push(start.elapsed());
                    break;
                }
                ensure!(start.elapsed() < DEADLINE, "user {i}: route still {d}");
                a.repeats += 1;
            }
            // (b) OCSP
            loop {
                let der = ocsp(&plain, &broker, &e.ocsp_request).await?;
                if ocsp_status(&der)? == OcspStatus::Revoked {
                    b.times.push(start.elapsed());
                    if !openssl_checked {
                        openssl_check(dir.path(), &e.leaf_pem, &der, &broker)?;
                        openssl_checked = true;
                    }
                    break;
                }
                ensure!(
                    start.elapsed() < DEADLINE,
                    "user {i}: OCSP still not revoked"
                );
                b.repeats += 1;
            }
            // (c) the feed
            if let Some((seq0, _)) = feed_before {
                loop {
                    if let Some((seq, rec)) = feed_entry(&http, &broker, &e.device_id).await?
                        && seq > seq0
                        && deactivated(&rec)
                    {
                        c.times.push(start.elapsed());
                        break;
                    }
                    ensure!(start.elapsed() < DEADLINE, "user {i}: feed unchanged");
                    c.repeats += 1;
                }
            }
        }
        anyhow::Ok(())
    })?;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let mut decisions = 0;
    for t in background {
        decisions += rt.block_on(t)??;
    }
    if load > 0 {
        println!(
            "background: {decisions} route decisions in {elapsed:.1}s ({:.0}/s)",
            decisions as f64 / elapsed
        );
    }
    drop(rt);
    broker.stop();

    println!("from sending the deactivation until ...");
    dea.report("its answer (cascade done)");
    a.report("(a) route: unknown / block");
    b.report("(b) OCSP: revoked");
    if feed_present {
        c.report("(c) feed: new record");
    } else {
        println!("(c) feed: not measured: this broker has no /feed/v1 endpoints");
    }
    let p99 = [&a, &b, &c]
        .iter()
        .filter(|s| !s.times.is_empty())
        .map(|s| percentile(&s.times, 99.0))
        .max()
        .unwrap_or_default();
    println!(
        "target p99 < 100 ms: {} (worst p99 {} ms)",
        if p99 < Duration::from_millis(100) {
            "met"
        } else {
            "NOT met"
        },
        ms(p99)
    );
    Ok(())
}

/// `openssl ocsp` reads one revoked answer: the signature verifies to the root, the status is
/// revoked.
fn openssl_check(dir: &Path, leaf: &Path, der: &[u8], broker: &Broker) -> anyhow::Result<()> {
    let resp = dir.join("revoked.ocsp.der");
    std::fs::write(&resp, der)?;
    let root = dir.join("root.pem");
    std::fs::write(&root, broker.root_pem()?)?;
    let o = Command::new("openssl")
        .args(["ocsp", "-respin"])
        .arg(&resp)
        .arg("-issuer")
        .arg(dir.join("issuing.pem"))
        .arg("-cert")
        .arg(leaf)
        .arg("-CAfile")
        .arg(&root)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    ensure!(
        o.status.success() && text.contains("Response verify OK") && text.contains(": revoked"),
        "openssl ocsp on the revoked answer:\n{text}"
    );
    Ok(())
}
