//! `/v1/profiles/{tenant}/devices/{id}/...`: enrollment profiles for MDMs (admin or mdm token
//! of the tenant), and the declarative credential document a device fetches with its
//! one-time secret. See `docs/profiles.md`.

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::domain::acme::Base;
use crate::domain::profiles::{self, ProfileForm, ProfileRequest};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiPath, ApiQuery};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/profiles/{tenant}/devices/{id}/enrollment.mobileconfig",
            get(mobileconfig),
        )
        .route(
            "/v1/profiles/{tenant}/devices/{id}/declarative",
            get(declarative),
        )
        .route(
            "/v1/profiles/{tenant}/devices/{id}/declarative/credential",
            get(credential_for_mdm),
        )
        .route(
            "/v1/profiles/{tenant}/devices/{id}/declarative/credential/{secret}",
            get(credential_by_secret),
        )
        .route(
            "/v1/profiles/{tenant}/devices/{id}/android.json",
            get(android),
        )
}

/// The request's path for logs: a declarative credential URL's secret is replaced, so that a
/// one-time secret never reaches a log line.
pub(super) fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    const MARK: &str = "/declarative/credential/";
    match path.find(MARK) {
        Some(i) if path.starts_with("/v1/profiles/") => {
            std::borrow::Cow::Owned(format!("{}<secret>", &path[..i + MARK.len()]))
        }
        _ => std::borrow::Cow::Borrowed(path),
    }
}

/// The base URL the request reached (`https://` + `Host`), from which profile URLs are made.
#[derive(Debug)]
struct RequestBase(Base);

impl FromRequestParts<AppState> for RequestBase {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .filter(|h| {
                !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()) && !h.contains('/')
            })
            .ok_or_else(|| ApiError::malformed("the request names no host"))?;
        Ok(RequestBase(Base(format!("https://{host}"))))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileQuery {
    #[serde(default)]
    signed: Option<bool>,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    os_version: Option<String>,
    #[serde(default)]
    provisioner: Option<String>,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    package: Option<String>,
}

fn request(tenant: String, device: String, q: ProfileQuery) -> ProfileRequest {
    ProfileRequest {
        tenant,
        device,
        platform: q.platform,
        os_version: q.os_version,
        provisioner: q.provisioner,
        signed: q.signed.unwrap_or(false),
        app_bundle_id: q.app,
        package_name: q.package,
    }
}

fn bytes(body: Vec<u8>, content_type: &'static str, filename: Option<&str>) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // each answer carries a fresh one-time secret or grant: never cached
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(f) = filename
        && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{f}\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

async fn issue(
    s: &AppState,
    who: &crate::domain::Principal,
    base: &Base,
    req: ProfileRequest,
    form: ProfileForm,
) -> Result<profiles::IssuedProfile, ApiError> {
    Ok(profiles::issue(&s.acme, &s.profile_signing, who, base, &req, form).await?)
}

/// `GET .../enrollment.mobileconfig[?signed=true]`.
async fn mobileconfig(
    State(s): State<AppState>,
    Caller(who): Caller,
    RequestBase(base): RequestBase,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ProfileQuery>,
) -> Result<Response, ApiError> {
    let signed = q.signed.unwrap_or(false);
    let p = issue(
        &s,
        &who,
        &base,
        request(tenant, id, q),
        ProfileForm::Mobileconfig,
    )
    .await?;
    let name = if signed {
        "postern-enrollment-signed.mobileconfig"
    } else {
        "postern-enrollment.mobileconfig"
    };
    Ok(bytes(p.body, p.content_type, Some(name)))
}

/// `GET .../declarative`: the declarations and the credential document.
async fn declarative(
    State(s): State<AppState>,
    Caller(who): Caller,
    RequestBase(base): RequestBase,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ProfileQuery>,
) -> Result<Response, ApiError> {
    if q.signed.is_some() {
        return Err(ApiError::malformed("only the mobileconfig form is signed"));
    }
    let p = issue(
        &s,
        &who,
        &base,
        request(tenant, id, q),
        ProfileForm::Declarative,
    )
    .await?;
    Ok(bytes(p.body, p.content_type, None))
}

/// `GET .../android.json`.
async fn android(
    State(s): State<AppState>,
    Caller(who): Caller,
    RequestBase(base): RequestBase,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ProfileQuery>,
) -> Result<Response, ApiError> {
    if q.signed.is_some() {
        return Err(ApiError::malformed("only the mobileconfig form is signed"));
    }
    let p = issue(
        &s,
        &who,
        &base,
        request(tenant, id, q),
        ProfileForm::Android,
    )
    .await?;
    Ok(bytes(p.body, p.content_type, None))
}

/// `GET .../declarative/credential` with the MDM's token.
async fn credential_for_mdm(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let doc = profiles::credential_for_mdm(&s.acme, &who, &tenant, &id)?;
    Ok(bytes(doc, "application/json", None))
}

/// `GET .../declarative/credential/{secret}`: what the device fetches; the secret is the
/// authentication, and works once.
async fn credential_by_secret(
    State(s): State<AppState>,
    ApiPath((tenant, id, secret)): ApiPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    let doc = profiles::credential_by_secret(&s.acme, &tenant, &id, &secret).await?;
    Ok(bytes(doc, "application/json", None))
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn secrets_are_left_out_of_logged_paths() {
        assert_eq!(
            loggable_path("/v1/profiles/default/devices/dev_1/declarative/credential/pes_abc"),
            "/v1/profiles/default/devices/dev_1/declarative/credential/<secret>"
        );
        assert_eq!(
            loggable_path("/v1/profiles/default/devices/dev_1/declarative"),
            "/v1/profiles/default/devices/dev_1/declarative"
        );
        assert_eq!(
            loggable_path("/acme/devices/directory"),
            "/acme/devices/directory"
        );
    }
}
