//! The signed feed and the broker's signing keys on the wire:
//!
//! - `GET /.well-known/jwks.json`: the public JWK Set (no token);
//! - `POST /v1/admin/keys/rotate`: new signing keys (operators);
//! - `GET /feed/v1/{tenant}/checkpoint`: the signed note (`text/plain`), or the JWS
//!   (`application/jose`) with `Accept: application/jose` or `?format=jws`;
//! - `GET /feed/v1/{tenant}/entries?start=&end=`;
//! - `GET /feed/v1/{tenant}/consistency?first=&second=`;
//! - `GET /feed/v1/{tenant}/devices/{device_id}`.
//!
//! Feed reads need a token of the tenant (any role) or an operator's.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Deserialize;

use postern_api::feed as api;

use super::AppState;
use super::admin::rfc3339;
use super::auth::Caller;
use super::error::{ApiError, ApiPath, ApiQuery};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/admin/keys/rotate", post(rotate))
        .route("/feed/v1/{tenant}/checkpoint", get(checkpoint))
        .route("/feed/v1/{tenant}/entries", get(entries))
        .route("/feed/v1/{tenant}/consistency", get(consistency))
        .route("/feed/v1/{tenant}/devices/{device_id}", get(device))
}

fn respond(body: impl Into<axum::body::Body>, content_type: &str, cache: &'static str) -> Response {
    let mut r = Response::new(body.into());
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

fn json_body<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(v).map_err(|e| ApiError::from(crate::domain::DomainError::internal(e)))
}

/// Tenant data is private: never kept by shared caches.
const PRIVATE: &str = "private, no-store";

async fn jwks(State(s): State<AppState>) -> Result<Response, ApiError> {
    let set = s.domain.jwks()?;
    Ok(respond(
        json_body(&set)?,
        api::JWK_SET_JSON,
        "public, max-age=60",
    ))
}

async fn rotate(
    State(s): State<AppState>,
    Caller(who): Caller,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::Json<api::KeyRotation>, ApiError> {
    let body = body?;
    let req: api::RotateKeysRequest = if body.iter().all(u8::is_ascii_whitespace) {
        api::RotateKeysRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::malformed(format!("body: {e}")))?
    };
    let overlap = req
        .overlap_hours
        .map(|h| time::Duration::hours(i64::from(h)));
    let r = s.domain.rotate_keys(&who, overlap).await?;
    let view = |k: &crate::domain::keys::RotatedKey| api::RotatedKey {
        alg: k.alg.as_str().to_owned(),
        kid: k.kid.clone(),
        published_until: k.published_until.map(rfc3339),
    };
    Ok(axum::Json(api::KeyRotation {
        activated: r.activated.iter().map(view).collect(),
        retired: r.retired.iter().map(view).collect(),
        dropped: r.dropped,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointQuery {
    format: Option<String>,
}

async fn checkpoint(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<CheckpointQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let jws = match q.format.as_deref() {
        Some("jws") => true,
        Some("note") => false,
        Some(other) => {
            return Err(ApiError::malformed(format!(
                "format {other:?} is not \"note\" or \"jws\""
            )));
        }
        None => headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.split(';').next().map(str::trim) == Some(api::JOSE)),
    };
    let c = s.domain.feed_checkpoint(&who, &tenant)?;
    Ok(if jws {
        respond(c.jws, api::JOSE, PRIVATE)
    } else {
        respond(c.note, "text/plain; charset=utf-8", PRIVATE)
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    start: u64,
    end: u64,
}

async fn entries(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Response, ApiError> {
    let list = s.domain.feed_entries(&who, &tenant, q.start, q.end)?;
    let mut out = Vec::with_capacity(list.len());
    for e in list {
        out.push(api::FeedEntry {
            seq: e.seq,
            entry: e.value()?,
            leaf: STANDARD.encode(&e.leaf),
        });
    }
    let body = api::FeedEntries {
        tenant,
        start: q.start,
        end: q.end,
        entries: out,
    };
    Ok(respond(json_body(&body)?, "application/json", PRIVATE))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    first: u64,
    second: u64,
}

async fn consistency(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<Response, ApiError> {
    let proof = s
        .domain
        .feed_consistency(&who, &tenant, q.first, q.second)?;
    let body = api::ConsistencyProof {
        first: q.first,
        second: q.second,
        proof: proof.iter().map(|h| STANDARD.encode(h)).collect(),
    };
    Ok(respond(json_body(&body)?, "application/json", PRIVATE))
}

async fn device(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath((tenant, device_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let p = s.domain.feed_device(&who, &tenant, &device_id)?;
    let body = api::DeviceProof {
        tenant,
        device_id,
        seq: p.entry.seq,
        leaf: STANDARD.encode(&p.entry.leaf),
        leaf_hash: STANDARD.encode(p.leaf_hash),
        record: p.record,
        tree_size: p.checkpoint.checkpoint.size,
        checkpoint: p.checkpoint.note,
        checkpoint_jws: p.checkpoint.jws,
        inclusion: p.inclusion.iter().map(|h| STANDARD.encode(h)).collect(),
        statement: p.statement,
    };
    Ok(respond(json_body(&body)?, "application/json", PRIVATE))
}
