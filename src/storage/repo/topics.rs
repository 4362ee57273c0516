//! Topics: a topic's record (its identity and settings) and its log
//! counters; deleting a topic's rows.

use std::collections::VecDeque;

use crate::broker::topic::{SetSummary, TopicState};
use crate::storage::keys;
use crate::storage::records::{TopicRecord, TopicStateRecord};
use crate::storage::{StorageResult, Store, WriteSet};

impl Store {
    /// Every stored topic, in key order (by tenant, then name).
    pub fn topics(&self) -> StorageResult<Vec<TopicRecord>> {
        self.scan::<TopicRecord>(&[keys::TOPIC])
            .map(|item| item.map(|(_, r)| r))
            .collect()
    }

    /// A topic's log counters as last stored (zeros when none are).
    pub fn topic_state(&self, topic_id: u64) -> StorageResult<TopicState> {
        let row: TopicStateRecord = self.get(&keys::topic_state(topic_id))?.unwrap_or_default();
        Ok(TopicState {
            next_offset: row.next_offset,
            expired_messages: row.expired_messages,
            reclaimed_messages: row.reclaimed_messages,
            last_publish_ms: row.last_publish_ms,
        })
    }

    /// Adds the deletion of a topic's rows to `writes`: its record, its
    /// counters, every set header and dedup entry, and the release of the
    /// blobs of `sets` (its retained sets).
    pub fn delete_topic(
        &self,
        topic: &TopicRecord,
        sets: &VecDeque<SetSummary>,
        writes: &mut WriteSet,
    ) -> StorageResult<()> {
        for set in sets {
            writes.release_set(set);
        }
        self.delete_keyspaces(&[keys::SET_HEADER, keys::DEDUP], topic.id, writes)?;
        writes.delete(keys::topic_state(topic.id));
        writes.delete(keys::topic(&topic.tenant, &topic.name));
        Ok(())
    }

    /// Adds the deletion of every key of `id` in each of `keyspaces` to
    /// `writes` (a topic's or a subscription's rows, on deletion).
    pub(super) fn delete_keyspaces(
        &self,
        keyspaces: &[u8],
        id: u64,
        writes: &mut WriteSet,
    ) -> StorageResult<()> {
        for &keyspace in keyspaces {
            for key in self.scan_keys(&keys::id_prefix(keyspace, id)) {
                writes.delete(key?);
            }
        }
        Ok(())
    }
}

impl WriteSet {
    /// Stores a topic's record (on creation and on a settings change).
    pub fn put_topic(&mut self, topic: &TopicRecord) {
        self.put(keys::topic(&topic.tenant, &topic.name), topic);
    }

    /// Stores a topic's log counters.
    pub fn put_topic_state(&mut self, topic_id: u64, state: &TopicState) {
        let row = TopicStateRecord {
            next_offset: state.next_offset,
            expired_messages: state.expired_messages,
            reclaimed_messages: state.reclaimed_messages,
            last_publish_ms: state.last_publish_ms,
        };
        self.put(keys::topic_state(topic_id), &row);
    }
}
