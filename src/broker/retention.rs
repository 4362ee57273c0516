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
use crate::sync::MutexExt;

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
            self.metrics.count(
                crate::observability::name::EXPIRED_MESSAGES,
                &topic.tenant,
                expired,
            );
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

    /// Sets the per-tenant gauges (backlog, in-flight, retained bytes), the
    /// store size and the tenant counts by status.
    pub async fn refresh_gauges(&self) {
        use crate::observability::name;
        use std::collections::HashMap;
        let now = self.clock.now_ms();
        let mut per_tenant: HashMap<String, (u64, u64, u64)> = HashMap::new();
        for tenant in self.tenancy.list_tenants() {
            per_tenant
                .entry(self.metrics.tenant_label(&tenant.id))
                .or_default();
        }
        for topic in self.all_topics() {
            let label = self.metrics.tenant_label(&topic.tenant);
            let first = topic.first_offset();
            let end = topic.visible_end();
            let mut backlog = 0;
            let mut in_flight = 0;
            for sub in topic.subscription_list() {
                let state = sub.state.lock().await;
                backlog += end.saturating_sub(state.next_offset.max(first)) + state.due_now(now);
                in_flight += state.in_flight(now);
            }
            let entry = per_tenant.entry(label).or_default();
            entry.0 += backlog;
            entry.1 += in_flight;
            entry.2 += topic.stored_bytes();
        }
        for (tenant, (backlog, in_flight, retained)) in per_tenant {
            let labels = [("tenant", tenant)];
            self.metrics.gauge(name::BACKLOG, &labels, backlog as f64);
            self.metrics
                .gauge(name::IN_FLIGHT, &labels, in_flight as f64);
            self.metrics
                .gauge(name::RETAINED_BYTES, &labels, retained as f64);
        }
        if let Ok(size) = self.store.size_on_disk() {
            self.metrics.gauge(name::STORAGE_BYTES, &[], size as f64);
        }
        let mut by_status: HashMap<&'static str, u64> =
            [("active", 0), ("suspended", 0), ("terminated", 0)]
                .into_iter()
                .collect();
        for tenant in self.tenancy.list_tenants() {
            let status = match crate::tenancy::TenantStatus::from_i32(tenant.status) {
                crate::tenancy::TenantStatus::Active => "active",
                crate::tenancy::TenantStatus::Suspended => "suspended",
                crate::tenancy::TenantStatus::Terminated => "terminated",
            };
            *by_status.entry(status).or_default() += 1;
        }
        for (status, count) in by_status {
            self.metrics.gauge(
                name::TENANTS,
                &[("status", status.to_string())],
                count as f64,
            );
        }
        self.metrics.gauge(
            name::MAINTENANCE,
            &[],
            if self.tenancy.maintenance().is_some() {
                1.0
            } else {
                0.0
            },
        );
    }

    /// Deletes dedup entries older than their topic's window.
    pub async fn sweep_dedup(&self) -> Result<()> {
        let now = self.clock.now_ms();
        for topic in self.all_topics() {
            let window_ms = topic.settings().dedup_window_seconds as i64 * 1000;
            topic
                .uncommitted_dedup
                .lock_unpoisoned()
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
            // Failed-authentication counters of past minutes are of no use.
            broker.admission().sweep();
            if let Err(e) = broker.sweep_dedup().await {
                tracing::error!(error = %e, "dedup sweep failed");
            }
        }
    }
}
