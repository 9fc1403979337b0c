//! Which Shared Signals events a posture change produces.
//!
//! - `device-compliance-change` when the device crosses the line between compliant and not:
//!   compliant means an assurance of `managed` or more (the MDM says compliant and checked in
//!   within the freshness window, or a fresh attestation), so a stale check-in is a change too
//!   when the next event notices it;
//! - `credential-change` (`x509`, `create` or `revoke`, with the serial) when a certificate is
//!   recorded as issued or revoked;
//! - `session-revoked` when the device is marked lost or its user deactivated.
//!
//! Each carries the sequence number of the feed entry that recorded the change.

use super::event::{EventKind, PostureEvent, Source};
use super::policy::Assurance;
use super::record::{Assessment, PostureRecord};
use crate::domain::ssf::{
    ChangeType, ComplianceStatus, CredentialType, InitiatingEntity, SsfEvent, SsfEventKind,
    SsfSubject,
};

fn compliance(a: &Assessment) -> ComplianceStatus {
    if a.assurance >= Assurance::Managed {
        ComplianceStatus::Compliant
    } else {
        ComplianceStatus::NotCompliant
    }
}

fn initiator(s: Source) -> InitiatingEntity {
    match s {
        Source::Admin | Source::Scim => InitiatingEntity::Admin,
        Source::Device => InitiatingEntity::User,
        _ => InitiatingEntity::System,
    }
}

/// The events for one applied change.
pub(super) fn events_for(
    device_id: &str,
    event: &PostureEvent,
    before_rec: &PostureRecord,
    rec: &PostureRecord,
    before: &Assessment,
    after: &Assessment,
    seq: u64,
) -> Vec<SsfEvent> {
    let subject = match &rec.user {
        Some(u) => SsfSubject::UserDevice {
            user: u.clone(),
            device: device_id.to_owned(),
        },
        None => SsfSubject::Device(device_id.to_owned()),
    };
    let mk = |kind: SsfEventKind, reason: Option<String>| SsfEvent {
        kind,
        subject: subject.clone(),
        feed_seq: Some(seq),
        occurred_at: event.occurred_at,
        initiating_entity: Some(initiator(event.source)),
        reason_admin: reason,
    };
    let mut out = Vec::new();
    let (was, is) = (compliance(before), compliance(after));
    if was != is {
        out.push(mk(
            SsfEventKind::DeviceComplianceChange {
                previous: was,
                current: is,
            },
            Some(format!(
                "assurance {} -> {}",
                before.assurance, after.assurance
            )),
        ));
    }
    let credential = |serial: &str, change: ChangeType| SsfEventKind::CredentialChange {
        credential_type: CredentialType::X509,
        change_type: change,
        friendly_name: Some("postern device certificate".into()),
        x509_issuer: None,
        x509_serial: Some(serial.to_owned()),
    };
    match &event.event {
        EventKind::CredentialIssued { credential: c }
            if before_rec.credential(&c.serial).is_none() =>
        {
            out.push(mk(credential(&c.serial, ChangeType::Create), None));
        }
        EventKind::CredentialRevoked { serial }
            if before_rec
                .credential(serial)
                .is_some_and(|c| c.revoked_at.is_none()) =>
        {
            out.push(mk(
                credential(serial, ChangeType::Revoke),
                Some("certificate revoked".into()),
            ));
        }
        EventKind::DeviceLost if before_rec.lost.is_none() => {
            out.push(mk(
                SsfEventKind::SessionRevoked,
                Some("device reported lost".into()),
            ));
        }
        EventKind::UserDeactivated { .. }
            if before_rec.user_deactivated.is_none() && rec.user_deactivated.is_some() =>
        {
            out.push(mk(
                SsfEventKind::SessionRevoked,
                Some("user deactivated".into()),
            ));
        }
        _ => {}
    }
    out
}
