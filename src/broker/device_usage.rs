//! Per-device produce usage of sets that did not journal it, derived from
//! the stored message sets at fold time.
//!
//! Since round 6 a produced set journals its per-device usage itself: one
//! sealed columnar row in the set's own write (`produce/round.rs`, the same
//! journal delivery passes write, `delivery/device_journal.rs`), and moves
//! the metered-through offset below past itself in that write, when every
//! set before it is folded. What follows still folds the other sets — those
//! written before (a data dir of an earlier version) and those produced
//! behind the offset (after those, or after dead letters not folded yet) —
//! exactly as it did. (Re-reading and decrypting every stored message to
//! count its device was most of metering's cost with device ids:
//! `benches/metering-profile.sh`.)
//!
//! A produce writes its tenant and topic usage in the same atomic write as
//! its set, as before. The per-device breakdown of produced usage is not
//! written then: every stored message carries its device id and counted size,
//! so the set itself is the record of it. A **fold** reads a topic's sets
//! from its *metered-through* offset on, adds each device's produced units
//! and messages to the device counters of the set's billing day (its publish
//! time, the instant the produce billed its totals on), and moves the
//! offset past them, in **one** atomic write. Hence the invariant:
//!
//! > the device counters hold exactly the produce usage of the sets below the
//! > topic's stored metered-through offset, and no set at or above it that
//! > has a device id has been deleted.
//!
//! (In memory the offset may also pass a set without device ids at once,
//! `produce/mod.rs`: such a set adds nothing whether it is read or not.)
//!
//! A crash before the fold's write leaves the old offset and the old
//! counters (the next fold reads the same sets again); after it, both moved
//! together. Nothing is lost or counted twice.
//!
//! The second half of the invariant is kept by folding **first** wherever a
//! set is deleted: expiry (`retention.rs`), the size cap's reclaim
//! (`produce/room.rs`, for produce and dead letters alike) and topic
//! deletion (`admin/topics.rs`, also termination) fold the sets they delete
//! into the same write as the deletion, under the topic's log lock.
//!
//! Folds that nothing forces run before per-device usage is read —
//! [`Broker::fold_device_usage`] (live usage, export, tenant move) — and in
//! the background ([`Broker::fold_all_device_usage`]), so each one reads
//! little. They read the sets without holding the log lock and take it only
//! to write: if the offset moved meanwhile (a deletion folded first) they
//! read again.
//!
//! Sets that bill no produced units (dead-letter moves) are marked when they
//! are written and skipped. Delivery usage per device cannot be derived from
//! the sets (it depends on attempts, which the sets do not hold): a delivery
//! pass journals it in one row of its own write, folded into the device
//! counters off the delivery path (`delivery/device_journal.rs`);
//! [`Broker::fold_device_usage`] folds that journal too.

use std::collections::{BTreeMap, HashMap};

use super::topic::{SetSummary, Topic, TopicLog};
use super::{Broker, Message, MessageSet};
use crate::crypto::TenantKeys;
use crate::error::Result;
use crate::metering::{units_for_bytes, Calendar, Usage, METERING_ON};
use crate::quota::MessageShape;
use crate::storage::{Store, WriteSet};

/// Whether a set appended to a topic bills produced units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::broker) enum Billed {
    /// A produce: its messages' units are produced usage.
    Produced,
    /// A dead-letter move: already billed where it was produced.
    NotBilled,
}

/// Produced usage by billing day, then device id.
#[derive(Default)]
struct DeviceCounts(BTreeMap<i64, HashMap<String, Usage>>);

impl DeviceCounts {
    /// Adds the produced usage of every message of `set` that has a device id.
    fn add_set(&mut self, calendar: &Calendar, set: &MessageSet) {
        let day = calendar.day_of(set.publish_ms);
        let devices = self.0.entry(day).or_default();
        for message in &set.messages {
            if message.device_id.is_empty() {
                continue;
            }
            let units = units_for_bytes(counted_bytes(message));
            // Looked up first: one key allocated per device, not per message.
            let usage = match devices.get_mut(message.device_id.as_str()) {
                Some(usage) => usage,
                None => devices.entry(message.device_id.clone()).or_default(),
            };
            usage.produced_units += units;
            usage.produced_messages += 1;
        }
    }

    /// Adds the counted usage to the device counters in `writes`.
    fn write(self, keys: &TenantKeys, writes: &mut WriteSet) {
        for (day, devices) in self.0 {
            for (device, usage) in devices {
                writes.add_device_usage(keys, day, &device, &usage);
            }
        }
    }
}

/// A stored message's counted size, by the one rule quotas and billing use
/// (`MessageShape::size`).
fn counted_bytes(message: &Message) -> u64 {
    MessageShape {
        payload_len: message.payload.len(),
        headers: message
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        device_id: &message.device_id,
        dedup_id: &message.dedup_id,
    }
    .size()
    .bytes
}

/// The sets of `log` not folded yet that end at or before `up_to`.
fn unfolded(log: &TopicLog, up_to: u64) -> Vec<SetSummary> {
    let from = log.device_metered_through;
    log.sets
        .iter()
        .filter(|s| s.first_offset >= from && s.end() <= up_to)
        .copied()
        .collect()
}

/// Folds every set of `topic`'s `log` not folded yet that ends at or before
/// `up_to` into `writes`, with the new metered-through offset; the caller
/// holds the log lock and adds the deletion of those sets to the same write
/// (or deletes nothing). Sets are read under the tenant's `keys`; a set
/// found damaged adds nothing (its devices cannot be known) and is logged.
pub(in crate::broker) fn fold_locked(
    store: &Store,
    keys: &TenantKeys,
    calendar: &Calendar,
    topic: &Topic,
    log: &mut TopicLog,
    up_to: u64,
    writes: &mut WriteSet,
) -> Result<()> {
    let sets = unfolded(log, up_to);
    let Some(last) = sets.last() else {
        return Ok(());
    };
    let through = last.end();
    let mut counts = DeviceCounts::default();
    for set in &sets {
        if store.is_unbilled_set(topic.id, set.first_offset)? {
            writes.unmark_unbilled_set(topic.id, set.first_offset);
            continue;
        }
        if !METERING_ON || topic.quarantine.contains(set.first_offset) {
            continue;
        }
        match store.read_set(keys, topic.id, set) {
            Ok(messages) => counts.add_set(calendar, &messages),
            Err(e) if super::topic::is_damage(&e) => {
                tracing::warn!(topic = %topic.name, first_offset = set.first_offset, error = %e,
                    "a damaged set's per-device usage cannot be derived; its totals stay billed");
            }
            Err(e) => return Err(e.into()),
        }
    }
    counts.write(keys, writes);
    writes.put_metered_through(topic.id, through);
    log.device_metered_through = through;
    Ok(())
}

impl Broker {
    /// Folds the sets of `topic`'s `log` that end at or before `up_to` into
    /// `writes` before the caller adds their deletion to the same write (the
    /// caller holds the log lock). A tenant whose key is destroyed has
    /// nothing readable left to fold.
    pub(in crate::broker) fn fold_before_deleting(
        &self,
        topic: &Topic,
        log: &mut TopicLog,
        up_to: u64,
        writes: &mut WriteSet,
    ) -> Result<()> {
        let Ok(keys) = self.tenancy.data_keys(&topic.tenant) else {
            return Ok(());
        };
        fold_locked(
            &self.store,
            &keys,
            &self.calendar,
            topic,
            log,
            up_to,
            writes,
        )
    }
}

/// How often a fold reads again because a deletion folded part of its sets
/// meanwhile, before it folds under the log lock instead.
const OPTIMISTIC_TRIES: usize = 3;

impl Broker {
    /// Folds the per-device produce usage of every committed set of
    /// `tenant`'s topics into the device counters, so the per-device usage
    /// read next is complete: call it before reading per-device usage
    /// (live usage, export) or handing a tenant's usage elsewhere (a tenant
    /// move). Returns once the fold is durable.
    pub async fn fold_device_usage(&self, tenant: &str) -> Result<()> {
        for topic in self.tenant_topics(tenant) {
            self.fold_topic(&topic).await?;
        }
        // And the per-device delivery usage journaled by delivery passes.
        self.fold_device_journal(tenant).await
    }

    /// [`Broker::fold_device_usage`] for every tenant (background job).
    pub async fn fold_all_device_usage(&self) -> Result<()> {
        for topic in self.all_topics() {
            self.fold_topic(&topic).await?;
        }
        Ok(())
    }

    /// Folds one topic's committed sets: read without the log lock, written
    /// under it if the offset is still where the read began.
    async fn fold_topic(&self, topic: &Topic) -> Result<()> {
        // Without its tenant's key (terminated) nothing is readable, and its
        // sets were folded before they were erased.
        let Ok(keys) = self.tenancy.data_keys(&topic.tenant) else {
            return Ok(());
        };
        for _ in 0..OPTIMISTIC_TRIES {
            let (from, sets) = {
                let log = topic.log.lock().await;
                (
                    log.device_metered_through,
                    unfolded(&log, topic.visible_end()),
                )
            };
            let Some(last) = sets.last() else {
                return Ok(());
            };
            let through = last.end();
            let mut counts = DeviceCounts::default();
            let mut writes = WriteSet::new();
            for set in &sets {
                if self.store.is_unbilled_set(topic.id, set.first_offset)? {
                    writes.unmark_unbilled_set(topic.id, set.first_offset);
                    continue;
                }
                if !METERING_ON {
                    continue;
                }
                // None: quarantined (adds nothing, as in `fold_locked`), or
                // deleted since, which moved the offset (checked below).
                if let Some(messages) = self.read_set(topic, set, set.first_offset)? {
                    counts.add_set(&self.calendar, &messages);
                }
            }
            let mut log = topic.log.lock().await;
            if log.device_metered_through != from || topic.is_deleted() {
                continue;
            }
            counts.write(&keys, &mut writes);
            writes.put_metered_through(topic.id, through);
            let commit = self.store.enqueue(writes, None).await?;
            log.device_metered_through = through;
            drop(log);
            return Ok(commit.wait().await?);
        }
        // Deletions keep overtaking the read: fold under the lock.
        let mut log = topic.log.lock().await;
        if topic.is_deleted() {
            return Ok(());
        }
        let mut writes = WriteSet::new();
        let end = topic.visible_end();
        fold_locked(
            &self.store,
            &keys,
            &self.calendar,
            topic,
            &mut log,
            end,
            &mut writes,
        )?;
        if writes.is_empty() {
            return Ok(());
        }
        let commit = self.store.enqueue(writes, None).await?;
        drop(log);
        Ok(commit.wait().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::MessageShape;

    #[test]
    fn counted_bytes_follow_the_quota_rule() {
        let message = Message {
            payload: bytes::Bytes::from(vec![0u8; 1500]),
            headers: [("k".to_string(), "vv".to_string())].into(),
            device_id: "dev-1".into(),
            dedup_id: "d".into(),
        };
        let shape = MessageShape {
            payload_len: 1500,
            headers: vec![("k", "vv")],
            device_id: "dev-1",
            dedup_id: "d",
        };
        assert_eq!(counted_bytes(&message), shape.size().bytes);
        assert_eq!(counted_bytes(&message), 1500 + 3 + 5 + 1);
    }

    #[test]
    fn a_set_counts_per_device_and_day_and_skips_messages_without_one() {
        let calendar = Calendar::new(0);
        let message = |device: &str, len: usize| Message {
            payload: bytes::Bytes::from(vec![1u8; len]),
            device_id: device.into(),
            ..Message::default()
        };
        let mut counts = DeviceCounts::default();
        counts.add_set(
            &calendar,
            &MessageSet {
                publish_ms: 0,
                messages: vec![message("a", 10), message("b", 2000), message("", 5)],
            },
        );
        counts.add_set(
            &calendar,
            &MessageSet {
                publish_ms: 86_400_000,
                messages: vec![message("a", 10), message("a", 10)],
            },
        );
        let mut got: Vec<_> = counts
            .0
            .iter()
            .flat_map(|(day, devices)| {
                devices
                    .iter()
                    .map(|(d, u)| (*day, d.clone(), u.produced_units, u.produced_messages))
            })
            .collect();
        got.sort();
        let got: Vec<_> = got
            .iter()
            .map(|(a, d, u, m)| (*a, d.as_str(), *u, *m))
            .collect();
        assert_eq!(got, [(0, "a", 1, 1), (0, "b", 2, 1), (1, "a", 2, 2)]);
    }
}
