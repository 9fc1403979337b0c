//! Jamf Pro API: computers (`GET /api/v1/computers-inventory`) and mobile devices
//! (`GET /api/v2/mobile-devices/detail`), paged by `page` / `page-size`, and each device's
//! conditional-access compliance
//! (`GET /api/v1/conditional-access/device-compliance-information/{computer|mobile}/{id}`).

use reqwest::Url;
use serde::Deserialize;

use crate::domain::posture::record::Compliance;

use super::client::{Api, ConnectorError, FailureKind};
use super::settings::JamfSettings;
use super::sync::{Cursor, Page, VendorDevice, non_empty, parse_time};

/// Where and what the connector reads.
#[derive(Debug)]
pub struct Jamf {
    base: Url,
    computers: bool,
    mobile_devices: bool,
    compliance: bool,
    page_size: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Results<T> {
    #[serde(default)]
    total_count: Option<u64>,
    results: Vec<T>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Computer {
    id: String,
    udid: Option<String>,
    general: ComputerGeneral,
    hardware: Hardware,
    operating_system: ComputerOs,
    user_and_location: UserAndLocation,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ComputerGeneral {
    last_contact_time: Option<String>,
    last_enrolled_date: Option<String>,
    remote_management: Option<RemoteManagement>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RemoteManagement {
    managed: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Hardware {
    serial_number: Option<String>,
    model: Option<String>,
    imei: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ComputerOs {
    version: Option<String>,
    file_vault2_status: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct UserAndLocation {
    username: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Mobile {
    mobile_device_id: String,
    device_type: Option<String>,
    general: MobileGeneral,
    hardware: Hardware,
    security: MobileSecurity,
    user_and_location: UserAndLocation,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct MobileGeneral {
    udid: Option<String>,
    os_version: Option<String>,
    last_inventory_update_date: Option<String>,
    last_enrolled_date: Option<String>,
    managed: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct MobileSecurity {
    data_protected: Option<bool>,
    jail_break_detected: Option<bool>,
}

/// One entry of the device compliance information answer (the vector
/// `api-device-compliance-information.json`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ComplianceInformation {
    #[serde(default)]
    applicable: bool,
    #[serde(default)]
    compliance_state: Option<String>,
}

impl Jamf {
    /// Reads from `base` with `s`'s choices.
    pub fn new(base: Url, s: &JamfSettings) -> Jamf {
        Jamf {
            base,
            computers: s.computers,
            mobile_devices: s.mobile_devices,
            compliance: s.compliance,
            page_size: s.page_size,
        }
    }

    fn url(&self, path: &str, sections: &[&str], page: u32) -> Result<Url, ConnectorError> {
        let mut u = self
            .base
            .join(path)
            .map_err(|e| ConnectorError::new(FailureKind::Config, format!("url: {e}")))?;
        {
            let mut q = u.query_pairs_mut();
            for s in sections {
                q.append_pair("section", s);
            }
            q.append_pair("page", &page.to_string())
                .append_pair("page-size", &self.page_size.to_string())
                .append_pair("sort", "id:asc");
        }
        Ok(u)
    }

    /// One page of computers or mobile devices.
    ///
    /// # Errors
    /// See [`Api::get_json`].
    pub async fn page(&self, api: &Api, cursor: &Cursor) -> Result<Page, ConnectorError> {
        let (mobile, page) = match cursor {
            Cursor::Jamf { mobile, page } => (*mobile, *page),
            _ => (!self.computers, 0),
        };
        let (mut devices, returned, total) = if mobile {
            let url = self.url(
                "api/v2/mobile-devices/detail",
                &["GENERAL", "HARDWARE", "SECURITY", "USER_AND_LOCATION"],
                page,
            )?;
            let r: Results<Mobile> = api.get_json(&url, false).await?.ok_or_else(not_found)?;
            let n = r.results.len();
            (
                r.results.into_iter().map(mobile_device).collect::<Vec<_>>(),
                n,
                r.total_count,
            )
        } else {
            let url = self.url(
                "api/v1/computers-inventory",
                &[
                    "GENERAL",
                    "HARDWARE",
                    "OPERATING_SYSTEM",
                    "USER_AND_LOCATION",
                ],
                page,
            )?;
            let r: Results<Computer> = api.get_json(&url, false).await?.ok_or_else(not_found)?;
            let n = r.results.len();
            (
                r.results.into_iter().map(computer).collect::<Vec<_>>(),
                n,
                r.total_count,
            )
        };
        if self.compliance {
            for d in &mut devices {
                d.compliance = self.compliance_of(api, &d.vendor_id).await?;
            }
        }
        let read = u64::from(page + 1) * u64::from(self.page_size);
        let more =
            returned > 0 && returned == self.page_size as usize && total.is_none_or(|t| read < t);
        let next = if more {
            Some(Cursor::Jamf {
                mobile,
                page: page + 1,
            })
        } else if !mobile && self.mobile_devices {
            Some(Cursor::Jamf {
                mobile: true,
                page: 0,
            })
        } else {
            None
        };
        Ok(Page { devices, next })
    }

    async fn compliance_of(
        &self,
        api: &Api,
        vendor_id: &str,
    ) -> Result<Compliance, ConnectorError> {
        let (kind, id) = vendor_id.split_once('/').unwrap_or(("computer", vendor_id));
        let u = self
            .base
            .join(&format!(
                "api/v1/conditional-access/device-compliance-information/{kind}/{id}"
            ))
            .map_err(|e| ConnectorError::new(FailureKind::Config, format!("url: {e}")))?;
        let Some(list) = api.get_json::<Vec<ComplianceInformation>>(&u, true).await? else {
            return Ok(Compliance::Unknown);
        };
        Ok(list
            .iter()
            .find(|c| c.applicable)
            .map_or(Compliance::Unknown, |c| {
                match c.compliance_state.as_deref() {
                    Some("COMPLIANT") => Compliance::Compliant,
                    Some("NON_COMPLIANT") => Compliance::NonCompliant,
                    _ => Compliance::Unknown,
                }
            }))
    }
}

fn not_found() -> ConnectorError {
    ConnectorError::new(FailureKind::Http, "inventory endpoint not found")
}

fn computer(c: Computer) -> VendorDevice {
    VendorDevice {
        vendor_id: format!("computer/{}", c.id),
        serial: non_empty(c.hardware.serial_number),
        udid: non_empty(c.udid),
        imei: None,
        platform: Some("macos".into()),
        model: non_empty(c.hardware.model),
        user: non_empty(c.user_and_location.username).or(non_empty(c.user_and_location.email)),
        enrolled: c
            .general
            .remote_management
            .and_then(|r| r.managed)
            .unwrap_or(true),
        enrolled_at: parse_time(c.general.last_enrolled_date.as_deref()),
        last_seen: parse_time(c.general.last_contact_time.as_deref()),
        compliance: Compliance::Unknown,
        os_version: non_empty(c.operating_system.version),
        storage_encrypted: match c.operating_system.file_vault2_status.as_deref() {
            Some("ALL_ENCRYPTED" | "BOOT_ENCRYPTED") => Some(true),
            Some("NOT_ENCRYPTED") => Some(false),
            _ => None,
        },
        jailbreak_detected: None,
    }
}

fn mobile_device(m: Mobile) -> VendorDevice {
    VendorDevice {
        vendor_id: format!("mobile/{}", m.mobile_device_id),
        serial: non_empty(m.hardware.serial_number),
        udid: non_empty(m.general.udid),
        imei: non_empty(m.hardware.imei),
        platform: m
            .device_type
            .map(|t| t.to_ascii_lowercase())
            .or(Some("ios".into())),
        model: non_empty(m.hardware.model),
        user: non_empty(m.user_and_location.username).or(non_empty(m.user_and_location.email)),
        enrolled: m.general.managed.unwrap_or(true),
        enrolled_at: parse_time(m.general.last_enrolled_date.as_deref()),
        last_seen: parse_time(m.general.last_inventory_update_date.as_deref()),
        compliance: Compliance::Unknown,
        os_version: non_empty(m.general.os_version),
        storage_encrypted: m.security.data_protected,
        jailbreak_detected: m.security.jail_break_detected,
    }
}
