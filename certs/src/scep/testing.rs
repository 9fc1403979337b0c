//! A SCEP client and RA for tests: RSA keys, self-signed certificates, CSRs with a
//! challengePassword, and requests built the way SCEP clients build them. Compiled for this
//! crate's tests and, with the `testing` feature, for other crates' tests and benchmarks.
#![allow(clippy::expect_used)] // test fixtures: a failure here is a broken test setup

use rcgen::{CertificateParams, DnType, KeyPair, KeyUsagePurpose};
use rsa::pkcs8::EncodePrivateKey as _;

use super::der::{MESSAGE_TYPE, SENDER_NONCE, TRANSACTION_ID, tlv};
use super::signed::{attribute, printable, sign};
use super::{ContentEncryption, DigestAlgorithm, MessageType, Ra, RsaKey, enveloped};

/// A fresh RSA key (PKCS#8 DER) of `bits`.
pub fn rsa_pkcs8(bits: usize) -> Vec<u8> {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).expect("rsa keygen");
    key.to_pkcs8_der().expect("pkcs8").as_bytes().to_vec()
}

/// A self-signed certificate for an RSA PKCS#8 key, with the key usages SCEP wants
/// (digitalSignature, keyEncipherment).
pub fn self_signed(pkcs8: &[u8], cn: &str) -> Vec<u8> {
    let kp = KeyPair::try_from(pkcs8).expect("rsa key for rcgen");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.self_signed(&kp).expect("self-signed").der().to_vec()
}

/// A test RA: a 2048-bit RSA key and a self-signed certificate.
pub fn ra(cn: &str) -> Ra {
    let pkcs8 = rsa_pkcs8(2048);
    let cert = self_signed(&pkcs8, cn);
    Ra::new(&pkcs8, cert, Vec::new()).expect("test ra")
}

/// A SCEP client: its RSA key and the self-signed certificate it signs requests with.
#[derive(Debug)]
pub struct Client {
    /// the key, PKCS#8 DER
    pub pkcs8: Vec<u8>,
    /// the key, loaded
    pub key: RsaKey,
    /// the self-signed signer certificate (DER)
    pub cert_der: Vec<u8>,
}

impl Client {
    /// A client with a fresh 2048-bit key and a self-signed certificate named `cn`.
    pub fn generate(cn: &str) -> Client {
        let pkcs8 = rsa_pkcs8(2048);
        let cert_der = self_signed(&pkcs8, cn);
        let key = RsaKey::from_pkcs8(&pkcs8).expect("rsa key");
        Client {
            pkcs8,
            key,
            cert_der,
        }
    }

    /// A PKCS#10 request (DER) for the client's key, subject CN `cn`, with a
    /// challengePassword attribute when `challenge` is given.
    pub fn csr(&self, cn: &str, challenge: Option<&str>) -> Vec<u8> {
        let kp = KeyPair::try_from(self.pkcs8.as_slice()).expect("rsa key for rcgen");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let attrs = challenge
            .map(|c| rcgen::Attribute {
                oid: &[1, 2, 840, 113549, 1, 9, 7],
                values: tlv(0x31, &tlv(0x13, c.as_bytes())),
            })
            .into_iter()
            .collect();
        params
            .serialize_request_with_attributes(&kp, attrs)
            .expect("csr")
            .der()
            .to_vec()
    }
}

/// What a client puts in a request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// PKCSReq, RenewalReq, CertPoll, GetCert or GetCRL
    pub message_type: MessageType,
    /// transactionID
    pub transaction_id: &'a str,
    /// senderNonce
    pub sender_nonce: &'a [u8],
    /// the inner request (CSR, IssuerAndSubject, IssuerAndSerialNumber), DER
    pub inner: &'a [u8],
    /// content encryption
    pub encryption: ContentEncryption,
    /// signature digest
    pub digest: DigestAlgorithm,
}

/// A SCEP `pkiMessage` (DER) as a client sends it: `req.inner` encrypted to `ra_cert_der`,
/// signed by `client` with the SCEP attributes, its certificate included.
pub fn client_request(client: &Client, ra_cert_der: &[u8], req: &Request<'_>) -> Vec<u8> {
    signed_request(
        client,
        &envelope(req.inner, ra_cert_der, req.encryption),
        req,
    )
}

/// `content` as an `EnvelopedData` (DER) to `recipient_cert_der`.
pub fn envelope(content: &[u8], recipient_cert_der: &[u8], alg: ContentEncryption) -> Vec<u8> {
    enveloped::encrypt(content, recipient_cert_der, alg).expect("envelope")
}

/// The SCEP attributes of `req` (messageType, transactionID, senderNonce), each DER.
pub fn attributes(req: &Request<'_>) -> Vec<Vec<u8>> {
    vec![
        attribute(MESSAGE_TYPE, &printable(req.message_type.as_str())),
        attribute(TRANSACTION_ID, &printable(req.transaction_id)),
        attribute(SENDER_NONCE, &tlv(0x04, req.sender_nonce)),
    ]
}

/// A signed request around an `EnvelopedData` the caller made (possibly a defective one).
pub fn signed_request(client: &Client, envelope: &[u8], req: &Request<'_>) -> Vec<u8> {
    signed_with(client, Some(envelope), &attributes(req), req.digest)
}

/// `content` signed by `client` with exactly the SCEP attributes `attrs` (contentType and
/// messageDigest are added).
pub fn signed_with(
    client: &Client,
    content: Option<&[u8]>,
    attrs: &[Vec<u8>],
    digest: DigestAlgorithm,
) -> Vec<u8> {
    sign(
        content,
        attrs,
        std::slice::from_ref(&client.cert_der),
        &client.key,
        &client.cert_der,
        digest,
    )
    .expect("sign request")
}
