//! Enrollment profiles for MDMs: a device's Apple configuration profile (optionally
//! CMS-signed), its declarative ACME asset and credential document, or the Android managed
//! configuration of postern's app; each bound to the device by a one-time secret.
//!
//! Issuing any form replaces the device's [enrollment grant](crate::domain::acme::grant)
//! (a new generation, new payload UUIDs), which invalidates the previous profile's unused
//! secrets: the declarative credential URL and the Android binding key. Every issuance is
//! audited (`profile.issue`), never with a secret.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use time::OffsetDateTime;

use postern_certs::profile::SubjectKeyKind;
use postern_certs::signer::generate;
use postern_certs::{KeyAlgorithm, KeySigner, Signer as _};
use postern_profiles::apple::{
    AcmeCredential, Credential, MOBILECONFIG_CONTENT_TYPE, ProfileParams,
};
use postern_profiles::declarative::{AssetAuthentication, DeclarativeParams, ManagedApp};
use postern_profiles::{OsVersion, Platform, Target};

use crate::model::{DEFAULT_TENANT, Device, Role};
use crate::store::{DocKind, DocTxn, StoreError};

use super::acme::grant::{EnrollmentGrant, grant_id};
use super::acme::provisioner::{DEVICE_ATTEST_01, Provisioner};
use super::acme::{Acme, AcmeError, Base};
use super::error::{DomainError, DomainResult, ErrorKind};
use super::pki::KeyToCertify;
use super::{Domain, Principal};

/// The reverse-DNS prefix of postern's payload identifiers.
pub const IDENTIFIER_PREFIX: &str = "postern";

/// The forms a profile comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileForm {
    /// An Apple `.mobileconfig` (root CA + attested ACME payload).
    Mobileconfig,
    /// Declarative device management: ACME asset, app configuration, credential document.
    Declarative,
    /// The Android managed configuration (with a device-bound binding key).
    Android,
}

impl ProfileForm {
    /// The name in audit entries and grants.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileForm::Mobileconfig => "mobileconfig",
            ProfileForm::Declarative => "declarative",
            ProfileForm::Android => "android",
        }
    }
}

/// What the MDM asks for.
#[derive(Debug, Clone, Default)]
pub struct ProfileRequest {
    /// The tenant (the path's).
    pub tenant: String,
    /// The device id.
    pub device: String,
    /// The platform, when the inventory does not say (`ios`, `macos`, ...).
    pub platform: Option<String>,
    /// The device's OS version; by default the lowest the form supports on the platform.
    pub os_version: Option<String>,
    /// The device-attest-01 provisioner; by default the tenant's first (`devices` first).
    pub provisioner: Option<String>,
    /// CMS-sign the `.mobileconfig`.
    pub signed: bool,
    /// Declarative: the bundle id of the app that receives the identity.
    pub app_bundle_id: Option<String>,
    /// Android: the app's package name.
    pub package_name: Option<String>,
}

/// An issued profile.
#[derive(Debug, Clone)]
pub struct IssuedProfile {
    /// The bytes to serve.
    pub body: Vec<u8>,
    /// Their content type.
    pub content_type: &'static str,
    /// The grant's generation.
    pub generation: u64,
    /// Until when the secret and the grant can be used.
    pub expires_at: OffsetDateTime,
}

/// The app identifier the declarative form names when the request names none.
pub const DEFAULT_IDENTITY_IDENTIFIER: &str = "postern-device-identity";

/// The content type of the CMS form.
pub const SIGNED_CONTENT_TYPE: &str = "application/pkcs7-mime";

/// The broker's profile-signing key and certificate, made on first use and kept in memory
/// (a restart makes a new one): `profile-signing` from the issuing CA, renewed with a week
/// left.
#[derive(Debug, Default)]
pub struct ProfileSigning {
    current: tokio::sync::Mutex<Option<Arc<SigningIdentity>>>,
}

#[derive(Debug)]
struct SigningIdentity {
    signer: KeySigner,
    cert_der: Vec<u8>,
    chain: Vec<Vec<u8>>,
    not_after: OffsetDateTime,
    issuer_der: Vec<u8>,
}

impl ProfileSigning {
    async fn identity(&self, domain: &Domain) -> DomainResult<Arc<SigningIdentity>> {
        let mut g = self.current.lock().await;
        let issuer = domain.pki().issuer().certificate().der().to_vec();
        let now = domain.clock().now();
        if let Some(id) = g.as_ref()
            && id.not_after - now > time::Duration::days(7)
            && id.issuer_der == issuer
        {
            return Ok(Arc::clone(id));
        }
        let key = generate(KeyAlgorithm::EcdsaP256).map_err(DomainError::internal)?;
        let signer = KeySigner::from_pkcs8(key.as_der()).map_err(DomainError::internal)?;
        let issued = domain
            .issue_key(
                &Principal::system(),
                DEFAULT_TENANT,
                "profile-signing",
                KeyToCertify {
                    spki_der: signer.spki_der(),
                    key_kind: SubjectKeyKind::EcdsaP256,
                },
                Some("postern profile signing"),
                &[],
                None,
                json!({ "source": "profile-signing" }),
            )
            .await?;
        let cert_der = pem::parse(&issued.certificate_pem)
            .map_err(DomainError::internal)?
            .into_contents();
        let id = Arc::new(SigningIdentity {
            signer,
            cert_der,
            chain: vec![issuer.clone()],
            not_after: issued.record.not_after,
            issuer_der: issuer,
        });
        *g = Some(Arc::clone(&id));
        Ok(id)
    }
}

fn acme_err(e: AcmeError) -> DomainError {
    if e.not_found {
        return DomainError::new(ErrorKind::NotFound, e.detail);
    }
    DomainError::internal(e.detail)
}

fn profile_err(e: postern_profiles::Error) -> DomainError {
    match e {
        postern_profiles::Error::Internal(m) => DomainError::internal(m),
        other => DomainError::new(ErrorKind::Malformed, other.to_string()),
    }
}

fn random_secret(prefix: &str) -> DomainResult<String> {
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| DomainError::internal("system random source failed"))?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(b)))
}

fn sha256_hex(s: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()))
}

/// Admin or MDM of the tenant (operators: any tenant).
fn authorize(who: &Principal, tenant: &str) -> DomainResult<()> {
    if !matches!(who.role, Role::Admin | Role::Mdm) {
        return Err(DomainError::new(
            ErrorKind::Forbidden,
            "admin or mdm role required",
        ));
    }
    who.scope(Some(tenant)).map(|_| ())
}

fn device_provisioner<'a>(
    acme: &'a Acme,
    tenant: &str,
    name: Option<&str>,
) -> DomainResult<&'a Arc<Provisioner>> {
    let fits =
        |p: &Provisioner| p.settings.tenant == tenant && p.settings.challenge == DEVICE_ATTEST_01;
    let found = match name {
        Some(n) => acme.provisioners().get(n).filter(|p| fits(p)),
        None => acme
            .provisioners()
            .get("devices")
            .filter(|p| fits(p))
            .or_else(|| acme.provisioners().values().find(|p| fits(p))),
    };
    found.ok_or_else(|| {
        DomainError::new(
            ErrorKind::NotFound,
            match name {
                Some(n) => format!("no device-attest-01 provisioner {n:?} of tenant {tenant}"),
                None => format!("tenant {tenant} has no device-attest-01 provisioner"),
            },
        )
    })
}

fn minimum(form: ProfileForm, platform: Platform, app: bool) -> Option<OsVersion> {
    use postern_profiles::apple::ACME_ATTEST_MINIMUM;
    use postern_profiles::declarative::{ACME_ASSET_MINIMUM, APP_CONFIG_MINIMUM};
    let list: &[(Platform, OsVersion)] = match (form, app) {
        (ProfileForm::Mobileconfig, _) => &ACME_ATTEST_MINIMUM,
        (ProfileForm::Declarative, false) => &ACME_ASSET_MINIMUM,
        (ProfileForm::Declarative, true) => &APP_CONFIG_MINIMUM,
        (ProfileForm::Android, _) => return None,
    };
    list.iter().find(|(p, _)| *p == platform).map(|(_, v)| *v)
}

fn target(req: &ProfileRequest, device: &Device, form: ProfileForm) -> DomainResult<Target> {
    let name = req
        .platform
        .as_deref()
        .or(device.platform.as_deref())
        .ok_or_else(|| {
            DomainError::new(
                ErrorKind::Malformed,
                "the device has no platform; name one with ?platform=",
            )
        })?;
    let platform: Platform = name.parse().map_err(profile_err)?;
    if !platform.is_apple() {
        return Err(DomainError::new(
            ErrorKind::Malformed,
            format!(
                "the {} form is for Apple platforms, and the device is {}",
                form.as_str(),
                platform.as_str()
            ),
        ));
    }
    let version = match &req.os_version {
        Some(v) => v.parse().map_err(profile_err)?,
        None => minimum(form, platform, req.app_bundle_id.is_some()).ok_or_else(|| {
            DomainError::new(
                ErrorKind::Malformed,
                format!(
                    "the {} form does not support {}",
                    form.as_str(),
                    platform.schema_name()
                ),
            )
        })?,
    };
    Ok(Target::new(platform, version))
}

fn client_identifier(device: &Device, form: ProfileForm) -> DomainResult<String> {
    let id = match form {
        ProfileForm::Android => device
            .serial
            .clone()
            .or_else(|| device.imei.clone())
            .or_else(|| device.hardware_ids.first().cloned()),
        _ => device.serial.clone().or_else(|| device.udid.clone()),
    };
    id.ok_or_else(|| {
        DomainError::new(
            ErrorKind::Malformed,
            "the device has no identifier its attestation can carry (serial or UDID)",
        )
    })
}

/// Issues a profile of `form` for a device: builds it, replaces the device's grant (and
/// deletes the previous profile's unused binding key), audits, and returns the bytes.
///
/// # Errors
/// Forbidden (role, another tenant), NotFound (device, provisioner), Malformed (platform,
/// OS version the form does not support, device without identifier), Conflict (a concurrent
/// issuance for the same device).
pub async fn issue(
    acme: &Acme,
    signing: &ProfileSigning,
    who: &Principal,
    base: &Base,
    req: &ProfileRequest,
    form: ProfileForm,
) -> DomainResult<IssuedProfile> {
    authorize(who, &req.tenant)?;
    let domain = acme.domain();
    let device = domain
        .device_record(&req.tenant, &req.device)?
        .ok_or_else(|| {
            DomainError::new(ErrorKind::NotFound, format!("no device {}", req.device))
        })?;
    let p = device_provisioner(acme, &req.tenant, req.provisioner.as_deref())?;
    let ident = client_identifier(&device, form)?;
    let directory_url = base.url(&p.settings.name, "directory");
    let old = acme
        .enrollment_grant(&req.tenant, &device.id)
        .map_err(acme_err)?;
    let generation = old.as_ref().map_or(0, |(g, _)| g.generation) + 1;
    let now = domain.clock().now();
    let expires_at = now + time::Duration::hours(i64::from(p.settings.enrollment_grant_hours));
    let mut grant = EnrollmentGrant {
        tenant: req.tenant.clone(),
        device: device.id.clone(),
        generation,
        form: form.as_str().into(),
        provisioner: p.settings.name.clone(),
        client_identifier: ident.clone(),
        directory_url: directory_url.clone(),
        secret_sha256: None,
        secret_used: false,
        eab_kid: None,
        created_at: now,
        expires_at,
        used_at: None,
        used_by_order: None,
    };
    let mut txn = DocTxn::new();
    let (body, content_type) = match form {
        ProfileForm::Mobileconfig => {
            let params = ProfileParams {
                tenant: req.tenant.clone(),
                device_id: device.id.clone(),
                generation,
                identifier_prefix: IDENTIFIER_PREFIX.into(),
                organization: req.tenant.clone(),
                display_name: "Device identity".into(),
                target: target(req, &device, form)?,
                root_ca_der: domain.pki().issuer().root().der().to_vec(),
                credential: Credential::Acme(AcmeCredential::for_device(&directory_url, &ident)),
                removal_disallowed: false,
            };
            let xml = postern_profiles::apple::enrollment_profile(&params)
                .and_then(|m| m.to_xml())
                .map_err(profile_err)?;
            if req.signed {
                let id = signing.identity(domain).await?;
                let der =
                    postern_profiles::cms::sign(&xml, &id.signer, &id.cert_der, &id.chain, now)
                        .map_err(profile_err)?;
                (der, SIGNED_CONTENT_TYPE)
            } else {
                (xml, MOBILECONFIG_CONTENT_TYPE)
            }
        }
        ProfileForm::Declarative => {
            let secret = random_secret("pes_")?;
            grant.secret_sha256 = Some(sha256_hex(&secret));
            let data_url = format!(
                "{}/v1/profiles/{}/devices/{}/declarative/credential/{secret}",
                base.0, req.tenant, device.id
            );
            let params = DeclarativeParams {
                tenant: req.tenant.clone(),
                device_id: device.id.clone(),
                generation,
                identifier_prefix: IDENTIFIER_PREFIX.into(),
                target: target(req, &device, form)?,
                data_url: data_url.clone(),
                authentication: AssetAuthentication::None,
                acme: AcmeCredential::for_device(&directory_url, &ident),
                app: req.app_bundle_id.as_ref().map(|b| ManagedApp {
                    bundle_id: b.clone(),
                    identity_identifier: DEFAULT_IDENTITY_IDENTIFIER.into(),
                }),
            };
            let d = postern_profiles::declarative::declarations(&params).map_err(profile_err)?;
            let credential: Value =
                serde_json::from_slice(&d.credential).map_err(DomainError::internal)?;
            let mut declarations = vec![d.asset];
            declarations.extend(d.configuration);
            let body = json!({
                "generation": generation,
                "expires_at": expires_at.format(&time::format_description::well_known::Rfc3339).map_err(DomainError::internal)?,
                "declarations": declarations,
                "credential_url": data_url,
                "credential": credential,
            });
            (
                serde_json::to_vec_pretty(&body).map_err(DomainError::internal)?,
                "application/json",
            )
        }
        ProfileForm::Android => {
            let platform = req.platform.as_deref().or(device.platform.as_deref());
            if platform.is_some_and(|p| !p.eq_ignore_ascii_case("android")) {
                return Err(DomainError::new(
                    ErrorKind::Malformed,
                    format!(
                        "the android form is for Android devices, and the device is {}",
                        platform.unwrap_or_default()
                    ),
                ));
            }
            let key = acme.device_eab(p, &device.id).map_err(acme_err)?;
            grant.eab_kid = Some(key.kid.clone());
            let cfg = postern_profiles::android::managed_configuration(
                &postern_profiles::android::AndroidParams {
                    package_name: req
                        .package_name
                        .clone()
                        .unwrap_or_else(|| "io.postern.messenger".into()),
                    broker_url: base.0.clone(),
                    acme_directory_url: directory_url.clone(),
                    tenant: req.tenant.clone(),
                    device_id: device.id.clone(),
                    client_identifier: ident.clone(),
                    eab_kid: key.kid.clone(),
                    eab_hmac_key: key.hmac_key.clone(),
                    attestation_required: true,
                },
            )
            .map_err(profile_err)?;
            txn = txn.absent(DocKind::AcmeEab, key.kid.clone()).put(
                DocKind::AcmeEab,
                key.kid.clone(),
                Acme::eab_document(&key).map_err(acme_err)?,
            );
            (
                serde_json::to_vec_pretty(&cfg).map_err(DomainError::internal)?,
                "application/json",
            )
        }
    };
    let id = grant_id(&req.tenant, &device.id);
    txn = match &old {
        Some((g, bytes)) => {
            // the previous profile's binding key, if nothing used it, goes with it
            if let Some(kid) = &g.eab_kid
                && let Some((k, kb)) = acme.eab_key(kid).map_err(acme_err)?
                && k.bound_to.is_none()
            {
                txn = txn
                    .unchanged(DocKind::AcmeEab, kid.clone(), kb)
                    .delete(DocKind::AcmeEab, kid.clone());
            }
            txn.unchanged(DocKind::EnrollmentGrant, id.clone(), bytes.clone())
        }
        None => txn.absent(DocKind::EnrollmentGrant, id.clone()),
    };
    let draft = domain.draft(
        who,
        &req.tenant,
        "profile.issue",
        &device.id,
        json!({
            "form": form.as_str(),
            "signed": req.signed && form == ProfileForm::Mobileconfig,
            "generation": generation,
            "provisioner": p.settings.name,
            "client_identifier": ident,
            "eab_kid": grant.eab_kid,
            "expires_at": expires_at.unix_timestamp(),
        }),
    );
    let txn = txn
        .put(
            DocKind::EnrollmentGrant,
            id,
            serde_json::to_vec(&grant).map_err(DomainError::internal)?,
        )
        .audit(draft);
    match domain.commit(txn).await {
        Ok(_) => Ok(IssuedProfile {
            body,
            content_type,
            generation,
            expires_at,
        }),
        Err(StoreError::Conflict(_)) => Err(DomainError::new(
            ErrorKind::Conflict,
            "a profile for this device was issued concurrently; ask again",
        )),
        Err(e) => Err(e.into()),
    }
}

fn credential_of(grant: &EnrollmentGrant) -> DomainResult<Vec<u8>> {
    postern_profiles::declarative::credential_document(&AcmeCredential::for_device(
        &grant.directory_url,
        &grant.client_identifier,
    ))
    .map_err(profile_err)
}

/// The credential document at a declarative profile's `DataURL`: the URL's one-time secret
/// must be the device's current one, unused and unexpired; this uses it up.
///
/// # Errors
/// NotFound for an unknown, used, replaced or expired secret (the same answer for each).
pub async fn credential_by_secret(
    acme: &Acme,
    tenant: &str,
    device: &str,
    secret: &str,
) -> DomainResult<Vec<u8>> {
    let gone = || {
        DomainError::new(
            ErrorKind::NotFound,
            "no credential at this URL: unknown, used, replaced or expired",
        )
    };
    let (grant, bytes) = acme
        .enrollment_grant(tenant, device)
        .map_err(acme_err)?
        .ok_or_else(gone)?;
    let now = acme.domain().clock().now();
    if grant.secret_used
        || now >= grant.expires_at
        || grant.secret_sha256.as_deref() != Some(sha256_hex(secret).as_str())
    {
        return Err(gone());
    }
    let doc = credential_of(&grant)?;
    let mut used = grant;
    used.secret_used = true;
    let id = grant_id(tenant, device);
    let txn = DocTxn::new()
        .unchanged(DocKind::EnrollmentGrant, id.clone(), bytes)
        .put(
            DocKind::EnrollmentGrant,
            id,
            serde_json::to_vec(&used).map_err(DomainError::internal)?,
        );
    match acme.domain().commit(txn).await {
        Ok(_) => Ok(doc),
        Err(StoreError::Conflict(_)) => Err(gone()),
        Err(e) => Err(e.into()),
    }
}

/// The credential document of a device's current declarative profile, for its MDM (which
/// serves it to the device itself).
///
/// # Errors
/// Forbidden, NotFound (device without a current declarative profile).
pub fn credential_for_mdm(
    acme: &Acme,
    who: &Principal,
    tenant: &str,
    device: &str,
) -> DomainResult<Vec<u8>> {
    authorize(who, tenant)?;
    let now = acme.domain().clock().now();
    match acme.enrollment_grant(tenant, device).map_err(acme_err)? {
        Some((g, _)) if g.form == ProfileForm::Declarative.as_str() && now < g.expires_at => {
            credential_of(&g)
        }
        _ => Err(DomainError::new(
            ErrorKind::NotFound,
            format!("device {device} has no current declarative profile"),
        )),
    }
}
