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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_binding_is_the_same_row_under_the_same_key_as_before_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let binding = DeviceBinding {
            device_id: "device-7".into(),
            tenant: "acme".into(),
            bound_ms: 42,
        };
        let mut writes = WriteSet::new();
        writes.put_device_binding(&binding);
        store.commit(writes).await.unwrap();
        let row: DeviceRecord = store.get(b"Vdevice-7").unwrap().unwrap();
        assert_eq!(
            row,
            DeviceRecord {
                device_id: "device-7".into(),
                tenant: "acme".into(),
                bound_ms: 42,
            }
        );
        assert_eq!(store.device_bindings().unwrap(), vec![binding]);

        let mut writes = WriteSet::new();
        writes.delete_device_binding("device-7");
        store.commit(writes).await.unwrap();
        assert_eq!(store.device_bindings().unwrap(), vec![]);
    }
}
