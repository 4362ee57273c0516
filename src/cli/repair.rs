//! `tallyq repair --data-dir DIR`: with the broker stopped, rebuilds the
//! topic logs and offsets of a data dir that start-up refused, from its
//! segments (`tallyq::storage::repair` says how), prints what it did and
//! what it could not recover, and leaves the dir ready for `tallyq serve`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

/// Cache sled may use while repairing.
const CACHE_BYTES: u64 = 64 << 20;

/// `tallyq repair` options.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The data directory to repair (the broker must not be running on it).
    #[arg(long, env = "TALLYQ_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// Runs the repair and prints its report.
pub fn repair(args: &RepairArgs) -> Result<()> {
    let dir = &args.data_dir;
    let report = tallyq::storage::repair(dir, CACHE_BYTES)
        .with_context(|| format!("cannot repair {}", dir.display()))?;
    println!("repaired {}", dir.display());
    println!("{report}");
    Ok(())
}
