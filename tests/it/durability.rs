//! Durability against real processes: graceful restarts keep everything;
//! SIGKILL at random instants, compaction included, loses nothing that was
//! acknowledged.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tallyq::client::Client;
use tallyq::proto::v1 as pb;

use crate::harness::*;

/// A tenant whose rate limits do not bind (the manual clock stands still, so
/// the standard plan's rates would stop the load after one burst).
async fn setup_tenant(server: &ProcessServer) -> String {
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    lift_rate_limits(&operator, "acme").await;
    create_key(&operator, "acme", &[1, 2, 3], &[]).await
}

#[tokio::test]
async fn graceful_restart_keeps_messages_cursors_and_attempts() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let server = ProcessServer::start(&dir);
    let secret = setup_tenant(&server).await;
    let acme = server.client(&secret).await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "alo", 10).await;
    create_sub(&acme, "t", "amo", 0).await;
    acme.produce("t", vec![msg("a"), msg("b"), msg("c")])
        .await
        .unwrap();
    assert_eq!(fetch(&acme, "t", "alo", 2, 0).await.len(), 2);
    assert_eq!(ack(&acme, "t", "alo", vec![0]).await, 1);
    assert_eq!(fetch(&acme, "t", "amo", 1, 0).await.len(), 1);
    let operator = server.operator().await;
    advance(&operator, 4_000).await;
    assert_eq!(server.terminate(), Some(0), "SIGTERM exits 0");

    let server = ProcessServer::start(&dir);
    let acme = server.client(&secret).await;
    let operator = server.operator().await;
    let stats = topic_stats(&acme, "t").await;
    assert_eq!((stats.messages, stats.next_offset), (3, 3));
    assert_eq!(
        sub_stats(&acme, "t", "alo").await.in_flight,
        1,
        "the lock survived"
    );
    // The manual clock resumed where it was: 6 more seconds end the 10 s lock.
    advance(&operator, 6_000).await;
    let redelivered = fetch(&acme, "t", "alo", 10, 0).await;
    let seen: Vec<(u64, u32)> = redelivered
        .iter()
        .map(|d| (d.offset, d.delivery_attempt))
        .collect();
    assert_eq!(
        seen,
        vec![(1, 2), (2, 1)],
        "attempt counts are exact across restarts"
    );
    let amo: Vec<u64> = fetch(&acme, "t", "amo", 10, 0)
        .await
        .iter()
        .map(|d| d.offset)
        .collect();
    assert_eq!(amo, vec![1, 2], "the at-most-once cursor survived");
    let acme_again = acme.produce("t", vec![msg("d")]).await.unwrap();
    assert_eq!(
        acme_again.results[0].offset, 3,
        "offsets continue, never reused"
    );
}

/// `ProcessServer::start` with a compaction pass every second (and one at
/// start), so the SIGKILL test kills it while it moves sets.
fn start_compacting(data_dir: &Path) -> ProcessServer {
    let config = data_dir.with_extension("toml");
    std::fs::write(&config, "compaction_interval_seconds = 1\n").unwrap();
    ProcessServer::start_with(data_dir, &["--config".as_ref(), config.as_os_str()])
}

/// Total size of the segment files.
fn segment_bytes(data_dir: &Path) -> u64 {
    std::fs::read_dir(data_dir.join("segments"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum()
}

/// Another tenant's topic capped at 256 KiB, so most of what is produced to
/// it is reclaimed at once: the segments the crash rounds leave are mostly
/// dead around the retained sets of `t`, and compaction moves those.
async fn churn(client: Client, churned: Arc<AtomicU64>) {
    for batch in 0u64.. {
        let messages = (0..8).map(|_| msg(&"c".repeat(8 * 1024))).collect();
        if client.produce("churn", messages).await.is_err() {
            return;
        }
        churned.fetch_add(8 * 8 * 1024, Ordering::SeqCst);
        if batch % 4 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

/// What clients saw acknowledged during the crash rounds.
#[derive(Default)]
struct Acknowledged {
    /// offset -> payload of every produce whose reply arrived.
    produced: BTreeMap<u64, String>,
    /// Offsets whose Ack reply arrived.
    acked: HashSet<u64>,
    /// Deliveries the consumer received.
    received: u64,
}

async fn load(client: Client, round: usize, seen: Arc<Mutex<Acknowledged>>) {
    let mut tasks = Vec::new();
    for producer in 0..2 {
        let client = client.clone();
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0.. {
                let payloads: Vec<String> = (0..20)
                    .map(|i| format!("r{round}-p{producer}-b{batch}-m{i}"))
                    .collect();
                let messages = payloads.iter().map(|p| msg(p)).collect();
                let Ok(reply) = client.produce("t", messages).await else {
                    return;
                };
                let mut seen = seen.lock().unwrap();
                for (result, payload) in reply.results.iter().zip(payloads) {
                    seen.produced.insert(result.offset, payload);
                }
            }
        }));
    }
    let consumer = {
        let client = client.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok(reply) = client
                    .broker()
                    .fetch(pb::FetchRequest {
                        topic: "t".into(),
                        subscription: "alo".into(),
                        max_messages: 50,
                        max_wait_ms: 100,
                    })
                    .await
                else {
                    return;
                };
                let offsets: Vec<u64> = reply
                    .into_inner()
                    .deliveries
                    .iter()
                    .map(|d| d.offset)
                    .collect();
                seen.lock().unwrap().received += offsets.len() as u64;
                if offsets.is_empty() {
                    continue;
                }
                let request = pb::AckRequest {
                    topic: "t".into(),
                    subscription: "alo".into(),
                    offsets: offsets.clone(),
                };
                if client.broker().ack(request).await.is_err() {
                    return;
                }
                seen.lock().unwrap().acked.extend(offsets);
            }
        })
    };
    tasks.push(consumer);
    for task in tasks {
        let _ = task.await;
    }
}

#[tokio::test]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let server = start_compacting(&dir);
    let secret = setup_tenant(&server).await;
    let churn_secret = {
        let acme = server.client(&secret).await;
        let week = pb::TopicConfig {
            message_expiry_seconds: 604_800,
            ..Default::default()
        };
        create_topic(&acme, "t", week).await;
        create_sub(&acme, "t", "alo", 60).await;
        let operator = server.operator().await;
        create_tenant(&operator, "globex").await;
        lift_rate_limits(&operator, "globex").await;
        let churn_secret = create_key(&operator, "globex", &[1, 2, 3], &[]).await;
        let capped = pb::TopicConfig {
            max_bytes: 256 * 1024,
            overflow_policy: pb::OverflowPolicy::ReclaimOldest as i32,
            ..Default::default()
        };
        create_topic(&server.client(&churn_secret).await, "churn", capped).await;
        churn_secret
    };
    server.kill();

    let seen = Arc::new(Mutex::new(Acknowledged::default()));
    let churned = Arc::new(AtomicU64::new(0));
    const ROUNDS: usize = 6;
    for round in 0..ROUNDS {
        let server = start_compacting(&dir);
        let acme = server.client(&secret).await;
        let before = seen.lock().unwrap().produced.len();
        let load = tokio::spawn(load(acme, round, seen.clone()));
        let churn = tokio::spawn(churn(server.client(&churn_secret).await, churned.clone()));
        // Kill at a random instant once the load is really running (on a
        // loaded machine a fixed delay may end a round before its first reply).
        let started = std::time::Instant::now();
        while seen.lock().unwrap().produced.len() < before + 40
            && started.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Long enough, now and then, for the periodic compaction pass too.
        let ms = rand::rng().random_range(50..1500);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        server.kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), load).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), churn).await;
    }

    // Compaction gave back the space of what the cap reclaimed: the crash
    // rounds' segments do not all stay pinned by the retained sets of `t`.
    let churned = churned.load(Ordering::SeqCst);
    let server = start_compacting(&dir);
    let mut compacted = segment_bytes(&dir);
    for _ in 0..300 {
        if compacted < churned / 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        compacted = segment_bytes(&dir);
    }
    assert!(
        compacted < churned / 2,
        "segment files hold {compacted} bytes after {churned} bytes were produced to a 256 KiB topic"
    );
    let acme = server.client(&secret).await;
    let operator = server.operator().await;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    // Close the day of the load: its ledger line is what the tenant is billed.
    let day = advance_past_midnight(&operator).await;
    let billed = ledger(&operator)
        .await
        .into_iter()
        .find(|e| e.day == day && e.meter == "message_units" && e.tenant == "acme")
        .expect("the load's day was settled");
    assert!(
        seen.produced.len() > 100,
        "the load produced: {}",
        seen.produced.len()
    );
    assert!(!seen.acked.is_empty(), "the load acked something");

    // Every acknowledged produce is there, at its offset, in order.
    create_sub(&acme, "t", "audit", 0).await;
    let mut stored = BTreeMap::new();
    loop {
        let batch = fetch(&acme, "t", "audit", 1000, 0).await;
        if batch.is_empty() {
            break;
        }
        for d in batch {
            stored.insert(d.offset, text(&d));
        }
    }
    let offsets: Vec<u64> = stored.keys().copied().collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    // Billed exactly: every stored message once (all are 1 unit), every
    // delivery the server recorded; the client saw all recorded deliveries
    // except those of a Fetch cut off by a kill (at most one batch of 50 a round).
    assert_eq!(
        billed.produced_units,
        stored.len() as u64,
        "produced units = stored messages"
    );
    assert!(billed.delivered_units >= seen.received);
    assert!(
        billed.delivered_units <= seen.received + 50 * ROUNDS as u64,
        "billed {} received {}",
        billed.delivered_units,
        seen.received
    );
    assert!(tallyq::client::verify_ledger(&ledger(&operator).await).is_ok());
    for (offset, payload) in &seen.produced {
        assert_eq!(
            stored.get(offset),
            Some(payload),
            "acknowledged message at {offset}"
        );
    }

    // No message whose Ack was answered comes back (the lock has long passed).
    let mut redelivered = Vec::new();
    loop {
        let batch = fetch(&acme, "t", "alo", 1000, 0).await;
        if batch.is_empty() {
            break;
        }
        let offsets: Vec<u64> = batch.iter().map(|d| d.offset).collect();
        ack(&acme, "t", "alo", offsets.clone()).await;
        redelivered.extend(offsets);
    }
    let back: Vec<&u64> = redelivered
        .iter()
        .filter(|o| seen.acked.contains(o))
        .collect();
    assert!(back.is_empty(), "acked messages came back: {back:?}");
    println!(
        "crash test: {ROUNDS} SIGKILLs, {} acknowledged produces all present, {} acks held, \
         {} stored; billed produced_units {} = stored {}; billed delivered_units {} vs {} received; \
         segment files {} bytes after {} bytes produced to a 256 KiB topic",
        seen.produced.len(),
        seen.acked.len(),
        stored.len(),
        billed.produced_units,
        stored.len(),
        billed.delivered_units,
        seen.received,
        compacted,
        churned
    );
}

#[tokio::test]
async fn an_entry_edited_in_the_database_is_detected_by_ledger_verify() {
    use tallyq::billing::ledger::LedgerEntry;
    use tallyq::storage::{Store, WriteSet};

    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let server = ProcessServer::start(&dir);
    let operator = server.operator().await;
    for tenant in ["acme", "globex"] {
        create_tenant(&operator, tenant).await;
        let client = operator
            .with_token(&create_key(&operator, tenant, &[1, 3], &[]).await)
            .unwrap();
        create_topic(&client, "t", Default::default()).await;
        client.produce("t", vec![msg("m")]).await.unwrap();
    }
    advance_past_midnight(&operator).await;
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tallyq"))
            .args(["--server", &server.address, "--token", OPERATOR_TOKEN])
            .args(args)
            .output()
            .unwrap()
    };
    let verified = cli(&["ledger", "verify"]);
    assert!(verified.status.success());
    assert!(String::from_utf8_lossy(&verified.stdout).contains("6 entries, hash chain intact"));
    let csv = String::from_utf8(cli(&["ledger", "export", "--format", "csv"]).stdout).unwrap();
    assert_eq!(csv.lines().count(), 7, "header + 6 entries:\n{csv}");
    assert!(csv.starts_with("sequence,node_id,tenant,kind,day,meter"));
    let jsonl = String::from_utf8(cli(&["ledger", "export", "--from", "5"]).stdout).unwrap();
    assert_eq!(jsonl.lines().count(), 2, "resumes from a sequence");
    assert!(jsonl
        .lines()
        .all(|l| l.starts_with('{') && l.contains("\"hash\"")));
    assert_eq!(server.terminate(), Some(0));

    // Someone edits entry 2 directly in the store.
    {
        let (store, committer) = Store::open(&dir, 8 << 20).unwrap();
        let mut entry: LedgerEntry = store.ledger_entry(2).unwrap().unwrap();
        entry.amount_minor += 1;
        let mut writes = WriteSet::new();
        writes.put_ledger_entry(2, &entry);
        store.commit(writes).await.unwrap();
        drop(store);
        committer.join();
    }
    let server = ProcessServer::start(&dir);
    let _ = server.operator().await;
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tallyq"))
            .args(["--server", &server.address, "--token", OPERATOR_TOKEN])
            .args(args)
            .output()
            .unwrap()
    };
    let tampered = cli(&["ledger", "verify"]);
    assert!(!tampered.status.success(), "verify must fail");
    let message = String::from_utf8_lossy(&tampered.stderr);
    assert!(message.contains("ledger entry 2 is invalid"), "{message}");
}
