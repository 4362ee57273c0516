//! [`StoreHealth`]: whether the store still takes writes, and why not.
//!
//! A group commit that fails leaves sled failed (sled 0.34 refuses every later
//! write of that `Db` after an I/O error, even once space is back) and may
//! leave sled's in-memory tree, and the broker's in-memory state above it,
//! ahead of the disk. Retrying on that store could acknowledge a write on top
//! of a state the disk does not have. So the committer *fails* the store at
//! its first failed group ([`StoreHealth::fail`]): every later commit fails at
//! once with [`StorageError::Failed`] and nothing more reaches sled.
//!
//! Recovery is by reopening, never by retrying: whoever owns the store (the
//! server) watches [`StoreHealth::failed`], stops serving the domain built on
//! it, drops it (sled's `Db` with it), waits until the disk takes writes again
//! and opens the store anew, which reloads everything from disk. Dropping and
//! reopening sled 0.34 in the same process after a real ENOSPC works: the
//! test below provokes one on a small tmpfs and checks what the reopened store
//! holds.
//!
//! How a failed write is reported (SPEC §2):
//!
//! | where the group failed | the writers get | meaning |
//! | --- | --- | --- |
//! | syncing a segment, or sled refused the batch | [`StorageError::NotApplied`] | nothing reached sled: retry |
//! | sled's flush or the sync of its log (after the batch was applied) | [`StorageError::OutcomeUnknown`] | it may be durable: retry with the same dedup_id |
//! | any later commit of a failed store | [`StorageError::Failed`] | nothing reached sled: retry |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

use super::StorageError;

/// Whether the store takes writes. Cheap to clone; every clone sees the same
/// state. Failing is for good: only reopening the store gives a healthy one.
#[derive(Clone)]
pub struct StoreHealth {
    inner: Arc<Inner>,
}

struct Inner {
    /// The data directory, for the log line.
    data_dir: PathBuf,
    /// The first failure, once there is one.
    failure: watch::Sender<Option<StorageError>>,
}

impl StoreHealth {
    /// A healthy store's health.
    pub(super) fn new(data_dir: &Path) -> Self {
        StoreHealth {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                failure: watch::channel(None).0,
            }),
        }
    }

    /// Fails the store with `cause` (the first cause is kept; later ones are
    /// only logged by whoever saw them) and logs it with the data directory.
    pub(super) fn fail(&self, cause: &StorageError) {
        let first = self.inner.failure.send_if_modified(|failure| {
            if failure.is_some() {
                return false;
            }
            *failure = Some(cause.clone());
            true
        });
        if first {
            tracing::error!(error = %cause, data_dir = %self.inner.data_dir.display(),
                "the store failed: it takes no more writes until it is reopened");
        }
    }

    /// Why the store failed, if it did.
    pub fn failure(&self) -> Option<StorageError> {
        self.inner.failure.borrow().clone()
    }

    /// True once the store has failed.
    pub fn is_failed(&self) -> bool {
        self.inner.failure.borrow().is_some()
    }

    /// Resolves once the store has failed, with the cause.
    pub async fn failed(&self) -> StorageError {
        let mut failure = self.inner.failure.subscribe();
        if let Ok(failure) = failure.wait_for(Option::is_some).await {
            if let Some(cause) = failure.clone() {
                return cause;
            }
        }
        // Unreachable: the sender lives in `inner`, which `self` keeps alive.
        std::future::pending().await
    }

    /// The data directory of the store.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use crate::storage::records::{AuditRecord, CursorRecord};
    use crate::storage::{keys, StorageError, Store, WriteSet};

    /// A tmpfs of a few MiB, unmounted (lazily) on drop. A refused mount
    /// fails the test: this test must not skip silently.
    struct Tmpfs(tempfile::TempDir);

    impl Tmpfs {
        fn mount(bytes: u64) -> Tmpfs {
            let dir = tempfile::tempdir().unwrap();
            let output = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                .arg(dir.path())
                .output()
                .expect("run mount(8)");
            assert!(
                output.status.success(),
                "this test needs a small tmpfs (run as root): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            Tmpfs(dir)
        }

        /// Fills what is left with a ballast file, as another process would.
        fn fill(&self) -> std::path::PathBuf {
            let path = self.0.path().join("ballast");
            let _ = Command::new("dd")
                .arg("if=/dev/zero")
                .arg(format!("of={}", path.display()))
                .args(["bs=64K", "status=none"])
                .stderr(std::process::Stdio::null())
                .status();
            path
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
        }
    }

    /// A write set of cursor `i` and an audit entry padded to `pad` bytes.
    fn write(i: u64, pad: usize) -> WriteSet {
        let mut ws = WriteSet::new();
        let detail = "x".repeat(pad);
        ws.put(
            keys::audit(i),
            &AuditRecord {
                detail,
                ..Default::default()
            },
        );
        ws.put(
            keys::cursor(i),
            &CursorRecord {
                next_offset: i,
                dead_lettered: 0,
            },
        );
        ws
    }

    fn is_not_applied(e: &StorageError) -> bool {
        matches!(e, StorageError::NotApplied(_) | StorageError::Failed(_))
    }

    #[tokio::test]
    async fn a_real_enospc_fails_the_store_and_a_reopened_store_holds_exactly_what_committed() {
        let fs = Tmpfs::mount(8 << 20);
        let data = fs.0.path().join("data");
        let (store, committer) = Store::open(&data, 1 << 20).unwrap();
        for i in 0..20 {
            store.commit(write(i, 1000)).await.unwrap();
        }
        let ballast = fs.fill();

        // Commit until the full disk refuses; remember what was acknowledged.
        let mut acknowledged = 20;
        let mut failure = None;
        for i in 20..2000 {
            match store.commit(write(i, 20_000)).await {
                Ok(()) => acknowledged = i + 1,
                Err(e) => {
                    failure = Some((i, e));
                    break;
                }
            }
        }
        let (failed_at, error) = failure.expect("a full disk fails a commit");
        assert!(
            matches!(
                error,
                StorageError::NotApplied(_) | StorageError::OutcomeUnknown(_)
            ),
            "{error:?}"
        );
        assert!(store.health().is_failed());

        // Failed for good: with space back, writes still fail at once, and
        // as not applied (nothing reaches sled); reads still work.
        std::fs::remove_file(&ballast).unwrap();
        let later = store.commit(write(5000, 10)).await.unwrap_err();
        assert!(is_not_applied(&later), "{later:?}");
        assert!(store
            .get::<CursorRecord>(&keys::cursor(3))
            .unwrap()
            .is_some());

        // Drop everything, reopen in this process: what was acknowledged is
        // there, the failed fast write is not, and the store takes writes.
        drop(store);
        committer.join();
        let (store, committer) = Store::open(&data, 1 << 20).unwrap();
        assert!(!store.health().is_failed());
        for i in 0..acknowledged {
            assert!(
                store
                    .get::<CursorRecord>(&keys::cursor(i))
                    .unwrap()
                    .is_some(),
                "acknowledged write {i} is lost"
            );
        }
        if is_not_applied(&error) {
            assert!(store
                .get::<CursorRecord>(&keys::cursor(failed_at))
                .unwrap()
                .is_none());
        }
        assert!(store
            .get::<CursorRecord>(&keys::cursor(5000))
            .unwrap()
            .is_none());
        for i in 0..50 {
            store.commit(write(10_000 + i, 1000)).await.unwrap();
        }
        drop(store);
        committer.join();
        let (store, _committer) = Store::open(&data, 1 << 20).unwrap();
        assert!(store
            .get::<CursorRecord>(&keys::cursor(10_049))
            .unwrap()
            .is_some());
    }
}
