//! Integration tests: one binary (links once), suites per capability, all
//! against a real broker over real gRPC.

mod harness;
mod ops;
mod small_fs;

mod auth;
mod billing;
mod control;
mod corrupt_sets;
mod delivery;
mod disk_watermark;
mod durability;
mod encryption;
mod private_files;
mod produce;
mod quotas;
mod retention;
mod service;
mod write_failures;
