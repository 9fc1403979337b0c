use super::*;
use crate::domain::posture::policy::{Assurance, Freshness};
use crate::domain::posture::record::{CredentialKey, assess};
use postern_certs::attestation::{Format, SecurityLevel};
use time::Duration;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2025-06-02 12:00 UTC);
const DEVICE: &str = "dev_00000000000000000001";

fn device() -> Subject {
    Subject::Device {
        device_id: Some(DEVICE.into()),
        identifiers: DeviceIdentifiers::default(),
    }
}

fn ev(source: Source, id: &str, at: OffsetDateTime, event: EventKind) -> PostureEvent {
    PostureEvent {
        source,
        event_id: id.into(),
        occurred_at: at,
        subject: device(),
        event,
    }
}

fn check_in(id: &str, at: OffsetDateTime, os: &str, compliance: Compliance) -> PostureEvent {
    ev(
        Source::Jamf,
        id,
        at,
        EventKind::CheckedIn {
            compliance,
            os_version: Some(os.into()),
            storage_encrypted: Some(true),
            jailbreak_detected: Some(false),
        },
    )
}

fn registered() -> PostureRecord {
    let mut r = PostureRecord::new("acme-corp", DEVICE, T0 - Duration::days(30));
    r.registered_at = Some(T0 - Duration::days(30));
    r.user = Some("alice".into());
    r
}

/// Every kind of event, in an order that makes a registered device attested with verified
/// RCS E2EE.
fn lifecycle() -> Vec<PostureEvent> {
    let serial = "0a1b2c";
    vec![
        ev(
            Source::Intune,
            "enr-1",
            T0 - Duration::hours(3),
            EventKind::DeviceEnrolled {
                platform: Some("android".into()),
                user: Some("alice".into()),
            },
        ),
        ev(
            Source::Acme,
            "att-1",
            T0 - Duration::hours(2),
            EventKind::AttestationVerified {
                attestation: AttestationSummary {
                    format: Format::AndroidKey,
                    security_level: SecurityLevel::SecureElement,
                    verified_at: T0 - Duration::hours(2),
                    evidence_sha256: "cd".repeat(32),
                },
            },
        ),
        ev(
            Source::Acme,
            "iss-1",
            T0 - Duration::hours(2),
            EventKind::CredentialIssued {
                credential: Credential {
                    serial: serial.into(),
                    protocol: "acme".into(),
                    issued_at: T0 - Duration::hours(2),
                    not_after: T0 + Duration::days(30),
                    revoked_at: None,
                    key: CredentialKey::Attested {
                        evidence_sha256: "cd".repeat(32),
                    },
                },
            },
        ),
        check_in("ci-1", T0 - Duration::hours(1), "14", Compliance::Compliant),
        ev(
            Source::Intune,
            "cc-1",
            T0 - Duration::minutes(30),
            EventKind::ComplianceChanged {
                compliance: Compliance::Compliant,
            },
        ),
        ev(
            Source::Gateway,
            "rep-1",
            T0 - Duration::minutes(20),
            EventKind::CapabilityReported {
                capability: CapabilityReport::RcsE2ee {
                    state: RcsE2ee::Claimed,
                    mls_ciphersuites: vec![1],
                    client_version: Some("2.3.0".into()),
                    carrier: Some("ExampleTel".into()),
                },
            },
        ),
        ev(
            Source::Gateway,
            "rep-2",
            T0 - Duration::minutes(20),
            EventKind::CapabilityReported {
                capability: CapabilityReport::Sms { available: true },
            },
        ),
        ev(
            Source::Device,
            "hs-1",
            T0 - Duration::minutes(10),
            EventKind::CapabilityProved {
                credential_serial: serial.into(),
                mls_ciphersuites: vec![1, 2],
                client_version: Some("2.3.1".into()),
            },
        ),
    ]
}

fn apply_all(r: &mut PostureRecord, events: &[PostureEvent]) {
    for e in events {
        apply(r, e);
    }
}

#[test]
fn lifecycle_reaches_attested_and_verified() {
    let mut r = registered();
    for e in lifecycle() {
        assert!(apply(&mut r, &e).changed, "{e:?}");
    }
    let a = assess(&r, &Freshness::default(), T0);
    assert_eq!(a.assurance, Assurance::Attested, "{:?}", a.reasons);
    assert_eq!(a.rcs_e2ee, RcsE2ee::Verified);
    assert_eq!(a.view.client_version.as_deref(), Some("2.3.1"));
    assert!(a.view.sms);
    assert_eq!(r.updated_at, T0 - Duration::minutes(10));
    assert_eq!(r.mdm.source, Some(Source::Jamf));
}

#[test]
fn every_event_is_idempotent() {
    let mut r = registered();
    let mut extra = lifecycle();
    extra.extend([
        ev(
            Source::Acme,
            "rev-1",
            T0,
            EventKind::CredentialRevoked {
                serial: "0a1b2c".into(),
            },
        ),
        ev(
            Source::Acme,
            "rev-2",
            T0,
            EventKind::CredentialRevoked {
                serial: "not-yet-known".into(),
            },
        ),
        ev(Source::Admin, "lost-1", T0, EventKind::DeviceLost),
        ev(
            Source::Scim,
            "u-1",
            T0,
            EventKind::UserDeactivated {
                user: "alice".into(),
            },
        ),
        ev(Source::Jamf, "un-1", T0, EventKind::DeviceUnenrolled),
    ]);
    for e in &extra {
        assert!(apply(&mut r, e).changed, "first {e:?}");
        let before = r.clone();
        assert!(!apply(&mut r, e).changed, "again {e:?}");
        assert_eq!(r, before);
    }
}

#[test]
fn every_order_of_arrival_ends_alike() {
    let events = lifecycle();
    let mut forward = registered();
    apply_all(&mut forward, &events);
    let mut backward = registered();
    for e in events.iter().rev() {
        apply(&mut backward, e);
    }
    assert_eq!(forward, backward);
}

#[test]
fn an_older_check_in_never_overwrites_a_newer_one() {
    let newer = check_in("ci-2", T0, "15", Compliance::NonCompliant);
    let older = check_in("ci-1", T0 - Duration::hours(1), "14", Compliance::Compliant);
    let mut r = registered();
    assert!(apply(&mut r, &newer).changed);
    assert!(!apply(&mut r, &older).changed);
    assert_eq!(r.mdm.last_check_in, Some(T0));
    assert_eq!(r.mdm.os_version.as_deref(), Some("15"));
    assert_eq!(r.mdm.compliance, Compliance::NonCompliant);

    // a compliance change older than the check-in's verdict does not undo it either
    let stale = ev(
        Source::Jamf,
        "cc-0",
        T0 - Duration::minutes(1),
        EventKind::ComplianceChanged {
            compliance: Compliance::Compliant,
        },
    );
    assert!(!apply(&mut r, &stale).changed);
    assert_eq!(r.mdm.compliance, Compliance::NonCompliant);

    // at equal event times the greater event id wins, whatever the order
    let a = check_in("a", T0 + Duration::hours(1), "16", Compliance::Compliant);
    let b = check_in("b", T0 + Duration::hours(1), "17", Compliance::Compliant);
    let (mut x, mut y) = (r.clone(), r);
    apply_all(&mut x, &[a.clone(), b.clone()]);
    apply_all(&mut y, &[b, a]);
    assert_eq!(x, y);
    assert_eq!(x.mdm.os_version.as_deref(), Some("17"));
}

#[test]
fn a_late_check_in_does_not_re_enroll() {
    let mut r = registered();
    apply(
        &mut r,
        &ev(Source::Jamf, "un", T0, EventKind::DeviceUnenrolled),
    );
    apply(
        &mut r,
        &check_in("ci", T0 - Duration::hours(1), "14", Compliance::Compliant),
    );
    assert!(!r.mdm.enrolled);
    assert_eq!(r.mdm.last_check_in, Some(T0 - Duration::hours(1)));
    // a check-in after the unenrollment means it enrolled again
    apply(
        &mut r,
        &check_in("ci2", T0 + Duration::hours(1), "14", Compliance::Compliant),
    );
    assert!(r.mdm.enrolled);
}

#[test]
fn lost_and_deactivated_drop_assurance() {
    let mut base = registered();
    apply_all(&mut base, &lifecycle());
    let f = Freshness::default();
    assert_eq!(assess(&base, &f, T0).assurance, Assurance::Attested);

    let mut lost = base.clone();
    apply(
        &mut lost,
        &ev(Source::Admin, "l", T0, EventKind::DeviceLost),
    );
    let a = assess(&lost, &f, T0);
    assert_eq!(
        (a.assurance, a.rcs_e2ee),
        (Assurance::Unknown, RcsE2ee::Unknown)
    );

    let deactivate = |user: &str| PostureEvent {
        subject: Subject::User { user: user.into() },
        ..ev(
            Source::Scim,
            "u",
            T0,
            EventKind::UserDeactivated { user: user.into() },
        )
    };
    let mut other = base.clone();
    assert!(!apply(&mut other, &deactivate("bob")).changed);
    assert!(!other.is_subject(&deactivate("bob").subject));

    let mut gone = base.clone();
    assert!(gone.is_subject(&deactivate("alice").subject));
    assert!(apply(&mut gone, &deactivate("alice")).changed);
    let a = assess(&gone, &f, T0);
    assert_eq!(
        (a.assurance, a.rcs_e2ee),
        (Assurance::Unknown, RcsE2ee::Unknown)
    );

    // revoking the only attested credential: managed, and the handshake no longer verifies
    let mut revoked = base;
    apply(
        &mut revoked,
        &ev(
            Source::Acme,
            "r",
            T0,
            EventKind::CredentialRevoked {
                serial: "0a1b2c".into(),
            },
        ),
    );
    let a = assess(&revoked, &f, T0);
    assert_eq!(
        (a.assurance, a.rcs_e2ee),
        (Assurance::Managed, RcsE2ee::Claimed)
    );
}

#[test]
fn a_revocation_before_its_issuance_sticks() {
    let events = lifecycle();
    let revoke = ev(
        Source::Acme,
        "r",
        T0 - Duration::minutes(5),
        EventKind::CredentialRevoked {
            serial: "0a1b2c".into(),
        },
    );
    let mut r = registered();
    apply(&mut r, &revoke);
    apply_all(&mut r, &events);
    assert!(r.early_revocations.is_empty());
    assert_eq!(
        r.credential("0a1b2c").and_then(|c| c.revoked_at),
        Some(T0 - Duration::minutes(5))
    );
    assert_eq!(
        assess(&r, &Freshness::default(), T0).assurance,
        Assurance::Managed
    );
}

#[test]
fn subjects() {
    let mut r = registered();
    r.identifiers.serial = Some("C02XYZ".into());
    r.addresses = vec![Address::parse("tel:+15551234567").unwrap_or_else(|e| panic!("{e}"))];
    let by_serial = Subject::Device {
        device_id: None,
        identifiers: DeviceIdentifiers {
            serial: Some("C02XYZ".into()),
            ..DeviceIdentifiers::default()
        },
    };
    assert!(r.is_subject(&by_serial));
    assert!(r.is_subject(&device()));
    assert!(!r.is_subject(&Subject::Device {
        device_id: None,
        identifiers: DeviceIdentifiers::default(),
    }));
    let addr = Address::parse("tel:+15551234567").unwrap_or_else(|e| panic!("{e}"));
    assert!(r.is_subject(&Subject::Address { address: addr }));
}

#[test]
fn the_wire_form() {
    let json = serde_json::json!({
        "source": "workspace-one",
        "event_id": "4711",
        "occurred_at": "2025-06-02T12:00:00Z",
        "subject": {"kind": "device", "identifiers": {"serial": "C02XYZ", "udid": "0000-1111"}},
        "event": {
            "type": "checked_in",
            "compliance": "non_compliant",
            "os_version": "17.4.1",
            "storage_encrypted": true,
            "jailbreak_detected": false
        }
    });
    let e: PostureEvent = serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(e.source, Source::WorkspaceOne);
    assert_eq!(e.occurred_at, T0);
    assert_eq!(serde_json::to_value(&e).ok(), Some(json));

    let gateway = serde_json::json!({
        "source": "gateway",
        "event_id": "g-1",
        "occurred_at": "2025-06-02T12:00:00Z",
        "subject": {"kind": "address", "address": "tel:+15551234567"},
        "event": {
            "type": "capability_reported",
            "capability": {"capability": "rcs_e2ee", "state": "claimed", "mls_ciphersuites": [1]}
        }
    });
    let e: PostureEvent = serde_json::from_value(gateway.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(serde_json::to_value(&e).ok(), Some(gateway));

    // a bad address or an unknown source is refused
    let bad = serde_json::json!({
        "source": "gateway", "event_id": "g", "occurred_at": "2025-06-02T12:00:00Z",
        "subject": {"kind": "address", "address": "tel:555"},
        "event": {"type": "device_lost"}
    });
    assert!(serde_json::from_value::<PostureEvent>(bad).is_err());
    let unknown = serde_json::json!({
        "source": "fax", "event_id": "g", "occurred_at": "2025-06-02T12:00:00Z",
        "subject": {"kind": "user", "user": "alice"},
        "event": {"type": "device_lost"}
    });
    assert!(serde_json::from_value::<PostureEvent>(unknown).is_err());

    for e in lifecycle() {
        let text = serde_json::to_string(&e).unwrap_or_else(|e| panic!("{e}"));
        let back: PostureEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, e);
    }
    for s in [
        Source::Jamf,
        Source::Intune,
        Source::WorkspaceOne,
        Source::NanoMdm,
        Source::AndroidManagement,
        Source::Scim,
        Source::Acme,
        Source::Gateway,
    ] {
        assert_eq!(
            serde_json::to_value(s).ok(),
            Some(serde_json::Value::from(s.as_str()))
        );
    }
}
