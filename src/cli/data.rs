//! The data plane: `tallyq produce`, `consume`, `seek` and `export`.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
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
    #[arg(long, default_value = "")]
    pub device_id: String,
    /// Dedup id (only with a single message).
    #[arg(long, default_value = "")]
    pub dedup_id: String,
    /// Header key=value (repeatable).
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Messages per batch when reading standard input.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
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

/// Produces the arguments as one batch (printing their offsets), or standard
/// input in batches of `--batch` lines; the totals go to stderr.
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
        async move { client.produce(&topic, batch).await }
    };
    if !args.messages.is_empty() {
        let response = send(args.messages.iter().cloned().map(make).collect()).await?;
        for r in &response.results {
            println!(
                "offset={}{}",
                r.offset,
                if r.duplicate { " duplicate" } else { "" }
            );
        }
        produced += response.results.len() as u64;
        units += response.units;
    } else {
        let stdin = std::io::stdin();
        let mut batch = Vec::with_capacity(args.batch);
        for line in stdin.lock().lines() {
            batch.push(make(line?));
            if batch.len() >= args.batch.max(1) {
                let response = send(std::mem::take(&mut batch)).await?;
                produced += response.results.len() as u64;
                units += response.units;
            }
        }
        if !batch.is_empty() {
            let response = send(batch).await?;
            produced += response.results.len() as u64;
            units += response.units;
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
        bail!("say where to seek: --earliest, --latest, --offset N or --timestamp-ms T");
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
