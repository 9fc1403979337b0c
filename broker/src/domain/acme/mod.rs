//! ACME (RFC 8555) with `device-attest-01` (draft-ietf-acme-device-attest) and `http-01`:
//! accounts, orders, authorizations, challenges, finalization, certificates and revocation,
//! per [provisioner](provisioner::Provisioner).
//!
//! The HTTP layer hands every request here as the raw JWS body plus the URL it was sent to; this
//! module authenticates it ([`Acme::authenticate`]: signature, single-use nonce, `url`), then
//! the operation runs against the store's documents.
//!
//! **Architecture Invariants:**
//! - state changes of orders and authorizations are compare-and-swap transactions on the stored
//!   document, so a challenge is validated once and an order is finalized once, whatever
//!   requests race;
//! - an attestation statement is accepted once ever (its SHA-256 is recorded in the same
//!   transaction that makes the authorization valid);
//! - `device-attest-01` issues only for a device of the provisioner's tenant inventory, and only
//!   to the key the attestation certified.

mod account;
mod challenge;
pub mod error;
pub mod grant;
pub mod jws;
pub mod model;
pub mod nonce;
mod order;
pub mod provisioner;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

pub use error::{AcmeError, AcmeProblem, AcmeResult};
pub use model::{Account, Authz, Challenge, Identifier, Order};
pub use provisioner::{AcmeSettings, Provisioner, ProvisionerSettings};

use crate::model::Role;
use crate::store::{DocKind, DocTxn, StoreError};

use super::{Domain, Principal};

/// The ACME service: provisioners, nonces, and the domain it issues through.
#[derive(Debug)]
pub struct Acme {
    domain: Arc<Domain>,
    provisioners: BTreeMap<String, Arc<Provisioner>>,
    nonces: nonce::Nonces,
    settings: AcmeSettings,
    http: reqwest::Client,
    /// Where issued device certificates are recorded (posture, feed).
    posture: std::sync::OnceLock<Arc<crate::domain::posture::Posture>>,
}

/// An authenticated request.
#[derive(Debug)]
pub struct Authed {
    /// The request (payload, signer).
    pub req: jws::Request,
    /// The account, when signed with `kid`.
    pub account: Option<Account>,
}

impl Authed {
    /// The account, for requests that need one.
    ///
    /// # Errors
    /// `malformed` when the request was signed with a `jwk`.
    pub fn account(&self) -> AcmeResult<&Account> {
        self.account.as_ref().ok_or_else(|| {
            AcmeError::malformed("this request must be signed with the account's kid")
        })
    }
}

/// Where the client reached the server: `https://host[:port]`, from which every URL is made.
#[derive(Debug, Clone)]
pub struct Base(pub String);

impl Base {
    /// `{base}/acme/{provisioner}/{rest}`.
    pub fn url(&self, provisioner: &str, rest: &str) -> String {
        format!("{}/acme/{provisioner}/{rest}", self.0)
    }
}

/// 128-bit random id, base64url.
pub(crate) fn random_id() -> AcmeResult<String> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| AcmeError::internal("system random source failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

pub(crate) fn encode<T: Serialize>(v: &T) -> AcmeResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(AcmeError::internal)
}

pub(crate) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> AcmeResult<T> {
    serde_json::from_slice(bytes).map_err(|e| AcmeError::internal(format!("{what} record: {e}")))
}

impl Acme {
    /// Builds the service from settings (reading provisioners' root files).
    ///
    /// # Errors
    /// `(key, message)` naming the setting, relative to `acme`.
    pub fn new(domain: Arc<Domain>, settings: AcmeSettings) -> Result<Self, (String, String)> {
        let list = if settings.provisioners.is_empty() {
            ProvisionerSettings::defaults()
        } else {
            settings.provisioners.clone()
        };
        let mut provisioners = BTreeMap::new();
        for (i, p) in list.into_iter().enumerate() {
            let name = p.name.clone();
            let prov =
                Provisioner::new(p).map_err(|(k, m)| (format!("provisioners[{i}].{k}"), m))?;
            if provisioners.insert(name.clone(), Arc::new(prov)).is_some() {
                return Err((
                    format!("provisioners[{i}].name"),
                    format!("{name:?} appears twice"),
                ));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ("http01".to_owned(), e.to_string()))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let mut http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(settings.http01_timeout_seconds.max(1)))
            .user_agent("postern-acme-validator");
        for (host, ip) in &settings.http01_hosts {
            http = http.resolve(host, std::net::SocketAddr::new(*ip, settings.http01_port));
        }
        let http = http
            .build()
            .map_err(|e| ("http01".to_owned(), e.to_string()))?;
        Ok(Acme {
            domain,
            provisioners,
            nonces: nonce::Nonces::default(),
            settings,
            http,
            posture: std::sync::OnceLock::new(),
        })
    }

    /// Connects the posture service: issued and revoked device certificates are recorded on
    /// the device's posture record (and so in the feed) before ACME answers.
    pub fn set_posture(&self, posture: Arc<crate::domain::posture::Posture>) {
        let _ = self.posture.set(posture);
    }

    pub(super) fn posture(&self) -> Option<&Arc<crate::domain::posture::Posture>> {
        self.posture.get()
    }

    /// The domain.
    pub fn domain(&self) -> &Arc<Domain> {
        &self.domain
    }

    /// The provisioners by name.
    pub fn provisioners(&self) -> &BTreeMap<String, Arc<Provisioner>> {
        &self.provisioners
    }

    /// A provisioner.
    ///
    /// # Errors
    /// `malformed` with 404 when there is none of that name.
    pub fn provisioner(&self, name: &str) -> AcmeResult<&Arc<Provisioner>> {
        self.provisioners
            .get(name)
            .ok_or_else(|| AcmeError::not_found(format!("provisioner {name:?}")))
    }

    /// A fresh nonce.
    ///
    /// # Errors
    /// `serverInternal` when the random source fails.
    pub fn new_nonce(&self) -> AcmeResult<String> {
        self.nonces
            .issue()
            .map_err(|_| AcmeError::internal("system random source failed"))
    }

    /// The directory object.
    ///
    /// # Errors
    /// 404 for an unknown provisioner.
    pub fn directory(&self, provisioner: &str, base: &Base) -> AcmeResult<serde_json::Value> {
        let p = self.provisioner(provisioner)?;
        let u = |r: &str| base.url(provisioner, r);
        Ok(serde_json::json!({
            "newNonce": u("new-nonce"),
            "newAccount": u("new-account"),
            "newOrder": u("new-order"),
            "revokeCert": u("revoke-cert"),
            "keyChange": u("key-change"),
            "meta": {
                "externalAccountRequired": p.settings.require_eab,
                "profiles": { p.settings.profile.clone(): format!("certificates from postern's {} profile", p.settings.profile) },
            }
        }))
    }

    /// Authenticates a request to `url` at `provisioner`: parses the JWS, checks the signature
    /// with the header's key or the account's, the `url`, and uses up the nonce.
    ///
    /// # Errors
    /// `malformed`, `badSignatureAlgorithm`, `badPublicKey`, `badNonce`, `unauthorized` (url
    /// mismatch, deactivated account), `accountDoesNotExist`.
    pub fn authenticate(
        &self,
        provisioner: &str,
        base: &Base,
        url: &str,
        body: &[u8],
    ) -> AcmeResult<Authed> {
        self.provisioner(provisioner)?;
        let req = jws::Request::parse(body)?;
        if req.url != url {
            return Err(AcmeError::unauthorized(format!(
                "the JWS url {:?} is not the URL requested ({url})",
                req.url
            )));
        }
        let account = match &req.signer {
            jws::Signer::Key(jwk) => {
                req.verify(jwk)?;
                None
            }
            jws::Signer::Account(kid) => {
                let prefix = base.url(provisioner, "account/");
                let id = kid.strip_prefix(&prefix).ok_or_else(|| {
                    AcmeError::new(
                        AcmeProblem::AccountDoesNotExist,
                        format!("kid {kid:?} is not an account URL of this provisioner"),
                    )
                })?;
                let acct: Account = match self.domain.store().doc(DocKind::AcmeAccount, id)? {
                    Some(b) => decode("account", &b)?,
                    None => {
                        return Err(AcmeError::new(
                            AcmeProblem::AccountDoesNotExist,
                            "no such account",
                        ));
                    }
                };
                if acct.provisioner != provisioner {
                    return Err(AcmeError::new(
                        AcmeProblem::AccountDoesNotExist,
                        "no such account at this provisioner",
                    ));
                }
                req.verify(&acct.jwk)?;
                if acct.status != model::AccountStatus::Valid {
                    // RFC 8555 §7.3.6: 401
                    return Err(AcmeError::unauthorized(
                        format!("the account is {:?}", acct.status).to_lowercase(),
                    )
                    .with_status(401));
                }
                Some(acct)
            }
        };
        // the nonce is used up only by a request whose signature verified
        if !self.nonces.consume(&req.nonce) {
            return Err(AcmeError::new(
                AcmeProblem::BadNonce,
                "the nonce is unknown, used or expired",
            ));
        }
        Ok(Authed { req, account })
    }

    /// The principal ACME acts as in the audit log and for issuance.
    fn principal(&self, p: &Provisioner, account: &str) -> Principal {
        Principal {
            tenant: p.settings.tenant.clone(),
            role: Role::Device,
            actor_id: format!("acme:{}/{account}", p.settings.name),
        }
    }

    fn now(&self) -> OffsetDateTime {
        self.domain.clock().now()
    }

    fn order_lifetime(&self) -> time::Duration {
        time::Duration::minutes(i64::from(self.settings.order_lifetime_minutes.max(1)))
    }

    /// Commits a transaction off the runtime's workers; a failed check is `Ok(false)`.
    async fn commit(&self, txn: DocTxn) -> AcmeResult<bool> {
        match self.domain.commit(txn).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn load<T: DeserializeOwned>(
        &self,
        kind: DocKind,
        id: &str,
    ) -> AcmeResult<Option<(T, Vec<u8>)>> {
        match self.domain.store().doc(kind, id)? {
            Some(b) => Ok(Some((decode(kind.as_str(), &b)?, b))),
            None => Ok(None),
        }
    }

    /// Removes orders and authorizations that expired more than a day ago (a finished order
    /// stays readable for that day), and pending ones as soon as they expire. Returns how many
    /// documents were removed.
    ///
    /// # Errors
    /// Store failures.
    pub async fn cleanup(&self) -> AcmeResult<usize> {
        let now = self.now();
        let grace = time::Duration::days(1);
        let mut removed = 0;
        for (kind, is_expired) in [
            (
                DocKind::AcmeOrder,
                Box::new(|b: &[u8]| -> AcmeResult<bool> {
                    let o: Order = decode("order", b)?;
                    let unfinished = matches!(
                        o.status,
                        model::OrderStatus::Pending | model::OrderStatus::Ready
                    );
                    Ok(if unfinished {
                        o.expires < now
                    } else {
                        o.expires + grace < now
                    })
                }) as Box<dyn Fn(&[u8]) -> AcmeResult<bool> + Send + Sync>,
            ),
            (
                DocKind::AcmeAuthz,
                Box::new(|b: &[u8]| -> AcmeResult<bool> {
                    let a: Authz = decode("authz", b)?;
                    let unfinished = a.status == model::AuthzStatus::Pending;
                    Ok(if unfinished {
                        a.expires < now
                    } else {
                        a.expires + grace < now
                    })
                }),
            ),
        ] {
            for (id, bytes) in self.domain.store().docs(kind, "", usize::MAX)? {
                // a record that does not decode is removed too: nothing can use it
                if is_expired(&bytes).unwrap_or(true) {
                    let txn = DocTxn::new()
                        .unchanged(kind, id.clone(), bytes)
                        .delete(kind, id);
                    if self.commit(txn).await? {
                        removed += 1;
                    }
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "expired ACME orders and authorizations removed");
        }
        Ok(removed)
    }

    /// How often the Android revocation lists are read again: the shortest `refresh_minutes`
    /// of the provisioners that configure one (an hour when none does).
    pub fn revocation_refresh_interval(&self) -> Duration {
        let minutes = self
            .provisioners
            .values()
            .filter_map(|p| {
                p.settings
                    .android_revocation
                    .as_ref()
                    .map(|r| r.refresh_minutes)
            })
            .min()
            .unwrap_or(60);
        Duration::from_secs(u64::from(minutes.max(1)) * 60)
    }

    /// How often [`Acme::cleanup`] should run.
    pub fn cleanup_interval(&self) -> Duration {
        Duration::from_secs(self.settings.cleanup_interval_seconds.max(1))
    }

    /// Reads (file) or fetches (URL) the Android revocation lists of the provisioners that
    /// configure one. A failure keeps the previous list (which turns stale in time) and is
    /// logged.
    pub async fn refresh_revocation_lists(&self) {
        for p in self.provisioners.values() {
            let Some(cfg) = &p.settings.android_revocation else {
                continue;
            };
            let bytes = if let Some(f) = &cfg.file {
                tokio::fs::read(f)
                    .await
                    .map_err(|e| format!("{}: {e}", f.display()))
            } else if let Some(u) = &cfg.url {
                self.fetch_list(u).await
            } else {
                continue;
            };
            let max_age = time::Duration::hours(i64::from(cfg.max_age_hours));
            match bytes.and_then(|b| {
                postern_certs::attestation::android::RevocationList::from_json(
                    &b,
                    self.now(),
                    max_age,
                )
                .map_err(|e| e.to_string())
            }) {
                Ok(list) => p.set_revocations(list),
                Err(e) => {
                    tracing::error!(provisioner = %p.settings.name, error = %e, "reading the Android revocation list failed")
                }
            }
        }
    }

    async fn fetch_list(&self, url: &str) -> Result<Vec<u8>, String> {
        // the list is public and signed by nothing; HTTPS to Google's host authenticates it
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(system_roots())
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("{url}: HTTP {}", resp.status()));
        }
        let b = resp.bytes().await.map_err(|e| e.to_string())?;
        Ok(b.to_vec())
    }
}

/// The attestation verifiers of a tenant's provisioners, for attestations that reach postern
/// by other paths than ACME (an MDM relaying `DevicePropertiesAttestation`): the same roots.
impl Acme {
    /// The `device-attest-01` provisioners of `tenant` that accept `format`, in name order.
    pub fn attestation_provisioners(
        &self,
        tenant: &str,
        format: postern_certs::attestation::Format,
    ) -> Vec<Arc<Provisioner>> {
        self.provisioners
            .values()
            .filter(|p| {
                p.settings.tenant == tenant
                    && p.settings.challenge == provisioner::DEVICE_ATTEST_01
                    && p.verifier.formats().any(|f| f == format)
            })
            .cloned()
            .collect()
    }
}

/// The system's trust anchors (Debian's bundle), for fetching public lists.
pub(crate) fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    if let Ok(pem) = std::fs::read("/etc/ssl/certs/ca-certificates.crt") {
        for der in pem::parse_many(&pem).unwrap_or_default() {
            let _ = roots.add(rustls::pki_types::CertificateDer::from(der.into_contents()));
        }
    }
    roots
}
