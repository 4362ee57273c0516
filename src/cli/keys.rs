//! `tallyq keys rotate-master`: rewraps every data key (and the server's)
//! under a new master key, offline, on a stopped broker's data dir. Offline
//! because the master key is read once at start-up and a running broker
//! holds sled's lock: the command refuses a data dir in use. The rewrap is
//! one atomic write (one sled batch, flushed): either every key is under the
//! new master key or, after a crash, every key is still under the old one.
//! Swap the files only after it reports success.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use tallyq::crypto::{load_or_create_master_key, rewrap_all};
use tallyq::storage::Store;

/// `tallyq keys ...`: the master key (offline).
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Rewrap every data key under a new master key (stop the broker first).
    RotateMaster(RotateArgs),
}

/// `tallyq keys rotate-master` options.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The stopped broker's data directory.
    #[arg(long, env = "TALLYQ_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The current master key file (default: <data-dir>/master.key).
    #[arg(long, env = "TALLYQ_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// The new master key file; generated (mode 0600) when it does not exist.
    #[arg(long)]
    pub new_key_file: PathBuf,
}

/// Runs a `keys` command.
pub async fn keys(cmd: &KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::RotateMaster(args) => rotate_master(args).await,
    }
}

async fn rotate_master(args: &RotateArgs) -> Result<()> {
    let old_path = args
        .master_key_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("master.key"));
    if !old_path.exists() {
        bail!("master key file {} does not exist", old_path.display());
    }
    if !args.data_dir.join("db").exists() {
        bail!("{} holds no tallyq store", args.data_dir.display());
    }
    let (old, _) = load_or_create_master_key(&old_path)
        .with_context(|| format!("master key file {}", old_path.display()))?;
    let (new, generated) = load_or_create_master_key(&args.new_key_file)
        .with_context(|| format!("new master key file {}", args.new_key_file.display()))?;
    let (store, committer) = Store::open(&args.data_dir, 64 << 20)
        .context("cannot open the data dir (is the broker still running?)")?;
    let (writes, count) = rewrap_all(&store, Arc::new(old), &new)?;
    store
        .commit(writes)
        .await
        .context("the rewrap was not stored; every key is still under the old master key")?;
    drop(store);
    committer.join();
    println!(
        "rewrapped {count} keys under {}{}; start the broker with master_key_file = {}",
        args.new_key_file.display(),
        if generated {
            " (generated now, mode 0600)"
        } else {
            ""
        },
        args.new_key_file.display()
    );
    Ok(())
}
