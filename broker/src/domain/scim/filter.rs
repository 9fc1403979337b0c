//! SCIM filters (RFC 7644 §3.4.2.2) and attribute paths: parsed once, names resolved against
//! the resource's schema (case-insensitively), evaluated over the stored JSON.
//!
//! Supported: `eq ne co sw ew pr gt ge lt le`, `and`, `or`, `not (...)`, parentheses, value
//! paths `emails[type eq "work"]` (also followed by `.value eq "..."`, as Entra ID's matching
//! attributes are written), URN-qualified names, and unquoted values (`name.familyName eq
//! Smith`) as strings.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::schema::{self, Attr, Mutability, Resolved, ResourceKind, Type};
use super::{ScimError, ScimType};

/// Longest filter accepted.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 32;

const META_SUB: &[Attr] = &[
    meta_attr("resourceType", Type::String),
    meta_attr("created", Type::DateTime),
    meta_attr("lastModified", Type::DateTime),
    meta_attr("location", Type::Reference),
    meta_attr("version", Type::String),
];

const fn meta_attr(name: &'static str, ty: Type) -> Attr {
    Attr {
        name,
        ty,
        multi: false,
        required: false,
        case_exact: true,
        mutability: Mutability::ReadOnly,
        always: false,
        sub: &[],
        canonical: &[],
        refs: &[],
        unique_server: false,
        description: "",
    }
}

/// `meta`, as filters and projections see it.
pub const META: Attr = Attr {
    name: "meta",
    ty: Type::Complex,
    multi: false,
    required: false,
    case_exact: false,
    mutability: Mutability::ReadOnly,
    always: false,
    sub: META_SUB,
    canonical: &[],
    refs: &[],
    unique_server: false,
    description: "",
};

/// `schemas`.
pub const SCHEMAS: Attr = Attr {
    name: "schemas",
    ty: Type::Reference,
    multi: true,
    required: true,
    case_exact: true,
    mutability: Mutability::ReadOnly,
    always: true,
    sub: &[],
    canonical: &[],
    refs: &[],
    unique_server: false,
    description: "",
};

/// A resolved attribute: where it lives in the JSON and its definition.
#[derive(Debug, Clone, Copy)]
pub struct AttrRef {
    /// The extension object key, for extension attributes.
    pub ext: Option<&'static str>,
    /// The attribute.
    pub attr: Attr,
    /// A sub-attribute, when named.
    pub sub: Option<Attr>,
}

impl AttrRef {
    /// The definition that values at this path follow.
    pub fn leaf(&self) -> &Attr {
        self.sub.as_ref().unwrap_or(&self.attr)
    }

    /// The container object of the attribute in `obj`.
    pub fn container<'v>(&self, obj: &'v Value) -> Option<&'v Value> {
        match self.ext {
            Some(u) => obj.get(u),
            None => Some(obj),
        }
    }

    /// The attribute's value in `obj`.
    pub fn value<'v>(&self, obj: &'v Value) -> Option<&'v Value> {
        self.container(obj)?.get(self.attr.name)
    }

    /// Every leaf value this path names in `obj` (arrays flattened; a multi-valued complex
    /// attribute without a sub-attribute compares its elements' `value`).
    pub fn values<'v>(&self, obj: &'v Value) -> Vec<&'v Value> {
        let Some(v) = self.value(obj) else {
            return Vec::new();
        };
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let sub = match (&self.sub, self.attr.ty) {
            (Some(s), _) => Some(s.name),
            (None, Type::Complex) if self.attr.multi => Some("value"),
            _ => None,
        };
        match sub {
            Some(s) => items.into_iter().filter_map(|i| i.get(s)).collect(),
            None => items,
        }
    }
}

fn bad_path(p: &str) -> ScimError {
    ScimError::bad(ScimType::InvalidPath, format!("unknown attribute {p:?}"))
}

/// Resolves `[urn:]attr[.sub]` against a resource type.
///
/// # Errors
/// `invalidPath` naming the unknown attribute.
pub fn resolve_path(kind: ResourceKind, path: &str) -> Result<AttrRef, ScimError> {
    // a URN prefix contains dots ("2.0"): the sub-attribute dot is the first after it
    let lower = path.to_ascii_lowercase();
    let mut prefix_len = 0;
    for urn in std::iter::once(kind.core()).chain(kind.extensions().iter().map(|(u, _)| *u)) {
        let u = format!("{}:", urn.to_ascii_lowercase());
        if lower.starts_with(&u) {
            prefix_len = u.len();
        }
        if lower == urn.to_ascii_lowercase() {
            prefix_len = path.len();
        }
    }
    let (head, sub) = match path[prefix_len..].split_once('.') {
        Some((h, s)) => (&path[..prefix_len + h.len()], Some(s)),
        None => (path, None),
    };
    let (ext, attr) = match kind.resolve(head).ok_or_else(|| bad_path(path))? {
        Resolved::Common("id") => (None, schema::ID),
        Resolved::Common("externalId") => (None, schema::EXTERNAL_ID),
        Resolved::Common("meta") => (None, META),
        Resolved::Common(_) => (None, SCHEMAS),
        Resolved::Core(a) => (None, *a),
        Resolved::Extension(u, a) => (Some(u), *a),
        Resolved::ExtensionObject(_) => return Err(bad_path(path)),
    };
    let sub = match sub {
        Some(s) => Some(*schema::find(attr.sub, s).ok_or_else(|| bad_path(path))?),
        None => None,
    };
    Ok(AttrRef { ext, attr, sub })
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// equal
    Eq,
    /// not equal
    Ne,
    /// contains
    Co,
    /// starts with
    Sw,
    /// ends with
    Ew,
    /// greater than
    Gt,
    /// greater or equal
    Ge,
    /// less than
    Lt,
    /// less or equal
    Le,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return None,
        })
    }
}

/// A parsed filter; attribute names are resolved against the context they apply in.
#[derive(Debug, Clone)]
pub enum Filter {
    /// Both.
    And(Box<Filter>, Box<Filter>),
    /// Either.
    Or(Box<Filter>, Box<Filter>),
    /// Not.
    Not(Box<Filter>),
    /// `attr pr`
    Present(String),
    /// `attr op value`
    Compare(String, Op, Value),
    /// `attr[filter]`, optionally `.sub op value` / `.sub pr` after it.
    ValuePath {
        /// The multi-valued attribute.
        attr: String,
        /// The filter its elements must pass.
        inner: Box<Filter>,
        /// A sub-attribute test on the matching elements.
        then: Option<(String, Option<(Op, Value)>)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidFilter, detail)
}

fn tokenize(s: &str) -> Result<Vec<Tok>, ScimError> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            b')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            b'[' => {
                out.push(Tok::LBracket);
                i += 1;
            }
            b']' => {
                out.push(Tok::RBracket);
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if i >= b.len() {
                    return Err(invalid("unterminated string in filter"));
                }
                i += 1;
                let lit: String = serde_json::from_str(&s[start..i])
                    .map_err(|_| invalid("bad string literal in filter"))?;
                out.push(Tok::Str(lit));
            }
            _ => {
                let start = i;
                while i < b.len() && !b" \t\r\n()[]\"".contains(&b[i]) {
                    i += 1;
                }
                out.push(Tok::Word(s[start..i].to_owned()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn or(&mut self) -> Result<Filter, ScimError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(invalid("filter nested too deeply"));
        }
        let mut f = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            f = Filter::Or(Box::new(f), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(f)
    }

    fn and(&mut self) -> Result<Filter, ScimError> {
        let mut f = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            f = Filter::And(Box::new(f), Box::new(self.unary()?));
        }
        Ok(f)
    }

    fn unary(&mut self) -> Result<Filter, ScimError> {
        if self.keyword("not") && self.toks.get(self.pos + 1) == Some(&Tok::LParen) {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.group()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            return self.group();
        }
        self.attr_expr()
    }

    fn group(&mut self) -> Result<Filter, ScimError> {
        self.expect(&Tok::LParen)?;
        let f = self.or()?;
        self.expect(&Tok::RParen)?;
        Ok(f)
    }

    fn expect(&mut self, t: &Tok) -> Result<(), ScimError> {
        match self.next() {
            Some(ref got) if got == t => Ok(()),
            _ => Err(invalid(format!("expected {t:?} in filter"))),
        }
    }

    fn attr_expr(&mut self) -> Result<Filter, ScimError> {
        let Some(Tok::Word(path)) = self.next() else {
            return Err(invalid("expected an attribute name in filter"));
        };
        if self.peek() == Some(&Tok::LBracket) {
            self.pos += 1;
            let inner = self.or()?;
            self.expect(&Tok::RBracket)?;
            let then = match self.peek() {
                Some(Tok::Word(w)) if w.starts_with('.') => {
                    let sub = w[1..].to_owned();
                    self.pos += 1;
                    if self.keyword("pr") {
                        self.pos += 1;
                        Some((sub, None))
                    } else if matches!(self.peek(), Some(Tok::Word(w)) if Op::parse(w).is_some()) {
                        let (op, v) = self.comparison()?;
                        Some((sub, Some((op, v))))
                    } else {
                        return Err(invalid("expected an operator after a value path"));
                    }
                }
                _ => None,
            };
            return Ok(Filter::ValuePath {
                attr: path,
                inner: Box::new(inner),
                then,
            });
        }
        if self.keyword("pr") {
            self.pos += 1;
            return Ok(Filter::Present(path));
        }
        let (op, v) = self.comparison()?;
        Ok(Filter::Compare(path, op, v))
    }

    fn comparison(&mut self) -> Result<(Op, Value), ScimError> {
        let op = match self.next() {
            Some(Tok::Word(w)) => {
                Op::parse(&w).ok_or_else(|| invalid(format!("unknown operator {w:?}")))?
            }
            _ => return Err(invalid("expected an operator in filter")),
        };
        let v = match self.next() {
            Some(Tok::Str(s)) => Value::String(s),
            Some(Tok::Word(w)) => match w.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => match serde_json::from_str::<serde_json::Number>(&w) {
                    Ok(n) => Value::Number(n),
                    // unquoted text, as some clients send it
                    Err(_) => Value::String(w),
                },
            },
            _ => return Err(invalid("expected a value in filter")),
        };
        Ok((op, v))
    }
}

/// Parses a filter.
///
/// # Errors
/// `invalidFilter` naming the defect.
pub fn parse(s: &str) -> Result<Filter, ScimError> {
    if s.len() > MAX_FILTER_LEN {
        return Err(invalid(format!(
            "filter longer than {MAX_FILTER_LEN} characters"
        )));
    }
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Err(invalid("empty filter"));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let f = p.or()?;
    if p.pos != p.toks.len() {
        return Err(invalid("unexpected text after the filter"));
    }
    Ok(f)
}

/// Where a filter's names are resolved: a resource, or the elements of a complex attribute.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    /// Top-level names of a resource type.
    Resource(ResourceKind),
    /// Sub-attribute names of a complex attribute.
    Complex(&'static [Attr]),
}

fn resolve_in(scope: Scope, name: &str) -> Result<AttrRef, ScimError> {
    match scope {
        Scope::Resource(k) => resolve_path(k, name),
        Scope::Complex(subs) => {
            let a = schema::find(subs, name).ok_or_else(|| bad_path(name))?;
            Ok(AttrRef {
                ext: None,
                attr: *a,
                sub: None,
            })
        }
    }
}

impl Filter {
    /// Checks that every name resolves and every value path names a complex attribute.
    ///
    /// # Errors
    /// `invalidFilter`.
    pub fn check(&self, scope: Scope) -> Result<(), ScimError> {
        let as_filter = |e: ScimError| invalid(e.detail);
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.check(scope)?;
                b.check(scope)
            }
            Filter::Not(a) => a.check(scope),
            Filter::Present(p) | Filter::Compare(p, _, _) => {
                resolve_in(scope, p).map(|_| ()).map_err(as_filter)
            }
            Filter::ValuePath { attr, inner, then } => {
                let r = resolve_in(scope, attr).map_err(as_filter)?;
                if r.attr.ty != Type::Complex || r.sub.is_some() {
                    return Err(invalid(format!("{attr:?} is not a complex attribute")));
                }
                inner.check(Scope::Complex(r.attr.sub))?;
                if let Some((sub, _)) = then {
                    schema::find(r.attr.sub, sub)
                        .ok_or_else(|| invalid(format!("unknown attribute {sub:?}")))?;
                }
                Ok(())
            }
        }
    }

    /// Whether `obj` passes (names must have passed [`Filter::check`]).
    pub fn matches(&self, scope: Scope, obj: &Value) -> bool {
        match self {
            Filter::And(a, b) => a.matches(scope, obj) && b.matches(scope, obj),
            Filter::Or(a, b) => a.matches(scope, obj) || b.matches(scope, obj),
            Filter::Not(a) => !a.matches(scope, obj),
            Filter::Present(p) => resolve_in(scope, p)
                .map(|r| r.values(obj).into_iter().any(present))
                .unwrap_or(false),
            Filter::Compare(p, op, v) => resolve_in(scope, p)
                .map(|r| compare_any(r.leaf(), &r.values(obj), *op, v))
                .unwrap_or(false),
            Filter::ValuePath { attr, inner, then } => {
                let Ok(r) = resolve_in(scope, attr) else {
                    return false;
                };
                let elements: Vec<&Value> = match r.value(obj) {
                    Some(Value::Array(a)) => a.iter().collect(),
                    Some(v @ Value::Object(_)) => vec![v],
                    _ => Vec::new(),
                };
                let sub_scope = Scope::Complex(r.attr.sub);
                elements.into_iter().any(|e| {
                    inner.matches(sub_scope, e)
                        && match then {
                            None => true,
                            Some((sub, test)) => {
                                let Some(def) = schema::find(r.attr.sub, sub) else {
                                    return false;
                                };
                                let vals: Vec<&Value> = e.get(def.name).into_iter().collect();
                                match test {
                                    None => vals.into_iter().any(present),
                                    Some((op, v)) => compare_any(def, &vals, *op, v),
                                }
                            }
                        }
                })
            }
        }
    }

    /// `userName eq "x"` (or `externalId eq "x"`) alone: the value, for an index lookup.
    pub fn simple_eq(&self, name: &str) -> Option<&str> {
        match self {
            Filter::Compare(p, Op::Eq, Value::String(v)) => {
                let plain = p.rsplit(':').next().unwrap_or(p);
                plain.eq_ignore_ascii_case(name).then_some(v.as_str())
            }
            _ => None,
        }
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare_any(def: &Attr, actual: &[&Value], op: Op, expected: &Value) -> bool {
    if expected.is_null() {
        let any = actual.iter().any(|v| present(v));
        return match op {
            Op::Eq => !any,
            Op::Ne => any,
            _ => false,
        };
    }
    if op == Op::Ne {
        return !actual.iter().any(|a| compare(def, a, Op::Eq, expected));
    }
    actual.iter().any(|a| compare(def, a, op, expected))
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn compare(def: &Attr, actual: &Value, op: Op, expected: &Value) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match def.ty {
        Type::Boolean => {
            let (Some(a), Some(e)) = (as_bool(actual), as_bool(expected)) else {
                return false;
            };
            return match op {
                Op::Eq => a == e,
                Op::Ne => a != e,
                _ => false,
            };
        }
        Type::Integer | Type::Decimal => match (actual.as_f64(), expected.as_f64()) {
            (Some(a), Some(e)) => a.partial_cmp(&e),
            _ => None,
        },
        Type::DateTime => {
            let (Some(a), Some(e)) = (actual.as_str(), expected.as_str()) else {
                return false;
            };
            match (
                OffsetDateTime::parse(a, &Rfc3339),
                OffsetDateTime::parse(e, &Rfc3339),
            ) {
                (Ok(a), Ok(e)) => Some(a.cmp(&e)),
                _ => return string_compare(a, e, true, op),
            }
        }
        _ => {
            let (Some(a), Some(e)) = (actual.as_str(), expected_text(expected)) else {
                return false;
            };
            return string_compare(a, &e, def.case_exact, op);
        }
    };
    let Some(ord) = ord else { return false };
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Co | Op::Sw | Op::Ew => false,
    }
}

fn expected_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn string_compare(a: &str, e: &str, case_exact: bool, op: Op) -> bool {
    let (a, e) = if case_exact {
        (a.to_owned(), e.to_owned())
    } else {
        (a.to_lowercase(), e.to_lowercase())
    };
    match op {
        Op::Eq => a == e,
        Op::Ne => a != e,
        Op::Co => a.contains(&e),
        Op::Sw => a.starts_with(&e),
        Op::Ew => a.ends_with(&e),
        Op::Gt => a > e,
        Op::Ge => a >= e,
        Op::Lt => a < e,
        Op::Le => a <= e,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    use super::*;

    fn user() -> Value {
        json!({
            "id": "u1", "userName": "Alice@Example.com", "externalId": "E-1", "active": true,
            "name": { "givenName": "Alice", "familyName": "Smith" },
            "emails": [{ "value": "alice@example.com", "type": "work" },
                       { "value": "a@home.example", "type": "home" }],
            "meta": { "created": "2026-01-02T03:04:05Z" },
            schema::ENTERPRISE: { "employeeNumber": "42" },
        })
    }

    fn check(filter: &str, expected: bool) {
        let f = parse(filter).unwrap();
        let scope = Scope::Resource(ResourceKind::User);
        f.check(scope).unwrap();
        assert_eq!(f.matches(scope, &user()), expected, "{filter}");
    }

    #[test]
    fn evaluates() {
        check(r#"userName eq "alice@example.com""#, true);
        check(r#"USERNAME Eq "ALICE@EXAMPLE.COM""#, true);
        check(r#"externalId eq "e-1""#, false);
        check(r#"externalId eq "E-1""#, true);
        check(r#"userName ne "x""#, true);
        check(r#"userName co "example""#, true);
        check(r#"userName sw "ali""#, true);
        check(r#"userName ew ".com""#, true);
        check("title pr", false);
        check("name.givenName pr", true);
        check(
            r#"emails[type eq "work"].value eq "alice@example.com""#,
            true,
        );
        check(r#"emails[type eq "work" and value co "home"]"#, false);
        check(r#"emails[type eq "home"]"#, true);
        check(r#"emails co "home.example""#, true);
        check(r#"emails.type eq "home""#, true);
        check("active eq true", true);
        check(r#"active eq "False""#, false);
        check(r#"meta.created gt "2026-01-01T00:00:00Z""#, true);
        check(r#"meta.created lt "2026-01-01T00:00:00+00:00""#, false);
        check(
            r#"not (userName eq "x") and (title pr or active eq true)"#,
            true,
        );
        check("name.familyName eq Smith", true);
        check(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "42""#,
            true,
        );
        check(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:name.givenName eq "alice""#,
            true,
        );
    }

    #[test]
    fn refuses() {
        for f in [
            "",
            "userName",
            r#"userName zz "x""#,
            r#"userName eq "x"#,
            r#"(userName eq "x""#,
            r#"userName eq "x" garbage"#,
        ] {
            assert_eq!(
                parse(f).unwrap_err().scim_type,
                Some(ScimType::InvalidFilter),
                "{f}"
            );
        }
        let f = parse(r#"nosuch eq "x""#).unwrap();
        let e = f.check(Scope::Resource(ResourceKind::User)).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
        let deep = format!("{}userName pr{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn simple_eq_for_index() {
        let f = parse(r#"userName eq "Bob""#).unwrap();
        assert_eq!(f.simple_eq("userName"), Some("Bob"));
        assert_eq!(f.simple_eq("externalId"), None);
    }
}
