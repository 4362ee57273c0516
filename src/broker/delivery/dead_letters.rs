//! Dead letters: messages that reached their subscription's attempt limit
//! move to its dead-letter topic, in the same atomic write as the delivery
//! pass that found them. They are appended through the dead-letter topic's
//! [`Room`], so its size cap and overflow policy hold; if it refuses them
//! they stay pending and are tried again after a lock period.
//!
//! They move on time, not on the next fetch: [`Broker::move_due_dead_letters`]
//! is the dead-letter timer's pass (the scheduler runs it several times a
//! second, and AdvanceClock's tick runs it), moving every message whose last
//! lock deadline has passed, with or without a consumer connected.
//!
//! The dead-letter topic's log lock is held from the append until the pass's
//! write is queued (the lock rule of [`crate::broker`]): a produce to that
//! topic queued in between would otherwise commit a later offset first.

use std::sync::Arc;

use tokio::sync::MutexGuard;

use crate::broker::produce::Room;
use crate::broker::subscription::{Pending, SubState, Subscription};
use crate::broker::topic::{SetCache, Topic, TopicLog};
use crate::broker::Broker;
use crate::broker::Message;
use crate::error::Result;
use crate::storage::{AfterCommit, WriteSet};

use super::message_bytes;

/// The messages of one delivery pass that reached their attempt limit.
pub(super) struct DeadLetters<'a> {
    /// The dead-letter topic.
    pub(super) to: &'a Arc<Topic>,
    /// Their offsets in the subscription's topic, and the messages.
    pub(super) messages: Vec<(u64, Message)>,
    /// When they move (their publish time in the dead-letter topic).
    pub(super) now: i64,
    /// How each stays pending if the dead-letter topic refuses them.
    pub(super) retry: Pending,
}

/// What moving a pass's dead letters added to its write.
pub(super) struct DeadLetterMove<'a> {
    /// How many moved.
    pub(super) moved: u64,
    /// Runs once the write is durable: the dead-letter topic's consumers may
    /// then see them.
    pub(super) after: Option<AfterCommit>,
    /// The dead-letter topic's log, still locked: release it only once the
    /// write is queued, so that topic's commits stay in offset order.
    pub(super) log: Option<MutexGuard<'a, TopicLog>>,
}

impl DeadLetterMove<'_> {
    /// Nothing moved.
    pub(super) fn none() -> Self {
        DeadLetterMove {
            moved: 0,
            after: None,
            log: None,
        }
    }
}

impl Broker {
    /// The dead-letter timer's pass: in every subscription with an attempt
    /// limit and a dead-letter topic, moves the messages whose last lock
    /// deadline has passed (SPEC §2: within a second, consumer or not).
    /// Returns how many moved.
    ///
    /// The same pass releases the delivery credit of Fetch answers whose
    /// lock has ended (`subscription::Holds`): a message due for redelivery
    /// is no longer outstanding, whether or not anyone is connected.
    pub async fn move_due_dead_letters(&self) -> Result<u64> {
        let topics = self.all_topics();
        let now = self.clock.now_ms();
        for sub in topics.iter().flat_map(|t| t.subscription_list()) {
            sub.release_expired_holds(now);
        }
        let mut moved = 0;
        for topic in topics {
            for sub in topic.subscription_list() {
                moved += self.move_dead_letters_of(&topic, &sub).await?;
            }
        }
        Ok(moved)
    }

    /// Moves one subscription's due dead letters.
    async fn move_dead_letters_of(
        &self,
        topic: &Arc<Topic>,
        sub: &Arc<Subscription>,
    ) -> Result<u64> {
        let rules = self.delivery_rules(topic, sub);
        if rules.dead_letter_topic.is_none() {
            return Ok(0);
        }
        let now = self.clock.now_ms();
        let mut state = sub.state.lock().await;
        if sub.is_deleted() || topic.is_deleted() {
            return Ok(0);
        }
        if state.next_deadline().is_none_or(|d| d > now) {
            return Ok(0);
        }
        let offsets = state.take_dead_letters(now, &rules.claim_rules(topic));
        if offsets.is_empty() {
            return Ok(0);
        }
        let mut cache = SetCache::default();
        let mut messages = Vec::with_capacity(offsets.len());
        for offset in offsets {
            // One no longer retained (expired or reclaimed) has nothing to move.
            if let Some((message, _)) = self.read_message(topic, offset, &mut cache)? {
                messages.push((offset, message));
            }
        }
        let mut writes = WriteSet::new();
        let dead = match rules.dead_letters(messages, now) {
            Some(dead) => {
                self.move_dead_letters(topic, sub, &mut state, dead, &mut writes)
                    .await
            }
            None => DeadLetterMove::none(),
        };
        let moved = dead.moved;
        self.commit_state(sub, state, writes, dead.after, dead.log)
            .await?;
        self.metrics.count(
            crate::observability::name::DEAD_LETTERED_MESSAGES,
            &topic.tenant,
            moved,
        );
        Ok(moved)
    }

    /// Adds the move of `dead` to `writes` and counts it in `state`; returns
    /// how many moved, what must run once the write is durable, and the
    /// dead-letter topic's log lock to hold until the write is queued. When
    /// the dead-letter topic refuses them, they go back to pending instead
    /// and nothing is added.
    pub(super) async fn move_dead_letters<'a>(
        &self,
        topic: &Topic,
        sub: &Subscription,
        state: &mut SubState,
        dead: DeadLetters<'a>,
        writes: &mut WriteSet,
    ) -> DeadLetterMove<'a> {
        let dlq = dead.to;
        let moved = dead.messages.len() as u64;
        let bytes: u64 = dead.messages.iter().map(|(_, m)| message_bytes(m)).sum();
        let mut log = dlq.log.lock().await;
        let mut dlq_writes = WriteSet::new();
        let now = self.clock.now_ms();
        let metered = log.state.storage_metered_ms;
        self.close_storage_interval(dlq, &mut log, now, &mut dlq_writes);
        let keys = self.tenancy.data_keys(&dlq.tenant);
        let appended = keys.and_then(|keys| {
            let room = Room::needed(dlq, &log, bytes)?;
            let messages = dead.messages.iter().map(|(_, m)| m.clone()).collect();
            room.append(
                &self.store,
                &keys,
                &self.calendar,
                crate::broker::device_usage::Billed::NotBilled,
                dlq,
                &mut log,
                messages,
                dead.now,
                &mut dlq_writes,
            )
        });
        match appended {
            Ok(_) => {
                dlq_writes.put_topic_state(dlq.id, &log.state);
                writes.extend(dlq_writes);
                state.dead_lettered += moved;
                let end = log.state.next_offset;
                let visible = dlq.clone();
                DeadLetterMove {
                    moved,
                    after: Some(Box::new(move || visible.publish_visible_end(end))),
                    log: Some(log),
                }
            }
            Err(e) => {
                // Nothing changed: the storage interval stays open as it was.
                log.state.storage_metered_ms = metered;
                tracing::warn!(topic = %topic.name, subscription = %sub.name, error = %e,
                    "dead-letter topic refused messages; they stay pending");
                for (offset, _) in dead.messages {
                    state.restore_pending(offset, dead.retry);
                }
                DeadLetterMove::none()
            }
        }
    }
}
