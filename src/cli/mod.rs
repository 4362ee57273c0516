//! The `tallyq` command line: `serve` runs the broker; every other command is
//! a client of a running broker, through [`tallyq::client`].

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use tallyq::billing::pricing::format_minor;
use tallyq::client::Client;
use tallyq::proto::v1 as pb;

/// Calls `$client.$service().$method(request)`, retrying refusals that carry
/// `retry-after-ms` (bounded), and unwraps the response.
macro_rules! call {
    ($client:expr, $service:ident, $method:ident, $request:expr) => {{
        let request = $request;
        tallyq::client::with_retries(|| {
            let mut service = $client.$service();
            let request = request.clone();
            async move { service.$method(request).await }
        })
        .await?
        .into_inner()
    }};
}

mod bench;
mod billing;
mod data;
mod device;
mod key;
mod ledger;
mod ops;
mod print;
mod serve;
mod tenant;
mod topic;

use bench::{bench, BenchArgs};
use billing::statement;
use data::{consume, produce, seek, ConsumeArgs, ProduceArgs, SeekArgs};
use device::{device, DeviceCommand};
use key::{key, KeyCommand};
use ledger::{ledger, LedgerCommand};
use ops::{ClockCommand, OnOff};
use print::status_name;
use serve::ServeArgs;
use tenant::{tenant, TenantCommand};
use topic::{sub, topic, SubCommand, TopicCommand};

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
