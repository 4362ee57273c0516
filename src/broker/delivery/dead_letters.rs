//! Dead letters: messages that reached their subscription's attempt limit
//! move to its dead-letter topic, in the same atomic write as the delivery
//! pass that found them. They are appended through the dead-letter topic's
//! [`Room`], so its size cap and overflow policy hold; if it refuses them
//! they stay pending and are tried again after a lock period.

use std::sync::Arc;

use crate::broker::produce::Room;
use crate::broker::subscription::{SubState, Subscription};
use crate::broker::topic::Topic;
use crate::broker::Broker;
use crate::storage::keys;
use crate::storage::records::{PendingRecord, StoredMessage};
use crate::storage::{AfterCommit, WriteSet};

use super::message_bytes;

/// The messages of one delivery pass that reached their attempt limit.
pub(super) struct DeadLetters {
    /// The dead-letter topic.
    pub(super) to: Arc<Topic>,
    /// Their offsets in the subscription's topic, and the messages.
    pub(super) messages: Vec<(u64, StoredMessage)>,
    /// When they move (their publish time in the dead-letter topic).
    pub(super) now: i64,
    /// How each stays pending if the dead-letter topic refuses them.
    pub(super) retry: PendingRecord,
}

impl Broker {
    /// Adds the move of `dead` to `writes` and counts it in `state`; returns
    /// how many moved and what must run once the write is durable (the
    /// dead-letter topic's consumers may then see them). When the
    /// dead-letter topic refuses them, they go back to pending instead and
    /// nothing is added.
    pub(super) async fn move_dead_letters(
        &self,
        topic: &Topic,
        sub: &Subscription,
        state: &mut SubState,
        dead: DeadLetters,
        writes: &mut WriteSet,
    ) -> (u64, Option<AfterCommit>) {
        let dlq = dead.to;
        let moved = dead.messages.len() as u64;
        let bytes: u64 = dead.messages.iter().map(|(_, m)| message_bytes(m)).sum();
        let mut log = dlq.log.lock().await;
        let mut dlq_writes = WriteSet::new();
        let appended = Room::needed(&dlq, &log, bytes).and_then(|room| {
            let messages = dead.messages.iter().map(|(_, m)| m.clone()).collect();
            room.append(
                &self.store,
                &dlq,
                &mut log,
                messages,
                dead.now,
                &mut dlq_writes,
            )
        });
        match appended {
            Ok(_) => {
                dlq_writes.put(keys::topic_state(dlq.id), &log.state);
                writes.extend(dlq_writes);
                state.dead_lettered += moved;
                let end = log.state.next_offset;
                let visible = dlq.clone();
                (
                    moved,
                    Some(Box::new(move || visible.publish_visible_end(end))),
                )
            }
            Err(e) => {
                tracing::warn!(topic = %topic.name, subscription = %sub.name, error = %e,
                    "dead-letter topic refused messages; they stay pending");
                for (offset, _) in dead.messages {
                    state.restore_pending(offset, dead.retry.clone());
                }
                (0, None)
            }
        }
    }
}
