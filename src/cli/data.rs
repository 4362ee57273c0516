//! The data plane: `tallyq produce`, `consume`, `seek` and `export`.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use tallyq::client::Client;
use tallyq::proto::v1 as pb;

/// `tallyq produce` options.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic name.
    pub topic: String,
    /// Message payloads; when none, each line of standard input is one message.
    pub messages: Vec<String>,
    /// Device id for every message.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub device_id: String,
    /// Dedup id (only with a single message).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub dedup_id: String,
    /// Header key=value (repeatable).
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Most messages per batch when reading standard input.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Most bytes per batch when reading standard input, counted as they
    /// travel (payload, headers, ids and framing), so a batch stays under the
    /// plan's batch limit (4 MiB on the default plans) and the 4 MiB a stock
    /// gRPC client sends by default; lower it for a plan with a smaller limit.
    #[arg(long, default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..=MAX_BATCH_BYTES))]
    pub batch_bytes: u64,
}

/// The largest `--batch-bytes`: 4 MiB less room for the request's own
/// framing (topic name, field tags), so a whole request fits in 4 MiB.
const MAX_BATCH_BYTES: u64 = 4 * 1024 * 1024 - 64 * 1024;

/// What one message adds to a produce request on the wire: its encoding and
/// the tag and length prefix of the repeated field.
fn wire_size(message: &pb::Message) -> u64 {
    use prost::Message as _;
    let len = message.encoded_len();
    (len + prost::length_delimiter_len(len) + 1) as u64
}

/// Groups messages into batches of at most `max_messages` and `max_bytes`
/// ([`wire_size`]); a message bigger than `max_bytes` alone is a batch of
/// its own (the broker judges it).
struct Batcher {
    max_messages: u64,
    max_bytes: u64,
    batch: Vec<pb::Message>,
    bytes: u64,
}

impl Batcher {
    fn new(max_messages: u64, max_bytes: u64) -> Self {
        Batcher {
            max_messages,
            max_bytes,
            batch: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds `message`; returns the batch it closed, if adding it would have
    /// gone over a limit.
    fn push(&mut self, message: pb::Message) -> Option<Vec<pb::Message>> {
        let size = wire_size(&message);
        let full = !self.batch.is_empty()
            && (self.batch.len() as u64 >= self.max_messages || self.bytes + size > self.max_bytes);
        let closed = if full { self.take() } else { None };
        self.bytes += size;
        self.batch.push(message);
        closed
    }

    /// The batch being filled, if it holds anything.
    fn take(&mut self) -> Option<Vec<pb::Message>> {
        self.bytes = 0;
        (!self.batch.is_empty()).then(|| std::mem::take(&mut self.batch))
    }
}

/// Prints each produced message's offset, one line each, in order.
fn print_offsets(response: &pb::ProduceResponse) {
    for r in &response.results {
        println!(
            "offset={}{}",
            r.offset,
            if r.duplicate { " duplicate" } else { "" }
        );
    }
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("header '{text}' is not key=value"))
}

/// `tallyq consume` options.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic name.
    pub topic: String,
    /// Subscription name.
    pub subscription: String,
    /// Stop after this many messages (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max: u64,
    /// Stop after this long without a message, in ms (0: wait forever).
    #[arg(long, default_value_t = 2000)]
    pub idle_ms: u64,
    /// Flow-control window: outstanding messages.
    #[arg(long, default_value_t = 100)]
    pub window: u32,
    /// Do not acknowledge (at-least-once messages come back after their lock).
    #[arg(long)]
    pub no_ack: bool,
}

/// `tallyq seek` options.
#[derive(Debug, Args)]
pub struct SeekArgs {
    /// Topic name.
    pub topic: String,
    /// Subscription name.
    pub subscription: String,
    /// Seek to the oldest retained message.
    #[arg(long, group = "target")]
    pub earliest: bool,
    /// Seek past the newest message.
    #[arg(long, group = "target")]
    pub latest: bool,
    /// Seek to an offset.
    #[arg(long, group = "target")]
    pub offset: Option<u64>,
    /// Seek to the first message published at or after this Unix time in ms (UTC).
    #[arg(long, group = "target")]
    pub timestamp_ms: Option<i64>,
}

/// Produces the arguments as one batch, or standard input in batches of at
/// most `--batch` lines and `--batch-bytes` bytes; prints every message's
/// offset either way, and the totals to stderr.
pub(super) async fn produce(client: &Client, args: &ProduceArgs) -> Result<()> {
    let headers: HashMap<String, String> = args.headers.iter().cloned().collect();
    let make = |payload: String| pb::Message {
        payload: payload.into_bytes().into(),
        headers: headers.clone(),
        device_id: args.device_id.clone(),
        dedup_id: args.dedup_id.clone(),
    };
    let mut produced = 0u64;
    let mut units = 0u64;
    let send = |batch: Vec<pb::Message>| {
        let client = client.clone();
        let topic = args.topic.clone();
        async move {
            let response = client.produce(&topic, batch).await?;
            print_offsets(&response);
            Ok::<_, anyhow::Error>(response)
        }
    };
    let mut count = |response: pb::ProduceResponse| {
        produced += response.results.len() as u64;
        units += response.units;
    };
    if !args.messages.is_empty() {
        count(send(args.messages.iter().cloned().map(make).collect()).await?);
    } else {
        let mut batcher = Batcher::new(args.batch, args.batch_bytes);
        for line in std::io::stdin().lock().lines() {
            if let Some(batch) = batcher.push(make(line?)) {
                count(send(batch).await?);
            }
        }
        if let Some(batch) = batcher.take() {
            count(send(batch).await?);
        }
    }
    eprintln!("produced {produced} messages ({units} units)");
    Ok(())
}

/// Prints deliveries as they arrive and acks them (unless `--no-ack`) until
/// `--max` messages, `--idle-ms` without one, or the end of the stream.
pub(super) async fn consume(client: &Client, args: &ConsumeArgs) -> Result<()> {
    let mut consumer = client
        .consume(&args.topic, &args.subscription, args.window, 0)
        .await?;
    let mut seen = 0u64;
    loop {
        let next = if args.idle_ms == 0 {
            consumer.next().await?
        } else {
            match tokio::time::timeout(Duration::from_millis(args.idle_ms), consumer.next()).await {
                Ok(next) => next?,
                Err(_) => break,
            }
        };
        let Some(deliveries) = next else { break };
        let mut offsets = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            let payload = d.message.map(|m| m.payload).unwrap_or_default();
            println!(
                "offset={} attempt={} published_ms={} {}",
                d.offset,
                d.delivery_attempt,
                d.publish_time_unix_ms,
                String::from_utf8_lossy(&payload)
            );
            offsets.push(d.offset);
            seen += 1;
        }
        if !args.no_ack {
            consumer.ack(offsets).await?;
        }
        if args.max > 0 && seen >= args.max {
            break;
        }
    }
    // Let the last acks reach the broker before the stream closes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    eprintln!("consumed {seen} messages");
    Ok(())
}

/// Moves the subscription's cursor and prints where it now stands.
pub(super) async fn seek(client: &Client, args: &SeekArgs) -> Result<()> {
    let (position, offset, timestamp) = if args.earliest {
        (pb::SeekPosition::Earliest, 0, 0)
    } else if args.latest {
        (pb::SeekPosition::Latest, 0, 0)
    } else if let Some(o) = args.offset {
        (pb::SeekPosition::Offset, o, 0)
    } else if let Some(t) = args.timestamp_ms {
        (pb::SeekPosition::Timestamp, 0, t)
    } else {
        return Err(super::exit::UsageError(
            "say where to seek: --earliest, --latest, --offset N or --timestamp-ms T".into(),
        )
        .into());
    };
    let next = call!(
        client,
        broker,
        seek,
        pb::SeekRequest {
            topic: args.topic.clone(),
            subscription: args.subscription.clone(),
            position: position as i32,
            offset,
            timestamp_unix_ms: timestamp,
        }
    )
    .next_offset;
    println!("next_offset={next}");
    Ok(())
}

/// `tallyq export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output file ("-" for standard output).
    pub file: PathBuf,
}

/// Streams the tenant's export to the file (or stdout); the size goes to stderr.
pub(super) async fn export(client: &Client, args: &ExportArgs) -> Result<()> {
    use std::io::Write;
    let mut stream = client
        .admin()
        .export_data(pb::ExportDataRequest {})
        .await?
        .into_inner();
    let mut out: Box<dyn Write> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::fs::File::create(&args.file)?)
    };
    let mut bytes = 0;
    while let Some(chunk) = stream.message().await? {
        bytes += chunk.jsonl.len();
        out.write_all(&chunk.jsonl)?;
    }
    out.flush()?;
    eprintln!("exported {bytes} bytes");
    Ok(())
}
