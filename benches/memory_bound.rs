//! Memory one tenant can pin (SPEC §4, issue 13 item 3): tenant "hog" has a
//! large backlog and opens every stream its plan allows (64) with the
//! largest window the plan allows (its whole 64 MiB delivery-bytes limit),
//! and never reads a push. The broker runs as its own process (the built
//! `tallyq` binary), so its RSS (/proc/<pid>/status VmRSS) is the broker's
//! alone. Reports, per run: RSS before the streams, the highest RSS while
//! they are held, the growth against the plan limit, the bytes the broker
//! says are outstanding (GetQuota), and tenant "calm"'s produce+fetch round
//! trip p50/p99 before and while the hog holds its streams, with the ratio;
//! then medians and worst runs over all runs.
//!
//! A second phase per run: 64 streams with the default window that read and
//! ack everything until a 256 MiB backlog is drained, then stay open and
//! idle with nothing outstanding. Their RSS growth is memory held per stream
//! outside the delivery-bytes pool (transport and decode buffers).
//!
//! A third phase per run (`memory_bound/fetch.rs`): tenant "fetchhog" sends
//! 16 connections x 128 Fetches for 1000 messages each on a 256 MiB
//! backlog and never reads an answer nor acks; its RSS growth against the
//! same 64 MiB limit, and calm's round trip meanwhile.
//!
//! Run: `cargo bench --bench memory_bound` (a few minutes). Loopback only,
//! temp data dirs, every wait bounded. Measurement aids:
//! `MEMORY_BOUND_RUNS=n` (default 3) and `MEMORY_BOUND_WRAP="heaptrack -o
//! /tmp/ht"` (runs the broker under a profiler; it is stopped with SIGTERM
//! so the profiler writes its data); `MEMORY_BOUND_PHASES=fetch` runs only
//! the Fetch phase, `MEMORY_BOUND_FETCH_CONNECTIONS=n` (default 16) sets its
//! connections.
//!
//! `MEMORY_BOUND_BROKER=path` measures another tallyq binary.
//! `MEMORY_BOUND_PHASES=refetch` runs only the re-fetch phase
//! (`memory_bound/fetch.rs`): tenant "refetch" keeps 16 connections open
//! and re-fetches on new streams after each lock expiry (10 s locks, 4
//! rounds), never reading nor acking; its RSS growth against the limit.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

#[path = "memory_bound/fetch.rs"]
mod fetch;
use tallyq::client::{Client, Consumer};
use tallyq::proto::v1 as pb;

const RUNS: usize = 3;
const MIB: u64 = 1024 * 1024;
/// The standard plan's delivery bytes outstanding per tenant.
const LIMIT: u64 = 64 * MIB;
/// The hog's backlog per subscription: far above the limit.
pub(crate) const BACKLOG_BATCHES: usize = 64; // x 4 MiB = 256 MiB
const STREAMS: usize = 64;
const SUBS: usize = 5;
const ROUND_TRIPS: usize = 300;
pub(crate) const HOLD: Duration = Duration::from_secs(5);

struct Broker {
    child: Child,
    /// The broker process itself (below a wrapper, if one is used).
    pid: u32,
    address: String,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = dir.path().join("operator.token");
        std::fs::write(&token, "tqop_memory_bound_bench_operator_credential").unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        // MEMORY_BOUND_WRAP (e.g. "heaptrack -o /tmp/ht"): a measurement aid
        // that runs the broker under a profiler; RSS is then read from the
        // broker process below the wrapper.
        let wrap: Vec<String> = std::env::var("MEMORY_BOUND_WRAP")
            .map(|w| w.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        // MEMORY_BOUND_BROKER: another tallyq binary to measure (e.g. a
        // build from before a change), instead of this tree's.
        let binary = std::env::var("MEMORY_BOUND_BROKER")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tallyq").to_string());
        let mut command = match wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        let mut child = command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--operator-token-file")
            .arg(&token)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start tallyq");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = loop {
            let Some(Ok(line)) = lines.next() else {
                let err = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
                panic!("tallyq exited before listening: {err}");
            };
            if let Some(addr) = line.strip_prefix("tallyq listening on ") {
                break format!("http://{addr}");
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let pid = broker_pid(child.id());
        Broker {
            child,
            pid,
            address,
            _dir: dir,
        }
    }

    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("read /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib * 1024
    }
}

/// The broker's own process: `pid` itself, or (under a wrapper such as
/// heaptrack's script) the descendant whose command is `tallyq`.
fn broker_pid(pid: u32) -> u32 {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == "tallyq" {
        return pid;
    }
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .map(broker_pid)
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "tallyq")
        })
        .unwrap_or(pid)
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.pid != self.child.id() {
            // Under a wrapper: stop the broker gracefully so a profiler
            // writes its data, then wait for the wrapper.
            let _ = Command::new("kill").arg(self.pid.to_string()).status();
            let _ = self.child.wait();
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn tenant(operator: &Client, id: &str) -> Client {
    let secret = tenant_secret(operator, id).await;
    operator.with_token(&secret).unwrap()
}

/// Creates tenant `id` with rates that do not bind; returns its key.
async fn tenant_secret(operator: &Client, id: &str) -> String {
    operator
        .operator()
        .create_tenant(pb::CreateTenantRequest {
            id: id.into(),
            ..Default::default()
        })
        .await
        .expect("create tenant");
    let lifted = [
        ("produce_units_per_second", 1_000_000_000u64),
        ("produce_burst_units", 1_000_000_000),
        ("consume_units_per_second_per_topic", 1_000_000_000),
        ("control_calls_per_second", 1_000_000),
    ];
    operator
        .operator()
        .update_tenant(pb::UpdateTenantRequest {
            id: id.into(),
            set_quota_overrides: lifted.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        })
        .await
        .expect("lift rates");
    operator
        .operator()
        .create_api_key(pb::CreateApiKeyRequest {
            tenant: id.into(),
            scopes: vec![1, 2, 3],
            ..Default::default()
        })
        .await
        .expect("key")
        .into_inner()
        .secret
}

async fn topic_with_subs(client: &Client, topic: &str, subs: &[String], lock_seconds: u32) {
    client
        .admin()
        .create_topic(pb::CreateTopicRequest {
            name: topic.into(),
            ..Default::default()
        })
        .await
        .expect("topic");
    for sub in subs {
        client
            .admin()
            .create_subscription(pb::CreateSubscriptionRequest {
                topic: topic.into(),
                name: sub.clone(),
                config: Some(pb::SubscriptionConfig {
                    lock_seconds,
                    ..Default::default()
                }),
                start: 0,
            })
            .await
            .expect("subscription");
    }
}

/// Calm's produce-then-fetch round trips (µs).
async fn round_trips(calm: &Client) -> (u64, u64) {
    let mut h = Histogram::<u64>::new(3).unwrap();
    for i in 0..ROUND_TRIPS {
        let start = Instant::now();
        calm.produce(
            "c",
            vec![pb::Message {
                payload: vec![b'c'; 1024].into(),
                ..Default::default()
            }],
        )
        .await
        .expect("calm produce");
        let got = calm
            .broker()
            .fetch(pb::FetchRequest {
                topic: "c".into(),
                subscription: "c".into(),
                max_messages: 1,
                max_wait_ms: 5000,
            })
            .await
            .expect("calm fetch")
            .into_inner()
            .deliveries;
        assert_eq!(got.len(), 1, "calm round trip {i}");
        let _ = h.record(start.elapsed().as_micros() as u64);
    }
    (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
}

async fn outstanding(hog: &Client) -> u64 {
    hog.admin()
        .get_quota(pb::GetQuotaRequest {})
        .await
        .expect("quota")
        .into_inner()
        .quotas
        .iter()
        .find(|q| q.name == "max_outstanding_delivery_bytes")
        .map(|q| q.used)
        .unwrap_or(0)
}

struct RunResult {
    rss_before: u64,
    rss_held: u64,
    held_bytes: u64,
    quiet: (u64, u64),
    loaded: (u64, u64),
    refused_window: String,
    refused_65th: String,
    /// RSS before and after the second phase (streams that read, ack and
    /// go idle), and the bytes outstanding then.
    idle: (u64, u64, u64),
    /// The Fetch-never-read phase.
    fetch: fetch::FetchResult,
}

/// The second phase: 64 streams with the default 4 MiB window on one
/// subscription that each read and ack every push until the backlog is
/// gone, then stay open, idle, with nothing outstanding. Whatever RSS they
/// still hold is held per stream, outside the delivery-bytes pool.
async fn drain_then_idle(broker: &Broker, hog: &Client) -> (u64, u64, u64) {
    topic_with_subs(hog, "drain", &["d".to_string()], 60).await;
    let batch: Vec<pb::Message> = (0..64)
        .map(|_| pb::Message {
            payload: vec![b'd'; 64 * 1024 - 16].into(),
            ..Default::default()
        })
        .collect();
    for _ in 0..BACKLOG_BATCHES {
        hog.produce("drain", batch.clone())
            .await
            .expect("hog produce");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = broker.rss_bytes();
    let total = (BACKLOG_BATCHES * batch.len()) as u64;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<u64>(STREAMS);
    let mut idle = Vec::new();
    for _ in 0..STREAMS {
        let mut consumer = hog
            .consume("drain", "d", 10_000, 0)
            .await
            .expect("drain stream");
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let done = done_tx.clone();
        idle.push((
            stop_tx,
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        next = consumer.next() => {
                            let Ok(Some(pushed)) = next else { break };
                            let offsets: Vec<u64> = pushed.iter().map(|d| d.offset).collect();
                            let n = offsets.len() as u64;
                            consumer.ack(offsets).await.expect("ack");
                            let _ = done.send(n).await;
                        }
                        _ = &mut stop_rx => break,
                    }
                }
                consumer
            }),
        ));
    }
    let mut acked = 0;
    let until = Instant::now() + Duration::from_secs(120);
    while acked < total && Instant::now() < until {
        if let Ok(Some(n)) = tokio::time::timeout(Duration::from_secs(5), done_rx.recv()).await {
            acked += n;
        }
    }
    assert_eq!(acked, total, "every drained message acked");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = broker.rss_bytes();
    let held = outstanding(hog).await;
    let mut streams = Vec::new();
    for (stop, task) in idle {
        let _ = stop.send(());
        streams.push(task.await.expect("drain task"));
    }
    drop(streams);
    (before, after, held)
}

async fn run() -> RunResult {
    let broker = Broker::start();
    let operator = Client::connect(
        &broker.address,
        "tqop_memory_bound_bench_operator_credential",
    )
    .await
    .expect("connect");
    let hog = tenant(&operator, "hog").await;
    let calm = tenant(&operator, "calm").await;
    let subs: Vec<String> = (0..SUBS).map(|i| format!("s{i}")).collect();
    topic_with_subs(&hog, "big", &subs, 60).await;
    topic_with_subs(&calm, "c", &["c".to_string()], 0).await;
    let batch: Vec<pb::Message> = (0..64)
        .map(|_| pb::Message {
            payload: vec![b'h'; 64 * 1024 - 16].into(),
            ..Default::default()
        })
        .collect();
    for _ in 0..BACKLOG_BATCHES {
        hog.produce("big", batch.clone())
            .await
            .expect("hog produce");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let quiet = round_trips(&calm).await;
    let rss_before = broker.rss_bytes();

    let refused_window = match hog.consume("big", "s0", 10_000, LIMIT + 1).await {
        Ok(_) => "accepted".to_string(),
        Err(s) => format!("{:?}", s.code()),
    };
    let mut held: Vec<Consumer> = Vec::new();
    for i in 0..STREAMS {
        held.push(
            hog.consume("big", &subs[i % SUBS], 10_000, LIMIT)
                .await
                .expect("hog stream"),
        );
    }
    let refused_65th = match hog.consume("big", "s0", 10_000, LIMIT).await {
        Ok(_) => "accepted".to_string(),
        Err(s) => format!("{:?}", s.code()),
    };
    // Never read: let the broker push what the credit allows, and watch RSS.
    let mut rss_held = 0;
    let until = Instant::now() + HOLD;
    while Instant::now() < until {
        rss_held = rss_held.max(broker.rss_bytes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held_bytes = outstanding(&hog).await;
    let loaded = round_trips(&calm).await;
    rss_held = rss_held.max(broker.rss_bytes());
    drop(held);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = drain_then_idle(&broker, &hog).await;
    let fetch = fetch::fetch_never_read(&broker, &operator, &calm).await;
    RunResult {
        rss_before,
        rss_held,
        held_bytes,
        quiet,
        loaded,
        refused_window,
        refused_65th,
        idle,
        fetch,
    }
}

/// A broker of its own with a calm tenant, and that tenant's quiet round
/// trips (the baseline a phase's held latency is compared with).
async fn calm_broker() -> (Broker, Client, Client, (u64, u64)) {
    let broker = Broker::start();
    let operator = Client::connect(
        &broker.address,
        "tqop_memory_bound_bench_operator_credential",
    )
    .await
    .expect("connect");
    let calm = tenant(&operator, "calm").await;
    topic_with_subs(&calm, "c", &["c".to_string()], 0).await;
    let quiet = round_trips(&calm).await;
    (broker, operator, calm, quiet)
}

/// Only the Fetch phase, on a broker of its own (`MEMORY_BOUND_PHASES=fetch`).
async fn run_fetch_only() -> ((u64, u64), fetch::FetchResult) {
    let (broker, operator, calm, quiet) = calm_broker().await;
    let fetch = fetch::fetch_never_read(&broker, &operator, &calm).await;
    (quiet, fetch)
}

/// Only the re-fetch phase, on a broker of its own
/// (`MEMORY_BOUND_PHASES=refetch`).
async fn run_refetch_only() -> ((u64, u64), fetch::RefetchResult) {
    let (broker, operator, calm, quiet) = calm_broker().await;
    let refetch = fetch::refetch_after_expiry(&broker, &operator, &calm).await;
    (quiet, refetch)
}

/// Runs the re-fetch phase `runs` times; prints each run, medians and worst.
fn refetch_runs(rt: &tokio::runtime::Runtime, runs: usize) {
    let (mut over, mut p99) = (Vec::new(), Vec::new());
    for n in 1..=runs {
        let (quiet, r) = rt.block_on(run_refetch_only());
        let grown = r.rss_held.saturating_sub(r.rss_before);
        let ratio = r.loaded.1 as f64 / quiet.1.max(1) as f64;
        let held: Vec<String> = r
            .held_bytes
            .iter()
            .map(|b| format!("{:.1}", mib(*b)))
            .collect();
        println!(
            "run {n}: {} connections kept open, {} rounds of {} Fetches each after the last \
             round's locks ended, never read: RSS before {:.1} MiB, held max {:.1} MiB, growth \
             {:.1} MiB = limit {} MiB {:+.1} MiB (outstanding per GetQuota after each round: {} \
             MiB); calm p99 quiet/held {}/{} us (ratio {:.2})",
            fetch::connections(),
            fetch::REFETCH_ROUNDS,
            fetch::connections() * fetch::REFETCHES_PER_ROUND,
            mib(r.rss_before),
            mib(r.rss_held),
            mib(grown),
            LIMIT / MIB,
            mib(grown) - mib(LIMIT),
            held.join(", "),
            quiet.1,
            r.loaded.1,
            ratio,
        );
        over.push(mib(grown) - mib(LIMIT));
        p99.push(ratio);
    }
    println!(
        "over {runs} runs: re-fetch after lock expiry: RSS growth over the {} MiB limit median \
         {:+.1} MiB (worst {:+.1}); calm p99 ratio held/quiet median {:.2} (worst {:.2})",
        LIMIT / MIB,
        median(over.clone()),
        worst(&over),
        median(p99.clone()),
        worst(&p99),
    );
}

/// Prints run `n`'s Fetch phase; returns its RSS growth over the limit (MiB)
/// and calm's p50 and p99 ratio held/quiet.
fn report_fetch(n: usize, quiet: (u64, u64), f: &fetch::FetchResult) -> (f64, f64, f64) {
    let grown = f.rss_held.saturating_sub(f.rss_before);
    let p50 = f.loaded.0 as f64 / quiet.0.max(1) as f64;
    let p99 = f.loaded.1 as f64 / quiet.1.max(1) as f64;
    println!(
        "run {n}: {} connections x {} Fetches never read: RSS before {:.1} MiB, held max {:.1} \
         MiB, growth {:.1} MiB = limit {} MiB {:+.1} MiB (outstanding per GetQuota {:.1} MiB; \
         in flight {} messages = {:.1} MiB); calm p50/p99 held {}/{} us (ratio p50 {:.2}, \
         p99 {:.2})",
        fetch::connections(),
        fetch::FETCHES_PER_CONNECTION,
        mib(f.rss_before),
        mib(f.rss_held),
        mib(grown),
        LIMIT / MIB,
        mib(grown) - mib(LIMIT),
        mib(f.held_bytes),
        f.in_flight,
        mib(f.in_flight_bytes),
        f.loaded.0,
        f.loaded.1,
        p50,
        p99,
    );
    (mib(grown) - mib(LIMIT), p50, p99)
}

/// Medians and worst runs of the Fetch phase.
fn summarize_fetch(runs: usize, over: Vec<f64>, p50: Vec<f64>, p99: Vec<f64>) {
    println!(
        "over {runs} runs: Fetch never read: RSS growth over the {} MiB limit median {:+.1} MiB \
         (worst {:+.1}); calm ratio held/quiet p50 median {:.2} (worst {:.2}), p99 median {:.2} \
         (worst {:.2})",
        LIMIT / MIB,
        median(over.clone()),
        worst(&over),
        median(p50.clone()),
        worst(&p50),
        median(p99.clone()),
        worst(&p99),
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn worst(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::MIN, f64::max)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

fn main() {
    let runs: usize = std::env::var("MEMORY_BOUND_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(RUNS);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut f_over, mut f_p50, mut f_p99) = (Vec::new(), Vec::new(), Vec::new());
    if std::env::var("MEMORY_BOUND_PHASES").is_ok_and(|p| p == "refetch") {
        refetch_runs(&rt, runs);
        return;
    }
    if std::env::var("MEMORY_BOUND_PHASES").is_ok_and(|p| p == "fetch") {
        for n in 1..=runs {
            let (quiet, f) = rt.block_on(run_fetch_only());
            let (over, p50, p99) = report_fetch(n, quiet, &f);
            f_over.push(over);
            f_p50.push(p50);
            f_p99.push(p99);
        }
        summarize_fetch(runs, f_over, f_p50, f_p99);
        return;
    }
    let mut growth = Vec::new();
    let mut idle_growth = Vec::new();
    let mut over = Vec::new();
    let mut p50_ratio = Vec::new();
    let mut p99_ratio = Vec::new();
    let mut p50_held = Vec::new();
    let mut p99_held = Vec::new();
    for n in 1..=runs {
        let r = rt.block_on(run());
        let grown = r.rss_held.saturating_sub(r.rss_before);
        println!(
            "run {n}: RSS before {:.1} MiB, held max {:.1} MiB, growth {:.1} MiB = limit {} MiB \
             {:+.1} MiB (outstanding per GetQuota {:.1} MiB); window above limit: {}; \
             65th stream: {}; calm p50/p99 quiet {}/{} us, held {}/{} us \
             (ratio p50 {:.2}, p99 {:.2})",
            mib(r.rss_before),
            mib(r.rss_held),
            mib(grown),
            LIMIT / MIB,
            mib(grown) - mib(LIMIT),
            mib(r.held_bytes),
            r.refused_window,
            r.refused_65th,
            r.quiet.0,
            r.quiet.1,
            r.loaded.0,
            r.loaded.1,
            r.loaded.0 as f64 / r.quiet.0.max(1) as f64,
            r.loaded.1 as f64 / r.quiet.1.max(1) as f64,
        );
        let (idle_before, idle_after, idle_held) = r.idle;
        let idle_grown = idle_after.saturating_sub(idle_before);
        println!(
            "run {n}: {STREAMS} streams that read and acked everything, now idle: RSS {:.1} -> \
             {:.1} MiB, growth {:.1} MiB ({:.2} MiB per stream) with {:.1} MiB outstanding",
            mib(idle_before),
            mib(idle_after),
            mib(idle_grown),
            mib(idle_grown) / STREAMS as f64,
            mib(idle_held),
        );
        let (f, p50, p99) = report_fetch(n, r.quiet, &r.fetch);
        f_over.push(f);
        f_p50.push(p50);
        f_p99.push(p99);
        idle_growth.push(mib(idle_grown));
        growth.push(mib(grown));
        over.push(mib(grown) - mib(LIMIT));
        p50_ratio.push(r.loaded.0 as f64 / r.quiet.0.max(1) as f64);
        p99_ratio.push(r.loaded.1 as f64 / r.quiet.1.max(1) as f64);
        p50_held.push(r.loaded.0 as f64);
        p99_held.push(r.loaded.1 as f64);
    }
    println!(
        "over {runs} runs: RSS growth median {:.1} MiB (worst {:.1}) against a {} MiB limit, \
         i.e. limit {:+.1} MiB (worst {:+.1})",
        median(growth.clone()),
        worst(&growth),
        LIMIT / MIB,
        median(over.clone()),
        worst(&over),
    );
    println!(
        "over {runs} runs: idle streams after reading: RSS growth median {:.1} MiB (worst {:.1})",
        median(idle_growth.clone()),
        worst(&idle_growth),
    );
    summarize_fetch(runs, f_over, f_p50, f_p99);
    println!(
        "over {runs} runs: calm round trip while held p50 median {:.0} us (worst {:.0}), \
         p99 median {:.0} us (worst {:.0}); ratio held/quiet p50 median {:.2} (worst {:.2}), \
         p99 median {:.2} (worst {:.2})",
        median(p50_held.clone()),
        worst(&p50_held),
        median(p99_held.clone()),
        worst(&p99_held),
        median(p50_ratio.clone()),
        worst(&p50_ratio),
        median(p99_ratio.clone()),
        worst(&p99_ratio),
    );
}
