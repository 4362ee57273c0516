//! A real, size-limited file system for disk-full tests: a tmpfs mounted on a
//! fresh temp directory (root is needed; CI runs as root). Unmounted when the
//! guard drops, even when the test panics. A mount that is refused fails the
//! test with the reason: a disk-full test never skips silently.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// A mounted tmpfs of a fixed size; unmounted on drop.
pub struct SmallFs {
    dir: TempDir,
}

impl SmallFs {
    /// Mounts a tmpfs of `bytes` (rounded up to a page by the kernel).
    pub fn mount(bytes: u64) -> SmallFs {
        let dir = tempfile::tempdir().expect("a temp dir for the mount point");
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount(8)");
        assert!(
            output.status.success(),
            "disk-full tests need a small real file system: `mount -t tmpfs` of {} was refused \
             (run the tests as root): {}",
            dir.path().display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        SmallFs { dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Free bytes as the file system reports them (`df`'s available column).
    pub fn free_bytes(&self) -> u64 {
        let output = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.path())
            .output()
            .expect("run df(1)");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .nth(1)
            .and_then(|line| line.trim().parse().ok())
            .expect("df prints the available bytes")
    }

    /// Writes a ballast file of `bytes` (or as much as fits) from outside the
    /// broker, as another process filling the disk would; returns its path.
    pub fn fill(&self, name: &str, bytes: u64) -> PathBuf {
        let path = self.path().join(name);
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", path.display()))
            .args([
                "bs=64K",
                &format!("count={}", bytes.div_ceil(65536)),
                "status=none",
            ])
            .status();
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazy unmount: a broker still holding files open must not keep the
        // mount (and the test machine's memory) alive.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
