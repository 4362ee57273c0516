//! Quotas against abuse (SPEC §4): at the limit it passes, one over fails
//! with the documented status, message and metadata, and nothing changed.
//! Rates are driven by the manual clock.

use std::time::Duration;

use tallyq::client::retry_after;
use tallyq::proto::v1 as pb;
use tonic::Code;

use crate::harness::*;

fn kib_messages(n: usize) -> Vec<pb::Message> {
    (0..n).map(|_| msg(&"x".repeat(1024))).collect()
}

#[tokio::test]
async fn produce_rate_refuses_with_retry_after_and_refills_with_the_clock() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    set_overrides(
        &operator,
        "acme",
        &[
            ("produce_units_per_second", 10),
            ("produce_burst_units", 20),
        ],
    )
    .await;
    create_topic(&acme, "t", Default::default()).await;

    // The burst: 20 units pass.
    acme.produce_once("t", kib_messages(20)).await.unwrap();
    let err = acme.produce_once("t", kib_messages(1)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("10 units/s"), "{}", err.message());
    assert_eq!(retry_after(&err), Some(Duration::from_millis(100)));
    assert_eq!(topic_stats(&acme, "t").await.messages, 20, "nothing stored");

    advance(&operator, 100).await;
    acme.produce_once("t", kib_messages(1)).await.unwrap();
    assert!(acme.produce_once("t", kib_messages(1)).await.is_err());

    // Duplicates cost no rate.
    let dup = pb::Message {
        dedup_id: "d".into(),
        ..msg("x")
    };
    advance(&operator, 100).await;
    acme.produce_once("t", vec![dup.clone()]).await.unwrap();
    let again = acme.produce_once("t", vec![dup]).await.unwrap();
    assert!(again.results[0].duplicate);

    // Another tenant is not affected.
    let globex = server.tenant("globex").await;
    create_topic(&globex, "t", Default::default()).await;
    globex.produce_once("t", kib_messages(100)).await.unwrap();
}

#[tokio::test]
async fn the_client_retries_rate_refusals_after_the_hinted_wait() {
    let server = TestServer::start_with(|c| c.clock = tallyq::clock::ClockKind::System).await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    set_overrides(
        &operator,
        "acme",
        &[
            // Five units refill in a second: the refused produce below
            // stays refused on a machine too loaded to send it within 100 ms.
            ("produce_units_per_second", 5),
            ("produce_burst_units", 50),
        ],
    )
    .await;
    create_topic(&acme, "t", Default::default()).await;
    acme.produce_once("t", kib_messages(50)).await.unwrap();
    let err = acme.produce_once("t", kib_messages(5)).await.unwrap_err();
    assert!(retry_after(&err).is_some());
    // The retrying produce waits as told and then succeeds.
    let reply = acme.produce("t", kib_messages(5)).await.unwrap();
    assert_eq!(reply.results.len(), 5);
    assert_eq!(topic_stats(&acme, "t").await.messages, 55);
}

#[tokio::test]
async fn tenant_storage_is_capped_across_topics() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    set_overrides(&operator, "acme", &[("max_tenant_storage_bytes", 3 * 1024)]).await;
    create_topic(&acme, "a", Default::default()).await;
    create_topic(&acme, "b", Default::default()).await;
    acme.produce_once("a", kib_messages(2)).await.unwrap();
    acme.produce_once("b", kib_messages(1)).await.unwrap();
    let err = acme.produce_once("b", vec![msg("1")]).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("tenant storage"),
        "{}",
        err.message()
    );
    assert_eq!(topic_stats(&acme, "b").await.messages, 1);

    // Deleting a topic frees its storage.
    acme.admin()
        .delete_topic(pb::DeleteTopicRequest { name: "a".into() })
        .await
        .unwrap();
    acme.produce_once("b", kib_messages(2)).await.unwrap();
}

#[tokio::test]
async fn concurrent_streams_per_tenant_are_limited() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    set_overrides(&operator, "acme", &[("max_concurrent_streams", 2)]).await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 0).await;
    let first = acme.consume("t", "s", 10, 0).await.unwrap();
    let _second = acme.consume("t", "s", 10, 0).await.unwrap();
    let err = acme.consume("t", "s", 10, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("2 open streams"),
        "{}",
        err.message()
    );

    // Closing one frees its slot (the server notices the stream is gone).
    drop(first);
    let mut reopened = None;
    for _ in 0..100 {
        if let Ok(c) = acme.consume("t", "s", 10, 0).await {
            reopened = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "the slot was freed");
}

#[tokio::test]
async fn control_plane_calls_are_rate_limited() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    set_overrides(&operator, "acme", &[("control_calls_per_second", 3)]).await;
    for _ in 0..3 {
        acme.admin()
            .list_topics(pb::ListTopicsRequest {})
            .await
            .unwrap();
    }
    let err = acme
        .admin()
        .create_topic(pb::CreateTopicRequest {
            name: "t".into(),
            config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("3 calls/s"), "{}", err.message());
    assert!(retry_after(&err).is_some());
    advance(&operator, 1_000).await;
    let topics = acme
        .admin()
        .list_topics(pb::ListTopicsRequest {})
        .await
        .unwrap();
    assert!(
        topics.into_inner().topics.is_empty(),
        "the refused create did nothing"
    );
}

#[tokio::test]
async fn deliveries_are_paced_to_the_topic_rate_without_errors() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    set_overrides(
        &operator,
        "acme",
        &[("consume_units_per_second_per_topic", 10)],
    )
    .await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 0).await;
    acme.produce_once("t", (0..30).map(|i| msg(&i.to_string())).collect())
        .await
        .unwrap();
    assert_eq!(fetch(&acme, "t", "s", 100, 0).await.len(), 10);
    assert_eq!(
        fetch(&acme, "t", "s", 100, 0).await.len(),
        0,
        "paced, not refused"
    );
    let mut consumer = acme.consume("t", "s", 100, 0).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await;
    assert!(waiting.is_err(), "the stream waits for the rate");
    advance(&operator, 1_000).await;
    let batch = consumer.next().await.unwrap().unwrap();
    assert_eq!(batch.len(), 10);
    assert_eq!(batch[0].offset, 10);
}

#[tokio::test]
async fn get_quota_shows_limits_overrides_and_use() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    set_overrides(&operator, "acme", &[("max_topics", 7)]).await;
    create_topic(&acme, "a", Default::default()).await;
    create_topic(&acme, "b", Default::default()).await;
    create_sub(&acme, "a", "s", 0).await;
    acme.produce_once("a", kib_messages(3)).await.unwrap();
    let quota = acme
        .admin()
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(quota.plan, "standard");
    let item = |name: &str| {
        quota
            .quotas
            .iter()
            .find(|q| q.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} listed"))
    };
    assert_eq!((item("max_topics").limit, item("max_topics").used), (7, 2));
    assert_eq!(item("max_subscriptions_per_topic").used, 1);
    assert_eq!(item("max_tenant_storage_bytes").used, 3 * 1024);
    assert_eq!(item("max_tenant_storage_bytes").limit, 5 << 30);
    assert_eq!(item("produce_units_per_second").used, 3);
    assert_eq!(item("max_message_bytes").limit, 256 * 1024);
    assert_eq!(item("max_concurrent_streams").limit, 64);
}

#[tokio::test]
async fn invalid_overrides_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    for (name, value) in [
        ("max_topicz", 1),
        ("max_lock_seconds", 601),
        ("max_topics", 1 << 40),
    ] {
        let err = operator
            .operator()
            .update_tenant(pb::UpdateTenantRequest {
                id: "acme".into(),
                display_name: Some("changed".into()),
                set_quota_overrides: [(name.to_string(), value)].into_iter().collect(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}");
    }
    let tenant = operator
        .operator()
        .get_tenant(pb::GetTenantRequest { id: "acme".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(tenant.quota_overrides.is_empty());
    assert_eq!(tenant.display_name, "Tenant acme");
}

#[tokio::test]
async fn suspension_refuses_the_data_plane_closes_streams_and_resume_restores() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 10).await;
    acme.produce_once("t", vec![msg("before")]).await.unwrap();
    let mut consumer = acme.consume("t", "s", 10, 0).await.unwrap();
    assert_eq!(consumer.next().await.unwrap().unwrap().len(), 1);

    let suspended = operator
        .operator()
        .suspend_tenant(pb::SuspendTenantRequest {
            id: "acme".into(),
            reason: pb::SuspensionReason::Abuse as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(suspended.status, pb::TenantStatus::Suspended as i32);
    let closed = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("the open stream is closed");
    let err = closed.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("abuse"), "{}", err.message());

    let broker = || acme.broker();
    let checks: Vec<tonic::Status> = vec![
        acme.produce_once("t", vec![msg("x")]).await.unwrap_err(),
        broker()
            .fetch(pb::FetchRequest {
                topic: "t".into(),
                subscription: "s".into(),
                max_messages: 1,
                max_wait_ms: 0,
            })
            .await
            .unwrap_err(),
        broker()
            .ack(pb::AckRequest {
                topic: "t".into(),
                subscription: "s".into(),
                offsets: vec![0],
            })
            .await
            .unwrap_err(),
        broker()
            .nack(pb::NackRequest {
                topic: "t".into(),
                subscription: "s".into(),
                offsets: vec![0],
                delay_ms: 0,
            })
            .await
            .unwrap_err(),
        broker()
            .seek(pb::SeekRequest {
                topic: "t".into(),
                subscription: "s".into(),
                position: pb::SeekPosition::Earliest as i32,
                ..Default::default()
            })
            .await
            .unwrap_err(),
        acme.consume("t", "s", 10, 0).await.unwrap_err(),
    ];
    for status in checks {
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains("abuse"));
    }
    // Control plane keeps working; data is kept.
    assert_eq!(topic_stats(&acme, "t").await.messages, 1);
    assert_eq!(sub_stats(&acme, "t", "s").await.in_flight, 1);

    operator
        .operator()
        .resume_tenant(pb::ResumeTenantRequest { id: "acme".into() })
        .await
        .unwrap();
    acme.produce_once("t", vec![msg("after")]).await.unwrap();
    assert_eq!(fetch(&acme, "t", "s", 10, 0).await.len(), 1);
}

#[tokio::test]
async fn bound_devices_produce_only_for_their_tenant_and_rebinds_are_audited() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    let globex = server.tenant("globex").await;
    create_topic(&acme, "t", Default::default()).await;
    create_topic(&globex, "t", Default::default()).await;
    let from_device = |imei: &str| pb::Message {
        device_id: imei.into(),
        ..msg("reading")
    };
    let mut op = operator.operator();
    op.bind_device(pb::BindDeviceRequest {
        device_id: "860000000000001".into(),
        tenant: "acme".into(),
        rebind: false,
    })
    .await
    .unwrap();
    acme.produce_once("t", vec![from_device("860000000000001")])
        .await
        .unwrap();
    let err = globex
        .produce_once("t", vec![msg("ok"), from_device("860000000000001")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(!err.message().contains("acme"), "no other tenant is named");
    assert_eq!(
        topic_stats(&globex, "t").await.messages,
        0,
        "the batch is refused whole"
    );
    globex
        .produce_once("t", vec![from_device("unbound-device")])
        .await
        .unwrap();

    // Moving it needs an explicit rebind.
    let err = op
        .bind_device(pb::BindDeviceRequest {
            device_id: "860000000000001".into(),
            tenant: "globex".into(),
            rebind: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    op.bind_device(pb::BindDeviceRequest {
        device_id: "860000000000001".into(),
        tenant: "globex".into(),
        rebind: true,
    })
    .await
    .unwrap();
    globex
        .produce_once("t", vec![from_device("860000000000001")])
        .await
        .unwrap();
    let err = acme
        .produce_once("t", vec![from_device("860000000000001")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let devices = op
        .list_devices(pb::ListDevicesRequest {
            tenant: "globex".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert_eq!(devices.len(), 1);

    let events = op
        .list_audit_events(pb::ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .events;
    let rebind = events
        .iter()
        .find(|e| e.action == "device.rebind")
        .expect("the rebind is audited");
    assert_eq!(rebind.actor, "operator");
    assert!(
        rebind.detail.contains("from acme to globex"),
        "{}",
        rebind.detail
    );
    assert!(rebind.time_unix_ms > 0);

    op.unbind_device(pb::UnbindDeviceRequest {
        device_id: "860000000000001".into(),
    })
    .await
    .unwrap();
    acme.produce_once("t", vec![from_device("860000000000001")])
        .await
        .unwrap();
}
