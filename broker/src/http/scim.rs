//! `/scim/v2/*`: SCIM 2.0 on the wire (RFC 7644). Bearer tokens of role `scim` (or `admin`);
//! bodies `application/scim+json` or `application/json`; answers `application/scim+json`; every
//! error (401, 404, 413 included) in the SCIM error schema. The only place a
//! [`ScimError`] becomes a status code.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::domain::Principal;
use crate::domain::scim::schema::{self, ResourceKind};
use crate::domain::scim::{ListQuery, Scim, ScimError, ScimStatus, ScimType};

use super::AppState;

/// The SCIM media type.
pub const SCIM_JSON: &str = "application/scim+json";

pub(super) fn routes() -> Router<AppState> {
    const USERS: bool = false;
    const GROUPS: bool = true;
    Router::new()
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(service_provider_config).fallback(method_not_allowed),
        )
        .route(
            "/scim/v2/Schemas",
            get(schemas).fallback(method_not_allowed),
        )
        .route(
            "/scim/v2/Schemas/{id}",
            get(schema_one).fallback(method_not_allowed),
        )
        .route(
            "/scim/v2/ResourceTypes",
            get(resource_types).fallback(method_not_allowed),
        )
        .route(
            "/scim/v2/ResourceTypes/{id}",
            get(resource_type_one).fallback(method_not_allowed),
        )
        .route(
            "/scim/v2/Users",
            get(list::<USERS>)
                .post(create::<USERS>)
                .fallback(method_not_allowed),
        )
        .route(
            "/scim/v2/Users/.search",
            post(search::<USERS>).fallback(method_not_allowed),
        )
        .route(
            "/scim/v2/Users/{id}",
            get(one::<USERS>)
                .put(replace::<USERS>)
                .patch(modify::<USERS>)
                .delete(delete::<USERS>)
                .fallback(method_not_allowed),
        )
        .route(
            "/scim/v2/Groups",
            get(list::<GROUPS>)
                .post(create::<GROUPS>)
                .fallback(method_not_allowed),
        )
        .route(
            "/scim/v2/Groups/.search",
            post(search::<GROUPS>).fallback(method_not_allowed),
        )
        .route(
            "/scim/v2/Groups/{id}",
            get(one::<GROUPS>)
                .put(replace::<GROUPS>)
                .patch(modify::<GROUPS>)
                .delete(delete::<GROUPS>)
                .fallback(method_not_allowed),
        )
        .route(
            "/scim/v2/.search",
            post(search_all).fallback(method_not_allowed),
        )
        .route("/scim/v2", axum::routing::any(not_found))
        .route("/scim/v2/", axum::routing::any(not_found))
        .route("/scim/v2/{*rest}", axum::routing::any(not_found))
}

const fn kind_of<const GROUP: bool>() -> ResourceKind {
    if GROUP {
        ResourceKind::Group
    } else {
        ResourceKind::User
    }
}

/// A SCIM error on its way to the wire.
#[derive(Debug)]
pub struct ScimReply(pub ScimError);

impl From<ScimError> for ScimReply {
    fn from(e: ScimError) -> Self {
        ScimReply(e)
    }
}

fn status_of(s: &ScimStatus) -> StatusCode {
    match s {
        ScimStatus::BadRequest => StatusCode::BAD_REQUEST,
        ScimStatus::Unauthorized => StatusCode::UNAUTHORIZED,
        ScimStatus::Forbidden => StatusCode::FORBIDDEN,
        ScimStatus::NotFound => StatusCode::NOT_FOUND,
        ScimStatus::Conflict => StatusCode::CONFLICT,
        ScimStatus::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ScimStatus::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ScimStatus::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ScimStatus::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ScimStatus::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The body of a SCIM error (RFC 7644 §3.12): `status` as a string.
pub fn error_body(e: &ScimError) -> Value {
    let status = status_of(&e.status);
    let mut v = json!({
        "schemas": [schema::ERROR],
        "status": status.as_u16().to_string(),
        "detail": e.detail,
    });
    if let Some(t) = e.scim_type {
        v["scimType"] = json!(t.as_str());
    }
    v
}

impl IntoResponse for ScimReply {
    fn into_response(self) -> Response {
        let status = status_of(&self.0.status);
        let mut resp = scim_json(status, &error_body(&self.0));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"postern\""),
            );
        }
        resp
    }
}

fn scim_json(status: StatusCode, v: &Value) -> Response {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut resp = (status, bytes).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    resp
}

fn with_etag(mut resp: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// The 413 for a SCIM path (the body limit is checked before routing).
pub(super) fn too_large(limit: usize) -> Response {
    ScimReply(ScimError::new(
        ScimStatus::PayloadTooLarge,
        format!("request body larger than {limit} bytes"),
    ))
    .into_response()
}

/// A body that could not be read, for a SCIM path.
pub(super) fn unreadable() -> Response {
    ScimReply(ScimError::bad(
        ScimType::InvalidSyntax,
        "the request body could not be read",
    ))
    .into_response()
}

async fn not_found() -> ScimReply {
    ScimReply(ScimError::new(
        ScimStatus::NotFound,
        "no such SCIM endpoint",
    ))
}

async fn method_not_allowed() -> Response {
    scim_json(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({
            "schemas": [schema::ERROR],
            "status": "405",
            "detail": "method not supported on this SCIM endpoint",
        }),
    )
}

/// A SCIM client: a bearer token of role scim or admin; and the SCIM base URL it used
/// (`https://host/scim/v2`, for `meta.location`).
#[derive(Debug, Clone)]
pub struct ScimCaller(pub Principal, pub String);

impl FromRequestParts<AppState> for ScimCaller {
    type Rejection = ScimReply;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ScimReply> {
        let missing = || {
            ScimReply(ScimError::new(
                ScimStatus::Unauthorized,
                "a bearer token of role scim is required",
            ))
        };
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(missing)?;
        let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(missing());
        }
        let who = s
            .domain
            .authenticate(token.trim())
            .map_err(|e| ScimReply(e.into()))?;
        Scim::tenant(&who)?;
        Ok(ScimCaller(who, base_url(parts)))
    }
}

/// The SCIM base URL the client used (`https://host/scim/v2`): the request's authority
/// (HTTP/2) or `Host` header (HTTP/1.1), when it looks like a host name.
fn base_url(parts: &Parts) -> String {
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or_else(|| "localhost".to_owned());
    format!("https://{host}/scim/v2")
}

/// Reads a JSON body sent as `application/scim+json` or `application/json` (or without a
/// content type).
fn json_body(h: &HeaderMap, body: &Bytes) -> Result<Value, ScimReply> {
    if let Some(ct) = h.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or_default().trim();
        if essence != SCIM_JSON && essence != "application/json" {
            return Err(ScimReply(ScimError::bad(
                ScimType::InvalidSyntax,
                "the body must be application/scim+json or application/json",
            )));
        }
    }
    serde_json::from_slice(body).map_err(|e| {
        ScimReply(ScimError::bad(
            ScimType::InvalidSyntax,
            format!("the body is not valid JSON: {e}"),
        ))
    })
}

fn query(q: Result<Query<ListQuery>, QueryRejection>) -> Result<ListQuery, ScimReply> {
    q.map(|Query(q)| q).map_err(|e| {
        ScimReply(ScimError::bad(
            ScimType::InvalidValue,
            format!("bad query parameters: {}", e.body_text()),
        ))
    })
}

fn path_id(p: Result<Path<String>, PathRejection>) -> Result<String, ScimReply> {
    p.map(|Path(id)| id).map_err(|e| {
        ScimReply(ScimError::bad(
            ScimType::InvalidValue,
            format!("bad resource id: {}", e.body_text()),
        ))
    })
}

fn if_match(h: &HeaderMap) -> Option<String> {
    h.get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn service_provider_config(ScimCaller(_, base): ScimCaller) -> Response {
    scim_json(StatusCode::OK, &schema::service_provider_config(&base))
}

fn list_of(items: Vec<Value>) -> Value {
    json!({
        "schemas": [schema::LIST_RESPONSE],
        "totalResults": items.len(),
        "startIndex": 1,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}

async fn schemas(ScimCaller(_, base): ScimCaller) -> Response {
    scim_json(StatusCode::OK, &list_of(schema::schemas(&base)))
}

async fn schema_one(
    ScimCaller(_, base): ScimCaller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ScimReply> {
    let id = path_id(id)?;
    match schema::schemas(&base)
        .into_iter()
        .find(|s| s["id"] == id.as_str())
    {
        Some(s) => Ok(scim_json(StatusCode::OK, &s)),
        None => Err(ScimReply(ScimError::not_found("schema", &id))),
    }
}

async fn resource_types(ScimCaller(_, base): ScimCaller) -> Response {
    scim_json(StatusCode::OK, &list_of(schema::resource_types(&base)))
}

async fn resource_type_one(
    ScimCaller(_, base): ScimCaller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ScimReply> {
    let id = path_id(id)?;
    match schema::resource_types(&base)
        .into_iter()
        .find(|s| s["id"] == id.as_str())
    {
        Some(s) => Ok(scim_json(StatusCode::OK, &s)),
        None => Err(ScimReply(ScimError::not_found("resource type", &id))),
    }
}

async fn list<const GROUP: bool>(
    State(s): State<AppState>,
    ScimCaller(who, base): ScimCaller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ScimReply> {
    let kind = kind_of::<GROUP>();
    let q = query(q)?;
    let v = Scim::new(&s.posture).list(&who, kind, &base, &q)?;
    Ok(scim_json(StatusCode::OK, &v))
}

/// A SearchRequest body (RFC 7644 §3.4.3): `attributes` and `excludedAttributes` are arrays.
fn search_query(v: &Value) -> Result<ListQuery, ScimReply> {
    let o = v.as_object().ok_or_else(|| {
        ScimReply(ScimError::bad(
            ScimType::InvalidSyntax,
            "a SearchRequest must be a JSON object",
        ))
    })?;
    let get = |k: &str| {
        o.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
    };
    let bad = |what: &str| {
        ScimReply(ScimError::bad(
            ScimType::InvalidValue,
            format!("{what} has the wrong type"),
        ))
    };
    let list = |k: &str| -> Result<Option<String>, ScimReply> {
        match get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Array(a)) => Ok(Some(
                a.iter()
                    .map(|x| x.as_str().map(str::to_owned).ok_or_else(|| bad(k)))
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
            )),
            Some(_) => Err(bad(k)),
        }
    };
    let int = |k: &str| -> Result<Option<i64>, ScimReply> {
        match get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| bad(k)),
        }
    };
    Ok(ListQuery {
        filter: match get("filter") {
            None | Some(Value::Null) => None,
            Some(Value::String(f)) => Some(f.clone()),
            Some(_) => return Err(bad("filter")),
        },
        start_index: int("startIndex")?,
        count: int("count")?,
        attributes: list("attributes")?,
        excluded_attributes: list("excludedAttributes")?,
    })
}

async fn search<const GROUP: bool>(
    State(s): State<AppState>,
    ScimCaller(who, base): ScimCaller,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimReply> {
    let q = search_query(&json_body(&h, &body)?)?;
    let v = Scim::new(&s.posture).list(&who, kind_of::<GROUP>(), &base, &q)?;
    Ok(scim_json(StatusCode::OK, &v))
}

async fn search_all(
    State(s): State<AppState>,
    ScimCaller(who, base): ScimCaller,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimReply> {
    let q = search_query(&json_body(&h, &body)?)?;
    let v = Scim::new(&s.posture).search_all(&who, &base, &q)?;
    Ok(scim_json(StatusCode::OK, &v))
}

async fn one<const GROUP: bool>(
    State(s): State<AppState>,
    ScimCaller(who, base): ScimCaller,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ScimReply> {
    let kind = kind_of::<GROUP>();
    let id = path_id(id)?;
    let q = query(q)?;
    let (v, etag) = Scim::new(&s.posture).get(
        &who,
        kind,
        &base,
        &id,
        q.attributes.as_deref(),
        q.excluded_attributes.as_deref(),
    )?;
    Ok(with_etag(scim_json(StatusCode::OK, &v), &etag))
}

async fn create<const GROUP: bool>(
    State(s): State<AppState>,
    ScimCaller(who, base): ScimCaller,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimReply> {
    let kind = kind_of::<GROUP>();
    let v = json_body(&h, &body)?;
    let (r, etag) = Scim::new(&s.posture).create(&who, kind, &base, &v).await?;
    let mut resp = with_etag(scim_json(StatusCode::CREATED, &r), &etag);
    if let Some(loc) = r
        .pointer("/meta/location")
        .and_then(Value::as_str)
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

async fn replace<const GROUP: bool>(
    State(s): State<AppState>,
    ScimCaller(who, base): ScimCaller,
    h: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ScimReply> {
    let kind = kind_of::<GROUP>();
    let id = path_id(id)?;
    let v = json_body(&h, &body)?;
    let (r, etag) = Scim::new(&s.posture)
        .replace(&who, kind, &base, &id, &v, if_match(&h).as_deref())
        .await?;
    Ok(with_etag(scim_json(StatusCode::OK, &r), &etag))
}

async fn modify<const GROUP: bool>(
    State(s): State<AppState>,
    ScimCaller(who, base): ScimCaller,
    h: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ScimReply> {
    let kind = kind_of::<GROUP>();
    let id = path_id(id)?;
    let v = json_body(&h, &body)?;
    let (r, etag) = Scim::new(&s.posture)
        .patch(&who, kind, &base, &id, &v, if_match(&h).as_deref())
        .await?;
    Ok(with_etag(scim_json(StatusCode::OK, &r), &etag))
}

async fn delete<const GROUP: bool>(
    State(s): State<AppState>,
    ScimCaller(who, _): ScimCaller,
    h: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ScimReply> {
    let kind = kind_of::<GROUP>();
    let id = path_id(id)?;
    Scim::new(&s.posture)
        .delete(&who, kind, &id, if_match(&h).as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
