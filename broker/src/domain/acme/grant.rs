//! Enrollment grants and device-bound binding keys: how a device profile authorizes one
//! enrollment.
//!
//! Apple's ACME payload carries no external account binding, so issuing an Apple profile
//! records a one-time, short-lived *grant* for the device (`DocKind::EnrollmentGrant`, one per
//! device: a new profile replaces it). A provisioner with `require_enrollment_grant` accepts a
//! `device-attest-01` order only while the device holds an unused grant, and the finalize that
//! issues the certificate uses it up in the same transaction. postern's own Android client
//! uses a binding key made for the device instead ([`EabKey::device`]): the account it binds
//! orders only that device's identifiers, and counts as the grant.
//!
//! **Architecture Invariant:** a grant is used up by the transaction that stores the
//! certificate (compare-and-swap on the grant document), so one grant yields one certificate.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::Device;
use crate::store::{DocKind, DocTxn};

use super::error::{AcmeError, AcmeResult};
use super::model::{Account, EabKey};
use super::provisioner::Provisioner;
use super::{Acme, decode, encode, random_id};

/// What a device's newest profile allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentGrant {
    /// The tenant.
    pub tenant: String,
    /// The device id.
    pub device: String,
    /// The profile generation it came with (1, 2, ...).
    pub generation: u64,
    /// The profile form (`mobileconfig`, `declarative`, `android`).
    pub form: String,
    /// The provisioner whose directory the profile names.
    pub provisioner: String,
    /// The profile's client identifier (the device's serial or UDID).
    pub client_identifier: String,
    /// The ACME directory URL the profile names.
    pub directory_url: String,
    /// SHA-256 (hex) of the one-time secret in the declarative credential URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_sha256: Option<String>,
    /// Whether that secret was used.
    #[serde(default)]
    pub secret_used: bool,
    /// The binding key made with an Android profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eab_kid: Option<String>,
    /// When issued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Until when it can be used.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// When an enrollment used it.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub used_at: Option<OffsetDateTime>,
    /// The order that used it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by_order: Option<String>,
}

impl EnrollmentGrant {
    /// Unused and not expired at `now`.
    pub fn is_open(&self, now: OffsetDateTime) -> bool {
        self.used_at.is_none() && now < self.expires_at
    }
}

/// The grant document's id.
pub fn grant_id(tenant: &str, device: &str) -> String {
    format!("{tenant}/{device}")
}

impl Acme {
    /// A device's current grant and its stored bytes.
    ///
    /// # Errors
    /// Store failures; internal when it does not decode.
    pub fn enrollment_grant(
        &self,
        tenant: &str,
        device: &str,
    ) -> AcmeResult<Option<(EnrollmentGrant, Vec<u8>)>> {
        self.load(DocKind::EnrollmentGrant, &grant_id(tenant, device))
    }

    /// A binding key for one device at `provisioner`, not stored: the caller writes it in the
    /// transaction that issues the profile. Returns the key (its HMAC key is the one-time
    /// enrollment secret).
    ///
    /// # Errors
    /// The random source.
    pub fn device_eab(&self, provisioner: &Provisioner, device: &str) -> AcmeResult<EabKey> {
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| AcmeError::internal("system random source failed"))?;
        Ok(EabKey {
            kid: format!("eab_{}", random_id()?),
            provisioner: provisioner.settings.name.clone(),
            tenant: provisioner.settings.tenant.clone(),
            hmac_key: URL_SAFE_NO_PAD.encode(secret),
            bound_to: None,
            device: Some(device.to_owned()),
            created_at: self.now(),
        })
    }

    /// The EAB document of a key (for the profile transaction).
    ///
    /// # Errors
    /// Encoding failures.
    pub fn eab_document(key: &EabKey) -> AcmeResult<Vec<u8>> {
        encode(key)
    }

    /// The stored binding key of `kid`.
    ///
    /// # Errors
    /// Store failures.
    pub fn eab_key(&self, kid: &str) -> AcmeResult<Option<(EabKey, Vec<u8>)>> {
        self.load(DocKind::AcmeEab, kid)
    }

    /// At newOrder: an account bound to a device orders only that device; a provisioner that
    /// requires grants accepts the device only with an open grant (or a device-bound account).
    pub(super) fn check_device_order(
        &self,
        p: &Provisioner,
        acct: &Account,
        device: &Device,
    ) -> AcmeResult<()> {
        if let Some(bound) = &acct.device {
            if bound != &device.id {
                return Err(AcmeError::new(
                    super::AcmeProblem::RejectedIdentifier,
                    "this account's binding key was made for another device",
                ));
            }
            return Ok(());
        }
        if !p.settings.require_enrollment_grant {
            return Ok(());
        }
        let open = self
            .enrollment_grant(&p.settings.tenant, &device.id)?
            .is_some_and(|(g, _)| g.is_open(self.now()) && g.provisioner == p.settings.name);
        if !open {
            return Err(AcmeError::unauthorized(
                "the device holds no unused enrollment grant; issue it a new profile",
            ));
        }
        Ok(())
    }

    /// At finalize: re-checks the binding and the grant, and adds using the grant up to the
    /// transaction that stores the certificate.
    pub(super) fn use_grant(
        &self,
        p: &Provisioner,
        acct: &Account,
        device: &str,
        order: &str,
        txn: DocTxn,
    ) -> AcmeResult<DocTxn> {
        if let Some(bound) = &acct.device
            && bound != device
        {
            return Err(AcmeError::unauthorized(
                "this account's binding key was made for another device",
            ));
        }
        let now = self.now();
        let id = grant_id(&p.settings.tenant, device);
        match self.enrollment_grant(&p.settings.tenant, device)? {
            Some((g, old)) if g.is_open(now) && g.provisioner == p.settings.name => {
                let mut used = g;
                used.used_at = Some(now);
                used.used_by_order = Some(order.to_owned());
                Ok(txn
                    .unchanged(DocKind::EnrollmentGrant, id.clone(), old)
                    .put(DocKind::EnrollmentGrant, id, encode(&used)?))
            }
            _ if acct.device.is_some() || !p.settings.require_enrollment_grant => Ok(txn),
            _ => Err(AcmeError::unauthorized(
                "the device's enrollment grant was used or has expired; issue it a new profile",
            )),
        }
    }

    /// Decodes a grant document.
    ///
    /// # Errors
    /// Internal when it does not decode.
    pub fn decode_grant(bytes: &[u8]) -> AcmeResult<EnrollmentGrant> {
        decode("enrollment grant", bytes)
    }
}
