//! Operations: the audit log, maintenance mode, and a tenant's quota
//! figures (the clock is in `clock`).

use anyhow::Result;
use clap::{Args, ValueEnum};

use tallyq::client::Client;
use tallyq::proto::v1 as pb;

/// `tallyq audit` options.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// First sequence number.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Only this tenant's events.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub tenant: String,
    /// At most this many events.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// `tallyq maintenance` options.
#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    /// on or off.
    #[arg(value_enum)]
    pub state: OnOff,
    /// Why (shown to clients).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub reason: String,
}

/// on / off.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    /// Enable.
    On,
    /// Disable.
    Off,
}

/// Prints one page of the audit log, tab-separated; where to resume goes to stderr.
pub(super) async fn audit(client: &Client, args: &AuditArgs) -> Result<()> {
    let page = call!(
        client,
        operator,
        list_audit_events,
        pb::ListAuditEventsRequest {
            from_sequence: args.from,
            limit: args.limit,
            tenant: args.tenant.clone(),
        }
    );
    for e in page.events {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            e.sequence, e.time_unix_ms, e.actor, e.action, e.tenant, e.detail
        );
    }
    eprintln!("next: --from {}", page.next_sequence);
    Ok(())
}

/// Turns maintenance mode on or off.
pub(super) async fn maintenance(client: &Client, args: &MaintenanceArgs) -> Result<()> {
    let enabled = matches!(args.state, OnOff::On);
    call!(
        client,
        operator,
        set_maintenance,
        pb::SetMaintenanceRequest {
            enabled,
            reason: args.reason.clone(),
        }
    );
    println!("maintenance {}", if enabled { "on" } else { "off" });
    Ok(())
}

/// Prints the tenant's plan and each limit with its current use.
pub(super) async fn quota(client: &Client) -> Result<()> {
    let quota = call!(client, admin, get_quota, pb::GetQuotaRequest {});
    println!("plan {}", quota.plan);
    for q in quota.quotas {
        println!("{}\tlimit={}\tused={}\t{}", q.name, q.limit, q.used, q.unit);
    }
    Ok(())
}
