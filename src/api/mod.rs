//! The gRPC front end: one module per service, each a thin adapter that
//! converts wire types ([`convert`]), calls the domain, and maps errors
//! through [`status`]. Authentication is an interceptor ([`auth`]) applied
//! once per service; latency and codes are recorded by one layer
//! ([`rpc_metrics`]) around all of them.
//!
//! Where things go: a new RPC is one method in its service's file, whose body
//! reads the request, converts it with `convert`, calls one domain method and
//! converts the answer back. Conversions and wire-only checks (enum numbers,
//! page sizes, text lengths) go to `convert`; anything that decides or
//! stores goes below, into the domain. Nothing here names the store.

pub mod access;
pub mod admin;
pub mod auth;
pub mod billing;
pub mod broker;
pub mod convert;
pub mod operator;
pub mod pack;
pub mod rpc_metrics;
pub mod source;
pub mod status;

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::billing::Billing;
use crate::broker::Broker;
use crate::error::Result;
use crate::quota::admission::{Admission, StreamPermit};
use crate::sync::BoxFuture;
use crate::tenancy::Tenancy;

/// What AdvanceClock needs from the server: move the manual clock, save and
/// audit the new reading, and run what the new time makes due. The server
/// implements it (`server::clock_store`), so `api` does not depend on `server`.
pub trait ClockControl: Send + Sync {
    /// Advances the manual clock by `advance_ms` and returns the new time.
    fn advance(&self, advance_ms: u64) -> BoxFuture<'_, Result<i64>>;

    /// The broker's time now (Unix ms) and which kind of clock it runs on
    /// (for GetClock).
    fn read(&self) -> (i64, crate::clock::ClockKind);
}

/// What every service handler needs.
#[derive(Clone)]
pub struct ApiState {
    /// The broker domain.
    pub broker: Arc<Broker>,
    /// Tenants, keys, devices, maintenance, the audit log.
    pub tenancy: Arc<Tenancy>,
    /// Rate and stream limits.
    pub admission: Arc<Admission>,
    /// Settlement, ledger, accounts.
    pub billing: Arc<Billing>,
    /// The manual test clock (AdvanceClock), moved by the server.
    pub clock: Arc<dyn ClockControl>,
    /// Turns true when the server begins to shut down; long streams end.
    pub shutdown: watch::Receiver<bool>,
    /// The tasks that outlive a handler (stream pumps, exports, failed-auth
    /// audits): shutdown waits for them, up to the grace period.
    pub tasks: TaskTracker,
    /// gRPC health statuses (NOT_SERVING in maintenance and at shutdown).
    pub health: tonic_health::server::HealthReporter,
}

impl ApiState {
    /// Counts one control-plane call against the tenant's plan rate.
    pub fn admit_control(&self, tenant: &str) -> Result<()> {
        self.admission
            .admit_control(tenant, &self.tenancy.plan_of(tenant))
    }

    /// Takes one of the tenant's concurrent-stream slots (a refused stream
    /// changes nothing and is not counted).
    pub fn open_stream(&self, tenant: &str) -> Result<StreamPermit> {
        self.admission
            .open_stream(tenant, &self.tenancy.plan_of(tenant))
    }
}

/// A server-streaming RPC's response stream.
pub type ResponseStream<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

/// The reply of a unary RPC: the domain answer converted to its wire message.
pub fn reply<T>(message: impl Into<T>) -> Result<tonic::Response<T>, tonic::Status> {
    Ok(tonic::Response::new(message.into()))
}
