//! SPEC §3 "Scopes, whole", table-driven: every RPC of the four services is
//! called with every credential (the operator, the billing reader, and a
//! tenant key of every non-empty scope set, with and without a topic
//! allow-list), on a topic the allow-list names and on one it does not, and
//! each answer is checked against the table below, written from the SPEC:
//!
//! - `produce` reaches Produce and ProduceStream; `consume` reaches Consume,
//!   Fetch, Ack, Nack, Seek: the data plane only;
//! - `manage` reaches topics, subscriptions, quotas, usage, export (Admin) and
//!   the tenant's billing reads (account, statement, its ledger entries);
//! - a key's topic allow-list limits everything it sees: a request naming
//!   another topic is refused, and a billing read (the whole tenant's money)
//!   needs a key without a list;
//! - the operator credential runs the Operator service and settles; the
//!   billing reader reads every tenant's billing and nothing else.
//!
//! Denied means PERMISSION_DENIED; allowed means any other answer but
//! UNAUTHENTICATED (most calls succeed; some are built to answer NOT_FOUND or
//! ALREADY_EXISTS so that the run changes nothing that matters).

use tallyq::client::Client;
use tallyq::proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::Code;

use super::harness::*;

/// Who may call an RPC, per SPEC §3.
#[derive(Clone, Copy, Debug, PartialEq)]
enum May {
    /// A tenant key with `produce`.
    Produce,
    /// A tenant key with `consume`.
    Consume,
    /// A tenant key with `manage`.
    Manage,
    /// The operator, the billing reader, or a `manage` key without a topic list.
    BillingRead,
    /// The operator alone.
    Operator,
}

/// Every RPC, who may call it, and whether it names a topic.
const TABLE: &[(&str, May, bool)] = &[
    ("Broker/Produce", May::Produce, true),
    ("Broker/ProduceStream", May::Produce, true),
    ("Broker/Consume", May::Consume, true),
    ("Broker/Fetch", May::Consume, true),
    ("Broker/Ack", May::Consume, true),
    ("Broker/Nack", May::Consume, true),
    ("Broker/Seek", May::Consume, true),
    ("Admin/ExportData", May::Manage, false),
    ("Admin/GetUsage", May::Manage, false),
    ("Admin/GetQuota", May::Manage, false),
    ("Admin/CreateTopic", May::Manage, true),
    ("Admin/GetTopic", May::Manage, true),
    ("Admin/ListTopics", May::Manage, false),
    ("Admin/UpdateTopic", May::Manage, true),
    ("Admin/DeleteTopic", May::Manage, true),
    ("Admin/CreateSubscription", May::Manage, true),
    ("Admin/GetSubscription", May::Manage, true),
    ("Admin/ListSubscriptions", May::Manage, true),
    ("Admin/UpdateSubscription", May::Manage, true),
    ("Admin/DeleteSubscription", May::Manage, true),
    ("Billing/Settle", May::Operator, false),
    ("Billing/ListLedgerEntries", May::BillingRead, false),
    ("Billing/GetStatement", May::BillingRead, false),
    ("Billing/GetAccount", May::BillingRead, false),
    ("Operator/CreateTenant", May::Operator, false),
    ("Operator/GetTenant", May::Operator, false),
    ("Operator/ListTenants", May::Operator, false),
    ("Operator/UpdateTenant", May::Operator, false),
    ("Operator/SuspendTenant", May::Operator, false),
    ("Operator/ResumeTenant", May::Operator, false),
    ("Operator/TerminateTenant", May::Operator, false),
    ("Operator/RecordPayment", May::Operator, false),
    ("Operator/CreateApiKey", May::Operator, false),
    ("Operator/ListApiKeys", May::Operator, false),
    ("Operator/RevokeApiKey", May::Operator, false),
    ("Operator/AdvanceClock", May::Operator, false),
    ("Operator/GetClock", May::Operator, false),
    ("Operator/BindDevice", May::Operator, false),
    ("Operator/UnbindDevice", May::Operator, false),
    ("Operator/ListDevices", May::Operator, false),
    ("Operator/ListAuditEvents", May::Operator, false),
    ("Operator/SetMaintenance", May::Operator, false),
    ("Operator/ExportTenantForMove", May::Operator, false),
    ("Operator/ImportTenant", May::Operator, false),
    ("Operator/FinishTenantMove", May::Operator, false),
];

/// A caller of the run.
#[derive(Clone, Debug)]
enum Who {
    Operator,
    BillingReader,
    /// A tenant key: its scopes (1 produce, 2 consume, 3 manage) and whether
    /// it is limited to the topics `mine` and `ghost`.
    Key {
        scopes: Vec<i32>,
        limited: bool,
    },
}

/// Which topic a topic-naming call names.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    /// One on the allow-list.
    Listed,
    /// One not on it.
    Unlisted,
}

/// What the table says `who` may do with `rpc` naming a `target` topic.
fn allowed(who: &Who, may: May, names_topic: bool, target: Target) -> bool {
    match who {
        Who::Operator => matches!(may, May::Operator | May::BillingRead),
        Who::BillingReader => may == May::BillingRead,
        Who::Key { scopes, limited } => {
            let scope_ok = match may {
                May::Produce => scopes.contains(&1),
                May::Consume => scopes.contains(&2),
                May::Manage => scopes.contains(&3),
                May::BillingRead => scopes.contains(&3) && !limited,
                May::Operator => false,
            };
            let topic_ok = !(*limited && names_topic && target == Target::Unlisted);
            scope_ok && topic_ok
        }
    }
}

/// The topic a call names: a read names an existing topic, a delete one
/// that does not exist (so an allowed delete answers NOT_FOUND).
fn topic(target: Target, destructive: bool) -> String {
    match (target, destructive) {
        (Target::Listed, false) => "mine",
        (Target::Unlisted, false) => "other",
        (Target::Listed, true) => "ghost",
        (Target::Unlisted, true) => "ghost2",
    }
    .to_string()
}

/// Makes one call; its status code (OK when it succeeded).
async fn call(client: &Client, rpc: &str, target: Target) -> Code {
    let t = |destructive| topic(target, destructive);
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    fn ok<T>(_: T) {}
    let mut broker = client.broker();
    let mut admin = client.admin();
    let mut billing = client.billing();
    let mut operator = client.operator();
    match rpc {
        "Broker/Produce" => code(
            broker
                .produce(pb::ProduceRequest {
                    topic: t(false),
                    messages: vec![msg("x")],
                })
                .await
                .map(ok),
        ),
        "Broker/ProduceStream" => {
            let batch = pb::ProduceRequest {
                topic: t(false),
                messages: vec![msg("x")],
            };
            match broker.produce_stream(tokio_stream::iter(vec![batch])).await {
                Err(status) => status.code(),
                Ok(response) => match response.into_inner().next().await {
                    Some(Err(status)) => status.code(),
                    _ => Code::Ok,
                },
            }
        }
        "Broker/Consume" => {
            let start = pb::ConsumeRequest {
                request: Some(pb::consume_request::Request::Start(pb::ConsumeStart {
                    topic: t(false),
                    subscription: "s".into(),
                    max_outstanding_messages: 1,
                    max_outstanding_bytes: 0,
                })),
            };
            // The stream stays open for the client's side: the server
            // answered the start message when the call returns.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(start).await.unwrap();
            let result = broker
                .consume(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await;
            drop(tx);
            code(result.map(ok))
        }
        "Broker/Fetch" => code(
            broker
                .fetch(pb::FetchRequest {
                    topic: t(false),
                    subscription: "s".into(),
                    max_messages: 1,
                    max_wait_ms: 0,
                })
                .await
                .map(ok),
        ),
        "Broker/Ack" => code(
            broker
                .ack(pb::AckRequest {
                    topic: t(false),
                    subscription: "s".into(),
                    offsets: vec![1_000_000],
                })
                .await
                .map(ok),
        ),
        "Broker/Nack" => code(
            broker
                .nack(pb::NackRequest {
                    topic: t(false),
                    subscription: "s".into(),
                    offsets: vec![1_000_000],
                    delay_ms: 0,
                })
                .await
                .map(ok),
        ),
        "Broker/Seek" => code(
            broker
                .seek(pb::SeekRequest {
                    topic: t(false),
                    subscription: "s".into(),
                    position: pb::SeekPosition::Latest as i32,
                    ..Default::default()
                })
                .await
                .map(ok),
        ),
        "Admin/ExportData" => match admin.export_data(pb::ExportDataRequest {}).await {
            Err(status) => status.code(),
            Ok(response) => {
                let mut stream = response.into_inner();
                let mut code = Code::Ok;
                while let Some(chunk) = stream.next().await {
                    if let Err(status) = chunk {
                        code = status.code();
                    }
                }
                code
            }
        },
        "Admin/GetUsage" => code(admin.get_usage(pb::GetUsageRequest {}).await.map(ok)),
        "Admin/GetQuota" => code(admin.get_quota(pb::GetQuotaRequest {}).await.map(ok)),
        "Admin/CreateTopic" => code(
            admin
                .create_topic(pb::CreateTopicRequest {
                    name: t(false),
                    config: None,
                })
                .await
                .map(ok),
        ),
        "Admin/GetTopic" => code(
            admin
                .get_topic(pb::GetTopicRequest { name: t(false) })
                .await
                .map(ok),
        ),
        "Admin/ListTopics" => code(admin.list_topics(pb::ListTopicsRequest {}).await.map(ok)),
        "Admin/UpdateTopic" => code(
            admin
                .update_topic(pb::UpdateTopicRequest {
                    name: t(false),
                    ..Default::default()
                })
                .await
                .map(ok),
        ),
        "Admin/DeleteTopic" => code(
            admin
                .delete_topic(pb::DeleteTopicRequest { name: t(true) })
                .await
                .map(ok),
        ),
        "Admin/CreateSubscription" => code(
            admin
                .create_subscription(pb::CreateSubscriptionRequest {
                    topic: t(false),
                    name: "s".into(),
                    config: None,
                    start: 0,
                })
                .await
                .map(ok),
        ),
        "Admin/GetSubscription" => code(
            admin
                .get_subscription(pb::GetSubscriptionRequest {
                    topic: t(false),
                    name: "s".into(),
                })
                .await
                .map(ok),
        ),
        "Admin/ListSubscriptions" => code(
            admin
                .list_subscriptions(pb::ListSubscriptionsRequest { topic: t(false) })
                .await
                .map(ok),
        ),
        "Admin/UpdateSubscription" => code(
            admin
                .update_subscription(pb::UpdateSubscriptionRequest {
                    topic: t(false),
                    name: "s".into(),
                    ..Default::default()
                })
                .await
                .map(ok),
        ),
        "Admin/DeleteSubscription" => code(
            admin
                .delete_subscription(pb::DeleteSubscriptionRequest {
                    topic: t(true),
                    name: "s".into(),
                })
                .await
                .map(ok),
        ),
        "Billing/Settle" => code(
            billing
                .settle(pb::SettleRequest {
                    through_day: "2020-01-01".into(),
                })
                .await
                .map(ok),
        ),
        "Billing/ListLedgerEntries" => code(
            billing
                .list_ledger_entries(pb::ListLedgerEntriesRequest {
                    from_sequence: 1,
                    limit: 10,
                })
                .await
                .map(ok),
        ),
        "Billing/GetStatement" => code(
            billing
                .get_statement(pb::GetStatementRequest {
                    tenant: "acme".into(),
                    month: "2026-01".into(),
                })
                .await
                .map(ok),
        ),
        "Billing/GetAccount" => code(
            billing
                .get_account(pb::GetAccountRequest {
                    tenant: "acme".into(),
                })
                .await
                .map(ok),
        ),
        "Operator/CreateTenant" => code(
            operator
                .create_tenant(pb::CreateTenantRequest {
                    id: "Not A Tenant Id!".into(),
                    ..Default::default()
                })
                .await
                .map(ok),
        ),
        "Operator/GetTenant" => code(
            operator
                .get_tenant(pb::GetTenantRequest { id: "acme".into() })
                .await
                .map(ok),
        ),
        "Operator/ListTenants" => code(
            operator
                .list_tenants(pb::ListTenantsRequest {})
                .await
                .map(ok),
        ),
        "Operator/UpdateTenant" => code(
            operator
                .update_tenant(pb::UpdateTenantRequest {
                    id: "ghost-tenant".into(),
                    ..Default::default()
                })
                .await
                .map(ok),
        ),
        "Operator/SuspendTenant" => code(
            operator
                .suspend_tenant(pb::SuspendTenantRequest {
                    id: "ghost-tenant".into(),
                    reason: pb::SuspensionReason::Abuse as i32,
                })
                .await
                .map(ok),
        ),
        "Operator/ResumeTenant" => code(
            operator
                .resume_tenant(pb::ResumeTenantRequest {
                    id: "ghost-tenant".into(),
                })
                .await
                .map(ok),
        ),
        "Operator/TerminateTenant" => code(
            operator
                .terminate_tenant(pb::TerminateTenantRequest {
                    id: "ghost-tenant".into(),
                    reason: String::new(),
                })
                .await
                .map(ok),
        ),
        "Operator/RecordPayment" => code(
            operator
                .record_payment(pb::RecordPaymentRequest {
                    tenant: "ghost-tenant".into(),
                    payment_id: "p-1".into(),
                    amount_minor: 100,
                    currency: "CNY".into(),
                    note: String::new(),
                })
                .await
                .map(ok),
        ),
        "Operator/CreateApiKey" => code(
            operator
                .create_api_key(pb::CreateApiKeyRequest {
                    tenant: "ghost-tenant".into(),
                    scopes: vec![1],
                    ..Default::default()
                })
                .await
                .map(ok),
        ),
        "Operator/ListApiKeys" => code(
            operator
                .list_api_keys(pb::ListApiKeysRequest {
                    tenant: "acme".into(),
                })
                .await
                .map(ok),
        ),
        "Operator/RevokeApiKey" => code(
            operator
                .revoke_api_key(pb::RevokeApiKeyRequest {
                    id: "no-such-key".into(),
                })
                .await
                .map(ok),
        ),
        "Operator/AdvanceClock" => code(
            operator
                .advance_clock(pb::AdvanceClockRequest { advance_ms: 1 })
                .await
                .map(ok),
        ),
        "Operator/GetClock" => code(operator.get_clock(pb::GetClockRequest {}).await.map(ok)),
        "Operator/BindDevice" => code(
            operator
                .bind_device(pb::BindDeviceRequest {
                    device_id: "imei-1".into(),
                    tenant: "ghost-tenant".into(),
                    rebind: false,
                })
                .await
                .map(ok),
        ),
        "Operator/UnbindDevice" => code(
            operator
                .unbind_device(pb::UnbindDeviceRequest {
                    device_id: "no-such-device".into(),
                })
                .await
                .map(ok),
        ),
        "Operator/ListDevices" => code(
            operator
                .list_devices(pb::ListDevicesRequest {
                    tenant: "acme".into(),
                })
                .await
                .map(ok),
        ),
        "Operator/ListAuditEvents" => code(
            operator
                .list_audit_events(pb::ListAuditEventsRequest::default())
                .await
                .map(ok),
        ),
        "Operator/SetMaintenance" => code(
            operator
                .set_maintenance(pb::SetMaintenanceRequest {
                    enabled: false,
                    reason: String::new(),
                })
                .await
                .map(ok),
        ),
        // A tenant that does not exist: nothing is stopped or moved.
        "Operator/ExportTenantForMove" => match operator
            .export_tenant_for_move(pb::ExportTenantForMoveRequest {
                tenant: "nobody-here".into(),
            })
            .await
        {
            Err(status) => status.code(),
            Ok(response) => {
                let mut stream = response.into_inner();
                let mut code = Code::Ok;
                while let Some(chunk) = stream.next().await {
                    if let Err(status) = chunk {
                        code = status.code();
                    }
                }
                code
            }
        },
        "Operator/ImportTenant" => code(
            operator
                .import_tenant(tokio_stream::iter(vec![pb::ImportTenantRequest {
                    sha256: "00".into(),
                    ..Default::default()
                }]))
                .await
                .map(ok),
        ),
        "Operator/FinishTenantMove" => code(
            operator
                .finish_tenant_move(pb::FinishTenantMoveRequest {
                    tenant: "nobody-here".into(),
                    ..Default::default()
                })
                .await
                .map(ok),
        ),
        other => panic!("the test has no call for {other}"),
    }
}

/// Every method of the served descriptor set, as "Service/Method".
fn served_rpcs() -> Vec<String> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(tallyq::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut rpcs = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                rpcs.push(format!("{}/{}", service.name(), method.name()));
            }
        }
    }
    rpcs.sort();
    rpcs
}

#[tokio::test]
async fn every_rpc_under_every_scope_and_allow_list_matches_the_spec_table() {
    let mut table: Vec<String> = TABLE.iter().map(|(rpc, _, _)| rpc.to_string()).collect();
    table.sort();
    assert_eq!(
        table,
        served_rpcs(),
        "the table covers every RPC the broker serves"
    );

    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    lift_rate_limits(&operator, "acme").await;
    set_overrides(&operator, "acme", &[("max_concurrent_streams", 10_000)]).await;
    for name in ["mine", "other"] {
        create_topic(&acme, name, Default::default()).await;
        create_sub(&acme, name, "s", 10).await;
    }

    let mut callers = vec![
        ("operator".to_string(), Who::Operator, operator.clone()),
        (
            "billing reader".to_string(),
            Who::BillingReader,
            operator.with_token(BILLING_READER_TOKEN).unwrap(),
        ),
    ];
    let scope_sets: [&[i32]; 7] = [&[1], &[2], &[3], &[1, 2], &[1, 3], &[2, 3], &[1, 2, 3]];
    for scopes in scope_sets {
        for limited in [false, true] {
            let topics: &[&str] = if limited { &["mine", "ghost"] } else { &[] };
            let secret = create_key(&operator, "acme", scopes, topics).await;
            callers.push((
                format!("key {scopes:?} limited={limited}"),
                Who::Key {
                    scopes: scopes.to_vec(),
                    limited,
                },
                operator.with_token(&secret).unwrap(),
            ));
        }
    }

    let mut checked = 0;
    let mut wrong = Vec::new();
    for (name, who, client) in &callers {
        for (rpc, may, names_topic) in TABLE {
            let targets: &[Target] = if *names_topic {
                &[Target::Listed, Target::Unlisted]
            } else {
                &[Target::Listed]
            };
            for target in targets {
                let expected = allowed(who, *may, *names_topic, *target);
                let code = call(client, rpc, *target).await;
                let fine = if expected {
                    !matches!(code, Code::PermissionDenied | Code::Unauthenticated)
                } else {
                    code == Code::PermissionDenied
                };
                if !fine {
                    wrong.push(format!(
                        "{name} on {rpc} ({target:?}): got {code:?}, expected {}",
                        if expected {
                            "allowed"
                        } else {
                            "PERMISSION_DENIED"
                        }
                    ));
                }
                checked += 1;
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} calls wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(checked, 16 * (TABLE.len() + 16), "every combination ran");

    // Nothing the run did touched what it must not: both topics and their
    // subscriptions are still there, the tenant is active.
    let topics = acme
        .admin()
        .list_topics(pb::ListTopicsRequest {})
        .await
        .unwrap()
        .into_inner()
        .topics;
    let mut names: Vec<_> = topics.iter().map(|t| t.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["mine", "other"]);
    let tenant = operator
        .operator()
        .get_tenant(pb::GetTenantRequest { id: "acme".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tenant.status, pb::TenantStatus::Active as i32);
}

#[tokio::test]
async fn a_topic_allow_list_limits_stats_usage_quota_and_export() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    for name in ["mine", "other"] {
        create_topic(&acme, name, Default::default()).await;
    }
    create_sub(&acme, "other", "s", 10).await;
    let mut from_device = msg("mine-payload");
    from_device.device_id = "imei-1".into();
    acme.produce("mine", vec![from_device]).await.unwrap();
    acme.produce("other", vec![msg("other-payload")])
        .await
        .unwrap();
    let limited = operator
        .with_token(&create_key(&operator, "acme", &[3], &["mine"]).await)
        .unwrap();

    // Usage: the listed topic's lines alone, no tenant totals or devices.
    let lines = limited
        .admin()
        .get_usage(pb::GetUsageRequest {})
        .await
        .unwrap()
        .into_inner()
        .lines;
    assert!(!lines.is_empty());
    for line in &lines {
        assert_eq!(
            (line.dimension.as_str(), line.name.as_str()),
            ("topic", "mine")
        );
    }
    let all = acme
        .admin()
        .get_usage(pb::GetUsageRequest {})
        .await
        .unwrap()
        .into_inner()
        .lines;
    for (dimension, name) in [("total", ""), ("topic", "other"), ("device", "imei-1")] {
        assert!(
            all.iter()
                .any(|l| l.dimension == dimension && l.name == name),
            "a whole-tenant key still sees {dimension} {name}"
        );
    }

    // Export: the listed topic, its messages and usage, nothing else.
    let export = export_lines(&limited).await;
    let text = serde_json::Value::Array(export.clone()).to_string();
    assert!(!text.contains("other"), "nothing of topic 'other': {text}");
    assert!(!text.contains("ops@acme"), "no contact data: {text}");
    let payloads: Vec<_> = export
        .iter()
        .filter(|l| l["type"] == "message")
        .map(|l| l["payload_base64"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        payloads,
        ["bWluZS1wYXlsb2Fk"],
        "base64 of mine-payload alone"
    );
    assert!(export
        .iter()
        .filter(|l| l["type"] == "usage")
        .all(|l| l["dimension"] == "topic" && l["name"] == "mine"));
    let whole = serde_json::Value::Array(export_lines(&acme).await).to_string();
    assert!(
        whole.contains("b3RoZXItcGF5bG9hZA=="),
        "a whole-tenant key exports 'other'"
    );
    assert!(whole.contains("\"other\"") && whole.contains("ops@acme"));

    // Quota: topic counts and storage of the listed topic alone.
    let quotas = limited
        .admin()
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner()
        .quotas;
    let used = |name: &str| quotas.iter().find(|q| q.name == name).unwrap().used;
    assert_eq!(used("max_topics"), 1);
    assert_eq!(used("max_subscriptions_per_topic"), 0);
    assert_eq!(
        used("max_tenant_storage_bytes"),
        "mine-payload".len() as u64 + 6
    );

    // Stats: the listed topic alone; a dead-letter topic off the list is refused.
    let topics = limited
        .admin()
        .list_topics(pb::ListTopicsRequest {})
        .await
        .unwrap()
        .into_inner()
        .topics;
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].name, "mine");
    let err = limited
        .admin()
        .create_subscription(pb::CreateSubscriptionRequest {
            topic: "mine".into(),
            name: "dl".into(),
            config: Some(pb::SubscriptionConfig {
                lock_seconds: 10,
                max_delivery_attempts: 3,
                dead_letter_topic: "other".into(),
            }),
            start: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("'other'"), "{}", err.message());
    let subs = acme
        .admin()
        .list_subscriptions(pb::ListSubscriptionsRequest {
            topic: "mine".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .subscriptions;
    assert!(subs.is_empty(), "the refused create made nothing");

    // A dead-letter topic set by a whole-tenant key is not named to the
    // listed key, in stats or in the export.
    acme.admin()
        .create_subscription(pb::CreateSubscriptionRequest {
            topic: "mine".into(),
            name: "dl".into(),
            config: Some(pb::SubscriptionConfig {
                lock_seconds: 10,
                max_delivery_attempts: 3,
                dead_letter_topic: "other".into(),
            }),
            start: 0,
        })
        .await
        .unwrap();
    let dead_letters = |client: Client| async move {
        client
            .admin()
            .get_subscription(pb::GetSubscriptionRequest {
                topic: "mine".into(),
                name: "dl".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .config
            .unwrap()
            .dead_letter_topic
    };
    assert_eq!(dead_letters(acme.clone()).await, "other");
    assert_eq!(dead_letters(limited.clone()).await, "");
    let text = serde_json::Value::Array(export_lines(&limited).await).to_string();
    assert!(text.contains("\"dl\"") && !text.contains("other"), "{text}");

    // Billing reads cover the whole tenant: refused to a listed key, and to a
    // key without manage (the produce-only key read all three).
    let produce_only = operator
        .with_token(&create_key(&operator, "acme", &[1], &[]).await)
        .unwrap();
    for client in [&limited, &produce_only] {
        let err = client
            .billing()
            .get_account(pb::GetAccountRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        let err = client
            .billing()
            .list_ledger_entries(pb::ListLedgerEntriesRequest {
                from_sequence: 1,
                limit: 10,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
}
