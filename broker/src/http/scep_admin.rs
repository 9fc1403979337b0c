//! SCEP administration on the wire: `POST /v1/scep/{provisioner}/challenges` (admin or mdm
//! bearer tokens of the provisioner's tenant) makes a one-time dynamic challenge for a device
//! (`domain::scep::challenge`). The SCEP protocol endpoints are not here.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;

use crate::domain::scep::IssuedChallenge;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/scep/{provisioner}/challenges", post(create))
}

/// `{device}`: a device id, or a serial, UDID, IMEI or hardware id the inventory knows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewChallenge {
    device: String,
}

async fn create(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(provisioner): ApiPath<String>,
    ApiJson(req): ApiJson<NewChallenge>,
) -> Result<(StatusCode, axum::Json<IssuedChallenge>), ApiError> {
    let issued = s
        .scep
        .create_challenge(&who, &provisioner, &req.device)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(issued)))
}
