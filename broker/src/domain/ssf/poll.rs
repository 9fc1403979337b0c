//! Poll delivery (RFC 8936): the receiver POSTs `{maxEvents, returnImmediately, ack, setErrs}`
//! and gets `{sets, moreAvailable}`.
//!
//! Acknowledged SETs and SETs reported in `setErrs` are removed before anything is returned.
//! SETs returned but not acknowledged stay queued and come again in the next response, so
//! nothing is lost when a response is. Without `returnImmediately` (or with it `false`) an empty
//! queue is waited on for up to `poll_wait_seconds`. A paused stream returns nothing (its SETs
//! are held); acknowledgements still count.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::domain::{DomainError, DomainResult, ErrorKind, Principal};

use super::{Delivery, Ssf, StreamStatus, require_receiver};

/// `maxEvents` when the request has none.
pub const DEFAULT_POLL_EVENTS: usize = 100;
/// The most SETs one response holds.
pub const MAX_POLL_EVENTS: usize = 1000;
/// The most `ack` and `setErrs` entries one request may carry.
const MAX_ACKS: usize = 10_000;

/// A poll request, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollRequest {
    /// `maxEvents`: how many SETs at most (0: only acknowledge).
    pub max_events: Option<usize>,
    /// `returnImmediately`.
    pub return_immediately: bool,
    /// `ack`: the `jti`s the receiver processed.
    pub ack: Vec<String>,
    /// `setErrs`: `jti` → (`err`, `description`) for SETs the receiver refused.
    pub set_errs: BTreeMap<String, (String, String)>,
}

/// A poll response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollResponse {
    /// `sets`: `jti` → the SET.
    pub sets: BTreeMap<String, String>,
    /// `moreAvailable`.
    pub more_available: bool,
}

impl PollResponse {
    /// The RFC 8936 JSON body.
    pub fn to_json(&self) -> Value {
        json!({"sets": self.sets, "moreAvailable": self.more_available})
    }
}

fn malformed(detail: impl Into<String>) -> DomainError {
    DomainError::new(ErrorKind::Malformed, detail)
}

impl PollRequest {
    /// Parses a request body; an empty body is `{}`.
    ///
    /// # Errors
    /// Malformed naming the member.
    pub fn parse(body: &[u8]) -> DomainResult<PollRequest> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(PollRequest::default());
        }
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| malformed(format!("the body is not JSON: {e}")))?;
        let o = v
            .as_object()
            .ok_or_else(|| malformed("the body must be a JSON object"))?;
        let mut req = PollRequest::default();
        match o.get("maxEvents") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                let n = n
                    .as_u64()
                    .ok_or_else(|| malformed("maxEvents must be a non-negative integer"))?;
                req.max_events = Some(usize::try_from(n).unwrap_or(usize::MAX));
            }
            Some(_) => return Err(malformed("maxEvents must be a non-negative integer")),
        }
        match o.get("returnImmediately") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => req.return_immediately = *b,
            Some(_) => return Err(malformed("returnImmediately must be true or false")),
        }
        match o.get("ack") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                if a.len() > MAX_ACKS {
                    return Err(malformed(format!("ack has more than {MAX_ACKS} entries")));
                }
                for (i, j) in a.iter().enumerate() {
                    let j = j
                        .as_str()
                        .ok_or_else(|| malformed(format!("ack[{i}] must be a string")))?;
                    req.ack.push(j.to_owned());
                }
            }
            Some(_) => return Err(malformed("ack must be an array of jti strings")),
        }
        match o.get("setErrs") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                if m.len() > MAX_ACKS {
                    return Err(malformed(format!(
                        "setErrs has more than {MAX_ACKS} entries"
                    )));
                }
                for (jti, e) in m {
                    req.set_errs.insert(jti.clone(), set_err(jti, e)?);
                }
            }
            Some(_) => return Err(malformed("setErrs must be an object keyed by jti")),
        }
        Ok(req)
    }
}

fn set_err(jti: &str, e: &Value) -> DomainResult<(String, String)> {
    let o: &Map<String, Value> = e
        .as_object()
        .ok_or_else(|| malformed(format!("setErrs[{jti:?}] must be an object")))?;
    let err = o
        .get("err")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(format!("setErrs[{jti:?}].err must be a string")))?;
    let description = match o.get("description") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(malformed(format!(
                "setErrs[{jti:?}].description must be a string"
            )));
        }
    };
    Ok((
        err.chars().take(200).collect(),
        description.chars().take(200).collect(),
    ))
}

impl Ssf {
    /// Answers a poll of one of the caller's streams.
    ///
    /// # Errors
    /// Forbidden for other roles; NotFound for another tenant's or an unknown stream;
    /// Malformed when the stream delivers by push.
    pub async fn poll(
        &self,
        p: &Principal,
        stream_id: &str,
        req: PollRequest,
    ) -> DomainResult<PollResponse> {
        require_receiver(p)?;
        let (rec, _) = self.record(&p.tenant, stream_id)?;
        if rec.delivery != Delivery::Poll {
            return Err(malformed(
                "the stream delivers by push (urn:ietf:rfc:8935); it cannot be polled",
            ));
        }
        if !req.ack.is_empty() || !req.set_errs.is_empty() {
            self.acknowledge(stream_id, &req).await?;
        }
        let max = req
            .max_events
            .unwrap_or(DEFAULT_POLL_EVENTS)
            .min(MAX_POLL_EVENTS);
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(if req.return_immediately {
                0
            } else {
                self.settings.poll_wait_seconds
            });
        let waker = self.waker(stream_id);
        loop {
            let notified = waker.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (rec, _) = self.record(&p.tenant, stream_id)?;
            let batch = if rec.status == StreamStatus::Enabled {
                self.head(stream_id, max.saturating_add(1))?
            } else {
                Vec::new()
            };
            if max == 0 || !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                let more_available = batch.len() > max;
                let mut sets = BTreeMap::new();
                for (_, set) in batch.into_iter().take(max) {
                    let jws = self.sign(&set)?;
                    sets.insert(set.jti, jws);
                }
                return Ok(PollResponse {
                    sets,
                    more_available,
                });
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Removes acknowledged and refused SETs; `jti`s not queued are ignored.
    async fn acknowledge(&self, stream_id: &str, req: &PollRequest) -> DomainResult<()> {
        let acked: HashSet<&str> = req.ack.iter().map(String::as_str).collect();
        let mut keys = Vec::new();
        let (mut ok, mut refused) = (0u64, 0u64);
        for (k, set) in self.head(stream_id, usize::MAX)? {
            if acked.contains(set.jti.as_str()) {
                ok += 1;
                keys.push(k);
            } else if let Some((err, description)) = req.set_errs.get(&set.jti) {
                refused += 1;
                tracing::warn!(stream = %stream_id, jti = %set.jti, %err, %description,
                    "the receiver refused a SET");
                keys.push(k);
            }
        }
        self.remove(stream_id, keys).await?;
        self.count(stream_id, |s| {
            s.delivered += ok;
            s.failed += refused;
        });
        Ok(())
    }
}
