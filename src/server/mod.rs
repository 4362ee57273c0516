//! Server assembly: opens the store, loads the domain, wires the gRPC
//! services (with auth, health and reflection), runs background work, and
//! shuts down gracefully. `main` only parses arguments and calls [`run`];
//! tests call it with their own listener and shutdown future.
//!
//! `run` supervises its domain: it serves in *rounds* (`round.rs`), one per
//! opened store. When the store fails (a failed group commit, e.g. a full
//! disk), the round ends, its domain and store are dropped, and
//! `recovery.rs` waits for the disk, reopens the store and reloads the
//! domain from it, then the next round serves on the same listener. Nothing
//! in memory outlives a failed store.
//!
//! | file | what |
//! | --- | --- |
//! | `mod.rs` | [`run`] and the supervision loop |
//! | `start.rs` | [`start`]: the order of start-up (ports, store, credential files), nothing left behind on a failure; [`Started::serve`] |
//! | `domain.rs` | credentials and metrics (once); the store, the clock, tenancy, admission, broker, billing (per round) |
//! | `round.rs` | one serving round over one loaded domain, until stop or a failed store |
//! | `gate.rs` | the layer that keeps a failed store's domain from answering |
//! | `answer_body.rs` | the layer that keeps a Fetch answer's credit counted until its bytes have left the process |
//! | `recovery.rs` | waiting for the disk (probe), reopening, reloading; the recovering server (health only) |
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

use tokio::net::TcpListener;

use crate::config::Config;

mod answer_body;
pub mod clock_store;
mod domain;
mod error;
mod gate;
mod recovery;
mod round;
mod scheduler;
mod services;
mod shutdown;
mod start;
pub mod tick;
mod tls;

pub use error::ServerError;
use round::{RoundEnd, Serving};
pub use start::{start, Started};

/// Runs the broker on `listener` until `shutdown` resolves: [`start`], then
/// [`Started::serve`]. Only a failure at start-up ends `run` with an error.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    start(config, listener).await?.serve(shutdown).await
}

/// Serves round after round: a round ends when the caller asks to stop, or
/// when the store fails; then the store is recovered and the next round
/// serves the reloaded domain on the same listener.
async fn supervise(
    serving: &Serving<'_>,
    prepared: &domain::Prepared,
    mut loaded: domain::Loaded,
) -> Result<(), ServerError> {
    loop {
        let failed = match serving.round(loaded).await? {
            RoundEnd::Stopped => return Ok(()),
            RoundEnd::StoreFailed(failed) => failed,
        };
        match recovery::recover(serving, prepared, failed).await? {
            Some(reloaded) => loaded = reloaded,
            None => return Ok(()),
        }
    }
}
