//! The device inventory: which devices a tenant owns, by serial, UDID, IMEI or hardware id.
//! ACME `device-attest-01` issues only to devices found here; the MDM integration fills the
//! same inventory. A device keeps its last verified attestation and the serials of its
//! certificates.
//!
//! **Architecture Invariant:** within a tenant an identifier names at most one device (an index
//! document per identifier, written in the same transaction as the device).

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::{Device, DeviceAttestation, Role};
use crate::store::{DocKind, DocTxn, StoreError};

use super::error::{DomainError, DomainResult, ErrorKind};
use super::tenancy::random_bytes;
use super::{Domain, Principal};

/// A device to register.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// The tenant (operators may name another).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Hardware serial number.
    #[serde(default)]
    pub serial: Option<String>,
    /// Apple UDID (a Mac's ProvisioningUDID).
    #[serde(default)]
    pub udid: Option<String>,
    /// IMEI.
    #[serde(default)]
    pub imei: Option<String>,
    /// Further permanent identifiers.
    #[serde(default)]
    pub hardware_ids: Vec<String>,
    /// Platform (`ios`, `macos`, `android`, `windows`, `linux`).
    #[serde(default)]
    pub platform: Option<String>,
    /// Model name.
    #[serde(default)]
    pub model: Option<String>,
    /// The user it belongs to.
    #[serde(default)]
    pub user: Option<String>,
}

fn check_identifier(what: &str, v: &str) -> DomainResult<()> {
    if v.is_empty() || v.len() > 128 || v.contains('/') || v.chars().any(char::is_control) {
        return Err(DomainError::new(
            ErrorKind::Malformed,
            format!("{what} must be 1 to 128 characters, without '/' or control characters"),
        ));
    }
    Ok(())
}

fn check_text(what: &str, v: Option<&str>) -> DomainResult<()> {
    match v {
        Some(t) if t.len() > 256 || t.chars().any(char::is_control) => Err(DomainError::new(
            ErrorKind::Malformed,
            format!("{what} must be at most 256 characters, without control characters"),
        )),
        _ => Ok(()),
    }
}

fn index_id(tenant: &str, identifier: &str) -> String {
    format!("{tenant}/{identifier}")
}

fn doc_id(tenant: &str, id: &str) -> String {
    format!("{tenant}/{id}")
}

fn decode(bytes: &[u8]) -> DomainResult<Device> {
    serde_json::from_slice(bytes).map_err(|e| DomainError::internal(format!("device record: {e}")))
}

fn encode(d: &Device) -> DomainResult<Vec<u8>> {
    serde_json::to_vec(d).map_err(DomainError::internal)
}

impl Domain {
    /// Registers a device (admin or MDM token).
    ///
    /// # Errors
    /// Forbidden (role, tenant), NotFound (tenant), Malformed (no identifier, bad values),
    /// Conflict (an identifier already names a device of the tenant).
    pub async fn register_device(&self, who: &Principal, new: NewDevice) -> DomainResult<Device> {
        if !matches!(who.role, Role::Admin | Role::Mdm) {
            return Err(DomainError::new(
                ErrorKind::Forbidden,
                format!("role {} may not register devices", who.role.as_str()),
            ));
        }
        let tenant = who.scope(new.tenant.as_deref())?;
        self.require_tenant(&tenant)?;
        for (what, v) in [
            ("serial", &new.serial),
            ("udid", &new.udid),
            ("imei", &new.imei),
        ] {
            if let Some(v) = v {
                check_identifier(what, v)?;
            }
        }
        for h in &new.hardware_ids {
            check_identifier("hardware_ids", h)?;
        }
        if new.hardware_ids.len() > 16 {
            return Err(DomainError::new(
                ErrorKind::Malformed,
                "at most 16 hardware_ids",
            ));
        }
        check_text("platform", new.platform.as_deref())?;
        check_text("model", new.model.as_deref())?;
        check_text("user", new.user.as_deref())?;
        let device = Device {
            id: format!("dev_{}", hex::encode(random_bytes::<10>()?)),
            tenant: tenant.clone(),
            serial: new.serial,
            udid: new.udid,
            imei: new.imei,
            hardware_ids: new.hardware_ids,
            platform: new.platform,
            model: new.model,
            user: new.user,
            source: if who.role == Role::Mdm {
                "mdm".into()
            } else {
                "admin".into()
            },
            created_at: self.clock.now(),
            attestation: None,
            certificates: Vec::new(),
        };
        let ids = device.identifiers();
        if ids.is_empty() {
            return Err(DomainError::new(
                ErrorKind::Malformed,
                "a device needs at least one of serial, udid, imei, hardware_ids",
            ));
        }
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != ids.len() {
            return Err(DomainError::new(
                ErrorKind::Malformed,
                "an identifier is given twice",
            ));
        }
        let mut txn = DocTxn::new().absent(DocKind::Device, doc_id(&tenant, &device.id));
        for i in &ids {
            txn = txn.absent(DocKind::DeviceIndex, index_id(&tenant, i)).put(
                DocKind::DeviceIndex,
                index_id(&tenant, i),
                device.id.clone().into_bytes(),
            );
        }
        let draft = self.draft(
            who,
            &tenant,
            "device.register",
            &device.id,
            json!({ "identifiers": ids.len(), "platform": device.platform }),
        );
        let txn = txn
            .put(
                DocKind::Device,
                doc_id(&tenant, &device.id),
                encode(&device)?,
            )
            .audit(draft);
        match self.commit(txn).await {
            Ok(_) => Ok(device),
            Err(StoreError::Conflict(_)) => Err(DomainError::new(
                ErrorKind::Conflict,
                "an identifier of this device already names a device of the tenant",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// A device of the caller's tenant (operators: any, with `tenant`).
    ///
    /// # Errors
    /// Forbidden, NotFound.
    pub fn device(&self, who: &Principal, tenant: Option<&str>, id: &str) -> DomainResult<Device> {
        if !matches!(who.role, Role::Admin | Role::Mdm) {
            return Err(DomainError::new(
                ErrorKind::Forbidden,
                "admin or mdm role required",
            ));
        }
        let tenant = who.scope(tenant)?;
        self.device_record(&tenant, id)?
            .ok_or_else(|| DomainError::new(ErrorKind::NotFound, format!("no device {id}")))
    }

    /// The devices of a tenant, at most `limit`, after `after` (a device id), in id order.
    ///
    /// # Errors
    /// Forbidden.
    pub fn devices(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<Device>> {
        if !matches!(who.role, Role::Admin | Role::Mdm) {
            return Err(DomainError::new(
                ErrorKind::Forbidden,
                "admin or mdm role required",
            ));
        }
        let tenant = who.scope(tenant)?;
        let prefix = format!("{tenant}/");
        let mut out = Vec::new();
        for (id, bytes) in self.store.docs(DocKind::Device, &prefix, usize::MAX)? {
            if after.is_some_and(|a| id[prefix.len()..] <= *a) {
                continue;
            }
            out.push(decode(&bytes)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The device record, unscoped (for protocols that already know the tenant).
    ///
    /// # Errors
    /// Internal when the record does not decode.
    pub fn device_record(&self, tenant: &str, id: &str) -> DomainResult<Option<Device>> {
        self.store
            .doc(DocKind::Device, &doc_id(tenant, id))?
            .map(|b| decode(&b))
            .transpose()
    }

    /// The tenant's device that `identifier` (serial, UDID, IMEI, hardware id) names.
    ///
    /// # Errors
    /// Internal when a record does not decode.
    pub fn find_device(&self, tenant: &str, identifier: &str) -> DomainResult<Option<Device>> {
        let Some(id) = self
            .store
            .doc(DocKind::DeviceIndex, &index_id(tenant, identifier))?
        else {
            return Ok(None);
        };
        let id =
            String::from_utf8(id).map_err(|_| DomainError::internal("device index not UTF-8"))?;
        self.device_record(tenant, &id)
    }

    /// The change that records a certificate issued to a device (and the attestation that let
    /// it enroll), as the checks and writes of a transaction: `unchanged(old)` then `put(new)`.
    ///
    /// # Errors
    /// NotFound when the device is gone; Internal when its record does not decode.
    pub fn device_certificate_change(
        &self,
        txn: DocTxn,
        tenant: &str,
        device_id: &str,
        serial: &str,
        attestation: Option<DeviceAttestation>,
    ) -> DomainResult<DocTxn> {
        let key = doc_id(tenant, device_id);
        let Some(old) = self.store.doc(DocKind::Device, &key)? else {
            return Err(DomainError::new(
                ErrorKind::NotFound,
                format!("no device {device_id}"),
            ));
        };
        let mut d = decode(&old)?;
        if !d.certificates.iter().any(|s| s == serial) {
            d.certificates.push(serial.to_owned());
        }
        if let Some(a) = attestation {
            d.attestation = Some(a);
        }
        Ok(txn
            .unchanged(DocKind::Device, key.clone(), old)
            .put(DocKind::Device, key, encode(&d)?))
    }

    /// Adds identifiers (`serial`, `udid`, `imei`) to a device that has none of that kind, as
    /// an MDM reports them; an identifier that already names a device of the tenant is left
    /// out. Returns the device as stored afterwards.
    ///
    /// # Errors
    /// Forbidden (role), Malformed (a bad value), Conflict (the device changed meanwhile),
    /// store failures.
    pub async fn add_device_identifiers(
        &self,
        who: &Principal,
        device: Device,
        add: &[(&str, String)],
    ) -> DomainResult<Device> {
        if !matches!(who.role, Role::Admin | Role::Mdm) {
            return Err(DomainError::new(
                ErrorKind::Forbidden,
                format!("role {} may not change devices", who.role.as_str()),
            ));
        }
        let tenant = device.tenant.clone();
        let key = doc_id(&tenant, &device.id);
        let Some(old) = self.store.doc(DocKind::Device, &key)? else {
            return Err(DomainError::new(
                ErrorKind::NotFound,
                format!("no device {}", device.id),
            ));
        };
        let mut d = decode(&old)?;
        let mut txn = DocTxn::new();
        let mut added = Vec::new();
        for (what, v) in add {
            check_identifier(what, v)?;
            let slot = match *what {
                "serial" => &mut d.serial,
                "udid" => &mut d.udid,
                "imei" => &mut d.imei,
                _ => continue,
            };
            if slot.is_some()
                || self
                    .store
                    .doc(DocKind::DeviceIndex, &index_id(&tenant, v))?
                    .is_some()
            {
                continue;
            }
            *slot = Some(v.clone());
            txn = txn.absent(DocKind::DeviceIndex, index_id(&tenant, v)).put(
                DocKind::DeviceIndex,
                index_id(&tenant, v),
                d.id.clone().into_bytes(),
            );
            added.push(*what);
        }
        if added.is_empty() {
            return Ok(d);
        }
        let draft = self.draft(
            who,
            &tenant,
            "device.identifiers.add",
            &d.id,
            json!({ "added": added }),
        );
        let txn = txn
            .unchanged(DocKind::Device, key.clone(), old)
            .put(DocKind::Device, key, encode(&d)?)
            .audit(draft);
        match self.commit(txn).await {
            Ok(_) => Ok(d),
            Err(StoreError::Conflict(_)) => Err(DomainError::new(
                ErrorKind::Conflict,
                "the device or an identifier changed concurrently; try again",
            )),
            Err(e) => Err(e.into()),
        }
    }
}
