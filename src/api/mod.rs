//! The gRPC front end: one module per service, each a thin adapter that
//! converts wire types, calls the broker domain, and maps errors through
//! [`status`]. Authentication is an interceptor ([`auth`]) applied once per
//! service.

pub mod admin;
pub mod auth;
pub mod billing;
pub mod broker;
pub mod convert;
pub mod operator;
pub mod rpc_metrics;
pub mod status;

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::billing::Billing;
use crate::broker::Broker;
use crate::server::clock_store::ClockStore;

/// What every service handler needs.
#[derive(Clone)]
pub struct ApiState {
    /// The broker domain.
    pub broker: Arc<Broker>,
    /// Settlement, ledger, accounts.
    pub billing: Arc<Billing>,
    /// The manual test clock (AdvanceClock).
    pub clock: Arc<ClockStore>,
    /// Turns true when the server begins to shut down; long streams end.
    pub shutdown: watch::Receiver<bool>,
    /// The tasks that outlive a handler (stream pumps, exports, failed-auth
    /// audits): shutdown waits for them, up to the grace period.
    pub tasks: TaskTracker,
    /// gRPC health statuses (NOT_SERVING in maintenance and at shutdown).
    pub health: tonic_health::server::HealthReporter,
}
