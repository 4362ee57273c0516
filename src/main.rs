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
    tune_allocator();
    // mimalloc's arenas on transparent huge pages more than doubled the
    // broker's resident memory under load (~80 MB against glibc's ~30 MB
    // here); without them it is ~36 MB at the same CPU per message.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    run()
}

/// How long mimalloc keeps a freed page before returning it to the OS
/// (MADV_DONTNEED). mimalloc v3's default is 1,000 ms, and it purges only when
/// a thread next frees a page, so a quiet broker kept what it freed last: 64
/// idle streams held ~60 MiB, and a tenant's never-read Fetches pinned +55 MiB
/// over its 64 MiB delivery limit (`cargo bench --bench memory_bound`). 0
/// gave +8 MiB but ~20x the page faults per one-message produce; 100 ms keeps
/// pages that are reused within a burst (BENCHMARKS.md "Allocator").
#[cfg(not(feature = "bench-system-alloc"))]
const PURGE_DELAY_MS: std::ffi::c_long = 100;

/// How often a background thread lets mimalloc purge what has waited its
/// delay, so that memory freed just before the broker went quiet is returned too.
#[cfg(not(feature = "bench-system-alloc"))]
const PURGE_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Sets mimalloc's purge delay (`MIMALLOC_PURGE_DELAY` in the environment
/// still wins, for measuring) and starts the purge thread.
#[cfg(not(feature = "bench-system-alloc"))]
fn tune_allocator() {
    /// `mi_option_purge_delay` of mimalloc.h's `mi_option_e`: 15 in v2 and v3
    /// (retired options keep their numbers). libmimalloc-sys declares these
    /// functions only under its `extended` feature (which needs `cty`, not in
    /// the tree) and names no constant for this option.
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
        fn mi_collect(force: bool);
    }
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator linked into this
        // binary; mimalloc reads it at each purge decision.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
    let _ = std::thread::Builder::new()
        .name("allocator-purge".into())
        .spawn(|| {
            // mi_collect works through the calling thread's heap, which
            // exists once the thread has allocated.
            let warm = Box::new(0u64);
            loop {
                std::hint::black_box(&warm);
                std::thread::sleep(PURGE_TICK);
                // SAFETY: mi_collect(false) frees this thread's empty pages
                // and purges arena memory whose delay has passed; it may be
                // called from any thread at any time.
                unsafe { mi_collect(false) };
            }
        });
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
