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
    #[cfg(not(feature = "bench-system-alloc"))]
    purge_freed_memory_at_once();
    // mimalloc's arenas on transparent huge pages more than doubled the
    // broker's resident memory under load (~80 MB against glibc's ~30 MB
    // here); without them it is ~36 MB at the same CPU per message.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    run()
}

/// mimalloc v3 keeps a freed page resident for `purge_delay` (1,000 ms by
/// default) and purges only when it next frees or abandons a page, so a
/// broker that goes quiet keeps whatever it freed last: 64 idle streams held
/// ~60 MiB, and a tenant's never-read streams and Fetches pinned up to +55 MiB
/// over its 64 MiB delivery limit (`cargo bench --bench memory_bound`). With
/// 0 a page goes back to the OS (MADV_DONTNEED) when it is freed: +4 and +8
/// MiB, at the same CPU per message (BENCHMARKS.md "Allocator").
/// `MIMALLOC_PURGE_DELAY` in the environment still wins (for measuring).
#[cfg(not(feature = "bench-system-alloc"))]
fn purge_freed_memory_at_once() {
    /// `mi_option_purge_delay` of mimalloc.h's `mi_option_e`: 15 in v2 and v3
    /// (retired options keep their numbers). libmimalloc-sys declares
    /// `mi_option_set` only under its `extended` feature and names no
    /// constant for this option, hence the declaration below.
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator linked into this
        // binary; mimalloc reads it at each purge decision, so setting it
        // here, before any thread but main exists, is the documented use.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
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
