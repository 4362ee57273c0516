//! Message sets: each produce batch's messages as one blob in the segment
//! files, and its header (count, bytes, publish time, where the blob is) in
//! sled, by topic and first offset.

use std::collections::VecDeque;

use crate::broker::topic::SetSummary;
use crate::broker::{Message, MessageSet};
use crate::crypto::{self, SetAad, TenantKeys};
use crate::storage::keys;
use crate::storage::records::{BlobRef, MessageSetRecord, SetHeaderRecord, StoredMessage};
use crate::storage::{SetIdentity, StorageError, StorageResult, Store, WriteSet};

/// Where a message set's bytes are in the segment files. Opaque outside
/// storage: the broker keeps it in its set summaries and hands it back to
/// read the set or drop it. (The default points nowhere; for tests.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetLocation(pub(in crate::storage) BlobRef);

/// Where the first offset is in a set header's key (after the keyspace byte
/// and the topic id).
const FIRST_OFFSET_AT: usize = 9;

impl Store {
    /// At start-up: the summaries of a topic's stored sets, oldest first.
    /// Marks each set's blob live, so
    /// [`Store::remove_unreferenced_blobs`] keeps it; call once per topic.
    pub fn load_sets(&self, topic_id: u64) -> StorageResult<VecDeque<SetSummary>> {
        let mut sets = VecDeque::new();
        for item in self.scan::<SetHeaderRecord>(&keys::id_prefix(keys::SET_HEADER, topic_id)) {
            let (key, header) = item?;
            let first_offset = keys::u64_at(&key, FIRST_OFFSET_AT).unwrap_or_default();
            let set = summary(first_offset, header).ok_or_else(|| StorageError::Corrupt {
                key: hex::encode(&key),
                reason: "a message set header without its segment reference".into(),
            })?;
            self.mark_blob_live(&set.location.0);
            sets.push_back(set);
        }
        Ok(sets)
    }

    /// The stored set that would hold `offset`: the one with the greatest
    /// first offset at or before it (`None` when there is none).
    pub fn set_at_or_before(
        &self,
        topic_id: u64,
        offset: u64,
    ) -> StorageResult<Option<SetSummary>> {
        let prefix = keys::id_prefix(keys::SET_HEADER, topic_id);
        let found = self
            .last_at_or_before::<SetHeaderRecord>(&prefix, &keys::set_header(topic_id, offset))?;
        Ok(found.and_then(|(key, header)| {
            let first_offset = keys::u64_at(&key, FIRST_OFFSET_AT)?;
            summary(first_offset, header)
        }))
    }

    /// Every stored set of a topic, in offset order, read as the iterator
    /// goes.
    pub fn sets(&self, topic_id: u64) -> impl Iterator<Item = StorageResult<SetSummary>> + '_ {
        let prefix = keys::id_prefix(keys::SET_HEADER, topic_id);
        self.scan::<SetHeaderRecord>(&prefix)
            .filter_map(|item| match item {
                Ok((key, header)) => {
                    let first_offset = keys::u64_at(&key, FIRST_OFFSET_AT).unwrap_or_default();
                    summary(first_offset, header).map(Ok)
                }
                Err(e) => Some(Err(e)),
            })
    }

    /// Writes a set's messages to the segment files, sealed under the
    /// tenant's `keys` (AES-256-GCM, bound to the tenant, topic and first
    /// offset; `crypto::seal` has the format and nonce scheme), in a frame
    /// that names the set (`identity`: topic, first offset, count, bytes,
    /// publish time, in plaintext so repair needs no key; see
    /// `storage/frame.rs`), and returns where they are. Store the set's
    /// header (with it) in a write queued afterwards. The messages move into
    /// their rows (no payload or header is copied before sealing, which works
    /// in place).
    pub fn append_set(
        &self,
        keys: &TenantKeys,
        identity: SetIdentity,
        set: MessageSet,
    ) -> StorageResult<SetLocation> {
        let record = MessageSetRecord {
            publish_ms: set.publish_ms,
            messages: set.messages.into_iter().map(StoredMessage::from).collect(),
        };
        let at = SetAad {
            topic_id: identity.topic_id,
            first_offset: identity.first_offset,
        };
        let mut body = crypto::set_header_space();
        body.reserve(prost::Message::encoded_len(&record) + crypto::SET_OVERHEAD);
        prost::Message::encode_raw(&record, &mut body);
        crypto::seal_set(keys, at, self.generate_id()?, &mut body);
        self.append_frame(&identity, &body).map(SetLocation)
    }

    /// Reads a set's messages back from the segment files and opens them
    /// under the tenant's `keys`. A frame that names another set than `set`,
    /// or a set that does not open (another key, another topic or offset,
    /// altered bytes), is [`StorageError::Corrupt`], like a set that fails
    /// its checksum: never served.
    pub fn read_set(
        &self,
        keys: &TenantKeys,
        topic_id: u64,
        set: &SetSummary,
    ) -> StorageResult<MessageSet> {
        let blob = &set.location.0;
        let corrupt = |reason: String| StorageError::Corrupt {
            key: format!("segment {} position {}", blob.segment, blob.position),
            reason,
        };
        let (header, mut frame) = self.read_frame_owned(blob)?;
        let body_at = match header {
            Some(header) => {
                let id = header.identity;
                if id.first_offset != set.first_offset || id.count != set.count {
                    return Err(corrupt(format!(
                        "the frame holds offsets {}..{}, the index says {}..{}",
                        id.first_offset,
                        id.end(),
                        set.first_offset,
                        set.end()
                    )));
                }
                crate::storage::frame::HEADER_BYTES
            }
            None => 0,
        };
        let at = SetAad {
            topic_id,
            first_offset: set.first_offset,
        };
        let range = crypto::open_set(keys, at, &mut frame[body_at..]).map_err(|e| {
            corrupt(format!(
                "message set of topic {topic_id} at offset {}: {e}",
                set.first_offset
            ))
        })?;
        let bytes = bytes::Bytes::from(frame).slice(body_at + range.start..body_at + range.end);
        let stored = <MessageSetRecord as prost::Message>::decode(bytes).map_err(|source| {
            StorageError::Decode {
                key: format!("segment {} position {}", blob.segment, blob.position),
                source,
            }
        })?;
        Ok(MessageSet {
            publish_ms: stored.publish_ms,
            messages: stored.messages.into_iter().map(Message::from).collect(),
        })
    }
}

impl WriteSet {
    /// Stores a set's header.
    pub fn put_set(&mut self, topic_id: u64, set: &SetSummary) {
        self.put(
            keys::set_header(topic_id, set.first_offset),
            &SetHeaderRecord {
                count: set.count,
                bytes: set.bytes,
                publish_ms: set.publish_ms,
                blob: Some(set.location.0),
            },
        );
    }

    /// Deletes a set's header and releases its blob once this write
    /// committed.
    pub fn delete_set(&mut self, topic_id: u64, set: &SetSummary) {
        self.delete(keys::set_header(topic_id, set.first_offset));
        self.release_set(set);
    }

    /// Releases a set's blob once this write committed (which must delete
    /// the set's header).
    pub(super) fn release_set(&mut self, set: &SetSummary) {
        self.release_blob(set.location.0);
    }
}

/// A set header as a summary; `None` for one without its segment reference.
fn summary(first_offset: u64, header: SetHeaderRecord) -> Option<SetSummary> {
    Some(SetSummary {
        first_offset,
        count: header.count,
        bytes: header.bytes,
        publish_ms: header.publish_ms,
        location: SetLocation(header.blob?),
    })
}

// A message and its row have the same size and alignment, so converting a
// set's Vec of one into the other reuses the allocation (std collects in
// place): appending and reading a set cost no more than before the broker
// had its own type.
const _: () = assert!(
    std::mem::size_of::<Message>() == std::mem::size_of::<StoredMessage>()
        && std::mem::align_of::<Message>() == std::mem::align_of::<StoredMessage>()
);

impl From<Message> for StoredMessage {
    /// Fields move, nothing is copied.
    fn from(m: Message) -> Self {
        StoredMessage {
            payload: m.payload,
            headers: m.headers,
            device_id: m.device_id,
            dedup_id: m.dedup_id,
        }
    }
}

impl From<StoredMessage> for Message {
    /// Fields move, nothing is copied.
    fn from(m: StoredMessage) -> Self {
        Message {
            payload: m.payload,
            headers: m.headers,
            device_id: m.device_id,
            dedup_id: m.dedup_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn keys(tenant: &str) -> TenantKeys {
        TenantKeys::derive(tenant, &crate::crypto::DataKey::generate())
    }

    /// Appends sets of `counts` messages to topic 1 (payload: the index in
    /// the set), sealed under `keys`, stores their headers and returns their
    /// summaries.
    async fn stored_sets(store: &Store, keys: &TenantKeys, counts: &[u32]) -> Vec<SetSummary> {
        let mut writes = WriteSet::new();
        let mut sets = Vec::new();
        let mut first_offset = 0;
        for &count in counts {
            let messages = (0..count)
                .map(|i| Message {
                    payload: Bytes::from(vec![i as u8]),
                    ..Message::default()
                })
                .collect();
            let publish_ms = first_offset as i64;
            let identity = SetIdentity {
                topic_id: 1,
                first_offset,
                count,
                bytes: count as u64,
                publish_ms,
            };
            let location = store
                .append_set(
                    keys,
                    identity,
                    MessageSet {
                        publish_ms,
                        messages,
                    },
                )
                .unwrap();
            let set = SetSummary {
                first_offset,
                count,
                bytes: count as u64,
                publish_ms,
                location,
            };
            writes.put_set(1, &set);
            sets.push(set);
            first_offset += count as u64;
        }
        store.commit(writes).await.unwrap();
        sets
    }

    #[tokio::test]
    async fn sets_are_found_by_offset_read_back_and_deleted_with_their_header() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let acme = keys("acme");
        let sets = stored_sets(&store, &acme, &[2, 3]).await;

        // The header row, under its key, as before.
        let header: SetHeaderRecord = store.get(&keys::set_header(1, 2)).unwrap().unwrap();
        assert_eq!((header.count, header.bytes, header.publish_ms), (3, 3, 2));
        let first = |offset| {
            store
                .set_at_or_before(1, offset)
                .unwrap()
                .map(|s| s.first_offset)
        };
        assert_eq!((first(1), first(2), first(9)), (Some(0), Some(2), Some(2)));
        let read = store.read_set(&acme, 1, &sets[1]).unwrap();
        assert_eq!(read.publish_ms, 2);
        assert_eq!(read.messages[2].payload, Bytes::from(vec![2u8]));
        assert_eq!(store.load_sets(1).unwrap().len(), 2);

        let mut writes = WriteSet::new();
        writes.delete_set(1, &sets[0]);
        store.commit(writes).await.unwrap();
        let left: Vec<u64> = store.sets(1).map(|s| s.unwrap().first_offset).collect();
        assert_eq!(left, vec![2]);
        assert_eq!(first(1), None);
    }

    /// A set is stored sealed: its bytes on disk never show a payload, and
    /// it opens only as what it was sealed as. Read under another tenant's
    /// key, as another topic, or moved to another offset (its header's
    /// first offset changed), it is corrupt: quarantined, never served.
    #[tokio::test]
    async fn a_set_read_under_another_key_or_offset_is_corrupt_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let acme = keys("acme");
        let marker = b"MARKER-7f3a";
        let location = store
            .append_set(
                &acme,
                SetIdentity {
                    topic_id: 1,
                    first_offset: 10,
                    count: 1,
                    bytes: 1,
                    publish_ms: 5,
                },
                MessageSet {
                    publish_ms: 5,
                    messages: vec![Message {
                        payload: Bytes::from_static(marker),
                        headers: [("h".to_string(), "MARKER-7f3a".to_string())].into(),
                        device_id: "MARKER-7f3a".into(),
                        dedup_id: "MARKER-7f3a".into(),
                    }],
                },
            )
            .unwrap();
        let set = SetSummary {
            first_offset: 10,
            count: 1,
            bytes: 1,
            publish_ms: 5,
            location,
        };
        let mut writes = WriteSet::new();
        writes.put_set(1, &set);
        store.commit(writes).await.unwrap();
        for entry in std::fs::read_dir(dir.path().join("segments")).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(marker.len()).any(|w| w == marker));
        }
        let read = store.read_set(&acme, 1, &set).unwrap();
        assert_eq!(read.messages[0].payload, Bytes::from_static(marker));
        assert_eq!(read.messages[0].device_id, "MARKER-7f3a");

        let moved = SetSummary {
            first_offset: 11,
            ..set
        };
        let refused = [
            store.read_set(&keys("acme"), 1, &set),
            store.read_set(&keys("other"), 1, &set),
            store.read_set(&acme, 2, &set),
        ];
        for result in refused {
            match result {
                Err(e @ StorageError::Corrupt { .. }) => {
                    assert!(e.to_string().contains("does not verify"), "{e}")
                }
                other => panic!("expected a corrupt set, got {other:?}"),
            }
        }
        // Moved to another offset, the plaintext frame header already names
        // the offsets it was written at (and the sealed body would not open).
        match store.read_set(&acme, 1, &moved) {
            Err(e @ StorageError::Corrupt { .. }) => {
                assert!(
                    e.to_string().contains("the frame holds offsets 10..11"),
                    "{e}"
                )
            }
            other => panic!("expected a corrupt set, got {other:?}"),
        }
    }
}
