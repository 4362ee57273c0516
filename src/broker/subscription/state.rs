//! A subscription's cursor and pending (delivered, unacked) messages, and
//! the simple moves on them: ack, nack, seek.

use std::collections::{BTreeMap, BTreeSet};

use super::holds::Holds;
use super::runs::Run;

/// A delivered, not yet acknowledged message of an at-least-once
/// subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    /// Deliveries so far.
    pub attempts: u32,
    /// When the lock ends (or a nack's delay ends), Unix ms on the broker clock.
    pub deadline_ms: i64,
    /// When the message was first delivered, Unix ms.
    pub first_delivery_ms: i64,
}

/// A subscription's cursor and in-flight messages.
///
/// In memory every pending message has its own [`Pending`]. In storage,
/// messages first delivered together share one [`Run`] (a delivery pass of
/// a thousand messages writes one row, and an ack of them rewrites that
/// row), and only a message whose attempts or deadline differ from its
/// run's (redelivered or nacked) is kept on its own. Every change marks
/// what it touched; [`SubState::persist`] writes exactly that.
#[derive(Debug, Default, Clone)]
pub struct SubState {
    /// The offset the next new delivery comes from (may lag the topic's
    /// oldest retained offset: expired messages are skipped lazily).
    pub next_offset: u64,
    /// Delivered, unacked messages of an at-least-once subscription.
    pub pending: BTreeMap<u64, Pending>,
    /// (deadline, offset) of every pending message, soonest first.
    pub(super) due: BTreeSet<(i64, u64)>,
    /// Messages moved to the dead-letter topic, ever.
    pub dead_lettered: u64,
    /// Stored runs of first deliveries, by first offset.
    pub(super) runs: BTreeMap<u64, Run>,
    /// Offsets that have a stored record of their own.
    pub(super) stored_offsets: BTreeSet<u64>,
    /// Offsets whose pending state changed since the last persist (other
    /// than joining a new run).
    pub(super) changed: BTreeSet<u64>,
    /// Runs changed since the last persist.
    pub(super) changed_runs: BTreeSet<u64>,
    /// The run that new first deliveries may still extend (created since the
    /// last persist).
    pub(super) open_run: Option<u64>,
    /// Fetch deliveries whose bytes still count against the tenant's
    /// delivery pool (in memory only): every change of a message's pending
    /// state releases its hold.
    pub holds: Holds,
}

impl SubState {
    pub(super) fn insert_pending(&mut self, offset: u64, record: Pending) {
        // A new lock, a nack's delay or a return: the old delivery is over.
        self.holds.release(offset);
        if let Some(old) = self.pending.insert(offset, record) {
            self.due.remove(&(old.deadline_ms, offset));
        }
        self.due.insert((record.deadline_ms, offset));
        self.changed.insert(offset);
    }

    /// Forgets a pending message; returns whether it was pending.
    pub fn remove_pending(&mut self, offset: u64) -> bool {
        self.holds.release(offset);
        match self.pending.remove(&offset) {
            Some(old) => {
                self.due.remove(&(old.deadline_ms, offset));
                self.changed.insert(offset);
                true
            }
            None => false,
        }
    }

    /// Puts a message back into the pending set (e.g. when dead-lettering
    /// could not complete).
    pub fn restore_pending(&mut self, offset: u64, record: Pending) {
        self.insert_pending(offset, record);
    }

    /// The earliest deadline among pending messages (when the next redelivery
    /// may become due).
    pub fn next_deadline(&self) -> Option<i64> {
        self.due.first().map(|(deadline, _)| *deadline)
    }

    /// Acknowledges `offset`; returns whether it was pending.
    pub fn ack(&mut self, offset: u64) -> bool {
        self.remove_pending(offset)
    }

    /// Makes a pending message due at `redeliver_at`; returns whether it was pending.
    pub fn nack(&mut self, offset: u64, redeliver_at: i64) -> bool {
        match self.pending.get(&offset).copied() {
            Some(mut record) => {
                record.deadline_ms = redeliver_at;
                self.insert_pending(offset, record);
                true
            }
            None => false,
        }
    }

    /// Moves the cursor to `offset` and releases every pending message.
    pub fn seek(&mut self, offset: u64) {
        let released: Vec<u64> = self.pending.keys().copied().collect();
        for offset in released {
            self.remove_pending(offset);
        }
        self.next_offset = offset;
    }

    /// Pending messages whose lock is still running at `now`.
    pub fn in_flight(&self, now: i64) -> u64 {
        self.due.iter().filter(|(d, _)| *d > now).count() as u64
    }

    /// Pending messages waiting for redelivery at `now`.
    pub fn due_now(&self, now: i64) -> u64 {
        self.due.iter().take_while(|(d, _)| *d <= now).count() as u64
    }
}
