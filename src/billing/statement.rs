//! Monthly statements: a tenant's settled days, charges and payments of one
//! month.

use std::collections::BTreeMap;
use std::ops::Range;

use super::ledger::{kind, LedgerEntry};
use super::{meter, Billing};
use crate::error::{Error, Result};
use crate::metering::Calendar;

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
            if let Some(entry) = self.entry_at(*sequence)? {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar() -> Calendar {
        Calendar::new(0)
    }

    fn charge(day: &str, meter: &str, quantity: u64, amount: i64) -> LedgerEntry {
        LedgerEntry {
            kind: kind::CHARGE.into(),
            day: day.into(),
            meter: meter.into(),
            quantity,
            free_applied: quantity / 2,
            amount_minor: amount,
            ..Default::default()
        }
    }

    fn entry(kind: &str, on_day: &str, amount: i64) -> LedgerEntry {
        let day = calendar().parse_day(on_day).expect("a valid day");
        LedgerEntry {
            kind: kind.into(),
            amount_minor: amount,
            created_ms: calendar().day_start_ms(day) + 3_600_000,
            ..Default::default()
        }
    }

    fn january(entries: Vec<LedgerEntry>) -> Statement {
        let (first, next) = calendar().month_days(2024, 1).expect("a valid month");
        let mut summer = MonthSummer::new(Statement::default(), calendar(), first..next);
        for e in entries {
            summer.add(e);
        }
        summer.finish()
    }

    #[test]
    fn charges_sum_per_day_and_meter_in_date_order() {
        let s = january(vec![
            charge("2024-01-02", meter::MESSAGE_UNITS, 10, 5),
            charge("2024-01-01", meter::MESSAGE_UNITS, 4, 2),
            charge("2024-01-01", meter::TOPIC_DAYS, 3, 600),
            charge("2024-01-01", meter::STORAGE_GIB_HOURS, 7, 1),
        ]);
        assert_eq!(
            s.days,
            [
                StatementDay {
                    day: "2024-01-01".into(),
                    message_units: 4,
                    free_units_applied: 2,
                    topic_days: 3,
                    storage_milli_gib_hours: 7,
                    amount_minor: 603,
                },
                StatementDay {
                    day: "2024-01-02".into(),
                    message_units: 10,
                    free_units_applied: 5,
                    amount_minor: 5,
                    ..Default::default()
                },
            ]
        );
        assert_eq!(s.charges_minor, 608);
    }

    #[test]
    fn a_charge_counts_in_the_month_of_its_day_a_payment_when_it_was_made() {
        // December's charge is settled (written) in January; it is not
        // January's. A payment made in January for December is.
        let mut december = charge("2023-12-31", meter::TOPIC_DAYS, 1, 200);
        december.created_ms = entry(kind::CHARGE, "2024-01-01", 0).created_ms;
        let s = january(vec![
            december,
            charge("2024-02-01", meter::TOPIC_DAYS, 1, 200),
            charge("2024-01-31", meter::TOPIC_DAYS, 1, 200),
            entry(kind::PAYMENT, "2024-01-15", 150),
            entry(kind::PAYMENT, "2023-12-31", 1_000),
            entry(kind::PAYMENT, "2024-02-01", 1_000),
        ]);
        assert_eq!(s.days.len(), 1);
        assert_eq!(s.charges_minor, 200);
        assert_eq!(s.payments_minor, 150);
        assert!(s.final_statement.is_none());
    }

    #[test]
    fn the_final_statement_is_shown_whenever_it_was_written() {
        let s = january(vec![entry(kind::FINAL_STATEMENT, "2024-03-05", -42)]);
        assert_eq!(s.final_statement.map(|e| e.amount_minor), Some(-42));
        assert_eq!((s.charges_minor, s.payments_minor), (0, 0));
    }
}
