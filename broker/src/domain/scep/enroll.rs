//! Issuance for a SCEP PKCSReq: the CSR's challengePassword redeemed for its provisioner, then
//! a certificate from the provisioner's profile, in the device's tenant, naming the device.

use postern_certs::csr;
use postern_certs::names::SubjectName;
use serde_json::json;
use time::OffsetDateTime;

use super::{ChallengeError, Scep};
use crate::domain::pki::normalize_serial;
use crate::domain::pki::{IssuedCertificate, KeyToCertify};
use crate::domain::{DomainError, Principal};
use crate::model::{CertificateStatus, Device, Enrollment};

/// Why a PKCSReq was not served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    /// The CSR does not parse or has no challengePassword.
    #[error("bad csr: {0}")]
    BadCsr(String),
    /// The challenge was refused.
    #[error("challenge: {0}")]
    Challenge(ChallengeError),
    /// A RenewalReq not signed by a live SCEP certificate postern issued for a device of the
    /// provisioner's tenant.
    #[error("not renewable: {0}")]
    NotRenewable(&'static str),
    /// The challenge found no device to name.
    #[error("no device for the challenge")]
    NoDevice,
    /// Issuance failed.
    #[error("issuance: {0}")]
    Issue(DomainError),
}

impl Scep {
    /// Serves a PKCSReq's CSR (DER) for `provisioner`: redeems its challengePassword (bound to
    /// the device the CSR names by CN or SAN), then issues from the provisioner's profile in
    /// the device's tenant, naming the device (permanent-identifier: serial, UDID or id),
    /// recorded as a SCEP enrollment without attestation evidence.
    ///
    /// # Errors
    /// [`EnrollError`]; every kind is answered `badRequest` except issuance failures.
    pub async fn enroll(
        &self,
        provisioner: &str,
        transaction_id: &str,
        csr_der: &[u8],
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, EnrollError> {
        let checked = csr::parse(csr_der).map_err(|e| EnrollError::BadCsr(e.to_string()))?;
        let Some(challenge) = checked.challenge_password.as_deref() else {
            return Err(EnrollError::BadCsr("no challengePassword".into()));
        };
        let mut identifiers: Vec<String> = checked.common_name.iter().cloned().collect();
        for n in &checked.names {
            match n {
                SubjectName::PermanentIdentifier(v) | SubjectName::Dns(v) => {
                    identifiers.push(v.clone());
                }
                _ => {}
            }
        }
        let redeemed = self
            .redeem(provisioner, challenge, &identifiers, now)
            .await
            .map_err(EnrollError::Challenge)?;
        let device = redeemed.device.ok_or(EnrollError::NoDevice)?;
        self.issue_for(
            &device,
            &redeemed.profile,
            provisioner,
            transaction_id,
            &checked,
        )
        .await
    }

    /// Serves a RenewalReq: `signer_cert_der` must be a certificate postern issued over SCEP
    /// for a device of the provisioner's tenant, unrevoked and unexpired at `now`; the new
    /// certificate (for the CSR's key) names the same device, without a challenge.
    ///
    /// # Errors
    /// [`EnrollError`].
    pub async fn renew(
        &self,
        provisioner: &str,
        transaction_id: &str,
        signer_cert_der: &[u8],
        csr_der: &[u8],
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, EnrollError> {
        use base64::Engine as _;
        use x509_parser::prelude::{FromDer, X509Certificate};
        let checked = csr::parse(csr_der).map_err(|e| EnrollError::BadCsr(e.to_string()))?;
        let p = self
            .provisioner(provisioner)
            .ok_or(EnrollError::NotRenewable("unknown provisioner"))?;
        let (_, signer) = X509Certificate::from_der(signer_cert_der)
            .map_err(|_| EnrollError::NotRenewable("signer certificate does not parse"))?;
        let serial = normalize_serial(&signer.raw_serial_as_string().replace(':', ""))
            .map_err(|_| EnrollError::NotRenewable("serial"))?;
        let record = self
            .domain()
            .store()
            .certificate(&serial)
            .map_err(|e| EnrollError::Issue(e.into()))?
            .ok_or(EnrollError::NotRenewable(
                "not a certificate postern issued",
            ))?;
        // the stored DER equal to the signer's: postern issued exactly this certificate
        let stored = base64::engine::general_purpose::STANDARD
            .decode(record.der_b64.as_bytes())
            .map_err(|_| EnrollError::NotRenewable("stored certificate"))?;
        if stored != signer_cert_der {
            return Err(EnrollError::NotRenewable(
                "not a certificate postern issued",
            ));
        }
        if record.status != CertificateStatus::Good {
            return Err(EnrollError::NotRenewable("revoked"));
        }
        if now >= record.not_after || now < record.not_before {
            return Err(EnrollError::NotRenewable("expired"));
        }
        if record.tenant != p.settings.tenant {
            return Err(EnrollError::NotRenewable("another tenant"));
        }
        let device_id = record
            .enrollment
            .as_ref()
            .filter(|e| e.protocol == "scep")
            .and_then(|e| e.device.clone())
            .ok_or(EnrollError::NotRenewable("not a SCEP device certificate"))?;
        let device = self
            .domain()
            .device_record(&record.tenant, &device_id)
            .map_err(EnrollError::Issue)?
            .ok_or(EnrollError::NoDevice)?;
        let profile = p.settings.profile.clone();
        self.issue_for(&device, &profile, provisioner, transaction_id, &checked)
            .await
    }

    async fn issue_for(
        &self,
        device: &Device,
        profile: &str,
        provisioner: &str,
        transaction_id: &str,
        checked: &csr::CheckedCsr,
    ) -> Result<IssuedCertificate, EnrollError> {
        let identifier = device
            .serial
            .clone()
            .or_else(|| device.udid.clone())
            .unwrap_or_else(|| device.id.clone());
        self.domain()
            .issue_enrolled(
                &Principal::system(),
                &device.tenant,
                profile,
                KeyToCertify {
                    spki_der: &checked.spki_der,
                    key_kind: checked.key_kind,
                },
                Some(&identifier),
                &[SubjectName::PermanentIdentifier(identifier.clone())],
                None,
                json!({ "source": "scep", "provisioner": provisioner, "device": device.id }),
                // a SCEP key is never hardware-attested: no evidence
                Some(Enrollment {
                    protocol: "scep".into(),
                    provisioner: provisioner.into(),
                    account: None,
                    request: Some(transaction_id.into()),
                    device: Some(device.id.clone()),
                    evidence_sha256: None,
                }),
            )
            .await
            .map_err(EnrollError::Issue)
    }
}
