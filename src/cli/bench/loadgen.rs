//! The load tool behind `tallyq bench`: P producers sending batches of B
//! messages of S bytes (at full speed or at a fixed total rate) while C
//! consumers on one subscription ack what they receive. It measures
//! produce->ack latency (the reply that says "stored") and produce->deliver
//! latency (send time stamped in the payload, read at delivery), and reads the
//! broker's CPU time and peak RSS from /proc when given its pid
//! ([`super::report`]). Every loop is bounded by the run's duration.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use super::report::{histogram, percentiles, process_usage, LoadReport};
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

/// What producers and consumers share while a run is under way.
#[derive(Default)]
struct Progress {
    /// Messages whose produce was acknowledged.
    produced: AtomicU64,
    /// Messages delivered to the consumers.
    delivered: AtomicU64,
    /// Set when every producer has stopped.
    done_producing: AtomicBool,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs the load against `client` (a tenant key with produce and consume).
pub async fn run(client: &Client, spec: &LoadSpec, server_pid: Option<u32>) -> LoadReport {
    let cpu_before = server_pid.and_then(process_usage).map(|u| u.0);
    let progress = Arc::new(Progress::default());
    let consumers: Vec<_> = (0..spec.consumers)
        .map(|_| tokio::spawn(consume(client.clone(), spec.clone(), progress.clone())))
        .collect();
    let start = Instant::now();
    let producers: Vec<_> = (0..spec.producers)
        .map(|_| {
            tokio::spawn(produce(
                client.clone(),
                spec.clone(),
                start,
                progress.clone(),
            ))
        })
        .collect();

    let mut ack = histogram();
    for p in producers {
        if let Ok(local) = p.await {
            let _ = ack.add(&local);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    progress.done_producing.store(true, Ordering::SeqCst);
    let mut deliver = histogram();
    for c in consumers {
        if let Ok(Ok(local)) = tokio::time::timeout(Duration::from_secs(30), c).await {
            let _ = deliver.add(&local);
        }
    }
    let usage = server_pid.and_then(process_usage);
    let produced = progress.produced.load(Ordering::SeqCst);
    LoadReport {
        produced,
        delivered: progress.delivered.load(Ordering::SeqCst),
        seconds,
        msgs_per_sec: produced as f64 / seconds,
        mb_per_sec: produced as f64 * spec.size.max(16) as f64 / seconds / 1e6,
        ack_us: percentiles(&ack),
        deliver_us: percentiles(&deliver),
        server_cpu_seconds: match (cpu_before, usage) {
            (Some(before), Some((after, _))) => Some(after - before),
            _ => None,
        },
        server_peak_rss: usage.map(|u| u.1),
    }
}

/// One consumer stream: acks what it receives and records produce->deliver
/// latency from the send time stamped in each payload. It stops when the
/// stream ends, when an ack fails, or at the first 500 ms without a delivery
/// after producing has stopped (a slow consumer stops as soon as producing
/// has stopped, without draining).
async fn consume(client: Client, spec: LoadSpec, progress: Arc<Progress>) -> Histogram<u64> {
    let mut local = histogram();
    let Ok(mut consumer) = client
        .consume(&spec.topic, &spec.subscription, spec.window, 0)
        .await
    else {
        return local;
    };
    let producing = || !progress.done_producing.load(Ordering::SeqCst);
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
        let batch = match next {
            Ok(Ok(Some(batch))) => batch,
            Ok(_) => break,
            Err(_) if producing() => continue,
            Err(_) => break,
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
        progress
            .delivered
            .fetch_add(batch.len() as u64, Ordering::SeqCst);
        if !spec.ack_delay.is_zero() {
            tokio::time::sleep(spec.ack_delay).await;
        }
        if consumer.ack(offsets).await.is_err() {
            break;
        }
        if !spec.ack_delay.is_zero() && !producing() {
            break;
        }
    }
    local
}

/// One producer: sends batches until `spec.duration` has passed since
/// `start` (paced when `spec.rate` is set) and records produce->ack latency.
async fn produce(
    client: Client,
    spec: LoadSpec,
    start: Instant,
    progress: Arc<Progress>,
) -> Histogram<u64> {
    let filler = vec![b'x'; spec.size.max(16)];
    let device_ids: Vec<String> = (0..spec.devices).map(|i| format!("dev-{i}")).collect();
    let mut next_device = 0;
    let mut local = histogram();
    let interval = (spec.rate > 0).then(|| {
        Duration::from_secs_f64(spec.batch as f64 * spec.producers as f64 / spec.rate as f64)
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
            progress
                .produced
                .fetch_add(spec.batch as u64, Ordering::SeqCst);
        }
    }
    local
}
