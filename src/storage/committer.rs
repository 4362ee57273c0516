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
//! 6. release the blobs the group unreferenced, note the journal entries as
//!    durable and fold the journal when due or asked;
//! 7. [`run_hooks`]: each write's after-commit hook, in queue order;
//! 8. [`reply`]: answer every writer with the group's result.
//!
//! A failed step fails the whole group: no hook runs and every writer gets
//! the same error.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::counters::{CounterJournal, Deltas};
use super::records::BlobRef;
use super::{segments, StorageError, StorageResult, WriteSet};

/// A hook run on the committer thread right after the write it belongs to is
/// durable, in commit order. Must be quick and must not block.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

/// One queued write and how to answer it.
pub(super) struct CommitRequest {
    pub(super) writes: WriteSet,
    pub(super) after: Option<AfterCommit>,
    pub(super) done: oneshot::Sender<StorageResult<()>>,
}

/// Most writes merged into one group commit.
const MAX_GROUP_WRITES: usize = 4096;
/// Most bytes merged into one group commit.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// Owns the committer thread; [`CommitterHandle::join`] waits until every
/// queued write is committed after the last [`Store`](super::Store) clone is
/// dropped.
pub struct CommitterHandle {
    thread: std::thread::JoinHandle<()>,
}

impl CommitterHandle {
    /// Waits for the committer to drain and stop. Call after dropping every
    /// `Store` clone (otherwise it waits for them).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// A queued commit; [`PendingCommit::wait`] resolves after its flush.
pub struct PendingCommit {
    pub(super) rx: oneshot::Receiver<StorageResult<()>>,
}

impl PendingCommit {
    /// Waits until the write is durable (or failed).
    pub async fn wait(self) -> StorageResult<()> {
        self.rx.await.unwrap_or(Err(StorageError::Closed))
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
}

impl Committer {
    /// Starts the committer thread; returns the queue writers send to.
    pub(super) fn start(self) -> std::io::Result<(mpsc::Sender<CommitRequest>, CommitterHandle)> {
        let (queue, rx) = mpsc::channel(MAX_GROUP_WRITES);
        let thread = std::thread::Builder::new()
            .name("tallyq-committer".into())
            .spawn(move || self.run(rx))?;
        Ok((queue, CommitterHandle { thread }))
    }

    /// The loop: one group per round until the queue is closed and empty, then
    /// a last fold and flush.
    fn run(mut self, mut queue: mpsc::Receiver<CommitRequest>) {
        while let Some(mut group) = gather(&mut queue) {
            let result = self.commit(&mut group);
            if let Err(e) = &result {
                tracing::error!(error = %e, writes = group.len(), "group commit failed");
            } else {
                run_hooks(&mut group);
            }
            reply(group, result);
        }
        if let Err(e) = self.journal.fold(&self.tree) {
            tracing::error!(error = %e, "final counter fold failed");
        }
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }

    /// Makes one group durable (steps 2 to 6 of the module doc).
    fn commit(&mut self, group: &mut [CommitRequest]) -> StorageResult<()> {
        let Staged {
            mut batch,
            deltas,
            released,
            fold_requested,
        } = stage(group);
        let journaled = self.journal.stage(deltas, &mut batch);
        // Blobs first: a reference must never be durable before its bytes.
        self.segments.sync_dirty()?;
        self.tree.apply_batch(batch)?;
        self.flush()?;
        self.segments.release(&released);
        self.journal.record(journaled);
        self.fold_if_due(fold_requested)
    }

    /// sled's flush, then `fdatasync` of its log (see the module doc).
    fn flush(&self) -> StorageResult<()> {
        self.db.flush()?;
        self.sled_log
            .sync_data()
            .map_err(|e| StorageError::Sync(format!("sled's log: {e}")))
    }

    /// Folds the counter journal when a reader asked or a periodic fold is
    /// due. A failed periodic fold is only logged (the journal entries are
    /// durable, so nothing is lost); a failed fold a reader asked for fails
    /// the group, since that reader would read short counters.
    fn fold_if_due(&mut self, requested: bool) -> StorageResult<()> {
        if !requested && !self.journal.fold_due() {
            return Ok(());
        }
        match self.journal.fold(&self.tree) {
            Err(e) if requested => Err(e),
            Err(e) => {
                tracing::error!(error = %e, "folding counters failed");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }
}

/// Waits for the next write, then takes whatever else is queued already, up
/// to the group limits. `None` once the queue is closed and empty.
fn gather(queue: &mut mpsc::Receiver<CommitRequest>) -> Option<Vec<CommitRequest>> {
    let first = queue.blocking_recv()?;
    let mut bytes = first.writes.bytes;
    let mut group = vec![first];
    while group.len() < MAX_GROUP_WRITES && bytes < MAX_GROUP_BYTES {
        match queue.try_recv() {
            Ok(request) => {
                bytes += request.writes.bytes;
                group.push(request);
            }
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
    /// A writer asked for the counters to be folded.
    fold_requested: bool,
}

/// Merges the group's write sets (moving their contents out) into one batch.
fn stage(group: &mut [CommitRequest]) -> Staged {
    let mut staged = Staged {
        batch: sled::Batch::default(),
        deltas: Deltas::default(),
        released: Vec::new(),
        fold_requested: false,
    };
    for request in group {
        let writes = &mut request.writes;
        staged.released.append(&mut writes.released_blobs);
        staged.fold_requested |= writes.fold_counters;
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

/// Answers every writer of the group with its result.
fn reply(group: Vec<CommitRequest>, result: StorageResult<()>) {
    for request in group {
        // A writer that stopped waiting does not need the answer.
        let _ = request.done.send(result.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::records::CursorRecord;
    use crate::storage::{keys, Store};

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
