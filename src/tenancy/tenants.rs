//! Tenants and their status: create, update, suspend, resume,
//! erase; the plan each tenant is on; the data-plane gate (status and
//! maintenance mode).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::{validate_tenant_id, Tenancy};
use crate::error::{Error, Result};
use crate::plan::{self, Plan, DEFAULT_PLAN};
use crate::storage::WriteSet;
use crate::sync::RwLockExt;

/// A tenant's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    /// In service.
    Active = 1,
    /// Data plane refused; data kept.
    Suspended = 2,
    /// Erased; the tenant itself stays (with this status).
    Terminated = 3,
}

impl TenantStatus {
    /// From the stored / wire number (unknown values read as active).
    pub fn from_i32(value: i32) -> TenantStatus {
        match value {
            2 => TenantStatus::Suspended,
            3 => TenantStatus::Terminated,
            _ => TenantStatus::Active,
        }
    }
}

/// A tenant account: who it is, the plan it is on and where it is in its
/// lifecycle. Storage keeps it as a row of its own; this is what the rest of
/// the broker (and the API) sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// Tenant id, `[a-z0-9][a-z0-9-]{2,31}`.
    pub id: String,
    /// Free-form name shown to operators (erased on termination).
    pub display_name: String,
    /// Contact e-mail (erased on termination).
    pub contact_email: String,
    /// The plan's name.
    pub plan: String,
    /// Active, suspended or terminated.
    pub status: TenantStatus,
    /// Why the tenant is suspended or terminated ("" when active).
    pub status_reason: String,
    /// Creation time, Unix ms.
    pub created_ms: i64,
    /// Per-tenant quota overrides over the plan, by plan field name.
    pub quota_overrides: HashMap<String, u64>,
}

/// Why a tenant is suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspendReason {
    /// Unpaid charges past the grace period.
    Arrears,
    /// Abuse of the service.
    Abuse,
    /// Any other operator decision.
    Operator,
}

impl SuspendReason {
    /// The word stored and shown in errors.
    pub fn name(self) -> &'static str {
        match self {
            SuspendReason::Arrears => "arrears",
            SuspendReason::Abuse => "abuse",
            SuspendReason::Operator => "operator",
        }
    }
}

/// Changes to a tenant; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct TenantUpdate {
    /// New display name.
    pub display_name: Option<String>,
    /// New contact e-mail.
    pub contact_email: Option<String>,
    /// New plan.
    pub plan: Option<String>,
    /// Overrides to set.
    pub set_overrides: HashMap<String, u64>,
    /// Overrides to remove.
    pub clear_overrides: Vec<String>,
}

/// Fields of a new tenant.
pub struct NewTenant {
    /// The tenant id.
    pub id: String,
    /// Free-form name.
    pub display_name: String,
    /// Contact e-mail.
    pub contact_email: String,
    /// Plan name ("" for the default).
    pub plan: String,
}

impl Tenancy {
    /// Enters (Some(reason)) or leaves (None) maintenance mode: data-plane
    /// work is refused with UNAVAILABLE; the control plane keeps working.
    pub fn set_maintenance(&self, reason: Option<String>) {
        *self.maintenance.write_unpoisoned() = reason;
        self.status_changed();
    }

    /// The maintenance reason, while in maintenance mode.
    pub fn maintenance(&self) -> Option<String> {
        self.maintenance.read_unpoisoned().clone()
    }

    /// Refuses data-plane work for a tenant that is not active, and for
    /// everyone during maintenance.
    pub fn check_data_plane(&self, tenant: &str) -> Result<()> {
        if let Some(reason) = self.maintenance() {
            return Err(Error::Unavailable(format!(
                "the broker is in maintenance ({reason}); data-plane requests are refused, retry later"
            )));
        }
        let tenant = self
            .tenants
            .get(tenant)
            .ok_or_else(|| Error::Unauthenticated(super::INVALID_API_KEY_MESSAGE.into()))?;
        match tenant.status {
            TenantStatus::Active => Ok(()),
            TenantStatus::Suspended if super::is_move_reason(&tenant.status_reason) => {
                Err(Error::FailedPrecondition(super::MOVING_MESSAGE.to_string()))
            }
            TenantStatus::Suspended => Err(Error::FailedPrecondition(format!(
                "tenant is suspended ({}): data-plane requests are refused",
                tenant.status_reason
            ))),
            TenantStatus::Terminated => Err(Error::FailedPrecondition(
                "tenant is terminated".to_string(),
            )),
        }
    }

    /// The plan the tenant is on, with its overrides applied.
    pub fn plan_of(&self, tenant: &str) -> Arc<Plan> {
        self.effective_plans
            .get(tenant)
            .map(|p| p.value().clone())
            .unwrap_or_else(|| Arc::new(Plan::default()))
    }

    /// The configured plan `name` with `overrides` applied.
    pub(super) fn effective_plan(
        &self,
        name: &str,
        overrides: &HashMap<String, u64>,
    ) -> Result<Plan> {
        plan::resolve(&self.plans, name, overrides)
    }

    /// Wakes every [`Tenancy::watch_status`] receiver.
    pub(super) fn status_changed(&self) {
        self.status_changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that changes whenever any tenant's status changes.
    pub fn watch_status(&self) -> watch::Receiver<u64> {
        self.status_changes.subscribe()
    }

    /// Changes a tenant's details, plan or quota overrides (operator).
    pub async fn update_tenant(&self, id: &str, update: TenantUpdate) -> Result<Tenant> {
        let _guard = self.write_lock.lock().await;
        self.refuse_moving(id)?;
        let mut tenant = self.get_tenant(id)?;
        if let Some(v) = update.display_name {
            tenant.display_name = v;
        }
        if let Some(v) = update.contact_email {
            tenant.contact_email = v;
        }
        if let Some(v) = update.plan {
            tenant.plan = plan_name(v);
        }
        for name in &update.clear_overrides {
            tenant.quota_overrides.remove(name);
        }
        tenant.quota_overrides.extend(update.set_overrides);
        check_contact(&tenant.display_name, &tenant.contact_email)?;
        let plan = self.effective_plan(&tenant.plan, &tenant.quota_overrides)?;
        let mut writes = WriteSet::new();
        writes.put_tenant(&tenant, self.keyring.tenant(id).as_deref());
        let mut overrides: Vec<_> = tenant.quota_overrides.iter().collect();
        overrides.sort();
        self.commit_audited(
            writes,
            "operator",
            "tenant.update",
            id,
            format!("plan={} overrides={overrides:?}", tenant.plan),
        )
        .await?;
        self.effective_plans.insert(id.to_string(), Arc::new(plan));
        self.tenants.insert(id.to_string(), tenant.clone());
        Ok(tenant)
    }

    /// Suspends a tenant (data plane refused, data kept) or, with `None`,
    /// resumes it. Open streams notice at once.
    pub async fn set_suspended(
        &self,
        id: &str,
        reason: Option<SuspendReason>,
        actor: &str,
    ) -> Result<Tenant> {
        let _guard = self.write_lock.lock().await;
        let mut tenant = self.get_tenant(id)?;
        refuse_terminated(id, tenant.status)?;
        self.refuse_moving(id)?;
        let (status, reason_name, action) = match reason {
            Some(r) => (TenantStatus::Suspended, r.name(), "tenant.suspend"),
            None => (TenantStatus::Active, "", "tenant.resume"),
        };
        tenant.status = status;
        tenant.status_reason = reason_name.to_string();
        let mut writes = WriteSet::new();
        writes.put_tenant(&tenant, self.keyring.tenant(id).as_deref());
        self.commit_audited(writes, actor, action, id, reason_name.to_string())
            .await?;
        self.tenants.insert(id.to_string(), tenant.clone());
        self.status_changed();
        Ok(tenant)
    }

    /// Marks a tenant terminated and erases its keys, device bindings and
    /// contact data; the tenant itself stays (status `terminated`). Its data
    /// key is deleted in the same commit (crypto-shredding): from then on
    /// nothing of its messages or contact data can be decrypted, whatever
    /// stale bytes sled or the segments still hold.
    pub async fn erase_tenant(&self, id: &str, reason: &str, actor: &str) -> Result<Tenant> {
        let _guard = self.write_lock.lock().await;
        let mut tenant = self.get_tenant(id)?;
        tenant.status = TenantStatus::Terminated;
        tenant.status_reason = reason.to_string();
        tenant.display_name.clear();
        tenant.contact_email.clear();
        let mut writes = WriteSet::new();
        writes.put_tenant(&tenant, None);
        self.keyring.shred(id, &mut writes);
        // `id` names a stored tenant, so it is never empty (which would make
        // list_devices return every tenant's bindings).
        let keys_of_tenant = self.list_keys(id)?;
        for key in &keys_of_tenant {
            writes.delete_api_key(&key.id);
        }
        let devices = self.list_devices(id);
        for device in &devices {
            writes.delete_device_binding(&device.device_id, self.keyring.server());
        }
        self.commit_audited(writes, actor, "tenant.terminate", id, reason.to_string())
            .await?;
        for key in &keys_of_tenant {
            self.forget_key(key);
        }
        for device in &devices {
            self.devices.remove(&device.device_id);
        }
        self.keyring.evict(id);
        self.tenants.insert(id.to_string(), tenant.clone());
        self.status_changed();
        Ok(tenant)
    }

    /// Creates a tenant (operator).
    pub async fn create_tenant(&self, new: NewTenant) -> Result<Tenant> {
        validate_tenant_id(&new.id)?;
        let plan = plan_name(new.plan);
        check_contact(&new.display_name, &new.contact_email)?;
        let plan_limits = self.effective_plan(&plan, &HashMap::new())?;
        let _guard = self.write_lock.lock().await;
        if self.tenants.contains_key(&new.id) {
            return Err(Error::already_exists("tenant", new.id));
        }
        let tenant = Tenant {
            id: new.id,
            display_name: new.display_name,
            contact_email: new.contact_email,
            plan,
            status: TenantStatus::Active,
            created_ms: self.clock.now_ms(),
            status_reason: String::new(),
            quota_overrides: HashMap::new(),
        };
        let mut writes = WriteSet::new();
        let keys = self.keyring.new_tenant_key(&tenant.id, &mut writes);
        writes.put_tenant(&tenant, Some(&keys));
        self.commit_audited(
            writes,
            "operator",
            "tenant.create",
            &tenant.id,
            format!("plan={}", tenant.plan),
        )
        .await?;
        self.keyring.insert(&tenant.id, keys);
        self.effective_plans
            .insert(tenant.id.clone(), Arc::new(plan_limits));
        self.tenants.insert(tenant.id.clone(), tenant.clone());
        Ok(tenant)
    }

    /// One tenant (operator).
    pub fn get_tenant(&self, id: &str) -> Result<Tenant> {
        self.tenants
            .get(id)
            .map(|t| t.clone())
            .ok_or_else(|| Error::not_found("tenant", id))
    }

    /// Every tenant, by id.
    pub fn list_tenants(&self) -> Vec<Tenant> {
        let mut all: Vec<_> = self.tenants.iter().map(|t| t.value().clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

/// "" means the default plan.
fn plan_name(name: String) -> String {
    if name.is_empty() {
        DEFAULT_PLAN.to_string()
    } else {
        name
    }
}

/// Display name and contact e-mail are free text of at most 200 bytes.
fn check_contact(display_name: &str, contact_email: &str) -> Result<()> {
    if display_name.len() > 200 || contact_email.len() > 200 {
        return Err(Error::invalid(
            "display_name and contact_email may be at most 200 bytes",
        ));
    }
    Ok(())
}

/// FAILED_PRECONDITION when a tenant of this status is terminated: nothing
/// about it may change any more.
pub(super) fn refuse_terminated(id: &str, status: TenantStatus) -> Result<()> {
    if status == TenantStatus::Terminated {
        return Err(Error::FailedPrecondition(format!(
            "tenant '{id}' is terminated"
        )));
    }
    Ok(())
}
