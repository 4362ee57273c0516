//! The counter journal: how a counter increment commits atomically with the
//! data it counts without a read and a write of the counter on every commit.
//!
//! [`WriteSet::increment`](super::WriteSet::increment) only records deltas.
//! The committer sums a group's deltas and writes them as journal entries
//! (keyspace [`keys::COUNTER_JOURNAL`], by sequence) into the group's own
//! atomic batch ([`CounterJournal::stage`]); once that batch is durable it
//! keeps them in memory as well ([`CounterJournal::record`]). About once a
//! second, when [`FOLD_AT_KEYS`] counters are pending, or when a reader asks
//! ([`Store::sync_counters`](super::Store::sync_counters)),
//! [`CounterJournal::fold`] adds them into their
//! [`CountersRecord`](records::CountersRecord)s and deletes the entries, again
//! in one batch. [`CounterJournal::load`] reads and folds what an earlier
//! process left, in `Store::open` before the store serves; when it cannot,
//! the store does not open (billing would miss the usage those entries
//! count).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::store::decode;
use super::{keys, records, StorageError, StorageResult};

/// Most counter deltas in one journal entry (keeps every entry far below
/// sled's blob threshold, whose files sled never syncs).
pub(super) const MAX_JOURNAL_ENTRY_DELTAS: usize = 1024;

/// Fold pending counter deltas at least this often...
const FOLD_EVERY: Duration = Duration::from_secs(1);
/// ...or once this many counters are pending.
const FOLD_AT_KEYS: usize = 20_000;

/// Counter deltas summed by counter key.
#[derive(Default)]
pub(super) struct Deltas(HashMap<Vec<u8>, Vec<u64>>);

impl Deltas {
    /// Adds `deltas` to what is summed for `key`.
    pub(super) fn add(&mut self, key: Vec<u8>, deltas: &[u64]) {
        add_into(self.0.entry(key).or_default(), deltas);
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Adds `deltas` position by position to `values`, growing it as needed.
/// Wrapping, so a delta that takes back an earlier one (a delivery that never
/// reached its client, `UsageDelta::returned`) subtracts exactly.
fn add_into(values: &mut Vec<u64>, deltas: &[u64]) {
    if values.len() < deltas.len() {
        values.resize(deltas.len(), 0);
    }
    for (value, delta) in values.iter_mut().zip(deltas) {
        *value = value.wrapping_add(*delta);
    }
}

/// Journal entries staged into a batch, not yet durable.
pub(super) type Staged = Vec<(Vec<u8>, records::CounterJournalRecord)>;

/// The committer's view of the journal: deltas durable in journal entries but
/// not folded into their counters yet.
#[derive(Default)]
pub(super) struct CounterJournal {
    /// Unfolded deltas by counter key.
    pending: Deltas,
    /// The journal entries that hold them (deleted by the fold).
    journal_keys: Vec<Vec<u8>>,
    /// When the oldest unfolded delta became durable.
    since: Option<Instant>,
    /// Sequence of the next journal entry.
    next_seq: u64,
}

impl CounterJournal {
    /// At start-up: reads every journal entry an earlier process left and
    /// folds them. Fails with [`StorageError::CounterJournal`] naming the step.
    pub(super) fn load(tree: &sled::Tree) -> StorageResult<CounterJournal> {
        let failed = |what, source| StorageError::CounterJournal {
            what,
            source: Box::new(source),
        };
        let mut journal = CounterJournal::recover(tree).map_err(|e| failed("cannot read", e))?;
        journal.fold(tree).map_err(|e| failed("cannot fold", e))?;
        Ok(journal)
    }

    /// Reads every journal entry left by an earlier process.
    fn recover(tree: &sled::Tree) -> StorageResult<CounterJournal> {
        let mut journal = CounterJournal::default();
        for item in tree.scan_prefix([keys::COUNTER_JOURNAL]) {
            let (key, value) = item?;
            let record: records::CounterJournalRecord = decode(&key, &value)?;
            journal.next_seq = keys::u64_at(&key, 1).unwrap_or(0) + 1;
            journal.add_entry(key.to_vec(), record);
        }
        Ok(journal)
    }

    /// Writes a group's summed `deltas` into `batch` as journal entries of at
    /// most [`MAX_JOURNAL_ENTRY_DELTAS`] each (moved, not copied). Hand the
    /// result to [`CounterJournal::record`] once `batch` is durable.
    pub(super) fn stage(&self, deltas: Deltas, batch: &mut sled::Batch) -> Staged {
        let mut rest: Vec<records::CounterDelta> = deltas
            .0
            .into_iter()
            .map(|(key, values)| records::CounterDelta { key, values })
            .collect();
        let mut staged = Vec::new();
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(MAX_JOURNAL_ENTRY_DELTAS));
            let key = keys::counter_journal(self.next_seq + staged.len() as u64);
            let record = records::CounterJournalRecord { entries: rest };
            batch.insert(key.clone(), prost::Message::encode_to_vec(&record));
            staged.push((key, record));
            rest = tail;
        }
        staged
    }

    /// After the batch holding `staged` is durable: its deltas are pending.
    pub(super) fn record(&mut self, staged: Staged) {
        if staged.is_empty() {
            return;
        }
        self.next_seq += staged.len() as u64;
        self.since.get_or_insert_with(Instant::now);
        for (key, record) in staged {
            self.add_entry(key, record);
        }
    }

    fn add_entry(&mut self, key: Vec<u8>, record: records::CounterJournalRecord) {
        self.journal_keys.push(key);
        for entry in record.entries {
            self.pending.add(entry.key, &entry.values);
        }
    }

    /// True when a periodic fold is due (time or size).
    pub(super) fn fold_due(&self) -> bool {
        self.since
            .is_some_and(|since| since.elapsed() >= FOLD_EVERY)
            || self.pending.len() >= FOLD_AT_KEYS
    }

    /// Folds pending deltas into their counters and deletes the journal
    /// entries that held them, in one atomic batch. Not flushed on purpose: if
    /// a crash loses it, the journal entries are still there and are folded at
    /// start-up. When it fails, the deltas stay pending and the next fold (a
    /// second later at the earliest, unless asked for) tries again.
    pub(super) fn fold(&mut self, tree: &sled::Tree) -> StorageResult<()> {
        if self.journal_keys.is_empty() {
            return Ok(());
        }
        let folded = self.fold_batch(tree).and_then(|batch| {
            tree.apply_batch(batch)?;
            Ok(())
        });
        match folded {
            Ok(()) => {
                self.pending.0.clear();
                self.journal_keys.clear();
                self.since = None;
            }
            Err(_) => self.since = Some(Instant::now()),
        }
        folded
    }

    /// The batch that adds every pending delta to its counter and deletes the
    /// journal entries.
    fn fold_batch(&self, tree: &sled::Tree) -> StorageResult<sled::Batch> {
        let mut batch = sled::Batch::default();
        for (key, deltas) in &self.pending.0 {
            let mut values = match tree.get(key)? {
                Some(v) => decode::<records::CountersRecord>(key, &v)?.values,
                None => Vec::new(),
            };
            add_into(&mut values, deltas);
            batch.insert(
                key.as_slice(),
                prost::Message::encode_to_vec(&records::CountersRecord { values }),
            );
        }
        for key in &self.journal_keys {
            batch.remove(key.as_slice());
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::records::CountersRecord;
    use crate::storage::{Store, WriteSet};

    #[tokio::test]
    async fn concurrent_increments_are_exact_after_sync_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    let mut ws = WriteSet::new();
                    ws.increment(b"Ucounter".to_vec(), vec![1, 2]);
                    store.commit(ws).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        store.sync_counters().await.unwrap();
        let counter: CountersRecord = store.get(b"Ucounter").unwrap().unwrap();
        assert_eq!(counter.values, vec![400, 800]);
        assert_eq!(
            store.scan_keys(&[keys::COUNTER_JOURNAL]).count(),
            0,
            "journal folded"
        );

        let mut ws = WriteSet::new();
        ws.increment(b"Ucounter".to_vec(), vec![1]);
        store.commit(ws).await.unwrap();
        drop(store);
        committer.join();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        store.sync_counters().await.unwrap();
        let counter: CountersRecord = store.get(b"Ucounter").unwrap().unwrap();
        assert_eq!(counter.values, vec![401, 800]);
    }

    #[tokio::test]
    async fn a_commit_with_thousands_of_counters_is_journaled_in_chunks_and_exact() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let mut ws = WriteSet::new();
        for i in 0..3000u64 {
            ws.increment(format!("Udevice-{i}").into_bytes(), vec![i, 1]);
        }
        store.commit(ws).await.unwrap();
        assert_eq!(
            store.scan_keys(&[keys::COUNTER_JOURNAL]).count(),
            3000usize.div_ceil(MAX_JOURNAL_ENTRY_DELTAS),
            "one journal entry per chunk until folded"
        );
        store.sync_counters().await.unwrap();
        for i in [0u64, 1023, 1024, 2999] {
            let c: CountersRecord = store
                .get(format!("Udevice-{i}").as_bytes())
                .unwrap()
                .unwrap();
            assert_eq!(c.values, vec![i, 1]);
        }
        assert_eq!(store.scan::<CountersRecord>(b"Udevice-").count(), 3000);
    }

    #[tokio::test]
    async fn a_counter_journal_that_does_not_decode_fails_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        // A cursor's bytes are not a journal entry (field 1 has another wire type).
        let mut ws = WriteSet::new();
        ws.put(
            keys::counter_journal(0),
            &crate::storage::records::CursorRecord {
                next_offset: 5,
                ..Default::default()
            },
        );
        store.commit(ws).await.unwrap();
        drop(store);
        committer.join();
        let error = match Store::open(dir.path(), 8 << 20) {
            Ok(_) => panic!("a store whose counter journal is unreadable opened"),
            Err(e) => e,
        };
        let message = error.to_string();
        assert!(
            message.contains("cannot read the counter journal"),
            "names the cause: {message}"
        );
        // The cause itself is kept, down to prost's decode error.
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        let mut found = false;
        while let Some(e) = cause {
            found |= e.downcast_ref::<prost::DecodeError>().is_some();
            cause = e.source();
        }
        assert!(found, "the decode error is in the source chain: {error:?}");
    }
}
