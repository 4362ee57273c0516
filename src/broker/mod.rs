//! The broker domain: topics as durable ordered logs, subscriptions with
//! their cursors and locks, produce, delivery, acks, retention. It knows
//! nothing of gRPC (the `api` layer adapts it) and nothing of sled (it writes
//! through [`crate::storage`]).
//!
//! Nor does it know storage's key layout or rows: the storage repositories
//! (`storage/repo/topics.rs`, `sets.rs`, `dedup.rs`, `subscriptions.rs`)
//! take and return the broker's own plain types — [`topic::TopicSettings`],
//! [`topic::TopicState`], [`topic::SetSummary`] (with an opaque
//! [`crate::storage::SetLocation`]), [`MessageSet`], [`produce::DedupEntry`],
//! [`subscription::SubscriptionSettings`], [`subscription::StoredState`] —
//! and build the keys and rows themselves. A new thing the broker stores
//! gets a plain type here and typed methods there.
//!
//! Concurrency rule: a topic's log lock and a subscription's state lock are
//! held while a write is built *and enqueued* (not while it flushes), so the
//! group committer commits each topic's and each subscription's changes in
//! the order they were made. Lock order: subscription state, then topic log.
//!
//! ## Where things are
//!
//! A produce goes [`produce`] (admit, dedup, room, append, queue) onto a
//! [`topic`]'s log; a consume goes [`delivery`] (pace, claim, read, record,
//! dead-letter) over a [`subscription`]'s state, reading the topic back
//! through [`topic`]'s reader.
//!
//! | module | what it owns |
//! |---|---|
//! | this file | [`Broker`]: the registry of topics, start-up loading, lookups |
//! | `message` | [`Message`] and [`MessageSet`], the messages it keeps |
//! | [`topic`] | a topic, its log (`log`) and reading it back (`reader`) |
//! | [`subscription`] | a subscription's state machine: `state`, `claim`, `runs`, `persist` |
//! | [`produce`] | `admit`, `combine` + `round` (concurrent produces share a set), `dedup`, `room` (shared with dead letters), `pending` |
//! | [`delivery`] | `deliver`, `dead_letters`, `acks`, `fetch`, `session` |
//! | [`admin`] | topic and subscription management (`topics`, `subscriptions`) and `stats` |
//! | [`retention`] | expiry of messages and of dedup entries |
//! | `storage_meter` | metering of retained bytes over time |
//! | `gauges` | the backlog, in-flight and retained-bytes gauges |
//! | `disk_space` | the disk watermark: new data refused while the disk is nearly full |
//! | [`compaction`] | moving retained sets out of mostly-dead segments so their files are deleted |
//! | [`export`] | a tenant's data as JSON Lines |
//!
//! Where to put things: a new rule about what goes out next belongs in
//! `subscription/claim.rs`; a new produce check in `produce/admit.rs`; any new
//! writer of a topic's log appends through `produce::Room` so the size cap
//! and overflow policy hold; any change to a subscription's state is made
//! durable through `delivery`'s `commit_state`, which keeps the lock rule.

pub mod admin;
mod billing_port;
pub mod compaction;
pub mod delivery;
pub mod device_usage;
mod disk_space;
pub mod export;
mod gauges;
mod message;
pub mod produce;
pub mod retention;
mod storage_meter;
pub mod subscription;
pub mod topic;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use dashmap::DashMap;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::metering::Calendar;
use crate::observability::Metrics;
use crate::quota::admission::Admission;
use crate::storage::Store;
use crate::sync::RwLockExt;
use crate::tenancy::Tenancy;

use subscription::{SubState, Subscription};
use topic::{Topic, TopicLog, TopicSettings};

pub use delivery::{ConsumerSession, Delivered, Fetched, FlowWindow, Unsent};
pub use message::{Message, MessageSet};
pub use produce::{ProduceOutcome, ProducedMessage};

/// The broker: every tenant's topics and subscriptions.
///
/// Its dependencies (store, clock, tenancy, admission, calendar, metrics) are
/// handed in at [`Broker::load`] and stay private: whoever else needs one is
/// given it at construction too (see `server::domain`), not through the
/// broker.
pub struct Broker {
    store: Store,
    clock: Clock,
    tenancy: Arc<Tenancy>,
    admission: Arc<Admission>,
    calendar: Calendar,
    metrics: Arc<Metrics>,
    /// Retained bytes per tenant, shared by the tenant's topics.
    tenant_bytes: DashMap<String, Arc<AtomicU64>>,
    /// Topics by tenant, then by name (so a tenant's topics are found without
    /// scanning every tenant's).
    topics: DashMap<String, BTreeMap<String, Arc<Topic>>>,
    /// Serialises topic and subscription creation and deletion.
    admin_lock: tokio::sync::Mutex<()>,
    /// Serialises folds of the per-device usage journal (`delivery/device_journal.rs`).
    device_journal_fold: tokio::sync::Mutex<()>,
}

impl Broker {
    /// Loads every topic and subscription from the store.
    pub fn load(
        store: Store,
        clock: Clock,
        tenancy: Arc<Tenancy>,
        admission: Arc<Admission>,
        calendar: Calendar,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let broker = Broker {
            store,
            clock,
            tenancy,
            admission,
            calendar,
            metrics,
            tenant_bytes: DashMap::new(),
            topics: DashMap::new(),
            admin_lock: tokio::sync::Mutex::new(()),
            device_journal_fold: tokio::sync::Mutex::new(()),
        };
        for settings in broker.store.topics()? {
            let topic = broker.load_topic(settings)?;
            broker.insert_topic(topic);
        }
        broker.store.remove_unreferenced_blobs();
        Ok(broker)
    }

    fn load_topic(&self, settings: TopicSettings) -> Result<Arc<Topic>> {
        let mut log = TopicLog::loaded(
            self.store.topic_state(settings.id)?,
            self.store.load_sets(settings.id)?,
        );
        // A topic stored before folds existed was metered per device as it
        // was produced: all of it counts as folded.
        log.device_metered_through = self
            .store
            .metered_through(settings.id)?
            .unwrap_or(log.state.next_offset);
        let tenant_bytes = self.tenant_bytes_counter(&settings.tenant);
        let topic = Arc::new(Topic::new(settings, log, tenant_bytes));
        let mut subs = BTreeMap::new();
        for sub in self.store.subscriptions(topic.id)? {
            let state = SubState::load(&self.store, sub.id)?;
            subs.insert(sub.name.clone(), Arc::new(Subscription::new(sub, state)));
        }
        *topic.subscriptions.write_unpoisoned() = subs;
        Ok(topic)
    }

    /// Counts a request of `tenant` refused by a quota of `kind`
    /// (topic_full, tenant_storage, topics, subscriptions, disk_space).
    fn count_refusal(&self, kind: &'static str, tenant: &str) {
        self.metrics.count_refusal(kind, Some(tenant));
    }

    /// The shared retained-bytes counter of a tenant.
    fn tenant_bytes_counter(&self, tenant: &str) -> Arc<AtomicU64> {
        self.tenant_bytes
            .entry(tenant.to_string())
            .or_default()
            .clone()
    }

    /// A tenant's topic, or NOT_FOUND.
    pub fn topic(&self, tenant: &str, name: &str) -> Result<Arc<Topic>> {
        self.topics
            .get(tenant)
            .and_then(|topics| topics.get(name).cloned())
            .ok_or_else(|| Error::not_found("topic", name))
    }

    fn insert_topic(&self, topic: Arc<Topic>) {
        self.topics
            .entry(topic.tenant.clone())
            .or_default()
            .insert(topic.name.clone(), topic);
    }

    fn remove_topic(&self, topic: &Topic) {
        if let Some(mut topics) = self.topics.get_mut(&topic.tenant) {
            topics.remove(&topic.name);
        }
    }

    /// A subscription of a tenant's topic, or NOT_FOUND.
    pub fn subscription(
        &self,
        tenant: &str,
        topic: &str,
        name: &str,
    ) -> Result<(Arc<Topic>, Arc<Subscription>)> {
        let topic = self.topic(tenant, topic)?;
        let sub = topic
            .subscription(name)
            .ok_or_else(|| Error::not_found("subscription", name))?;
        Ok((topic, sub))
    }

    /// Every topic of every tenant (for background work).
    pub fn all_topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .iter()
            .flat_map(|t| t.value().values().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// A tenant's topics, by name.
    pub fn tenant_topics(&self, tenant: &str) -> Vec<Arc<Topic>> {
        self.topics
            .get(tenant)
            .map(|topics| topics.values().cloned().collect())
            .unwrap_or_default()
    }
}
