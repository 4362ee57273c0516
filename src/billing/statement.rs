//! Monthly statements: a tenant's settled days, charges and payments of one
//! month.

use super::ledger::{kind, LedgerEntry};
use super::{meter, Billing};
use crate::error::{Error, Result};
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
        let mut statement = Statement {
            tenant: tenant.to_string(),
            month: format!("{year:04}-{month:02}"),
            currency: self.currency_of(tenant),
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
}
