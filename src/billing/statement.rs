//! Monthly statements: a tenant's settled days, charges and payments of one
//! month.

use std::collections::BTreeMap;
use std::ops::Range;

use super::ledger::{kind, LedgerEntry};
use super::{meter, Billing};
use crate::error::{Error, Result};
use crate::metering::Calendar;
use crate::storage::keys;

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

impl Billing {
    /// The statement of `tenant` for `(year, month)`.
    pub fn statement(&self, tenant: &str, year: i32, month: u32) -> Result<Statement> {
        self.tenancy.get_tenant(tenant)?;
        let (first, next) = self
            .calendar
            .month_days(year, month)
            .ok_or_else(|| Error::invalid("month must be YYYY-MM"))?;
        let account = self.account_of(tenant);
        let statement = Statement {
            tenant: tenant.to_string(),
            month: format!("{year:04}-{month:02}"),
            currency: self.currency_of(tenant),
            balance_minor: account.balance(),
            ..Default::default()
        };
        let mut summer = MonthSummer::new(statement, self.calendar, first..next);
        for sequence in &account.entries {
            if let Some(entry) = self.store.get::<LedgerEntry>(&keys::ledger(*sequence))? {
                summer.add(entry);
            }
        }
        let statement = summer.finish();
        Ok(statement)
    }
}

/// Sums a tenant's ledger entries, in ledger order, into the statement of one
/// month: a charge counts in the month of its billing day, a payment in the
/// month it was recorded, and the final statement whenever it was written.
struct MonthSummer {
    statement: Statement,
    days: BTreeMap<String, StatementDay>,
    calendar: Calendar,
    month: Range<i64>,
}

impl MonthSummer {
    /// Starts from `statement` (its sums at zero) for the days in `month`.
    fn new(statement: Statement, calendar: Calendar, month: Range<i64>) -> Self {
        MonthSummer {
            statement,
            days: BTreeMap::new(),
            calendar,
            month,
        }
    }

    /// Adds one entry.
    fn add(&mut self, entry: LedgerEntry) {
        match entry.kind.as_str() {
            kind::CHARGE => {
                let Some(day) = self.calendar.parse_day(&entry.day) else {
                    return;
                };
                if !self.month.contains(&day) {
                    return;
                }
                let line = self
                    .days
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
                self.statement.charges_minor += entry.amount_minor;
            }
            kind::PAYMENT if self.month.contains(&self.calendar.day_of(entry.created_ms)) => {
                self.statement.payments_minor += entry.amount_minor;
            }
            kind::FINAL_STATEMENT => self.statement.final_statement = Some(entry),
            _ => {}
        }
    }

    /// The statement, its days in date order.
    fn finish(mut self) -> Statement {
        self.statement.days = self.days.into_values().collect();
        self.statement
    }
}
