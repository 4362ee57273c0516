//! Taking back deliveries that never reached the client.
//!
//! A delivery pass records and bills its deliveries *before* they are handed
//! out (see `deliver`), so a delivery the front end then cannot hand to the
//! transport — the client left with pushes still queued, a Fetch was
//! cancelled, or a claimed message did not fit the one response a Fetch
//! returns — would stay billed and locked although nobody received it. The
//! front end hands such deliveries back here: each message is due again at
//! once with the attempt count it had before, and its units are taken off the
//! usage that billed it, in one atomic write.

use super::{wake_consumers, Delivered};
use crate::broker::Broker;
use crate::error::Result;
use crate::metering::{units_for_bytes, UsageDelta};
use crate::storage::WriteSet;

/// A delivery that was claimed and billed but not handed to the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsent {
    /// The message's offset.
    pub offset: u64,
    /// The delivery number the claim gave it.
    pub attempt: u32,
    /// Its counted bytes (what its units were billed from).
    pub bytes: u64,
    /// Its device id (usage is also counted per device).
    pub device_id: String,
    /// When it was claimed and billed, Unix ms.
    pub claimed_ms: i64,
}

impl From<&Delivered> for Unsent {
    fn from(d: &Delivered) -> Self {
        Unsent {
            offset: d.offset,
            attempt: d.attempt,
            bytes: d.bytes,
            device_id: d.message.device_id.clone(),
            claimed_ms: d.claimed_ms,
        }
    }
}

impl Broker {
    /// Takes back deliveries of `tenant`'s `topic`/`subscription` that were
    /// claimed and billed but never handed to the transport: each message
    /// is due again at once with its attempt count as before the claim
    /// (unless it moved on meanwhile: acked, or released by a seek), and its
    /// units come off the usage of the day that billed them, in one atomic
    /// write. A day that has ended meanwhile keeps its usage: it may be
    /// settled, and its ledger entries are final. Returns how many messages
    /// are due again.
    pub async fn return_unsent(
        &self,
        tenant: &str,
        topic: &str,
        subscription: &str,
        unsent: &[Unsent],
    ) -> Result<u32> {
        if unsent.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now_ms();
        let today = self.calendar.day_of(now);
        let mut usage = UsageDelta::default();
        for u in unsent {
            if self.calendar.day_of(u.claimed_ms) == today {
                usage.returned(topic, &u.device_id, units_for_bytes(u.bytes), u.attempt);
            }
        }
        let mut writes = WriteSet::new();
        match self.tenancy.data_keys(tenant) {
            // Per device as the pass billed it: one journal row (`device_journal.rs`).
            Ok(keys) if usage.has_devices() => {
                let journal_id = self.store.generate_id()?;
                usage.write_journaled(&keys, today, journal_id, &mut writes);
            }
            Ok(keys) => usage.write(&keys, today, &mut writes),
            // A tenant whose key is destroyed keeps no device ids.
            Err(_) => usage.write_without_devices(tenant, today, &mut writes),
        }

        let Ok((topic_ref, sub)) = self.subscription(tenant, topic, subscription) else {
            // Deleted meanwhile: nothing is due again, but nothing was delivered.
            self.store.commit(writes).await?;
            return Ok(0);
        };
        let at_most_once = sub.settings().lock_seconds == 0;
        let mut state = sub.state.lock().await;
        if sub.is_deleted() || topic_ref.is_deleted() {
            drop(state);
            self.store.commit(writes).await?;
            return Ok(0);
        }
        let mut returned = 0;
        for u in unsent {
            if state.unclaim(u.offset, u.attempt, now, at_most_once) {
                returned += 1;
            }
        }
        self.commit_state(&sub, state, writes, wake_consumers(&sub), None)
            .await?;
        Ok(returned)
    }
}
