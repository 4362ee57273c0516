//! Retention: expiry and the size cap, counted, never silently lost.

use tallyq::proto::v1 as pb;
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn expired_messages_are_removed_counted_and_skipped() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(
        &acme,
        "t",
        pb::TopicConfig {
            message_expiry_seconds: 30,
            ..Default::default()
        },
    )
    .await;
    create_sub(&acme, "t", "s", 10).await;
    acme.produce("t", vec![msg("old1"), msg("old2")])
        .await
        .unwrap();
    // One of them is in flight when it expires.
    assert_eq!(fetch(&acme, "t", "s", 1, 0).await.len(), 1);
    advance(&operator, 20_000).await;
    acme.produce("t", vec![msg("young")]).await.unwrap();
    advance(&operator, 10_000).await;

    let stats = topic_stats(&acme, "t").await;
    assert_eq!(stats.expired_messages, 2);
    assert_eq!((stats.messages, stats.first_offset), (1, 2));
    let got = fetch(&acme, "t", "s", 10, 0).await;
    assert_eq!(got.iter().map(text).collect::<Vec<_>>(), vec!["young"]);
    assert_eq!(ack(&acme, "t", "s", vec![got[0].offset]).await, 1);
    advance(&operator, 10_000).await;
    assert!(
        fetch(&acme, "t", "s", 10, 0).await.is_empty(),
        "the expired in-flight message is not redelivered"
    );
}

#[tokio::test]
async fn over_the_size_cap_the_oldest_are_reclaimed() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(
        &acme,
        "t",
        pb::TopicConfig {
            max_bytes: 3000,
            ..Default::default()
        },
    )
    .await;
    create_sub(&acme, "t", "s", 0).await;
    let kb = "x".repeat(1000);
    for _ in 0..3 {
        acme.produce("t", vec![msg(&kb)]).await.unwrap();
    }
    acme.produce("t", vec![msg(&kb)]).await.unwrap();
    let stats = topic_stats(&acme, "t").await;
    assert_eq!(stats.reclaimed_messages, 1);
    assert_eq!(
        (stats.messages, stats.bytes, stats.first_offset),
        (3, 3000, 1)
    );
    let offsets: Vec<u64> = fetch(&acme, "t", "s", 10, 0)
        .await
        .iter()
        .map(|d| d.offset)
        .collect();
    assert_eq!(offsets, vec![1, 2, 3]);
}

#[tokio::test]
async fn a_full_topic_that_refuses_produce_changes_nothing() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(
        &acme,
        "t",
        pb::TopicConfig {
            max_bytes: 2000,
            overflow_policy: pb::OverflowPolicy::RefuseProduce as i32,
            ..Default::default()
        },
    )
    .await;
    let kb = "x".repeat(1000);
    acme.produce("t", vec![msg(&kb), msg(&kb)]).await.unwrap();
    let err = acme.produce("t", vec![msg("one more")]).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("full"), "{}", err.message());
    let stats = topic_stats(&acme, "t").await;
    assert_eq!(
        (stats.messages, stats.reclaimed_messages, stats.next_offset),
        (2, 0, 2)
    );
}

/// Bytes of the files directly in `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[tokio::test]
async fn expired_messages_give_their_disk_space_back() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    lift_rate_limits(&operator, "acme").await;
    create_topic(
        &acme,
        "t",
        pb::TopicConfig {
            message_expiry_seconds: 60,
            ..Default::default()
        },
    )
    .await;
    // About 80 MB: more than one 64 MiB segment file.
    let payload = "x".repeat(200 * 1024);
    for _ in 0..50 {
        let batch = (0..8).map(|_| msg(&payload)).collect();
        acme.produce("t", batch).await.unwrap();
    }
    let segments = server.data_dir.join("segments");
    let full = dir_bytes(&segments);
    assert!(full > 80_000_000, "{full} bytes in segments");

    advance(&operator, 61_000).await;
    let stats = topic_stats(&acme, "t").await;
    assert_eq!((stats.messages, stats.expired_messages), (0, 400));
    let left = dir_bytes(&segments);
    assert!(
        left < full - 60_000_000,
        "the sealed segment was deleted: {full} -> {left} bytes"
    );
}
