//! Control plane: tenants, topics and subscriptions, with every refusal
//! leaving things as they were.

use tallyq::proto::v1 as pb;
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn tenants_are_created_listed_and_validated() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    let mut op = operator.operator();
    for bad in ["ab", "Acme", "-acme", "acme_1", &"a".repeat(33)] {
        let err = op
            .create_tenant(pb::CreateTenantRequest {
                id: bad.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
    }
    let err = op
        .create_tenant(pb::CreateTenantRequest {
            id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = op
        .create_tenant(pb::CreateTenantRequest {
            id: "newco".into(),
            plan: "platinum".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let tenants = op
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap()
        .into_inner()
        .tenants;
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0].plan, "standard");
    assert_eq!(tenants[0].status, pb::TenantStatus::Active as i32);
    let err = op
        .get_tenant(pb::GetTenantRequest {
            id: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = op
        .create_api_key(pb::CreateApiKeyRequest {
            tenant: "acme".into(),
            scopes: vec![],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = op
        .create_api_key(pb::CreateApiKeyRequest {
            tenant: "acme".into(),
            scopes: vec![9],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = op
        .create_api_key(pb::CreateApiKeyRequest {
            tenant: "nobody".into(),
            scopes: vec![1],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn topic_settings_out_of_range_are_refused() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    let cases = [
        ("bad.name", pb::TopicConfig::default(), "invalid topic name"),
        ("", pb::TopicConfig::default(), "invalid topic name"),
        (
            "t",
            pb::TopicConfig {
                message_expiry_seconds: 29,
                ..Default::default()
            },
            "between 30 and 604800",
        ),
        (
            "t",
            pb::TopicConfig {
                message_expiry_seconds: 604_801,
                ..Default::default()
            },
            "between 30 and 604800",
        ),
        (
            "t",
            pb::TopicConfig {
                max_bytes: 1024 * 1024 * 1024 + 1,
                ..Default::default()
            },
            "1 GiB",
        ),
        (
            "t",
            pb::TopicConfig {
                dedup_window_seconds: 3601,
                ..Default::default()
            },
            "3600",
        ),
        (
            "t",
            pb::TopicConfig {
                overflow_policy: 7,
                ..Default::default()
            },
            "overflow_policy",
        ),
    ];
    for (name, config, needle) in cases {
        let err = acme
            .admin()
            .create_topic(pb::CreateTopicRequest {
                name: name.into(),
                config: Some(config),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{needle}");
        assert!(
            err.message().contains(needle),
            "{needle}: {}",
            err.message()
        );
    }
    let listed = acme
        .admin()
        .list_topics(pb::ListTopicsRequest {})
        .await
        .unwrap();
    assert!(listed.into_inner().topics.is_empty(), "nothing was created");

    let t = create_topic(&acme, "t", Default::default()).await;
    let config = t.config.unwrap();
    assert_eq!(
        (
            config.message_expiry_seconds,
            config.max_bytes,
            config.dedup_window_seconds
        ),
        (86_400, 1024 * 1024 * 1024, 120),
        "plan defaults"
    );
    let err = acme
        .admin()
        .create_topic(pb::CreateTopicRequest {
            name: "t".into(),
            config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn topic_and_subscription_counts_are_limited_by_the_plan() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    for i in 0..5 {
        create_topic(&acme, &format!("t{i}"), Default::default()).await;
    }
    let err = acme
        .admin()
        .create_topic(pb::CreateTopicRequest {
            name: "t5".into(),
            config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("5 topics"), "{}", err.message());
    for i in 0..5 {
        create_sub(&acme, "t0", &format!("s{i}"), 0).await;
    }
    let err = acme
        .admin()
        .create_subscription(pb::CreateSubscriptionRequest {
            topic: "t0".into(),
            name: "s5".into(),
            config: None,
            start: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("5 subscriptions"),
        "{}",
        err.message()
    );

    // Deleting frees the slot; the topic's subscriptions and messages go with it.
    acme.produce("t0", vec![msg("x")]).await.unwrap();
    acme.admin()
        .delete_topic(pb::DeleteTopicRequest { name: "t0".into() })
        .await
        .unwrap();
    create_topic(&acme, "t0", Default::default()).await;
    assert_eq!(topic_stats(&acme, "t0").await.messages, 0);
    let subs = acme
        .admin()
        .list_subscriptions(pb::ListSubscriptionsRequest { topic: "t0".into() })
        .await
        .unwrap()
        .into_inner()
        .subscriptions;
    assert!(subs.is_empty());
}

#[tokio::test]
async fn subscription_settings_are_validated_and_updatable() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_topic(&acme, "dlq", Default::default()).await;
    let create = |name: &str, config: pb::SubscriptionConfig, start: i32| {
        let acme = acme.clone();
        let name = name.to_string();
        async move {
            acme.admin()
                .create_subscription(pb::CreateSubscriptionRequest {
                    topic: "t".into(),
                    name,
                    config: Some(config),
                    start,
                })
                .await
        }
    };
    let lock = |s: u32| pb::SubscriptionConfig {
        lock_seconds: s,
        ..Default::default()
    };
    for (config, needle) in [
        (lock(9), "between 10 and 60"),
        (lock(61), "between 10 and 60"),
        (lock(601), "between 10 and 60"),
        (
            pb::SubscriptionConfig {
                lock_seconds: 10,
                max_delivery_attempts: 3,
                dead_letter_topic: String::new(),
            },
            "dead_letter_topic",
        ),
        (
            pb::SubscriptionConfig {
                lock_seconds: 10,
                max_delivery_attempts: 3,
                dead_letter_topic: "t".into(),
            },
            "different topic",
        ),
    ] {
        let err = create("s", config, 0).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{needle}");
        assert!(
            err.message().contains(needle),
            "{needle}: {}",
            err.message()
        );
    }
    let err = create(
        "s",
        pb::SubscriptionConfig {
            lock_seconds: 10,
            max_delivery_attempts: 3,
            dead_letter_topic: "missing".into(),
        },
        0,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = create("s", lock(10), 9).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = create("bad name", lock(10), 0).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = acme
        .admin()
        .create_subscription(pb::CreateSubscriptionRequest {
            topic: "nope".into(),
            name: "s".into(),
            config: None,
            start: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    create("s", lock(10), 0).await.unwrap();
    let err = create("s", lock(10), 0).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let updated = acme
        .admin()
        .update_subscription(pb::UpdateSubscriptionRequest {
            topic: "t".into(),
            name: "s".into(),
            lock_seconds: Some(60),
            max_delivery_attempts: Some(5),
            dead_letter_topic: Some("dlq".into()),
        })
        .await
        .unwrap()
        .into_inner();
    let config = updated.config.unwrap();
    assert_eq!((config.lock_seconds, config.max_delivery_attempts), (60, 5));
    let err = acme
        .admin()
        .update_subscription(pb::UpdateSubscriptionRequest {
            topic: "t".into(),
            name: "s".into(),
            lock_seconds: Some(5),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let still = acme
        .admin()
        .get_subscription(pb::GetSubscriptionRequest {
            topic: "t".into(),
            name: "s".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        still.config.unwrap().lock_seconds,
        60,
        "a refused update changed nothing"
    );

    acme.admin()
        .delete_subscription(pb::DeleteSubscriptionRequest {
            topic: "t".into(),
            name: "s".into(),
        })
        .await
        .unwrap();
    let err = acme
        .admin()
        .get_subscription(pb::GetSubscriptionRequest {
            topic: "t".into(),
            name: "s".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn topic_update_changes_only_what_is_set() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    let updated = acme
        .admin()
        .update_topic(pb::UpdateTopicRequest {
            name: "t".into(),
            message_expiry_seconds: Some(3600),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(
        (updated.message_expiry_seconds, updated.dedup_window_seconds),
        (3600, 120)
    );
    let err = acme
        .admin()
        .update_topic(pb::UpdateTopicRequest {
            name: "t".into(),
            message_expiry_seconds: Some(10),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = acme
        .admin()
        .update_topic(pb::UpdateTopicRequest {
            name: "missing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn the_system_clock_cannot_be_advanced() {
    let server = TestServer::start_with(|c| c.clock = tallyq::clock::ClockKind::System).await;
    let err = server
        .operator()
        .await
        .operator()
        .advance_clock(pb::AdvanceClockRequest { advance_ms: 1000 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("manual"));
}
