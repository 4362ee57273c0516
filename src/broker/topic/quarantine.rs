//! Quarantine: a message set whose stored bytes fail their checksum, do not
//! decode, or whose segment is missing or short is skipped by every reader
//! (deliveries, dead-lettering, export) instead of failing the read. It is
//! counted, logged and audited once, when first found; the topic remembers it
//! in memory so later passes neither read it again nor report it again.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{SetSummary, Topic};
use crate::broker::Broker;
use crate::observability::name;
use crate::storage::StorageError;
use crate::sync::MutexExt;

/// Audit action of a quarantined set.
const AUDIT_ACTION: &str = "topic.set_quarantined";

/// The sets of one topic found corrupt since start: first offset -> end.
#[derive(Debug, Default)]
pub struct Quarantine {
    sets: Mutex<BTreeMap<u64, u64>>,
    messages: AtomicU64,
}

impl Quarantine {
    /// Whether the set starting at `first_offset` is quarantined.
    pub fn contains(&self, first_offset: u64) -> bool {
        self.sets.lock_unpoisoned().contains_key(&first_offset)
    }

    /// Quarantines `set`; false when it already was.
    fn insert(&self, set: &SetSummary) -> bool {
        let fresh = self
            .sets
            .lock_unpoisoned()
            .insert(set.first_offset, set.end())
            .is_none();
        if fresh {
            self.messages.fetch_add(set.count as u64, Ordering::SeqCst);
        }
        fresh
    }

    /// Messages in quarantined sets.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::SeqCst)
    }

    /// The quarantined offset ranges, `[first, end)`, in offset order.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.sets
            .lock_unpoisoned()
            .iter()
            .map(|(first, end)| (*first, *end))
            .collect()
    }
}

/// Whether a failed set read means the stored set is damaged (checksum,
/// decode, missing segment, short read), not that reading failed for now.
pub(in crate::broker) fn is_damage(e: &StorageError) -> bool {
    match e {
        StorageError::Segment(_) | StorageError::Decode { .. } | StorageError::Corrupt { .. } => {
            true
        }
        StorageError::Io { source, .. } => source.kind() == std::io::ErrorKind::UnexpectedEof,
        _ => false,
    }
}

impl Broker {
    /// Quarantines `set` of `topic`, found damaged because of `cause`: the
    /// first time, counts its messages, logs it at error and audits it.
    pub(super) fn quarantine_set(&self, topic: &Topic, set: &SetSummary, cause: &dyn Display) {
        if !topic.quarantine.insert(set) {
            return;
        }
        let detail = format!(
            "topic {}: offsets {}..{} ({} messages) skipped, never served: {cause}",
            topic.name,
            set.first_offset,
            set.end(),
            set.count
        );
        tracing::error!(tenant = %topic.tenant, topic = %topic.name,
            first_offset = set.first_offset, end_offset = set.end(),
            messages = set.count, error = %cause,
            "a stored message set is corrupt; its messages are quarantined and skipped");
        self.metrics
            .count(name::CORRUPT_MESSAGES, &topic.tenant, set.count as u64);
        // The audit entry is its own write; the read that found the damage
        // does not wait for it.
        let tenancy = self.tenancy.clone();
        let tenant = topic.tenant.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = tenancy
                        .audit_now("broker", AUDIT_ACTION, &tenant, detail)
                        .await
                    {
                        tracing::warn!(error = %e, "cannot audit a quarantined set");
                    }
                });
            }
            Err(_) => tracing::warn!("cannot audit a quarantined set: no runtime"),
        }
    }
}
