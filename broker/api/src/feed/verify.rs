//! The feed verifier a gateway runs: signatures, freshness, consistency and inclusion, all
//! failing closed.
//!
//! A [`Verifier`] is made from the keys a follower trusts ([`TrustedKeys`]: the broker's JWK
//! Set, or one pinned Ed25519 note key), the log it follows (`<origin>/feed/<tenant>`) and the
//! greatest checkpoint age it accepts. Then:
//!
//! - [`Verifier::checkpoint`] / [`Verifier::checkpoint_jws`]: a signed checkpoint, by a trusted
//!   key, of this log, no older than the maximum age at `now` (nor from the future);
//! - [`Verifier::advance`]: the new checkpoint extends the last trusted one (RFC 9162
//!   consistency proof; a smaller tree or another root at the same size is refused);
//! - [`Verifier::entries`]: entries `0..size` rebuild the checkpoint's root, each leaf being
//!   the entry of its sequence number in this tenant's feed;
//! - [`Verifier::device`]: a device proof: its checkpoint as above, the leaf's hash and
//!   contents, its inclusion proof, and the statement JWS (ES256, from the key set, about this
//!   leaf and tree, not expired).
//!
//! Every failure is a [`VerifyError`]; nothing is trusted by default: a key set without a usable
//! key, a missing proof, a stale checkpoint or an unknown `kid` are all errors.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use postern_certs::checkpoint::{self, Checkpoint, CheckpointError};
use postern_certs::jws::{self, Jwks, JwsAlg};
use postern_certs::merkle::{self, Hash, MerkleError, MerkleTree};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use super::{DeviceProof, FeedEntry, STATEMENT_TYP};

/// Why a feed was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The checkpoint is not signed by a trusted key, does not verify, is malformed, too old
    /// or from the future.
    #[error("checkpoint refused: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The trusted keys hold no key of the kind needed (an Ed25519 key for notes, a key set
    /// for JWS).
    #[error("no trusted {0} key")]
    NoKey(&'static str),
    /// The checkpoint is of another log.
    #[error("checkpoint is of log {found:?}, not {expected:?}")]
    WrongLog {
        /// the log followed
        expected: String,
        /// the log named
        found: String,
    },
    /// A checkpoint with fewer entries than the one trusted before.
    #[error("tree size went back from {trusted} to {offered}")]
    Rollback {
        /// the trusted size
        trusted: u64,
        /// the size offered now
        offered: u64,
    },
    /// A checkpoint of the same size as the trusted one with another root: a forked log.
    #[error("a different root at the trusted size {size}")]
    Fork {
        /// the size
        size: u64,
    },
    /// The consistency proof does not show the new tree extends the trusted one.
    #[error("consistency proof refused: {0}")]
    Consistency(MerkleError),
    /// The inclusion proof does not show the leaf is in the tree.
    #[error("inclusion proof refused: {0}")]
    Inclusion(MerkleError),
    /// Entries that do not cover the whole tree, or do not rebuild its root.
    #[error("entries refused: {0}")]
    Entries(String),
    /// A leaf whose bytes or contents are not what they are claimed to be.
    #[error("leaf refused: {0}")]
    Leaf(String),
    /// The device statement does not verify or does not match the proof.
    #[error("statement refused: {0}")]
    Statement(String),
    /// The device statement has expired.
    #[error("statement expired at {exp} (now {now})")]
    StatementExpired {
        /// its `exp`, seconds since the epoch
        exp: i64,
        /// the time of the check, seconds since the epoch
        now: i64,
    },
    /// A value that is not valid base64 or not a 32-byte hash.
    #[error("malformed: {0}")]
    Malformed(String),
}

/// The keys a follower trusts.
#[derive(Debug, Clone)]
pub enum TrustedKeys {
    /// The broker's JWK Set: its OKP Ed25519 keys check notes, its ES256 keys check JWS.
    Jwks(Jwks),
    /// One pinned Ed25519 public key (32 bytes) for notes; JWS cannot be checked with it.
    NoteKey(Vec<u8>),
}

/// A device proof that verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedDevice {
    /// The checkpoint it is proven in.
    pub checkpoint: Checkpoint,
    /// The entry's sequence number.
    pub seq: u64,
    /// The entry's time (RFC 3339, as in the leaf).
    pub at: String,
    /// The record.
    pub record: Value,
    /// The statement's expiry, seconds since the epoch.
    pub statement_expires: i64,
}

/// Checks one tenant's feed.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: TrustedKeys,
    tenant: String,
    log: String,
    max_age: Duration,
}

impl Verifier {
    /// A verifier of the feed of `tenant` at `origin` (the log `<origin>/feed/<tenant>`),
    /// accepting checkpoints up to `max_age` old.
    pub fn new(keys: TrustedKeys, origin: &str, tenant: &str, max_age: Duration) -> Self {
        Verifier {
            keys,
            tenant: tenant.to_owned(),
            log: super::log_origin(origin, tenant),
            max_age,
        }
    }

    /// The log followed: `<origin>/feed/<tenant>`.
    pub fn log(&self) -> &str {
        &self.log
    }

    /// Verifies a checkpoint note: signed by a trusted Ed25519 key under the log's name, of
    /// this log, fresh at `now`.
    ///
    /// # Errors
    /// [`VerifyError::NoKey`] when no Ed25519 key is trusted; [`VerifyError::Checkpoint`]
    /// (unknown key, bad signature, malformed, too old, from the future);
    /// [`VerifyError::WrongLog`].
    pub fn checkpoint(&self, note: &str, now: OffsetDateTime) -> Result<Checkpoint, VerifyError> {
        let candidates: Vec<Vec<u8>> = match &self.keys {
            TrustedKeys::NoteKey(k) => vec![k.clone()],
            TrustedKeys::Jwks(set) => set
                .keys
                .iter()
                .filter(|k| matches!(k.jws_alg(), Ok(JwsAlg::EdDsa)))
                .filter_map(|k| k.x.as_deref().and_then(|x| URL_SAFE_NO_PAD.decode(x).ok()))
                .collect(),
        };
        if candidates.is_empty() {
            return Err(VerifyError::NoKey("ed25519"));
        }
        let mut last = CheckpointError::UnknownKey;
        for key in candidates {
            match checkpoint::verify_note(note, &self.log, &key, now, self.max_age) {
                Ok(cp) => return self.own_log(cp),
                // another key of the set; try the next
                Err(CheckpointError::UnknownKey) => {}
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        Err(VerifyError::Checkpoint(last))
    }

    /// Verifies a checkpoint JWS: ES256 by a key of the trusted set (by `kid`), of this log,
    /// fresh at `now`.
    ///
    /// # Errors
    /// [`VerifyError::NoKey`] when only a note key is trusted; otherwise as
    /// [`Verifier::checkpoint`].
    pub fn checkpoint_jws(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Checkpoint, VerifyError> {
        let TrustedKeys::Jwks(set) = &self.keys else {
            return Err(VerifyError::NoKey("es256"));
        };
        let cp = checkpoint::from_jws(token, set, now, self.max_age)?;
        self.own_log(cp)
    }

    /// Checks that `new` extends `trusted` (both verified before), with `proof` the
    /// consistency proof from `trusted.size` to `new.size` (empty when the sizes are equal or
    /// the trusted tree is empty).
    ///
    /// # Errors
    /// [`VerifyError::WrongLog`], [`VerifyError::Rollback`], [`VerifyError::Fork`],
    /// [`VerifyError::Malformed`] for a proof that is not base64 hashes,
    /// [`VerifyError::Consistency`].
    pub fn advance(
        &self,
        trusted: &Checkpoint,
        new: &Checkpoint,
        proof: &[String],
    ) -> Result<(), VerifyError> {
        for cp in [trusted, new] {
            if cp.origin != self.log {
                return Err(self.wrong_log(&cp.origin));
            }
        }
        if new.size < trusted.size {
            return Err(VerifyError::Rollback {
                trusted: trusted.size,
                offered: new.size,
            });
        }
        if new.size == trusted.size && new.root != trusted.root {
            return Err(VerifyError::Fork { size: new.size });
        }
        let proof = decode_hashes(proof)?;
        merkle::verify_consistency(trusted.size, new.size, &trusted.root, &new.root, &proof)
            .map_err(VerifyError::Consistency)
    }

    /// Checks that `entries` are the whole log at `checkpoint` (sequence numbers `0..size`, in
    /// order), that each leaf is the entry of its sequence number in this tenant's feed, and
    /// that they rebuild the checkpoint's root.
    ///
    /// # Errors
    /// [`VerifyError::Entries`] for a gap or a root that does not match;
    /// [`VerifyError::Leaf`] for a leaf whose contents do not match its place;
    /// [`VerifyError::Malformed`] for a leaf that is not base64.
    pub fn entries(
        &self,
        checkpoint: &Checkpoint,
        entries: &[FeedEntry],
    ) -> Result<(), VerifyError> {
        if entries.len() as u64 != checkpoint.size {
            return Err(VerifyError::Entries(format!(
                "{} entries for a tree of {}",
                entries.len(),
                checkpoint.size
            )));
        }
        let mut hashes = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            if e.seq != i as u64 {
                return Err(VerifyError::Entries(format!(
                    "entry {} where {i} should be",
                    e.seq
                )));
            }
            let leaf = decode_b64("leaf", &e.leaf)?;
            self.leaf_fields(&leaf, e.seq, None)?;
            hashes.push(merkle::leaf_hash(&leaf));
        }
        if MerkleTree::from_leaf_hashes(hashes).root() != checkpoint.root {
            return Err(VerifyError::Entries(
                "the entries do not rebuild the checkpoint's root".into(),
            ));
        }
        Ok(())
    }

    /// Verifies a device proof for `device_id` at `now`.
    ///
    /// # Errors
    /// [`VerifyError::NoKey`] when no key set is trusted (the statement needs one); as
    /// [`Verifier::checkpoint`] for its checkpoint; [`VerifyError::Leaf`],
    /// [`VerifyError::Inclusion`], [`VerifyError::Statement`],
    /// [`VerifyError::StatementExpired`], [`VerifyError::Malformed`].
    pub fn device(
        &self,
        proof: &DeviceProof,
        device_id: &str,
        now: OffsetDateTime,
    ) -> Result<VerifiedDevice, VerifyError> {
        let TrustedKeys::Jwks(set) = &self.keys else {
            return Err(VerifyError::NoKey("es256"));
        };
        let cp = self.checkpoint(&proof.checkpoint, now)?;
        if proof.tree_size != cp.size {
            return Err(VerifyError::Leaf(format!(
                "proof is for a tree of {}, its checkpoint of {}",
                proof.tree_size, cp.size
            )));
        }
        let leaf = decode_b64("leaf", &proof.leaf)?;
        let hash = merkle::leaf_hash(&leaf);
        if decode_hash(&proof.leaf_hash)? != hash {
            return Err(VerifyError::Leaf("leaf_hash is not the leaf's hash".into()));
        }
        let fields = self.leaf_fields(&leaf, proof.seq, Some(device_id))?;
        let inclusion = decode_hashes(&proof.inclusion)?;
        merkle::verify_inclusion(&hash, proof.seq, cp.size, &inclusion, &cp.root)
            .map_err(VerifyError::Inclusion)?;
        let exp = self.statement(
            set,
            &proof.statement,
            device_id,
            proof.seq,
            &hash,
            &cp,
            &fields.record,
            now,
        )?;
        Ok(VerifiedDevice {
            checkpoint: cp,
            seq: proof.seq,
            at: fields.at,
            record: fields.record,
            statement_expires: exp,
        })
    }

    /// Checks the statement JWS; returns its `exp`.
    #[allow(clippy::too_many_arguments)]
    fn statement(
        &self,
        set: &Jwks,
        token: &str,
        device_id: &str,
        seq: u64,
        hash: &Hash,
        cp: &Checkpoint,
        record: &Value,
        now: OffsetDateTime,
    ) -> Result<i64, VerifyError> {
        let bad = |m: String| VerifyError::Statement(m);
        let v = jws::verify_compact(token, set).map_err(|e| bad(e.to_string()))?;
        if v.header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err(bad("alg is not ES256".into()));
        }
        if v.header.get("typ").and_then(Value::as_str) != Some(STATEMENT_TYP) {
            return Err(bad(format!("typ is not {STATEMENT_TYP}")));
        }
        let claims: Value =
            serde_json::from_slice(&v.payload).map_err(|e| bad(format!("payload: {e}")))?;
        let expect = [
            ("iss", Value::from(self.log.as_str())),
            ("tenant", Value::from(self.tenant.as_str())),
            ("device_id", Value::from(device_id)),
            ("seq", Value::from(seq)),
            ("leaf_hash", Value::from(URL_SAFE_NO_PAD.encode(hash))),
            ("tree_size", Value::from(cp.size)),
            ("record", record.clone()),
        ];
        for (name, want) in expect {
            if claims.get(name) != Some(&want) {
                return Err(bad(format!("{name} does not match the proof")));
            }
        }
        let int = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_i64)
                .ok_or_else(|| bad(format!("no {name}")))
        };
        let (iat, exp) = (int("iat")?, int("exp")?);
        let now_s = now.unix_timestamp();
        if iat > now_s + checkpoint::CLOCK_SKEW.whole_seconds() {
            return Err(bad(format!("issued in the future ({iat}, now {now_s})")));
        }
        if exp <= now_s {
            return Err(VerifyError::StatementExpired { exp, now: now_s });
        }
        Ok(exp)
    }

    /// Reads a leaf: it must be `{at, device_id, record, seq, tenant}` with this sequence
    /// number, this tenant and (when given) this device.
    fn leaf_fields(
        &self,
        leaf: &[u8],
        seq: u64,
        device_id: Option<&str>,
    ) -> Result<LeafFields, VerifyError> {
        let bad = |m: String| VerifyError::Leaf(format!("entry {seq}: {m}"));
        let v: Value = serde_json::from_slice(leaf).map_err(|e| bad(format!("not json: {e}")))?;
        let Value::Object(map) = v else {
            return Err(bad("not an object".into()));
        };
        let mut names: Vec<&str> = map.keys().map(String::as_str).collect();
        names.sort_unstable();
        if names != ["at", "device_id", "record", "seq", "tenant"] {
            return Err(bad(format!("members {names:?}")));
        }
        if map.get("seq").and_then(Value::as_u64) != Some(seq) {
            return Err(bad("seq is not its sequence number".into()));
        }
        if map.get("tenant").and_then(Value::as_str) != Some(self.tenant.as_str()) {
            return Err(bad("of another tenant".into()));
        }
        let device = map
            .get("device_id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("device_id is not a string".into()))?;
        if let Some(want) = device_id
            && device != want
        {
            return Err(bad(format!("of device {device:?}, not {want:?}")));
        }
        let at = map
            .get("at")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("at is not a string".into()))?
            .to_owned();
        Ok(LeafFields {
            at,
            record: map.get("record").cloned().unwrap_or(Value::Null),
        })
    }

    fn own_log(&self, cp: Checkpoint) -> Result<Checkpoint, VerifyError> {
        if cp.origin == self.log {
            Ok(cp)
        } else {
            Err(self.wrong_log(&cp.origin))
        }
    }

    fn wrong_log(&self, found: &str) -> VerifyError {
        VerifyError::WrongLog {
            expected: self.log.clone(),
            found: found.to_owned(),
        }
    }
}

struct LeafFields {
    at: String,
    record: Value,
}

fn decode_b64(what: &str, s: &str) -> Result<Vec<u8>, VerifyError> {
    STANDARD
        .decode(s)
        .map_err(|e| VerifyError::Malformed(format!("{what} is not base64: {e}")))
}

fn decode_hash(s: &str) -> Result<Hash, VerifyError> {
    let b = decode_b64("hash", s)?;
    Hash::try_from(b.as_slice())
        .map_err(|_| VerifyError::Malformed(format!("a hash of {} bytes", b.len())))
}

/// Decodes a list of base64 hashes (a proof as it travels).
///
/// # Errors
/// [`VerifyError::Malformed`] for a value that is not base64 of 32 bytes.
pub fn decode_hashes(list: &[String]) -> Result<Vec<Hash>, VerifyError> {
    list.iter().map(|s| decode_hash(s)).collect()
}

/// Encodes hashes as a proof travels: base64 each.
pub fn encode_hashes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| STANDARD.encode(h)).collect()
}

#[cfg(test)]
mod tests;
