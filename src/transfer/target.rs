//! The target's half of a move: check, create, rebuild, serve.

use std::collections::HashMap;

use super::snapshot::Snapshot;
use super::source::rates_part;
use crate::billing::{Billing, MoveAccount};
use crate::broker::admin::Imported;
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::tenancy::{
    validate_tenant_id, ApiKey, DeviceBinding, Scope, Tenancy, Tenant, TenantStatus,
};

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    /// The tenant.
    pub tenant: String,
    /// The snapshot's id.
    pub snapshot_id: String,
    /// This snapshot was imported before; nothing was written.
    pub already_imported: bool,
    /// What was rebuilt.
    pub imported: Imported,
}

/// Imports a tenant from an encoded snapshot whose exporter gave `sha256`.
/// See the module doc of `transfer` for what it refuses.
pub async fn import(
    broker: &Broker,
    tenancy: &Tenancy,
    billing: &Billing,
    bytes: &[u8],
    sha256: &str,
    reprice: bool,
) -> Result<ImportOutcome> {
    let snapshot = Snapshot::decode(bytes, sha256)?;
    let part = snapshot.tenant.clone().unwrap_or_default();
    let id = part.id.clone();
    validate_tenant_id(&id)?;
    let outcome = |already_imported, imported| ImportOutcome {
        tenant: id.clone(),
        snapshot_id: snapshot.snapshot_id.clone(),
        already_imported,
        imported,
    };
    if tenancy.get_tenant(&id).is_ok() {
        if billing.moved_in_already(&id, &snapshot.snapshot_id)? {
            return Ok(outcome(true, Imported::default()));
        }
        if tenancy.importing(&id).as_deref() != Some(snapshot.snapshot_id.as_str()) {
            return Err(Error::already_exists("tenant", id));
        }
        // An import of this very snapshot died half-way: its topics go and
        // come again (the tenant, keys and devices are in place).
        broker.erase_tenant_data(&id).await?;
    } else {
        let overrides: HashMap<String, u64> = part.quota_overrides.clone().into_iter().collect();
        let plan = tenancy.resolve_plan(&part.plan, &overrides)?;
        let ours = rates_part(&plan.rates);
        let theirs = snapshot.rates.clone().unwrap_or_default();
        if ours.currency != theirs.currency {
            return Err(Error::FailedPrecondition(format!(
                "the snapshot's balance is in {}, plan '{}' here bills in {}: a move cannot \
                 change currency",
                theirs.currency, part.plan, ours.currency
            )));
        }
        if ours != theirs && !reprice {
            return Err(Error::FailedPrecondition(format!(
                "plan '{}' has another rate card here than on node {} ({ours:?} here, {theirs:?} \
                 there); import with reprice to bill the tenant by this broker's from now on",
                part.plan, snapshot.source_node
            )));
        }
        let tenant = Tenant {
            id: id.clone(),
            display_name: part.display_name.clone(),
            contact_email: part.contact_email.clone(),
            plan: part.plan.clone(),
            status: TenantStatus::Suspended,
            status_reason: String::new(),
            created_ms: part.created_ms,
            quota_overrides: overrides,
        };
        let keys = snapshot
            .keys
            .iter()
            .map(|k| key_of(&id, k))
            .collect::<Result<Vec<_>>>()?;
        let devices = snapshot
            .devices
            .iter()
            .map(|d| DeviceBinding {
                device_id: d.device_id.clone(),
                tenant: id.clone(),
                bound_ms: d.bound_ms,
            })
            .collect();
        tenancy
            .import_tenant(tenant, keys, devices, &snapshot.snapshot_id)
            .await?;
    }
    let account = snapshot.account.clone().unwrap_or_default();
    let calendar = billing.calendar();
    let stop_day = calendar
        .parse_day(&account.stop_day)
        .ok_or_else(|| Error::invalid("the snapshot's stop day is not YYYY-MM-DD"))?;
    let imported = broker
        .import_topics(&id, &snapshot.topics, calendar.day_start_ms(stop_day + 1))
        .await?;
    let carried = MoveAccount {
        balance_minor: account.balance_minor,
        oldest_unpaid_due_ms: account.oldest_unpaid_due_ms,
        stop_day: account.stop_day,
        free_units_used: account.free_units_used,
        currency: account.currency,
    };
    billing
        .record_move_in(&id, &snapshot.snapshot_id, &snapshot.source_node, &carried)
        .await?;
    tenancy.finish_import(&id, &part.suspended_reason).await?;
    tracing::info!(tenant = %id, snapshot = %snapshot.snapshot_id, topics = imported.topics,
        messages = imported.messages, "tenant imported from a move");
    Ok(outcome(false, imported))
}

/// An API key of the snapshot, for tenant `id`.
fn key_of(id: &str, k: &super::snapshot::KeyPart) -> Result<ApiKey> {
    let secret_hash: [u8; 32] = k
        .secret_hash
        .as_slice()
        .try_into()
        .map_err(|_| Error::invalid(format!("key {} has no 32-byte hash", k.id)))?;
    let scopes = k
        .scopes
        .iter()
        .map(|s| Scope::from_i32(*s).ok_or_else(|| Error::invalid("unknown scope in snapshot")))
        .collect::<Result<Vec<_>>>()?;
    Ok(ApiKey {
        id: k.id.clone(),
        tenant: id.to_string(),
        secret_hash,
        scopes,
        topics: k.topics.clone(),
        description: k.description.clone(),
        created_ms: k.created_ms,
        revoked: k.revoked,
    })
}
