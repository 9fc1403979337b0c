#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn plist(entries: &str) -> String {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\"><dict>{entries}</dict></plist>"
    );
    STANDARD.encode(xml)
}

fn nano(topic: &str, inner: &str, raw: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "topic": topic, "event_id": "e1", "created_at": "2026-01-02T03:04:05Z",
        inner: { "udid": "UDID-1", "raw_payload": raw, "status": "Acknowledged" },
    }))
    .unwrap()
}

#[test]
fn an_authenticate_names_the_device() {
    let raw = plist(
        "<key>MessageType</key><string>Authenticate</string><key>UDID</key><string>UDID-1</string>\
         <key>SerialNumber</key><string>C02X</string><key>ProductName</key><string>iPhone15,2</string>\
         <key>OSVersion</key><string>18.1</string>",
    );
    let r = apple::parse(&nano("mdm.Authenticate", "checkin_event", &raw)).unwrap();
    assert!(matches!(r.action, Action::Identified));
    assert_eq!(r.device.serial.as_deref(), Some("C02X"));
    assert_eq!(r.device.udid.as_deref(), Some("UDID-1"));
    assert_eq!(r.device.platform.as_deref(), Some("ios"));
    assert_eq!(r.source_event_id.as_deref(), Some("e1"));
}

#[test]
fn malformed_apple_events_say_why() {
    let check = |body: &[u8], want: &str| {
        let e = apple::parse(body).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        assert!(
            e.detail.contains(want),
            "{} does not contain {want}",
            e.detail
        );
    };
    let tu = plist("<key>MessageType</key><string>TokenUpdate</string>");
    check(
        &nano("mdm.Authenticate", "checkin_event", &tu),
        "does not match MessageType",
    );
    check(
        &nano("mdm.TokenUpdate", "checkin_event", "PD94b!!"),
        "raw_payload is not base64",
    );
    check(
        &nano(
            "mdm.TokenUpdate",
            "checkin_event",
            &STANDARD.encode("<plist><dict>"),
        ),
        "raw_payload is not a property list",
    );
    check(b"[]", "not a webhook event");
    check(
        br#"{"topic":"mdm.Connect","created_at":"yesterday","acknowledge_event":{"raw_payload":""}}"#,
        "created_at",
    );
    check(
        br#"{"topic":"mdm.Connect","created_at":"2026-01-01T00:00:00Z"}"#,
        "neither checkin_event nor acknowledge_event",
    );
}

#[test]
fn security_info_decides_compliance() {
    let si = |entries: &str| {
        let xml = format!("<plist version=\"1.0\"><dict>{entries}</dict></plist>");
        plist_dict(xml.as_bytes()).unwrap()
    };
    assert_eq!(security_compliance(&si("")), None);
    assert_eq!(
        security_compliance(&si(
            "<key>PasscodePresent</key><true/><key>PasscodeCompliant</key><true/>"
        )),
        Some(Compliance::Compliant)
    );
    assert_eq!(
        security_compliance(&si(
            "<key>FDE_Enabled</key><true/><key>SystemIntegrityProtectionEnabled</key><false/>"
        )),
        Some(Compliance::NonCompliant)
    );
}

#[test]
fn jamf_and_workspace_one_events_map() {
    let jamf = br#"{"event":{"computer":{"serialNumber":"C02","udid":"U-1","osVersion":"15.1","jssID":13}},
        "webhook":{"eventTimestamp":1730000000000,"id":8,"name":"x","webhookEvent":"ComputerCheckIn"}}"#;
    let r = jamf::parse(jamf).unwrap();
    assert_eq!(r.occurred_at.unix_timestamp(), 1_730_000_000);
    assert_eq!(r.device.platform.as_deref(), Some("macos"));
    assert_eq!(r.device.mdm_id.as_deref(), Some("13"));
    assert!(
        matches!(r.action, Action::CheckedIn(ref c) if c.os_version.as_deref() == Some("15.1"))
    );
    let e = jamf::parse(br#"{"event":{},"webhook":{"webhookEvent":"X"}}"#).unwrap_err();
    assert!(
        e.detail.contains("not a Jamf Pro webhook event"),
        "{}",
        e.detail
    );

    let ws1 = br#"{"EventId":1,"EventType":"Compliance Status Changed","EventTime":"/Date(1368076195887)/",
        "Udid":"U","SerialNumber":"S","ComplianceStatus":"NonCompliant","CompromisedStatus":"Compromised",
        "OperatingSystem":"11.6.1","Platform":"AppleOsX"}"#;
    let r = workspace_one::parse(ws1).unwrap();
    assert_eq!(r.occurred_at.unix_timestamp(), 1_368_076_195);
    match r.action {
        Action::CheckedIn(c) => {
            assert_eq!(c.compliance, Some(Compliance::NonCompliant));
            assert_eq!(c.jailbreak_detected, Some(true));
        }
        other => panic!("{other:?}"),
    }
    let e = workspace_one::parse(br#"{"EventType":"x","EventTime":"soon"}"#).unwrap_err();
    assert!(e.detail.contains("EventTime"), "{}", e.detail);
}
