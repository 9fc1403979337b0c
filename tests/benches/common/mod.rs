//! What the route and revocation benchmarks share: settings from the environment, CPU time,
//! percentiles, and the admin calls that fill a broker with devices and their posture.

// A benchmark that cannot set itself up has nothing to report: failing loudly is right.
#![allow(clippy::expect_used, clippy::unwrap_used, dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use postern_e2e::{ADMIN_TOKEN, Broker};

/// An unsigned setting from the environment, or `default`.
pub(crate) fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) of this process, all threads, and of its children that have
/// been waited for, from `/proc/self/stat`; zeros where there is none. Ticks are taken as
/// 1/100 s, the Linux `USER_HZ`.
pub(crate) fn cpu_seconds() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // the fields after the command name, which may hold spaces, start with the state (3rd):
    // utime, stime, cutime, cstime are the 14th to 17th
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() < 4 {
        return (0.0, 0.0);
    }
    ((f[0] + f[1]) as f64 / 100.0, (f[2] + f[3]) as f64 / 100.0)
}

/// CPU seconds the whole machine spent busy (all CPUs, everything but idle and iowait), from
/// `/proc/stat`; 0 where there is none.
pub(crate) fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    // user nice system idle iowait irq softirq steal ...
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy: u64 = f
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, v)| v)
        .sum();
    busy as f64 / 100.0
}

/// The `p`-th percentile (0..=100) of sorted durations, nearest rank.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds with two decimals.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// The messaging address of the `i`-th benchmark device.
pub(crate) fn address(i: usize) -> String {
    format!("tel:+49151{i:07}")
}

/// The serial number of the `i`-th benchmark device.
pub(crate) fn serial(i: usize) -> String {
    format!("BENCH{i:07}")
}

/// The user of the `i`-th benchmark device.
pub(crate) fn user(i: usize) -> String {
    format!("user{i:07}")
}

/// A call to the broker's API over HTTPS.
pub(crate) async fn call(
    http: &reqwest::Client,
    broker: &Broker,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut r = http
        .request(method, format!("{}{path}", broker.https))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.with_context(|| path.to_owned())?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A new token of `role` for the default tenant.
pub(crate) async fn token(
    http: &reqwest::Client,
    broker: &Broker,
    role: &str,
) -> anyhow::Result<String> {
    let (s, v) = call(
        http,
        broker,
        reqwest::Method::POST,
        "/v1/admin/tokens",
        ADMIN_TOKEN,
        Some(json!({ "tenant": "default", "role": role, "label": format!("bench {role}") })),
    )
    .await?;
    ensure!(s == 201, "token: HTTP {s}: {v}");
    Ok(v["token"].as_str().context("token missing")?.to_owned())
}

/// Registers devices `0..n` (serial, platform, user) from `clients` concurrent connections;
/// their ids in order.
pub(crate) async fn register_devices(
    broker: &Broker,
    n: usize,
    clients: usize,
) -> anyhow::Result<Vec<String>> {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, next) = (broker.client().unwrap(), Arc::clone(&next));
            let url = format!("{}/v1/admin/devices", broker.https);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let platform = if i.is_multiple_of(2) {
                        "ios"
                    } else {
                        "android"
                    };
                    let r = http
                        .post(&url)
                        .bearer_auth(ADMIN_TOKEN)
                        .json(
                            &json!({ "serial": serial(i), "platform": platform, "user": user(i) }),
                        )
                        .send()
                        .await?;
                    let status = r.status().as_u16();
                    let v: Value = r.json().await?;
                    ensure!(status == 201, "register {}: HTTP {status}: {v}", serial(i));
                    ids.push((i, v["id"].as_str().context("device id")?.to_owned()));
                }
                anyhow::Ok(ids)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok(all.into_iter().map(|(_, id)| id).collect())
}

/// A normalized posture event about one device, from the MDM.
pub(crate) fn event(id: String, device: &str, body: Value) -> Value {
    let mut e = json!({
        "source": "jamf",
        "event_id": id,
        "occurred_at": OffsetDateTime::now_utc().format(&Rfc3339).unwrap(),
        "subject": { "kind": "device", "device_id": device },
    });
    e["event"] = body;
    e
}

/// What the benchmark devices report: the `i`-th device gets its address, a compliant MDM
/// check-in and the in-app capability; every other one also RCS E2EE as claimed by the MDM.
pub(crate) fn device_events(i: usize, id: &str) -> Vec<Value> {
    let mut v = vec![
        event(
            format!("addr-{i}"),
            id,
            json!({ "type": "addresses_assigned", "addresses": [address(i)] }),
        ),
        event(
            format!("checkin-{i}"),
            id,
            json!({ "type": "checked_in", "compliance": "compliant", "os_version": "18.1" }),
        ),
        event(
            format!("app-{i}"),
            id,
            json!({ "type": "capability_reported",
                    "capability": { "capability": "in_app", "available": true } }),
        ),
    ];
    if i.is_multiple_of(2) {
        v.push(event(
            format!("rcs-{i}"),
            id,
            json!({ "type": "capability_reported",
                    "capability": { "capability": "rcs_e2ee", "state": "claimed" } }),
        ));
    }
    v
}

/// Sends `events` to `/v1/posture/events` in batches of `batch`, from `clients` concurrent
/// connections; fails unless every event applied.
pub(crate) async fn ingest(
    broker: &Broker,
    events: Vec<Value>,
    batch: usize,
    clients: usize,
) -> anyhow::Result<()> {
    let batches: Arc<Vec<Vec<Value>>> =
        Arc::new(events.chunks(batch).map(<[Value]>::to_vec).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, next, batches) = (
                broker.client().unwrap(),
                Arc::clone(&next),
                Arc::clone(&batches),
            );
            let url = format!("{}/v1/posture/events", broker.https);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(b) = batches.get(i) else { break };
                    let r = http
                        .post(&url)
                        .bearer_auth(ADMIN_TOKEN)
                        .json(&json!({ "events": b }))
                        .send()
                        .await?;
                    let status = r.status().as_u16();
                    let v: Value = r.json().await?;
                    ensure!(status == 200, "events: HTTP {status}: {v}");
                    let results = v["results"].as_array().context("results")?;
                    ensure!(
                        results.len() == b.len()
                            && results.iter().all(|r| r["status"] == "applied"),
                        "events not applied: {v}"
                    );
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// How many entries the audit log holds (the whole chain is verified on the way).
pub(crate) async fn audit_entries(http: &reqwest::Client, broker: &Broker) -> anyhow::Result<u64> {
    let (s, v) = call(
        http,
        broker,
        reqwest::Method::GET,
        "/v1/admin/audit/verify",
        ADMIN_TOKEN,
        None,
    )
    .await?;
    ensure!(s == 200, "audit verify: HTTP {s}: {v}");
    v["entries"].as_u64().context("entries")
}
