//! The high-water mark: a small file outside sled (`index.mark` in the data
//! dir) that says how many group commits the index has made, so an index
//! that went back in time is noticed.
//!
//! Why: sled recovers a damaged log (flipped bytes, a truncated `db/db`) by
//! stopping at the first record that fails its checksum, i.e. by silently
//! forgetting every later commit: acknowledged messages, acks, usage. The
//! segments keep their frames, so offsets alone could be saved from reuse
//! (`verify.rs` takes each topic's next offset above every frame), but the
//! rest of what was lost would go unnoticed.
//!
//! How: every group commit writes its sequence number into the index (one
//! tiny row in the same atomic batch, [`keys::commit_seq`](super::keys)) and,
//! once the group is durable, into this file. At start-up an index whose
//! sequence is below the mark's lost commits: the store refuses to open and
//! points to `tallyq repair`. The file is written in place (two slots,
//! alternately, each with its own CRC, so a torn write spoils at most the
//! older one) after every group, and `fdatasync`ed about once a second: the
//! mark is never ahead of the durable index (it is written after the
//! index's flush), and after a power loss it may lag by up to a second,
//! which can only hide a loss, never invent one.
//!
//! | state at start-up | meaning | what happens |
//! | --- | --- | --- |
//! | no file, index sequence 0 | a new (or pre-mark) data dir | the file is created |
//! | no file, index sequence > 0 | the mark was deleted | refuse, repair |
//! | both slots fail their CRC | the mark is damaged | refuse, repair |
//! | index sequence < mark | the index lost commits | refuse, repair |

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The file's name in the data dir.
pub const FILE: &str = "index.mark";
/// The magic at the start of each slot.
const MAGIC: [u8; 8] = *b"TQMARK01";
/// Bytes of one slot: magic, sequence, CRC.
const SLOT_BYTES: usize = 20;
/// Where the two slots start (different disk sectors).
const SLOTS: [u64; 2] = [0, 4096];
/// How often the file is made durable.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// What the mark said when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkState {
    /// There is no mark file.
    Missing,
    /// Neither slot is readable.
    Damaged,
    /// The highest commit sequence recorded.
    At(u64),
}

/// The open mark file, written by the committer.
pub struct HighWater {
    file: File,
    path: PathBuf,
    /// The slot written next.
    next_slot: usize,
    /// Whether the last sequence written is synced.
    synced: bool,
    last_sync: Instant,
}

/// Reads the mark under `data_dir`.
pub fn read(data_dir: &Path) -> std::io::Result<MarkState> {
    let path = data_dir.join(FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(MarkState::Missing),
        Err(e) => return Err(e),
    };
    let best = SLOTS.iter().filter_map(|at| read_slot(&file, *at)).max();
    Ok(best.map_or(MarkState::Damaged, MarkState::At))
}

fn read_slot(file: &File, at: u64) -> Option<u64> {
    let mut slot = [0u8; SLOT_BYTES];
    file.read_exact_at(&mut slot, at).ok()?;
    let crc = u32::from_le_bytes(slot[16..20].try_into().ok()?);
    if slot[..8] != MAGIC || crc32fast::hash(&slot[..16]) != crc {
        return None;
    }
    Some(u64::from_le_bytes(slot[8..16].try_into().ok()?))
}

impl HighWater {
    /// Opens (or creates, mode 0600) the mark under `data_dir` and records
    /// `seq` in it, durably: the index's sequence at open, already checked
    /// against what the file said.
    pub fn open(data_dir: &Path, seq: u64) -> std::io::Result<HighWater> {
        let path = data_dir.join(FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        let mut mark = HighWater {
            file,
            path,
            next_slot: 0,
            synced: true,
            last_sync: Instant::now(),
        };
        // Both slots, so a stale higher one cannot outvote this one.
        mark.write_slot(seq)?;
        mark.write_slot(seq)?;
        mark.sync()?;
        if let Ok(dir) = File::open(data_dir) {
            dir.sync_all()?;
        }
        Ok(mark)
    }

    /// Records that the index durably holds commit `seq` (no sync; see
    /// [`HighWater::sync_if_due`]).
    pub fn record(&mut self, seq: u64) -> std::io::Result<()> {
        self.write_slot(seq)
    }

    /// Makes the last recorded sequence durable when a second has passed.
    pub fn sync_if_due(&mut self) -> std::io::Result<()> {
        if !self.synced && self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Makes the last recorded sequence durable now.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()?;
        self.synced = true;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// The file, for log lines.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_slot(&mut self, seq: u64) -> std::io::Result<()> {
        let mut slot = [0u8; SLOT_BYTES];
        slot[..8].copy_from_slice(&MAGIC);
        slot[8..16].copy_from_slice(&seq.to_le_bytes());
        let crc = crc32fast::hash(&slot[..16]);
        slot[16..20].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all_at(&slot, SLOTS[self.next_slot])?;
        self.next_slot = 1 - self.next_slot;
        self.synced = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_keeps_the_highest_readable_slot() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), MarkState::Missing);
        let mut mark = HighWater::open(dir.path(), 5).unwrap();
        assert_eq!(read(dir.path()).unwrap(), MarkState::At(5));
        mark.record(6).unwrap();
        mark.record(7).unwrap();
        mark.sync().unwrap();
        assert_eq!(read(dir.path()).unwrap(), MarkState::At(7));
        // A torn (damaged) newest slot: the older one still answers.
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let newest = SLOTS[1 - mark.next_slot] as usize;
        bytes[newest + 9] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(dir.path()).unwrap(), MarkState::At(6));
        let older = SLOTS[mark.next_slot] as usize;
        bytes[older + 9] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(dir.path()).unwrap(), MarkState::Damaged);
    }
}
