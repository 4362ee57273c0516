//! The Fetch-never-read phase of `memory_bound`: tenant "fetchhog" opens
//! many connections, each sending many Fetches for the most messages a
//! Fetch may ask for, and never reads an answer (each connection's HTTP/2
//! windows are 64 KiB, so what the broker answered stays in the broker's
//! send path) and never acks. Its delivered bytes stay counted in its
//! delivery pool until acked or their locks end and the answers have left
//! the broker (the re-fetch phase below checks the latter), so RSS growth
//! should stay under the plan limit plus a small constant while tenant
//! "calm" is served as before.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use tallyq::client::Client;
use tallyq::proto::v1 as pb;

use super::{
    outstanding, round_trips, tenant_secret, topic_with_subs, Broker, BACKLOG_BATCHES, HOLD,
};

/// Connections the hog opens (`MEMORY_BOUND_FETCH_CONNECTIONS` to vary it).
pub const CONNECTIONS: usize = 16;

/// The connections of this run.
pub fn connections() -> usize {
    std::env::var("MEMORY_BOUND_FETCH_CONNECTIONS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CONNECTIONS)
}
/// Fetches per connection (the server allows 128 concurrent streams per
/// connection; an unread answer keeps its stream open).
pub const FETCHES_PER_CONNECTION: usize = 128;
/// HTTP/2 windows of the hog's connections: the most of its answers the
/// hog's side takes off the broker per connection without reading them.
const WINDOW: u32 = 65_535;

/// What the phase saw.
pub struct FetchResult {
    /// RSS before the Fetches and the highest while they were held.
    pub rss_before: u64,
    pub rss_held: u64,
    /// Delivery bytes outstanding per GetQuota while held.
    pub held_bytes: u64,
    /// Messages delivered and not acked (the subscription's in-flight
    /// count) and their bytes.
    pub in_flight: u64,
    pub in_flight_bytes: u64,
    /// Calm's round trip (p50, p99 µs) while the Fetches were held.
    pub loaded: (u64, u64),
}

/// Bytes of each backlog message (64 of them per produce batch).
const MESSAGE: u64 = 64 * 1024 - 16;

type Call =
    Pin<Box<dyn Future<Output = Result<tonic::Response<pb::FetchResponse>, tonic::Status>> + Send>>;

/// Polls every call once, so it is handed to its connection, and keeps it
/// unpolled afterwards: its answer is never read.
fn send_unread(calls: &mut [Option<Call>]) {
    let mut cx = Context::from_waker(Waker::noop());
    for slot in calls.iter_mut() {
        let answered = slot
            .as_mut()
            .is_some_and(|call| call.as_mut().poll(&mut cx).is_ready());
        if answered {
            // Answered already (a refusal): nothing left to hold.
            *slot = None;
        }
    }
}

/// Runs the phase on `broker` (calm's topic "c" exists already).
pub async fn fetch_never_read(broker: &Broker, operator: &Client, calm: &Client) -> FetchResult {
    let token = tenant_secret(operator, "fetchhog").await;
    let hog = operator.with_token(&token).unwrap();
    topic_with_subs(&hog, "f", &["f".to_string()], 60).await;
    let batch: Vec<pb::Message> = (0..64)
        .map(|_| pb::Message {
            payload: vec![b'f'; MESSAGE as usize].into(),
            ..Default::default()
        })
        .collect();
    for _ in 0..BACKLOG_BATCHES {
        hog.produce("f", batch.clone()).await.expect("hog produce");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = broker.rss_bytes();

    let mut open = Vec::new();
    let mut calls: Vec<Option<Call>> = Vec::new();
    for _ in 0..connections() {
        let endpoint = Client::endpoint(&broker.address)
            .expect("endpoint")
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(WINDOW);
        let client = Client::connect_endpoint(endpoint, &token)
            .await
            .expect("hog connection");
        for _ in 0..FETCHES_PER_CONNECTION {
            let mut broker_client = client.broker();
            calls.push(Some(Box::pin(async move {
                broker_client
                    .fetch(pb::FetchRequest {
                        topic: "f".into(),
                        subscription: "f".into(),
                        max_messages: 1000,
                        max_wait_ms: 2000,
                    })
                    .await
            })));
        }
        open.push(client);
    }
    send_unread(&mut calls);

    let mut rss_held = 0;
    let until = Instant::now() + HOLD;
    while Instant::now() < until {
        rss_held = rss_held.max(broker.rss_bytes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held_bytes = outstanding(&hog).await;
    let stats = hog
        .admin()
        .get_subscription(pb::GetSubscriptionRequest {
            topic: "f".into(),
            name: "f".into(),
        })
        .await
        .expect("subscription stats")
        .into_inner()
        .stats
        .unwrap_or_default();
    let loaded = round_trips(calm).await;
    rss_held = rss_held.max(broker.rss_bytes());
    drop(calls);
    drop(open);
    FetchResult {
        rss_before,
        rss_held,
        held_bytes,
        in_flight: stats.in_flight,
        in_flight_bytes: stats.in_flight * MESSAGE,
        loaded,
    }
}

/// Rounds of the re-fetch phase: each after the last round's locks ended.
pub const REFETCH_ROUNDS: usize = 4;
/// Fetches per connection and round in the re-fetch phase.
pub const REFETCHES_PER_ROUND: usize = 8;
/// The re-fetch phase's lock (seconds): the shortest a plan allows, so its rounds are quick.
const REFETCH_LOCK_SECONDS: u32 = 10;
/// How long a re-fetch waits for credit (ms).
const REFETCH_WAIT_MS: u32 = 2000;

/// What the re-fetch phase saw.
pub struct RefetchResult {
    /// RSS before the first round and the highest over all rounds.
    pub rss_before: u64,
    pub rss_held: u64,
    /// Delivery bytes outstanding per GetQuota at the end of each round.
    pub held_bytes: Vec<u64>,
    /// Calm's round trip (p50, p99 µs) after the last round.
    pub loaded: (u64, u64),
}

/// The re-fetch phase: tenant "refetch" keeps its connections (64 KiB
/// windows) open and, in each round, sends Fetches on new streams of them
/// that it never reads nor acks; the next round starts once the last
/// round's locks (10 s) have ended. Before answers kept their credit until
/// they left the broker, each round pinned another limit's worth (the
/// expired holds gave the credit back while the answers still sat unsent).
pub async fn refetch_after_expiry(
    broker: &Broker,
    operator: &Client,
    calm: &Client,
) -> RefetchResult {
    let token = tenant_secret(operator, "refetch").await;
    let hog = operator.with_token(&token).unwrap();
    topic_with_subs(&hog, "r", &["r".to_string()], REFETCH_LOCK_SECONDS).await;
    let batch: Vec<pb::Message> = (0..64)
        .map(|_| pb::Message {
            payload: vec![b'r'; MESSAGE as usize].into(),
            ..Default::default()
        })
        .collect();
    for _ in 0..BACKLOG_BATCHES {
        hog.produce("r", batch.clone()).await.expect("hog produce");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = broker.rss_bytes();

    let mut open = Vec::new();
    for _ in 0..connections() {
        let endpoint = Client::endpoint(&broker.address)
            .expect("endpoint")
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(WINDOW);
        open.push(
            Client::connect_endpoint(endpoint, &token)
                .await
                .expect("hog connection"),
        );
    }
    let mut calls: Vec<Option<Call>> = Vec::new();
    let mut held_bytes = Vec::new();
    let mut rss_held = 0;
    for _ in 0..REFETCH_ROUNDS {
        let first = calls.len();
        for client in &open {
            for _ in 0..REFETCHES_PER_ROUND {
                let mut broker_client = client.broker();
                calls.push(Some(Box::pin(async move {
                    broker_client
                        .fetch(pb::FetchRequest {
                            topic: "r".into(),
                            subscription: "r".into(),
                            max_messages: 1000,
                            max_wait_ms: REFETCH_WAIT_MS,
                        })
                        .await
                })));
            }
        }
        send_unread(&mut calls[first..]);
        // The round's Fetches answer (or give up waiting for credit), then
        // their locks end (the dead-letter timer releases holds within a
        // second).
        let wait = Duration::from_millis(REFETCH_WAIT_MS as u64)
            + Duration::from_secs(REFETCH_LOCK_SECONDS as u64 + 2);
        let until = Instant::now() + wait;
        while Instant::now() < until {
            rss_held = rss_held.max(broker.rss_bytes());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        held_bytes.push(outstanding(&hog).await);
    }
    let loaded = round_trips(calm).await;
    rss_held = rss_held.max(broker.rss_bytes());
    drop(calls);
    drop(open);
    RefetchResult {
        rss_before,
        rss_held,
        held_bytes,
        loaded,
    }
}
