//! Wrapped data keys: keyspace [`keys::DATA_KEY`], one [`WrappedKeyRecord`]
//! per tenant, and the server's own wrapped key (a `META` singleton). Only
//! wrapped bytes are stored; `crypto::Keyring` wraps and unwraps them.

use crate::storage::records::WrappedKeyRecord;
use crate::storage::{keys, StorageResult, Store, WriteSet};

impl Store {
    /// Every stored wrapped data key: (tenant id, wrapped bytes), by id.
    pub fn wrapped_data_keys(&self) -> StorageResult<Vec<(String, Vec<u8>)>> {
        self.scan::<WrappedKeyRecord>(&[keys::DATA_KEY])
            .map(|item| {
                item.map(|(key, row)| {
                    let tenant = String::from_utf8_lossy(&key[1..]).into_owned();
                    (tenant, row.wrapped)
                })
            })
            .collect()
    }

    /// The wrapped data key of `tenant`, if one is stored (none once the
    /// tenant is terminated).
    pub fn wrapped_data_key(&self, tenant: &str) -> StorageResult<Option<Vec<u8>>> {
        Ok(self
            .get::<WrappedKeyRecord>(&keys::data_key(tenant))?
            .map(|row| row.wrapped))
    }

    /// The server's wrapped key, once stored.
    pub fn wrapped_server_key(&self) -> StorageResult<Option<Vec<u8>>> {
        Ok(self
            .get::<WrappedKeyRecord>(&keys::server_key())?
            .map(|row| row.wrapped))
    }
}

impl WriteSet {
    /// Stores `tenant`'s wrapped data key.
    pub fn put_data_key(&mut self, tenant: &str, wrapped: &[u8]) {
        let row = WrappedKeyRecord {
            wrapped: wrapped.to_vec(),
        };
        self.put(keys::data_key(tenant), &row);
    }

    /// Deletes `tenant`'s wrapped data key (crypto-shredding).
    pub fn delete_data_key(&mut self, tenant: &str) {
        self.delete(keys::data_key(tenant));
    }

    /// Stores the server's wrapped key.
    pub fn put_server_key(&mut self, wrapped: &[u8]) {
        let row = WrappedKeyRecord {
            wrapped: wrapped.to_vec(),
        };
        self.put(keys::server_key(), &row);
    }
}
