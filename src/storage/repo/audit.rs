//! The audit log: keyspace [`keys::AUDIT`], one [`AuditRecord`] per
//! sequence number (big-endian, so key order is sequence order), read and
//! written as [`AuditEvent`]. The row does not hold the sequence; its key does.

use crate::storage::records::AuditRecord;
use crate::storage::{keys, StorageResult, Store, WriteSet};
use crate::tenancy::AuditEvent;

impl Store {
    /// Audit events from sequence `from` on, in sequence order, read lazily
    /// (a caller that stops early reads no further).
    pub fn audit_events_from(
        &self,
        from: u64,
    ) -> impl Iterator<Item = StorageResult<AuditEvent>> + '_ {
        self.scan_from::<AuditRecord>(&[keys::AUDIT], &keys::audit(from))
            .map(|item| {
                item.map(|(key, row)| from_row(keys::u64_at(&key, 1).unwrap_or_default(), row))
            })
    }
}

impl WriteSet {
    /// Stores `event` under its sequence number.
    pub fn put_audit_event(&mut self, event: &AuditEvent) {
        self.put(keys::audit(event.sequence), &to_row(event));
    }
}

fn from_row(sequence: u64, row: AuditRecord) -> AuditEvent {
    AuditEvent {
        sequence,
        time_ms: row.time_ms,
        actor: row.actor,
        action: row.action,
        tenant: row.tenant,
        detail: row.detail,
    }
}

fn to_row(event: &AuditEvent) -> AuditRecord {
    AuditRecord {
        time_ms: event.time_ms,
        actor: event.actor.clone(),
        action: event.action.clone(),
        tenant: event.tenant.clone(),
        detail: event.detail.clone(),
    }
}
