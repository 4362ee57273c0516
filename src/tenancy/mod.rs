//! Tenancy: tenants, API keys, the operator credential, and authentication.
//!
//! API keys read `tq_<tenant>_<secret>` (secret in base62, about 190 bits) so
//! a router can tell the tenant from the key alone. Only the SHA-256 of a key
//! is stored; the secret is shown once, at creation. Every authenticated
//! request carries a [`Principal`], and every tenant request is scoped to the
//! tenant of its key.
//!
//! [`Tenancy`] (here) caches tenants, keys and device bindings in memory and
//! writes every change through the store together with its audit entry. It
//! works on its own plain types ([`Tenant`], [`ApiKey`], [`DeviceBinding`],
//! [`AuditEvent`]); the storage repositories (`storage/repo/`: tenants,
//! api_keys, devices, audit) turn them into rows and build the keys, so
//! nothing here knows a key layout. A new stored field goes into the type
//! here, the row in `storage::records` (a new tag) and the two conversions in
//! its repository. The methods are grouped by idea, one file each:
//!
//! - `access.rs`: which RPC needs which scope or credential ([`Need`], [`RULES`]);
//! - `principal.rs`: who is calling ([`Principal`], [`TenantKey`], [`Scope`]);
//! - `tenants.rs`: [`Tenant`], status changes, plans, the data-plane gate;
//! - `keys.rs`: [`ApiKey`]s (create, hash, authenticate, revoke);
//! - `devices.rs`: [`DeviceBinding`]s;
//! - `audit.rs`: the audit log ([`AuditEvent`]) and `commit_audited`, the one
//!   way a change is written;
//! - `credentials.rs`: the operator and billing-reader token files;
//! - `moving.rs`: a tenant moving between brokers (the stop, requests in
//!   flight, creation from a snapshot's parts);
//! - `names.rs`: the name rules for tenants, topics, subscriptions, devices.

mod access;
mod audit;
mod credentials;
mod devices;
mod keys;
mod moving;
mod names;
mod principal;
mod tenants;

use std::collections::BTreeMap;
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::crypto::{Keyring, TenantKeys};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::storage::Store;
use keys::sha256;

/// The maps of tenants, keys and plans, looked up several times by every
/// request: foldhash (seeded per process), not SipHash (~2,700 instructions
/// per one-message produce across the request path).
type Map<K, V> = DashMap<K, V, foldhash::fast::RandomState>;

pub use access::{need_of, Need, RULES};
pub use audit::AuditEvent;
pub use credentials::{
    load_or_create_billing_reader_token, load_or_create_operator_token,
    read_or_generate_billing_reader_token, read_or_generate_operator_token, Credential,
    PLACEHOLDER_PREFIX,
};
pub use devices::DeviceBinding;
pub use keys::{ApiKey, CreatedKey, INVALID_API_KEY_MESSAGE};
pub use moving::{is_move_reason, moved_reason, MoveMark, MOVING_MESSAGE};
pub use names::{validate_device_id, validate_resource_name, validate_tenant_id};
pub use principal::{Principal, Scope, TenantKey};
pub use tenants::{NewTenant, SuspendReason, Tenant, TenantStatus, TenantUpdate};

/// Tenants, keys and the operator credential, cached in memory and written
/// through the store.
pub struct Tenancy {
    store: Store,
    clock: Clock,
    plans: BTreeMap<String, Plan>,
    operator_hash: [u8; 32],
    billing_reader_hash: [u8; 32],
    tenants: Map<String, Tenant>,
    keys: Map<String, ApiKey>,
    active_keys_by_hash: Map<[u8; 32], Arc<TenantKey>>,
    /// Each tenant's plan with its overrides applied.
    effective_plans: Map<String, Arc<Plan>>,
    /// Device bindings by device id.
    devices: Map<String, DeviceBinding>,
    /// Bumped whenever a tenant's status changes, so open streams re-check.
    status_changes: watch::Sender<u64>,
    /// Some(reason) while the broker is in maintenance mode.
    maintenance: std::sync::RwLock<Option<String>>,
    /// Serialises control-plane writes so checks and writes do not race.
    write_lock: tokio::sync::Mutex<()>,
    /// Every live tenant's unwrapped data keys (and the server's).
    keyring: Arc<Keyring>,
    /// Key hashes of tenants moved away since start-up (memory only): they
    /// answer "moving" rather than UNAUTHENTICATED while routers still
    /// send the odd request here (see `moving.rs`).
    moved_keys: Map<[u8; 32], ()>,
}

impl Tenancy {
    /// Loads tenants and keys from the store; `keyring` holds the tenants'
    /// unwrapped data keys (opened on the same store).
    pub fn load(
        store: Store,
        clock: Clock,
        plans: BTreeMap<String, Plan>,
        operator_token: &str,
        billing_reader_token: &str,
        keyring: Arc<Keyring>,
    ) -> Result<Self> {
        let tenancy = Tenancy {
            store,
            clock,
            plans,
            operator_hash: sha256(operator_token),
            billing_reader_hash: sha256(billing_reader_token),
            tenants: Map::default(),
            keys: Map::default(),
            active_keys_by_hash: Map::default(),
            effective_plans: Map::default(),
            devices: Map::default(),
            status_changes: watch::channel(0).0,
            maintenance: std::sync::RwLock::new(None),
            write_lock: tokio::sync::Mutex::new(()),
            keyring,
            moved_keys: Map::default(),
        };
        for tenant in tenancy.store.tenants(&tenancy.keyring)? {
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
        for device in tenancy.store.device_bindings(tenancy.keyring.server())? {
            tenancy.devices.insert(device.device_id.clone(), device);
        }
        for key in tenancy.store.api_keys(&tenancy.keyring)? {
            tenancy.index_key(&key);
            tenancy.keys.insert(key.id.clone(), key);
        }
        Ok(tenancy)
    }

    /// The data keys of a live tenant, from the in-memory keyring (no unwrap
    /// per request). FAILED_PRECONDITION once the tenant is terminated: its
    /// key is destroyed and nothing of its data can be read or written.
    pub fn data_keys(&self, tenant: &str) -> Result<Arc<TenantKeys>> {
        self.keyring.tenant(tenant).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "tenant '{tenant}' has no data key (it is terminated)"
            ))
        })
    }
}
