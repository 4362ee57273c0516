//! Rate limiting: GCRA buckets (the `governor` crate) on the broker clock, the
//! per-tenant tables of them, and the delivery pacer built on them. A bucket
//! is rebuilt (full) when the plan's rate or burst changes.

use std::borrow::Borrow;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
// Looked up on every produce: foldhash, not SipHash.
use foldhash::fast::RandomState;

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
    rate: u32,
    burst: u32,
    limiter: Limiter,
    this_second: Mutex<(i64, u64)>,
}

impl Bucket {
    fn new(clock: &Clock, rate: u32, burst: u32) -> Bucket {
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

    fn used_this_second(&self, clock: &Clock) -> u64 {
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
    bucket: Bucket,
    debt: Mutex<u64>,
}

impl Pacer {
    fn new(clock: &Clock, rate: u32) -> Pacer {
        Pacer {
            bucket: Bucket::new(clock, rate, rate),
            debt: Mutex::new(0),
        }
    }

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
        // Everything at once when it fits (the usual case: one bucket check
        // per pass, not one per message); otherwise as many as fit.
        if wanted as u64 <= self.bucket.burst as u64
            && self.bucket.take(clock, wanted as u64).is_ok()
        {
            return Ok(wanted);
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

/// One rate bucket per tenant (produce, or control-plane calls).
#[derive(Default)]
pub(super) struct TenantBuckets(DashMap<String, Arc<Bucket>, RandomState>);

impl TenantBuckets {
    /// The tenant's bucket at `rate` and `burst`.
    pub(super) fn get(&self, clock: &Clock, tenant: &str, rate: u32, burst: u32) -> Arc<Bucket> {
        fitting(
            &self.0,
            tenant,
            |b| b.rate == rate && b.burst == burst,
            || Bucket::new(clock, rate, burst),
        )
    }

    /// Cells the tenant's bucket admitted in the current clock second.
    pub(super) fn used_this_second(&self, clock: &Clock, tenant: &str) -> u64 {
        self.0
            .get(tenant)
            .map(|b| b.used_this_second(clock))
            .unwrap_or(0)
    }
}

/// One delivery pacer per topic.
#[derive(Default)]
pub(super) struct TopicPacers(DashMap<u64, Arc<Pacer>, RandomState>);

impl TopicPacers {
    /// The topic's pacer at `rate`.
    pub(super) fn get(&self, clock: &Clock, topic_id: u64, rate: u32) -> Arc<Pacer> {
        fitting(
            &self.0,
            &topic_id,
            |p| p.bucket.rate == rate,
            || Pacer::new(clock, rate),
        )
    }
}

/// The entry of `key` when it `fits` the plan in force, else a fresh one from
/// `build` put in its place.
fn fitting<K, Q, V>(
    map: &DashMap<K, Arc<V>, RandomState>,
    key: &Q,
    fits: impl Fn(&V) -> bool,
    build: impl FnOnce() -> V,
) -> Arc<V>
where
    K: Borrow<Q> + Eq + Hash,
    Q: ToOwned<Owned = K> + Eq + Hash + ?Sized,
{
    if let Some(entry) = map.get(key) {
        if fits(&entry) {
            return entry.clone();
        }
    }
    let fresh = Arc::new(build());
    map.insert(key.to_owned(), fresh.clone());
    fresh
}
