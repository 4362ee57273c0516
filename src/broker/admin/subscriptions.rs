//! Subscription management: create, get, list, update, delete, with the
//! delivery settings checked against the plan and each other.

use std::sync::Arc;

use crate::broker::subscription::{
    Cursor, StoredState, SubState, Subscription, SubscriptionSettings,
};
use crate::broker::topic::Topic;
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::quota::Plan;
use crate::storage::WriteSet;
use crate::sync::RwLockExt;
use crate::tenancy::{validate_resource_name, TenantKey};

use super::SubscriptionView;

/// Settings asked for on subscription creation.
#[derive(Debug, Clone, Default)]
pub struct NewSubscription {
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

const MAX_DELIVERY_ATTEMPTS_LIMIT: u32 = 100;

impl Broker {
    /// Creates a subscription.
    pub async fn create_subscription(
        &self,
        key: &TenantKey,
        topic_name: &str,
        name: &str,
        asked: NewSubscription,
        start: StartAt,
    ) -> Result<SubscriptionView> {
        validate_resource_name("subscription", name)?;
        let plan = self.check_manage(key)?;
        self.refuse_when_disk_low(&key.tenant)?;
        let topic = self.topic(&key.tenant, topic_name)?;
        let settings = SubscriptionSettings {
            id: 0,
            topic_id: topic.id,
            name: name.to_string(),
            lock_seconds: asked.lock_seconds,
            max_delivery_attempts: asked.max_delivery_attempts,
            dead_letter_topic: asked.dead_letter_topic,
            created_ms: self.clock.now_ms(),
        };
        self.check_subscription_settings(&plan, key, &topic, &settings)?;

        let _guard = self.admin_lock.lock().await;
        if topic.is_deleted() {
            return Err(Error::not_found("topic", topic_name));
        }
        if topic.subscription(name).is_some() {
            return Err(Error::already_exists("subscription", name));
        }
        let count = topic.subscription_list().len();
        if count >= plan.max_subscriptions_per_topic as usize {
            self.count_refusal("subscriptions", &key.tenant);
            return Err(Error::exhausted(format!(
                "subscription limit reached: the plan allows {} subscriptions per topic and \
                 topic '{topic_name}' has {count}",
                plan.max_subscriptions_per_topic
            )));
        }
        let settings = SubscriptionSettings {
            id: self.store.generate_id()?,
            ..settings
        };
        let log = topic.log.lock().await;
        let cursor = Cursor {
            next_offset: match start {
                StartAt::Earliest => log.first_offset(),
                StartAt::Latest => log.state.next_offset,
            },
            dead_lettered: 0,
        };
        drop(log);
        let mut writes = WriteSet::new();
        writes.put_subscription(&settings);
        writes.put_cursor(settings.id, &cursor);
        self.store.commit(writes).await?;
        let sub = Arc::new(Subscription::new(
            settings,
            SubState::from_stored(StoredState {
                cursor,
                ..StoredState::default()
            }),
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
        settings: &SubscriptionSettings,
    ) -> Result<()> {
        plan.check_lock(settings.lock_seconds)?;
        if settings.max_delivery_attempts > MAX_DELIVERY_ATTEMPTS_LIMIT {
            return Err(Error::invalid(format!(
                "max_delivery_attempts {} is out of range: it must be 0 (unlimited) or between 1 and {MAX_DELIVERY_ATTEMPTS_LIMIT}",
                settings.max_delivery_attempts
            )));
        }
        let has_dlq = !settings.dead_letter_topic.is_empty();
        if settings.max_delivery_attempts > 0 && !has_dlq {
            return Err(Error::invalid(
                "max_delivery_attempts needs a dead_letter_topic to move messages to",
            ));
        }
        if has_dlq {
            if settings.max_delivery_attempts == 0 {
                return Err(Error::invalid(
                    "dead_letter_topic needs max_delivery_attempts between 1 and 100",
                ));
            }
            if settings.lock_seconds == 0 {
                return Err(Error::invalid(
                    "dead-lettering needs an at-least-once subscription (lock_seconds > 0)",
                ));
            }
            validate_resource_name("topic", &settings.dead_letter_topic)?;
            if settings.dead_letter_topic == topic.name {
                return Err(Error::invalid(
                    "dead_letter_topic must be a different topic than the subscription's own",
                ));
            }
            self.topic(&key.tenant, &settings.dead_letter_topic)?;
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
        self.check_manage(key)?;
        let (topic, sub) = self.subscription(&key.tenant, topic_name, name)?;
        Ok(self.subscription_view(&topic, &sub).await.seen_by(key))
    }

    /// A topic's subscriptions.
    pub async fn list_subscriptions(
        &self,
        key: &TenantKey,
        topic_name: &str,
    ) -> Result<Vec<SubscriptionView>> {
        self.check_manage(key)?;
        let topic = self.topic(&key.tenant, topic_name)?;
        let mut views = Vec::new();
        for sub in topic.subscription_list() {
            views.push(self.subscription_view(&topic, &sub).await.seen_by(key));
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
        let plan = self.check_manage(key)?;
        let (topic, sub) = self.subscription(&key.tenant, topic_name, name)?;
        let mut settings = sub.settings();
        if let Some(v) = update.lock_seconds {
            settings.lock_seconds = v;
        }
        if let Some(v) = update.max_delivery_attempts {
            settings.max_delivery_attempts = v;
        }
        if let Some(v) = update.dead_letter_topic {
            settings.dead_letter_topic = v;
        }
        self.check_subscription_settings(&plan, key, &topic, &settings)?;
        let _guard = self.admin_lock.lock().await;
        let mut writes = WriteSet::new();
        writes.put_subscription(&settings);
        self.store.commit(writes).await?;
        sub.set_settings(settings);
        Ok(self.subscription_view(&topic, &sub).await)
    }

    /// Deletes a subscription and its state.
    pub async fn delete_subscription(
        &self,
        key: &TenantKey,
        topic_name: &str,
        name: &str,
    ) -> Result<()> {
        self.check_manage(key)?;
        let _guard = self.admin_lock.lock().await;
        let (topic, sub) = self.subscription(&key.tenant, topic_name, name)?;
        let state = sub.state.lock().await;
        let mut writes = WriteSet::new();
        self.store
            .delete_subscription(&sub.settings(), &mut writes)?;
        self.store.commit(writes).await?;
        drop(state);
        topic.subscriptions.write_unpoisoned().remove(name);
        sub.mark_deleted();
        Ok(())
    }
}
