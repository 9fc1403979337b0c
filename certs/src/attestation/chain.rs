//! Attestation certificate paths: from the leaf a statement carries, through the intermediates
//! it carries, to a trust anchor, which is trusted by its public key (Google's RSA root has
//! 2016, 2019 and 2022 certificates for one key; a chain may end in any of them).
//!
//! Signatures are verified with ring through x509-parser. A verified `(certificate, issuer
//! key)` pair is remembered in a [`ChainCache`], so that the intermediate every enrollment of
//! a vendor shares costs one verification per process, not one per enrollment. Validity times
//! are checked on every use, cached or not.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{AttestError, Format};

/// The longest path accepted, anchor excluded.
pub const MAX_DEPTH: usize = 8;

/// Trust anchors, by public key.
#[derive(Debug, Clone, Default)]
pub struct TrustRoots {
    anchors: Vec<Anchor>,
}

#[derive(Debug, Clone)]
struct Anchor {
    /// The certificate, DER.
    der: Vec<u8>,
    /// Its SubjectPublicKeyInfo, DER.
    spki: Vec<u8>,
    /// Its subject, DER.
    subject: Vec<u8>,
}

const APPLE_ROOT: &str = include_str!("roots/apple_enterprise_attestation_root_ca.pem");
const GOOGLE_RSA_ROOT: &str = include_str!("roots/google_hardware_attestation_root_rsa_2022.pem");
const GOOGLE_EC_ROOT: &str = include_str!("roots/google_key_attestation_ca1_ecdsa_p384_2025.pem");
const MICROSOFT_TPM_ROOT: &str = include_str!("roots/microsoft_tpm_root_ca_2014.pem");

impl TrustRoots {
    /// The vendor roots postern ships for `format`.
    pub fn builtin(format: Format) -> Self {
        let pems: &[&str] = match format {
            Format::Apple => &[APPLE_ROOT],
            Format::AndroidKey => &[GOOGLE_RSA_ROOT, GOOGLE_EC_ROOT],
            Format::Tpm => &[MICROSOFT_TPM_ROOT],
        };
        let mut roots = TrustRoots::default();
        for pem in pems {
            // built-in PEM files are checked by this module's tests
            if let Ok(r) = TrustRoots::from_pem(pem) {
                roots.extend(r);
            }
        }
        roots
    }

    /// Roots from PEM text (one or more `CERTIFICATE` blocks).
    ///
    /// # Errors
    /// [`AttestError::Malformed`] when the text holds no certificate or one does not parse.
    pub fn from_pem(text: &str) -> Result<Self, AttestError> {
        let blocks =
            pem::parse_many(text).map_err(|e| AttestError::malformed(format!("roots: {e}")))?;
        let mut roots = TrustRoots::default();
        for b in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
            roots.add_der(b.contents())?;
        }
        if roots.anchors.is_empty() {
            return Err(AttestError::malformed("roots: no CERTIFICATE block"));
        }
        Ok(roots)
    }

    /// Adds one root, DER.
    ///
    /// # Errors
    /// [`AttestError::Malformed`] when it does not parse.
    pub fn add_der(&mut self, der: &[u8]) -> Result<(), AttestError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| AttestError::malformed(format!("root certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(AttestError::malformed("bytes after a root certificate"));
        }
        let anchor = Anchor {
            der: der.to_vec(),
            spki: cert.public_key().raw.to_vec(),
            subject: cert.subject().as_raw().to_vec(),
        };
        if !self
            .anchors
            .iter()
            .any(|a| a.spki == anchor.spki && a.subject == anchor.subject)
        {
            self.anchors.push(anchor);
        }
        Ok(())
    }

    /// Adds every root of `other`.
    pub fn extend(&mut self, other: TrustRoots) {
        for a in other.anchors {
            if !self
                .anchors
                .iter()
                .any(|b| b.spki == a.spki && b.subject == a.subject)
            {
                self.anchors.push(a);
            }
        }
    }

    /// How many anchors.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// The anchors' certificates, DER.
    pub fn certificates(&self) -> impl Iterator<Item = &[u8]> {
        self.anchors.iter().map(|a| a.der.as_slice())
    }

    fn by_key(&self, spki: &[u8]) -> Option<&Anchor> {
        self.anchors.iter().find(|a| a.spki == spki)
    }
}

/// Signatures already verified: SHA-256 of (certificate DER, issuer SPKI DER). Bounded: when
/// full it starts over.
#[derive(Debug, Default)]
pub struct ChainCache {
    verified: Mutex<HashSet<[u8; 32]>>,
    verifications: AtomicU64,
    hits: AtomicU64,
}

/// The most pairs the cache holds.
const CACHE_CAPACITY: usize = 4096;

impl ChainCache {
    /// How many signatures were verified (cache misses), since creation.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// How many verifications the cache saved.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    fn key(cert: &[u8], issuer_spki: &[u8]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&(cert.len() as u64).to_be_bytes());
        ctx.update(cert);
        ctx.update(issuer_spki);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .map(|s| s.contains(key))
            .unwrap_or(false)
    }

    fn insert(&self, key: [u8; 32]) {
        if let Ok(mut s) = self.verified.lock() {
            if s.len() >= CACHE_CAPACITY {
                s.clear();
            }
            s.insert(key);
        }
    }

    /// Verifies `cert`'s signature with `issuer`, or remembers it was verified. `cacheable` is
    /// false for leaves (each is seen once).
    fn check(
        &self,
        cert: &X509Certificate<'_>,
        issuer: &SubjectPublicKeyInfo<'_>,
        cacheable: bool,
    ) -> bool {
        let key = cacheable.then(|| ChainCache::key(cert.as_raw(), issuer.raw));
        if let Some(k) = &key
            && self.contains(k)
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let ok = cert.verify_signature(Some(issuer)).is_ok();
        if let (true, Some(k)) = (ok, key) {
            self.insert(k);
        }
        ok
    }
}

/// A verified path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPath {
    /// Indexes into the presented chain, leaf (0) first, of the certificates on the path.
    pub used: Vec<usize>,
    /// The anchor the path ends at, DER.
    pub anchor: Vec<u8>,
}

/// Builds and verifies the path from `chain[0]` (the leaf) to one of `roots`, at `now`.
///
/// Walks up by issuer name: at each step the anchors are tried first (a presented certificate
/// whose key is an anchor's ends the path, whatever its own dates), then the presented
/// certificates. Every non-anchor certificate on the path must be within its validity at
/// `now`, and every one above the leaf must be a CA.
///
/// # Errors
/// [`AttestError::Malformed`] (a certificate does not parse), [`AttestError::Expired`],
/// [`AttestError::Untrusted`] (no path, a bad signature, a non-CA issuer, a loop).
pub fn verify_path(
    chain: &[Vec<u8>],
    roots: &TrustRoots,
    now: OffsetDateTime,
    cache: &ChainCache,
) -> Result<VerifiedPath, AttestError> {
    if roots.is_empty() {
        return Err(AttestError::Untrusted(
            "no trust anchor is configured".into(),
        ));
    }
    let certs = parse_chain(chain)?;
    let mut used = vec![0usize];
    let mut current = 0usize;
    loop {
        let cert = &certs[current];
        if current != 0 {
            if let Some(a) = roots.by_key(cert.public_key().raw) {
                return Ok(VerifiedPath {
                    used: used[..used.len() - 1].to_vec(),
                    anchor: a.der.clone(),
                });
            }
            if !is_ca(cert) {
                return Err(AttestError::Untrusted(format!(
                    "chain certificate {current} is not a CA"
                )));
            }
        }
        check_validity(cert, current, now)?;
        // an anchor that signed this certificate ends the path
        for a in roots
            .anchors
            .iter()
            .filter(|a| a.subject == cert.issuer().as_raw())
        {
            let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(&a.spki) else {
                continue;
            };
            if cache.check(cert, &spki, current != 0) {
                return Ok(VerifiedPath {
                    used,
                    anchor: a.der.clone(),
                });
            }
        }
        if used.len() > MAX_DEPTH {
            return Err(AttestError::Untrusted("the chain is too long".into()));
        }
        let next = certs.iter().enumerate().find(|(i, c)| {
            !used.contains(i)
                && c.subject().as_raw() == cert.issuer().as_raw()
                && cache.check(cert, c.public_key(), current != 0)
        });
        match next {
            Some((i, _)) => {
                used.push(i);
                current = i;
            }
            None => {
                return Err(AttestError::Untrusted(format!(
                    "no trusted issuer for {} (issuer {})",
                    if current == 0 {
                        "the leaf".to_owned()
                    } else {
                        format!("chain certificate {current}")
                    },
                    cert.issuer()
                )));
            }
        }
    }
}

/// Parses every certificate; bytes after one are refused.
pub(crate) fn parse_chain(chain: &[Vec<u8>]) -> Result<Vec<X509Certificate<'_>>, AttestError> {
    if chain.is_empty() {
        return Err(AttestError::malformed("empty certificate chain"));
    }
    chain
        .iter()
        .enumerate()
        .map(|(i, der)| match X509Certificate::from_der(der) {
            Ok((&[], c)) => Ok(c),
            Ok(_) => Err(AttestError::malformed(format!(
                "bytes after chain certificate {i}"
            ))),
            Err(e) => Err(AttestError::malformed(format!(
                "chain certificate {i}: {e}"
            ))),
        })
        .collect()
}

fn is_ca(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

fn check_validity(
    cert: &X509Certificate<'_>,
    index: usize,
    now: OffsetDateTime,
) -> Result<(), AttestError> {
    let v = cert.validity();
    let what = if index == 0 {
        "leaf".to_owned()
    } else {
        format!("chain certificate {index}")
    };
    if now < v.not_before.to_datetime() {
        return Err(AttestError::Expired(format!(
            "{what} is not valid before {}",
            v.not_before
        )));
    }
    if now > v.not_after.to_datetime() {
        return Err(AttestError::Expired(format!(
            "{what} expired at {}",
            v.not_after
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roots_parse() {
        assert_eq!(TrustRoots::builtin(Format::Apple).len(), 1);
        assert_eq!(TrustRoots::builtin(Format::AndroidKey).len(), 2);
        assert_eq!(TrustRoots::builtin(Format::Tpm).len(), 1);
    }

    #[test]
    fn builtin_roots_have_the_documented_fingerprints() {
        let expect = [
            (
                Format::Apple,
                "ccf59ef8fcb3017d97f8b5fa6fa90e7a3f9283f76b55ac6cf6eda8b8b949f05b",
            ),
            (
                Format::AndroidKey,
                "cedb1cb6dc896ae5ec797348bce9286753c2b38ee71ce0fbe34a9a1248800dfc",
            ),
            (
                Format::AndroidKey,
                "6d9db4ce6c5c0b293166d08986e05774a8776ceb525d9e4329520de12ba4bcc0",
            ),
            (
                Format::Tpm,
                "870c7a35ceab3d59979f2c6a524042d404cb71518004350925fb2ced79a999da",
            ),
        ];
        for (f, fp) in expect {
            assert!(
                TrustRoots::builtin(f)
                    .certificates()
                    .any(|d| super::super::sha256_hex(d) == fp),
                "{f} root {fp}"
            );
        }
    }

    #[test]
    fn empty_roots_trust_nothing() {
        let r = verify_path(
            &[vec![1, 2, 3]],
            &TrustRoots::default(),
            OffsetDateTime::now_utc(),
            &ChainCache::default(),
        );
        assert!(matches!(r, Err(AttestError::Untrusted(_))));
    }

    #[test]
    fn garbage_certificates_are_malformed() {
        let r = verify_path(
            &[vec![0x30, 0x03, 1, 2]],
            &TrustRoots::builtin(Format::Apple),
            OffsetDateTime::now_utc(),
            &ChainCache::default(),
        );
        assert!(matches!(r, Err(AttestError::Malformed(_))), "{r:?}");
    }
}
