//! Topics: a topic's record (its identity and settings) and its log
//! counters; deleting a topic's rows.

use std::collections::VecDeque;

use crate::broker::topic::{OverflowPolicy, SetSummary, TopicSettings, TopicState};
use crate::storage::keys;
use crate::storage::records::{TopicRecord, TopicStateRecord};
use crate::storage::{StorageResult, Store, WriteSet};

/// A topic row's overflow policy: reclaim the oldest.
const RECLAIM_OLDEST: i32 = 1;
/// A topic row's overflow policy: refuse produce.
const REFUSE_PRODUCE: i32 = 2;

impl Store {
    /// Every stored topic, in key order (by tenant, then name).
    pub fn topics(&self) -> StorageResult<Vec<TopicSettings>> {
        self.scan::<TopicRecord>(&[keys::TOPIC])
            .map(|item| item.map(|(_, row)| settings_of(row)))
            .collect()
    }

    /// A topic's log counters as last stored (zeros when none are). The
    /// next offset is above every offset a frame of the topic in the segments
    /// holds (found at open), so offsets of writes that never committed are
    /// skipped, never reused.
    pub fn topic_state(&self, topic_id: u64) -> StorageResult<TopicState> {
        let row: TopicStateRecord = self.get(&keys::topic_state(topic_id))?.unwrap_or_default();
        Ok(TopicState {
            next_offset: row.next_offset.max(self.frame_high_water(topic_id)),
            expired_messages: row.expired_messages,
            reclaimed_messages: row.reclaimed_messages,
            last_publish_ms: row.last_publish_ms,
            storage_metered_ms: row.storage_metered_ms,
        })
    }

    /// Adds the deletion of a topic's rows to `writes`: its record, its
    /// counters, every set header and dedup entry, and the release of the
    /// blobs of `sets` (its retained sets).
    pub fn delete_topic(
        &self,
        topic: &TopicSettings,
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
    pub fn put_topic(&mut self, topic: &TopicSettings) {
        let row = TopicRecord {
            id: topic.id,
            tenant: topic.tenant.clone(),
            name: topic.name.clone(),
            expiry_seconds: topic.expiry_seconds,
            max_bytes: topic.max_bytes,
            overflow_policy: match topic.overflow_policy {
                OverflowPolicy::ReclaimOldest => RECLAIM_OLDEST,
                OverflowPolicy::RefuseProduce => REFUSE_PRODUCE,
            },
            dedup_window_seconds: topic.dedup_window_seconds,
            created_ms: topic.created_ms,
        };
        self.put(keys::topic(&topic.tenant, &topic.name), &row);
    }

    /// Stores a topic's log counters.
    pub fn put_topic_state(&mut self, topic_id: u64, state: &TopicState) {
        let row = TopicStateRecord {
            next_offset: state.next_offset,
            expired_messages: state.expired_messages,
            reclaimed_messages: state.reclaimed_messages,
            last_publish_ms: state.last_publish_ms,
            storage_metered_ms: state.storage_metered_ms,
        };
        self.put(keys::topic_state(topic_id), &row);
    }
}

/// A stored topic row as settings. Only policy 2 refuses, as it always did:
/// any other stored number reclaims.
fn settings_of(row: TopicRecord) -> TopicSettings {
    TopicSettings {
        id: row.id,
        tenant: row.tenant,
        name: row.name,
        expiry_seconds: row.expiry_seconds,
        max_bytes: row.max_bytes,
        overflow_policy: if row.overflow_policy == REFUSE_PRODUCE {
            OverflowPolicy::RefuseProduce
        } else {
            OverflowPolicy::ReclaimOldest
        },
        dedup_window_seconds: row.dedup_window_seconds,
        created_ms: row.created_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed methods write the rows, under the keys, they always did.
    #[tokio::test]
    async fn a_topic_and_its_counters_keep_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let topic = TopicSettings {
            id: 7,
            tenant: "acme".into(),
            name: "telemetry".into(),
            expiry_seconds: 60,
            max_bytes: 1000,
            overflow_policy: OverflowPolicy::RefuseProduce,
            dedup_window_seconds: 5,
            created_ms: 42,
        };
        let state = TopicState {
            next_offset: 10,
            expired_messages: 2,
            reclaimed_messages: 3,
            last_publish_ms: 99,
            storage_metered_ms: 77,
        };
        let mut writes = WriteSet::new();
        writes.put_topic(&topic);
        writes.put_topic_state(7, &state);
        store.commit(writes).await.unwrap();

        let row: TopicRecord = store
            .get(&keys::topic("acme", "telemetry"))
            .unwrap()
            .unwrap();
        assert_eq!((row.id, row.overflow_policy, row.created_ms), (7, 2, 42));
        let row: TopicStateRecord = store.get(&keys::topic_state(7)).unwrap().unwrap();
        assert_eq!((row.next_offset, row.last_publish_ms), (10, 99));
        assert_eq!(store.topics().unwrap(), vec![topic.clone()]);
        assert_eq!(store.topic_state(7).unwrap(), state);
        assert_eq!(store.topic_state(8).unwrap(), TopicState::default());

        let mut writes = WriteSet::new();
        store
            .delete_topic(&topic, &VecDeque::new(), &mut writes)
            .unwrap();
        store.commit(writes).await.unwrap();
        assert!(store.topics().unwrap().is_empty());
        assert_eq!(store.topic_state(7).unwrap(), TopicState::default());
    }
}
