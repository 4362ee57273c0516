//! A subscription's delivery state and the rules that move it: which message
//! goes out next (redeliveries before new messages), locks and their
//! deadlines, attempt counts, dead-lettering, acks, nacks and seeks.
//!
//! The state machine here is pure (no I/O): [`SubState`] changes in memory and
//! reports what must be written; the broker writes it in the same commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use tokio::sync::{watch, Mutex};

use crate::storage::records::{CursorRecord, PendingRecord, SubscriptionRecord};

/// One subscription of a topic.
pub struct Subscription {
    /// Internal id (storage keys).
    pub id: u64,
    /// Name within the topic.
    pub name: String,
    settings: RwLock<SubscriptionRecord>,
    /// Delivery state. Held (async) across building and enqueueing a write, so
    /// the commit order of the subscription's writes is the order of its changes.
    pub state: Mutex<SubState>,
    /// Bumped after anything that may make a message deliverable again (nack,
    /// seek, settings) so waiting consumers look again.
    changed: watch::Sender<u64>,
    deleted: AtomicBool,
}

impl Subscription {
    /// Builds a subscription from its stored parts.
    pub fn new(record: SubscriptionRecord, state: SubState) -> Self {
        Subscription {
            id: record.id,
            name: record.name.clone(),
            settings: RwLock::new(record),
            state: Mutex::new(state),
            changed: watch::channel(0).0,
            deleted: AtomicBool::new(false),
        }
    }

    /// A copy of the current settings.
    pub fn settings(&self) -> SubscriptionRecord {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the settings (after they were stored).
    pub fn set_settings(&self, record: SubscriptionRecord) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = record;
        self.notify();
    }

    /// Wakes waiting consumers.
    pub fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that changes whenever [`Subscription::notify`] runs.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Marks the subscription deleted and wakes its consumers so they stop.
    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        self.notify();
    }

    /// True once deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }
}

/// What the next claim hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Deliver `offset`; this is delivery number `attempt` of it.
    Deliver {
        /// The message's offset.
        offset: u64,
        /// 1 on first delivery.
        attempt: u32,
    },
    /// `offset` reached the maximum attempts: move it to the dead-letter topic.
    DeadLetter {
        /// The message's offset.
        offset: u64,
    },
}

/// The delivery rules in force for one claim.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRules {
    /// Lock time in ms; 0 means at-most-once.
    pub lock_ms: i64,
    /// 0: unlimited. Otherwise deliveries allowed before dead-lettering.
    pub max_attempts: u32,
    /// Whether a dead-letter topic is configured (and usable).
    pub dead_letter: bool,
    /// The oldest retained offset of the topic.
    pub first_offset: u64,
    /// One past the newest durable offset of the topic.
    pub visible_end: u64,
}

/// A subscription's cursor and in-flight messages.
#[derive(Debug, Default, Clone)]
pub struct SubState {
    /// The offset the next new delivery comes from (may lag the topic's
    /// oldest retained offset: expired messages are skipped lazily).
    pub next_offset: u64,
    /// Delivered, unacked messages of an at-least-once subscription.
    pub pending: BTreeMap<u64, PendingRecord>,
    /// (deadline, offset) of every pending message, soonest first.
    due: BTreeSet<(i64, u64)>,
    /// Messages moved to the dead-letter topic, ever.
    pub dead_lettered: u64,
}

impl SubState {
    /// Rebuilds the state from its stored records.
    pub fn from_records(cursor: CursorRecord, pending: BTreeMap<u64, PendingRecord>) -> Self {
        let due = pending
            .iter()
            .map(|(offset, p)| (p.deadline_ms, *offset))
            .collect();
        SubState {
            next_offset: cursor.next_offset,
            pending,
            due,
            dead_lettered: cursor.dead_lettered,
        }
    }

    /// The cursor record to store.
    pub fn cursor_record(&self) -> CursorRecord {
        CursorRecord {
            next_offset: self.next_offset,
            dead_lettered: self.dead_lettered,
        }
    }

    fn insert_pending(&mut self, offset: u64, record: PendingRecord) {
        if let Some(old) = self.pending.insert(offset, record.clone()) {
            self.due.remove(&(old.deadline_ms, offset));
        }
        self.due.insert((record.deadline_ms, offset));
    }

    /// Forgets a pending message; returns whether it was pending.
    pub fn remove_pending(&mut self, offset: u64) -> bool {
        match self.pending.remove(&offset) {
            Some(old) => {
                self.due.remove(&(old.deadline_ms, offset));
                true
            }
            None => false,
        }
    }

    /// Puts a message back into the pending set (e.g. when dead-lettering
    /// could not complete).
    pub fn restore_pending(&mut self, offset: u64, record: PendingRecord) {
        self.insert_pending(offset, record);
    }

    /// The pending record of `offset`, if any.
    pub fn pending_record(&self, offset: u64) -> Option<&PendingRecord> {
        self.pending.get(&offset)
    }

    /// The earliest deadline among pending messages (when the next redelivery
    /// may become due).
    pub fn next_deadline(&self) -> Option<i64> {
        self.due.first().map(|(deadline, _)| *deadline)
    }

    /// Hands out the next message: a due redelivery first, else the next new
    /// message. `None` when nothing is deliverable now.
    pub fn claim(&mut self, now: i64, rules: &ClaimRules) -> Option<Claim> {
        if let Some(&(deadline, offset)) = self.due.first() {
            if deadline <= now {
                let mut record = self.pending.get(&offset).cloned().unwrap_or_default();
                if rules.dead_letter
                    && rules.max_attempts > 0
                    && record.attempts >= rules.max_attempts
                {
                    self.remove_pending(offset);
                    return Some(Claim::DeadLetter { offset });
                }
                record.attempts += 1;
                let attempt = record.attempts;
                if rules.lock_ms == 0 {
                    // The subscription became at-most-once: this is the last delivery.
                    self.remove_pending(offset);
                } else {
                    record.deadline_ms = now + rules.lock_ms;
                    self.insert_pending(offset, record);
                }
                return Some(Claim::Deliver { offset, attempt });
            }
        }
        let offset = self.next_offset.max(rules.first_offset);
        if offset >= rules.visible_end {
            return None;
        }
        self.next_offset = offset + 1;
        if rules.lock_ms > 0 {
            self.insert_pending(
                offset,
                PendingRecord {
                    attempts: 1,
                    deadline_ms: now + rules.lock_ms,
                    first_delivery_ms: now,
                },
            );
        }
        Some(Claim::Deliver { offset, attempt: 1 })
    }

    /// Acknowledges `offset`; returns whether it was pending.
    pub fn ack(&mut self, offset: u64) -> bool {
        self.remove_pending(offset)
    }

    /// Makes a pending message due at `redeliver_at`; returns whether it was pending.
    pub fn nack(&mut self, offset: u64, redeliver_at: i64) -> bool {
        match self.pending.get(&offset).cloned() {
            Some(mut record) => {
                record.deadline_ms = redeliver_at;
                self.insert_pending(offset, record);
                true
            }
            None => false,
        }
    }

    /// Moves the cursor to `offset` and releases every pending message;
    /// returns the released offsets (their records must be deleted).
    pub fn seek(&mut self, offset: u64) -> Vec<u64> {
        let released: Vec<u64> = self.pending.keys().copied().collect();
        self.pending.clear();
        self.due.clear();
        self.next_offset = offset;
        released
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(lock_ms: i64, visible_end: u64) -> ClaimRules {
        ClaimRules {
            lock_ms,
            max_attempts: 0,
            dead_letter: false,
            first_offset: 0,
            visible_end,
        }
    }

    #[test]
    fn at_most_once_never_redelivers() {
        let mut s = SubState::default();
        let r = rules(0, 2);
        assert_eq!(
            s.claim(0, &r),
            Some(Claim::Deliver {
                offset: 0,
                attempt: 1
            })
        );
        assert_eq!(
            s.claim(0, &r),
            Some(Claim::Deliver {
                offset: 1,
                attempt: 1
            })
        );
        assert_eq!(s.claim(1_000_000, &r), None);
        assert!(s.pending.is_empty());
    }

    #[test]
    fn redelivery_after_lock_comes_before_new_messages() {
        let mut s = SubState::default();
        let r = rules(10_000, 1);
        assert_eq!(
            s.claim(0, &r),
            Some(Claim::Deliver {
                offset: 0,
                attempt: 1
            })
        );
        assert_eq!(s.claim(9_999, &r), None);
        let r = rules(10_000, 2);
        assert_eq!(
            s.claim(10_000, &r),
            Some(Claim::Deliver {
                offset: 0,
                attempt: 2
            })
        );
        assert_eq!(
            s.claim(10_000, &r),
            Some(Claim::Deliver {
                offset: 1,
                attempt: 1
            })
        );
        assert!(s.ack(0));
        assert!(!s.ack(0));
        assert_eq!(s.pending.len(), 1);
    }

    #[test]
    fn nack_makes_due_and_dead_letter_after_max_attempts() {
        let mut s = SubState::default();
        let r = ClaimRules {
            lock_ms: 10_000,
            max_attempts: 2,
            dead_letter: true,
            first_offset: 0,
            visible_end: 1,
        };
        assert_eq!(
            s.claim(0, &r),
            Some(Claim::Deliver {
                offset: 0,
                attempt: 1
            })
        );
        assert!(s.nack(0, 0));
        assert_eq!(
            s.claim(0, &r),
            Some(Claim::Deliver {
                offset: 0,
                attempt: 2
            })
        );
        assert!(s.nack(0, 5));
        assert_eq!(s.claim(4, &r), None);
        assert_eq!(s.claim(5, &r), Some(Claim::DeadLetter { offset: 0 }));
        assert!(s.pending.is_empty());
    }

    #[test]
    fn expired_messages_are_skipped_and_seek_releases_pending() {
        let mut s = SubState::default();
        let mut r = rules(10_000, 10);
        r.first_offset = 5;
        assert_eq!(
            s.claim(0, &r),
            Some(Claim::Deliver {
                offset: 5,
                attempt: 1
            })
        );
        assert_eq!(s.seek(2), vec![5]);
        assert_eq!(s.next_deadline(), None);
        assert_eq!(
            s.claim(0, &r),
            Some(Claim::Deliver {
                offset: 5,
                attempt: 1
            })
        );
    }
}
