use super::*;

use Assurance::{Attested as At, Managed as Ma, Registered as Re, Unknown as Un};
use Transport::{
    Block as B, InApp as I, RcsE2ee as R, SecureEmail as E, SmsNotifyOnly as S, WebPortal as W,
};

fn view(assurance: Assurance, rcs: RcsE2ee) -> PostureView<'static> {
    PostureView {
        assurance,
        rcs_e2ee: rcs,
        in_app: true,
        secure_email: true,
        web_portal: true,
        sms: true,
        platform: "android",
        os_version: "14.1.3",
        carrier: Some("ExampleTel"),
        client_version: Some("2.3.1"),
    }
}

fn sms_only(assurance: Assurance, rcs: RcsE2ee) -> PostureView<'static> {
    PostureView {
        in_app: false,
        secure_email: false,
        web_portal: false,
        ..view(assurance, rcs)
    }
}

/// One row: class, assurance, and the expected transport for each RCS E2EE state in the order
/// verified, claimed, unsupported, unknown.
type Row = (&'static str, Assurance, [Transport; 4]);

/// Every transport available.
const ALL_AVAILABLE: &[Row] = &[
    ("public", Un, [R, R, I, I]),
    ("public", Re, [R, R, I, I]),
    ("public", Ma, [R, R, I, I]),
    ("public", At, [R, R, I, I]),
    ("internal", Un, [E, E, E, E]),
    ("internal", Re, [R, I, I, I]),
    ("internal", Ma, [R, I, I, I]),
    ("internal", At, [R, I, I, I]),
    ("confidential", Un, [E, E, E, E]),
    ("confidential", Re, [E, E, E, E]),
    ("confidential", Ma, [R, I, I, I]),
    ("confidential", At, [R, I, I, I]),
    ("restricted", Un, [B, B, B, B]),
    ("restricted", Re, [B, B, B, B]),
    ("restricted", Ma, [B, B, B, B]),
    ("restricted", At, [R, I, I, I]),
];

/// Only SMS (besides whatever RCS E2EE state the column says).
const SMS_ONLY: &[Row] = &[
    ("public", Un, [R, R, S, S]),
    ("public", Re, [R, R, S, S]),
    ("public", Ma, [R, R, S, S]),
    ("public", At, [R, R, S, S]),
    ("internal", Un, [S, S, S, S]),
    ("internal", Re, [R, S, S, S]),
    ("internal", Ma, [R, S, S, S]),
    ("internal", At, [R, S, S, S]),
    ("confidential", Un, [B, B, B, B]),
    ("confidential", Re, [B, B, B, B]),
    ("confidential", Ma, [R, B, B, B]),
    ("confidential", At, [R, B, B, B]),
    ("restricted", Un, [B, B, B, B]),
    ("restricted", Re, [B, B, B, B]),
    ("restricted", Ma, [B, B, B, B]),
    ("restricted", At, [R, B, B, B]),
];

fn check_table(rows: &[Row], make: fn(Assurance, RcsE2ee) -> PostureView<'static>) {
    let policy = Policy::default();
    let kills = KillSwitches::new();
    // every class × every assurance level is written out
    assert_eq!(rows.len(), policy.classes().count() * Assurance::ALL.len());
    for &(class, assurance, expected) in rows {
        for (rcs, want) in RcsE2ee::ALL.into_iter().zip(expected) {
            let d = evaluate(&policy, &kills, class, &make(assurance, rcs)).unwrap();
            assert_eq!(
                d.transport, want,
                "{class} / {assurance} / {rcs}: {:?}",
                d.reasons
            );
            let last = d.reasons.last().unwrap();
            assert_eq!((last.transport, last.outcome), (want, Outcome::Chosen));
        }
    }
}

#[test]
fn default_policy_with_every_transport_available() {
    check_table(ALL_AVAILABLE, view);
}

#[test]
fn default_policy_with_only_sms_available() {
    check_table(SMS_ONLY, sms_only);
}

#[test]
fn default_policy_with_nothing_available_blocks_unless_rcs_qualifies() {
    let nothing = |a, r| PostureView {
        sms: false,
        ..sms_only(a, r)
    };
    let p = Policy::default();
    let k = KillSwitches::new();
    for class in ["public", "internal", "confidential", "restricted"] {
        let d = evaluate(&p, &k, class, &nothing(At, RcsE2ee::Unsupported)).unwrap();
        assert_eq!(d.transport, B, "{class}");
        assert_eq!(d.reasons.len(), p.class(class).unwrap().ladder().len());
    }
}

fn explain(d: &Decision) -> Vec<String> {
    d.reasons.iter().map(ToString::to_string).collect()
}

#[test]
fn reasons_explain_every_step() {
    let p = Policy::default();
    let k = KillSwitches::new();
    let d = evaluate(&p, &k, "restricted", &view(Ma, RcsE2ee::Verified)).unwrap();
    assert_eq!(
        explain(&d),
        [
            "rcs_e2ee skipped: assurance managed below attested",
            "in_app skipped: assurance managed below attested",
            "block: chosen",
        ]
    );
    let d = evaluate(&p, &k, "internal", &view(Re, RcsE2ee::Claimed)).unwrap();
    assert_eq!(
        explain(&d),
        [
            "rcs_e2ee skipped: rcs e2ee claimed, verified required",
            "in_app: chosen"
        ]
    );
    let d = evaluate(&p, &k, "confidential", &sms_only(Un, RcsE2ee::Unknown)).unwrap();
    assert_eq!(
        explain(&d),
        [
            "rcs_e2ee skipped: assurance unknown below managed",
            "in_app skipped: assurance unknown below managed",
            "secure_email skipped: not available to the recipient",
            "web_portal skipped: not available to the recipient",
            "block: chosen",
        ]
    );
}

/// Every combination of availability, assurance and RCS E2EE state.
fn every_view() -> impl Iterator<Item = PostureView<'static>> {
    (0u8..16).flat_map(|bits| {
        Assurance::ALL.into_iter().flat_map(move |a| {
            RcsE2ee::ALL.into_iter().map(move |r| PostureView {
                in_app: bits & 1 != 0,
                secure_email: bits & 2 != 0,
                web_portal: bits & 4 != 0,
                sms: bits & 8 != 0,
                ..view(a, r)
            })
        })
    })
}

#[test]
fn forbidden_transports_are_never_chosen() {
    // a class without a ladder gets the full ladder minus what it forbids
    let custom = Policy::from_toml(
        r#"
        [classes.sensitive]
        min_assurance = "registered"
        forbidden = ["sms_notify_only", "web_portal"]
        "#,
    )
    .unwrap();
    assert_eq!(custom.class("sensitive").unwrap().ladder(), [R, I, E, B]);
    let k = KillSwitches::new();
    for policy in [Policy::default(), custom] {
        for (name, class) in policy.classes() {
            let mut chosen = TransportSet::EMPTY;
            for v in every_view() {
                let d = evaluate(&policy, &k, name, &v).unwrap();
                assert!(!class.forbidden().contains(d.transport), "{name}: {v:?}");
                assert!(d.reasons.len() <= class.ladder().len());
                chosen.insert(d.transport);
            }
            // and every allowed step is reachable
            assert_eq!(chosen, TransportSet::of(class.ladder()), "{name}");
        }
    }
}

#[test]
fn unknown_class_is_an_error_that_falls_back_to_block() {
    let e = evaluate(
        &Policy::default(),
        &KillSwitches::new(),
        "secret",
        &view(At, RcsE2ee::Verified),
    )
    .unwrap_err();
    assert_eq!(e, EvalError::UnknownClass);
    let d = e.fallback();
    assert_eq!(d.transport, B);
    assert_eq!(explain(&d), ["block: chosen, failing closed"]);
    assert_eq!(DomainError::from(e).kind, ErrorKind::NotFound);
}

// ---- kill switches

fn decide(kills: &KillSwitches, class: &str, v: &PostureView<'_>) -> Decision {
    evaluate(&Policy::default(), kills, class, v).unwrap()
}

#[test]
fn kill_switch_transport_off_for_the_tenant() {
    let mut k = KillSwitches::new();
    k.transport_off(R).unwrap();
    let d = decide(&k, "restricted", &view(At, RcsE2ee::Verified));
    assert_eq!(d.transport, I);
    assert_eq!(
        explain(&d),
        ["rcs_e2ee skipped: kill switch 0 (tenant)", "in_app: chosen"]
    );
    k.transport_off(I).unwrap();
    assert_eq!(
        decide(&k, "restricted", &view(At, RcsE2ee::Verified)).transport,
        B
    );
    assert_eq!(
        decide(&k, "public", &view(At, RcsE2ee::Verified)).transport,
        E
    );
}

#[test]
fn kill_switch_os_version_range_is_inclusive_and_fails_closed() {
    let mut k = KillSwitches::new();
    k.push(KillSwitch {
        transport: R,
        scope: KillScope::OsVersion {
            platform: "Android".into(),
            min: Some("14".parse().unwrap()),
            max: Some("14.2".parse().unwrap()),
        },
    })
    .unwrap();
    let on = |platform, os_version| {
        decide(
            &k,
            "internal",
            &PostureView {
                platform,
                os_version,
                ..view(At, RcsE2ee::Verified)
            },
        )
    };
    for (platform, os, want) in [
        ("android", "14.1.3", I),
        ("android", "14", I),
        ("android", "14.0.0", I),
        ("android", "14.2", I),
        ("android", "14.2.0 (beta)", I),
        ("android", "13.9.9", R),
        ("android", "14.2.0.1", R),
        ("android", "15", R),
        ("ios", "14.1", R),
        // a version that cannot be read is treated as inside the range
        ("android", "beta", I),
        ("android", "", I),
    ] {
        assert_eq!(on(platform, os).transport, want, "{platform} {os:?}");
    }
    assert_eq!(
        explain(&on("android", "14.1"))[0],
        "rcs_e2ee skipped: kill switch 0 (os version)"
    );
}

#[test]
fn kill_switch_open_ended_os_range() {
    let mut k = KillSwitches::new();
    k.push(KillSwitch {
        transport: R,
        scope: KillScope::OsVersion {
            platform: "ios".into(),
            min: None,
            max: Some("17.3".parse().unwrap()),
        },
    })
    .unwrap();
    let on = |os_version| PostureView {
        platform: "iOS",
        os_version,
        ..view(At, RcsE2ee::Verified)
    };
    assert_eq!(decide(&k, "internal", &on("16.7.8")).transport, I);
    assert_eq!(decide(&k, "internal", &on("17.3.0")).transport, I);
    assert_eq!(decide(&k, "internal", &on("17.4")).transport, R);
}

#[test]
fn kill_switch_carrier() {
    let mut k = KillSwitches::new();
    k.push(KillSwitch {
        transport: R,
        scope: KillScope::Carrier("exampletel".into()),
    })
    .unwrap();
    let on = |carrier| PostureView {
        carrier,
        ..view(At, RcsE2ee::Verified)
    };
    assert_eq!(decide(&k, "internal", &on(Some("ExampleTel"))).transport, I);
    assert_eq!(decide(&k, "internal", &on(Some("OtherTel"))).transport, R);
    // an unknown carrier might be the one switched off
    assert_eq!(decide(&k, "internal", &on(None)).transport, I);
    assert_eq!(
        explain(&decide(&k, "internal", &on(None)))[0],
        "rcs_e2ee skipped: kill switch 0 (carrier)"
    );
}

#[test]
fn kill_switch_client_version_exact_and_prefix() {
    let mut k = KillSwitches::new();
    k.push(KillSwitch {
        transport: I,
        scope: KillScope::ClientVersion(VersionMatch::Prefix("2.3.".into())),
    })
    .unwrap()
    .push(KillSwitch {
        transport: I,
        scope: KillScope::ClientVersion(VersionMatch::Exact("1.0.0".into())),
    })
    .unwrap();
    let on = |client_version| PostureView {
        client_version,
        ..view(At, RcsE2ee::Unsupported)
    };
    for (version, want) in [
        (Some("2.3.1"), E),
        (Some("2.3.10"), E),
        (Some("2.30"), I),
        (Some("2.4.0"), I),
        (Some("1.0.0"), E),
        (Some("1.0.0.1"), I),
        (None, E),
    ] {
        assert_eq!(
            decide(&k, "internal", &on(version)).transport,
            want,
            "{version:?}"
        );
    }
    assert_eq!(
        explain(&decide(&k, "internal", &on(Some("1.0.0"))))[1],
        "in_app skipped: kill switch 1 (client version)"
    );
}

#[test]
fn kill_switches_are_checked_when_added_and_read() {
    let mut k = KillSwitches::new();
    assert_eq!(
        k.transport_off(B).unwrap_err().key,
        "kill_switches[0].transport"
    );
    let err = k
        .push(KillSwitch {
            transport: R,
            scope: KillScope::OsVersion {
                platform: "ios".into(),
                min: Some("17.4".parse().unwrap()),
                max: Some("17.2".parse().unwrap()),
            },
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "kill_switches[0].scope.max: 17.2.0 is below min 17.4.0"
    );
    assert!("17.x".parse::<OsVersion>().is_err());
    assert!("1.2.3.4.5".parse::<OsVersion>().is_err());

    k.transport_off(W).unwrap();
    k.push(KillSwitch {
        transport: R,
        scope: KillScope::Carrier("ExampleTel".into()),
    })
    .unwrap();
    let json = serde_json::to_string(&k).unwrap();
    let back: KillSwitches = serde_json::from_str(&json).unwrap();
    assert_eq!(back, k);
    let bad = r#"[{"transport":"block","scope":"tenant"}]"#;
    assert!(serde_json::from_str::<KillSwitches>(bad).is_err());
}

// ---- parsing

/// Parses `text` and expects an error naming `key`, with `message` in it.
fn check_error(text: &str, key: &str, message: &str) {
    let e = Policy::from_toml(text).unwrap_err();
    assert_eq!(e.key, key, "{e}");
    assert!(e.message.contains(message), "{e}");
}

const OK_CLASS: &str = "[classes.restricted]\nmin_assurance = \"attested\"\n";

#[test]
fn errors_name_their_key() {
    let e = Policy::from_toml(&format!(
        "{OK_CLASS}ladder = [\"rcs_e2ee\", \"in_app\", \"smoke\"]"
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"classes.restricted.ladder[2]: "smoke" is not a transport"#
    );
    for (extra, key, message) in [
        (
            "colour = \"red\"",
            "classes.restricted.colour",
            "unknown key",
        ),
        (
            "ladder = \"in_app\"",
            "classes.restricted.ladder",
            "expected an array",
        ),
        (
            "ladder = [1]",
            "classes.restricted.ladder[0]",
            "expected a string",
        ),
        ("ladder = []", "classes.restricted.ladder", "is empty"),
        (
            "ladder = [\"in_app\", \"in_app\"]",
            "classes.restricted.ladder[1]",
            "appears twice",
        ),
        (
            "ladder = [\"in_app\", \"block\", \"web_portal\"]",
            "classes.restricted.ladder[2]",
            "after block",
        ),
        (
            "ladder = [\"in_app\", \"sms_notify_only\"]\nforbidden = [\"sms_notify_only\"]",
            "classes.restricted.ladder[1]",
            "forbidden for this class",
        ),
        (
            "forbidden = [\"block\"]",
            "classes.restricted.forbidden[0]",
            "cannot be forbidden",
        ),
        (
            "forbidden = [\"carrier_pigeon\"]",
            "classes.restricted.forbidden[0]",
            "is not a transport",
        ),
        (
            "rcs_e2ee = \"unknown\"",
            "classes.restricted.rcs_e2ee",
            "cannot be required",
        ),
        (
            "rcs_e2ee = \"maybe\"",
            "classes.restricted.rcs_e2ee",
            "cannot be required",
        ),
    ] {
        check_error(&format!("{OK_CLASS}{extra}\n"), key, message);
    }
    check_error(
        "[classes.restricted]\nladder = [\"in_app\"]\n",
        "classes.restricted.min_assurance",
        "missing",
    );
    check_error(
        "[classes.restricted]\nmin_assurance = \"high\"\n",
        "classes.restricted.min_assurance",
        "not an assurance level",
    );
    check_error(
        "[classes.Secret]\nmin_assurance = \"managed\"\n",
        "classes.Secret",
        "not a class name",
    );
    check_error("[classes]\n", "classes", "at least one class");
    check_error("[freshness]\nattestation_days = 7\n", "classes", "missing");
    check_error(&format!("bogus = 1\n{OK_CLASS}"), "bogus", "unknown key");
    check_error(
        &format!("{OK_CLASS}[freshness]\nattestation_days = 0\n"),
        "freshness.attestation_days",
        "not within 1..=366",
    );
    check_error(
        &format!("{OK_CLASS}[freshness]\nmdm_checkin_hours = \"24\"\n"),
        "freshness.mdm_checkin_hours",
        "expected an integer",
    );
    check_error(
        &format!("{OK_CLASS}[freshness]\nattestation_hours = 24\n"),
        "freshness.attestation_hours",
        "unknown key",
    );
    // a syntax error names the key on its line and the line
    check_error(
        "[classes.public]\nmin_assurance = \n",
        "classes.public.min_assurance",
        "line 2",
    );
    // and becomes a malformed domain error
    let e = Policy::from_toml("classes = 1").unwrap_err();
    assert_eq!(DomainError::from(e).kind, ErrorKind::Malformed);
}

#[test]
fn the_built_in_policy_is_its_toml() {
    let parsed = Policy::from_toml(DEFAULT_POLICY_TOML).unwrap();
    assert_eq!(parsed, Policy::default());
    let names: Vec<&str> = parsed.classes().map(|(n, _)| n).collect();
    assert_eq!(names, ["confidential", "internal", "public", "restricted"]);
    let r = parsed.class("restricted").unwrap();
    assert_eq!(
        (r.min_assurance(), r.rcs_e2ee(), r.ladder()),
        (At, RcsE2ee::Verified, &[R, I, B][..])
    );
    assert!(r.forbidden().contains(S));
    assert_eq!(parsed.freshness(), Freshness::default());
}

#[test]
fn version_ignores_formatting_and_follows_meaning() {
    let base = Policy::default();
    let v = base.version();
    assert_eq!(v.len(), 64);
    assert!(
        v.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );

    // the same policy written differently: comments, spacing, order of tables and keys,
    // inline tables, block left implicit, forbidden in another order, freshness defaulted
    let same = r#"
        classes.restricted = { forbidden = ["sms_notify_only"], ladder = ["rcs_e2ee", "in_app"], min_assurance = "attested" }

        # lower classes
        [classes.public]
        ladder    = [ "rcs_e2ee", "in_app", "secure_email", "web_portal", "sms_notify_only" ]
        rcs_e2ee  = "claimed"
        min_assurance = "unknown"

        [classes.internal]
        min_assurance = "registered"   # verified is the default requirement

        [classes.confidential]
        min_assurance = "managed"
        forbidden = ["sms_notify_only"]
    "#;
    assert_eq!(Policy::from_toml(same).unwrap().version(), v);

    // every change of meaning changes it
    let changed = [
        DEFAULT_POLICY_TOML.replace("attestation_days = 7", "attestation_days = 8"),
        DEFAULT_POLICY_TOML.replace("mdm_checkin_hours = 24", "mdm_checkin_hours = 12"),
        DEFAULT_POLICY_TOML.replace(
            "min_assurance = \"registered\"",
            "min_assurance = \"managed\"",
        ),
        DEFAULT_POLICY_TOML.replace("rcs_e2ee = \"claimed\"", "rcs_e2ee = \"verified\""),
        DEFAULT_POLICY_TOML.replace(
            "ladder = [\"rcs_e2ee\", \"in_app\", \"block\"]",
            "ladder = [\"in_app\", \"rcs_e2ee\", \"block\"]",
        ),
        DEFAULT_POLICY_TOML.replace(
            "ladder = [\"rcs_e2ee\", \"in_app\", \"block\"]\nforbidden = [\"sms_notify_only\"]",
            "ladder = [\"rcs_e2ee\", \"in_app\", \"block\"]\nforbidden = [\"sms_notify_only\", \"web_portal\"]",
        ),
        DEFAULT_POLICY_TOML.replace("[classes.restricted]", "[classes.secret]"),
    ];
    let mut seen = std::collections::BTreeSet::from([v.to_owned()]);
    for text in &changed {
        assert_ne!(text, DEFAULT_POLICY_TOML, "the edit applies");
        let p = Policy::from_toml(text).unwrap();
        assert!(seen.insert(p.version().to_owned()), "{text}");
    }
}

#[test]
fn summary_shows_each_class() {
    let p = Policy::from_toml(
        r#"
        [freshness]
        attestation_days = 3
        [classes.restricted]
        min_assurance = "attested"
        ladder = ["rcs_e2ee", "in_app"]
        forbidden = ["sms_notify_only", "secure_email"]
        [classes.public]
        min_assurance = "unknown"
        rcs_e2ee = "claimed"
        "#,
    )
    .unwrap();
    let want = format!(
        "policy version {}\n\
         freshness: attestation 3 days, mdm check-in 24 hours\n\
         routing: decisions valid 300 s, 100% of decisions audited\n\
         class public\n  \
           min assurance: unknown\n  \
           rcs e2ee:      claimed required\n  \
           ladder:        rcs_e2ee -> in_app -> secure_email -> web_portal -> sms_notify_only -> block\n  \
           forbidden:     (none)\n\
         class restricted\n  \
           min assurance: attested\n  \
           rcs e2ee:      verified required\n  \
           ladder:        rcs_e2ee -> in_app -> block\n  \
           forbidden:     secure_email, sms_notify_only\n",
        p.version()
    );
    assert_eq!(p.summary(), want);
}

#[test]
fn os_versions_as_devices_report_them() {
    let v = |s: &str| OsVersion::from_reported(s);
    assert_eq!(v("14.4.1 (23E224)"), Some("14.4.1".parse().unwrap()));
    assert_eq!(v("17.4b2"), Some("17.4".parse().unwrap()));
    assert_eq!(
        v("10.0.22631.3447.1"),
        Some("10.0.22631.3447".parse().unwrap())
    );
    assert_eq!(v("x17"), None);
    assert_eq!(v("99999999999"), None);
    assert_eq!("17.4".parse::<OsVersion>().unwrap().to_string(), "17.4.0");
}

#[test]
fn wire_names_are_snake_case() {
    assert_eq!(serde_json::to_string(&S).unwrap(), "\"sms_notify_only\"");
    assert_eq!(serde_json::to_string(&R).unwrap(), "\"rcs_e2ee\"");
    assert_eq!(serde_json::to_string(&At).unwrap(), "\"attested\"");
    for t in Transport::ALL {
        assert_eq!(t.as_str().parse::<Transport>(), Ok(t));
        assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
    }
    assert!(Un < Re && Re < Ma && Ma < At);
}

#[test]
fn routing_settings_parse_and_change_the_version() {
    let base =
        "[classes.a]\nmin_assurance = \"unknown\"\nrcs_e2ee = \"claimed\"\nladder = [\"block\"]\n";
    let p = Policy::from_toml(base).unwrap();
    assert_eq!(p.routing(), Routing::default());
    let q = Policy::from_toml(&format!(
        "[routing]\ndecision_ttl_seconds = 60\naudit_sample_percent = 5\n{base}"
    ))
    .unwrap();
    assert_eq!(q.routing().decision_ttl_seconds, 60);
    assert_eq!(q.routing().audit_sample_percent, 5);
    assert_ne!(p.version(), q.version());
    let e =
        Policy::from_toml(&format!("[routing]\naudit_sample_percent = 101\n{base}")).unwrap_err();
    assert_eq!(e.key, "routing.audit_sample_percent");
    let e = Policy::from_toml(&format!("[routing]\nttl = 1\n{base}")).unwrap_err();
    assert_eq!(e.key, "routing.ttl");
}
