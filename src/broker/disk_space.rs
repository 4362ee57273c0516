//! The disk watermark as the broker applies it: new data (produce, produce
//! streams, topic and subscription creates) is refused while the data dir's
//! file system is below `min_free_disk_bytes`; everything that lets
//! consumers drain and operators free space (consume, fetch, ack, nack,
//! seek, deletes, billing reads, settlement) goes on in the space left
//! below the watermark. The reading comes from
//! [`crate::storage::DiskMonitor`], refreshed before each group commit and
//! once a second by [`Broker::refresh_disk_space`].

use std::time::Duration;

use super::Broker;
use crate::error::{Error, Result};
use crate::observability::name;
use crate::storage::{approx_bytes, DiskSpace};

/// How long a refused client is asked to wait: the monitor's refresh period,
/// after which a freed disk is seen.
pub const DISK_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The kind of `tallyq_quota_refusals_total` a disk refusal counts as.
const REFUSAL_KIND: &str = "disk_space";

impl Broker {
    /// Refuses new data while the disk is below the watermark: a
    /// `RESOURCE_EXHAUSTED` naming the free space and the minimum, with a
    /// retry hint, counted as a `disk_space` refusal of `tenant`. Changes nothing else;
    /// one atomic load while there is room.
    pub(crate) fn refuse_when_disk_low(&self, tenant: &str) -> Result<()> {
        match self.store.disk().low() {
            None => Ok(()),
            Some(space) => {
                self.count_refusal(REFUSAL_KIND, tenant);
                Err(disk_low_error(space))
            }
        }
    }

    /// Reads the free disk space now and sets the `tallyq_disk_free_bytes`
    /// and `tallyq_disk_low` gauges (the scheduler runs this once a second).
    pub fn refresh_disk_space(&self) {
        let space = self.store.disk().refresh();
        self.metrics
            .gauge(name::DISK_FREE_BYTES, &[], space.free_bytes as f64);
        self.metrics
            .gauge(name::DISK_LOW, &[], if space.is_low() { 1.0 } else { 0.0 });
    }
}

/// The refusal a client sees, in words a person understands.
fn disk_low_error(space: DiskSpace) -> Error {
    Error::ResourceExhausted {
        message: format!(
            "the broker's disk is nearly full: {} free, below the {} minimum; produce and \
             creates resume when space is freed",
            approx_bytes(space.free_bytes),
            approx_bytes(space.minimum_bytes)
        ),
        retry_after: Some(DISK_RETRY_AFTER),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_free_space_the_minimum_and_when_to_retry() {
        let err = disk_low_error(DiskSpace {
            free_bytes: 812 * 1024 * 1024 + 1,
            total_bytes: 100 << 30,
            minimum_bytes: 1 << 30,
        });
        let Error::ResourceExhausted {
            message,
            retry_after,
        } = err
        else {
            panic!("not RESOURCE_EXHAUSTED: {err:?}");
        };
        assert_eq!(
            message,
            "the broker's disk is nearly full: 812 MiB free, below the 1 GiB minimum; \
             produce and creates resume when space is freed"
        );
        assert_eq!(retry_after, Some(Duration::from_secs(1)));
    }
}
