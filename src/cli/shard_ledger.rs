//! `tallyq ledger export|verify --shard-map F`: one ledger view over every
//! node of a shard map, each node reached directly at its address with the
//! CLI's credential (the operator or billing-reader token every broker
//! shares) and TLS flags.
//!
//! Export reads every node from its cursor before writing anything, so a
//! node that cannot be read fails the export with nothing written and the
//! cursor file unchanged. The cursor file is rewritten (temp file, fsync,
//! rename) only after the entries are on standard output; a run that dies
//! between the two repeats those entries next time, and (node_id, sequence)
//! is the key a billing job drops repeats by.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};

use tallyq::proto::v1 as pb;
use tallyq::shard::{merge_by_time, NodeCursors, ShardMap};

use super::ledger::LEDGER_COLUMNS;
use super::ledger::{ledger_csv, ledger_entries, ledger_json, LedgerCommand, LedgerFormat};
use super::Cli;

/// The broker address the CLI dials for a node's `host:port`.
pub(super) fn node_url(cli: &Cli, address: &str) -> String {
    let scheme = if cli.tls_ca.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{address}")
}

/// Node `id`'s entries from `from` on, checked to be stamped with `id` (a
/// shard map pointing a node id at another broker is caught here).
async fn node_entries(
    cli: &Cli,
    id: &str,
    address: &str,
    from: u64,
) -> Result<Vec<pb::LedgerEntry>> {
    let client = cli
        .connect_to(&node_url(cli, address))
        .await
        .with_context(|| format!("node {id} ({address})"))?;
    let (entries, _) = ledger_entries(&client, from)
        .await
        .with_context(|| format!("reading the ledger of node {id} ({address})"))?;
    if let Some(e) = entries.iter().find(|e| e.node_id != id) {
        bail!(
            "node {id} ({address}) answered with ledger entry {} of node '{}': the shard map \
             points node {id} at another broker",
            e.sequence,
            e.node_id
        );
    }
    Ok(entries)
}

/// Runs a ledger command over every node of the shard map at `map_path`.
pub(super) async fn run(cli: &Cli, map_path: &Path, cmd: &LedgerCommand) -> Result<()> {
    let map = ShardMap::from_file(map_path)?;
    match cmd {
        LedgerCommand::Export { format, cursor, .. } => {
            let cursors = match cursor {
                Some(path) if path.exists() => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    NodeCursors::parse(&text)?
                }
                _ => NodeCursors::default(),
            };
            let mut runs = Vec::new();
            let mut next = NodeCursors::default();
            for (id, node) in &map.nodes {
                let from = cursors.next_of(id);
                let entries = node_entries(cli, id, &node.address, from).await?;
                next.0
                    .insert(id.clone(), entries.last().map_or(from, |e| e.sequence + 1));
                runs.push((id.clone(), entries));
            }
            let merged = merge_by_time(runs, |e| (e.created_unix_ms, e.sequence));
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            if matches!(format, LedgerFormat::Csv) {
                writeln!(out, "{LEDGER_COLUMNS}")?;
            }
            for (_, e) in &merged {
                match format {
                    LedgerFormat::Csv => writeln!(out, "{}", ledger_csv(e))?,
                    LedgerFormat::Jsonl => writeln!(out, "{}", ledger_json(e))?,
                }
            }
            out.flush()?;
            drop(out);
            if let Some(path) = cursor {
                write_cursor_file(path, &next)?;
            }
            eprintln!(
                "exported {} entries from {} nodes; next: {next}{}",
                merged.len(),
                map.nodes.len(),
                cursor
                    .as_ref()
                    .map(|p| format!(" (saved in {})", p.display()))
                    .unwrap_or_default()
            );
            Ok(())
        }
        LedgerCommand::Verify { .. } => {
            let mut broken = Vec::new();
            for (id, node) in &map.nodes {
                let checked = node_entries(cli, id, &node.address, 1)
                    .await
                    .and_then(|entries| Ok(tallyq::client::verify_ledger(&entries)?));
                match checked {
                    Ok(n) => println!("{id}: ledger verified: {n} entries, hash chain intact"),
                    Err(e) => {
                        println!("{id}: NOT verified: {e:#}");
                        broken.push(id.clone());
                    }
                }
            }
            if !broken.is_empty() {
                bail!("ledger verification failed on {}", broken.join(", "));
            }
            println!("all {} nodes verified", map.nodes.len());
            Ok(())
        }
    }
}

/// Replaces the cursor file: a temp file beside it, synced, renamed over it.
fn write_cursor_file(path: &Path, cursors: &NodeCursors) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(cursors.to_file_text().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
