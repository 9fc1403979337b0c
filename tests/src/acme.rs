//! A small ACME (RFC 8555) client over reqwest, with the `device-attest-01` response of
//! draft-ietf-acme-device-attest: what a managed device's ACME client does, for the end-to-end
//! tests and the enrollment benchmark. It signs with any postern [`Signer`] (ES256, ES384,
//! EdDSA, RS256 account keys).

use std::sync::Arc;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use postern_certs::Signer;
use postern_certs::jws::{self, Jwk};

/// A response: status, headers we use, body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Location`.
    pub location: Option<String>,
    /// `Retry-After`, seconds.
    pub retry_after: Option<u64>,
    /// `Content-Type`.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The problem type of an error response, without the ACME URN prefix.
    pub fn problem(&self) -> Option<String> {
        self.json()["type"].as_str().map(|t| {
            t.trim_start_matches("urn:ietf:params:acme:error:")
                .to_owned()
        })
    }
}

/// An ACME client bound to one directory and one account key.
pub struct Client {
    http: reqwest::Client,
    /// The directory object.
    pub directory: Value,
    key: Arc<dyn Signer>,
    /// The account URL once registered.
    pub kid: Option<String>,
    nonce: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Fetches the directory.
    ///
    /// # Errors
    /// Transport failures, a directory that is not JSON.
    pub async fn new(
        http: reqwest::Client,
        directory_url: &str,
        key: Arc<dyn Signer>,
    ) -> anyhow::Result<Self> {
        let directory: Value = http
            .get(directory_url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(Client {
            http,
            directory,
            key,
            kid: None,
            nonce: None,
        })
    }

    /// The account key's public JWK.
    ///
    /// # Errors
    /// When the key cannot be expressed as a JWK.
    pub fn jwk(&self) -> anyhow::Result<Jwk> {
        Ok(Jwk::from_signer(&*self.key)?)
    }

    /// `token "." thumbprint`.
    ///
    /// # Errors
    /// As [`Client::jwk`].
    pub fn key_authorization(&self, token: &str) -> anyhow::Result<String> {
        Ok(format!("{token}.{}", self.jwk()?.thumbprint()))
    }

    /// A directory URL.
    ///
    /// # Errors
    /// When the directory lacks it.
    pub fn url(&self, name: &str) -> anyhow::Result<String> {
        self.directory[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("directory has no {name}"))
    }

    async fn fresh_nonce(&mut self) -> anyhow::Result<String> {
        if let Some(n) = self.nonce.take() {
            return Ok(n);
        }
        let r = self.http.head(self.url("newNonce")?).send().await?;
        r.headers()
            .get("replay-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .context("newNonce gave no Replay-Nonce")
    }

    /// The signed request body for `url` (payload `None`: POST-as-GET), signing with `kid` when
    /// registered (unless `use_jwk`), else with the JWK.
    ///
    /// # Errors
    /// Signing failures.
    pub fn sign(
        &self,
        url: &str,
        nonce: &str,
        payload: Option<&Value>,
        use_jwk: bool,
    ) -> anyhow::Result<Value> {
        let mut h = Map::new();
        h.insert("nonce".into(), json!(nonce));
        h.insert("url".into(), json!(url));
        match (&self.kid, use_jwk) {
            (Some(k), false) => h.insert("kid".into(), json!(k)),
            _ => {
                let mut j = serde_json::to_value(self.jwk()?)?;
                if let Some(o) = j.as_object_mut() {
                    o.remove("kid");
                    o.remove("alg");
                    o.remove("use");
                }
                h.insert("jwk".into(), j)
            }
        };
        let body = match payload {
            Some(p) => serde_json::to_vec(p)?,
            None => Vec::new(),
        };
        Ok(jws::sign_flattened(&*self.key, h, &body)?)
    }

    /// Sends a raw body to `url` with the JOSE content type; remembers the nonce it returns.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn send_raw(&mut self, url: &str, body: Vec<u8>) -> anyhow::Result<Reply> {
        let r = self
            .http
            .post(url)
            .header("content-type", "application/jose+json")
            .body(body)
            .send()
            .await?;
        let h = r.headers();
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let Some(n) = get("replay-nonce") {
            self.nonce = Some(n);
        }
        let reply = Reply {
            status: r.status().as_u16(),
            location: get("location"),
            retry_after: get("retry-after").and_then(|v| v.parse().ok()),
            content_type: get("content-type").unwrap_or_default(),
            body: Vec::new(),
        };
        let body = r.bytes().await?.to_vec();
        Ok(Reply { body, ..reply })
    }

    /// A signed POST; retried once on `badNonce`, as RFC 8555 §6.5 lets clients do.
    ///
    /// # Errors
    /// Transport or signing failures.
    pub async fn post(&mut self, url: &str, payload: Option<&Value>) -> anyhow::Result<Reply> {
        for _ in 0..2 {
            let nonce = self.fresh_nonce().await?;
            let body = serde_json::to_vec(&self.sign(url, &nonce, payload, false)?)?;
            let r = self.send_raw(url, body).await?;
            if r.problem().as_deref() != Some("badNonce") {
                return Ok(r);
            }
        }
        bail!("badNonce twice")
    }

    /// `newAccount`; remembers the account URL.
    ///
    /// # Errors
    /// When the server refuses.
    pub async fn register(&mut self, extra: Value) -> anyhow::Result<Reply> {
        let url = self.url("newAccount")?;
        let mut payload = json!({ "termsOfServiceAgreed": true });
        if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        let nonce = self.fresh_nonce().await?;
        let body = serde_json::to_vec(&self.sign(&url, &nonce, Some(&payload), true)?)?;
        let r = self.send_raw(&url, body).await?;
        if r.status == 200 || r.status == 201 {
            self.kid = r.location.clone();
        }
        Ok(r)
    }

    /// `newOrder` for `identifiers`; returns the reply (order in the body, URL in Location).
    ///
    /// # Errors
    /// Transport failures.
    pub async fn new_order(&mut self, identifiers: Value) -> anyhow::Result<Reply> {
        let url = self.url("newOrder")?;
        self.post(&url, Some(&json!({ "identifiers": identifiers })))
            .await
    }

    /// Polls `url` (POST-as-GET) until `status` is not `pending`/`processing`, at most
    /// `tries` times, honouring Retry-After up to a second.
    ///
    /// # Errors
    /// When it never settles.
    pub async fn poll(&mut self, url: &str, tries: usize) -> anyhow::Result<Value> {
        for _ in 0..tries {
            let r = self.post(url, None).await?;
            let v = r.json();
            match v["status"].as_str() {
                Some("pending" | "processing") => {
                    let wait = r.retry_after.unwrap_or(1).min(1);
                    tokio::time::sleep(std::time::Duration::from_millis(100 * wait.max(1))).await;
                }
                _ => return Ok(v),
            }
        }
        bail!("{url} did not settle")
    }
}

/// `{"attObj": base64url(att_obj)}`.
pub fn attestation_payload(att_obj: &[u8]) -> Value {
    json!({ "attObj": URL_SAFE_NO_PAD.encode(att_obj) })
}

/// `{"csr": base64url(der)}`.
pub fn finalize_payload(csr_der: &[u8]) -> Value {
    json!({ "csr": URL_SAFE_NO_PAD.encode(csr_der) })
}
