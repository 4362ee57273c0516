//! Repositories: typed reads on [`Store`](super::Store) and writes on [`WriteSet`](super::WriteSet) that take and return domain types, one file per keyspace family; keys and rows stay inside storage.

mod api_keys;
mod audit;
mod devices;
mod tenants;
