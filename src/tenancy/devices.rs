//! Device bindings: which tenant a device id belongs to, so one tenant
//! cannot produce as another tenant's device.

use super::{validate_device_id, Tenancy};
use crate::error::{Error, Result};
use crate::storage::WriteSet;

/// A device id bound to the one tenant that may produce with it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceBinding {
    /// The device id.
    pub device_id: String,
    /// The only tenant that may produce with it.
    pub tenant: String,
    /// When it was bound (or last rebound), Unix ms.
    pub bound_ms: i64,
}

impl Tenancy {
    /// Binds a device id to a tenant (operator). Moving it from another tenant
    /// needs `rebind`.
    pub async fn bind_device(
        &self,
        device_id: &str,
        tenant: &str,
        rebind: bool,
    ) -> Result<DeviceBinding> {
        validate_device_id(device_id)?;
        let _guard = self.write_lock.lock().await;
        self.get_tenant(tenant)?;
        self.refuse_moving(tenant)?;
        let previous = self.devices.get(device_id).map(|d| d.tenant.clone());
        if let Some(owner) = &previous {
            if owner != tenant && !rebind {
                return Err(Error::FailedPrecondition(format!(
                    "device '{device_id}' is bound to tenant '{owner}'; set rebind to move it"
                )));
            }
        }
        let binding = DeviceBinding {
            device_id: device_id.to_string(),
            tenant: tenant.to_string(),
            bound_ms: self.clock.now_ms(),
        };
        let mut writes = WriteSet::new();
        writes.put_device_binding(&binding, self.keyring.server());
        self.keyring.stage_server_key(&mut writes);
        let (action, detail) = match previous {
            Some(owner) if owner != tenant => (
                "device.rebind",
                format!("device {device_id} moved from {owner} to {tenant}"),
            ),
            _ => (
                "device.bind",
                format!("device {device_id} bound to {tenant}"),
            ),
        };
        self.commit_audited(writes, "operator", action, tenant, detail)
            .await?;
        self.devices.insert(device_id.to_string(), binding.clone());
        Ok(binding)
    }

    /// Removes a device binding (operator).
    pub async fn unbind_device(&self, device_id: &str) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        let binding = self
            .devices
            .get(device_id)
            .map(|d| d.clone())
            .ok_or_else(|| Error::not_found("device binding", device_id))?;
        let mut writes = WriteSet::new();
        writes.delete_device_binding(device_id, self.keyring.server());
        self.commit_audited(
            writes,
            "operator",
            "device.unbind",
            &binding.tenant,
            format!("device {device_id} unbound from {}", binding.tenant),
        )
        .await?;
        self.devices.remove(device_id);
        Ok(())
    }

    /// Device bindings of one tenant, or of all when `tenant` is empty.
    pub fn list_devices(&self, tenant: &str) -> Vec<DeviceBinding> {
        let mut all: Vec<_> = self
            .devices
            .iter()
            .filter(|d| tenant.is_empty() || d.tenant == tenant)
            .map(|d| d.value().clone())
            .collect();
        all.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        all
    }

    /// Refuses a device id bound to another tenant.
    pub fn check_device(&self, tenant: &str, device_id: &str) -> Result<()> {
        if device_id.is_empty() {
            return Ok(());
        }
        match self.devices.get(device_id) {
            Some(binding) if binding.tenant != tenant => Err(Error::PermissionDenied(format!(
                "device_id '{device_id}' is bound to another tenant"
            ))),
            _ => Ok(()),
        }
    }
}
