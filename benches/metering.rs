//! What metering costs on the produce write path: the same group-committed
//! writes a produce makes (message set, set summary, topic counters), with and
//! without the usage increments that ride in the same atomic batch (tenant
//! total and topic; per-device usage is no longer written by a produce but
//! folded from the stored sets, see `benches/cost-of-metering.sh` for its
//! cost). Runs alternate; medians and ratios.
//!
//! Run: `cargo bench --bench metering` (about a minute; each measurement
//! writes ~32 MB to a fresh temp store).

use std::time::Instant;

use bytes::Bytes;
use tallyq::broker::topic::{SetSummary, TopicState};
use tallyq::broker::{Message, MessageSet};
use tallyq::crypto::{DataKey, TenantKeys};
use tallyq::metering::{units_for_bytes, UsageDelta};
use tallyq::storage::{Store, WriteSet};

const RUNS: usize = 15;
const WRITERS: usize = 8;
const BATCHES_PER_WRITER: usize = 40;
const BATCH: usize = 100;

/// One configuration of the write path.
#[derive(Clone, Copy, PartialEq)]
struct Variant {
    /// Usage increments in the same write.
    metered: bool,
    /// Every message carries one of 100 device ids (metered per device).
    devices: bool,
}

async fn run(store: &Store, variant: Variant, topic_base: u64) -> f64 {
    let payload = Bytes::from(vec![b'x'; 1000]);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let keys = TenantKeys::derive("tenant", &DataKey::generate());
            let topic_id = topic_base + writer as u64;
            let mut state = TopicState::default();
            for _ in 0..BATCHES_PER_WRITER {
                let messages: Vec<Message> = (0..BATCH)
                    .map(|i| Message {
                        payload: payload.clone(),
                        device_id: if variant.devices {
                            format!("8600000000{i:05}")
                        } else {
                            String::new()
                        },
                        ..Default::default()
                    })
                    .collect();
                let mut writes = WriteSet::new();
                if variant.metered {
                    let mut usage = UsageDelta::default();
                    for m in &messages {
                        let bytes = (m.payload.len() + m.device_id.len()) as u64;
                        // As a produce now meters: tenant and topic only;
                        // the device breakdown is folded from the stored
                        // sets later (src/broker/device_usage.rs).
                        usage.produced("topic", "", units_for_bytes(bytes));
                    }
                    usage.write(&keys, 20_000, &mut writes);
                }
                let first = state.next_offset;
                let identity = tallyq::storage::SetIdentity {
                    topic_id,
                    first_offset: first,
                    count: BATCH as u32,
                    bytes: 100_000,
                    publish_ms: 0,
                };
                let location = store
                    .append_set(
                        &keys,
                        identity,
                        MessageSet {
                            publish_ms: 0,
                            messages,
                        },
                    )
                    .expect("append");
                writes.put_set(
                    topic_id,
                    &SetSummary {
                        first_offset: first,
                        count: BATCH as u32,
                        bytes: 100_000,
                        publish_ms: 0,
                        location,
                    },
                );
                state.next_offset += BATCH as u64;
                writes.put_topic_state(topic_id, &state);
                store.commit(writes).await.expect("commit");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    (WRITERS * BATCHES_PER_WRITER * BATCH) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let variants = [(false, false), (true, false), (false, true), (true, true)]
        .map(|(metered, devices)| Variant { metered, devices });
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for r in 0..RUNS {
        for (i, variant) in variants.iter().enumerate() {
            // A fresh store each time, so no variant pays for another's data.
            let dir = tempfile::tempdir().expect("temp dir");
            let (store, committer) = Store::open(dir.path(), 256 << 20).expect("store");
            let rate = run(&store, *variant, (r * 100 + i * 10) as u64).await;
            drop(store);
            committer.join();
            results[i].push(rate);
        }
        println!(
            "run {r}: no device ids: unmetered {:.0} metered {:.0} msg/s | 100 device ids a batch: unmetered {:.0} metered {:.0} msg/s",
            results[0][r], results[1][r], results[2][r], results[3][r]
        );
    }
    // Ratios are taken within a run (same disk state, same noise), then the median.
    let ratio = |metered: usize, plain: usize| {
        median(
            (0..RUNS)
                .map(|r| results[metered][r] / results[plain][r])
                .collect(),
        )
    };
    println!();
    println!(
        "produce write path, {WRITERS} writers x batches of {BATCH} x 1 KB, medians of {RUNS} runs:"
    );
    println!("| messages | unmetered msg/s | metered msg/s | metered / unmetered |");
    println!("|---|---|---|---|");
    println!(
        "| without device ids | {:.0} | {:.0} | {:.3} |",
        median(results[0].clone()),
        median(results[1].clone()),
        ratio(1, 0)
    );
    println!(
        "| 100 device ids per batch | {:.0} | {:.0} | {:.3} |",
        median(results[2].clone()),
        median(results[3].clone()),
        ratio(3, 2)
    );
}
