//! Segment files: where message payloads live, outside sled.
//!
//! sled keeps up to 16 entries in a leaf and rewrites the whole leaf when it
//! consolidates it, so 100 KB message sets stored as sled values were written
//! to disk about twenty times over (measured: 11 GB of writes for 0.54 GB of
//! messages). Payloads therefore go to append-only segment files, as Kafka and
//! JetStream store theirs, and sled keeps only a small [`BlobRef`] to each.
//!
//! The order that makes this crash-safe:
//! 1. a writer appends its blob to the active segment ([`Segments::append`])
//!    before it queues the sled write that refers to it;
//! 2. the group committer makes every segment written since its last commit
//!    durable ([`Segments::sync_dirty`], `fdatasync`) before it applies and
//!    flushes the sled batch;
//! 3. a blob no longer referred to is released only after the deletion of its
//!    reference committed; a segment whose blobs are all released is deleted.
//!
//! A crash between 1 and the sled flush leaves bytes nothing refers to; they
//! are never read and go away with their segment. At start-up the owner of the
//! references marks every live blob ([`Segments::mark_live`]) and
//! [`Segments::remove_unreferenced`] deletes the segments nothing refers to.
//! Segments hold blobs of every topic, so a segment lives as long as its
//! longest-retained blob.
//!
//! Message sets are appended as frames ([`Segments::append_frame`],
//! `frame.rs`): a plaintext header naming the set, then its opaque body. A
//! [`BlobRef`] always covers the whole frame and its CRC is that of the
//! frame's bytes, so a frame can be copied as opaque bytes. Start-up
//! verification (`verify.rs`) scans the frame headers ([`Segments::files`],
//! `scan.rs`) and moves the active segment above every id the index refers
//! to ([`Segments::start_above`]), so a deleted segment is reported missing
//! instead of coming back empty.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use super::compaction::SegmentStats;
use super::frame::{self, FrameHeader, SetIdentity};
use super::records::BlobRef;
use super::{StorageError, StorageResult};
use crate::sync::{MutexExt, RwLockExt};

/// A segment is sealed and a new one started once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// The segment being appended to.
struct Active {
    id: u64,
    file: Arc<File>,
    len: u64,
}

/// The segment files of one store. Shared by every writer and reader.
pub struct Segments {
    dir: PathBuf,
    active: Mutex<Active>,
    /// Open segments by id (the active one included).
    files: RwLock<HashMap<u64, Arc<File>>>,
    /// Bytes of live blobs per segment.
    live: Mutex<HashMap<u64, u64>>,
    /// Segments appended to since the committer last synced them.
    dirty: Mutex<BTreeSet<u64>>,
    /// A segment was created since the directory was last synced.
    directory_dirty: std::sync::atomic::AtomicBool,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::io(format!("{what} {}", path.display()), e)
}

fn segment_name(id: u64) -> String {
    format!("{id:016}.seg")
}

fn segment_id(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".seg")?.parse().ok()
}

impl Segments {
    /// Opens the segment directory and starts a fresh active segment after
    /// the newest existing one (an old segment's tail is never appended to
    /// again, so bytes a crash left unreferenced stay unreferenced).
    pub fn open(dir: &Path) -> StorageResult<Segments> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
        let mut files = HashMap::new();
        let mut newest = 0;
        for entry in std::fs::read_dir(dir).map_err(|e| io_error("cannot list", dir, e))? {
            let path = entry.map_err(|e| io_error("cannot list", dir, e))?.path();
            let Some(id) = segment_id(&path) else {
                continue;
            };
            let file = File::open(&path).map_err(|e| io_error("cannot open", &path, e))?;
            files.insert(id, Arc::new(file));
            newest = newest.max(id);
        }
        let active_id = newest + 1;
        let file = Arc::new(create_segment(dir, active_id)?);
        files.insert(active_id, file.clone());
        Ok(Segments {
            dir: dir.to_path_buf(),
            active: Mutex::new(Active {
                id: active_id,
                file,
                len: 0,
            }),
            files: RwLock::new(files),
            live: Mutex::new(HashMap::new()),
            dirty: Mutex::new(BTreeSet::new()),
            directory_dirty: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Appends `bytes` to the active segment and returns where they are. Not
    /// durable until the committer's next [`Segments::sync_dirty`], which runs
    /// before any commit queued after this call returns.
    #[allow(dead_code)] // for copying a frame as opaque bytes (compaction)
    pub fn append(&self, bytes: &[u8]) -> StorageResult<BlobRef> {
        self.append_parts(&[bytes])
    }

    /// Appends one message set as a frame (`frame.rs`): its header, then
    /// `body` (opaque bytes). The returned reference covers the whole frame,
    /// header and body, and its CRC is that of those bytes, so a frame can be
    /// copied elsewhere as it is.
    pub fn append_frame(&self, identity: &SetIdentity, body: &[u8]) -> StorageResult<BlobRef> {
        let header = frame::encode_header(identity, body);
        self.append_parts(&[&header, body])
    }

    /// Appends `parts` back to back as one blob.
    fn append_parts(&self, parts: &[&[u8]]) -> StorageResult<BlobRef> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let (id, file, position) = {
            let mut active = self.active.lock_unpoisoned();
            if active.len > 0 && active.len + len > SEGMENT_BYTES {
                let next = active.id + 1;
                let file = Arc::new(create_segment(&self.dir, next)?);
                self.directory_dirty.store(true, Ordering::SeqCst);
                self.files.write_unpoisoned().insert(next, file.clone());
                let sealed = active.id;
                *active = Active {
                    id: next,
                    file,
                    len: 0,
                };
                self.remove_if_dead(sealed, next);
            }
            let position = active.len;
            active.len += len;
            *self.live.lock_unpoisoned().entry(active.id).or_default() += len;
            (active.id, active.file.clone(), position)
        };
        let mut crc = crc32fast::Hasher::new();
        for part in parts {
            crc.update(part);
        }
        let blob = BlobRef {
            segment: id,
            position,
            len: len as u32,
            crc32: crc.finalize(),
        };
        if let Err(e) = write_parts_at(&file, parts, position) {
            // Nothing refers to the failed bytes: they must not keep their
            // segment alive (they stay a hole in the file, never read).
            self.release(std::slice::from_ref(&blob));
            return Err(StorageError::io(
                format!("cannot append to segment {id}"),
                e,
            ));
        }
        // Marked after the write: a commit queued after this returns finds it.
        self.dirty.lock_unpoisoned().insert(id);
        Ok(blob)
    }

    /// Reads a framed blob back: checks the reference's CRC, then decodes
    /// the frame; returns its header and body. A blob without the frame
    /// magic whose CRC holds was written before frames existed: its header
    /// is `None` and the body is the whole blob.
    pub fn read_frame(&self, blob: &BlobRef) -> StorageResult<(Option<FrameHeader>, Bytes)> {
        let (header, bytes) = self.read_frame_owned(blob)?;
        let bytes = Bytes::from(bytes);
        Ok(match header {
            Some(header) => (Some(header), bytes.slice(frame::HEADER_BYTES..)),
            None => (None, bytes),
        })
    }

    /// [`Segments::read_frame`], but the whole frame comes back as owned
    /// bytes (the body at [`frame::HEADER_BYTES`] when there is a header), so
    /// a caller can open a sealed body in place without copying it.
    pub fn read_frame_owned(
        &self,
        blob: &BlobRef,
    ) -> StorageResult<(Option<FrameHeader>, Vec<u8>)> {
        let bytes = self.read(blob)?;
        match frame::decode(&bytes) {
            Ok((header, _)) => Ok((Some(header), bytes)),
            Err(frame::FrameError::NoMagic) => Ok((None, bytes)),
            Err(e) => Err(StorageError::Segment(format!(
                "the frame at {} of segment {} is damaged: {e}",
                blob.position, blob.segment
            ))),
        }
    }

    /// Reads a blob back, checking its checksum.
    pub fn read(&self, blob: &BlobRef) -> StorageResult<Vec<u8>> {
        let file = self
            .files
            .read_unpoisoned()
            .get(&blob.segment)
            .cloned()
            .ok_or_else(|| StorageError::Segment(format!("segment {} is missing", blob.segment)))?;
        let mut buf = vec![0; blob.len as usize];
        file.read_exact_at(&mut buf, blob.position).map_err(|e| {
            StorageError::io(
                format!(
                    "cannot read {} bytes at {} of segment {}",
                    blob.len, blob.position, blob.segment
                ),
                e,
            )
        })?;
        if crc32fast::hash(&buf) != blob.crc32 {
            return Err(StorageError::Segment(format!(
                "checksum mismatch for {} bytes at {} of segment {}",
                blob.len, blob.position, blob.segment
            )));
        }
        Ok(buf)
    }

    /// Makes every segment appended to since the last call durable
    /// (`fdatasync`). Called by the committer before it applies a batch.
    pub fn sync_dirty(&self) -> StorageResult<()> {
        // A new segment's directory entry must be as durable as its bytes.
        if self.directory_dirty.swap(false, Ordering::SeqCst) {
            let synced = File::open(&self.dir).and_then(|d| d.sync_all());
            if let Err(e) = synced {
                self.directory_dirty.store(true, Ordering::SeqCst);
                return Err(io_error("cannot sync", &self.dir, e));
            }
        }
        let dirty = std::mem::take(&mut *self.dirty.lock_unpoisoned());
        for id in dirty {
            let file = self.files.read_unpoisoned().get(&id).cloned();
            if let Some(file) = file {
                if let Err(e) = file.sync_data() {
                    // Keep it dirty so the next commit tries again.
                    self.dirty.lock_unpoisoned().insert(id);
                    return Err(StorageError::io(format!("cannot sync segment {id}"), e));
                }
            }
        }
        Ok(())
    }

    /// Records a blob found referenced at start-up.
    pub fn mark_live(&self, blob: &BlobRef) {
        *self.live.lock_unpoisoned().entry(blob.segment).or_default() += blob.len as u64;
    }

    /// Deletes every segment no live blob is in (after start-up marked them).
    pub fn remove_unreferenced(&self) {
        let active = self.active.lock_unpoisoned().id;
        let ids: Vec<u64> = self.files.read_unpoisoned().keys().copied().collect();
        for id in ids {
            self.remove_if_dead(id, active);
        }
    }

    /// Releases blobs whose references were deleted (after that commit).
    pub fn release(&self, blobs: &[BlobRef]) {
        if blobs.is_empty() {
            return;
        }
        let active = self.active.lock_unpoisoned().id;
        {
            let mut live = self.live.lock_unpoisoned();
            for blob in blobs {
                if let Some(bytes) = live.get_mut(&blob.segment) {
                    *bytes = bytes.saturating_sub(blob.len as u64);
                }
            }
        }
        let segments: BTreeSet<u64> = blobs.iter().map(|b| b.segment).collect();
        for id in segments {
            self.remove_if_dead(id, active);
        }
    }

    /// Deletes segment `id` when it is not the active one and holds no live blob.
    fn remove_if_dead(&self, id: u64, active: u64) {
        if id == active {
            return;
        }
        {
            let mut live = self.live.lock_unpoisoned();
            if live.get(&id).is_some_and(|bytes| *bytes > 0) {
                return;
            }
            live.remove(&id);
        }
        self.files.write_unpoisoned().remove(&id);
        self.dirty.lock_unpoisoned().remove(&id);
        let path = self.dir.join(segment_name(id));
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a dead segment");
            }
        }
    }

    /// Every segment file open now (the active one included) by id, for
    /// verification and repair to scan (`scan.rs`).
    pub fn files(&self) -> Vec<(u64, Arc<File>)> {
        let mut files: Vec<(u64, Arc<File>)> = self
            .files
            .read_unpoisoned()
            .iter()
            .map(|(id, file)| (*id, file.clone()))
            .collect();
        files.sort_by_key(|(id, _)| *id);
        files
    }

    /// Moves the active segment above `id` when it is not yet (before
    /// anything was appended): a deleted newest segment must not come back as
    /// an empty file under its old id, it must stay missing.
    pub fn start_above(&self, id: u64) -> StorageResult<()> {
        let mut active = self.active.lock_unpoisoned();
        if active.id > id || active.len > 0 {
            return Ok(());
        }
        let next = id + 1;
        let file = Arc::new(create_segment(&self.dir, next)?);
        let old = active.id;
        {
            let mut files = self.files.write_unpoisoned();
            files.remove(&old);
            files.insert(next, file.clone());
        }
        let _ = std::fs::remove_file(self.dir.join(segment_name(old)));
        self.directory_dirty.store(true, Ordering::SeqCst);
        *active = Active {
            id: next,
            file,
            len: 0,
        };
        Ok(())
    }

    /// Segment files on disk and their total size in bytes.
    pub fn size_on_disk(&self) -> u64 {
        let files: Vec<Arc<File>> = self.files.read_unpoisoned().values().cloned().collect();
        files
            .iter()
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// Copies a blob, as the opaque bytes it is, to the active segment: read
    /// and checked against its CRC first, so a damaged blob is never copied.
    /// Returns where the copy is; like any append, it is durable after the
    /// committer's next [`Segments::sync_dirty`]. For compaction.
    pub fn copy(&self, blob: &BlobRef) -> StorageResult<BlobRef> {
        let bytes = self.read(blob)?;
        self.append(&bytes)
    }

    /// Every open segment's file and live bytes, oldest first (for
    /// compaction to choose what to rewrite).
    pub fn stats(&self) -> Vec<SegmentStats> {
        let (active, active_len) = {
            let active = self.active.lock_unpoisoned();
            (active.id, active.len)
        };
        let files: Vec<(u64, Arc<File>)> = self
            .files
            .read_unpoisoned()
            .iter()
            .map(|(id, file)| (*id, file.clone()))
            .collect();
        let live = self.live.lock_unpoisoned().clone();
        let mut stats: Vec<SegmentStats> = files
            .into_iter()
            .map(|(id, file)| SegmentStats {
                id,
                file_bytes: if id == active {
                    active_len
                } else {
                    file.metadata().map(|m| m.len()).unwrap_or_default()
                },
                live_bytes: live.get(&id).copied().unwrap_or_default(),
                active: id == active,
            })
            .collect();
        stats.sort_by_key(|s| s.id);
        stats
    }

    /// Starts a new active segment now (the old one is sealed, and deleted
    /// at once when nothing lives in it), so that space held by dead blobs
    /// in the active segment can be given back without waiting for it to
    /// fill. Nothing happens when the active segment is empty.
    pub fn seal_active(&self) -> StorageResult<()> {
        let mut active = self.active.lock_unpoisoned();
        if active.len == 0 {
            return Ok(());
        }
        let next = active.id + 1;
        let file = Arc::new(create_segment(&self.dir, next)?);
        self.directory_dirty.store(true, Ordering::SeqCst);
        self.files.write_unpoisoned().insert(next, file.clone());
        let sealed = active.id;
        *active = Active {
            id: next,
            file,
            len: 0,
        };
        self.remove_if_dead(sealed, next);
        Ok(())
    }
}

fn create_segment(dir: &Path, id: u64) -> StorageResult<File> {
    let path = dir.join(segment_name(id));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error("cannot create", &path, e))?;
    // Its directory entry is synced by the committer's next sync_dirty, before
    // any reference to it is committed.
    Ok(file)
}

/// Writes `parts` back to back at `at`: one `pwritev` (a frame's header
/// and body in one system call, not one each), then whatever a short write
/// left, part by part.
fn write_parts_at(file: &File, parts: &[&[u8]], at: u64) -> std::io::Result<()> {
    let slices: Vec<std::io::IoSlice<'_>> =
        parts.iter().map(|p| std::io::IoSlice::new(p)).collect();
    let mut written = loop {
        match rustix::io::pwritev(file, &slices, at) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    let mut at = at;
    for part in parts {
        let done = written.min(part.len());
        written -= done;
        file.write_all_at(&part[done..], at + done as u64)?;
        at += part.len() as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_read_back_and_dead_segments_are_deleted_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        let big = vec![7u8; (SEGMENT_BYTES / 2 + 1) as usize];
        let a = segments.append(&big).unwrap();
        let b = segments.append(b"hello").unwrap();
        assert_eq!(segments.read(&b).unwrap(), b"hello");
        // The third append does not fit: a new segment starts.
        let c = segments.append(&big).unwrap();
        assert_ne!(c.segment, a.segment);
        segments.sync_dirty().unwrap();
        segments.release(&[a]);
        assert!(
            dir.path().join(segment_name(a.segment)).exists(),
            "b still lives there"
        );
        segments.release(&[b]);
        assert!(!dir.path().join(segment_name(a.segment)).exists());
        assert_eq!(segments.read(&c).unwrap().len(), big.len());

        // Reopen: only what start-up marks live survives.
        drop(segments);
        let segments = Segments::open(dir.path()).unwrap();
        segments.remove_unreferenced();
        assert!(!dir.path().join(segment_name(c.segment)).exists());
        let mut corrupt = segments.append(b"abc").unwrap();
        corrupt.crc32 ^= 1;
        assert!(segments.read(&corrupt).is_err());
    }
}
