//! Graceful shutdown, and the end of a serving round whose store failed
//! (the same steps, then the supervisor recovers instead of returning), in
//! order:
//!
//! 1. the caller's shutdown future resolves ([`StopRequest`]), or the store
//!    fails: every service turns NOT_SERVING and the stop flag turns true
//!    (Consume streams end, background jobs finish their current run, tonic
//!    stops accepting);
//! 2. in-flight RPCs, and the tasks they left running (stream pumps,
//!    exports, audits), get what is left of one grace period to finish;
//! 3. the round waits for the background jobs, drops the domain, flushes, and
//!    joins the committer thread ([`close_store`]), which commits whatever
//!    is still queued (a failed store is not flushed: nothing more reaches
//!    sled). Work that outlived the grace period (a client that does not
//!    close its connection, a stream that does not end) may still hold a
//!    store handle; its later commits fail as the store is closed.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{timeout_at, Instant};
use tokio_util::task::TaskTracker;
use tonic_health::ServingStatus;

use super::services::Health;
use super::ServerError;
use crate::storage::{CommitterHandle, StorageError, Store};

/// The caller's shutdown future, turned into a flag every round can watch:
/// the future is awaited once, in a task of its own.
#[derive(Clone)]
pub(super) struct StopRequest(watch::Receiver<bool>);

impl StopRequest {
    /// Watches `trigger` from now on; the task ends when it resolves or when
    /// the returned handle is aborted.
    pub(super) fn spawn(
        trigger: impl Future<Output = ()> + Send + 'static,
    ) -> (StopRequest, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            trigger.await;
            tx.send_replace(true);
        });
        (StopRequest(rx), task)
    }

    /// True once the caller asked the server to stop.
    pub(super) fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the caller asked the server to stop (or its watcher is
    /// gone, which only happens as `run` ends).
    pub(super) async fn requested(&self) {
        let mut flag = self.0.clone();
        let _ = flag.wait_for(|stop| *stop).await;
    }
}

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

/// The last step, once the last writer is gone: flushes (unless the store
/// failed), then stops and joins the committer thread, which commits and
/// answers whatever is still queued (a failed store answers it "not
/// applied").
pub(super) async fn close_store(
    store: Store,
    committer: CommitterHandle,
) -> Result<(), StorageError> {
    let flushed = if store.health().is_failed() {
        Ok(())
    } else {
        store.flush()
    };
    drop(store);
    if tokio::task::spawn_blocking(move || committer.join())
        .await
        .is_err()
    {
        tracing::error!("joining the committer thread failed");
    }
    flushed
}
