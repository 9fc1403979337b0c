//! Challenge responses: `device-attest-01` is verified at once (the attestation is in the
//! request); `http-01` is fetched in the background while the client polls.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;

use postern_certs::attestation::Challenge as AttestChallenge;

use crate::store::{DocKind, DocTxn};

use super::error::{AcmeError, AcmeProblem, AcmeResult};
use super::model::{Attested, Authz, AuthzStatus, Challenge, ChallengeStatus};
use super::order::device_identifier;
use super::provisioner::{DEVICE_ATTEST_01, HTTP_01};
use super::{Acme, Authed, encode};

/// The largest http-01 response read.
const MAX_HTTP01_BODY: usize = 8 * 1024;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttestResponse {
    #[serde(default)]
    att_obj: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl Acme {
    /// POST to a challenge: POST-as-GET returns it; any other payload responds to it.
    /// Returns the authorization (for its `up` link) and the challenge.
    ///
    /// # Errors
    /// 404, `unauthorized`, `malformed` (not pending, no attObj).
    pub async fn challenge(
        self: &std::sync::Arc<Self>,
        provisioner: &str,
        authed: &Authed,
        authz_id: &str,
        type_: &str,
    ) -> AcmeResult<(Authz, Challenge)> {
        let acct = authed.account()?.clone();
        let (authz, bytes) = self.own_authz(provisioner, &acct.id, authz_id)?;
        let authz = self.derive_authz(authz);
        let current = authz
            .challenges
            .iter()
            .find(|c| c.type_ == type_)
            .cloned()
            .ok_or_else(|| AcmeError::not_found("challenge"))?;
        if authed.req.is_post_as_get() {
            return Ok((authz, current));
        }
        if current.status != ChallengeStatus::Pending || authz.status != AuthzStatus::Pending {
            return Err(AcmeError::malformed(format!(
                "the challenge is {}, not pending: a challenge is answered once",
                status_name(current.status)
            )));
        }
        match type_ {
            DEVICE_ATTEST_01 => {
                self.device_attest(provisioner, &acct, authz, bytes, current, authed)
                    .await
            }
            HTTP_01 => {
                self.start_http01(provisioner, &acct, authz, bytes, current)
                    .await
            }
            other => Err(AcmeError::malformed(format!(
                "challenge type {other:?} is not served"
            ))),
        }
    }

    async fn device_attest(
        &self,
        provisioner: &str,
        acct: &super::Account,
        authz: Authz,
        bytes: Vec<u8>,
        ch: Challenge,
        authed: &Authed,
    ) -> AcmeResult<(Authz, Challenge)> {
        let p = self.provisioner(provisioner)?.clone();
        let body: AttestResponse = authed.req.json()?;
        let att_obj = match (body.att_obj, body.error) {
            (Some(a), _) => URL_SAFE_NO_PAD
                .decode(a.trim_end_matches('=').as_bytes())
                .map_err(|_| AcmeError::malformed("attObj is not base64url"))?,
            (None, Some(e)) => {
                // the device says it cannot attest
                let err = AcmeError::new(
                    AcmeProblem::RejectedIdentifier,
                    format!("the device could not attest: {}", truncate(&e, 200)),
                );
                return self
                    .fail_challenge(&p, acct, authz, bytes, ch, err, None)
                    .await;
            }
            (None, None) => return Err(AcmeError::malformed("the response needs attObj")),
        };
        let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, &att_obj));
        let identifier = device_identifier(&authz.identifier)?;
        let key_authorization = format!("{}.{}", ch.token, acct.thumbprint);
        let device = self
            .domain
            .find_device(&p.settings.tenant, &identifier.value)?;
        let Some(device) = device else {
            let err = AcmeError::new(
                AcmeProblem::BadAttestationStatement,
                "the identifier names no device of this tenant's inventory",
            );
            return self
                .fail_challenge(&p, acct, authz, bytes, ch, err, Some(&digest))
                .await;
        };
        let revocations = match p.revocations() {
            Ok(r) => r,
            Err(m) => {
                let err = AcmeError::new(AcmeProblem::BadAttestationStatement, m);
                return self
                    .fail_challenge(&p, acct, authz, bytes, ch, err, Some(&digest))
                    .await;
            }
        };
        let now = self.now();
        let verified = {
            let p = p.clone();
            let token = ch.token.clone();
            let id = identifier.clone();
            tokio::task::spawn_blocking(move || {
                let c = AttestChallenge {
                    token: &token,
                    key_authorization: &key_authorization,
                    identifier: &id,
                    now,
                };
                p.verifier.verify(&att_obj, &c, revocations.as_deref())
            })
            .await
            .map_err(|e| AcmeError::internal(format!("attestation task: {e}")))?
        };
        let evidence = match verified
            .map_err(|e| e.to_string())
            .and_then(|e| p.check_policy(&e).map(|()| e))
        {
            Ok(e) => e,
            Err(m) => {
                let err = AcmeError::new(AcmeProblem::BadAttestationStatement, m);
                return self
                    .fail_challenge(&p, acct, authz, bytes, ch, err, Some(&digest))
                    .await;
            }
        };
        let evidence_json = serde_json::to_vec(&evidence).map_err(AcmeError::internal)?;
        let evidence_sha256 =
            hex::encode(ring::digest::digest(&ring::digest::SHA256, &evidence_json));
        let mut next = authz.clone();
        next.status = AuthzStatus::Valid;
        next.attested = Some(Attested {
            device: device.id.clone(),
            evidence: evidence.clone(),
            evidence_sha256: evidence_sha256.clone(),
        });
        let mut done = ch.clone();
        done.status = ChallengeStatus::Valid;
        done.validated = Some(now);
        set_challenge(&mut next, &done);
        let draft = self.domain.draft(
            &self.principal(&p, &acct.id),
            &p.settings.tenant,
            "acme.attestation.accept",
            &device.id,
            json!({
                "provisioner": p.settings.name,
                "order": authz.order,
                "format": evidence.format,
                "vendor": evidence.vendor,
                "security_level": evidence.security_level,
                "os_version": evidence.os_version,
                "attestation_sha256": digest,
                "evidence_sha256": evidence_sha256,
            }),
        );
        let txn = DocTxn::new()
            .unchanged(DocKind::AcmeAuthz, authz.id.clone(), bytes.clone())
            .absent(DocKind::AttestationSeen, digest.clone())
            .put(
                DocKind::AttestationSeen,
                digest.clone(),
                now.unix_timestamp().to_string().into_bytes(),
            )
            .put(DocKind::AcmeAuthz, authz.id.clone(), encode(&next)?)
            .audit(draft);
        if self.commit(txn).await? {
            return Ok((next, done));
        }
        // either the authorization changed (a concurrent response won) or the statement was
        // seen before: a replay
        if self
            .domain
            .store()
            .doc(DocKind::AttestationSeen, &digest)?
            .is_some()
        {
            let err = AcmeError::new(
                AcmeProblem::BadAttestationStatement,
                "this attestation statement was used before",
            );
            return self
                .fail_challenge(&p, acct, authz, bytes, ch, err, None)
                .await;
        }
        Err(AcmeError::malformed(
            "the challenge was answered concurrently",
        ))
    }

    /// Makes the challenge and its authorization invalid with `err`, audited; returns them
    /// (the client reads the error from the challenge, as RFC 8555 §7.5.1 describes).
    #[allow(clippy::too_many_arguments)]
    async fn fail_challenge(
        &self,
        p: &super::Provisioner,
        acct: &super::Account,
        authz: Authz,
        bytes: Vec<u8>,
        ch: Challenge,
        err: AcmeError,
        attestation_sha256: Option<&str>,
    ) -> AcmeResult<(Authz, Challenge)> {
        let mut next = authz.clone();
        next.status = AuthzStatus::Invalid;
        let mut done = ch;
        done.status = ChallengeStatus::Invalid;
        done.error = Some(err.clone());
        set_challenge(&mut next, &done);
        let draft = self.domain.draft(
            &self.principal(p, &acct.id),
            &p.settings.tenant,
            "acme.challenge.reject",
            &authz.identifier.value,
            json!({
                "provisioner": p.settings.name,
                "order": authz.order,
                "type": done.type_,
                "problem": err.problem.as_str(),
                "detail": err.detail,
                "attestation_sha256": attestation_sha256,
            }),
        );
        let txn = DocTxn::new()
            .unchanged(DocKind::AcmeAuthz, authz.id.clone(), bytes)
            .put(DocKind::AcmeAuthz, authz.id.clone(), encode(&next)?)
            .audit(draft);
        if !self.commit(txn).await? {
            return Err(AcmeError::malformed(
                "the challenge was answered concurrently",
            ));
        }
        tracing::info!(provisioner = %p.settings.name, authz = %authz.id, problem = err.problem.as_str(), detail = %err.detail, "challenge rejected");
        Ok((next, done))
    }

    async fn start_http01(
        self: &std::sync::Arc<Self>,
        provisioner: &str,
        acct: &super::Account,
        authz: Authz,
        bytes: Vec<u8>,
        ch: Challenge,
    ) -> AcmeResult<(Authz, Challenge)> {
        let mut next = authz.clone();
        let mut processing = ch.clone();
        processing.status = ChallengeStatus::Processing;
        set_challenge(&mut next, &processing);
        let next_bytes = encode(&next)?;
        let txn = DocTxn::new()
            .unchanged(DocKind::AcmeAuthz, authz.id.clone(), bytes)
            .put(DocKind::AcmeAuthz, authz.id.clone(), next_bytes.clone());
        if !self.commit(txn).await? {
            return Err(AcmeError::malformed(
                "the challenge was answered concurrently",
            ));
        }
        let this = std::sync::Arc::clone(self);
        let provisioner = provisioner.to_owned();
        let acct = acct.clone();
        let key_authorization = format!("{}.{}", ch.token, acct.thumbprint);
        let (name, token) = (authz.identifier.value.clone(), ch.token.clone());
        let snapshot = next.clone();
        tokio::spawn(async move {
            // give the client a moment to start answering (certbot's standalone server is up
            // already; others may not be)
            tokio::time::sleep(Duration::from_millis(50)).await;
            let outcome = this.fetch_http01(&name, &token, &key_authorization).await;
            if let Err(e) = this
                .finish_http01(
                    &provisioner,
                    &acct,
                    snapshot,
                    next_bytes,
                    processing,
                    outcome,
                )
                .await
            {
                tracing::error!(error = %e, "recording an http-01 result failed");
            }
        });
        Ok((next, ch_with(ch, ChallengeStatus::Processing)))
    }

    async fn fetch_http01(
        &self,
        name: &str,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), AcmeError> {
        let port = self.settings.http01_port;
        let url = format!("http://{name}:{port}/.well-known/acme-challenge/{token}");
        let resp = self.http.get(&url).send().await.map_err(|e| {
            AcmeError::new(
                AcmeProblem::Connection,
                format!("fetching {url}: {}", without_url(&e)),
            )
        })?;
        if !resp.status().is_success() {
            return Err(AcmeError::unauthorized(format!(
                "{url} answered HTTP {}",
                resp.status().as_u16()
            )));
        }
        let mut body = Vec::new();
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            AcmeError::new(
                AcmeProblem::Connection,
                format!("reading {url}: {}", without_url(&e)),
            )
        })? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_HTTP01_BODY {
                return Err(AcmeError::new(
                    AcmeProblem::IncorrectResponse,
                    format!("{url}: the response is larger than {MAX_HTTP01_BODY} bytes"),
                ));
            }
        }
        let text = String::from_utf8_lossy(&body);
        if text.trim_end() != key_authorization {
            return Err(AcmeError::new(
                AcmeProblem::IncorrectResponse,
                format!("{url} does not answer the key authorization"),
            ));
        }
        Ok(())
    }

    async fn finish_http01(
        &self,
        provisioner: &str,
        acct: &super::Account,
        mut authz: Authz,
        bytes: Vec<u8>,
        mut ch: Challenge,
        outcome: Result<(), AcmeError>,
    ) -> AcmeResult<()> {
        let p = self.provisioner(provisioner)?;
        let now = self.now();
        let (action, details) = match &outcome {
            Ok(()) => {
                ch.status = ChallengeStatus::Valid;
                ch.validated = Some(now);
                authz.status = AuthzStatus::Valid;
                (
                    "acme.challenge.accept",
                    json!({ "provisioner": provisioner, "order": authz.order, "type": HTTP_01 }),
                )
            }
            Err(e) => {
                ch.status = ChallengeStatus::Invalid;
                ch.error = Some(e.clone());
                authz.status = AuthzStatus::Invalid;
                (
                    "acme.challenge.reject",
                    json!({ "provisioner": provisioner, "order": authz.order, "type": HTTP_01, "problem": e.problem.as_str(), "detail": e.detail }),
                )
            }
        };
        set_challenge(&mut authz, &ch);
        let draft = self.domain.draft(
            &self.principal(p, &acct.id),
            &p.settings.tenant,
            action,
            &authz.identifier.value,
            details,
        );
        let txn = DocTxn::new()
            .unchanged(DocKind::AcmeAuthz, authz.id.clone(), bytes)
            .put(DocKind::AcmeAuthz, authz.id.clone(), encode(&authz)?)
            .audit(draft);
        if !self.commit(txn).await? {
            return Err(AcmeError::internal(
                "the authorization changed during http-01 validation",
            ));
        }
        Ok(())
    }
}

fn set_challenge(authz: &mut Authz, ch: &Challenge) {
    for c in &mut authz.challenges {
        if c.type_ == ch.type_ {
            *c = ch.clone();
        }
    }
}

fn ch_with(mut ch: Challenge, status: ChallengeStatus) -> Challenge {
    ch.status = status;
    ch
}

fn status_name(s: ChallengeStatus) -> &'static str {
    match s {
        ChallengeStatus::Pending => "pending",
        ChallengeStatus::Processing => "processing",
        ChallengeStatus::Valid => "valid",
        ChallengeStatus::Invalid => "invalid",
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(n).collect()
}

/// A reqwest error's causes (its own message repeats the URL).
fn without_url(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        parts.push(c.to_string());
        cur = c.source();
    }
    if parts.is_empty() {
        if e.is_timeout() {
            "timed out".into()
        } else {
            "request failed".into()
        }
    } else {
        parts.join(": ")
    }
}
