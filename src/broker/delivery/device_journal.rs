//! Per-device delivery (and produce) usage, folded off the hot paths.
//!
//! A delivery pass bills its deliveries in the same atomic write that
//! records them, as always: the tenant's total and the topic's counters are
//! incremented there. Its per-device breakdown is written in that same
//! write too, but as **one** sealed journal row for the whole pass
//! (`UsageDelta::write_journaled`, `storage/repo/device_journal.rs`) rather
//! than a counter increment and a sealed device-name row for every device
//! the pass touched (with 100 devices, ~100 sled keys per pass). A taken-back
//! delivery (`unsent.rs`) journals its negative usage the same way.
//! A produced set journals its per-device produce usage the same way, in
//! the set's own write (`produce/round.rs`; `device_usage.rs` says how the
//! sets written before that are still folded from the sets themselves).
//!
//! The **fold** reads a tenant's rows, adds their sums to the device
//! counters and deletes the rows, in **one** atomic write. So at every
//! instant each delivered unit of a device is in exactly one place — a
//! journal row or the device counters — and both are written only together
//! with what they count: a SIGKILL before a fold's write leaves the rows
//! (the next fold adds them), after it leaves the counters; nothing is lost
//! or counted twice, and per-device usage once folded equals what the
//! tenant's total says was delivered.
//!
//! Folds run serially (one lock per broker, held until the fold's write is
//! applied, so no two folds read the same row), every second in the
//! background ([`Broker::fold_all_device_journals`]), before per-device
//! usage is read (`Broker::fold_device_usage`: live usage, export) and
//! before a tenant's data is erased (its key, which opens the rows, goes
//! next).

use std::collections::HashMap;

use crate::broker::Broker;
use crate::error::Result;
use crate::metering::Usage;
use crate::storage::WriteSet;

/// Most journal rows one fold write takes (bounds its memory and batch).
const ROWS_PER_FOLD: usize = 1024;

/// Adds `other` into `into` with wrapping arithmetic (a taken-back delivery
/// is journaled as its two's complement).
fn add_wrapping(into: &mut Usage, other: &Usage) {
    into.produced_units = into.produced_units.wrapping_add(other.produced_units);
    into.delivered_units = into.delivered_units.wrapping_add(other.delivered_units);
    into.redelivered_units = into.redelivered_units.wrapping_add(other.redelivered_units);
    into.produced_messages = into.produced_messages.wrapping_add(other.produced_messages);
    into.delivered_messages = into
        .delivered_messages
        .wrapping_add(other.delivered_messages);
    into.storage_byte_ms = into.storage_byte_ms.wrapping_add(other.storage_byte_ms);
}

impl Broker {
    /// Folds every journal row of `tenant` into its device counters and
    /// returns once that is durable. A tenant without a key (terminated)
    /// has nothing that opens: its rows were folded before it was erased.
    ///
    /// Rows are read in id order, a batch at a time, each batch starting
    /// after the last row the one before read: a row that does not open is
    /// kept (and logged) and the rows behind it are folded all the same.
    pub(in crate::broker) async fn fold_device_journal(&self, tenant: &str) -> Result<()> {
        let Ok(keys) = self.tenancy.data_keys(tenant) else {
            return Ok(());
        };
        let _serial = self.device_journal_fold.lock().await;
        let mut after = None;
        loop {
            let rows = self.store.device_journal(&keys, after, ROWS_PER_FOLD)?;
            let full = rows.len() >= ROWS_PER_FOLD;
            after = rows.last().map(|(id, _)| *id);
            // Summed per device and day, borrowing the ids from the rows
            // (foldhash: SipHash was ~200 instructions per folded message).
            let mut sums: HashMap<(i64, &str), Usage, foldhash::fast::RandomState> =
                HashMap::default();
            let mut writes = WriteSet::new();
            for (id, row) in &rows {
                let Some(row) = row else {
                    // Kept, not dropped: the next fold tries again.
                    tracing::warn!(
                        tenant,
                        id,
                        "a per-device usage journal row does not open; kept"
                    );
                    continue;
                };
                for (day, device, usage) in row.entries() {
                    add_wrapping(sums.entry((day, device)).or_default(), &usage);
                }
                writes.delete_device_journal(tenant, *id);
            }
            for ((day, device), usage) in &sums {
                writes.add_device_usage(&keys, *day, device, usage);
            }
            if !writes.is_empty() {
                // Still under the lock: the next fold reads after this write.
                self.store.commit(writes).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// [`Broker::fold_device_journal`] for every tenant with journal rows
    /// (background job, every second).
    pub async fn fold_all_device_journals(&self) -> Result<()> {
        for tenant in self.store.device_journal_tenants()? {
            self.fold_device_journal(&tenant).await?;
        }
        Ok(())
    }
}
