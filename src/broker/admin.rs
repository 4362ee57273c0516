//! Tenant self-service over topics and subscriptions: create, read, list,
//! update, delete, with the plan's ranges and counts checked first so a
//! refused request changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::subscription::{SubState, Subscription};
use super::topic::{Topic, TopicLog, OVERFLOW_RECLAIM, OVERFLOW_REFUSE};
use super::Broker;
use crate::error::{Error, Result};
use crate::quota::Plan;
use crate::storage::records::{
    CursorRecord, SubscriptionRecord, TopicLifeRecord, TopicRecord, TopicStateRecord,
};
use crate::storage::{keys, WriteSet};
use crate::sync::RwLockExt;
use crate::tenancy::{validate_resource_name, Scope, TenantKey};

/// Settings asked for on topic creation; zeros mean the plan's defaults.
#[derive(Debug, Clone, Default)]
pub struct TopicSettings {
    /// Message expiry in seconds.
    pub expiry_seconds: u64,
    /// Size cap in bytes.
    pub max_bytes: u64,
    /// 0 or 1 reclaim oldest, 2 refuse produce.
    pub overflow_policy: i32,
    /// Dedup window in seconds.
    pub dedup_window_seconds: u64,
}

/// A topic update; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct TopicUpdate {
    /// New expiry.
    pub expiry_seconds: Option<u64>,
    /// New size cap.
    pub max_bytes: Option<u64>,
    /// New overflow policy.
    pub overflow_policy: Option<i32>,
    /// New dedup window.
    pub dedup_window_seconds: Option<u64>,
}

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
}

/// A topic with its figures.
#[derive(Debug, Clone)]
pub struct TopicView {
    /// Settings and identity.
    pub record: TopicRecord,
    /// Figures.
    pub stats: TopicStats,
}

/// Settings asked for on subscription creation.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionSettings {
    /// 0 at-most-once, else lock seconds.
    pub lock_seconds: u32,
    /// 0 unlimited.
    pub max_delivery_attempts: u32,
    /// Dead-letter topic or "".
    pub dead_letter_topic: String,
}

/// A subscription update; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionUpdate {
    /// New lock time.
    pub lock_seconds: Option<u32>,
    /// New attempt limit.
    pub max_delivery_attempts: Option<u32>,
    /// New dead-letter topic ("" to clear).
    pub dead_letter_topic: Option<String>,
}

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// Oldest retained message (the default).
    #[default]
    Earliest,
    /// Only messages produced from now on.
    Latest,
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
    /// Settings and identity.
    pub record: SubscriptionRecord,
    /// Figures.
    pub stats: SubscriptionStats,
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

const MAX_DELIVERY_ATTEMPTS_LIMIT: u32 = 100;

impl Broker {
    /// Checks the manage scope (and topic allow-list) and spends one
    /// control-plane call of the tenant's rate; returns the tenant's plan.
    fn check_manage(&self, key: &TenantKey, topic: Option<&str>) -> Result<Arc<Plan>> {
        key.require(Scope::Manage, topic)?;
        let plan = self.tenancy.plan_of(&key.tenant);
        self.admission.admit_control(&key.tenant, &plan)?;
        Ok(plan)
    }

    /// Creates a topic.
    pub async fn create_topic(
        &self,
        key: &TenantKey,
        name: &str,
        asked: TopicSettings,
    ) -> Result<TopicView> {
        validate_resource_name("topic", name)?;
        let plan = self.check_manage(key, Some(name))?;
        let record = TopicRecord {
            id: 0,
            tenant: key.tenant.clone(),
            name: name.to_string(),
            expiry_seconds: or_default(asked.expiry_seconds, plan.default_message_expiry_seconds),
            max_bytes: or_default(asked.max_bytes, plan.max_topic_bytes),
            overflow_policy: check_overflow(asked.overflow_policy)?,
            dedup_window_seconds: or_default(
                asked.dedup_window_seconds,
                plan.default_dedup_window_seconds,
            ),
            created_ms: self.clock.now_ms(),
        };
        check_topic_settings(&plan, &record)?;

        let _guard = self.admin_lock.lock().await;
        if self.topic(&key.tenant, name).is_ok() {
            return Err(Error::already_exists("topic", name));
        }
        let count = self.tenant_topics(&key.tenant).len();
        if count >= plan.max_topics as usize {
            self.metrics.count_labeled(
                crate::observability::name::QUOTA_REFUSALS,
                &[("kind", "topics".into())],
                1,
            );
            return Err(Error::exhausted(format!(
                "topic limit reached: the plan allows {} topics per tenant and {count} exist",
                plan.max_topics
            )));
        }
        let record = TopicRecord {
            id: self.store.generate_id()?,
            ..record
        };
        let state = TopicStateRecord::default();
        let mut writes = WriteSet::new();
        writes.put(keys::topic(&record.tenant, &record.name), &record);
        writes.put(keys::topic_state(record.id), &state);
        writes.put(
            keys::topic_life(&record.tenant, record.id),
            &TopicLifeRecord {
                name: record.name.clone(),
                created_ms: record.created_ms,
                deleted_ms: 0,
            },
        );
        self.store.commit(writes).await?;
        let topic = Arc::new(Topic::new(
            record,
            TopicLog {
                state,
                sets: Default::default(),
                bytes: 0,
            },
            self.tenant_bytes_counter(&key.tenant),
        ));
        self.insert_topic(topic.clone());
        Ok(self.topic_view(&topic).await)
    }

    /// Every limit of the tenant's plan with its current use.
    pub async fn get_quota(&self, key: &TenantKey) -> Result<(String, Vec<QuotaUse>)> {
        let plan = self.check_manage(key, None)?;
        let plan_name = self.tenancy.get_tenant(&key.tenant)?.plan;
        let topics = self.tenant_topics(&key.tenant);
        let max_subs = topics
            .iter()
            .map(|t| t.subscription_list().len() as u64)
            .max()
            .unwrap_or(0);
        let storage = topics.first().map(|t| t.tenant_bytes()).unwrap_or(0);
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

    /// One topic with its figures.
    pub async fn get_topic(&self, key: &TenantKey, name: &str) -> Result<TopicView> {
        self.check_manage(key, Some(name))?;
        let topic = self.topic(&key.tenant, name)?;
        Ok(self.topic_view(&topic).await)
    }

    /// The tenant's topics this key may see.
    pub async fn list_topics(&self, key: &TenantKey) -> Result<Vec<TopicView>> {
        self.check_manage(key, None)?;
        let mut views = Vec::new();
        for topic in self.tenant_topics(&key.tenant) {
            if key.may_touch(&topic.name) {
                views.push(self.topic_view(&topic).await);
            }
        }
        Ok(views)
    }

    /// Changes a topic's settings. A lower size cap takes effect at the next
    /// produce.
    pub async fn update_topic(
        &self,
        key: &TenantKey,
        name: &str,
        update: TopicUpdate,
    ) -> Result<TopicView> {
        let plan = self.check_manage(key, Some(name))?;
        let topic = self.topic(&key.tenant, name)?;
        let mut record = topic.settings();
        if let Some(v) = update.expiry_seconds {
            record.expiry_seconds = v;
        }
        if let Some(v) = update.max_bytes {
            record.max_bytes = v;
        }
        if let Some(v) = update.overflow_policy {
            record.overflow_policy = check_overflow(v)?;
        }
        if let Some(v) = update.dedup_window_seconds {
            record.dedup_window_seconds = v;
        }
        check_topic_settings(&plan, &record)?;
        let _guard = self.admin_lock.lock().await;
        let mut writes = WriteSet::new();
        writes.put(keys::topic(&record.tenant, &record.name), &record);
        self.store.commit(writes).await?;
        topic.set_settings(record);
        Ok(self.topic_view(&topic).await)
    }

    /// Deletes a topic with its messages and subscriptions.
    pub async fn delete_topic(&self, key: &TenantKey, name: &str) -> Result<()> {
        self.check_manage(key, Some(name))?;
        let _guard = self.admin_lock.lock().await;
        let topic = self.topic(&key.tenant, name)?;
        self.delete_topic_locked(topic).await
    }

    /// Erases every topic of a tenant (termination).
    pub async fn erase_tenant_data(&self, tenant: &str) -> Result<()> {
        let _guard = self.admin_lock.lock().await;
        for topic in self.tenant_topics(tenant) {
            self.delete_topic_locked(topic).await?;
        }
        Ok(())
    }

    /// Deletes a topic; the caller holds the admin lock.
    async fn delete_topic_locked(&self, topic: Arc<Topic>) -> Result<()> {
        // Lock order: subscription states, then the log; holding them all
        // means no delivery or produce writes behind the deletion's back.
        let subs = topic.subscription_list();
        let mut states = Vec::with_capacity(subs.len());
        for sub in &subs {
            states.push(sub.state.lock().await);
        }
        let log = topic.log.lock().await;
        let mut writes = WriteSet::new();
        for set in &log.sets {
            writes.release_blob(set.blob);
        }
        for keyspace in [keys::SET_HEADER, keys::DEDUP] {
            for key in self.store.scan_keys(&keys::id_prefix(keyspace, topic.id)) {
                writes.delete(key?);
            }
        }
        writes.delete(keys::topic_state(topic.id));
        writes.delete(keys::topic(&topic.tenant, &topic.name));
        // Topic-days still count the days it existed.
        writes.put(
            keys::topic_life(&topic.tenant, topic.id),
            &TopicLifeRecord {
                name: topic.name.clone(),
                created_ms: topic.settings().created_ms,
                deleted_ms: self.clock.now_ms(),
            },
        );
        for sub in &subs {
            self.delete_subscription_writes(&topic, sub, &mut writes)?;
        }
        self.store.commit(writes).await?;
        drop(log);
        drop(states);
        self.remove_topic(&topic);
        topic.forget_bytes();
        topic.mark_deleted();
        Ok(())
    }

    fn delete_subscription_writes(
        &self,
        topic: &Topic,
        sub: &Subscription,
        writes: &mut WriteSet,
    ) -> Result<()> {
        for keyspace in [keys::PENDING, keys::PENDING_RUN] {
            for key in self.store.scan_keys(&keys::id_prefix(keyspace, sub.id)) {
                writes.delete(key?);
            }
        }
        writes.delete(keys::cursor(sub.id));
        writes.delete(keys::subscription(topic.id, &sub.name));
        Ok(())
    }

    async fn topic_view(&self, topic: &Topic) -> TopicView {
        let log = topic.log.lock().await;
        let now = self.clock.now_ms();
        TopicView {
            record: topic.settings(),
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
            },
        }
    }

    /// Creates a subscription.
    pub async fn create_subscription(
        &self,
        key: &TenantKey,
        topic_name: &str,
        name: &str,
        asked: SubscriptionSettings,
        start: StartAt,
    ) -> Result<SubscriptionView> {
        validate_resource_name("subscription", name)?;
        let plan = self.check_manage(key, Some(topic_name))?;
        let topic = self.topic(&key.tenant, topic_name)?;
        let record = SubscriptionRecord {
            id: 0,
            topic_id: topic.id,
            name: name.to_string(),
            lock_seconds: asked.lock_seconds,
            max_delivery_attempts: asked.max_delivery_attempts,
            dead_letter_topic: asked.dead_letter_topic,
            created_ms: self.clock.now_ms(),
        };
        self.check_subscription_settings(&plan, key, &topic, &record)?;

        let _guard = self.admin_lock.lock().await;
        if topic.is_deleted() {
            return Err(Error::not_found("topic", topic_name));
        }
        if topic.subscription(name).is_some() {
            return Err(Error::already_exists("subscription", name));
        }
        let count = topic.subscription_list().len();
        if count >= plan.max_subscriptions_per_topic as usize {
            self.metrics.count_labeled(
                crate::observability::name::QUOTA_REFUSALS,
                &[("kind", "subscriptions".into())],
                1,
            );
            return Err(Error::exhausted(format!(
                "subscription limit reached: the plan allows {} subscriptions per topic and \
                 topic '{topic_name}' has {count}",
                plan.max_subscriptions_per_topic
            )));
        }
        let record = SubscriptionRecord {
            id: self.store.generate_id()?,
            ..record
        };
        let log = topic.log.lock().await;
        let cursor = CursorRecord {
            next_offset: match start {
                StartAt::Earliest => log.first_offset(),
                StartAt::Latest => log.state.next_offset,
            },
            dead_lettered: 0,
        };
        drop(log);
        let mut writes = WriteSet::new();
        writes.put(keys::subscription(topic.id, name), &record);
        writes.put(keys::cursor(record.id), &cursor);
        self.store.commit(writes).await?;
        let sub = Arc::new(Subscription::new(
            record,
            SubState::from_records(cursor, Vec::new(), BTreeMap::new()),
        ));
        topic
            .subscriptions
            .write_unpoisoned()
            .insert(name.to_string(), sub.clone());
        Ok(self.subscription_view(&topic, &sub).await)
    }

    fn check_subscription_settings(
        &self,
        plan: &Plan,
        key: &TenantKey,
        topic: &Topic,
        record: &SubscriptionRecord,
    ) -> Result<()> {
        plan.check_lock(record.lock_seconds)?;
        if record.max_delivery_attempts > MAX_DELIVERY_ATTEMPTS_LIMIT {
            return Err(Error::invalid(format!(
                "max_delivery_attempts {} is out of range: it must be 0 (unlimited) or between 1 and {MAX_DELIVERY_ATTEMPTS_LIMIT}",
                record.max_delivery_attempts
            )));
        }
        let has_dlq = !record.dead_letter_topic.is_empty();
        if record.max_delivery_attempts > 0 && !has_dlq {
            return Err(Error::invalid(
                "max_delivery_attempts needs a dead_letter_topic to move messages to",
            ));
        }
        if has_dlq {
            if record.max_delivery_attempts == 0 {
                return Err(Error::invalid(
                    "dead_letter_topic needs max_delivery_attempts between 1 and 100",
                ));
            }
            if record.lock_seconds == 0 {
                return Err(Error::invalid(
                    "dead-lettering needs an at-least-once subscription (lock_seconds > 0)",
                ));
            }
            validate_resource_name("topic", &record.dead_letter_topic)?;
            if record.dead_letter_topic == topic.name {
                return Err(Error::invalid(
                    "dead_letter_topic must be a different topic than the subscription's own",
                ));
            }
            key.require(Scope::Manage, Some(&record.dead_letter_topic))?;
            self.topic(&key.tenant, &record.dead_letter_topic)?;
        }
        Ok(())
    }

    /// One subscription with its figures.
    pub async fn get_subscription(
        &self,
        key: &TenantKey,
        topic_name: &str,
        name: &str,
    ) -> Result<SubscriptionView> {
        self.check_manage(key, Some(topic_name))?;
        let (topic, sub) = self.subscription(&key.tenant, topic_name, name)?;
        Ok(self.subscription_view(&topic, &sub).await)
    }

    /// A topic's subscriptions.
    pub async fn list_subscriptions(
        &self,
        key: &TenantKey,
        topic_name: &str,
    ) -> Result<Vec<SubscriptionView>> {
        self.check_manage(key, Some(topic_name))?;
        let topic = self.topic(&key.tenant, topic_name)?;
        let mut views = Vec::new();
        for sub in topic.subscription_list() {
            views.push(self.subscription_view(&topic, &sub).await);
        }
        Ok(views)
    }

    /// Changes a subscription's settings.
    pub async fn update_subscription(
        &self,
        key: &TenantKey,
        topic_name: &str,
        name: &str,
        update: SubscriptionUpdate,
    ) -> Result<SubscriptionView> {
        let plan = self.check_manage(key, Some(topic_name))?;
        let (topic, sub) = self.subscription(&key.tenant, topic_name, name)?;
        let mut record = sub.settings();
        if let Some(v) = update.lock_seconds {
            record.lock_seconds = v;
        }
        if let Some(v) = update.max_delivery_attempts {
            record.max_delivery_attempts = v;
        }
        if let Some(v) = update.dead_letter_topic {
            record.dead_letter_topic = v;
        }
        self.check_subscription_settings(&plan, key, &topic, &record)?;
        let _guard = self.admin_lock.lock().await;
        let mut writes = WriteSet::new();
        writes.put(keys::subscription(topic.id, name), &record);
        self.store.commit(writes).await?;
        sub.set_settings(record);
        Ok(self.subscription_view(&topic, &sub).await)
    }

    /// Deletes a subscription and its state.
    pub async fn delete_subscription(
        &self,
        key: &TenantKey,
        topic_name: &str,
        name: &str,
    ) -> Result<()> {
        self.check_manage(key, Some(topic_name))?;
        let _guard = self.admin_lock.lock().await;
        let (topic, sub) = self.subscription(&key.tenant, topic_name, name)?;
        let state = sub.state.lock().await;
        let mut writes = WriteSet::new();
        self.delete_subscription_writes(&topic, &sub, &mut writes)?;
        self.store.commit(writes).await?;
        drop(state);
        topic.subscriptions.write_unpoisoned().remove(name);
        sub.mark_deleted();
        Ok(())
    }

    async fn subscription_view(&self, topic: &Topic, sub: &Subscription) -> SubscriptionView {
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
            record: sub.settings(),
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

fn or_default(value: u64, default: u64) -> u64 {
    if value == 0 {
        default
    } else {
        value
    }
}

fn check_overflow(value: i32) -> Result<i32> {
    match value {
        0 | OVERFLOW_RECLAIM => Ok(OVERFLOW_RECLAIM),
        OVERFLOW_REFUSE => Ok(OVERFLOW_REFUSE),
        other => Err(Error::invalid(format!(
            "unknown overflow_policy {other}: use RECLAIM_OLDEST (1) or REFUSE_PRODUCE (2)"
        ))),
    }
}

fn check_topic_settings(plan: &Plan, record: &TopicRecord) -> Result<()> {
    plan.check_expiry(record.expiry_seconds)?;
    plan.check_topic_bytes(record.max_bytes)?;
    plan.check_dedup_window(record.dedup_window_seconds)
}
