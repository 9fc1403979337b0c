//! Issuance for a SCEP PKCSReq: the CSR's challengePassword redeemed for its provisioner, then
//! a certificate from the provisioner's profile, in the device's tenant, naming the device.

use postern_certs::csr;
use postern_certs::names::SubjectName;
use serde_json::json;
use time::OffsetDateTime;

use super::{ChallengeError, Scep};
use crate::domain::pki::{IssuedCertificate, KeyToCertify};
use crate::domain::{DomainError, Principal};
use crate::model::Enrollment;

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
        let identifier = device
            .serial
            .clone()
            .or_else(|| device.udid.clone())
            .unwrap_or_else(|| device.id.clone());
        self.domain()
            .issue_enrolled(
                &Principal::system(),
                &device.tenant,
                &redeemed.profile,
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
