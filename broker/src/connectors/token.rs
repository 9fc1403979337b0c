//! Bearer tokens: OAuth 2.0 client credentials (Entra ID, Jamf API clients), Jamf's older
//! basic → bearer exchange, and the JWT bearer grant (RFC 7523) of a Google service account,
//! its assertion signed RS256 with ring.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::client::{Api, ConnectorError, FailureKind, form, path_of, read_body};
use super::settings::Secret;

/// A bearer token and when it expires.
#[derive(Debug, Clone)]
pub struct Token {
    /// The token.
    pub value: Secret,
    /// Its expiry.
    pub expires_at: OffsetDateTime,
}

/// The Android Management API scope.
pub const ANDROID_SCOPE: &str = "https://www.googleapis.com/auth/androidmanagement";

/// A Google service account key (the JSON file the console gives).
pub struct ServiceAccountKey {
    /// `client_email`: the JWT issuer.
    pub client_email: String,
    /// `private_key_id`: the JWT `kid`.
    pub private_key_id: Option<String>,
    /// `token_uri`.
    pub token_uri: Option<String>,
    key: ring::signature::RsaKeyPair,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// Parses the key file's JSON; the private key is PKCS#8 PEM (RSA).
    ///
    /// # Errors
    /// A message naming the field at fault (never its value).
    pub fn parse(json: &str) -> Result<ServiceAccountKey, String> {
        #[derive(Deserialize)]
        struct File {
            #[serde(rename = "type")]
            kind: Option<String>,
            client_email: String,
            private_key: String,
            private_key_id: Option<String>,
            token_uri: Option<String>,
        }
        let f: File = serde_json::from_str(json).map_err(|_| {
            "not a service account key (JSON with client_email and private_key)".to_owned()
        })?;
        if f.kind.as_deref().is_some_and(|k| k != "service_account") {
            return Err("type is not service_account".into());
        }
        let private_key = zeroize::Zeroizing::new(f.private_key);
        let der =
            pem::parse(private_key.as_bytes()).map_err(|_| "private_key is not PEM".to_owned())?;
        if der.tag() != "PRIVATE KEY" {
            return Err("private_key is not a PKCS#8 PRIVATE KEY".into());
        }
        let key = ring::signature::RsaKeyPair::from_pkcs8(der.contents())
            .map_err(|_| "private_key is not an RSA key ring accepts".to_owned())?;
        Ok(ServiceAccountKey {
            client_email: f.client_email,
            private_key_id: f.private_key_id,
            token_uri: f.token_uri,
            key,
        })
    }

    /// The signed assertion for `aud` (the token endpoint), valid one hour from `now`.
    ///
    /// # Errors
    /// A signing failure.
    pub fn assertion(&self, aud: &str, scope: &str, now: OffsetDateTime) -> Result<String, String> {
        let mut header = json!({ "alg": "RS256", "typ": "JWT" });
        if let Some(kid) = &self.private_key_id {
            header["kid"] = json!(kid);
        }
        let iat = now.unix_timestamp();
        let claims = json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": aud,
            "iat": iat,
            "exp": iat + 3600,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "RS256 signing failed".to_owned())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// Where tokens come from.
#[derive(Debug)]
pub enum TokenSource {
    /// OAuth 2.0 client credentials (RFC 6749 §4.4) with the secret in the body.
    ClientCredentials {
        /// Token endpoint.
        url: Url,
        /// Client id.
        client_id: String,
        /// Client secret.
        secret: Secret,
        /// `scope`, when the endpoint needs one.
        scope: Option<String>,
    },
    /// Jamf Pro `POST /api/v1/auth/token` with HTTP basic, answering `{token, expires}`.
    JamfBasic {
        /// Token endpoint.
        url: Url,
        /// User.
        username: String,
        /// Password.
        password: Secret,
    },
    /// RFC 7523 JWT bearer grant with a service account key.
    JwtBearer {
        /// Token endpoint (also the assertion's `aud`).
        url: Url,
        /// The key.
        key: Box<ServiceAccountKey>,
        /// `scope`.
        scope: String,
    },
}

#[derive(Deserialize)]
struct OAuthToken {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: Option<String>,
}

#[derive(Deserialize)]
struct JamfToken {
    token: String,
    expires: String,
}

impl TokenSource {
    fn url(&self) -> &Url {
        match self {
            TokenSource::ClientCredentials { url, .. }
            | TokenSource::JamfBasic { url, .. }
            | TokenSource::JwtBearer { url, .. } => url,
        }
    }

    /// Asks the token endpoint for a new token.
    ///
    /// # Errors
    /// Auth when the endpoint refuses (the OAuth `error` code is kept), Malformed when the
    /// answer is not a token, Network, Throttled.
    pub async fn fetch(&self, api: &Api) -> Result<Token, ConnectorError> {
        let url = self.url();
        let now = api.clock().now();
        let resp = match self {
            TokenSource::ClientCredentials {
                client_id,
                secret,
                scope,
                ..
            } => {
                let mut pairs = vec![
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", secret.expose()),
                ];
                if let Some(s) = scope {
                    pairs.push(("scope", s.as_str()));
                }
                let body = zeroize::Zeroizing::new(form(&pairs));
                api.send_token_request(
                    || {
                        api.http()
                            .post(url.clone())
                            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                            .body(body.to_string())
                    },
                    url,
                )
                .await?
            }
            TokenSource::JamfBasic {
                username, password, ..
            } => {
                let basic = zeroize::Zeroizing::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{}", password.expose()))
                ));
                api.send_token_request(
                    || {
                        api.http()
                            .post(url.clone())
                            .header(AUTHORIZATION, basic.as_str())
                    },
                    url,
                )
                .await?
            }
            TokenSource::JwtBearer { key, scope, .. } => {
                let assertion = key
                    .assertion(url.as_str(), scope, now)
                    .map_err(|m| ConnectorError::new(FailureKind::Config, m))?;
                let body = form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &assertion),
                ]);
                api.send_token_request(
                    || {
                        api.http()
                            .post(url.clone())
                            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                            .body(body.clone())
                    },
                    url,
                )
                .await?
            }
        };
        let status = resp.status();
        let body = zeroize::Zeroizing::new(read_body(url, resp).await?);
        if !status.is_success() {
            let code = serde_json::from_slice::<OAuthError>(&body)
                .ok()
                .and_then(|e| e.error)
                .filter(|c| c.len() <= 64 && c.chars().all(|c| c.is_ascii_graphic()));
            let kind = if status.is_client_error() {
                FailureKind::Auth
            } else {
                FailureKind::Http
            };
            return Err(ConnectorError::new(
                kind,
                format!(
                    "token endpoint {} answered {}{}",
                    path_of(url),
                    status.as_u16(),
                    code.map(|c| format!(" ({c})")).unwrap_or_default()
                ),
            ));
        }
        let bad = || {
            ConnectorError::new(
                FailureKind::Malformed,
                format!(
                    "token endpoint {} answered something that is not a token",
                    path_of(url)
                ),
            )
        };
        match self {
            TokenSource::JamfBasic { .. } => {
                let t: JamfToken = serde_json::from_slice(&body).map_err(|_| bad())?;
                let expires_at = OffsetDateTime::parse(
                    &t.expires,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|_| bad())?;
                Ok(Token {
                    value: Secret::new(t.token),
                    expires_at,
                })
            }
            _ => {
                let t: OAuthToken = serde_json::from_slice(&body).map_err(|_| bad())?;
                // Entra ID sends a number; some older endpoints a string
                let secs = match &t.expires_in {
                    Some(serde_json::Value::Number(n)) => n.as_i64(),
                    Some(serde_json::Value::String(s)) => s.parse().ok(),
                    _ => Some(3600),
                }
                .ok_or_else(bad)?;
                if t.access_token.is_empty() {
                    return Err(bad());
                }
                Ok(Token {
                    value: Secret::new(t.access_token),
                    expires_at: now + time::Duration::seconds(secs.clamp(0, 86_400)),
                })
            }
        }
    }
}
