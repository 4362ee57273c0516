//! criterion micro-benchmarks of the hot paths: storage append under group
//! commit, subscription state on delivery and ack, unit counting, and protobuf
//! encode/decode of a 100-message produce batch.
//!
//! Run: `cargo bench --bench hot_paths`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use prost::Message as _;
use tallyq::broker::subscription::{ClaimRules, SubState};
use tallyq::broker::topic::SetSummary;
use tallyq::broker::{Message, MessageSet};
use tallyq::crypto::{DataKey, TenantKeys};
use tallyq::metering::{units_for_bytes, UsageDelta};
use tallyq::proto::v1 as pb;
use tallyq::storage::{Store, WriteSet};

fn batch() -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: "telemetry".into(),
        messages: (0..100)
            .map(|i| pb::Message {
                payload: Bytes::from(vec![b'x'; 1024]),
                headers: [("k".to_string(), "v".to_string())].into_iter().collect(),
                device_id: format!("8600000000{i:05}"),
                dedup_id: String::new(),
            })
            .collect(),
    }
}

fn protobuf(c: &mut Criterion) {
    let request = batch();
    let encoded = request.encode_to_vec();
    c.bench_function("protobuf encode 100 x 1 KiB", |b| {
        b.iter(|| black_box(&request).encode_to_vec())
    });
    c.bench_function("protobuf decode 100 x 1 KiB", |b| {
        b.iter(|| pb::ProduceRequest::decode(black_box(encoded.as_slice())).expect("decode"))
    });
}

fn units(c: &mut Criterion) {
    c.bench_function("units of 1000 sizes", |b| {
        b.iter(|| {
            (0..1000u64)
                .map(|s| units_for_bytes(black_box(s * 37)))
                .sum::<u64>()
        })
    });
    c.bench_function("usage of a 100-message batch with device ids", |b| {
        let devices: Vec<String> = (0..100).map(|i| format!("8600000000{i:05}")).collect();
        let keys = TenantKeys::derive("tenant", &DataKey::generate());
        b.iter(|| {
            let mut usage = UsageDelta::default();
            for d in &devices {
                usage.produced("telemetry", d, 1);
            }
            let mut writes = WriteSet::new();
            usage.write(&keys, 20_000, &mut writes);
            writes
        })
    });
}

fn subscription(c: &mut Criterion) {
    c.bench_function(
        "claim and ack 100 at-least-once deliveries, with their write sets",
        |b| {
            b.iter(|| {
                let mut state = SubState::default();
                let rules = ClaimRules {
                    lock_ms: 30_000,
                    max_attempts: 0,
                    dead_letter: false,
                    first_offset: 0,
                    visible_end: 100,
                };
                while let Some(claim) = state.claim(0, &rules) {
                    black_box(claim);
                }
                let mut delivered = WriteSet::new();
                state.persist(1, &mut delivered);
                for offset in 0..100 {
                    state.ack(offset);
                }
                let mut acked = WriteSet::new();
                state.persist(1, &mut acked);
                (state, delivered, acked)
            })
        },
    );
}

/// The produce path's storage work: the set to a segment file, its header
/// (with the segment reference) into the write set.
fn append_set(
    store: &Store,
    writes: &mut WriteSet,
    topic_id: u64,
    first_offset: u64,
    messages: &[Message],
) {
    // One tenant's keys, derived once (the broker caches them in its keyring).
    static KEYS: std::sync::OnceLock<TenantKeys> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| TenantKeys::derive("bench", &DataKey::generate()));
    let identity = tallyq::storage::SetIdentity {
        topic_id,
        first_offset,
        count: messages.len() as u32,
        bytes: messages.iter().map(|m| m.payload.len() as u64).sum(),
        publish_ms: 0,
    };
    let location = store
        .append_set(
            keys,
            identity,
            MessageSet {
                publish_ms: 0,
                messages: messages.to_vec(),
            },
        )
        .expect("append");
    writes.put_set(
        topic_id,
        &SetSummary {
            first_offset,
            count: messages.len() as u32,
            bytes: messages.iter().map(|m| m.payload.len() as u64).sum(),
            publish_ms: 0,
            location,
        },
    );
}

fn storage(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _committer) = Store::open(dir.path(), 64 << 20).expect("store");
    let messages: Vec<Message> = (0..100)
        .map(|_| Message {
            payload: Bytes::from(vec![b'x'; 1024]),
            ..Default::default()
        })
        .collect();
    let mut offset = 0u64;
    c.bench_function("group-committed append of a 100 x 1 KiB set", |b| {
        b.iter(|| {
            let mut writes = WriteSet::new();
            append_set(&store, &mut writes, 1, offset, &messages);
            offset += 100;
            runtime.block_on(store.commit(writes)).expect("commit")
        })
    });
    c.bench_function("8 concurrent appends sharing group commits", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut pending = Vec::new();
                for _ in 0..8 {
                    let mut writes = WriteSet::new();
                    append_set(&store, &mut writes, 2, offset, &messages);
                    offset += 100;
                    pending.push(store.enqueue(writes, None).await.expect("enqueue"));
                }
                for p in pending {
                    p.wait().await.expect("commit");
                }
            })
        })
    });
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default().sample_size(20);
    targets = protobuf, units, subscription, storage
}
criterion_main!(hot_paths);
