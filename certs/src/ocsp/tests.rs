//! Tests of the parent module.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SerialNumber,
};
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use time::macros::datetime;

use super::*;
use crate::signer::{KeyAlgorithm, KeySigner, RcgenKey, generate};

const LEAF_SERIAL: &[u8] = &[0x8a, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07];

fn key() -> KeySigner {
    KeySigner::from_pkcs8(generate(KeyAlgorithm::EcdsaP256).unwrap().as_der()).unwrap()
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Postern Test");
    dn.push(DnType::CommonName, cn);
    dn
}

struct Pki {
    ca_key: KeySigner,
    ca: Vec<u8>,
    responder_key: KeySigner,
    responder: Vec<u8>,
    leaf: Vec<u8>,
}

fn pki() -> Pki {
    let ca_key = key();
    let mut p = CertificateParams::default();
    p.distinguished_name = name("Postern Test CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = datetime!(2024-01-01 0:00 UTC);
    p.not_after = datetime!(2099-01-01 0:00 UTC);
    let ca = p.self_signed(&RcgenKey(&ca_key)).unwrap().der().to_vec();
    let issuer = rcgen::Issuer::from_ca_cert_der(&ca.as_slice().into(), RcgenKey(&ca_key)).unwrap();

    let responder_key = key();
    let mut p = CertificateParams::default();
    p.distinguished_name = name("Postern Test OCSP Responder");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
    p.custom_extensions = vec![CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5],
        vec![0x05, 0x00],
    )];
    p.use_authority_key_identifier_extension = true;
    p.not_before = datetime!(2024-01-01 0:00 UTC);
    p.not_after = datetime!(2098-01-01 0:00 UTC);
    let responder = p
        .signed_by(&RcgenKey(&responder_key), &issuer)
        .unwrap()
        .der()
        .to_vec();

    let leaf_key = key();
    let mut p = CertificateParams::default();
    p.distinguished_name = name("device-1");
    p.serial_number = Some(SerialNumber::from_slice(LEAF_SERIAL));
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    p.not_before = datetime!(2024-01-01 0:00 UTC);
    p.not_after = datetime!(2098-01-01 0:00 UTC);
    let leaf = p
        .signed_by(&RcgenKey(&leaf_key), &issuer)
        .unwrap()
        .der()
        .to_vec();
    Pki {
        ca_key,
        ca,
        responder_key,
        responder,
        leaf,
    }
}

fn cert_id(issuer: &[u8], serial: &[u8], hash_alg: HashAlg) -> CertId {
    let (_, cert) = X509Certificate::from_der(issuer).unwrap();
    CertId {
        hash_alg,
        issuer_name_hash: hash_alg.digest(cert.subject().as_raw()),
        issuer_key_hash: hash_alg.digest(&cert.public_key().subject_public_key.data),
        serial: serial.to_vec(),
    }
}

/// An `OCSPRequest` as a client would send it.
fn request(ids: &[CertId], nonce: Option<&[u8]>, signed: bool) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_sequence(|w| {
                    for id in ids {
                        w.next().write_sequence(|w| write_cert_id(w.next(), id));
                    }
                });
                if let Some(nonce) = nonce {
                    w.next().write_tagged(Tag::context(2), |w| {
                        w.write_sequence(|w| {
                            w.next().write_sequence(|w| {
                                w.next()
                                    .write_oid(&ObjectIdentifier::from_slice(ARCS_NONCE));
                                w.next().write_bytes(nonce);
                            })
                        })
                    });
                }
            });
            if signed {
                w.next().write_tagged(Tag::context(0), |w| {
                    w.write_sequence(|w| {
                        w.next()
                            .write_der(&KeyAlgorithm::EcdsaP256.signature_algorithm_der());
                        w.next().write_bitvec_bytes(&[1, 2, 3], 24);
                    })
                });
            }
        })
    })
}

fn nonce_value(nonce: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| w.write_bytes(nonce))
}

/// What a test reads back out of a response.
#[derive(Debug)]
struct Decoded {
    tbs: Vec<u8>,
    sig_alg: Vec<u8>,
    signature: Vec<u8>,
    certs: Vec<Vec<u8>>,
    responder_key_hash: Vec<u8>,
    produced_at: Vec<u8>,
    singles: Vec<DecodedSingle>,
    nonce: Option<Vec<u8>>,
}

#[derive(Debug)]
struct DecodedSingle {
    cert_id: CertId,
    status_tag: u8,
    status: Vec<u8>,
    this_update: Vec<u8>,
    next_update: Option<Vec<u8>>,
}

fn raw<'a>(r: &mut Reader<'a>, tag: u8) -> &'a [u8] {
    let before = r.rest;
    r.expect(tag, "test").unwrap();
    &before[..before.len() - r.rest.len()]
}

fn decode(der: &[u8]) -> Decoded {
    let mut top = Reader::new(only(der, TAG_SEQUENCE, "ocspresponse").unwrap());
    assert_eq!(top.expect(0x0a, "status").unwrap(), [0]);
    let bytes = only(
        top.expect(ctx(0), "responsebytes").unwrap(),
        TAG_SEQUENCE,
        "rb",
    )
    .unwrap();
    top.finish("ocspresponse").unwrap();
    let mut bytes = Reader::new(bytes);
    assert_eq!(
        bytes.expect(TAG_OID, "type").unwrap(),
        [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01]
    );
    let basic = bytes.expect(TAG_OCTET_STRING, "response").unwrap();
    bytes.finish("responsebytes").unwrap();

    let mut basic = Reader::new(only(basic, TAG_SEQUENCE, "basic").unwrap());
    let tbs_raw = raw(&mut basic, TAG_SEQUENCE);
    let sig_alg = raw(&mut basic, TAG_SEQUENCE).to_vec();
    let sig = basic.expect(0x03, "signature").unwrap();
    assert_eq!(sig[0], 0, "no unused bits");
    let mut certs_r =
        Reader::new(only(basic.expect(ctx(0), "certs").unwrap(), TAG_SEQUENCE, "c").unwrap());
    basic.finish("basic").unwrap();
    let mut certs = Vec::new();
    while !certs_r.is_empty() {
        certs.push(raw(&mut certs_r, TAG_SEQUENCE).to_vec());
    }

    let mut tbs = Reader::new(only(tbs_raw, TAG_SEQUENCE, "tbs").unwrap());
    assert_ne!(tbs.peek(), Some(ctx(0)), "version is left out");
    let responder_key_hash = only(
        tbs.expect(ctx(2), "responderid").unwrap(),
        TAG_OCTET_STRING,
        "keyhash",
    )
    .unwrap()
    .to_vec();
    let produced_at = tbs.expect(0x18, "producedat").unwrap().to_vec();
    let mut list = Reader::new(tbs.expect(TAG_SEQUENCE, "responses").unwrap());
    let nonce = tbs.optional(ctx(1)).unwrap().map(|exts| {
        let exts = read_extensions(exts).unwrap();
        assert_eq!(exts.len(), 1);
        assert_eq!(exts[0].oid, OID_NONCE);
        assert!(!exts[0].critical);
        exts[0].value.to_vec()
    });
    tbs.finish("tbs").unwrap();
    let mut singles = Vec::new();
    while !list.is_empty() {
        let mut s = Reader::new(list.expect(TAG_SEQUENCE, "single").unwrap());
        let cert_id = read_cert_id(s.expect(TAG_SEQUENCE, "certid").unwrap()).unwrap();
        let (status_tag, status) = s.any().unwrap();
        let this_update = s.expect(0x18, "thisupdate").unwrap().to_vec();
        let next_update = s
            .optional(ctx(0))
            .unwrap()
            .map(|t| only(t, 0x18, "nextupdate").unwrap().to_vec());
        s.finish("single").unwrap();
        singles.push(DecodedSingle {
            cert_id,
            status_tag,
            status: status.to_vec(),
            this_update,
            next_update,
        });
    }
    Decoded {
        tbs: tbs_raw.to_vec(),
        sig_alg,
        signature: sig[1..].to_vec(),
        certs,
        responder_key_hash,
        produced_at,
        singles,
        nonce,
    }
}

#[test]
fn responses_parse_back_and_verify() {
    let pki = pki();
    let good = cert_id(&pki.ca, LEAF_SERIAL, HashAlg::Sha1);
    let revoked = cert_id(&pki.ca, &[0x01, 0x00], HashAlg::Sha256);
    let unknown = cert_id(&pki.ca, &[0x7f], HashAlg::Sha512);
    let hold = cert_id(&pki.ca, &[0x02], HashAlg::Sha384);
    let responses = [
        SingleResponse {
            cert_id: good.clone(),
            status: CertStatus::Good,
            this_update: datetime!(2025-05-01 12:00:00.999 UTC),
            next_update: Some(datetime!(2025-05-02 14:00 +02:00)),
        },
        SingleResponse {
            cert_id: revoked.clone(),
            status: CertStatus::Revoked {
                at: datetime!(2025-04-30 08:15:30 UTC),
                reason: Some(RevocationReason::KeyCompromise),
            },
            this_update: datetime!(2025-05-01 12:00 UTC),
            next_update: None,
        },
        SingleResponse {
            cert_id: unknown.clone(),
            status: CertStatus::Unknown,
            this_update: datetime!(2025-05-01 12:00 UTC),
            next_update: None,
        },
        SingleResponse {
            cert_id: hold.clone(),
            status: CertStatus::Revoked {
                at: datetime!(2025-04-30 08:15:30 UTC),
                reason: Some(RevocationReason::Unspecified),
            },
            this_update: datetime!(2025-05-01 12:00 UTC),
            next_update: None,
        },
    ];
    let nonce = nonce_value(&[0x42; 16]);
    let der = build_response(&ResponseParams {
        responder_cert_der: &pki.responder,
        responder_key: &pki.responder_key,
        produced_at: datetime!(2025-05-01 12:00:05.5 UTC),
        responses: &responses,
        nonce: Some(&nonce),
    })
    .unwrap();

    let d = decode(&der);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, pki.responder_key.public_key_raw())
        .verify(&d.tbs, &d.signature)
        .unwrap();
    assert_eq!(d.sig_alg, KeyAlgorithm::EcdsaP256.signature_algorithm_der());
    assert_eq!(d.certs, vec![pki.responder.clone()]);
    assert_eq!(
        d.responder_key_hash,
        HashAlg::Sha1.digest(pki.responder_key.public_key_raw())
    );
    assert_eq!(d.produced_at, b"20250501120005Z");
    assert_eq!(d.nonce.as_deref(), Some(nonce.as_slice()));
    assert_eq!(d.singles.len(), 4);

    assert_eq!(d.singles[0].cert_id, good);
    assert_eq!(d.singles[0].status_tag, 0x80);
    assert!(d.singles[0].status.is_empty());
    assert_eq!(d.singles[0].this_update, b"20250501120000Z");
    assert_eq!(
        d.singles[0].next_update.as_deref(),
        Some(&b"20250502120000Z"[..])
    );

    assert_eq!(d.singles[1].cert_id, revoked);
    assert_eq!(d.singles[1].status_tag, 0xa1);
    let mut info = Reader::new(&d.singles[1].status);
    assert_eq!(
        info.expect(0x18, "revocationtime").unwrap(),
        b"20250430081530Z"
    );
    let reason = info.expect(ctx(0), "reason").unwrap();
    assert_eq!(reason, [0x0a, 0x01, 0x01]);
    info.finish("revokedinfo").unwrap();
    assert_eq!(d.singles[1].next_update, None);

    assert_eq!(d.singles[2].cert_id, unknown);
    assert_eq!(d.singles[2].status_tag, 0x82);
    assert!(d.singles[2].status.is_empty());

    // unspecified: no revocationReason
    assert_eq!(d.singles[3].cert_id, hold);
    assert_eq!(d.singles[3].status_tag, 0xa1);
    assert_eq!(
        only(&d.singles[3].status, 0x18, "revocationtime").unwrap(),
        b"20250430081530Z"
    );

    // the response's ids name the CA, not the responder
    for s in &d.singles {
        assert!(s.cert_id.matches_issuer(&pki.ca));
        assert!(!s.cert_id.matches_issuer(&pki.responder));
    }
}

#[test]
fn ca_signed_response_without_nonce() {
    let pki = pki();
    let responses = [SingleResponse {
        cert_id: cert_id(&pki.ca, LEAF_SERIAL, HashAlg::Sha1),
        status: CertStatus::Good,
        this_update: datetime!(2025-05-01 12:00 UTC),
        next_update: None,
    }];
    let der = build_response(&ResponseParams {
        responder_cert_der: &pki.ca,
        responder_key: &pki.ca_key,
        produced_at: datetime!(2025-05-01 12:00 UTC),
        responses: &responses,
        nonce: None,
    })
    .unwrap();
    let d = decode(&der);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, pki.ca_key.public_key_raw())
        .verify(&d.tbs, &d.signature)
        .unwrap();
    assert_eq!(d.nonce, None);
    assert_eq!(d.certs, vec![pki.ca.clone()]);
}

#[test]
fn build_refusals() {
    let pki = pki();
    let single = SingleResponse {
        cert_id: cert_id(&pki.ca, LEAF_SERIAL, HashAlg::Sha1),
        status: CertStatus::Good,
        this_update: datetime!(2025-05-01 12:00 UTC),
        next_update: None,
    };
    let base = ResponseParams {
        responder_cert_der: &pki.responder,
        responder_key: &pki.responder_key,
        produced_at: datetime!(2025-05-01 12:00 UTC),
        responses: std::slice::from_ref(&single),
        nonce: None,
    };
    assert!(build_response(&base).is_ok());

    let p = ResponseParams {
        responses: &[],
        ..base
    };
    assert!(matches!(build_response(&p), Err(Error::Ca(_))));

    let p = ResponseParams {
        responder_key: &pki.ca_key,
        ..base
    };
    assert!(matches!(build_response(&p), Err(Error::Ca(_))));

    for bad in [&b""[..], &b"\x30\x00"[..], &pki.responder[..10]] {
        let p = ResponseParams {
            responder_cert_der: bad,
            ..base
        };
        assert!(matches!(build_response(&p), Err(Error::Malformed { .. })));
    }

    let mut s = single.clone();
    s.next_update = Some(s.this_update);
    let p = ResponseParams {
        responses: std::slice::from_ref(&s),
        ..base
    };
    assert!(matches!(build_response(&p), Err(Error::Ca(_))));

    let mut s = single.clone();
    s.cert_id.issuer_key_hash.pop();
    let p = ResponseParams {
        responses: std::slice::from_ref(&s),
        ..base
    };
    assert!(matches!(build_response(&p), Err(Error::Ca(_))));

    // times beyond what GeneralizedTime or the UTC conversion can hold: errors, no panic
    for t in [
        datetime!(9999-12-31 23:00 -05:00),
        datetime!(-0001-01-01 0:00 UTC),
    ] {
        let p = ResponseParams {
            produced_at: t,
            ..base
        };
        assert!(matches!(build_response(&p), Err(Error::Ca(_))));
        let mut s = single.clone();
        s.status = CertStatus::Revoked {
            at: t,
            reason: None,
        };
        let p = ResponseParams {
            responses: std::slice::from_ref(&s),
            ..base
        };
        assert!(matches!(build_response(&p), Err(Error::Ca(_))));
    }
}

#[test]
fn serials_encode_as_positive_integers() {
    for (serial, want) in [
        (&[0x80][..], &[0x02, 0x02, 0x00, 0x80][..]),
        (&[0x7f], &[0x02, 0x01, 0x7f]),
        (&[0x00], &[0x02, 0x01, 0x00]),
        (&[0x00, 0x00, 0x01], &[0x02, 0x01, 0x01]),
        (&[], &[0x02, 0x01, 0x00]),
    ] {
        let id = CertId {
            hash_alg: HashAlg::Sha1,
            issuer_name_hash: vec![0; 20],
            issuer_key_hash: vec![0; 20],
            serial: serial.to_vec(),
        };
        let der = yasna::construct_der(|w| write_cert_id(w, &id));
        assert!(der.ends_with(want), "{serial:?}");
    }
    assert_eq!(read_serial(&[0x00, 0x80]).unwrap(), [0x80]);
    assert_eq!(read_serial(&[0x00]).unwrap(), [0x00]);
    assert_eq!(read_serial(&[0x01, 0x00]).unwrap(), [0x01, 0x00]);
    assert!(read_serial(&[0x80]).is_err());
    assert!(read_serial(&[0x00, 0x01]).is_err());
    assert!(read_serial(&[]).is_err());
}

#[test]
fn hash_oids_match_their_arcs() {
    for h in HashAlg::ALL {
        let der =
            yasna::construct_der(|w| w.write_oid(&ObjectIdentifier::from_slice(h.oid_arcs())));
        assert_eq!(&der[2..], h.oid_der());
    }
    let der = yasna::construct_der(|w| w.write_oid(&ObjectIdentifier::from_slice(ARCS_NONCE)));
    assert_eq!(&der[2..], OID_NONCE);
    assert_eq!(oid_string(OID_NONCE), "1.3.6.1.5.5.7.48.1.2");
    assert_eq!(
        oid_string(HashAlg::Sha256.oid_der()),
        "2.16.840.1.101.3.4.2.1"
    );
}

#[test]
fn error_responses() {
    assert_eq!(
        error_response(OcspResponseStatus::MalformedRequest),
        [0x30, 0x03, 0x0a, 0x01, 0x01]
    );
    assert_eq!(
        error_response(OcspResponseStatus::InternalError),
        [0x30, 0x03, 0x0a, 0x01, 0x02]
    );
    assert_eq!(
        error_response(OcspResponseStatus::TryLater),
        [0x30, 0x03, 0x0a, 0x01, 0x03]
    );
    assert_eq!(
        error_response(OcspResponseStatus::SigRequired),
        [0x30, 0x03, 0x0a, 0x01, 0x05]
    );
    assert_eq!(
        error_response(OcspResponseStatus::Unauthorized),
        [0x30, 0x03, 0x0a, 0x01, 0x06]
    );
}

#[test]
fn requests_parse() {
    let pki = pki();
    let ids = [
        cert_id(&pki.ca, LEAF_SERIAL, HashAlg::Sha1),
        cert_id(&pki.ca, &[0x05], HashAlg::Sha256),
    ];
    let nonce = nonce_value(&[7; 32]);
    for signed in [false, true] {
        let req = parse_request(&request(&ids, Some(&nonce), signed)).unwrap();
        assert_eq!(req.cert_ids, ids);
        assert_eq!(req.nonce.as_deref(), Some(nonce.as_slice()));
        assert!(req.cert_ids.iter().all(|id| id.matches_issuer(&pki.ca)));
        assert!(!req.cert_ids[0].matches_issuer(&pki.leaf));
        assert!(!req.cert_ids[0].matches_issuer(b"garbage"));
    }
    let req = parse_request(&request(&ids[..1], None, false)).unwrap();
    assert_eq!(req.nonce, None);

    // sixteen ids are fine, seventeen are not
    let many = vec![ids[0].clone(); 16];
    assert_eq!(
        parse_request(&request(&many, None, false))
            .unwrap()
            .cert_ids
            .len(),
        16
    );
    let too_many = vec![ids[0].clone(); 17];
    assert!(parse_request(&request(&too_many, None, false)).is_err());
}

/// A request with `exts` as requestExtensions (each: oid arcs, critical, value).
fn request_with_extensions(id: &CertId, exts: &[(&[u64], Option<bool>, &[u8])]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_sequence(|w| {
                    w.next().write_sequence(|w| write_cert_id(w.next(), id));
                });
                w.next().write_tagged(Tag::context(2), |w| {
                    w.write_sequence(|w| {
                        for (oid, critical, value) in exts {
                            w.next().write_sequence(|w| {
                                w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                                if let Some(c) = critical {
                                    w.next().write_bool(*c);
                                }
                                w.next().write_bytes(value);
                            })
                        }
                    })
                });
            })
        })
    })
}

#[test]
fn malformed_requests_are_refused() {
    let pki = pki();
    let id = cert_id(&pki.ca, LEAF_SERIAL, HashAlg::Sha1);
    let nonce = nonce_value(&[1; 16]);
    let acceptable: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 4];
    let unknown: &[u64] = &[1, 2, 3, 4];

    let ok = |der: Vec<u8>| parse_request(&der).unwrap();
    let bad = |der: Vec<u8>| {
        assert!(
            matches!(parse_request(&der), Err(Error::Malformed { .. })),
            "{der:02x?}"
        )
    };

    assert_eq!(
        ok(request_with_extensions(
            &id,
            &[(ARCS_NONCE, Some(false), &nonce)]
        ))
        .nonce,
        Some(nonce.clone())
    );
    // a critical nonce is understood
    assert!(
        ok(request_with_extensions(
            &id,
            &[(ARCS_NONCE, Some(true), &nonce)]
        ))
        .nonce
        .is_some()
    );
    // unknown non-critical extensions are ignored
    let r = ok(request_with_extensions(
        &id,
        &[
            (unknown, None, b"x"),
            (acceptable, Some(false), b"\x30\x00"),
        ],
    ));
    assert_eq!(r.nonce, None);
    bad(request_with_extensions(&id, &[(unknown, Some(true), b"x")]));
    bad(request_with_extensions(
        &id,
        &[(acceptable, Some(true), b"\x30\x00")],
    ));
    bad(request_with_extensions(&id, &[(ARCS_NONCE, None, b"")]));
    bad(request_with_extensions(
        &id,
        &[(ARCS_NONCE, None, &[0; 131])],
    ));
    assert!(
        ok(request_with_extensions(
            &id,
            &[(ARCS_NONCE, None, &[0; 130])]
        ))
        .nonce
        .is_some()
    );
    bad(request_with_extensions(
        &id,
        &[(ARCS_NONCE, None, &nonce), (ARCS_NONCE, None, &nonce)],
    ));
    bad(request_with_extensions(&id, &[]));

    // no certificate asked about
    bad(request(&[], None, false));
    // trailing data
    let mut trailing = request(std::slice::from_ref(&id), None, false);
    trailing.push(0);
    bad(trailing);
    // negative serial: flip the leading 0x00 of the positive encoding away
    let req = request(std::slice::from_ref(&id), None, false);
    let at = req.len() - LEAF_SERIAL.len() - 1;
    assert_eq!(req[at], 0x00);
    let mut neg = req.clone();
    neg.remove(at);
    // lengths: integer, certid, request, requestlist, tbsrequest, ocsprequest
    for i in [at - 1, 1, 3, 5, 7] {
        neg[i] -= 1;
    }
    bad(neg);
    // wrong hash length
    let mut short = id.clone();
    short.issuer_key_hash.pop();
    bad(request(&[short], None, false));
    // version other than v1
    let v2 = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_tagged(Tag::context(0), |w| w.write_u8(1));
                w.next().write_sequence(|w| {
                    w.next().write_sequence(|w| write_cert_id(w.next(), &id));
                });
            })
        })
    });
    bad(v2);
    // md5
    let md5 = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_sequence(|w| {
                            w.next().write_sequence(|w| {
                                w.next().write_oid(&ObjectIdentifier::from_slice(&[
                                    1, 2, 840, 113549, 2, 5,
                                ]));
                                w.next().write_null();
                            });
                            w.next().write_bytes(&[0; 16]);
                            w.next().write_bytes(&[0; 16]);
                            w.next().write_u8(1);
                        })
                    });
                });
            })
        })
    });
    bad(md5);
    // indefinite length (BER)
    bad(vec![0x30, 0x80, 0x00, 0x00]);
    // non-minimal length
    let mut long_form = vec![0x30, 0x81];
    long_form.extend_from_slice(&req[1..]);
    bad(long_form);
    // huge declared lengths
    bad(vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff]);
    bad(vec![
        0x30, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
    bad(vec![0x1f, 0xff, 0xff, 0xff, 0x7f, 0x00]);
    bad(Vec::new());
    bad(b"GET / HTTP/1.1\r\n\r\n".to_vec());
    bad(error_response(OcspResponseStatus::MalformedRequest));
}

/// Every prefix and many single-byte changes of `der`: an error or a request, no panic.
fn shake(der: &[u8]) {
    for len in 0..der.len() {
        assert!(parse_request(&der[..len]).is_err(), "prefix of {len} bytes");
    }
    for i in 0..der.len() {
        for v in [0x00, 0x01, 0x05, 0x30, 0x7f, 0x80, 0x81, 0x84, 0xa0, 0xff] {
            let mut changed = der.to_vec();
            changed[i] = v;
            let _ = parse_request(&changed);
        }
        let mut removed = der.to_vec();
        removed.remove(i);
        assert!(parse_request(&removed).is_err());
    }
}

#[test]
fn truncated_and_mangled_requests_never_panic() {
    let pki = pki();
    let ids = [
        cert_id(&pki.ca, LEAF_SERIAL, HashAlg::Sha1),
        cert_id(&pki.ca, &[0x05], HashAlg::Sha256),
    ];
    let nonce = nonce_value(&[9; 16]);
    shake(&request(&ids, Some(&nonce), true));
    shake(&request(&ids[..1], None, false));
}

// ---- interoperability with the openssl command line --------------------------------

fn have_openssl() -> bool {
    if Command::new("openssl").arg("version").output().is_ok() {
        true
    } else {
        crate::peer_missing("openssl not found on PATH; skipping the openssl ocsp check");
        false
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write_pem(p: &Path, der: &[u8]) {
    std::fs::write(p, pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))).unwrap();
}

fn openssl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("openssl").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn openssl_requests_and_responses() {
    if !have_openssl() {
        return;
    }
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = dir.path().join("ca.pem");
    let leaf_pem = dir.path().join("leaf.pem");
    let responder_pem = dir.path().join("responder.pem");
    write_pem(&ca_pem, &pki.ca);
    write_pem(&leaf_pem, &pki.leaf);
    write_pem(&responder_pem, &pki.responder);

    for (digest, hash_alg) in [("-sha1", HashAlg::Sha1), ("-sha256", HashAlg::Sha256)] {
        for with_nonce in [false, true] {
            let req_der = dir.path().join("req.der");
            let mut args = vec![
                "ocsp",
                digest,
                "-issuer",
                path(&ca_pem),
                "-cert",
                path(&leaf_pem),
                "-reqout",
                path(&req_der),
            ];
            if !with_nonce {
                args.push("-no_nonce");
            }
            let (ok, out, err) = openssl(&args);
            assert!(ok, "{out}{err}");
            let req_bytes = std::fs::read(&req_der).unwrap();
            let req = parse_request(&req_bytes).unwrap();
            assert_eq!(req.cert_ids.len(), 1);
            let id = &req.cert_ids[0];
            assert_eq!(id.hash_alg, hash_alg);
            assert_eq!(id.serial, LEAF_SERIAL);
            assert!(id.matches_issuer(&pki.ca));
            assert_eq!(*id, cert_id(&pki.ca, LEAF_SERIAL, hash_alg));
            match &req.nonce {
                Some(n) => {
                    assert!(with_nonce);
                    // openssl: an OCSTET STRING of 16 random octets
                    assert_eq!(n.len(), 18);
                    assert_eq!(&n[..2], [0x04, 0x10]);
                }
                None => assert!(!with_nonce),
            }
            shake(&req_bytes);

            for (status, want) in [
                (CertStatus::Good, "good"),
                (
                    CertStatus::Revoked {
                        at: OffsetDateTime::now_utc() - time::Duration::hours(2),
                        reason: Some(RevocationReason::KeyCompromise),
                    },
                    "revoked",
                ),
                (CertStatus::Unknown, "unknown"),
            ] {
                for delegated in [true, false] {
                    let (cert, key) = if delegated {
                        (&pki.responder, &pki.responder_key)
                    } else {
                        (&pki.ca, &pki.ca_key)
                    };
                    let now = OffsetDateTime::now_utc();
                    let responses = [SingleResponse {
                        cert_id: id.clone(),
                        status,
                        this_update: now - time::Duration::minutes(1),
                        next_update: Some(now + time::Duration::hours(1)),
                    }];
                    let resp = build_response(&ResponseParams {
                        responder_cert_der: cert,
                        responder_key: key,
                        produced_at: now,
                        responses: &responses,
                        nonce: req.nonce.as_deref(),
                    })
                    .unwrap();
                    let resp_der = dir.path().join("resp.der");
                    std::fs::write(&resp_der, &resp).unwrap();

                    // status per certificate, and the signature checked against the CA
                    let (ok, out, err) = openssl(&[
                        "ocsp",
                        digest,
                        "-respin",
                        path(&resp_der),
                        "-issuer",
                        path(&ca_pem),
                        "-CAfile",
                        path(&ca_pem),
                        "-cert",
                        path(&leaf_pem),
                        "-no_nonce",
                    ]);
                    let all = format!("{out}{err}");
                    assert!(ok, "{all}");
                    assert!(all.contains("Response verify OK"), "{all}");
                    assert!(all.contains(&format!("leaf.pem: {want}")), "{all}");
                    if want == "revoked" {
                        assert!(all.contains("Reason: keyCompromise"), "{all}");
                    }

                    // the nonce checked against the very request openssl made
                    let (ok, out, err) = openssl(&[
                        "ocsp",
                        "-reqin",
                        path(&req_der),
                        "-respin",
                        path(&resp_der),
                        "-CAfile",
                        path(&ca_pem),
                        "-resp_text",
                    ]);
                    let all = format!("{out}{err}");
                    assert!(ok, "{all}");
                    assert!(all.contains("Response verify OK"), "{all}");
                    assert!(!all.contains("WARNING"), "{all}");
                    assert!(!all.contains("Nonce Verify error"), "{all}");
                    assert_eq!(all.contains("OCSP Nonce"), with_nonce, "{all}");
                    assert!(all.contains(&format!("Cert Status: {want}")), "{all}");

                    if with_nonce && delegated && want == "good" {
                        // a response echoing another nonce is caught by openssl
                        let other = nonce_value(&[0x5a; 16]);
                        let resp = build_response(&ResponseParams {
                            responder_cert_der: cert,
                            responder_key: key,
                            produced_at: now,
                            responses: &responses,
                            nonce: Some(&other),
                        })
                        .unwrap();
                        std::fs::write(&resp_der, &resp).unwrap();
                        let (_, out, err) = openssl(&[
                            "ocsp",
                            "-reqin",
                            path(&req_der),
                            "-respin",
                            path(&resp_der),
                            "-CAfile",
                            path(&ca_pem),
                        ]);
                        let all = format!("{out}{err}");
                        assert!(all.contains("Nonce Verify error"), "{all}");
                    }
                }
            }
        }
    }
}
