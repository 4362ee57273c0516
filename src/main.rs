//! The `tallyq` binary: parses arguments, sets up logging, and either runs
//! the broker (`serve`) or a client command. The broker lives in the
//! library; the command line and the load tool belong to this binary
//! ([`cli`]). A failure ends with one `error:` line and a documented exit
//! code ([`cli::exit`]).

mod cli;

use std::process::ExitCode;

use cli::{exit, keys, repair, serve, Cli, Command};
use tallyq::config::LogFormat;

/// mimalloc instead of glibc malloc: a one-message produce makes ~100 small
/// allocations across tonic, hyper, h2 and the broker; mimalloc's thread-local
/// free lists make each a few dozen instructions (BENCHMARKS.md "Per-request edge").
/// The `bench-system-alloc` measurement build keeps glibc malloc instead
/// (benches/allocator.sh).
#[cfg(not(feature = "bench-system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // mimalloc's arenas on transparent huge pages more than doubled the
    // broker's resident memory under load (~80 MB against glibc's ~30 MB
    // here); without them it is ~36 MB at the same CPU per message.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    run()
}

#[tokio::main]
async fn run() -> ExitCode {
    let cli = Cli::parse_args();
    let result = match &cli.command {
        Command::Serve(args) => match args.to_config() {
            Ok(config) => {
                tallyq::observability::init_logging(config.log_format == LogFormat::Json);
                serve(config).await
            }
            Err(e) => Err(e),
        },
        Command::Repair(args) => {
            tallyq::observability::init_logging(false);
            repair(args)
        }
        Command::Keys(cmd) => keys(cmd).await,
        _ => {
            exit::quiet_panics();
            cli.run_client().await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit::report(
            &e,
            exit::Context {
                no_credential: !matches!(cli.command, Command::Serve(_)) && cli.has_no_credential(),
            },
        ),
    }
}
