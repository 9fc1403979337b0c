//! Policy TOML → [`Policy`], walking the document by hand so that every error names its key
//! (`classes.restricted.ladder[2]`), and the canonical form the version is hashed from.

use std::fmt::Write as _;

use toml::{Table, Value};

use super::{
    Assurance, ClassPolicy, Freshness, Ladder, Policy, PolicyError, RcsE2ee, Routing, Transport,
    TransportSet,
};

pub(super) fn policy(text: &str) -> Result<Policy, PolicyError> {
    let doc: Table = text.parse().map_err(|e: toml::de::Error| {
        let msg = e.message().trim_end();
        match e.span() {
            Some(s) => {
                let (key, line) = key_at(text, s.start);
                PolicyError::new(key, format!("line {line}: {msg}"))
            }
            None => PolicyError::new("policy", msg),
        }
    })?;
    let mut classes = None;
    let mut freshness = Freshness::default();
    let mut routing = Routing::default();
    for (k, v) in &doc {
        match k.as_str() {
            "classes" => classes = Some(parse_classes(v)?),
            "freshness" => freshness = parse_freshness(v)?,
            "routing" => routing = parse_routing(v)?,
            other => return Err(unknown(other)),
        }
    }
    let classes =
        classes.ok_or_else(|| PolicyError::new("classes", "missing: name at least one class"))?;
    Ok(Policy::from_checked(classes, freshness, routing))
}

fn parse_routing(v: &Value) -> Result<Routing, PolicyError> {
    let mut r = Routing::default();
    for (k, v) in table("routing", v)? {
        let (slot, min, max) = match k.as_str() {
            "decision_ttl_seconds" => (&mut r.decision_ttl_seconds, 1, 86_400),
            "audit_sample_percent" => (&mut r.audit_sample_percent, 0, 100),
            other => return Err(unknown(&format!("routing.{other}"))),
        };
        let key = format!("routing.{k}");
        let n = v
            .as_integer()
            .ok_or_else(|| wrong_type(&key, "an integer", v))?;
        *slot = u32::try_from(n)
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| PolicyError::new(&key, format!("{n} is not within {min}..={max}")))?;
    }
    Ok(r)
}

fn unknown(key: &str) -> PolicyError {
    PolicyError::new(key, "unknown key")
}

fn table<'a>(key: &str, v: &'a Value) -> Result<&'a Table, PolicyError> {
    v.as_table().ok_or_else(|| wrong_type(key, "a table", v))
}

fn wrong_type(key: &str, want: &str, v: &Value) -> PolicyError {
    PolicyError::new(key, format!("expected {want}, found {}", v.type_str()))
}

fn string<'a>(key: &str, v: &'a Value) -> Result<&'a str, PolicyError> {
    v.as_str().ok_or_else(|| wrong_type(key, "a string", v))
}

fn parse_freshness(v: &Value) -> Result<Freshness, PolicyError> {
    let mut f = Freshness::default();
    for (k, v) in table("freshness", v)? {
        let (slot, max) = match k.as_str() {
            "attestation_days" => (&mut f.attestation_days, 366),
            "mdm_checkin_hours" => (&mut f.mdm_checkin_hours, 24 * 366),
            other => return Err(unknown(&format!("freshness.{other}"))),
        };
        let key = format!("freshness.{k}");
        let n = v
            .as_integer()
            .ok_or_else(|| wrong_type(&key, "an integer", v))?;
        *slot = u32::try_from(n)
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| PolicyError::new(&key, format!("{n} is not within 1..={max}")))?;
    }
    Ok(f)
}

fn parse_classes(v: &Value) -> Result<Vec<(String, ClassPolicy)>, PolicyError> {
    let t = table("classes", v)?;
    if t.is_empty() {
        return Err(PolicyError::new("classes", "name at least one class"));
    }
    t.iter()
        .map(|(name, v)| {
            let key = format!("classes.{name}");
            let ok = (1..=63).contains(&name.len())
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !ok {
                return Err(PolicyError::new(
                    key,
                    format!("{name:?} is not a class name (a-z, 0-9, _ and -, 1 to 63 of them)"),
                ));
            }
            Ok((name.clone(), parse_class(&key, v)?))
        })
        .collect()
}

fn transport(key: &str, v: &Value) -> Result<Transport, PolicyError> {
    let s = string(key, v)?;
    s.parse()
        .map_err(|()| PolicyError::new(key, format!("{s:?} is not a transport")))
}

fn transports(key: &str, v: &Value) -> Result<Vec<(String, Transport)>, PolicyError> {
    let items = v
        .as_array()
        .ok_or_else(|| wrong_type(key, "an array of transports", v))?;
    let mut seen = TransportSet::EMPTY;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let t = transport(&k, item)?;
        if !seen.insert(t) {
            return Err(PolicyError::new(
                k,
                format!("{:?} appears twice", t.as_str()),
            ));
        }
        out.push((k, t));
    }
    Ok(out)
}

fn parse_class(key: &str, v: &Value) -> Result<ClassPolicy, PolicyError> {
    let mut min_assurance = None;
    let mut rcs_e2ee = RcsE2ee::Verified;
    let mut ladder = None;
    let mut forbidden = Vec::new();
    for (k, v) in table(key, v)? {
        let key = format!("{key}.{k}");
        match k.as_str() {
            "min_assurance" => {
                let s = string(&key, v)?;
                min_assurance = Some(
                    Assurance::ALL
                        .into_iter()
                        .find(|a| a.as_str() == s)
                        .ok_or_else(|| {
                            PolicyError::new(
                                &key,
                                format!(
                                    "{s:?} is not an assurance level \
                                     (unknown, registered, managed, attested)"
                                ),
                            )
                        })?,
                );
            }
            "rcs_e2ee" => {
                rcs_e2ee = match string(&key, v)? {
                    "verified" => RcsE2ee::Verified,
                    "claimed" => RcsE2ee::Claimed,
                    s => {
                        return Err(PolicyError::new(
                            &key,
                            format!("{s:?} cannot be required: use \"verified\" or \"claimed\""),
                        ));
                    }
                }
            }
            "ladder" => ladder = Some((key.clone(), transports(&key, v)?)),
            "forbidden" => forbidden = transports(&key, v)?,
            _ => return Err(unknown(&key)),
        }
    }
    let min_assurance =
        min_assurance.ok_or_else(|| PolicyError::new(format!("{key}.min_assurance"), "missing"))?;
    let mut banned = TransportSet::EMPTY;
    for (k, t) in &forbidden {
        if *t == Transport::Block {
            return Err(PolicyError::new(k, "block cannot be forbidden"));
        }
        banned.insert(*t);
    }
    let steps: Vec<Transport> = match ladder {
        None => Transport::ALL
            .into_iter()
            .filter(|t| !banned.contains(*t))
            .collect(),
        Some((lkey, items)) => {
            if items.is_empty() {
                return Err(PolicyError::new(
                    lkey,
                    "is empty: name at least one transport (or \"block\")",
                ));
            }
            let mut blocked = false;
            for (k, t) in &items {
                if blocked {
                    return Err(PolicyError::new(
                        k,
                        format!("{:?} comes after block and would never be used", t.as_str()),
                    ));
                }
                if banned.contains(*t) {
                    return Err(PolicyError::new(
                        k,
                        format!("{:?} is forbidden for this class", t.as_str()),
                    ));
                }
                blocked = *t == Transport::Block;
            }
            items.into_iter().map(|(_, t)| t).collect()
        }
    };
    Ok(ClassPolicy {
        min_assurance,
        rcs_e2ee,
        ladder: Ladder::from_checked(&steps),
        forbidden: banned,
    })
}

/// The canonical form: one line per fact, classes sorted by name, forbidden in ladder order,
/// the ladder with its block. Changing this changes every version: only ever extend it with a
/// new leading tag.
pub(super) fn canonical(
    classes: &[(String, ClassPolicy)],
    freshness: &Freshness,
    routing: &Routing,
) -> String {
    let mut out = String::with_capacity(192 + 160 * classes.len());
    out.push_str("postern-policy/1\n");
    let _ = writeln!(
        out,
        "freshness attestation_days={} mdm_checkin_hours={}",
        freshness.attestation_days, freshness.mdm_checkin_hours
    );
    let _ = writeln!(
        out,
        "routing decision_ttl_seconds={} audit_sample_percent={}",
        routing.decision_ttl_seconds, routing.audit_sample_percent
    );
    for (name, c) in classes {
        let _ = write!(
            out,
            "class {name} min_assurance={} rcs_e2ee={} ladder=",
            c.min_assurance, c.rcs_e2ee
        );
        for (i, t) in c.ladder().iter().enumerate() {
            out.push_str(if i == 0 { "" } else { "," });
            out.push_str(t.as_str());
        }
        out.push_str(" forbidden=");
        for (i, t) in c.forbidden.iter().enumerate() {
            out.push_str(if i == 0 { "" } else { "," });
            out.push_str(t.as_str());
        }
        out.push('\n');
    }
    out
}

/// The dotted key at a byte offset of a TOML text (the enclosing `[table]` and the key on
/// that line), for syntax errors, and the line number.
fn key_at(text: &str, offset: usize) -> (String, usize) {
    let offset = (0..=offset.min(text.len()))
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    let before = &text[..offset];
    let mut table = String::new();
    for line in before.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        }
    }
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split('=')
        .next()
        .map(str::trim)
        .filter(|k| !k.is_empty() && !k.starts_with('[') && !k.starts_with('#'))
        .unwrap_or("");
    let dotted = match (table.is_empty(), key.is_empty()) {
        (true, true) => "policy".to_owned(),
        (true, false) => key.to_owned(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    };
    (dotted, line_no)
}
