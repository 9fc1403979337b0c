//! The SCEP protocol endpoints (RFC 8894) at `/scep/{provisioner}` and
//! `/scep/{provisioner}/pkiclient.exe`, by GET and POST: `GetCACaps`, `GetCACert` and
//! `PKIOperation`. Answers are in SCEP's own formats (text, degenerate PKCS#7, `CertRep`), never
//! problem documents: a message that does not parse gets 400 text, a refusal after the signer
//! was read gets a signed FAILURE `CertRep` with its failInfo.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use postern_certs::scep::{
    ContentEncryption, DigestAlgorithm, FailInfo, Inner, MessageType, Ra, Reply, ReplyOptions,
    ReplyTo, cert_rep, parse_request,
};
use ring::rand::{SecureRandom as _, SystemRandom};

use super::AppState;
use crate::domain::Principal;
use crate::domain::scep::EnrollError;

/// What `GetCACaps` answers, one capability a line.
pub const CA_CAPS: &str = "POSTPKIOperation\nSHA-256\nSHA-512\nAES\nDES3\nRenewal\nSCEPStandard\n";

/// The SCEP routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/scep/{provisioner}", get(scep).post(scep))
        .route("/scep/{provisioner}/pkiclient.exe", get(scep).post(scep))
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.to_owned(),
    )
        .into_response()
}

async fn scep(
    State(state): State<AppState>,
    Path(provisioner): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    body: Bytes,
) -> Response {
    if state.scep.provisioner(&provisioner).is_none() {
        return text(StatusCode::NOT_FOUND, "no such SCEP provisioner\n");
    }
    let Some(ra) = state.scep.ra().cloned() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "SCEP is not configured\n");
    };
    match query.get("operation").map(String::as_str) {
        Some("GetCACaps") => text(StatusCode::OK, CA_CAPS),
        Some("GetCACert") => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-x509-ca-ra-cert")],
            ra.ca_certs(),
        )
            .into_response(),
        Some("PKIOperation") => {
            let message = if method == Method::POST {
                body.to_vec()
            } else {
                let Some(m) = query.get("message") else {
                    return text(StatusCode::BAD_REQUEST, "missing message\n");
                };
                let compact: String = m.chars().filter(|c| !c.is_whitespace()).collect();
                match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
                    Ok(m) => m,
                    Err(_) => return text(StatusCode::BAD_REQUEST, "message is not base64\n"),
                }
            };
            pki_operation(&state, &provisioner, &ra, &message).await
        }
        Some(_) => text(StatusCode::BAD_REQUEST, "unknown operation\n"),
        None => text(StatusCode::BAD_REQUEST, "missing operation\n"),
    }
}

/// The answer options a request's own algorithms call for: 3DES only for a client that used
/// (3)DES, SHA-1 only for one that signed with SHA-1.
fn options_for(to: &ReplyTo, encryption: Option<ContentEncryption>) -> ReplyOptions {
    let mut o = ReplyOptions::default();
    if matches!(
        encryption,
        Some(ContentEncryption::DesCbc | ContentEncryption::DesEde3Cbc)
    ) {
        o.encryption = ContentEncryption::DesEde3Cbc;
    }
    if to.request_digest == Some(DigestAlgorithm::Sha1) {
        o.digest = DigestAlgorithm::Sha1;
    }
    o
}

async fn pki_operation(state: &AppState, provisioner: &str, ra: &Ra, message: &[u8]) -> Response {
    match parse_request(message, ra) {
        Err(rejection) => {
            let info = rejection.fail_info();
            tracing::info!(
                provisioner,
                error = %rejection.error,
                fail_info = info.as_str(),
                "scep request refused"
            );
            match &rejection.reply_to {
                Some(to) => failure(to, info, ra, None),
                None => text(StatusCode::BAD_REQUEST, "not a SCEP message\n"),
            }
        }
        Ok(m) => {
            let to = m.reply_to();
            let enc = Some(m.content_encryption);
            let now = state.scep.domain().clock().now();
            let result = match (m.message_type, &m.inner) {
                (MessageType::PkcsReq, Inner::Csr(csr)) => {
                    state
                        .scep
                        .enroll(provisioner, &m.transaction_id, csr, now)
                        .await
                }
                (MessageType::RenewalReq, Inner::Csr(csr)) => {
                    state
                        .scep
                        .renew(provisioner, &m.transaction_id, &m.signer_cert_der, csr, now)
                        .await
                }
                _ => {
                    // polling, GetCert and GetCRL are not served yet
                    tracing::info!(
                        provisioner,
                        message_type = m.message_type.as_str(),
                        transaction_id = %m.transaction_id,
                        "scep request refused: message type not served"
                    );
                    return failure(&to, FailInfo::BadRequest, ra, enc);
                }
            };
            match result {
                Ok(issued) => {
                    tracing::info!(
                        provisioner,
                        transaction_id = %m.transaction_id,
                        serial = %issued.record.serial,
                        "scep certificate issued"
                    );
                    if let Err(e) = state
                        .posture
                        .credential_issued(&Principal::system(), &issued.record)
                        .await
                    {
                        // issued and stored; the posture catches up at the next event
                        tracing::error!(serial = %issued.record.serial, error = %e, "posture not updated");
                    }
                    let certificates: Vec<Vec<u8>> = pem::parse_many(&issued.chain_pem)
                        .map(|v| v.into_iter().map(pem::Pem::into_contents).collect())
                        .unwrap_or_default();
                    reply(
                        &to,
                        Reply::Success {
                            certificates: &certificates,
                            crls: &[],
                        },
                        ra,
                        enc,
                    )
                }
                Err(EnrollError::Issue(e)) => {
                    tracing::error!(provisioner, error = %e, "scep issuance failed");
                    failure(&to, FailInfo::BadRequest, ra, enc)
                }
                Err(e) => {
                    // the challenge itself is never logged
                    tracing::info!(provisioner, transaction_id = %m.transaction_id, error = %e, "scep request refused");
                    failure(&to, FailInfo::BadRequest, ra, enc)
                }
            }
        }
    }
}

fn failure(
    to: &ReplyTo,
    info: FailInfo,
    ra: &Ra,
    encryption: Option<ContentEncryption>,
) -> Response {
    reply(to, Reply::Failure(info), ra, encryption)
}

fn reply(
    to: &ReplyTo,
    answer: Reply<'_>,
    ra: &Ra,
    encryption: Option<ContentEncryption>,
) -> Response {
    let mut nonce = [0u8; 16];
    if SystemRandom::new().fill(&mut nonce).is_err() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no randomness\n");
    }
    match cert_rep(to, answer, ra, &nonce, options_for(to, encryption)) {
        Ok(der) => pki_message(der),
        Err(e) => {
            tracing::error!(error = %e, "scep: building a CertRep");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

fn pki_message(der: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-pki-message")],
        der,
    )
        .into_response()
}
