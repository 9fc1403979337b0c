//! End-to-end: the signed feed over HTTPS. Entries appended inside a real broker (sled on disk;
//! no HTTP API appends), checkpoints and proofs fetched with tenant tokens and checked with the
//! gateway's verifier (`postern_api::feed::verify`) and with `postern feed verify`'s code,
//! across a restart on the same data directory and a key rotation; stale checkpoints, wrong
//! keys, tampered entries, rolled-back or forked state and other tenants' tokens all refused.

// A failed unwrap in a test or a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use postern_api::feed::verify::{TrustedKeys, Verifier, VerifyError};
use postern_api::feed::{ConsistencyProof, DeviceProof, FeedEntries};
use postern_broker::feed_verify;
use postern_certs::checkpoint::CheckpointError;
use postern_certs::jws::Jwks;
use postern_e2e::{ADMIN_TOKEN, Broker};

const MAX_AGE: Duration = Duration::minutes(10);

struct Feeds<'a> {
    broker: &'a Broker,
    client: reqwest::Client,
}

impl Feeds<'_> {
    async fn get(&self, path: &str, token: &str, accept: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client
            .get(format!("{}{path}", self.broker.https))
            .bearer_auth(token);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        req.send().await.unwrap()
    }

    async fn ok_text(&self, path: &str, token: &str, accept: Option<&str>) -> String {
        let r = self.get(path, token, accept).await;
        assert_eq!(r.status(), 200, "{path}");
        r.text().await.unwrap()
    }

    async fn ok_json<T: serde::de::DeserializeOwned>(&self, path: &str, token: &str) -> T {
        let r = self.get(path, token, None).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.headers()["cache-control"], "private, no-store");
        r.json().await.unwrap()
    }

    /// Asserts a problem document of `status` and kind.
    async fn problem(&self, path: &str, token: &str, status: u16, kind: &str) -> String {
        let r = self.get(path, token, None).await;
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], format!("urn:postern:problem:{kind}"), "{p}");
        p["detail"].as_str().unwrap_or_default().to_owned()
    }

    async fn jwks(&self) -> Jwks {
        let r = self
            .client
            .get(format!("{}/.well-known/jwks.json", self.broker.https))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/jwk-set+json");
        assert_eq!(r.headers()["cache-control"], "public, max-age=60");
        r.json().await.unwrap()
    }

    async fn admin_post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.broker.https))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn append(&self, tenant: &'static str, device: &str, records: Vec<Value>) -> Vec<u64> {
        let items: Vec<(String, OffsetDateTime, Value)> = records
            .into_iter()
            .map(|r| (device.to_owned(), OffsetDateTime::now_utc(), r))
            .collect();
        self.broker
            .run_inside(move |d| async move { d.feed()?.append(tenant, &items).await })
            .await
            .unwrap()
            .unwrap()
    }
}

fn cli_options(broker: &Broker, token: &str, state: &std::path::Path) -> feed_verify::Options {
    feed_verify::Options {
        url: broker.https.clone(),
        tenant: "acme".into(),
        token: token.into(),
        ca_pem: broker.root_pem().unwrap(),
        state: Some(state.to_path_buf()),
        device: Some("dev_2".into()),
        max_age: MAX_AGE,
        origin: None,
    }
}

#[test]
fn feed_proofs_hold_across_a_restart_and_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("gateway-state.json");
    let rt = tokio::runtime::Runtime::new().unwrap();

    let broker = Broker::start(dir.path()).unwrap();
    let f = Feeds {
        broker: &broker,
        client: broker.client().unwrap(),
    };
    let (acme_token, beta_admin, first) = rt.block_on(async {
        for t in ["acme", "beta"] {
            let (s, _) = f
                .admin_post(
                    "/v1/admin/tenants",
                    ADMIN_TOKEN,
                    json!({"id": t, "name": t}),
                )
                .await;
            assert_eq!(s, 201);
        }
        let (s, tok) = f
            .admin_post(
                "/v1/admin/tokens",
                ADMIN_TOKEN,
                json!({"tenant": "acme", "role": "gateway"}),
            )
            .await;
        assert_eq!(s, 201);
        let acme_token = tok["token"].as_str().unwrap().to_owned();
        let (_, tok) = f
            .admin_post(
                "/v1/admin/tokens",
                ADMIN_TOKEN,
                json!({"tenant": "beta", "role": "admin"}),
            )
            .await;
        let beta_admin = tok["token"].as_str().unwrap().to_owned();

        for d in 0..4 {
            let seqs = f
                .append(
                    "acme",
                    &format!("dev_{d}"),
                    vec![
                        json!({"level": "managed"}),
                        json!({"level": "attested", "d": d}),
                    ],
                )
                .await;
            assert_eq!(seqs, [2 * d, 2 * d + 1]);
        }
        f.append("beta", "dev_b", vec![json!({"level": "registered"})])
            .await;

        let jwks = f.jwks().await;
        assert_eq!(jwks.keys.len(), 3);
        let v = Verifier::new(
            TrustedKeys::Jwks(jwks.clone()),
            "localhost",
            "acme",
            MAX_AGE,
        );
        let now = OffsetDateTime::now_utc();

        // the checkpoint in both forms
        let r = f.get("/feed/v1/acme/checkpoint", &acme_token, None).await;
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        let note = r.text().await.unwrap();
        let cp = v.checkpoint(&note, now).unwrap();
        assert_eq!(cp.size, 8);
        assert_eq!(cp.origin, "localhost/feed/acme");
        let r = f
            .get(
                "/feed/v1/acme/checkpoint",
                &acme_token,
                Some("application/jose"),
            )
            .await;
        assert_eq!(r.headers()["content-type"], "application/jose");
        let token = r.text().await.unwrap();
        assert_eq!(v.checkpoint_jws(&token, now).unwrap(), cp);
        let by_query = f
            .ok_text("/feed/v1/acme/checkpoint?format=jws", &acme_token, None)
            .await;
        assert_eq!(by_query, token);

        // every entry, rebuilt into the checkpoint's root
        let entries: FeedEntries = f
            .ok_json("/feed/v1/acme/entries?start=0&end=8", &acme_token)
            .await;
        assert_eq!(entries.entries.len(), 8);
        assert_eq!(entries.entries[3].entry["device_id"], "dev_1");
        v.entries(&cp, &entries.entries).unwrap();
        // a tampered entry fails
        let mut tampered = entries.entries.clone();
        let mut leaf: Value =
            serde_json::from_slice(&STANDARD.decode(&tampered[3].leaf).unwrap()).unwrap();
        leaf["record"]["level"] = json!("unknown");
        tampered[3].leaf = STANDARD.encode(serde_json::to_vec(&leaf).unwrap());
        assert_eq!(
            v.entries(&cp, &tampered).unwrap_err(),
            VerifyError::Entries("the entries do not rebuild the checkpoint's root".into())
        );

        // a device's newest entry, proven
        let proof: DeviceProof = f.ok_json("/feed/v1/acme/devices/dev_2", &acme_token).await;
        let d = v.device(&proof, "dev_2", now).unwrap();
        assert_eq!(d.seq, 5);
        assert_eq!(d.record, json!({"level": "attested", "d": 2}));
        let mut bad = proof.clone();
        bad.leaf = tampered[3].leaf.clone();
        assert_eq!(
            v.device(&bad, "dev_2", now).unwrap_err(),
            VerifyError::Leaf("leaf_hash is not the leaf's hash".into())
        );

        // stale, and signed by a key not trusted
        let later = now + MAX_AGE + Duration::minutes(1);
        assert!(matches!(
            v.checkpoint(&note, later).unwrap_err(),
            VerifyError::Checkpoint(CheckpointError::TooOld { .. })
        ));
        assert!(matches!(
            v.device(&proof, "dev_2", later).unwrap_err(),
            VerifyError::Checkpoint(CheckpointError::TooOld { .. })
        ));
        let stranger = Verifier::new(
            TrustedKeys::NoteKey(vec![7; 32]),
            "localhost",
            "acme",
            MAX_AGE,
        );
        assert_eq!(
            stranger.checkpoint(&note, now).unwrap_err(),
            VerifyError::Checkpoint(CheckpointError::UnknownKey)
        );
        let mut only_rsa = jwks.clone();
        only_rsa.keys.retain(|k| k.kty == "RSA");
        let rsa_only = Verifier::new(TrustedKeys::Jwks(only_rsa), "localhost", "acme", MAX_AGE);
        assert_eq!(
            rsa_only.checkpoint(&note, now).unwrap_err(),
            VerifyError::NoKey("ed25519")
        );
        assert_eq!(
            rsa_only.checkpoint_jws(&token, now).unwrap_err(),
            VerifyError::Checkpoint(CheckpointError::UnknownKey)
        );

        // another tenant's token reads nothing of acme; no token, nothing at all
        for path in [
            "/feed/v1/acme/checkpoint",
            "/feed/v1/acme/entries?start=0&end=1",
            "/feed/v1/acme/consistency?first=1&second=2",
            "/feed/v1/acme/devices/dev_2",
        ] {
            assert_eq!(
                f.problem(path, &beta_admin, 404, "not-found").await,
                "no feed for tenant acme"
            );
            let r = f
                .client
                .get(format!("{}{path}", broker.https))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
        // but its own, and the operator everything
        let beta_note = f
            .ok_text("/feed/v1/beta/checkpoint", &beta_admin, None)
            .await;
        let beta = Verifier::new(
            TrustedKeys::Jwks(jwks.clone()),
            "localhost",
            "beta",
            MAX_AGE,
        );
        assert_eq!(beta.checkpoint(&beta_note, now).unwrap().size, 1);
        assert_eq!(
            v.checkpoint(
                &f.ok_text("/feed/v1/acme/checkpoint", ADMIN_TOKEN, None)
                    .await,
                now
            )
            .unwrap()
            .size,
            8
        );
        f.problem("/feed/v1/nobody/checkpoint", ADMIN_TOKEN, 404, "not-found")
            .await;

        // bad ranges are 400 problems
        for (path, detail) in [
            (
                "/feed/v1/acme/entries?start=5&end=2",
                "start (5) must be below end (2)",
            ),
            (
                "/feed/v1/acme/entries?start=0&end=9",
                "end (9) is beyond the tree size (8)",
            ),
            (
                "/feed/v1/acme/consistency?first=0&second=2",
                "first must be at least 1",
            ),
            (
                "/feed/v1/acme/consistency?first=3&second=2",
                "first (3) must not be greater than second (2)",
            ),
            (
                "/feed/v1/acme/consistency?first=1&second=9",
                "second (9) is beyond the tree size (8)",
            ),
        ] {
            assert_eq!(f.problem(path, &acme_token, 400, "malformed").await, detail);
        }
        f.problem(
            "/feed/v1/acme/entries?start=-1&end=2",
            &acme_token,
            400,
            "malformed",
        )
        .await;
        f.problem("/feed/v1/acme/entries", &acme_token, 400, "malformed")
            .await;
        f.problem(
            "/feed/v1/acme/checkpoint?format=xml",
            &acme_token,
            400,
            "malformed",
        )
        .await;
        f.problem("/feed/v1/acme/devices/dev_9", &acme_token, 404, "not-found")
            .await;

        // the gateway's first run: no state yet
        let summary = feed_verify::run(&cli_options(&broker, &acme_token, &state), now)
            .await
            .unwrap();
        assert_eq!(summary.previous_size, None);
        assert_eq!(summary.checkpoint.size, 8);
        assert_eq!(summary.device.unwrap().seq, 5);
        (acme_token, beta_admin, cp)
    });
    broker.stop();

    let broker = Broker::start(dir.path()).unwrap();
    let f = Feeds {
        broker: &broker,
        client: broker.client().unwrap(),
    };
    rt.block_on(async {
        let now = OffsetDateTime::now_utc();
        let jwks = f.jwks().await;
        let v = Verifier::new(
            TrustedKeys::Jwks(jwks.clone()),
            "localhost",
            "acme",
            MAX_AGE,
        );
        // the same keys after the restart, and the same tree
        let cp = v
            .checkpoint(
                &f.ok_text("/feed/v1/acme/checkpoint", &acme_token, None)
                    .await,
                now,
            )
            .unwrap();
        assert_eq!((cp.size, cp.root), (first.size, first.root));

        f.append("acme", "dev_2", vec![json!({"level": "unknown"})])
            .await;
        f.append("acme", "dev_9", vec![json!({"level": "managed"}); 4])
            .await;
        let cp2 = v
            .checkpoint(
                &f.ok_text("/feed/v1/acme/checkpoint", &acme_token, None)
                    .await,
                now,
            )
            .unwrap();
        assert_eq!(cp2.size, 13);
        let proof: ConsistencyProof = f
            .ok_json("/feed/v1/acme/consistency?first=8&second=13", &acme_token)
            .await;
        v.advance(&first, &cp2, &proof.proof).unwrap();
        // a proof between other sizes does not prove this step
        let other: ConsistencyProof = f
            .ok_json("/feed/v1/acme/consistency?first=7&second=13", &acme_token)
            .await;
        assert!(matches!(
            v.advance(&first, &cp2, &other.proof).unwrap_err(),
            VerifyError::Consistency(_)
        ));

        // the gateway's second run checks consistency from its saved checkpoint
        let summary = feed_verify::run(&cli_options(&broker, &acme_token, &state), now)
            .await
            .unwrap();
        assert_eq!(summary.previous_size, Some(8));
        assert_eq!(summary.checkpoint.size, 13);
        let d = summary.device.unwrap();
        assert_eq!((d.seq, d.record.clone()), (8, json!({"level": "unknown"})));

        // a state claiming more than the log holds: rolled back, refused, state kept
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        assert_eq!(saved["size"], 13);
        let mut ahead = saved.clone();
        ahead["size"] = json!(20);
        std::fs::write(&state, serde_json::to_vec(&ahead).unwrap()).unwrap();
        let err = feed_verify::run(&cli_options(&broker, &acme_token, &state), now)
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("tree size went back from 20 to 13"),
            "{err:#}"
        );
        let kept: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        assert_eq!(kept, ahead);
        // a state with another root at a size the log passed: the proof fails
        let mut forked = saved.clone();
        forked["size"] = json!(8);
        forked["root"] = json!(STANDARD.encode([9u8; 32]));
        std::fs::write(&state, serde_json::to_vec(&forked).unwrap()).unwrap();
        let err = feed_verify::run(&cli_options(&broker, &acme_token, &state), now)
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("consistency proof refused"),
            "{err:#}"
        );
        // another tenant's token: the command fails on the 404
        let err = feed_verify::run(&cli_options(&broker, &beta_admin, &state), now)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("404"), "{err:#}");

        // key rotation: operators only, audited; old signatures verify during the overlap
        let (s, p) = f
            .admin_post("/v1/admin/keys/rotate", &beta_admin, json!({}))
            .await;
        assert_eq!(
            (s, p["type"].as_str()),
            (403, Some("urn:postern:problem:forbidden"))
        );
        let old_token = f
            .ok_text("/feed/v1/acme/checkpoint?format=jws", &acme_token, None)
            .await;
        let (s, rotation) = f
            .admin_post(
                "/v1/admin/keys/rotate",
                ADMIN_TOKEN,
                json!({"overlap_hours": 2}),
            )
            .await;
        assert_eq!(s, 200, "{rotation}");
        assert_eq!(rotation["activated"].as_array().unwrap().len(), 3);
        let new_jwks = f.jwks().await;
        assert_eq!(new_jwks.keys.len(), 6);
        let v = Verifier::new(
            TrustedKeys::Jwks(new_jwks.clone()),
            "localhost",
            "acme",
            MAX_AGE,
        );
        v.checkpoint_jws(&old_token, now).unwrap();
        let new_note = f
            .ok_text("/feed/v1/acme/checkpoint", &acme_token, None)
            .await;
        v.checkpoint(&new_note, now).unwrap();
        // the set from before the rotation does not know the new key
        let before = Verifier::new(TrustedKeys::Jwks(jwks), "localhost", "acme", MAX_AGE);
        assert_eq!(
            before.checkpoint(&new_note, now).unwrap_err(),
            VerifyError::Checkpoint(CheckpointError::UnknownKey)
        );
        let (s, p) = f
            .admin_post(
                "/v1/admin/keys/rotate",
                ADMIN_TOKEN,
                json!({"overlap_hours": 9000}),
            )
            .await;
        assert_eq!(
            (s, p["detail"].as_str()),
            (400, Some("overlap must be between 0 and 8784 hours"))
        );
        let (s, _) = f
            .admin_post("/v1/admin/keys/rotate", ADMIN_TOKEN, json!({"overlap": 1}))
            .await;
        assert_eq!(s, 400);
        let audit: Vec<Value> = f
            .client
            .get(format!("{}/v1/admin/audit?limit=1000", broker.https))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rotations: Vec<&Value> = audit
            .iter()
            .filter(|e| e["action"] == "keys.rotate")
            .collect();
        assert_eq!(rotations.len(), 1);
        assert_eq!(rotations[0]["details"]["overlap_seconds"], 7200);
    });
    broker.stop();

    // the rotation survived the restart: six keys published
    let broker = Broker::start(dir.path()).unwrap();
    let f = Feeds {
        broker: &broker,
        client: broker.client().unwrap(),
    };
    rt.block_on(async {
        assert_eq!(f.jwks().await.keys.len(), 6);
    });
}
