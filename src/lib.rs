//! # tallyq
//!
//! A lightweight, multi-tenant message-queue broker for IoT platforms, sold as
//! a post-paid, metered service. One binary serves a gRPC API (package
//! `tallyq.v1`, in `proto/`), keeps every topic durably in an embedded sled
//! store, and counts every message for billing.
//!
//! ## Where things live
//!
//! | module | what it owns |
//! |---|---|
//! | [`server`] | assembly: store, domain, gRPC services, background work, shutdown |
//! | [`api`] | one module per gRPC service, the auth interceptor, the one `Error → Status` map |
//! | [`broker`] | topics, subscriptions, produce, delivery, acks, retention, dead letters |
//! | [`tenancy`] | tenants, API keys, the operator credential, authentication, scopes |
//! | [`plan`] | a plan's limits, rate card and arrears policy (a leaf) |
//! | [`quota`] | shape checks of requests against the plan; admission (rates, streams, failed auths) |
//! | [`metering`] | billing units, billing days, usage counters written with the data |
//! | [`billing`] | rate cards, settlement, the hash-chained ledger, accounts, arrears, termination |
//! | [`storage`] | the sled keyspaces, record codecs, the group committer (the only sled user) |
//! | [`clock`] | the one clock (system, or manual for tests) |
//! | [`config`] | layered configuration and its validation |
//! | [`observability`] | Prometheus metrics (bounded tenant labels) and logging |
//! | [`client`] | the Rust client the CLI and the tests use |
//!
//! Data flows one way: api → (tenancy, quota) → broker → storage. Nothing
//! below `api` knows tonic; nothing outside `storage` knows sled.
//! `ARCHITECTURE.md` follows a produce and a consume through the code.

#![warn(missing_docs)]

pub mod api;
pub mod billing;
pub mod broker;
pub mod client;
pub mod clock;
pub mod config;
pub mod error;
pub mod metering;
pub mod observability;
pub mod plan;
pub mod quota;
pub mod server;
pub mod storage;
pub mod sync;
pub mod tenancy;
pub mod wire;

pub use server::run;

/// The generated gRPC types and the descriptor set served by reflection.
pub mod proto {
    /// Package `tallyq.v1`.
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("tallyq.v1");
    }

    /// Encoded `FileDescriptorSet` of `proto/`, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tallyq_descriptor");
}
