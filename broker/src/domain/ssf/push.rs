//! Push delivery (RFC 8935): one worker per enabled push stream sends the head of the stream's
//! queue, one SET at a time, so a stream's SETs arrive in order.
//!
//! - 2xx (RFC 8935 says 202): delivered, removed from the queue.
//! - 400 with `{"err", "description"}`: the receiver refuses this SET for good (RFC 8935
//!   §2.3); it is logged with the receiver's error code, counted and removed.
//! - anything else (5xx, 401, 403, 404, 429, network errors, timeouts): retried after a delay
//!   that doubles per failure from `push_backoff_base_seconds` up to `push_backoff_max_seconds`,
//!   of which a random half is jitter. Later SETs wait behind it.
//!
//! The supervisor ([`Ssf::run_push`]) restarts a stream's worker whenever the stream's
//! configuration or status changes, which also ends a backoff wait. A SET whose push was under
//! way when its worker was stopped is sent again (delivery is at least once; receivers
//! recognise repeats by `jti`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Delivery, Ssf, StreamRecord, StreamStatus};

/// How much of a refusal body is read.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// The supervisor looks at the streams at least this often.
const RESCAN: Duration = Duration::from_secs(60);

/// What one push attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The receiver took it.
    Delivered,
    /// The receiver refused it for good (`err`, `description`).
    Refused(String, String),
    /// Try again later (why).
    Retry(String),
}

/// The wait before retry number `failures` (1 for the first): `base * 2^(failures-1)`, capped
/// at `max`, of which the upper half is scaled by `r` in `[0, 1]` ("equal jitter").
pub(crate) fn backoff_delay(base: f64, max: f64, failures: u32, r: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(40) as i32;
    let d = (base * 2f64.powi(exp)).min(max);
    Duration::from_secs_f64(d * (0.5 + 0.5 * r.clamp(0.0, 1.0)))
}

fn unit_random() -> f64 {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 4];
    match ring::rand::SystemRandom::new().fill(&mut b) {
        Ok(()) => f64::from(u32::from_be_bytes(b)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    }
}

/// A reqwest error's causes, without the URL (it may carry a secret in its query).
fn cause(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// Reads `{"err", "description"}` from a 400 body, as much of it as is there.
fn refusal(body: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(|s| s.chars().take(200).collect::<String>())
    };
    (
        field("err").unwrap_or_else(|| "unspecified".into()),
        field("description").unwrap_or_default(),
    )
}

impl Ssf {
    /// Delivers the queues of push streams until `shutdown` turns true (or its sender goes):
    /// one worker per enabled push stream, restarted when the stream changes.
    pub async fn run_push(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut workers: HashMap<String, (OffsetDateTime, JoinHandle<()>)> = HashMap::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let changed = self.streams_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.all_streams() {
                Ok(streams) => self.reconcile(&mut workers, streams, &shutdown),
                Err(e) => tracing::error!(error = %e, "reading the SSF streams failed"),
            }
            tokio::select! {
                _ = &mut changed => {}
                r = shutdown.changed() => if r.is_err() { break },
                _ = tokio::time::sleep(RESCAN) => {}
            }
        }
        for (_, (_, h)) in workers {
            h.abort();
        }
    }

    fn reconcile(
        self: &Arc<Self>,
        workers: &mut HashMap<String, (OffsetDateTime, JoinHandle<()>)>,
        streams: Vec<StreamRecord>,
        shutdown: &watch::Receiver<bool>,
    ) {
        let mut wanted: HashMap<String, StreamRecord> = streams
            .into_iter()
            .filter(|s| s.status == StreamStatus::Enabled)
            .filter(|s| matches!(s.delivery, Delivery::Push { .. }))
            .map(|s| (s.stream_id.clone(), s))
            .collect();
        workers.retain(|id, (version, handle)| {
            let keep =
                !handle.is_finished() && wanted.get(id).is_some_and(|s| s.updated_at == *version);
            if !keep {
                handle.abort();
            }
            keep
        });
        for (id, rec) in wanted.drain() {
            if workers.contains_key(&id) {
                continue;
            }
            let version = rec.updated_at;
            let h = tokio::spawn(Arc::clone(self).push_worker(rec, shutdown.clone()));
            workers.insert(id, (version, h));
        }
    }

    async fn push_worker(self: Arc<Self>, rec: StreamRecord, mut shutdown: watch::Receiver<bool>) {
        let Delivery::Push {
            endpoint_url,
            authorization_header,
        } = &rec.delivery
        else {
            return;
        };
        let id = rec.stream_id.as_str();
        let waker = self.waker(id);
        let mut failures: u32 = 0;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let notified = waker.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let head = match self.head(id, 1) {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(stream = %id, error = %e, "reading the SSF queue failed");
                    failures += 1;
                    if self.pause(failures, &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            let Some((key, set)) = head.into_iter().next() else {
                tokio::select! {
                    _ = &mut notified => {}
                    r = shutdown.changed() => if r.is_err() { return },
                }
                continue;
            };
            let outcome = match self.sign(&set) {
                Ok(jws) => {
                    self.push_one(endpoint_url, authorization_header.as_deref(), jws)
                        .await
                }
                Err(e) => Outcome::Retry(format!("signing: {e}")),
            };
            match outcome {
                Outcome::Delivered => {
                    failures = 0;
                    self.count(id, |s| s.delivered += 1);
                    if let Err(e) = self.remove(id, vec![key]).await {
                        tracing::error!(stream = %id, error = %e, "removing a delivered SET failed");
                    }
                }
                Outcome::Refused(err, description) => {
                    failures = 0;
                    self.count(id, |s| s.failed += 1);
                    tracing::warn!(stream = %id, jti = %set.jti, %err, %description,
                        "the receiver refused a SET; it is dropped");
                    if let Err(e) = self.remove(id, vec![key]).await {
                        tracing::error!(stream = %id, error = %e, "removing a refused SET failed");
                    }
                }
                Outcome::Retry(why) => {
                    failures += 1;
                    self.count(id, |s| s.retried += 1);
                    tracing::warn!(stream = %id, jti = %set.jti, failures, reason = %why,
                        "pushing a SET failed; it will be retried");
                    if self.pause(failures, &mut shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// Waits out the backoff; true when shutting down.
    async fn pause(&self, failures: u32, shutdown: &mut watch::Receiver<bool>) -> bool {
        let d = backoff_delay(
            self.settings.push_backoff_base_seconds,
            self.settings.push_backoff_max_seconds,
            failures,
            unit_random(),
        );
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            r = shutdown.changed() => r.is_err() || *shutdown.borrow(),
        }
    }

    /// One RFC 8935 request.
    pub(crate) async fn push_one(&self, url: &str, auth: Option<&str>, jws: String) -> Outcome {
        let mut req = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/secevent+jwt")
            .header(ACCEPT, "application/json")
            .timeout(Duration::from_secs(self.settings.push_timeout_seconds))
            .body(jws);
        if let Some(h) = auth {
            match HeaderValue::from_str(h) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    req = req.header(AUTHORIZATION, v);
                }
                // checked when the stream was configured; never logged
                Err(_) => return Outcome::Retry("the authorization header is not valid".into()),
            }
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(cause(e)),
        };
        let status = resp.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        if status != reqwest::StatusCode::BAD_REQUEST {
            return Outcome::Retry(format!("HTTP {}", status.as_u16()));
        }
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ERROR_BODY {
                break;
            }
        }
        let (err, description) = refusal(&body);
        Outcome::Refused(err, description)
    }
}
