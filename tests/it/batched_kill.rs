//! SIGKILL under scenario 1's load (benches/compare.sh: 4 producers, batches
//! of 100 messages of 1 KiB, each waiting for its reply): with several
//! batches in the group commit at any instant, a kill loses no acknowledged
//! message.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tallyq::client::Client;

use crate::harness::*;

/// A 1 KiB payload that names its round, producer, batch and place.
fn payload(round: usize, producer: usize, batch: usize, i: usize) -> String {
    let name = format!("r{round}-p{producer}-b{batch}-m{i}-");
    let mut text = name.repeat(1024 / name.len() + 1);
    text.truncate(1024);
    text
}

/// Four producers of batches of 100 until the broker goes away; every
/// acknowledged message goes into `acked` by offset.
async fn load(client: Client, round: usize, acked: Arc<Mutex<BTreeMap<u64, String>>>) {
    let mut producers = Vec::new();
    for producer in 0..4 {
        let client = client.clone();
        let acked = acked.clone();
        producers.push(tokio::spawn(async move {
            for batch in 0.. {
                let payloads: Vec<String> = (0..100)
                    .map(|i| payload(round, producer, batch, i))
                    .collect();
                let messages = payloads.iter().map(|p| msg(p)).collect();
                let Ok(reply) = client.produce("s1", messages).await else {
                    return;
                };
                let mut acked = acked.lock().unwrap();
                for (result, payload) in reply.results.iter().zip(payloads) {
                    acked.insert(result.offset, payload);
                }
            }
        }));
    }
    for producer in producers {
        let _ = producer.await;
    }
}

#[tokio::test]
async fn sigkill_under_batched_concurrent_produce_loses_no_acknowledged_message() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let server = ProcessServer::start(&dir);
    let secret = {
        let operator = server.operator().await;
        create_tenant(&operator, "acme").await;
        lift_rate_limits(&operator, "acme").await;
        create_key(&operator, "acme", &[1, 2, 3], &[]).await
    };
    let week = tallyq::proto::v1::TopicConfig {
        message_expiry_seconds: 604_800,
        ..Default::default()
    };
    create_topic(&server.client(&secret).await, "s1", week).await;
    server.kill();

    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    const ROUNDS: usize = 4;
    for round in 0..ROUNDS {
        let server = ProcessServer::start(&dir);
        let client = server.client(&secret).await;
        let before = acked.lock().unwrap().len();
        let load = tokio::spawn(load(client, round, acked.clone()));
        // Kill at a random instant once several groups have been answered.
        let started = std::time::Instant::now();
        while acked.lock().unwrap().len() < before + 800
            && started.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ms = rand::rng().random_range(10..600);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        server.kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), load).await;
        assert!(
            acked.lock().unwrap().len() >= before + 800,
            "round {round}: the load was not running when killed"
        );
    }

    let server = ProcessServer::start(&dir);
    let client = server.client(&secret).await;
    create_sub(&client, "s1", "audit", 0).await;
    let mut stored = BTreeMap::new();
    loop {
        let batch = fetch(&client, "s1", "audit", 1000, 0).await;
        if batch.is_empty() {
            break;
        }
        for d in batch {
            stored.insert(d.offset, text(&d));
        }
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    for (offset, payload) in &acked {
        assert_eq!(
            stored.get(offset),
            Some(payload),
            "acknowledged message at offset {offset}"
        );
    }
    println!(
        "batched kill test: {ROUNDS} SIGKILLs, {} acknowledged messages all present of {} stored",
        acked.len(),
        stored.len()
    );
}
