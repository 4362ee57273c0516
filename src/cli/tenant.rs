//! `tallyq tenant`: create, list, show, update, suspend, resume, terminate,
//! move (`tenant_move.rs`).

use anyhow::Result;
use clap::{Subcommand, ValueEnum};

use super::print::print_tenant;
use tallyq::client::Client;
use tallyq::proto::v1 as pb;

/// Tenant commands.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Tenant id: 3-32 of a-z, 0-9, '-'.
        id: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Contact e-mail.
        #[arg(long)]
        email: Option<String>,
        /// Plan [default: standard].
        #[arg(long)]
        plan: Option<String>,
    },
    /// List tenants.
    List,
    /// Show one tenant.
    Get {
        /// Tenant id.
        id: String,
    },
    /// Change a tenant's details, plan or quota overrides.
    Update {
        /// Tenant id.
        id: String,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New contact e-mail.
        #[arg(long)]
        email: Option<String>,
        /// New plan.
        #[arg(long)]
        plan: Option<String>,
        /// Set a quota override, e.g. max_topics=20 (repeatable).
        #[arg(long = "set-quota", value_parser = parse_quota)]
        set_quota: Vec<(String, u64)>,
        /// Remove a quota override (repeatable).
        #[arg(long = "clear-quota")]
        clear_quota: Vec<String>,
    },
    /// Suspend a tenant: data plane refused, data kept.
    Suspend {
        /// Tenant id.
        id: String,
        /// Why.
        #[arg(long, value_enum, default_value = "operator")]
        reason: ReasonArg,
    },
    /// Resume a suspended tenant.
    Resume {
        /// Tenant id.
        id: String,
    },
    /// Terminate a tenant for good: settle its usage, erase its data and
    /// keys, keep its ledger entries (cannot be undone)
    Terminate {
        /// Tenant id.
        id: String,
        /// Why.
        #[arg(long, default_value = "operator")]
        reason: String,
    },
    /// Move a tenant to another node of a shard map: export, import, flip
    /// the map and the router config, erase on the source. Rerun it to
    /// finish a move that stopped half-way.
    Move(super::tenant_move::MoveArgs),
}

/// Suspension reasons on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReasonArg {
    /// Abuse of the service.
    Abuse,
    /// Any other operator decision.
    Operator,
}

fn parse_quota(text: &str) -> Result<(String, u64), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("quota '{text}' is not name=value"))?;
    let value = value
        .parse()
        .map_err(|_| format!("quota value '{value}' is not a whole number"))?;
    Ok((name.to_string(), value))
}

/// Runs a `tallyq tenant` command and prints the tenant(s) it returns.
pub(super) async fn tenant(client: &Client, cmd: &TenantCommand) -> Result<()> {
    match cmd {
        TenantCommand::Create {
            id,
            name,
            email,
            plan,
        } => {
            let t = call!(
                client,
                operator,
                create_tenant,
                pb::CreateTenantRequest {
                    id: id.clone(),
                    display_name: name.clone().unwrap_or_default(),
                    contact_email: email.clone().unwrap_or_default(),
                    plan: plan.clone().unwrap_or_default(),
                }
            );
            print_tenant(&t);
        }
        TenantCommand::List => {
            for t in call!(client, operator, list_tenants, pb::ListTenantsRequest {}).tenants {
                print_tenant(&t);
            }
        }
        TenantCommand::Update {
            id,
            name,
            email,
            plan,
            set_quota,
            clear_quota,
        } => {
            let t = call!(
                client,
                operator,
                update_tenant,
                pb::UpdateTenantRequest {
                    id: id.clone(),
                    display_name: name.clone(),
                    contact_email: email.clone(),
                    plan: plan.clone(),
                    set_quota_overrides: set_quota.iter().cloned().collect(),
                    clear_quota_overrides: clear_quota.clone(),
                }
            );
            print_tenant(&t);
        }
        TenantCommand::Suspend { id, reason } => {
            let reason = match reason {
                ReasonArg::Abuse => pb::SuspensionReason::Abuse,
                ReasonArg::Operator => pb::SuspensionReason::Operator,
            };
            let t = call!(
                client,
                operator,
                suspend_tenant,
                pb::SuspendTenantRequest {
                    id: id.clone(),
                    reason: reason as i32,
                }
            );
            print_tenant(&t);
        }
        TenantCommand::Resume { id } => {
            let t = call!(
                client,
                operator,
                resume_tenant,
                pb::ResumeTenantRequest { id: id.clone() }
            );
            print_tenant(&t);
        }
        TenantCommand::Terminate { id, reason } => {
            let t = call!(
                client,
                operator,
                terminate_tenant,
                pb::TerminateTenantRequest {
                    id: id.clone(),
                    reason: reason.clone(),
                }
            );
            print_tenant(&t);
        }
        TenantCommand::Move(_) => {
            anyhow::bail!("tenant move dials the nodes of its shard map, not --server")
        }
        TenantCommand::Get { id } => {
            let t = call!(
                client,
                operator,
                get_tenant,
                pb::GetTenantRequest { id: id.clone() }
            );
            print_tenant(&t);
        }
    }
    Ok(())
}
