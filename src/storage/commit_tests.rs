//! The group committer (`committer.rs`) against a real store on a real file
//! system: many writers over many groups land with their blobs in order, and
//! a segment sync that fails for real fails its group and every later one,
//! with nothing of them landing. (Written for the two-thread commit, which
//! was reverted; what they check holds for any committer.)

use std::sync::{Arc, Mutex};

use crate::storage::records::{AuditRecord, BlobRef, CursorRecord};
use crate::storage::{keys, StorageError, Store, WriteSet};

/// A write of cursor `i` that refers to a blob, as a produce refers to its
/// set: the blob's place rides in an audit record.
fn referring_write(i: u64, blob: &BlobRef) -> WriteSet {
    let mut ws = WriteSet::new();
    ws.put(
        keys::cursor(i),
        &CursorRecord {
            next_offset: i,
            dead_lettered: 0,
        },
    );
    ws.put(
        keys::audit(i),
        &AuditRecord {
            detail: format!(
                "{} {} {} {}",
                blob.segment, blob.position, blob.len, blob.crc32
            ),
            ..Default::default()
        },
    );
    ws
}

fn blob_of(record: &AuditRecord) -> BlobRef {
    let v: Vec<u64> = record
        .detail
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    BlobRef {
        segment: v[0],
        position: v[1],
        len: v[2] as u32,
        crc32: v[3] as u32,
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("blob {i} ")
        .repeat(1 + (i % 50) as usize)
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_over_many_groups_all_land_with_their_blobs_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, committer) = Store::open(dir.path(), 8 << 20).unwrap();
    let store = Arc::new(store);
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let store = store.clone();
        let order = order.clone();
        writers.push(tokio::spawn(async move {
            for k in 0..60u64 {
                let i = w * 1000 + k;
                let blob = store.segments().append(&payload(i)).unwrap();
                let recorded = order.clone();
                let hook = Box::new(move || recorded.lock().unwrap().push(i));
                let pending = store
                    .enqueue(referring_write(i, &blob), Some(hook))
                    .await
                    .unwrap();
                pending.wait().await.unwrap();
                // Answered: its hook ran before the answer.
                assert!(order.lock().unwrap().contains(&i));
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    // Each writer's hooks ran in its own commit order.
    let order = order.lock().unwrap().clone();
    for w in 0..8u64 {
        let mine: Vec<u64> = order.iter().copied().filter(|i| i / 1000 == w).collect();
        assert_eq!(mine, (0..60).map(|k| w * 1000 + k).collect::<Vec<_>>());
    }
    drop(Arc::try_unwrap(store).ok().unwrap());
    committer.join();

    let (store, _committer) = Store::open(dir.path(), 8 << 20).unwrap();
    let refs: Vec<(Vec<u8>, AuditRecord)> = store
        .scan::<AuditRecord>(&[keys::AUDIT])
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(refs.len(), 8 * 60);
    for (_, record) in refs {
        let blob = blob_of(&record);
        let bytes = store.segments().read(&blob).unwrap();
        assert!(String::from_utf8(bytes).unwrap().starts_with("blob "));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_segment_sync_fails_its_group_and_every_later_one_and_nothing_of_them_lands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, committer) = Store::open(&data, 8 << 20).unwrap();
    // Acknowledged before the break.
    for i in 0..40u64 {
        let blob = store.segments().append(&payload(i)).unwrap();
        store.commit(referring_write(i, &blob)).await.unwrap();
    }
    // A new segment must have its directory entry synced at the next group;
    // with the directory gone, that sync fails for real.
    store.segments().seal_active().unwrap();
    let segments_dir = data.join("segments");
    let moved = dir.path().join("moved-segments");
    std::fs::rename(&segments_dir, &moved).unwrap();
    let mut pending = Vec::new();
    for i in 40..80u64 {
        let blob = store.segments().append(&payload(i)).unwrap();
        pending.push((
            i,
            store
                .enqueue(referring_write(i, &blob), None)
                .await
                .unwrap(),
        ));
    }
    let mut outcomes = Vec::new();
    for (i, p) in pending {
        outcomes.push((i, p.wait().await));
    }
    // The first group fails as not applied; every later one fails too (not
    // applied in the same group, or the store failed), none lands.
    assert!(
        matches!(outcomes[0].1, Err(StorageError::NotApplied(_))),
        "{:?}",
        outcomes[0].1
    );
    for (i, outcome) in &outcomes {
        assert!(
            matches!(
                outcome,
                Err(StorageError::NotApplied(_) | StorageError::Failed(_))
            ),
            "write {i} after the failed sync: {outcome:?}"
        );
    }
    assert!(store.health().is_failed());
    let later = store.commit(WriteSet::new()).await.unwrap_err();
    assert!(matches!(later, StorageError::Failed(_)), "{later:?}");

    // Reopened with the directory back: exactly the acknowledged writes.
    drop(store);
    committer.join();
    std::fs::rename(&moved, &segments_dir).unwrap();
    let (store, _committer) = Store::open(&data, 8 << 20).unwrap();
    for i in 0..80u64 {
        let found = store.get::<CursorRecord>(&keys::cursor(i)).unwrap();
        assert_eq!(found.is_some(), i < 40, "write {i}");
    }
}
