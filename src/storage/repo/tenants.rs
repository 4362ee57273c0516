//! Tenants: keyspace [`keys::TENANT`], one [`TenantRecord`] per tenant id,
//! read and written as [`Tenant`]. Contact data (display name, e-mail) is
//! stored sealed under the tenant's data key; once the key is destroyed
//! (termination) nothing of it can be read back.

use crate::crypto::{Keyring, TenantKeys};
use crate::storage::records::TenantRecord;
use crate::storage::{keys, StorageError, StorageResult, Store, WriteSet};
use crate::tenancy::{Tenant, TenantStatus};

/// Associated-data names of the sealed contact fields.
const DISPLAY_NAME: &str = "tenant.display_name";
const CONTACT_EMAIL: &str = "tenant.contact_email";

impl Store {
    /// Every stored tenant (terminated ones too), in id order, contact data
    /// opened with its key from `keyring` (empty for a tenant without one).
    pub fn tenants(&self, keyring: &Keyring) -> StorageResult<Vec<Tenant>> {
        self.scan::<TenantRecord>(&[keys::TENANT])
            .map(|item| {
                let (key, row) = item?;
                let keys = keyring.tenant(&row.id);
                from_row(row, keys.as_deref()).map_err(|reason| StorageError::Corrupt {
                    key: hex::encode(key),
                    reason,
                })
            })
            .collect()
    }

    /// The ids of the stored tenants that are not terminated (read without
    /// any key, to check every one of them has a data key).
    pub fn live_tenant_ids(&self) -> StorageResult<Vec<String>> {
        let terminated = TenantStatus::Terminated as i32;
        self.scan::<TenantRecord>(&[keys::TENANT])
            .filter_map(|item| match item {
                Ok((_, row)) if row.status == terminated => None,
                Ok((_, row)) => Some(Ok(row.id)),
                Err(e) => Some(Err(e)),
            })
            .collect()
    }
}

impl WriteSet {
    /// Stores `tenant` under its id, replacing what was stored there, its
    /// contact data sealed under `keys` (with `None`, a tenant whose key is
    /// destroyed, no contact data is stored at all).
    pub fn put_tenant(&mut self, tenant: &Tenant, keys: Option<&TenantKeys>) {
        self.put(keys::tenant(&tenant.id), &to_row(tenant, keys));
    }
}

/// A stored status number the domain does not know reads as active
/// ([`TenantStatus::from_i32`]). Sealed contact data that does not open is
/// an error (the reason).
fn from_row(row: TenantRecord, keys: Option<&TenantKeys>) -> Result<Tenant, String> {
    let open = |what: &str, sealed: &[u8]| match keys {
        Some(keys) => keys
            .open_field(what, sealed)
            .map_err(|e| format!("tenant {}: {what}: {e}", row.id)),
        None => Ok(String::new()),
    };
    Ok(Tenant {
        display_name: open(DISPLAY_NAME, &row.sealed_display_name)?,
        contact_email: open(CONTACT_EMAIL, &row.sealed_contact_email)?,
        id: row.id,
        plan: row.plan,
        status: TenantStatus::from_i32(row.status),
        status_reason: row.status_reason,
        created_ms: row.created_ms,
        quota_overrides: row.quota_overrides,
    })
}

fn to_row(tenant: &Tenant, keys: Option<&TenantKeys>) -> TenantRecord {
    let seal =
        |what: &str, plain: &str| keys.map(|k| k.seal_field(what, plain)).unwrap_or_default();
    TenantRecord {
        id: tenant.id.clone(),
        display_name: String::new(),
        contact_email: String::new(),
        plan: tenant.plan.clone(),
        status: tenant.status as i32,
        created_ms: tenant.created_ms,
        status_reason: tenant.status_reason.clone(),
        quota_overrides: tenant.quota_overrides.clone(),
        sealed_display_name: seal(DISPLAY_NAME, &tenant.display_name),
        sealed_contact_email: seal(CONTACT_EMAIL, &tenant.contact_email),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::MasterKey;

    #[tokio::test]
    async fn contact_data_is_stored_sealed_and_read_back_only_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let keyring = Keyring::open(&store, Arc::new(MasterKey::from_bytes(&[7; 32]))).unwrap();
        let tenant = Tenant {
            id: "acme".into(),
            display_name: "Acme".into(),
            contact_email: "ops@acme.test".into(),
            plan: "standard".into(),
            status: TenantStatus::Suspended,
            status_reason: "arrears".into(),
            created_ms: 1_700_000_000_000,
            quota_overrides: [("max_topics".to_string(), 3)].into(),
        };
        let mut writes = WriteSet::new();
        let keys = keyring.new_tenant_key("acme", &mut writes);
        writes.put_tenant(&tenant, Some(&keys));
        store.commit(writes).await.unwrap();
        keyring.insert("acme", keys);
        let row: TenantRecord = store.get(b"tacme").unwrap().unwrap();
        assert_eq!(
            (row.display_name.as_str(), row.contact_email.as_str()),
            ("", "")
        );
        assert!(!row.sealed_contact_email.windows(4).any(|w| w == b"acme"));
        assert_eq!(store.tenants(&keyring).unwrap(), vec![tenant.clone()]);

        keyring.evict("acme");
        let erased = store.tenants(&keyring).unwrap();
        assert_eq!(erased[0].contact_email, "");
        assert_eq!(store.live_tenant_ids().unwrap(), vec!["acme".to_string()]);
    }
}
