//! `tallyq bench`: optional setup of a tenant, key, topic and subscription,
//! then the load tool ([`loadgen`]).

mod loadgen;
mod report;

use std::time::Duration;

use anyhow::Result;
use clap::Args;

use tallyq::client::Client;
use tallyq::proto::v1 as pb;

/// `tallyq bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Producer tasks.
    #[arg(long, default_value_t = 4)]
    pub producers: usize,
    /// Messages per batch.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Consumer streams (0: produce only).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Total messages/s to offer (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seconds to produce.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Each consumer's flow-control window (outstanding messages).
    #[arg(long, default_value_t = 1000)]
    pub window: u32,
    /// Give each message one of this many device ids (metered per device); 0: none.
    #[arg(long, default_value_t = 0)]
    pub devices: usize,
    /// A slow consumer: wait this long before acking each batch it receives
    /// (consumers then stop when producing stops instead of draining).
    #[arg(long, default_value_t = 0)]
    pub ack_delay_ms: u64,
    /// Each producer keeps one ProduceStream open and sends its batches on
    /// it, one in flight (default: one Produce request per batch).
    #[arg(long)]
    pub produce_stream: bool,
    /// Topic.
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Subscription (at-least-once, acked by the consumers).
    #[arg(long, default_value = "bench")]
    pub subscription: String,
    /// With the operator credential: create this tenant (quotas lifted so
    /// they do not bind), a key, the topic and the subscription first.
    #[arg(long)]
    pub setup: Option<String>,
    /// The broker's pid, to report its CPU seconds and peak RSS from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// With --setup: cap the topic at this many bytes, reclaiming the oldest
    /// (0: the plan's default), so the load leaves dead sets behind.
    #[arg(long, default_value_t = 0)]
    pub topic_max_bytes: u64,
}

/// `tallyq bench`: sets up when asked, runs the load, prints one report line.
pub(super) async fn bench(client: &Client, args: &BenchArgs) -> Result<()> {
    let client = match &args.setup {
        Some(tenant) => setup(client, tenant, args).await?,
        None => client.clone(),
    };
    let spec = loadgen::LoadSpec {
        producers: args.producers.max(1),
        batch: args.batch.max(1),
        size: args.size,
        consumers: args.consumers,
        rate: args.rate,
        duration: Duration::from_secs(args.duration_secs.max(1)),
        window: args.window.max(1),
        devices: args.devices,
        ack_delay: Duration::from_millis(args.ack_delay_ms),
        topic: args.topic.clone(),
        subscription: args.subscription.clone(),
        produce_stream: args.produce_stream,
    };
    let report = loadgen::run(&client, &spec, args.server_pid).await;
    println!("system=tallyq {}", report.line());
    Ok(())
}

/// With the operator's `client`: creates `tenant` with its quotas lifted so
/// they do not bind, a key with every scope, `args.topic` and
/// `args.subscription` (at-least-once, from the latest message); returns a
/// client with that key.
async fn setup(client: &Client, tenant: &str, args: &BenchArgs) -> Result<Client> {
    call!(
        client,
        operator,
        create_tenant,
        pb::CreateTenantRequest {
            id: tenant.to_string(),
            ..Default::default()
        }
    );
    let unbounded = 1_000_000_000u64;
    call!(
        client,
        operator,
        update_tenant,
        pb::UpdateTenantRequest {
            id: tenant.to_string(),
            set_quota_overrides: [
                ("produce_units_per_second", unbounded),
                ("produce_burst_units", unbounded),
                ("consume_units_per_second_per_topic", unbounded),
                ("control_calls_per_second", unbounded),
                ("max_concurrent_streams", 10_000),
                ("max_tenant_storage_bytes", 1 << 40),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            ..Default::default()
        }
    );
    let key = call!(
        client,
        operator,
        create_api_key,
        pb::CreateApiKeyRequest {
            tenant: tenant.to_string(),
            scopes: vec![
                pb::Scope::Produce as i32,
                pb::Scope::Consume as i32,
                pb::Scope::Manage as i32,
            ],
            ..Default::default()
        }
    );
    let tenant_client = client.with_token(&key.secret)?;
    call!(
        tenant_client,
        admin,
        create_topic,
        pb::CreateTopicRequest {
            name: args.topic.clone(),
            config: (args.topic_max_bytes > 0).then(|| pb::TopicConfig {
                max_bytes: args.topic_max_bytes,
                overflow_policy: pb::OverflowPolicy::ReclaimOldest as i32,
                ..Default::default()
            }),
        }
    );
    call!(
        tenant_client,
        admin,
        create_subscription,
        pb::CreateSubscriptionRequest {
            topic: args.topic.clone(),
            name: args.subscription.clone(),
            config: Some(pb::SubscriptionConfig {
                lock_seconds: 30,
                ..Default::default()
            }),
            start: pb::StartPosition::Latest as i32,
        }
    );
    Ok(tenant_client)
}
