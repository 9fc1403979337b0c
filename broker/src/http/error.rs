//! The one place where errors become HTTP: `application/problem+json` (RFC 9457) with a
//! `type` per error kind. Internal errors get a generic body and a full log line.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use postern_api::{PROBLEM_JSON, PROBLEM_TYPE_PREFIX, Problem};

use crate::domain::{DomainError, ErrorKind};

/// An error on its way to the wire.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    detail: String,
}

impl ApiError {
    /// An error with an explicit status and kind name (HTTP-level failures: unknown route,
    /// wrong method, body too large, wrong media type).
    pub fn http(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            detail: detail.into(),
        }
    }

    /// A malformed request.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::http(StatusCode::BAD_REQUEST, "malformed", detail)
    }
}

fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Malformed
        | ErrorKind::BadCsr
        | ErrorKind::BadNonce
        | ErrorKind::BadAttestation => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict | ErrorKind::AlreadyRevoked => StatusCode::CONFLICT,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        if e.kind == ErrorKind::Internal {
            tracing::error!(error = %e, "internal error");
        }
        ApiError {
            status: status_of(e.kind),
            kind: e.kind.as_str(),
            detail: e.detail,
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        let status = r.status();
        let kind = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            _ => "malformed",
        };
        ApiError::http(status, kind, r.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        let status = r.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload-too-large"
        } else {
            "malformed"
        };
        ApiError::http(status, kind, r.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::malformed(r.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        ApiError::malformed(r.body_text())
    }
}

fn title(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_owned()
}

impl ApiError {
    /// The problem document this error is sent as.
    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!("{PROBLEM_TYPE_PREFIX}{}", self.kind),
            title: title(self.status),
            status: self.status.as_u16(),
            detail: Some(self.detail.clone()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.problem();
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (self.status, bytes).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"postern\""),
            );
        }
        resp
    }
}

/// JSON body extractor whose rejections are problem documents.
#[derive(Debug, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Query extractor whose rejections are problem documents.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Path extractor whose rejections are problem documents.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::http(StatusCode::NOT_FOUND, "not-found", "no such resource")
}

/// Known routes, wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::http(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "method not allowed on this resource",
    )
}

/// A panic caught by the panic layer: a generic 500 problem (the panic is logged).
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::http(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
    .into_response()
}
