//! The signed per-tenant feed on the wire (`/feed/v1/{tenant}/...`), the key endpoints, and
//! (feature `verify`) the verifier a gateway runs over them.
//!
//! Byte strings (leaves, hashes) are standard base64 with padding, as in the checkpoint note.
//! A leaf is the canonical JSON of `{"at", "device_id", "record", "seq", "tenant"}`: its bytes
//! are hashed as they are (RFC 9162 leaf hash), so a verifier never re-encodes them.

use serde::{Deserialize, Serialize};

#[cfg(feature = "verify")]
pub mod verify;

/// The media type of the checkpoint as a compact JWS (`Accept: application/jose`).
pub const JOSE: &str = "application/jose";

/// The media type of the JWK Set at `/.well-known/jwks.json`.
pub const JWK_SET_JSON: &str = "application/jwk-set+json";

/// The `typ` of a checkpoint JWS.
pub const CHECKPOINT_TYP: &str = "postern-checkpoint+jws";

/// The `typ` of a per-device statement JWS.
pub const STATEMENT_TYP: &str = "postern-device-statement+jwt";

/// The most entries one `/entries` request returns.
pub const MAX_ENTRIES: u64 = 1000;

/// The log origin of a tenant's feed: `<origin>/feed/<tenant>`; also the note key name.
pub fn log_origin(origin: &str, tenant: &str) -> String {
    format!("{origin}/feed/{tenant}")
}

/// `GET /feed/v1/{tenant}/entries?start=&end=`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedEntries {
    /// The tenant.
    pub tenant: String,
    /// The first sequence number returned.
    pub start: u64,
    /// One past the last sequence number returned.
    pub end: u64,
    /// The entries, in sequence order.
    pub entries: Vec<FeedEntry>,
}

/// One feed entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedEntry {
    /// The sequence number (leaf index).
    pub seq: u64,
    /// The leaf bytes, base64.
    pub leaf: String,
    /// The leaf as JSON (for reading; the leaf bytes are what is proven).
    pub entry: serde_json::Value,
}

/// `GET /feed/v1/{tenant}/consistency?first=&second=`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The smaller tree size.
    pub first: u64,
    /// The larger tree size.
    pub second: u64,
    /// RFC 9162 consistency proof, base64 hashes.
    pub proof: Vec<String>,
}

/// `GET /feed/v1/{tenant}/devices/{device_id}`: a device's newest entry, proven.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceProof {
    /// The tenant.
    pub tenant: String,
    /// The device.
    pub device_id: String,
    /// The entry's sequence number.
    pub seq: u64,
    /// The leaf bytes, base64.
    pub leaf: String,
    /// Its RFC 9162 leaf hash, base64.
    pub leaf_hash: String,
    /// The record the entry carries.
    pub record: serde_json::Value,
    /// The size of the tree the proof is for.
    pub tree_size: u64,
    /// The checkpoint of that tree as a signed note.
    pub checkpoint: String,
    /// The same checkpoint as a compact JWS.
    pub checkpoint_jws: String,
    /// RFC 9162 inclusion proof of `seq` in the tree of `tree_size`, base64 hashes.
    pub inclusion: Vec<String>,
    /// ES256 JWS (`typ` [`STATEMENT_TYP`]) of `{iss, tenant, device_id, seq, leaf_hash
    /// (base64url), tree_size, iat, exp, record}`, valid for ten minutes.
    pub statement: String,
}

/// `POST /v1/admin/keys/rotate` (the body is optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKeysRequest {
    /// How long the replaced keys stay published, in hours (default 168, at most 8784).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_hours: Option<u32>,
}

/// The answer to a key rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotation {
    /// The new active keys.
    pub activated: Vec<RotatedKey>,
    /// The keys they replaced, published until their `published_until`.
    pub retired: Vec<RotatedKey>,
    /// kids of retired keys whose overlap had ended, no longer kept.
    pub dropped: Vec<String>,
}

/// One key in a [`KeyRotation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotatedKey {
    /// `ES256`, `EdDSA` or `RS256`.
    pub alg: String,
    /// The RFC 7638 thumbprint.
    pub kid: String,
    /// For a retired key: the end of its overlap (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_until: Option<String>,
}
