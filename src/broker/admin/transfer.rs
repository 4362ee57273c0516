//! A tenant's topics leaving and arriving with a move (SPEC §9): read out
//! whole for the snapshot on the source, rebuilt with the same offsets on
//! the target. The orchestration (stop, settle, encode, erase) is
//! `transfer/`'s; this file only reads and writes the broker's own state.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::broker::produce::DedupEntry;
use crate::broker::subscription::StoredState;
use crate::broker::subscription::{Cursor, Pending, SubState, Subscription, SubscriptionSettings};
use crate::broker::topic::{OverflowPolicy, Topic, TopicLog, TopicSettings, TopicState};
use crate::broker::{Broker, Message};
use crate::error::{Error, Result};
use crate::metering::TopicLife;
use crate::storage::WriteSet;
use crate::sync::RwLockExt;
use crate::transfer::snapshot::{MessagePart, PendingPart, SetPart, SubscriptionPart, TopicPart};

/// Bytes of message sets gathered into one commit during an import.
const IMPORT_COMMIT_BYTES: u64 = 4 << 20;

/// What an import rebuilt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    /// Topics.
    pub topics: u64,
    /// Retained messages.
    pub messages: u64,
    /// Subscriptions.
    pub subscriptions: u64,
}

/// Counted bytes of a message (payload + headers + ids), as produce counts them.
fn counted_bytes(m: &Message) -> u64 {
    let headers: usize = m.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    (m.payload.len() + headers + m.device_id.len() + m.dedup_id.len()) as u64
}

impl Broker {
    /// Waits until every write queued before this call is durable (the
    /// committer commits in queue order).
    pub async fn write_barrier(&self) -> Result<()> {
        self.store.commit(WriteSet::new()).await?;
        Ok(())
    }

    /// Every topic of a stopped tenant, whole: settings, counters, retained
    /// sets (a set quarantined as corrupt is left out and logged: it was
    /// never served), subscriptions with their cursors and pending messages.
    pub async fn snapshot_topics(&self, tenant: &str) -> Result<Vec<TopicPart>> {
        let mut topics = self.tenant_topics(tenant);
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let mut parts = Vec::with_capacity(topics.len());
        for topic in topics {
            let s = topic.settings();
            let state = topic.log.lock().await.state;
            let mut sets = Vec::new();
            for item in self.retained_sets(&topic) {
                let (first_offset, set) = item?;
                sets.push(SetPart {
                    first_offset,
                    publish_ms: set.publish_ms,
                    messages: set
                        .messages
                        .into_iter()
                        .map(|m| MessagePart {
                            payload: m.payload.to_vec(),
                            headers: m.headers.into_iter().collect(),
                            device_id: m.device_id,
                            dedup_id: m.dedup_id,
                        })
                        .collect(),
                });
            }
            for (first, end) in topic.quarantine.ranges() {
                tracing::warn!(tenant, topic = %topic.name, first_offset = first, end_offset = end,
                    "a move leaves out a corrupt message set");
            }
            let mut subscriptions = Vec::new();
            for sub in topic.subscription_list() {
                let settings = sub.settings();
                let sub_state = sub.state.lock().await;
                subscriptions.push(SubscriptionPart {
                    name: settings.name,
                    lock_seconds: settings.lock_seconds,
                    max_delivery_attempts: settings.max_delivery_attempts,
                    dead_letter_topic: settings.dead_letter_topic,
                    created_ms: settings.created_ms,
                    next_offset: sub_state.next_offset,
                    dead_lettered: sub_state.dead_lettered,
                    pending: sub_state
                        .pending
                        .iter()
                        .map(|(&offset, p)| PendingPart {
                            offset,
                            attempts: p.attempts,
                            first_delivery_ms: p.first_delivery_ms,
                        })
                        .collect(),
                });
            }
            subscriptions.sort_by(|a, b| a.name.cmp(&b.name));
            parts.push(TopicPart {
                name: s.name,
                expiry_seconds: s.expiry_seconds,
                max_bytes: s.max_bytes,
                overflow_policy: s.overflow_policy.number(),
                dedup_window_seconds: s.dedup_window_seconds,
                created_ms: s.created_ms,
                next_offset: state.next_offset,
                expired_messages: state.expired_messages,
                reclaimed_messages: state.reclaimed_messages,
                last_publish_ms: state.last_publish_ms,
                sets,
                subscriptions,
            });
        }
        Ok(parts)
    }

    /// Rebuilds a moved tenant's topics here, offsets, publish times, dedup
    /// ids (within their window), cursors and pending messages kept; pending
    /// messages are due at once. Nothing of it is billed: the import is no
    /// produce and no delivery. Each topic's billing life starts at
    /// `life_starts_ms` (the day after the stop: the source billed the stop
    /// day's topic-days); its storage is metered from now on. The tenant
    /// must have no topics here.
    pub async fn import_topics(
        &self,
        tenant: &str,
        parts: &[TopicPart],
        life_starts_ms: i64,
    ) -> Result<Imported> {
        let keys = self.tenancy.data_keys(tenant)?;
        let _guard = self.admin_lock.lock().await;
        if !self.tenant_topics(tenant).is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "tenant '{tenant}' has topics here already"
            )));
        }
        let mut imported = Imported::default();
        let mut built = Vec::new();
        for part in parts {
            crate::tenancy::validate_resource_name("topic", &part.name)?;
            let overflow_policy = OverflowPolicy::from_number(part.overflow_policy)
                .ok_or_else(|| Error::invalid("the snapshot names an unknown overflow policy"))?;
            let now = self.clock.now_ms();
            let settings = TopicSettings {
                id: self.store.generate_id()?,
                tenant: tenant.to_string(),
                name: part.name.clone(),
                expiry_seconds: part.expiry_seconds,
                max_bytes: part.max_bytes,
                overflow_policy,
                dedup_window_seconds: part.dedup_window_seconds,
                created_ms: part.created_ms,
            };
            let mut log = TopicLog {
                state: TopicState {
                    next_offset: part
                        .sets
                        .first()
                        .map_or(part.next_offset, |s| s.first_offset),
                    expired_messages: part.expired_messages,
                    reclaimed_messages: part.reclaimed_messages,
                    last_publish_ms: 0,
                    storage_metered_ms: now,
                },
                sets: VecDeque::new(),
                bytes: 0,
                device_metered_through: 0,
            };
            let mut writes = WriteSet::new();
            writes.put_topic(&settings);
            writes.put_topic_life(
                tenant,
                settings.id,
                &TopicLife {
                    name: settings.name.clone(),
                    created_ms: part.created_ms.max(life_starts_ms),
                    deleted_ms: 0,
                },
            );
            let window_ms = part.dedup_window_seconds as i64 * 1000;
            let mut pending_bytes = 0;
            for set in &part.sets {
                if set.first_offset < log.state.next_offset || set.messages.is_empty() {
                    return Err(Error::invalid(format!(
                        "the snapshot's sets of topic '{}' overlap or are empty at offset {}",
                        part.name, set.first_offset
                    )));
                }
                log.state.next_offset = set.first_offset;
                let messages: Vec<Message> = set
                    .messages
                    .iter()
                    .map(|m| Message {
                        payload: m.payload.clone().into(),
                        headers: m.headers.clone().into_iter().collect(),
                        device_id: m.device_id.clone(),
                        dedup_id: m.dedup_id.clone(),
                    })
                    .collect();
                let bytes: u64 = messages.iter().map(counted_bytes).sum();
                if set.publish_ms + window_ms > now {
                    for (i, m) in messages.iter().enumerate() {
                        if !m.dedup_id.is_empty() {
                            let entry = DedupEntry {
                                offset: set.first_offset + i as u64,
                                publish_ms: set.publish_ms,
                            };
                            let tag = keys.dedup_tag(settings.id, &m.dedup_id);
                            writes.put_dedup(settings.id, &tag, &entry);
                        }
                    }
                }
                imported.messages += messages.len() as u64;
                log.append(
                    &self.store,
                    &keys,
                    settings.id,
                    messages,
                    bytes,
                    set.publish_ms,
                    &mut writes,
                )?;
                pending_bytes += bytes;
                if pending_bytes >= IMPORT_COMMIT_BYTES {
                    self.store.commit(std::mem::take(&mut writes)).await?;
                    pending_bytes = 0;
                }
            }
            log.state.next_offset = log.state.next_offset.max(part.next_offset);
            log.state.last_publish_ms = log.state.last_publish_ms.max(part.last_publish_ms);
            writes.put_topic_state(settings.id, &log.state);
            // The imported sets were produced, and billed, on the source:
            // this node's per-device produce usage starts after them.
            log.device_metered_through = log.state.next_offset;
            writes.put_metered_through(settings.id, log.state.next_offset);
            let mut subs = Vec::new();
            for sp in &part.subscriptions {
                subs.push(self.import_subscription(settings.id, sp, now, &mut writes)?);
            }
            self.store.commit(writes).await?;
            let topic = Arc::new(Topic::new(settings, log, self.tenant_bytes_counter(tenant)));
            for sub in subs {
                topic
                    .subscriptions
                    .write_unpoisoned()
                    .insert(sub.name.clone(), sub);
                imported.subscriptions += 1;
            }
            imported.topics += 1;
            built.push(topic);
        }
        for topic in built {
            self.insert_topic(topic);
        }
        Ok(imported)
    }

    /// One subscription of an imported topic: its cursor as it was, its
    /// pending messages due at `now` with their attempt counts.
    fn import_subscription(
        &self,
        topic_id: u64,
        part: &SubscriptionPart,
        now: i64,
        writes: &mut WriteSet,
    ) -> Result<Arc<Subscription>> {
        crate::tenancy::validate_resource_name("subscription", &part.name)?;
        let settings = SubscriptionSettings {
            id: self.store.generate_id()?,
            topic_id,
            name: part.name.clone(),
            lock_seconds: part.lock_seconds,
            max_delivery_attempts: part.max_delivery_attempts,
            dead_letter_topic: part.dead_letter_topic.clone(),
            created_ms: part.created_ms,
        };
        let cursor = Cursor {
            next_offset: part.next_offset,
            dead_lettered: part.dead_lettered,
        };
        let mut state = SubState::from_stored(StoredState {
            cursor,
            ..StoredState::default()
        });
        for p in &part.pending {
            state.restore_pending(
                p.offset,
                Pending {
                    attempts: p.attempts,
                    deadline_ms: now,
                    first_delivery_ms: p.first_delivery_ms,
                },
            );
        }
        writes.put_subscription(&settings);
        writes.put_cursor(settings.id, &cursor);
        state.persist(settings.id, writes);
        Ok(Arc::new(Subscription::new(settings, state)))
    }
}
