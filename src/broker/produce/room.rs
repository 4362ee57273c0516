//! Room under a topic's size cap: which of the oldest sets must go for a new
//! one to fit, then appending the new set and dropping those. Produce and the
//! dead-letter move both append through [`Room`], so a topic's cap and
//! overflow policy hold whoever writes to it.

use crate::broker::device_usage::{fold_locked, Billed};
use crate::broker::topic::{OverflowPolicy, Topic, TopicLog};
use crate::broker::Message;
use crate::crypto::TenantKeys;
use crate::error::{Error, Result};
use crate::metering::Calendar;
use crate::quota::human_bytes;
use crate::storage::{Store, WriteSet};

/// The room a new message set needs under its topic's size cap: how many of
/// the oldest sets must go and the bytes they free. Measuring it changes
/// nothing, so a produce can still refuse afterwards; [`Room::append`] then
/// appends the set and drops those.
#[must_use = "a measured room changes nothing until it is appended"]
pub(in crate::broker) struct Room {
    /// The new set's counted bytes.
    bytes: u64,
    /// How many of the oldest sets must go.
    sets: usize,
    /// The bytes those free.
    pub(in crate::broker) freed: u64,
}

impl Room {
    /// Measures the room for `new_bytes`; refuses when the batch can never
    /// fit or the topic's policy refuses produce when full.
    pub(in crate::broker) fn needed(topic: &Topic, log: &TopicLog, new_bytes: u64) -> Result<Room> {
        let settings = topic.settings();
        let cap = settings.max_bytes;
        if new_bytes > cap {
            return Err(Error::invalid(format!(
                "batch of {new_bytes} bytes is larger than topic '{}''s size cap of {cap} bytes ({})",
                topic.name,
                human_bytes(cap)
            )));
        }
        let mut room = Room {
            bytes: new_bytes,
            sets: 0,
            freed: 0,
        };
        if log.bytes + new_bytes <= cap {
            return Ok(room);
        }
        if settings.overflow_policy == OverflowPolicy::RefuseProduce {
            return Err(Error::exhausted(format!(
                "topic '{}' is full: {} of its {cap}-byte ({}) size cap is used and its overflow \
                 policy refuses new messages until old ones expire",
                topic.name,
                log.bytes,
                human_bytes(cap)
            )));
        }
        for set in &log.sets {
            if log.bytes - room.freed + new_bytes <= cap {
                break;
            }
            room.freed += set.bytes;
            room.sets += 1;
        }
        Ok(room)
    }

    /// Appends `messages` (the bytes measured) as one set published at
    /// `publish_ms`, then drops the oldest sets the room needs, counting their
    /// messages as reclaimed, and publishes what the log now holds
    /// ([`Topic::sync_from`]). The messages go to the segment files first: if
    /// that fails, the log is unchanged. Returns how many messages were
    /// reclaimed. The set is sealed under the tenant's `keys`.
    ///
    /// The sets it drops are folded into the device counters first, in the
    /// same write (`broker/device_usage.rs`, on `calendar`); a set that
    /// bills no produced units (`billed`) is marked so no fold counts it.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::broker) fn append(
        self,
        store: &Store,
        keys: &TenantKeys,
        calendar: &Calendar,
        billed: Billed,
        topic: &Topic,
        log: &mut TopicLog,
        messages: Vec<Message>,
        publish_ms: i64,
        writes: &mut WriteSet,
    ) -> Result<u64> {
        let dropped_end = self
            .sets
            .checked_sub(1)
            .and_then(|i| log.sets.get(i))
            .map(|s| s.end());
        // Fold first; if anything fails, the offset is as it was (the
        // caller drops `writes`, so nothing of this is stored).
        let metered = log.device_metered_through;
        let appended = dropped_end
            .map_or(Ok(()), |end| {
                fold_locked(store, keys, calendar, topic, log, end, writes)
            })
            .and_then(|()| {
                Ok(log.append(
                    store, keys, topic.id, messages, self.bytes, publish_ms, writes,
                )?)
            });
        let first_offset = match appended {
            Ok(first_offset) => first_offset,
            Err(e) => {
                log.device_metered_through = metered;
                return Err(e);
            }
        };
        if billed == Billed::NotBilled {
            writes.mark_unbilled_set(topic.id, first_offset);
        }
        let mut reclaimed = 0;
        for _ in 0..self.sets {
            if let Some(set) = log.drop_oldest(topic.id, writes) {
                reclaimed += set.count as u64;
            }
        }
        log.state.reclaimed_messages += reclaimed;
        topic.sync_from(log);
        Ok(reclaimed)
    }
}
