//! Settlement progress: the last settled billing day of each tenant (`S` +
//! tenant), written in the same atomic write as the day's ledger lines, so a
//! settlement interrupted between two writes resumes where it stopped.

use crate::storage::records::SettledRecord;
use crate::storage::{keys, StorageResult, Store, WriteSet};

impl WriteSet {
    /// Records that `tenant`'s days are settled through `day` (days since
    /// 1970-01-01 on the billing calendar).
    pub fn put_settled_through(&mut self, tenant: &str, day: i64) {
        self.put(
            keys::settled(tenant),
            &SettledRecord {
                last_settled_day: day,
            },
        );
    }
}

impl Store {
    /// The last settled day of `tenant`, if any day was settled.
    pub fn settled_through(&self, tenant: &str) -> StorageResult<Option<i64>> {
        Ok(self
            .get::<SettledRecord>(&keys::settled(tenant))?
            .map(|r| r.last_settled_day))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn progress_reads_back_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(store.settled_through("acme").unwrap(), None);
        let mut writes = WriteSet::new();
        writes.put_settled_through("acme", 19_000);
        writes.put_settled_through("acme", 19_001);
        store.commit(writes).await.unwrap();
        assert_eq!(store.settled_through("acme").unwrap(), Some(19_001));
        assert_eq!(store.settled_through("beta").unwrap(), None);
        drop(store);
        committer.join();
    }
}
