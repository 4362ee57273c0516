//! Rate limiting: GCRA buckets (the `governor` crate) on the broker clock, and
//! the delivery pacer built on them.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::Clock as GovernorClockTrait;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::clock::Clock;
use crate::sync::MutexExt;

/// False only in the `bench-unmetered` measurement build, which admits every
/// produce and delivery without spending rate.
pub const RATE_QUOTAS_ON: bool = !cfg!(feature = "bench-unmetered");

/// The broker clock as governor sees it.
#[derive(Clone)]
pub struct GovernorClock(Clock);

impl GovernorClockTrait for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.monotonic()
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, GovernorClock, NoOpMiddleware<Duration>>;

/// A GCRA limiter with the rate and burst it was built for, and a counter of
/// what it admitted in the current clock second (for GetQuota).
pub(super) struct Bucket {
    pub(super) rate: u32,
    pub(super) burst: u32,
    limiter: Limiter,
    this_second: Mutex<(i64, u64)>,
}

impl Bucket {
    pub(super) fn new(clock: &Clock, rate: u32, burst: u32) -> Bucket {
        let quota = Quota::per_second(NonZeroU32::new(rate.max(1)).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN));
        Bucket {
            rate,
            burst,
            limiter: RateLimiter::direct_with_clock(quota, GovernorClock(clock.clone())),
            this_second: Mutex::new((0, 0)),
        }
    }

    /// Takes `n` cells, or says how long to wait for them.
    pub(super) fn take(&self, clock: &Clock, n: u64) -> std::result::Result<(), Duration> {
        let Some(cells) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
            return Ok(());
        };
        match self.limiter.check_n(cells) {
            Ok(Ok(())) => {
                self.count(clock, n);
                Ok(())
            }
            Ok(Err(not_until)) => Err(not_until.wait_time_from(GovernorClock(clock.clone()).now())),
            // More cells than the burst: it can never pass at once.
            Err(_) => Err(Duration::MAX),
        }
    }

    fn count(&self, clock: &Clock, n: u64) {
        let second = clock.now_ms().div_euclid(1000);
        let mut slot = self.this_second.lock_unpoisoned();
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += n;
    }

    pub(super) fn used_this_second(&self, clock: &Clock) -> u64 {
        let second = clock.now_ms().div_euclid(1000);
        let slot = self.this_second.lock_unpoisoned();
        if slot.0 == second {
            slot.1
        } else {
            0
        }
    }
}

/// Paces deliveries of one topic to its plan's rate: deliveries wait, they
/// never fail. A delivery of several units takes one cell per message up
/// front and the rest as debt that the next delivery pays first.
pub struct Pacer {
    pub(super) bucket: Bucket,
    pub(super) debt: Mutex<u64>,
}

impl Pacer {
    /// Reserves up to `wanted` messages' worth of cells; `Err` says how long to
    /// wait before anything may be delivered.
    pub fn reserve(&self, clock: &Clock, wanted: usize) -> std::result::Result<usize, Duration> {
        if wanted == 0 || !RATE_QUOTAS_ON {
            return Ok(wanted);
        }
        let mut debt = self.debt.lock_unpoisoned();
        while *debt > 0 {
            let chunk = (*debt).min(self.bucket.burst as u64);
            self.bucket.take(clock, chunk)?;
            *debt -= chunk;
        }
        let mut granted = 0;
        while granted < wanted {
            match self.bucket.take(clock, 1) {
                Ok(()) => granted += 1,
                Err(wait) if granted == 0 => return Err(wait),
                Err(_) => break,
            }
        }
        Ok(granted)
    }

    /// Records what a delivery really cost: `units` for `messages` reserved cells.
    pub fn settle(&self, messages: usize, units: u64) {
        if !RATE_QUOTAS_ON {
            return;
        }
        let extra = units.saturating_sub(messages as u64);
        if extra > 0 {
            *self.debt.lock_unpoisoned() += extra;
        }
    }

    /// Units delivered in the current clock second.
    pub fn used_this_second(&self, clock: &Clock) -> u64 {
        self.bucket.used_this_second(clock)
    }
}
