//! A checker for Apple's device-management YAML schemas (apple/device-management): required
//! keys, types, `rangelist` values, unknown keys, array repetition, and `supportedOS`
//! availability for a target OS version. Schemas are read from the test vectors at run time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use postern_profiles::{OsVersion, Target};
use serde_norway::Value as Yaml;

/// A value from a property list or a JSON document, in the schema's terms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum V {
    Str(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    Data,
    Date,
    Array(Vec<V>),
    Dict(Vec<(String, V)>),
}

impl V {
    pub(crate) fn from_plist(p: &plist::Value) -> V {
        match p {
            plist::Value::String(s) => V::Str(s.clone()),
            plist::Value::Integer(i) => V::Int(i.as_signed().unwrap_or(i64::MAX)),
            plist::Value::Real(r) => V::Real(*r),
            plist::Value::Boolean(b) => V::Bool(*b),
            plist::Value::Data(_) => V::Data,
            plist::Value::Date(_) => V::Date,
            plist::Value::Array(a) => V::Array(a.iter().map(V::from_plist).collect()),
            plist::Value::Dictionary(d) => V::Dict(
                d.iter()
                    .map(|(k, v)| (k.clone(), V::from_plist(v)))
                    .collect(),
            ),
            _ => V::Data,
        }
    }

    pub(crate) fn from_json(j: &serde_json::Value) -> V {
        match j {
            serde_json::Value::String(s) => V::Str(s.clone()),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => V::Int(i),
                None => V::Real(n.as_f64().unwrap_or_default()),
            },
            serde_json::Value::Bool(b) => V::Bool(*b),
            serde_json::Value::Array(a) => V::Array(a.iter().map(V::from_json).collect()),
            serde_json::Value::Object(o) => V::Dict(
                o.iter()
                    .map(|(k, v)| (k.clone(), V::from_json(v)))
                    .collect(),
            ),
            serde_json::Value::Null => V::Data,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            V::Str(_) => "<string>",
            V::Int(_) => "<integer>",
            V::Real(_) => "<real>",
            V::Bool(_) => "<boolean>",
            V::Data => "<data>",
            V::Date => "<date>",
            V::Array(_) => "<array>",
            V::Dict(_) => "<dictionary>",
        }
    }
}

/// When a key or payload is available on one OS.
#[derive(Debug, Clone, Default)]
pub(crate) struct OsSupport {
    pub(crate) introduced: Option<String>,
    pub(crate) removed: Option<String>,
}

/// One key of a schema.
#[derive(Debug, Clone)]
pub(crate) struct KeySpec {
    pub(crate) key: String,
    pub(crate) type_: String,
    pub(crate) required: bool,
    pub(crate) rangelist: Option<Vec<Yaml>>,
    pub(crate) supported: BTreeMap<String, OsSupport>,
    pub(crate) repetition: Option<(usize, usize)>,
    pub(crate) subkeys: Vec<KeySpec>,
}

/// A payload schema.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    pub(crate) name: String,
    pub(crate) supported: BTreeMap<String, OsSupport>,
    pub(crate) keys: Vec<KeySpec>,
}

fn supported_of(y: Option<&Yaml>) -> BTreeMap<String, OsSupport> {
    let mut out = BTreeMap::new();
    if let Some(Yaml::Mapping(m)) = y {
        for (os, v) in m {
            let Some(os) = os.as_str() else { continue };
            let s = |k: &str| {
                v.get(k).and_then(|x| match x {
                    Yaml::String(s) => Some(s.clone()),
                    Yaml::Number(n) => Some(n.to_string()),
                    _ => None,
                })
            };
            out.insert(
                os.to_owned(),
                OsSupport {
                    introduced: s("introduced"),
                    removed: s("removed"),
                },
            );
        }
    }
    out
}

fn key_spec(y: &Yaml) -> KeySpec {
    KeySpec {
        key: y
            .get("key")
            .and_then(Yaml::as_str)
            .unwrap_or_default()
            .to_owned(),
        type_: y
            .get("type")
            .and_then(Yaml::as_str)
            .unwrap_or("<any>")
            .to_owned(),
        required: y.get("presence").and_then(Yaml::as_str) == Some("required"),
        rangelist: y.get("rangelist").and_then(Yaml::as_sequence).cloned(),
        supported: supported_of(y.get("supportedOS")),
        repetition: y.get("repetition").map(|r| {
            let n = |k: &str| r.get(k).and_then(Yaml::as_u64).map(|x| x as usize);
            (n("min").unwrap_or(0), n("max").unwrap_or(usize::MAX))
        }),
        subkeys: y
            .get("subkeys")
            .and_then(Yaml::as_sequence)
            .map(|s| s.iter().map(key_spec).collect())
            .unwrap_or_default(),
    }
}

/// The vectors' schema folder, or `None` after one line saying the tests are skipped.
pub(crate) fn schema_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("POSTERN_VECTORS") {
        Some(v) => PathBuf::from(v),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    };
    let dir = base.join("apple-schema");
    if dir.join("TopLevel.yaml").is_file() {
        Some(dir)
    } else {
        println!(
            "skipped: Apple's schemas are not at {} (set POSTERN_VECTORS)",
            dir.display()
        );
        None
    }
}

/// Loads one schema file.
pub(crate) fn load(dir: &Path, file: &str) -> Schema {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let y: Yaml = serde_norway::from_str(&text).unwrap();
    let payload = y.get("payload").unwrap();
    let name = ["payloadtype", "declarationtype", "credentialtype"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Yaml::as_str))
        .unwrap()
        .to_owned();
    Schema {
        name,
        supported: supported_of(payload.get("supportedOS")),
        keys: y
            .get("payloadkeys")
            .and_then(Yaml::as_sequence)
            .map(|s| s.iter().map(key_spec).collect())
            .unwrap_or_default(),
    }
}

fn version(s: &str) -> Option<OsVersion> {
    s.parse().ok()
}

/// Whether `support` (with `parent` for what it does not say) allows the target; the reason
/// when not.
fn available(
    support: &BTreeMap<String, OsSupport>,
    parent: &OsSupport,
    target: &Target,
) -> Result<OsSupport, String> {
    let os = target.platform.schema_name();
    let here = support.get(os);
    let introduced = here
        .and_then(|s| s.introduced.clone())
        .or_else(|| parent.introduced.clone());
    let removed = here
        .and_then(|s| s.removed.clone())
        .or_else(|| parent.removed.clone());
    match introduced.as_deref() {
        None => return Err(format!("not available on {os}")),
        Some("n/a") => return Err(format!("not available on {os} (n/a)")),
        Some(v) => match version(v) {
            Some(v) if v > target.version => {
                return Err(format!("introduced in {os} {v}, target {target}"));
            }
            Some(_) => {}
            None => return Err(format!("unreadable version {v:?}")),
        },
    }
    if let Some(r) = removed.as_deref().and_then(version)
        && r <= target.version
    {
        return Err(format!("removed in {os} {r}"));
    }
    Ok(OsSupport {
        introduced,
        removed,
    })
}

fn in_range(v: &V, list: &[Yaml]) -> bool {
    list.iter().any(|y| match (v, y) {
        (V::Str(s), Yaml::String(t)) => s == t,
        (V::Int(i), Yaml::Number(n)) => n.as_i64() == Some(*i),
        (V::Bool(b), Yaml::Bool(c)) => b == c,
        _ => false,
    })
}

fn check_value(
    path: &str,
    v: &V,
    spec: &KeySpec,
    support: &OsSupport,
    target: &Target,
    errors: &mut Vec<String>,
) {
    if spec.type_ != "<any>" && spec.type_ != v.type_name() {
        errors.push(format!(
            "{path}: type {} where the schema says {}",
            v.type_name(),
            spec.type_
        ));
        return;
    }
    if let Some(list) = &spec.rangelist
        && !in_range(v, list)
    {
        errors.push(format!("{path}: {v:?} is not one of {list:?}"));
    }
    match v {
        V::Dict(entries) if !spec.subkeys.is_empty() => {
            check_dict(path, entries, &spec.subkeys, support, target, errors);
        }
        V::Array(items) => {
            if let Some(item_spec) = spec.subkeys.first() {
                if let Some((min, max)) = item_spec.repetition
                    && (items.len() < min || items.len() > max)
                {
                    errors.push(format!(
                        "{path}: {} items where the schema wants {min} to {max}",
                        items.len()
                    ));
                }
                for (i, item) in items.iter().enumerate() {
                    check_value(
                        &format!("{path}[{i}]"),
                        item,
                        item_spec,
                        support,
                        target,
                        errors,
                    );
                }
            }
        }
        _ => {}
    }
}

fn check_dict(
    path: &str,
    entries: &[(String, V)],
    specs: &[KeySpec],
    support: &OsSupport,
    target: &Target,
    errors: &mut Vec<String>,
) {
    let any = specs.iter().find(|s| s.key == "ANY");
    for (k, v) in entries {
        let p = format!("{path}.{k}");
        let Some(spec) = specs.iter().find(|s| &s.key == k).or(any) else {
            errors.push(format!("{p}: unknown key"));
            continue;
        };
        match available(&spec.supported, support, target) {
            Ok(s) => check_value(&p, v, spec, &s, target, errors),
            Err(why) => errors.push(format!("{p}: {why}")),
        }
    }
    for s in specs {
        if s.required && s.key != "ANY" && !entries.iter().any(|(k, _)| k == &s.key) {
            // a required key the OS does not have is not required there
            if available(&s.supported, support, target).is_ok() {
                errors.push(format!("{path}.{}: required key missing", s.key));
            }
        }
    }
}

/// Checks a dictionary against `schemas` (a payload schema plus, for profile payloads, the
/// common payload keys): every error found.
pub(crate) fn check(value: &V, schemas: &[&Schema], target: &Target) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(first) = schemas.first() else {
        return vec!["no schema".into()];
    };
    let payload_support = match available(&first.supported, &OsSupport::default(), target) {
        Ok(s) => s,
        Err(why) if first.supported.is_empty() => {
            // a schema that lists no OS (common keys) restricts nothing
            let _ = why;
            OsSupport {
                introduced: Some("0.0".into()),
                removed: None,
            }
        }
        Err(why) => return vec![format!("{}: {why}", first.name)],
    };
    let specs: Vec<KeySpec> = schemas.iter().flat_map(|s| s.keys.clone()).collect();
    match value {
        V::Dict(entries) => check_dict(
            &first.name,
            entries,
            &specs,
            &payload_support,
            target,
            &mut errors,
        ),
        other => errors.push(format!(
            "{}: not a dictionary but {}",
            first.name,
            other.type_name()
        )),
    }
    errors
}
