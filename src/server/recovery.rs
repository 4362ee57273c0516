//! Recovery from a failed store, in-process, without a restart.
//!
//! Design (issue 11, item 2): a write that fails must leave no lie behind.
//! Rolling back what a failed group changed in memory would need every
//! domain object to undo its own changes, and sled 0.34 stays failed after an
//! I/O error anyway. So tallyq recovers by *reopening and reloading*: the
//! serving round whose store failed ends (`round.rs`; the [gate](super::gate)
//! answers for it meanwhile), its domain and store are dropped, and once the
//! disk takes writes again the store is opened and the domain loaded from it
//! exactly as at start-up. The in-memory state then equals what is durable
//! by construction, and nothing of the failed group was reported stored:
//! its writers heard "not applied" or "outcome unknown" (`storage/failure.rs`).
//!
//! While it waits, the broker keeps its port: a recovering server on a clone
//! of the listener serves health (every service NOT_SERVING) and answers
//! every other call `UNAVAILABLE` "not applied: retry". Once a second it
//! probes the data directory ([`probe`]: write and `fdatasync` a small file);
//! when that works it loads the domain (a failure, e.g. sled's lock still
//! held by a request that outlived the round, is logged and tried again a
//! second later), stops the recovering server and hands the domain to the
//! next round.
//!
//! What the operator sees: an error log naming the cause and the data
//! directory when the store fails, a warning about every ten seconds while
//! the disk still refuses, an info line when serving resumes; health
//! NOT_SERVING meanwhile; `tallyq_storage_failed` 1 while failed and
//! `tallyq_storage_recoveries_total` counting the recoveries.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use tokio::sync::oneshot;
use tonic_health::ServingStatus;

use super::domain::{self, Loaded, Prepared};
use super::gate::GateLayer;
use super::round::Serving;
use super::services;
use super::ServerError;
use crate::observability::{name, Metrics};
use crate::storage::StoreHealth;

/// How often the data directory is probed while recovering.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A refusing disk is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// The probe file's size: writes this small must work before sled is
/// reopened.
const PROBE_BYTES: usize = 64 * 1024;
/// The probe file, in the data directory.
const PROBE_FILE: &str = ".tallyq-write-probe";

/// Sets the state gauge (1 while the store is failed).
pub(super) fn report_state(metrics: &Metrics, failed: bool) {
    metrics.gauge(name::STORAGE_FAILED, &[], if failed { 1.0 } else { 0.0 });
}

/// Waits, serving health only, until the disk takes writes and the domain
/// loads again; `None` when the caller asks the server to stop first.
pub(super) async fn recover(
    serving: &Serving<'_>,
    prepared: &Prepared,
    failed: StoreHealth,
) -> Result<Option<Loaded>, ServerError> {
    let cause = failed.failure().map(|e| e.to_string()).unwrap_or_default();
    let data_dir = serving.config.data_dir.clone();
    tracing::error!(error = %cause, data_dir = %data_dir.display(),
        "the store failed: serving stopped; it resumes once the data directory takes writes again");
    report_state(&prepared.metrics, true);
    serving.health.set_all(ServingStatus::NotServing).await;

    let routes = services::recovering_routes(
        serving.config,
        prepared.metrics.clone(),
        serving.health,
        GateLayer::new(failed),
    )?;
    let (stop_recovering, stopped) = oneshot::channel::<()>();
    let recovering = tokio::spawn(routes.serve_with_incoming_shutdown(
        services::incoming(serving.accept_on()?),
        async {
            let _ = stopped.await;
        },
    ));

    let reloaded = reload(serving, prepared, &data_dir).await;
    let _ = stop_recovering.send(());
    // Health watchers may keep their streams open: give them a moment, then
    // let the connections go on by themselves (they hold no store).
    if tokio::time::timeout(Duration::from_secs(1), recovering)
        .await
        .is_err()
    {
        tracing::debug!("recovering connections outlived the switch back");
    }
    if reloaded.is_some() {
        prepared
            .metrics
            .count_labeled(name::STORAGE_RECOVERIES, &[], 1);
        report_state(&prepared.metrics, false);
        tracing::info!(data_dir = %data_dir.display(),
            "the store was reopened and the state reloaded from disk: serving again");
    }
    Ok(reloaded)
}

/// Probes and loads once a second until both work (`None` on stop).
async fn reload(serving: &Serving<'_>, prepared: &Prepared, data_dir: &Path) -> Option<Loaded> {
    let mut last_log: Option<tokio::time::Instant> = None;
    let mut attempts = 0u64;
    loop {
        tokio::select! {
            () = serving.stop.requested() => return None,
            () = tokio::time::sleep(PROBE_EVERY) => {}
        }
        attempts += 1;
        let attempt = match probe(data_dir) {
            Ok(()) => load(serving, prepared).await,
            Err(e) => Err(format!("the data directory does not take writes: {e}")),
        };
        match attempt {
            Ok(loaded) => return Some(loaded),
            Err(e) if last_log.is_none_or(|at| at.elapsed() >= LOG_EVERY) => {
                tracing::warn!(error = %e, data_dir = %data_dir.display(), attempts,
                    "still recovering the store; trying again every second");
                last_log = Some(tokio::time::Instant::now());
            }
            Err(_) => {}
        }
    }
}

/// [`domain::load`] on a blocking thread (opening sled and loading the
/// domain read the whole index; the recovering server keeps answering).
async fn load(serving: &Serving<'_>, prepared: &Prepared) -> Result<Loaded, String> {
    let config = serving.config.clone();
    let prepared = prepared.clone();
    match tokio::task::spawn_blocking(move || domain::load(&config, &prepared)).await {
        Ok(loaded) => loaded.map_err(|e| format!("cannot reopen the store: {e}")),
        Err(e) => Err(format!("reopening the store panicked: {e}")),
    }
}

/// Writes a small file in `data_dir`, `fdatasync`s it and removes it: the
/// cause of a failure (a full disk, a failing device) is gone when this
/// works.
fn probe(data_dir: &Path) -> std::io::Result<()> {
    let path = data_dir.join(PROBE_FILE);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| {
            file.write_all(&[0u8; PROBE_BYTES])?;
            file.sync_data()
        });
    let removed = std::fs::remove_file(&path);
    written?;
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
