//! Storage: the only module that names sled.
//!
//! Everything lives in one sled tree, split into keyspaces by a leading byte
//! ([`keys`]). Writes are collected in a [`WriteSet`] and handed to the
//! [`Store::commit`] group committer: one thread gathers every write queued
//! while the previous flush ran, applies them as one atomic `sled::Batch`,
//! flushes once, runs each write's after-commit hook in queue order, and only
//! then answers the writers. So a reply that says "stored" always follows the
//! flush that made it durable, and many concurrent requests share one flush.
//!
//! Message payloads do not go through sled: they are appended to segment
//! files ([`segments`]) and sled keeps a small reference to them. The
//! committer `fdatasync`s the segments written since its last group before it
//! applies the group's batch, so a reference is never durable before the bytes
//! it points to.
//!
//! Durability: sled 0.34's `flush` writes its log with `sync_file_range`
//! rather than `fsync` (data to the device, but neither the file's metadata
//! nor the device's cache), so after it the committer `fdatasync`s sled's log
//! file itself. A reply that says "stored" therefore follows an `fdatasync` of
//! both the segments and the index. (sled writes items over about 128 KiB to
//! separate, never-synced blob files; the key layout keeps every item far
//! smaller, and the counter journal is split so that it stays small too.)

pub mod keys;
pub mod records;
pub mod segments;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

/// A storage failure. Cheap to clone so one failed flush can be reported to
/// every writer of its group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The store could not be opened.
    #[error("cannot open the data directory {path}: {reason}")]
    Open {
        /// The data directory.
        path: PathBuf,
        /// What sled said.
        reason: String,
    },
    /// sled failed to read or write.
    #[error("{0}")]
    Sled(Arc<sled::Error>),
    /// A stored record did not decode.
    #[error("corrupt record under key {key}: {reason}")]
    Corrupt {
        /// The key, hex encoded.
        key: String,
        /// The decode error.
        reason: String,
    },
    /// A file could not be made durable.
    #[error("cannot sync to disk: {0}")]
    Sync(String),
    /// A segment file could not be written, synced or read.
    #[error("segment storage: {0}")]
    Segment(String),
    /// The committer has stopped (the broker is shutting down).
    #[error("the store is closed")]
    Closed,
}

impl From<sled::Error> for StorageError {
    fn from(e: sled::Error) -> Self {
        StorageError::Sled(Arc::new(e))
    }
}

/// Storage result.
pub type StorageResult<T> = Result<T, StorageError>;

/// A hook run on the committer thread right after the write it belongs to is
/// durable, in commit order. Must be quick and must not block.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

/// A set of puts, deletes and counter increments that commit together,
/// atomically.
#[derive(Default)]
pub struct WriteSet {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    increments: Vec<(Vec<u8>, Vec<u64>)>,
    released_blobs: Vec<records::BlobRef>,
    fold_counters: bool,
    bytes: usize,
}

impl WriteSet {
    /// An empty write set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts an encoded record under `key`.
    pub fn put(&mut self, key: Vec<u8>, record: &impl prost::Message) {
        let value = record.encode_to_vec();
        self.bytes += key.len() + value.len();
        self.ops.push((key, Some(value)));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.bytes += key.len();
        self.ops.push((key, None));
    }

    /// Adds `deltas` to the counters stored under `key` (a
    /// [`records::CountersRecord`]). The increment is journaled in the same
    /// atomic batch as the rest of this set and folded into the counter by the
    /// committer alone, so concurrent writers never lose an increment and a
    /// counter always matches the data it counts. Read counters after
    /// [`Store::sync_counters`].
    pub fn increment(&mut self, key: Vec<u8>, deltas: Vec<u64>) {
        self.bytes += key.len() + deltas.len() * 8;
        self.increments.push((key, deltas));
    }

    /// Releases a blob in the segment files once this set committed (the
    /// set must delete the blob's last reference).
    pub fn release_blob(&mut self, blob: records::BlobRef) {
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

struct CommitRequest {
    writes: WriteSet,
    after: Option<AfterCommit>,
    done: oneshot::Sender<StorageResult<()>>,
}

/// Most writes merged into one group commit.
const MAX_GROUP_WRITES: usize = 4096;
/// Most bytes merged into one group commit.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;
/// Most counter deltas in one journal entry (keeps every entry far below
/// sled's blob threshold, whose files sled never syncs).
const MAX_JOURNAL_ENTRY_DELTAS: usize = 1024;

/// The handle to the store: reads go straight to sled, writes through the
/// group committer. Clone freely.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    segments: Arc<segments::Segments>,
    commits: mpsc::Sender<CommitRequest>,
}

/// Owns the committer thread; [`CommitterHandle::join`] waits until every
/// queued write is committed after the last [`Store`] clone is dropped.
pub struct CommitterHandle {
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CommitterHandle {
    /// Waits for the committer to drain and stop. Call after dropping every
    /// `Store` clone (otherwise it waits for them).
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Store {
    /// Opens (or creates) the store under `data_dir`.
    pub fn open(
        data_dir: &Path,
        cache_capacity_bytes: u64,
    ) -> StorageResult<(Store, CommitterHandle)> {
        let path = data_dir.join("db");
        let open_error = |reason: String| StorageError::Open {
            path: data_dir.to_path_buf(),
            reason,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| open_error(e.to_string()))?;
        let config = sled::Config::new()
            .path(&path)
            .cache_capacity(cache_capacity_bytes)
            .flush_every_ms(Some(500));
        // sled 0.34 can panic on a store damaged by an abrupt stop; report it
        // as an error that names the directory instead of a bare panic.
        // A store closed a moment ago may still be locked while sled's I/O
        // threads let go of it (seen when a test reopens a directory in the
        // same process); wait a little for the lock rather than fail.
        let waiting_since = std::time::Instant::now();
        let db = loop {
            let attempt = config.clone();
            let opened =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || attempt.open()))
                    .map_err(|_| {
                        open_error(
                            "sled panicked while opening the store (it may be damaged)".into(),
                        )
                    })?;
            match opened {
                Ok(db) => break db,
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && waiting_since.elapsed() < std::time::Duration::from_secs(5) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(open_error(e.to_string())),
            }
        };
        // sled's log, opened to fdatasync it after each flush (see the module doc).
        let sled_log = std::fs::File::open(path.join("db"))
            .map_err(|e| open_error(format!("cannot open sled's log for syncing: {e}")))?;
        let tree = db
            .open_tree("tallyq")
            .map_err(|e| open_error(e.to_string()))?;
        let segments = Arc::new(
            segments::Segments::open(&data_dir.join("segments"))
                .map_err(|e| open_error(e.to_string()))?,
        );

        let (commits, rx) = mpsc::channel(MAX_GROUP_WRITES);
        let thread = {
            let db = db.clone();
            let tree = tree.clone();
            let segments = segments.clone();
            std::thread::Builder::new()
                .name("tallyq-committer".into())
                .spawn(move || run_committer(db, sled_log, tree, segments, rx))
                .map_err(|e| open_error(format!("cannot start the committer thread: {e}")))?
        };
        Ok((
            Store {
                db,
                tree,
                segments,
                commits,
            },
            CommitterHandle {
                thread: Some(thread),
            },
        ))
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
            .send(CommitRequest {
                writes,
                after,
                done,
            })
            .await
            .map_err(|_| StorageError::Closed)?;
        Ok(PendingCommit { rx })
    }

    /// Reads and decodes one record.
    pub fn get<T: prost::Message + Default>(&self, key: &[u8]) -> StorageResult<Option<T>> {
        match self.tree.get(key)? {
            Some(value) => decode(key, &value).map(Some),
            None => Ok(None),
        }
    }

    /// All records whose key starts with `prefix`, in key order.
    pub fn scan<T: prost::Message + Default>(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = StorageResult<(Vec<u8>, T)>> + '_ {
        self.tree.scan_prefix(prefix).map(|item| {
            let (key, value) = item?;
            let record = decode(&key, &value)?;
            Ok((key.to_vec(), record))
        })
    }

    /// Records whose key starts with `prefix` and is at least `start`, in key order.
    pub fn scan_from<T: prost::Message + Default>(
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
            .map(|item| {
                let (key, value) = item?;
                let record = decode(&key, &value)?;
                Ok((key.to_vec(), record))
            })
    }

    /// Keys (without values) that start with `prefix`.
    pub fn scan_keys(&self, prefix: &[u8]) -> impl Iterator<Item = StorageResult<Vec<u8>>> + '_ {
        self.tree
            .scan_prefix(prefix)
            .keys()
            .map(|k| k.map(|k| k.to_vec()).map_err(StorageError::from))
    }

    /// The last record whose key is at most `key` and starts with `prefix`.
    pub fn last_at_or_before<T: prost::Message + Default>(
        &self,
        prefix: &[u8],
        key: &[u8],
    ) -> StorageResult<Option<(Vec<u8>, T)>> {
        match self.tree.range(prefix..=key).next_back() {
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((k.to_vec(), decode(&k, &v)?)))
            }
            None => Ok(None),
        }
    }

    /// Appends an encoded blob to the segment files and returns where it is.
    /// Store the returned reference in a [`WriteSet`] queued afterwards: the
    /// committer makes the blob durable before that write.
    pub fn append_blob(&self, bytes: &[u8]) -> StorageResult<records::BlobRef> {
        self.segments.append(bytes)
    }

    /// Reads a blob back and decodes it.
    pub fn read_blob<T: prost::Message + Default>(
        &self,
        blob: &records::BlobRef,
    ) -> StorageResult<T> {
        let bytes = bytes::Bytes::from(self.segments.read(blob)?);
        T::decode(bytes).map_err(|e| StorageError::Corrupt {
            key: format!("segment {} position {}", blob.segment, blob.position),
            reason: e.to_string(),
        })
    }

    /// At start-up: records a blob that a stored reference points to.
    pub fn mark_blob_live(&self, blob: &records::BlobRef) {
        self.segments.mark_live(blob);
    }

    /// At start-up, after every live blob was marked: deletes the segments
    /// nothing refers to.
    pub fn remove_unreferenced_blobs(&self) {
        self.segments.remove_unreferenced();
    }

    /// A new unique id (never reused, even across crashes).
    pub fn generate_id(&self) -> StorageResult<u64> {
        Ok(self.db.generate_id()?)
    }

    /// Flushes everything written so far (used at shutdown; every commit
    /// already flushes before it answers).
    pub fn flush(&self) -> StorageResult<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> StorageResult<u64> {
        Ok(self.db.size_on_disk()? + self.segments.size_on_disk())
    }
}

/// A queued commit; [`PendingCommit::wait`] resolves after its flush.
pub struct PendingCommit {
    rx: oneshot::Receiver<StorageResult<()>>,
}

impl PendingCommit {
    /// Waits until the write is durable (or failed).
    pub async fn wait(self) -> StorageResult<()> {
        self.rx.await.unwrap_or(Err(StorageError::Closed))
    }
}

fn decode<T: prost::Message + Default>(key: &[u8], value: &[u8]) -> StorageResult<T> {
    T::decode(value).map_err(|e| StorageError::Corrupt {
        key: hex::encode(key),
        reason: e.to_string(),
    })
}

/// Counter deltas not folded into their counters yet, with the journal keys
/// that hold them durably.
#[derive(Default)]
struct PendingCounters {
    deltas: HashMap<Vec<u8>, Vec<u64>>,
    journal_keys: Vec<Vec<u8>>,
    since: Option<std::time::Instant>,
}

/// Fold pending counter deltas at least this often...
const FOLD_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// ...or once this many counters are pending.
const FOLD_AT_KEYS: usize = 20_000;

fn add_deltas(into: &mut HashMap<Vec<u8>, Vec<u64>>, key: Vec<u8>, deltas: &[u64]) {
    let current = into.entry(key).or_default();
    if current.len() < deltas.len() {
        current.resize(deltas.len(), 0);
    }
    for (value, delta) in current.iter_mut().zip(deltas) {
        *value = value.saturating_add(*delta);
    }
}

/// Folds pending deltas into their counters and deletes the journal entries
/// that held them, in one atomic batch. Not flushed on purpose: if a crash
/// loses it, the journal entries are still there and are folded at start-up.
fn fold_counters(tree: &sled::Tree, pending: &mut PendingCounters) -> StorageResult<()> {
    if pending.journal_keys.is_empty() {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    for (key, deltas) in pending.deltas.drain() {
        let mut values = match tree.get(&key)? {
            Some(v) => decode::<records::CountersRecord>(&key, &v)?.values,
            None => Vec::new(),
        };
        if values.len() < deltas.len() {
            values.resize(deltas.len(), 0);
        }
        for (value, delta) in values.iter_mut().zip(deltas) {
            *value = value.saturating_add(delta);
        }
        batch.insert(
            key,
            prost::Message::encode_to_vec(&records::CountersRecord { values }),
        );
    }
    for key in pending.journal_keys.drain(..) {
        batch.remove(key);
    }
    pending.since = None;
    tree.apply_batch(batch)?;
    Ok(())
}

/// Reads every journal entry left by an earlier process into `pending`.
fn recover_journal(tree: &sled::Tree) -> StorageResult<(PendingCounters, u64)> {
    let mut pending = PendingCounters::default();
    let mut next_seq = 0;
    for item in tree.scan_prefix([keys::COUNTER_JOURNAL]) {
        let (key, value) = item?;
        let record: records::CounterJournalRecord = decode(&key, &value)?;
        for entry in record.entries {
            add_deltas(&mut pending.deltas, entry.key, &entry.values);
        }
        next_seq = keys::u64_at(&key, 1).unwrap_or(0) + 1;
        pending.journal_keys.push(key.to_vec());
    }
    Ok((pending, next_seq))
}

/// The group committer loop: take everything queued, one batch, one flush.
///
/// Counter increments do not rewrite their counters on every commit (that
/// would cost a read and a write per counter per group): the group's summed
/// increments go into one journal entry in the same atomic batch as the data
/// they count, and are folded into the counters about once a second, or when
/// a reader asks ([`Store::sync_counters`]), again atomically.
fn run_committer(
    db: sled::Db,
    sled_log: std::fs::File,
    tree: sled::Tree,
    segments: Arc<segments::Segments>,
    mut rx: mpsc::Receiver<CommitRequest>,
) {
    let (mut pending, mut journal_seq) = match recover_journal(&tree) {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the counter journal");
            (PendingCounters::default(), u64::MAX / 2)
        }
    };
    if let Err(e) = fold_counters(&tree, &mut pending) {
        tracing::error!(error = %e, "cannot fold the counter journal");
    }
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        let mut bytes = group[0].writes.bytes;
        while group.len() < MAX_GROUP_WRITES && bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(request) => {
                    bytes += request.writes.bytes;
                    group.push(request);
                }
                Err(_) => break,
            }
        }
        let mut batch = sled::Batch::default();
        let mut group_deltas: HashMap<Vec<u8>, Vec<u64>> = HashMap::new();
        let mut fold_requested = false;
        let mut released = Vec::new();
        for request in &mut group {
            released.append(&mut request.writes.released_blobs);
            fold_requested |= request.writes.fold_counters;
            for (key, value) in request.writes.ops.drain(..) {
                match value {
                    Some(value) => batch.insert(key, value),
                    None => batch.remove(key),
                }
            }
            for (key, deltas) in request.writes.increments.drain(..) {
                add_deltas(&mut group_deltas, key, &deltas);
            }
        }
        // The group's summed increments, moved (not copied) into journal
        // entries of at most MAX_JOURNAL_ENTRY_DELTAS each.
        let mut rest: Vec<records::CounterDelta> = group_deltas
            .into_iter()
            .map(|(key, values)| records::CounterDelta { key, values })
            .collect();
        let mut journal = Vec::new();
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(MAX_JOURNAL_ENTRY_DELTAS));
            let key = keys::counter_journal(journal_seq + journal.len() as u64);
            let record = records::CounterJournalRecord { entries: rest };
            batch.insert(key.clone(), prost::Message::encode_to_vec(&record));
            journal.push((key, record));
            rest = tail;
        }
        // Blobs first: a reference must never be durable before its bytes.
        let mut result = segments.sync_dirty().and_then(|()| {
            tree.apply_batch(batch)
                .and_then(|()| db.flush().map(|_| ()))
                .map_err(StorageError::from)
                .and_then(|()| {
                    sled_log
                        .sync_data()
                        .map_err(|e| StorageError::Sync(format!("sled's log: {e}")))
                })
        });
        if result.is_ok() {
            segments.release(&released);
            if !journal.is_empty() {
                journal_seq += journal.len() as u64;
                pending.since.get_or_insert_with(std::time::Instant::now);
                for (key, record) in journal {
                    pending.journal_keys.push(key);
                    for entry in record.entries {
                        add_deltas(&mut pending.deltas, entry.key, &entry.values);
                    }
                }
            }
            let due = pending
                .since
                .is_some_and(|since| since.elapsed() >= FOLD_EVERY)
                || pending.deltas.len() >= FOLD_AT_KEYS;
            if fold_requested || due {
                if let Err(e) = fold_counters(&tree, &mut pending) {
                    tracing::error!(error = %e, "folding counters failed");
                    if fold_requested {
                        result = Err(e);
                    }
                }
            }
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, writes = group.len(), "group commit failed");
        }
        for request in group {
            if result.is_ok() {
                if let Some(after) = request.after {
                    after();
                }
            }
            let _ = request.done.send(result.clone());
        }
    }
    if let Err(e) = fold_counters(&tree, &mut pending) {
        tracing::error!(error = %e, "final counter fold failed");
    }
    if let Err(e) = db.flush() {
        tracing::error!(error = %e, "final flush failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use records::{CountersRecord, CursorRecord};

    #[tokio::test]
    async fn concurrent_increments_are_exact_after_sync_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    let mut ws = WriteSet::new();
                    ws.increment(b"Ucounter".to_vec(), vec![1, 2]);
                    store.commit(ws).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        store.sync_counters().await.unwrap();
        let counter: CountersRecord = store.get(b"Ucounter").unwrap().unwrap();
        assert_eq!(counter.values, vec![400, 800]);
        assert_eq!(
            store.scan_keys(&[keys::COUNTER_JOURNAL]).count(),
            0,
            "journal folded"
        );

        let mut ws = WriteSet::new();
        ws.increment(b"Ucounter".to_vec(), vec![1]);
        store.commit(ws).await.unwrap();
        drop(store);
        committer.join();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        store.sync_counters().await.unwrap();
        let counter: CountersRecord = store.get(b"Ucounter").unwrap().unwrap();
        assert_eq!(counter.values, vec![401, 800]);
    }

    #[tokio::test]
    async fn a_commit_with_thousands_of_counters_is_journaled_in_chunks_and_exact() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let mut ws = WriteSet::new();
        for i in 0..3000u64 {
            ws.increment(format!("Udevice-{i}").into_bytes(), vec![i, 1]);
        }
        store.commit(ws).await.unwrap();
        assert_eq!(
            store.scan_keys(&[keys::COUNTER_JOURNAL]).count(),
            3000usize.div_ceil(MAX_JOURNAL_ENTRY_DELTAS),
            "one journal entry per chunk until folded"
        );
        store.sync_counters().await.unwrap();
        for i in [0u64, 1023, 1024, 2999] {
            let c: CountersRecord = store
                .get(format!("Udevice-{i}").as_bytes())
                .unwrap()
                .unwrap();
            assert_eq!(c.values, vec![i, 1]);
        }
        assert_eq!(store.scan::<CountersRecord>(b"Udevice-").count(), 3000);
    }

    #[tokio::test]
    async fn concurrent_commits_are_all_durable_and_hooks_run_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut pending = Vec::new();
        for i in 0..200u64 {
            let mut ws = WriteSet::new();
            ws.put(
                keys::cursor(i),
                &CursorRecord {
                    next_offset: i,
                    dead_lettered: 0,
                },
            );
            let order = order.clone();
            pending.push(
                store
                    .enqueue(ws, Some(Box::new(move || order.lock().unwrap().push(i))))
                    .await
                    .unwrap(),
            );
        }
        for p in pending {
            p.wait().await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..200).collect::<Vec<_>>());
        let got: Option<CursorRecord> = store.get(&keys::cursor(199)).unwrap();
        assert_eq!(got.unwrap().next_offset, 199);
        drop(store);
        committer.join();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(store.scan::<CursorRecord>(&[keys::CURSOR]).count(), 200);
    }
}
