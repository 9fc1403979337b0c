//! The HTTP layer: extract, call the domain, render. No decisions are made here.
//!
//! [`router`] is the HTTPS application (health, PKI, admin API); [`plain_router`] is what the
//! plain-HTTP listener serves (CRL, OCSP, CA certificates, health), because relying parties
//! fetch revocation data without TLS.

pub mod acme;
pub mod admin;
pub mod auth;
pub mod connectors;
pub mod error;
pub mod feed;
pub mod pki;
pub mod posture;
pub mod profiles;
pub mod scep;
pub mod scep_admin;
pub mod scim;
pub mod ssf;
pub mod webhooks;

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
    /// ACME.
    pub acme: Arc<crate::domain::acme::Acme>,
    /// Posture, routing, policy.
    pub posture: Arc<crate::domain::posture::Posture>,
    /// The SSF transmitter, when the broker runs one.
    pub ssf: Option<Arc<crate::domain::ssf::Ssf>>,
    /// The MDM connectors, when the broker runs them.
    pub connectors: Option<Arc<crate::connectors::Connectors>>,
    /// The key that signs configuration profiles (made on first use).
    pub profile_signing: Arc<crate::domain::profiles::ProfileSigning>,
    /// The SCEP provisioners and their challenges.
    pub scep: Arc<crate::domain::scep::Scep>,
}

impl AppState {
    /// The state for a domain, its ACME service and its posture service.
    pub fn new(
        domain: Arc<Domain>,
        acme: Arc<crate::domain::acme::Acme>,
        posture: Arc<crate::domain::posture::Posture>,
    ) -> Self {
        let scep = Arc::new(crate::domain::scep::Scep::defaults(Arc::clone(&domain)));
        AppState {
            domain,
            acme,
            posture,
            ssf: None,
            connectors: None,
            profile_signing: Arc::default(),
            scep,
        }
    }

    /// The same state with an SSF transmitter.
    #[must_use]
    pub fn with_ssf(mut self, ssf: Arc<crate::domain::ssf::Ssf>) -> Self {
        self.ssf = Some(ssf);
        self
    }

    /// The same state with the MDM connectors.
    #[must_use]
    pub fn with_connectors(mut self, connectors: Arc<crate::connectors::Connectors>) -> Self {
        self.connectors = Some(connectors);
        self
    }

    /// The same state with the configured SCEP provisioners.
    #[must_use]
    pub fn with_scep(mut self, scep: Arc<crate::domain::scep::Scep>) -> Self {
        self.scep = scep;
        self
    }
}

/// How much of an oversized body is read (and dropped) before the 413 goes out, so that clients
/// that do not expect an early answer (curl over HTTP/1.1 and HTTP/2) receive it.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Reads the whole request body before any handler or extractor answers: a 401 or 413 sent
/// while the client is still uploading makes several clients (curl 7.88 among them) report a
/// transport error instead of the answer.
async fn read_body_first(
    State(limit): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use http_body_util::BodyExt as _;
    let (parts, body) = req.into_parts();
    // MDM webhook deliveries have their own, larger limit
    let limit = if parts.uri.path().starts_with("/webhooks/") {
        limit.max(crate::domain::webhooks::MAX_BODY)
    } else {
        limit
    };
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            if parts.uri.path().starts_with("/scim/") {
                return scim::unreadable();
            }
            return ApiError::malformed("the request body could not be read").into_response();
        };
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= limit {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
    }
    if seen > limit {
        if parts.uri.path().starts_with("/scim/") {
            return scim::too_large(limit);
        }
        return ApiError::http(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("request body larger than {limit} bytes"),
        )
        .into_response();
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(buf.freeze()),
    ))
    .await
}

/// The HTTPS application.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    finish(
        common_routes()
            .merge(admin::routes())
            .merge(acme::routes())
            .merge(auth::routes())
            .merge(posture::routes())
            .merge(feed::routes())
            .merge(ssf::routes())
            .merge(webhooks::routes())
            .merge(connectors::routes())
            .merge(scim::routes())
            .merge(profiles::routes())
            .merge(scep_admin::routes())
            .merge(scep::routes()),
        state,
        max_body_bytes,
    )
}

/// The plain-HTTP application: revocation data and CA certificates only.
pub fn plain_router(state: AppState, max_body_bytes: usize) -> Router {
    // SCEP clients commonly speak plain HTTP: their messages are signed and encrypted
    finish(common_routes().merge(scep::routes()), state, max_body_bytes)
}

/// Problem documents for unknown routes and methods, body limits, tracing, and a panic guard.
fn finish(routes: Router<AppState>, state: AppState, max_body_bytes: usize) -> Router {
    routes
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            max_body_bytes,
            read_body_first,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
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

/// The span of a request, as tower-http's default (debug level, method, path, version) but
/// with one-time secrets left out of the path and the query not logged.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %req.method(),
        path = %profiles::loggable_path(req.uri().path()),
        version = ?req.version(),
    )
}
