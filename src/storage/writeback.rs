//! Starting a segment's writeback as soon as its bytes are written.
//!
//! A group commit `fdatasync`s the segment files its writes appended to
//! (`segments.rs`, step 3 of `committer.rs`). Left to itself, the kernel
//! starts writing those pages only inside that `fdatasync`, so every group
//! waits for the transfer of all its bytes, one group after another, on the
//! committer thread. Asking for the writeback right after each append
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which starts the transfer and
//! does not wait for it) lets the transfer of a write overlap the group commit
//! still running and the writers still sending; the committer's `fdatasync`
//! then mostly waits for the journal and the device's cache.
//!
//! This is a hint, never a durability step: `sync_file_range` makes nothing
//! durable (no metadata, no device cache), and the committer's `fdatasync`
//! still runs before any reference to the bytes is applied. A failed hint is
//! therefore ignored; the `fdatasync` reports the error that matters.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Starts writing `len` bytes of `file` at `offset` to the device, without
/// waiting for it. Best effort (see the module doc).
pub(super) fn start(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    if len == 0 {
        return;
    }
    // SAFETY: `file` is an open file for the whole call, so its descriptor is
    // valid; sync_file_range takes no pointers and only reads its arguments.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(),
            "cannot start a segment's writeback (the commit's fdatasync still runs)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn started_writeback_leaves_the_bytes_readable() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        file.write_all_at(b"hello segment", 0).unwrap();
        start(&file, 0, 13);
        start(&file, 0, 0);
        let mut back = [0u8; 13];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(&back, b"hello segment");
        file.sync_data().unwrap();
    }
}
