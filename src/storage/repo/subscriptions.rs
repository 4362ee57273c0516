//! Subscriptions: a subscription's record (identity and settings), its
//! cursor, its runs of first deliveries and the pending messages kept on
//! their own; deleting a subscription's rows.

use std::collections::BTreeMap;

use crate::broker::subscription::{Cursor, Pending, Run, StoredState, SubscriptionSettings};
use crate::storage::keys;
use crate::storage::records::{CursorRecord, PendingRecord, PendingRunRecord, SubscriptionRecord};
use crate::storage::{StorageResult, Store, WriteSet};

/// Where the offset is in a pending or run key (after the keyspace byte and
/// the subscription id).
const OFFSET_AT: usize = 9;

impl Store {
    /// Every stored subscription of a topic, by name.
    pub fn subscriptions(&self, topic_id: u64) -> StorageResult<Vec<SubscriptionSettings>> {
        self.scan::<SubscriptionRecord>(&keys::id_prefix(keys::SUBSCRIPTION, topic_id))
            .map(|item| item.map(|(_, row)| settings_of(row)))
            .collect()
    }

    /// A subscription's stored state: its cursor, its runs by first offset
    /// and its own pending records by offset.
    pub fn subscription_state(&self, sub_id: u64) -> StorageResult<StoredState> {
        let cursor: CursorRecord = self.get(&keys::cursor(sub_id))?.unwrap_or_default();
        let mut runs = Vec::new();
        for item in self.scan::<PendingRunRecord>(&keys::id_prefix(keys::PENDING_RUN, sub_id)) {
            let (key, record) = item?;
            if let Some(start) = keys::u64_at(&key, OFFSET_AT) {
                runs.push((start, run_from_row(start, &record)));
            }
        }
        let mut own = BTreeMap::new();
        for item in self.scan::<PendingRecord>(&keys::id_prefix(keys::PENDING, sub_id)) {
            let (key, row) = item?;
            if let Some(offset) = keys::u64_at(&key, OFFSET_AT) {
                own.insert(
                    offset,
                    Pending {
                        attempts: row.attempts,
                        deadline_ms: row.deadline_ms,
                        first_delivery_ms: row.first_delivery_ms,
                    },
                );
            }
        }
        Ok(StoredState {
            cursor: Cursor {
                next_offset: cursor.next_offset,
                dead_lettered: cursor.dead_lettered,
            },
            runs,
            own,
        })
    }

    /// Adds the deletion of a subscription's rows to `writes`: its pending
    /// records and runs, its cursor and its record.
    pub fn delete_subscription(
        &self,
        sub: &SubscriptionSettings,
        writes: &mut WriteSet,
    ) -> StorageResult<()> {
        self.delete_keyspaces(&[keys::PENDING, keys::PENDING_RUN], sub.id, writes)?;
        writes.delete(keys::cursor(sub.id));
        writes.delete(keys::subscription(sub.topic_id, &sub.name));
        Ok(())
    }
}

impl WriteSet {
    /// Stores a subscription's record (on creation and on a settings change).
    pub fn put_subscription(&mut self, sub: &SubscriptionSettings) {
        let row = SubscriptionRecord {
            id: sub.id,
            topic_id: sub.topic_id,
            name: sub.name.clone(),
            lock_seconds: sub.lock_seconds,
            max_delivery_attempts: sub.max_delivery_attempts,
            dead_letter_topic: sub.dead_letter_topic.clone(),
            created_ms: sub.created_ms,
        };
        self.put(keys::subscription(sub.topic_id, &sub.name), &row);
    }

    /// Stores a subscription's cursor.
    pub fn put_cursor(&mut self, sub_id: u64, cursor: &Cursor) {
        let row = CursorRecord {
            next_offset: cursor.next_offset,
            dead_lettered: cursor.dead_lettered,
        };
        self.put(keys::cursor(sub_id), &row);
    }

    /// Stores a pending message of a subscription kept on its own.
    pub fn put_pending(&mut self, sub_id: u64, offset: u64, pending: &Pending) {
        let row = PendingRecord {
            attempts: pending.attempts,
            deadline_ms: pending.deadline_ms,
            first_delivery_ms: pending.first_delivery_ms,
        };
        self.put(keys::pending(sub_id, offset), &row);
    }

    /// Deletes the pending record of `offset`.
    pub fn delete_pending(&mut self, sub_id: u64, offset: u64) {
        self.delete(keys::pending(sub_id, offset));
    }

    /// Stores the run of first deliveries that starts at `start`.
    pub fn put_run(&mut self, sub_id: u64, start: u64, run: &Run) {
        self.put(keys::pending_run(sub_id, start), &run_row(start, run));
    }

    /// Deletes the run that starts at `start`.
    pub fn delete_run(&mut self, sub_id: u64, start: u64) {
        self.delete(keys::pending_run(sub_id, start));
    }
}

/// A stored subscription row as settings.
fn settings_of(row: SubscriptionRecord) -> SubscriptionSettings {
    SubscriptionSettings {
        id: row.id,
        topic_id: row.topic_id,
        name: row.name,
        lock_seconds: row.lock_seconds,
        max_delivery_attempts: row.max_delivery_attempts,
        dead_letter_topic: row.dead_letter_topic,
        created_ms: row.created_ms,
    }
}

/// A run as stored: its resolved bitmap as little-endian bytes, one bit per
/// offset from `start`.
fn run_row(start: u64, run: &Run) -> PendingRunRecord {
    let len = (run.end - start) as usize;
    let mut resolved: Vec<u8> = run.resolved.iter().flat_map(|w| w.to_le_bytes()).collect();
    resolved.resize(len.div_ceil(8), 0);
    PendingRunRecord {
        end: run.end,
        deadline_ms: run.deadline_ms,
        first_delivery_ms: run.first_delivery_ms,
        resolved,
    }
}

/// A stored run back as the state machine keeps it.
fn run_from_row(start: u64, record: &PendingRunRecord) -> Run {
    let len = record.end.saturating_sub(start);
    let mut resolved = vec![0u64; len.div_ceil(64) as usize];
    for (i, byte) in record.resolved.iter().enumerate() {
        if let Some(word) = resolved.get_mut(i / 8) {
            *word |= (*byte as u64) << ((i % 8) * 8);
        }
    }
    let set: u64 = resolved.iter().map(|w| w.count_ones() as u64).sum();
    Run {
        end: record.end,
        deadline_ms: record.deadline_ms,
        first_delivery_ms: record.first_delivery_ms,
        resolved,
        unresolved: len.saturating_sub(set),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subscription and cursor rows, under their keys, as before; the
    /// deletion takes every row of the subscription. (The pending and run
    /// rows are checked against the live state in `broker::subscription`.)
    #[tokio::test]
    async fn a_subscription_keeps_its_rows_and_is_deleted_with_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let sub = SubscriptionSettings {
            id: 11,
            topic_id: 7,
            name: "workers".into(),
            lock_seconds: 30,
            max_delivery_attempts: 5,
            dead_letter_topic: "dlq".into(),
            created_ms: 42,
        };
        let cursor = Cursor {
            next_offset: 100,
            dead_lettered: 4,
        };
        let pending = Pending {
            attempts: 2,
            deadline_ms: 500,
            first_delivery_ms: 400,
        };
        let mut writes = WriteSet::new();
        writes.put_subscription(&sub);
        writes.put_cursor(11, &cursor);
        writes.put_pending(11, 99, &pending);
        store.commit(writes).await.unwrap();

        let row: SubscriptionRecord = store
            .get(&keys::subscription(7, "workers"))
            .unwrap()
            .unwrap();
        assert_eq!((row.id, row.dead_letter_topic.as_str()), (11, "dlq"));
        let row: CursorRecord = store.get(&keys::cursor(11)).unwrap().unwrap();
        assert_eq!((row.next_offset, row.dead_lettered), (100, 4));
        assert_eq!(store.subscriptions(7).unwrap(), vec![sub.clone()]);
        let state = store.subscription_state(11).unwrap();
        assert_eq!(state.cursor, cursor);
        assert_eq!(state.own.get(&99), Some(&pending));

        let mut writes = WriteSet::new();
        store.delete_subscription(&sub, &mut writes).unwrap();
        store.commit(writes).await.unwrap();
        assert!(store.subscriptions(7).unwrap().is_empty());
        let state = store.subscription_state(11).unwrap();
        assert_eq!(state.cursor, Cursor::default());
        assert!(state.own.is_empty());
    }
}
