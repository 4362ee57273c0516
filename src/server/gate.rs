//! The store gate: a tower layer around the router that keeps a failed
//! store's domain from answering anyone.
//!
//! Once a group commit has failed, the domain's in-memory state (log ends,
//! dedup tables, subscription states, pending usage, the ledger tail) may be
//! ahead of the disk, and a request served from it could answer OK for
//! something the disk does not have: a second Ack of an offset the failed
//! group "acked" in memory writes nothing and would answer OK. So, from the
//! moment the store has failed ([`StoreHealth`]) until the supervisor has
//! reloaded the domain from disk, the gate:
//!
//! - refuses every new request to a tallyq service with `UNAVAILABLE`
//!   "not applied: retry" (it is not applied: it never reaches the domain);
//! - lets a request already in flight finish with its own answer for up to
//!   [`SETTLE`] (a writer of the failed group hears whether its write may be
//!   stored, from the committer), except that an OK becomes `UNAVAILABLE`
//!   "outcome unknown": an OK leaving after the failure may rest on state the
//!   disk lacks;
//! - then drops what is still running (a long-polling Fetch, say) with
//!   "outcome unknown", so the failed domain, and the sled `Db` under it, are
//!   let go of quickly.
//!
//! Health and reflection pass always: health is how an operator sees
//! NOT_SERVING while the broker recovers. Both answers go through the one
//! Error -> Status map (`api::status`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::Status;
use tower::{Layer, Service};

use crate::error::Error;
use crate::storage::{StorageError, StoreHealth};

/// How long a request in flight when the store fails may take to finish
/// with its own answer before it is dropped.
pub(super) const SETTLE: Duration = Duration::from_secs(1);

/// The layer, watching one store's health.
#[derive(Clone)]
pub(super) struct GateLayer {
    health: StoreHealth,
}

impl GateLayer {
    /// Gates on `health`: a failed store's health refuses every request at
    /// once (what the recovering server uses).
    pub(super) fn new(health: StoreHealth) -> Self {
        GateLayer { health }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate {
            inner,
            health: self.health.clone(),
        }
    }
}

/// The service the layer wraps around the router.
#[derive(Clone)]
pub(super) struct Gate<S> {
    inner: S,
    health: StoreHealth,
}

/// Paths that pass whatever the store's state: health and reflection.
fn always_passes(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

/// A response that has begun well: no `grpc-status` in its headers (an
/// error answers trailers-only, with the status in the headers).
fn looks_ok<R>(response: &http::Response<R>) -> bool {
    !response.headers().contains_key("grpc-status")
}

/// The refusal of a request that never reached the domain.
fn not_applied<R: Default>(health: &StoreHealth) -> http::Response<R> {
    refusal(health, StorageError::Failed)
}

/// The answer of a request whose effect is unknown.
fn outcome_unknown<R: Default>(health: &StoreHealth) -> http::Response<R> {
    refusal(health, StorageError::OutcomeUnknown)
}

fn refusal<R: Default>(
    health: &StoreHealth,
    kind: fn(Box<StorageError>) -> StorageError,
) -> http::Response<R> {
    let cause = health.failure().unwrap_or(StorageError::Closed);
    Status::from(Error::Storage(kind(Box::new(cause)))).into_http()
}

impl<S, B, R> Service<http::Request<B>> for Gate<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Send + 'static,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if always_passes(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let health = self.health.clone();
        if health.is_failed() {
            return Box::pin(async move { Ok(not_applied(&health)) });
        }
        let response = self.inner.call(request);
        Box::pin(async move {
            tokio::pin!(response);
            let settled = async {
                health.failed().await;
                tokio::time::sleep(SETTLE).await;
            };
            tokio::select! {
                biased;
                result = &mut response => match result {
                    Ok(answer) if health.is_failed() && looks_ok(&answer) => {
                        Ok(outcome_unknown(&health))
                    }
                    other => other,
                },
                () = settled => Ok(outcome_unknown(&health)),
            }
        })
    }
}
