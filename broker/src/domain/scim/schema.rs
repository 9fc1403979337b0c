//! The SCIM schemas postern serves (RFC 7643 §4, §7, §8.7): the attribute definitions that
//! drive name resolution (case-insensitive), type coercion, mutability checks, filters and
//! `/Schemas`, `/ResourceTypes` and `/ServiceProviderConfig`.

use serde_json::{Value, json};

/// The core User schema.
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The enterprise User extension.
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The core Group schema.
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The list response message.
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The PATCH request message.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The search request message.
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// The error message.
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The service provider configuration schema.
pub const SP_CONFIG: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// The resource type schema.
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// The schema schema.
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// Most results a list or search returns per page.
pub const MAX_RESULTS: usize = 1000;
/// Most operations in one PATCH request.
pub const MAX_OPERATIONS: usize = 1000;

/// An attribute's data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// `string`
    String,
    /// `boolean`
    Boolean,
    /// `decimal`
    Decimal,
    /// `integer`
    Integer,
    /// `dateTime`
    DateTime,
    /// `reference`
    Reference,
    /// `complex`
    Complex,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Boolean => "boolean",
            Type::Decimal => "decimal",
            Type::Integer => "integer",
            Type::DateTime => "dateTime",
            Type::Reference => "reference",
            Type::Complex => "complex",
        }
    }
}

/// Whether and how an attribute may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// `readWrite`
    ReadWrite,
    /// `readOnly`: the service provider sets it.
    ReadOnly,
    /// `immutable`: set once.
    Immutable,
}

impl Mutability {
    fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadWrite => "readWrite",
            Mutability::ReadOnly => "readOnly",
            Mutability::Immutable => "immutable",
        }
    }
}

/// One attribute definition.
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    /// Its canonical name.
    pub name: &'static str,
    /// Its type.
    pub ty: Type,
    /// Multi-valued.
    pub multi: bool,
    /// Required.
    pub required: bool,
    /// Compared case-sensitively.
    pub case_exact: bool,
    /// Mutability.
    pub mutability: Mutability,
    /// `always` (true) or `default` (false).
    pub always: bool,
    /// Sub-attributes of a complex attribute.
    pub sub: &'static [Attr],
    /// Canonical values (for `type`).
    pub canonical: &'static [&'static str],
    /// Reference types.
    pub refs: &'static [&'static str],
    /// One of `none`, `server`.
    pub unique_server: bool,
    /// Description.
    pub description: &'static str,
}

const fn a(name: &'static str, ty: Type, description: &'static str) -> Attr {
    Attr {
        name,
        ty,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        always: false,
        sub: &[],
        canonical: &[],
        refs: &[],
        unique_server: false,
        description,
    }
}

const fn s(name: &'static str, description: &'static str) -> Attr {
    a(name, Type::String, description)
}

const fn complex(name: &'static str, sub: &'static [Attr], description: &'static str) -> Attr {
    let mut x = a(name, Type::Complex, description);
    x.sub = sub;
    x
}

const fn multi(mut x: Attr) -> Attr {
    x.multi = true;
    x
}

const fn with_canonical(mut x: Attr, c: &'static [&'static str]) -> Attr {
    x.canonical = c;
    x
}

const fn reference(name: &'static str, refs: &'static [&'static str], d: &'static str) -> Attr {
    let mut x = a(name, Type::Reference, d);
    x.refs = refs;
    x.case_exact = true;
    x
}

const fn read_only(mut x: Attr) -> Attr {
    x.mutability = Mutability::ReadOnly;
    x
}

const fn immutable(mut x: Attr) -> Attr {
    x.mutability = Mutability::Immutable;
    x
}

const NAME_SUB: &[Attr] = &[
    s("formatted", "The full name, formatted for display."),
    s("familyName", "The family name."),
    s("givenName", "The given name."),
    s("middleName", "The middle name(s)."),
    s("honorificPrefix", "The honorific prefix(es)."),
    s("honorificSuffix", "The honorific suffix(es)."),
];

const EMAIL_SUB: &[Attr] = &[
    s(
        "value",
        "The email address; becomes an im: messaging address.",
    ),
    s("display", "A human-readable name."),
    with_canonical(
        s("type", "work, home or other."),
        &["work", "home", "other"],
    ),
    a("primary", Type::Boolean, "The primary email address."),
];

const PHONE_SUB: &[Attr] = &[
    s(
        "value",
        "The phone number; in E.164 it becomes a tel: messaging address.",
    ),
    s("display", "A human-readable name."),
    with_canonical(
        s("type", "work, home, mobile, fax, pager or other."),
        &["work", "home", "mobile", "fax", "pager", "other"],
    ),
    a("primary", Type::Boolean, "The primary phone number."),
];

const ADDRESS_SUB: &[Attr] = &[
    s("formatted", "The full mailing address."),
    s("streetAddress", "The street address."),
    s("locality", "The city or locality."),
    s("region", "The state or region."),
    s("postalCode", "The postal code."),
    s("country", "The country (ISO 3166-1 alpha-2)."),
    with_canonical(
        s("type", "work, home or other."),
        &["work", "home", "other"],
    ),
    a("primary", Type::Boolean, "The primary address."),
];

const fn user_name() -> Attr {
    let mut x = s(
        "userName",
        "Unique per tenant (compared case-insensitively); the user postern's devices name.",
    );
    x.required = true;
    x.unique_server = true;
    x
}

/// The core User attributes postern keeps.
pub const USER_ATTRS: &[Attr] = &[
    user_name(),
    complex("name", NAME_SUB, "The components of the user's name."),
    s("displayName", "The name displayed to end users."),
    s("nickName", "The casual name."),
    reference("profileUrl", &["external"], "The user's online profile."),
    s("title", "The user's title."),
    s("userType", "The relationship to the organization."),
    s("preferredLanguage", "The preferred language."),
    s("locale", "The default location."),
    s("timezone", "The time zone (IANA)."),
    a(
        "active",
        Type::Boolean,
        "Whether the user is active; false revokes their devices' credentials.",
    ),
    multi(complex("emails", EMAIL_SUB, "Email addresses.")),
    multi(complex("phoneNumbers", PHONE_SUB, "Phone numbers.")),
    multi(complex(
        "addresses",
        ADDRESS_SUB,
        "Physical mailing addresses.",
    )),
];

const MANAGER_SUB: &[Attr] = &[
    s("value", "The id of the manager's User resource."),
    reference("$ref", &["User"], "The URI of the manager's User resource."),
    read_only(s("displayName", "The manager's display name.")),
];

/// The enterprise extension attributes.
pub const ENTERPRISE_ATTRS: &[Attr] = &[
    s("employeeNumber", "The employee number."),
    s("costCenter", "The cost center."),
    s("organization", "The organization."),
    s("division", "The division."),
    s("department", "The department."),
    complex("manager", MANAGER_SUB, "The user's manager."),
];

const MEMBER_SUB: &[Attr] = &[
    immutable(s("value", "The id of the member resource.")),
    immutable(reference(
        "$ref",
        &["User", "Group"],
        "The URI of the member resource.",
    )),
    read_only(s("display", "The member's display name.")),
    immutable(with_canonical(
        s("type", "User or Group."),
        &["User", "Group"],
    )),
];

const fn group_display_name() -> Attr {
    let mut x = s("displayName", "The group's name.");
    x.required = true;
    x
}

/// The core Group attributes.
pub const GROUP_ATTRS: &[Attr] = &[
    group_display_name(),
    multi(complex("members", MEMBER_SUB, "The members of the group.")),
];

/// `externalId`, common to every resource.
pub const EXTERNAL_ID: Attr = {
    let mut x = s(
        "externalId",
        "The identifier the provisioning client gives.",
    );
    x.case_exact = true;
    x
};

/// `id`, common to every resource.
pub const ID: Attr = {
    let mut x = read_only(s("id", "The service provider's identifier."));
    x.case_exact = true;
    x.always = true;
    x
};

/// Which resource type a schema set belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// Users.
    User,
    /// Groups.
    Group,
}

impl ResourceKind {
    /// `User` or `Group`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }

    /// The endpoint (`/Users`).
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }

    /// The core schema URN.
    pub fn core(self) -> &'static str {
        match self {
            ResourceKind::User => USER,
            ResourceKind::Group => GROUP,
        }
    }

    /// The core attributes.
    pub fn attrs(self) -> &'static [Attr] {
        match self {
            ResourceKind::User => USER_ATTRS,
            ResourceKind::Group => GROUP_ATTRS,
        }
    }

    /// The extension schemas and their attributes.
    pub fn extensions(self) -> &'static [(&'static str, &'static [Attr])] {
        match self {
            ResourceKind::User => &[(ENTERPRISE, ENTERPRISE_ATTRS)],
            ResourceKind::Group => &[],
        }
    }
}

/// Where a top-level name resolved to.
#[derive(Debug, Clone, Copy)]
pub enum Resolved {
    /// `id`, `externalId`, `schemas`, `meta`: the common attributes.
    Common(&'static str),
    /// A core attribute.
    Core(&'static Attr),
    /// An extension's attribute: the URN (the object key) and the attribute.
    Extension(&'static str, &'static Attr),
    /// An extension's whole object.
    ExtensionObject(&'static str),
}

/// Finds an attribute by name, case-insensitively.
pub fn find<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a Attr> {
    attrs.iter().find(|x| x.name.eq_ignore_ascii_case(name))
}

impl ResourceKind {
    /// Resolves a top-level name, optionally URN-qualified (`urn:...:User:userName`,
    /// `urn:...:enterprise:2.0:User:employeeNumber`, or an extension URN alone). Sub-attribute
    /// parts (after a dot) are the caller's.
    pub fn resolve(self, name: &str) -> Option<Resolved> {
        let lower = name.to_ascii_lowercase();
        for (urn, attrs) in self.extensions() {
            let u = urn.to_ascii_lowercase();
            if lower == u {
                return Some(Resolved::ExtensionObject(urn));
            }
            if let Some(rest) = lower.strip_prefix(&format!("{u}:")) {
                return find(attrs, rest).map(|x| Resolved::Extension(urn, x));
            }
        }
        let core = self.core().to_ascii_lowercase();
        let plain = lower
            .strip_prefix(&format!("{core}:"))
            .unwrap_or(lower.as_str());
        for common in ["id", "externalId", "schemas", "meta"] {
            if plain.eq_ignore_ascii_case(common) {
                return Some(Resolved::Common(common));
            }
        }
        find(self.attrs(), plain).map(Resolved::Core)
    }
}

fn attr_json(x: &Attr) -> Value {
    let mut v = json!({
        "name": x.name,
        "type": x.ty.as_str(),
        "multiValued": x.multi,
        "description": x.description,
        "required": x.required,
        "caseExact": x.case_exact,
        "mutability": x.mutability.as_str(),
        "returned": if x.always { "always" } else { "default" },
        "uniqueness": if x.unique_server { "server" } else { "none" },
    });
    if !x.canonical.is_empty() {
        v["canonicalValues"] = json!(x.canonical);
    }
    if x.ty == Type::Reference {
        v["referenceTypes"] = json!(x.refs);
    }
    if x.ty == Type::Complex {
        v["subAttributes"] = Value::Array(x.sub.iter().map(attr_json).collect());
    }
    v
}

fn schema_json(id: &str, name: &str, description: &str, attrs: &[Attr], base: &str) -> Value {
    json!({
        "schemas": [SCHEMA],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.iter().map(attr_json).collect::<Vec<_>>(),
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{id}") },
    })
}

/// Every schema postern serves, as `/Schemas` lists them (`base` is the SCIM base URL).
pub fn schemas(base: &str) -> Vec<Value> {
    vec![
        schema_json(USER, "User", "User Account", USER_ATTRS, base),
        schema_json(
            ENTERPRISE,
            "EnterpriseUser",
            "Enterprise User",
            ENTERPRISE_ATTRS,
            base,
        ),
        schema_json(GROUP, "Group", "Group", GROUP_ATTRS, base),
    ]
}

/// The resource types, as `/ResourceTypes` lists them.
pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": [RESOURCE_TYPE],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "User Account",
            "schema": USER,
            "schemaExtensions": [{ "schema": ENTERPRISE, "required": false }],
            "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User") },
        }),
        json!({
            "schemas": [RESOURCE_TYPE],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Group",
            "schema": GROUP,
            "schemaExtensions": [],
            "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group") },
        }),
    ]
}

/// The service provider configuration.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SP_CONFIG],
        "documentationUri": "https://example.invalid/postern/docs/scim.md",
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": MAX_RESULTS },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A postern API token of role scim (pst_<id>_<secret>) in the Authorization header",
            "primary": true,
        }],
        "meta": { "resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig") },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn names_resolve_case_insensitively_and_qualified() {
        let k = ResourceKind::User;
        assert!(matches!(k.resolve("USERNAME"), Some(Resolved::Core(a)) if a.name == "userName"));
        assert!(matches!(
            k.resolve("urn:ietf:params:scim:schemas:core:2.0:User:name"),
            Some(Resolved::Core(a)) if a.name == "name"
        ));
        assert!(matches!(
            k.resolve("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"),
            Some(Resolved::Extension(_, a)) if a.name == "employeeNumber"
        ));
        assert!(matches!(
            k.resolve(ENTERPRISE),
            Some(Resolved::ExtensionObject(_))
        ));
        assert!(matches!(
            k.resolve("ExternalId"),
            Some(Resolved::Common("externalId"))
        ));
        assert!(k.resolve("password").is_none());
    }
}
