//! Usage counters: one [`CountersRecord`] per tenant, billing day and
//! [`Dimension`], under `U`, tenant, 0, day (u32, big-endian), then `T`
//! (total), `o` + topic name or `d` + the device id's keyed hash
//! ([`DeviceTag`], HMAC-SHA256 under a key derived from the tenant's data
//! key). The device id itself is stored only sealed, under `N`, tenant, 0,
//! tag (deterministically, so every batch writes the same bytes), so the
//! tenant's per-device usage still shows it while its key lives. Metering
//! hands over [`Usage`]; the key layout and the positions inside the record
//! stay here.
//!
//! Counters are only ever added to ([`WriteSet::add_usage`] journals an
//! increment, the committer folds it), so reads see what was committed before
//! the last [`Store::sync_counters`].

use crate::crypto::{DeviceTag, TenantKeys};
use crate::metering::{Dimension, Usage};
use crate::storage::records::{CountersRecord, SealedNameRecord};
use crate::storage::{keys, StorageResult, Store, WriteSet};

/// Associated-data name of a sealed device id.
const DEVICE_ID: &str = "usage.device_id";
/// What a device dimension reads as once its tenant's key is destroyed.
pub const ERASED_DEVICE: &str = "(erased)";

/// A usage dimension as stored: devices by their keyed hash.
enum StoredDimension<'a> {
    Total,
    Topic(&'a str),
    Device(&'a DeviceTag),
}

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
    /// Adds `usage` to the counter of `tenant` on billing `day` for the
    /// total or a topic, exactly and atomically with the rest of this set
    /// (see [`WriteSet::increment`]). A device's usage goes through
    /// [`WriteSet::add_device_usage`], which needs the tenant's keys; here it
    /// is dropped.
    pub fn add_usage(&mut self, tenant: &str, day: i64, dimension: &Dimension, usage: &Usage) {
        let stored = match dimension {
            Dimension::Total => StoredDimension::Total,
            Dimension::Topic(name) => StoredDimension::Topic(name),
            Dimension::Device(_) => return,
        };
        self.increment(usage_key(tenant, day, &stored), counter_deltas(usage));
    }

    /// Adds `usage` to the counter of device `device_id` of the owner of
    /// `keys` on billing `day`: keyed by the id's HMAC, the id stored sealed
    /// beside it.
    pub fn add_device_usage(
        &mut self,
        keys: &TenantKeys,
        day: i64,
        device_id: &str,
        usage: &Usage,
    ) {
        let tenant = keys.owner();
        let tag = keys.device_tag(device_id);
        let name = SealedNameRecord {
            sealed: keys.seal_field_deterministic(DEVICE_ID, device_id),
        };
        self.put(device_name_key(tenant, &tag), &name);
        let key = usage_key(tenant, day, &StoredDimension::Device(&tag));
        self.increment(key, counter_deltas(usage));
    }
}

impl Store {
    /// The usage counted for `tenant` on `day` in total or for a topic (zero
    /// when nothing was; devices are read with [`Store::usage_of`]). Call
    /// [`Store::sync_counters`] first to see every commit.
    pub fn usage_on(&self, tenant: &str, day: i64, dimension: &Dimension) -> StorageResult<Usage> {
        let stored = match dimension {
            Dimension::Total => StoredDimension::Total,
            Dimension::Topic(name) => StoredDimension::Topic(name),
            Dimension::Device(_) => return Ok(Usage::default()),
        };
        Ok(self
            .get::<CountersRecord>(&usage_key(tenant, day, &stored))?
            .map(|r| usage_of_record(&r))
            .unwrap_or_default())
    }

    /// Every usage counter of `tenant`: (day, dimension, usage), by day, then
    /// total, devices, topics (key order). Device ids are opened with the
    /// tenant's `keys`; without them (destroyed) a device reads as
    /// [`ERASED_DEVICE`]. Call [`Store::sync_counters`] first to see every
    /// commit.
    pub fn usage_of(
        &self,
        tenant: &str,
        keys: Option<&TenantKeys>,
    ) -> StorageResult<Vec<(i64, Dimension, Usage)>> {
        let mut counters = Vec::new();
        for item in self.scan::<CountersRecord>(&tenant_prefix(tenant)) {
            let (key, record) = item?;
            let Some((day, parsed)) = parse_usage_key(tenant, &key) else {
                continue;
            };
            let dimension = match parsed {
                Parsed::Total => Dimension::Total,
                Parsed::Topic(name) => Dimension::Topic(name),
                Parsed::Device(tag) => Dimension::Device(self.device_name(tenant, keys, &tag)?),
            };
            counters.push((day, dimension, usage_of_record(&record)));
        }
        Ok(counters)
    }

    /// A device id back from its sealed row, or [`ERASED_DEVICE`].
    fn device_name(
        &self,
        tenant: &str,
        keys: Option<&TenantKeys>,
        tag: &DeviceTag,
    ) -> StorageResult<String> {
        let (Some(keys), Some(row)) = (
            keys,
            self.get::<SealedNameRecord>(&device_name_key(tenant, tag))?,
        ) else {
            return Ok(ERASED_DEVICE.to_string());
        };
        Ok(keys
            .open_field(DEVICE_ID, &row.sealed)
            .unwrap_or_else(|_| ERASED_DEVICE.to_string()))
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
fn usage_key(tenant: &str, day: i64, dimension: &StoredDimension) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    key.extend_from_slice(&(day as u32).to_be_bytes());
    match dimension {
        StoredDimension::Total => key.push(b'T'),
        StoredDimension::Topic(name) => {
            key.push(b'o');
            key.extend_from_slice(name.as_bytes());
        }
        StoredDimension::Device(tag) => {
            key.push(b'd');
            key.extend_from_slice(&tag.0);
        }
    }
    key
}

/// Key of a device id's sealed row.
fn device_name_key(tenant: &str, tag: &DeviceTag) -> Vec<u8> {
    let mut key = vec![keys::DEVICE_NAME];
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key.extend_from_slice(&tag.0);
    key
}

/// A usage key's dimension as parsed.
#[derive(Debug, PartialEq)]
enum Parsed {
    Total,
    Topic(String),
    Device(DeviceTag),
}

/// Reads back (day, dimension) from a usage key of `tenant`.
fn parse_usage_key(tenant: &str, key: &[u8]) -> Option<(i64, Parsed)> {
    let rest = key.get(tenant_prefix(tenant).len()..)?;
    let day = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as i64;
    let name = rest.get(5..)?;
    let dimension = match rest.get(4)? {
        b'T' => Parsed::Total,
        b'o' => Parsed::Topic(String::from_utf8(name.to_vec()).ok()?),
        b'd' => Parsed::Device(DeviceTag(name.to_vec())),
        _ => return None,
    };
    Some((day, dimension))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_keys_round_trip() {
        let tag = DeviceTag(vec![1, 2, 3]);
        let key = usage_key("acme", 20_000, &StoredDimension::Device(&tag));
        assert_eq!(
            parse_usage_key("acme", &key),
            Some((20_000, Parsed::Device(tag)))
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
            usage_key("acme", 20_000, &StoredDimension::Topic("telemetry")),
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
        let keys = TenantKeys::derive("acme", &crate::crypto::DataKey::generate());
        let produced = Usage {
            produced_units: 2,
            produced_messages: 1,
            ..Usage::default()
        };
        let mut writes = WriteSet::new();
        writes.add_usage("acme", 10, &Dimension::Total, &produced);
        writes.add_device_usage(&keys, 10, "imei-MARKER", &produced);
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
            store.usage_of("acme", Some(&keys)).unwrap(),
            [
                (10, Dimension::Total, produced),
                (10, Dimension::Device("imei-MARKER".into()), produced),
                (11, Dimension::Total, twice),
            ]
        );
        // The id is in no key and no value; without the key it reads as erased.
        let mut rows = 0;
        for item in store.tree.iter() {
            let (key, value) = item.unwrap();
            rows += 1;
            for bytes in [&key[..], &value[..]] {
                assert!(!bytes.windows(11).any(|w| w == b"imei-MARKER"));
            }
        }
        assert!(rows > 3);
        assert_eq!(
            store.usage_of("acme", None).unwrap()[1].1,
            Dimension::Device(ERASED_DEVICE.into())
        );
        drop(store);
        committer.join();
    }
}
