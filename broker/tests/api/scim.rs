//! SCIM 2.0 through the router (no socket): the protocol rules, the Okta and Entra ID quirks,
//! every refusal in the SCIM error schema with its exact `scimType`, the lifecycle into the
//! posture engine, and tenant isolation.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use postern_broker::app;
use postern_broker::domain::devices::NewDevice;
use postern_broker::domain::posture::Posture;
use postern_broker::domain::{Domain, Principal, SystemClock};
use postern_broker::http::{AppState, router};
use postern_broker::model::Role;
use postern_broker::store::Store;
use postern_broker::store::memory::MemoryStore;

const MAX_BODY: usize = 64 * 1024;
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

struct Harness {
    domain: Arc<Domain>,
    posture: Arc<Posture>,
    store: Arc<dyn Store>,
    app: axum::Router,
    /// A scim token of the default tenant.
    token: String,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn harness() -> Harness {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let domain = app::ephemeral(Arc::clone(&store), Arc::new(SystemClock))
        .await
        .unwrap();
    let acme = Arc::new(
        postern_broker::domain::acme::Acme::new(Arc::clone(&domain), Default::default()).unwrap(),
    );
    let posture = app::ephemeral_posture(&domain).unwrap();
    let app = router(
        AppState::new(Arc::clone(&domain), acme, Arc::clone(&posture)),
        MAX_BODY,
    );
    let token = domain
        .create_token(&Principal::cli(), None, Role::Scim, "idp")
        .await
        .unwrap()
        .token;
    Harness {
        domain,
        posture,
        store,
        app,
        token,
    }
}

impl Harness {
    async fn raw(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: &str,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "broker.example:8443");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(b)),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !bytes.is_empty() {
            assert_eq!(
                headers.get(header::CONTENT_TYPE).unwrap(),
                "application/scim+json",
                "{method} {uri}"
            );
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        self.call_as(&self.token.clone(), method, uri, body).await
    }

    async fn call_as(&self, token: &str, method: &str, uri: &str, body: Option<Value>) -> Reply {
        self.raw(
            method,
            uri,
            Some(token),
            body.map(|b| serde_json::to_vec(&b).unwrap()),
            "application/scim+json",
            &[],
        )
        .await
    }

    async fn create_user(&self, body: Value) -> Value {
        let r = self.call("POST", "/scim/v2/Users", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }

    async fn patch(&self, uri: &str, ops: Value) -> Reply {
        self.call(
            "PATCH",
            uri,
            Some(json!({ "schemas": [PATCH], "Operations": ops })),
        )
        .await
    }

    async fn device(&self, serial: &str, user: &str) -> String {
        let admin = Principal::cli();
        let d = self
            .domain
            .register_device(
                &admin,
                NewDevice {
                    serial: Some(serial.into()),
                    platform: Some("ios".into()),
                    user: Some(user.into()),
                    ..NewDevice::default()
                },
            )
            .await
            .unwrap();
        self.posture.device_registered(&admin, &d).await.unwrap();
        postern_broker::domain::scim::Scim::new(&self.posture)
            .device_registered(&admin, &d)
            .await
            .unwrap();
        d.id
    }

    fn addresses(&self, device: &str) -> Vec<String> {
        let r = self.posture.stored("default", device).unwrap().unwrap();
        r.addresses.iter().map(|a| a.as_str().to_owned()).collect()
    }

    fn deactivated(&self, device: &str) -> bool {
        let r = self.posture.stored("default", device).unwrap().unwrap();
        r.user_deactivated.is_some()
    }

    fn audit_actions(&self) -> Vec<String> {
        self.store
            .audit_entries(1, 100_000)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }
}

/// The reply is a SCIM error with this status and scimType.
fn assert_scim_error(r: &Reply, status: StatusCode, scim_type: Option<&str>) {
    assert_eq!(r.status, status, "body: {}", r.body);
    assert_eq!(
        r.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "body: {}",
        r.body
    );
    assert_eq!(r.body["status"], json!(status.as_u16().to_string()));
    assert_eq!(
        r.body.get("scimType").and_then(Value::as_str),
        scim_type,
        "body: {}",
        r.body
    );
    assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

#[tokio::test]
async fn discovery() {
    let h = harness().await;
    let r = h.call("GET", "/scim/v2/ServiceProviderConfig", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["patch"]["supported"], true);
    assert_eq!(r.body["filter"]["maxResults"], 1000);
    assert_eq!(r.body["bulk"]["supported"], false);
    let r = h.call("GET", "/scim/v2/Schemas", None).await;
    assert_eq!(r.body["totalResults"], 3);
    let ids: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&USER) && ids.contains(&ENTERPRISE));
    let r = h
        .call("GET", &format!("/scim/v2/Schemas/{USER}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let user_name = r.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "userName")
        .unwrap();
    assert_eq!(user_name["uniqueness"], "server");
    assert_eq!(user_name["caseExact"], false);
    let r = h.call("GET", "/scim/v2/ResourceTypes/User", None).await;
    assert_eq!(r.body["endpoint"], "/Users");
    assert_eq!(r.body["schemaExtensions"][0]["schema"], ENTERPRISE);
    let r = h.call("GET", "/scim/v2/ResourceTypes", None).await;
    assert_eq!(r.body["totalResults"], 2);
    assert_scim_error(
        &h.call("GET", "/scim/v2/Schemas/urn:nope", None).await,
        StatusCode::NOT_FOUND,
        None,
    );
    assert_scim_error(
        &h.call("GET", "/scim/v2/ResourceTypes/Device", None).await,
        StatusCode::NOT_FOUND,
        None,
    );
    assert_scim_error(
        &h.call("GET", "/scim/v2/0b0c-not-an-endpoint", None).await,
        StatusCode::NOT_FOUND,
        None,
    );
    let r = h.call("DELETE", "/scim/v2/Users", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.body["status"], "405");
}

#[tokio::test]
async fn authentication_and_roles() {
    let h = harness().await;
    for (token, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("pst_nope_nope"), StatusCode::UNAUTHORIZED),
        (Some("non-token"), StatusCode::UNAUTHORIZED),
    ] {
        let r = h.raw("GET", "/scim/v2/Users", token, None, "", &[]).await;
        assert_scim_error(&r, status, None);
        assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
    }
    let r = h
        .raw(
            "GET",
            "/scim/v2/Users",
            None,
            None,
            "",
            &[("authorization", "Basic dXNlcjpwYXNz")],
        )
        .await;
    assert_scim_error(&r, StatusCode::UNAUTHORIZED, None);
    let gateway = h
        .domain
        .create_token(&Principal::cli(), None, Role::Gateway, "gw")
        .await
        .unwrap()
        .token;
    let r = h.call_as(&gateway, "GET", "/scim/v2/Users", None).await;
    assert_scim_error(&r, StatusCode::FORBIDDEN, None);
    // admin tokens may provision too
    let admin = h
        .domain
        .create_token(&Principal::cli(), None, Role::Admin, "adm")
        .await
        .unwrap()
        .token;
    let r = h.call_as(&admin, "GET", "/scim/v2/Users", None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn user_crud() {
    let h = harness().await;
    let before = h.audit_actions().len();
    let r = h
        .call(
            "POST",
            "/scim/v2/Users",
            Some(json!({
                "schemas": [USER], "userName": "Alice@Example.com", "externalId": "okta-1",
                "name": { "givenName": "Alice", "familyName": "Smith" },
                "emails": [{ "value": "alice@example.com", "type": "work", "primary": true }],
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let location = format!("https://broker.example:8443/scim/v2/Users/{id}");
    assert_eq!(r.headers[header::LOCATION], location.as_str());
    assert_eq!(r.body["meta"]["location"], location.as_str());
    assert_eq!(r.body["meta"]["resourceType"], "User");
    assert_eq!(r.body["meta"]["version"], "W/\"1\"");
    assert_eq!(r.headers[header::ETAG], "W/\"1\"");
    assert!(r.body["meta"]["created"].is_string() && r.body["meta"]["lastModified"].is_string());
    assert_eq!(r.body["schemas"], json!([USER]));
    assert!(
        r.body.get("active").is_none(),
        "active missing stays missing"
    );
    assert_eq!(h.audit_actions()[before..], ["scim.user.create"]);

    // uniqueness is case-insensitive
    let dup = h
        .call(
            "POST",
            "/scim/v2/Users",
            Some(json!({ "schemas": [USER], "userName": "ALICE@example.COM" })),
        )
        .await;
    assert_scim_error(&dup, StatusCode::CONFLICT, Some("uniqueness"));

    let r = h.call("GET", &format!("/scim/v2/Users/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["userName"], "Alice@Example.com");
    assert_eq!(r.headers[header::ETAG], "W/\"1\"");

    // filters: index hits, misses as empty lists, externalId is case-exact
    for (filter, n) in [
        ("userName eq \"alice@example.com\"", 1),
        ("userName eq \"ALICE@EXAMPLE.COM\"", 1),
        ("userName eq \"7c9e6679-7425-40de-944b-e07fc1f90ae7\"", 0),
        ("externalId eq \"okta-1\"", 1),
        ("externalId eq \"OKTA-1\"", 0),
        ("emails[type eq \"work\"].value eq \"alice@example.com\"", 1),
        ("name.familyName sw \"Smi\" and active pr", 0),
        ("name.familyName sw \"Smi\" or title pr", 1),
    ] {
        let uri = format!("/scim/v2/Users?filter={}", percent_encode(filter));
        let r = h.call("GET", &uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{filter}: {}", r.body);
        assert_eq!(r.body["totalResults"], n, "{filter}");
        assert_eq!(
            r.body["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
        );
        assert_eq!(r.body["Resources"].as_array().unwrap().len(), n);
    }

    // attributes and excludedAttributes
    let r = h
        .call(
            "GET",
            &format!("/scim/v2/Users/{id}?attributes=userName,name.givenName"),
            None,
        )
        .await;
    assert_eq!(
        r.body,
        json!({ "schemas": [USER], "id": id, "userName": "Alice@Example.com", "name": { "givenName": "Alice" } })
    );
    let r = h
        .call(
            "GET",
            &format!("/scim/v2/Users/{id}?excludedAttributes=emails,meta,id"),
            None,
        )
        .await;
    assert!(r.body.get("emails").is_none() && r.body.get("meta").is_none());
    assert_eq!(r.body["id"], id.as_str(), "id is always returned");

    // PUT replaces, keeps id and created, bumps the version
    let r = h
        .call(
            "PUT",
            &format!("/scim/v2/Users/{id}"),
            Some(json!({ "schemas": [USER], "id": "ignored", "userName": "alice@example.com", "title": "CTO" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["title"], "CTO");
    assert!(r.body.get("emails").is_none());
    assert!(r.body.get("externalId").is_none());
    assert_eq!(r.body["meta"]["version"], "W/\"2\"");
    // If-Match with an old version is refused
    let r = h
        .raw(
            "PUT",
            &format!("/scim/v2/Users/{id}"),
            Some(&h.token),
            Some(serde_json::to_vec(&json!({ "userName": "x" })).unwrap()),
            "application/json",
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_scim_error(&r, StatusCode::PRECONDITION_FAILED, None);

    // DELETE, then 404
    let r = h
        .call("DELETE", &format!("/scim/v2/Users/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_scim_error(
        &h.call("GET", &format!("/scim/v2/Users/{id}"), None).await,
        StatusCode::NOT_FOUND,
        None,
    );
    assert_scim_error(
        &h.call("DELETE", &format!("/scim/v2/Users/{id}"), None)
            .await,
        StatusCode::NOT_FOUND,
        None,
    );
    // the name is free again
    h.create_user(json!({ "userName": "alice@example.com" }))
        .await;
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn pagination_is_stable() {
    let h = harness().await;
    for i in 0..7 {
        h.create_user(json!({ "userName": format!("user{i}@example.com") }))
            .await;
    }
    let mut seen = Vec::new();
    for start in [1, 4, 7] {
        let r = h
            .call(
                "GET",
                &format!("/scim/v2/Users?startIndex={start}&count=3"),
                None,
            )
            .await;
        assert_eq!(r.body["totalResults"], 7);
        assert_eq!(r.body["startIndex"], start);
        for u in r.body["Resources"].as_array().unwrap() {
            seen.push(u["id"].as_str().unwrap().to_owned());
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 7, "pages overlap: {seen:?}");
    let r = h.call("GET", "/scim/v2/Users?count=0", None).await;
    assert_eq!(r.body["totalResults"], 7);
    assert_eq!(r.body["itemsPerPage"], 0);
    let r = h
        .call("GET", "/scim/v2/Users?startIndex=0&count=-4", None)
        .await;
    assert_eq!(r.body["startIndex"], 1);
    assert_eq!(r.body["itemsPerPage"], 0);
    let r = h.call("GET", "/scim/v2/Users?startIndex=100", None).await;
    assert_eq!(r.body["Resources"], json!([]));
    // POST .search with arrays
    let r = h
        .call(
            "POST",
            "/scim/v2/Users/.search",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": "userName sw \"user1\"", "attributes": ["userName"], "count": 5,
            })),
        )
        .await;
    assert_eq!(r.body["totalResults"], 1);
    assert!(r.body["Resources"][0].get("meta").is_none());
    let r = h
        .call("POST", "/scim/v2/.search", Some(json!({ "count": 100 })))
        .await;
    assert_eq!(r.body["totalResults"], 7);
}

/// method, URI, body, expected status, expected scimType
type Case<'a> = (&'a str, String, Option<Value>, StatusCode, Option<&'a str>);

#[tokio::test]
async fn refusals_are_scim_errors() {
    let h = harness().await;
    let u = h.create_user(json!({ "userName": "bob" })).await;
    let id = u["id"].as_str().unwrap().to_owned();
    let user = format!("/scim/v2/Users/{id}");
    let cases: Vec<Case<'_>> = vec![
        (
            "POST",
            "/scim/v2/Users".into(),
            Some(json!({ "name": { "givenName": "x" } })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "POST",
            "/scim/v2/Users".into(),
            Some(json!({ "userName": "" })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "POST",
            "/scim/v2/Users".into(),
            Some(json!({ "userName": 42 })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "POST",
            "/scim/v2/Users".into(),
            Some(json!({ "userName": "c", "active": "perhaps" })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "POST",
            "/scim/v2/Users".into(),
            Some(json!([1, 2])),
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
        ),
        (
            "POST",
            "/scim/v2/Groups".into(),
            Some(json!({ "members": [] })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "GET",
            "/scim/v2/Users?filter=userName%20eq".into(),
            None,
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
        ),
        (
            "GET",
            "/scim/v2/Users?filter=nosuch%20eq%20%22x%22".into(),
            None,
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
        ),
        (
            "GET",
            "/scim/v2/Users?filter=userName%20zz%20%22x%22".into(),
            None,
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
        ),
        (
            "GET",
            "/scim/v2/Users?count=lots".into(),
            None,
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "PATCH",
            user.clone(),
            Some(json!({ "Operations": [{ "op": "jump", "path": "title", "value": "x" }] })),
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
        ),
        (
            "PATCH",
            user.clone(),
            Some(json!({ "schemas": [PATCH] })),
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
        ),
        (
            "PATCH",
            user.clone(),
            Some(json!({ "Operations": [{ "op": "replace", "path": "nosuch", "value": "x" }] })),
            StatusCode::BAD_REQUEST,
            Some("invalidPath"),
        ),
        (
            "PATCH",
            user.clone(),
            Some(json!({ "Operations": [{ "op": "replace", "path": "id", "value": "x" }] })),
            StatusCode::BAD_REQUEST,
            Some("mutability"),
        ),
        (
            "PATCH",
            user.clone(),
            Some(json!({ "Operations": [{ "op": "remove" }] })),
            StatusCode::BAD_REQUEST,
            Some("noTarget"),
        ),
        (
            "PATCH",
            user.clone(),
            Some(
                json!({ "Operations": [{ "op": "replace", "path": "emails[type ne \"work\"].value", "value": "x@y" }] }),
            ),
            StatusCode::BAD_REQUEST,
            Some("noTarget"),
        ),
        (
            "PATCH",
            user.clone(),
            Some(
                json!({ "Operations": [{ "op": "replace", "path": "emails[type eq \"work\"", "value": "x@y" }] }),
            ),
            StatusCode::BAD_REQUEST,
            Some("invalidPath"),
        ),
        (
            "PATCH",
            user.clone(),
            Some(json!({ "Operations": [{ "op": "replace", "path": "userName", "value": null }] })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "PATCH",
            user.clone(),
            Some(
                json!({ "Operations": (0..1001).map(|_| json!({ "op": "add", "path": "title", "value": "x" })).collect::<Vec<_>>() }),
            ),
            StatusCode::BAD_REQUEST,
            Some("tooMany"),
        ),
        (
            "GET",
            "/scim/v2/Users/%FF%FE".into(),
            None,
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "GET",
            "/scim/v2/Users/00919288221112222".into(),
            None,
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            "PATCH",
            "/scim/v2/Users/00919288221112222".into(),
            Some(json!({ "Operations": [] })),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            "PUT",
            "/scim/v2/Groups/nope".into(),
            Some(json!({ "displayName": "x" })),
            StatusCode::NOT_FOUND,
            None,
        ),
    ];
    for (method, uri, body, status, scim_type) in cases {
        let r = h.call(method, &uri, body.clone()).await;
        assert_scim_error(&r, status, scim_type);
    }
    // malformed JSON, a foreign content type, an oversized body
    let r = h
        .raw(
            "POST",
            "/scim/v2/Users",
            Some(&h.token),
            Some(b"{\"userName\":".to_vec()),
            "application/scim+json",
            &[],
        )
        .await;
    assert_scim_error(&r, StatusCode::BAD_REQUEST, Some("invalidSyntax"));
    let r = h
        .raw(
            "POST",
            "/scim/v2/Users",
            Some(&h.token),
            Some(b"userName=x".to_vec()),
            "application/x-www-form-urlencoded",
            &[],
        )
        .await;
    assert_scim_error(&r, StatusCode::BAD_REQUEST, Some("invalidSyntax"));
    let big =
        serde_json::to_vec(&json!({ "userName": "big", "title": "x".repeat(MAX_BODY) })).unwrap();
    let r = h
        .raw(
            "POST",
            "/scim/v2/Users",
            Some(&h.token),
            Some(big),
            "application/scim+json",
            &[],
        )
        .await;
    assert_scim_error(&r, StatusCode::PAYLOAD_TOO_LARGE, None);
    // application/json is accepted as well
    let r = h
        .raw(
            "POST",
            "/scim/v2/Users",
            Some(&h.token),
            Some(br#"{"userName":"plain"}"#.to_vec()),
            "application/json; charset=utf-8",
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // nothing of the refused writes was stored
    let r = h.call("GET", "/scim/v2/Users", None).await;
    assert_eq!(r.body["totalResults"], 2);
    let r = h.call("GET", &user, None).await;
    assert_eq!(r.body["meta"]["version"], "W/\"1\"");
}

#[tokio::test]
async fn okta_and_entra_quirks() {
    let h = harness().await;
    // Entra creates with client meta, roles and the enterprise extension; active as a string
    let u = h
        .create_user(json!({
            "schemas": [USER, ENTERPRISE],
            "externalId": "5a6b", "userName": "Test_User_1@contoso.com", "active": "True",
            "displayName": "Test User",
            "emails": [{ "primary": true, "type": "work", "value": "Test_User_1@contoso.com" }],
            "meta": { "resourceType": "User" }, "roles": [],
            "name": { "formatted": "Test User", "familyName": "User", "givenName": "Test" },
            ENTERPRISE: { "employeeNumber": "1001", "department": "R&D" },
        }))
        .await;
    let id = u["id"].as_str().unwrap().to_owned();
    let uri = format!("/scim/v2/Users/{id}");
    assert_eq!(u["active"], true);
    assert_eq!(u[ENTERPRISE]["department"], "R&D");
    assert_eq!(u["schemas"], json!([USER, ENTERPRISE]));
    assert!(u.get("roles").is_none());

    // Entra's existence probe for a random value: 200 and an empty list
    let r = h
        .call(
            "GET",
            "/scim/v2/Users?filter=userName+eq+%22a4b1e1c2-8d2a-4f5e-9c3b-2f1e0d9c8b7a%22",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["totalResults"], 0);
    assert_eq!(r.body["Resources"], json!([]));

    // Entra's multi-attribute replace: capitalised op, dotted and URN keys, value filters
    let r = h
        .patch(
            &uri,
            json!([{ "op": "Replace", "value": {
                "displayName": "Bjfe", "name.givenName": "Kkom", "name.familyName": "Unua",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "Aklq",
                "emails[type eq \"work\"].value": "new@contoso.com",
            } }]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["displayName"], "Bjfe");
    assert_eq!(r.body["name"]["givenName"], "Kkom");
    assert_eq!(r.body["name"]["formatted"], "Test User");
    assert_eq!(r.body[ENTERPRISE]["employeeNumber"], "Aklq");
    assert_eq!(r.body[ENTERPRISE]["department"], "R&D");
    assert_eq!(r.body["emails"][0]["value"], "new@contoso.com");
    assert_eq!(r.body["emails"][0]["primary"], true);
    // an extension object as a path-less key, and an extension URN path
    let r = h
        .patch(
            &uri,
            json!([
                { "op": "add", "value": { ENTERPRISE: { "costCenter": "4711" } } },
                { "op": "remove", "path": format!("{ENTERPRISE}:department") },
                { "op": "add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 (555) 010-0100" },
            ]),
        )
        .await;
    assert_eq!(r.body[ENTERPRISE]["costCenter"], "4711");
    assert!(r.body[ENTERPRISE].get("department").is_none());
    assert_eq!(
        r.body["phoneNumbers"],
        json!([{ "type": "mobile", "value": "+1 (555) 010-0100" }])
    );
    // attribute names in any case
    let r = h
        .patch(
            &uri,
            json!([{ "op": "replace", "path": "Name.FamilyName", "value": "Case" }]),
        )
        .await;
    assert_eq!(r.body["name"]["familyName"], "Case");

    // Entra's legacy disable: "False" as a string
    let r = h
        .patch(
            &uri,
            json!([{ "op": "Replace", "path": "active", "value": "False" }]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["active"], false);
    // deactivated users stay readable (Entra and Okta require it)
    let r = h.call("GET", &uri, None).await;
    assert_eq!(r.body["active"], false);
    // Okta's path-less re-activation
    let r = h
        .patch(
            &uri,
            json!([{ "op": "replace", "value": { "active": true } }]),
        )
        .await;
    assert_eq!(r.body["active"], true);
    // a PUT without `active` keeps it; Okta's AIW PUT with active false deactivates
    let r = h
        .call(
            "PUT",
            &uri,
            Some(json!({ "userName": "Test_User_1@contoso.com" })),
        )
        .await;
    assert_eq!(r.body["active"], true);
    let r = h
        .call(
            "PUT",
            &uri,
            Some(json!({ "userName": "Test_User_1@contoso.com", "active": false })),
        )
        .await;
    assert_eq!(r.body["active"], false);
    // a repeated PATCH that changes nothing keeps the version
    let v = r.body["meta"]["version"].clone();
    let r = h
        .patch(
            &uri,
            json!([{ "op": "replace", "path": "active", "value": false }]),
        )
        .await;
    assert_eq!(r.body["meta"]["version"], v);
}

#[tokio::test]
async fn groups_and_members() {
    let h = harness().await;
    let a = h.create_user(json!({ "userName": "a" })).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = h.create_user(json!({ "userName": "b" })).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = h
        .call(
            "POST",
            "/scim/v2/Groups",
            Some(json!({ "displayName": "Engineering", "members": [{ "value": a, "display": "a" }] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let gid = r.body["id"].as_str().unwrap().to_owned();
    let uri = format!("/scim/v2/Groups/{gid}");
    assert_eq!(r.body["meta"]["resourceType"], "Group");
    // Entra's add with a null $ref; Okta's remove by value filter
    let r = h
        .patch(
            &uri,
            json!([{ "op": "Add", "path": "members", "value": [{ "$ref": null, "value": b }] }]),
        )
        .await;
    assert_eq!(r.body["members"].as_array().unwrap().len(), 2);
    let r = h
        .patch(
            &uri,
            json!([{ "op": "remove", "path": format!("members[value eq \"{a}\"]") }]),
        )
        .await;
    assert_eq!(r.body["members"], json!([{ "value": b }]));
    // Okta's rename with the group's own id in the value
    let r = h
        .patch(
            &uri,
            json!([{ "op": "replace", "value": { "id": gid, "displayName": "Eng" } }]),
        )
        .await;
    assert_eq!(r.body["displayName"], "Eng");
    // Entra's group lookup without members
    let r = h
        .call(
            "GET",
            "/scim/v2/Groups?excludedAttributes=members&filter=displayName+eq+%22eng%22",
            None,
        )
        .await;
    assert_eq!(r.body["totalResults"], 1);
    assert!(r.body["Resources"][0].get("members").is_none());
    // deleting a user takes them out of their groups
    assert_eq!(
        h.call("DELETE", &format!("/scim/v2/Users/{b}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = h.call("GET", &uri, None).await;
    assert!(r.body.get("members").is_none(), "{}", r.body);
    assert_eq!(
        h.call("DELETE", &uri, None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_scim_error(
        &h.call("GET", &uri, None).await,
        StatusCode::NOT_FOUND,
        None,
    );
}

#[tokio::test]
async fn lifecycle_reaches_posture() {
    let h = harness().await;
    // a device registered before the user is provisioned
    let early = h.device("SERIAL-EARLY", "carol@example.com").await;
    let u = h
        .create_user(json!({
            "userName": "carol@example.com",
            "phoneNumbers": [{ "value": "+49 (30) 123-456", "type": "mobile" }, { "value": "030 999" }],
            "emails": [{ "value": "Carol@Example.com", "type": "work" }],
        }))
        .await;
    let id = u["id"].as_str().unwrap().to_owned();
    let uri = format!("/scim/v2/Users/{id}");
    // the number without a country stays in SCIM as sent, and is no address
    assert_eq!(u["phoneNumbers"][1]["value"], "030 999");
    assert_eq!(
        h.addresses(&early),
        ["im:carol@example.com", "tel:+4930123456"]
    );
    // a device registered after gets the same addresses
    let late = h.device("SERIAL-LATE", "carol@example.com").await;
    assert_eq!(h.addresses(&late), h.addresses(&early));
    // a device of another user (case differs: userName is matched exactly) gets nothing
    let other = h.device("SERIAL-OTHER", "Carol@example.com").await;
    assert!(h.addresses(&other).is_empty());
    // the route API finds carol's devices by tel:
    let devices = h
        .posture
        .address_devices("default", &"tel:+4930123456".parse_address())
        .unwrap();
    assert_eq!(devices.len(), 2);

    // a changed number moves the address
    let r = h
        .patch(&uri, json!([{ "op": "replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+4930765432" }]))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        h.addresses(&early),
        ["im:carol@example.com", "tel:+4930765432"]
    );
    assert!(!h.deactivated(&early));

    // deactivation (Entra's form) runs the cascade before the answer
    let r = h
        .patch(
            &uri,
            json!([{ "op": "Replace", "path": "active", "value": "False" }]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(h.deactivated(&early) && h.deactivated(&late));
    assert!(!h.deactivated(&other));
    let actions = h.audit_actions();
    assert!(
        actions
            .iter()
            .any(|a| a == "user.deactivate" || a.starts_with("posture.")),
        "{actions:?}"
    );
    assert_eq!(actions.last().map(String::as_str), Some("scim.user.patch"));
    // a device registered for the deactivated user is marked at once
    let later = h.device("SERIAL-LATER", "carol@example.com").await;
    assert!(h.deactivated(&later));
    // reactivation is recorded; the devices stay deactivated (they enroll again)
    let r = h
        .patch(
            &uri,
            json!([{ "op": "replace", "value": { "active": true } }]),
        )
        .await;
    assert_eq!(r.body["active"], true);
    assert!(h.deactivated(&early));
    // DELETE removes the addresses
    assert_eq!(
        h.call("DELETE", &uri, None).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(h.addresses(&early).is_empty());
}

trait ParseAddress {
    fn parse_address(&self) -> postern_broker::domain::posture::record::Address;
}

impl ParseAddress for str {
    fn parse_address(&self) -> postern_broker::domain::posture::record::Address {
        postern_broker::domain::posture::record::Address::parse(self).unwrap()
    }
}

#[tokio::test]
async fn tenants_are_isolated() {
    let h = harness().await;
    let op = Principal::cli();
    h.domain.create_tenant(&op, "tenant-b", "B").await.unwrap();
    let b = h
        .domain
        .create_token(&op, Some("tenant-b"), Role::Scim, "idp-b")
        .await
        .unwrap()
        .token;
    let a_user = h.create_user(json!({ "userName": "dave@a.example" })).await;
    let a_id = a_user["id"].as_str().unwrap();
    let a_group = h
        .call(
            "POST",
            "/scim/v2/Groups",
            Some(json!({ "displayName": "A-team" })),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for uri in [
        format!("/scim/v2/Users/{a_id}"),
        format!("/scim/v2/Groups/{a_group}"),
    ] {
        assert_scim_error(
            &h.call_as(&b, "GET", &uri, None).await,
            StatusCode::NOT_FOUND,
            None,
        );
        assert_scim_error(
            &h.call_as(
                &b,
                "PATCH",
                &uri,
                Some(json!({ "Operations": [{ "op": "replace", "value": { "active": false } }] })),
            )
            .await,
            StatusCode::NOT_FOUND,
            None,
        );
        assert_scim_error(
            &h.call_as(&b, "DELETE", &uri, None).await,
            StatusCode::NOT_FOUND,
            None,
        );
    }
    for uri in [
        "/scim/v2/Users",
        "/scim/v2/Groups",
        "/scim/v2/Users?filter=userName+eq+%22dave%40a.example%22",
    ] {
        let r = h.call_as(&b, "GET", uri, None).await;
        assert_eq!(r.body["totalResults"], 0, "{uri}");
    }
    let r = h
        .call_as(&b, "POST", "/scim/v2/.search", Some(json!({})))
        .await;
    assert_eq!(r.body["totalResults"], 0);
    // the same userName is free in tenant B
    let r = h
        .call_as(
            &b,
            "POST",
            "/scim/v2/Users",
            Some(json!({ "userName": "DAVE@a.example" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // and A still has one
    let r = h.call("GET", "/scim/v2/Users", None).await;
    assert_eq!(r.body["totalResults"], 1);
}
