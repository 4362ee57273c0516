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
    /// Each producer sends its batches on one ProduceStream instead of one
    /// Produce request each.
    pub produce_stream: bool,
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
    let connections = producer_connections(client, spec.producers).await;
    let start = Instant::now();
    let producers: Vec<_> = (0..spec.producers)
        .map(|p| {
            let client = connections[p % connections.len()].clone();
            let (spec, progress) = (spec.clone(), progress.clone());
            if spec.produce_stream {
                tokio::spawn(produce_on_stream(client, spec, start, progress))
            } else {
                tokio::spawn(produce(client, spec, start, progress))
            }
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

/// Producers sharing one connection. The broker serves at most 128
/// concurrent streams per connection (`wire.rs`); a producer beyond that
/// would wait for a free stream (a ProduceStream for the whole run) instead
/// of producing, so the producers are spread over one connection per this
/// many, as a client with that many concurrent calls would.
const PRODUCERS_PER_CONNECTION: usize = 100;
const _: () =
    assert!(PRODUCERS_PER_CONNECTION as u32 <= tallyq::wire::MAX_CONCURRENT_STREAMS_PER_CONNECTION);

/// `client` and, for more than [`PRODUCERS_PER_CONNECTION`] producers, more
/// connections like it (one that cannot be opened is left out: its
/// producers share the others).
async fn producer_connections(client: &Client, producers: usize) -> Vec<Client> {
    let mut connections = vec![client.clone()];
    for _ in 1..producers.div_ceil(PRODUCERS_PER_CONNECTION) {
        match client.new_connection().await {
            Ok(more) => connections.push(more),
            Err(e) => eprintln!("bench: another connection failed, producers share the rest: {e}"),
        }
    }
    connections
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
/// `start` (paced when `spec.rate` is set), awaiting each reply before the
/// next send, and records produce->ack latency. Lean on purpose: on a small
/// machine the load tool shares the cores with the broker, so its own CPU
/// per request bounds what a run can measure. One Broker client for the
/// producer's life (one channel for all producers), the batch built straight
/// into the request (nothing cloned for a retry that lifted quotas never
/// need), counts kept locally and added once at the end.
async fn produce(
    client: Client,
    spec: LoadSpec,
    start: Instant,
    progress: Arc<Progress>,
) -> Histogram<u64> {
    let mut producer = ProducerState::new(&spec);
    let mut broker = client.broker();
    while start.elapsed() < spec.duration {
        producer.pace().await;
        let sent = now_ns();
        let began = Instant::now();
        let mut attempt = 0;
        loop {
            match broker.produce(producer.request(&spec, sent)).await {
                Ok(_) => producer.stored(&spec, began),
                // As `Client::produce` does: a rate refusal is sent again
                // after the wait the broker asks for, a bounded number of times.
                Err(status) if attempt < tallyq::client::MAX_RETRIES => {
                    if let Some(wait) = tallyq::client::retry_after(&status) {
                        attempt += 1;
                        tokio::time::sleep(wait.min(tallyq::client::MAX_RETRY_WAIT)).await;
                        continue;
                    }
                }
                Err(_) => {}
            }
            break;
        }
    }
    producer.finish(&progress)
}

/// What one producer keeps between its sends, whichever way it sends: its
/// pace, the device ids its messages take in turn, its latencies and its
/// count (added to the run's once, at the end).
struct ProducerState {
    tick: Option<tokio::time::Interval>,
    device_ids: Vec<String>,
    next_device: usize,
    latencies: Histogram<u64>,
    produced: u64,
}

impl ProducerState {
    fn new(spec: &LoadSpec) -> Self {
        // Paced when the run offers a fixed total rate (`spec.rate`
        // messages/s over all producers); none at full speed.
        let tick = (spec.rate > 0).then(|| {
            let each = spec.batch as f64 * spec.producers as f64 / spec.rate as f64;
            let mut t = tokio::time::interval(Duration::from_secs_f64(each));
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        ProducerState {
            tick,
            device_ids: (0..spec.devices).map(|i| format!("dev-{i}")).collect(),
            next_device: 0,
            latencies: histogram(),
            produced: 0,
        }
    }

    /// Waits for the next send's turn (at once at full speed).
    async fn pace(&mut self) {
        if let Some(t) = self.tick.as_mut() {
            t.tick().await;
        }
    }

    /// The next request: `spec.batch` messages, each stamped with `sent` and
    /// carrying the next device ids.
    fn request(&self, spec: &LoadSpec, sent: u64) -> pb::ProduceRequest {
        let size = spec.size.max(16);
        let messages = (0..spec.batch)
            .map(|i| {
                let mut payload = bytes::BytesMut::with_capacity(size);
                payload.extend_from_slice(&sent.to_be_bytes());
                payload.resize(size, b'x');
                let device_id = match self.device_ids.len() {
                    0 => String::new(),
                    n => self.device_ids[(self.next_device + i) % n].clone(),
                };
                pb::Message {
                    payload: payload.freeze(),
                    device_id,
                    ..Default::default()
                }
            })
            .collect();
        pb::ProduceRequest {
            topic: spec.topic.clone(),
            messages,
        }
    }

    /// The batch sent at `began` was stored.
    fn stored(&mut self, spec: &LoadSpec, began: Instant) {
        let _ = self
            .latencies
            .record((began.elapsed().as_micros() as u64).max(1));
        self.produced += spec.batch as u64;
        self.next_device += spec.batch;
    }

    /// Adds the count to the run's; the latencies.
    fn finish(self, progress: &Progress) -> Histogram<u64> {
        progress.produced.fetch_add(self.produced, Ordering::SeqCst);
        self.latencies
    }
}

/// One producer on its own ProduceStream (`--produce-stream`): as
/// [`produce`], one batch in flight, the next sent when the reply that says
/// "stored" arrived, but every batch a message on one long-lived stream
/// instead of its own request (as Pulsar and Kafka producers keep one
/// connection). A stream that ends or fails is opened again (after the wait
/// a refusal asks for); a batch whose stream failed is not counted.
async fn produce_on_stream(
    client: Client,
    spec: LoadSpec,
    start: Instant,
    progress: Arc<Progress>,
) -> Histogram<u64> {
    let mut producer = ProducerState::new(&spec);
    let mut broker = client.broker();
    'streams: while start.elapsed() < spec.duration {
        let (requests, outbound) = tokio::sync::mpsc::channel(1);
        let outbound = tokio_stream::wrappers::ReceiverStream::new(outbound);
        let Ok(replies) = broker.produce_stream(outbound).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let mut replies = replies.into_inner();
        while start.elapsed() < spec.duration {
            producer.pace().await;
            let sent = now_ns();
            let began = Instant::now();
            if requests.send(producer.request(&spec, sent)).await.is_err() {
                continue 'streams;
            }
            match replies.message().await {
                Ok(Some(_)) => producer.stored(&spec, began),
                Ok(None) => continue 'streams,
                // The stream ended on a refusal: open the next one after the
                // wait the broker asks for (rate), or a short pause.
                Err(status) => {
                    let wait = tallyq::client::retry_after(&status)
                        .unwrap_or(Duration::from_millis(10))
                        .min(tallyq::client::MAX_RETRY_WAIT);
                    tokio::time::sleep(wait).await;
                    continue 'streams;
                }
            }
        }
    }
    producer.finish(&progress)
}
