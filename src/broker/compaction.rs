//! Compaction, the broker side: which topics' sets live in a mostly-dead
//! segment, and moving them out so the segment's file is deleted.
//!
//! A segment holds every topic's sets and is deleted only when none of them
//! is retained any more, so one long-retained set could keep 64 MiB of other
//! topics' expired or deleted data on disk. A compaction pass takes the
//! sealed segments less than `compact_below_live_percent` live
//! ([`Store::compaction_candidates`](crate::storage::Store::compaction_candidates)),
//! fewest live bytes first, and for each one moves every retained set in it,
//! topic by topic, in chunks:
//!
//! 1. under the topic's log lock, each of the topic's sets in the segment
//!    whose header is stored (not one still queued, not one deleted) is
//!    copied, as opaque bytes, to the active segment;
//! 2. still under the lock, one write pointing those headers at their copies
//!    is enqueued and the log's summaries are switched to the copies; then
//!    the lock is released and the write waited for (the lock rule of
//!    `broker/mod.rs`: held while built and enqueued, not while it flushes);
//! 3. the committer syncs the copies before it applies the write and releases
//!    the old blobs after it; the last release deletes the segment.
//!
//! A failed commit fails the store and the server reloads its state from
//! disk, where the old headers still point at the old, intact segment. A
//! reader that read an old header just before the switch retries with the
//! new one (`topic/reader.rs`). A crash at any point leaves only bytes
//! nothing refers to, removed at the next start-up.
//!
//! Pacing: a normal pass (every `compaction_interval_seconds`) copies at
//! most [`NORMAL_PASS_BYTES`]; a pass while the disk is below the watermark
//! first seals the active segment if it is mostly dead (a deleted topic's
//! data in it is then given back too) and has no byte budget, but moves a
//! segment only when its live bytes fit in the free space. Each chunk copies
//! at most [`CHUNK_BYTES`] and yields, so produce is never held up for long.

use std::sync::Arc;

use super::topic::Topic;
use super::Broker;
use crate::error::Result;
use crate::observability::name;
use crate::storage::{SegmentStats, WriteSet};

/// A normal (not under disk pressure) pass copies at most this much.
pub const NORMAL_PASS_BYTES: u64 = 64 * 1024 * 1024;
/// One commit moves at most about this much of one topic's sets.
pub const CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// How compaction runs (from the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// A sealed segment with less than this percentage of its bytes live is
    /// compacted; 0 turns compaction off.
    pub below_live_percent: u8,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Segments whose sets were all moved (their files are deleted).
    pub segments: u64,
    /// Sets moved.
    pub sets: u64,
    /// Bytes copied.
    pub bytes: u64,
}

impl Broker {
    /// Whether the disk is below the watermark (compaction then runs at
    /// once and may seal the active segment).
    pub fn disk_is_low(&self) -> bool {
        self.store.disk().low().is_some()
    }

    /// One compaction pass; `pressure` when the disk is below the watermark
    /// (then the active segment may be sealed and there is no byte budget).
    pub async fn compact(&self, policy: CompactionPolicy, pressure: bool) -> Result<Compacted> {
        let mut done = Compacted::default();
        if policy.below_live_percent == 0 {
            return Ok(done);
        }
        if pressure
            && self
                .store
                .seal_mostly_dead_active(policy.below_live_percent)?
        {
            tracing::info!("disk below the watermark: sealed the mostly dead active segment");
        }
        let mut budget = if pressure {
            u64::MAX
        } else {
            NORMAL_PASS_BYTES
        };
        for segment in self.store.compaction_candidates(policy.below_live_percent) {
            if segment.live_bytes > budget {
                break;
            }
            if pressure && segment.live_bytes >= self.store.disk().space().free_bytes {
                tracing::warn!(
                    segment = segment.id,
                    live_bytes = segment.live_bytes,
                    "disk too full to compact this segment (its live sets do not fit)"
                );
                continue;
            }
            let moved = self.compact_segment(segment).await?;
            budget = budget.saturating_sub(moved.bytes);
            done.sets += moved.sets;
            done.bytes += moved.bytes;
            if moved.sets > 0 {
                done.segments += 1;
            }
        }
        Ok(done)
    }

    /// Moves every retained set out of `segment`; its file goes with the
    /// last one's release.
    async fn compact_segment(&self, segment: SegmentStats) -> Result<Compacted> {
        let mut moved = Compacted::default();
        for topic in self.all_topics() {
            // Sets up to this offset were looked at.
            let mut after = None;
            loop {
                let (sets, bytes) = self.move_chunk(&topic, segment.id, &mut after).await?;
                if sets == 0 {
                    break;
                }
                moved.sets += sets;
                moved.bytes += bytes;
                tokio::task::yield_now().await;
            }
        }
        if moved.sets > 0 {
            let deleted = !self
                .store
                .segment_stats()
                .iter()
                .any(|s| s.id == segment.id);
            self.metrics.count_labeled(name::COMPACTIONS, &[], 1);
            self.metrics
                .count_labeled(name::COMPACTED_BYTES, &[], moved.bytes);
            tracing::info!(
                segment = segment.id,
                file_bytes = segment.file_bytes,
                live_bytes = segment.live_bytes,
                moved_sets = moved.sets,
                moved_bytes = moved.bytes,
                deleted,
                "compacted a segment: its live sets were moved to the active segment"
            );
        }
        Ok(moved)
    }

    /// Moves up to [`CHUNK_BYTES`] of `topic`'s sets after offset `after`
    /// out of `segment`: returns the sets and bytes moved (0 when none is
    /// left) and advances `after` past what it looked at.
    async fn move_chunk(
        &self,
        topic: &Arc<Topic>,
        segment: u64,
        after: &mut Option<u64>,
    ) -> Result<(u64, u64)> {
        let mut log = topic.log.lock().await;
        if topic.is_deleted() {
            return Ok((0, 0));
        }
        let start = after.map_or(0, |o| log.sets.partition_point(|s| s.first_offset <= o));
        let mut writes = WriteSet::new();
        let mut copies = Vec::new();
        let mut bytes = 0;
        for index in start..log.sets.len() {
            let set = log.sets[index];
            *after = Some(set.first_offset);
            if set.location.segment() != segment
                || topic.quarantine.contains(set.first_offset)
                || !self.store.set_is_stored(topic.id, &set)?
            {
                continue;
            }
            let copy = match self.store.copy_set(&set) {
                Ok(copy) => copy,
                Err(e) => {
                    // A damaged set stays (its readers quarantine it); the
                    // segment is tried again by the next pass.
                    tracing::warn!(segment, topic = topic.id, first_offset = set.first_offset,
                        error = %e, "cannot copy a set out of a segment being compacted");
                    *after = None;
                    break;
                }
            };
            writes.move_set(topic.id, &set, &copy);
            bytes += copy.location.stored_bytes();
            copies.push((index, copy));
            if bytes >= CHUNK_BYTES {
                break;
            }
        }
        if copies.is_empty() {
            return Ok((0, 0));
        }
        let sets = copies.len() as u64;
        let commit = self.store.enqueue(writes, None).await?;
        for (index, copy) in copies {
            log.sets[index] = copy;
        }
        drop(log);
        commit.wait().await?;
        Ok((sets, bytes))
    }
}
