//! Metering of retained storage, exactly (SPEC §5): a topic's retained bytes
//! times the time they were held, in byte-milliseconds per topic and day,
//! converted to milli-GiB-hours only when a day is priced.
//!
//! Every change of a topic's retained bytes (produce, dead letters in,
//! expiry, reclaim, deletion) first closes the topic's open interval at the
//! bytes it held: [`Broker::close_storage_interval`] adds bytes × (now − the
//! interval's start) to the usage, split at day boundaries, and moves the
//! start, kept in the topic's stored counters ([`TopicState`]), to now — all
//! in the change's own atomic write. So nothing depends on when a sampler
//! runs or in what order expiry and sampling happen, and a crash loses
//! nothing: after a restart the interval still starts where the last durable
//! change left it, at the bytes that change left on disk (data held while the
//! broker was down was held). [`Broker::sample_storage`] closes every
//! topic's interval at now, for live usage and before settlement.
//!
//! [`TopicState`]: crate::broker::topic::TopicState

use super::topic::{Topic, TopicLog};
use super::Broker;
use crate::error::Result;
use crate::metering::UsageDelta;
use crate::storage::WriteSet;

/// Without `force`, a topic's interval is closed by the sampler at most this
/// often (changes close it anyway).
const SAMPLE_EVERY_MS: i64 = 60_000;

impl Broker {
    /// Closes `topic`'s open storage interval at `now` (call with its log
    /// locked, *before* changing the log's bytes, and store `log.state` in
    /// the same write): adds the retained bytes held since the interval
    /// began to the usage in `writes`, split at day boundaries, and starts
    /// the next interval at `now`. An interval never starts before it began:
    /// a clock that went back adds nothing.
    pub(super) fn close_storage_interval(
        &self,
        topic: &Topic,
        log: &mut TopicLog,
        now: i64,
        writes: &mut WriteSet,
    ) {
        let from = log.state.storage_metered_ms;
        if from != 0 && now <= from {
            return;
        }
        log.state.storage_metered_ms = now;
        // 0: never metered (a new topic, or one stored before this meter):
        // the first interval starts now.
        if from == 0 || log.bytes == 0 {
            return;
        }
        let mut start = from;
        while start < now {
            let day = self.calendar.day_of(start);
            let until = now.min(self.calendar.day_start_ms(day + 1));
            let mut usage = UsageDelta::default();
            usage.stored(&topic.name, log.bytes * (until - start) as u64);
            usage.write_without_devices(&topic.tenant, day, writes);
            start = until;
        }
    }

    /// Closes every topic's storage interval at now, so live usage and the
    /// settlement of an ended day see the storage up to now. Without
    /// `force`, a topic whose interval is younger than a minute and within
    /// the same day is left open.
    pub async fn sample_storage(&self, force: bool) -> Result<()> {
        self.sample_topics(self.all_topics(), force).await
    }

    /// Closes the storage intervals of one tenant's topics at now (what its
    /// live usage shows).
    pub async fn sample_tenant_storage(&self, tenant: &str) -> Result<()> {
        self.sample_topics(self.tenant_topics(tenant), true).await
    }

    /// Every topic's interval is queued under its own log lock, then all
    /// the commits are awaited together: they share group commits, where
    /// waiting for each before the next made one `fdatasync` per topic
    /// (10,000 tenants x 5 topics: ~9 s of a day's settlement). Returns once
    /// every interval written is durable.
    async fn sample_topics(&self, topics: Vec<std::sync::Arc<Topic>>, force: bool) -> Result<()> {
        let mut commits = Vec::new();
        for topic in topics {
            let mut log = topic.log.lock().await;
            if topic.is_deleted() {
                continue;
            }
            let now = self.clock.now_ms();
            let from = log.state.storage_metered_ms;
            let same_day = self.calendar.day_of(from) == self.calendar.day_of(now);
            if from != 0 && !force && now - from < SAMPLE_EVERY_MS && same_day {
                continue;
            }
            if from != 0 && now <= from {
                continue;
            }
            let mut writes = WriteSet::new();
            self.close_storage_interval(&topic, &mut log, now, &mut writes);
            writes.put_topic_state(topic.id, &log.state);
            commits.push(self.store.enqueue(writes, None).await?);
            drop(log);
        }
        for commit in commits {
            commit.wait().await?;
        }
        Ok(())
    }
}
