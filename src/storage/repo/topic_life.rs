//! Topic lifecycles for topic-days: one [`TopicLife`] per topic ever created,
//! under `L`, tenant, 0, topic id. The broker writes them; billing reads a
//! tenant's all when it counts topic-days. They outlive the topic (deleting a
//! topic rewrites its record with the deletion time).

use crate::metering::TopicLife;
use crate::storage::records::TopicLifeRecord;
use crate::storage::{keys, StorageResult, Store, WriteSet};

impl WriteSet {
    /// Writes (or rewrites) the lifecycle of `tenant`'s topic `topic_id`.
    pub fn put_topic_life(&mut self, tenant: &str, topic_id: u64, life: &TopicLife) {
        self.put(
            keys::topic_life(tenant, topic_id),
            &TopicLifeRecord {
                name: life.name.clone(),
                created_ms: life.created_ms,
                deleted_ms: life.deleted_ms,
            },
        );
    }
}

impl Store {
    /// The lifecycles of every topic `tenant` ever had, deleted ones
    /// included, by topic id.
    pub fn topic_lives(&self, tenant: &str) -> StorageResult<Vec<TopicLife>> {
        self.scan::<TopicLifeRecord>(&keys::topic_life_prefix(tenant))
            .map(|item| {
                item.map(|(_, record)| TopicLife {
                    name: record.name,
                    created_ms: record.created_ms,
                    deleted_ms: record.deleted_ms,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_rewritten_life_replaces_the_first_and_tenants_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
        let life = |name: &str, deleted_ms| TopicLife {
            name: name.into(),
            created_ms: 1_000,
            deleted_ms,
        };
        let mut writes = WriteSet::new();
        writes.put_topic_life("acme", 7, &life("t", 0));
        writes.put_topic_life("acme", 9, &life("u", 0));
        writes.put_topic_life("acmex", 8, &life("v", 0));
        store.commit(writes).await.unwrap();
        let mut writes = WriteSet::new();
        writes.put_topic_life("acme", 7, &life("t", 5_000));
        store.commit(writes).await.unwrap();

        assert_eq!(
            store.topic_lives("acme").unwrap(),
            [life("t", 5_000), life("u", 0)]
        );
        assert_eq!(store.topic_lives("beta").unwrap(), []);
        drop(store);
        committer.join();
    }
}
