//! Billing: daily settlement of metered usage into an append-only,
//! hash-chained ledger; payments, balances and arrears; termination with a
//! final statement.
//!
//! Settlement of a tenant-day reads the usage counters that were written with
//! the data they count, prices them by the tenant's plan, and appends one
//! ledger entry per meter (idempotent by tenant/day/meter) together with the
//! tenant's settlement progress in one atomic write. A crash between two
//! tenant-days resumes from the progress record: no gap, no duplicate.

pub mod ledger;
pub mod pricing;

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;

use crate::broker::Broker;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::metering::{parse_usage_key, tenant_prefix, usage_key, Calendar, Dimension, Usage};
use crate::quota::Plan;
use crate::storage::records::{
    CountersRecord, LedgerKeyRecord, SettledRecord, TenantRecord, TopicLifeRecord,
};
use crate::storage::{keys, Store, WriteSet};
use crate::tenancy::{SuspendReason, Tenancy, TenantStatus};
use ledger::{entry_hash, genesis_hash, kind, LedgerEntry};
use pricing::{amount_minor, free_applied, milli_gib_hours};

/// Meter names, as they appear in ledger entries.
pub mod meter {
    /// Produced + delivered units.
    pub const MESSAGE_UNITS: &str = "message_units";
    /// Topics that existed during the day.
    pub const TOPIC_DAYS: &str = "topic_days";
    /// Retained storage, in milli-GiB-hours.
    pub const STORAGE_GIB_HOURS: &str = "storage_gib_hours";
}

const DAY_MS: i64 = 86_400_000;
/// Tenants settled per atomic write during a settlement run.
const SETTLE_CHUNK: usize = 256;

/// A tenant's money, rebuilt from the ledger at start-up.
#[derive(Debug, Default, Clone)]
struct Account {
    /// (due time, amount) of every charge, in ledger order.
    charges: Vec<(i64, i64)>,
    charged: i64,
    paid: i64,
    /// Free units applied per (year, month).
    free_used: HashMap<(i32, u32), u64>,
    /// Sequences of the tenant's entries.
    entries: Vec<u64>,
}

impl Account {
    fn apply(&mut self, entry: &LedgerEntry, calendar: &Calendar) {
        self.entries.push(entry.sequence);
        match entry.kind.as_str() {
            kind::CHARGE => {
                self.charges.push((entry.due_ms, entry.amount_minor));
                self.charged += entry.amount_minor;
                if entry.meter == meter::MESSAGE_UNITS {
                    if let Some(day) = calendar.parse_day(&entry.day) {
                        *self.free_used.entry(calendar.month_of(day)).or_default() +=
                            entry.free_applied;
                    }
                }
            }
            kind::PAYMENT => self.paid += entry.amount_minor,
            _ => {}
        }
    }

    fn balance(&self) -> i64 {
        self.paid - self.charged
    }

    /// When the oldest charge that payments do not cover fell due.
    fn oldest_unpaid_due(&self) -> Option<i64> {
        let mut covered = self.paid;
        for (due, amount) in &self.charges {
            if *amount == 0 {
                continue;
            }
            if covered >= *amount {
                covered -= amount;
            } else {
                return Some(*due);
            }
        }
        None
    }
}

/// The tail of the chain.
struct LedgerHead {
    next_sequence: u64,
    last_hash: Vec<u8>,
}

/// A tenant's account as GetAccount shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    /// The tenant.
    pub tenant: String,
    /// Currency of its plan.
    pub currency: String,
    /// All charges.
    pub charges_minor: i64,
    /// All payments.
    pub payments_minor: i64,
    /// payments - charges.
    pub balance_minor: i64,
    /// Due time of the oldest unpaid charge, if any.
    pub oldest_unpaid_due_ms: Option<i64>,
    /// The tenant's status.
    pub status: TenantStatus,
    /// Why it is suspended or terminated.
    pub status_reason: String,
    /// Last settled day, if any.
    pub settled_through: Option<i64>,
}

/// One day of a statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementDay {
    /// The day.
    pub day: String,
    /// message_units quantity.
    pub message_units: u64,
    /// Free units applied.
    pub free_units_applied: u64,
    /// topic_days quantity.
    pub topic_days: u64,
    /// Storage quantity.
    pub storage_milli_gib_hours: u64,
    /// Sum of the day's amounts.
    pub amount_minor: i64,
}

/// A monthly statement.
#[derive(Debug, Clone, Default)]
pub struct Statement {
    /// The tenant.
    pub tenant: String,
    /// "YYYY-MM".
    pub month: String,
    /// Currency.
    pub currency: String,
    /// Settled days of the month.
    pub days: Vec<StatementDay>,
    /// Charges in the month.
    pub charges_minor: i64,
    /// Payments in the month.
    pub payments_minor: i64,
    /// Balance now.
    pub balance_minor: i64,
    /// The final statement, if terminated.
    pub final_statement: Option<LedgerEntry>,
}

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

/// Settlement, ledger, accounts.
pub struct Billing {
    store: Store,
    clock: Clock,
    calendar: Calendar,
    node_id: String,
    tenancy: Arc<Tenancy>,
    broker: Arc<Broker>,
    head: tokio::sync::Mutex<LedgerHead>,
    accounts: DashMap<String, Account>,
}

impl Billing {
    /// Loads the ledger's tail and every account from the store.
    pub fn load(broker: Arc<Broker>, node_id: String) -> Result<Self> {
        let store = broker.store().clone();
        let calendar = broker.calendar();
        let accounts: DashMap<String, Account> = DashMap::new();
        let mut head = LedgerHead {
            next_sequence: 1,
            last_hash: genesis_hash(),
        };
        for item in store.scan::<LedgerEntry>(&[keys::LEDGER]) {
            let (_, entry) = item?;
            accounts
                .entry(entry.tenant.clone())
                .or_default()
                .apply(&entry, &calendar);
            head.next_sequence = entry.sequence + 1;
            head.last_hash = entry.hash.clone();
        }
        Ok(Billing {
            store,
            clock: broker.clock().clone(),
            calendar,
            node_id,
            tenancy: broker.tenancy().clone(),
            broker,
            head: tokio::sync::Mutex::new(head),
            accounts,
        })
    }

    /// The billing calendar.
    pub fn calendar(&self) -> Calendar {
        self.calendar
    }

    fn today(&self) -> i64 {
        self.calendar.day_of(self.clock.now_ms())
    }

    fn last_settled(&self, tenant: &TenantRecord) -> Result<i64> {
        let record: Option<SettledRecord> = self.store.get(&keys::settled(&tenant.id))?;
        Ok(record
            .map(|r| r.last_settled_day)
            .unwrap_or_else(|| self.calendar.day_of(tenant.created_ms) - 1))
    }

    /// Appends `entry` to the chain in `writes` (sequence, node, hashes,
    /// idempotency index) and returns it as written.
    fn chain(
        &self,
        head: &mut LedgerHead,
        mut entry: LedgerEntry,
        writes: &mut WriteSet,
    ) -> LedgerEntry {
        entry.sequence = head.next_sequence;
        entry.node_id = self.node_id.clone();
        entry.created_ms = self.clock.now_ms();
        entry.prev_hash = head.last_hash.clone();
        entry.hash = entry_hash(&entry);
        writes.put(keys::ledger(entry.sequence), &entry);
        writes.put(
            keys::ledger_key(&entry.idempotency_key),
            &LedgerKeyRecord {
                sequence: entry.sequence,
            },
        );
        head.next_sequence += 1;
        head.last_hash = entry.hash.clone();
        entry
    }

    fn already_written(&self, idempotency_key: &str) -> Result<Option<u64>> {
        Ok(self
            .store
            .get::<LedgerKeyRecord>(&keys::ledger_key(idempotency_key))?
            .map(|r| r.sequence))
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
        self.broker.sample_storage(true).await?;
        self.store.sync_counters().await?;
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
            self.broker.metrics().gauge(
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

    async fn settle_tenants(
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
        match self.store.commit(writes).await {
            Ok(()) => {
                for entry in &written {
                    self.accounts
                        .entry(entry.tenant.clone())
                        .or_default()
                        .apply(entry, &self.calendar);
                }
                Ok((written.len() as u64, closed))
            }
            Err(e) => {
                // Nothing was written: rewind the in-memory chain tail.
                if let Some(first) = written.first() {
                    head.next_sequence = first.sequence;
                    head.last_hash = first.prev_hash.clone();
                }
                Err(e.into())
            }
        }
    }

    /// Records a payment, idempotent by `payment_id`; resumes a tenant
    /// suspended for arrears once its debt is cleared. Returns (entry
    /// sequence, balance, duplicate).
    pub async fn record_payment(
        &self,
        tenant: &str,
        payment_id: &str,
        amount: i64,
        currency: &str,
        note: String,
    ) -> Result<(u64, i64, bool)> {
        let record = self.tenancy.get_tenant(tenant)?;
        if payment_id.is_empty() || payment_id.len() > 128 {
            return Err(Error::invalid("payment_id must be 1 to 128 characters"));
        }
        if amount <= 0 {
            return Err(Error::invalid(
                "a payment amount must be positive (minor units)",
            ));
        }
        let plan = self.tenancy.plan_of(tenant);
        if currency != plan.rates.currency {
            return Err(Error::invalid(format!(
                "currency '{currency}' does not match the plan's currency '{}'",
                plan.rates.currency
            )));
        }
        let idempotency_key = format!("payment/{payment_id}");
        let mut head = self.head.lock().await;
        if let Some(sequence) = self.already_written(&idempotency_key)? {
            let existing: Option<LedgerEntry> = self.store.get(&keys::ledger(sequence))?;
            let same = existing
                .as_ref()
                .is_some_and(|e| e.tenant == tenant && e.amount_minor == amount);
            if !same {
                return Err(Error::already_exists("payment", payment_id));
            }
            let balance = self.accounts.get(tenant).map(|a| a.balance()).unwrap_or(0);
            return Ok((sequence, balance, true));
        }
        let mut writes = WriteSet::new();
        let entry = self.chain(
            &mut head,
            LedgerEntry {
                tenant: record.id.clone(),
                kind: kind::PAYMENT.into(),
                amount_minor: amount,
                currency: currency.to_string(),
                idempotency_key,
                note,
                ..Default::default()
            },
            &mut writes,
        );
        self.tenancy.audit(
            &mut writes,
            "operator",
            "payment.record",
            tenant,
            format!("payment {payment_id} of {amount} {currency} (minor units)"),
        )?;
        if let Err(e) = self.store.commit(writes).await {
            head.next_sequence = entry.sequence;
            head.last_hash = entry.prev_hash.clone();
            return Err(e.into());
        }
        drop(head);
        let balance = {
            let mut account = self.accounts.entry(tenant.to_string()).or_default();
            account.apply(&entry, &self.calendar);
            account.balance()
        };
        self.enforce_arrears().await?;
        Ok((entry.sequence, balance, false))
    }

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

    /// Terminates a tenant: settles its usage up to now (today included),
    /// erases its topics, messages, subscriptions, keys, devices and contact
    /// data, keeps the ledger, and writes a final statement.
    pub async fn terminate(&self, tenant: &str, reason: &str, actor: &str) -> Result<TenantRecord> {
        let record = self.tenancy.get_tenant(tenant)?;
        if TenantStatus::from_i32(record.status) == TenantStatus::Terminated {
            return Err(Error::FailedPrecondition(format!(
                "tenant '{tenant}' is terminated already"
            )));
        }
        // Stop the data plane first so no usage arrives after the last line.
        self.tenancy
            .set_suspended(tenant, Some(SuspendReason::Operator), actor)
            .await?;
        self.broker.sample_storage(true).await?;
        self.store.sync_counters().await?;
        self.settle_tenants(std::slice::from_ref(&record), self.today())
            .await?;
        self.broker.erase_tenant_data(tenant).await?;
        let terminated = self.tenancy.erase_tenant(tenant, reason, actor).await?;

        let mut head = self.head.lock().await;
        let (balance, currency) = (
            self.accounts.get(tenant).map(|a| a.balance()).unwrap_or(0),
            self.tenancy.plan_of(tenant).rates.currency.clone(),
        );
        let mut writes = WriteSet::new();
        let note = if balance > 0 {
            format!("refund {} {currency}", pricing::format_minor(balance))
        } else {
            format!("owed {} {currency}", pricing::format_minor(-balance))
        };
        let entry = self.chain(
            &mut head,
            LedgerEntry {
                tenant: tenant.to_string(),
                kind: kind::FINAL_STATEMENT.into(),
                amount_minor: balance,
                currency,
                idempotency_key: format!("{tenant}/final_statement"),
                note,
                ..Default::default()
            },
            &mut writes,
        );
        if let Err(e) = self.store.commit(writes).await {
            head.next_sequence = entry.sequence;
            head.last_hash = entry.prev_hash.clone();
            return Err(e.into());
        }
        self.accounts
            .entry(tenant.to_string())
            .or_default()
            .apply(&entry, &self.calendar);
        Ok(terminated)
    }

    /// A tenant's account.
    pub fn account(&self, tenant: &str) -> Result<AccountView> {
        let record = self.tenancy.get_tenant(tenant)?;
        let account = self
            .accounts
            .get(tenant)
            .map(|a| a.clone())
            .unwrap_or_default();
        let settled: Option<SettledRecord> = self.store.get(&keys::settled(tenant))?;
        Ok(AccountView {
            tenant: tenant.to_string(),
            currency: self.tenancy.plan_of(tenant).rates.currency.clone(),
            charges_minor: account.charged,
            payments_minor: account.paid,
            balance_minor: account.balance(),
            oldest_unpaid_due_ms: account.oldest_unpaid_due(),
            status: TenantStatus::from_i32(record.status),
            status_reason: record.status_reason,
            settled_through: settled.map(|s| s.last_settled_day),
        })
    }

    /// The statement of `tenant` for `(year, month)`.
    pub fn statement(&self, tenant: &str, year: i32, month: u32) -> Result<Statement> {
        self.tenancy.get_tenant(tenant)?;
        let (first, next) = self
            .calendar
            .month_days(year, month)
            .ok_or_else(|| Error::invalid("month must be YYYY-MM"))?;
        let account = self
            .accounts
            .get(tenant)
            .map(|a| a.clone())
            .unwrap_or_default();
        let mut statement = Statement {
            tenant: tenant.to_string(),
            month: format!("{year:04}-{month:02}"),
            currency: self.tenancy.plan_of(tenant).rates.currency.clone(),
            balance_minor: account.balance(),
            ..Default::default()
        };
        let mut days: std::collections::BTreeMap<String, StatementDay> = Default::default();
        for sequence in &account.entries {
            let Some(entry) = self.store.get::<LedgerEntry>(&keys::ledger(*sequence))? else {
                continue;
            };
            let in_month = |ms: i64| {
                let day = self.calendar.day_of(ms);
                (first..next).contains(&day)
            };
            match entry.kind.as_str() {
                kind::CHARGE => {
                    let Some(day) = self.calendar.parse_day(&entry.day) else {
                        continue;
                    };
                    if !(first..next).contains(&day) {
                        continue;
                    }
                    let line = days
                        .entry(entry.day.clone())
                        .or_insert_with(|| StatementDay {
                            day: entry.day.clone(),
                            ..Default::default()
                        });
                    match entry.meter.as_str() {
                        meter::MESSAGE_UNITS => {
                            line.message_units += entry.quantity;
                            line.free_units_applied += entry.free_applied;
                        }
                        meter::TOPIC_DAYS => line.topic_days += entry.quantity,
                        _ => line.storage_milli_gib_hours += entry.quantity,
                    }
                    line.amount_minor += entry.amount_minor;
                    statement.charges_minor += entry.amount_minor;
                }
                kind::PAYMENT if in_month(entry.created_ms) => {
                    statement.payments_minor += entry.amount_minor;
                }
                kind::FINAL_STATEMENT => statement.final_statement = Some(entry),
                _ => {}
            }
        }
        statement.days = days.into_values().collect();
        Ok(statement)
    }

    /// Ledger entries from `from` on (at most `limit`), of one tenant or all.
    pub fn entries(
        &self,
        from: u64,
        limit: usize,
        tenant: Option<&str>,
    ) -> Result<(Vec<LedgerEntry>, u64)> {
        let mut entries = Vec::new();
        let mut next = from.max(1);
        for item in self
            .store
            .scan_from::<LedgerEntry>(&[keys::LEDGER], &keys::ledger(from.max(1)))
        {
            let (_, entry) = item?;
            next = entry.sequence + 1;
            if tenant.is_none_or(|t| t == entry.tenant) {
                entries.push(entry);
                if entries.len() >= limit {
                    break;
                }
            }
        }
        Ok((entries, next))
    }

    /// The tenant's live usage: every day after the last settled one.
    pub async fn live_usage(&self, tenant: &str) -> Result<(Vec<UsageLine>, Option<i64>)> {
        self.store.sync_counters().await?;
        let record = self.tenancy.get_tenant(tenant)?;
        let last = self.last_settled(&record)?;
        let settled = self
            .store
            .get::<SettledRecord>(&keys::settled(tenant))?
            .map(|s| s.last_settled_day);
        let mut lines = Vec::new();
        for item in self.store.scan::<CountersRecord>(&tenant_prefix(tenant)) {
            let (key, counters) = item?;
            let Some((day, dimension)) = parse_usage_key(tenant, &key) else {
                continue;
            };
            if day > last {
                lines.push(UsageLine {
                    day: self.calendar.day_name(day),
                    dimension,
                    usage: Usage::from_record(&counters),
                });
            }
        }
        Ok((lines, settled))
    }
}
