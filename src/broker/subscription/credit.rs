//! The delivery credit of one Fetch answer, owned twice: by the holds of its
//! messages (until each is acked, nacked, its lock ends, …) and by the
//! answer itself while it may still be in the broker on its way out
//! ([`AnswerCredit`], which the edge keeps alive until the answer's body has
//! left the process). A byte of the answer goes back to the tenant's
//! [`DeliveryPool`] when BOTH owners are done with it, exactly once.
//!
//! Why both: a lock may expire while the answer still sits unsent in the
//! HTTP/2 send path of a client that never reads; the message is then due
//! again (its hold ends), but its bytes are still pinned in the broker. An
//! at-most-once answer has no holds: the answer alone keeps its credit.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::quota::admission::DeliveryPool;
use crate::sync::MutexExt;

/// What one answer's holds and its body share.
pub(super) struct AnswerShare {
    pool: Arc<DeliveryPool>,
    state: Mutex<ShareState>,
}

struct ShareState {
    /// Bytes of the answer counted in the pool and not yet released.
    total: u64,
    /// Of those, bytes whose holds have not ended yet.
    held: u64,
    /// Whether the answer may still be in the broker.
    body_alive: bool,
}

impl AnswerShare {
    /// Some holds of this answer kept `bytes` (called under the holds'
    /// lock, before any of them can end).
    pub(super) fn add_held(&self, bytes: u64) {
        self.state.lock_unpoisoned().held += bytes;
    }

    /// A hold of `bytes` ended: released now unless the answer is still
    /// alive (then its end releases them).
    pub(super) fn hold_ended(&self, bytes: u64) {
        let mut state = self.state.lock_unpoisoned();
        state.held = state.held.saturating_sub(bytes);
        if !state.body_alive {
            state.total = state.total.saturating_sub(bytes);
            drop(state);
            self.pool.release(bytes);
        }
    }

    /// The answer is gone: everything no hold still keeps goes back.
    fn body_ended(&self) {
        let mut state = self.state.lock_unpoisoned();
        state.body_alive = false;
        let free = state.total.saturating_sub(state.held);
        state.total -= free;
        drop(state);
        self.pool.release(free);
    }
}

/// The answer's side of a Fetch's delivery credit: while any clone of it
/// lives, the answer's bytes stay counted in the tenant's pool (beyond
/// their holds). The edge keeps it until the answer has left the broker.
#[derive(Clone)]
pub struct AnswerCredit(Arc<BodyGuard>);

struct BodyGuard(Arc<AnswerShare>);

impl Drop for BodyGuard {
    fn drop(&mut self) {
        self.0.body_ended();
    }
}

impl AnswerCredit {
    /// Takes over `bytes` already counted in `pool` for one answer.
    pub fn new(pool: Arc<DeliveryPool>, bytes: u64) -> Self {
        let share = AnswerShare {
            pool,
            state: Mutex::new(ShareState {
                total: bytes,
                held: 0,
                body_alive: true,
            }),
        };
        AnswerCredit(Arc::new(BodyGuard(Arc::new(share))))
    }

    /// The share the answer's holds refer to.
    pub(super) fn share(&self) -> &Arc<AnswerShare> {
        &self.0 .0
    }

    /// Bytes of the answer still counted in the pool.
    pub fn bytes(&self) -> u64 {
        self.0 .0.state.lock_unpoisoned().total
    }
}

impl fmt::Debug for AnswerCredit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerCredit")
            .field("bytes", &self.bytes())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_with(used: u64) -> Arc<DeliveryPool> {
        let pool = Arc::new(DeliveryPool::new());
        assert_eq!(pool.reserve(used, u64::MAX), used);
        pool
    }

    #[test]
    fn a_byte_goes_back_when_both_its_hold_and_the_answer_are_done() {
        let pool = pool_with(30);
        let credit = AnswerCredit::new(pool.clone(), 30);
        credit.share().add_held(20);
        // A hold ends while the answer is alive: nothing back yet.
        credit.share().hold_ended(10);
        assert_eq!(pool.used(), 30);
        let clone = credit.clone();
        drop(credit);
        assert_eq!(pool.used(), 30, "a clone keeps the answer alive");
        // The answer goes: all but the 10 still held.
        let share = clone.share().clone();
        drop(clone);
        assert_eq!(pool.used(), 10);
        share.hold_ended(10);
        assert_eq!(pool.used(), 0);
    }

    #[test]
    fn an_answer_without_holds_keeps_its_bytes_until_it_goes() {
        let pool = pool_with(7);
        let credit = AnswerCredit::new(pool.clone(), 7);
        assert_eq!(pool.used(), 7);
        drop(credit);
        assert_eq!(pool.used(), 0);
    }
}
