//! Subject alternative names as postern handles them, including the RFC 4043
//! permanent-identifier otherName that device identities carry.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use yasna::models::ObjectIdentifier;

use crate::error::{Error, Result};

/// id-on-permanentIdentifier (RFC 4043): 1.3.6.1.5.5.7.8.3
pub const OID_PERMANENT_IDENTIFIER: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 8, 3];

/// One subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SubjectName {
    /// dNSName
    Dns(String),
    /// iPAddress
    Ip(IpAddr),
    /// rfc822Name
    Email(String),
    /// uniformResourceIdentifier
    Uri(String),
    /// RFC 4043 permanent identifier (identifierValue; the assigner is left out)
    PermanentIdentifier(String),
}

impl SubjectName {
    /// The kind of name, as profiles and error messages call it.
    pub fn kind(&self) -> &'static str {
        match self {
            SubjectName::Dns(_) => "dns",
            SubjectName::Ip(_) => "ip",
            SubjectName::Email(_) => "email",
            SubjectName::Uri(_) => "uri",
            SubjectName::PermanentIdentifier(_) => "permanent_identifier",
        }
    }

    /// The URI scheme in lower case, for URI names.
    pub fn uri_scheme(&self) -> Option<String> {
        match self {
            SubjectName::Uri(u) => u.split_once(':').map(|(s, _)| s.to_ascii_lowercase()),
            _ => None,
        }
    }

    /// Checks the syntax of the name's value.
    ///
    /// # Errors
    /// [`Error::Malformed`] naming the defect.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: &str| Err(Error::malformed("subject name", format!("{self}: {why}")));
        match self {
            SubjectName::Dns(d) => {
                let d = d.strip_prefix("*.").unwrap_or(d);
                if d.is_empty() || d.len() > 253 {
                    return bad("empty or longer than 253 octets");
                }
                for label in d.split('.') {
                    let ok = !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
                    if !ok {
                        return bad("not a valid DNS name");
                    }
                }
                Ok(())
            }
            SubjectName::Ip(_) => Ok(()),
            SubjectName::Email(e) => match e.split_once('@') {
                Some((l, d)) if !l.is_empty() && !d.is_empty() && e.is_ascii() => Ok(()),
                _ => bad("not an email address"),
            },
            SubjectName::Uri(u) => {
                let Some((scheme, rest)) = u.split_once(':') else {
                    return bad("a URI needs a scheme");
                };
                let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
                if !scheme_ok || rest.is_empty() || !u.is_ascii() || u.contains(char::is_whitespace)
                {
                    return bad("not a valid URI");
                }
                if scheme.eq_ignore_ascii_case("tel") {
                    let digits = rest.strip_prefix('+').unwrap_or("");
                    if digits.is_empty()
                        || digits.len() > 15
                        || !digits.bytes().all(|b| b.is_ascii_digit())
                    {
                        return bad("tel: URIs must be E.164 (+ and up to 15 digits)");
                    }
                }
                Ok(())
            }
            SubjectName::PermanentIdentifier(v) => {
                if v.is_empty() || v.len() > 255 || v.chars().any(char::is_control) {
                    return bad("empty, too long or with control characters");
                }
                Ok(())
            }
        }
    }

    /// Parses a name written as `kind:value` (`dns:host.example`, `ip:127.0.0.1`,
    /// `email:a@b`, `uri:tel:+4930...`, `permanent-identifier:C02XK...`).
    ///
    /// # Errors
    /// [`Error::Malformed`] on an unknown kind or a bad value.
    pub fn parse_tagged(s: &str) -> Result<Self> {
        let (kind, value) = s
            .split_once(':')
            .ok_or_else(|| Error::malformed("subject name", format!("{s:?} is not kind:value")))?;
        let name = match kind {
            "dns" => SubjectName::Dns(value.to_ascii_lowercase()),
            "ip" => SubjectName::Ip(
                value
                    .parse()
                    .map_err(|_| Error::malformed("subject name", format!("bad ip {value:?}")))?,
            ),
            "email" => SubjectName::Email(value.to_owned()),
            "uri" => SubjectName::Uri(value.to_owned()),
            "permanent-identifier" | "permanent_identifier" => {
                SubjectName::PermanentIdentifier(value.to_owned())
            }
            other => {
                return Err(Error::malformed(
                    "subject name",
                    format!("unknown name kind {other:?}"),
                ));
            }
        };
        name.validate()?;
        Ok(name)
    }
}

impl fmt::Display for SubjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectName::Dns(v) => write!(f, "dns:{v}"),
            SubjectName::Ip(v) => write!(f, "ip:{v}"),
            SubjectName::Email(v) => write!(f, "email:{v}"),
            SubjectName::Uri(v) => write!(f, "uri:{v}"),
            SubjectName::PermanentIdentifier(v) => write!(f, "permanent-identifier:{v}"),
        }
    }
}

/// DER of a SubjectAltName extension value (`GeneralNames`).
pub(crate) fn encode_general_names(names: &[SubjectName]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            for n in names {
                match n {
                    SubjectName::Dns(v) => w
                        .next()
                        .write_tagged_implicit(yasna::Tag::context(2), |w| w.write_ia5_string(v)),
                    SubjectName::Ip(ip) => {
                        let bytes = match ip {
                            IpAddr::V4(a) => a.octets().to_vec(),
                            IpAddr::V6(a) => a.octets().to_vec(),
                        };
                        w.next().write_tagged_implicit(yasna::Tag::context(7), |w| {
                            w.write_bytes(&bytes)
                        })
                    }
                    SubjectName::Email(v) => w
                        .next()
                        .write_tagged_implicit(yasna::Tag::context(1), |w| w.write_ia5_string(v)),
                    SubjectName::Uri(v) => w
                        .next()
                        .write_tagged_implicit(yasna::Tag::context(6), |w| w.write_ia5_string(v)),
                    SubjectName::PermanentIdentifier(v) => {
                        w.next().write_tagged_implicit(yasna::Tag::context(0), |w| {
                            w.write_sequence(|w| {
                                w.next().write_oid(&ObjectIdentifier::from_slice(
                                    &OID_PERMANENT_IDENTIFIER,
                                ));
                                w.next().write_tagged(yasna::Tag::context(0), |w| {
                                    w.write_sequence(|w| w.next().write_utf8_string(v))
                                });
                            })
                        })
                    }
                }
            }
        })
    })
}

/// Reads the identifierValue of a PermanentIdentifier from the `[0] EXPLICIT` value of an
/// otherName (as x509-parser hands it over).
pub(crate) fn decode_permanent_identifier(explicit_value: &[u8]) -> Option<String> {
    crate::der::parse_der(explicit_value, |r| {
        r.read_tagged(yasna::Tag::context(0), |r| {
            r.read_sequence(|r| {
                let value = r.read_optional(|r| r.read_utf8string())?;
                let _assigner = r.read_optional(|r| r.read_oid())?;
                Ok(value)
            })
        })
    })
    .ok()
    .flatten()
}

/// Converts x509-parser's general names into postern's, skipping nothing silently: an
/// unsupported name kind is an error.
pub fn from_x509_general_names(
    names: &[x509_parser::extensions::GeneralName<'_>],
) -> Result<Vec<SubjectName>> {
    use x509_parser::extensions::GeneralName as G;
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let name = match n {
            G::DNSName(d) => SubjectName::Dns(d.to_ascii_lowercase()),
            G::RFC822Name(e) => SubjectName::Email((*e).to_owned()),
            G::URI(u) => SubjectName::Uri((*u).to_owned()),
            G::IPAddress(b) => match b.len() {
                4 => {
                    let a: [u8; 4] = (*b).try_into().map_err(|_| bad_ip())?;
                    SubjectName::Ip(IpAddr::from(a))
                }
                16 => {
                    let a: [u8; 16] = (*b).try_into().map_err(|_| bad_ip())?;
                    SubjectName::Ip(IpAddr::from(a))
                }
                _ => return Err(bad_ip()),
            },
            G::OtherName(oid, value)
                if oid
                    .iter()
                    .is_some_and(|arcs| arcs.eq(OID_PERMANENT_IDENTIFIER.iter().copied())) =>
            {
                let v = decode_permanent_identifier(value).ok_or_else(|| {
                    Error::malformed("subject name", "unreadable permanent identifier")
                })?;
                SubjectName::PermanentIdentifier(v)
            }
            other => {
                return Err(Error::malformed(
                    "subject name",
                    format!("unsupported name {other}"),
                ));
            }
        };
        name.validate()?;
        out.push(name);
    }
    Ok(out)
}

fn bad_ip() -> Error {
    Error::malformed("subject name", "iPAddress is neither 4 nor 16 octets")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, ok: bool) {
        assert_eq!(SubjectName::parse_tagged(input).is_ok(), ok, "{input}");
    }

    #[test]
    fn tagged_names() {
        check("dns:gw.example.com", true);
        check("dns:*.example.com", true);
        check("dns:-bad.example", false);
        check("dns:", false);
        check("ip:127.0.0.1", true);
        check("ip:::1", true);
        check("ip:300.1.1.1", false);
        check("uri:tel:+4915112345678", true);
        check("uri:tel:015112345678", false);
        check("uri:tel:+12345678901234567", false);
        check("uri:sip:alice@example.com", true);
        check("uri:im:alice@example.com", true);
        check("uri:no scheme", false);
        check("email:a@example.com", true);
        check("email:nope", false);
        check("permanent-identifier:C02XK0AAJGH5", true);
        check("permanent-identifier:", false);
        check("fax:123", false);
        check("nokind", false);
    }

    #[test]
    fn permanent_identifier_round_trips_through_x509_parser() {
        let names = vec![
            SubjectName::PermanentIdentifier("00008030-001A2B3C4D5E6F70".into()),
            SubjectName::Uri("urn:postern:device:abc".into()),
            SubjectName::Ip("::1".parse().unwrap()),
        ];
        let der = encode_general_names(&names);
        use x509_parser::prelude::FromDer;
        let (rest, san) = x509_parser::extensions::SubjectAlternativeName::from_der(&der).unwrap();
        assert!(rest.is_empty());
        let back = from_x509_general_names(&san.general_names).unwrap();
        assert_eq!(back, names);
    }
}
