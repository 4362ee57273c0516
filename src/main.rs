//! The `tallyq` binary: parses arguments, sets up logging, and either runs
//! the broker (`serve`) or a client command. The broker lives in the
//! library; the command line and the load tool belong to this binary
//! ([`cli`]).

mod cli;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command};
use tallyq::config::LogFormat;

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve(args) => {
            let config = args.to_config()?;
            tallyq::observability::init_logging(config.log_format == LogFormat::Json);
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            // Make sure the operator credential exists before anyone is told
            // where it is; `run` reads the same file.
            let token_path = config.operator_token_path();
            let (_, generated) = tallyq::tenancy::load_or_create_operator_token(&token_path)
                .with_context(|| format!("operator credential file {}", token_path.display()))?;
            println!(
                "operator credential: {}{}",
                token_path.display(),
                if generated {
                    " (generated now, mode 0600)"
                } else {
                    ""
                }
            );
            println!("tallyq listening on {}", listener.local_addr()?);
            tallyq::run(config, listener, shutdown_signal()).await?;
            Ok(())
        }
        _ => cli.run_client().await,
    }
}
