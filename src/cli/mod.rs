//! The `tallyq` command line: `serve` runs the broker; every other command is
//! a client of a running broker, through [`tallyq::client`].

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use tallyq::client::Client;

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
mod clock;
mod data;
mod device;
pub mod exit;
mod key;
mod keys;
mod ledger;
mod ops;
mod print;
mod repair;
mod router;
mod serve;
mod shard_ledger;
mod shard_statement;
mod tenant;
mod tenant_move;
mod topic;

use bench::BenchArgs;
use billing::{AccountArgs, PaymentArgs, SettleArgs, StatementArgs};
use clock::ClockArgs;
use data::{ConsumeArgs, ExportArgs, ProduceArgs, SeekArgs};
use device::DeviceCommand;
use key::KeyCommand;
/// The offline master-key commands (main.rs runs them without a broker).
pub use keys::{keys, KeysCommand};
use ledger::LedgerCommand;
use ops::{AuditArgs, MaintenanceArgs};
/// Repairs a data dir (main.rs calls it for `tallyq repair`).
pub use repair::repair;
use repair::RepairArgs;
use router::RouterCommand;
/// Runs the broker (main.rs calls it for `tallyq serve`).
pub use serve::serve;
use serve::ServeArgs;
use tenant::TenantCommand;
use topic::{SubCommand, TopicCommand};

/// The heading the client flags (`--server`, `--token`, TLS) stand under in
/// every command's help.
const CLIENT_OPTIONS: &str = "Client options (every command but serve)";

/// The client flags' ids, hidden from `serve --help` (serve has its own
/// listen and TLS flags; these would only confuse there).
const CLIENT_FLAGS: [&str; 7] = [
    "server",
    "token",
    "token_file",
    "tls_ca",
    "tls_domain",
    "tls_cert",
    "tls_key",
];

/// tallyq: a multi-tenant, metered message-queue broker for IoT platforms.
#[derive(Debug, Parser)]
#[command(name = "tallyq", version, about, after_help = exit::EXIT_CODES)]
pub struct Cli {
    /// Broker address for client commands.
    #[arg(
        long,
        global = true, help_heading = CLIENT_OPTIONS,
        env = "TALLYQ_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// Credential for client commands: a tenant API key or the operator token.
    #[arg(long, global = true, help_heading = CLIENT_OPTIONS, env = "TALLYQ_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the credential from this file (default: ./data/operator.token when present).
    #[arg(long, global = true, help_heading = CLIENT_OPTIONS, env = "TALLYQ_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust: connect over TLS (use an https:// server address).
    #[arg(long, global = true, help_heading = CLIENT_OPTIONS, env = "TALLYQ_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Name the server's certificate must carry (default: the address's host).
    #[arg(long, global = true, help_heading = CLIENT_OPTIONS, env = "TALLYQ_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
    /// Client certificate (PEM) for servers that require one.
    #[arg(long, global = true, help_heading = CLIENT_OPTIONS, env = "TALLYQ_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, global = true, help_heading = CLIENT_OPTIONS, env = "TALLYQ_TLS_KEY", requires = "tls_cert")]
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
    Audit(AuditArgs),
    /// Maintenance mode (operator): refuse data-plane work with UNAVAILABLE.
    Maintenance(MaintenanceArgs),
    /// Export all of the tenant's data as JSON Lines to a file (tenant key, manage scope).
    Export(ExportArgs),
    /// Load tool: producers and consumers against a broker; prints throughput,
    /// latency percentiles and (with --server-pid) the broker's CPU and peak RSS.
    Bench(BenchArgs),
    /// The billing ledger: export it, verify its hash chain.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// A tenant's monthly statement.
    Statement(StatementArgs),
    /// A tenant's account: balance, oldest unpaid charge, status.
    Account(AccountArgs),
    /// The tenant's live (unsettled) usage, per day, topic and device.
    Usage,
    /// Settle every tenant's ended days up to a day (operator).
    Settle(SettleArgs),
    /// Record a payment (operator); idempotent by payment id.
    Payment(PaymentArgs),
    /// The tenant's limits and current use (tenant key with manage scope).
    Quota,
    /// The broker's clock; move the manual test clock (operator).
    Clock(ClockArgs),
    /// The router in front of several brokers: render its nginx config from
    /// the shard map (needs no broker).
    #[command(subcommand)]
    Router(RouterCommand),
    /// Rebuild a data dir's topic logs and offsets from its segments, after
    /// start-up refused it (run with the broker stopped; not a client command).
    Repair(RepairArgs),
    /// The master key of a stopped broker's data dir (offline).
    #[command(subcommand)]
    Keys(KeysCommand),
}

impl Cli {
    /// Parses the command line (exiting with clap's message and code 2 on a
    /// usage error), with the client flags hidden from `serve --help`.
    pub fn parse_args() -> Cli {
        let command = Cli::command();
        // clap does not propagate a global flag to a subcommand that has
        // one of the same id: serve gets hidden copies instead.
        let hidden: Vec<clap::Arg> = command
            .get_arguments()
            .filter(|arg| CLIENT_FLAGS.contains(&arg.get_id().as_str()))
            .map(|arg| arg.clone().global(false).hide(true))
            .collect();
        let command = command.mut_subcommand("serve", |serve| serve.args(hidden));
        let matches = command.get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// True when no credential is given at all (no `--token`, no
    /// `TALLYQ_TOKEN`, no readable token file): a refusal then gets a hint.
    pub fn has_no_credential(&self) -> bool {
        matches!(self.credential(), Ok(token) if token.is_empty())
    }

    /// The credential: `--token`, else the `--token-file`, else
    /// ./data/operator.token when it exists, else none.
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

    /// Connects to `--server` with the credential; over TLS when `--tls-ca`
    /// is given, presenting `--tls-cert`/`--tls-key` when both are.
    async fn connect(&self) -> Result<Client> {
        self.connect_to(&self.server).await
    }

    /// Like `connect`, to `server` instead of `--server` (the nodes of a
    /// shard map).
    async fn connect_to(&self, server: &str) -> Result<Client> {
        let Some(ca) = &self.tls_ca else {
            return Ok(Client::connect(server, &self.credential()?).await?);
        };
        let ca = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        let domain = match &self.tls_domain {
            Some(d) => d.clone(),
            None => host_of(server).to_string(),
        };
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((std::fs::read(c)?, std::fs::read(k)?)),
            _ => None,
        };
        Ok(Client::connect_tls(
            server,
            &self.credential()?,
            &ca,
            &domain,
            identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
        )
        .await?)
    }

    /// Runs a client command against the broker: connects, then hands the
    /// command to its group's module.
    pub async fn run_client(&self) -> Result<()> {
        if let Command::Router(cmd) = &self.command {
            return router::router(cmd);
        }
        if let Command::Statement(args) = &self.command {
            if let Some(map) = &args.shard_map {
                return shard_statement::run(self, map, args).await;
            }
        }
        if let Command::Tenant(TenantCommand::Move(args)) = &self.command {
            return tenant_move::run(self, args).await;
        }
        if let Command::Ledger(cmd) = &self.command {
            if let Some(map) = cmd.shard_map() {
                return shard_ledger::run(self, map, cmd).await;
            }
        }
        let client = self.connect().await?;
        match &self.command {
            Command::Serve(_) => {
                Err(exit::UsageError("serve is not a client command".into()).into())
            }
            Command::Repair(_) => {
                Err(exit::UsageError("repair is not a client command".into()).into())
            }
            Command::Keys(_) => Err(exit::UsageError("keys is not a client command".into()).into()),
            Command::Tenant(cmd) => tenant::tenant(&client, cmd).await,
            Command::Key(cmd) => key::key(&client, cmd).await,
            Command::Topic(cmd) => topic::topic(&client, cmd).await,
            Command::Sub(cmd) => topic::sub(&client, cmd).await,
            Command::Produce(args) => data::produce(&client, args).await,
            Command::Consume(args) => data::consume(&client, args).await,
            Command::Seek(args) => data::seek(&client, args).await,
            Command::Device(cmd) => device::device(&client, cmd).await,
            Command::Audit(args) => ops::audit(&client, args).await,
            Command::Maintenance(args) => ops::maintenance(&client, args).await,
            Command::Export(args) => data::export(&client, args).await,
            Command::Bench(args) => bench::bench(&client, args).await,
            Command::Ledger(cmd) => ledger::ledger(&client, cmd).await,
            Command::Statement(args) => billing::statement(&client, args).await,
            Command::Account(args) => billing::account(&client, args).await,
            Command::Usage => billing::usage(&client).await,
            Command::Settle(args) => billing::settle(&client, args).await,
            Command::Payment(args) => billing::payment(&client, args).await,
            Command::Quota => ops::quota(&client).await,
            Command::Clock(args) => clock::clock(&client, args).await,
            Command::Router(_) => {
                Err(exit::UsageError("router commands need no broker".into()).into())
            }
        }
    }
}

/// The host part of a server address (`https://host:port/...`), the name a
/// TLS certificate is checked against unless `--tls-domain` says otherwise.
fn host_of(server: &str) -> &str {
    server
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split([':', '/']).next())
        .unwrap_or("localhost")
}
