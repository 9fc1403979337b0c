//! Gateway client certificates: how a `gateway-client` certificate names its gateway.
//!
//! A routing gateway authenticates over mutual TLS with a certificate of the `gateway-client`
//! profile. The certificate names the gateway with exactly one URI
//! `urn:postern:gateway:<tenant>:<name>`, where `<tenant>` is the tenant the certificate is
//! issued for, so that a tenant cannot mint a certificate that reads like another tenant's
//! gateway. DNS names may accompany it. Which tenant a presented certificate acts for is taken
//! from its stored record, never from its names ([`Domain::authenticate_certificate`]).
//!
//! [`Domain::authenticate_certificate`]: super::Domain::authenticate_certificate

use postern_certs::names::SubjectName;

use super::error::{DomainError, DomainResult, ErrorKind};

/// The profile whose certificates authenticate routing gateways.
pub const GATEWAY_CLIENT_PROFILE: &str = "gateway-client";

/// The prefix of a gateway's URI name; the tenant and the gateway's name follow.
pub const GATEWAY_URN_PREFIX: &str = "urn:postern:gateway:";

/// The URI name of gateway `name` of `tenant`.
pub fn gateway_urn(tenant: &str, name: &str) -> String {
    format!("{GATEWAY_URN_PREFIX}{tenant}:{name}")
}

/// Checks a gateway's name: 1 to 63 characters of `a-z`, `0-9`, `-`, `.` and `_`, starting
/// with a letter or digit.
///
/// # Errors
/// BadCsr naming the rule.
pub fn check_gateway_name(name: &str) -> DomainResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(DomainError::new(
            ErrorKind::BadCsr,
            format!(
                "gateway name {name:?} must be 1-63 characters of a-z, 0-9, -, . and _, \
                 starting with a letter or digit"
            ),
        ))
    }
}

/// Checks the names of a `gateway-client` certificate for `tenant`: exactly one URI, and it is
/// `urn:postern:gateway:<tenant>:<name>`; other names may only be DNS names (the profile
/// decides those). Returns the gateway's name.
///
/// # Errors
/// BadCsr naming what is wrong.
pub fn check_names<'a>(tenant: &str, names: &'a [SubjectName]) -> DomainResult<&'a str> {
    let bad = |detail: String| Err(DomainError::new(ErrorKind::BadCsr, detail));
    let uris: Vec<&str> = names
        .iter()
        .filter_map(|n| match n {
            SubjectName::Uri(u) => Some(u.as_str()),
            _ => None,
        })
        .collect();
    let [uri] = uris.as_slice() else {
        return bad(format!(
            "a {GATEWAY_CLIENT_PROFILE} certificate names its gateway with exactly one URI \
             uri:{}<name>; found {} URIs",
            gateway_urn(tenant, ""),
            uris.len()
        ));
    };
    let Some(rest) = uri.strip_prefix(GATEWAY_URN_PREFIX) else {
        return bad(format!(
            "uri:{uri} is not a gateway name; expected uri:{}<name>",
            gateway_urn(tenant, "")
        ));
    };
    let Some((named_tenant, name)) = rest.split_once(':') else {
        return bad(format!(
            "uri:{uri} has no gateway name; expected uri:{}<name>",
            gateway_urn(tenant, "")
        ));
    };
    if named_tenant != tenant {
        return bad(format!(
            "uri:{uri} names tenant {named_tenant:?}, but the certificate is for tenant {tenant:?}"
        ));
    }
    check_gateway_name(name)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(tenant: &str, names: &[&str], expected: Result<&str, &str>) {
        let names: Vec<SubjectName> = names
            .iter()
            .map(|n| SubjectName::parse_tagged(n).unwrap_or_else(|e| panic!("{n}: {e}")))
            .collect();
        match (check_names(tenant, &names), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{names:?}"),
            (Err(e), Err(want)) => {
                assert_eq!(e.kind, ErrorKind::BadCsr, "{names:?}");
                assert!(e.detail.contains(want), "{names:?}: {}", e.detail);
            }
            (got, want) => panic!("{names:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn gateway_names() {
        check("acme", &["uri:urn:postern:gateway:acme:gw-1"], Ok("gw-1"));
        check(
            "acme",
            &[
                "dns:gw.acme.example",
                "uri:urn:postern:gateway:acme:eu.west_2",
            ],
            Ok("eu.west_2"),
        );
        check("acme", &[], Err("exactly one URI"));
        check("acme", &["dns:gw.acme.example"], Err("found 0 URIs"));
        check(
            "acme",
            &[
                "uri:urn:postern:gateway:acme:a",
                "uri:urn:postern:gateway:acme:b",
            ],
            Err("found 2 URIs"),
        );
        check(
            "acme",
            &["uri:urn:postern:gateway:other:gw-1"],
            Err("names tenant \"other\", but the certificate is for tenant \"acme\""),
        );
        check(
            "acme",
            &["uri:urn:postern:device:acme:gw-1"],
            Err("is not a gateway name"),
        );
        check(
            "acme",
            &["uri:urn:postern:gateway:acme"],
            Err("has no gateway name"),
        );
        check(
            "acme",
            &["uri:urn:postern:gateway:acme:"],
            Err("must be 1-63"),
        );
        check(
            "acme",
            &["uri:urn:postern:gateway:acme:GW"],
            Err("must be 1-63"),
        );
        check(
            "acme",
            &["uri:urn:postern:gateway:acme:-gw"],
            Err("must be 1-63"),
        );
        check(
            "acme",
            &["uri:urn:postern:gateway:acme:gw:1"],
            Err("must be 1-63"),
        );
        let long = format!("uri:urn:postern:gateway:acme:{}", "g".repeat(64));
        check("acme", &[long.as_str()], Err("must be 1-63"));
    }

    #[test]
    fn urn_round_trips() {
        let urn = gateway_urn("acme", "gw-1");
        assert_eq!(urn, "urn:postern:gateway:acme:gw-1");
        let names = [SubjectName::Uri(urn)];
        assert_eq!(check_names("acme", &names).unwrap(), "gw-1");
    }
}
