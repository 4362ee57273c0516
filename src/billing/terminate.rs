//! Termination: final settlement, erasure of the tenant's data, and the
//! final statement in the ledger.

use super::chain::final_statement_key;
use super::ledger::{kind, LedgerEntry};
use super::{pricing, Billing};
use crate::error::{Error, Result};
use crate::storage::WriteSet;
use crate::tenancy::{SuspendReason, Tenant, TenantStatus};

impl Billing {
    /// Terminates a tenant: settles its usage up to now (today included),
    /// erases its topics, messages, subscriptions, keys, devices and contact
    /// data, keeps the ledger, and writes a final statement.
    pub async fn terminate(&self, tenant: &str, reason: &str, actor: &str) -> Result<Tenant> {
        let record = self.tenancy.get_tenant(tenant)?;
        if record.status == TenantStatus::Terminated {
            return Err(Error::FailedPrecondition(format!(
                "tenant '{tenant}' is terminated already"
            )));
        }
        // Stop the data plane first so no usage arrives after the last line.
        self.tenancy
            .set_suspended(tenant, Some(SuspendReason::Operator), actor)
            .await?;
        self.bring_usage_up_to_now().await?;
        self.settle_tenants(std::slice::from_ref(&record), self.today())
            .await?;
        self.broker.erase_tenant_data(tenant).await?;
        let terminated = self.tenancy.erase_tenant(tenant, reason, actor).await?;

        let mut head = self.head.lock().await;
        let (balance, currency) = (self.balance_of(tenant), self.currency_of(tenant));
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
                idempotency_key: final_statement_key(tenant),
                note,
                ..Default::default()
            },
            &mut writes,
        );
        self.commit_chained(&mut head, writes, std::slice::from_ref(&entry))
            .await?;
        Ok(terminated)
    }
}
