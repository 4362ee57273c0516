//! The audit log: who changed what, written in the same commit as the change.

use super::Tenancy;
use crate::error::Result;
use crate::storage::records::AuditRecord;
use crate::storage::{keys, WriteSet};

impl Tenancy {
    /// Adds an audit entry to `writes`.
    pub fn audit(
        &self,
        writes: &mut WriteSet,
        actor: &str,
        action: &str,
        tenant: &str,
        detail: String,
    ) -> Result<()> {
        let seq = self.store.generate_id()?;
        writes.put(
            keys::audit(seq),
            &AuditRecord {
                time_ms: self.clock.now_ms(),
                actor: actor.to_string(),
                action: action.to_string(),
                tenant: tenant.to_string(),
                detail,
            },
        );
        Ok(())
    }

    /// Audit entries from sequence `from` on, at most `limit`, optionally of
    /// one tenant; returns them with their sequence numbers and where to continue.
    pub fn audit_events(
        &self,
        from: u64,
        limit: usize,
        tenant: &str,
    ) -> Result<(Vec<(u64, AuditRecord)>, u64)> {
        let mut events = Vec::new();
        let mut next = from;
        for item in self
            .store
            .scan_from::<AuditRecord>(&[keys::AUDIT], &keys::audit(from))
        {
            let (key, record) = item?;
            let seq = keys::u64_at(&key, 1).unwrap_or_default();
            next = seq + 1;
            if tenant.is_empty() || record.tenant == tenant {
                events.push((seq, record));
                if events.len() >= limit {
                    break;
                }
            }
        }
        Ok((events, next))
    }

    /// Writes one audit entry on its own.
    pub async fn audit_now(
        &self,
        actor: &str,
        action: &str,
        tenant: &str,
        detail: String,
    ) -> Result<()> {
        self.commit_audited(WriteSet::new(), actor, action, tenant, detail)
            .await
    }

    /// Commits `writes` together with the audit entry that explains them, so
    /// a change is never stored without its entry (nor the entry without it).
    pub(super) async fn commit_audited(
        &self,
        mut writes: WriteSet,
        actor: &str,
        action: &str,
        tenant: &str,
        detail: String,
    ) -> Result<()> {
        self.audit(&mut writes, actor, action, tenant, detail)?;
        self.store.commit(writes).await?;
        Ok(())
    }
}
