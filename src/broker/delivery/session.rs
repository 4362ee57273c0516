//! The Consume stream's session: flow-controlled pushes, the credit they
//! use, and acks and nacks that free it.
//!
//! Credit is exact in messages and in bytes: a push never takes the stream's
//! outstanding bytes above its window, except that a single message larger
//! than the whole window goes out alone, when nothing else is outstanding on
//! the stream (SPEC §2). The bytes also come out of the tenant's
//! [`DeliveryPool`] (the plan's `max_outstanding_delivery_bytes` over all of
//! its streams and fetches): credit the pool does not have waits until
//! another stream of the tenant acks, nacks or closes.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::watch;

use super::fetch::wait_for_work;
use super::{Delivered, PassBytes};
use crate::broker::subscription::Subscription;
use crate::broker::topic::{SetCache, Topic};
use crate::broker::Broker;
use crate::error::Result;
use crate::quota::admission::DeliveryPool;
use crate::tenancy::TenantKey;

/// A Consume stream's flow-control window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowWindow {
    /// Most delivered, not yet acked or nacked messages.
    pub max_messages: u32,
    /// Most bytes of them (a single larger message goes out alone); 0: the
    /// default, [`DEFAULT_WINDOW_BYTES`] or the plan's limit if lower. A
    /// window above the plan's `max_outstanding_delivery_bytes` is refused.
    pub max_bytes: u64,
}

impl FlowWindow {
    /// The window a client asked for, with a default for zero messages and a
    /// cap on messages (bytes are checked against the plan on open).
    pub fn new(max_messages: u32, max_bytes: u64) -> Self {
        FlowWindow {
            max_messages: if max_messages == 0 {
                100
            } else {
                max_messages.min(10_000)
            },
            max_bytes,
        }
    }
}

/// The byte window of a stream that does not set one: one stock client's
/// response limit (4 MiB), so a default window is one or two pushes.
pub const DEFAULT_WINDOW_BYTES: u64 = 4 * 1024 * 1024;

/// Most messages one push carries.
const PUSH_BATCH: usize = 1000;

/// Most acks of one stream queued for commit and not yet known durable: one
/// more first waits for the oldest.
const MAX_ACKS_IN_FLIGHT: usize = 64;

/// A stream ack's commit: resolves once it is durable.
type AckCommit = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// A delivery pass queued for commit: resolves to its deliveries once its
/// record is durable.
type PassCommit = Pin<Box<dyn Future<Output = Result<Vec<Delivered>>> + Send>>;

/// One consumer on a Consume stream: pushes what the window allows, tracks
/// what is outstanding on this stream, and frees credit on ack and nack.
/// Memory held for a slow consumer is bounded by its window.
pub struct ConsumerSession {
    broker: Arc<Broker>,
    key: Arc<TenantKey>,
    topic: Arc<Topic>,
    sub: Arc<Subscription>,
    window: FlowWindow,
    /// The byte window in force (the default resolved against the plan).
    max_bytes: u64,
    pool: Arc<DeliveryPool>,
    pool_rx: watch::Receiver<u64>,
    outstanding: HashMap<u64, u64>,
    outstanding_bytes: u64,
    cache: SetCache,
    topic_rx: watch::Receiver<u64>,
    sub_rx: watch::Receiver<u64>,
    status_rx: watch::Receiver<u64>,
    next_deadline: Option<i64>,
    /// What held the last poll back, if anything.
    held: Held,
    /// The pool credit the last poll had (what must be exceeded to help).
    credit_seen: u64,
    /// Acks queued for commit, oldest first (they become durable in order).
    acks_in_flight: VecDeque<AckCommit>,
    /// Delivery passes queued for commit, oldest first.
    in_commit: VecDeque<PassCommit>,
}

/// Why a poll delivered nothing though something was deliverable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// Nothing held it back (maybe nothing was deliverable).
    No,
    /// The next message does not fit the stream's window: only an ack, a
    /// nack or a new window (all through the stream) can help.
    Window,
    /// The tenant's pool had too little credit: another stream's release helps.
    Pool,
}

impl ConsumerSession {
    /// Opens a session on a subscription the key may consume.
    pub fn open(
        broker: Arc<Broker>,
        key: Arc<TenantKey>,
        topic: &str,
        subscription: &str,
        window: FlowWindow,
    ) -> Result<Self> {
        broker.check_consume(&key, topic)?;
        let max_bytes = broker.window_bytes(&key.tenant, window)?;
        let (topic, sub) = broker.subscription(&key.tenant, topic, subscription)?;
        let topic_rx = topic.watch();
        let sub_rx = sub.watch();
        let status_rx = broker.tenancy.watch_status();
        let pool = broker.admission.delivery_pool(&key.tenant);
        let pool_rx = pool.watch();
        Ok(ConsumerSession {
            broker,
            key,
            topic,
            sub,
            window,
            max_bytes,
            pool,
            pool_rx,
            outstanding: HashMap::new(),
            outstanding_bytes: 0,
            cache: SetCache::default(),
            topic_rx,
            sub_rx,
            status_rx,
            next_deadline: None,
            held: Held::No,
            credit_seen: 0,
            acks_in_flight: VecDeque::new(),
            in_commit: VecDeque::new(),
        })
    }

    /// Messages the window allows now (0 while its bytes are used up).
    fn credit(&self) -> usize {
        if self.outstanding_bytes >= self.max_bytes {
            return 0;
        }
        (self.window.max_messages as usize).saturating_sub(self.outstanding.len())
    }

    /// Claims what is available within the window (possibly nothing) and
    /// queues its record for commit; true when it claimed or changed
    /// anything (then polling again may claim more). The deliveries go out
    /// once their record is durable: [`ConsumerSession::durable_now`] and
    /// [`ConsumerSession::next_durable`] hand them over, in claim order.
    /// Claimed deliveries count against the window from the claim on.
    pub async fn poll(&mut self) -> Result<bool> {
        self.status_rx.borrow_and_update();
        self.broker.tenancy.check_data_plane(&self.key.tenant)?;
        self.topic_rx.borrow_and_update();
        self.sub_rx.borrow_and_update();
        self.pool_rx.borrow_and_update();
        let credit = self.credit().min(PUSH_BATCH);
        if credit == 0 {
            return Ok(false);
        }
        let window_left = self.max_bytes - self.outstanding_bytes;
        let limit = self
            .broker
            .tenancy
            .plan_of(&self.key.tenant)
            .max_outstanding_delivery_bytes;
        let reserved = self.pool.reserve(window_left, limit);
        self.credit_seen = reserved;
        // A message larger than the whole window goes out alone; otherwise
        // the pass stays within the credit both the window and the pool give.
        let alone = self.outstanding.is_empty() && reserved == window_left;
        if reserved == 0 && !alone {
            self.held = Held::Pool;
            self.cache = SetCache::default();
            return Ok(false);
        }
        let bytes = PassBytes {
            max: reserved,
            alone,
        };
        let queued = self
            .broker
            .deliver_queued(&self.topic, &self.sub, credit, bytes, &mut self.cache)
            .await;
        let queued = match queued {
            Ok(queued) => queued,
            Err(e) => {
                self.pool.release(reserved);
                return Err(e);
            }
        };
        let pass = &queued.pass;
        let used: u64 = pass.delivered.iter().map(|d| d.bytes).sum();
        self.pool.settle(reserved, used);
        self.held = match (pass.held_back, reserved < window_left) {
            (false, _) => Held::No,
            (true, true) => Held::Pool,
            (true, false) => Held::Window,
        };
        self.next_deadline = pass.next_deadline;
        for d in &pass.delivered {
            if let Some(old) = self.outstanding.insert(d.offset, d.bytes) {
                // Redelivered to this stream while still counted: count it once.
                self.outstanding_bytes -= old;
                self.pool.release(old);
            }
            self.outstanding_bytes += d.bytes;
        }
        if self.held != Held::No || self.credit() == 0 {
            // A stalled stream keeps no decoded set: what it holds is its
            // outstanding deliveries, within its credit.
            self.cache = SetCache::default();
        }
        if !queued.records() {
            return Ok(false);
        }
        let broker = self.broker.clone();
        let tenant = self.key.tenant.clone();
        self.in_commit.push_back(Box::pin(async move {
            Ok(queued.durable(&broker, &tenant).await?.delivered)
        }));
        Ok(true)
    }

    /// The deliveries of the oldest queued pass, once its record is durable
    /// (its commit's error if that failed: the stream then ends); never
    /// while no pass is queued. Cancel-safe: a wait given up keeps the pass
    /// queued.
    pub async fn next_durable(&mut self) -> Result<Vec<Delivered>> {
        let Some(pass) = self.in_commit.front_mut() else {
            return std::future::pending().await;
        };
        let result = pass.as_mut().await;
        self.in_commit.pop_front();
        result
    }

    /// The deliveries of the oldest queued pass if its record is durable
    /// already, without waiting; `None` when it is not (or none is queued).
    pub fn durable_now(&mut self) -> Option<Result<Vec<Delivered>>> {
        let pass = self.in_commit.front_mut()?;
        let mut cx = Context::from_waker(Waker::noop());
        match pass.as_mut().poll(&mut cx) {
            Poll::Ready(result) => {
                self.in_commit.pop_front();
                Some(result)
            }
            Poll::Pending => None,
        }
    }

    /// Waits until the oldest queued pass or the oldest queued ack is
    /// durable: the pass's deliveries (`Some`), or `None` for an ack; a
    /// commit's error if it failed (the stream then ends). Never resolves
    /// while nothing is queued. Cancel-safe.
    pub async fn next_commit(&mut self) -> Result<Option<Vec<Delivered>>> {
        std::future::poll_fn(|cx| {
            if let Some(pass) = self.in_commit.front_mut() {
                if let Poll::Ready(result) = pass.as_mut().poll(cx) {
                    self.in_commit.pop_front();
                    return Poll::Ready(result.map(Some));
                }
            }
            if let Some(ack) = self.acks_in_flight.front_mut() {
                if let Poll::Ready(result) = ack.as_mut().poll(cx) {
                    self.acks_in_flight.pop_front();
                    return Poll::Ready(result.map(|()| None));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Whether passes are queued for commit and not yet handed over.
    pub fn has_queued_passes(&self) -> bool {
        !self.in_commit.is_empty()
    }

    /// A future that resolves when polling again may deliver something. It
    /// never resolves while the window is full (acks and flow changes arrive
    /// through the session itself); while the tenant's pool is empty it
    /// waits for another stream of the tenant to release credit.
    pub fn ready(&self) -> impl Future<Output = ()> + Send + 'static {
        let has_credit = self.credit() > 0 && self.held != Held::Window;
        let held = self.held;
        let topic_rx = self.topic_rx.clone();
        let sub_rx = self.sub_rx.clone();
        let mut status_rx = self.status_rx.clone();
        let pool_rx = self.pool_rx.clone();
        let pool = self.pool.clone();
        let credit_seen = self.credit_seen;
        let limit = self
            .broker
            .tenancy
            .plan_of(&self.key.tenant)
            .max_outstanding_delivery_bytes;
        let clock = self.broker.clock.clone();
        let deadline = self.next_deadline;
        async move {
            if !has_credit {
                // Only the client (acks, flow) or a status change can help now.
                let _ = status_rx.changed().await;
                return;
            }
            if held == Held::Pool {
                // Due messages wait for credit: a deadline is no reason to wake.
                tokio::select! {
                    _ = pool.wait_for_more(pool_rx, credit_seen, limit) => {}
                    _ = status_rx.changed() => {}
                }
                return;
            }
            wait_for_work(topic_rx, sub_rx, status_rx, clock, deadline).await
        }
    }

    fn release(&mut self, offsets: &[u64]) {
        let mut freed = 0;
        for offset in offsets {
            if let Some(bytes) = self.outstanding.remove(offset) {
                self.outstanding_bytes -= bytes;
                freed += bytes;
            }
        }
        self.pool.release(freed);
    }

    /// Acks on the stream: ends redelivery and frees credit. The ack is
    /// applied and queued for commit; the session does not wait for the
    /// commit here (a stream ack has no answer), but through
    /// [`ConsumerSession::ack_durable`], so delivering goes on meanwhile. A
    /// delivery made after it is committed after it: it reaches the client
    /// only once the ack is durable too.
    pub async fn ack(&mut self, offsets: &[u64]) -> Result<u32> {
        self.release(offsets);
        if self.acks_in_flight.len() >= MAX_ACKS_IN_FLIGHT {
            self.ack_durable().await?;
        }
        let (acked, commit) = self
            .broker
            .queue_ack(&self.key.tenant, &self.sub, offsets)
            .await?;
        if let Some(commit) = commit {
            self.acks_in_flight
                .push_back(Box::pin(async move { Ok(commit.wait().await?) }));
        }
        Ok(acked)
    }

    /// Resolves when the oldest ack queued on the stream is durable, with
    /// its commit's error if it failed (the stream then ends); never while
    /// none is queued. Cancel-safe: a wait given up keeps the ack queued.
    pub async fn ack_durable(&mut self) -> Result<()> {
        let Some(commit) = self.acks_in_flight.front_mut() else {
            return std::future::pending().await;
        };
        let result = commit.as_mut().await;
        self.acks_in_flight.pop_front();
        result
    }

    /// Nacks on the stream: schedules redelivery and frees credit.
    pub async fn nack(&mut self, offsets: &[u64], delay: Duration) -> Result<u32> {
        self.release(offsets);
        self.broker.nack_offsets(&self.sub, offsets, delay).await
    }

    /// Changes the window; a byte window above the plan's limit is refused
    /// and the old window stays.
    pub fn set_window(&mut self, window: FlowWindow) -> Result<()> {
        self.max_bytes = self.broker.window_bytes(&self.key.tenant, window)?;
        self.window = window;
        Ok(())
    }
}

impl Drop for ConsumerSession {
    /// A closed stream gives its outstanding bytes back to the tenant's pool.
    fn drop(&mut self) {
        self.pool.release(self.outstanding_bytes);
    }
}

impl Broker {
    /// The byte window `window` asks for, checked against the tenant's plan
    /// (INVALID_ARGUMENT naming the limit when above it; the default is cut
    /// to the limit).
    fn window_bytes(&self, tenant: &str, window: FlowWindow) -> Result<u64> {
        let plan = self.tenancy.plan_of(tenant);
        if window.max_bytes == 0 {
            return Ok(DEFAULT_WINDOW_BYTES.min(plan.max_outstanding_delivery_bytes));
        }
        self.admission.check_window(&plan, window.max_bytes)?;
        Ok(window.max_bytes)
    }
}
