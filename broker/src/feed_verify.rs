//! `postern feed verify`: follows one tenant's feed over HTTPS the way a gateway does, with the
//! verifier of `postern_api::feed::verify`.
//!
//! It fetches the JWK Set and the checkpoint (note and JWS), checks both; when a state file
//! holds the checkpoint trusted on the last run, fetches the consistency proof from it and
//! checks that the log only grew; with a device, fetches and checks its proof and statement.
//! Only when everything verified is the new checkpoint written to the state file (atomically),
//! so the next run checks consistency from it. Any failure is an error: the command exits
//! non-zero.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use postern_api::feed::verify::{TrustedKeys, VerifiedDevice, Verifier};
use postern_api::feed::{self as api, ConsistencyProof, DeviceProof};
use postern_certs::checkpoint::Checkpoint;
use postern_certs::jws::Jwks;

/// What to verify.
#[derive(Debug, Clone)]
pub struct Options {
    /// The broker's HTTPS base URL (`https://host:8443`).
    pub url: String,
    /// The tenant whose feed to follow.
    pub tenant: String,
    /// A bearer token of that tenant (any role) or an operator's.
    pub token: String,
    /// PEM of the CA certificate(s) to trust for the broker's TLS certificate.
    pub ca_pem: String,
    /// Where the last verified checkpoint is kept between runs.
    pub state: Option<PathBuf>,
    /// A device whose newest entry to verify.
    pub device: Option<String>,
    /// The oldest checkpoint accepted.
    pub max_age: Duration,
    /// The broker's feed origin; the URL's host when `None`.
    pub origin: Option<String>,
}

/// What was verified.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The log followed.
    pub log: String,
    /// The checkpoint verified (note form), now trusted.
    pub checkpoint: Checkpoint,
    /// The JWS form's size (verified too).
    pub jws_size: u64,
    /// The size trusted before, when a state file held one.
    pub previous_size: Option<u64>,
    /// The device's verified entry, when asked for.
    pub device: Option<VerifiedDevice>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cp = &self.checkpoint;
        writeln!(f, "log        {}", self.log)?;
        writeln!(
            f,
            "checkpoint size {} root {} at {}",
            cp.size,
            STANDARD.encode(cp.root),
            cp.timestamp.format(&Rfc3339).unwrap_or_default()
        )?;
        writeln!(f, "jws        size {} verified", self.jws_size)?;
        match self.previous_size {
            Some(p) => writeln!(f, "consistent with the size {p} trusted before")?,
            None => writeln!(f, "no earlier checkpoint to check consistency with")?,
        }
        if let Some(d) = &self.device {
            writeln!(
                f,
                "device     entry {} of {} included; statement valid until {}; record {}",
                d.seq, d.at, d.statement_expires, d.record
            )?;
        }
        Ok(())
    }
}

/// The state file: the last checkpoint verified.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    log: String,
    size: u64,
    root: String,
    timestamp: String,
}

/// Runs the verification at `now`.
///
/// # Errors
/// Any fetch that fails or answers other than 200, any verification failure, a state file that
/// cannot be read or written or names another log.
pub async fn run(opts: &Options, now: OffsetDateTime) -> anyhow::Result<Summary> {
    let base = opts.url.trim_end_matches('/');
    let origin = match &opts.origin {
        Some(o) => o.clone(),
        None => reqwest::Url::parse(base)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .with_context(|| format!("{base}: no host to take the feed origin from"))?,
    };
    let client = client_trusting(&opts.ca_pem)?;
    let jwks: Jwks = serde_json::from_slice(
        &fetch(
            &client,
            &format!("{base}/.well-known/jwks.json"),
            None,
            None,
        )
        .await?,
    )
    .context("the JWK Set")?;
    let verifier = Verifier::new(TrustedKeys::Jwks(jwks), &origin, &opts.tenant, opts.max_age);
    let feed = format!("{base}/feed/v1/{}", opts.tenant);
    let token = Some(opts.token.as_str());

    let note = fetch(&client, &format!("{feed}/checkpoint"), token, None).await?;
    let note = String::from_utf8(note).context("the checkpoint note is not UTF-8")?;
    let cp = verifier
        .checkpoint(&note, now)
        .context("the checkpoint note")?;
    let jws = fetch(
        &client,
        &format!("{feed}/checkpoint"),
        token,
        Some(api::JOSE),
    )
    .await?;
    let jws = String::from_utf8(jws).context("the checkpoint JWS is not UTF-8")?;
    let jws_cp = verifier
        .checkpoint_jws(jws.trim(), now)
        .context("the checkpoint JWS")?;

    let mut previous_size = None;
    if let Some(path) = &opts.state
        && path.exists()
    {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        let state: State =
            serde_json::from_str(&text).with_context(|| path.display().to_string())?;
        let trusted = state
            .checkpoint()
            .with_context(|| path.display().to_string())?;
        let proof = if trusted.size > 0 && trusted.size < cp.size {
            let body = fetch(
                &client,
                &format!(
                    "{feed}/consistency?first={}&second={}",
                    trusted.size, cp.size
                ),
                token,
                None,
            )
            .await?;
            let p: ConsistencyProof =
                serde_json::from_slice(&body).context("the consistency proof")?;
            if (p.first, p.second) != (trusted.size, cp.size) {
                bail!("the consistency proof is for other sizes");
            }
            p.proof
        } else {
            Vec::new()
        };
        verifier
            .advance(&trusted, &cp, &proof)
            .with_context(|| format!("from the checkpoint in {}", path.display()))?;
        previous_size = Some(trusted.size);
    }

    let device = match &opts.device {
        None => None,
        Some(id) => {
            let body = fetch(&client, &format!("{feed}/devices/{id}"), token, None).await?;
            let proof: DeviceProof = serde_json::from_slice(&body).context("the device proof")?;
            Some(
                verifier
                    .device(&proof, id, now)
                    .with_context(|| format!("the proof of device {id}"))?,
            )
        }
    };

    if let Some(path) = &opts.state {
        let state = State {
            log: cp.origin.clone(),
            size: cp.size,
            root: STANDARD.encode(cp.root),
            timestamp: cp.timestamp.format(&Rfc3339)?,
        };
        let mut text = serde_json::to_vec_pretty(&state)?;
        text.push(b'\n');
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &text).with_context(|| tmp.display().to_string())?;
        std::fs::rename(&tmp, path).with_context(|| path.display().to_string())?;
    }
    Ok(Summary {
        log: verifier.log().to_owned(),
        checkpoint: cp,
        jws_size: jws_cp.size,
        previous_size,
        device,
    })
}

impl State {
    fn checkpoint(&self) -> anyhow::Result<Checkpoint> {
        let root = STANDARD.decode(&self.root).context("root")?;
        Ok(Checkpoint {
            origin: self.log.clone(),
            size: self.size,
            root: root
                .as_slice()
                .try_into()
                .map_err(|_| anyhow::anyhow!("root is not 32 bytes"))?,
            timestamp: OffsetDateTime::parse(&self.timestamp, &Rfc3339).context("timestamp")?,
        })
    }
}

/// GET `url`; the body of a 200, or an error naming the problem.
async fn fetch(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    accept: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(a) = accept {
        req = req.header(reqwest::header::ACCEPT, a);
    }
    let resp = req.send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.bytes().await.with_context(|| format!("GET {url}"))?;
    if status != reqwest::StatusCode::OK {
        let detail = serde_json::from_slice::<postern_api::Problem>(&body)
            .map(|p| format!("{} {}", p.type_, p.detail.unwrap_or_default()))
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        bail!("GET {url}: {status}: {detail}");
    }
    Ok(body.to_vec())
}

/// An HTTPS client that trusts exactly the certificates of `ca_pem` (rustls on ring).
pub(crate) fn client_trusting(ca_pem: &str) -> anyhow::Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    for block in pem::parse_many(ca_pem).context("the CA file")? {
        if block.tag() == "CERTIFICATE" {
            roots.add(rustls::pki_types::CertificateDer::from(
                block.into_contents(),
            ))?;
        }
    }
    if roots.is_empty() {
        bail!("the CA file holds no certificate");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .build()?)
}
