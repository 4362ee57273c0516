//! Server assembly: opens the store, loads the domain, wires the gRPC
//! services (with auth, health and reflection), runs background work, and
//! shuts down gracefully. `main` only parses arguments and calls [`run`];
//! tests call it with their own listener and shutdown future.
//!
//! | file | what |
//! | --- | --- |
//! | `mod.rs` | [`run`]: the order of start-up and shutdown, nothing else |
//! | `domain.rs` | credentials, the store, the clock, tenancy, admission, broker, billing |
//! | `services.rs` | the four services behind their interceptors, health (one list), reflection, transport settings |
//! | `scheduler.rs` | every background job, on one loop with one sleep-or-shutdown |
//! | [`tick`] | expire, meter, settle, enforce arrears: run by the scheduler and by AdvanceClock |
//! | [`clock_store`] | the manual clock's saved reading and its advance |
//! | `shutdown.rs` | the stop flag, the grace period, draining streams, joining the committer |
//! | `tls.rs`, `error.rs` | TLS settings; [`ServerError`] |
//!
//! Where things go: a new background job is a variant of the scheduler's
//! `Job`; a new gRPC service is one more `add_service` in `services.rs` and
//! one more name in its health list; a new domain object is built in
//! `domain.rs` and reaches the handlers through [`crate::api::ApiState`].

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::config::Config;

pub mod clock_store;
mod domain;
mod error;
mod scheduler;
mod services;
mod shutdown;
pub mod tick;
mod tls;

pub use error::ServerError;
use scheduler::Scheduler;
use shutdown::Shutdown;

/// Runs the broker on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight RPCs finish up to the configured grace period,
/// flushes and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    crate::storage::restrict_umask(); // files 0600, folders 0700: see storage::private
    config.validate()?;
    let domain::Loaded {
        domain,
        store,
        committer,
        exporter,
    } = domain::load(&config)?;
    let stopping = Shutdown::new(config.shutdown_grace());
    let tasks = TaskTracker::new();
    let (routes, health) = services::routes(&config, &domain, stopping.flag(), &tasks).await?;
    let scheduler = Scheduler::start(
        &domain,
        Duration::from_secs(config.settlement_interval_seconds),
        stopping.flag(),
    );
    let exporter = exporter.map(|exporter| domain::serve_metrics(exporter, config.metrics_listen));
    tracing::info!(address = ?listener.local_addr().ok(), node_id = %config.node_id,
        data_dir = %config.data_dir.display(), "tallyq serving");
    let serve = routes.serve_with_incoming_shutdown(
        services::incoming(listener),
        stopping.signal(shutdown, health),
    );
    let result = stopping.drain(serve, &tasks).await;

    scheduler.stopped().await;
    if let Some(exporter) = exporter {
        exporter.abort();
    }
    drop(domain);
    shutdown::close_store(store, committer).await?;
    tracing::info!("tallyq stopped");
    result
}
