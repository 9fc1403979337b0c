//! `[[connectors]]` settings: which MDM APIs to poll, for which tenant, how often, and where
//! the secrets are. Secrets are read from files named here, never written in the TOML.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

/// One `[[connectors]]` table. Unknown keys are refused by the vendor's table (serde cannot
/// refuse them here, beside `flatten`).
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectorSettings {
    /// Unique name (`[A-Za-z0-9_-]`, at most 64), used in the admin API and the store.
    pub name: String,
    /// The vendor API and its settings.
    #[serde(flatten)]
    pub vendor: VendorSettings,
    /// The tenant whose devices the API reports.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// Seconds between two complete syncs (a tenth of it is random jitter).
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
    /// Register devices postern does not know (matched by serial, IMEI or UDID).
    #[serde(default = "default_true")]
    pub register_devices: bool,
    /// PEM file of extra CA certificates to trust for the vendor's HTTPS (besides the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// One HTTP request's timeout, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// The first wait after a failed sync, in seconds (doubled per failure, half of it random).
    #[serde(default = "default_backoff_base")]
    pub backoff_base_seconds: u64,
    /// The longest wait after failures, in seconds.
    #[serde(default = "default_backoff_max")]
    pub backoff_max_seconds: u64,
    /// A 429/503 `Retry-After` up to this many seconds is waited out within the sync; a longer
    /// one ends the sync, which is tried again after it.
    #[serde(default = "default_max_retry_after")]
    pub max_retry_after_seconds: u64,
}

/// The vendor API, by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum VendorSettings {
    /// Microsoft Intune through Microsoft Graph.
    Intune(IntuneSettings),
    /// Jamf Pro API.
    Jamf(JamfSettings),
    /// Google Android Management API.
    AndroidManagement(AndroidSettings),
}

/// Intune: an Entra ID app registration with a client secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntuneSettings {
    /// The Entra ID tenant (directory) id or domain.
    pub tenant_id: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    /// File holding the client secret.
    pub client_secret_file: PathBuf,
    /// The identity platform (`https://login.microsoftonline.com`).
    #[serde(default = "default_login_url")]
    pub login_url: String,
    /// Microsoft Graph (`https://graph.microsoft.com`).
    #[serde(default = "default_graph_url")]
    pub graph_url: String,
}

/// Jamf Pro: an API client (client credentials) or, older, a user (basic → bearer).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JamfSettings {
    /// The Jamf Pro server (`https://example.jamfcloud.com`).
    pub url: String,
    /// API client id (client credentials).
    #[serde(default)]
    pub client_id: Option<String>,
    /// File holding the API client secret.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// A Jamf Pro user (the older `/api/v1/auth/token` flow), instead of an API client.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding that user's password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Read computers (`/api/v1/computers-inventory`).
    #[serde(default = "default_true")]
    pub computers: bool,
    /// Read mobile devices (`/api/v2/mobile-devices/detail`).
    #[serde(default = "default_true")]
    pub mobile_devices: bool,
    /// Read each device's conditional-access compliance (one request per device).
    #[serde(default = "default_true")]
    pub compliance: bool,
    /// Devices per page (1 to 2000).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

/// Android Management API: a service account key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AndroidSettings {
    /// The enterprise (`LC0...` or `enterprises/LC0...`).
    pub enterprise: String,
    /// The service account key JSON file.
    pub key_file: PathBuf,
    /// The token endpoint; defaults to the key file's `token_uri`.
    #[serde(default)]
    pub token_uri: Option<String>,
    /// The API (`https://androidmanagement.googleapis.com`).
    #[serde(default = "default_android_url")]
    pub api_url: String,
    /// Devices per page (1 to 100).
    #[serde(default = "default_android_page_size")]
    pub page_size: u32,
}

fn default_tenant() -> String {
    crate::model::DEFAULT_TENANT.into()
}
fn default_interval() -> u64 {
    900
}
fn default_true() -> bool {
    true
}
fn default_timeout() -> u64 {
    30
}
fn default_backoff_base() -> u64 {
    30
}
fn default_backoff_max() -> u64 {
    3600
}
fn default_max_retry_after() -> u64 {
    120
}
fn default_login_url() -> String {
    "https://login.microsoftonline.com".into()
}
fn default_graph_url() -> String {
    "https://graph.microsoft.com".into()
}
fn default_android_url() -> String {
    "https://androidmanagement.googleapis.com".into()
}
fn default_page_size() -> u32 {
    100
}
fn default_android_page_size() -> u32 {
    100
}

/// A secret read from a file: never printed, zeroed when dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// The secret.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Wraps a value (tests).
    pub fn new(s: impl Into<String>) -> Self {
        Secret(Zeroizing::new(s.into()))
    }

    /// Reads `path`, trimming a trailing newline; `key` names the setting in errors.
    ///
    /// # Errors
    /// `(key, message)` when the file cannot be read or is empty.
    pub fn read(key: &str, path: &Path) -> Result<Secret, (String, String)> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| (key.to_owned(), format!("{}: {e}", path.display())))?,
        );
        let t = text.trim_end_matches(['\r', '\n']);
        if t.trim().is_empty() {
            return Err((key.to_owned(), format!("{} is empty", path.display())));
        }
        Ok(Secret(Zeroizing::new(t.to_owned())))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn check_url(key: &str, u: &str) -> Result<(), (String, String)> {
    match reqwest::Url::parse(u) {
        Ok(url) if matches!(url.scheme(), "https" | "http") && url.host().is_some() => Ok(()),
        _ => Err((key.to_owned(), format!("{u:?} is not an http(s) URL"))),
    }
}

impl ConnectorSettings {
    /// The `kind` value.
    pub fn kind(&self) -> &'static str {
        match self.vendor {
            VendorSettings::Intune(_) => "intune",
            VendorSettings::Jamf(_) => "jamf",
            VendorSettings::AndroidManagement(_) => "android-management",
        }
    }

    /// Checks values types alone do not, and that secret files can be read.
    ///
    /// # Errors
    /// `(key, message)`, the key relative to the table.
    pub fn check(&self) -> Result<(), (String, String)> {
        let e = |k: &str, m: &str| Err((k.to_owned(), m.to_owned()));
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return e("name", "must be 1 to 64 of A-Z, a-z, 0-9, '-', '_'");
        }
        crate::domain::tenancy::check_tenant_id(&self.tenant)
            .map_err(|x| ("tenant".to_owned(), x.detail.clone()))?;
        if !(10..=86_400).contains(&self.interval_seconds) {
            return e("interval_seconds", "must be between 10 and 86400");
        }
        if !(1..=600).contains(&self.timeout_seconds) {
            return e("timeout_seconds", "must be between 1 and 600");
        }
        if self.backoff_base_seconds == 0 {
            return e("backoff_base_seconds", "must be positive");
        }
        if self.backoff_max_seconds < self.backoff_base_seconds {
            return e(
                "backoff_max_seconds",
                "must be at least backoff_base_seconds",
            );
        }
        if self.max_retry_after_seconds > 3600 {
            return e("max_retry_after_seconds", "must be at most 3600");
        }
        if let Some(p) = &self.ca_file {
            let pem = std::fs::read(p)
                .map_err(|x| ("ca_file".to_owned(), format!("{}: {x}", p.display())))?;
            if pem::parse_many(&pem).map(|v| v.is_empty()).unwrap_or(true) {
                return e("ca_file", "holds no PEM certificate");
            }
        }
        match &self.vendor {
            VendorSettings::Intune(i) => {
                if i.tenant_id.is_empty() || i.tenant_id.contains(['/', '?', '#']) {
                    return e("tenant_id", "must be a directory id or domain");
                }
                if i.client_id.is_empty() {
                    return e("client_id", "must not be empty");
                }
                check_url("login_url", &i.login_url)?;
                check_url("graph_url", &i.graph_url)?;
                Secret::read("client_secret_file", &i.client_secret_file)?;
            }
            VendorSettings::Jamf(j) => {
                check_url("url", &j.url)?;
                match (
                    &j.client_id,
                    &j.client_secret_file,
                    &j.username,
                    &j.password_file,
                ) {
                    (Some(id), Some(f), None, None) => {
                        if id.is_empty() {
                            return e("client_id", "must not be empty");
                        }
                        Secret::read("client_secret_file", f)?;
                    }
                    (None, None, Some(u), Some(f)) => {
                        if u.is_empty() || u.contains(':') {
                            return e("username", "must be non-empty, without ':'");
                        }
                        Secret::read("password_file", f)?;
                    }
                    _ => {
                        return e(
                            "client_id",
                            "give client_id and client_secret_file, or username and password_file",
                        );
                    }
                }
                if !j.computers && !j.mobile_devices {
                    return e(
                        "computers",
                        "one of computers and mobile_devices must be on",
                    );
                }
                if !(1..=2000).contains(&j.page_size) {
                    return e("page_size", "must be between 1 and 2000");
                }
            }
            VendorSettings::AndroidManagement(a) => {
                let ent = a.enterprise.trim_start_matches("enterprises/");
                if ent.is_empty()
                    || !ent
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return e("enterprise", "must be an enterprise id such as LC00abcd");
                }
                if let Some(u) = &a.token_uri {
                    check_url("token_uri", u)?;
                }
                check_url("api_url", &a.api_url)?;
                if !(1..=100).contains(&a.page_size) {
                    return e("page_size", "must be between 1 and 100");
                }
                let key = Secret::read("key_file", &a.key_file)?;
                super::token::ServiceAccountKey::parse(key.expose())
                    .map_err(|m| ("key_file".to_owned(), m))?;
            }
        }
        Ok(())
    }
}
