//! The manual clock's last reading (a singleton under `x` + "manual_clock"),
//! saved on every advance so a restart does not move time back.

use crate::storage::records::ClockRecord;
use crate::storage::{keys, StorageResult, Store, WriteSet};

impl WriteSet {
    /// Saves the manual clock's reading, Unix ms.
    pub fn put_manual_clock_ms(&mut self, now_ms: i64) {
        self.put(keys::manual_clock(), &ClockRecord { now_ms });
    }
}

impl Store {
    /// The manual clock's last saved reading, Unix ms (`None` before the
    /// first advance).
    pub fn manual_clock_ms(&self) -> StorageResult<Option<i64>> {
        Ok(self
            .get::<ClockRecord>(&keys::manual_clock())?
            .map(|c| c.now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_saved_reading_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(store.manual_clock_ms().unwrap(), None);
        for now_ms in [1_000, 2_000] {
            let mut writes = WriteSet::new();
            writes.put_manual_clock_ms(now_ms);
            store.commit(writes).await.unwrap();
        }
        assert_eq!(store.manual_clock_ms().unwrap(), Some(2_000));
        drop(store);
        committer.join();
    }
}
