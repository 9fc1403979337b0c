//! Resources as JSON: what a client sends, normalized against the schema (canonical attribute
//! names, `"True"`/`"False"` strings as booleans, unknown and read-only attributes dropped), and
//! what a client gets back (`attributes` / `excludedAttributes`).

use serde_json::{Map, Value};

use super::filter::{AttrRef, resolve_path};
use super::schema::{self, Attr, Mutability, Resolved, ResourceKind, Type};
use super::{ScimError, ScimType};

/// Longest string value accepted.
pub const MAX_STRING: usize = 2048;
/// Most values of a multi-valued attribute (group members excepted).
pub const MAX_VALUES: usize = 100;
/// Most members of a group.
pub const MAX_MEMBERS: usize = 10_000;

fn invalid_value(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidValue, detail)
}

/// Reads a boolean as Entra ID sends it too: `true`, `"True"`, `"false"`.
pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Normalizes one value of an attribute (not the array of a multi-valued one). `None`: the
/// value is empty and the attribute is to be absent.
///
/// # Errors
/// `invalidValue` naming the attribute.
pub fn single(attr: &Attr, v: &Value) -> Result<Option<Value>, ScimError> {
    if v.is_null() {
        return Ok(None);
    }
    let wrong = || invalid_value(format!("{} must be a {:?} value", attr.name, attr.ty));
    Ok(Some(match attr.ty {
        Type::Boolean => Value::Bool(as_bool(v).ok_or_else(wrong)?),
        Type::Integer => {
            if v.as_i64().is_none() {
                return Err(wrong());
            }
            v.clone()
        }
        Type::Decimal => {
            if !v.is_number() {
                return Err(wrong());
            }
            v.clone()
        }
        Type::String | Type::Reference | Type::DateTime => {
            let s = v.as_str().ok_or_else(wrong)?;
            if s.len() > MAX_STRING {
                return Err(invalid_value(format!(
                    "{} is longer than {MAX_STRING} bytes",
                    attr.name
                )));
            }
            Value::String(s.to_owned())
        }
        Type::Complex => {
            let o = v.as_object().ok_or_else(wrong)?;
            let mut out = Map::new();
            for (k, sv) in o {
                let Some(sub) = schema::find(attr.sub, k) else {
                    tracing::debug!(attr = attr.name, sub = %k, "unknown sub-attribute ignored");
                    continue;
                };
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                if let Some(x) = single(sub, sv)? {
                    out.insert(sub.name.to_owned(), x);
                }
            }
            if out.is_empty() {
                return Ok(None);
            }
            Value::Object(out)
        }
    }))
}

/// Normalizes an attribute's whole value (an array for a multi-valued one; a single value is
/// taken as an array of one). `None`: absent.
///
/// # Errors
/// `invalidValue`.
pub fn whole(attr: &Attr, v: &Value) -> Result<Option<Value>, ScimError> {
    if !attr.multi {
        if v.is_array() {
            return Err(invalid_value(format!("{} is single-valued", attr.name)));
        }
        return single(attr, v);
    }
    let items: Vec<&Value> = match v {
        Value::Null => return Ok(None),
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let max = if attr.name == "members" {
        MAX_MEMBERS
    } else {
        MAX_VALUES
    };
    if items.len() > max {
        return Err(invalid_value(format!(
            "{} has more than {max} values",
            attr.name
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for i in items {
        if let Some(x) = single(attr, i)?
            && !out.contains(&x)
        {
            out.push(x);
        }
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

fn set(obj: &mut Map<String, Value>, ext: Option<&str>, name: &str, v: Option<Value>) {
    let target = match ext {
        Some(u) => {
            let e = obj
                .entry(u.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            match e.as_object_mut() {
                Some(m) => m,
                None => return,
            }
        }
        None => obj,
    };
    match v {
        Some(v) => {
            target.insert(name.to_owned(), v);
        }
        None => {
            target.remove(name);
        }
    }
}

/// Drops empty extension objects and sets `schemas` from what is present.
pub fn tidy(kind: ResourceKind, obj: &mut Map<String, Value>) {
    let mut schemas = vec![Value::String(kind.core().to_owned())];
    for (urn, _) in kind.extensions() {
        let empty = obj
            .get(*urn)
            .is_none_or(|v| v.as_object().is_none_or(Map::is_empty));
        if empty {
            obj.remove(*urn);
        } else {
            schemas.push(Value::String((*urn).to_owned()));
        }
    }
    obj.insert("schemas".into(), Value::Array(schemas));
}

/// The writable attributes of a client's resource (POST, PUT body), normalized: canonical
/// names, extension attributes under their URN, `id`, `meta`, `schemas`, read-only and
/// unknown attributes dropped.
///
/// # Errors
/// `invalidSyntax` when not an object; `invalidValue` for a value of the wrong type.
pub fn normalize(kind: ResourceKind, input: &Value) -> Result<Map<String, Value>, ScimError> {
    let o = input.as_object().ok_or_else(|| {
        ScimError::bad(
            ScimType::InvalidSyntax,
            "the resource must be a JSON object",
        )
    })?;
    let mut out = Map::new();
    for (k, v) in o {
        match kind.resolve(k) {
            Some(Resolved::Common("externalId")) => {
                let x = single(&schema::EXTERNAL_ID, v)?;
                set(&mut out, None, "externalId", x);
            }
            Some(Resolved::Common(_)) => {}
            Some(Resolved::Core(a)) => {
                if a.mutability != Mutability::ReadOnly {
                    let x = whole(a, v)?;
                    set(&mut out, None, a.name, x);
                }
            }
            Some(Resolved::Extension(u, a)) => {
                if a.mutability != Mutability::ReadOnly {
                    let x = whole(a, v)?;
                    set(&mut out, Some(u), a.name, x);
                }
            }
            Some(Resolved::ExtensionObject(u)) => {
                let Some(eo) = v.as_object() else {
                    if v.is_null() {
                        continue;
                    }
                    return Err(invalid_value(format!("{u} must be an object")));
                };
                let attrs = kind
                    .extensions()
                    .iter()
                    .find(|(x, _)| *x == u)
                    .map(|(_, a)| *a)
                    .unwrap_or(&[]);
                for (ek, ev) in eo {
                    let Some(a) = schema::find(attrs, ek) else {
                        continue;
                    };
                    if a.mutability != Mutability::ReadOnly {
                        let x = whole(a, ev)?;
                        set(&mut out, Some(u), a.name, x);
                    }
                }
            }
            None => tracing::debug!(attr = %k, "unknown attribute ignored"),
        }
    }
    tidy(kind, &mut out);
    Ok(out)
}

/// Parses a comma-separated `attributes` / `excludedAttributes` list; unknown names are
/// ignored (RFC 7644 lets a server ignore them).
pub fn attribute_list(kind: ResourceKind, list: Option<&str>) -> Vec<AttrRef> {
    list.map(|l| {
        l.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .filter_map(|s| resolve_path(kind, s).ok())
            .collect()
    })
    .unwrap_or_default()
}

/// What a client gets to see of `full`: `attributes` (plus `id` and `schemas`, which are always
/// returned) or everything but `excludedAttributes`.
pub fn project(full: &Value, attributes: &[AttrRef], excluded: &[AttrRef]) -> Value {
    let Some(obj) = full.as_object() else {
        return full.clone();
    };
    if !attributes.is_empty() {
        let mut out = Map::new();
        for k in ["schemas", "id"] {
            if let Some(v) = obj.get(k) {
                out.insert(k.into(), v.clone());
            }
        }
        for r in attributes {
            let Some(v) = r.value(full) else { continue };
            let picked = match &r.sub {
                None => Some(v.clone()),
                Some(s) => match v {
                    Value::Array(items) => {
                        let kept: Vec<Value> = items
                            .iter()
                            .filter_map(|i| i.get(s.name).map(|x| pick(s.name, x, i)))
                            .collect();
                        (!kept.is_empty()).then_some(Value::Array(kept))
                    }
                    Value::Object(_) => v.get(s.name).map(|x| pick(s.name, x, v)),
                    _ => None,
                },
            };
            let Some(picked) = picked else { continue };
            let slot = match r.ext {
                Some(u) => match out
                    .entry(u.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                {
                    Some(m) => m,
                    None => continue,
                },
                None => &mut out,
            };
            merge_into(slot, r.attr.name, picked);
        }
        return Value::Object(out);
    }
    let mut out = obj.clone();
    for r in excluded {
        if r.attr.always || r.sub.is_some_and(|s| s.always) {
            continue;
        }
        let container = match r.ext {
            Some(u) => match out.get_mut(u).and_then(Value::as_object_mut) {
                Some(m) => m,
                None => continue,
            },
            None => &mut out,
        };
        match &r.sub {
            None => {
                container.remove(r.attr.name);
            }
            Some(s) => match container.get_mut(r.attr.name) {
                Some(Value::Array(items)) => {
                    for i in items {
                        if let Some(m) = i.as_object_mut() {
                            m.remove(s.name);
                        }
                    }
                }
                Some(Value::Object(m)) => {
                    m.remove(s.name);
                }
                _ => {}
            },
        }
    }
    Value::Object(out)
}

fn pick(name: &str, v: &Value, _from: &Value) -> Value {
    let mut m = Map::new();
    m.insert(name.to_owned(), v.clone());
    Value::Object(m)
}

/// Merges a projected attribute into what is already picked (two sub-attributes of the same
/// complex attribute).
fn merge_into(slot: &mut Map<String, Value>, name: &str, v: Value) {
    match (slot.get_mut(name), v) {
        (Some(Value::Object(have)), Value::Object(add)) => {
            for (k, x) in add {
                have.insert(k, x);
            }
        }
        (Some(Value::Array(have)), Value::Array(add)) if have.len() == add.len() => {
            for (h, a) in have.iter_mut().zip(add) {
                if let (Some(h), Value::Object(a)) = (h.as_object_mut(), a) {
                    for (k, x) in a {
                        h.insert(k, x);
                    }
                }
            }
        }
        (_, v) => {
            slot.insert(name.to_owned(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn normalizes_names_booleans_and_extensions() {
        let v = json!({
            "schemas": ["whatever"], "id": "client-chosen", "meta": { "resourceType": "User" },
            "UserName": "bob", "Active": "False", "roles": [], "password": "secret",
            "emails": { "Value": "bob@example.com", "Type": "work", "primary": "True" },
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { "Department": "R&D", "manager": { "value": "m1", "displayName": "x" } },
            "name": {},
        });
        let n = normalize(ResourceKind::User, &v).unwrap();
        assert_eq!(
            Value::Object(n),
            json!({
                "schemas": [schema::USER, schema::ENTERPRISE],
                "userName": "bob", "active": false,
                "emails": [{ "value": "bob@example.com", "type": "work", "primary": true }],
                schema::ENTERPRISE: { "department": "R&D", "manager": { "value": "m1" } },
            })
        );
    }

    #[test]
    fn refuses_wrong_types() {
        for v in [
            json!({"userName": 5}),
            json!({"active": "maybe"}),
            json!({"name": "x"}),
            json!({"displayName": ["a"]}),
            json!([1]),
        ] {
            let e = normalize(ResourceKind::User, &v).unwrap_err();
            assert!(
                matches!(
                    e.scim_type,
                    Some(ScimType::InvalidValue | ScimType::InvalidSyntax)
                ),
                "{v}"
            );
        }
    }

    #[test]
    fn projects() {
        let full = json!({
            "schemas": [schema::USER], "id": "1", "userName": "a", "title": "t",
            "name": { "givenName": "g", "familyName": "f" },
            "emails": [{ "value": "x@y", "type": "work" }],
            "meta": { "resourceType": "User" },
        });
        let k = ResourceKind::User;
        let p = project(
            &full,
            &attribute_list(k, Some("userName,name.givenName,emails.value")),
            &[],
        );
        assert_eq!(
            p,
            json!({ "schemas": [schema::USER], "id": "1", "userName": "a",
                    "name": { "givenName": "g" }, "emails": [{ "value": "x@y" }] })
        );
        let p = project(
            &full,
            &[],
            &attribute_list(k, Some("title,meta,id,emails.type")),
        );
        assert!(p.get("title").is_none() && p.get("meta").is_none());
        assert_eq!(p["id"], "1");
        assert_eq!(p["emails"], json!([{ "value": "x@y" }]));
    }
}
