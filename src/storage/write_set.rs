//! [`WriteSet`]: what one atomic commit writes. Callers fill it; only the
//! committer reads its fields (it moves them into one `sled::Batch`).

use super::records;

/// A set of puts, deletes and counter increments that commit together,
/// atomically.
#[derive(Default)]
pub struct WriteSet {
    /// Puts (`Some` encoded record) and deletes (`None`), in order.
    pub(super) ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Counter increments: counter key, deltas by position.
    pub(super) increments: Vec<(Vec<u8>, Vec<u64>)>,
    /// Blobs to release once this set committed.
    pub(super) released_blobs: Vec<records::BlobRef>,
    /// Set by `Store::sync_counters` only: fold the counter journal.
    pub(super) fold_counters: bool,
    /// About how many bytes this set writes (bounds a group commit).
    pub(super) bytes: usize,
}

impl WriteSet {
    /// An empty write set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts an encoded record under `key`.
    pub(super) fn put(&mut self, key: Vec<u8>, record: &impl prost::Message) {
        let value = record.encode_to_vec();
        self.bytes += key.len() + value.len();
        self.ops.push((key, Some(value)));
    }

    /// Deletes `key`.
    pub(super) fn delete(&mut self, key: Vec<u8>) {
        self.bytes += key.len();
        self.ops.push((key, None));
    }

    /// Adds `deltas` to the counters stored under `key` (a
    /// [`records::CountersRecord`]). The increment is journaled in the same
    /// atomic batch as the rest of this set and folded into the counter by the
    /// committer alone, so concurrent writers never lose an increment and a
    /// counter always matches the data it counts. Read counters after
    /// [`Store::sync_counters`](super::Store::sync_counters).
    pub(super) fn increment(&mut self, key: Vec<u8>, deltas: Vec<u64>) {
        self.bytes += key.len() + deltas.len() * 8;
        self.increments.push((key, deltas));
    }

    /// Releases a blob in the segment files once this set committed (the
    /// set must delete the blob's last reference).
    pub(super) fn release_blob(&mut self, blob: records::BlobRef) {
        self.released_blobs.push(blob);
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
            && self.increments.is_empty()
            && self.released_blobs.is_empty()
            && !self.fold_counters
    }

    /// Appends another write set's operations after this one's.
    pub fn extend(&mut self, other: WriteSet) {
        self.bytes += other.bytes;
        self.ops.extend(other.ops);
        self.increments.extend(other.increments);
        self.released_blobs.extend(other.released_blobs);
    }
}
