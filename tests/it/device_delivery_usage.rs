//! Per-device delivery usage, journaled by each delivery pass and folded
//! into the device counters off the delivery path
//! (`src/broker/delivery/device_journal.rs`): it shows exactly what was
//! delivered per device (first deliveries and redeliveries), and across
//! SIGKILLs — right after a delivery, before any fold, and at random instants
//! under load — the per-device lines add up exactly to the tenant's totals.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use tallyq::client::Client;
use tallyq::proto::v1 as pb;

use crate::billing::{line, usage};
use crate::harness::*;

/// Delivered (units, messages, redelivered units).
type Delivered = (u64, u64, u64);

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

fn delivered_of(l: &pb::UsageLine) -> Delivered {
    (l.delivered_units, l.delivered_messages, l.redelivered_units)
}

fn add(into: &mut Delivered, other: Delivered) {
    into.0 += other.0;
    into.1 += other.1;
    into.2 += other.2;
}

/// Every device line's delivered usage, summed over the open days.
fn per_device(lines: &[pb::UsageLine]) -> BTreeMap<String, Delivered> {
    let mut devices = BTreeMap::new();
    for l in lines.iter().filter(|l| l.dimension == "device") {
        add(devices.entry(l.name.clone()).or_default(), delivered_of(l));
    }
    devices
}

/// What a client saw in `deliveries`, per device.
fn seen(deliveries: &[pb::Delivery], into: &mut BTreeMap<String, Delivered>) {
    for d in deliveries {
        let m = d.message.as_ref().unwrap();
        let u = units(m.payload.len() + m.device_id.len());
        let redelivered = if d.delivery_attempt > 1 { u } else { 0 };
        add(
            into.entry(m.device_id.clone()).or_default(),
            (u, 1, redelivered),
        );
    }
}

async fn nack(client: &Client, topic: &str, sub: &str, offsets: Vec<u64>) {
    client
        .broker()
        .nack(pb::NackRequest {
            topic: topic.into(),
            subscription: sub.into(),
            offsets,
            delay_ms: 0,
        })
        .await
        .unwrap();
}

/// Checks that the device lines add up to topic `t`'s line (every message of
/// `t` has a device id, none of `n`'s has) and the total to both topics.
fn assert_devices_add_up(lines: &[pb::UsageLine], context: &str) -> Delivered {
    let mut devices = Delivered::default();
    for d in per_device(lines).values() {
        add(&mut devices, *d);
    }
    let t = delivered_of(line(lines, "topic", "t"));
    assert_eq!(
        devices, t,
        "{context}: per-device delivered usage = topic t's"
    );
    let mut topics = t;
    add(&mut topics, delivered_of(line(lines, "topic", "n")));
    assert_eq!(
        delivered_of(line(lines, "total", "")),
        topics,
        "{context}: total = t + n"
    );
    devices
}

#[tokio::test]
async fn per_device_delivered_usage_is_exact_after_redeliveries_and_sigkills() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let server = ProcessServer::start(&dir);
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    lift_rate_limits(&operator, "acme").await;
    let secret = create_key(&operator, "acme", &[1, 2, 3], &[]).await;
    let acme = server.client(&secret).await;
    create_topic(&acme, "t", Default::default()).await;
    create_topic(&acme, "n", Default::default()).await;
    create_sub(&acme, "t", "work", 30).await;
    create_sub(&acme, "t", "once", 0).await;
    create_sub(&acme, "n", "work", 30).await;

    // 60 messages of 1..=3 units from 6 devices on t; 10 without one on n.
    let batch: Vec<pb::Message> = (0..60)
        .map(|i| device_message(&format!("dev-{}", i % 6), 100 + i * 47))
        .collect();
    acme.produce("t", batch).await.unwrap();
    acme.produce("n", (0..10).map(|_| device_message("", 10)).collect())
        .await
        .unwrap();

    // Consume: at-least-once reads everything, nacks a third (delivered
    // again at once, attempt 2), acks the rest; at-most-once reads once.
    let mut expected = BTreeMap::new();
    let first = fetch(&acme, "t", "work", 100, 0).await;
    assert_eq!(first.len(), 60);
    seen(&first, &mut expected);
    let (again, done): (Vec<_>, Vec<_>) = first.iter().map(|d| d.offset).partition(|o| o % 3 == 0);
    ack(&acme, "t", "work", done).await;
    nack(&acme, "t", "work", again.clone()).await;
    let second = fetch(&acme, "t", "work", 100, 0).await;
    assert_eq!(second.len(), again.len(), "the nacked ones come again");
    assert!(second.iter().all(|d| d.delivery_attempt == 2));
    seen(&second, &mut expected);
    ack(&acme, "t", "work", again).await;
    let once = fetch(&acme, "t", "once", 100, 0).await;
    assert_eq!(once.len(), 60);
    seen(&once, &mut expected);
    assert_eq!(fetch(&acme, "n", "work", 100, 0).await.len(), 10);

    // SIGKILL right after the deliveries: within a second of them, so the
    // background fold (every second) has had at most one go, and some of
    // their per-device usage is most likely still in the journal rows the
    // passes wrote; the restarted broker folds them when usage is read.
    server.kill();
    let server = ProcessServer::start(&dir);
    let acme = server.client(&secret).await;
    let lines = usage(&acme).await;
    assert_eq!(
        per_device(&lines),
        expected,
        "per-device delivered usage is what the consumers received"
    );
    let redelivered: u64 = expected.values().map(|d| d.2).sum();
    assert!(redelivered > 0, "redeliveries are counted");
    assert_devices_add_up(&lines, "after a SIGKILL before any fold");
    drop(server);

    // Under load: a producer (devices on t, none on n), two consumers that
    // nack some of what they get, and a reader of live usage (which folds),
    // SIGKILLed at random instants.
    let rounds = 5;
    for round in 0..rounds {
        let server = ProcessServer::start(&dir);
        let acme = server.client(&secret).await;
        let mut tasks = Vec::new();
        let producer = acme.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                let messages = (0..10)
                    .map(|j| {
                        device_message(&format!("dev-{}", (i + j) % 9), 50 + (j * 300) as usize)
                    })
                    .collect();
                if producer.produce("t", messages).await.is_err()
                    || producer
                        .produce("n", vec![device_message("", 30)])
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }));
        for (topic, sub) in [("t", "work"), ("t", "once"), ("n", "work")] {
            let consumer = acme.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok(reply) = consumer
                        .broker()
                        .fetch(pb::FetchRequest {
                            topic: topic.into(),
                            subscription: sub.into(),
                            max_messages: 25,
                            max_wait_ms: 50,
                        })
                        .await
                    else {
                        return;
                    };
                    // Each message is nacked at most once: a quarter of the
                    // first deliveries come again (attempt 2), then are acked.
                    let got: Vec<(u64, u32)> = reply
                        .into_inner()
                        .deliveries
                        .iter()
                        .map(|d| (d.offset, d.delivery_attempt))
                        .collect();
                    if sub == "once" || got.is_empty() {
                        continue;
                    }
                    let (again, done): (Vec<_>, Vec<_>) = got
                        .iter()
                        .partition(|(o, attempt)| *attempt == 1 && o % 4 == 0);
                    let again: Vec<u64> = again.iter().map(|(o, _)| *o).collect();
                    let done: Vec<u64> = done.iter().map(|(o, _)| *o).collect();
                    let acked = consumer
                        .broker()
                        .ack(pb::AckRequest {
                            topic: topic.into(),
                            subscription: sub.into(),
                            offsets: done,
                        })
                        .await;
                    let nacked = consumer
                        .broker()
                        .nack(pb::NackRequest {
                            topic: topic.into(),
                            subscription: sub.into(),
                            offsets: again,
                            delay_ms: 0,
                        })
                        .await;
                    if acked.is_err() || nacked.is_err() {
                        return;
                    }
                }
            }));
        }
        let reader = acme.clone();
        tasks.push(tokio::spawn(async move {
            while reader
                .admin()
                .get_usage(pb::GetUsageRequest {})
                .await
                .is_ok()
            {
                let pause = rand::rng().random_range(20..400);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }));
        let ms = rand::rng().random_range(400..1500);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        server.kill();
        for task in tasks {
            let _ = task.await;
        }
        println!("round {round}: SIGKILL after {ms} ms");
    }

    let server = ProcessServer::start(&dir);
    let acme = server.client(&secret).await;
    let lines = usage(&acme).await;
    let devices = assert_devices_add_up(&lines, &format!("after {rounds} SIGKILLs under load"));
    let before: u64 = expected.values().map(|d| d.1).sum();
    assert!(
        devices.1 > before,
        "the load delivered more ({} deliveries per device in all, {before} before it)",
        devices.1
    );
    println!(
        "{rounds} SIGKILLs under load: per-device delivered {devices:?} (units, messages, \
         redelivered units) = topic t's, over {} devices",
        per_device(&lines).len()
    );
    // The export shows the same per-device lines (it folds first as well).
    let exported: u64 = export_lines(&acme)
        .await
        .iter()
        .filter(|l| l["type"] == "usage" && l["dimension"] == "device")
        .map(|l| l["delivered_units"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(exported, devices.0, "ExportData's device lines");
}
