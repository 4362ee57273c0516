//! Fair sharing under a flood (SPEC §4): tenant B produces steadily below its
//! quota, first alone ("quiet"), then while tenant A offers ten times its
//! produce quota ("flood"). Reports B's produce latency p50/p99 and
//! throughput in both phases and their ratios, over several alternating runs
//! (medians), plus what A got through.
//!
//! Run: `cargo bench --bench fairness` (about 40 s). Everything runs on
//! loopback against an in-process broker with a temp data dir; every loop is
//! bounded in time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tallyq::client::Client;
use tallyq::config::Config;
use tallyq::proto::v1 as pb;

const RUNS: usize = 3;
const PHASE: Duration = Duration::from_secs(5);
/// B: 10 batches of 10 x 1 KiB per 100 ms = 1,000 units/s (a fifth of its quota).
const B_BATCH: usize = 10;
const B_INTERVAL: Duration = Duration::from_millis(10);
/// A: 4 producers of 100 x 1 KiB batches as fast as they can, paced to offer
/// 50,000 units/s in all: ten times the standard plan's 5,000 units/s.
const A_PRODUCERS: usize = 4;
const A_BATCH: usize = 100;
const A_OFFERED_UNITS_PER_SEC: u64 = 50_000;

fn kib(n: usize) -> Vec<pb::Message> {
    (0..n)
        .map(|_| pb::Message {
            payload: vec![b'x'; 1000].into(),
            ..Default::default()
        })
        .collect()
}

struct PhaseResult {
    p50_us: u64,
    p99_us: u64,
    units_per_sec: f64,
}

async fn run_b(client: Client) -> PhaseResult {
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let start = Instant::now();
    let mut units = 0u64;
    let mut tick = tokio::time::interval(B_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while start.elapsed() < PHASE {
        tick.tick().await;
        let sent = Instant::now();
        if let Ok(reply) = client.produce_once("steady", kib(B_BATCH)).await {
            units += reply.units;
            let _ = histogram.record(sent.elapsed().as_micros() as u64);
        }
    }
    PhaseResult {
        p50_us: histogram.value_at_quantile(0.5),
        p99_us: histogram.value_at_quantile(0.99),
        units_per_sec: units as f64 / start.elapsed().as_secs_f64(),
    }
}

/// A's flood: returns (units accepted, batches refused).
async fn run_a(client: Client, stop_after: Duration) -> (u64, u64) {
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let per_producer_interval = Duration::from_secs_f64(
        (A_BATCH as f64 * A_PRODUCERS as f64) / A_OFFERED_UNITS_PER_SEC as f64,
    );
    let mut tasks = Vec::new();
    for _ in 0..A_PRODUCERS {
        let client = client.clone();
        let accepted = accepted.clone();
        let refused = refused.clone();
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(per_producer_interval);
            while start.elapsed() < stop_after {
                tick.tick().await;
                // A hostile client: ignores retry-after and keeps sending.
                match client.produce_once("flood", kib(A_BATCH)).await {
                    Ok(reply) => accepted.fetch_add(reply.units, Ordering::Relaxed),
                    Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    (
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("operator.token");
    let token = "tqop_fairness_benchmark_operator_credential";
    std::fs::write(&token_file, token).expect("token file");
    let config = Config {
        data_dir: dir.path().join("data"),
        operator_token_file: Some(token_file),
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tallyq::run(config, listener, async {
        let _ = stopped.await;
    }));

    let operator = Client::connect(&address, token).await.expect("connect");
    let mut tenants = Vec::new();
    for (id, topic) in [("tenant-a", "flood"), ("tenant-b", "steady")] {
        let mut op = operator.operator();
        op.create_tenant(pb::CreateTenantRequest {
            id: id.into(),
            ..Default::default()
        })
        .await
        .expect("tenant");
        let secret = op
            .create_api_key(pb::CreateApiKeyRequest {
                tenant: id.into(),
                scopes: vec![1, 3],
                ..Default::default()
            })
            .await
            .expect("key")
            .into_inner()
            .secret;
        // A separate connection per tenant, as separate customers would have.
        let client = Client::connect(&address, &secret).await.expect("connect");
        client
            .admin()
            .create_topic(pb::CreateTopicRequest {
                name: topic.into(),
                config: None,
            })
            .await
            .expect("topic");
        tenants.push(client);
    }
    let (a, b) = (tenants[0].clone(), tenants[1].clone());

    let mut quiet = Vec::new();
    let mut flood = Vec::new();
    let mut a_accepted = Vec::new();
    for run in 0..RUNS {
        let q = run_b(b.clone()).await;
        let flood_task = tokio::spawn(run_a(a.clone(), PHASE));
        let f = run_b(b.clone()).await;
        let (accepted, refused) = flood_task.await.expect("flood");
        println!(
            "run {run}: quiet p50 {} us p99 {} us {:.0} units/s | flood p50 {} us p99 {} us {:.0} units/s | A accepted {:.0} units/s, refused {refused} batches",
            q.p50_us, q.p99_us, q.units_per_sec, f.p50_us, f.p99_us, f.units_per_sec,
            accepted as f64 / PHASE.as_secs_f64()
        );
        a_accepted.push(accepted as f64 / PHASE.as_secs_f64());
        quiet.push(q);
        flood.push(f);
    }
    let m = |v: &[PhaseResult], f: fn(&PhaseResult) -> f64| median(v.iter().map(f).collect());
    let (qp50, qp99, qtp) = (
        m(&quiet, |r| r.p50_us as f64),
        m(&quiet, |r| r.p99_us as f64),
        m(&quiet, |r| r.units_per_sec),
    );
    let (fp50, fp99, ftp) = (
        m(&flood, |r| r.p50_us as f64),
        m(&flood, |r| r.p99_us as f64),
        m(&flood, |r| r.units_per_sec),
    );
    println!();
    println!("tenant B (steady, 1,000 units/s offered), medians of {RUNS} runs:");
    println!("| phase | p50 us | p99 us | units/s |");
    println!("|---|---|---|---|");
    println!("| quiet | {qp50:.0} | {qp99:.0} | {qtp:.0} |");
    println!("| A floods at 10x quota | {fp50:.0} | {fp99:.0} | {ftp:.0} |");
    println!(
        "| flood / quiet | {:.2} | {:.2} | {:.3} |",
        fp50 / qp50,
        fp99 / qp99,
        ftp / qtp
    );
    println!(
        "tenant A: offered {A_OFFERED_UNITS_PER_SEC} units/s, accepted {:.0} units/s (quota 5,000 + burst)",
        median(a_accepted)
    );
    let _ = stop.send(());
    let _ = server.await;
}
