//! SCEP provisioners and what the SCEP server asks of the rest of postern before it issues:
//! one-time dynamic challenges ([`challenge`]) and Microsoft Intune's SCEP validation
//! ([`intune`]). The SCEP wire protocol (CMS messages, `CertRep`) is not here.
//!
//! A provisioner (`[[scep.provisioners]]`) names the tenant its devices belong to, the
//! certificate profile it issues, and how a request is authorized: `dynamic` (a one-time
//! challenge fetched per device by the MDM, [`Scep::create_challenge`], and redeemed by the
//! SCEP server, [`Scep::redeem`]) or `none` (the request is authorized some other way, such
//! as Intune's validation). Static shared challenges are not offered: a secret written into
//! every profile of a fleet is no secret.
//!
//! Out of the box there is one provisioner, `scep`, for the default tenant, with dynamic
//! challenges, issuing `device-identity`.
//!
//! **Architecture Invariant:** a challenge is stored only as its SHA-256; the secret is in the
//! answer to the MDM that asked for it and nowhere else (not in the store, the log or the
//! audit log).

pub mod challenge;
pub mod enroll;
pub mod intune;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::domain::{Domain, DomainError, DomainResult, ErrorKind};

pub use challenge::{ChallengeError, IssuedChallenge, RedeemedChallenge};
pub use enroll::EnrollError;
pub use intune::{IntuneError, IntuneScepSettings, IntuneValidator};

/// The name of the provisioner there is without configuration.
pub const DEFAULT_PROVISIONER: &str = "scep";
/// The default challenge lifetime, in seconds.
pub const DEFAULT_CHALLENGE_LIFETIME: u64 = 3600;
/// The longest challenge lifetime accepted, in seconds (7 days).
pub const MAX_CHALLENGE_LIFETIME: u64 = 7 * 24 * 3600;

/// The profiles a SCEP provisioner may issue: those for a device's own key.
pub const DEVICE_PROFILES: [&str; 2] = ["device-identity", "messaging-identity"];

/// `[scep]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScepSettings {
    /// The provisioners; without any configured, one named `scep` (see the module docs).
    pub provisioners: Vec<ScepProvisionerSettings>,
}

impl Default for ScepSettings {
    fn default() -> Self {
        ScepSettings {
            provisioners: vec![ScepProvisionerSettings::named(DEFAULT_PROVISIONER)],
        }
    }
}

/// How a provisioner authorizes a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChallengeMode {
    /// A one-time challenge per device, fetched by the MDM.
    Dynamic,
    /// No challenge (another check authorizes the request, such as Intune's validation).
    None,
}

/// One `[[scep.provisioners]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScepProvisionerSettings {
    /// `[a-z0-9-]{1,63}`, unique: the URL path segment.
    pub name: String,
    /// The tenant whose devices it serves.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The certificate profile it issues.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// `dynamic` or `none`.
    #[serde(default = "default_mode")]
    pub challenge: ChallengeMode,
    /// How long a dynamic challenge is valid, in seconds (1 to 604800).
    #[serde(default = "default_lifetime")]
    pub challenge_lifetime_seconds: u64,
    /// Microsoft Intune's SCEP validation, for Intune SCEP profiles.
    #[serde(default)]
    pub intune: Option<IntuneScepSettings>,
}

fn default_tenant() -> String {
    crate::model::DEFAULT_TENANT.into()
}
fn default_profile() -> String {
    "device-identity".into()
}
fn default_mode() -> ChallengeMode {
    ChallengeMode::Dynamic
}
fn default_lifetime() -> u64 {
    DEFAULT_CHALLENGE_LIFETIME
}

impl ScepProvisionerSettings {
    /// A provisioner with every default.
    pub fn named(name: &str) -> Self {
        ScepProvisionerSettings {
            name: name.into(),
            tenant: default_tenant(),
            profile: default_profile(),
            challenge: default_mode(),
            challenge_lifetime_seconds: default_lifetime(),
            intune: None,
        }
    }

    /// Checks what types alone do not; `(key, message)`, the key relative to the table.
    ///
    /// # Errors
    /// The first key at fault.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((k.to_owned(), m));
        if self.name.is_empty()
            || self.name.len() > 63
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("name", format!("{:?} is not [a-z0-9-]{{1,63}}", self.name));
        }
        if crate::domain::tenancy::check_tenant_id(&self.tenant).is_err() {
            return bad("tenant", format!("{:?} is not a tenant id", self.tenant));
        }
        if !DEVICE_PROFILES.contains(&self.profile.as_str()) {
            return bad(
                "profile",
                format!(
                    "{:?} is not one of {}",
                    self.profile,
                    DEVICE_PROFILES.join(", ")
                ),
            );
        }
        if !(1..=MAX_CHALLENGE_LIFETIME).contains(&self.challenge_lifetime_seconds) {
            return bad(
                "challenge_lifetime_seconds",
                format!("must be between 1 and {MAX_CHALLENGE_LIFETIME}"),
            );
        }
        if let Some(i) = &self.intune {
            i.check().map_err(|(k, m)| (format!("intune.{k}"), m))?;
        }
        Ok(())
    }
}

impl ScepSettings {
    /// Checks every provisioner; `(key, message)` with the key below `scep.`.
    ///
    /// # Errors
    /// The first key at fault.
    pub fn check(&self) -> Result<(), (String, String)> {
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in self.provisioners.iter().enumerate() {
            p.check()
                .map_err(|(k, m)| (format!("provisioners[{i}].{k}"), m))?;
            if !names.insert(&p.name) {
                return Err((
                    format!("provisioners[{i}].name"),
                    format!("{:?} appears twice", p.name),
                ));
            }
        }
        Ok(())
    }
}

/// A provisioner, ready to serve.
#[derive(Debug)]
pub struct ScepProvisioner {
    /// Its settings.
    pub settings: ScepProvisionerSettings,
    /// Intune's validation, when configured.
    pub intune: Option<Arc<IntuneValidator>>,
}

/// The SCEP provisioners and their challenges.
#[derive(Debug)]
pub struct Scep {
    domain: Arc<Domain>,
    provisioners: BTreeMap<String, ScepProvisioner>,
    ra: Option<Arc<postern_certs::scep::Ra>>,
}

impl Scep {
    /// The provisioners of `settings` (checked here too), with their Intune clients.
    ///
    /// # Errors
    /// `(key, message)` below `scep.` for a bad setting or an unreadable secret or CA file.
    pub fn new(domain: Arc<Domain>, settings: &ScepSettings) -> Result<Scep, (String, String)> {
        settings.check()?;
        let mut provisioners = BTreeMap::new();
        for (i, p) in settings.provisioners.iter().enumerate() {
            let intune = match &p.intune {
                Some(s) => Some(Arc::new(
                    IntuneValidator::open(
                        s,
                        Arc::clone(domain.clock()),
                        Arc::new(crate::connectors::client::TokioSleeper),
                    )
                    .map_err(|(k, m)| (format!("provisioners[{i}].intune.{k}"), m))?,
                )),
                None => None,
            };
            provisioners.insert(
                p.name.clone(),
                ScepProvisioner {
                    settings: p.clone(),
                    intune,
                },
            );
        }
        Ok(Scep {
            domain,
            provisioners,
            ra: None,
        })
    }

    /// The out-of-the-box provisioner only.
    pub fn defaults(domain: Arc<Domain>) -> Scep {
        let p = ScepProvisionerSettings::named(DEFAULT_PROVISIONER);
        Scep {
            domain,
            provisioners: BTreeMap::from([(
                p.name.clone(),
                ScepProvisioner {
                    settings: p,
                    intune: None,
                },
            )]),
            ra: None,
        }
    }

    /// With the registration authority that SCEP messages are signed by and encrypted to.
    #[must_use]
    pub fn with_ra(mut self, ra: Arc<postern_certs::scep::Ra>) -> Scep {
        self.ra = Some(ra);
        self
    }

    /// The registration authority, once installed.
    pub fn ra(&self) -> Option<&Arc<postern_certs::scep::Ra>> {
        self.ra.as_ref()
    }

    /// The domain.
    pub fn domain(&self) -> &Arc<Domain> {
        &self.domain
    }

    /// A provisioner by name.
    pub fn provisioner(&self, name: &str) -> Option<&ScepProvisioner> {
        self.provisioners.get(name)
    }

    /// Every provisioner, by name.
    pub fn provisioners(&self) -> impl Iterator<Item = &ScepProvisioner> {
        self.provisioners.values()
    }

    /// A provisioner by name, or NotFound.
    ///
    /// # Errors
    /// NotFound.
    pub fn require(&self, name: &str) -> DomainResult<&ScepProvisioner> {
        self.provisioner(name).ok_or_else(|| {
            DomainError::new(ErrorKind::NotFound, format!("no SCEP provisioner {name:?}"))
        })
    }
}
