//! Posture: what a device can be trusted with, and what the tenant's policy makes of that.
//!
//! [`policy`] is the pure part: the per-tenant routing policy (message classes, fallback
//! ladder, kill switches) and the evaluation that turns a device's posture into a transport.

pub mod event;
pub mod policy;
pub mod record;
