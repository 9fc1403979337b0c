//! `postern-certs`: postern's certificate authority as a library.
//!
//! CA hierarchy ([`ca`]), certificate profiles as data ([`profile`]), CSR checks ([`csr`]),
//! issuance ([`issue`]), CRLs ([`crl`]), OCSP ([`ocsp`]), compact JWS and JWKS ([`jws`]), an
//! append-only Merkle log ([`merkle`]) with signed checkpoints ([`checkpoint`]), SCEP messages
//! ([`scep`]), and keys behind a [`Signer`](signer::Signer) with optional passphrase encryption
//! at rest ([`keyfile`]).
//!
//! **No I/O and no clock**: files are read and written by the caller, and every function that
//! needs the time takes it as an argument.

pub mod attestation;
pub mod ca;
pub mod checkpoint;
pub mod crl;
pub mod csr;
pub mod der;
pub mod error;
pub mod issue;
pub mod jws;
pub mod keyfile;
pub mod merkle;
pub mod names;
pub mod ocsp;
pub mod profile;
pub mod scep;
pub mod signer;

pub use error::{CsrError, Error, KeyError, Result};
pub use signer::{KeyAlgorithm, KeySigner, Signer};

/// Re-exported so that callers name times with the same type.
pub use time::OffsetDateTime;

/// A test that needs a third-party peer (openssl, Python jwcrypto) that is not installed says
/// so and skips, unless `POSTERN_REQUIRE_PEERS` is set (CI sets it), where that is a failure.
#[cfg(test)]
pub(crate) fn peer_missing(message: &str) {
    assert!(
        std::env::var_os("POSTERN_REQUIRE_PEERS").is_none(),
        "POSTERN_REQUIRE_PEERS is set but a peer is missing: {message}"
    );
    println!("{message}");
}

/// Runs a third-party program for an interop test, feeding it `stdin`; `None` when the program
/// is not installed.
#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed pipe is a failed test
pub(crate) fn run_peer(cmd: &str, args: &[&str], stdin: &[u8]) -> Option<std::process::Output> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin).unwrap();
    drop(pipe);
    Some(child.wait_with_output().unwrap())
}

/// The shared test-vector folder (`../shared/vectors` beside the project, or
/// `POSTERN_VECTORS`); `None`, after one line saying the test is skipped, when it is absent.
/// With `POSTERN_REQUIRE_PEERS` set (CI), an absent folder is a failure.
#[cfg(test)]
pub(crate) fn vectors_dir() -> Option<std::path::PathBuf> {
    let dir = match std::env::var_os("POSTERN_VECTORS") {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        peer_missing(&format!(
            "skipped: the test vectors are not at {} (set POSTERN_VECTORS)",
            dir.display()
        ));
        None
    }
}
