//! API keys: keyspace [`keys::API_KEY`], one [`ApiKeyRecord`] per key id,
//! read and written as [`ApiKey`].

use crate::storage::records::ApiKeyRecord;
use crate::storage::{keys, StorageError, StorageResult, Store, WriteSet};
use crate::tenancy::{ApiKey, Scope};

impl Store {
    /// Every stored API key (revoked ones too), in key id order. A key whose
    /// stored hash is not 32 bytes long is a [`StorageError::Corrupt`].
    pub fn api_keys(&self) -> StorageResult<Vec<ApiKey>> {
        self.scan::<ApiKeyRecord>(&[keys::API_KEY])
            .map(|item| item.and_then(|(key, row)| from_row(&key, row)))
            .collect()
    }
}

impl WriteSet {
    /// Stores `key` under its id, replacing what was stored there.
    pub fn put_api_key(&mut self, key: &ApiKey) {
        self.put(keys::api_key(&key.id), &to_row(key));
    }

    /// Deletes the API key `id`.
    pub fn delete_api_key(&mut self, id: &str) {
        self.delete(keys::api_key(id));
    }
}

/// Stored scope numbers the domain does not know are left out (they grant
/// nothing).
fn from_row(key: &[u8], row: ApiKeyRecord) -> StorageResult<ApiKey> {
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
        description: row.description,
        created_ms: row.created_ms,
        revoked: row.revoked,
    })
}

fn to_row(key: &ApiKey) -> ApiKeyRecord {
    ApiKeyRecord {
        id: key.id.clone(),
        tenant: key.tenant.clone(),
        secret_hash: key.secret_hash.to_vec(),
        scopes: key.scopes.iter().map(|s| *s as i32).collect(),
        topics: key.topics.clone(),
        description: key.description.clone(),
        created_ms: key.created_ms,
        revoked: key.revoked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_the_same_row_under_the_same_key_as_before_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
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
        writes.put_api_key(&key);
        store.commit(writes).await.unwrap();
        let row: ApiKeyRecord = store.get(b"kkey_a").unwrap().unwrap();
        assert_eq!(
            row,
            ApiKeyRecord {
                id: "key_a".into(),
                tenant: "acme".into(),
                secret_hash: vec![7; 32],
                scopes: vec![1, 3],
                topics: vec!["t1".into()],
                description: "sensors".into(),
                created_ms: 5,
                revoked: true,
            }
        );
        assert_eq!(store.api_keys().unwrap(), vec![key]);

        let mut writes = WriteSet::new();
        writes.delete_api_key("key_a");
        store.commit(writes).await.unwrap();
        assert_eq!(store.api_keys().unwrap(), vec![]);
    }

    #[tokio::test]
    async fn unknown_scopes_are_left_out_and_a_short_hash_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let mut row = ApiKeyRecord {
            id: "key_a".into(),
            secret_hash: vec![1; 32],
            scopes: vec![2, 9],
            ..Default::default()
        };
        let mut writes = WriteSet::new();
        writes.put(b"kkey_a".to_vec(), &row);
        store.commit(writes).await.unwrap();
        assert_eq!(store.api_keys().unwrap()[0].scopes, vec![Scope::Consume]);

        row.secret_hash = vec![1; 5];
        let mut writes = WriteSet::new();
        writes.put(b"kkey_a".to_vec(), &row);
        store.commit(writes).await.unwrap();
        assert!(matches!(
            store.api_keys(),
            Err(StorageError::Corrupt { key, .. }) if key == hex::encode(b"kkey_a")
        ));
    }
}
