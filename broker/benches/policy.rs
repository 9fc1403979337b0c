//! Routing policy evaluation on one thread: the built-in policy, a tenant with a few kill
//! switches (an OS range, a carrier, a client version prefix), and a mix of every class ×
//! assurance level × RCS E2EE state × availability (1,024 cases, with varied platforms, OS
//! versions and carriers), walked in a shuffled order. Prints evaluations per second and the
//! ratio to the target of 1,000,000 per second; then the same without kill switches.
//!
//! `cargo bench -p postern-broker --bench policy` (env: `BENCH_SECONDS`, default 3).

// A benchmark that cannot set itself up has nothing to report: failing loudly is right.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use postern_broker::domain::posture::policy::{
    Assurance, KillScope, KillSwitch, KillSwitches, Policy, PostureView, RcsE2ee, Transport,
    VersionMatch, evaluate,
};

const TARGET: f64 = 1_000_000.0;

const CLASSES: [&str; 4] = ["public", "internal", "confidential", "restricted"];
const DEVICES: [(&str, &str, Option<&str>, Option<&str>); 4] = [
    ("ios", "17.4.1", Some("ExampleTel"), Some("3.1.0")),
    ("android", "14.1", Some("OtherTel"), Some("2.3.4")),
    ("android", "15.0.2", None, Some("3.0.0")),
    ("macos", "14.4.1 (23E224)", None, None),
];

fn cases() -> Vec<(&'static str, PostureView<'static>)> {
    let mut out = Vec::new();
    for (ci, class) in CLASSES.into_iter().enumerate() {
        for (ai, assurance) in Assurance::ALL.into_iter().enumerate() {
            for (ri, rcs_e2ee) in RcsE2ee::ALL.into_iter().enumerate() {
                for bits in 0u8..16 {
                    let (platform, os_version, carrier, client_version) =
                        DEVICES[(ci + ai + ri + usize::from(bits)) % DEVICES.len()];
                    out.push((
                        class,
                        PostureView {
                            assurance,
                            rcs_e2ee,
                            in_app: bits & 1 != 0,
                            secure_email: bits & 2 != 0,
                            web_portal: bits & 4 != 0,
                            sms: bits & 8 != 0,
                            platform,
                            os_version,
                            carrier,
                            client_version,
                        },
                    ));
                }
            }
        }
    }
    // a fixed shuffle (xorshift) so that branches are not predictable from the order
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..out.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.swap(i, (x % (i as u64 + 1)) as usize);
    }
    out
}

fn kills() -> KillSwitches {
    let mut k = KillSwitches::new();
    k.push(KillSwitch {
        transport: Transport::RcsE2ee,
        scope: KillScope::OsVersion {
            platform: "android".into(),
            min: Some("14".parse().unwrap()),
            max: Some("14.2".parse().unwrap()),
        },
    })
    .unwrap()
    .push(KillSwitch {
        transport: Transport::RcsE2ee,
        scope: KillScope::Carrier("BrokenTel".into()),
    })
    .unwrap()
    .push(KillSwitch {
        transport: Transport::InApp,
        scope: KillScope::ClientVersion(VersionMatch::Prefix("2.3.".into())),
    })
    .unwrap();
    k
}

/// Evaluations per second over `secs`; checks every decision so nothing is optimised away.
fn run(policy: &Policy, kills: &KillSwitches, secs: u64) -> (f64, [u64; 6]) {
    let cases = cases();
    let mut chosen = [0u64; 6];
    let mut n: u64 = 0;
    let deadline = Duration::from_secs(secs);
    let start = Instant::now();
    loop {
        for (class, view) in &cases {
            let d = evaluate(black_box(policy), kills, black_box(class), black_box(view)).unwrap();
            chosen[d.transport as usize] += 1;
            black_box(&d.reasons);
        }
        n += cases.len() as u64;
        if start.elapsed() >= deadline {
            break;
        }
    }
    (n as f64 / start.elapsed().as_secs_f64(), chosen)
}

fn main() {
    let secs = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let policy = Policy::default();
    println!(
        "policy evaluation, one thread, {} cases, {secs} s each (policy {})",
        cases().len(),
        &policy.version()[..16]
    );
    for (label, k) in [
        ("with 3 kill switches", kills()),
        ("without kill switches", KillSwitches::new()),
    ] {
        let (rate, chosen) = run(&policy, &k, secs);
        println!(
            "  {label:<22} {rate:>12.0} evaluations/s  = {:.1}x the {TARGET:.0}/s target  ({:.0} ns each)",
            rate / TARGET,
            1e9 / rate
        );
        let total: u64 = chosen.iter().sum();
        let mix: Vec<String> = Transport::ALL
            .iter()
            .map(|t| {
                format!(
                    "{t} {:.0}%",
                    100.0 * chosen[*t as usize] as f64 / total as f64
                )
            })
            .collect();
        println!("    decisions: {}", mix.join(", "));
    }
}
