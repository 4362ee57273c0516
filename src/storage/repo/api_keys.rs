//! API keys: keyspace [`keys::API_KEY`], one [`ApiKeyRecord`] per key id,
//! read and written as [`ApiKey`]. The free-text description is stored
//! sealed under the tenant's data key.

use crate::crypto::{Keyring, TenantKeys};
use crate::storage::records::ApiKeyRecord;
use crate::storage::{keys, StorageError, StorageResult, Store, WriteSet};
use crate::tenancy::{ApiKey, Scope};

impl Store {
    /// Every stored API key (revoked ones too), in key id order, the
    /// description opened with its tenant's key from `keyring`. A key whose
    /// stored hash is not 32 bytes long, or whose description does not open,
    /// is a [`StorageError::Corrupt`].
    pub fn api_keys(&self, keyring: &Keyring) -> StorageResult<Vec<ApiKey>> {
        self.scan::<ApiKeyRecord>(&[keys::API_KEY])
            .map(|item| {
                item.and_then(|(key, row)| {
                    let keys = keyring.tenant(&row.tenant);
                    from_row(&key, row, keys.as_deref())
                })
            })
            .collect()
    }
}

impl WriteSet {
    /// Stores `key` under its id, replacing what was stored there, its
    /// description sealed under its tenant's `keys` (`None`: not stored).
    pub fn put_api_key(&mut self, key: &ApiKey, keys: Option<&TenantKeys>) {
        self.put(keys::api_key(&key.id), &to_row(key, keys));
    }

    /// Deletes the API key `id`.
    pub fn delete_api_key(&mut self, id: &str) {
        self.delete(keys::api_key(id));
    }
}

/// Stored scope numbers the domain does not know are left out (they grant
/// nothing).
fn from_row(key: &[u8], row: ApiKeyRecord, keys: Option<&TenantKeys>) -> StorageResult<ApiKey> {
    let description = match keys {
        Some(keys) => keys
            .open_field(DESCRIPTION, &row.sealed_description)
            .map_err(|e| StorageError::Corrupt {
                key: hex::encode(key),
                reason: format!("an API key's description: {e}"),
            })?,
        None => String::new(),
    };
    let secret_hash =
        <[u8; 32]>::try_from(row.secret_hash.as_slice()).map_err(|_| StorageError::Corrupt {
            key: hex::encode(key),
            reason: format!(
                "an API key's secret hash must be 32 bytes, not {}",
                row.secret_hash.len()
            ),
        })?;
    Ok(ApiKey {
        id: row.id,
        tenant: row.tenant,
        secret_hash,
        scopes: row.scopes.into_iter().filter_map(Scope::from_i32).collect(),
        topics: row.topics,
        description,
        created_ms: row.created_ms,
        revoked: row.revoked,
    })
}

/// Associated-data name of a sealed key description.
const DESCRIPTION: &str = "api_key.description";

fn to_row(key: &ApiKey, keys: Option<&TenantKeys>) -> ApiKeyRecord {
    ApiKeyRecord {
        id: key.id.clone(),
        tenant: key.tenant.clone(),
        secret_hash: key.secret_hash.to_vec(),
        scopes: key.scopes.iter().map(|s| *s as i32).collect(),
        topics: key.topics.clone(),
        description: String::new(),
        created_ms: key.created_ms,
        revoked: key.revoked,
        sealed_description: keys
            .map(|k| k.seal_field(DESCRIPTION, &key.description))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme_keyring(store: &Store) -> Keyring {
        let master = std::sync::Arc::new(crate::crypto::MasterKey::from_bytes(&[3; 32]));
        let keyring = Keyring::open(store, master).unwrap();
        let keys = keyring.new_tenant_key("acme", &mut WriteSet::new());
        keyring.insert("acme", keys);
        keyring
    }

    #[tokio::test]
    async fn a_key_is_the_same_row_under_the_same_key_as_before_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let keyring = acme_keyring(&store);
        let key = ApiKey {
            id: "key_a".into(),
            tenant: "acme".into(),
            secret_hash: [7; 32],
            scopes: vec![Scope::Produce, Scope::Manage],
            topics: vec!["t1".into()],
            description: "sensors".into(),
            created_ms: 5,
            revoked: true,
        };
        let mut writes = WriteSet::new();
        writes.put_api_key(&key, keyring.tenant("acme").as_deref());
        store.commit(writes).await.unwrap();
        let mut row: ApiKeyRecord = store.get(b"kkey_a").unwrap().unwrap();
        assert!(!row.sealed_description.windows(7).any(|w| w == b"sensors"));
        row.sealed_description.clear();
        assert_eq!(
            row,
            ApiKeyRecord {
                id: "key_a".into(),
                tenant: "acme".into(),
                secret_hash: vec![7; 32],
                scopes: vec![1, 3],
                topics: vec!["t1".into()],
                description: String::new(),
                created_ms: 5,
                revoked: true,
                sealed_description: Vec::new(),
            }
        );
        assert_eq!(store.api_keys(&keyring).unwrap(), vec![key]);

        let mut writes = WriteSet::new();
        writes.delete_api_key("key_a");
        store.commit(writes).await.unwrap();
        assert_eq!(store.api_keys(&keyring).unwrap(), vec![]);
    }

    #[tokio::test]
    async fn unknown_scopes_are_left_out_and_a_short_hash_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let keyring = acme_keyring(&store);
        let mut row = ApiKeyRecord {
            id: "key_a".into(),
            secret_hash: vec![1; 32],
            scopes: vec![2, 9],
            ..Default::default()
        };
        let mut writes = WriteSet::new();
        writes.put(b"kkey_a".to_vec(), &row);
        store.commit(writes).await.unwrap();
        assert_eq!(
            store.api_keys(&keyring).unwrap()[0].scopes,
            vec![Scope::Consume]
        );

        row.secret_hash = vec![1; 5];
        let mut writes = WriteSet::new();
        writes.put(b"kkey_a".to_vec(), &row);
        store.commit(writes).await.unwrap();
        assert!(matches!(
            store.api_keys(&keyring),
            Err(StorageError::Corrupt { key, .. }) if key == hex::encode(b"kkey_a")
        ));
    }
}
