//! Produce: validate a batch against the plan, drop duplicates by dedup_id,
//! make room under the topic's size cap, append one message set, and answer
//! only after the group commit that made it durable.
//!
//! A produce runs in this order, its own checks first, then in a round of
//! its topic's produce queue under the topic's log lock (so offsets are
//! handed out, and commits queued, in order):
//!
//! - `admit`: the policy checks: data plane, scope, message shapes and
//!   devices first; the topic's cap, the tenant's storage and the produce
//!   rate once the batch's stored size is known.
//! - `combine`: the topic's [`ProduceQueue`]: concurrent produces to a topic
//!   are stored as one set per round, each with its own answer; `round`:
//!   what one round does.
//! - `dedup`: sorting a batch into new messages and duplicates of one
//!   within the dedup window; remembering the new ones' dedup_ids.
//! - `room`: making room under a topic's size cap and appending (also
//!   for dead letters).
//! - `pending`: [`PendingProduce`], a queued batch that answers once durable.

mod admit;
mod combine;
mod dedup;
mod pending;
mod room;
mod round;

pub use combine::ProduceQueue;
pub use dedup::DedupEntry;
pub use pending::PendingProduce;
pub(super) use room::Room;

use super::{Broker, Message};
use crate::error::Result;
use crate::tenancy::TenantKey;
use combine::{Batch, Gate, GATHER_BELOW_MESSAGES};

/// What happened to one message of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducedMessage {
    /// Its offset (the original's, for a duplicate).
    pub offset: u64,
    /// A duplicate by dedup_id: not stored, not billed.
    pub duplicate: bool,
    /// Units billed for it.
    pub units: u64,
}

/// The result of a produce, in batch order.
#[derive(Debug, Clone, Default)]
pub struct ProduceOutcome {
    /// One per message.
    pub results: Vec<ProducedMessage>,
    /// Sum of the units billed.
    pub units: u64,
}

impl Broker {
    /// Produces a batch and waits until it is durable. Concurrent produces
    /// to the topic are stored together, one set per round (`combine.rs`).
    pub async fn produce(
        &self,
        key: &TenantKey,
        topic: &str,
        messages: Vec<Message>,
    ) -> Result<ProduceOutcome> {
        let gate = lone_batch_gate(&messages);
        self.queue_produce(key, topic, messages, gate)
            .await?
            .wait()
            .await
    }

    /// Checks and queues a stream's batch; the returned handle resolves when
    /// durable. A refused batch changes nothing. Handles resolve in the order
    /// their batches were queued (a stream's replies keep its order).
    ///
    /// `earlier_in_flight`: the stream has batches queued and not yet
    /// answered. Such a batch skips the gate, which would cap a pipelining
    /// stream at one batch per commit. A stream with nothing else in flight
    /// (a producer that waits for each reply) is a unary producer on a
    /// long-lived stream, and its small batch waits at the gate as a unary
    /// produce does, so concurrent one-at-a-time streams share a set.
    pub async fn submit_produce(
        &self,
        key: &TenantKey,
        topic_name: &str,
        messages: Vec<Message>,
        earlier_in_flight: bool,
    ) -> Result<PendingProduce> {
        let gate = stream_batch_gate(earlier_in_flight, &messages);
        self.queue_produce(key, topic_name, messages, gate).await
    }

    /// The batch's own checks, then its round in the topic's produce queue.
    async fn queue_produce(
        &self,
        key: &TenantKey,
        topic_name: &str,
        messages: Vec<Message>,
        gate: Gate,
    ) -> Result<PendingProduce> {
        let (plan, sizes) = self.admit_batch(key, &messages)?;
        let topic = self.topic(&key.tenant, topic_name)?;
        let keys = self.tenancy.data_keys(&key.tenant)?;
        let bytes = sizes.iter().sum();
        let batch = Batch {
            plan,
            keys,
            messages,
            sizes,
            bytes,
        };
        self.combine(&topic, batch, gate).await
    }
}

/// The gate for a stream's batch: a pipelining stream (earlier batches
/// unanswered) skips it, a stream with nothing in flight is gated as a unary
/// produce.
fn stream_batch_gate(earlier_in_flight: bool, messages: &[Message]) -> Gate {
    if earlier_in_flight {
        Gate::Skip
    } else {
        lone_batch_gate(messages)
    }
}

/// The gate for a batch with nothing of its producer's in flight before it:
/// a batch already a set's worth gains nothing by waiting for the topic's
/// previous set, and would add that commit to its latency.
fn lone_batch_gate(messages: &[Message]) -> Gate {
    if messages.len() >= GATHER_BELOW_MESSAGES {
        Gate::Skip
    } else {
        Gate::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> Vec<Message> {
        vec![Message::default(); n]
    }

    #[test]
    fn a_small_batch_waits_at_the_gate_unless_its_stream_is_pipelining() {
        // A unary produce, or a stream that waits for each reply: gathered.
        assert_eq!(lone_batch_gate(&batch(1)), Gate::Wait);
        assert_eq!(stream_batch_gate(false, &batch(1)), Gate::Wait);
        assert_eq!(
            stream_batch_gate(false, &batch(GATHER_BELOW_MESSAGES - 1)),
            Gate::Wait
        );
        // A stream with earlier batches unanswered must not wait for them.
        assert_eq!(stream_batch_gate(true, &batch(1)), Gate::Skip);
        // A set's worth never waits.
        assert_eq!(lone_batch_gate(&batch(GATHER_BELOW_MESSAGES)), Gate::Skip);
        assert_eq!(
            stream_batch_gate(false, &batch(GATHER_BELOW_MESSAGES)),
            Gate::Skip
        );
    }
}
