//! `/pki/*`: CA certificates, the CRL and the OCSP responder (RFC 6960 GET and POST).

use axum::Router;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use base64::Engine as _;
use bytes::Bytes;

use super::AppState;
use super::error::{ApiError, ApiPath};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/pki/ca", get(ca_chain))
        .route("/pki/ca/root.pem", get(root_pem))
        .route("/pki/issuing.crt", get(issuing_der))
        .route("/pki/crl", get(crl))
        .route("/pki/ocsp", axum::routing::post(ocsp_post))
        .route("/pki/ocsp/{*request}", get(ocsp_get))
}

fn with_type(
    body: impl Into<axum::body::Body>,
    content_type: &'static str,
    max_age: u32,
) -> Response {
    let mut r = Response::new(body.into());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    r
}

/// The issuing CA followed by the root, PEM.
async fn ca_chain(State(s): State<AppState>) -> Response {
    let issuer = s.domain.pki().issuer();
    with_type(
        issuer.chain_pem(),
        "application/pem-certificate-chain",
        3600,
    )
}

/// The root CA alone, PEM: the trust anchor.
async fn root_pem(State(s): State<AppState>) -> Response {
    with_type(
        s.domain.pki().issuer().root().to_pem(),
        "application/x-pem-file",
        3600,
    )
}

/// The issuing CA certificate, DER (authorityInfoAccess caIssuers).
async fn issuing_der(State(s): State<AppState>) -> Response {
    with_type(
        s.domain.pki().issuer().certificate().der().to_vec(),
        "application/pkix-cert",
        3600,
    )
}

async fn crl(State(s): State<AppState>) -> Result<Response, ApiError> {
    let der = s.domain.crl().await?;
    Ok(with_type(der, "application/pkix-crl", 60))
}

fn ocsp_response(der: Vec<u8>) -> Response {
    with_type(der, "application/ocsp-response", 0)
}

async fn ocsp_post(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.is_empty() && !ct.starts_with("application/ocsp-request") {
        return Err(ApiError::http(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "expected application/ocsp-request",
        ));
    }
    Ok(ocsp_response(s.domain.ocsp(&body)))
}

async fn ocsp_get(State(s): State<AppState>, ApiPath(request): ApiPath<String>) -> Response {
    // RFC 6960 appendix A.1: url-encoding of base64 of the DER request
    let decoded = percent_encoding::percent_decode_str(&request).decode_utf8_lossy();
    let b64: String = decoded.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim_end_matches('='))
        });
    match der {
        Ok(der) if der.len() <= 4096 => ocsp_response(s.domain.ocsp(&der)),
        _ => ocsp_response(postern_certs::ocsp::error_response(
            postern_certs::ocsp::OcspResponseStatus::MalformedRequest,
        )),
    }
}
