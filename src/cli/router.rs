//! `tallyq router render`: the nginx config of the router in front of the
//! brokers, rendered from the shard map (SPEC §9). Needs no broker.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use tallyq::shard::{render_configmap, render_nginx, ShardMap};

/// Router commands.
#[derive(Debug, Subcommand)]
pub enum RouterCommand {
    /// Write the nginx config that routes each request to its tenant's node.
    Render {
        /// The shard map (TOML: nodes, tenants, default node, router settings).
        #[arg(long)]
        shard_map: PathBuf,
        /// Write here (atomically: a temp file renamed over it) instead of
        /// standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Wrap the config (and the shard map) in a Kubernetes ConfigMap of
        /// this name instead of writing bare nginx.conf.
        #[arg(long, value_name = "NAME")]
        configmap: Option<String>,
    },
}

/// Runs a router command.
pub(super) fn router(cmd: &RouterCommand) -> Result<()> {
    match cmd {
        RouterCommand::Render {
            shard_map,
            out,
            configmap,
        } => {
            let map = ShardMap::from_file(shard_map)?;
            let conf = render_nginx(&map);
            let text = match configmap {
                Some(name) => {
                    let source = std::fs::read_to_string(shard_map)
                        .with_context(|| format!("reading {}", shard_map.display()))?;
                    render_configmap(name, &conf, &source)
                }
                None => conf,
            };
            match out {
                None => print!("{text}"),
                Some(path) => {
                    let tmp = path.with_extension("tmp");
                    std::fs::write(&tmp, &text)
                        .with_context(|| format!("writing {}", tmp.display()))?;
                    std::fs::rename(&tmp, path)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "router config for {} nodes and {} tenants written to {}",
                        map.nodes.len(),
                        map.tenants.len(),
                        path.display()
                    );
                }
            }
            Ok(())
        }
    }
}
