//! The test clock as an operator sees it (SPEC §5): `clock_start` sets
//! where a manual clock begins, `Operator.GetClock` and `tallyq clock` read
//! it, and AdvanceClock moves it as before.

use tallyq::clock::ClockKind;
use tallyq::config::Config;
use tallyq::proto::v1 as pb;
use tonic::Code;

use crate::harness::*;

/// 2030-01-01T00:00:00Z in Unix ms.
const START_MS: i64 = 1_893_456_000_000;
const DAY_MS: i64 = 86_400_000;

async fn get_clock(server: &TestServer) -> pb::GetClockResponse {
    server
        .operator()
        .await
        .operator()
        .get_clock(pb::GetClockRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Runs the built `tallyq` as the operator against `server` (off the test's
/// runtime thread, which serves the in-process broker).
async fn cli(server: &TestServer, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tallyq"));
    command
        .args(["--server", &server.address, "--token", OPERATOR_TOKEN])
        .args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_manual_clock_starts_at_clock_start_and_get_clock_follows_advances() {
    let server =
        TestServer::start_with(|c| c.clock_start = Some("2030-01-01T08:00:00+08:00".into())).await;
    let clock = get_clock(&server).await;
    assert_eq!(clock.mode, pb::ClockMode::Manual as i32);
    assert_eq!(clock.now_unix_ms, START_MS);
    assert_eq!(clock.now, "2030-01-01T00:00:00.000Z");

    // What the broker stamps follows it.
    let acme = server.tenant("acme").await;
    create_topic(&acme, "t", pb::TopicConfig::default()).await;
    create_sub(&acme, "t", "s", 30).await;
    acme.produce("t", vec![msg("hello")]).await.unwrap();
    let got = fetch(&acme, "t", "s", 10, 1000).await;
    assert_eq!(got[0].publish_time_unix_ms, START_MS);

    let operator = server.operator().await;
    assert_eq!(advance(&operator, DAY_MS as u64).await, START_MS + DAY_MS);
    let clock = get_clock(&server).await;
    assert_eq!(clock.now_unix_ms, START_MS + DAY_MS);
    assert_eq!(clock.now, "2030-01-02T00:00:00.000Z");
    // AdvanceClock is unchanged: 0 is still refused, and refused changes nothing.
    let err = operator
        .operator()
        .advance_clock(pb::AdvanceClockRequest { advance_ms: 0 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(get_clock(&server).await.now_unix_ms, START_MS + DAY_MS);

    // The CLI reads the same clock.
    let out = cli(&server, &["clock"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            "2030-01-02T00:00:00.000Z ({} Unix ms) manual clock",
            START_MS + DAY_MS
        )
    );
    let out = cli(&server, &["clock", "advance", "1h"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("2030-01-02T01:00:00.000Z"));
    assert_eq!(
        get_clock(&server).await.now_unix_ms,
        START_MS + DAY_MS + 3_600_000
    );
    // A unit it does not know is refused before anything is sent.
    let out = cli(&server, &["clock", "advance", "1w"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown unit 'w' in '1w'"), "{stderr}");
    assert_eq!(
        get_clock(&server).await.now_unix_ms,
        START_MS + DAY_MS + 3_600_000
    );
}

#[tokio::test]
async fn get_clock_reports_a_system_clock_which_cannot_be_advanced() {
    let server = TestServer::start_with(|c| c.clock = ClockKind::System).await;
    let clock = get_clock(&server).await;
    assert_eq!(clock.mode, pb::ClockMode::System as i32);
    // Later than this file was written: the wall clock, not a fixed start.
    assert!(
        clock.now_unix_ms > 1_790_000_000_000,
        "{}",
        clock.now_unix_ms
    );
    let err = server
        .operator()
        .await
        .operator()
        .advance_clock(pb::AdvanceClockRequest { advance_ms: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // A tenant key may not read the operator's clock.
    let acme = server.tenant("acme").await;
    let err = acme
        .operator()
        .get_clock(pb::GetClockRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
}

#[test]
fn clock_start_needs_a_manual_clock_and_an_rfc3339_instant() {
    let config = Config::from_toml("clock_start = \"2030-01-01T00:00:00Z\"\n").unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("clock_start needs clock = \"manual\""),
        "{err}"
    );

    let config = Config::from_toml("clock = \"manual\"\nclock_start = \"2030-01-01\"\n").unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("is not an RFC 3339 instant"), "{err}");

    let config =
        Config::from_toml("clock = \"manual\"\nclock_start = \"2030-01-01T00:00:00Z\"\n").unwrap();
    config.validate().unwrap();
    assert_eq!(config.clock_start_ms(), Some(START_MS));
}
