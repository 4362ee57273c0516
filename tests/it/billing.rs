//! Metering and billing against the real server: exact usage, settlement at
//! the cut-off (manual clock), idempotency, the free allowance across a month
//! boundary, topic-days, arrears, payments, termination, roles.

use tallyq::client::Client;
use tallyq::proto::v1 as pb;
use tonic::Code;

use crate::harness::*;

pub async fn usage(client: &Client) -> Vec<pb::UsageLine> {
    client
        .admin()
        .get_usage(pb::GetUsageRequest {})
        .await
        .unwrap()
        .into_inner()
        .lines
}

pub fn line<'a>(lines: &'a [pb::UsageLine], dimension: &str, name: &str) -> &'a pb::UsageLine {
    lines
        .iter()
        .find(|l| l.dimension == dimension && l.name == name)
        .unwrap_or_else(|| panic!("no {dimension} {name} line in {lines:?}"))
}

fn sized(bytes: usize, device: &str) -> pb::Message {
    pb::Message {
        payload: vec![b'x'; bytes].into(),
        device_id: device.into(),
        ..Default::default()
    }
}

async fn charges_of(client: &Client, tenant: &str, day: &str) -> Vec<pb::LedgerEntry> {
    ledger(client)
        .await
        .into_iter()
        .filter(|e| e.tenant == tenant && e.day == day && e.kind == "charge")
        .collect()
}

#[tokio::test]
async fn usage_is_exact_for_produce_delivery_redelivery_dedup_and_refusals() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 10).await;
    // 1.5 KiB = 2 units (device d1), 0.5 KiB = 1 unit (no device).
    let big = sized(1536 - 2, "d1");
    let small = pb::Message {
        dedup_id: "once".into(),
        ..sized(512 - 4, "")
    };
    acme.produce_once("t", vec![big, small.clone()])
        .await
        .unwrap();
    // A duplicate and a refused batch bill nothing.
    assert!(acme.produce_once("t", vec![small]).await.unwrap().results[0].duplicate);
    assert!(acme
        .produce_once("t", vec![sized(300 * 1024, "")])
        .await
        .is_err());

    let got = fetch(&acme, "t", "s", 10, 0).await;
    assert_eq!(got.len(), 2);
    acme.broker()
        .nack(pb::NackRequest {
            topic: "t".into(),
            subscription: "s".into(),
            offsets: vec![1],
            delay_ms: 0,
        })
        .await
        .unwrap();
    let again = fetch(&acme, "t", "s", 10, 0).await;
    assert_eq!((again.len(), again[0].delivery_attempt), (1, 2));

    let lines = usage(&acme).await;
    let total = line(&lines, "total", "");
    assert_eq!(total.produced_units, 3);
    assert_eq!(total.delivered_units, 2 + 1 + 1);
    assert_eq!(total.redelivered_units, 1);
    assert_eq!(total.message_units, 7);
    assert_eq!((total.produced_messages, total.delivered_messages), (2, 3));
    assert_eq!(line(&lines, "topic", "t").message_units, 7);
    let device = line(&lines, "device", "d1");
    assert_eq!((device.produced_units, device.delivered_units), (2, 2));
}

#[tokio::test]
async fn the_cutoff_settles_days_once_with_exact_lines_and_the_chain_verifies() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "kept", Default::default()).await;
    create_topic(&acme, "brief", Default::default()).await;
    acme.admin()
        .delete_topic(pb::DeleteTopicRequest {
            name: "brief".into(),
        })
        .await
        .unwrap();
    create_sub(&acme, "kept", "s", 0).await;
    acme.produce_once("kept", (0..5).map(|_| msg("m")).collect())
        .await
        .unwrap();
    assert_eq!(fetch(&acme, "kept", "s", 10, 0).await.len(), 5);

    // The day has not ended: it cannot be settled.
    let today = day_name(advance(&operator, 1).await.div_euclid(86_400_000));
    let err = operator
        .billing()
        .settle(pb::SettleRequest {
            through_day: today.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(ledger(&operator).await.is_empty());

    // Crossing midnight settles it (the server settles ended days by itself).
    let day = advance_past_midnight(&operator).await;
    assert_eq!(day, today);
    let lines = charges_of(&operator, "acme", &day).await;
    assert_eq!(lines.len(), 3, "one entry per meter: {lines:?}");
    let units = lines.iter().find(|e| e.meter == "message_units").unwrap();
    assert_eq!(
        (units.quantity, units.produced_units, units.delivered_units),
        (10, 5, 5)
    );
    assert_eq!(
        (units.free_applied, units.billable, units.amount_minor),
        (10, 0, 0)
    );
    assert_eq!(units.idempotency_key, format!("acme/{day}/message_units"));
    assert_eq!(units.node_id, "node-1");
    let topics = lines.iter().find(|e| e.meter == "topic_days").unwrap();
    assert_eq!(
        topics.quantity, 2,
        "a topic created and deleted the same day counts 1"
    );
    assert_eq!(topics.amount_minor, 400);
    assert_eq!(topics.currency, "CNY");

    // Settling again writes nothing new.
    let again = operator
        .billing()
        .settle(pb::SettleRequest { through_day: day })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.entries_written, 0);
    let entries = ledger(&operator).await;
    assert_eq!(entries.len(), 3);
    assert_eq!(tallyq::client::verify_ledger(&entries), Ok(3));

    // The usage of the settled day is no longer live.
    assert!(usage(&acme).await.iter().all(|l| l.day != today));
}

#[tokio::test]
async fn the_free_allowance_is_used_in_day_order_and_renews_each_month() {
    let server = TestServer::start_with(|c| {
        let mut tiny = tallyq::quota::Plan::default();
        tiny.rates.free_message_units_per_month = 5;
        tiny.rates.message_unit_price_nano_minor = 10_000_000_000; // 0.10 per unit
        tiny.rates.topic_day_price_nano_minor = 0;
        c.plans.insert("tiny".into(), tiny);
    })
    .await;
    let operator = server.operator().await;
    operator
        .operator()
        .create_tenant(pb::CreateTenantRequest {
            id: "acme".into(),
            plan: "tiny".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let acme = operator
        .with_token(&create_key(&operator, "acme", &[1, 3], &[]).await)
        .unwrap();
    create_topic(
        &acme,
        "t",
        pb::TopicConfig {
            message_expiry_seconds: 604_800,
            ..Default::default()
        },
    )
    .await;
    // Produce 4 units on each of the last two days of a month and the first
    // day of the next.
    let mut days = Vec::new();
    loop {
        let now = advance(&operator, 1).await;
        let day = now.div_euclid(86_400_000);
        let date = day_name(day);
        let next = day_name(day + 1);
        let last_of_month = next.ends_with("-01");
        let second_last = day_name(day + 2).ends_with("-01");
        if second_last || last_of_month || (!days.is_empty() && date.ends_with("-01")) {
            acme.produce_once("t", (0..4).map(|_| msg("m")).collect())
                .await
                .unwrap();
            days.push(date.clone());
        }
        advance_past_midnight(&operator).await;
        if days.len() == 3 {
            break;
        }
    }
    let free: Vec<(u64, u64, i64)> = {
        let mut v = Vec::new();
        for day in &days {
            let lines = charges_of(&operator, "acme", day).await;
            let units = lines.iter().find(|e| e.meter == "message_units").unwrap();
            v.push((units.free_applied, units.billable, units.amount_minor));
        }
        v
    };
    assert_eq!(
        free,
        vec![(4, 0, 0), (1, 3, 30), (4, 0, 0)],
        "days {days:?}"
    );
}

#[tokio::test]
async fn arrears_suspend_and_a_payment_that_clears_the_debt_resumes() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(
        &acme,
        "t",
        pb::TopicConfig {
            message_expiry_seconds: 604_800,
            ..Default::default()
        },
    )
    .await;
    advance_past_midnight(&operator).await;
    let account = |client: Client, tenant: &'static str| async move {
        client
            .billing()
            .get_account(pb::GetAccountRequest {
                tenant: tenant.into(),
            })
            .await
            .unwrap()
            .into_inner()
    };
    let a = account(operator.clone(), "acme").await;
    assert_eq!(a.balance_minor, -200, "one topic-day at 2.00");
    assert!(a.oldest_unpaid_due_unix_ms > 0);
    // Within the 7-day grace period the tenant keeps working.
    for _ in 0..6 {
        advance(&operator, 86_400_000).await;
    }
    acme.produce_once("t", vec![msg("still ok")]).await.unwrap();
    advance(&operator, 2 * 86_400_000).await;
    let err = acme.produce_once("t", vec![msg("x")]).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("arrears"), "{}", err.message());
    let a = account(operator.clone(), "acme").await;
    assert_eq!(a.status, pb::TenantStatus::Suspended as i32);
    assert_eq!(a.status_reason, "arrears");
    assert_eq!(topic_stats(&acme, "t").await.messages, 1, "data kept");

    // A payment too small keeps it suspended; one that clears the debt resumes it.
    let pay = |id: &str, amount: i64| {
        let operator = operator.clone();
        let id = id.to_string();
        async move {
            operator
                .operator()
                .record_payment(pb::RecordPaymentRequest {
                    tenant: "acme".into(),
                    payment_id: id,
                    amount_minor: amount,
                    currency: "CNY".into(),
                    note: String::new(),
                })
                .await
        }
    };
    pay("p-1", 100).await.unwrap();
    assert!(acme.produce_once("t", vec![msg("x")]).await.is_err());
    let owed = -account(operator.clone(), "acme").await.balance_minor;
    let paid = pay("p-2", owed).await.unwrap().into_inner();
    assert_eq!(paid.balance_minor, 0);
    acme.produce_once("t", vec![msg("back")]).await.unwrap();
    // The same payment id again changes nothing.
    let again = pay("p-2", owed).await.unwrap().into_inner();
    assert!(again.duplicate);
    assert_eq!(account(operator.clone(), "acme").await.balance_minor, 0);
    let err = pay("p-2", owed + 1).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = pay("p-3", -5).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn termination_settles_erases_and_keeps_the_ledger() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 0).await;
    acme.produce_once("t", vec![msg("a"), msg("b")])
        .await
        .unwrap();
    operator
        .operator()
        .bind_device(pb::BindDeviceRequest {
            device_id: "dev-1".into(),
            tenant: "acme".into(),
            rebind: false,
        })
        .await
        .unwrap();
    operator
        .operator()
        .record_payment(pb::RecordPaymentRequest {
            tenant: "acme".into(),
            payment_id: "prepaid".into(),
            amount_minor: 1000,
            currency: "CNY".into(),
            note: String::new(),
        })
        .await
        .unwrap();
    let today = day_name(advance(&operator, 1).await.div_euclid(86_400_000));

    let terminated = operator
        .operator()
        .terminate_tenant(pb::TerminateTenantRequest {
            id: "acme".into(),
            reason: "customer request".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(terminated.status, pb::TenantStatus::Terminated as i32);
    assert!(terminated.contact_email.is_empty() && terminated.display_name.is_empty());

    // Its keys no longer authenticate.
    let err = acme.produce_once("t", vec![msg("x")]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // Usage up to now was settled, today included; the ledger stays.
    let lines = charges_of(&operator, "acme", &today).await;
    let units = lines.iter().find(|e| e.meter == "message_units").unwrap();
    assert_eq!(units.produced_units, 2);
    let topic_day = lines.iter().find(|e| e.meter == "topic_days").unwrap();
    assert_eq!(topic_day.amount_minor, 200);
    let month = &today[..7];
    let statement = operator
        .billing()
        .get_statement(pb::GetStatementRequest {
            tenant: "acme".into(),
            month: month.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let final_statement = statement.final_statement.expect("a final statement");
    assert_eq!(
        final_statement.amount_minor, 800,
        "1000 prepaid - 200 charged: refund"
    );
    assert!(final_statement.note.contains("refund 8.00"));
    assert_eq!(statement.balance_minor, 800);
    // Data and bindings are gone; the tenant record stays.
    let devices = operator
        .operator()
        .list_devices(pb::ListDevicesRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert!(devices.is_empty());
    let keys = operator
        .operator()
        .list_api_keys(pb::ListApiKeysRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert!(keys.is_empty());
    // A new tenant may not take the name; the old one cannot be terminated twice.
    let err = operator
        .operator()
        .terminate_tenant(pb::TerminateTenantRequest {
            id: "acme".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let after_midnight = advance_past_midnight(&operator).await;
    assert!(
        charges_of(&operator, "acme", &after_midnight).await.len() <= 3,
        "no settlement after termination"
    );
}

#[tokio::test]
async fn billing_reads_follow_roles() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    let globex = server.tenant("globex").await;
    create_topic(&acme, "t", Default::default()).await;
    create_topic(&globex, "t", Default::default()).await;
    let day = advance_past_midnight(&operator).await;
    let month = day[..7].to_string();

    // A tenant reads its own account and statement, not another's.
    let own = acme
        .billing()
        .get_account(pb::GetAccountRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((own.tenant.as_str(), own.balance_minor), ("acme", -200));
    let err = acme
        .billing()
        .get_account(pb::GetAccountRequest {
            tenant: "globex".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = acme
        .billing()
        .get_statement(pb::GetStatementRequest {
            tenant: "globex".into(),
            month: month.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(ledger(&acme).await.iter().all(|e| e.tenant == "acme"));
    let err = acme
        .billing()
        .settle(pb::SettleRequest {
            through_day: day.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // The billing reader reads everything and changes nothing.
    let reader = operator.with_token(BILLING_READER_TOKEN).unwrap();
    let all = ledger(&reader).await;
    assert!(all.iter().any(|e| e.tenant == "globex") && all.iter().any(|e| e.tenant == "acme"));
    let statement = reader
        .billing()
        .get_statement(pb::GetStatementRequest {
            tenant: "globex".into(),
            month,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statement.days.len(), 1);
    assert_eq!(statement.charges_minor, 200);
    let err = reader
        .billing()
        .settle(pb::SettleRequest { through_day: day })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = reader
        .operator()
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = reader.produce_once("t", vec![msg("x")]).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_plan_may_terminate_tenants_long_in_arrears() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    set_overrides(
        &operator,
        "acme",
        &[
            ("grace_period_days", 1),
            ("terminate_after_arrears_days", 3),
        ],
    )
    .await;
    create_topic(&acme, "t", Default::default()).await;
    advance_past_midnight(&operator).await;
    advance(&operator, 2 * 86_400_000).await;
    let tenant = |operator: Client| async move {
        operator
            .operator()
            .get_tenant(pb::GetTenantRequest { id: "acme".into() })
            .await
            .unwrap()
            .into_inner()
    };
    let t = tenant(operator.clone()).await;
    assert_eq!(
        (t.status, t.status_reason.as_str()),
        (pb::TenantStatus::Suspended as i32, "arrears")
    );
    advance(&operator, 2 * 86_400_000).await;
    let t = tenant(operator.clone()).await;
    assert_eq!(t.status, pb::TenantStatus::Terminated as i32);
    assert_eq!(t.status_reason, "arrears");
    let final_entry = ledger(&operator)
        .await
        .into_iter()
        .find(|e| e.kind == "final_statement")
        .expect("a final statement");
    assert!(final_entry.amount_minor < 0, "owed: {final_entry:?}");
}
