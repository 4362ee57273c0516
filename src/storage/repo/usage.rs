//! Usage counters: one [`CountersRecord`] per tenant, billing day and
//! [`Dimension`], under `U`, tenant, 0, day (u32, big-endian), then `T`
//! (total), `o` + topic name or `d` + device id. Metering hands over
//! [`Usage`]; the key layout and the positions inside the record stay here.
//!
//! Counters are only ever added to ([`WriteSet::add_usage`] journals an
//! increment, the committer folds it), so reads see what was committed before
//! the last [`Store::sync_counters`].

use crate::metering::{Dimension, Usage};
use crate::storage::records::CountersRecord;
use crate::storage::{keys, StorageResult, Store, WriteSet};

/// Positions in a usage [`CountersRecord`]. Stored: never renumber.
mod counter {
    /// Units of stored messages.
    pub const PRODUCED_UNITS: usize = 0;
    /// Units of every delivery (redeliveries included).
    pub const DELIVERED_UNITS: usize = 1;
    /// Units of redeliveries (attempt > 1), a part of delivered.
    pub const REDELIVERED_UNITS: usize = 2;
    /// Stored messages.
    pub const PRODUCED_MESSAGES: usize = 3;
    /// Deliveries.
    pub const DELIVERED_MESSAGES: usize = 4;
    /// Retained bytes integrated over time, in byte-milliseconds.
    pub const STORAGE_BYTE_MS: usize = 5;
    /// How many positions there are.
    pub const LEN: usize = 6;
}

impl WriteSet {
    /// Adds `usage` to the counter of `tenant` on billing `day` for
    /// `dimension`, exactly and atomically with the rest of this set (see
    /// [`WriteSet::increment`]).
    pub fn add_usage(&mut self, tenant: &str, day: i64, dimension: &Dimension, usage: &Usage) {
        self.increment(usage_key(tenant, day, dimension), counter_deltas(usage));
    }
}

impl Store {
    /// The usage counted for `tenant` on `day` for `dimension` (zero when
    /// nothing was). Call [`Store::sync_counters`] first to see every commit.
    pub fn usage_on(&self, tenant: &str, day: i64, dimension: &Dimension) -> StorageResult<Usage> {
        Ok(self
            .get::<CountersRecord>(&usage_key(tenant, day, dimension))?
            .map(|r| usage_of_record(&r))
            .unwrap_or_default())
    }

    /// Every usage counter of `tenant`: (day, dimension, usage), by day, then
    /// total, devices, topics (key order). Call [`Store::sync_counters`] first to see
    /// every commit.
    pub fn usage_of(&self, tenant: &str) -> StorageResult<Vec<(i64, Dimension, Usage)>> {
        let mut counters = Vec::new();
        for item in self.scan::<CountersRecord>(&tenant_prefix(tenant)) {
            let (key, record) = item?;
            if let Some((day, dimension)) = parse_usage_key(tenant, &key) {
                counters.push((day, dimension, usage_of_record(&record)));
            }
        }
        Ok(counters)
    }
}

/// A stored counter record as [`Usage`]; missing positions are zero.
fn usage_of_record(record: &CountersRecord) -> Usage {
    let v = |i: usize| record.values.get(i).copied().unwrap_or(0);
    Usage {
        produced_units: v(counter::PRODUCED_UNITS),
        delivered_units: v(counter::DELIVERED_UNITS),
        redelivered_units: v(counter::REDELIVERED_UNITS),
        produced_messages: v(counter::PRODUCED_MESSAGES),
        delivered_messages: v(counter::DELIVERED_MESSAGES),
        storage_byte_ms: v(counter::STORAGE_BYTE_MS),
    }
}

/// [`Usage`] as the increments of a counter record, by position.
fn counter_deltas(usage: &Usage) -> Vec<u64> {
    let mut d = vec![0; counter::LEN];
    d[counter::PRODUCED_UNITS] = usage.produced_units;
    d[counter::DELIVERED_UNITS] = usage.delivered_units;
    d[counter::REDELIVERED_UNITS] = usage.redelivered_units;
    d[counter::PRODUCED_MESSAGES] = usage.produced_messages;
    d[counter::DELIVERED_MESSAGES] = usage.delivered_messages;
    d[counter::STORAGE_BYTE_MS] = usage.storage_byte_ms;
    d
}

/// Prefix of all usage keys of a tenant.
fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut key = vec![keys::USAGE];
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key
}

/// Key of one usage counter.
fn usage_key(tenant: &str, day: i64, dimension: &Dimension) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    key.extend_from_slice(&(day as u32).to_be_bytes());
    match dimension {
        Dimension::Total => key.push(b'T'),
        Dimension::Topic(name) => {
            key.push(b'o');
            key.extend_from_slice(name.as_bytes());
        }
        Dimension::Device(id) => {
            key.push(b'd');
            key.extend_from_slice(id.as_bytes());
        }
    }
    key
}

/// Reads back (day, dimension) from a usage key of `tenant`.
fn parse_usage_key(tenant: &str, key: &[u8]) -> Option<(i64, Dimension)> {
    let rest = key.get(tenant_prefix(tenant).len()..)?;
    let day = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as i64;
    let name = String::from_utf8(rest.get(5..)?.to_vec()).ok()?;
    let dimension = match rest.get(4)? {
        b'T' => Dimension::Total,
        b'o' => Dimension::Topic(name),
        b'd' => Dimension::Device(name),
        _ => return None,
    };
    Some((day, dimension))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_keys_round_trip() {
        let key = usage_key("acme", 20_000, &Dimension::Device("imei".into()));
        assert_eq!(
            parse_usage_key("acme", &key),
            Some((20_000, Dimension::Device("imei".into())))
        );
    }

    #[test]
    fn usage_keys_keep_their_stored_layout() {
        // Stored since before the repositories: a changed layout would lose
        // every counter already on disk.
        let mut expected = b"Uacme\0".to_vec();
        expected.extend_from_slice(&20_000u32.to_be_bytes());
        expected.extend_from_slice(b"otelemetry");
        assert_eq!(
            usage_key("acme", 20_000, &Dimension::Topic("telemetry".into())),
            expected
        );
    }

    #[test]
    fn usage_round_trips_through_its_counter_record() {
        let usage = Usage {
            produced_units: 1,
            delivered_units: 2,
            redelivered_units: 3,
            produced_messages: 4,
            delivered_messages: 5,
            storage_byte_ms: 6,
        };
        let record = CountersRecord {
            values: counter_deltas(&usage),
        };
        assert_eq!(record.values, [1, 2, 3, 4, 5, 6]);
        assert_eq!(usage_of_record(&record), usage);
        assert_eq!(
            usage_of_record(&CountersRecord { values: vec![7] }),
            Usage {
                produced_units: 7,
                ..Usage::default()
            }
        );
    }

    #[tokio::test]
    async fn added_usage_is_read_back_by_day_and_dimension() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let produced = Usage {
            produced_units: 2,
            produced_messages: 1,
            ..Usage::default()
        };
        let mut writes = WriteSet::new();
        writes.add_usage("acme", 10, &Dimension::Total, &produced);
        writes.add_usage("acme", 10, &Dimension::Device("imei".into()), &produced);
        writes.add_usage("acme", 11, &Dimension::Total, &produced);
        writes.add_usage("acme", 11, &Dimension::Total, &produced);
        writes.add_usage("acmex", 10, &Dimension::Total, &produced);
        store.commit(writes).await.unwrap();
        store.sync_counters().await.unwrap();

        let mut twice = produced;
        twice.add(&produced);
        assert_eq!(
            store.usage_on("acme", 11, &Dimension::Total).unwrap(),
            twice
        );
        assert_eq!(
            store.usage_on("acme", 12, &Dimension::Total).unwrap(),
            Usage::default()
        );
        assert_eq!(
            store.usage_of("acme").unwrap(),
            [
                (10, Dimension::Total, produced),
                (10, Dimension::Device("imei".into()), produced),
                (11, Dimension::Total, twice),
            ]
        );
        drop(store);
        committer.join();
    }
}
