//! Acks, nacks and seeks: each changes the subscription's state and answers
//! once the change is durable.

use std::sync::Arc;
use std::time::Duration;

use super::wake_consumers;
use crate::broker::subscription::Subscription;
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::observability::name;
use crate::storage::WriteSet;
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
        let mut state = sub.state.lock().await;
        let mut acked = 0;
        for &offset in offsets {
            if state.ack(offset) {
                acked += 1;
            }
        }
        if acked == 0 {
            return Ok(0);
        }
        self.commit_state(sub, state, WriteSet::new(), None, None)
            .await?;
        self.metrics
            .count(name::ACKED_MESSAGES, tenant, acked as u64);
        Ok(acked)
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
