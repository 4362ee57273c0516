//! Graceful shutdown, in order:
//!
//! 1. the caller's shutdown future resolves: every service turns NOT_SERVING
//!    and the stop flag turns true (Consume streams end, background jobs
//!    finish their current run, tonic stops accepting);
//! 2. in-flight RPCs get up to the grace period to finish;
//! 3. `run` then waits for the jobs and flushes the store.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tonic_health::ServingStatus;

use super::services::Health;
use super::ServerError;

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

    /// Turns the stop flag true (again, harmlessly, when it already is).
    pub(super) fn stop(&self) {
        self.stop.send_replace(true);
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

    /// Runs `serve` to its end, but for no longer than the grace period once
    /// stopping has begun.
    pub(super) async fn serve_within_grace(
        &self,
        serve: impl Future<Output = Result<(), tonic::transport::Error>>,
    ) -> Result<(), ServerError> {
        let mut stopping = self.flag();
        let grace = self.grace;
        tokio::select! {
            result = serve => result.map_err(ServerError::from),
            _ = async {
                let _ = stopping.wait_for(|stop| *stop).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_seconds = grace.as_secs(), "in-flight RPCs outlived the grace period");
                Ok(())
            }
        }
    }
}
