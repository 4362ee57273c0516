//! NATS JetStream load in the shape of `tallyq bench`: P producers publish
//! batches of B messages of S bytes to a file-backed stream (each batch's
//! publish acks awaited together: the same "acknowledged only after it is
//! stored" contract), C consumers pull with explicit acks. Prints one
//! `key=value` line like `tallyq bench`. Bounded by --duration-secs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer::AckPolicy, stream::StorageType};
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;

#[derive(Parser, Debug, Clone)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:4222")]
    server: String,
    #[arg(long, default_value_t = 4)]
    producers: usize,
    #[arg(long, default_value_t = 100)]
    batch: usize,
    #[arg(long, default_value_t = 1024)]
    size: usize,
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long)]
    server_pid: Option<u32>,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram")
}

fn process_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kb: u64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some((ticks as f64 / 100.0, hwm_kb * 1024))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = async_nats::connect(&args.server).await?;
    let js = jetstream::new(client);
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: "BENCH".into(),
            subjects: vec!["bench".into()],
            storage: StorageType::File,
            ..Default::default()
        })
        .await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            "bench",
            jetstream::consumer::pull::Config {
                durable_name: Some("bench".into()),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: jetstream::consumer::DeliverPolicy::New,
                ..Default::default()
            },
        )
        .await?;

    let cpu_before = args.server_pid.and_then(process_usage).map(|u| u.0);
    let ack_hist = Arc::new(Mutex::new(histogram()));
    let deliver_hist = Arc::new(Mutex::new(histogram()));
    let produced = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let producing = Arc::new(AtomicBool::new(true));

    let mut consumers = Vec::new();
    for _ in 0..args.consumers {
        let consumer = consumer.clone();
        let deliver_hist = deliver_hist.clone();
        let delivered = delivered.clone();
        let produced = produced.clone();
        let producing = producing.clone();
        consumers.push(tokio::spawn(async move {
            let Ok(mut messages) = consumer.messages().await else { return };
            let mut local = histogram();
            loop {
                match tokio::time::timeout(Duration::from_millis(500), messages.next()).await {
                    Ok(Some(Ok(message))) => {
                        if let Some(sent) = message.payload.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes) {
                            let _ = local.record((now_ns().saturating_sub(sent) / 1000).max(1));
                        }
                        let _ = message.ack().await;
                        delivered.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => break,
                    Err(_) => {
                        if !producing.load(Ordering::SeqCst) && delivered.load(Ordering::SeqCst) >= produced.load(Ordering::SeqCst) {
                            break;
                        }
                        if !producing.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                }
            }
            if let Ok(mut h) = deliver_hist.lock() {
                let _ = h.add(&local);
            }
        }));
    }

    let start = Instant::now();
    let duration = Duration::from_secs(args.duration_secs.max(1));
    let mut producers = Vec::new();
    for _ in 0..args.producers {
        let js = js.clone();
        let args = args.clone();
        let ack_hist = ack_hist.clone();
        let produced = produced.clone();
        producers.push(tokio::spawn(async move {
            let filler = vec![b'x'; args.size.max(16)];
            let mut local = histogram();
            let mut tick = (args.rate > 0).then(|| {
                let mut t = tokio::time::interval(Duration::from_secs_f64(
                    args.batch as f64 * args.producers as f64 / args.rate as f64,
                ));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            while start.elapsed() < duration {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let sent = now_ns();
                let began = Instant::now();
                let mut acks = Vec::with_capacity(args.batch);
                let mut ok = true;
                for _ in 0..args.batch {
                    let mut payload = filler.clone();
                    payload[..8].copy_from_slice(&sent.to_be_bytes());
                    match js.publish("bench", payload.into()).await {
                        Ok(ack) => acks.push(ack),
                        Err(_) => ok = false,
                    }
                }
                for ack in acks {
                    if ack.await.is_err() {
                        ok = false;
                    }
                }
                if ok {
                    let _ = local.record((began.elapsed().as_micros() as u64).max(1));
                    produced.fetch_add(args.batch as u64, Ordering::SeqCst);
                }
            }
            if let Ok(mut h) = ack_hist.lock() {
                let _ = h.add(&local);
            }
        }));
    }
    for p in producers {
        let _ = p.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    producing.store(false, Ordering::SeqCst);
    for c in consumers {
        let _ = tokio::time::timeout(Duration::from_secs(30), c).await;
    }
    let usage = args.server_pid.and_then(process_usage);
    let produced = produced.load(Ordering::SeqCst);
    let p = |h: &Histogram<u64>| (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.value_at_quantile(0.999));
    let ack = p(&ack_hist.lock().unwrap());
    let del = p(&deliver_hist.lock().unwrap());
    println!(
        "system=nats produced={} delivered={} seconds={:.2} msgs_per_sec={:.0} mb_per_sec={:.1} ack_p50_us={} ack_p99_us={} ack_p999_us={} deliver_p50_us={} deliver_p99_us={} deliver_p999_us={} server_cpu_s={} server_peak_rss_mb={}",
        produced,
        delivered.load(Ordering::SeqCst),
        seconds,
        produced as f64 / seconds,
        produced as f64 * args.size.max(16) as f64 / seconds / 1e6,
        ack.0, ack.1, ack.2, del.0, del.1, del.2,
        match (cpu_before, usage) { (Some(b), Some((a, _))) => format!("{:.2}", a - b), _ => "-".into() },
        usage.map(|u| format!("{:.0}", u.1 as f64 / 1e6)).unwrap_or_else(|| "-".into()),
    );
    Ok(())
}
