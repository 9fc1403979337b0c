//! ACME conformance over HTTPS (RFC 8555): the directory and nonces, request authentication,
//! accounts (four key types, external account binding, key rollover, deactivation), orders,
//! `device-attest-01` forgeries as the wire shows them, and revocation. Every refusal is checked
//! for its exact status and `urn:ietf:params:acme:error:*` type, and, where a refusal could
//! have left a trace, for leaving the store as it was (audit log length, account and order
//! state, certificate status).

// A failed unwrap in a test or a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use postern_certs::attestation::testing::apple::AppleTestAuthority;
use postern_certs::{KeyAlgorithm, Signer};
use postern_e2e::acme::{attestation_payload, finalize_payload};

#[path = "acme_protocol/support.rs"]
mod support;

use support::*;

#[test]
fn directory_nonces_and_links() {
    let env = start();
    block_on(async {
        // the directory
        let w = env.get(&env.url("devices", "directory")).await;
        let d = ok(&w, 200);
        assert_eq!(
            w.header("content-type").as_deref(),
            Some("application/json")
        );
        for (member, path) in [
            ("newNonce", "new-nonce"),
            ("newAccount", "new-account"),
            ("newOrder", "new-order"),
            ("revokeCert", "revoke-cert"),
            ("keyChange", "key-change"),
        ] {
            assert_eq!(d[member], env.url("devices", path), "{d}");
        }
        assert_eq!(d["meta"]["externalAccountRequired"], false, "{d}");
        let closed = ok(&env.get(&env.url("closed", "directory")).await, 200);
        assert_eq!(closed["meta"]["externalAccountRequired"], true, "{closed}");
        assert_eq!(closed["newAccount"], env.url("closed", "new-account"));

        // newNonce: HEAD 200, GET 204, each with a nonce that is not cached
        let head = env
            .wire(env.http.head(env.url("devices", "new-nonce")))
            .await;
        let get = env.get(&env.url("devices", "new-nonce")).await;
        assert_eq!(head.status, 200);
        assert_eq!(get.status, 204);
        for w in [&head, &get] {
            assert_eq!(w.header("cache-control").as_deref(), Some("no-store"));
            assert!(w.nonce().len() >= 22, "128 bits or more");
            assert!(
                w.nonce()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "base64url"
            );
        }
        assert_ne!(head.nonce(), get.nonce());

        // an unknown provisioner: 404 for its directory, its nonces and its requests
        let w = env.get(&env.url("nowhere", "directory")).await;
        problem(&w, 404, "malformed");
        let w = env
            .wire(env.http.head(env.url("nowhere", "new-nonce")))
            .await;
        assert_eq!(w.status, 404);
        let (c, _) = env.account("devices", KeyAlgorithm::EcdsaP256).await;
        let url = env.url("nowhere", "new-order");
        let body = c
            .sign(&url, &head.nonce(), Some(&json!({})), false)
            .unwrap();
        let w = env
            .send(
                &url,
                "application/jose+json",
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        problem(&w, 404, "malformed");

        // a nonce is good once
        let acct = c.kid.clone().unwrap();
        let n = env.nonce("devices").await;
        let body = serde_json::to_vec(&c.sign(&acct, &n, None, false).unwrap()).unwrap();
        let first = env.send(&acct, "application/jose+json", body.clone()).await;
        ok(&first, 200);
        let again = env.send(&acct, "application/jose+json", body).await;
        problem(&again, 400, "badNonce");
        // a made-up one is not good at all
        let body = c
            .sign(&acct, "bWFkZS11cC1ub25jZS0xMjM0", None, false)
            .unwrap();
        let made_up = env
            .send(
                &acct,
                "application/jose+json",
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        problem(&made_up, 400, "badNonce");
        // nor a nonce that another provisioner handed out, once used there
        let other = env.nonce("servers").await;
        let (s, _) = env.account("servers", KeyAlgorithm::EcdsaP256).await;
        let s_acct = s.kid.clone().unwrap();
        let body = serde_json::to_vec(&s.sign(&s_acct, &other, None, false).unwrap()).unwrap();
        ok(&env.send(&s_acct, "application/jose+json", body).await, 200);
        let body = serde_json::to_vec(&c.sign(&acct, &other, None, false).unwrap()).unwrap();
        problem(
            &env.send(&acct, "application/jose+json", body).await,
            400,
            "badNonce",
        );

        // the nonce of an error response is fresh and usable
        let body =
            serde_json::to_vec(&c.sign(&acct, &made_up.nonce(), None, false).unwrap()).unwrap();
        ok(&env.send(&acct, "application/jose+json", body).await, 200);

        // every response carries a fresh nonce and the index link, errors too
        let index = format!("<{}>;rel=\"index\"", env.url("devices", "directory"));
        let mut seen = std::collections::BTreeSet::new();
        let replies = [
            head,
            get,
            first,
            again,
            made_up,
            env.get(&env.url("devices", "directory")).await,
            env.post(&c, &acct, None).await,
            env.post(&c, &env.url("devices", "order/unknown"), None)
                .await,
            env.post(&c, &acct, Some(&json!({ "status": "valid" })))
                .await,
        ];
        for w in &replies {
            assert!(seen.insert(w.nonce()), "nonce {} seen twice", w.nonce());
            assert!(
                w.headers_all("link").contains(&index),
                "{} {:?}",
                w.status,
                w.headers_all("link")
            );
        }
        problem(&replies[7], 404, "malformed");
        problem(&replies[8], 400, "malformed");
    });
}

#[test]
fn requests_must_be_signed_for_their_url_with_an_accepted_algorithm() {
    let env = start();
    block_on(async {
        let (c, k) = env.account("servers", KeyAlgorithm::EcdsaP256).await;
        let acct = c.kid.clone().unwrap();
        let new_order = env.url("servers", "new-order");
        let order = json!({ "identifiers": [{ "type": "dns", "value": "jws.test" }] });
        let audit = env.audit_len().await;
        let jose = "application/jose+json";

        // signed for another URL
        let n = env.nonce("servers").await;
        let body = c.sign(&acct, &n, Some(&order), false).unwrap();
        let w = env
            .send(&new_order, jose, serde_json::to_vec(&body).unwrap())
            .await;
        problem(&w, 403, "unauthorized");
        // no url at all
        let n = env.nonce("servers").await;
        let body = signed_with(&*k, json!({ "nonce": n, "kid": acct }), b"{}");
        problem(
            &env.send(&new_order, jose, serde_json::to_vec(&body).unwrap())
                .await,
            403,
            "unauthorized",
        );

        // alg none and HS256, whatever the signature
        for (alg, sig) in [("none", Vec::new()), ("HS256", vec![7u8; 32])] {
            let n = env.nonce("servers").await;
            let header = json!({ "alg": alg, "nonce": n, "url": new_order, "kid": acct });
            let w = env
                .send(
                    &new_order,
                    jose,
                    forged_jws(&header, &serde_json::to_vec(&order).unwrap(), &sig),
                )
                .await;
            problem(&w, 400, "badSignatureAlgorithm");
            // the problem lists what is accepted (RFC 8555 §6.2)
            assert_eq!(
                w.json()["algorithms"],
                json!(["ES256", "ES384", "EdDSA", "RS256"]),
                "{}",
                w.text()
            );
        }

        // both jwk and kid
        let n = env.nonce("servers").await;
        let body = signed_with(
            &*k,
            json!({ "nonce": n, "url": new_order, "kid": acct, "jwk": public_jwk(&*k) }),
            &serde_json::to_vec(&order).unwrap(),
        );
        problem(
            &env.send(&new_order, jose, serde_json::to_vec(&body).unwrap())
                .await,
            400,
            "malformed",
        );
        // neither
        let n = env.nonce("servers").await;
        let body = signed_with(&*k, json!({ "nonce": n, "url": new_order }), b"{}");
        problem(
            &env.send(&new_order, jose, serde_json::to_vec(&body).unwrap())
                .await,
            400,
            "malformed",
        );

        // a signature that does not verify (one bit off), by kid and by jwk
        for use_jwk in [false, true] {
            let url = if use_jwk {
                env.url("servers", "new-account")
            } else {
                new_order.clone()
            };
            let n = env.nonce("servers").await;
            let mut body = c.sign(&url, &n, Some(&order), use_jwk).unwrap();
            let mut sig = URL_SAFE_NO_PAD
                .decode(body["signature"].as_str().unwrap())
                .unwrap();
            sig[10] ^= 1;
            body["signature"] = json!(b64(&sig));
            problem(
                &env.send(&url, jose, serde_json::to_vec(&body).unwrap())
                    .await,
                400,
                "malformed",
            );
        }
        // signed by another key than the account's
        let mut impostor = env.client("servers", key(KeyAlgorithm::EcdsaP256)).await;
        impostor.kid = Some(acct.clone());
        problem(
            &env.post(&impostor, &new_order, Some(&order)).await,
            400,
            "malformed",
        );

        // the kid of an account that does not exist, here or at all
        let mut ghost = env.client("servers", key(KeyAlgorithm::EcdsaP256)).await;
        ghost.kid = Some(env.url("servers", "account/AAAAAAAAAAAAAAAAAAAAAA"));
        problem(
            &env.post(&ghost, &new_order, Some(&order)).await,
            400,
            "accountDoesNotExist",
        );
        let (d, _) = env.account("devices", KeyAlgorithm::EcdsaP256).await;
        let mut elsewhere = env.client("servers", k.clone()).await;
        elsewhere.kid = d.kid.clone();
        problem(
            &env.post(&elsewhere, &new_order, Some(&order)).await,
            400,
            "accountDoesNotExist",
        );
        let audit = audit + 1; // the devices account

        // a jwk where an account is needed
        let mut anon = env.client("servers", k.clone()).await;
        anon.kid = None;
        problem(
            &env.post(&anon, &new_order, Some(&order)).await,
            400,
            "malformed",
        );

        // not application/jose+json: malformed, and the nonce is not used up
        let n = env.nonce("servers").await;
        let body = serde_json::to_vec(&c.sign(&acct, &n, None, false).unwrap()).unwrap();
        for ct in ["application/json", "text/plain", ""] {
            let w = env.send(&acct, ct, body.clone()).await;
            problem(&w, 400, "malformed");
        }
        ok(&env.send(&acct, jose, body).await, 200);

        // a body over the limit (64 KiB): 413, as a problem document
        let big = serde_json::to_vec(&json!({
            "protected": "e30",
            "payload": "A".repeat(70 * 1024),
            "signature": "",
        }))
        .unwrap();
        let w = env.send(&new_order, jose, big).await;
        assert_eq!(w.status, 413, "{}", w.text());
        assert_eq!(
            w.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        assert_eq!(w.json()["status"], 413);

        // not a JWS at all
        for junk in [
            &b"{}"[..],
            b"not json",
            b"",
            b"{\"protected\":\"!\",\"payload\":\"\",\"signature\":\"\"}",
        ] {
            problem(
                &env.send(&new_order, jose, junk.to_vec()).await,
                400,
                "malformed",
            );
        }

        // none of it created an order or wrote anything
        assert_eq!(env.audit_len().await, audit);
        let orders = ok(&env.post(&c, &format!("{acct}/orders"), None).await, 200);
        assert_eq!(orders["orders"], json!([]), "{orders}");
    });
}

#[test]
fn accounts_of_four_key_types_update_roll_over_and_deactivate() {
    let env = start();
    block_on(async {
        // ES256, ES384, EdDSA and RS256 keys open accounts, and sign with kid afterwards
        let mut keys = vec![
            ("ES256", key(KeyAlgorithm::EcdsaP256)),
            ("ES384", key(KeyAlgorithm::EcdsaP384)),
            ("EdDSA", key(KeyAlgorithm::Ed25519)),
        ];
        if let Some(k) = rsa_key() {
            keys.push(("RS256", k));
        }
        for (alg, k) in &keys {
            let c = env.account_with("servers", k.clone()).await;
            let acct = c.kid.clone().unwrap();
            let protected: Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(
                        c.sign(&acct, "n", None, false).unwrap()["protected"]
                            .as_str()
                            .unwrap(),
                    )
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(protected["alg"], *alg);
            let v = ok(&env.post(&c, &acct, None).await, 200);
            assert_eq!(v["status"], "valid");
            assert_eq!(v["orders"], format!("{acct}/orders"));
            // the same key again: the same account, 200
            let again = env
                .new_account(&c, json!({ "termsOfServiceAgreed": true }))
                .await;
            ok(&again, 200);
            assert_eq!(again.location(), acct);
            let existing = env
                .new_account(&c, json!({ "onlyReturnExisting": true }))
                .await;
            ok(&existing, 200);
            assert_eq!(existing.location(), acct);
            // an order signed by it
            let w = env
                .post(
                    &c,
                    &env.url("servers", "new-order"),
                    Some(&json!({ "identifiers": [{ "type": "dns", "value": format!("{}.test", alg.to_lowercase()) }] })),
                )
                .await;
            ok(&w, 201);
        }

        // onlyReturnExisting for a key without an account creates none
        let audit = env.audit_len().await;
        let stranger = env.client("servers", key(KeyAlgorithm::EcdsaP256)).await;
        let w = env
            .new_account(&stranger, json!({ "onlyReturnExisting": true }))
            .await;
        problem(&w, 400, "accountDoesNotExist");
        // contacts: a scheme other than mailto, a malformed address, too many
        for (contact, kind) in [
            (json!(["tel:+15555550100"]), "unsupportedContact"),
            (json!(["mailto:nobody"]), "invalidContact"),
            (
                json!(["mailto:a@example.test,b@example.test"]),
                "invalidContact",
            ),
            (
                json!(["mailto:a@example.test?subject=hi"]),
                "invalidContact",
            ),
        ] {
            let w = env
                .new_account(&stranger, json!({ "contact": contact }))
                .await;
            problem(&w, 400, kind);
        }
        // newAccount signed with a kid
        let (a, ka) = env.account("servers", KeyAlgorithm::EcdsaP256).await;
        let audit = audit + 1;
        problem(
            &env.post(&a, &env.url("servers", "new-account"), Some(&json!({})))
                .await,
            400,
            "malformed",
        );
        assert_eq!(env.audit_len().await, audit);
        problem(
            &env.new_account(&stranger, json!({ "onlyReturnExisting": true }))
                .await,
            400,
            "accountDoesNotExist",
        );

        // contact update, and refused updates leave it
        let acct = a.kid.clone().unwrap();
        let v = ok(
            &env.post(
                &a,
                &acct,
                Some(&json!({ "contact": ["mailto:new@example.test"] })),
            )
            .await,
            200,
        );
        assert_eq!(v["contact"], json!(["mailto:new@example.test"]));
        let audit = audit + 1;
        for (payload, kind) in [
            (
                json!({ "contact": ["http://example.test"] }),
                "unsupportedContact",
            ),
            (json!({ "contact": ["mailto:"] }), "invalidContact"),
            (json!({ "status": "valid" }), "malformed"),
            (json!({ "contact": "mailto:x@example.test" }), "malformed"),
        ] {
            problem(&env.post(&a, &acct, Some(&payload)).await, 400, kind);
        }
        let v = ok(&env.post(&a, &acct, None).await, 200);
        assert_eq!(v["contact"], json!(["mailto:new@example.test"]));
        assert_eq!(env.audit_len().await, audit);

        // the orders list holds this account's orders only
        let mut mine = Vec::new();
        for name in ["one.test", "two.test"] {
            let w = env
                .post(
                    &a,
                    &env.url("servers", "new-order"),
                    Some(&json!({ "identifiers": [{ "type": "dns", "value": name }] })),
                )
                .await;
            ok(&w, 201);
            mine.push(w.location());
        }
        let list = ok(&env.post(&a, &format!("{acct}/orders"), None).await, 200);
        let mut got: Vec<String> = list["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        got.sort();
        mine.sort();
        assert_eq!(got, mine);
        let (b, kb) = env.account("servers", KeyAlgorithm::EcdsaP256).await;
        problem(
            &env.post(&b, &format!("{acct}/orders"), None).await,
            403,
            "unauthorized",
        );
        problem(&env.post(&b, &acct, None).await, 403, "unauthorized");

        // keyChange: the inner JWS by the new key names the account and the old key
        let key_change = env.url("servers", "key-change");
        let new_key = key(KeyAlgorithm::EcdsaP384);
        let inner = |new: &dyn Signer, old: &dyn Signer, account: &str| {
            signed_with(
                new,
                json!({ "jwk": public_jwk(new), "url": key_change }),
                &serde_json::to_vec(&json!({ "account": account, "oldKey": public_jwk(old) }))
                    .unwrap(),
            )
        };
        // refused: the new key is another account's, the old key is not this account's, the
        // inner JWS names another account or is not signed by the key it carries
        let audit = env.audit_len().await;
        let w = env
            .post(&a, &key_change, Some(&inner(&*kb, &*ka, &acct)))
            .await;
        problem(&w, 409, "malformed");
        problem(
            &env.post(&a, &key_change, Some(&inner(&*new_key, &*kb, &acct)))
                .await,
            403,
            "unauthorized",
        );
        problem(
            &env.post(
                &a,
                &key_change,
                Some(&inner(&*new_key, &*ka, b.kid.as_deref().unwrap())),
            )
            .await,
            400,
            "malformed",
        );
        let mut forged = inner(&*new_key, &*ka, &acct);
        forged["signature"] = inner(&*kb, &*ka, &acct)["signature"].clone();
        problem(
            &env.post(&a, &key_change, Some(&forged)).await,
            400,
            "malformed",
        );
        assert_eq!(env.audit_len().await, audit);
        ok(&env.post(&a, &acct, None).await, 200);

        let w = env
            .post(&a, &key_change, Some(&inner(&*new_key, &*ka, &acct)))
            .await;
        ok(&w, 200);
        // the old key no longer works, the new one does
        problem(&env.post(&a, &acct, None).await, 400, "malformed");
        let old = env.client("servers", ka.clone()).await;
        problem(
            &env.new_account(&old, json!({ "onlyReturnExisting": true }))
                .await,
            400,
            "accountDoesNotExist",
        );
        let mut rolled = env.client("servers", new_key.clone()).await;
        let w = env
            .new_account(&rolled, json!({ "onlyReturnExisting": true }))
            .await;
        ok(&w, 200);
        assert_eq!(w.location(), acct);
        rolled.kid = Some(acct.clone());
        let v = ok(&env.post(&rolled, &acct, None).await, 200);
        assert_eq!(v["contact"], json!(["mailto:new@example.test"]));
        // the old key is free again: it can open a new account
        let w = env
            .new_account(&old, json!({ "termsOfServiceAgreed": true }))
            .await;
        ok(&w, 201);
        assert_ne!(w.location(), acct);

        // deactivation: then every request of the account is refused with 401
        let v = ok(
            &env.post(&rolled, &acct, Some(&json!({ "status": "deactivated" })))
                .await,
            200,
        );
        assert_eq!(v["status"], "deactivated");
        let audit = env.audit_len().await;
        problem(&env.post(&rolled, &acct, None).await, 401, "unauthorized");
        problem(
            &env.post(
                &rolled,
                &env.url("servers", "new-order"),
                Some(&json!({ "identifiers": [{ "type": "dns", "value": "late.test" }] })),
            )
            .await,
            401,
            "unauthorized",
        );
        problem(
            &env.post(&rolled, &mine[0], None).await,
            401,
            "unauthorized",
        );
        problem(
            &env.post(&rolled, &acct, Some(&json!({ "status": "deactivated" })))
                .await,
            401,
            "unauthorized",
        );
        problem(
            &env.new_account(&rolled, json!({ "termsOfServiceAgreed": true }))
                .await,
            401,
            "unauthorized",
        );
        assert_eq!(env.audit_len().await, audit);
    });
}

#[test]
fn external_account_binding() {
    let env = start();
    block_on(async {
        let new_account = env.url("closed", "new-account");
        let audit = env.audit_len().await;

        // no binding: refused, nothing created
        let k1 = key(KeyAlgorithm::EcdsaP256);
        let c1 = env.client("closed", k1.clone()).await;
        problem(
            &env.new_account(&c1, json!({ "termsOfServiceAgreed": true }))
                .await,
            403,
            "externalAccountRequired",
        );
        problem(
            &env.new_account(&c1, json!({ "onlyReturnExisting": true }))
                .await,
            400,
            "accountDoesNotExist",
        );
        assert_eq!(env.audit_len().await, audit);

        // a key from the admin API binds the account
        let (kid, hmac) = env.eab_key("closed").await;
        let audit = audit + 1;
        let w = env
            .new_account(
                &c1,
                json!({ "termsOfServiceAgreed": true, "externalAccountBinding": eab(&kid, &hmac, &*k1, &new_account) }),
            )
            .await;
        let v = ok(&w, 201);
        assert_eq!(v["externalAccountBinding"]["kid"], kid, "{v}");
        let audit = audit + 1;

        // the same key a second time, for another account key
        let k2 = key(KeyAlgorithm::Ed25519);
        let c2 = env.client("closed", k2.clone()).await;
        problem(
            &env.new_account(
                &c2,
                json!({ "externalAccountBinding": eab(&kid, &hmac, &*k2, &new_account) }),
            )
            .await,
            403,
            "unauthorized",
        );

        // a wrong MAC, a MAC over another account key, an unknown kid, another URL, and a
        // key of this provisioner used at another
        let (kid2, hmac2) = env.eab_key("closed").await;
        let audit = audit + 1;
        let wrong = b64(&[0x55u8; 32]);
        let (other_kid, other_hmac) = env.eab_key("closed").await;
        let mut hs512 = eab(&kid2, &hmac2, &*k2, &new_account);
        hs512["protected"] = json!(b64(&serde_json::to_vec(
            &json!({ "alg": "HS512", "kid": kid2, "url": new_account })
        )
        .unwrap()));
        let audit = audit + 1;
        for binding in [
            eab(&kid2, &wrong, &*k2, &new_account),
            eab(&kid2, &hmac2, &*k1, &new_account),
            eab("eab_unknown", &hmac2, &*k2, &new_account),
            eab(&kid2, &hmac2, &*k2, &env.url("closed", "new-order")),
            hs512,
        ] {
            problem(
                &env.new_account(&c2, json!({ "externalAccountBinding": binding }))
                    .await,
                403,
                "unauthorized",
            );
        }
        let at_servers = env.client("servers", k2.clone()).await;
        problem(
            &env.new_account(
                &at_servers,
                json!({ "externalAccountBinding": eab(&other_kid, &other_hmac, &*k2, &env.url("servers", "new-account")) }),
            )
            .await,
            403,
            "unauthorized",
        );
        assert_eq!(env.audit_len().await, audit);

        // the refused attempts did not use up kid2
        let w = env
            .new_account(
                &c2,
                json!({ "externalAccountBinding": eab(&kid2, &hmac2, &*k2, &new_account) }),
            )
            .await;
        assert_eq!(ok(&w, 201)["externalAccountBinding"]["kid"], kid2);
    });
}

#[test]
fn orders_are_checked_and_private_to_their_account() {
    let env = start();
    block_on(async {
        env.register_device(SERIAL).await;
        let (a, _) = env.account("devices", KeyAlgorithm::EcdsaP256).await;
        let (b, _) = env.account("devices", KeyAlgorithm::EcdsaP256).await;
        let new_order = env.url("devices", "new-order");
        let o = env.order_device(&a, "permanent-identifier", SERIAL).await;
        let finalize = o.body["finalize"].as_str().unwrap().to_owned();
        let csr = finalize_payload(&DeviceKey::new().csr());

        // finalize before the order is ready
        let w = env.post(&a, &finalize, Some(&csr)).await;
        problem(&w, 403, "orderNotReady");
        assert_eq!(
            ok(&env.post(&a, &o.url, None).await, 200)["status"],
            "pending"
        );

        // another account reaches none of it
        for url in [&o.url, &o.authz, &o.chall] {
            problem(&env.post(&b, url, None).await, 403, "unauthorized");
        }
        problem(
            &env.post(&b, &finalize, Some(&csr)).await,
            403,
            "unauthorized",
        );
        let key = DeviceKey::new();
        let att = env.apple.attest(&env.statement(&key, &o.token));
        problem(
            &env.post(&b, &o.chall, Some(&attestation_payload(&att)))
                .await,
            403,
            "unauthorized",
        );
        problem(
            &env.post(&b, &o.authz, Some(&json!({ "status": "deactivated" })))
                .await,
            403,
            "unauthorized",
        );
        let authz = ok(&env.post(&a, &o.authz, None).await, 200);
        assert_eq!(authz["status"], "pending");
        assert_eq!(authz["challenges"][0]["status"], "pending");

        // unknown resources: 404
        for rest in [
            "order/nope",
            "order/nope/finalize",
            "authz/nope",
            "chall/nope/device-attest-01",
            "cert/00ff",
        ] {
            let payload = rest.ends_with("finalize").then_some(&csr);
            problem(
                &env.post(&a, &env.url("devices", rest), payload).await,
                404,
                "malformed",
            );
        }
        // an order of this provisioner is not found at another
        let (s, _) = env.account("servers", KeyAlgorithm::EcdsaP256).await;
        let id = o.url.rsplit('/').next().unwrap();
        problem(
            &env.post(&s, &env.url("servers", &format!("order/{id}")), None)
                .await,
            404,
            "malformed",
        );

        // newOrder refusals create no order
        for (payload, status, kind) in [
            (
                json!({ "identifiers": [{ "type": "dns", "value": "device.test" }] }),
                400,
                "unsupportedIdentifier",
            ),
            (
                json!({ "identifiers": [{ "type": "dns", "value": "a.test" }, { "type": "dns", "value": "b.test" }] }),
                400,
                "unsupportedIdentifier",
            ),
            (
                json!({ "identifiers": [{ "type": "ip", "value": "192.0.2.1" }] }),
                400,
                "unsupportedIdentifier",
            ),
            (
                json!({ "identifiers": [{ "type": "hardware-module", "value": SERIAL }] }),
                400,
                "malformed",
            ),
            (
                json!({ "identifiers": [{ "type": "hardware-module", "value": format!("{SERIAL}/not-an-oid") }] }),
                400,
                "malformed",
            ),
            (
                json!({ "identifiers": [{ "type": "permanent-identifier", "value": "" }] }),
                400,
                "malformed",
            ),
            (
                json!({ "identifiers": [{ "type": "permanent-identifier", "value": SERIAL }], "notBefore": "2030-01-01T00:00:00Z" }),
                400,
                "malformed",
            ),
            (
                json!({ "identifiers": [{ "type": "permanent-identifier", "value": SERIAL }], "notAfter": "2030-01-01T00:00:00Z" }),
                400,
                "malformed",
            ),
            (json!({ "identifiers": [] }), 400, "malformed"),
            (
                json!({ "identifiers": [{ "type": "permanent-identifier", "value": "NOT-IN-INVENTORY" }] }),
                400,
                "rejectedIdentifier",
            ),
        ] {
            let w = env.post(&a, &new_order, Some(&payload)).await;
            problem(&w, status, kind);
        }
        let orders = ok(
            &env.post(&a, &format!("{}/orders", a.kid.as_deref().unwrap()), None)
                .await,
            200,
        );
        assert_eq!(orders["orders"], json!([o.url]), "{orders}");
        // a hardware-module identifier with its type OID is served
        let w = env
            .post(&a, &new_order, Some(&json!({ "identifiers": [{ "type": "hardware-module", "value": format!("{SERIAL}/1.2.840.113635.100.8.9.1") }] })))
            .await;
        ok(&w, 201);

        // orders and certificates are read with POST-as-GET only
        problem(
            &env.post(&a, &o.url, Some(&json!({}))).await,
            400,
            "malformed",
        );
        let issued = env.enroll(&a).await;
        let cert = env.url("devices", &format!("cert/{}", issued.serial));
        problem(
            &env.post(&a, &cert, Some(&json!({}))).await,
            400,
            "malformed",
        );
        problem(&env.post(&b, &cert, None).await, 403, "unauthorized");
        let w = env.post(&a, &cert, None).await;
        assert_eq!(w.status, 200);
        assert_eq!(postern_e2e::pem_der_blocks(&w.text())[0], issued.der);
        // a certificate is not served at another provisioner
        problem(
            &env.post(
                &s,
                &env.url("servers", &format!("cert/{}", issued.serial)),
                None,
            )
            .await,
            404,
            "malformed",
        );
    });
}

#[test]
fn forged_device_attestations_are_refused_on_the_wire() {
    let env = start();
    block_on(async {
        env.register_device(SERIAL).await;
        let (c, _) = env.account("devices", KeyAlgorithm::EcdsaP256).await;
        let key = DeviceKey::new();
        let now = OffsetDateTime::now_utc();
        let other_root = AppleTestAuthority::new();

        type Forge<'a> = Box<dyn Fn(&str) -> Vec<u8> + 'a>;
        // (what is forged, what the problem's detail says, the forgery)
        let cases: Vec<(&str, &str, Forge<'_>)> = vec![
            (
                "truncated CBOR",
                "CBOR",
                Box::new(|t: &str| {
                    let att = env.apple.attest(&env.statement(&key, t));
                    att[..att.len() / 2].to_vec()
                }),
            ),
            (
                "fmt Apple",
                "format \"Apple\" is not accepted",
                Box::new(|t: &str| {
                    let att = env.apple.attest(&env.statement(&key, t));
                    let at = att.windows(6).position(|w| w == b"\x65apple").unwrap();
                    let mut forged = att.clone();
                    forged[at + 1] = b'A';
                    forged
                }),
            ),
            (
                "no freshness code",
                "no freshness code",
                Box::new(|t: &str| {
                    let mut s = env.statement(&key, t);
                    s.freshness = None;
                    env.apple.attest(&s)
                }),
            ),
            (
                "another token's freshness code",
                "not sha-256 of the challenge token",
                Box::new(|t: &str| {
                    let mut s = env.statement(&key, t);
                    s.freshness = Some(vec![0u8; 32]);
                    env.apple.attest(&s)
                }),
            ),
            (
                "untrusted root",
                "untrusted",
                Box::new(|t: &str| other_root.attest(&env.statement(&key, t))),
            ),
            (
                "expired leaf",
                "expired",
                Box::new(|t: &str| {
                    let mut s = env.statement(&key, t);
                    s.not_before = now - Duration::days(120);
                    s.not_after = now - Duration::days(1);
                    env.apple.attest(&s)
                }),
            ),
            (
                "another device",
                "not the order's permanent-identifier",
                Box::new(|t: &str| {
                    let mut s = env.statement(&key, t);
                    s.serial = Some("C02SOMEONEELSE".into());
                    s.udid = None;
                    env.apple.attest(&s)
                }),
            ),
        ];
        for (name, says, forge) in &cases {
            let o = env.order_device(&c, "permanent-identifier", SERIAL).await;
            let w = env
                .post(&c, &o.chall, Some(&attestation_payload(&forge(&o.token))))
                .await;
            // the challenge answers 200 and carries the error (RFC 8555 §7.5.1)
            let ch = ok(&w, 200);
            assert_eq!(ch["status"], "invalid", "{name}: {ch}");
            assert_eq!(
                ch["error"]["type"],
                format!("{URN}badAttestationStatement"),
                "{name}: {ch}"
            );
            assert!(
                w.headers_all("link")
                    .contains(&format!("<{}>;rel=\"up\"", o.authz)),
                "{name}"
            );
            let detail = ch["error"]["detail"].as_str().unwrap();
            assert!(detail.contains(says), "{name}: {detail}");
            let authz = ok(&env.post(&c, &o.authz, None).await, 200);
            assert_eq!(authz["status"], "invalid", "{name}: {authz}");
            let order = ok(&env.post(&c, &o.url, None).await, 200);
            assert_eq!(order["status"], "invalid", "{name}: {order}");
            // and it is not answered again
            problem(
                &env.post(&c, &o.chall, Some(&attestation_payload(&forge(&o.token))))
                    .await,
                400,
                "malformed",
            );
        }

        // no attObj, or one that is not base64url: malformed, and the challenge stays pending
        let o = env.order_device(&c, "permanent-identifier", SERIAL).await;
        let audit = env.audit_len().await;
        for payload in [
            json!({}),
            json!({ "attObj": "not base64url!" }),
            json!({ "attObj": 7 }),
        ] {
            problem(
                &env.post(&c, &o.chall, Some(&payload)).await,
                400,
                "malformed",
            );
        }
        let ch = ok(&env.post(&c, &o.chall, None).await, 200);
        assert_eq!(ch["status"], "pending", "{ch}");
        assert_eq!(
            ok(&env.post(&c, &o.authz, None).await, 200)["status"],
            "pending"
        );
        assert_eq!(env.audit_len().await, audit);
        // and a genuine statement still validates it
        let att = env.apple.attest(&env.statement(&key, &o.token));
        let ch = ok(
            &env.post(&c, &o.chall, Some(&attestation_payload(&att)))
                .await,
            200,
        );
        assert_eq!(ch["status"], "valid", "{ch}");
        assert_eq!(
            ok(&env.post(&c, &o.url, None).await, 200)["status"],
            "ready"
        );
    });
}

#[test]
fn revocation_by_account_and_by_certificate_key() {
    let env = start();
    block_on(async {
        env.register_device(SERIAL).await;
        let (owner, _) = env.account("devices", KeyAlgorithm::EcdsaP256).await;
        let (stranger, _) = env.account("devices", KeyAlgorithm::Ed25519).await;
        let revoke_url = env.url("devices", "revoke-cert");
        let first = env.enroll(&owner).await;
        let second = env.enroll(&owner).await;
        let payload = |i: &Issued, reason: Option<u8>| {
            let mut p = json!({ "certificate": b64(&i.der) });
            if let Some(r) = reason {
                p["reason"] = json!(r);
            }
            p
        };
        let audit = env.audit_len().await;

        // refused: another account, another certificate's key, reasons not accepted, a
        // certificate not issued here
        problem(
            &env.post(&stranger, &revoke_url, Some(&payload(&first, None)))
                .await,
            403,
            "unauthorized",
        );
        let by_second_key = env.client("devices", second.key.signer()).await;
        problem(
            &env.post(&by_second_key, &revoke_url, Some(&payload(&first, None)))
                .await,
            403,
            "unauthorized",
        );
        for reason in [2, 6, 7, 8, 10, 255] {
            problem(
                &env.post(&owner, &revoke_url, Some(&payload(&first, Some(reason))))
                    .await,
                400,
                "badRevocationReason",
            );
        }
        let foreign = rcgen::CertificateParams::new(vec!["x.test".to_owned()])
            .unwrap()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        problem(
            &env.post(
                &owner,
                &revoke_url,
                Some(&json!({ "certificate": b64(foreign.der()) })),
            )
            .await,
            404,
            "malformed",
        );
        problem(
            &env.post(&owner, &revoke_url, Some(&json!({ "certificate": "%%%" })))
                .await,
            400,
            "malformed",
        );
        assert_eq!(env.audit_len().await, audit);
        assert_eq!(env.certificate(&first.serial).await["status"], "good");
        assert!(!env.crl_serials().await.contains(&first.serial));

        // by the account that obtained it
        let w = env
            .post(&owner, &revoke_url, Some(&payload(&first, Some(1))))
            .await;
        assert_eq!(w.status, 200, "{}", w.text());
        assert!(!w.nonce().is_empty());
        let rec = env.certificate(&first.serial).await;
        assert_eq!(rec["status"], "revoked", "{rec}");
        assert_eq!(rec["revocation_reason"], "keyCompromise", "{rec}");
        assert!(env.crl_serials().await.contains(&first.serial));
        // twice
        problem(
            &env.post(&owner, &revoke_url, Some(&payload(&first, None)))
                .await,
            400,
            "alreadyRevoked",
        );

        // by the certificate's own key (a jwk equal to the device key)
        let by_key = env.client("devices", second.key.signer()).await;
        assert!(by_key.kid.is_none());
        let w = env
            .post(&by_key, &revoke_url, Some(&payload(&second, Some(4))))
            .await;
        assert_eq!(w.status, 200, "{}", w.text());
        let rec = env.certificate(&second.serial).await;
        assert_eq!(rec["status"], "revoked", "{rec}");
        assert_eq!(rec["revocation_reason"], "superseded", "{rec}");
        let listed = env.crl_serials().await;
        assert!(
            listed.contains(&first.serial) && listed.contains(&second.serial),
            "{listed:?}"
        );
        problem(
            &env.post(&by_key, &revoke_url, Some(&payload(&second, None)))
                .await,
            400,
            "alreadyRevoked",
        );
        // each revocation: its certificate.revoke entry and the device's posture.update
        assert_eq!(env.audit_len().await, audit + 4);
    });
}
