//! A subscription's delivery state and the rules that move it: which message
//! goes out next (redeliveries before new messages), locks and their
//! deadlines, attempt counts, dead-lettering, acks, nacks and seeks.
//!
//! The state machine changes in memory only: [`SubState::persist`] adds what
//! changed to a write set the broker commits, and [`SubState::load`] reads it
//! back at start-up.
//!
//! - `state`: [`SubState`], the cursor and the pending messages, with the
//!   simple moves (ack, nack, seek).
//! - `claim`: which message goes out next ([`SubState::claim`]).
//! - `runs`: first deliveries made together, stored as one run record.
//! - `persist`: what changed, into a write set; and back at start-up
//!   ([`StoredState`]).
//! - `holds`: [`Holds`], the delivery credit Fetch answers keep until their
//!   messages are acked, nacked or their locks end.
//! - `credit`: [`AnswerCredit`], the answer's own side of that credit: a
//!   byte goes back when its hold has ended and its answer has left.
//! - `settings`: [`SubscriptionSettings`], identity and delivery settings.
//! - this file: [`Subscription`], the shared handle (settings, wake-ups,
//!   deletion).

mod claim;
mod credit;
mod holds;
mod persist;
mod runs;
mod settings;
mod state;

pub use claim::{Claim, ClaimRules};
pub use credit::AnswerCredit;
pub use holds::{Holds, ToHold};
pub use persist::{Cursor, StoredState};
pub use runs::Run;
pub use settings::SubscriptionSettings;
pub use state::{Pending, SubState};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use tokio::sync::{watch, Mutex};

use crate::sync::RwLockExt;

/// One subscription of a topic.
pub struct Subscription {
    /// Internal id (storage keys).
    pub id: u64,
    /// Name within the topic.
    pub name: String,
    settings: RwLock<SubscriptionSettings>,
    /// Delivery state. Held (async) across building and enqueueing a write, so
    /// the commit order of the subscription's writes is the order of its changes.
    pub state: Mutex<SubState>,
    /// Bumped after anything that may make a message deliverable again (nack,
    /// seek, settings) so waiting consumers look again.
    changed: watch::Sender<u64>,
    deleted: AtomicBool,
    /// The same holds as `state.holds`, reachable without the state's
    /// async lock (the timer and deletion release them).
    holds: Holds,
}

impl Subscription {
    /// Builds a subscription from its stored parts.
    pub fn new(settings: SubscriptionSettings, state: SubState) -> Self {
        let holds = state.holds.clone();
        Subscription {
            id: settings.id,
            name: settings.name.clone(),
            settings: RwLock::new(settings),
            state: Mutex::new(state),
            changed: watch::channel(0).0,
            deleted: AtomicBool::new(false),
            holds,
        }
    }

    /// A copy of the current settings.
    pub fn settings(&self) -> SubscriptionSettings {
        self.settings.read_unpoisoned().clone()
    }

    /// Replaces the settings (after they were stored).
    pub fn set_settings(&self, settings: SubscriptionSettings) {
        *self.settings.write_unpoisoned() = settings;
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

    /// Marks the subscription deleted and wakes its consumers so they stop;
    /// what its Fetch answers held goes back to the tenant's pool.
    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        self.holds.release_all();
        self.notify();
    }

    /// Releases the holds of Fetch deliveries whose lock ended at or before
    /// `now` (no lock needed: the holds have their own); returns the bytes.
    pub fn release_expired_holds(&self, now: i64) -> u64 {
        self.holds.release_expired(now)
    }

    /// Bytes this subscription's Fetch answers hold in the tenant's pool.
    pub fn held_bytes(&self) -> u64 {
        self.holds.held_bytes()
    }

    /// True once deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }
}
