//! Dedup entries: the offset and publish time of the message that first used
//! a dedup_id in a topic, by topic and dedup_id.

use crate::storage::keys;
use crate::storage::records::DedupRecord;
use crate::storage::{StorageResult, Store, WriteSet};

impl Store {
    /// The stored entry of `dedup_id` in a topic, if any.
    pub fn dedup_entry(&self, topic_id: u64, dedup_id: &str) -> StorageResult<Option<DedupRecord>> {
        self.get(&keys::dedup(topic_id, dedup_id))
    }

    /// Adds the deletion of every stored dedup entry of a topic for which
    /// `expired` holds to `writes`.
    pub fn delete_dedup_where(
        &self,
        topic_id: u64,
        expired: impl Fn(&DedupRecord) -> bool,
        writes: &mut WriteSet,
    ) -> StorageResult<()> {
        for item in self.scan::<DedupRecord>(&keys::id_prefix(keys::DEDUP, topic_id)) {
            let (key, record) = item?;
            if expired(&record) {
                writes.delete(key);
            }
        }
        Ok(())
    }
}

impl WriteSet {
    /// Stores the entry of `dedup_id` in a topic.
    pub fn put_dedup(&mut self, topic_id: u64, dedup_id: &str, entry: &DedupRecord) {
        self.put(keys::dedup(topic_id, dedup_id), entry);
    }
}
