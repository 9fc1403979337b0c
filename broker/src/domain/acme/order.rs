//! Orders, authorizations, finalization, certificate download and revocation.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::json;

use postern_certs::attestation::{DeviceIdentifier, IdentifierKind};
use postern_certs::crl::RevocationReason;
use postern_certs::csr;
use postern_certs::names::SubjectName;

use crate::domain::pki::KeyToCertify;
use crate::model::{CertificateStatus, DeviceAttestation, Enrollment};
use crate::store::{DocKind, DocTxn};

use super::error::{AcmeError, AcmeProblem, AcmeResult};
use super::model::{
    Authz, AuthzStatus, Challenge, ChallengeStatus, Identifier, Order, OrderStatus,
};
use super::provisioner::{DEVICE_ATTEST_01, HTTP_01};
use super::{Acme, Authed, encode, random_id};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewOrder {
    identifiers: Vec<Identifier>,
    #[serde(default)]
    not_before: Option<String>,
    #[serde(default)]
    not_after: Option<String>,
}

/// How many times finalize signs again after a conflicting concurrent write.
const FINALIZE_ATTEMPTS: usize = 4;

/// The most identifiers one order may name.
const MAX_IDENTIFIERS: usize = 20;

/// Parses an order's device identifier.
pub(super) fn device_identifier(id: &Identifier) -> AcmeResult<DeviceIdentifier> {
    let kind = match id.type_.as_str() {
        "permanent-identifier" => IdentifierKind::PermanentIdentifier,
        "hardware-module" => IdentifierKind::HardwareModule,
        other => {
            return Err(AcmeError::new(
                AcmeProblem::UnsupportedIdentifier,
                format!("identifier type {other:?} is not served here"),
            ));
        }
    };
    DeviceIdentifier::parse(kind, &id.value)
        .map_err(|m| AcmeError::malformed(format!("identifier {:?}: {m}", id.value)))
}

fn check_dns(name: &str) -> Result<(), String> {
    if name.starts_with("*.") {
        return Err("wildcard names cannot be validated with http-01".into());
    }
    SubjectName::Dns(name.to_owned())
        .validate()
        .map_err(|e| e.to_string())?;
    if name != name.to_ascii_lowercase() {
        return Err("names must be lower case".into());
    }
    Ok(())
}

impl Acme {
    /// `newOrder`.
    ///
    /// # Errors
    /// `malformed` (no identifiers, too many, notBefore/notAfter), `unsupportedIdentifier`,
    /// `rejectedIdentifier` (an unknown device, a name the provisioner does not allow).
    pub async fn new_order(&self, provisioner: &str, authed: &Authed) -> AcmeResult<Order> {
        let p = self.provisioner(provisioner)?;
        let acct = authed.account()?;
        let req: NewOrder = authed.req.json()?;
        if req.not_before.is_some() || req.not_after.is_some() {
            return Err(AcmeError::malformed(
                "notBefore and notAfter are not supported; validity comes from the profile",
            ));
        }
        if req.identifiers.is_empty() || req.identifiers.len() > MAX_IDENTIFIERS {
            return Err(AcmeError::malformed(format!(
                "an order names 1 to {MAX_IDENTIFIERS} identifiers"
            )));
        }
        let mut seen = BTreeSet::new();
        for id in &req.identifiers {
            if !seen.insert((&id.type_, &id.value)) {
                return Err(AcmeError::malformed(format!(
                    "identifier {:?} appears twice",
                    id.value
                )));
            }
        }
        let challenge = p.settings.challenge.as_str();
        let mut rejected = AcmeError::new(
            AcmeProblem::RejectedIdentifier,
            "the server will not issue for these identifiers",
        );
        if challenge == DEVICE_ATTEST_01 {
            // types and grammar first: dns names here are unsupportedIdentifier, however many
            let mut devs = Vec::new();
            for id in &req.identifiers {
                devs.push(device_identifier(id)?);
            }
            let ([dev], [id]) = (devs.as_slice(), req.identifiers.as_slice()) else {
                return Err(AcmeError::malformed(
                    "a device order names exactly one device identifier",
                ));
            };
            match self.domain.find_device(&p.settings.tenant, &dev.value)? {
                None => {
                    rejected = rejected.with_subproblem(
                        AcmeProblem::RejectedIdentifier,
                        "no device of this tenant's inventory has this identifier",
                        &id.type_,
                        &id.value,
                    );
                }
                Some(device) => {
                    if let Err(e) = self.check_device_order(p, acct, &device) {
                        if e.problem != AcmeProblem::RejectedIdentifier {
                            return Err(e);
                        }
                        rejected = rejected.with_subproblem(
                            AcmeProblem::RejectedIdentifier,
                            e.detail,
                            &id.type_,
                            &id.value,
                        );
                    }
                }
            }
        } else if acct.device.is_some() {
            return Err(AcmeError::unauthorized(
                "an account bound to a device orders only that device's identifiers",
            ));
        } else {
            for id in &req.identifiers {
                if id.type_ != "dns" {
                    return Err(AcmeError::new(
                        AcmeProblem::UnsupportedIdentifier,
                        format!("identifier type {:?} is not served here; use dns", id.type_),
                    ));
                }
                if let Err(m) = check_dns(&id.value) {
                    rejected = rejected.with_subproblem(
                        AcmeProblem::RejectedIdentifier,
                        m,
                        "dns",
                        &id.value,
                    );
                } else if !p.settings.allows_dns(&id.value) {
                    rejected = rejected.with_subproblem(
                        AcmeProblem::RejectedIdentifier,
                        "this provisioner does not issue for this name",
                        "dns",
                        &id.value,
                    );
                }
            }
        }
        if !rejected.subproblems.is_empty() {
            return Err(rejected);
        }
        let now = self.now();
        let expires = now + self.order_lifetime();
        let order_id = random_id()?;
        let mut authzs = Vec::new();
        for id in &req.identifiers {
            authzs.push(Authz {
                id: random_id()?,
                provisioner: provisioner.to_owned(),
                tenant: p.settings.tenant.clone(),
                account: acct.id.clone(),
                order: order_id.clone(),
                identifier: id.clone(),
                status: AuthzStatus::Pending,
                expires,
                challenges: vec![Challenge {
                    type_: if challenge == DEVICE_ATTEST_01 {
                        DEVICE_ATTEST_01.into()
                    } else {
                        HTTP_01.into()
                    },
                    token: random_id()?,
                    status: ChallengeStatus::Pending,
                    validated: None,
                    error: None,
                }],
                attested: None,
            });
        }
        let order = Order {
            id: order_id.clone(),
            provisioner: provisioner.to_owned(),
            tenant: p.settings.tenant.clone(),
            account: acct.id.clone(),
            status: OrderStatus::Pending,
            expires,
            identifiers: req.identifiers,
            authorizations: authzs.iter().map(|a| a.id.clone()).collect(),
            certificate: None,
            error: None,
            created_at: now,
        };
        let mut txn = DocTxn::new()
            .absent(DocKind::AcmeOrder, order_id.clone())
            .put(DocKind::AcmeOrder, order_id, encode(&order)?);
        for a in &authzs {
            txn = txn.absent(DocKind::AcmeAuthz, a.id.clone()).put(
                DocKind::AcmeAuthz,
                a.id.clone(),
                encode(a)?,
            );
        }
        if !self.commit(txn).await? {
            return Err(AcmeError::internal("order id collision"));
        }
        Ok(order)
    }

    /// An order of the account, with its state brought up to date (ready when every
    /// authorization is valid; invalid when one failed or it expired).
    ///
    /// # Errors
    /// 404, `unauthorized` (another account's).
    pub fn order(&self, provisioner: &str, authed: &Authed, id: &str) -> AcmeResult<Order> {
        let acct = authed.account()?;
        Ok(self.current_order(provisioner, &acct.id, id)?.0)
    }

    /// The order, its stored bytes, and its authorizations; state derived.
    fn current_order(
        &self,
        provisioner: &str,
        account: &str,
        id: &str,
    ) -> AcmeResult<(Order, Vec<u8>, Vec<Authz>)> {
        let (mut order, bytes): (Order, Vec<u8>) = self
            .load(DocKind::AcmeOrder, id)?
            .filter(|(o, _): &(Order, Vec<u8>)| o.provisioner == provisioner)
            .ok_or_else(|| AcmeError::not_found("order"))?;
        if order.account != account {
            return Err(AcmeError::unauthorized(
                "this order belongs to another account",
            ));
        }
        let mut authzs = Vec::new();
        for a in &order.authorizations {
            match self.load::<Authz>(DocKind::AcmeAuthz, a)? {
                Some((z, _)) => authzs.push(z),
                None => {
                    // removed by cleanup: the order cannot complete
                    if matches!(order.status, OrderStatus::Pending | OrderStatus::Ready) {
                        order.status = OrderStatus::Invalid;
                    }
                }
            }
        }
        let now = self.now();
        if matches!(order.status, OrderStatus::Pending | OrderStatus::Ready) {
            if order.expires < now {
                order.status = OrderStatus::Invalid;
                order.error = Some(AcmeError::malformed("the order expired"));
            } else if let Some(bad) = authzs
                .iter()
                .find(|a| a.status != AuthzStatus::Valid && a.status != AuthzStatus::Pending)
            {
                order.status = OrderStatus::Invalid;
                order.error = bad
                    .challenges
                    .iter()
                    .find_map(|c| c.error.clone())
                    .or_else(|| {
                        Some(AcmeError::unauthorized(
                            format!("authorization {:?}", bad.status).to_lowercase(),
                        ))
                    });
            } else if authzs.len() == order.authorizations.len()
                && authzs
                    .iter()
                    .all(|a| a.status == AuthzStatus::Valid && a.expires >= now)
            {
                order.status = OrderStatus::Ready;
            }
        }
        Ok((order, bytes, authzs))
    }

    /// An authorization of the account (POST-as-GET), or its deactivation
    /// (`{"status":"deactivated"}`).
    ///
    /// # Errors
    /// 404, `unauthorized`, `malformed`.
    pub async fn authz(&self, provisioner: &str, authed: &Authed, id: &str) -> AcmeResult<Authz> {
        let acct = authed.account()?;
        let (mut a, bytes) = self.own_authz(provisioner, &acct.id, id)?;
        if !authed.req.is_post_as_get() {
            #[derive(Deserialize)]
            struct Deactivate {
                status: String,
            }
            let d: Deactivate = authed.req.json()?;
            if d.status != "deactivated" {
                return Err(AcmeError::malformed(
                    "only {\"status\":\"deactivated\"} may be posted to an authorization",
                ));
            }
            if !matches!(a.status, AuthzStatus::Pending | AuthzStatus::Valid) {
                return Err(AcmeError::malformed(
                    format!("the authorization is {:?}", a.status).to_lowercase(),
                ));
            }
            a.status = AuthzStatus::Deactivated;
            let txn = DocTxn::new()
                .unchanged(DocKind::AcmeAuthz, id.to_owned(), bytes)
                .put(DocKind::AcmeAuthz, id.to_owned(), encode(&a)?);
            if !self.commit(txn).await? {
                return Err(AcmeError::malformed(
                    "the authorization changed concurrently; try again",
                ));
            }
        }
        Ok(self.derive_authz(a))
    }

    pub(super) fn own_authz(
        &self,
        provisioner: &str,
        account: &str,
        id: &str,
    ) -> AcmeResult<(Authz, Vec<u8>)> {
        let (a, bytes): (Authz, Vec<u8>) = self
            .load(DocKind::AcmeAuthz, id)?
            .filter(|(a, _): &(Authz, Vec<u8>)| a.provisioner == provisioner)
            .ok_or_else(|| AcmeError::not_found("authorization"))?;
        if a.account != account {
            return Err(AcmeError::unauthorized(
                "this authorization belongs to another account",
            ));
        }
        Ok((a, bytes))
    }

    /// Marks a pending authorization past its expiry as expired (for display).
    pub(super) fn derive_authz(&self, mut a: Authz) -> Authz {
        if a.status == AuthzStatus::Pending && a.expires < self.now() {
            a.status = AuthzStatus::Expired;
        }
        a
    }

    /// `finalize`: checks the CSR against the order (and, for devices, against the attested
    /// key), issues, and makes the order valid.
    ///
    /// # Errors
    /// `orderNotReady`, `badCSR`, `unauthorized`, 404.
    pub async fn finalize(
        &self,
        provisioner: &str,
        authed: &Authed,
        id: &str,
    ) -> AcmeResult<Order> {
        let p = self.provisioner(provisioner)?;
        let acct = authed.account()?;
        #[derive(Deserialize)]
        struct Finalize {
            csr: String,
        }
        let body: Finalize = authed.req.json()?;
        let (order, stored, authzs) = self.current_order(provisioner, &acct.id, id)?;
        if order.status != OrderStatus::Ready {
            return Err(AcmeError::new(
                AcmeProblem::OrderNotReady,
                format!(
                    "the order is {}, not ready",
                    serde_json::to_string(&order.status)
                        .unwrap_or_default()
                        .trim_matches('"')
                ),
            ));
        }
        let der = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            body.csr.trim_end_matches('=').as_bytes(),
        )
        .map_err(|_| AcmeError::new(AcmeProblem::BadCsr, "csr is not base64url DER"))?;
        let checked =
            csr::check(&der).map_err(|e| AcmeError::new(AcmeProblem::BadCsr, e.to_string()))?;

        // what the certificate will say, and how the subject proved it
        let (names, common_name, device, attested) = if p.settings.challenge == DEVICE_ATTEST_01 {
            let a = authzs
                .first()
                .ok_or_else(|| AcmeError::internal("order without authorization"))?;
            let att = a.attested.clone().ok_or_else(|| {
                AcmeError::internal("valid device authorization without evidence")
            })?;
            if att.evidence.public_key != checked.spki_der {
                return Err(AcmeError::new(
                    AcmeProblem::BadCsr,
                    "the CSR's key is not the attested key",
                ));
            }
            let dev = device_identifier(&a.identifier)?;
            let names = match p.settings.profile.as_str() {
                "messaging-identity" => vec![SubjectName::Uri(format!(
                    "urn:postern:device:{}:{}",
                    p.settings.tenant, att.device
                ))],
                _ => vec![SubjectName::PermanentIdentifier(dev.value.clone())],
            };
            (names, Some(dev.value), Some(att.device.clone()), Some(att))
        } else {
            let mut wanted: BTreeSet<String> =
                order.identifiers.iter().map(|i| i.value.clone()).collect();
            let mut got = BTreeSet::new();
            for n in &checked.names {
                match n {
                    SubjectName::Dns(d) => {
                        got.insert(d.to_ascii_lowercase());
                    }
                    other => {
                        return Err(AcmeError::new(
                            AcmeProblem::BadCsr,
                            format!("the CSR names {other}, which the order does not"),
                        ));
                    }
                }
            }
            if let Some(cn) = &checked.common_name {
                if !wanted.contains(&cn.to_ascii_lowercase()) {
                    return Err(AcmeError::new(
                        AcmeProblem::BadCsr,
                        format!("the CSR's commonName {cn:?} is not an identifier of the order"),
                    ));
                }
                got.insert(cn.to_ascii_lowercase());
            }
            if got != wanted {
                return Err(AcmeError::new(
                    AcmeProblem::BadCsr,
                    "the CSR's names are not exactly the order's identifiers",
                ));
            }
            let names: Vec<SubjectName> = std::mem::take(&mut wanted)
                .into_iter()
                .map(SubjectName::Dns)
                .collect();
            (names, None, None, None)
        };

        // one transaction: the order goes from ready to valid, the certificate and its audit
        // entry are stored, and the device records them; a concurrent finalize loses the
        // compare-and-swap on the order
        let who = self.principal(p, &acct.id);
        let enrollment = Enrollment {
            protocol: "acme".into(),
            provisioner: provisioner.to_owned(),
            account: Some(acct.id.clone()),
            request: Some(id.to_owned()),
            device: device.clone(),
            evidence_sha256: attested.as_ref().map(|a| a.evidence_sha256.clone()),
        };
        let details = json!({
            "source": "acme",
            "provisioner": provisioner,
            "order": id,
            "device": device,
            "attestation": attested.as_ref().map(|a| json!({
                "format": a.evidence.format,
                "sha256": a.evidence_sha256,
            })),
        });
        let validity = p
            .settings
            .validity_days
            .map(|d| std::time::Duration::from_secs(u64::from(d) * 86_400));
        let key = KeyToCertify {
            spki_der: &checked.spki_der,
            key_kind: checked.key_kind,
        };
        for _ in 0..FINALIZE_ATTEMPTS {
            let prepared = self.domain.prepare_certificate(
                &who,
                &p.settings.tenant,
                &p.settings.profile,
                &key,
                common_name.as_deref(),
                &names,
                validity,
                &details,
                Some(enrollment.clone()),
            )?;
            let serial = prepared.issued.record.serial.clone();
            let issued_record = prepared.issued.record.clone();
            let mut done = order.clone();
            done.status = OrderStatus::Valid;
            done.certificate = Some(serial.clone());
            let mut txn = DocTxn::new()
                .unchanged(DocKind::AcmeOrder, id.to_owned(), stored.clone())
                .put(DocKind::AcmeOrder, id.to_owned(), encode(&done)?)
                .certificate(prepared.issued.record)
                .audit(prepared.draft);
            if let Some(dev) = &device {
                txn = self.use_grant(p, acct, dev, id, txn)?;
            }
            if let (Some(dev), Some(att)) = (&device, &attested) {
                let record = DeviceAttestation {
                    sha256: att.evidence_sha256.clone(),
                    evidence: att.evidence.clone(),
                };
                txn = self.domain.device_certificate_change(
                    txn,
                    &p.settings.tenant,
                    dev,
                    &serial,
                    Some(record),
                )?;
            }
            if self.commit(txn).await? {
                if let Some(posture) = self.posture()
                    && let Err(e) = posture.credential_issued(&who, &issued_record).await
                {
                    // the certificate is issued and stored; the posture catches up at the
                    // device's next handshake, which records the credential first
                    tracing::error!(serial = %serial, error = %e, "posture not updated");
                }
                return Ok(done);
            }
            // lost a race: on the order (another finalize), the device record, or a serial
            let still_ready = self.domain.store().doc(DocKind::AcmeOrder, id)?.as_deref()
                == Some(stored.as_slice());
            if !still_ready {
                return Err(AcmeError::new(
                    AcmeProblem::OrderNotReady,
                    "the order was finalized by another request",
                ));
            }
        }
        Err(AcmeError::internal(
            "finalize kept conflicting with concurrent writes",
        ))
    }

    /// The certificate chain (PEM: leaf, then the issuing CA) of a certificate the account
    /// obtained.
    ///
    /// # Errors
    /// 404, `unauthorized`.
    pub fn certificate_chain(
        &self,
        provisioner: &str,
        authed: &Authed,
        serial: &str,
    ) -> AcmeResult<String> {
        let acct = authed.account()?;
        let rec = self
            .domain
            .store()
            .certificate(serial)?
            .filter(|r| {
                r.enrollment
                    .as_ref()
                    .is_some_and(|e| e.protocol == "acme" && e.provisioner == provisioner)
            })
            .ok_or_else(|| AcmeError::not_found("certificate"))?;
        if rec.enrollment.as_ref().and_then(|e| e.account.as_deref()) != Some(acct.id.as_str()) {
            return Err(AcmeError::unauthorized(
                "this certificate was issued to another account",
            ));
        }
        let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &rec.der_b64)
            .map_err(AcmeError::internal)?;
        Ok(format!(
            "{}{}",
            pem::encode(&pem::Pem::new("CERTIFICATE", der)),
            self.domain.pki().issuer().certificate().to_pem()
        ))
    }

    /// `revokeCert`: by the account that obtained the certificate, or by the certificate's key.
    ///
    /// # Errors
    /// `malformed`, `unauthorized`, `badRevocationReason`, `alreadyRevoked`, 404.
    pub async fn revoke(&self, provisioner: &str, authed: &Authed) -> AcmeResult<()> {
        let p = self.provisioner(provisioner)?;
        #[derive(Deserialize)]
        struct Revoke {
            certificate: String,
            #[serde(default)]
            reason: Option<u8>,
        }
        let body: Revoke = authed.req.json()?;
        let der = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            body.certificate.trim_end_matches('=').as_bytes(),
        )
        .map_err(|_| AcmeError::malformed("certificate is not base64url DER"))?;
        let (_, cert) =
            <x509_parser::certificate::X509Certificate<'_> as x509_parser::prelude::FromDer<
                '_,
                _,
            >>::from_der(&der)
            .map_err(|_| AcmeError::malformed("certificate does not parse"))?;
        let serial = hex::encode(cert.raw_serial());
        let rec = self
            .domain
            .store()
            .certificate(&serial)?
            .filter(|r| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &r.der_b64)
                    .ok()
                    .as_deref()
                    == Some(der.as_slice())
            })
            .ok_or_else(|| AcmeError::not_found("certificate issued here"))?;
        let authorized = match (&authed.account, &authed.req.signer) {
            (Some(acct), _) => {
                rec.enrollment.as_ref().and_then(|e| e.account.as_deref()) == Some(acct.id.as_str())
            }
            (None, super::jws::Signer::Key(jwk)) => {
                postern_certs::jws::Jwk::from_spki_der(cert.public_key().raw)
                    .map(|k| k.thumbprint() == jwk.thumbprint())
                    .unwrap_or(false)
            }
            _ => false,
        };
        if !authorized {
            return Err(AcmeError::unauthorized(
                "neither the account that obtained it nor its key signed this request",
            ));
        }
        let reason = match body.reason.unwrap_or(0) {
            c @ (0 | 1 | 3 | 4 | 5 | 9) => RevocationReason::from_code(c).ok_or_else(|| {
                AcmeError::new(AcmeProblem::BadRevocationReason, "unknown reason")
            })?,
            c => {
                return Err(AcmeError::new(
                    AcmeProblem::BadRevocationReason,
                    format!("reason code {c} is not accepted (0, 1, 3, 4, 5, 9)"),
                ));
            }
        };
        if matches!(rec.status, CertificateStatus::Revoked { .. }) {
            return Err(AcmeError::new(
                AcmeProblem::AlreadyRevoked,
                "the certificate is already revoked",
            ));
        }
        let who = self.principal(
            p,
            authed
                .account
                .as_ref()
                .map_or("certificate-key", |a| a.id.as_str()),
        );
        let revoked = self.domain.revoke_record(&who, rec, reason).await?;
        if let Some(posture) = self.posture()
            && let Err(e) = posture.credential_revoked(&who, &revoked).await
        {
            tracing::error!(serial = %revoked.serial, error = %e, "posture not updated");
        }
        Ok(())
    }
}
