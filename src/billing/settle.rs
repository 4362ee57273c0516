//! Settlement: closing ended tenant-days into priced, chained ledger lines,
//! idempotent by tenant/day/meter, with the tenant's progress in the same
//! atomic write.

use super::ledger::{kind, LedgerEntry};
use super::pricing::{amount_minor, free_applied, milli_gib_hours};
use super::{meter, Billing, DAY_MS};
use crate::error::{Error, Result};
use crate::metering::{usage_key, Dimension, Usage};
use crate::quota::Plan;
use crate::storage::records::{CountersRecord, SettledRecord, TenantRecord, TopicLifeRecord};
use crate::storage::{keys, WriteSet};
use crate::tenancy::TenantStatus;

/// Tenants settled per atomic write during a settlement run.
const SETTLE_CHUNK: usize = 256;

impl Billing {
    /// The last settled day of a tenant, if any day was settled.
    pub(super) fn settled_through(&self, tenant: &str) -> Result<Option<i64>> {
        Ok(self
            .store
            .get::<SettledRecord>(&keys::settled(tenant))?
            .map(|r| r.last_settled_day))
    }

    /// The last settled day of a tenant, or the day before it was created.
    pub(super) fn last_settled(&self, tenant: &TenantRecord) -> Result<i64> {
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

    /// Topics of a tenant that existed at any moment of `day`.
    fn topic_days(&self, tenant: &str, day: i64) -> Result<u64> {
        let start = self.calendar.day_start_ms(day);
        let end = start + DAY_MS;
        let mut count = 0;
        for item in self
            .store
            .scan::<TopicLifeRecord>(&keys::topic_life_prefix(tenant))
        {
            let (_, life) = item?;
            if life.created_ms < end && (life.deleted_ms == 0 || life.deleted_ms >= start) {
                count += 1;
            }
        }
        Ok(count)
    }

    /// The priced lines of one tenant-day (not yet chained).
    fn day_lines(
        &self,
        tenant: &str,
        plan: &Plan,
        day: i64,
        free_remaining: u64,
    ) -> Result<Vec<LedgerEntry>> {
        let usage = self
            .store
            .get::<CountersRecord>(&usage_key(tenant, day, &Dimension::Total))?
            .map(|r| Usage::from_record(&r))
            .unwrap_or_default();
        let topic_days = self.topic_days(tenant, day)?;
        let storage = milli_gib_hours(usage.storage_byte_ms);
        let units = usage.message_units();
        if units == 0 && topic_days == 0 && storage == 0 {
            return Ok(Vec::new());
        }
        let rates = &plan.rates;
        let day_name = self.calendar.day_name(day);
        let due_ms = self.calendar.day_start_ms(day + 1);
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
            idempotency_key: format!("{tenant}/{day_name}/{meter}"),
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
        Ok(vec![
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
        ])
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
        let tenants: Vec<TenantRecord> = self
            .tenancy
            .list_tenants()
            .into_iter()
            .filter(|t| TenantStatus::from_i32(t.status) != TenantStatus::Terminated)
            .collect();
        let mut written = 0;
        let mut closed = 0;
        for chunk in tenants.chunks(SETTLE_CHUNK) {
            let (w, c) = self.settle_tenants(chunk, through_day).await?;
            written += w;
            closed += c;
        }
        if closed > 0 {
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
        tenants: &[TenantRecord],
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
            let mut free_used = self
                .accounts
                .get(&tenant.id)
                .map(|a| a.free_used.clone())
                .unwrap_or_default();
            for day in last + 1..=through_day {
                let month = self.calendar.month_of(day);
                let used = free_used.get(&month).copied().unwrap_or(0);
                let remaining = plan.rates.free_message_units_per_month.saturating_sub(used);
                for line in self.day_lines(&tenant.id, &plan, day, remaining)? {
                    if self.already_written(&line.idempotency_key)?.is_some() {
                        continue;
                    }
                    if line.meter == meter::MESSAGE_UNITS {
                        *free_used.entry(month).or_default() += line.free_applied;
                    }
                    written.push(self.chain(&mut head, line, &mut writes));
                }
                closed += 1;
            }
            writes.put(
                keys::settled(&tenant.id),
                &SettledRecord {
                    last_settled_day: through_day,
                },
            );
        }
        if writes.is_empty() {
            return Ok((0, 0));
        }
        self.commit_chained(&mut head, writes, &written).await?;
        Ok((written.len() as u64, closed))
    }
}
