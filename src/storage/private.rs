//! Private by default: the data dir holds every tenant's payloads and the
//! credentials, so no other local user may read it, whatever the umask the
//! broker was started with.
//!
//! Three layers, each covering what the one before cannot:
//! - [`restrict_umask`] at the very start of `tallyq serve` and
//!   [`crate::run`]: every file and folder created afterwards, sled's own
//!   included (its log, snapshots and blob files, created while serving), is
//!   owner-only;
//! - [`create_private_dir`]: the folders tallyq creates itself are 0700
//!   even in a process that never called `restrict_umask` (tools, tests);
//! - [`tighten`] when the store opens: an existing data dir (from a version
//!   that did not do this, or copied in by hand) loses every group and other
//!   permission bit on its folders and files.

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// The umask of a broker: nothing for group or others.
const PRIVATE_UMASK: u32 = 0o077;
/// The permission bits nobody but the owner may have.
const NOT_OWNER: u32 = 0o077;

/// Sets the process umask to 0o077, so that every file is created 0600 and
/// every folder 0700 at most. Process-wide; call it before anything is
/// created.
pub fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(PRIVATE_UMASK));
}

/// Creates `dir` and any missing parents with mode 0700 (an existing folder
/// is left as it is; [`tighten`] handles the data dir's).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// What [`tighten`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tightened {
    /// Folders and files whose group or other bits were cleared.
    pub changed: u64,
    /// Those whose mode could not be read or changed (each logged).
    pub failed: u64,
}

/// Clears the group and other permission bits of `data_dir` and of every
/// folder and file under it (0755 becomes 0700, 0644 becomes 0600; the
/// owner's bits are kept). Symbolic links are neither followed nor changed.
/// A path that cannot be changed (e.g. a volume root owned by another user)
/// is logged and skipped: the broker still starts.
pub fn tighten(data_dir: &Path) -> Tightened {
    let mut done = Tightened::default();
    match std::fs::metadata(data_dir) {
        Ok(meta) => tighten_one(data_dir, meta.permissions().mode(), &mut done),
        Err(e) => note_failure(data_dir, &e, &mut done),
    }
    tighten_below(data_dir, &mut done);
    if done.changed > 0 {
        tracing::info!(data_dir = %data_dir.display(), paths = done.changed,
            "made the data dir private: removed group and other permissions");
    }
    done
}

/// [`tighten`] for everything inside `dir`.
fn tighten_below(dir: &Path, done: &mut Tightened) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return note_failure(dir, &e, done),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                note_failure(dir, &e, done);
                continue;
            }
        };
        let path = entry.path();
        // symlink_metadata: a link is not followed out of the data dir.
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                note_failure(&path, &e, done);
                continue;
            }
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        tighten_one(&path, meta.permissions().mode(), done);
        if meta.is_dir() {
            tighten_below(&path, done);
        }
    }
}

/// Clears the bits of one path when it has any.
fn tighten_one(path: &Path, mode: u32, done: &mut Tightened) {
    if mode & NOT_OWNER == 0 {
        return;
    }
    let private = std::fs::Permissions::from_mode(mode & !NOT_OWNER & 0o7777);
    match std::fs::set_permissions(path, private) {
        Ok(()) => done.changed += 1,
        Err(e) => note_failure(path, &e, done),
    }
}

fn note_failure(path: &Path, error: &std::io::Error, done: &mut Tightened) {
    done.failed += 1;
    tracing::warn!(path = %path.display(), %error,
        "cannot make this part of the data dir private (owner-only)");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn tighten_clears_group_and_other_bits_below_the_data_dir_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let nested = data.join("db").join("blobs");
        std::fs::create_dir_all(&nested).unwrap();
        let file = data.join("db").join("conf");
        let read_only = data.join("note");
        let outside = root.path().join("outside");
        std::fs::write(&file, b"x").unwrap();
        std::fs::write(&read_only, b"x").unwrap();
        std::fs::write(&outside, b"x").unwrap();
        for dir in [&data, &data.join("db"), &nested] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o444)).unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();

        let done = tighten(&data);
        assert_eq!(
            done,
            Tightened {
                changed: 5,
                failed: 0
            }
        );
        for dir in [&data, &data.join("db"), &nested] {
            assert_eq!(mode(dir), 0o700, "{}", dir.display());
        }
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&read_only), 0o400, "the owner's bits are kept");
        assert_eq!(mode(&outside), 0o644, "a link is not followed");
        assert_eq!(tighten(&data), Tightened::default(), "nothing left to do");
    }

    #[test]
    fn private_dirs_are_0700_whatever_the_umask() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        create_private_dir(&dir).unwrap();
    }
}
