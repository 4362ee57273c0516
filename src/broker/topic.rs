//! A topic: its settings, its log (message sets in offset order), retention,
//! and its subscriptions.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{watch, Mutex};

use super::subscription::Subscription;
use crate::storage::keys;
use crate::storage::records::{
    BlobRef, MessageSetRecord, SetHeaderRecord, StoredMessage, TopicRecord, TopicStateRecord,
};
use crate::storage::{StorageResult, Store, WriteSet};
use crate::sync::RwLockExt;

/// Overflow policy value: reclaim the oldest messages (the default).
pub const OVERFLOW_RECLAIM: i32 = 1;
/// Overflow policy value: refuse the produce.
pub const OVERFLOW_REFUSE: i32 = 2;

/// The in-memory summary of one stored message set.
#[derive(Debug, Clone, Copy)]
pub struct SetSummary {
    /// Offset of its first message.
    pub first_offset: u64,
    /// Messages in it.
    pub count: u32,
    /// Their counted bytes.
    pub bytes: u64,
    /// Their shared publish time.
    pub publish_ms: i64,
    /// Where the set's messages are in the segment files.
    pub blob: BlobRef,
}

impl SetSummary {
    /// One past its last offset.
    pub fn end(&self) -> u64 {
        self.first_offset + self.count as u64
    }
}

/// The write side of a topic's log. Held (async) across building and
/// enqueueing a write, so commit order is offset order.
pub struct TopicLog {
    /// Counters as stored.
    pub state: TopicStateRecord,
    /// Retained message sets, oldest first.
    pub sets: VecDeque<SetSummary>,
    /// Sum of the retained sets' bytes.
    pub bytes: u64,
}

impl TopicLog {
    /// The oldest retained offset (the next offset when empty).
    pub fn first_offset(&self) -> u64 {
        self.sets
            .front()
            .map(|s| s.first_offset)
            .unwrap_or(self.state.next_offset)
    }

    /// Retained messages.
    pub fn messages(&self) -> u64 {
        self.sets.iter().map(|s| s.count as u64).sum()
    }

    /// Drops the oldest set, adding its deletion to `writes`.
    pub fn drop_oldest(&mut self, topic_id: u64, writes: &mut WriteSet) -> Option<SetSummary> {
        let set = self.sets.pop_front()?;
        self.bytes -= set.bytes;
        writes.delete(keys::set_header(topic_id, set.first_offset));
        writes.release_blob(set.blob);
        Some(set)
    }

    /// Appends a set of messages published at `publish_ms` (never earlier
    /// than the previous set): the messages go to the segment files now, the
    /// set's header into `writes`. Returns the first offset. The caller has
    /// checked size caps; on error nothing changed.
    pub fn append(
        &mut self,
        store: &Store,
        topic_id: u64,
        messages: Vec<StoredMessage>,
        bytes: u64,
        publish_ms: i64,
        writes: &mut WriteSet,
    ) -> StorageResult<u64> {
        let first_offset = self.state.next_offset;
        let count = messages.len() as u32;
        let publish_ms = publish_ms.max(self.state.last_publish_ms);
        let encoded = prost::Message::encode_to_vec(&MessageSetRecord {
            publish_ms,
            messages,
        });
        let blob = store.append_blob(&encoded)?;
        writes.put(
            keys::set_header(topic_id, first_offset),
            &SetHeaderRecord {
                count,
                bytes,
                publish_ms,
                blob: Some(blob),
            },
        );
        self.sets.push_back(SetSummary {
            first_offset,
            count,
            bytes,
            publish_ms,
            blob,
        });
        self.bytes += bytes;
        self.state.next_offset += count as u64;
        self.state.last_publish_ms = publish_ms;
        Ok(first_offset)
    }

    /// The first offset published at or after `timestamp_ms` (the next offset
    /// when none is).
    pub fn offset_at_time(&self, timestamp_ms: i64) -> u64 {
        let index = self.sets.partition_point(|s| s.publish_ms < timestamp_ms);
        self.sets
            .get(index)
            .map(|s| s.first_offset)
            .unwrap_or(self.state.next_offset)
    }

    /// Publish time of the message at `offset`, if retained.
    pub fn publish_time_of(&self, offset: u64) -> Option<i64> {
        let index = self.sets.partition_point(|s| s.end() <= offset);
        self.sets
            .get(index)
            .filter(|s| s.first_offset <= offset)
            .map(|s| s.publish_ms)
    }
}

/// A topic of one tenant.
pub struct Topic {
    /// Internal id (storage keys).
    pub id: u64,
    /// Owning tenant.
    pub tenant: String,
    /// Name within the tenant.
    pub name: String,
    settings: RwLock<TopicRecord>,
    /// The log (write side).
    pub log: Mutex<TopicLog>,
    /// One past the newest durable offset; consumers see only what is durable.
    visible_end: watch::Sender<u64>,
    /// The oldest retained offset, readable without the log lock.
    first_offset: AtomicU64,
    /// Retained bytes of this topic as last synced from the log.
    stored_bytes: AtomicU64,
    /// Retained bytes of all the tenant's topics (shared between them).
    tenant_bytes: Arc<AtomicU64>,
    /// Up to when retained storage has been metered (i64::MIN: not yet).
    pub storage_metered_until: AtomicI64,
    /// Subscriptions by name.
    pub subscriptions: RwLock<BTreeMap<String, Arc<Subscription>>>,
    /// dedup_ids queued for commit but not yet in the store: id -> (offset, publish ms).
    pub uncommitted_dedup: std::sync::Mutex<HashMap<String, (u64, i64)>>,
    deleted: AtomicBool,
}

impl Topic {
    /// Builds a topic from its stored parts.
    pub fn new(record: TopicRecord, log: TopicLog, tenant_bytes: Arc<AtomicU64>) -> Self {
        let visible = log.state.next_offset;
        let first = log.first_offset();
        tenant_bytes.fetch_add(log.bytes, Ordering::SeqCst);
        let stored = log.bytes;
        Topic {
            id: record.id,
            tenant: record.tenant.clone(),
            name: record.name.clone(),
            settings: RwLock::new(record),
            log: Mutex::new(log),
            visible_end: watch::channel(visible).0,
            first_offset: AtomicU64::new(first),
            stored_bytes: AtomicU64::new(stored),
            tenant_bytes,
            storage_metered_until: AtomicI64::new(i64::MIN),
            subscriptions: RwLock::new(BTreeMap::new()),
            uncommitted_dedup: std::sync::Mutex::new(HashMap::new()),
            deleted: AtomicBool::new(false),
        }
    }

    /// A copy of the settings.
    pub fn settings(&self) -> TopicRecord {
        self.settings.read_unpoisoned().clone()
    }

    /// Replaces the settings (after they were stored).
    pub fn set_settings(&self, record: TopicRecord) {
        *self.settings.write_unpoisoned() = record;
    }

    /// One past the newest durable offset.
    pub fn visible_end(&self) -> u64 {
        *self.visible_end.borrow()
    }

    /// A receiver that changes when new messages become durable.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.visible_end.subscribe()
    }

    /// Publishes a new durable end (called after the commit).
    pub fn publish_visible_end(&self, end: u64) {
        self.visible_end.send_if_modified(|current| {
            if end > *current {
                *current = end;
                true
            } else {
                false
            }
        });
    }

    /// The oldest retained offset.
    pub fn first_offset(&self) -> u64 {
        self.first_offset.load(Ordering::SeqCst)
    }

    /// Publishes what the log now holds: the oldest retained offset and the
    /// retained bytes (also to the tenant's storage total). Call after every
    /// change to the log, with its lock held.
    pub fn sync_from(&self, log: &TopicLog) {
        self.first_offset
            .store(log.first_offset(), Ordering::SeqCst);
        let before = self.stored_bytes.swap(log.bytes, Ordering::SeqCst);
        if log.bytes >= before {
            self.tenant_bytes
                .fetch_add(log.bytes - before, Ordering::SeqCst);
        } else {
            self.tenant_bytes
                .fetch_sub(before - log.bytes, Ordering::SeqCst);
        }
    }

    /// Retained bytes of this topic.
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes.load(Ordering::SeqCst)
    }

    /// Retained bytes of all the tenant's topics.
    pub fn tenant_bytes(&self) -> u64 {
        self.tenant_bytes.load(Ordering::SeqCst)
    }

    /// Removes this topic's bytes from the tenant's total (on deletion).
    pub fn forget_bytes(&self) {
        let before = self.stored_bytes.swap(0, Ordering::SeqCst);
        self.tenant_bytes.fetch_sub(before, Ordering::SeqCst);
    }

    /// A subscription by name.
    pub fn subscription(&self, name: &str) -> Option<Arc<Subscription>> {
        self.subscriptions.read_unpoisoned().get(name).cloned()
    }

    /// All subscriptions.
    pub fn subscription_list(&self) -> Vec<Arc<Subscription>> {
        self.subscriptions
            .read_unpoisoned()
            .values()
            .cloned()
            .collect()
    }

    /// Marks the topic deleted and wakes every consumer so they stop.
    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        for sub in self.subscription_list() {
            sub.mark_deleted();
        }
        self.visible_end.send_modify(|_| {});
    }

    /// True once deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(sets: &[(u64, u32, i64)]) -> TopicLog {
        let mut log = TopicLog {
            state: TopicStateRecord::default(),
            sets: VecDeque::new(),
            bytes: 0,
        };
        for &(first, count, publish_ms) in sets {
            log.sets.push_back(SetSummary {
                first_offset: first,
                count,
                bytes: 10,
                publish_ms,
                blob: BlobRef::default(),
            });
            log.state.next_offset = first + count as u64;
        }
        log
    }

    #[test]
    fn offset_at_time_finds_first_set_at_or_after() {
        let log = log_with(&[(0, 10, 100), (10, 5, 200), (15, 1, 300)]);
        assert_eq!(log.offset_at_time(0), 0);
        assert_eq!(log.offset_at_time(100), 0);
        assert_eq!(log.offset_at_time(101), 10);
        assert_eq!(log.offset_at_time(300), 15);
        assert_eq!(log.offset_at_time(301), 16);
        assert_eq!(log.publish_time_of(12), Some(200));
        assert_eq!(log.publish_time_of(16), None);
    }
}
