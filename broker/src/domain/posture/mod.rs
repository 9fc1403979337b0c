//! Posture: what a device can be trusted with, and what the tenant's policy makes of that.
//!
//! [`policy`] is the pure part: the per-tenant routing policy (message classes, fallback
//! ladder, kill switches) and the evaluation that turns a device's posture into a transport.
//! [`record`] and [`event`] are the device's posture record, its assessment, and the one
//! normalized event every adapter produces. [`service`] keeps the records (with the feed and
//! the tenant's rules), [`route`] decides and signs routes, [`handshake`] takes the signed
//! capability statements of messaging clients, [`cascade`] revokes and queries the audit log,
//! and [`signals`] says which Shared Signals events a change produces.

pub mod cascade;
pub mod event;
pub mod handshake;
pub mod policy;
pub mod record;
pub mod route;
pub mod service;
mod signals;

pub use service::Posture;
