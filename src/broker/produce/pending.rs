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
    pub(super) dedup_ids: Vec<String>,
    pub(super) stored: StoredFigures,
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
            dedup_ids: Vec::new(),
            stored: StoredFigures::default(),
        }
    }

    /// Waits until the batch is durable and returns its outcome.
    pub async fn wait(self) -> Result<ProduceOutcome> {
        let result = match self.commit {
            Some(commit) => commit.wait().await,
            None => Ok(()),
        };
        if !self.dedup_ids.is_empty() {
            let mut uncommitted = self.topic.uncommitted_dedup.lock_unpoisoned();
            for id in &self.dedup_ids {
                uncommitted.remove(id);
            }
        }
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
