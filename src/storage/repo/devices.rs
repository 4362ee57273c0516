//! Device bindings: keyspace [`keys::DEVICE`], one [`DeviceRecord`] per
//! device id, read and written as [`DeviceBinding`].

use crate::storage::records::DeviceRecord;
use crate::storage::{keys, StorageResult, Store, WriteSet};
use crate::tenancy::DeviceBinding;

impl Store {
    /// Every stored device binding, in device id order.
    pub fn device_bindings(&self) -> StorageResult<Vec<DeviceBinding>> {
        self.scan::<DeviceRecord>(&[keys::DEVICE])
            .map(|item| item.map(|(_, row)| from_row(row)))
            .collect()
    }
}

impl WriteSet {
    /// Stores `binding` under its device id, replacing what was stored there.
    pub fn put_device_binding(&mut self, binding: &DeviceBinding) {
        self.put(keys::device(&binding.device_id), &to_row(binding));
    }

    /// Deletes the binding of `device_id`.
    pub fn delete_device_binding(&mut self, device_id: &str) {
        self.delete(keys::device(device_id));
    }
}

fn from_row(row: DeviceRecord) -> DeviceBinding {
    DeviceBinding {
        device_id: row.device_id,
        tenant: row.tenant,
        bound_ms: row.bound_ms,
    }
}

fn to_row(binding: &DeviceBinding) -> DeviceRecord {
    DeviceRecord {
        device_id: binding.device_id.clone(),
        tenant: binding.tenant.clone(),
        bound_ms: binding.bound_ms,
    }
}
