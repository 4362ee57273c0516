//! Retention: messages past their topic's expiry are removed (and counted),
//! and dedup entries past their window are swept. Runs on a timer, and at once
//! whenever the manual test clock is advanced.

use super::Broker;
use crate::error::Result;
use crate::storage::WriteSet;
use crate::sync::MutexExt;

impl Broker {
    /// Removes every expired message set of every topic; returns how many
    /// messages expired.
    pub async fn expire_messages(&self) -> Result<u64> {
        let now = self.clock.now_ms();
        let mut total = 0;
        for topic in self.all_topics() {
            let expiry_ms = topic.settings().expiry_seconds as i64 * 1000;
            let mut log = topic.log.lock().await;
            let mut writes = WriteSet::new();
            // Fold first: the expiring sets' per-device usage, in the same
            // write as their deletion.
            let expiring_end = log
                .sets
                .iter()
                .take_while(|s| s.publish_ms + expiry_ms <= now)
                .last()
                .map(|s| s.end());
            if let Some(end) = expiring_end {
                let metered = log.device_metered_through;
                if let Err(e) = self.fold_before_deleting(&topic, &mut log, end, &mut writes) {
                    // Nothing is written: the offset stays where the store has it.
                    log.device_metered_through = metered;
                    return Err(e);
                }
            }
            let mut expired = 0u64;
            while let Some(expires_ms) = log
                .sets
                .front()
                .map(|s| s.publish_ms + expiry_ms)
                .filter(|at| *at <= now)
            {
                // The set was held until its expiry instant, however late
                // this pass runs: close the storage interval there.
                self.close_storage_interval(&topic, &mut log, expires_ms, &mut writes);
                if let Some(set) = log.drop_oldest(topic.id, &mut writes) {
                    expired += set.count as u64;
                }
            }
            if expired == 0 {
                continue;
            }
            log.state.expired_messages += expired;
            self.metrics.count(
                crate::observability::name::EXPIRED_MESSAGES,
                &topic.tenant,
                expired,
            );
            writes.put_topic_state(topic.id, &log.state);
            topic.sync_from(&log);
            let commit = self.store.enqueue(writes, None).await?;
            drop(log);
            commit.wait().await?;
            total += expired;
        }
        Ok(total)
    }

    /// Deletes dedup entries older than their topic's window.
    pub async fn sweep_dedup(&self) -> Result<()> {
        let now = self.clock.now_ms();
        for topic in self.all_topics() {
            let window_ms = topic.settings().dedup_window_seconds as i64 * 1000;
            topic
                .uncommitted_dedup
                .lock_unpoisoned()
                .retain(|_, entry| entry.within(window_ms, now));
            let mut writes = WriteSet::new();
            self.store.delete_dedup_where(
                topic.id,
                |entry| !entry.within(window_ms, now),
                &mut writes,
            )?;
            if !writes.is_empty() {
                self.store.commit(writes).await?;
            }
        }
        Ok(())
    }
}
