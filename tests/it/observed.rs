//! What operators watch, as deploy/ uses it: the gauges the alerts need on a
//! fresh node, arrears counted apart from other suspensions, and log lines
//! whose fields read as plain values.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tallyq::proto::v1 as pb;

use crate::harness::*;
use crate::ops::{scrape, value};

/// Scrapes until `ready` holds for the exposition (the gauges are refreshed
/// in the background), at most 10 s; returns the last scrape.
async fn scrape_until(server: &TestServer, ready: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape(server).await;
        if ready(&text) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    text
}

#[tokio::test]
async fn a_fresh_node_exposes_its_last_settlement_and_arrears_gauges() {
    let server = TestServer::start().await;
    let text = scrape_until(&server, |t| {
        t.contains("\ntallyq_last_settlement_timestamp_seconds{")
            && t.contains("\ntallyq_tenants_in_arrears{")
    })
    .await;
    let last = value(&text, "tallyq_last_settlement_timestamp_seconds", &[]);
    assert!(last > 1.6e9, "the start time, Unix seconds: {last}\n{text}");
    assert_eq!(value(&text, "tallyq_tenants_in_arrears", &[]), 0.0);
}

#[tokio::test]
async fn an_abuse_suspension_is_not_arrears() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    create_tenant(&operator, "bad-actor").await;
    operator
        .operator()
        .suspend_tenant(pb::SuspendTenantRequest {
            id: "bad-actor".into(),
            reason: pb::SuspensionReason::Abuse as i32,
        })
        .await
        .unwrap();
    let text = scrape_until(&server, |t| {
        value(t, "tallyq_tenants", &["status=\"suspended\""]) == 1.0
    })
    .await;
    assert_eq!(
        value(&text, "tallyq_tenants", &["status=\"suspended\""]),
        1.0,
        "{text}"
    );
    assert_eq!(value(&text, "tallyq_tenants_in_arrears", &[]), 0.0);
}

#[tokio::test]
async fn arrears_are_counted_once_the_grace_period_is_over() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    advance_past_midnight(&operator).await; // one topic-day charged
    advance(&operator, 8 * 86_400_000).await; // past the 7-day grace period
    let account = operator
        .billing()
        .get_account(pb::GetAccountRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(account.status_reason, "arrears");
    let text = scrape_until(&server, |t| {
        value(t, "tallyq_tenants_in_arrears", &[]) == 1.0
    })
    .await;
    assert_eq!(
        value(&text, "tallyq_tenants_in_arrears", &[]),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_failed_authentication_logs_its_source_and_method_as_plain_values() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let log_path = root.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let metrics = free_port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tallyq"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            &metrics,
        ])
        .arg("--data-dir")
        .arg(&dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let address = stdout
        .lines()
        .map(|l| l.unwrap())
        .find_map(|l| l.strip_prefix("tallyq listening on ").map(String::from))
        .expect("a listening line");
    let client = tallyq::client::Client::connect(
        &format!("http://{address}"),
        "tq_not_a_real_key_000000000000",
    )
    .await
    .unwrap();
    let refused = client
        .operator()
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut line = None;
    for _ in 0..100 {
        let text = std::fs::read_to_string(&log_path).unwrap();
        line = text
            .lines()
            .find(|l| l.contains("authentication failed"))
            .map(String::from);
        if line.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = line.expect("an 'authentication failed' line");
    assert!(line.contains("source=127.0.0.1"), "{line}");
    assert!(
        line.contains("method=tallyq.v1.Operator/ListTenants"),
        "{line}"
    );
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains("Some("), "{text}");
    assert!(
        !text.contains("\u{1b}["),
        "no colour codes in a file: {text}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn the_readiness_probe_of_deploy_stays_serving_in_maintenance_mode() {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/k8s/statefulset.yaml"
    ))
    .unwrap();
    let probe = manifest.split("readinessProbe:").nth(1).unwrap();
    let service = probe
        .lines()
        .find_map(|l| l.trim().strip_prefix("service:"))
        .expect("the readiness probe names a service")
        .trim()
        .to_string();
    let server = TestServer::start().await;
    let operator = server.operator().await;
    operator
        .operator()
        .set_maintenance(pb::SetMaintenanceRequest {
            enabled: true,
            reason: "upgrade".into(),
        })
        .await
        .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(server.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = |service: String| {
        let mut health = health.clone();
        async move {
            health
                .check(tonic_health::pb::HealthCheckRequest { service })
                .await
                .unwrap()
                .into_inner()
                .status
        }
    };
    assert_eq!(
        status("tallyq.v1.Broker".into()).await,
        2,
        "NOT_SERVING in maintenance"
    );
    assert_eq!(
        status(service.clone()).await,
        1,
        "{service} stays SERVING: the pod stays ready"
    );
}
