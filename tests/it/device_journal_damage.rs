//! Per-device usage journal rows that do not open (damaged, or sealed under
//! a key that is not the tenant's) at the front of a tenant's journal: more
//! of them than one fold batch takes (1024) must not keep the good rows
//! behind them from ever being folded. The fold resumes its scan after the
//! last row it read (`src/broker/delivery/device_journal.rs`); before, a
//! full batch of rows none of which opened ended the fold, so every
//! per-device line of the tenant stayed missing for good.

use std::collections::BTreeMap;

use tallyq::crypto::{DataKey, TenantKeys};
use tallyq::metering::Usage;
use tallyq::proto::v1 as pb;
use tallyq::storage::{Store, WriteSet};

use crate::billing::usage;
use crate::harness::*;

/// More rows than one fold batch reads.
const DAMAGED_ROWS: usize = 1100;

/// Writes `DAMAGED_ROWS` journal rows of tenant `tenant` that do not open
/// (sealed under a data key the tenant will not have) into a fresh data dir,
/// with ids from the store's own generator: every row the broker journals
/// later has a higher id, so these come first in the fold's id order.
async fn seed_unopenable_rows(dir: &std::path::Path, tenant: &str) {
    let (store, committer) = Store::open(dir, 8 << 20).expect("open a fresh store");
    let stranger = TenantKeys::derive(tenant, &DataKey::generate());
    let usage = Usage {
        delivered_units: 1,
        delivered_messages: 1,
        ..Usage::default()
    };
    let mut writes = WriteSet::new();
    for _ in 0..DAMAGED_ROWS {
        let id = store.generate_id().unwrap();
        writes.journal_device_usage(&stranger, id, [(0, "ghost", &usage)]);
    }
    store.commit(writes).await.unwrap();
    drop(store);
    committer.join();
}

#[tokio::test]
async fn rows_that_do_not_open_at_the_front_do_not_block_the_rows_behind_them() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    seed_unopenable_rows(&dir, "acme").await;

    let server = ProcessServer::start(&dir);
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    lift_rate_limits(&operator, "acme").await;
    let secret = create_key(&operator, "acme", &[1, 2, 3], &[]).await;
    let acme = server.client(&secret).await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "all", 0).await;

    // 3 messages of dev-a, 2 of dev-b, 1 without a device; each 1 unit.
    let mut expected: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let messages: Vec<pb::Message> = ["dev-a", "dev-b", "dev-a", "", "dev-b", "dev-a"]
        .iter()
        .map(|device| {
            if !device.is_empty() {
                let e = expected.entry(device.to_string()).or_default();
                e.0 += 1;
                e.1 += 1;
            }
            pb::Message {
                payload: b"reading".to_vec().into(),
                device_id: device.to_string(),
                ..Default::default()
            }
        })
        .collect();
    acme.produce("t", messages).await.unwrap();
    let mut delivered = 0;
    while delivered < 6 {
        delivered += fetch(&acme, "t", "all", 10, 1000).await.len();
    }

    // Live usage folds first; the devices' lines must all be there, exact.
    let lines = usage(&acme).await;
    let per_device: BTreeMap<String, (u64, u64, u64, u64)> = lines
        .iter()
        .filter(|l| l.dimension == "device")
        .map(|l| {
            (
                l.name.clone(),
                (
                    l.produced_units,
                    l.produced_messages,
                    l.delivered_units,
                    l.delivered_messages,
                ),
            )
        })
        .collect();
    let want: BTreeMap<String, (u64, u64, u64, u64)> = expected
        .iter()
        .map(|(d, (u, m))| (d.clone(), (*u, *m, *u, *m)))
        .collect();
    assert_eq!(per_device, want, "per-device lines: {lines:?}");

    // And after a restart (the rows that do not open are still there and
    // still come first), the same.
    drop(server);
    let server = ProcessServer::start(&dir);
    let acme = server.client(&secret).await;
    let again: BTreeMap<String, (u64, u64, u64, u64)> = usage(&acme)
        .await
        .iter()
        .filter(|l| l.dimension == "device")
        .map(|l| {
            (
                l.name.clone(),
                (
                    l.produced_units,
                    l.produced_messages,
                    l.delivered_units,
                    l.delivered_messages,
                ),
            )
        })
        .collect();
    assert_eq!(again, want);
}
