//! The transport's own limits (issue 13 item 3, SPEC §4), seen from a raw
//! HTTP/2 client (the `h2` crate, the one under tonic) as an attacker would
//! use it: the server advertises a cap on concurrent streams per connection
//! in its SETTINGS, and a request that stops sending half-way is ended by
//! the server instead of being held open.

use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::harness::*;

/// A raw HTTP/2 connection to the test server.
async fn connect(
    server: &TestServer,
) -> (
    h2::client::SendRequest<Bytes>,
    h2::client::Connection<TcpStream, Bytes>,
) {
    let addr = server.address.trim_start_matches("http://");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    h2::client::handshake(tcp).await.expect("HTTP/2 handshake")
}

/// A gRPC request's headers for `path`, with `token` as its credential.
fn grpc_request(server: &TestServer, path: &str, token: &str) -> http::Request<()> {
    http::Request::post(format!("{}{path}", server.address))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

#[tokio::test]
async fn the_server_advertises_its_cap_on_concurrent_streams_per_connection() {
    let server = TestServer::start().await;
    let (mut send, mut conn) = connect(&server).await;
    // A health check: its answer comes after the server's SETTINGS.
    let request = grpc_request(&server, "/grpc.health.v1.Health/Check", "");
    let (response, mut body) = send.send_request(request, false).unwrap();
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let response = tokio::select! {
        r = response => r.expect("health answer"),
        c = &mut conn => panic!("the connection ended first: {c:?}"),
    };
    assert_eq!(response.status(), 200);
    assert_eq!(
        conn.max_concurrent_send_streams(),
        128,
        "SETTINGS_MAX_CONCURRENT_STREAMS"
    );
}

#[tokio::test]
async fn a_request_that_stops_sending_half_way_is_ended_by_the_server() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 30).await;
    acme.produce("t", vec![msg("kept")]).await.unwrap();
    let operator = server.operator().await;
    let secret = create_key(&operator, "acme", &[1, 2, 3], &[]).await;

    let (mut send, mut conn) = connect(&server).await;
    let request = grpc_request(&server, "/tallyq.v1.Broker/Fetch", &secret);
    let (response, mut body) = send.send_request(request, false).unwrap();
    // A gRPC frame announcing 100 bytes, of which 3 come; then nothing.
    body.send_data(
        Bytes::from_static(&[0, 0, 0, 0, 100, 0x0a, 0x01, b't']),
        false,
    )
    .unwrap();

    // No timing asserted: the server ends it on its own, well within this.
    let ended = tokio::time::timeout(Duration::from_secs(180), async {
        tokio::select! {
            r = response => r,
            c = &mut conn => panic!("the connection ended instead: {c:?}"),
        }
    })
    .await
    .expect("the server held a half-sent request open for 3 minutes");
    match ended {
        // Answered: a gRPC error, never OK.
        Ok(response) => {
            let status = response
                .headers()
                .get("grpc-status")
                .map(|v| v.to_str().unwrap().to_string());
            assert!(
                status.as_deref().is_some_and(|s| s != "0"),
                "a half-sent request answered {status:?}: {response:?}"
            );
        }
        // Or the stream reset by the server.
        Err(e) => assert!(e.is_reset() || e.is_remote(), "{e:?}"),
    }
    // Nothing was delivered by it.
    let stats = sub_stats(&acme, "t", "s").await;
    assert_eq!((stats.in_flight, stats.backlog), (0, 1));
}
