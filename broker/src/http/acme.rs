//! `/acme/{provisioner}/*`: RFC 8555 on the wire. Every response carries a fresh
//! `Replay-Nonce` and a `Link: <directory>;rel="index"`; errors are
//! `urn:ietf:params:acme:error:*` problem documents.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::domain::acme::model::{Authz, Challenge, Order};
use crate::domain::acme::{Acme, AcmeError, AcmeProblem, Authed, Base};

use super::AppState;
use super::admin::rfc3339;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/acme/{p}/directory", get(directory))
        .route(
            "/acme/{p}/new-nonce",
            get(new_nonce_get).head(new_nonce_head),
        )
        .route("/acme/{p}/new-account", post(new_account))
        .route("/acme/{p}/account/{id}", post(account))
        .route("/acme/{p}/account/{id}/orders", post(account_orders))
        .route("/acme/{p}/key-change", post(key_change))
        .route("/acme/{p}/new-order", post(new_order))
        .route("/acme/{p}/order/{id}", post(order))
        .route("/acme/{p}/order/{id}/finalize", post(finalize))
        .route("/acme/{p}/authz/{id}", post(authz))
        .route("/acme/{p}/chall/{authz}/{kind}", post(challenge))
        .route("/acme/{p}/cert/{serial}", post(certificate))
        .route("/acme/{p}/revoke-cert", post(revoke))
}

/// Where the request was sent: the base URL (from `Host` or the HTTP/2 authority) and the full
/// URL without query, which the JWS `url` must equal.
#[derive(Debug, Clone)]
pub struct Target {
    base: Base,
    url: String,
}

impl FromRequestParts<AppState> for Target {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .filter(|h| {
                !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()) && !h.contains('/')
            });
        let Some(host) = host else {
            return Err(problem_response(
                &AcmeError::malformed("the request names no host"),
                None,
                None,
            ));
        };
        let base = Base(format!("https://{host}"));
        let url = format!("{}{}", base.0, parts.uri.path());
        Ok(Target { base, url })
    }
}

fn acme(s: &AppState) -> &Arc<Acme> {
    &s.acme
}

fn status_of(e: &AcmeError) -> StatusCode {
    if e.not_found {
        return StatusCode::NOT_FOUND;
    }
    if let Some(s) = e.status.and_then(|s| StatusCode::from_u16(s).ok()) {
        return s;
    }
    match e.problem {
        AcmeProblem::Unauthorized
        | AcmeProblem::OrderNotReady
        | AcmeProblem::ExternalAccountRequired => StatusCode::FORBIDDEN,
        AcmeProblem::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        AcmeProblem::ServerInternal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A problem document as JSON (also used inside challenges and orders).
fn problem_json(e: &AcmeError) -> Value {
    let mut v = json!({
        "type": e.problem.urn(),
        "detail": e.detail,
        "status": status_of(e).as_u16(),
    });
    if e.problem == AcmeProblem::BadSignatureAlgorithm {
        // RFC 8555 §6.2: the problem lists the algorithms that are accepted
        v["algorithms"] = json!(crate::domain::acme::jws::ALGORITHMS);
    }
    if !e.subproblems.is_empty() {
        v["subproblems"] = e
            .subproblems
            .iter()
            .map(|s| {
                json!({
                    "type": s.problem.urn(),
                    "detail": s.detail,
                    "identifier": { "type": s.identifier_type, "value": s.identifier_value },
                })
            })
            .collect();
    }
    v
}

fn problem_response(e: &AcmeError, nonce: Option<String>, index: Option<String>) -> Response {
    if e.problem == AcmeProblem::ServerInternal {
        tracing::error!(error = %e, "acme internal error");
    } else {
        tracing::debug!(problem = e.problem.as_str(), detail = %e.detail, "acme request refused");
    }
    let mut r = (status_of(e), problem_json(e).to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    decorate(r.headers_mut(), nonce, index);
    r
}

fn decorate(h: &mut HeaderMap, nonce: Option<String>, index: Option<String>) {
    if let Some(n) = nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
        h.insert("replay-nonce", n);
    }
    if let Some(i) = index.and_then(|i| HeaderValue::from_str(&format!("<{i}>;rel=\"index\"")).ok())
    {
        h.append(header::LINK, i);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A response builder that adds the nonce and index link.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    content_type: &'static str,
    location: Option<String>,
    links: Vec<String>,
    retry_after: bool,
}

impl Reply {
    fn raw(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Self {
        Reply {
            status,
            body,
            content_type,
            location: None,
            links: Vec::new(),
            retry_after: false,
        }
    }

    fn json(status: StatusCode, v: &Value) -> Self {
        Reply::raw(status, v.to_string().into_bytes(), "application/json")
    }

    fn location(mut self, l: String) -> Self {
        self.location = Some(l);
        self
    }
}

fn finish(s: &AppState, p: &str, t: &Target, r: Result<Reply, AcmeError>) -> Response {
    let nonce = acme(s).new_nonce().ok();
    let index = Some(t.base.url(p, "directory"));
    match r {
        Ok(reply) => {
            let mut resp = (reply.status, reply.body).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(reply.content_type),
            );
            if let Some(l) = reply.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                h.insert(header::LOCATION, l);
            }
            for l in reply.links {
                if let Ok(v) = HeaderValue::from_str(&l) {
                    h.append(header::LINK, v);
                }
            }
            if reply.retry_after {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            decorate(h, nonce, index);
            resp
        }
        Err(e) => problem_response(&e, nonce, index),
    }
}

/// Checks the media type and authenticates the JWS.
fn authenticate(
    s: &AppState,
    p: &str,
    t: &Target,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Authed, AcmeError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.split(';').next().map(str::trim) != Some("application/jose+json") {
        return Err(AcmeError::malformed(
            "the Content-Type must be application/jose+json",
        ));
    }
    acme(s).authenticate(p, &t.base, &t.url, body)
}

async fn directory(State(s): State<AppState>, Path(p): Path<String>, t: Target) -> Response {
    let r = acme(&s)
        .directory(&p, &t.base)
        .map(|d| Reply::json(StatusCode::OK, &d));
    // a directory carries no nonce of its own need, but clients may take one
    finish(&s, &p, &t, r)
}

async fn new_nonce_head(State(s): State<AppState>, Path(p): Path<String>, t: Target) -> Response {
    nonce_reply(&s, &p, &t, StatusCode::OK)
}

async fn new_nonce_get(State(s): State<AppState>, Path(p): Path<String>, t: Target) -> Response {
    nonce_reply(&s, &p, &t, StatusCode::NO_CONTENT)
}

fn nonce_reply(s: &AppState, p: &str, t: &Target, status: StatusCode) -> Response {
    let r = acme(s)
        .provisioner(p)
        .map(|_| Reply::raw(status, Vec::new(), "application/octet-stream"));
    finish(s, p, t, r)
}

fn account_json(a: &crate::domain::acme::Account, base: &Base) -> Value {
    let mut v = json!({
        "status": a.status,
        "contact": a.contact,
        "orders": base.url(&a.provisioner, &format!("account/{}/orders", a.id)),
        "createdAt": rfc3339(a.created_at),
    });
    if a.eab_kid.is_some() {
        v["externalAccountBinding"] = json!({ "kid": a.eab_kid });
    }
    v
}

async fn new_account(
    State(s): State<AppState>,
    Path(p): Path<String>,
    t: Target,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        let authed = authenticate(&s, &p, &t, &headers, &body)?;
        let (a, created) = acme(&s).new_account(&p, &t.base, &authed).await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(Reply::json(status, &account_json(&a, &t.base))
            .location(t.base.url(&p, &format!("account/{}", a.id))))
    }
    .await;
    finish(&s, &p, &t, r)
}

async fn account(
    State(s): State<AppState>,
    Path((p, id)): Path<(String, String)>,
    t: Target,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        let authed = authenticate(&s, &p, &t, &headers, &body)?;
        let a = acme(&s).update_account(&p, &authed, &id).await?;
        Ok(Reply::json(StatusCode::OK, &account_json(&a, &t.base)).location(t.url.clone()))
    }
    .await;
    finish(&s, &p, &t, r)
}

async fn account_orders(
    State(s): State<AppState>,
    Path((p, id)): Path<(String, String)>,
    t: Target,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        let authed = authenticate(&s, &p, &t, &headers, &body)?;
        let ids = acme(&s).account_orders(&p, &authed, &id)?;
        let urls: Vec<String> = ids
            .iter()
            .map(|o| t.base.url(&p, &format!("order/{o}")))
            .collect();
        Ok(Reply::json(StatusCode::OK, &json!({ "orders": urls })))
    }
    .await;
    finish(&s, &p, &t, r)
}

async fn key_change(
    State(s): State<AppState>,
    Path(p): Path<String>,
    t: Target,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        let authed = authenticate(&s, &p, &t, &headers, &body)?;
        let a = acme(&s).key_change(&p, &t.base, &authed).await?;
        Ok(Reply::json(StatusCode::OK, &account_json(&a, &t.base))
            .location(t.base.url(&p, &format!("account/{}", a.id))))
    }
    .await;
    finish(&s, &p, &t, r)
}

fn order_json(o: &Order, base: &Base) -> Value {
    let p = &o.provisioner;
    let mut v = json!({
        "status": o.status,
        "expires": rfc3339(o.expires),
        "identifiers": o.identifiers,
        "authorizations": o.authorizations.iter().map(|a| base.url(p, &format!("authz/{a}"))).collect::<Vec<_>>(),
        "finalize": base.url(p, &format!("order/{}/finalize", o.id)),
    });
    if let Some(c) = &o.certificate {
        v["certificate"] = json!(base.url(p, &format!("cert/{c}")));
    }
    if let Some(e) = &o.error {
        v["error"] = problem_json(e);
    }
    v
}

fn order_reply(o: &Order, base: &Base, status: StatusCode) -> Reply {
    let mut r = Reply::json(status, &order_json(o, base))
        .location(base.url(&o.provisioner, &format!("order/{}", o.id)));
    r.retry_after = o.status == crate::domain::acme::model::OrderStatus::Processing;
    r
}

async fn new_order(
    State(s): State<AppState>,
    Path(p): Path<String>,
    t: Target,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        let authed = authenticate(&s, &p, &t, &headers, &body)?;
        let o = acme(&s).new_order(&p, &authed).await?;
        Ok(order_reply(&o, &t.base, StatusCode::CREATED))
    }
    .await;
    finish(&s, &p, &t, r)
}

async fn order(
    State(s): State<AppState>,
    Path((p, id)): Path<(String, String)>,
    t: Target,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        let authed = authenticate(&s, &p, &t, &headers, &body)?;
        if !authed.req.is_post_as_get() {
            return Err(AcmeError::malformed(
                "an order is read with POST-as-GET (empty payload)",
            ));
        }
        let o = acme(&s).order(&p, &authed, &id)?;
        Ok(order_reply(&o, &t.base, StatusCode::OK))
    }
    .await;
    finish(&s, &p, &t, r)
}

async fn finalize(
    State(s): State<AppState>,
    Path((p, id)): Path<(String, String)>,
    t: Target,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        let authed = authenticate(&s, &p, &t, &headers, &body)?;
        let o = acme(&s).finalize(&p, &authed, &id).await?;
        Ok(order_reply(&o, &t.base, StatusCode::OK))
    }
    .await;
    finish(&s, &p, &t, r)
}

fn challenge_json(c: &Challenge, authz: &str, p: &str, base: &Base) -> Value {
    let mut v = json!({
        "type": c.type_,
        "url": base.url(p, &format!("chall/{authz}/{}", c.type_)),
        "status": c.status,
        "token": c.token,
    });
    if let Some(t) = c.validated {
        v["validated"] = json!(rfc3339(t));
    }
    if let Some(e) = &c.error {
        v["error"] = problem_json(e);
    }
    v
}

fn authz_json(a: &Authz, base: &Base) -> Value {
    json!({
        "status": a.status,
        "expires": rfc3339(a.expires),
        "identifier": a.identifier,
        "challenges": a.challenges.iter().map(|c| challenge_json(c, &a.id, &a.provisioner, base)).collect::<Vec<_>>(),
    })
}

async fn authz(
    State(s): State<AppState>,
    Path((p, id)): Path<(String, String)>,
    t: Target,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        let authed = authenticate(&s, &p, &t, &headers, &body)?;
        let a = acme(&s).authz(&p, &authed, &id).await?;
        let mut reply = Reply::json(StatusCode::OK, &authz_json(&a, &t.base));
        reply.retry_after = a
            .challenges
            .iter()
            .any(|c| c.status == crate::domain::acme::model::ChallengeStatus::Processing);
        Ok(reply)
    }
    .await;
    finish(&s, &p, &t, r)
}

async fn challenge(
    State(s): State<AppState>,
    Path((p, authz_id, kind)): Path<(String, String, String)>,
    t: Target,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        let authed = authenticate(&s, &p, &t, &headers, &body)?;
        let (a, c) = acme(&s).challenge(&p, &authed, &authz_id, &kind).await?;
        let mut reply = Reply::json(StatusCode::OK, &challenge_json(&c, &a.id, &p, &t.base));
        reply.links.push(format!(
            "<{}>;rel=\"up\"",
            t.base.url(&p, &format!("authz/{}", a.id))
        ));
        reply.retry_after = c.status == crate::domain::acme::model::ChallengeStatus::Processing;
        Ok(reply)
    }
    .await;
    finish(&s, &p, &t, r)
}

async fn certificate(
    State(s): State<AppState>,
    Path((p, serial)): Path<(String, String)>,
    t: Target,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        let authed = authenticate(&s, &p, &t, &headers, &body)?;
        if !authed.req.is_post_as_get() {
            return Err(AcmeError::malformed(
                "a certificate is read with POST-as-GET (empty payload)",
            ));
        }
        let pem = acme(&s).certificate_chain(&p, &authed, &serial)?;
        Ok(Reply::raw(
            StatusCode::OK,
            pem.into_bytes(),
            "application/pem-certificate-chain",
        ))
    }
    .await;
    finish(&s, &p, &t, r)
}

async fn revoke(
    State(s): State<AppState>,
    Path(p): Path<String>,
    t: Target,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        let authed = authenticate(&s, &p, &t, &headers, &body)?;
        acme(&s).revoke(&p, &authed).await?;
        Ok(Reply::raw(
            StatusCode::OK,
            Vec::new(),
            "application/octet-stream",
        ))
    }
    .await;
    finish(&s, &p, &t, r)
}
