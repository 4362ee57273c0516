use std::collections::HashMap;

use super::store::decode;
use super::{keys, records, StorageResult};

/// Most counter deltas in one journal entry (keeps every entry far below
/// sled's blob threshold, whose files sled never syncs).
pub(super) const MAX_JOURNAL_ENTRY_DELTAS: usize = 1024;

/// Counter deltas not folded into their counters yet, with the journal keys
/// that hold them durably.
#[derive(Default)]
pub(super) struct PendingCounters {
    pub(super) deltas: HashMap<Vec<u8>, Vec<u64>>,
    pub(super) journal_keys: Vec<Vec<u8>>,
    pub(super) since: Option<std::time::Instant>,
}

/// Fold pending counter deltas at least this often...
pub(super) const FOLD_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// ...or once this many counters are pending.
pub(super) const FOLD_AT_KEYS: usize = 20_000;

pub(super) fn add_deltas(into: &mut HashMap<Vec<u8>, Vec<u64>>, key: Vec<u8>, deltas: &[u64]) {
    let current = into.entry(key).or_default();
    if current.len() < deltas.len() {
        current.resize(deltas.len(), 0);
    }
    for (value, delta) in current.iter_mut().zip(deltas) {
        *value = value.saturating_add(*delta);
    }
}

/// Folds pending deltas into their counters and deletes the journal entries
/// that held them, in one atomic batch. Not flushed on purpose: if a crash
/// loses it, the journal entries are still there and are folded at start-up.
pub(super) fn fold_counters(tree: &sled::Tree, pending: &mut PendingCounters) -> StorageResult<()> {
    if pending.journal_keys.is_empty() {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    for (key, deltas) in pending.deltas.drain() {
        let mut values = match tree.get(&key)? {
            Some(v) => decode::<records::CountersRecord>(&key, &v)?.values,
            None => Vec::new(),
        };
        if values.len() < deltas.len() {
            values.resize(deltas.len(), 0);
        }
        for (value, delta) in values.iter_mut().zip(deltas) {
            *value = value.saturating_add(delta);
        }
        batch.insert(
            key,
            prost::Message::encode_to_vec(&records::CountersRecord { values }),
        );
    }
    for key in pending.journal_keys.drain(..) {
        batch.remove(key);
    }
    pending.since = None;
    tree.apply_batch(batch)?;
    Ok(())
}

/// Reads every journal entry left by an earlier process into `pending`.
pub(super) fn recover_journal(tree: &sled::Tree) -> StorageResult<(PendingCounters, u64)> {
    let mut pending = PendingCounters::default();
    let mut next_seq = 0;
    for item in tree.scan_prefix([keys::COUNTER_JOURNAL]) {
        let (key, value) = item?;
        let record: records::CounterJournalRecord = decode(&key, &value)?;
        for entry in record.entries {
            add_deltas(&mut pending.deltas, entry.key, &entry.values);
        }
        next_seq = keys::u64_at(&key, 1).unwrap_or(0) + 1;
        pending.journal_keys.push(key.to_vec());
    }
    Ok((pending, next_seq))
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
                dead_lettered: 0,
            },
        );
        store.commit(ws).await.unwrap();
        drop(store);
        committer.join();
        let error = match Store::open(dir.path(), 8 << 20) {
            Ok(_) => panic!("a store whose counter journal is unreadable opened"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains("cannot read the counter journal"),
            "names the cause: {error}"
        );
    }
}
