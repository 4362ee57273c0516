//! Metering: what a message event costs in units, which billing day it falls
//! on, and the usage counters written *in the same atomic write* as the data
//! they count (a stored batch, a recorded delivery).
//!
//! A unit is `max(1, ceil(bytes / 1024))`, where bytes is the message's
//! counted size (payload + headers + device_id + dedup_id). Usage is kept per
//! tenant and billing day, in total and broken down per topic and per device.
//!
//! Metering knows what is counted, not how it is stored: [`UsageDelta::write`]
//! hands each [`Usage`] to [`WriteSet::add_usage`], and billing and export
//! read them back with [`Store::usage_on`](crate::storage::Store::usage_on) /
//! [`Store::usage_of`](crate::storage::Store::usage_of) (the key layout and
//! the counter record are in `storage/repo/usage.rs`).

use chrono::{Datelike, NaiveDate};

use crate::crypto::TenantKeys;
use crate::storage::WriteSet;

/// Billing units of one message event of `bytes` counted bytes.
pub fn units_for_bytes(bytes: u64) -> u64 {
    bytes.div_ceil(1024).max(1)
}

const DAY_MS: i64 = 86_400_000;

/// Which billing day an instant falls on: days since 1970-01-01 in the
/// configured UTC offset (the daily cut-off is 00:00 there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    offset_ms: i64,
}

impl Calendar {
    /// A calendar whose days start at 00:00 at `utc_offset_minutes`.
    pub fn new(utc_offset_minutes: i32) -> Self {
        Calendar {
            offset_ms: utc_offset_minutes as i64 * 60_000,
        }
    }

    /// The billing day of a Unix ms.
    pub fn day_of(&self, unix_ms: i64) -> i64 {
        (unix_ms + self.offset_ms).div_euclid(DAY_MS)
    }

    /// The Unix ms at which `day` begins.
    pub fn day_start_ms(&self, day: i64) -> i64 {
        day * DAY_MS - self.offset_ms
    }

    /// The calendar date of a day.
    pub fn date(&self, day: i64) -> NaiveDate {
        NaiveDate::from_num_days_from_ce_opt(719_163 + day as i32).unwrap_or(NaiveDate::MIN)
    }

    /// "YYYY-MM-DD" of a day.
    pub fn day_name(&self, day: i64) -> String {
        self.date(day).format("%Y-%m-%d").to_string()
    }

    /// Parses "YYYY-MM-DD" into a day: exactly that shape (chrono alone also
    /// takes `26-1-5` or `+2026-01-05`), then a real date.
    pub fn parse_day(&self, text: &str) -> Option<i64> {
        if !has_shape(text, "dddd-dd-dd") {
            return None;
        }
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        Some(date.num_days_from_ce() as i64 - 719_163)
    }

    /// (year, month) of a day.
    pub fn month_of(&self, day: i64) -> (i32, u32) {
        let date = self.date(day);
        (date.year(), date.month())
    }

    /// The first day of the month `(year, month)`, and the first of the next.
    pub fn month_days(&self, year: i32, month: u32) -> Option<(i64, i64)> {
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let next = if month == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(year, month + 1, 1)?
        };
        Some((
            first.num_days_from_ce() as i64 - 719_163,
            next.num_days_from_ce() as i64 - 719_163,
        ))
    }
}

/// One usage counter set, read back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Units of stored messages.
    pub produced_units: u64,
    /// Units of deliveries.
    pub delivered_units: u64,
    /// Units of redeliveries.
    pub redelivered_units: u64,
    /// Stored messages.
    pub produced_messages: u64,
    /// Deliveries.
    pub delivered_messages: u64,
    /// Byte-milliseconds of retained storage.
    pub storage_byte_ms: u64,
}

impl Usage {
    /// message_units: produced + delivered.
    pub fn message_units(&self) -> u64 {
        self.produced_units + self.delivered_units
    }

    /// Adds another usage.
    pub fn add(&mut self, other: &Usage) {
        self.produced_units += other.produced_units;
        self.delivered_units += other.delivered_units;
        self.redelivered_units += other.redelivered_units;
        self.produced_messages += other.produced_messages;
        self.delivered_messages += other.delivered_messages;
        self.storage_byte_ms += other.storage_byte_ms;
    }
}

/// True when `text` is `shape` with each `d` an ASCII digit.
fn has_shape(text: &str, shape: &str) -> bool {
    text.len() == shape.len()
        && text.bytes().zip(shape.bytes()).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            _ => c == s,
        })
}

/// Parses a month argument, exactly "YYYY-MM" (`2026-01`; not `26-01`,
/// `2026-1` or `+2026-01`), into (year, month); INVALID_ARGUMENT otherwise.
pub fn parse_month(text: &str) -> crate::error::Result<(i32, u32)> {
    let invalid =
        || crate::error::Error::invalid(format!("month '{text}' is not YYYY-MM (e.g. 2026-01)"));
    if !has_shape(text, "dddd-dd") {
        return Err(invalid());
    }
    let date =
        NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").map_err(|_| invalid())?;
    Ok((date.year(), date.month()))
}

/// Which slice of a tenant-day a usage counter covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// The tenant's whole day.
    Total,
    /// One topic.
    Topic(String),
    /// One device id.
    Device(String),
}

impl Dimension {
    /// The topic of a per-topic slice.
    pub fn topic(&self) -> Option<&str> {
        match self {
            Dimension::Topic(t) => Some(t),
            Dimension::Total | Dimension::Device(_) => None,
        }
    }
}

/// When a topic existed, for the topic-days meter: written when the topic is
/// created and again when it is deleted, and kept afterwards, so a day still
/// counts a topic that existed at any moment of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicLife {
    /// The topic's name.
    pub name: String,
    /// Creation time, Unix ms.
    pub created_ms: i64,
    /// Deletion time, Unix ms; 0 while it exists.
    pub deleted_ms: i64,
}

/// Collects the usage one write causes, then adds it to that write. Looks up
/// before inserting so a batch allocates one key per distinct topic or device,
/// not one per message.
#[derive(Debug, Default)]
pub struct UsageDelta {
    total: Usage,
    topics: std::collections::BTreeMap<String, Usage>,
    devices: DeviceMap,
    touched: bool,
}

/// Usage per device id: hashed with foldhash (a pass or set of 100 devices
/// looks up once per message; sorting them by id first cost ~600
/// instructions per delivered message under callgrind).
type DeviceMap = std::collections::HashMap<String, Usage, foldhash::fast::RandomState>;

/// Applies `f` to the usage of `device_id` in `devices`, added if new (one
/// lookup per call, one key allocated per distinct device).
fn with_device(devices: &mut DeviceMap, device_id: &str, f: impl FnOnce(&mut Usage)) {
    match devices.get_mut(device_id) {
        Some(usage) => f(usage),
        None => f(devices.entry(device_id.to_string()).or_default()),
    }
}

fn slot<'a>(map: &'a mut std::collections::BTreeMap<String, Usage>, name: &str) -> &'a mut Usage {
    if !map.contains_key(name) {
        map.insert(name.to_string(), Usage::default());
    }
    map.get_mut(name).expect("inserted above")
}

/// False only in the `bench-unmetered` measurement build, which records no usage.
pub const METERING_ON: bool = !cfg!(feature = "bench-unmetered");

impl UsageDelta {
    /// Records a stored message of `units` on `topic` from `device_id`.
    pub fn produced(&mut self, topic: &str, device_id: &str, units: u64) {
        self.add(topic, device_id, |u| {
            u.produced_units += units;
            u.produced_messages += 1;
        });
    }

    /// Records a produced set's stored messages on `topic`: (device id,
    /// units) each, as [`UsageDelta::produced`] would one by one, but the
    /// total and topic touched once for the set (one device lookup per
    /// message, one allocation per distinct device).
    pub fn produced_all<'a>(
        &mut self,
        topic: &str,
        messages: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        if !METERING_ON {
            return;
        }
        let mut set = Usage::default();
        for (device_id, units) in messages {
            set.produced_units += units;
            set.produced_messages += 1;
            if !device_id.is_empty() {
                with_device(&mut self.devices, device_id, |usage| {
                    usage.produced_units += units;
                    usage.produced_messages += 1;
                });
            }
        }
        if set.produced_messages == 0 {
            return;
        }
        self.touched = true;
        self.total.add(&set);
        slot(&mut self.topics, topic).add(&set);
    }

    /// Records a delivery of `units` (attempt > 1 is a redelivery).
    pub fn delivered(&mut self, topic: &str, device_id: &str, units: u64, attempt: u32) {
        self.add(topic, device_id, |u| {
            u.delivered_units += units;
            u.delivered_messages += 1;
            if attempt > 1 {
                u.redelivered_units += units;
            }
        });
    }

    /// Records a delivery pass's deliveries on `topic`: (device id, units,
    /// attempt) each, as [`UsageDelta::delivered`] would one by one, but the
    /// total and topic touched once for the pass (one device lookup per
    /// message, one allocation per distinct device).
    pub fn delivered_all<'a>(
        &mut self,
        topic: &str,
        deliveries: impl IntoIterator<Item = (&'a str, u64, u32)>,
    ) {
        if !METERING_ON {
            return;
        }
        fn add(u: &mut Usage, units: u64, attempt: u32) {
            u.delivered_units += units;
            u.delivered_messages += 1;
            if attempt > 1 {
                u.redelivered_units += units;
            }
        }
        let mut pass = Usage::default();
        for (device_id, units, attempt) in deliveries {
            add(&mut pass, units, attempt);
            if !device_id.is_empty() {
                with_device(&mut self.devices, device_id, |u| add(u, units, attempt));
            }
        }
        if pass.delivered_messages == 0 {
            return;
        }
        self.touched = true;
        self.total.add(&pass);
        slot(&mut self.topics, topic).add(&pass);
    }

    /// Takes back a delivery of `units` that was billed but never reached
    /// the client (see `broker::delivery::unsent`). The counters add with
    /// wrapping arithmetic, so this subtracts exactly; it always follows the
    /// commit that billed the delivery, so no counter goes below zero.
    pub fn returned(&mut self, topic: &str, device_id: &str, units: u64, attempt: u32) {
        self.add(topic, device_id, |u| {
            u.delivered_units = u.delivered_units.wrapping_sub(units);
            u.delivered_messages = u.delivered_messages.wrapping_sub(1);
            if attempt > 1 {
                u.redelivered_units = u.redelivered_units.wrapping_sub(units);
            }
        });
    }

    /// Records retained storage of a topic over a span.
    pub fn stored(&mut self, topic: &str, byte_ms: u64) {
        self.add(topic, "", |u| u.storage_byte_ms += byte_ms);
    }

    fn add(&mut self, topic: &str, device_id: &str, f: impl Fn(&mut Usage)) {
        if !METERING_ON {
            return;
        }
        self.touched = true;
        f(&mut self.total);
        f(slot(&mut self.topics, topic));
        if !device_id.is_empty() {
            with_device(&mut self.devices, device_id, f);
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        !self.touched
    }

    /// Adds the increments to `writes` for the owner of `keys` on `day`;
    /// devices are keyed by their HMAC under `keys`, their ids sealed.
    pub fn write(self, keys: &TenantKeys, day: i64, writes: &mut WriteSet) {
        let devices = self.write_totals(keys.owner(), day, writes);
        for (device, usage) in devices {
            writes.add_device_usage(keys, day, &device, &usage);
        }
    }

    /// True when some of the usage is broken down per device.
    pub fn has_devices(&self) -> bool {
        !self.devices.is_empty()
    }

    /// Like [`UsageDelta::write`], but the per-device breakdown goes into
    /// **one** journal row `journal_id` (a fresh
    /// [`Store::generate_id`](crate::storage::Store::generate_id)) instead of
    /// a counter and a sealed name row per device: the hot paths write one
    /// row per pass, and a fold adds it to the device counters later
    /// (`broker/delivery/device_journal.rs`).
    pub fn write_journaled(
        self,
        keys: &TenantKeys,
        day: i64,
        journal_id: u64,
        writes: &mut WriteSet,
    ) {
        let devices = self.write_totals(keys.owner(), day, writes);
        writes.journal_device_usage(
            keys,
            journal_id,
            devices
                .iter()
                .map(|(device, usage)| (day, device.as_str(), usage)),
        );
    }

    /// Adds the total and per-topic increments to `writes` for `tenant` on
    /// `day`, without any per-device breakdown (for usage that has none, such
    /// as retained storage).
    pub fn write_without_devices(self, tenant: &str, day: i64, writes: &mut WriteSet) {
        self.write_totals(tenant, day, writes);
    }

    fn write_totals(self, tenant: &str, day: i64, writes: &mut WriteSet) -> DeviceMap {
        if !self.touched {
            return Default::default();
        }
        writes.add_usage(tenant, day, &Dimension::Total, &self.total);
        for (topic, usage) in self.topics {
            writes.add_usage(tenant, day, &Dimension::Topic(topic), &usage);
        }
        self.devices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_the_published_rule() {
        assert_eq!(units_for_bytes(0), 1);
        assert_eq!(units_for_bytes(512), 1);
        assert_eq!(units_for_bytes(1024), 1);
        assert_eq!(units_for_bytes(1025), 2);
        // A 1.5 KiB message produced and consumed once: 2 + 2 = 4 units.
        assert_eq!(2 * units_for_bytes(1536), 4);
        // A 0.5 KiB message produced once and consumed twice: 3 units.
        assert_eq!(3 * units_for_bytes(512), 3);
    }

    #[test]
    fn a_pass_meters_as_its_deliveries_one_by_one() {
        let deliveries = [
            ("b", 2, 1),
            ("", 1, 1),
            ("a", 1, 3),
            ("b", 3, 2),
            ("a", 1, 1),
            ("", 4, 2),
        ];
        let mut pass = UsageDelta::default();
        pass.delivered_all("t", deliveries);
        let mut one_by_one = UsageDelta::default();
        for (device, units, attempt) in deliveries {
            one_by_one.delivered("t", device, units, attempt);
        }
        assert_eq!(pass.total, one_by_one.total);
        assert_eq!(pass.topics, one_by_one.topics);
        assert_eq!(pass.devices, one_by_one.devices);
        assert_eq!(pass.total.redelivered_units, 3 + 1 + 4);
        assert_eq!(pass.devices.len(), 2);
        // Into a delta that already holds devices: added to them.
        pass.delivered_all("t", [("a", 5, 1), ("c", 1, 1)]);
        one_by_one.delivered("t", "a", 5, 1);
        one_by_one.delivered("t", "c", 1, 1);
        assert_eq!(pass.devices, one_by_one.devices);
        assert_eq!(pass.total, one_by_one.total);
    }

    #[test]
    fn a_set_meters_as_its_messages_one_by_one() {
        let messages = [("b", 2), ("", 1), ("a", 1), ("b", 3), ("a", 1)];
        let mut set = UsageDelta::default();
        set.produced_all("t", messages);
        let mut one_by_one = UsageDelta::default();
        for (device, units) in messages {
            one_by_one.produced("t", device, units);
        }
        assert_eq!(set.total, one_by_one.total);
        assert_eq!(set.topics, one_by_one.topics);
        assert_eq!(set.devices, one_by_one.devices);
        assert_eq!(set.devices["b"].produced_units, 5);
        assert_eq!(set.total.produced_messages, 5);
        set.produced_all("t", [("a", 4), ("c", 1)]);
        one_by_one.produced("t", "a", 4);
        one_by_one.produced("t", "c", 1);
        assert_eq!(set.devices, one_by_one.devices);
    }

    #[test]
    fn days_follow_the_utc_offset() {
        let utc = Calendar::new(0);
        let day = utc.parse_day("2026-11-24").unwrap();
        assert_eq!(utc.day_name(day), "2026-11-24");
        let start = utc.day_start_ms(day);
        assert_eq!(utc.day_of(start), day);
        assert_eq!(utc.day_of(start - 1), day - 1);
        // At UTC+8 the day begins 8 hours earlier.
        let beijing = Calendar::new(480);
        assert_eq!(beijing.day_start_ms(day), start - 8 * 3_600_000);
        assert_eq!(beijing.day_of(start - 8 * 3_600_000), day);
        assert_eq!(utc.month_of(day), (2026, 11));
        let (first, next) = utc.month_days(2026, 12).unwrap();
        assert_eq!(utc.day_name(first), "2026-12-01");
        assert_eq!(utc.day_name(next), "2027-01-01");
    }

    #[test]
    fn months_and_days_are_parsed_strictly() {
        assert_eq!(parse_month("2026-01").unwrap(), (2026, 1));
        assert_eq!(parse_month("2026-12").unwrap(), (2026, 12));
        for bad in [
            "26-01",
            "2026-1",
            "+2026-01",
            "2026-13",
            "2026-00",
            "2026-01 ",
            "２０２６-01",
            "",
        ] {
            assert!(parse_month(bad).is_err(), "{bad:?}");
        }
        let calendar = Calendar::new(0);
        assert!(calendar.parse_day("2026-01-05").is_some());
        for bad in ["2026-1-05", "26-01-05", "+2026-01-05", "2026-02-30"] {
            assert!(calendar.parse_day(bad).is_none(), "{bad:?}");
        }
    }
}
