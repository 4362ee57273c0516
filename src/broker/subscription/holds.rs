//! Delivery credit a Fetch answer holds until its message stops being
//! outstanding (SPEC §4: delivery bytes outstanding over all of a tenant's
//! streams *and long-polls*).
//!
//! A Consume stream keeps its own deliveries' bytes counted in the tenant's
//! [`DeliveryPool`] until they are acked, nacked or the stream closes. A
//! Fetch returns, so what it delivered is kept here instead, per message:
//! the hold lasts until the message is acked, nacked, given back unsent,
//! claimed again, dead-lettered or released by a seek (every one of those
//! goes through [`SubState`]'s `insert_pending`/`remove_pending`, which
//! release the message's hold), until its lock deadline passes (the
//! dead-letter timer's pass calls [`Holds::release_expired`], so this
//! happens with nobody connected), or until the subscription is deleted
//! ([`Holds::release_all`], after which nothing more is held). Each hold
//! ends exactly once: it is removed from the map by whichever comes first.
//!
//! An ended hold is half of the release: the bytes go back to the pool once
//! the answer that carried them has left the broker too
//! ([`super::AnswerCredit`]), so an answer that sits unread in the HTTP/2
//! send path stays counted after its lock expired.
//!
//! The map sits behind its own small lock, shared by the subscription's
//! state and its [`super::Subscription`], so the timer and deletion (which
//! run outside the state's async lock) can release holds too. A Fetch holds
//! its whole answer in one round of that lock ([`Holds::hold_many`]).
//!
//! [`SubState`]: super::SubState
//! [`DeliveryPool`]: crate::quota::admission::DeliveryPool

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::credit::{AnswerCredit, AnswerShare};
use crate::sync::MutexExt;

/// The Fetch deliveries of one subscription whose bytes are still counted
/// against the tenant's delivery pool. Cloning shares the same holds.
#[derive(Clone, Default)]
pub struct Holds(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// How many holds there are (read without the lock: most subscriptions
    /// are never fetched from, and their acks and claims skip the lock).
    len: AtomicUsize,
    map: Mutex<HoldMap>,
}

/// One message's hold: its lock deadline, its bytes and the answer that
/// carried it (whose end is the other half of releasing them).
struct Hold {
    deadline: i64,
    bytes: u64,
    answer: Arc<AnswerShare>,
}

#[derive(Default)]
struct HoldMap {
    /// Offset → hold.
    by_offset: HashMap<u64, Hold>,
    /// (lock deadline, offset), soonest first.
    by_deadline: BTreeSet<(i64, u64)>,
    /// Set once the subscription is deleted: nothing is held after that (a
    /// Fetch that claimed before the deletion releases with its answer).
    closed: bool,
}

impl HoldMap {
    /// Removes the hold of `offset`, if any.
    fn take(&mut self, offset: u64) -> Option<Hold> {
        let hold = self.by_offset.remove(&offset)?;
        self.by_deadline.remove(&(hold.deadline, offset));
        Some(hold)
    }
}

/// Ends `holds` (taken out of the map, outside its lock).
fn end(holds: impl IntoIterator<Item = Hold>) -> u64 {
    holds
        .into_iter()
        .map(|hold| {
            hold.answer.hold_ended(hold.bytes);
            hold.bytes
        })
        .sum()
}

/// A message a Fetch answer delivered, to hold: (offset, bytes, lock
/// deadline in Unix ms).
pub type ToHold = (u64, u64, i64);

impl Holds {
    /// Keeps the bytes of `messages` (part of `answer`, already counted in
    /// its pool) counted until each message stops being outstanding, in one
    /// round of the lock. A hold an offset still had is ended first, so a
    /// message counts once however often it went out. Returns the bytes
    /// held: nothing once the subscription is deleted.
    pub fn hold_many(&self, answer: &AnswerCredit, messages: &[ToHold]) -> u64 {
        let mut map = self.0.map.lock_unpoisoned();
        if map.closed || messages.is_empty() {
            return 0;
        }
        let share = answer.share();
        let mut old = Vec::new();
        let mut held = 0;
        for &(offset, bytes, deadline) in messages {
            old.extend(map.take(offset));
            map.by_offset.insert(
                offset,
                Hold {
                    deadline,
                    bytes,
                    answer: share.clone(),
                },
            );
            map.by_deadline.insert((deadline, offset));
            held += bytes;
        }
        // Counted as held before the lock lets anything end them.
        share.add_held(held);
        self.0.len.store(map.by_offset.len(), Ordering::SeqCst);
        drop(map);
        end(old);
        held
    }

    /// Releases the hold of `offset`, if it has one (its pending state
    /// changed: acked, nacked, claimed again, given back, dead-lettered).
    pub(super) fn release(&self, offset: u64) {
        if self.0.len.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut map = self.0.map.lock_unpoisoned();
        let hold = map.take(offset);
        self.0.len.store(map.by_offset.len(), Ordering::SeqCst);
        drop(map);
        end(hold);
    }

    /// Releases every hold whose lock deadline is at or before `now` (the
    /// message is due for redelivery: no longer outstanding); returns the
    /// bytes whose holds ended (they go back to the pool once their answers
    /// have left the broker too).
    pub fn release_expired(&self, now: i64) -> u64 {
        if self.0.len.load(Ordering::SeqCst) == 0 {
            return 0;
        }
        let mut map = self.0.map.lock_unpoisoned();
        let due: Vec<u64> = map
            .by_deadline
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|&(_, offset)| offset)
            .collect();
        let ended: Vec<Hold> = due.into_iter().filter_map(|o| map.take(o)).collect();
        self.0.len.store(map.by_offset.len(), Ordering::SeqCst);
        drop(map);
        end(ended)
    }

    /// Releases every hold and holds nothing more (the subscription is
    /// deleted); returns the bytes whose holds ended.
    pub fn release_all(&self) -> u64 {
        let mut map = self.0.map.lock_unpoisoned();
        map.closed = true;
        map.by_deadline.clear();
        let ended: Vec<Hold> = map.by_offset.drain().map(|(_, h)| h).collect();
        self.0.len.store(0, Ordering::SeqCst);
        drop(map);
        end(ended)
    }

    /// Bytes held now.
    pub fn held_bytes(&self) -> u64 {
        let map = self.0.map.lock_unpoisoned();
        map.by_offset.values().map(|h| h.bytes).sum()
    }
}

impl Drop for Inner {
    /// Holds left when the subscription itself goes (a store reopened, a
    /// tenant's state rebuilt) end: their answers release them.
    fn drop(&mut self) {
        let map = self.map.get_mut().unwrap_or_else(|e| e.into_inner());
        end(map.by_offset.drain().map(|(_, h)| h));
    }
}

impl fmt::Debug for Holds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Holds")
            .field("len", &self.0.len.load(Ordering::SeqCst))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::admission::DeliveryPool;

    /// A pool with `used` bytes counted, as a Fetch pass leaves it.
    fn pool_with(used: u64) -> Arc<DeliveryPool> {
        let pool = Arc::new(DeliveryPool::new());
        assert_eq!(pool.reserve(used, u64::MAX), used);
        pool
    }

    /// Holds `messages` as one answer that has already left the broker.
    fn hold_gone(holds: &Holds, pool: &Arc<DeliveryPool>, messages: &[ToHold]) -> u64 {
        let bytes = messages.iter().map(|m| m.1).sum();
        let answer = AnswerCredit::new(pool.clone(), bytes);
        holds.hold_many(&answer, messages)
    }

    #[test]
    fn each_hold_is_released_once_whichever_way_it_ends() {
        let pool = pool_with(60);
        let holds = Holds::default();
        assert_eq!(
            hold_gone(
                &holds,
                &pool,
                &[(1, 10, 1_000), (2, 20, 2_000), (3, 30, 3_000)]
            ),
            60
        );
        holds.release(1);
        holds.release(1);
        assert_eq!(pool.used(), 50, "released once");
        assert_eq!(holds.release_expired(1_999), 0);
        assert_eq!(holds.release_expired(2_000), 20);
        assert_eq!(pool.used(), 30);
        // Held again for a new delivery: the old hold goes first.
        assert_eq!(pool.reserve(30, u64::MAX), 30);
        hold_gone(&holds, &pool, &[(3, 30, 9_000)]);
        assert_eq!(pool.used(), 30, "counted once");
        assert_eq!(holds.release_all(), 30);
        assert_eq!(pool.used(), 0);
        assert_eq!(holds.release_all(), 0);
        holds.release(3);
        assert_eq!(pool.used(), 0);
    }

    #[test]
    fn an_expired_hold_stays_counted_while_its_answer_is_still_in_the_broker() {
        let pool = pool_with(30);
        let holds = Holds::default();
        let answer = AnswerCredit::new(pool.clone(), 30);
        assert_eq!(
            holds.hold_many(&answer, &[(1, 10, 1_000), (2, 20, 1_000)]),
            30
        );
        assert_eq!(holds.release_expired(1_000), 30);
        assert_eq!(pool.used(), 30, "the answer is unsent");
        drop(answer);
        assert_eq!(pool.used(), 0);
    }

    #[test]
    fn nothing_is_held_once_the_subscription_is_deleted() {
        let pool = pool_with(10);
        let holds = Holds::default();
        holds.release_all();
        let answer = AnswerCredit::new(pool.clone(), 10);
        assert_eq!(holds.hold_many(&answer, &[(1, 10, 1_000)]), 0);
        assert_eq!(holds.held_bytes(), 0);
        drop(answer);
        assert_eq!(pool.used(), 0, "the answer alone kept it");
    }

    #[test]
    fn every_change_of_a_pending_message_releases_its_hold() {
        use super::super::claim::{rules, Claim};
        use super::super::SubState;
        let r = rules(10_000, 6);
        let mut s = SubState::default();
        for _ in 0..6 {
            assert!(matches!(s.claim(0, &r), Some(Claim::Deliver { .. })));
        }
        let pool = pool_with(6);
        let all: Vec<ToHold> = (0..6).map(|offset| (offset, 1, 10_000)).collect();
        hold_gone(&s.holds, &pool, &all);
        assert!(s.ack(0));
        assert!(s.nack(1, 5_000));
        s.remove_pending(2);
        assert!(s.unclaim(3, 1, 0, false));
        assert_eq!(
            pool.used(),
            2,
            "ack, nack, removal and return each released one"
        );
        // Redelivered (the nacked one, due at 5 s): claimed again, released.
        assert_eq!(
            s.claim(5_000, &r),
            Some(Claim::Deliver {
                offset: 3,
                attempt: 1
            })
        );
        assert_eq!(
            s.claim(5_000, &r),
            Some(Claim::Deliver {
                offset: 1,
                attempt: 2
            })
        );
        assert_eq!(pool.used(), 2, "held once each, never twice");
        s.seek(0);
        assert_eq!(pool.used(), 0, "a seek releases every pending message");
        assert_eq!(s.holds.held_bytes(), 0);
    }

    #[test]
    fn holds_left_when_the_subscription_goes_are_released() {
        let pool = pool_with(10);
        let holds = Holds::default();
        hold_gone(&holds, &pool, &[(7, 10, 1_000)]);
        let shared = holds.clone();
        drop(holds);
        assert_eq!(pool.used(), 10, "a clone still holds them");
        drop(shared);
        assert_eq!(pool.used(), 0);
    }
}
