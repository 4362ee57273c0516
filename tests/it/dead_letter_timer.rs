//! Dead letters move on time (issue 13 item 5, SPEC §2): a message over its
//! subscription's max delivery attempts moves to the dead-letter topic at its
//! last lock deadline with nobody connected and nobody fetching, under the
//! manual clock (AdvanceClock) and under the system clock.

use std::time::Duration;

use tallyq::client::Client;
use tallyq::clock::ClockKind;
use tallyq::proto::v1 as pb;

use crate::harness::*;

/// Topic `orders` with subscription `s` (lock `lock_seconds`, one delivery
/// allowed, dead letters to `orders-dlq`), and one message delivered once.
async fn one_message_delivered_once(client: &Client, lock_seconds: u32) {
    create_topic(client, "orders", Default::default()).await;
    create_topic(client, "orders-dlq", Default::default()).await;
    client
        .admin()
        .create_subscription(pb::CreateSubscriptionRequest {
            topic: "orders".into(),
            name: "s".into(),
            config: Some(pb::SubscriptionConfig {
                lock_seconds,
                max_delivery_attempts: 1,
                dead_letter_topic: "orders-dlq".into(),
            }),
            start: 0,
        })
        .await
        .unwrap();
    client.produce("orders", vec![msg("poison")]).await.unwrap();
    let first = fetch(client, "orders", "s", 10, 0).await;
    assert_eq!(first.len(), 1);
}

#[tokio::test]
async fn a_dead_letter_moves_at_its_deadline_with_nobody_connected_under_the_manual_clock() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    one_message_delivered_once(&acme, 10).await;

    advance(&operator, 9_999).await;
    assert_eq!(
        topic_stats(&acme, "orders-dlq").await.messages,
        0,
        "lock still running"
    );
    // The deadline passes; AdvanceClock answers once what it made due is done.
    advance(&operator, 1).await;
    assert_eq!(topic_stats(&acme, "orders-dlq").await.messages, 1);
    let stats = sub_stats(&acme, "orders", "s").await;
    assert_eq!(
        (stats.dead_lettered, stats.in_flight, stats.backlog),
        (1, 0, 0)
    );
    // The consumer that comes back later finds it moved, not redelivered.
    assert!(fetch(&acme, "orders", "s", 10, 0).await.is_empty());
    create_sub(&acme, "orders-dlq", "inspect", 0).await;
    let dead = fetch(&acme, "orders-dlq", "inspect", 10, 0).await;
    assert_eq!(dead.iter().map(text).collect::<Vec<_>>(), ["poison"]);
}

#[tokio::test]
async fn a_dead_letter_moves_at_its_deadline_with_nobody_connected_under_the_system_clock() {
    let server = TestServer::start_with(|c| c.clock = ClockKind::System).await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    // A one-second lock, so the test waits about a second, not ten.
    set_overrides(&operator, "acme", &[("min_lock_seconds", 1)]).await;
    one_message_delivered_once(&acme, 1).await;

    // Nobody fetches or consumes from here on: the timer alone moves it.
    let mut moved = 0;
    for _ in 0..100 {
        moved = topic_stats(&acme, "orders-dlq").await.messages;
        if moved == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(moved, 1, "the dead letter never moved without a consumer");
    assert_eq!(sub_stats(&acme, "orders", "s").await.dead_lettered, 1);
}
