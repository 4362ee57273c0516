//! The tick: the work that the passing of time makes due, in the one order
//! it must run in — move due dead letters, expire messages, meter storage,
//! settle ended days, enforce arrears. The scheduler runs the first half every second and the
//! second half on the settlement timer; AdvanceClock runs all of it before it
//! answers, so a test that moves the manual clock sees the consequences at once.

use std::sync::Arc;

use crate::billing::Billing;
use crate::broker::Broker;
use crate::error::Error;

/// Which part of the tick to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Expire messages past their topic's expiry, then meter storage.
    Retention,
    /// Settle the days that have ended, then enforce arrears.
    Settlement,
    /// Both, retention first (what AdvanceClock needs).
    Everything,
}

impl Due {
    fn retention(self) -> bool {
        matches!(self, Due::Retention | Due::Everything)
    }

    fn settlement(self) -> bool {
        matches!(self, Due::Settlement | Due::Everything)
    }
}

/// Runs the tick over the broker and billing it was built with.
pub struct Ticker {
    broker: Arc<Broker>,
    billing: Arc<Billing>,
}

impl Ticker {
    /// A ticker over `broker` and `billing`.
    pub fn new(broker: Arc<Broker>, billing: Arc<Billing>) -> Self {
        Ticker { broker, billing }
    }

    /// Runs the steps `what` names, in order. A failed step is logged and the
    /// steps after it still run (each resumes on its next run anyway); the
    /// first failure is returned.
    pub async fn run(&self, what: Due) -> Result<(), Error> {
        let mut first_failure = None;
        if what.retention() {
            let moved = self.broker.move_due_dead_letters().await.map(|_| ());
            note(&mut first_failure, moved, "dead-letter pass failed");
            let expired = self.broker.expire_messages().await.map(|_| ());
            note(&mut first_failure, expired, "retention pass failed");
            let sampled = self.broker.sample_storage(false).await;
            note(&mut first_failure, sampled, "storage metering failed");
        }
        if what.settlement() {
            let settled = self.billing.settle_due().await;
            note(
                &mut first_failure,
                settled,
                "settlement failed; it resumes on the next run",
            );
            let enforced = self.billing.enforce_arrears().await;
            note(&mut first_failure, enforced, "arrears check failed");
        }
        first_failure.map_or(Ok(()), Err)
    }
}

/// Logs a failed step and keeps the first failure.
fn note(first: &mut Option<Error>, result: Result<(), Error>, what: &'static str) {
    if let Err(e) = result {
        tracing::error!(error = %e, "{what}");
        first.get_or_insert(e);
    }
}
