//! Start-up verification: the index (sled) and the segments must agree
//! before anything is served. Segments are the truth; the index is checked.
//!
//! What is checked, and why it is cheap (one scan of every segment's frame
//! headers, bodies skipped, `scan.rs`; one read of every set header and
//! topic row, which loading reads anyway):
//!
//! 1. the index has not gone back in time: its commit sequence is not below
//!    the high-water mark kept outside sled (`mark.rs`);
//! 2. every set header's segment exists (a deleted segment is named
//!    missing, never recreated empty) and is long enough for the set;
//! 3. the frame at every indexed position is the set the index says it is:
//!    same topic, first offset, count and length (a frame header whose CRC
//!    fails there counts as damage; the body's CRC is checked when the set is
//!    read, and a set failing it is quarantined by the broker, not fatal);
//! 4. no topic's next offset is at or below an offset a frame in the
//!    segments holds: each topic's next offset is taken above every frame of
//!    that topic ([`Verified::high_water`]) and stored so before anything is
//!    served (the frames themselves may go with their segment), so offsets
//!    are never reused.
//!
//! Frames past what the index knows for their topic are normal when the
//! index is not behind the mark: they are writes whose group never
//! committed (a crash between appending and the flush, a failed or
//! "outcome unknown" commit). Their producers never heard OK; they are not
//! served, but their offsets are skipped (item 4). When the index *is*
//! behind the mark, they may be acknowledged messages it forgot: start-up
//! refuses and `tallyq repair` re-indexes them (`repair.rs`).
//!
//! Any damage makes [`verify`] fail with [`StorageError::Damaged`], which
//! names each problem and points to `tallyq repair --data-dir DIR`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::frame::FrameHeader;
use super::mark::{self, MarkState};
use super::records::{CountersRecord, SetHeaderRecord, TopicRecord, TopicStateRecord};
use super::scan::{self, SegmentScan};
use super::segments::Segments;
use super::store::decode;
use super::{keys, StorageError, StorageResult};

/// Problems named in the error; the rest are counted.
const PROBLEMS_SHOWN: usize = 8;

/// What verification learned, kept by the store.
#[derive(Debug, Default)]
pub struct Verified {
    /// Per topic id: one past the highest offset any frame in the segments
    /// holds (a topic's next offset is never below it).
    pub high_water: HashMap<u64, u64>,
    /// The index's commit sequence.
    pub index_seq: u64,
}

/// One set header of the index.
pub(super) struct IndexedSet {
    pub(super) topic_id: u64,
    pub(super) first_offset: u64,
    pub(super) header: SetHeaderRecord,
}

impl IndexedSet {
    pub(super) fn end(&self) -> u64 {
        self.first_offset + self.header.count as u64
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "topic {} offsets {}..{}",
            self.topic_id,
            self.first_offset,
            self.end()
        )
    }
}

/// The index's commit sequence (0 for an index written before there was one).
pub(super) fn index_seq(tree: &sled::Tree) -> StorageResult<u64> {
    let key = keys::commit_seq();
    Ok(match tree.get(&key)? {
        Some(value) => decode::<CountersRecord>(&key, &value)?
            .values
            .first()
            .copied()
            .unwrap_or(0),
        None => 0,
    })
}

/// Every set header of the index, in key order.
pub(super) fn indexed_sets(tree: &sled::Tree) -> StorageResult<Vec<IndexedSet>> {
    let mut sets = Vec::new();
    for item in tree.scan_prefix([keys::SET_HEADER]) {
        let (key, value) = item?;
        let header: SetHeaderRecord = decode(&key, &value)?;
        let (Some(topic_id), Some(first_offset)) = (keys::u64_at(&key, 1), keys::u64_at(&key, 9))
        else {
            return Err(StorageError::Corrupt {
                key: hex::encode(&key),
                reason: "a set header key without topic and offset".into(),
            });
        };
        sets.push(IndexedSet {
            topic_id,
            first_offset,
            header,
        });
    }
    Ok(sets)
}

/// Each stored topic's end as the index knows it: its counters' next offset,
/// or the end of its newest set when that is further.
pub(super) fn index_ends(
    tree: &sled::Tree,
    sets: &[IndexedSet],
) -> StorageResult<BTreeMap<u64, u64>> {
    let mut ends = BTreeMap::new();
    for item in tree.scan_prefix([keys::TOPIC]) {
        let (key, value) = item?;
        let topic: TopicRecord = decode(&key, &value)?;
        let state_key = keys::topic_state(topic.id);
        let state = match tree.get(&state_key)? {
            Some(v) => decode::<TopicStateRecord>(&state_key, &v)?.next_offset,
            None => 0,
        };
        ends.insert(topic.id, state);
    }
    for set in sets {
        if let Some(end) = ends.get_mut(&set.topic_id) {
            *end = (*end).max(set.end());
        }
    }
    Ok(ends)
}

/// Scans every segment's frame headers.
pub(super) fn scan_segments(segments: &Segments) -> StorageResult<BTreeMap<u64, SegmentScan>> {
    let mut scans = BTreeMap::new();
    for (id, file) in segments.files() {
        let scan = scan::scan_file(id, &file)
            .map_err(|e| StorageError::io(format!("cannot scan segment {id}"), e))?;
        scans.insert(id, scan);
    }
    Ok(scans)
}

/// Per topic id, one past the highest offset any frame header (whole or
/// truncated) in `scans` holds.
pub(super) fn frame_high_water(scans: &BTreeMap<u64, SegmentScan>) -> HashMap<u64, u64> {
    let mut high = HashMap::new();
    let headers = scans
        .values()
        .flat_map(|s| s.frames.iter().chain(s.truncated.iter()));
    for frame in headers {
        let id = frame.header.identity;
        let end = high.entry(id.topic_id).or_insert(0);
        *end = (*end).max(id.end());
    }
    high
}

/// How the frame at an indexed set's position disagrees with the index, if
/// it does (`None`: it agrees, or the set was stored before frames existed).
pub(super) fn disagreement(
    set: &IndexedSet,
    scans: &BTreeMap<u64, SegmentScan>,
    frames: &HashMap<(u64, u64), FrameHeader>,
    segments: &Segments,
) -> Option<String> {
    let Some(blob) = set.header.blob else {
        return Some(format!(
            "{}: its header has no segment reference",
            set.describe()
        ));
    };
    let Some(scan) = scans.get(&blob.segment) else {
        return Some(format!(
            "{}: segment {} is missing",
            set.describe(),
            blob.segment
        ));
    };
    let needed = blob.position + blob.len as u64;
    if needed > scan.len {
        return Some(format!(
            "{}: segment {} is {} bytes long, the set needs {needed} (the segment is truncated)",
            set.describe(),
            blob.segment,
            scan.len
        ));
    }
    match frames.get(&(blob.segment, blob.position)) {
        Some(frame) => {
            let id = frame.identity;
            if id.topic_id != set.topic_id
                || id.first_offset != set.first_offset
                || id.count != set.header.count
                || frame.frame_len() != blob.len as u64
            {
                Some(format!(
                    "{}: the frame at {} of segment {} holds topic {} offsets {}..{} ({} bytes)",
                    set.describe(),
                    blob.position,
                    blob.segment,
                    id.topic_id,
                    id.first_offset,
                    id.end(),
                    frame.frame_len()
                ))
            } else {
                None
            }
        }
        // No frame starts there: an unframed (older) set whose bytes are
        // intact, or a damaged frame header.
        None => match segments.read_frame(&blob) {
            Ok((None, _)) => None,
            _ => Some(format!(
                "{}: the frame header at {} of segment {} is damaged",
                set.describe(),
                blob.position,
                blob.segment
            )),
        },
    }
}

/// Checks the index against the segments (the module doc says what).
pub(super) fn verify(
    data_dir: &Path,
    tree: &sled::Tree,
    segments: &Segments,
) -> StorageResult<Verified> {
    let mut problems = Vec::new();
    let index_seq = index_seq(tree)?;
    let mark = mark::read(data_dir)
        .map_err(|e| StorageError::io(format!("cannot read {}", mark::FILE), e))?;
    match mark {
        MarkState::At(at) if at > index_seq => problems.push(format!(
            "the index (db/) went back in time: it holds {index_seq} commits, {} says {at} were made",
            mark::FILE
        )),
        MarkState::Missing if index_seq > 0 => problems.push(format!(
            "{} is missing although the index holds {index_seq} commits",
            mark::FILE
        )),
        MarkState::Damaged => problems.push(format!("{} is damaged", mark::FILE)),
        _ => {}
    }

    let sets = indexed_sets(tree)?;
    // Before anything is appended: the active segment goes above every id
    // the index refers to, so a deleted segment stays missing.
    let newest_referenced = sets
        .iter()
        .filter_map(|s| s.header.blob.map(|b| b.segment))
        .max();
    if let Some(newest) = newest_referenced {
        segments.start_above(newest)?;
    }
    let scans = scan_segments(segments)?;
    let frames: HashMap<(u64, u64), FrameHeader> = scans
        .values()
        .flat_map(|s| s.frames.iter())
        .map(|f| ((f.segment, f.position), f.header))
        .collect();
    for set in &sets {
        if let Some(problem) = disagreement(set, &scans, &frames, segments) {
            problems.push(problem);
        }
    }

    let ends = index_ends(tree, &sets)?;
    let high_water = frame_high_water(&scans);
    let mut uncommitted = 0;
    for frame in scans.values().flat_map(|s| s.frames.iter()) {
        let id = frame.header.identity;
        if ends.get(&id.topic_id).is_some_and(|end| id.end() > *end) {
            uncommitted += 1;
        }
    }
    if !problems.is_empty() {
        return Err(damaged(data_dir, &problems));
    }
    if uncommitted > 0 {
        tracing::warn!(data_dir = %data_dir.display(), frames = uncommitted,
            "message sets in the segments past the index's end: writes that never committed; \
             they are not served and their offsets are not reused");
    }
    // Stored before anything is served: the frames may go with their
    // segment (nothing refers to them), the raised offsets must not.
    for (topic_id, end) in &ends {
        let high = high_water.get(topic_id).copied().unwrap_or(0);
        if high > *end {
            raise_next_offset(tree, *topic_id, high)?;
        }
    }
    Ok(Verified {
        high_water,
        index_seq,
    })
}

/// Stores `next_offset` as a topic's next offset (its other counters kept).
/// The caller flushes before anything is served.
fn raise_next_offset(tree: &sled::Tree, topic_id: u64, next_offset: u64) -> StorageResult<()> {
    let key = keys::topic_state(topic_id);
    let mut state = match tree.get(&key)? {
        Some(v) => decode::<TopicStateRecord>(&key, &v)?,
        None => TopicStateRecord::default(),
    };
    state.next_offset = state.next_offset.max(next_offset);
    tree.insert(key, prost::Message::encode_to_vec(&state))?;
    Ok(())
}

/// The error that refuses to start on damage: the problems (the first few by
/// name) and the way out.
fn damaged(data_dir: &Path, problems: &[String]) -> StorageError {
    let mut text = problems
        .iter()
        .take(PROBLEMS_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > PROBLEMS_SHOWN {
        text.push_str(&format!("; and {} more", problems.len() - PROBLEMS_SHOWN));
    }
    StorageError::Damaged {
        problems: problems.len(),
        report: format!(
            "{text}. Nothing was served. Run `tallyq repair --data-dir {}` to rebuild the index from the segments",
            data_dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::broker::topic::{OverflowPolicy, SetSummary, TopicSettings};
    use crate::broker::{Message, MessageSet};
    use crate::crypto::{DataKey, TenantKeys};
    use crate::storage::{SetIdentity, StorageError, Store, WriteSet};

    fn topic(id: u64) -> TopicSettings {
        TopicSettings {
            id,
            tenant: "acme".into(),
            name: format!("t{id}"),
            expiry_seconds: 60,
            max_bytes: 1 << 20,
            overflow_policy: OverflowPolicy::ReclaimOldest,
            dedup_window_seconds: 0,
            created_ms: 0,
        }
    }

    /// One tenant's keys (sets are sealed under them).
    fn test_keys() -> TenantKeys {
        TenantKeys::derive("acme", &DataKey::generate())
    }

    /// Appends a set of `count` messages at `first_offset` of topic 7.
    fn append(store: &Store, first_offset: u64, count: u32) -> SetSummary {
        let identity = SetIdentity {
            topic_id: 7,
            first_offset,
            count,
            bytes: count as u64,
            publish_ms: 0,
        };
        let messages = vec![Message::default(); count as usize];
        let location = store
            .append_set(
                &test_keys(),
                identity,
                MessageSet {
                    publish_ms: 0,
                    messages,
                },
            )
            .unwrap();
        SetSummary {
            first_offset,
            count,
            bytes: count as u64,
            publish_ms: 0,
            location,
        }
    }

    /// The "outcome unknown" and crash path: a set appended whose commit
    /// never reached the index does not give its offsets out again.
    #[tokio::test]
    async fn a_frame_whose_commit_never_landed_keeps_its_offsets_used() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
            let mut writes = WriteSet::new();
            writes.put_topic(&topic(7));
            writes.put_set(7, &append(&store, 0, 3));
            store.commit(writes).await.unwrap();
            // Appended, never committed (as when the flush failed or the
            // process died before it).
            append(&store, 3, 4);
            store.sync_counters().await.unwrap();
            drop(store);
            committer.join();
        }
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(store.topic_state(7).unwrap().next_offset, 7);
        assert_eq!(store.load_sets(7).unwrap().len(), 1, "never served");
        drop(store);
        committer.join();
        // Even once the frame is gone (its segment deleted as unreferenced,
        // here by hand with its neighbour), the raised offset holds.
        for entry in std::fs::read_dir(dir.path().join("segments")).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        let mut writes = WriteSet::new();
        writes.put_topic(&topic(8));
        let (store, _committer) = match Store::open(dir.path(), 8 << 20) {
            Err(e) => {
                assert!(e.to_string().contains("is missing"), "{e}");
                super::super::repair(dir.path(), 8 << 20).unwrap();
                Store::open(dir.path(), 8 << 20).unwrap()
            }
            Ok(opened) => opened,
        };
        assert_eq!(store.topic_state(7).unwrap().next_offset, 7);
        store.commit(writes).await.unwrap();
    }

    #[tokio::test]
    async fn an_index_behind_its_mark_or_a_missing_segment_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let older_mark;
        {
            let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
            let mut writes = WriteSet::new();
            writes.put_topic(&topic(7));
            writes.put_set(7, &append(&store, 0, 3));
            store.commit(writes).await.unwrap();
            older_mark = std::fs::read(dir.path().join(super::mark::FILE)).unwrap();
            store.commit(WriteSet::new()).await.unwrap();
            drop(store);
            committer.join();
        }
        // The index is one commit ahead of this older mark: fine.
        std::fs::write(dir.path().join(super::mark::FILE), &older_mark).unwrap();
        drop(Store::open(dir.path(), 8 << 20).unwrap());

        // A mark ahead of the index: refused, naming it and repair.
        let mut mark = super::mark::HighWater::open(dir.path(), 100).unwrap();
        mark.sync().unwrap();
        let refused = Store::open(dir.path(), 8 << 20).err().unwrap().to_string();
        assert!(refused.contains("went back in time"), "{refused}");
        assert!(refused.contains("tallyq repair --data-dir"), "{refused}");
        super::super::repair(dir.path(), 8 << 20).unwrap();
        drop(Store::open(dir.path(), 8 << 20).unwrap());

        // A deleted segment is named missing, and stays missing.
        for entry in std::fs::read_dir(dir.path().join("segments")).unwrap() {
            let path = entry.unwrap().path();
            if std::fs::metadata(&path).unwrap().len() > 0 {
                std::fs::remove_file(path).unwrap();
            }
        }
        let refused = Store::open(dir.path(), 8 << 20).err().unwrap();
        assert!(matches!(
            &refused,
            StorageError::Open { source, .. } if matches!(**source, StorageError::Damaged { .. })
        ));
        assert!(refused.to_string().contains("is missing"), "{refused}");
        let report = super::super::repair(dir.path(), 8 << 20).unwrap();
        assert_eq!((report.sets_lost, report.messages_lost), (1, 3));
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(store.topic_state(7).unwrap().next_offset, 3);
    }
}
