use std::sync::LazyLock;

use ciborium::value::Value;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519};
use time::Duration;
use time::macros::datetime;
use yasna::models::ObjectIdentifier;

use super::*;
use crate::attestation::testing::apple::{
    AppleStatement, AppleTestAuthority, att_obj, freshness_for,
};
use crate::attestation::{DeviceIdentifier, Verifier};

const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
const SERIAL: &str = "C02XK0AAJGH5";

/// One authority for the whole file: making P-384 keys is the slow part.
static AUTHORITY: LazyLock<AppleTestAuthority> = LazyLock::new(AppleTestAuthority::new);

fn now() -> OffsetDateTime {
    datetime!(2026-03-01 12:00 UTC)
}

fn spki(kp: &KeyPair) -> Vec<u8> {
    rcgen::PublicKeyData::subject_public_key_info(kp)
}

fn p256() -> Vec<u8> {
    spki(&KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap())
}

fn statement() -> AppleStatement {
    AppleStatement::new(&p256(), SERIAL, TOKEN, now())
}

fn pid(v: &str) -> DeviceIdentifier {
    DeviceIdentifier::parse(IdentifierKind::PermanentIdentifier, v).unwrap()
}

fn check_with(
    att_obj: &[u8],
    id: &DeviceIdentifier,
    roots: &TrustRoots,
    cache: &ChainCache,
    at: OffsetDateTime,
) -> Result<Evidence, AttestError> {
    let obj = AttestationObject::decode(att_obj)?;
    verify(&obj, &challenge(id, at), roots, cache)
}

/// Verifies `att_obj` for the order identifier `id` against the test authority at `now()`.
fn check(att_obj: &[u8], id: &DeviceIdentifier) -> Result<Evidence, AttestError> {
    check_with(
        att_obj,
        id,
        &AUTHORITY.roots(),
        &ChainCache::default(),
        now(),
    )
}

fn statement_check(s: &AppleStatement, id: &str) -> Result<Evidence, AttestError> {
    check(&AUTHORITY.attest(s), &pid(id))
}

#[test]
fn a_genuine_statement_gives_its_evidence() {
    let s = statement();
    let ev = statement_check(&s, SERIAL).unwrap();
    assert_eq!(ev.format, Format::Apple);
    assert_eq!(ev.vendor, "Apple");
    assert_eq!(ev.identifier, SERIAL);
    assert_eq!(ev.device_ids["serial"], SERIAL);
    assert_eq!(ev.device_ids["udid"], *s.udid.as_ref().unwrap());
    assert_eq!(ev.device_ids["software-update-device-id"], "J514sAP");
    assert_eq!(ev.device_ids.len(), 3);
    assert_eq!(ev.os_version.as_deref(), Some("15.5"));
    assert_eq!(ev.patch_level, None);
    assert_eq!(ev.firmware["sep-os"], "15.5");
    assert_eq!(ev.firmware["llb"], "15.5");
    assert_eq!(ev.security_level, SecurityLevel::SecureElement);
    assert_eq!(
        ev.boot,
        Some(BootState {
            verified_boot: VerifiedBoot::Verified,
            device_locked: None
        })
    );
    assert_eq!(ev.properties["sip-enabled"], serde_json::json!(true));
    assert_eq!(
        ev.properties["third-party-kexts-allowed"],
        serde_json::json!(false)
    );
    assert_eq!(
        ev.properties["subject-key-hash-matches"],
        serde_json::json!(true)
    );
    assert_eq!(ev.properties.len(), 3);
    assert_eq!(ev.public_key, s.public_key_der);
    assert_eq!(ev.verified_at, now());
    assert_eq!(ev.not_before, s.not_before);
    assert_eq!(ev.not_after, s.not_after);
    // leaf, Sub CA, anchor
    let root = AUTHORITY.roots();
    let anchor = root.certificates().next().unwrap();
    assert_eq!(ev.chain_sha256.len(), 3);
    assert_eq!(ev.chain_sha256[2], sha256_hex(anchor));
    // the evidence survives a JSON round trip (it is stored with the device)
    let json = serde_json::to_string(&ev).unwrap();
    assert_eq!(serde_json::from_str::<Evidence>(&json).unwrap(), ev);
}

#[test]
fn the_chain_digests_are_of_the_presented_certificates() {
    let s = statement();
    let obj = AUTHORITY.attest(&s);
    let decoded = AttestationObject::decode(&obj).unwrap();
    let x5c = decoded.x5c().unwrap();
    let ev = check(&obj, &pid(SERIAL)).unwrap();
    assert_eq!(ev.chain_sha256[0], sha256_hex(&x5c[0]));
    assert_eq!(ev.chain_sha256[1], sha256_hex(&x5c[1]));
}

#[test]
fn p384_keys_are_accepted() {
    let key = spki(&KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap());
    let s = AppleStatement::new(&key, SERIAL, TOKEN, now());
    assert_eq!(statement_check(&s, SERIAL).unwrap().public_key, key);
}

#[test]
fn a_freshness_code_for_another_token_is_refused() {
    let mut s = statement();
    s.freshness = Some(freshness_for("another-token"));
    assert!(matches!(
        statement_check(&s, SERIAL),
        Err(AttestError::Freshness(_))
    ));
    // and one of the wrong length
    s.freshness = Some(freshness_for(TOKEN)[..31].to_vec());
    assert!(matches!(
        statement_check(&s, SERIAL),
        Err(AttestError::Freshness(_))
    ));
}

#[test]
fn a_missing_freshness_code_is_refused() {
    let mut s = statement();
    s.freshness = None;
    assert!(matches!(
        statement_check(&s, SERIAL),
        Err(AttestError::Freshness(m)) if m.contains("no freshness")
    ));
}

#[test]
fn another_authority_is_not_trusted() {
    let other = AppleTestAuthority::new();
    let r = check(&other.attest(&statement()), &pid(SERIAL));
    assert!(matches!(r, Err(AttestError::Untrusted(_))), "{r:?}");
}

#[test]
fn leaves_outside_their_validity_are_refused() {
    let mut s = statement();
    s.not_before = now() - Duration::days(100);
    s.not_after = now() - Duration::days(9);
    assert!(matches!(
        statement_check(&s, SERIAL),
        Err(AttestError::Expired(m)) if m.contains("expired")
    ));
    s.not_before = now() + Duration::hours(1);
    s.not_after = now() + Duration::days(90);
    assert!(matches!(
        statement_check(&s, SERIAL),
        Err(AttestError::Expired(m)) if m.contains("not valid before")
    ));
}

#[test]
fn identifiers() {
    let s = statement();
    let udid = s.udid.clone().unwrap();
    let obj = AUTHORITY.attest(&s);
    let hw = |v: &str| DeviceIdentifier::parse(IdentifierKind::HardwareModule, v).unwrap();

    // the UDID as a permanent identifier
    assert_eq!(check(&obj, &pid(&udid)).unwrap().identifier, udid);
    // the UDID as a hardware module of Apple's UDID type
    let ev = check(&obj, &hw(&format!("{udid}/{UDID_HW_TYPE}"))).unwrap();
    assert_eq!(ev.identifier, format!("{udid}/1.2.840.113635.100.8.9.2"));

    let refused = [
        // another device: neither the serial nor the UDID
        pid("C02ZZ0ZZZZZZ"),
        // octet for octet: no case folding, no trimming
        pid(&SERIAL.to_lowercase()),
        pid(&format!("{SERIAL} ")),
        // an assigner nothing in the statement vouches for
        pid(&format!("{SERIAL}/1.2.840.113635.100.8.9.1")),
        // a hardware module names the UDID, not the serial
        hw(&format!("{SERIAL}/{UDID_HW_TYPE}")),
        // another hardware type
        hw(&format!("{udid}/1.2.3.4")),
    ];
    for id in refused {
        let r = check(&obj, &id);
        assert!(
            matches!(r, Err(AttestError::Identifier(_))),
            "{id:?}: {r:?}"
        );
    }
}

#[test]
fn a_user_enrollment_leaf_proves_no_identifier() {
    let mut s = statement();
    s.serial = None;
    s.udid = None;
    let r = statement_check(&s, SERIAL);
    assert!(
        matches!(&r, Err(AttestError::Identifier(m)) if m.contains("user enrollment")),
        "{r:?}"
    );
}

#[test]
fn a_leaf_with_only_a_udid_matches_it() {
    let mut s = statement();
    s.serial = None;
    let udid = s.udid.clone().unwrap();
    let ev = statement_check(&s, &udid).unwrap();
    assert!(!ev.device_ids.contains_key("serial"));
    assert!(matches!(
        statement_check(&s, SERIAL),
        Err(AttestError::Identifier(_))
    ));
}

/// `SEQUENCE { SEQUENCE { oid, params }, BIT STRING key }`.
fn raw_spki(alg: &[u64], params: Option<&[u64]>, key: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&ObjectIdentifier::from_slice(alg));
                match params {
                    Some(p) => w.next().write_oid(&ObjectIdentifier::from_slice(p)),
                    None => w.next().write_null(),
                }
            });
            w.next().write_bitvec_bytes(key, key.len() * 8);
        });
    })
}

#[test]
fn keys_the_secure_enclave_cannot_hold_are_refused() {
    let rsa_key = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            let mut n = vec![0xc5u8; 256];
            n[255] |= 1;
            w.next().write_bigint_bytes(&n, true);
            w.next().write_u32(65537);
        });
    });
    let rsa = raw_spki(&[1, 2, 840, 113549, 1, 1, 1], None, &rsa_key);
    let ed25519 = spki(&KeyPair::generate_for(&PKCS_ED25519).unwrap());
    for (name, key) in [("rsa", rsa), ("ed25519", ed25519)] {
        let s = AppleStatement::new(&key, SERIAL, TOKEN, now());
        let r = statement_check(&s, SERIAL);
        assert!(matches!(r, Err(AttestError::Key(_))), "{name}: {r:?}");
    }
}

/// Keys rcgen cannot certify, checked on the SubjectPublicKeyInfo alone.
#[test]
fn the_key_check_wants_an_uncompressed_p256_or_p384_point() {
    const EC: &[u64] = &[1, 2, 840, 10045, 2, 1];
    const P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
    let point = |len: usize, first: u8| {
        let mut p = vec![first];
        p.resize(len, 7);
        p
    };
    let check = |der: &[u8]| {
        let (_, spki) = SubjectPublicKeyInfo::from_der(der).unwrap();
        check_key(&spki)
    };
    assert!(check(&raw_spki(EC, Some(P256), &point(65, 4))).is_ok());
    for (name, der) in [
        (
            "p-521",
            raw_spki(EC, Some(&[1, 3, 132, 0, 35]), &point(133, 4)),
        ),
        (
            "secp256k1",
            raw_spki(EC, Some(&[1, 3, 132, 0, 10]), &point(65, 4)),
        ),
        ("no curve", raw_spki(EC, None, &point(65, 4))),
        ("compressed", raw_spki(EC, Some(P256), &point(33, 2))),
        ("short", raw_spki(EC, Some(P256), &point(64, 4))),
        ("hybrid", raw_spki(EC, Some(P256), &point(65, 6))),
    ] {
        assert!(matches!(check(&der), Err(AttestError::Key(_))), "{name}");
    }
}

#[test]
fn statements_that_are_not_cbor_or_lack_x5c_are_malformed() {
    let verifier = verifier();
    let id = pid(SERIAL);
    let ch = challenge(&id, now());
    let good = AUTHORITY.attest(&statement());
    for n in [0, 1, good.len() / 2, good.len() - 1] {
        let r = verifier.verify(&good[..n], &ch, None);
        assert!(
            matches!(r, Err(AttestError::Malformed(_))),
            "prefix {n}: {r:?}"
        );
    }
    let stmt = |x5c: Option<Value>| {
        let mut members = Vec::new();
        if let Some(v) = x5c {
            members.push((Value::Text("x5c".into()), v));
        }
        let v = Value::Map(vec![
            (Value::Text("fmt".into()), Value::Text("apple".into())),
            (Value::Text("attStmt".into()), Value::Map(members)),
        ]);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&v, &mut out).unwrap();
        out
    };
    for (name, x5c) in [
        ("missing", None),
        ("empty", Some(Value::Array(vec![]))),
        ("not an array", Some(Value::Bytes(vec![0x30, 0x00]))),
        (
            "text entries",
            Some(Value::Array(vec![Value::Text("MIIB".into())])),
        ),
        (
            "an empty entry",
            Some(Value::Array(vec![Value::Bytes(vec![])])),
        ),
        (
            "garbage entry",
            Some(Value::Array(vec![Value::Bytes(vec![0x30, 0x03, 1, 2])])),
        ),
    ] {
        let r = verifier.verify(&stmt(x5c), &ch, None);
        assert!(matches!(r, Err(AttestError::Malformed(_))), "{name}: {r:?}");
    }
}

#[test]
fn the_format_name_is_case_sensitive() {
    let s = statement();
    let obj = att_obj("Apple", &[AUTHORITY.leaf_der(&s)]);
    let id = pid(SERIAL);
    let r = verifier().verify(&obj, &challenge(&id, now()), None);
    assert!(
        matches!(r, Err(AttestError::Format(ref f)) if f == "Apple"),
        "{r:?}"
    );
}

#[test]
fn a_leaf_without_its_sub_ca_is_untrusted() {
    let obj = att_obj("apple", &[AUTHORITY.leaf_der(&statement())]);
    let r = check(&obj, &pid(SERIAL));
    assert!(matches!(r, Err(AttestError::Untrusted(_))), "{r:?}");
}

#[test]
fn a_leaf_that_is_a_ca_is_refused() {
    let leaf = AUTHORITY.leaf_der_with(&statement(), |p| {
        p.custom_extensions
            .retain(|e| !e.oid_components().eq([2u64, 5, 29, 19]));
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    });
    let sub_ca = sub_ca_der();
    let r = check(&att_obj("apple", &[leaf, sub_ca]), &pid(SERIAL));
    assert!(
        matches!(r, Err(AttestError::Untrusted(ref m)) if m.contains("is a ca")),
        "{r:?}"
    );
}

#[test]
fn facts_that_do_not_decode_are_malformed() {
    let s = statement();
    let cases: [(&str, &[u64], Vec<u8>); 4] = [
        ("serial not utf-8", OID_SERIAL_NUMBER, vec![0xff, 0xfe]),
        ("os version not utf-8", OID_OS_VERSION, vec![0xc3]),
        ("sip not an integer", OID_SIP_STATUS, b"0".to_vec()),
        (
            "kexts not minimal der",
            OID_THIRD_PARTY_KEXTS,
            vec![0x02, 0x02, 0x00, 0x00],
        ),
    ];
    for (name, oid, value) in cases {
        let leaf = AUTHORITY.leaf_der_with(&s, |p| {
            p.custom_extensions
                .retain(|e| !e.oid_components().eq(oid.iter().copied()));
            p.custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(oid, value.clone()));
        });
        assert!(
            matches!(leaf_facts(&leaf), Err(AttestError::Malformed(_))),
            "{name}"
        );
        let r = check(&att_obj("apple", &[leaf, sub_ca_der()]), &pid(SERIAL));
        assert!(matches!(r, Err(AttestError::Malformed(_))), "{name}: {r:?}");
    }
    // an extension twice
    let leaf = AUTHORITY.leaf_der_with(&s, |p| {
        p.custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                OID_UDID,
                b"X".to_vec(),
            ));
    });
    assert!(matches!(
        leaf_facts(&leaf),
        Err(AttestError::Malformed(m)) if m.contains("twice")
    ));
    // not a certificate, or bytes after one
    assert!(matches!(
        leaf_facts(b"\x30\x03\x01\x02\x03"),
        Err(AttestError::Malformed(_))
    ));
    let mut trailing = AUTHORITY.leaf_der(&s);
    trailing.push(0);
    assert!(matches!(
        leaf_facts(&trailing),
        Err(AttestError::Malformed(_))
    ));
}

#[test]
fn secure_boot_modes() {
    for (mode, boot) in [
        ("Full Security", Some(VerifiedBoot::Verified)),
        ("Reduced Security", Some(VerifiedBoot::SelfSigned)),
        ("Permissive Security", Some(VerifiedBoot::Unverified)),
        ("Future Security", None),
    ] {
        let mut s = statement();
        s.secure_boot = Some(mode.to_owned());
        s.sip_enabled = Some(false);
        s.kexts_allowed = Some(true);
        let ev = statement_check(&s, SERIAL).unwrap();
        assert_eq!(ev.boot.map(|b| b.verified_boot), boot, "{mode}");
        assert_eq!(
            ev.properties.get("secure-boot"),
            boot.is_none().then(|| serde_json::json!(mode)).as_ref(),
            "{mode}"
        );
        assert_eq!(ev.properties["sip-enabled"], serde_json::json!(false));
        assert_eq!(
            ev.properties["third-party-kexts-allowed"],
            serde_json::json!(true)
        );
    }
}

#[test]
fn an_iphone_leaf_without_mac_facts() {
    let mut s = statement();
    s.sip_enabled = None;
    s.secure_boot = None;
    s.kexts_allowed = None;
    s.llb_version = None;
    s.software_update_device_id = None;
    let ev = statement_check(&s, SERIAL).unwrap();
    assert_eq!(ev.boot, None);
    assert_eq!(
        ev.properties.keys().collect::<Vec<_>>(),
        ["subject-key-hash-matches"]
    );
    assert_eq!(ev.firmware.keys().collect::<Vec<_>>(), ["sep-os"]);
    assert_eq!(ev.device_ids.len(), 2);
}

#[test]
fn repeat_enrollments_verify_the_sub_ca_once() {
    let cache = ChainCache::default();
    let roots = AUTHORITY.roots();
    for serial in ["C02AAAAAAAA1", "C02AAAAAAAA2"] {
        let s = AppleStatement::new(&p256(), serial, TOKEN, now());
        check_with(&AUTHORITY.attest(&s), &pid(serial), &roots, &cache, now()).unwrap();
    }
    // leaf + Sub CA, then the second leaf alone
    assert_eq!(cache.verifications(), 3);
    assert_eq!(cache.hits(), 1);
}

#[test]
fn through_the_verifier_with_the_test_root_as_provisioner_roots() {
    let mut verifier = Verifier::new(&[Format::Apple]);
    verifier.set_roots(
        Format::Apple,
        TrustRoots::from_pem(&AUTHORITY.root_pem()).unwrap(),
    );
    let id = pid(SERIAL);
    let obj = AUTHORITY.attest(&statement());
    let ev = verifier.verify(&obj, &challenge(&id, now()), None).unwrap();
    assert_eq!(ev.identifier, SERIAL);
    // the built-in Apple root does not trust the test authority
    let r = Verifier::new(&[Format::Apple]).verify(&obj, &challenge(&id, now()), None);
    assert!(matches!(r, Err(AttestError::Untrusted(_))), "{r:?}");
}

#[test]
fn leaf_facts_of_a_generated_leaf() {
    let s = statement();
    let facts = leaf_facts(&AUTHORITY.leaf_der(&s)).unwrap();
    assert_eq!(facts.serial.as_deref(), Some(SERIAL));
    assert_eq!(facts.udid, s.udid);
    assert_eq!(facts.freshness, s.freshness);
    assert!(facts.freshness_is(&freshness_for(TOKEN)));
    assert!(!facts.freshness_is(&freshness_for("x")));
    assert!(!facts.freshness_is(&[]));
    assert!(facts.subject_key_hash_matches);
    assert_eq!(facts.public_key, s.public_key_der);

    // a common name that is not the key's hash is reported, not refused
    let leaf = AUTHORITY.leaf_der_with(&s, |p| {
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "another key");
    });
    let obj = att_obj("apple", &[leaf, sub_ca_der()]);
    let ev = check(&obj, &pid(SERIAL)).unwrap();
    assert_eq!(
        ev.properties["subject-key-hash-matches"],
        serde_json::json!(false)
    );
}

/// The generated chain as openssl sees it: it verifies, and the leaf has Apple's shape.
#[test]
fn openssl_accepts_the_generated_chain() {
    let s = statement();
    let leaf = AUTHORITY.leaf_der(&s);
    let Some(text) = crate::run_peer(
        "openssl",
        &["x509", "-inform", "DER", "-noout", "-text"],
        &leaf,
    ) else {
        crate::peer_missing("skipped: openssl is not installed");
        return;
    };
    let text = String::from_utf8_lossy(&text.stdout);
    for want in [
        "Basic Constraints: critical",
        "CA:FALSE",
        "Key Usage: critical",
        "Digital Signature, Non Repudiation, Key Encipherment, Data Encipherment",
        "OU = AAA Certification, O = Apple Inc., ST = California",
        "1.2.840.113635.100.8.11.1",
        "Full Security",
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
    assert!(!text.contains("Subject Key Identifier"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.pem");
    let sub = dir.path().join("sub.pem");
    std::fs::write(&root, AUTHORITY.root_pem()).unwrap();
    std::fs::write(
        &sub,
        pem::encode(&pem::Pem::new("CERTIFICATE", sub_ca_der())),
    )
    .unwrap();
    let leaf_pem = pem::encode(&pem::Pem::new("CERTIFICATE", leaf));
    let out = crate::run_peer(
        "openssl",
        &[
            "verify",
            "-attime",
            &now().unix_timestamp().to_string(),
            "-CAfile",
            root.to_str().unwrap(),
            "-untrusted",
            sub.to_str().unwrap(),
        ],
        leaf_pem.as_bytes(),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// --- real vectors ---

fn real_leaf() -> Option<Vec<u8>> {
    let dir = crate::vectors_dir()?;
    Some(std::fs::read(dir.join("attest/apple/mda_leaf_mac_nanoca.der")).unwrap())
}

#[test]
fn the_real_mac_leaf_has_the_documented_facts() {
    let Some(der) = real_leaf() else { return };
    let f = leaf_facts(&der).unwrap();
    assert_eq!(f.serial.as_deref(), Some("TMWFWWWP67"));
    assert_eq!(f.udid.as_deref(), Some("00006030-000651690A84001C"));
    assert_eq!(f.software_update_device_id.as_deref(), Some("J514sAP"));
    assert_eq!(f.os_version.as_deref(), Some("15.5"));
    assert_eq!(f.sep_os_version.as_deref(), Some("15.5"));
    assert_eq!(f.llb_version.as_deref(), Some("15.5"));
    assert_eq!(f.sip_enabled, Some(true));
    assert_eq!(f.secure_boot.as_deref(), Some("Full Security"));
    assert_eq!(f.verified_boot(), Some(VerifiedBoot::Verified));
    assert_eq!(f.third_party_kexts_allowed, Some(false));
    assert_eq!(
        crate::attestation::hex_lower(f.freshness.as_deref().unwrap()),
        "9ff219c2831313c8190b63e9dd8f80aa0a4a9737a58daa931da8abde2f2d5d62"
    );
    assert_eq!(
        f.common_name.as_deref(),
        Some("f3999096be4f8b05a3441129b42aa2198bba5c398116509166cbf2ca15b0b1aa")
    );
    assert!(f.subject_key_hash_matches);
    assert_eq!(f.not_before, datetime!(2025-07-13 09:38:07 UTC));
    assert_eq!(f.not_after, datetime!(2025-10-12 09:38:07 UTC));
    // a P-384 key, which the key check accepts
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    check_key(cert.public_key()).unwrap();
}

#[test]
fn the_real_mac_leaf_alone_does_not_chain_to_apple() {
    let Some(der) = real_leaf() else { return };
    let obj = att_obj("apple", &[der]);
    let roots = TrustRoots::builtin(Format::Apple);
    let id = pid("TMWFWWWP67");
    // in its validity: Sub CA 1 is not public, so there is no path to the root
    let r = check_with(
        &obj,
        &id,
        &roots,
        &ChainCache::default(),
        datetime!(2025-08-01 0:00 UTC),
    );
    assert!(matches!(r, Err(AttestError::Untrusted(_))), "{r:?}");
    // after 2025-10-12 the leaf's dates are checked first
    let r = check_with(
        &obj,
        &id,
        &roots,
        &ChainCache::default(),
        datetime!(2026-01-01 0:00 UTC),
    );
    assert!(
        matches!(&r, Err(AttestError::Expired(m)) if m.contains("leaf expired")),
        "{r:?}"
    );
}

#[test]
fn a_real_webauthn_apple_statement_chains_to_another_root() {
    let Some(dir) = crate::vectors_dir() else {
        return;
    };
    let obj = std::fs::read(
        dir.join("attest/webauthn_real/apple__verify_attestation_apple_passkey.attObj.cbor"),
    )
    .unwrap();
    let id = pid("TMWFWWWP67");
    // inside the leaf's validity (2021-08-31 .. 2021-09-03), so only the root is wrong
    let ch = challenge(&id, datetime!(2021-09-01 12:00 UTC));
    let r = Verifier::new(&[Format::Apple]).verify(&obj, &ch, None);
    assert!(matches!(r, Err(AttestError::Untrusted(_))), "{r:?}");
}

fn verifier() -> Verifier {
    let mut v = Verifier::new(&[Format::Apple]);
    v.set_roots(Format::Apple, AUTHORITY.roots());
    v
}

fn challenge(id: &DeviceIdentifier, at: OffsetDateTime) -> Challenge<'_> {
    Challenge {
        token: TOKEN,
        key_authorization: "unused.by-apple",
        identifier: id,
        now: at,
    }
}

fn sub_ca_der() -> Vec<u8> {
    let obj = AttestationObject::decode(&AUTHORITY.attest(&statement())).unwrap();
    obj.x5c().unwrap().remove(1)
}

/// The chain of an attestation object as a `DevicePropertiesAttestation` array.
fn device_properties(s: &AppleStatement, authority: &AppleTestAuthority) -> Vec<Vec<u8>> {
    AttestationObject::decode(&authority.attest(s))
        .unwrap()
        .x5c()
        .unwrap()
}

#[test]
fn device_properties_verify_without_a_freshness_code() {
    let mut s = statement();
    s.freshness = None;
    let mut v = Verifier::new(&[Format::Apple]);
    v.set_roots(Format::Apple, AUTHORITY.roots());
    let e = v
        .verify_apple_device_properties(&device_properties(&s, &AUTHORITY), now())
        .unwrap();
    assert_eq!(e.identifier, SERIAL);
    assert_eq!(e.device_ids.get("serial").map(String::as_str), Some(SERIAL));
    assert_eq!(e.os_version.as_deref(), Some("15.5"));
    assert_eq!(e.verified_at, now());
    assert_eq!(e.not_before, s.not_before);
    assert_eq!(e.chain_sha256.len(), 3);
}

#[test]
fn device_properties_from_another_authority_are_untrusted() {
    let other = AppleTestAuthority::new();
    let mut v = Verifier::new(&[Format::Apple]);
    v.set_roots(Format::Apple, AUTHORITY.roots());
    let err = v
        .verify_apple_device_properties(&device_properties(&statement(), &other), now())
        .unwrap_err();
    assert!(matches!(err, AttestError::Untrusted(_)), "{err}");
}

#[test]
fn device_properties_need_a_device_identifier_and_a_chain() {
    let mut s = statement();
    s.serial = None;
    s.udid = None;
    let mut v = Verifier::new(&[Format::Apple]);
    v.set_roots(Format::Apple, AUTHORITY.roots());
    let err = v
        .verify_apple_device_properties(&device_properties(&s, &AUTHORITY), now())
        .unwrap_err();
    assert!(matches!(err, AttestError::Identifier(_)), "{err}");
    let err = v.verify_apple_device_properties(&[], now()).unwrap_err();
    assert_eq!(
        err,
        AttestError::Malformed("the attestation chain is empty".into())
    );
    // expired at the verification time
    let err = v
        .verify_apple_device_properties(
            &device_properties(&statement(), &AUTHORITY),
            now() + Duration::days(365),
        )
        .unwrap_err();
    assert!(matches!(err, AttestError::Expired(_)), "{err}");
    // not enabled
    let v = Verifier::new(&[Format::Tpm]);
    let err = v
        .verify_apple_device_properties(&device_properties(&statement(), &AUTHORITY), now())
        .unwrap_err();
    assert_eq!(err, AttestError::Format("apple".into()));
}
