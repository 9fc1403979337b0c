//! Google's attestation revocation list, the JSON document served at
//! <https://android.googleapis.com/attestation/status>:
//!
//! ```json
//! {"entries": {"2c8cdddfd5e03bfc": {"status": "REVOKED", "reason": "KEY_COMPROMISE",
//!                                   "expires": "2020-11-13", "comment": "..."}}}
//! ```
//!
//! Keys are certificate serial numbers in hexadecimal (Google's own checker looks them up as
//! `serialNumber.toString(16)`; keys made only of decimal digits are hexadecimal too). postern
//! normalises both sides to lower case without leading zeros. The list is fetched by the caller
//! (this crate does no I/O); [`RevocationList::is_stale`] says when it is too old to use, and a
//! verification with a stale list fails closed.

use std::collections::HashMap;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::attestation::AttestError;

/// The largest revocation document accepted (Google's is a few hundred kilobytes).
pub const MAX_REVOCATION_LIST: usize = 16 * 1024 * 1024;

/// The longest serial accepted as a key, in hex digits (RFC 5280 serials have at most 20
/// octets; some issuers exceed that a little).
const MAX_SERIAL_HEX: usize = 64;

/// Google's attestation revocation list, as fetched at a known time.
#[derive(Debug, Clone)]
pub struct RevocationList {
    entries: HashMap<String, RevocationEntry>,
    fetched_at: OffsetDateTime,
    max_age: time::Duration,
}

/// Why a certificate is listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationEntry {
    /// `status`.
    pub status: RevocationStatus,
    /// `reason` (`KEY_COMPROMISE`, `CA_COMPROMISE`, `SUPERSEDED`, `SOFTWARE_FLAW`,
    /// `UNSPECIFIED`), when given.
    pub reason: Option<String>,
    /// `comment`, when given.
    pub comment: Option<String>,
    /// `expires` (a date), when given.
    pub expires: Option<String>,
}

/// An entry's `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationStatus {
    /// `REVOKED`: permanently.
    Revoked,
    /// `SUSPENDED`: temporarily.
    Suspended,
    /// A status this version does not know. A certificate listed with it is refused all the
    /// same (fail closed).
    Other(String),
}

impl RevocationStatus {
    /// The status as Google writes it.
    pub fn as_str(&self) -> &str {
        match self {
            RevocationStatus::Revoked => "REVOKED",
            RevocationStatus::Suspended => "SUSPENDED",
            RevocationStatus::Other(s) => s,
        }
    }
}

#[derive(Deserialize)]
struct Document {
    entries: HashMap<String, RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    expires: Option<String>,
}

impl RevocationList {
    /// Parses the JSON document, fetched at `fetched_at`; it is usable for `max_age`.
    ///
    /// # Errors
    /// [`AttestError::Malformed`] when the document is larger than [`MAX_REVOCATION_LIST`],
    /// is not the expected JSON, or has a key that is not a hexadecimal serial number.
    pub fn from_json(
        bytes: &[u8],
        fetched_at: OffsetDateTime,
        max_age: time::Duration,
    ) -> Result<Self, AttestError> {
        if bytes.len() > MAX_REVOCATION_LIST {
            return Err(AttestError::malformed(format!(
                "revocation list of {} bytes is larger than {MAX_REVOCATION_LIST}",
                bytes.len()
            )));
        }
        let doc: Document = serde_json::from_slice(bytes)
            .map_err(|e| AttestError::malformed(format!("revocation list: {e}")))?;
        let mut entries = HashMap::with_capacity(doc.entries.len());
        for (key, raw) in doc.entries {
            let serial = normalize_serial(&key).ok_or_else(|| {
                AttestError::malformed(format!(
                    "revocation list: {:?} is not a hexadecimal serial number",
                    key.chars().take(80).collect::<String>()
                ))
            })?;
            let status = match raw.status.as_str() {
                "REVOKED" => RevocationStatus::Revoked,
                "SUSPENDED" => RevocationStatus::Suspended,
                _ => RevocationStatus::Other(raw.status),
            };
            let entry = RevocationEntry {
                status,
                reason: raw.reason,
                comment: raw.comment,
                expires: raw.expires,
            };
            // two keys naming one serial (`0a` and `A`): a REVOKED one wins
            match entries.get(&serial) {
                Some(RevocationEntry {
                    status: RevocationStatus::Revoked,
                    ..
                }) => {}
                _ => {
                    entries.insert(serial, entry);
                }
            }
        }
        Ok(RevocationList {
            entries,
            fetched_at,
            max_age,
        })
    }

    /// Whether the list is too old to use at `now` (later than fetched_at + max_age).
    pub fn is_stale(&self, now: OffsetDateTime) -> bool {
        match self.fetched_at.checked_add(self.max_age) {
            Some(until) => now > until,
            None => false,
        }
    }

    /// The entry for a serial number in hex (any case, leading zeros allowed), if listed.
    pub fn status(&self, serial_hex: &str) -> Option<&RevocationEntry> {
        self.entries.get(&normalize_serial(serial_hex)?)
    }

    /// When the list was fetched.
    pub fn fetched_at(&self) -> OffsetDateTime {
        self.fetched_at
    }

    /// How many serials are listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no serial is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Lower-case hex without leading zeros (`"0"` for zero); `None` when not hex.
fn normalize_serial(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > MAX_SERIAL_HEX || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = s.trim_start_matches('0');
    Some(if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_ascii_lowercase()
    })
}

/// A certificate serial (the DER INTEGER's content octets) as the list's key.
pub(super) fn serial_key(raw_serial: &[u8]) -> String {
    let hex = crate::attestation::hex_lower(raw_serial);
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    #[test]
    fn keys_are_normalised() {
        assert_eq!(normalize_serial("00AbC").as_deref(), Some("abc"));
        assert_eq!(normalize_serial("000").as_deref(), Some("0"));
        assert_eq!(normalize_serial("xyz"), None);
        assert_eq!(normalize_serial(""), None);
        assert_eq!(serial_key(&[0x00, 0x8f, 0x01]), "8f01");
        assert_eq!(serial_key(&[0x01]), "1");
        assert_eq!(serial_key(&[0x00]), "0");
    }

    #[test]
    fn garbage_is_malformed() {
        let d = time::Duration::hours(24);
        for bad in [
            &b""[..],
            b"[]",
            b"{}",
            b"{\"entries\": []}",
            b"{\"entries\": {\"zz\": {\"status\": \"REVOKED\"}}}",
            b"{\"entries\": {\"01\": {}}}",
            b"{\"entries\": {\"01\": {\"status\": 3}}}",
        ] {
            assert!(
                matches!(
                    RevocationList::from_json(bad, t0(), d),
                    Err(AttestError::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = vec![b' '; MAX_REVOCATION_LIST + 1];
        assert!(matches!(
            RevocationList::from_json(&huge, t0(), d),
            Err(AttestError::Malformed(m)) if m.contains("larger")
        ));
    }

    #[test]
    fn staleness() {
        let l = RevocationList::from_json(b"{\"entries\": {}}", t0(), time::Duration::hours(24))
            .unwrap();
        assert!(l.is_empty());
        assert!(!l.is_stale(t0()));
        assert!(!l.is_stale(t0() + time::Duration::hours(24)));
        assert!(l.is_stale(t0() + time::Duration::hours(24) + time::Duration::seconds(1)));
    }

    #[test]
    fn revoked_wins_over_a_duplicate() {
        let l = RevocationList::from_json(
            br#"{"entries": {"0a": {"status": "REVOKED"}, "A": {"status": "SUSPENDED"}}}"#,
            t0(),
            time::Duration::hours(1),
        )
        .unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l.status("a").unwrap().status, RevocationStatus::Revoked);
    }
}
