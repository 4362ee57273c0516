//! The Consume stream's session: flow-controlled pushes, the credit they
//! use, and acks and nacks that free it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::fetch::wait_for_work;
use super::Delivered;
use crate::broker::subscription::Subscription;
use crate::broker::topic::{SetCache, Topic};
use crate::broker::Broker;
use crate::error::Result;
use crate::tenancy::TenantKey;

/// A Consume stream's flow-control window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowWindow {
    /// Most delivered, not yet acked or nacked messages.
    pub max_messages: u32,
    /// Most bytes of them (one message may go over).
    pub max_bytes: u64,
}

impl FlowWindow {
    /// The window a client asked for, with defaults for zeros and caps.
    pub fn new(max_messages: u32, max_bytes: u64) -> Self {
        FlowWindow {
            max_messages: if max_messages == 0 {
                100
            } else {
                max_messages.min(10_000)
            },
            max_bytes: if max_bytes == 0 {
                DEFAULT_WINDOW_BYTES
            } else {
                max_bytes.min(256 * 1024 * 1024)
            },
        }
    }
}

/// The byte window of a stream that does not set one: one stock client's
/// response limit (4 MiB), so a default window is one or two pushes.
pub const DEFAULT_WINDOW_BYTES: u64 = 4 * 1024 * 1024;

/// Most messages one push carries.
const PUSH_BATCH: usize = 1000;

/// One consumer on a Consume stream: pushes what the window allows, tracks
/// what is outstanding on this stream, and frees credit on ack and nack.
/// Memory held for a slow consumer is bounded by its window.
pub struct ConsumerSession {
    broker: Arc<Broker>,
    key: Arc<TenantKey>,
    topic: Arc<Topic>,
    sub: Arc<Subscription>,
    window: FlowWindow,
    outstanding: HashMap<u64, u64>,
    outstanding_bytes: u64,
    cache: SetCache,
    topic_rx: watch::Receiver<u64>,
    sub_rx: watch::Receiver<u64>,
    status_rx: watch::Receiver<u64>,
    next_deadline: Option<i64>,
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
        let (topic, sub) = broker.subscription(&key.tenant, topic, subscription)?;
        let topic_rx = topic.watch();
        let sub_rx = sub.watch();
        let status_rx = broker.tenancy.watch_status();
        Ok(ConsumerSession {
            broker,
            key,
            topic,
            sub,
            window,
            outstanding: HashMap::new(),
            outstanding_bytes: 0,
            cache: SetCache::default(),
            topic_rx,
            sub_rx,
            status_rx,
            next_deadline: None,
        })
    }

    fn credit(&self) -> usize {
        if self.outstanding_bytes >= self.window.max_bytes {
            return 0;
        }
        (self.window.max_messages as usize).saturating_sub(self.outstanding.len())
    }

    /// Delivers what is available within the window (possibly nothing).
    pub async fn poll(&mut self) -> Result<Vec<Delivered>> {
        self.status_rx.borrow_and_update();
        self.broker.tenancy.check_data_plane(&self.key.tenant)?;
        self.topic_rx.borrow_and_update();
        self.sub_rx.borrow_and_update();
        let credit = self.credit().min(PUSH_BATCH);
        if credit == 0 {
            return Ok(Vec::new());
        }
        let bytes_left = self.window.max_bytes - self.outstanding_bytes;
        let pass = self
            .broker
            .deliver(&self.topic, &self.sub, credit, bytes_left, &mut self.cache)
            .await?;
        self.next_deadline = pass.next_deadline;
        for d in &pass.delivered {
            if let Some(old) = self.outstanding.insert(d.offset, d.bytes) {
                self.outstanding_bytes -= old;
            }
            self.outstanding_bytes += d.bytes;
        }
        Ok(pass.delivered)
    }

    /// A future that resolves when polling again may deliver something. It
    /// never resolves while the window is full (acks and flow changes arrive
    /// through the session itself).
    pub fn ready(&self) -> impl Future<Output = ()> + Send + 'static {
        let has_credit = self.credit() > 0;
        let topic_rx = self.topic_rx.clone();
        let sub_rx = self.sub_rx.clone();
        let mut status_rx = self.status_rx.clone();
        let clock = self.broker.clock.clone();
        let deadline = self.next_deadline;
        async move {
            if !has_credit {
                // Only the client (acks, flow) or a status change can help now.
                let _ = status_rx.changed().await;
                return;
            }
            wait_for_work(topic_rx, sub_rx, status_rx, clock, deadline).await
        }
    }

    fn release(&mut self, offsets: &[u64]) {
        for offset in offsets {
            if let Some(bytes) = self.outstanding.remove(offset) {
                self.outstanding_bytes -= bytes;
            }
        }
    }

    /// Acks on the stream: ends redelivery and frees credit.
    pub async fn ack(&mut self, offsets: &[u64]) -> Result<u32> {
        self.release(offsets);
        self.broker
            .ack_offsets(&self.key.tenant, &self.sub, offsets)
            .await
    }

    /// Nacks on the stream: schedules redelivery and frees credit.
    pub async fn nack(&mut self, offsets: &[u64], delay: Duration) -> Result<u32> {
        self.release(offsets);
        self.broker.nack_offsets(&self.sub, offsets, delay).await
    }

    /// Changes the window.
    pub fn set_window(&mut self, window: FlowWindow) {
        self.window = window;
    }
}
