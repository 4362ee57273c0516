//! One delivery pass: claim what the pacer allows, read it, record the
//! deliveries (and any dead letters) durably, meter and count them.
//!
//! The deliveries are recorded *before* they are handed out, in one atomic
//! write with the usage they bill, so attempt counts survive a restart and
//! an at-most-once message is never delivered twice.

use std::sync::Arc;
use std::time::Duration;

use super::dead_letters::{DeadLetterMove, DeadLetters};
use super::{message_bytes, Delivered, PassBytes};
use crate::broker::subscription::{Claim, ClaimRules, Pending, SubState, Subscription};
use crate::broker::topic::{SetCache, Topic};
use crate::broker::Broker;
use crate::broker::Message;
use crate::error::{Error, Result};
use crate::metering::{units_for_bytes, UsageDelta};
use crate::observability::name;
use crate::storage::{PendingCommit, WriteSet};

/// The result of one delivery pass.
pub(super) struct DeliverPass {
    /// What was claimed and read, in claim order.
    pub(super) delivered: Vec<Delivered>,
    /// When the next pending message becomes due (if nothing was due now).
    pub(super) next_deadline: Option<i64>,
    /// A deliverable message was left out because it did not fit the byte
    /// credit (more credit, not more messages or time, lets it out).
    pub(super) held_back: bool,
}

impl DeliverPass {
    /// An empty pass held back by the pacer for `wait`: the next try is due
    /// when the pacer allows or the next pending deadline comes, whichever is
    /// sooner.
    fn paced(state: &SubState, now: i64, wait: Duration) -> DeliverPass {
        let paced_until = now + wait.as_millis().min(3_600_000) as i64 + 1;
        DeliverPass {
            delivered: Vec::new(),
            next_deadline: Some(
                state
                    .next_deadline()
                    .map_or(paced_until, |d| d.min(paced_until)),
            ),
            held_back: false,
        }
    }
}

/// A subscription's delivery settings, read once at the start of a pass.
pub(super) struct DeliveryRules {
    /// Lock time in ms; 0 means at-most-once.
    lock_ms: i64,
    /// 0: unlimited.
    max_attempts: u32,
    /// Where messages over their attempt limit go, if it exists.
    pub(super) dead_letter_topic: Option<Arc<Topic>>,
}

impl DeliveryRules {
    /// The rules a claim follows on `topic` now.
    pub(super) fn claim_rules(&self, topic: &Topic) -> ClaimRules {
        ClaimRules {
            lock_ms: self.lock_ms,
            max_attempts: self.max_attempts,
            dead_letter: self.dead_letter_topic.is_some(),
            first_offset: topic.first_offset(),
            visible_end: topic.visible_end(),
        }
    }

    /// The dead letters of a pass, bound for the dead-letter topic; `None`
    /// when there are none.
    pub(super) fn dead_letters(
        &self,
        messages: Vec<(u64, Message)>,
        now: i64,
    ) -> Option<DeadLetters<'_>> {
        let to = self.dead_letter_topic.as_ref()?;
        if messages.is_empty() {
            return None;
        }
        Some(DeadLetters {
            to,
            messages,
            now,
            // Refused by the dead-letter topic: due again after a lock period.
            retry: Pending {
                attempts: self.max_attempts,
                deadline_ms: now + self.lock_ms.max(1000),
                first_delivery_ms: now,
            },
        })
    }
}

/// How much one pass may hand out: messages (as the pacer granted) and
/// bytes (exactly; a larger single message only alone).
#[derive(Debug, Clone, Copy)]
struct Budget {
    messages: usize,
    bytes: PassBytes,
}

/// What one pass claimed.
#[derive(Default)]
struct Claimed {
    /// Read and to be handed out.
    delivered: Vec<Delivered>,
    /// At their attempt limit: offsets and messages to dead-letter.
    dead: Vec<(u64, Message)>,
    /// Whether any claim was made (then the state changed and is recorded).
    any: bool,
    /// The next deliverable message did not fit the byte credit.
    held_back: bool,
}

/// A delivery pass whose record is queued for commit: its deliveries may go
/// out once [`QueuedPass::durable`] says the record is on disk.
pub(super) struct QueuedPass {
    /// The pass (its deliveries are not to be handed out before the commit).
    pub(super) pass: DeliverPass,
    /// The commit that records it; `None` when the pass claimed nothing.
    commit: Option<PendingCommit>,
    /// What to count in the metrics once durable.
    counts: PassCounts,
}

/// A pass's figures for the metrics.
#[derive(Default)]
struct PassCounts {
    units: u64,
    dead_lettered: u64,
}

impl QueuedPass {
    /// Whether the pass changed the subscription's state (it has a record
    /// to commit).
    pub(super) fn records(&self) -> bool {
        self.commit.is_some()
    }

    /// Waits until the pass's record is durable (then counts it in the
    /// metrics) and gives the pass back, its deliveries now free to go out.
    pub(super) async fn durable(self, broker: &Broker, tenant: &str) -> Result<DeliverPass> {
        if let Some(commit) = self.commit {
            commit.wait().await?;
            broker.count_deliveries(
                tenant,
                &self.pass.delivered,
                self.counts.units,
                self.counts.dead_lettered,
            );
        }
        Ok(self.pass)
    }
}

impl Broker {
    /// Claims up to `max_messages` and `bytes.max` bytes (one larger message
    /// alone when `bytes.alone`) for `sub`, records the deliveries durably
    /// and returns them. Moves messages over their attempt limit to the
    /// dead-letter topic in the same commit.
    pub(super) async fn deliver(
        &self,
        topic: &Arc<Topic>,
        sub: &Arc<Subscription>,
        max_messages: usize,
        bytes: PassBytes,
        cache: &mut SetCache,
    ) -> Result<DeliverPass> {
        let queued = self
            .deliver_queued(topic, sub, max_messages, bytes, cache)
            .await?;
        queued.durable(self, &topic.tenant).await
    }

    /// [`Broker::deliver`] up to queueing the record for commit, without
    /// waiting for it: a Consume stream claims its next pass while this one
    /// commits. The subscription's state lock is held until the record is
    /// queued, so passes commit in claim order.
    pub(super) async fn deliver_queued(
        &self,
        topic: &Arc<Topic>,
        sub: &Arc<Subscription>,
        max_messages: usize,
        bytes: PassBytes,
        cache: &mut SetCache,
    ) -> Result<QueuedPass> {
        let pacer = self
            .admission
            .pacer(topic.id, &self.tenancy.plan_of(&topic.tenant));
        let rules = self.delivery_rules(topic, sub);

        let mut state = sub.state.lock().await;
        if sub.is_deleted() || topic.is_deleted() {
            return Err(Error::not_found("subscription", &sub.name));
        }
        let now = self.clock.now_ms();
        let claim_rules = rules.claim_rules(topic);
        // Pace the topic's deliveries to its plan's rate: wait, never fail.
        let wanted = state.deliverable(now, &claim_rules).min(max_messages);
        let granted = match pacer.reserve(&self.clock, wanted) {
            Ok(granted) => granted,
            Err(wait) => {
                return Ok(QueuedPass {
                    pass: DeliverPass::paced(&state, now, wait),
                    commit: None,
                    counts: PassCounts::default(),
                })
            }
        };
        let budget = Budget {
            messages: granted,
            bytes,
        };
        let claimed = self.claim_and_read(topic, &mut state, &claim_rules, now, budget, cache)?;
        if claimed.held_back {
            // The stream stalls on credit: its set goes now, not after the commit.
            *cache = SetCache::default();
        }
        let units: u64 = claimed
            .delivered
            .iter()
            .map(|d| units_for_bytes(d.bytes))
            .sum();
        pacer.settle(granted, units);
        let next_deadline = state.next_deadline();
        if !claimed.any {
            return Ok(QueuedPass {
                pass: DeliverPass {
                    delivered: claimed.delivered,
                    next_deadline,
                    held_back: claimed.held_back,
                },
                commit: None,
                counts: PassCounts::default(),
            });
        }

        let mut writes = WriteSet::new();
        self.meter_deliveries(topic, &claimed.delivered, now, &mut writes)?;
        let dead = match rules.dead_letters(claimed.dead, now) {
            Some(dead) => {
                self.move_dead_letters(topic, sub, &mut state, dead, &mut writes)
                    .await
            }
            None => DeadLetterMove::none(),
        };
        // The dead-letter topic's log lock is released only after the enqueue.
        let commit = self
            .enqueue_state(sub, state, writes, dead.after, dead.log)
            .await?;
        Ok(QueuedPass {
            pass: DeliverPass {
                delivered: claimed.delivered,
                next_deadline,
                held_back: claimed.held_back,
            },
            commit: Some(commit),
            counts: PassCounts {
                units,
                dead_lettered: dead.moved,
            },
        })
    }

    /// Reads the subscription's settings and looks up its dead-letter topic.
    pub(super) fn delivery_rules(&self, topic: &Topic, sub: &Subscription) -> DeliveryRules {
        let settings = sub.settings();
        let dead_letter_topic =
            if settings.max_delivery_attempts > 0 && !settings.dead_letter_topic.is_empty() {
                self.topic(&topic.tenant, &settings.dead_letter_topic).ok()
            } else {
                None
            };
        DeliveryRules {
            lock_ms: settings.lock_seconds as i64 * 1000,
            max_attempts: settings.max_delivery_attempts,
            dead_letter_topic,
        }
    }

    /// Claims messages within `budget` and reads each one. A message no
    /// longer retained (expired or reclaimed meanwhile) is neither delivered
    /// nor kept pending. Each message is looked at before it is claimed, so
    /// one that does not fit the byte credit stays where it is (pending or
    /// next) for a later pass.
    fn claim_and_read(
        &self,
        topic: &Topic,
        state: &mut SubState,
        rules: &ClaimRules,
        now: i64,
        budget: Budget,
        cache: &mut SetCache,
    ) -> Result<Claimed> {
        let mut claimed = Claimed::default();
        let mut bytes = 0u64;
        while claimed.delivered.len() < budget.messages {
            let Some(next) = state.peek(now, rules) else {
                // Caught up: the cached set is claimed through, so an idle
                // stream keeps no decoded set (up to 4 MiB outside its credit).
                *cache = SetCache::default();
                break;
            };
            let offset = match next {
                Claim::Deliver { offset, .. } | Claim::DeadLetter { offset } => offset,
            };
            let read = self.read_message(topic, offset, cache)?;
            if let (Claim::Deliver { .. }, Some((message, _))) = (next, &read) {
                let size = message_bytes(message);
                let fits = bytes + size <= budget.bytes.max;
                let alone = budget.bytes.alone && claimed.delivered.is_empty();
                if !fits && !alone {
                    claimed.held_back = true;
                    break;
                }
            }
            let Some(claim) = state.claim(now, rules) else {
                break;
            };
            debug_assert_eq!(claim, next, "peek and claim agree under the state lock");
            claimed.any = true;
            match (claim, read) {
                (Claim::Deliver { offset, attempt }, Some((mut message, publish_ms))) => {
                    let size = message_bytes(&message);
                    bytes += size;
                    // A read payload is a slice of its whole decoded set: an
                    // outstanding delivery must hold its own bytes, not pin
                    // the set (memory stays bounded by the byte credit).
                    message.payload = bytes::Bytes::copy_from_slice(&message.payload);
                    claimed.delivered.push(Delivered {
                        offset,
                        message,
                        publish_ms,
                        attempt,
                        bytes: size,
                        claimed_ms: now,
                    });
                }
                (Claim::Deliver { offset, .. }, None) => {
                    state.remove_pending(offset);
                }
                (Claim::DeadLetter { offset }, Some((message, _))) => {
                    claimed.dead.push((offset, message));
                }
                (Claim::DeadLetter { .. }, None) => {}
            }
        }
        Ok(claimed)
    }

    /// Bills every delivery in the same atomic write that records it: the
    /// tenant's total and the topic's counters, and the per-device breakdown
    /// as one journal row of the pass (folded into the device counters off
    /// this path, `device_journal.rs`).
    fn meter_deliveries(
        &self,
        topic: &Topic,
        delivered: &[Delivered],
        now: i64,
        writes: &mut WriteSet,
    ) -> Result<()> {
        let mut usage = UsageDelta::default();
        usage.delivered_all(
            &topic.name,
            delivered.iter().map(|d| {
                (
                    d.message.device_id.as_str(),
                    units_for_bytes(d.bytes),
                    d.attempt,
                )
            }),
        );
        let day = self.calendar.day_of(now);
        match self.tenancy.data_keys(&topic.tenant) {
            Ok(keys) if usage.has_devices() => {
                let journal_id = self.store.generate_id()?;
                usage.write_journaled(&keys, day, journal_id, writes);
            }
            Ok(keys) => usage.write(&keys, day, writes),
            // A tenant whose key is destroyed keeps no device ids.
            Err(_) => usage.write_without_devices(&topic.tenant, day, writes),
        }
        Ok(())
    }

    /// Counts a durable pass in the metrics: deliveries, bytes,
    /// redeliveries, dead letters and the units billed.
    fn count_deliveries(
        &self,
        tenant: &str,
        delivered: &[Delivered],
        units: u64,
        dead_lettered: u64,
    ) {
        let m = &self.metrics;
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
        m.count(name::DEAD_LETTERED_MESSAGES, tenant, dead_lettered);
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
    }
}
