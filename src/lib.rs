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
//! | [`server`] | assembly, serving rounds (reopen after a failed store), the one scheduler, shutdown |
//! | [`api`] | wire ⇄ domain only: one module per gRPC service, auth, conversions, the one `Error → Status` map |
//! | [`broker`] | `produce/`, `topic/`, `subscription/`, `delivery/`, `admin/`, retention, export |
//! | [`tenancy`] | tenants, API keys, devices, the audit log, credentials, names |
//! | [`quota`] | admission: shape checks against the plan, rates, streams, failed authentications |
//! | [`plan`] | a plan's limits, rate card and arrears policy (a leaf) |
//! | [`metering`] | billing units, billing days, usage written inside the data's own write |
//! | [`billing`] | settlement, the hash-chained ledger, accounts, payments, arrears, statements, termination |
//! | [`shard`] | more than one broker: the shard map, the nginx router config rendered from it |
//! | [`transfer`] | moving a tenant between brokers: the snapshot, the source's and the target's halves |
//! | [`storage`] | the only user of sled: store, group committer, segments, repositories (keys and rows stay inside) |
//! | [`clock`] | the one clock (system, or manual for tests) |
//! | [`config`] | layered configuration and its validation |
//! | [`crypto`] | encryption at rest: the master key, per-tenant data keys (wrapped), the keyring cache, sealed sets and fields |
//! | [`observability`] | Prometheus metrics (bounded tenant labels) and logging |
//! | [`client`] | the Rust client the CLI, the tests and the benches use |
//! | [`wire`] | what client and server share beyond `proto/` |
//! | [`sync`] | lock helpers and the boxed future of the ports |
//!
//! The `tallyq` binary (`src/main.rs`, `src/cli/`: the CLI and the load tool)
//! is a client of this library. Requests flow one way: server → api → broker
//! (asking tenancy and quota, metering inside its writes) → storage; billing
//! reads what storage holds. Nothing outside `api`, `server` and `client`
//! knows tonic; nothing outside `storage` knows sled, a key or a row.
//! `ARCHITECTURE.md` follows a produce and a consume through the files.

#![warn(missing_docs)]

pub mod api;
pub mod billing;
pub mod broker;
pub mod client;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod metering;
pub mod observability;
pub mod plan;
pub mod quota;
pub mod server;
pub mod shard;
pub mod storage;
pub mod sync;
pub mod tenancy;
pub mod transfer;
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
