//! A tenant's money: the account rebuilt from its ledger entries, and the
//! view GetAccount shows.

use std::collections::HashMap;

use super::ledger::{kind, LedgerEntry};
use super::{meter, Billing};
use crate::error::Result;
use crate::metering::Calendar;
use crate::storage::keys;
use crate::storage::records::SettledRecord;
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
}
