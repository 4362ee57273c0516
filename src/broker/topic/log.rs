//! The write side of a topic's log: the retained message sets in offset
//! order and the counters stored with them.

use std::collections::VecDeque;

use crate::broker::{Message, MessageSet};
use crate::crypto::TenantKeys;
use crate::storage::{SetIdentity, SetLocation, StorageResult, Store, WriteSet};

/// The in-memory summary of one stored message set.
#[derive(Debug, Clone, Copy)]
pub struct SetSummary {
    /// Offset of its first message.
    pub first_offset: u64,
    /// Messages in it.
    pub count: u32,
    /// Their counted bytes.
    pub bytes: u64,
    /// Their shared publish time.
    pub publish_ms: i64,
    /// Where storage keeps the set's messages.
    pub location: SetLocation,
}

impl SetSummary {
    /// One past its last offset.
    pub fn end(&self) -> u64 {
        self.first_offset + self.count as u64
    }
}

/// A topic log's counters, stored with the log. A produce does not store
/// them: loading takes the log's end and newest publish time from the newest
/// set when that is further (see [`TopicLog::loaded`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicState {
    /// The offset the next message will get.
    pub next_offset: u64,
    /// Messages removed by expiry, ever.
    pub expired_messages: u64,
    /// Messages removed by the size cap, ever.
    pub reclaimed_messages: u64,
    /// Publish time of the newest set, so publish times never go backwards.
    pub last_publish_ms: i64,
    /// Where the topic's open storage interval begins (Unix ms on the broker
    /// clock; 0: not metered yet): every change of the retained bytes closes
    /// it (`broker/storage_meter.rs`).
    pub storage_metered_ms: i64,
}

/// The write side of a topic's log. Held (async) across building and
/// enqueueing a write, so commit order is offset order.
pub struct TopicLog {
    /// Counters (as stored, once loaded).
    pub state: TopicState,
    /// Retained message sets, oldest first.
    pub sets: VecDeque<SetSummary>,
    /// Sum of the retained sets' bytes.
    pub bytes: u64,
    /// Every set below this offset has its per-device produce usage in the
    /// device counters, no set at or above it has (`broker/device_usage.rs`).
    pub device_metered_through: u64,
}

impl TopicLog {
    /// The log as stored: its counters and its sets, oldest first. A produce
    /// stores only its set's header, not the counters (see
    /// `Broker::submit_produce`), so the newest set has the log's end and
    /// newest publish time when those are further than the counters'.
    pub fn loaded(mut state: TopicState, sets: VecDeque<SetSummary>) -> TopicLog {
        if let Some(newest) = sets.back() {
            state.next_offset = state.next_offset.max(newest.end());
            state.last_publish_ms = state.last_publish_ms.max(newest.publish_ms);
        }
        let bytes = sets.iter().map(|s| s.bytes).sum();
        TopicLog {
            state,
            sets,
            bytes,
            device_metered_through: 0,
        }
    }

    /// The oldest retained offset (the next offset when empty).
    pub fn first_offset(&self) -> u64 {
        self.sets
            .front()
            .map(|s| s.first_offset)
            .unwrap_or(self.state.next_offset)
    }

    /// Retained messages.
    pub fn messages(&self) -> u64 {
        self.sets.iter().map(|s| s.count as u64).sum()
    }

    /// Drops the oldest set, adding its deletion to `writes`.
    pub fn drop_oldest(&mut self, topic_id: u64, writes: &mut WriteSet) -> Option<SetSummary> {
        let set = self.sets.pop_front()?;
        self.bytes -= set.bytes;
        writes.delete_set(topic_id, &set);
        Some(set)
    }

    /// Appends a set of messages published at `publish_ms` (never earlier
    /// than the previous set): the messages go to the segment files now, the
    /// set's header into `writes`. Returns the first offset. The caller has
    /// checked size caps; on error nothing changed. The set is sealed under
    /// the tenant's `keys`, bound to the topic and its first offset.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        store: &Store,
        keys: &TenantKeys,
        topic_id: u64,
        messages: Vec<Message>,
        bytes: u64,
        publish_ms: i64,
        writes: &mut WriteSet,
    ) -> StorageResult<u64> {
        let first_offset = self.state.next_offset;
        let count = messages.len() as u32;
        let publish_ms = publish_ms.max(self.state.last_publish_ms);
        let identity = SetIdentity {
            topic_id,
            first_offset,
            count,
            bytes,
            publish_ms,
        };
        let location = store.append_set(
            keys,
            identity,
            MessageSet {
                publish_ms,
                messages,
            },
        )?;
        let set = SetSummary {
            first_offset,
            count,
            bytes,
            publish_ms,
            location,
        };
        writes.put_set(topic_id, &set);
        self.sets.push_back(set);
        self.bytes += bytes;
        self.state.next_offset += count as u64;
        self.state.last_publish_ms = publish_ms;
        Ok(first_offset)
    }

    /// The first offset published at or after `timestamp_ms` (the next offset
    /// when none is).
    pub fn offset_at_time(&self, timestamp_ms: i64) -> u64 {
        let index = self.sets.partition_point(|s| s.publish_ms < timestamp_ms);
        self.sets
            .get(index)
            .map(|s| s.first_offset)
            .unwrap_or(self.state.next_offset)
    }

    /// Publish time of the message at `offset`, if retained.
    pub fn publish_time_of(&self, offset: u64) -> Option<i64> {
        let index = self.sets.partition_point(|s| s.end() <= offset);
        self.sets
            .get(index)
            .filter(|s| s.first_offset <= offset)
            .map(|s| s.publish_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(sets: &[(u64, u32, i64)]) -> TopicLog {
        let mut log = TopicLog {
            state: TopicState::default(),
            sets: VecDeque::new(),
            bytes: 0,
            device_metered_through: 0,
        };
        for &(first, count, publish_ms) in sets {
            log.sets.push_back(SetSummary {
                first_offset: first,
                count,
                bytes: 10,
                publish_ms,
                location: SetLocation::default(),
            });
            log.state.next_offset = first + count as u64;
        }
        log
    }

    #[test]
    fn offset_at_time_finds_first_set_at_or_after() {
        let log = log_with(&[(0, 10, 100), (10, 5, 200), (15, 1, 300)]);
        assert_eq!(log.offset_at_time(0), 0);
        assert_eq!(log.offset_at_time(100), 0);
        assert_eq!(log.offset_at_time(101), 10);
        assert_eq!(log.offset_at_time(300), 15);
        assert_eq!(log.offset_at_time(301), 16);
        assert_eq!(log.publish_time_of(12), Some(200));
        assert_eq!(log.publish_time_of(16), None);
    }
}
