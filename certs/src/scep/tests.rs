#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::der::{MESSAGE_TYPE, SENDER_NONCE, TRANSACTION_ID, tlv};
use super::signed::{attribute, printable};
use super::testing::{self, Client, Request};
use super::*;

fn ra() -> &'static Ra {
    static RA: OnceLock<Ra> = OnceLock::new();
    RA.get_or_init(|| testing::ra("postern test SCEP RA"))
}

fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| Client::generate("scep client"))
}

fn csr() -> &'static [u8] {
    static CSR: OnceLock<Vec<u8>> = OnceLock::new();
    CSR.get_or_init(|| client().csr("device-0001", Some("one-time-challenge")))
}

const TID: &str = "5B4F1A2C3D4E5F60718293A4B5C6D7E8F9012345";
const NONCE: &[u8] = &[7; 16];

fn request(encryption: ContentEncryption, digest: DigestAlgorithm) -> Request<'static> {
    Request {
        message_type: MessageType::PkcsReq,
        transaction_id: TID,
        sender_nonce: NONCE,
        inner: csr(),
        encryption,
        digest,
    }
}

fn pkcs_req() -> Vec<u8> {
    testing::client_request(
        client(),
        ra().cert_der(),
        &request(ContentEncryption::Aes256Cbc, DigestAlgorithm::Sha256),
    )
}

/// `parse_request` refuses `der` with exactly `want`, and says whom to answer when
/// `reply_known`.
fn check_refused(der: &[u8], want: ScepError, reply_known: bool) {
    let r = parse_request(der, ra()).unwrap_err();
    assert_eq!(r.error, want);
    assert_eq!(r.reply_to.is_some(), reply_known, "{want:?}");
    if let Some(to) = r.reply_to {
        assert_eq!(to.transaction_id, TID);
        assert_eq!(to.recipient_nonce, NONCE);
        assert_eq!(to.recipient_cert_der, client().cert_der);
    }
}

fn vector(rel: &str) -> Option<Vec<u8>> {
    let dir = crate::vectors_dir()?;
    Some(std::fs::read(dir.join("scep").join(rel)).unwrap())
}

fn pem_certs(pem_bytes: &[u8]) -> Vec<Vec<u8>> {
    pem::parse_many(pem_bytes)
        .unwrap()
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
        .collect()
}

fn openssl_available() -> bool {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        true
    } else {
        crate::peer_missing("skipped: openssl is not installed");
        false
    }
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("postern-scep-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(args: &[&str], dir: &Path) -> std::process::Output {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn to_pem(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}

#[test]
fn real_macos_pkcsreq_parses_verifies_and_decrypts() {
    let Some(der) = vector("micromdm/PKCSReq.der") else {
        return;
    };
    if !openssl_available() {
        return;
    }
    // the CA key is a DES-EDE3 encrypted PEM with an empty passphrase: openssl turns it into
    // PKCS#8
    let dir = crate::vectors_dir().unwrap().join("scep/micromdm");
    let out = std::process::Command::new("openssl")
        .args([
            "pkcs8", "-topk8", "-nocrypt", "-passin", "pass:", "-outform", "DER", "-in",
        ])
        .arg(dir.join("testca_ca.key.TESTONLY"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ca_cert = pem_certs(&std::fs::read(dir.join("testca_ca.pem")).unwrap()).remove(0);
    let ra = Ra::new(&out.stdout, ca_cert, Vec::new()).unwrap();
    let m = parse_request(&der, &ra).unwrap();
    assert_eq!(m.message_type, MessageType::PkcsReq);
    assert_eq!(m.transaction_id, "A13090761A30F66664F85D37433D2065E1112BA1");
    assert_eq!(hex(&m.sender_nonce), "ae7fe8816cc6bedd");
    assert_eq!(m.content_encryption, ContentEncryption::DesEde3Cbc);
    assert_eq!(m.digest, DigestAlgorithm::Sha1);
    assert_eq!(
        m.signing_time,
        Some(time::macros::datetime!(2016-05-31 11:30:13 UTC))
    );
    let (_, signer) = X509Certificate::from_der(&m.signer_cert_der).unwrap();
    assert_eq!(signer.subject().to_string(), "CN=MDM SCEP SIGNER, C=US");
    let Inner::Csr(csr) = &m.inner else {
        panic!("not a CSR: {:?}", m.inner)
    };
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(csr).unwrap();
    assert_eq!(
        req.certification_request_info.subject.to_string(),
        "CN=com.apple.security.scep.063D7953-1338-4BF0-8F99-913382996224"
    );
    // the answer goes back to the signer with the request's nonce
    let to = m.reply_to();
    assert_eq!(hex(&to.recipient_nonce), "ae7fe8816cc6bedd");
    // and a message to this RA is not one to another RA
    let other = parse_request(&der, super::tests::ra()).unwrap_err();
    assert_eq!(other.error, ScepError::NotForRecipient);
    assert_eq!(other.fail_info(), FailInfo::BadMessageCheck);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn smallstep_cert_rep_parses() {
    let Some(der) = vector("smallstep-scep/CertRep.der") else {
        return;
    };
    let m = verify_message(&der, &[]).unwrap();
    assert_eq!(m.message_type, MessageType::CertRep);
    assert_eq!(m.pki_status, Some(PkiStatus::Success));
    assert_eq!(m.fail_info, None);
    assert_eq!(m.transaction_id, "A13090761A30F66664F85D37433D2065E1112BA1");
    assert_eq!(
        m.recipient_nonce.as_deref().map(hex).as_deref(),
        Some("ae7fe8816cc6bedd")
    );
    // smallstep's answer carries no senderNonce (RFC 8894 §3.2.1.5 wants one): accepted
    assert_eq!(m.sender_nonce, None);
    assert!(m.content.is_some());
    // its signingTime is a UTCTime with a zone offset (160531073014-0400)
    assert_eq!(
        m.signing_time,
        Some(time::macros::datetime!(2016-05-31 11:30:14 UTC))
    );
    assert_eq!(m.digest, DigestAlgorithm::Sha1);
}

#[test]
fn ndes_cert_rep_verifies_only_with_the_ra_certificate() {
    let Some(der) = vector("smallstep-scep/testca2_CertRep_NoCertificatesForSigners.der") else {
        return;
    };
    let ra_certs = pem_certs(&vector("smallstep-scep/testca2_ca2.pem").unwrap());
    let without = verify_message(&der, &[]).unwrap_err();
    assert_eq!(without.error, ScepError::SignerNotFound);
    assert_eq!(without.fail_info(), FailInfo::BadMessageCheck);
    let m = verify_message(&der, &ra_certs).unwrap();
    assert_eq!(m.message_type, MessageType::CertRep);
    assert_eq!(m.pki_status, Some(PkiStatus::Success));
    assert_eq!(m.signer_cert_der, ra_certs[0]);
    // a certificate that is not the signer's does not help
    let other = verify_message(&der, std::slice::from_ref(&client().cert_der)).unwrap_err();
    assert_eq!(other.error, ScepError::SignerNotFound);
}

#[test]
fn round_trip_every_algorithm() {
    let issued = vec![client().cert_der.clone(), ra().cert_der().to_vec()];
    for encryption in [
        ContentEncryption::Aes128Cbc,
        ContentEncryption::Aes192Cbc,
        ContentEncryption::Aes256Cbc,
        ContentEncryption::DesEde3Cbc,
        ContentEncryption::DesCbc,
    ] {
        for digest in [
            DigestAlgorithm::Sha1,
            DigestAlgorithm::Sha256,
            DigestAlgorithm::Sha512,
        ] {
            let der =
                testing::client_request(client(), ra().cert_der(), &request(encryption, digest));
            let m = parse_request(&der, ra()).unwrap();
            assert_eq!(m.message_type, MessageType::PkcsReq);
            assert_eq!(m.transaction_id, TID);
            assert_eq!(m.sender_nonce, NONCE);
            assert_eq!(m.signer_cert_der, client().cert_der);
            assert_eq!(m.inner, Inner::Csr(csr().to_vec()));
            assert_eq!(m.content_encryption, encryption);
            assert_eq!(m.digest, digest);
            // the CSR is one the CSR checks accept, challengePassword included
            crate::csr::parse(csr()).unwrap();

            let reply_options = ReplyOptions {
                digest,
                encryption: if encryption == ContentEncryption::DesCbc {
                    ContentEncryption::Aes256Cbc
                } else {
                    encryption
                },
            };
            let server_nonce = [9u8; 16];
            let rep = cert_rep(
                &m.reply_to(),
                Reply::Success {
                    certificates: &issued,
                    crls: &[],
                },
                ra(),
                &server_nonce,
                reply_options,
            )
            .unwrap();
            let got = open_cert_rep(&rep, &[], &client().cert_der, &client().key).unwrap();
            assert_eq!(got.pki_status, PkiStatus::Success);
            assert_eq!(got.transaction_id, TID);
            assert_eq!(got.recipient_nonce.as_deref(), Some(NONCE));
            assert_eq!(got.sender_nonce.as_deref(), Some(&server_nonce[..]));
            assert_eq!(got.signer_cert_der, ra().cert_der());
            assert_eq!(got.digest, digest);
            assert_eq!(got.content_encryption, Some(reply_options.encryption));
            assert_eq!(got.certificates, issued);
        }
    }
}

#[test]
fn failure_and_pending_answers() {
    let m = parse_request(&pkcs_req(), ra()).unwrap();
    for info in [
        FailInfo::BadAlg,
        FailInfo::BadMessageCheck,
        FailInfo::BadRequest,
        FailInfo::BadTime,
        FailInfo::BadCertId,
    ] {
        let rep = cert_rep(
            &m.reply_to(),
            Reply::Failure(info),
            ra(),
            &[1; 16],
            ReplyOptions::default(),
        )
        .unwrap();
        let got = open_cert_rep(&rep, &[], &client().cert_der, &client().key).unwrap();
        assert_eq!(got.pki_status, PkiStatus::Failure);
        assert_eq!(got.fail_info, Some(info));
        assert!(got.certificates.is_empty());
    }
    let rep = cert_rep(
        &m.reply_to(),
        Reply::Pending,
        ra(),
        &[1; 16],
        ReplyOptions::default(),
    )
    .unwrap();
    let got = open_cert_rep(&rep, &[], &client().cert_der, &client().key).unwrap();
    assert_eq!(got.pki_status, PkiStatus::Pending);
    assert_eq!(got.fail_info, None);
    // single DES is never used for an answer
    let opts = ReplyOptions {
        encryption: ContentEncryption::DesCbc,
        ..ReplyOptions::default()
    };
    assert!(matches!(
        cert_rep(&m.reply_to(), Reply::Pending, ra(), &[1; 16], opts),
        Err(crate::Error::Internal(_))
    ));
    // a CertRep sent to the server is refused
    let r = parse_request(&rep, ra()).unwrap_err();
    assert_eq!(r.error, ScepError::UnknownMessageType("3".into()));
    assert_eq!(r.fail_info(), FailInfo::BadRequest);
}

#[test]
fn poll_get_cert_and_get_crl_inner_requests() {
    let (_, ra_cert) = X509Certificate::from_der(ra().cert_der()).unwrap();
    let issuer = ra_cert.tbs_certificate.issuer.as_raw().to_vec();
    let subject = ra_cert.tbs_certificate.subject.as_raw().to_vec();
    let and_subject = tlv(0x30, &[issuer.clone(), subject.clone()].concat());
    let and_serial = tlv(0x30, &[issuer.clone(), tlv(0x02, &[0x01, 0x02])].concat());
    for (t, inner, want) in [
        (
            MessageType::CertPoll,
            &and_subject,
            Inner::IssuerAndSubject {
                issuer: issuer.clone(),
                subject,
            },
        ),
        (
            MessageType::GetCert,
            &and_serial,
            Inner::IssuerAndSerial {
                issuer: issuer.clone(),
                serial: vec![1, 2],
            },
        ),
        (
            MessageType::GetCrl,
            &and_serial,
            Inner::IssuerAndSerial {
                issuer: issuer.clone(),
                serial: vec![1, 2],
            },
        ),
    ] {
        let req = Request {
            message_type: t,
            inner,
            ..request(ContentEncryption::Aes128Cbc, DigestAlgorithm::Sha256)
        };
        let m = parse_request(
            &testing::client_request(client(), ra().cert_der(), &req),
            ra(),
        )
        .unwrap();
        assert_eq!(m.message_type, t);
        assert_eq!(m.inner, want);
    }
    // a CSR where an IssuerAndSerial belongs, and garbage where a CSR belongs
    for (t, inner) in [
        (MessageType::GetCert, csr()),
        (MessageType::PkcsReq, &b"not a csr"[..]),
        (MessageType::RenewalReq, &and_serial[..]),
    ] {
        let req = Request {
            message_type: t,
            inner,
            ..request(ContentEncryption::Aes128Cbc, DigestAlgorithm::Sha256)
        };
        let r = parse_request(
            &testing::client_request(client(), ra().cert_der(), &req),
            ra(),
        )
        .unwrap_err();
        assert!(
            matches!(r.error, ScepError::InnerRequest(_)),
            "{t:?}: {r:?}"
        );
        assert_eq!(r.fail_info(), FailInfo::BadRequest);
        assert!(r.reply_to.is_some());
    }
}

#[test]
fn every_truncation_is_refused_without_panic() {
    let der = pkcs_req();
    for n in 0..der.len() {
        check_refused(&der[..n], ScepError::Malformed("signed data"), false);
    }
    // trailing bytes are refused too
    let mut long = der.clone();
    long.push(0);
    check_refused(&long, ScepError::Malformed("signed data"), false);
    if let Some(real) = vector("micromdm/PKCSReq.der") {
        for n in 0..real.len() {
            let r = parse_request(&real[..n], ra()).unwrap_err();
            assert_eq!(r.error, ScepError::Malformed("signed data"));
        }
    }
}

#[test]
fn malformed_messages() {
    for (der, what) in [
        (&b""[..], "signed data"),
        (&b"\x30\x03\x02\x01\x01"[..], "signed data"),
        (&[0xff; 64][..], "signed data"),
    ] {
        check_refused(der, ScepError::Malformed(what), false);
    }
    // an EnvelopedData where the SignedData belongs
    let env = testing::envelope(csr(), ra().cert_der(), ContentEncryption::Aes128Cbc);
    check_refused(&env, ScepError::Malformed("signed data"), false);
    // a certs-only SignedData has no signer
    check_refused(
        &certs_only(&[client().cert_der.clone()], &[]),
        ScepError::Malformed("signed data: not exactly one signer"),
        false,
    );
}

#[test]
fn missing_and_bad_attributes() {
    let env = testing::envelope(csr(), ra().cert_der(), ContentEncryption::Aes256Cbc);
    let mt = attribute(MESSAGE_TYPE, &printable("19"));
    let tid = attribute(TRANSACTION_ID, &printable(TID));
    let nonce = attribute(SENDER_NONCE, &tlv(0x04, NONCE));
    let sign = |attrs: &[Vec<u8>]| {
        testing::signed_with(client(), Some(&env), attrs, DigestAlgorithm::Sha256)
    };
    check_refused(
        &sign(&[tid.clone(), nonce.clone()]),
        ScepError::MissingAttribute("messageType"),
        false,
    );
    check_refused(
        &sign(&[mt.clone(), nonce.clone()]),
        ScepError::MissingAttribute("transactionID"),
        false,
    );
    let r = parse_request(&sign(&[mt.clone(), tid.clone()]), ra()).unwrap_err();
    assert_eq!(r.error, ScepError::MissingAttribute("senderNonce"));
    let to = r.reply_to.unwrap();
    assert_eq!(to.transaction_id, TID);
    assert!(to.recipient_nonce.is_empty());
    check_refused(
        &sign(&[
            attribute(MESSAGE_TYPE, &printable("99")),
            tid.clone(),
            nonce.clone(),
        ]),
        ScepError::UnknownMessageType("99".into()),
        false,
    );
    // a nonce that is not an OCTET STRING, a transactionID that is not a string
    check_refused(
        &sign(&[
            mt.clone(),
            tid.clone(),
            attribute(SENDER_NONCE, &printable("x")),
        ]),
        ScepError::BadAttribute("senderNonce"),
        false,
    );
    check_refused(
        &sign(&[
            mt.clone(),
            attribute(TRANSACTION_ID, &tlv(0x04, b"x")),
            nonce.clone(),
        ]),
        ScepError::BadAttribute("transactionID"),
        false,
    );
    // twice the same attribute
    check_refused(
        &sign(&[mt.clone(), mt.clone(), tid.clone(), nonce.clone()]),
        ScepError::BadAttribute("messageType"),
        false,
    );
    for e in [
        ScepError::MissingAttribute("senderNonce"),
        ScepError::BadAttribute("x"),
        ScepError::UnknownMessageType("99".into()),
    ] {
        assert_eq!(e.fail_info(), FailInfo::BadRequest);
    }
}

fn flip(der: &[u8], pos: usize) -> Vec<u8> {
    let mut bad = der.to_vec();
    bad[pos] ^= 0x01;
    bad
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn wrongly_signed_messages() {
    let der = pkcs_req();
    // the signature is the message's last element
    check_refused(&flip(&der, der.len() - 1), ScepError::Signature, true);
    // a signed attribute: the transactionID's last character
    let pos = find(&der, TID.as_bytes()) + TID.len() - 1;
    let r = parse_request(&flip(&der, pos), ra()).unwrap_err();
    assert_eq!(r.error, ScepError::Signature);
    assert_eq!(r.fail_info(), FailInfo::BadMessageCheck);
    // the nonce
    let pos = find(&der, NONCE);
    let r = parse_request(&flip(&der, pos), ra()).unwrap_err();
    assert_eq!(r.error, ScepError::Signature);
    // the content (the encrypted request): its digest no longer matches
    let env = testing::envelope(csr(), ra().cert_der(), ContentEncryption::Aes256Cbc);
    let signed = testing::signed_request(
        client(),
        &env,
        &request(ContentEncryption::Aes256Cbc, DigestAlgorithm::Sha256),
    );
    let pos = find(&signed, &env[env.len() - 40..]);
    check_refused(&flip(&signed, pos), ScepError::DigestMismatch, true);
    // a digest algorithm postern does not do (SHA-224 in place of SHA-256)
    let sha256 = [
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
    ];
    let mut bad = der.clone();
    while let Some(p) = bad.windows(sha256.len()).position(|w| w == sha256) {
        bad[p + sha256.len() - 1] = 0x04;
    }
    let r = parse_request(&bad, ra()).unwrap_err();
    assert_eq!(
        r.error,
        ScepError::UnsupportedAlgorithm {
            what: "digest",
            oid: "2.16.840.1.101.3.4.2.4".into()
        }
    );
    assert_eq!(r.fail_info(), FailInfo::BadAlg);
    assert!(r.reply_to.is_some());
    // the signer's certificate altered (its serial): no certificate matches the signer
    // identifier any more
    let (_, cert) = X509Certificate::from_der(&client().cert_der).unwrap();
    let serial = cert.tbs_certificate.raw_serial();
    let pos = find(&der, serial) + serial.len() - 1;
    check_refused(&flip(&der, pos), ScepError::SignerNotFound, false);
    // a message signed by another key than its certificate's
    let other = Client::generate("other");
    let impostor = Client {
        pkcs8: other.pkcs8.clone(),
        key: RsaKey::from_pkcs8(&other.pkcs8).unwrap(),
        cert_der: client().cert_der.clone(),
    };
    let forged = testing::client_request(
        &impostor,
        ra().cert_der(),
        &request(ContentEncryption::Aes256Cbc, DigestAlgorithm::Sha256),
    );
    check_refused(&forged, ScepError::Signature, true);
}

#[test]
fn wrongly_encrypted_messages() {
    let req = request(ContentEncryption::Aes256Cbc, DigestAlgorithm::Sha256);
    // encrypted to another RA
    let other = testing::ra("another RA");
    let der = testing::client_request(client(), other.cert_der(), &req);
    check_refused(&der, ScepError::NotForRecipient, true);
    assert_eq!(
        ScepError::NotForRecipient.fail_info(),
        FailInfo::BadMessageCheck
    );
    // bad PKCS#7 padding: the last byte of the next-to-last block XORed with the padding
    // value turns the last plaintext byte into 0, which no padding ends with
    let mut env = testing::envelope(csr(), ra().cert_der(), ContentEncryption::Aes256Cbc);
    let pad = 16 - (csr().len() % 16);
    let n = env.len();
    env[n - 17] ^= pad as u8;
    check_refused(
        &testing::signed_request(client(), &env, &req),
        ScepError::Decrypt,
        true,
    );
    let env = testing::envelope(csr(), ra().cert_der(), ContentEncryption::Aes256Cbc);
    let aes256 = [
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a,
    ];
    let p = find(&env, &aes256);
    // unknown content-encryption OID: aes256-GCM in place of aes256-CBC
    let mut gcm = env.clone();
    gcm[p + aes256.len() - 1] = 0x2e;
    let r = parse_request(&testing::signed_request(client(), &gcm, &req), ra()).unwrap_err();
    assert_eq!(
        r.error,
        ScepError::UnsupportedAlgorithm {
            what: "content-encryption",
            oid: "2.16.840.1.101.3.4.1.46".into()
        }
    );
    assert_eq!(r.fail_info(), FailInfo::BadAlg);
    // aes128-CBC named with a 256-bit key: the key-length check fails like a bad key
    let mut short = env.clone();
    short[p + aes256.len() - 1] = 0x02;
    check_refused(
        &testing::signed_request(client(), &short, &req),
        ScepError::Decrypt,
        true,
    );
    // truncated envelopes inside a valid signature
    for cut in [1, 17, env.len() / 2] {
        let mut bad = env[..env.len() - cut].to_vec();
        bad[0] = 0x30;
        let r = parse_request(&testing::signed_request(client(), &bad, &req), ra()).unwrap_err();
        assert_eq!(r.error, ScepError::Malformed("enveloped data"));
        assert_eq!(r.fail_info(), FailInfo::BadMessageCheck);
    }
}

#[test]
fn every_flipped_byte_is_handled_without_panic() {
    let req = request(ContentEncryption::Aes256Cbc, DigestAlgorithm::Sha256);
    let env = testing::envelope(csr(), ra().cert_der(), ContentEncryption::Aes256Cbc);
    let der = testing::signed_request(client(), &env, &req);
    let content = find(&der, &env);
    let mut refused = 0;
    for pos in 0..der.len() {
        let r = parse_request(&flip(&der, pos), ra());
        if (content..content + env.len()).contains(&pos) {
            assert!(r.is_err(), "a flip at {pos} in the content went through");
        }
        refused += usize::from(r.is_err());
    }
    // what is not covered by the signature may change without consequence: versions, the
    // digestAlgorithms SET, algorithm parameters, the signer certificate's subject, validity
    // and own signature
    assert!(refused > der.len() * 8 / 10, "{refused} of {}", der.len());
}

#[test]
fn get_crl_answer_carries_the_crl() {
    let crl = tlv(0x30, &tlv(0x04, b"a CRL is not parsed here"));
    let der = certs_only(&[], std::slice::from_ref(&crl));
    let sd = super::signed::parse_signed_data(&der).unwrap();
    assert!(sd.certificates.is_empty());
    assert_eq!(sd.crls, vec![crl.clone()]);
    let m = parse_request(&pkcs_req(), ra()).unwrap();
    let rep = cert_rep(
        &m.reply_to(),
        Reply::Success {
            certificates: &[],
            crls: std::slice::from_ref(&crl),
        },
        ra(),
        &[5; 16],
        ReplyOptions::default(),
    )
    .unwrap();
    let got = open_cert_rep(&rep, &[], &client().cert_der, &client().key).unwrap();
    assert_eq!(got.crls, vec![crl]);
}

#[test]
fn certs_only_reads_back_in_order() {
    let certs = vec![client().cert_der.clone(), ra().cert_der().to_vec()];
    let der = certs_only(&certs, &[]);
    let sd = super::signed::parse_signed_data(&der).unwrap();
    assert_eq!(sd.certificates, certs);
    assert!(sd.signer_infos.is_empty());
    let ca = ra().ca_certs();
    let sd = super::signed::parse_signed_data(&ca).unwrap();
    assert_eq!(sd.certificates, vec![ra().cert_der().to_vec()]);
}

#[test]
fn ra_key_and_certificate_must_match() {
    let other = testing::rsa_pkcs8(2048);
    let e = Ra::new(&other, ra().cert_der().to_vec(), Vec::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "key: unsupported or malformed key: the RA certificate certifies another key"
    );
    assert!(Ra::new(b"not a key", ra().cert_der().to_vec(), Vec::new()).is_err());
}

#[test]
fn openssl_reads_what_postern_writes() {
    if !openssl_available() {
        return;
    }
    let s = Scratch::new("interop");
    let ra_key = testing::rsa_pkcs8(2048);
    let ra_cert = testing::self_signed(&ra_key, "interop RA");
    let ra = Ra::new(&ra_key, ra_cert.clone(), Vec::new()).unwrap();
    std::fs::write(s.path("ra.pem"), to_pem("CERTIFICATE", &ra_cert)).unwrap();
    std::fs::write(s.path("ra.key"), to_pem("PRIVATE KEY", &ra_key)).unwrap();
    std::fs::write(
        s.path("client.pem"),
        to_pem("CERTIFICATE", &client().cert_der),
    )
    .unwrap();
    std::fs::write(s.path("client.key"), to_pem("PRIVATE KEY", &client().pkcs8)).unwrap();

    // a request as the client builds it: openssl verifies it and decrypts it with the RA key
    let req = testing::client_request(
        client(),
        &ra_cert,
        &request(ContentEncryption::Aes256Cbc, DigestAlgorithm::Sha256),
    );
    std::fs::write(s.path("req.der"), &req).unwrap();
    openssl(
        &[
            "cms",
            "-verify",
            "-noverify",
            "-inform",
            "DER",
            "-in",
            "req.der",
            "-out",
            "req.env",
        ],
        &s.0,
    );
    openssl(
        &[
            "cms", "-decrypt", "-inform", "DER", "-in", "req.env", "-recip", "ra.pem", "-inkey",
            "ra.key", "-out", "req.csr",
        ],
        &s.0,
    );
    assert_eq!(std::fs::read(s.path("req.csr")).unwrap(), csr());

    // the CertRep: openssl verifies the RA signature and the client decrypts the certificates
    let m = parse_request(&req, &ra).unwrap();
    let issued = vec![client().cert_der.clone()];
    let rep = cert_rep(
        &m.reply_to(),
        Reply::Success {
            certificates: &issued,
            crls: &[],
        },
        &ra,
        &[3; 16],
        ReplyOptions::default(),
    )
    .unwrap();
    std::fs::write(s.path("rep.der"), &rep).unwrap();
    openssl(
        &[
            "cms",
            "-verify",
            "-noverify",
            "-inform",
            "DER",
            "-in",
            "rep.der",
            "-out",
            "rep.env",
        ],
        &s.0,
    );
    openssl(
        &[
            "cms",
            "-decrypt",
            "-inform",
            "DER",
            "-in",
            "rep.env",
            "-recip",
            "client.pem",
            "-inkey",
            "client.key",
            "-out",
            "rep.p7",
        ],
        &s.0,
    );
    let out = openssl(
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            "rep.p7",
            "-print_certs",
            "-noout",
        ],
        &s.0,
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("subject=CN = scep client"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // GetCACert's certs-only PKCS#7
    std::fs::write(s.path("ca.p7"), ra.ca_certs()).unwrap();
    let out = openssl(
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            "ca.p7",
            "-print_certs",
            "-noout",
        ],
        &s.0,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("subject=CN = interop RA"));

    // and what openssl encrypts, postern decrypts (AES-128 and 3DES)
    std::fs::write(s.path("plain.der"), csr()).unwrap();
    for (flag, want) in [
        ("-aes128", ContentEncryption::Aes128Cbc),
        ("-des3", ContentEncryption::DesEde3Cbc),
    ] {
        openssl(
            &[
                "cms",
                "-encrypt",
                "-binary",
                flag,
                "-outform",
                "DER",
                "-in",
                "plain.der",
                "-out",
                "enc.der",
                "ra.pem",
            ],
            &s.0,
        );
        let enc = std::fs::read(s.path("enc.der")).unwrap();
        let (plain, alg) = super::enveloped::decrypt(&enc, &ra_cert, &ra.key).unwrap();
        assert_eq!(plain, csr());
        assert_eq!(alg, want);
    }
}

#[test]
fn huge_lengths_are_malformed_not_a_panic() {
    // yasna 0.5 adds a skipped element's length to its position unchecked: lengths that do
    // not fit the input must never reach it
    let mut huge = vec![0x30, 0x88];
    huge.extend([0xff; 8]);
    assert_eq!(super::der::parse_ber(&huge, |r| r.read_der()), None);
    let mut nested = vec![0x30, 0x80, 0x31, 0x80, 0x04, 0x88];
    nested.extend([0xff; 8]);
    nested.extend([0, 0, 0, 0]);
    assert_eq!(super::der::parse_ber(&nested, |r| r.read_der()), None);
    check_refused(&huge, ScepError::Malformed("signed data"), false);
    // inside a signed request: the signer infos' SET holds an element with a huge length
    let der = pkcs_req();
    let tail = [
        0x31, 0x0c, 0x30, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
    ];
    let mut bad = der[..der.len() - 2].to_vec();
    bad.extend(tail);
    check_refused(&bad, ScepError::Malformed("signed data"), false);
    // deep nesting stops at the depth limit
    let mut deep = Vec::new();
    for _ in 0..10_000 {
        deep.extend([0x30, 0x80]);
    }
    deep.extend(std::iter::repeat_n(0, 20_000));
    check_refused(&deep, ScepError::Malformed("signed data"), false);
    // well-formed BER with indefinite lengths passes the guard
    let ber = [
        0x30, 0x80, 0x04, 0x01, 0x41, 0x24, 0x80, 0x04, 0x01, 0x42, 0x00, 0x00, 0x00, 0x00,
    ];
    assert!(super::der::parse_ber(&ber, |r| r.read_der()).is_some());
}
