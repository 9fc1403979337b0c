//! Microsoft Intune's SCEP validation API, for a provisioner that serves Intune SCEP profiles
//! (Intune puts its own signed, encrypted challenge in the profile; only Intune can check it).
//!
//! Before issuing, the SCEP server calls [`IntuneValidator::validate`] with the CSR and the
//! SCEP transaction id; it issues only when Intune answers `Success`. Afterwards it reports
//! the outcome with [`IntuneValidator::notify_success`] or
//! [`IntuneValidator::notify_failure`].
//!
//! On the wire (Microsoft's reference library, `Intune-Resource-Access`
//! `src/CsrValidation`): `POST {endpoint}/ScepActions/{validateRequest | successNotification
//! | failureNotification}` with `Authorization: Bearer` (client credentials for
//! `https://api.manage.microsoft.com//.default`), `api-version: 2018-02-20`,
//! `client-request-id: <uuid>` and `UserAgent: <caller info>`; the answer is
//! `{"code": "...", "errorDescription": "..."}`. `{endpoint}` is the `uri` of the
//! `ScepRequestValidationFEService` entry among the endpoints of Intune's service principal
//! (app id `0000000a-0000-0000-c000-000000000000`) in Microsoft Graph, found once and kept,
//! or `service_url` when configured.
//!
//! Requests go through the connectors' client: rustls on ring with the system roots plus
//! `ca_file`, one fresh token after a 401, a 429/503 `Retry-After` up to
//! `max_retry_after_seconds` waited out (three times at most). Nothing here logs a token, the
//! secret or the CSR.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;

use crate::connectors::client::{Api, ConnectorError, FailureKind, Sleeper, https_client};
use crate::connectors::settings::Secret;
use crate::connectors::token::TokenSource;
use crate::domain::Clock;
use crate::domain::tenancy::random_bytes;

/// Intune's first-party application id.
pub const INTUNE_APP_ID: &str = "0000000a-0000-0000-c000-000000000000";
/// The service whose endpoint validates SCEP requests.
pub const VALIDATION_SERVICE: &str = "ScepRequestValidationFEService";
/// The `api-version` header value.
pub const API_VERSION: &str = "2018-02-20";
/// The token scope of Intune's API.
pub const INTUNE_SCOPE: &str = "https://api.manage.microsoft.com//.default";
/// The token scope of Microsoft Graph (endpoint discovery).
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The longest `errorDescription` Intune takes in a failure notification.
pub const MAX_ERROR_DESCRIPTION: usize = 255;

/// `[scep.provisioners.intune]`: an Entra ID app registration with Intune's
/// `scep_challenge_provider` application permission.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntuneScepSettings {
    /// The Entra ID tenant (directory) id or domain.
    pub tenant_id: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    /// File holding the client secret.
    pub client_secret_file: PathBuf,
    /// The identity platform (`https://login.microsoftonline.com`).
    #[serde(default = "default_login_url")]
    pub login_url: String,
    /// Microsoft Graph (`https://graph.microsoft.com`), for endpoint discovery.
    #[serde(default = "default_graph_url")]
    pub graph_url: String,
    /// The validation service's base URL; when set, Graph is not asked.
    #[serde(default)]
    pub service_url: Option<String>,
    /// PEM file of extra CA certificates to trust (besides the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// One HTTP request's timeout, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// A 429/503 `Retry-After` up to this many seconds is waited out; a longer one fails.
    #[serde(default = "default_max_retry_after")]
    pub max_retry_after_seconds: u64,
    /// `callerInfo` and `UserAgent`: the CA's name and version.
    #[serde(default = "default_caller_info")]
    pub caller_info: String,
}

fn default_login_url() -> String {
    "https://login.microsoftonline.com".into()
}
fn default_graph_url() -> String {
    "https://graph.microsoft.com".into()
}
fn default_timeout() -> u64 {
    30
}
fn default_max_retry_after() -> u64 {
    30
}
fn default_caller_info() -> String {
    format!("postern/{}", env!("CARGO_PKG_VERSION"))
}

fn https_url(key: &str, u: &str) -> Result<Url, (String, String)> {
    let url = Url::parse(u).map_err(|e| (key.to_owned(), format!("{u:?}: {e}")))?;
    if url.scheme() != "https" {
        return Err((key.to_owned(), "must be an https:// URL".into()));
    }
    Ok(url)
}

fn with_slash(mut u: Url) -> Url {
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    u
}

impl IntuneScepSettings {
    /// Checks values types alone do not, and that the secret and CA files can be read.
    ///
    /// # Errors
    /// `(key, message)`, the key relative to the table.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.tenant_id.trim().is_empty() {
            return Err(("tenant_id".into(), "must not be empty".into()));
        }
        if self.client_id.trim().is_empty() {
            return Err(("client_id".into(), "must not be empty".into()));
        }
        https_url("login_url", &self.login_url)?;
        https_url("graph_url", &self.graph_url)?;
        if let Some(s) = &self.service_url {
            https_url("service_url", s)?;
        }
        if !(1..=300).contains(&self.timeout_seconds) {
            return Err(("timeout_seconds".into(), "must be between 1 and 300".into()));
        }
        if self.max_retry_after_seconds > 600 {
            return Err((
                "max_retry_after_seconds".into(),
                "must be at most 600".into(),
            ));
        }
        if self.caller_info.is_empty()
            || self.caller_info.len() > 128
            || !self
                .caller_info
                .bytes()
                .all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err((
                "caller_info".into(),
                "must be 1 to 128 printable ASCII characters".into(),
            ));
        }
        Secret::read("client_secret_file", &self.client_secret_file)?;
        if let Some(p) = &self.ca_file {
            let pem = std::fs::read(p).map_err(|e| ("ca_file".into(), e.to_string()))?;
            pem::parse_many(&pem).map_err(|e| ("ca_file".into(), e.to_string()))?;
        }
        Ok(())
    }
}

/// Why Intune's validation or a notification did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntuneError {
    /// Intune answered with a code other than `Success` (`ChallengeExpired`,
    /// `SubjectNameMismatch`, ...): do not issue; SCEP failInfo **badRequest**.
    #[error("intune refused the request: {code}{}", if .description.is_empty() { String::new() } else { format!(" ({description})") })]
    Refused {
        /// Intune's code.
        code: String,
        /// Its `errorDescription`, at most 255 characters, control characters removed.
        description: String,
    },
    /// Intune could not be asked or its answer was not its documented JSON: no decision, so
    /// nothing may be issued (SCEP: FAILURE with badRequest, or PENDING to try later).
    #[error("intune is unavailable: {0}")]
    Unavailable(ConnectorError),
}

impl IntuneError {
    /// The SCEP `failInfo` to answer with when nothing is issued: always `badRequest` (RFC
    /// 8894 has no failInfo for an unreachable validator).
    pub fn fail_info(&self) -> &'static str {
        "badRequest"
    }

    /// The connector failure kind behind an [`IntuneError::Unavailable`].
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            IntuneError::Unavailable(e) => Some(e.kind),
            IntuneError::Refused { .. } => None,
        }
    }
}

impl From<ConnectorError> for IntuneError {
    fn from(e: ConnectorError) -> Self {
        IntuneError::Unavailable(e)
    }
}

/// What the SCEP server issued, for [`IntuneValidator::notify_success`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// SHA-1 of the certificate's DER, hex (Intune's `certificateThumbprint`).
    pub thumbprint_sha1: String,
    /// The serial number, hex.
    pub serial: String,
    /// notAfter.
    pub not_after: OffsetDateTime,
    /// The issuing CA's subject as an RFC 4514 string.
    pub issuer: String,
}

impl IssuedCertificate {
    /// The facts Intune wants about `der` (a certificate postern issued).
    ///
    /// # Errors
    /// A message when the DER is not a certificate.
    pub fn from_der(der: &[u8]) -> Result<IssuedCertificate, String> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, c) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        Ok(IssuedCertificate {
            thumbprint_sha1: hex::encode_upper(sha1),
            serial: hex::encode_upper(c.raw_serial()),
            not_after: c.validity().not_after.to_datetime(),
            issuer: c.issuer().to_string(),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    code: String,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct Endpoints {
    value: Vec<Endpoint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    provider_name: String,
    uri: String,
}

/// The Intune SCEP validation client of one provisioner.
#[derive(Debug)]
pub struct IntuneValidator {
    settings: IntuneScepSettings,
    http: reqwest::Client,
    secret: Secret,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
    /// Graph, for discovery (only made when `service_url` is not configured).
    graph: Option<(Api, Url)>,
    /// The validation service and its client, once known.
    service: Mutex<Option<Arc<(Api, Url)>>>,
}

impl IntuneValidator {
    /// A client for `settings` (checked again here).
    ///
    /// # Errors
    /// `(key, message)` relative to the `intune` table.
    pub fn open(
        settings: &IntuneScepSettings,
        clock: Arc<dyn Clock>,
        sleeper: Arc<dyn Sleeper>,
    ) -> Result<IntuneValidator, (String, String)> {
        settings.check()?;
        let ca = match &settings.ca_file {
            Some(p) => Some(std::fs::read(p).map_err(|e| ("ca_file".to_owned(), e.to_string()))?),
            None => None,
        };
        let http = https_client(ca.as_deref(), Duration::from_secs(settings.timeout_seconds))
            .map_err(|m| ("ca_file".to_owned(), m))?;
        let secret = Secret::read("client_secret_file", &settings.client_secret_file)?;
        let v = IntuneValidator {
            settings: settings.clone(),
            http,
            secret,
            clock,
            sleeper,
            graph: None,
            service: Mutex::new(None),
        };
        let graph = if settings.service_url.is_none() {
            let base = with_slash(https_url("graph_url", &settings.graph_url)?);
            let url = base
                .join(&format!(
                    "v1.0/servicePrincipals(appId='{INTUNE_APP_ID}')/endpoints"
                ))
                .map_err(|e| ("graph_url".to_owned(), e.to_string()))?;
            Some((v.api(GRAPH_SCOPE, &base)?, url))
        } else {
            None
        };
        let service = match &settings.service_url {
            Some(s) => {
                let base = with_slash(https_url("service_url", s)?);
                Some(Arc::new((v.api(INTUNE_SCOPE, &base)?, base)))
            }
            None => None,
        };
        Ok(IntuneValidator {
            graph,
            service: Mutex::new(service),
            ..v
        })
    }

    fn api(&self, scope: &str, base: &Url) -> Result<Api, (String, String)> {
        let login = with_slash(https_url("login_url", &self.settings.login_url)?);
        let token = login
            .join(&format!(
                "{}/oauth2/v2.0/token",
                self.settings.tenant_id.trim()
            ))
            .map_err(|e| ("tenant_id".to_owned(), e.to_string()))?;
        Ok(Api::new(
            self.http.clone(),
            TokenSource::ClientCredentials {
                url: token,
                client_id: self.settings.client_id.clone(),
                secret: Secret::new(self.secret.expose()),
                scope: Some(scope.to_owned()),
            },
            Arc::clone(&self.clock),
            Arc::clone(&self.sleeper),
            Duration::from_secs(self.settings.max_retry_after_seconds),
            &[base],
        ))
    }

    /// The validation service: configured, found before, or found now in Graph.
    async fn service(&self) -> Result<Arc<(Api, Url)>, IntuneError> {
        let mut g = self.service.lock().await;
        if let Some(s) = g.as_ref() {
            return Ok(Arc::clone(s));
        }
        let Some((graph, url)) = &self.graph else {
            return Err(ConnectorError::new(FailureKind::Config, "no Graph client").into());
        };
        let list: Endpoints = graph.get_json(url, false).await?.ok_or_else(|| {
            ConnectorError::new(FailureKind::Http, "Intune's service principal not found")
        })?;
        let Some(e) = list
            .value
            .into_iter()
            .find(|e| e.provider_name.eq_ignore_ascii_case(VALIDATION_SERVICE))
        else {
            return Err(ConnectorError::new(
                FailureKind::Malformed,
                format!("Graph lists no {VALIDATION_SERVICE} endpoint"),
            )
            .into());
        };
        let base = Url::parse(&e.uri)
            .ok()
            .filter(|u| u.scheme() == "https")
            .map(with_slash)
            .ok_or_else(|| {
                ConnectorError::new(
                    FailureKind::Malformed,
                    format!("the {VALIDATION_SERVICE} endpoint is not an https URL"),
                )
            })?;
        let api = self
            .api(INTUNE_SCOPE, &base)
            .map_err(|(k, m)| ConnectorError::new(FailureKind::Config, format!("{k}: {m}")))?;
        let s = Arc::new((api, base));
        *g = Some(Arc::clone(&s));
        Ok(s)
    }

    async fn call(&self, action: &str, body: serde_json::Value) -> Result<(), IntuneError> {
        let service = self.service().await?;
        let (api, base) = &*service;
        let url = base
            .join(&format!("ScepActions/{action}"))
            .map_err(|e| ConnectorError::new(FailureKind::Config, e.to_string()))?;
        let request_id = uuid_v4().map_err(|e| ConnectorError::new(FailureKind::Store, e))?;
        let answer: Answer = api
            .post_json(
                &url,
                &body,
                &[
                    ("api-version", API_VERSION.to_owned()),
                    ("client-request-id", request_id),
                    ("UserAgent", self.settings.caller_info.clone()),
                ],
            )
            .await?;
        if answer.code == "Success" {
            return Ok(());
        }
        let clean = |s: &str, n: usize| -> String {
            s.chars().filter(|c| !c.is_control()).take(n).collect()
        };
        Err(IntuneError::Refused {
            code: clean(&answer.code, 64),
            description: clean(
                answer.error_description.as_deref().unwrap_or(""),
                MAX_ERROR_DESCRIPTION,
            ),
        })
    }

    /// Asks Intune whether to issue for `csr_der` (the PKCS#10 with Intune's challenge as its
    /// `challengePassword`) in SCEP transaction `transaction_id`. `Ok` only for `Success`.
    ///
    /// # Errors
    /// [`IntuneError::Refused`] with Intune's code; [`IntuneError::Unavailable`] when Intune
    /// cannot be asked (token, network, throttling, an answer that is not its JSON).
    pub async fn validate(&self, csr_der: &[u8], transaction_id: &str) -> Result<(), IntuneError> {
        self.call(
            "validateRequest",
            json!({ "request": {
                "transactionId": transaction_id,
                "certificateRequest": STANDARD.encode(csr_der),
                "callerInfo": self.settings.caller_info,
            }}),
        )
        .await
    }

    /// Tells Intune the certificate for `csr_der` was issued.
    ///
    /// # Errors
    /// As [`IntuneValidator::validate`].
    pub async fn notify_success(
        &self,
        csr_der: &[u8],
        transaction_id: &str,
        issued: &IssuedCertificate,
    ) -> Result<(), IntuneError> {
        let expires = issued
            .not_after
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .unwrap_or(issued.not_after)
            .format(&Rfc3339)
            .map_err(|e| ConnectorError::new(FailureKind::Malformed, e.to_string()))?;
        self.call(
            "successNotification",
            json!({ "notification": {
                "transactionId": transaction_id,
                "certificateRequest": STANDARD.encode(csr_der),
                "certificateThumbprint": issued.thumbprint_sha1,
                "certificateSerialNumber": issued.serial,
                "certificateExpirationDateUtc": expires,
                "issuingCertificateAuthority": issued.issuer,
                "callerInfo": self.settings.caller_info,
            }}),
        )
        .await
    }

    /// Tells Intune the request for `csr_der` failed: `h_result` (a Windows HRESULT, such as
    /// `0x80004005` E_FAIL) and a description, cut to 255 characters.
    ///
    /// # Errors
    /// As [`IntuneValidator::validate`].
    pub async fn notify_failure(
        &self,
        csr_der: &[u8],
        transaction_id: &str,
        h_result: i64,
        description: &str,
    ) -> Result<(), IntuneError> {
        let description: String = description
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_ERROR_DESCRIPTION)
            .collect();
        self.call(
            "failureNotification",
            json!({ "notification": {
                "transactionId": transaction_id,
                "certificateRequest": STANDARD.encode(csr_der),
                "hResult": h_result,
                "errorDescription": description,
                "callerInfo": self.settings.caller_info,
            }}),
        )
        .await
    }
}

/// A random (version 4) UUID for `client-request-id`.
fn uuid_v4() -> Result<String, String> {
    let mut b = random_bytes::<16>().map_err(|e| e.detail)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn request_ids_are_version_4_uuids() {
        let a = uuid_v4().unwrap();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(a, uuid_v4().unwrap());
    }

    #[test]
    fn a_base_url_gets_a_trailing_slash_so_join_keeps_its_path() {
        let u = with_slash(Url::parse("https://fef.example/TrafficGateway/Scep").unwrap());
        assert_eq!(
            u.join("ScepActions/validateRequest").unwrap().as_str(),
            "https://fef.example/TrafficGateway/Scep/ScepActions/validateRequest"
        );
    }
}
