//! Produce combining (issue 15): concurrent produces to one topic are stored
//! together, one message set per round, and each producer still sees exactly
//! what it would alone: its own offsets (unique and contiguous over all),
//! duplicates answered with the original's offset (also across producers),
//! its own units, its own refusal; consumers get exactly the acknowledged
//! messages and usage counts exactly the units the replies billed.

use std::collections::{BTreeMap, HashMap};

use std::future::Future;

use tallyq::client::Client;
use tallyq::proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::harness::*;
use crate::ops::{scrape, value};

/// Runs every future at once, each on its own task; their outputs in order.
async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.unwrap());
    }
    outputs
}

fn message(payload: &str, dedup_id: &str) -> pb::Message {
    pb::Message {
        dedup_id: dedup_id.into(),
        ..msg(payload)
    }
}

/// Consumes every message of `topic` through a new subscription from the
/// start: offset -> payload.
async fn consume_all(client: &Client, topic: &str, sub: &str) -> BTreeMap<u64, String> {
    client
        .admin()
        .create_subscription(pb::CreateSubscriptionRequest {
            topic: topic.into(),
            name: sub.into(),
            config: Some(pb::SubscriptionConfig {
                lock_seconds: 60,
                ..Default::default()
            }),
            start: pb::StartPosition::Earliest as i32,
        })
        .await
        .unwrap();
    let mut seen = BTreeMap::new();
    loop {
        let batch = fetch(client, topic, sub, 500, 200).await;
        if batch.is_empty() {
            return seen;
        }
        let offsets: Vec<u64> = batch.iter().map(|d| d.offset).collect();
        for d in &batch {
            assert!(
                seen.insert(d.offset, text(d)).is_none(),
                "offset {} delivered twice",
                d.offset
            );
        }
        ack(client, topic, sub, offsets).await;
    }
}

/// The tenant's live produced units and messages on its total line.
async fn produced_usage(client: &Client) -> (u64, u64) {
    let usage = client
        .admin()
        .get_usage(pb::GetUsageRequest {})
        .await
        .unwrap()
        .into_inner();
    usage
        .lines
        .iter()
        .filter(|l| l.dimension == "total")
        .fold((0, 0), |(u, m), l| {
            (u + l.produced_units, m + l.produced_messages)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_single_message_produces_with_dedup_ids_are_exact() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    lift_rate_limits(&operator, "acme").await;
    create_topic(
        &acme,
        "t",
        pb::TopicConfig {
            dedup_window_seconds: 600,
            ..Default::default()
        },
    )
    .await;

    // 48 producers on 4 connections, 12 single-message produces each. Every
    // 4th message's dedup id is shared by the producer and its neighbour, so
    // about one in eight produces is a duplicate of another producer's.
    const PRODUCERS: usize = 48;
    const EACH: usize = 12;
    let mut clients = vec![acme.clone()];
    for _ in 1..4 {
        let secret = create_key(&operator, "acme", &[1, 2, 3], &[]).await;
        clients.push(Client::connect(&server.address, &secret).await.unwrap());
    }
    let producers = (0..PRODUCERS).map(|p| {
        let client = clients[p % clients.len()].clone();
        async move {
            let mut replies = Vec::new();
            for i in 0..EACH {
                let (payload, dedup) = if i % 4 == 0 {
                    let pair = p / 2;
                    (format!("shared-{pair}-{i}"), format!("s-{pair}-{i}"))
                } else {
                    (format!("p{p}-{i}"), format!("d-{p}-{i}"))
                };
                let reply = client
                    .produce_once("t", vec![message(&payload, &dedup)])
                    .await
                    .unwrap();
                assert_eq!(reply.results.len(), 1);
                replies.push((payload, dedup, reply.results[0], reply.units));
            }
            replies
        }
    });
    let replies: Vec<_> = join_all(producers).await.into_iter().flatten().collect();

    // Every stored message has its own offset, and they run 0..n with no gap.
    let stored: Vec<_> = replies.iter().filter(|r| !r.2.duplicate).collect();
    let mut offsets: Vec<u64> = stored.iter().map(|r| r.2.offset).collect();
    offsets.sort_unstable();
    let n = stored.len() as u64;
    assert_eq!(
        offsets,
        (0..n).collect::<Vec<_>>(),
        "offsets unique and contiguous"
    );
    // Each dedup id is stored once; its duplicates answer the original's offset.
    let by_dedup: HashMap<&str, u64> = stored.iter().map(|r| (r.1.as_str(), r.2.offset)).collect();
    assert_eq!(by_dedup.len(), stored.len(), "a dedup id was stored twice");
    let duplicates: Vec<_> = replies.iter().filter(|r| r.2.duplicate).collect();
    assert_eq!(
        duplicates.len(),
        PRODUCERS / 2 * EACH / 4,
        "each shared id is stored once and answered as a duplicate once"
    );
    for d in &duplicates {
        assert_eq!(d.2.offset, by_dedup[d.1.as_str()], "duplicate of {}", d.1);
        assert_eq!((d.2.units, d.3), (0, 0), "a duplicate bills nothing");
    }
    // What a consumer reads is exactly what was acknowledged, at its offset.
    let consumed = consume_all(&acme, "t", "all").await;
    let acknowledged: BTreeMap<u64, String> =
        stored.iter().map(|r| (r.2.offset, r.0.clone())).collect();
    assert_eq!(consumed, acknowledged);
    assert_eq!(topic_stats(&acme, "t").await.messages, n);
    // Usage is the sum of what the replies billed.
    let billed: u64 = replies.iter().map(|r| r.3).sum();
    assert_eq!(billed, n, "one unit per small message");
    assert_eq!(produced_usage(&acme).await, (billed, n));
    // The produces were combined: fewer sets than messages (the metric an
    // operator reads for it), and the messages counted exactly.
    let metrics = scrape(&server).await;
    let sets = value(&metrics, "tallyq_produced_sets_total", &["tenant=\"acme\""]);
    assert_eq!(
        value(
            &metrics,
            "tallyq_produced_messages_total",
            &["tenant=\"acme\""]
        ),
        n as f64
    );
    assert!(
        sets >= 1.0 && sets < n as f64,
        "{n} messages from {PRODUCERS} concurrent producers were stored in {sets} sets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_topic_refuses_exactly_the_produces_that_do_not_fit_and_stores_the_rest() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    lift_rate_limits(&operator, "acme").await;
    // Room for exactly 10 messages of 100 bytes; then produce is refused.
    create_topic(
        &acme,
        "full",
        pb::TopicConfig {
            max_bytes: 1000,
            overflow_policy: pb::OverflowPolicy::RefuseProduce as i32,
            ..Default::default()
        },
    )
    .await;
    let payload = |i: usize| format!("{i:0>100}");
    let replies = join_all((0..40).map(|i| {
        let acme = acme.clone();
        async move { (i, acme.produce_once("full", vec![msg(&payload(i))]).await) }
    }))
    .await;

    let mut stored = BTreeMap::new();
    for (i, reply) in &replies {
        match reply {
            Ok(reply) => {
                assert_eq!(reply.units, 1);
                assert!(stored
                    .insert(reply.results[0].offset, payload(*i))
                    .is_none());
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("is full"), "{}", status.message());
                assert!(
                    status.message().contains("1000 of its 1000-byte"),
                    "the refusal names the topic as it was: {}",
                    status.message()
                );
            }
        }
    }
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(consume_all(&acme, "full", "all").await, stored);
    assert_eq!(produced_usage(&acme).await, (10, 10));
    let stats = topic_stats(&acme, "full").await;
    assert_eq!((stats.messages, stats.bytes), (10, 1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_produces_among_concurrent_ones_change_nothing_and_the_others_are_stored() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    // A burst of 25 units and a manual clock: the rate never refills, so
    // exactly 25 one-unit produces get in, whatever the order.
    set_overrides(
        &operator,
        "acme",
        &[
            ("produce_units_per_second", 1),
            ("produce_burst_units", 25),
            ("control_calls_per_second", 1_000_000),
        ],
    )
    .await;
    // Reclaims the oldest when full, but a batch over its 2,000-byte cap is
    // bad input whatever else is queued with it.
    create_topic(
        &acme,
        "capped",
        pb::TopicConfig {
            max_bytes: 2000,
            overflow_policy: pb::OverflowPolicy::ReclaimOldest as i32,
            ..Default::default()
        },
    )
    .await;
    let oversized = "x".repeat(2001);
    let replies = join_all((0..60).map(|i| {
        let acme = acme.clone();
        let oversized = oversized.clone();
        async move {
            let payload = if i % 6 == 0 {
                oversized
            } else {
                format!("m{i:02}")
            };
            (
                payload.clone(),
                acme.produce_once("capped", vec![msg(&payload)]).await,
            )
        }
    }))
    .await;

    let mut stored = BTreeMap::new();
    let (mut too_big, mut rate_refused) = (0, 0);
    for (payload, reply) in replies {
        match reply {
            Ok(reply) => {
                assert!(payload.len() < 2000);
                assert!(stored.insert(reply.results[0].offset, payload).is_none());
            }
            Err(status) if status.code() == Code::InvalidArgument => {
                assert_eq!(payload, oversized);
                assert!(
                    status.message().contains("larger than topic"),
                    "{}",
                    status.message()
                );
                too_big += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(payload.len() < 2000);
                rate_refused += 1;
            }
        }
    }
    assert_eq!(too_big, 10, "every oversized batch is refused as bad input");
    assert_eq!(stored.len(), 25, "exactly the burst is stored");
    assert_eq!(
        rate_refused, 25,
        "the rest of the small ones are refused by rate"
    );
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        (0..25).collect::<Vec<_>>()
    );
    assert_eq!(consume_all(&acme, "capped", "all").await, stored);
    assert_eq!(produced_usage(&acme).await, (25, 25));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_produce_stream_keeps_its_order_among_concurrent_unary_produces() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    lift_rate_limits(&operator, "acme").await;
    create_topic(&acme, "mixed", Default::default()).await;

    let frames: Vec<pb::ProduceRequest> = (0..40)
        .map(|i| pb::ProduceRequest {
            topic: "mixed".into(),
            messages: vec![msg(&format!("stream-{i}a")), msg(&format!("stream-{i}b"))],
        })
        .collect();
    let stream = {
        let acme = acme.clone();
        async move {
            let mut replies = acme
                .broker()
                .produce_stream(tokio_stream::iter(frames))
                .await
                .unwrap()
                .into_inner();
            let mut offsets = Vec::new();
            while let Some(reply) = replies.next().await {
                let reply = reply.unwrap();
                offsets.extend(reply.results.iter().map(|r| r.offset));
            }
            offsets
        }
    };
    let unary = join_all((0..30).map(|p| {
        let acme = acme.clone();
        async move {
            let mut offsets = Vec::new();
            for i in 0..5 {
                let reply = acme
                    .produce_once("mixed", vec![msg(&format!("unary-{p}-{i}"))])
                    .await
                    .unwrap();
                offsets.push(reply.results[0].offset);
            }
            offsets
        }
    }));
    let (stream_offsets, unary_offsets) = tokio::join!(tokio::spawn(stream), unary);
    let stream_offsets = stream_offsets.unwrap();
    assert_eq!(stream_offsets.len(), 80, "every frame answered");
    assert!(
        stream_offsets.windows(2).all(|w| w[0] < w[1]),
        "a stream's messages are stored in its order: {stream_offsets:?}"
    );
    for offsets in &unary_offsets {
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    }
    let consumed = consume_all(&acme, "mixed", "all").await;
    assert_eq!(consumed.len(), 80 + 150);
    for (i, offset) in stream_offsets.iter().enumerate() {
        let expected = format!("stream-{}{}", i / 2, if i % 2 == 0 { "a" } else { "b" });
        assert_eq!(consumed[offset], expected);
    }
    assert_eq!(
        consumed.keys().copied().collect::<Vec<_>>(),
        (0..230).collect::<Vec<_>>()
    );
}

/// IoT producers that keep one ProduceStream open and send one message at a
/// time, each after the previous reply, are combined as unary produces are
/// (a stream with nothing in flight waits at the gate), and each still sees
/// its own order and exact offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_at_a_time_produce_streams_are_combined_and_exact() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    lift_rate_limits(&operator, "acme").await;
    create_topic(&acme, "t", Default::default()).await;

    const STREAMS: usize = 32;
    const EACH: usize = 10;
    let streams = join_all((0..STREAMS).map(|p| {
        let acme = acme.clone();
        async move {
            let (requests, outbound) = tokio::sync::mpsc::channel(1);
            let mut replies = acme
                .broker()
                .produce_stream(tokio_stream::wrappers::ReceiverStream::new(outbound))
                .await
                .unwrap()
                .into_inner();
            let mut sent = Vec::new();
            for i in 0..EACH {
                let payload = format!("s{p}-{i}");
                requests
                    .send(pb::ProduceRequest {
                        topic: "t".into(),
                        messages: vec![msg(&payload)],
                    })
                    .await
                    .unwrap();
                let reply = replies.next().await.expect("a reply per frame").unwrap();
                assert_eq!(reply.results.len(), 1);
                sent.push((reply.results[0].offset, payload));
            }
            drop(requests);
            assert!(
                replies.next().await.is_none(),
                "the stream ends after its last reply"
            );
            sent
        }
    }))
    .await;

    let n = (STREAMS * EACH) as u64;
    for sent in &streams {
        assert!(
            sent.windows(2).all(|w| w[0].0 < w[1].0),
            "a stream's messages are stored in its order: {sent:?}"
        );
    }
    let acknowledged: BTreeMap<u64, String> = streams.into_iter().flatten().collect();
    assert_eq!(
        acknowledged.keys().copied().collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>(),
        "offsets unique and contiguous"
    );
    assert_eq!(consume_all(&acme, "t", "all").await, acknowledged);
    assert_eq!(produced_usage(&acme).await, (n, n));
    let metrics = scrape(&server).await;
    let sets = value(&metrics, "tallyq_produced_sets_total", &["tenant=\"acme\""]);
    assert!(
        sets >= 1.0 && sets < n as f64,
        "{n} messages from {STREAMS} one-at-a-time streams were stored in {sets} sets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn combined_sets_fold_into_exact_per_device_usage() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    lift_rate_limits(&operator, "acme").await;
    create_topic(&acme, "devices", Default::default()).await;

    // 32 producers, 8 single-message produces each, from 6 devices (and
    // none), 1 to 3 units each: the sets mix devices and sizes.
    let replies = join_all((0..32).map(|p| {
        let acme = acme.clone();
        async move {
            let mut billed = Vec::new();
            for i in 0..8 {
                let device = match (p + i) % 7 {
                    6 => String::new(),
                    d => format!("dev-{d}"),
                };
                let payload = "u".repeat(1 + (p * 131 + i * 977) % 3000);
                let message = pb::Message {
                    device_id: device.clone(),
                    ..msg(&payload)
                };
                let reply = acme.produce_once("devices", vec![message]).await.unwrap();
                billed.push((device, reply.units));
            }
            billed
        }
    }))
    .await;
    let mut expected: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (device, units) in replies.into_iter().flatten() {
        if !device.is_empty() {
            let line = expected.entry(device).or_default();
            line.0 += units;
            line.1 += 1;
        }
    }
    let usage = acme
        .admin()
        .get_usage(pb::GetUsageRequest {})
        .await
        .unwrap()
        .into_inner();
    let per_device: BTreeMap<String, (u64, u64)> = usage
        .lines
        .iter()
        .filter(|l| l.dimension == "device")
        .map(|l| (l.name.clone(), (l.produced_units, l.produced_messages)))
        .collect();
    assert_eq!(per_device, expected);
    assert_eq!(expected.len(), 6);
}
