//! `/v1/admin/*`: certificates, tenants, tokens and the audit log, for admins.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;

use postern_api as api;
use postern_certs::crl::RevocationReason;
use postern_certs::names::SubjectName;

use crate::domain::pki::IssueCommand;
use crate::model::{self, CertificateStatus, Role};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/certificates", post(issue))
        .route("/v1/admin/certificates/{serial}", get(certificate))
        .route("/v1/admin/certificates/{serial}/revoke", post(revoke))
        .route("/v1/admin/tenants", post(create_tenant).get(list_tenants))
        .route("/v1/admin/tokens", post(create_token).get(list_tokens))
        .route("/v1/admin/tokens/{id}/revoke", post(revoke_token))
        .route("/v1/admin/audit", get(audit))
        .route("/v1/admin/audit/verify", get(audit_verify))
        .route("/v1/admin/devices", post(register_device).get(list_devices))
        .route("/v1/admin/devices/{id}", get(device))
        .route("/v1/admin/acme/{provisioner}/eab", post(create_eab))
}

async fn register_device(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<crate::domain::devices::NewDevice>,
) -> Result<(StatusCode, axum::Json<model::Device>), ApiError> {
    let d = s.domain.register_device(&who, req).await?;
    s.posture.device_registered(&who, &d).await?;
    // a SCIM user of that name gives the device their addresses (and their deactivation)
    crate::domain::scim::Scim::new(&s.posture)
        .new_device(&who, &d)
        .await;
    Ok((StatusCode::CREATED, axum::Json(d)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceQuery {
    tenant: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_devices(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<DeviceQuery>,
) -> Result<axum::Json<Vec<model::Device>>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(axum::Json(s.domain.devices(
        &who,
        q.tenant.as_deref(),
        q.after.as_deref(),
        limit,
    )?))
}

async fn device(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> Result<axum::Json<model::Device>, ApiError> {
    Ok(axum::Json(s.domain.device(
        &who,
        q.tenant.as_deref(),
        &id,
    )?))
}

async fn create_eab(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(provisioner): ApiPath<String>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let (kid, key) = s.acme.create_eab(&who, &provisioner).await.map_err(|e| {
        let kind = match e.problem {
            crate::domain::acme::AcmeProblem::Unauthorized => crate::domain::ErrorKind::Forbidden,
            crate::domain::acme::AcmeProblem::ServerInternal => crate::domain::ErrorKind::Internal,
            _ if e.not_found => crate::domain::ErrorKind::NotFound,
            _ => crate::domain::ErrorKind::Malformed,
        };
        ApiError::from(crate::domain::DomainError::new(kind, e.detail))
    })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "kid": kid, "hmac_key": key, "provisioner": provisioner })),
    ))
}

pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A stored certificate as the API shows it.
pub fn certificate_view(
    r: &model::CertificateRecord,
    chain_pem: Option<String>,
) -> api::Certificate {
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &r.der_b64)
        .unwrap_or_default();
    let (status, revoked_at, reason) = match &r.status {
        CertificateStatus::Good => ("good", None, None),
        CertificateStatus::Revoked { revoked_at, reason } => (
            "revoked",
            Some(rfc3339(*revoked_at)),
            Some(reason.as_str().to_owned()),
        ),
    };
    api::Certificate {
        serial: r.serial.clone(),
        tenant: r.tenant.clone(),
        profile: r.profile.clone(),
        status: status.into(),
        revoked_at,
        revocation_reason: reason,
        common_name: r.common_name.clone(),
        names: r.names.iter().map(ToString::to_string).collect(),
        not_before: rfc3339(r.not_before),
        not_after: rfc3339(r.not_after),
        certificate_pem: pem::encode(&pem::Pem::new("CERTIFICATE", der)),
        chain_pem,
    }
}

async fn issue(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<api::IssueCertificateRequest>,
) -> Result<(StatusCode, axum::Json<api::Certificate>), ApiError> {
    let names = req
        .names
        .map(|ns| {
            ns.iter()
                .map(|n| {
                    SubjectName::parse_tagged(n).map_err(|e| ApiError::malformed(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let issued = s
        .domain
        .issue_from_csr(
            &who,
            IssueCommand {
                tenant: req.tenant,
                csr: req.csr.into_bytes(),
                profile: req.profile,
                names,
                common_name: req.common_name,
                validity: req.validity_seconds.map(Duration::from_secs),
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(certificate_view(&issued.record, Some(issued.chain_pem))),
    ))
}

async fn certificate(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(serial): ApiPath<String>,
) -> Result<axum::Json<api::Certificate>, ApiError> {
    let r = s.domain.certificate(&who, &serial)?;
    Ok(axum::Json(certificate_view(&r, None)))
}

async fn revoke(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(serial): ApiPath<String>,
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::Json<api::Certificate>, ApiError> {
    // the body is optional: an empty one means reason `unspecified`
    let body = body?;
    let req: api::RevokeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        api::RevokeRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::malformed(format!("revoke request: {e}")))?
    };
    let reason = match req.reason {
        None => RevocationReason::Unspecified,
        Some(r) => r
            .parse::<RevocationReason>()
            .map_err(|e| ApiError::malformed(e.to_string()))?,
    };
    let r = s.posture.revoke_credential(&who, &serial, reason).await?;
    Ok(axum::Json(certificate_view(&r, None)))
}

fn tenant_view(t: &model::Tenant) -> api::Tenant {
    api::Tenant {
        id: t.id.clone(),
        name: t.name.clone(),
        created_at: rfc3339(t.created_at),
    }
}

async fn create_tenant(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<api::CreateTenantRequest>,
) -> Result<(StatusCode, axum::Json<api::Tenant>), ApiError> {
    let t = s.domain.create_tenant(&who, &req.id, &req.name).await?;
    Ok((StatusCode::CREATED, axum::Json(tenant_view(&t))))
}

async fn list_tenants(
    State(s): State<AppState>,
    Caller(who): Caller,
) -> Result<axum::Json<Vec<api::Tenant>>, ApiError> {
    Ok(axum::Json(
        s.domain.tenants(&who)?.iter().map(tenant_view).collect(),
    ))
}

fn token_view(t: &model::TokenRecord, secret: Option<String>) -> api::Token {
    api::Token {
        id: t.id.clone(),
        tenant: t.tenant.clone(),
        role: t.role.as_str().into(),
        label: t.label.clone(),
        created_at: rfc3339(t.created_at),
        revoked_at: t.revoked_at.map(rfc3339),
        token: secret,
    }
}

async fn create_token(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<api::CreateTokenRequest>,
) -> Result<(StatusCode, axum::Json<api::Token>), ApiError> {
    let role: Role = req.role.parse().map_err(ApiError::malformed)?;
    let t = s
        .domain
        .create_token(&who, req.tenant.as_deref(), role, &req.label)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(token_view(&t.record, Some(t.token))),
    ))
}

#[derive(Debug, Deserialize)]
struct TenantQuery {
    tenant: Option<String>,
}

async fn list_tokens(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> Result<axum::Json<Vec<api::Token>>, ApiError> {
    let list = s.domain.tokens(&who, q.tenant.as_deref())?;
    Ok(axum::Json(
        list.iter().map(|t| token_view(t, None)).collect(),
    ))
}

async fn revoke_token(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<api::Token>, ApiError> {
    let t = s.domain.revoke_token(&who, &id).await?;
    Ok(axum::Json(token_view(&t, None)))
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    from: Option<u64>,
    limit: Option<usize>,
}

async fn audit(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<axum::Json<Vec<api::AuditEntry>>, ApiError> {
    let entries = s
        .domain
        .audit_page(&who, q.from.unwrap_or(1), q.limit.unwrap_or(100))?;
    Ok(axum::Json(
        entries
            .into_iter()
            .map(|e| api::AuditEntry {
                seq: e.seq,
                time: rfc3339(e.time),
                tenant: e.tenant,
                actor: e.actor,
                action: e.action,
                subject: e.subject,
                details: e.details,
                prev_hash: e.prev_hash,
                hash: e.hash,
            })
            .collect(),
    ))
}

async fn audit_verify(
    State(s): State<AppState>,
    Caller(who): Caller,
) -> Result<axum::Json<crate::domain::audit::ChainReport>, ApiError> {
    Ok(axum::Json(s.domain.verify_audit(&who)?))
}
