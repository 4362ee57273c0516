//! Per-device produce usage journaled by the produced set itself
//! (`src/broker/produce/round.rs`): a set stored while every set before it
//! is folded journals its devices and moves the topic's metered-through
//! offset past itself; a set stored *behind* the offset (here: after a
//! dead-letter set no fold has passed yet) journals nothing and is counted
//! by the fold from the sets, as before. Either way each message counts
//! exactly once, also after a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use tallyq::client::Client;
use tallyq::proto::v1 as pb;

use crate::billing::usage;
use crate::harness::*;

fn from(device: &str) -> pb::Message {
    pb::Message {
        payload: vec![b'p'; 1000].into(),
        device_id: device.into(),
        ..Default::default()
    }
}

/// The produced (units, messages) per device of the live usage, summed
/// over days.
async fn produced_per_device(client: &Client) -> BTreeMap<String, (u64, u64)> {
    let mut per_device: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for line in usage(client).await {
        if line.dimension == "device" {
            let entry = per_device.entry(line.name.clone()).or_default();
            entry.0 += line.produced_units;
            entry.1 += line.produced_messages;
        }
    }
    per_device
}

fn lines(want: &[(&str, u64)]) -> BTreeMap<String, (u64, u64)> {
    want.iter()
        .map(|(d, n)| (d.to_string(), (*n, *n)))
        .collect()
}

#[tokio::test]
async fn sets_behind_the_metered_offset_and_at_it_each_count_once() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let server = ProcessServer::start(&dir);
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    lift_rate_limits(&operator, "acme").await;
    let secret = create_key(&operator, "acme", &[1, 2, 3], &[]).await;
    let acme = server.client(&secret).await;
    create_topic(&acme, "orders", Default::default()).await;
    create_topic(&acme, "orders-dlq", Default::default()).await;
    acme.admin()
        .create_subscription(pb::CreateSubscriptionRequest {
            topic: "orders".into(),
            name: "s".into(),
            config: Some(pb::SubscriptionConfig {
                lock_seconds: 10,
                max_delivery_attempts: 1,
                dead_letter_topic: "orders-dlq".into(),
            }),
            start: 0,
        })
        .await
        .unwrap();

    // At the offset: journaled with the set.
    acme.produce("orders", vec![from("dlq"), from("a")])
        .await
        .unwrap();
    assert_eq!(fetch(&acme, "orders", "s", 10, 0).await.len(), 2);
    // Both messages run out of attempts and move to orders-dlq: a set that
    // bills nothing, which no fold has passed yet.
    advance(&operator, 11_000).await;
    let mut moved = 0;
    for _ in 0..200 {
        moved = topic_stats(&acme, "orders-dlq").await.messages;
        if moved == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(moved, 2, "dead-lettered");
    // Behind the offset: two sets produced to orders-dlq right after it.
    acme.produce("orders-dlq", vec![from("late"), from("late")])
        .await
        .unwrap();
    acme.produce("orders-dlq", vec![from("a")]).await.unwrap();
    let want = lines(&[("a", 2), ("dlq", 1), ("late", 2)]);
    assert_eq!(produced_per_device(&acme).await, want);

    // The read folded every set: the next one is at the offset again.
    acme.produce("orders-dlq", vec![from("after"), from("a")])
        .await
        .unwrap();
    let want = lines(&[("a", 3), ("after", 1), ("dlq", 1), ("late", 2)]);
    assert_eq!(produced_per_device(&acme).await, want);

    // A kill -9 right after a journaled produce, then a restart: the same.
    acme.produce("orders", vec![from("after")]).await.unwrap();
    server.kill();
    let server = ProcessServer::start(&dir);
    let acme = server.client(&secret).await;
    let want = lines(&[("a", 3), ("after", 2), ("dlq", 1), ("late", 2)]);
    assert_eq!(produced_per_device(&acme).await, want);
}
