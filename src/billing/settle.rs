//! Settlement: closing ended tenant-days into priced, chained ledger lines,
//! idempotent by tenant/day/meter, with the tenant's progress in the same
//! atomic write.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use super::chain::charge_key;
use super::ledger::{kind, LedgerEntry};
use super::pricing::{amount_minor, free_applied, milli_gib_hours};
use super::{meter, Billing, DAY_MS};
use crate::error::{Error, Result};
use crate::metering::{Calendar, Dimension, Usage};
use crate::quota::Plan;
use crate::storage::WriteSet;
use crate::tenancy::{Tenant, TenantStatus};

/// Tenants settled per atomic write during a settlement run.
const SETTLE_CHUNK: usize = 256;

impl Billing {
    /// The last settled day of a tenant, if any day was settled.
    pub(super) fn settled_through(&self, tenant: &str) -> Result<Option<i64>> {
        Ok(self.store.settled_through(tenant)?)
    }

    /// The last settled day of a tenant, or the day before it was created.
    pub(super) fn last_settled(&self, tenant: &Tenant) -> Result<i64> {
        Ok(self
            .settled_through(&tenant.id)?
            .unwrap_or_else(|| self.calendar.day_of(tenant.created_ms) - 1))
    }

    /// Brings the usage counters up to now before they are priced: storage
    /// metered through the broker, buffered counters flushed to the store.
    pub(super) async fn bring_usage_up_to_now(&self) -> Result<()> {
        self.broker.meter_storage_now().await?;
        self.store.sync_counters().await?;
        Ok(())
    }

    /// What was measured for `tenant` on `day`: its usage counters and the
    /// topics that existed at any moment of the day.
    fn measure_day(&self, tenant: &str, day: i64) -> Result<DayUsage> {
        let usage = self.store.usage_on(tenant, day, &Dimension::Total)?;
        let start = self.calendar.day_start_ms(day);
        let end = start + DAY_MS;
        let mut topic_days = 0;
        for life in self.store.topic_lives(tenant)? {
            if existed_during(life.created_ms, life.deleted_ms, start, end) {
                topic_days += 1;
            }
        }
        Ok(DayUsage { usage, topic_days })
    }

    /// Settles every tenant's days up to and including `through_day`, which
    /// must have ended. Returns (entries written, tenant-days closed).
    pub async fn settle_through(&self, through_day: i64) -> Result<(u64, u64)> {
        if through_day >= self.today() {
            return Err(Error::invalid(format!(
                "day {} has not ended yet; only days before {} can be settled",
                self.calendar.day_name(through_day),
                self.calendar.day_name(self.today())
            )));
        }
        self.bring_usage_up_to_now().await?;
        let tenants: Vec<Tenant> = self
            .tenancy
            .list_tenants()
            .into_iter()
            .filter(|t| t.status != TenantStatus::Terminated)
            // A moving tenant was settled up to its stop; the target bills the rest.
            .filter(|t| !crate::tenancy::is_move_reason(&t.status_reason))
            .collect();
        let mut written = 0;
        let mut closed = 0;
        for chunk in tenants.chunks(SETTLE_CHUNK) {
            let (w, c) = self.settle_tenants(chunk, through_day).await?;
            written += w;
            closed += c;
        }
        // A run with no tenant to settle is on time too (an empty node must
        // not look late to TallyqSettlementLate).
        if closed > 0 || tenants.is_empty() {
            self.metrics.gauge(
                crate::observability::name::LAST_SETTLEMENT,
                &[],
                self.clock.now_ms() as f64 / 1000.0,
            );
            self.enforce_arrears().await?;
        }
        Ok((written, closed))
    }

    /// Settles whatever has ended (the timer and the clock advance call this).
    pub async fn settle_due(&self) -> Result<()> {
        self.settle_through(self.today() - 1).await.map(|_| ())
    }

    /// Settles `tenants` through `through_day` in one atomic write: their
    /// unsettled days' lines (skipping any already in the ledger) and their
    /// progress records. Returns (entries written, tenant-days closed).
    pub(super) async fn settle_tenants(
        &self,
        tenants: &[Tenant],
        through_day: i64,
    ) -> Result<(u64, u64)> {
        let mut head = self.head.lock().await;
        let mut writes = WriteSet::new();
        let mut written = Vec::new();
        let mut closed = 0;
        for tenant in tenants {
            let last = self.last_settled(tenant)?;
            if last >= through_day {
                continue;
            }
            let plan = self.tenancy.plan_of(&tenant.id);
            let free_used = self
                .accounts
                .get(&tenant.id)
                .map(|a| a.free_used.clone())
                .unwrap_or_default();
            let lines = tenant_lines(
                &tenant.id,
                &plan,
                &self.calendar,
                last + 1..=through_day,
                free_used,
                |day| self.measure_day(&tenant.id, day),
                |key| Ok(self.already_written(key)?.is_some()),
            )?;
            for line in lines {
                written.push(self.chain(&mut head, line, &mut writes));
            }
            closed += (through_day - last) as u64;
            writes.put_settled_through(&tenant.id, through_day);
        }
        if writes.is_empty() {
            return Ok((0, 0));
        }
        self.commit_chained(&mut head, writes, &written).await?;
        Ok((written.len() as u64, closed))
    }
}

/// What was measured for one tenant-day.
#[derive(Debug, Clone, Copy, Default)]
struct DayUsage {
    /// The day's usage counters (in total over the tenant's topics).
    usage: Usage,
    /// Topics that existed at any moment of the day.
    topic_days: u64,
}

/// Whether a topic created at `created_ms` and deleted at `deleted_ms` (0:
/// not deleted) existed at any moment of `[start, end)`.
pub(super) fn existed_during(created_ms: i64, deleted_ms: i64, start: i64, end: i64) -> bool {
    created_ms < end && (deleted_ms == 0 || deleted_ms >= start)
}

/// The lines that settle `days` of `tenant`, not yet chained. Each day is
/// priced with what its month's free allowance has left (`free_used` holds
/// what earlier lines applied, per month); a line whose idempotency key is
/// `already_written` is skipped and uses no allowance, so a re-run after a
/// crash writes no line twice and prices the rest as the first run would.
fn tenant_lines(
    tenant: &str,
    plan: &Plan,
    calendar: &Calendar,
    days: RangeInclusive<i64>,
    mut free_used: HashMap<(i32, u32), u64>,
    mut measure: impl FnMut(i64) -> Result<DayUsage>,
    mut already_written: impl FnMut(&str) -> Result<bool>,
) -> Result<Vec<LedgerEntry>> {
    let mut lines = Vec::new();
    for day in days {
        let month = calendar.month_of(day);
        let used = free_used.get(&month).copied().unwrap_or(0);
        let remaining = plan.rates.free_message_units_per_month.saturating_sub(used);
        for line in price_day(tenant, plan, calendar, day, measure(day)?, remaining) {
            if already_written(&line.idempotency_key)? {
                continue;
            }
            if line.meter == meter::MESSAGE_UNITS {
                *free_used.entry(month).or_default() += line.free_applied;
            }
            lines.push(line);
        }
    }
    Ok(lines)
}

/// The priced lines of one tenant-day, one per meter (none for a day without
/// usage or topics), due at the end of the day.
fn price_day(
    tenant: &str,
    plan: &Plan,
    calendar: &Calendar,
    day: i64,
    measured: DayUsage,
    free_remaining: u64,
) -> Vec<LedgerEntry> {
    let DayUsage { usage, topic_days } = measured;
    let storage = milli_gib_hours(usage.storage_byte_ms);
    let units = usage.message_units();
    if units == 0 && topic_days == 0 && storage == 0 {
        return Vec::new();
    }
    let rates = &plan.rates;
    let day_name = calendar.day_name(day);
    let due_ms = calendar.day_start_ms(day + 1);
    let line = |meter: &str, quantity: u64, free: u64, price: u64| LedgerEntry {
        tenant: tenant.to_string(),
        kind: kind::CHARGE.into(),
        day: day_name.clone(),
        meter: meter.into(),
        quantity,
        free_applied: free,
        billable: quantity - free,
        unit_price_nano_minor: price,
        amount_minor: amount_minor(quantity - free, price),
        currency: rates.currency.clone(),
        idempotency_key: charge_key(tenant, &day_name, meter),
        due_ms,
        ..Default::default()
    };
    let free = free_applied(units, free_remaining);
    let mut message = line(
        meter::MESSAGE_UNITS,
        units,
        free,
        rates.message_unit_price_nano_minor,
    );
    message.produced_units = usage.produced_units;
    message.delivered_units = usage.delivered_units;
    message.redelivered_units = usage.redelivered_units;
    vec![
        message,
        line(
            meter::TOPIC_DAYS,
            topic_days,
            0,
            rates.topic_day_price_nano_minor,
        ),
        line(
            meter::STORAGE_GIB_HOURS,
            storage,
            0,
            rates.storage_milli_gib_hour_price_nano_minor,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: &str = "2024-01-31";

    fn calendar() -> Calendar {
        Calendar::new(0)
    }

    fn day(name: &str) -> i64 {
        calendar().parse_day(name).expect("a valid day")
    }

    fn units(n: u64) -> DayUsage {
        DayUsage {
            usage: Usage {
                produced_units: n,
                ..Default::default()
            },
            topic_days: 0,
        }
    }

    fn plan_with_free(free: u64) -> Plan {
        let mut plan = Plan::default();
        plan.rates.free_message_units_per_month = free;
        plan
    }

    fn message_lines(lines: &[LedgerEntry]) -> Vec<(String, u64, u64)> {
        lines
            .iter()
            .filter(|l| l.meter == meter::MESSAGE_UNITS)
            .map(|l| (l.day.clone(), l.quantity, l.free_applied))
            .collect()
    }

    #[test]
    fn a_day_without_usage_or_topics_has_no_lines() {
        let lines = price_day("acme", &Plan::default(), &calendar(), day(DAY), units(0), 0);
        assert!(lines.is_empty());
    }

    #[test]
    fn a_day_is_priced_per_meter_under_its_idempotency_key() {
        let measured = DayUsage {
            usage: Usage {
                produced_units: 3_000_000,
                delivered_units: 514_540,
                redelivered_units: 40,
                ..Default::default()
            },
            topic_days: 3,
        };
        let lines = price_day("acme", &Plan::default(), &calendar(), day(DAY), measured, 0);
        let summary: Vec<_> = lines
            .iter()
            .map(|l| (l.idempotency_key.as_str(), l.quantity, l.amount_minor))
            .collect();
        assert_eq!(
            summary,
            [
                ("acme/2024-01-31/message_units", 3_514_540, 421),
                ("acme/2024-01-31/topic_days", 3, 600),
                ("acme/2024-01-31/storage_gib_hours", 0, 0),
            ]
        );
        let message = &lines[0];
        assert_eq!(message.kind, kind::CHARGE);
        assert_eq!(
            (message.produced_units, message.delivered_units),
            (3_000_000, 514_540)
        );
        assert_eq!(message.redelivered_units, 40);
        assert!(lines
            .iter()
            .all(|l| l.due_ms == calendar().day_start_ms(day("2024-02-01"))));
    }

    #[test]
    fn the_free_allowance_carries_over_days_and_resets_with_the_month() {
        let lines = tenant_lines(
            "acme",
            &plan_with_free(100),
            &calendar(),
            day("2024-01-30")..=day("2024-02-01"),
            HashMap::new(),
            |_| Ok(units(60)),
            |_| Ok(false),
        )
        .unwrap();
        assert_eq!(
            message_lines(&lines),
            [
                ("2024-01-30".into(), 60, 60),
                ("2024-01-31".into(), 60, 40),
                ("2024-02-01".into(), 60, 60),
            ]
        );
        let jan_31 = lines
            .iter()
            .find(|l| l.idempotency_key == "acme/2024-01-31/message_units")
            .expect("a message line for 2024-01-31");
        assert_eq!(jan_31.billable, 20);
    }

    #[test]
    fn a_rerun_skips_lines_already_written_and_prices_the_rest_as_before() {
        // A first run wrote 2024-01-30 (60 free units, now in the account)
        // and crashed before 2024-01-31.
        let written_before = "acme/2024-01-30/message_units";
        let free_used = HashMap::from([((2024, 1), 60)]);
        let mut asked = Vec::new();
        let lines = tenant_lines(
            "acme",
            &plan_with_free(100),
            &calendar(),
            day("2024-01-30")..=day("2024-01-31"),
            free_used,
            |_| Ok(units(60)),
            |key| {
                asked.push(key.to_string());
                Ok(key == written_before)
            },
        )
        .unwrap();
        assert_eq!(message_lines(&lines), [("2024-01-31".into(), 60, 40)]);
        assert!(lines.iter().all(|l| l.idempotency_key != written_before));
        assert_eq!(asked.len(), 6, "every line's key is checked: {asked:?}");
    }

    #[test]
    fn a_failed_measurement_stops_the_settlement() {
        let result = tenant_lines(
            "acme",
            &Plan::default(),
            &calendar(),
            day("2024-01-30")..=day("2024-01-31"),
            HashMap::new(),
            |d| {
                if d == day("2024-01-31") {
                    Err(Error::invalid("unreadable"))
                } else {
                    Ok(units(1))
                }
            },
            |_| Ok(false),
        );
        assert!(result.is_err());
    }

    #[test]
    fn a_topic_counts_on_every_day_it_existed_at_any_moment() {
        let (start, end) = (1_000, 2_000);
        assert!(existed_during(0, 0, start, end), "never deleted");
        assert!(existed_during(1_999, 0, start, end), "created in the day");
        assert!(existed_during(0, 1_000, start, end), "deleted as it began");
        assert!(!existed_during(2_000, 0, start, end), "created after it");
        assert!(!existed_during(0, 999, start, end), "deleted before it");
    }
}
