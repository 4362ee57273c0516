//! Payments: recorded once per payment id, then arrears re-checked.

use super::chain::payment_key;
use super::ledger::{kind, LedgerEntry};
use super::Billing;
use crate::error::{Error, Result};
use crate::storage::WriteSet;

impl Billing {
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
        self.tenancy.refuse_moving(tenant)?;
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
        let idempotency_key = payment_key(payment_id);
        let mut head = self.head.lock().await;
        if let Some(sequence) = self.already_written(&idempotency_key)? {
            let same = self
                .entry_at(sequence)?
                .is_some_and(|e| e.tenant == tenant && e.amount_minor == amount);
            if !same {
                return Err(Error::already_exists("payment", payment_id));
            }
            return Ok((sequence, self.balance_of(tenant), true));
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
        self.commit_chained(&mut head, writes, std::slice::from_ref(&entry))
            .await?;
        // Read under the head lock: no other entry is applied in between.
        let balance = self.balance_of(tenant);
        drop(head);
        self.enforce_arrears().await?;
        Ok((entry.sequence, balance, false))
    }
}
