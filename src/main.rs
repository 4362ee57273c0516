//! The `tallyq` binary: parses arguments, sets up logging, and either runs
//! the broker (`serve`) or a client command. The broker lives in the
//! library; the command line and the load tool belong to this binary
//! ([`cli`]).

mod cli;

use clap::Parser;
use cli::{keys, serve, Cli, Command};
use tallyq::config::LogFormat;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve(args) => {
            let config = args.to_config()?;
            tallyq::observability::init_logging(config.log_format == LogFormat::Json);
            serve(config).await
        }
        Command::Keys(cmd) => keys(cmd).await,
        _ => cli.run_client().await,
    }
}
