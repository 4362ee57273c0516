//! The move snapshot: everything a tenant has on one broker, as one protobuf
//! message, and the SHA-256 that travels with it.
//!
//! The encoding is prost's (fields in tag order; maps are `BTreeMap`s, so the
//! same snapshot always encodes to the same bytes). It is an opaque blob to
//! the wire (`MoveSnapshotChunk.data`), versioned by [`FORMAT`]. Keys are
//! carried as their stored SHA-256, never a secret; payloads, headers and ids
//! in plaintext (the target seals them under its own data key), so the
//! snapshot is as sensitive as the tenant's data: it travels only over the
//! operator's connections and is never written to disk by tallyq.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The snapshot format this build writes and reads.
pub const FORMAT: u32 = 1;

/// A whole tenant, as exported for a move.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Snapshot {
    /// [`FORMAT`].
    #[prost(uint32, tag = "1")]
    pub format: u32,
    /// `<source node>/<tenant>/<stop time ms>`: the same for every export of one move.
    #[prost(string, tag = "2")]
    pub snapshot_id: String,
    /// The node id of the source broker.
    #[prost(string, tag = "3")]
    pub source_node: String,
    /// When the tenant's data plane stopped on the source, Unix ms.
    #[prost(int64, tag = "4")]
    pub stopped_ms: i64,
    /// The tenant record.
    #[prost(message, optional, tag = "5")]
    pub tenant: Option<TenantPart>,
    /// The rate card the source priced the tenant by.
    #[prost(message, optional, tag = "6")]
    pub rates: Option<RatesPart>,
    /// API keys, as their hashes.
    #[prost(message, repeated, tag = "7")]
    pub keys: Vec<KeyPart>,
    /// Device bindings of the tenant.
    #[prost(message, repeated, tag = "8")]
    pub devices: Vec<DevicePart>,
    /// Topics with their messages and subscriptions.
    #[prost(message, repeated, tag = "9")]
    pub topics: Vec<TopicPart>,
    /// Money and allowance carried over.
    #[prost(message, optional, tag = "10")]
    pub account: Option<AccountPart>,
}

/// The tenant record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TenantPart {
    /// Tenant id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Display name.
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// Contact e-mail.
    #[prost(string, tag = "3")]
    pub contact_email: String,
    /// Plan name.
    #[prost(string, tag = "4")]
    pub plan: String,
    /// Creation time, Unix ms.
    #[prost(int64, tag = "5")]
    pub created_ms: i64,
    /// Quota overrides by plan field name.
    #[prost(btree_map = "string, uint64", tag = "6")]
    pub quota_overrides: BTreeMap<String, u64>,
    /// Why it was suspended before the move ("" when it was active).
    #[prost(string, tag = "7")]
    pub suspended_reason: String,
}

/// A rate card, compared by the import.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RatesPart {
    /// ISO currency.
    #[prost(string, tag = "1")]
    pub currency: String,
    /// Nano-minor units per message unit.
    #[prost(uint64, tag = "2")]
    pub message_unit_price_nano_minor: u64,
    /// Free message units per month.
    #[prost(uint64, tag = "3")]
    pub free_message_units_per_month: u64,
    /// Nano-minor units per topic-day.
    #[prost(uint64, tag = "4")]
    pub topic_day_price_nano_minor: u64,
    /// Nano-minor units per milli-GiB-hour.
    #[prost(uint64, tag = "5")]
    pub storage_milli_gib_hour_price_nano_minor: u64,
}

/// An API key: its hash, never its secret.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyPart {
    /// Key id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// SHA-256 of the secret string (32 bytes).
    #[prost(bytes = "vec", tag = "2")]
    pub secret_hash: Vec<u8>,
    /// Scope wire numbers.
    #[prost(int32, repeated, tag = "3")]
    pub scopes: Vec<i32>,
    /// Topic allow-list.
    #[prost(string, repeated, tag = "4")]
    pub topics: Vec<String>,
    /// Description.
    #[prost(string, tag = "5")]
    pub description: String,
    /// Creation time, Unix ms.
    #[prost(int64, tag = "6")]
    pub created_ms: i64,
    /// Revoked keys move too (they stay listed).
    #[prost(bool, tag = "7")]
    pub revoked: bool,
}

/// A device binding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DevicePart {
    /// The device id.
    #[prost(string, tag = "1")]
    pub device_id: String,
    /// When it was bound, Unix ms.
    #[prost(int64, tag = "2")]
    pub bound_ms: i64,
}

/// A topic: settings, counters, retained messages, subscriptions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopicPart {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Message expiry, seconds.
    #[prost(uint64, tag = "2")]
    pub expiry_seconds: u64,
    /// Size cap, bytes.
    #[prost(uint64, tag = "3")]
    pub max_bytes: u64,
    /// The API's OverflowPolicy number.
    #[prost(int32, tag = "4")]
    pub overflow_policy: i32,
    /// Dedup window, seconds.
    #[prost(uint64, tag = "5")]
    pub dedup_window_seconds: u64,
    /// Creation time, Unix ms.
    #[prost(int64, tag = "6")]
    pub created_ms: i64,
    /// The offset the next message gets (offsets are kept).
    #[prost(uint64, tag = "7")]
    pub next_offset: u64,
    /// Messages expired, ever.
    #[prost(uint64, tag = "8")]
    pub expired_messages: u64,
    /// Messages reclaimed, ever.
    #[prost(uint64, tag = "9")]
    pub reclaimed_messages: u64,
    /// Publish time of the newest set.
    #[prost(int64, tag = "10")]
    pub last_publish_ms: i64,
    /// Retained message sets, oldest first.
    #[prost(message, repeated, tag = "11")]
    pub sets: Vec<SetPart>,
    /// Subscriptions.
    #[prost(message, repeated, tag = "12")]
    pub subscriptions: Vec<SubscriptionPart>,
}

/// One retained message set: consecutive offsets, one publish time.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetPart {
    /// Offset of its first message.
    #[prost(uint64, tag = "1")]
    pub first_offset: u64,
    /// Publish time, Unix ms.
    #[prost(int64, tag = "2")]
    pub publish_ms: i64,
    /// The messages.
    #[prost(message, repeated, tag = "3")]
    pub messages: Vec<MessagePart>,
}

/// One message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MessagePart {
    /// Payload.
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
    /// Headers.
    #[prost(btree_map = "string, string", tag = "2")]
    pub headers: BTreeMap<String, String>,
    /// Device id.
    #[prost(string, tag = "3")]
    pub device_id: String,
    /// Dedup id (the target rebuilds the dedup index from it).
    #[prost(string, tag = "4")]
    pub dedup_id: String,
}

/// A subscription: settings and cursor.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubscriptionPart {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Lock seconds (0: at-most-once).
    #[prost(uint32, tag = "2")]
    pub lock_seconds: u32,
    /// Max delivery attempts (0: unlimited).
    #[prost(uint32, tag = "3")]
    pub max_delivery_attempts: u32,
    /// Dead-letter topic or "".
    #[prost(string, tag = "4")]
    pub dead_letter_topic: String,
    /// Creation time, Unix ms.
    #[prost(int64, tag = "5")]
    pub created_ms: i64,
    /// Where new deliveries continue.
    #[prost(uint64, tag = "6")]
    pub next_offset: u64,
    /// Messages dead-lettered, ever.
    #[prost(uint64, tag = "7")]
    pub dead_lettered: u64,
    /// Delivered, unacknowledged messages: due at once on the target.
    #[prost(message, repeated, tag = "8")]
    pub pending: Vec<PendingPart>,
}

/// A delivered, unacknowledged message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PendingPart {
    /// Its offset.
    #[prost(uint64, tag = "1")]
    pub offset: u64,
    /// Deliveries so far.
    #[prost(uint32, tag = "2")]
    pub attempts: u32,
    /// First delivery, Unix ms.
    #[prost(int64, tag = "3")]
    pub first_delivery_ms: i64,
}

/// What the tenant's account carries to the target.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AccountPart {
    /// payments - charges on the source (negative: owed).
    #[prost(int64, tag = "1")]
    pub balance_minor: i64,
    /// When the oldest unpaid charge fell due (0: none).
    #[prost(int64, tag = "2")]
    pub oldest_unpaid_due_ms: i64,
    /// The billing day of the stop, "YYYY-MM-DD".
    #[prost(string, tag = "3")]
    pub stop_day: String,
    /// Free units applied in the stop day's month on the source.
    #[prost(uint64, tag = "4")]
    pub free_units_used: u64,
    /// Currency of the balance.
    #[prost(string, tag = "5")]
    pub currency: String,
}

/// An encoded snapshot and its checksum.
pub struct Encoded {
    /// The protobuf encoding.
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`.
    pub sha256: String,
}

/// Hex SHA-256 of `bytes`.
pub fn checksum(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Snapshot {
    /// Encodes the snapshot and computes its checksum.
    pub fn encode(&self) -> Encoded {
        let bytes = prost::Message::encode_to_vec(self);
        let sha256 = checksum(&bytes);
        Encoded { bytes, sha256 }
    }

    /// Decodes `bytes` after checking them against `sha256`. A mismatch is
    /// [`Error::DataLoss`]: the bytes were damaged on their way, nothing is
    /// wrong with the request's shape, and nothing may be imported from them.
    pub fn decode(bytes: &[u8], sha256: &str) -> Result<Snapshot> {
        let actual = checksum(bytes);
        if !actual.eq_ignore_ascii_case(sha256.trim()) {
            return Err(Error::DataLoss(format!(
                "the snapshot's {} bytes have SHA-256 {actual}, not the {sha256:?} its exporter \
                 gave: it was damaged or cut short on its way; export it again",
                bytes.len()
            )));
        }
        let snapshot: Snapshot = prost::Message::decode(bytes)
            .map_err(|e| Error::DataLoss(format!("the snapshot does not decode: {e}")))?;
        if snapshot.format != FORMAT {
            return Err(Error::invalid(format!(
                "snapshot format {} is not the format {FORMAT} this broker reads",
                snapshot.format
            )));
        }
        if snapshot.tenant.is_none() {
            return Err(Error::invalid("the snapshot names no tenant"));
        }
        Ok(snapshot)
    }

    /// The tenant id.
    pub fn tenant_id(&self) -> &str {
        self.tenant.as_ref().map_or("", |t| t.id.as_str())
    }

    /// Retained messages over every topic.
    pub fn messages(&self) -> u64 {
        self.topics
            .iter()
            .flat_map(|t| &t.sets)
            .map(|s| s.messages.len() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            format: FORMAT,
            snapshot_id: "node-1/acme/1000".into(),
            source_node: "node-1".into(),
            stopped_ms: 1000,
            tenant: Some(TenantPart {
                id: "acme".into(),
                plan: "standard".into(),
                quota_overrides: BTreeMap::from([("max_topics".into(), 9)]),
                ..Default::default()
            }),
            topics: vec![TopicPart {
                name: "t".into(),
                next_offset: 12,
                sets: vec![SetPart {
                    first_offset: 10,
                    publish_ms: 5,
                    messages: vec![
                        MessagePart {
                            payload: b"a".to_vec(),
                            headers: BTreeMap::from([("k".into(), "v".into())]),
                            ..Default::default()
                        },
                        MessagePart {
                            payload: b"b".to_vec(),
                            dedup_id: "d".into(),
                            ..Default::default()
                        },
                    ],
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_snapshot_round_trips_with_its_checksum() {
        let snapshot = sample();
        let encoded = snapshot.encode();
        let decoded = Snapshot::decode(&encoded.bytes, &encoded.sha256).unwrap();
        assert_eq!(decoded, snapshot);
        assert_eq!(decoded.messages(), 2);
        assert_eq!(decoded.tenant_id(), "acme");
    }

    #[test]
    fn the_same_snapshot_always_encodes_to_the_same_bytes() {
        assert_eq!(sample().encode().sha256, sample().encode().sha256);
    }

    #[test]
    fn a_damaged_or_truncated_snapshot_is_data_loss() {
        let encoded = sample().encode();
        let mut damaged = encoded.bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        for bytes in [&damaged[..], &encoded.bytes[..encoded.bytes.len() - 1]] {
            let err = Snapshot::decode(bytes, &encoded.sha256).unwrap_err();
            assert!(matches!(err, Error::DataLoss(_)), "{err:?}");
        }
    }

    #[test]
    fn another_format_or_no_tenant_is_refused() {
        let mut other = sample();
        other.format = FORMAT + 1;
        let e = other.encode();
        let err = Snapshot::decode(&e.bytes, &e.sha256).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        let mut nobody = sample();
        nobody.tenant = None;
        let e = nobody.encode();
        assert!(Snapshot::decode(&e.bytes, &e.sha256).is_err());
    }
}
