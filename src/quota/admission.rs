//! Admission: the accumulated limits checked before any work is queued, so
//! one tenant's flood is turned away cheaply and never sits in a queue that
//! other tenants share.
//!
//! [`Admission`] is the one door the api and broker call. It keeps the
//! counters — rate buckets and delivery pacers (`rate.rs`), open-stream slots
//! (`streams.rs`), failed authentications by address (`failed_auth.rs`) — and
//! turns their answers into errors with a retry time and a refusal metric.
//!
//! Rates use GCRA (the `governor` crate) driven by the broker clock, so the
//! manual test clock moves them too. Every limiter is per tenant (produce,
//! control plane) or per topic (consume pacing) and is rebuilt when the
//! tenant's plan changes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub use super::failed_auth::Claim;
use super::failed_auth::FailedAuths;
use super::rate::{TenantBuckets, TopicPacers};
use super::streams::StreamSlots;
use super::Plan;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::observability::Metrics;

pub use super::rate::{GovernorClock, Pacer, RATE_QUOTAS_ON};
pub use super::streams::StreamPermit;

/// The accumulated limits of every tenant.
pub struct Admission {
    clock: Clock,
    produce: TenantBuckets,
    control: TenantBuckets,
    pacers: TopicPacers,
    streams: StreamSlots,
    failed_auth: FailedAuths,
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
    /// Limits on `clock`; `failed_auth_per_minute` is the server setting
    /// (counted over a minute of wall time; see [`Self::with_failed_auth_window`]).
    pub fn new(clock: Clock, failed_auth_per_minute: u32) -> Self {
        Admission {
            clock,
            produce: TenantBuckets::default(),
            control: TenantBuckets::default(),
            pacers: TopicPacers::default(),
            streams: StreamSlots::default(),
            failed_auth: FailedAuths::new(failed_auth_per_minute, Duration::from_secs(60)),
            metrics: None,
        }
    }

    /// Counts refusals by kind in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The failed-authentication window: `limit` failures per `window` of
    /// wall time (the server settings `failed_auth_per_minute` and
    /// `failed_auth_window_seconds`).
    pub fn with_failed_auth_window(mut self, limit: u32, window: Duration) -> Self {
        self.failed_auth = FailedAuths::new(limit, window);
        self
    }

    /// Counts a refusal of `kind` for `tenant` (a bounded label, as every
    /// per-tenant series; "none" when no tenant is known).
    fn refused(&self, kind: &'static str, tenant: Option<&str>) {
        if let Some(m) = &self.metrics {
            m.count_refusal(kind, tenant);
        }
    }

    /// Admits `units` of produce for a tenant, or refuses with the time to wait.
    pub fn admit_produce(&self, tenant: &str, plan: &Plan, units: u64) -> Result<()> {
        if !RATE_QUOTAS_ON {
            return Ok(());
        }
        let bucket = self.produce.get(
            &self.clock,
            tenant,
            plan.produce_units_per_second,
            plan.produce_burst_units,
        );
        bucket.take(&self.clock, units).map_err(|wait| {
            self.refused("produce_rate", Some(tenant));
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
        let bucket = self.control.get(&self.clock, tenant, rate, rate);
        bucket.take(&self.clock, 1).map_err(|wait| {
            self.refused("control_rate", Some(tenant));
            retry_message(
                format!("control-plane rate limit: the plan allows {rate} calls/s"),
                wait,
            )
        })
    }

    /// The delivery pacer of a topic at its plan's rate.
    pub fn pacer(&self, topic_id: u64, plan: &Plan) -> Arc<Pacer> {
        self.pacers.get(
            &self.clock,
            topic_id,
            plan.consume_units_per_second_per_topic,
        )
    }

    /// Opens a stream slot for a tenant, or refuses when all are in use.
    pub fn open_stream(&self, tenant: &str, plan: &Plan) -> Result<StreamPermit> {
        let limit = plan.max_concurrent_streams;
        self.streams.open(tenant, limit).ok_or_else(|| {
            self.refused("streams", Some(tenant));
            Error::exhausted(format!(
                "concurrent stream limit: the plan allows {limit} open streams per tenant; \
                 close one first"
            ))
        })
    }

    /// Streams a tenant has open.
    pub fn open_streams(&self, tenant: &str) -> u64 {
        self.streams.count(tenant)
    }

    /// Produce units admitted in the current clock second.
    pub fn produce_used(&self, tenant: &str) -> u64 {
        self.produce.used_this_second(&self.clock, tenant)
    }

    /// Control-plane calls admitted in the current clock second.
    pub fn control_used(&self, tenant: &str) -> u64 {
        self.control.used_this_second(&self.clock, tenant)
    }

    /// Refuses a source address that failed authentication too often this
    /// window while claiming `claim`'s tenant (other claims from the same
    /// address are not affected).
    pub fn check_source(&self, address: Option<IpAddr>, claim: &Claim) -> Result<()> {
        let Some(address) = address else {
            return Ok(());
        };
        match self.failed_auth.blocked_for(address, claim) {
            Some(wait) => Err(self.failed_auth_refusal(claim, wait)),
            None => Ok(()),
        }
    }

    /// Counts a failed authentication from `address` claiming `claim`;
    /// refuses when it is over the limit (the first failures of a window
    /// stay plain wrong credentials).
    pub fn note_failed_auth(&self, address: Option<IpAddr>, claim: &Claim) -> Result<()> {
        let Some(address) = address else {
            return Ok(());
        };
        match self.failed_auth.note(address, claim) {
            Some(wait) => Err(self.failed_auth_refusal(claim, wait)),
            None => Ok(()),
        }
    }

    fn failed_auth_refusal(&self, claim: &Claim, wait: Duration) -> Error {
        self.refused("failed_auth", claim.tenant());
        retry_message(
            format!(
                "too many failed authentications from this address: at most {} per {} s",
                self.failed_auth.limit(),
                self.failed_auth.window().as_secs().max(1)
            ),
            wait,
        )
    }

    /// Forgets ended failed-authentication windows (bounded memory).
    pub fn sweep(&self) {
        self.failed_auth.sweep();
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
        let claim = Claim::Tenant("a".into());
        assert!(admission.note_failed_auth(Some(ip), &claim).is_ok());
        assert!(admission.note_failed_auth(Some(ip), &claim).is_ok());
        assert!(admission.check_source(Some(ip), &claim).is_ok());
        assert!(admission.note_failed_auth(Some(ip), &claim).is_err());
        assert!(admission.check_source(Some(ip), &claim).is_err());
        clock.advance(Duration::from_secs(3600));
        assert!(
            admission.check_source(Some(ip), &claim).is_err(),
            "the broker clock does not end the window"
        );
        assert!(admission.check_source(Some(ip), &Claim::NoTenant).is_ok());
    }

    #[test]
    fn a_plan_change_rebuilds_the_limiter_and_counters_are_per_second() {
        let clock = Clock::manual(0);
        let admission = Admission::new(clock.clone(), 20);
        assert!(admission.admit_produce("a", &plan(10, 20), 20).is_ok());
        assert_eq!(admission.produce_used("a"), 20);
        assert!(admission.admit_produce("a", &plan(10, 20), 1).is_err());
        assert!(
            admission.admit_produce("a", &plan(10, 30), 30).is_ok(),
            "a new burst starts a full bucket"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(admission.produce_used("a"), 0);
        assert_eq!(admission.open_streams("a"), 0);
        let _permit = admission.open_stream("a", &Plan::default()).unwrap();
        assert_eq!(admission.open_streams("a"), 1);
    }
}
