//! Fetch: the long-poll that waits for something to deliver, and the wait
//! it shares with the Consume stream.
//!
//! A Fetch counts as a stream against the tenant's concurrent-stream quota
//! while it waits (SPEC §4: unary long-polls count as streams), and the
//! bytes it hands out come from the tenant's delivery pool like a Consume
//! stream's: with the pool used up, it waits for credit within its
//! `max_wait` and then answers with nothing.
//!
//! What a Fetch delivers stays counted in the pool after it answers: the
//! answer may sit unread in the HTTP/2 send path for as long as the client
//! keeps the connection, so the bytes are held per message
//! ([`crate::broker::subscription::Holds`]) until the message is acked,
//! nacked, given back, claimed again or dead-lettered, its lock ends, or the
//! subscription goes. A tenant whose Fetch answers are never read or acked
//! thus holds at most its plan's `max_outstanding_delivery_bytes`, however
//! many connections it opens. An at-most-once subscription's deliveries
//! have no lock and nothing to ack: their bytes go back when the Fetch
//! answers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Delivered, PassBytes};
use crate::broker::subscription::Subscription;
use crate::broker::topic::SetCache;
use crate::broker::Broker;
use crate::clock::Clock;
use crate::error::Result;
use crate::quota::admission::DeliveryPool;
use crate::tenancy::TenantKey;

impl Broker {
    /// Long-poll: waits up to `max_wait` (real time) for up to `max_messages`.
    pub async fn fetch(
        &self,
        key: &TenantKey,
        topic_name: &str,
        subscription: &str,
        max_messages: usize,
        max_wait: Duration,
    ) -> Result<Vec<Delivered>> {
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
                    self.hold_delivered(&sub, &pool, &pass.delivered).await;
                    return Ok(pass.delivered);
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
                        return Ok(Vec::new());
                    }
                    continue;
                }
            }
            // Credit is what is missing: wait for the tenant's other streams.
            let more = pool.wait_for_more(pool_rx, reserved, limit);
            if tokio::time::timeout_at(give_up, more).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }
}

impl Broker {
    /// Keeps the bytes of `delivered` (counted in `pool` by the pass) held
    /// until each message stops being outstanding; gives back at once what
    /// has no lock to wait for: an at-most-once delivery, or one whose
    /// pending state already moved on (acked, nacked or its lock ended
    /// before the answer was ready).
    async fn hold_delivered(
        &self,
        sub: &Subscription,
        pool: &Arc<DeliveryPool>,
        delivered: &[Delivered],
    ) {
        let lock_ms = sub.settings().lock_seconds as i64 * 1000;
        let state = sub.state.lock().await;
        let now = self.clock.now_ms();
        let mut unheld = 0;
        for d in delivered {
            let deadline = d.claimed_ms + lock_ms;
            let locked = lock_ms > 0
                && deadline > now
                && !sub.is_deleted()
                && state
                    .pending
                    .get(&d.offset)
                    .is_some_and(|p| p.attempts == d.attempt && p.deadline_ms == deadline);
            if locked {
                state.holds.hold(pool, d.offset, d.bytes, deadline);
            } else {
                unheld += d.bytes;
            }
        }
        drop(state);
        pool.release(unheld);
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
