//! Zero-touch enrollment throughput: devices of the inventory enroll over ACME
//! `device-attest-01` (apple statements) against a real broker (HTTPS on loopback, sled in a
//! temporary directory under `TMPDIR`), from concurrent clients that each hold an account and
//! one keep-alive connection; and, in the same run and on as many threads, the signature
//! operations one enrollment needs, timed with ring alone (half before the flow, half after).
//! Prints both rates, their ratio, the parameters, and the CPU time per enrollment of each: the
//! process's CPU time barely moves with what else the machine runs, wall-clock rates do.
//!
//! `cargo bench -p postern-e2e --bench enroll` (env: `BENCH_SECONDS`, default 10;
//! `BENCH_CLIENTS`, default 16 per CPU, since a fleet enrolls many devices at once and each
//! client spends most of an enrollment waiting for the disk; `BENCH_THREADS`, the client runtime's
//! workers and the floor's threads, default the number of CPUs; `BENCH_DEVICES`, default 1000).
//!
//! One enrollment is what a device does once it has its key: newOrder, the authorization
//! (POST-as-GET), its apple attestation minted (one P-384 signature by the test Sub CA), the
//! challenge answered, finalize with its CSR (made before the timed part), the certificate
//! chain downloaded. Every enrollment must end `valid` with a certificate for the device's
//! key; any failure stops the run with a message. The time each step takes is printed too.

// A benchmark that cannot set itself up, or whose flow fails, has nothing to report: failing
// loudly is right.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_ASN1_SIGNING,
    EcdsaKeyPair, EcdsaSigningAlgorithm, EcdsaVerificationAlgorithm, KeyPair as _,
    UnparsedPublicKey,
};
use serde_json::{Value, json};

use postern_certs::attestation::testing::apple::{AppleStatement, AppleTestAuthority};
use postern_certs::signer::generate;
use postern_certs::{KeyAlgorithm, KeySigner, OffsetDateTime, Signer};
use postern_e2e::acme::{Client, Reply, attestation_payload, finalize_payload};
use postern_e2e::{ADMIN_TOKEN, Broker};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A device of the inventory with the key it already holds and the CSR for it.
struct Device {
    serial: String,
    spki: Vec<u8>,
    csr: Vec<u8>,
}

fn devices(n: usize) -> Vec<Device> {
    (0..n)
        .map(|i| {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let serial = format!("BENCH{i:06}");
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name
                .push(rcgen::DnType::CommonName, serial.as_str());
            let csr = p.serialize_request(&key).unwrap().der().to_vec();
            let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
            Device { serial, spki, csr }
        })
        .collect()
}

/// An account key that counts its signatures: one per request the client sends.
#[derive(Debug)]
struct CountingKey {
    key: KeySigner,
    signatures: AtomicU64,
}

impl Signer for CountingKey {
    fn algorithm(&self) -> KeyAlgorithm {
        self.key.algorithm()
    }

    fn spki_der(&self) -> &[u8] {
        self.key.spki_der()
    }

    fn public_key_raw(&self) -> &[u8] {
        self.key.public_key_raw()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, postern_certs::KeyError> {
        self.signatures.fetch_add(1, Ordering::Relaxed);
        self.key.sign(msg)
    }
}

/// The steps of one enrollment, in order, for the time breakdown.
const STEPS: [&str; 6] = [
    "newOrder",
    "authz (POST-as-GET)",
    "mint attestation (device)",
    "challenge (verify attestation)",
    "finalize (issue)",
    "certificate download",
];

#[derive(Debug, Default, Clone)]
struct Steps([Duration; STEPS.len()]);

impl Steps {
    fn add(&mut self, step: usize, since: &mut Instant) {
        let now = Instant::now();
        self.0[step] += now - *since;
        *since = now;
    }

    fn merge(&mut self, other: &Steps) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

fn expect(r: &Reply, status: u16, what: &str) -> anyhow::Result<Value> {
    ensure!(
        r.status == status,
        "{what}: HTTP {} (wanted {status}): {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    Ok(r.json())
}

fn text<'a>(v: &'a Value, what: &str) -> anyhow::Result<&'a str> {
    v.as_str().with_context(|| format!("{what} missing"))
}

/// One enrollment of `dev` by the client's account.
async fn enroll(
    c: &mut Client,
    apple: &AppleTestAuthority,
    dev: &Device,
    steps: &mut Steps,
) -> anyhow::Result<()> {
    let mut t = Instant::now();
    let r = c
        .new_order(json!([{ "type": "permanent-identifier", "value": dev.serial }]))
        .await?;
    let order = expect(&r, 201, "newOrder")?;
    steps.add(0, &mut t);

    let authz_url = text(&order["authorizations"][0], "order authorization")?;
    let authz = expect(&c.post(authz_url, None).await?, 200, "authz")?;
    let ch = authz["challenges"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "device-attest-01"))
        .context("no device-attest-01 challenge")?;
    let (chall_url, token) = (
        text(&ch["url"], "challenge url")?,
        text(&ch["token"], "token")?,
    );
    steps.add(1, &mut t);

    let att = apple.attest(&AppleStatement::new(
        &dev.spki,
        &dev.serial,
        token,
        OffsetDateTime::now_utc(),
    ));
    steps.add(2, &mut t);

    let r = c.post(chall_url, Some(&attestation_payload(&att))).await?;
    let ch = expect(&r, 200, "challenge")?;
    ensure!(ch["status"] == "valid", "challenge not valid: {ch}");
    steps.add(3, &mut t);

    let finalize = text(&order["finalize"], "finalize url")?;
    let r = c.post(finalize, Some(&finalize_payload(&dev.csr))).await?;
    let done = expect(&r, 200, "finalize")?;
    ensure!(done["status"] == "valid", "order not valid: {done}");
    steps.add(4, &mut t);

    let r = c
        .post(text(&done["certificate"], "certificate url")?, None)
        .await?;
    expect(&r, 200, "certificate")?;
    ensure!(
        r.content_type == "application/pem-certificate-chain",
        "certificate content type {:?}",
        r.content_type
    );
    let chain = postern_e2e::pem_der_blocks(&String::from_utf8_lossy(&r.body));
    ensure!(chain.len() == 2, "chain of {} certificates", chain.len());
    ensure!(
        chain[0].windows(dev.spki.len()).any(|w| w == dev.spki),
        "the certificate does not certify the device's key"
    );
    steps.add(5, &mut t);
    Ok(())
}

struct Flow {
    phase: Phase,
    signatures: u64,
    steps: Steps,
}

async fn register_devices(broker: &Broker, devices: &Arc<Vec<Device>>, clients: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, devices, next) = (
                broker.client().unwrap(),
                Arc::clone(devices),
                Arc::clone(&next),
            );
            let url = format!("{}/v1/admin/devices", broker.https);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(d) = devices.get(i) else { break };
                    let r = http
                        .post(&url)
                        .bearer_auth(ADMIN_TOKEN)
                        .json(&json!({ "serial": d.serial, "platform": "ios" }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

async fn account(broker: &Broker) -> anyhow::Result<(Client, Arc<CountingKey>)> {
    let key = Arc::new(CountingKey {
        key: KeySigner::from_pkcs8(generate(KeyAlgorithm::EcdsaP256)?.as_der())?,
        signatures: AtomicU64::new(0),
    });
    let mut c = Client::new(
        broker.client()?,
        &format!("{}/acme/devices/directory", broker.https),
        Arc::clone(&key) as Arc<dyn Signer>,
    )
    .await?;
    let r = c
        .register(json!({ "contact": ["mailto:it@example.test"] }))
        .await?;
    expect(&r, 201, "newAccount")?;
    Ok((c, key))
}

/// `clients` accounts enroll devices in turn for `secs` seconds.
async fn flow(
    broker: &Broker,
    apple: Arc<AppleTestAuthority>,
    devices: Arc<Vec<Device>>,
    clients: usize,
    secs: u64,
) -> anyhow::Result<Flow> {
    let mut accounts = Vec::new();
    for _ in 0..clients {
        accounts.push(account(broker).await?);
    }
    let before: u64 = accounts
        .iter()
        .map(|(_, k)| k.signatures.load(Ordering::Relaxed))
        .sum();
    let keys: Vec<Arc<CountingKey>> = accounts.iter().map(|(_, k)| Arc::clone(k)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let cpu = cpu_seconds();
    let start = Instant::now();
    let tasks: Vec<_> = accounts
        .into_iter()
        .map(|(mut c, _)| {
            let (apple, devices, stop, next, done) = (
                Arc::clone(&apple),
                Arc::clone(&devices),
                Arc::clone(&stop),
                Arc::clone(&next),
                Arc::clone(&done),
            );
            tokio::spawn(async move {
                let mut steps = Steps::default();
                while !stop.load(Ordering::Relaxed) {
                    let dev = &devices[next.fetch_add(1, Ordering::Relaxed) % devices.len()];
                    if let Err(e) = enroll(&mut c, &apple, dev, &mut steps).await {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e.context(format!("enrolling {}", dev.serial)));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(steps)
            })
        })
        .collect();
    // a plain thread keeps time: the runtime's timer can starve while every task is busy
    let stopper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(secs);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut steps = Steps::default();
    let mut failure = None;
    for t in tasks {
        match t.await? {
            Ok(s) => steps.merge(&s),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    stopper.join().expect("stopper thread");
    if let Some(e) = failure {
        return Err(e);
    }
    let after: u64 = keys
        .iter()
        .map(|k| k.signatures.load(Ordering::Relaxed))
        .sum();
    Ok(Flow {
        phase: Phase {
            done: done.load(Ordering::Relaxed),
            seconds,
            cpu,
        },
        signatures: after - before,
        steps,
    })
}

/// The signed requests of one enrollment in [`enroll`]: newOrder, authz, challenge, finalize,
/// certificate.
const SIGNED_REQUESTS: usize = 5;

/// Message lengths close to what is signed in one enrollment.
const JWS_INPUT: usize = 700;
const LEAF_TBS: usize = 750;
const CSR_INFO: usize = 200;
const CERT_TBS: usize = 650;

/// The keys and messages of one enrollment's signatures.
struct Crypto {
    rng: SystemRandom,
    account: EcdsaKeyPair,
    sub_ca: EcdsaKeyPair,
    device: EcdsaKeyPair,
    ca: EcdsaKeyPair,
    jws: Vec<u8>,
    leaf: Vec<u8>,
    csr: Vec<u8>,
    cert: Vec<u8>,
}

fn key(alg: &'static EcdsaSigningAlgorithm, rng: &SystemRandom) -> EcdsaKeyPair {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, rng).unwrap();
    EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), rng).unwrap()
}

impl Crypto {
    fn new() -> Self {
        let rng = SystemRandom::new();
        Crypto {
            account: key(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng),
            sub_ca: key(&ECDSA_P384_SHA384_ASN1_SIGNING, &rng),
            device: key(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng),
            ca: key(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng),
            jws: vec![b'j'; JWS_INPUT],
            leaf: vec![0x30; LEAF_TBS],
            csr: vec![0x31; CSR_INFO],
            cert: vec![0x32; CERT_TBS],
            rng,
        }
    }

    fn sign(&self, k: &EcdsaKeyPair, msg: &[u8]) -> Vec<u8> {
        k.sign(&self.rng, msg).unwrap().as_ref().to_vec()
    }

    fn verify(alg: &'static EcdsaVerificationAlgorithm, k: &EcdsaKeyPair, msg: &[u8], sig: &[u8]) {
        UnparsedPublicKey::new(alg, k.public_key().as_ref())
            .verify(msg, sig)
            .unwrap();
    }

    /// The client's side: `jws` request signatures, the attestation leaf, the CSR.
    fn client(&self, jws: usize) -> (Vec<Vec<u8>>, Vec<u8>, Vec<u8>) {
        let sigs = (0..jws)
            .map(|_| self.sign(&self.account, &self.jws))
            .collect();
        let leaf = self.sign(&self.sub_ca, &self.leaf);
        let csr = self.sign(&self.device, &self.csr);
        (sigs, leaf, csr)
    }

    /// The server's side: `jws` verifications, the leaf's, the CSR's self-signature, the
    /// certificate's signature.
    fn server(&self, jws: &[Vec<u8>], leaf: &[u8], csr: &[u8]) {
        for s in jws {
            Self::verify(&ECDSA_P256_SHA256_FIXED, &self.account, &self.jws, s);
        }
        Self::verify(&ECDSA_P384_SHA384_ASN1, &self.sub_ca, &self.leaf, leaf);
        Self::verify(&ECDSA_P256_SHA256_ASN1, &self.device, &self.csr, csr);
        std::hint::black_box(self.sign(&self.ca, &self.cert));
    }
}

/// One thread, each operation alone: microseconds per enrollment (client, server).
fn crypto_costs(jws: usize) -> (f64, f64) {
    let c = Crypto::new();
    let n = 200;
    let t = Instant::now();
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(c.client(jws));
    }
    let client = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let t = Instant::now();
    for (sigs, leaf, csr) in &out {
        c.server(sigs, leaf, csr);
    }
    let server = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    (client, server)
}

/// What a timed phase did: how many enrollments (or their crypto), in how long, on how much CPU.
#[derive(Debug, Default, Clone, Copy)]
struct Phase {
    done: u64,
    seconds: f64,
    cpu: f64,
}

impl Phase {
    fn add(self, o: Phase) -> Phase {
        Phase {
            done: self.done + o.done,
            seconds: self.seconds + o.seconds,
            cpu: self.cpu + o.cpu,
        }
    }

    fn rate(&self) -> f64 {
        self.done as f64 / self.seconds
    }

    /// Milliseconds of CPU (every thread of the process) per enrollment.
    fn cpu_ms(&self) -> f64 {
        self.cpu * 1e3 / self.done as f64
    }
}

/// CPU seconds this process has used (user + system, all threads), from `/proc/self/stat`;
/// 0 where there is none. Ticks are taken as 1/100 s, the Linux `USER_HZ`.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // the fields after the command name, which may hold spaces, start with the state (3rd)
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

/// `threads` threads do one enrollment's signature work in a loop for `secs` seconds.
fn crypto_floor(threads: usize, jws: usize, secs: f64) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let cpu = cpu_seconds();
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
            std::thread::spawn(move || {
                let c = Crypto::new();
                while !stop.load(Ordering::Relaxed) {
                    let (sigs, leaf, csr) = c.client(jws);
                    c.server(&sigs, &leaf, &csr);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("floor thread");
    }
    Phase {
        done: done.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu,
    }
}

fn config(dir: &std::path::Path, apple: &AppleTestAuthority) -> anyhow::Result<String> {
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

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else is accepted
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let secs = env_or("BENCH_SECONDS", 10) as u64;
    let threads = env_or("BENCH_THREADS", cpus).max(1);
    let clients = env_or("BENCH_CLIENTS", 16 * cpus).max(1);
    let n_devices = env_or("BENCH_DEVICES", 1000).max(1);
    println!(
        "enrollment benchmark (ACME device-attest-01, apple): {clients} clients, {n_devices} \
         devices, {threads} client threads (the broker runs 2 workers), {cpus} CPUs, {secs}s flow"
    );

    let dir = tempfile::tempdir()?;
    let apple = Arc::new(AppleTestAuthority::new());
    let broker = Broker::start_with(&dir.path().join("data"), &config(dir.path(), &apple)?)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let devices = Arc::new(devices(n_devices));
    let t = Instant::now();
    rt.block_on(register_devices(&broker, &devices, clients));
    println!(
        "inventory: {n_devices} devices registered in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let (client_us, server_us) = crypto_costs(SIGNED_REQUESTS);
    println!(
        "crypto of one enrollment, one thread: client {client_us:.0} us ({SIGNED_REQUESTS} ES256 \
         JWS, P-384 leaf, P-256 CSR), server {server_us:.0} us ({SIGNED_REQUESTS} ES256 verify, \
         P-384 leaf verify, P-256 CSR verify, P-256 certificate)"
    );
    // the floor runs half before and half after the flow, so that a change in what else the
    // machine does weighs on both alike
    let half = secs as f64 / 2.0;
    let before = crypto_floor(threads, SIGNED_REQUESTS, half);

    let f = rt
        .block_on(flow(&broker, apple, devices, clients, secs))
        .context("enrollment flow")?;
    drop(rt);
    broker.stop();
    let floor = before.add(crypto_floor(threads, SIGNED_REQUESTS, half));

    let p = f.phase;
    if p.done == 0 {
        bail!("no enrollment completed in {secs}s");
    }
    let signed = f.signatures as f64 / p.done as f64;
    println!(
        "flow: {} enrollments in {:.1}s, {:.1} ms each per client; {signed:.2} signed requests \
         each (the floor counts {SIGNED_REQUESTS})",
        p.done,
        p.seconds,
        p.seconds * 1e3 * clients as f64 / p.done as f64,
    );
    let total: Duration = f.steps.0.iter().sum();
    for (name, d) in STEPS.iter().zip(f.steps.0) {
        println!(
            "  {name:<32} {:>6.2} ms {:>5.1}%",
            d.as_secs_f64() * 1e3 / p.done as f64,
            100.0 * d.as_secs_f64() / total.as_secs_f64()
        );
    }
    println!(
        "flow:  {:>7.1} enrollments/s  {:>5.2} ms CPU each (client + broker), {:.0}% of {cpus} CPUs",
        p.rate(),
        p.cpu_ms(),
        100.0 * p.cpu / p.seconds / cpus as f64
    );
    println!(
        "floor: {:>7.1} enrollments/s  {:>5.2} ms CPU each (ring only, {threads} threads)",
        floor.rate(),
        floor.cpu_ms()
    );
    println!(
        "ratio flow / floor: {:.2} (target >= 0.5); by CPU time per enrollment: {:.2}",
        p.rate() / floor.rate(),
        floor.cpu_ms() / p.cpu_ms()
    );
    Ok(())
}
