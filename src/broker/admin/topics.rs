//! Topic management: create, get, list, update, delete, and erasing every
//! topic of a tenant.

use std::sync::Arc;

use crate::broker::topic::{OverflowPolicy, Topic, TopicLog, TopicSettings, TopicState};
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::metering::TopicLife;
use crate::quota::Plan;
use crate::storage::WriteSet;
use crate::tenancy::{validate_resource_name, TenantKey};

use super::TopicView;

/// Settings asked for on topic creation; zeros mean the plan's defaults.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    /// Message expiry in seconds.
    pub expiry_seconds: u64,
    /// Size cap in bytes.
    pub max_bytes: u64,
    /// The API's `OverflowPolicy` number: 0 or 1 reclaim oldest, 2 refuse
    /// produce (checked by [`Broker::create_topic`]).
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
    /// New overflow policy, as the API's number (see [`NewTopic`]).
    pub overflow_policy: Option<i32>,
    /// New dedup window.
    pub dedup_window_seconds: Option<u64>,
}

impl Broker {
    /// Creates a topic.
    pub async fn create_topic(
        &self,
        key: &TenantKey,
        name: &str,
        asked: NewTopic,
    ) -> Result<TopicView> {
        validate_resource_name("topic", name)?;
        let plan = self.check_manage(key)?;
        self.refuse_when_disk_low(&key.tenant)?;
        let record = TopicSettings {
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
            self.count_refusal("topics", &key.tenant);
            return Err(Error::exhausted(format!(
                "topic limit reached: the plan allows {} topics per tenant and {count} exist",
                plan.max_topics
            )));
        }
        let record = TopicSettings {
            id: self.store.generate_id()?,
            ..record
        };
        let state = TopicState::default();
        let mut writes = WriteSet::new();
        writes.put_topic(&record);
        writes.put_topic_state(record.id, &state);
        // Nothing of a new topic is folded into its device counters yet.
        writes.put_metered_through(record.id, 0);
        writes.put_topic_life(
            &record.tenant,
            record.id,
            &TopicLife {
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
                device_metered_through: 0,
            },
            self.tenant_bytes_counter(&key.tenant),
        ));
        self.insert_topic(topic.clone());
        Ok(self.topic_view(&topic).await)
    }

    /// One topic with its figures.
    pub async fn get_topic(&self, key: &TenantKey, name: &str) -> Result<TopicView> {
        self.check_manage(key)?;
        let topic = self.topic(&key.tenant, name)?;
        Ok(self.topic_view(&topic).await)
    }

    /// The tenant's topics this key may see.
    pub async fn list_topics(&self, key: &TenantKey) -> Result<Vec<TopicView>> {
        self.check_manage(key)?;
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
        let plan = self.check_manage(key)?;
        let topic = self.topic(&key.tenant, name)?;
        let mut settings = topic.settings();
        if let Some(v) = update.expiry_seconds {
            settings.expiry_seconds = v;
        }
        if let Some(v) = update.max_bytes {
            settings.max_bytes = v;
        }
        if let Some(v) = update.overflow_policy {
            settings.overflow_policy = check_overflow(v)?;
        }
        if let Some(v) = update.dedup_window_seconds {
            settings.dedup_window_seconds = v;
        }
        check_topic_settings(&plan, &settings)?;
        let _guard = self.admin_lock.lock().await;
        let mut writes = WriteSet::new();
        writes.put_topic(&settings);
        self.store.commit(writes).await?;
        topic.set_settings(settings);
        Ok(self.topic_view(&topic).await)
    }

    /// Deletes a topic with its messages and subscriptions.
    pub async fn delete_topic(&self, key: &TenantKey, name: &str) -> Result<()> {
        self.check_manage(key)?;
        let _guard = self.admin_lock.lock().await;
        let topic = self.topic(&key.tenant, name)?;
        self.delete_topic_locked(topic).await
    }

    /// Erases every topic of a tenant (termination).
    pub async fn erase_tenant_data(&self, tenant: &str) -> Result<()> {
        let _guard = self.admin_lock.lock().await;
        // Journaled per-device delivery usage opens only with the key that goes next.
        self.fold_device_journal(tenant).await?;
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
        let mut log = topic.log.lock().await;
        let mut writes = WriteSet::new();
        // Fold first: the per-device usage of its sets, before they go.
        let metered = log.device_metered_through;
        let folded = self
            .fold_before_deleting(&topic, &mut log, u64::MAX, &mut writes)
            .and_then(|()| {
                Ok(self
                    .store
                    .delete_topic(&topic.settings(), &log.sets, &mut writes)?)
            });
        if let Err(e) = folded {
            // Nothing is written: the offset stays where the store has it.
            log.device_metered_through = metered;
            return Err(e);
        }
        writes.delete_metered_through(topic.id);
        // Topic-days still count the days it existed.
        writes.put_topic_life(
            &topic.tenant,
            topic.id,
            &TopicLife {
                name: topic.name.clone(),
                created_ms: topic.settings().created_ms,
                deleted_ms: self.clock.now_ms(),
            },
        );
        for sub in &subs {
            self.store
                .delete_subscription(&sub.settings(), &mut writes)?;
        }
        // Its storage counts up to the deletion.
        let now = self.clock.now_ms();
        self.close_storage_interval(&topic, &mut log, now, &mut writes);
        self.store.commit(writes).await?;
        drop(log);
        drop(states);
        self.remove_topic(&topic);
        topic.forget_bytes();
        topic.mark_deleted();
        Ok(())
    }
}

fn or_default(value: u64, default: u64) -> u64 {
    if value == 0 {
        default
    } else {
        value
    }
}

/// The overflow policy an API number names, or INVALID_ARGUMENT.
fn check_overflow(number: i32) -> Result<OverflowPolicy> {
    OverflowPolicy::from_number(number).ok_or_else(|| {
        Error::invalid(format!(
            "unknown overflow_policy {number}: use RECLAIM_OLDEST (1) or REFUSE_PRODUCE (2)"
        ))
    })
}

fn check_topic_settings(plan: &Plan, settings: &TopicSettings) -> Result<()> {
    plan.check_expiry(settings.expiry_seconds)?;
    plan.check_topic_bytes(settings.max_bytes)?;
    plan.check_dedup_window(settings.dedup_window_seconds)
}
