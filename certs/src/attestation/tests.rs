use super::*;

fn pid(v: &str) -> Result<DeviceIdentifier, String> {
    DeviceIdentifier::parse(IdentifierKind::PermanentIdentifier, v)
}

#[test]
fn identifier_grammar() {
    assert_eq!(pid("ABCDEF123456").unwrap().value, "ABCDEF123456");
    let with_assigner = pid("ABCDEF123456/1.2.3.4").unwrap();
    assert_eq!(with_assigner.oid.as_deref(), Some("1.2.3.4"));
    assert_eq!(with_assigner.to_order_value(), "ABCDEF123456/1.2.3.4");
    for bad in ["", "/1.2.3", "ABC/", "ABC/1", "ABC/1..2", "ABC/x.y", "A\nB"] {
        assert!(pid(bad).is_err(), "{bad:?}");
    }
    assert!(DeviceIdentifier::parse(IdentifierKind::HardwareModule, "ABCD").is_err());
    assert!(DeviceIdentifier::parse(IdentifierKind::HardwareModule, "ABCD/1.2.3.4").is_ok());
}

fn cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).unwrap();
    out
}

#[test]
fn attestation_object_decoding() {
    let good = Value::Map(vec![
        (Value::Text("fmt".into()), Value::Text("apple".into())),
        (
            Value::Text("attStmt".into()),
            Value::Map(vec![(
                Value::Text("x5c".into()),
                Value::Array(vec![Value::Bytes(vec![1, 2])]),
            )]),
        ),
    ]);
    let bytes = cbor(&good);
    let obj = AttestationObject::decode(&bytes).unwrap();
    assert_eq!(obj.fmt, "apple");
    assert_eq!(obj.x5c().unwrap(), vec![vec![1u8, 2]]);

    // truncated at every length: an error, never a panic
    for n in 0..bytes.len() {
        assert!(
            AttestationObject::decode(&bytes[..n]).is_err(),
            "prefix {n}"
        );
    }
    // trailing bytes
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        AttestationObject::decode(&trailing),
        Err(AttestError::Malformed(m)) if m.contains("after")
    ));
    // not a map, missing members, wrong types
    for v in [
        Value::Array(vec![]),
        Value::Map(vec![(
            Value::Text("fmt".into()),
            Value::Text("apple".into()),
        )]),
        Value::Map(vec![
            (Value::Text("fmt".into()), Value::Integer(1.into())),
            (Value::Text("attStmt".into()), Value::Map(vec![])),
        ]),
    ] {
        assert!(AttestationObject::decode(&cbor(&v)).is_err(), "{v:?}");
    }
    // deep nesting is refused, not a stack overflow
    let mut deep = vec![0x81u8; 10_000];
    deep.push(0x00);
    assert!(AttestationObject::decode(&deep).is_err());
}

#[test]
fn unknown_and_disabled_formats_are_refused() {
    let v = Value::Map(vec![
        (Value::Text("fmt".into()), Value::Text("Apple".into())),
        (Value::Text("attStmt".into()), Value::Map(vec![])),
    ]);
    let id = pid("X").unwrap();
    let ch = Challenge {
        token: "t",
        key_authorization: "t.k",
        identifier: &id,
        now: OffsetDateTime::now_utc(),
    };
    let verifier = Verifier::new(&[Format::Apple]);
    assert!(matches!(
        verifier.verify(&cbor(&v), &ch, None),
        Err(AttestError::Format(f)) if f == "Apple"
    ));
    let tpm_only = Verifier::new(&[Format::Tpm]);
    let apple = Value::Map(vec![
        (Value::Text("fmt".into()), Value::Text("apple".into())),
        (Value::Text("attStmt".into()), Value::Map(vec![])),
    ]);
    assert!(matches!(
        tpm_only.verify(&cbor(&apple), &ch, None),
        Err(AttestError::Format(_))
    ));
}
