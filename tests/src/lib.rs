//! End-to-end harness: a real postern broker (real TLS, real sled files) on loopback, in its
//! own runtime so it can be stopped and started again on the same data directory, and an
//! HTTPS client that trusts only the broker's root CA.

pub mod acme;
pub mod device;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{oneshot, watch};

use postern_broker::config::Settings;
use postern_broker::domain::ssf::Ssf;
use postern_broker::domain::{Domain, SystemClock};
use postern_broker::http::{self, AppState};
use postern_broker::{app, server};

/// The admin token the harness starts brokers with.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";

/// A running broker.
#[derive(Debug)]
pub struct Broker {
    /// HTTPS base URL.
    pub https: String,
    /// Plain HTTP base URL.
    pub http: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The broker's SSF transmitter, held weakly so that stopping the broker releases its
    /// store.
    ssf: std::sync::Weak<Ssf>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The broker's domain and the runtime it runs on, for what has no HTTP API yet.
    inside: (std::sync::Weak<Domain>, tokio::runtime::Handle),
}

impl Broker {
    /// Starts a broker on `data_dir` with loopback ports chosen by the OS.
    ///
    /// # Errors
    /// When it cannot start.
    pub fn start(data_dir: &Path) -> anyhow::Result<Broker> {
        Broker::start_with(data_dir, "")
    }

    /// Starts a broker on `data_dir` configured with the TOML text `config` (data directory
    /// and listeners are the harness's).
    ///
    /// # Errors
    /// When the configuration is refused or the broker cannot start.
    pub fn start_with(data_dir: &Path, config: &str) -> anyhow::Result<Broker> {
        let mut settings = Settings::from_toml(config)?;
        settings.data_dir = data_dir.to_path_buf();
        settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.http_listen = SocketAddr::from(([127, 0, 0, 1], 1));
        settings.validate()?;
        type Ready = (
            (SocketAddr, SocketAddr, Arc<Ssf>),
            (std::sync::Weak<Domain>, tokio::runtime::Handle),
        );
        let (ready_tx, ready_rx) = oneshot::channel::<anyhow::Result<Ready>>();
        let (stop_tx, stop_rx) = watch::channel(false);
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let started = async {
                    let https = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    let mut settings = settings;
                    settings.http_listen = plain.local_addr()?;
                    settings.listen = https.local_addr()?;
                    let app = app::open(settings, Arc::new(SystemClock)).await?;
                    app.domain.ensure_bootstrap_token(Some(ADMIN_TOKEN)).await?;
                    let (chain, key) = app::ensure_tls(&app).await?;
                    let tls = Arc::new(server::tls_config_with_client_auth(
                        chain,
                        key,
                        app.domain.pki().issuer().certificate().der(),
                    )?);
                    let ssf = app::open_ssf(&app)?;
                    app.posture.set_ssf(Arc::clone(&ssf));
                    let state = AppState::new(
                        Arc::clone(&app.domain),
                        Arc::clone(&app.acme),
                        Arc::clone(&app.posture),
                    )
                    .with_ssf(Arc::clone(&ssf));
                    let connectors = app::open_connectors(&app)?;
                    let state = state.with_connectors(Arc::clone(&connectors));
                    let scep = postern_broker::scep_ra::open_scep(&app).await?;
                    let state = state.with_scep(scep);
                    let addrs = (https.local_addr()?, plain.local_addr()?, Arc::clone(&ssf));
                    let pushers = tokio::spawn(ssf.run_push(stop_rx.clone()));
                    let polling = tokio::spawn(connectors.run(stop_rx.clone()));
                    let max = app.settings.limits.max_body_bytes;
                    let t1 = tokio::spawn(server::serve_tls(
                        https,
                        tls,
                        http::router(state.clone(), max),
                        stop_rx.clone(),
                    ));
                    let t2 = tokio::spawn(server::serve_plain(
                        plain,
                        http::plain_router(state, max),
                        stop_rx.clone(),
                    ));
                    anyhow::Ok((addrs, app, t1, t2, (pushers, polling)))
                };
                match started.await {
                    Ok((addrs, app, t1, t2, (pushers, polling))) => {
                        let inside = (
                            Arc::downgrade(&app.domain),
                            tokio::runtime::Handle::current(),
                        );
                        let _ = ready_tx.send(Ok((addrs, inside)));
                        let mut stop_rx = stop_rx;
                        let _ = stop_rx.changed().await;
                        let _ = t1.await;
                        let _ = t2.await;
                        let _ = pushers.await;
                        let _ = polling.await;
                        let _ = app.domain.flush().await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
            // dropping the runtime ends every connection task, which releases the sled lock
            drop(rt);
        });
        let ((https, http, ssf), inside) = ready_rx
            .blocking_recv()
            .context("broker thread ended before it was ready")??;
        Ok(Broker {
            https: format!("https://localhost:{}", https.port()),
            http: format!("http://127.0.0.1:{}", http.port()),
            data_dir: data_dir.to_path_buf(),
            ssf: Arc::downgrade(&ssf),
            stop: Some(stop_tx),
            thread: Some(thread),
            inside,
        })
    }

    /// Runs `f` with the broker's domain on the broker's own runtime and returns its output:
    /// for actions that have no HTTP API (such as appending to the feed).
    ///
    /// # Errors
    /// When the task panics or the broker stops under it.
    pub async fn run_inside<F, Fut, T>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(Arc<Domain>) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (domain, runtime) = &self.inside;
        let domain = domain.upgrade().context("the broker has stopped")?;
        Ok(runtime.spawn(f(domain)).await?)
    }

    /// The broker's SSF transmitter, to publish events through as the posture engine does.
    /// Drop it before stopping the broker.
    ///
    /// # Errors
    /// When the broker has stopped.
    pub fn ssf(&self) -> anyhow::Result<Arc<Ssf>> {
        self.ssf.upgrade().context("the broker has stopped")
    }

    /// The root CA PEM that clients trust.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn root_pem(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.data_dir.join("ca/root.pem"))?)
    }

    /// An HTTPS client trusting only this broker's root (rustls on ring).
    ///
    /// # Errors
    /// When the root cannot be read or the client cannot be built.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        client_trusting(&self.root_pem()?)
    }

    /// Stops the broker and waits until its data directory is free.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An HTTPS client that trusts exactly the given root PEM.
///
/// # Errors
/// When the PEM holds no certificate.
pub fn client_trusting(root_pem: &str) -> anyhow::Result<reqwest::Client> {
    let cfg = client_config(root_pem, None)?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .build()?)
}

/// An HTTPS client that trusts exactly the given root PEM and presents `chain_pem` (leaf
/// first) with the PKCS#8 key `key_pem` as its TLS client certificate.
///
/// # Errors
/// When a PEM holds no certificate or key, or rustls refuses the identity.
pub fn client_with_identity(
    root_pem: &str,
    chain_pem: &str,
    key_pem: &str,
) -> anyhow::Result<reqwest::Client> {
    let cfg = client_config(root_pem, Some((chain_pem, key_pem)))?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .build()?)
}

/// A rustls client configuration (ring) trusting exactly `root_pem`, with an optional client
/// identity: a certificate chain PEM (leaf first) and a PKCS#8 key PEM.
///
/// # Errors
/// When a PEM holds no certificate or key, or rustls refuses the identity.
pub fn client_config(
    root_pem: &str,
    identity: Option<(&str, &str)>,
) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for block in pem_der_blocks(root_pem) {
        roots.add(CertificateDer::from(block))?;
    }
    anyhow::ensure!(!roots.is_empty(), "no certificate in the root PEM");
    // reqwest consults the process-wide provider too; ring is the only one compiled in
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match identity {
        None => builder.with_no_client_auth(),
        Some((chain_pem, key_pem)) => {
            let chain: Vec<CertificateDer<'static>> = pem_der_blocks(chain_pem)
                .into_iter()
                .map(CertificateDer::from)
                .collect();
            anyhow::ensure!(!chain.is_empty(), "no certificate in the client chain PEM");
            let key = pem_der_blocks(key_pem)
                .into_iter()
                .next()
                .context("no key in the client key PEM")?;
            builder
                .with_client_auth_cert(chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)))?
        }
    })
}

/// The DER contents of every PEM block in `text`, in order.
pub fn pem_der_blocks(text: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") {
            cur = Some(String::new());
        } else if line.starts_with("-----END ") {
            if let Some(b) = cur.take()
                && let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b)
            {
                out.push(der);
            }
        } else if let Some(b) = cur.as_mut() {
            b.push_str(line.trim());
        }
    }
    out
}
