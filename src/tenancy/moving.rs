//! A tenant moving between brokers (SPEC §9), as tenancy sees it: the stop
//! on the source (kept in the tenant row, so a restart keeps it stopped),
//! the requests still in flight, and the tenant's creation on the target
//! from a snapshot's parts (keys by their hashes, device bindings).
//!
//! Both ends are a suspension with a reason of their own: the stop is
//! `moving:<stop ms>:<reason before>` on the source, `importing:<snapshot
//! id>` on the target while the import runs. A suspended tenant's data plane
//! is refused already everywhere it is checked; the reason only changes the
//! words ("moving") and lets the move resume where it stopped.

use std::collections::HashMap;
use std::sync::Arc;

use super::{ApiKey, DeviceBinding, Tenancy, Tenant, TenantStatus};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::storage::WriteSet;

/// Prefix of a source's stop reason.
const MOVING: &str = "moving:";
/// Prefix of a target's reason while it imports.
const IMPORTING: &str = "importing:";

/// What the refusal of a moving tenant's requests says.
pub const MOVING_MESSAGE: &str =
    "tenant is moving to another broker: requests are refused until the move ends; retry shortly";

/// A tenant's stop for a move on the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveMark {
    /// When its data plane stopped, Unix ms.
    pub stopped_ms: i64,
    /// Its suspension reason before the stop ("" when it was active).
    pub prior_reason: String,
}

/// Whether a suspension reason is a move's (either end).
pub fn is_move_reason(reason: &str) -> bool {
    reason.starts_with(MOVING) || reason.starts_with(IMPORTING)
}

/// Parses a source's stop reason.
fn parse_mark(reason: &str) -> Option<MoveMark> {
    let rest = reason.strip_prefix(MOVING)?;
    let (ms, prior) = rest.split_once(':')?;
    Some(MoveMark {
        stopped_ms: ms.parse().ok()?,
        prior_reason: prior.to_string(),
    })
}

impl Tenancy {
    /// The tenant's stop for a move, if it is stopped for one.
    pub fn move_mark(&self, tenant: &str) -> Option<MoveMark> {
        let t = self.tenants.get(tenant)?;
        if t.status != TenantStatus::Suspended {
            return None;
        }
        parse_mark(&t.status_reason)
    }

    /// The snapshot a tenant is being imported from, while it is.
    pub fn importing(&self, tenant: &str) -> Option<String> {
        let t = self.tenants.get(tenant)?;
        if t.status != TenantStatus::Suspended {
            return None;
        }
        t.status_reason.strip_prefix(IMPORTING).map(str::to_string)
    }

    /// FAILED_PRECONDITION "moving" while a move holds the tenant (either
    /// end): control-plane writes then would be lost with the snapshot.
    pub fn refuse_moving(&self, tenant: &str) -> Result<()> {
        match self.tenants.get(tenant) {
            Some(t) if t.status == TenantStatus::Suspended && is_move_reason(&t.status_reason) => {
                Err(Error::FailedPrecondition(MOVING_MESSAGE.into()))
            }
            _ => Ok(()),
        }
    }

    /// Stops a tenant for a move (durably: the reason is in its row), or
    /// returns the stop it has already. Open streams notice at once.
    pub async fn begin_move(&self, id: &str, actor: &str) -> Result<MoveMark> {
        let _guard = self.write_lock.lock().await;
        let mut tenant = self.get_tenant(id)?;
        if tenant.status == TenantStatus::Terminated {
            return Err(Error::FailedPrecondition(format!(
                "tenant '{id}' is terminated{}",
                moved_note(&tenant.status_reason)
            )));
        }
        if let Some(mark) = self.move_mark(id) {
            return Ok(mark);
        }
        if let Some(snapshot) = self.importing(id) {
            return Err(Error::FailedPrecondition(format!(
                "tenant '{id}' is still being imported here (snapshot {snapshot})"
            )));
        }
        let mark = MoveMark {
            stopped_ms: self.clock.now_ms(),
            prior_reason: match tenant.status {
                TenantStatus::Suspended => tenant.status_reason.clone(),
                _ => String::new(),
            },
        };
        tenant.status = TenantStatus::Suspended;
        tenant.status_reason = format!("{MOVING}{}:{}", mark.stopped_ms, mark.prior_reason);
        let mut writes = WriteSet::new();
        writes.put_tenant(&tenant, self.keyring.tenant(id).as_deref());
        self.commit_audited(
            writes,
            actor,
            "tenant.move.stop",
            id,
            format!("stopped at {} for a move", mark.stopped_ms),
        )
        .await?;
        self.tenants.insert(id.to_string(), tenant);
        self.status_changed();
        Ok(mark)
    }

    /// Requests of the tenant still running: every request holds its key
    /// (`Arc<TenantKey>`) from authentication to its last write (a produce
    /// until its commit, a Consume stream until it handed back what the
    /// client never read), so the count of extra holders is the work in
    /// flight. A move waits for 0 before it settles and snapshots.
    pub fn requests_in_flight(&self, tenant: &str) -> usize {
        self.active_keys_by_hash
            .iter()
            .filter(|k| k.value().tenant == tenant)
            .map(|k| Arc::strong_count(k.value()).saturating_sub(1))
            .sum()
    }

    /// The tenant's plan with its overrides, as a target would resolve the
    /// name and overrides of a snapshot (INVALID_ARGUMENT when the plan is
    /// not configured here).
    pub fn resolve_plan(&self, name: &str, overrides: &HashMap<String, u64>) -> Result<Plan> {
        self.effective_plan(name, overrides)
    }

    /// Creates a tenant from a move snapshot's parts, suspended as
    /// `importing:<snapshot id>` until [`Tenancy::finish_import`]: a fresh data
    /// key, its keys by their hashes, its device bindings. Refuses a device
    /// bound to another tenant here (FAILED_PRECONDITION), before any write.
    pub async fn import_tenant(
        &self,
        mut tenant: Tenant,
        keys: Vec<ApiKey>,
        devices: Vec<DeviceBinding>,
        snapshot_id: &str,
    ) -> Result<Tenant> {
        let plan = self.effective_plan(&tenant.plan, &tenant.quota_overrides)?;
        let _guard = self.write_lock.lock().await;
        if self.tenants.contains_key(&tenant.id) {
            return Err(Error::already_exists("tenant", tenant.id));
        }
        for device in &devices {
            if let Some(owner) = self.devices.get(&device.device_id) {
                if owner.tenant != tenant.id {
                    return Err(Error::FailedPrecondition(format!(
                        "device '{}' is bound to another tenant on this broker; unbind it first",
                        device.device_id
                    )));
                }
            }
        }
        tenant.status = TenantStatus::Suspended;
        tenant.status_reason = format!("{IMPORTING}{snapshot_id}");
        let mut writes = WriteSet::new();
        let data_keys = self.keyring.new_tenant_key(&tenant.id, &mut writes);
        writes.put_tenant(&tenant, Some(&data_keys));
        for key in &keys {
            writes.put_api_key(key, Some(&data_keys));
        }
        for device in &devices {
            writes.put_device_binding(device, self.keyring.server());
        }
        if !devices.is_empty() {
            self.keyring.stage_server_key(&mut writes);
        }
        self.commit_audited(
            writes,
            "operator",
            "tenant.move.import",
            &tenant.id,
            format!("from snapshot {snapshot_id}"),
        )
        .await?;
        self.keyring.insert(&tenant.id, data_keys);
        self.effective_plans
            .insert(tenant.id.clone(), Arc::new(plan));
        self.tenants.insert(tenant.id.clone(), tenant.clone());
        for key in keys {
            self.index_key(&key);
            self.keys.insert(key.id.clone(), key);
        }
        for device in devices {
            self.devices.insert(device.device_id.clone(), device);
        }
        Ok(tenant)
    }

    /// Ends an import: the tenant serves again, or stays suspended with the
    /// reason it had on the source.
    pub async fn finish_import(&self, id: &str, prior_reason: &str) -> Result<Tenant> {
        let _guard = self.write_lock.lock().await;
        let mut tenant = self.get_tenant(id)?;
        if prior_reason.is_empty() {
            tenant.status = TenantStatus::Active;
            tenant.status_reason.clear();
        } else {
            tenant.status_reason = prior_reason.to_string();
        }
        let mut writes = WriteSet::new();
        writes.put_tenant(&tenant, self.keyring.tenant(id).as_deref());
        self.commit_audited(
            writes,
            "operator",
            "tenant.move.serve",
            id,
            "import complete".into(),
        )
        .await?;
        self.tenants.insert(id.to_string(), tenant.clone());
        self.status_changed();
        Ok(tenant)
    }
}

impl Tenancy {
    /// Erases a tenant that moved to `target_node` (the termination path:
    /// data key destroyed, keys and devices deleted) and remembers its key
    /// hashes in memory, so a router that still sends one of its requests
    /// here (nginx's old workers drain after a reload) gets the retryable
    /// "moving" instead of UNAUTHENTICATED. Only the exact key gets that
    /// answer, so it tells nobody else anything; a restart forgets it.
    pub async fn erase_moved_tenant(&self, id: &str, target_node: &str) -> Result<Tenant> {
        let hashes: Vec<[u8; 32]> = self
            .list_keys(id)?
            .iter()
            .filter(|k| !k.revoked)
            .map(|k| k.secret_hash)
            .collect();
        let erased = self
            .erase_tenant(id, &moved_reason(target_node), "operator")
            .await?;
        for hash in hashes {
            self.moved_keys.insert(hash, ());
        }
        Ok(erased)
    }

    /// What authentication answers for a key hash it does not know.
    pub(super) fn unknown_key(&self, hash: &[u8; 32]) -> Error {
        if self.moved_keys.contains_key(hash) {
            return Error::FailedPrecondition(MOVING_MESSAGE.into());
        }
        Error::Unauthenticated(super::INVALID_API_KEY_MESSAGE.into())
    }
}

/// " (moved to <node>)" for a tenant terminated by a move, "" otherwise.
fn moved_note(reason: &str) -> String {
    match reason.strip_prefix("moved to ") {
        Some(node) => format!(" (moved to {node})"),
        None => String::new(),
    }
}

/// The termination reason a finished move leaves on the source.
pub fn moved_reason(target_node: &str) -> String {
    format!("moved to {target_node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_reason_keeps_its_time_and_the_reason_before() {
        assert_eq!(
            parse_mark("moving:1700:arrears"),
            Some(MoveMark {
                stopped_ms: 1700,
                prior_reason: "arrears".into()
            })
        );
        assert_eq!(
            parse_mark("moving:5:").map(|m| m.prior_reason),
            Some("".into())
        );
        assert_eq!(parse_mark("arrears"), None);
        assert!(is_move_reason("importing:node-1/acme/5"));
        assert!(!is_move_reason("abuse"));
    }
}
