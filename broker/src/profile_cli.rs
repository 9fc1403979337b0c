//! `postern profile`: fetches a device's enrollment profile from a running broker, as an MDM
//! does (`GET /v1/profiles/{tenant}/devices/{id}/...` with an admin or mdm token), and writes it
//! to a file or standard output. Working against the running broker, not the data directory,
//! keeps one writer on the store and gives the profile the broker's public URLs.

use anyhow::{Context as _, bail};

/// Which form to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Form {
    /// `enrollment.mobileconfig`.
    Mobileconfig,
    /// `enrollment.mobileconfig?signed=true` (CMS, DER).
    Signed,
    /// `declarative` (JSON).
    Declarative,
    /// `android.json`.
    Android,
}

/// What to fetch.
#[derive(Debug, Clone)]
pub struct Options {
    /// The broker's HTTPS base URL (`https://host:8443`).
    pub url: String,
    /// PEM of the CA that issued the broker's TLS certificate.
    pub ca_pem: String,
    /// An admin or mdm token of the tenant.
    pub token: String,
    /// The tenant.
    pub tenant: String,
    /// The device id.
    pub device: String,
    /// The form.
    pub form: Form,
    /// Extra query parameters (`platform`, `os_version`, `provisioner`, `app`, `package`).
    pub query: Vec<(String, String)>,
}

/// The path and query of a form.
pub fn path(o: &Options) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let (leaf, mut query) = match o.form {
        Form::Mobileconfig => ("enrollment.mobileconfig", Vec::new()),
        Form::Signed => ("enrollment.mobileconfig", vec!["signed=true".to_owned()]),
        Form::Declarative => ("declarative", Vec::new()),
        Form::Android => ("android.json", Vec::new()),
    };
    for (k, v) in &o.query {
        query.push(format!("{}={}", enc(k), enc(v)));
    }
    let mut p = format!(
        "/v1/profiles/{}/devices/{}/{leaf}",
        enc(&o.tenant),
        enc(&o.device)
    );
    if !query.is_empty() {
        p.push('?');
        p.push_str(&query.join("&"));
    }
    p
}

/// Fetches the profile: its bytes and content type.
///
/// # Errors
/// Transport failures, or the broker's problem document as the message.
pub async fn fetch(o: &Options) -> anyhow::Result<(Vec<u8>, String)> {
    let client = crate::feed_verify::client_trusting(&o.ca_pem)?;
    let url = format!("{}{}", o.url.trim_end_matches('/'), path(o));
    let resp = client
        .get(&url)
        .bearer_auth(&o.token)
        .send()
        .await
        .with_context(|| url.clone())?;
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.bytes().await?.to_vec();
    if !status.is_success() {
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{url}: {status}: {detail}");
    }
    Ok((body, ct))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded() {
        let o = Options {
            url: "https://h".into(),
            ca_pem: String::new(),
            token: String::new(),
            tenant: "default".into(),
            device: "dev_1".into(),
            form: Form::Signed,
            query: vec![("os_version".into(), "17.4".into())],
        };
        assert_eq!(
            path(&o),
            "/v1/profiles/default/devices/dev%5F1/enrollment.mobileconfig?signed=true&os%5Fversion=17%2E4"
        );
    }
}
