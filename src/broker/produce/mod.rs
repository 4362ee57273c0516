//! Produce: validate a batch against the plan, drop duplicates by dedup_id,
//! make room under the topic's size cap, append one message set, and answer
//! only after the group commit that made it durable.
//!
//! A produce runs in this order, under the topic's log lock from the dedup
//! step on (so offsets are handed out, and commits queued, in order):
//!
//! - `admit`: the policy checks: data plane, scope, message shapes and
//!   devices first; the topic's cap, the tenant's storage and the produce
//!   rate once the batch's stored size is known.
//! - `dedup`: sorting a batch into new messages and duplicates of one
//!   within the dedup window; remembering the new ones' dedup_ids.
//! - `room`: making room under a topic's size cap and appending (also
//!   for dead letters).
//! - `pending`: [`PendingProduce`], a queued batch that answers once durable.

mod admit;
mod dedup;
mod pending;
mod room;

pub use dedup::DedupEntry;
pub use pending::PendingProduce;
pub(super) use room::Room;

use super::device_usage::Billed;
use super::{Broker, Message};
use crate::error::{Error, Result};
use crate::storage::WriteSet;
use crate::tenancy::TenantKey;
use dedup::remember_dedup_ids;
use pending::StoredFigures;

/// What happened to one message of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducedMessage {
    /// Its offset (the original's, for a duplicate).
    pub offset: u64,
    /// A duplicate by dedup_id: not stored, not billed.
    pub duplicate: bool,
    /// Units billed for it.
    pub units: u64,
}

/// The result of a produce, in batch order.
#[derive(Debug, Clone, Default)]
pub struct ProduceOutcome {
    /// One per message.
    pub results: Vec<ProducedMessage>,
    /// Sum of the units billed.
    pub units: u64,
}

impl Broker {
    /// Produces a batch and waits until it is durable.
    pub async fn produce(
        &self,
        key: &TenantKey,
        topic: &str,
        messages: Vec<Message>,
    ) -> Result<ProduceOutcome> {
        self.submit_produce(key, topic, messages)
            .await?
            .wait()
            .await
    }

    /// Checks and queues a batch; the returned handle resolves when durable.
    /// A refused batch changes nothing.
    pub async fn submit_produce(
        &self,
        key: &TenantKey,
        topic_name: &str,
        messages: Vec<Message>,
    ) -> Result<PendingProduce> {
        let (plan, sizes) = self.admit_batch(key, &messages)?;
        let topic = self.topic(&key.tenant, topic_name)?;
        let keys = self.tenancy.data_keys(&key.tenant)?;
        let window_ms = topic.settings().dedup_window_seconds as i64 * 1000;

        let mut log = topic.log.lock().await;
        if topic.is_deleted() {
            return Err(Error::not_found("topic", topic_name));
        }
        let now = self.clock.now_ms().max(log.state.last_publish_ms);
        let batch = self.sort_out_duplicates(
            &topic,
            &keys,
            messages,
            &sizes,
            log.state.next_offset,
            now,
            window_ms,
        )?;
        if batch.stored.is_empty() {
            return Ok(PendingProduce::nothing_stored(batch.outcome, topic.clone()));
        }
        let room = self.admit_storage(
            &key.tenant,
            &plan,
            &topic,
            &log,
            batch.bytes,
            batch.outcome.units,
        )?;

        let mut writes = WriteSet::new();
        // The retained bytes change: close the storage interval they held
        // (reopened as it was if the append fails and nothing changes).
        let metered = log.state.storage_metered_ms;
        self.close_storage_interval(&topic, &mut log, now, &mut writes);
        let stored = StoredFigures {
            metrics: Some(self.metrics.clone()),
            messages: batch.stored.len() as u64,
            bytes: batch.bytes,
            reclaimed: 0,
        };
        // A set without device ids right at the metered-through offset has
        // nothing to fold: the offset passes it in memory (not stored; after a
        // restart the fold reads it once more and adds nothing).
        let first_offset = log.state.next_offset;
        let nothing_to_fold = batch.stored.iter().all(|m| m.device_id.is_empty());
        // If appending fails, the log is unchanged and nothing is queued.
        let appended = room.append(
            &self.store,
            &keys,
            &self.calendar,
            Billed::Produced,
            &topic,
            &mut log,
            batch.stored,
            now,
            &mut writes,
        );
        let reclaimed = match appended {
            Ok(reclaimed) => reclaimed,
            Err(e) => {
                log.state.storage_metered_ms = metered;
                return Err(e);
            }
        };
        if nothing_to_fold && log.device_metered_through == first_offset {
            log.device_metered_through = log.state.next_offset;
        }
        let dedup_ids = remember_dedup_ids(&topic, &keys, &batch.dedup, now, &mut writes);
        // The usage rides in the same atomic write as the messages it counts:
        // the tenant's and the topic's; the per-device breakdown is derived
        // from the stored set later (`broker/device_usage.rs`).
        batch
            .usage
            .write(&keys, self.calendar.day_of(now), &mut writes);
        // The new set's header records the new end and publish time
        // (start-up takes them from the newest header); the stored counters
        // carry the storage interval just closed (and any reclaim).
        writes.put_topic_state(topic.id, &log.state);
        let new_end = log.state.next_offset;
        let visible = topic.clone();
        let commit = self
            .store
            .enqueue(
                writes,
                Some(Box::new(move || visible.publish_visible_end(new_end))),
            )
            .await?;
        drop(log);
        Ok(PendingProduce {
            commit: Some(commit),
            outcome: batch.outcome,
            topic,
            dedup_ids,
            stored: StoredFigures {
                reclaimed,
                ..stored
            },
        })
    }
}
