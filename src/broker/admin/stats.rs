//! Live figures: a topic's and a subscription's stats as the admin API shows
//! them, and every plan limit with its current use (GetQuota).

use crate::broker::subscription::{Subscription, SubscriptionSettings};
use crate::broker::topic::{Topic, TopicSettings};
use crate::broker::Broker;
use crate::error::Result;
use crate::tenancy::TenantKey;

/// Live figures of a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicStats {
    /// Retained messages.
    pub messages: u64,
    /// Their counted bytes.
    pub bytes: u64,
    /// Oldest retained offset.
    pub first_offset: u64,
    /// Offset of the next message.
    pub next_offset: u64,
    /// Removed by expiry, ever.
    pub expired_messages: u64,
    /// Removed by the size cap, ever.
    pub reclaimed_messages: u64,
    /// Age of the oldest retained message (0 when empty).
    pub oldest_message_age_ms: u64,
    /// Found corrupt at rest since start and skipped.
    pub corrupt_messages: u64,
}

/// A topic with its figures.
#[derive(Debug, Clone)]
pub struct TopicView {
    /// Identity and settings.
    pub settings: TopicSettings,
    /// Figures.
    pub stats: TopicStats,
}

/// Live figures of a subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// Undelivered plus due for redelivery.
    pub backlog: u64,
    /// Delivered, locked, not acked.
    pub in_flight: u64,
    /// Where new deliveries continue.
    pub next_offset: u64,
    /// Moved to the dead-letter topic, ever.
    pub dead_lettered: u64,
    /// Age of the oldest unacked message.
    pub oldest_unacked_age_ms: u64,
}

/// A subscription with its figures.
#[derive(Debug, Clone)]
pub struct SubscriptionView {
    /// The topic's name.
    pub topic: String,
    /// Identity and settings.
    pub settings: SubscriptionSettings,
    /// Figures.
    pub stats: SubscriptionStats,
}

impl SubscriptionView {
    /// The view as `key` may see it: a dead-letter topic off the key's topic
    /// allow-list is shown without its name (SPEC §3: the list limits
    /// everything the key sees).
    pub fn seen_by(mut self, key: &TenantKey) -> Self {
        if !key.may_touch(&self.settings.dead_letter_topic) {
            self.settings.dead_letter_topic.clear();
        }
        self
    }
}

/// One limit and its current use, as GetQuota shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaUse {
    /// Plan field name.
    pub name: &'static str,
    /// The limit in force (plan plus overrides).
    pub limit: u64,
    /// Current use (0 for per-request limits).
    pub used: u64,
    /// Unit of both.
    pub unit: &'static str,
}

impl Broker {
    /// Every limit of the tenant's plan with its current use. For a key
    /// limited to some topics, the uses that add up topics (topics,
    /// subscriptions per topic, storage, consume rate) count only those.
    pub async fn get_quota(&self, key: &TenantKey) -> Result<(String, Vec<QuotaUse>)> {
        let plan = self.check_manage(key)?;
        let plan_name = self.tenancy.get_tenant(&key.tenant)?.plan;
        let mut topics = self.tenant_topics(&key.tenant);
        let whole_tenant = !key.has_allow_list();
        topics.retain(|t| key.may_touch(&t.name));
        let max_subs = topics
            .iter()
            .map(|t| t.subscription_list().len() as u64)
            .max()
            .unwrap_or(0);
        let storage = if whole_tenant {
            topics.first().map(|t| t.tenant_bytes()).unwrap_or(0)
        } else {
            let mut bytes = 0;
            for topic in &topics {
                bytes += topic.log.lock().await.bytes;
            }
            bytes
        };
        let consume = topics
            .iter()
            .map(|t| {
                self.admission
                    .pacer(t.id, &plan)
                    .used_this_second(&self.clock)
            })
            .max()
            .unwrap_or(0);
        let items = plan
            .limits()
            .into_iter()
            .map(|(name, limit, unit)| QuotaUse {
                name,
                limit,
                used: match name {
                    "max_topics" => topics.len() as u64,
                    "max_subscriptions_per_topic" => max_subs,
                    "max_tenant_storage_bytes" => storage,
                    "max_concurrent_streams" => self.admission.open_streams(&key.tenant),
                    "produce_units_per_second" => self.admission.produce_used(&key.tenant),
                    "consume_units_per_second_per_topic" => consume,
                    "control_calls_per_second" => self.admission.control_used(&key.tenant),
                    _ => 0,
                },
                unit,
            })
            .collect();
        Ok((plan_name, items))
    }

    pub(super) async fn topic_view(&self, topic: &Topic) -> TopicView {
        let log = topic.log.lock().await;
        let now = self.clock.now_ms();
        TopicView {
            settings: topic.settings(),
            stats: TopicStats {
                messages: log.messages(),
                bytes: log.bytes,
                first_offset: log.first_offset(),
                next_offset: log.state.next_offset,
                expired_messages: log.state.expired_messages,
                reclaimed_messages: log.state.reclaimed_messages,
                oldest_message_age_ms: log
                    .sets
                    .front()
                    .map(|s| (now - s.publish_ms).max(0) as u64)
                    .unwrap_or(0),
                corrupt_messages: topic.quarantine.messages(),
            },
        }
    }

    pub(super) async fn subscription_view(
        &self,
        topic: &Topic,
        sub: &Subscription,
    ) -> SubscriptionView {
        let now = self.clock.now_ms();
        let state = sub.state.lock().await;
        let log = topic.log.lock().await;
        let visible_end = topic.visible_end();
        let next = state.next_offset.max(log.first_offset());
        let new_messages = visible_end.saturating_sub(next);
        let oldest_unacked = state
            .pending
            .keys()
            .next()
            .copied()
            .filter(|o| *o < next)
            .unwrap_or(next);
        let oldest_unacked_age_ms = log
            .publish_time_of(oldest_unacked)
            .filter(|_| oldest_unacked < visible_end)
            .map(|t| (now - t).max(0) as u64)
            .unwrap_or(0);
        SubscriptionView {
            topic: topic.name.clone(),
            settings: sub.settings(),
            stats: SubscriptionStats {
                backlog: new_messages + state.due_now(now),
                in_flight: state.in_flight(now),
                next_offset: next,
                dead_lettered: state.dead_lettered,
                oldest_unacked_age_ms,
            },
        }
    }
}
