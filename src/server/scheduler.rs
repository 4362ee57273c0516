//! Background work: retention, gauges, settlement.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::billing::Billing;
use crate::broker::Broker;

/// How often retention runs on the wall clock.
const RETENTION_INTERVAL: Duration = Duration::from_secs(1);
/// Dedup sweeps run on every this-many retention passes.
const DEDUP_SWEEP_EVERY: u64 = 60;

/// The retention loop; ends when `shutdown` turns true.
pub(super) async fn run_retention(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut passes = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RETENTION_INTERVAL) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = broker.expire_messages().await {
            tracing::error!(error = %e, "retention pass failed");
        }
        if let Err(e) = broker.sample_storage(false).await {
            tracing::error!(error = %e, "storage metering failed");
        }
        passes += 1;
        if passes % DEDUP_SWEEP_EVERY == 0 {
            // Failed-authentication counters of past minutes are of no use.
            broker.admission().sweep();
            if let Err(e) = broker.sweep_dedup().await {
                tracing::error!(error = %e, "dedup sweep failed");
            }
        }
    }
}

/// Refreshes the gauges (backlog, in-flight, retained bytes, storage, tenants)
/// every few seconds until shutdown.
pub(super) async fn run_gauges(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    loop {
        broker.refresh_gauges().await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Settles ended days and enforces arrears on a timer until shutdown.
pub(super) async fn run_settlement(
    billing: Arc<Billing>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = billing.settle_due().await {
            tracing::error!(error = %e, "settlement failed; it resumes on the next run");
        }
        if let Err(e) = billing.enforce_arrears().await {
            tracing::error!(error = %e, "arrears check failed");
        }
    }
}
