//! Dedup entries: the offset and publish time of the message that first used
//! a dedup_id in a topic, by topic and the dedup_id's keyed hash
//! ([`DedupTag`], HMAC-SHA256 under a key derived from the tenant's data key):
//! the id itself is never stored.

use crate::broker::produce::DedupEntry;
use crate::crypto::DedupTag;
use crate::storage::keys;
use crate::storage::records::DedupRecord;
use crate::storage::{StorageResult, Store, WriteSet};

impl Store {
    /// The stored entry of the dedup id hashed to `tag` in a topic, if any.
    pub fn dedup_entry(&self, topic_id: u64, tag: &DedupTag) -> StorageResult<Option<DedupEntry>> {
        let row: Option<DedupRecord> = self.get(&keys::dedup(topic_id, &tag.0))?;
        Ok(row.map(|row| entry_of(&row)))
    }

    /// Adds the deletion of every stored dedup entry of a topic for which
    /// `expired` holds to `writes`.
    pub fn delete_dedup_where(
        &self,
        topic_id: u64,
        expired: impl Fn(&DedupEntry) -> bool,
        writes: &mut WriteSet,
    ) -> StorageResult<()> {
        for item in self.scan::<DedupRecord>(&keys::id_prefix(keys::DEDUP, topic_id)) {
            let (key, row) = item?;
            if expired(&entry_of(&row)) {
                writes.delete(key);
            }
        }
        Ok(())
    }
}

impl WriteSet {
    /// Stores the entry of the dedup id hashed to `tag` in a topic.
    pub fn put_dedup(&mut self, topic_id: u64, tag: &DedupTag, entry: &DedupEntry) {
        let row = DedupRecord {
            offset: entry.offset,
            publish_ms: entry.publish_ms,
        };
        self.put(keys::dedup(topic_id, &tag.0), &row);
    }
}

/// A stored dedup row as an entry.
fn entry_of(row: &DedupRecord) -> DedupEntry {
    DedupEntry {
        offset: row.offset,
        publish_ms: row.publish_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_keep_their_row_and_are_swept_by_the_predicate() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let mut writes = WriteSet::new();
        for (id, publish_ms) in [("old", 10), ("new", 20)] {
            let entry = DedupEntry {
                offset: publish_ms as u64,
                publish_ms,
            };
            writes.put_dedup(3, &DedupTag(id.as_bytes().to_vec()), &entry);
        }
        store.commit(writes).await.unwrap();
        let row: DedupRecord = store.get(&keys::dedup(3, b"old")).unwrap().unwrap();
        assert_eq!((row.offset, row.publish_ms), (10, 10));

        let mut writes = WriteSet::new();
        store
            .delete_dedup_where(3, |e| e.publish_ms < 15, &mut writes)
            .unwrap();
        store.commit(writes).await.unwrap();
        let tag = |id: &str| DedupTag(id.as_bytes().to_vec());
        assert_eq!(store.dedup_entry(3, &tag("old")).unwrap(), None);
        let kept = DedupEntry {
            offset: 20,
            publish_ms: 20,
        };
        assert_eq!(store.dedup_entry(3, &tag("new")).unwrap(), Some(kept));
    }
}
