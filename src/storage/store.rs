//! [`Store`]: the handle every other module uses. Opening it recovers the
//! counter journal and starts the committer; reads go straight to sled and
//! the segment files, writes are queued to the committer.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::committer::{CommitRequest, Committer, Done, Job};
use super::counters::CounterJournal;
use super::disk::DiskMonitor;
use super::frame::{FrameHeader, SetIdentity};
use super::mark::HighWater;
use super::{private, verify};
use super::{
    records, segments, AfterCommit, CommitterHandle, PendingCommit, StorageError, StorageResult,
    StoreHealth, WriteSet,
};

/// The handle to the store: reads go straight to sled, writes through the
/// group committer. Clone freely.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    pub(super) tree: sled::Tree,
    segments: Arc<segments::Segments>,
    pub(super) commits: mpsc::Sender<Job>,
    health: StoreHealth,
    disk: Arc<DiskMonitor>,
    /// Per topic: one past the highest offset any frame in the segments
    /// holds, found by start-up verification (`verify.rs`).
    high_water: Arc<HashMap<u64, u64>>,
}

impl Store {
    /// Opens (or creates) the store under `data_dir`, folds the counter
    /// journal an earlier process left and starts the committer thread. The
    /// data dir and its folders are created 0700, and an existing one loses
    /// every group and other permission (`private.rs`).
    /// Fails (with [`StorageError::Open`] naming the step and its cause) when
    /// sled, sled's log, the segment files or the counter journal cannot be
    /// opened or read. Keep the [`CommitterHandle`] to
    /// [`join`](CommitterHandle::join) it at shutdown.
    pub fn open(
        data_dir: &Path,
        cache_capacity_bytes: u64,
    ) -> StorageResult<(Store, CommitterHandle)> {
        Store::open_steps(data_dir, cache_capacity_bytes).map_err(|source| StorageError::Open {
            path: data_dir.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// [`Store::open`] without naming the directory in its errors.
    fn open_steps(
        data_dir: &Path,
        cache_capacity_bytes: u64,
    ) -> StorageResult<(Store, CommitterHandle)> {
        private::create_private_dir(data_dir)
            .map_err(|e| StorageError::io("cannot create it", e))?;
        private::tighten(data_dir);
        let (path, segments_dir) = (data_dir.join("db"), data_dir.join("segments"));
        for dir in [&path, &segments_dir] {
            private::create_private_dir(dir)
                .map_err(|e| StorageError::io(format!("cannot create {}", dir.display()), e))?;
        }
        let disk = Arc::new(
            DiskMonitor::open(data_dir)
                .map_err(|e| StorageError::io("cannot open it to watch its free space", e))?,
        );
        let db = open_sled(&path, cache_capacity_bytes).map_err(|e| unopenable(data_dir, e))?;
        // sled's log, opened to fdatasync it after each flush (see the module doc).
        let sled_log = std::fs::File::open(path.join("db"))
            .map_err(|e| StorageError::io("cannot open sled's log for syncing", e))?;
        let tree = db.open_tree("tallyq")?;
        let segments = Arc::new(segments::Segments::open(&segments_dir)?);
        // Before anything is read or written: the index must agree with the
        // segments (a damaged data dir is refused, naming the damage).
        let verified = verify::verify(data_dir, &tree, &segments)?;
        // What verification stored (raised next offsets) is durable first.
        db.flush()?;
        sled_log
            .sync_data()
            .map_err(|e| StorageError::io("cannot sync sled's log to disk", e))?;
        let mark = HighWater::open(data_dir, verified.index_seq)
            .map_err(|e| StorageError::io(format!("cannot write {}", super::mark::FILE), e))?;
        // Before anything is served: a store that cannot fold what an earlier
        // process journaled would count usage short.
        let journal = CounterJournal::load(&tree)?;
        let health = StoreHealth::new(data_dir);
        let (commits, committer) = Committer {
            db: db.clone(),
            sled_log,
            tree: tree.clone(),
            segments: segments.clone(),
            journal,
            health: health.clone(),
            disk: disk.clone(),
            mark,
            seq: verified.index_seq,
        }
        .start()
        .map_err(|e| StorageError::io("cannot start the committer thread", e))?;
        let store = Store {
            db,
            tree,
            segments,
            commits,
            health,
            disk,
            high_water: Arc::new(verified.high_water),
        };
        Ok((store, committer))
    }

    /// Whether the store still takes writes. After a failed group commit it
    /// takes none until it is dropped and opened again (see `failure.rs`).
    pub fn health(&self) -> &StoreHealth {
        &self.health
    }

    /// Folds every journaled counter increment into its counter, so reads of
    /// counters that follow see everything committed before this call.
    pub async fn sync_counters(&self) -> StorageResult<()> {
        let writes = WriteSet {
            fold_counters: true,
            ..WriteSet::default()
        };
        self.commit(writes).await
    }

    /// Commits `writes` atomically and durably; resolves after the flush.
    pub async fn commit(&self, writes: WriteSet) -> StorageResult<()> {
        self.commit_then(writes, None).await
    }

    /// Like [`Store::commit`], running `after` on the committer thread once the
    /// write is durable and before any later write's hook.
    pub async fn commit_then(
        &self,
        writes: WriteSet,
        after: Option<AfterCommit>,
    ) -> StorageResult<()> {
        self.enqueue(writes, after).await?.wait().await
    }

    /// Queues `writes` and returns at once; the returned [`PendingCommit`]
    /// resolves after the flush. Queue order is commit order, so a caller that
    /// holds a lock while enqueueing gets its writes committed in lock order.
    pub async fn enqueue(
        &self,
        writes: WriteSet,
        after: Option<AfterCommit>,
    ) -> StorageResult<PendingCommit> {
        let (done, rx) = oneshot::channel();
        self.commits
            .send(Job::Commit(CommitRequest {
                writes,
                after,
                done: Done::One(done),
            }))
            .await
            .map_err(|_| StorageError::Closed)?;
        Ok(PendingCommit { rx })
    }

    /// Reads and decodes one record.
    pub(super) fn get<T: prost::Message + Default>(&self, key: &[u8]) -> StorageResult<Option<T>> {
        match self.tree.get(key)? {
            Some(value) => decode(key, &value).map(Some),
            None => Ok(None),
        }
    }

    /// All records whose key starts with `prefix`, in key order.
    pub(super) fn scan<T: prost::Message + Default>(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = StorageResult<(Vec<u8>, T)>> + '_ {
        // A closure, not `decode_item` itself: the fn item's type names `T`,
        // which the `+ '_` of the returned iterator would then require to outlive.
        self.tree.scan_prefix(prefix).map(|item| decode_item(item))
    }

    /// Records whose key starts with `prefix` and is at least `start`, in key order.
    pub(super) fn scan_from<T: prost::Message + Default>(
        &self,
        prefix: &[u8],
        start: &[u8],
    ) -> impl Iterator<Item = StorageResult<(Vec<u8>, T)>> + '_ {
        let prefix = prefix.to_vec();
        self.tree
            .range(start.to_vec()..)
            .take_while(move |item| match item {
                Ok((key, _)) => key.starts_with(&prefix),
                Err(_) => true,
            })
            .map(|item| decode_item(item))
    }

    /// Keys (without values) that start with `prefix`.
    pub(super) fn scan_keys(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = StorageResult<Vec<u8>>> + '_ {
        self.tree
            .scan_prefix(prefix)
            .keys()
            .map(|k| k.map(|k| k.to_vec()).map_err(StorageError::from))
    }

    /// The last record whose key is at most `key` and starts with `prefix`.
    pub(super) fn last_at_or_before<T: prost::Message + Default>(
        &self,
        prefix: &[u8],
        key: &[u8],
    ) -> StorageResult<Option<(Vec<u8>, T)>> {
        self.tree
            .range(prefix..=key)
            .next_back()
            .map(decode_item)
            .transpose()
    }

    /// Appends a set's body to the segment files as a frame that names it
    /// (`frame.rs`) and returns where the frame is. Store the returned
    /// reference in a [`WriteSet`] queued afterwards: the committer makes the
    /// frame durable before that write.
    /// A failed append is [`StorageError::NotApplied`]: its bytes are never
    /// referred to.
    pub(super) fn append_frame(
        &self,
        identity: &SetIdentity,
        body: &[u8],
    ) -> StorageResult<records::BlobRef> {
        self.segments
            .append_frame(identity, body)
            .map_err(StorageError::not_applied)
    }

    /// One past the highest offset of `topic_id` any frame in the segments
    /// held at open (0 when none did): a topic's next offset is never below
    /// it, so an offset a write used is never used again, even when that
    /// write never committed.
    pub(super) fn frame_high_water(&self, topic_id: u64) -> u64 {
        self.high_water.get(&topic_id).copied().unwrap_or(0)
    }

    /// Reads a framed blob back as owned bytes: its header (`None` for a set
    /// stored before frames existed) and the whole frame (the body after the
    /// header), checked against its CRC; a sealed body opens in place.
    pub(super) fn read_frame_owned(
        &self,
        blob: &records::BlobRef,
    ) -> StorageResult<(Option<FrameHeader>, Vec<u8>)> {
        self.segments.read_frame_owned(blob)
    }

    /// The segment files (for compaction, `compaction.rs`).
    pub(super) fn segments(&self) -> &segments::Segments {
        &self.segments
    }

    /// At start-up: records a blob that a stored reference points to.
    pub(super) fn mark_blob_live(&self, blob: &records::BlobRef) {
        self.segments.mark_live(blob);
    }

    /// At start-up, after every live blob was marked: deletes the segments
    /// nothing refers to.
    pub fn remove_unreferenced_blobs(&self) {
        self.segments.remove_unreferenced();
    }

    /// A new unique id (never reused, even across crashes). Drawing one
    /// writes to sled; a failure is [`StorageError::NotApplied`] (it comes
    /// before the write that would use the id).
    pub fn generate_id(&self) -> StorageResult<u64> {
        self.db
            .generate_id()
            .map_err(|e| StorageError::from(e).not_applied())
    }

    /// Flushes everything written so far (used at shutdown; every commit
    /// already flushes before it answers).
    pub fn flush(&self) -> StorageResult<()> {
        self.db.flush()?;
        Ok(())
    }

    /// The free space of the data dir's file system, against the watermark.
    pub fn disk(&self) -> &DiskMonitor {
        &self.disk
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> StorageResult<u64> {
        Ok(self.db.size_on_disk()? + self.segments.size_on_disk())
    }
}

/// Opens sled at `path`. sled 0.34 can panic on a store damaged by an
/// abrupt stop; that becomes [`StorageError::SledPanicked`] instead of a bare
/// panic. A store closed a moment ago may still be locked while sled's I/O
/// threads let go of it (seen when a test reopens a directory in the same
/// process), so a lock conflict is retried for up to five seconds.
pub(super) fn open_sled(path: &Path, cache_capacity_bytes: u64) -> StorageResult<sled::Db> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(cache_capacity_bytes)
        .flush_every_ms(Some(500));
    let waiting_since = std::time::Instant::now();
    loop {
        let attempt = config.clone();
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || attempt.open()))
            .map_err(|_| StorageError::SledPanicked)?;
        match opened {
            Ok(db) => return Ok(db),
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && waiting_since.elapsed() < std::time::Duration::from_secs(5) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            // sled reports the held lock (flock's WouldBlock) only in its text.
            Err(e) if e.to_string().contains("could not acquire lock") => {
                return Err(StorageError::Locked {
                    path: path.join("db"),
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A failure of sled to open the index as damage that refuses start-up and
/// points to repair (which can rewrite sled's config file); a lock held by
/// another process stays what it is.
fn unopenable(data_dir: &Path, e: StorageError) -> StorageError {
    if matches!(e, StorageError::Locked { .. }) {
        return e;
    }
    StorageError::Damaged {
        problems: 1,
        report: format!(
            "sled cannot open the index (db/): {e}. Nothing was served. Run `tallyq repair \
             --data-dir {}` (it rewrites a damaged sled config file; an index sled cannot read \
             at all needs db/ from a backup)",
            data_dir.display()
        ),
    }
}

/// Decodes a stored record, naming its key when it does not decode.
pub(super) fn decode<T: prost::Message + Default>(key: &[u8], value: &[u8]) -> StorageResult<T> {
    T::decode(value).map_err(|source| StorageError::Decode {
        key: hex::encode(key),
        source,
    })
}

/// Decodes one item of a sled iterator into its key and record.
fn decode_item<T: prost::Message + Default>(
    item: sled::Result<(sled::IVec, sled::IVec)>,
) -> StorageResult<(Vec<u8>, T)> {
    let (key, value) = item?;
    let record = decode(&key, &value)?;
    Ok((key.to_vec(), record))
}
