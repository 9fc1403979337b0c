//! Assembly: opens the data directory, creates or loads the CA, and builds the [`Domain`]
//! with its OCSP responder and the broker's TLS certificate. Used by `postern serve` and by
//! the offline CLI commands.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use postern_certs::ca::{self, CaCertificate, CaParams, Issuer};
use postern_certs::issue::DistributionUrls;
use postern_certs::names::SubjectName;
use postern_certs::profile::SubjectKeyKind;
use postern_certs::signer::{Pkcs8Key, generate};
use postern_certs::{KeyAlgorithm, KeySigner, Signer};

use crate::config::Settings;
use crate::domain::pki::{IssuedCertificate, KeyToCertify, Pki, Responder};
use crate::domain::{Clock, Domain, Principal};
use crate::keystore::{FileKeyStore, KeyName};
use crate::model::DEFAULT_TENANT;
use crate::store::Store;
use crate::store::sled::SledStore;

/// A delegated OCSP responder certificate is replaced when it has less than this left.
const OCSP_RENEW_BEFORE: time::Duration = time::Duration::days(7);
/// The TLS server certificate is replaced when it has less than this left.
const TLS_RENEW_BEFORE: time::Duration = time::Duration::days(30);

/// The opened service.
#[derive(Debug)]
pub struct App {
    /// The settings it runs with.
    pub settings: Settings,
    /// The domain.
    pub domain: Arc<Domain>,
    /// Key and certificate files.
    pub keys: FileKeyStore,
    /// Whether `ca init` ran during this open.
    pub ca_created: bool,
    /// ACME.
    pub acme: Arc<crate::domain::acme::Acme>,
    /// Signing keys for route decisions, feed checkpoints and SETs.
    pub signing: Arc<crate::domain::keys::Keys>,
    /// Posture, routing, policy, and the feed.
    pub posture: Arc<crate::domain::posture::Posture>,
}

/// The passphrase for keys at rest, from the environment variable `ca.passphrase_env` names.
pub fn passphrase_from_env(settings: &Settings) -> Option<Zeroizing<Vec<u8>>> {
    std::env::var(&settings.ca.passphrase_env)
        .ok()
        .filter(|p| !p.is_empty())
        .map(|p| Zeroizing::new(p.into_bytes()))
}

fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("setting permissions on {}", dir.display()))?;
    }
    Ok(())
}

/// Creates the CA hierarchy (or imports the configured one) unless it exists. Returns whether
/// it did anything.
///
/// # Errors
/// I/O, key, or import check failures.
pub fn init_ca(
    settings: &Settings,
    keys: &FileKeyStore,
    now: OffsetDateTime,
) -> anyhow::Result<bool> {
    ensure_data_dir(&settings.data_dir)?;
    if keys.has_cert(KeyName::Issuing) {
        return Ok(false);
    }
    if let Some(imp) = &settings.ca.import {
        let root_pem = fs::read_to_string(&imp.root_cert)
            .with_context(|| format!("ca.import.root_cert: {}", imp.root_cert.display()))?;
        let issuing_pem = fs::read_to_string(&imp.issuing_cert)
            .with_context(|| format!("ca.import.issuing_cert: {}", imp.issuing_cert.display()))?;
        let key_pem =
            Zeroizing::new(fs::read_to_string(&imp.issuing_key).with_context(|| {
                format!("ca.import.issuing_key: {}", imp.issuing_key.display())
            })?);
        let root = CaCertificate::from_pem_chain(&root_pem).context("ca.import.root_cert")?;
        let chain =
            CaCertificate::from_pem_chain(&issuing_pem).context("ca.import.issuing_cert")?;
        let key = keys.decode_key(&key_pem).context("ca.import.issuing_key")?;
        let signer: Arc<dyn Signer> =
            Arc::new(KeySigner::from_pkcs8(key.as_der()).context("ca.import.issuing_key")?);
        let mut up: Vec<CaCertificate> = chain[1..].to_vec();
        if up.last().map(CaCertificate::der) != root.first().map(CaCertificate::der) {
            up.extend(root.iter().take(1).cloned());
        }
        Issuer::new(chain[0].clone(), up.clone(), signer).context("ca.import")?;
        keys.write_key(KeyName::Issuing, &key)?;
        keys.write_cert(KeyName::Root, &root[0].to_pem())?;
        let mut text = chain[0].to_pem();
        for c in &up {
            text.push_str(&c.to_pem());
        }
        keys.write_cert(KeyName::Issuing, &text)?;
        return Ok(true);
    }
    let c = &settings.ca;
    let root_key = generate(c.root_algorithm)?;
    let root_signer = KeySigner::from_pkcs8(root_key.as_der())?;
    let issuing_key = generate(c.issuing_algorithm)?;
    let issuing_signer = KeySigner::from_pkcs8(issuing_key.as_der())?;
    let root = ca::create_root(
        &root_signer,
        &CaParams {
            common_name: format!("{} Root", c.organization),
            organization: Some(c.organization.clone()),
            validity: Duration::from_secs(u64::from(c.root_validity_days) * 86_400),
            now,
            name_constraints: Default::default(),
        },
    )?;
    let issuing = ca::create_intermediate(
        &root,
        &root_signer,
        &issuing_signer,
        &CaParams {
            common_name: format!("{} Issuing CA", c.organization),
            organization: Some(c.organization.clone()),
            validity: Duration::from_secs(u64::from(c.issuing_validity_days) * 86_400),
            now,
            name_constraints: c.name_constraints.clone(),
        },
    )?;
    keys.write_key(KeyName::Root, &root_key)?;
    keys.write_key(KeyName::Issuing, &issuing_key)?;
    keys.write_cert(KeyName::Root, &root.to_pem())?;
    // the issuing certificate is written last: its presence means the CA is complete
    keys.write_cert(
        KeyName::Issuing,
        &format!("{}{}", issuing.to_pem(), root.to_pem()),
    )?;
    Ok(true)
}

/// Loads the issuing CA from the data directory.
///
/// # Errors
/// Missing or inconsistent files.
pub fn load_issuer(keys: &FileKeyStore) -> anyhow::Result<Issuer> {
    let text = keys.read_cert(KeyName::Issuing)?;
    let chain = CaCertificate::from_pem_chain(&text)
        .with_context(|| keys.cert_path(KeyName::Issuing).display().to_string())?;
    let signer: Arc<dyn Signer> = Arc::new(keys.signer(KeyName::Issuing)?);
    Issuer::new(chain[0].clone(), chain[1..].to_vec(), signer)
        .with_context(|| keys.cert_path(KeyName::Issuing).display().to_string())
}

/// Opens the store and the CA (creating it on first use) and builds the domain.
///
/// # Errors
/// Anything that stops start-up, with the file or key named.
pub async fn open(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
    let passphrase = passphrase_from_env(&settings);
    open_with_passphrase(settings, clock, passphrase).await
}

/// [`open`] with the passphrase for keys at rest given directly.
///
/// # Errors
/// As [`open`].
pub async fn open_with_passphrase(
    settings: Settings,
    clock: Arc<dyn Clock>,
    passphrase: Option<Zeroizing<Vec<u8>>>,
) -> anyhow::Result<App> {
    ensure_data_dir(&settings.data_dir)?;
    let store: Arc<dyn Store> = Arc::new(
        SledStore::open(&settings.data_dir.join("db")).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let keys = FileKeyStore::new(&settings.data_dir, passphrase.clone());
    let ca_created = init_ca(&settings, &keys, clock.now())?;
    let issuer = Arc::new(load_issuer(&keys)?);
    let feed = open_feed(
        &settings,
        &store,
        passphrase.as_deref().map(Vec::as_slice),
        clock.now(),
    )?;
    let signing = Arc::clone(feed.keys());
    let base = settings.http_base_url();
    let urls = DistributionUrls {
        crl: Some(format!("{base}/pki/crl")),
        ocsp: Some(format!("{base}/pki/ocsp")),
        ca_issuers: Some(format!("{base}/pki/issuing.crt")),
    };
    let pki = Pki::new(
        Arc::clone(&issuer),
        Vec::new(),
        urls,
        Duration::from_secs(u64::from(settings.revocation.crl_validity_hours) * 3600),
        Duration::from_secs(u64::from(settings.revocation.ocsp_validity_hours) * 3600),
    );
    let domain = Arc::new(Domain::new(store, clock, pki).with_feed(Arc::clone(&feed)));
    domain.ensure_default_tenant().await?;
    if ca_created {
        domain
            .record(
                &Principal::system(),
                DEFAULT_TENANT,
                "ca.init",
                issuer.certificate().subject(),
                json!({
                    "root_sha256": issuer.root().fingerprint_sha256(),
                    "issuing_sha256": issuer.certificate().fingerprint_sha256(),
                    "imported": settings.ca.import.is_some(),
                }),
            )
            .await?;
    }
    ensure_responder(&domain, &keys).await?;
    let acme = Arc::new(
        crate::domain::acme::Acme::new(Arc::clone(&domain), settings.acme.clone())
            .map_err(|(k, m)| anyhow::anyhow!("configuration: acme.{k}: {m}"))?,
    );
    acme.refresh_revocation_lists().await;
    let posture = Arc::new(crate::domain::posture::Posture::new(
        Arc::clone(&domain),
        Arc::clone(&signing),
        feed,
    ));
    acme.set_posture(Arc::clone(&posture));
    Ok(App {
        settings,
        domain,
        keys,
        ca_created,
        acme,
        signing,
        posture,
    })
}

/// Opens the broker's signing keys under the data directory (creating them on first start)
/// and the feed they sign.
fn open_feed(
    settings: &Settings,
    store: &Arc<dyn Store>,
    passphrase: Option<&[u8]>,
    now: OffsetDateTime,
) -> anyhow::Result<Arc<crate::domain::feed::Feed>> {
    let cause = |e: crate::domain::DomainError| e.cause.unwrap_or(e.detail);
    let keys = crate::domain::keys::Keys::open(&settings.data_dir, passphrase, now)
        .map_err(|e| anyhow::anyhow!("signing keys: {}", cause(e)))?;
    let feed =
        crate::domain::feed::Feed::open(Arc::clone(store), Arc::new(keys), settings.feed_origin())
            .map_err(|e| anyhow::anyhow!("feed: {}", cause(e)))?
            .with_checkpoint_refresh(time::Duration::seconds(i64::from(
                settings.feed.checkpoint_refresh_seconds,
            )));
    Ok(Arc::new(feed))
}

/// A leaf the broker keeps for itself is reusable when its key is on disk, it was issued by
/// the current issuing CA, and it has more than `renew_before` left.
fn reusable_leaf(
    keys: &FileKeyStore,
    name: KeyName,
    issuer: &Issuer,
    now: OffsetDateTime,
    renew_before: time::Duration,
    want_names: Option<&[SubjectName]>,
) -> Option<(Vec<u8>, KeySigner)> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let text = keys.read_cert(name).ok()?;
    let first = pem::parse_many(&text).ok()?.into_iter().next()?;
    let der = first.into_contents();
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    let signer = keys.signer(name).ok()?;
    let (_, ca) = X509Certificate::from_der(issuer.certificate().der()).ok()?;
    let fresh = cert.validity().not_after.to_datetime() - now > renew_before;
    let ours = cert.verify_signature(Some(ca.public_key())).is_ok();
    let same_key = cert.public_key().raw == signer.spki_der();
    let names_ok = match want_names {
        None => true,
        Some(want) => cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .and_then(|san| {
                postern_certs::names::from_x509_general_names(&san.value.general_names).ok()
            })
            .is_some_and(|have| have.len() == want.len() && want.iter().all(|n| have.contains(n))),
    };
    (fresh && ours && same_key && names_ok).then_some((der, signer))
}

/// A fresh P-256 key and a certificate for it, for the broker's own use (OCSP responder, TLS).
async fn own_leaf(
    domain: &Domain,
    profile: &str,
    common_name: &str,
    names: &[SubjectName],
) -> anyhow::Result<(Pkcs8Key, KeySigner, IssuedCertificate)> {
    let key = generate(KeyAlgorithm::EcdsaP256)?;
    let signer = KeySigner::from_pkcs8(key.as_der())?;
    let issued = domain
        .issue_key(
            &Principal::system(),
            DEFAULT_TENANT,
            profile,
            KeyToCertify {
                spki_der: signer.spki_der(),
                key_kind: SubjectKeyKind::EcdsaP256,
            },
            Some(common_name),
            names,
            None,
            json!({ "source": profile }),
        )
        .await
        .map_err(|e| anyhow::anyhow!("issuing the {profile} certificate: {e}"))?;
    Ok((key, signer, issued))
}

/// Installs the delegated OCSP responder: the one on disk while it has more than a week left,
/// otherwise a new key and certificate. `postern serve` calls it hourly.
///
/// # Errors
/// Issuance or file failures.
pub async fn ensure_responder(domain: &Domain, keys: &FileKeyStore) -> anyhow::Result<()> {
    let issuer = domain.pki().issuer();
    let now = domain.clock().now();
    let (der, signer) =
        match reusable_leaf(keys, KeyName::Ocsp, issuer, now, OCSP_RENEW_BEFORE, None) {
            Some(x) => x,
            None => {
                let (key, signer, issued) =
                    own_leaf(domain, "ocsp-signer", "postern OCSP responder", &[]).await?;
                keys.write_key(KeyName::Ocsp, &key)?;
                keys.write_cert(KeyName::Ocsp, &issued.chain_pem)?;
                let der = pem::parse(&issued.certificate_pem)?.into_contents();
                (der, signer)
            }
        };
    domain.pki().set_responder(Responder {
        cert_der: der,
        signer: Arc::new(signer),
    });
    Ok(())
}

/// The TLS server certificate chain and key (DER), issued from the broker's own CA for the
/// configured names, reused while fresh.
///
/// # Errors
/// Bad names in `tls.names`, issuance or file failures.
pub async fn ensure_tls(app: &App) -> anyhow::Result<(Vec<Vec<u8>>, Vec<u8>)> {
    let domain = &app.domain;
    let names: Vec<SubjectName> = app
        .settings
        .tls
        .names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SubjectName::Ip(ip)),
            Err(_) => SubjectName::parse_tagged(&format!("dns:{n}")),
        })
        .collect::<Result<_, _>>()
        .context("tls.names")?;
    let issuer = domain.pki().issuer();
    let now = domain.clock().now();
    let reuse = reusable_leaf(
        &app.keys,
        KeyName::TlsServer,
        issuer,
        now,
        TLS_RENEW_BEFORE,
        Some(&names),
    );
    if reuse.is_none() {
        let (key, _, issued) = own_leaf(domain, "tls-server", "postern broker", &names).await?;
        app.keys.write_key(KeyName::TlsServer, &key)?;
        app.keys.write_cert(KeyName::TlsServer, &issued.chain_pem)?;
    }
    let chain_text = app.keys.read_cert(KeyName::TlsServer)?;
    let chain: Vec<Vec<u8>> = pem::parse_many(&chain_text)?
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect();
    if chain.is_empty() {
        bail!(
            "{}: no certificate",
            app.keys.cert_path(KeyName::TlsServer).display()
        );
    }
    let key = app.keys.key(KeyName::TlsServer)?;
    Ok((chain, key.as_der().to_vec()))
}

/// A complete domain in memory: a fresh CA, a [`MemoryStore`](crate::store::memory::MemoryStore)
/// or the given store, and an OCSP responder; nothing touches the disk unless the store does.
/// For tests, benchmarks and throwaway runs.
///
/// # Errors
/// Key generation or issuance failures.
pub async fn ephemeral(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<Domain>> {
    let now = clock.now();
    let root_signer = KeySigner::from_pkcs8(generate(KeyAlgorithm::EcdsaP384)?.as_der())?;
    let issuing_signer: Arc<dyn Signer> = Arc::new(KeySigner::from_pkcs8(
        generate(KeyAlgorithm::EcdsaP256)?.as_der(),
    )?);
    let params = |cn: &str, days: u64| CaParams {
        common_name: cn.into(),
        organization: Some("postern ephemeral CA".into()),
        validity: Duration::from_secs(days * 86_400),
        now,
        name_constraints: Default::default(),
    };
    let root = ca::create_root(&root_signer, &params("postern ephemeral Root", 3650))?;
    let issuing = ca::create_intermediate(
        &root,
        &root_signer,
        &*issuing_signer,
        &params("postern ephemeral Issuing CA", 1825),
    )?;
    let issuer = Arc::new(Issuer::new(issuing, vec![root], issuing_signer)?);
    let urls = DistributionUrls {
        crl: Some("http://127.0.0.1/pki/crl".into()),
        ocsp: Some("http://127.0.0.1/pki/ocsp".into()),
        ca_issuers: None,
    };
    let pki = Pki::new(
        issuer,
        Vec::new(),
        urls,
        Duration::from_secs(86_400),
        Duration::from_secs(4 * 3600),
    );
    let feed = crate::domain::feed::Feed::open(
        Arc::clone(&store),
        Arc::new(crate::domain::keys::Keys::ephemeral(now)?),
        "localhost".into(),
    )?;
    let domain = Arc::new(Domain::new(store, clock, pki).with_feed(Arc::new(feed)));
    domain.ensure_default_tenant().await?;
    let (_, key, issued) = own_leaf(&domain, "ocsp-signer", "postern OCSP responder", &[]).await?;
    domain.pki().set_responder(Responder {
        cert_der: pem::parse(&issued.certificate_pem)?.into_contents(),
        signer: Arc::new(key),
    });
    Ok(domain)
}

/// A posture service over `domain` and its feed (tests, benches).
///
/// # Errors
/// When the domain has no feed.
pub fn ephemeral_posture(
    domain: &Arc<Domain>,
) -> anyhow::Result<Arc<crate::domain::posture::Posture>> {
    let feed = Arc::clone(domain.feed().map_err(|e| anyhow::anyhow!("feed: {e}"))?);
    Ok(Arc::new(crate::domain::posture::Posture::new(
        Arc::clone(domain),
        Arc::clone(feed.keys()),
        feed,
    )))
}

/// The SSF transmitter for an opened service: its signing keys, an HTTPS client for pushes
/// that trusts the system's roots and the broker's own root CA (receivers may hold certificates
/// from either), and the `[ssf]` settings. The caller spawns [`Ssf::run_push`].
///
/// [`Ssf::run_push`]: crate::domain::ssf::Ssf::run_push
///
/// # Errors
/// Key generation or client construction failures.
pub fn open_ssf(app: &App) -> anyhow::Result<Arc<crate::domain::ssf::Ssf>> {
    use crate::domain::ssf::Ssf;
    let keys = Arc::clone(&app.signing);
    let mut roots = crate::domain::acme::system_roots();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            app.domain.pki().issuer().root().der().to_vec(),
        ))
        .context("ssf: the broker's root CA")?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("postern-ssf")
        .build()
        .context("ssf: push client")?;
    Ok(Arc::new(
        Ssf::new(
            Arc::clone(app.domain.store()),
            keys,
            Arc::clone(app.domain.clock()),
            app.settings.ssf_issuer(),
            http,
        )
        .with_settings(app.settings.ssf.clone()),
    ))
}

/// The `[[connectors]]` of an opened service, ready to run: the caller spawns
/// [`Connectors::run`](crate::connectors::Connectors::run).
///
/// # Errors
/// A connector that does not open (its key named).
pub fn open_connectors(app: &App) -> anyhow::Result<Arc<crate::connectors::Connectors>> {
    crate::connectors::Connectors::open(
        &app.settings.connectors,
        &app.posture,
        Arc::new(crate::connectors::client::TokioSleeper),
    )
    .map(Arc::new)
    .map_err(|m| anyhow::anyhow!("configuration: {m}"))
}

/// The `[scep]` provisioners of an opened service, with their Intune clients.
///
/// # Errors
/// A setting or file that does not fit, naming its key.
pub fn open_scep(app: &App) -> anyhow::Result<Arc<crate::domain::scep::Scep>> {
    crate::domain::scep::Scep::new(Arc::clone(&app.domain), &app.settings.scep)
        .map(Arc::new)
        .map_err(|(k, m)| anyhow::anyhow!("configuration: scep.{k}: {m}"))
}
