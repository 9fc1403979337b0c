//! The SSF transmitter on the wire: metadata at `/.well-known/ssf-configuration`, stream
//! management at `/ssf/streams`, `/ssf/status` and `/ssf/verify` (errors as problem
//! documents), and RFC 8936 polling at `/ssf/poll/{stream_id}`, whose malformed requests are
//! answered in RFC 8936's own error format `{"err": "invalid_request", "description"}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::ssf::{PollRequest, Ssf};
use crate::domain::{DomainError, ErrorKind};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};

/// The transmitter's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/ssf-configuration", get(configuration))
        .route(
            "/ssf/streams",
            post(create)
                .get(read)
                .patch(update)
                .put(replace)
                .delete(delete),
        )
        .route("/ssf/status", get(status).post(set_status))
        .route("/ssf/verify", post(verify))
        .route("/ssf/poll/{stream_id}", post(poll))
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    stream_id: Option<String>,
}

fn transmitter(s: &AppState) -> Result<&Arc<Ssf>, ApiError> {
    s.ssf.as_ref().ok_or_else(|| {
        ApiError::http(
            StatusCode::NOT_FOUND,
            "not-found",
            "this broker runs no SSF transmitter",
        )
    })
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn required(q: StreamQuery) -> Result<String, ApiError> {
    q.stream_id
        .ok_or_else(|| ApiError::malformed("the stream_id query parameter is required"))
}

async fn configuration(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        &transmitter(&s)?.configuration(),
    ))
}

async fn create(
    State(s): State<AppState>,
    Caller(p): Caller,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let v = transmitter(&s)?.create_stream(&p, &body).await?;
    Ok(json_response(StatusCode::CREATED, &v))
}

async fn read(
    State(s): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let ssf = transmitter(&s)?;
    let v = match q.stream_id {
        Some(id) => ssf.stream(&p, &id)?,
        None => Value::Array(ssf.streams(&p)?),
    };
    Ok(json_response(StatusCode::OK, &v))
}

async fn update(
    State(s): State<AppState>,
    Caller(p): Caller,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let v = transmitter(&s)?.update_stream(&p, &body).await?;
    Ok(json_response(StatusCode::OK, &v))
}

async fn replace(
    State(s): State<AppState>,
    Caller(p): Caller,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let v = transmitter(&s)?.replace_stream(&p, &body).await?;
    Ok(json_response(StatusCode::OK, &v))
}

async fn delete(
    State(s): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<StatusCode, ApiError> {
    let ssf = transmitter(&s)?;
    ssf.delete_stream(&p, &required(q)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn status(
    State(s): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let ssf = transmitter(&s)?;
    let v = ssf.status(&p, &required(q)?)?;
    Ok(json_response(StatusCode::OK, &v))
}

async fn set_status(
    State(s): State<AppState>,
    Caller(p): Caller,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let v = transmitter(&s)?.set_status(&p, &body).await?;
    Ok(json_response(StatusCode::OK, &v))
}

async fn verify(
    State(s): State<AppState>,
    Caller(p): Caller,
    ApiJson(body): ApiJson<Value>,
) -> Result<StatusCode, ApiError> {
    transmitter(&s)?.verify(&p, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// RFC 8936 §2.4.4: a request the transmitter cannot process.
fn invalid_request(e: DomainError) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"err": "invalid_request", "description": e.detail}),
    )
}

async fn poll(
    State(s): State<AppState>,
    Caller(p): Caller,
    ApiPath(stream_id): ApiPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ssf = transmitter(&s)?;
    let req = match PollRequest::parse(&body) {
        Ok(r) => r,
        Err(e) => return Ok(invalid_request(e)),
    };
    match ssf.poll(&p, &stream_id, req).await {
        Ok(r) => Ok(json_response(StatusCode::OK, &r.to_json())),
        Err(e) if e.kind == ErrorKind::Malformed => Ok(invalid_request(e)),
        Err(e) => Err(e.into()),
    }
}
