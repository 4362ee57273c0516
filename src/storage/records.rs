//! On-disk record types, encoded with prost so fields can be added without
//! breaking stored data. Message payloads and headers live only in
//! [`MessageSetRecord`]; that is the one place a later data-at-rest encryption
//! layer has to wrap.

use std::collections::HashMap;

use bytes::Bytes;

/// A tenant account.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TenantRecord {
    /// Tenant id, `[a-z0-9][a-z0-9-]{2,31}`.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Free-form name shown to operators.
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// Contact e-mail (erased on termination).
    #[prost(string, tag = "3")]
    pub contact_email: String,
    /// The plan's name.
    #[prost(string, tag = "4")]
    pub plan: String,
    /// `TenantStatus` of the API (1 active, 2 suspended, 3 terminated).
    #[prost(int32, tag = "5")]
    pub status: i32,
    /// Creation time, Unix ms.
    #[prost(int64, tag = "6")]
    pub created_ms: i64,
    /// Why the tenant is suspended or terminated.
    #[prost(string, tag = "7")]
    pub status_reason: String,
    /// Per-tenant quota overrides over the plan, by plan field name.
    #[prost(map = "string, uint64", tag = "8")]
    pub quota_overrides: HashMap<String, u64>,
    /// The display name sealed under the tenant's data key (tags 2 and 3
    /// stay empty since encryption at rest).
    #[prost(bytes = "vec", tag = "9")]
    pub sealed_display_name: Vec<u8>,
    /// The contact e-mail sealed under the tenant's data key.
    #[prost(bytes = "vec", tag = "10")]
    pub sealed_contact_email: Vec<u8>,
}

/// A device id bound to one tenant.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeviceRecord {
    /// The device id.
    #[prost(string, tag = "1")]
    pub device_id: String,
    /// The only tenant that may produce with it.
    #[prost(string, tag = "2")]
    pub tenant: String,
    /// When it was bound, Unix ms.
    #[prost(int64, tag = "3")]
    pub bound_ms: i64,
    /// The device id sealed under the server's key (tag 1 stays empty since
    /// encryption at rest).
    #[prost(bytes = "vec", tag = "4")]
    pub sealed_device_id: Vec<u8>,
}

/// One entry of the audit log: who did what, when.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuditRecord {
    /// When, Unix ms on the broker clock.
    #[prost(int64, tag = "1")]
    pub time_ms: i64,
    /// Who: "operator", a key id, or a source address.
    #[prost(string, tag = "2")]
    pub actor: String,
    /// What, e.g. "device.bind", "tenant.suspend".
    #[prost(string, tag = "3")]
    pub action: String,
    /// The tenant concerned ("" when none).
    #[prost(string, tag = "4")]
    pub tenant: String,
    /// Details in words (never a secret).
    #[prost(string, tag = "5")]
    pub detail: String,
}

/// An API key: never its secret, only the secret's SHA-256.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ApiKeyRecord {
    /// Public key id, used to list and revoke.
    #[prost(string, tag = "1")]
    pub id: String,
    /// The tenant the key belongs to.
    #[prost(string, tag = "2")]
    pub tenant: String,
    /// SHA-256 of the whole secret string.
    #[prost(bytes = "vec", tag = "3")]
    pub secret_hash: Vec<u8>,
    /// `Scope` values of the API.
    #[prost(int32, repeated, tag = "4")]
    pub scopes: Vec<i32>,
    /// Topic allow-list; empty means every topic of the tenant.
    #[prost(string, repeated, tag = "5")]
    pub topics: Vec<String>,
    /// Free-form description.
    #[prost(string, tag = "6")]
    pub description: String,
    /// Creation time, Unix ms.
    #[prost(int64, tag = "7")]
    pub created_ms: i64,
    /// A revoked key no longer authenticates.
    #[prost(bool, tag = "8")]
    pub revoked: bool,
    /// The description sealed under the tenant's data key (tag 6 stays
    /// empty since encryption at rest: it is free text).
    #[prost(bytes = "vec", tag = "9")]
    pub sealed_description: Vec<u8>,
}

/// A topic's identity and settings.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopicRecord {
    /// Internal id; keys of the topic's data start with it.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Owning tenant.
    #[prost(string, tag = "2")]
    pub tenant: String,
    /// Name within the tenant.
    #[prost(string, tag = "3")]
    pub name: String,
    /// Message expiry in seconds.
    #[prost(uint64, tag = "4")]
    pub expiry_seconds: u64,
    /// Size cap in bytes.
    #[prost(uint64, tag = "5")]
    pub max_bytes: u64,
    /// `OverflowPolicy` of the API (1 reclaim oldest, 2 refuse produce).
    #[prost(int32, tag = "6")]
    pub overflow_policy: i32,
    /// Dedup window in seconds.
    #[prost(uint64, tag = "7")]
    pub dedup_window_seconds: u64,
    /// Creation time, Unix ms.
    #[prost(int64, tag = "8")]
    pub created_ms: i64,
}

/// A topic's log counters, rewritten when expiry or reclaiming changes them.
/// A produce does not rewrite them: start-up takes the log's end and newest
/// publish time from the newest set header when that is further.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopicStateRecord {
    /// The offset the next message will get.
    #[prost(uint64, tag = "1")]
    pub next_offset: u64,
    /// Messages removed by expiry, ever.
    #[prost(uint64, tag = "2")]
    pub expired_messages: u64,
    /// Messages removed by the size cap, ever.
    #[prost(uint64, tag = "3")]
    pub reclaimed_messages: u64,
    /// Publish time of the newest batch, so publish times never go backwards.
    #[prost(int64, tag = "4")]
    pub last_publish_ms: i64,
    /// Where the open storage interval begins (0: not metered yet).
    #[prost(int64, tag = "5")]
    pub storage_metered_ms: i64,
}

/// One stored message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredMessage {
    /// The payload.
    #[prost(bytes = "bytes", tag = "1")]
    pub payload: Bytes,
    /// String headers.
    #[prost(map = "string, string", tag = "2")]
    pub headers: HashMap<String, String>,
    /// Device id or "".
    #[prost(string, tag = "3")]
    pub device_id: String,
    /// Dedup id or "".
    #[prost(string, tag = "4")]
    pub dedup_id: String,
}

/// The messages of one produce batch, stored as one blob in the segment files
/// (as Kafka stores record batches) and found through its [`SetHeaderRecord`].
/// All share one publish time.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MessageSetRecord {
    /// Publish time, Unix ms.
    #[prost(int64, tag = "1")]
    pub publish_ms: i64,
    /// Messages at offsets first, first + 1, ...
    #[prost(message, repeated, tag = "2")]
    pub messages: Vec<StoredMessage>,
}

/// The small summary of a message set read at start-up (instead of the set).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetHeaderRecord {
    /// Messages in the set.
    #[prost(uint32, tag = "1")]
    pub count: u32,
    /// Counted bytes of the set's messages.
    #[prost(uint64, tag = "2")]
    pub bytes: u64,
    /// Publish time, Unix ms.
    #[prost(int64, tag = "3")]
    pub publish_ms: i64,
    /// Where the set's [`MessageSetRecord`] is stored in the segment files.
    #[prost(message, optional, tag = "4")]
    pub blob: Option<BlobRef>,
}

/// Where a blob (an encoded message set) is in the segment files.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct BlobRef {
    /// Segment file id.
    #[prost(uint64, tag = "1")]
    pub segment: u64,
    /// Byte position in the segment.
    #[prost(uint64, tag = "2")]
    pub position: u64,
    /// Length in bytes.
    #[prost(uint32, tag = "3")]
    pub len: u32,
    /// CRC-32 of the bytes, checked on every read.
    #[prost(uint32, tag = "4")]
    pub crc32: u32,
}

/// A dedup_id seen in a topic.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DedupRecord {
    /// Offset of the original message.
    #[prost(uint64, tag = "1")]
    pub offset: u64,
    /// When the original was published, Unix ms.
    #[prost(int64, tag = "2")]
    pub publish_ms: i64,
}

/// A subscription's identity and settings.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubscriptionRecord {
    /// Internal id; keys of the subscription's state start with it.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The topic's internal id.
    #[prost(uint64, tag = "2")]
    pub topic_id: u64,
    /// Name within the topic.
    #[prost(string, tag = "3")]
    pub name: String,
    /// 0: at-most-once; otherwise the lock time in seconds.
    #[prost(uint32, tag = "4")]
    pub lock_seconds: u32,
    /// 0: unlimited.
    #[prost(uint32, tag = "5")]
    pub max_delivery_attempts: u32,
    /// Dead-letter topic name, or "".
    #[prost(string, tag = "6")]
    pub dead_letter_topic: String,
    /// Creation time, Unix ms.
    #[prost(int64, tag = "7")]
    pub created_ms: i64,
}

/// A subscription's cursor.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CursorRecord {
    /// The offset the next new delivery comes from.
    #[prost(uint64, tag = "1")]
    pub next_offset: u64,
    /// Messages moved to the dead-letter topic, ever.
    #[prost(uint64, tag = "2")]
    pub dead_lettered: u64,
}

/// A delivered, not yet acknowledged message of an at-least-once subscription.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PendingRecord {
    /// Deliveries so far.
    #[prost(uint32, tag = "1")]
    pub attempts: u32,
    /// When the lock ends (or a nack's delay ends), Unix ms on the broker clock.
    #[prost(int64, tag = "2")]
    pub deadline_ms: i64,
    /// When the message was first delivered, Unix ms.
    #[prost(int64, tag = "3")]
    pub first_delivery_ms: i64,
}

/// Consecutive offsets first delivered together, in one pass, with one lock
/// deadline: one record instead of one per message. An offset stays covered
/// by its run until it is resolved (acked, expired, dead-lettered, or given
/// its own [`PendingRecord`] by a redelivery or nack).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PendingRunRecord {
    /// One past the run's last offset (the key holds the first).
    #[prost(uint64, tag = "1")]
    pub end: u64,
    /// When the lock of the run's messages ends, Unix ms on the broker clock.
    #[prost(int64, tag = "2")]
    pub deadline_ms: i64,
    /// When they were delivered, Unix ms.
    #[prost(int64, tag = "3")]
    pub first_delivery_ms: i64,
    /// Bit i (little-endian bytes) set: offset first + i is resolved.
    #[prost(bytes = "vec", tag = "4")]
    pub resolved: Vec<u8>,
}

/// The manual clock's reading, kept so a restart does not move time back.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClockRecord {
    /// Unix ms.
    #[prost(int64, tag = "1")]
    pub now_ms: i64,
}

/// Counters that only grow, kept exact by the committer (see
/// `WriteSet::increment`). The meaning of each position belongs to the caller.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CountersRecord {
    /// The counters.
    #[prost(uint64, repeated, tag = "1")]
    pub values: Vec<u64>,
}

/// When a topic existed, for topic-days (kept after the topic is deleted).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopicLifeRecord {
    /// The topic's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Creation time, Unix ms.
    #[prost(int64, tag = "2")]
    pub created_ms: i64,
    /// Deletion time, Unix ms; 0 while it exists.
    #[prost(int64, tag = "3")]
    pub deleted_ms: i64,
}

/// How far a tenant's days are settled.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SettledRecord {
    /// The last settled billing day (days since 1970-01-01).
    #[prost(int64, tag = "1")]
    pub last_settled_day: i64,
}

/// The ledger sequence an idempotency key was written at.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LedgerKeyRecord {
    /// The entry's sequence.
    #[prost(uint64, tag = "1")]
    pub sequence: u64,
}

/// One counter's increments in a journal entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CounterDelta {
    /// The counter's key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// What to add to each position.
    #[prost(uint64, repeated, tag = "2")]
    pub values: Vec<u64>,
}

/// The summed counter increments of one group commit, written in the same
/// atomic batch as the data they count, folded into the counters later.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CounterJournalRecord {
    /// The increments.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<CounterDelta>,
}

/// A data key wrapped by the master key (nonce, ciphertext, tag).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WrappedKeyRecord {
    /// The wrapped key.
    #[prost(bytes = "vec", tag = "1")]
    pub wrapped: Vec<u8>,
}

/// A name stored sealed under its owner's data key (a device id).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SealedNameRecord {
    /// The sealed name (`crypto::seal` field format).
    #[prost(bytes = "vec", tag = "1")]
    pub sealed: Vec<u8>,
}
