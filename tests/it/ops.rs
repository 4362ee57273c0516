//! Operations: Prometheus metrics moved by exact amounts, health through
//! maintenance and shutdown, the audit log, data export.

use std::collections::HashMap;

use base64::Engine;
use tallyq::proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::harness::*;

/// GET /metrics over plain HTTP/1.1.
pub async fn scrape(server: &TestServer) -> String {
    let mut last_error = None;
    for _ in 0..50 {
        match tokio::net::TcpStream::connect(server.metrics).await {
            Ok(mut stream) => {
                stream
                    .write_all(
                        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                    )
                    .await
                    .unwrap();
                let mut response = String::new();
                stream.read_to_string(&mut response).await.unwrap();
                return response;
            }
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("metrics endpoint unreachable: {last_error:?}");
}

/// The value of the series whose name and labels contain all of `parts`.
pub fn value(text: &str, name: &str, parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn metrics_move_by_exact_amounts() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 10).await;
    let before = scrape(&server).await;
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");

    acme.produce_once("t", vec![msg("a"), msg("b"), msg(&"x".repeat(1500))])
        .await
        .unwrap();
    let got = fetch(&acme, "t", "s", 10, 0).await;
    assert_eq!(
        ack(&acme, "t", "s", got.iter().map(|d| d.offset).collect()).await,
        3
    );
    let err = acme.produce_once("t", vec![]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let text = scrape(&server).await;
    let tenant = "tenant=\"acme\"";
    assert_eq!(
        value(&text, "tallyq_produced_messages_total", &[tenant]),
        3.0
    );
    assert_eq!(
        value(&text, "tallyq_produced_bytes_total", &[tenant]),
        1502.0
    );
    assert_eq!(
        value(&text, "tallyq_delivered_messages_total", &[tenant]),
        3.0
    );
    assert_eq!(value(&text, "tallyq_acked_messages_total", &[tenant]), 3.0);
    assert_eq!(
        value(
            &text,
            "tallyq_billable_units_total",
            &[tenant, "part=\"produced\""]
        ),
        4.0
    );
    assert_eq!(
        value(
            &text,
            "tallyq_billable_units_total",
            &[tenant, "part=\"delivered\""]
        ),
        4.0
    );
    assert_eq!(
        value(
            &text,
            "tallyq_rpc_duration_seconds_count",
            &["method=\"tallyq.v1.Broker/Produce\"", "code=\"OK\""]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "tallyq_rpc_duration_seconds_count",
            &[
                "method=\"tallyq.v1.Broker/Produce\"",
                "code=\"INVALID_ARGUMENT\""
            ]
        ),
        1.0
    );
    assert!(text.contains("node=\"node-1\""));
    assert!(text.contains("# TYPE tallyq_produced_messages_total counter"));
    assert!(text.contains("# TYPE tallyq_rpc_duration_seconds histogram"));
}

#[tokio::test]
async fn quota_refusals_are_counted_by_kind() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    set_overrides(&operator, "acme", &[("max_topics", 1)]).await;
    create_topic(&acme, "t", Default::default()).await;
    let err = acme
        .admin()
        .create_topic(pb::CreateTopicRequest {
            name: "u".into(),
            config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    let text = scrape(&server).await;
    assert_eq!(
        value(&text, "tallyq_quota_refusals_total", &["kind=\"topics\""]),
        1.0
    );
}

#[tokio::test]
async fn maintenance_refuses_the_data_plane_and_health_follows() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    let channel = tonic::transport::Endpoint::from_shared(server.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let status = |health: &mut HealthClient<tonic::transport::Channel>| {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest {
                    service: "tallyq.v1.Broker".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status
        }
    };
    assert_eq!(status(&mut health).await, 1, "SERVING");

    operator
        .operator()
        .set_maintenance(pb::SetMaintenanceRequest {
            enabled: true,
            reason: "disk replacement".into(),
        })
        .await
        .unwrap();
    assert_eq!(status(&mut health).await, 2, "NOT_SERVING in maintenance");
    let err = acme.produce_once("t", vec![msg("x")]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("maintenance"), "{}", err.message());
    // The control plane and billing reads keep working.
    topic_stats(&acme, "t").await;
    acme.billing()
        .get_account(pb::GetAccountRequest::default())
        .await
        .unwrap();

    operator
        .operator()
        .set_maintenance(pb::SetMaintenanceRequest {
            enabled: false,
            reason: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(status(&mut health).await, 1);
    acme.produce_once("t", vec![msg("x")]).await.unwrap();

    // Shutdown turns a watcher's status to NOT_SERVING before the server goes.
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "tallyq.v1.Broker".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(watch.next().await.unwrap().unwrap().status, 1);
    let stopping = tokio::spawn(server.stop());
    let next = watch.next().await.unwrap().unwrap();
    assert_eq!(next.status, 2, "NOT_SERVING at shutdown");
    drop(watch);
    stopping.await.unwrap();
}

#[tokio::test]
async fn operator_actions_and_failed_authentications_are_audited() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    let forged = acme.with_token("tq_acme_wrongwrongwrong").unwrap();
    let _ = forged.produce_once("t", vec![msg("x")]).await;
    let mut op = operator.operator();
    op.suspend_tenant(pb::SuspendTenantRequest {
        id: "acme".into(),
        reason: pb::SuspensionReason::Abuse as i32,
    })
    .await
    .unwrap();
    op.resume_tenant(pb::ResumeTenantRequest { id: "acme".into() })
        .await
        .unwrap();
    op.update_tenant(pb::UpdateTenantRequest {
        id: "acme".into(),
        display_name: Some("Acme".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let keys = op
        .list_api_keys(pb::ListApiKeysRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .keys;
    op.revoke_api_key(pb::RevokeApiKeyRequest {
        id: keys[0].id.clone(),
    })
    .await
    .unwrap();
    op.bind_device(pb::BindDeviceRequest {
        device_id: "d".into(),
        tenant: "acme".into(),
        rebind: false,
    })
    .await
    .unwrap();
    op.unbind_device(pb::UnbindDeviceRequest {
        device_id: "d".into(),
    })
    .await
    .unwrap();
    op.record_payment(pb::RecordPaymentRequest {
        tenant: "acme".into(),
        payment_id: "p".into(),
        amount_minor: 100,
        currency: "CNY".into(),
        note: String::new(),
    })
    .await
    .unwrap();
    for enabled in [true, false] {
        op.set_maintenance(pb::SetMaintenanceRequest {
            enabled,
            reason: String::new(),
        })
        .await
        .unwrap();
    }
    advance(&operator, 1_000).await;
    op.terminate_tenant(pb::TerminateTenantRequest {
        id: "acme".into(),
        reason: String::new(),
    })
    .await
    .unwrap();
    // The failed authentication is written in the background.
    let mut events = Vec::new();
    for _ in 0..50 {
        events = operator
            .operator()
            .list_audit_events(pb::ListAuditEventsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .events;
        if events.iter().any(|e| e.action == "auth.failed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for expected in [
        "tenant.create",
        "key.create",
        "auth.failed",
        "tenant.suspend",
    ] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    let failed = events.iter().find(|e| e.action == "auth.failed").unwrap();
    assert_eq!(failed.actor, "127.0.0.1");
    assert!(
        !failed.detail.contains("wrongwrongwrong"),
        "never the secret"
    );
    assert!(events.iter().all(|e| !e.detail.contains("tq_acme_")));
    let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn export_round_trips_what_was_produced() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 30).await;
    let payloads: Vec<Vec<u8>> = (0..250u32)
        .map(|i| (0..(i % 40)).map(|b| (b * 7 + i) as u8).collect())
        .collect();
    for chunk in payloads.chunks(100) {
        let messages = chunk
            .iter()
            .map(|p| pb::Message {
                payload: p.clone().into(),
                headers: [("k".to_string(), "v".to_string())].into_iter().collect(),
                device_id: "dev-9".into(),
                ..Default::default()
            })
            .collect();
        acme.produce_once("t", messages).await.unwrap();
    }
    let lines = export_lines(&acme).await;
    let of = |kind: &'static str| lines.iter().filter(move |l| l["type"] == kind);
    assert_eq!(of("tenant").count(), 1);
    assert_eq!(of("topic").next().unwrap()["name"], "t");
    assert_eq!(of("subscription").next().unwrap()["lock_seconds"], 30);
    let b64 = base64::engine::general_purpose::STANDARD;
    let exported: HashMap<u64, Vec<u8>> = of("message")
        .map(|m| {
            assert_eq!(m["device_id"], "dev-9");
            assert_eq!(m["headers"]["k"], "v");
            (
                m["offset"].as_u64().unwrap(),
                b64.decode(m["payload_base64"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(exported.len(), payloads.len());
    for (offset, payload) in payloads.iter().enumerate() {
        assert_eq!(&exported[&(offset as u64)], payload);
    }
    let usage = of("usage").find(|u| u["dimension"] == "total").unwrap();
    assert_eq!(usage["produced_messages"], 250);
}

/// A test CA, and a certificate it signed for `name` (PEM cert, PEM key).
struct TestPki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestPki {
    fn new() -> TestPki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        TestPki {
            ca_pem: ca.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn issue(&self, name: &str) -> (String, String) {
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

#[tokio::test]
async fn tls_and_client_certificates() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki.issue("localhost");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (cert_file, key_file, ca_file) = (
        write("server.pem", &cert),
        write("server.key", &key),
        write("ca.pem", &pki.ca_pem),
    );
    let server = TestServer::start_with(|c| {
        c.tls_cert_file = Some(cert_file.clone());
        c.tls_key_file = Some(key_file.clone());
        c.tls_client_ca_file = Some(ca_file.clone());
    })
    .await;
    let https = server.address.replace("http://", "https://");
    let (client_cert, client_key) = pki.issue("device-gateway");

    // With the CA and a client certificate: a full handshake and a real call.
    let client = tallyq::client::Client::connect_tls(
        &https,
        OPERATOR_TOKEN,
        pki.ca_pem.as_bytes(),
        "localhost",
        Some((client_cert.as_bytes(), client_key.as_bytes())),
    )
    .await
    .unwrap();
    client
        .operator()
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap();

    // Without a client certificate the server refuses the connection.
    let anonymous = tallyq::client::Client::connect_tls(
        &https,
        OPERATOR_TOKEN,
        pki.ca_pem.as_bytes(),
        "localhost",
        None,
    )
    .await;
    let refused = match anonymous {
        Err(_) => true,
        Ok(c) => c
            .operator()
            .list_tenants(pb::ListTenantsRequest {})
            .await
            .is_err(),
    };
    assert!(
        refused,
        "a client without a certificate must not get through"
    );

    // Plain text against a TLS port fails.
    let plain = tallyq::client::Client::connect(&server.address, OPERATOR_TOKEN).await;
    let failed = match plain {
        Err(_) => true,
        Ok(c) => c
            .operator()
            .list_tenants(pb::ListTenantsRequest {})
            .await
            .is_err(),
    };
    assert!(failed);
}
