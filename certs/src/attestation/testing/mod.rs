//! Test attestation authorities: mint `apple`, `android-key` and `tpm` attestation objects from
//! test roots, so that every positive and negative path can be exercised. Compiled for this
//! crate's tests and, with the `testing` feature, for other crates' tests and benchmarks.

pub mod android;
pub mod apple;
pub mod tpm;
