//! The disk watermark: how much space is left on the data dir's file system,
//! and whether it is below the server's `min_free_disk_bytes`.
//!
//! [`DiskMonitor`] keeps the last reading in atomics, so the check every
//! produce and create makes ([`DiskMonitor::low`]) is one atomic load. The
//! reading is refreshed with `fstatvfs` of the data dir (one system call, no
//! allocation, no path lookup: the directory is opened once) by the group
//! committer before each group and by the server's scheduler once a second,
//! so a refusal ends by itself within about a second of space returning.
//!
//! "Free" is what an unprivileged process may still use (`f_bavail`): ext4
//! keeps a reserve for root that a broker must not count on.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Deserialize;

use crate::sync::MutexExt;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The `min_free_disk_bytes` setting: a number of bytes, or a share of the
/// file system's size ("5%", "2.5%"). Zero (either form) turns the watermark
/// off. Only valid values can be built: a percentage is below 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawMinFreeDisk")]
pub struct MinFreeDisk(Minimum);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Minimum {
    Bytes(u64),
    /// Hundredths of a percent of the file system's size (500 = 5%).
    BasisPoints(u32),
}

/// What a config file may hold: an integer of bytes or a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawMinFreeDisk {
    Bytes(u64),
    Text(String),
}

impl TryFrom<RawMinFreeDisk> for MinFreeDisk {
    type Error = String;

    fn try_from(raw: RawMinFreeDisk) -> Result<Self, String> {
        match raw {
            RawMinFreeDisk::Bytes(bytes) => Ok(MinFreeDisk::bytes(bytes)),
            RawMinFreeDisk::Text(text) => text.parse(),
        }
    }
}

impl MinFreeDisk {
    /// The default of the SPEC: 1 GiB.
    pub const DEFAULT: MinFreeDisk = MinFreeDisk(Minimum::Bytes(GIB));

    /// A fixed number of bytes.
    pub const fn bytes(bytes: u64) -> MinFreeDisk {
        MinFreeDisk(Minimum::Bytes(bytes))
    }

    /// A share of the file system's size, in percent (at least 0, below 100,
    /// at most two decimals count).
    pub fn percent(percent: f64) -> Result<MinFreeDisk, String> {
        if !percent.is_finite() || !(0.0..100.0).contains(&percent) {
            return Err(format!(
                "min_free_disk_bytes: a percentage must be at least 0% and below 100%, not {percent}%"
            ));
        }
        Ok(MinFreeDisk(Minimum::BasisPoints(
            (percent * 100.0).round() as u32
        )))
    }

    /// The minimum in bytes on a file system of `total` bytes.
    pub fn resolve(self, total: u64) -> u64 {
        match self.0 {
            Minimum::Bytes(bytes) => bytes,
            Minimum::BasisPoints(bp) => (u128::from(total) * u128::from(bp) / 10_000) as u64,
        }
    }
}

impl Default for MinFreeDisk {
    fn default() -> Self {
        MinFreeDisk::DEFAULT
    }
}

impl std::str::FromStr for MinFreeDisk {
    type Err = String;

    /// `1073741824` (bytes) or `5%`.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            let percent: f64 = percent.trim().parse().map_err(|_| {
                format!("min_free_disk_bytes: '{text}' is not a percentage like '5%'")
            })?;
            return MinFreeDisk::percent(percent);
        }
        text.parse().map(MinFreeDisk::bytes).map_err(|_| {
            format!("min_free_disk_bytes: '{text}' is neither a number of bytes nor a percentage like '5%'")
        })
    }
}

impl std::fmt::Display for MinFreeDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Minimum::Bytes(bytes) => write!(f, "{}", approx_bytes(bytes)),
            Minimum::BasisPoints(bp) if bp % 100 == 0 => write!(f, "{}%", bp / 100),
            Minimum::BasisPoints(bp) => write!(f, "{}%", f64::from(bp) / 100.0),
        }
    }
}

/// One reading of the data dir's file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes still usable (`f_bavail`).
    pub free_bytes: u64,
    /// Size of the file system.
    pub total_bytes: u64,
    /// The watermark in bytes (the setting resolved against the size).
    pub minimum_bytes: u64,
}

impl DiskSpace {
    /// Below the watermark.
    pub fn is_low(&self) -> bool {
        self.free_bytes < self.minimum_bytes
    }
}

/// Watches the free space of the data dir's file system. Shared by the
/// store, the committer and the broker.
pub struct DiskMonitor {
    /// The data dir, opened once so that a reading needs no path.
    dir: File,
    /// For log lines.
    path: PathBuf,
    setting: Mutex<MinFreeDisk>,
    free: AtomicU64,
    total: AtomicU64,
    minimum: AtomicU64,
    low: AtomicBool,
    /// The last reading failed (logged once, until one succeeds).
    failing: AtomicBool,
}

impl DiskMonitor {
    /// Watches the file system holding `data_dir`, with the watermark off
    /// until [`DiskMonitor::set_minimum`]. A file system that cannot be read
    /// counts as having room (logged).
    pub fn open(data_dir: &Path) -> std::io::Result<DiskMonitor> {
        let monitor = DiskMonitor {
            dir: File::open(data_dir)?,
            path: data_dir.to_path_buf(),
            setting: Mutex::new(MinFreeDisk::bytes(0)),
            free: AtomicU64::new(u64::MAX),
            total: AtomicU64::new(0),
            minimum: AtomicU64::new(0),
            low: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        };
        monitor.refresh();
        Ok(monitor)
    }

    /// Sets the watermark (the server's `min_free_disk_bytes`) and takes a
    /// reading against it at once.
    pub fn set_minimum(&self, setting: MinFreeDisk) {
        *self.setting.lock_unpoisoned() = setting;
        self.refresh();
    }

    /// Reads the file system now (`fstatvfs`) and returns the reading. A
    /// failed reading keeps the last one. Logs when the space falls below
    /// the watermark and when it is back above it.
    pub fn refresh(&self) -> DiskSpace {
        match rustix::fs::fstatvfs(&self.dir) {
            Ok(stat) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(path = %self.path.display(), "free disk space can be read again");
                }
                let total = stat.f_blocks.saturating_mul(stat.f_frsize);
                let free = stat.f_bavail.saturating_mul(stat.f_frsize);
                let minimum = self.setting.lock_unpoisoned().resolve(total);
                self.total.store(total, Ordering::Relaxed);
                self.minimum.store(minimum, Ordering::Relaxed);
                self.free.store(free, Ordering::Relaxed);
                self.note_low(free < minimum);
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(path = %self.path.display(), error = %e,
                        "cannot read the data dir's free disk space; keeping the last reading");
                }
            }
        }
        self.space()
    }

    /// The last reading.
    pub fn space(&self) -> DiskSpace {
        DiskSpace {
            free_bytes: self.free.load(Ordering::Relaxed),
            total_bytes: self.total.load(Ordering::Relaxed),
            minimum_bytes: self.minimum.load(Ordering::Relaxed),
        }
    }

    /// The last reading while it is below the watermark; `None` while there
    /// is room. One atomic load when there is room.
    pub fn low(&self) -> Option<DiskSpace> {
        if self.low.load(Ordering::Relaxed) {
            Some(self.space())
        } else {
            None
        }
    }

    /// Records whether the space is below the watermark, logging a change.
    fn note_low(&self, low: bool) {
        if self.low.swap(low, Ordering::Relaxed) == low {
            return;
        }
        let space = self.space();
        let (free, minimum) = (
            approx_bytes(space.free_bytes),
            approx_bytes(space.minimum_bytes),
        );
        if low {
            tracing::warn!(path = %self.path.display(), %free, %minimum,
                "free disk space is below min_free_disk_bytes: produce and creates are refused \
                 until space is freed");
        } else {
            tracing::info!(path = %self.path.display(), %free, %minimum,
                "free disk space is back above min_free_disk_bytes: produce and creates resume");
        }
    }
}

/// Bytes as a person reads them, rounded down to one decimal: "812 MiB",
/// "1.5 GiB", "512 bytes".
pub fn approx_bytes(bytes: u64) -> String {
    for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if bytes >= unit {
            let tenths = u128::from(bytes) * 10 / u128::from(unit);
            let (whole, tenth) = (tenths / 10, tenths % 10);
            return if tenth == 0 || whole >= 100 {
                format!("{whole} {name}")
            } else {
                format!("{whole}.{tenth} {name}")
            };
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_reads_bytes_and_percentages() {
        assert_eq!("1073741824".parse(), Ok(MinFreeDisk::DEFAULT));
        assert_eq!(" 5% ".parse::<MinFreeDisk>().unwrap().resolve(1000), 50);
        assert_eq!("2.5%".parse::<MinFreeDisk>().unwrap().resolve(1000), 25);
        assert_eq!("0".parse::<MinFreeDisk>().unwrap().resolve(1000), 0);
        assert!("100%".parse::<MinFreeDisk>().is_err());
        assert!("-1%".parse::<MinFreeDisk>().is_err());
        assert!("lots".parse::<MinFreeDisk>().is_err());
        assert!("1GiB".parse::<MinFreeDisk>().is_err());
        assert_eq!(MinFreeDisk::bytes(7).resolve(1), 7);
        assert_eq!("5%".parse::<MinFreeDisk>().unwrap().to_string(), "5%");
        assert_eq!("2.5%".parse::<MinFreeDisk>().unwrap().to_string(), "2.5%");
        assert_eq!(MinFreeDisk::DEFAULT.to_string(), "1 GiB");
    }

    #[test]
    fn sizes_read_as_a_person_says_them() {
        assert_eq!(approx_bytes(GIB), "1 GiB");
        assert_eq!(approx_bytes(812 * MIB + 300 * KIB), "812 MiB");
        assert_eq!(approx_bytes(GIB + GIB / 2), "1.5 GiB");
        // Rounded down: never more free than there is.
        assert_eq!(approx_bytes(GIB - 1), "1023 MiB");
        assert_eq!(approx_bytes(2 * KIB - 1), "1.9 KiB");
        assert_eq!(approx_bytes(512), "512 bytes");
    }

    #[test]
    fn the_monitor_reads_the_file_system_and_applies_the_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let monitor = DiskMonitor::open(dir.path()).unwrap();
        let space = monitor.space();
        assert!(space.total_bytes > 0 && space.free_bytes <= space.total_bytes);
        assert_eq!(monitor.low(), None, "the watermark is off until set");

        monitor.set_minimum(MinFreeDisk::bytes(u64::MAX));
        let low = monitor.low().expect("no disk has u64::MAX bytes free");
        assert_eq!(low.minimum_bytes, u64::MAX);

        monitor.set_minimum("0%".parse().unwrap());
        assert_eq!(monitor.low(), None, "space is back at the next reading");
    }
}
