//! Runs: the messages of one delivery pass, first delivered together with
//! one deadline, kept (and stored) as one record with a bitmap of the ones
//! since resolved.

use super::SubState;

/// Most offsets one run of first deliveries covers.
const MAX_RUN: u64 = 4096;

/// A run of first deliveries as the state machine keeps it, by its first
/// offset (storage keeps it as one row, its bitmap as bytes).
#[derive(Debug, Clone)]
pub struct Run {
    /// One past its last offset.
    pub(crate) end: u64,
    /// When the lock of its messages ends, Unix ms on the broker clock.
    pub(crate) deadline_ms: i64,
    /// When they were delivered, Unix ms.
    pub(crate) first_delivery_ms: i64,
    /// Bit i set: offset start + i is resolved.
    pub(crate) resolved: Vec<u64>,
    /// Offsets of the run not yet resolved.
    pub(crate) unresolved: u64,
}

impl Run {
    pub(super) fn is_resolved(&self, index: u64) -> bool {
        self.resolved
            .get((index / 64) as usize)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    /// Marks `index` resolved; returns whether it was not yet.
    pub(super) fn resolve(&mut self, index: u64) -> bool {
        let word = (index / 64) as usize;
        if self.resolved.len() <= word {
            self.resolved.resize(word + 1, 0);
        }
        let bit = 1 << (index % 64);
        if self.resolved[word] & bit != 0 {
            return false;
        }
        self.resolved[word] |= bit;
        self.unresolved -= 1;
        true
    }
}

impl SubState {
    /// Records a first delivery of `offset` in the open run, or starts one.
    pub(super) fn join_run(&mut self, offset: u64, deadline_ms: i64, now: i64) {
        if let Some(start) = self.open_run {
            if let Some(run) = self.runs.get_mut(&start) {
                if run.end == offset
                    && run.deadline_ms == deadline_ms
                    && run.first_delivery_ms == now
                    && offset - start < MAX_RUN
                {
                    run.end += 1;
                    run.unresolved += 1;
                    self.changed_runs.insert(start);
                    return;
                }
            }
        }
        self.runs.insert(
            offset,
            Run {
                end: offset + 1,
                deadline_ms,
                first_delivery_ms: now,
                resolved: Vec::new(),
                unresolved: 1,
            },
        );
        self.open_run = Some(offset);
        self.changed_runs.insert(offset);
    }

    /// The run that covers `offset` while it is unresolved there.
    pub(super) fn covering_run(&self, offset: u64) -> Option<u64> {
        let (&start, run) = self.runs.range(..=offset).next_back()?;
        (offset < run.end && !run.is_resolved(offset - start)).then_some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::super::claim::rules;
    use super::super::Claim;
    use super::*;
    use crate::storage::WriteSet;

    #[test]
    fn a_delivery_pass_is_stored_as_one_run_until_redelivered() {
        let mut s = SubState::default();
        let r = rules(10_000, 1000);
        for _ in 0..1000 {
            s.claim(0, &r);
        }
        let mut writes = WriteSet::new();
        s.persist(1, &mut writes);
        assert_eq!(s.stored_records(), 1, "one run for the pass");
        for offset in 0..500 {
            s.ack(offset);
        }
        s.persist(1, &mut writes);
        assert_eq!(s.stored_records(), 1);
        // Redelivered after the lock: those now have their own records.
        let mut redelivered = 0;
        while let Some(Claim::Deliver { attempt: 2, .. }) = s.claim(10_000, &r) {
            redelivered += 1;
        }
        assert_eq!(redelivered, 500);
        s.persist(1, &mut writes);
        assert_eq!(s.stored_records(), 500, "the run is resolved and gone");
    }
}
