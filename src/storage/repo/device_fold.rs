//! What the per-device usage fold needs stored (see `broker/device_usage.rs`).
//!
//! - The **metered-through offset** of a topic, under `m`, topic id: every
//!   message set below it has had its per-device produce usage added to the
//!   device counters, every set at or above it has not. It is written only in
//!   the same atomic write as the device counters the fold derived (or, for a
//!   new topic, as 0 in the write that creates it), so a crash between folds
//!   neither loses nor double-counts a unit.
//! - An **unbilled-set mark**, under `b`, topic id, first offset: a set that
//!   bills no produced units (a dead-letter move). Written with the set; the
//!   fold skips the set and deletes the mark in its own write.
//!
//! A topic stored before folds existed has no offset row: everything it holds
//! was metered per device when it was produced, so its log's end stands in
//! for the offset (the broker decides that when it loads the topic).

use crate::storage::records::CountersRecord;
use crate::storage::{keys, StorageResult, Store, WriteSet};

/// Key of a topic's metered-through offset.
fn metered_through_key(topic_id: u64) -> Vec<u8> {
    keys::id_prefix(keys::DEVICE_METERED_THROUGH, topic_id)
}

/// Key of an unbilled-set mark.
fn unbilled_key(topic_id: u64, first_offset: u64) -> Vec<u8> {
    let mut key = keys::id_prefix(keys::UNBILLED_SET, topic_id);
    key.extend_from_slice(&first_offset.to_be_bytes());
    key
}

impl WriteSet {
    /// Stores that every set of `topic_id` below `offset` has been folded
    /// into the device counters (in the write that adds those counters).
    pub fn put_metered_through(&mut self, topic_id: u64, offset: u64) {
        self.put(
            metered_through_key(topic_id),
            &CountersRecord {
                values: vec![offset],
            },
        );
    }

    /// Deletes a topic's metered-through offset (the topic is deleted).
    pub fn delete_metered_through(&mut self, topic_id: u64) {
        self.delete(metered_through_key(topic_id));
    }

    /// Marks the set of `topic_id` at `first_offset` as billing no produced
    /// units (written with the set).
    pub fn mark_unbilled_set(&mut self, topic_id: u64, first_offset: u64) {
        self.put(
            unbilled_key(topic_id, first_offset),
            &CountersRecord { values: Vec::new() },
        );
    }

    /// Deletes an unbilled-set mark (the fold has passed the set).
    pub fn unmark_unbilled_set(&mut self, topic_id: u64, first_offset: u64) {
        self.delete(unbilled_key(topic_id, first_offset));
    }
}

impl Store {
    /// The stored metered-through offset of `topic_id`; `None` for a topic
    /// stored before per-device usage was folded from sets.
    pub fn metered_through(&self, topic_id: u64) -> StorageResult<Option<u64>> {
        Ok(self
            .get::<CountersRecord>(&metered_through_key(topic_id))?
            .map(|r| r.values.first().copied().unwrap_or(0)))
    }

    /// Whether the set of `topic_id` at `first_offset` bills no produced units.
    pub fn is_unbilled_set(&self, topic_id: u64, first_offset: u64) -> StorageResult<bool> {
        Ok(self
            .get::<CountersRecord>(&unbilled_key(topic_id, first_offset))?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn offsets_and_marks_round_trip_per_topic() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(store.metered_through(7).unwrap(), None);
        let mut writes = WriteSet::new();
        writes.put_metered_through(7, 0);
        writes.put_metered_through(8, 300);
        writes.mark_unbilled_set(7, 100);
        store.commit(writes).await.unwrap();
        assert_eq!(store.metered_through(7).unwrap(), Some(0));
        assert_eq!(store.metered_through(8).unwrap(), Some(300));
        assert!(store.is_unbilled_set(7, 100).unwrap());
        assert!(!store.is_unbilled_set(8, 100).unwrap());
        assert!(!store.is_unbilled_set(7, 101).unwrap());

        let mut writes = WriteSet::new();
        writes.unmark_unbilled_set(7, 100);
        writes.delete_metered_through(8);
        store.commit(writes).await.unwrap();
        assert!(!store.is_unbilled_set(7, 100).unwrap());
        assert_eq!(store.metered_through(8).unwrap(), None);
        drop(store);
        committer.join();
    }
}
