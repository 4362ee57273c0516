//! Admission: the accumulated limits checked before any work is queued, so
//! one tenant's flood is turned away cheaply and never sits in a queue that
//! other tenants share.
//!
//! Rates use GCRA (the `governor` crate) driven by the broker clock, so the
//! manual test clock moves them too. Every limiter is per tenant (produce,
//! control plane) or per topic (consume pacing) and is rebuilt when the
//! tenant's plan changes.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;

use super::rate::Bucket;
use super::Plan;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::observability::{name, Metrics};

pub use super::rate::{GovernorClock, Pacer, RATE_QUOTAS_ON};
pub use super::streams::StreamPermit;

/// The accumulated limits of every tenant.
pub struct Admission {
    clock: Clock,
    produce: DashMap<String, Arc<Bucket>>,
    control: DashMap<String, Arc<Bucket>>,
    pacers: DashMap<u64, Arc<Pacer>>,
    streams: DashMap<String, Arc<AtomicU32>>,
    failed_auth: DashMap<IpAddr, (i64, u32)>,
    failed_auth_per_minute: u32,
    metrics: Option<Arc<Metrics>>,
}

fn retry_message(what: String, wait: Duration) -> Error {
    if wait == Duration::MAX {
        return Error::exhausted(what);
    }
    Error::ResourceExhausted {
        message: format!("{what}; retry in {} ms", wait.as_millis().max(1)),
        retry_after: Some(wait.max(Duration::from_millis(1))),
    }
}

impl Admission {
    /// Limits on `clock`; `failed_auth_per_minute` is the server setting.
    pub fn new(clock: Clock, failed_auth_per_minute: u32) -> Self {
        Admission {
            clock,
            produce: DashMap::new(),
            control: DashMap::new(),
            pacers: DashMap::new(),
            streams: DashMap::new(),
            failed_auth: DashMap::new(),
            failed_auth_per_minute,
            metrics: None,
        }
    }

    /// Counts refusals by kind in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn refused(&self, kind: &'static str) {
        if let Some(m) = &self.metrics {
            m.count_labeled(name::QUOTA_REFUSALS, &[("kind", kind.into())], 1);
        }
    }

    fn bucket(
        &self,
        map: &DashMap<String, Arc<Bucket>>,
        tenant: &str,
        rate: u32,
        burst: u32,
    ) -> Arc<Bucket> {
        if let Some(bucket) = map.get(tenant) {
            if bucket.rate == rate && bucket.burst == burst {
                return bucket.clone();
            }
        }
        let bucket = Arc::new(Bucket::new(&self.clock, rate, burst));
        map.insert(tenant.to_string(), bucket.clone());
        bucket
    }

    /// Admits `units` of produce for a tenant, or refuses with the time to wait.
    pub fn admit_produce(&self, tenant: &str, plan: &Plan, units: u64) -> Result<()> {
        if !RATE_QUOTAS_ON {
            return Ok(());
        }
        let bucket = self.bucket(
            &self.produce,
            tenant,
            plan.produce_units_per_second,
            plan.produce_burst_units,
        );
        bucket.take(&self.clock, units).map_err(|wait| {
            self.refused("produce_rate");
            retry_message(
                format!(
                    "produce rate limit: the plan allows {} units/s with bursts of {} units \
                     (this batch is {units} units)",
                    plan.produce_units_per_second, plan.produce_burst_units
                ),
                wait,
            )
        })
    }

    /// Admits one control-plane call for a tenant.
    pub fn admit_control(&self, tenant: &str, plan: &Plan) -> Result<()> {
        let rate = plan.control_calls_per_second;
        let bucket = self.bucket(&self.control, tenant, rate, rate);
        bucket.take(&self.clock, 1).map_err(|wait| {
            self.refused("control_rate");
            retry_message(
                format!("control-plane rate limit: the plan allows {rate} calls/s"),
                wait,
            )
        })
    }

    /// The delivery pacer of a topic at its plan's rate.
    pub fn pacer(&self, topic_id: u64, plan: &Plan) -> Arc<Pacer> {
        let rate = plan.consume_units_per_second_per_topic;
        if let Some(pacer) = self.pacers.get(&topic_id) {
            if pacer.bucket.rate == rate {
                return pacer.clone();
            }
        }
        let pacer = Arc::new(Pacer {
            bucket: Bucket::new(&self.clock, rate, rate),
            debt: Mutex::new(0),
        });
        self.pacers.insert(topic_id, pacer.clone());
        pacer
    }

    /// Opens a stream slot for a tenant, or refuses when all are in use.
    pub fn open_stream(&self, tenant: &str, plan: &Plan) -> Result<StreamPermit> {
        let open = self
            .streams
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(AtomicU32::new(0)))
            .clone();
        let limit = plan.max_concurrent_streams;
        let admitted = open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.refused("streams");
            return Err(Error::exhausted(format!(
                "concurrent stream limit: the plan allows {limit} open streams per tenant; \
                 close one first"
            )));
        }
        Ok(StreamPermit { open })
    }

    /// Streams a tenant has open.
    pub fn open_streams(&self, tenant: &str) -> u64 {
        self.streams
            .get(tenant)
            .map(|n| n.load(Ordering::SeqCst) as u64)
            .unwrap_or(0)
    }

    /// Produce units admitted in the current clock second.
    pub fn produce_used(&self, tenant: &str) -> u64 {
        self.produce
            .get(tenant)
            .map(|b| b.used_this_second(&self.clock))
            .unwrap_or(0)
    }

    /// Control-plane calls admitted in the current clock second.
    pub fn control_used(&self, tenant: &str) -> u64 {
        self.control
            .get(tenant)
            .map(|b| b.used_this_second(&self.clock))
            .unwrap_or(0)
    }

    /// Refuses an address that failed authentication too often this minute.
    pub fn check_address(&self, address: Option<IpAddr>) -> Result<()> {
        let Some(address) = address else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let minute = now.div_euclid(60_000);
        if let Some(entry) = self.failed_auth.get(&address) {
            let (at, count) = *entry;
            if at == minute && count >= self.failed_auth_per_minute {
                self.refused("failed_auth");
                let wait = Duration::from_millis(((minute + 1) * 60_000 - now).max(1) as u64);
                return Err(retry_message(
                    format!(
                        "too many failed authentications from this address: at most {} per minute",
                        self.failed_auth_per_minute
                    ),
                    wait,
                ));
            }
        }
        Ok(())
    }

    /// Counts a failed authentication from `address`.
    pub fn note_failed_auth(&self, address: Option<IpAddr>) {
        let Some(address) = address else {
            return;
        };
        let minute = self.clock.now_ms().div_euclid(60_000);
        let mut entry = self.failed_auth.entry(address).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
    }

    /// Forgets old failed-authentication counters (bounded memory).
    pub fn sweep(&self) {
        let minute = self.clock.now_ms().div_euclid(60_000);
        self.failed_auth.retain(|_, (at, _)| *at == minute);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rate: u32, burst: u32) -> Plan {
        Plan {
            produce_units_per_second: rate,
            produce_burst_units: burst,
            ..Plan::default()
        }
    }

    #[test]
    fn produce_rate_refills_with_the_clock() {
        let clock = Clock::manual(1_000_000);
        let admission = Admission::new(clock.clone(), 20);
        let plan = plan(10, 20);
        assert!(admission.admit_produce("a", &plan, 20).is_ok());
        let err = admission.admit_produce("a", &plan, 1).unwrap_err();
        let Error::ResourceExhausted { retry_after, .. } = err else {
            panic!("wrong error")
        };
        assert_eq!(retry_after, Some(Duration::from_millis(100)));
        clock.advance(Duration::from_millis(100));
        assert!(admission.admit_produce("a", &plan, 1).is_ok());
        assert!(
            admission.admit_produce("b", &plan, 20).is_ok(),
            "tenants are separate"
        );
        assert!(
            admission.admit_produce("a", &plan, 21).is_err(),
            "over the burst"
        );
    }

    #[test]
    fn pacer_lets_through_the_rate_and_carries_debt() {
        let clock = Clock::manual(0);
        let admission = Admission::new(clock.clone(), 20);
        let plan = Plan {
            consume_units_per_second_per_topic: 10,
            ..Plan::default()
        };
        let pacer = admission.pacer(1, &plan);
        assert_eq!(pacer.reserve(&clock, 100), Ok(10));
        pacer.settle(10, 10);
        assert!(pacer.reserve(&clock, 1).is_err());
        clock.advance(Duration::from_millis(500));
        assert_eq!(pacer.reserve(&clock, 100), Ok(5));
        pacer.settle(1, 4); // one message of 4 units: 3 units of debt
        clock.advance(Duration::from_millis(400));
        assert_eq!(pacer.reserve(&clock, 100), Ok(1), "debt paid first");
    }

    #[test]
    fn streams_and_failed_auth_are_bounded() {
        let clock = Clock::manual(0);
        let admission = Admission::new(clock.clone(), 2);
        let plan = Plan {
            max_concurrent_streams: 1,
            ..Plan::default()
        };
        let permit = admission.open_stream("a", &plan).unwrap();
        assert!(admission.open_stream("a", &plan).is_err());
        drop(permit);
        assert!(admission.open_stream("a", &plan).is_ok());

        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        admission.note_failed_auth(Some(ip));
        assert!(admission.check_address(Some(ip)).is_ok());
        admission.note_failed_auth(Some(ip));
        assert!(admission.check_address(Some(ip)).is_err());
        clock.advance(Duration::from_secs(60));
        assert!(admission.check_address(Some(ip)).is_ok());
    }
}
