use super::*;
use crate::domain::clock::{Clock, ManualClock};
use time::macros::datetime;

use AssuranceReason as R;

const T0: OffsetDateTime = datetime!(2025-06-02 12:00 UTC);
const SERIAL: &str = "0a1b2c";

fn stamp(at: OffsetDateTime, id: &str) -> Stamp {
    Stamp {
        at,
        event_id: id.to_owned(),
    }
}

fn acme_credential(serial: &str) -> Credential {
    Credential {
        serial: serial.to_owned(),
        protocol: "acme".into(),
        issued_at: T0 - Duration::hours(1),
        not_after: T0 + Duration::days(30),
        revoked_at: None,
        key: CredentialKey::Attested {
            evidence_sha256: "ab".repeat(32),
        },
    }
}

/// A device that is attested at `T0`: enrolled, compliant, checked in and attested at `T0`,
/// an attested credential issued an hour before, a handshake at `T0`, a gateway report.
fn attested() -> PostureRecord {
    let mut r = PostureRecord::new("acme-corp", "dev_00000000000000000001", T0);
    r.registered_at = Some(T0 - Duration::days(60));
    r.user = Some("alice".into());
    r.addresses = vec![Address::parse("tel:+15551234567").unwrap_or_else(|e| panic!("{e}"))];
    r.mdm = MdmState {
        source: Some(Source::Intune),
        enrolled: true,
        enrollment: Some(stamp(T0 - Duration::days(60), "intune:enr")),
        compliance: Compliance::Compliant,
        compliance_stamp: Some(stamp(T0, "intune:c1")),
        last_check_in: Some(T0),
        os_version: Some("14".into()),
        platform: Some("android".into()),
        storage_encrypted: Some(true),
        jailbreak_detected: Some(false),
        inventory: Some(stamp(T0, "intune:c1")),
    };
    r.attestation = Some(AttestationSummary {
        format: Format::AndroidKey,
        security_level: SecurityLevel::TrustedEnvironment,
        verified_at: T0,
        evidence_sha256: "ab".repeat(32),
    });
    r.credentials = vec![acme_credential(SERIAL)];
    r.capabilities = Capabilities {
        rcs_e2ee_handshake: Some(RcsHandshake {
            credential_serial: SERIAL.into(),
            mls_ciphersuites: vec![1],
            client_version: Some("2.3.1".into()),
            stamp: stamp(T0, "device:h1"),
        }),
        rcs_e2ee_report: Some(RcsReport {
            state: RcsE2ee::Claimed,
            mls_ciphersuites: vec![1],
            client_version: Some("2.3.0".into()),
            carrier: Some("ExampleTel".into()),
            stamp: stamp(T0, "gateway:r1"),
        }),
        in_app: None,
        secure_email: Some(Availability {
            available: true,
            stamp: stamp(T0, "gateway:r2"),
        }),
        web_portal: None,
        sms: Some(Availability {
            available: false,
            stamp: stamp(T0, "gateway:r3"),
        }),
    };
    r
}

fn managed_reason() -> AssuranceReason {
    R::Managed { checked_in_at: T0 }
}

fn attested_reason() -> AssuranceReason {
    R::Attested {
        format: Format::AndroidKey,
        verified_at: T0,
    }
}

fn check(
    name: &str,
    record: &PostureRecord,
    now: OffsetDateTime,
    assurance: Assurance,
    reasons: &[AssuranceReason],
    rcs: RcsE2ee,
) {
    let a = assess(record, &Freshness::default(), now);
    assert_eq!(
        a.assurance, assurance,
        "{name}: assurance; reasons {:?}",
        a.reasons
    );
    assert_eq!(a.reasons, reasons, "{name}: reasons");
    assert_eq!(a.rcs_e2ee, rcs, "{name}: rcs e2ee");
    assert_eq!(a.view.assurance, assurance, "{name}: view");
    assert_eq!(a.view.rcs_e2ee, rcs, "{name}: view");
    for r in &a.reasons {
        assert!(!r.to_string().is_empty(), "{name}: {r:?} explains itself");
    }
}

type Edit = fn(&mut PostureRecord);

/// One row: name, edit of [`attested`], clock, expected assurance, reasons, RCS E2EE.
type Row = (
    &'static str,
    Edit,
    OffsetDateTime,
    Assurance,
    Vec<AssuranceReason>,
    RcsE2ee,
);

#[test]
fn assurance_table() {
    let week = Duration::days(7);
    let day = Duration::hours(24);
    let s = Duration::seconds(1);
    let keep: Edit = |_| {};
    // the check-in moves along with the clock in rows that test the attestation window
    let checked_in_late: Edit = |r| r.mdm.last_check_in = Some(T0 + Duration::days(7));
    let cred = |d| R::Credential {
        serial: SERIAL.into(),
        defect: d,
    };
    let late_managed = R::Managed {
        checked_in_at: T0 + Duration::days(7),
    };
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("fresh", keep, T0 + Duration::hours(1), Assurance::Attested,
            vec![R::Registered, managed_reason(), attested_reason()], RcsE2ee::Verified),
        ("attestation exactly 7 days old", checked_in_late, T0 + week, Assurance::Attested,
            vec![R::Registered, late_managed.clone(), attested_reason()], RcsE2ee::Verified),
        ("attestation 7 days + 1 s old", checked_in_late, T0 + week + s, Assurance::Managed,
            vec![R::Registered, late_managed.clone(),
                 R::AttestationStale { verified_at: T0, max_days: 7 }], RcsE2ee::Claimed),
        ("check-in exactly 24 h old", keep, T0 + day, Assurance::Attested,
            vec![R::Registered, managed_reason(), attested_reason()], RcsE2ee::Verified),
        ("check-in 24 h + 1 s old", keep, T0 + day + s, Assurance::Registered,
            vec![R::Registered, R::CheckInStale { at: T0, max_hours: 24 }], RcsE2ee::Verified),
        ("jailbroken", |r| r.mdm.jailbreak_detected = Some(true), T0, Assurance::Registered,
            vec![R::Registered, R::Jailbroken], RcsE2ee::Verified),
        ("jailbreak not reported", |r| r.mdm.jailbreak_detected = None, T0, Assurance::Attested,
            vec![R::Registered, managed_reason(), attested_reason()], RcsE2ee::Verified),
        ("non-compliant", |r| r.mdm.compliance = Compliance::NonCompliant, T0,
            Assurance::Registered,
            vec![R::Registered, R::NotCompliant { compliance: Compliance::NonCompliant }],
            RcsE2ee::Verified),
        ("unenrolled, never checked in", |r| { r.mdm.enrolled = false; r.mdm.last_check_in = None; },
            T0, Assurance::Registered,
            vec![R::Registered, R::NotEnrolled, R::NoCheckIn], RcsE2ee::Verified),
        ("revoked credential", |r| r.credentials[0].revoked_at = Some(T0), T0,
            Assurance::Managed,
            vec![R::Registered, managed_reason(), cred(CredentialDefect::Revoked),
                 R::NoLiveAttestedCredential], RcsE2ee::Claimed),
        ("revoked later than now", |r| r.credentials[0].revoked_at = Some(T0 + Duration::days(1)), T0,
            Assurance::Attested,
            vec![R::Registered, managed_reason(), attested_reason()], RcsE2ee::Verified),
        ("expired credential", |r| r.credentials[0].not_after = T0 - Duration::SECOND, T0, Assurance::Managed,
            vec![R::Registered, managed_reason(), cred(CredentialDefect::Expired),
                 R::NoLiveAttestedCredential], RcsE2ee::Claimed),
        ("SCEP credential only, no attestation (Intel Mac)", |r| {
            r.credentials[0].key = CredentialKey::Unattested;
            r.credentials[0].protocol = "scep".into();
            r.attestation = None;
        }, T0, Assurance::Managed,
            vec![R::Registered, managed_reason(), R::NoAttestation,
                 cred(CredentialDefect::NotAttested), R::NoLiveAttestedCredential],
            RcsE2ee::Claimed),
        ("software-only attestation", |r| {
            if let Some(a) = &mut r.attestation { a.security_level = SecurityLevel::Software }
        }, T0, Assurance::Managed,
            vec![R::Registered, managed_reason(), R::AttestationNotHardware], RcsE2ee::Verified),
        ("handshake before the credential's issuance",
            |r| if let Some(h) = &mut r.capabilities.rcs_e2ee_handshake {
                h.stamp.at = T0 - Duration::hours(2)
            },
            T0, Assurance::Attested,
            vec![R::Registered, managed_reason(), attested_reason()], RcsE2ee::Claimed),
        ("handshake with an unknown credential",
            |r| if let Some(h) = &mut r.capabilities.rcs_e2ee_handshake {
                h.credential_serial = "ff".into()
            },
            T0, Assurance::Attested,
            vec![R::Registered, managed_reason(), attested_reason()], RcsE2ee::Claimed),
        ("no handshake, gateway report stale", |r| r.capabilities.rcs_e2ee_handshake = None,
            T0 + week + s, Assurance::Registered,
            vec![R::Registered, R::CheckInStale { at: T0, max_hours: 24 }], RcsE2ee::Unknown),
        ("gateway reports verified: only claimed", |r| {
            r.capabilities.rcs_e2ee_handshake = None;
            if let Some(g) = &mut r.capabilities.rcs_e2ee_report { g.state = RcsE2ee::Verified }
        }, T0, Assurance::Attested,
            vec![R::Registered, managed_reason(), attested_reason()], RcsE2ee::Claimed),
        ("gateway reports unsupported", |r| {
            r.capabilities.rcs_e2ee_handshake = None;
            if let Some(g) = &mut r.capabilities.rcs_e2ee_report { g.state = RcsE2ee::Unsupported }
        }, T0, Assurance::Attested,
            vec![R::Registered, managed_reason(), attested_reason()], RcsE2ee::Unsupported),
        ("lost", |r| r.lost = Some(stamp(T0, "admin:lost")), T0, Assurance::Unknown,
            vec![R::DeviceLost { at: T0 }], RcsE2ee::Unknown),
        ("user deactivated", |r| r.user_deactivated = Some(stamp(T0, "scim:1")), T0,
            Assurance::Unknown, vec![R::UserDeactivated { at: T0 }], RcsE2ee::Unknown),
        ("not in the inventory", |r| r.registered_at = None, T0, Assurance::Unknown,
            vec![R::NotRegistered], RcsE2ee::Verified),
    ];
    for (name, edit, now, assurance, reasons, rcs) in rows {
        let mut r = attested();
        edit(&mut r);
        check(name, &r, now, assurance, &reasons, rcs);
    }
}

#[test]
fn unknown_device() {
    let r = PostureRecord::new("acme-corp", "dev_ffffffffffffffffffff", T0);
    check(
        "new record",
        &r,
        T0,
        Assurance::Unknown,
        &[R::NotRegistered],
        RcsE2ee::Unknown,
    );
    let a = assess(&r, &Freshness::default(), T0);
    assert_eq!(
        a.view.as_view(),
        PostureView {
            assurance: Assurance::Unknown,
            rcs_e2ee: RcsE2ee::Unknown,
            in_app: false,
            secure_email: false,
            web_portal: false,
            sms: false,
            platform: "",
            os_version: "",
            carrier: None,
            client_version: None,
        }
    );
}

#[test]
fn levels_fall_as_the_clock_runs() {
    let clock = ManualClock::new(T0);
    let r = attested();
    let f = Freshness::default();
    let at = |clock: &ManualClock| {
        let a = assess(&r, &f, clock.now());
        (a.assurance, a.rcs_e2ee)
    };
    assert_eq!(at(&clock), (Assurance::Attested, RcsE2ee::Verified));
    clock.advance(Duration::hours(24));
    assert_eq!(at(&clock), (Assurance::Attested, RcsE2ee::Verified));
    clock.advance(Duration::seconds(1));
    assert_eq!(at(&clock), (Assurance::Registered, RcsE2ee::Verified));
    // the handshake is exactly 7 days old, then 7 days and 1 s
    clock.advance(Duration::days(6) - Duration::seconds(1));
    assert_eq!(at(&clock), (Assurance::Registered, RcsE2ee::Verified));
    clock.advance(Duration::seconds(1));
    assert_eq!(at(&clock), (Assurance::Registered, RcsE2ee::Claimed));
}

#[test]
fn view_carries_what_routing_reads() {
    let a = assess(&attested(), &Freshness::default(), T0);
    let v = a.view.as_view();
    assert_eq!(v.platform, "android");
    assert_eq!(v.os_version, "14");
    assert_eq!(v.carrier, Some("ExampleTel"));
    // the handshake's client version, not the gateway's
    assert_eq!(v.client_version, Some("2.3.1"));
    assert!(v.secure_email && !v.sms && !v.in_app && !v.web_portal);
}

#[test]
fn tighter_freshness_lowers_levels() {
    let f = Freshness {
        attestation_days: 1,
        mdm_checkin_hours: 1,
    };
    let a = assess(&attested(), &f, T0 + Duration::hours(2));
    assert_eq!(a.assurance, Assurance::Registered);
    assert_eq!(
        a.reasons,
        [
            R::Registered,
            R::CheckInStale {
                at: T0,
                max_hours: 1
            }
        ]
    );
}

#[test]
fn addresses() {
    for ok in [
        "tel:+15551234567",
        "tel:+447700900123",
        "im:alice@example.com",
        "sip:alice@example.com",
    ] {
        assert_eq!(Address::parse(ok).map(|a| a.to_string()), Ok(ok.to_owned()));
    }
    for (bad, err) in [
        ("tel:15551234567", AddressError::NotE164),
        ("tel:+0555", AddressError::NotE164),
        ("tel:+1", AddressError::NotE164),
        ("tel:+1234567890123456", AddressError::NotE164),
        ("tel:+1555-123", AddressError::NotE164),
        ("mailto:a@example.com", AddressError::Scheme),
        ("alice", AddressError::Scheme),
        ("sip:", AddressError::Empty),
        ("im:a b", AddressError::Empty),
    ] {
        assert_eq!(Address::parse(bad), Err(err), "{bad}");
    }
    let r: Result<Vec<Address>, _> = serde_json::from_str(r#"["tel:555"]"#);
    assert!(r.is_err());
}

#[test]
fn serde_round_trips() {
    let mut r = attested();
    r.early_revocations = vec![("dd".into(), stamp(T0, "acme:r"))];
    r.lost = Some(stamp(T0, "admin:l"));
    let json = serde_json::to_string(&r).unwrap_or_else(|e| panic!("{e}"));
    let back: PostureRecord = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, r);

    let new = PostureRecord::new("t", "dev_1", T0);
    let json = serde_json::to_value(&new).unwrap_or_else(|e| panic!("{e}"));
    let back: PostureRecord = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, new);

    let a = assess(&attested(), &Freshness::default(), T0);
    let json = serde_json::to_value(&a).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json["assurance"], "attested");
    assert_eq!(json["rcs_e2ee"], "verified");
    assert_eq!(json["reasons"][0]["reason"], "registered");
    assert_eq!(json["reasons"][2]["format"], "android-key");
    let back: Assessment = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, a);

    let c = serde_json::to_value(acme_credential("01")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c["key"], "attested");
    assert_eq!(c["evidence_sha256"], "ab".repeat(32));
}
