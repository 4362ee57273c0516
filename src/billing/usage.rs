//! Live usage: the counters of the days not settled yet.

use std::collections::BTreeMap;

use super::settle::existed_during;
use super::{Billing, DAY_MS};
use crate::error::Result;
use crate::metering::{Dimension, Usage};

/// Live usage lines of the unsettled days.
#[derive(Debug, Clone)]
pub struct UsageLine {
    /// The day.
    pub day: String,
    /// What the line covers.
    pub dimension: Dimension,
    /// The counters.
    pub usage: Usage,
    /// topic_days of the day so far: on the total line, the topics that
    /// existed at any moment of it; on a topic's line, 1 if it did.
    pub topic_days: u64,
}

impl Billing {
    /// The tenant's live usage: every day after the last settled one.
    /// Storage is metered up to now and per-device usage folded first, and every open day up to today
    /// has a total line with its topic_days, whether or not it has other usage.
    pub async fn live_usage(&self, tenant: &str) -> Result<(Vec<UsageLine>, Option<i64>)> {
        self.broker.meter_tenant_storage_now(tenant).await?;
        // Per-device produce usage is derived from the stored sets: fold it.
        self.broker.fold_device_usage(tenant).await?;
        self.store.sync_counters().await?;
        let record = self.tenancy.get_tenant(tenant)?;
        let last = self.last_settled(&record)?;
        let settled = self.settled_through(tenant)?;
        let lives = self.store.topic_lives(tenant)?;
        let existed = |name: Option<&str>, day: i64| -> u64 {
            let start = self.calendar.day_start_ms(day);
            let end = start + DAY_MS;
            lives
                .iter()
                .filter(|l| name.is_none_or(|n| n == l.name))
                .filter(|l| existed_during(l.created_ms, l.deleted_ms, start, end))
                .count() as u64
        };
        let mut by_day: BTreeMap<i64, Vec<(Dimension, Usage)>> = BTreeMap::new();
        for day in (last + 1)..=self.today() {
            by_day.insert(day, Vec::new());
        }
        let keys = self.tenancy.data_keys(tenant).ok();
        for (day, dimension, usage) in self.store.usage_of(tenant, keys.as_deref())? {
            if day > last {
                by_day.entry(day).or_default().push((dimension, usage));
            }
        }
        let mut lines = Vec::new();
        for (day, mut rows) in by_day {
            if !rows.iter().any(|(d, _)| *d == Dimension::Total) {
                rows.insert(0, (Dimension::Total, Usage::default()));
            }
            for (dimension, usage) in rows {
                let topic_days = match &dimension {
                    Dimension::Total => existed(None, day),
                    Dimension::Topic(name) => existed(Some(name), day).min(1),
                    Dimension::Device(_) => 0,
                };
                lines.push(UsageLine {
                    day: self.calendar.day_name(day),
                    dimension,
                    usage,
                    topic_days,
                });
            }
        }
        Ok((lines, settled))
    }
}
