//! `tallyq statement TENANT MONTH --shard-map F`: a tenant's monthly
//! statement over every node of a shard map, for a tenant that moved in the
//! month (its history is on both nodes, SPEC §9).
//!
//! Each node answers with the lines of its own ledger; nodes that never had
//! the tenant answer NOT_FOUND and are skipped. Days are summed by date (the
//! move day has lines on both: the source's up to the stop, the target's
//! after it), totals and payments are summed, and the balance is the one of
//! the node the map names for the tenant now (the source's account ends at 0
//! with its `moved_out` transfer, and the target's starts with `moved_in`).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use tallyq::proto::v1 as pb;
use tallyq::shard::ShardMap;

use super::billing::{print_statement, StatementArgs};
use super::shard_ledger::node_url;
use super::Cli;

/// Merges the statements of one tenant and month from several nodes;
/// `current` is the node the tenant is on now.
pub(super) fn merge_statements(
    parts: Vec<(String, pb::Statement)>,
    current: &str,
) -> pb::Statement {
    let mut days: BTreeMap<String, pb::StatementDay> = BTreeMap::new();
    let mut merged = pb::Statement::default();
    for (node, s) in parts {
        merged.tenant = s.tenant;
        merged.month = s.month;
        merged.currency = s.currency;
        for d in s.days {
            let day = days
                .entry(d.day.clone())
                .or_insert_with(|| pb::StatementDay {
                    day: d.day.clone(),
                    ..Default::default()
                });
            day.message_units += d.message_units;
            day.free_units_applied += d.free_units_applied;
            day.topic_days += d.topic_days;
            day.storage_milli_gib_hours += d.storage_milli_gib_hours;
            day.amount_minor += d.amount_minor;
        }
        merged.message_units += s.message_units;
        merged.free_units_applied += s.free_units_applied;
        merged.topic_days += s.topic_days;
        merged.charges_minor += s.charges_minor;
        merged.payments_minor += s.payments_minor;
        if node == current {
            merged.balance_minor = s.balance_minor;
        }
        if s.final_statement.is_some() {
            merged.final_statement = s.final_statement;
        }
    }
    merged.days = days.into_values().collect();
    merged
}

/// Runs `statement --shard-map`.
pub(super) async fn run(cli: &Cli, map_path: &std::path::Path, args: &StatementArgs) -> Result<()> {
    let map = ShardMap::from_file(map_path)?;
    let Some(tenant) = args.tenant.clone() else {
        bail!("statement --shard-map needs the tenant id");
    };
    let current = map
        .node_of(&tenant)
        .unwrap_or(&map.default_node)
        .to_string();
    let mut parts = Vec::new();
    for (id, node) in &map.nodes {
        let client = cli
            .connect_to(&node_url(cli, &node.address))
            .await
            .with_context(|| format!("node {id} ({})", node.address))?;
        let answer = client
            .billing()
            .get_statement(pb::GetStatementRequest {
                tenant: tenant.clone(),
                month: args.month.clone(),
            })
            .await;
        match answer {
            Ok(s) => parts.push((id.clone(), s.into_inner())),
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(s).with_context(|| format!("the statement of node {id}")),
        }
    }
    if parts.is_empty() {
        bail!("no node of the shard map knows tenant {tenant}");
    }
    print_statement(&merge_statements(parts, &current));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(day: &str, units: u64, topic_days: u64, amount: i64) -> pb::StatementDay {
        pb::StatementDay {
            day: day.into(),
            message_units: units,
            topic_days,
            amount_minor: amount,
            ..Default::default()
        }
    }

    #[test]
    fn the_move_day_sums_both_nodes_and_the_balance_is_the_current_nodes() {
        let source = pb::Statement {
            tenant: "acme".into(),
            month: "2026-12".into(),
            days: vec![day("2026-12-01", 10, 1, 200), day("2026-12-02", 4, 1, 200)],
            message_units: 14,
            topic_days: 2,
            charges_minor: 400,
            payments_minor: 50,
            balance_minor: 0,
            ..Default::default()
        };
        let target = pb::Statement {
            tenant: "acme".into(),
            month: "2026-12".into(),
            days: vec![day("2026-12-02", 6, 0, 0), day("2026-12-03", 1, 1, 200)],
            message_units: 7,
            topic_days: 1,
            charges_minor: 200,
            balance_minor: -550,
            ..Default::default()
        };
        let merged = merge_statements(
            vec![("node-1".into(), source), ("node-2".into(), target)],
            "node-2",
        );
        assert_eq!(
            merged.days,
            vec![
                day("2026-12-01", 10, 1, 200),
                day("2026-12-02", 10, 1, 200),
                day("2026-12-03", 1, 1, 200)
            ]
        );
        assert_eq!((merged.message_units, merged.topic_days), (21, 3));
        assert_eq!((merged.charges_minor, merged.payments_minor), (600, 50));
        assert_eq!(merged.balance_minor, -550);
    }
}
