#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use super::*;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

fn header_of(token: &str) -> serde_json::Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

fn kid_of(token: &str) -> String {
    header_of(token)["kid"].as_str().unwrap().to_owned()
}

#[test]
fn jwks_lists_one_public_key_of_each_kind_named_by_its_thumbprint() {
    let keys = Keys::ephemeral(T0).unwrap();
    let jwks = keys.jwks(T0);
    let list = jwks["keys"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let set: Jwks = serde_json::from_value(jwks.clone()).unwrap();
    let algs: Vec<&str> = set.keys.iter().map(|k| k.alg.as_deref().unwrap()).collect();
    assert_eq!(algs, ["ES256", "EdDSA", "RS256"]);
    for (k, raw) in set.keys.iter().zip(list) {
        assert_eq!(k.kid.as_deref(), Some(k.thumbprint().as_str()));
        assert_eq!(k.use_.as_deref(), Some("sig"));
        // public members only
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(raw.get(private).is_none(), "{private} in {raw}");
        }
    }
    assert_eq!(set.keys[0].crv.as_deref(), Some("P-256"));
    assert_eq!(set.keys[1].crv.as_deref(), Some("Ed25519"));
    let n = URL_SAFE_NO_PAD
        .decode(set.keys[2].n.as_deref().unwrap())
        .unwrap();
    assert_eq!(n.len() * 8, RSA_BITS);
    assert_eq!(
        keys.active_kid(KeyKind::Es256),
        set.keys[0].kid.clone().unwrap()
    );
    assert_eq!(keys.note_key().kid, set.keys[1].kid.clone().unwrap());
}

#[test]
fn jws_of_each_algorithm_verifies_with_the_published_keys() {
    let keys = Keys::ephemeral(T0).unwrap();
    let jwks = keys.jwk_set(T0);
    for (alg, sig_len) in [(JwsAlg::Es256, 64), (JwsAlg::Rs256, 256)] {
        let token = keys.sign_jws(alg, "x+jwt", b"{\"a\":1}").unwrap();
        let v = jws::verify_compact(&token, &jwks).unwrap();
        assert_eq!(v.payload, b"{\"a\":1}");
        let h = header_of(&token);
        assert_eq!(
            h,
            serde_json::json!({"alg": alg.as_str(), "kid": keys.active_kid(alg.into()), "typ": "x+jwt"})
        );
        let raw_header = URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(raw_header).unwrap(),
            format!(
                "{{\"alg\":\"{}\",\"kid\":\"{}\",\"typ\":\"x+jwt\"}}",
                alg.as_str(),
                keys.active_kid(alg.into())
            )
        );
        let sig = URL_SAFE_NO_PAD
            .decode(token.rsplit('.').next().unwrap())
            .unwrap();
        assert_eq!(sig.len(), sig_len, "{alg}");
        assert!(keys.verify_jws(&token, T0).is_ok());
    }
    // a typ that needs escaping stays valid JSON
    let token = keys.sign_jws(JwsAlg::Es256, "a\"b", b"").unwrap();
    assert_eq!(header_of(&token)["typ"], "a\"b");
    jws::verify_compact(&token, &jwks).unwrap();
}

#[test]
fn a_tampered_jws_is_refused() {
    let keys = Keys::ephemeral(T0).unwrap();
    let token = keys.sign_jws(JwsAlg::Es256, "t", b"payload").unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(b"payloae");
    let err = keys.verify_jws(&parts.join("."), T0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Malformed);
    assert_eq!(err.detail, "jws: signature does not verify");
}

#[test]
fn rotation_keeps_old_kids_verifying_for_the_overlap_then_drops_them() {
    let keys = Keys::ephemeral(T0).unwrap();
    let old_es = keys.sign_jws(JwsAlg::Es256, "t", b"old").unwrap();
    let old_rs = keys.sign_jws(JwsAlg::Rs256, "t", b"old").unwrap();
    let old_note = keys.note_key().kid;
    let overlap = Duration::hours(24);
    let t1 = T0 + Duration::hours(1);
    let rotation = keys.rotate(t1, overlap).unwrap();
    assert_eq!(rotation.retired.len(), 3);
    assert_eq!(rotation.activated.len(), 3);
    assert!(rotation.dropped.is_empty());
    assert_eq!(rotation.retired[0].kid, kid_of(&old_es));
    assert_eq!(rotation.retired[0].published_until, Some(t1 + overlap));

    let new_es = keys.sign_jws(JwsAlg::Es256, "t", b"new").unwrap();
    assert_ne!(kid_of(&new_es), kid_of(&old_es));
    assert_eq!(kid_of(&new_es), rotation.activated[0].kid);
    assert_ne!(keys.note_key().kid, old_note);

    // inside the overlap: six keys published, the old tokens verify
    let inside = t1 + overlap - Duration::seconds(1);
    assert_eq!(keys.jwk_set(inside).keys.len(), 6);
    for t in [&old_es, &old_rs, &new_es] {
        keys.verify_jws(t, inside).unwrap();
    }
    // at the end of the overlap the old keys are gone and their tokens fail
    let after = t1 + overlap;
    let set = keys.jwk_set(after);
    assert_eq!(set.keys.len(), 3);
    assert!(set.find(&kid_of(&old_es)).is_none());
    for t in [&old_es, &old_rs] {
        let err = keys.verify_jws(t, after).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Malformed);
        assert_eq!(err.detail, format!("jws: no key with kid {:?}", kid_of(t)));
    }
    keys.verify_jws(&new_es, after).unwrap();

    // the next rotation after the overlap forgets them
    let rotation = keys.rotate(after, overlap).unwrap();
    assert_eq!(rotation.dropped.len(), 3);
    assert!(rotation.dropped.contains(&kid_of(&old_es)));
}

#[test]
fn overlap_out_of_range_is_refused() {
    let keys = Keys::ephemeral(T0).unwrap();
    let kid = keys.active_kid(KeyKind::Es256);
    for bad in [Duration::seconds(-1), MAX_OVERLAP + Duration::seconds(1)] {
        let err = keys.rotate(T0, bad).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Malformed);
        assert_eq!(err.detail, "overlap must be between 0 and 8784 hours");
    }
    assert_eq!(keys.active_kid(KeyKind::Es256), kid);
    // zero overlap: the old keys leave the JWKS at once
    keys.rotate(T0, Duration::ZERO).unwrap();
    assert_eq!(keys.jwk_set(T0).keys.len(), 3);
}

#[test]
fn keys_persist_and_rotation_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::open(dir.path(), None, T0).unwrap();
    let kids: Vec<String> = KeyKind::ALL.iter().map(|k| keys.active_kid(*k)).collect();
    let kdir = dir.path().join(KEYS_DIR);
    for kid in &kids {
        let path = kdir.join(format!("{kid}.key"));
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
    let token = keys.sign_jws(JwsAlg::Es256, "t", b"x").unwrap();
    drop(keys);

    let keys = Keys::open(dir.path(), None, T0).unwrap();
    let again: Vec<String> = KeyKind::ALL.iter().map(|k| keys.active_kid(*k)).collect();
    assert_eq!(again, kids);
    keys.verify_jws(&token, T0).unwrap();

    let t1 = T0 + Duration::hours(2);
    keys.rotate(t1, Duration::hours(10)).unwrap();
    let rotated: Vec<String> = KeyKind::ALL.iter().map(|k| keys.active_kid(*k)).collect();
    drop(keys);
    // the retired private keys are gone; the new ones are there
    for kid in &kids {
        assert!(!kdir.join(format!("{kid}.key")).exists());
    }
    for kid in &rotated {
        assert!(kdir.join(format!("{kid}.key")).exists());
    }

    let keys = Keys::open(dir.path(), None, t1).unwrap();
    let after: Vec<String> = KeyKind::ALL.iter().map(|k| keys.active_kid(*k)).collect();
    assert_eq!(after, rotated);
    keys.verify_jws(&token, t1 + Duration::hours(9)).unwrap();
    assert!(keys.verify_jws(&token, t1 + Duration::hours(10)).is_err());
    let jwks = keys.jwk_set(t1);
    assert_eq!(jwks.keys.len(), 6);
}

#[test]
fn encrypted_keys_need_their_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::open(dir.path(), Some(b"correct horse"), T0).unwrap();
    let kid = keys.active_kid(KeyKind::Ed25519);
    drop(keys);
    let text = fs::read_to_string(dir.path().join(KEYS_DIR).join(format!("{kid}.key"))).unwrap();
    assert!(keyfile::is_encrypted(&text));

    let err = Keys::open(dir.path(), None, T0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal);
    assert!(err.cause.unwrap().contains("passphrase"));
    let err = Keys::open(dir.path(), Some(b"wrong"), T0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal);
    let keys = Keys::open(dir.path(), Some(b"correct horse"), T0).unwrap();
    assert_eq!(keys.active_kid(KeyKind::Ed25519), kid);
}

#[test]
fn a_manifest_naming_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::open(dir.path(), None, T0).unwrap();
    let es = keys.active_kid(KeyKind::Es256);
    let rs = keys.active_kid(KeyKind::Rs256);
    drop(keys);
    let kdir = dir.path().join(KEYS_DIR);
    // the ES256 file now holds the RSA key
    fs::copy(
        kdir.join(format!("{rs}.key")),
        kdir.join(format!("{es}.key")),
    )
    .unwrap();
    let err = Keys::open(dir.path(), None, T0).unwrap_err();
    assert!(
        err.cause
            .as_deref()
            .unwrap()
            .contains("a rsa-sha256 key where an ES256 key is expected"),
        "{err}"
    );
    // a missing key file is an error, not a silent new key
    fs::remove_file(kdir.join(format!("{es}.key"))).unwrap();
    let err = Keys::open(dir.path(), None, T0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal);
    assert!(err.cause.unwrap().contains(&format!("{es}.key")));
}

#[test]
fn debug_shows_kids_not_secrets() {
    let keys = Keys::ephemeral(T0).unwrap();
    let s = format!("{keys:?}");
    assert!(s.contains(&keys.active_kid(KeyKind::Es256)));
    assert!(!s.contains("PRIVATE"));
    let n = format!("{:?}", keys.note_key());
    assert!(n.starts_with("NoteKey { kid: "));
}

#[test]
fn keys_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Keys>();
    check::<Arc<Keys>>();
}
