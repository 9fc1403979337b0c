//! Route decisions: which transport a message to a recipient may take, signed.
//!
//! Rules, decided here:
//!
//! - A recipient resolves to devices (an address or a user to each of their devices, a
//!   device id to itself). Each device is assessed now and the policy evaluated on it; the
//!   answer is the **weakest** device's decision (the transport furthest down the class's
//!   ladder), since the message reaches every device.
//! - An unknown recipient is not an error: it is evaluated as a device at `unknown` with RCS
//!   E2EE unknown, no app, no e-mail, no portal, and SMS only when the recipient is a `tel:`
//!   address — the policy's own fallback.
//! - A thread remembers the lowest assurance and RCS E2EE state it was decided at and since
//!   when. A later decision is held at that level until **every** device of the recipient has
//!   a hardware attestation or a capability handshake newer than that time; then the thread
//!   is raised to the level seen now. So a thread that flips between a strong and a weak client
//!   stays at the weak level.
//! - Every decision carries the policy version, the reasons and `valid_until` (decision time
//!   plus the policy's `routing.decision_ttl_seconds`), and is signed (ES256 JWS).
//! - A batch's decisions are signed once, together (a JWS over all of them): one signature
//!   costs more than everything else a decision does, so a gateway with many recipients asks
//!   in batches.
//! - Decisions are audited (all, or the policy's `routing.audit_sample_percent`): one entry per
//!   single decision, one entry per batch listing its sampled decisions. The audit entry is
//!   handed to the store before the answer (`Store::commit_detached`) and written with the next
//!   group commit; the answer does not wait for the disk. The thread memory is durable before
//!   the answer.

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use postern_api::route::{
    ROUTE_BATCH_JWS_TYP, ROUTE_JWS_TYP, RouteAnswer, RouteDecision, RouteRequest, SignedBatch,
};

use crate::domain::keys::JwsAlg;
use crate::domain::{DomainError, DomainResult, ErrorKind, Principal};
use crate::model::Role;
use crate::store::{DocKind, DocTxn, StoreError};

use super::policy::{Assurance, Decision, PostureView, RcsE2ee, evaluate};
use super::record::{Address, Assessment, PostureRecord, assess};
use super::service::{Posture, Rules, doc_id};

/// At most this many requests in one batch.
pub const MAX_BATCH: usize = 1000;

/// A batch's decisions, each or its error, and their one signature.
#[derive(Debug)]
pub struct BatchAnswer {
    /// `rb_` + 32 hex.
    pub batch_id: String,
    /// Per request, in order.
    pub items: Vec<DomainResult<RouteDecision>>,
    /// The JWS over [`SignedBatch`].
    pub jws: String,
}

/// Decisions between two yields to the runtime in a batch.
const BATCH_SLICE: usize = 16;

/// Who a route request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A messaging address.
    Address(Address),
    /// A user (`user:<id>`, or a bare id).
    User(String),
    /// A device (`device:<id>`).
    Device(String),
}

impl Recipient {
    /// Parses the `recipient` of a route request.
    ///
    /// # Errors
    /// Malformed: a bad address, an empty or oversized id.
    pub fn parse(s: &str) -> DomainResult<Recipient> {
        let bad = |m: String| DomainError::new(ErrorKind::Malformed, m);
        if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) {
            return Err(bad(
                "recipient must be 1 to 256 characters without control characters".into(),
            ));
        }
        let (scheme, rest) = s.split_once(':').unwrap_or(("", s));
        match scheme {
            "tel" | "im" | "sip" => Address::parse(s)
                .map(Recipient::Address)
                .map_err(|e| bad(format!("recipient: {e}"))),
            "user" if !rest.is_empty() => Ok(Recipient::User(rest.to_owned())),
            "device" if !rest.is_empty() => Ok(Recipient::Device(rest.to_owned())),
            "" => Ok(Recipient::User(s.to_owned())),
            _ => Err(bad(format!(
                "recipient {s:?}: use tel:, im:, sip:, user: or device:"
            ))),
        }
    }
}

/// A thread's memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadState {
    /// The lowest assurance the thread was decided at.
    pub assurance: Assurance,
    /// The lowest RCS E2EE state.
    pub rcs_e2ee: RcsE2ee,
    /// Since when it is held there (its creation or its last downgrade).
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// Weakest first: unsupported, unknown, claimed, verified.
fn rcs_rank(r: RcsE2ee) -> u8 {
    match r {
        RcsE2ee::Unsupported => 0,
        RcsE2ee::Unknown => 1,
        RcsE2ee::Claimed => 2,
        RcsE2ee::Verified => 3,
    }
}

fn weaker_rcs(a: RcsE2ee, b: RcsE2ee) -> RcsE2ee {
    if rcs_rank(a) <= rcs_rank(b) { a } else { b }
}

/// When the device last proved itself: its newest attestation or handshake.
fn proved_at(rec: &PostureRecord) -> Option<OffsetDateTime> {
    let att = rec.attestation.as_ref().map(|a| a.verified_at);
    let hs = rec
        .capabilities
        .rcs_e2ee_handshake
        .as_ref()
        .map(|h| h.stamp.at);
    att.max(hs)
}

/// One device as the decision saw it.
struct Seen {
    device_id: Option<String>,
    record: Option<std::sync::Arc<PostureRecord>>,
    assessment: Assessment,
}

fn unknown_recipient(recipient: &Recipient) -> Assessment {
    let view = super::record::OwnedPostureView {
        assurance: Assurance::Unknown,
        rcs_e2ee: RcsE2ee::Unknown,
        in_app: false,
        secure_email: false,
        web_portal: false,
        sms: matches!(recipient, Recipient::Address(a) if a.as_str().starts_with("tel:")),
        platform: String::new(),
        os_version: String::new(),
        carrier: None,
        client_version: None,
    };
    Assessment {
        assurance: Assurance::Unknown,
        reasons: Vec::new(),
        rcs_e2ee: RcsE2ee::Unknown,
        view,
    }
}

fn rfc3339(t: OffsetDateTime) -> DomainResult<String> {
    t.format(&Rfc3339).map_err(DomainError::internal)
}

impl Posture {
    /// Decides one route (gateway or admin).
    ///
    /// # Errors
    /// Forbidden; Malformed recipient or thread id; NotFound for a message class the policy
    /// does not have; store failures.
    pub async fn route(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        req: &RouteRequest,
    ) -> DomainResult<RouteAnswer> {
        let tenant = route_scope(who, tenant)?;
        let rules = self.rules(&tenant)?;
        let decided = self.decide(&tenant, &rules, req).await?;
        let payload = serde_json::to_vec(&decided).map_err(DomainError::internal)?;
        let jws = self.keys.sign_jws(JwsAlg::Es256, ROUTE_JWS_TYP, &payload)?;
        if self.sampled(rules.policy.routing().audit_sample_percent) {
            self.audit_decisions(who, &tenant, &decided.decision_id, &[&decided], false);
        }
        Ok(RouteAnswer {
            decision: decided,
            jws,
        })
    }

    /// Decides many routes; each request gets a decision or its own error, and the decisions
    /// are signed together.
    ///
    /// # Errors
    /// Forbidden; Malformed when the batch is empty or larger than [`MAX_BATCH`].
    pub async fn route_batch(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        reqs: &[RouteRequest],
    ) -> DomainResult<BatchAnswer> {
        let tenant = route_scope(who, tenant)?;
        if reqs.is_empty() || reqs.len() > MAX_BATCH {
            return Err(DomainError::new(
                ErrorKind::Malformed,
                format!("a batch holds 1 to {MAX_BATCH} requests"),
            ));
        }
        let rules = self.rules(&tenant)?;
        let mut items = Vec::with_capacity(reqs.len());
        for (i, r) in reqs.iter().enumerate() {
            // a long batch would hold its runtime worker from start to end and the requests
            // queued behind it would wait as long: let them in now and then
            if i > 0 && i % BATCH_SLICE == 0 {
                tokio::task::yield_now().await;
            }
            match self.decide(&tenant, &rules, r).await {
                Err(e) if e.kind == ErrorKind::Internal => return Err(e),
                d => items.push(d),
            }
        }
        let batch_id = format!(
            "rb_{}",
            hex::encode(crate::domain::tenancy::random_bytes::<16>()?)
        );
        let signed = SignedBatch {
            batch_id,
            tenant,
            decisions: items
                .iter()
                .filter_map(|d| d.as_ref().ok().cloned())
                .collect(),
        };
        let payload = serde_json::to_vec(&signed).map_err(DomainError::internal)?;
        let jws = self
            .keys
            .sign_jws(JwsAlg::Es256, ROUTE_BATCH_JWS_TYP, &payload)?;
        let percent = rules.policy.routing().audit_sample_percent;
        let audited: Vec<&RouteDecision> = signed
            .decisions
            .iter()
            .filter(|_| self.sampled(percent))
            .collect();
        if !audited.is_empty() {
            self.audit_decisions(who, &signed.tenant, &signed.batch_id, &audited, true);
        }
        Ok(BatchAnswer {
            batch_id: signed.batch_id,
            items,
            jws,
        })
    }

    /// One decision, unsigned and not audited.
    async fn decide(
        &self,
        tenant: &str,
        rules: &Rules,
        req: &RouteRequest,
    ) -> DomainResult<RouteDecision> {
        let recipient = Recipient::parse(&req.recipient)?;
        if let Some(t) = &req.thread_id
            && (t.is_empty() || t.len() > 256 || t.chars().any(char::is_control))
        {
            return Err(DomainError::new(
                ErrorKind::Malformed,
                "thread_id must be 1 to 256 characters without control characters",
            ));
        }
        let policy = &rules.policy;
        let class = policy.class(&req.message_class).ok_or_else(|| {
            DomainError::new(
                ErrorKind::NotFound,
                format!(
                    "policy {} has no message class {:?}",
                    policy.version(),
                    req.message_class
                ),
            )
        })?;
        let now = self.now();
        let fresh = policy.freshness();
        let mut seen = self.recipient_devices(tenant, &recipient, &fresh, now)?;
        let mut reasons: Vec<String> = Vec::new();
        if seen.is_empty() {
            reasons.push("recipient unknown to postern: safe fallback".into());
            seen.push(Seen {
                device_id: None,
                record: None,
                assessment: unknown_recipient(&recipient),
            });
        }
        // the thread's memory
        let cur_assurance = seen
            .iter()
            .map(|s| s.assessment.assurance)
            .min()
            .unwrap_or(Assurance::Unknown);
        let cur_rcs = seen
            .iter()
            .map(|s| s.assessment.rcs_e2ee)
            .reduce(weaker_rcs)
            .unwrap_or(RcsE2ee::Unknown);
        let mut hold: Option<ThreadState> = None;
        if let Some(thread) = &req.thread_id {
            hold = self
                .thread(
                    tenant,
                    thread,
                    cur_assurance,
                    cur_rcs,
                    &seen,
                    now,
                    &mut reasons,
                )
                .await?;
        }
        // evaluate each device, keep the weakest decision
        let mut worst: Option<(usize, Decision, usize)> = None;
        for (i, s) in seen.iter_mut().enumerate() {
            if let Some(h) = &hold {
                let v = &mut s.assessment.view;
                v.assurance = v.assurance.min(h.assurance);
                v.rcs_e2ee = weaker_rcs(v.rcs_e2ee, h.rcs_e2ee);
            }
            let view: PostureView<'_> = s.assessment.view.as_view();
            let d = evaluate(policy, &rules.kills, &req.message_class, &view)
                .unwrap_or_else(|e| e.fallback());
            let rank = class
                .ladder()
                .iter()
                .position(|t| *t == d.transport)
                .unwrap_or(usize::MAX);
            if worst.as_ref().is_none_or(|(r, _, _)| rank > *r) {
                worst = Some((rank, d, i));
            }
        }
        let (_, decision, wi) = worst.ok_or_else(|| DomainError::internal("no device seen"))?;
        let w = &seen[wi];
        let many = seen.len() > 1;
        let prefix = match (&w.device_id, many) {
            (Some(id), true) => format!("{id}: "),
            _ => String::new(),
        };
        reasons.extend(w.assessment.reasons.iter().map(|r| format!("{prefix}{r}")));
        reasons.extend(decision.reasons.iter().map(|r| format!("{prefix}{r}")));
        let ttl = time::Duration::seconds(i64::from(policy.routing().decision_ttl_seconds));
        let id = format!(
            "rd_{}",
            hex::encode(crate::domain::tenancy::random_bytes::<16>()?)
        );
        Ok(RouteDecision {
            decision_id: id,
            tenant: tenant.to_owned(),
            recipient: req.recipient.clone(),
            message_class: req.message_class.clone(),
            thread_id: req.thread_id.clone(),
            transport: decision.transport.as_str().to_owned(),
            assurance: w.assessment.view.assurance.as_str().to_owned(),
            rcs_e2ee: w.assessment.view.rcs_e2ee.as_str().to_owned(),
            reasons,
            devices: seen.iter().filter_map(|s| s.device_id.clone()).collect(),
            policy_version: policy.version().to_owned(),
            decided_at: rfc3339(now)?,
            valid_until: rfc3339(now + ttl)?,
        })
    }

    /// The devices a recipient resolves to, assessed at `now`.
    fn recipient_devices(
        &self,
        tenant: &str,
        recipient: &Recipient,
        fresh: &super::policy::Freshness,
        now: OffsetDateTime,
    ) -> DomainResult<Vec<Seen>> {
        let ids = match recipient {
            Recipient::Address(a) => self.address_devices(tenant, a)?,
            Recipient::User(u) => self.user_devices(tenant, u)?,
            Recipient::Device(d) => vec![d.clone()],
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let rec = match self.stored_shared(tenant, &id)? {
                Some(r) => r,
                None => match self.domain.device_record(tenant, &id)? {
                    Some(d) => std::sync::Arc::new(PostureRecord::from_device(&d)),
                    None => continue,
                },
            };
            let assessment = assess(&rec, fresh, now);
            out.push(Seen {
                device_id: Some(id),
                record: Some(rec),
                assessment,
            });
        }
        Ok(out)
    }

    /// Applies and updates a thread's memory; the level to hold the decision at, if any.
    #[allow(clippy::too_many_arguments)]
    async fn thread(
        &self,
        tenant: &str,
        thread: &str,
        cur_assurance: Assurance,
        cur_rcs: RcsE2ee,
        seen: &[Seen],
        now: OffsetDateTime,
        reasons: &mut Vec<String>,
    ) -> DomainResult<Option<ThreadState>> {
        let key = doc_id(tenant, thread);
        for _ in 0..4 {
            let prev = self.domain.store().doc(DocKind::Thread, &key)?;
            let old: Option<ThreadState> = match &prev {
                Some(b) => Some(
                    serde_json::from_slice(b)
                        .map_err(|e| DomainError::internal(format!("thread: {e}")))?,
                ),
                None => None,
            };
            let (next, hold) = match &old {
                None => (
                    Some(ThreadState {
                        assurance: cur_assurance,
                        rcs_e2ee: cur_rcs,
                        since: now,
                    }),
                    None,
                ),
                Some(t) => {
                    let lower =
                        cur_assurance < t.assurance || rcs_rank(cur_rcs) < rcs_rank(t.rcs_e2ee);
                    let higher =
                        cur_assurance > t.assurance || rcs_rank(cur_rcs) > rcs_rank(t.rcs_e2ee);
                    let reproved = seen.iter().all(|s| {
                        s.record
                            .as_ref()
                            .and_then(|r| proved_at(r))
                            .is_some_and(|p| p > t.since)
                    });
                    if lower {
                        reasons.push(format!(
                            "thread lowered to {} / rcs e2ee {}",
                            cur_assurance.min(t.assurance),
                            weaker_rcs(cur_rcs, t.rcs_e2ee)
                        ));
                        let s = ThreadState {
                            assurance: cur_assurance.min(t.assurance),
                            rcs_e2ee: weaker_rcs(cur_rcs, t.rcs_e2ee),
                            since: now,
                        };
                        (Some(s.clone()), Some(s))
                    } else if higher && reproved {
                        reasons.push(format!(
                            "thread raised from {} / rcs e2ee {}: proved again after {}",
                            t.assurance,
                            t.rcs_e2ee,
                            rfc3339(t.since)?
                        ));
                        (
                            Some(ThreadState {
                                assurance: cur_assurance,
                                rcs_e2ee: cur_rcs,
                                since: t.since,
                            }),
                            None,
                        )
                    } else if higher {
                        reasons.push(format!(
                            "thread held at {} / rcs e2ee {} since {}: no attestation or \
                             handshake since",
                            t.assurance,
                            t.rcs_e2ee,
                            rfc3339(t.since)?
                        ));
                        (None, Some(t.clone()))
                    } else {
                        (None, None)
                    }
                }
            };
            let Some(next) = next else { return Ok(hold) };
            let bytes = serde_json::to_vec(&next).map_err(DomainError::internal)?;
            let txn = match prev {
                Some(b) => DocTxn::new().unchanged(DocKind::Thread, key.clone(), b),
                None => DocTxn::new().absent(DocKind::Thread, key.clone()),
            }
            .put(DocKind::Thread, key.clone(), bytes);
            match self.domain.commit(txn).await {
                Ok(_) => return Ok(hold),
                Err(StoreError::Conflict(_)) => {
                    // another decision on the same thread won; read its memory again
                    reasons.retain(|r| !r.starts_with("thread "));
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(DomainError::new(
            ErrorKind::Conflict,
            "thread changed concurrently; try again",
        ))
    }

    /// Whether the next decision is audited, under a sample percentage.
    fn sampled(&self, percent: u32) -> bool {
        let n = self.next_route_number();
        percent >= 100 || (percent > 0 && (n % 100) < u64::from(percent))
    }

    /// Hands one audit entry for `decisions` to the store, without waiting for the disk: a
    /// single decision's entry (`route.decide`) carries its fields, a batch's
    /// (`route.decide_batch`) lists them, and every device named, so that the audit query by
    /// device finds it.
    fn audit_decisions(
        &self,
        who: &Principal,
        tenant: &str,
        subject: &str,
        decisions: &[&RouteDecision],
        batch: bool,
    ) {
        let fields = |d: &RouteDecision| {
            json!({
                "decision_id": d.decision_id,
                "recipient": d.recipient,
                "message_class": d.message_class,
                "thread_id": d.thread_id,
                "transport": d.transport,
                "assurance": d.assurance,
                "rcs_e2ee": d.rcs_e2ee,
                "devices": d.devices,
                "policy_version": d.policy_version,
            })
        };
        let (action, details) = match decisions {
            [one] if !batch => ("route.decide", fields(one)),
            many => {
                let mut devices: Vec<&str> = many
                    .iter()
                    .flat_map(|d| d.devices.iter().map(String::as_str))
                    .collect();
                devices.sort_unstable();
                devices.dedup();
                let listed: Vec<serde_json::Value> = many.iter().map(|d| fields(d)).collect();
                (
                    "route.decide_batch",
                    json!({ "decisions": listed, "devices": devices }),
                )
            }
        };
        let draft = self.domain.draft(who, tenant, action, subject, details);
        self.domain
            .store()
            .commit_detached(DocTxn::new().audit(draft));
    }
}

/// The tenant a route request acts for: gateways and admins only.
fn route_scope(who: &Principal, tenant: Option<&str>) -> DomainResult<String> {
    if !matches!(who.role, Role::Gateway | Role::Admin) {
        return Err(DomainError::new(
            ErrorKind::Forbidden,
            "gateway or admin role required",
        ));
    }
    who.scope(tenant)
}
