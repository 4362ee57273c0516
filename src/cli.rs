//! The `tallyq` command line: `serve` runs the broker; every other command is
//! a client of a running broker, through [`crate::client`].

use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::billing::pricing::format_minor;
use crate::client::{with_retries, Client};
use crate::clock::ClockKind;
use crate::config::{Config, LogFormat};
use crate::proto::v1 as pb;

/// Calls `$client.$service().$method(request)`, retrying refusals that carry
/// `retry-after-ms` (bounded), and unwraps the response.
macro_rules! call {
    ($client:expr, $service:ident, $method:ident, $request:expr) => {{
        let request = $request;
        with_retries(|| {
            let mut service = $client.$service();
            let request = request.clone();
            async move { service.$method(request).await }
        })
        .await?
        .into_inner()
    }};
}

/// tallyq: a multi-tenant, metered message-queue broker for IoT platforms.
#[derive(Debug, Parser)]
#[command(name = "tallyq", version, about)]
pub struct Cli {
    /// Broker address for client commands.
    #[arg(
        long,
        global = true,
        env = "TALLYQ_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// Credential for client commands: a tenant API key or the operator token.
    #[arg(long, global = true, env = "TALLYQ_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the credential from this file (default: ./data/operator.token when present).
    #[arg(long, global = true, env = "TALLYQ_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust: connect over TLS (use an https:// server address).
    #[arg(long, global = true, env = "TALLYQ_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Name the server's certificate must carry (default: the address's host).
    #[arg(long, global = true, env = "TALLYQ_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
    /// Client certificate (PEM) for servers that require one.
    #[arg(long, global = true, env = "TALLYQ_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, global = true, env = "TALLYQ_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    /// Tenants (operator).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// API keys (operator).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Topics (tenant key with the manage scope).
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Subscriptions (tenant key with the manage scope).
    #[command(subcommand, name = "sub", alias = "subscription")]
    Sub(SubCommand),
    /// Produce messages given as arguments, or one per line of standard input.
    Produce(ProduceArgs),
    /// Consume messages, print them and acknowledge them.
    Consume(ConsumeArgs),
    /// Move a subscription's cursor.
    Seek(SeekArgs),
    /// Device bindings (operator).
    #[command(subcommand)]
    Device(DeviceCommand),
    /// The audit log (operator).
    Audit {
        /// First sequence number.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Only this tenant's events.
        #[arg(long, default_value = "")]
        tenant: String,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Maintenance mode (operator): refuse data-plane work with UNAVAILABLE.
    Maintenance {
        /// on or off.
        #[arg(value_enum)]
        state: OnOff,
        /// Why (shown to clients).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Export all of the tenant's data as JSON Lines to a file (tenant key, manage scope).
    Export {
        /// Output file ("-" for standard output).
        file: PathBuf,
    },
    /// Load tool: producers and consumers against a broker; prints throughput,
    /// latency percentiles and (with --server-pid) the broker's CPU and peak RSS.
    Bench(BenchArgs),
    /// The billing ledger: export it, verify its hash chain.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// A tenant's monthly statement.
    Statement {
        /// Tenant id (a tenant key may omit it).
        tenant: String,
        /// Month, YYYY-MM.
        month: String,
    },
    /// A tenant's account: balance, oldest unpaid charge, status.
    Account {
        /// Tenant id (omit with a tenant key).
        tenant: Option<String>,
    },
    /// The tenant's live (unsettled) usage, per day, topic and device.
    Usage,
    /// Settle every tenant's ended days up to a day (operator).
    Settle {
        /// Last day to settle, YYYY-MM-DD (must have ended).
        through_day: String,
    },
    /// Record a payment (operator); idempotent by payment id.
    Payment {
        /// Tenant id.
        tenant: String,
        /// Your unique id for this payment.
        payment_id: String,
        /// Amount in minor units (fen for CNY).
        amount_minor: i64,
        /// Currency (the plan's).
        #[arg(long, default_value = "CNY")]
        currency: String,
        /// Note.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// The tenant's limits and current use (tenant key with manage scope).
    Quota,
    /// The manual test clock (operator; only with clock = "manual").
    #[command(subcommand)]
    Clock(ClockCommand),
}

/// `tallyq serve` options; each overrides the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "TALLYQ_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, env = "TALLYQ_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long, env = "TALLYQ_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Prometheus listen address.
    #[arg(long, env = "TALLYQ_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Node id stamped on ledger entries.
    #[arg(long, env = "TALLYQ_NODE_ID")]
    pub node_id: Option<String>,
    /// Clock: system (default) or manual (test clock).
    #[arg(long, env = "TALLYQ_CLOCK", value_enum)]
    pub clock: Option<ClockArg>,
    /// Operator credential file.
    #[arg(long, env = "TALLYQ_OPERATOR_TOKEN_FILE")]
    pub operator_token_file: Option<PathBuf>,
    /// Log format: text (default) or json.
    #[arg(long, env = "TALLYQ_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// TLS certificate chain (PEM); with --tls-key-file, serve gRPC over TLS.
    #[arg(long, env = "TALLYQ_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "TALLYQ_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// CA (PEM) that client certificates must be signed by (mutual TLS).
    #[arg(long, env = "TALLYQ_TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
}

/// Clock choice on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ClockArg {
    /// Wall clock.
    System,
    /// Test clock.
    Manual,
}

/// Log format on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable.
    Text,
    /// JSON lines.
    Json,
}

impl ServeArgs {
    /// Embedded defaults, then the file, then these flags / env variables.
    pub fn to_config(&self) -> Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = &self.data_dir {
            config.data_dir = v.clone();
        }
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.metrics_listen {
            config.metrics_listen = v;
        }
        if let Some(v) = &self.node_id {
            config.node_id = v.clone();
        }
        if let Some(v) = self.clock {
            config.clock = match v {
                ClockArg::System => ClockKind::System,
                ClockArg::Manual => ClockKind::Manual,
            };
        }
        if let Some(v) = &self.operator_token_file {
            config.operator_token_file = Some(v.clone());
        }
        if let Some(v) = &self.tls_cert_file {
            config.tls_cert_file = Some(v.clone());
        }
        if let Some(v) = &self.tls_key_file {
            config.tls_key_file = Some(v.clone());
        }
        if let Some(v) = &self.tls_client_ca_file {
            config.tls_client_ca_file = Some(v.clone());
        }
        if let Some(v) = self.log_format {
            config.log_format = match v {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            };
        }
        config.validate()?;
        Ok(config)
    }
}

/// Tenant commands.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Tenant id: 3-32 of a-z, 0-9, '-'.
        id: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        /// Contact e-mail.
        #[arg(long, default_value = "")]
        email: String,
        /// Plan (default: standard).
        #[arg(long, default_value = "")]
        plan: String,
    },
    /// List tenants.
    List,
    /// Show one tenant.
    Get {
        /// Tenant id.
        id: String,
    },
    /// Change a tenant's details, plan or quota overrides.
    Update {
        /// Tenant id.
        id: String,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New contact e-mail.
        #[arg(long)]
        email: Option<String>,
        /// New plan.
        #[arg(long)]
        plan: Option<String>,
        /// Set a quota override, e.g. max_topics=20 (repeatable).
        #[arg(long = "set-quota", value_parser = parse_quota)]
        set_quota: Vec<(String, u64)>,
        /// Remove a quota override (repeatable).
        #[arg(long = "clear-quota")]
        clear_quota: Vec<String>,
    },
    /// Suspend a tenant: data plane refused, data kept.
    Suspend {
        /// Tenant id.
        id: String,
        /// Why.
        #[arg(long, value_enum, default_value = "operator")]
        reason: ReasonArg,
    },
    /// Resume a suspended tenant.
    Resume {
        /// Tenant id.
        id: String,
    },
    /// Terminate a tenant: settle, erase its data, keep the ledger. Final.
    Terminate {
        /// Tenant id.
        id: String,
        /// Why.
        #[arg(long, default_value = "operator")]
        reason: String,
    },
}

/// Ledger export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LedgerFormat {
    /// Comma-separated, with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// Ledger commands (operator or billing reader; a tenant key sees its own entries).
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Write ledger entries from a sequence number on to standard output.
    Export {
        /// First sequence number (resume where the last export stopped).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: LedgerFormat,
    },
    /// Check the whole hash chain; names the first bad entry.
    Verify,
}

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
}

/// on / off.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    /// Enable.
    On,
    /// Disable.
    Off,
}

/// Suspension reasons on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReasonArg {
    /// Abuse of the service.
    Abuse,
    /// Any other operator decision.
    Operator,
}

fn parse_quota(text: &str) -> Result<(String, u64), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("quota '{text}' is not name=value"))?;
    let value = value
        .parse()
        .map_err(|_| format!("quota value '{value}' is not a whole number"))?;
    Ok((name.to_string(), value))
}

/// Device binding commands (operator).
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Bind a device id to a tenant; only that tenant may then produce with it.
    Bind {
        /// Device id (e.g. an IMEI).
        device_id: String,
        /// Tenant id.
        tenant: String,
        /// Move it from the tenant that holds it now.
        #[arg(long)]
        rebind: bool,
    },
    /// Remove a binding.
    Unbind {
        /// Device id.
        device_id: String,
    },
    /// List bindings (of one tenant, or all).
    List {
        /// Tenant id.
        tenant: Option<String>,
    },
}

/// Key scopes on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScopeArg {
    /// Produce messages.
    Produce,
    /// Consume messages.
    Consume,
    /// Manage topics and subscriptions.
    Manage,
}

/// API key commands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Issue a key; its secret is printed once.
    Create {
        /// Tenant id.
        tenant: String,
        /// Scopes (repeat or comma-separate).
        #[arg(long = "scope", value_enum, value_delimiter = ',', required = true)]
        scopes: Vec<ScopeArg>,
        /// Restrict the key to these topics (repeatable).
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List a tenant's keys.
    List {
        /// Tenant id.
        tenant: String,
    },
    /// Revoke a key.
    Revoke {
        /// Key id (key_...).
        id: String,
    },
}

/// Overflow policy on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OverflowArg {
    /// Reclaim the oldest messages.
    Reclaim,
    /// Refuse new produce.
    Refuse,
}

impl OverflowArg {
    fn value(self) -> i32 {
        match self {
            OverflowArg::Reclaim => pb::OverflowPolicy::ReclaimOldest as i32,
            OverflowArg::Refuse => pb::OverflowPolicy::RefuseProduce as i32,
        }
    }
}

/// Topic settings on the command line.
#[derive(Debug, Args)]
pub struct TopicSettingsArgs {
    /// Message expiry in seconds (30..604800).
    #[arg(long)]
    pub expiry_seconds: Option<u64>,
    /// Size cap in bytes.
    #[arg(long)]
    pub max_bytes: Option<u64>,
    /// What to do when full.
    #[arg(long, value_enum)]
    pub overflow: Option<OverflowArg>,
    /// Dedup window in seconds (1..3600).
    #[arg(long)]
    pub dedup_window_seconds: Option<u64>,
}

/// Topic commands.
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Settings.
        #[command(flatten)]
        settings: TopicSettingsArgs,
    },
    /// List topics.
    List,
    /// Show a topic with its figures.
    Get {
        /// Topic name.
        name: String,
    },
    /// Change a topic's settings.
    Update {
        /// Topic name.
        name: String,
        /// Settings to change.
        #[command(flatten)]
        settings: TopicSettingsArgs,
    },
    /// Delete a topic with its messages and subscriptions.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// Subscription settings on the command line.
#[derive(Debug, Args)]
pub struct SubSettingsArgs {
    /// 0 = at-most-once; otherwise at-least-once with this lock (10..60 s).
    #[arg(long)]
    pub lock_seconds: Option<u32>,
    /// Deliveries before a message moves to the dead-letter topic.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Dead-letter topic.
    #[arg(long)]
    pub dead_letter_topic: Option<String>,
}

/// Start position on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StartArg {
    /// Oldest retained message.
    Earliest,
    /// Only new messages.
    Latest,
}

/// Subscription commands.
#[derive(Debug, Subcommand)]
pub enum SubCommand {
    /// Create a subscription.
    Create {
        /// Topic name.
        topic: String,
        /// Subscription name.
        name: String,
        /// Settings.
        #[command(flatten)]
        settings: SubSettingsArgs,
        /// Where it starts.
        #[arg(long, value_enum, default_value = "earliest")]
        start: StartArg,
    },
    /// List a topic's subscriptions.
    List {
        /// Topic name.
        topic: String,
    },
    /// Show a subscription with its figures.
    Get {
        /// Topic name.
        topic: String,
        /// Subscription name.
        name: String,
    },
    /// Change a subscription's settings.
    Update {
        /// Topic name.
        topic: String,
        /// Subscription name.
        name: String,
        /// Settings to change.
        #[command(flatten)]
        settings: SubSettingsArgs,
    },
    /// Delete a subscription.
    Delete {
        /// Topic name.
        topic: String,
        /// Subscription name.
        name: String,
    },
}

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

/// Clock commands.
#[derive(Debug, Subcommand)]
pub enum ClockCommand {
    /// Move the manual clock forward.
    Advance {
        /// Milliseconds to move.
        ms: u64,
    },
}

impl Cli {
    fn credential(&self) -> Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let path = self
            .token_file
            .clone()
            .unwrap_or_else(|| PathBuf::from("./data/operator.token"));
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.trim().to_string()),
            Err(_) if self.token_file.is_none() => Ok(String::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Runs a client command against the broker.
    pub async fn run_client(&self) -> Result<()> {
        let client = match &self.tls_ca {
            Some(ca) => {
                let ca = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                let domain = match &self.tls_domain {
                    Some(d) => d.clone(),
                    None => self
                        .server
                        .split("://")
                        .nth(1)
                        .and_then(|rest| rest.split([':', '/']).next())
                        .unwrap_or("localhost")
                        .to_string(),
                };
                let identity = match (&self.tls_cert, &self.tls_key) {
                    (Some(c), Some(k)) => Some((std::fs::read(c)?, std::fs::read(k)?)),
                    _ => None,
                };
                Client::connect_tls(
                    &self.server,
                    &self.credential()?,
                    &ca,
                    &domain,
                    identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
                )
                .await?
            }
            None => Client::connect(&self.server, &self.credential()?).await?,
        };
        match &self.command {
            Command::Serve(_) => bail!("serve is not a client command"),
            Command::Tenant(cmd) => tenant(&client, cmd).await,
            Command::Key(cmd) => key(&client, cmd).await,
            Command::Topic(cmd) => topic(&client, cmd).await,
            Command::Sub(cmd) => sub(&client, cmd).await,
            Command::Produce(args) => produce(&client, args).await,
            Command::Consume(args) => consume(&client, args).await,
            Command::Seek(args) => seek(&client, args).await,
            Command::Device(cmd) => device(&client, cmd).await,
            Command::Ledger(cmd) => ledger(&client, cmd).await,
            Command::Bench(args) => bench(&client, args).await,
            Command::Audit {
                from,
                tenant,
                limit,
            } => {
                let page = call!(
                    client,
                    operator,
                    list_audit_events,
                    pb::ListAuditEventsRequest {
                        from_sequence: *from,
                        limit: *limit,
                        tenant: tenant.clone(),
                    }
                );
                for e in page.events {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        e.sequence, e.time_unix_ms, e.actor, e.action, e.tenant, e.detail
                    );
                }
                eprintln!("next: --from {}", page.next_sequence);
                Ok(())
            }
            Command::Maintenance { state, reason } => {
                let enabled = matches!(state, OnOff::On);
                call!(
                    client,
                    operator,
                    set_maintenance,
                    pb::SetMaintenanceRequest {
                        enabled,
                        reason: reason.clone(),
                    }
                );
                println!("maintenance {}", if enabled { "on" } else { "off" });
                Ok(())
            }
            Command::Export { file } => {
                use std::io::Write;
                let mut stream = client
                    .admin()
                    .export_data(pb::ExportDataRequest {})
                    .await?
                    .into_inner();
                let mut out: Box<dyn Write> = if file.as_os_str() == "-" {
                    Box::new(std::io::stdout())
                } else {
                    Box::new(std::fs::File::create(file)?)
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
            Command::Statement { tenant, month } => statement(&client, tenant, month).await,
            Command::Account { tenant } => {
                let a = call!(
                    client,
                    billing,
                    get_account,
                    pb::GetAccountRequest {
                        tenant: tenant.clone().unwrap_or_default(),
                    }
                );
                println!(
                    "{}\tbalance={} {}\tcharges={}\tpayments={}\toldest_unpaid_due_ms={}\tstatus={}{}\tsettled_through={}",
                    a.tenant,
                    format_minor(a.balance_minor),
                    a.currency,
                    format_minor(a.charges_minor),
                    format_minor(a.payments_minor),
                    a.oldest_unpaid_due_unix_ms,
                    status_name(a.status),
                    if a.status_reason.is_empty() { String::new() } else { format!(" ({})", a.status_reason) },
                    a.settled_through
                );
                Ok(())
            }
            Command::Usage => {
                let usage = call!(client, admin, get_usage, pb::GetUsageRequest {});
                println!("settled through {:?}", usage.settled_through);
                for l in usage.lines {
                    println!(
                        "{}\t{}\t{}\tmessage_units={}\tproduced={}\tdelivered={}\tredelivered={}\tstorage_mgib_h={}",
                        l.day, l.dimension, l.name, l.message_units, l.produced_units,
                        l.delivered_units, l.redelivered_units, l.storage_milli_gib_hours
                    );
                }
                Ok(())
            }
            Command::Settle { through_day } => {
                let r = call!(
                    client,
                    billing,
                    settle,
                    pb::SettleRequest {
                        through_day: through_day.clone(),
                    }
                );
                println!(
                    "settled {} tenant-days, {} ledger entries written",
                    r.tenant_days, r.entries_written
                );
                Ok(())
            }
            Command::Payment {
                tenant,
                payment_id,
                amount_minor,
                currency,
                note,
            } => {
                let r = call!(
                    client,
                    operator,
                    record_payment,
                    pb::RecordPaymentRequest {
                        tenant: tenant.clone(),
                        payment_id: payment_id.clone(),
                        amount_minor: *amount_minor,
                        currency: currency.clone(),
                        note: note.clone(),
                    }
                );
                println!(
                    "payment at ledger sequence {}{}; balance {}",
                    r.sequence,
                    if r.duplicate {
                        " (recorded before)"
                    } else {
                        ""
                    },
                    format_minor(r.balance_minor)
                );
                Ok(())
            }
            Command::Quota => {
                let quota = call!(client, admin, get_quota, pb::GetQuotaRequest {});
                println!("plan {}", quota.plan);
                for q in quota.quotas {
                    println!("{}\tlimit={}\tused={}\t{}", q.name, q.limit, q.used, q.unit);
                }
                Ok(())
            }
            Command::Clock(ClockCommand::Advance { ms }) => {
                let now = call!(
                    client,
                    operator,
                    advance_clock,
                    pb::AdvanceClockRequest { advance_ms: *ms }
                )
                .now_unix_ms;
                println!("clock now {now} (Unix ms, UTC)");
                Ok(())
            }
        }
    }
}

fn status_name(status: i32) -> &'static str {
    match pb::TenantStatus::try_from(status) {
        Ok(pb::TenantStatus::Active) => "active",
        Ok(pb::TenantStatus::Suspended) => "suspended",
        Ok(pb::TenantStatus::Terminated) => "terminated",
        _ => "unknown",
    }
}

fn print_tenant(t: &pb::Tenant) {
    let mut overrides: Vec<String> = t
        .quota_overrides
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    overrides.sort();
    let reason = if t.status_reason.is_empty() {
        String::new()
    } else {
        format!(" ({})", t.status_reason)
    };
    println!(
        "{}\tplan={}\tstatus={}{reason}\tname={:?}\temail={:?}\toverrides={}",
        t.id,
        t.plan,
        status_name(t.status),
        t.display_name,
        t.contact_email,
        overrides.join(",")
    );
}

fn scope_names(scopes: &[i32]) -> String {
    scopes
        .iter()
        .map(|s| match pb::Scope::try_from(*s) {
            Ok(pb::Scope::Produce) => "produce",
            Ok(pb::Scope::Consume) => "consume",
            Ok(pb::Scope::Manage) => "manage",
            _ => "?",
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn print_key(k: &pb::ApiKey) {
    println!("{}", key_line(k));
}

fn key_line(k: &pb::ApiKey) -> String {
    format!(
        "{}\ttenant={}\tscopes={}\ttopics={}\trevoked={}\t{:?}",
        k.id,
        k.tenant,
        scope_names(&k.scopes),
        if k.topics.is_empty() {
            "*".to_string()
        } else {
            k.topics.join(",")
        },
        k.revoked,
        k.description
    )
}

fn print_topic(t: &pb::Topic) {
    let c = t.config.unwrap_or_default();
    let s = t.stats.unwrap_or_default();
    let overflow = if c.overflow_policy == pb::OverflowPolicy::RefuseProduce as i32 {
        "refuse"
    } else {
        "reclaim"
    };
    println!(
        "{}\tmessages={}\tbytes={}\toffsets={}..{}\texpiry={}s\tmax_bytes={}\toverflow={overflow}\tdedup_window={}s\texpired={}\treclaimed={}",
        t.name, s.messages, s.bytes, s.first_offset, s.next_offset, c.message_expiry_seconds,
        c.max_bytes, c.dedup_window_seconds, s.expired_messages, s.reclaimed_messages
    );
}

fn print_sub(s: &pb::Subscription) {
    let c = s.config.clone().unwrap_or_default();
    let st = s.stats.unwrap_or_default();
    println!(
        "{}/{}\tlock={}s\tmax_attempts={}\tdead_letter_topic={:?}\tbacklog={}\tin_flight={}\tnext_offset={}\tdead_lettered={}",
        s.topic, s.name, c.lock_seconds, c.max_delivery_attempts, c.dead_letter_topic,
        st.backlog, st.in_flight, st.next_offset, st.dead_lettered
    );
}

async fn tenant(client: &Client, cmd: &TenantCommand) -> Result<()> {
    match cmd {
        TenantCommand::Create {
            id,
            name,
            email,
            plan,
        } => {
            let t = call!(
                client,
                operator,
                create_tenant,
                pb::CreateTenantRequest {
                    id: id.clone(),
                    display_name: name.clone(),
                    contact_email: email.clone(),
                    plan: plan.clone(),
                }
            );
            print_tenant(&t);
        }
        TenantCommand::List => {
            for t in call!(client, operator, list_tenants, pb::ListTenantsRequest {}).tenants {
                print_tenant(&t);
            }
        }
        TenantCommand::Update {
            id,
            name,
            email,
            plan,
            set_quota,
            clear_quota,
        } => {
            let t = call!(
                client,
                operator,
                update_tenant,
                pb::UpdateTenantRequest {
                    id: id.clone(),
                    display_name: name.clone(),
                    contact_email: email.clone(),
                    plan: plan.clone(),
                    set_quota_overrides: set_quota.iter().cloned().collect(),
                    clear_quota_overrides: clear_quota.clone(),
                }
            );
            print_tenant(&t);
        }
        TenantCommand::Suspend { id, reason } => {
            let reason = match reason {
                ReasonArg::Abuse => pb::SuspensionReason::Abuse,
                ReasonArg::Operator => pb::SuspensionReason::Operator,
            };
            let t = call!(
                client,
                operator,
                suspend_tenant,
                pb::SuspendTenantRequest {
                    id: id.clone(),
                    reason: reason as i32,
                }
            );
            print_tenant(&t);
        }
        TenantCommand::Resume { id } => {
            let t = call!(
                client,
                operator,
                resume_tenant,
                pb::ResumeTenantRequest { id: id.clone() }
            );
            print_tenant(&t);
        }
        TenantCommand::Terminate { id, reason } => {
            let t = call!(
                client,
                operator,
                terminate_tenant,
                pb::TerminateTenantRequest {
                    id: id.clone(),
                    reason: reason.clone(),
                }
            );
            print_tenant(&t);
        }
        TenantCommand::Get { id } => {
            let t = call!(
                client,
                operator,
                get_tenant,
                pb::GetTenantRequest { id: id.clone() }
            );
            print_tenant(&t);
        }
    }
    Ok(())
}

/// Every ledger entry from `from` on, page by page.
async fn ledger_entries(client: &Client, from: u64) -> Result<Vec<pb::LedgerEntry>> {
    let mut entries = Vec::new();
    let mut next = from;
    loop {
        let page = call!(
            client,
            billing,
            list_ledger_entries,
            pb::ListLedgerEntriesRequest {
                from_sequence: next,
                limit: 1000,
            }
        );
        if page.entries.is_empty() {
            return Ok(entries);
        }
        next = page.next_sequence;
        entries.extend(page.entries);
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

const LEDGER_COLUMNS: &str = "sequence,node_id,tenant,kind,day,meter,quantity,free_applied,billable,unit_price_nano_minor,amount_minor,currency,idempotency_key,created_unix_ms,due_unix_ms,produced_units,delivered_units,redelivered_units,note,prev_hash,hash";

fn ledger_csv(e: &pb::LedgerEntry) -> String {
    [
        e.sequence.to_string(),
        csv_field(&e.node_id),
        csv_field(&e.tenant),
        e.kind.clone(),
        e.day.clone(),
        e.meter.clone(),
        e.quantity.to_string(),
        e.free_applied.to_string(),
        e.billable.to_string(),
        e.unit_price_nano_minor.to_string(),
        e.amount_minor.to_string(),
        csv_field(&e.currency),
        csv_field(&e.idempotency_key),
        e.created_unix_ms.to_string(),
        e.due_unix_ms.to_string(),
        e.produced_units.to_string(),
        e.delivered_units.to_string(),
        e.redelivered_units.to_string(),
        csv_field(&e.note),
        e.prev_hash.clone(),
        e.hash.clone(),
    ]
    .join(",")
}

fn ledger_json(e: &pb::LedgerEntry) -> String {
    serde_json::json!({
        "sequence": e.sequence, "node_id": e.node_id, "tenant": e.tenant, "kind": e.kind,
        "day": e.day, "meter": e.meter, "quantity": e.quantity, "free_applied": e.free_applied,
        "billable": e.billable, "unit_price_nano_minor": e.unit_price_nano_minor,
        "amount_minor": e.amount_minor, "currency": e.currency,
        "idempotency_key": e.idempotency_key, "created_unix_ms": e.created_unix_ms,
        "due_unix_ms": e.due_unix_ms, "produced_units": e.produced_units,
        "delivered_units": e.delivered_units, "redelivered_units": e.redelivered_units,
        "note": e.note, "prev_hash": e.prev_hash, "hash": e.hash,
    })
    .to_string()
}

async fn ledger(client: &Client, cmd: &LedgerCommand) -> Result<()> {
    match cmd {
        LedgerCommand::Export { from, format } => {
            let entries = ledger_entries(client, *from).await?;
            if matches!(format, LedgerFormat::Csv) {
                println!("{LEDGER_COLUMNS}");
            }
            for e in &entries {
                match format {
                    LedgerFormat::Csv => println!("{}", ledger_csv(e)),
                    LedgerFormat::Jsonl => println!("{}", ledger_json(e)),
                }
            }
            eprintln!("exported {} entries", entries.len());
            Ok(())
        }
        LedgerCommand::Verify => {
            let entries = ledger_entries(client, 1).await?;
            let checked = crate::billing::ledger::verify_chain(
                entries.iter().map(crate::api::billing::ledger_entry),
            )?;
            println!("ledger verified: {checked} entries, hash chain intact");
            Ok(())
        }
    }
}

async fn bench(client: &Client, args: &BenchArgs) -> Result<()> {
    let client = match &args.setup {
        Some(tenant) => {
            call!(
                client,
                operator,
                create_tenant,
                pb::CreateTenantRequest {
                    id: tenant.clone(),
                    ..Default::default()
                }
            );
            let unbounded = 1_000_000_000u64;
            call!(
                client,
                operator,
                update_tenant,
                pb::UpdateTenantRequest {
                    id: tenant.clone(),
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
                    tenant: tenant.clone(),
                    scopes: vec![1, 2, 3],
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
                    config: None,
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
            tenant_client
        }
        None => client.clone(),
    };
    let spec = crate::loadgen::LoadSpec {
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
    };
    let report = crate::loadgen::run(&client, &spec, args.server_pid).await;
    println!("system=tallyq {}", report.line());
    Ok(())
}

async fn statement(client: &Client, tenant: &str, month: &str) -> Result<()> {
    let s = call!(
        client,
        billing,
        get_statement,
        pb::GetStatementRequest {
            tenant: tenant.to_string(),
            month: month.to_string(),
        }
    );
    println!("statement {} {} ({})", s.tenant, s.month, s.currency);
    println!("day\tmessage_units\tfree_units\ttopic_days\tstorage_mgib_h\tamount");
    for d in &s.days {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            d.day,
            d.message_units,
            d.free_units_applied,
            d.topic_days,
            d.storage_milli_gib_hours,
            format_minor(d.amount_minor)
        );
    }
    println!(
        "total\t{}\t{}\t{}\t\t{}",
        s.message_units,
        s.free_units_applied,
        s.topic_days,
        format_minor(s.charges_minor)
    );
    println!(
        "payments {}; balance now {} {}",
        format_minor(s.payments_minor),
        format_minor(s.balance_minor),
        s.currency
    );
    if let Some(f) = &s.final_statement {
        println!(
            "final statement: {} ({})",
            format_minor(f.amount_minor),
            f.note
        );
    }
    Ok(())
}

async fn device(client: &Client, cmd: &DeviceCommand) -> Result<()> {
    let print = |d: &pb::DeviceBinding| {
        println!(
            "{}\ttenant={}\tbound_ms={}",
            d.device_id, d.tenant, d.bound_time_unix_ms
        )
    };
    match cmd {
        DeviceCommand::Bind {
            device_id,
            tenant,
            rebind,
        } => {
            let d = call!(
                client,
                operator,
                bind_device,
                pb::BindDeviceRequest {
                    device_id: device_id.clone(),
                    tenant: tenant.clone(),
                    rebind: *rebind,
                }
            );
            print(&d);
        }
        DeviceCommand::Unbind { device_id } => {
            call!(
                client,
                operator,
                unbind_device,
                pb::UnbindDeviceRequest {
                    device_id: device_id.clone(),
                }
            );
            println!("unbound {device_id}");
        }
        DeviceCommand::List { tenant } => {
            let list = call!(
                client,
                operator,
                list_devices,
                pb::ListDevicesRequest {
                    tenant: tenant.clone().unwrap_or_default(),
                }
            );
            for d in &list.devices {
                print(d);
            }
        }
    }
    Ok(())
}

async fn key(client: &Client, cmd: &KeyCommand) -> Result<()> {
    match cmd {
        KeyCommand::Create {
            tenant,
            scopes,
            topics,
            description,
        } => {
            let scopes = scopes
                .iter()
                .map(|s| match s {
                    ScopeArg::Produce => pb::Scope::Produce as i32,
                    ScopeArg::Consume => pb::Scope::Consume as i32,
                    ScopeArg::Manage => pb::Scope::Manage as i32,
                })
                .collect();
            let created = call!(
                client,
                operator,
                create_api_key,
                pb::CreateApiKeyRequest {
                    tenant: tenant.clone(),
                    scopes,
                    topics: topics.clone(),
                    description: description.clone(),
                }
            );
            if let Some(k) = &created.key {
                eprintln!("created {}", key_line(k));
            }
            eprintln!("the secret below is shown only now; store it safely:");
            println!("{}", created.secret);
        }
        KeyCommand::List { tenant } => {
            for k in call!(
                client,
                operator,
                list_api_keys,
                pb::ListApiKeysRequest {
                    tenant: tenant.clone(),
                }
            )
            .keys
            {
                print_key(&k);
            }
        }
        KeyCommand::Revoke { id } => {
            let k = call!(
                client,
                operator,
                revoke_api_key,
                pb::RevokeApiKeyRequest { id: id.clone() }
            );
            if let Some(k) = k.key {
                print_key(&k);
            }
        }
    }
    Ok(())
}

async fn topic(client: &Client, cmd: &TopicCommand) -> Result<()> {
    match cmd {
        TopicCommand::Create { name, settings } => {
            let t = call!(
                client,
                admin,
                create_topic,
                pb::CreateTopicRequest {
                    name: name.clone(),
                    config: Some(pb::TopicConfig {
                        message_expiry_seconds: settings.expiry_seconds.unwrap_or(0),
                        max_bytes: settings.max_bytes.unwrap_or(0),
                        overflow_policy: settings.overflow.map(|o| o.value()).unwrap_or(0),
                        dedup_window_seconds: settings.dedup_window_seconds.unwrap_or(0),
                    }),
                }
            );
            print_topic(&t);
        }
        TopicCommand::List => {
            for t in call!(client, admin, list_topics, pb::ListTopicsRequest {}).topics {
                print_topic(&t);
            }
        }
        TopicCommand::Get { name } => {
            let t = call!(
                client,
                admin,
                get_topic,
                pb::GetTopicRequest { name: name.clone() }
            );
            print_topic(&t);
        }
        TopicCommand::Update { name, settings } => {
            let t = call!(
                client,
                admin,
                update_topic,
                pb::UpdateTopicRequest {
                    name: name.clone(),
                    message_expiry_seconds: settings.expiry_seconds,
                    max_bytes: settings.max_bytes,
                    overflow_policy: settings.overflow.map(|o| o.value()),
                    dedup_window_seconds: settings.dedup_window_seconds,
                }
            );
            print_topic(&t);
        }
        TopicCommand::Delete { name } => {
            call!(
                client,
                admin,
                delete_topic,
                pb::DeleteTopicRequest { name: name.clone() }
            );
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

async fn sub(client: &Client, cmd: &SubCommand) -> Result<()> {
    match cmd {
        SubCommand::Create {
            topic,
            name,
            settings,
            start,
        } => {
            let s = call!(
                client,
                admin,
                create_subscription,
                pb::CreateSubscriptionRequest {
                    topic: topic.clone(),
                    name: name.clone(),
                    config: Some(pb::SubscriptionConfig {
                        lock_seconds: settings.lock_seconds.unwrap_or(0),
                        max_delivery_attempts: settings.max_attempts.unwrap_or(0),
                        dead_letter_topic: settings.dead_letter_topic.clone().unwrap_or_default(),
                    }),
                    start: match start {
                        StartArg::Earliest => pb::StartPosition::Earliest as i32,
                        StartArg::Latest => pb::StartPosition::Latest as i32,
                    },
                }
            );
            print_sub(&s);
        }
        SubCommand::List { topic } => {
            for s in call!(
                client,
                admin,
                list_subscriptions,
                pb::ListSubscriptionsRequest {
                    topic: topic.clone(),
                }
            )
            .subscriptions
            {
                print_sub(&s);
            }
        }
        SubCommand::Get { topic, name } => {
            let s = call!(
                client,
                admin,
                get_subscription,
                pb::GetSubscriptionRequest {
                    topic: topic.clone(),
                    name: name.clone(),
                }
            );
            print_sub(&s);
        }
        SubCommand::Update {
            topic,
            name,
            settings,
        } => {
            let s = call!(
                client,
                admin,
                update_subscription,
                pb::UpdateSubscriptionRequest {
                    topic: topic.clone(),
                    name: name.clone(),
                    lock_seconds: settings.lock_seconds,
                    max_delivery_attempts: settings.max_attempts,
                    dead_letter_topic: settings.dead_letter_topic.clone(),
                }
            );
            print_sub(&s);
        }
        SubCommand::Delete { topic, name } => {
            call!(
                client,
                admin,
                delete_subscription,
                pb::DeleteSubscriptionRequest {
                    topic: topic.clone(),
                    name: name.clone(),
                }
            );
            println!("deleted subscription {topic}/{name}");
        }
    }
    Ok(())
}

async fn produce(client: &Client, args: &ProduceArgs) -> Result<()> {
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

async fn consume(client: &Client, args: &ConsumeArgs) -> Result<()> {
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

async fn seek(client: &Client, args: &SeekArgs) -> Result<()> {
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
