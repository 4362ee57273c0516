//! Acks, nacks and seeks: each changes the subscription's state and answers
//! once the change is durable.

use std::sync::Arc;
use std::time::Duration;

use super::wake_consumers;
use crate::broker::subscription::Subscription;
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::observability::name;
use crate::storage::{AfterCommit, PendingCommit, WriteSet};
use crate::tenancy::TenantKey;

/// Where a seek moves a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTarget {
    /// Oldest retained message.
    Earliest,
    /// After the newest message.
    Latest,
    /// The message at this offset.
    Offset(u64),
    /// The first message published at or after this Unix ms.
    Timestamp(i64),
}

impl Broker {
    /// Acknowledges messages; returns how many were pending.
    pub async fn ack(
        &self,
        key: &TenantKey,
        topic: &str,
        subscription: &str,
        offsets: &[u64],
    ) -> Result<u32> {
        self.check_consume(key, topic)?;
        let (_, sub) = self.subscription(&key.tenant, topic, subscription)?;
        self.ack_offsets(&key.tenant, &sub, offsets).await
    }

    pub(super) async fn ack_offsets(
        &self,
        tenant: &str,
        sub: &Subscription,
        offsets: &[u64],
    ) -> Result<u32> {
        let (acked, commit) = self.queue_ack(tenant, sub, offsets).await?;
        if let Some(commit) = commit {
            commit.wait().await?;
        }
        Ok(acked)
    }

    /// Acks `offsets` in the subscription's state and queues the change for
    /// commit without waiting for it: how many were pending, and the commit
    /// (none when nothing was pending). The acks are counted in the metrics
    /// once durable. A Consume stream's acks have no answer, so its session
    /// waits for these beside its other work; whatever the subscription
    /// commits after an ack is durable only once the ack is.
    pub(super) async fn queue_ack(
        &self,
        tenant: &str,
        sub: &Subscription,
        offsets: &[u64],
    ) -> Result<(u32, Option<PendingCommit>)> {
        let mut state = sub.state.lock().await;
        let mut acked = 0;
        for &offset in offsets {
            if state.ack(offset) {
                acked += 1;
            }
        }
        if acked == 0 {
            return Ok((0, None));
        }
        let metrics = self.metrics.clone();
        let tenant = tenant.to_string();
        let count: AfterCommit =
            Box::new(move || metrics.count(name::ACKED_MESSAGES, &tenant, acked as u64));
        let commit = self
            .enqueue_state(sub, state, WriteSet::new(), Some(count), None)
            .await?;
        Ok((acked, Some(commit)))
    }

    /// Gives messages back for redelivery after `delay`; returns how many
    /// were pending.
    pub async fn nack(
        &self,
        key: &TenantKey,
        topic: &str,
        subscription: &str,
        offsets: &[u64],
        delay: Duration,
    ) -> Result<u32> {
        self.check_consume(key, topic)?;
        let (_, sub) = self.subscription(&key.tenant, topic, subscription)?;
        self.nack_offsets(&sub, offsets, delay).await
    }

    pub(super) async fn nack_offsets(
        &self,
        sub: &Arc<Subscription>,
        offsets: &[u64],
        delay: Duration,
    ) -> Result<u32> {
        if delay > Duration::from_secs(3600) {
            return Err(Error::invalid(
                "nack delay_ms may be at most 3600000 (one hour)",
            ));
        }
        let mut state = sub.state.lock().await;
        let at = self.clock.now_ms() + delay.as_millis() as i64;
        let mut nacked = 0;
        for &offset in offsets {
            if state.nack(offset, at) {
                nacked += 1;
            }
        }
        if nacked == 0 {
            return Ok(0);
        }
        self.commit_state(sub, state, WriteSet::new(), wake_consumers(sub), None)
            .await?;
        Ok(nacked)
    }

    /// Moves a subscription's cursor; returns the new next offset.
    pub async fn seek(
        &self,
        key: &TenantKey,
        topic_name: &str,
        subscription: &str,
        target: SeekTarget,
    ) -> Result<u64> {
        self.check_consume(key, topic_name)?;
        let (topic, sub) = self.subscription(&key.tenant, topic_name, subscription)?;
        let mut state = sub.state.lock().await;
        let offset = {
            let log = topic.log.lock().await;
            match target {
                SeekTarget::Earliest => log.first_offset(),
                SeekTarget::Latest => log.state.next_offset,
                SeekTarget::Offset(o) => o.clamp(log.first_offset(), log.state.next_offset),
                SeekTarget::Timestamp(ts) => log.offset_at_time(ts),
            }
        };
        state.seek(offset);
        self.commit_state(&sub, state, WriteSet::new(), wake_consumers(&sub), None)
            .await?;
        Ok(offset)
    }
}
