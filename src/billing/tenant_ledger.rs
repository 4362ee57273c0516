//! A tenant's own view of the ledger (SPEC §3): its entries numbered by its
//! own sequence, 1, 2, 3, …, so paging through them reveals nothing about
//! other tenants' entries. The global sequence (and the hash chain that links
//! an entry to another tenant's) stays with the operator and the billing
//! reader, whose billing jobs merge ledgers by (node, global sequence).

use super::ledger::LedgerEntry;
use super::Billing;
use crate::error::Result;

impl Billing {
    /// At most `limit` of `tenant`'s entries from its own sequence `from` on
    /// (0 and 1 both mean its first), renumbered as the tenant sees them
    /// ([`Self::as_tenant_sees`]), and the tenant sequence to continue from.
    pub fn tenant_entries(
        &self,
        tenant: &str,
        from: u64,
        limit: usize,
    ) -> Result<(Vec<LedgerEntry>, u64)> {
        let from = from.max(1);
        let skip = usize::try_from(from - 1).unwrap_or(usize::MAX);
        let sequences = self.account_of(tenant).entries;
        let mut entries = Vec::new();
        for (position, sequence) in sequences.iter().enumerate().skip(skip).take(limit) {
            if let Some(entry) = self.entry_at(*sequence)? {
                entries.push(renumbered(entry, position as u64 + 1));
            }
        }
        let next = from.saturating_add(sequences.len().saturating_sub(skip).min(limit) as u64);
        Ok((entries, next))
    }

    /// `entry` (one of `tenant`'s) as the tenant sees it: `sequence` is its
    /// position in the tenant's own ledger and `prev_hash` is cleared (it is
    /// the hash of whatever entry came before, usually another tenant's).
    pub fn as_tenant_sees(&self, tenant: &str, entry: LedgerEntry) -> LedgerEntry {
        let sequences = self.account_of(tenant).entries;
        let position = sequences
            .binary_search(&entry.sequence)
            .map(|i| i as u64 + 1)
            .unwrap_or(0);
        renumbered(entry, position)
    }
}

/// The entry with its tenant sequence in place of the global one.
fn renumbered(mut entry: LedgerEntry, tenant_sequence: u64) -> LedgerEntry {
    entry.sequence = tenant_sequence;
    entry.prev_hash = Default::default();
    entry
}
