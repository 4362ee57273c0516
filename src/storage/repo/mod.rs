//! Repositories: one file per keyspace family, typed reads on `Store` and
//! writes on `WriteSet` that turn domain types into rows and back. Keys are
//! built here and nowhere outside storage.

mod api_keys;
mod audit;
mod clock;
mod data_keys;
mod dedup;
mod device_fold;
mod device_journal;
mod devices;
mod ledger;
mod sets;
mod settlement;
mod subscriptions;
mod tenants;
mod topic_life;
mod topics;
mod usage;

pub use sets::SetLocation;
