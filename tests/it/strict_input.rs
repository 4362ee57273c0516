//! Bad input gets a clear INVALID_ARGUMENT and changes nothing: a month is
//! exactly YYYY-MM (and a day YYYY-MM-DD), and a ProduceStream frame that does
//! not decode ends the stream saying which batch was the last stored.

use prost::Message;
use tallyq::proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::Code;

use super::harness::*;
use super::produce::RawCodec;

#[tokio::test]
async fn months_and_days_are_parsed_strictly() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    let statement = |month: &str| {
        let acme = acme.clone();
        let month = month.to_string();
        async move {
            acme.billing()
                .get_statement(pb::GetStatementRequest {
                    tenant: String::new(),
                    month,
                })
                .await
        }
    };
    let good = statement("2026-01").await.unwrap().into_inner();
    assert_eq!(good.month, "2026-01");
    for bad in [
        "26-01",
        "2026-1",
        "+2026-01",
        "2026-13",
        "2026-00",
        "2026-01-01",
        " 2026-01",
    ] {
        let err = statement(bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
        assert!(
            err.message().contains("YYYY-MM"),
            "{bad:?}: {}",
            err.message()
        );
    }
    for bad in ["2026-1-01", "+2026-01-01", "26-01-01"] {
        let err = operator
            .billing()
            .settle(pb::SettleRequest {
                through_day: bad.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
    }
}

#[tokio::test]
async fn an_undecodable_produce_stream_frame_ends_the_stream_naming_the_last_stored_batch() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    let secret = create_key(&server.operator().await, "acme", &[1], &[]).await;
    let batch = |text: &str| -> bytes::Bytes {
        pb::ProduceRequest {
            topic: "t".into(),
            messages: vec![msg(text)],
        }
        .encode_to_vec()
        .into()
    };
    // Two good batches, a frame that is not a ProduceRequest, one more good one.
    let frames = vec![
        batch("one"),
        batch("two"),
        bytes::Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff]),
        batch("after"),
    ];
    let channel = tonic::transport::Endpoint::from_shared(server.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(tokio_stream::iter(frames));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {secret}").parse().unwrap());
    let mut replies = grpc
        .streaming(
            request,
            "/tallyq.v1.Broker/ProduceStream".parse().unwrap(),
            RawCodec,
        )
        .await
        .unwrap()
        .into_inner();
    for _ in ["one", "two"] {
        let reply = replies.next().await.unwrap().unwrap();
        let reply = pb::ProduceResponse::decode(reply).unwrap();
        assert_eq!(
            reply.results.len(),
            1,
            "each good batch before it is answered"
        );
    }
    let err = replies.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(err.message().contains("frame 3"), "{}", err.message());
    assert!(
        err.message().contains("last stored batch is batch 2"),
        "{}",
        err.message()
    );
    assert!(replies.next().await.is_none(), "the stream ended");
    let stats = topic_stats(&acme, "t").await;
    assert_eq!(stats.messages, 2, "nothing after the bad frame was stored");
}
