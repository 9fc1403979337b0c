//! Who is calling: a bearer token, or else a gateway's TLS client certificate; and
//! `GET /v1/whoami`, which answers with the principal.
//!
//! The TLS listener puts the client certificate of a connection into every request on it as a
//! [`ClientCertificate`] extension (`server::serve_tls`). A request with an `Authorization`
//! header is authenticated by its bearer token alone; one without is authenticated by the
//! client certificate, if the handshake presented one.

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum::routing::get;

use crate::domain::{DomainError, ErrorKind, Principal};

use super::AppState;
use super::error::ApiError;

/// The leaf certificate (DER) the client presented in the TLS handshake of the connection a
/// request came on. Only the TLS listener inserts it; requests cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate(pub Arc<[u8]>);

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return match parts.extensions.get::<ClientCertificate>() {
                Some(cert) => Ok(Caller(state.domain.authenticate_certificate(&cert.0)?)),
                None => Err(ApiError::from(DomainError::new(
                    ErrorKind::Unauthorized,
                    "a bearer token or a gateway client certificate is required",
                ))),
            };
        };
        let missing = || {
            ApiError::from(DomainError::new(
                ErrorKind::Unauthorized,
                "a bearer token is required",
            ))
        };
        let value = value.to_str().map_err(|_| missing())?;
        let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(missing());
        }
        let p = state.domain.authenticate(token.trim())?;
        Ok(Caller(p))
    }
}

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/whoami", get(whoami))
}

/// `GET /v1/whoami`: the principal the request authenticated as, for any role.
async fn whoami(Caller(who): Caller) -> axum::Json<postern_api::Whoami> {
    axum::Json(postern_api::Whoami {
        tenant: who.tenant,
        role: who.role.as_str().to_owned(),
        actor: who.actor_id,
    })
}
