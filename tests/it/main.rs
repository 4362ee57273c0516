//! Integration tests: one binary (links once), suites per capability, all
//! against a real broker over real gRPC.

mod harness;
mod ops;
mod small_fs;

mod auth;
mod billing;
mod cli;
mod clock;
mod compaction;
mod control;
mod corrupt_sets;
mod damage;
mod dead_letter_timer;
mod delivery;
mod device_delivery_usage;
mod device_journal_damage;
mod device_produce_journal;
mod device_usage;
mod disk_watermark;
mod durability;
mod encryption;
mod failed_auth;
mod fetch_hold;
mod ledger_paging;
mod limits;
mod observed;
mod private_files;
mod produce;
mod produce_combining;
mod quotas;
mod response_size;
mod retention;
mod router;
mod scopes;
mod send_hold;
mod service;
mod startup;
mod storage_hours;
mod stream_acks;
mod strict_input;
mod tenant_move;
mod transport_limits;
mod write_failures;
// SIGKILL under scenario 1 load (kept from the reverted two-thread group commit).
mod batched_kill;
