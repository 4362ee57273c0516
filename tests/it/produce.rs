//! Produce: atomic batches, offsets, dedup, pipelined streams, refusals.

use std::collections::HashMap;

use tallyq::proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn batch_gets_consecutive_offsets_and_units() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "telemetry", Default::default()).await;

    let big = "x".repeat(1536);
    let reply = acme
        .produce("telemetry", vec![msg("a"), msg(&big), msg("c")])
        .await
        .unwrap();
    let offsets: Vec<u64> = reply.results.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![0, 1, 2]);
    assert_eq!(reply.results[1].units, 2, "1.5 KiB is 2 units");
    assert_eq!(reply.units, 1 + 2 + 1);
    let reply = acme.produce("telemetry", vec![msg("d")]).await.unwrap();
    assert_eq!(reply.results[0].offset, 3);
    let stats = topic_stats(&acme, "telemetry").await;
    assert_eq!(stats.messages, 4);
    assert_eq!(stats.next_offset, 4);
    assert_eq!(stats.bytes, 1 + 1536 + 1 + 1);
}

fn with_dedup(payload: &str, dedup: &str) -> pb::Message {
    pb::Message {
        dedup_id: dedup.into(),
        ..msg(payload)
    }
}

#[tokio::test]
async fn dedup_id_within_window_is_not_stored_twice() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(
        &acme,
        "t",
        pb::TopicConfig {
            dedup_window_seconds: 60,
            ..Default::default()
        },
    )
    .await;

    let first = acme
        .produce(
            "t",
            vec![with_dedup("one", "d-1"), with_dedup("one again", "d-1")],
        )
        .await
        .unwrap();
    assert!(!first.results[0].duplicate);
    assert!(
        first.results[1].duplicate,
        "second in the same batch is a duplicate"
    );
    assert_eq!(first.results[1].offset, first.results[0].offset);
    assert_eq!(first.results[1].units, 0);
    assert_eq!(first.units, 1);

    let again = acme
        .produce("t", vec![with_dedup("retry", "d-1")])
        .await
        .unwrap();
    assert!(again.results[0].duplicate);
    assert_eq!(again.results[0].offset, 0);
    assert_eq!(again.units, 0);
    assert_eq!(topic_stats(&acme, "t").await.messages, 1);

    // After the window the same id is new again.
    advance(&operator, 61_000).await;
    let later = acme
        .produce("t", vec![with_dedup("later", "d-1")])
        .await
        .unwrap();
    assert!(!later.results[0].duplicate);
    assert_eq!(later.results[0].offset, 1);
    assert_eq!(topic_stats(&acme, "t").await.messages, 2);
}

#[tokio::test]
async fn produce_stream_pipelines_and_replies_in_order() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;

    let requests: Vec<pb::ProduceRequest> = (0..50)
        .map(|i| pb::ProduceRequest {
            topic: "t".into(),
            messages: vec![msg(&format!("{i}-a")), msg(&format!("{i}-b"))],
        })
        .collect();
    let mut replies = acme
        .broker()
        .produce_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut expected = 0;
    while let Some(reply) = replies.next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.results[0].offset, expected);
        assert_eq!(reply.results[1].offset, expected + 1);
        expected += 2;
    }
    assert_eq!(expected, 100);
    assert_eq!(topic_stats(&acme, "t").await.messages, 100);
}

#[tokio::test]
async fn produce_stream_ends_with_the_first_refusal() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    let requests = vec![
        pb::ProduceRequest {
            topic: "t".into(),
            messages: vec![msg("ok")],
        },
        pb::ProduceRequest {
            topic: "t".into(),
            messages: vec![],
        },
        pb::ProduceRequest {
            topic: "t".into(),
            messages: vec![msg("never")],
        },
    ];
    let mut replies = acme
        .broker()
        .produce_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replies.next().await.unwrap().unwrap().results[0].offset, 0);
    let err = replies.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(replies.next().await.is_none());
    assert_eq!(topic_stats(&acme, "t").await.messages, 1);
}

#[tokio::test]
async fn invalid_batches_are_refused_whole_and_change_nothing() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    acme.produce("t", vec![msg("keep")]).await.unwrap();

    let too_many_headers: HashMap<String, String> = (0..17)
        .map(|i| (format!("h{i}"), "v".to_string()))
        .collect();
    let huge_header: HashMap<String, String> =
        [("h".to_string(), "v".repeat(4097))].into_iter().collect();
    let cases: Vec<(Vec<pb::Message>, &str)> = vec![
        (vec![], "at least one message"),
        (vec![msg("ok"), msg(&"x".repeat(256 * 1024 + 1))], "256 KiB"),
        ((0..1001).map(|_| msg("m")).collect(), "1000 messages"),
        (
            (0..17).map(|_| msg(&"x".repeat(250 * 1024))).collect(),
            "4 MiB",
        ),
        (
            vec![pb::Message {
                headers: too_many_headers,
                ..msg("m")
            }],
            "16 headers",
        ),
        (
            vec![pb::Message {
                headers: huge_header,
                ..msg("m")
            }],
            "4 KiB",
        ),
        (
            vec![pb::Message {
                device_id: "d".repeat(65),
                ..msg("m")
            }],
            "device_id",
        ),
        (
            vec![pb::Message {
                dedup_id: "d".repeat(129),
                ..msg("m")
            }],
            "dedup_id",
        ),
    ];
    for (messages, needle) in cases {
        let err = acme.produce("t", messages).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{needle}: {err:?}");
        assert!(
            err.message().contains(needle),
            "{needle}: {}",
            err.message()
        );
    }
    let err = acme.produce("nope", vec![msg("m")]).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let stats = topic_stats(&acme, "t").await;
    assert_eq!(
        (stats.messages, stats.next_offset),
        (1, 1),
        "nothing was stored"
    );
}

#[tokio::test]
async fn malformed_protobuf_is_refused_without_effect() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    // A raw HTTP/2 gRPC call whose body is not a valid ProduceRequest.
    let channel = tonic::transport::Endpoint::from_shared(server.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let secret = create_key(&server.operator().await, "acme", &[1], &[]).await;
    let mut request = tonic::Request::new(bytes::Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff]));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {secret}").parse().unwrap());
    let result: Result<tonic::Response<bytes::Bytes>, tonic::Status> = grpc
        .unary(
            request,
            "/tallyq.v1.Broker/Produce".parse().unwrap(),
            RawCodec,
        )
        .await;
    let err = result.unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    assert_eq!(topic_stats(&acme, "t").await.messages, 0);
}

/// A codec that sends bytes as they are (to send malformed protobuf).
#[derive(Clone, Default)]
pub(crate) struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Self::Item,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        use bytes::BufMut;
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, Self::Error> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
