//! Responses fit a stock client (SPEC §2): with tonic's generated client at
//! its default 4 MiB decode limit, a default Consume and a large Fetch over
//! 256 KiB messages receive every message, and what is billed as delivered
//! is exactly what was received; pushes a client never took are handed back
//! (due again, not billed).

use std::time::Duration;

use prost::Message as _;
use tallyq::client::Client;
use tallyq::proto::v1 as pb;
use tallyq::proto::v1::broker_client::BrokerClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::billing::{line, usage};
use crate::harness::*;

/// 256 KiB: the largest message of plan `standard`.
const BIG: usize = 256 * 1024;
/// Units of one such message (one per KiB).
const BIG_UNITS: u64 = 256;
/// A stock client's default receive limit.
const STOCK_LIMIT: usize = 4 * 1024 * 1024;

type Stock = BrokerClient<InterceptedService<Channel, Box<AuthFn>>>;
type AuthFn = dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send + Sync;

/// The generated Broker client as any user builds it: default limits (4 MiB
/// decode), only the credential added.
async fn stock_client(server: &TestServer, secret: &str) -> Stock {
    let channel = Client::endpoint(&server.address)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let value: tonic::metadata::MetadataValue<_> = format!("Bearer {secret}").parse().unwrap();
    let auth: Box<AuthFn> = Box::new(move |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
        Ok(request)
    });
    BrokerClient::with_interceptor(channel, auth)
}

/// A tenant with lifted rates, a topic `big` with an at-least-once
/// subscription `s`, `count` messages of 256 KiB in it, and the tenant's
/// key secret.
async fn backlog(server: &TestServer, tenant: &str, count: usize) -> (Client, String) {
    let operator = server.operator().await;
    create_tenant(&operator, tenant).await;
    lift_rate_limits(&operator, tenant).await;
    let secret = create_key(&operator, tenant, &[1, 2, 3], &[]).await;
    let client = operator.with_token(&secret).unwrap();
    create_topic(&client, "big", pb::TopicConfig::default()).await;
    create_sub(&client, "big", "s", 60).await;
    let mut produced = 0;
    while produced < count {
        let batch: Vec<pb::Message> = (produced..count.min(produced + 8))
            .map(|i| pb::Message {
                payload: vec![(i % 251) as u8; BIG].into(),
                ..Default::default()
            })
            .collect();
        produced += batch.len();
        client.produce("big", batch).await.unwrap();
    }
    (client, secret)
}

/// The tenant's delivered units and messages today.
async fn delivered(client: &Client) -> (u64, u64) {
    let lines = usage(client).await;
    let total = line(&lines, "total", "");
    (total.delivered_units, total.delivered_messages)
}

#[tokio::test]
async fn a_default_consume_of_quarter_mebibyte_messages_reaches_a_stock_client_whole() {
    let server = TestServer::start().await;
    let count = 40; // 10 MiB: the old default window in one push was 9 MB
    let (client, secret) = backlog(&server, "acme", count).await;
    let mut broker = stock_client(&server, &secret).await;

    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(pb::ConsumeRequest {
        request: Some(pb::consume_request::Request::Start(pb::ConsumeStart {
            topic: "big".into(),
            subscription: "s".into(),
            // Defaults: 100 messages and the default byte window.
            max_outstanding_messages: 0,
            max_outstanding_bytes: 0,
        })),
    })
    .await
    .unwrap();
    let mut stream = broker
        .consume(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut offsets: Vec<u64> = Vec::new();
    let mut pushes = 0;
    while offsets.len() < count {
        let push = tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .expect("a push within a minute")
            .expect("a push the stock client can decode")
            .expect("the stream stays open");
        pushes += 1;
        assert!(
            push.encoded_len() <= STOCK_LIMIT - 5,
            "{}",
            push.encoded_len()
        );
        let got: Vec<u64> = push.deliveries.iter().map(|d| d.offset).collect();
        for d in &push.deliveries {
            assert_eq!(d.message.as_ref().unwrap().payload.len(), BIG);
            assert_eq!(d.delivery_attempt, 1);
        }
        offsets.extend(&got);
        tx.send(pb::ConsumeRequest {
            request: Some(pb::consume_request::Request::Ack(pb::AckOffsets {
                offsets: got,
            })),
        })
        .await
        .unwrap();
    }
    assert_eq!(offsets, (0..count as u64).collect::<Vec<_>>());
    // A 4 MiB window of 256 KiB messages takes more than one push.
    assert!(pushes > 3, "{pushes} pushes");
    drop(tx);
    drop(stream);
    assert_eq!(
        delivered(&client).await,
        (count as u64 * BIG_UNITS, count as u64)
    );
    assert_eq!(sub_stats(&client, "big", "s").await.backlog, 0);
}

#[tokio::test]
async fn a_large_fetch_never_exceeds_four_mebibytes_and_bills_what_it_returned() {
    let server = TestServer::start().await;
    let count = 40;
    let (client, secret) = backlog(&server, "acme", count).await;
    let mut broker = stock_client(&server, &secret).await;
    let mut received = 0u64;
    let mut calls = 0;
    while received < count as u64 {
        calls += 1;
        assert!(calls < 100, "the backlog did not drain");
        let response = broker
            .fetch(pb::FetchRequest {
                topic: "big".into(),
                subscription: "s".into(),
                max_messages: 1000,
                max_wait_ms: 1000,
            })
            .await
            .expect("a Fetch response the stock client can decode")
            .into_inner();
        assert!(response.encoded_len() <= STOCK_LIMIT - 5);
        assert!(!response.deliveries.is_empty());
        received += response.deliveries.len() as u64;
        let offsets = response.deliveries.iter().map(|d| d.offset).collect();
        assert_eq!(
            ack(&client, "big", "s", offsets).await as usize,
            response.deliveries.len()
        );
    }
    assert_eq!(received, count as u64);
    assert_eq!(delivered(&client).await, (received * BIG_UNITS, received));
}

#[tokio::test]
async fn pushes_a_client_never_took_are_due_again_and_not_billed() {
    let server = TestServer::start().await;
    let count = 100; // 25 MiB
    let (client, secret) = backlog(&server, "acme", count).await;
    let mut broker = stock_client(&server, &secret).await;

    // A consumer with a 24 MiB window that never reads: the transport takes
    // what HTTP/2 flow control lets through, the rest waits in the queue.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::ConsumeRequest {
        request: Some(pb::consume_request::Request::Start(pb::ConsumeStart {
            topic: "big".into(),
            subscription: "s".into(),
            max_outstanding_messages: 1000,
            max_outstanding_bytes: 24 * 1024 * 1024,
        })),
    })
    .await
    .unwrap();
    let stream = broker
        .consume(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let window = (24 * 1024 * 1024 / BIG) as u64;
    let mut claimed = 0;
    for _ in 0..600 {
        claimed = sub_stats(&client, "big", "s").await.in_flight;
        if claimed >= window {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(claimed >= window, "only {claimed} claimed");
    drop(stream);
    drop(tx);
    // The queued pushes come back: fewer messages are locked.
    let mut in_flight = claimed;
    for _ in 0..600 {
        in_flight = sub_stats(&client, "big", "s").await.in_flight;
        if in_flight < claimed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        in_flight < claimed,
        "nothing came back ({in_flight} in flight)"
    );

    // Everything not handed to the transport is delivered again as a first
    // delivery; everything handed to it stays locked (the clock is manual).
    let mut drained = 0u64;
    loop {
        let response = broker
            .fetch(pb::FetchRequest {
                topic: "big".into(),
                subscription: "s".into(),
                max_messages: 1000,
                max_wait_ms: 0,
            })
            .await
            .unwrap()
            .into_inner();
        if response.deliveries.is_empty() {
            break;
        }
        for d in &response.deliveries {
            assert_eq!(d.delivery_attempt, 1, "offset {}", d.offset);
        }
        drained += response.deliveries.len() as u64;
    }
    assert_eq!(in_flight + drained, count as u64);
    // Billed: each message once (the ones taken back were not billed twice).
    assert_eq!(
        delivered(&client).await,
        (count as u64 * BIG_UNITS, count as u64)
    );
}

#[tokio::test]
async fn a_message_limit_above_one_response_is_refused() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    let err = operator
        .operator()
        .update_tenant(pb::UpdateTenantRequest {
            id: "acme".into(),
            set_quota_overrides: [("max_message_bytes".to_string(), 8 * 1024 * 1024)].into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("max_message_bytes may be at most"),
        "{err:?}"
    );
}
