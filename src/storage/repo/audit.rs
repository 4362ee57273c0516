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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sequence: u64) -> AuditEvent {
        AuditEvent {
            sequence,
            time_ms: 9,
            actor: "operator".into(),
            action: "tenant.create".into(),
            tenant: "acme".into(),
            detail: "plan=standard".into(),
        }
    }

    #[tokio::test]
    async fn events_are_rows_under_their_big_endian_sequence_read_in_sequence_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let mut writes = WriteSet::new();
        for sequence in [256, 5, 7] {
            writes.put_audit_event(&event(sequence));
        }
        store.commit(writes).await.unwrap();
        let key: Vec<u8> = [&b"A"[..], &256u64.to_be_bytes()].concat();
        let row: AuditRecord = store.get(&key).unwrap().unwrap();
        assert_eq!(
            row,
            AuditRecord {
                time_ms: 9,
                actor: "operator".into(),
                action: "tenant.create".into(),
                tenant: "acme".into(),
                detail: "plan=standard".into(),
            }
        );
        let from_6: Vec<_> = store
            .audit_events_from(6)
            .collect::<StorageResult<_>>()
            .unwrap();
        assert_eq!(from_6, vec![event(7), event(256)]);
    }
}
