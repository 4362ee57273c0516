//! SPEC §7 at scale: 10,000 tenants with 5 topics each. Creates them on a
//! fresh broker (the built binary, manual clock, temp dir), then reports:
//! the idle broker's resident memory, the time a restart takes until it
//! answers, and the time to settle one day for every tenant (the clock is
//! moved past midnight; AdvanceClock answers after settling).
//!
//! Run: `cargo bench --bench tenants` (TENANTS=1000 for a quicker look).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tallyq::client::Client;
use tallyq::proto::v1 as pb;

const TOKEN: &str = "tqop_tenants_benchmark_operator_credential_0123";

fn start(dir: &std::path::Path, token_file: &std::path::Path) -> (Child, String, Instant) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tallyq"))
        .args(["serve", "--clock", "manual", "--listen", "127.0.0.1:0"])
        .arg("--metrics-listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir)
        .arg("--operator-token-file")
        .arg(token_file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tallyq");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines.next().expect("tallyq exited").expect("read");
        if let Some(a) = line.strip_prefix("tallyq listening on ") {
            break format!("http://{a}");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, address, started)
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

async fn ready(address: &str) -> Client {
    loop {
        if let Ok(c) = Client::connect(address, TOKEN).await {
            if c.operator()
                .list_tenants(pb::ListTenantsRequest {})
                .await
                .is_ok()
            {
                return c;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() {
    let tenants: usize = std::env::var("TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("data");
    let token_file = root.path().join("operator.token");
    std::fs::write(&token_file, TOKEN).expect("token");

    let (mut child, address, _) = start(&dir, &token_file);
    let operator = ready(&address).await;
    let created = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let operator = operator.clone();
        tasks.push(tokio::spawn(async move {
            for i in (worker..tenants).step_by(16) {
                let id = format!("tenant-{i:05}");
                let mut op = operator.operator();
                op.create_tenant(pb::CreateTenantRequest {
                    id: id.clone(),
                    ..Default::default()
                })
                .await
                .expect("tenant");
                let secret = op
                    .create_api_key(pb::CreateApiKeyRequest {
                        tenant: id,
                        scopes: vec![3],
                        ..Default::default()
                    })
                    .await
                    .expect("key")
                    .into_inner()
                    .secret;
                let tenant = operator.with_token(&secret).expect("token");
                for t in 0..5 {
                    tenant
                        .admin()
                        .create_topic(pb::CreateTopicRequest {
                            name: format!("topic-{t}"),
                            config: None,
                        })
                        .await
                        .expect("topic");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    println!(
        "created {tenants} tenants x 5 topics in {:.1} s",
        created.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("idle RSS after creation: {:.0} MB", rss_mb(child.id()));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();

    let (mut child, address, started) = start(&dir, &token_file);
    let operator = ready(&address).await;
    let start_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("restart until the first answered RPC: {start_s:.2} s");
    println!("idle RSS after restart: {:.0} MB", rss_mb(child.id()));

    // Move to just after the next midnight: AdvanceClock settles before answering.
    let now = operator
        .operator()
        .advance_clock(pb::AdvanceClockRequest { advance_ms: 1 })
        .await
        .expect("clock")
        .into_inner()
        .now_unix_ms;
    let to_midnight = (now.div_euclid(86_400_000) + 1) * 86_400_000 - now + 1_000;
    let settle = Instant::now();
    operator
        .operator()
        .advance_clock(pb::AdvanceClockRequest {
            advance_ms: to_midnight as u64,
        })
        .await
        .expect("advance");
    let settle_s = settle.elapsed().as_secs_f64();
    let entries = operator
        .billing()
        .list_ledger_entries(pb::ListLedgerEntriesRequest {
            from_sequence: 1,
            limit: 1000,
        })
        .await
        .expect("ledger")
        .into_inner()
        .entries
        .len();
    println!(
        "settling one day for {tenants} tenants: {settle_s:.2} s (first page: {entries} entries)"
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}
