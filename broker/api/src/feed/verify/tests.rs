#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use super::*;
use postern_certs::jws::Jwk;
use postern_certs::signer::generate;
use postern_certs::{KeyAlgorithm, KeySigner, Signer};
use serde_json::json;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-05-01 10:00 UTC);
const ORIGIN: &str = "broker.example";
const TENANT: &str = "acme";
const MAX_AGE: Duration = Duration::minutes(10);

/// A broker in miniature: a log of leaves and the keys that sign it.
struct Log {
    ed: KeySigner,
    es: KeySigner,
    leaves: Vec<Vec<u8>>,
}

impl Log {
    fn new(n: usize) -> Log {
        let mut log = Log {
            ed: KeySigner::from_pkcs8(generate(KeyAlgorithm::Ed25519).unwrap().as_der()).unwrap(),
            es: KeySigner::from_pkcs8(generate(KeyAlgorithm::EcdsaP256).unwrap().as_der()).unwrap(),
            leaves: vec![],
        };
        for i in 0..n {
            log.push(
                &format!("dev_{}", i % 3),
                json!({"level": "managed", "i": i}),
            );
        }
        log
    }

    fn push(&mut self, device: &str, record: Value) {
        let v = json!({
            "at": "2026-05-01T09:00:00Z",
            "device_id": device,
            "record": record,
            "seq": self.leaves.len(),
            "tenant": TENANT,
        });
        self.leaves.push(serde_json::to_vec(&v).unwrap());
    }

    fn tree(&self, size: usize) -> MerkleTree {
        MerkleTree::from_leaf_hashes(
            self.leaves[..size]
                .iter()
                .map(|l| merkle::leaf_hash(l))
                .collect(),
        )
    }

    fn checkpoint(&self, size: usize, at: OffsetDateTime) -> Checkpoint {
        Checkpoint {
            origin: super::super::log_origin(ORIGIN, TENANT),
            size: size as u64,
            root: self.tree(size).root(),
            timestamp: at,
        }
    }

    fn note(&self, size: usize, at: OffsetDateTime) -> String {
        let cp = self.checkpoint(size, at);
        checkpoint::sign_note(&cp, &cp.origin, &self.ed).unwrap()
    }

    fn jwks(&self) -> Jwks {
        Jwks {
            keys: vec![
                Jwk::from_signer(&self.es).unwrap(),
                Jwk::from_signer(&self.ed).unwrap(),
            ],
        }
    }

    fn verifier(&self) -> Verifier {
        Verifier::new(TrustedKeys::Jwks(self.jwks()), ORIGIN, TENANT, MAX_AGE)
    }

    fn entries(&self) -> Vec<FeedEntry> {
        self.leaves
            .iter()
            .enumerate()
            .map(|(i, l)| FeedEntry {
                seq: i as u64,
                leaf: STANDARD.encode(l),
                entry: serde_json::from_slice(l).unwrap(),
            })
            .collect()
    }

    fn device_proof(
        &self,
        seq: usize,
        at: OffsetDateTime,
        statement_claims: Option<Value>,
    ) -> DeviceProof {
        let size = self.leaves.len();
        let leaf = &self.leaves[seq];
        let hash = merkle::leaf_hash(leaf);
        let v: Value = serde_json::from_slice(leaf).unwrap();
        let cp = self.checkpoint(size, at);
        let claims = statement_claims.unwrap_or_else(|| {
            json!({
                "iss": cp.origin, "tenant": TENANT, "device_id": v["device_id"], "seq": seq,
                "leaf_hash": URL_SAFE_NO_PAD.encode(hash), "tree_size": size,
                "iat": at.unix_timestamp(), "exp": at.unix_timestamp() + 600,
                "record": v["record"],
            })
        });
        DeviceProof {
            tenant: TENANT.into(),
            device_id: v["device_id"].as_str().unwrap().into(),
            seq: seq as u64,
            leaf: STANDARD.encode(leaf),
            leaf_hash: STANDARD.encode(hash),
            record: v["record"].clone(),
            tree_size: size as u64,
            checkpoint: self.note(size, at),
            checkpoint_jws: checkpoint::to_jws(&cp, &self.es).unwrap(),
            inclusion: encode_hashes(
                &self
                    .tree(size)
                    .inclusion_proof(seq as u64, size as u64)
                    .unwrap(),
            ),
            statement: jws::sign_compact(
                &self.es,
                Some(STATEMENT_TYP),
                serde_json::Map::new(),
                &serde_json::to_vec(&claims).unwrap(),
            )
            .unwrap(),
        }
    }
}

#[test]
fn a_good_feed_verifies_in_every_form() {
    let log = Log::new(7);
    let v = log.verifier();
    let cp = v.checkpoint(&log.note(7, NOW), NOW).unwrap();
    assert_eq!(cp, log.checkpoint(7, NOW));
    let jws_cp = v
        .checkpoint_jws(
            &checkpoint::to_jws(&log.checkpoint(7, NOW), &log.es).unwrap(),
            NOW,
        )
        .unwrap();
    assert_eq!(jws_cp, cp);
    v.entries(&cp, &log.entries()).unwrap();
    let old = log.checkpoint(3, NOW);
    let proof = encode_hashes(&log.tree(7).consistency_proof(3, 7).unwrap());
    v.advance(&old, &cp, &proof).unwrap();
    let d = v
        .device(&log.device_proof(4, NOW, None), "dev_1", NOW)
        .unwrap();
    assert_eq!(d.seq, 4);
    assert_eq!(d.record, json!({"level": "managed", "i": 4}));
    // a pinned note key alone checks notes
    let pinned = Verifier::new(
        TrustedKeys::NoteKey(log.ed.public_key_raw().to_vec()),
        ORIGIN,
        TENANT,
        MAX_AGE,
    );
    assert_eq!(pinned.checkpoint(&log.note(7, NOW), NOW).unwrap(), cp);
}

#[test]
fn checkpoints_from_other_keys_logs_or_times_are_refused() {
    let log = Log::new(3);
    let other = Log::new(3);
    let v = log.verifier();
    assert_eq!(
        v.checkpoint(&other.note(3, NOW), NOW).unwrap_err(),
        VerifyError::Checkpoint(CheckpointError::UnknownKey)
    );
    let tampered = log.note(3, NOW).replacen("\n3\n", "\n4\n", 1);
    assert_eq!(
        v.checkpoint(&tampered, NOW).unwrap_err(),
        VerifyError::Checkpoint(CheckpointError::BadSignature)
    );
    let stale = NOW - MAX_AGE - Duration::seconds(1);
    assert_eq!(
        v.checkpoint(&log.note(3, stale), NOW).unwrap_err(),
        VerifyError::Checkpoint(CheckpointError::TooOld {
            timestamp: stale,
            now: NOW
        })
    );
    let beta = Verifier::new(TrustedKeys::Jwks(log.jwks()), ORIGIN, "beta", MAX_AGE);
    // the note is signed under acme's log name: beta's verifier finds no signature of its own
    assert_eq!(
        beta.checkpoint(&log.note(3, NOW), NOW).unwrap_err(),
        VerifyError::Checkpoint(CheckpointError::UnknownKey)
    );
    let token = checkpoint::to_jws(&log.checkpoint(3, NOW), &log.es).unwrap();
    assert_eq!(
        beta.checkpoint_jws(&token, NOW).unwrap_err(),
        VerifyError::WrongLog {
            expected: "broker.example/feed/beta".into(),
            found: "broker.example/feed/acme".into()
        }
    );
    assert_eq!(
        other.verifier().checkpoint_jws(&token, NOW).unwrap_err(),
        VerifyError::Checkpoint(CheckpointError::UnknownKey)
    );
    // key sets without the kind of key needed
    let no_ed = Verifier::new(
        TrustedKeys::Jwks(Jwks {
            keys: vec![Jwk::from_signer(&log.es).unwrap()],
        }),
        ORIGIN,
        TENANT,
        MAX_AGE,
    );
    assert_eq!(
        no_ed.checkpoint(&log.note(3, NOW), NOW).unwrap_err(),
        VerifyError::NoKey("ed25519")
    );
    let pinned = Verifier::new(
        TrustedKeys::NoteKey(log.ed.public_key_raw().to_vec()),
        ORIGIN,
        TENANT,
        MAX_AGE,
    );
    assert_eq!(
        pinned.checkpoint_jws(&token, NOW).unwrap_err(),
        VerifyError::NoKey("es256")
    );
    assert_eq!(
        pinned
            .device(&log.device_proof(0, NOW, None), "dev_0", NOW)
            .unwrap_err(),
        VerifyError::NoKey("es256")
    );
}

#[test]
fn rollbacks_forks_and_bad_consistency_proofs_are_refused() {
    let mut log = Log::new(6);
    let v = log.verifier();
    let at6 = log.checkpoint(6, NOW);
    let at4 = log.checkpoint(4, NOW);
    assert_eq!(
        v.advance(&at6, &at4, &[]).unwrap_err(),
        VerifyError::Rollback {
            trusted: 6,
            offered: 4
        }
    );
    let mut forked = at6.clone();
    forked.root[0] ^= 1;
    assert_eq!(
        v.advance(&at6, &forked, &[]).unwrap_err(),
        VerifyError::Fork { size: 6 }
    );
    v.advance(&at6, &at6, &[]).unwrap();
    // from the empty tree: nothing to prove
    v.advance(&log.checkpoint(0, NOW), &at6, &[]).unwrap();
    // a history rewritten: same size 4, then grown; the proof from the real 4 cannot hold
    log.leaves[1] = b"{}".to_vec();
    let rewritten = log.checkpoint(6, NOW);
    let proof = encode_hashes(&log.tree(6).consistency_proof(4, 6).unwrap());
    assert_eq!(
        v.advance(&at4, &rewritten, &proof).unwrap_err(),
        VerifyError::Consistency(MerkleError::RootMismatch)
    );
    assert_eq!(
        v.advance(&at4, &at6, &[]).unwrap_err(),
        VerifyError::Consistency(MerkleError::ProofLength {
            expected: 1,
            got: 0
        })
    );
    assert!(matches!(
        v.advance(&at4, &at6, &["not base64!".into()]).unwrap_err(),
        VerifyError::Malformed(_)
    ));
}

#[test]
fn tampered_or_incomplete_entries_are_refused() {
    let log = Log::new(5);
    let v = log.verifier();
    let cp = log.checkpoint(5, NOW);
    let mut entries = log.entries();
    entries.pop();
    assert_eq!(
        v.entries(&cp, &entries).unwrap_err(),
        VerifyError::Entries("4 entries for a tree of 5".into())
    );
    let mut entries = log.entries();
    let mut leaf: Value = serde_json::from_slice(&log.leaves[2]).unwrap();
    leaf["record"]["level"] = json!("attested");
    entries[2].leaf = STANDARD.encode(serde_json::to_vec(&leaf).unwrap());
    assert_eq!(
        v.entries(&cp, &entries).unwrap_err(),
        VerifyError::Entries("the entries do not rebuild the checkpoint's root".into())
    );
    let mut entries = log.entries();
    entries.swap(1, 2);
    assert_eq!(
        v.entries(&cp, &entries).unwrap_err(),
        VerifyError::Entries("entry 2 where 1 should be".into())
    );
    let beta = Verifier::new(TrustedKeys::Jwks(log.jwks()), ORIGIN, "beta", MAX_AGE);
    assert_eq!(
        beta.entries(&cp, &log.entries()).unwrap_err(),
        VerifyError::Leaf("entry 0: of another tenant".into())
    );
}

#[test]
fn tampered_device_proofs_are_refused() {
    let log = Log::new(6);
    let v = log.verifier();
    // seq 4 is dev_1's
    let good = log.device_proof(4, NOW, None);
    v.device(&good, "dev_1", NOW).unwrap();

    assert_eq!(
        v.device(&good, "dev_2", NOW).unwrap_err(),
        VerifyError::Leaf("entry 4: of device \"dev_1\", not \"dev_2\"".into())
    );
    let mut p = good.clone();
    let mut leaf: Value = serde_json::from_slice(&log.leaves[4]).unwrap();
    leaf["record"]["level"] = json!("attested");
    p.leaf = STANDARD.encode(serde_json::to_vec(&leaf).unwrap());
    assert_eq!(
        v.device(&p, "dev_1", NOW).unwrap_err(),
        VerifyError::Leaf("leaf_hash is not the leaf's hash".into())
    );
    // hash recomputed too: the inclusion proof no longer holds
    p.leaf_hash = STANDARD.encode(merkle::leaf_hash(&serde_json::to_vec(&leaf).unwrap()));
    assert_eq!(
        v.device(&p, "dev_1", NOW).unwrap_err(),
        VerifyError::Inclusion(MerkleError::RootMismatch)
    );
    let mut p = good.clone();
    p.inclusion.pop();
    assert!(matches!(
        v.device(&p, "dev_1", NOW).unwrap_err(),
        VerifyError::Inclusion(MerkleError::ProofLength { .. })
    ));
    let mut p = good.clone();
    p.tree_size = 5;
    assert_eq!(
        v.device(&p, "dev_1", NOW).unwrap_err(),
        VerifyError::Leaf("proof is for a tree of 5, its checkpoint of 6".into())
    );
    // a statement about another record
    let mut claims = json!({
        "iss": "broker.example/feed/acme", "tenant": TENANT, "device_id": "dev_1", "seq": 4,
        "leaf_hash": URL_SAFE_NO_PAD.encode(merkle::leaf_hash(&log.leaves[4])), "tree_size": 6,
        "iat": NOW.unix_timestamp(), "exp": NOW.unix_timestamp() + 600,
        "record": {"level": "attested"},
    });
    let p = log.device_proof(4, NOW, Some(claims.clone()));
    assert_eq!(
        v.device(&p, "dev_1", NOW).unwrap_err(),
        VerifyError::Statement("record does not match the proof".into())
    );
    // an expired statement
    claims["record"] = json!({"level": "managed", "i": 4});
    claims["exp"] = json!(NOW.unix_timestamp());
    let p = log.device_proof(4, NOW, Some(claims));
    assert_eq!(
        v.device(&p, "dev_1", NOW).unwrap_err(),
        VerifyError::StatementExpired {
            exp: NOW.unix_timestamp(),
            now: NOW.unix_timestamp()
        }
    );
    // a statement signed by a key the set does not hold
    let mut p = good.clone();
    p.statement = Log::new(0).device_proof_statement_like(&good.statement);
    assert!(
        matches!(v.device(&p, "dev_1", NOW).unwrap_err(), VerifyError::Statement(m) if m.starts_with("jws: no key with kid"))
    );
    // a stale checkpoint inside the proof
    let stale = log.device_proof(4, NOW - Duration::hours(1), None);
    assert!(matches!(
        v.device(&stale, "dev_1", NOW).unwrap_err(),
        VerifyError::Checkpoint(CheckpointError::TooOld { .. })
    ));
}

impl Log {
    /// The payload of `token` signed again with this log's ES256 key.
    fn device_proof_statement_like(&self, token: &str) -> String {
        let payload = URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap();
        jws::sign_compact(
            &self.es,
            Some(STATEMENT_TYP),
            serde_json::Map::new(),
            &payload,
        )
        .unwrap()
    }
}
