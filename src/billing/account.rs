//! A tenant's money: the account rebuilt from its ledger entries, and the
//! view GetAccount shows.

use std::collections::HashMap;

use super::ledger::{kind, LedgerEntry};
use super::{meter, Billing};
use crate::error::Result;
use crate::metering::Calendar;
use crate::tenancy::TenantStatus;

/// A tenant's money, rebuilt from the ledger at start-up.
#[derive(Debug, Default, Clone)]
pub(super) struct Account {
    /// (due time, amount) of every charge, in ledger order.
    pub(super) charges: Vec<(i64, i64)>,
    pub(super) charged: i64,
    pub(super) paid: i64,
    /// Free units applied per (year, month).
    pub(super) free_used: HashMap<(i32, u32), u64>,
    /// Sequences of the tenant's entries.
    pub(super) entries: Vec<u64>,
}

impl Account {
    pub(super) fn apply(&mut self, entry: &LedgerEntry, calendar: &Calendar) {
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
            // A move's transfer: a credit when positive, a debt due when the
            // source's oldest unpaid charge fell due when negative; the
            // month's free units used travel with it.
            kind::MOVED_IN | kind::MOVED_OUT => {
                if entry.amount_minor >= 0 {
                    self.paid += entry.amount_minor;
                } else {
                    self.charges.push((entry.due_ms, -entry.amount_minor));
                    self.charged -= entry.amount_minor;
                }
                if let Some(day) = calendar.parse_day(&entry.day) {
                    *self.free_used.entry(calendar.month_of(day)).or_default() +=
                        entry.free_applied;
                }
            }
            _ => {}
        }
    }

    pub(super) fn balance(&self) -> i64 {
        self.paid - self.charged
    }

    /// When the oldest charge that payments do not cover fell due.
    pub(super) fn oldest_unpaid_due(&self) -> Option<i64> {
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

impl Billing {
    /// A tenant's account.
    pub fn account(&self, tenant: &str) -> Result<AccountView> {
        let record = self.tenancy.get_tenant(tenant)?;
        let account = self.account_of(tenant);
        Ok(AccountView {
            tenant: tenant.to_string(),
            currency: self.currency_of(tenant),
            charges_minor: account.charged,
            payments_minor: account.paid,
            balance_minor: account.balance(),
            oldest_unpaid_due_ms: account.oldest_unpaid_due(),
            status: record.status,
            status_reason: record.status_reason,
            settled_through: self.settled_through(tenant)?,
        })
    }

    /// A copy of a tenant's account (empty before its first entry).
    pub(super) fn account_of(&self, tenant: &str) -> Account {
        self.accounts
            .get(tenant)
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// A tenant's balance (0 before its first entry).
    pub(super) fn balance_of(&self, tenant: &str) -> i64 {
        self.accounts.get(tenant).map(|a| a.balance()).unwrap_or(0)
    }

    /// The currency of a tenant's plan.
    pub(super) fn currency_of(&self, tenant: &str) -> String {
        self.tenancy.plan_of(tenant).rates.currency.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar() -> Calendar {
        Calendar::new(0)
    }

    fn account(charges: &[(i64, i64)], paid: i64) -> Account {
        let mut account = Account::default();
        for (sequence, &(due_ms, amount)) in (1..).zip(charges) {
            account.apply(
                &LedgerEntry {
                    sequence,
                    kind: kind::CHARGE.into(),
                    meter: meter::TOPIC_DAYS.into(),
                    amount_minor: amount,
                    due_ms,
                    ..Default::default()
                },
                &calendar(),
            );
        }
        account.apply(
            &LedgerEntry {
                sequence: 100,
                kind: kind::PAYMENT.into(),
                amount_minor: paid,
                ..Default::default()
            },
            &calendar(),
        );
        account
    }

    #[test]
    fn payments_cover_the_oldest_charges_first() {
        // Zero charges never count as unpaid.
        let charges = [(1, 100), (2, 0), (3, 50), (4, 70)];
        assert_eq!(account(&charges, 0).oldest_unpaid_due(), Some(1));
        assert_eq!(account(&charges, 99).oldest_unpaid_due(), Some(1));
        assert_eq!(account(&charges, 100).oldest_unpaid_due(), Some(3));
        assert_eq!(account(&charges, 120).oldest_unpaid_due(), Some(3));
        assert_eq!(account(&charges, 150).oldest_unpaid_due(), Some(4));
        assert_eq!(account(&charges, 220).oldest_unpaid_due(), None);
        assert_eq!(account(&charges, 500).oldest_unpaid_due(), None);
    }

    #[test]
    fn the_balance_is_payments_less_charges() {
        let a = account(&[(1, 100), (2, 50)], 120);
        assert_eq!((a.charged, a.paid, a.balance()), (150, 120, -30));
        assert_eq!(a.entries, [1, 2, 100]);
    }

    #[test]
    fn free_units_are_tracked_per_month_from_message_charges_only() {
        let mut a = Account::default();
        let line = |day: &str, meter: &str, free| LedgerEntry {
            kind: kind::CHARGE.into(),
            day: day.into(),
            meter: meter.into(),
            free_applied: free,
            ..Default::default()
        };
        a.apply(&line("2024-01-30", meter::MESSAGE_UNITS, 60), &calendar());
        a.apply(&line("2024-01-31", meter::MESSAGE_UNITS, 40), &calendar());
        a.apply(&line("2024-01-31", meter::TOPIC_DAYS, 7), &calendar());
        a.apply(&line("2024-02-01", meter::MESSAGE_UNITS, 5), &calendar());
        let final_statement = LedgerEntry {
            kind: kind::FINAL_STATEMENT.into(),
            amount_minor: -9,
            ..Default::default()
        };
        a.apply(&final_statement, &calendar());
        assert_eq!(
            a.free_used,
            HashMap::from([((2024, 1), 100), ((2024, 2), 5)])
        );
        assert_eq!(
            (a.charged, a.paid),
            (0, 0),
            "a final statement moves no money"
        );
    }
}
