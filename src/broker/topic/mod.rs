//! A topic: its settings, its log (message sets in offset order), retention,
//! and its subscriptions.
//!
//! - `log`: the write side, [`TopicLog`] (sets, counters, append, drop).
//! - `reader`: reading one retained message back (with a one-set cache).
//! - `settings`: [`TopicSettings`] (identity and settings) and the
//!   [`OverflowPolicy`].
//! - this file: [`Topic`], the shared handle: settings, the durable end
//!   consumers may see, retained bytes, subscriptions, deletion.

mod log;
mod quarantine;
mod reader;
mod settings;

pub use self::log::{SetSummary, TopicLog, TopicState};
pub(in crate::broker) use quarantine::is_damage;
pub use quarantine::Quarantine;
pub use reader::SetCache;
pub use settings::{OverflowPolicy, TopicSettings};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{watch, Mutex};

use super::produce::{DedupEntry, ProduceQueue};
use super::subscription::Subscription;
use crate::sync::RwLockExt;

/// A topic of one tenant.
pub struct Topic {
    /// Internal id (storage keys).
    pub id: u64,
    /// Owning tenant.
    pub tenant: String,
    /// Name within the tenant.
    pub name: String,
    settings: RwLock<TopicSettings>,
    /// The log (write side).
    pub log: Mutex<TopicLog>,
    /// One past the newest durable offset; consumers see only what is durable.
    visible_end: watch::Sender<u64>,
    /// The oldest retained offset, readable without the log lock.
    first_offset: AtomicU64,
    /// Retained bytes of this topic as last synced from the log.
    stored_bytes: AtomicU64,
    /// Retained bytes of all the tenant's topics (shared between them).
    tenant_bytes: Arc<AtomicU64>,
    /// Subscriptions by name.
    pub subscriptions: RwLock<BTreeMap<String, Arc<Subscription>>>,
    /// dedup_ids queued for commit but not yet in the store.
    pub uncommitted_dedup: std::sync::Mutex<HashMap<Arc<str>, DedupEntry>>,
    /// Produces waiting to be stored together (`produce/combine.rs`).
    pub produce_queue: ProduceQueue,
    deleted: AtomicBool,
    /// Sets found corrupt at rest, skipped by every reader.
    pub quarantine: Quarantine,
}

impl Topic {
    /// Builds a topic from its stored parts.
    pub fn new(settings: TopicSettings, log: TopicLog, tenant_bytes: Arc<AtomicU64>) -> Self {
        let visible = log.state.next_offset;
        let first = log.first_offset();
        tenant_bytes.fetch_add(log.bytes, Ordering::SeqCst);
        let stored = log.bytes;
        Topic {
            id: settings.id,
            tenant: settings.tenant.clone(),
            name: settings.name.clone(),
            settings: RwLock::new(settings),
            log: Mutex::new(log),
            visible_end: watch::channel(visible).0,
            first_offset: AtomicU64::new(first),
            stored_bytes: AtomicU64::new(stored),
            tenant_bytes,
            subscriptions: RwLock::new(BTreeMap::new()),
            uncommitted_dedup: std::sync::Mutex::new(HashMap::new()),
            produce_queue: ProduceQueue::default(),
            deleted: AtomicBool::new(false),
            quarantine: Quarantine::default(),
        }
    }

    /// A copy of the settings.
    pub fn settings(&self) -> TopicSettings {
        self.settings.read_unpoisoned().clone()
    }

    /// Replaces the settings (after they were stored).
    pub fn set_settings(&self, settings: TopicSettings) {
        *self.settings.write_unpoisoned() = settings;
    }

    /// One past the newest durable offset.
    pub fn visible_end(&self) -> u64 {
        *self.visible_end.borrow()
    }

    /// A receiver that changes when new messages become durable.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.visible_end.subscribe()
    }

    /// Publishes a new durable end (called after the commit).
    pub fn publish_visible_end(&self, end: u64) {
        self.visible_end.send_if_modified(|current| {
            if end > *current {
                *current = end;
                true
            } else {
                false
            }
        });
    }

    /// The oldest retained offset.
    pub fn first_offset(&self) -> u64 {
        self.first_offset.load(Ordering::SeqCst)
    }

    /// Publishes what the log now holds: the oldest retained offset and the
    /// retained bytes (also to the tenant's storage total). Call after every
    /// change to the log, with its lock held.
    pub fn sync_from(&self, log: &TopicLog) {
        self.first_offset
            .store(log.first_offset(), Ordering::SeqCst);
        let before = self.stored_bytes.swap(log.bytes, Ordering::SeqCst);
        if log.bytes >= before {
            self.tenant_bytes
                .fetch_add(log.bytes - before, Ordering::SeqCst);
        } else {
            self.tenant_bytes
                .fetch_sub(before - log.bytes, Ordering::SeqCst);
        }
    }

    /// Retained bytes of this topic.
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes.load(Ordering::SeqCst)
    }

    /// Retained bytes of all the tenant's topics.
    pub fn tenant_bytes(&self) -> u64 {
        self.tenant_bytes.load(Ordering::SeqCst)
    }

    /// Removes this topic's bytes from the tenant's total (on deletion).
    pub fn forget_bytes(&self) {
        let before = self.stored_bytes.swap(0, Ordering::SeqCst);
        self.tenant_bytes.fetch_sub(before, Ordering::SeqCst);
    }

    /// A subscription by name.
    pub fn subscription(&self, name: &str) -> Option<Arc<Subscription>> {
        self.subscriptions.read_unpoisoned().get(name).cloned()
    }

    /// All subscriptions.
    pub fn subscription_list(&self) -> Vec<Arc<Subscription>> {
        self.subscriptions
            .read_unpoisoned()
            .values()
            .cloned()
            .collect()
    }

    /// Marks the topic deleted and wakes every consumer so they stop.
    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        for sub in self.subscription_list() {
            sub.mark_deleted();
        }
        self.visible_end.send_modify(|_| {});
    }

    /// True once deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }
}
