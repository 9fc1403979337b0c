//! TPM 2.0 structures (TPM 2.0 Library, Part 2 "Structures"), parsed strictly: big-endian
//! integers, `TPM2B` sizes checked against what is left, unknown selectors refused, no bytes
//! after the structure. Any defect is [`AttestError::Malformed`]; nothing here panics.
//!
//! - [`TpmPublic`] (`TPMT_PUBLIC`, the `pubArea` of a statement) for RSA and ECC keys, with its
//!   TPM name and its DER SubjectPublicKeyInfo;
//! - [`TpmAttest`] (`TPMS_ATTEST`, the `certInfo`): `certify`, `creation` and `quote` bodies are
//!   decoded, other types are kept as raw bytes;
//! - [`TpmSignature`] (`TPMT_SIGNATURE`) for RSASSA, RSAPSS and ECDSA, which
//!   [`TpmPublic::verify`] checks.

use std::fmt;

use ring::signature;

use crate::attestation::AttestError;

/// `TPM_GENERATED_VALUE`: the magic that starts every structure the TPM signs about itself.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;

/// TPM algorithm identifiers (`TPM_ALG_ID`, TCG Algorithm Registry).
pub mod alg {
    /// RSA key.
    pub const RSA: u16 = 0x0001;
    /// SHA-1.
    pub const SHA1: u16 = 0x0004;
    /// AES.
    pub const AES: u16 = 0x0006;
    /// MGF1 key derivation.
    pub const MGF1: u16 = 0x0007;
    /// SHA-256.
    pub const SHA256: u16 = 0x000B;
    /// SHA-384.
    pub const SHA384: u16 = 0x000C;
    /// SHA-512.
    pub const SHA512: u16 = 0x000D;
    /// No algorithm.
    pub const NULL: u16 = 0x0010;
    /// SM4.
    pub const SM4: u16 = 0x0013;
    /// RSASSA-PKCS1-v1_5 signatures.
    pub const RSASSA: u16 = 0x0014;
    /// RSAES-PKCS1-v1_5 encryption.
    pub const RSAES: u16 = 0x0015;
    /// RSASSA-PSS signatures.
    pub const RSAPSS: u16 = 0x0016;
    /// RSAES-OAEP encryption.
    pub const OAEP: u16 = 0x0017;
    /// ECDSA signatures.
    pub const ECDSA: u16 = 0x0018;
    /// ECDH key exchange.
    pub const ECDH: u16 = 0x0019;
    /// ECDAA signatures.
    pub const ECDAA: u16 = 0x001A;
    /// SM2 signatures.
    pub const SM2: u16 = 0x001B;
    /// EC-Schnorr signatures.
    pub const ECSCHNORR: u16 = 0x001C;
    /// ECMQV key exchange.
    pub const ECMQV: u16 = 0x001D;
    /// KDF1 of SP 800-56A.
    pub const KDF1_SP800_56A: u16 = 0x0020;
    /// KDF2.
    pub const KDF2: u16 = 0x0021;
    /// KDF1 of SP 800-108.
    pub const KDF1_SP800_108: u16 = 0x0022;
    /// ECC key.
    pub const ECC: u16 = 0x0023;
    /// Camellia.
    pub const CAMELLIA: u16 = 0x0026;
}

/// `TPM_ST_ATTEST_*`: the type of a [`TpmAttest`].
pub mod st {
    /// `TPM_ST_ATTEST_CERTIFY` (TPM2_Certify).
    pub const ATTEST_CERTIFY: u16 = 0x8017;
    /// `TPM_ST_ATTEST_QUOTE` (TPM2_Quote).
    pub const ATTEST_QUOTE: u16 = 0x8018;
    /// `TPM_ST_ATTEST_CREATION` (TPM2_CertifyCreation).
    pub const ATTEST_CREATION: u16 = 0x801A;
}

/// `TPMA_OBJECT`: an object's attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    /// `fixedTPM`: the object cannot be duplicated to another TPM.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// `stClear`: the object is flushed at TPM Restart.
    pub const ST_CLEAR: u32 = 1 << 2;
    /// `fixedParent`: the object cannot be moved under another parent.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// `sensitiveDataOrigin`: the TPM generated the private key.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// `userWithAuth`.
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// `adminWithPolicy`.
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    /// `noDA`: exempt from dictionary-attack protection.
    pub const NO_DA: u32 = 1 << 10;
    /// `restricted`: signs or decrypts only TPM-made structures.
    pub const RESTRICTED: u32 = 1 << 16;
    /// `decrypt`.
    pub const DECRYPT: u32 = 1 << 17;
    /// `sign` (or `encrypt` for symmetric keys).
    pub const SIGN: u32 = 1 << 18;

    /// Whether every bit of `mask` is set.
    pub fn has(self, mask: u32) -> bool {
        self.0 & mask == mask
    }
}

/// The key of a [`TpmPublic`]: its parameters and its `unique` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmKey {
    /// `TPMS_RSA_PARMS` with `TPM2B_PUBLIC_KEY_RSA`.
    Rsa {
        /// Modulus size in bits.
        key_bits: u16,
        /// Public exponent; 0 means 65537.
        exponent: u32,
        /// Modulus, big-endian.
        modulus: Vec<u8>,
    },
    /// `TPMS_ECC_PARMS` with `TPMS_ECC_POINT`.
    Ecc {
        /// `TPM_ECC_CURVE` (0x0003 NIST P-256, 0x0004 NIST P-384).
        curve: u16,
        /// The key derivation scheme, `TPM_ALG_NULL` for none.
        kdf: u16,
        /// X coordinate, big-endian.
        x: Vec<u8>,
        /// Y coordinate, big-endian.
        y: Vec<u8>,
    },
}

/// `TPM_ECC_NIST_P256`.
pub const ECC_NIST_P256: u16 = 0x0003;
/// `TPM_ECC_NIST_P384`.
pub const ECC_NIST_P384: u16 = 0x0004;

/// `TPMT_PUBLIC`: the public area of a TPM object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmPublic {
    /// `type`: [`alg::RSA`] or [`alg::ECC`].
    pub key_type: u16,
    /// `nameAlg`: the hash of the object's name.
    pub name_alg: u16,
    /// `objectAttributes`.
    pub object_attributes: ObjectAttributes,
    /// `authPolicy` digest (empty when the object has no policy).
    pub auth_policy: Vec<u8>,
    /// The symmetric algorithm of a storage key, [`alg::NULL`] for others.
    pub symmetric: u16,
    /// The signing or encryption scheme, [`alg::NULL`] when any is allowed.
    pub scheme: u16,
    /// The hash of `scheme`, when it has one.
    pub scheme_hash: Option<u16>,
    /// Parameters and public key.
    pub key: TpmKey,
    raw: Vec<u8>,
}

/// `TPMS_CLOCK_INFO`. For keys outside the endorsement and platform hierarchies (every AK) the
/// TPM obfuscates `reset_count` and `restart_count` (and the attestation's firmware version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since it was last cleared.
    pub clock: u64,
    /// TPM Resets since the last clear.
    pub reset_count: u32,
    /// TPM Restarts and Resumes since the last Reset.
    pub restart_count: u32,
    /// Whether `clock` has not gone backwards since it was last reported.
    pub safe: bool,
}

/// One `TPMS_PCR_SELECTION` of a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    /// The PCR bank.
    pub hash: u16,
    /// The bitmap of selected PCRs.
    pub select: Vec<u8>,
}

/// `TPMU_ATTEST`: what the attestation says, by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attested {
    /// `TPMS_CERTIFY_INFO`.
    Certify {
        /// The certified object's name: `nameAlg` followed by the hash of its public area.
        name: Vec<u8>,
        /// Its qualified name.
        qualified_name: Vec<u8>,
    },
    /// `TPMS_CREATION_INFO`.
    Creation {
        /// The created object's name.
        object_name: Vec<u8>,
        /// The hash of its creation data.
        creation_hash: Vec<u8>,
    },
    /// `TPMS_QUOTE_INFO`.
    Quote {
        /// The PCRs quoted.
        pcr_select: Vec<PcrSelection>,
        /// The digest of their values.
        pcr_digest: Vec<u8>,
    },
    /// Another type, undecoded.
    Other(Vec<u8>),
}

/// `TPMS_ATTEST`: a statement the TPM signs about one of its objects or itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmAttest {
    /// `type` (`TPM_ST_ATTEST_*`, see [`st`]).
    pub attest_type: u16,
    /// `qualifiedSigner`: the qualified name of the signing key.
    pub qualified_signer: Vec<u8>,
    /// `extraData`: the caller's qualifying data (the freshness value).
    pub extra_data: Vec<u8>,
    /// `clockInfo`.
    pub clock_info: ClockInfo,
    /// `firmwareVersion`, vendor-defined (obfuscated for keys outside the endorsement and
    /// platform hierarchies).
    pub firmware_version: u64,
    /// `attested`.
    pub attested: Attested,
}

/// `TPMT_SIGNATURE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmSignature {
    /// RSASSA-PKCS1-v1_5.
    RsaSsa {
        /// The hash algorithm.
        hash: u16,
        /// The signature.
        sig: Vec<u8>,
    },
    /// RSASSA-PSS.
    RsaPss {
        /// The hash algorithm.
        hash: u16,
        /// The signature.
        sig: Vec<u8>,
    },
    /// ECDSA.
    Ecdsa {
        /// The hash algorithm.
        hash: u16,
        /// r, big-endian.
        r: Vec<u8>,
        /// s, big-endian.
        s: Vec<u8>,
    },
}

/// Parses a `TPMT_PUBLIC` (RSA or ECC).
///
/// # Errors
/// [`AttestError::Malformed`] naming the defect: truncation, an unknown type or scheme, bytes
/// after the structure.
pub fn parse_public(bytes: &[u8]) -> Result<TpmPublic, AttestError> {
    let mut r = Reader::new(bytes, "pubArea");
    let key_type = r.u16("type")?;
    let name_alg = r.u16("nameAlg")?;
    let object_attributes = ObjectAttributes(r.u32("objectAttributes")?);
    let auth_policy = r.tpm2b("authPolicy")?.to_vec();
    let symmetric = r.sym_def_object()?;
    let (scheme, scheme_hash, key) = match key_type {
        alg::RSA => {
            let (scheme, hash) = r.scheme(
                "rsa scheme",
                &[alg::RSASSA, alg::RSAPSS, alg::OAEP],
                &[alg::RSAES],
            )?;
            let key_bits = r.u16("keyBits")?;
            let exponent = r.u32("exponent")?;
            let modulus = r.tpm2b("unique")?.to_vec();
            let key = TpmKey::Rsa {
                key_bits,
                exponent,
                modulus,
            };
            (scheme, hash, key)
        }
        alg::ECC => {
            let (scheme, hash) = r.scheme(
                "ecc scheme",
                &[
                    alg::ECDSA,
                    alg::ECDH,
                    alg::ECDAA,
                    alg::SM2,
                    alg::ECSCHNORR,
                    alg::ECMQV,
                ],
                &[],
            )?;
            if scheme == alg::ECDAA {
                r.u16("ecdaa count")?;
            }
            let curve = r.u16("curveID")?;
            let (kdf, _) = r.scheme(
                "kdf scheme",
                &[
                    alg::MGF1,
                    alg::KDF1_SP800_56A,
                    alg::KDF2,
                    alg::KDF1_SP800_108,
                ],
                &[],
            )?;
            let x = r.tpm2b("unique.x")?.to_vec();
            let y = r.tpm2b("unique.y")?.to_vec();
            (scheme, hash, TpmKey::Ecc { curve, kdf, x, y })
        }
        t => {
            return Err(AttestError::malformed(format!(
                "pubArea: key type {} is neither rsa nor ecc",
                Hex16(t)
            )));
        }
    };
    r.finish()?;
    Ok(TpmPublic {
        key_type,
        name_alg,
        object_attributes,
        auth_policy,
        symmetric,
        scheme,
        scheme_hash,
        key,
        raw: bytes.to_vec(),
    })
}

/// Parses a `TPMS_ATTEST`. The magic must be [`TPM_GENERATED_VALUE`]; any type is accepted,
/// and `certify`, `creation` and `quote` bodies are decoded.
///
/// # Errors
/// [`AttestError::Malformed`] naming the defect.
pub fn parse_attest(bytes: &[u8]) -> Result<TpmAttest, AttestError> {
    let mut r = Reader::new(bytes, "certInfo");
    let magic = r.u32("magic")?;
    if magic != TPM_GENERATED_VALUE {
        return Err(AttestError::malformed(format!(
            "certInfo: magic {magic:#010x} is not TPM_GENERATED_VALUE"
        )));
    }
    let attest_type = r.u16("type")?;
    let qualified_signer = r.tpm2b("qualifiedSigner")?.to_vec();
    let extra_data = r.tpm2b("extraData")?.to_vec();
    let clock_info = ClockInfo {
        clock: r.u64("clock")?,
        reset_count: r.u32("resetCount")?,
        restart_count: r.u32("restartCount")?,
        safe: match r.u8("safe")? {
            0 => false,
            1 => true,
            v => {
                return Err(AttestError::malformed(format!(
                    "certInfo: safe is {v}, not yes or no"
                )));
            }
        },
    };
    let firmware_version = r.u64("firmwareVersion")?;
    let attested = match attest_type {
        st::ATTEST_CERTIFY => Attested::Certify {
            name: r.tpm2b("name")?.to_vec(),
            qualified_name: r.tpm2b("qualifiedName")?.to_vec(),
        },
        st::ATTEST_CREATION => Attested::Creation {
            object_name: r.tpm2b("objectName")?.to_vec(),
            creation_hash: r.tpm2b("creationHash")?.to_vec(),
        },
        st::ATTEST_QUOTE => {
            let count = r.u32("pcrSelect.count")?;
            // TPML_PCR_SELECTION holds at most HASH_COUNT banks; 16 is generous
            if count > 16 {
                return Err(AttestError::malformed(format!(
                    "certInfo: {count} pcr selections"
                )));
            }
            let mut pcr_select = Vec::new();
            for _ in 0..count {
                let hash = r.u16("pcrSelect.hash")?;
                let size = usize::from(r.u8("pcrSelect.sizeofSelect")?);
                let select = r.take(size, "pcrSelect.pcrSelect")?.to_vec();
                pcr_select.push(PcrSelection { hash, select });
            }
            Attested::Quote {
                pcr_select,
                pcr_digest: r.tpm2b("pcrDigest")?.to_vec(),
            }
        }
        _ => Attested::Other(r.rest().to_vec()),
    };
    r.finish()?;
    Ok(TpmAttest {
        attest_type,
        qualified_signer,
        extra_data,
        clock_info,
        firmware_version,
        attested,
    })
}

/// Parses a `TPMT_SIGNATURE` (RSASSA, RSAPSS or ECDSA).
///
/// # Errors
/// [`AttestError::Malformed`] naming the defect, or for another signature scheme.
pub fn parse_signature(bytes: &[u8]) -> Result<TpmSignature, AttestError> {
    let mut r = Reader::new(bytes, "signature");
    let sig_alg = r.u16("sigAlg")?;
    let sig = match sig_alg {
        alg::RSASSA | alg::RSAPSS => {
            let hash = r.u16("hash")?;
            let sig = r.tpm2b("sig")?.to_vec();
            if sig_alg == alg::RSASSA {
                TpmSignature::RsaSsa { hash, sig }
            } else {
                TpmSignature::RsaPss { hash, sig }
            }
        }
        alg::ECDSA => TpmSignature::Ecdsa {
            hash: r.u16("hash")?,
            r: r.tpm2b("signatureR")?.to_vec(),
            s: r.tpm2b("signatureS")?.to_vec(),
        },
        a => {
            return Err(AttestError::malformed(format!(
                "signature: scheme {} is not supported",
                Hex16(a)
            )));
        }
    };
    r.finish()?;
    Ok(sig)
}

impl TpmPublic {
    /// The bytes it was parsed from.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The object's TPM name: `nameAlg` (big-endian) followed by the `nameAlg` hash of the
    /// public area. `None` when `nameAlg` is not SHA-1, SHA-256, SHA-384 or SHA-512.
    pub fn name(&self) -> Option<Vec<u8>> {
        let digest = tpm_digest(self.name_alg, &self.raw)?;
        let mut name = self.name_alg.to_be_bytes().to_vec();
        name.extend_from_slice(digest.as_ref());
        Some(name)
    }

    /// The public key as a DER SubjectPublicKeyInfo: `rsaEncryption` with the modulus and
    /// exponent (0 meaning 65537), or `id-ecPublicKey` on P-256 or P-384 with the uncompressed
    /// point.
    ///
    /// # Errors
    /// [`AttestError::Malformed`] when the modulus or a coordinate does not fit the declared
    /// size, [`AttestError::Key`] for another curve.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, AttestError> {
        match &self.key {
            TpmKey::Rsa { .. } => {
                let (n, e) = self.rsa_components()?;
                let rsa_public_key = yasna::construct_der(|w| {
                    w.write_sequence(|w| {
                        w.next().write_bigint_bytes(n, true);
                        w.next().write_u32(e);
                    });
                });
                Ok(spki(&[1, 2, 840, 113_549, 1, 1, 1], None, &rsa_public_key))
            }
            TpmKey::Ecc { curve, .. } => {
                let oid: &[u64] = match *curve {
                    ECC_NIST_P256 => &[1, 2, 840, 10045, 3, 1, 7],
                    _ => &[1, 3, 132, 0, 34],
                };
                let point = self.ec_point()?;
                Ok(spki(&[1, 2, 840, 10045, 2, 1], Some(oid), &point))
            }
        }
    }

    /// Verifies `sig` over `message` with this key (an AK verifying its own attestations).
    ///
    /// # Errors
    /// [`AttestError::Signature`] when it does not verify or the scheme, hash and key do not go
    /// together; [`AttestError::Malformed`] or [`AttestError::Key`] for an unusable key.
    pub fn verify(&self, message: &[u8], sig: &TpmSignature) -> Result<(), AttestError> {
        let bad = || AttestError::Signature("the tpm signature does not verify".into());
        let pss = matches!(sig, TpmSignature::RsaPss { .. });
        match (&self.key, sig) {
            (TpmKey::Rsa { .. }, TpmSignature::RsaSsa { hash, sig })
            | (TpmKey::Rsa { .. }, TpmSignature::RsaPss { hash, sig }) => {
                let params: &signature::RsaParameters = match (pss, *hash) {
                    // SHA-1: see `CoseAlg::Rs1` in the parent module for why it is accepted
                    (false, alg::SHA1) => &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
                    (false, alg::SHA256) => &signature::RSA_PKCS1_2048_8192_SHA256,
                    (false, alg::SHA384) => &signature::RSA_PKCS1_2048_8192_SHA384,
                    (false, alg::SHA512) => &signature::RSA_PKCS1_2048_8192_SHA512,
                    (true, alg::SHA256) => &signature::RSA_PSS_2048_8192_SHA256,
                    (true, alg::SHA384) => &signature::RSA_PSS_2048_8192_SHA384,
                    (true, alg::SHA512) => &signature::RSA_PSS_2048_8192_SHA512,
                    (_, h) => {
                        return Err(AttestError::Signature(format!(
                            "hash {} is not supported for rsa",
                            Hex16(h)
                        )));
                    }
                };
                let (n, e) = self.rsa_components()?;
                let e = e.to_be_bytes();
                // ring wants both without leading zeros
                signature::RsaPublicKeyComponents {
                    n,
                    e: strip_zeros(&e),
                }
                .verify(params, message, sig)
                .map_err(|_| bad())
            }
            (TpmKey::Ecc { curve, .. }, TpmSignature::Ecdsa { hash, r, s }) => {
                let (size, alg): (usize, &signature::EcdsaVerificationAlgorithm) =
                    match (*curve, *hash) {
                        (ECC_NIST_P256, alg::SHA256) => (32, &signature::ECDSA_P256_SHA256_FIXED),
                        (ECC_NIST_P384, alg::SHA384) => (48, &signature::ECDSA_P384_SHA384_FIXED),
                        (c, h) => {
                            return Err(AttestError::Signature(format!(
                                "curve {} with hash {} is not supported",
                                Hex16(c),
                                Hex16(h)
                            )));
                        }
                    };
                let point = self.ec_point()?;
                let mut fixed = Vec::with_capacity(2 * size);
                for v in [r, s] {
                    let v = strip_zeros(v);
                    if v.len() > size {
                        return Err(bad());
                    }
                    fixed.resize(fixed.len() + size - v.len(), 0);
                    fixed.extend_from_slice(v);
                }
                signature::UnparsedPublicKey::new(alg, point)
                    .verify(message, &fixed)
                    .map_err(|_| bad())
            }
            _ => Err(AttestError::Signature(
                "the signature scheme does not fit the key type".into(),
            )),
        }
    }

    /// The RSA modulus (no leading zero, `keyBits` long) and exponent (0 read as 65537).
    fn rsa_components(&self) -> Result<(&[u8], u32), AttestError> {
        let TpmKey::Rsa {
            key_bits,
            exponent,
            modulus,
        } = &self.key
        else {
            return Err(AttestError::Key("not an rsa key".into()));
        };
        let bits = usize::from(*key_bits);
        let top_bits = modulus
            .first()
            .map_or(0, |b| 8 * modulus.len() - b.leading_zeros() as usize);
        if top_bits != bits {
            return Err(AttestError::malformed(format!(
                "pubArea: an rsa modulus of {top_bits} bits for keyBits {bits}"
            )));
        }
        Ok((modulus, if *exponent == 0 { 65537 } else { *exponent }))
    }

    /// The uncompressed point (`04 || x || y`, each padded to the field size) of a P-256 or
    /// P-384 key.
    fn ec_point(&self) -> Result<Vec<u8>, AttestError> {
        let TpmKey::Ecc { curve, x, y, .. } = &self.key else {
            return Err(AttestError::Key("not an ecc key".into()));
        };
        let size = match *curve {
            ECC_NIST_P256 => 32,
            ECC_NIST_P384 => 48,
            c => {
                return Err(AttestError::Key(format!(
                    "ecc curve {} is not supported",
                    Hex16(c)
                )));
            }
        };
        let mut point = Vec::with_capacity(1 + 2 * size);
        point.push(4);
        for c in [x, y] {
            if c.is_empty() || c.len() > size {
                return Err(AttestError::malformed(format!(
                    "pubArea: an ecc coordinate of {} bytes for a {size}-byte curve",
                    c.len()
                )));
            }
            point.resize(point.len() + size - c.len(), 0);
            point.extend_from_slice(c);
        }
        Ok(point)
    }
}

/// The `TPM_ALG_ID` hash of `data`, for the hashes ring has.
pub(crate) fn tpm_digest(hash_alg: u16, data: &[u8]) -> Option<ring::digest::Digest> {
    let alg = match hash_alg {
        alg::SHA1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        alg::SHA256 => &ring::digest::SHA256,
        alg::SHA384 => &ring::digest::SHA384,
        alg::SHA512 => &ring::digest::SHA512,
        _ => return None,
    };
    Some(ring::digest::digest(alg, data))
}

/// `SEQUENCE { SEQUENCE { alg, params }, BIT STRING key }`; `params` is the curve OID or NULL.
fn spki(alg_oid: &[u64], curve: Option<&[u64]>, key: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next()
                    .write_oid(&yasna::models::ObjectIdentifier::from_slice(alg_oid));
                match curve {
                    Some(c) => w
                        .next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(c)),
                    None => w.next().write_null(),
                }
            });
            w.next().write_bitvec_bytes(key, key.len() * 8);
        });
    })
}

fn strip_zeros(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| *b != 0).unwrap_or(v.len());
    &v[start..]
}

/// A `TPM_ALG_ID` or other 16-bit selector, shown as `0x000b`.
struct Hex16(u16);

impl fmt::Display for Hex16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}

/// A bounds-checked big-endian reader over one structure.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], AttestError> {
        if n > self.buf.len() {
            return Err(AttestError::malformed(format!(
                "{}: truncated in {field} ({n} bytes wanted, {} left)",
                self.what,
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], AttestError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &str) -> Result<u8, AttestError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &str) -> Result<u16, AttestError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &str) -> Result<u32, AttestError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &str) -> Result<u64, AttestError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A `TPM2B_*`: a 16-bit size and that many bytes.
    fn tpm2b(&mut self, field: &str) -> Result<&'a [u8], AttestError> {
        let n = usize::from(self.u16(field)?);
        self.take(n, field)
    }

    /// `TPMT_SYM_DEF_OBJECT`: the algorithm, and for a cipher its key size and mode.
    fn sym_def_object(&mut self) -> Result<u16, AttestError> {
        let a = self.u16("symmetric")?;
        match a {
            alg::NULL => {}
            alg::AES | alg::SM4 | alg::CAMELLIA => {
                self.u16("symmetric.keyBits")?;
                self.u16("symmetric.mode")?;
            }
            _ => {
                return Err(AttestError::malformed(format!(
                    "{}: symmetric algorithm {} is unknown",
                    self.what,
                    Hex16(a)
                )));
            }
        }
        Ok(a)
    }

    /// A scheme: its algorithm and, for `hashed` ones, the hash; `bare` ones carry nothing.
    fn scheme(
        &mut self,
        field: &str,
        hashed: &[u16],
        bare: &[u16],
    ) -> Result<(u16, Option<u16>), AttestError> {
        let a = self.u16(field)?;
        if a == alg::NULL || bare.contains(&a) {
            Ok((a, None))
        } else if hashed.contains(&a) {
            Ok((a, Some(self.u16(field)?)))
        } else {
            Err(AttestError::malformed(format!(
                "{}: {field} {} is unknown",
                self.what,
                Hex16(a)
            )))
        }
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn finish(self) -> Result<(), AttestError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(AttestError::malformed(format!(
                "{}: {} bytes after the structure",
                self.what,
                self.buf.len()
            )))
        }
    }
}
