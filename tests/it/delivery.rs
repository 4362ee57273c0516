//! Delivery semantics: fan-out, competing consumers, at-least-once and
//! at-most-once, nack, dead letters, seek, flow control.

use std::collections::HashSet;
use std::time::Duration;

use tallyq::proto::v1 as pb;
use tonic::Code;

use crate::harness::*;

async fn produce_n(client: &tallyq::client::Client, topic: &str, n: usize) {
    let messages = (0..n).map(|i| msg(&format!("m{i}"))).collect();
    client.produce(topic, messages).await.unwrap();
}

#[tokio::test]
async fn every_subscription_sees_every_message() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "billing", 0).await;
    create_sub(&acme, "t", "alerts", 30).await;
    produce_n(&acme, "t", 5).await;

    for sub in ["billing", "alerts"] {
        let got = fetch(&acme, "t", sub, 100, 0).await;
        let texts: Vec<String> = got.iter().map(text).collect();
        assert_eq!(texts, vec!["m0", "m1", "m2", "m3", "m4"], "{sub}");
        assert!(got.iter().all(|d| d.delivery_attempt == 1));
    }
}

#[tokio::test]
async fn competing_consumers_share_without_duplicates() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "workers", 30).await;
    const TOTAL: usize = 600;
    for _ in 0..6 {
        produce_n(&acme, "t", 100).await;
    }

    let mut tasks = Vec::new();
    for _ in 0..3 {
        let client = acme.clone();
        tasks.push(tokio::spawn(async move {
            let mut consumer = client.consume("t", "workers", 20, 0).await.unwrap();
            let mut mine = Vec::new();
            loop {
                let next = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
                let Ok(Ok(Some(batch))) = next else { break };
                let offsets: Vec<u64> = batch.iter().map(|d| d.offset).collect();
                mine.extend(offsets.iter().copied());
                consumer.ack(offsets).await.unwrap();
            }
            mine
        }));
    }
    let mut all = Vec::new();
    let mut consumers_with_work = 0;
    for task in tasks {
        let mine = task.await.unwrap();
        if !mine.is_empty() {
            consumers_with_work += 1;
        }
        all.extend(mine);
    }
    let unique: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len(), TOTAL, "no message delivered twice");
    assert_eq!(unique.len(), TOTAL, "every message delivered");
    assert!(consumers_with_work >= 2, "work was shared");
    let stats = sub_stats(&acme, "t", "workers").await;
    assert_eq!((stats.backlog, stats.in_flight), (0, 0));
}

#[tokio::test]
async fn at_least_once_redelivers_after_the_lock_and_on_nack() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 10).await;
    produce_n(&acme, "t", 2).await;

    let first = fetch(&acme, "t", "s", 10, 0).await;
    assert_eq!(first.len(), 2);
    assert_eq!(ack(&acme, "t", "s", vec![1]).await, 1);
    // Still locked: nothing to deliver.
    assert!(fetch(&acme, "t", "s", 10, 0).await.is_empty());
    assert_eq!(sub_stats(&acme, "t", "s").await.in_flight, 1);

    advance(&operator, 10_000).await;
    let again = fetch(&acme, "t", "s", 10, 0).await;
    assert_eq!(again.len(), 1, "only the unacked message comes back");
    assert_eq!(again[0].offset, 0);
    assert_eq!(again[0].delivery_attempt, 2);

    // Nack: redelivered at once, attempt 3.
    let nacked = acme
        .broker()
        .nack(pb::NackRequest {
            topic: "t".into(),
            subscription: "s".into(),
            offsets: vec![0],
            delay_ms: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .nacked;
    assert_eq!(nacked, 1);
    let third = fetch(&acme, "t", "s", 10, 0).await;
    assert_eq!((third[0].offset, third[0].delivery_attempt), (0, 3));

    // Nack with a delay: not before it has passed.
    acme.broker()
        .nack(pb::NackRequest {
            topic: "t".into(),
            subscription: "s".into(),
            offsets: vec![0],
            delay_ms: 5_000,
        })
        .await
        .unwrap();
    assert!(fetch(&acme, "t", "s", 10, 0).await.is_empty());
    advance(&operator, 5_000).await;
    let fourth = fetch(&acme, "t", "s", 10, 0).await;
    assert_eq!(fourth[0].delivery_attempt, 4);
    assert_eq!(ack(&acme, "t", "s", vec![0]).await, 1);
    advance(&operator, 60_000).await;
    assert!(
        fetch(&acme, "t", "s", 10, 0).await.is_empty(),
        "acked stays acked"
    );
}

#[tokio::test]
async fn redeliveries_go_out_before_new_messages() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 10).await;
    produce_n(&acme, "t", 1).await;
    assert_eq!(fetch(&acme, "t", "s", 1, 0).await[0].offset, 0);
    produce_n(&acme, "t", 1).await;
    advance(&operator, 10_000).await;
    let next = fetch(&acme, "t", "s", 1, 0).await;
    assert_eq!((next[0].offset, next[0].delivery_attempt), (0, 2));
}

#[tokio::test]
async fn at_most_once_never_redelivers() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 0).await;
    produce_n(&acme, "t", 3).await;
    assert_eq!(fetch(&acme, "t", "s", 10, 0).await.len(), 3);
    advance(&operator, 3_600_000).await;
    assert!(fetch(&acme, "t", "s", 10, 0).await.is_empty());
    let stats = sub_stats(&acme, "t", "s").await;
    assert_eq!(
        (stats.backlog, stats.in_flight, stats.next_offset),
        (0, 0, 3)
    );
}

#[tokio::test]
async fn messages_over_max_attempts_move_to_the_dead_letter_topic() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "orders", Default::default()).await;
    create_topic(&acme, "orders-dlq", Default::default()).await;
    create_sub(&acme, "orders-dlq", "inspect", 0).await;
    acme.admin()
        .create_subscription(pb::CreateSubscriptionRequest {
            topic: "orders".into(),
            name: "s".into(),
            config: Some(pb::SubscriptionConfig {
                lock_seconds: 10,
                max_delivery_attempts: 2,
                dead_letter_topic: "orders-dlq".into(),
            }),
            start: 0,
        })
        .await
        .unwrap();
    acme.produce("orders", vec![msg("poison"), msg("fine")])
        .await
        .unwrap();

    let first = fetch(&acme, "orders", "s", 10, 0).await;
    assert_eq!(first.len(), 2);
    ack(&acme, "orders", "s", vec![1]).await;
    advance(&operator, 10_000).await;
    assert_eq!(
        fetch(&acme, "orders", "s", 10, 0).await[0].delivery_attempt,
        2
    );
    advance(&operator, 10_000).await;
    assert!(
        fetch(&acme, "orders", "s", 10, 0).await.is_empty(),
        "a third delivery is not made"
    );
    let dead = fetch(&acme, "orders-dlq", "inspect", 10, 0).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(text(&dead[0]), "poison");
    let stats = sub_stats(&acme, "orders", "s").await;
    assert_eq!(
        (stats.dead_lettered, stats.in_flight, stats.backlog),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn seek_by_timestamp_offset_earliest_and_latest() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 10).await;
    produce_n(&acme, "t", 3).await;
    let now = operator
        .operator()
        .advance_clock(pb::AdvanceClockRequest { advance_ms: 1_000 })
        .await
        .unwrap()
        .into_inner()
        .now_unix_ms;
    acme.produce("t", vec![msg("after"), msg("after2")])
        .await
        .unwrap();

    let seek = |position: pb::SeekPosition, offset: u64, ts: i64| {
        let acme = acme.clone();
        async move {
            acme.broker()
                .seek(pb::SeekRequest {
                    topic: "t".into(),
                    subscription: "s".into(),
                    position: position as i32,
                    offset,
                    timestamp_unix_ms: ts,
                })
                .await
                .map(|r| r.into_inner().next_offset)
        }
    };
    // Consume everything, leaving some in flight.
    assert_eq!(fetch(&acme, "t", "s", 10, 0).await.len(), 5);

    assert_eq!(seek(pb::SeekPosition::Timestamp, 0, now).await.unwrap(), 3);
    let got = fetch(&acme, "t", "s", 10, 0).await;
    assert_eq!(
        got.iter().map(text).collect::<Vec<_>>(),
        vec!["after", "after2"]
    );
    assert!(
        got.iter().all(|d| d.delivery_attempt == 1),
        "seek released the locks"
    );

    assert_eq!(seek(pb::SeekPosition::Offset, 1, 0).await.unwrap(), 1);
    assert_eq!(fetch(&acme, "t", "s", 1, 0).await[0].offset, 1);
    assert_eq!(seek(pb::SeekPosition::Earliest, 0, 0).await.unwrap(), 0);
    assert_eq!(fetch(&acme, "t", "s", 1, 0).await[0].offset, 0);
    assert_eq!(seek(pb::SeekPosition::Latest, 0, 0).await.unwrap(), 5);
    assert!(fetch(&acme, "t", "s", 10, 0).await.is_empty());
    let err = seek(pb::SeekPosition::Unspecified, 0, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn new_subscription_starts_at_earliest_unless_told_latest() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    produce_n(&acme, "t", 2).await;
    create_sub(&acme, "t", "from-start", 0).await;
    acme.admin()
        .create_subscription(pb::CreateSubscriptionRequest {
            topic: "t".into(),
            name: "from-now".into(),
            config: None,
            start: pb::StartPosition::Latest as i32,
        })
        .await
        .unwrap();
    produce_n(&acme, "t", 1).await;
    assert_eq!(fetch(&acme, "t", "from-start", 10, 0).await.len(), 3);
    let late = fetch(&acme, "t", "from-now", 10, 0).await;
    assert_eq!(late.iter().map(|d| d.offset).collect::<Vec<_>>(), vec![2]);
}

#[tokio::test]
async fn consume_stream_pushes_no_more_than_its_credit() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "slow", 30).await;
    for _ in 0..10 {
        produce_n(&acme, "t", 100).await;
    }
    let mut consumer = acme.consume("t", "slow", 10, 0).await.unwrap();
    let mut received = Vec::new();
    while received.len() < 10 {
        received.extend(consumer.next().await.unwrap().unwrap());
    }
    assert_eq!(received.len(), 10);
    // Without acks nothing more arrives, however large the backlog.
    let more = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(more.is_err(), "pushed beyond the credit: {more:?}");
    let stats = sub_stats(&acme, "t", "slow").await;
    assert_eq!((stats.in_flight, stats.backlog), (10, 990));

    // An ack of 5 frees exactly 5 more.
    consumer
        .ack(received.iter().take(5).map(|d| d.offset).collect())
        .await
        .unwrap();
    let mut next = Vec::new();
    while next.len() < 5 {
        next.extend(consumer.next().await.unwrap().unwrap());
    }
    assert_eq!(next.len(), 5);
    assert_eq!(next[0].offset, 10);
    let more = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(more.is_err());

    // A byte window of one message's size: one at a time.
    consumer.flow(100, 1).await.unwrap();
    consumer
        .ack(
            received
                .iter()
                .skip(5)
                .chain(next.iter())
                .map(|d| d.offset)
                .collect(),
        )
        .await
        .unwrap();
    let one = consumer.next().await.unwrap().unwrap();
    assert_eq!(one.len(), 1);
    let more = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(more.is_err());
}

#[tokio::test]
async fn consume_stream_redelivers_nacked_messages() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 30).await;
    produce_n(&acme, "t", 1).await;
    let mut consumer = acme.consume("t", "s", 10, 0).await.unwrap();
    let first = consumer.next().await.unwrap().unwrap();
    assert_eq!(first[0].delivery_attempt, 1);
    consumer.nack(vec![0], 0).await.unwrap();
    let second = consumer.next().await.unwrap().unwrap();
    assert_eq!((second[0].offset, second[0].delivery_attempt), (0, 2));
}

#[tokio::test]
async fn fetch_long_polls_until_a_message_arrives() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 0).await;
    let waiter = {
        let acme = acme.clone();
        tokio::spawn(async move { fetch(&acme, "t", "s", 10, 10_000).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    produce_n(&acme, "t", 1).await;
    let got = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("fetch answered when the message arrived")
        .unwrap();
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn consume_refuses_unknown_subscriptions_and_bad_first_message() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    let err = acme.consume("t", "missing", 10, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = acme
        .broker()
        .consume(tokio_stream::iter(vec![pb::ConsumeRequest {
            request: Some(pb::consume_request::Request::Ack(pb::AckOffsets {
                offsets: vec![1],
            })),
        }]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}
