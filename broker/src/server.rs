//! Listeners: HTTPS (rustls on ring) for everything, plain HTTP for CRL and OCSP.
//!
//! The HTTPS listener may ask for client certificates ([`tls_config_with_client_auth`]); the
//! leaf a client presented is handed to every request of its connection as a
//! [`ClientCertificate`] extension, where the `Caller` extractor finds it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::http::auth::ClientCertificate;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A rustls server configuration on the ring provider (no aws-lc).
///
/// # Errors
/// When the key does not match or rustls refuses the chain.
pub fn tls_config(chain: Vec<Vec<u8>>, key_pkcs8: Vec<u8>) -> anyhow::Result<rustls::ServerConfig> {
    server_config(chain, key_pkcs8, None)
}

/// As [`tls_config`], and the server asks every client for a certificate, which is optional:
/// a client that sends none is served as before (bearer tokens). One that sends one must chain
/// it to `client_ca_der` (postern's issuing CA, a trust anchor here) and give it the clientAuth
/// extended key usage, or the handshake fails. Revocation is not checked here: the certificate's
/// status is looked up in the store on every request it authenticates
/// ([`Domain::authenticate_certificate`](crate::domain::Domain::authenticate_certificate)).
///
/// # Errors
/// When the key does not match, rustls refuses the chain, or the CA certificate cannot be a
/// trust anchor.
pub fn tls_config_with_client_auth(
    chain: Vec<Vec<u8>>,
    key_pkcs8: Vec<u8>,
    client_ca_der: &[u8],
) -> anyhow::Result<rustls::ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(client_ca_der.to_vec()))
        .context("client certificate trust anchor")?;
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .allow_unauthenticated()
    .build()
    .context("client certificate verifier")?;
    server_config(chain, key_pkcs8, Some(verifier))
}

fn server_config(
    chain: Vec<Vec<u8>>,
    key_pkcs8: Vec<u8>,
    client_auth: Option<Arc<dyn ClientCertVerifier>>,
) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = chain.into_iter().map(CertificateDer::from).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8));
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("tls protocol versions")?;
    let builder = match client_auth {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .context("tls certificate")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serves `app` over TLS on `listener` until `shutdown` turns true.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "tls handshake timed out");
                    return;
                }
            };
            // the client certificate, if any, goes into every request of this connection
            let peer_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| ClientCertificate(Arc::from(leaf.as_ref())));
            let app = tower::ServiceExt::map_request(
                app,
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    if let Some(c) = &peer_cert {
                        req.extensions_mut().insert(c.clone());
                    }
                    req
                },
            );
            let svc = TowerToHyperService::new(app);
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Serves `app` over plain HTTP until `shutdown` turns true.
pub async fn serve_plain(
    listener: TcpListener,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let res = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(e) = res {
        tracing::error!(error = %e, "plain http listener failed");
    }
}

/// Binds a listener, naming the setting in the error.
///
/// # Errors
/// When the address cannot be bound.
pub async fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{key}: cannot listen on {addr}"))
}
