//! Memory a tenant can hold, exactly (issue 13 item 3, SPEC §2 and §4): byte
//! credit never above a stream's window, delivery bytes outstanding bounded
//! per tenant over all its streams and fetches (a window above the limit
//! refused, credit beyond it waiting), and Fetch long-polls counted as
//! streams against the per-tenant stream quota.

use std::time::Duration;

use tallyq::client::{Client, Consumer};
use tallyq::proto::v1 as pb;
use tonic::Code;

use crate::harness::*;

/// A message of exactly `bytes` counted bytes (payload only).
fn sized(bytes: usize) -> pb::Message {
    pb::Message {
        payload: vec![b'x'; bytes].into(),
        ..Default::default()
    }
}

/// Everything pushed within `quiet` of the previous push.
async fn drain(consumer: &mut Consumer, quiet: Duration) -> Vec<pb::Delivery> {
    let mut got = Vec::new();
    while let Ok(Ok(Some(batch))) = tokio::time::timeout(quiet, consumer.next()).await {
        got.extend(batch);
    }
    got
}

/// Waits (bounded) until `expected` pushes have arrived, then for anything
/// beyond them until the stream is quiet: what a loaded machine delays still
/// arrives, and what should never come is still seen if it comes.
async fn pushes(consumer: &mut Consumer, expected: usize) -> Vec<pb::Delivery> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < expected {
        match tokio::time::timeout_at(deadline, consumer.next()).await {
            Ok(Ok(Some(batch))) => got.extend(batch),
            other => panic!("{} of {expected} pushes arrived: {other:?}", got.len()),
        }
    }
    got.extend(drain(consumer, Duration::from_millis(500)).await);
    got
}

/// A tenant whose rates do not bind (the manual clock never refills a
/// bucket), with `overrides` besides.
async fn tenant_with(server: &TestServer, id: &str, overrides: &[(&str, u64)]) -> Client {
    let acme = server.tenant(id).await;
    let operator = server.operator().await;
    let mut all = vec![
        ("produce_units_per_second", 1_000_000_000),
        ("produce_burst_units", 1_000_000_000),
        ("consume_units_per_second_per_topic", 1_000_000_000),
        ("control_calls_per_second", 1_000_000),
    ];
    all.extend_from_slice(overrides);
    set_overrides(&operator, id, &all).await;
    acme
}

/// What the tenant's GetQuota says it uses of `name`.
async fn quota_used(client: &Client, name: &str) -> u64 {
    let quotas = client
        .admin()
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner()
        .quotas;
    quotas
        .iter()
        .find(|q| q.name == name)
        .unwrap_or_else(|| panic!("no quota {name}"))
        .used
}

#[tokio::test]
async fn byte_credit_is_exact_and_a_larger_message_goes_alone() {
    let server = TestServer::start().await;
    let acme = tenant_with(&server, "acme", &[]).await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 30).await;
    acme.produce("t", (0..5).map(|_| sized(10 * 1024)).collect())
        .await
        .unwrap();

    // 25,600 bytes of credit: two 10 KiB messages (20,480), never a third.
    let mut consumer = acme.consume("t", "s", 100, 25_600).await.unwrap();
    let first = pushes(&mut consumer, 2).await;
    assert_eq!(first.len(), 2, "pushed beyond the byte window");
    let stats = sub_stats(&acme, "t", "s").await;
    assert_eq!((stats.in_flight, stats.backlog), (2, 3));

    // Acking one frees 10 KiB: exactly one more fits.
    consumer.ack(vec![first[0].offset]).await.unwrap();
    let second = pushes(&mut consumer, 1).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].offset, 2);

    // A window smaller than one message: it goes out alone once nothing
    // else is outstanding, and nothing joins it.
    consumer.flow(100, 1000).await.unwrap();
    consumer
        .ack(vec![first[1].offset, second[0].offset])
        .await
        .unwrap();
    let alone = pushes(&mut consumer, 1).await;
    assert_eq!(
        alone.len(),
        1,
        "a larger message goes alone, and only alone"
    );
    assert_eq!(alone[0].offset, 3);
    assert_eq!(sub_stats(&acme, "t", "s").await.in_flight, 1);
}

#[tokio::test]
async fn a_window_above_the_tenant_limit_is_refused_with_the_limit_named() {
    let server = TestServer::start().await;
    let acme = tenant_with(&server, "acme", &[]).await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 30).await;
    acme.produce("t", vec![msg("a")]).await.unwrap();

    let err = acme
        .consume("t", "s", 100, 64 * 1024 * 1024 + 1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(
        err.message().contains("max_outstanding_delivery_bytes")
            && err.message().contains("64 MiB"),
        "{}",
        err.message()
    );
    assert_eq!(
        sub_stats(&acme, "t", "s").await.in_flight,
        0,
        "nothing delivered"
    );
    assert_eq!(quota_used(&acme, "max_concurrent_streams").await, 0);

    // The largest window allowed opens; a Flow above the limit ends the
    // stream with the same refusal.
    let mut consumer = acme.consume("t", "s", 100, 64 * 1024 * 1024).await.unwrap();
    assert_eq!(consumer.next().await.unwrap().unwrap().len(), 1);
    consumer.flow(100, 1 << 40).await.unwrap();
    let err = loop {
        match consumer.next().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without the refusal"),
            Err(status) => break status,
        }
    };
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("max_outstanding_delivery_bytes"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn credit_beyond_the_tenant_limit_waits_for_another_stream_to_ack() {
    let server = TestServer::start().await;
    let acme = tenant_with(
        &server,
        "acme",
        &[("max_outstanding_delivery_bytes", 25_600)],
    )
    .await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "first", 30).await;
    create_sub(&acme, "t", "second", 30).await;
    acme.produce("t", vec![sized(10 * 1024), sized(10 * 1024)])
        .await
        .unwrap();

    // The first stream holds 20 KiB of the tenant's 25,600 bytes.
    let mut first = acme.consume("t", "first", 100, 25_600).await.unwrap();
    let got = pushes(&mut first, 2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(
        quota_used(&acme, "max_outstanding_delivery_bytes").await,
        20_480
    );

    // The second stream's own window would allow both, the tenant's pool
    // does not: its pushes wait, nothing is claimed for it.
    let mut second = acme.consume("t", "second", 100, 25_600).await.unwrap();
    let held = drain(&mut second, Duration::from_millis(500)).await;
    assert!(
        held.is_empty(),
        "pushed beyond the tenant's limit: {held:?}"
    );
    let stats = sub_stats(&acme, "t", "second").await;
    assert_eq!((stats.in_flight, stats.backlog), (0, 2));

    // Once the first stream acks, the credit goes to the second.
    first
        .ack(got.iter().map(|d| d.offset).collect())
        .await
        .unwrap();
    let mut released = Vec::new();
    while released.len() < 2 {
        let batch = tokio::time::timeout(Duration::from_secs(10), second.next())
            .await
            .expect("the held credit was never released")
            .unwrap()
            .unwrap();
        released.extend(batch);
    }
    assert_eq!(
        released.iter().map(|d| d.offset).collect::<Vec<_>>(),
        [0, 1]
    );

    // A Fetch draws from the same pool: with it full, it waits and
    // returns nothing, and the message stays undelivered.
    create_sub(&acme, "t", "polled", 30).await;
    assert!(fetch(&acme, "t", "polled", 10, 300).await.is_empty());
    assert_eq!(sub_stats(&acme, "t", "polled").await.backlog, 2);
    drop(second);
    for _ in 0..200 {
        if quota_used(&acme, "max_outstanding_delivery_bytes").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(fetch(&acme, "t", "polled", 10, 1000).await.len(), 2);
}

#[tokio::test]
async fn long_polls_count_as_streams_and_the_65th_is_refused() {
    let server = TestServer::start().await;
    let acme = tenant_with(&server, "acme", &[]).await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 30).await;
    create_sub(&acme, "t", "p", 30).await;

    // 60 Consume streams and 4 Fetch long-polls waiting on an empty topic.
    let mut streams = Vec::new();
    for _ in 0..60 {
        streams.push(acme.consume("t", "s", 10, 0).await.unwrap());
    }
    let mut polls = Vec::new();
    for _ in 0..4 {
        let client = acme.clone();
        polls.push(tokio::spawn(async move {
            client
                .broker()
                .fetch(pb::FetchRequest {
                    topic: "t".into(),
                    subscription: "p".into(),
                    max_messages: 1,
                    max_wait_ms: 30_000,
                })
                .await
        }));
    }
    for _ in 0..400 {
        if quota_used(&acme, "max_concurrent_streams").await == 64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(quota_used(&acme, "max_concurrent_streams").await, 64);

    // The 65th, a long-poll or a stream, is refused.
    let err = acme
        .broker()
        .fetch(pb::FetchRequest {
            topic: "t".into(),
            subscription: "s".into(),
            max_messages: 1,
            max_wait_ms: 1000,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("64 open streams"),
        "{}",
        err.message()
    );
    let err = acme.consume("t", "s", 10, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);

    // Messages end the long-polls (one each); every slot is free again.
    drop(streams);
    acme.produce("t", (0..4).map(|i| msg(&format!("m{i}"))).collect())
        .await
        .unwrap();
    for poll in polls {
        let got = poll.await.unwrap().unwrap().into_inner().deliveries;
        assert_eq!(got.len(), 1);
    }
    for _ in 0..400 {
        if quota_used(&acme, "max_concurrent_streams").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(quota_used(&acme, "max_concurrent_streams").await, 0);
    assert_eq!(
        fetch(&acme, "t", "p", 10, 0).await.len(),
        0,
        "all four taken"
    );
}
