//! Live usage: the counters of the days not settled yet.

use super::Billing;
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
}

impl Billing {
    /// The tenant's live usage: every day after the last settled one.
    pub async fn live_usage(&self, tenant: &str) -> Result<(Vec<UsageLine>, Option<i64>)> {
        self.store.sync_counters().await?;
        let record = self.tenancy.get_tenant(tenant)?;
        let last = self.last_settled(&record)?;
        let settled = self.settled_through(tenant)?;
        let mut lines = Vec::new();
        let keys = self.tenancy.data_keys(tenant).ok();
        for (day, dimension, usage) in self.store.usage_of(tenant, keys.as_deref())? {
            if day > last {
                lines.push(UsageLine {
                    day: self.calendar.day_name(day),
                    dimension,
                    usage,
                });
            }
        }
        Ok((lines, settled))
    }
}
