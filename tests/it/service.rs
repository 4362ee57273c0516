//! The service around the broker: reflection, health, the generated operator
//! credential, and the CLI end to end.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use tallyq::proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

use crate::harness::*;

#[tokio::test]
async fn reflection_lists_every_service_and_health_is_serving() {
    let server = TestServer::start().await;
    let channel = tonic::transport::Endpoint::from_shared(server.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "tallyq.v1.Broker",
        "tallyq.v1.Admin",
        "tallyq.v1.Operator",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }

    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: "tallyq.v1.Broker".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, 1, "SERVING");
    server.stop().await;
}

#[tokio::test]
async fn first_start_generates_an_operator_credential_with_mode_0600() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let metrics = EPHEMERAL_METRICS.to_string();
    let server = ProcessServer::spawn(&[
        "serve".as_ref(),
        "--metrics-listen".as_ref(),
        metrics.as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ]);
    let token_file = dir.join("operator.token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(token.trim().len() >= 40);
    let operator = server.client(token.trim()).await;
    operator
        .operator()
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap();
    assert_eq!(server.terminate(), Some(0));

    // A second start keeps the same credential.
    let metrics = EPHEMERAL_METRICS.to_string();
    let server = ProcessServer::spawn(&[
        "serve".as_ref(),
        "--metrics-listen".as_ref(),
        metrics.as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ]);
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token);
    drop(server);
}

fn cli(server: &ProcessServer, token: &str, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tallyq"))
        .arg("--server")
        .arg(&server.address)
        .arg("--token")
        .arg(token)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tallyq {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn cli_walkthrough_tenant_key_topic_subscription_produce_consume() {
    let root = tempfile::tempdir().unwrap();
    let server = ProcessServer::start(&data_dir(&root));
    let op = OPERATOR_TOKEN;
    let out = cli(
        &server,
        op,
        &["tenant", "create", "acme", "--name", "Acme"],
        None,
    );
    assert!(out.starts_with("acme"), "{out}");
    assert!(cli(&server, op, &["tenant", "list"], None).contains("acme"));
    let key = cli(
        &server,
        op,
        &["key", "create", "acme", "--scope", "produce,consume,manage"],
        None,
    );
    let key = key.trim().to_string();
    assert!(key.starts_with("tq_acme_"), "{key}");
    assert!(cli(&server, op, &["key", "list", "acme"], None).contains("produce,consume,manage"));

    cli(
        &server,
        &key,
        &["topic", "create", "sensors", "--expiry-seconds", "3600"],
        None,
    );
    cli(
        &server,
        &key,
        &[
            "sub",
            "create",
            "sensors",
            "dashboard",
            "--lock-seconds",
            "30",
        ],
        None,
    );
    let out = cli(
        &server,
        &key,
        &["produce", "sensors", "t=21.5", "t=21.7"],
        None,
    );
    assert_eq!(out, "offset=0\noffset=1\n");
    cli(
        &server,
        &key,
        &["produce", "sensors"],
        Some("line one\nline two\n"),
    );
    let topics = cli(&server, &key, &["topic", "list"], None);
    assert!(topics.contains("sensors\tmessages=4"), "{topics}");

    let out = cli(
        &server,
        &key,
        &[
            "consume",
            "sensors",
            "dashboard",
            "--max",
            "4",
            "--idle-ms",
            "3000",
        ],
        None,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("offset=0 attempt=1") && lines[0].ends_with("t=21.5"));
    assert!(lines[3].ends_with("line two"));
    let sub = cli(&server, &key, &["sub", "get", "sensors", "dashboard"], None);
    assert!(
        sub.contains("backlog=0\tin_flight=0"),
        "consume acked: {sub}"
    );

    let out = cli(
        &server,
        &key,
        &["seek", "sensors", "dashboard", "--earliest"],
        None,
    );
    assert_eq!(out.trim(), "next_offset=0");
    cli(
        &server,
        &key,
        &["sub", "delete", "sensors", "dashboard"],
        None,
    );
    cli(&server, &key, &["topic", "delete", "sensors"], None);
    assert!(cli(&server, &key, &["topic", "list"], None).is_empty());
}

#[tokio::test]
async fn serve_reads_a_toml_config_file_and_flags_override_it() {
    let root = tempfile::tempdir().unwrap();
    let token_file = root.path().join("op.token");
    std::fs::write(&token_file, OPERATOR_TOKEN).unwrap();
    let config = root.path().join("tallyq.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:1\"\nclock = \"manual\"\nnode_id = \"node-9\"\n\
             operator_token_file = {:?}\n[plans.standard]\nmax_topics = 1\n",
            root.path().join("data"),
            token_file
        ),
    )
    .unwrap();
    // --listen overrides the file's unusable port 1.
    let metrics = EPHEMERAL_METRICS.to_string();
    let server = ProcessServer::spawn(&[
        "serve".as_ref(),
        "--metrics-listen".as_ref(),
        metrics.as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ]);
    let operator = server.operator().await;
    advance(&operator, 1_000).await; // only a manual clock accepts this
    create_tenant(&operator, "acme").await;
    let acme = operator
        .with_token(&create_key(&operator, "acme", &[3], &[]).await)
        .unwrap();
    create_topic(&acme, "one", Default::default()).await;
    let err = acme
        .admin()
        .create_topic(pb::CreateTopicRequest {
            name: "two".into(),
            config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::ResourceExhausted,
        "the file's plan applies"
    );
    assert!(root.path().join("data").join("db").exists());
}

#[tokio::test]
async fn the_load_tool_runs_against_a_real_broker() {
    let root = tempfile::tempdir().unwrap();
    let server = ProcessServer::start(&data_dir(&root));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tallyq"))
        .args(["--server", &server.address, "--token", OPERATOR_TOKEN])
        .args(["bench", "--setup", "loadtest", "--duration-secs", "1"])
        .args(["--producers", "2", "--batch", "10", "--size", "64"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {line}"))
    };
    assert!(field("produced") > 0);
    assert_eq!(field("delivered"), field("produced"), "{line}");
    assert!(field("ack_p99_us") > 0);
}
