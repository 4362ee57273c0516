//! Delivery: claiming messages for a subscription, recording the delivery
//! durably *before* it is sent (so attempt counts are exact across restarts
//! and an at-most-once delivery is never repeated), dead-lettering, acks,
//! nacks and seeks, plus the flow-controlled [`ConsumerSession`] behind the
//! Consume stream and the long-poll behind Fetch.
//!
//! - `deliver`: one delivery pass (pace, claim, read, record, meter).
//! - `dead_letters`: moving messages over their attempt limit.
//! - `acks`: acks, nacks and seeks.
//! - `fetch`: the long-poll behind Fetch.
//! - `session`: [`ConsumerSession`] and its [`FlowWindow`].
//! - `unsent`: taking back deliveries that never reached the client.
//! - `device_journal`: per-device delivery usage, folded off the delivery path.

mod acks;
mod dead_letters;
mod deliver;
mod device_journal;
mod fetch;
mod session;
mod unsent;

pub use acks::SeekTarget;
pub use fetch::Fetched;
pub use session::{ConsumerSession, FlowWindow};
pub use unsent::Unsent;

use std::sync::Arc;

use tokio::sync::MutexGuard;

use super::subscription::{SubState, Subscription};
use super::topic::TopicLog;
use super::{Broker, Message};
use crate::error::Result;
use crate::storage::{AfterCommit, PendingCommit, WriteSet};
use crate::tenancy::TenantKey;

/// One message handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Its offset.
    pub offset: u64,
    /// The message.
    pub message: Message,
    /// Publish time, Unix ms.
    pub publish_ms: i64,
    /// 1 on first delivery.
    pub attempt: u32,
    /// Counted bytes (payload + headers + ids).
    pub bytes: u64,
    /// When it was claimed and billed, Unix ms on the broker clock (the
    /// billing day a return of it takes the units back from).
    pub claimed_ms: i64,
}

/// The byte credit of one delivery pass.
#[derive(Debug, Clone, Copy)]
pub(super) struct PassBytes {
    /// Most bytes the pass may hand out.
    pub(super) max: u64,
    /// Whether a single message larger than `max` may go out alone (nothing
    /// else is outstanding on the stream, SPEC §2).
    pub(super) alone: bool,
}

/// Counted bytes of a stored message.
fn message_bytes(m: &Message) -> u64 {
    let headers: usize = m.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    (m.payload.len() + headers + m.device_id.len() + m.dedup_id.len()) as u64
}

impl Broker {
    /// Refuses consume-side work of a tenant that is not active (its scope
    /// and topic allow-list were checked at the door, `tenancy::access`).
    fn check_consume(&self, key: &TenantKey, _topic: &str) -> Result<()> {
        self.tenancy.check_data_plane(&key.tenant)
    }

    /// Makes a change to a subscription's state durable: adds what changed
    /// to `writes`, enqueues them while the state lock is still held (so the
    /// subscription's writes commit in the order they were made), releases
    /// the lock, and waits for the commit. `after` runs once it is durable.
    /// `topic_log` is the log lock of another topic `writes` appends to (the
    /// dead-letter topic), released after the enqueue as well.
    async fn commit_state(
        &self,
        sub: &Subscription,
        state: MutexGuard<'_, SubState>,
        writes: WriteSet,
        after: Option<AfterCommit>,
        topic_log: Option<MutexGuard<'_, TopicLog>>,
    ) -> Result<()> {
        let commit = self
            .enqueue_state(sub, state, writes, after, topic_log)
            .await?;
        commit.wait().await?;
        Ok(())
    }

    /// [`Broker::commit_state`] without the wait: the change is queued for
    /// commit (in order, behind every change the subscription made before)
    /// and the locks are released; the returned commit says when it is
    /// durable. Anything committed after it is durable only once it is
    /// (groups commit in queue order, and a failed group fails the store).
    async fn enqueue_state(
        &self,
        sub: &Subscription,
        mut state: MutexGuard<'_, SubState>,
        mut writes: WriteSet,
        after: Option<AfterCommit>,
        topic_log: Option<MutexGuard<'_, TopicLog>>,
    ) -> Result<PendingCommit> {
        state.persist(sub.id, &mut writes);
        let commit = self.store.enqueue(writes, after).await?;
        drop(topic_log);
        drop(state);
        Ok(commit)
    }
}

/// Wakes the subscription's waiting consumers once a change is durable (a
/// nack or a seek may make messages deliverable again).
fn wake_consumers(sub: &Arc<Subscription>) -> Option<AfterCommit> {
    let sub = sub.clone();
    Some(Box::new(move || sub.notify()))
}
