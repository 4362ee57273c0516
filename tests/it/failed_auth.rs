//! SPEC §4, failed authentications: counted per source address and per
//! tenant the credential names (`tq_<tenant>_…`), 20 a minute pass and the
//! 21st is refused for the rest of the minute, timed on the wall clock; one
//! tenant's brute force blocks neither the operator nor the other tenants
//! behind the same address; `x-forwarded-for` counts only from a trusted
//! proxy.

use std::time::Duration;

use tallyq::client::{retry_after, Client};
use tallyq::proto::v1 as pb;
use tonic::Code;

use super::harness::*;
use super::ops::{scrape, value};

/// One produce of `client`, with `x-forwarded-for: forwarded` when given.
async fn produce_from(client: &Client, forwarded: Option<&str>) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(pb::ProduceRequest {
        topic: "t".into(),
        messages: vec![msg("x")],
    });
    if let Some(address) = forwarded {
        request
            .metadata_mut()
            .insert("x-forwarded-for", address.parse().unwrap());
    }
    client.broker().produce(request).await.map(|_| ())
}

/// Makes `n` failed authentications claiming `tenant`; asserts each is a
/// plain UNAUTHENTICATED.
async fn fail(client: &Client, tenant: &str, n: usize, forwarded: Option<&str>) {
    let forged = client
        .with_token(&format!("tq_{tenant}_0000guessing0000"))
        .unwrap();
    for i in 1..=n {
        let err = produce_from(&forged, forwarded).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::Unauthenticated,
            "failure {i} passes as wrong credentials"
        );
    }
}

/// Asserts `status` is the failed-authentication block.
fn assert_blocked(result: Result<(), tonic::Status>) {
    let err = result.expect_err("blocked");
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(
        err.message().contains("failed authentications"),
        "{}",
        err.message()
    );
    let wait = retry_after(&err).expect("retry-after-ms");
    assert!(wait <= Duration::from_secs(60), "{wait:?}");
}

#[tokio::test]
async fn one_tenants_brute_force_blocks_neither_other_tenants_nor_the_operator() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    let globex = server.tenant("globex").await;
    create_topic(&acme, "t", Default::default()).await;
    create_topic(&globex, "t", Default::default()).await;

    // Every client below shares 127.0.0.1, as tenants behind one proxy do.
    fail(&acme, "acme", 20, None).await;
    produce_from(&acme, None)
        .await
        .expect("after the 20th failure acme's valid key still works");
    let forged = acme.with_token("tq_acme_0000guessing0000").unwrap();
    assert_blocked(produce_from(&forged, None).await);
    assert_blocked(produce_from(&acme, None).await);

    // Nobody else is blocked: another tenant, the operator, the billing
    // reader, credentials naming no tenant (a separate count).
    produce_from(&globex, None)
        .await
        .expect("globex keeps working");
    operator
        .operator()
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .expect("the operator keeps working");
    let reader = operator.with_token(BILLING_READER_TOKEN).unwrap();
    reader
        .billing()
        .get_account(pb::GetAccountRequest {
            tenant: "globex".into(),
        })
        .await
        .expect("the billing reader keeps working");
    let garbage = operator.with_token("not-a-key").unwrap();
    let err = produce_from(&garbage, None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // The block runs on the wall clock: moving the manual broker clock an
    // hour (which AdvanceClock still does for the operator) does not end it.
    advance(&operator, 3_600_000).await;
    assert_blocked(produce_from(&acme, None).await);
    assert_eq!(topic_stats(&globex, "t").await.messages, 1);

    // Operators see who is hitting the limit, with a bounded tenant label.
    let text = scrape(&server).await;
    assert!(
        value(
            &text,
            "tallyq_quota_refusals_total",
            &["kind=\"failed_auth\"", "tenant=\"acme\""]
        ) >= 3.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "tallyq_quota_refusals_total",
            &["kind=\"failed_auth\"", "tenant=\"globex\""]
        ),
        0.0
    );
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    // Behind a trusted proxy (the tests' loopback), clients are told apart
    // by the address the proxy forwards.
    let server = TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    fail(&acme, "acme", 20, Some("203.0.113.7")).await;
    let forged = acme.with_token("tq_acme_0000guessing0000").unwrap();
    assert_blocked(produce_from(&forged, Some("203.0.113.7")).await);
    assert_blocked(produce_from(&acme, Some("203.0.113.7")).await);
    produce_from(&acme, Some("203.0.113.8"))
        .await
        .expect("another client behind the proxy is not blocked");
    produce_from(&acme, None)
        .await
        .expect("the proxy's own address is not blocked");
    // A client cannot pick its address by writing hops on the left: the
    // proxy's hop (the rightmost) is the one believed.
    assert_blocked(produce_from(&acme, Some("198.51.100.9, 203.0.113.7")).await);

    // From a peer that is not a trusted proxy the header means nothing.
    let untrusted = TestServer::start().await;
    let acme = untrusted.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    fail(&acme, "acme", 20, Some("203.0.113.7")).await;
    let forged = acme.with_token("tq_acme_0000guessing0000").unwrap();
    assert_blocked(produce_from(&forged, Some("203.0.113.7")).await);
    assert_blocked(produce_from(&acme, Some("203.0.113.8")).await);
    // Read back from another address (every acme request from this one is
    // blocked): nothing refused was stored.
    let secret = create_key(&untrusted.operator().await, "acme", &[3], &[]).await;
    let endpoint = Client::endpoint(&untrusted.address)
        .unwrap()
        .local_address(Some("127.0.0.2".parse().unwrap()));
    let elsewhere = Client::connect_endpoint(endpoint, &secret).await.unwrap();
    assert_eq!(topic_stats(&elsewhere, "t").await.messages, 0);
}

#[tokio::test]
async fn the_block_ends_on_the_wall_clock_under_the_manual_clock() {
    // A short window (the server setting) so the test waits seconds, not a minute.
    let server = TestServer::start_with(|c| {
        c.failed_auth_per_minute = 3;
        c.failed_auth_window_seconds = 5;
    })
    .await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    fail(&acme, "acme", 3, None).await;
    let forged = acme.with_token("tq_acme_0000guessing0000").unwrap();
    let err = produce_from(&forged, None).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    let wait = retry_after(&err).unwrap();
    assert!(wait <= Duration::from_secs(5), "{wait:?}");
    // The manual broker clock stands still (no AdvanceClock); the block ends
    // anyway once the wall-clock window is over.
    advance(&operator, 1).await;
    tokio::time::sleep(wait + Duration::from_millis(200)).await;
    produce_from(&acme, None)
        .await
        .expect("the window ended on the wall clock");
    assert_eq!(topic_stats(&acme, "t").await.messages, 1);
}
