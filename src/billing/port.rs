//! What billing needs from the broker, and nothing more.
//!
//! Billing reads usage, topic lifetimes and its own ledger straight from the
//! store; from the broker it needs only two actions: meter retained storage
//! up to now (so a day's storage time is counted before the day is settled)
//! and erase a terminated tenant's topics. The broker implements this port in
//! `broker/billing_port.rs`; tests may hand in their own.

use crate::error::Result;

/// The future a port call returns: boxed so the trait stays object-safe
/// (`Arc<dyn BrokerPort>`) without the `async-trait` crate.
pub type PortFuture<'a> = crate::sync::BoxFuture<'a, Result<()>>;

/// The broker as billing sees it.
pub trait BrokerPort: Send + Sync {
    /// Writes every topic's retained storage up to now into the usage
    /// counters, so settlement and termination price all of it.
    fn meter_storage_now(&self) -> PortFuture<'_>;

    /// The same for one tenant's topics (live usage): by default, everyone's.
    fn meter_tenant_storage_now<'a>(&'a self, tenant: &'a str) -> PortFuture<'a> {
        let _ = tenant;
        self.meter_storage_now()
    }

    /// Folds the per-device produce usage of a tenant's stored sets into
    /// its device counters (`broker/device_usage.rs`), so per-device usage
    /// read next is complete: by default, nothing to fold.
    fn fold_device_usage<'a>(&'a self, tenant: &'a str) -> PortFuture<'a> {
        let _ = tenant;
        Box::pin(async { Ok(()) })
    }

    /// Erases a tenant's topics, messages and subscriptions (termination;
    /// the ledger and the tenant record are billing's and tenancy's).
    fn erase_tenant_data<'a>(&'a self, tenant: &'a str) -> PortFuture<'a>;
}
