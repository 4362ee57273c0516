//! Claiming: which message goes out next. A due redelivery comes before a
//! new message; a message at its attempt limit is handed out to be
//! dead-lettered instead.

use super::{Pending, SubState};

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

impl SubState {
    /// How many messages a claim could hand out at `now`: the redeliveries
    /// due and the new messages not yet delivered.
    pub fn deliverable(&self, now: i64, rules: &ClaimRules) -> usize {
        let new = rules
            .visible_end
            .saturating_sub(self.next_offset.max(rules.first_offset));
        (self.due_now(now) + new) as usize
    }

    /// Hands out the next message: a due redelivery first, else the next new
    /// message. `None` when nothing is deliverable now.
    pub fn claim(&mut self, now: i64, rules: &ClaimRules) -> Option<Claim> {
        if let Some(&(deadline, offset)) = self.due.first() {
            if deadline <= now {
                let mut record = self.pending.get(&offset).copied().unwrap_or_default();
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
            let deadline_ms = now + rules.lock_ms;
            let record = Pending {
                attempts: 1,
                deadline_ms,
                first_delivery_ms: now,
            };
            self.due.insert((deadline_ms, offset));
            self.pending.insert(offset, record);
            self.join_run(offset, deadline_ms, now);
        }
        Some(Claim::Deliver { offset, attempt: 1 })
    }
}

impl SubState {
    /// Undoes the claim that handed out `offset` as delivery number
    /// `attempt` when that delivery never reached the client: the message is
    /// due again at `now` and its attempt count is as before the claim.
    /// `at_most_once` says the claim left nothing pending (the subscription
    /// is at-most-once), so the message is put back. Returns false (and
    /// changes nothing) when the message moved on meanwhile (acked, nacked
    /// and claimed again, or released by a seek).
    pub fn unclaim(&mut self, offset: u64, attempt: u32, now: i64, at_most_once: bool) -> bool {
        let first_delivery_ms = match self.pending.get(&offset) {
            Some(record) if record.attempts == attempt => record.first_delivery_ms,
            Some(_) => return false,
            None if at_most_once && offset < self.next_offset => now,
            None => return false,
        };
        self.insert_pending(
            offset,
            Pending {
                attempts: attempt.saturating_sub(1),
                deadline_ms: now,
                first_delivery_ms,
            },
        );
        true
    }
}

/// Rules for tests: `lock_ms`, no attempt limit, everything up to
/// `visible_end` retained.
#[cfg(test)]
pub(super) fn rules(lock_ms: i64, visible_end: u64) -> ClaimRules {
    ClaimRules {
        lock_ms,
        max_attempts: 0,
        dead_letter: false,
        first_offset: 0,
        visible_end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim that delivers `offset` as its delivery number `attempt`.
    fn deliver(offset: u64, attempt: u32) -> Option<Claim> {
        Some(Claim::Deliver { offset, attempt })
    }

    #[test]
    fn at_most_once_never_redelivers() {
        let mut s = SubState::default();
        let r = rules(0, 2);
        assert_eq!(s.claim(0, &r), deliver(0, 1));
        assert_eq!(s.claim(0, &r), deliver(1, 1));
        assert_eq!(s.claim(1_000_000, &r), None);
        assert!(s.pending.is_empty());
    }

    #[test]
    fn redelivery_after_lock_comes_before_new_messages() {
        let mut s = SubState::default();
        let r = rules(10_000, 1);
        assert_eq!(s.claim(0, &r), deliver(0, 1));
        assert_eq!(s.claim(9_999, &r), None);
        let r = rules(10_000, 2);
        assert_eq!(s.claim(10_000, &r), deliver(0, 2));
        assert_eq!(s.claim(10_000, &r), deliver(1, 1));
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
        assert_eq!(s.claim(0, &r), deliver(0, 1));
        assert!(s.nack(0, 0));
        assert_eq!(s.claim(0, &r), deliver(0, 2));
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
        assert_eq!(s.claim(0, &r), deliver(5, 1));
        s.seek(2);
        assert!(s.pending.is_empty());
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.claim(0, &r), deliver(5, 1));
    }

    #[test]
    fn an_unclaimed_message_is_due_again_with_the_same_attempt() {
        let mut s = SubState::default();
        let r = rules(10_000, 1);
        assert_eq!(s.claim(0, &r), deliver(0, 1));
        assert!(s.unclaim(0, 1, 5, false));
        assert_eq!(s.claim(5, &r), deliver(0, 1));
        // At-most-once: nothing pending after the claim, the message comes back.
        let mut s = SubState::default();
        let r = rules(0, 1);
        assert_eq!(s.claim(0, &r), deliver(0, 1));
        assert!(s.unclaim(0, 1, 0, true));
        assert_eq!(s.claim(0, &r), deliver(0, 1));
        assert_eq!(s.claim(0, &r), None);
        // Acked meanwhile: nothing comes back.
        let mut s = SubState::default();
        let r = rules(10_000, 1);
        assert_eq!(s.claim(0, &r), deliver(0, 1));
        assert!(s.ack(0));
        assert!(!s.unclaim(0, 1, 0, false));
        assert!(s.pending.is_empty());
    }
}
