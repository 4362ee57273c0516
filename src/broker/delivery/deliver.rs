//! One delivery pass: claim what the pacer allows, read it, record the
//! deliveries (and any dead letters) durably, meter and count them.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{message_bytes, Delivered};
use crate::broker::produce::Room;
use crate::broker::subscription::{Claim, ClaimRules, Subscription};
use crate::broker::topic::{SetCache, Topic};
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::metering::{units_for_bytes, UsageDelta};
use crate::observability::name;
use crate::storage::records::PendingRecord;
use crate::storage::{keys, AfterCommit, WriteSet};

/// The result of one delivery pass.
pub(super) struct DeliverPass {
    pub(super) delivered: Vec<Delivered>,
    /// When the next pending message becomes due (if nothing was due now).
    pub(super) next_deadline: Option<i64>,
}

impl Broker {
    /// Claims up to `max_messages` / about `max_bytes` (at least one message
    /// when any is deliverable) for `sub`, records the deliveries durably and
    /// returns them. Moves messages over their attempt limit to the
    /// dead-letter topic in the same commit.
    pub(super) async fn deliver(
        &self,
        topic: &Arc<Topic>,
        sub: &Arc<Subscription>,
        max_messages: usize,
        max_bytes: u64,
        cache: &mut SetCache,
    ) -> Result<DeliverPass> {
        let pacer = self
            .admission
            .pacer(topic.id, &self.tenancy.plan_of(&topic.tenant));
        let settings = sub.settings();
        let dead_letter_topic =
            if settings.max_delivery_attempts > 0 && !settings.dead_letter_topic.is_empty() {
                self.topic(&topic.tenant, &settings.dead_letter_topic).ok()
            } else {
                None
            };
        let lock_ms = settings.lock_seconds as i64 * 1000;

        let mut state = sub.state.lock().await;
        if sub.is_deleted() || topic.is_deleted() {
            return Err(Error::not_found("subscription", &sub.name));
        }
        let now = self.clock.now_ms();
        let rules = ClaimRules {
            lock_ms,
            max_attempts: settings.max_delivery_attempts,
            dead_letter: dead_letter_topic.is_some(),
            first_offset: topic.first_offset(),
            visible_end: topic.visible_end(),
        };
        // Pace the topic's deliveries to its plan's rate: wait, never fail.
        let deliverable = state.due_now(now)
            + rules
                .visible_end
                .saturating_sub(state.next_offset.max(rules.first_offset));
        let wanted = (deliverable as usize).min(max_messages);
        let max_messages = match pacer.reserve(&self.clock, wanted) {
            Ok(granted) => granted,
            Err(wait) => {
                let paced_until = now + wait.as_millis().min(3_600_000) as i64 + 1;
                let next_deadline = Some(
                    state
                        .next_deadline()
                        .map_or(paced_until, |d| d.min(paced_until)),
                );
                return Ok(DeliverPass {
                    delivered: Vec::new(),
                    next_deadline,
                });
            }
        };
        let mut delivered = Vec::new();
        let mut dead = Vec::new();
        let mut touched = BTreeSet::new();
        let mut bytes = 0u64;
        while delivered.len() < max_messages && bytes < max_bytes {
            let Some(claim) = state.claim(now, &rules) else {
                break;
            };
            match claim {
                Claim::Deliver { offset, attempt } => {
                    touched.insert(offset);
                    match self.read_message(topic, offset, cache)? {
                        Some((message, publish_ms)) => {
                            let size = message_bytes(&message);
                            bytes += size;
                            delivered.push(Delivered {
                                offset,
                                message,
                                publish_ms,
                                attempt,
                                bytes: size,
                            });
                        }
                        // Expired or reclaimed meanwhile: nothing to deliver or keep.
                        None => {
                            state.remove_pending(offset);
                        }
                    }
                }
                Claim::DeadLetter { offset } => {
                    touched.insert(offset);
                    if let Some((message, _)) = self.read_message(topic, offset, cache)? {
                        dead.push((offset, message));
                    }
                }
            }
        }
        let units: u64 = delivered.iter().map(|d| units_for_bytes(d.bytes)).sum();
        pacer.settle(max_messages, units);
        let next_deadline = state.next_deadline();
        if touched.is_empty() {
            return Ok(DeliverPass {
                delivered,
                next_deadline,
            });
        }

        let dead_lettered_before = state.dead_lettered;
        let mut writes = WriteSet::new();
        // Every delivery is billed, in the same atomic write that records it.
        let mut usage = UsageDelta::default();
        for d in &delivered {
            usage.delivered(
                &topic.name,
                &d.message.device_id,
                units_for_bytes(d.bytes),
                d.attempt,
            );
        }
        usage.write(&topic.tenant, self.calendar.day_of(now), &mut writes);
        let mut after: Option<AfterCommit> = None;
        if let (false, Some(dlq)) = (dead.is_empty(), dead_letter_topic) {
            let moved = dead.len() as u64;
            let bytes: u64 = dead.iter().map(|(_, m)| message_bytes(m)).sum();
            let mut log = dlq.log.lock().await;
            let mut dlq_writes = WriteSet::new();
            let appended = Room::needed(&dlq, &log, bytes).and_then(|room| {
                let messages = dead.iter().map(|(_, m)| m.clone()).collect();
                room.append(&self.store, &dlq, &mut log, messages, now, &mut dlq_writes)
            });
            match appended {
                Ok(_) => {
                    dlq_writes.put(keys::topic_state(dlq.id), &log.state);
                    writes.extend(dlq_writes);
                    state.dead_lettered += moved;
                    let end = log.state.next_offset;
                    let dlq = dlq.clone();
                    after = Some(Box::new(move || dlq.publish_visible_end(end)));
                }
                Err(e) => {
                    // The dead-letter topic cannot take them now: keep them
                    // pending and try again after a lock period.
                    tracing::warn!(topic = %topic.name, subscription = %sub.name, error = %e,
                        "dead-letter topic refused messages; they stay pending");
                    for (offset, _) in dead {
                        state.restore_pending(
                            offset,
                            PendingRecord {
                                attempts: settings.max_delivery_attempts,
                                deadline_ms: now + lock_ms.max(1000),
                                first_delivery_ms: now,
                            },
                        );
                    }
                }
            }
        }
        let dead_lettered = state.dead_lettered;
        self.commit_state(sub, state, writes, after).await?;
        let m = &self.metrics;
        let tenant = &topic.tenant;
        let redelivered = delivered.iter().filter(|d| d.attempt > 1).count() as u64;
        let redelivered_units: u64 = delivered
            .iter()
            .filter(|d| d.attempt > 1)
            .map(|d| units_for_bytes(d.bytes))
            .sum();
        m.count(name::DELIVERED_MESSAGES, tenant, delivered.len() as u64);
        m.count(
            name::DELIVERED_BYTES,
            tenant,
            delivered.iter().map(|d| d.bytes).sum(),
        );
        m.count(name::REDELIVERED_MESSAGES, tenant, redelivered);
        m.count(
            name::DEAD_LETTERED_MESSAGES,
            tenant,
            dead_lettered - dead_lettered_before,
        );
        let label = m.tenant_label(tenant);
        m.count_labeled(
            name::BILLABLE_UNITS,
            &[("tenant", label.clone()), ("part", "delivered".into())],
            units,
        );
        m.count_labeled(
            name::BILLABLE_UNITS,
            &[("tenant", label), ("part", "redelivered".into())],
            redelivered_units,
        );
        Ok(DeliverPass {
            delivered,
            next_deadline,
        })
    }
}
