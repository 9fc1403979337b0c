//! Key and certificate files in the data directory.
//!
//! Layout under `data_dir`:
//! ```text
//! db/               sled
//! ca/root.pem       root certificate (what relying parties trust)
//! ca/root.key       root key (PKCS#8 PEM, 0600; may be moved offline after `ca init`)
//! ca/issuing.pem    issuing CA certificate followed by its chain
//! ca/issuing.key    issuing key (0600)
//! ca/ocsp.pem|.key  delegated OCSP responder
//! tls/server.pem|.key  the broker's TLS certificate chain and key
//! ca/scep-ra.pem|.key  the SCEP registration authority (RSA-2048)
//! ```
//! Keys are PKCS#8 PEM, encrypted with a passphrase when one is configured
//! (`postern_certs::keyfile`).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use postern_certs::keyfile;
use postern_certs::signer::Pkcs8Key;
use postern_certs::{KeySigner, Signer};
use zeroize::Zeroizing;

/// Names of the files postern keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyName {
    /// The root CA.
    Root,
    /// The issuing CA.
    Issuing,
    /// The delegated OCSP responder.
    Ocsp,
    /// The HTTPS server.
    TlsServer,
    /// The SCEP registration authority (RSA).
    ScepRa,
}

impl KeyName {
    fn stem(self) -> &'static str {
        match self {
            KeyName::Root => "ca/root",
            KeyName::Issuing => "ca/issuing",
            KeyName::Ocsp => "ca/ocsp",
            KeyName::TlsServer => "tls/server",
            KeyName::ScepRa => "ca/scep-ra",
        }
    }
}

/// Errors reading or writing key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key could not be decoded (wrong passphrase, not a key).
    #[error("{path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: postern_certs::KeyError,
    },
}

/// Keys and certificates as files in one directory.
#[derive(Debug, Clone)]
pub struct FileKeyStore {
    root: PathBuf,
    passphrase: Option<Zeroizing<Vec<u8>>>,
}

impl FileKeyStore {
    /// A key store under `data_dir`, encrypting keys with `passphrase` when given.
    pub fn new(data_dir: &Path, passphrase: Option<Zeroizing<Vec<u8>>>) -> Self {
        FileKeyStore {
            root: data_dir.to_path_buf(),
            passphrase: passphrase.filter(|p| !p.is_empty()),
        }
    }

    /// Path of a key file.
    pub fn key_path(&self, name: KeyName) -> PathBuf {
        self.root.join(format!("{}.key", name.stem()))
    }

    /// Path of a certificate (chain) file.
    pub fn cert_path(&self, name: KeyName) -> PathBuf {
        self.root.join(format!("{}.pem", name.stem()))
    }

    /// Whether the certificate file exists.
    pub fn has_cert(&self, name: KeyName) -> bool {
        self.cert_path(name).exists()
    }

    /// Whether the key file exists.
    pub fn has_key(&self, name: KeyName) -> bool {
        self.key_path(name).exists()
    }

    /// Writes a key with mode 0600 (atomically: temp file, fsync, rename).
    ///
    /// # Errors
    /// [`KeyStoreError`] on I/O failure.
    pub fn write_key(&self, name: KeyName, key: &Pkcs8Key) -> Result<(), KeyStoreError> {
        let path = self.key_path(name);
        let text = keyfile::encode(key, self.passphrase.as_deref().map(|p| p.as_slice())).map_err(
            |source| KeyStoreError::Key {
                path: path.clone(),
                source: match source {
                    postern_certs::Error::Key(k) => k,
                    other => postern_certs::KeyError::Malformed(other.to_string()),
                },
            },
        )?;
        write_atomic(&path, text.as_bytes(), 0o600)
    }

    /// Decodes a key PEM (plain or encrypted) with this store's passphrase.
    ///
    /// # Errors
    /// The key error: malformed, passphrase required, wrong passphrase.
    pub fn decode_key(&self, pem_text: &str) -> Result<Pkcs8Key, postern_certs::Error> {
        keyfile::decode(pem_text, self.passphrase.as_deref().map(|p| p.as_slice()))
    }

    /// Reads a key.
    ///
    /// # Errors
    /// [`KeyStoreError`] when missing, unreadable, or the passphrase is wrong or missing.
    pub fn key(&self, name: KeyName) -> Result<Pkcs8Key, KeyStoreError> {
        let path = self.key_path(name);
        let text =
            Zeroizing::new(
                fs::read_to_string(&path).map_err(|source| KeyStoreError::Io {
                    path: path.clone(),
                    source,
                })?,
            );
        self.decode_key(&text).map_err(|e| KeyStoreError::Key {
            path,
            source: match e {
                postern_certs::Error::Key(k) => k,
                other => postern_certs::KeyError::Malformed(other.to_string()),
            },
        })
    }

    /// Reads a key into a signer.
    ///
    /// # Errors
    /// As [`FileKeyStore::key`].
    pub fn signer(&self, name: KeyName) -> Result<KeySigner, KeyStoreError> {
        let key = self.key(name)?;
        KeySigner::from_pkcs8(key.as_der()).map_err(|source| KeyStoreError::Key {
            path: self.key_path(name),
            source,
        })
    }

    /// Writes a certificate (chain) PEM with mode 0644.
    ///
    /// # Errors
    /// [`KeyStoreError`] on I/O failure.
    pub fn write_cert(&self, name: KeyName, pem_text: &str) -> Result<(), KeyStoreError> {
        write_atomic(&self.cert_path(name), pem_text.as_bytes(), 0o644)
    }

    /// Reads a certificate (chain) PEM.
    ///
    /// # Errors
    /// [`KeyStoreError`] when missing or unreadable.
    pub fn read_cert(&self, name: KeyName) -> Result<String, KeyStoreError> {
        let path = self.cert_path(name);
        fs::read_to_string(&path).map_err(|source| KeyStoreError::Io { path, source })
    }

    /// Whether the stored key exists, decodes and has this public key.
    pub fn signer_matches(&self, name: KeyName, spki: &[u8]) -> bool {
        self.signer(name)
            .map(|s| s.spki_der() == spki)
            .unwrap_or(false)
    }
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyStoreError> {
    let io = |source| KeyStoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(mode);
        }
        let mut f = opts.open(&tmp).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            f.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(io)?;
        }
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
