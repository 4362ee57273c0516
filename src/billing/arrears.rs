//! Arrears: suspension after the grace period, resumption once paid,
//! termination after the plan's limit.

use super::{Billing, DAY_MS};
use crate::error::Result;
use crate::tenancy::{SuspendReason, TenantStatus};

impl Billing {
    /// Suspends tenants whose oldest unpaid charge is past the grace period,
    /// resumes those suspended for arrears whose debt is cleared, and
    /// terminates those in arrears longer than their plan allows.
    pub async fn enforce_arrears(&self) -> Result<()> {
        let now = self.clock.now_ms();
        let tenants: Vec<String> = self.accounts.iter().map(|a| a.key().clone()).collect();
        for tenant in tenants {
            let Ok(record) = self.tenancy.get_tenant(&tenant) else {
                continue;
            };
            let status = TenantStatus::from_i32(record.status);
            if status == TenantStatus::Terminated {
                continue;
            }
            let (oldest_unpaid, balance) = match self.accounts.get(&tenant) {
                Some(a) => (a.oldest_unpaid_due(), a.balance()),
                None => continue,
            };
            let plan = self.tenancy.plan_of(&tenant);
            let in_arrears_since = oldest_unpaid.filter(|_| balance < 0);
            match in_arrears_since {
                Some(due) => {
                    let overdue = now - due;
                    if plan.terminate_after_arrears_days > 0
                        && overdue > plan.terminate_after_arrears_days as i64 * DAY_MS
                    {
                        self.terminate(&tenant, "arrears", "billing").await?;
                    } else if overdue > plan.grace_period_days as i64 * DAY_MS
                        && status == TenantStatus::Active
                    {
                        self.tenancy
                            .set_suspended(&tenant, Some(SuspendReason::Arrears), "billing")
                            .await?;
                    }
                }
                None => {
                    if status == TenantStatus::Suspended
                        && record.status_reason == SuspendReason::Arrears.name()
                    {
                        self.tenancy.set_suspended(&tenant, None, "billing").await?;
                    }
                }
            }
        }
        Ok(())
    }
}
