//! Integration tests of the broker's layers, one module per layer.

// A failed unwrap in a test or a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "api/store.rs"]
mod store;

#[path = "api/http.rs"]
mod http;

#[path = "api/tidy.rs"]
mod tidy;

#[path = "api/app.rs"]
mod app;

#[path = "api/acme.rs"]
mod acme;

#[path = "api/mtls.rs"]
mod mtls;

#[path = "api/posture.rs"]
mod posture;

#[path = "api/feed.rs"]
mod feed;

#[path = "api/webhooks.rs"]
mod webhooks;

#[path = "api/scim.rs"]
mod scim;

#[path = "api/profiles.rs"]
mod profiles;

#[path = "api/scep.rs"]
mod scep;

#[path = "api/scep_server.rs"]
mod scep_server;
