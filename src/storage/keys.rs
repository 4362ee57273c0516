//! The key layout of the one sled tree that holds everything. One tree means
//! one `sled::Batch` can commit a message, the counters it moves and (later)
//! the usage it causes atomically. Each keyspace starts with its own byte;
//! integers are big-endian so key order is numeric order.

/// Tenant record, by tenant id.
pub const TENANT: u8 = b't';
/// API key record, by key id.
pub const API_KEY: u8 = b'k';
/// Topic record, by tenant id, 0, topic name.
pub const TOPIC: u8 = b'o';
/// Topic log counters, by topic id.
pub const TOPIC_STATE: u8 = b'T';
/// Message set header (summary and segment reference), by topic id and first
/// offset. (`M` held whole message sets before they moved to segment files.)
pub const SET_HEADER: u8 = b'H';
/// Dedup index, by topic id and dedup_id.
pub const DEDUP: u8 = b'D';
/// Subscription record, by topic id and name.
pub const SUBSCRIPTION: u8 = b's';
/// Subscription cursor, by subscription id.
pub const CURSOR: u8 = b'C';
/// Pending (in-flight) message of a subscription kept on its own (redelivered
/// or nacked), by subscription id and offset.
pub const PENDING: u8 = b'P';
/// A run of first deliveries of a subscription, by subscription id and first offset.
pub const PENDING_RUN: u8 = b'R';
/// Device binding, by the device id's HMAC.
pub const DEVICE: u8 = b'V';
/// Audit log entry, by sequence number.
pub const AUDIT: u8 = b'A';
/// Usage counters, by tenant, 0, day, dimension (layout in `repo/usage.rs`).
pub const USAGE: u8 = b'U';
/// Topic lifecycle (for topic-days), by tenant, 0, topic id.
pub const TOPIC_LIFE: u8 = b'L';
/// Settlement progress, by tenant.
pub const SETTLED: u8 = b'S';
/// Ledger entry, by global sequence.
pub const LEDGER: u8 = b'G';
/// Ledger idempotency index, by idempotency key.
pub const LEDGER_KEY: u8 = b'I';
/// Counter journal entry, by sequence (see the committer).
pub const COUNTER_JOURNAL: u8 = b'J';
/// Singleton records (the manual clock).
pub const META: u8 = b'x';
/// A tenant's data key, wrapped by the master key, by tenant id.
pub const DATA_KEY: u8 = b'W';
/// A device id sealed under its tenant's key, by tenant, 0, the id's HMAC
/// (layout in `repo/usage.rs`).
pub const DEVICE_NAME: u8 = b'N';
/// A topic's per-device metered-through offset, by topic id (`repo/device_fold.rs`).
pub const DEVICE_METERED_THROUGH: u8 = b'm';
/// A set that bills no produced units, by topic id and first offset (`repo/device_fold.rs`).
pub const UNBILLED_SET: u8 = b'b';
/// A delivery pass's per-device usage, not yet folded into the device
/// counters, by tenant, 0, record id (`repo/device_journal.rs`).
pub const DEVICE_USAGE_JOURNAL: u8 = b'j';

fn with_prefix(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut key = Vec::with_capacity(len);
    key.push(prefix);
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

/// Key of a tenant record.
pub fn tenant(id: &str) -> Vec<u8> {
    with_prefix(TENANT, &[id.as_bytes()])
}

/// Key of an API key record.
pub fn api_key(id: &str) -> Vec<u8> {
    with_prefix(API_KEY, &[id.as_bytes()])
}

/// Key of a topic record.
pub fn topic(tenant: &str, name: &str) -> Vec<u8> {
    with_prefix(TOPIC, &[tenant.as_bytes(), &[0], name.as_bytes()])
}

/// Key of a topic's counters.
pub fn topic_state(topic_id: u64) -> Vec<u8> {
    with_prefix(TOPIC_STATE, &[&topic_id.to_be_bytes()])
}

/// Key of a message set's summary.
pub fn set_header(topic_id: u64, first_offset: u64) -> Vec<u8> {
    with_prefix(
        SET_HEADER,
        &[&topic_id.to_be_bytes(), &first_offset.to_be_bytes()],
    )
}

/// Key of a dedup entry (by the dedup id's keyed hash).
pub fn dedup(topic_id: u64, tag: &[u8]) -> Vec<u8> {
    with_prefix(DEDUP, &[&topic_id.to_be_bytes(), tag])
}

/// Key of a subscription record.
pub fn subscription(topic_id: u64, name: &str) -> Vec<u8> {
    with_prefix(SUBSCRIPTION, &[&topic_id.to_be_bytes(), name.as_bytes()])
}

/// Key of a subscription cursor.
pub fn cursor(sub_id: u64) -> Vec<u8> {
    with_prefix(CURSOR, &[&sub_id.to_be_bytes()])
}

/// Key of a pending message of a subscription.
pub fn pending(sub_id: u64, offset: u64) -> Vec<u8> {
    with_prefix(PENDING, &[&sub_id.to_be_bytes(), &offset.to_be_bytes()])
}

/// Key of a run of first deliveries of a subscription.
pub fn pending_run(sub_id: u64, first_offset: u64) -> Vec<u8> {
    with_prefix(
        PENDING_RUN,
        &[&sub_id.to_be_bytes(), &first_offset.to_be_bytes()],
    )
}

/// Key of a device binding (by the device id's HMAC under the server key).
pub fn device(tag: &[u8]) -> Vec<u8> {
    with_prefix(DEVICE, &[tag])
}

/// Key of an audit entry.
pub fn audit(seq: u64) -> Vec<u8> {
    with_prefix(AUDIT, &[&seq.to_be_bytes()])
}

/// Key of a topic's lifecycle record.
pub fn topic_life(tenant: &str, topic_id: u64) -> Vec<u8> {
    with_prefix(
        TOPIC_LIFE,
        &[tenant.as_bytes(), &[0], &topic_id.to_be_bytes()],
    )
}

/// Prefix of a tenant's topic lifecycle records.
pub fn topic_life_prefix(tenant: &str) -> Vec<u8> {
    with_prefix(TOPIC_LIFE, &[tenant.as_bytes(), &[0]])
}

/// Key of a tenant's settlement progress.
pub fn settled(tenant: &str) -> Vec<u8> {
    with_prefix(SETTLED, &[tenant.as_bytes()])
}

/// Key of a ledger entry.
pub fn ledger(seq: u64) -> Vec<u8> {
    with_prefix(LEDGER, &[&seq.to_be_bytes()])
}

/// Key of a ledger idempotency entry.
pub fn ledger_key(idempotency_key: &str) -> Vec<u8> {
    with_prefix(LEDGER_KEY, &[idempotency_key.as_bytes()])
}

/// Key of a counter journal entry.
pub fn counter_journal(seq: u64) -> Vec<u8> {
    with_prefix(COUNTER_JOURNAL, &[&seq.to_be_bytes()])
}

/// Key of the manual clock's reading.
pub fn manual_clock() -> Vec<u8> {
    with_prefix(META, &[b"manual_clock"])
}

/// Key of the index's commit sequence (see `mark.rs`).
pub fn commit_seq() -> Vec<u8> {
    with_prefix(META, &[b"commit_seq"])
}

/// Key of a tenant's wrapped data key.
pub fn data_key(tenant: &str) -> Vec<u8> {
    with_prefix(DATA_KEY, &[tenant.as_bytes()])
}

/// Key of the server's wrapped key.
pub fn server_key() -> Vec<u8> {
    with_prefix(META, &[b"server_key"])
}

/// Prefix of all keys of `keyspace` that belong to the id `id`.
pub fn id_prefix(keyspace: u8, id: u64) -> Vec<u8> {
    with_prefix(keyspace, &[&id.to_be_bytes()])
}

/// Reads the big-endian u64 at `at` in `key` (offsets inside keys).
pub fn u64_at(key: &[u8], at: usize) -> Option<u64> {
    key.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_sort_numerically() {
        assert!(set_header(1, 255) < set_header(1, 256));
        assert!(set_header(1, u64::MAX) < set_header(2, 0));
        assert_eq!(u64_at(&pending(7, 300), 9), Some(300));
    }
}
