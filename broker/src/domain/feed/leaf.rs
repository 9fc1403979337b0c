//! The feed's leaves: canonical JSON of one device posture record, and the document ids they
//! are stored under.
//!
//! A leaf is the canonical JSON of
//! `{"at": <RFC 3339 UTC>, "device_id": d, "record": <JSON>, "seq": n, "tenant": t}`: object
//! members sorted by their UTF-8 bytes at every depth, no whitespace, strings and numbers as
//! `serde_json` writes them. The bytes are what is hashed (RFC 9162 leaf hash) and stored; a
//! verifier hashes the bytes it is given and never needs to re-encode them.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::error::{DomainError, DomainResult, ErrorKind};

/// The largest leaf accepted, in bytes (the record makes up most of it).
pub const MAX_LEAF_BYTES: usize = 64 * 1024;

/// The document id of entry `seq` of `tenant`: `tenant/` and the sequence number in 20 digits,
/// so ids sort in sequence order.
pub fn entry_id(tenant: &str, seq: u64) -> String {
    format!("{tenant}/{seq:020}")
}

/// The id of a device's newest-entry index document: `tenant/device_id`.
pub fn index_id(tenant: &str, device_id: &str) -> String {
    format!("{tenant}/{device_id}")
}

/// A device id as the feed accepts it: 1 to 128 characters, without `/` or control
/// characters.
///
/// # Errors
/// Malformed otherwise.
pub fn check_device_id(device_id: &str) -> DomainResult<()> {
    if device_id.is_empty()
        || device_id.len() > 128
        || device_id.contains('/')
        || device_id.chars().any(char::is_control)
    {
        return Err(DomainError::new(
            ErrorKind::Malformed,
            "device_id must be 1 to 128 characters, without '/' or control characters",
        ));
    }
    Ok(())
}

/// The leaf bytes of one entry.
///
/// # Errors
/// Malformed when the time cannot be written in RFC 3339 or the leaf would be larger than
/// [`MAX_LEAF_BYTES`].
pub fn encode(
    seq: u64,
    tenant: &str,
    device_id: &str,
    at: OffsetDateTime,
    record: &Value,
) -> DomainResult<Vec<u8>> {
    let at = at
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| DomainError::new(ErrorKind::Malformed, format!("at: {e}")))?;
    let mut out = String::with_capacity(128);
    out.push_str("{\"at\":");
    write_string(&at, &mut out);
    out.push_str(",\"device_id\":");
    write_string(device_id, &mut out);
    out.push_str(",\"record\":");
    write_canonical(record, &mut out);
    out.push_str(",\"seq\":");
    out.push_str(&seq.to_string());
    out.push_str(",\"tenant\":");
    write_string(tenant, &mut out);
    out.push('}');
    if out.len() > MAX_LEAF_BYTES {
        return Err(DomainError::new(
            ErrorKind::Malformed,
            format!("a feed entry may hold at most {MAX_LEAF_BYTES} bytes"),
        ));
    }
    Ok(out.into_bytes())
}

/// Writes `v` as canonical JSON: members sorted by key bytes, no whitespace.
pub fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        // scalars: serde_json's own form (a scalar always serializes)
        other => out.push_str(&serde_json::to_string(other).unwrap_or_default()),
    }
}

fn write_string(s: &str, out: &mut String) {
    // a string always serializes
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn leaves_are_canonical_json() {
        let record = json!({"z": [3, {"b": 1, "a": "é\n"}], "a": null, "m": 1.5, "B": true});
        let leaf = encode(
            7,
            "acme",
            "dev_1",
            datetime!(2026-01-02 03:04:05 +02:00),
            &record,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(leaf.clone()).unwrap(),
            r#"{"at":"2026-01-02T01:04:05Z","device_id":"dev_1","record":{"B":true,"a":null,"m":1.5,"z":[3,{"a":"é\n","b":1}]},"seq":7,"tenant":"acme"}"#
        );
        // the same as serde_json's sorted maps write it
        let v: Value = serde_json::from_slice(&leaf).unwrap();
        assert_eq!(serde_json::to_vec(&v).unwrap(), leaf);
    }

    #[test]
    fn oversized_leaves_and_bad_device_ids_are_refused() {
        let big = json!("x".repeat(MAX_LEAF_BYTES));
        let err = encode(0, "t", "d", OffsetDateTime::UNIX_EPOCH, &big).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Malformed);
        assert_eq!(err.detail, "a feed entry may hold at most 65536 bytes");
        for bad in ["", "a/b", "a\nb", &"x".repeat(129)] {
            assert_eq!(
                check_device_id(bad).unwrap_err().detail,
                "device_id must be 1 to 128 characters, without '/' or control characters"
            );
        }
        check_device_id(&"x".repeat(128)).unwrap();
        assert_eq!(entry_id("t", 42), "t/00000000000000000042");
    }
}
