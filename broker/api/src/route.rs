//! The route API: `POST /v1/route` and `POST /v1/route/batch`.
//!
//! A decision is answered as JSON and, in `jws`, as a compact JWS (ES256, `typ`
//! `postern-route+jwt`, `kid` in `/.well-known/jwks.json`) whose payload is the same
//! [`RouteDecision`]: a gateway can keep the JWS as the evidence of why it chose a transport.

use serde::{Deserialize, Serialize};

/// The JWS `typ` of a signed route decision.
pub const ROUTE_JWS_TYP: &str = "postern-route+jwt";

/// The JWS `typ` of a signed batch of route decisions.
pub const ROUTE_BATCH_JWS_TYP: &str = "postern-route-batch+jwt";

/// Asks which transport a message may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    /// `tel:+E.164`, `im:...`, `sip:...`, `user:<id>`, `device:<id>`, or a bare user id.
    pub recipient: String,
    /// A message class of the tenant's policy (`public`, `internal`, `confidential`,
    /// `restricted` in the built-in one).
    pub message_class: String,
    /// The conversation; a thread stays at the lowest level it was seen at until the
    /// recipient proves itself again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
}

/// Many route requests at once (at most 1000).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRouteRequest {
    /// The requests.
    pub requests: Vec<RouteRequest>,
}

/// A decision, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteDecision {
    /// Unique id (`rd_` + 32 hex); the audit log names it.
    pub decision_id: String,
    /// The tenant whose policy decided.
    pub tenant: String,
    /// The recipient as asked.
    pub recipient: String,
    /// The message class as asked.
    pub message_class: String,
    /// The thread, when one was named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// `rcs_e2ee`, `in_app`, `secure_email`, `web_portal`, `sms_notify_only` or `block`.
    pub transport: String,
    /// The recipient's assurance level as used (`unknown`, `registered`, `managed`,
    /// `attested`): the lowest of its devices, lowered further by the thread's memory.
    pub assurance: String,
    /// The recipient's RCS E2EE state as used (`verified`, `claimed`, `unsupported`,
    /// `unknown`).
    pub rcs_e2ee: String,
    /// Why: assurance reasons, thread memory, and each transport tried in ladder order.
    pub reasons: Vec<String>,
    /// The devices the recipient resolved to (empty for an unknown recipient).
    pub devices: Vec<String>,
    /// The version (content hash) of the policy that decided.
    pub policy_version: String,
    /// When (RFC 3339).
    pub decided_at: String,
    /// Until when the decision may be relied on (RFC 3339).
    pub valid_until: String,
}

/// `POST /v1/route` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteAnswer {
    /// The decision.
    #[serde(flatten)]
    pub decision: RouteDecision,
    /// The decision as a compact JWS.
    pub jws: String,
}

/// `POST /v1/route/batch` answer: one item per request, in order, and one signature over all
/// the decisions made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRouteAnswer {
    /// Unique id (`rb_` + 32 hex); the audit log names it.
    pub batch_id: String,
    /// The answers.
    pub decisions: Vec<BatchItem>,
    /// A compact JWS (ES256, `typ` [`ROUTE_BATCH_JWS_TYP`]) whose payload is a
    /// [`SignedBatch`]: the same decisions, those requests that got one, in order.
    pub jws: String,
}

/// The payload of a batch's JWS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBatch {
    /// The batch's id, as in the answer.
    pub batch_id: String,
    /// The tenant whose policy decided.
    pub tenant: String,
    /// The decisions made, in request order (requests that got an error are left out); each
    /// names its recipient, message class and thread.
    pub decisions: Vec<RouteDecision>,
}

/// One answer of a batch: a decision, or the problem with that request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BatchItem {
    /// A decision (signed by the batch's `jws`).
    Decision(Box<RouteDecision>),
    /// Why this request got no decision (an unknown message class, a malformed recipient).
    Error {
        /// The problem.
        error: crate::Problem,
    },
}
