//! The group committer: one thread that turns queued [`WriteSet`]s into
//! durable sled batches, many writers per flush.
//!
//! Each round ([`Committer::run`]) goes through named steps:
//! 1. [`gather`]: wait for the first queued write, then take whatever else is
//!    queued already, up to [`MAX_GROUP_WRITES`] writes or [`MAX_GROUP_BYTES`];
//! 2. [`stage`]: merge the group's puts and deletes into one `sled::Batch`,
//!    sum its counter increments and write them into the same batch as
//!    counter-journal entries ([`CounterJournal::stage`]);
//! 3. sync segments: `fdatasync` every segment file written since the last
//!    round, so a blob reference is never durable before the blob's bytes;
//! 4. apply the batch, atomically;
//! 5. flush: sled's `flush`, then `fdatasync` of sled's log file (sled 0.34
//!    only `sync_file_range`s it; see the module doc of `storage`);
//! 6. release the blobs the group unreferenced, note its journal entries
//!    as durable, and write the group's commit sequence (carried in its own
//!    batch) into the high-water mark outside sled (`mark.rs`);
//! 7. fold the counter journal when due or asked
//!    ([`Store::sync_counters`](super::Store::sync_counters));
//! 8. [`run_hooks`]: each write's after-commit hook, in queue order;
//! 9. [`reply`]: answer every writer.
//!
//! A failed step up to 6 fails the whole group: no hook runs and every writer
//! gets the same error, classified by where it failed: up to step 4 (a
//! segment sync, or sled refusing the batch) nothing reached sled and the
//! error is [`StorageError::NotApplied`]; in step 5 the batch is in sled's
//! tree and may be on disk, so it is [`StorageError::OutcomeUnknown`]. A
//! failed group also *fails the store* ([`StoreHealth`]) before anyone is
//! answered: from then on every group is answered [`StorageError::Failed`]
//! at once and nothing more reaches sled (sled stays failed after an I/O
//! error, and the in-memory state above the store may be ahead of the disk;
//! the owner reopens the store, see `failure.rs`). A failed fold (7) fails
//! only the writers that asked for it; the group's writes are durable, so
//! their hooks run and their writers hear so. A fold that sled itself failed
//! fails the store too.
//!
//! Shutdown: the thread stops when its queue is closed and empty. That
//! happens by itself once the last [`Store`](super::Store) clone is dropped,
//! or on purpose through [`CommitterHandle::join`], which queues a stop sign:
//! the committer commits every write queued before it, closes the queue (a
//! later commit gets [`StorageError::Closed`]), commits what was already
//! queued behind the sign, folds the counter journal, flushes and
//! `fdatasync`s sled's log once more, and ends. A failed store skips that
//! last fold and flush: nothing more reaches sled.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::counters::{CounterJournal, Deltas};
use super::records::{BlobRef, CountersRecord};
use super::{keys, segments, StorageError, StorageResult, StoreHealth, WriteSet};

/// A hook run on the committer thread right after the write it belongs to is
/// durable, in commit order. Must be quick and must not block.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

/// What the queue carries.
pub(super) enum Job {
    /// A write to commit.
    Commit(CommitRequest),
    /// From [`CommitterHandle::join`]: close the queue and stop once it is
    /// empty.
    Stop,
}

/// One queued write and how to answer it.
pub(super) struct CommitRequest {
    /// What to write.
    pub(super) writes: WriteSet,
    /// Run once the write is durable.
    pub(super) after: Option<AfterCommit>,
    /// Where the writer (or writers) wait for the answer.
    pub(super) done: Done,
}

/// Where the answer to a queued write goes.
pub(super) enum Done {
    /// One writer ([`PendingCommit`]).
    One(oneshot::Sender<StorageResult<()>>),
    /// Every clone of a [`SharedCommit`](super::SharedCommit).
    Shared(tokio::sync::watch::Sender<Option<StorageResult<()>>>),
}

/// Most writes merged into one group commit.
const MAX_GROUP_WRITES: usize = 4096;
/// Most bytes merged into one group commit.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// Owns the committer thread, returned by [`Store::open`](super::Store::open).
///
/// Dropping it leaves the thread running until the last `Store` clone is
/// gone. At shutdown call [`CommitterHandle::join`] once the last writer has
/// finished (every request task and background job that commits has
/// stopped): it does not wait for `Store` clones that are merely still held,
/// e.g. by a broker kept for reads.
pub struct CommitterHandle {
    thread: std::thread::JoinHandle<()>,
    /// The queue, without keeping it open (so dropping every `Store` still
    /// stops the thread).
    queue: mpsc::WeakSender<Job>,
}

impl CommitterHandle {
    /// Stops the committer and waits for it: every write queued before this
    /// call is committed and answered, the counter journal is folded and
    /// everything is flushed to disk before it returns; a commit queued after
    /// it fails with [`StorageError::Closed`] (reads keep working).
    ///
    /// Blocks the calling thread for about one group commit. From async code
    /// call it through `tokio::task::spawn_blocking`, or accept that short
    /// block on a runtime worker at the very end of shutdown (the committer
    /// itself needs no runtime, so this cannot deadlock).
    pub fn join(self) {
        if let Some(queue) = self.queue.upgrade() {
            send_stop(&queue);
        }
        // Otherwise every Store clone is gone: the thread stops by itself.
        if self.thread.join().is_err() {
            tracing::error!("the committer thread panicked");
        }
    }
}

/// Queues the stop sign behind every write already queued. The queue is only
/// full while writers are still busy; the committer frees room every group.
fn send_stop(queue: &mpsc::Sender<Job>) {
    loop {
        match queue.try_send(Job::Stop) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
            Err(mpsc::error::TrySendError::Full(_)) => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
        }
    }
}

/// A queued commit; [`PendingCommit::wait`] resolves after its flush.
pub struct PendingCommit {
    pub(super) rx: oneshot::Receiver<StorageResult<()>>,
}

impl PendingCommit {
    /// Waits until the write is durable (or failed). A committer that stops
    /// without answering (it panicked) leaves the outcome unknown.
    pub async fn wait(self) -> StorageResult<()> {
        self.rx
            .await
            .unwrap_or_else(|_| Err(StorageError::Closed.outcome_unknown()))
    }
}

/// What the committer thread owns: the store's handles and the journal.
pub(super) struct Committer {
    /// The sled database (for `flush`).
    pub(super) db: sled::Db,
    /// sled's log file, opened to `fdatasync` it after each flush.
    pub(super) sled_log: std::fs::File,
    /// The one tree.
    pub(super) tree: sled::Tree,
    /// The segment files.
    pub(super) segments: Arc<segments::Segments>,
    /// The counter journal, recovered and folded by `Store::open`.
    pub(super) journal: CounterJournal,
    /// Failed at the first failed group; then no more writes.
    pub(super) health: StoreHealth,
    /// Read before each group, so the watermark follows what is written.
    pub(super) disk: Arc<super::disk::DiskMonitor>,
    /// The high-water mark outside sled (`mark.rs`).
    pub(super) mark: super::mark::HighWater,
    /// The last commit sequence the index durably holds.
    pub(super) seq: u64,
}

impl Committer {
    /// Starts the committer thread; returns the queue writers send to.
    pub(super) fn start(self) -> std::io::Result<(mpsc::Sender<Job>, CommitterHandle)> {
        let (queue, rx) = mpsc::channel(MAX_GROUP_WRITES);
        let thread = std::thread::Builder::new()
            .name("tallyq-committer".into())
            .spawn(move || self.run(rx))?;
        let handle = CommitterHandle {
            thread,
            queue: queue.downgrade(),
        };
        Ok((queue, handle))
    }

    /// The loop: one group per round until the queue is closed and empty, then
    /// a last fold and flush.
    fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        while let Some(Group { requests, stop }) = gather(&mut queue) {
            if !requests.is_empty() {
                self.round(requests);
            }
            if stop {
                // What is queued already still commits; nothing new gets in.
                queue.close();
            }
        }
        if self.health.is_failed() {
            tracing::warn!("the store failed: no final fold and flush");
            return;
        }
        if let Err(e) = self.journal.fold(&self.tree) {
            tracing::error!(error = %e, "final counter fold failed");
        }
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
        if let Err(e) = self.mark.sync() {
            tracing::error!(error = %e, "final sync of the high-water mark failed");
        }
    }

    /// One group, from commit to replies (steps 2 to 9 of the module doc).
    fn round(&mut self, mut group: Vec<CommitRequest>) {
        if let Some(cause) = self.health.failure() {
            reply(group, &Err(StorageError::Failed(Box::new(cause))), &Ok(()));
            return;
        }
        self.disk.refresh();
        let committed = self.commit(&mut group);
        if let Err(e) = &committed {
            tracing::error!(error = %e, writes = group.len(), "group commit failed");
            // Before anyone hears: a writer told "failed" must find the store
            // failed when it tries again.
            self.health.fail(e);
            reply(group, &committed, &Ok(()));
            return;
        }
        let fold_requested = group.iter().any(|request| request.writes.fold_counters);
        let folded = self.fold_if_due(fold_requested);
        run_hooks(&mut group);
        reply(group, &committed, &folded);
        if let Err(e) = self.mark.sync_if_due() {
            tracing::warn!(error = %e, path = %self.mark.path().display(),
                "cannot sync the high-water mark");
        }
    }

    /// Makes one group durable (steps 2 to 6 of the module doc). Fails
    /// [`StorageError::NotApplied`] up to the batch, and
    /// [`StorageError::OutcomeUnknown`] once it is in sled's tree.
    fn commit(&mut self, group: &mut [CommitRequest]) -> StorageResult<()> {
        let Staged {
            mut batch,
            deltas,
            released,
        } = stage(group);
        let journaled = self.journal.stage(deltas, &mut batch);
        // The group's sequence rides in its own batch (see `mark.rs`).
        let seq = self.seq + 1;
        batch.insert(
            keys::commit_seq(),
            prost::Message::encode_to_vec(&CountersRecord { values: vec![seq] }),
        );
        // Blobs first: a reference must never be durable before its bytes.
        self.segments
            .sync_dirty()
            .map_err(StorageError::not_applied)?;
        // sled applies a batch atomically on recovery: an error here leaves
        // nothing of it on disk (its tree may hold part of it until reopened).
        self.tree
            .apply_batch(batch)
            .map_err(|e| StorageError::from(e).not_applied())?;
        self.flush().map_err(StorageError::outcome_unknown)?;
        self.seq = seq;
        if let Err(e) = self.mark.record(seq) {
            // The index is durable; a lagging mark only hides damage later.
            tracing::warn!(error = %e, path = %self.mark.path().display(),
                "cannot write the high-water mark");
        }
        self.segments.release(&released);
        self.journal.record(journaled);
        Ok(())
    }

    /// sled's flush, then `fdatasync` of its log (see the module doc).
    fn flush(&self) -> StorageResult<()> {
        self.db.flush()?;
        self.sled_log
            .sync_data()
            .map_err(|e| StorageError::io("cannot sync sled's log to disk", e))
    }

    /// Folds the counter journal when a reader asked or a periodic fold is
    /// due. A failed periodic fold is logged and tried again later (the
    /// journal entries are durable and the deltas stay pending, so nothing is
    /// lost); a failed fold a reader asked for is that reader's error, since
    /// it would read short counters.
    fn fold_if_due(&mut self, requested: bool) -> StorageResult<()> {
        if !requested && !self.journal.fold_due() {
            return Ok(());
        }
        let folded = self.journal.fold(&self.tree);
        if let Err(e @ StorageError::Sled(_)) = &folded {
            // sled failed under the fold: its tree may hold part of it.
            self.health.fail(e);
        }
        match folded {
            Err(e) if requested => Err(e),
            Err(e) => {
                tracing::error!(error = %e, "folding counters failed");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }
}

/// The writes of one round, and whether the stop sign came behind them.
struct Group {
    requests: Vec<CommitRequest>,
    stop: bool,
}

/// Waits for the next job, then takes whatever else is queued already, up to
/// the group limits or the stop sign. `None` once the queue is closed and
/// empty.
fn gather(queue: &mut mpsc::Receiver<Job>) -> Option<Group> {
    let mut next = queue.blocking_recv()?;
    let mut group = Group {
        requests: Vec::new(),
        stop: false,
    };
    let mut bytes = 0;
    loop {
        match next {
            Job::Stop => {
                group.stop = true;
                break;
            }
            Job::Commit(request) => {
                bytes += request.writes.bytes;
                group.requests.push(request);
            }
        }
        if group.requests.len() >= MAX_GROUP_WRITES || bytes >= MAX_GROUP_BYTES {
            break;
        }
        match queue.try_recv() {
            Ok(job) => next = job,
            Err(_) => break,
        }
    }
    Some(group)
}

/// A group's writes merged.
struct Staged {
    /// Every put and delete, in queue order.
    batch: sled::Batch,
    /// The group's counter increments, summed by counter.
    deltas: Deltas,
    /// Blobs to release once the batch is durable.
    released: Vec<BlobRef>,
}

/// Merges the group's write sets (moving their contents out) into one batch.
fn stage(group: &mut [CommitRequest]) -> Staged {
    let mut staged = Staged {
        batch: sled::Batch::default(),
        deltas: Deltas::default(),
        released: Vec::new(),
    };
    for request in group {
        let writes = &mut request.writes;
        staged.released.append(&mut writes.released_blobs);
        for (key, value) in writes.ops.drain(..) {
            match value {
                Some(value) => staged.batch.insert(key, value),
                None => staged.batch.remove(key),
            }
        }
        for (key, deltas) in writes.increments.drain(..) {
            staged.deltas.add(key, &deltas);
        }
    }
    staged
}

/// Runs each write's after-commit hook, in queue order (only after the group
/// is durable).
fn run_hooks(group: &mut [CommitRequest]) {
    for request in group {
        if let Some(after) = request.after.take() {
            after();
        }
    }
}

/// Answers every writer of the group: whether the group committed, and for
/// a writer that asked for a fold, whether the fold succeeded too.
fn reply(group: Vec<CommitRequest>, committed: &StorageResult<()>, folded: &StorageResult<()>) {
    for request in group {
        let result = if request.writes.fold_counters {
            committed.clone().and(folded.clone())
        } else {
            committed.clone()
        };
        // A writer that stopped waiting does not need the answer.
        match request.done {
            Done::One(done) => {
                let _ = done.send(result);
            }
            Done::Shared(done) => {
                done.send_replace(Some(result));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::records::{CountersRecord, CursorRecord};
    use crate::storage::{keys, Store};

    /// A write set that puts cursor `i`.
    fn cursor_write(i: u64) -> WriteSet {
        let mut ws = WriteSet::new();
        ws.put(
            keys::cursor(i),
            &CursorRecord {
                next_offset: i,
                dead_lettered: 0,
            },
        );
        ws
    }

    #[tokio::test]
    async fn concurrent_commits_are_all_durable_and_hooks_run_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut pending = Vec::new();
        for i in 0..200u64 {
            let ws = cursor_write(i);
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

    #[tokio::test]
    async fn join_commits_what_was_queued_and_closes_the_queue_while_clones_remain() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let mut pending = Vec::new();
        for i in 0..100u64 {
            let mut ws = cursor_write(i);
            ws.increment(b"Ucounter".to_vec(), vec![1]);
            pending.push(store.enqueue(ws, None).await.unwrap());
        }
        // `store` is still held: join must not wait for it.
        committer.join();
        for p in pending {
            p.wait().await.unwrap();
        }
        assert!(matches!(
            store.commit(WriteSet::new()).await,
            Err(StorageError::Closed)
        ));
        // The last fold ran: the counter is exact without sync_counters.
        let counter: CountersRecord = store.get(b"Ucounter").unwrap().unwrap();
        assert_eq!(counter.values, vec![100]);
        assert_eq!(store.scan_keys(&[keys::COUNTER_JOURNAL]).count(), 0);
        drop(store);
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(store.scan::<CursorRecord>(&[keys::CURSOR]).count(), 100);
    }

    #[tokio::test]
    async fn a_failed_fold_fails_only_its_reader_and_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        // A counter whose stored value does not decode as a CountersRecord.
        let mut ws = WriteSet::new();
        ws.put(
            b"Ubad".to_vec(),
            &crate::storage::records::CounterDelta {
                key: vec![0xff],
                values: Vec::new(),
            },
        );
        store.commit(ws).await.unwrap();
        let mut ws = WriteSet::new();
        ws.increment(b"Ubad".to_vec(), vec![3]);
        store.commit(ws).await.unwrap();

        let hooks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut pending = Vec::new();
        for i in 0..200u64 {
            let hooks = hooks.clone();
            let hook: AfterCommit = Box::new(move || {
                hooks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
            pending.push(store.enqueue(cursor_write(i), Some(hook)).await.unwrap());
        }
        assert!(store.sync_counters().await.is_err(), "the fold fails");
        for p in pending {
            p.wait().await.unwrap();
        }
        assert_eq!(hooks.load(std::sync::atomic::Ordering::SeqCst), 200);

        // Once the counter is readable again, the kept delta folds in.
        let mut ws = WriteSet::new();
        ws.put(b"Ubad".to_vec(), &CountersRecord { values: vec![10] });
        store.commit(ws).await.unwrap();
        store.sync_counters().await.unwrap();
        let counter: CountersRecord = store.get(b"Ubad").unwrap().unwrap();
        assert_eq!(counter.values, vec![13]);
    }
}
