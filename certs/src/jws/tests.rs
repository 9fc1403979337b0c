//! Tests of the parent module.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use super::*;
use crate::signer::{KeySigner, generate};
use serde_json::json;

/// RFC 8037 Appendix A.1 Ed25519 private key (seed) and public key.
const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

/// RFC 7515 Appendix A.2 (RS256) and A.3 (ES256) tokens, and their public keys.
const RFC7515_A2_TOKEN: &str = concat!(
    "eyJhbGciOiJSUzI1NiJ9",
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
    ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5",
    "jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L",
    "07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUi",
    "pUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw",
);
const RFC7515_A2_N: &str = concat!(
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddx",
    "HmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMs",
    "D1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSH",
    "SXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdV",
    "MTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8",
    "NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
);
const RFC7515_A3_TOKEN: &str = concat!(
    "eyJhbGciOiJFUzI1NiJ9",
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
    ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q",
);
const RFC7515_PAYLOAD: &[u8] =
    b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";

fn empty_jwk(kty: &str) -> Jwk {
    Jwk {
        kty: kty.into(),
        crv: None,
        x: None,
        y: None,
        n: None,
        e: None,
        kid: None,
        alg: None,
        use_: None,
    }
}

fn rfc7515_a2_key() -> Jwk {
    Jwk {
        n: Some(RFC7515_A2_N.into()),
        e: Some("AQAB".into()),
        ..empty_jwk("RSA")
    }
}

fn rfc7515_a3_key() -> Jwk {
    Jwk {
        crv: Some("P-256".into()),
        x: Some("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU".into()),
        y: Some("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0".into()),
        ..empty_jwk("EC")
    }
}

/// A PKCS#8 v1 Ed25519 key from a raw seed (RFC 8410 `OneAsymmetricKey`, no public key).
fn ed25519_signer_from_seed(seed: &[u8]) -> KeySigner {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    KeySigner::from_pkcs8(&der).unwrap()
}

fn signer(alg: KeyAlgorithm) -> KeySigner {
    KeySigner::from_pkcs8(generate(alg).unwrap().as_der()).unwrap()
}

fn jwks_of(s: &dyn Signer) -> Jwks {
    Jwks {
        keys: vec![Jwk::from_signer(s).unwrap()],
    }
}

/// Encodes a header and payload and appends `sig`, with no signing.
fn forge(header: &Value, payload: &[u8], sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

fn is_jws_err<T: fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(Error::Jws(_)))
}

#[test]
fn sign_and_verify_round_trip_for_every_generated_key_type() {
    for alg in [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
    ] {
        let s = signer(alg);
        let jwks = jwks_of(&s);
        let mut extra = Map::new();
        extra.insert("nonce".into(), json!("abc"));
        let token = sign_compact(&s, Some("secevent+jwt"), extra, b"hello postern").unwrap();
        let v = verify_compact(&token, &jwks).unwrap();
        assert_eq!(v.payload, b"hello postern");
        let want_alg = JwsAlg::for_key(alg).unwrap();
        assert_eq!(v.header["alg"], json!(want_alg.as_str()));
        assert_eq!(v.header["kid"], json!(jwks.keys[0].thumbprint()));
        assert_eq!(
            jwks.keys[0].kid.as_deref(),
            Some(&*jwks.keys[0].thumbprint())
        );
        assert_eq!(v.header["typ"], json!("secevent+jwt"));
        assert_eq!(v.header["nonce"], json!("abc"));
        assert_eq!(v.header.len(), 4);
        // the same token verifies with the key given directly
        assert_eq!(verify_compact_with_key(&token, &jwks.keys[0]).unwrap(), v);
        // an ECDSA signature is in the fixed form
        let sig = URL_SAFE_NO_PAD
            .decode(token.rsplit('.').next().unwrap())
            .unwrap();
        let want_len = match alg {
            KeyAlgorithm::EcdsaP384 => 96,
            _ => 64,
        };
        assert_eq!(sig.len(), want_len);
    }
}

#[test]
fn empty_payload_round_trips() {
    let s = signer(KeyAlgorithm::EcdsaP256);
    let token = sign_compact(&s, None, Map::new(), b"").unwrap();
    assert!(token.contains(".."));
    let v = verify_compact(&token, &jwks_of(&s)).unwrap();
    assert!(v.payload.is_empty());
    assert!(!v.header.contains_key("typ"));
}

#[test]
fn extra_header_replaces_kid_but_not_alg_or_crit() {
    let s = signer(KeyAlgorithm::Ed25519);
    let mut extra = Map::new();
    extra.insert("kid".into(), json!("my-key"));
    let token = sign_compact(&s, None, extra, b"x").unwrap();
    let mut jwk = Jwk::from_signer(&s).unwrap();
    jwk.kid = Some("my-key".into());
    let jwks = Jwks { keys: vec![jwk] };
    assert_eq!(
        verify_compact(&token, &jwks).unwrap().header["kid"],
        json!("my-key")
    );

    for refused in ["alg", "crit"] {
        let mut extra = Map::new();
        extra.insert(refused.into(), json!("ES256"));
        assert!(is_jws_err(sign_compact(&s, None, extra, b"x")));
    }
}

#[test]
fn rfc7638_thumbprint_of_the_rsa_example() {
    let n = concat!(
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS",
        "oc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65",
        "YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyr",
        "dkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzK",
        "nqDKgw",
    );
    let mut jwk = Jwk {
        n: Some(n.into()),
        e: Some("AQAB".into()),
        ..empty_jwk("RSA")
    };
    assert_eq!(
        jwk.thumbprint(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    // optional members do not change it
    jwk.kid = Some("2011-04-29".into());
    jwk.alg = Some("RS256".into());
    jwk.use_ = Some("sig".into());
    assert_eq!(
        jwk.thumbprint(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn rfc8037_ed25519_thumbprint() {
    let jwk = Jwk {
        crv: Some("Ed25519".into()),
        x: Some(RFC8037_X.into()),
        ..empty_jwk("OKP")
    };
    assert_eq!(
        jwk.thumbprint(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
}

#[test]
fn rfc8037_ed25519_signature_vector() {
    let seed = URL_SAFE_NO_PAD.decode(RFC8037_D).unwrap();
    let s = ed25519_signer_from_seed(&seed);
    let jwk = Jwk::from_signer(&s).unwrap();
    assert_eq!(jwk.kty, "OKP");
    assert_eq!(jwk.crv.as_deref(), Some("Ed25519"));
    assert_eq!(jwk.x.as_deref(), Some(RFC8037_X));
    assert_eq!(
        jwk.kid.as_deref(),
        Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
    );
    let token =
        sign_compact_with_header(&s, br#"{"alg":"EdDSA"}"#, b"Example of Ed25519 signing").unwrap();
    assert_eq!(
        token,
        concat!(
            "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc",
            ".hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        )
    );
    let v = verify_compact_with_key(&token, &jwk).unwrap();
    assert_eq!(v.payload, b"Example of Ed25519 signing");
    // the vector's header has no kid, so a key set cannot be used
    assert!(is_jws_err(verify_compact(
        &token,
        &Jwks { keys: vec![jwk] }
    )));
}

#[test]
fn rfc7515_es256_vector_verifies() {
    let v = verify_compact_with_key(RFC7515_A3_TOKEN, &rfc7515_a3_key()).unwrap();
    assert_eq!(v.payload, RFC7515_PAYLOAD);
    assert_eq!(v.header["alg"], json!("ES256"));
}

#[test]
fn rfc7515_rs256_vector_verifies() {
    let v = verify_compact_with_key(RFC7515_A2_TOKEN, &rfc7515_a2_key()).unwrap();
    assert_eq!(v.payload, RFC7515_PAYLOAD);
    // a leading zero octet in n is tolerated
    let mut padded = rfc7515_a2_key();
    let mut n = vec![0u8];
    n.extend(URL_SAFE_NO_PAD.decode(RFC7515_A2_N).unwrap());
    padded.n = Some(URL_SAFE_NO_PAD.encode(n));
    verify_compact_with_key(RFC7515_A2_TOKEN, &padded).unwrap();
}

#[test]
fn tampering_is_detected() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let s = signer(alg);
        let jwks = jwks_of(&s);
        let token = sign_compact(&s, Some("JWT"), Map::new(), b"{\"sub\":\"a\"}").unwrap();
        let parts: Vec<&str> = token.split('.').collect();

        // another payload under the original signature
        let other = URL_SAFE_NO_PAD.encode(b"{\"sub\":\"b\"}");
        let t = format!("{}.{}.{}", parts[0], other, parts[2]);
        assert!(is_jws_err(verify_compact(&t, &jwks)));

        // another header (same kid and alg) under the original signature
        let mut header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        header["typ"] = json!("other");
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        let t = format!("{}.{}.{}", h, parts[1], parts[2]);
        assert!(is_jws_err(verify_compact(&t, &jwks)));

        // every bit of the signature
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        for i in 0..sig.len() * 8 {
            let mut bad = sig.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let t = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&bad));
            assert!(is_jws_err(verify_compact(&t, &jwks)), "bit {i}");
        }
        // truncated and extended signatures
        let t = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode(&sig[..sig.len() - 1])
        );
        assert!(is_jws_err(verify_compact(&t, &jwks)));
        let mut longer = sig.clone();
        longer.push(0);
        let t = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode(&longer)
        );
        assert!(is_jws_err(verify_compact(&t, &jwks)));

        // the untouched token still verifies
        verify_compact(&token, &jwks).unwrap();
    }
}

#[test]
fn key_selection_by_kid() {
    let a = signer(KeyAlgorithm::EcdsaP256);
    let b = signer(KeyAlgorithm::EcdsaP256);
    let token = sign_compact(&a, None, Map::new(), b"x").unwrap();
    // only b's key: the kid is unknown
    assert!(is_jws_err(verify_compact(&token, &jwks_of(&b))));
    // b's key published under a's kid: the signature does not verify
    let mut impostor = Jwk::from_signer(&b).unwrap();
    impostor.kid = Jwk::from_signer(&a).unwrap().kid;
    assert!(is_jws_err(verify_compact(
        &token,
        &Jwks {
            keys: vec![impostor.clone()]
        }
    )));
    assert!(is_jws_err(verify_compact_with_key(&token, &impostor)));
    // both keys: a's is found
    let both = Jwks {
        keys: vec![Jwk::from_signer(&b).unwrap(), Jwk::from_signer(&a).unwrap()],
    };
    verify_compact(&token, &both).unwrap();
    assert!(both.find("nope").is_none());
}

#[test]
fn missing_or_non_string_kid_is_refused() {
    let s = signer(KeyAlgorithm::Ed25519);
    let jwks = jwks_of(&s);
    for header in [
        json!({"alg": "EdDSA"}),
        json!({"alg": "EdDSA", "kid": 7}),
        json!({"alg": "EdDSA", "kid": null}),
    ] {
        let h = serde_json::to_vec(&header).unwrap();
        let token = sign_compact_with_header(&s, &h, b"x").unwrap();
        assert!(is_jws_err(verify_compact(&token, &jwks)), "{header}");
    }
}

#[test]
fn none_hmac_and_unknown_algs_are_refused() {
    let s = signer(KeyAlgorithm::EcdsaP256);
    let jwks = jwks_of(&s);
    let kid = jwks.keys[0].kid.clone().unwrap();
    for alg in [
        "none", "HS256", "HS512", "ES512", "PS256", "RS384", "es256", "",
    ] {
        let header = json!({"alg": alg, "kid": kid});
        for sig in [&b""[..], &[0u8; 64][..]] {
            let token = forge(&header, b"x", sig);
            assert!(is_jws_err(verify_compact(&token, &jwks)), "{alg}");
            assert!(is_jws_err(verify_compact_with_key(&token, &jwks.keys[0])));
        }
    }
    // "none" with the conventional empty third part
    let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#));
    let token = format!("{h}.{}.", URL_SAFE_NO_PAD.encode(b"x"));
    assert!(is_jws_err(verify_compact(&token, &jwks)));
    // alg missing or not a string
    for header in [json!({"kid": kid}), json!({"alg": ["ES256"], "kid": kid})] {
        let token = forge(&header, b"x", &[0u8; 64]);
        assert!(is_jws_err(verify_compact(&token, &jwks)));
    }
}

#[test]
fn algorithm_confusion_is_refused() {
    // an Ed25519 signature presented as ES256 (both 64 bytes)
    let ed = signer(KeyAlgorithm::Ed25519);
    let ed_jwk = Jwk::from_signer(&ed).unwrap();
    let h = serde_json::to_vec(&json!({"alg": "ES256", "kid": ed_jwk.kid})).unwrap();
    let token = sign_compact_with_header(&ed, &h, b"x").unwrap();
    assert!(is_jws_err(verify_compact_with_key(&token, &ed_jwk)));

    // an ES256 token checked against an Ed25519 key under the same kid
    let ec = signer(KeyAlgorithm::EcdsaP256);
    let token = sign_compact(&ec, None, Map::new(), b"x").unwrap();
    let mut wrong = ed_jwk.clone();
    wrong.kid = Jwk::from_signer(&ec).unwrap().kid;
    assert!(is_jws_err(verify_compact(
        &token,
        &Jwks { keys: vec![wrong] }
    )));

    // HS256 keyed with the public key's bytes (the classic confusion) is refused
    let ec_jwk = Jwk::from_signer(&ec).unwrap();
    let hk = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, ec.spki_der());
    let h = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!({"alg": "HS256", "kid": ec_jwk.kid})).unwrap());
    let input = format!("{h}.{}", URL_SAFE_NO_PAD.encode(b"x"));
    let tag = ring::hmac::sign(&hk, input.as_bytes());
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert!(is_jws_err(verify_compact(
        &token,
        &Jwks {
            keys: vec![ec_jwk.clone()]
        }
    )));

    // a key whose alg member disagrees with the header
    let mut pinned = ec_jwk.clone();
    pinned.alg = Some("ES384".into());
    let token = sign_compact(&ec, None, Map::new(), b"x").unwrap();
    assert!(is_jws_err(verify_compact_with_key(&token, &pinned)));
    // a key marked for encryption
    let mut enc = ec_jwk;
    enc.use_ = Some("enc".into());
    assert!(is_jws_err(verify_compact_with_key(&token, &enc)));
}

#[test]
fn crit_is_refused_unless_empty() {
    let s = signer(KeyAlgorithm::Ed25519);
    let jwks = jwks_of(&s);
    let kid = jwks.keys[0].kid.clone().unwrap();
    let ok = json!({"alg": "EdDSA", "kid": kid, "crit": []});
    let token = sign_compact_with_header(&s, &serde_json::to_vec(&ok).unwrap(), b"x").unwrap();
    verify_compact(&token, &jwks).unwrap();
    for header in [
        json!({"alg": "EdDSA", "kid": kid, "crit": ["exp"], "exp": 1}),
        json!({"alg": "EdDSA", "kid": kid, "crit": ["b64"], "b64": false}),
        json!({"alg": "EdDSA", "kid": kid, "crit": "b64"}),
        json!({"alg": "EdDSA", "kid": kid, "crit": null}),
    ] {
        let h = serde_json::to_vec(&header).unwrap();
        let token = sign_compact_with_header(&s, &h, b"x").unwrap();
        assert!(is_jws_err(verify_compact(&token, &jwks)), "{header}");
    }
}

#[test]
fn malformed_tokens_fail_without_panicking() {
    let s = signer(KeyAlgorithm::EcdsaP256);
    let jwks = jwks_of(&s);
    let kid = jwks.keys[0].kid.clone().unwrap();
    let token = sign_compact(&s, None, Map::new(), b"payload").unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let (h, p, sig) = (parts[0], parts[1], parts[2]);
    let dup = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"ES256","kid":"{kid}","kid":"{kid}"}}"#));
    let padded_payload = format!("{}=", URL_SAFE_NO_PAD.encode(b"ab"));
    let cases = [
        String::new(),
        ".".into(),
        "..".into(),
        "...".into(),
        format!("{h}.{p}"),
        format!("{h}.{p}.{sig}."),
        format!("{h}.{p}.{sig}.{sig}"),
        format!(".{h}.{p}.{sig}"),
        format!("{h}..{p}.{sig}"),
        format!("{h}.{p}.{sig}\n"),
        format!(" {h}.{p}.{sig}"),
        format!("{h}=.{p}.{sig}"),
        format!("{h}.{p}.{sig}="),
        format!("{h}.{padded_payload}.{sig}"),
        format!("{}.{p}.{sig}", h.replace('-', "+").replace('_', "/") + "+/"),
        format!("{h}.{p}.{}", &sig[..sig.len() - 1]),
        format!("{h}.!!!.{sig}"),
        format!("{}.{p}.{sig}", URL_SAFE_NO_PAD.encode(b"not json")),
        format!("{}.{p}.{sig}", URL_SAFE_NO_PAD.encode(b"[1,2]")),
        format!("{}.{p}.{sig}", URL_SAFE_NO_PAD.encode(b"\"ES256\"")),
        format!("{}.{p}.{sig}", URL_SAFE_NO_PAD.encode(b"{}")),
        format!(
            "{}.{p}.{sig}",
            URL_SAFE_NO_PAD.encode(b"{\"alg\":\"ES256\"} x")
        ),
        format!(
            "{}.{p}.{sig}",
            URL_SAFE_NO_PAD.encode([0xff, 0xfe, 0x7b, 0x7d])
        ),
        format!("{}.{p}.{sig}", URL_SAFE_NO_PAD.encode(b"")),
        format!("{dup}.{p}.{sig}"),
        format!("{h}.{p}.{}", "A".repeat(10_000)),
        "\u{0}.\u{0}.\u{0}".into(),
        "é.é.é".into(),
    ];
    for t in &cases {
        assert!(is_jws_err(verify_compact(t, &jwks)), "{t:?}");
        assert!(
            is_jws_err(verify_compact_with_key(t, &jwks.keys[0])),
            "{t:?}"
        );
    }
    // a base64url part with non-zero trailing bits is not canonical
    let mut noncanonical = p.to_string();
    if noncanonical.len() % 4 != 0 {
        let last = noncanonical.pop().unwrap();
        let idx = URL_SAFE_NO_PAD_ALPHABET.find(last).unwrap();
        noncanonical.push(URL_SAFE_NO_PAD_ALPHABET.as_bytes()[idx | 1] as char);
        if noncanonical != p {
            let t = format!("{h}.{noncanonical}.{sig}");
            assert!(is_jws_err(verify_compact(&t, &jwks)));
        }
    }
    verify_compact(&token, &jwks).unwrap();
}

const URL_SAFE_NO_PAD_ALPHABET: &str =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#[test]
fn malformed_keys_fail_without_panicking() {
    let s = signer(KeyAlgorithm::EcdsaP256);
    let good = Jwk::from_signer(&s).unwrap();
    let token = sign_compact(&s, None, Map::new(), b"x").unwrap();
    let mut keys = Vec::new();
    let mut k = good.clone();
    k.y = None;
    keys.push(k);
    let mut k = good.clone();
    k.x = Some("AAAA".into());
    keys.push(k);
    let mut k = good.clone();
    k.x = Some("not base64!".into());
    keys.push(k);
    // a point not on the curve
    let mut k = good.clone();
    k.y = Some(URL_SAFE_NO_PAD.encode([1u8; 32]));
    keys.push(k);
    let mut k = good.clone();
    k.crv = Some("P-521".into());
    keys.push(k);
    let mut k = good.clone();
    k.crv = None;
    keys.push(k);
    let mut k = good.clone();
    k.kty = "oct".into();
    keys.push(k);
    let mut k = good.clone();
    k.kty = "RSA".into();
    keys.push(k);
    let mut k = good.clone();
    k.kty = "OKP".into();
    k.crv = Some("Ed25519".into());
    keys.push(k);
    // a small RSA key
    keys.push(Jwk {
        n: Some(URL_SAFE_NO_PAD.encode([0xc5u8; 128])),
        e: Some("AQAB".into()),
        ..empty_jwk("RSA")
    });
    for k in &keys {
        assert!(is_jws_err(verify_compact_with_key(&token, k)), "{k:?}");
        // the thumbprint is total
        assert_eq!(k.thumbprint().len(), 43);
    }
    verify_compact_with_key(&token, &good).unwrap();
}

#[test]
fn jwk_json_shape() {
    let s = signer(KeyAlgorithm::EcdsaP256);
    let jwk = Jwk::from_signer(&s).unwrap();
    let v = serde_json::to_value(&jwk).unwrap();
    let obj = v.as_object().unwrap();
    let mut names: Vec<&str> = obj.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
    assert_eq!(v["use"], json!("sig"));
    assert_eq!(v["kty"], json!("EC"));

    let ed = Jwk::from_signer(&signer(KeyAlgorithm::Ed25519)).unwrap();
    let v = serde_json::to_value(&ed).unwrap();
    assert!(v.get("y").is_none());
    assert_eq!(v["crv"], json!("Ed25519"));

    // a JWKS with members postern does not model, including private ones, still reads
    let text = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "x": jwk.x, "y": jwk.y, "kid": jwk.kid,
         "d": "secret", "key_ops": ["verify"], "x5c": []},
        {"kty": "oct", "k": "c2VjcmV0"}
    ]})
    .to_string();
    let jwks: Jwks = serde_json::from_str(&text).unwrap();
    assert_eq!(jwks.keys.len(), 2);
    let back = serde_json::to_string(&jwks).unwrap();
    assert!(!back.contains("secret") && !back.contains("\"d\""));
    let token = sign_compact(&s, None, Map::new(), b"x").unwrap();
    verify_compact(&token, &jwks).unwrap();
}

#[test]
fn jws_alg_mapping_and_names() {
    assert_eq!(
        JwsAlg::for_key(KeyAlgorithm::EcdsaP256).unwrap(),
        JwsAlg::Es256
    );
    assert_eq!(
        JwsAlg::for_key(KeyAlgorithm::EcdsaP384).unwrap(),
        JwsAlg::Es384
    );
    assert_eq!(
        JwsAlg::for_key(KeyAlgorithm::Ed25519).unwrap(),
        JwsAlg::EdDsa
    );
    assert_eq!(
        JwsAlg::for_key(KeyAlgorithm::RsaSha256).unwrap(),
        JwsAlg::Rs256
    );
    for a in [JwsAlg::Es256, JwsAlg::Es384, JwsAlg::EdDsa, JwsAlg::Rs256] {
        assert_eq!(a.as_str().parse::<JwsAlg>().unwrap(), a);
        assert_eq!(serde_json::to_value(a).unwrap(), json!(a.as_str()));
    }
    assert!("none".parse::<JwsAlg>().is_err());
}

#[test]
fn ecdsa_der_conversion_pads_and_strips() {
    // r with a leading 0x00 (high bit set), s short (two leading zero bytes dropped)
    let mut r = vec![0x00, 0x80];
    r.extend([0x11; 31]);
    let s = vec![0x22; 30];
    let der = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_bigint_bytes(&r, true);
            w.next().write_bigint_bytes(&s, true);
        })
    });
    let fixed = ecdsa_der_to_fixed(&der, 32).unwrap();
    assert_eq!(fixed.len(), 64);
    assert_eq!(&fixed[..32], &r[1..]);
    assert_eq!(&fixed[32..34], &[0, 0]);
    assert_eq!(&fixed[34..], &s[..]);
    // too long for P-256, garbage, negative
    let big = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_bigint_bytes(&[0x7f; 33], true);
            w.next().write_bigint_bytes(&[1], true);
        })
    });
    assert!(ecdsa_der_to_fixed(&big, 32).is_err());
    assert!(ecdsa_der_to_fixed(b"\x30\x03\x02\x01", 32).is_err());
    assert!(ecdsa_der_to_fixed(&[], 32).is_err());
    let neg = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_bigint_bytes(&[5], false);
            w.next().write_bigint_bytes(&[1], true);
        })
    });
    assert!(ecdsa_der_to_fixed(&neg, 32).is_err());
}

/// Runs `cmd` with `args`; `None` when the program is missing.
fn run(cmd: &str, args: &[&str], stdin: Option<&[u8]>) -> Option<std::process::Output> {
    crate::run_peer(cmd, args, stdin.unwrap_or_default())
}

#[test]
fn rs256_with_an_openssl_generated_key() {
    let Some(out) = run(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        None,
    ) else {
        crate::peer_missing("skipped: openssl not found");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = KeySigner::from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
    let jwk = Jwk::from_signer(&s).unwrap();
    assert_eq!(jwk.kty, "RSA");
    assert_eq!(jwk.e.as_deref(), Some("AQAB"));
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(jwk.n.as_deref().unwrap())
            .unwrap()
            .len(),
        256
    );
    let token = sign_compact(&s, Some("JWT"), Map::new(), b"rsa").unwrap();
    assert!(token.starts_with(&URL_SAFE_NO_PAD.encode(b"{\"alg\":\"RS256\"")));
    let v = verify_compact(&token, &Jwks { keys: vec![jwk] }).unwrap();
    assert_eq!(v.payload, b"rsa");
}

const JWCRYPTO_SCRIPT: &str = r#"
import json, sys
from jwcrypto import jwk, jws
from jwcrypto.common import json_encode
inp = json.loads(sys.stdin.read())
out = {"postern": []}
# verify the tokens postern made, with postern's public keys
keys = jwk.JWKSet.from_json(json.dumps(inp["jwks"]))
for token in inp["tokens"]:
    t = jws.JWS()
    t.deserialize(token)
    kid = t.jose_header["kid"]
    t.verify(keys.get_key(kid))
    out["postern"].append(t.payload.decode())
# make tokens for postern to verify
out["jwks"] = {"keys": []}
out["tokens"] = []
for (kty, crv, alg) in [("EC", "P-256", "ES256"), ("OKP", "Ed25519", "EdDSA")]:
    key = jwk.JWK.generate(kty=kty, crv=crv)
    kid = key.thumbprint()
    pub = json.loads(key.export_public())
    pub["kid"] = kid
    out["jwks"]["keys"].append(pub)
    t = jws.JWS(("from jwcrypto " + alg).encode())
    t.add_signature(key, None, json_encode({"alg": alg, "kid": kid, "typ": "JWT"}))
    out["tokens"].append(t.serialize(compact=True))
print(json.dumps(out))
"#;

#[test]
fn interoperates_with_python_jwcrypto() {
    match run("python3", &["-c", "import jwcrypto"], None) {
        Some(o) if o.status.success() => {}
        _ => {
            crate::peer_missing("skipped: python3 with jwcrypto not available");
            return;
        }
    }
    let signers = [
        signer(KeyAlgorithm::EcdsaP256),
        signer(KeyAlgorithm::Ed25519),
    ];
    let jwks = Jwks {
        keys: signers
            .iter()
            .map(|s| Jwk::from_signer(s).unwrap())
            .collect(),
    };
    let tokens: Vec<String> = signers
        .iter()
        .map(|s| {
            let msg = format!("from postern {}", JwsAlg::for_key(s.algorithm()).unwrap());
            sign_compact(s, Some("JWT"), Map::new(), msg.as_bytes()).unwrap()
        })
        .collect();
    let input = json!({"jwks": jwks, "tokens": tokens}).to_string();
    let out = run("python3", &["-c", JWCRYPTO_SCRIPT], Some(input.as_bytes())).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        out["postern"],
        json!(["from postern ES256", "from postern EdDSA"])
    );
    let theirs: Jwks = serde_json::from_value(out["jwks"].clone()).unwrap();
    let mut payloads = Vec::new();
    for (token, key) in out["tokens"].as_array().unwrap().iter().zip(&theirs.keys) {
        let token = token.as_str().unwrap();
        let v = verify_compact(token, &theirs).unwrap();
        payloads.push(String::from_utf8(v.payload).unwrap());
        // jwcrypto's thumbprint is ours
        assert_eq!(key.kid.as_deref(), Some(&*key.thumbprint()));
    }
    assert_eq!(payloads, ["from jwcrypto ES256", "from jwcrypto EdDSA"]);
}

#[test]
fn spki_jwk_has_the_signers_thumbprint() {
    let mut algs = vec![
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
    ];
    algs.retain(|a| generate(*a).is_ok());
    for alg in algs {
        let s = signer(alg);
        let from_spki = Jwk::from_spki_der(s.spki_der()).unwrap();
        assert_eq!(
            from_spki.thumbprint(),
            Jwk::from_signer(&s).unwrap().thumbprint(),
            "{alg:?}"
        );
    }
    let rsa = rfc7515_a2_key();
    assert!(Jwk::from_spki_der(b"\x30\x00").is_err());
    assert_eq!(rsa.kty, "RSA");
}
