use std::sync::OnceLock;

use base64::Engine as _;
use ciborium::value::Value;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PublicKeyData as _};
use time::OffsetDateTime;
use time::macros::datetime;
use x509_parser::prelude::FromDer as _;

use super::*;
use crate::attestation::Verifier;
use crate::attestation::testing::tpm::{
    TEST_MANUFACTURER, TEST_MODEL, TEST_VERSION, TpmStatement, TpmTestAuthority,
};

const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
const KEY_AUTH: &str =
    "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";

fn now() -> OffsetDateTime {
    datetime!(2026-06-01 12:00 UTC)
}

fn authority() -> &'static TpmTestAuthority {
    static A: OnceLock<TpmTestAuthority> = OnceLock::new();
    A.get_or_init(TpmTestAuthority::new)
}

fn device_key() -> &'static Vec<u8> {
    static K: OnceLock<Vec<u8>> = OnceLock::new();
    K.get_or_init(|| {
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .subject_public_key_info()
    })
}

fn permanent(v: &str) -> DeviceIdentifier {
    DeviceIdentifier::parse(IdentifierKind::PermanentIdentifier, v).unwrap()
}

fn order_id() -> DeviceIdentifier {
    permanent("PF3X9K2M/1.3.6.1.4.1.311.21.8")
}

fn statement() -> TpmStatement {
    TpmStatement::new(device_key(), order_id(), KEY_AUTH, now())
}

fn check_with(
    att: &[u8],
    roots: &TrustRoots,
    id: &DeviceIdentifier,
    now: OffsetDateTime,
    key_authorization: &str,
) -> Result<Evidence, AttestError> {
    let obj = AttestationObject::decode(att)?;
    let challenge = Challenge {
        token: TOKEN,
        key_authorization,
        identifier: id,
        now,
    };
    verify(&obj, &challenge, roots, &ChainCache::default())
}

fn check(att: &[u8]) -> Result<Evidence, AttestError> {
    check_with(att, &authority().roots(), &order_id(), now(), KEY_AUTH)
}

fn check_statement(s: &TpmStatement) -> Result<Evidence, AttestError> {
    check(&authority().attest(s))
}

/// The attestation object with statement member `name` replaced (or removed when `None`).
fn with_member(att: &[u8], name: &str, v: Option<Value>) -> Vec<u8> {
    let obj = AttestationObject::decode(att).unwrap();
    let mut stmt: Vec<(Value, Value)> = obj
        .att_stmt
        .into_iter()
        .filter(|(k, _)| !matches!(k, Value::Text(t) if t == name))
        .collect();
    if let Some(v) = v {
        stmt.push((Value::Text(name.into()), v));
    }
    let mut out = Vec::new();
    let value = Value::Map(vec![
        (Value::Text("fmt".into()), Value::Text(obj.fmt)),
        (Value::Text("attStmt".into()), Value::Map(stmt)),
    ]);
    ciborium::ser::into_writer(&value, &mut out).unwrap();
    out
}

fn member_bytes(att: &[u8], name: &str) -> Vec<u8> {
    AttestationObject::decode(att)
        .unwrap()
        .bytes(name)
        .unwrap()
        .to_vec()
}

// ---- the synthetic authority: every path ------------------------------------------------

#[test]
fn genuine_statement_verifies_with_its_evidence() {
    let att = authority().attest(&statement());
    let ev = check(&att).unwrap();
    assert_eq!(ev.format, Format::Tpm);
    assert_eq!(ev.vendor, "FIDO Alliance test vendor");
    assert_eq!(ev.identifier, "PF3X9K2M/1.3.6.1.4.1.311.21.8");
    assert_eq!(ev.device_ids["tpm-manufacturer"], TEST_MANUFACTURER);
    assert_eq!(ev.device_ids["tpm-model"], TEST_MODEL);
    assert_eq!(
        ev.device_ids["permanent-identifier"],
        "PF3X9K2M/1.3.6.1.4.1.311.21.8"
    );
    assert_eq!(ev.firmware["tpm-firmware"], "7.2.0.1");
    assert_eq!(ev.firmware["tpm-version"], TEST_VERSION);
    assert_eq!(ev.security_level, SecurityLevel::Tpm);
    assert_eq!(ev.boot, None);
    assert_eq!(ev.properties["clock"], serde_json::json!(86_400_000u64));
    assert_eq!(ev.properties["reset-count"], serde_json::json!(3));
    assert_eq!(ev.properties["restart-count"], serde_json::json!(1));
    assert_eq!(ev.properties["safe"], serde_json::json!(true));
    assert_eq!(&ev.public_key, device_key());
    assert_eq!(ev.verified_at, now());
    assert_eq!(ev.not_before, now() - time::Duration::days(1));
    assert_eq!(ev.not_after, now() + time::Duration::days(365));
    // AK certificate, intermediate, root
    let x5c = AttestationObject::decode(&att).unwrap().x5c().unwrap();
    assert_eq!(
        ev.chain_sha256,
        vec![
            sha256_hex(&x5c[0]),
            sha256_hex(&x5c[1]),
            sha256_hex(authority().root_der())
        ]
    );
}

#[test]
fn verifier_accepts_the_test_root_and_the_builtin_root_refuses_it() {
    let att = authority().attest(&statement());
    let id = order_id();
    let challenge = Challenge {
        token: TOKEN,
        key_authorization: KEY_AUTH,
        identifier: &id,
        now: now(),
    };
    let mut v = Verifier::new(&[Format::Tpm]);
    assert!(matches!(
        v.verify(&att, &challenge, None),
        Err(AttestError::Untrusted(_))
    ));
    v.set_roots(
        Format::Tpm,
        TrustRoots::from_pem(&authority().root_pem()).unwrap(),
    );
    assert_eq!(
        v.verify(&att, &challenge, None).unwrap().format,
        Format::Tpm
    );
}

#[test]
fn p384_key_and_hardware_module_identifier_verify() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)
        .unwrap()
        .subject_public_key_info();
    let hw = DeviceIdentifier::parse(IdentifierKind::HardwareModule, "SN-0042/1.2.3.4.5").unwrap();
    let s = TpmStatement::new(&key, hw.clone(), KEY_AUTH, now());
    let ev = check_with(
        &authority().attest(&s),
        &authority().roots(),
        &hw,
        now(),
        KEY_AUTH,
    )
    .unwrap();
    assert_eq!(ev.public_key, key);
    assert_eq!(ev.device_ids["hardware-module"], "SN-0042/1.2.3.4.5");
    assert!(!ev.device_ids.contains_key("permanent-identifier"));
}

#[test]
fn permanent_identifier_without_assigner_verifies() {
    let id = permanent("ABCDEF123456");
    let s = TpmStatement::new(device_key(), id.clone(), KEY_AUTH, now());
    let ev = check_with(
        &authority().attest(&s),
        &authority().roots(),
        &id,
        now(),
        KEY_AUTH,
    )
    .unwrap();
    assert_eq!(ev.device_ids["permanent-identifier"], "ABCDEF123456");
}

#[test]
fn wrong_extra_data_is_freshness() {
    let mut s = statement();
    s.extra_data = ring::digest::digest(&ring::digest::SHA256, b"other.keyauth")
        .as_ref()
        .to_vec();
    assert!(matches!(
        check_statement(&s),
        Err(AttestError::Freshness(_))
    ));
    // the right statement checked against another key authorization
    let att = authority().attest(&statement());
    let r = check_with(
        &att,
        &authority().roots(),
        &order_id(),
        now(),
        "other.keyauth",
    );
    assert!(matches!(r, Err(AttestError::Freshness(_))), "{r:?}");
    // SHA-1 of the key authorization is not what ES256 asks for
    s.extra_data =
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, KEY_AUTH.as_bytes())
            .as_ref()
            .to_vec();
    assert!(matches!(
        check_statement(&s),
        Err(AttestError::Freshness(_))
    ));
    s.extra_data = Vec::new();
    assert!(matches!(
        check_statement(&s),
        Err(AttestError::Freshness(_))
    ));
}

#[test]
fn another_root_is_untrusted() {
    let other = TpmTestAuthority::new();
    let att = other.attest(&statement());
    assert!(matches!(check(&att), Err(AttestError::Untrusted(_))));
}

#[test]
fn ak_certificate_outside_its_validity_is_expired() {
    let mut s = statement();
    s.ak_not_before = now() - time::Duration::days(400);
    s.ak_not_after = now() - time::Duration::days(1);
    assert!(matches!(check_statement(&s), Err(AttestError::Expired(_))));
    s.ak_not_before = now() + time::Duration::days(1);
    s.ak_not_after = now() + time::Duration::days(400);
    assert!(matches!(check_statement(&s), Err(AttestError::Expired(_))));
}

#[test]
fn ak_certificate_with_a_subject_is_untrusted() {
    let mut s = statement();
    s.ak_subject = Some("not an ak".into());
    let r = check_statement(&s);
    assert!(
        matches!(&r, Err(AttestError::Untrusted(m)) if m.contains("subject")),
        "{r:?}"
    );
}

#[test]
fn ak_certificate_without_the_aik_usage_is_untrusted() {
    let mut s = statement();
    s.ak_eku = false;
    let r = check_statement(&s);
    assert!(
        matches!(&r, Err(AttestError::Untrusted(m)) if m.contains("2.23.133.8.3")),
        "{r:?}"
    );
}

#[test]
fn signature_by_another_key_is_refused() {
    let mut s = statement();
    s.sign_with_other_key = true;
    assert!(matches!(
        check_statement(&s),
        Err(AttestError::Signature(_))
    ));
    // a signature over other bytes
    let att = authority().attest(&statement());
    let mut info = member_bytes(&att, "certInfo");
    let last = info.len() - 1;
    info[last] ^= 1;
    let att = with_member(&att, "certInfo", Some(Value::Bytes(info)));
    assert!(matches!(check(&att), Err(AttestError::Signature(_))));
}

#[test]
fn cert_info_about_another_key_is_refused() {
    let mut s = statement();
    s.name_matches = false;
    let r = check_statement(&s);
    assert!(
        matches!(&r, Err(AttestError::Key(m)) if m.contains("does not certify")),
        "{r:?}"
    );
    // a pubArea swapped for another key: the name no longer matches
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .subject_public_key_info();
    let swapped = authority().attest(&TpmStatement::new(&other, order_id(), KEY_AUTH, now()));
    let att = with_member(
        &authority().attest(&statement()),
        "pubArea",
        Some(Value::Bytes(member_bytes(&swapped, "pubArea"))),
    );
    assert!(matches!(check(&att), Err(AttestError::Key(_))));
}

#[test]
fn key_that_can_leave_the_tpm_is_refused() {
    let mut s = statement();
    s.fixed_tpm = false;
    let r = check_statement(&s);
    assert!(
        matches!(&r, Err(AttestError::Key(m)) if m.contains("fixedTPM")),
        "{r:?}"
    );
}

#[test]
fn identifier_mismatch_is_refused() {
    let att = authority().attest(&statement());
    for other in [
        permanent("PF3X9K2N/1.3.6.1.4.1.311.21.8"),
        permanent("PF3X9K2M"),
        permanent("PF3X9K2M/1.3.6.1.4.1.311.21.9"),
        permanent("pf3x9k2m/1.3.6.1.4.1.311.21.8"),
        DeviceIdentifier::parse(
            IdentifierKind::HardwareModule,
            "PF3X9K2M/1.3.6.1.4.1.311.21.8",
        )
        .unwrap(),
    ] {
        let r = check_with(&att, &authority().roots(), &other, now(), KEY_AUTH);
        assert!(
            matches!(r, Err(AttestError::Identifier(_))),
            "{other:?}: {r:?}"
        );
    }
}

#[test]
fn identifier_absent_is_refused() {
    let mut s = statement();
    s.identifier = None;
    let r = check_statement(&s);
    assert!(
        matches!(&r, Err(AttestError::Identifier(m)) if m.contains("no permanentIdentifier")),
        "{r:?}"
    );
}

#[test]
fn other_versions_and_algorithms_are_malformed() {
    let mut s = statement();
    s.ver = "1.2".into();
    assert!(matches!(check_statement(&s), Err(AttestError::Malformed(m)) if m.contains("ver")));
    for alg in [-8, -35, -258, 0, 1] {
        let mut s = statement();
        s.alg = alg;
        let r = check_statement(&s);
        assert!(
            matches!(&r, Err(AttestError::Malformed(m)) if m.contains("alg")),
            "{alg}: {r:?}"
        );
    }
    // a known algorithm that is not what signed: the signature does not verify
    let mut s = statement();
    s.alg = -257;
    assert!(matches!(
        check_statement(&s),
        Err(AttestError::Signature(_))
    ));
}

#[test]
fn missing_and_mistyped_members_are_malformed() {
    let att = authority().attest(&statement());
    for name in ["ver", "alg", "x5c", "sig", "certInfo", "pubArea"] {
        let r = check(&with_member(&att, name, None));
        assert!(matches!(r, Err(AttestError::Malformed(_))), "{name}: {r:?}");
        let r = check(&with_member(&att, name, Some(Value::Bool(true))));
        assert!(matches!(r, Err(AttestError::Malformed(_))), "{name}: {r:?}");
    }
}

#[test]
fn truncated_structures_are_malformed_at_every_length() {
    let att = authority().attest(&statement());
    for name in ["certInfo", "pubArea"] {
        let full = member_bytes(&att, name);
        for n in 0..full.len() {
            let cut = with_member(&att, name, Some(Value::Bytes(full[..n].to_vec())));
            let r = check(&cut);
            assert!(
                matches!(r, Err(AttestError::Malformed(_))),
                "{name} cut at {n}: {r:?}"
            );
        }
        let mut longer = full.clone();
        longer.push(0);
        let r = check(&with_member(&att, name, Some(Value::Bytes(longer))));
        assert!(
            matches!(&r, Err(AttestError::Malformed(m)) if m.contains("after")),
            "{name} + 1: {r:?}"
        );
    }
}

#[test]
fn truncated_cbor_is_malformed_at_every_length() {
    let att = authority().attest(&statement());
    for n in 0..att.len() {
        let r = check(&att[..n]);
        assert!(
            matches!(r, Err(AttestError::Malformed(_))),
            "cut at {n}: {r:?}"
        );
    }
}

#[test]
fn parsers_read_what_the_authority_writes() {
    let att = authority().attest(&statement());
    let public = parse_public(&member_bytes(&att, "pubArea")).unwrap();
    assert_eq!(public.key_type, alg::ECC);
    assert_eq!(public.name_alg, alg::SHA256);
    assert!(public.object_attributes.has(
        ObjectAttributes::FIXED_TPM
            | ObjectAttributes::FIXED_PARENT
            | ObjectAttributes::SENSITIVE_DATA_ORIGIN
    ));
    assert_eq!(&public.to_spki_der().unwrap(), device_key());
    let attest = parse_attest(&member_bytes(&att, "certInfo")).unwrap();
    assert_eq!(attest.attest_type, st::ATTEST_CERTIFY);
    assert_eq!(
        attest.extra_data,
        ring::digest::digest(&ring::digest::SHA256, KEY_AUTH.as_bytes()).as_ref()
    );
    assert_eq!(attest.firmware_version, 0x0007_0002_0000_0001);
    let Attested::Certify { name, .. } = attest.attested else {
        panic!("not certify")
    };
    assert_eq!(Some(name), public.name());
}

#[test]
fn structure_defects_are_malformed() {
    let att = authority().attest(&statement());
    let info = member_bytes(&att, "certInfo");
    let mut bad_magic = info.clone();
    bad_magic[0] = 0;
    assert!(
        matches!(parse_attest(&bad_magic), Err(AttestError::Malformed(m)) if m.contains("magic"))
    );
    let mut unsafe_flag = info.clone();
    // magic 4, type 2, signer 2+34, extraData 2+32, clock 8, counts 8: then safe
    unsafe_flag[4 + 2 + 36 + 34 + 16] = 2;
    assert!(
        matches!(parse_attest(&unsafe_flag), Err(AttestError::Malformed(m)) if m.contains("safe"))
    );
    // a quote is parsed, but is not what a tpm statement carries
    let mut quote = info[..4 + 2 + 36 + 34 + 17 + 8].to_vec();
    quote[4..6].copy_from_slice(&st::ATTEST_QUOTE.to_be_bytes());
    quote.extend_from_slice(&[0, 0, 0, 1, 0, 0x0b, 3, 0xff, 0, 0, 0, 2, 0xaa, 0xbb]);
    let parsed = parse_attest(&quote).unwrap();
    assert_eq!(
        parsed.attested,
        Attested::Quote {
            pcr_select: vec![PcrSelection {
                hash: alg::SHA256,
                select: vec![0xff, 0, 0]
            }],
            pcr_digest: vec![0xaa, 0xbb]
        }
    );
    let r = check(&with_member(&att, "certInfo", Some(Value::Bytes(quote))));
    assert!(
        matches!(&r, Err(AttestError::Malformed(m)) if m.contains("CERTIFY")),
        "{r:?}"
    );
    // an unknown type keeps its body
    let mut other = info.clone();
    other[4..6].copy_from_slice(&0x8014u16.to_be_bytes());
    assert!(matches!(parse_attest(&other).unwrap().attested, Attested::Other(b) if !b.is_empty()));

    let public = member_bytes(&att, "pubArea");
    let mut keyedhash = public.clone();
    keyedhash[..2].copy_from_slice(&0x0008u16.to_be_bytes());
    assert!(matches!(
        parse_public(&keyedhash),
        Err(AttestError::Malformed(_))
    ));
    let mut unknown_scheme = public.clone();
    // type 2, nameAlg 2, attributes 4, authPolicy 2, symmetric 2: then the scheme
    unknown_scheme[12..14].copy_from_slice(&0x7777u16.to_be_bytes());
    assert!(matches!(
        parse_public(&unknown_scheme),
        Err(AttestError::Malformed(_))
    ));
    let mut p521 = parse_public(&public).unwrap();
    if let TpmKey::Ecc { curve, .. } = &mut p521.key {
        *curve = 0x0005;
    }
    assert!(matches!(p521.to_spki_der(), Err(AttestError::Key(_))));
}

#[test]
fn random_bytes_never_panic() {
    // a small deterministic generator: the parsers see every kind of garbage
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for len in 0..200usize {
        for _ in 0..20 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let _ = parse_public(&bytes);
            let _ = parse_attest(&bytes);
            let _ = parse_signature(&bytes);
            let _ = parse_san(&bytes);
        }
    }
}

// ---- real vectors -----------------------------------------------------------------------

const WINDOWS_HELLO: [&str; 4] = [
    "tpm__verify_attestation_surface_pro_4",
    "tpm__verify_attestation_dell_xps_13",
    "tpm__verify_attestation_lenovo_carbon_x1",
    "tpm__verify_tpm_with_ecc_public_area_type",
];

/// Inside every real AK certificate's and intermediate's validity (the latest start is
/// 2022-01-12, the earliest end 2025-03-21).
fn real_time() -> OffsetDateTime {
    datetime!(2023-06-01 0:00 UTC)
}

fn read_vector(name: &str) -> Option<Vec<u8>> {
    let dir = crate::vectors_dir()?;
    Some(std::fs::read(dir.join("attest/webauthn_real").join(name)).unwrap())
}

#[test]
fn windows_hello_statements_pass_every_check_before_freshness() {
    let expected = [
        ("id:494E5443", "Intel (INTC)", alg::RSA),
        ("id:4E544300", "Nuvoton (NTC)", alg::RSA),
        ("id:53544D20", "STMicroelectronics (STM)", alg::RSA),
        ("id:4E544300", "Nuvoton (NTC)", alg::ECC),
    ];
    for (name, (manufacturer, vendor, key_type)) in WINDOWS_HELLO.iter().zip(expected) {
        let Some(att) = read_vector(&format!("{name}.attObj.cbor")) else {
            return;
        };
        let obj = AttestationObject::decode(&att).unwrap();
        assert_eq!(obj.fmt, "tpm");
        assert_eq!(obj.int("alg").unwrap(), -65535, "{name}");

        // the structures parse, and certInfo certifies pubArea
        let public = parse_public(obj.bytes("pubArea").unwrap()).unwrap();
        assert_eq!(public.key_type, key_type, "{name}");
        let attest = parse_attest(obj.bytes("certInfo").unwrap()).unwrap();
        assert_eq!(attest.attest_type, st::ATTEST_CERTIFY);
        let Attested::Certify {
            name: certified, ..
        } = &attest.attested
        else {
            panic!("{name}: not certify")
        };
        assert_eq!(Some(certified.clone()), public.name(), "{name}");
        let spki = public.to_spki_der().unwrap();
        let (_, parsed) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki).unwrap();
        assert!(parsed.parsed().is_ok(), "{name}");

        // the AK certificate follows the profile
        let x5c = obj.x5c().unwrap();
        let certs = chain::parse_chain(&x5c).unwrap();
        let san = check_ak_certificate(&certs[0]).unwrap();
        assert_eq!(san.manufacturer.as_deref(), Some(manufacturer), "{name}");
        assert_eq!(vendor_name(manufacturer), vendor);
        assert!(san.model.is_some() && san.version.is_some(), "{name}");
        assert!(san.identifiers.is_empty(), "{name}");

        // the chain leads to the built-in Microsoft root
        let roots = TrustRoots::builtin(Format::Tpm);
        let path = chain::verify_path(&x5c, &roots, real_time(), &ChainCache::default()).unwrap();
        assert_eq!(path.used, vec![0, 1], "{name}");
        assert_eq!(
            sha256_hex(&path.anchor),
            "870c7a35ceab3d59979f2c6a524042d404cb71518004350925fb2ced79a999da"
        );

        // extraData is the WebAuthn value: SHA-1(authData || SHA-256(clientDataJSON))
        let json: serde_json::Value =
            serde_json::from_slice(&read_vector(&format!("{name}.json")).unwrap()).unwrap();
        let client_data = base64::engine::general_purpose::STANDARD
            .decode(
                json["credential"]["response"]["clientDataJSON"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        let mut signed = obj.auth_data.clone().unwrap();
        signed
            .extend_from_slice(ring::digest::digest(&ring::digest::SHA256, &client_data).as_ref());
        assert_eq!(
            attest.extra_data,
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &signed).as_ref(),
            "{name}"
        );

        // the whole verification: ver, alg, structures, AK profile, chain, sig and name pass;
        // the extraData is WebAuthn's, not a key authorization's
        let r = check_with(&att, &roots, &order_id(), real_time(), KEY_AUTH);
        assert!(
            matches!(&r, Err(AttestError::Freshness(m)) if m.contains("extraData")),
            "{name}: {r:?}"
        );
        // which the signature check really guards: a changed byte of sig or certInfo fails
        let mut sig = obj.bytes("sig").unwrap().to_vec();
        sig[10] ^= 1;
        let r = check_with(
            &with_member(&att, "sig", Some(Value::Bytes(sig))),
            &roots,
            &order_id(),
            real_time(),
            KEY_AUTH,
        );
        assert!(matches!(r, Err(AttestError::Signature(_))), "{name}: {r:?}");
        let mut info = obj.bytes("certInfo").unwrap().to_vec();
        info[50] ^= 1; // inside extraData
        let r = check_with(
            &with_member(&att, "certInfo", Some(Value::Bytes(info))),
            &roots,
            &order_id(),
            real_time(),
            KEY_AUTH,
        );
        assert!(matches!(r, Err(AttestError::Signature(_))), "{name}: {r:?}");
        // and time: by 2028 every AK certificate has expired
        let later = datetime!(2028-01-01 0:00 UTC);
        let r = check_with(&att, &roots, &order_id(), later, KEY_AUTH);
        assert!(matches!(r, Err(AttestError::Expired(_))), "{name}: {r:?}");
        // a test root does not vouch for them
        let r = check_with(
            &att,
            &authority().roots(),
            &order_id(),
            real_time(),
            KEY_AUTH,
        );
        assert!(matches!(r, Err(AttestError::Untrusted(_))), "{name}: {r:?}");
    }
}

#[test]
fn gcp_vtpm_ak_structures_parse_and_its_signatures_verify() {
    let Some(dir) = crate::vectors_dir() else {
        return;
    };
    let text =
        std::fs::read(dir.join("attest/tpm/go-attestation_windows_gcp_shielded_vm.json")).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let ak = &json["AK"];
    let public = parse_public(&b64(&ak["Public"])).unwrap();
    assert_eq!(public.key_type, alg::RSA);
    assert_eq!(public.name_alg, alg::SHA256);
    assert!(public.object_attributes.has(
        ObjectAttributes::FIXED_TPM
            | ObjectAttributes::FIXED_PARENT
            | ObjectAttributes::SENSITIVE_DATA_ORIGIN
            | ObjectAttributes::RESTRICTED
            | ObjectAttributes::SIGN
    ));
    let TpmKey::Rsa { key_bits, .. } = public.key else {
        panic!("not rsa")
    };
    assert_eq!(key_bits, 2048);
    assert!(public.to_spki_der().is_ok());

    // the AK's creation, certified by itself
    let creation_bytes = b64(&ak["CreateAttestation"]);
    let creation = parse_attest(&creation_bytes).unwrap();
    assert_eq!(creation.attest_type, st::ATTEST_CREATION);
    let Attested::Creation {
        object_name,
        creation_hash,
    } = &creation.attested
    else {
        panic!("not creation")
    };
    assert_eq!(Some(object_name.clone()), public.name());
    let create_data = b64(&ak["CreateData"]);
    assert_eq!(
        creation_hash.as_slice(),
        ring::digest::digest(&ring::digest::SHA256, &create_data).as_ref()
    );
    let sig = parse_signature(&b64(&ak["CreateSignature"])).unwrap();
    assert!(matches!(
        sig,
        TpmSignature::RsaSsa {
            hash: alg::SHA1,
            ..
        }
    ));
    public.verify(&creation_bytes, &sig).unwrap();
    let mut changed = creation_bytes.clone();
    changed[20] ^= 1;
    assert!(matches!(
        public.verify(&changed, &sig),
        Err(AttestError::Signature(_))
    ));

    // a quote by the same AK
    let quote_bytes = b64(&json["Quote"]["Quote"]);
    let quote = parse_attest(&quote_bytes).unwrap();
    assert_eq!(quote.attest_type, st::ATTEST_QUOTE);
    assert!(
        matches!(&quote.attested, Attested::Quote { pcr_select, .. } if !pcr_select.is_empty())
    );
    let quote_sig = parse_signature(&b64(&json["Quote"]["Signature"])).unwrap();
    public.verify(&quote_bytes, &quote_sig).unwrap();
    assert!(matches!(
        public.verify(&creation_bytes, &quote_sig),
        Err(AttestError::Signature(_))
    ));
}
