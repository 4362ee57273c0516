//! Device bindings: keyspace [`keys::DEVICE`], one [`DeviceRecord`] per
//! device, keyed by the device id's HMAC under the server's key (the
//! operator's table spans tenants, so no tenant's key fits), the id itself
//! sealed under the server's key in the row. Read and written as
//! [`DeviceBinding`].

use crate::crypto::TenantKeys;
use crate::storage::records::DeviceRecord;
use crate::storage::{keys, StorageError, StorageResult, Store, WriteSet};
use crate::tenancy::DeviceBinding;

/// Associated-data name of a sealed device id in a binding.
const DEVICE_ID: &str = "binding.device_id";

impl Store {
    /// Every stored device binding, its id opened with the server's keys.
    pub fn device_bindings(&self, server: &TenantKeys) -> StorageResult<Vec<DeviceBinding>> {
        self.scan::<DeviceRecord>(&[keys::DEVICE])
            .map(|item| {
                let (key, row) = item?;
                let device_id = server
                    .open_field(DEVICE_ID, &row.sealed_device_id)
                    .map_err(|e| StorageError::Corrupt {
                        key: hex::encode(&key),
                        reason: format!("device binding: {e}"),
                    })?;
                Ok(DeviceBinding {
                    device_id,
                    tenant: row.tenant,
                    bound_ms: row.bound_ms,
                })
            })
            .collect()
    }
}

impl WriteSet {
    /// Stores `binding` under its device id's HMAC, replacing what was
    /// stored there.
    pub fn put_device_binding(&mut self, binding: &DeviceBinding, server: &TenantKeys) {
        let row = DeviceRecord {
            device_id: String::new(),
            tenant: binding.tenant.clone(),
            bound_ms: binding.bound_ms,
            sealed_device_id: server.seal_field(DEVICE_ID, &binding.device_id),
        };
        self.put(binding_key(&binding.device_id, server), &row);
    }

    /// Deletes the binding of `device_id`.
    pub fn delete_device_binding(&mut self, device_id: &str, server: &TenantKeys) {
        self.delete(binding_key(device_id, server));
    }
}

fn binding_key(device_id: &str, server: &TenantKeys) -> Vec<u8> {
    keys::device(&server.device_tag(device_id).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_binding_is_keyed_by_hmac_and_its_id_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let server = TenantKeys::derive("#server", &crate::crypto::DataKey::generate());
        let binding = DeviceBinding {
            device_id: "device-MARKER".into(),
            tenant: "acme".into(),
            bound_ms: 42,
        };
        let mut writes = WriteSet::new();
        writes.put_device_binding(&binding, &server);
        store.commit(writes).await.unwrap();
        for item in store.tree.iter() {
            let (key, value) = item.unwrap();
            for bytes in [&key[..], &value[..]] {
                assert!(!bytes.windows(13).any(|w| w == b"device-MARKER"));
            }
        }
        assert_eq!(store.device_bindings(&server).unwrap(), vec![binding]);

        let mut writes = WriteSet::new();
        writes.delete_device_binding("device-MARKER", &server);
        store.commit(writes).await.unwrap();
        assert_eq!(store.device_bindings(&server).unwrap(), vec![]);
    }
}
