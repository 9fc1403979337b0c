//! `postern-broker`: the postern service and its `postern` command line.
//!
//! Three layers, one way: [`http`] (extract, call the domain, render) → [`domain`] (policy and
//! orchestration; no axum, no sled) → [`store`] (the only persistence). The CA keys sit behind
//! `postern_certs::Signer`s held by the domain.

pub mod app;
pub mod config;
pub mod connectors;
pub mod domain;
pub mod feed_verify;
pub mod http;
pub mod keystore;
pub mod model;
pub mod profile_cli;
pub mod scep_ra;
pub mod server;
pub mod store;
