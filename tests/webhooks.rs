//! MDM webhooks end to end, over HTTPS against a running broker: a NanoMDM webhook is
//! registered, the device's Authenticate registers it, its TokenUpdate enrolls it, and a
//! SecurityInfo report (a check-in with compliance) makes its posture `managed`.

// A failed unwrap in a test or a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use postern_e2e::{ADMIN_TOKEN, Broker};

const SERIAL: &str = "C02E2EWEBHK1";
const UDID: &str = "00006030-E2E0WEBHOOK00001";

/// A NanoMDM webhook body: the device's plist (`entries`) as `raw_payload`.
fn nanomdm(topic: &str, entries: &str, tally: Option<u32>) -> Vec<u8> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\"><dict>{entries}</dict></plist>"
    );
    let mut inner = json!({
        "udid": UDID,
        "ids": {"id": UDID, "type": "Device"},
        "raw_payload": STANDARD.encode(xml),
    });
    if let Some(t) = tally {
        inner["token_update_tally"] = json!(t);
    }
    let (key, inner) = if topic == "mdm.Connect" {
        inner["status"] = json!("Acknowledged");
        ("acknowledge_event", inner)
    } else {
        ("checkin_event", inner)
    };
    serde_json::to_vec(&json!({
        "topic": topic,
        "created_at": OffsetDateTime::now_utc().format(&Rfc3339).unwrap(),
        key: inner,
    }))
    .unwrap()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    STANDARD.encode(ring::hmac::sign(&key, body).as_ref())
}

#[test]
fn a_nanomdm_enrollment_makes_a_managed_device() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(scenario(&broker));
    broker.stop();
}

async fn scenario(broker: &Broker) {
    let http = broker.client().unwrap();
    let created: Value = http
        .post(format!("{}/v1/admin/webhooks", broker.https))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"kind": "nanomdm", "name": "NanoMDM"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let url = format!("{}{}", broker.https, created["path"].as_str().unwrap());

    let deliver = |body: Vec<u8>, secret: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http
                .post(&url)
                .header("content-type", "application/json; charset=utf-8")
                .header("x-hmac-signature", sign(&secret, &body))
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    let (status, r) = deliver(
        nanomdm(
            "mdm.Authenticate",
            &format!(
                "<key>MessageType</key><string>Authenticate</string><key>UDID</key>\
                 <string>{UDID}</string><key>SerialNumber</key><string>{SERIAL}</string>\
                 <key>ProductName</key><string>Mac14,2</string><key>OSVersion</key>\
                 <string>15.5</string>"
            ),
            None,
        ),
        secret.clone(),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["registered"], true);
    let device = r["device_id"].as_str().unwrap().to_owned();
    assert_eq!(r["assurance"], "registered");

    let (status, r) = deliver(
        nanomdm(
            "mdm.TokenUpdate",
            &format!(
                "<key>MessageType</key><string>TokenUpdate</string><key>UDID</key>\
                 <string>{UDID}</string><key>Token</key><data>c3FyHWhjG3tmSA55LFFIQg==</data>"
            ),
            Some(1),
        ),
        secret.clone(),
    )
    .await;
    assert_eq!((status, r["changed"].clone()), (200, json!(true)), "{r}");

    // a wrong signature is refused and changes nothing
    let body = nanomdm(
        "mdm.Connect",
        &format!(
            "<key>UDID</key><string>{UDID}</string><key>Status</key><string>Acknowledged</string>\
             <key>CommandUUID</key><string>sec-1</string><key>SecurityInfo</key><dict>\
             <key>FDE_Enabled</key><true/><key>SystemIntegrityProtectionEnabled</key><true/>\
             </dict>"
        ),
        None,
    );
    let (status, r) = deliver(body.clone(), "whsec_wrong".into()).await;
    assert_eq!(status, 401, "{r}");
    assert_eq!(r["detail"], "X-Hmac-Signature does not verify");

    let (status, r) = deliver(body, secret.clone()).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["assurance"], "managed", "{r}");

    let posture: Value = http
        .get(format!("{}/v1/posture/devices/{device}", broker.https))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(posture["assurance"], "managed", "{posture}");
    assert_eq!(posture["record"]["mdm"]["enrolled"], true);
    assert_eq!(posture["record"]["mdm"]["compliance"], "compliant");
    assert_eq!(posture["record"]["mdm"]["storage_encrypted"], true);
    assert_eq!(posture["record"]["mdm"]["source"], "nanomdm");
}
