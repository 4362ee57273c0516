//! Dead letters: messages that reached their subscription's attempt limit
//! move to its dead-letter topic, in the same atomic write as the delivery
//! pass that found them. They are appended through the dead-letter topic's
//! [`Room`], so its size cap and overflow policy hold; if it refuses them
//! they stay pending and are tried again after a lock period.
//!
//! The dead-letter topic's log lock is held from the append until the pass's
//! write is queued (the lock rule of [`crate::broker`]): a produce to that
//! topic queued in between would otherwise commit a later offset first.

use std::sync::Arc;

use tokio::sync::MutexGuard;

use crate::broker::produce::Room;
use crate::broker::subscription::{Pending, SubState, Subscription};
use crate::broker::topic::{Topic, TopicLog};
use crate::broker::Broker;
use crate::broker::Message;
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
        let keys = self.tenancy.data_keys(&dlq.tenant);
        let appended = keys.and_then(|keys| {
            let room = Room::needed(dlq, &log, bytes)?;
            let messages = dead.messages.iter().map(|(_, m)| m.clone()).collect();
            room.append(
                &self.store,
                &keys,
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
