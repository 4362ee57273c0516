//! The audit log: who changed what, written in the same commit as the change.

use super::Tenancy;
use crate::error::Result;
use crate::storage::WriteSet;

/// One entry of the audit log: who did what, when. Entries are numbered in
/// the order they were written; the numbers grow but have gaps.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// The entry's number (the store's id generator hands them out).
    pub sequence: u64,
    /// When, Unix ms on the broker clock.
    pub time_ms: i64,
    /// Who: "operator", "billing", a key id, or a source address.
    pub actor: String,
    /// What, e.g. "device.bind", "tenant.suspend".
    pub action: String,
    /// The tenant concerned ("" when none).
    pub tenant: String,
    /// Details in words (never a secret).
    pub detail: String,
}

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
        let sequence = self.store.generate_id()?;
        writes.put_audit_event(&AuditEvent {
            sequence,
            time_ms: self.clock.now_ms(),
            actor: actor.to_string(),
            action: action.to_string(),
            tenant: tenant.to_string(),
            detail,
        });
        Ok(())
    }

    /// Audit entries from sequence `from` on, at most `limit`, optionally of
    /// one tenant; returns them and the sequence to continue from (one past
    /// the last entry looked at, `from` when there was none).
    pub fn audit_events(
        &self,
        from: u64,
        limit: usize,
        tenant: &str,
    ) -> Result<(Vec<AuditEvent>, u64)> {
        let mut events = Vec::new();
        let mut next = from;
        for event in self.store.audit_events_from(from) {
            let event = event?;
            next = event.sequence + 1;
            if tenant.is_empty() || event.tenant == tenant {
                events.push(event);
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
