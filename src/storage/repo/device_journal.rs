//! The per-device usage journal: a delivery pass's usage per device, written
//! as **one** row in the pass's own atomic write, instead of one counter
//! increment and one sealed device-name row per device per pass. A fold
//! (`broker/delivery/device_journal.rs`) later adds the rows into the device
//! counters (`repo/usage.rs`) and deletes them, again in one atomic write, so
//! a unit is in exactly one of the two places at every instant.
//!
//! Layout: under `j`, tenant, 0, the row's id (u64, big-endian; drawn from
//! the store's generator, never reused), a [`SealedNameRecord`] holding the
//! encoded [`JournalRecord`] sealed under the tenant's set key
//! (`crypto/journal.rs`): device ids are never stored in the clear.

use crate::crypto::{open_journal, seal_journal, TenantKeys};
use crate::metering::Usage;
use crate::storage::records::SealedNameRecord;
use crate::storage::{keys, StorageResult, Store, WriteSet};

/// One pass's per-device usage, as encoded inside the sealed row.
#[derive(Clone, PartialEq, prost::Message)]
struct JournalRecord {
    #[prost(message, repeated, tag = "1")]
    entries: Vec<JournalEntry>,
}

/// One device's usage on one billing day. The counters are added with
/// wrapping arithmetic, so a taken-back delivery is stored as its two's
/// complement (`UsageDelta::returned`).
#[derive(Clone, PartialEq, prost::Message)]
struct JournalEntry {
    #[prost(int64, tag = "1")]
    day: i64,
    #[prost(string, tag = "2")]
    device_id: String,
    #[prost(uint64, tag = "3")]
    produced_units: u64,
    #[prost(uint64, tag = "4")]
    delivered_units: u64,
    #[prost(uint64, tag = "5")]
    redelivered_units: u64,
    #[prost(uint64, tag = "6")]
    produced_messages: u64,
    #[prost(uint64, tag = "7")]
    delivered_messages: u64,
    #[prost(uint64, tag = "8")]
    storage_byte_ms: u64,
}

/// Per-device usage read back from one journal row: (billing day, device
/// id, usage).
pub type DeviceUsageEntries = Vec<(i64, String, Usage)>;

/// Prefix of every journal row of `tenant`.
fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut key = vec![keys::DEVICE_USAGE_JOURNAL];
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key
}

/// Key of one journal row.
fn journal_key(tenant: &str, id: u64) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

impl WriteSet {
    /// Journals per-device usage of the owner of `keys` as one row with id
    /// `id` (from [`Store::generate_id`]), atomically with the rest of this
    /// set. Nothing is written when `entries` is empty.
    pub fn journal_device_usage<'a>(
        &mut self,
        keys: &TenantKeys,
        id: u64,
        entries: impl IntoIterator<Item = (i64, &'a str, &'a Usage)>,
    ) {
        let record = JournalRecord {
            entries: entries
                .into_iter()
                .map(|(day, device_id, u)| JournalEntry {
                    day,
                    device_id: device_id.to_string(),
                    produced_units: u.produced_units,
                    delivered_units: u.delivered_units,
                    redelivered_units: u.redelivered_units,
                    produced_messages: u.produced_messages,
                    delivered_messages: u.delivered_messages,
                    storage_byte_ms: u.storage_byte_ms,
                })
                .collect(),
        };
        if record.entries.is_empty() {
            return;
        }
        let plain = prost::Message::encode_to_vec(&record);
        let sealed = seal_journal(keys, id, &plain);
        self.put(journal_key(keys.owner(), id), &SealedNameRecord { sealed });
    }

    /// Deletes the journal row `id` of `tenant` (its usage is in the device
    /// counters of the same write).
    pub fn delete_device_journal(&mut self, tenant: &str, id: u64) {
        self.delete(journal_key(tenant, id));
    }
}

impl Store {
    /// The first `limit` journal rows of the owner of `keys`, by id: `Some`
    /// entries, or `None` for a row that does not open or decode (damaged;
    /// the caller keeps it and says so).
    pub fn device_journal(
        &self,
        keys: &TenantKeys,
        limit: usize,
    ) -> StorageResult<Vec<(u64, Option<DeviceUsageEntries>)>> {
        let prefix = tenant_prefix(keys.owner());
        let mut rows = Vec::new();
        for item in self.scan::<SealedNameRecord>(&prefix).take(limit) {
            let (key, row) = item?;
            let Some(id) = keys::u64_at(&key, prefix.len()) else {
                continue;
            };
            let entries = open_journal(keys, id, row.sealed)
                .ok()
                .and_then(|plain| <JournalRecord as prost::Message>::decode(&plain[..]).ok())
                .map(|record| {
                    record
                        .entries
                        .into_iter()
                        .map(|e| {
                            let usage = Usage {
                                produced_units: e.produced_units,
                                delivered_units: e.delivered_units,
                                redelivered_units: e.redelivered_units,
                                produced_messages: e.produced_messages,
                                delivered_messages: e.delivered_messages,
                                storage_byte_ms: e.storage_byte_ms,
                            };
                            (e.day, e.device_id, usage)
                        })
                        .collect()
                });
            rows.push((id, entries));
        }
        Ok(rows)
    }

    /// The tenants that have journal rows, in order.
    pub fn device_journal_tenants(&self) -> StorageResult<Vec<String>> {
        let space = [keys::DEVICE_USAGE_JOURNAL];
        let mut tenants = Vec::new();
        let mut start = space.to_vec();
        while let Some(item) = self.scan_from::<SealedNameRecord>(&space, &start).next() {
            let (key, _) = item?;
            let rest = &key[1..];
            let Some(end) = rest.iter().position(|b| *b == 0) else {
                break;
            };
            let tenant = String::from_utf8_lossy(&rest[..end]).into_owned();
            // Past every row of this tenant: its prefix with 0 raised to 1.
            start = tenant_prefix(&tenant);
            *start.last_mut().expect("a prefix ends in 0") = 1;
            tenants.push(tenant);
        }
        Ok(tenants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::DataKey;

    #[tokio::test]
    async fn rows_round_trip_sealed_per_tenant_and_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let acme = TenantKeys::derive("acme", &DataKey::generate());
        let acmex = TenantKeys::derive("acmex", &DataKey::generate());
        let delivered = Usage {
            delivered_units: 3,
            delivered_messages: 2,
            redelivered_units: 1,
            ..Usage::default()
        };
        let returned = Usage {
            delivered_units: 1u64.wrapping_neg(),
            delivered_messages: 1u64.wrapping_neg(),
            ..Usage::default()
        };
        let mut writes = WriteSet::new();
        writes.journal_device_usage(
            &acme,
            5,
            [(10, "imei-MARKER", &delivered), (11, "b", &returned)],
        );
        writes.journal_device_usage(&acme, 6, []);
        writes.journal_device_usage(&acmex, 7, [(10, "x", &delivered)]);
        store.commit(writes).await.unwrap();

        assert_eq!(
            store.device_journal(&acme, 10).unwrap(),
            [(
                5,
                Some(vec![
                    (10, "imei-MARKER".to_string(), delivered),
                    (11, "b".to_string(), returned)
                ])
            )]
        );
        assert_eq!(store.device_journal_tenants().unwrap(), ["acme", "acmex"]);
        for item in store.tree.iter() {
            let (key, value) = item.unwrap();
            for bytes in [&key[..], &value[..]] {
                assert!(!bytes.windows(11).any(|w| w == b"imei-MARKER"));
            }
        }
        // Under another tenant's keys the row does not open.
        let impostor = TenantKeys::derive("acme", &DataKey::generate());
        assert_eq!(store.device_journal(&impostor, 10).unwrap(), [(5, None)]);

        let mut writes = WriteSet::new();
        writes.delete_device_journal("acme", 5);
        store.commit(writes).await.unwrap();
        assert!(store.device_journal(&acme, 10).unwrap().is_empty());
        assert_eq!(store.device_journal_tenants().unwrap(), ["acmex"]);
        drop(store);
        committer.join();
    }
}
