//! What a SCIM user means to the posture engine: `active` and the messaging addresses its
//! `phoneNumbers` and `emails` give.
//!
//! - A phone number becomes a `tel:` address in E.164: spaces, dashes, parentheses and dots
//!   are dropped and the leading `+` kept (`+1 (555) 010-0100` is `tel:+15550100100`). A number
//!   without `+` names no country and cannot be normalized: it stays in the SCIM resource as
//!   sent and becomes no address.
//! - An email address becomes an `im:` address (the posture engine's addresses are `tel:`,
//!   `im:` and `sip:`), lower-cased: `Alice@Example.com` is `im:alice@example.com`.
//! - `active` absent means active.

use serde_json::Value;

use crate::domain::posture::record::Address;

use super::resource::as_bool;

/// Most addresses one user gives.
pub const MAX_ADDRESSES: usize = 32;

/// A phone number as a `tel:` address, when it can be normalized to E.164.
pub fn tel(number: &str) -> Option<Address> {
    let n = number.trim();
    let n = n
        .strip_prefix("tel:")
        .or_else(|| n.strip_prefix("TEL:"))
        .unwrap_or(n);
    let digits: String = n
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.' | '\u{a0}'))
        .collect();
    if !digits.starts_with('+') {
        return None;
    }
    Address::parse(&format!("tel:{digits}")).ok()
}

/// An email address as an `im:` address.
pub fn im(email: &str) -> Option<Address> {
    let e = email.trim().to_lowercase();
    if !e.contains('@') || e.starts_with('@') || e.ends_with('@') {
        return None;
    }
    Address::parse(&format!("im:{e}")).ok()
}

/// Whether a user resource is active (absent: yes).
pub fn active(resource: &Value) -> bool {
    resource.get("active").and_then(as_bool).unwrap_or(true)
}

/// The user's `userName`.
pub fn user_name(resource: &Value) -> Option<&str> {
    resource.get("userName").and_then(Value::as_str)
}

/// The messaging addresses a user resource gives, sorted, at most [`MAX_ADDRESSES`].
pub fn addresses(resource: &Value) -> Vec<Address> {
    let mut out = Vec::new();
    let values = |name: &str| -> Vec<String> {
        resource
            .get(name)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|i| i.get("value").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    for p in values("phoneNumbers") {
        match tel(&p) {
            Some(a) => out.push(a),
            None => tracing::debug!("a phone number without a country code is not an address"),
        }
    }
    for e in values("emails") {
        if let Some(a) = im(&e) {
            out.push(a);
        }
    }
    out.sort();
    out.dedup();
    if out.len() > MAX_ADDRESSES {
        tracing::debug!(n = out.len(), "addresses beyond {MAX_ADDRESSES} ignored");
        out.truncate(MAX_ADDRESSES);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    use super::*;

    fn check(number: &str, expected: Option<&str>) {
        assert_eq!(
            tel(number).as_ref().map(Address::as_str),
            expected,
            "{number}"
        );
    }

    #[test]
    fn phone_numbers() {
        check("+1 (555) 010-0100", Some("tel:+15550100100"));
        check("+49.30.1234-56", Some("tel:+4930123456"));
        check("tel:+4930123456", Some("tel:+4930123456"));
        check("  +44 20 7946 0958 ", Some("tel:+442079460958"));
        check("030 123456", None);
        check("555-0100", None);
        check("+0123", None);
        check("+1 555 0100 x12", None);
        check("+1234567890123456", None);
        check("", None);
    }

    #[test]
    fn user_addresses() {
        let u = json!({
            "userName": "a",
            "phoneNumbers": [{ "value": "+1 555 010 0100", "type": "mobile" }, { "value": "0100" }],
            "emails": [{ "value": "Alice@Example.com" }, { "value": "not-an-email" }],
        });
        let got = addresses(&u);
        let a: Vec<&str> = got.iter().map(Address::as_str).collect();
        assert_eq!(a, ["im:alice@example.com", "tel:+15550100100"]);
        assert!(active(&u));
        assert!(!active(&json!({ "active": "False" })));
    }
}
