//! The HTTP layer: extract, call the domain, render. No decisions are made here.
//!
//! [`router`] is the HTTPS application (health, PKI, admin API); [`plain_router`] is what the
//! plain-HTTP listener serves (CRL, OCSP, CA certificates, health), because relying parties
//! fetch revocation data without TLS.

pub mod admin;
pub mod auth;
pub mod error;
pub mod pki;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use postern_api::Health;

use crate::domain::Domain;
use error::ApiError;

/// Shared state handed to every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The domain.
    pub domain: Arc<Domain>,
}

/// The HTTPS application.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .merge(common_routes())
        .merge(admin::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(error::panic_response))
        .with_state(state)
}

/// The plain-HTTP application: revocation data and CA certificates only.
pub fn plain_router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .merge(common_routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(error::panic_response))
        .with_state(state)
}

fn common_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(pki::routes())
}

async fn healthz() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
    })
}

async fn readyz(State(s): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    s.domain.ready().await?;
    Ok(axum::Json(Health {
        status: "ok".into(),
    }))
}
