//! One serving round: the services and the background jobs over one loaded
//! domain, on a clone of the listener, until the caller asks the server to
//! stop or the store fails. Either way the round ends the same way (the
//! steps of `shutdown.rs`): NOT_SERVING, streams and jobs end, in-flight RPCs
//! finish (the [gate](super::gate) hurries them when the store failed), the
//! domain is dropped and the store closed, so sled's `Db` is let go of before
//! anything reopens it.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use super::domain::Loaded;
use super::gate::GateLayer;
use super::scheduler::{Compaction, Scheduler};
use super::services::{self, Health};
use super::shutdown::{self, Shutdown, StopRequest};
use super::ServerError;
use crate::config::Config;
use crate::storage::StoreHealth;

/// Why a round ended.
pub(super) enum RoundEnd {
    /// The caller asked the server to stop.
    Stopped,
    /// The store failed; this is its health, which says why.
    StoreFailed(StoreHealth),
}

/// What every round serves on and reports to.
pub(super) struct Serving<'a> {
    pub(super) config: &'a Config,
    /// The bound listener; each round accepts on a clone of it, so the port
    /// stays bound between rounds and new connections wait in its backlog.
    pub(super) listener: &'a std::net::TcpListener,
    pub(super) stop: &'a StopRequest,
    pub(super) health: &'a Health,
}

impl Serving<'_> {
    /// A tokio listener on a clone of the bound socket.
    pub(super) fn accept_on(&self) -> Result<TcpListener, ServerError> {
        self.listener
            .try_clone()
            .and_then(TcpListener::from_std)
            .map_err(ServerError::Listener)
    }

    /// Serves `loaded` until the caller asks to stop or its store fails.
    pub(super) async fn round(&self, loaded: Loaded) -> Result<RoundEnd, ServerError> {
        let Loaded {
            domain,
            store,
            committer,
        } = loaded;
        let store_health = store.health().clone();
        let stopping = Shutdown::new(self.config.shutdown_grace());
        let tasks = TaskTracker::new();
        let gate = GateLayer::new(store_health.clone());
        let routes = services::routes(
            self.config,
            &domain,
            self.health,
            gate,
            stopping.flag(),
            &tasks,
        )
        .await?;
        let scheduler = Scheduler::start(
            &domain,
            Duration::from_secs(self.config.settlement_interval_seconds),
            Compaction::new(
                self.config.compact_below_live_percent,
                self.config.compaction_interval_seconds,
            ),
            stopping.flag(),
        );
        let trigger = {
            let stop = self.stop.clone();
            let failed = store_health.clone();
            async move {
                tokio::select! {
                    () = stop.requested() => tracing::info!(
                        "shutting down: no new connections, finishing in-flight RPCs"
                    ),
                    _ = failed.failed() => tracing::warn!(
                        "the store failed: ending this serving round and dropping its state"
                    ),
                }
            }
        };
        let serve = routes.serve_with_incoming_shutdown(
            services::incoming(self.accept_on()?),
            stopping.signal(trigger, self.health.clone()),
        );
        let served = stopping.drain(serve, &tasks).await;

        scheduler.stopped().await;
        drop(domain);
        let closed = shutdown::close_store(store, committer).await;
        if self.stop.is_requested() || !store_health.is_failed() {
            served?;
            closed?;
            return Ok(RoundEnd::Stopped);
        }
        if let Err(e) = served {
            tracing::warn!(error = %e, "the serving round ended with a transport error");
        }
        Ok(RoundEnd::StoreFailed(store_health))
    }
}
