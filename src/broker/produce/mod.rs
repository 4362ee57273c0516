//! Produce: validate a batch against the plan, drop duplicates by dedup_id,
//! make room under the topic's size cap, append one message set, and answer
//! only after the group commit that made it durable.
//!
//! - [`pending`]: [`PendingProduce`], a queued batch that answers once durable.
//! - [`dedup`]: finding the original of a dedup_id within its window.
//! - [`room`]: making room under a topic's size cap (also for dead letters).

mod dedup;
mod pending;
mod room;

pub use pending::PendingProduce;
pub(super) use room::Room;

use std::collections::HashMap;

use super::Broker;
use crate::error::{Error, Result};
use crate::metering::{units_for_bytes, UsageDelta};
use crate::observability::name;
use crate::quota::{human_bytes, MessageShape};
use crate::storage::records::{DedupRecord, StoredMessage};
use crate::storage::{keys, WriteSet};
use crate::sync::MutexExt;
use crate::tenancy::{Scope, TenantKey};
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
        messages: Vec<StoredMessage>,
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
        messages: Vec<StoredMessage>,
    ) -> Result<PendingProduce> {
        self.tenancy.check_data_plane(&key.tenant)?;
        key.require(Scope::Produce, Some(topic_name))?;
        let plan = self.tenancy.plan_of(&key.tenant);
        let shapes: Vec<MessageShape<'_>> = messages
            .iter()
            .map(|m| MessageShape {
                payload_len: m.payload.len(),
                headers: m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
                device_id: &m.device_id,
                dedup_id: &m.dedup_id,
            })
            .collect();
        let sizes = plan.check_batch(&shapes)?;
        drop(shapes);
        for message in &messages {
            self.tenancy.check_device(&key.tenant, &message.device_id)?;
        }
        let topic = self.topic(&key.tenant, topic_name)?;
        let settings = topic.settings();

        let mut log = topic.log.lock().await;
        if topic.is_deleted() {
            return Err(Error::not_found("topic", topic_name));
        }
        let now = self.clock.now_ms().max(log.state.last_publish_ms);
        let window_ms = settings.dedup_window_seconds as i64 * 1000;

        // Decide, message by message, what is new and what is a duplicate.
        let mut results = Vec::with_capacity(messages.len());
        let mut stored = Vec::with_capacity(messages.len());
        let mut stored_bytes = 0u64;
        let mut units = 0u64;
        let mut batch_dedup: HashMap<String, u64> = HashMap::new();
        let mut usage = UsageDelta::default();
        let mut writes = WriteSet::new();
        let first_offset = log.state.next_offset;
        for (message, size) in messages.into_iter().zip(sizes) {
            if !message.dedup_id.is_empty() {
                let original = batch_dedup
                    .get(&message.dedup_id)
                    .copied()
                    .or(self.original_of(&topic, &message.dedup_id, now, window_ms)?);
                if let Some(offset) = original {
                    results.push(ProducedMessage {
                        offset,
                        duplicate: true,
                        units: 0,
                    });
                    continue;
                }
            }
            let offset = first_offset + stored.len() as u64;
            if !message.dedup_id.is_empty() {
                batch_dedup.insert(message.dedup_id.clone(), offset);
            }
            let message_units = units_for_bytes(size.bytes);
            usage.produced(topic_name, &message.device_id, message_units);
            units += message_units;
            stored_bytes += size.bytes;
            results.push(ProducedMessage {
                offset,
                duplicate: false,
                units: message_units,
            });
            stored.push(message);
        }
        let outcome = ProduceOutcome { results, units };
        if stored.is_empty() {
            return Ok(PendingProduce {
                commit: None,
                outcome,
                topic: topic.clone(),
                dedup_ids: Vec::new(),
                stored: StoredFigures::default(),
            });
        }

        let room = Room::needed(&topic, &log, stored_bytes).inspect_err(|e| {
            if matches!(e, Error::ResourceExhausted { .. }) {
                self.metrics.count_labeled(
                    name::QUOTA_REFUSALS,
                    &[("kind", "topic_full".into())],
                    1,
                );
            }
        })?;
        let tenant_bytes = topic.tenant_bytes() - room.freed.min(topic.tenant_bytes());
        if tenant_bytes + stored_bytes > plan.max_tenant_storage_bytes {
            self.metrics.count_labeled(
                name::QUOTA_REFUSALS,
                &[("kind", "tenant_storage".into())],
                1,
            );
            return Err(Error::exhausted(format!(
                "tenant storage quota: the plan allows {} bytes ({}) of retained messages and \
                 {tenant_bytes} are in use; this batch needs {stored_bytes} more",
                plan.max_tenant_storage_bytes,
                human_bytes(plan.max_tenant_storage_bytes)
            )));
        }
        // Admission comes last: only a batch that will be stored spends rate.
        self.admission
            .admit_produce(&key.tenant, &plan, outcome.units)?;
        let stored_messages = stored.len() as u64;
        // If appending fails, the log is unchanged and nothing is queued.
        let reclaimed = room.append(&self.store, &topic, &mut log, stored, now, &mut writes)?;
        for (dedup_id, offset) in &batch_dedup {
            writes.put(
                keys::dedup(topic.id, dedup_id),
                &DedupRecord {
                    offset: *offset,
                    publish_ms: now,
                },
            );
        }
        // The usage rides in the same atomic write as the messages it counts.
        usage.write(&key.tenant, self.calendar.day_of(now), &mut writes);
        // The new set's header already records the new end and publish time
        // (start-up takes them from the newest header); the stored counters
        // need rewriting only when reclaiming moved them.
        if reclaimed > 0 {
            writes.put(keys::topic_state(topic.id), &log.state);
        }
        let dedup_ids: Vec<String> = batch_dedup.keys().cloned().collect();
        if !dedup_ids.is_empty() {
            let mut uncommitted = topic.uncommitted_dedup.lock_unpoisoned();
            for (id, offset) in &batch_dedup {
                uncommitted.insert(id.clone(), (*offset, now));
            }
        }
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
            outcome,
            topic,
            dedup_ids,
            stored: StoredFigures {
                metrics: Some(self.metrics.clone()),
                messages: stored_messages,
                bytes: stored_bytes,
                reclaimed,
            },
        })
    }
}
