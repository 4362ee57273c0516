//! Authentication, scopes, allow-lists and tenant isolation.

use tallyq::proto::v1 as pb;
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn missing_wrong_and_revoked_credentials_are_unauthenticated() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;

    let anonymous = server.anonymous().await;
    let err = anonymous.produce("t", vec![msg("x")]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let forged = anonymous.with_token("tq_acme_notarealsecret").unwrap();
    let err = forged.produce("t", vec![msg("x")]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = anonymous
        .operator()
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let secret = create_key(&operator, "acme", &[1], &[]).await;
    assert!(secret.starts_with("tq_acme_"));
    let device = operator.with_token(&secret).unwrap();
    device.produce("t", vec![msg("ok")]).await.unwrap();
    let keys = operator
        .operator()
        .list_api_keys(pb::ListApiKeysRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 2);
    let produce_key = keys.iter().find(|k| k.scopes == vec![1]).unwrap();
    operator
        .operator()
        .revoke_api_key(pb::RevokeApiKeyRequest {
            id: produce_key.id.clone(),
        })
        .await
        .unwrap();
    let err = device
        .produce("t", vec![msg("after revoke")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(topic_stats(&acme, "t").await.messages, 1);
}

#[tokio::test]
async fn scopes_and_topic_allow_lists_are_enforced() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "device-7", Default::default()).await;
    create_topic(&acme, "device-8", Default::default()).await;
    create_sub(&acme, "device-7", "s", 0).await;

    let device = operator
        .with_token(&create_key(&operator, "acme", &[1], &["device-7"]).await)
        .unwrap();
    device.produce("device-7", vec![msg("mine")]).await.unwrap();
    let err = device
        .produce("device-8", vec![msg("not mine")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("device-8"));
    let err = device
        .broker()
        .fetch(pb::FetchRequest {
            topic: "device-7".into(),
            subscription: "s".into(),
            max_messages: 1,
            max_wait_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "produce-only key cannot consume"
    );
    let err = device
        .admin()
        .list_topics(pb::ListTopicsRequest {})
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "produce-only key cannot manage"
    );
    let err = device
        .operator()
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "tenant key on the operator service"
    );

    // A manage key limited to one topic lists only that topic.
    let manager = operator
        .with_token(&create_key(&operator, "acme", &[3], &["device-7"]).await)
        .unwrap();
    let topics = manager
        .admin()
        .list_topics(pb::ListTopicsRequest {})
        .await
        .unwrap()
        .into_inner()
        .topics;
    assert_eq!(
        topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["device-7"]
    );
    assert_eq!(topic_stats(&acme, "device-8").await.messages, 0);

    // The operator credential is not a tenant key.
    let err = operator
        .produce("device-7", vec![msg("x")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn no_tenant_reaches_another_tenants_topics_or_subscriptions() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    let globex = server.tenant("globex").await;
    create_topic(&acme, "secret-telemetry", Default::default()).await;
    create_sub(&acme, "secret-telemetry", "s", 0).await;
    acme.produce("secret-telemetry", vec![msg("acme data")])
        .await
        .unwrap();

    // Globex sees the same answer as for a topic that does not exist.
    let err = globex
        .produce("secret-telemetry", vec![msg("intrusion")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = globex
        .broker()
        .fetch(pb::FetchRequest {
            topic: "secret-telemetry".into(),
            subscription: "s".into(),
            max_messages: 10,
            max_wait_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = globex
        .admin()
        .get_topic(pb::GetTopicRequest {
            name: "secret-telemetry".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = globex
        .consume("secret-telemetry", "s", 10, 0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let listed = globex
        .admin()
        .list_topics(pb::ListTopicsRequest {})
        .await
        .unwrap()
        .into_inner()
        .topics;
    assert!(listed.is_empty());

    // Globex may use the same name for its own topic, fully separate.
    create_topic(&globex, "secret-telemetry", Default::default()).await;
    assert_eq!(topic_stats(&globex, "secret-telemetry").await.messages, 0);
    assert_eq!(topic_stats(&acme, "secret-telemetry").await.messages, 1);
}
