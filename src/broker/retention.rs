//! Retention: messages past their topic's expiry are removed (and counted),
//! and dedup entries past their window are swept. Runs on a timer, and at once
//! whenever the manual test clock is advanced.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Broker;
use crate::error::Result;
use crate::metering::UsageDelta;
use crate::storage::records::DedupRecord;
use crate::storage::{keys, WriteSet};

/// How often retention runs on the wall clock.
const RETENTION_INTERVAL: Duration = Duration::from_secs(1);
/// Dedup sweeps run on every this-many retention passes.
const DEDUP_SWEEP_EVERY: u64 = 60;

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
            let mut expired = 0u64;
            while log
                .sets
                .front()
                .is_some_and(|s| s.publish_ms + expiry_ms <= now)
            {
                if let Some(set) = log.drop_oldest(topic.id, &mut writes) {
                    expired += set.count as u64;
                }
            }
            if expired == 0 {
                continue;
            }
            log.state.expired_messages += expired;
            writes.put(keys::topic_state(topic.id), &log.state);
            topic.sync_from(&log);
            let commit = self.store.enqueue(writes, None).await?;
            drop(log);
            commit.wait().await?;
            total += expired;
        }
        Ok(total)
    }

    /// Meters retained storage: each topic's bytes times the time since it was
    /// last metered, split at day boundaries. Without `force`, a topic is
    /// metered at most once a minute of clock time (and at each new day).
    pub async fn sample_storage(&self, force: bool) -> Result<()> {
        let now = self.clock.now_ms();
        let mut writes = WriteSet::new();
        for topic in self.all_topics() {
            let last = topic
                .storage_metered_until
                .load(std::sync::atomic::Ordering::SeqCst);
            let same_day = self.calendar.day_of(last) == self.calendar.day_of(now);
            if last != i64::MIN && !force && now - last < 60_000 && same_day {
                continue;
            }
            let last = topic
                .storage_metered_until
                .swap(now, std::sync::atomic::Ordering::SeqCst);
            if last == i64::MIN || last >= now {
                continue;
            }
            let bytes = topic.stored_bytes();
            if bytes == 0 {
                continue;
            }
            let mut from = last;
            while from < now {
                let day = self.calendar.day_of(from);
                let until = now.min(self.calendar.day_start_ms(day + 1));
                let mut usage = UsageDelta::default();
                usage.stored(&topic.name, bytes * (until - from) as u64);
                usage.write(&topic.tenant, day, &mut writes);
                from = until;
            }
        }
        if !writes.is_empty() {
            self.store.commit(writes).await?;
        }
        Ok(())
    }

    /// Deletes dedup entries older than their topic's window.
    pub async fn sweep_dedup(&self) -> Result<()> {
        let now = self.clock.now_ms();
        for topic in self.all_topics() {
            let window_ms = topic.settings().dedup_window_seconds as i64 * 1000;
            topic
                .uncommitted_dedup
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, (_, published)| *published + window_ms > now);
            let mut writes = WriteSet::new();
            for item in self
                .store
                .scan::<DedupRecord>(&keys::id_prefix(keys::DEDUP, topic.id))
            {
                let (key, record) = item?;
                if record.publish_ms + window_ms <= now {
                    writes.delete(key);
                }
            }
            if !writes.is_empty() {
                self.store.commit(writes).await?;
            }
        }
        Ok(())
    }
}

/// The retention loop; ends when `shutdown` turns true.
pub async fn run_retention(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut passes = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RETENTION_INTERVAL) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = broker.expire_messages().await {
            tracing::error!(error = %e, "retention pass failed");
        }
        if let Err(e) = broker.sample_storage(false).await {
            tracing::error!(error = %e, "storage metering failed");
        }
        passes += 1;
        if passes % DEDUP_SWEEP_EVERY == 0 {
            if let Err(e) = broker.sweep_dedup().await {
                tracing::error!(error = %e, "dedup sweep failed");
            }
        }
    }
}
