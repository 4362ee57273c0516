//! Appending to the hash-chained ledger in the store (the in-memory tail,
//! sequence numbers, the idempotency index) and reading it back.

use dashmap::DashMap;

use super::account::Account;
use super::ledger::{entry_hash, genesis_hash, LedgerEntry};
use super::Billing;
use crate::error::Result;
use crate::metering::Calendar;
use crate::storage::{Store, WriteSet};

/// The idempotency key of a charge: one per tenant, day and meter. Stored
/// in the ledger's index, so its format may never change.
pub(super) fn charge_key(tenant: &str, day_name: &str, meter: &str) -> String {
    format!("{tenant}/{day_name}/{meter}")
}

/// The idempotency key of a payment: one per payment id, over all tenants.
pub(super) fn payment_key(payment_id: &str) -> String {
    format!("payment/{payment_id}")
}

/// The idempotency key of a tenant's final statement.
pub(super) fn final_statement_key(tenant: &str) -> String {
    format!("{tenant}/final_statement")
}

/// The tail of the chain.
pub(super) struct LedgerHead {
    pub(super) next_sequence: u64,
    pub(super) last_hash: Vec<u8>,
}

/// Reads the whole ledger at start-up: the chain's tail and every tenant's
/// account.
pub(super) fn load_ledger(
    store: &Store,
    calendar: &Calendar,
) -> Result<(LedgerHead, DashMap<String, Account>)> {
    let accounts: DashMap<String, Account> = DashMap::new();
    let mut head = LedgerHead {
        next_sequence: 1,
        last_hash: genesis_hash(),
    };
    for entry in store.ledger_entries_from(0) {
        let entry = entry?;
        accounts
            .entry(entry.tenant.clone())
            .or_default()
            .apply(&entry, calendar);
        head.next_sequence = entry.sequence + 1;
        head.last_hash = entry.hash.clone();
    }
    Ok((head, accounts))
}

impl Billing {
    /// Appends `entry` to the chain in `writes` (sequence, node, hashes,
    /// idempotency index) and returns it as written.
    pub(super) fn chain(
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
        writes.append_ledger_entry(&entry);
        head.next_sequence += 1;
        head.last_hash = entry.hash.clone();
        entry
    }

    /// Commits `writes`, which append `chained` (in chain order) to the
    /// ledger, then applies those entries to the accounts. A failed commit
    /// wrote nothing, so the tail is rewound to before the first of them.
    pub(super) async fn commit_chained(
        &self,
        head: &mut LedgerHead,
        writes: WriteSet,
        chained: &[LedgerEntry],
    ) -> Result<()> {
        if let Err(e) = self.store.commit(writes).await {
            if let Some(first) = chained.first() {
                head.next_sequence = first.sequence;
                head.last_hash = first.prev_hash.clone();
            }
            return Err(e.into());
        }
        for entry in chained {
            self.accounts
                .entry(entry.tenant.clone())
                .or_default()
                .apply(entry, &self.calendar);
        }
        Ok(())
    }

    /// The sequence of the entry written under `idempotency_key`, if any.
    pub(super) fn already_written(&self, idempotency_key: &str) -> Result<Option<u64>> {
        Ok(self.store.ledger_sequence_of(idempotency_key)?)
    }

    /// The ledger entry numbered `sequence`, if there is one.
    pub(super) fn entry_at(&self, sequence: u64) -> Result<Option<LedgerEntry>> {
        Ok(self.store.ledger_entry(sequence)?)
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
        for entry in self.store.ledger_entries_from(from.max(1)) {
            let entry = entry?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_keep_their_stored_format() {
        // The index holds these keys: a changed format would let a re-run
        // settle a day twice or record a payment twice.
        assert_eq!(
            charge_key("acme", "2024-01-31", "topic_days"),
            "acme/2024-01-31/topic_days"
        );
        assert_eq!(payment_key("wire-7"), "payment/wire-7");
        assert_eq!(final_statement_key("acme"), "acme/final_statement");
    }

    #[test]
    fn charge_keys_differ_by_tenant_day_and_meter() {
        let keys = [
            charge_key("acme", "2024-01-31", "topic_days"),
            charge_key("acme", "2024-01-31", "message_units"),
            charge_key("acme", "2024-02-01", "topic_days"),
            charge_key("beta", "2024-01-31", "topic_days"),
        ];
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
    }
}
