//! Fetch answers hold their delivery credit (issue 13 item 3, SPEC §4:
//! delivery bytes outstanding over all of a tenant's streams and
//! long-polls): what a Fetch delivered counts against the tenant's
//! `max_outstanding_delivery_bytes` until it is acked, nacked, its lock
//! ends, or the subscription is sought or deleted, over any number of
//! connections; a Fetch beyond the limit waits for credit and answers with
//! nothing; another tenant is served meanwhile.

use std::time::Duration;

use tallyq::client::Client;
use tallyq::proto::v1 as pb;

use crate::harness::*;

/// Counted bytes of every message these tests produce.
const MESSAGE: u64 = 10 * 1024;

/// The tenants' limit: two messages fit, a third does not.
const LIMIT: u64 = 25_600;

/// A message of exactly [`MESSAGE`] counted bytes.
fn sized() -> pb::Message {
    pb::Message {
        payload: vec![b'x'; MESSAGE as usize].into(),
        ..Default::default()
    }
}

/// Topic `t` with `messages` messages and subscription `s` (30 s locks).
async fn topic_with(client: &Client, messages: usize) {
    create_topic(client, "t", Default::default()).await;
    create_sub(client, "t", "s", 30).await;
    client
        .produce("t", (0..messages).map(|_| sized()).collect())
        .await
        .unwrap();
}

fn offsets(deliveries: &[pb::Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.offset).collect()
}

#[tokio::test]
async fn unacked_fetches_over_many_connections_stay_within_the_limit_while_another_tenant_is_served(
) {
    let server = TestServer::start().await;
    let hog_secret = delivery_limited_tenant(&server, "hog", LIMIT).await;
    let calm_secret = delivery_limited_tenant(&server, "calm", LIMIT).await;
    let hog = Client::connect(&server.address, &hog_secret).await.unwrap();
    let calm = Client::connect(&server.address, &calm_secret)
        .await
        .unwrap();
    topic_with(&hog, 10).await;
    topic_with(&calm, 2).await;

    // Each Fetch on its own connection; none is acked.
    let mut connections = Vec::new();
    let mut got = Vec::new();
    for _ in 0..4 {
        let c = Client::connect(&server.address, &hog_secret).await.unwrap();
        got.extend(fetch(&c, "t", "s", 10, 200).await);
        connections.push(c);
    }
    assert_eq!(offsets(&got), [0, 1], "delivered beyond the tenant's limit");
    assert_eq!(outstanding_delivery_bytes(&hog).await, 2 * MESSAGE);
    let stats = sub_stats(&hog, "t", "s").await;
    assert_eq!((stats.in_flight, stats.backlog), (2, 8));

    // The other tenant's Fetch is served in full meanwhile.
    let served = fetch(&calm, "t", "s", 10, 1000).await;
    assert_eq!(offsets(&served), [0, 1]);

    // A Fetch waiting for credit gets it once one message is acked, and
    // exactly as much as was freed.
    let waiting = {
        let c = connections[3].clone();
        tokio::spawn(async move { fetch(&c, "t", "s", 10, 30_000).await })
    };
    assert_eq!(ack(&connections[0], "t", "s", vec![0]).await, 1);
    let next = waiting.await.unwrap();
    assert_eq!(offsets(&next), [2], "the freed credit fits one message");
    assert_eq!(outstanding_delivery_bytes(&hog).await, 2 * MESSAGE);
    assert!(fetch(&connections[1], "t", "s", 10, 200).await.is_empty());

    // Acking everything gives all the credit back.
    assert_eq!(ack(&hog, "t", "s", vec![1, 2]).await, 2);
    assert_eq!(outstanding_delivery_bytes(&hog).await, 0);
    assert_eq!(offsets(&fetch(&hog, "t", "s", 10, 1000).await), [3, 4]);
    assert_eq!(
        outstanding_delivery_bytes(&calm).await,
        2 * MESSAGE,
        "tenants are separate"
    );
}

#[tokio::test]
async fn credit_comes_back_on_ack_nack_lock_expiry_seek_and_delete_and_a_redelivery_counts_once() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let secret = delivery_limited_tenant(&server, "acme", LIMIT).await;
    let acme = Client::connect(&server.address, &secret).await.unwrap();
    topic_with(&acme, 6).await;

    // Ack.
    let first = fetch(&acme, "t", "s", 10, 0).await;
    assert_eq!(offsets(&first), [0, 1]);
    assert_eq!(outstanding_delivery_bytes(&acme).await, 2 * MESSAGE);
    assert_eq!(ack(&acme, "t", "s", vec![0, 1]).await, 2);
    assert_eq!(outstanding_delivery_bytes(&acme).await, 0);

    // Nack: the messages are due again, no longer outstanding.
    let second = fetch(&acme, "t", "s", 10, 0).await;
    assert_eq!(offsets(&second), [2, 3]);
    let nacked = acme
        .broker()
        .nack(pb::NackRequest {
            topic: "t".into(),
            subscription: "s".into(),
            offsets: vec![2, 3],
            delay_ms: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .nacked;
    assert_eq!(nacked, 2);
    assert_eq!(outstanding_delivery_bytes(&acme).await, 0);

    // Fetched again: counted once per outstanding delivery.
    let again = fetch(&acme, "t", "s", 10, 0).await;
    assert_eq!(offsets(&again), [2, 3]);
    assert!(again.iter().all(|d| d.delivery_attempt == 2));
    assert_eq!(outstanding_delivery_bytes(&acme).await, 2 * MESSAGE);

    // Lock expiry with nobody connected: the credit comes back at the
    // deadline, not at the next fetch.
    drop(acme);
    advance(&operator, 29_999).await;
    let acme = Client::connect(&server.address, &secret).await.unwrap();
    assert_eq!(
        outstanding_delivery_bytes(&acme).await,
        2 * MESSAGE,
        "locks still run"
    );
    drop(acme);
    advance(&operator, 1).await;
    let acme = Client::connect(&server.address, &secret).await.unwrap();
    assert_eq!(outstanding_delivery_bytes(&acme).await, 0);
    // The redeliveries claim the full credit again, once.
    let third = fetch(&acme, "t", "s", 10, 0).await;
    assert_eq!(offsets(&third), [2, 3]);
    assert!(third.iter().all(|d| d.delivery_attempt == 3));
    assert_eq!(outstanding_delivery_bytes(&acme).await, 2 * MESSAGE);

    // Seek releases every pending message.
    acme.broker()
        .seek(pb::SeekRequest {
            topic: "t".into(),
            subscription: "s".into(),
            position: pb::SeekPosition::Latest as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(outstanding_delivery_bytes(&acme).await, 0);

    // Deleting the subscription releases what its Fetches held.
    create_sub(&acme, "t", "other", 30).await;
    assert_eq!(offsets(&fetch(&acme, "t", "other", 10, 0).await), [0, 1]);
    assert_eq!(outstanding_delivery_bytes(&acme).await, 2 * MESSAGE);
    acme.admin()
        .delete_subscription(pb::DeleteSubscriptionRequest {
            topic: "t".into(),
            name: "other".into(),
        })
        .await
        .unwrap();
    assert_eq!(outstanding_delivery_bytes(&acme).await, 0);

    // Nothing leaked: a Fetch gets the tenant's full credit.
    create_sub(&acme, "t", "last", 30).await;
    assert_eq!(offsets(&fetch(&acme, "t", "last", 10, 0).await), [0, 1]);
}

#[tokio::test]
async fn a_consume_stream_and_fetches_on_one_subscription_share_the_credit_exactly() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let secret = delivery_limited_tenant(&server, "acme", LIMIT).await;
    let acme = Client::connect(&server.address, &secret).await.unwrap();
    topic_with(&acme, 3).await;

    // Fetched, never acked, then their locks end.
    assert_eq!(offsets(&fetch(&acme, "t", "s", 10, 0).await), [0, 1]);
    advance(&operator, 30_000).await;
    assert_eq!(outstanding_delivery_bytes(&acme).await, 0);

    // A stream on the same subscription gets the redeliveries: the stream
    // counts them now, the Fetch no longer does.
    let mut consumer = acme.consume("t", "s", 100, LIMIT).await.unwrap();
    let mut pushed = Vec::new();
    while pushed.len() < 2 {
        let batch = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("the redeliveries were never pushed")
            .unwrap()
            .unwrap();
        pushed.extend(batch);
    }
    assert_eq!(offsets(&pushed), [0, 1]);
    assert_eq!(outstanding_delivery_bytes(&acme).await, 2 * MESSAGE);

    // The stream narrows its window to one message and acks one: the
    // freed credit lets a Fetch have the third message, and the stream's
    // ack of that Fetch delivery frees it too.
    consumer.flow(1, LIMIT).await.unwrap();
    consumer.ack(vec![0]).await.unwrap();
    let mut fetched = Vec::new();
    for _ in 0..100 {
        fetched = fetch(&acme, "t", "s", 10, 1000).await;
        if !fetched.is_empty() {
            break;
        }
    }
    assert_eq!(offsets(&fetched), [2]);
    assert_eq!(outstanding_delivery_bytes(&acme).await, 2 * MESSAGE);
    consumer.ack(vec![1, 2]).await.unwrap();
    for _ in 0..400 {
        if outstanding_delivery_bytes(&acme).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(outstanding_delivery_bytes(&acme).await, 0);
    assert_eq!(sub_stats(&acme, "t", "s").await.in_flight, 0);
}
