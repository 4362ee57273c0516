//! Write failures on a real small file system (issue 11, item 2; SPEC §2):
//! another process fills the disk, so real ENOSPC hits the broker's writes.
//! Nothing is reported stored or acked that is not, a reply that may have
//! been stored never says "not applied", the broker comes back by itself
//! once space returns, and a restart finds exactly what was acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tallyq::client::Client;
use tallyq::config::Config;
use tallyq::proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::{Code, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::harness::*;
use crate::small_fs::SmallFs;

/// A guard against a hang, not a timing assertion: no step here should get
/// anywhere near it.
const PATIENCE: Duration = Duration::from_secs(120);

/// A broker in this process on a data dir the test chooses (so a second one
/// can reopen it).
struct Broker {
    address: String,
    metrics: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), tallyq::server::ServerError>>,
}

impl Broker {
    async fn start(config: Config) -> Broker {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let metrics = config.metrics_listen;
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(tallyq::run(config, listener, async {
            let _ = stopped.await;
        }));
        Broker {
            address,
            metrics,
            stop,
            handle,
        }
    }

    async fn client(&self, token: &str) -> Client {
        Client::connect(&self.address, token).await.unwrap()
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.handle.await.unwrap().unwrap();
    }

    /// The Broker service's health status (1 SERVING, 2 NOT_SERVING).
    async fn health(&self) -> i32 {
        let channel = tonic::transport::Endpoint::from_shared(self.address.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: "tallyq.v1.Broker".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
    }

    /// One series of /metrics, 0 when absent.
    async fn metric(&self, series: &str) -> f64 {
        let mut stream = tokio::net::TcpStream::connect(self.metrics).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        text.lines()
            .filter(|line| line.starts_with(series))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Waits until `check` holds, failing with `what` if it never does.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A failed write as the client reads it. Anything the broker answers but
/// UNAVAILABLE is wrong: a full disk is neither the caller's fault nor an
/// internal bug. A call the client's transport failed (the broker closed
/// the connection under it while switching to recovery) may or may not have
/// been served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failed {
    /// "not applied: retry": nothing of it may be stored.
    NotApplied,
    /// The broker said "outcome unknown", or the connection went away.
    Unknown,
}

fn failed(status: &Status) -> Failed {
    let transport = std::error::Error::source(status)
        .is_some_and(|cause| cause.is::<tonic::transport::Error>());
    if transport {
        return Failed::Unknown;
    }
    assert_eq!(
        status.code(),
        Code::Unavailable,
        "a failed write must be UNAVAILABLE: {status:?}"
    );
    if status.message().contains("not applied") {
        Failed::NotApplied
    } else {
        Failed::Unknown
    }
}

/// What the producer was told, by payload.
#[derive(Default)]
struct Produced {
    /// OK, at this offset.
    stored: BTreeMap<String, u64>,
    /// Not stored for sure, or maybe stored.
    failed: BTreeMap<String, Failed>,
}

impl Produced {
    /// Produces message `i` once, with its payload as dedup_id, and notes
    /// the answer.
    async fn produce(&mut self, client: &Client, i: u64) -> Result<u64, Failed> {
        let payload = format!("m{i:04}-{}", "x".repeat(4000));
        let message = pb::Message {
            payload: payload.clone().into_bytes().into(),
            dedup_id: format!("m{i:04}"),
            ..Default::default()
        };
        match client.produce_once("t", vec![message]).await {
            Ok(reply) => {
                let offset = reply.results[0].offset;
                self.failed.remove(&payload);
                self.stored.insert(payload, offset);
                Ok(offset)
            }
            Err(status) => {
                let failure = failed(&status);
                if !self.stored.contains_key(&payload) {
                    // A retry that failed does not make an earlier "maybe" sure.
                    let known = self.failed.entry(payload).or_insert(failure);
                    if failure == Failed::Unknown {
                        *known = Failed::Unknown;
                    }
                }
                Err(failure)
            }
        }
    }
}

async fn ack_once(client: &Client, offset: u64) -> Result<(), Status> {
    client
        .broker()
        .ack(pb::AckRequest {
            topic: "t".into(),
            subscription: "s".into(),
            offsets: vec![offset],
        })
        .await
        .map(|_| ())
}

async fn usage_total(client: &Client) -> pb::UsageLine {
    let lines = client
        .admin()
        .get_usage(pb::GetUsageRequest {})
        .await
        .unwrap()
        .into_inner()
        .lines;
    let mut total = pb::UsageLine::default();
    for line in lines.iter().filter(|l| l.dimension == "total") {
        total.produced_messages += line.produced_messages;
        total.delivered_messages += line.delivered_messages;
    }
    total
}

#[tokio::test]
async fn a_full_disk_reports_nothing_it_did_not_store_and_the_broker_recovers_without_a_restart() {
    let fs = SmallFs::mount(48 << 20);
    let home = tempfile::tempdir().unwrap();
    let mut config = test_config(home.path());
    config.data_dir = fs.path().join("data");
    // This test is about real ENOSPC, past where the disk watermark would
    // refuse produce: turn the watermark off.
    config.min_free_disk_bytes = tallyq::storage::MinFreeDisk::bytes(0);
    let broker = Broker::start(config.clone()).await;
    let operator = broker.client(OPERATOR_TOKEN).await;
    create_tenant(&operator, "acme").await;
    let key = create_key(&operator, "acme", &[1, 2, 3], &[]).await;
    lift_rate_limits(&operator, "acme").await;
    let acme = operator.with_token(&key).unwrap();
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 30).await;
    // A Consume stream that waits on an empty topic (so it bills nothing).
    create_topic(&acme, "quiet", Default::default()).await;
    create_sub(&acme, "quiet", "live", 30).await;
    let mut consumer = acme.consume("quiet", "live", 10, 1 << 20).await.unwrap();
    // An idle ProduceStream, held open by its client.
    let (_stream_requests, requests) = tokio::sync::mpsc::channel::<pb::ProduceRequest>(1);
    let mut stream_replies = acme
        .broker()
        .produce_stream(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .unwrap()
        .into_inner();

    // Healthy: 100 messages stored and delivered, 5 of them acked.
    let mut produced = Produced::default();
    for i in 0..100 {
        produced.produce(&acme, i).await.expect("a healthy produce");
    }
    let delivered_first = fetch(&acme, "t", "s", 100, 1000).await;
    assert_eq!(delivered_first.len(), 100);
    let mut delivered = delivered_first.len() as u64;
    let mut acked = BTreeSet::new();
    for d in &delivered_first[..5] {
        ack_once(&acme, d.offset).await.unwrap();
        acked.insert(d.offset);
    }

    // Another process fills the disk.
    let ballast = fs.fill("ballast", fs.free_bytes() + (1 << 20));
    assert!(fs.free_bytes() < 64 * 1024, "the disk is full");

    // Produce: never OK for what is not stored (checked after the restart).
    let mut refused = 0;
    for i in 100..160 {
        if produced.produce(&acme, i).await.is_err() {
            refused += 1;
        }
    }
    assert!(refused > 0, "a full disk refuses produce");

    // Ack each delivered offset twice: once an ack failed, the second must
    // not answer OK on top of a state the disk does not have. (The first
    // few may truly be written: sled's log may still have room in a page.)
    let mut ack_failures = 0;
    for d in &delivered_first[5..] {
        let first = ack_once(&acme, d.offset).await;
        let second = ack_once(&acme, d.offset).await;
        match (&first, &second) {
            (Ok(()), _) => {
                acked.insert(d.offset);
            }
            (Err(status), Ok(())) => {
                panic!(
                    "offset {}: ack failed ({status:?}), then answered OK",
                    d.offset
                )
            }
            (Err(a), Err(b)) => {
                failed(a);
                failed(b);
                ack_failures += 1;
            }
        }
    }
    assert!(ack_failures > 0, "a full disk fails acks");
    // The failed store's streams end, UNAVAILABLE (and do not keep it open:
    // recovery below needs it dropped).
    let ended = tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .expect("the Consume stream ends");
    assert_eq!(ended.unwrap_err().code(), Code::Unavailable);
    let ended = tokio::time::timeout(PATIENCE, stream_replies.message())
        .await
        .expect("the ProduceStream ends");
    assert_eq!(ended.unwrap_err().code(), Code::Unavailable);

    // The operator sees it: NOT_SERVING, the failed gauge.
    eventually("health NOT_SERVING while the disk is full", || async {
        broker.health().await == 2
    })
    .await;
    assert_eq!(broker.metric("tallyq_storage_failed").await, 1.0);

    // Space returns: produce is accepted again, without a restart (retrying
    // message 160 with its dedup_id, as a client should).
    std::fs::remove_file(&ballast).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while produced.produce(&acme, 160).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "produce is still refused although space returned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(broker.health().await, 1, "SERVING again");
    assert_eq!(broker.metric("tallyq_storage_failed").await, 0.0);
    assert!(broker.metric("tallyq_storage_recoveries_total").await >= 1.0);
    for i in 161..170 {
        produced
            .produce(&acme, i)
            .await
            .expect("a produce after recovery");
    }
    // Whatever else is deliverable now is delivered (and billed).
    delivered += fetch(&acme, "t", "s", 1000, 0).await.len() as u64;
    let max_reported = *produced.stored.values().max().unwrap();
    broker.stop().await;

    // Restart on the same data dir.
    let broker = Broker::start(config.clone()).await;
    let operator = broker.client(OPERATOR_TOKEN).await;
    let acme = broker.client(&key).await;

    // Usage equals exactly what is stored and what was delivered.
    let stored_count = topic_stats(&acme, "t").await.messages;
    let usage = usage_total(&acme).await;
    assert_eq!(usage.produced_messages, stored_count, "produced usage");
    assert_eq!(usage.delivered_messages, delivered, "delivered usage");

    // Every OK produce is there exactly once, at its offset; nothing that
    // was "not applied" is; a "maybe" is there at most once.
    create_sub(&acme, "t", "verify", 0).await;
    let all = fetch(&acme, "t", "verify", 1000, 0).await;
    assert_eq!(all.len() as u64, stored_count);
    let mut by_payload: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for d in &all {
        by_payload.entry(text(d)).or_default().push(d.offset);
    }
    for (payload, offset) in &produced.stored {
        assert_eq!(
            by_payload.get(payload),
            Some(&vec![*offset]),
            "{payload:.5} was acknowledged at {offset}"
        );
    }
    for (payload, failure) in &produced.failed {
        let found = by_payload.get(payload).map_or(0, Vec::len);
        match failure {
            Failed::NotApplied => assert_eq!(found, 0, "{payload:.5} was 'not applied'"),
            Failed::Unknown => assert!(found <= 1, "{payload:.5} stored twice"),
        }
    }
    assert!(by_payload.values().all(|offsets| offsets.len() == 1));

    // Offsets are never reused: the next one is past every one reported.
    let next = acme
        .produce_once("t", vec![msg("after restart")])
        .await
        .unwrap()
        .results[0]
        .offset;
    assert!(next > max_reported);

    // Every OK ack stays acked: past the lock, only unacked messages return.
    advance(&operator, 40_000).await;
    let redelivered = fetch(&acme, "t", "s", 1000, 0).await;
    for d in &redelivered {
        assert!(
            !acked.contains(&d.offset),
            "offset {} was acked OK and came back",
            d.offset
        );
    }
    broker.stop().await;
}
