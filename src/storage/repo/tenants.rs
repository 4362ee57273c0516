//! Tenants: keyspace [`keys::TENANT`], one [`TenantRecord`] per tenant id,
//! read and written as [`Tenant`].

use crate::storage::records::TenantRecord;
use crate::storage::{keys, StorageResult, Store, WriteSet};
use crate::tenancy::{Tenant, TenantStatus};

impl Store {
    /// Every stored tenant (terminated ones too), in id order.
    pub fn tenants(&self) -> StorageResult<Vec<Tenant>> {
        self.scan::<TenantRecord>(&[keys::TENANT])
            .map(|item| item.map(|(_, row)| from_row(row)))
            .collect()
    }
}

impl WriteSet {
    /// Stores `tenant` under its id, replacing what was stored there.
    pub fn put_tenant(&mut self, tenant: &Tenant) {
        self.put(keys::tenant(&tenant.id), &to_row(tenant));
    }
}

/// A stored status number the domain does not know reads as active
/// ([`TenantStatus::from_i32`]).
fn from_row(row: TenantRecord) -> Tenant {
    Tenant {
        id: row.id,
        display_name: row.display_name,
        contact_email: row.contact_email,
        plan: row.plan,
        status: TenantStatus::from_i32(row.status),
        status_reason: row.status_reason,
        created_ms: row.created_ms,
        quota_overrides: row.quota_overrides,
    }
}

fn to_row(tenant: &Tenant) -> TenantRecord {
    TenantRecord {
        id: tenant.id.clone(),
        display_name: tenant.display_name.clone(),
        contact_email: tenant.contact_email.clone(),
        plan: tenant.plan.clone(),
        status: tenant.status as i32,
        created_ms: tenant.created_ms,
        status_reason: tenant.status_reason.clone(),
        quota_overrides: tenant.quota_overrides.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tenant_is_the_same_row_under_the_same_key_as_before_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
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
        writes.put_tenant(&tenant);
        store.commit(writes).await.unwrap();
        let row: TenantRecord = store.get(b"tacme").unwrap().unwrap();
        assert_eq!(
            row,
            TenantRecord {
                id: "acme".into(),
                display_name: "Acme".into(),
                contact_email: "ops@acme.test".into(),
                plan: "standard".into(),
                status: 2,
                created_ms: 1_700_000_000_000,
                status_reason: "arrears".into(),
                quota_overrides: [("max_topics".to_string(), 3)].into(),
            }
        );
        assert_eq!(store.tenants().unwrap(), vec![tenant]);
    }
}
