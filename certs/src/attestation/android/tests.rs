use ciborium::Value;
use rcgen::PublicKeyData as _;
use time::OffsetDateTime;

use super::*;
use crate::attestation::testing::android::{AndroidStatement, AndroidTestAuthority};
use crate::attestation::{DeviceIdentifier, IdentifierKind, SecurityLevel, VerifiedBoot, Verifier};

const SERIAL: &str = "R5CT1234ABC";
const KEY_AUTH: &str =
    "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEt62jcerQ";

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap()
}

fn p256_key() -> Vec<u8> {
    let rng = ring::rand::SystemRandom::new();
    ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap()
    .as_ref()
    .to_vec()
}

fn identifier(value: &str) -> DeviceIdentifier {
    DeviceIdentifier::parse(IdentifierKind::PermanentIdentifier, value).unwrap()
}

/// Verifies `att_obj` for the order identifier `id` at `at`.
fn check_at(
    att_obj: &[u8],
    roots: &TrustRoots,
    id: &str,
    key_auth: &str,
    at: OffsetDateTime,
    revocations: Option<&RevocationList>,
) -> Result<Evidence, AttestError> {
    let obj = AttestationObject::decode(att_obj)?;
    let id = identifier(id);
    let challenge = Challenge {
        token: key_auth.split('.').next().unwrap_or(key_auth),
        key_authorization: key_auth,
        identifier: &id,
        now: at,
    };
    verify(&obj, &challenge, roots, &ChainCache::default(), revocations)
}

fn check(
    ta: &AndroidTestAuthority,
    s: &AndroidStatement,
    revocations: Option<&RevocationList>,
) -> Result<Evidence, AttestError> {
    check_at(
        &ta.attest(s),
        &ta.roots(),
        SERIAL,
        KEY_AUTH,
        now(),
        revocations,
    )
}

fn statement() -> AndroidStatement {
    AndroidStatement::new(&p256_key(), SERIAL, KEY_AUTH, now())
}

fn list(json: &str, fetched_at: OffsetDateTime) -> RevocationList {
    RevocationList::from_json(json.as_bytes(), fetched_at, time::Duration::hours(24)).unwrap()
}

#[test]
fn a_good_statement_gives_evidence() {
    let ta = AndroidTestAuthority::new();
    let mut s = statement();
    s.imei = Some("359881234567890".into());
    let device_spki = rcgen::KeyPair::try_from(s.device_key_pkcs8.as_slice())
        .unwrap()
        .subject_public_key_info();
    let e = check(&ta, &s, None).unwrap();
    assert_eq!(e.format, Format::AndroidKey);
    assert_eq!(e.vendor, "Google");
    assert_eq!(e.identifier, SERIAL);
    assert_eq!(e.device_ids["serial"], SERIAL);
    assert_eq!(e.device_ids["imei"], "359881234567890");
    assert_eq!(e.device_ids["brand"], "google");
    assert_eq!(e.device_ids["manufacturer"], "Google");
    assert_eq!(e.device_ids["model"], "Pixel 8");
    assert!(!e.device_ids.contains_key("meid"));
    assert_eq!(e.os_version.as_deref(), Some("14.0.0"));
    assert_eq!(e.patch_level.as_deref(), Some("2024-06"));
    assert_eq!(e.firmware["vendor-patch"], "2024-06-01");
    assert_eq!(e.firmware["boot-patch"], "2024-06-01");
    assert_eq!(e.security_level, SecurityLevel::TrustedEnvironment);
    assert_eq!(
        e.boot,
        Some(BootState {
            verified_boot: VerifiedBoot::Verified,
            device_locked: Some(true)
        })
    );
    assert_eq!(e.properties["attestation-version"], json!(300));
    assert_eq!(
        e.properties["keymint-security-level"],
        json!("trusted-environment")
    );
    assert_eq!(
        e.properties["attestation-application-id"],
        json!([{"package": "com.example.postern", "version": 1}])
    );
    assert_eq!(
        e.properties["signature-digests"],
        json!([sha256_hex(b"com.example.postern")])
    );
    assert_eq!(
        e.properties["verified-boot-key"],
        json!(sha256_hex(b"postern test verified boot key"))
    );
    assert_eq!(e.public_key, device_spki);
    assert_eq!(e.verified_at, now());
    assert_eq!(e.not_before, s.not_before);
    assert_eq!(e.chain_sha256.len(), 3);
    assert_eq!(e.chain_sha256[1], sha256_hex(ta.intermediate_der()));
    assert_eq!(e.chain_sha256[2], sha256_hex(ta.root_der()));
}

#[test]
fn the_verifier_dispatches_and_trusts_the_configured_root_pem() {
    let ta = AndroidTestAuthority::new();
    let mut v = Verifier::new(&[Format::AndroidKey]);
    v.set_roots(
        Format::AndroidKey,
        TrustRoots::from_pem(&ta.root_pem()).unwrap(),
    );
    let id = identifier(SERIAL);
    let challenge = Challenge {
        token: "t",
        key_authorization: KEY_AUTH,
        identifier: &id,
        now: now(),
    };
    let e = v
        .verify(&ta.attest(&statement()), &challenge, None)
        .unwrap();
    assert_eq!(e.device_ids["serial"], SERIAL);
    // with the built-in Google roots only, the test root is not trusted
    let builtin = Verifier::new(&[Format::AndroidKey]);
    assert!(matches!(
        builtin.verify(&ta.attest(&statement()), &challenge, None),
        Err(AttestError::Untrusted(_))
    ));
}

#[test]
fn other_device_key_types_verify() {
    let ta = AndroidTestAuthority::new();
    let rng = ring::rand::SystemRandom::new();
    let ed = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let s = AndroidStatement::new(ed.as_ref(), SERIAL, KEY_AUTH, now());
    let att = ta.attest(&s);
    assert_eq!(
        AttestationObject::decode(&att).unwrap().int("alg").unwrap(),
        COSE_EDDSA
    );
    check_at(&att, &ta.roots(), SERIAL, KEY_AUTH, now(), None).unwrap();
}

#[test]
fn a_wrong_challenge_is_refused() {
    let ta = AndroidTestAuthority::new();
    let mut s = statement();
    s.challenge = b"another key authorization".to_vec();
    assert!(matches!(
        check(&ta, &s, None),
        Err(AttestError::Freshness(_))
    ));
    s.challenge = Vec::new();
    assert!(matches!(
        check(&ta, &s, None),
        Err(AttestError::Freshness(_))
    ));
    // the token alone is not the key authorization
    s.challenge = KEY_AUTH.split('.').next().unwrap().as_bytes().to_vec();
    assert!(matches!(
        check(&ta, &s, None),
        Err(AttestError::Freshness(_))
    ));
}

#[test]
fn a_sig_over_other_data_is_refused() {
    let ta = AndroidTestAuthority::new();
    let mut s = statement();
    s.signed_data = b"something else".to_vec();
    assert!(matches!(
        check(&ta, &s, None),
        Err(AttestError::Signature(_))
    ));
    // a sig by another key than the certified one
    let mut s = statement();
    let other = statement();
    let att = ta.attest(&s);
    let other_att = ta.attest(&other);
    let mut obj = AttestationObject::decode(&att).unwrap();
    let other_sig = AttestationObject::decode(&other_att)
        .unwrap()
        .bytes("sig")
        .unwrap()
        .to_vec();
    for (k, v) in &mut obj.att_stmt {
        if matches!(k, Value::Text(t) if t == "sig") {
            *v = Value::Bytes(other_sig.clone());
        }
    }
    let id = identifier(SERIAL);
    let challenge = Challenge {
        token: "t",
        key_authorization: KEY_AUTH,
        identifier: &id,
        now: now(),
    };
    assert!(matches!(
        verify(&obj, &challenge, &ta.roots(), &ChainCache::default(), None),
        Err(AttestError::Signature(_))
    ));
    // an alg that does not fit the key
    s.alg = Some(COSE_RS256);
    assert!(matches!(
        check(&ta, &s, None),
        Err(AttestError::Signature(m)) if m.contains("does not fit")
    ));
}

#[test]
fn a_ca_as_leaf_is_untrusted() {
    let ta = AndroidTestAuthority::new();
    let chain = [ta.intermediate_der().to_vec(), ta.root_der().to_vec()];
    let r = check_at(
        &att_obj(COSE_ES256, &chain),
        &ta.roots(),
        SERIAL,
        KEY_AUTH,
        now(),
        None,
    );
    assert!(
        matches!(&r, Err(AttestError::Untrusted(m)) if m.contains("the leaf is a CA")),
        "{r:?}"
    );
}

#[test]
fn another_root_is_untrusted() {
    let ta = AndroidTestAuthority::new();
    let other = AndroidTestAuthority::new();
    let att = other.attest(&statement());
    assert!(matches!(
        check_at(&att, &ta.roots(), SERIAL, KEY_AUTH, now(), None),
        Err(AttestError::Untrusted(_))
    ));
}

#[test]
fn an_expired_leaf_is_refused() {
    let ta = AndroidTestAuthority::new();
    let mut s = statement();
    s.not_before = now() - time::Duration::days(30);
    s.not_after = now() - time::Duration::days(1);
    assert!(matches!(check(&ta, &s, None), Err(AttestError::Expired(_))));
    let mut s = statement();
    s.not_before = now() + time::Duration::days(1);
    assert!(matches!(check(&ta, &s, None), Err(AttestError::Expired(_))));
}

#[test]
fn the_serial_must_be_the_order_identifier() {
    let ta = AndroidTestAuthority::new();
    let att = ta.attest(&statement());
    assert!(matches!(
        check_at(&att, &ta.roots(), "R5CT9999XYZ", KEY_AUTH, now(), None),
        Err(AttestError::Identifier(_))
    ));
    // no case folding
    assert!(matches!(
        check_at(
            &att,
            &ta.roots(),
            &SERIAL.to_lowercase(),
            KEY_AUTH,
            now(),
            None
        ),
        Err(AttestError::Identifier(_))
    ));
    // an assigner OID does not take part
    assert!(
        check_at(
            &att,
            &ta.roots(),
            &format!("{SERIAL}/1.2.3.4"),
            KEY_AUTH,
            now(),
            None
        )
        .is_ok()
    );
    let mut s = statement();
    s.serial = None;
    assert!(matches!(
        check(&ta, &s, None),
        Err(AttestError::Identifier(m)) if m.contains("no hardware-attested serial")
    ));
}

#[test]
fn security_levels_are_reported_not_enforced() {
    let ta = AndroidTestAuthority::new();
    for (level, expect, keymint) in [
        (SecurityLevel::Software, SecurityLevel::Software, "software"),
        (
            SecurityLevel::SecureElement,
            SecurityLevel::SecureElement,
            "strongbox",
        ),
    ] {
        let mut s = statement();
        s.security_level = level;
        let e = check(&ta, &s, None).unwrap();
        assert_eq!(e.security_level, expect);
        assert_eq!(e.properties["keymint-security-level"], json!(keymint));
    }
    let mut s = statement();
    s.verified_boot = VerifiedBoot::Unverified;
    s.device_locked = false;
    let e = check(&ta, &s, None).unwrap();
    assert_eq!(
        e.boot,
        Some(BootState {
            verified_boot: VerifiedBoot::Unverified,
            device_locked: Some(false)
        })
    );
}

#[test]
fn an_imported_key_is_refused() {
    let ta = AndroidTestAuthority::new();
    let mut s = statement();
    s.origin_generated = false;
    assert!(matches!(
        check(&ta, &s, None),
        Err(AttestError::Key(m)) if m.contains("imported")
    ));
}

#[test]
fn a_revoked_or_suspended_certificate_is_refused() {
    let ta = AndroidTestAuthority::new();
    let serial = ta.intermediate_serial_hex();
    for status in ["REVOKED", "SUSPENDED", "SOMETHING_NEW"] {
        // upper case and leading zeros in the list do not matter
        let l = list(
            &format!(
                r#"{{"entries": {{"00{}": {{"status": "{status}", "reason": "KEY_COMPROMISE"}}}}}}"#,
                serial.to_uppercase()
            ),
            now() - time::Duration::hours(1),
        );
        let r = check(&ta, &statement(), Some(&l));
        assert!(
            matches!(&r, Err(AttestError::Revoked(m)) if m.contains(&serial) && m.contains("KEY_COMPROMISE")),
            "{status}: {r:?}"
        );
    }
    // a list that names other serials lets the statement through
    let l = list(
        r#"{"entries": {"1234": {"status": "REVOKED"}}}"#,
        now() - time::Duration::hours(1),
    );
    check(&ta, &statement(), Some(&l)).unwrap();
}

#[test]
fn a_stale_list_makes_verification_unavailable() {
    let ta = AndroidTestAuthority::new();
    let l = list(r#"{"entries": {}}"#, now() - time::Duration::hours(25));
    assert!(matches!(
        check(&ta, &statement(), Some(&l)),
        Err(AttestError::Unavailable(_))
    ));
}

#[test]
fn an_unknown_alg_is_malformed() {
    let ta = AndroidTestAuthority::new();
    for alg in [-35, -65535, 0, 1] {
        let mut s = statement();
        s.alg = Some(alg);
        assert!(
            matches!(check(&ta, &s, None), Err(AttestError::Malformed(m)) if m.contains("alg")),
            "{alg}"
        );
    }
}

#[test]
fn truncated_cbor_is_malformed() {
    let ta = AndroidTestAuthority::new();
    let att = ta.attest(&statement());
    let v = Verifier::new(&[Format::AndroidKey]);
    let id = identifier(SERIAL);
    let challenge = Challenge {
        token: "t",
        key_authorization: KEY_AUTH,
        identifier: &id,
        now: now(),
    };
    for n in 0..att.len() {
        assert!(
            matches!(
                v.verify(&att[..n], &challenge, None),
                Err(AttestError::Malformed(_))
            ),
            "prefix {n}"
        );
    }
}

#[test]
fn a_leaf_without_key_description_is_malformed() {
    let ta = AndroidTestAuthority::new();
    let mut s = statement();
    s.key_description = false;
    assert!(matches!(
        check(&ta, &s, None),
        Err(AttestError::Malformed(m)) if m.contains("no key description")
    ));
}

#[test]
fn a_missing_sig_or_x5c_is_malformed() {
    let ta = AndroidTestAuthority::new();
    let att = ta.attest(&statement());
    for drop in ["sig", "x5c", "alg"] {
        let mut obj = AttestationObject::decode(&att).unwrap();
        obj.att_stmt
            .retain(|(k, _)| !matches!(k, Value::Text(t) if t == drop));
        let id = identifier(SERIAL);
        let challenge = Challenge {
            token: "t",
            key_authorization: KEY_AUTH,
            identifier: &id,
            now: now(),
        };
        assert!(
            matches!(
                verify(&obj, &challenge, &ta.roots(), &ChainCache::default(), None),
                Err(AttestError::Malformed(_))
            ),
            "{drop}"
        );
    }
}

#[test]
fn the_key_description_parser_never_panics() {
    let ta = AndroidTestAuthority::new();
    let att = ta.attest(&statement());
    let leaf = AttestationObject::decode(&att).unwrap().x5c().unwrap()[0].clone();
    let kd = key_description(&leaf).unwrap();
    assert_eq!(kd.attestation_version, 300);
    assert_eq!(
        kd.hardware_enforced.attestation_id_serial.as_deref(),
        Some(SERIAL.as_bytes())
    );
    assert_eq!(kd.hardware_enforced.purpose, vec![2]);
    assert!(kd.hardware_enforced.no_auth_required);
    assert!(kd.software_enforced.creation_date_time.is_some());
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == KEY_DESCRIPTION_OID)
        .unwrap()
        .value
        .to_vec();
    for n in 0..ext.len() {
        assert!(KeyDescription::from_der(&ext[..n]).is_err(), "prefix {n}");
    }
    // flipping any byte: an error or a value, never a panic
    for i in 0..ext.len() {
        let mut m = ext.clone();
        m[i] ^= 0xff;
        let _ = KeyDescription::from_der(&m);
    }
}

/// A KeyDescription built by hand: `extra` is appended to hardwareEnforced.
fn handmade(extra: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_i64(4);
            w.next().write_enum(1);
            w.next().write_i64(41);
            w.next().write_enum(1);
            w.next().write_bytes(b"abc");
            w.next().write_bytes(b"");
            w.next().write_sequence(|_| {});
            w.next().write_der(&yasna::construct_der(|w| {
                w.write_sequence(|w| {
                    w.next()
                        .write_tagged(yasna::Tag::context(702), |w| w.write_i64(0));
                    w.next().write_der(extra);
                })
            }));
        })
    })
}

#[test]
fn unknown_authorization_tags_are_ignored_and_known_ones_strict() {
    // [900] EXPLICIT INTEGER 5 and [8] EXPLICIT NULL: unknown, skipped
    let unknown_900 =
        yasna::construct_der(|w| w.write_tagged(yasna::Tag::context(900), |w| w.write_i64(5)));
    let unknown_8 =
        yasna::construct_der(|w| w.write_tagged(yasna::Tag::context(8), |w| w.write_null()));
    let kd = KeyDescription::from_der(&handmade(&[unknown_900, unknown_8].concat())).unwrap();
    assert_eq!(kd.hardware_enforced.unknown_tags, vec![900, 8]);
    assert_eq!(kd.hardware_enforced.origin, Some(0));
    assert_eq!(kd.attestation_challenge, b"abc");
    // a known tag twice
    let origin_again =
        yasna::construct_der(|w| w.write_tagged(yasna::Tag::context(702), |w| w.write_i64(2)));
    assert!(matches!(
        KeyDescription::from_der(&handmade(&origin_again)),
        Err(AttestError::Malformed(m)) if m.contains("twice")
    ));
    // a known tag with the wrong type
    let serial_as_int =
        yasna::construct_der(|w| w.write_tagged(yasna::Tag::context(713), |w| w.write_i64(7)));
    assert!(matches!(
        KeyDescription::from_der(&handmade(&serial_as_int)),
        Err(AttestError::Malformed(_))
    ));
    // an integer out of i64
    let big = yasna::construct_der(|w| {
        w.write_tagged(yasna::Tag::context(705), |w| w.write_u64(u64::MAX))
    });
    assert!(matches!(
        KeyDescription::from_der(&handmade(&big)),
        Err(AttestError::Malformed(m)) if m.contains("range")
    ));
    // an unknown security level
    let mut bad_level = handmade(&[]);
    let pos = bad_level
        .windows(3)
        .position(|w| w == [0x0a, 0x01, 0x01])
        .unwrap();
    bad_level[pos + 2] = 7;
    assert!(KeyDescription::from_der(&bad_level).is_err());
}

#[test]
fn version_and_patch_formats() {
    assert_eq!(os_version(130_000).as_deref(), Some("13.0.0"));
    assert_eq!(os_version(120_102).as_deref(), Some("12.1.2"));
    assert_eq!(os_version(0), None);
    assert_eq!(patch_level(202_401), "2024-01");
    assert_eq!(patch_level(20_240_105), "2024-01-05");
    assert_eq!(patch_level(7), "7");
}

// ---- real vectors ----

/// 2023-11-14: inside every validity of Google's TEE test chains.
const VECTOR_TIME: i64 = 1_700_000_000;

fn vector_chain(name: &str) -> Option<Vec<Vec<u8>>> {
    let dir = crate::vectors_dir()?
        .join("attest/android/google-android-key-attestation")
        .join(name);
    Some(
        (0..4)
            .map(|i| {
                let text = std::fs::read_to_string(dir.join(format!("cert{i}.pem"))).unwrap();
                pem::parse(text).unwrap().contents().to_vec()
            })
            .collect(),
    )
}

fn att_obj(alg: i64, chain: &[Vec<u8>]) -> Vec<u8> {
    let v = Value::Map(vec![
        (Value::Text("fmt".into()), Value::Text("android-key".into())),
        (
            Value::Text("attStmt".into()),
            Value::Map(vec![
                (Value::Text("alg".into()), Value::Integer(alg.into())),
                (Value::Text("sig".into()), Value::Bytes(vec![0x30, 0x00])),
                (
                    Value::Text("x5c".into()),
                    Value::Array(chain.iter().cloned().map(Value::Bytes).collect()),
                ),
            ]),
        ),
    ]);
    let mut out = Vec::new();
    ciborium::ser::into_writer(&v, &mut out).unwrap();
    out
}

fn vector_time() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(VECTOR_TIME).unwrap()
}

#[test]
fn google_tee_chains_verify_to_the_builtin_root() {
    let roots = TrustRoots::builtin(Format::AndroidKey);
    for (name, alg) in [
        ("algorithm_EC_SecurityLevel_TEE", COSE_ES256),
        ("algorithm_RSA_SecurityLevel_TEE", COSE_RS256),
    ] {
        let Some(chain) = vector_chain(name) else {
            return;
        };
        let path = verify_path(&chain, &roots, vector_time(), &ChainCache::default()).unwrap();
        // leaf, two intermediates; cert3 is the 2016 certificate of the anchor's key
        assert_eq!(path.used, vec![0, 1, 2], "{name}");

        let kd = key_description(&chain[0]).unwrap();
        assert_eq!(kd.attestation_version, 3, "{name}");
        assert_eq!(kd.attestation_challenge, b"abc", "{name}");
        assert_eq!(
            kd.attestation_security_level,
            KeySecurityLevel::TrustedEnvironment
        );
        assert_eq!(
            kd.keymint_security_level,
            KeySecurityLevel::TrustedEnvironment
        );
        assert_eq!(kd.hardware_enforced.origin, Some(ORIGIN_GENERATED));
        assert!(kd.hardware_enforced.root_of_trust.is_some());
        assert!(kd.hardware_enforced.attestation_id_serial.is_none());
        let app = kd.software_enforced.attestation_application_id.unwrap();
        assert!(!app.packages.is_empty());
        assert_eq!(app.signature_digests.len(), 1);

        // no sig over any key authorization: refused at the signature, past the chain
        let att = att_obj(alg, &chain);
        let r = check_at(&att, &roots, "anything", "abc", vector_time(), None);
        assert!(matches!(r, Err(AttestError::Signature(_))), "{name}: {r:?}");
        // the leaf's key decides which alg fits
        let wrong = if alg == COSE_ES256 {
            COSE_RS256
        } else {
            COSE_ES256
        };
        let r = check_at(
            &att_obj(wrong, &chain),
            &roots,
            "x",
            "abc",
            vector_time(),
            None,
        );
        assert!(
            matches!(&r, Err(AttestError::Signature(m)) if m.contains("does not fit")),
            "{name}: {r:?}"
        );

        // revocation of the first intermediate
        let serial = revocation::serial_key(
            x509_parser::parse_x509_certificate(&chain[1])
                .unwrap()
                .1
                .raw_serial(),
        );
        let l = list(
            &format!(
                r#"{{"entries": {{"{serial}": {{"status": "REVOKED", "reason": "KEY_COMPROMISE"}}}}}}"#
            ),
            vector_time(),
        );
        let r = check_at(&att, &roots, "x", "abc", vector_time(), Some(&l));
        assert!(
            matches!(&r, Err(AttestError::Revoked(m)) if m.contains(&serial)),
            "{name}: {r:?}"
        );
    }
}

#[test]
fn google_strongbox_chains_are_untrusted() {
    let roots = TrustRoots::builtin(Format::AndroidKey);
    for (name, alg) in [
        ("algorithm_EC_SecurityLevel_StrongBox", COSE_ES256),
        ("algorithm_RSA_SecurityLevel_StrongBox", COSE_RS256),
    ] {
        let Some(chain) = vector_chain(name) else {
            return;
        };
        let r = check_at(
            &att_obj(alg, &chain),
            &roots,
            "x",
            "abc",
            vector_time(),
            None,
        );
        assert!(
            matches!(&r, Err(AttestError::Untrusted(_))),
            "{name}: {r:?}"
        );
        // the KeyDescription itself parses (the EC leaf's NULL AlgorithmIdentifier parameter
        // does not stop x509-parser)
        let kd = key_description(&chain[0]).unwrap();
        assert_eq!(
            kd.attestation_security_level,
            KeySecurityLevel::StrongBox,
            "{name}"
        );
        assert_eq!(kd.attestation_challenge, b"abc");
        // trusting the pre-production root: the RSA chain is then sound; the EC leaf is not,
        // whatever its NULL parameter: it names cert2 as issuer but is signed by cert1's key
        let mut own = TrustRoots::default();
        own.add_der(&chain[3]).unwrap();
        let r = verify_path(&chain, &own, vector_time(), &ChainCache::default());
        let certs = parse_chain(&chain).unwrap();
        if name.starts_with("algorithm_EC") {
            assert!(
                matches!(&r, Err(AttestError::Untrusted(m)) if m.contains("the leaf")),
                "{name}: {r:?}"
            );
            assert_eq!(certs[0].issuer(), certs[2].subject());
            assert!(
                certs[0]
                    .verify_signature(Some(certs[1].public_key()))
                    .is_ok()
            );
            assert!(
                certs[0]
                    .verify_signature(Some(certs[2].public_key()))
                    .is_err()
            );
        } else {
            assert!(r.is_ok(), "{name}: {r:?}");
        }
    }
}

#[test]
fn google_status_fixture_parses() {
    let Some(dir) = crate::vectors_dir() else {
        return;
    };
    let bytes =
        std::fs::read(dir.join("attest/android/google-android-key-attestation/status.json"))
            .unwrap();
    let l = RevocationList::from_json(&bytes, vector_time(), time::Duration::hours(24)).unwrap();
    assert_eq!(l.len(), 5);
    let e = l.status("CC66E9A93713B6E643B26C15879786F7").unwrap();
    assert_eq!(e.status, RevocationStatus::Suspended);
    assert_eq!(e.reason.as_deref(), Some("KEY_COMPROMISE"));
    assert_eq!(e.comment.as_deref(), Some("Entry for testing only"));
    assert_eq!(
        l.status("6681152659205225093").unwrap().status,
        RevocationStatus::Revoked
    );
    assert!(l.status("01").is_none());
    assert!(!l.is_stale(vector_time()));
    assert!(l.is_stale(vector_time() + time::Duration::days(2)));
}

/// Pixel 8a, January 2025 (WebAuthn): inside the validities of its chain.
const WEBAUTHN_TIME: i64 = 1_738_368_000; // 2025-02-01

#[test]
fn a_real_webauthn_android_key_statement_chains_to_google() {
    let Some(dir) = crate::vectors_dir() else {
        return;
    };
    let bytes = std::fs::read(dir.join(
        "attest/webauthn_real/android_key__verify_attestation_android_key_hardware_authority.attObj.cbor",
    ))
    .unwrap();
    let obj = AttestationObject::decode(&bytes).unwrap();
    assert_eq!(obj.fmt, "android-key");
    assert_eq!(obj.int("alg").unwrap(), COSE_ES256);
    let chain = obj.x5c().unwrap();
    let at = OffsetDateTime::from_unix_timestamp(WEBAUTHN_TIME).unwrap();
    let roots = TrustRoots::builtin(Format::AndroidKey);
    let path = verify_path(&chain, &roots, at, &ChainCache::default()).unwrap();
    assert!(path.used.len() >= 2);
    let kd = key_description(&chain[0]).unwrap();
    assert!(kd.attestation_version >= 100, "{}", kd.attestation_version);
    // the sig is over WebAuthn data, not a key authorization
    let r = check_at(&bytes, &roots, "x", KEY_AUTH, at, None);
    assert!(matches!(r, Err(AttestError::Signature(_))), "{r:?}");
}
