//! Streams (SSF 1.0 §8.1): the stored record, the receiver's request bodies checked member by
//! member, and the configuration a receiver reads back (with the push authorization header
//! redacted).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::domain::{DomainError, DomainResult, ErrorKind};

use super::event::SUPPORTED;

/// RFC 8935 push delivery.
pub const PUSH: &str = "urn:ietf:rfc:8935";
/// RFC 8936 poll delivery.
pub const POLL: &str = "urn:ietf:rfc:8936";

/// What the transmitter shows in place of a push authorization header.
pub const REDACTED: &str = "[redacted]";

const MAX_EVENTS_REQUESTED: usize = 32;
const MAX_URI_LEN: usize = 512;
const MAX_DESCRIPTION_LEN: usize = 1024;
const MAX_AUTHORIZATION_LEN: usize = 4096;
const MAX_AUD_LEN: usize = 512;

/// A stream's status (SSF 1.0 §8.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamStatus {
    /// Events are queued and delivered.
    Enabled,
    /// Events are queued and held; delivery resumes when enabled again.
    Paused,
    /// Nothing is queued or delivered; queued events are dropped.
    Disabled,
}

impl StreamStatus {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Enabled => "enabled",
            StreamStatus::Paused => "paused",
            StreamStatus::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> DomainResult<StreamStatus> {
        match s {
            "enabled" => Ok(StreamStatus::Enabled),
            "paused" => Ok(StreamStatus::Paused),
            "disabled" => Ok(StreamStatus::Disabled),
            other => Err(malformed(format!(
                "status {other:?} is not \"enabled\", \"paused\" or \"disabled\""
            ))),
        }
    }
}

/// How SETs reach the receiver.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Delivery {
    /// RFC 8935: the transmitter POSTs each SET to the receiver.
    Push {
        /// Where.
        endpoint_url: String,
        /// The `Authorization` header value sent with each SET (a secret).
        authorization_header: Option<String>,
    },
    /// RFC 8936: the receiver polls `<issuer>/ssf/poll/<stream_id>`.
    Poll,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Delivery::Push {
                endpoint_url,
                authorization_header,
            } => f
                .debug_struct("Push")
                .field("endpoint_url", endpoint_url)
                .field(
                    "authorization_header",
                    &authorization_header.as_ref().map(|_| REDACTED),
                )
                .finish(),
            Delivery::Poll => f.write_str("Poll"),
        }
    }
}

/// A stream as stored (`DocKind::SsfStream`, key `tenant/stream_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// Random, 32 lower-case hex digits.
    pub stream_id: String,
    /// The tenant whose events it carries.
    pub tenant: String,
    /// The `aud` of its SETs.
    pub aud: String,
    /// What the receiver asked for (as given, deduplicated).
    pub events_requested: Vec<String>,
    /// What it gets: requested ∩ supported.
    pub events_delivered: Vec<String>,
    /// How.
    pub delivery: Delivery,
    /// The receiver's description.
    pub description: Option<String>,
    /// Enabled, paused or disabled.
    pub status: StreamStatus,
    /// Why the status was last set, as the receiver said.
    pub status_reason: Option<String>,
    /// Who created it (`token:<id>`).
    pub created_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change of configuration or status.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// The receiver-supplied part of a stream, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamSpec {
    pub(crate) events_requested: Vec<String>,
    pub(crate) delivery: Delivery,
    pub(crate) description: Option<String>,
    pub(crate) aud: Option<String>,
}

fn malformed(detail: impl Into<String>) -> DomainError {
    DomainError::new(ErrorKind::Malformed, detail)
}

/// The body as a JSON object.
pub(crate) fn object(body: &Value) -> DomainResult<&Map<String, Value>> {
    body.as_object()
        .ok_or_else(|| malformed("the request body must be a JSON object"))
}

/// `stream_id` from a body: required, a string.
pub(crate) fn stream_id_of(o: &Map<String, Value>) -> DomainResult<String> {
    match o.get("stream_id") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(malformed("stream_id must be a non-empty string")),
        None => Err(malformed("stream_id is required")),
    }
}

fn opt_string(o: &Map<String, Value>, key: &str, max: usize) -> DomainResult<Option<String>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(malformed(format!("{key} is longer than {max} characters"))),
        Some(_) => Err(malformed(format!("{key} must be a string"))),
    }
}

fn events_requested(o: &Map<String, Value>) -> DomainResult<Vec<String>> {
    let list = match o.get("events_requested") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(malformed("events_requested must be an array of strings")),
    };
    if list.len() > MAX_EVENTS_REQUESTED {
        return Err(malformed(format!(
            "events_requested has more than {MAX_EVENTS_REQUESTED} entries"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let s = v
            .as_str()
            .ok_or_else(|| malformed(format!("events_requested[{i}] must be a string")))?;
        if s.is_empty() || s.len() > MAX_URI_LEN {
            return Err(malformed(format!(
                "events_requested[{i}] must be a URI of 1 to {MAX_URI_LEN} characters"
            )));
        }
        if !out.iter().any(|x| x == s) {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}

/// `events_requested ∩ supported`, in the order of the supported list.
pub(crate) fn delivered(requested: &[String]) -> Vec<String> {
    SUPPORTED
        .iter()
        .filter(|s| requested.iter().any(|r| r == *s))
        .map(|s| (*s).to_owned())
        .collect()
}

/// An `authorization_header` value: visible ASCII and spaces, no line breaks.
fn check_authorization(h: &str) -> DomainResult<()> {
    if h.is_empty() || h.len() > MAX_AUTHORIZATION_LEN {
        return Err(malformed(format!(
            "delivery.authorization_header must be 1 to {MAX_AUTHORIZATION_LEN} characters"
        )));
    }
    if !h.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(malformed(
            "delivery.authorization_header may hold only visible ASCII characters and spaces",
        ));
    }
    Ok(())
}

/// An `endpoint_url` for push: an absolute `https` or `http` URL with a host, no credentials
/// and no fragment.
fn check_endpoint(u: &str) -> DomainResult<()> {
    let url = reqwest::Url::parse(u)
        .map_err(|e| malformed(format!("delivery.endpoint_url is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(malformed(
            "delivery.endpoint_url must be an https:// or http:// URL",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(malformed("delivery.endpoint_url has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(malformed(
            "delivery.endpoint_url must not carry credentials; use authorization_header",
        ));
    }
    if url.fragment().is_some() {
        return Err(malformed("delivery.endpoint_url must not have a fragment"));
    }
    if u.len() > MAX_URI_LEN {
        return Err(malformed(format!(
            "delivery.endpoint_url is longer than {MAX_URI_LEN} characters"
        )));
    }
    Ok(())
}

/// The `delivery` member. Absent means poll. `previous` is the stored delivery: an
/// `authorization_header` equal to the redacted form the transmitter returned keeps the stored
/// value, so a configuration read and sent back does not overwrite the secret.
fn delivery(o: &Map<String, Value>, previous: Option<&Delivery>) -> DomainResult<Delivery> {
    let d = match o.get("delivery") {
        None | Some(Value::Null) => return Ok(Delivery::Poll),
        Some(Value::Object(d)) => d,
        Some(_) => return Err(malformed("delivery must be an object")),
    };
    let method = match d.get("method") {
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return Err(malformed("delivery.method must be a string")),
        None => return Err(malformed("delivery.method is required")),
    };
    match method {
        PUSH => {
            let endpoint_url = match d.get("endpoint_url") {
                Some(Value::String(u)) => u.clone(),
                Some(_) => return Err(malformed("delivery.endpoint_url must be a string")),
                None => {
                    return Err(malformed(
                        "delivery.endpoint_url is required for push delivery",
                    ));
                }
            };
            check_endpoint(&endpoint_url)?;
            let authorization_header = match d.get("authorization_header") {
                None | Some(Value::Null) => None,
                Some(Value::String(h)) if is_redacted(h) => match previous {
                    Some(Delivery::Push {
                        authorization_header,
                        ..
                    }) => authorization_header.clone(),
                    _ => {
                        return Err(malformed(
                            "delivery.authorization_header is the redacted placeholder; send the real value",
                        ));
                    }
                },
                Some(Value::String(h)) => {
                    check_authorization(h)?;
                    Some(h.clone())
                }
                Some(_) => {
                    return Err(malformed("delivery.authorization_header must be a string"));
                }
            };
            Ok(Delivery::Push {
                endpoint_url,
                authorization_header,
            })
        }
        // the poll endpoint is the transmitter's to choose; a value sent back is ignored
        POLL => Ok(Delivery::Poll),
        other => Err(malformed(format!(
            "delivery.method {other:?} is not supported; use {PUSH:?} or {POLL:?}"
        ))),
    }
}

/// Parses the receiver-supplied members of a create or replace body.
pub(crate) fn spec(body: &Value, previous: Option<&Delivery>) -> DomainResult<StreamSpec> {
    let o = object(body)?;
    let aud = opt_string(o, "aud", MAX_AUD_LEN)?;
    if aud.as_deref() == Some("") {
        return Err(malformed("aud must not be empty"));
    }
    Ok(StreamSpec {
        events_requested: events_requested(o)?,
        delivery: delivery(o, previous)?,
        description: opt_string(o, "description", MAX_DESCRIPTION_LEN)?,
        aud,
    })
}

/// Applies a PATCH body: members present replace the stored ones, absent ones stay.
pub(crate) fn patch(rec: &StreamRecord, body: &Value) -> DomainResult<StreamSpec> {
    let o = object(body)?;
    let mut spec = StreamSpec {
        events_requested: rec.events_requested.clone(),
        delivery: rec.delivery.clone(),
        description: rec.description.clone(),
        aud: Some(rec.aud.clone()),
    };
    if o.contains_key("events_requested") {
        spec.events_requested = events_requested(o)?;
    }
    if o.contains_key("delivery") {
        spec.delivery = delivery(o, Some(&rec.delivery))?;
    }
    if o.contains_key("description") {
        spec.description = opt_string(o, "description", MAX_DESCRIPTION_LEN)?;
    }
    if o.contains_key("aud") {
        match opt_string(o, "aud", MAX_AUD_LEN)? {
            Some(a) if !a.is_empty() => spec.aud = Some(a),
            _ => return Err(malformed("aud must be a non-empty string")),
        }
    }
    Ok(spec)
}

/// The status and reason of a status update body.
pub(crate) fn status_update(body: &Value) -> DomainResult<(String, StreamStatus, Option<String>)> {
    let o = object(body)?;
    let id = stream_id_of(o)?;
    let status = match o.get("status") {
        Some(Value::String(s)) => StreamStatus::parse(s)?,
        Some(_) => return Err(malformed("status must be a string")),
        None => return Err(malformed("status is required")),
    };
    let reason = opt_string(o, "reason", MAX_DESCRIPTION_LEN)?;
    Ok((id, status, reason))
}

/// The stream id and `state` of a verification request.
pub(crate) fn verification_request(body: &Value) -> DomainResult<(String, Option<String>)> {
    let o = object(body)?;
    Ok((
        stream_id_of(o)?,
        opt_string(o, "state", MAX_DESCRIPTION_LEN)?,
    ))
}

fn is_redacted(h: &str) -> bool {
    h == REDACTED || h.ends_with(&format!(" {REDACTED}"))
}

/// What a receiver sees of an authorization header: the scheme word, if any, and the
/// placeholder.
pub(crate) fn redact(h: &str) -> String {
    match h.split_once(' ') {
        Some((scheme, _))
            if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            format!("{scheme} {REDACTED}")
        }
        _ => REDACTED.to_owned(),
    }
}

/// The stream configuration as SSF 1.0 §8.1.1 shows it.
pub(crate) fn configuration_view(rec: &StreamRecord, issuer: &str, verify_interval: u64) -> Value {
    let delivery = match &rec.delivery {
        Delivery::Push {
            endpoint_url,
            authorization_header,
        } => {
            let mut d = Map::new();
            d.insert("method".into(), Value::from(PUSH));
            d.insert("endpoint_url".into(), Value::from(endpoint_url.as_str()));
            if let Some(h) = authorization_header {
                d.insert("authorization_header".into(), Value::from(redact(h)));
            }
            Value::Object(d)
        }
        Delivery::Poll => serde_json::json!({
            "method": POLL,
            "endpoint_url": format!("{issuer}/ssf/poll/{}", rec.stream_id),
        }),
    };
    let mut v = serde_json::json!({
        "stream_id": rec.stream_id,
        "iss": issuer,
        "aud": rec.aud,
        "delivery": delivery,
        "events_supported": SUPPORTED,
        "events_requested": rec.events_requested,
        "events_delivered": rec.events_delivered,
        "min_verification_interval": verify_interval,
    });
    if let (Some(d), Some(m)) = (&rec.description, v.as_object_mut()) {
        m.insert("description".into(), Value::from(d.as_str()));
    }
    v
}

/// The status as SSF 1.0 §8.1.2.1 shows it.
pub(crate) fn status_view(rec: &StreamRecord) -> Value {
    let mut v = serde_json::json!({
        "stream_id": rec.stream_id,
        "status": rec.status.as_str(),
    });
    if let (Some(r), Some(m)) = (&rec.status_reason, v.as_object_mut()) {
        m.insert("reason".into(), Value::from(r.as_str()));
    }
    v
}
