//! The broker's own signing keys: what signs feed checkpoints, per-device statements and any
//! other JWS the broker issues, and what gateways find in `/.well-known/jwks.json`.
//!
//! One key of each kind is active at a time:
//!
//! - ES256 (ECDSA P-256): compact JWS, checkpoint tokens, device statements;
//! - Ed25519: C2SP signed notes (feed checkpoints);
//! - RS256 (RSA 2048, made with the `rsa` crate, signed with ring): for consumers that only
//!   know RSA.
//!
//! Every key's `kid` is its RFC 7638 JWK thumbprint. [`Keys::rotate`] makes a new key of each
//! kind active; the keys it replaces stay in the JWKS, and so keep verifying, for the overlap
//! given, then drop out of it. Their private halves are deleted at rotation: a retired key
//! never signs again.
//!
//! On disk, under `<data_dir>/keys/`:
//!
//! ```text
//! keys.json        the manifest: every key's kid, algorithm, public JWK, state and times
//! <kid>.key        the private key of each active key: PKCS#8 PEM, 0600, encrypted with the
//!                  key passphrase when one is configured (postern_certs::keyfile)
//! ```
//!
//! Key files are written before the manifest that names them, and the manifest atomically, so
//! a crash leaves either the old set or the new one; key files the manifest does not name as
//! active are deleted at open.
//!
//! Signing takes a read lock only long enough to clone an [`Arc`] of the current set; the ring
//! key pairs in it are parsed once, when the set is loaded or made.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use postern_certs::jws::{self, Jwk, Jwks};
use postern_certs::keyfile;
use postern_certs::signer::{Pkcs8Key, generate};
use postern_certs::{KeyAlgorithm, KeySigner, Signer};

use super::error::{DomainError, DomainResult, ErrorKind};

/// The default time a replaced key stays published: one week.
pub const DEFAULT_OVERLAP: Duration = Duration::hours(168);

/// The longest overlap [`Keys::rotate`] accepts: one year.
pub const MAX_OVERLAP: Duration = Duration::days(366);

/// The RSA modulus size of generated RS256 keys, in bits.
pub const RSA_BITS: usize = 2048;

/// The directory under the data directory that holds the keys.
pub const KEYS_DIR: &str = "keys";

const MANIFEST: &str = "keys.json";
const MANIFEST_VERSION: u32 = 1;

/// A JWS algorithm the broker signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwsAlg {
    /// ECDSA P-256 with SHA-256, signature `r || s`.
    #[serde(rename = "ES256")]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    #[serde(rename = "RS256")]
    Rs256,
}

impl JwsAlg {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlg::Es256 => "ES256",
            JwsAlg::Rs256 => "RS256",
        }
    }
}

impl fmt::Display for JwsAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of key the set holds, one active of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KeyKind {
    /// ES256.
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519 (`EdDSA` in JOSE), for checkpoint notes.
    #[serde(rename = "EdDSA")]
    Ed25519,
    /// RS256.
    #[serde(rename = "RS256")]
    Rs256,
}

impl KeyKind {
    /// Every kind, in the order the JWKS lists them.
    pub const ALL: [KeyKind; 3] = [KeyKind::Es256, KeyKind::Ed25519, KeyKind::Rs256];

    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Es256 => "ES256",
            KeyKind::Ed25519 => "EdDSA",
            KeyKind::Rs256 => "RS256",
        }
    }

    fn key_algorithm(self) -> KeyAlgorithm {
        match self {
            KeyKind::Es256 => KeyAlgorithm::EcdsaP256,
            KeyKind::Ed25519 => KeyAlgorithm::Ed25519,
            KeyKind::Rs256 => KeyAlgorithm::RsaSha256,
        }
    }
}

impl From<JwsAlg> for KeyKind {
    fn from(a: JwsAlg) -> Self {
        match a {
            JwsAlg::Es256 => KeyKind::Es256,
            JwsAlg::Rs256 => KeyKind::Rs256,
        }
    }
}

/// The active Ed25519 key that signs checkpoint notes.
#[derive(Clone)]
pub struct NoteKey {
    /// Its kid (RFC 7638 thumbprint of its OKP JWK).
    pub kid: String,
    /// The 32-byte public key.
    pub public_key: Vec<u8>,
    /// The signer, for [`postern_certs::checkpoint::sign_note`].
    pub signer: Arc<dyn Signer>,
}

impl fmt::Debug for NoteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rotation {
    /// The new active keys.
    pub activated: Vec<RotatedKey>,
    /// The keys they replaced, published until `published_until`.
    pub retired: Vec<RotatedKey>,
    /// Retired keys whose overlap had ended, now gone from the manifest.
    pub dropped: Vec<String>,
}

/// One key in a [`Rotation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotatedKey {
    /// The JOSE algorithm.
    pub alg: KeyKind,
    /// The kid.
    pub kid: String,
    /// For a retired key: the end of its overlap.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub published_until: Option<OffsetDateTime>,
}

/// The broker's signing keys. Cheap to share (`Arc<Keys>`); rotation takes `&self`.
pub struct Keys {
    /// Where the keys live; `None` for keys held only in memory.
    dir: Option<KeyDir>,
    set: RwLock<Arc<KeySet>>,
    /// One rotation at a time.
    rotating: Mutex<()>,
    rng: SystemRandom,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.current();
        f.debug_struct("Keys")
            .field("dir", &self.dir.as_ref().map(|d| &d.dir))
            .field(
                "encrypted",
                &self.dir.as_ref().is_some_and(|d| d.passphrase.is_some()),
            )
            .field("es256", &set.es256.kid)
            .field("ed25519", &set.ed25519.kid)
            .field("rs256", &set.rs256.kid)
            .field("retired", &set.retired.len())
            .finish()
    }
}

impl Keys {
    /// Loads the signing keys under `<dir>/keys/`, creating the first set when there is none.
    /// Key files are encrypted with `passphrase` when one is given (and not empty).
    ///
    /// # Errors
    /// Internal errors naming the file when the directory cannot be written, the manifest
    /// does not parse or lacks an active key of some kind, a key file is missing, cannot be
    /// decrypted (wrong or missing passphrase) or does not hold the key the manifest names.
    pub fn open(dir: &Path, passphrase: Option<&[u8]>, now: OffsetDateTime) -> DomainResult<Keys> {
        let dir = KeyDir {
            dir: dir.join(KEYS_DIR),
            passphrase: passphrase
                .filter(|p| !p.is_empty())
                .map(|p| Zeroizing::new(p.to_vec())),
        };
        let manifest_path = dir.dir.join(MANIFEST);
        let set = if manifest_path.exists() {
            let text = fs::read_to_string(&manifest_path).map_err(|e| io_err(&manifest_path, e))?;
            let manifest: Manifest = serde_json::from_str(&text)
                .map_err(|e| DomainError::internal(format!("{}: {e}", manifest_path.display())))?;
            dir.load(&manifest)?
        } else {
            fs::create_dir_all(&dir.dir).map_err(|e| io_err(&dir.dir, e))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                fs::set_permissions(&dir.dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| io_err(&dir.dir, e))?;
            }
            let set = KeySet::generate(now, Vec::new(), Some(&dir))?;
            dir.write_manifest(&set)?;
            set
        };
        dir.remove_stale_files(&set);
        Ok(Keys {
            dir: Some(dir),
            set: RwLock::new(Arc::new(set)),
            rotating: Mutex::new(()),
            rng: SystemRandom::new(),
        })
    }

    /// Fresh keys held only in memory (tests, the memory store). Rotation works, in memory.
    ///
    /// # Errors
    /// Internal when key generation fails.
    pub fn ephemeral(now: OffsetDateTime) -> DomainResult<Keys> {
        Ok(Keys {
            dir: None,
            set: RwLock::new(Arc::new(KeySet::generate(now, Vec::new(), None)?)),
            rotating: Mutex::new(()),
            rng: SystemRandom::new(),
        })
    }

    /// Signs `payload` into a compact JWS with the active key of `alg`. The protected header
    /// is `{"alg","kid","typ"}` (in that order, no whitespace); ES256 signatures are `r || s`.
    ///
    /// # Errors
    /// Internal when the signature cannot be made (the system RNG failed).
    pub fn sign_jws(&self, alg: JwsAlg, typ: &str, payload: &[u8]) -> DomainResult<String> {
        let set = self.current();
        let key = set.active(alg.into());
        let typ = serde_json::to_string(typ).map_err(DomainError::internal)?;
        let header = format!("{}{typ}}}", key.header_prefix);
        let mut out = String::with_capacity(
            (header.len() + payload.len()) * 4 / 3
                + 8
                + if alg == JwsAlg::Rs256 { 344 } else { 88 },
        );
        URL_SAFE_NO_PAD.encode_string(header.as_bytes(), &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut out);
        let sig = match &key.fast {
            Some(pair) => pair
                .sign(&self.rng, out.as_bytes())
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| DomainError::internal("es256 signing failed"))?,
            None => key
                .signer
                .sign(out.as_bytes())
                .map_err(|e| DomainError::internal(format!("{} signing: {e}", alg)))?,
        };
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut out);
        Ok(out)
    }

    /// Verifies a compact JWS against the keys published at `now` (active, and retired inside
    /// their overlap), with the key its `kid` names.
    ///
    /// # Errors
    /// Malformed when the token does not verify with a published key.
    pub fn verify_jws(&self, token: &str, now: OffsetDateTime) -> DomainResult<jws::Verified> {
        jws::verify_compact(token, &self.jwk_set(now))
            .map_err(|e| DomainError::new(ErrorKind::Malformed, e.to_string()))
    }

    /// The active Ed25519 key for checkpoint notes.
    pub fn note_key(&self) -> NoteKey {
        let set = self.current();
        NoteKey {
            kid: set.ed25519.kid.clone(),
            public_key: set.ed25519.signer.public_key_raw().to_vec(),
            signer: Arc::clone(&set.ed25519.signer),
        }
    }

    /// The active key of `alg` as a [`Signer`] (X.509 signature forms: DER for ECDSA), for
    /// the `postern_certs` functions that take one, such as
    /// [`postern_certs::checkpoint::to_jws`].
    pub fn signer(&self, alg: JwsAlg) -> Arc<dyn Signer> {
        Arc::clone(&self.current().active(alg.into()).signer)
    }

    /// The kid of the active key of `kind`.
    pub fn active_kid(&self, kind: KeyKind) -> String {
        self.current().active(kind).kid.clone()
    }

    /// The JWK Set (RFC 7517) published at `now`: the active keys, then every retired key
    /// whose overlap has not ended (`now < published_until`). Each key has `kid`, `alg` and
    /// `use: "sig"`.
    pub fn jwks(&self, now: OffsetDateTime) -> serde_json::Value {
        serde_json::to_value(self.jwk_set(now)).unwrap_or_else(|_| serde_json::json!({"keys": []}))
    }

    /// [`Keys::jwks`] as a typed [`Jwks`].
    pub fn jwk_set(&self, now: OffsetDateTime) -> Jwks {
        let set = self.current();
        let mut keys: Vec<Jwk> = KeyKind::ALL
            .iter()
            .map(|k| set.active(*k).jwk.clone())
            .collect();
        keys.extend(
            set.retired
                .iter()
                .filter(|r| now < r.published_until)
                .map(|r| r.jwk.clone()),
        );
        Jwks { keys }
    }

    /// Makes a new key of each kind active. The keys replaced stay published for `overlap`
    /// from `now`, then drop out of the JWKS; their private keys are deleted now. Retired keys
    /// whose overlap has ended are removed from the manifest. With a directory, the new set is
    /// on disk before this returns and survives a restart.
    ///
    /// Slow (an RSA key is generated): call it off the async runtime.
    ///
    /// # Errors
    /// Malformed for a negative overlap or one longer than [`MAX_OVERLAP`]; internal when a
    /// key cannot be made or written (the old set then stays active).
    pub fn rotate(&self, now: OffsetDateTime, overlap: Duration) -> DomainResult<Rotation> {
        if overlap.is_negative() || overlap > MAX_OVERLAP {
            return Err(DomainError::new(
                ErrorKind::Malformed,
                format!(
                    "overlap must be between 0 and {} hours",
                    MAX_OVERLAP.whole_hours()
                ),
            ));
        }
        let _one = self.rotating.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.current();
        let until = now.checked_add(overlap).unwrap_or(now);
        let mut retired: Vec<RetiredKey> = Vec::new();
        let mut rotation = Rotation {
            activated: Vec::new(),
            retired: Vec::new(),
            dropped: Vec::new(),
        };
        for r in &old.retired {
            if now < r.published_until {
                retired.push(r.clone());
            } else {
                rotation.dropped.push(r.kid.clone());
            }
        }
        for kind in KeyKind::ALL {
            let a = old.active(kind);
            retired.push(RetiredKey {
                kind,
                kid: a.kid.clone(),
                jwk: a.jwk.clone(),
                created_at: a.created_at,
                retired_at: now,
                published_until: until,
            });
            rotation.retired.push(RotatedKey {
                alg: kind,
                kid: a.kid.clone(),
                published_until: Some(until),
            });
        }
        // new key files first, then the manifest that makes them active, then the old files go
        let set = KeySet::generate(now, retired, self.dir.as_ref())?;
        if let Some(dir) = &self.dir {
            dir.write_manifest(&set)?;
            dir.remove_stale_files(&set);
        }
        for kind in KeyKind::ALL {
            rotation.activated.push(RotatedKey {
                alg: kind,
                kid: set.active(kind).kid.clone(),
                published_until: None,
            });
        }
        self.install(set);
        Ok(rotation)
    }

    fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.set.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn install(&self, set: KeySet) {
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
    }
}

/// The key directory and the passphrase its files are encrypted with.
struct KeyDir {
    dir: PathBuf,
    passphrase: Option<Zeroizing<Vec<u8>>>,
}

impl KeyDir {
    fn key_path(&self, kid: &str) -> PathBuf {
        self.dir.join(format!("{kid}.key"))
    }

    fn write_key_file(&self, kid: &str, der: &Pkcs8Key) -> DomainResult<()> {
        let path = self.key_path(kid);
        let text = keyfile::encode(der, self.passphrase.as_deref().map(Vec::as_slice))
            .map_err(|e| DomainError::internal(format!("{}: {e}", path.display())))?;
        crate::keystore::write_atomic(&path, text.as_bytes(), 0o600).map_err(DomainError::internal)
    }

    fn write_manifest(&self, set: &KeySet) -> DomainResult<()> {
        let mut entries = Vec::new();
        for kind in KeyKind::ALL {
            let a = set.active(kind);
            entries.push(ManifestKey {
                kid: a.kid.clone(),
                alg: kind,
                jwk: a.jwk.clone(),
                created_at: a.created_at,
                state: KeyState::Active,
            });
        }
        for r in &set.retired {
            entries.push(ManifestKey {
                kid: r.kid.clone(),
                alg: r.kind,
                jwk: r.jwk.clone(),
                created_at: r.created_at,
                state: KeyState::Retired {
                    retired_at: r.retired_at,
                    published_until: r.published_until,
                },
            });
        }
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            keys: entries,
        };
        let mut text = serde_json::to_vec_pretty(&manifest).map_err(DomainError::internal)?;
        text.push(b'\n');
        crate::keystore::write_atomic(&self.dir.join(MANIFEST), &text, 0o600)
            .map_err(DomainError::internal)
    }

    /// Deletes key files the set does not hold as active (retired keys, leftovers of a
    /// rotation that did not finish). Failures are logged: a stale file is no danger to the
    /// set, only clutter.
    fn remove_stale_files(&self, set: &KeySet) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let keep: Vec<String> = KeyKind::ALL
            .iter()
            .map(|k| format!("{}.key", set.active(*k).kid))
            .collect();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = (name.ends_with(".key") && !keep.contains(&name)) || name.ends_with(".tmp");
            if stale && let Err(err) = fs::remove_file(e.path()) {
                tracing::warn!(file = %e.path().display(), error = %err, "could not delete a retired signing key file");
            }
        }
    }

    fn load(&self, manifest: &Manifest) -> DomainResult<KeySet> {
        let manifest_err = |msg: String| {
            DomainError::internal(format!("{}: {msg}", self.dir.join(MANIFEST).display()))
        };
        if manifest.version != MANIFEST_VERSION {
            return Err(manifest_err(format!(
                "manifest version {} is not supported",
                manifest.version
            )));
        }
        let mut active: BTreeMap<KeyKind, ActiveKey> = BTreeMap::new();
        let mut retired = Vec::new();
        for k in &manifest.keys {
            if k.jwk.thumbprint() != k.kid {
                return Err(manifest_err(format!(
                    "key {} does not have that thumbprint",
                    k.kid
                )));
            }
            match k.state {
                KeyState::Active => {
                    let path = self.key_path(&k.kid);
                    let text =
                        Zeroizing::new(fs::read_to_string(&path).map_err(|e| io_err(&path, e))?);
                    let der = keyfile::decode(&text, self.passphrase.as_deref().map(Vec::as_slice))
                        .map_err(|e| DomainError::internal(format!("{}: {e}", path.display())))?;
                    let key = ActiveKey::from_pkcs8(k.alg, &der, k.created_at)?;
                    if key.kid != k.kid {
                        return Err(DomainError::internal(format!(
                            "{}: holds key {}, not {}",
                            path.display(),
                            key.kid,
                            k.kid
                        )));
                    }
                    if active.insert(k.alg, key).is_some() {
                        return Err(manifest_err(format!(
                            "more than one active {} key",
                            k.alg.as_str()
                        )));
                    }
                }
                KeyState::Retired {
                    retired_at,
                    published_until,
                } => retired.push(RetiredKey {
                    kind: k.alg,
                    kid: k.kid.clone(),
                    jwk: k.jwk.clone(),
                    created_at: k.created_at,
                    retired_at,
                    published_until,
                }),
            }
        }
        let mut take = |kind: KeyKind| {
            active
                .remove(&kind)
                .ok_or_else(|| manifest_err(format!("no active {} key", kind.as_str())))
        };
        Ok(KeySet {
            es256: take(KeyKind::Es256)?,
            ed25519: take(KeyKind::Ed25519)?,
            rs256: take(KeyKind::Rs256)?,
            retired,
        })
    }
}

/// The keys in force: one active of each kind, and the retired ones still listed.
struct KeySet {
    es256: ActiveKey,
    ed25519: ActiveKey,
    rs256: ActiveKey,
    retired: Vec<RetiredKey>,
}

impl KeySet {
    fn active(&self, kind: KeyKind) -> &ActiveKey {
        match kind {
            KeyKind::Es256 => &self.es256,
            KeyKind::Ed25519 => &self.ed25519,
            KeyKind::Rs256 => &self.rs256,
        }
    }

    /// A new key of each kind, with `retired`; each private key is written to `dir` when
    /// given.
    fn generate(
        now: OffsetDateTime,
        retired: Vec<RetiredKey>,
        dir: Option<&KeyDir>,
    ) -> DomainResult<KeySet> {
        let make = |kind: KeyKind| -> DomainResult<ActiveKey> {
            let der = match kind {
                KeyKind::Es256 | KeyKind::Ed25519 => {
                    generate(kind.key_algorithm()).map_err(DomainError::internal)?
                }
                KeyKind::Rs256 => generate_rsa()?,
            };
            let key = ActiveKey::from_pkcs8(kind, &der, now)?;
            if let Some(dir) = dir {
                dir.write_key_file(&key.kid, &der)?;
            }
            Ok(key)
        };
        Ok(KeySet {
            es256: make(KeyKind::Es256)?,
            ed25519: make(KeyKind::Ed25519)?,
            rs256: make(KeyKind::Rs256)?,
            retired,
        })
    }
}

/// An active key: its parsed ring key pair(s), its public JWK and its kid.
struct ActiveKey {
    kid: String,
    jwk: Jwk,
    created_at: OffsetDateTime,
    /// For every use through the [`Signer`] trait (and for Ed25519 and RS256 JWS).
    signer: Arc<dyn Signer>,
    /// ES256 only: the same key parsed for fixed-length `r || s` signatures.
    fast: Option<EcdsaKeyPair>,
    /// `{"alg":"..","kid":"..","typ":` ready to sign with.
    header_prefix: String,
}

impl ActiveKey {
    fn from_pkcs8(kind: KeyKind, der: &Pkcs8Key, created_at: OffsetDateTime) -> DomainResult<Self> {
        let signer = KeySigner::from_pkcs8(der.as_der()).map_err(DomainError::internal)?;
        if signer.algorithm() != kind.key_algorithm() {
            return Err(DomainError::internal(format!(
                "a {} key where an {} key is expected",
                signer.algorithm(),
                kind.as_str()
            )));
        }
        let jwk = Jwk::from_signer(&signer).map_err(DomainError::internal)?;
        let kid = jwk.thumbprint();
        let fast = match kind {
            KeyKind::Es256 => Some(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der.as_der(),
                    &SystemRandom::new(),
                )
                .map_err(|e| DomainError::internal(format!("es256 key: {e}")))?,
            ),
            KeyKind::Ed25519 | KeyKind::Rs256 => None,
        };
        let header_prefix = format!("{{\"alg\":\"{}\",\"kid\":\"{kid}\",\"typ\":", kind.as_str());
        Ok(ActiveKey {
            kid,
            jwk,
            created_at,
            signer: Arc::new(signer),
            fast,
            header_prefix,
        })
    }
}

/// A replaced key, still published (public half only) until `published_until`.
#[derive(Clone)]
struct RetiredKey {
    kind: KeyKind,
    kid: String,
    jwk: Jwk,
    created_at: OffsetDateTime,
    retired_at: OffsetDateTime,
    published_until: OffsetDateTime,
}

/// A 2048-bit RSA key as PKCS#8 DER, from the `rsa` crate (ring cannot generate RSA keys).
fn generate_rsa() -> DomainResult<Pkcs8Key> {
    use rsa::pkcs8::EncodePrivateKey as _;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
        .map_err(|e| DomainError::internal(format!("rsa key generation: {e}")))?;
    let doc = key
        .to_pkcs8_der()
        .map_err(|e| DomainError::internal(format!("rsa key encoding: {e}")))?;
    Ok(Pkcs8Key::from_der(doc.as_bytes().to_vec()))
}

fn io_err(path: &Path, e: std::io::Error) -> DomainError {
    DomainError::internal(format!("{}: {e}", path.display()))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: u32,
    keys: Vec<ManifestKey>,
}

#[derive(Serialize, Deserialize)]
struct ManifestKey {
    kid: String,
    alg: KeyKind,
    jwk: Jwk,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(flatten)]
    state: KeyState,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum KeyState {
    Active,
    Retired {
        #[serde(with = "time::serde::rfc3339")]
        retired_at: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339")]
        published_until: OffsetDateTime,
    },
}

#[cfg(test)]
mod tests;
