//! The load tool behind `tallyq bench`: P producers sending batches of B
//! messages of S bytes (at full speed or at a fixed total rate) while C
//! consumers on one subscription ack what they receive. It measures
//! produce->ack latency (the reply that says "stored") and produce->deliver
//! latency (send time stamped in the payload, read at delivery), and reads the
//! broker's CPU time and peak RSS from /proc when given its pid. Every loop is
//! bounded by the run's duration.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use tallyq::client::Client;
use tallyq::proto::v1 as pb;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Producer tasks.
    pub producers: usize,
    /// Messages per produce batch.
    pub batch: usize,
    /// Payload bytes per message (at least 16: the send time is stamped in it).
    pub size: usize,
    /// Consumer streams on the subscription (0: produce only).
    pub consumers: usize,
    /// Total messages per second to offer (0: as fast as possible).
    pub rate: u64,
    /// How long to produce.
    pub duration: Duration,
    /// Each consumer's flow-control window (outstanding messages).
    pub window: u32,
    /// Messages carry one of this many device ids, in turn (0: none).
    pub devices: usize,
    /// A slow consumer's wait before it acks each batch (zero: ack at once).
    /// Slow consumers stop when producing stops instead of draining.
    pub ack_delay: Duration,
    /// Topic to produce to.
    pub topic: String,
    /// Subscription to consume from.
    pub subscription: String,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Messages whose produce was acknowledged.
    pub produced: u64,
    /// Messages delivered to the consumers.
    pub delivered: u64,
    /// Seconds of producing.
    pub seconds: f64,
    /// Acknowledged messages per second.
    pub msgs_per_sec: f64,
    /// Acknowledged payload MB (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// produce->ack latency percentiles in microseconds (p50, p99, p999).
    pub ack_us: (u64, u64, u64),
    /// produce->deliver latency percentiles in microseconds (p50, p99, p999).
    pub deliver_us: (u64, u64, u64),
    /// Broker CPU seconds during the run (user + system), when its pid was given.
    pub server_cpu_seconds: Option<f64>,
    /// Broker peak resident set size in bytes, when its pid was given.
    pub server_peak_rss: Option<u64>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn percentiles(h: &Histogram<u64>) -> (u64, u64, u64) {
    (
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
    )
}

/// (CPU seconds, peak RSS bytes) of a process, from /proc.
pub fn process_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    // Linux reports CPU time in clock ticks of 100 Hz on every common platform.
    Some((ticks as f64 / 100.0, hwm_kb * 1024))
}

/// Runs the load against `client` (a tenant key with produce and consume).
pub async fn run(client: &Client, spec: &LoadSpec, server_pid: Option<u32>) -> LoadReport {
    let cpu_before = server_pid.and_then(process_usage).map(|u| u.0);
    let ack = Arc::new(Mutex::new(histogram()));
    let deliver = Arc::new(Mutex::new(histogram()));
    let produced = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let producing = Arc::new(AtomicBool::new(true));

    let mut consumers = Vec::new();
    for _ in 0..spec.consumers {
        let client = client.clone();
        let spec = spec.clone();
        let deliver = deliver.clone();
        let delivered = delivered.clone();
        let produced = produced.clone();
        let producing = producing.clone();
        consumers.push(tokio::spawn(async move {
            let Ok(mut consumer) = client
                .consume(&spec.topic, &spec.subscription, spec.window, 0)
                .await
            else {
                return;
            };
            let mut local = histogram();
            loop {
                // Stop once producing ended and everything acknowledged arrived,
                // or after a grace period.
                let next = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
                let batch = match next {
                    Ok(Ok(Some(batch))) => batch,
                    Ok(_) => break,
                    Err(_) => {
                        if !producing.load(Ordering::SeqCst)
                            && delivered.load(Ordering::SeqCst) >= produced.load(Ordering::SeqCst)
                        {
                            break;
                        }
                        if !producing.load(Ordering::SeqCst) {
                            break;
                        }
                        continue;
                    }
                };
                let now = now_ns();
                let mut offsets = Vec::with_capacity(batch.len());
                for d in &batch {
                    if let Some(sent) = d
                        .message
                        .as_ref()
                        .and_then(|m| m.payload.get(..8))
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_be_bytes)
                    {
                        let _ = local.record((now.saturating_sub(sent) / 1000).max(1));
                    }
                    offsets.push(d.offset);
                }
                delivered.fetch_add(batch.len() as u64, Ordering::SeqCst);
                if !spec.ack_delay.is_zero() {
                    tokio::time::sleep(spec.ack_delay).await;
                }
                if consumer.ack(offsets).await.is_err() {
                    break;
                }
                if !spec.ack_delay.is_zero() && !producing.load(Ordering::SeqCst) {
                    break;
                }
            }
            if let Ok(mut h) = deliver.lock() {
                let _ = h.add(&local);
            }
        }));
    }

    let start = Instant::now();
    let mut producers = Vec::new();
    for _ in 0..spec.producers {
        let client = client.clone();
        let spec = spec.clone();
        let ack = ack.clone();
        let produced = produced.clone();
        producers.push(tokio::spawn(async move {
            let filler = vec![b'x'; spec.size.max(16)];
            let device_ids: Vec<String> = (0..spec.devices).map(|i| format!("dev-{i}")).collect();
            let mut next_device = 0;
            let mut local = histogram();
            let interval = (spec.rate > 0).then(|| {
                Duration::from_secs_f64(
                    spec.batch as f64 * spec.producers as f64 / spec.rate as f64,
                )
            });
            let mut tick = interval.map(|i| {
                let mut t = tokio::time::interval(i);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            while start.elapsed() < spec.duration {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let sent = now_ns();
                let messages: Vec<pb::Message> = (0..spec.batch)
                    .map(|_| {
                        let mut payload = filler.clone();
                        payload[..8].copy_from_slice(&sent.to_be_bytes());
                        let device_id = device_ids
                            .get(next_device % device_ids.len().max(1))
                            .cloned()
                            .unwrap_or_default();
                        next_device += 1;
                        pb::Message {
                            payload: payload.into(),
                            device_id,
                            ..Default::default()
                        }
                    })
                    .collect();
                let began = Instant::now();
                if client.produce(&spec.topic, messages).await.is_ok() {
                    let _ = local.record((began.elapsed().as_micros() as u64).max(1));
                    produced.fetch_add(spec.batch as u64, Ordering::SeqCst);
                }
            }
            if let Ok(mut h) = ack.lock() {
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
    let usage = server_pid.and_then(process_usage);
    let produced = produced.load(Ordering::SeqCst);
    let ack = ack.lock().map(|h| percentiles(&h)).unwrap_or_default();
    let deliver = deliver.lock().map(|h| percentiles(&h)).unwrap_or_default();
    LoadReport {
        produced,
        delivered: delivered.load(Ordering::SeqCst),
        seconds,
        msgs_per_sec: produced as f64 / seconds,
        mb_per_sec: produced as f64 * spec.size.max(16) as f64 / seconds / 1e6,
        ack_us: ack,
        deliver_us: deliver,
        server_cpu_seconds: match (cpu_before, usage) {
            (Some(before), Some((after, _))) => Some(after - before),
            _ => None,
        },
        server_peak_rss: usage.map(|u| u.1),
    }
}

impl LoadReport {
    /// One line of `key=value` pairs (what compare.sh parses).
    pub fn line(&self) -> String {
        format!(
            "produced={} delivered={} seconds={:.2} msgs_per_sec={:.0} mb_per_sec={:.1} ack_p50_us={} ack_p99_us={} ack_p999_us={} deliver_p50_us={} deliver_p99_us={} deliver_p999_us={} server_cpu_s={} server_peak_rss_mb={}",
            self.produced,
            self.delivered,
            self.seconds,
            self.msgs_per_sec,
            self.mb_per_sec,
            self.ack_us.0,
            self.ack_us.1,
            self.ack_us.2,
            self.deliver_us.0,
            self.deliver_us.1,
            self.deliver_us.2,
            self.server_cpu_seconds
                .map(|s| format!("{s:.2}"))
                .unwrap_or_else(|| "-".into()),
            self.server_peak_rss
                .map(|b| format!("{:.0}", b as f64 / 1e6))
                .unwrap_or_else(|| "-".into()),
        )
    }
}
