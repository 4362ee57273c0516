//! Quotas: what a tenant may do under its plan ([`crate::plan`]).
//!
//! - [`limits`]: "is this request within the plan?" for the shape of single
//!   requests (sizes, counts, ranges); no state.
//! - [`admission`]: the accumulated limits (rates, streams, failed
//!   authentications), the one door the api and broker call; its counters
//!   live in `rate.rs`, `streams.rs` and `failed_auth.rs`.
//!
//! The plan's values themselves are in [`crate::plan`]; a new limit is a field
//! there, and its check goes in `limits.rs` (shape) or `admission.rs`
//! (accumulated).

pub mod admission;
mod delivery_bytes;
mod failed_auth;
pub mod limits;
mod rate;
mod streams;

// Old path of the plan, kept while other branches still name it.
pub use crate::plan::{Plan, MAX_LOCK_SECONDS_ANY_PLAN};
pub use limits::{human_bytes, MessageShape, MessageSize};
