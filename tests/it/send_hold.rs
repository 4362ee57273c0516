//! A Fetch answer keeps its delivery credit until its bytes have left the
//! broker (issue 13 item 3, SPEC §4): an answer the client never reads sits
//! in the HTTP/2 send path, so it stays counted against the tenant's
//! `max_outstanding_delivery_bytes` after its messages' locks ended, and an
//! at-most-once answer stays counted until it is sent, on any stream or
//! connection. Seen from a raw HTTP/2 client (the `h2` crate, the one under
//! tonic) with a small stream window that never gives capacity back, as an
//! attacker would hold it; a reading client is unaffected.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use prost::Message as _;
use tallyq::client::Client;
use tallyq::proto::v1 as pb;
use tokio::net::TcpStream;

use crate::harness::*;

/// Counted bytes of every message these tests produce.
const MESSAGE: u64 = 10 * 1024;

/// The tenants' limit: two messages fit, a third does not.
const LIMIT: u64 = 25_600;

/// The raw client's stream window: far below one answer.
const STREAM_WINDOW: u32 = 1024;

fn sized() -> pb::Message {
    pb::Message {
        payload: vec![b'x'; MESSAGE as usize].into(),
        ..Default::default()
    }
}

/// Topic `t` with `messages` messages and subscription `s` with `lock_seconds`
/// (0: at-most-once).
async fn topic_with(client: &Client, messages: usize, lock_seconds: u32) {
    create_topic(client, "t", Default::default()).await;
    create_sub(client, "t", "s", lock_seconds).await;
    client
        .produce("t", (0..messages).map(|_| sized()).collect())
        .await
        .unwrap();
}

/// Waits until the tenant has `bytes` outstanding (credit goes back once
/// the broker has written the answer out, just after the client has it);
/// fails if it never does.
async fn outstanding_becomes(client: &Client, bytes: u64) {
    for _ in 0..200 {
        if outstanding_delivery_bytes(client).await == bytes {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        outstanding_delivery_bytes(client).await,
        bytes,
        "outstanding bytes"
    );
}

fn offsets(deliveries: &[pb::Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.offset).collect()
}

/// A raw HTTP/2 connection with a [`STREAM_WINDOW`] per stream (and room
/// for many streams on the connection), driven on its own task.
struct Raw {
    send: h2::client::SendRequest<Bytes>,
    address: String,
    driver: tokio::task::JoinHandle<()>,
}

impl Raw {
    async fn connect(server: &TestServer) -> Raw {
        let tcp = TcpStream::connect(server.address.trim_start_matches("http://"))
            .await
            .expect("connect");
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(16 << 20)
            .handshake::<_, Bytes>(tcp)
            .await
            .expect("HTTP/2 handshake");
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Raw {
            send,
            address: server.address.clone(),
            driver,
        }
    }

    /// Sends a Fetch on a new stream; returns its answer's body once the
    /// answer has begun (its headers came), unread.
    async fn fetch(&mut self, secret: &str, max_wait_ms: u32) -> h2::RecvStream {
        let request = http::Request::post(format!("{}/tallyq.v1.Broker/Fetch", self.address))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {secret}"))
            .body(())
            .unwrap();
        let message = pb::FetchRequest {
            topic: "t".into(),
            subscription: "s".into(),
            max_messages: 10,
            max_wait_ms,
        }
        .encode_to_vec();
        let mut frame = vec![0u8];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(&message);
        self.send = self.send.clone().ready().await.expect("a stream slot");
        let (response, mut body) = self.send.send_request(request, false).unwrap();
        body.send_data(Bytes::from(frame), true).unwrap();
        let response = response.await.expect("the Fetch's answer");
        assert_eq!(response.status(), 200);
        assert!(
            response.headers().get("grpc-status").is_none(),
            "the Fetch failed: {response:?}"
        );
        response.into_body()
    }

    /// Closes the connection (the client goes away).
    fn close(self) {
        self.driver.abort();
    }
}

/// Reads an answer's body to its end, giving the capacity back as a client
/// that reads does; returns the deliveries.
async fn read_answer(mut body: h2::RecvStream) -> Vec<pb::Delivery> {
    let mut bytes = BytesMut::new();
    while let Some(data) = body.data().await {
        let data = data.expect("answer data");
        body.flow_control()
            .release_capacity(data.len())
            .expect("release capacity");
        bytes.extend_from_slice(&data);
    }
    let trailers = body.trailers().await.expect("trailers").expect("trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0", "{trailers:?}");
    let mut bytes = bytes.freeze();
    assert!(bytes.len() >= 5, "a gRPC message");
    bytes.advance(1);
    let len = bytes.get_u32() as usize;
    assert_eq!(bytes.len(), len, "one gRPC message");
    pb::FetchResponse::decode(bytes).unwrap().deliveries
}

#[tokio::test]
async fn an_unread_answer_keeps_its_credit_after_its_lock_ended_on_every_stream_and_connection() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let hog_secret = delivery_limited_tenant(&server, "hog", LIMIT).await;
    let calm_secret = delivery_limited_tenant(&server, "calm", LIMIT).await;
    let hog = Client::connect(&server.address, &hog_secret).await.unwrap();
    let calm = Client::connect(&server.address, &calm_secret)
        .await
        .unwrap();
    topic_with(&hog, 10, 30).await;
    topic_with(&calm, 4, 30).await;

    // An answer of two messages (20 KiB) the client does not read: it
    // cannot leave the broker through a 1 KiB window.
    let mut raw = Raw::connect(&server).await;
    let unread = raw.fetch(&hog_secret, 1000).await;
    assert_eq!(outstanding_delivery_bytes(&hog).await, 2 * MESSAGE);

    // The locks end: the messages are due again, but their bytes are still
    // in the broker, so they stay counted.
    advance(&operator, 30_000).await;
    let stats = sub_stats(&hog, "t", "s").await;
    assert_eq!(stats.in_flight, 0, "the locks ended");
    assert_eq!(outstanding_delivery_bytes(&hog).await, 2 * MESSAGE);

    // Nothing beyond the limit: not on a new stream of the same
    // connection, not on another connection.
    let again = read_answer(raw.fetch(&hog_secret, 300).await).await;
    assert!(again.is_empty(), "delivered beyond the limit: {again:?}");
    let other = Client::connect(&server.address, &hog_secret).await.unwrap();
    assert!(fetch(&other, "t", "s", 10, 300).await.is_empty());
    let mut second = Raw::connect(&server).await;
    assert!(read_answer(second.fetch(&hog_secret, 300).await)
        .await
        .is_empty());
    assert_eq!(outstanding_delivery_bytes(&hog).await, 2 * MESSAGE);

    // Another tenant is served meanwhile.
    assert_eq!(offsets(&fetch(&calm, "t", "s", 10, 1000).await), [0, 1]);

    // The client reads the answer: it gets it whole, the credit comes back
    // and Fetch works again (the due messages, redelivered).
    let late = read_answer(unread).await;
    assert_eq!(offsets(&late), [0, 1]);
    outstanding_becomes(&hog, 0).await;
    let redelivered = fetch(&other, "t", "s", 10, 1000).await;
    assert_eq!(offsets(&redelivered), [0, 1]);
    assert!(redelivered.iter().all(|d| d.delivery_attempt == 2));
    assert_eq!(ack(&other, "t", "s", vec![0, 1]).await, 2);
    assert_eq!(outstanding_delivery_bytes(&hog).await, 0);

    // An unread answer on a connection the client then closes: the credit
    // comes back with the connection.
    let unread = second.fetch(&hog_secret, 1000).await;
    assert_eq!(outstanding_delivery_bytes(&hog).await, 2 * MESSAGE);
    advance(&operator, 30_000).await;
    assert_eq!(outstanding_delivery_bytes(&hog).await, 2 * MESSAGE);
    second.close();
    drop(unread);
    outstanding_becomes(&hog, 0).await;
    assert_eq!(offsets(&fetch(&other, "t", "s", 10, 1000).await), [2, 3]);
    raw.close();
}

#[tokio::test]
async fn an_unread_at_most_once_answer_keeps_its_credit_until_it_is_sent() {
    let server = TestServer::start().await;
    let hog_secret = delivery_limited_tenant(&server, "hog", LIMIT).await;
    let hog = Client::connect(&server.address, &hog_secret).await.unwrap();
    topic_with(&hog, 10, 0).await;

    let mut raw = Raw::connect(&server).await;
    let unread = raw.fetch(&hog_secret, 1000).await;
    assert_eq!(
        outstanding_delivery_bytes(&hog).await,
        2 * MESSAGE,
        "an at-most-once answer counts until it is sent"
    );
    // Nothing more while it is unread, on this connection or another.
    assert!(read_answer(raw.fetch(&hog_secret, 300).await)
        .await
        .is_empty());
    assert!(fetch(&hog, "t", "s", 10, 300).await.is_empty());

    // Read: the credit comes back, and the next messages go out.
    assert_eq!(offsets(&read_answer(unread).await), [0, 1]);
    outstanding_becomes(&hog, 0).await;
    assert_eq!(offsets(&fetch(&hog, "t", "s", 10, 1000).await), [2, 3]);
    outstanding_becomes(&hog, 0).await;

    // Unread and the connection closed: it comes back too.
    let unread = raw.fetch(&hog_secret, 1000).await;
    assert_eq!(outstanding_delivery_bytes(&hog).await, 2 * MESSAGE);
    raw.close();
    drop(unread);
    outstanding_becomes(&hog, 0).await;
    assert_eq!(offsets(&fetch(&hog, "t", "s", 10, 1000).await), [6, 7]);
}

#[tokio::test]
async fn a_reading_client_gets_its_credit_back_at_ack_as_before() {
    let server = TestServer::start().await;
    let secret = delivery_limited_tenant(&server, "acme", LIMIT).await;
    let acme = Client::connect(&server.address, &secret).await.unwrap();
    topic_with(&acme, 8, 30).await;

    for round in 0..3u64 {
        let got = fetch(&acme, "t", "s", 10, 1000).await;
        assert_eq!(offsets(&got), [2 * round, 2 * round + 1]);
        assert_eq!(
            outstanding_delivery_bytes(&acme).await,
            2 * MESSAGE,
            "held until acked"
        );
        assert!(fetch(&acme, "t", "s", 10, 0).await.is_empty());
        assert_eq!(ack(&acme, "t", "s", offsets(&got)).await, 2);
        outstanding_becomes(&acme, 0).await;
    }
    // The same over a raw connection that reads its answers.
    let mut raw = Raw::connect(&server).await;
    let read = read_answer(raw.fetch(&secret, 1000).await).await;
    assert_eq!(offsets(&read), [6, 7]);
    assert_eq!(
        outstanding_delivery_bytes(&acme).await,
        2 * MESSAGE,
        "held until acked"
    );
    assert_eq!(ack(&acme, "t", "s", vec![6, 7]).await, 2);
    outstanding_becomes(&acme, 0).await;
    raw.close();
}
