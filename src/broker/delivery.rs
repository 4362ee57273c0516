//! Delivery: claiming messages for a subscription, recording the delivery
//! durably *before* it is sent (so attempt counts are exact across restarts
//! and an at-most-once delivery is never repeated), dead-lettering, acks,
//! nacks and seeks, plus the flow-controlled [`ConsumerSession`] behind the
//! Consume stream and the long-poll behind Fetch.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::produce::{reclaim, room_needed};
use super::subscription::{Claim, ClaimRules, Subscription};
use super::topic::Topic;
use super::Broker;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::metering::{units_for_bytes, UsageDelta};
use crate::observability::name;
use crate::storage::records::{MessageSetRecord, PendingRecord, SetHeaderRecord, StoredMessage};
use crate::storage::{keys, AfterCommit, WriteSet};
use crate::tenancy::{Scope, TenantKey};

/// One message handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Its offset.
    pub offset: u64,
    /// The message.
    pub message: StoredMessage,
    /// Publish time, Unix ms.
    pub publish_ms: i64,
    /// 1 on first delivery.
    pub attempt: u32,
    /// Counted bytes (payload + headers + ids).
    pub bytes: u64,
}

/// Where a seek moves a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTarget {
    /// Oldest retained message.
    Earliest,
    /// After the newest message.
    Latest,
    /// The message at this offset.
    Offset(u64),
    /// The first message published at or after this Unix ms.
    Timestamp(i64),
}

/// The last message set read, so sequential reads decode each set once.
#[derive(Default)]
pub struct SetCache {
    entry: Option<(u64, u64, MessageSetRecord)>,
}

/// The result of one delivery pass.
struct DeliverPass {
    delivered: Vec<Delivered>,
    /// When the next pending message becomes due (if nothing was due now).
    next_deadline: Option<i64>,
}

/// Counted bytes of a stored message.
fn message_bytes(m: &StoredMessage) -> u64 {
    let headers: usize = m.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    (m.payload.len() + headers + m.device_id.len() + m.dedup_id.len()) as u64
}

impl Broker {
    /// Reads the message at `offset`, or `None` when it is no longer retained.
    fn read_message(
        &self,
        topic: &Topic,
        offset: u64,
        cache: &mut SetCache,
    ) -> Result<Option<(StoredMessage, i64)>> {
        if offset < topic.first_offset() {
            return Ok(None);
        }
        let cached = matches!(&cache.entry, Some((id, first, set))
            if *id == topic.id && *first <= offset && offset < *first + set.messages.len() as u64);
        if !cached {
            let prefix = keys::id_prefix(keys::SET_HEADER, topic.id);
            let found = self.store.last_at_or_before::<SetHeaderRecord>(
                &prefix,
                &keys::set_header(topic.id, offset),
            )?;
            cache.entry = None;
            if let Some((key, header)) = found {
                if let (Some(first), Some(blob)) = (keys::u64_at(&key, 9), header.blob) {
                    match self.store.read_blob::<MessageSetRecord>(&blob) {
                        Ok(set) => cache.entry = Some((topic.id, first, set)),
                        // Expired or reclaimed between reading its header and
                        // its bytes (its segment may be gone): not retained.
                        Err(_) if offset < topic.first_offset() => return Ok(None),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(cache.entry.as_ref().and_then(|(_, first, set)| {
            offset
                .checked_sub(*first)
                .and_then(|i| set.messages.get(i as usize))
                .map(|m| (m.clone(), set.publish_ms))
        }))
    }

    /// Claims up to `max_messages` / about `max_bytes` (at least one message
    /// when any is deliverable) for `sub`, records the deliveries durably and
    /// returns them. Moves messages over their attempt limit to the
    /// dead-letter topic in the same commit.
    async fn deliver(
        &self,
        topic: &Arc<Topic>,
        sub: &Arc<Subscription>,
        max_messages: usize,
        max_bytes: u64,
        cache: &mut SetCache,
    ) -> Result<DeliverPass> {
        let pacer = self
            .admission
            .pacer(topic.id, &self.tenancy.plan_of(&topic.tenant));
        let settings = sub.settings();
        let dead_letter_topic =
            if settings.max_delivery_attempts > 0 && !settings.dead_letter_topic.is_empty() {
                self.topic(&topic.tenant, &settings.dead_letter_topic).ok()
            } else {
                None
            };
        let lock_ms = settings.lock_seconds as i64 * 1000;

        let mut state = sub.state.lock().await;
        if sub.is_deleted() || topic.is_deleted() {
            return Err(Error::not_found("subscription", &sub.name));
        }
        let now = self.clock.now_ms();
        let rules = ClaimRules {
            lock_ms,
            max_attempts: settings.max_delivery_attempts,
            dead_letter: dead_letter_topic.is_some(),
            first_offset: topic.first_offset(),
            visible_end: topic.visible_end(),
        };
        // Pace the topic's deliveries to its plan's rate: wait, never fail.
        let deliverable = state.due_now(now)
            + rules
                .visible_end
                .saturating_sub(state.next_offset.max(rules.first_offset));
        let wanted = (deliverable as usize).min(max_messages);
        let max_messages = match pacer.reserve(&self.clock, wanted) {
            Ok(granted) => granted,
            Err(wait) => {
                let paced_until = now + wait.as_millis().min(3_600_000) as i64 + 1;
                let next_deadline = Some(
                    state
                        .next_deadline()
                        .map_or(paced_until, |d| d.min(paced_until)),
                );
                return Ok(DeliverPass {
                    delivered: Vec::new(),
                    next_deadline,
                });
            }
        };
        let mut delivered = Vec::new();
        let mut dead = Vec::new();
        let mut touched = BTreeSet::new();
        let mut bytes = 0u64;
        while delivered.len() < max_messages && bytes < max_bytes {
            let Some(claim) = state.claim(now, &rules) else {
                break;
            };
            match claim {
                Claim::Deliver { offset, attempt } => {
                    touched.insert(offset);
                    match self.read_message(topic, offset, cache)? {
                        Some((message, publish_ms)) => {
                            let size = message_bytes(&message);
                            bytes += size;
                            delivered.push(Delivered {
                                offset,
                                message,
                                publish_ms,
                                attempt,
                                bytes: size,
                            });
                        }
                        // Expired or reclaimed meanwhile: nothing to deliver or keep.
                        None => {
                            state.remove_pending(offset);
                        }
                    }
                }
                Claim::DeadLetter { offset } => {
                    touched.insert(offset);
                    if let Some((message, _)) = self.read_message(topic, offset, cache)? {
                        dead.push((offset, message));
                    }
                }
            }
        }
        let units: u64 = delivered.iter().map(|d| units_for_bytes(d.bytes)).sum();
        pacer.settle(max_messages, units);
        let next_deadline = state.next_deadline();
        if touched.is_empty() {
            return Ok(DeliverPass {
                delivered,
                next_deadline,
            });
        }

        let dead_lettered_before = state.dead_lettered;
        let mut writes = WriteSet::new();
        // Every delivery is billed, in the same atomic write that records it.
        let mut usage = UsageDelta::default();
        for d in &delivered {
            usage.delivered(
                &topic.name,
                &d.message.device_id,
                units_for_bytes(d.bytes),
                d.attempt,
            );
        }
        usage.write(&topic.tenant, self.calendar.day_of(now), &mut writes);
        let mut after: Option<AfterCommit> = None;
        if let (false, Some(dlq)) = (dead.is_empty(), dead_letter_topic) {
            let moved = dead.len() as u64;
            let bytes: u64 = dead.iter().map(|(_, m)| message_bytes(m)).sum();
            let mut log = dlq.log.lock().await;
            let mut dlq_writes = WriteSet::new();
            let appended = room_needed(&dlq, &log, bytes).and_then(|(sets, _)| {
                let messages = dead.iter().map(|(_, m)| m.clone()).collect();
                log.append(&self.store, dlq.id, messages, bytes, now, &mut dlq_writes)?;
                reclaim(&dlq, &mut log, sets, &mut dlq_writes);
                Ok(())
            });
            match appended {
                Ok(()) => {
                    dlq_writes.put(keys::topic_state(dlq.id), &log.state);
                    dlq.sync_from(&log);
                    writes.extend(dlq_writes);
                    state.dead_lettered += moved;
                    let end = log.state.next_offset;
                    let dlq = dlq.clone();
                    after = Some(Box::new(move || dlq.publish_visible_end(end)));
                }
                Err(e) => {
                    // The dead-letter topic cannot take them now: keep them
                    // pending and try again after a lock period.
                    tracing::warn!(topic = %topic.name, subscription = %sub.name, error = %e,
                        "dead-letter topic refused messages; they stay pending");
                    for (offset, _) in dead {
                        state.restore_pending(
                            offset,
                            PendingRecord {
                                attempts: settings.max_delivery_attempts,
                                deadline_ms: now + lock_ms.max(1000),
                                first_delivery_ms: now,
                            },
                        );
                    }
                }
            }
        }
        state.persist(sub.id, &mut writes);
        let dead_lettered = state.dead_lettered;
        let commit = self.store.enqueue(writes, after).await?;
        drop(state);
        commit.wait().await?;
        let m = &self.metrics;
        let tenant = &topic.tenant;
        let redelivered = delivered.iter().filter(|d| d.attempt > 1).count() as u64;
        let redelivered_units: u64 = delivered
            .iter()
            .filter(|d| d.attempt > 1)
            .map(|d| units_for_bytes(d.bytes))
            .sum();
        m.count(name::DELIVERED_MESSAGES, tenant, delivered.len() as u64);
        m.count(
            name::DELIVERED_BYTES,
            tenant,
            delivered.iter().map(|d| d.bytes).sum(),
        );
        m.count(name::REDELIVERED_MESSAGES, tenant, redelivered);
        m.count(
            name::DEAD_LETTERED_MESSAGES,
            tenant,
            dead_lettered - dead_lettered_before,
        );
        let label = m.tenant_label(tenant);
        m.count_labeled(
            name::BILLABLE_UNITS,
            &[("tenant", label.clone()), ("part", "delivered".into())],
            units,
        );
        m.count_labeled(
            name::BILLABLE_UNITS,
            &[("tenant", label), ("part", "redelivered".into())],
            redelivered_units,
        );
        Ok(DeliverPass {
            delivered,
            next_deadline,
        })
    }

    fn check_consume(&self, key: &TenantKey, topic: &str) -> Result<()> {
        self.tenancy.check_data_plane(&key.tenant)?;
        key.require(Scope::Consume, Some(topic))
    }

    /// Acknowledges messages; returns how many were pending.
    pub async fn ack(
        &self,
        key: &TenantKey,
        topic: &str,
        subscription: &str,
        offsets: &[u64],
    ) -> Result<u32> {
        self.check_consume(key, topic)?;
        let (_, sub) = self.subscription(&key.tenant, topic, subscription)?;
        self.ack_offsets(&key.tenant, &sub, offsets).await
    }

    async fn ack_offsets(&self, tenant: &str, sub: &Subscription, offsets: &[u64]) -> Result<u32> {
        let mut state = sub.state.lock().await;
        let mut writes = WriteSet::new();
        let mut acked = 0;
        for &offset in offsets {
            if state.ack(offset) {
                acked += 1;
            }
        }
        if acked == 0 {
            return Ok(0);
        }
        state.persist(sub.id, &mut writes);
        let commit = self.store.enqueue(writes, None).await?;
        drop(state);
        commit.wait().await?;
        self.metrics
            .count(name::ACKED_MESSAGES, tenant, acked as u64);
        Ok(acked)
    }

    /// Gives messages back for redelivery after `delay`; returns how many
    /// were pending.
    pub async fn nack(
        &self,
        key: &TenantKey,
        topic: &str,
        subscription: &str,
        offsets: &[u64],
        delay: Duration,
    ) -> Result<u32> {
        self.check_consume(key, topic)?;
        let (_, sub) = self.subscription(&key.tenant, topic, subscription)?;
        self.nack_offsets(&sub, offsets, delay).await
    }

    async fn nack_offsets(
        &self,
        sub: &Arc<Subscription>,
        offsets: &[u64],
        delay: Duration,
    ) -> Result<u32> {
        if delay > Duration::from_secs(3600) {
            return Err(Error::invalid(
                "nack delay_ms may be at most 3600000 (one hour)",
            ));
        }
        let mut state = sub.state.lock().await;
        let at = self.clock.now_ms() + delay.as_millis() as i64;
        let mut writes = WriteSet::new();
        let mut nacked = 0;
        for &offset in offsets {
            if state.nack(offset, at) {
                nacked += 1;
            }
        }
        if nacked == 0 {
            return Ok(0);
        }
        state.persist(sub.id, &mut writes);
        let notify = sub.clone();
        let commit = self
            .store
            .enqueue(writes, Some(Box::new(move || notify.notify())))
            .await?;
        drop(state);
        commit.wait().await?;
        Ok(nacked)
    }

    /// Moves a subscription's cursor; returns the new next offset.
    pub async fn seek(
        &self,
        key: &TenantKey,
        topic_name: &str,
        subscription: &str,
        target: SeekTarget,
    ) -> Result<u64> {
        self.check_consume(key, topic_name)?;
        let (topic, sub) = self.subscription(&key.tenant, topic_name, subscription)?;
        let mut state = sub.state.lock().await;
        let offset = {
            let log = topic.log.lock().await;
            match target {
                SeekTarget::Earliest => log.first_offset(),
                SeekTarget::Latest => log.state.next_offset,
                SeekTarget::Offset(o) => o.clamp(log.first_offset(), log.state.next_offset),
                SeekTarget::Timestamp(ts) => log.offset_at_time(ts),
            }
        };
        let mut writes = WriteSet::new();
        state.seek(offset);
        state.persist(sub.id, &mut writes);
        let notify = sub.clone();
        let commit = self
            .store
            .enqueue(writes, Some(Box::new(move || notify.notify())))
            .await?;
        drop(state);
        commit.wait().await?;
        Ok(offset)
    }

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
        let give_up = tokio::time::Instant::now() + max_wait;
        let mut cache = SetCache::default();
        loop {
            let topic_rx = topic.watch();
            let sub_rx = sub.watch();
            let status_rx = self.tenancy.watch_status();
            self.tenancy.check_data_plane(&key.tenant)?;
            let pass = self
                .deliver(&topic, &sub, max_messages, FETCH_MAX_BYTES, &mut cache)
                .await?;
            if !pass.delivered.is_empty() {
                return Ok(pass.delivered);
            }
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
        }
    }
}

/// Most payload bytes one Fetch returns (one message may go over).
const FETCH_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Resolves when new messages are durable, the subscription changed, or the
/// next pending deadline is reached.
async fn wait_for_work(
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
                10 * 1024 * 1024
            } else {
                max_bytes.min(256 * 1024 * 1024)
            },
        }
    }
}

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
