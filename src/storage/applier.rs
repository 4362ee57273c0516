//! The committer's second thread: applies the groups the first one synced,
//! in the order it synced them (steps 4 to 9 of `committer.rs`).
//!
//! The committer thread gathers a group, stages its sled batch and
//! `fdatasync`s the segments its writes appended to; then it hands the group
//! here and gathers the next one. This thread applies the batch, flushes sled
//! and `fdatasync`s its log, marks, folds, runs the hooks and answers. So the
//! segment sync of group N+1 runs while group N's sled flush does, instead of
//! after it; a group's batch still reaches sled only after its own segments
//! are durable, groups reach sled one at a time in gathering order (one
//! thread, one FIFO hand-off), and each writer is still answered only after
//! both `fdatasync`s that made its write durable.
//!
//! Failures keep the old rules, applied here in group order: a group whose
//! segment sync failed (on the committer thread) fails the store here, before
//! anyone of it is answered; a group behind a failed one is answered
//! [`StorageError::Failed`] without reaching sled, even when its own segments
//! synced. A group ahead of the failed one was handed over earlier and
//! completes as it would have.

use std::sync::Arc;

use super::committer::{reply, run_hooks, CommitRequest, Staged};
use super::counters::CounterJournal;
use super::records::CountersRecord;
use super::{keys, segments, StorageError, StorageResult, StoreHealth};

/// Groups synced and not yet taken by the applier. One: the committer can
/// sync group N+2 while N+1 waits for N's flush, and no more than that.
pub(super) const SYNCED_AHEAD: usize = 1;

/// A group whose segments the committer thread synced (or failed to).
pub(super) struct Synced {
    /// The writers, in queue order (their write sets already moved out).
    pub(super) requests: Vec<CommitRequest>,
    /// The group's merged batch.
    pub(super) staged: Staged,
    /// Whether the segment sync before it succeeded
    /// ([`StorageError::NotApplied`] when not); `Err(Failed)` when the store
    /// had failed before the committer took the group.
    pub(super) synced: StorageResult<()>,
}

/// What the applier thread owns: sled, the journal and the mark.
pub(super) struct Applier {
    /// The sled database (for `flush`).
    pub(super) db: sled::Db,
    /// sled's log file, opened to `fdatasync` it after each flush.
    pub(super) sled_log: std::fs::File,
    /// The one tree.
    pub(super) tree: sled::Tree,
    /// The segment files (blobs are released here, after their commit).
    pub(super) segments: Arc<segments::Segments>,
    /// The counter journal, recovered and folded by `Store::open`.
    pub(super) journal: CounterJournal,
    /// Failed at the first failed group; then no more writes.
    pub(super) health: StoreHealth,
    /// The high-water mark outside sled (`mark.rs`).
    pub(super) mark: super::mark::HighWater,
    /// The last commit sequence the index durably holds.
    pub(super) seq: u64,
}

impl Applier {
    /// Applies every group handed over, in order, until the committer thread
    /// lets go of the hand-off; then the last fold and flush.
    pub(super) fn run(mut self, groups: std::sync::mpsc::Receiver<Synced>) {
        for group in groups.iter() {
            self.round(group);
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

    /// One group, from applying its batch to the replies (steps 4 to 9).
    fn round(&mut self, group: Synced) {
        let Synced {
            mut requests,
            staged,
            synced,
        } = group;
        if let Some(cause) = self.health.failure() {
            reply(
                requests,
                &Err(StorageError::Failed(Box::new(cause))),
                &Ok(()),
            );
            return;
        }
        let committed = synced.and_then(|()| self.commit(staged));
        if let Err(e) = &committed {
            tracing::error!(error = %e, writes = requests.len(), "group commit failed");
            // Before anyone hears: a writer told "failed" must find the store
            // failed when it tries again.
            self.health.fail(e);
            reply(requests, &committed, &Ok(()));
            return;
        }
        let fold_requested = requests.iter().any(|request| request.writes.fold_counters);
        let folded = self.fold_if_due(fold_requested);
        run_hooks(&mut requests);
        reply(requests, &committed, &folded);
        if let Err(e) = self.mark.sync_if_due() {
            tracing::warn!(error = %e, path = %self.mark.path().display(),
                "cannot sync the high-water mark");
        }
    }

    /// Makes one synced group durable (steps 4 to 6). Fails
    /// [`StorageError::NotApplied`] up to the batch, and
    /// [`StorageError::OutcomeUnknown`] once it is in sled's tree.
    fn commit(&mut self, staged: Staged) -> StorageResult<()> {
        let Staged {
            mut batch,
            deltas,
            released,
        } = staged;
        let journaled = self.journal.stage(deltas, &mut batch);
        // The group's sequence rides in its own batch (see `mark.rs`).
        let seq = self.seq + 1;
        batch.insert(
            keys::commit_seq(),
            prost::Message::encode_to_vec(&CountersRecord { values: vec![seq] }),
        );
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

    /// sled's flush, then `fdatasync` of its log (see `storage`'s module doc).
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
