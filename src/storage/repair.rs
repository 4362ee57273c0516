//! `tallyq repair`: rebuilds each topic's log and offsets from the segments,
//! after start-up verification (`verify.rs`) refused a data dir.
//!
//! Segments are the truth for the logs: every set is a frame that names its
//! topic, offsets, count, bytes and publish time (`frame.rs`), and no key is
//! needed to read that. Repair, with the broker stopped:
//!
//! 1. opens the index (sled) and the segments without verifying them;
//! 2. reads every indexed set whole (both CRCs): a set whose segment is
//!    missing or short, whose frame is damaged or names another set, is
//!    *lost*: its header is deleted and its messages reported;
//! 3. scans every segment's frames: an intact frame of a known topic past
//!    that topic's end in the index is *re-indexed* (a set the index forgot,
//!    or a write that never committed: its producer never heard OK, so it
//!    may now be delivered although the producer retried);
//! 4. sets each topic's next offset above every offset the index or any
//!    frame (intact, damaged body, truncated) ever held: never reused;
//! 5. draws ids past every topic id found in frames, so a lost topic's id is
//!    not handed to a new topic whose log would then include its frames;
//! 6. reports what it cannot prove: subscription cursors that may be behind
//!    (messages that may be delivered again), produce usage of re-indexed
//!    messages, commits the index lost (acks, usage, ledger), frames of
//!    topics the index does not know, corrupt bytes skipped;
//! 7. writes an audit entry (`storage.repair`) and a new commit sequence in
//!    the same batch, flushes, and rewrites the high-water mark (`mark.rs`)
//!    to match, so the next start-up verifies clean.
//!
//! An index that sled cannot open at all is beyond this repair (topics,
//! tenants and keys live only there): it fails naming the cause.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::frame;
use super::mark::{self, HighWater, MarkState};
use super::records::{
    AuditRecord, BlobRef, CountersRecord, CursorRecord, SetHeaderRecord, SubscriptionRecord,
    TopicRecord, TopicStateRecord,
};
use super::scan::ScannedFrame;
use super::segments::Segments;
use super::store::{decode, open_sled};
use super::verify;
use super::{keys, StorageError, StorageResult};

/// Most ids drawn to move sled's id generator past the ids frames hold.
const MAX_IDS_DRAWN: u64 = 10_000_000;

/// What a repair did and what it could not recover.
#[derive(Debug, Default, Clone)]
pub struct RepairReport {
    /// Topics whose log or next offset changed.
    pub topics_repaired: u64,
    /// Sets re-indexed from the segments, and their messages.
    pub sets_reindexed: u64,
    /// Messages in them.
    pub messages_reindexed: u64,
    /// Indexed sets whose bytes are gone or damaged (their headers removed).
    pub sets_lost: u64,
    /// Messages in them.
    pub messages_lost: u64,
    /// Damaged bytes skipped in the segments: ranges without a frame,
    /// truncated frames and frames whose body fails its CRC.
    pub corrupt_frames_skipped: u64,
    /// Commits the index had lost against the high-water mark.
    pub commits_lost: u64,
    /// Subscriptions whose cursor may be behind what they had consumed.
    pub cursors_unproven: u64,
    /// Every finding, in words, one a line.
    pub lines: Vec<String>,
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        write!(
            f,
            "summary: {} topics repaired; {} sets ({} messages) re-indexed from the segments; \
             {} sets ({} messages) lost; {} corrupt frames skipped; {} commits lost by the index; \
             {} subscription cursors unproven",
            self.topics_repaired,
            self.sets_reindexed,
            self.messages_reindexed,
            self.sets_lost,
            self.messages_lost,
            self.corrupt_frames_skipped,
            self.commits_lost,
            self.cursors_unproven
        )
    }
}

/// Repairs the data dir (the broker must be stopped; sled's lock makes sure).
pub fn repair(data_dir: &Path, cache_capacity_bytes: u64) -> StorageResult<RepairReport> {
    if !data_dir.join("db").is_dir() {
        return Err(StorageError::Segment(format!(
            "{} holds no index (db/): nothing to repair",
            data_dir.display()
        )));
    }
    let mut report = RepairReport::default();
    let db = open_index(data_dir, cache_capacity_bytes, &mut report)?;
    let tree = db.open_tree("tallyq")?;
    let segments = Segments::open(&data_dir.join("segments"))?;
    let mut batch = sled::Batch::default();

    let index_seq = verify::index_seq(&tree)?;
    let mark = mark::read(data_dir)
        .map_err(|e| StorageError::io(format!("cannot read {}", mark::FILE), e))?;
    if let MarkState::At(at) = mark {
        if at > index_seq {
            report.commits_lost = at - index_seq;
            report.lines.push(format!(
                "the index had lost {} commits (it held {index_seq}, the high-water mark {at}): \
                 acks, cursor moves, usage and ledger entries of those commits are gone",
                at - index_seq
            ));
        }
    }

    let mut sets = verify::indexed_sets(&tree)?;
    if let Some(newest) = sets
        .iter()
        .filter_map(|s| s.header.blob.map(|b| b.segment))
        .max()
    {
        segments.start_above(newest)?;
    }
    let scans = verify::scan_segments(&segments)?;
    let frames: HashMap<(u64, u64), frame::FrameHeader> = scans
        .values()
        .flat_map(|s| s.frames.iter())
        .map(|f| ((f.segment, f.position), f.header))
        .collect();

    // Each topic's end as the index knew it, lost sets included: a next
    // offset never goes below it.
    let ends = verify::index_ends(&tree, &sets)?;

    // 2. Indexed sets whose bytes are gone or damaged are lost.
    sets.retain(|set| {
        let problem = verify::disagreement(set, &scans, &frames, &segments).or_else(|| {
            let blob = set.header.blob?;
            segments
                .read_frame(&blob)
                .err()
                .map(|e| format!("{}: {e}", set.describe()))
        });
        match problem {
            Some(problem) => {
                report.sets_lost += 1;
                report.messages_lost += set.header.count as u64;
                report.lines.push(format!("lost: {problem}"));
                batch.remove(keys::set_header(set.topic_id, set.first_offset));
                false
            }
            None => true,
        }
    });

    for scan in scans.values() {
        for (start, end) in &scan.skipped {
            report.corrupt_frames_skipped += 1;
            report.lines.push(format!(
                "skipped: bytes {start}..{end} of segment {} hold no frame",
                scan.segment
            ));
        }
        if let Some(t) = &scan.truncated {
            report.corrupt_frames_skipped += 1;
            let id = t.header.identity;
            report.lines.push(format!(
                "skipped: the frame of topic {} offsets {}..{} at {} of segment {} is cut short",
                id.topic_id,
                id.first_offset,
                id.end(),
                t.position,
                t.segment
            ));
        }
    }

    // 3. Frames past each known topic's end are re-indexed.
    let mut candidates: BTreeMap<u64, Vec<ScannedFrame>> = BTreeMap::new();
    let mut unknown: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for f in scans.values().flat_map(|s| s.frames.iter()) {
        let id = f.header.identity;
        match ends.get(&id.topic_id) {
            Some(end) if id.first_offset >= *end => {
                candidates.entry(id.topic_id).or_default().push(*f)
            }
            Some(_) => {}
            None => {
                let entry = unknown.entry(id.topic_id).or_default();
                entry.0 += 1;
                entry.1 += id.count as u64;
            }
        }
    }
    let mut reindexed: BTreeMap<u64, (u64, u64, i64)> = BTreeMap::new(); // topic -> (first, end, newest publish)
    for (topic_id, mut found) in candidates {
        // Offset order; of two frames with one first offset, the later written.
        found.sort_by_key(|f| {
            (
                f.header.identity.first_offset,
                std::cmp::Reverse((f.segment, f.position)),
            )
        });
        let mut covered = ends[&topic_id];
        for f in found {
            let id = f.header.identity;
            if id.first_offset < covered {
                continue;
            }
            match read_whole(&segments, &f) {
                Some(blob) => {
                    batch.insert(
                        keys::set_header(topic_id, id.first_offset),
                        prost::Message::encode_to_vec(&SetHeaderRecord {
                            count: id.count,
                            bytes: id.bytes,
                            publish_ms: id.publish_ms,
                            blob: Some(blob),
                        }),
                    );
                    report.sets_reindexed += 1;
                    report.messages_reindexed += id.count as u64;
                    let entry = reindexed.entry(topic_id).or_insert((
                        id.first_offset,
                        id.end(),
                        id.publish_ms,
                    ));
                    entry.1 = id.end();
                    entry.2 = entry.2.max(id.publish_ms);
                    covered = id.end();
                }
                None => {
                    report.corrupt_frames_skipped += 1;
                    report.lines.push(format!(
                        "skipped: the frame of topic {topic_id} offsets {}..{} at {} of segment {} fails its checksum",
                        id.first_offset, id.end(), f.position, f.segment
                    ));
                }
            }
        }
    }
    for (topic_id, (first, end, _)) in &reindexed {
        report.lines.push(format!(
            "re-indexed: topic {topic_id} offsets {first}..{end} from the segments (sets the index \
             had forgotten, or writes that never committed: those may be delivered although their \
             producer retried); their produce usage is not in the usage counters"
        ));
    }
    for (topic_id, (sets, messages)) in &unknown {
        report.lines.push(format!(
            "not recovered: {sets} sets ({messages} messages) of topic id {topic_id}, which the \
             index does not know (deleted, or its topic record was lost)"
        ));
    }

    // 4. Next offsets above every offset ever seen.
    let high_water = verify::frame_high_water(&scans);
    for item in tree.scan_prefix([keys::TOPIC]) {
        let (key, value) = item?;
        let topic: TopicRecord = decode(&key, &value)?;
        let state_key = keys::topic_state(topic.id);
        let mut state: TopicStateRecord = match tree.get(&state_key)? {
            Some(v) => decode(&state_key, &v)?,
            None => TopicStateRecord::default(),
        };
        let index_end = ends.get(&topic.id).copied().unwrap_or(0);
        let frames_end = high_water.get(&topic.id).copied().unwrap_or(0);
        let again = reindexed.get(&topic.id);
        state.next_offset = index_end.max(frames_end).max(again.map_or(0, |r| r.1));
        if let Some(r) = again {
            state.last_publish_ms = state.last_publish_ms.max(r.2);
        }
        let lost_here = report
            .lines
            .iter()
            .any(|l| l.starts_with("lost: ") && l.contains(&format!("topic {} offsets", topic.id)));
        if state.next_offset != index_end || again.is_some() || lost_here {
            report.topics_repaired += 1;
            report.lines.push(format!(
                "topic {}/{} (id {}): next offset {}",
                topic.tenant, topic.name, topic.id, state.next_offset
            ));
        }
        batch.insert(state_key, prost::Message::encode_to_vec(&state));
        if let Some((first, end, _)) = again {
            unproven_cursors(&tree, topic.id, &topic.name, *first, *end, &mut report)?;
        }
    }

    // 5. Ids past every topic id frames hold.
    if let Some(max_id) = high_water.keys().max().copied() {
        let mut drawn = 0;
        while db.generate_id()? <= max_id && drawn < MAX_IDS_DRAWN {
            drawn += 1;
        }
    }

    // 7. Audit, new sequence, flush, mark.
    let seq = index_seq.max(match mark {
        MarkState::At(at) => at,
        _ => 0,
    }) + 1;
    let summary = report.to_string();
    let audit = AuditRecord {
        time_ms: now_ms(),
        actor: "operator".into(),
        action: "storage.repair".into(),
        tenant: String::new(),
        detail: summary.lines().last().unwrap_or_default().to_string(),
    };
    batch.insert(
        keys::audit(db.generate_id()?),
        prost::Message::encode_to_vec(&audit),
    );
    batch.insert(
        keys::commit_seq(),
        prost::Message::encode_to_vec(&CountersRecord { values: vec![seq] }),
    );
    tree.apply_batch(batch)?;
    db.flush()?;
    std::fs::File::open(data_dir.join("db").join("db"))
        .and_then(|log| log.sync_data())
        .map_err(|e| StorageError::io("cannot sync sled's log to disk", e))?;
    segments.sync_dirty()?;
    HighWater::open(data_dir, seq)
        .map_err(|e| StorageError::io(format!("cannot write {}", mark::FILE), e))?;
    Ok(report)
}

/// Opens sled. When it refuses, what is damaged may be a file sled can do
/// without, tried in turn: its config file (`db/conf`: segment size,
/// compression and version, which tallyq always sets the same; sled writes a
/// missing one anew), then its snapshots (`db/snap.*`, a summary of its log
/// that sled rebuilds by reading the whole log when there is none). Each is
/// moved aside, never deleted, and put back if sled still
/// refuses. (Moved aside: `db/damaged.conf`, `db/damaged.snap.*`.)
fn open_index(
    data_dir: &Path,
    cache_capacity_bytes: u64,
    report: &mut RepairReport,
) -> StorageResult<sled::Db> {
    let db_dir = data_dir.join("db");
    let first = match open_sled(&db_dir, cache_capacity_bytes) {
        Ok(db) => return Ok(db),
        Err(e) => e,
    };
    let unopenable = |e: StorageError| StorageError::Open {
        path: data_dir.to_path_buf(),
        source: Box::new(e),
    };
    if first.to_string().contains("could not acquire lock") {
        return Err(unopenable(first));
    }
    let snapshots: Vec<std::path::PathBuf> = std::fs::read_dir(&db_dir)
        .map_err(|e| StorageError::io("cannot list db/", e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("snap.")
        })
        .collect();
    let attempts: [(&str, Vec<std::path::PathBuf>); 2] = [
        ("its config file", vec![db_dir.join("conf")]),
        ("its snapshots", snapshots),
    ];
    let mut moved: Vec<(std::path::PathBuf, std::path::PathBuf)> = Vec::new();
    for (what, files) in attempts {
        let files: Vec<_> = files.into_iter().filter(|f| f.exists()).collect();
        if files.is_empty() {
            continue;
        }
        for file in files {
            // `damaged.` in front: sled reads every `snap.*` as a snapshot.
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let aside = db_dir.join(format!("damaged.{name}"));
            std::fs::rename(&file, &aside).map_err(|e| {
                StorageError::io(format!("cannot move {} aside", file.display()), e)
            })?;
            moved.push((file, aside));
        }
        if let Ok(db) = open_sled(&db_dir, cache_capacity_bytes) {
            report.lines.push(format!(
                "sled refused the index ({first}); with {what} moved aside (db/damaged.*) it opened"
            ));
            return Ok(db);
        }
        // Not that: put it back before the next attempt.
        for (file, aside) in moved.drain(..) {
            let _ = std::fs::rename(&aside, &file);
        }
    }
    Err(unopenable(first))
}

/// Reads a scanned frame whole and checks it; its reference when intact.
fn read_whole(segments: &Segments, f: &ScannedFrame) -> Option<BlobRef> {
    let file = segments
        .files()
        .into_iter()
        .find(|(id, _)| *id == f.segment)?
        .1;
    let mut bytes = vec![0; f.header.frame_len() as usize];
    file.read_exact_at(&mut bytes, f.position).ok()?;
    frame::decode(&bytes).ok()?;
    Some(BlobRef {
        segment: f.segment,
        position: f.position,
        len: bytes.len() as u32,
        crc32: crc32fast::hash(&bytes),
    })
}

/// Reports the subscriptions of a topic whose cursor is below re-indexed
/// offsets `first..end`: the index lost how far they had consumed, so those
/// messages may be delivered to them again.
fn unproven_cursors(
    tree: &sled::Tree,
    topic_id: u64,
    topic: &str,
    first: u64,
    end: u64,
    report: &mut RepairReport,
) -> StorageResult<()> {
    for item in tree.scan_prefix(keys::id_prefix(keys::SUBSCRIPTION, topic_id)) {
        let (key, value) = item?;
        let sub: SubscriptionRecord = decode(&key, &value)?;
        let cursor_key = keys::cursor(sub.id);
        let cursor = match tree.get(&cursor_key)? {
            Some(v) => decode::<CursorRecord>(&cursor_key, &v)?.next_offset,
            None => 0,
        };
        if cursor < end {
            report.cursors_unproven += 1;
            let from = cursor.max(first);
            report.lines.push(format!(
                "unproven: subscription {} of topic {topic} has its cursor at {cursor}; offsets \
                 {from}..{end} ({} messages) may be delivered to it again",
                sub.name,
                end - from
            ));
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
