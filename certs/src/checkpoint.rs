//! Signed tree heads of a [Merkle log](crate::merkle): checkpoints.
//!
//! A [`Checkpoint`] names the log (its origin), a tree size, the root at that size and the time
//! it was signed. It travels in two forms:
//!
//! - a C2SP [signed note](https://c2sp.org/signed-note) whose text is a C2SP
//!   [tlog checkpoint](https://c2sp.org/tlog-checkpoint) body, signed with Ed25519
//!   ([`sign_note`], [`verify_note`]), for followers such as routing gateways:
//!
//!   ```text
//!   postern.example/feed/acme-corp
//!   5
//!   uFW0LWww9bCH4FJmeD+9bjlPe5JgE8yqZ3AKiwxaWW8=
//!   timestamp 2025-11-23T14:30:00Z
//!
//!   — postern.example/feed/acme-corp <base64 of the key ID and the signature>
//!   ```
//!
//!   The origin, size and root lines are the checkpoint's, the one extension line carries the
//!   signing time in RFC 3339 (UTC), and the signature line holds the 4-byte key ID
//!   (`SHA-256(key name || 0x0A || 0x01 || public key)[:4]`, [`note_key_id`]) then the Ed25519
//!   signature of the text above the blank line;
//! - a compact JWS ([`to_jws`], [`from_jws`]) for JSON consumers: ES256, `typ`
//!   [`JWS_TYP`], payload `{"origin", "size", "root" (base64url), "timestamp" (RFC 3339)}`.
//!
//! Verification fails closed: an unknown key, a signature that does not verify, text or JSON
//! that is not exactly the expected form (other extension lines or JSON members included), a
//! checkpoint older than the caller's maximum age or dated further in the future than
//! [`CLOCK_SKEW`] are all refused with their own [`CheckpointError`]. The origin is returned,
//! not checked: the caller compares it with the log it follows.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::jws::{self, Jwks, JwsAlg};
use crate::merkle::Hash;
use crate::signer::{KeyAlgorithm, Signer};

/// How far in the future a checkpoint's timestamp may be, for clocks that disagree a little.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// The `typ` header of a checkpoint JWS.
pub const JWS_TYP: &str = "postern-checkpoint+jws";

/// At most this many signature lines are read from a note.
pub const MAX_NOTE_SIGNATURES: usize = 100;

/// The C2SP signed-note signature type of Ed25519.
const ED25519_SIGNATURE_TYPE: u8 = 0x01;

/// The extension line's prefix.
const TIMESTAMP_PREFIX: &str = "timestamp ";

/// Why a checkpoint could not be signed or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The note, token or checkpoint text is not in the expected form.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// An origin or key name that C2SP does not allow (empty, or with spaces, `+` or control
    /// characters), given by the caller.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// The signer or public key given by the caller is not of the algorithm the form needs
    /// (Ed25519 for a note, ES256 for a JWS).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A JWS with another algorithm than ES256.
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// No signature from the trusted key: the note is not signed by the named key (with its
    /// key ID), or the JWS's `kid` is not in the key set.
    #[error("not signed by a known key")]
    UnknownKey,
    /// A signature from the trusted key that does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The checkpoint is older than the maximum age: `timestamp + max_age < now`.
    #[error("checkpoint of {timestamp} is too old at {now}")]
    TooOld {
        /// the checkpoint's timestamp
        timestamp: OffsetDateTime,
        /// the time of the check
        now: OffsetDateTime,
    },
    /// The checkpoint is dated further in the future than [`CLOCK_SKEW`].
    #[error("checkpoint of {timestamp} is in the future at {now}")]
    FromFuture {
        /// the checkpoint's timestamp
        timestamp: OffsetDateTime,
        /// the time of the check
        now: OffsetDateTime,
    },
    /// The signer failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A signed tree head: the log's origin, a tree size, the root at that size, and when it was
/// signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, a schema-less URL such as `postern.example/feed/acme-corp`.
    pub origin: String,
    /// The number of leaves in the tree.
    pub size: u64,
    /// The RFC 9162 root of the tree at `size` leaves.
    pub root: Hash,
    /// When the checkpoint was made (written in UTC).
    pub timestamp: OffsetDateTime,
}

impl Checkpoint {
    /// The checkpoint's note text: the C2SP tlog checkpoint body (origin, size and base64
    /// root lines) and one extension line, `timestamp <RFC 3339 UTC>`, each ending in a newline.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidName`] when the origin is not a valid C2SP origin,
    /// [`CheckpointError::Malformed`] when the timestamp cannot be written in RFC 3339 (a year
    /// outside 0 to 9999).
    pub fn to_body(&self) -> Result<String, CheckpointError> {
        check_name(&self.origin)
            .map_err(|e| CheckpointError::InvalidName(format!("origin {e}")))?;
        let timestamp = format_time(self.timestamp)?;
        Ok(format!(
            "{}\n{}\n{}\n{TIMESTAMP_PREFIX}{timestamp}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        ))
    }

    /// Reads a note text written by [`to_body`](Self::to_body). Nothing else is accepted: no
    /// other extension lines, no leading zeros in the size, no non-canonical base64.
    ///
    /// # Errors
    /// [`CheckpointError::Malformed`] when the text is not exactly in that form.
    pub fn from_body(body: &str) -> Result<Checkpoint, CheckpointError> {
        let text = body
            .strip_suffix('\n')
            .ok_or_else(|| malformed("checkpoint text does not end in a newline"))?;
        let lines: Vec<&str> = text.split('\n').collect();
        let [origin, size, root, extension] = lines[..] else {
            return Err(malformed(format!(
                "checkpoint text has {} lines, not origin, size, root and timestamp",
                lines.len()
            )));
        };
        check_name(origin).map_err(|e| malformed(format!("origin {e}")))?;
        let size = parse_size(size)?;
        let root = decode_root(&STANDARD, "base64", root)?;
        let timestamp = extension
            .strip_prefix(TIMESTAMP_PREFIX)
            .ok_or_else(|| malformed("the fourth line is not a timestamp extension line"))?;
        let timestamp = parse_time(timestamp)?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            timestamp,
        })
    }
}

/// The C2SP signed-note key ID of an Ed25519 key: the first 4 bytes of
/// `SHA-256(name || 0x0A || 0x01 || public key)`.
pub fn note_key_id(name: &str, ed25519_public_key: &[u8]) -> [u8; 4] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(&[b'\n', ED25519_SIGNATURE_TYPE]);
    ctx.update(ed25519_public_key);
    let digest = ctx.finish();
    let mut id = [0u8; 4];
    id.copy_from_slice(&digest.as_ref()[..4]);
    id
}

/// Signs `checkpoint` into a C2SP signed note with the Ed25519 `signer`, under the key name
/// `name` (C2SP recommends the origin).
///
/// # Errors
/// [`CheckpointError::InvalidName`] when `name` or the origin is not a valid C2SP name,
/// [`CheckpointError::InvalidKey`] when the signer is not Ed25519, [`CheckpointError::Sign`]
/// when it fails, [`CheckpointError::Malformed`] as [`Checkpoint::to_body`].
pub fn sign_note(
    checkpoint: &Checkpoint,
    name: &str,
    signer: &dyn Signer,
) -> Result<String, CheckpointError> {
    check_name(name).map_err(|e| CheckpointError::InvalidName(format!("key name {e}")))?;
    let body = checkpoint.to_body()?;
    sign_note_text(&body, name, signer)
}

/// Verifies a checkpoint note signed by the Ed25519 key `ed25519_public_key` named `name`, and
/// its age at `now`.
///
/// Signatures of other keys (witnesses, a key being rotated in) are ignored; one from the named
/// key must be present and verify.
///
/// # Errors
/// - [`CheckpointError::InvalidName`] / [`CheckpointError::InvalidKey`] when `name` or the key
///   given are not a C2SP key name and a 32-byte Ed25519 public key;
/// - [`CheckpointError::Malformed`] when the note or its text is not in the signed-note and
///   checkpoint form, or has more than [`MAX_NOTE_SIGNATURES`] signatures;
/// - [`CheckpointError::UnknownKey`] when no signature is from the named key;
/// - [`CheckpointError::BadSignature`] when one from the named key does not verify;
/// - [`CheckpointError::TooOld`] when `timestamp + max_age < now`;
/// - [`CheckpointError::FromFuture`] when `timestamp > now + CLOCK_SKEW`.
pub fn verify_note(
    note: &str,
    name: &str,
    ed25519_public_key: &[u8],
    now: OffsetDateTime,
    max_age: Duration,
) -> Result<Checkpoint, CheckpointError> {
    check_name(name).map_err(|e| CheckpointError::InvalidName(format!("key name {e}")))?;
    if ed25519_public_key.len() != 32 {
        return Err(CheckpointError::InvalidKey(format!(
            "an ed25519 public key is 32 bytes, not {}",
            ed25519_public_key.len()
        )));
    }
    let body = open_note(note, name, ed25519_public_key)?;
    let checkpoint = Checkpoint::from_body(body)?;
    check_fresh(checkpoint.timestamp, now, max_age)?;
    Ok(checkpoint)
}

/// The JSON payload of a checkpoint JWS.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JwsPayload {
    origin: String,
    size: u64,
    root: String,
    timestamp: String,
}

/// Signs `checkpoint` into a compact JWS with the ES256 `signer` (`typ` [`JWS_TYP`], `kid` the
/// key's RFC 7638 thumbprint).
///
/// # Errors
/// [`CheckpointError::InvalidKey`] when the signer is not ECDSA P-256,
/// [`CheckpointError::InvalidName`] when the origin is not a valid C2SP origin,
/// [`CheckpointError::Malformed`] when the timestamp cannot be written in RFC 3339,
/// [`CheckpointError::Sign`] when the signer fails.
pub fn to_jws(checkpoint: &Checkpoint, signer: &dyn Signer) -> Result<String, CheckpointError> {
    if signer.algorithm() != KeyAlgorithm::EcdsaP256 {
        return Err(CheckpointError::InvalidKey(format!(
            "checkpoint tokens are signed with ES256, not {}",
            signer.algorithm()
        )));
    }
    check_name(&checkpoint.origin)
        .map_err(|e| CheckpointError::InvalidName(format!("origin {e}")))?;
    let payload = JwsPayload {
        origin: checkpoint.origin.clone(),
        size: checkpoint.size,
        root: URL_SAFE_NO_PAD.encode(checkpoint.root),
        timestamp: format_time(checkpoint.timestamp)?,
    };
    let payload =
        serde_json::to_vec(&payload).map_err(|e| CheckpointError::Sign(format!("payload: {e}")))?;
    jws::sign_compact(signer, Some(JWS_TYP), Map::new(), &payload)
        .map_err(|e| CheckpointError::Sign(e.to_string()))
}

/// Verifies a checkpoint JWS with the key of `jwks` its `kid` names, and its age at `now`.
///
/// # Errors
/// - [`CheckpointError::Malformed`] when the token is not three base64url parts with a JSON
///   header holding `typ` [`JWS_TYP`] and a `kid`, or when the payload is not exactly
///   `{origin, size, root, timestamp}` with a valid origin, a 32-byte root and an RFC 3339 time;
/// - [`CheckpointError::UnsupportedAlgorithm`] when `alg` is not `ES256`;
/// - [`CheckpointError::UnknownKey`] when `jwks` has no key with that `kid`;
/// - [`CheckpointError::InvalidKey`] when the key with that `kid` is not a P-256 key;
/// - [`CheckpointError::BadSignature`] when the signature does not verify (or the token is
///   refused by [`jws::verify_compact_with_key`]);
/// - [`CheckpointError::TooOld`] when `timestamp + max_age < now`;
/// - [`CheckpointError::FromFuture`] when `timestamp > now + CLOCK_SKEW`.
pub fn from_jws(
    token: &str,
    jwks: &Jwks,
    now: OffsetDateTime,
    max_age: Duration,
) -> Result<Checkpoint, CheckpointError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, _, _] = parts[..] else {
        return Err(malformed("a compact jws has exactly three parts"));
    };
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|e| malformed(format!("jws header is not base64url: {e}")))?;
    let header: Map<String, Value> = serde_json::from_slice(&header)
        .map_err(|e| malformed(format!("jws header is not a json object: {e}")))?;
    match header.get("alg") {
        Some(Value::String(a)) if a == JwsAlg::Es256.as_str() => {}
        Some(Value::String(a)) => return Err(CheckpointError::UnsupportedAlgorithm(a.clone())),
        _ => return Err(malformed("jws header has no alg string")),
    }
    match header.get("typ") {
        Some(Value::String(t)) if t == JWS_TYP => {}
        other => {
            return Err(malformed(format!("jws typ is {other:?}, not {JWS_TYP:?}")));
        }
    }
    let Some(Value::String(kid)) = header.get("kid") else {
        return Err(malformed("jws header has no kid string"));
    };
    let key = jwks.find(kid).ok_or(CheckpointError::UnknownKey)?;
    if !matches!(key.jws_alg(), Ok(JwsAlg::Es256)) {
        return Err(CheckpointError::InvalidKey(format!(
            "the key {kid:?} is not an ES256 key"
        )));
    }
    let verified =
        jws::verify_compact_with_key(token, key).map_err(|_| CheckpointError::BadSignature)?;
    let payload: JwsPayload = serde_json::from_slice(&verified.payload)
        .map_err(|e| malformed(format!("jws payload: {e}")))?;
    check_name(&payload.origin).map_err(|e| malformed(format!("origin {e}")))?;
    let checkpoint = Checkpoint {
        root: decode_root(&URL_SAFE_NO_PAD, "base64url", &payload.root)?,
        timestamp: parse_time(&payload.timestamp)?,
        origin: payload.origin,
        size: payload.size,
    };
    check_fresh(checkpoint.timestamp, now, max_age)?;
    Ok(checkpoint)
}

/// Signs any note text (ending in a newline) with the Ed25519 `signer` under `name`.
fn sign_note_text(text: &str, name: &str, signer: &dyn Signer) -> Result<String, CheckpointError> {
    if signer.algorithm() != KeyAlgorithm::Ed25519 {
        return Err(CheckpointError::InvalidKey(format!(
            "checkpoint notes are signed with ed25519, not {}",
            signer.algorithm()
        )));
    }
    let key_id = note_key_id(name, signer.public_key_raw());
    let signature = signer
        .sign(text.as_bytes())
        .map_err(|e| CheckpointError::Sign(e.to_string()))?;
    let mut blob = Vec::with_capacity(4 + signature.len());
    blob.extend_from_slice(&key_id);
    blob.extend_from_slice(&signature);
    Ok(format!("{text}\n— {name} {}\n", STANDARD.encode(blob)))
}

/// Checks the signed note's form and its signature by the Ed25519 key `public_key` named
/// `name`; returns the note text (with its final newline).
fn open_note<'a>(note: &'a str, name: &str, public_key: &[u8]) -> Result<&'a str, CheckpointError> {
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(malformed("note holds a control character"));
    }
    // the text ends at the last blank line
    let blank = note
        .rfind("\n\n")
        .ok_or_else(|| malformed("note has no blank line before its signatures"))?;
    let text = &note[..=blank];
    let signatures = note[blank + 2..]
        .strip_suffix('\n')
        .ok_or_else(|| malformed("note does not end with a signature line"))?;
    let key_id = note_key_id(name, public_key);
    let mut verified = false;
    for (count, line) in signatures.split('\n').enumerate() {
        if count == MAX_NOTE_SIGNATURES {
            return Err(malformed(format!(
                "note has more than {MAX_NOTE_SIGNATURES} signatures"
            )));
        }
        let (line_name, blob) = line
            .strip_prefix("— ")
            .and_then(|rest| rest.split_once(' '))
            .ok_or_else(|| malformed("a signature line is not \"— <name> <signature>\""))?;
        check_name(line_name).map_err(|e| malformed(format!("signature key name {e}")))?;
        let blob = STANDARD
            .decode(blob)
            .map_err(|e| malformed(format!("signature is not base64: {e}")))?;
        if blob.len() < 5 {
            return Err(malformed("signature is shorter than a key id and one byte"));
        }
        let (id, signature) = blob.split_at(4);
        if line_name != name || id != key_id {
            // another key's signature (a witness, a key being rotated in): not ours to check
            continue;
        }
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(text.as_bytes(), signature)
            .map_err(|_| CheckpointError::BadSignature)?;
        verified = true;
    }
    if verified {
        Ok(text)
    } else {
        Err(CheckpointError::UnknownKey)
    }
}

/// A C2SP origin or key name: non-empty, without Unicode spaces, `+` or control characters.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '+')
    {
        return Err(format!("{name:?} holds {c:?}"));
    }
    Ok(())
}

/// Refuses a checkpoint that is too old or too far in the future at `now`.
fn check_fresh(
    timestamp: OffsetDateTime,
    now: OffsetDateTime,
    max_age: Duration,
) -> Result<(), CheckpointError> {
    let from_future = now
        .checked_add(CLOCK_SKEW)
        .is_some_and(|latest| timestamp > latest);
    if from_future {
        return Err(CheckpointError::FromFuture { timestamp, now });
    }
    let too_old = match timestamp.checked_add(max_age) {
        Some(expiry) => expiry < now,
        // beyond the representable times: never expires, or expired before time began
        None => max_age.is_negative(),
    };
    if too_old {
        return Err(CheckpointError::TooOld { timestamp, now });
    }
    Ok(())
}

/// A tree size: ASCII digits, no leading zero unless it is `0`.
fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(malformed(format!(
            "tree size {s:?} is not a decimal number"
        )));
    }
    s.parse()
        .map_err(|e| malformed(format!("tree size {s:?}: {e}")))
}

fn decode_root(
    engine: &impl base64::Engine,
    encoding: &str,
    s: &str,
) -> Result<Hash, CheckpointError> {
    let bytes = engine
        .decode(s)
        .map_err(|e| malformed(format!("root hash is not {encoding}: {e}")))?;
    Hash::try_from(bytes.as_slice())
        .map_err(|_| malformed(format!("root hash is {} bytes, not 32", bytes.len())))
}

fn format_time(t: OffsetDateTime) -> Result<String, CheckpointError> {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| malformed(format!("timestamp cannot be written in rfc 3339: {e}")))
}

fn parse_time(s: &str) -> Result<OffsetDateTime, CheckpointError> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| malformed(format!("timestamp {s:?} is not rfc 3339: {e}")))
}

fn malformed(msg: impl Into<String>) -> CheckpointError {
    CheckpointError::Malformed(msg.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

    use super::*;
    use crate::jws::Jwk;
    use crate::merkle::MerkleTree;
    use crate::signer::{KeySigner, generate};
    use time::macros::datetime;

    const ORIGIN: &str = "postern.example/feed/acme-corp";
    const DAY: Duration = Duration::days(1);

    fn signer(alg: KeyAlgorithm) -> KeySigner {
        KeySigner::from_pkcs8(generate(alg).unwrap().as_der()).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        let mut tree = MerkleTree::new();
        for i in 0..5u8 {
            tree.push(&[i]);
        }
        Checkpoint {
            origin: ORIGIN.into(),
            size: tree.len(),
            root: tree.root(),
            timestamp: datetime!(2025-11-23 14:30 UTC),
        }
    }

    fn now() -> OffsetDateTime {
        datetime!(2025-11-23 15:00 UTC)
    }

    /// An Ed25519 PKCS#8 v1 key from its 32-byte seed.
    fn ed25519_from_seed(seed: &[u8]) -> KeySigner {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(seed);
        KeySigner::from_pkcs8(&der).unwrap()
    }

    /// Replaces the signature blob of the note's first signature line with `f(blob)`.
    fn with_blob(note: &str, f: impl Fn(&mut Vec<u8>)) -> String {
        let (text, sig) = note.rsplit_once("\n\n").unwrap();
        let line = sig.lines().next().unwrap();
        let (prefix, b64) = line.rsplit_once(' ').unwrap();
        let mut blob = STANDARD.decode(b64).unwrap();
        f(&mut blob);
        format!("{text}\n\n{prefix} {}\n", STANDARD.encode(blob))
    }

    #[test]
    fn the_body_is_a_c2sp_checkpoint_with_a_timestamp_line() {
        let cp = checkpoint();
        let body = cp.to_body().unwrap();
        // the root of leaves 0x00 to 0x04, as the module documentation shows it (computed
        // independently with Python's hashlib)
        assert_eq!(
            body,
            "postern.example/feed/acme-corp\n5\nuFW0LWww9bCH4FJmeD+9bjlPe5JgE8yqZ3AKiwxaWW8=\n\
             timestamp 2025-11-23T14:30:00Z\n"
        );
        assert_eq!(Checkpoint::from_body(&body).unwrap(), cp);
        // times are written in UTC, sub-second precision kept
        let mut other = cp.clone();
        other.timestamp = datetime!(2025-11-23 16:30:00.25 +02:00);
        let body = other.to_body().unwrap();
        assert!(
            body.ends_with("\ntimestamp 2025-11-23T14:30:00.25Z\n"),
            "{body}"
        );
        assert_eq!(Checkpoint::from_body(&body).unwrap(), other);
        // the empty tree
        let empty = Checkpoint {
            size: 0,
            root: crate::merkle::empty_root(),
            ..cp
        };
        assert_eq!(
            Checkpoint::from_body(&empty.to_body().unwrap()).unwrap(),
            empty
        );
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let good = checkpoint().to_body().unwrap();
        let root = STANDARD.encode(checkpoint().root);
        let ts = "timestamp 2025-11-23T14:30:00Z";
        for body in [
            good.trim_end().to_owned(),
            format!("{ORIGIN}\n5\n{root}\n"),
            format!("{ORIGIN}\n5\n{root}\n{ts}\nextra\n"),
            format!("\n5\n{root}\n{ts}\n"),
            format!("postern example\n5\n{root}\n{ts}\n"),
            format!("{ORIGIN}\n05\n{root}\n{ts}\n"),
            format!("{ORIGIN}\n+5\n{root}\n{ts}\n"),
            format!("{ORIGIN}\n\n{root}\n{ts}\n"),
            format!("{ORIGIN}\n18446744073709551616\n{root}\n{ts}\n"),
            format!("{ORIGIN}\n5\n{}\n{ts}\n", STANDARD.encode([0u8; 31])),
            format!(
                "{ORIGIN}\n5\n{}\n{ts}\n",
                URL_SAFE_NO_PAD.encode([0xffu8; 32])
            ),
            format!("{ORIGIN}\n5\n{root}\ntimestamp yesterday\n"),
            format!("{ORIGIN}\n5\n{root}\ntime 2025-11-23T14:30:00Z\n"),
        ] {
            assert!(
                matches!(
                    Checkpoint::from_body(&body),
                    Err(CheckpointError::Malformed(_))
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn notes_round_trip() {
        let key = signer(KeyAlgorithm::Ed25519);
        let cp = checkpoint();
        let note = sign_note(&cp, ORIGIN, &key).unwrap();
        let (text, sig) = note.split_once("\n\n").unwrap();
        assert_eq!(format!("{text}\n"), cp.to_body().unwrap());
        let blob = STANDARD
            .decode(
                sig.strip_prefix(&format!("— {ORIGIN} "))
                    .unwrap()
                    .trim_end(),
            )
            .unwrap();
        assert_eq!(blob.len(), 4 + 64);
        assert_eq!(blob[..4], note_key_id(ORIGIN, key.public_key_raw()));
        let got = verify_note(&note, ORIGIN, key.public_key_raw(), now(), DAY).unwrap();
        assert_eq!(got, cp);

        // cosignatures of other keys are ignored, before or after ours
        let witness = signer(KeyAlgorithm::Ed25519);
        let witness_note =
            sign_note_text(&cp.to_body().unwrap(), "witness.example/w1", &witness).unwrap();
        let witness_line = witness_note.rsplit_once("\n\n").unwrap().1;
        let our_line = note.rsplit_once("\n\n").unwrap().1;
        for cosigned in [
            format!("{note}{witness_line}"),
            format!("{witness_note}{our_line}"),
        ] {
            assert_eq!(cosigned.matches("\n— ").count(), 2, "{cosigned}");
            assert_eq!(
                verify_note(&cosigned, ORIGIN, key.public_key_raw(), now(), DAY).unwrap(),
                cp
            );
            let w = witness.public_key_raw();
            verify_note(&cosigned, "witness.example/w1", w, now(), DAY).unwrap();
        }
    }

    #[test]
    fn the_go_signed_note_vector_signs_and_opens() {
        // golang.org/x/mod/sumdb/note, note_test.go (TestSign, TestOpen): the keys
        // "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        // "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW" and
        // "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop" (0x01 || key),
        // and the text and signatures below.
        let seed = STANDARD
            .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
            .unwrap();
        let peter_pub = STANDARD
            .decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .unwrap();
        let enoch_pub = STANDARD
            .decode("ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop")
            .unwrap();
        let peter = ed25519_from_seed(&seed[1..]);
        assert_eq!(peter.public_key_raw(), &peter_pub[1..]);
        assert_eq!(
            note_key_id("PeterNeumann", &peter_pub[1..]),
            [0xc7, 0x4f, 0x20, 0xa3]
        );
        assert_eq!(
            note_key_id("EnochRoot", &enoch_pub[1..]),
            [0xaf, 0x0c, 0xfe, 0x78]
        );

        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        let peter_sig = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let enoch_sig = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";
        assert_eq!(
            sign_note_text(text, "PeterNeumann", &peter).unwrap(),
            format!("{text}\n{peter_sig}")
        );
        let both = format!("{text}\n{peter_sig}{enoch_sig}");
        assert_eq!(
            open_note(&both, "PeterNeumann", &peter_pub[1..]).unwrap(),
            text
        );
        assert_eq!(
            open_note(&both, "EnochRoot", &enoch_pub[1..]).unwrap(),
            text
        );
        // a signature from the right name with another key's id is not ours: unknown
        assert_eq!(
            open_note(&both, "PeterNeumann", &enoch_pub[1..]).unwrap_err(),
            CheckpointError::UnknownKey
        );
        // Go's invalid-signature case: four characters inserted into the signature
        let bad = format!("{text}\n{}ABCD{}", &peter_sig[..60], &peter_sig[60..]);
        assert_eq!(
            open_note(&bad, "PeterNeumann", &peter_pub[1..]).unwrap_err(),
            CheckpointError::BadSignature
        );
    }

    #[test]
    fn note_refusals() {
        let key = signer(KeyAlgorithm::Ed25519);
        let public = key.public_key_raw();
        let cp = checkpoint();
        let note = sign_note(&cp, ORIGIN, &key).unwrap();
        let check = |note: &str, expected: &CheckpointError| {
            let got = verify_note(note, ORIGIN, public, now(), DAY).unwrap_err();
            assert!(
                std::mem::discriminant(&got) == std::mem::discriminant(expected),
                "{got:?} for {note:?}"
            );
        };
        let malformed = CheckpointError::Malformed(String::new());

        // unknown keys: another name, another key under the same name, only another signer
        assert_eq!(
            verify_note(&note, "postern.example/other", public, now(), DAY).unwrap_err(),
            CheckpointError::UnknownKey
        );
        let other = signer(KeyAlgorithm::Ed25519);
        assert_eq!(
            verify_note(&note, ORIGIN, other.public_key_raw(), now(), DAY).unwrap_err(),
            CheckpointError::UnknownKey
        );
        check(
            &sign_note(&cp, ORIGIN, &other).unwrap(),
            &CheckpointError::UnknownKey,
        );

        // bad signatures: a flipped bit, the text changed, another key's signature under ours
        check(
            &with_blob(&note, |b| b[10] ^= 1),
            &CheckpointError::BadSignature,
        );
        check(
            &note.replacen("\n5\n", "\n6\n", 1),
            &CheckpointError::BadSignature,
        );
        let other_note = sign_note(&cp, ORIGIN, &other).unwrap();
        let other_sig = other_note.rsplit_once(' ').unwrap().1;
        let forged = with_blob(&note, |b| {
            let mut o = STANDARD.decode(other_sig.trim_end()).unwrap();
            o[..4].copy_from_slice(&b[..4]);
            *b = o;
        });
        check(&forged, &CheckpointError::BadSignature);

        // malformed notes
        let (text, sig) = note.split_once("\n\n").unwrap();
        for bad in [
            format!("{text}\n{sig}"),
            note.trim_end().to_owned(),
            format!("{note}\n"),
            format!("{note}trailing line\n"),
            note.replace('\n', "\r\n"),
            note.replacen("— ", "-- ", 1),
            note.replacen("— ", "—", 1),
            format!("{text}\n\n— {ORIGIN} AAAA\n"),
            format!("{text}\n\n— {ORIGIN} not*base64\n"),
            format!("{text}\n\n— {ORIGIN}\n"),
            format!("{text}\n\n— a+b {}", sig.rsplit_once(' ').unwrap().1),
            format!("{text}\n\n{}", sig.repeat(MAX_NOTE_SIGNATURES + 1)),
        ] {
            check(&bad, &malformed);
        }
        // a validly signed text that is not a checkpoint
        for body in [
            format!("{}extra line\n", cp.to_body().unwrap()),
            "hello\n".to_owned(),
            cp.to_body().unwrap().replacen("\n5\n", "\n005\n", 1),
        ] {
            check(&sign_note_text(&body, ORIGIN, &key).unwrap(), &malformed);
        }
        // up to the limit of signatures is fine
        verify_note(
            &format!("{text}\n\n{}", sig.repeat(MAX_NOTE_SIGNATURES)),
            ORIGIN,
            public,
            now(),
            DAY,
        )
        .unwrap();
    }

    #[test]
    fn note_age_is_checked() {
        let key = signer(KeyAlgorithm::Ed25519);
        let public = key.public_key_raw();
        let cp = checkpoint();
        let note = sign_note(&cp, ORIGIN, &key).unwrap();
        let ts = cp.timestamp;
        // exactly max_age old, and CLOCK_SKEW early, are accepted
        verify_note(&note, ORIGIN, public, ts + DAY, DAY).unwrap();
        verify_note(&note, ORIGIN, public, ts - CLOCK_SKEW, DAY).unwrap();
        let late = ts + DAY + Duration::seconds(1);
        assert_eq!(
            verify_note(&note, ORIGIN, public, late, DAY).unwrap_err(),
            CheckpointError::TooOld {
                timestamp: ts,
                now: late
            }
        );
        let early = ts - CLOCK_SKEW - Duration::seconds(1);
        assert_eq!(
            verify_note(&note, ORIGIN, public, early, DAY).unwrap_err(),
            CheckpointError::FromFuture {
                timestamp: ts,
                now: early
            }
        );
        // extreme ages do not overflow
        verify_note(&note, ORIGIN, public, now(), Duration::MAX).unwrap();
        assert!(matches!(
            verify_note(&note, ORIGIN, public, now(), Duration::MIN).unwrap_err(),
            CheckpointError::TooOld { .. }
        ));
    }

    #[test]
    fn note_arguments_are_checked() {
        let key = signer(KeyAlgorithm::Ed25519);
        let cp = checkpoint();
        for name in ["", "a b", "a+b", "a\u{a0}b", "a\tb"] {
            assert!(matches!(
                sign_note(&cp, name, &key).unwrap_err(),
                CheckpointError::InvalidName(_)
            ));
            assert!(matches!(
                verify_note("x\n\n", name, key.public_key_raw(), now(), DAY).unwrap_err(),
                CheckpointError::InvalidName(_)
            ));
            let bad_origin = Checkpoint {
                origin: name.into(),
                ..cp.clone()
            };
            assert!(matches!(
                sign_note(&bad_origin, ORIGIN, &key).unwrap_err(),
                CheckpointError::InvalidName(_)
            ));
            assert!(matches!(
                bad_origin.to_body().unwrap_err(),
                CheckpointError::InvalidName(_)
            ));
        }
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
            assert!(matches!(
                sign_note(&cp, ORIGIN, &signer(alg)).unwrap_err(),
                CheckpointError::InvalidKey(_)
            ));
        }
        let note = sign_note(&cp, ORIGIN, &key).unwrap();
        assert!(matches!(
            verify_note(&note, ORIGIN, &key.public_key_raw()[..31], now(), DAY).unwrap_err(),
            CheckpointError::InvalidKey(_)
        ));
    }

    #[test]
    fn jws_round_trips() {
        let key = signer(KeyAlgorithm::EcdsaP256);
        let jwks = Jwks {
            keys: vec![Jwk::from_signer(&key).unwrap()],
        };
        let cp = checkpoint();
        let token = to_jws(&cp, &key).unwrap();
        assert_eq!(from_jws(&token, &jwks, now(), DAY).unwrap(), cp);

        let verified = jws::verify_compact(&token, &jwks).unwrap();
        assert_eq!(verified.header["typ"], JWS_TYP);
        assert_eq!(verified.header["alg"], "ES256");
        let payload: Value = serde_json::from_slice(&verified.payload).unwrap();
        assert_eq!(
            payload,
            serde_json::json!({
                "origin": ORIGIN,
                "size": 5,
                "root": URL_SAFE_NO_PAD.encode(cp.root),
                "timestamp": "2025-11-23T14:30:00Z",
            })
        );
    }

    #[test]
    fn jws_refusals() {
        let key = signer(KeyAlgorithm::EcdsaP256);
        let jwk = Jwk::from_signer(&key).unwrap();
        let jwks = Jwks {
            keys: vec![jwk.clone()],
        };
        let cp = checkpoint();
        let token = to_jws(&cp, &key).unwrap();
        let refused = |token: &str| from_jws(token, &jwks, now(), DAY).unwrap_err();
        let signed = |payload: Value, typ: Option<&str>| {
            jws::sign_compact(&key, typ, Map::new(), payload.to_string().as_bytes()).unwrap()
        };
        let good_payload = serde_json::json!({
            "origin": ORIGIN,
            "size": 5,
            "root": URL_SAFE_NO_PAD.encode(cp.root),
            "timestamp": "2025-11-23T14:30:00Z",
        });
        // the helper signs what to_jws signs
        from_jws(
            &signed(good_payload.clone(), Some(JWS_TYP)),
            &jwks,
            now(),
            DAY,
        )
        .unwrap();

        // unknown key
        assert_eq!(
            from_jws(&token, &Jwks::default(), now(), DAY).unwrap_err(),
            CheckpointError::UnknownKey
        );
        let other = signer(KeyAlgorithm::EcdsaP256);
        assert_eq!(
            refused(&to_jws(&cp, &other).unwrap()),
            CheckpointError::UnknownKey
        );

        // bad signatures: the payload changed, another token's signature, a signature bit flipped
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let mut bigger = cp.clone();
        bigger.size = 6;
        let bigger_token = to_jws(&bigger, &key).unwrap();
        let bigger_payload = bigger_token.split('.').nth(1).unwrap();
        assert_eq!(
            refused(&format!("{head}.{bigger_payload}.{sig}")),
            CheckpointError::BadSignature
        );
        let mut sig_bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
        sig_bytes[5] ^= 1;
        let (signing_input, _) = token.rsplit_once('.').unwrap();
        assert_eq!(
            refused(&format!(
                "{signing_input}.{}",
                URL_SAFE_NO_PAD.encode(&sig_bytes)
            )),
            CheckpointError::BadSignature
        );

        // other algorithms and keys
        let ed = signer(KeyAlgorithm::Ed25519);
        let ed_jwks = Jwks {
            keys: vec![Jwk::from_signer(&ed).unwrap()],
        };
        let ed_token = jws::sign_compact(
            &ed,
            Some(JWS_TYP),
            Map::new(),
            good_payload.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(
            from_jws(&ed_token, &ed_jwks, now(), DAY).unwrap_err(),
            CheckpointError::UnsupportedAlgorithm("EdDSA".into())
        );
        assert!(matches!(
            to_jws(&cp, &ed).unwrap_err(),
            CheckpointError::InvalidKey(_)
        ));
        let mut ed_under_our_kid = Jwk::from_signer(&ed).unwrap();
        ed_under_our_kid.kid = jwk.kid.clone();
        assert!(matches!(
            from_jws(
                &token,
                &Jwks {
                    keys: vec![ed_under_our_kid]
                },
                now(),
                DAY
            )
            .unwrap_err(),
            CheckpointError::InvalidKey(_)
        ));

        // malformed tokens and payloads
        let mut extra = good_payload.clone();
        extra["extra"] = Value::Bool(true);
        let mut missing = good_payload.clone();
        missing.as_object_mut().unwrap().remove("timestamp");
        let mut short_root = good_payload.clone();
        short_root["root"] = URL_SAFE_NO_PAD.encode([0u8; 31]).into();
        let mut std_root = good_payload.clone();
        std_root["root"] = STANDARD.encode(cp.root).into();
        let mut bad_time = good_payload.clone();
        bad_time["timestamp"] = "1763908200".into();
        let mut negative = good_payload.clone();
        negative["size"] = (-1).into();
        let mut bad_origin = good_payload.clone();
        bad_origin["origin"] = "acme corp".into();
        for bad in [
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            format!("!!.{rest}"),
            format!("{}.{rest}", URL_SAFE_NO_PAD.encode("[1]")),
            signed(good_payload.clone(), None),
            signed(good_payload.clone(), Some("JWT")),
            signed(extra, Some(JWS_TYP)),
            signed(missing, Some(JWS_TYP)),
            signed(short_root, Some(JWS_TYP)),
            signed(std_root, Some(JWS_TYP)),
            signed(bad_time, Some(JWS_TYP)),
            signed(negative, Some(JWS_TYP)),
            signed(bad_origin, Some(JWS_TYP)),
            signed(Value::String("checkpoint".into()), Some(JWS_TYP)),
        ] {
            assert!(
                matches!(refused(&bad), CheckpointError::Malformed(_)),
                "{bad}: {:?}",
                refused(&bad)
            );
        }

        // age
        let ts = cp.timestamp;
        from_jws(&token, &jwks, ts + DAY, DAY).unwrap();
        assert!(matches!(
            from_jws(&token, &jwks, ts + DAY + Duration::seconds(1), DAY).unwrap_err(),
            CheckpointError::TooOld { .. }
        ));
        assert!(matches!(
            from_jws(&token, &jwks, ts - CLOCK_SKEW - Duration::seconds(1), DAY).unwrap_err(),
            CheckpointError::FromFuture { .. }
        ));
    }
}
