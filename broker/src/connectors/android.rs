//! Google Android Management API: `GET /v1/enterprises/{enterprise}/devices`, paged by
//! `pageToken` / `nextPageToken`; tokens by a service account's JWT bearer grant.

use reqwest::Url;
use serde::Deserialize;

use crate::domain::posture::record::Compliance;

use super::client::{Api, ConnectorError, FailureKind};
use super::sync::{Cursor, Page, VendorDevice, non_empty, parse_time};

/// Where the connector reads.
#[derive(Debug)]
pub struct Android {
    list: Url,
    page_size: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct List {
    #[serde(default)]
    devices: Vec<Device>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Device {
    name: String,
    user_name: Option<String>,
    state: Option<String>,
    applied_state: Option<String>,
    policy_compliant: Option<bool>,
    non_compliance_details: Vec<serde_json::Value>,
    enrollment_time: Option<String>,
    last_status_report_time: Option<String>,
    software_info: SoftwareInfo,
    hardware_info: HardwareInfo,
    network_info: NetworkInfo,
    security_posture: SecurityPosture,
    device_settings: DeviceSettings,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SoftwareInfo {
    android_version: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct HardwareInfo {
    serial_number: Option<String>,
    model: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct NetworkInfo {
    imei: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SecurityPosture {
    device_posture: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DeviceSettings {
    is_encrypted: Option<bool>,
}

impl Android {
    /// Reads `enterprise`'s devices from `api` (its base URL).
    ///
    /// # Errors
    /// When the URL cannot take the path.
    pub fn new(api: &Url, enterprise: &str, page_size: u32) -> Result<Android, String> {
        let ent = enterprise.trim_start_matches("enterprises/");
        let list = api
            .join(&format!("v1/enterprises/{ent}/devices"))
            .map_err(|e| format!("api_url: {e}"))?;
        Ok(Android { list, page_size })
    }

    /// One page.
    ///
    /// # Errors
    /// See [`Api::get_json`].
    pub async fn page(&self, api: &Api, cursor: &Cursor) -> Result<Page, ConnectorError> {
        let mut url = self.list.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("pageSize", &self.page_size.to_string());
            if let Cursor::Next(t) = cursor {
                q.append_pair("pageToken", t);
            }
        }
        let list: List = api
            .get_json(&url, false)
            .await?
            .ok_or_else(|| ConnectorError::new(FailureKind::Http, "enterprise not found"))?;
        Ok(Page {
            devices: list.devices.into_iter().map(device).collect(),
            next: list
                .next_page_token
                .filter(|t| !t.is_empty())
                .map(Cursor::Next),
        })
    }
}

fn device(d: Device) -> VendorDevice {
    let state = d.applied_state.as_deref().or(d.state.as_deref());
    // DELETED is the only state in which the device has left; a disabled or lost device is
    // still managed but must not be trusted
    let enrolled = state != Some("DELETED");
    let held_back = matches!(state, Some("DISABLED" | "LOST"));
    let compliance = match d.policy_compliant {
        _ if held_back => Compliance::NonCompliant,
        Some(true) if d.non_compliance_details.is_empty() => Compliance::Compliant,
        Some(_) => Compliance::NonCompliant,
        None => Compliance::Unknown,
    };
    VendorDevice {
        vendor_id: d.name,
        serial: non_empty(d.hardware_info.serial_number),
        udid: None,
        imei: non_empty(d.network_info.imei),
        platform: Some("android".into()),
        model: non_empty(d.hardware_info.model),
        user: non_empty(d.user_name),
        enrolled,
        enrolled_at: parse_time(d.enrollment_time.as_deref()),
        last_seen: parse_time(d.last_status_report_time.as_deref()),
        compliance,
        os_version: non_empty(d.software_info.android_version),
        storage_encrypted: d.device_settings.is_encrypted,
        // Play Integrity: AT_RISK (e.g. an unlocked bootloader or an uncertified OS) and
        // POTENTIALLY_COMPROMISED both count as compromised; only SECURE is clean
        jailbreak_detected: match d.security_posture.device_posture.as_deref() {
            Some("SECURE") => Some(false),
            Some("AT_RISK" | "POTENTIALLY_COMPROMISED") => Some(true),
            _ => None,
        },
    }
}
