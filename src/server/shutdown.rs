//! Graceful shutdown, in order:
//!
//! 1. the caller's shutdown future resolves: every service turns NOT_SERVING
//!    and the stop flag turns true (Consume streams end, background jobs
//!    finish their current run, tonic stops accepting);
//! 2. in-flight RPCs, and the tasks they left running (stream pumps,
//!    exports, audits), get what is left of one grace period to finish;
//! 3. `run` waits for the background jobs, drops the domain, flushes, and
//!    joins the committer thread ([`close_store`]), which commits whatever
//!    is still queued. Work that outlived the grace period (a client that
//!    does not close its connection, a stream that does not end) may still
//!    hold a store handle; its later commits fail as the store is closed.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{timeout_at, Instant};
use tokio_util::task::TaskTracker;
use tonic_health::ServingStatus;

use super::services::Health;
use super::ServerError;
use crate::storage::{CommitterHandle, StorageError, Store};

/// The stop flag and the grace period.
pub(super) struct Shutdown {
    stop: watch::Sender<bool>,
    grace: Duration,
}

impl Shutdown {
    /// Not yet stopping; in-flight work gets `grace` once stopping begins.
    pub(super) fn new(grace: Duration) -> Self {
        Shutdown {
            stop: watch::channel(false).0,
            grace,
        }
    }

    /// The stop flag, for whatever must end when shutdown begins.
    pub(super) fn flag(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// The signal tonic waits on: resolves once `trigger` has, after turning
    /// every service NOT_SERVING and the stop flag true.
    pub(super) fn signal(
        &self,
        trigger: impl Future<Output = ()> + Send + 'static,
        health: Health,
    ) -> impl Future<Output = ()> + Send + 'static {
        let stop = self.stop.clone();
        async move {
            trigger.await;
            tracing::info!("shutting down: no new connections, finishing in-flight RPCs");
            health.set_all(ServingStatus::NotServing).await;
            stop.send_replace(true);
        }
    }

    /// Runs `serve` until it ends; once stopping has begun, waits for it and
    /// then for the `tasks` (closed to new ones) for at most the grace period
    /// in all. Leaves the stop flag true (also when serve failed early).
    pub(super) async fn drain(
        &self,
        serve: impl Future<Output = Result<(), tonic::transport::Error>>,
        tasks: &TaskTracker,
    ) -> Result<(), ServerError> {
        tokio::pin!(serve);
        let mut stopping = self.flag();
        let failed_early = tokio::select! {
            result = &mut serve => Some(result),
            _ = stopping.wait_for(|stop| *stop) => None,
        };
        self.stop.send_replace(true);
        let deadline = Instant::now() + self.grace;
        let result = match failed_early {
            Some(result) => result,
            None => timeout_at(deadline, serve).await.unwrap_or_else(|_| {
                tracing::warn!(
                    grace_seconds = self.grace.as_secs(),
                    "in-flight RPCs outlived the grace period"
                );
                Ok(())
            }),
        };
        tasks.close();
        if timeout_at(deadline, tasks.wait()).await.is_err() {
            tracing::warn!(
                tasks = tasks.len(),
                grace_seconds = self.grace.as_secs(),
                "stream tasks outlived the grace period"
            );
        }
        result.map_err(ServerError::from)
    }
}

/// The last step, once the last writer is gone: flushes, then stops and
/// joins the committer thread, which commits and answers whatever is still
/// queued.
pub(super) async fn close_store(
    store: Store,
    committer: CommitterHandle,
) -> Result<(), StorageError> {
    let flushed = store.flush();
    drop(store);
    if tokio::task::spawn_blocking(move || committer.join())
        .await
        .is_err()
    {
        tracing::error!("joining the committer thread failed");
    }
    flushed
}
