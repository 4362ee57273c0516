//! Per-device usage, now derived from the stored sets by a fold (see
//! `src/broker/device_usage.rs`): exact across SIGKILLs between and during
//! folds, and kept when the sets it is derived from are deleted (expiry, the
//! size cap, topic deletion) or moved to a dead-letter topic.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tallyq::client::Client;
use tallyq::proto::v1 as pb;

use crate::billing::{line, usage};
use crate::harness::*;

/// (units, messages) per device id.
type PerDevice = BTreeMap<String, (u64, u64)>;

fn units(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(1024).max(1)
}

fn device_message(device: &str, payload_len: usize) -> pb::Message {
    pb::Message {
        payload: vec![b'p'; payload_len].into(),
        device_id: device.into(),
        ..Default::default()
    }
}

/// The produced (units, messages) of every device line of the live usage.
async fn produced_per_device(client: &Client) -> PerDevice {
    usage(client)
        .await
        .into_iter()
        .filter(|l| l.dimension == "device")
        .map(|l| (l.name.clone(), (l.produced_units, l.produced_messages)))
        .collect()
}

/// Two producers sending batches of 1..=20 messages of random sizes (up to
/// 3 KiB, so 1..=3 units), each from one of 12 devices or from none.
async fn produce_mix(client: Client, acked: Arc<Mutex<BTreeMap<u64, (String, u64)>>>) {
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let client = client.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let batch: Vec<(String, usize)> = {
                    let mut rng = rand::rng();
                    (0..rng.random_range(1..=20))
                        .map(|_| {
                            let device = match rng.random_range(0..13) {
                                12 => String::new(),
                                d => format!("dev-{d}"),
                            };
                            (device, rng.random_range(1..3000))
                        })
                        .collect()
                };
                let messages = batch.iter().map(|(d, n)| device_message(d, *n)).collect();
                let Ok(reply) = client.produce("t", messages).await else {
                    return;
                };
                let mut acked = acked.lock().unwrap();
                for (result, (device, len)) in reply.results.iter().zip(batch) {
                    acked.insert(result.offset, (device.clone(), units(len + device.len())));
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Reads live usage (which folds) over and over until the server goes away.
async fn read_usage_repeatedly(client: Client) {
    loop {
        if client
            .admin()
            .get_usage(pb::GetUsageRequest {})
            .await
            .is_err()
        {
            return;
        }
        let pause = rand::rng().random_range(5..60);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

#[tokio::test]
async fn per_device_usage_equals_the_stored_messages_across_sigkills_during_folds() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let server = ProcessServer::start(&dir);
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    lift_rate_limits(&operator, "acme").await;
    let secret = create_key(&operator, "acme", &[1, 2, 3], &[]).await;
    let acme = server.client(&secret).await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "all", 0).await;
    drop(server);

    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let rounds = 6;
    for _ in 0..rounds {
        let server = ProcessServer::start(&dir);
        let acme = server.client(&secret).await;
        let producing = tokio::spawn(produce_mix(acme.clone(), acked.clone()));
        let reading = tokio::spawn(read_usage_repeatedly(acme.clone()));
        let ms = rand::rng().random_range(300..1200);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        server.kill();
        let _ = producing.await;
        let _ = reading.await;
    }

    let server = ProcessServer::start(&dir);
    let acme = server.client(&secret).await;
    // What is stored: every message of the topic, read back once.
    let mut stored = BTreeMap::new();
    loop {
        let got = fetch(&acme, "t", "all", 1000, 0).await;
        if got.is_empty() {
            break;
        }
        for d in got {
            let m = d.message.unwrap();
            let size = m.payload.len() + m.device_id.len();
            stored.insert(d.offset, (m.device_id, units(size)));
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "producers got replies");
    for (offset, message) in &acked {
        assert_eq!(
            stored.get(offset),
            Some(message),
            "acknowledged offset {offset} is stored as sent"
        );
    }
    let mut expected = PerDevice::new();
    for (device, units) in stored.values().filter(|(d, _)| !d.is_empty()) {
        let e = expected.entry(device.clone()).or_default();
        e.0 += units;
        e.1 += 1;
    }
    let got = produced_per_device(&acme).await;
    let sum = |m: &PerDevice| m.values().map(|(u, _)| u).sum::<u64>();
    println!(
        "{rounds} SIGKILLs during folds: per-device produced units {} = stored {} \
         ({} acknowledged messages, {} stored, {} devices)",
        sum(&got),
        sum(&expected),
        acked.len(),
        stored.len(),
        expected.len()
    );
    assert_eq!(got, expected, "per-device produced usage is exact");
    // Deliveries are still counted per device as they are recorded.
    let lines = usage(&acme).await;
    for (device, (units, messages)) in &expected {
        let l = line(&lines, "device", device);
        assert_eq!(
            (l.delivered_units, l.delivered_messages),
            (*units, *messages)
        );
    }
    let total = line(&lines, "total", "");
    let all_units: u64 = stored.values().map(|(_, u)| u).sum();
    assert_eq!(total.produced_units, all_units);
}

#[tokio::test]
async fn deleting_sets_keeps_their_per_device_usage_and_dead_letters_bill_once() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    lift_rate_limits(&operator, "acme").await;
    let kib = |device: &str| device_message(device, 1000);

    // Expiry: the sets are gone once the clock passes the expiry.
    create_topic(
        &acme,
        "short",
        pb::TopicConfig {
            message_expiry_seconds: 30,
            ..Default::default()
        },
    )
    .await;
    acme.produce("short", vec![kib("exp-a"), kib("exp-a"), kib("exp-b")])
        .await
        .unwrap();
    acme.produce("short", vec![kib("exp-a")]).await.unwrap();

    // The size cap: 10 sets of 1 KiB into a 4 KiB topic reclaims 6 of them.
    create_topic(
        &acme,
        "capped",
        pb::TopicConfig {
            max_bytes: 4 * 1024,
            ..Default::default()
        },
    )
    .await;
    for _ in 0..10 {
        acme.produce("capped", vec![kib("cap")]).await.unwrap();
    }
    assert!(topic_stats(&acme, "capped").await.reclaimed_messages >= 6);

    // Deletion of the topic.
    create_topic(&acme, "doomed", Default::default()).await;
    acme.produce("doomed", vec![kib("del"), kib("del")])
        .await
        .unwrap();
    acme.admin()
        .delete_topic(pb::DeleteTopicRequest {
            name: "doomed".into(),
        })
        .await
        .unwrap();

    // A dead-letter move stores the message again without billing it again.
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
    acme.produce("orders", vec![kib("dlq")]).await.unwrap();
    assert_eq!(fetch(&acme, "orders", "s", 10, 0).await.len(), 1);

    advance(&operator, 31_000).await;
    assert_eq!(topic_stats(&acme, "short").await.messages, 0, "expired");
    // The dead letter moved once its lock ran out (the 250 ms job).
    let mut moved = 0;
    for _ in 0..100 {
        moved = topic_stats(&acme, "orders-dlq").await.messages;
        if moved == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(moved, 1, "dead-lettered");

    let got = produced_per_device(&acme).await;
    let want: PerDevice = [
        ("cap", (10, 10)),
        ("del", (2, 2)),
        ("dlq", (1, 1)),
        ("exp-a", (3, 3)),
        ("exp-b", (1, 1)),
    ]
    .into_iter()
    .map(|(d, u)| (d.to_string(), u))
    .collect();
    assert_eq!(got, want, "every deleted set was folded before it went");
    // The export shows the same device lines.
    let exported: PerDevice = export_lines(&acme)
        .await
        .into_iter()
        .filter(|l| l["type"] == "usage" && l["dimension"] == "device")
        .map(|l| {
            (
                l["name"].as_str().unwrap_or_default().to_string(),
                (
                    l["produced_units"].as_u64().unwrap_or_default(),
                    l["produced_messages"].as_u64().unwrap_or_default(),
                ),
            )
        })
        .collect();
    assert_eq!(exported, want);
}
