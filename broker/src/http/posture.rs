//! Posture, routing and policy: `/v1/posture/*`, `/v1/capabilities`, `/v1/route*`,
//! `/v1/policy`, `/v1/admin/kill-switches*`, the cascade (`/v1/admin/devices/{id}/lost`,
//! `/v1/admin/users/{user}/deactivate`) and `/v1/audit`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use postern_api::route::{
    BatchItem, BatchRouteAnswer, BatchRouteRequest, RouteAnswer, RouteRequest,
};

use crate::domain::posture::cascade::CascadeReport;
use crate::domain::posture::event::PostureEvent;
use crate::domain::posture::handshake::HandshakeOutcome;
use crate::domain::posture::policy::KillSwitch;
use crate::domain::posture::service::{EventOutcome, KillEntry, Rules};
use crate::model;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/posture/events", post(ingest))
        .route("/v1/posture/devices/{id}", get(device_posture))
        .route("/v1/capabilities", post(capabilities))
        .route("/v1/route", post(route))
        .route("/v1/route/batch", post(route_batch))
        .route(
            "/v1/policy",
            get(get_policy).put(put_policy).delete(reset_policy),
        )
        .route("/v1/admin/kill-switches", get(list_kills).post(add_kill))
        .route("/v1/admin/kill-switches/{id}", delete(remove_kill))
        .route("/v1/admin/devices/{id}/lost", post(device_lost))
        .route("/v1/admin/users/{user}/deactivate", post(deactivate_user))
        .route("/v1/audit", get(audit))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantQuery {
    tenant: Option<String>,
}

/// `{"events": [...]}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestRequest {
    events: Vec<PostureEvent>,
}

async fn ingest(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<TenantQuery>,
    ApiJson(req): ApiJson<IngestRequest>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let out: Vec<EventOutcome> = s
        .posture
        .ingest(&who, q.tenant.as_deref(), req.events)
        .await?;
    Ok(axum::Json(serde_json::json!({ "results": out })))
}

async fn device_posture(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let (rec, a) = s.posture.device_posture(&who, q.tenant.as_deref(), &id)?;
    Ok(axum::Json(serde_json::json!({
        "record": rec,
        "assurance": a.assurance,
        "rcs_e2ee": a.rcs_e2ee,
        "reasons": a.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })))
}

/// The statement as `application/jose` (the compact JWS) or JSON `{"jws": "..."}`.
async fn capabilities(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<axum::Json<HandshakeOutcome>, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let jws = match ct.as_str() {
        "application/jose" => std::str::from_utf8(&body)
            .map_err(|_| ApiError::malformed("the statement is not UTF-8"))?
            .to_owned(),
        "application/json" => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Wrapped {
                jws: String,
            }
            serde_json::from_slice::<Wrapped>(&body)
                .map_err(|e| ApiError::malformed(format!("capabilities: {e}")))?
                .jws
        }
        _ => {
            return Err(ApiError::http(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the statement as application/jose or application/json",
            ));
        }
    };
    Ok(axum::Json(s.posture.capability_handshake(&jws).await?))
}

async fn route(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<TenantQuery>,
    ApiJson(req): ApiJson<RouteRequest>,
) -> Result<axum::Json<RouteAnswer>, ApiError> {
    Ok(axum::Json(
        s.posture.route(&who, q.tenant.as_deref(), &req).await?,
    ))
}

async fn route_batch(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<TenantQuery>,
    ApiJson(req): ApiJson<BatchRouteRequest>,
) -> Result<axum::Json<BatchRouteAnswer>, ApiError> {
    let out = s
        .posture
        .route_batch(&who, q.tenant.as_deref(), &req.requests)
        .await?;
    let decisions = out
        .items
        .into_iter()
        .map(|r| match r {
            Ok(a) => BatchItem::Decision(Box::new(a)),
            Err(e) => BatchItem::Error {
                error: ApiError::from(e).problem(),
            },
        })
        .collect();
    Ok(axum::Json(BatchRouteAnswer {
        batch_id: out.batch_id,
        decisions,
        jws: out.jws,
    }))
}

fn policy_view(r: &Rules) -> serde_json::Value {
    serde_json::json!({
        "version": r.policy.version(),
        "custom": r.custom,
        "toml": r.policy_toml,
        "summary": r.policy.summary(),
        "kill_switches": r.kill_entries,
    })
}

async fn get_policy(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    who.require_admin()?;
    let tenant = who.scope(q.tenant.as_deref())?;
    let rules = s.posture.rules(&tenant)?;
    Ok(axum::Json(policy_view(&rules)))
}

/// The body is the policy's TOML text (`application/toml` or `text/plain`).
async fn put_policy(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<TenantQuery>,
    body: bytes::Bytes,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::malformed("the policy is not UTF-8"))?;
    let r = s
        .posture
        .set_policy(&who, q.tenant.as_deref(), text)
        .await?;
    Ok(axum::Json(policy_view(&r)))
}

async fn reset_policy(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let r = s.posture.reset_policy(&who, q.tenant.as_deref()).await?;
    Ok(axum::Json(policy_view(&r)))
}

async fn list_kills(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> Result<axum::Json<Vec<KillEntry>>, ApiError> {
    who.require_admin()?;
    let tenant = who.scope(q.tenant.as_deref())?;
    Ok(axum::Json(s.posture.rules(&tenant)?.kill_entries.clone()))
}

async fn add_kill(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<TenantQuery>,
    body: bytes::Bytes,
) -> Result<(StatusCode, axum::Json<KillEntry>), ApiError> {
    // `{transport, scope, reason?}`: the rule refuses unknown members itself
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::malformed(format!("kill switch: {e}")))?;
    let mut obj = v
        .as_object()
        .cloned()
        .ok_or_else(|| ApiError::malformed("kill switch: expected an object"))?;
    let reason = match obj.remove("reason") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(r)) => Some(r),
        Some(_) => return Err(ApiError::malformed("kill switch: reason must be a string")),
    };
    let switch: KillSwitch = serde_json::from_value(serde_json::Value::Object(obj))
        .map_err(|e| ApiError::malformed(format!("kill switch: {e}")))?;
    let e = s
        .posture
        .add_kill_switch(&who, q.tenant.as_deref(), switch, reason)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(e)))
}

async fn remove_kill(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> Result<StatusCode, ApiError> {
    s.posture
        .remove_kill_switch(&who, q.tenant.as_deref(), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn device_lost(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> Result<axum::Json<CascadeReport>, ApiError> {
    Ok(axum::Json(
        s.posture
            .device_lost(&who, q.tenant.as_deref(), &id)
            .await?,
    ))
}

async fn deactivate_user(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(user): ApiPath<String>,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> Result<axum::Json<CascadeReport>, ApiError> {
    Ok(axum::Json(
        s.posture
            .deactivate_user(&who, q.tenant.as_deref(), &user)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    tenant: Option<String>,
    device: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

async fn audit(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<axum::Json<Vec<model::AuditEntry>>, ApiError> {
    let since = match &q.since {
        Some(t) => Some(OffsetDateTime::parse(t, &Rfc3339).map_err(|_| {
            ApiError::malformed("since must be an RFC 3339 time (2026-11-23T10:00:00Z)")
        })?),
        None => None,
    };
    Ok(axum::Json(s.posture.audit_query(
        &who,
        q.tenant.as_deref(),
        q.device.as_deref(),
        since,
        q.limit.unwrap_or(100),
    )?))
}
