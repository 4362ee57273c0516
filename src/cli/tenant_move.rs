//! `tallyq tenant move T --from A --to B --shard-map F`: moves a tenant
//! between two nodes of a shard map (SPEC §9), each node dialled directly
//! at its address with the CLI's operator credential.
//!
//! The steps, and what a rerun does after each one failed or was cut off:
//!
//! 1. Look: A's record of T says where the move stands. Terminated as
//!    "moved to B": only the map may still need its flip (step 4). Not on
//!    A at all: T must already be on B.
//! 2. Export from A: T stops there (kept across restarts) and A streams its
//!    snapshot. A rerun exports the same move again (the same snapshot id).
//! 3. Import into B. A rerun with the same snapshot is answered "already
//!    imported"; an import that died half-way is redone by B.
//! 4. Flip the shard map (T → B, temp file + rename) and re-render the
//!    router config; the reload is `nginx -s reload` (or `--reload-command`).
//! 5. Finish on A: T is erased there, its data key destroyed.
//!
//! Until step 3 T's whole state is on A only (stopped), from step 3 on B
//! serves it; the map may point at A until step 4, and A answers "moving"
//! meanwhile, which clients retry. Nothing is lost at any step.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tokio_stream::StreamExt;

use tallyq::client::Client;
use tallyq::proto::v1 as pb;
use tallyq::shard::{render_nginx, ShardMap};

use super::shard_ledger::node_url;
use super::Cli;

/// The arguments of `tenant move`.
#[derive(Debug, Clone, clap::Args)]
pub struct MoveArgs {
    /// The tenant to move.
    pub tenant: String,
    /// The node it is on now (a node id of the shard map).
    #[arg(long)]
    pub from: String,
    /// The node it moves to.
    #[arg(long)]
    pub to: String,
    /// The shard map; rewritten with the tenant on `--to`.
    #[arg(long)]
    pub shard_map: PathBuf,
    /// Re-render the router's nginx config here after the flip.
    #[arg(long)]
    pub router_config: Option<PathBuf>,
    /// Run this (with `sh -c`) after the flip instead of only saying that
    /// `nginx -s reload` is next, e.g. "nginx -s reload".
    #[arg(long)]
    pub reload_command: Option<String>,
    /// Accept a target whose rate card for the tenant's plan differs: it is
    /// billed by the target's from the move on.
    #[arg(long)]
    pub reprice: bool,
}

/// Writes `text` to `path` through a temp file renamed over it.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// An exported snapshot: its id, checksum and bytes.
struct Exported {
    snapshot_id: String,
    sha256: String,
    bytes: Vec<u8>,
}

/// Exports `tenant` from `source` for the move.
async fn export(source: &Client, tenant: &str) -> Result<Exported> {
    let mut stream = source
        .operator()
        .export_tenant_for_move(pb::ExportTenantForMoveRequest {
            tenant: tenant.to_string(),
        })
        .await?
        .into_inner();
    let mut out = Exported {
        snapshot_id: String::new(),
        sha256: String::new(),
        bytes: Vec::new(),
    };
    let mut total = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if !chunk.snapshot_id.is_empty() {
            out.snapshot_id = chunk.snapshot_id;
            out.sha256 = chunk.sha256;
            total = chunk.total_bytes;
        }
        out.bytes.extend_from_slice(&chunk.data);
    }
    if out.bytes.len() as u64 != total || out.sha256.is_empty() {
        bail!(
            "the export of {tenant} ended after {} of its {total} bytes; run the move again",
            out.bytes.len()
        );
    }
    Ok(out)
}

/// Imports `exported` into `target`.
async fn import(
    target: &Client,
    exported: &Exported,
    reprice: bool,
) -> Result<pb::ImportTenantResponse> {
    let mut requests = Vec::new();
    for (i, data) in exported.bytes.chunks(1 << 20).enumerate() {
        requests.push(pb::ImportTenantRequest {
            data: bytes::Bytes::copy_from_slice(data),
            sha256: if i == 0 {
                exported.sha256.clone()
            } else {
                String::new()
            },
            reprice,
        });
    }
    if requests.is_empty() {
        requests.push(pb::ImportTenantRequest {
            sha256: exported.sha256.clone(),
            reprice,
            ..Default::default()
        });
    }
    Ok(target
        .operator()
        .import_tenant(tokio_stream::iter(requests))
        .await?
        .into_inner())
}

/// Points `tenant` at `to` in the map at `path` and re-renders the router
/// config; says (or runs) the reload.
fn flip(args: &MoveArgs, mut map: ShardMap) -> Result<()> {
    if map.node_of(&args.tenant) != Some(args.to.as_str()) {
        map.tenants.insert(args.tenant.clone(), args.to.clone());
        map.validate()?;
        write_atomically(&args.shard_map, &map.to_toml())?;
        eprintln!(
            "shard map {}: {} -> {}",
            args.shard_map.display(),
            args.tenant,
            args.to
        );
    }
    if let Some(out) = &args.router_config {
        write_atomically(out, &render_nginx(&map))?;
        eprintln!("router config written to {}", out.display());
    }
    match &args.reload_command {
        Some(command) => {
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .status()
                .with_context(|| format!("running {command:?}"))?;
            if !status.success() {
                bail!("{command:?} failed ({status}); reload the router, then run the move again");
            }
            eprintln!("router reloaded ({command})");
        }
        None => eprintln!("next: reload the router (nginx -s reload)"),
    }
    Ok(())
}

/// Runs `tallyq tenant move`.
pub(super) async fn run(cli: &Cli, args: &MoveArgs) -> Result<()> {
    let map = ShardMap::from_file(&args.shard_map)?;
    if args.from == args.to {
        bail!("--from and --to are both {}", args.from);
    }
    let address = |id: &str| -> Result<String> {
        map.nodes
            .get(id)
            .map(|n| node_url(cli, &n.address))
            .with_context(|| format!("node {id} is not in the shard map"))
    };
    let source = cli
        .connect_to(&address(&args.from)?)
        .await
        .context("the source node")?;
    let target = cli
        .connect_to(&address(&args.to)?)
        .await
        .context("the target node")?;
    let tenant = args.tenant.as_str();

    let on_source = source
        .operator()
        .get_tenant(pb::GetTenantRequest {
            id: tenant.to_string(),
        })
        .await;
    let record = match on_source {
        Ok(t) => t.into_inner(),
        Err(s) if s.code() == tonic::Code::NotFound => {
            let on_target = target
                .operator()
                .get_tenant(pb::GetTenantRequest {
                    id: tenant.to_string(),
                })
                .await;
            if on_target.is_err() {
                bail!(
                    "tenant {tenant} is on neither {} nor {}",
                    args.from,
                    args.to
                );
            }
            eprintln!("{tenant} is not on {} and is on {}", args.from, args.to);
            return flip(args, map);
        }
        Err(s) => return Err(s).context("reading the tenant on the source"),
    };
    let moved_away = format!("moved to {}", args.to);
    if record.status == pb::TenantStatus::Terminated as i32 {
        if record.status_reason == moved_away {
            eprintln!("{tenant} was moved to {} already", args.to);
            return flip(args, map);
        }
        bail!(
            "tenant {tenant} is terminated on {} ({})",
            args.from,
            record.status_reason
        );
    }

    let exported = export(&source, tenant)
        .await
        .context("exporting from the source")?;
    eprintln!(
        "exported {tenant} from {} (snapshot {}, {} bytes, sha256 {})",
        args.from,
        exported.snapshot_id,
        exported.bytes.len(),
        exported.sha256
    );
    let imported = import(&target, &exported, args.reprice)
        .await
        .context("importing into the target")?;
    if imported.already_imported {
        eprintln!("{} had snapshot {} already", args.to, imported.snapshot_id);
    } else {
        eprintln!(
            "imported into {}: {} topics, {} messages, {} subscriptions",
            args.to, imported.topics, imported.messages, imported.subscriptions
        );
    }
    flip(args, map)?;
    let finished = source
        .operator()
        .finish_tenant_move(pb::FinishTenantMoveRequest {
            tenant: tenant.to_string(),
            snapshot_id: exported.snapshot_id.clone(),
            target_node: args.to.clone(),
        })
        .await
        .context("erasing the tenant on the source (run the move again to finish it)")?
        .into_inner();
    eprintln!(
        "{tenant} erased on {}{}; the move is complete",
        args.from,
        if finished.already_finished {
            " (before)"
        } else {
            ""
        }
    );
    Ok(())
}
