//! Tenancy: tenants, API keys, the operator credential, and authentication.
//!
//! API keys read `tq_<tenant>_<secret>` (secret in base62, about 190 bits) so
//! a router can tell the tenant from the key alone. Only the SHA-256 of a key
//! is stored; the secret is shown once, at creation. Every authenticated
//! request carries a [`Principal`], and every tenant request is scoped to the
//! tenant of its key.

mod names;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use dashmap::DashMap;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::DEFAULT_PLAN;
use crate::error::{Error, Result};
use crate::quota::Plan;
use crate::storage::records::{ApiKeyRecord, AuditRecord, DeviceRecord, TenantRecord};
use crate::storage::{keys, Store, WriteSet};
use crate::sync::RwLockExt;

pub use names::{validate_device_id, validate_resource_name, validate_tenant_id};

/// Length of an API key's random part (base62: ~5.95 bits a character).
const SECRET_CHARS: usize = 32;

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Produce messages.
    Produce = 1,
    /// Consume, fetch, ack, nack, seek.
    Consume = 2,
    /// Manage topics and subscriptions.
    Manage = 3,
}

impl Scope {
    /// From the stored / wire number.
    pub fn from_i32(value: i32) -> Option<Scope> {
        match value {
            1 => Some(Scope::Produce),
            2 => Some(Scope::Consume),
            3 => Some(Scope::Manage),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scope::Produce => "produce",
            Scope::Consume => "consume",
            Scope::Manage => "manage",
        }
    }
}

/// A tenant's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    /// In service.
    Active = 1,
    /// Data plane refused; data kept.
    Suspended = 2,
    /// Erased; the record stays.
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

/// The tenant side of an authenticated request: the key's tenant and rights.
#[derive(Debug, Clone)]
pub struct TenantKey {
    /// The tenant every name in the request belongs to.
    pub tenant: String,
    /// The key's id (for logs and audit; never the secret).
    pub key_id: String,
    scopes: Vec<Scope>,
    topics: Vec<String>,
}

impl TenantKey {
    /// Refuses with PERMISSION_DENIED unless the key has `scope` and, when it
    /// has an allow-list, `topic` is on it.
    pub fn require(&self, scope: Scope, topic: Option<&str>) -> Result<()> {
        if !self.scopes.contains(&scope) {
            return Err(Error::PermissionDenied(format!(
                "this API key lacks the '{}' scope",
                scope.name()
            )));
        }
        if let Some(topic) = topic {
            if !self.may_touch(topic) {
                return Err(Error::PermissionDenied(format!(
                    "this API key may not use topic '{topic}'"
                )));
            }
        }
        Ok(())
    }

    /// True when the key's allow-list (if any) names `topic`.
    pub fn may_touch(&self, topic: &str) -> bool {
        self.topics.is_empty() || self.topics.iter().any(|t| t == topic)
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The operator credential.
    Operator,
    /// The billing-reader credential: reads every tenant's billing, changes nothing.
    BillingReader,
    /// A tenant's API key.
    Tenant(Arc<TenantKey>),
}

/// A new API key: its record and the secret, which is never shown again.
pub struct CreatedKey {
    /// What is stored.
    pub record: ApiKeyRecord,
    /// `tq_<tenant>_<secret>`.
    pub secret: String,
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

/// Tenants, keys and the operator credential, cached in memory and written
/// through the store.
pub struct Tenancy {
    store: Store,
    clock: Clock,
    plans: BTreeMap<String, Plan>,
    operator_hash: [u8; 32],
    billing_reader_hash: [u8; 32],
    tenants: DashMap<String, TenantRecord>,
    keys: DashMap<String, ApiKeyRecord>,
    active_keys_by_hash: DashMap<[u8; 32], Arc<TenantKey>>,
    /// Each tenant's plan with its overrides applied.
    effective_plans: DashMap<String, Arc<Plan>>,
    /// Device bindings by device id.
    devices: DashMap<String, DeviceRecord>,
    /// Bumped whenever a tenant's status changes, so open streams re-check.
    status_changes: watch::Sender<u64>,
    /// Some(reason) while the broker is in maintenance mode.
    maintenance: std::sync::RwLock<Option<String>>,
    /// Serialises control-plane writes so checks and writes do not race.
    write_lock: tokio::sync::Mutex<()>,
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl Tenancy {
    /// Loads tenants and keys from the store.
    pub fn load(
        store: Store,
        clock: Clock,
        plans: BTreeMap<String, Plan>,
        operator_token: &str,
        billing_reader_token: &str,
    ) -> Result<Self> {
        let tenancy = Tenancy {
            store,
            clock,
            plans,
            operator_hash: sha256(operator_token),
            billing_reader_hash: sha256(billing_reader_token),
            tenants: DashMap::new(),
            keys: DashMap::new(),
            active_keys_by_hash: DashMap::new(),
            effective_plans: DashMap::new(),
            devices: DashMap::new(),
            status_changes: watch::channel(0).0,
            maintenance: std::sync::RwLock::new(None),
            write_lock: tokio::sync::Mutex::new(()),
        };
        for item in tenancy.store.scan::<TenantRecord>(&[keys::TENANT]) {
            let (_, tenant) = item?;
            let plan = tenancy
                .effective_plan(&tenant.plan, &tenant.quota_overrides)
                .unwrap_or_else(|e| {
                    tracing::warn!(tenant = %tenant.id, error = %e,
                        "stored plan or overrides no longer valid; using the built-in default");
                    Plan::default()
                });
            tenancy
                .effective_plans
                .insert(tenant.id.clone(), Arc::new(plan));
            tenancy.tenants.insert(tenant.id.clone(), tenant);
        }
        for item in tenancy.store.scan::<DeviceRecord>(&[keys::DEVICE]) {
            let (_, device) = item?;
            tenancy.devices.insert(device.device_id.clone(), device);
        }
        for item in tenancy.store.scan::<ApiKeyRecord>(&[keys::API_KEY]) {
            let (_, key) = item?;
            tenancy.index_key(&key);
            tenancy.keys.insert(key.id.clone(), key);
        }
        Ok(tenancy)
    }

    fn index_key(&self, key: &ApiKeyRecord) {
        let Ok(hash) = <[u8; 32]>::try_from(key.secret_hash.as_slice()) else {
            return;
        };
        if key.revoked {
            self.active_keys_by_hash.remove(&hash);
        } else {
            self.active_keys_by_hash.insert(
                hash,
                Arc::new(TenantKey {
                    tenant: key.tenant.clone(),
                    key_id: key.id.clone(),
                    scopes: key
                        .scopes
                        .iter()
                        .filter_map(|s| Scope::from_i32(*s))
                        .collect(),
                    topics: key.topics.clone(),
                }),
            );
        }
    }

    /// Resolves a bearer token to a principal; UNAUTHENTICATED when missing,
    /// unknown, revoked, or its tenant is terminated.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Principal> {
        let token = token.ok_or_else(|| {
            Error::Unauthenticated(
                "missing credentials: send 'authorization: Bearer <API key>' metadata".into(),
            )
        })?;
        let hash = sha256(token);
        if hash == self.operator_hash {
            return Ok(Principal::Operator);
        }
        if hash == self.billing_reader_hash {
            return Ok(Principal::BillingReader);
        }
        let key = self
            .active_keys_by_hash
            .get(&hash)
            .map(|k| k.value().clone())
            .ok_or_else(|| Error::Unauthenticated("invalid or revoked API key".into()))?;
        match self.tenants.get(&key.tenant).map(|t| t.status) {
            Some(status) if TenantStatus::from_i32(status) != TenantStatus::Terminated => {
                Ok(Principal::Tenant(key))
            }
            _ => Err(Error::Unauthenticated("invalid or revoked API key".into())),
        }
    }

    /// Enters (Some(reason)) or leaves (None) maintenance mode: data-plane
    /// work is refused with UNAVAILABLE; the control plane keeps working.
    pub fn set_maintenance(&self, reason: Option<String>) {
        *self.maintenance.write_unpoisoned() = reason;
        self.status_changes.send_modify(|v| *v = v.wrapping_add(1));
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
            .ok_or_else(|| Error::Unauthenticated("invalid or revoked API key".into()))?;
        match TenantStatus::from_i32(tenant.status) {
            TenantStatus::Active => Ok(()),
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

    fn effective_plan(&self, name: &str, overrides: &HashMap<String, u64>) -> Result<Plan> {
        let plan = self.plans.get(name).ok_or_else(|| {
            Error::invalid(format!(
                "unknown plan '{name}'; configured plans: {}",
                self.plans.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        plan.with_overrides(overrides)
    }

    /// A receiver that changes whenever any tenant's status changes.
    pub fn watch_status(&self) -> watch::Receiver<u64> {
        self.status_changes.subscribe()
    }

    /// Adds an audit entry to `writes`.
    pub fn audit(
        &self,
        writes: &mut WriteSet,
        actor: &str,
        action: &str,
        tenant: &str,
        detail: String,
    ) -> Result<()> {
        let seq = self.store.generate_id()?;
        writes.put(
            keys::audit(seq),
            &AuditRecord {
                time_ms: self.clock.now_ms(),
                actor: actor.to_string(),
                action: action.to_string(),
                tenant: tenant.to_string(),
                detail,
            },
        );
        Ok(())
    }

    /// Audit entries from sequence `from` on, at most `limit`, optionally of
    /// one tenant; returns them with their sequence numbers and where to continue.
    pub fn audit_events(
        &self,
        from: u64,
        limit: usize,
        tenant: &str,
    ) -> Result<(Vec<(u64, AuditRecord)>, u64)> {
        let mut events = Vec::new();
        let mut next = from;
        for item in self
            .store
            .scan_from::<AuditRecord>(&[keys::AUDIT], &keys::audit(from))
        {
            let (key, record) = item?;
            let seq = keys::u64_at(&key, 1).unwrap_or_default();
            next = seq + 1;
            if tenant.is_empty() || record.tenant == tenant {
                events.push((seq, record));
                if events.len() >= limit {
                    break;
                }
            }
        }
        Ok((events, next))
    }

    /// Writes one audit entry on its own.
    pub async fn audit_now(
        &self,
        actor: &str,
        action: &str,
        tenant: &str,
        detail: String,
    ) -> Result<()> {
        let mut writes = WriteSet::new();
        self.audit(&mut writes, actor, action, tenant, detail)?;
        self.store.commit(writes).await?;
        Ok(())
    }

    /// Changes a tenant's details, plan or quota overrides (operator).
    pub async fn update_tenant(&self, id: &str, update: TenantUpdate) -> Result<TenantRecord> {
        let _guard = self.write_lock.lock().await;
        let mut record = self.get_tenant(id)?;
        if let Some(v) = update.display_name {
            record.display_name = v;
        }
        if let Some(v) = update.contact_email {
            record.contact_email = v;
        }
        if let Some(v) = update.plan {
            record.plan = if v.is_empty() {
                DEFAULT_PLAN.to_string()
            } else {
                v
            };
        }
        for name in &update.clear_overrides {
            record.quota_overrides.remove(name);
        }
        record.quota_overrides.extend(update.set_overrides);
        if record.display_name.len() > 200 || record.contact_email.len() > 200 {
            return Err(Error::invalid(
                "display_name and contact_email may be at most 200 bytes",
            ));
        }
        let plan = self.effective_plan(&record.plan, &record.quota_overrides)?;
        let mut writes = WriteSet::new();
        writes.put(keys::tenant(id), &record);
        let mut overrides: Vec<_> = record.quota_overrides.iter().collect();
        overrides.sort();
        self.audit(
            &mut writes,
            "operator",
            "tenant.update",
            id,
            format!("plan={} overrides={overrides:?}", record.plan),
        )?;
        self.store.commit(writes).await?;
        self.effective_plans.insert(id.to_string(), Arc::new(plan));
        self.tenants.insert(id.to_string(), record.clone());
        Ok(record)
    }

    /// Suspends a tenant (data plane refused, data kept) or, with `None`,
    /// resumes it. Open streams notice at once.
    pub async fn set_suspended(
        &self,
        id: &str,
        reason: Option<SuspendReason>,
        actor: &str,
    ) -> Result<TenantRecord> {
        let _guard = self.write_lock.lock().await;
        let mut record = self.get_tenant(id)?;
        if TenantStatus::from_i32(record.status) == TenantStatus::Terminated {
            return Err(Error::FailedPrecondition(format!(
                "tenant '{id}' is terminated"
            )));
        }
        let (status, reason_name, action) = match reason {
            Some(r) => (TenantStatus::Suspended, r.name(), "tenant.suspend"),
            None => (TenantStatus::Active, "", "tenant.resume"),
        };
        record.status = status as i32;
        record.status_reason = reason_name.to_string();
        let mut writes = WriteSet::new();
        writes.put(keys::tenant(id), &record);
        self.audit(&mut writes, actor, action, id, reason_name.to_string())?;
        self.store.commit(writes).await?;
        self.tenants.insert(id.to_string(), record.clone());
        self.status_changes.send_modify(|v| *v = v.wrapping_add(1));
        Ok(record)
    }

    /// Marks a tenant terminated and erases its keys, device bindings and
    /// contact data; the record stays (status `terminated`).
    pub async fn erase_tenant(&self, id: &str, reason: &str, actor: &str) -> Result<TenantRecord> {
        let _guard = self.write_lock.lock().await;
        let mut record = self.get_tenant(id)?;
        record.status = TenantStatus::Terminated as i32;
        record.status_reason = reason.to_string();
        record.display_name.clear();
        record.contact_email.clear();
        let mut writes = WriteSet::new();
        writes.put(keys::tenant(id), &record);
        let keys_of_tenant: Vec<ApiKeyRecord> = self
            .keys
            .iter()
            .filter(|k| k.tenant == id)
            .map(|k| k.value().clone())
            .collect();
        for key in &keys_of_tenant {
            writes.delete(keys::api_key(&key.id));
        }
        let devices: Vec<String> = self
            .devices
            .iter()
            .filter(|d| d.tenant == id)
            .map(|d| d.key().clone())
            .collect();
        for device in &devices {
            writes.delete(keys::device(device));
        }
        self.audit(
            &mut writes,
            actor,
            "tenant.terminate",
            id,
            reason.to_string(),
        )?;
        self.store.commit(writes).await?;
        for key in keys_of_tenant {
            if let Ok(hash) = <[u8; 32]>::try_from(key.secret_hash.as_slice()) {
                self.active_keys_by_hash.remove(&hash);
            }
            self.keys.remove(&key.id);
        }
        for device in devices {
            self.devices.remove(&device);
        }
        self.tenants.insert(id.to_string(), record.clone());
        self.status_changes.send_modify(|v| *v = v.wrapping_add(1));
        Ok(record)
    }

    /// Binds a device id to a tenant (operator). Moving it from another tenant
    /// needs `rebind`.
    pub async fn bind_device(
        &self,
        device_id: &str,
        tenant: &str,
        rebind: bool,
    ) -> Result<DeviceRecord> {
        validate_device_id(device_id)?;
        let _guard = self.write_lock.lock().await;
        self.get_tenant(tenant)?;
        let previous = self.devices.get(device_id).map(|d| d.tenant.clone());
        if let Some(owner) = &previous {
            if owner != tenant && !rebind {
                return Err(Error::FailedPrecondition(format!(
                    "device '{device_id}' is bound to tenant '{owner}'; set rebind to move it"
                )));
            }
        }
        let record = DeviceRecord {
            device_id: device_id.to_string(),
            tenant: tenant.to_string(),
            bound_ms: self.clock.now_ms(),
        };
        let mut writes = WriteSet::new();
        writes.put(keys::device(device_id), &record);
        let (action, detail) = match previous {
            Some(owner) if owner != tenant => (
                "device.rebind",
                format!("device {device_id} moved from {owner} to {tenant}"),
            ),
            _ => (
                "device.bind",
                format!("device {device_id} bound to {tenant}"),
            ),
        };
        self.audit(&mut writes, "operator", action, tenant, detail)?;
        self.store.commit(writes).await?;
        self.devices.insert(device_id.to_string(), record.clone());
        Ok(record)
    }

    /// Removes a device binding (operator).
    pub async fn unbind_device(&self, device_id: &str) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        let record = self
            .devices
            .get(device_id)
            .map(|d| d.clone())
            .ok_or_else(|| Error::not_found("device binding", device_id))?;
        let mut writes = WriteSet::new();
        writes.delete(keys::device(device_id));
        self.audit(
            &mut writes,
            "operator",
            "device.unbind",
            &record.tenant,
            format!("device {device_id} unbound from {}", record.tenant),
        )?;
        self.store.commit(writes).await?;
        self.devices.remove(device_id);
        Ok(())
    }

    /// Device bindings of one tenant, or of all when `tenant` is empty.
    pub fn list_devices(&self, tenant: &str) -> Vec<DeviceRecord> {
        let mut all: Vec<_> = self
            .devices
            .iter()
            .filter(|d| tenant.is_empty() || d.tenant == tenant)
            .map(|d| d.value().clone())
            .collect();
        all.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        all
    }

    /// Refuses a device id bound to another tenant.
    pub fn check_device(&self, tenant: &str, device_id: &str) -> Result<()> {
        if device_id.is_empty() {
            return Ok(());
        }
        match self.devices.get(device_id) {
            Some(binding) if binding.tenant != tenant => Err(Error::PermissionDenied(format!(
                "device_id '{device_id}' is bound to another tenant"
            ))),
            _ => Ok(()),
        }
    }

    /// Creates a tenant (operator).
    pub async fn create_tenant(&self, new: NewTenant) -> Result<TenantRecord> {
        validate_tenant_id(&new.id)?;
        let plan = if new.plan.is_empty() {
            DEFAULT_PLAN.to_string()
        } else {
            new.plan
        };
        if new.display_name.len() > 200 || new.contact_email.len() > 200 {
            return Err(Error::invalid(
                "display_name and contact_email may be at most 200 bytes",
            ));
        }
        let plan_limits = self.effective_plan(&plan, &HashMap::new())?;
        let _guard = self.write_lock.lock().await;
        if self.tenants.contains_key(&new.id) {
            return Err(Error::already_exists("tenant", new.id));
        }
        let record = TenantRecord {
            id: new.id,
            display_name: new.display_name,
            contact_email: new.contact_email,
            plan,
            status: TenantStatus::Active as i32,
            created_ms: self.clock.now_ms(),
            status_reason: String::new(),
            quota_overrides: HashMap::new(),
        };
        let mut writes = WriteSet::new();
        writes.put(keys::tenant(&record.id), &record);
        self.audit(
            &mut writes,
            "operator",
            "tenant.create",
            &record.id,
            format!("plan={}", record.plan),
        )?;
        self.store.commit(writes).await?;
        self.effective_plans
            .insert(record.id.clone(), Arc::new(plan_limits));
        self.tenants.insert(record.id.clone(), record.clone());
        Ok(record)
    }

    /// One tenant (operator).
    pub fn get_tenant(&self, id: &str) -> Result<TenantRecord> {
        self.tenants
            .get(id)
            .map(|t| t.clone())
            .ok_or_else(|| Error::not_found("tenant", id))
    }

    /// Every tenant, by id.
    pub fn list_tenants(&self) -> Vec<TenantRecord> {
        let mut all: Vec<_> = self.tenants.iter().map(|t| t.value().clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Issues an API key for a tenant (operator). The secret is returned once.
    pub async fn create_key(
        &self,
        tenant: &str,
        scopes: Vec<Scope>,
        topics: Vec<String>,
        description: String,
    ) -> Result<CreatedKey> {
        if scopes.is_empty() {
            return Err(Error::invalid(
                "an API key needs at least one scope: produce, consume or manage",
            ));
        }
        for topic in &topics {
            validate_resource_name("topic", topic)?;
        }
        if description.len() > 200 {
            return Err(Error::invalid("description may be at most 200 bytes"));
        }
        let _guard = self.write_lock.lock().await;
        let status = self
            .tenants
            .get(tenant)
            .map(|t| t.status)
            .ok_or_else(|| Error::not_found("tenant", tenant))?;
        if TenantStatus::from_i32(status) == TenantStatus::Terminated {
            return Err(Error::FailedPrecondition(format!(
                "tenant '{tenant}' is terminated"
            )));
        }
        let (secret, id) = {
            let mut rng = rand::rng();
            (
                format!(
                    "tq_{tenant}_{}",
                    Alphanumeric.sample_string(&mut rng, SECRET_CHARS)
                ),
                format!("key_{}", Alphanumeric.sample_string(&mut rng, 16)),
            )
        };
        let mut scope_values: Vec<i32> = scopes.iter().map(|s| *s as i32).collect();
        scope_values.sort_unstable();
        scope_values.dedup();
        let record = ApiKeyRecord {
            id,
            tenant: tenant.to_string(),
            secret_hash: sha256(&secret).to_vec(),
            scopes: scope_values,
            topics,
            description,
            created_ms: self.clock.now_ms(),
            revoked: false,
        };
        let mut writes = WriteSet::new();
        writes.put(keys::api_key(&record.id), &record);
        self.audit(
            &mut writes,
            "operator",
            "key.create",
            tenant,
            format!(
                "key {} scopes {:?} topics {:?}",
                record.id, record.scopes, record.topics
            ),
        )?;
        self.store.commit(writes).await?;
        self.index_key(&record);
        self.keys.insert(record.id.clone(), record.clone());
        Ok(CreatedKey { record, secret })
    }

    /// A tenant's keys (operator), never their secrets.
    pub fn list_keys(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>> {
        if !self.tenants.contains_key(tenant) {
            return Err(Error::not_found("tenant", tenant));
        }
        let mut keys: Vec<_> = self
            .keys
            .iter()
            .filter(|k| k.tenant == tenant)
            .map(|k| k.value().clone())
            .collect();
        keys.sort_by_key(|k| k.created_ms);
        Ok(keys)
    }

    /// Revokes a key (operator); it stops authenticating at once.
    pub async fn revoke_key(&self, id: &str) -> Result<ApiKeyRecord> {
        let _guard = self.write_lock.lock().await;
        let mut record = self
            .keys
            .get(id)
            .map(|k| k.clone())
            .ok_or_else(|| Error::not_found("API key", id))?;
        record.revoked = true;
        let mut writes = WriteSet::new();
        writes.put(keys::api_key(id), &record);
        self.audit(
            &mut writes,
            "operator",
            "key.revoke",
            &record.tenant,
            format!("key {id}"),
        )?;
        self.store.commit(writes).await?;
        self.index_key(&record);
        self.keys.insert(record.id.clone(), record.clone());
        Ok(record)
    }
}

/// Reads the operator credential from `path`, or generates one there (mode
/// 0600) when the file does not exist. Returns the token and whether it was
/// generated now. There is no fixed default credential.
pub fn load_or_create_operator_token(path: &Path) -> std::io::Result<(String, bool)> {
    load_or_create_token(path, "tqop_")
}

/// Like [`load_or_create_operator_token`], for the billing-reader credential.
pub fn load_or_create_billing_reader_token(path: &Path) -> std::io::Result<(String, bool)> {
    load_or_create_token(path, "tqbr_")
}

fn load_or_create_token(path: &Path, prefix: &str) -> std::io::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.len() < 16 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "operator credential in {} is shorter than 16 characters",
                        path.display()
                    ),
                ));
            }
            Ok((token, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let token = format!(
                "{prefix}{}",
                Alphanumeric.sample_string(&mut rand::rng(), 43)
            );
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path)?;
            file.write_all(token.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            Ok((token, true))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_token_is_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operator.token");
        let (first, created) = load_or_create_operator_token(&path).unwrap();
        assert!(created);
        assert!(first.len() > 40);
        let (second, created) = load_or_create_operator_token(&path).unwrap();
        assert!(!created);
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn key_scope_and_allow_list_are_enforced() {
        let key = TenantKey {
            tenant: "acme".into(),
            key_id: "k".into(),
            scopes: vec![Scope::Produce],
            topics: vec!["t1".into()],
        };
        assert!(key.require(Scope::Produce, Some("t1")).is_ok());
        assert!(key.require(Scope::Produce, Some("t2")).is_err());
        assert!(key.require(Scope::Consume, Some("t1")).is_err());
    }
}
