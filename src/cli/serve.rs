//! `tallyq serve`: its flags, layered over the config file, and the
//! start-up around [`tallyq::server::start`]: bind the listener, start the
//! broker, then say where the operator credential is and that it listens,
//! and run until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use tallyq::clock::ClockKind;
use tallyq::config::{Config, LogFormat};
use tallyq::storage::MinFreeDisk;

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
    /// Free disk space to keep: bytes or a percentage like 5%; below it
    /// produce and creates are refused (default 1 GiB, 0 = off).
    #[arg(long, env = "TALLYQ_MIN_FREE_DISK_BYTES")]
    pub min_free_disk_bytes: Option<MinFreeDisk>,
    /// Master key file (encryption at rest; default <data-dir>/master.key,
    /// generated with mode 0600 when missing).
    #[arg(long, env = "TALLYQ_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
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
        if let Some(v) = self.min_free_disk_bytes {
            config.min_free_disk_bytes = v;
        }
        if let Some(v) = &self.master_key_file {
            config.master_key_file = Some(v.clone());
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

/// Runs the broker with `config` until Ctrl-C or SIGTERM. It says where the
/// operator credential is and that it listens only once the broker has
/// started: the gRPC and metrics ports bound, the store open, the credential
/// files written ([`tallyq::server::start`]).
pub async fn serve(config: Config) -> Result<()> {
    // Before anything is created: the data dir and credentials are owner-only.
    tallyq::storage::restrict_umask();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let key_path = config.master_key_path();
    let key_existed = key_path.exists();
    let started = tallyq::server::start(config, listener).await?;
    let (token_path, generated) = started.operator_credential();
    println!(
        "operator credential: {}{}",
        token_path.display(),
        if generated {
            " (generated now, mode 0600)"
        } else {
            ""
        }
    );
    println!(
        "master key: {}{}",
        key_path.display(),
        if key_existed {
            ""
        } else {
            " (generated now, mode 0600: keep it safe, without it no stored message can be read)"
        }
    );
    println!("tallyq listening on {}", started.local_addr()?);
    started.serve(shutdown_signal()).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (a background process ignores SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
