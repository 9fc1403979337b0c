//! PATCH (RFC 7644 §3.5.2) over a stored resource, with what Okta and Entra ID send: `op`
//! in any case (`Replace`), no `path` with an object `value` whose keys are themselves paths
//! (`name.givenName`, `emails[type eq "work"].value`, extension URNs), value filters
//! (`members[value eq "..."]`), `remove` of `members` with a `value` list (Entra's older form),
//! and the resource's own `id` inside a path-less value (Okta's group rename).

use serde_json::{Map, Value};

use super::filter::{self, AttrRef, Filter, Op, Scope, resolve_path};
use super::resource::{self, single, whole};
use super::schema::{self, Attr, Mutability, Resolved, ResourceKind, Type};
use super::{ScimError, ScimType};

/// A PATCH operation's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `add`
    Add,
    /// `replace`
    Replace,
    /// `remove`
    Remove,
}

/// One parsed operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// What to do.
    pub kind: PatchKind,
    /// Where (none: the value's keys say).
    pub path: Option<String>,
    /// The value.
    pub value: Option<Value>,
}

fn syntax(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidSyntax, detail)
}

/// Parses a PatchOp message body.
///
/// # Errors
/// `invalidSyntax` (not a PatchOp, an unknown op), `tooMany` (too many operations).
pub fn parse_request(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let o = body
        .as_object()
        .ok_or_else(|| syntax("a PatchOp must be a JSON object"))?;
    let ops = o
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
        .map(|(_, v)| v)
        .and_then(Value::as_array)
        .ok_or_else(|| syntax("a PatchOp needs an Operations array"))?;
    if ops.len() > schema::MAX_OPERATIONS {
        return Err(ScimError::bad(
            ScimType::TooMany,
            format!("more than {} operations", schema::MAX_OPERATIONS),
        ));
    }
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let m = op
            .as_object()
            .ok_or_else(|| syntax("each operation must be an object"))?;
        let get = |name: &str| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let kind = match get("op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
        {
            Some(s) if s == "add" => PatchKind::Add,
            Some(s) if s == "replace" => PatchKind::Replace,
            Some(s) if s == "remove" => PatchKind::Remove,
            _ => return Err(syntax("op must be add, replace or remove")),
        };
        let path = match get("path") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if p.trim().is_empty() => None,
            Some(Value::String(p)) => Some(p.trim().to_owned()),
            Some(_) => {
                return Err(ScimError::bad(
                    ScimType::InvalidPath,
                    "path must be a string",
                ));
            }
        };
        let value = get("value").cloned();
        out.push(Operation { kind, path, value });
    }
    Ok(out)
}

/// A parsed PATCH path: `attr[.sub]` or `attr[filter][.sub]`.
struct Target {
    r: AttrRef,
    filter: Option<Filter>,
}

fn invalid_path(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidPath, detail)
}

fn parse_path(kind: ResourceKind, path: &str) -> Result<Target, ScimError> {
    let Some(open) = path.find('[') else {
        return Ok(Target {
            r: resolve_path(kind, path)?,
            filter: None,
        });
    };
    let close = path
        .rfind(']')
        .filter(|c| *c > open)
        .ok_or_else(|| invalid_path(format!("unbalanced brackets in path {path:?}")))?;
    let mut r = resolve_path(kind, &path[..open])?;
    if r.attr.ty != Type::Complex || !r.attr.multi || r.sub.is_some() {
        return Err(invalid_path(format!(
            "a value filter needs a multi-valued complex attribute: {path:?}"
        )));
    }
    let f = filter::parse(&path[open + 1..close])?;
    f.check(Scope::Complex(r.attr.sub))?;
    let rest = &path[close + 1..];
    if !rest.is_empty() {
        let sub = rest
            .strip_prefix('.')
            .ok_or_else(|| invalid_path(format!("unexpected text after ']' in {path:?}")))?;
        r.sub = Some(
            *schema::find(r.attr.sub, sub)
                .ok_or_else(|| invalid_path(format!("unknown attribute in {path:?}")))?,
        );
    }
    Ok(Target { r, filter: Some(f) })
}

/// Applies the operations to `resource` (the stored resource's attributes).
///
/// # Errors
/// `invalidPath`, `invalidValue`, `invalidFilter`, `noTarget`, `mutability`.
pub fn apply(
    kind: ResourceKind,
    resource: &mut Map<String, Value>,
    ops: &[Operation],
) -> Result<(), ScimError> {
    for op in ops {
        match &op.path {
            Some(p) if matches!(kind.resolve(p), Some(Resolved::ExtensionObject(_))) => {
                extension_object(kind, resource, op, p)?;
            }
            Some(p) => {
                let t = parse_path(kind, p)?;
                apply_target(resource, op.kind, &t, op.value.as_ref())?;
            }
            None => apply_pathless(kind, resource, op)?,
        }
    }
    resource::tidy(kind, resource);
    Ok(())
}

/// An operation whose path is an extension's URN: the whole extension object (`remove`
/// drops it, `replace` sets it anew, `add` merges into it).
fn extension_object(
    kind: ResourceKind,
    resource: &mut Map<String, Value>,
    op: &Operation,
    path: &str,
) -> Result<(), ScimError> {
    let Some(Resolved::ExtensionObject(urn)) = kind.resolve(path) else {
        return Err(invalid_path(format!("unknown attribute {path:?}")));
    };
    if op.kind != PatchKind::Add {
        resource.remove(urn);
    }
    if op.kind == PatchKind::Remove {
        return Ok(());
    }
    let Some(Value::Object(inner)) = &op.value else {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            format!("{urn} needs an object value"),
        ));
    };
    for (k, v) in inner {
        if k.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let t = parse_path(kind, &format!("{urn}:{k}"))?;
        apply_target(resource, op.kind, &t, Some(v))?;
    }
    Ok(())
}

fn apply_pathless(
    kind: ResourceKind,
    resource: &mut Map<String, Value>,
    op: &Operation,
) -> Result<(), ScimError> {
    if op.kind == PatchKind::Remove {
        return Err(ScimError::bad(ScimType::NoTarget, "remove needs a path"));
    }
    let Some(Value::Object(values)) = &op.value else {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            "an operation without a path needs an object value",
        ));
    };
    for (k, v) in values {
        match kind.resolve(k) {
            // the resource's own id (Okta's group rename sends it), schemas and meta
            Some(Resolved::Common("id" | "schemas" | "meta")) => continue,
            Some(Resolved::ExtensionObject(urn)) => {
                let Some(inner) = v.as_object() else {
                    return Err(ScimError::bad(
                        ScimType::InvalidValue,
                        format!("{urn} must be an object"),
                    ));
                };
                for (ik, iv) in inner {
                    if ik.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    let t = parse_path(kind, &format!("{urn}:{ik}"))?;
                    apply_target(resource, op.kind, &t, Some(iv))?;
                }
            }
            _ => {
                let t = parse_path(kind, k)?;
                apply_target(resource, op.kind, &t, Some(v))?;
            }
        }
    }
    Ok(())
}

fn container<'m>(
    resource: &'m mut Map<String, Value>,
    ext: Option<&str>,
) -> Option<&'m mut Map<String, Value>> {
    match ext {
        Some(u) => resource
            .entry(u.to_owned())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut(),
        None => Some(resource),
    }
}

fn check_writable(a: &Attr, what: &str) -> Result<(), ScimError> {
    if a.mutability == Mutability::ReadOnly {
        return Err(ScimError::bad(
            ScimType::Mutability,
            format!("{what} is read-only"),
        ));
    }
    Ok(())
}

fn apply_target(
    resource: &mut Map<String, Value>,
    kind: PatchKind,
    t: &Target,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let attr = t.r.attr;
    check_writable(&attr, attr.name)?;
    if let Some(s) = &t.r.sub {
        check_writable(s, s.name)?;
    }
    let value = match (kind, value) {
        (PatchKind::Remove, v) => v,
        (_, Some(v)) => Some(v),
        (_, None) => {
            return Err(ScimError::bad(
                ScimType::InvalidValue,
                "add and replace need a value",
            ));
        }
    };
    let Some(obj) = container(resource, t.r.ext) else {
        return Err(ScimError::bad(ScimType::NoTarget, "no such object"));
    };
    match (&t.filter, &t.r.sub) {
        (None, None) => whole_attr(obj, kind, &attr, value),
        (None, Some(sub)) => sub_attr(obj, kind, &attr, sub, value),
        (Some(f), sub) => filtered(obj, kind, &attr, f, sub.as_ref(), value),
    }
}

fn merge(have: &mut Value, add: Value) {
    if let (Some(h), Value::Object(a)) = (have.as_object_mut(), add) {
        for (k, v) in a {
            h.insert(k, v);
        }
    }
}

fn whole_attr(
    obj: &mut Map<String, Value>,
    kind: PatchKind,
    attr: &Attr,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let name = attr.name;
    match kind {
        PatchKind::Remove => {
            // Entra's older member removal: path "members" with the members to remove
            if let (true, Some(v)) = (attr.multi, value)
                && !v.is_null()
            {
                let gone = whole(attr, v)?.unwrap_or(Value::Array(Vec::new()));
                let gone = gone.as_array().cloned().unwrap_or_default();
                if let Some(Value::Array(items)) = obj.get_mut(name) {
                    items.retain(|i| !gone.iter().any(|g| same_element(i, g)));
                    if items.is_empty() {
                        obj.remove(name);
                    }
                }
                return Ok(());
            }
            obj.remove(name);
        }
        PatchKind::Add | PatchKind::Replace => {
            let v = value.unwrap_or(&Value::Null);
            let Some(new) = whole(attr, v)? else {
                if kind == PatchKind::Replace {
                    obj.remove(name);
                }
                return Ok(());
            };
            match (kind, obj.get_mut(name)) {
                (PatchKind::Add, Some(Value::Array(items))) => {
                    for n in new.as_array().cloned().unwrap_or_default() {
                        if let Some(pos) = items.iter().position(|i| same_element(i, &n)) {
                            merge(&mut items[pos], n);
                        } else {
                            items.push(n);
                        }
                    }
                    let max = if name == "members" {
                        resource::MAX_MEMBERS
                    } else {
                        resource::MAX_VALUES
                    };
                    if items.len() > max {
                        return Err(ScimError::bad(
                            ScimType::InvalidValue,
                            format!("{name} has more than {max} values"),
                        ));
                    }
                }
                (_, Some(have @ Value::Object(_))) if !attr.multi => merge(have, new),
                _ => {
                    obj.insert(name.to_owned(), new);
                }
            }
        }
    }
    Ok(())
}

/// Two values of a multi-valued attribute are the same element when their `value`s are equal
/// (members, emails), or when they are equal as a whole.
fn same_element(a: &Value, b: &Value) -> bool {
    match (a.get("value"), b.get("value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn sub_attr(
    obj: &mut Map<String, Value>,
    kind: PatchKind,
    attr: &Attr,
    sub: &Attr,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let new = match kind {
        PatchKind::Remove => None,
        _ => single(sub, value.unwrap_or(&Value::Null))?,
    };
    let slot = obj.entry(attr.name.to_owned()).or_insert(Value::Null);
    if attr.multi {
        if slot.is_null() {
            *slot = Value::Array(Vec::new());
        }
        if let Value::Array(items) = slot {
            if items.is_empty()
                && let Some(n) = &new
            {
                let mut m = Map::new();
                m.insert(sub.name.to_owned(), n.clone());
                items.push(Value::Object(m));
            } else {
                for i in items.iter_mut() {
                    set_sub(i, sub.name, new.clone());
                }
                items.retain(|i| i.as_object().is_some_and(|m| !m.is_empty()));
            }
        }
    } else {
        if slot.is_null() {
            *slot = Value::Object(Map::new());
        }
        set_sub(slot, sub.name, new);
    }
    drop_if_empty(obj, attr.name);
    Ok(())
}

fn set_sub(item: &mut Value, name: &str, v: Option<Value>) {
    if let Some(m) = item.as_object_mut() {
        match v {
            Some(v) => {
                m.insert(name.to_owned(), v);
            }
            None => {
                m.remove(name);
            }
        }
    }
}

fn drop_if_empty(obj: &mut Map<String, Value>, name: &str) {
    let empty = match obj.get(name) {
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Null) => true,
        _ => false,
    };
    if empty {
        obj.remove(name);
    }
}

/// The sub-attribute values a filter of `a eq "x" and b eq "y"` pins, for creating the
/// element an `add` or `replace` with a filter found missing (Entra ID's
/// `emails[type eq "work"].value` on a user without a work email).
fn pinned(f: &Filter, subs: &'static [Attr], out: &mut Map<String, Value>) -> bool {
    match f {
        Filter::Compare(name, Op::Eq, v) if !v.is_null() => {
            match schema::find(subs, name).map(|a| single(a, v)) {
                Some(Ok(Some(x))) => {
                    out.insert(
                        schema::find(subs, name)
                            .map_or(name.as_str(), |a| a.name)
                            .to_owned(),
                        x,
                    );
                    true
                }
                _ => false,
            }
        }
        Filter::And(a, b) => pinned(a, subs, out) && pinned(b, subs, out),
        _ => false,
    }
}

fn filtered(
    obj: &mut Map<String, Value>,
    kind: PatchKind,
    attr: &Attr,
    f: &Filter,
    sub: Option<&Attr>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let scope = Scope::Complex(attr.sub);
    let mut items = match obj.remove(attr.name) {
        Some(Value::Array(a)) => a,
        Some(other) => vec![other],
        None => Vec::new(),
    };
    let hits: Vec<usize> = (0..items.len())
        .filter(|i| f.matches(scope, &items[*i]))
        .collect();
    let result = (|| match kind {
        PatchKind::Remove => {
            match sub {
                None => {
                    let mut i = 0;
                    items.retain(|_| {
                        let keep = !hits.contains(&i);
                        i += 1;
                        keep
                    });
                }
                Some(s) => {
                    for &i in &hits {
                        set_sub(&mut items[i], s.name, None);
                    }
                    items.retain(|i| i.as_object().is_some_and(|m| !m.is_empty()));
                }
            }
            Ok(())
        }
        PatchKind::Add | PatchKind::Replace => {
            let v = value.unwrap_or(&Value::Null);
            let new = match sub {
                Some(s) => {
                    let x = single(s, v)?;
                    x.map(|x| {
                        let mut m = Map::new();
                        m.insert(s.name.to_owned(), x);
                        Value::Object(m)
                    })
                }
                None => single(attr, v)?,
            };
            let Some(new) = new else {
                return Err(ScimError::bad(
                    ScimType::InvalidValue,
                    "add and replace need a non-empty value",
                ));
            };
            if hits.is_empty() {
                let mut m = Map::new();
                if !pinned(f, attr.sub, &mut m) {
                    return Err(ScimError::bad(
                        ScimType::NoTarget,
                        format!("no value of {} matches the filter", attr.name),
                    ));
                }
                let mut element = Value::Object(m);
                merge(&mut element, new);
                items.push(element);
            } else {
                for &i in &hits {
                    if kind == PatchKind::Replace && sub.is_none() {
                        items[i] = new.clone();
                    } else {
                        merge(&mut items[i], new.clone());
                    }
                }
            }
            Ok(())
        }
    })();
    if !items.is_empty() {
        obj.insert(attr.name.to_owned(), Value::Array(items));
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    use super::*;

    fn run(kind: ResourceKind, start: Value, body: Value) -> Result<Value, ScimError> {
        let mut m = start.as_object().cloned().unwrap();
        let ops = parse_request(&body)?;
        apply(kind, &mut m, &ops)?;
        m.remove("schemas");
        Ok(Value::Object(m))
    }

    fn ops(v: Value) -> Value {
        json!({ "schemas": [schema::PATCH_OP], "Operations": v })
    }

    fn user() -> Value {
        json!({ "id": "u1", "userName": "bob", "active": true,
                "emails": [{ "value": "bob@work.example", "type": "work" }] })
    }

    #[test]
    fn okta_and_entra_forms() {
        let u = ResourceKind::User;
        // Okta deactivation: no path, object value
        let r = run(
            u,
            user(),
            ops(json!([{ "op": "replace", "value": { "active": false } }])),
        );
        assert_eq!(r.unwrap()["active"], false);
        // Entra: capitalised op, "False" string
        let r = run(
            u,
            user(),
            ops(json!([{ "op": "Replace", "path": "active", "value": "False" }])),
        );
        assert_eq!(r.unwrap()["active"], false);
        // Entra: dotted and URN keys inside a path-less value
        let r = run(
            u,
            user(),
            ops(json!([{ "op": "replace", "value": {
                "name.givenName": "Kkom", "displayName": "B",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "7",
                "emails[type eq \"work\"].value": "new@work.example" } }])),
        )
        .unwrap();
        assert_eq!(r["name"], json!({ "givenName": "Kkom" }));
        assert_eq!(r[schema::ENTERPRISE]["employeeNumber"], "7");
        assert_eq!(
            r["emails"],
            json!([{ "value": "new@work.example", "type": "work" }])
        );
        // a filter that matches nothing creates the element it pins
        let r = run(
            u,
            user(),
            ops(json!([{ "op": "add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100" }])),
        )
        .unwrap();
        assert_eq!(
            r["phoneNumbers"],
            json!([{ "type": "mobile", "value": "+1 555 0100" }])
        );
    }

    #[test]
    fn extension_object_paths() {
        let u = ResourceKind::User;
        let start = json!({ "id": "u1", "userName": "bob", schema::ENTERPRISE: { "department": "a", "division": "b" } });
        let r = run(u, start.clone(), ops(json!([{ "op": "add", "path": schema::ENTERPRISE, "value": { "schemas": [schema::ENTERPRISE], "costCenter": "c" } }]))).unwrap();
        assert_eq!(
            r[schema::ENTERPRISE],
            json!({ "department": "a", "division": "b", "costCenter": "c" })
        );
        let r = run(u, start.clone(), ops(json!([{ "op": "replace", "path": schema::ENTERPRISE, "value": { "costCenter": "c" } }]))).unwrap();
        assert_eq!(r[schema::ENTERPRISE], json!({ "costCenter": "c" }));
        let r = run(
            u,
            start,
            ops(json!([{ "op": "remove", "path": schema::ENTERPRISE }])),
        )
        .unwrap();
        assert!(r.get(schema::ENTERPRISE).is_none());
    }

    #[test]
    fn group_members() {
        let g = ResourceKind::Group;
        let start = json!({ "id": "g1", "displayName": "G", "members": [{ "value": "a" }, { "value": "b" }] });
        let r = run(
            g,
            start.clone(),
            ops(json!([{ "op": "remove", "path": "members[value eq \"a\"]" }])),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{ "value": "b" }]));
        let r = run(
            g,
            start.clone(),
            ops(json!([{ "op": "Remove", "path": "members", "value": [{ "value": "b" }] }])),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{ "value": "a" }]));
        let r = run(g, start.clone(), ops(json!([{ "op": "Add", "path": "members", "value": [{ "$ref": null, "value": "c" }, { "value": "a" }] }]))).unwrap();
        assert_eq!(
            r["members"],
            json!([{ "value": "a" }, { "value": "b" }, { "value": "c" }])
        );
        let r = run(
            g,
            start.clone(),
            ops(json!([{ "op": "replace", "path": "members", "value": [{ "value": "z" }] }])),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{ "value": "z" }]));
        let r = run(
            g,
            start.clone(),
            ops(json!([{ "op": "replace", "value": { "id": "g1", "displayName": "Renamed" } }])),
        )
        .unwrap();
        assert_eq!(r["displayName"], "Renamed");
        let r = run(
            g,
            start,
            ops(json!([{ "op": "remove", "path": "members" }])),
        )
        .unwrap();
        assert!(r.get("members").is_none());
    }

    #[test]
    fn errors() {
        let u = ResourceKind::User;
        let cases = [
            (
                json!([{ "op": "frobnicate", "path": "title", "value": "x" }]),
                ScimType::InvalidSyntax,
            ),
            (json!([{ "op": "remove" }]), ScimType::NoTarget),
            (
                json!([{ "op": "replace", "path": "id", "value": "x" }]),
                ScimType::Mutability,
            ),
            (
                json!([{ "op": "replace", "path": "meta.created", "value": "x" }]),
                ScimType::Mutability,
            ),
            (
                json!([{ "op": "replace", "path": "nosuch", "value": "x" }]),
                ScimType::InvalidPath,
            ),
            (
                json!([{ "op": "replace", "path": "emails[type eq", "value": "x" }]),
                ScimType::InvalidPath,
            ),
            (
                json!([{ "op": "replace", "path": "emails[nosuch eq \"x\"].value", "value": "x" }]),
                ScimType::InvalidFilter,
            ),
            (
                json!([{ "op": "replace", "path": "emails[type ne \"x\"].value", "value": "y" }]),
                ScimType::NoTarget,
            ),
            (
                json!([{ "op": "replace", "path": "active", "value": "perhaps" }]),
                ScimType::InvalidValue,
            ),
            (
                json!([{ "op": "add", "path": "title" }]),
                ScimType::InvalidValue,
            ),
            (json!("nope"), ScimType::InvalidSyntax),
        ];
        for (body, want) in cases {
            let mut start = user();
            if body.is_array() && body[0]["path"] == "emails[type ne \"x\"].value" {
                start["emails"] = json!([{ "value": "v", "type": "x" }]);
            }
            let e = run(u, start, ops(body.clone())).unwrap_err();
            assert_eq!(e.scim_type, Some(want), "{body}");
        }
        let e = run(u, user(), json!({ "schemas": [] })).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    }
}
