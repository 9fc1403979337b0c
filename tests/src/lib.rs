//! End-to-end tests for postern; see `tests/e2e.rs`.
