//! MDM webhooks on the wire: `/v1/admin/webhooks*` (admin bearer tokens) and the receiver
//! `POST /webhooks/{id}`, which takes no bearer token: the webhook's own secret or signature
//! authenticates each delivery (`domain::webhooks`). Bodies up to
//! [`MAX_BODY`](crate::domain::webhooks::MAX_BODY).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{delete, post};
use serde::{Deserialize, Serialize};

use crate::domain::webhooks::{
    Answer, Credentials, HMAC_HEADER, MAX_BODY, NewWebhook, Receipt, SECRET_HEADER, WebhookView,
    Webhooks,
};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/webhooks", post(create).get(list))
        .route("/v1/admin/webhooks/{id}", delete(remove))
        .route("/v1/admin/webhooks/{id}/rotate", post(rotate))
        .route(
            "/webhooks/{id}",
            post(receive).layer(DefaultBodyLimit::max(MAX_BODY)),
        )
}

fn service(s: &AppState) -> Webhooks {
    Webhooks::new(
        std::sync::Arc::clone(&s.posture),
        std::sync::Arc::clone(&s.acme),
    )
    .with_scep(std::sync::Arc::clone(&s.scep))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantQuery {
    tenant: Option<String>,
}

/// A webhook with its secret, as `POST` answers (the only time the secret is shown).
#[derive(Debug, Serialize)]
struct Created {
    #[serde(flatten)]
    webhook: WebhookView,
    /// `https://{host}/webhooks/{id}`, from the request's `Host`.
    url: Option<String>,
    secret: String,
}

fn url(headers: &HeaderMap, path: &str) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    (!host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic()) && !host.contains('/'))
        .then(|| format!("https://{host}{path}"))
}

async fn create(
    State(s): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NewWebhook>,
) -> Result<(StatusCode, axum::Json<Created>), ApiError> {
    let (webhook, secret) = service(&s).create(&who, req).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Created {
            url: url(&headers, &webhook.path),
            webhook,
            secret,
        }),
    ))
}

async fn list(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> Result<axum::Json<Vec<WebhookView>>, ApiError> {
    Ok(axum::Json(service(&s).list(&who, q.tenant.as_deref())?))
}

async fn remove(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> Result<StatusCode, ApiError> {
    service(&s).delete(&who, q.tenant.as_deref(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate(
    State(s): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> Result<axum::Json<Created>, ApiError> {
    let (webhook, secret) = service(&s).rotate(&who, q.tenant.as_deref(), &id).await?;
    Ok(axum::Json(Created {
        url: url(&headers, &webhook.path),
        webhook,
        secret,
    }))
}

async fn receive(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let body = body?;
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let creds = Credentials {
        hmac_signature: text(HMAC_HEADER),
        authorization: text(header::AUTHORIZATION.as_str()),
        secret_header: text(SECRET_HEADER),
    };
    Ok(match service(&s).deliver(&id, &creds, &body).await? {
        Answer::Receipt(r) => axum::Json::<Receipt>(r).into_response(),
        // Jamf Pro embeds the body, as it is, in the SCEP payload
        Answer::ScepChallenge(c) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            c.challenge,
        )
            .into_response(),
    })
}
