//! Failed authentications by source address, counted per clock minute, so a
//! key-guessing client is refused cheaply for the rest of the minute.

use std::net::IpAddr;
use std::time::Duration;

use dashmap::DashMap;

const MINUTE_MS: i64 = 60_000;

/// Each address's failures in the minute it last failed.
pub(super) struct FailedAuths {
    per_minute: u32,
    counts: DashMap<IpAddr, (i64, u32)>,
}

impl FailedAuths {
    /// At most `per_minute` failures an address, per minute.
    pub(super) fn new(per_minute: u32) -> Self {
        FailedAuths {
            per_minute,
            counts: DashMap::new(),
        }
    }

    /// The configured limit.
    pub(super) fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// How long `address` must wait at `now_ms`, when it has used up this
    /// minute's failures.
    pub(super) fn blocked_for(&self, address: IpAddr, now_ms: i64) -> Option<Duration> {
        let minute = now_ms.div_euclid(MINUTE_MS);
        let (at, count) = *self.counts.get(&address)?;
        (at == minute && count >= self.per_minute)
            .then(|| Duration::from_millis(((minute + 1) * MINUTE_MS - now_ms).max(1) as u64))
    }

    /// Counts one failure of `address` at `now_ms`.
    pub(super) fn note(&self, address: IpAddr, now_ms: i64) {
        let minute = now_ms.div_euclid(MINUTE_MS);
        let mut entry = self.counts.entry(address).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
    }

    /// Forgets the counters of earlier minutes (bounded memory).
    pub(super) fn sweep(&self, now_ms: i64) {
        let minute = now_ms.div_euclid(MINUTE_MS);
        self.counts.retain(|_, (at, _)| *at == minute);
    }
}
