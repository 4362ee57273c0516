//! A produce queued for commit, answering once it is durable.

use std::sync::Arc;

use super::ProduceOutcome;
use crate::broker::topic::Topic;
use crate::error::Result;
use crate::observability::{name, Metrics};
use crate::storage::SharedCommit;
use crate::sync::MutexExt;

/// A produce that is queued for commit; [`PendingProduce::wait`] answers once
/// it is durable. Lets a stream pipeline batches while keeping replies in order.
/// Produces combined into one set share its commit (`combine.rs`).
pub struct PendingProduce {
    pub(super) commit: Option<SharedCommit>,
    pub(super) outcome: ProduceOutcome,
    pub(super) topic: Arc<Topic>,
    pub(super) dedup_ids: QueuedDedupIds,
    pub(super) stored: StoredFigures,
}

/// The dedup_ids a produce queued for commit (in its topic's uncommitted
/// map, so a produce before the commit sees them). They are forgotten there
/// once that commit is answered — durable, they are in the store; failed,
/// a retry must be stored, not answered as a duplicate of nothing — and
/// that happens whether or not anyone still waits for the produce: dropped
/// before the commit was answered (its caller left, before its answer was
/// sent or while it waited), it leaves a task that forgets them then.
pub(super) struct QueuedDedupIds {
    topic: Option<Arc<Topic>>,
    ids: Vec<Arc<str>>,
    commit: Option<SharedCommit>,
}

impl QueuedDedupIds {
    /// None queued.
    pub(super) fn none() -> QueuedDedupIds {
        QueuedDedupIds {
            topic: None,
            ids: Vec::new(),
            commit: None,
        }
    }

    /// `ids`, queued on `topic` for `commit`.
    pub(super) fn new(topic: Arc<Topic>, ids: Vec<Arc<str>>, commit: SharedCommit) -> Self {
        QueuedDedupIds {
            topic: Some(topic),
            ids,
            commit: Some(commit),
        }
    }
}

/// Removes `ids` from `topic`'s uncommitted dedup map.
fn forget(topic: &Topic, ids: &[Arc<str>]) {
    let mut uncommitted = topic.uncommitted_dedup.lock_unpoisoned();
    for id in ids {
        uncommitted.remove(id);
    }
}

impl Drop for QueuedDedupIds {
    fn drop(&mut self) {
        let Some(topic) = self.topic.take() else {
            return;
        };
        if self.ids.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.ids);
        match (self.commit.take(), tokio::runtime::Handle::try_current()) {
            (Some(commit), Ok(runtime)) if !commit.is_done() => {
                runtime.spawn(async move {
                    let _ = commit.wait().await;
                    forget(&topic, &ids);
                });
            }
            _ => forget(&topic, &ids),
        }
    }
}

/// What a produce stored, for the metrics once it is durable.
#[derive(Default)]
pub(super) struct StoredFigures {
    pub(super) metrics: Option<Arc<Metrics>>,
    pub(super) messages: u64,
    pub(super) bytes: u64,
    pub(super) reclaimed: u64,
    /// Message sets stored (the produces combined into one set count it
    /// once, on the first of them).
    pub(super) sets: u64,
}

impl PendingProduce {
    /// A batch of duplicates only: nothing was queued, so it is answered at
    /// once.
    pub(super) fn nothing_stored(outcome: ProduceOutcome, topic: Arc<Topic>) -> PendingProduce {
        PendingProduce {
            commit: None,
            outcome,
            topic,
            dedup_ids: QueuedDedupIds::none(),
            stored: StoredFigures::default(),
        }
    }

    /// Waits until the batch is durable and returns its outcome.
    pub async fn wait(self) -> Result<ProduceOutcome> {
        let result = match self.commit {
            Some(commit) => commit.wait().await,
            None => Ok(()),
        };
        // Answered: its dedup_ids are forgotten now.
        drop(self.dedup_ids);
        result?;
        if let Some(metrics) = &self.stored.metrics {
            let tenant = &self.topic.tenant;
            metrics.count(name::PRODUCED_MESSAGES, tenant, self.stored.messages);
            metrics.count(name::PRODUCED_BYTES, tenant, self.stored.bytes);
            metrics.count(name::RECLAIMED_MESSAGES, tenant, self.stored.reclaimed);
            metrics.count(name::PRODUCED_SETS, tenant, self.stored.sets);
            metrics.count_part(name::BILLABLE_UNITS, tenant, "produced", self.outcome.units);
        }
        Ok(self.outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::produce::DedupEntry;
    use crate::broker::topic::{OverflowPolicy, TopicLog, TopicSettings, TopicState};
    use crate::storage::{Store, WriteSet};

    fn topic() -> Arc<Topic> {
        let settings = TopicSettings {
            id: 1,
            tenant: "acme".into(),
            name: "t".into(),
            expiry_seconds: 3600,
            max_bytes: 1 << 20,
            overflow_policy: OverflowPolicy::ReclaimOldest,
            dedup_window_seconds: 60,
            created_ms: 0,
        };
        let log = TopicLog {
            state: TopicState::default(),
            sets: Default::default(),
            bytes: 0,
            device_metered_through: 0,
        };
        Arc::new(Topic::new(settings, log, Default::default()))
    }

    /// A produce whose caller left (its `PendingProduce` dropped, never
    /// waited for) forgets its queued dedup_ids once its commit is answered
    /// — before, they stayed until the dedup sweep, and had that commit
    /// failed, a retry was answered as a duplicate of a message never stored.
    #[tokio::test]
    async fn dedup_ids_are_forgotten_once_the_commit_is_answered_even_unwaited() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let topic = topic();
        let id: Arc<str> = Arc::from("order-1");
        let entry = DedupEntry {
            offset: 0,
            publish_ms: 0,
        };
        topic
            .uncommitted_dedup
            .lock_unpoisoned()
            .insert(id.clone(), entry);
        let slot = store.reserve_commit().await.unwrap();
        let commit = slot.send(WriteSet::new(), None);
        let pending = PendingProduce {
            commit: Some(commit.clone()),
            outcome: ProduceOutcome::default(),
            topic: topic.clone(),
            dedup_ids: QueuedDedupIds::new(topic.clone(), vec![id.clone()], commit.clone()),
            stored: StoredFigures::default(),
        };
        // Its caller is gone before the commit was answered.
        drop(pending);
        commit.wait().await.unwrap();
        // The forgetting task runs once the answer wakes it: give it up to
        // 5 s of wall time (a count of yields was too short under load).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !topic.uncommitted_dedup.lock_unpoisoned().is_empty()
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(
            topic.uncommitted_dedup.lock_unpoisoned().is_empty(),
            "the dedup_id is still taken"
        );
        drop(store);
        committer.join();
    }
}
