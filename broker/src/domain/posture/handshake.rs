//! The capability handshake, and the credential events postern's own enrollment produces.
//!
//! A device's messaging client proves what it runs by signing a statement with the key
//! postern certified: a compact JWS, `typ` [`HANDSHAKE_TYP`], `x5c` holding the certificate
//! (postern's issuing CA must have signed it; the chain above is optional), payload
//!
//! ```json
//! { "jti": "<16 to 128 characters, once>", "iat": 1732350000,
//!   "rcs_e2ee": { "mls_ciphersuites": [1], "client_version": "Messages 2026.3" } }
//! ```
//!
//! Accepted only when: the signature verifies with the certificate's key; the certificate is
//! one postern issued (its DER equals the stored record's), of a device profile, bound to a
//! device, not revoked and not expired; `iat` is within five minutes of now; the `jti` was
//! never used with this certificate. The device's record then gets `rcs_e2ee = verified`
//! with the ciphersuites and client version, stamped with the time postern received it. A
//! gateway's report, by contrast, is only ever `claimed`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use postern_certs::jws::{Jwk, verify_compact_with_key};

use crate::domain::{DomainError, DomainResult, ErrorKind, Principal};
use crate::model::{CertificateRecord, CertificateStatus, Role};
use crate::store::{DocKind, DocTxn, StoreError};

use super::event::{EventKind, PostureEvent, Source, Subject};
use super::record::{AttestationSummary, Credential, CredentialKey, DeviceIdentifiers};
use super::service::{DeviceOutcome, Posture};

/// The JWS `typ` of a capability statement.
pub const HANDSHAKE_TYP: &str = "postern-capabilities+jwt";

/// How far `iat` may be from now.
const IAT_SKEW: Duration = Duration::minutes(5);

/// Profiles whose certificates may speak for a device.
const DEVICE_PROFILES: [&str; 2] = ["device-identity", "messaging-identity"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Statement {
    jti: String,
    iat: i64,
    rcs_e2ee: RcsStatement,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RcsStatement {
    #[serde(default)]
    mls_ciphersuites: Vec<u16>,
    #[serde(default)]
    client_version: Option<String>,
}

/// What a handshake did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandshakeOutcome {
    /// The tenant of the certificate.
    pub tenant: String,
    /// The device.
    pub device_id: String,
    /// The certificate that signed.
    pub credential_serial: String,
    /// `verified` once the record holds the handshake.
    pub rcs_e2ee: super::policy::RcsE2ee,
    /// The device after the handshake.
    #[serde(flatten)]
    pub outcome: DeviceOutcome,
}

fn refused(msg: impl Into<String>) -> DomainError {
    DomainError::new(ErrorKind::Unauthorized, msg)
}

fn malformed(msg: impl Into<String>) -> DomainError {
    DomainError::new(ErrorKind::Malformed, msg)
}

impl Posture {
    /// Verifies a capability statement and records the proved RCS E2EE.
    ///
    /// # Errors
    /// Malformed (not a JWS, bad payload), Unauthorized (signature, certificate, replay,
    /// stale `iat`), store failures.
    pub async fn capability_handshake(&self, jws: &str) -> DomainResult<HandshakeOutcome> {
        let jws = jws.trim();
        if jws.len() > 64 * 1024 {
            return Err(malformed("statement larger than 64 KiB"));
        }
        let header_b64 = jws
            .split('.')
            .next()
            .ok_or_else(|| malformed("not a compact JWS"))?;
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(header_b64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| malformed("the JWS header is not base64url JSON"))?;
        if header.get("typ").and_then(|t| t.as_str()) != Some(HANDSHAKE_TYP) {
            return Err(malformed(format!("the JWS typ must be {HANDSHAKE_TYP}")));
        }
        let leaf_b64 = header
            .get("x5c")
            .and_then(|x| x.as_array())
            .and_then(|a| a.first())
            .and_then(|c| c.as_str())
            .ok_or_else(|| malformed("the JWS header needs x5c with the certificate first"))?;
        let leaf_der = STANDARD
            .decode(leaf_b64)
            .map_err(|_| malformed("x5c[0] is not base64 DER"))?;
        let spki = self.issued_by_postern(&leaf_der)?;
        let record = self.live_device_certificate(&leaf_der)?;
        let jwk =
            Jwk::from_spki_der(&spki).map_err(|e| refused(format!("certificate key: {e}")))?;
        let verified =
            verify_compact_with_key(jws, &jwk).map_err(|e| refused(format!("signature: {e}")))?;
        let st: Statement = serde_json::from_slice(&verified.payload)
            .map_err(|e| malformed(format!("statement: {e}")))?;
        let now = self.now();
        if st.jti.len() < 16 || st.jti.len() > 128 || st.jti.chars().any(char::is_control) {
            return Err(malformed("jti must be 16 to 128 characters"));
        }
        if st
            .rcs_e2ee
            .client_version
            .as_ref()
            .is_some_and(|v| v.len() > 128)
            || st.rcs_e2ee.mls_ciphersuites.len() > 32
        {
            return Err(malformed("client_version or mls_ciphersuites too long"));
        }
        let iat = OffsetDateTime::from_unix_timestamp(st.iat)
            .map_err(|_| malformed("iat out of range"))?;
        if (iat - now).abs() > IAT_SKEW {
            return Err(refused("iat is more than five minutes from now"));
        }
        let Some(device_id) = record.enrollment.as_ref().and_then(|e| e.device.clone()) else {
            return Err(refused("the certificate is not bound to a device"));
        };
        // once per certificate and jti
        let seen = format!(
            "handshake/{}/{}",
            record.serial,
            hex::encode(ring::digest::digest(
                &ring::digest::SHA256,
                st.jti.as_bytes()
            ))
        );
        match self
            .domain
            .commit(
                DocTxn::new()
                    .absent(DocKind::AttestationSeen, seen.clone())
                    .put(DocKind::AttestationSeen, seen, b"1".to_vec()),
            )
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(refused("this statement (jti) was used before"));
            }
            Err(e) => return Err(e.into()),
        }
        let who = Principal {
            tenant: record.tenant.clone(),
            role: Role::Device,
            actor_id: format!("cert:{}", record.serial),
        };
        // the credential must be on the record for the proof to count
        self.credential_issued(&who, &record).await?;
        let event = PostureEvent {
            source: Source::Device,
            event_id: st.jti.clone(),
            occurred_at: now,
            subject: Subject::Device {
                device_id: Some(device_id.clone()),
                identifiers: DeviceIdentifiers::default(),
            },
            event: EventKind::CapabilityProved {
                credential_serial: record.serial.clone(),
                mls_ciphersuites: st.rcs_e2ee.mls_ciphersuites,
                client_version: st.rcs_e2ee.client_version,
            },
        };
        let out = self.apply_event(&who, &record.tenant, &event).await?;
        let outcome = out.devices.into_iter().next().ok_or_else(|| {
            DomainError::new(ErrorKind::NotFound, format!("no device {device_id}"))
        })?;
        let rec = self
            .stored(&record.tenant, &device_id)?
            .ok_or_else(|| DomainError::internal("posture record missing after the handshake"))?;
        let fresh = self.rules(&record.tenant)?.policy.freshness();
        let a = super::record::assess(&rec, &fresh, now);
        Ok(HandshakeOutcome {
            tenant: record.tenant,
            device_id,
            credential_serial: record.serial,
            rcs_e2ee: a.rcs_e2ee,
            outcome,
        })
    }

    /// The certificate's SPKI (DER), once its signature verifies with postern's issuing key.
    fn issued_by_postern(&self, der: &[u8]) -> DomainResult<Vec<u8>> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|_| malformed("x5c[0] is not a certificate"))?;
        if !rest.is_empty() {
            return Err(malformed("x5c[0] has trailing data"));
        }
        let issuer_der = self.domain.pki().issuer().certificate().der();
        let (_, issuer) = x509_parser::parse_x509_certificate(issuer_der)
            .map_err(|_| DomainError::internal("issuing certificate does not parse"))?;
        if cert.issuer() != issuer.subject()
            || cert.verify_signature(Some(issuer.public_key())).is_err()
        {
            return Err(refused("the certificate was not issued by postern"));
        }
        Ok(cert.public_key().raw.to_vec())
    }

    /// The stored record of a certificate postern issued, if it is a live device credential.
    fn live_device_certificate(&self, der: &[u8]) -> DomainResult<CertificateRecord> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|_| malformed("x5c[0] is not a certificate"))?;
        let serial = hex::encode(cert.raw_serial());
        let record = self
            .domain
            .store()
            .certificate(&serial)?
            .ok_or_else(|| refused("postern holds no certificate with this serial"))?;
        let stored = STANDARD
            .decode(&record.der_b64)
            .map_err(|_| DomainError::internal("stored certificate not base64"))?;
        if stored != der {
            return Err(refused("the certificate is not the one postern issued"));
        }
        if !DEVICE_PROFILES.contains(&record.profile.as_str()) {
            return Err(refused(format!(
                "a {} certificate does not speak for a device",
                record.profile
            )));
        }
        if let CertificateStatus::Revoked { .. } = record.status {
            return Err(refused("the certificate is revoked"));
        }
        let now = self.now();
        if now >= record.not_after || now < record.not_before {
            return Err(refused("the certificate is not valid now"));
        }
        Ok(record)
    }

    /// Records a certificate postern issued to a device (and the attestation it enrolled
    /// with) on the device's posture record. Repeats change nothing.
    ///
    /// # Errors
    /// Store failures.
    pub async fn credential_issued(
        &self,
        who: &Principal,
        cert: &CertificateRecord,
    ) -> DomainResult<()> {
        let Some(enr) = &cert.enrollment else {
            return Ok(());
        };
        let Some(device_id) = &enr.device else {
            return Ok(());
        };
        let source = if enr.protocol == "scep" {
            Source::Scep
        } else {
            Source::Acme
        };
        let subject = Subject::Device {
            device_id: Some(device_id.clone()),
            identifiers: DeviceIdentifiers::default(),
        };
        let mut events = Vec::with_capacity(2);
        if let (Some(sha), Some(dev)) = (
            &enr.evidence_sha256,
            self.domain.device_record(&cert.tenant, device_id)?,
        ) && let Some(att) = dev.attestation.as_ref().filter(|a| a.sha256 == *sha)
        {
            let e = PostureEvent {
                source,
                event_id: format!("attestation:{sha}"),
                occurred_at: att.evidence.verified_at,
                subject: subject.clone(),
                event: EventKind::AttestationVerified {
                    attestation: AttestationSummary::from_device_attestation(att),
                },
            };
            events.push(e);
        }
        let e = PostureEvent {
            source,
            event_id: format!("issue:{}", cert.serial),
            occurred_at: cert.issued_at,
            subject,
            event: EventKind::CredentialIssued {
                credential: Credential {
                    serial: cert.serial.clone(),
                    protocol: enr.protocol.clone(),
                    issued_at: cert.issued_at,
                    not_after: cert.not_after,
                    revoked_at: match cert.status {
                        CertificateStatus::Revoked { revoked_at, .. } => Some(revoked_at),
                        CertificateStatus::Good => None,
                    },
                    key: match &enr.evidence_sha256 {
                        Some(s) => CredentialKey::Attested {
                            evidence_sha256: s.clone(),
                        },
                        None => CredentialKey::Unattested,
                    },
                },
            },
        };
        events.push(e);
        self.apply_device_events(who, &cert.tenant, device_id, &events)
            .await?;
        Ok(())
    }
}
