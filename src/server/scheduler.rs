//! The one scheduler for background work. Every job runs on its own timer in
//! its own task, through the same loop ([`sleep_or_shutdown`] between runs),
//! and every job ends when the server begins to shut down:
//!
//! | job | every | what |
//! | --- | --- | --- |
//! | retention | 1 s | the retention half of the [tick](super::tick): expiry, storage metering |
//! | sweeps | 60 s | failed-authentication counters of past minutes, dedup entries past their window |
//! | gauges | 2 s, and once at start | backlog, in-flight, retained bytes, storage, tenants |
//! | disk | 1 s, and once at start | free disk space against the watermark, its gauges |
//! | settlement | `settlement_interval_seconds` | the settlement half of the tick: settle, arrears |
//! | dead letters | 250 ms | messages past their last lock deadline move to their dead-letter topic |
//! | compaction | 1 s check, and once at start | a pass at start and every `compaction_interval_seconds`, every second while the disk is below the watermark |
//! | device usage | 60 s | per-device produce usage folded from the sets stored since the last fold (`broker/device_usage.rs`) |
//! | device journal | 1 s | per-device delivery usage journaled by delivery passes folded into the device counters (`broker/delivery/device_journal.rs`) |
//!
//! A new background job is one more [`Job`] variant: its period and its body.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::domain::Domain;
use super::tick::{Due, Ticker};
use crate::broker::compaction::CompactionPolicy;
use crate::broker::Broker;
use crate::quota::admission::Admission;

/// How often retention runs on the wall clock.
const RETENTION_INTERVAL: Duration = Duration::from_secs(1);
/// How often the dedup and failed-authentication sweeps run.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often the gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(2);
/// How often the free disk space is read (a refusal ends this soon after space returns).
const DISK_INTERVAL: Duration = Duration::from_secs(1);
/// How often due dead letters move (SPEC §2: within a second of the deadline).
const DEAD_LETTER_INTERVAL: Duration = Duration::from_millis(250);
/// How often the compaction job looks at the disk (it compacts under
/// pressure at once, otherwise every `compaction_interval_seconds`).
const COMPACTION_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often per-device produce usage is folded from the stored sets (reads
/// of per-device usage fold what is left first).
const DEVICE_FOLD_INTERVAL: Duration = Duration::from_secs(60);
/// How often the per-device delivery usage journal is folded (keeps it small).
const DEVICE_JOURNAL_INTERVAL: Duration = Duration::from_secs(1);

/// The background jobs.
#[derive(Clone, Copy, Debug)]
enum Job {
    Retention,
    Sweeps,
    Gauges,
    Settlement,
    Disk,
    DeadLetters,
    Compaction,
    DeviceUsage,
    DeviceJournal,
}

impl Job {
    const ALL: [Job; 9] = [
        Job::Retention,
        Job::Sweeps,
        Job::Gauges,
        Job::Settlement,
        Job::Disk,
        Job::DeadLetters,
        Job::Compaction,
        Job::DeviceUsage,
        Job::DeviceJournal,
    ];

    /// Gauges are filled at once, so the first scrape sees them, and
    /// compaction looks at the segments a previous run left; the other jobs
    /// first wait a period.
    fn runs_at_start(self) -> bool {
        matches!(self, Job::Gauges | Job::Disk | Job::Compaction)
    }
}

/// What the jobs work on.
struct Work {
    ticker: Arc<Ticker>,
    broker: Arc<Broker>,
    admission: Arc<Admission>,
    settlement_every: Duration,
    compaction: Compaction,
}

/// The compaction job's settings and when its last normal pass ran.
pub(super) struct Compaction {
    policy: CompactionPolicy,
    every: Duration,
    last_pass: std::sync::Mutex<std::time::Instant>,
}

impl Compaction {
    /// Compaction as configured: `compact_below_live_percent`, and a normal
    /// pass every `compaction_interval_seconds`.
    pub(super) fn new(below_live_percent: u8, interval_seconds: u64) -> Compaction {
        Compaction {
            policy: CompactionPolicy { below_live_percent },
            every: Duration::from_secs(interval_seconds),
            // The first check (at start) runs a pass.
            last_pass: std::sync::Mutex::new(
                std::time::Instant::now()
                    .checked_sub(Duration::from_secs(interval_seconds))
                    .unwrap_or_else(std::time::Instant::now),
            ),
        }
    }

    /// Runs a pass when one is due: at once while the disk is below the
    /// watermark, otherwise once the interval has passed since the last.
    async fn run(&self, broker: &Broker) {
        let pressure = broker.disk_is_low();
        let due = {
            let mut last = crate::sync::MutexExt::lock_unpoisoned(&self.last_pass);
            let due = pressure || last.elapsed() >= self.every;
            if due {
                *last = std::time::Instant::now();
            }
            due
        };
        if !due {
            return;
        }
        if let Err(e) = broker.compact(self.policy, pressure).await {
            tracing::error!(error = %e, "compaction failed");
        }
    }
}

impl Work {
    fn period(&self, job: Job) -> Duration {
        match job {
            Job::Retention => RETENTION_INTERVAL,
            Job::Sweeps => SWEEP_INTERVAL,
            Job::Gauges => GAUGE_INTERVAL,
            Job::Settlement => self.settlement_every,
            Job::Disk => DISK_INTERVAL,
            Job::DeadLetters => DEAD_LETTER_INTERVAL,
            Job::Compaction => COMPACTION_CHECK_INTERVAL,
            Job::DeviceUsage => DEVICE_FOLD_INTERVAL,
            Job::DeviceJournal => DEVICE_JOURNAL_INTERVAL,
        }
    }

    /// One run of `job`; failures are logged and the job runs again on time.
    async fn run(&self, job: Job) {
        match job {
            // The ticker logs each failed step itself.
            Job::Retention => {
                let _ = self.ticker.run(Due::Retention).await;
            }
            Job::Settlement => {
                let _ = self.ticker.run(Due::Settlement).await;
            }
            Job::Sweeps => {
                // Failed-authentication counters of past minutes are of no use.
                self.admission.sweep();
                if let Err(e) = self.broker.sweep_dedup().await {
                    tracing::error!(error = %e, "dedup sweep failed");
                }
            }
            Job::Gauges => self.broker.refresh_gauges().await,
            Job::Disk => self.broker.refresh_disk_space(),
            Job::DeadLetters => {
                if let Err(e) = self.broker.move_due_dead_letters().await {
                    tracing::error!(error = %e, "dead-letter pass failed");
                }
            }
            Job::Compaction => self.compaction.run(&self.broker).await,
            Job::DeviceUsage => {
                if let Err(e) = self.broker.fold_all_device_usage().await {
                    tracing::error!(error = %e, "per-device usage fold failed");
                }
            }
            Job::DeviceJournal => {
                if let Err(e) = self.broker.fold_all_device_journals().await {
                    tracing::error!(error = %e, "per-device usage journal fold failed");
                }
            }
        }
    }
}

/// The running background jobs.
pub(super) struct Scheduler {
    jobs: JoinSet<()>,
}

impl Scheduler {
    /// Starts every job; they run until `shutdown` turns true.
    pub(super) fn start(
        domain: &Domain,
        settlement_every: Duration,
        compaction: Compaction,
        shutdown: watch::Receiver<bool>,
    ) -> Scheduler {
        let work = Arc::new(Work {
            ticker: domain.ticker.clone(),
            broker: domain.broker.clone(),
            admission: domain.admission.clone(),
            settlement_every,
            compaction,
        });
        let mut jobs = JoinSet::new();
        for job in Job::ALL {
            let work = work.clone();
            let mut shutdown = shutdown.clone();
            jobs.spawn(async move {
                if job.runs_at_start() {
                    work.run(job).await;
                }
                while !sleep_or_shutdown(work.period(job), &mut shutdown).await {
                    work.run(job).await;
                }
            });
        }
        Scheduler { jobs }
    }

    /// Waits for every job to end (after shutdown was signalled, a job ends
    /// once its current run is done).
    pub(super) async fn stopped(mut self) {
        while self.jobs.join_next().await.is_some() {}
    }
}

/// Sleeps for `period`, or less if shutdown begins; true when the server is
/// shutting down (or the shutdown sender is gone).
pub(super) async fn sleep_or_shutdown(
    period: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => {}
        _ = shutdown.wait_for(|stop| *stop) => return true,
    }
    *shutdown.borrow()
}
