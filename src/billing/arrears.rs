//! Arrears: suspension after the grace period, resumption once paid,
//! termination after the plan's limit.

use super::{Billing, DAY_MS};
use crate::error::Result;
use crate::quota::Plan;
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
            // A move holds the tenant: the target enforces from the import on.
            if crate::tenancy::is_move_reason(&record.status_reason) {
                continue;
            }
            let status = record.status;
            let (oldest_unpaid, balance) = match self.accounts.get(&tenant) {
                Some(a) => (a.oldest_unpaid_due(), a.balance()),
                None => continue,
            };
            let plan = self.tenancy.plan_of(&tenant);
            let step = arrears_step(
                &plan,
                status,
                &record.status_reason,
                oldest_unpaid,
                balance,
                now,
            );
            match step {
                Some(ArrearsStep::Terminate) => {
                    self.terminate(&tenant, "arrears", "billing").await?;
                }
                Some(ArrearsStep::Suspend) => {
                    self.tenancy
                        .set_suspended(&tenant, Some(SuspendReason::Arrears), "billing")
                        .await?;
                }
                Some(ArrearsStep::Resume) => {
                    self.tenancy.set_suspended(&tenant, None, "billing").await?;
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// What arrears enforcement does to one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrearsStep {
    /// In arrears longer than the plan allows at all.
    Terminate,
    /// Active, with a charge unpaid past the grace period.
    Suspend,
    /// Suspended for arrears, and nothing is owed any more.
    Resume,
}

/// The step for a tenant in `status` (suspended for `status_reason`) whose
/// oldest charge that payments do not cover fell due at `oldest_unpaid`, with
/// `balance`, at `now`; `None` leaves it as it is. Debt is paid oldest charge
/// first, so a late payment only clears the oldest days.
fn arrears_step(
    plan: &Plan,
    status: TenantStatus,
    status_reason: &str,
    oldest_unpaid: Option<i64>,
    balance: i64,
    now: i64,
) -> Option<ArrearsStep> {
    if status == TenantStatus::Terminated {
        return None;
    }
    match oldest_unpaid.filter(|_| balance < 0) {
        Some(due) => {
            let overdue = now - due;
            if plan.terminate_after_arrears_days > 0
                && overdue > plan.terminate_after_arrears_days as i64 * DAY_MS
            {
                Some(ArrearsStep::Terminate)
            } else if overdue > plan.grace_period_days as i64 * DAY_MS
                && status == TenantStatus::Active
            {
                Some(ArrearsStep::Suspend)
            } else {
                None
            }
        }
        None => (status == TenantStatus::Suspended
            && status_reason == SuspendReason::Arrears.name())
        .then_some(ArrearsStep::Resume),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 100 * DAY_MS;

    fn plan(grace_days: u32, terminate_days: u32) -> Plan {
        Plan {
            grace_period_days: grace_days,
            terminate_after_arrears_days: terminate_days,
            ..Default::default()
        }
    }

    /// The step for a tenant whose oldest unpaid charge fell due a little
    /// over `days_ago` days before now.
    fn owing(
        plan: &Plan,
        status: TenantStatus,
        reason: &str,
        days_ago: i64,
    ) -> Option<ArrearsStep> {
        arrears_step(
            plan,
            status,
            reason,
            Some(NOW - days_ago * DAY_MS - 1),
            -100,
            NOW,
        )
    }

    #[test]
    fn an_unpaid_charge_within_the_grace_period_changes_nothing() {
        assert_eq!(owing(&plan(7, 0), TenantStatus::Active, "", 6), None);
    }

    #[test]
    fn past_the_grace_period_an_active_tenant_is_suspended_once() {
        assert_eq!(
            owing(&plan(7, 0), TenantStatus::Active, "", 7),
            Some(ArrearsStep::Suspend)
        );
        let operator = SuspendReason::Operator.name();
        assert_eq!(
            owing(&plan(7, 0), TenantStatus::Suspended, operator, 7),
            None
        );
    }

    #[test]
    fn past_the_plan_limit_a_tenant_is_terminated_whatever_its_status() {
        let arrears = SuspendReason::Arrears.name();
        assert_eq!(
            owing(&plan(7, 30), TenantStatus::Suspended, arrears, 30),
            Some(ArrearsStep::Terminate)
        );
        assert_eq!(
            owing(&plan(7, 30), TenantStatus::Active, "", 30),
            Some(ArrearsStep::Terminate)
        );
        assert_eq!(
            owing(&plan(7, 0), TenantStatus::Suspended, arrears, 3_000),
            None,
            "0 days: never terminated"
        );
        assert_eq!(owing(&plan(7, 30), TenantStatus::Terminated, "", 99), None);
    }

    #[test]
    fn once_paid_only_a_tenant_suspended_for_arrears_resumes() {
        let paid = |status, reason: SuspendReason| {
            arrears_step(&plan(7, 30), status, reason.name(), None, 0, NOW)
        };
        assert_eq!(
            paid(TenantStatus::Suspended, SuspendReason::Arrears),
            Some(ArrearsStep::Resume)
        );
        assert_eq!(paid(TenantStatus::Suspended, SuspendReason::Operator), None);
        assert_eq!(paid(TenantStatus::Active, SuspendReason::Arrears), None);
    }

    #[test]
    fn a_credit_balance_is_never_in_arrears() {
        let step = arrears_step(
            &plan(7, 30),
            TenantStatus::Active,
            "",
            Some(NOW - 99 * DAY_MS),
            0,
            NOW,
        );
        assert_eq!(step, None);
    }
}
