//! Repositories: typed reads on [`Store`](super::Store) and writes on
//! [`WriteSet`](super::WriteSet), one file per keyspace family. Keys are built
//! and rows converted only here; callers see domain values.

mod dedup;
mod sets;
mod subscriptions;
mod topics;

pub use sets::SetLocation;
