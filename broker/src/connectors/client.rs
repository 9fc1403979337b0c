//! The HTTP side every connector shares: the HTTPS client (rustls on ring, the system's roots
//! plus `ca_file`), bearer requests that refresh the token once on a 401, waiting out a short
//! 429/503 `Retry-After`, bounded response bodies, and the failure kinds a status shows.
//!
//! Nothing here logs or returns a token or a secret: error messages name the request's path
//! (never its query), the status and at most the OAuth `error` code.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::domain::Clock;

use super::token::{Token, TokenSource};

/// Largest response body read (16 MiB).
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// How often one request is retried after a short `Retry-After`.
const RETRY_AFTER_TRIES: u32 = 3;

/// Why a sync failed, as the status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The token endpoint refused the credentials (bad secret, unknown client).
    Auth,
    /// The API refused a fresh token (missing permission).
    Unauthorized,
    /// 429 or 503 with a wait longer than the connector waits within a sync.
    Throttled,
    /// Another unexpected HTTP status.
    Http,
    /// Connection, TLS or timeout.
    Network,
    /// A response that is not the documented JSON.
    Malformed,
    /// The configuration does not fit (unknown tenant, unreadable secret).
    Config,
    /// postern's own store or posture service failed.
    Store,
}

impl FailureKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Auth => "auth",
            FailureKind::Unauthorized => "unauthorized",
            FailureKind::Throttled => "throttled",
            FailureKind::Http => "http",
            FailureKind::Network => "network",
            FailureKind::Malformed => "malformed",
            FailureKind::Config => "config",
            FailureKind::Store => "store",
        }
    }
}

/// A failed request or sync. The message holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct ConnectorError {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What happened, safe to show and log.
    pub message: String,
    /// The wait the server asked for (429/503), if any.
    pub retry_after: Option<Duration>,
}

impl ConnectorError {
    /// An error of `kind`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        ConnectorError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<crate::domain::DomainError> for ConnectorError {
    fn from(e: crate::domain::DomainError) -> Self {
        ConnectorError::new(FailureKind::Store, e.to_string())
    }
}

/// Waits: the runtime's timer, or a test's recorder.
pub trait Sleeper: Send + Sync + fmt::Debug {
    /// Waits `d`.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The runtime's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// `Retry-After` as seconds or an HTTP-date, relative to `now`; a date in the past is zero.
pub fn parse_retry_after(v: &str, now: OffsetDateTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse(v)?;
    let d = at - now;
    Some(if d.is_negative() {
        Duration::ZERO
    } else {
        Duration::from_secs(u64::try_from(d.whole_seconds()).unwrap_or(0))
    })
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 senders must use.
mod httpdate {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc2822;

    pub(super) fn parse(v: &str) -> Option<OffsetDateTime> {
        // RFC 2822 accepts IMF-fixdate once "GMT" is spelled as an offset
        let v = v.strip_suffix("GMT").map(|s| format!("{s}+0000"));
        OffsetDateTime::parse(v.as_deref()?, &Rfc2822).ok()
    }
}

/// What the connector reaches the vendor with.
#[derive(Debug)]
pub struct Api {
    http: reqwest::Client,
    token: Mutex<Option<Token>>,
    source: TokenSource,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
    max_retry_after: Duration,
    /// Origins a request may go to (the configured base URLs): a `nextLink` elsewhere is
    /// refused, so a token is never sent to another host.
    origins: Vec<String>,
}

/// The HTTPS client: rustls on ring with the system's roots and `ca_pem`'s certificates.
///
/// # Errors
/// A bad PEM or a client that cannot be built.
pub fn https_client(ca_pem: Option<&[u8]>, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut roots = crate::domain::acme::system_roots();
    if let Some(pem) = ca_pem {
        let certs = pem::parse_many(pem).map_err(|e| format!("ca_file: {e}"))?;
        for c in certs {
            roots
                .add(rustls::pki_types::CertificateDer::from(c.into_contents()))
                .map_err(|e| format!("ca_file: {e}"))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent("postern-connector")
        .build()
        .map_err(|e| e.to_string())
}

/// The path of a URL, for messages (no query: it may carry paging state).
pub fn path_of(url: &Url) -> String {
    url.path().to_owned()
}

fn origin(u: &Url) -> String {
    u.origin().ascii_serialization()
}

fn network(url: &Url, e: &reqwest::Error) -> ConnectorError {
    // reqwest's Display includes the URL; keep only the path and the cause's kind
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    ConnectorError::new(FailureKind::Network, format!("GET {} {what}", path_of(url)))
}

/// Reads a body up to [`MAX_BODY`].
///
/// # Errors
/// Network (read failure), Malformed (too large).
pub async fn read_body(url: &Url, mut resp: reqwest::Response) -> Result<Vec<u8>, ConnectorError> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > MAX_BODY {
                    return Err(ConnectorError::new(
                        FailureKind::Malformed,
                        format!("{} answered more than {MAX_BODY} bytes", path_of(url)),
                    ));
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(network(url, &e)),
        }
    }
}

/// Parses JSON, naming the path on failure.
///
/// # Errors
/// Malformed.
pub fn parse_json<T: DeserializeOwned>(url: &Url, body: &[u8]) -> Result<T, ConnectorError> {
    serde_json::from_slice(body).map_err(|e| {
        ConnectorError::new(
            FailureKind::Malformed,
            format!(
                "{} answered JSON that does not fit (line {}, column {}: {})",
                path_of(url),
                e.line(),
                e.column(),
                match e.classify() {
                    serde_json::error::Category::Io => "read error",
                    serde_json::error::Category::Syntax => "syntax error",
                    serde_json::error::Category::Data => "unexpected value",
                    serde_json::error::Category::Eof => "truncated",
                }
            ),
        )
    })
}

impl Api {
    /// An API over `http` whose bearer tokens come from `source`.
    pub fn new(
        http: reqwest::Client,
        source: TokenSource,
        clock: Arc<dyn Clock>,
        sleeper: Arc<dyn Sleeper>,
        max_retry_after: Duration,
        bases: &[&Url],
    ) -> Self {
        Api {
            http,
            token: Mutex::new(None),
            source,
            clock,
            sleeper,
            max_retry_after,
            origins: bases.iter().map(|u| origin(u)).collect(),
        }
    }

    /// The client (token requests).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Forgets the cached token (tests; a secret rotation).
    pub async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// A valid token: the cached one unless it expires within a minute.
    async fn bearer(&self, refresh: bool) -> Result<String, ConnectorError> {
        let mut g = self.token.lock().await;
        let now = self.clock.now();
        if !refresh
            && let Some(t) = g.as_ref()
            && t.expires_at - time::Duration::seconds(60) > now
        {
            return Ok(t.value.expose().to_owned());
        }
        let t = self.source.fetch(self).await?;
        let v = t.value.expose().to_owned();
        *g = Some(t);
        Ok(v)
    }

    /// A token request with `Retry-After` handling (the token endpoint throttles too).
    pub(super) async fn send_token_request(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<reqwest::Response, ConnectorError> {
        let mut tries = 0;
        loop {
            let resp = build().send().await.map_err(|e| network(url, &e))?;
            match self.throttle(url, &resp, &mut tries).await? {
                true => continue,
                false => return Ok(resp),
            }
        }
    }

    /// On 429/503: waits a short `Retry-After` (true: send again) or fails with the wait.
    async fn throttle(
        &self,
        url: &Url,
        resp: &reqwest::Response,
        tries: &mut u32,
    ) -> Result<bool, ConnectorError> {
        let s = resp.status();
        if s != StatusCode::TOO_MANY_REQUESTS && s != StatusCode::SERVICE_UNAVAILABLE {
            return Ok(false);
        }
        let wait = retry_after(resp.headers(), self.clock.now());
        match wait {
            Some(w) if w <= self.max_retry_after && *tries < RETRY_AFTER_TRIES => {
                *tries += 1;
                tracing::info!(path = %path_of(url), status = s.as_u16(), wait_seconds = w.as_secs(), "throttled; waiting");
                self.sleeper.sleep(w).await;
                Ok(true)
            }
            _ => Err(ConnectorError {
                kind: FailureKind::Throttled,
                message: format!(
                    "{} answered {}{}",
                    path_of(url),
                    s.as_u16(),
                    wait.map(|w| format!(" with Retry-After {}s", w.as_secs()))
                        .unwrap_or_default()
                ),
                retry_after: wait,
            }),
        }
    }

    /// GETs `url` with the bearer token and parses JSON. A 401 gets one fresh token and one
    /// more try; 429/503 are waited out (see the module docs). `Ok(None)` for a 404 when
    /// `allow_404`.
    ///
    /// # Errors
    /// See [`FailureKind`].
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &Url,
        allow_404: bool,
    ) -> Result<Option<T>, ConnectorError> {
        if !self.origins.iter().any(|o| *o == origin(url)) {
            return Err(ConnectorError::new(
                FailureKind::Malformed,
                format!("a link points to another origin ({})", origin(url)),
            ));
        }
        let mut refreshed = false;
        let mut tries = 0;
        loop {
            let token = self.bearer(false).await?;
            let resp = self
                .http
                .get(url.clone())
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| network(url, &e))?;
            if self.throttle(url, &resp, &mut tries).await? {
                continue;
            }
            match resp.status() {
                s if s.is_success() => {
                    let body = read_body(url, resp).await?;
                    return parse_json(url, &body).map(Some);
                }
                StatusCode::UNAUTHORIZED if !refreshed => {
                    refreshed = true;
                    tracing::info!(path = %path_of(url), "token refused; fetching a new one");
                    self.bearer(true).await?;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(ConnectorError::new(
                        FailureKind::Unauthorized,
                        format!("{} answered {}", path_of(url), resp.status().as_u16()),
                    ));
                }
                StatusCode::NOT_FOUND if allow_404 => return Ok(None),
                s => {
                    return Err(ConnectorError::new(
                        FailureKind::Http,
                        format!("{} answered {}", path_of(url), s.as_u16()),
                    ));
                }
            }
        }
    }
}

impl Api {
    /// POSTs `body` as JSON to `url` with the bearer token and `headers`, and parses the JSON
    /// answer; the same 401 (one fresh token), 429/503 and origin rules as [`Api::get_json`].
    ///
    /// # Errors
    /// See [`FailureKind`].
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        url: &Url,
        body: &serde_json::Value,
        headers: &[(&str, String)],
    ) -> Result<T, ConnectorError> {
        if !self.origins.iter().any(|o| *o == origin(url)) {
            return Err(ConnectorError::new(
                FailureKind::Malformed,
                format!("a link points to another origin ({})", origin(url)),
            ));
        }
        let mut refreshed = false;
        let mut tries = 0;
        loop {
            let token = self.bearer(false).await?;
            let mut req = self
                .http
                .post(url.clone())
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .header(reqwest::header::ACCEPT, "application/json")
                .json(body);
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            let resp = req.send().await.map_err(|e| {
                let mut err = network(url, &e);
                err.message = err.message.replacen("GET", "POST", 1);
                err
            })?;
            if self.throttle(url, &resp, &mut tries).await? {
                continue;
            }
            match resp.status() {
                s if s.is_success() => {
                    let body = read_body(url, resp).await?;
                    return parse_json(url, &body);
                }
                StatusCode::UNAUTHORIZED if !refreshed => {
                    refreshed = true;
                    tracing::info!(path = %path_of(url), "token refused; fetching a new one");
                    self.bearer(true).await?;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(ConnectorError::new(
                        FailureKind::Unauthorized,
                        format!("{} answered {}", path_of(url), resp.status().as_u16()),
                    ));
                }
                s => {
                    return Err(ConnectorError::new(
                        FailureKind::Http,
                        format!("{} answered {}", path_of(url), s.as_u16()),
                    ));
                }
            }
        }
    }
}

fn retry_after(h: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    h.get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now))
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    // what application/x-www-form-urlencoded leaves as it is
    const FORM: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'*');
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, FORM),
                utf8_percent_encode(v, FORM)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use time::macros::datetime;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = datetime!(2024-10-27 08:00:00 UTC);
        let check = |v: &str, want: Option<u64>| {
            assert_eq!(parse_retry_after(v, now).map(|d| d.as_secs()), want, "{v}");
        };
        check("120", Some(120));
        check(" 0 ", Some(0));
        check("Sun, 27 Oct 2024 08:00:30 GMT", Some(30));
        check("Sun, 27 Oct 2024 07:00:00 GMT", Some(0));
        check("soon", None);
        check("-5", None);
    }

    #[test]
    fn form_encodes_reserved_characters() {
        assert_eq!(
            form(&[("a b", "x&y=z"), ("scope", "https://g/.default")]),
            "a%20b=x%26y%3Dz&scope=https%3A%2F%2Fg%2F.default"
        );
    }
}
