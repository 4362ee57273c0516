//! The ledger: each [`LedgerEntry`] under its global sequence (`G` +
//! sequence), and the idempotency index (`I` + idempotency key -> the
//! sequence of the entry written under it). The entry is stored as it is
//! hashed (its prost encoding), so it needs no row type of its own.

use crate::billing::ledger::LedgerEntry;
use crate::storage::records::LedgerKeyRecord;
use crate::storage::{keys, StorageResult, Store, WriteSet};

impl WriteSet {
    /// Appends `entry` under its sequence and indexes it by its idempotency
    /// key, in this set's atomic write.
    pub fn append_ledger_entry(&mut self, entry: &LedgerEntry) {
        self.put_ledger_entry(entry.sequence, entry);
        self.put(
            keys::ledger_key(&entry.idempotency_key),
            &LedgerKeyRecord {
                sequence: entry.sequence,
            },
        );
    }

    /// Overwrites the entry stored at `sequence` and nothing else (not the
    /// idempotency index). Billing appends with
    /// [`WriteSet::append_ledger_entry`]; this is for tests that edit the
    /// ledger behind billing's back to show that verification catches it.
    pub fn put_ledger_entry(&mut self, sequence: u64, entry: &LedgerEntry) {
        self.put(keys::ledger(sequence), entry);
    }
}

impl Store {
    /// The ledger entry stored at `sequence`, if any.
    pub fn ledger_entry(&self, sequence: u64) -> StorageResult<Option<LedgerEntry>> {
        self.get(&keys::ledger(sequence))
    }

    /// Ledger entries in sequence order from `sequence` on (0: the whole
    /// ledger).
    pub fn ledger_entries_from(
        &self,
        sequence: u64,
    ) -> impl Iterator<Item = StorageResult<LedgerEntry>> + '_ {
        self.scan_from::<LedgerEntry>(&[keys::LEDGER], &keys::ledger(sequence))
            .map(|item| item.map(|(_, entry)| entry))
    }

    /// The sequence of the entry written under `idempotency_key`, if any.
    pub fn ledger_sequence_of(&self, idempotency_key: &str) -> StorageResult<Option<u64>> {
        Ok(self
            .get::<LedgerKeyRecord>(&keys::ledger_key(idempotency_key))?
            .map(|r| r.sequence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sequence: u64, idempotency_key: &str) -> LedgerEntry {
        LedgerEntry {
            sequence,
            tenant: "acme".into(),
            idempotency_key: idempotency_key.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn appended_entries_read_back_by_sequence_and_idempotency_key() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let mut writes = WriteSet::new();
        for sequence in 1..=3 {
            writes.append_ledger_entry(&entry(sequence, &format!("acme/{sequence}")));
        }
        store.commit(writes).await.unwrap();

        assert_eq!(store.ledger_entry(2).unwrap(), Some(entry(2, "acme/2")));
        assert_eq!(store.ledger_entry(4).unwrap(), None);
        assert_eq!(store.ledger_sequence_of("acme/3").unwrap(), Some(3));
        assert_eq!(store.ledger_sequence_of("acme/4").unwrap(), None);
        let sequences = |from| {
            store
                .ledger_entries_from(from)
                .map(|e| e.map(|e| e.sequence))
                .collect::<StorageResult<Vec<_>>>()
                .unwrap()
        };
        assert_eq!(sequences(0), [1, 2, 3]);
        assert_eq!(sequences(2), [2, 3]);

        // An edit in place leaves the index alone.
        let mut writes = WriteSet::new();
        writes.put_ledger_entry(2, &entry(2, "edited"));
        store.commit(writes).await.unwrap();
        assert_eq!(store.ledger_entry(2).unwrap(), Some(entry(2, "edited")));
        assert_eq!(store.ledger_sequence_of("edited").unwrap(), None);
        assert_eq!(store.ledger_sequence_of("acme/2").unwrap(), Some(2));
        drop(store);
        committer.join();
    }
}
