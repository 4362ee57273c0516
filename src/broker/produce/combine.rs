//! Produce combining: concurrent produces to one topic are stored as one
//! message set per round, so N produces cost one segment frame, one seal, one
//! set header, one topic-state put, one usage write and one commit instead
//! of N.
//!
//! Flat combining with a hand-off. A produce that passed its own checks
//! (`admit_batch`) joins its topic's [`ProduceQueue`]. With no leader, it
//! becomes the leader at once; otherwise it waits for its [`Turn`]. The
//! leader runs one round (`round.rs`): it waits, for a produce that waits for
//! its reply (unary, or a stream with nothing else in flight), until
//! fewer than [`PIPELINE`] of the topic's earlier sets are still being
//! committed (the gate: with one, until the previous set is durable, so the
//! produces that arrive meanwhile join this round); takes the log lock and a place in the committer's queue; takes
//! every waiting produce up to [`MAX_SET_MESSAGES`] / [`MAX_SET_BYTES`]; and
//! stores them, in queue order, as one set. Each produce gets its own answer
//! ([`Turn::Done`]): its own [`PendingProduce`] on the shared commit, or its
//! own refusal. Then the leader hands the lead to the first produce still
//! waiting ([`Turn::Lead`]), or leaves none.
//!
//! Every await of a round comes before the waiting produces are taken, and
//! the lead is a [`LeadToken`] that hands itself on when dropped: a leader
//! cancelled (its client gone) or a hand-off whose receiver is gone never
//! leaves the queue without a leader. A produce whose caller stopped waiting
//! before it was taken is dropped, unstored, as a cancelled produce was
//! before combining.
//!
//! A stream's produce (`submit_produce`) skips the gate while the stream has
//! earlier batches unanswered: a ProduceStream reads its next batch only once
//! the previous one was queued, so waiting there would cap a pipelining
//! stream at one batch per commit; it still joins a round that is waiting.
//! A stream with nothing else in flight (its producer waits for each reply)
//! waits at the gate as a unary produce does. A batch already a set's worth
//! ([`GATHER_BELOW_MESSAGES`] messages or more) always skips it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::PendingProduce;
use crate::broker::topic::Topic;
use crate::broker::{Broker, Message};
use crate::crypto::TenantKeys;
use crate::error::{Error, Result};
use crate::quota::Plan;
use crate::storage::{SharedCommit, StorageError};
use crate::sync::MutexExt;

/// How many of a topic's sets may be in the committer (queued or being
/// committed) when a gated produce's round starts; a round waits for the
/// oldest beyond that. One: every produce that arrives while a set commits
/// shares the next set, so a topic has one set per commit. (Two, one
/// committing while the next is queued, made half as large sets and more
/// commits: callgrind, 64 producers x 1 message, 105,600 instructions and
/// 16.8 messages per set against 104,200 and 26.2; 4 x 100 messages,
/// 9,340 against 9,010, above the 9,110 before combining.)
pub(super) const PIPELINE: usize = 1;
/// Most messages one round takes into a set (a produce larger than that is
/// taken alone).
pub(super) const MAX_SET_MESSAGES: usize = 4096;
/// Most counted bytes one round takes into a set (likewise): a reader decodes
/// a whole set to read one of its messages.
pub(super) const MAX_SET_BYTES: u64 = 1 << 20;

/// A produce's batch after its own checks, waiting to be stored.
pub(super) struct Batch {
    /// The tenant's plan, as checked.
    pub(super) plan: Arc<Plan>,
    /// The tenant's keys (seal, dedup tags).
    pub(super) keys: Arc<TenantKeys>,
    /// The messages, in batch order.
    pub(super) messages: Vec<Message>,
    /// Each message's counted bytes.
    pub(super) sizes: Vec<u64>,
    /// Their sum.
    pub(super) bytes: u64,
}

/// A produce in a topic's queue and where its turn goes.
pub(super) struct Member {
    /// What it produces.
    pub(super) batch: Batch,
    /// Its turn: its answer, or the lead.
    pub(super) reply: oneshot::Sender<Turn>,
}

/// What a waiting produce is told.
pub(super) enum Turn {
    /// It was stored (or refused) by a leader: its own answer.
    Done(Result<PendingProduce>),
    /// It leads the next round, its own batch first.
    Lead(LeadToken, Batch),
}

/// A produce of fewer messages than this with nothing of its producer's in
/// flight waits at the gate to gather others; a larger batch skips it like a
/// pipelining stream's (measured: batches of 100
/// waiting at the gate cut `compare.sh` scenario 1 from 132,000 to 101,000
/// msg/s, one commit of latency added to each batch).
pub(super) const GATHER_BELOW_MESSAGES: usize = 16;

/// Whether a produce's round waits for the topic's earlier sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// A produce whose producer waits for its reply (unary, or a stream
    /// with nothing else in flight): it answers after the commit anyway.
    Wait,
    /// A pipelining stream's produce, or a set's worth (see the module doc).
    Skip,
}

/// A topic's queue of produces waiting for a round.
#[derive(Default)]
pub struct ProduceQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    /// Produces waiting for a round, in arrival order.
    waiting: VecDeque<Member>,
    /// Whether a [`LeadToken`] is live.
    leading: bool,
    /// The topic's latest set commits, oldest first, at most [`PIPELINE`].
    in_flight: VecDeque<SharedCommit>,
}

/// The lead of a topic's produce queue; only one is live per topic.
/// Dropping it hands the lead to the first produce waiting.
pub(super) struct LeadToken {
    topic: Arc<Topic>,
    live: bool,
}

impl LeadToken {
    /// The topic it leads.
    pub(super) fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }
}

impl Drop for LeadToken {
    fn drop(&mut self) {
        if self.live {
            hand_off(&self.topic);
        }
    }
}

/// Gives the lead to the first produce still waiting for it, or leaves the
/// queue without a leader.
fn hand_off(topic: &Arc<Topic>) {
    let mut state = topic.produce_queue.state.lock_unpoisoned();
    while let Some(member) = state.waiting.pop_front() {
        let token = LeadToken {
            topic: topic.clone(),
            live: true,
        };
        match member.reply.send(Turn::Lead(token, member.batch)) {
            Ok(()) => return,
            // Its caller is gone: the token goes back unused, the next one leads.
            Err(Turn::Lead(mut token, _)) => token.live = false,
            Err(Turn::Done(_)) => {}
        }
    }
    state.leading = false;
}

impl ProduceQueue {
    /// Queues `member`, or returns it with the lead when nobody leads.
    fn join(&self, topic: &Arc<Topic>, member: Member) -> Option<(LeadToken, Batch)> {
        let mut state = self.state.lock_unpoisoned();
        if state.leading {
            state.waiting.push_back(member);
            return None;
        }
        state.leading = true;
        Some((
            LeadToken {
                topic: topic.clone(),
                live: true,
            },
            member.batch,
        ))
    }

    /// The commit a gated round waits for before it starts when
    /// [`PIPELINE`] of the topic's sets are still in the committer: the
    /// oldest of them. `None`: it starts at once.
    pub(super) fn gate(&self) -> Option<SharedCommit> {
        let mut state = self.state.lock_unpoisoned();
        while state.in_flight.front().is_some_and(SharedCommit::is_done) {
            state.in_flight.pop_front();
        }
        let len = state.in_flight.len();
        (len >= PIPELINE).then(|| state.in_flight[len - PIPELINE].clone())
    }

    /// Notes a set's commit (for the gate).
    pub(super) fn committed(&self, commit: SharedCommit) {
        let mut state = self.state.lock_unpoisoned();
        state.in_flight.push_back(commit);
        while state.in_flight.len() > PIPELINE {
            state.in_flight.pop_front();
        }
    }

    /// Takes waiting produces after `round`'s, in order, while the set stays
    /// within [`MAX_SET_MESSAGES`] and [`MAX_SET_BYTES`]; drops those whose
    /// caller stopped waiting (nothing of them is stored).
    pub(super) fn take(&self, round: &mut Vec<Member>) {
        let mut messages: usize = round.iter().map(|m| m.batch.messages.len()).sum();
        let mut bytes: u64 = round.iter().map(|m| m.batch.bytes).sum();
        let mut state = self.state.lock_unpoisoned();
        while let Some(next) = state.waiting.front() {
            if next.reply.is_closed() {
                state.waiting.pop_front();
                continue;
            }
            if messages + next.batch.messages.len() > MAX_SET_MESSAGES
                || bytes + next.batch.bytes > MAX_SET_BYTES
            {
                break;
            }
            messages += next.batch.messages.len();
            bytes += next.batch.bytes;
            if let Some(member) = state.waiting.pop_front() {
                round.push(member);
            }
        }
    }

    /// Puts produces a round did not store back at the front, in order.
    pub(super) fn put_back(&self, members: Vec<Member>) {
        let mut state = self.state.lock_unpoisoned();
        for member in members.into_iter().rev() {
            state.waiting.push_front(member);
        }
    }
}

impl Broker {
    /// Stores `batch` on `topic` through the topic's produce queue and
    /// returns its own answer (see the module doc).
    pub(super) async fn combine(
        &self,
        topic: &Arc<Topic>,
        batch: Batch,
        gate: Gate,
    ) -> Result<PendingProduce> {
        let (reply, mut turn) = oneshot::channel();
        let mut next = match topic.produce_queue.join(topic, Member { batch, reply }) {
            Some((token, batch)) => Turn::Lead(token, batch),
            None => wait(&mut turn).await?,
        };
        loop {
            match next {
                Turn::Done(answer) => return answer,
                Turn::Lead(token, batch) => {
                    let (reply, own) = oneshot::channel();
                    turn = own;
                    self.lead_round(token, Member { batch, reply }, gate).await;
                    next = wait(&mut turn).await?;
                }
            }
        }
    }
}

/// A waiting produce's next turn. A leader that failed halfway (it
/// panicked) leaves the produce's outcome unknown.
async fn wait(turn: &mut oneshot::Receiver<Turn>) -> Result<Turn> {
    turn.await
        .map_err(|_| Error::Storage(StorageError::unanswered()))
}
