//! Persistence of a subscription's state: [`SubState::persist`] adds what
//! changed since the last call to a write set; [`SubState::load`] and
//! [`SubState::from_stored`] read it back at start-up.

use std::collections::BTreeMap;

use super::runs::Run;
use super::{Pending, SubState};
use crate::storage::{StorageResult, Store, WriteSet};

/// A subscription's cursor: where new deliveries continue, and how many
/// messages went to the dead-letter topic, ever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The offset the next new delivery comes from.
    pub next_offset: u64,
    /// Messages moved to the dead-letter topic, ever.
    pub dead_lettered: u64,
}

/// A subscription's state as storage holds it: the cursor, the runs of
/// first deliveries by first offset, and the pending messages kept on their
/// own by offset.
#[derive(Debug, Clone, Default)]
pub struct StoredState {
    /// The cursor.
    pub cursor: Cursor,
    /// Runs of first deliveries, by first offset.
    pub runs: Vec<(u64, Run)>,
    /// Pending messages kept on their own (redelivered or nacked), by offset.
    pub own: BTreeMap<u64, Pending>,
}

impl SubState {
    /// Rebuilds the state from what storage holds.
    pub fn from_stored(stored: StoredState) -> Self {
        let StoredState { cursor, runs, own } = stored;
        let mut state = SubState {
            next_offset: cursor.next_offset,
            dead_lettered: cursor.dead_lettered,
            ..SubState::default()
        };
        for (start, run) in runs {
            for offset in start..run.end {
                if !run.is_resolved(offset - start) {
                    state.insert_pending(
                        offset,
                        Pending {
                            attempts: 1,
                            deadline_ms: run.deadline_ms,
                            first_delivery_ms: run.first_delivery_ms,
                        },
                    );
                }
            }
            state.runs.insert(start, run);
        }
        for (offset, record) in own {
            state.stored_offsets.insert(offset);
            state.insert_pending(offset, record);
        }
        state.changed.clear();
        state
    }

    /// Reads a subscription's stored state: its cursor, runs and own records.
    pub fn load(store: &Store, sub_id: u64) -> StorageResult<SubState> {
        Ok(SubState::from_stored(store.subscription_state(sub_id)?))
    }

    /// The cursor to store.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            next_offset: self.next_offset,
            dead_lettered: self.dead_lettered,
        }
    }

    /// Adds every change since the last call to `writes` (with the cursor).
    /// Call once per commit, with the state lock held until it is enqueued.
    pub fn persist(&mut self, sub_id: u64, writes: &mut WriteSet) {
        for offset in std::mem::take(&mut self.changed) {
            let run_start = self.covering_run(offset);
            let record = self.pending.get(&offset);
            if let (Some(start), Some(record)) = (run_start, record) {
                let run = &self.runs[&start];
                if record.attempts == 1
                    && record.deadline_ms == run.deadline_ms
                    && record.first_delivery_ms == run.first_delivery_ms
                {
                    continue; // still exactly what its run says
                }
            }
            if let Some(start) = run_start {
                if let Some(run) = self.runs.get_mut(&start) {
                    run.resolve(offset - start);
                    self.changed_runs.insert(start);
                }
            }
            match record {
                Some(record) => {
                    writes.put_pending(sub_id, offset, record);
                    self.stored_offsets.insert(offset);
                }
                None => {
                    if self.stored_offsets.remove(&offset) {
                        writes.delete_pending(sub_id, offset);
                    }
                }
            }
        }
        for start in std::mem::take(&mut self.changed_runs) {
            let Some(run) = self.runs.get(&start) else {
                continue;
            };
            if run.unresolved == 0 {
                self.runs.remove(&start);
                writes.delete_run(sub_id, start);
            } else {
                writes.put_run(sub_id, start, run);
            }
        }
        self.open_run = None;
        writes.put_cursor(sub_id, &self.cursor());
    }

    /// Stored records (runs and own records) this state is kept in.
    #[cfg(test)]
    pub(super) fn stored_records(&self) -> usize {
        self.runs.len() + self.stored_offsets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::subscription::ClaimRules;

    /// Random deliveries, acks, nacks, redeliveries, dead-letters and seeks,
    /// each persisted and committed to a real store: reading the store back
    /// at any point gives exactly the live state (every pending message with
    /// its attempts and deadline, the cursor).
    #[tokio::test]
    async fn stored_runs_and_records_always_read_back_as_the_live_state() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = crate::storage::Store::open(dir.path(), 8 << 20).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut state = SubState::default();
        let mut now = 1_000;
        let mut visible_end = 0;
        for step in 0..400 {
            let r = ClaimRules {
                lock_ms: 1_000,
                max_attempts: 3,
                dead_letter: true,
                first_offset: 0,
                visible_end,
            };
            match rng.random_range(0..10) {
                0..=2 => visible_end += rng.random_range(1..300),
                3..=4 => {
                    for _ in 0..rng.random_range(1..400) {
                        if state.claim(now, &r).is_none() {
                            break;
                        }
                    }
                }
                5..=6 => {
                    let offsets: Vec<u64> = state.pending.keys().copied().collect();
                    for offset in offsets {
                        if rng.random_bool(0.6) {
                            state.ack(offset);
                        }
                    }
                }
                7 => {
                    let offsets: Vec<u64> = state.pending.keys().copied().collect();
                    for offset in offsets {
                        if rng.random_bool(0.1) {
                            state.nack(offset, now + rng.random_range(0..2_000));
                        }
                    }
                }
                8 => now += rng.random_range(0..1_500),
                _ => {
                    if rng.random_bool(0.1) {
                        state.seek(rng.random_range(0..=visible_end));
                    }
                }
            }
            let mut writes = WriteSet::new();
            state.persist(9, &mut writes);
            store.commit(writes).await.unwrap();
            if step % 20 == 19 {
                let back = SubState::load(&store, 9).unwrap();
                assert_eq!(back.pending, state.pending, "step {step}");
                assert_eq!(back.next_offset, state.next_offset);
                assert_eq!(back.next_deadline(), state.next_deadline());
            }
        }
        // Acking everything leaves nothing stored.
        let offsets: Vec<u64> = state.pending.keys().copied().collect();
        for offset in offsets {
            state.ack(offset);
        }
        let mut writes = WriteSet::new();
        state.persist(9, &mut writes);
        store.commit(writes).await.unwrap();
        assert_eq!(state.stored_records(), 0);
        let stored = store.subscription_state(9).unwrap();
        assert!(stored.runs.is_empty(), "no run is stored");
        assert!(stored.own.is_empty(), "no pending record is stored");
    }
}
