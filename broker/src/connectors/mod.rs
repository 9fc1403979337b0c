//! MDM polling connectors: each reads one vendor's device list (Intune, Jamf Pro, Android
//! Management API) on an interval and turns every device into posture events for one tenant,
//! applied through [`Posture::apply_event`] under a principal of role `mdm`.
//!
//! This is I/O at the edge, like `http/`: it calls the domain and decides nothing the posture
//! engine does not (see `sync.rs` for how a device becomes events). `docs/connectors.md`
//! describes the behaviour; in short:
//!
//! - a sync follows the vendor's paging to the end; each device is matched to postern's
//!   inventory by serial, UDID or IMEI, registered when unknown (`register_devices`), and
//!   skipped when nothing changed since it was last applied (a fingerprint per device in
//!   `DocKind::ConnectorDevice`);
//! - after a complete sync, devices the vendor no longer lists are unenrolled; a sync that
//!   fails part way unenrolls nothing;
//! - a failed sync is tried again after a capped exponential backoff with jitter, or after the
//!   vendor's `Retry-After` when longer; the state (last success, last error, devices seen,
//!   next run) is kept in `DocKind::ConnectorState` and survives restarts;
//! - tokens are cached until a minute before they expire and fetched again on a 401 (once per
//!   request); secrets and tokens are never logged, stored or shown.

pub mod android;
pub mod client;
pub mod intune;
pub mod jamf;
pub mod settings;
pub mod sync;
pub mod token;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use crate::domain::posture::Posture;
use crate::domain::posture::event::Source;
use crate::domain::{DomainError, DomainResult, ErrorKind, Principal};
use crate::model::Role;
use crate::store::{DocKind, DocTxn};

use client::{Api, ConnectorError, FailureKind, Sleeper};
use settings::{ConnectorSettings, Secret, VendorSettings};
use sync::{Cursor, DeviceLink, VendorDevice};
use token::TokenSource;

/// A sync reads at most this many pages (a loop guard against a vendor that links in circles).
const MAX_PAGES: usize = 100_000;

/// The vendor a connector reads.
#[derive(Debug)]
enum Vendor {
    Intune(intune::Intune),
    Jamf(jamf::Jamf),
    Android(android::Android),
}

impl Vendor {
    async fn page(&self, api: &Api, cursor: &Cursor) -> Result<sync::Page, ConnectorError> {
        match self {
            Vendor::Intune(v) => v.page(api, cursor).await,
            Vendor::Jamf(v) => v.page(api, cursor).await,
            Vendor::Android(v) => v.page(api, cursor).await,
        }
    }
}

/// The last failure, as kept and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// Its kind.
    pub kind: FailureKind,
    /// What happened (never a secret).
    pub message: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What a connector remembers between syncs (`DocKind::ConnectorState`, by name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorState {
    /// When the last complete sync started.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_success: Option<OffsetDateTime>,
    /// When the last sync, complete or not, started.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_attempt: Option<OffsetDateTime>,
    /// The last failure, until a sync succeeds.
    #[serde(default)]
    pub last_error: Option<LastError>,
    /// Failures since the last success.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Devices the last complete sync listed.
    #[serde(default)]
    pub devices_seen: u64,
    /// Of those, devices whose events were applied (new or changed).
    #[serde(default)]
    pub devices_changed: u64,
    /// Devices registered by the last sync.
    #[serde(default)]
    pub devices_registered: u64,
    /// Devices the last sync could not match (registration off, or identifiers postern
    /// refuses).
    #[serde(default)]
    pub devices_unmatched: u64,
    /// Devices the last complete sync unenrolled because the vendor no longer lists them.
    #[serde(default)]
    pub devices_gone: u64,
    /// When the next sync is due.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub next_run: Option<OffsetDateTime>,
}

/// A connector's status as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectorStatus {
    /// Its name.
    pub name: String,
    /// `intune`, `jamf` or `android-management`.
    pub kind: &'static str,
    /// The tenant it feeds.
    pub tenant: String,
    /// Seconds between syncs.
    pub interval_seconds: u64,
    /// Whether unknown devices are registered.
    pub register_devices: bool,
    /// Whether a sync is under way.
    pub running: bool,
    /// The remembered state.
    #[serde(flatten)]
    pub state: ConnectorState,
}

#[derive(Debug, Default)]
struct Counts {
    seen: u64,
    changed: u64,
    registered: u64,
    unmatched: u64,
    gone: u64,
}

/// One configured connector.
#[derive(Debug)]
pub struct Connector {
    settings: ConnectorSettings,
    source: Source,
    vendor: Vendor,
    api: Api,
    posture: Arc<Posture>,
    who: Principal,
    run_lock: tokio::sync::Mutex<()>,
    state: Mutex<(ConnectorState, bool)>,
    wake: Notify,
}

fn base_url(key: &str, s: &str) -> Result<Url, String> {
    let mut u = Url::parse(s).map_err(|e| format!("{key}: {e}"))?;
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    Ok(u)
}

fn unit_random() -> f64 {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 4];
    match ring::rand::SystemRandom::new().fill(&mut b) {
        Ok(()) => f64::from(u32::from_be_bytes(b)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    }
}

/// The wait after `failures` consecutive failures: `base · 2^(failures-1)`, capped at `max`,
/// of which the upper half is scaled by `r` in `[0, 1]`.
pub fn backoff(base: Duration, max: Duration, failures: u32, r: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(30) as i32;
    let d = (base.as_secs_f64() * 2f64.powi(exp)).min(max.as_secs_f64());
    Duration::from_secs_f64(d * (0.5 + 0.5 * r.clamp(0.0, 1.0)))
}

fn cfg(k: &'static str) -> impl Fn(String) -> (String, String) {
    move |m| (k.to_owned(), m)
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

impl Connector {
    /// Builds a connector: reads its secrets, builds its HTTPS client, loads its state.
    ///
    /// # Errors
    /// `(key, message)` naming the setting at fault.
    pub fn open(
        settings: ConnectorSettings,
        posture: Arc<Posture>,
        sleeper: Arc<dyn Sleeper>,
    ) -> Result<Connector, (String, String)> {
        settings.check()?;
        let ca = match &settings.ca_file {
            Some(p) => Some(
                std::fs::read(p)
                    .map_err(|e| ("ca_file".to_owned(), format!("{}: {e}", p.display())))?,
            ),
            None => None,
        };
        let http =
            client::https_client(ca.as_deref(), Duration::from_secs(settings.timeout_seconds))
                .map_err(|m| ("ca_file".to_owned(), m))?;
        let (source, vendor, token, bases) = match &settings.vendor {
            VendorSettings::Intune(i) => {
                let login = base_url("login_url", &i.login_url).map_err(cfg("login_url"))?;
                let graph = base_url("graph_url", &i.graph_url).map_err(cfg("graph_url"))?;
                let url = login
                    .join(&format!("{}/oauth2/v2.0/token", i.tenant_id))
                    .map_err(|e| ("tenant_id".to_owned(), e.to_string()))?;
                let token = TokenSource::ClientCredentials {
                    url,
                    client_id: i.client_id.clone(),
                    secret: Secret::read("client_secret_file", &i.client_secret_file)?,
                    scope: Some(intune::SCOPE.into()),
                };
                let v = intune::Intune::new(&graph).map_err(cfg("graph_url"))?;
                (Source::Intune, Vendor::Intune(v), token, vec![graph])
            }
            VendorSettings::Jamf(j) => {
                let base = base_url("url", &j.url).map_err(cfg("url"))?;
                let join = |p: &str| base.join(p).map_err(|e| ("url".to_owned(), e.to_string()));
                let token = match (
                    &j.client_id,
                    &j.client_secret_file,
                    &j.username,
                    &j.password_file,
                ) {
                    (Some(id), Some(f), _, _) => TokenSource::ClientCredentials {
                        url: join("api/v1/oauth/token")?,
                        client_id: id.clone(),
                        secret: Secret::read("client_secret_file", f)?,
                        scope: None,
                    },
                    (_, _, Some(u), Some(f)) => TokenSource::JamfBasic {
                        url: join("api/v1/auth/token")?,
                        username: u.clone(),
                        password: Secret::read("password_file", f)?,
                    },
                    _ => return Err(("client_id".into(), "no credentials".into())),
                };
                let v = jamf::Jamf::new(base.clone(), j);
                (Source::Jamf, Vendor::Jamf(v), token, vec![base])
            }
            VendorSettings::AndroidManagement(a) => {
                let text = Secret::read("key_file", &a.key_file)?;
                let key =
                    token::ServiceAccountKey::parse(text.expose()).map_err(cfg("key_file"))?;
                let uri = a
                    .token_uri
                    .clone()
                    .or_else(|| key.token_uri.clone())
                    .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
                let url = Url::parse(&uri).map_err(|e| ("token_uri".to_owned(), e.to_string()))?;
                let api = base_url("api_url", &a.api_url).map_err(cfg("api_url"))?;
                let v = android::Android::new(&api, &a.enterprise, a.page_size)
                    .map_err(cfg("api_url"))?;
                let token = TokenSource::JwtBearer {
                    url,
                    key: Box::new(key),
                    scope: token::ANDROID_SCOPE.into(),
                };
                (
                    Source::AndroidManagement,
                    Vendor::Android(v),
                    token,
                    vec![api],
                )
            }
        };
        let domain = posture.domain();
        let clock = Arc::clone(domain.clock());
        let base_refs: Vec<&Url> = bases.iter().collect();
        let api = Api::new(
            http,
            token,
            clock,
            sleeper,
            Duration::from_secs(settings.max_retry_after_seconds),
            &base_refs,
        );
        let state = match domain.store().doc(DocKind::ConnectorState, &settings.name) {
            Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or_default(),
            _ => ConnectorState::default(),
        };
        let who = Principal {
            tenant: settings.tenant.clone(),
            role: Role::Mdm,
            actor_id: format!("connector:{}", settings.name),
        };
        Ok(Connector {
            settings,
            source,
            vendor,
            api,
            posture,
            who,
            run_lock: tokio::sync::Mutex::new(()),
            state: Mutex::new((state, false)),
            wake: Notify::new(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The tenant it feeds.
    pub fn tenant(&self) -> &str {
        &self.settings.tenant
    }

    /// Its HTTP side (tests drop the cached token through it).
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Its status now.
    pub fn status(&self) -> ConnectorStatus {
        let (state, running) = self
            .state
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        ConnectorStatus {
            name: self.settings.name.clone(),
            kind: self.settings.kind(),
            tenant: self.settings.tenant.clone(),
            interval_seconds: self.settings.interval_seconds,
            register_devices: self.settings.register_devices,
            running,
            state,
        }
    }

    fn now(&self) -> OffsetDateTime {
        self.posture.domain().clock().now()
    }

    fn update(&self, f: impl FnOnce(&mut (ConnectorState, bool))) -> ConnectorState {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
        g.0.clone()
    }

    /// Runs one sync now (waiting for one under way to finish first) and returns the status.
    pub async fn run_once(&self) -> ConnectorStatus {
        let _running = self.run_lock.lock().await;
        let started = self.now();
        self.update(|s| s.1 = true);
        let result = self.sync(started).await;
        let now = self.now();
        let state = match result {
            Ok(c) => {
                let jitter = 0.9 + 0.2 * unit_random();
                let next = started
                    + to_time(Duration::from_secs_f64(
                        self.settings.interval_seconds as f64 * jitter,
                    ));
                tracing::info!(
                    connector = %self.settings.name,
                    devices = c.seen, changed = c.changed, registered = c.registered,
                    unmatched = c.unmatched, gone = c.gone,
                    "connector sync complete"
                );
                self.update(|s| {
                    s.1 = false;
                    let st = &mut s.0;
                    st.last_success = Some(started);
                    st.last_attempt = Some(started);
                    st.last_error = None;
                    st.consecutive_failures = 0;
                    st.devices_seen = c.seen;
                    st.devices_changed = c.changed;
                    st.devices_registered = c.registered;
                    st.devices_unmatched = c.unmatched;
                    st.devices_gone = c.gone;
                    st.next_run = Some(next);
                })
            }
            Err(e) => {
                tracing::warn!(
                    connector = %self.settings.name,
                    kind = e.kind.as_str(),
                    error = %e.message,
                    "connector sync failed"
                );
                self.update(|s| {
                    s.1 = false;
                    let st = &mut s.0;
                    st.consecutive_failures = st.consecutive_failures.saturating_add(1);
                    let wait = backoff(
                        Duration::from_secs(self.settings.backoff_base_seconds),
                        Duration::from_secs(self.settings.backoff_max_seconds),
                        st.consecutive_failures,
                        unit_random(),
                    )
                    .max(e.retry_after.unwrap_or_default());
                    st.last_attempt = Some(started);
                    st.last_error = Some(LastError {
                        kind: e.kind,
                        message: e.message,
                        at: now,
                    });
                    st.next_run = Some(now + to_time(wait));
                })
            }
        };
        if let Err(e) = self.save(&state).await {
            tracing::error!(connector = %self.settings.name, error = %e, "saving connector state failed");
        }
        self.wake.notify_one();
        self.status()
    }

    async fn save(&self, state: &ConnectorState) -> DomainResult<()> {
        let bytes = serde_json::to_vec(state).map_err(DomainError::internal)?;
        self.posture
            .domain()
            .commit(DocTxn::new().put(DocKind::ConnectorState, self.settings.name.clone(), bytes))
            .await?;
        Ok(())
    }

    async fn sync(&self, started: OffsetDateTime) -> Result<Counts, ConnectorError> {
        let domain = self.posture.domain();
        domain.require_tenant(&self.settings.tenant).map_err(|e| {
            ConnectorError::new(
                FailureKind::Config,
                format!("tenant {}: {}", self.settings.tenant, e.detail),
            )
        })?;
        let mut counts = Counts::default();
        let mut seen = HashSet::new();
        let mut cursor = Cursor::Start;
        let mut complete = false;
        for _ in 0..MAX_PAGES {
            let page = self.vendor.page(&self.api, &cursor).await?;
            for d in page.devices {
                if d.vendor_id.is_empty() || !seen.insert(d.vendor_id.clone()) {
                    continue;
                }
                self.device(d, started, &mut counts).await?;
            }
            match page.next {
                Some(c) if c != cursor => cursor = c,
                Some(_) => {
                    return Err(ConnectorError::new(
                        FailureKind::Malformed,
                        "the next page link points at the same page",
                    ));
                }
                None => {
                    complete = true;
                    break;
                }
            }
        }
        if !complete {
            return Err(ConnectorError::new(
                FailureKind::Malformed,
                format!("more than {MAX_PAGES} pages"),
            ));
        }
        counts.seen = seen.len() as u64;
        self.unenroll_gone(&seen, started, &mut counts).await?;
        Ok(counts)
    }

    fn link_key(&self, vendor_id: &str) -> String {
        format!("{}/{vendor_id}", self.settings.name)
    }

    async fn device(
        &self,
        d: VendorDevice,
        now: OffsetDateTime,
        counts: &mut Counts,
    ) -> Result<(), ConnectorError> {
        let domain = self.posture.domain();
        let tenant = &self.settings.tenant;
        let key = self.link_key(&d.vendor_id);
        let fingerprint = d.fingerprint();
        let link: Option<DeviceLink> = domain
            .store()
            .doc(DocKind::ConnectorDevice, &key)
            .map_err(DomainError::from)?
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(l) = &link
            && l.fingerprint == fingerprint
            && domain.device_record(tenant, &l.device_id)?.is_some()
        {
            return Ok(());
        }
        let Some(device_id) = self.match_device(&d, counts).await? else {
            counts.unmatched += 1;
            return Ok(());
        };
        for e in sync::events(&d, self.source, &device_id, now) {
            self.posture.apply_event(&self.who, tenant, &e).await?;
        }
        if d.enrolled
            && let Some(rec) = self.posture.stored(tenant, &device_id)?
            && rec.mdm.compliance != d.compliance
        {
            let e = sync::compliance_now(&d, self.source, &device_id, now);
            self.posture.apply_event(&self.who, tenant, &e).await?;
        }
        let bytes = serde_json::to_vec(&DeviceLink {
            device_id,
            fingerprint,
        })
        .map_err(|e| ConnectorError::new(FailureKind::Store, e.to_string()))?;
        domain
            .commit(DocTxn::new().put(DocKind::ConnectorDevice, key, bytes))
            .await
            .map_err(DomainError::from)?;
        counts.changed += 1;
        Ok(())
    }

    /// postern's device for `d`: found by serial, UDID or IMEI, or registered.
    async fn match_device(
        &self,
        d: &VendorDevice,
        counts: &mut Counts,
    ) -> Result<Option<String>, ConnectorError> {
        let domain = self.posture.domain();
        let tenant = &self.settings.tenant;
        for attempt in 0..2 {
            for v in d.lookup_ids() {
                if let Some(dev) = domain.find_device(tenant, v)? {
                    return Ok(Some(dev.id));
                }
            }
            if !self.settings.register_devices || d.lookup_ids().next().is_none() {
                return Ok(None);
            }
            let new = crate::domain::devices::NewDevice {
                tenant: None,
                serial: d.serial.clone(),
                udid: d.udid.clone(),
                imei: d.imei.clone(),
                hardware_ids: Vec::new(),
                platform: d.platform.clone(),
                model: d.model.clone(),
                user: d.user.clone(),
            };
            match domain.register_device(&self.who, new).await {
                Ok(dev) => {
                    self.posture.device_registered(&self.who, &dev).await?;
                    // a SCIM user of that name gives the device their addresses
                    crate::domain::scim::Scim::new(&self.posture)
                        .new_device(&self.who, &dev)
                        .await;
                    counts.registered += 1;
                    return Ok(Some(dev.id));
                }
                // registered meanwhile (another connector, the API): look again once
                Err(e) if e.kind == ErrorKind::Conflict && attempt == 0 => {}
                Err(e) if matches!(e.kind, ErrorKind::Malformed | ErrorKind::Conflict) => {
                    tracing::warn!(
                        connector = %self.settings.name,
                        vendor_id = %d.vendor_id,
                        error = %e.detail,
                        "device not registered"
                    );
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    async fn unenroll_gone(
        &self,
        seen: &HashSet<String>,
        now: OffsetDateTime,
        counts: &mut Counts,
    ) -> Result<(), ConnectorError> {
        let domain = self.posture.domain();
        let prefix = format!("{}/", self.settings.name);
        let links = domain
            .store()
            .docs(DocKind::ConnectorDevice, &prefix, usize::MAX)
            .map_err(DomainError::from)?;
        for (key, bytes) in links {
            let vendor_id = &key[prefix.len()..];
            if seen.contains(vendor_id) {
                continue;
            }
            if let Ok(link) = serde_json::from_slice::<DeviceLink>(&bytes) {
                let e = sync::gone(vendor_id, self.source, &link.device_id, now);
                self.posture
                    .apply_event(&self.who, &self.settings.tenant, &e)
                    .await?;
                counts.gone += 1;
            }
            domain
                .commit(DocTxn::new().delete(DocKind::ConnectorDevice, key))
                .await
                .map_err(DomainError::from)?;
        }
        Ok(())
    }

    /// Syncs whenever one is due until `stop` turns true: at once when none ever ran or the
    /// next is overdue, then at the interval (or the backoff) the last sync set.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let next = self.status().state.next_run;
            let wait = next.map_or(Duration::ZERO, |n| {
                Duration::try_from(n - self.now()).unwrap_or(Duration::ZERO)
            });
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = self.wake.notified() => continue,
                    _ = stop.changed() => return,
                }
                if next.is_some_and(|n| self.now() < n) {
                    continue;
                }
            }
            tokio::select! {
                _ = self.run_once() => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// Every configured connector.
#[derive(Debug, Default)]
pub struct Connectors {
    list: Vec<Arc<Connector>>,
}

impl Connectors {
    /// Opens the `[[connectors]]` of the settings.
    ///
    /// # Errors
    /// `connectors[i].<key>: message` for the first that does not open.
    pub fn open(
        settings: &[ConnectorSettings],
        posture: &Arc<Posture>,
        sleeper: Arc<dyn Sleeper>,
    ) -> Result<Connectors, String> {
        let mut list = Vec::new();
        for (i, s) in settings.iter().enumerate() {
            let c = Connector::open(s.clone(), Arc::clone(posture), Arc::clone(&sleeper))
                .map_err(|(k, m)| format!("connectors[{i}].{k}: {m}"))?;
            list.push(Arc::new(c));
        }
        Ok(Connectors { list })
    }

    /// Every connector.
    pub fn all(&self) -> &[Arc<Connector>] {
        &self.list
    }

    /// The connectors `who` may see (operators: all; a tenant's admins: the tenant's).
    ///
    /// # Errors
    /// Forbidden for roles other than admin.
    pub fn statuses(&self, who: &Principal) -> DomainResult<Vec<ConnectorStatus>> {
        who.require_admin()?;
        Ok(self
            .list
            .iter()
            .filter(|c| who.is_operator() || c.tenant() == who.tenant)
            .map(|c| c.status())
            .collect())
    }

    /// Runs `name` now and returns its status.
    ///
    /// # Errors
    /// Forbidden (role), NotFound (no such connector for the caller).
    pub async fn sync_now(&self, who: &Principal, name: &str) -> DomainResult<ConnectorStatus> {
        who.require_admin()?;
        let c = self
            .list
            .iter()
            .find(|c| c.name() == name && (who.is_operator() || c.tenant() == who.tenant))
            .ok_or_else(|| DomainError::new(ErrorKind::NotFound, format!("no connector {name}")))?;
        Ok(c.run_once().await)
    }

    /// Runs every connector's schedule until `stop` turns true.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let tasks: Vec<_> = self
            .list
            .iter()
            .map(|c| tokio::spawn(Arc::clone(c).run(stop.clone())))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests;
