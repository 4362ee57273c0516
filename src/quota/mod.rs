//! Quotas: what a tenant may do under its plan ([`crate::plan`]). [`limits`]
//! answers "is this request within the plan?" for the shape of single
//! requests (sizes, counts, ranges); [`admission`] holds the accumulated
//! limits (rates, streams, failed authentications).

pub mod admission;
mod failed_auth;
pub mod limits;
mod rate;
mod streams;

pub use crate::plan::{Plan, MAX_LOCK_SECONDS_ANY_PLAN};
pub use limits::{human_bytes, MessageShape, MessageSize};
