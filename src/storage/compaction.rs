//! Compaction, the storage side: which segments are mostly dead, copying a
//! set's stored bytes to the active segment, and pointing its header at the
//! copy.
//!
//! A segment holds the sets of every topic and lives as long as its
//! longest-retained set, so one long-retained set could pin 64 MiB of other
//! topics' expired data. Compaction moves the live sets out of a mostly-dead
//! segment; once the last one has moved, the segment's live bytes are zero
//! and [`Segments::release`](super::segments::Segments::release) deletes it.
//! The broker decides what to move (it knows which topic's sets are where,
//! `broker/compaction.rs`); this file gives it the steps, in the order that
//! makes a crash at any point lose nothing:
//!
//! 1. [`Store::copy_set`]: the set's bytes are read, checked against their
//!    CRC and appended, as opaque bytes (whatever framing or encryption they
//!    carry), to the active segment;
//! 2. [`WriteSet::move_set`] in a commit: the committer syncs the segments
//!    before it applies the batch, so the new header is durable only after
//!    the copy is; the old blob is released after the commit, and its
//!    segment deleted once nothing else lives there.
//!
//! A crash before the commit leaves a copy nothing refers to; a crash after
//! it leaves an old segment nothing refers to. Both go at the next start-up
//! (`mark_live` / `remove_unreferenced`). A reader that read the old header
//! just before the switch finds the old segment gone and reads the header
//! again (`broker/topic/reader.rs`).

use super::records::SetHeaderRecord;
use super::{keys, SetLocation, StorageResult, Store, WriteSet};
use crate::broker::topic::SetSummary;

/// One segment file's size and how much of it is still referred to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStats {
    /// The segment's id (its file name).
    pub id: u64,
    /// Bytes written to the file (what it occupies on disk).
    pub file_bytes: u64,
    /// Bytes of the blobs in it that are still referred to.
    pub live_bytes: u64,
    /// Whether it is the segment being appended to.
    pub active: bool,
}

impl SegmentStats {
    /// Bytes no reference points to any more.
    pub fn dead_bytes(&self) -> u64 {
        self.file_bytes.saturating_sub(self.live_bytes)
    }

    /// Whether less than `percent` of the file is live (an empty file is
    /// not).
    pub fn live_below(&self, percent: u8) -> bool {
        self.file_bytes > 0
            && (self.live_bytes as u128) * 100 < (self.file_bytes as u128) * percent as u128
    }
}

/// An active segment is sealed for compaction under disk pressure only when
/// at least this much of it is dead, so a nearly empty one is not sealed
/// again every second.
const MIN_DEAD_TO_SEAL: u64 = 1024 * 1024;

impl Store {
    /// Every segment file's size and live bytes, oldest first.
    pub fn segment_stats(&self) -> Vec<SegmentStats> {
        self.segments().stats()
    }

    /// The sealed segments less than `live_percent` live that still hold a
    /// live blob: what compaction should rewrite, the fewest live bytes
    /// (cheapest to move, most space back per byte copied) first.
    pub fn compaction_candidates(&self, live_percent: u8) -> Vec<SegmentStats> {
        let mut candidates: Vec<SegmentStats> = self
            .segment_stats()
            .into_iter()
            .filter(|s| !s.active && s.live_bytes > 0 && s.live_below(live_percent))
            .collect();
        candidates.sort_by_key(|s| (s.live_bytes, s.id));
        candidates
    }

    /// Under disk pressure: seals the active segment when less than
    /// `live_percent` of it is live and at least a MiB of it is dead, so that
    /// its dead bytes can be given back now (deleted at once when nothing in
    /// it lives, else it becomes a compaction candidate). True when sealed.
    pub fn seal_mostly_dead_active(&self, live_percent: u8) -> StorageResult<bool> {
        let Some(active) = self.segment_stats().into_iter().find(|s| s.active) else {
            return Ok(false);
        };
        if !active.live_below(live_percent) || active.dead_bytes() < MIN_DEAD_TO_SEAL {
            return Ok(false);
        }
        self.segments().seal_active()?;
        Ok(true)
    }

    /// Copies a set's stored bytes to the active segment, unchanged: the
    /// returned summary is `set` with the copy's location. Fails, copying
    /// nothing, when the stored bytes do not match their CRC. Point the
    /// header at the copy with [`WriteSet::move_set`] in a commit queued
    /// afterwards.
    pub fn copy_set(&self, set: &SetSummary) -> StorageResult<SetSummary> {
        let blob = self.segments().copy(&set.location.0)?;
        Ok(SetSummary {
            location: SetLocation(blob),
            ..*set
        })
    }

    /// Whether topic `topic_id`'s stored header of `set` (by its first
    /// offset) exists and points at `set`'s location. Compaction moves only
    /// such sets: not one whose header is still queued for commit, nor one
    /// a committed deletion removed.
    pub fn set_is_stored(&self, topic_id: u64, set: &SetSummary) -> StorageResult<bool> {
        let header: Option<SetHeaderRecord> =
            self.get(&keys::set_header(topic_id, set.first_offset))?;
        Ok(header.and_then(|h| h.blob) == Some(set.location.0))
    }
}

impl SetLocation {
    /// The id of the segment the set is in.
    pub fn segment(&self) -> u64 {
        self.0.segment
    }

    /// Bytes the set occupies in its segment.
    pub fn stored_bytes(&self) -> u64 {
        self.0.len as u64
    }
}

impl WriteSet {
    /// Points topic `topic_id`'s header of a set at its copy `to` (from
    /// [`Store::copy_set`]) and releases the old blob of `from` once this
    /// write committed.
    pub fn move_set(&mut self, topic_id: u64, from: &SetSummary, to: &SetSummary) {
        self.put_set(topic_id, to);
        self.release_blob(from.location.0);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::broker::{Message, MessageSet};
    use crate::crypto::{DataKey, TenantKeys};
    use crate::storage::SetIdentity;

    /// The one tenant's keys of these tests (sets are sealed under them).
    fn keys() -> &'static TenantKeys {
        static KEYS: std::sync::OnceLock<TenantKeys> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| TenantKeys::derive("acme", &DataKey::generate()))
    }

    /// Appends a set of one message of `len` bytes and stores its header
    /// for topic `topic_id` at `first_offset`.
    async fn stored_set(store: &Store, topic_id: u64, first_offset: u64, len: usize) -> SetSummary {
        let identity = SetIdentity {
            topic_id,
            first_offset,
            count: 1,
            bytes: len as u64,
            publish_ms: 1,
        };
        let location = store
            .append_set(
                keys(),
                identity,
                MessageSet {
                    publish_ms: 1,
                    messages: vec![Message {
                        payload: Bytes::from(vec![first_offset as u8; len]),
                        ..Message::default()
                    }],
                },
            )
            .unwrap();
        let set = SetSummary {
            first_offset,
            count: 1,
            bytes: len as u64,
            publish_ms: 1,
            location,
        };
        let mut writes = WriteSet::new();
        writes.put_set(topic_id, &set);
        store.commit(writes).await.unwrap();
        set
    }

    #[tokio::test]
    async fn a_moved_set_reads_back_from_its_copy_and_its_old_segment_goes() {
        let dir = tempfile::tempdir().unwrap();
        let segments_dir = dir.path().join("segments");
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let kept = stored_set(&store, 1, 0, 100).await;
        let dead = stored_set(&store, 2, 0, 2 << 20).await;
        let mut writes = WriteSet::new();
        writes.delete_set(2, &dead);
        store.commit(writes).await.unwrap();
        // The active segment is mostly dead: sealed, it is a candidate.
        assert!(store.compaction_candidates(50).is_empty());
        assert!(store.seal_mostly_dead_active(50).unwrap());
        assert!(
            !store.seal_mostly_dead_active(50).unwrap(),
            "the new one is empty"
        );
        let candidates = store.compaction_candidates(50);
        assert_eq!(candidates.len(), 1);
        assert_eq!(candidates[0].id, kept.location.segment());
        assert!(store.set_is_stored(1, &kept).unwrap());
        assert!(!store.set_is_stored(2, &dead).unwrap());

        let copy = store.copy_set(&kept).unwrap();
        assert_ne!(copy.location.segment(), kept.location.segment());
        let mut writes = WriteSet::new();
        writes.move_set(1, &kept, &copy);
        store.commit(writes).await.unwrap();
        let old = segments_dir.join(format!("{:016}.seg", kept.location.segment()));
        assert!(!old.exists(), "the old segment was deleted");
        assert!(!store.set_is_stored(1, &kept).unwrap());
        assert!(store.set_is_stored(1, &copy).unwrap());
        // The copy is the same sealed body: it opens as the same set.
        let read = store.read_set(keys(), 1, &copy).unwrap();
        assert_eq!(read.messages[0].payload, Bytes::from(vec![0u8; 100]));
        drop(store);
        committer.join();

        // After a restart the header still points at the copy.
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let sets = store.load_sets(1).unwrap();
        store.remove_unreferenced_blobs();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].location, copy.location);
        assert_eq!(
            store.read_set(keys(), 1, &sets[0]).unwrap().messages.len(),
            1
        );
        drop(store);
        committer.join();
    }

    #[test]
    fn live_share_is_exact_at_the_edge() {
        let stats = |file_bytes, live_bytes| SegmentStats {
            id: 1,
            file_bytes,
            live_bytes,
            active: false,
        };
        assert!(stats(100, 49).live_below(50));
        assert!(!stats(100, 50).live_below(50));
        assert!(!stats(0, 0).live_below(50));
        assert_eq!(stats(100, 30).dead_bytes(), 70);
    }
}
