//! The per-device usage journal: a delivery pass's or a produced set's usage
//! per device, written as **one** row in the pass's (or set's) own atomic
//! write, instead of one counter increment and one sealed device-name row per
//! device. A fold (`broker/delivery/device_journal.rs`) later adds the rows
//! into the device counters (`repo/usage.rs`) and deletes them, again in one
//! atomic write, so a unit is in exactly one of the two places at every
//! instant.
//!
//! Layout: under `j`, tenant, 0, the row's id (u64, big-endian; drawn from
//! the store's generator, never reused), a [`SealedNameRecord`] holding the
//! encoded [`JournalRecord`] sealed under the tenant's set key
//! (`crypto/journal.rs`): device ids are never stored in the clear.
//!
//! The record is **columnar** (round 6): every device id of the row in one
//! string, their byte lengths and each counter as packed integer columns, a
//! column left empty when it is zero for every device (a produce row has no
//! delivery counters, a delivery row no produce counters) and the day column
//! one value when the whole row is one day. Decoding a row of 100 devices
//! is then a handful of allocations, not one message and one `String` per
//! device. Rows of the earlier format (one `JournalEntry` message per
//! device, field 1) are still read: a data dir written before keeps folding
//! exactly.

use crate::crypto::{open_journal, seal_journal, TenantKeys};
use crate::metering::Usage;
use crate::storage::records::SealedNameRecord;
use crate::storage::{keys, StorageResult, Store, WriteSet};

/// One row's per-device usage, as encoded inside the sealed row.
#[derive(Clone, PartialEq, prost::Message)]
struct JournalRecord {
    /// The earlier format: one entry per device (read, no longer written).
    #[prost(message, repeated, tag = "1")]
    entries: Vec<JournalEntry>,
    /// Every device id of the row, one after the other.
    #[prost(string, tag = "2")]
    devices: String,
    /// The byte length of each device id in `devices`, in order.
    #[prost(uint32, repeated, tag = "3")]
    device_lens: Vec<u32>,
    /// Each device's billing day, or one day for all of them.
    #[prost(int64, repeated, tag = "4")]
    days: Vec<i64>,
    /// The counters, one value per device each; empty when all are zero.
    #[prost(uint64, repeated, tag = "5")]
    produced_units: Vec<u64>,
    #[prost(uint64, repeated, tag = "6")]
    delivered_units: Vec<u64>,
    #[prost(uint64, repeated, tag = "7")]
    redelivered_units: Vec<u64>,
    #[prost(uint64, repeated, tag = "8")]
    produced_messages: Vec<u64>,
    #[prost(uint64, repeated, tag = "9")]
    delivered_messages: Vec<u64>,
    #[prost(uint64, repeated, tag = "10")]
    storage_byte_ms: Vec<u64>,
}

/// One device's usage on one billing day (the earlier row format). The
/// counters are added with wrapping arithmetic, so a taken-back delivery is
/// stored as its two's complement (`UsageDelta::returned`).
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

/// One journal row read back and checked: its per-device usage, borrowed
/// from the decoded row by [`DeviceUsageRow::entries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceUsageRow {
    devices: String,
    /// Where each device id ends in `devices` (checked char boundaries).
    ends: Vec<usize>,
    days: Vec<i64>,
    columns: [Vec<u64>; 6],
}

impl DeviceUsageRow {
    /// The row's (billing day, device id, usage), in the order written.
    pub fn entries(&self) -> impl Iterator<Item = (i64, &str, Usage)> + '_ {
        let column = |c: &Vec<u64>, i: usize| c.get(i).copied().unwrap_or(0);
        (0..self.ends.len()).map(move |i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            let day = if self.days.len() == 1 {
                self.days[0]
            } else {
                self.days[i]
            };
            let [pu, du, ru, pm, dm, sb] = &self.columns;
            let usage = Usage {
                produced_units: column(pu, i),
                delivered_units: column(du, i),
                redelivered_units: column(ru, i),
                produced_messages: column(pm, i),
                delivered_messages: column(dm, i),
                storage_byte_ms: column(sb, i),
            };
            (day, &self.devices[start..self.ends[i]], usage)
        })
    }

    /// Checks a decoded record's columns against each other; `None` when
    /// they do not fit (a damaged row, kept by the caller).
    fn from_record(record: JournalRecord) -> Option<DeviceUsageRow> {
        if !record.entries.is_empty() {
            return Some(Self::from_entries(record.entries));
        }
        let n = record.device_lens.len();
        let mut ends = Vec::with_capacity(n);
        let mut end = 0usize;
        for len in &record.device_lens {
            end = end.checked_add(*len as usize)?;
            if !record.devices.is_char_boundary(end) || end > record.devices.len() {
                return None;
            }
            ends.push(end);
        }
        let columns = [
            record.produced_units,
            record.delivered_units,
            record.redelivered_units,
            record.produced_messages,
            record.delivered_messages,
            record.storage_byte_ms,
        ];
        let fits = end == record.devices.len()
            && (record.days.len() == n || (record.days.len() == 1 && n > 0))
            && columns.iter().all(|c| c.is_empty() || c.len() == n);
        fits.then_some(DeviceUsageRow {
            devices: record.devices,
            ends,
            days: record.days,
            columns,
        })
    }

    /// A row of the earlier format, in the columnar shape.
    fn from_entries(entries: Vec<JournalEntry>) -> DeviceUsageRow {
        let mut row = DeviceUsageRow {
            devices: String::new(),
            ends: Vec::with_capacity(entries.len()),
            days: Vec::with_capacity(entries.len()),
            columns: Default::default(),
        };
        for e in entries {
            row.devices.push_str(&e.device_id);
            row.ends.push(row.devices.len());
            row.days.push(e.day);
            let values = [
                e.produced_units,
                e.delivered_units,
                e.redelivered_units,
                e.produced_messages,
                e.delivered_messages,
                e.storage_byte_ms,
            ];
            for (column, value) in row.columns.iter_mut().zip(values) {
                column.push(value);
            }
        }
        row
    }
}

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

/// Encodes per-device usage as one columnar record (see the module doc).
fn encode_record<'a>(
    entries: impl IntoIterator<Item = (i64, &'a str, &'a Usage)>,
) -> JournalRecord {
    let entries = entries.into_iter();
    let n = entries.size_hint().0;
    let mut record = JournalRecord {
        device_lens: Vec::with_capacity(n),
        days: Vec::with_capacity(n),
        ..JournalRecord::default()
    };
    let mut columns: [Vec<u64>; 6] = std::array::from_fn(|_| Vec::with_capacity(n));
    for (day, device_id, u) in entries {
        record.devices.push_str(device_id);
        record.device_lens.push(device_id.len() as u32);
        record.days.push(day);
        let values = [
            u.produced_units,
            u.delivered_units,
            u.redelivered_units,
            u.produced_messages,
            u.delivered_messages,
            u.storage_byte_ms,
        ];
        for (column, value) in columns.iter_mut().zip(values) {
            column.push(value);
        }
    }
    if record.days.windows(2).all(|w| w[0] == w[1]) {
        record.days.truncate(1);
    }
    for column in &mut columns {
        if column.iter().all(|v| *v == 0) {
            column.clear();
        }
    }
    let [pu, du, ru, pm, dm, sb] = columns;
    record.produced_units = pu;
    record.delivered_units = du;
    record.redelivered_units = ru;
    record.produced_messages = pm;
    record.delivered_messages = dm;
    record.storage_byte_ms = sb;
    record
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
        let record = encode_record(entries);
        if record.device_lens.is_empty() {
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
    /// Up to `limit` journal rows of the owner of `keys`, by id, starting
    /// after row `after` (from the first when `None`): `Some` row, or `None`
    /// for a row that does not open or decode (damaged; the caller keeps it
    /// and says so, and reads on after it).
    pub fn device_journal(
        &self,
        keys: &TenantKeys,
        after: Option<u64>,
        limit: usize,
    ) -> StorageResult<Vec<(u64, Option<DeviceUsageRow>)>> {
        let prefix = tenant_prefix(keys.owner());
        let start = match after {
            None => prefix.clone(),
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(id) => journal_key(keys.owner(), id + 1),
        };
        let mut rows = Vec::new();
        for item in self
            .scan_from::<SealedNameRecord>(&prefix, &start)
            .take(limit)
        {
            let (key, row) = item?;
            let Some(id) = keys::u64_at(&key, prefix.len()) else {
                continue;
            };
            let entries = open_journal(keys, id, row.sealed)
                .ok()
                .and_then(|plain| <JournalRecord as prost::Message>::decode(&plain[..]).ok())
                .and_then(DeviceUsageRow::from_record);
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

    fn entries_of(row: &Option<DeviceUsageRow>) -> Vec<(i64, String, Usage)> {
        row.as_ref()
            .expect("the row opens")
            .entries()
            .map(|(day, device, usage)| (day, device.to_string(), usage))
            .collect()
    }

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

        let rows = store.device_journal(&acme, None, 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, 5);
        assert_eq!(
            entries_of(&rows[0].1),
            [
                (10, "imei-MARKER".to_string(), delivered),
                (11, "b".to_string(), returned)
            ]
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
        assert_eq!(
            store.device_journal(&impostor, None, 10).unwrap(),
            [(5, None)]
        );

        let mut writes = WriteSet::new();
        writes.delete_device_journal("acme", 5);
        store.commit(writes).await.unwrap();
        assert!(store.device_journal(&acme, None, 10).unwrap().is_empty());
        assert_eq!(store.device_journal_tenants().unwrap(), ["acmex"]);
        drop(store);
        committer.join();
    }

    #[tokio::test]
    async fn a_scan_resumes_after_the_last_row_read() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let acme = TenantKeys::derive("acme", &DataKey::generate());
        let one = Usage {
            produced_units: 1,
            produced_messages: 1,
            ..Usage::default()
        };
        let mut writes = WriteSet::new();
        for id in [3, 9, 10, u64::MAX] {
            writes.journal_device_usage(&acme, id, [(1, "d", &one)]);
        }
        store.commit(writes).await.unwrap();
        let ids = |after, limit| -> Vec<u64> {
            store
                .device_journal(&acme, after, limit)
                .unwrap()
                .into_iter()
                .map(|(id, _)| id)
                .collect()
        };
        assert_eq!(ids(None, 2), [3, 9]);
        assert_eq!(ids(Some(9), 2), [10, u64::MAX]);
        assert_eq!(ids(Some(4), 10), [9, 10, u64::MAX]);
        assert!(ids(Some(u64::MAX), 10).is_empty());
        drop(store);
        committer.join();
    }

    #[test]
    fn columns_that_are_zero_for_every_device_are_left_empty() {
        let produced = Usage {
            produced_units: 2,
            produced_messages: 1,
            ..Usage::default()
        };
        let record = encode_record([(7, "a", &produced), (7, "bé", &produced)]);
        assert_eq!(record.devices, "abé");
        assert_eq!(record.device_lens, [1, 3]);
        assert_eq!(record.days, [7]);
        assert!(record.delivered_units.is_empty() && record.storage_byte_ms.is_empty());
        let row = DeviceUsageRow::from_record(record).unwrap();
        let back: Vec<_> = row.entries().collect();
        assert_eq!(back, [(7, "a", produced), (7, "bé", produced)]);

        // Columns that do not fit each other are a damaged row.
        let mut bad = encode_record([(7, "a", &produced), (8, "b", &produced)]);
        bad.produced_units.pop();
        assert!(DeviceUsageRow::from_record(bad).is_none());
        let mut bad = encode_record([(7, "bé", &produced)]);
        bad.device_lens[0] = 2;
        bad.devices.push('x');
        assert!(DeviceUsageRow::from_record(bad).is_none());
    }

    /// A row written in the earlier format (one entry message per device,
    /// round 5) still opens with the same usage, so a data dir written
    /// before folds exactly.
    #[tokio::test]
    async fn rows_of_the_earlier_format_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let acme = TenantKeys::derive("acme", &DataKey::generate());
        let old = JournalRecord {
            entries: vec![
                JournalEntry {
                    day: 10,
                    device_id: "a".into(),
                    delivered_units: 3,
                    delivered_messages: 2,
                    redelivered_units: 1,
                    ..JournalEntry::default()
                },
                JournalEntry {
                    day: 11,
                    device_id: "b".into(),
                    delivered_units: 1u64.wrapping_neg(),
                    delivered_messages: 1u64.wrapping_neg(),
                    ..JournalEntry::default()
                },
            ],
            ..JournalRecord::default()
        };
        let sealed = seal_journal(&acme, 4, &prost::Message::encode_to_vec(&old));
        let mut writes = WriteSet::new();
        writes.put(journal_key("acme", 4), &SealedNameRecord { sealed });
        store.commit(writes).await.unwrap();
        let rows = store.device_journal(&acme, None, 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            entries_of(&rows[0].1),
            [
                (
                    10,
                    "a".to_string(),
                    Usage {
                        delivered_units: 3,
                        delivered_messages: 2,
                        redelivered_units: 1,
                        ..Usage::default()
                    }
                ),
                (
                    11,
                    "b".to_string(),
                    Usage {
                        delivered_units: 1u64.wrapping_neg(),
                        delivered_messages: 1u64.wrapping_neg(),
                        ..Usage::default()
                    }
                )
            ]
        );
        drop(store);
        committer.join();
    }
}
