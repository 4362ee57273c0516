use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::counters::{CounterJournal, Deltas};
use super::{segments, StorageError, StorageResult, WriteSet};

/// A hook run on the committer thread right after the write it belongs to is
/// durable, in commit order. Must be quick and must not block.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

pub(super) struct CommitRequest {
    pub(super) writes: WriteSet,
    pub(super) after: Option<AfterCommit>,
    pub(super) done: oneshot::Sender<StorageResult<()>>,
}

/// Most writes merged into one group commit.
pub(super) const MAX_GROUP_WRITES: usize = 4096;
/// Most bytes merged into one group commit.
pub(super) const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// Owns the committer thread; [`CommitterHandle::join`] waits until every
/// queued write is committed after the last [`Store`] clone is dropped.
pub struct CommitterHandle {
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
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

/// The group committer loop: take everything queued, one batch, one flush.
///
/// Counter increments do not rewrite their counters on every commit (that
/// would cost a read and a write per counter per group): the group's summed
/// increments go into one journal entry in the same atomic batch as the data
/// they count, and are folded into the counters about once a second, or when
/// a reader asks ([`Store::sync_counters`]), again atomically.
pub(super) fn run_committer(
    db: sled::Db,
    sled_log: std::fs::File,
    tree: sled::Tree,
    segments: Arc<segments::Segments>,
    mut journal: CounterJournal,
    mut rx: mpsc::Receiver<CommitRequest>,
) {
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
        let mut group_deltas = Deltas::default();
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
                group_deltas.add(key, &deltas);
            }
        }
        let staged = journal.stage(group_deltas, &mut batch);
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
            journal.record(staged);
            if fold_requested || journal.fold_due() {
                if let Err(e) = journal.fold(&tree) {
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
    if let Err(e) = journal.fold(&tree) {
        tracing::error!(error = %e, "final counter fold failed");
    }
    if let Err(e) = db.flush() {
        tracing::error!(error = %e, "final flush failed");
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
