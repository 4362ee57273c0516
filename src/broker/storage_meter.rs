//! Metering of retained storage: byte-milliseconds per topic and day,
//! written as usage counters.

use super::Broker;
use crate::error::Result;
use crate::metering::UsageDelta;
use crate::storage::WriteSet;

impl Broker {
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
                usage.write_without_devices(&topic.tenant, day, &mut writes);
                from = until;
            }
        }
        if !writes.is_empty() {
            self.store.commit(writes).await?;
        }
        Ok(())
    }
}
