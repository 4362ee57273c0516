//! Moving a tenant from one broker to another (SPEC §9), built on three
//! Operator RPCs the CLI's `tallyq tenant move` drives:
//!
//! 1. **Export for move** on the source ([`source::export_for_move`]): the
//!    tenant is stopped (suspended as `moving:<stop ms>:…`, kept across
//!    restarts; every request of its keys answers FAILED_PRECONDITION
//!    "moving"), the broker waits until none of its requests is in flight
//!    and every queued write is durable, settles it through the stop day,
//!    and encodes a [`Snapshot`] with its SHA-256. Called again it stops
//!    nothing new and returns the same move (the same snapshot id).
//! 2. **Import** on the target ([`target::import`]): checks the checksum
//!    (DATA_LOSS), refuses an existing tenant (ALREADY_EXISTS) unless it is
//!    this very snapshot (then: already imported, or an import that died
//!    half-way, which is redone), refuses another rate card unless told to
//!    re-price, then creates the tenant (suspended as `importing:<id>`),
//!    its topics with their offsets, its subscriptions, the `moved_in`
//!    ledger entry, and only then lets it serve.
//! 3. **Finish** on the source (`Billing::finish_move_out`): the `moved_out`
//!    entry, then the termination path's erasure (the data key destroyed).
//!
//! Between 1 and 3 the tenant is served by no broker (both answer
//! "moving") and all of it is on the source; after 2 it is served by the
//! target only. `snapshot.rs` is a leaf: the snapshot's types and encoding.

pub mod snapshot;
pub mod source;
pub mod target;

pub use snapshot::{Encoded, Snapshot};
pub use source::export_for_move;
pub use target::{import, ImportOutcome};
