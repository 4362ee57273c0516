//! The usage counters' key layout: by tenant, 0, day, dimension.

use crate::metering::Dimension;
use crate::storage::keys;

/// Positions in a usage [`CountersRecord`].
pub mod counter {
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

/// Prefix of all usage keys of a tenant.
pub fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut key = vec![keys::USAGE];
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key
}

/// Key of one usage counter.
pub fn usage_key(tenant: &str, day: i64, dimension: &Dimension) -> Vec<u8> {
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
pub fn parse_usage_key(tenant: &str, key: &[u8]) -> Option<(i64, Dimension)> {
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
}
