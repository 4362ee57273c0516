//! Dedup: the original of a dedup_id within the topic's window, whether it
//! is still queued for commit or already stored.

use crate::broker::topic::Topic;
use crate::broker::Broker;
use crate::error::Result;
use crate::storage::keys;
use crate::storage::records::DedupRecord;
use crate::sync::MutexExt;

impl Broker {
    /// The offset of the message that first used `dedup_id` within the
    /// window, if any.
    pub(super) fn original_of(
        &self,
        topic: &Topic,
        dedup_id: &str,
        now: i64,
        window_ms: i64,
    ) -> Result<Option<u64>> {
        let recent = topic
            .uncommitted_dedup
            .lock_unpoisoned()
            .get(dedup_id)
            .copied();
        if let Some((offset, publish_ms)) = recent {
            if publish_ms + window_ms > now {
                return Ok(Some(offset));
            }
        }
        let stored: Option<DedupRecord> = self.store.get(&keys::dedup(topic.id, dedup_id))?;
        Ok(stored
            .filter(|d| d.publish_ms + window_ms > now)
            .map(|d| d.offset))
    }
}
