//! Delivery credit a Fetch answer holds until its message stops being
//! outstanding (SPEC §4: delivery bytes outstanding over all of a tenant's
//! streams *and long-polls*).
//!
//! A Consume stream keeps its own deliveries' bytes counted in the tenant's
//! [`DeliveryPool`] until they are acked, nacked or the stream closes. A
//! Fetch returns, so what it delivered is kept here instead, per message:
//! the bytes stay counted until the message is acked, nacked, given back
//! unsent, claimed again, dead-lettered or released by a seek (every one of
//! those goes through [`SubState`]'s `insert_pending`/`remove_pending`,
//! which release the message's hold), until its lock deadline passes (the
//! dead-letter timer's pass calls [`Holds::release_expired`], so this
//! happens with nobody connected), or until the subscription is deleted
//! ([`Holds::release_all`]). Each hold is released exactly once: it is
//! removed from the map by whichever comes first, and what is removed is
//! what goes back to the pool. A client that never reads its Fetch answers
//! (the bytes then sit in the HTTP/2 send path) therefore pins at most its
//! plan's limit, however many connections it opens.
//!
//! The map sits behind its own small lock, shared by the subscription's
//! state and its [`super::Subscription`], so the timer and deletion (which
//! run outside the state's async lock) can release holds too.
//!
//! [`SubState`]: super::SubState

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::quota::admission::DeliveryPool;
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

#[derive(Default)]
struct HoldMap {
    /// The pool the bytes are counted in (the tenant's; set on first hold).
    pool: Option<Arc<DeliveryPool>>,
    /// Offset → (lock deadline, bytes).
    by_offset: HashMap<u64, (i64, u64)>,
    /// (lock deadline, offset), soonest first.
    by_deadline: BTreeSet<(i64, u64)>,
}

impl HoldMap {
    /// Removes the hold of `offset`; returns its bytes (0 when none).
    fn take(&mut self, offset: u64) -> u64 {
        match self.by_offset.remove(&offset) {
            Some((deadline, bytes)) => {
                self.by_deadline.remove(&(deadline, offset));
                bytes
            }
            None => 0,
        }
    }
}

impl Holds {
    /// Keeps `bytes` (already counted in `pool`) counted for the delivery of
    /// `offset` whose lock ends at `deadline_ms`. A hold the offset still had
    /// is released first, so a message counts once however often it went out.
    pub fn hold(&self, pool: &Arc<DeliveryPool>, offset: u64, bytes: u64, deadline_ms: i64) {
        let mut map = self.0.map.lock_unpoisoned();
        let old = map.take(offset);
        if map.pool.is_none() {
            map.pool = Some(pool.clone());
        }
        map.by_offset.insert(offset, (deadline_ms, bytes));
        map.by_deadline.insert((deadline_ms, offset));
        self.0.len.store(map.by_offset.len(), Ordering::SeqCst);
        if let Some(pool) = &map.pool {
            pool.release(old);
        }
    }

    /// Releases the hold of `offset`, if it has one (its pending state
    /// changed: acked, nacked, claimed again, given back, dead-lettered).
    pub(super) fn release(&self, offset: u64) {
        if self.0.len.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut map = self.0.map.lock_unpoisoned();
        let bytes = map.take(offset);
        self.0.len.store(map.by_offset.len(), Ordering::SeqCst);
        if let Some(pool) = &map.pool {
            pool.release(bytes);
        }
    }

    /// Releases every hold whose lock deadline is at or before `now` (the
    /// message is due for redelivery: no longer outstanding); returns the
    /// bytes released.
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
        let bytes: u64 = due.into_iter().map(|offset| map.take(offset)).sum();
        self.0.len.store(map.by_offset.len(), Ordering::SeqCst);
        if let Some(pool) = &map.pool {
            pool.release(bytes);
        }
        bytes
    }

    /// Releases every hold (the subscription is deleted); returns the bytes.
    pub fn release_all(&self) -> u64 {
        let mut map = self.0.map.lock_unpoisoned();
        map.by_deadline.clear();
        let bytes: u64 = map.by_offset.drain().map(|(_, (_, b))| b).sum();
        self.0.len.store(0, Ordering::SeqCst);
        if let Some(pool) = &map.pool {
            pool.release(bytes);
        }
        bytes
    }

    /// Bytes held now.
    pub fn held_bytes(&self) -> u64 {
        let map = self.0.map.lock_unpoisoned();
        map.by_offset.values().map(|(_, b)| b).sum()
    }
}

impl Drop for Inner {
    /// Holds left when the subscription itself goes (a store reopened, a
    /// tenant's state rebuilt) go back to the pool.
    fn drop(&mut self) {
        let map = self.map.get_mut().unwrap_or_else(|e| e.into_inner());
        let bytes: u64 = map.by_offset.values().map(|(_, b)| b).sum();
        if let Some(pool) = &map.pool {
            pool.release(bytes);
        }
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

    /// A pool with `used` bytes counted, as a Fetch pass leaves it.
    fn pool_with(used: u64) -> Arc<DeliveryPool> {
        let pool = Arc::new(DeliveryPool::new());
        assert_eq!(pool.reserve(used, u64::MAX), used);
        pool
    }

    #[test]
    fn each_hold_is_released_once_whichever_way_it_ends() {
        let pool = pool_with(60);
        let holds = Holds::default();
        holds.hold(&pool, 1, 10, 1_000);
        holds.hold(&pool, 2, 20, 2_000);
        holds.hold(&pool, 3, 30, 3_000);
        holds.release(1);
        holds.release(1);
        assert_eq!(pool.used(), 50, "released once");
        assert_eq!(holds.release_expired(1_999), 0);
        assert_eq!(holds.release_expired(2_000), 20);
        assert_eq!(pool.used(), 30);
        // Held again for a new delivery: the old hold goes first.
        assert_eq!(pool.reserve(30, u64::MAX), 30);
        holds.hold(&pool, 3, 30, 9_000);
        assert_eq!(pool.used(), 30, "counted once");
        assert_eq!(holds.release_all(), 30);
        assert_eq!(pool.used(), 0);
        assert_eq!(holds.release_all(), 0);
        holds.release(3);
        assert_eq!(pool.used(), 0);
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
        for offset in 0..6 {
            s.holds.hold(&pool, offset, 1, 10_000);
        }
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
        holds.hold(&pool, 7, 10, 1_000);
        let shared = holds.clone();
        drop(holds);
        assert_eq!(pool.used(), 10, "a clone still holds them");
        drop(shared);
        assert_eq!(pool.used(), 0);
    }
}
