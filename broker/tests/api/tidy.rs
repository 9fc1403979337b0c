//! Architecture invariants as tests.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The domain decides; it knows neither the web framework nor the storage engine.
#[test]
fn domain_names_neither_axum_nor_sled() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/domain"),
        &mut files,
    );
    assert!(!files.is_empty());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for word in ["axum", "sled"] {
            assert!(
                !text
                    .lines()
                    .any(|l| !l.trim_start().starts_with("//") && l.contains(word)),
                "{} mentions {word}",
                f.display()
            );
        }
    }
}

/// The certs crate does no I/O and reads no clock.
#[test]
fn certs_has_no_io_and_no_clock() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs/src"),
        &mut files,
    );
    for f in files {
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue; // a `mod tests` in its own file
        }
        let text = std::fs::read_to_string(&f).unwrap();
        // everything after `mod tests` is test code and may use files and the clock
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for word in [
            "std::fs",
            "TcpStream",
            "TcpListener",
            "UdpSocket",
            "std::process",
            "now_utc()",
            "SystemTime::now",
            "Instant::now",
        ] {
            assert!(
                !code.contains(word),
                "{} uses {word} outside tests",
                f.display()
            );
        }
    }
}
