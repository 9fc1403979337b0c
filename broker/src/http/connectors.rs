//! `/v1/admin/connectors`: the MDM connectors' status, and a sync on demand.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};

use crate::connectors::ConnectorStatus;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiPath};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/connectors", get(list))
        .route("/v1/admin/connectors/{name}/sync", post(sync))
}

async fn list(
    State(s): State<AppState>,
    Caller(who): Caller,
) -> Result<axum::Json<Vec<ConnectorStatus>>, ApiError> {
    let Some(c) = &s.connectors else {
        who.require_admin()?;
        return Ok(axum::Json(Vec::new()));
    };
    Ok(axum::Json(c.statuses(&who)?))
}

async fn sync(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<ConnectorStatus>, ApiError> {
    let Some(c) = &s.connectors else {
        who.require_admin()?;
        return Err(crate::domain::DomainError::new(
            crate::domain::ErrorKind::NotFound,
            format!("no connector {name}"),
        )
        .into());
    };
    Ok(axum::Json(c.sync_now(&who, &name).await?))
}
