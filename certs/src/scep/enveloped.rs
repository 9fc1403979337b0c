//! CMS `EnvelopedData` as SCEP uses it: RSA PKCS#1 v1.5 key transport
//! (`KeyTransRecipientInfo`) and CBC content encryption with PKCS#7 padding.

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut as _, BlockEncryptMut as _, KeyIvInit as _};
use ring::rand::SecureRandom as _;
use rsa::pkcs8::DecodePublicKey as _;
use yasna::models::ObjectIdentifier;
use yasna::{ASN1Error, ASN1ErrorKind, Tag};

use super::der::{self, ENVELOPED_DATA, RSA_ENCRYPTION, cert_ids, oid, tlv, tlv_value};
use super::{RsaKey, ScepError};
use crate::error::Error;

/// The content-encryption algorithm of an `EnvelopedData`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentEncryption {
    /// aes128-CBC (2.16.840.1.101.3.4.1.2)
    Aes128Cbc,
    /// aes192-CBC (2.16.840.1.101.3.4.1.22)
    Aes192Cbc,
    /// aes256-CBC (2.16.840.1.101.3.4.1.42), what answers use by default
    Aes256Cbc,
    /// des-ede3-cbc (1.2.840.113549.3.7): old clients (the 2016 macOS request)
    DesEde3Cbc,
    /// desCBC (1.3.14.3.2.7): single DES, the default of micromdm's `scepclient`; accepted
    /// in requests, never used for answers
    DesCbc,
}

impl ContentEncryption {
    const ALL: [ContentEncryption; 5] = [
        Self::Aes128Cbc,
        Self::Aes192Cbc,
        Self::Aes256Cbc,
        Self::DesEde3Cbc,
        Self::DesCbc,
    ];

    fn oid(self) -> &'static [u64] {
        match self {
            Self::Aes128Cbc => &[2, 16, 840, 1, 101, 3, 4, 1, 2],
            Self::Aes192Cbc => &[2, 16, 840, 1, 101, 3, 4, 1, 22],
            Self::Aes256Cbc => &[2, 16, 840, 1, 101, 3, 4, 1, 42],
            Self::DesEde3Cbc => &[1, 2, 840, 113549, 3, 7],
            Self::DesCbc => &[1, 3, 14, 3, 2, 7],
        }
    }

    fn from_oid(o: &ObjectIdentifier) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| o.components().as_slice() == c.oid())
    }

    fn key_len(self) -> usize {
        match self {
            Self::Aes128Cbc => 16,
            Self::Aes192Cbc | Self::DesEde3Cbc => 24,
            Self::Aes256Cbc => 32,
            Self::DesCbc => 8,
        }
    }

    fn block_len(self) -> usize {
        match self {
            Self::Aes128Cbc | Self::Aes192Cbc | Self::Aes256Cbc => 16,
            Self::DesEde3Cbc | Self::DesCbc => 8,
        }
    }

    fn decrypt(self, key: &[u8], iv: &[u8], ct: &[u8]) -> Option<Vec<u8>> {
        fn run<
            C: cbc::cipher::BlockDecryptMut + cbc::cipher::BlockCipher + cbc::cipher::KeyInit,
        >(
            key: &[u8],
            iv: &[u8],
            ct: &[u8],
        ) -> Option<Vec<u8>> {
            cbc::Decryptor::<C>::new_from_slices(key, iv)
                .ok()?
                .decrypt_padded_vec_mut::<Pkcs7>(ct)
                .ok()
        }
        match self {
            Self::Aes128Cbc => run::<aes::Aes128>(key, iv, ct),
            Self::Aes192Cbc => run::<aes::Aes192>(key, iv, ct),
            Self::Aes256Cbc => run::<aes::Aes256>(key, iv, ct),
            Self::DesEde3Cbc => run::<des::TdesEde3>(key, iv, ct),
            Self::DesCbc => run::<des::Des>(key, iv, ct),
        }
    }

    fn encrypt(self, key: &[u8], iv: &[u8], pt: &[u8]) -> Option<Vec<u8>> {
        fn run<
            C: cbc::cipher::BlockEncryptMut + cbc::cipher::BlockCipher + cbc::cipher::KeyInit,
        >(
            key: &[u8],
            iv: &[u8],
            pt: &[u8],
        ) -> Option<Vec<u8>> {
            Some(
                cbc::Encryptor::<C>::new_from_slices(key, iv)
                    .ok()?
                    .encrypt_padded_vec_mut::<Pkcs7>(pt),
            )
        }
        match self {
            Self::Aes128Cbc => run::<aes::Aes128>(key, iv, pt),
            Self::Aes192Cbc => run::<aes::Aes192>(key, iv, pt),
            Self::Aes256Cbc => run::<aes::Aes256>(key, iv, pt),
            Self::DesEde3Cbc => run::<des::TdesEde3>(key, iv, pt),
            Self::DesCbc => run::<des::Des>(key, iv, pt),
        }
    }
}

struct RawEnveloped {
    recipients: Vec<Vec<u8>>,
    algorithm: ObjectIdentifier,
    parameters: Option<Vec<u8>>,
    encrypted: Vec<u8>,
}

fn invalid() -> ASN1Error {
    ASN1Error::new(ASN1ErrorKind::Invalid)
}

fn parse(der: &[u8]) -> Result<RawEnveloped, ScepError> {
    der::parse_ber(der, |r| {
        r.read_sequence(|r| {
            if r.next().read_oid()? != oid(ENVELOPED_DATA) {
                return Err(invalid());
            }
            r.next().read_tagged(Tag::context(0), |r| {
                r.read_sequence(|r| {
                    let _version = r.next().read_u64()?;
                    // originatorInfo [0] IMPLICIT OPTIONAL: skipped
                    r.read_optional(|r| {
                        r.read_tagged_implicit(Tag::context(0), |r| {
                            r.read_sequence(|r| {
                                while r.read_optional(|r| r.read_der())?.is_some() {}
                                Ok(())
                            })
                        })
                    })?;
                    let mut recipients = Vec::new();
                    r.next().read_set_of(|r| {
                        recipients.push(r.read_der()?);
                        Ok(())
                    })?;
                    let (algorithm, parameters, encrypted) = r.next().read_sequence(|r| {
                        let _type = r.next().read_oid()?;
                        let (alg, params) = r.next().read_sequence(|r| {
                            let o = r.next().read_oid()?;
                            let p = r.read_optional(|r| r.read_der())?;
                            Ok((o, p))
                        })?;
                        let enc = r.read_optional(|r| {
                            r.read_tagged_implicit(Tag::context(0), |r| r.read_bytes())
                        })?;
                        Ok((alg, params, enc.unwrap_or_default()))
                    })?;
                    r.read_optional(|r| r.read_der())?;
                    Ok(RawEnveloped {
                        recipients,
                        algorithm,
                        parameters,
                        encrypted,
                    })
                })
            })
        })
    })
    .ok_or(ScepError::Malformed("enveloped data"))
}

/// A `KeyTransRecipientInfo`: its rid (raw) and encryptedKey, if `ri` is one.
fn key_trans(ri: &[u8]) -> Option<(Vec<u8>, ObjectIdentifier, Vec<u8>)> {
    der::parse_ber(ri, |r| {
        r.read_sequence(|r| {
            let _version = r.next().read_u64()?;
            let rid = r.next().read_der()?;
            let alg = r.next().read_sequence(|r| {
                let o = r.next().read_oid()?;
                r.read_optional(|r| r.read_der())?;
                Ok(o)
            })?;
            let key = r.next().read_bytes()?;
            Ok((rid, alg, key))
        })
    })
}

/// Decrypts a SCEP `EnvelopedData` (a `ContentInfo`) addressed to `recipient_cert_der` with
/// its `key`, returning the content and the algorithm the sender chose.
///
/// A key transport that does not decrypt is not told apart from content that does not
/// decrypt (both [`ScepError::Decrypt`]): a random key stands in, so the answer is no RSA
/// padding oracle.
///
/// # Errors
/// [`ScepError::Malformed`], [`ScepError::UnsupportedAlgorithm`] (content encryption or key
/// transport), [`ScepError::NotForRecipient`], [`ScepError::Decrypt`].
pub(crate) fn decrypt(
    der: &[u8],
    recipient_cert_der: &[u8],
    key: &RsaKey,
) -> Result<(Vec<u8>, ContentEncryption), ScepError> {
    let env = parse(der)?;
    let alg =
        ContentEncryption::from_oid(&env.algorithm).ok_or(ScepError::UnsupportedAlgorithm {
            what: "content-encryption",
            oid: der::dotted(&env.algorithm),
        })?;
    let iv = env
        .parameters
        .as_deref()
        .and_then(|p| tlv_value(p, &[0x04]))
        .filter(|iv| iv.len() == alg.block_len())
        .ok_or(ScepError::Malformed("content-encryption parameters"))?;
    let ids = cert_ids(recipient_cert_der)?;
    let (_, kt_alg, encrypted_key) = env
        .recipients
        .iter()
        .filter_map(|ri| key_trans(ri))
        .find(|(rid, _, _)| match tlv_value(rid, &[0x80]) {
            Some(ski) => ids.ski.as_ref() == Some(&ski),
            None => *rid == ids.issuer_and_serial,
        })
        .ok_or(ScepError::NotForRecipient)?;
    if kt_alg != oid(RSA_ENCRYPTION) {
        return Err(ScepError::UnsupportedAlgorithm {
            what: "key transport",
            oid: der::dotted(&kt_alg),
        });
    }
    let cek = match key.decrypt(&encrypted_key) {
        Some(k) if k.len() == alg.key_len() => k,
        _ => random(alg.key_len()).map_err(|_| ScepError::Decrypt)?,
    };
    let content = alg
        .decrypt(&cek, &iv, &env.encrypted)
        .ok_or(ScepError::Decrypt)?;
    Ok((content, alg))
}

fn random(n: usize) -> Result<Vec<u8>, Error> {
    let mut out = vec![0; n];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| Error::Internal("no randomness".into()))?;
    Ok(out)
}

/// Encrypts `content` as an `EnvelopedData` (`ContentInfo`, DER) to the RSA key of
/// `recipient_cert_der`, with a fresh key and IV.
///
/// # Errors
/// [`Error::Malformed`] when the certificate does not parse or its key is not RSA;
/// [`Error::Internal`] when encryption fails.
pub(crate) fn encrypt(
    content: &[u8],
    recipient_cert_der: &[u8],
    alg: ContentEncryption,
) -> Result<Vec<u8>, Error> {
    let ids = cert_ids(recipient_cert_der)
        .map_err(|_| Error::malformed("recipient certificate", "does not parse"))?;
    let public = rsa::RsaPublicKey::from_public_key_der(&ids.spki)
        .map_err(|_| Error::malformed("recipient certificate", "its key is not RSA"))?;
    let cek = random(alg.key_len())?;
    let iv = random(alg.block_len())?;
    let encrypted_key = public
        .encrypt(&mut rsa::rand_core::OsRng, rsa::Pkcs1v15Encrypt, &cek)
        .map_err(|e| Error::Internal(format!("rsa key transport: {e}")))?;
    let encrypted = alg
        .encrypt(&cek, &iv, content)
        .ok_or_else(|| Error::Internal("content encryption".into()))?;
    let kt_alg = der::algorithm_null(RSA_ENCRYPTION);
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&oid(ENVELOPED_DATA));
            w.next().write_tagged(Tag::context(0), |w| {
                w.write_sequence(|w| {
                    w.next().write_u8(0);
                    w.next().write_set(|w| {
                        w.next().write_sequence(|w| {
                            w.next().write_u8(0);
                            w.next().write_der(&ids.issuer_and_serial);
                            w.next().write_der(&kt_alg);
                            w.next().write_bytes(&encrypted_key);
                        })
                    });
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(super::der::DATA));
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(alg.oid()));
                            w.next().write_bytes(&iv);
                        });
                        w.next().write_der(&tlv(0x80, &encrypted));
                    });
                })
            });
        })
    }))
}
