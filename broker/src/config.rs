//! Settings: parsed once from TOML (`--config FILE`), then environment variables, then
//! command-line flags, into typed [`Settings`]. A bad value stops start-up with a message that
//! names its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use postern_certs::KeyAlgorithm;
use postern_certs::ca::NameConstraints;

/// Everything the broker is configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where sled, keys and certificates live.
    pub data_dir: PathBuf,
    /// HTTPS listener (API, admin, PKI).
    pub listen: SocketAddr,
    /// Plain HTTP listener for CRL and OCSP (relying parties fetch these without TLS).
    pub http_listen: SocketAddr,
    /// Base URL written into certificates for the CRL and OCSP (the plain HTTP listener as
    /// clients reach it). Defaults to `http://{http_listen}`.
    pub http_public_url: Option<String>,
    /// Logging.
    pub log: LogSettings,
    /// The certificate authority.
    pub ca: CaSettings,
    /// The TLS server certificate.
    pub tls: TlsSettings,
    /// CRL and OCSP.
    pub revocation: RevocationSettings,
    /// Request limits.
    pub limits: LimitSettings,
    /// ACME provisioners and validation.
    pub acme: crate::domain::acme::AcmeSettings,
    /// The signed per-tenant feed.
    pub feed: FeedSettings,
    /// The SSF transmitter.
    pub ssf: crate::domain::ssf::SsfSettings,
    /// MDM polling connectors (`[[connectors]]`).
    pub connectors: Vec<crate::connectors::settings::ConnectorSettings>,
    /// SCEP provisioners (`[[scep.provisioners]]`).
    pub scep: crate::domain::scep::ScepSettings,
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `postern_broker=debug,info`.
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The CA hierarchy.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaSettings {
    /// Organisation written into generated CA subjects.
    pub organization: String,
    /// Root key algorithm when generating.
    pub root_algorithm: KeyAlgorithm,
    /// Issuing key algorithm when generating.
    pub issuing_algorithm: KeyAlgorithm,
    /// Root validity in days when generating.
    pub root_validity_days: u32,
    /// Issuing CA validity in days when generating (cut to the root's).
    pub issuing_validity_days: u32,
    /// Name constraints for a generated issuing CA.
    pub name_constraints: NameConstraints,
    /// Environment variable holding the passphrase that encrypts keys at rest; keys are
    /// written unencrypted (mode 0600) when it is unset or empty.
    pub passphrase_env: String,
    /// Import an existing hierarchy instead of generating one.
    pub import: Option<CaImport>,
}

/// An operator's existing CA, imported on `ca init`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaImport {
    /// PEM of the root certificate.
    pub root_cert: PathBuf,
    /// PEM of the issuing certificate (may also hold intermediates above it, issuing first).
    pub issuing_cert: PathBuf,
    /// PKCS#8 PEM of the issuing key (plain or postern-encrypted).
    pub issuing_key: PathBuf,
}

/// The broker's own TLS certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// DNS names and IP addresses it is issued for.
    pub names: Vec<String>,
}

/// CRL and OCSP timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevocationSettings {
    /// CRL nextUpdate - thisUpdate, in hours; a fresh CRL is made at half-life and on every
    /// revocation.
    pub crl_validity_hours: u32,
    /// OCSP response nextUpdate - thisUpdate, in hours.
    pub ocsp_validity_hours: u32,
}

/// Request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("postern-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            http_public_url: None,
            log: LogSettings::default(),
            ca: CaSettings::default(),
            tls: TlsSettings::default(),
            revocation: RevocationSettings::default(),
            limits: LimitSettings::default(),
            acme: crate::domain::acme::AcmeSettings::default(),
            feed: FeedSettings::default(),
            ssf: crate::domain::ssf::SsfSettings::default(),
            connectors: Vec::new(),
            scep: crate::domain::scep::ScepSettings::default(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Default for CaSettings {
    fn default() -> Self {
        CaSettings {
            organization: "postern development CA".into(),
            root_algorithm: KeyAlgorithm::EcdsaP384,
            issuing_algorithm: KeyAlgorithm::EcdsaP256,
            root_validity_days: 3650,
            issuing_validity_days: 1825,
            name_constraints: NameConstraints::default(),
            passphrase_env: "POSTERN_KEY_PASSPHRASE".into(),
            import: None,
        }
    }
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        }
    }
}

impl Default for RevocationSettings {
    fn default() -> Self {
        RevocationSettings {
            crl_validity_hours: 24,
            ocsp_validity_hours: 4,
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_body_bytes: 64 * 1024,
        }
    }
}

/// The signed feed.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedSettings {
    /// The origin each tenant's log is named under (`<origin>/feed/<tenant>`), usually the
    /// broker's host name. Defaults to the first of `tls.names`.
    pub origin: Option<String>,
    /// A checkpoint older than this is signed anew when asked for, in seconds.
    pub checkpoint_refresh_seconds: u32,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            origin: None,
            checkpoint_refresh_seconds: 300,
        }
    }
}

impl Settings {
    /// The feed origin: `feed.origin`, or the first of `tls.names`, or `postern`.
    pub fn feed_origin(&self) -> String {
        self.feed
            .origin
            .clone()
            .or_else(|| self.tls.names.first().cloned())
            .unwrap_or_else(|| "postern".into())
    }

    fn validate_feed(&self) -> Result<(), ConfigError> {
        if let Some(o) = &self.feed.origin
            && (o.is_empty()
                || o.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '+'))
        {
            return Err(err(
                "feed.origin",
                "must be non-empty, without whitespace, '+' or control characters",
            ));
        }
        if !(1..=3600).contains(&self.feed.checkpoint_refresh_seconds) {
            return Err(err(
                "feed.checkpoint_refresh_seconds",
                "must be between 1 and 3600",
            ));
        }
        Ok(())
    }
}

impl Settings {
    fn validate_connectors(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for (i, c) in self.connectors.iter().enumerate() {
            c.check()
                .map_err(|(k, m)| err(&format!("connectors[{i}].{k}"), m))?;
            if !names.insert(&c.name) {
                return Err(err(
                    &format!("connectors[{i}].name"),
                    format!("{:?} appears twice", c.name),
                ));
            }
        }
        Ok(())
    }
}

/// A configuration error that names the offending key.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {key}: {message}")]
pub struct ConfigError {
    /// The key, dotted (`ca.root_algorithm`), or the file.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// Overrides from the command line and environment (both already merged by clap).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data-dir` / `POSTERN_DATA_DIR`
    pub data_dir: Option<PathBuf>,
    /// `--listen` / `POSTERN_LISTEN`
    pub listen: Option<SocketAddr>,
    /// `--http-listen` / `POSTERN_HTTP_LISTEN`
    pub http_listen: Option<SocketAddr>,
    /// `POSTERN_LOG_FORMAT`
    pub log_format: Option<String>,
}

impl Settings {
    /// Reads the TOML file (if any), applies overrides and checks the result.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key (for TOML errors, the key path toml reports).
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
        let mut s = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| err(&path.display().to_string(), e.to_string()))?;
                Self::from_toml(&text)?
            }
            None => Settings::default(),
        };
        if let Some(d) = &overrides.data_dir {
            s.data_dir = d.clone();
        }
        if let Some(l) = overrides.listen {
            s.listen = l;
        }
        if let Some(l) = overrides.http_listen {
            s.http_listen = l;
        }
        if let Some(f) = &overrides.log_format {
            s.log.format = match f.as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                other => {
                    return Err(err(
                        "log.format",
                        format!("{other:?} is not \"text\" or \"json\""),
                    ));
                }
            };
        }
        s.validate()?;
        Ok(s)
    }

    /// Parses TOML text.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key toml points at.
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        toml::from_str::<Settings>(text).map_err(|e| {
            let key = e
                .span()
                .map(|span| key_at(text, span.start))
                .unwrap_or_else(|| "config".into());
            err(&key, e.message().to_owned())
        })
    }

    /// Checks values that types alone do not.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen == self.http_listen {
            return Err(err("http_listen", "must differ from listen"));
        }
        self.validate_feed()?;
        if self.ca.root_algorithm == KeyAlgorithm::RsaSha256 {
            return Err(err(
                "ca.root_algorithm",
                "postern does not generate RSA keys",
            ));
        }
        if self.ca.issuing_algorithm == KeyAlgorithm::RsaSha256 {
            return Err(err(
                "ca.issuing_algorithm",
                "postern does not generate RSA keys",
            ));
        }
        if self.ca.root_validity_days == 0 {
            return Err(err("ca.root_validity_days", "must be positive"));
        }
        if self.ca.issuing_validity_days == 0 {
            return Err(err("ca.issuing_validity_days", "must be positive"));
        }
        if self.revocation.crl_validity_hours == 0 {
            return Err(err("revocation.crl_validity_hours", "must be positive"));
        }
        if self.revocation.ocsp_validity_hours == 0 {
            return Err(err("revocation.ocsp_validity_hours", "must be positive"));
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(err("limits.max_body_bytes", "must be at least 1024"));
        }
        if let Some(u) = &self.http_public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(err("http_public_url", "must be an http:// or https:// URL"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in self.acme.provisioners.iter().enumerate() {
            p.check()
                .map_err(|(k, m)| err(&format!("acme.provisioners[{i}].{k}"), m))?;
            if !names.insert(&p.name) {
                return Err(err(
                    &format!("acme.provisioners[{i}].name"),
                    format!("{:?} appears twice", p.name),
                ));
            }
        }
        if self.acme.order_lifetime_minutes == 0 {
            return Err(err("acme.order_lifetime_minutes", "must be positive"));
        }
        self.ssf
            .check()
            .map_err(|(k, m)| err(&format!("ssf.{k}"), m))?;
        self.validate_connectors()?;
        self.scep
            .check()
            .map_err(|(k, m)| err(&format!("scep.{k}"), m))?;
        for (i, n) in self.tls.names.iter().enumerate() {
            if n.parse::<std::net::IpAddr>().is_err()
                && postern_certs::names::SubjectName::parse_tagged(&format!("dns:{n}")).is_err()
            {
                return Err(err(
                    &format!("tls.names[{i}]"),
                    format!("{n:?} is neither an IP address nor a DNS name"),
                ));
            }
        }
        Ok(())
    }

    /// The SSF issuer: `ssf.issuer`, or `https://<first tls name>:<listen port>`.
    pub fn ssf_issuer(&self) -> String {
        if let Some(i) = &self.ssf.issuer {
            return i.trim_end_matches('/').to_owned();
        }
        let host = self.tls.names.first().map_or_else(
            || self.listen.ip().to_string(),
            |n| match n.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
                _ => n.clone(),
            },
        );
        format!("https://{host}:{}", self.listen.port())
    }

    /// The base URL written into certificates for CRL and OCSP.
    pub fn http_base_url(&self) -> String {
        self.http_public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.http_listen))
            .trim_end_matches('/')
            .to_owned()
    }
}

/// The dotted key at a byte offset of a TOML text: the enclosing `[table]` and the key on
/// that line, for error messages.
fn key_at(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let mut table = String::new();
    for line in before.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        }
    }
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split('=')
        .next()
        .map(str::trim)
        .filter(|k| !k.is_empty() && !k.starts_with('['))
        .unwrap_or("");
    match (table.is_empty(), key.is_empty()) {
        (true, true) => "config".into(),
        (true, false) => key.into(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(text: &str) -> String {
        Settings::from_toml(text).unwrap_err().key
    }

    #[test]
    fn empty_config_is_the_default() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.listen, Settings::default().listen);
        s.validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(key_of("listen = \"nope\""), "listen");
        assert_eq!(
            key_of("[ca]\nroot_algorithm = \"dsa\""),
            "ca.root_algorithm"
        );
        assert_eq!(
            key_of("[revocation]\ncrl_validity_hours = -1"),
            "revocation.crl_validity_hours"
        );
        assert!(key_of("bogus = 1").contains("bogus") || key_of("bogus = 1") == "config");
        let mut s = Settings::default();
        s.http_listen = s.listen;
        assert_eq!(s.validate().unwrap_err().key, "http_listen");
        let mut s = Settings::default();
        s.tls.names.push("not a name".into());
        assert_eq!(s.validate().unwrap_err().key, "tls.names[3]");
        assert_eq!(key_of("[ssf]\nqueue_bound = \"many\""), "ssf.queue_bound");
        let mut s = Settings::default();
        s.ssf.push_backoff_max_seconds = 0.5;
        assert_eq!(
            s.validate().unwrap_err().key,
            "ssf.push_backoff_max_seconds"
        );
        let mut s = Settings::default();
        s.ssf.issuer = Some("ftp://x".into());
        assert_eq!(s.validate().unwrap_err().key, "ssf.issuer");
    }

    #[test]
    fn ssf_issuer_defaults_to_the_https_listener() {
        let s = Settings::default();
        assert_eq!(s.ssf_issuer(), "https://localhost:8443");
        let s = Settings::from_toml("[ssf]\nissuer = \"https://signals.example/\"").unwrap();
        assert_eq!(s.ssf_issuer(), "https://signals.example");
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            listen: Some("127.0.0.1:9443".parse().unwrap()),
            log_format: Some("json".into()),
            ..Overrides::default()
        };
        let s = Settings::load(None, &o).unwrap();
        assert_eq!(s.listen.port(), 9443);
        assert_eq!(s.log.format, LogFormat::Json);
        let bad = Overrides {
            log_format: Some("xml".into()),
            ..Overrides::default()
        };
        assert_eq!(Settings::load(None, &bad).unwrap_err().key, "log.format");
    }
}
