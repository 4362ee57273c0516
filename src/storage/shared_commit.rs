//! A commit many waiters share, queued through a place reserved in the
//! committer's queue beforehand.
//!
//! Produce combining (`broker/produce/combine.rs`) stores the batches of many
//! concurrent produces as one write: every one of them waits for that one
//! commit ([`SharedCommit`], cloned per waiter), and the queue place is
//! reserved ([`Store::reserve_commit`]) before the topic's log changes, so
//! queueing the write afterwards cannot wait and cannot be cancelled halfway.

use tokio::sync::{mpsc, watch};

use super::committer::{CommitRequest, Done, Job};
use super::{AfterCommit, StorageError, StorageResult, Store, WriteSet};

/// A queued commit that any number of waiters can wait for: each clone's
/// [`SharedCommit::wait`] resolves after the flush that made the write
/// durable (or with the group's error).
#[derive(Clone)]
pub struct SharedCommit {
    rx: watch::Receiver<Option<StorageResult<()>>>,
}

impl SharedCommit {
    /// Waits until the write is durable (or failed). A committer that stops
    /// without answering (it panicked) leaves the outcome unknown.
    pub async fn wait(mut self) -> StorageResult<()> {
        match self.rx.wait_for(Option::is_some).await {
            Ok(answer) => answer.clone().unwrap_or(Ok(())),
            Err(_) => Err(StorageError::unanswered()),
        }
    }

    /// True once the commit was answered (durable or failed).
    pub fn is_done(&self) -> bool {
        self.rx.borrow().is_some() || self.rx.has_changed().is_err()
    }
}

/// A place reserved in the committer's queue: [`CommitSlot::send`] queues a
/// write without waiting. Dropping it unused gives the place back.
pub struct CommitSlot<'a> {
    permit: mpsc::Permit<'a, Job>,
}

impl CommitSlot<'_> {
    /// Queues `writes` (with `after`, run on the committer thread once they
    /// are durable); the returned handle resolves after the flush.
    pub fn send(self, writes: WriteSet, after: Option<AfterCommit>) -> SharedCommit {
        let (done, rx) = watch::channel(None);
        self.permit.send(Job::Commit(CommitRequest {
            writes,
            after,
            done: Done::Shared(done),
        }));
        SharedCommit { rx }
    }
}

impl StorageError {
    /// A write whose answer never came (the code that was to queue it or
    /// answer it stopped halfway): it may or may not be stored.
    pub fn unanswered() -> StorageError {
        StorageError::Closed.outcome_unknown()
    }
}

impl Store {
    /// Reserves a place in the committer's queue (waits while it is full).
    /// Queue order is commit order, as for [`Store::enqueue`].
    pub async fn reserve_commit(&self) -> StorageResult<CommitSlot<'_>> {
        let permit = self
            .commits
            .reserve()
            .await
            .map_err(|_| StorageError::Closed)?;
        Ok(CommitSlot { permit })
    }
}
