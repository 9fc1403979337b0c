//! The routing policy: per-tenant message classes, each with a minimum assurance, a required
//! RCS E2EE state, an ordered fallback ladder and forbidden transports; kill switches; and
//! [`evaluate`], which walks a class's ladder for one device and explains every step.
//!
//! Semantics, decided here and relied on by the route API:
//!
//! - `min_assurance` is the least device assurance at which a class's content may land **on
//!   the device**: it gates [`Transport::RcsE2ee`] and [`Transport::InApp`]. Secure e-mail and
//!   the web portal keep the content behind the IdP login rather than on this device,
//!   `sms_notify_only` carries no content and `block` delivers nothing, so none is gated by it.
//! - `rcs_e2ee` is the state the device's RCS E2EE must be in for RCS E2EE to be used:
//!   `verified` (the client proved it with its attested key) or, for low classes, `claimed`
//!   (verified also satisfies claimed). `unsupported` and `unknown` satisfy nothing.
//! - A ladder always ends in `block`: when the written ladder does not, `block` is appended
//!   (so a policy can never evaluate to "no answer"), and a ladder written with `block` at the
//!   end has the same version as one without. Entries after `block` could never be used and are
//!   refused, as are duplicates, an empty ladder and a ladder naming a forbidden transport. A
//!   class without `ladder` gets the full ladder minus its forbidden transports.
//! - `block` can be neither forbidden nor switched off.
//! - The version is the hex SHA-256 of a canonical serialization of the parsed policy, so
//!   comments, whitespace, key order and the order of `forbidden` do not change it.
//! - An unknown class is [`EvalError::UnknownClass`]; [`EvalError::fallback`] is the decision to
//!   answer with (block, failing closed).
//! - Kill switches fail closed: a device whose OS version cannot be read, or whose carrier or
//!   client version is unknown, is treated as inside a switch that asks about it.
//!
//! [`evaluate`] allocates once (the reasons, sized to the ladder) and does no other work
//! per call than comparisons; checks that cost more (kill switches) run only for a transport
//! that would otherwise be chosen.

mod kill;
mod parse;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use kill::{KillScope, KillSwitch, KillSwitches, OsVersion, VersionMatch};

use crate::domain::error::{DomainError, ErrorKind};

/// How far a device is trusted, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assurance {
    /// Nothing is known about the device.
    Unknown,
    /// Registered by an admin or the IdP, not managed.
    Registered,
    /// Managed by the MDM and compliant.
    Managed,
    /// Managed, with a fresh hardware attestation.
    Attested,
}

/// What is known of a device's RCS end-to-end encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RcsE2ee {
    /// The client proved with its attested key that it runs RCS E2EE.
    Verified,
    /// The device or the MDM says so; nothing proved it.
    Claimed,
    /// Known not to be available.
    Unsupported,
    /// Nothing is known.
    Unknown,
}

/// How a message may go to the recipient, in the order of the full ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// RCS with end-to-end encryption.
    RcsE2ee,
    /// The organisation's own app.
    InApp,
    /// Encrypted e-mail.
    SecureEmail,
    /// A web portal behind the IdP login.
    WebPortal,
    /// An SMS that says a message is waiting, without its content.
    SmsNotifyOnly,
    /// Not delivered.
    Block,
}

impl Transport {
    /// Every transport, in ladder order.
    pub const ALL: [Transport; 6] = [
        Transport::RcsE2ee,
        Transport::InApp,
        Transport::SecureEmail,
        Transport::WebPortal,
        Transport::SmsNotifyOnly,
        Transport::Block,
    ];

    /// The policy and wire name (`rcs_e2ee`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::RcsE2ee => "rcs_e2ee",
            Transport::InApp => "in_app",
            Transport::SecureEmail => "secure_email",
            Transport::WebPortal => "web_portal",
            Transport::SmsNotifyOnly => "sms_notify_only",
            Transport::Block => "block",
        }
    }

    /// Whether the content lands on the device, so that the class's minimum assurance applies.
    pub fn delivers_to_device(self) -> bool {
        matches!(self, Transport::RcsE2ee | Transport::InApp)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Transport {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Transport::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(())
    }
}

impl Assurance {
    /// Every level, lowest first.
    pub const ALL: [Assurance; 4] = [
        Assurance::Unknown,
        Assurance::Registered,
        Assurance::Managed,
        Assurance::Attested,
    ];

    /// The policy and wire name (`managed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Assurance::Unknown => "unknown",
            Assurance::Registered => "registered",
            Assurance::Managed => "managed",
            Assurance::Attested => "attested",
        }
    }
}

impl fmt::Display for Assurance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RcsE2ee {
    /// Every state.
    pub const ALL: [RcsE2ee; 4] = [
        RcsE2ee::Verified,
        RcsE2ee::Claimed,
        RcsE2ee::Unsupported,
        RcsE2ee::Unknown,
    ];

    /// The policy and wire name (`verified`).
    pub fn as_str(self) -> &'static str {
        match self {
            RcsE2ee::Verified => "verified",
            RcsE2ee::Claimed => "claimed",
            RcsE2ee::Unsupported => "unsupported",
            RcsE2ee::Unknown => "unknown",
        }
    }

    /// Whether a device in this state meets `required` (verified meets claimed too; unsupported
    /// and unknown meet nothing).
    pub fn satisfies(self, required: RcsE2ee) -> bool {
        match required {
            RcsE2ee::Verified => self == RcsE2ee::Verified,
            RcsE2ee::Claimed => matches!(self, RcsE2ee::Verified | RcsE2ee::Claimed),
            RcsE2ee::Unsupported | RcsE2ee::Unknown => false,
        }
    }
}

impl fmt::Display for RcsE2ee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of transports (a bit each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TransportSet(u8);

impl TransportSet {
    /// The empty set.
    pub const EMPTY: TransportSet = TransportSet(0);

    /// The set of `transports`.
    pub fn of(transports: &[Transport]) -> Self {
        let mut s = TransportSet::EMPTY;
        for &t in transports {
            s.insert(t);
        }
        s
    }

    /// Adds `t`; whether it was new.
    pub fn insert(&mut self, t: Transport) -> bool {
        let new = !self.contains(t);
        self.0 |= t.bit();
        new
    }

    /// Whether `t` is in the set.
    pub fn contains(self, t: Transport) -> bool {
        self.0 & t.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members, in ladder order.
    pub fn iter(self) -> impl Iterator<Item = Transport> {
        Transport::ALL
            .into_iter()
            .filter(move |t| self.contains(*t))
    }
}

/// What evaluation needs to know of a device; borrowed from its posture record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostureView<'a> {
    /// The device's assurance.
    pub assurance: Assurance,
    /// What is known of its RCS E2EE.
    pub rcs_e2ee: RcsE2ee,
    /// The organisation's app is installed and reachable.
    pub in_app: bool,
    /// The recipient has a secure e-mail address.
    pub secure_email: bool,
    /// The recipient can log in to the web portal.
    pub web_portal: bool,
    /// The recipient can receive SMS.
    pub sms: bool,
    /// `ios`, `android`, `macos`, ... (compared without regard to ASCII case).
    pub platform: &'a str,
    /// The OS version as reported (`17.4.1`).
    pub os_version: &'a str,
    /// The carrier, when known.
    pub carrier: Option<&'a str>,
    /// The messaging client's version, when known.
    pub client_version: Option<&'a str>,
}

impl PostureView<'_> {
    /// Whether the recipient can be reached over `t` at all (RCS E2EE: in any state that
    /// could satisfy a policy; block: always).
    pub fn offers(&self, t: Transport) -> bool {
        match t {
            Transport::RcsE2ee => self.rcs_e2ee.satisfies(RcsE2ee::Claimed),
            Transport::InApp => self.in_app,
            Transport::SecureEmail => self.secure_email,
            Transport::WebPortal => self.web_portal,
            Transport::SmsNotifyOnly => self.sms,
            Transport::Block => true,
        }
    }
}

/// The ordered fallback ladder of a class; always ends in [`Transport::Block`], no duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ladder {
    steps: [Transport; 6],
    len: u8,
}

impl Ladder {
    /// The full ladder: every transport in order.
    pub const FULL: Ladder = Ladder {
        steps: Transport::ALL,
        len: 6,
    };

    /// A ladder from steps already checked (distinct, ending in block); a step past six or
    /// missing block is a bug of the caller, so this only keeps what fits and ends in block.
    fn from_checked(steps: &[Transport]) -> Ladder {
        let mut l = Ladder {
            steps: [Transport::Block; 6],
            len: 0,
        };
        for &t in steps.iter().take(6) {
            l.steps[usize::from(l.len)] = t;
            l.len += 1;
            if t == Transport::Block {
                return l;
            }
        }
        if l.len < 6 {
            l.steps[usize::from(l.len)] = Transport::Block;
            l.len += 1;
        } else {
            l.steps[5] = Transport::Block;
        }
        l
    }

    /// The steps, ending in block.
    pub fn as_slice(&self) -> &[Transport] {
        &self.steps[..usize::from(self.len)]
    }
}

/// One message class's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassPolicy {
    min_assurance: Assurance,
    rcs_e2ee: RcsE2ee,
    ladder: Ladder,
    forbidden: TransportSet,
}

impl ClassPolicy {
    /// The least assurance for content to land on the device.
    pub fn min_assurance(&self) -> Assurance {
        self.min_assurance
    }

    /// The RCS E2EE state required to use RCS E2EE.
    pub fn rcs_e2ee(&self) -> RcsE2ee {
        self.rcs_e2ee
    }

    /// The ladder, ending in block.
    pub fn ladder(&self) -> &[Transport] {
        self.ladder.as_slice()
    }

    /// The transports never used for this class.
    pub fn forbidden(&self) -> TransportSet {
        self.forbidden
    }

    /// Why `t` cannot be used for this device, checking the cheap rules first and the kill
    /// switches last; `None` when it can.
    fn skip(&self, t: Transport, kills: &KillSwitches, view: &PostureView<'_>) -> Option<Skip> {
        if t == Transport::Block {
            return None;
        }
        if self.forbidden.contains(t) {
            return Some(Skip::Forbidden);
        }
        if t.delivers_to_device() && view.assurance < self.min_assurance {
            return Some(Skip::AssuranceBelow {
                have: view.assurance,
                need: self.min_assurance,
            });
        }
        if t == Transport::RcsE2ee {
            if !view.rcs_e2ee.satisfies(self.rcs_e2ee) {
                return Some(Skip::RcsE2ee {
                    have: view.rcs_e2ee,
                    need: self.rcs_e2ee,
                });
            }
        } else if !view.offers(t) {
            return Some(Skip::Unavailable);
        }
        kills
            .check(t, view)
            .map(|(scope, rule)| Skip::Killed { scope, rule })
    }
}

/// How fresh the evidence behind an assurance level must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Days an attestation counts for `attested`.
    pub attestation_days: u32,
    /// Hours since the last MDM check-in for `managed`.
    pub mdm_checkin_hours: u32,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            attestation_days: 7,
            mdm_checkin_hours: 24,
        }
    }
}

/// How route answers are given: how long a signed decision stays valid and how many
/// decisions are audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routing {
    /// Seconds a signed route decision is valid for (`valid_until`).
    pub decision_ttl_seconds: u32,
    /// Percent of route decisions written to the audit log (0 to 100).
    pub audit_sample_percent: u32,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            decision_ttl_seconds: 300,
            audit_sample_percent: 100,
        }
    }
}

/// A tenant's routing policy: classes by name, freshness, routing settings, and the version
/// that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Sorted by name.
    classes: Vec<(String, ClassPolicy)>,
    freshness: Freshness,
    routing: Routing,
    version: String,
}

/// The built-in policy as TOML; [`Policy::default`] is this text parsed (a test checks).
pub const DEFAULT_POLICY_TOML: &str = r#"# postern's built-in routing policy
[freshness]
attestation_days = 7
mdm_checkin_hours = 24

[routing]
decision_ttl_seconds = 300
audit_sample_percent = 100

[classes.public]
min_assurance = "unknown"
rcs_e2ee = "claimed"
ladder = ["rcs_e2ee", "in_app", "secure_email", "web_portal", "sms_notify_only", "block"]

[classes.internal]
min_assurance = "registered"
rcs_e2ee = "verified"
ladder = ["rcs_e2ee", "in_app", "secure_email", "web_portal", "sms_notify_only", "block"]

[classes.confidential]
min_assurance = "managed"
rcs_e2ee = "verified"
ladder = ["rcs_e2ee", "in_app", "secure_email", "web_portal", "block"]
forbidden = ["sms_notify_only"]

[classes.restricted]
min_assurance = "attested"
rcs_e2ee = "verified"
ladder = ["rcs_e2ee", "in_app", "block"]
forbidden = ["sms_notify_only"]
"#;

impl Default for Policy {
    /// The built-in policy: public, internal, confidential, restricted (see
    /// [`DEFAULT_POLICY_TOML`]).
    fn default() -> Self {
        use Assurance as A;
        use Transport as T;
        let class = |min, rcs, ladder: &[Transport], forbidden: &[Transport]| ClassPolicy {
            min_assurance: min,
            rcs_e2ee: rcs,
            ladder: Ladder::from_checked(ladder),
            forbidden: TransportSet::of(forbidden),
        };
        let sms = [T::SmsNotifyOnly];
        Policy::from_checked(
            vec![
                (
                    "public".into(),
                    class(A::Unknown, RcsE2ee::Claimed, &Transport::ALL, &[]),
                ),
                (
                    "internal".into(),
                    class(A::Registered, RcsE2ee::Verified, &Transport::ALL, &[]),
                ),
                (
                    "confidential".into(),
                    class(
                        A::Managed,
                        RcsE2ee::Verified,
                        &[T::RcsE2ee, T::InApp, T::SecureEmail, T::WebPortal],
                        &sms,
                    ),
                ),
                (
                    "restricted".into(),
                    class(
                        A::Attested,
                        RcsE2ee::Verified,
                        &[T::RcsE2ee, T::InApp],
                        &sms,
                    ),
                ),
            ],
            Freshness::default(),
            Routing::default(),
        )
    }
}

impl Policy {
    /// Parses a policy from TOML text.
    ///
    /// # Errors
    /// A [`PolicyError`] naming the key (`classes.restricted.ladder[2]`): TOML syntax, unknown
    /// keys, wrong types, unknown names, and the ladder rules in the module docs.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        parse::policy(text)
    }

    /// A policy from checked parts; sorts the classes and computes the version.
    fn from_checked(
        mut classes: Vec<(String, ClassPolicy)>,
        freshness: Freshness,
        routing: Routing,
    ) -> Policy {
        classes.sort_by(|a, b| a.0.cmp(&b.0));
        let canonical = parse::canonical(&classes, &freshness, &routing);
        let version = hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        ));
        Policy {
            classes,
            freshness,
            routing,
            version,
        }
    }

    /// The version: hex SHA-256 of the canonical form of the parsed policy.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The freshness rules.
    pub fn freshness(&self) -> Freshness {
        self.freshness
    }

    /// The routing settings.
    pub fn routing(&self) -> Routing {
        self.routing
    }

    /// A class by name.
    pub fn class(&self, name: &str) -> Option<&ClassPolicy> {
        self.classes
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| &self.classes[i].1)
    }

    /// The classes, by name.
    pub fn classes(&self) -> impl Iterator<Item = (&str, &ClassPolicy)> {
        self.classes.iter().map(|(n, c)| (n.as_str(), c))
    }

    /// A human-readable summary: the version, freshness, and per class the minimum assurance,
    /// the required RCS E2EE state, the ladder and the forbidden transports.
    pub fn summary(&self) -> String {
        use fmt::Write as _;
        let mut out = String::new();
        let list = |ts: &mut dyn Iterator<Item = Transport>, sep: &str| {
            let v: Vec<&str> = ts.map(Transport::as_str).collect();
            if v.is_empty() {
                "(none)".to_owned()
            } else {
                v.join(sep)
            }
        };
        let _ = writeln!(out, "policy version {}", self.version);
        let _ = writeln!(
            out,
            "freshness: attestation {} days, mdm check-in {} hours",
            self.freshness.attestation_days, self.freshness.mdm_checkin_hours
        );
        let _ = writeln!(
            out,
            "routing: decisions valid {} s, {}% of decisions audited",
            self.routing.decision_ttl_seconds, self.routing.audit_sample_percent
        );
        for (name, c) in self.classes() {
            let _ = writeln!(out, "class {name}");
            let _ = writeln!(out, "  min assurance: {}", c.min_assurance);
            let _ = writeln!(out, "  rcs e2ee:      {} required", c.rcs_e2ee);
            let _ = writeln!(
                out,
                "  ladder:        {}",
                list(&mut c.ladder().iter().copied(), " -> ")
            );
            let _ = writeln!(
                out,
                "  forbidden:     {}",
                list(&mut c.forbidden.iter(), ", ")
            );
        }
        out
    }
}

/// A policy that cannot be used; names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct PolicyError {
    /// The dotted key (`classes.restricted.ladder[2]`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl PolicyError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl From<PolicyError> for DomainError {
    fn from(e: PolicyError) -> Self {
        DomainError::new(ErrorKind::Malformed, format!("policy: {e}"))
    }
}

/// Why evaluation gave no decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The policy has no such message class.
    #[error("unknown message class")]
    UnknownClass,
}

impl EvalError {
    /// The decision to answer with instead: block, failing closed.
    pub fn fallback(&self) -> Decision {
        Decision {
            transport: Transport::Block,
            reasons: vec![Reason {
                transport: Transport::Block,
                outcome: Outcome::FailClosed,
            }],
        }
    }
}

impl From<EvalError> for DomainError {
    fn from(e: EvalError) -> Self {
        match e {
            EvalError::UnknownClass => DomainError::new(ErrorKind::NotFound, e.to_string()),
        }
    }
}

/// Why a transport was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The class forbids it.
    Forbidden,
    /// The device's assurance is below the class's minimum.
    AssuranceBelow {
        /// The device's.
        have: Assurance,
        /// The class's minimum.
        need: Assurance,
    },
    /// The device's RCS E2EE is not in the required state.
    RcsE2ee {
        /// The device's.
        have: RcsE2ee,
        /// The class's requirement.
        need: RcsE2ee,
    },
    /// The recipient cannot be reached over it.
    Unavailable,
    /// A kill switch turned it off for this device.
    Killed {
        /// Which kind of switch.
        scope: KillKind,
        /// Its index in the tenant's [`KillSwitches`].
        rule: usize,
    },
}

/// The kind of a kill switch, as a reason names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KillKind {
    /// Off for the whole tenant.
    Tenant,
    /// Off for an OS version range.
    OsVersion,
    /// Off for a carrier.
    Carrier,
    /// Off for a client version.
    ClientVersion,
}

impl KillKind {
    /// A name for reasons (`os version`).
    pub fn as_str(self) -> &'static str {
        match self {
            KillKind::Tenant => "tenant",
            KillKind::OsVersion => "os version",
            KillKind::Carrier => "carrier",
            KillKind::ClientVersion => "client version",
        }
    }
}

/// What became of a transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It is the decision.
    Chosen,
    /// Passed over.
    Skipped(Skip),
    /// Chosen without evaluation, because evaluation could not be done (unknown class).
    FailClosed,
}

/// One explainable step of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason {
    /// The transport considered.
    pub transport: Transport,
    /// What became of it.
    pub outcome: Outcome,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.transport;
        match self.outcome {
            Outcome::Chosen => write!(f, "{t}: chosen"),
            Outcome::FailClosed => write!(f, "{t}: chosen, failing closed"),
            Outcome::Skipped(skip) => {
                write!(f, "{t} skipped: ")?;
                match skip {
                    Skip::Forbidden => f.write_str("forbidden for this class"),
                    Skip::AssuranceBelow { have, need } => {
                        write!(f, "assurance {have} below {need}")
                    }
                    Skip::RcsE2ee { have, need } => {
                        write!(f, "rcs e2ee {have}, {need} required")
                    }
                    Skip::Unavailable => f.write_str("not available to the recipient"),
                    Skip::Killed { scope, rule } => {
                        write!(f, "kill switch {rule} ({})", scope.as_str())
                    }
                }
            }
        }
    }
}

/// The transport for one message and every step that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The transport to use.
    pub transport: Transport,
    /// The ladder steps walked, the chosen one last.
    pub reasons: Vec<Reason>,
}

/// Decides how a message of `class` may go to the device described by `view`: the first step
/// of the class's ladder that the class allows, the device reaches and no kill switch turns
/// off. The ladder ends in block, which is always allowed.
///
/// # Errors
/// [`EvalError::UnknownClass`] when the policy has no such class (answer with
/// [`EvalError::fallback`]).
pub fn evaluate(
    policy: &Policy,
    kills: &KillSwitches,
    class: &str,
    view: &PostureView<'_>,
) -> Result<Decision, EvalError> {
    let class = policy.class(class).ok_or(EvalError::UnknownClass)?;
    let ladder = class.ladder();
    let mut reasons = Vec::with_capacity(ladder.len());
    for &t in ladder {
        match class.skip(t, kills, view) {
            None => {
                reasons.push(Reason {
                    transport: t,
                    outcome: Outcome::Chosen,
                });
                return Ok(Decision {
                    transport: t,
                    reasons,
                });
            }
            Some(skip) => reasons.push(Reason {
                transport: t,
                outcome: Outcome::Skipped(skip),
            }),
        }
    }
    // a ladder always ends in block, which is never skipped; this keeps the function total
    reasons.push(Reason {
        transport: Transport::Block,
        outcome: Outcome::Chosen,
    });
    Ok(Decision {
        transport: Transport::Block,
        reasons,
    })
}

#[cfg(test)]
mod tests;
