//! The SCEP registration authority: an RSA-2048 key and a `scep-ra` certificate from the
//! issuing CA (digitalSignature + keyEncipherment). SCEP clients encrypt their requests to it
//! and verify the `CertRep` answers it signs. Created on first start in the data directory
//! (`ca/scep-ra.key|.pem`) and reused while it is fresh and issued by the current issuing CA;
//! [`ephemeral_ra`] makes one that never touches the disk.

use std::sync::Arc;

use postern_certs::profile::SubjectKeyKind;
use postern_certs::scep::Ra;
use postern_certs::signer::Pkcs8Key;
use rsa::pkcs8::EncodePrivateKey as _;
use serde_json::json;
use time::OffsetDateTime;

use crate::app::App;
use crate::domain::pki::KeyToCertify;
use crate::domain::scep::Scep;
use crate::domain::{Domain, Principal};
use crate::keystore::{FileKeyStore, KeyName};
use crate::model::DEFAULT_TENANT;

/// An RA is replaced when it has less than this left.
const RA_RENEW_BEFORE: time::Duration = time::Duration::days(30);

/// A fresh RSA-2048 key and its `scep-ra` certificate, as (PKCS#8 key, certificate DER).
async fn new_ra(domain: &Domain) -> anyhow::Result<(Pkcs8Key, Vec<u8>)> {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .map_err(|e| anyhow::anyhow!("scep ra: rsa key: {e}"))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| anyhow::anyhow!("scep ra: pkcs8: {e}"))?;
    let key = Pkcs8Key::from_der(der.as_bytes().to_vec());
    let spki = postern_certs::scep::RsaKey::from_pkcs8(key.as_der())
        .and_then(|k| k.spki_der())
        .map_err(|e| anyhow::anyhow!("scep ra: {e}"))?;
    let issued = domain
        .issue_key(
            &Principal::system(),
            DEFAULT_TENANT,
            "scep-ra",
            KeyToCertify {
                spki_der: &spki,
                key_kind: SubjectKeyKind::Rsa,
            },
            Some("postern SCEP RA"),
            &[],
            None,
            json!({ "source": "scep-ra" }),
        )
        .await
        .map_err(|e| anyhow::anyhow!("issuing the scep-ra certificate: {e}"))?;
    let cert = pem::parse(&issued.certificate_pem)?.into_contents();
    Ok((key, cert))
}

/// The CA chain an RA answers `GetCACert` with after its own certificate: issuing CA, root.
fn chain(domain: &Domain) -> Vec<Vec<u8>> {
    let issuer = domain.pki().issuer();
    let mut out = vec![issuer.certificate().der().to_vec()];
    for c in issuer.chain() {
        if !out.iter().any(|d| d.as_slice() == c.der()) {
            out.push(c.der().to_vec());
        }
    }
    out
}

/// The RA on disk when it is fresh and issued by the current issuing CA.
fn reusable(domain: &Domain, keys: &FileKeyStore, now: OffsetDateTime) -> Option<Ra> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let text = keys.read_cert(KeyName::ScepRa).ok()?;
    let cert = pem::parse_many(&text)
        .ok()?
        .into_iter()
        .next()?
        .into_contents();
    let key = keys.key(KeyName::ScepRa).ok()?;
    let (_, parsed) = X509Certificate::from_der(&cert).ok()?;
    let (_, ca) = X509Certificate::from_der(domain.pki().issuer().certificate().der()).ok()?;
    let fresh = parsed.validity().not_after.to_datetime() - now > RA_RENEW_BEFORE;
    let ours = parsed.verify_signature(Some(ca.public_key())).is_ok();
    let spki = postern_certs::scep::RsaKey::from_pkcs8(key.as_der())
        .and_then(|k| k.spki_der())
        .ok()?;
    let same_key = parsed.public_key().raw == spki.as_slice();
    if !(fresh && ours && same_key) {
        return None;
    }
    Ra::new(key.as_der(), cert, chain(domain)).ok()
}

/// The RA in the data directory: reused while fresh, otherwise a new key and certificate
/// written as `ca/scep-ra.key` (0600) and `ca/scep-ra.pem`.
///
/// # Errors
/// Key generation, issuance or file failures.
pub async fn ensure_ra(domain: &Domain, keys: &FileKeyStore) -> anyhow::Result<Ra> {
    if let Some(ra) = reusable(domain, keys, domain.clock().now()) {
        return Ok(ra);
    }
    let (key, cert) = new_ra(domain).await?;
    keys.write_key(KeyName::ScepRa, &key)?;
    let cert_pem = pem::encode(&pem::Pem::new("CERTIFICATE", cert.clone()));
    keys.write_cert(KeyName::ScepRa, &cert_pem)?;
    Ra::new(key.as_der(), cert, chain(domain)).map_err(|e| anyhow::anyhow!("scep ra: {e}"))
}

/// A fresh RA kept in memory only (tests, throwaway runs).
///
/// # Errors
/// Key generation or issuance failures.
pub async fn ephemeral_ra(domain: &Domain) -> anyhow::Result<Ra> {
    let (key, cert) = new_ra(domain).await?;
    Ra::new(key.as_der(), cert, chain(domain)).map_err(|e| anyhow::anyhow!("scep ra: {e}"))
}

/// The `[scep]` provisioners of an opened service with the RA of its data directory.
///
/// # Errors
/// A setting that does not fit, or the RA failures of [`ensure_ra`].
pub async fn open_scep(app: &App) -> anyhow::Result<Arc<Scep>> {
    let ra = ensure_ra(&app.domain, &app.keys).await?;
    let scep = Scep::new(Arc::clone(&app.domain), &app.settings.scep)
        .map_err(|(k, m)| anyhow::anyhow!("configuration: scep.{k}: {m}"))?;
    Ok(Arc::new(scep.with_ra(Arc::new(ra))))
}
