//! Produce: validate a batch against the plan, drop duplicates by dedup_id,
//! make room under the topic's size cap, append one message set, and answer
//! only after the group commit that made it durable.

use std::collections::HashMap;
use std::sync::Arc;

use super::topic::{Topic, TopicLog, OVERFLOW_REFUSE};
use super::Broker;
use crate::error::{Error, Result};
use crate::metering::{units_for_bytes, UsageDelta};
use crate::observability::{name, Metrics};
use crate::quota::{human_bytes, MessageShape};
use crate::storage::records::{DedupRecord, StoredMessage};
use crate::storage::{keys, PendingCommit, WriteSet};
use crate::sync::MutexExt;
use crate::tenancy::{Scope, TenantKey};

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

/// A produce that is queued for commit; [`PendingProduce::wait`] answers once
/// it is durable. Lets a stream pipeline batches while keeping replies in order.
pub struct PendingProduce {
    commit: Option<PendingCommit>,
    outcome: ProduceOutcome,
    topic: Arc<Topic>,
    dedup_ids: Vec<String>,
    stored: StoredFigures,
}

/// What a produce stored, for the metrics once it is durable.
#[derive(Default)]
struct StoredFigures {
    metrics: Option<Arc<Metrics>>,
    messages: u64,
    bytes: u64,
    reclaimed: u64,
}

impl PendingProduce {
    /// Waits until the batch is durable and returns its outcome.
    pub async fn wait(self) -> Result<ProduceOutcome> {
        let result = match self.commit {
            Some(commit) => commit.wait().await,
            None => Ok(()),
        };
        if !self.dedup_ids.is_empty() {
            let mut uncommitted = self.topic.uncommitted_dedup.lock_unpoisoned();
            for id in &self.dedup_ids {
                uncommitted.remove(id);
            }
        }
        result?;
        if let Some(metrics) = &self.stored.metrics {
            let tenant = &self.topic.tenant;
            metrics.count(name::PRODUCED_MESSAGES, tenant, self.stored.messages);
            metrics.count(name::PRODUCED_BYTES, tenant, self.stored.bytes);
            metrics.count(name::RECLAIMED_MESSAGES, tenant, self.stored.reclaimed);
            metrics.count_labeled(
                name::BILLABLE_UNITS,
                &[
                    ("tenant", metrics.tenant_label(tenant)),
                    ("part", "produced".into()),
                ],
                self.outcome.units,
            );
        }
        Ok(self.outcome)
    }
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

        let (reclaim_sets, freed) = room_needed(&topic, &log, stored_bytes).inspect_err(|e| {
            if matches!(e, Error::ResourceExhausted { .. }) {
                self.metrics.count_labeled(
                    name::QUOTA_REFUSALS,
                    &[("kind", "topic_full".into())],
                    1,
                );
            }
        })?;
        let tenant_bytes = topic.tenant_bytes() - freed.min(topic.tenant_bytes());
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
        // The messages go to the segment files first: if that fails, the log
        // is unchanged and nothing is queued.
        log.append(
            &self.store,
            topic.id,
            stored,
            stored_bytes,
            now,
            &mut writes,
        )?;
        let reclaimed_before = log.state.reclaimed_messages;
        reclaim(&topic, &mut log, reclaim_sets, &mut writes);
        let reclaimed = log.state.reclaimed_messages - reclaimed_before;
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
        topic.sync_from(&log);
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

    /// The offset of the message that first used `dedup_id` within the
    /// window, if any.
    fn original_of(
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

/// How many of the oldest sets must go to fit `new_bytes` under the topic's
/// size cap, and the bytes that frees; refuses when the batch can never fit or
/// the topic's policy refuses produce when full. Changes nothing.
pub(super) fn room_needed(topic: &Topic, log: &TopicLog, new_bytes: u64) -> Result<(usize, u64)> {
    let settings = topic.settings();
    let cap = settings.max_bytes;
    if new_bytes > cap {
        return Err(Error::invalid(format!(
            "batch of {new_bytes} bytes is larger than topic '{}''s size cap of {cap} bytes ({})",
            topic.name,
            human_bytes(cap)
        )));
    }
    if log.bytes + new_bytes <= cap {
        return Ok((0, 0));
    }
    if settings.overflow_policy == OVERFLOW_REFUSE {
        return Err(Error::exhausted(format!(
            "topic '{}' is full: {} of its {cap}-byte ({}) size cap is used and its overflow \
             policy refuses new messages until old ones expire",
            topic.name,
            log.bytes,
            human_bytes(cap)
        )));
    }
    let mut freed = 0;
    let mut sets = 0;
    for set in &log.sets {
        if log.bytes - freed + new_bytes <= cap {
            break;
        }
        freed += set.bytes;
        sets += 1;
    }
    Ok((sets, freed))
}

/// Drops the `sets` oldest sets, counting their messages as reclaimed.
pub(super) fn reclaim(topic: &Topic, log: &mut TopicLog, sets: usize, writes: &mut WriteSet) {
    for _ in 0..sets {
        if let Some(set) = log.drop_oldest(topic.id, writes) {
            log.state.reclaimed_messages += set.count as u64;
        }
    }
}
