//! Storage: the only module that names sled.
//!
//! Everything lives in one sled tree, split into keyspaces by a leading byte
//! ([`keys`]). Writes are collected in a [`WriteSet`] and handed to the
//! [`Store::commit`] group committer: one thread gathers every write queued
//! while the previous flush ran, applies them as one atomic `sled::Batch`,
//! flushes once, runs each write's after-commit hook in queue order, and only
//! then answers the writers. So a reply that says "stored" always follows the
//! flush that made it durable, and many concurrent requests share one flush.
//!
//! Message payloads do not go through sled: they are appended to segment
//! files (`segments.rs`) and sled keeps a small reference to them. The
//! committer `fdatasync`s the segments written since its last group before it
//! applies the group's batch, so a reference is never durable before the bytes
//! it points to.
//!
//! Durability: sled 0.34's `flush` writes its log with `sync_file_range`
//! rather than `fsync` (data to the device, but neither the file's metadata
//! nor the device's cache), so after it the committer `fdatasync`s sled's log
//! file itself. A reply that says "stored" therefore follows an `fdatasync` of
//! both the segments and the index. (sled writes items over about 128 KiB to
//! separate, never-synced blob files; the key layout keeps every item far
//! smaller, and the counter journal is split so that it stays small too.)
//!
//! Counters (usage, topic totals) are not rewritten on every commit: the
//! committer journals each group's summed increments in the group's own
//! batch and folds them into the counters about once a second
//! (`counters.rs` explains the journal). A journal that
//! cannot be read or folded makes [`Store::open`] fail.
//!
//! Shutdown: after the last writer has finished, call
//! [`CommitterHandle::join`]; it commits what is queued, folds, flushes and
//! stops the thread even while `Store` clones are still held.
//!
//! ## Files
//!
//! | file | what it holds |
//! | --- | --- |
//! | `store.rs` | [`Store`]: open, reads (`get`, `scan*`, `last_at_or_before`), blobs, ids, size; writes go to the committer |
//! | `write_set.rs` | [`WriteSet`]: the puts, deletes, increments and blob releases of one atomic commit |
//! | `shared_commit.rs` | [`SharedCommit`] (one commit many produces wait for) and [`CommitSlot`] (a place reserved in the committer's queue) |
//! | `committer.rs` | the group-commit thread in named steps, [`CommitterHandle`], [`PendingCommit`], [`AfterCommit`] |
//! | `counters.rs` | the counter journal: stage, record, fold, recover |
//! | `segments.rs` | the append-only segment files that hold message payloads |
//! | `compaction.rs` | compaction's storage side: segment statistics, opaque copies of sets, moving a set's header to its copy |
//! | `frame.rs` | the self-describing frame every stored set is written in: magic, version, topic, offsets, lengths, CRCs |
//! | `scan.rs` | reading a segment's frame headers, bodies skipped |
//! | `verify.rs` | start-up: the index checked against the segments; refuses to open on damage |
//! | `mark.rs` | the high-water mark outside sled that notices an index gone back in time |
//! | `repair.rs` | [`repair`]: rebuilds topic logs and offsets from the segments (`tallyq repair`) |
//! | `disk.rs` | [`DiskMonitor`]: free space of the data dir's file system against `min_free_disk_bytes` |
//! | `private.rs` | owner-only modes: the umask, 0700 folders, tightening an existing data dir |
//! | `repo/` | repositories: typed reads on [`Store`] and writes on [`WriteSet`], domain values in and out |
//! | `error.rs` | [`StorageError`], each variant with its cause as `source()` |
//! | `failure.rs` | [`StoreHealth`]: a failed group commit fails the store until it is reopened; how failed writes are classified |
//! | `keys.rs` | the key layout: one leading byte per keyspace, big-endian integers |
//! | `records.rs` | the prost record types stored under those keys |
//!
//! `keys` and `records` are private: the rest of the crate reads and writes
//! through the repositories, which hand back domain types.

#[cfg(test)]
mod commit_tests;
mod committer;
mod compaction;
mod counters;
mod disk;
mod error;
mod failure;
mod frame;
mod keys;
mod mark;
mod private;
mod records;
mod repair;
mod repo;
mod scan;
mod segments;
mod shared_commit;
mod store;
mod verify;
mod write_set;

pub use committer::{AfterCommit, CommitterHandle, PendingCommit};
pub use compaction::SegmentStats;
pub use disk::{approx_bytes, DiskMonitor, DiskSpace, MinFreeDisk};
pub use error::{StorageError, StorageResult};
pub use failure::StoreHealth;
pub use frame::SetIdentity;
pub use private::{create_private_dir, restrict_umask};
pub use repair::{repair, RepairReport};
pub use repo::SetLocation;
pub use shared_commit::{CommitSlot, SharedCommit};
pub use store::Store;
pub use write_set::WriteSet;
