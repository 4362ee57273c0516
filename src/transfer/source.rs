//! The source's half of a move: stop, wait for quiet, settle, snapshot.

use std::time::Duration;

use super::snapshot::{
    AccountPart, DevicePart, Encoded, KeyPart, RatesPart, Snapshot, TenantPart, FORMAT,
};
use crate::billing::{snapshot_id_of, Billing};
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::plan::RateCard;
use crate::tenancy::Tenancy;

/// How long the export waits for the tenant's requests in flight to end.
const QUIET_WAIT: Duration = Duration::from_secs(30);
/// How often it looks.
const QUIET_POLL: Duration = Duration::from_millis(10);

/// A rate card as the snapshot carries it.
pub fn rates_part(rates: &RateCard) -> RatesPart {
    RatesPart {
        currency: rates.currency.clone(),
        message_unit_price_nano_minor: rates.message_unit_price_nano_minor,
        free_message_units_per_month: rates.free_message_units_per_month,
        topic_day_price_nano_minor: rates.topic_day_price_nano_minor,
        storage_milli_gib_hour_price_nano_minor: rates.storage_milli_gib_hour_price_nano_minor,
    }
}

/// Stops `tenant` for a move (or finds it stopped), waits until nothing of
/// it is in flight, settles it through the stop day and returns its
/// snapshot, encoded with its checksum. UNAVAILABLE when its requests do not
/// end within 30 s (it stays stopped; call again).
pub async fn export_for_move(
    broker: &Broker,
    tenancy: &Tenancy,
    billing: &Billing,
    tenant: &str,
) -> Result<(String, Encoded)> {
    let mark = tenancy.begin_move(tenant, "operator").await?;
    let give_up = tokio::time::Instant::now() + QUIET_WAIT;
    loop {
        let busy = tenancy.requests_in_flight(tenant);
        if busy == 0 {
            break;
        }
        if tokio::time::Instant::now() >= give_up {
            return Err(Error::Unavailable(format!(
                "tenant '{tenant}' is stopped for the move, but {busy} of its requests are still \
                 running after {} s (a stream whose client does not read?); retry the export",
                QUIET_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(QUIET_POLL).await;
    }
    // Whatever those requests queued is durable before it is read.
    broker.write_barrier().await?;
    let account = billing.settle_for_move(tenant, mark.stopped_ms).await?;
    let record = tenancy.get_tenant(tenant)?;
    let plan = tenancy.plan_of(tenant);
    let keys = tenancy
        .list_keys(tenant)?
        .into_iter()
        .map(|k| KeyPart {
            id: k.id,
            secret_hash: k.secret_hash.to_vec(),
            scopes: k.scopes.iter().map(|s| *s as i32).collect(),
            topics: k.topics,
            description: k.description,
            created_ms: k.created_ms,
            revoked: k.revoked,
        })
        .collect();
    let devices = tenancy
        .list_devices(tenant)
        .into_iter()
        .map(|d| DevicePart {
            device_id: d.device_id,
            bound_ms: d.bound_ms,
        })
        .collect();
    let topics = broker.snapshot_topics(tenant).await?;
    let snapshot_id = snapshot_id_of(billing.node_id(), tenant, mark.stopped_ms);
    let snapshot = Snapshot {
        format: FORMAT,
        snapshot_id: snapshot_id.clone(),
        source_node: billing.node_id().to_string(),
        stopped_ms: mark.stopped_ms,
        tenant: Some(TenantPart {
            id: record.id,
            display_name: record.display_name,
            contact_email: record.contact_email,
            plan: record.plan,
            created_ms: record.created_ms,
            quota_overrides: record.quota_overrides.into_iter().collect(),
            suspended_reason: mark.prior_reason,
        }),
        rates: Some(rates_part(&plan.rates)),
        keys,
        devices,
        topics,
        account: Some(AccountPart {
            balance_minor: account.balance_minor,
            oldest_unpaid_due_ms: account.oldest_unpaid_due_ms,
            stop_day: account.stop_day,
            free_units_used: account.free_units_used,
            currency: account.currency,
        }),
    };
    tracing::info!(tenant, snapshot = %snapshot_id, topics = snapshot.topics.len(),
        messages = snapshot.messages(), "tenant exported for a move");
    Ok((snapshot_id, snapshot.encode()))
}
