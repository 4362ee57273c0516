//! Billing's part of a tenant moving between brokers (SPEC §9).
//!
//! The source settles the tenant up to its stop: every day through the stop
//! day, the stop day itself included (as termination does), so the source's
//! ledger holds exactly what the tenant did there. The target settles the
//! stop day again at its cut-off, but only what happened on the target (its
//! counters start at 0; an imported topic's billing life starts the day after
//! the stop, so topic-days are not counted twice), and every day after.
//!
//! The money moves as a transfer pair, so a billing job that sums every
//! node's payments and charges counts the balance once: `moved_out` on the
//! source (amount: minus the balance, its account ends at 0) and `moved_in`
//! on the target (amount: the balance; `free_applied`: the free units the
//! stop day's month used on the source, so the allowance is not granted
//! twice; `due_ms`: when the oldest unpaid charge fell due, so arrears run
//! on). Both are idempotent by `<tenant>/moved_out|moved_in/<snapshot id>`.

use super::ledger::{kind, LedgerEntry};
use super::Billing;
use crate::error::{Error, Result};
use crate::storage::WriteSet;
use crate::tenancy::{Tenant, TenantStatus};

/// What a moving tenant's account carries to the target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoveAccount {
    /// payments - charges on the source (negative: owed).
    pub balance_minor: i64,
    /// When the oldest unpaid charge fell due (0: none).
    pub oldest_unpaid_due_ms: i64,
    /// The billing day of the stop, "YYYY-MM-DD".
    pub stop_day: String,
    /// Free units applied in the stop day's month on the source.
    pub free_units_used: u64,
    /// Currency of the balance.
    pub currency: String,
}

/// The idempotency key of one end of a move's transfer.
fn move_key(tenant: &str, end: &str, snapshot_id: &str) -> String {
    format!("{tenant}/{end}/{snapshot_id}")
}

impl Billing {
    /// This broker's node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Settles a stopped tenant through the day of its stop (`stopped_ms`)
    /// and returns what its account carries to the target. Idempotent: a
    /// second call settles nothing more and returns the same account.
    pub async fn settle_for_move(&self, tenant: &str, stopped_ms: i64) -> Result<MoveAccount> {
        let record = self.tenancy.get_tenant(tenant)?;
        let stop_day = self.calendar.day_of(stopped_ms);
        self.bring_usage_up_to_now().await?;
        self.settle_tenants(std::slice::from_ref(&record), stop_day)
            .await?;
        let account = self.account_of(tenant);
        let month = self.calendar.month_of(stop_day);
        Ok(MoveAccount {
            balance_minor: account.balance(),
            oldest_unpaid_due_ms: account.oldest_unpaid_due().unwrap_or(0),
            stop_day: self.calendar.day_name(stop_day),
            free_units_used: account.free_used.get(&month).copied().unwrap_or(0),
            currency: self.currency_of(tenant),
        })
    }

    /// Whether the target holds the `moved_in` entry of this snapshot (the
    /// import finished).
    pub fn moved_in_already(&self, tenant: &str, snapshot_id: &str) -> Result<bool> {
        Ok(self
            .already_written(&move_key(tenant, kind::MOVED_IN, snapshot_id))?
            .is_some())
    }

    /// On the target: writes the `moved_in` entry and the tenant's settled-
    /// through day (the day before the stop: the stop day's own usage here
    /// is still to be settled), in one commit. Returns false when it was
    /// written before.
    pub async fn record_move_in(
        &self,
        tenant: &str,
        snapshot_id: &str,
        source_node: &str,
        account: &MoveAccount,
    ) -> Result<bool> {
        let key = move_key(tenant, kind::MOVED_IN, snapshot_id);
        let stop_day = self
            .calendar
            .parse_day(&account.stop_day)
            .ok_or_else(|| Error::invalid("the snapshot's stop day is not YYYY-MM-DD"))?;
        let mut head = self.head.lock().await;
        if self.already_written(&key)?.is_some() {
            return Ok(false);
        }
        let mut writes = WriteSet::new();
        writes.put_settled_through(tenant, stop_day - 1);
        let entry = self.chain(
            &mut head,
            LedgerEntry {
                tenant: tenant.to_string(),
                kind: kind::MOVED_IN.into(),
                day: account.stop_day.clone(),
                free_applied: account.free_units_used,
                amount_minor: account.balance_minor,
                currency: account.currency.clone(),
                idempotency_key: key,
                due_ms: account.oldest_unpaid_due_ms,
                note: format!("moved in from node {source_node} (snapshot {snapshot_id})"),
                ..Default::default()
            },
            &mut writes,
        );
        self.commit_chained(&mut head, writes, std::slice::from_ref(&entry))
            .await?;
        Ok(true)
    }

    /// On the source, once the target holds the tenant: writes the
    /// `moved_out` entry, then erases the tenant's topics, messages,
    /// subscriptions, keys and devices and destroys its data key (the
    /// termination path, without a final statement: the account moved).
    /// Returns the tenant and whether the move was finished before.
    pub async fn finish_move_out(
        &self,
        tenant: &str,
        snapshot_id: &str,
        target_node: &str,
    ) -> Result<(Tenant, bool)> {
        let record = self.tenancy.get_tenant(tenant)?;
        if record.status == TenantStatus::Terminated {
            if record.status_reason.starts_with("moved to ") {
                return Ok((record, true));
            }
            return Err(Error::FailedPrecondition(format!(
                "tenant '{tenant}' is terminated, not moved"
            )));
        }
        let mark = self.tenancy.move_mark(tenant).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "tenant '{tenant}' is not stopped for a move here: export it first"
            ))
        })?;
        let expected = snapshot_id_of(&self.node_id, tenant, mark.stopped_ms);
        if expected != snapshot_id {
            return Err(Error::FailedPrecondition(format!(
                "tenant '{tenant}' is stopped for the move of snapshot {expected}, not {snapshot_id}"
            )));
        }
        let key = move_key(tenant, kind::MOVED_OUT, snapshot_id);
        {
            let mut head = self.head.lock().await;
            if self.already_written(&key)?.is_none() {
                let mut writes = WriteSet::new();
                let entry = self.chain(
                    &mut head,
                    LedgerEntry {
                        tenant: tenant.to_string(),
                        kind: kind::MOVED_OUT.into(),
                        amount_minor: -self.balance_of(tenant),
                        currency: self.currency_of(tenant),
                        idempotency_key: key,
                        due_ms: self.clock.now_ms(),
                        note: format!("moved to node {target_node} (snapshot {snapshot_id})"),
                        ..Default::default()
                    },
                    &mut writes,
                );
                self.commit_chained(&mut head, writes, std::slice::from_ref(&entry))
                    .await?;
            }
        }
        self.broker.erase_tenant_data(tenant).await?;
        let erased = self.tenancy.erase_moved_tenant(tenant, target_node).await?;
        Ok((erased, false))
    }
}

/// The id of the move that stopped `tenant` on `node` at `stopped_ms`: the
/// same for every export of that move.
pub fn snapshot_id_of(node: &str, tenant: &str, stopped_ms: i64) -> String {
    format!("{node}/{tenant}/{stopped_ms}")
}
