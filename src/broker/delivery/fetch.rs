//! Fetch: the long-poll that waits for something to deliver, and the wait
//! it shares with the Consume stream.
//!
//! A Fetch counts as a stream against the tenant's concurrent-stream quota
//! while it waits (SPEC §4: unary long-polls count as streams), and the
//! bytes it hands out come from the tenant's delivery pool like a Consume
//! stream's: with the pool used up, it waits for credit within its
//! `max_wait` and then answers with nothing.
//!
//! What a Fetch delivers stays counted in the pool after it answers, owned
//! twice: per message by its hold ([`crate::broker::subscription::Holds`])
//! until the message is acked, nacked, given back, claimed again or
//! dead-lettered, its lock ends, or the subscription goes; and by the answer
//! itself ([`AnswerCredit`], returned with the deliveries), which the edge
//! keeps alive until the answer has left the broker (the answer may sit
//! unread in the HTTP/2 send path for as long as the client keeps the
//! connection, also after the lock ended). A byte goes back when both are
//! done. A tenant whose Fetch answers are never read or acked thus holds at
//! most its plan's `max_outstanding_delivery_bytes`, however many
//! connections it opens and whatever the locks do. An at-most-once
//! subscription's deliveries have no lock and nothing to ack: the answer
//! alone keeps their bytes.

use std::time::Duration;

use tokio::sync::watch;

use super::{Delivered, PassBytes};
use crate::broker::subscription::{AnswerCredit, Subscription, ToHold};
use crate::broker::topic::SetCache;
use crate::broker::Broker;
use crate::clock::Clock;
use crate::error::Result;
use crate::tenancy::TenantKey;

impl Broker {
    /// Long-poll: waits up to `max_wait` (real time) for up to `max_messages`.
    /// The answer's credit comes with it: keep it until the answer has left.
    pub async fn fetch(
        &self,
        key: &TenantKey,
        topic_name: &str,
        subscription: &str,
        max_messages: usize,
        max_wait: Duration,
    ) -> Result<Fetched> {
        self.check_consume(key, topic_name)?;
        let (topic, sub) = self.subscription(&key.tenant, topic_name, subscription)?;
        let plan = self.tenancy.plan_of(&key.tenant);
        let _slot = self.admission.open_stream(&key.tenant, &plan)?;
        let pool = self.admission.delivery_pool(&key.tenant);
        let give_up = tokio::time::Instant::now() + max_wait;
        loop {
            // A waiting long-poll keeps no decoded set from its last pass.
            let mut cache = SetCache::default();
            let topic_rx = topic.watch();
            let sub_rx = sub.watch();
            let status_rx = self.tenancy.watch_status();
            let pool_rx = pool.watch();
            self.tenancy.check_data_plane(&key.tenant)?;
            let limit = self
                .tenancy
                .plan_of(&key.tenant)
                .max_outstanding_delivery_bytes;
            let want = FETCH_MAX_BYTES.min(limit);
            let reserved = pool.reserve(want, limit);
            let mut held_back = reserved == 0;
            if !held_back {
                let bytes = PassBytes {
                    max: reserved,
                    // A message larger than the credit goes alone only when
                    // the pass got all it asks for: a full answer's worth, or
                    // the whole limit when that is smaller (nothing else of
                    // the tenant outstanding).
                    alone: reserved == want,
                };
                let pass = self
                    .deliver(&topic, &sub, max_messages, bytes, &mut cache)
                    .await;
                let pass = match pass {
                    Ok(pass) => pass,
                    Err(e) => {
                        pool.release(reserved);
                        return Err(e);
                    }
                };
                let used: u64 = pass.delivered.iter().map(|d| d.bytes).sum();
                pool.settle(reserved, used);
                if !pass.delivered.is_empty() {
                    let credit = AnswerCredit::new(pool.clone(), used);
                    self.hold_delivered(&sub, &credit, &pass.delivered).await;
                    return Ok(Fetched {
                        deliveries: pass.delivered,
                        credit: Some(credit),
                    });
                }
                held_back = pass.held_back;
                if !held_back {
                    let woke = wait_for_work(
                        topic_rx,
                        sub_rx,
                        status_rx,
                        self.clock.clone(),
                        pass.next_deadline,
                    );
                    if tokio::time::timeout_at(give_up, woke).await.is_err() {
                        return Ok(Fetched::default());
                    }
                    continue;
                }
            }
            // Credit is what is missing: wait for the tenant's other streams.
            let more = pool.wait_for_more(pool_rx, reserved, limit);
            if tokio::time::timeout_at(give_up, more).await.is_err() {
                return Ok(Fetched::default());
            }
        }
    }
}

/// A Fetch's answer: the deliveries and, when there are any, the credit
/// they keep counted while the answer is on its way out.
#[derive(Debug, Default)]
pub struct Fetched {
    /// What was delivered, in order.
    pub deliveries: Vec<Delivered>,
    /// The answer's side of the deliveries' credit (see the module doc).
    pub credit: Option<AnswerCredit>,
}

impl Broker {
    /// Holds the bytes of `delivered` (counted in the pool, owned by
    /// `credit`) until each message stops being outstanding, in one round
    /// of the holds' lock; what has no lock to wait for (an at-most-once
    /// delivery, or one whose pending state already moved on: acked, nacked
    /// or its lock ended before the answer was ready) is kept by the answer
    /// alone. Nothing is held once the subscription is deleted (the holds
    /// refuse, so a deletion racing this pass cannot leave a hold behind).
    async fn hold_delivered(
        &self,
        sub: &Subscription,
        credit: &AnswerCredit,
        delivered: &[Delivered],
    ) {
        let lock_ms = sub.settings().lock_seconds as i64 * 1000;
        if lock_ms == 0 {
            return;
        }
        let state = sub.state.lock().await;
        let now = self.clock.now_ms();
        let locked: Vec<ToHold> = delivered
            .iter()
            .filter_map(|d| {
                let deadline = d.claimed_ms + lock_ms;
                let pending = state.pending.get(&d.offset)?;
                (deadline > now && pending.attempts == d.attempt && pending.deadline_ms == deadline)
                    .then_some((d.offset, d.bytes, deadline))
            })
            .collect();
        state.holds.hold_many(credit, &locked);
    }
}

/// Most bytes one Fetch claims (a single larger message goes out alone):
/// below a stock client's 4 MiB response limit by more than a message of
/// plan `standard` (256 KiB) and its framing, so what a Fetch claims fits its
/// one response and is rarely handed back (see `api::pack`).
const FETCH_MAX_BYTES: u64 = 3 * 1024 * 1024 + 512 * 1024;

/// Resolves when new messages are durable, the subscription changed, or the
/// next pending deadline is reached.
pub(super) async fn wait_for_work(
    mut topic_rx: watch::Receiver<u64>,
    mut sub_rx: watch::Receiver<u64>,
    mut status_rx: watch::Receiver<u64>,
    clock: Clock,
    next_deadline: Option<i64>,
) {
    let deadline = async {
        match next_deadline {
            Some(at) => clock.wait_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = topic_rx.changed() => {}
        _ = sub_rx.changed() => {}
        _ = status_rx.changed() => {}
        _ = deadline => {}
    }
}
