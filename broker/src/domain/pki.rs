//! The PKI: issuance from CSRs, revocation, CRLs and OCSP, on one issuing CA.
//!
//! CRL and OCSP are per issuing CA, not per tenant (a relying party checks a certificate
//! against its issuer); certificate records and the admin API are tenant-scoped.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use postern_certs::ca::Issuer;
use postern_certs::crl::{self, CrlParams, RevocationReason, RevokedEntry};
use postern_certs::issue::{self, DistributionUrls, IssueRequest};
use postern_certs::names::SubjectName;
use postern_certs::ocsp::{self, CertStatus, OcspResponseStatus, ResponseParams, SingleResponse};
use postern_certs::profile::{Profile, SubjectKeyKind};
use postern_certs::{Signer, csr};

use crate::model::{CertificateRecord, CertificateStatus};
use crate::store::{DocTxn, StoreError};

use super::error::{DomainError, DomainResult, ErrorKind};
use super::{Domain, Principal};

/// How many times issuance draws a new serial after a collision (2^-127 each).
const SERIAL_ATTEMPTS: usize = 3;

/// The delegated OCSP responder: its certificate and key.
#[derive(Debug)]
pub struct Responder {
    /// DER certificate (issued by the issuing CA under `ocsp-signer`).
    pub cert_der: Vec<u8>,
    /// Its key.
    pub signer: Arc<dyn Signer>,
}

#[derive(Debug, Clone)]
struct CachedCrl {
    der: Vec<u8>,
    this_update: OffsetDateTime,
}

/// PKI state: the issuing CA, profiles, revocation endpoints.
#[derive(Debug)]
pub struct Pki {
    issuer: Arc<Issuer>,
    profiles: BTreeMap<String, Profile>,
    urls: DistributionUrls,
    responder: RwLock<Option<Arc<Responder>>>,
    crl: tokio::sync::Mutex<Option<CachedCrl>>,
    crl_validity: Duration,
    ocsp_validity: Duration,
}

impl Pki {
    /// A PKI over an issuing CA with the built-in profiles plus `extra` ones.
    pub fn new(
        issuer: Arc<Issuer>,
        extra: Vec<Profile>,
        urls: DistributionUrls,
        crl_validity: Duration,
        ocsp_validity: Duration,
    ) -> Self {
        let mut profiles: BTreeMap<String, Profile> = postern_certs::profile::BUILTIN_NAMES
            .iter()
            .filter_map(|n| Profile::builtin(n))
            .map(|p| (p.name.clone(), p))
            .collect();
        for p in extra {
            profiles.insert(p.name.clone(), p);
        }
        Pki {
            issuer,
            profiles,
            urls,
            responder: RwLock::new(None),
            crl: tokio::sync::Mutex::new(None),
            crl_validity,
            ocsp_validity,
        }
    }

    /// The issuing CA.
    pub fn issuer(&self) -> &Arc<Issuer> {
        &self.issuer
    }

    /// The profiles by name.
    pub fn profiles(&self) -> &BTreeMap<String, Profile> {
        &self.profiles
    }

    /// Installs (or replaces) the delegated OCSP responder.
    pub fn set_responder(&self, r: Responder) {
        if let Ok(mut g) = self.responder.write() {
            *g = Some(Arc::new(r));
        }
    }

    /// The current responder, if any.
    pub fn responder(&self) -> Option<Arc<Responder>> {
        self.responder.read().ok().and_then(|g| g.clone())
    }
}

/// An issuance request from the admin API or the CLI.
#[derive(Debug, Clone, Default)]
pub struct IssueCommand {
    /// The tenant (operators may name another; others get their own).
    pub tenant: Option<String>,
    /// The CSR, PEM or DER.
    pub csr: Vec<u8>,
    /// The profile name.
    pub profile: String,
    /// Names to put in the certificate instead of the CSR's.
    pub names: Option<Vec<SubjectName>>,
    /// commonName instead of the CSR's.
    pub common_name: Option<String>,
    /// Validity instead of the profile's default.
    pub validity: Option<Duration>,
}

/// A public key to certify without a CSR (keys the broker made itself).
#[derive(Debug, Clone)]
pub struct KeyToCertify<'a> {
    /// DER SubjectPublicKeyInfo.
    pub spki_der: &'a [u8],
    /// Its kind.
    pub key_kind: SubjectKeyKind,
}

/// An issued certificate and its chain.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The stored record.
    pub record: CertificateRecord,
    /// The leaf, PEM.
    pub certificate_pem: String,
    /// The leaf followed by the issuing CA, PEM (the root is what relying parties trust).
    pub chain_pem: String,
}

/// A signed certificate not yet stored, with its audit draft.
#[derive(Debug, Clone)]
pub struct PreparedCertificate {
    /// The certificate, its record and chain.
    pub issued: IssuedCertificate,
    /// The `certificate.issue` audit entry to store with it.
    pub draft: crate::model::AuditDraft,
}

/// Normalises a serial given as hex (any case, optional `:` separators, optional `0x`).
///
/// # Errors
/// Malformed when it is not 1 to 20 octets of hex.
pub fn normalize_serial(s: &str) -> DomainResult<String> {
    let t: String = s
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if t.is_empty() || t.len() > 40 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DomainError::new(
            ErrorKind::Malformed,
            "serial must be 1 to 20 octets of hex",
        ));
    }
    let t = if t.len() % 2 == 1 { format!("0{t}") } else { t };
    Ok(t)
}

impl Domain {
    fn tenant_in_scope(&self, who: &Principal, tenant: Option<&str>) -> DomainResult<String> {
        let t = who.scope(tenant)?;
        if self.store.tenant(&t)?.is_none() {
            return Err(DomainError::new(
                ErrorKind::NotFound,
                format!("no tenant {t}"),
            ));
        }
        Ok(t)
    }

    /// Issues a certificate from a CSR; answered once the certificate and its audit entry are
    /// durable.
    ///
    /// # Errors
    /// Forbidden (role, tenant), NotFound (tenant), Malformed (unknown profile, bad names),
    /// BadCsr (unparseable, bad signature, weak key, names the profile forbids).
    pub async fn issue_from_csr(
        &self,
        who: &Principal,
        cmd: IssueCommand,
    ) -> DomainResult<IssuedCertificate> {
        who.require_admin()?;
        let tenant = self.tenant_in_scope(who, cmd.tenant.as_deref())?;
        self.profile(&cmd.profile)?;
        let checked =
            csr::parse(&cmd.csr).map_err(|e| DomainError::new(ErrorKind::BadCsr, e.to_string()))?;
        let names = cmd.names.unwrap_or_else(|| checked.names.clone());
        let cn = cmd.common_name.or_else(|| checked.common_name.clone());
        self.issue_key(
            who,
            &tenant,
            &cmd.profile,
            KeyToCertify {
                spki_der: &checked.spki_der,
                key_kind: checked.key_kind,
            },
            cn.as_deref(),
            &names,
            cmd.validity,
            json!({ "source": "csr", "key_bits": checked.key_bits }),
        )
        .await
    }

    fn profile(&self, name: &str) -> DomainResult<&Profile> {
        self.pki.profiles.get(name).ok_or_else(|| {
            DomainError::new(
                ErrorKind::Malformed,
                format!(
                    "unknown profile {name:?}; known: {}",
                    self.pki
                        .profiles
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }

    /// Issues a certificate for a public key (no CSR): the broker's own TLS and OCSP keys, and
    /// later protocols that checked possession themselves.
    ///
    /// # Errors
    /// As [`Domain::issue_from_csr`].
    #[allow(clippy::too_many_arguments)]
    pub async fn issue_key(
        &self,
        who: &Principal,
        tenant: &str,
        profile_name: &str,
        key: KeyToCertify<'_>,
        common_name: Option<&str>,
        names: &[SubjectName],
        validity: Option<Duration>,
        details: serde_json::Value,
    ) -> DomainResult<IssuedCertificate> {
        self.issue_enrolled(
            who,
            tenant,
            profile_name,
            key,
            common_name,
            names,
            validity,
            details,
            None,
        )
        .await
    }

    /// As [`Domain::issue_key`], recording how the subject enrolled.
    ///
    /// # Errors
    /// As [`Domain::issue_from_csr`].
    #[allow(clippy::too_many_arguments)]
    pub async fn issue_enrolled(
        &self,
        who: &Principal,
        tenant: &str,
        profile_name: &str,
        key: KeyToCertify<'_>,
        common_name: Option<&str>,
        names: &[SubjectName],
        validity: Option<Duration>,
        details: serde_json::Value,
        enrollment: Option<crate::model::Enrollment>,
    ) -> DomainResult<IssuedCertificate> {
        let mut last_err = None;
        for _ in 0..SERIAL_ATTEMPTS {
            let prepared = self.prepare_certificate(
                who,
                tenant,
                profile_name,
                &key,
                common_name,
                names,
                validity,
                &details,
                enrollment.clone(),
            )?;
            let txn = DocTxn::new()
                .certificate(prepared.issued.record.clone())
                .audit(prepared.draft);
            match self.commit(txn).await {
                Ok(_) => return Ok(prepared.issued),
                Err(StoreError::Conflict(e)) => last_err = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(DomainError::internal(format!(
            "serial collision {SERIAL_ATTEMPTS} times: {}",
            last_err.unwrap_or_default()
        )))
    }

    /// Signs a certificate and builds its record and audit draft, without storing anything:
    /// for protocols that store the certificate in one transaction with their own records
    /// (ACME finalize). A serial collision shows up as a conflict when that transaction commits.
    ///
    /// # Errors
    /// As [`Domain::issue_from_csr`].
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_certificate(
        &self,
        who: &Principal,
        tenant: &str,
        profile_name: &str,
        key: &KeyToCertify<'_>,
        common_name: Option<&str>,
        names: &[SubjectName],
        validity: Option<Duration>,
        details: &serde_json::Value,
        enrollment: Option<crate::model::Enrollment>,
    ) -> DomainResult<PreparedCertificate> {
        let profile = self.profile(profile_name)?;
        if profile.name == super::gateway_cert::GATEWAY_CLIENT_PROFILE {
            super::gateway_cert::check_names(tenant, names)?;
        }
        let now = self.clock.now();
        let serial = issue::random_serial()?;
        let issued = issue::issue(
            &self.pki.issuer,
            &IssueRequest {
                profile,
                spki_der: key.spki_der,
                key_kind: key.key_kind,
                common_name,
                names,
                validity,
                now,
                serial: &serial,
                urls: &self.pki.urls,
            },
        )?;
        let record = CertificateRecord {
            serial: hex::encode(&issued.serial),
            tenant: tenant.to_owned(),
            profile: profile.name.clone(),
            common_name: common_name.map(str::to_owned),
            names: names.to_vec(),
            not_before: issued.not_before,
            not_after: issued.not_after,
            issued_at: now,
            der_b64: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                &issued.der,
            ),
            status: CertificateStatus::Good,
            enrollment,
        };
        let mut d = details.clone();
        if let Some(obj) = d.as_object_mut() {
            obj.insert("profile".into(), json!(profile.name));
            obj.insert(
                "names".into(),
                json!(names.iter().map(ToString::to_string).collect::<Vec<_>>()),
            );
            obj.insert("not_after".into(), json!(issued.not_after.unix_timestamp()));
        }
        let draft = self.draft(who, tenant, "certificate.issue", &record.serial, d);
        let certificate_pem = issued.to_pem();
        let chain_pem = format!(
            "{certificate_pem}{}",
            self.pki.issuer.certificate().to_pem()
        );
        Ok(PreparedCertificate {
            issued: IssuedCertificate {
                record,
                certificate_pem,
                chain_pem,
            },
            draft,
        })
    }

    /// A certificate record, if it belongs to the caller's tenant (operators see all).
    ///
    /// # Errors
    /// Malformed serial, NotFound.
    pub fn certificate(&self, who: &Principal, serial: &str) -> DomainResult<CertificateRecord> {
        who.require_admin()?;
        let serial = normalize_serial(serial)?;
        match self.store.certificate(&serial)? {
            Some(r) if who.is_operator() || r.tenant == who.tenant => Ok(r),
            _ => Err(DomainError::new(
                ErrorKind::NotFound,
                format!("no certificate {serial}"),
            )),
        }
    }

    /// Revokes a certificate, then publishes a new CRL; answered once durable.
    ///
    /// # Errors
    /// Malformed serial, NotFound (also for another tenant's), AlreadyRevoked.
    pub async fn revoke(
        &self,
        who: &Principal,
        serial: &str,
        reason: RevocationReason,
    ) -> DomainResult<CertificateRecord> {
        let existing = self.certificate(who, serial)?;
        self.revoke_record(who, existing, reason).await
    }

    /// Revokes a certificate whose record the caller found and may revoke (protocols that
    /// authorized the request themselves, such as ACME `revokeCert`).
    ///
    /// # Errors
    /// Malformed (removeFromCRL), AlreadyRevoked.
    pub async fn revoke_record(
        &self,
        who: &Principal,
        existing: CertificateRecord,
        reason: RevocationReason,
    ) -> DomainResult<CertificateRecord> {
        if reason == RevocationReason::RemoveFromCrl {
            return Err(DomainError::new(
                ErrorKind::Malformed,
                "removeFromCRL is only for delta CRLs",
            ));
        }
        let now = self.clock.now();
        let draft = self.draft(
            who,
            &existing.tenant,
            "certificate.revoke",
            &existing.serial,
            json!({
                "reason": reason.as_str(),
                "profile": existing.profile,
                "device": existing.enrollment.as_ref().and_then(|e| e.device.clone()),
            }),
        );
        let serial = existing.serial.clone();
        let rec = self
            .write(move |s| s.revoke_certificate(&serial, now, reason, draft))
            .await
            .map_err(|e| match e {
                StoreError::AlreadyRevoked => DomainError::new(
                    ErrorKind::AlreadyRevoked,
                    format!("certificate {} is already revoked", existing.serial),
                ),
                other => other.into(),
            })?;
        // publish at once; a failure here leaves the revocation stored and OCSP answering it
        if let Err(e) = self.rebuild_crl().await {
            tracing::error!(error = %e, "crl rebuild after revocation failed");
        }
        Ok(rec)
    }

    /// The current CRL (DER), rebuilt when half its validity has passed.
    ///
    /// # Errors
    /// Internal on signing or store failure.
    pub async fn crl(&self) -> DomainResult<Vec<u8>> {
        let now = self.clock.now();
        {
            let g = self.pki.crl.lock().await;
            if let Some(c) = &*g
                && now < c.this_update + self.pki.crl_validity / 2
            {
                return Ok(c.der.clone());
            }
        }
        self.rebuild_crl().await
    }

    async fn rebuild_crl(&self) -> DomainResult<Vec<u8>> {
        let mut g = self.pki.crl.lock().await;
        let now = self
            .clock
            .now()
            .replace_nanosecond(0)
            .unwrap_or(self.clock.now());
        let revoked = self.store.revoked()?;
        let mut entries = Vec::with_capacity(revoked.len());
        for r in revoked {
            let serial = hex::decode(&r.serial)
                .map_err(|e| DomainError::internal(format!("stored serial {}: {e}", r.serial)))?;
            entries.push(RevokedEntry {
                serial,
                revoked_at: r.revoked_at,
                reason: r.reason,
            });
        }
        // durable before the CRL is served: a CRL number must never repeat
        let number = self.write(|s| s.next_counter("crl_number")).await?;
        let der = crl::build_crl(
            self.pki.issuer.certificate().der(),
            self.pki.issuer.signer(),
            &CrlParams {
                crl_number: number,
                this_update: now,
                next_update: now + self.pki.crl_validity,
                entries: &entries,
            },
        )?;
        *g = Some(CachedCrl {
            der: der.clone(),
            this_update: now,
        });
        Ok(der)
    }

    /// Answers an OCSP request (DER). Always returns an OCSP response: malformed requests get
    /// `malformedRequest`, store trouble `tryLater`.
    pub fn ocsp(&self, request_der: &[u8]) -> Vec<u8> {
        let Ok(req) = ocsp::parse_request(request_der) else {
            return ocsp::error_response(OcspResponseStatus::MalformedRequest);
        };
        let Some(responder) = self.pki.responder() else {
            return ocsp::error_response(OcspResponseStatus::TryLater);
        };
        let now = self.clock.now();
        let issuer_der = self.pki.issuer.certificate().der();
        let mut responses = Vec::with_capacity(req.cert_ids.len());
        for id in req.cert_ids {
            let status = if id.matches_issuer(issuer_der) {
                match self.store.certificate(&hex::encode(&id.serial)) {
                    Ok(Some(rec)) => match rec.status {
                        CertificateStatus::Good => CertStatus::Good,
                        CertificateStatus::Revoked { revoked_at, reason } => CertStatus::Revoked {
                            at: revoked_at,
                            reason: Some(reason),
                        },
                    },
                    Ok(None) => CertStatus::Unknown,
                    Err(e) => {
                        tracing::error!(error = %e, "ocsp lookup failed");
                        return ocsp::error_response(OcspResponseStatus::TryLater);
                    }
                }
            } else {
                CertStatus::Unknown
            };
            responses.push(SingleResponse {
                cert_id: id,
                status,
                this_update: now,
                next_update: Some(now + self.pki.ocsp_validity),
            });
        }
        match ocsp::build_response(&ResponseParams {
            responder_cert_der: &responder.cert_der,
            responder_key: &*responder.signer,
            produced_at: now,
            responses: &responses,
            nonce: req.nonce.as_deref(),
        }) {
            Ok(der) => der,
            Err(e) => {
                tracing::error!(error = %e, "ocsp signing failed");
                ocsp::error_response(OcspResponseStatus::InternalError)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_normalise() {
        assert_eq!(normalize_serial("0A:bC").unwrap(), "0abc");
        assert_eq!(normalize_serial("abc").unwrap(), "0abc");
        assert_eq!(normalize_serial("0x1f").unwrap(), "1f");
        assert!(normalize_serial("").is_err());
        assert!(normalize_serial("xyz").is_err());
        assert!(normalize_serial(&"a".repeat(41)).is_err());
    }
}
