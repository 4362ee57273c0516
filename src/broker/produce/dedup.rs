//! Dedup: a message whose dedup_id was used within the topic's window is a
//! duplicate (not stored, not billed, answered with the original's offset).
//! The original may be earlier in the same batch, in a batch combined into
//! the same set before it, queued for commit, or stored.

use std::collections::HashMap;
use std::sync::Arc;

use super::{ProduceOutcome, ProducedMessage};
use crate::broker::topic::Topic;
use crate::broker::{Broker, Message};
use crate::crypto::TenantKeys;
use crate::error::Result;
use crate::metering::units_for_bytes;
use crate::storage::WriteSet;
use crate::sync::MutexExt;

/// What a topic remembers of a dedup_id within its window: the message that
/// first used it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupEntry {
    /// The original message's offset.
    pub offset: u64,
    /// When it was published, Unix ms.
    pub publish_ms: i64,
}

impl DedupEntry {
    /// Whether the entry still counts at `now` under a window of `window_ms`.
    pub fn within(&self, window_ms: i64, now: i64) -> bool {
        self.publish_ms + window_ms > now
    }
}

/// A batch sorted into what would be stored and what duplicates an earlier
/// message. The messages stay with the batch until it is taken into a set.
pub(super) struct SortedBatch {
    /// What happens to each message, in batch order.
    pub(super) outcome: ProduceOutcome,
    /// How many of them are new.
    pub(super) new: usize,
    /// Their counted bytes.
    pub(super) bytes: u64,
    /// The dedup_ids of the new messages, with their offsets (each id
    /// copied once from its message, then shared).
    pub(super) dedup: HashMap<Arc<str>, u64>,
}

impl Broker {
    /// Decides, message by message, what is new (getting the next offset
    /// from `first_offset` on) and what is a duplicate. `sizes` are the
    /// messages' counted bytes. `earlier` holds the dedup_ids of the
    /// batches combined into the same set before this one (a duplicate of
    /// one of them is a duplicate). Stored dedup ids are looked up by their
    /// keyed hash under the tenant's `keys`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sort_out_duplicates(
        &self,
        topic: &Topic,
        keys: &TenantKeys,
        messages: &[Message],
        sizes: &[u64],
        first_offset: u64,
        now: i64,
        window_ms: i64,
        earlier: &HashMap<Arc<str>, u64>,
    ) -> Result<SortedBatch> {
        let mut batch = SortedBatch {
            outcome: ProduceOutcome {
                results: Vec::with_capacity(messages.len()),
                units: 0,
            },
            new: 0,
            bytes: 0,
            dedup: HashMap::new(),
        };
        for (message, &size) in messages.iter().zip(sizes) {
            if !message.dedup_id.is_empty() {
                let original = match batch
                    .dedup
                    .get(message.dedup_id.as_str())
                    .or_else(|| earlier.get(message.dedup_id.as_str()))
                {
                    Some(&offset) => Some(offset),
                    None => self.original_of(topic, keys, &message.dedup_id, now, window_ms)?,
                };
                if let Some(offset) = original {
                    batch.outcome.results.push(ProducedMessage {
                        offset,
                        duplicate: true,
                        units: 0,
                    });
                    continue;
                }
            }
            let offset = first_offset + batch.new as u64;
            if !message.dedup_id.is_empty() {
                batch
                    .dedup
                    .insert(Arc::from(message.dedup_id.as_str()), offset);
            }
            let units = units_for_bytes(size);
            batch.outcome.units += units;
            batch.bytes += size;
            batch.outcome.results.push(ProducedMessage {
                offset,
                duplicate: false,
                units,
            });
            batch.new += 1;
        }
        Ok(batch)
    }

    /// The offset of the message that first used `dedup_id` within the
    /// window, if any.
    fn original_of(
        &self,
        topic: &Topic,
        keys: &TenantKeys,
        dedup_id: &str,
        now: i64,
        window_ms: i64,
    ) -> Result<Option<u64>> {
        let recent = topic
            .uncommitted_dedup
            .lock_unpoisoned()
            .get(dedup_id)
            .copied();
        if let Some(entry) = recent.filter(|e| e.within(window_ms, now)) {
            return Ok(Some(entry.offset));
        }
        let stored = self
            .store
            .dedup_entry(topic.id, &keys.dedup_tag(topic.id, dedup_id))?;
        Ok(stored
            .filter(|e| e.within(window_ms, now))
            .map(|e| e.offset))
    }
}

/// Stores the new messages' dedup_ids in `writes` (as their keyed hashes
/// under the tenant's `keys`: the id itself is never stored) and remembers
/// them as queued for commit (so a produce before the commit sees them; each
/// produce forgets its own once the commit is done, `PendingProduce::wait`).
pub(super) fn remember_dedup_ids(
    topic: &Topic,
    keys: &TenantKeys,
    dedup: &HashMap<Arc<str>, u64>,
    now: i64,
    writes: &mut WriteSet,
) {
    let entry = |offset: u64| DedupEntry {
        offset,
        publish_ms: now,
    };
    for (dedup_id, offset) in dedup {
        writes.put_dedup(
            topic.id,
            &keys.dedup_tag(topic.id, dedup_id),
            &entry(*offset),
        );
    }
    if !dedup.is_empty() {
        let mut uncommitted = topic.uncommitted_dedup.lock_unpoisoned();
        for (id, offset) in dedup {
            uncommitted.insert(Arc::clone(id), entry(*offset));
        }
    }
}
