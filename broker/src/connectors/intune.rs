//! Microsoft Intune through Microsoft Graph v1.0: `GET /deviceManagement/managedDevices` with
//! `$select`, paged by `@odata.nextLink`; tokens by client credentials for
//! `https://graph.microsoft.com/.default`.

use reqwest::Url;
use serde::Deserialize;

use crate::domain::posture::record::Compliance;

use super::client::{Api, ConnectorError, FailureKind};
use super::sync::{Cursor, Page, VendorDevice, non_empty, parse_time};

/// The fields posture needs.
pub const SELECT: &str = "id,userPrincipalName,operatingSystem,osVersion,complianceState,\
managementState,lastSyncDateTime,enrolledDateTime,isEncrypted,jailBroken,serialNumber,imei,model";

/// The Graph scope.
pub const SCOPE: &str = "https://graph.microsoft.com/.default";

/// Where the connector reads.
#[derive(Debug)]
pub struct Intune {
    /// `{graph}/v1.0/deviceManagement/managedDevices?$select=...`.
    pub first: Url,
}

#[derive(Deserialize)]
struct List {
    value: Vec<ManagedDevice>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManagedDevice {
    id: String,
    #[serde(default)]
    user_principal_name: Option<String>,
    #[serde(default)]
    operating_system: Option<String>,
    #[serde(default)]
    os_version: Option<String>,
    #[serde(default)]
    compliance_state: Option<String>,
    #[serde(default)]
    management_state: Option<String>,
    #[serde(default)]
    last_sync_date_time: Option<String>,
    #[serde(default)]
    enrolled_date_time: Option<String>,
    #[serde(default)]
    is_encrypted: Option<bool>,
    #[serde(default)]
    jail_broken: Option<String>,
    #[serde(default)]
    serial_number: Option<String>,
    #[serde(default)]
    imei: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

impl Intune {
    /// Reads over `graph` (its base URL).
    ///
    /// # Errors
    /// When the URL cannot take the path.
    pub fn new(graph: &Url) -> Result<Intune, String> {
        let mut first = graph
            .join("v1.0/deviceManagement/managedDevices")
            .map_err(|e| format!("graph_url: {e}"))?;
        first.query_pairs_mut().append_pair("$select", SELECT);
        Ok(Intune { first })
    }

    /// One page.
    ///
    /// # Errors
    /// See [`Api::get_json`]; Malformed for a bad `@odata.nextLink`.
    pub async fn page(&self, api: &Api, cursor: &Cursor) -> Result<Page, ConnectorError> {
        let url = match cursor {
            Cursor::Next(u) => Url::parse(u).map_err(|_| {
                ConnectorError::new(FailureKind::Malformed, "@odata.nextLink is not a URL")
            })?,
            _ => self.first.clone(),
        };
        let list: List = api
            .get_json(&url, false)
            .await?
            .ok_or_else(|| ConnectorError::new(FailureKind::Http, "managedDevices not found"))?;
        Ok(Page {
            devices: list.value.into_iter().map(device).collect(),
            next: list.next_link.map(Cursor::Next),
        })
    }
}

fn device(d: ManagedDevice) -> VendorDevice {
    // Intune's managementState: a retire or wipe under way means the device is leaving
    let enrolled = !matches!(
        d.management_state.as_deref(),
        Some("retirePending" | "retireIssued" | "wipePending" | "wipeIssued" | "deletePending")
    );
    VendorDevice {
        vendor_id: d.id,
        serial: non_empty(d.serial_number),
        udid: None,
        imei: non_empty(d.imei),
        platform: d.operating_system.as_deref().map(platform),
        model: non_empty(d.model),
        user: non_empty(d.user_principal_name),
        enrolled,
        enrolled_at: parse_time(d.enrolled_date_time.as_deref()),
        last_seen: parse_time(d.last_sync_date_time.as_deref()),
        compliance: compliance(d.compliance_state.as_deref()),
        os_version: non_empty(d.os_version),
        storage_encrypted: d.is_encrypted,
        jailbreak_detected: match d.jail_broken.as_deref() {
            Some(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Some(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        },
    }
}

/// Intune's `complianceState`. A device in its grace period is not compliant yet: postern
/// is stricter than Conditional Access here, which lets it through until the grace ends.
pub fn compliance(s: Option<&str>) -> Compliance {
    match s {
        Some("compliant") => Compliance::Compliant,
        Some("noncompliant" | "conflict" | "error" | "inGracePeriod") => Compliance::NonCompliant,
        _ => Compliance::Unknown,
    }
}

fn platform(os: &str) -> String {
    match os.to_ascii_lowercase().as_str() {
        "ios" | "ipados" => "ios".into(),
        "macos" | "mac os" | "macmdm" => "macos".into(),
        "android" | "androidforwork" | "androidenterprise" => "android".into(),
        "windows" => "windows".into(),
        "linux" => "linux".into(),
        other => other.chars().filter(|c| !c.is_control()).take(32).collect(),
    }
}
