//! Start-up: the data directory, keys at rest, and importing an operator's CA.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use postern_broker::app::{self, App};
use postern_broker::config::{CaImport, Settings};
use postern_broker::domain::{Clock as _, Principal, SystemClock};
use postern_certs::ca::{self, CaParams};
use postern_certs::signer::generate;
use postern_certs::{KeyAlgorithm, KeySigner};

fn settings(dir: &Path) -> Settings {
    Settings {
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    }
}

/// Opens, retrying briefly while the previous instance's sled lock is being released.
async fn open(s: Settings, pass: Option<&str>) -> anyhow::Result<App> {
    let mut last = None;
    for _ in 0..40 {
        match app::open_with_passphrase(
            s.clone(),
            Arc::new(SystemClock),
            pass.map(|p| Zeroizing::new(p.as_bytes().to_vec())),
        )
        .await
        {
            Ok(a) => return Ok(a),
            Err(e) if format!("{e:#}").contains("in use") => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap())
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn first_start_creates_the_ca_and_later_starts_reuse_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let a = open(settings(&data), None).await.unwrap();
    assert!(a.ca_created);
    let root = std::fs::read_to_string(data.join("ca/root.pem")).unwrap();
    #[cfg(unix)]
    {
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("ca/root.key")), 0o600);
        assert_eq!(mode(&data.join("ca/issuing.key")), 0o600);
        assert_eq!(mode(&data.join("ca/ocsp.key")), 0o600);
    }
    let entries = a.domain.audit_page(&Principal::cli(), 1, 100).unwrap();
    assert!(entries.iter().any(|e| e.action == "ca.init"));
    drop(a);

    let b = open(settings(&data), None).await.unwrap();
    assert!(!b.ca_created);
    assert_eq!(
        std::fs::read_to_string(data.join("ca/root.pem")).unwrap(),
        root
    );
    assert_eq!(b.domain.pki().issuer().root().to_pem(), root);
    // the OCSP responder was reused, not issued again
    let issued = b
        .domain
        .audit_page(&Principal::cli(), 1, 100)
        .unwrap()
        .iter()
        .filter(|e| e.action == "certificate.issue")
        .count();
    assert_eq!(issued, 1);
}

#[tokio::test]
async fn keys_at_rest_are_encrypted_when_a_passphrase_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let a = open(settings(&data), Some("correct horse battery staple"))
        .await
        .unwrap();
    drop(a);
    for k in ["ca/root.key", "ca/issuing.key", "ca/ocsp.key"] {
        let text = std::fs::read_to_string(data.join(k)).unwrap();
        assert!(
            text.starts_with("-----BEGIN POSTERN ENCRYPTED PRIVATE KEY-----"),
            "{k}"
        );
    }
    let missing = open(settings(&data), None).await.unwrap_err();
    assert!(
        format!("{missing:#}").contains("issuing.key"),
        "{missing:#}"
    );
    let wrong = open(settings(&data), Some("wrong")).await.unwrap_err();
    assert!(format!("{wrong:#}").contains("passphrase"), "{wrong:#}");
    open(settings(&data), Some("correct horse battery staple"))
        .await
        .unwrap();
}

fn write_operator_ca(dir: &Path) -> (String, String) {
    let params = |cn: &str, days: u64| CaParams {
        common_name: cn.into(),
        organization: Some("Operator".into()),
        validity: Duration::from_secs(days * 86_400),
        now: time::OffsetDateTime::now_utc(),
        name_constraints: Default::default(),
    };
    let root_key = generate(KeyAlgorithm::EcdsaP256).unwrap();
    let root_signer = KeySigner::from_pkcs8(root_key.as_der()).unwrap();
    let int_key = generate(KeyAlgorithm::EcdsaP256).unwrap();
    let int_signer = KeySigner::from_pkcs8(int_key.as_der()).unwrap();
    let root = ca::create_root(&root_signer, &params("Operator Root", 100)).unwrap();
    let int = ca::create_intermediate(
        &root,
        &root_signer,
        &int_signer,
        &params("Operator Issuing", 50),
    )
    .unwrap();
    std::fs::write(dir.join("root.pem"), root.to_pem()).unwrap();
    std::fs::write(dir.join("issuing.pem"), int.to_pem()).unwrap();
    std::fs::write(dir.join("issuing.key"), &*int_key.to_pem()).unwrap();
    std::fs::write(
        dir.join("other.key"),
        &*generate(KeyAlgorithm::EcdsaP256).unwrap().to_pem(),
    )
    .unwrap();
    (root.fingerprint_sha256(), int.fingerprint_sha256())
}

#[tokio::test]
async fn an_operator_ca_is_imported_and_a_mismatched_key_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (root_fp, int_fp) = write_operator_ca(dir.path());

    let mut bad = settings(&dir.path().join("bad"));
    bad.ca.import = Some(CaImport {
        root_cert: dir.path().join("root.pem"),
        issuing_cert: dir.path().join("issuing.pem"),
        issuing_key: dir.path().join("other.key"),
    });
    let err = open(bad, None).await.unwrap_err();
    assert!(format!("{err:#}").contains("ca.import"), "{err:#}");

    let mut good = settings(&dir.path().join("good"));
    good.ca.import = Some(CaImport {
        root_cert: dir.path().join("root.pem"),
        issuing_cert: dir.path().join("issuing.pem"),
        issuing_key: dir.path().join("issuing.key"),
    });
    let a = open(good, None).await.unwrap();
    assert!(a.ca_created);
    assert_eq!(a.domain.pki().issuer().root().fingerprint_sha256(), root_fp);
    assert_eq!(
        a.domain.pki().issuer().certificate().fingerprint_sha256(),
        int_fp
    );
    // the root key was never given to postern
    assert!(!dir.path().join("good/ca/root.key").exists());
}

#[tokio::test]
async fn the_ocsp_responder_is_renewed_a_week_before_it_expires() {
    use postern_broker::domain::ManualClock;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let a = app::open_with_passphrase(settings(dir.path()), clock.clone(), None)
        .await
        .unwrap();
    let first = a.domain.pki().responder().unwrap().cert_der.clone();
    clock.advance(time::Duration::days(1));
    app::ensure_responder(&a.domain, &a.keys).await.unwrap();
    assert_eq!(
        a.domain.pki().responder().unwrap().cert_der,
        first,
        "renewed too early"
    );
    clock.advance(time::Duration::days(23));
    app::ensure_responder(&a.domain, &a.keys).await.unwrap();
    let second = a.domain.pki().responder().unwrap().cert_der.clone();
    assert_ne!(second, first, "not renewed with under a week left");
    let (_, cert) = x509_parser::parse_x509_certificate(&second).unwrap();
    assert!(cert.validity().not_after.to_datetime() - clock.now() > time::Duration::days(29));
}
