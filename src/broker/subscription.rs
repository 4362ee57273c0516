//! A subscription's delivery state and the rules that move it: which message
//! goes out next (redeliveries before new messages), locks and their
//! deadlines, attempt counts, dead-lettering, acks, nacks and seeks.
//!
//! The state machine changes in memory only: [`SubState::persist`] adds what
//! changed to a write set the broker commits, and [`SubState::load`] reads it
//! back at start-up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use tokio::sync::{watch, Mutex};

use crate::storage::keys;
use crate::storage::records::{CursorRecord, PendingRecord, PendingRunRecord, SubscriptionRecord};
use crate::storage::{StorageResult, Store, WriteSet};
use crate::sync::RwLockExt;

/// One subscription of a topic.
pub struct Subscription {
    /// Internal id (storage keys).
    pub id: u64,
    /// Name within the topic.
    pub name: String,
    settings: RwLock<SubscriptionRecord>,
    /// Delivery state. Held (async) across building and enqueueing a write, so
    /// the commit order of the subscription's writes is the order of its changes.
    pub state: Mutex<SubState>,
    /// Bumped after anything that may make a message deliverable again (nack,
    /// seek, settings) so waiting consumers look again.
    changed: watch::Sender<u64>,
    deleted: AtomicBool,
}

impl Subscription {
    /// Builds a subscription from its stored parts.
    pub fn new(record: SubscriptionRecord, state: SubState) -> Self {
        Subscription {
            id: record.id,
            name: record.name.clone(),
            settings: RwLock::new(record),
            state: Mutex::new(state),
            changed: watch::channel(0).0,
            deleted: AtomicBool::new(false),
        }
    }

    /// A copy of the current settings.
    pub fn settings(&self) -> SubscriptionRecord {
        self.settings.read_unpoisoned().clone()
    }

    /// Replaces the settings (after they were stored).
    pub fn set_settings(&self, record: SubscriptionRecord) {
        *self.settings.write_unpoisoned() = record;
        self.notify();
    }

    /// Wakes waiting consumers.
    pub fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that changes whenever [`Subscription::notify`] runs.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Marks the subscription deleted and wakes its consumers so they stop.
    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        self.notify();
    }

    /// True once deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }
}

/// What the next claim hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Deliver `offset`; this is delivery number `attempt` of it.
    Deliver {
        /// The message's offset.
        offset: u64,
        /// 1 on first delivery.
        attempt: u32,
    },
    /// `offset` reached the maximum attempts: move it to the dead-letter topic.
    DeadLetter {
        /// The message's offset.
        offset: u64,
    },
}

/// The delivery rules in force for one claim.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRules {
    /// Lock time in ms; 0 means at-most-once.
    pub lock_ms: i64,
    /// 0: unlimited. Otherwise deliveries allowed before dead-lettering.
    pub max_attempts: u32,
    /// Whether a dead-letter topic is configured (and usable).
    pub dead_letter: bool,
    /// The oldest retained offset of the topic.
    pub first_offset: u64,
    /// One past the newest durable offset of the topic.
    pub visible_end: u64,
}

/// Most offsets one run of first deliveries covers.
const MAX_RUN: u64 = 4096;

/// A run of first deliveries as the state machine keeps it (see
/// [`PendingRunRecord`]).
#[derive(Debug, Clone)]
struct Run {
    end: u64,
    deadline_ms: i64,
    first_delivery_ms: i64,
    /// Bit i set: offset start + i is resolved.
    resolved: Vec<u64>,
    unresolved: u64,
}

impl Run {
    fn is_resolved(&self, index: u64) -> bool {
        self.resolved
            .get((index / 64) as usize)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    /// Marks `index` resolved; returns whether it was not yet.
    fn resolve(&mut self, index: u64) -> bool {
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

    fn record(&self, start: u64) -> PendingRunRecord {
        let len = (self.end - start) as usize;
        let mut resolved: Vec<u8> = self.resolved.iter().flat_map(|w| w.to_le_bytes()).collect();
        resolved.resize(len.div_ceil(8), 0);
        PendingRunRecord {
            end: self.end,
            deadline_ms: self.deadline_ms,
            first_delivery_ms: self.first_delivery_ms,
            resolved,
        }
    }

    fn from_record(start: u64, record: &PendingRunRecord) -> Run {
        let len = record.end.saturating_sub(start);
        let mut resolved = vec![0u64; len.div_ceil(64) as usize];
        for (i, byte) in record.resolved.iter().enumerate() {
            if let Some(word) = resolved.get_mut(i / 8) {
                *word |= (*byte as u64) << ((i % 8) * 8);
            }
        }
        let set: u64 = resolved.iter().map(|w| w.count_ones() as u64).sum();
        Run {
            end: record.end,
            deadline_ms: record.deadline_ms,
            first_delivery_ms: record.first_delivery_ms,
            resolved,
            unresolved: len.saturating_sub(set),
        }
    }
}

/// A subscription's cursor and in-flight messages.
///
/// In memory every pending message has its own [`PendingRecord`]. On disk,
/// messages first delivered together share one [`PendingRunRecord`] (a
/// delivery pass of a thousand messages writes one key, and an ack of them
/// rewrites that key), and only a message whose attempts or deadline differ
/// from its run's (redelivered or nacked) gets a record of its own. Every
/// change marks what it touched; [`SubState::persist`] writes exactly that.
#[derive(Debug, Default, Clone)]
pub struct SubState {
    /// The offset the next new delivery comes from (may lag the topic's
    /// oldest retained offset: expired messages are skipped lazily).
    pub next_offset: u64,
    /// Delivered, unacked messages of an at-least-once subscription.
    pub pending: BTreeMap<u64, PendingRecord>,
    /// (deadline, offset) of every pending message, soonest first.
    due: BTreeSet<(i64, u64)>,
    /// Messages moved to the dead-letter topic, ever.
    pub dead_lettered: u64,
    /// Stored runs of first deliveries, by first offset.
    runs: BTreeMap<u64, Run>,
    /// Offsets that have a stored record of their own.
    stored_offsets: BTreeSet<u64>,
    /// Offsets whose pending state changed since the last persist (other
    /// than joining a new run).
    changed: BTreeSet<u64>,
    /// Runs changed since the last persist.
    changed_runs: BTreeSet<u64>,
    /// The run that new first deliveries may still extend (created since the
    /// last persist).
    open_run: Option<u64>,
}

impl SubState {
    /// Rebuilds the state from its stored records.
    pub fn from_records(
        cursor: CursorRecord,
        runs: Vec<(u64, PendingRunRecord)>,
        own: BTreeMap<u64, PendingRecord>,
    ) -> Self {
        let mut state = SubState {
            next_offset: cursor.next_offset,
            dead_lettered: cursor.dead_lettered,
            ..SubState::default()
        };
        for (start, record) in runs {
            let run = Run::from_record(start, &record);
            for offset in start..run.end {
                if !run.is_resolved(offset - start) {
                    state.insert_pending(
                        offset,
                        PendingRecord {
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
        let cursor = store.get(&keys::cursor(sub_id))?.unwrap_or_default();
        let mut runs = Vec::new();
        for item in store.scan::<PendingRunRecord>(&keys::id_prefix(keys::PENDING_RUN, sub_id)) {
            let (key, record) = item?;
            if let Some(start) = keys::u64_at(&key, 9) {
                runs.push((start, record));
            }
        }
        let mut own = BTreeMap::new();
        for item in store.scan::<PendingRecord>(&keys::id_prefix(keys::PENDING, sub_id)) {
            let (key, record) = item?;
            if let Some(offset) = keys::u64_at(&key, 9) {
                own.insert(offset, record);
            }
        }
        Ok(SubState::from_records(cursor, runs, own))
    }

    /// The cursor record to store.
    pub fn cursor_record(&self) -> CursorRecord {
        CursorRecord {
            next_offset: self.next_offset,
            dead_lettered: self.dead_lettered,
        }
    }

    fn insert_pending(&mut self, offset: u64, record: PendingRecord) {
        if let Some(old) = self.pending.insert(offset, record.clone()) {
            self.due.remove(&(old.deadline_ms, offset));
        }
        self.due.insert((record.deadline_ms, offset));
        self.changed.insert(offset);
    }

    /// Forgets a pending message; returns whether it was pending.
    pub fn remove_pending(&mut self, offset: u64) -> bool {
        match self.pending.remove(&offset) {
            Some(old) => {
                self.due.remove(&(old.deadline_ms, offset));
                self.changed.insert(offset);
                true
            }
            None => false,
        }
    }

    /// Puts a message back into the pending set (e.g. when dead-lettering
    /// could not complete).
    pub fn restore_pending(&mut self, offset: u64, record: PendingRecord) {
        self.insert_pending(offset, record);
    }

    /// The earliest deadline among pending messages (when the next redelivery
    /// may become due).
    pub fn next_deadline(&self) -> Option<i64> {
        self.due.first().map(|(deadline, _)| *deadline)
    }

    /// Records a first delivery of `offset` in the open run, or starts one.
    fn join_run(&mut self, offset: u64, deadline_ms: i64, now: i64) {
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

    /// Hands out the next message: a due redelivery first, else the next new
    /// message. `None` when nothing is deliverable now.
    pub fn claim(&mut self, now: i64, rules: &ClaimRules) -> Option<Claim> {
        if let Some(&(deadline, offset)) = self.due.first() {
            if deadline <= now {
                let mut record = self.pending.get(&offset).cloned().unwrap_or_default();
                if rules.dead_letter
                    && rules.max_attempts > 0
                    && record.attempts >= rules.max_attempts
                {
                    self.remove_pending(offset);
                    return Some(Claim::DeadLetter { offset });
                }
                record.attempts += 1;
                let attempt = record.attempts;
                if rules.lock_ms == 0 {
                    // The subscription became at-most-once: this is the last delivery.
                    self.remove_pending(offset);
                } else {
                    record.deadline_ms = now + rules.lock_ms;
                    self.insert_pending(offset, record);
                }
                return Some(Claim::Deliver { offset, attempt });
            }
        }
        let offset = self.next_offset.max(rules.first_offset);
        if offset >= rules.visible_end {
            return None;
        }
        self.next_offset = offset + 1;
        if rules.lock_ms > 0 {
            let deadline_ms = now + rules.lock_ms;
            let record = PendingRecord {
                attempts: 1,
                deadline_ms,
                first_delivery_ms: now,
            };
            self.due.insert((deadline_ms, offset));
            self.pending.insert(offset, record);
            self.join_run(offset, deadline_ms, now);
        }
        Some(Claim::Deliver { offset, attempt: 1 })
    }

    /// Acknowledges `offset`; returns whether it was pending.
    pub fn ack(&mut self, offset: u64) -> bool {
        self.remove_pending(offset)
    }

    /// Makes a pending message due at `redeliver_at`; returns whether it was pending.
    pub fn nack(&mut self, offset: u64, redeliver_at: i64) -> bool {
        match self.pending.get(&offset).cloned() {
            Some(mut record) => {
                record.deadline_ms = redeliver_at;
                self.insert_pending(offset, record);
                true
            }
            None => false,
        }
    }

    /// Moves the cursor to `offset` and releases every pending message.
    pub fn seek(&mut self, offset: u64) {
        let released: Vec<u64> = self.pending.keys().copied().collect();
        for offset in released {
            self.remove_pending(offset);
        }
        self.next_offset = offset;
    }

    /// The run that covers `offset` while it is unresolved there.
    fn covering_run(&self, offset: u64) -> Option<u64> {
        let (&start, run) = self.runs.range(..=offset).next_back()?;
        (offset < run.end && !run.is_resolved(offset - start)).then_some(start)
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
                    writes.put(keys::pending(sub_id, offset), record);
                    self.stored_offsets.insert(offset);
                }
                None => {
                    if self.stored_offsets.remove(&offset) {
                        writes.delete(keys::pending(sub_id, offset));
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
                writes.delete(keys::pending_run(sub_id, start));
            } else {
                writes.put(keys::pending_run(sub_id, start), &run.record(start));
            }
        }
        self.open_run = None;
        writes.put(keys::cursor(sub_id), &self.cursor_record());
    }

    /// Pending messages whose lock is still running at `now`.
    pub fn in_flight(&self, now: i64) -> u64 {
        self.due.iter().filter(|(d, _)| *d > now).count() as u64
    }

    /// Pending messages waiting for redelivery at `now`.
    pub fn due_now(&self, now: i64) -> u64 {
        self.due.iter().take_while(|(d, _)| *d <= now).count() as u64
    }

    /// Stored records (runs and own records) this state is kept in.
    #[cfg(test)]
    fn stored_records(&self) -> usize {
        self.runs.len() + self.stored_offsets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(lock_ms: i64, visible_end: u64) -> ClaimRules {
        ClaimRules {
            lock_ms,
            max_attempts: 0,
            dead_letter: false,
            first_offset: 0,
            visible_end,
        }
    }

    #[test]
    fn at_most_once_never_redelivers() {
        let mut s = SubState::default();
        let r = rules(0, 2);
        assert_eq!(
            s.claim(0, &r),
            Some(Claim::Deliver {
                offset: 0,
                attempt: 1
            })
        );
        assert_eq!(
            s.claim(0, &r),
            Some(Claim::Deliver {
                offset: 1,
                attempt: 1
            })
        );
        assert_eq!(s.claim(1_000_000, &r), None);
        assert!(s.pending.is_empty());
    }

    #[test]
    fn redelivery_after_lock_comes_before_new_messages() {
        let mut s = SubState::default();
        let r = rules(10_000, 1);
        assert_eq!(
            s.claim(0, &r),
            Some(Claim::Deliver {
                offset: 0,
                attempt: 1
            })
        );
        assert_eq!(s.claim(9_999, &r), None);
        let r = rules(10_000, 2);
        assert_eq!(
            s.claim(10_000, &r),
            Some(Claim::Deliver {
                offset: 0,
                attempt: 2
            })
        );
        assert_eq!(
            s.claim(10_000, &r),
            Some(Claim::Deliver {
                offset: 1,
                attempt: 1
            })
        );
        assert!(s.ack(0));
        assert!(!s.ack(0));
        assert_eq!(s.pending.len(), 1);
    }

    #[test]
    fn nack_makes_due_and_dead_letter_after_max_attempts() {
        let mut s = SubState::default();
        let r = ClaimRules {
            lock_ms: 10_000,
            max_attempts: 2,
            dead_letter: true,
            first_offset: 0,
            visible_end: 1,
        };
        assert_eq!(
            s.claim(0, &r),
            Some(Claim::Deliver {
                offset: 0,
                attempt: 1
            })
        );
        assert!(s.nack(0, 0));
        assert_eq!(
            s.claim(0, &r),
            Some(Claim::Deliver {
                offset: 0,
                attempt: 2
            })
        );
        assert!(s.nack(0, 5));
        assert_eq!(s.claim(4, &r), None);
        assert_eq!(s.claim(5, &r), Some(Claim::DeadLetter { offset: 0 }));
        assert!(s.pending.is_empty());
    }

    #[test]
    fn expired_messages_are_skipped_and_seek_releases_pending() {
        let mut s = SubState::default();
        let mut r = rules(10_000, 10);
        r.first_offset = 5;
        assert_eq!(
            s.claim(0, &r),
            Some(Claim::Deliver {
                offset: 5,
                attempt: 1
            })
        );
        s.seek(2);
        assert!(s.pending.is_empty());
        assert_eq!(s.next_deadline(), None);
        assert_eq!(
            s.claim(0, &r),
            Some(Claim::Deliver {
                offset: 5,
                attempt: 1
            })
        );
    }

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
        assert_eq!(
            store
                .scan_keys(&keys::id_prefix(keys::PENDING_RUN, 9))
                .count(),
            0
        );
        assert_eq!(
            store.scan_keys(&keys::id_prefix(keys::PENDING, 9)).count(),
            0
        );
    }

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
